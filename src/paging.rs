//! What a page is, as plain data: the message a channel is sent ([`Alert`], its [`Event`]),
//! and what a state change pages ([`PagePlan`], [`Page`]). Below the store, which persists
//! incidents and the outbox from them, and the alert path above it, which decides what to
//! page (`alert::plan`) and delivers (`alert::dispatch`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What happened, as told to a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// An incident opened: the first page.
    Trigger,
    /// Still open; sent every `remind_every`.
    Reminder,
    /// Still open and unacknowledged after an escalation step's `after`.
    Escalation,
    /// Someone acknowledged it.
    Acknowledge,
    /// The probe recovered; the incident is closed.
    Resolve,
    /// `probectl test-alert`.
    Test,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Trigger => "trigger",
            Event::Reminder => "reminder",
            Event::Escalation => "escalation",
            Event::Acknowledge => "acknowledge",
            Event::Resolve => "resolve",
            Event::Test => "test",
        }
    }

    /// Whether the incident is still firing from the receiver's point of view.
    pub fn firing(self) -> bool {
        !matches!(self, Event::Resolve)
    }
}

/// One message to deliver. Everything in it is safe to show: no header, DSN or secret, and
/// no URL but the probe's [`Alert::target`], which carries no userinfo, query or fragment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub event: Event,
    /// The incident's id (0 for a test).
    pub incident: i64,
    /// Stable for every message of one incident, so a receiver (PagerDuty, Alertmanager)
    /// folds a resend after a crash into the same incident. `probed-<instance>-<incident>`.
    pub dedup_key: String,
    pub probe: String,
    /// The probe's kind (`http`, ...).
    pub kind: String,
    pub severity: String,
    /// `down` (or `degraded`: outside its objectives) while firing, `up` once resolved.
    pub state: String,
    /// The failing observation's reason.
    pub reason: Option<String>,
    /// When the incident opened, unix ms.
    pub opened_at: i64,
    /// When this message was created, unix ms.
    pub at: i64,
    pub resolved_at: Option<i64>,
    pub acknowledged_by: Option<String>,
    /// The probe's labels (routing matched on these).
    pub labels: BTreeMap<String, String>,
    pub group: Option<String>,
    /// Link to the daemon's status for this probe, when `external_url` is set.
    pub link: Option<String>,
    /// Which daemon sent it (`instance` in the config, else the host name).
    pub source: String,
    /// Who sees what, when several locations share a store: `from eu-west, us-east (2 of
    /// 3); ap-south sees it up` (for a resolve, who sees it up again). `None` for a lone
    /// location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locations: Option<String>,
    /// What the probe targets, as Prometheus' `instance` label names it (a URL without
    /// userinfo, query or fragment; `host:port`; a path): `ProbeSpec::instance`. `None` for
    /// kinds with no target of their own (push, location), and in alerts stored before it
    /// was carried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Where the daemon that sent it stands (`location` in the config); empty in alerts
    /// stored before it was carried (the location then defaults to [`Alert::source`]).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source_location: String,
    /// The firing states (`down`, `degraded`) this incident has been told in, in the order
    /// it first was, the current one included. Alertmanager knows each as an alert of its
    /// own (its `alertname` and `state` labels differ), so every send ends the ones the
    /// incident has left, and a resolve ends them all. Empty in a page from memory and in
    /// alerts stored before it was carried: then only [`Alert::state`] counts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fired_as: Vec<String>,
    /// Set on a resend while the incident holds before it resolves (the probe is up again):
    /// since when, unix ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered_at: Option<i64>,
}

impl Alert {
    /// One line: `[probed] DOWN api-write: status 503, expected 200`.
    pub fn summary(&self) -> String {
        let what = match self.event {
            Event::Resolve => "RESOLVED",
            Event::Acknowledge => "ACKNOWLEDGED",
            Event::Test => "TEST",
            _ if self.recovered_at.is_some() => "RECOVERING",
            _ if self.state == "degraded" => "DEGRADED",
            _ => "DOWN",
        };
        let mut s = format!("[probed] {what} {}", self.probe);
        if let Some(l) = &self.locations {
            s.push(' ');
            if self.event == Event::Resolve {
                s.push_str("up ");
            }
            s.push_str(l);
        }
        if self.event.firing()
            && let Some(r) = &self.reason
        {
            s.push_str(": ");
            s.push_str(r);
        }
        s
    }

