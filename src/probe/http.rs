//! `kind: http`: one HTTP request over a fresh connection, timed phase by phase the way
//! blackbox_exporter reports it (`resolve`, `connect`, `tls`, `processing`, `transfer`),
//! then checked against expectations (status, latency, body, headers, size).
//!
//! The request runs on hyper over a connection this module resolves (hickory), connects and
//! TLS-wraps (rustls) itself, so each step is timed and the IP recorded. The body is read up
//! to a cap and never further: a 10 GB response costs at most `max_body` bytes of reading and
//! nothing of memory unless a body expectation needs the text.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;

pub use super::net::IpPreference;
use super::net::{self, TlsClient, error_chain, json_eq, regex_error, short, tidy};
use super::{CheckCx, Env, FieldError, Observation, until};
use crate::units::{ByteSize, Dur, format_bytes, format_duration};

/// Default cap on the response body read by a probe.
pub const DEFAULT_MAX_BODY: u64 = 10 << 20;
/// Largest `expect.max_body` accepted: the body is held in memory to be judged.
pub const MAX_BODY_LIMIT: u64 = 1 << 30;

/// An HTTP probe.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// The request to send.
    pub request: Request,
    /// What a good answer looks like. Without it: a 2xx status.
    #[serde(default)]
    pub expect: Expect,
    /// Follow redirects (301, 302, 303, 307, 308 with `Location`), each on a fresh
    /// connection; phase times add up. A 303, or a 301/302 after POST, continues as a GET
    /// without body, as browsers do. Credentials (URL userinfo, `Authorization`, `Cookie`)
    /// follow only to the URL's own host and never from https down to http. Default: true.
    #[serde(default = "yes")]
    pub follow_redirects: bool,
    /// Most redirects to follow before failing. Default: 10.
    #[serde(default = "ten")]
    pub max_redirects: u32,
    /// TLS options for https URLs.
    #[serde(default)]
    pub tls: TlsOptions,
    /// Address family to use: `any` (default: the first address the resolver gives),
    /// `ipv4` (A records only) or `ipv6` (AAAA records only).
    #[serde(default)]
    pub ip: IpPreference,
    /// Edge version skew (a CDN or load balancer serving a stale build from some addresses):
    /// probe every A/AAAA address of the host with the same Host and SNI, and compare the
    /// version each one serves.
    pub edges: Option<Edges>,
}

/// `edges:` options.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Edges {
    /// Response header carrying the version (e.g. `x-build`).
    pub version_header: Option<String>,
    /// Regular expression over the body; its first capture group (or the whole match) is the
    /// version.
    pub version_regex: Option<String>,
    /// How long the edges may disagree (a rollout in progress) before the probe is down.
    /// Default: 0s (down at the first disagreement).
    pub max_skew_for: Option<Dur>,
    /// Most addresses probed. Default: 16.
    pub max_addresses: Option<u32>,
}

fn yes() -> bool {
    true
}
fn ten() -> u32 {
    10
}

/// The request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// `http://` or `https://` URL. Userinfo in the URL is never shown in output.
    pub url: String,
    /// HTTP method. Default: GET.
    #[serde(default = "get")]
    pub method: String,
    /// Request headers. Values may hold secrets (`Authorization`); they are never shown.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Request body, sent as is (for writes: POST, PUT, PATCH).
    #[serde(default)]
    pub body: Option<String>,
}

fn get() -> String {
    "GET".into()
}

/// Expectations. Every one given must hold for the probe to be up.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Accepted status codes: numbers (`200`), ranges (`"200-299"`) or classes (`"2xx"`).
    /// Default: any 2xx.
    #[serde(default)]
    pub status: Vec<StatusPattern>,
    /// Fail when the whole check takes this long or longer.
    pub latency_under: Option<Dur>,
    /// The body must contain this text.
    pub body_contains: Option<String>,
    /// The body must not contain this text.
    pub body_not_contains: Option<String>,
    /// The body must match this regular expression.
    pub body_regex: Option<String>,
    /// JSON pointers (RFC 6901) into the body, each with the value it must equal,
    /// e.g. `{"/status": "ok", "/db/writable": true}`.
    #[serde(default)]
    pub json: BTreeMap<String, serde_json::Value>,
    /// Response headers that must be present, each with a regular expression its value
    /// must match (`".*"` for presence only). Names are case-insensitive.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Largest body accepted; reading stops past it and the probe fails. Default: 10 MiB.
    pub max_body: Option<ByteSize>,
}

/// One accepted status: a code, a range `"200-299"` or a class `"2xx"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusPattern {
    pub lo: u16,
    pub hi: u16,
}

impl StatusPattern {
    pub fn matches(&self, code: u16) -> bool {
        (self.lo..=self.hi).contains(&code)
    }
    pub fn parse(s: &str) -> Result<StatusPattern, String> {
        let t = s.trim();
        let bad = || format!("invalid status {t:?} (write 200, \"200-299\" or \"2xx\")");
        let code = |x: &str| -> Result<u16, String> {
            let n: u16 = x.trim().parse().map_err(|_| bad())?;
            if (100..=599).contains(&n) {
                Ok(n)
            } else {
                Err(format!("status {n} is outside 100-599"))
            }
        };
        if let Some(class) = t.strip_suffix("xx").or_else(|| t.strip_suffix("XX")) {
            let d: u16 = class.parse().map_err(|_| bad())?;
            if !(1..=5).contains(&d) {
                return Err(bad());
            }
            return Ok(StatusPattern {
                lo: d * 100,
                hi: d * 100 + 99,
            });
        }
        if let Some((a, b)) = t.split_once('-') {
            let (lo, hi) = (code(a)?, code(b)?);
            if lo > hi {
                return Err(format!("status range {t:?} is empty"));
            }
            return Ok(StatusPattern { lo, hi });
        }
        let c = code(t)?;
        Ok(StatusPattern { lo: c, hi: c })
    }
}

impl<'de> Deserialize<'de> for StatusPattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        let s = match Raw::deserialize(d)? {
            Raw::N(n) => n.to_string(),
            Raw::S(s) => s,
        };
        StatusPattern::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// TLS options.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsOptions {
    /// Skip certificate verification (the expiry is still recorded). Default: false.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// Extra PEM file of CA certificates to trust, beside the bundled web PKI roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// Name to send as SNI and verify the certificate against (default: the URL's host).
    /// Applies to the URL's host only; a redirect to another host uses that host's name.
    pub server_name: Option<String>,
}

impl std::fmt::Display for StatusPattern {
    /// `200`, `2xx` or `200-204`, the way a config would write it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.lo == self.hi {
            write!(f, "{}", self.lo)
        } else if self.lo % 100 == 0 && self.hi == self.lo + 99 {
            write!(f, "{}xx", self.lo / 100)
        } else {
            write!(f, "{}-{}", self.lo, self.hi)
        }
    }
}

/// Most redirects `max_redirects` may allow.
const MAX_REDIRECTS_LIMIT: u32 = 30;

/// Sent as `User-Agent` unless the probe sets its own.
const USER_AGENT: &str = concat!("probed/", env!("CARGO_PKG_VERSION"));

