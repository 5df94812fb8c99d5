//! `GET /probe`, blackbox_exporter's endpoint, on the real `probed` (issue 15.4): a real
//! Prometheus with a stock blackbox scrape config (`metrics_path: /probe`, relabel
//! `__address__` → `__param_target` → `instance`, `__address__` = probed) gets
//! `probe_success` per target; a target outside `probe_endpoint.allow` is refused and never
//! connected to; the answer passes `promtool check metrics`; `defaults.max_concurrent`
//! holds for `/probe` as for the scheduler.
//!
//! The modules come from a stock-looking `blackbox.yml` through `modules_file:`.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use support::prometheus::{Prometheus, promtool};
use support::{Daemon, Target, http_get_blocking, http_get_with, poll_for, split_response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// As blackbox_exporter's example config writes it.
const BLACKBOX_YML: &str = r#"modules:
  http_2xx:
    prober: http
    timeout: 5s
    http:
      preferred_ip_protocol: "ip4"
  tcp_connect:
    prober: tcp
    timeout: 5s
"#;

/// The real `probed` with `blackbox.yml` as its `modules_file:`, `/probe` allowed to any
/// port of 127.0.0.1 (`extra` is appended to its config).
fn daemon(extra: &str) -> Daemon {
    let mut d = Daemon::new(
        "probes: []\n",
        &format!(
            "modules_file: blackbox.yml\n\
             probe_endpoint:\n  allow: [\"http://127.0.0.1:*/*\", \"127.0.0.1:*\"]\n{extra}"
        ),
    );
    std::fs::write(d.dir.path().join("blackbox.yml"), BLACKBOX_YML).unwrap();
    d.start();
    d
}

fn query(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// `GET /probe?target=…&module=…` as (status, body).
fn probe(d: &Daemon, target: &str, module: &str) -> (u16, String) {
    let url = format!(
        "{}/probe?target={}&module={}",
        d.url(),
        query(target),
        query(module)
    );
    let (code, _, body) = split_response(&http_get_blocking(&url));
    (code, body)
}

/// The done-when of issue 15.4: the stock blackbox scrape config, pointed at probed, gets
/// `probe_success` 1 for the target that answers and 0 for the one that is off, each with
/// `instance` = the target.
#[test]
fn prometheus_with_a_stock_blackbox_scrape_config_gets_probe_success_per_target() {
    let rt = support::runtime();
    let up = rt.block_on(Target::start());
    let mut off = rt.block_on(Target::start());
    off.off();
    let d = daemon("");
    let (up_url, off_url) = (up.url("/"), off.url("/"));
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
         scrape_configs:\n\
         \x20 - job_name: blackbox\n\
         \x20   metrics_path: /probe\n\
         \x20   params:\n\
         \x20     module: [http_2xx]\n\
         \x20   static_configs:\n\
         \x20     - targets:\n\
         \x20       - {up_url}\n\
         \x20       - {off_url}\n\
         \x20   relabel_configs:\n\
         \x20     - source_labels: [__address__]\n\
         \x20       target_label: __param_target\n\
         \x20     - source_labels: [__param_target]\n\
         \x20       target_label: instance\n\
         \x20     - target_label: __address__\n\
         \x20       replacement: 127.0.0.1:{port}\n",
        port = d.port
    );
    let prom = Prometheus::start(&config);
    let mut series = Vec::new();
    let both = poll_for(Duration::from_secs(30), || {
        series = prom
            .series("probe_success{job=\"blackbox\"}")
            .unwrap_or_else(|e| panic!("prometheus refused the query: {e}"));
        series.len() == 2
    });
    assert!(
        both,
        "want two probe_success series, got {series:?}; targets: {}\nprobed log:\n{}",
        prom.targets(),
        d.log()
    );
    let mut got: Vec<(String, String)> = series
        .iter()
        .map(|s| {
            (
                s["metric"]["instance"].as_str().unwrap().to_owned(),
                s["value"][1].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    got.sort();
    let mut want = vec![(up_url.clone(), "1".to_owned()), (off_url, "0".to_owned())];
    want.sort();
    assert_eq!(got, want);
    assert!(up.hits.load(Ordering::Relaxed) >= 1);
    // The other families came along, unlabelled by probed and labelled by the scrape.
    let codes = prom.wait_series(
        &format!("probe_http_status_code{{instance=\"{up_url}\"}}"),
        Duration::from_secs(10),
    );
    assert_eq!(codes[0]["value"][1], "200");
}

/// The allow list, the errors of the endpoint, the exposition's lint, and `/probe` off
/// without `probe_endpoint:`.
#[test]
fn probe_answers_in_blackbox_exposition_and_refuses_what_allow_does_not_name() {
    let rt = support::runtime();
    let up = rt.block_on(Target::start());
    // Another host as far as the allow list is concerned.
    let elsewhere = rt.block_on(Target::start_on("127.0.0.2"));
    let d = daemon("");

    let (code, body) = probe(&d, &up.url("/"), "http_2xx");
    assert_eq!(code, 200, "{body}");
    let lines: Vec<&str> = body.lines().collect();
    for want in [
        "probe_success 1",
        "probe_http_status_code 200",
        "# TYPE probe_duration_seconds gauge",
    ] {
        assert!(lines.contains(&want), "{want} missing from:\n{body}");
    }
    assert!(
        !body.contains("probe_success{"),
        "no labels of its own: {body}"
    );
    let lint = promtool(&["check", "metrics"], body.as_bytes());
    assert!(
        lint.status.success() && lint.stdout.is_empty() && lint.stderr.is_empty(),
        "promtool check metrics: {}{}\n{body}",
        String::from_utf8_lossy(&lint.stdout),
        String::from_utf8_lossy(&lint.stderr)
    );

    // The default module is http_2xx; a failed check says why in a comment, and lints clean.
    let closed = format!("http://127.0.0.1:{}/", support::free_port());
    let url = format!("{}/probe?target={}", d.url(), query(&closed));
    let (code, _, body) = split_response(&http_get_blocking(&url));
    assert_eq!(code, 200, "{body}");
    assert!(body.lines().any(|l| l == "probe_success 0"), "{body}");
    assert!(body.contains("# probe failed: "), "{body}");
    let lint = promtool(&["check", "metrics"], body.as_bytes());
    assert!(lint.status.success(), "{lint:?}\n{body}");

    // tcp_connect takes host:port.
    let (code, body) = probe(&d, &up.addr.to_string(), "tcp_connect");
    assert_eq!(code, 200, "{body}");
    assert!(body.lines().any(|l| l == "probe_success 1"), "{body}");

    // Outside allow: 403, and the target never sees a connection.
    for (target, module) in [
        (elsewhere.url("/"), "http_2xx"),
        (elsewhere.addr.to_string(), "tcp_connect"),
        // userinfo cannot smuggle another host past a pattern.
        (
            format!("http://127.0.0.1:1@{}/", elsewhere.addr),
            "http_2xx",
        ),
    ] {
        let (code, body) = probe(&d, &target, module);
        assert_eq!(code, 403, "{target}: {body}");
        assert!(body.contains("probe_endpoint.allow"), "{body}");
    }
    assert_eq!(elsewhere.hits.load(Ordering::Relaxed), 0);

    let (code, body) = probe(&d, "", "http_2xx");
    assert_eq!(
        (code, body.contains("Target parameter is missing")),
        (400, true),
        "{body}"
    );
    let (code, body) = probe(&d, &up.url("/"), "http_2x");
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("Unknown module \\\"http_2x\\\", did you mean \\\"http_2xx\\\"?"),
        "{body}"
    );

    // Without probe_endpoint, /probe is off and says how to turn it on.
    let mut plain = Daemon::new("probes: []\n", "");
    plain.start();
    let (code, body) = probe(&plain, &up.url("/"), "http_2xx");
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("set probe_endpoint"), "{body}");
}

/// An HTTP target that holds each connection until released, counting connections and the
/// most open at once.
struct Held {
    addr: std::net::SocketAddr,
    total: Arc<AtomicU64>,
    most_open: Arc<AtomicU64>,
    release: Arc<tokio::sync::Semaphore>,
}

fn held(rt: &tokio::runtime::Runtime) -> Held {
    let l = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let h = Held {
        addr: l.local_addr().unwrap(),
        total: Default::default(),
        most_open: Default::default(),
        release: Arc::new(tokio::sync::Semaphore::new(0)),
    };
    let open = Arc::new(AtomicU64::new(0));
    let (total, most, release) = (h.total.clone(), h.most_open.clone(), h.release.clone());
    rt.spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                continue;
            };
            total.fetch_add(1, Ordering::SeqCst);
            let now = open.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            let (open, release) = (open.clone(), release.clone());
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                // Answered once the test lets one through.
                let _ = release.acquire().await.map(|p| p.forget());
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    )
                    .await;
                let _ = s.shutdown().await;
                open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    h
}

