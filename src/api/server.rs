//! The API's HTTP/1 server: the router behind a connection loop that never lets clients
//! decide how many file descriptors the daemon holds.
//!
//! - A connection has [`HEADER_TIMEOUT`] to send a request's headers, and the same to send
//!   the next one when it is kept alive: a socket that says nothing is closed.
//! - A request has [`REQUEST_TIMEOUT`] to send its body and be answered (408 after that).
//! - At most [`Limits::max_connections`] are open at once, a quarter of the daemon's file
//!   descriptors (between 16 and 4096): the rest stay for the probes. When a new client
//!   comes at the cap, the connection that has been waiting longest without a request in
//!   flight is closed to make room, so a flood of idle sockets never locks out `/healthz`;
//!   when every connection is busy, the newcomer is closed.
//! - An accept that fails for lack of descriptors (EMFILE, ENFILE) or memory is logged once
//!   a minute and retried after a short pause, instead of spinning.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

/// Time to send a request's headers, and to start the next request on a kept-alive
/// connection.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Time for a request's body to arrive and its answer to be made.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Time open connections get to finish at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Pause after an accept failed for lack of descriptors or memory.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How many connections the API keeps open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_connections: usize,
}

impl Limits {
    /// A quarter of `fds` (the soft `RLIMIT_NOFILE`), between 16 and 4096.
    pub fn for_descriptors(fds: u64) -> Limits {
        Limits {
            max_connections: (fds / 4).clamp(16, 4096) as usize,
        }
    }

    /// From this process's file descriptor limit.
    pub fn from_rlimit() -> Limits {
        Limits::for_descriptors(descriptor_limit())
    }
}

/// The soft limit on open files (1024 when it cannot be read).
pub fn descriptor_limit() -> u64 {
    rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX)
        .min(1 << 20)
}

/// Raises the soft limit on open files to the hard limit (as Go and systemd services do), so
/// probes and API clients share as many descriptors as the system allows. Returns the soft
/// limit after.
pub fn raise_descriptor_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        limit.current = limit.maximum;
        if let Err(e) = setrlimit(Resource::Nofile, limit) {
            tracing::debug!(error = %e, "could not raise the open files limit");
        }
    }
    descriptor_limit()
}

/// True when the API listens beyond this machine (not on a loopback address) and no admin
/// token is set: reads are open to the network, worth a warning at start.
pub fn exposed_without_token(listen: std::net::SocketAddr, has_token: bool) -> bool {
    !listen.ip().is_loopback() && !has_token
}

/// One open connection, for eviction at the cap.
struct Open {
    id: u64,
    /// Requests in flight on it.
    busy: Arc<AtomicUsize>,
    close: CancellationToken,
}

/// The open connections, oldest first.
#[derive(Default)]
struct Registry {
    open: Mutex<VecDeque<Open>>,
}

impl Registry {
    fn len(&self) -> usize {
        self.open.lock().unwrap().len()
    }

    fn add(&self, id: u64, busy: Arc<AtomicUsize>, close: CancellationToken) {
        self.open
            .lock()
            .unwrap()
            .push_back(Open { id, busy, close });
    }

    fn remove(&self, id: u64) {
        self.open.lock().unwrap().retain(|o| o.id != id);
    }

    /// Closes the oldest connection with no request in flight; false when all are busy.
    fn evict_idle(&self) -> bool {
        let mut open = self.open.lock().unwrap();
        match open
            .iter()
            .position(|o| o.busy.load(Ordering::Acquire) == 0)
        {
            Some(i) => {
                if let Some(o) = open.remove(i) {
                    o.close.cancel();
                }
                true
            }
            None => false,
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes; then open connections get
/// [`SHUTDOWN_GRACE`] to finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let registry = Arc::new(Registry::default());
    let tracker = TaskTracker::new();
    let stop = CancellationToken::new();
    let mut last_warning: Option<tokio::time::Instant> = None;
    let mut next_id = 0u64;
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            a = listener.accept() => a,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) if is_resource_error(&e) => {
                if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                    tracing::warn!(
                        error = %e,
                        open = registry.len(),
                        "api: cannot accept a connection (out of file descriptors or memory); \
                         retrying"
                    );
                    last_warning = Some(tokio::time::Instant::now());
                }
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
            // The client gave up before we accepted (ECONNABORTED and the like).
            Err(_) => continue,
        };
        if registry.len() >= limits.max_connections && !registry.evict_idle() {
            tracing::debug!(
                max = limits.max_connections,
                "api: every connection is busy; closing a new one"
            );
            drop(stream);
            continue;
        }
        let _ = stream.set_nodelay(true);
        next_id += 1;
        let id = next_id;
        let busy = Arc::new(AtomicUsize::new(0));
        let close = stop.child_token();
        registry.add(id, busy.clone(), close.clone());
        let registry = registry.clone();
        let app = app.clone();
        let draining = stop.clone();
        tracker.spawn(async move {
            connection(stream, app, busy, close, draining).await;
            registry.remove(id);
        });
    }
    drop(listener);
    stop.cancel();
    tracker.close();
    let _ = tokio::time::timeout(SHUTDOWN_GRACE + Duration::from_secs(1), tracker.wait()).await;
    Ok(())
}