impl Spec {
    /// Every problem, without I/O (the CA file is read at build time). Messages never repeat
    /// the URL or a header value: either may hold a secret.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if let Some(e) = &self.edges {
            match (&e.version_header, &e.version_regex) {
                (Some(_), Some(_)) | (None, None) => errs.push(FieldError::new(
                    "edges",
                    "edges needs exactly one of version_header and version_regex",
                )),
                (Some(h), None) if HeaderName::from_bytes(h.as_bytes()).is_err() => errs.push(
                    FieldError::new("edges.version_header", "invalid header name"),
                ),
                (None, Some(r)) => {
                    if let Err(err) = regex::Regex::new(r) {
                        errs.push(FieldError::new("edges.version_regex", regex_error(&err)));
                    }
                }
                _ => {}
            }
            if e.max_addresses.is_some_and(|n| !(1..=64).contains(&n)) {
                errs.push(FieldError::new(
                    "edges.max_addresses",
                    "max_addresses must be between 1 and 64",
                ));
            }
        }
        match parse_target(&self.request.url) {
            Err(e) => errs.push(FieldError::new("request.url", e)),
            Ok(t) => {
                if let Ok(ip) = t.host.parse::<IpAddr>()
                    && let Err(e) = net::family_check(self.ip, ip)
                {
                    errs.push(FieldError::new("ip", e));
                }
            }
        }
        if Method::from_bytes(self.request.method.as_bytes()).is_err() {
            errs.push(FieldError::new(
                "request.method",
                format!(
                    "invalid method {:?} (write e.g. GET, POST)",
                    self.request.method
                ),
            ));
        }
        for (name, value) in &self.request.headers {
            let path = format!("request.headers.{name}");
            if HeaderName::from_bytes(name.as_bytes()).is_err() {
                errs.push(FieldError::new(path, "invalid header name"));
            } else if HeaderValue::from_str(value).is_err() {
                errs.push(FieldError::new(
                    path,
                    "invalid header value (control characters or non-ascii text)",
                ));
            }
        }
        if let Some(re) = &self.expect.body_regex
            && let Err(e) = regex::Regex::new(re)
        {
            errs.push(FieldError::new("expect.body_regex", regex_error(&e)));
        }
        for ptr in self.expect.json.keys() {
            if !ptr.is_empty() && !ptr.starts_with('/') {
                errs.push(FieldError::new(
                    format!("expect.json.{ptr}"),
                    format!("invalid json pointer {ptr:?}: must be empty or start with /"),
                ));
            }
        }
        for (name, re) in &self.expect.headers {
            let path = format!("expect.headers.{name}");
            if HeaderName::from_bytes(name.as_bytes()).is_err() {
                errs.push(FieldError::new(path, "invalid header name"));
            } else if let Err(e) = regex::Regex::new(re) {
                errs.push(FieldError::new(path, regex_error(&e)));
            }
        }
        match self.expect.max_body {
            Some(ByteSize(0)) => errs.push(FieldError::new(
                "expect.max_body",
                "must be more than 0 bytes",
            )),
            Some(ByteSize(n)) if n > MAX_BODY_LIMIT => errs.push(FieldError::new(
                "expect.max_body",
                format!(
                    "{} is too large (at most {})",
                    format_bytes(n),
                    format_bytes(MAX_BODY_LIMIT)
                ),
            )),
            _ => {}
        }
        if self.max_redirects > MAX_REDIRECTS_LIMIT {
            errs.push(FieldError::new(
                "max_redirects",
                format!(
                    "{} is too many (at most {MAX_REDIRECTS_LIMIT})",
                    self.max_redirects
                ),
            ));
        }
        if let Some(name) = &self.tls.server_name
            && let Err(e) = net::server_name(name)
        {
            errs.push(FieldError::new("tls.server_name", e));
        }
        errs
    }

    /// Makes `tls.ca_file` relative to `base` (the directory of the probe's file).
    pub fn resolve_paths(&mut self, base: &std::path::Path) {
        net::resolve_path(&mut self.tls.ca_file, base);
    }

    /// The URL's host (lower-case, IPv6 without brackets), for the per-host concurrency cap.
    pub fn target_host(&self) -> Option<String> {
        parse_target(&self.request.url).ok().map(|t| t.host)
    }

    /// Compiles regexes, reads the CA file, builds the TLS config.
    pub fn build(&self) -> Result<Check, String> {
        if let Some(e) = self.validate().into_iter().next() {
            return Err(format!("{}: {}", e.path, e.message));
        }
        let target = parse_target(&self.request.url).map_err(|e| format!("request.url: {e}"))?;
        let method = Method::from_bytes(self.request.method.as_bytes())
            .map_err(|_| "request.method: invalid method".to_string())?;

        let mut secrets = Vec::new();
        let mut headers =
            net::sensitive_headers(&self.request.headers, "request.headers", &mut secrets)?;
        if !headers.contains_key(header::USER_AGENT) {
            headers.insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
        }
        if let Some(userinfo) = &target.userinfo {
            let auth = net::userinfo_auth(userinfo, &mut secrets);
            if !headers.contains_key(header::AUTHORIZATION) {
                headers.insert(header::AUTHORIZATION, auth);
            }
        }
        let secrets = net::secret_list(secrets);

        let expect = &self.expect;
        let body_regex = expect
            .body_regex
            .as_deref()
            .map(regex::Regex::new)
            .transpose()
            .map_err(|e| format!("expect.body_regex: {}", regex_error(&e)))?;
        let mut header_expect = Vec::new();
        for (name, re) in &expect.headers {
            let hn = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("expect.headers.{name}: invalid header name"))?;
            let re = regex::Regex::new(re)
                .map_err(|e| format!("expect.headers.{name}: {}", regex_error(&e)))?;
            header_expect.push((hn, re));
        }

        let tls = TlsClient::new(
            self.tls.insecure_skip_verify,
            self.tls.ca_file.as_deref(),
            "tls.ca_file",
            net::ALPN_HTTP1,
        )?;

        let edges = match &self.edges {
            None => None,
            Some(e) => Some(EdgeCheck {
                header: e
                    .version_header
                    .as_deref()
                    .map(|h| HeaderName::from_bytes(h.as_bytes()))
                    .transpose()
                    .map_err(|_| "edges.version_header: invalid header name".to_string())?,
                regex: e
                    .version_regex
                    .as_deref()
                    .map(regex::Regex::new)
                    .transpose()
                    .map_err(|e| format!("edges.version_regex: {}", regex_error(&e)))?,
                max_skew_for: e.max_skew_for.map_or(Duration::ZERO, |d| d.0),
                max_addresses: e.max_addresses.unwrap_or(16) as usize,
                skew_since: Mutex::new(None),
            }),
        };
        Ok(Check {
            edges,
            spec: self.clone(),
            target,
            method,
            headers,
            body: Bytes::from(self.request.body.clone().unwrap_or_default()),
            body_regex,
            header_expect,
            max_body: expect.max_body.map_or(DEFAULT_MAX_BODY, |b| b.0),
            needs_body: expect.body_contains.is_some()
                || self
                    .edges
                    .as_ref()
                    .is_some_and(|e| e.version_regex.is_some())
                || expect.body_not_contains.is_some()
                || expect.body_regex.is_some()
                || !expect.json.is_empty(),
            tls,
            secrets,
        })
    }
}

/// A parsed `http`/`https` URL.
type Target = net::UrlTarget;

/// Renders a URL for messages, logs and output: the userinfo (`user:password@`) is dropped
/// and query values are replaced by `***`. An unparseable URL renders as `<invalid url>`.
pub fn redact_url(url: &str) -> String {
    parse_target(url).map_or_else(|_| "<invalid url>".to_string(), |t| t.display())
}

/// Parses a probe URL. Errors never repeat the URL (it may hold a password).
fn parse_target(url: &str) -> Result<Target, String> {
    Target::parse(url, ["http", "https"])
}

/// Resolves a `Location` against the URL it came from (RFC 3986 §5, without dot-segment
/// removal: servers handle `..` themselves).
fn resolve_location(base: &Target, location: &str) -> Result<Target, String> {
    let loc = location.trim();
    let loc = loc.split('#').next().unwrap_or_default();
    if loc.is_empty() {
        return Err("empty location".into());
    }
    let origin = format!("{}://{}", base.scheme(), base.authority());
    let has_scheme = loc.find(':').is_some_and(|i| {
        i > 0
            && loc[..i]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
            && !loc[..i].contains(['/', '?'])
    });
    let absolute = if let Some(rest) = loc.strip_prefix("//") {
        format!("{}://{rest}", base.scheme())
    } else if has_scheme {
        loc.to_string()
    } else if loc.starts_with('/') {
        format!("{origin}{loc}")
    } else if loc.starts_with('?') {
        format!("{origin}{}{loc}", base.path.path())
    } else {
        let path = base.path.path();
        let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
        format!("{origin}{}{loc}", if dir.is_empty() { "/" } else { dir })
    };
    parse_target(&absolute)
}

/// A runnable HTTP probe.
pub struct Check {
    pub spec: Spec,
    target: Target,
    method: Method,
    /// Request headers for the probe's own origin: the spec's, `User-Agent`, and
    /// `Authorization` from the URL's userinfo. `Host` and `Connection` are added per request.
    headers: HeaderMap,
    body: Bytes,
    body_regex: Option<regex::Regex>,
    header_expect: Vec<(HeaderName, regex::Regex)>,
    max_body: u64,
    /// Keep the body in memory: some expectation reads it.
    needs_body: bool,
    /// The TLS client config (the env's roots plus `tls.ca_file`, or any certificate).
    tls: TlsClient,
    /// Values that must never appear in a reason (userinfo, header values), longest first.
    secrets: Vec<String>,
    edges: Option<EdgeCheck>,
}

/// Compiled `edges:` options and what the probe remembers between runs.
struct EdgeCheck {
    header: Option<HeaderName>,
    regex: Option<regex::Regex>,
    max_skew_for: Duration,
    max_addresses: usize,
    /// Since when the edges have disagreed (monotonic), across runs.
    skew_since: Mutex<Option<Instant>>,
}

/// The version marker an edge served.
fn edge_version(edges: &EdgeCheck, resp: &Response) -> Result<String, String> {
    if let Some(h) = &edges.header {
        return resp
            .headers
            .get(h)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_owned())
            .ok_or_else(|| format!("no version marker: header {h} missing"));
    }
    let re = edges.regex.as_ref().expect("validated: header or regex");
    let body = resp
        .body
        .as_deref()
        .map(String::from_utf8_lossy)
        .unwrap_or_default();
    re.captures(&body)
        .map(|c| {
            c.get(1)
                .or_else(|| c.get(0))
                .map(|m| m.as_str().to_owned())
                .unwrap_or_default()
        })
        .ok_or_else(|| "no version marker: version_regex does not match the body".to_string())
}

/// The last response of a check, what the verdict looks at.
struct Response {
    status: u16,
    headers: HeaderMap,
    /// The body, when an expectation needs it.
    body: Option<Vec<u8>>,
}

/// One request of a check: where to, how, and (edge checks) the address to use.
struct Leg<'a> {
    target: &'a Target,
    method: &'a Method,
    with_body: bool,
    pinned: Option<IpAddr>,
}

/// How one request/response exchange ended.
enum Hop {
    Final(Response),
    /// A redirect to follow: the status and the raw `Location`.
    Redirect(u16, String),
}

impl Check {
    /// One check: resolve, connect, TLS, request, read, judge; redirects repeat the lot on a
    /// fresh connection. Never fails other than with an `Observation` that says why.
    /// `cert_expiry` is the earliest `notAfter` over every TLS connection of the check,
    /// redirects included; `size` is the final response's body.
    pub async fn check(&self, cx: &CheckCx<'_>) -> Observation {
        if let Some(edges) = &self.edges {
            return self.check_edges(cx, edges).await;
        }
        let started = Instant::now();
        let mut obs = Observation::default();
        let fetched = self.fetch(cx, started, &mut obs, None).await;
        obs.duration = started.elapsed();
        match fetched.and_then(|resp| self.verdict(&resp, obs.duration)) {
            Ok(()) => {
                obs.ok = true;
                obs
            }
            Err(reason) => obs.fail(self.scrub(reason)),
        }
    }

    /// Blanks out any secret that found its way into a message (a second line of defence:
    /// messages are built never to include them).
    fn scrub(&self, reason: String) -> String {
        net::scrub(&reason, &self.secrets)
    }

