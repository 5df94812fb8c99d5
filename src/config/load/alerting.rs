//! Reads `notifiers:`, `routes:`, `alerting:` (delivery retries) and `status_page:`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_yaml::Value;

use super::index::At;
use super::interp::key_text;
use super::{Doc, Loader, absolute_http, check_name, expected, idx, key, resolve, unknown};
use crate::config::{
    AlertingOptions, EscalationStep, NOTIFIER_KINDS, NotifierConfig, Route, StatusPageOptions,
};
use crate::units::Dur;

pub(super) const STATUS_PAGE_KEYS: &[&str] = &["title", "description", "url", "history_days"];
pub(super) const ROUTE_KEYS: &[&str] = &[
    "match",
    "notify",
    "fallback",
    "escalate",
    "remind_every",
    "resolve",
];
pub(super) const STEP_KEYS: &[&str] = &["after", "notify"];
pub(super) const ALERTING_KEYS: &[&str] = &["max_attempts", "retry_base", "retry_max"];
/// Most attempts at one delivery.
const MAX_ATTEMPTS: u64 = 1_000;

impl Loader<'_> {
    pub(super) fn notifiers(
        &mut self,
        doc: &Doc,
        v: Option<&Value>,
    ) -> BTreeMap<String, NotifierConfig> {
        let mut out = BTreeMap::new();
        let base = key(&[], "notifiers");
        let Some(m) = v.filter(|v| !v.is_null()) else {
            return out;
        };
        let Some(m) = self.mapping(doc, &base, m) else {
            return out;
        };
        for (k, v) in m {
            let name = key_text(k);
            let path = key(&base, &name);
            if let Some(msg) = check_name("notifier", &name) {
                self.err(doc, &path, At::Key, msg);
            }
            let Some(nm) = self.mapping(doc, &path, v) else {
                continue;
            };
            let Some(kind) = self.required::<String>(doc, &path, nm, "kind") else {
                continue;
            };
            if !NOTIFIER_KINDS.contains(&kind.as_str()) {
                let msg = unknown("notifier kind", &kind, NOTIFIER_KINDS);
                self.err(doc, &key(&path, "kind"), At::Value, msg);
                continue;
            }
            let mut settings = nm.clone();
            settings.remove("kind");
            let spec = match crate::config::notify::NotifierSpec::from_value(
                &kind,
                Value::Mapping(settings.clone()),
            ) {
                Ok(Ok(mut spec)) => {
                    spec.resolve_paths(doc.file.parent().unwrap_or(Path::new("")));
                    spec
                }
                Ok(Err(e)) => {
                    self.serde_error(doc, &path, &e, &["kind"]);
                    continue;
                }
                Err(()) => continue,
            };
            let before = self.errors.len();
            for fe in spec.validate() {
                let mut p = path.clone();
                p.extend(resolve(v, &fe.path));
                self.err(doc, &p, At::Value, fe.message);
            }
            if self.errors.len() > before {
                continue;
            }
            out.insert(
                name,
                NotifierConfig {
                    kind,
                    spec,
                    settings: Value::Mapping(settings),
                },
            );
        }
        out
    }

    pub(super) fn routes(
        &mut self,
        doc: &Doc,
        v: Option<&Value>,
        notifiers: &[String],
    ) -> Vec<Route> {
        let mut out = Vec::new();
        let base = key(&[], "routes");
        let items = match v {
            None | Some(Value::Null) => return out,
            Some(Value::Sequence(items)) => items,
            Some(other) => {
                self.err(doc, &base, At::Value, expected("a list of routes", other));
                return out;
            }
        };
        for (i, item) in items.iter().enumerate() {
            let path = idx(&base, i);
            let Some(m) = self.mapping(doc, &path, item) else {
                continue;
            };
            self.check_keys(doc, &path, m, ROUTE_KEYS);
            let matchers = self.field::<BTreeMap<String, String>>(doc, &path, m, "match");
            let notify = self.field::<Vec<String>>(doc, &path, m, "notify");
            let fallback = self.field::<Vec<String>>(doc, &path, m, "fallback");
            let remind_every = self
                .field::<Dur>(doc, &path, m, "remind_every")
                .ok()
                .flatten()
                .map(|d| d.0);
            let resolve = self
                .field::<bool>(doc, &path, m, "resolve")
                .ok()
                .flatten()
                .unwrap_or(true);
            let mut escalate = Vec::new();
            match m.get("escalate") {
                None | Some(Value::Null) => {}
                Some(Value::Sequence(steps)) => {
                    for (j, step) in steps.iter().enumerate() {
                        let sp = idx(&key(&path, "escalate"), j);
                        let Some(sm) = self.mapping(doc, &sp, step) else {
                            continue;
                        };
                        self.check_keys(doc, &sp, sm, STEP_KEYS);
                        let after = self.required::<Dur>(doc, &sp, sm, "after");
                        let names = self.required::<Vec<String>>(doc, &sp, sm, "notify");
                        if let Some(names) = &names {
                            for (k, n) in names.iter().enumerate() {
                                if !notifiers.contains(n) {
                                    let all: Vec<&str> =
                                        notifiers.iter().map(String::as_str).collect();
                                    let msg = unknown("notifier", n, &all);
                                    self.err(doc, &idx(&key(&sp, "notify"), k), At::Value, msg);
                                }
                            }
                        }
                        if let (Some(Dur(after)), Some(notify)) = (after, names) {
                            if let Some(prev) = escalate.last().map(|s: &EscalationStep| s.after)
                                && after <= prev
                            {
                                let msg = "escalation steps must come later than the one before";
                                self.err(doc, &key(&sp, "after"), At::Value, msg);
                            }
                            escalate.push(EscalationStep { after, notify });
                        }
                    }
                }
                Some(other) => {
                    let msg = expected("a list of escalation steps", other);
                    self.err(doc, &key(&path, "escalate"), At::Value, msg);
                }
            }
            match &notify {
                Ok(None) => {
                    let msg = "route has no \"notify\" (name the notifiers to send to)";
                    self.err(doc, &path, At::Value, msg);
                }
                Ok(Some(n)) if n.is_empty() => {
                    let msg = "route has an empty \"notify\" (name the notifiers to send to)";
                    self.err(doc, &key(&path, "notify"), At::Value, msg);
                }
                _ => {}
            }
            for (list, names) in [("notify", &notify), ("fallback", &fallback)] {
                let Ok(Some(names)) = names else { continue };
                for (j, n) in names.iter().enumerate() {
                    if !notifiers.contains(n) {
                        let msg = if notifiers.is_empty() {
                            format!("unknown notifier \"{n}\" (no notifiers are defined)")
                        } else {
                            let names: Vec<&str> = notifiers.iter().map(String::as_str).collect();
                            unknown("notifier", n, &names)
                        };
                        self.err(doc, &idx(&key(&path, list), j), At::Value, msg);
                    }
                }
            }
            if let (Ok(matchers), Ok(Some(notify)), Ok(fallback)) = (matchers, notify, fallback) {
                out.push(Route {
                    matchers: matchers.unwrap_or_default(),
                    notify,
                    fallback: fallback.unwrap_or_default(),
                    escalate,
                    remind_every,
                    resolve,
                });
            }
        }
        out
    }

    pub(super) fn alerting(&mut self, doc: &Doc, v: Option<&Value>) -> AlertingOptions {
        let mut a = AlertingOptions::default();
        let base = key(&[], "alerting");
        let Some(m) = v.filter(|v| !v.is_null()) else {
            return a;
        };
        let Some(m) = self.mapping(doc, &base, m) else {
            return a;
        };
        self.check_keys(doc, &base, m, ALERTING_KEYS);
        if let Ok(Some(n)) = self.count(doc, &base, m, "max_attempts", 1..=MAX_ATTEMPTS) {
            a.max_attempts = n as u32;
        }
        if let Ok(Some(Dur(d))) = self.field::<Dur>(doc, &base, m, "retry_base") {
            a.retry_base = d.max(Duration::from_millis(10));
        }
        if let Ok(Some(Dur(d))) = self.field::<Dur>(doc, &base, m, "retry_max") {
            a.retry_max = d.max(a.retry_base);
        }
        a
    }

    pub(super) fn status_page(
        &mut self,
        doc: &Doc,
        v: Option<&Value>,
        instance: &str,
    ) -> StatusPageOptions {
        let mut s = StatusPageOptions {
            title: format!("{instance} status"),
            description: None,
            url: None,
            history_days: 90,
        };
        let base = key(&[], "status_page");
        let Some(m) = v.filter(|v| !v.is_null()) else {
            return s;
        };
        let Some(m) = self.mapping(doc, &base, m) else {
            return s;
        };
        self.check_keys(doc, &base, m, STATUS_PAGE_KEYS);
        if let Ok(Some(t)) = self.field::<String>(doc, &base, m, "title")
            && !t.trim().is_empty()
        {
            s.title = t;
        }
        if let Ok(d) = self.field::<String>(doc, &base, m, "description") {
            s.description = d.filter(|d| !d.trim().is_empty());
        }
        if let Ok(Some(u)) = self.field::<String>(doc, &base, m, "url") {
            if absolute_http(&u) {
                s.url = Some(u.trim_end_matches('/').to_owned())
            } else {
                let msg = "status_page.url must be an absolute http(s) URL";
                self.err(doc, &key(&base, "url"), At::Value, msg);
            }
        }
        if let Ok(Some(n)) = self.count(doc, &base, m, "history_days", 1..=400) {
            s.history_days = n as u32;
        }
        s
    }
}
