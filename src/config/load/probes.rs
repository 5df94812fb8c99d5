//! Reads `defaults:`, `probes:` (a list, or a file or folder of probe files) and
//! `maintenance:` (the windows that mute pages for probes).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_yaml::Value;

use super::index::{At, Seg};
use super::{
    Doc, Loader, MIN_EVERY, check_name, expected, idx, io_words, key, read_config_file, resolve,
    unknown,
};
use crate::config::{
    AlertSpec, Defaults, Maintenance, MaintenanceTime, ProbeConfig, RawDigest, Schedule,
};
use crate::probe::{KINDS, ProbeSpec};
use crate::units::{Dur, format_duration};

pub(super) const DEFAULTS_KEYS: &[&str] = &[
    "every",
    "timeout",
    "alert",
    "max_concurrent",
    "max_per_host",
    "nameservers",
];
pub(super) const ALERT_KEYS: &[&str] = &[
    "after",
    "within",
    "recover_after",
    "severity",
    "resolve_hold",
    "locations",
];
pub(super) const MAINTENANCE_KEYS: &[&str] =
    &["name", "probes", "cron", "duration", "start", "end"];
/// Keys every probe may have; the rest belongs to its kind.
pub(super) const PROBE_KEYS: &[&str] = &[
    "name",
    "kind",
    "every",
    "cron",
    "timeout",
    "alert",
    "group",
    "public",
    "labels",
    "description",
    "title",
    "slo",
    "locations",
];
/// Most checks in flight at once, in all or against one host (each holds a socket).
const MAX_CONCURRENT: u64 = 100_000;
/// Most runs `alert.after` and `alert.recover_after` may count.
const MAX_RUNS: u64 = 10_000;

