//! Reads `watchdog:`: outbound heartbeats, the Watchdog alert, and the peers watched as
//! http probes.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_yaml::{Mapping, Value};

use super::index::{At, Seg};
use super::{Doc, Loader, MIN_EVERY, absolute_http, check_name, expected, idx, key, unknown};
use crate::config::{
    AlertSpec, Defaults, Heartbeat, NotifierConfig, ProbeConfig, RawDigest, Schedule,
    WatchdogAlert, WatchdogOptions,
};
use crate::probe::ProbeSpec;
use crate::units::{Dur, Secret};

pub(super) const HEARTBEAT_KEYS: &[&str] = &["url", "every", "timeout"];
pub(super) const WATCHDOG_KEYS: &[&str] = &[
    "heartbeat",
    "peers",
    "max_lag",
    "max_undelivered_age",
    "alertmanager",
    "blind",
    "reference",
    "lost_after",
];
pub(super) const BLIND_KEYS: &[&str] = &["failing", "min_hosts", "within"];
pub(super) const WATCHDOG_ALERT_KEYS: &[&str] = &["notify", "every"];
pub(super) const PEER_KEYS: &[&str] = &["name", "url", "after", "every", "severity", "labels"];

impl Loader<'_> {
    /// `watchdog:` (its `peers` are read by [`Self::peers`]).
    pub(super) fn watchdog(
        &mut self,
        doc: &Doc,
        v: Option<&Value>,
        notifiers: &BTreeMap<String, NotifierConfig>,
    ) -> WatchdogOptions {
        let mut w = WatchdogOptions::default();
        let base = key(&[], "watchdog");
        let Some(m) = v.filter(|v| !v.is_null()) else {
            return w;
        };
        let Some(m) = self.mapping(doc, &base, m) else {
            return w;
        };
        self.check_keys(doc, &base, m, WATCHDOG_KEYS);
        w.heartbeats = self.heartbeats(doc, v);
        if let Ok(Some(Dur(d))) = self.field::<Dur>(doc, &base, m, "max_lag") {
            w.max_lag = d.max(Duration::from_millis(10));
        }
        if let Ok(Some(Dur(d))) = self.field::<Dur>(doc, &base, m, "max_undelivered_age") {
            w.max_undelivered_age = d.max(Duration::from_secs(1));
        }
        if let Ok(Some(Dur(d))) = self.field::<Dur>(doc, &base, m, "lost_after") {
            if d < Duration::from_secs(2) {
                let msg = "lost_after must be at least 2s (daemons write every 2s)";
                self.err(doc, &key(&base, "lost_after"), At::Value, msg);
            } else {
                w.lost_after = d;
            }
        }
        let bpath = key(&base, "blind");
        if let Some(b) = m.get("blind").filter(|v| !v.is_null())
            && let Some(bm) = self.mapping(doc, &bpath, b)
        {
            self.check_keys(doc, &bpath, bm, BLIND_KEYS);
            if let Ok(Some(s)) = self.field::<String>(doc, &bpath, bm, "failing") {
                match s
                    .trim()
                    .strip_suffix('%')
                    .and_then(|p| p.trim().parse::<u32>().ok())
                {
                    Some(p @ 1..=100) => w.blind.failing = p,
                    _ => {
                        let msg = "blind.failing must be a share from 1% to 100% (e.g. 80%)";
                        self.err(doc, &key(&bpath, "failing"), At::Value, msg);
                    }
                }
            }
            if let Ok(Some(n)) = self.count(doc, &bpath, bm, "min_hosts", 1..=1_000_000) {
                w.blind.min_hosts = n as usize;
            }
            if let Ok(Some(Dur(d))) = self.field::<Dur>(doc, &bpath, bm, "within") {
                w.blind.within = d.max(Duration::from_secs(1));
            }
        }
        if let Ok(Some(urls)) = self.field::<Vec<String>>(doc, &base, m, "reference") {
            for (i, u) in urls.iter().enumerate() {
                if absolute_http(u) {
                    w.reference.push(u.clone());
                } else {
                    let msg = "a reference must be an absolute http(s) URL";
                    self.err(doc, &idx(&key(&base, "reference"), i), At::Value, msg);
                }
            }
        }
        let path = key(&base, "alertmanager");
        if let Some(a) = m.get("alertmanager").filter(|v| !v.is_null())
            && let Some(am) = self.mapping(doc, &path, a)
        {
            self.check_keys(doc, &path, am, WATCHDOG_ALERT_KEYS);
            let every = self
                .field::<Dur>(doc, &path, am, "every")
                .ok()
                .flatten()
                .map_or(Duration::from_secs(60), |d| d.0)
                .max(Duration::from_millis(100));
            if let Some(notify) = self.required::<Vec<String>>(doc, &path, am, "notify") {
                let managers: Vec<&str> = notifiers
                    .iter()
                    .filter(|(_, n)| n.kind == "alertmanager")
                    .map(|(k, _)| k.as_str())
                    .collect();
                let mut ok = true;
                for (j, n) in notify.iter().enumerate() {
                    if managers.contains(&n.as_str()) {
                        continue;
                    }
                    ok = false;
                    let msg = match notifiers.get(n) {
                        Some(other) => format!(
                            "notifier \"{n}\" is of kind {}; the Watchdog alert needs kind alertmanager",
                            other.kind
                        ),
                        None if managers.is_empty() => format!(
                            "unknown notifier \"{n}\" (no notifiers of kind alertmanager are defined)"
                        ),
                        None => unknown("alertmanager notifier", n, &managers),
                    };
                    self.err(doc, &idx(&key(&path, "notify"), j), At::Value, msg);
                }
                if notify.is_empty() {
                    let msg = "notify must name at least one alertmanager notifier";
                    self.err(doc, &key(&path, "notify"), At::Value, msg);
                } else if ok {
                    w.alertmanager = Some(WatchdogAlert { notify, every });
                }
            }
        }
        w
    }

    /// `watchdog.heartbeat`: one mapping or a list of them.
    fn heartbeats(&mut self, doc: &Doc, v: Option<&Value>) -> Vec<Heartbeat> {
        let mut out = Vec::new();
        let Some(Value::Mapping(w)) = v else {
            return out;
        };
        let base = key(&key(&[], "watchdog"), "heartbeat");
        let items: Vec<(Vec<Seg>, &Value)> = match w.get("heartbeat") {
            None | Some(Value::Null) => return out,
            Some(Value::Sequence(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| (idx(&base, i), v))
                .collect(),
            Some(one) => vec![(base.clone(), one)],
        };
        for (path, item) in items {
            let Some(m) = self.mapping(doc, &path, item) else {
                continue;
            };
            self.check_keys(doc, &path, m, HEARTBEAT_KEYS);
            let Some(url) = self.required::<String>(doc, &path, m, "url") else {
                continue;
            };
            if !absolute_http(&url) {
                let msg = "heartbeat url must be an absolute http(s) URL with a host";
                self.err(doc, &key(&path, "url"), At::Value, msg);
                continue;
            }
            let every = self
                .field::<Dur>(doc, &path, m, "every")
                .ok()
                .flatten()
                .map_or(Duration::from_secs(60), |d| d.0)
                .max(Duration::from_millis(100));
            let timeout = self
                .field::<Dur>(doc, &path, m, "timeout")
                .ok()
                .flatten()
                .map_or(Duration::from_secs(10), |d| d.0)
                .min(every);
            out.push(Heartbeat {
                url: Secret::new(url),
                every,
                timeout,
            });
        }
        out
    }

    /// `watchdog.peers`: each peer `probed` becomes an http probe named `peer:<name>` on its
    /// `/healthz`, so a silent or unhealthy peer pages through this daemon's own routes.
    pub(super) fn peers(&mut self, doc: &Doc, v: Option<&Value>, d: &Defaults) -> Vec<ProbeConfig> {
        let mut out = Vec::new();
        let Some(Value::Mapping(w)) = v else {
            return out;
        };
        let base = key(&key(&[], "watchdog"), "peers");
        let items = match w.get("peers") {
            None | Some(Value::Null) => return out,
            Some(Value::Sequence(items)) => items,
            Some(other) => {
                self.err(doc, &base, At::Value, expected("a list of peers", other));
                return out;
            }
        };
        for (i, item) in items.iter().enumerate() {
            let path = idx(&base, i);
            let Some(m) = self.mapping(doc, &path, item) else {
                continue;
            };
            self.check_keys(doc, &path, m, PEER_KEYS);
            let (Some(name), Some(url)) = (
                self.required::<String>(doc, &path, m, "name"),
                self.required::<String>(doc, &path, m, "url"),
            ) else {
                continue;
            };
            let after = self
                .field::<Dur>(doc, &path, m, "after")
                .ok()
                .flatten()
                .map_or(Duration::from_secs(180), |d| d.0);
            // Check a few times within `after`, so `after` is what it takes to page.
            let every = self
                .field::<Dur>(doc, &path, m, "every")
                .ok()
                .flatten()
                .map_or((after / 3).min(Duration::from_secs(30)), |d| d.0)
                .max(MIN_EVERY);
            let severity = self
                .field::<String>(doc, &path, m, "severity")
                .ok()
                .flatten()
                .unwrap_or_else(|| d.alert.severity.clone());
            let labels = self
                .field::<BTreeMap<String, String>>(doc, &path, m, "labels")
                .ok()
                .flatten()
                .unwrap_or_default();
            let probe_name = format!("peer:{name}");
            let name_path = key(&path, "name");
            let pos = doc.index.locate(&name_path, At::Key);
            let source = format!("{}:{}:{}", doc.file.display(), pos.line, pos.col);
            if let Some(msg) = check_name("peer", &name) {
                self.err(doc, &name_path, At::Value, msg);
                continue;
            }
            if let Some(first) = self.names.get(&probe_name) {
                let msg = format!("duplicate peer name \"{name}\" (first defined at {first})");
                self.err(doc, &name_path, At::Key, msg);
                continue;
            }
            self.names.insert(probe_name.clone(), source.clone());
            let url = format!("{}/healthz", url.trim_end_matches('/'));
            let mut raw = Mapping::new();
            let mut request = Mapping::new();
            request.insert("url".into(), url.into());
            raw.insert("request".into(), Value::Mapping(request));
            let mut exp = Mapping::new();
            exp.insert("status".into(), Value::Sequence(vec![200.into()]));
            raw.insert("expect".into(), Value::Mapping(exp));
            let spec = match ProbeSpec::from_value("http", Value::Mapping(raw.clone())) {
                Ok(Ok(spec)) if spec.validate().is_empty() => spec,
                _ => {
                    let msg =
                        "peer url must be the base URL of a probed API, e.g. http://10.0.0.2:9797";
                    self.err(doc, &key(&path, "url"), At::Value, msg);
                    continue;
                }
            };
            let timeout = every.min(d.timeout).min(Duration::from_secs(10));
            let runs = (after.as_millis() / every.as_millis().max(1)).max(1) as u32;
            out.push(ProbeConfig {
                name: probe_name,
                schedule: Schedule::Every(every),
                timeout,
                alert: AlertSpec {
                    after: runs,
                    severity,
                    ..d.alert.clone()
                },
                group: Some("probed".into()),
                public: false,
                title: None,
                description: None,
                labels,
                slo: None,
                locations: Vec::new(),
                spec,
                source,
                raw: RawDigest::of(&Value::Mapping(raw)),
            });
        }
        out
    }
}
