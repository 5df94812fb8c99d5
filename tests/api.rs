//! The API server against the real `probed` binary: connections that say nothing are closed,
//! a flood of idle sockets on a daemon with few file descriptors leaves `/healthz` and the
//! probes working, and a write without the token is refused before its body is read.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::{Daemon, Target, http_get_blocking, split_response};

const ADMIN: &str = "admin-token-api-5f1e2d";

fn probe(name: &str, url: &str) -> String {
    format!(
        "probes:\n  - name: {name}\n    kind: http\n    every: 300ms\n    timeout: 250ms\n    \
         request: {{ url: \"{url}\" }}\n"
    )
}

/// Reads from `s` until the server closes it (Ok(0)) or `limit` passes; whether it closed.
fn closed_by_server(s: &mut TcpStream, limit: Duration) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let t0 = Instant::now();
    let mut buf = [0u8; 4096];
    while t0.elapsed() < limit {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            // Reset by the server: closed as well.
            Err(_) => return true,
        }
    }
    false
}

/// A socket that says nothing, and one kept alive after a request, are closed by the server
/// (the header-read timeout is 10 s); before, both stayed open for as long as the client
/// liked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_idle_kept_alive_connections_are_closed() {
    let target = Target::start().await;
    let mut d = Daemon::new(&probe("web", &target.url("/")), "");
    d.start();

    let mut silent = TcpStream::connect(("127.0.0.1", d.port)).unwrap();
    let mut kept = TcpStream::connect(("127.0.0.1", d.port)).unwrap();
    write!(kept, "GET /healthz HTTP/1.1\r\nHost: probed\r\n\r\n").unwrap();
    // The answer comes, and the connection stays open for the next request...
    kept.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut head = [0u8; 12];
    kept.read_exact(&mut head).unwrap();
    assert!(
        head.starts_with(b"HTTP/1.1 "),
        "{:?}",
        String::from_utf8_lossy(&head)
    );
    // ...until it has said nothing for the header timeout.
    let limit = Duration::from_secs(40);
    assert!(
        closed_by_server(&mut silent, limit),
        "a silent socket is still open after {limit:?}"
    );
    assert!(
        closed_by_server(&mut kept, limit),
        "an idle kept-alive socket is still open after {limit:?}"
    );
}

/// The adversarial run: 1,100 idle sockets on a daemon with 1,024 file descriptors made
/// `/healthz` unreachable and failed a canary probe with "too many open files". Here the
/// daemon has 256 (so at most 64 API connections) and 400 idle sockets arrive: `/healthz`
/// still answers on a fresh connection, and the probe never fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_idle_sockets_leaves_healthz_and_the_probes_working() {
    let target = Target::start().await;
    let mut d = Daemon::new(&probe("canary", &target.url("/")), "");
    d.start_with_open_files(256);
    d.wait_state("canary", "up", Duration::from_secs(10));
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;

    let mut flood = Vec::new();
    for _ in 0..400 {
        match TcpStream::connect(("127.0.0.1", d.port)) {
            Ok(s) => flood.push(s),
            Err(e) => panic!("connect {}: {e}", flood.len()),
        }
    }
    // A fresh client gets its answer while the idle sockets are still open on our side.
    let raw = http_get_blocking(&format!("{}/healthz", d.url()));
    let (code, _, body) = split_response(&raw);
    assert_eq!(code, 200, "{raw}");
    assert!(body.contains("ok"), "{body}");

    // Runs go on during and after the flood, and none of them failed.
    let hits = target.hits.load(std::sync::atomic::Ordering::Relaxed);
    support::wait_for(Duration::from_secs(10), "three more probe runs", || {
        target.hits.load(std::sync::atomic::Ordering::Relaxed) >= hits + 3
    });
    let raw = http_get_blocking(&format!(
        "{}/api/v1/probes/canary/results?limit=1000",
        d.url()
    ));
    let (code, _, body) = split_response(&raw);
    assert_eq!(code, 200, "{raw}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let results = v["results"].as_array().unwrap();
    let during: Vec<_> = results
        .iter()
        .filter(|r| r["at_ms"].as_i64().unwrap() >= since)
        .collect();
    assert!(!during.is_empty());
    let failed: Vec<_> = during.iter().filter(|r| r["ok"] != true).collect();
    assert!(
        failed.is_empty(),
        "failed runs during the flood: {failed:?}"
    );
    assert!(!d.log().contains("panicked"), "{}", d.log());
    drop(flood);
}

/// `ack` checks the token before it reads the body: without it, a malformed body or a wrong
/// content type is a 401, not a 400 or 415. With it, the malformed body is a 400 that says
/// what is wanted. Push pings are not logged at INFO.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_checks_the_token_before_the_body_and_pings_log_quietly() {
    let target = Target::start().await;
    let mut d = Daemon::new(
        &format!(
            "{}  - name: job\n    kind: push\n    token: push-token-api-77aa-0123\n    period: 1h\n",
            probe("web", &target.url("/"))
        ),
        &format!("admin_token: {ADMIN}\n"),
    );
    d.start();
    let post = |headers: &str, body: &str| -> (u16, String) {
        let mut s = TcpStream::connect(("127.0.0.1", d.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "POST /api/v1/incidents/1/ack HTTP/1.1\r\nHost: probed\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).unwrap();
        let (code, _, body) = split_response(&raw);
        (code, body)
    };
    for (headers, body) in [
        ("Content-Type: text/plain\r\n", "not json at all"),
        ("Content-Type: application/json\r\n", "{\"by\": "),
        ("", "{\"by\": \"me\"}"),
        (
            "Authorization: Bearer wrong\r\nContent-Type: application/json\r\n",
            "{",
        ),
    ] {
        let (code, text) = post(headers, body);
        assert_eq!(code, 401, "{headers:?} {body:?}: {text}");
        assert!(text.contains("admin token"), "{text}");
    }
    let auth = format!("Authorization: Bearer {ADMIN}\r\nContent-Type: application/json\r\n");
    let (code, text) = post(&auth, "{\"by\": ");
    assert_eq!(code, 400, "{text}");
    assert!(text.contains("invalid body"), "{text}");
    let (code, text) = post(&auth, "");
    assert_eq!(code, 404, "no incident 1 yet: {text}");

    let raw = http_get_blocking(&format!("{}/api/v1/push/push-token-api-77aa-0123", d.url()));
    assert_eq!(split_response(&raw).0, 200, "{raw}");
    assert!(!d.log().contains("push received"), "{}", d.log());
}
