//! Reading and validating config files. See the module docs of `config`.
//!
//! Each file goes through the same steps: serde_yaml parses it into a `Value` (a syntax
//! error stops that file, at serde_yaml's own position); [`index::Index`] parses it again
//! with yaml-rust2 to learn where each key and value sits; [`interp::Interp`] expands
//! `${VAR}` and `x_file` keys; then each section is checked, every problem pushed as a
//! [`ConfigError`] located through the index, and checking goes on. Only a config without a
//! single error comes out as a [`Config`].
//!
//! Values that came from the environment or from files never appear in a message: every
//! message is scrubbed of them before it is returned.

mod index;
mod interp;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_yaml::{Mapping, Value};

use self::index::{At, Index, Pos, Seg};
use self::interp::{Interp, key_text};
use super::{
    AlertSpec, AlertingOptions, Config, ConfigError, ConfigErrors, Defaults, EscalationStep,
    Maintenance, MaintenanceTime, NOTIFIER_KINDS, NotifierConfig, ProbeConfig, Route, Schedule,
    StoreOptions,
};
use crate::probe::{KINDS, ProbeSpec};
use crate::units::{Dur, Secret, format_duration};

const TOP_KEYS: &[&str] = &[
    "listen",
    "data_dir",
    "admin_token",
    "probes",
    "defaults",
    "store",
    "notifiers",
    "routes",
    "watchdog",
    "maintenance",
    "alerting",
    "instance",
    "external_url",
    "status_page",
];
const STATUS_PAGE_KEYS: &[&str] = &["title", "description", "url", "history_days"];
const DEFAULTS_KEYS: &[&str] = &[
    "every",
    "timeout",
    "alert",
    "max_concurrent",
    "max_per_host",
    "nameservers",
];
const ALERT_KEYS: &[&str] = &[
    "after",
    "within",
    "recover_after",
    "severity",
    "resolve_hold",
];
const STORE_KEYS: &[&str] = &["retention", "queue", "buffer"];
const ROUTE_KEYS: &[&str] = &[
    "match",
    "notify",
    "fallback",
    "escalate",
    "remind_every",
    "resolve",
];
const STEP_KEYS: &[&str] = &["after", "notify"];
const MAINTENANCE_KEYS: &[&str] = &["name", "probes", "cron", "duration", "start", "end"];
const ALERTING_KEYS: &[&str] = &["max_attempts", "retry_base", "retry_max"];
const HEARTBEAT_KEYS: &[&str] = &["url", "every", "timeout"];
const WATCHDOG_KEYS: &[&str] = &[
    "heartbeat",
    "peers",
    "max_lag",
    "max_undelivered_age",
    "alertmanager",
];
const WATCHDOG_ALERT_KEYS: &[&str] = &["notify", "every"];
const PEER_KEYS: &[&str] = &["name", "url", "after", "every", "severity", "labels"];
/// Keys every probe may have; the rest belongs to its kind.
const PROBE_KEYS: &[&str] = &[
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
];
/// The shortest interval a probe may run at.
const MIN_EVERY: Duration = Duration::from_millis(100);
/// The store's memory buffer holds at least one full batch.
const MIN_STORE_BUFFER: usize = 4096;
/// Most results the store's memory buffer holds while the disk cannot be written (about
/// 2 GB of memory at its fullest).
const MAX_STORE_BUFFER: u64 = 10_000_000;
/// Most results queued for the store's writer.
const MAX_STORE_QUEUE: u64 = 10_000_000;
/// Most checks in flight at once, in all or against one host (each holds a socket).
const MAX_CONCURRENT: u64 = 100_000;
/// Most runs `alert.after` and `alert.recover_after` may count.
const MAX_RUNS: u64 = 10_000;
/// Most attempts at one delivery.
const MAX_ATTEMPTS: u64 = 1_000;

/// Most bytes of one config or probe file (about 150,000 probes); the rest is never read, so
/// `probes: /dev/zero` is an error, not all of memory.
pub const MAX_CONFIG_FILE: u64 = 32 << 20;

/// Deepest nesting of mappings and sequences in a config file. Real configs stay under 10;
/// the position index costs time with the square of the depth.
pub const MAX_DEPTH: usize = 64;

