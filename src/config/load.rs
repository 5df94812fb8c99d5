//! Reading and validating config files. See the module docs of `config`.
//!
//! Each file goes through the same steps: serde_yaml parses it into a `Value` (a syntax
//! error stops that file, at serde_yaml's own position); [`index::Index`] parses it again
//! with yaml-rust2 to learn where each key and value sits; [`interp::Interp`] expands
//! `${VAR}` and `x_file` keys; then each section is checked, every problem pushed as a
//! [`ConfigError`] located through the index, and checking goes on. Only a config without a
//! single error comes out as a [`Config`].
//!
//! This file holds the steps, the top-level keys and `store:`, and the helpers every section
//! shares (paths, messages, "did you mean"). Each other section is a further `impl Loader`
//! in a file of its own: [`probes`] (`defaults:`, `probes:` and probe files,
//! `maintenance:`), [`alerting`] (`notifiers:`, `routes:`, `alerting:`, `status_page:`),
//! [`watchdog`] (`watchdog:`, its heartbeats and peers), [`modules`] (`modules:`,
//! `modules_file:` and `probe_endpoint:`, for `/probe`). [`schema`] makes the JSON Schema of
//! a config file (`probectl schema`) from the same key tables.
//!
//! Values that came from the environment or from files never appear in a message: every
//! message is scrubbed of them before it is returned.

mod alerting;
mod index;
mod interp;
mod modules;
mod probes;
pub mod schema;
#[cfg(test)]
mod tests;
mod watchdog;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_yaml::{Mapping, Value};

use self::index::{At, Index, Pos, Seg};
use self::interp::{Interp, key_text};
use super::{Config, ConfigError, ConfigErrors, StoreOptions};
use crate::units::{Dur, Secret};

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
    "location",
    "external_url",
    "status_page",
    "modules",
    "modules_file",
    "probe_endpoint",
];
const STORE_KEYS: &[&str] = &["url", "retention", "queue", "buffer"];
/// The shortest interval a probe may run at.
const MIN_EVERY: Duration = Duration::from_millis(100);
/// The store's memory buffer holds at least one full batch.
const MIN_STORE_BUFFER: usize = 4096;
/// Most results the store's memory buffer holds while the disk cannot be written (about
/// 2 GB of memory at its fullest).
const MAX_STORE_BUFFER: u64 = 10_000_000;
/// Most results queued for the store's writer.
const MAX_STORE_QUEUE: u64 = 10_000_000;

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
        let location = match self.field::<String>(&doc, &[], &root, "location") {
            Ok(Some(l)) => {
                if let Some(msg) = check_name("location", &l) {
                    self.err(&doc, &key(&[], "location"), At::Value, msg);
                }
                l
            }
            _ => instance.clone(),
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
        let modules = self.modules(&doc, &root);
        let modules_given = ["modules", "modules_file"]
            .iter()
            .any(|k| root.get(*k).is_some_and(|v| !v.is_null()));
        let probe_endpoint =
            self.probe_endpoint(&doc, root.get("probe_endpoint"), &modules, modules_given);
        Some(Config {
            modules,
            probe_endpoint,
            status_page,
            maintenance,
            alerting,
            instance,
            location,
            external_url,
            path: path.to_path_buf(),
            listen,
            data_dir,
            admin_token,
            defaults,
            store,
            probes: probes.into_iter().map(Arc::new).collect(),
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
        if let Ok(Some(url)) = self.field::<String>(doc, &base, m, "url") {
            match store_url_error(&url) {
                Some(msg) => self.err(doc, &key(&base, "url"), At::Value, msg),
                None => s.url = Some(Secret::new(url)),
            }
        }
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

/// Why `url` cannot be the shared store's address, if it cannot: it must be a PostgreSQL URL
/// with a host and a database. Never repeats the URL (it holds a password).
fn store_url_error(url: &str) -> Option<String> {
    let u = match reqwest::Url::parse(url.trim()) {
        Ok(u) => u,
        Err(e) => return Some(format!("store.url is not a URL ({e})")),
    };
    if !matches!(u.scheme(), "postgres" | "postgresql") {
        return Some(format!(
            "store.url must be a PostgreSQL URL (postgres://user:password@host/database), \
             not {:?}; leave it out for the embedded SQLite file under data_dir",
            u.scheme()
        ));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Some("store.url has no host".into());
    }
    if u.path().trim_start_matches('/').is_empty() {
        return Some("store.url names no database (postgres://user:password@host/database)".into());
    }
    None
}

/// `http://host...` or `https://host...`, with a host that is not empty.
fn absolute_http(u: &str) -> bool {
    u.parse::<http::Uri>().is_ok_and(|uri| {
        matches!(uri.scheme_str(), Some("http" | "https"))
            && uri.host().is_some_and(|h| !h.is_empty())
    })
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