    /// Edge version skew: every address of the host, probed at once with the same Host and
    /// SNI; each must pass the expectations, and all must serve the same version (or have
    /// disagreed for less than `max_skew_for`).
    async fn check_edges(&self, cx: &CheckCx<'_>, edges: &EdgeCheck) -> Observation {
        let started = Instant::now();
        let mut obs = Observation::default();
        let ips = match self.target.host.parse::<IpAddr>() {
            Ok(ip) => Ok(vec![ip]),
            Err(_) => self.resolve_every(cx, started, &self.target.host).await,
        };
        obs.phase("resolve", started.elapsed());
        let mut ips = match ips {
            Ok(ips) => ips,
            Err(e) => {
                obs.duration = started.elapsed();
                return obs.fail(self.scrub(e));
            }
        };
        ips.truncate(edges.max_addresses);
        let runs = ips.iter().map(|ip| async move {
            let mut o = Observation::default();
            let r = self.fetch(cx, started, &mut o, Some(*ip)).await;
            let r = r.and_then(|resp| {
                self.verdict(&resp, started.elapsed())?;
                edge_version(edges, &resp)
            });
            (*ip, r, o)
        });
        let results = futures_util::future::join_all(runs).await;
        obs.duration = started.elapsed();
        // Phases: the slowest edge's, so the figures show the worst an edge made users wait.
        if let Some((_, _, o)) = results
            .iter()
            .max_by_key(|(_, _, o)| o.phases.iter().map(|p| p.1).sum::<Duration>())
        {
            for (name, d) in &o.phases {
                if *name != "resolve" {
                    obs.phase(name, *d);
                }
            }
            obs.status_code = o.status_code;
            obs.size = o.size;
        }
        obs.cert_expiry = results.iter().filter_map(|(_, _, o)| o.cert_expiry).min();
        obs.ip = ips.first().copied();
        let mut versions: Vec<(IpAddr, String)> = Vec::new();
        let mut failures = Vec::new();
        for (ip, r, _) in results {
            match r {
                Ok(v) => versions.push((ip, v)),
                Err(e) => failures.push(format!("edge {ip}: {e}")),
            }
        }
        if !failures.is_empty() {
            let n = failures.len();
            let mut reason = failures.swap_remove(0);
            if n > 1 {
                reason.push_str(&format!(" (and {} more failing edges)", n - 1));
            }
            return obs.fail(self.scrub(reason));
        }
        let mut groups: Vec<(String, Vec<IpAddr>)> = Vec::new();
        for (ip, v) in versions {
            match groups.iter_mut().find(|(gv, _)| *gv == v) {
                Some((_, ips)) => ips.push(ip),
                None => groups.push((v, vec![ip])),
            }
        }
        let mut since = edges.skew_since.lock().unwrap_or_else(|p| p.into_inner());
        if groups.len() <= 1 {
            *since = None;
            obs.ok = true;
            return obs;
        }
        let first = *since.get_or_insert_with(Instant::now);
        let lasted = first.elapsed();
        if lasted < edges.max_skew_for {
            obs.ok = true;
            return obs;
        }
        // The version most edges serve is taken as current; the others are stale.
        groups.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(&b.0)));
        let list = |ips: &[IpAddr]| {
            ips.iter()
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let serving: Vec<String> = groups
            .iter()
            .map(|(v, ips)| {
                format!(
                    "{} serve{} {v:?}",
                    list(ips),
                    if ips.len() == 1 { "s" } else { "" }
                )
            })
            .collect();
        let stale: Vec<IpAddr> = if groups[0].1.len() > groups[1].1.len() {
            groups[1..]
                .iter()
                .flat_map(|(_, ips)| ips.clone())
                .collect()
        } else {
            Vec::new()
        };
        let mut reason = format!(
            "edges disagree{}: {}",
            if lasted >= Duration::from_secs(1) {
                format!(
                    " for {}",
                    crate::units::format_duration(Duration::from_secs(lasted.as_secs()))
                )
            } else {
                String::new()
            },
            serving.join("; ")
        );
        if !stale.is_empty() {
            reason.push_str(&format!(" (stale: {})", list(&stale)));
        }
        obs.fail(self.scrub(reason))
    }

    /// Every A and AAAA address of `host`, honouring `ip:`.
    async fn resolve_every(
        &self,
        cx: &CheckCx<'_>,
        started: Instant,
        host: &str,
    ) -> Result<Vec<IpAddr>, String> {
        use hickory_resolver::proto::rr::RecordType;
        let mut out = Vec::new();
        let mut last_err = None;
        let types: &[RecordType] = match self.spec.ip {
            IpPreference::Any => &[RecordType::A, RecordType::AAAA],
            IpPreference::Ipv4 => &[RecordType::A],
            IpPreference::Ipv6 => &[RecordType::AAAA],
        };
        for t in types {
            let r = until(cx, started, "resolving", cx.env.resolver.lookup(host, *t))
                .await
                .map_err(|timeout| format!("{timeout} {host}"))?;
            match r {
                Ok(lookup) => {
                    out.extend(lookup.answers().iter().filter_map(|rec| match &rec.data {
                        hickory_resolver::proto::rr::RData::A(a) => Some(IpAddr::V4(a.0)),
                        hickory_resolver::proto::rr::RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                        _ => None,
                    }))
                }
                Err(e) if e.is_nx_domain() => {
                    return Err(format!("dns: no record for {host} (NXDOMAIN)"));
                }
                Err(e) => last_err = Some(e),
            }
        }
        if out.is_empty() {
            return Err(match last_err {
                Some(e) if !e.is_no_records_found() => {
                    format!("dns: lookup of {host} failed: {}", tidy(&e.to_string()))
                }
                _ => format!("dns: no address record for {host}"),
            });
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    /// Follows the redirect chain to the final response. `pin` connects the probe's own host
    /// to that address instead of resolving it (edge checks).
    async fn fetch(
        &self,
        cx: &CheckCx<'_>,
        started: Instant,
        obs: &mut Observation,
        pin: Option<IpAddr>,
    ) -> Result<Response, String> {
        // The first hop uses the probe's own target; redirects own theirs.
        let mut redirected: Option<Target> = None;
        let mut method = self.method.clone();
        let mut with_body = true;
        loop {
            let target = redirected.as_ref().unwrap_or(&self.target);
            let pinned = pin.filter(|_| target.host == self.target.host);
            let hop = self
                .hop(
                    cx,
                    started,
                    obs,
                    Leg {
                        target,
                        method: &method,
                        with_body,
                        pinned,
                    },
                )
                .await?;
            let (status, location) = match hop {
                Hop::Final(resp) => return Ok(resp),
                Hop::Redirect(status, location) => (status, location),
            };
            let next = resolve_location(target, &location).map_err(|e| {
                format!(
                    "redirect ({status}) from {} to a bad location: {e}",
                    target.display()
                )
            })?;
            if obs.redirects >= self.spec.max_redirects {
                return Err(format!(
                    "too many redirects (max_redirects is {}), the next one from {} to {}",
                    self.spec.max_redirects,
                    target.display(),
                    next.display()
                ));
            }
            obs.redirects += 1;
            // As browsers do: 303 turns anything but HEAD into GET; 301/302 turn POST into GET.
            if (status == 303 && method != Method::HEAD)
                || (matches!(status, 301 | 302) && method == Method::POST)
            {
                method = Method::GET;
                with_body = false;
            }
            redirected = Some(next);
        }
    }

    /// Credentials (userinfo, `Authorization`, `Cookie`) go only to the probe's own host, and
    /// never from https down to http.
    fn trusted(&self, target: &Target) -> bool {
        target.host == self.target.host && (target.secure || !self.target.secure)
    }

    /// One request on a fresh connection: resolve, connect, TLS, exchange.
    async fn hop(
        &self,
        cx: &CheckCx<'_>,
        started: Instant,
        obs: &mut Observation,
        leg: Leg<'_>,
    ) -> Result<Hop, String> {
        let Leg {
            target,
            method,
            with_body,
            pinned,
        } = leg;
        let ips = match pinned {
            Some(ip) => vec![ip],
            None => net::addresses(cx, started, obs, &target.host, self.spec.ip).await?,
        };
        let tcp = net::connect_any(cx, started, obs, &ips, target.port).await?;

        let request = self.request(target, method, with_body)?;
        if !target.secure {
            return self.exchange(cx, started, obs, tcp, request).await;
        }
        let t = Instant::now();
        let tls = self.tls_handshake(cx, started, target, tcp).await;
        obs.phase("tls", t.elapsed());
        let tls = tls?;
        net::record_expiry(obs, tls.get_ref().1.peer_certificates());
        self.exchange(cx, started, obs, tls, request).await
    }

    /// The TLS config for this env's roots, built once and cached.
    fn tls_config(&self, env: &Env) -> Result<Arc<ClientConfig>, String> {
        self.tls.config(env)
    }

    async fn tls_handshake(
        &self,
        cx: &CheckCx<'_>,
        started: Instant,
        target: &Target,
        tcp: TcpStream,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
        let config = self.tls_config(cx.env)?;
        let name = match &self.spec.tls.server_name {
            Some(name) if target.host == self.target.host => name.as_str(),
            _ => target.host.as_str(),
        };
        net::tls_handshake(cx, started, config, name, tcp).await
    }

    /// The request for one hop.
    fn request(
        &self,
        target: &Target,
        method: &Method,
        with_body: bool,
    ) -> Result<http::Request<Full<Bytes>>, String> {
        let body = if with_body {
            self.body.clone()
        } else {
            Bytes::new()
        };
        let mut req = http::Request::new(Full::new(body));
        *req.method_mut() = method.clone();
        *req.uri_mut() = http::Uri::from(target.path.clone());
        let headers = req.headers_mut();
        *headers = self.headers.clone();
        let trusted = self.trusted(target);
        if !trusted {
            for h in [
                header::AUTHORIZATION,
                header::PROXY_AUTHORIZATION,
                header::COOKIE,
                header::HOST,
            ] {
                headers.remove(h);
            }
        }
        if let Some(userinfo) = &target.userinfo
            && !(trusted && self.target.userinfo.is_some())
        {
            headers.insert(header::AUTHORIZATION, net::basic_auth(userinfo));
        }
        if !with_body {
            headers.remove(header::CONTENT_TYPE);
            headers.remove(header::CONTENT_LENGTH);
        }
        if !headers.contains_key(header::HOST) {
            let host = HeaderValue::from_str(&target.authority())
                .map_err(|_| "invalid host in url".to_string())?;
            headers.insert(header::HOST, host);
        }
        headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        Ok(req)
    }

    /// Sends the request over `io` and reads the response: `processing` until the head,
    /// `transfer` for the body (skipped for a redirect that will be followed). The connection
    /// is driven in this task, so nothing of it outlives the check.
    async fn exchange<S>(
        &self,
        cx: &CheckCx<'_>,
        started: Instant,
        obs: &mut Observation,
        io: S,
        request: http::Request<Full<Bytes>>,
    ) -> Result<Hop, String>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let t = Instant::now();
        let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(io)).await
        {
            Ok(pair) => pair,
            Err(e) => {
                obs.phase("processing", t.elapsed());
                return Err(format!("http: {}", error_chain(&e)));
            }
        };
        let mut conn = std::pin::pin!(Some(conn));
        let mut conn_err = None;
        let response = until(
            cx,
            started,
            "waiting for response headers",
            drive(&mut conn, &mut conn_err, sender.send_request(request)),
        )
        .await;
        obs.phase("processing", t.elapsed());
        let response = response?.map_err(|e| format!("http: {}", hyper_text(&e, &conn_err)))?;

        let status = response.status().as_u16();
        obs.status_code = Some(status);
        if self.spec.follow_redirects
            && is_redirect(response.status())
            && let Some(location) = response.headers().get(header::LOCATION)
        {
            let location = String::from_utf8_lossy(location.as_bytes()).into_owned();
            return Ok(Hop::Redirect(status, location));
        }

        let (parts, mut body) = response.into_parts();
        let t = Instant::now();
        let mut read: u64 = 0;
        let mut kept = self.needs_body.then(Vec::new);
        let outcome = loop {
            let frame = until(
                cx,
                started,
                "reading the response body",
                drive(&mut conn, &mut conn_err, body.frame()),
            )
            .await;
            let frame = match frame {
                Err(timeout) => break Err(timeout),
                Ok(None) => break Ok(()),
                Ok(Some(Err(e))) => {
                    break Err(format!(
                        "reading the response body: {}",
                        hyper_text(&e, &conn_err)
                    ));
                }
                Ok(Some(Ok(frame))) => frame,
            };
            let Ok(data) = frame.into_data() else {
                continue; // trailers
            };
            read += data.len() as u64;
            if read > self.max_body {
                break Err(format!(
                    "response body larger than {} limit (read {} before stopping)",
                    format_bytes(self.max_body),
                    format_bytes(read)
                ));
            }
            if let Some(kept) = &mut kept {
                kept.extend_from_slice(&data);
            }
        };
        obs.phase("transfer", t.elapsed());
        obs.size = Some(read);
        outcome?;
        Ok(Hop::Final(Response {
            status,
            headers: parts.headers,
            body: kept,
        }))
    }

    /// The first expectation that does not hold, in the order: status, latency, body
    /// contains / not contains / regex, json, headers.
    fn verdict(&self, resp: &Response, took: Duration) -> Result<(), String> {
        let expect = &self.spec.expect;
        let status_ok = if expect.status.is_empty() {
            (200..300).contains(&resp.status)
        } else {
            expect.status.iter().any(|p| p.matches(resp.status))
        };
        if !status_ok {
            let wanted = if expect.status.is_empty() {
                "2xx".to_string()
            } else {
                expect
                    .status
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(format!("status {}, expected {wanted}", resp.status));
        }
        if let Some(limit) = expect.latency_under
            && took >= limit.0
        {
            return Err(format!(
                "took {}, expected under {limit}",
                format_duration(Duration::from_millis(took.as_millis() as u64))
            ));
        }
        let raw = resp.body.as_deref().unwrap_or_default();
        let text = String::from_utf8_lossy(raw);
        if let Some(want) = &expect.body_contains
            && !text.contains(want.as_str())
        {
            return Err(format!("body does not contain {:?}", short(want)));
        }
        if let Some(unwanted) = &expect.body_not_contains
            && text.contains(unwanted.as_str())
        {
            return Err(format!("body contains {:?}", short(unwanted)));
        }
        if let Some(re) = &self.body_regex
            && !re.is_match(&text)
        {
            return Err(format!("body does not match /{}/", short(re.as_str())));
        }
        if !expect.json.is_empty() {
            let doc: serde_json::Value =
                serde_json::from_slice(raw).map_err(|e| format!("body is not json: {e}"))?;
            for (ptr, want) in &expect.json {
                match doc.pointer(ptr) {
                    None => return Err(format!("json {ptr:?} is missing")),
                    Some(got) if !json_eq(got, want) => {
                        return Err(format!(
                            "json {ptr:?} is {}, expected {}",
                            short(&got.to_string()),
                            short(&want.to_string())
                        ));
                    }
                    Some(_) => {}
                }
            }
        }
        for (name, re) in &self.header_expect {
            let mut values = resp.headers.get_all(name).iter().peekable();
            if values.peek().is_none() {
                return Err(format!("header {name} is missing"));
            }
            if !values.any(|v| re.is_match(&String::from_utf8_lossy(v.as_bytes()))) {
                return Err(format!(
                    "header {name} does not match /{}/",
                    short(re.as_str())
                ));
            }
        }
        Ok(())
    }
}