/// Loads `path` (and the probes file or folder it names), interpolates, validates.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    match read_config_file(path) {
        Ok(text) => load_str(&text, path, &|k| std::env::var(k).ok()),
        Err(e) => Err(ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            line: 1,
            col: 1,
            message: format!("cannot read the config file: {e}"),
        }])),
    }
}

/// Loads from a string, as if read from `path` (which names the file in messages and
/// anchors relative paths). `env` stands in for the process environment.
pub fn load_str(
    text: &str,
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let mut l = Loader {
        env,
        dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
        errors: Vec::new(),
        secrets: Vec::new(),
        files: 0,
        names: HashMap::new(),
        push_tokens: HashMap::new(),
    };
    let config = l.config(text, path);
    l.finish(config)
}

/// One parsed and interpolated file.
struct Doc {
    file: PathBuf,
    /// Order of the file in the load, to sort messages file by file.
    ord: usize,
    value: Value,
    index: Index,
    /// Paths whose interpolation failed (already reported): no more messages about them.
    failed: Vec<Vec<Seg>>,
}

struct Loader<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
    /// The main config's directory: relative paths start here.
    dir: PathBuf,
    errors: Vec<(usize, ConfigError)>,
    /// Values from the environment and from files, never to be shown.
    secrets: Vec<String>,
    files: usize,
    /// Probe names seen so far, with where each was defined.
    names: HashMap<String, String>,
    /// Push tokens seen so far: the probe that holds each, and where it was defined.
    push_tokens: HashMap<String, (String, String)>,
}

/// A key of a mapping: absent, present but wrong (already reported), or its value.
type Field<T> = Result<Option<T>, ()>;

