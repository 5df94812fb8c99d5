//! `kind: webhook`: one HTTP request per alert whose body is the [`Alert`] as JSON, plus its
//! `summary` and `body` texts. With a `secret`, the request carries
//! `X-Probed-Signature: sha256=<hex HMAC-SHA256 of the body>` so the receiver can tell the
//! request came from us; `X-Probed-Event` and `X-Probed-Dedup-Key` let it route and fold
//! resends without parsing the body.
//!
//! The end of the file holds the HTTP helpers the HTTP notifiers share: how an answer is
//! classified ([`outcome`]: 2xx delivered; 408, 429 and 5xx worth a retry, after
//! `Retry-After` when given; any other answer permanent), how a transport error is told
//! ([`transport_error`]) and how a URL is shown ([`origin`]): never with its userinfo.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use hmac::{Hmac, Mac};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode, Url};
use serde::Deserialize;
use sha2::Sha256;

use super::{Alert, BuildCx, Delivered, SendError};
use crate::probe::FieldError;
use crate::units::{Dur, Secret, format_duration};

/// Settings of a `webhook` notifier.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// `http://` or `https://` URL the alert is sent to. Userinfo (`user:password@`) is
    /// sent as basic auth. Its path and query often hold a token, so messages show only
    /// the scheme, host and port.
    pub url: String,
    /// Shared secret: each request then carries
    /// `X-Probed-Signature: sha256=<hex of HMAC-SHA256(secret, body)>`.
    pub secret: Option<Secret>,
    /// Extra request headers, e.g. `Authorization`. Values are never shown. `Content-Type`,
    /// `Content-Length`, `Host` and the `X-Probed-*` headers are set by probed.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// HTTP method: `POST` (default), `PUT` or `PATCH`.
    pub method: Option<String>,
    /// Deadline of one send, connection included. Default: 10s.
    pub timeout: Option<Dur>,
}

/// Headers a webhook's `headers` may not set: probed sets them itself.
const RESERVED_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "host",
    "transfer-encoding",
    "x-probed-signature",
    "x-probed-event",
    "x-probed-dedup-key",
];

impl Spec {
    /// No file paths in these settings.
    pub fn resolve_paths(&mut self, _base: &std::path::Path) {}

    /// Every problem, without I/O. Messages never repeat the URL or a header value.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if let Err(e) = parse_url(&self.url) {
            errs.push(FieldError::new("url", e));
        }
        if let Err(e) = self.method() {
            errs.push(FieldError::new("method", e));
        }
        if let Some(s) = &self.secret
            && s.expose().is_empty()
        {
            errs.push(FieldError::new("secret", "must not be empty"));
        }
        for (name, value) in &self.headers {
            let path = format!("headers.{name}");
            if HeaderName::from_bytes(name.as_bytes()).is_err() {
                errs.push(FieldError::new(path, "invalid header name"));
            } else if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                errs.push(FieldError::new(path, "this header is set by probed"));
            } else if HeaderValue::from_str(value.expose()).is_err() {
                errs.push(FieldError::new(
                    path,
                    "invalid header value (control characters or non-ascii text)",
                ));
            }
        }
        if let Some(t) = self.timeout
            && t.0.is_zero()
        {
            errs.push(FieldError::new("timeout", "must be more than 0s"));
        }
        errs
    }

    fn method(&self) -> Result<Method, String> {
        match self
            .method
            .as_deref()
            .map(str::to_ascii_uppercase)
            .as_deref()
        {
            None | Some("POST") => Ok(Method::POST),
            Some("PUT") => Ok(Method::PUT),
            Some("PATCH") => Ok(Method::PATCH),
            Some(other) => Err(format!(
                "unsupported method {other:?} (use POST, PUT or PATCH)"
            )),
        }
    }

    /// A sender on the shared HTTP client.
    pub fn build(&self, cx: &BuildCx) -> Result<Sender, String> {
        let url = parse_url(&self.url).map_err(|e| format!("url: {e}"))?;
        let method = self.method().map_err(|e| format!("method: {e}"))?;
        let mut headers = HeaderMap::new();
        let mut scrub = url_secrets(&url);
        for (name, value) in &self.headers {
            let n = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("headers.{name}: invalid header name"))?;
            let mut v = HeaderValue::from_str(value.expose())
                .map_err(|_| format!("headers.{name}: invalid header value"))?;
            v.set_sensitive(true);
            headers.insert(n, v);
            scrub.push(value.expose().to_string());
        }
        if let Some(s) = &self.secret {
            scrub.push(s.expose().to_string());
        }
        Ok(Sender {
            http: cx.http.clone(),
            shown: origin(&url),
            url,
            method,
            headers,
            secret: self.secret.clone(),
            timeout: self.timeout.map_or(super::DEFAULT_SEND_TIMEOUT, |t| t.0),
            scrub: Scrub::new(scrub),
        })
    }
}

