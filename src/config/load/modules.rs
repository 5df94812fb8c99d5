//! Reads `modules:`, `modules_file:` (a blackbox_exporter `blackbox.yml`, its `modules:`
//! merged) and `probe_endpoint:`.
//!
//! Each blackbox key is one of three things: mapped onto the probed kind's own field (and
//! checked there, the message pointing back at the blackbox key), known to blackbox but not
//! something probed can honour (an error saying so: never silently ignored), or unknown (an
//! error with a "did you mean").

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Deserialize;
use serde_yaml::{Mapping, Value};

use super::index::{At, Seg};
use super::interp::key_text;
use super::{Doc, Loader, expected, idx, key, read_config_file, unknown, unknown_key};
use crate::config::modules::{Module, ProbeEndpoint, allow_pattern_error};
use crate::probe::ProbeSpec;
use crate::units::Dur;

pub(super) const MODULE_KEYS: &[&str] =
    &["prober", "timeout", "http", "tcp", "dns", "icmp", "grpc"];
/// blackbox's probers, and the probed kind each runs as (`None`: not in this build).
const PROBERS: &[(&str, Option<&str>)] = &[
    ("http", Some("http")),
    ("tcp", Some("tcp")),
    ("dns", Some("dns")),
    ("icmp", None),
    ("grpc", None),
];
pub(super) const ENDPOINT_KEYS: &[&str] = &["allow"];

/// blackbox's `http:` keys probed maps.
pub(super) const HTTP_KEYS: &[&str] = &[
    "valid_status_codes",
    "method",
    "headers",
    "body",
    "follow_redirects",
    "no_follow_redirects",
    "fail_if_ssl",
    "fail_if_not_ssl",
    "fail_if_body_not_matches_regexp",
    "fail_if_header_not_matches",
    "tls_config",
    "preferred_ip_protocol",
    "ip_protocol_fallback",
    "body_size_limit",
    "basic_auth",
    "bearer_token",
];
/// blackbox's `http:` keys probed cannot honour, with what to do instead.
const HTTP_UNSUPPORTED: &[(&str, &str)] = &[
    (
        "valid_http_versions",
        "probed does not judge the HTTP version",
    ),
    (
        "fail_if_body_matches_regexp",
        "probed's http kind has no regular expression the body must not match",
    ),
    (
        "fail_if_header_matches",
        "probed's http kind has no regular expression a header must not match",
    ),
    (
        "fail_if_body_json_matches_cel",
        "probed does not run CEL; a probe's expect.json compares JSON pointers",
    ),
    (
        "fail_if_body_json_not_matches_cel",
        "probed does not run CEL; a probe's expect.json compares JSON pointers",
    ),
    ("compression", "probed does not ask for compressed bodies"),
    (
        "skip_resolve_phase_with_proxy",
        "probed does not use proxies",
    ),
    ("proxy_url", "probed does not use proxies"),
    ("no_proxy", "probed does not use proxies"),
    ("proxy_from_environment", "probed does not use proxies"),
    ("proxy_connect_header", "probed does not use proxies"),
    ("authorization", "write the header under headers"),
    ("oauth2", "probed does not fetch OAuth 2 tokens"),
    ("enable_http2", "probed chooses the HTTP version itself"),
    ("http_headers", "write the headers under headers"),
    ("source_ip_address", "probed does not bind a source address"),
];
pub(super) const TLS_KEYS: &[&str] = &["insecure_skip_verify", "ca_file", "server_name"];
const TLS_UNSUPPORTED: &[(&str, &str)] = &[
    ("ca", "write the CA to a file and name it in ca_file"),
    ("cert", "probed does not present client certificates"),
    ("cert_file", "probed does not present client certificates"),
    ("key", "probed does not present client certificates"),
    ("key_file", "probed does not present client certificates"),
    ("min_version", "probed uses TLS 1.2 and 1.3"),
    ("max_version", "probed uses TLS 1.2 and 1.3"),
];
pub(super) const TCP_KEYS: &[&str] = &[
    "query_response",
    "tls",
    "tls_config",
    "preferred_ip_protocol",
    "ip_protocol_fallback",
];
const TCP_UNSUPPORTED: &[(&str, &str)] =
    &[("source_ip_address", "probed does not bind a source address")];
