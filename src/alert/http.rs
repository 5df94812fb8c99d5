//! What the HTTP notifiers (`webhook`, `alertmanager`, `pagerduty`, `twilio`) share, and
//! the parts of it `email` uses: one version of each.
//!
//! - Settings: [`parse_url`] and [`parse_base_url`] (`http`/`https` with a host; errors
//!   never repeat the URL), [`check_timeout`], [`origin`] (a URL as messages show it:
//!   never with its userinfo, path or query) and [`url_secrets`].
//! - Secrets: [`Scrub`] replaces each secret, in every form it takes on the wire, with `***`
//!   in every text a notifier returns, and cuts what a peer said short.
//! - Sending: [`deliver`] (a receiver whose answer is only its status) and [`exchange`] (an
//!   API that answers with JSON, read by the caller) send one request. A request that got
//!   no answer is a retry ([`transport_error`]; one that cannot be built is permanent);
//!   [`Reply::read`] reads the status, `Retry-After` (seconds or an HTTP date, at most
//!   [`MAX_RETRY_AFTER`]) and the start of the body; [`Reply::fail`] classifies a failed
//!   answer: 408, 429 and 5xx are worth a retry (after `Retry-After` when given), anything
//!   else is permanent. [`within`] and [`no_answer`] hold a send to its deadline.
//! - Text: [`body_snippet`], [`truncate_chars`] (never splits a character) and
//!   [`error_chain`] (an error and its causes on one line).

use std::future::Future;
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use serde::de::DeserializeOwned;

use super::{Delivered, SendError};
use crate::redact::{Redactor, Secrets};
use crate::units::format_duration;

/// Longest `Retry-After` honoured; a longer one is cut to this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Most of an answer read (for its JSON or its error message); the rest is dropped unread.
const MAX_ANSWER_BYTES: usize = 64 << 10;

/// Characters of a body shown in an error message.
const SNIPPET_CHARS: usize = 200;

/// Characters of a send's whole outcome (a reason naming several recipients or URLs, each
/// with its snippet), as stored, logged and shown.
const MAX_MESSAGE_CHARS: usize = 1000;

// ---- settings (checked by the config, which owns them) -------------------------------------

pub(crate) use crate::config::notify::{parse_base_url, parse_url};

