//! The lab's HTTP side: accepting, the target's answers (faults applied), the control API,
//! and a streamed body.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

use super::faults::Plan;
use super::stats::{Gauge, Per, add};
use super::{DropHow, Faults, Shared};

/// Largest request body read (a hung request's included); the rest is left unread.
const MAX_REQUEST_BODY: usize = 1 << 20;
/// Largest control API body.
const MAX_CONTROL_BODY: usize = 64 << 10;
/// The filler bodies are cut from: this many bytes, made once.
const FILLER_LEN: usize = 64 << 10;

/// Accepts connections until the lab stops.
pub(crate) async fn accept(shared: Arc<Shared>, l: TcpListener) {
    loop {
        let accepted = tokio::select! {
            _ = shared.token.cancelled() => return,
            a = l.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => {
                add(&shared.rec.c.connections, 1);
                shared.rec.per(Per::Connections, peer.ip());
                let Ok(local) = stream.local_addr() else {
                    continue;
                };
                tokio::spawn(serve(shared.clone(), stream, local, peer));
            }
            // Out of descriptors and the like: let others finish, try again.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// One connection from `peer`, HTTP/1.1 with upgrades, until it ends or the lab stops.
async fn serve(shared: Arc<Shared>, stream: TcpStream, local: SocketAddr, peer: SocketAddr) {
    let token = shared.token.clone();
    let svc = hyper::service::service_fn(move |req| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(handle(shared, local, peer, req).await) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), svc)
        .with_upgrades();
    tokio::select! {
        _ = conn => {}
        _ = token.cancelled() => {}
    }
}

async fn handle(
    shared: Arc<Shared>,
    local: SocketAddr,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<LabBody> {
    let path = req.uri().path();
    if path == "/_lab" || path.starts_with("/_lab/") {
        return control(&shared, local, req).await;
    }
    if super::ws::is_upgrade(&req) {
        return super::ws::upgrade(shared, local, peer.ip(), req);
    }
    target(&shared, local, peer.ip(), req).await
}

/// A target request from `peer`, faults applied.
async fn target(
    shared: &Arc<Shared>,
    local: SocketAddr,
    peer: std::net::IpAddr,
    req: Request<Incoming>,
) -> Response<LabBody> {
    shared.rec.request(local, peer);
    let write = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let version = req.uri().path() == "/version";
    let plan = shared.engine().plan(local, write, version);
    let (delay, error, body, build) = match plan {
        Plan::Hang => {
            add(&shared.rec.c.hangs, 1);
            let _hanging = Gauge::up(&shared.rec.c.hanging);
            // Read the request, as a stuck server does, then never answer: this future is
            // dropped when the client goes away or the lab stops (the connection with it).
            let _ = Limited::new(req.into_body(), MAX_REQUEST_BODY)
                .collect()
                .await;
            return std::future::pending().await;
        }
        Plan::Answer {
            delay,
            error,
            body,
            build,
        } => (delay, error, body, build),
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    shared.rec.answered(&build);
    let (status, content_type, natural) = match error {
        Some(code) => {
            add(&shared.rec.c.errors, 1);
            (
                StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                "text/plain; charset=utf-8",
                format!("lab: injected error {code}\n"),
            )
        }
        None if version => (
            StatusCode::OK,
            "application/json",
            serde_json::json!({ "build": build }).to_string(),
        ),
        None => (
            StatusCode::OK,
            "text/plain; charset=utf-8",
            format!("ok build {build}\n"),
        ),
    };
    let body = LabBody::padded(Bytes::from(natural), body, Some(shared.clone()));
    shared.rec.body(body.len());
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    if let Ok(v) = header::HeaderValue::from_str(&build) {
        h.insert("x-build", v);
    }
    resp
}

/// The control API (never faulty, not counted as requests).
async fn control(
    shared: &Arc<Shared>,
    local: SocketAddr,
    req: Request<Incoming>,
) -> Response<LabBody> {
    let method = req.method().clone();
    let path = req.uri().path().trim_end_matches('/').to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let body = match Limited::new(req.into_body(), MAX_CONTROL_BODY)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(_) => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "control requests are at most 64 KiB",
            );
        }
    };
    let read_json = |body: &Bytes| -> Result<serde_json::Value, String> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(serde_json::json!({}));
        }
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))
    };
    match (method, path.as_str()) {
        (Method::GET, "/_lab") => text(StatusCode::OK, &super::usage(&format!("http://{local}"))),
        (Method::GET, "/_lab/faults") => json(StatusCode::OK, &shared.faults()),
        (Method::POST | Method::PATCH, "/_lab/faults") => {
            match read_json(&body).and_then(|p| shared.patch(&p)) {
                Ok(f) => json(StatusCode::OK, &f),
                Err(e) => error(StatusCode::BAD_REQUEST, &e),
            }
        }
        (Method::PUT, "/_lab/faults") => {
            match read_json(&body).and_then(|p| Faults::default().patched(&p)) {
                Ok(f) => match shared.set_faults(f) {
                    Ok(f) => json(StatusCode::OK, &f),
                    Err(e) => error(StatusCode::BAD_REQUEST, &e),
                },
                Err(e) => error(StatusCode::BAD_REQUEST, &e),
            }
        }
        (Method::DELETE, "/_lab/faults") => match shared.set_faults(Faults::default()) {
            Ok(f) => json(StatusCode::OK, &f),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e),
        },
        (Method::GET, "/_lab/stats") => json(StatusCode::OK, &shared.rec.snapshot()),
        (Method::POST, "/_lab/stats/reset") => {
            shared.rec.reset();
            json(StatusCode::OK, &shared.rec.snapshot())
        }
        (Method::POST, "/_lab/websockets/drop") => {
            let how = match query.split('&').find_map(|kv| kv.strip_prefix("how=")) {
                None | Some("close") => DropHow::Close,
                Some("reset") => DropHow::Reset,
                Some(other) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        &format!("how={other}: use close or reset"),
                    );
                }
            };
            let n = shared.drop_websockets(how);
            json(
                StatusCode::OK,
                &serde_json::json!({ "dropped": n, "how": how }),
            )
        }
        (
            _,
            "/_lab"
            | "/_lab/faults"
            | "/_lab/stats"
            | "/_lab/stats/reset"
            | "/_lab/websockets/drop",
        ) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed here; GET /_lab for usage",
        ),
        _ => error(
            StatusCode::NOT_FOUND,
            "no such control path; GET /_lab for usage",
        ),
    }
}

