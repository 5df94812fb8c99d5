//! Which route a probe's incident takes, and whether paging is muted right now: the parts
//! of the alert path that depend on the config, computed once per reload ([`Router`]).

use std::collections::BTreeMap;

use super::{Alert, Event};
use crate::config::{Config, Maintenance, ProbeConfig, Route};
use crate::evaluate::{State, Transition};
pub use crate::paging::{Page, PagePlan};

/// Routes, maintenance windows and naming, from one config.
#[derive(Debug, Clone, Default)]
pub struct Router {
    pub routes: Vec<Route>,
    pub maintenance: Vec<Maintenance>,
    pub instance: String,
    /// This daemon's `location`, carried by its pages.
    pub location: String,
    pub external_url: Option<String>,
}

/// What a state change does to the probe's incident: down, or outside its objectives, opens
/// one with its first page (or the open one goes on; down to degraded is the same incident,
/// still open); back up starts its resolve hold; anything else, nothing.
pub fn page_for(t: &Transition, plan: PagePlan) -> Option<Page> {
    match (t.from, t.to) {
        (_, State::Down)
        | (State::Up | State::Pending | State::Unknown | State::Paused, State::Degraded) => {
            Some(Page::Open(Box::new(plan)))
        }
        (State::Down | State::Degraded, State::Up) => Some(Page::Recover {
            hold_ms: plan.resolve_hold_ms,
            locations: plan.alert.locations,
        }),
        _ => None,
    }
}

impl Router {
    pub fn from_config(c: &Config) -> Router {
        Router {
            routes: c.routes.clone(),
            maintenance: c.maintenance.clone(),
            instance: c.instance.clone(),
            location: c.location.clone(),
            external_url: c.external_url.clone(),
        }
    }

    /// The labels routes match on: the probe's own plus `severity`, `probe`, `kind`, `group`.
    pub fn labels(p: &ProbeConfig) -> BTreeMap<String, String> {
        Self::labels_as(p, &p.alert.severity)
    }

    /// The labels with `severity` as given (an objective's rule may carry its own).
    pub fn labels_as(p: &ProbeConfig, severity: &str) -> BTreeMap<String, String> {
        let mut l = p.labels.clone();
        l.insert("severity".into(), severity.to_owned());
        l.insert("probe".into(), p.name.clone());
        l.insert("kind".into(), p.spec.kind().into());
        if let Some(g) = &p.group {
            l.insert("group".into(), g.clone());
        }
        l
    }

    /// The first route whose matchers all hold.
    pub fn route(&self, p: &ProbeConfig) -> Option<&Route> {
        self.route_as(p, &p.alert.severity)
    }

    /// The first route whose matchers all hold, for an incident of `severity`.
    pub fn route_as(&self, p: &ProbeConfig, severity: &str) -> Option<&Route> {
        let labels = Self::labels_as(p, severity);
        self.routes.iter().find(|r| {
            r.matchers.iter().all(|(k, v)| {
                labels
                    .get(k)
                    .is_some_and(|l| crate::config::glob_match(v, l))
            })
        })
    }

    /// The maintenance window muting `probe` at `now`, if any.
    pub fn maintenance(&self, probe: &str, now: i64) -> Option<&str> {
        self.maintenance
            .iter()
            .find(|m| m.active(probe, now))
            .map(|m| m.name.as_str())
    }

    pub fn link(&self, probe: &str) -> Option<String> {
        self.external_url
            .as_ref()
            .map(|u| format!("{u}/api/v1/probes/{probe}/results"))
    }

    /// The page plan for `p` going down at `at` with `reason`.
    pub fn plan(&self, p: &ProbeConfig, at: i64, reason: Option<&str>) -> PagePlan {
        self.plan_as(p, at, reason, None)
    }

    /// The page plan, for an incident of `severity` (default: the probe's).
    pub fn plan_as(
        &self,
        p: &ProbeConfig,
        at: i64,
        reason: Option<&str>,
        severity: Option<&str>,
    ) -> PagePlan {
        let severity = severity.unwrap_or(&p.alert.severity);
        let route = self.route_as(p, severity);
        let hold = p
            .alert
            .resolve_hold
            .unwrap_or(p.schedule.interval() * 3)
            .as_millis() as i64;
        PagePlan {
            alert: Alert {
                event: Event::Trigger,
                incident: 0,
                dedup_key: String::new(),
                probe: p.name.clone(),
                kind: p.spec.kind().into(),
                severity: severity.to_owned(),
                state: "down".into(),
                reason: reason.map(str::to_owned),
                opened_at: at,
                at,
                resolved_at: None,
                acknowledged_by: None,
                labels: p.labels.clone(),
                group: p.group.clone(),
                link: self.link(&p.name),
                source: self.instance.clone(),
                locations: None,
                target: p.spec.instance(),
                source_location: self.location.clone(),
                // Set as the incident opens, from `state` (which a degraded page changes).
                fired_as: Vec::new(),
                recovered_at: None,
            },
            notify: route.map(|r| r.notify.clone()).unwrap_or_default(),
            fallback: route.map(|r| r.fallback.clone()).unwrap_or_default(),
            muted: self
                .maintenance(&p.name, at)
                .map(|m| format!("maintenance window {m:?}")),
            send_resolve: route.is_none_or(|r| r.resolve),
            resolve_hold_ms: hold,
            paged_from_memory: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_objectives_severity_picks_the_route_and_labels_the_alert() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::config::load_str(
            "notifiers:\n  mail: { kind: webhook, url: 'http://127.0.0.1:9/mail' }\n  \
             pager: { kind: webhook, url: 'http://127.0.0.1:9/pager' }\n\
             routes:\n  - match: { severity: warning }\n    notify: [mail]\n  - notify: [pager]\n\
             probes:\n  - { name: a, kind: tcp, host: 127.0.0.1, port: 1 }\n",
            &dir.path().join("probed.yaml"),
            &|_| None,
        )
        .unwrap();
        let r = Router::from_config(&cfg);
        let p = &cfg.probes[0];
        let page = r.plan(p, 1, Some("down"));
        assert_eq!(
            (page.notify.as_slice(), page.alert.severity.as_str()),
            (&["pager".to_owned()][..], "critical")
        );
        let ticket = r.plan_as(p, 1, Some("burning slowly"), Some("warning"));
        assert_eq!(ticket.notify, ["mail"]);
        assert_eq!(ticket.alert.severity, "warning");
        assert_eq!(r.route_as(p, "warning").unwrap().notify, ["mail"]);
    }
}