/// A ready `webhook` notifier.
pub struct Sender {
    http: reqwest::Client,
    url: Url,
    /// The URL as messages show it: scheme, host and port.
    shown: String,
    method: Method,
    headers: HeaderMap,
    secret: Option<Secret>,
    timeout: Duration,
    scrub: Scrub,
}

impl Sender {
    /// One request, within `timeout`.
    pub async fn send(&self, alert: &Alert) -> Result<Delivered, SendError> {
        let result = match tokio::time::timeout(self.timeout, self.attempt(alert)).await {
            Ok(r) => r,
            Err(_) => Err(SendError::retry(format!(
                "{}: no answer within {}",
                self.shown,
                format_duration(self.timeout)
            ))),
        };
        result.map_err(|e| self.scrub.error(e))
    }

    async fn attempt(&self, alert: &Alert) -> Result<Delivered, SendError> {
        let body = payload(alert)
            .map_err(|e| SendError::permanent(format!("cannot encode the alert: {e}")))?;
        let mut req = self
            .http
            .request(self.method.clone(), self.url.clone())
            .timeout(self.timeout)
            .headers(self.headers.clone())
            .header(CONTENT_TYPE, "application/json")
            .header("x-probed-event", alert.event.as_str())
            .header("x-probed-dedup-key", header_text(&alert.dedup_key));
        if let Some(secret) = &self.secret {
            req = req.header("x-probed-signature", signature(secret, &body)?);
        }
        let resp = req
            .body(body)
            .send()
            .await
            .map_err(|e| transport_error(&self.shown, e, self.timeout))?;
        outcome(&self.shown, resp, &self.scrub).await
    }

    pub fn refresh_every(&self) -> Option<Duration> {
        None
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// The request body: the alert's own fields, plus `summary` and `body`.
fn payload(alert: &Alert) -> Result<Vec<u8>, serde_json::Error> {
    let mut v = serde_json::to_value(alert)?;
    if let Some(m) = v.as_object_mut() {
        m.insert("summary".into(), alert.summary().into());
        m.insert("body".into(), alert.body().into());
    }
    serde_json::to_vec(&v)
}

/// `sha256=<hex of HMAC-SHA256(secret, body)>`.
fn signature(secret: &Secret, body: &[u8]) -> Result<String, SendError> {
    // HMAC takes keys of any length, so this never fails; no panic if it ever did.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.expose().as_bytes())
        .map_err(|_| SendError::permanent("cannot key the hmac signature"))?;
    mac.update(body);
    Ok(format!(
        "sha256={}",
        hex::encode(mac.finalize().into_bytes())
    ))
}

// ---- helpers shared by the HTTP notifiers --------------------------------------------------

/// Longest `Retry-After` honoured; a longer one is cut to this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Characters of an error answer's body shown.
const BODY_SHOWN: usize = 200;

/// Bytes of an error answer's body read (more than [`BODY_SHOWN`] characters can take).
const BODY_READ: usize = 4096;

/// Parses an `http`/`https` URL with a host. Errors never repeat the URL (it may hold a
/// password or a token).
pub(crate) fn parse_url(url: &str) -> Result<Url, String> {
    let u = Url::parse(url.trim()).map_err(|e| format!("invalid url: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!(
            "unsupported url scheme {:?} (use http or https)",
            u.scheme()
        ));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err("url has no host".into());
    }
    if u.fragment().is_some() {
        return Err("url must not have a fragment (#...)".into());
    }
    Ok(u)
}

/// `scheme://host[:port]`: the URL without userinfo, path or query.
pub(crate) fn origin(url: &Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(p) => format!("{}://{host}:{p}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    }
}

/// Texts of a URL that must never be shown: its userinfo, decoded and as written.
pub(crate) fn url_secrets(url: &Url) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(p) = url.password() {
        out.push(p.to_string());
        out.push(percent_decode(p));
    }
    if !url.username().is_empty() && url.password().is_some() {
        out.push(format!(
            "{}:{}",
            url.username(),
            url.password().unwrap_or("")
        ));
    }
    out
}

/// Values removed from every error text (secrets, header values, userinfo).
pub(crate) struct Scrub(Vec<String>);

impl Scrub {
    pub(crate) fn new(mut values: Vec<String>) -> Scrub {
        values.retain(|v| !v.is_empty());
        // Longest first, so a value containing another is removed whole.
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        values.dedup();
        Scrub(values)
    }