impl Loader<'_> {
    fn config(&mut self, text: &str, path: &Path) -> Option<Config> {
        let doc = self.parse(text, path.to_path_buf())?;
        let root = match &doc.value {
            Value::Mapping(m) => m.clone(),
            Value::Null => Mapping::new(),
            other => {
                self.err(&doc, &[], At::Value, expected("a mapping", other));
                return None;
            }
        };
        self.check_keys(&doc, &[], &root, TOP_KEYS);

        let listen = self
            .field::<String>(&doc, &[], &root, "listen")
            .ok()
            .flatten()
            .and_then(|s| match s.parse::<SocketAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    let msg = format!(
                        "invalid listen address {s:?} (write ip:port, e.g. 127.0.0.1:9797)"
                    );
                    self.err(&doc, &key(&[], "listen"), At::Value, msg);
                    None
                }
            })
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 9797)));
        let data_dir = match self.field::<String>(&doc, &[], &root, "data_dir") {
            Ok(Some(d)) => self.dir.join(d),
            _ => self.dir.join("data"),
        };
        let admin_token = match self.field::<String>(&doc, &[], &root, "admin_token") {
            Ok(Some(t)) if t.trim().is_empty() => {
                let msg = if t.is_empty() {
                    "admin_token is empty"
                } else {
                    "admin_token is only whitespace (no bearer token could ever match it)"
                };
                self.err(&doc, &key(&[], "admin_token"), At::Value, msg);
                None
            }
            Ok(Some(t))
                if t.trim() != t || !t.chars().all(|c| c.is_ascii_graphic() || c == ' ') =>
            {
                let msg = "admin_token must be printable ASCII without spaces at its ends \
                           (an Authorization header cannot carry anything else)";
                self.err(&doc, &key(&[], "admin_token"), At::Value, msg);
                None
            }
            Ok(t) => t.map(Secret::new),
            Err(()) => None,
        };
        let defaults = self.defaults(&doc, root.get("defaults"));
        let store = self.store(&doc, root.get("store"));
        let notifiers = self.notifiers(&doc, root.get("notifiers"));
        let names: Vec<String> = match root.get("notifiers") {
            Some(Value::Mapping(m)) => m.keys().map(key_text).collect(),
            _ => Vec::new(),
        };
        let routes = self.routes(&doc, root.get("routes"), &names);
        let mut probes = self.probes(&doc, root.get("probes"), &defaults);
        probes.extend(self.peers(&doc, root.get("watchdog"), &defaults));
        let watchdog = self.watchdog(&doc, root.get("watchdog"), &notifiers);
        let maintenance = self.maintenance(&doc, root.get("maintenance"));
        let alerting = self.alerting(&doc, root.get("alerting"));
        let instance = match self.field::<String>(&doc, &[], &root, "instance") {
            Ok(Some(i)) if !i.trim().is_empty() => i,
            _ => hostname(),
        };
        let external_url = match self.field::<String>(&doc, &[], &root, "external_url") {
            Ok(Some(u)) => match absolute_http(&u) {
                true => Some(u.trim_end_matches('/').to_owned()),
                false => {
                    let msg = "external_url must be an absolute http(s) URL";
                    self.err(&doc, &key(&[], "external_url"), At::Value, msg);
                    None
                }
            },
            _ => None,
        };
        let status_page = self.status_page(&doc, root.get("status_page"), &instance);
        Some(Config {
            status_page,
            maintenance,
            alerting,
            instance,
            external_url,
            path: path.to_path_buf(),
            listen,
            data_dir,
            admin_token,
            defaults,
            store,
            probes,
            notifiers,
            routes,
            watchdog,
        })
    }

    /// Parses, indexes and interpolates one file. `None` after a syntax error.
    fn parse(&mut self, text: &str, file: PathBuf) -> Option<Doc> {
        let ord = self.files;
        self.files += 1;
        if let Some(pos) = too_deep(text, MAX_DEPTH) {
            let msg = format!("nested deeper than {MAX_DEPTH} levels");
            self.push(ord, &file, pos, msg);
            return None;
        }
        let mut index = Index::build(text);
        let mut value = match serde_yaml::from_str::<Value>(text) {
            Ok(v) => v,
            Err(e) => {
                let (pos, message) = syntax_error(&e, text, &index);
                self.push(ord, &file, pos, message);
                return None;
            }
        };
        let mut interp = Interp {
            env: self.env,
            dir: &self.dir,
            secrets: &mut self.secrets,
            errors: Vec::new(),
            failed: Vec::new(),
        };
        interp.run(&mut value, &mut index);
        let (errors, failed) = (interp.errors, interp.failed);
        let merged = value.apply_merge();
        for (path, at, message) in errors {
            let pos = index.locate(&path, at);
            self.push(ord, &file, pos, message);
        }
        let doc = Doc {
            file,
            ord,
            value,
            index,
            failed,
        };
        if let Err(e) = merged {
            self.err(&doc, &[], At::Value, e.to_string());
        }
        Some(doc)
    }

    fn push(&mut self, ord: usize, file: &Path, pos: Pos, message: String) {
        self.errors.push((
            ord,
            ConfigError {
                file: file.to_path_buf(),
                line: pos.line,
                col: pos.col,
                message,
            },
        ));
    }

    /// Reports `message` at `path` (its key or its value) in `doc`.
    fn err(&mut self, doc: &Doc, path: &[Seg], at: At, message: impl Into<String>) {
        if doc.failed.iter().any(|f| path.starts_with(f)) {
            return;
        }
        let pos = doc.index.locate(path, at);
        self.push(doc.ord, &doc.file, pos, message.into());
    }

    /// Reports each key of `m` not in `valid`, with a "did you mean". At the top of a file,
    /// keys starting with `x-` are free, to hold anchors for `<<: *merge`.
    fn check_keys(&mut self, doc: &Doc, path: &[Seg], m: &Mapping, valid: &[&str]) {
        for k in m.keys() {
            let k = key_text(k);
            if path.is_empty() && k.starts_with("x-") {
                continue;
            }
            if !valid.contains(&k.as_str()) {
                let at = key(path, &k);
                let msg = unknown_key(doc, &at, &k, valid);
                self.err(doc, &at, At::Key, msg);
            }
        }
    }

    /// `v` as a mapping, or an error at `path`.
    fn mapping<'v>(&mut self, doc: &Doc, path: &[Seg], v: &'v Value) -> Option<&'v Mapping> {
        match v {
            Value::Mapping(m) => Some(m),
            other => {
                self.err(doc, path, At::Value, expected("a mapping", other));
                None
            }
        }
    }

    /// Deserializes `v` (found at `path`), reporting a failure at the path serde names.
    fn typed<T: DeserializeOwned>(&mut self, doc: &Doc, path: &[Seg], v: &Value) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(v.clone()) {
            Ok(t) => Some(t),
            Err(e) => {
                self.serde_error(doc, path, &e, &[]);
                None
            }
        }
    }

    /// The key `name` of `m` (at `path`), deserialized. A null value counts as absent.
    fn field<T: DeserializeOwned>(
        &mut self,
        doc: &Doc,
        path: &[Seg],
        m: &Mapping,
        name: &str,
    ) -> Field<T> {
        match m.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => self.typed(doc, &key(path, name), v).map(Some).ok_or(()),
        }
    }

    /// A required key: absent is an error at the mapping.
    fn required<T: DeserializeOwned>(
        &mut self,
        doc: &Doc,
        path: &[Seg],
        m: &Mapping,
        name: &str,
    ) -> Option<T> {
        match self.field(doc, path, m, name) {
            Ok(Some(v)) => Some(v),
            Ok(None) => {
                self.err(
                    doc,
                    path,
                    At::Key,
                    format!("missing required key \"{name}\""),
                );
                None
            }
            Err(()) => None,
        }
    }

    /// A whole number at key `name` of `m`, within `range`: anything else (a fraction, a
    /// negative number, one past the range, however many digits) is an error at the value
    /// saying the range. A null value counts as absent.
    fn count(
        &mut self,
        doc: &Doc,
        path: &[Seg],
        m: &Mapping,
        name: &str,
        range: std::ops::RangeInclusive<u64>,
    ) -> Field<u64> {
        // Under `alert:` the key is named with its section, as the other alert messages do.
        let label = match path.last() {
            Some(Seg::Key(k)) if k == "alert" => format!("alert.{name}"),
            _ => name.to_string(),
        };
        let v = match m.get(name) {
            None | Some(Value::Null) => return Ok(None),
            Some(v) => v,
        };
        let at = key(path, name);
        match v {
            Value::Number(n) => match n.as_u64().filter(|n| range.contains(n)) {
                Some(n) => Ok(Some(n)),
                None => {
                    let (lo, hi) = (range.start(), range.end());
                    let msg = format!("{label} must be a whole number from {lo} to {hi}");
                    self.err(doc, &at, At::Value, msg);
                    Err(())
                }
            },
            other => {
                let msg = expected("a number", other);
                self.err(doc, &at, At::Value, msg);
                Err(())
            }
        }
    }

    /// Reports a serde error found under `base`. `extra` are keys also valid beside the ones
    /// serde lists, for an unknown key directly under `base`.
    fn serde_error(
        &mut self,
        doc: &Doc,
        base: &[Seg],
        e: &serde_path_to_error::Error<serde_yaml::Error>,
        extra: &[&str],
    ) {
        let mut path = base.to_vec();
        for s in e.path().iter() {
            match s {
                serde_path_to_error::Segment::Seq { index } => path.push(Seg::Idx(*index)),
                serde_path_to_error::Segment::Map { key } => path.push(Seg::Key(key.clone())),
                serde_path_to_error::Segment::Enum { .. }
                | serde_path_to_error::Segment::Unknown => {}
            }
        }
        let extra = if path.len() == base.len() + 1 {
            extra
        } else {
            &[]
        };
        let (message, at) = rewrite_serde(doc, &path, &e.inner().to_string(), extra);
        self.err(doc, &path, at, message);
    }

    fn defaults(&mut self, doc: &Doc, v: Option<&Value>) -> Defaults {
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

    fn maintenance(&mut self, doc: &Doc, v: Option<&Value>) -> Vec<Maintenance> {
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

    /// `watchdog.peers`: each peer `probed` becomes an http probe named `peer:<name>` on its
    /// `/healthz`, so a silent or unhealthy peer pages through this daemon's own routes.
    fn peers(&mut self, doc: &Doc, v: Option<&Value>, d: &Defaults) -> Vec<ProbeConfig> {
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
                spec,
                source,
                raw: Value::Mapping(raw),
            });
        }
        out
    }

    /// `watchdog:` (its `peers` are read by [`Self::peers`]).
    fn watchdog(
        &mut self,
        doc: &Doc,
        v: Option<&Value>,
        notifiers: &BTreeMap<String, NotifierConfig>,
    ) -> super::WatchdogOptions {
        let mut w = super::WatchdogOptions::default();
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
                    w.alertmanager = Some(super::WatchdogAlert { notify, every });
                }
            }
        }
        w
    }

    /// `watchdog.heartbeat`: one mapping or a list of them.
    fn heartbeats(&mut self, doc: &Doc, v: Option<&Value>) -> Vec<super::Heartbeat> {
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
            out.push(super::Heartbeat {
                url: Secret::new(url),
                every,
                timeout,
            });
        }
        out
    }

    fn alerting(&mut self, doc: &Doc, v: Option<&Value>) -> AlertingOptions {
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

    fn status_page(
        &mut self,
        doc: &Doc,
        v: Option<&Value>,
        instance: &str,
    ) -> super::StatusPageOptions {
        let mut s = super::StatusPageOptions {
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

    fn store(&mut self, doc: &Doc, v: Option<&Value>) -> StoreOptions {
        let mut s = StoreOptions::default();
        let base = key(&[], "store");
        let Some(m) = v.filter(|v| !v.is_null()) else {
            return s;
        };
        let Some(m) = self.mapping(doc, &base, m) else {
            return s;
        };
        self.check_keys(doc, &base, m, STORE_KEYS);
        if let Ok(Some(Dur(r))) = self.field::<Dur>(doc, &base, m, "retention") {
            if r.is_zero() {
                let msg = "retention must be greater than zero";
                self.err(doc, &key(&base, "retention"), At::Value, msg);
            } else {
                s.retention = r;
            }
        }
        if let Ok(Some(q)) = self.count(doc, &base, m, "queue", 1..=MAX_STORE_QUEUE) {
            s.queue = q as usize;
        }
        if let Ok(Some(b)) = self.count(doc, &base, m, "buffer", 0..=MAX_STORE_BUFFER) {
            s.buffer = (b as usize).max(MIN_STORE_BUFFER);
        }
        s
    }

    fn notifiers(&mut self, doc: &Doc, v: Option<&Value>) -> BTreeMap<String, NotifierConfig> {
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
            let spec = match super::notify::NotifierSpec::from_value(
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

    fn routes(&mut self, doc: &Doc, v: Option<&Value>, notifiers: &[String]) -> Vec<Route> {
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

    /// `probes:` of the main file: a list, or a file or folder of probe files.
    fn probes(&mut self, doc: &Doc, v: Option<&Value>, d: &Defaults) -> Vec<ProbeConfig> {
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
            spec: spec?,
            source,
            raw: v.clone(),
        })
    }

    /// The config, or every error sorted by file and position, with secrets scrubbed.
    fn finish(mut self, config: Option<Config>) -> Result<Config, ConfigErrors> {
        if self.errors.is_empty() {
            if let Some(c) = config {
                return Ok(c);
            }
        }
        self.errors.sort_by_key(|(ord, e)| (*ord, e.line, e.col));
        self.errors.dedup();
        let mut secrets = std::mem::take(&mut self.secrets);
        secrets.sort();
        secrets.dedup();
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Err(ConfigErrors(
            self.errors
                .into_iter()
                .map(|(_, mut e)| {
                    for s in &secrets {
                        e.message = redact(&e.message, s);
                    }
                    e
                })
                .collect(),
        ))
    }
}

fn key(base: &[Seg], k: &str) -> Vec<Seg> {
    let mut p = base.to_vec();
    p.push(Seg::Key(k.to_string()));
    p
}

fn idx(base: &[Seg], i: usize) -> Vec<Seg> {
    let mut p = base.to_vec();
    p.push(Seg::Idx(i));
    p
}

/// A serde_yaml syntax error: its position and its message without the position.
fn syntax_error(e: &serde_yaml::Error, text: &str, index: &Index) -> (Pos, String) {
    let mut msg = e.to_string();
    if msg.starts_with("duplicate entry") {
        if let Some((path, pos)) = index.duplicates.first() {
            if let Some(Seg::Key(k)) = path.last() {
                return (*pos, format!("duplicate key \"{k}\""));
            }
        }
    }
    match e.location() {
        Some(l) => {
            let at = format!(" at line {} column {}", l.line(), l.column());
            msg = msg.replacen(&at, "", 1);
            // serde_yaml reads an integer past 2^64 as a u128 no `Value` can hold.
            if msg.contains("as u128, expected any YAML value") {
                let path = msg.split_once(": ").map_or("", |(p, _)| p);
                msg = format!("{path}: number too large (at most 18446744073709551615)");
            }
            // `{ port: ${PORT} }` does not parse: braces end a plain value in flow style.
            let line = text.lines().nth(l.line().saturating_sub(1)).unwrap_or("");
            if msg.contains("while parsing a flow") && line.contains("${") {
                msg.push_str(" (inside { } and [ ], quote a value that uses ${...})");
            }
            (
                Pos {
                    line: l.line(),
                    col: l.column(),
                },
                msg,
            )
        }
        None => (Pos::START, msg),
    }
}

/// `expected a mapping, found a list`, never showing the value.
fn expected(what: &str, found: &Value) -> String {
    let found = match found {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    };
    format!("expected {what}, found {found}")
}

/// This machine's host name, for `instance`.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "probed".into())
}

/// The valid name closest to `word`, if close enough to be what was meant.
pub fn closest<'c>(word: &str, valid: &[&'c str]) -> Option<&'c str> {
    valid
        .iter()
        .map(|c| {
            let jw = strsim::jaro_winkler(word, c);
            let nl = strsim::normalized_levenshtein(word, c);
            // One edit (a transposition counts as one) catches short typos like `wbe`.
            let one_edit = word.len() > 1 && strsim::osa_distance(word, c) <= 1;
            (*c, jw + one_edit as u8 as f64, nl)
        })
        .filter(|(_, jw, nl)| *jw >= 0.85 || *nl >= 0.7)
        .max_by(|a, b| (a.1 + a.2).total_cmp(&(b.1 + b.2)))
        .map(|(c, _, _)| c)
}