pub(super) const QUERY_KEYS: &[&str] = &["expect", "send"];
const QUERY_UNSUPPORTED: &[(&str, &str)] = &[
    (
        "starttls",
        "probed's tcp kind does TLS from the start (tls: true) only",
    ),
    ("labels", "probed exports no labels from a reply"),
    ("expect_bytes", "write a regular expression in expect"),
];
pub(super) const DNS_KEYS: &[&str] = &[
    "query_name",
    "query_type",
    "valid_rcodes",
    "preferred_ip_protocol",
    "ip_protocol_fallback",
    "transport_protocol",
    "recursion_desired",
    "query_class",
    "dns_over_tls",
];
const DNS_UNSUPPORTED: &[(&str, &str)] = &[
    ("source_ip_address", "probed does not bind a source address"),
    ("tls_config", "probed does not ask over TLS"),
    (
        "validate_answer_rrs",
        "probed's dns kind checks answers with expect.contains",
    ),
    (
        "validate_authority_rrs",
        "probed does not see the authority section",
    ),
    (
        "validate_additional_rrs",
        "probed does not see the additional section",
    ),
];

/// A module's probed YAML, and which blackbox key each of its fields came from.
struct Built {
    base: Mapping,
    /// (probed field path, the blackbox key's path): a probed message about `expect.status`
    /// points at `valid_status_codes`.
    origins: Vec<(String, Vec<Seg>)>,
    fail_if_ssl: bool,
    fail_if_not_ssl: bool,
}

impl Built {
    fn new() -> Built {
        Built {
            base: Mapping::new(),
            origins: Vec::new(),
            fail_if_ssl: false,
            fail_if_not_ssl: false,
        }
    }

    /// Sets the probed field at dotted `field` (`expect.status`) to `v`, from `from`.
    fn set(&mut self, field: &str, v: impl Into<Value>, from: &[Seg]) {
        let mut m = &mut self.base;
        let mut parts = field.split('.').peekable();
        while let Some(p) = parts.next() {
            if parts.peek().is_none() {
                m.insert(p.into(), v.into());
                break;
            }
            let next = m
                .entry(p.into())
                .or_insert_with(|| Value::Mapping(Mapping::new()));
            if !next.is_mapping() {
                *next = Value::Mapping(Mapping::new());
            }
            m = next.as_mapping_mut().expect("a mapping");
        }
        self.origins.push((field.to_string(), from.to_vec()));
    }

    /// The blackbox key a probed field path (`expect.headers.X`, `request.url`) came from.
    fn origin(&self, field: &str) -> Option<&[Seg]> {
        self.origins
            .iter()
            .filter(|(f, _)| {
                field == f
                    || field
                        .strip_prefix(f.as_str())
                        .is_some_and(|r| r.starts_with(['.', '[']))
            })
            .max_by_key(|(f, _)| f.len())
            .map(|(_, p)| p.as_slice())
    }
}

/// One `fail_if_header_not_matches` item.
#[derive(Deserialize)]
struct HeaderMatch {
    header: String,
    regexp: String,
    #[serde(default)]
    allow_missing: bool,
}