/// `scheme://host[:port]`: the URL without userinfo, path or query.
pub(crate) fn origin(url: &Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(p) => format!("{}://{host}:{p}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    }
}

/// Texts of a URL that must never be shown: its userinfo, as written, decoded, and as the
/// pair basic auth sends (reqwest sends the decoded `user:password`; a user without a
/// password is the credential itself, sent as `user:`). [`Scrub`] derives their other forms.
pub(crate) fn url_secrets(url: &Url) -> Vec<String> {
    let user = url.username();
    let mut out = Vec::new();
    match url.password() {
        Some(p) => {
            out.push(p.to_string());
            out.push(percent_decode(p));
            out.push(format!("{user}:{p}"));
            out.push(format!("{}:{}", percent_decode(user), percent_decode(p)));
        }
        None if !user.is_empty() => {
            out.push(user.to_string());
            out.push(percent_decode(user));
            out.push(format!("{}:", percent_decode(user)));
        }
        None => {}
    }
    out.dedup();
    out
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

// ---- secrets -------------------------------------------------------------------------------

/// Values removed from every text a notifier returns (secrets, header values, userinfo,
/// basic-auth pairs), in every form each takes on the wire ([`crate::redact`]: raw, base64,
/// percent-encoded, JSON-escaped): each becomes `***`. Every non-empty value counts,
/// however short; a header value's credentials (`Bearer abc...`) count on their own.
pub(crate) struct Scrub(Redactor);

impl Scrub {
    pub(crate) fn new(values: Vec<String>) -> Scrub {
        let mut secrets = Secrets::new();
        for v in &values {
            secrets.header(v);
        }
        Scrub(secrets.redactor())
    }

    pub(crate) fn text(&self, s: String) -> String {
        if self.0.is_empty() {
            return s;
        }
        self.0.redact(&s)
    }

    /// A peer's text quoted in a message (an error's `message` field, a server's reply):
    /// secrets removed before it is cut, so no part of one is left; on one line; at most
    /// 200 characters.
    pub(crate) fn quote(&self, said: &str) -> String {
        let text = self.text(said.to_string());
        truncate_chars(
            &text.split_whitespace().collect::<Vec<_>>().join(" "),
            SNIPPET_CHARS,
        )
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

    /// What a send came to, as the dispatcher and `probectl` get it: secrets removed, then
    /// cut to [`MAX_MESSAGE_CHARS`], the detail of a delivery as the reason of a failure.
    pub(crate) fn outcome(&self, r: Result<Delivered, SendError>) -> Result<Delivered, SendError> {
        let cut = |s: String| truncate_chars(&self.text(s), MAX_MESSAGE_CHARS);
        match r {
            Ok(d) => Ok(Delivered {
                detail: cut(d.detail),
            }),
            Err(SendError::Retry {
                reason,
                retry_after,
            }) => Err(SendError::Retry {
                reason: cut(reason),
                retry_after,
            }),
            Err(SendError::Permanent { reason }) => Err(SendError::Permanent {
                reason: cut(reason),
            }),
        }
    }
}

// ---- sending -------------------------------------------------------------------------------

/// `fut`, or a retry (`{shown}: no answer within {timeout}`) once `timeout` has passed.
pub(crate) async fn within<T>(
    shown: &str,
    timeout: Duration,
    fut: impl Future<Output = Result<T, SendError>>,
) -> Result<T, SendError> {
    tokio::time::timeout(timeout, fut)
        .await
        .unwrap_or_else(|_| Err(no_answer(shown, timeout)))
}

/// The send's deadline passed: worth a retry.
pub(crate) fn no_answer(shown: &str, timeout: Duration) -> SendError {
    SendError::retry(format!(
        "{shown}: no answer within {}",
        format_duration(timeout)
    ))
}

/// Sends `req`; a request that got no answer is a [`transport_error`]. `timeout` is the
/// send's deadline, as messages tell it.
async fn request(
    shown: &str,
    req: reqwest::RequestBuilder,
    timeout: Duration,
) -> Result<reqwest::Response, SendError> {
    req.send()
        .await
        .map_err(|e| transport_error(shown, e, timeout))
}

/// A request that got no answer: worth a retry, except when the request could not even be
/// built. The text never holds the URL: `{shown}: connection failed: connection refused`.
fn transport_error(shown: &str, e: reqwest::Error, timeout: Duration) -> SendError {
    let e = e.without_url();
    if e.is_builder() {
        return SendError::permanent(format!(
            "{shown}: cannot build the request: {}",
            error_chain(&e)
        ));
    }
    if e.is_timeout() {
        return no_answer(shown, timeout);
    }
    if e.is_connect() {
        return SendError::retry(format!("{shown}: connection failed: {}", root_cause(&e)));
    }
    SendError::retry(format!("{shown}: {}", error_chain(&e)))
}

/// Sends `req` and reads the answer ([`request`], then [`Reply::read`]), for APIs whose
/// answer, success or not, is a JSON object to read.
pub(crate) async fn exchange(
    shown: &str,
    req: reqwest::RequestBuilder,
    timeout: Duration,
) -> Result<Reply, SendError> {
    Ok(Reply::read(request(shown, req, timeout).await?).await)
}

/// An answer as read: its status, its `Retry-After` and the start of its body.
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    retry_after: Option<Duration>,
    /// At most [`MAX_ANSWER_BYTES`].
    body: Vec<u8>,
}

impl Reply {
    /// Reads at most [`MAX_ANSWER_BYTES`] of the body, and only as long as it keeps coming:
    /// a read error ends it (what was read is kept).
    pub(crate) async fn read(mut resp: reqwest::Response) -> Reply {
        let status = resp.status();
        let retry_after = retry_after(resp.headers(), SystemTime::now());
        let mut body = Vec::new();
        while body.len() < MAX_ANSWER_BYTES {
            match resp.chunk().await {
                Ok(Some(c)) => {
                    let room = MAX_ANSWER_BYTES - body.len();
                    body.extend_from_slice(&c[..c.len().min(room)]);
                }
                Ok(None) | Err(_) => break,
            }
        }
        Reply {
            status,
            retry_after,
            body,
        }
    }

    /// The body as `T`, when it parses.
    pub(crate) fn json<T: DeserializeOwned>(&self) -> Option<T> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The start of the body on one line, secrets removed ([`body_snippet`]).
    pub(crate) fn snippet(&self, scrub: &Scrub) -> String {
        body_snippet(&self.body, scrub)
    }

    /// This (failed) answer as an error: 408, 429 and 5xx are worth a retry, after
    /// `Retry-After` when the answer carried one; any other status is permanent.
    pub(crate) fn fail(&self, reason: String) -> SendError {
        if retryable(self.status) {
            SendError::Retry {
                reason,
                retry_after: self.retry_after,
            }
        } else {
            SendError::Permanent { reason }
        }
    }
}

/// One request to a receiver whose answer is only its status: 2xx delivered (`detail` is
/// the status line, `202 Accepted`), any other answer fails as [`Reply::fail`] tells, with
/// `{shown}: http {status}: {the start of the body}`.
pub(crate) async fn deliver(
    shown: &str,
    req: reqwest::RequestBuilder,
    timeout: Duration,
    scrub: &Scrub,
) -> Result<Delivered, SendError> {
    let resp = request(shown, req, timeout).await?;
    let status = resp.status();
    if status.is_success() {
        return Ok(Delivered {
            detail: status_line(status),
        });
    }
    let reply = Reply::read(resp).await;
    let reason = format!(
        "{shown}: http {}: {}",
        status_text(status),
        reply.snippet(scrub)
    );
    Err(reply.fail(reason))
}

/// 408, 429 and 5xx: the receiver may take it later.
fn retryable(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

/// `503 Service Unavailable`, or `599` when the code has no reason phrase.
fn status_line(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(r) => format!("{} {r}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

/// [`status_line`] as error messages write it: `503 service unavailable`.
pub(crate) fn status_text(status: StatusCode) -> String {
    status_line(status).to_ascii_lowercase()
}

/// `Retry-After` as a wait from `now`: delay-seconds (`120`) or an HTTP date
/// (`Wed, 21 Oct 2015 07:28:00 GMT`; a date in the past is no wait). At most
/// [`MAX_RETRY_AFTER`]; `None` when absent or unreadable.
fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let wait = match v.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let at = chrono::DateTime::parse_from_rfc2822(v).ok()?;
            let at = SystemTime::UNIX_EPOCH
                .checked_add(Duration::from_secs(u64::try_from(at.timestamp()).ok()?))?;
            at.duration_since(now).unwrap_or(Duration::ZERO)
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

// ---- text ----------------------------------------------------------------------------------

/// The start of a body (an error object, a proxy's HTML page) on one line: secrets removed
/// before it is cut, so no part of one is left; whitespace runs as one space; at most 200
/// characters; `empty answer` when there is nothing to show.
fn body_snippet(raw: &[u8], scrub: &Scrub) -> String {
    let said = scrub.quote(&String::from_utf8_lossy(raw));
    if said.is_empty() {
        "empty answer".into()
    } else {
        said
    }
}

/// At most `max` characters (not bytes: never splits a UTF-8 character); a cut ends in
/// `...`, three ASCII dots, which every SMS alphabet has.
pub(crate) fn truncate_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let keep = max.saturating_sub(3);
    let end = s.char_indices().nth(keep).map_or(s.len(), |(i, _)| i);
    let mut out = s[..end].trim_end().to_string();
    out.push_str("...");
    out
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
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut inner = e;
    while let Some(s) = inner.source() {
        inner = s;
    }
    tidy(&inner.to_string())
}

// Shared with the probes: one version of each.
use crate::redact::percent_decode;
use crate::text::tidy;

#[cfg(test)]
pub(crate) mod fake {
    //! What the notifier tests share: a scriptable stand-in for an HTTP API ([`Fake`]; the
    //! API's own checks and state come from a [`Service`]: `pagerduty::fake`,
    //! `twilio::fake`), quiet and dead endpoints, and the checks the tests repeat.
    //!
    //! ```ignore
    //! let (base_url, fake) = Fake::serve(MyService::default()).await;
    //! fake.script(Answer::status(500));         // the next request fails, then real answers
    //! fake.set_default(Answer::Hang);           // once the script is used up
    //! let req = &fake.requests()[0];            // as the service recorded it
    //! ```

    use std::collections::VecDeque;
    use std::convert::Infallible;
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex, MutexGuard};
    use std::time::Duration;

    use ::http::{HeaderName, HeaderValue, StatusCode};
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper_util::rt::TokioIo;
    use serde::de::DeserializeOwned;
    use serde_json::Value;
    use tokio::net::TcpListener;
    use tokio::sync::watch;

    use crate::alert::{Delivered, SendError};
    use crate::text::FieldError;

    /// A response of a stand-in.
    pub type Resp = ::http::Response<Full<Bytes>>;

    /// How a stand-in answers one request.
    #[derive(Debug, Clone)]
    pub enum Answer {
        /// As the real service would ([`Service::real`]).
        Real,
        /// This status, headers and body; the service's state is untouched. Without a body,
        /// what [`Service::reply`] makes for that status.
        Reply {
            status: u16,
            headers: Vec<(String, String)>,
            body: Option<String>,
        },
        /// Never answer (the connection stays open until the client gives up).
        Hang,
    }

    impl Answer {
        pub fn status(status: u16) -> Answer {
            Answer::Reply {
                status,
                headers: Vec::new(),
                body: None,
            }
        }
        /// Adds a response header (only to a `Reply`).
        pub fn header(mut self, name: &str, value: &str) -> Answer {
            if let Answer::Reply { headers, .. } = &mut self {
                headers.push((name.to_string(), value.to_string()));
            }
            self
        }
        /// Sets the response body (only of a `Reply`).
        pub fn body(mut self, text: impl Into<String>) -> Answer {
            if let Answer::Reply { body, .. } = &mut self {
                *body = Some(text.into());
            }
            self
        }
    }

    /// What one API's stand-in does: how it records a request, how it answers for real, and
    /// what a scripted status without a body looks like.
    pub trait Service: Send + Sync + 'static {
        /// One request as recorded.
        type Received: Clone + Send + 'static;
        /// What the service keeps (incidents, messages).
        type State: Default + Send + 'static;
        fn receive(&self, parts: ::http::request::Parts, body: Bytes) -> Self::Received;
        /// Notes the status answered (0 for a hang).
        fn answered(req: &mut Self::Received, status: u16);
        fn real(&self, state: &mut Self::State, req: &Self::Received) -> Resp;
        fn reply(&self, status: u16, body: Option<String>) -> Resp;
    }

    struct Inner<S: Service> {
        script: VecDeque<Answer>,
        default: Option<Answer>,
        requests: Vec<S::Received>,
        state: S::State,
    }

    struct Shared<S: Service> {
        service: S,
        inner: Mutex<Inner<S>>,
        /// How many requests were received, for [`Fake::wait_for_requests`].
        count: watch::Sender<usize>,
    }

    impl<S: Service> Shared<S> {
        fn lock(&self) -> MutexGuard<'_, Inner<S>> {
            self.inner.lock().unwrap_or_else(|e| e.into_inner())
        }
    }

    /// Stops the accept loop when the last handle is dropped.
    struct AcceptTask(tokio::task::JoinHandle<()>);

    impl Drop for AcceptTask {
        fn drop(&mut self) {
            self.0.abort();
        }
    }

    /// A handle on a running stand-in; clones share it.
    pub struct Fake<S: Service> {
        shared: Arc<Shared<S>>,
        _task: Arc<AcceptTask>,
    }

    impl<S: Service> Clone for Fake<S> {
        fn clone(&self) -> Self {
            Fake {
                shared: self.shared.clone(),
                _task: self._task.clone(),
            }
        }
    }

    impl<S: Service> Fake<S> {
        /// Starts the stand-in on 127.0.0.1 (a free port); returns its base URL
        /// (`http://127.0.0.1:PORT`, for `base_url`) and the handle.
        pub async fn serve(service: S) -> (String, Fake<S>) {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("local addr");
            let shared = Arc::new(Shared {
                service,
                inner: Mutex::new(Inner {
                    script: VecDeque::new(),
                    default: None,
                    requests: Vec::new(),
                    state: S::State::default(),
                }),
                count: watch::Sender::new(0),
            });
            let s = shared.clone();
            let task = tokio::spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let s = s.clone();
                    tokio::spawn(async move {
                        let svc = hyper::service::service_fn(move |req| {
                            let s = s.clone();
                            async move { Ok::<_, Infallible>(handle(&s, req).await) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), svc)
                            .await;
                    });
                }
            });
            let fake = Fake {
                shared,
                _task: Arc::new(AcceptTask(task)),
            };
            (format!("http://{addr}"), fake)
        }

        /// Queues an answer for the next request not yet scripted.
        pub fn script(&self, a: Answer) {
            self.shared.lock().script.push_back(a);
        }

        /// What to answer once the script is used up (`Answer::Real` unless set).
        pub fn set_default(&self, a: Answer) {
            self.shared.lock().default = Some(a);
        }

        /// Every request received so far, in order.
        pub fn requests(&self) -> Vec<S::Received> {
            self.shared.lock().requests.clone()
        }

        /// Waits until at least `n` requests were received, then returns them all.
        pub async fn wait_for_requests(&self, n: usize) -> Vec<S::Received> {
            let mut rx = self.shared.count.subscribe();
            let _ = rx.wait_for(|&c| c >= n).await;
            self.requests()
        }

        /// A look at what the service keeps.
        pub fn state<R>(&self, f: impl FnOnce(&S::State) -> R) -> R {
            f(&self.shared.lock().state)
        }
    }

    async fn handle<S: Service>(
        shared: &Shared<S>,
        req: ::http::Request<hyper::body::Incoming>,
    ) -> Resp {
        let (parts, body) = read_request(req).await;
        let mut received = shared.service.receive(parts, body);
        let resp = {
            let mut inner = shared.lock();
            let answer = inner
                .script
                .pop_front()
                .or_else(|| inner.default.clone())
                .unwrap_or(Answer::Real);
            let resp = match answer {
                Answer::Real => Some(shared.service.real(&mut inner.state, &received)),
                Answer::Reply {
                    status,
                    headers,
                    body,
                } => {
                    let mut r = shared.service.reply(status, body);
                    for (k, v) in headers {
                        r.headers_mut().append(
                            HeaderName::from_bytes(k.as_bytes()).expect("header name"),
                            HeaderValue::from_str(&v).expect("header value"),
                        );
                    }
                    Some(r)
                }
                Answer::Hang => None,
            };
            S::answered(
                &mut received,
                resp.as_ref().map_or(0, |r| r.status().as_u16()),
            );
            inner.requests.push(received);
            resp
        };
        shared.count.send_modify(|c| *c += 1);
        match resp {
            Some(r) => r,
            None => std::future::pending().await,
        }
    }

    /// A request's head and whole body (empty when it cannot be read).
    pub async fn read_request(
        req: ::http::Request<hyper::body::Incoming>,
    ) -> (::http::request::Parts, Bytes) {
        let (parts, body) = req.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        (parts, body)
    }

    /// The path and query a request was sent to.
    pub fn path_and_query(parts: &::http::request::Parts) -> String {
        parts
            .uri
            .path_and_query()
            .map_or("/".into(), |p| p.to_string())
    }

    /// `status` with a body.
    pub fn respond(status: u16, body: impl Into<Bytes>) -> Resp {
        let mut r = ::http::Response::new(Full::new(body.into()));
        *r.status_mut() = StatusCode::from_u16(status).expect("status");
        r
    }

    /// `status` with `v` as its `application/json` body.
    pub fn json_resp(status: u16, v: &Value) -> Resp {
        let mut r = respond(status, v.to_string());
        r.headers_mut()
            .insert("content-type", HeaderValue::from_static("application/json"));
        r
    }

    /// A server on 127.0.0.1:0 that accepts connections and never answers.
    pub async fn hanging_server() -> SocketAddr {
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

    /// An address on 127.0.0.1 where nothing listens (bound, then released).
    pub async fn dead_addr() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    }

    /// A notifier's settings from YAML; a test's own mistake panics.
    pub fn spec<T: DeserializeOwned>(yaml: &str) -> T {
        serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("bad test spec: {e}\n{yaml}"))
    }

    /// The reason of a permanent error.
    #[track_caller]
    pub fn permanent(r: Result<Delivered, SendError>) -> String {
        match r {
            Err(SendError::Permanent { reason }) => reason,
            other => panic!("expected a permanent error, got {other:?}"),
        }
    }

    /// The reason and wait of a retry.
    #[track_caller]
    pub fn retry(r: Result<Delivered, SendError>) -> (String, Option<Duration>) {
        match r {
            Err(SendError::Retry {
                reason,
                retry_after,
            }) => (reason, retry_after),
            other => panic!("expected a retry, got {other:?}"),
        }
    }

    /// `got` is one error per `(path, part of the message)` of `want`, in order.
    #[track_caller]
    pub fn assert_field_errors(what: &str, got: &[FieldError], want: &[(&str, &str)]) {
        assert_eq!(got.len(), want.len(), "{what}: {got:#?}");
        for (e, (path, msg)) in got.iter().zip(want) {
            assert_eq!(e.path, *path, "{what}: {got:#?}");
            assert!(e.message.contains(msg), "{what}: {got:#?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::notify::check_timeout;
    use crate::units::Dur;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let at = |unix: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(unix);
        // 2015-10-21T07:28:00Z is 1445412480.
        let (at_0728, at_0720) = (at(1_445_412_480), at(1_445_412_000));
        let secs = |s: u64| Some(Duration::from_secs(s));
        let (date_0729, date_0728) = (
            "Wed, 21 Oct 2015 07:29:00 GMT",
            "Wed, 21 Oct 2015 07:28:00 GMT",
        );
        let past = "Wed, 21 Oct 2015 07:00:00 GMT";
        for (now, value, want) in [
            (at_0728, "7", secs(7)),
            (at_0728, " 120 ", secs(120)),
            (at_0728, date_0729, secs(60)),
            (at_0728, past, Some(Duration::ZERO)),
            (at_0728, "999999", Some(MAX_RETRY_AFTER)),
            (at_0728, "soon", None),
            (at_0720, "3", secs(3)),
            (at_0720, " 120 ", secs(120)),
            (at_0720, date_0728, secs(480)),
            (at_0720, past, Some(Duration::ZERO)),
            (at_0720, "soon", None),
            (at_0720, "-5", None),
        ] {
            let mut m = HeaderMap::new();
            m.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
            assert_eq!(retry_after(&m, now), want, "{value:?}");
        }
        for now in [at_0728, at_0720] {
            assert_eq!(retry_after(&HeaderMap::new(), now), None);
        }
    }

    #[test]
    fn truncation_never_splits_a_character() {
        assert_eq!(truncate_chars("short", 10), "short");
        assert_eq!(truncate_chars("abcdefghij", 10), "abcdefghij");
        assert_eq!(truncate_chars("abcdefghijk", 10), "abcdefg...");
        assert_eq!(truncate_chars("ééééééé", 5), "éé...");
        assert_eq!(truncate_chars("🚨🚨🚨🚨", 3), "...");
    }

    #[test]
    fn failed_answers_are_classified() {
        let after = Some(Duration::from_secs(5));
        for (code, retry) in [
            (408, true),
            (429, true),
            (500, true),
            (502, true),
            (503, true),
            (599, true),
            (101, false),
            (304, false),
            (400, false),
            (401, false),
            (403, false),
            (404, false),
            (422, false),
        ] {
            let reply = Reply {
                status: StatusCode::from_u16(code).unwrap(),
                retry_after: after,
                body: Vec::new(),
            };
            match reply.fail(format!("x: {code}")) {
                SendError::Retry {
                    reason,
                    retry_after,
                } => {
                    assert!(retry, "{code}: retry, expected permanent");
                    assert_eq!(
                        (reason.as_str(), retry_after),
                        (&*format!("x: {code}"), after)
                    );
                }
                SendError::Permanent { reason } => {
                    assert!(!retry, "{code}: permanent, expected retry");
                    assert_eq!(reason, format!("x: {code}"));
                }
            }
        }
        assert_eq!(status_line(StatusCode::ACCEPTED), "202 Accepted");
        assert_eq!(
            status_text(StatusCode::SERVICE_UNAVAILABLE),
            "503 service unavailable"
        );
        assert_eq!(status_text(StatusCode::from_u16(599).unwrap()), "599");
    }

    #[test]
    fn secrets_are_scrubbed_before_a_body_is_cut() {
        let scrub = Scrub::new(vec![
            "tok".into(),
            "tok-98765".into(),
            String::new(),
            "tok".into(),
        ]);
        assert_eq!(
            scrub.text("a tok-98765 b tok".into()),
            "a *** b ***",
            "the longest first"
        );
        let e = scrub.error(SendError::Retry {
            reason: "tok!".into(),
            retry_after: Some(Duration::from_secs(1)),
        });
        assert_eq!(
            e,
            SendError::Retry {
                reason: "***!".into(),
                retry_after: Some(Duration::from_secs(1))
            }
        );
        assert_eq!(
            scrub.error(SendError::permanent("x tok")),
            SendError::permanent("x ***")
        );

        // A secret straddling the 200th character is gone whole.
        let raw = format!("{}tok-98765 and more", "x".repeat(195));
        let snippet = body_snippet(raw.as_bytes(), &scrub);
        assert!(
            !snippet.contains("tok") && !snippet.contains("987"),
            "{snippet}"
        );
        assert_eq!(snippet.chars().count(), 200);
        assert!(snippet.ends_with("..."), "{snippet}");
        assert_eq!(
            body_snippet(b"<html>\n  <b>Bad</b>\n</html>", &scrub),
            "<html> <b>Bad</b> </html>"
        );
        assert_eq!(body_snippet(b" \n ", &scrub), "empty answer");
    }

    #[test]
    fn an_outcome_is_scrubbed_in_every_form_then_cut() {
        let url = parse_url("http://hook:pa%24%24w0rd@h.example/").unwrap();
        let scrub = Scrub::new(url_secrets(&url));
        let sent = crate::redact::base64(b"hook:pa$$w0rd");
        let echo = format!(
            "authorization: Basic {sent} {} {}",
            serde_json::to_string(&sent.replace('/', "\\/")).unwrap(),
            "y".repeat(2000)
        );
        let Err(SendError::Permanent { reason }) =
            scrub.outcome(Err(SendError::permanent(echo.clone())))
        else {
            panic!("permanent stays permanent");
        };
        assert!(
            reason.starts_with("authorization: Basic *** \"***\" yyy"),
            "{reason}"
        );
        assert_eq!(reason.chars().count(), MAX_MESSAGE_CHARS);
        let detail = scrub
            .outcome(Ok(Delivered {
                detail: format!("202 accepted: pa$$w0rd {echo}"),
            }))
            .unwrap()
            .detail;
        assert!(
            detail.starts_with("202 accepted: *** authorization: Basic ***"),
            "{detail}"
        );
        assert_eq!(scrub.quote(" a\n  pa$$w0rd\tb "), "a *** b");
    }

    #[test]
    fn urls_are_checked_and_shown_without_userinfo() {
        let url = parse_url("https://hook:p%40ss@hooks.example:8443/x?token=abc").unwrap();
        assert_eq!(origin(&url), "https://hooks.example:8443");
        assert_eq!(
            url_secrets(&url),
            ["p%40ss", "p@ss", "hook:p%40ss", "hook:p@ss"]
        );
        assert_eq!(
            url_secrets(&parse_url("http://t%2Dk@h/").unwrap()),
            ["t%2Dk", "t-k", "t-k:"],
            "a user alone is the credential"
        );
        assert_eq!(
            origin(&parse_url(" http://[::1]/ ").unwrap()),
            "http://[::1]"
        );
        assert!(url_secrets(&parse_url("http://h/").unwrap()).is_empty());
        assert!(parse_base_url("http://am:9093/prefix").is_ok());

        for (url, want) in [
            ("not a url", "invalid url (relative url without a base)"),
            ("ftp://x.example/", "unsupported url scheme \"ftp\""),
            ("http://u:hunter2@/x", "invalid url"),
            ("https://h/#top", "must not have a fragment"),
        ] {
            let e = parse_url(url).unwrap_err();
            assert!(e.contains(want), "{url}: {e}");
            assert_eq!(e, e.to_lowercase(), "{url}: lower-case");
            assert!(!e.contains("hunter2") && !e.ends_with('.'), "{e}");
            assert_eq!(parse_base_url(url).unwrap_err(), e);
        }
        let e = parse_base_url("https://h/?a=1").unwrap_err();
        assert!(e.contains("must not have a query"), "{e}");
        assert!(parse_url("https://h/?a=1").is_ok());

        assert_eq!(
            check_timeout(Some(Dur(Duration::ZERO))),
            Some("must be more than 0s")
        );
        assert_eq!(check_timeout(Some(Dur::secs(1))), None);
        assert_eq!(check_timeout(None), None);
        assert_eq!(header_text("a\nb é"), "a_b _");
    }

    #[test]
    fn error_chains_tell_each_cause_once() {
        #[derive(Debug)]
        struct E(&'static str, Option<Box<E>>);
        impl std::fmt::Display for E {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for E {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.1.as_deref().map(|e| e as _)
            }
        }
        let e = E(
            "Connection error: Connection refused (os error 111)",
            Some(Box::new(E(
                "Connection refused (os error 111)",
                Some(Box::new(E("TLS handshake failed.", None))),
            ))),
        );
        assert_eq!(
            error_chain(&e),
            "connection error: connection refused: TLS handshake failed"
        );
        assert_eq!(root_cause(&e), "TLS handshake failed");
    }
}