    pub(crate) fn text(&self, s: String) -> String {
        self.0.iter().fold(s, |s, v| {
            if s.contains(v.as_str()) {
                s.replace(v.as_str(), "***")
            } else {
                s
            }
        })
    }

    pub(crate) fn error(&self, e: SendError) -> SendError {
        match e {
            SendError::Retry {
                reason,
                retry_after,
            } => SendError::Retry {
                reason: self.text(reason),
                retry_after,
            },
            SendError::Permanent { reason } => SendError::Permanent {
                reason: self.text(reason),
            },
        }
    }
}

/// Classifies an answer: 2xx delivered (`detail` is the status line); 408, 429 and 5xx
/// worth a retry, after `Retry-After` when the answer carries one; anything else
/// permanent. Error texts name `shown`, the status and the start of the body.
pub(crate) async fn outcome(
    shown: &str,
    mut resp: reqwest::Response,
    scrub: &Scrub,
) -> Result<Delivered, SendError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(Delivered {
            detail: status_line(status),
        });
    }
    let retry_after = retry_after(resp.headers(), SystemTime::now());
    // Only the start of the body, and only as long as it keeps coming.
    let mut body = Vec::new();
    while body.len() < BODY_READ {
        match resp.chunk().await {
            Ok(Some(c)) => body.extend_from_slice(&c),
            _ => break,
        }
    }
    let mut reason = format!("{shown}: http {}", status_line(status));
    // Scrubbed before it is cut, so no part of a secret the body echoes is left.
    let text = one_line(&scrub.text(String::from_utf8_lossy(&body).into_owned()));
    if !text.is_empty() {
        reason.push_str(": ");
        reason.push_str(&text);
    }
    if retryable(status) {
        Err(SendError::Retry {
            reason,
            retry_after,
        })
    } else {
        Err(SendError::permanent(reason))
    }
}

/// 408, 429 and 5xx: the receiver may take it later.
pub(crate) fn retryable(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
        || status.is_informational()
}

/// `503 Service Unavailable`, or `599` when the code has no reason phrase.
pub(crate) fn status_line(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(r) => format!("{} {r}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

/// `Retry-After` as a wait from `now`: delay-seconds or an HTTP date (a date in the past
/// is no wait). At most [`MAX_RETRY_AFTER`]; `None` when absent or unreadable.
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let v = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    let wait = if let Ok(secs) = v.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(at.timestamp()).ok()?);
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// A request that got no answer: worth a retry, except when the request could not even be
/// built. The text never holds the URL.
pub(crate) fn transport_error(shown: &str, e: reqwest::Error, timeout: Duration) -> SendError {
    if e.is_builder() {
        return SendError::permanent(format!(
            "{shown}: cannot build the request: {}",
            error_chain(&e.without_url())
        ));
    }
    if e.is_timeout() {
        return SendError::retry(format!(
            "{shown}: no answer within {}",
            format_duration(timeout)
        ));
    }
    if e.is_connect() {
        return SendError::retry(format!("{shown}: cannot connect: {}", root_cause(&e)));
    }
    SendError::retry(format!("{shown}: {}", error_chain(&e.without_url())))
}

/// An error and its sources, joined with `: `, lower-cased, without `(os error N)`. A level
/// whose text already ends with its source's text (lettre, io) is cut before it, so each
/// cause is told once.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut levels = vec![tidy(&e.to_string())];
    let mut source = e.source();
    while let Some(s) = source {
        levels.push(tidy(&s.to_string()));
        source = s.source();
    }
    let mut parts: Vec<String> = Vec::new();
    for (i, level) in levels.iter().enumerate() {
        let mut text = level.as_str();
        if let Some(next) = levels.get(i + 1) {
            // ASCII case folding keeps byte offsets, so the cut lands on a boundary.
            if text.len() > next.len()
                && text
                    .to_ascii_lowercase()
                    .ends_with(&next.to_ascii_lowercase())
            {
                text = text[..text.len() - next.len()].trim_end_matches([':', ' ']);
            }
        }
        let dup = parts.last().is_some_and(|p| p.eq_ignore_ascii_case(text));
        if !text.is_empty() && !dup {
            parts.push(text.to_string());
        }
    }
    parts.join(": ")
}