pub(crate) fn text(status: StatusCode, s: &str) -> Response<LabBody> {
    let mut r = Response::new(LabBody::padded(Bytes::from(s.to_owned()), 0, None));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn json<T: serde::Serialize>(status: StatusCode, v: &T) -> Response<LabBody> {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_else(|_| "{}".into());
    s.push('\n');
    let mut r = Response::new(LabBody::padded(Bytes::from(s), 0, None));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

fn error(status: StatusCode, msg: &str) -> Response<LabBody> {
    json(status, &serde_json::json!({ "error": msg }))
}

/// Filler lines, made once and shared by every padded body.
fn filler() -> &'static Bytes {
    static FILLER: OnceLock<Bytes> = OnceLock::new();
    FILLER.get_or_init(|| {
        let line = b"{\"row\":\"lab filler, one of ever more rows of a response\"}\n";
        let mut v = Vec::with_capacity(FILLER_LEN);
        while v.len() < FILLER_LEN {
            let n = line.len().min(FILLER_LEN - v.len());
            v.extend_from_slice(&line[..n]);
        }
        Bytes::from(v)
    })
}

/// A response body: a head, then `rest` bytes of filler streamed in slices of one shared
/// buffer (a body of any size costs no memory of its size). Its exact length is known, so
/// it goes out with a `Content-Length`. Counts its bytes as they are handed over.
pub(crate) struct LabBody {
    head: Option<Bytes>,
    head_len: u64,
    rest: u64,
    offset: usize,
    counted: Option<Arc<Shared>>,
}

impl LabBody {
    /// `head`, padded with filler to `len` bytes when `len` is longer.
    fn padded(head: Bytes, len: u64, counted: Option<Arc<Shared>>) -> LabBody {
        let head_len = head.len() as u64;
        LabBody {
            head: (!head.is_empty()).then_some(head),
            head_len,
            rest: len.saturating_sub(head_len),
            offset: 0,
            counted,
        }
    }

    pub(crate) fn empty() -> LabBody {
        LabBody::padded(Bytes::new(), 0, None)
    }

    fn len(&self) -> u64 {
        self.head_len + self.rest
    }

    fn count(&self, n: usize) {
        if let Some(s) = &self.counted {
            add(&s.rec.c.bytes_sent, n as u64);
        }
    }
}

impl hyper::body::Body for LabBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(head) = self.head.take() {
            self.count(head.len());
            return Poll::Ready(Some(Ok(Frame::data(head))));
        }
        if self.rest == 0 {
            return Poll::Ready(None);
        }
        let f = filler();
        let n = (f.len() - self.offset).min(usize::try_from(self.rest).unwrap_or(usize::MAX));
        let chunk = f.slice(self.offset..self.offset + n);
        self.offset = (self.offset + n) % f.len();
        self.rest -= n as u64;
        self.count(n);
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.head.is_none() && self.rest == 0
    }

    fn size_hint(&self) -> SizeHint {
        let left = self.head.as_ref().map_or(0, |h| h.len() as u64) + self.rest;
        SizeHint::with_exact(left)
    }
}