/// Polls `fut` while also driving the hyper connection `conn`, both in this task. Once the
/// connection future ends it is dropped (its error kept in `conn_err`), which ends whatever
/// `fut` still waits for.
async fn drive<C, F>(
    conn: &mut Pin<&mut Option<C>>,
    conn_err: &mut Option<hyper::Error>,
    fut: F,
) -> F::Output
where
    C: Future<Output = hyper::Result<()>>,
    F: Future,
{
    let mut fut = std::pin::pin!(fut);
    let ended = match conn.as_mut().as_pin_mut() {
        None => return fut.await,
        Some(c) => tokio::select! {
            biased;
            out = &mut fut => return out,
            ended = c => ended,
        },
    };
    if let Err(e) = ended {
        *conn_err = Some(e);
    }
    conn.set(None);
    fut.await
}

fn is_redirect(s: StatusCode) -> bool {
    matches!(s.as_u16(), 301 | 302 | 303 | 307 | 308)
}

/// A hyper error in words: the connection's own error when it has one, and "closed" rather
/// than "canceled" when the connection went away under a waiting request.
fn hyper_text(e: &hyper::Error, conn_err: &Option<hyper::Error>) -> String {
    match conn_err {
        Some(c) => error_chain(c),
        None if e.is_canceled() => "connection closed before a complete response".into(),
        None => error_chain(e),
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddr};

    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    use super::*;
    use crate::probe::net::base64;
    use crate::probe::testkit::{
        self, Pki, Zone, assert_down, assert_up, ca_signed, hold, pem_file, reason, refused_addr,
        tcp_server,
    };

    // ---- helpers -------------------------------------------------------------------------

    fn spec(yaml: &str) -> Spec {
        serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("bad test spec: {e}\n{yaml}"))
    }

    fn env() -> Env {
        Env::new(&[]).expect("env")
    }

    /// Runs one check of `spec` with a deadline `within` from now.
    async fn run_in(spec: &Spec, env: &Env, within: Duration) -> Observation {
        let check = spec.build().expect("build");
        let cx = CheckCx {
            env,
            deadline: Instant::now() + within,
        };
        check.check(&cx).await
    }

    async fn run(spec: &Spec) -> Observation {
        run_in(spec, &env(), Duration::from_secs(5)).await
    }

    /// What the test server saw of one request.
    #[derive(Debug)]
    struct Seen {
        method: String,
        path: String,
        headers: HeaderMap,
        body: Bytes,
    }

    /// What the test server answers.
    struct Reply {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: String,
        /// Server-side think time before answering (the behaviour under test, not a sync).
        delay: Duration,
    }

    fn reply(status: u16, body: &str) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: body.to_string(),
            delay: Duration::ZERO,
        }
    }

    impl Reply {
        fn header(mut self, name: &'static str, value: &str) -> Reply {
            self.headers.push((name, value.to_string()));
            self
        }
    }

    /// A hyper HTTP/1 server on 127.0.0.1:0 answering each request with `answer`; every
    /// request it saw comes out of the returned channel.
    async fn http_server(
        answer: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
    ) -> (SocketAddr, mpsc::UnboundedReceiver<Seen>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let answer = Arc::new(answer);
        let addr =
            tcp_server(move |stream| serve_http(TokioIo::new(stream), answer.clone(), tx.clone()))
                .await;
        (addr, rx)
    }

    async fn serve_http<I>(
        io: TokioIo<I>,
        answer: Arc<impl Fn(&Seen) -> Reply + Send + Sync + 'static>,
        tx: mpsc::UnboundedSender<Seen>,
    ) where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
            let (answer, tx) = (answer.clone(), tx.clone());
            async move {
                let (parts, body) = req.into_parts();
                let body = body
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let seen = Seen {
                    method: parts.method.to_string(),
                    path: parts.uri.to_string(),
                    headers: parts.headers,
                    body,
                };
                let r = answer(&seen);
                let _ = tx.send(seen);
                tokio::time::sleep(r.delay).await;
                let mut resp = http::Response::new(Full::new(Bytes::from(r.body)));
                *resp.status_mut() = StatusCode::from_u16(r.status).unwrap();
                for (k, v) in r.headers {
                    resp.headers_mut()
                        .append(k, HeaderValue::from_str(&v).unwrap());
                }
                Ok::<_, std::convert::Infallible>(resp)
            }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(io, svc)
            .await;
    }

    /// Reads until the end of the request head (the probe's requests here have no body).
    async fn read_head(s: &mut TcpStream) {
        let mut buf = Vec::new();
        let mut byte = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            match s.read(&mut byte).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&byte[..n]),
            }
        }
    }

    // ---- pure parts ----------------------------------------------------------------------

    #[test]
    fn status_patterns_parse_match_and_display() {
        let ok = [
            ("200", 200, 200, "200"),
            (" 204 ", 204, 204, "204"),
            ("2xx", 200, 299, "2xx"),
            ("5XX", 500, 599, "5xx"),
            ("200-204", 200, 204, "200-204"),
            ("300-399", 300, 399, "3xx"),
        ];
        for (s, lo, hi, shown) in ok {
            let p = StatusPattern::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!((p.lo, p.hi), (lo, hi), "{s}");
            assert_eq!(p.to_string(), shown, "{s}");
            assert!(p.matches(lo) && p.matches(hi) && !p.matches(hi + 1), "{s}");
        }
        let bad = [
            ("abc", "invalid status"),
            ("6xx", "invalid status"),
            ("0xx", "invalid status"),
            ("99", "outside 100-599"),
            ("600", "outside 100-599"),
            ("299-200", "is empty"),
            ("", "invalid status"),
        ];
        for (s, msg) in bad {
            let e = StatusPattern::parse(s).unwrap_err();
            assert!(e.contains(msg), "{s}: {e}");
        }
        let e: Expect = serde_yaml::from_str("status: [200, \"3xx\", \"401-403\"]").unwrap();
        assert_eq!(
            e.status,
            vec![
                StatusPattern { lo: 200, hi: 200 },
                StatusPattern { lo: 300, hi: 399 },
                StatusPattern { lo: 401, hi: 403 }
            ]
        );
    }

    #[test]
    fn validate_reports_every_problem_with_its_path() {
        let good = spec(
            r#"
request:
  url: "https://user:pw@api.example.com:8443/v1?x=1"
  method: POST
  headers: { content-type: application/json, authorization: "Bearer s3cret-token" }
  body: '{"ping":1}'
expect:
  status: [200, "2xx"]
  body_regex: '"ok":\s*true'
  json: { "/status": ok, "": {} }
  headers: { etag: ".*" }
max_redirects: 30
tls: { server_name: api.internal }
"#,
        );
        assert_eq!(good.validate(), vec![]);
        assert_eq!(good.target_host().as_deref(), Some("api.example.com"));

        let cases: &[(&str, &[(&str, &str)])] = &[
            (
                "request: { url: 'ftp://h/x' }",
                &[("request.url", "unsupported url scheme \"ftp\"")],
            ),
            (
                "request: { url: '/just/a/path' }",
                &[("request.url", "no scheme")],
            ),
            (
                "request: { url: 'http://' }",
                &[("request.url", "invalid url")],
            ),
            (
                "request: { url: 'http://a b/' }",
                &[("request.url", "invalid url")],
            ),
            (
                "request: { url: 'http://h:99999/' }",
                &[("request.url", "invalid port \"99999\"")],
            ),
            (
                "request: { url: 'http://h:abc/' }",
                &[("request.url", "invalid port")],
            ),
            (
                "request: { url: 'http://h:0/' }",
                &[("request.url", "invalid port")],
            ),
            (
                "request: { url: 'http://[::1]:x/' }",
                &[("request.url", "invalid port")],
            ),
            (
                "request: { url: 'http://h/', method: 'GE T' }",
                &[("request.method", "invalid method")],
            ),
            (
                "request: { url: 'http://h/', headers: { 'X Bad': v, X-Ok: \"line\\nbreak-s3cret\" } }",
                &[
                    ("request.headers.X Bad", "invalid header name"),
                    ("request.headers.X-Ok", "invalid header value"),
                ],
            ),
            (
                "request: { url: 'http://h/' }\nexpect: { body_regex: '(unclosed' }",
                &[("expect.body_regex", "invalid regular expression")],
            ),
            (
                "request: { url: 'http://h/' }\nexpect: { json: { status: ok, /fine: 1 } }",
                &[("expect.json.status", "must be empty or start with /")],
            ),
            (
                "request: { url: 'http://h/' }\nexpect: { headers: { etag: '[z-a]', 'bad name': x } }",
                &[
                    ("expect.headers.bad name", "invalid header name"),
                    ("expect.headers.etag", "invalid regular expression"),
                ],
            ),
            (
                "request: { url: 'http://h/' }\nmax_redirects: 31",
                &[("max_redirects", "at most 30")],
            ),
            (
                "request: { url: 'http://h/' }\ntls: { server_name: 'not a name' }",
                &[("tls.server_name", "invalid server name")],
            ),
            (
                "request: { url: 'http://127.0.0.1/' }\nip: ipv6",
                &[("ip", "is an ipv4 address")],
            ),
            (
                "request: { url: 'http://h/' }\nexpect: { max_body: 0 }",
                &[("expect.max_body", "more than 0")],
            ),
            (
                "request: { url: 'http://h/' }\nexpect: { max_body: 2GiB }",
                &[("expect.max_body", "2 GiB is too large (at most 1 GiB)")],
            ),
            // Everything at once: all reported, not just the first.
            (
                "request: { url: 'gopher://u:hunter22@h/', method: '' }\nmax_redirects: 99\nexpect: { body_regex: '(' }",
                &[
                    ("request.url", "unsupported url scheme"),
                    ("request.method", "invalid method"),
                    ("expect.body_regex", "invalid regular expression"),
                    ("max_redirects", "too many"),
                ],
            ),
        ];
        for (yaml, want) in cases {
            let errs = spec(yaml).validate();
            assert_eq!(errs.len(), want.len(), "{yaml}: {errs:?}");
            for ((path, msg), e) in want.iter().zip(&errs) {
                assert_eq!(e.path, *path, "{yaml}: {errs:?}");
                assert!(e.message.contains(msg), "{yaml}: {:?}", e.message);
                assert!(!e.message.ends_with('.'), "{:?}", e.message);
                assert!(
                    !e.message.starts_with(char::is_uppercase),
                    "{:?}",
                    e.message
                );
                for secret in ["hunter22", "s3cret"] {
                    assert!(!e.message.contains(secret), "{:?} leaks", e.message);
                }
            }
            // build() refuses what validate() reports.
            assert!(spec(yaml).build().is_err(), "{yaml}");
        }
    }

    #[test]
    fn target_host_is_lower_case_without_brackets() {
        let cases = [
            ("http://API.Example.com/x", Some("api.example.com")),
            ("https://u:p@[::1]:8443/", Some("::1")),
            ("http://10.0.0.1:8080", Some("10.0.0.1")),
            ("ftp://x/", None),
        ];
        for (url, want) in cases {
            let s = spec(&format!("request: {{ url: '{url}' }}"));
            assert_eq!(s.target_host().as_deref(), want, "{url}");
        }
    }

    #[test]
    fn redact_url_hides_userinfo_and_query_values() {
        let cases = [
            (
                "https://alice:hunter2@api.example.com/v1/x?token=abc&flag",
                "https://api.example.com/v1/x?token=***&flag",
            ),
            ("http://bob@h:8080", "http://h:8080/"),
            ("http://u:p%40ss@[::1]:80/a", "http://[::1]/a"),
            ("HTTPS://h:443/", "https://h/"),
            ("not a url", "<invalid url>"),
        ];
        for (url, want) in cases {
            let shown = redact_url(url);
            assert_eq!(shown, want, "{url}");
            for secret in ["alice", "hunter2", "bob", "p%40ss", "abc"] {
                assert!(!shown.contains(secret), "{shown} leaks {secret}");
            }
        }
        let t = parse_target("http://u%3Ax:p%40ss@h/").unwrap();
        assert_eq!(t.userinfo.as_deref(), Some("u:x:p@ss"));
    }

    #[test]
    fn redirect_locations_resolve_against_the_current_url() {
        let base = parse_target("https://h:8443/a/b/c?q=1").unwrap();
        let cases = [
            ("/x", "https://h:8443/x"),
            ("x?y=1", "https://h:8443/a/b/x?y=***"),
            ("?z=2", "https://h:8443/a/b/c?z=***"),
            ("//other/p", "https://other/p"),
            ("http://other:81/p#frag", "http://other:81/p"),
            ("HTTPS://Other/", "https://other/"),
        ];
        for (loc, want) in cases {
            let t = resolve_location(&base, loc).unwrap_or_else(|e| panic!("{loc}: {e}"));
            assert_eq!(t.display(), want, "{loc}");
        }
        for bad in ["", "ftp://x/", "http://bad host/"] {
            assert!(resolve_location(&base, bad).is_err(), "{bad}");
        }
    }

    // ---- against real servers ------------------------------------------------------------

    #[tokio::test]
    async fn up_with_phases_ip_size_and_status() {
        let (addr, _seen) = http_server(|_| reply(200, "hello")).await;
        let obs = run(&spec(&format!("request: {{ url: 'http://{addr}/' }}"))).await;
        assert_up(&obs);
        assert_eq!(obs.status_code, Some(200));
        assert_eq!(obs.ip, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert_eq!(obs.size, Some(5));
        assert_eq!(obs.redirects, 0);
        assert_eq!(obs.cert_expiry, None);
        let names: Vec<_> = obs.phases.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["resolve", "connect", "processing", "transfer"]);
        // An IP literal is not resolved.
        assert_eq!(obs.phases[0].1, Duration::ZERO);
        let sum: Duration = obs.phases.iter().map(|(_, d)| *d).sum();
        assert!(obs.duration >= sum, "{:?} < {sum:?}", obs.duration);
    }

    #[tokio::test]
    async fn status_expectations() {
        // The server answers with the status named by the path: /503 -> 503.
        let (addr, _seen) =
            http_server(|s| reply(s.path.trim_start_matches('/').parse().unwrap(), "")).await;
        let cases: &[(u16, &str, Option<&str>)] = &[
            (200, "", None),
            (204, "", None),
            (503, "", Some("status 503, expected 2xx")),
            (302, "", Some("status 302, expected 2xx")),
            (201, "expect: { status: [200, 201] }", None),
            (
                503,
                "expect: { status: [200, 201] }",
                Some("status 503, expected 200, 201"),
            ),
            (404, "expect: { status: ['400-404'] }", None),
            (
                405,
                "expect: { status: ['400-404'] }",
                Some("status 405, expected 400-404"),
            ),
            (503, "expect: { status: [5xx] }", None),
            (
                200,
                "expect: { status: [5xx, 418] }",
                Some("status 200, expected 5xx, 418"),
            ),
        ];
        for (code, expect, want) in cases {
            let obs = run(&spec(&format!(
                "request: {{ url: 'http://{addr}/{code}' }}\n{expect}"
            )))
            .await;
            assert_eq!(obs.status_code, Some(*code), "{code} {expect}");
            match want {
                None => assert_up(&obs),
                Some(w) => assert_eq!(reason(&obs), *w, "{code} {expect}"),
            }
        }
    }

    #[tokio::test]
    async fn post_write_reaches_the_server_as_written() {
        let (addr, mut seen) = http_server(|_| reply(201, r#"{"ok":true}"#)).await;
        let port = addr.port();
        let s = spec(&format!(
            r#"
request:
  method: POST
  url: "http://probe:pa%3Ass@127.0.0.1:{port}/v1/canary?x=1"
  body: '{{"ping":1}}'
  headers: {{ content-type: application/json, X-Trace: abc123 }}
expect: {{ status: [200, 201], body_contains: '"ok":true' }}
"#
        ));
        let obs = run(&s).await;
        assert_up(&obs);
        let req = seen.recv().await.unwrap();
        assert_eq!(req.method, "POST");
        assert_eq!(req.path, "/v1/canary?x=1");
        assert_eq!(&req.body[..], br#"{"ping":1}"#);
        let h = |n: &str| req.headers.get(n).map(|v| v.to_str().unwrap().to_string());
        assert_eq!(h("content-type").as_deref(), Some("application/json"));
        assert_eq!(h("x-trace").as_deref(), Some("abc123"));
        assert_eq!(h("content-length").as_deref(), Some("10"));
        assert_eq!(h("host"), Some(format!("127.0.0.1:{port}")));
        assert_eq!(h("connection").as_deref(), Some("close"));
        assert_eq!(h("user-agent").as_deref(), Some(USER_AGENT));
        assert!(USER_AGENT.starts_with("probed/"));
        // Userinfo goes as Basic credentials, percent-decoded: "probe:pa:ss".
        assert_eq!(
            h("authorization").as_deref(),
            Some(format!("Basic {}", base64(b"probe:pa:ss")).as_str())
        );
    }

    #[tokio::test]
    async fn explicit_host_and_user_agent_win() {
        let (addr, mut seen) = http_server(|_| reply(200, "")).await;
        let s = spec(&format!(
            "request: {{ url: 'http://{addr}/', method: HEAD, headers: {{ Host: vhost.example, User-Agent: mine }} }}"
        ));
        assert_up(&run(&s).await);
        let req = seen.recv().await.unwrap();
        assert_eq!(req.method, "HEAD");
        assert_eq!(req.headers.get_all("host").iter().count(), 1);
        assert_eq!(req.headers["host"], "vhost.example");
        assert_eq!(req.headers.get_all("user-agent").iter().count(), 1);
        assert_eq!(req.headers["user-agent"], "mine");
    }

    #[tokio::test]
    async fn latency_under() {
        let (addr, _seen) = http_server(|s| Reply {
            delay: if s.path == "/slow" {
                Duration::from_millis(150)
            } else {
                Duration::ZERO
            },
            ..reply(200, "")
        })
        .await;
        let fast = run(&spec(&format!(
            "request: {{ url: 'http://{addr}/fast' }}\nexpect: {{ latency_under: 2s }}"
        )))
        .await;
        assert_up(&fast);
        let slow = run(&spec(&format!(
            "request: {{ url: 'http://{addr}/slow' }}\nexpect: {{ latency_under: 100ms }}"
        )))
        .await;
        assert_down(&slow, "expected under 100ms");
        assert!(reason(&slow).starts_with("took "), "{}", reason(&slow));
        assert!(slow.duration >= Duration::from_millis(150));
        assert_eq!(slow.status_code, Some(200));
    }

    #[tokio::test]
    async fn body_and_header_expectations() {
        let (addr, _seen) = http_server(|s| match s.path.as_str() {
            "/json" => reply(
                200,
                r#"{"status":"ok","db":{"writable":true,"lag":0.5},"n":3}"#,
            )
            .header("etag", "\"v42\"")
            .header("x-multi", "a")
            .header("x-multi", "b"),
            _ => reply(200, "<html>build 1.2.3 all good</html>"),
        })
        .await;
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("/text", "body_contains: 'all good'", None),
            (
                "/text",
                "body_contains: 'on fire'",
                Some(r#"body does not contain "on fire""#),
            ),
            ("/text", "body_not_contains: 'error'", None),
            (
                "/text",
                "body_not_contains: 'good'",
                Some(r#"body contains "good""#),
            ),
            ("/text", r#"body_regex: 'build \d+\.\d+\.\d+'"#, None),
            (
                "/text",
                r#"body_regex: 'build 9\.\d+'"#,
                Some(r"body does not match /build 9\.\d+/"),
            ),
            (
                "/json",
                "json: { /status: ok, /db/writable: true, /n: 3.0 }",
                None,
            ),
            (
                "/json",
                "json: { /status: degraded }",
                Some(r#"json "/status" is "ok", expected "degraded""#),
            ),
            (
                "/json",
                "json: { /db/lag: 0 }",
                Some(r#"json "/db/lag" is 0.5, expected 0"#),
            ),
            (
                "/json",
                "json: { /missing: 1 }",
                Some(r#"json "/missing" is missing"#),
            ),
            (
                "/text",
                "json: { /status: ok }",
                Some("body is not json: expected value at line 1 column 1"),
            ),
            ("/json", r#"headers: { ETag: '^"v\d+"$' }"#, None),
            ("/json", "headers: { x-multi: '^b$' }", None),
            (
                "/json",
                "headers: { etag: 'v9' }",
                Some("header etag does not match /v9/"),
            ),
            (
                "/json",
                "headers: { x-absent: '.*' }",
                Some("header x-absent is missing"),
            ),
            // The first failing expectation is the reason.
            (
                "/json",
                "{ status: [500], body_contains: nope }",
                Some("status 200, expected 500"),
            ),
        ];
        for (path, expect, want) in cases {
            let expect = if expect.starts_with('{') {
                format!("expect: {expect}")
            } else {
                format!("expect: {{ {expect} }}")
            };
            let obs = run(&spec(&format!(
                "request: {{ url: 'http://{addr}{path}' }}\n{expect}"
            )))
            .await;
            match want {
                None => assert_up(&obs),
                Some(w) => {
                    assert!(!obs.ok, "{expect}");
                    assert!(reason(&obs).starts_with(w), "{expect}: {:?}", reason(&obs));
                }
            }
        }
    }

    #[tokio::test]
    async fn server_that_never_answers_is_down_at_the_deadline() {
        // Accepts, reads the request, and then says nothing until the client goes away.
        let addr = tcp_server(|mut s| async move {
            let mut buf = [0u8; 1024];
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
        let t = Instant::now();
        let within = Duration::from_millis(400);
        let obs = run_in(
            &spec(&format!("request: {{ url: 'http://{addr}/' }}")),
            &env(),
            within,
        )
        .await;
        let took = t.elapsed();
        assert_down(&obs, "timed out after ");
        assert_down(&obs, "while waiting for response headers");
        assert!(
            took >= within && took < within + Duration::from_millis(250),
            "{took:?}"
        );
        assert!(obs.phases.iter().any(|(n, _)| *n == "processing"));
        assert_eq!(obs.status_code, None);
    }

    #[tokio::test]
    async fn slowloris_headers_are_down_at_the_deadline() {
        // Sends a response head one byte every 50ms: never done before the deadline.
        let addr = tcp_server(|mut s| async move {
            read_head(&mut s).await;
            for b in b"HTTP/1.1 200 OK\r\nX-Slow: "
                .iter()
                .chain(std::iter::repeat(&b'z'))
            {
                if s.write_all(&[*b]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        let t = Instant::now();
        let within = Duration::from_millis(500);
        let obs = run_in(
            &spec(&format!("request: {{ url: 'http://{addr}/' }}")),
            &env(),
            within,
        )
        .await;
        assert!(
            t.elapsed() < within + Duration::from_millis(250),
            "{:?}",
            t.elapsed()
        );
        assert_down(&obs, "while waiting for response headers");
    }

    #[tokio::test]
    async fn slow_body_is_down_at_the_deadline_in_transfer() {
        let addr = tcp_server(|mut s| async move {
            read_head(&mut s).await;
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nabc")
                .await;
            let mut buf = [0u8; 64];
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 {
                    break;
                }
            }
        })
        .await;
        let obs = run_in(
            &spec(&format!("request: {{ url: 'http://{addr}/' }}")),
            &env(),
            Duration::from_millis(300),
        )
        .await;
        assert_down(&obs, "while reading the response body");
        assert_eq!(obs.status_code, Some(200));
        assert_eq!(obs.size, Some(3));
    }

    /// Streams a chunked body forever, 16 KiB a chunk, until the client goes away.
    async fn endless_body(mut s: TcpStream) {
        read_head(&mut s).await;
        let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        if s.write_all(head).await.is_err() {
            return;
        }
        let mut chunk = b"4000\r\n".to_vec();
        chunk.extend(std::iter::repeat_n(b'x', 0x4000));
        chunk.extend_from_slice(b"\r\n");
        while s.write_all(&chunk).await.is_ok() {}
    }

    #[tokio::test]
    async fn endless_body_stops_at_the_size_limit() {
        let addr = tcp_server(endless_body).await;
        let cases = [
            (
                "expect: { max_body: 256KiB }",
                256 << 10,
                "response body larger than 256 KiB limit (read 272 KiB before stopping)",
            ),
            // The body is kept for the expectation, and still no further than the cap.
            (
                "expect: { max_body: 64KiB, body_contains: never }",
                64 << 10,
                "response body larger than 64 KiB limit (read 80 KiB before stopping)",
            ),
            (
                "",
                DEFAULT_MAX_BODY,
                "response body larger than 10 MiB limit (read ",
            ),
        ];
        for (expect, cap, want) in cases {
            let obs = run(&spec(&format!(
                "request: {{ url: 'http://{addr}/' }}\n{expect}"
            )))
            .await;
            assert_down(&obs, want);
            let size = obs.size.unwrap();
            assert!(size > cap && size <= cap + 0x4000, "{expect}: read {size}");
            assert_eq!(obs.status_code, Some(200));
        }
    }

    #[tokio::test]
    async fn garbage_responses_are_down_with_a_reason() {
        let cases: &[(&[u8], &str)] = &[
            (
                b"HTTP/1.1 99999 lol\r\n\r\n",
                "http: invalid HTTP status-code parsed",
            ),
            (
                b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03garbage\xff\xfe\r\n\r\n",
                "http: invalid HTTP version parsed",
            ),
            (
                b"SSH-2.0-OpenSSH_9.6\r\n",
                "http: invalid HTTP version parsed",
            ),
            (b"", "http: connection closed before message completed"),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
                "reading the response body: error reading a body from connection: \
                 end of file before message length reached",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n",
                "http: invalid content-length parsed",
            ),
        ];
        for (bytes, want) in cases {
            let bytes = bytes.to_vec();
            let addr = tcp_server(move |mut s| {
                let bytes = bytes.clone();
                async move {
                    read_head(&mut s).await;
                    let _ = s.write_all(&bytes).await;
                    // Dropping the stream closes the connection.
                }
            })
            .await;
            let t = Instant::now();
            let obs = run(&spec(&format!("request: {{ url: 'http://{addr}/' }}"))).await;
            assert_eq!(reason(&obs), *want);
            assert!(
                t.elapsed() < Duration::from_secs(2),
                "{want}: {:?}",
                t.elapsed()
            );
        }
    }

    #[tokio::test]
    async fn connection_refused_is_down() {
        let addr = refused_addr().await;
        let obs = run(&spec(&format!("request: {{ url: 'http://{addr}/' }}"))).await;
        assert_eq!(
            reason(&obs),
            format!("connect to {addr}: connection refused")
        );
        assert_eq!(obs.ip, Some(addr.ip()));
        assert!(obs.phases.iter().any(|(n, _)| *n == "connect"));
    }

    #[tokio::test]
    async fn redirects_followed_counted_capped_or_not_followed() {
        // /hop/N redirects to /hop/N-1 (relative), /hop/0 answers 200.
        let (addr, mut seen) = http_server(|s| {
            let path = s.path.split('?').next().unwrap();
            match path
                .strip_prefix("/hop/")
                .map(|n| n.parse::<u32>().unwrap())
            {
                Some(0) => reply(200, "landed"),
                Some(n) => reply(302, "").header("location", &format!("{}", n - 1)),
                None if path == "/see-other" => reply(303, "").header("location", "/hop/0"),
                None if path == "/temporary" => reply(307, "").header("location", "/hop/0"),
                None => reply(404, ""),
            }
        })
        .await;
        let obs = run(&spec(&format!("request: {{ url: 'http://{addr}/hop/3' }}"))).await;
        assert_up(&obs);
        assert_eq!(
            (obs.redirects, obs.status_code, obs.size),
            (3, Some(200), Some(6))
        );
        let paths: Vec<_> = std::iter::from_fn(|| seen.try_recv().ok())
            .map(|s| s.path)
            .collect();
        assert_eq!(paths, ["/hop/3", "/hop/2", "/hop/1", "/hop/0"]);

        let capped = run(&spec(&format!(
            "request: {{ url: 'http://{addr}/hop/5' }}\nmax_redirects: 2"
        )))
        .await;
        assert_down(&capped, "too many redirects (max_redirects is 2)");
        assert_eq!(capped.redirects, 2);

        let not_followed = run(&spec(&format!(
            "request: {{ url: 'http://{addr}/hop/1' }}\nfollow_redirects: false"
        )))
        .await;
        assert_eq!(reason(&not_followed), "status 302, expected 2xx");
        assert_eq!(not_followed.redirects, 0);
        let expected_302 = run(&spec(&format!(
            "request: {{ url: 'http://{addr}/hop/1' }}\nfollow_redirects: false\nexpect: {{ status: [302] }}"
        )))
        .await;
        assert_up(&expected_302);

        // POST + 303 becomes GET without a body; POST + 307 stays POST with its body.
        while seen.try_recv().is_ok() {}
        for (path, method, body) in [("/see-other", "GET", ""), ("/temporary", "POST", "hi")] {
            let obs = run(&spec(&format!(
                "request: {{ url: 'http://{addr}{path}', method: POST, body: hi, headers: {{ content-type: text/plain }} }}"
            )))
            .await;
            assert_up(&obs);
            let first = seen.recv().await.unwrap();
            assert_eq!(
                (first.method.as_str(), &first.body[..]),
                ("POST", &b"hi"[..])
            );
            let second = seen.recv().await.unwrap();
            assert_eq!(second.path, "/hop/0");
            assert_eq!(
                (second.method.as_str(), &second.body[..]),
                (method, body.as_bytes())
            );
            assert_eq!(
                second.headers.contains_key("content-type"),
                method == "POST"
            );
        }
    }

    #[tokio::test]
    async fn credentials_are_not_sent_to_another_host() {
        let dns = dns_server().await;
        let env = Env::new(&[dns]).unwrap();
        // 127.0.0.1 redirects to itself, then to other.test (another host, same server).
        let (addr, mut seen) = http_server(move |s| match s.path.as_str() {
            "/start" => reply(302, "").header("location", "/same"),
            "/same" => {
                let port = s.headers["host"]
                    .to_str()
                    .unwrap()
                    .rsplit(':')
                    .next()
                    .unwrap();
                reply(302, "").header("location", &format!("http://other.test:{port}/end"))
            }
            _ => reply(200, ""),
        })
        .await;
        let s = spec(&format!(
            "request: {{ url: 'http://u:hunter22@{addr}/start', headers: {{ Cookie: session=s3cretcookie }} }}"
        ));
        let obs = run_in(&s, &env, Duration::from_secs(5)).await;
        assert_up(&obs);
        assert_eq!(obs.redirects, 2);
        for path in ["/start", "/same"] {
            let req = seen.recv().await.unwrap();
            assert_eq!(req.path, path);
            assert!(
                req.headers.contains_key("authorization") && req.headers.contains_key("cookie")
            );
        }
        let last = seen.recv().await.unwrap();
        assert_eq!(last.path, "/end");
        assert_eq!(last.headers["host"], format!("other.test:{}", addr.port()));
        assert!(
            !last.headers.contains_key("authorization"),
            "{:?}",
            last.headers
        );
        assert!(!last.headers.contains_key("cookie"), "{:?}", last.headers);

        // https -> http on the same host is a downgrade: no credentials either.
        let https = spec("request: { url: 'https://u:p@a.example/x' }")
            .build()
            .unwrap();
        let downgrade = parse_target("http://a.example/y").unwrap();
        let req = https.request(&downgrade, &Method::GET, true).unwrap();
        assert!(!req.headers().contains_key("authorization"));
        let upgrade = parse_target("https://a.example/y").unwrap();
        let http = spec("request: { url: 'http://u:p@a.example/x' }")
            .build()
            .unwrap();
        let req = http.request(&upgrade, &Method::GET, true).unwrap();
        assert!(req.headers().contains_key("authorization"));
    }

    /// A tiny DNS server on UDP 127.0.0.1:0: `web.test` and `other.test` have an A record
    /// (127.0.0.1) and no AAAA; `blackhole.test` is never answered; every other name is
    /// NXDOMAIN.
    async fn dns_server() -> SocketAddr {
        let local = |last| Ipv4Addr::new(127, 0, 0, last);
        Zone::new()
            .silent("blackhole.test")
            // Three edges of one site, for the version skew check.
            .a("edges.test", &[local(1), local(2), local(3)])
            // Two addresses: nothing listens on the first (127.0.0.2), the server on the
            // second.
            .a("multi.test", &[local(2), Ipv4Addr::LOCALHOST])
            .a("web.test", &[Ipv4Addr::LOCALHOST])
            .a("other.test", &[Ipv4Addr::LOCALHOST])
            .serve()
            .await
    }

    #[tokio::test]
    async fn dns_resolve_phase_nxdomain_family_and_timeout() {
        let dns = dns_server().await;
        let env = Env::new(&[dns]).unwrap();
        let (addr, _seen) = http_server(|_| reply(200, "")).await;
        let port = addr.port();

        let obs = run_in(
            &spec(&format!("request: {{ url: 'http://web.test:{port}/' }}")),
            &env,
            Duration::from_secs(5),
        )
        .await;
        assert_up(&obs);
        assert_eq!(obs.ip, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert_eq!(obs.phases[0].0, "resolve");
        assert!(obs.phases[0].1 > Duration::ZERO);

        // The first address refuses: the next one is tried within the same check.
        let obs = run_in(
            &spec(&format!("request: {{ url: 'http://multi.test:{port}/' }}")),
            &env,
            Duration::from_secs(5),
        )
        .await;
        assert_up(&obs);
        assert_eq!(obs.ip, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        // Every address refuses: the reason names each one.
        let closed_port = refused_addr().await.port();
        let obs = run_in(
            &spec(&format!(
                "request: {{ url: 'http://multi.test:{closed_port}/' }}"
            )),
            &env,
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(
            reason(&obs),
            format!(
                "connect to 127.0.0.2:{closed_port}: connection refused; \
                 127.0.0.1:{closed_port}: connection refused"
            )
        );

        let cases = [
            (
                "request: { url: 'http://nosuch.example/' }",
                "dns: no record for nosuch.example (NXDOMAIN)",
            ),
            (
                "request: { url: 'http://web.test/' }\nip: ipv6",
                "dns: no ipv6 (AAAA) record for web.test",
            ),
        ];
        for (yaml, want) in cases {
            let obs = run_in(&spec(yaml), &env, Duration::from_secs(5)).await;
            assert_eq!(reason(&obs), want, "{yaml}");
            assert_eq!(obs.ip, None);
            assert_eq!(obs.phases.len(), 1, "{:?}", obs.phases);
        }
        let obs = run_in(
            &spec(&format!(
                "request: {{ url: 'http://web.test:{port}/' }}\nip: ipv4"
            )),
            &env,
            Duration::from_secs(5),
        )
        .await;
        assert_up(&obs);

        let t = Instant::now();
        let within = Duration::from_millis(400);
        let obs = run_in(
            &spec("request: { url: 'http://blackhole.test/' }"),
            &env,
            within,
        )
        .await;
        assert!(
            t.elapsed() < within + Duration::from_millis(250),
            "{:?}",
            t.elapsed()
        );
        assert_down(&obs, "while resolving blackhole.test");
        assert!(
            reason(&obs).starts_with("timed out after "),
            "{}",
            reason(&obs)
        );
    }

    /// A CA and a leaf certificate for `sans`, signed by it, and a server config using them.
    fn pki(sans: &[&str]) -> Pki {
        ca_signed(sans, 365 * 86_400)
    }

    /// An HTTPS server (hyper over tokio-rustls) on 127.0.0.1:0 answering 200 `secure`.
    async fn tls_server(config: Arc<rustls::ServerConfig>) -> SocketAddr {
        let (tx, _rx) = mpsc::unbounded_channel();
        let answer = Arc::new(|_: &Seen| reply(200, "secure"));
        testkit::tls_server(config, move |tls| {
            serve_http(TokioIo::new(tls), answer.clone(), tx.clone())
        })
        .await
    }

    #[tokio::test]
    async fn tls_verification_expiry_and_errors() {
        let pki = pki(&["127.0.0.1", "api.internal"]);
        let addr = tls_server(pki.server.clone()).await;
        let ca_file = pem_file(&pki.ca_pem);
        let ca = format!("ca_file: '{}'", ca_file.path().display());
        let url = format!("request: {{ url: 'https://{addr}/' }}");
        let cases: Vec<(String, Option<&str>)> = vec![
            (format!("tls: {{ {ca} }}"), None),
            (format!("tls: {{ {ca}, server_name: api.internal }}"), None),
            (
                String::new(),
                Some(
                    "tls: invalid peer certificate: unknown issuer (not signed by a trusted root)",
                ),
            ),
            (
                format!("tls: {{ {ca}, server_name: other.example }}"),
                Some(
                    "tls: invalid peer certificate: certificate not valid for name \"other.example\"",
                ),
            ),
            ("tls: { insecure_skip_verify: true }".into(), None),
            (
                "tls: { insecure_skip_verify: true, server_name: other.example }".into(),
                None,
            ),
        ];
        let env = env();
        for (tls, want) in &cases {
            let obs = run_in(
                &spec(&format!("{url}\n{tls}")),
                &env,
                Duration::from_secs(5),
            )
            .await;
            let names: Vec<_> = obs.phases.iter().map(|(n, _)| *n).collect();
            match want {
                None => {
                    assert_up(&obs);
                    assert_eq!(obs.cert_expiry, Some(pki.leaf_not_after), "{tls}");
                    assert_eq!(
                        names,
                        ["resolve", "connect", "tls", "processing", "transfer"]
                    );
                    assert_eq!(obs.size, Some(6));
                }
                Some(w) => {
                    assert!(reason(&obs).starts_with(w), "{tls}: {:?}", reason(&obs));
                    assert_eq!(obs.cert_expiry, None);
                    assert_eq!(names, ["resolve", "connect", "tls"]);
                }
            }
        }

        // The TLS config is built once per env, not per check.
        let check = spec(&format!("{url}\ntls: {{ {ca} }}")).build().unwrap();
        let a = check.tls_config(&env).unwrap();
        let b = check.tls_config(&env).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let other_env = self::env();
        assert!(!Arc::ptr_eq(&a, &check.tls_config(&other_env).unwrap()));

        // A bad ca_file fails at build time.
        for (content, want) in [("", "no certificate in"), ("not pem", "no certificate in")] {
            let f = pem_file(content);
            let s = spec(&format!(
                "{url}\ntls: {{ ca_file: '{}' }}",
                f.path().display()
            ));
            let e = s.build().err().unwrap();
            assert!(e.starts_with("tls.ca_file: ") && e.contains(want), "{e}");
        }
        let e = spec(&format!("{url}\ntls: {{ ca_file: /nonexistent/ca.pem }}"))
            .build()
            .err()
            .unwrap();
        assert_eq!(
            e,
            "tls.ca_file: cannot read /nonexistent/ca.pem: no such file or directory"
        );
    }

    #[tokio::test]
    async fn secrets_never_appear_in_reasons() {
        let pki = pki(&["127.0.0.1"]);
        let tls = tls_server(pki.server.clone()).await;
        let refused = refused_addr().await;
        let silent = tcp_server(hold).await;
        let garbage = tcp_server(|mut s| async move {
            read_head(&mut s).await;
            let _ = s.write_all(b"HTTP/1.1 99999 lol\r\n\r\n").await;
        })
        .await;
        let (plain, _seen) = http_server(|s| match s.path.split('?').next() {
            Some("/bad-location") => reply(302, "").header(
                "location",
                "ftp://user:hunter2-secret@x/?token=tok-s3cret-value",
            ),
            _ => reply(302, "").header("location", "http://probe:hunter2-secret@web.test/"),
        })
        .await;
        let dns = dns_server().await;
        let env = Env::new(&[dns]).unwrap();
        let secrets = [
            "hunter2-secret",
            "tok-s3cret-value",
            "key-s3cret-value",
            "probe:",
            &base64(b"probe:hunter2-secret"),
        ];
        let targets = [
            format!("http://{refused}/"),
            format!("https://{tls}/"),
            format!("http://{tls}/"),
            format!("https://{plain}/"),
            format!("http://{silent}/"),
            format!("http://{garbage}/"),
            format!("http://{plain}/bad-location?token=tok-s3cret-value"),
            format!("http://{plain}/loop"),
            "http://nosuch.example/?token=tok-s3cret-value".to_string(),
        ];
        for target in targets {
            let url = target.replacen("://", "://probe:hunter2-secret@", 1);
            let s = spec(&format!(
                r#"
request:
  url: "{url}"
  headers: {{ Authorization: "Bearer tok-s3cret-value", X-Api-Key: key-s3cret-value }}
max_redirects: 0
"#
            ));
            let obs = run_in(&s, &env, Duration::from_millis(400)).await;
            let r = reason(&obs);
            assert!(!obs.ok && !r.is_empty(), "{target}");
            for secret in secrets {
                assert!(!r.contains(secret), "{target}: {r:?} leaks {secret:?}");
            }
            // Clean by construction, not only thanks to the scrubber below.
            assert!(!r.contains("***") || r.contains("=***"), "{target}: {r:?}");
        }
    }

    #[test]
    fn scrubber_blanks_secrets_that_slip_into_a_reason() {
        let check = spec(
            "request: { url: 'http://probe:hunter2-secret@h/', headers: { X-Api-Key: key-s3cret-value, X-Short: on } }",
        )
        .build()
        .unwrap();
        let basic = base64(b"probe:hunter2-secret");
        let leaked = format!("a probe:hunter2-secret b key-s3cret-value c Basic {basic} on");
        assert_eq!(check.scrub(leaked), "a *** b *** c *** on");
    }

    #[test]
    fn check_future_is_send() {
        fn assert_send<T: Send>(_: &T) {}
        let check = spec("request: { url: 'http://127.0.0.1/' }")
            .build()
            .unwrap();
        let env = env();
        let cx = CheckCx {
            env: &env,
            deadline: Instant::now(),
        };
        let fut = check.check(&cx);
        assert_send(&fut);
    }

    /// Three edges on 127.0.0.1-3, same port, each serving the version in its slot (and a
    /// status). Returns the port.
    async fn edges(versions: Arc<Mutex<[(&'static str, u16); 3]>>) -> u16 {
        for _ in 0..20 {
            let first = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = first.local_addr().unwrap().port();
            let mut ls = vec![first];
            for last in [2u8, 3] {
                match TcpListener::bind((Ipv4Addr::new(127, 0, 0, last), port)).await {
                    Ok(l) => ls.push(l),
                    Err(_) => break,
                }
            }
            if ls.len() < 3 {
                continue;
            }
            for (i, l) in ls.into_iter().enumerate() {
                let versions = versions.clone();
                tokio::spawn(async move {
                    while let Ok((mut s, _)) = l.accept().await {
                        let (v, status) = versions.lock().unwrap()[i];
                        tokio::spawn(async move {
                            let mut buf = [0u8; 4096];
                            let mut n = 0;
                            while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                                match s.read(&mut buf[n..]).await {
                                    Ok(0) | Err(_) => return,
                                    Ok(k) => n += k,
                                }
                            }
                            let host = String::from_utf8_lossy(&buf[..n])
                                .lines()
                                .find(|l| l.to_ascii_lowercase().starts_with("host:"))
                                .unwrap_or_default()
                                .to_owned();
                            let body = format!("build {v} ({host})");
                            let _ = s
                                .write_all(
                                    format!(
                                        "HTTP/1.1 {status} X\r\nx-build: {v}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                                        body.len()
                                    )
                                    .as_bytes(),
                                )
                                .await;
                        });
                    }
                });
            }
            return port;
        }
        panic!("no port free on 127.0.0.1-3");
    }

    #[tokio::test]
    async fn edge_version_skew_names_the_stale_edge() {
        let dns = dns_server().await;
        let env = Env::new(&[dns]).unwrap();
        let versions = Arc::new(Mutex::new([("v2", 200), ("v2", 200), ("v2", 200)]));
        let port = edges(versions.clone()).await;
        let yaml = |extra: &str| {
            format!("request: {{ url: 'http://edges.test:{port}/' }}\nedges: {{ {extra} }}")
        };
        let five = Duration::from_secs(5);
        let check = spec(&yaml("version_header: x-build"));
        let obs = run_in(&check, &env, five).await;
        assert_up(&obs);
        assert!(obs.phases.iter().any(|(n, _)| *n == "connect"));

        // One edge serves the old build: down at once, naming it.
        versions.lock().unwrap()[1] = ("v1", 200);
        let obs = run_in(&check, &env, five).await;
        assert_eq!(
            reason(&obs),
            "edges disagree: 127.0.0.1, 127.0.0.3 serve \"v2\"; 127.0.0.2 serves \"v1\" (stale: 127.0.0.2)"
        );
        // The same marker from the body, by regex.
        let by_body = spec(&yaml(r"version_regex: 'build (v\d+)'"));
        assert!(reason(&run_in(&by_body, &env, five).await).contains("(stale: 127.0.0.2)"));

        // A rollout in progress: tolerated for max_skew_for.
        let patient = spec(&yaml("version_header: x-build, max_skew_for: 1h"));
        assert_up(&run_in(&patient, &env, five).await);

        // An edge that fails outright is named too.
        versions.lock().unwrap()[1] = ("v2", 503);
        let obs = run_in(&check, &env, five).await;
        assert!(
            reason(&obs).starts_with("edge 127.0.0.2: status 503"),
            "{}",
            reason(&obs)
        );

        // Every edge gets the site's Host header, not its IP.
        versions.lock().unwrap()[1] = ("v2", 200);
        let body_host = spec(&yaml(r"version_regex: '(?i)host: (\S+)'"));
        let obs = run_in(&body_host, &env, five).await;
        assert_up(&obs);

        // Edges need exactly one marker.
        let errs = spec(&yaml("max_skew_for: 1m")).validate();
        assert_eq!(errs[0].path, "edges");
    }
}