    /// A few lines for channels with room (email, webhook): probe, state, reason, since
    /// when, link.
    pub fn body(&self) -> String {
        use std::fmt::Write;
        let mut b = String::new();
        let _ = writeln!(b, "{}", self.summary());
        let _ = writeln!(b);
        let _ = writeln!(b, "probe:     {} ({})", self.probe, self.kind);
        let _ = writeln!(b, "state:     {}", self.state);
        let _ = writeln!(b, "severity:  {}", self.severity);
        if let Some(r) = &self.reason {
            let _ = writeln!(b, "reason:    {r}");
        }
        let _ = writeln!(b, "since:     {}", crate::time::rfc3339(self.opened_at));
        if let Some(t) = self.recovered_at.filter(|_| self.event.firing()) {
            let _ = writeln!(
                b,
                "recovered: {} (resolves after the hold)",
                crate::time::rfc3339(t)
            );
        }
        if let Some(t) = self.resolved_at {
            let _ = writeln!(b, "resolved:  {}", crate::time::rfc3339(t));
        }
        if let Some(who) = &self.acknowledged_by {
            let _ = writeln!(b, "acked by:  {who}");
        }
        if let Some(g) = &self.group {
            let _ = writeln!(b, "group:     {g}");
        }
        if let Some(l) = &self.link {
            let _ = writeln!(b, "link:      {l}");
        }
        if self.incident == 0 && self.event != Event::Test {
            // Paged from memory: the store could not be written when it went down.
            let _ = writeln!(b, "incident:  not yet recorded ({})", self.event.as_str());
        } else {
            let _ = writeln!(b, "incident:  {} ({})", self.incident, self.event.as_str());
        }
        let _ = writeln!(b, "sent by:   {}", self.source);
        b
    }

    /// The states this incident has fired in, the current one included when the message
    /// fires (see [`Alert::fired_as`]). A resolve of an alert stored without `fired_as`
    /// ends `down`, the only state such alerts were told in.
    pub fn fired_states(&self) -> Vec<&str> {
        let mut states: Vec<&str> = self.fired_as.iter().map(String::as_str).collect();
        if self.event.firing() && !states.contains(&self.state.as_str()) {
            states.push(&self.state);
        }
        if states.is_empty() {
            states.push("down");
        }
        states
    }

    /// The incident goes on in `state` (`down` or `degraded`): `fired_as` remembers the one
    /// it leaves. Whether it changed.
    pub fn fire_as(&mut self, state: &str) -> bool {
        if self.state == state {
            return false;
        }
        if !self.fired_as.contains(&self.state) {
            self.fired_as.push(self.state.clone());
        }
        if !self.fired_as.iter().any(|s| s == state) {
            self.fired_as.push(state.to_owned());
        }
        self.state = state.to_owned();
        true
    }
}

/// What a state change to `down` pages, decided when it happens.
#[derive(Debug, Clone)]
pub struct PagePlan {
    /// The message template (event `trigger`, incident 0 until one is opened).
    pub alert: Alert,
    pub notify: Vec<String>,
    pub fallback: Vec<String>,
    /// Why paging is muted now (a maintenance window), if it is.
    pub muted: Option<String>,
    pub send_resolve: bool,
    /// How long a recovery must hold before the incident resolves, ms.
    pub resolve_hold_ms: i64,
    /// Already paged from memory while the store could not be written (`alert.dedup_key`
    /// then holds the key that page carried): the incident, once written, records the
    /// page as sent instead of sending it again.
    pub paged_from_memory: bool,
}

/// What a state change does to the probe's incident, decided above the store
/// (`alert::plan::page_for`) and persisted by it in the change's own transaction.
#[derive(Debug, Clone)]
pub enum Page {
    /// Down, or outside its objectives: an incident opens with its first page (or the open
    /// one goes on, a flap during its resolve hold).
    Open(Box<PagePlan>),
    /// Recovered: the open incident starts its resolve hold, `hold_ms` long; `locations`
    /// says who sees it up (several locations), for the resolve notice.
    Recover {
        hold_ms: i64,
        locations: Option<String>,
    },
}
