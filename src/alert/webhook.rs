//! `kind: webhook`: one HTTP request per alert whose body is the [`Alert`] as JSON, plus its
//! `summary` and `body` texts. With a `secret`, the request carries
//! `X-Probed-Signature: sha256=<hex HMAC-SHA256 of the body>` so the receiver can tell the
//! request came from us; `X-Probed-Event` and `X-Probed-Dedup-Key` let it route and fold
//! resends without parsing the body.
//!
//! How an answer is classified (2xx delivered; 408, 429 and 5xx worth a retry, after
//! `Retry-After` when given; any other answer permanent), how a transport error is told and
//! how the URL is shown (never with its userinfo) is `alert/http.rs`.

use std::time::Duration;

use hmac::{Hmac, Mac};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};
use sha2::Sha256;

use super::http::{Scrub, deliver, header_text, origin, parse_url, url_secrets, within};
use super::{Alert, BuildCx, Delivered, SendError};
pub use crate::config::notify::webhook::Spec;
use crate::units::Secret;

impl Spec {
    /// A sender on the shared HTTP client.
    pub fn build(&self, cx: &BuildCx) -> Result<Sender, String> {
        let url = parse_url(&self.url).map_err(|e| format!("url: {e}"))?;
        let method = self.method().map_err(|e| format!("method: {e}"))?;
        let mut headers = HeaderMap::new();
        let mut scrub = url_secrets(&url);
        // The path and query often hold the hook's token; a peer may echo the request line.
        if url.path() != "/" {
            scrub.push(url.path().to_string());
        }
        if let Some(q) = url.query() {
            scrub.push(q.to_string());
        }
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
        within(&self.shown, self.timeout, self.attempt(alert))
            .await
            .map_err(|e| self.scrub.error(e))
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
        deliver(&self.shown, req.body(body), self.timeout, &self.scrub).await
    }

    pub fn refresh_every(&self) -> Option<Duration> {
        None
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// What this notifier's texts are scrubbed of.
    pub(crate) fn scrub(&self) -> &super::http::Scrub {
        &self.scrub
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

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::time::SystemTime;

    use bytes::Bytes;
    use http_body_util::Full;
    use hyper_util::rt::TokioIo;
    use reqwest::StatusCode;
    use tokio::net::TcpListener;
    use tokio::sync::mpsc;

    use super::*;
    use crate::alert::Event;
    use crate::alert::http::fake::{assert_field_errors, dead_addr, hanging_server, read_request};
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
                            let (parts, body) = read_request(req).await;
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

    fn spec(yaml: &str) -> Spec {
        crate::alert::http::fake::spec(yaml)
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
        let addr = dead_addr().await;
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
            assert_field_errors(yaml, &got, want);
            for e in &got {
                assert!(!e.message.contains("hunter2"), "{got:?}");
                assert!(!e.message.ends_with('.'), "{got:?}");
            }
        }
        assert!(serde_yaml::from_str::<Spec>("{ url: 'http://x/', urls: [] }").is_err());
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