impl Loader<'_> {
    pub(super) fn defaults(&mut self, doc: &Doc, v: Option<&Value>) -> Defaults {
        let mut d = Defaults::default();
        let base = key(&[], "defaults");
        let Some(m) = v.filter(|v| !v.is_null()) else {
            return d;
        };
        let Some(m) = self.mapping(doc, &base, m) else {
            return d;
        };
        self.check_keys(doc, &base, m, DEFAULTS_KEYS);
        if let Ok(Some(Dur(every))) = self.field::<Dur>(doc, &base, m, "every") {
            if let Some(msg) = check_every(every) {
                self.err(doc, &key(&base, "every"), At::Value, msg);
            } else {
                d.every = every;
            }
        }
        if let Ok(Some(Dur(timeout))) = self.field::<Dur>(doc, &base, m, "timeout") {
            if timeout.is_zero() {
                let msg = "timeout must be greater than zero";
                self.err(doc, &key(&base, "timeout"), At::Value, msg);
            } else {
                d.timeout = timeout;
            }
        }
        if let Some(a) = m.get("alert").filter(|v| !v.is_null()) {
            d.alert = self.alert(doc, &key(&base, "alert"), a, &d.alert);
        }
        for (name, slot) in [
            ("max_concurrent", &mut d.max_concurrent),
            ("max_per_host", &mut d.max_per_host),
        ] {
            if let Ok(Some(n)) = self.count(doc, &base, m, name, 1..=MAX_CONCURRENT) {
                *slot = n as usize;
            }
        }
        if let Ok(Some(list)) = self.field::<Vec<String>>(doc, &base, m, "nameservers") {
            let path = key(&base, "nameservers");
            for (i, s) in list.iter().enumerate() {
                let addr = s
                    .parse::<SocketAddr>()
                    .ok()
                    .or_else(|| s.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 53)));
                match addr {
                    Some(a) => d.nameservers.push(a),
                    None => {
                        let msg =
                            format!("invalid nameserver {s:?} (write ip:port, e.g. 10.0.0.53:53)");
                        self.err(doc, &idx(&path, i), At::Value, msg);
                    }
                }
            }
        }
        d
    }

    /// An `alert:` mapping at `path`, over `base`.
    fn alert(&mut self, doc: &Doc, path: &[Seg], v: &Value, base: &AlertSpec) -> AlertSpec {
        let mut a = base.clone();
        let Some(m) = self.mapping(doc, path, v) else {
            return a;
        };
        self.check_keys(doc, path, m, ALERT_KEYS);
        for (name, slot) in [
            ("after", &mut a.after),
            ("recover_after", &mut a.recover_after),
        ] {
            if let Ok(Some(n)) = self.count(doc, path, m, name, 1..=MAX_RUNS) {
                *slot = n as u32;
            }
        }
        if let Ok(Some(n)) = self.count(doc, path, m, "within", 1..=64) {
            let n = n as u32;
            if n < a.after {
                let msg = format!(
                    "alert.within ({n}) is smaller than alert.after ({}): it could never trip",
                    a.after
                );
                self.err(doc, &key(path, "within"), At::Value, msg);
            } else {
                a.within = Some(n);
            }
        }
        if let Ok(Some(Dur(h))) = self.field::<Dur>(doc, path, m, "resolve_hold") {
            a.resolve_hold = Some(h);
        }
        if let Some(v) = m.get("locations").filter(|v| !v.is_null()) {
            match parse_quorum(v) {
                Ok(q) => a.locations = Some(q),
                Err(msg) => self.err(doc, &key(path, "locations"), At::Value, msg),
            }
        }
        match self.field::<String>(doc, path, m, "severity") {
            Ok(Some(s)) if s.trim().is_empty() => {
                self.err(
                    doc,
                    &key(path, "severity"),
                    At::Value,
                    "alert.severity is empty",
                );
            }
            Ok(Some(s)) => a.severity = s,
            _ => {}
        }
        a
    }

    /// `probes:` of the main file: a list, or a file or folder of probe files.
    pub(super) fn probes(
        &mut self,
        doc: &Doc,
        v: Option<&Value>,
        d: &Defaults,
    ) -> Vec<ProbeConfig> {
        let mut out = Vec::new();
        let base = key(&[], "probes");
        match v {
            None | Some(Value::Null) => {}
            Some(Value::Sequence(items)) => self.probe_list(doc, &base, items, d, &mut out),
            Some(Value::String(p)) => {
                for file in self.probe_files(doc, &base, p) {
                    self.probe_file(doc, &base, &file, d, &mut out);
                }
            }
            Some(other) => {
                let msg = expected("a list of probes, or a file or folder of them", other);
                self.err(doc, &base, At::Value, msg);
            }
        }
        out
    }

    /// The probe files `p` names: itself, or the `*.yaml` and `*.yml` of a folder, by name.
    fn probe_files(&mut self, doc: &Doc, at: &[Seg], p: &str) -> Vec<PathBuf> {
        let full = self.dir.join(p);
        let cannot =
            |e: std::io::Error| format!("cannot read {:?}: {}", full.display(), io_words(&e));
        match std::fs::metadata(&full) {
            Err(e) => {
                self.err(doc, at, At::Value, cannot(e));
                Vec::new()
            }
            Ok(meta) if meta.is_dir() => match std::fs::read_dir(&full) {
                Err(e) => {
                    self.err(doc, at, At::Value, cannot(e));
                    Vec::new()
                }
                Ok(entries) => {
                    let mut files: Vec<PathBuf> = entries
                        .filter_map(|e| e.ok())
                        .map(|e| e.path())
                        .filter(|f| {
                            f.is_file() && f.extension().is_some_and(|x| x == "yaml" || x == "yml")
                        })
                        .collect();
                    files.sort();
                    files
                }
            },
            Ok(_) => vec![full],
        }
    }

    /// One probe file: a mapping with a `probes:` list.
    fn probe_file(
        &mut self,
        main: &Doc,
        at: &[Seg],
        file: &Path,
        d: &Defaults,
        out: &mut Vec<ProbeConfig>,
    ) {
        let text = match read_config_file(file) {
            Ok(t) => t,
            Err(e) => {
                let msg = format!("cannot read {:?}: {e}", file.display());
                self.err(main, at, At::Value, msg);
                return;
            }
        };
        let Some(doc) = self.parse(&text, file.to_path_buf()) else {
            return;
        };
        let root = match &doc.value {
            Value::Null => return,
            Value::Mapping(m) => m,
            other => {
                let msg = expected("a mapping with a \"probes\" list", other);
                self.err(&doc, &[], At::Value, msg);
                return;
            }
        };
        self.check_keys(&doc, &[], root, &["probes"]);
        let base = key(&[], "probes");
        match root.get("probes") {
            None | Some(Value::Null) => {}
            Some(Value::Sequence(items)) => self.probe_list(&doc, &base, items, d, out),
            Some(other) => {
                self.err(&doc, &base, At::Value, expected("a list of probes", other));
            }
        }
    }

    fn probe_list(
        &mut self,
        doc: &Doc,
        base: &[Seg],
        items: &[Value],
        d: &Defaults,
        out: &mut Vec<ProbeConfig>,
    ) {
        for (i, item) in items.iter().enumerate() {
            if let Some(p) = self.probe(doc, &idx(base, i), item, d) {
                out.push(p);
            }
        }
    }

    /// One probe at `path`. `None` when it has any error (all of them reported).
    fn probe(&mut self, doc: &Doc, path: &[Seg], v: &Value, d: &Defaults) -> Option<ProbeConfig> {
        let before = self.errors.len();
        let m = self.mapping(doc, path, v)?;
        let name_path = key(path, "name");
        let pos = doc.index.locate(&name_path, At::Key);
        let source = format!("{}:{}:{}", doc.file.display(), pos.line, pos.col);

        let name = self.required::<String>(doc, path, m, "name");
        if let Some(n) = &name {
            if let Some(msg) = check_name("probe", n) {
                self.err(doc, &name_path, At::Value, msg);
            } else if let Some(first) = self.names.get(n) {
                let msg = format!("duplicate probe name \"{n}\" (first defined at {first})");
                self.err(doc, &name_path, At::Key, msg);
            } else {
                self.names.insert(n.clone(), source.clone());
            }
        }
        let kind = self.required::<String>(doc, path, m, "kind").filter(|k| {
            let known = KINDS.contains(&k.as_str());
            if !known {
                let msg = unknown("kind", k, KINDS);
                self.err(doc, &key(path, "kind"), At::Value, msg);
            }
            known
        });

        // When: `every` or `cron`, else the default interval.
        let every = self.field::<Dur>(doc, path, m, "every");
        let cron = self.field::<String>(doc, path, m, "cron");
        let schedule = match (every, cron) {
            (Ok(Some(_)), Ok(Some(_))) => {
                let msg = "\"every\" and \"cron\" are mutually exclusive; keep one";
                self.err(doc, &key(path, "cron"), At::Key, msg);
                None
            }
            (Ok(Some(Dur(e))), Ok(None)) => match check_every(e) {
                Some(msg) => {
                    self.err(doc, &key(path, "every"), At::Value, msg);
                    None
                }
                None => Some(Schedule::Every(e)),
            },
            (Ok(None), Ok(Some(expr))) => match parse_cron(&expr) {
                Ok(s) => Some(s),
                Err(msg) => {
                    self.err(doc, &key(path, "cron"), At::Value, msg);
                    None
                }
            },
            (Ok(None), Ok(None)) => Some(Schedule::Every(d.every)),
            _ => None,
        };
        let interval = schedule.as_ref().map(Schedule::interval);
        let timeout = match self.field::<Dur>(doc, path, m, "timeout") {
            Ok(Some(Dur(t))) => {
                let at = key(path, "timeout");
                if t.is_zero() {
                    self.err(doc, &at, At::Value, "timeout must be greater than zero");
                } else if let Some(iv) = interval.filter(|iv| t > *iv) {
                    let msg = format!(
                        "timeout {} is longer than the interval {}",
                        fmt_dur(t),
                        fmt_dur(iv)
                    );
                    self.err(doc, &at, At::Value, msg);
                }
                t
            }
            Ok(None) => interval.map_or(d.timeout, |iv| d.timeout.min(iv)),
            Err(()) => d.timeout,
        };
        let alert = match m.get("alert").filter(|v| !v.is_null()) {
            Some(a) => self.alert(doc, &key(path, "alert"), a, &d.alert),
            None => d.alert.clone(),
        };
        let group = self.field::<String>(doc, path, m, "group");
        let public = self.field::<bool>(doc, path, m, "public");
        let labels = self.field::<BTreeMap<String, String>>(doc, path, m, "labels");
        let description = self.field::<String>(doc, path, m, "description");
        let title = self.field::<String>(doc, path, m, "title");
        let locations = self.field::<Vec<String>>(doc, path, m, "locations");
        if let Ok(Some(list)) = &locations {
            let at = key(path, "locations");
            if list.is_empty() {
                let msg = "locations is empty: the probe would run nowhere (leave it out to run \
                           it everywhere)";
                self.err(doc, &at, At::Value, msg);
            }
            for (i, l) in list.iter().enumerate() {
                if let Some(msg) = check_name("location", l) {
                    self.err(doc, &idx(&at, i), At::Value, msg);
                } else if list[..i].contains(l) {
                    let msg = format!("location {l:?} is listed twice");
                    self.err(doc, &idx(&at, i), At::Value, msg);
                }
            }
        }
        let slo = self.field::<crate::slo::SloSpec>(doc, path, m, "slo");
        if let Ok(Some(spec)) = &slo {
            let base = key(path, "slo");
            for (keys, msg) in spec.validate() {
                let mut at = base.clone();
                for k in keys {
                    at = key(&at, k);
                }
                self.err(doc, &at, At::Value, msg);
            }
        }

        // The rest is the kind's.
        let mut rest = m.clone();
        for k in PROBE_KEYS {
            rest.shift_remove(*k);
        }
        let spec = kind.and_then(|k| match ProbeSpec::from_value(&k, Value::Mapping(rest)) {
            Ok(Ok(mut spec)) => {
                // Relative paths in a probe are relative to the file that holds it.
                spec.resolve_paths(doc.file.parent().unwrap_or(Path::new("")));
                for fe in spec.validate() {
                    let mut p = path.to_vec();
                    p.extend(resolve(v, &fe.path));
                    self.err(doc, &p, At::Value, fe.message);
                }
                // Pings find their probe by token: two probes with one token would send every
                // ping to the first, and the second would page for pings it never saw.
                if let (ProbeSpec::Push(push), Some(n)) = (&spec, &name) {
                    let token = push.token.expose().to_string();
                    match self.push_tokens.get(&token) {
                        Some((first, at)) => {
                            let msg = format!(
                                "push token already used by probe \"{first}\" (defined at {at}); \
                                 every push probe needs a token of its own"
                            );
                            self.err(doc, &key(path, "token"), At::Value, msg);
                        }
                        None => {
                            self.push_tokens.insert(token, (n.clone(), source.clone()));
                        }
                    }
                }
                Some(spec)
            }
            Ok(Err(e)) => {
                self.serde_error(doc, path, &e, PROBE_KEYS);
                None
            }
            Err(()) => None,
        });

        if self.errors.len() > before {
            return None;
        }
        Some(ProbeConfig {
            name: name?,
            schedule: schedule?,
            timeout,
            alert,
            group: group.ok()?,
            public: public.ok()?.unwrap_or(false),
            title: title.ok()?.filter(|t| !t.trim().is_empty()),
            description: description.ok()?.filter(|t| !t.trim().is_empty()),
            labels: labels.ok()?.unwrap_or_default(),
            slo: slo.ok()?,
            locations: locations.ok()?.unwrap_or_default(),
            spec: spec?,
            source,
            raw: RawDigest::of(v),
        })
    }

    pub(super) fn maintenance(&mut self, doc: &Doc, v: Option<&Value>) -> Vec<Maintenance> {
        let mut out = Vec::new();
        let base = key(&[], "maintenance");
        let items = match v {
            None | Some(Value::Null) => return out,
            Some(Value::Sequence(items)) => items,
            Some(other) => {
                let msg = expected("a list of maintenance windows", other);
                self.err(doc, &base, At::Value, msg);
                return out;
            }
        };
        for (i, item) in items.iter().enumerate() {
            let path = idx(&base, i);
            let Some(m) = self.mapping(doc, &path, item) else {
                continue;
            };
            self.check_keys(doc, &path, m, MAINTENANCE_KEYS);
            let name = self
                .field::<String>(doc, &path, m, "name")
                .ok()
                .flatten()
                .unwrap_or_else(|| format!("maintenance #{}", i + 1));
            let probes = self
                .field::<Vec<String>>(doc, &path, m, "probes")
                .ok()
                .flatten()
                .unwrap_or_default();
            let cron = self.field::<String>(doc, &path, m, "cron").ok().flatten();
            let duration = self.field::<Dur>(doc, &path, m, "duration").ok().flatten();
            let start = self.field::<String>(doc, &path, m, "start").ok().flatten();
            let end = self.field::<String>(doc, &path, m, "end").ok().flatten();
            let when = match (cron, duration, start, end) {
                (Some(expr), Some(Dur(duration)), None, None) => match parse_cron(&expr) {
                    Ok(Schedule::Cron { expr, schedule }) => Some(MaintenanceTime::Cron {
                        expr,
                        schedule,
                        duration,
                    }),
                    Ok(Schedule::Every(_)) => None,
                    Err(e) => {
                        self.err(doc, &key(&path, "cron"), At::Value, e);
                        None
                    }
                },
                (None, None, Some(a), Some(b)) => {
                    let t = |s: &str| {
                        chrono::DateTime::parse_from_rfc3339(s)
                            .map(|t| t.timestamp_millis())
                            .map_err(|_| {
                                format!(
                                    "invalid time {s:?} (write RFC 3339, e.g. 2026-12-01T22:00:00Z)"
                                )
                            })
                    };
                    match (t(&a), t(&b)) {
                        (Ok(start), Ok(end)) if start < end => {
                            Some(MaintenanceTime::Fixed { start, end })
                        }
                        (Ok(_), Ok(_)) => {
                            self.err(doc, &key(&path, "end"), At::Value, "end is not after start");
                            None
                        }
                        (ea, eb) => {
                            for (k, e) in [("start", ea), ("end", eb)] {
                                if let Err(e) = e {
                                    self.err(doc, &key(&path, k), At::Value, e);
                                }
                            }
                            None
                        }
                    }
                }
                _ => {
                    let msg =
                        "a maintenance window needs either cron and duration, or start and end";
                    self.err(doc, &path, At::Value, msg);
                    None
                }
            };
            if let Some(when) = when {
                out.push(Maintenance { name, probes, when });
            }
        }
        out
    }
}