/// The innermost cause of an error, tidied (`connection refused`).
pub(crate) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut inner = e;
    while let Some(s) = inner.source() {
        inner = s;
    }
    tidy(&inner.to_string())
}

fn tidy(s: &str) -> String {
    let s = match s.find(" (os error ") {
        Some(i) => &s[..i],
        None => s,
    };
    lower_first(s.trim().trim_end_matches('.'))
}

/// Lower-cases the first letter unless the first word is an acronym (`TLS`, `HTTP`).
fn lower_first(s: &str) -> String {
    let mut chars = s.chars();
    match (chars.next(), chars.next()) {
        (Some(a), Some(b)) if a.is_uppercase() && !b.is_uppercase() => {
            a.to_lowercase().chain(s[a.len_utf8()..].chars()).collect()
        }
        _ => s.to_string(),
    }
}

/// Whitespace runs (newlines included) as one space, cut to [`BODY_SHOWN`] characters.
fn one_line(s: &str) -> String {
    let joined = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if joined.chars().count() > BODY_SHOWN {
        let cut: String = joined.chars().take(BODY_SHOWN).collect();
        format!("{cut}...")
    } else {
        joined
    }
}

/// A header value from any text: characters a header cannot carry become `_`.
pub(crate) fn header_text(s: &str) -> HeaderValue {
    let clean: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    HeaderValue::from_str(&clean).unwrap_or_else(|_| HeaderValue::from_static("_"))
}