/// Out of descriptors or memory: worth a pause before the next accept.
fn is_resource_error(e: &std::io::Error) -> bool {
    use rustix::io::Errno;
    e.raw_os_error()
        .map(Errno::from_raw_os_error)
        .is_some_and(|n| {
            n == Errno::MFILE || n == Errno::NFILE || n == Errno::NOBUFS || n == Errno::NOMEM
        })
}

/// Serves one connection until it ends, is evicted (`close` without `draining`), or the
/// server drains (`draining`: finish the request in flight, then close).
async fn connection(
    stream: tokio::net::TcpStream,
    app: Router,
    busy: Arc<AtomicUsize>,
    close: CancellationToken,
    draining: CancellationToken,
) {
    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let app = app.clone();
        let busy = busy.clone();
        async move {
            busy.fetch_add(1, Ordering::AcqRel);
            let answer =
                tokio::time::timeout(REQUEST_TIMEOUT, app.oneshot(req.map(Body::new))).await;
            busy.fetch_sub(1, Ordering::AcqRel);
            Ok::<_, Infallible>(match answer {
                Ok(Ok(response)) => response,
                Ok(Err(never)) => match never {},
                Err(_) => timed_out(),
            })
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(64 << 10);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = close.cancelled() => {}
    }
    if draining.is_cancelled() {
        conn.as_mut().graceful_shutdown();
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, conn).await;
    }
    // Evicted: dropped at once.
}

fn timed_out() -> Response<Body> {
    let mut r = Response::new(Body::from(
        r#"{"error":"the request took too long (body or answer)"}"#,
    ));
    *r.status_mut() = StatusCode::REQUEST_TIMEOUT;
    r.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    r.headers_mut().insert(
        axum::http::header::CONNECTION,
        axum::http::HeaderValue::from_static("close"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_is_a_quarter_of_the_descriptors_within_bounds() {
        assert_eq!(Limits::for_descriptors(1024).max_connections, 256);
        assert_eq!(Limits::for_descriptors(20).max_connections, 16);
        assert_eq!(Limits::for_descriptors(1 << 20).max_connections, 4096);
    }

    #[test]
    fn listening_beyond_loopback_without_a_token_is_flagged() {
        let at = |s: &str| s.parse::<std::net::SocketAddr>().unwrap();
        assert!(exposed_without_token(at("0.0.0.0:9797"), false));
        assert!(exposed_without_token(at("[::]:9797"), false));
        assert!(exposed_without_token(at("10.1.2.3:9797"), false));
        assert!(!exposed_without_token(at("0.0.0.0:9797"), true));
        assert!(!exposed_without_token(at("127.0.0.1:9797"), false));
        assert!(!exposed_without_token(at("[::1]:9797"), false));
    }

    #[test]
    fn eviction_takes_the_oldest_idle_connection() {
        let r = Registry::default();
        let tokens: Vec<_> = (0..3).map(|_| CancellationToken::new()).collect();
        let busy: Vec<_> = (0..3).map(|_| Arc::new(AtomicUsize::new(0))).collect();
        for i in 0..3 {
            r.add(i as u64, busy[i].clone(), tokens[i].clone());
        }
        busy[0].store(1, Ordering::Release);
        assert!(r.evict_idle());
        assert!(!tokens[0].is_cancelled() && tokens[1].is_cancelled());
        busy[2].store(1, Ordering::Release);
        assert!(!r.evict_idle(), "all busy");
        assert_eq!(r.len(), 2);
    }
}