/// `unknown key "timout", did you mean "timeout"?`, or the valid choices when none is close.
fn unknown(what: &str, word: &str, valid: &[&str]) -> String {
    match closest(word, valid) {
        Some(c) => format!("unknown {what} \"{word}\", did you mean \"{c}\"?"),
        None if valid.is_empty() => format!("unknown {what} \"{word}\""),
        None => format!(
            "unknown {what} \"{word}\" (valid {what}s: {})",
            valid.join(", ")
        ),
    }
}

/// [`unknown`] for a key at `path`, named as written when it was an `x_file` key.
fn unknown_key(doc: &Doc, path: &[Seg], word: &str, valid: &[&str]) -> String {
    let Some(written) = doc.index.renamed.get(path) else {
        return unknown("key", word, valid);
    };
    match closest(word, valid) {
        Some(c) => format!("unknown key \"{written}\", did you mean \"{c}_file\"?"),
        None => format!(
            "unknown key \"{written}\" (valid keys: {})",
            valid.join(", ")
        ),
    }
}

/// Rewrites serde's messages about names (at `path` of `doc`) into ours, and says where
/// to point.
fn rewrite_serde(doc: &Doc, path: &[Seg], msg: &str, extra: &[&str]) -> (String, At) {
    let quoted = || -> Vec<&str> { msg.split('`').skip(1).step_by(2).collect() };
    if msg.starts_with("unknown field `") {
        let q = quoted();
        if let Some((word, valid)) = q.split_first() {
            let valid: Vec<&str> = valid.iter().chain(extra).copied().collect();
            return (unknown_key(doc, path, word, &valid), At::Key);
        }
    }
    if msg.starts_with("unknown variant `") {
        let q = quoted();
        if let Some((word, valid)) = q.split_first() {
            return (unknown("value", word, valid), At::Value);
        }
    }
    if let Some(rest) = msg.strip_prefix("missing field `") {
        if let Some(name) = rest.strip_suffix('`') {
            return (format!("missing required key \"{name}\""), At::Key);
        }
    }
    (msg.to_string(), At::Value)
}