/// Decodes `%XX` escapes; bad escapes stay as written.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex_digit(b[i + 1]), hex_digit(b[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_digit(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Arc;

    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::TokioIo;
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    use super::*;
    use crate::alert::Event;
    use crate::alert::testing::alert;

    // ---- helpers -------------------------------------------------------------------------

    /// What the test server saw of one request.
    #[derive(Debug)]
    struct Seen {
        method: String,
        path: String,
        headers: http::HeaderMap,
        body: Bytes,
    }

    /// What the test server answers.
    struct Reply {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: String,
    }

    fn reply(status: u16, body: &str) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: body.to_string(),
        }
    }

    /// A hyper HTTP/1 server on 127.0.0.1:0 answering each request with `answer`; every
    /// request it saw comes out of the returned channel.
    async fn http_server(
        answer: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
    ) -> (SocketAddr, mpsc::UnboundedReceiver<Seen>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let answer = Arc::new(answer);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (answer, tx) = (answer.clone(), tx.clone());
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
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
                            let mut resp = http::Response::new(Full::new(Bytes::from(r.body)));
                            *resp.status_mut() = StatusCode::from_u16(r.status).unwrap();
                            for (k, v) in r.headers {
                                resp.headers_mut()
                                    .append(k, HeaderValue::from_str(&v).unwrap());
                            }
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        (addr, rx)
    }

    /// A server on 127.0.0.1:0 that accepts connections and never answers.
    async fn hanging_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        addr
    }

    fn spec(yaml: &str) -> Spec {
        serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("bad test spec: {e}\n{yaml}"))
    }

    fn sender(yaml: &str) -> Sender {
        let s = spec(yaml);
        assert_eq!(s.validate(), Vec::new(), "{yaml}");
        s.build(&BuildCx::new().unwrap()).expect("build")
    }

    const SECRET: &str = "wh-s3cret-value";
    const TOKEN: &str = "Bearer tok-98765";
    const PASSWORD: &str = "pa55word";

    /// A webhook to `addr` with a secret, an `Authorization` header and URL userinfo.
    fn secret_sender(addr: SocketAddr, timeout: &str) -> Sender {
        sender(&format!(
            "{{ url: 'http://hook:{PASSWORD}@{addr}/hooks/probed?token=abc', \
               secret: {SECRET}, headers: {{ Authorization: '{TOKEN}' }}, timeout: {timeout} }}"
        ))
    }

    #[track_caller]
    fn assert_clean(e: &SendError) {
        let text = format!("{e} {e:?}");
        for s in [SECRET, TOKEN, PASSWORD, "tok-98765", "token=abc"] {
            assert!(!text.contains(s), "{s:?} leaked into {text:?}");
        }
    }

    // ---- tests ---------------------------------------------------------------------------

    #[tokio::test]
    async fn posts_the_alert_as_signed_json() {
        let (addr, mut seen) = http_server(|_| reply(202, "queued")).await;
        let n = secret_sender(addr, "2s");
        let a = alert(Event::Trigger);
        let d = n.send(&a).await.expect("delivered");
        assert_eq!(d.detail, "202 Accepted");

        let req = seen.recv().await.unwrap();
        assert_eq!(req.method, "POST");
        assert_eq!(req.path, "/hooks/probed?token=abc");
        let h = |name: &str| {
            req.headers
                .get(name)
                .map(|v| v.to_str().unwrap().to_string())
        };
        assert_eq!(h("content-type").as_deref(), Some("application/json"));
        assert_eq!(h("x-probed-event").as_deref(), Some("trigger"));
        assert_eq!(h("x-probed-dedup-key").as_deref(), Some("probed-test-42"));
        assert_eq!(h("authorization").as_deref(), Some(TOKEN));

        // The signature, checked independently over the bytes that arrived.
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(&req.body);
        let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(h("x-probed-signature"), Some(want));

        let v: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(v["event"], "trigger");
        assert_eq!(v["incident"], 42);
        assert_eq!(v["dedup_key"], "probed-test-42");
        assert_eq!(v["probe"], "api-write");
        assert_eq!(v["severity"], "critical");
        assert_eq!(v["state"], "down");
        assert_eq!(v["reason"], "status 503, expected 200, 201");
        assert_eq!(v["labels"]["team"], "core");
        assert_eq!(v["group"], "API");
        assert_eq!(v["summary"], a.summary());
        assert_eq!(v["body"], a.body());
        // The round trip gives the alert back.
        let back: Alert = serde_json::from_value(v).unwrap();
        assert_eq!(back, a);
    }

    #[tokio::test]
    async fn method_and_no_signature_without_secret() {
        let (addr, mut seen) = http_server(|_| reply(200, "")).await;
        let n = sender(&format!("{{ url: 'http://{addr}/x', method: put }}"));
        n.send(&alert(Event::Resolve)).await.expect("delivered");
        let req = seen.recv().await.unwrap();
        assert_eq!(req.method, "PUT");
        assert!(req.headers.get("x-probed-signature").is_none());
        assert_eq!(req.headers["x-probed-event"], "resolve");
    }

    #[tokio::test]
    async fn answers_are_classified() {
        struct Case {
            status: u16,
            headers: Vec<(&'static str, String)>,
            retry: bool,
            retry_after: Option<Duration>,
        }
        let soon = httpdate(SystemTime::now() + Duration::from_secs(30));
        let cases = [
            Case {
                status: 500,
                headers: vec![],
                retry: true,
                retry_after: None,
            },
            Case {
                status: 503,
                headers: vec![("retry-after", "12".into())],
                retry: true,
                retry_after: Some(Duration::from_secs(12)),
            },
            Case {
                status: 429,
                headers: vec![("retry-after", "7".into())],
                retry: true,
                retry_after: Some(Duration::from_secs(7)),
            },
            Case {
                status: 429,
                headers: vec![("retry-after", soon)],
                retry: true,
                retry_after: Some(Duration::from_secs(30)),
            },
            Case {
                status: 408,
                headers: vec![],
                retry: true,
                retry_after: None,
            },
            Case {
                status: 400,
                headers: vec![],
                retry: false,
                retry_after: None,
            },
            Case {
                status: 401,
                headers: vec![],
                retry: false,
                retry_after: None,
            },
            Case {
                status: 404,
                headers: vec![],
                retry: false,
                retry_after: None,
            },
        ];
        for c in cases {
            let headers = c.headers.clone();
            let status = c.status;
            // The body echoes what a careless receiver might: the request's secrets.
            let (addr, _seen) = http_server(move |s| Reply {
                status,
                headers: headers.clone(),
                body: format!(
                    "rejected: {:?} {}",
                    s.headers,
                    String::from_utf8_lossy(&s.body)
                ),
            })
            .await;
            let n = secret_sender(addr, "2s");
            let e = n.send(&alert(Event::Trigger)).await.unwrap_err();
            assert_clean(&e);
            assert!(e.to_string().contains(&format!("http {status}")), "{e}");
            assert!(
                e.to_string().starts_with(&format!("http://{addr}: ")),
                "{e}"
            );
            match e {
                SendError::Retry { retry_after, .. } => {
                    assert!(c.retry, "{status}: retry, expected permanent");
                    match (retry_after, c.retry_after) {
                        (Some(got), Some(want)) => assert!(
                            got <= want && got + Duration::from_secs(2) >= want,
                            "{status}: retry after {got:?}, expected {want:?}"
                        ),
                        (got, want) => assert_eq!(got, want, "{status}"),
                    }
                }
                SendError::Permanent { .. } => assert!(!c.retry, "{status}: permanent"),
            }
        }
    }

    #[tokio::test]
    async fn a_hanging_receiver_is_a_retry_at_the_timeout() {
        let addr = hanging_server().await;
        let n = secret_sender(addr, "300ms");
        let start = tokio::time::Instant::now();
        let e = n.send(&alert(Event::Trigger)).await.unwrap_err();
        let took = start.elapsed();
        assert!(matches!(e, SendError::Retry { .. }), "{e:?}");
        assert!(e.to_string().contains("no answer within 300ms"), "{e}");
        assert!(
            took >= Duration::from_millis(290) && took < Duration::from_secs(2),
            "{took:?}"
        );
        assert_clean(&e);
    }

    #[tokio::test]
    async fn nothing_listening_is_a_retry() {
        let addr = {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap()
        };
        let n = secret_sender(addr, "2s");
        let e = n.send(&alert(Event::Trigger)).await.unwrap_err();
        assert!(matches!(e, SendError::Retry { .. }), "{e:?}");
        assert!(e.to_string().contains("refused"), "{e}");
        assert_clean(&e);
    }

    #[test]
    fn validate_reports_every_problem() {
        let cases: &[(&str, &[(&str, &str)])] = &[
            ("{ url: 'https://hooks.example/x' }", &[]),
            (
                "{ url: 'ftp://x.example/', method: GET, secret: '', timeout: 0s,
                   headers: { 'Bad Name': x, Content-Type: text/plain, X-Ok: \"a\\nb\" } }",
                &[
                    ("url", "unsupported url scheme \"ftp\""),
                    ("method", "unsupported method \"GET\""),
                    ("secret", "must not be empty"),
                    ("headers.Bad Name", "invalid header name"),
                    ("headers.Content-Type", "set by probed"),
                    ("headers.X-Ok", "invalid header value"),
                    ("timeout", "more than 0s"),
                ],
            ),
            ("{ url: 'not a url' }", &[("url", "invalid url")]),
            ("{ url: 'http://user:hunter2@/x' }", &[("url", "")]),
        ];
        for (yaml, want) in cases {
            let got = spec(yaml).validate();
            assert_eq!(got.len(), want.len(), "{yaml}: {got:?}");
            for (e, (path, msg)) in got.iter().zip(want.iter()) {
                assert_eq!(e.path, *path, "{yaml}: {got:?}");
                assert!(e.message.contains(msg), "{yaml}: {got:?}");
                assert!(!e.message.contains("hunter2"), "{got:?}");
                assert!(!e.message.ends_with('.'), "{got:?}");
            }
        }
        assert!(serde_yaml::from_str::<Spec>("{ url: 'http://x/', urls: [] }").is_err());
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(
                reqwest::header::RETRY_AFTER,
                HeaderValue::from_str(v).unwrap(),
            );
            retry_after(&m, now)
        };
        assert_eq!(h("7"), Some(Duration::from_secs(7)));
        assert_eq!(h(" 120 "), Some(Duration::from_secs(120)));
        // 2015-10-21T07:28:00Z is 1445412480.
        assert_eq!(
            h("Wed, 21 Oct 2015 07:29:00 GMT"),
            Some(Duration::from_secs(60))
        );
        assert_eq!(h("Wed, 21 Oct 2015 07:00:00 GMT"), Some(Duration::ZERO));
        assert_eq!(h("999999"), Some(MAX_RETRY_AFTER));
        assert_eq!(h("soon"), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    /// An HTTP date (`Wed, 21 Oct 2015 07:28:00 GMT`).
    fn httpdate(t: SystemTime) -> String {
        let secs = t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() as i64;
        chrono::DateTime::from_timestamp(secs, 0)
            .unwrap()
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string()
    }
}