fn check_every(every: Duration) -> Option<String> {
    (every < MIN_EVERY).then(|| {
        format!(
            "every {} is shorter than the minimum of {}",
            fmt_dur(every),
            fmt_dur(MIN_EVERY)
        )
    })
}

/// A cron expression: 6 or 7 fields (seconds first), or 5 (minutes first, seconds 0).
fn parse_cron(expr: &str) -> Result<Schedule, String> {
    let full = if expr.split_whitespace().count() == 5 {
        format!("0 {}", expr.trim())
    } else {
        expr.trim().to_string()
    };
    match full.parse::<cron::Schedule>() {
        Ok(s) => Ok(Schedule::Cron {
            expr: expr.to_string(),
            schedule: Box::new(s),
        }),
        Err(e) => {
            // The crate's message is the expression, a caret line, then the reason.
            let e = e.to_string();
            let reason = e
                .lines()
                .skip(2)
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            Err(if reason.is_empty() {
                format!("invalid cron expression {expr:?} (write 5 fields, e.g. \"*/5 * * * *\")")
            } else {
                format!("invalid cron expression {expr:?}: {reason}")
            })
        }
    }
}

fn fmt_dur(d: Duration) -> String {
    if d.is_zero() {
        "0s".into()
    } else {
        format_duration(d)
    }
}

/// `alert.locations`: a whole number of locations (1 to 1000), or a share of those reporting
/// (`50%`, 1% to 100%).
fn parse_quorum(v: &Value) -> Result<crate::config::Quorum, String> {
    use crate::config::Quorum;
    let bad = || {
        "alert.locations must be a number of locations (e.g. 2) or a share of those \
         reporting (e.g. 50%)"
            .to_string()
    };
    match v {
        Value::Number(n) => match n.as_u64() {
            Some(n @ 1..=1000) => Ok(Quorum::Count(n as u32)),
            _ => Err("alert.locations must be a whole number from 1 to 1000".into()),
        },
        Value::String(s) => {
            let p = s.trim().strip_suffix('%').ok_or_else(bad)?;
            match p.trim().parse::<u32>() {
                Ok(p @ 1..=100) => Ok(Quorum::Percent(p)),
                _ => Err("alert.locations as a share must be from 1% to 100%".into()),
            }
        }
        _ => Err(bad()),
    }
}