/// With `max_concurrent: 1`, a second `/probe` while the first holds the only slot does not
/// run: it answers 503 once its scrape timeout is spent, and the target never sees a second
/// connection while the first is open. Ordered by what the target saw, not by sleeps.
#[test]
fn probe_takes_a_slot_of_max_concurrent() {
    let rt = support::runtime();
    let target = held(&rt);
    let d = daemon("defaults: { max_concurrent: 1 }\n");
    let url = format!(
        "{}/probe?target={}&module=http_2xx",
        d.url(),
        query(&format!("http://{}/", target.addr))
    );
    // The first check connects and waits for the answer the test holds back.
    let first = {
        let url = url.clone();
        std::thread::spawn(move || {
            http_get_with(&url, "X-Prometheus-Scrape-Timeout-Seconds: 9\r\n")
        })
    };
    support::wait_for(
        Duration::from_secs(10),
        "the first check to connect",
        || target.total.load(Ordering::SeqCst) == 1,
    );
    // The second finds the only slot taken until its own deadline (1 s less 0.5 s).
    let (code, head, body) = split_response(&http_get_with(
        &url,
        "X-Prometheus-Scrape-Timeout-Seconds: 1\r\n",
    ));
    assert_eq!(code, 503, "{body}");
    assert!(head.contains("retry-after: 1"), "{head}");
    assert!(body.contains("defaults.max_concurrent is 1"), "{body}");
    assert_eq!(
        target.total.load(Ordering::SeqCst),
        1,
        "the second never connected"
    );
    // Let the first answer: it succeeds, and frees the slot for the next.
    target.release.add_permits(1);
    let (code, _, body) = split_response(&first.join().unwrap());
    assert_eq!(code, 200, "{body}");
    assert!(body.lines().any(|l| l == "probe_success 1"), "{body}");
    target.release.add_permits(1);
    let (code, _, body) = split_response(&http_get_with(
        &url,
        "X-Prometheus-Scrape-Timeout-Seconds: 9\r\n",
    ));
    assert_eq!(code, 200, "{body}");
    assert!(body.lines().any(|l| l == "probe_success 1"), "{body}");
    assert_eq!(target.total.load(Ordering::SeqCst), 2);
    assert_eq!(
        target.most_open.load(Ordering::SeqCst),
        1,
        "never two at once"
    );
}