/// Turns a dotted path from `validate` (`request.url`, `expect.status[2]`) into segments,
/// matching keys against `v` so a key holding a dot still resolves.
fn resolve(v: &Value, path: &str) -> Vec<Seg> {
    let mut out = Vec::new();
    let mut cur = Some(v);
    let mut rest = path;
    loop {
        rest = rest.strip_prefix('.').unwrap_or(rest);
        if rest.is_empty() {
            break;
        }
        if let Some(r) = rest.strip_prefix('[') {
            let Some((n, after)) = r.split_once(']') else {
                break;
            };
            let Ok(i) = n.parse::<usize>() else {
                break;
            };
            out.push(Seg::Idx(i));
            cur = cur.and_then(|c| c.get(i));
            rest = after;
            continue;
        }
        let ends_key = |k: &str| {
            rest.starts_with(k) && matches!(rest[k.len()..].chars().next(), None | Some('.' | '['))
        };
        let known = cur.and_then(Value::as_mapping).and_then(|m| {
            m.keys()
                .filter_map(Value::as_str)
                .filter(|k| ends_key(k))
                .max_by_key(|k| k.len())
        });
        let k = known.unwrap_or_else(|| {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            &rest[..end]
        });
        let k = k.to_string();
        rest = &rest[k.len()..];
        cur = cur.and_then(|c| c.get(k.as_str()));
        out.push(Seg::Key(k));
    }
    out
}