impl Loader<'_> {
    /// `modules:` of the main file and the `modules:` of `modules_file:`, by name.
    pub(super) fn modules(&mut self, doc: &Doc, root: &Mapping) -> BTreeMap<String, Module> {
        let mut out = BTreeMap::new();
        let mut seen: HashMap<String, String> = HashMap::new();
        if let Some(v) = root.get("modules").filter(|v| !v.is_null()) {
            self.module_map(
                doc,
                &key(&[], "modules"),
                v,
                &mut out,
                &mut seen,
                "modules:",
            );
        }
        let Ok(Some(file)) = self.field::<String>(doc, &[], root, "modules_file") else {
            return out;
        };
        let at = key(&[], "modules_file");
        let path = self.dir.join(&file);
        let text = match read_config_file(&path) {
            Ok(t) => t,
            Err(e) => {
                let msg = format!("cannot read modules_file {:?}: {e}", path.display());
                self.err(doc, &at, At::Value, msg);
                return out;
            }
        };
        let Some(fdoc) = self.parse(&text, path.clone()) else {
            return out;
        };
        match &fdoc.value {
            Value::Null => {}
            Value::Mapping(m) => {
                // A blackbox.yml holds `modules:` and nothing else.
                self.check_keys(&fdoc, &[], m, &["modules"]);
                if let Some(v) = m.get("modules").filter(|v| !v.is_null()) {
                    let base = key(&[], "modules");
                    self.module_map(&fdoc, &base, v, &mut out, &mut seen, "modules_file");
                }
            }
            other => {
                let msg = expected("a mapping with a \"modules\" map (a blackbox.yml)", other);
                self.err(&fdoc, &[], At::Value, msg);
            }
        }
        out
    }

    /// A `modules:` map at `path` of `doc`, into `out`; `seen` has each name's place.
    fn module_map(
        &mut self,
        doc: &Doc,
        path: &[Seg],
        v: &Value,
        out: &mut BTreeMap<String, Module>,
        seen: &mut HashMap<String, String>,
        from: &str,
    ) {
        let Some(m) = self.mapping(doc, path, v) else {
            return;
        };
        for (k, v) in m {
            let name = key_text(k);
            let at = key(path, &name);
            let pos = doc.index.locate(&at, At::Key);
            let place = format!("{}:{}:{} ({from})", doc.file.display(), pos.line, pos.col);
            if let Some(first) = seen.get(&name) {
                let msg = format!(
                    "module \"{name}\" is defined twice: at {first} and at {place}; keep one"
                );
                self.err(doc, &at, At::Key, msg);
                continue;
            }
            seen.insert(name.clone(), place);
            if let Some(module) = self.module(doc, &at, v) {
                out.insert(name, module);
            }
        }
    }

    /// One blackbox module at `path`. `None` when it has any error (all reported).
    fn module(&mut self, doc: &Doc, path: &[Seg], v: &Value) -> Option<Module> {
        let before = self.errors.len();
        let m = self.mapping(doc, path, v)?;
        let pos = doc.index.locate(path, At::Key);
        let source = format!("{}:{}:{}", doc.file.display(), pos.line, pos.col);
        self.check_keys(doc, path, m, MODULE_KEYS);
        let prober = self.required::<String>(doc, path, m, "prober")?;
        let names: Vec<&str> = PROBERS.iter().map(|(n, _)| *n).collect();
        let kind = match PROBERS.iter().find(|(n, _)| *n == prober) {
            None => {
                let msg = unknown("prober", &prober, &names);
                self.err(doc, &key(path, "prober"), At::Value, msg);
                return None;
            }
            Some((_, None)) => {
                let msg = if prober == "icmp" {
                    "prober \"icmp\" is not supported by probed: this build has no icmp kind \
                     (a tcp module, tcp_connect, checks that a host answers on a port)"
                        .to_string()
                } else {
                    format!("prober \"{prober}\" is not supported by probed")
                };
                self.err(doc, &key(path, "prober"), At::Value, msg);
                return None;
            }
            Some((_, Some(kind))) => *kind,
        };
        // A section for another prober would be ignored by blackbox: an error here.
        for (section, _) in PROBERS.iter().filter(|(n, _)| *n != prober) {
            if m.get(*section).is_some_and(|v| !v.is_null()) {
                let msg = format!(
                    "the \"{section}\" section applies to prober {section}; this module's prober \
                     is {prober}"
                );
                self.err(doc, &key(path, section), At::Key, msg);
            }
        }
        let timeout = match self.field::<Dur>(doc, path, m, "timeout") {
            Ok(Some(Dur(t))) if t.is_zero() => {
                let msg = "timeout must be greater than zero";
                self.err(doc, &key(path, "timeout"), At::Value, msg);
                None
            }
            Ok(t) => t.map(|Dur(t)| t),
            Err(()) => None,
        };
        let sec_path = key(path, &prober);
        let empty = Value::Mapping(Mapping::new());
        let sec = m
            .get(prober.as_str())
            .filter(|v| !v.is_null())
            .unwrap_or(&empty);
        let sec = self.mapping(doc, &sec_path, sec)?.clone();
        let built = match kind {
            "http" => self.http_module(doc, &sec_path, &sec),
            "tcp" => self.tcp_module(doc, &sec_path, &sec),
            _ => self.dns_module(doc, &sec_path, &sec),
        };
        if self.errors.len() > before {
            return None;
        }
        let dir = doc.file.parent().unwrap_or(Path::new("")).to_path_buf();
        let module = Module {
            kind,
            timeout,
            base: built.base.clone(),
            fail_if_ssl: built.fail_if_ssl,
            fail_if_not_ssl: built.fail_if_not_ssl,
            dir,
            source,
        };
        self.check_module(doc, &sec_path, &module, &built);
        (self.errors.len() == before).then_some(module)
    }

    /// Parses the module with a stand-in target through the kind's own `Spec`, reporting
    /// each problem at the blackbox key it came from.
    fn check_module(&mut self, doc: &Doc, sec_path: &[Seg], module: &Module, built: &Built) {
        let mut m = module.base.clone();
        let target = Module::placeholder_target(module.kind);
        match module.kind {
            "http" => {
                let r = m
                    .entry("request".into())
                    .or_insert_with(|| Value::Mapping(Mapping::new()));
                if let Value::Mapping(r) = r {
                    r.insert("url".into(), target.into());
                }
            }
            "tcp" => {
                let (host, port) = target.rsplit_once(':').unwrap_or((target, "1"));
                m.insert("host".into(), host.into());
                m.insert("port".into(), port.parse::<u16>().unwrap_or(1).into());
            }
            _ => {
                m.insert("nameservers".into(), vec![target.to_string()].into());
            }
        }
        let at = |field: &str| built.origin(field).unwrap_or(sec_path).to_vec();
        match ProbeSpec::from_value(module.kind, Value::Mapping(m)) {
            Ok(Ok(spec)) => {
                for fe in spec.validate() {
                    self.err(doc, &at(&fe.path), At::Value, fe.message);
                }
            }
            Ok(Err(e)) => {
                let field = e.path().to_string();
                self.err(doc, &at(&field), At::Value, e.inner().to_string());
            }
            Err(()) => {}
        }
    }

    /// Reports each key of `m` at `path` that is not in `valid`: a blackbox key probed
    /// cannot honour says so, any other gets a "did you mean".
    fn blackbox_keys(
        &mut self,
        doc: &Doc,
        path: &[Seg],
        m: &Mapping,
        valid: &[&str],
        unsupported: &[(&str, &str)],
    ) {
        for k in m.keys() {
            let k = key_text(k);
            if valid.contains(&k.as_str()) {
                continue;
            }
            let at = key(path, &k);
            let msg = match unsupported.iter().find(|(u, _)| *u == k) {
                Some((_, why)) => {
                    format!("blackbox key \"{k}\" is not supported by probed ({why})")
                }
                None => {
                    let all: Vec<&str> = valid
                        .iter()
                        .copied()
                        .chain(unsupported.iter().map(|(u, _)| *u))
                        .collect();
                    unknown_key(doc, &at, &k, &all)
                }
            };
            self.err(doc, &at, At::Key, msg);
        }
    }

    /// `preferred_ip_protocol` and `ip_protocol_fallback` as probed's `ip`: with the
    /// fallback (blackbox's default) either family will do, so `any`; without, the one
    /// preferred.
    fn ip_preference(&mut self, doc: &Doc, path: &[Seg], m: &Mapping, b: &mut Built) {
        let preferred = self.field::<String>(doc, path, m, "preferred_ip_protocol");
        let fallback = self.field::<bool>(doc, path, m, "ip_protocol_fallback");
        let (Ok(preferred), Ok(fallback)) = (preferred, fallback) else {
            return;
        };
        let at = key(path, "preferred_ip_protocol");
        let family = match preferred.as_deref() {
            None => "ip6",
            Some(p @ ("ip4" | "ip6")) => p,
            Some(other) => {
                let msg = unknown("value", other, &["ip4", "ip6"]);
                self.err(doc, &at, At::Value, msg);
                return;
            }
        };
        if fallback == Some(false) {
            let ip = if family == "ip4" { "ipv4" } else { "ipv6" };
            b.set("ip", ip, &key(path, "ip_protocol_fallback"));
        }
    }

    /// `tls_config:` at `path` onto the fields named by `fields` (insecure_skip_verify,
    /// ca_file, server_name; `None` where the kind spells it otherwise).
    fn tls_config(&mut self, doc: &Doc, path: &[Seg], v: &Value, kind: &str, b: &mut Built) {
        let Some(m) = self.mapping(doc, path, v) else {
            return;
        };
        self.blackbox_keys(doc, path, m, TLS_KEYS, TLS_UNSUPPORTED);
        let prefix = if kind == "http" { "tls." } else { "" };
        if let Ok(Some(skip)) = self.field::<bool>(doc, path, m, "insecure_skip_verify") {
            let at = key(path, "insecure_skip_verify");
            if kind == "http" {
                b.set("tls.insecure_skip_verify", skip, &at);
            } else if skip {
                b.set("check_chain", false, &at);
                b.set("check_hostname", false, &at);
            }
        }
        for k in ["ca_file", "server_name"] {
            if let Ok(Some(s)) = self.field::<String>(doc, path, m, k) {
                b.set(&format!("{prefix}{k}"), s, &key(path, k));
            }
        }
    }

    fn http_module(&mut self, doc: &Doc, path: &[Seg], m: &Mapping) -> Built {
        let mut b = Built::new();
        self.blackbox_keys(doc, path, m, HTTP_KEYS, HTTP_UNSUPPORTED);
        let at = |k: &str| key(path, k);
        if let Ok(Some(codes)) = self.field::<Vec<u16>>(doc, path, m, "valid_status_codes") {
            if !codes.is_empty() {
                let codes: Vec<Value> = codes.into_iter().map(Value::from).collect();
                b.set("expect.status", codes, &at("valid_status_codes"));
            }
        }
        if let Ok(Some(method)) = self.field::<String>(doc, path, m, "method") {
            b.set("request.method", method, &at("method"));
        }
        let mut headers = Mapping::new();
        if let Ok(Some(h)) = self.field::<BTreeMap<String, String>>(doc, path, m, "headers") {
            for (k, v) in h {
                headers.insert(k.into(), v.into());
            }
        }
        let auth_set = headers
            .keys()
            .any(|k| key_text(k).eq_ignore_ascii_case("authorization"));
        let mut auth = None;
        if let Some(v) = m.get("basic_auth").filter(|v| !v.is_null()) {
            let p = at("basic_auth");
            if let Some(ba) = self.mapping(doc, &p, v) {
                self.blackbox_keys(doc, &p, ba, &["username", "password"], &[]);
                let user = self.field::<String>(doc, &p, ba, "username");
                let pass = self.field::<String>(doc, &p, ba, "password");
                if let (Ok(user), Ok(pass)) = (user, pass) {
                    use base64::Engine as _;
                    let pair = format!("{}:{}", user.unwrap_or_default(), pass.unwrap_or_default());
                    let enc = base64::engine::general_purpose::STANDARD.encode(pair);
                    auth = Some((format!("Basic {enc}"), p));
                }
            }
        }
        if let Ok(Some(token)) = self.field::<String>(doc, path, m, "bearer_token") {
            let p = at("bearer_token");
            if auth.is_some() {
                let msg = "basic_auth and bearer_token are both set; keep one";
                self.err(doc, &p, At::Key, msg);
            }
            auth = Some((format!("Bearer {token}"), p));
        }
        if let Some((value, p)) = auth {
            if auth_set {
                let msg = "an Authorization header is set under headers too; keep one";
                self.err(doc, &p, At::Key, msg);
            }
            // The header's value holds the credentials: a secret, kept out of messages.
            self.secrets.push(value.clone());
            headers.insert("Authorization".into(), value.into());
            b.origins.push(("request.headers.Authorization".into(), p));
        }
        if !headers.is_empty() {
            b.set("request.headers", headers, &at("headers"));
        }
        if let Ok(Some(body)) = self.field::<String>(doc, path, m, "body") {
            b.set("request.body", body, &at("body"));
        }
        let follow = self.field::<bool>(doc, path, m, "follow_redirects");
        let no_follow = self.field::<bool>(doc, path, m, "no_follow_redirects");
        match (follow, no_follow) {
            (Ok(Some(_)), Ok(Some(_))) => {
                let msg = "follow_redirects and no_follow_redirects are both set; keep \
                           follow_redirects";
                self.err(doc, &at("no_follow_redirects"), At::Key, msg);
            }
            (Ok(Some(f)), _) => b.set("follow_redirects", f, &at("follow_redirects")),
            (_, Ok(Some(nf))) => b.set("follow_redirects", !nf, &at("no_follow_redirects")),
            _ => {}
        }
        if let Ok(Some(v)) = self.field::<bool>(doc, path, m, "fail_if_ssl") {
            b.fail_if_ssl = v;
        }
        if let Ok(Some(v)) = self.field::<bool>(doc, path, m, "fail_if_not_ssl") {
            b.fail_if_not_ssl = v;
        }
        if b.fail_if_ssl && b.fail_if_not_ssl {
            let msg = "fail_if_ssl and fail_if_not_ssl are both true: every check would fail";
            self.err(doc, &at("fail_if_not_ssl"), At::Key, msg);
        }
        let re_key = "fail_if_body_not_matches_regexp";
        if let Ok(Some(res)) = self.field::<Vec<String>>(doc, path, m, re_key) {
            match res.as_slice() {
                [] => {}
                [one] => b.set("expect.body_regex", one.clone(), &idx(&at(re_key), 0)),
                more => {
                    let msg = format!(
                        "probed takes one regular expression in {re_key}, not {} (blackbox \
                         requires each to match: write them as one)",
                        more.len()
                    );
                    self.err(doc, &at(re_key), At::Value, msg);
                }
            }
        }
        let hm_key = "fail_if_header_not_matches";
        if let Some(Value::Sequence(items)) = m.get(hm_key) {
            let mut expect = Mapping::new();
            for (i, item) in items.iter().enumerate() {
                let p = idx(&at(hm_key), i);
                let Some(im) = self.mapping(doc, &p, item) else {
                    continue;
                };
                self.blackbox_keys(doc, &p, im, &["header", "regexp", "allow_missing"], &[]);
                let Some(h) = self.typed::<HeaderMatch>(doc, &p, item) else {
                    continue;
                };
                if h.allow_missing {
                    let msg = "blackbox key \"allow_missing\" is not supported by probed (a \
                               header under expect must be present)";
                    self.err(doc, &key(&p, "allow_missing"), At::Key, msg);
                }
                let name = h.header.to_ascii_lowercase();
                if expect.contains_key(name.as_str()) {
                    let msg = format!(
                        "header {:?} is matched twice; probed takes one regular expression per \
                         header",
                        h.header
                    );
                    self.err(doc, &key(&p, "header"), At::Value, msg);
                    continue;
                }
                b.origins
                    .push((format!("expect.headers.{name}"), key(&p, "regexp")));
                expect.insert(name.into(), h.regexp.into());
            }
            if !expect.is_empty() {
                b.set("expect.headers", expect, &at(hm_key));
            }
        } else if let Some(v) = m.get(hm_key).filter(|v| !v.is_null()) {
            let msg = expected("a list of {header, regexp}", v);
            self.err(doc, &at(hm_key), At::Value, msg);
        }
        if let Some(v) = m.get("tls_config").filter(|v| !v.is_null()) {
            self.tls_config(doc, &at("tls_config"), v, "http", &mut b);
        }
        self.ip_preference(doc, path, m, &mut b);
        if let Some(v) = m.get("body_size_limit").filter(|v| !v.is_null()) {
            // 0 is blackbox's "no limit": probed's own cap then.
            if v.as_u64() != Some(0) && v.as_str().map(str::trim) != Some("0") {
                b.set("expect.max_body", v.clone(), &at("body_size_limit"));
            }
        }
        b
    }

    fn tcp_module(&mut self, doc: &Doc, path: &[Seg], m: &Mapping) -> Built {
        let mut b = Built::new();
        self.blackbox_keys(doc, path, m, TCP_KEYS, TCP_UNSUPPORTED);
        let at = |k: &str| key(path, k);
        if let Ok(Some(tls)) = self.field::<bool>(doc, path, m, "tls") {
            b.set("tls", tls, &at("tls"));
        }
        if let Some(v) = m.get("tls_config").filter(|v| !v.is_null()) {
            self.tls_config(doc, &at("tls_config"), v, "tcp", &mut b);
        }
        self.ip_preference(doc, path, m, &mut b);
        let qr = at("query_response");
        let items = match m.get("query_response") {
            None | Some(Value::Null) => return b,
            Some(Value::Sequence(items)) => items,
            Some(other) => {
                self.err(doc, &qr, At::Value, expected("a list of steps", other));
                return b;
            }
        };
        // The steps in blackbox's order (in one step, expect before send).
        let mut steps: Vec<(bool, String, Vec<Seg>)> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let p = idx(&qr, i);
            let Some(sm) = self.mapping(doc, &p, item) else {
                continue;
            };
            self.blackbox_keys(doc, &p, sm, QUERY_KEYS, QUERY_UNSUPPORTED);
            if let Ok(Some(e)) = self.field::<String>(doc, &p, sm, "expect") {
                steps.push((false, e, key(&p, "expect")));
            }
            if let Ok(Some(s)) = self.field::<String>(doc, &p, sm, "send") {
                steps.push((true, s, key(&p, "send")));
            }
        }
        match steps.as_slice() {
            [] => {}
            [(true, s, p)] => b.set("send", format!("{s}\n"), p),
            [(false, e, p)] => b.set("expect.regex", e.clone(), p),
            [(true, s, sp), (false, e, ep)] => {
                b.set("send", format!("{s}\n"), sp);
                b.set("expect.regex", e.clone(), ep);
            }
            _ => {
                let order: Vec<&str> = steps
                    .iter()
                    .map(|(send, _, _)| if *send { "send" } else { "expect" })
                    .collect();
                let msg = format!(
                    "probed's tcp kind sends at most once and then reads at most once; this \
                     query_response does {} (write [send], [expect] or [send, expect])",
                    order.join(", ")
                );
                self.err(doc, &qr, At::Value, msg);
            }
        }
        b
    }

    fn dns_module(&mut self, doc: &Doc, path: &[Seg], m: &Mapping) -> Built {
        let mut b = Built::new();
        self.blackbox_keys(doc, path, m, DNS_KEYS, DNS_UNSUPPORTED);
        let at = |k: &str| key(path, k);
        if let Some(name) = self.required::<String>(doc, path, m, "query_name") {
            b.set("query_name", name, &at("query_name"));
        }
        if let Ok(Some(t)) = self.field::<String>(doc, path, m, "query_type") {
            b.set("type", t, &at("query_type"));
        }
        // Validated here rather than ignored: the nameserver is an address in probed, so
        // there is no family to prefer.
        let _ = self.field::<String>(doc, path, m, "preferred_ip_protocol");
        let _ = self.field::<bool>(doc, path, m, "ip_protocol_fallback");
        let rcodes = self.field::<Vec<String>>(doc, path, m, "valid_rcodes");
        let rcode = match rcodes {
            Ok(None) => Some("NOERROR".to_string()),
            Ok(Some(list)) => match list.as_slice() {
                [one] if matches!(one.as_str(), "NOERROR" | "NXDOMAIN") => Some(one.clone()),
                _ => {
                    let msg = "probed expects one rcode, NOERROR or NXDOMAIN (write \
                               valid_rcodes: [NOERROR] or [NXDOMAIN])";
                    self.err(doc, &at("valid_rcodes"), At::Value, msg);
                    None
                }
            },
            Err(()) => None,
        };
        match rcode.as_deref() {
            Some("NXDOMAIN") => b.set("expect.rcode", "NXDOMAIN", &at("valid_rcodes")),
            // blackbox wants no answer with NOERROR; probed's own default wants one.
            Some(_) => b.set("expect.min_answers", 0, &at("valid_rcodes")),
            None => {}
        }
        // Keys probed honours at blackbox's default only.
        for (k, default, why) in [
            (
                "transport_protocol",
                Value::from("udp"),
                "probed asks over udp",
            ),
            (
                "recursion_desired",
                Value::from(true),
                "probed always asks for recursion",
            ),
            ("query_class", Value::from("IN"), "probed asks in class IN"),
            (
                "dns_over_tls",
                Value::from(false),
                "probed does not ask over TLS",
            ),
        ] {
            if let Some(v) = m.get(k).filter(|v| !v.is_null()) {
                let same = match (v, &default) {
                    (Value::String(a), Value::String(d)) => a.eq_ignore_ascii_case(d),
                    _ => v == &default,
                };
                if !same {
                    let msg = format!(
                        "{k}: only {} is supported by probed ({why})",
                        text(&default)
                    );
                    self.err(doc, &at(k), At::Value, msg);
                }
            }
        }
        b
    }

    /// `probe_endpoint:`. `None` when absent (or wrong: reported).
    pub(super) fn probe_endpoint(
        &mut self,
        doc: &Doc,
        v: Option<&Value>,
        modules: &BTreeMap<String, Module>,
        modules_given: bool,
    ) -> Option<ProbeEndpoint> {
        let base = key(&[], "probe_endpoint");
        let m = self.mapping(doc, &base, v.filter(|v| !v.is_null())?)?;
        self.check_keys(doc, &base, m, ENDPOINT_KEYS);
        let allow = self.required::<Vec<String>>(doc, &base, m, "allow")?;
        let at = key(&base, "allow");
        if allow.is_empty() {
            let msg = "allow is empty: /probe would refuse every target (leave probe_endpoint \
                       out to turn /probe off)";
            self.err(doc, &at, At::Value, msg);
        }
        for (i, p) in allow.iter().enumerate() {
            if let Some(msg) = allow_pattern_error(p) {
                self.err(doc, &idx(&at, i), At::Value, msg);
            }
        }
        if modules.is_empty() && !modules_given {
            let msg = "probe_endpoint is set but no module is: add modules: or modules_file:";
            self.err(doc, &base, At::Key, msg);
        }
        Some(ProbeEndpoint { allow })
    }
}

/// A default value as a config would write it.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        other => format!("{other:?}"),
    }
}
