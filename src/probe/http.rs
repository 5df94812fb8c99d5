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
use schemars::JsonSchema;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;

pub use super::net::IpPreference;
use super::net::{self, TlsClient, json_eq};
use super::{CheckCx, Env, Observation, until};
use crate::text::FieldError;
use crate::text::{error_chain, regex_error, short, tidy};
use crate::units::{ByteSize, Dur, format_bytes, format_duration};

/// Default cap on the response body read by a probe.
pub const DEFAULT_MAX_BODY: u64 = 10 << 20;
/// Largest `expect.max_body` accepted: the body is held in memory to be judged.
pub const MAX_BODY_LIMIT: u64 = 1 << 30;

/// An HTTP probe.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
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
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "HttpEdges")]
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
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "HttpRequest")]
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
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "HttpExpect")]
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

impl schemars::JsonSchema for StatusPattern {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "HttpStatus".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "An accepted status: a code (200), a range (\"200-299\") or a class (\"2xx\").",
            "type": ["integer", "string"],
            "minimum": 100,
            "maximum": 599,
            "pattern": format!(r"^\s*([1-5]([0-9][0-9]|xx|XX)|[0-9]+\s*-\s*[0-9]+)\s*${}", crate::units::INTERP_ALT),
            "examples": [200, "2xx", "200-299"],
            "patternErrorMessage": "not a status: write 200, \"200-299\" or \"2xx\"",
        })
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
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "HttpTls")]
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

    pub fn instance(&self) -> Option<String> {
        net::url_instance(&self.request.url)
    }

    /// Compiles regexes, reads the CA file, builds the TLS config. The check keeps the spec
    /// it was built from, shared with the config rather than copied.
    pub fn build(self: &Arc<Self>) -> Result<Check, String> {
        if let Some(e) = self.validate().into_iter().next() {
            return Err(format!("{}: {}", e.path, e.message));
        }
        let target = parse_target(&self.request.url).map_err(|e| format!("request.url: {e}"))?;
        let method = Method::from_bytes(self.request.method.as_bytes())
            .map_err(|_| "request.method: invalid method".to_string())?;

        let mut secrets = Vec::new();
        let mut headers =
            net::sensitive_headers(&self.request.headers, "request.headers", &mut secrets)?;
        if let Some(userinfo) = &target.userinfo {
            let auth = net::userinfo_auth(userinfo, &mut secrets);
            if !headers.contains_key(header::AUTHORIZATION) {
                headers.insert(header::AUTHORIZATION, auth);
            }
        }
        let secrets = crate::redact::secret_list(secrets);

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
            spec: Arc::clone(self),
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
    pub spec: Arc<Spec>,
    target: Target,
    method: Method,
    /// Request headers for the probe's own origin: the spec's and `Authorization` from the
    /// URL's userinfo. `Host`, `Connection` and the env's `User-Agent` (unless the spec has
    /// one) are added per request.
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
        let judged = fetched.and_then(|resp| {
            let v = self.verdict(&resp, obs.duration);
            obs.failed_due_to_regex = Some(v.is_err() && self.regex_fails(&resp));
            v
        });
        obs.failed_due_to_regex.get_or_insert(false);
        match judged {
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
        crate::redact::scrub(&reason, &self.secrets)
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

        let request = self.request(target, method, with_body, &cx.env.user_agent)?;
        if !target.secure {
            return self.exchange(cx, started, obs, tcp, request).await;
        }
        let t = Instant::now();
        let tls = self.tls_handshake(cx, started, target, tcp).await;
        obs.phase("tls", t.elapsed());
        let tls = tls?;
        net::record_tls(obs, tls.get_ref().1);
        let hop = self.exchange(cx, started, obs, tls, request).await;
        if let Some(h) = &mut obs.http {
            h.ssl = true;
        }
        hop
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
        user_agent: &HeaderValue,
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
        if !headers.contains_key(header::USER_AGENT) {
            headers.insert(header::USER_AGENT, user_agent.clone());
        }
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
        obs.http = Some(crate::probe::HttpSeen {
            version: match response.version() {
                hyper::Version::HTTP_09 => 0.9,
                hyper::Version::HTTP_10 => 1.0,
                hyper::Version::HTTP_2 => 2.0,
                hyper::Version::HTTP_3 => 3.0,
                _ => 1.1,
            },
            content_length: response
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.trim().parse().ok())
                .unwrap_or(-1),
            ssl: false,
        });
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

    /// Whether a regular expression (`body_regex`, a header's) does not match `resp`: what
    /// blackbox_exporter reports as `probe_failed_due_to_regex`.
    fn regex_fails(&self, resp: &Response) -> bool {
        let text = String::from_utf8_lossy(resp.body.as_deref().unwrap_or_default());
        self.body_regex
            .as_ref()
            .is_some_and(|re| !re.is_match(&text))
            || self.header_expect.iter().any(|(name, re)| {
                !resp
                    .headers
                    .get_all(name)
                    .iter()
                    .any(|v| re.is_match(&String::from_utf8_lossy(v.as_bytes())))
            })
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
mod tests;