/// Probe and notifier names go in URLs and commands: `[A-Za-z0-9_.:-]+`.
fn check_name(what: &str, name: &str) -> Option<String> {
    if name.is_empty() {
        return Some(format!("{what} name is empty"));
    }
    let ok = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'));
    (!ok).then(|| format!("invalid {what} name {name:?} (use letters, digits and _ . : -)"))
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

/// A config file's text: at most [`MAX_CONFIG_FILE`] bytes, read through a bounded reader
/// (a device or a pipe that never ends costs no more), in UTF-8. Errors in words.
pub(crate) fn read_config_file(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| io_words(&e))?;
    if file.metadata().is_ok_and(|m| m.is_dir()) {
        return Err("is a folder".into());
    }
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io_words(&e))?;
    if bytes.len() as u64 > MAX_CONFIG_FILE {
        return Err(format!("larger than {} MiB", MAX_CONFIG_FILE >> 20));
    }
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        )
    })
}

/// An I/O error in words: `no such file or directory`, not `No such file or directory (os
/// error 2)`.
pub(crate) fn io_words(e: &std::io::Error) -> String {
    let s = e.to_string();
    let s = s.find(" (os error ").map_or(s.as_str(), |i| &s[..i]);
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Where `text` first nests deeper than `max` mappings and sequences, if it does. One pass
/// of yaml-rust2's event parser, stopped at the first level too deep (or at a syntax error,
/// which serde_yaml reports with its own words). It runs before serde_yaml, whose parser
/// (libyaml's) takes time with the square of the depth before its own recursion limit:
/// minutes for 200,000 `[`.
fn too_deep(text: &str, max: usize) -> Option<Pos> {
    use yaml_rust2::parser::{Event, Parser};
    let mut parser = Parser::new_from_str(text);
    let mut depth = 0usize;
    loop {
        match parser.next_token() {
            Ok((Event::SequenceStart(..) | Event::MappingStart(..), mark)) => {
                depth += 1;
                if depth > max {
                    return Some(Pos {
                        line: mark.line(),
                        col: mark.col() + 1,
                    });
                }
            }
            Ok((Event::SequenceEnd | Event::MappingEnd, _)) => depth = depth.saturating_sub(1),
            // The scanner looks ahead through a flow collection for a `:`, and gives up at 256
            // open brackets (before any event of them): that is too deep as well.
            Err(e) if e.info().contains("recursion limit") => {
                return Some(Pos {
                    line: e.marker().line(),
                    col: e.marker().col() + 1,
                });
            }
            Ok((Event::StreamEnd, _)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

/// Whether `text` is nested deeper than [`MAX_DEPTH`]: the loader stops such a file at that
/// check, before serde_yaml sees it and before any file it names is read (the fuzz harness
/// asks, see `crate::fuzz`).
pub(crate) fn nested_too_deep(text: &str) -> bool {
    too_deep(text, MAX_DEPTH).is_some()
}

/// `http://host...` or `https://host...`, with a host that is not empty.
fn absolute_http(u: &str) -> bool {
    u.parse::<http::Uri>().is_ok_and(|uri| {
        matches!(uri.scheme_str(), Some("http" | "https"))
            && uri.host().is_some_and(|h| !h.is_empty())
    })
}

fn fmt_dur(d: Duration) -> String {
    if d.is_zero() {
        "0s".into()
    } else {
        format_duration(d)
    }
}

/// `msg` without `secret`: quoted forms always, the bare text when long enough to be sure it
/// is the secret and not a common word.
fn redact(msg: &str, secret: &str) -> String {
    if secret.is_empty() {
        return msg.to_string();
    }
    let mut m = msg
        .replace(&format!("{secret:?}"), "\"***\"")
        .replace(&format!("`{secret}`"), "`***`")
        .replace(&format!("\"{secret}\""), "\"***\"");
    if secret.chars().count() >= 4 {
        m = m.replace(secret, "***");
    }
    m
}
