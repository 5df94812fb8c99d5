//! The lab's own tests: each fault measurably does what it says, seen over the wire (a raw
//! HTTP/1.1 client, tungstenite clients) and through the real probes it is meant to fool.
//! Timings are measured with the monotonic clock and asserted as lower bounds (a fault adds
//! at least what it says), never as performance.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

use super::faults::{Engine, Plan};
use super::*;
use crate::probe::testkit::{Zone, assert_down, assert_up, reason};
use crate::probe::{CheckCx, Env, Observation};
use crate::units::{ByteSize, Dur};

const MS: Duration = Duration::from_millis(1);
/// The bound on any single wait for the lab in these tests.
const LIMIT: Duration = Duration::from_secs(10);

// ---- helpers ---------------------------------------------------------------------------

async fn lab() -> LabHandle {
    Lab::start(&[SocketAddr::from((Ipv4Addr::LOCALHOST, 0))])
        .await
        .unwrap()
}

/// One answer, read to the end of a `Connection: close` exchange.
#[derive(Debug)]
struct Reply {
    status: u16,
    head: String,
    body: Vec<u8>,
    /// From connect to the last byte (monotonic).
    took: Duration,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not json ({e}): {}", self.text()))
    }
}

/// Writes a request with `Connection: close` on a fresh connection.
async fn send(addr: SocketAddr, method: &str, path: &str, body: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    s
}

async fn request(addr: SocketAddr, method: &str, path: &str, body: &str) -> Reply {
    let t = Instant::now();
    let mut s = send(addr, method, path, body).await;
    let mut raw = Vec::new();
    tokio::time::timeout(LIMIT, s.read_to_end(&mut raw))
        .await
        .unwrap_or_else(|_| panic!("{method} {path}: no answer within {LIMIT:?}"))
        .unwrap();
    let took = t.elapsed();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    Reply {
        status,
        head,
        body: raw[split + 4..].to_vec(),
        took,
    }
}

async fn get(addr: SocketAddr, path: &str) -> Reply {
    request(addr, "GET", path, "").await
}

/// Polls `cond` every 10 ms until it holds, for at most [`LIMIT`].
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < LIMIT, "timed out waiting for {what}");
        tokio::time::sleep(10 * MS).await;
    }
}

async fn probe_http(yaml: &str, env: &Env) -> Observation {
    let spec: crate::probe::http::Spec = serde_yaml::from_str(yaml).unwrap();
    let check = std::sync::Arc::new(spec).build().unwrap();
    let cx = CheckCx {
        env,
        deadline: Instant::now() + Duration::from_secs(5),
    };
    check.check(&cx).await
}

async fn probe_ws(yaml: &str) -> Observation {
    let spec: crate::probe::websocket::Spec = serde_yaml::from_str(yaml).unwrap();
    let check = std::sync::Arc::new(spec).build().unwrap();
    let env = Env::new(&[]).unwrap();
    let cx = CheckCx {
        env: &env,
        deadline: Instant::now() + Duration::from_secs(5),
    };
    check.check(&cx).await
}

fn phase(obs: &Observation, name: &str) -> Duration {
    obs.phases
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no phase {name} in {:?}", obs.phases))
        .1
}

// ---- pure parts --------------------------------------------------------------------------

#[test]
fn lab_rates_parse_print_and_round_trip() {
    for (s, ppb, shown) in [
        ("2.39%", 23_900_000, "2.39%"),
        ("0.0812%", 812_000, "0.0812%"),
        ("0.08 %", 800_000, "0.08%"),
        ("0.0239", 23_900_000, "2.39%"),
        ("100%", 1_000_000_000, "100%"),
        ("0", 0, "0%"),
    ] {
        let r: Rate = s.parse().unwrap();
        assert_eq!(r.ppb(), ppb, "{s}");
        assert_eq!(r.to_string(), shown, "{s}");
    }
    for bad in ["101%", "-1%", "x", "2", ""] {
        assert!(bad.parse::<Rate>().is_err(), "{bad}");
    }
    let f: Faults = serde_json::from_value(json!({"errors": {"rate": 0.5}})).unwrap();
    assert_eq!(f.errors.rate.to_string(), "50%");
    // What is shown is what is read back.
    let back: Faults = serde_json::from_value(serde_json::to_value(&f).unwrap()).unwrap();
    assert_eq!(back, f);
}

#[test]
fn lab_merge_patch_and_validation() {
    let f = Faults::default();
    let g = f
        .patched(&json!({"latency": {"base": "120ms", "creep": {"from": "0s", "to": "1s", "over": "1m"}}}))
        .unwrap();
    assert_eq!(g.latency.base, Dur::millis(120));
    assert!(g.latency.creep.is_some());
    // Objects merge; null removes.
    let h = g.patched(&json!({"latency": {"creep": null}})).unwrap();
    assert_eq!(h.latency.base, Dur::millis(120));
    assert_eq!(h.latency.creep, None);
    let h = h.patched(&json!({"latency": null, "build": "v7"})).unwrap();
    assert_eq!(h.latency, Latency::default());
    assert_eq!(h.build, "v7");
    // Errors name the field.
    let cases = [
        (json!({"latncy": 1}), "unknown field `latncy`"),
        (json!({"errors": {"rate": "3"}}), "errors.rate"),
        (json!({"errors": {"status": 99}}), "errors.status: 99"),
        (json!({"hang": "sometimes"}), "hang"),
        (
            json!({"websocket": {"upgrade_status": 101}}),
            "upgrade_status",
        ),
        (
            json!({"latency": {"spikes": {"add": "1s"}}}),
            "needs every, probability or both",
        ),
        (json!({"stale": {"addrs": ["edge-2"]}}), "stale.addrs"),
        (
            json!({"latency": {"creep": {"from": "1s", "to": "2s", "over": "0s"}}}),
            "over",
        ),
    ];
    for (patch, want) in cases {
        let e = f.patched(&patch).unwrap_err();
        assert!(e.contains(want), "{patch}: {e}");
    }
}

#[test]
fn lab_creep_is_linear_then_flat() {
    let c = Creep {
        from: Dur::millis(120),
        to: Dur::millis(209),
        over: Dur::secs(10),
    };
    assert_eq!(c.at(Duration::ZERO), 120 * MS);
    let mid = c.at(Duration::from_secs(5));
    assert!(mid.abs_diff(Duration::from_micros(164_500)) < Duration::from_micros(10));
    assert_eq!(c.at(Duration::from_secs(10)), 209 * MS);
    assert_eq!(c.at(Duration::from_secs(3600)), 209 * MS);
    // Down as well as up.
    let down = Creep {
        from: Dur::secs(1),
        to: Dur::secs(0),
        over: Dur::secs(1),
    };
    assert_eq!(down.at(Duration::from_millis(250)), 750 * MS);
}

/// Counts of the engine's plans over `n` requests.
fn plans(e: &mut Engine, n: u64) -> (u64, u64, Vec<u64>) {
    let local = SocketAddr::from((Ipv4Addr::LOCALHOST, 80));
    let (mut errors, mut spikes, mut bodies) = (0, 0, Vec::new());
    for _ in 0..n {
        match e.plan(local, false, false) {
            Plan::Answer {
                delay, error, body, ..
            } => {
                errors += u64::from(error.is_some());
                spikes += u64::from(delay >= Duration::from_secs(1));
                if error.is_none() {
                    bodies.push(body);
                }
            }
            Plan::Hang => panic!("no hang set"),
        }
    }
    (errors, spikes, bodies)
}

#[test]
fn lab_error_rate_is_exact_and_spread() {
    // Wisembly: 0.0812% of requests failing, then 2.39%.
    let mut e = Engine::new(
        Faults::default()
            .patched(&json!({"errors": {"rate": "2.39%"}}))
            .unwrap(),
    );
    assert_eq!(plans(&mut e, 10_000).0, 239);
    e.set(
        e.faults
            .patched(&json!({"errors": {"rate": "0.0812%"}}))
            .unwrap(),
    );
    assert_eq!(plans(&mut e, 100_000).0, 81);
    // Spread: at 10%, every window of 10 requests holds exactly one error.
    e.set(
        e.faults
            .patched(&json!({"errors": {"rate": "10%"}}))
            .unwrap(),
    );
    for _ in 0..50 {
        assert_eq!(plans(&mut e, 10).0, 1);
    }
    // Spikes every 4th request, counted from when they were set.
    let mut e = Engine::new(
        Faults::default()
            .patched(&json!({"latency": {"spikes": {"every": 4, "add": "1s"}}}))
            .unwrap(),
    );
    assert_eq!(plans(&mut e, 40).1, 10);
    e.set(
        e.faults
            .patched(&json!({"latency": {"spikes": {"probability": 1.0, "every": null}}}))
            .unwrap(),
    );
    assert_eq!(plans(&mut e, 7).1, 7);
    e.set(
        e.faults
            .patched(&json!({"latency": {"spikes": {"probability": "0%"}}}))
            .unwrap(),
    );
    assert_eq!(plans(&mut e, 7).1, 0);
}

#[test]
fn lab_bodies_grow_per_request() {
    let mut e = Engine::new(Faults::default());
    assert_eq!(plans(&mut e, 3).2, [0, 0, 0]);
    let mut f = e.faults.clone();
    f.body = Body {
        bytes: ByteSize(1000),
        growth: ByteSize(500),
    };
    e.set(f);
    assert_eq!(plans(&mut e, 4).2, [1000, 1500, 2000, 2500]);
}

// ---- over the wire -----------------------------------------------------------------------

#[tokio::test]
async fn lab_healthy_target_and_control_api() {
    let lab = lab().await;
    let a = lab.addr();
    let r = get(a, "/anything").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "ok build A\n");
    assert_eq!(r.header("x-build"), Some("A"));
    let v = get(a, "/version").await;
    assert_eq!(v.json(), json!({"build": "A"}));
    assert_eq!(v.header("content-type"), Some("application/json"));

    // Usage, faults, patch, put, delete.
    let usage = get(a, "/_lab").await;
    assert!(usage.text().contains("curl -XPOST"), "{}", usage.text());
    assert_eq!(get(a, "/_lab/faults").await.json()["build"], "A");
    let patched = request(
        a,
        "POST",
        "/_lab/faults",
        r#"{"errors":{"rate":"2.39%","status":503}}"#,
    )
    .await;
    assert_eq!(patched.status, 200, "{}", patched.text());
    assert_eq!(
        patched.json()["errors"],
        json!({"rate": "2.39%", "status": 503})
    );
    assert_eq!(lab.faults().errors.status, 503);
    let bad = request(a, "POST", "/_lab/faults", r#"{"errors":{"rate":"200%"}}"#).await;
    assert_eq!(bad.status, 400);
    assert!(
        bad.json()["error"]
            .as_str()
            .unwrap()
            .contains("errors.rate"),
        "{}",
        bad.text()
    );
    let bad = request(a, "POST", "/_lab/faults", "{not json").await;
    assert_eq!(bad.status, 400);
    let put = request(a, "PUT", "/_lab/faults", r#"{"hang":"writes"}"#).await;
    assert_eq!(put.json()["errors"]["rate"], "0%", "PUT replaces the whole");
    assert_eq!(lab.faults().hang, Hang::Writes);
    assert_eq!(request(a, "DELETE", "/_lab/faults", "").await.status, 200);
    assert_eq!(lab.faults(), Faults::default());
    assert_eq!(get(a, "/_lab/nope").await.status, 404);
    assert_eq!(request(a, "DELETE", "/_lab/stats", "").await.status, 405);

    // The control API is never faulty and never counted as target requests.
    lab.set_hang(Hang::All).set_latency(Duration::from_secs(30));
    let s = get(a, "/_lab/stats").await.json();
    assert_eq!(s["requests"], 2, "{s}");
    assert_eq!(s["by_build"]["A"], 2, "{s}");
    assert!(
        s["per_second"]["connections"]["peak"].as_u64().unwrap() >= 1,
        "{s}"
    );
    let reset = request(a, "POST", "/_lab/stats/reset", "").await.json();
    assert_eq!(reset["requests"], 0);
}

#[tokio::test]
async fn lab_latency_fixed_creep_and_spikes_are_measurable() {
    let lab = lab().await;
    let a = lab.addr();
    let fast = get(a, "/").await.took;

    lab.set_latency(200 * MS);
    let slow = get(a, "/").await;
    println!("healthy {fast:?}, with 200ms latency {:?}", slow.took);
    assert!(slow.took >= 200 * MS);
    assert_eq!(slow.status, 200);

    // The real probe sees it: latency_under 100ms is down, naming what it took.
    let env = Env::new(&[]).unwrap();
    let yaml = format!(
        "request: {{ url: '{}' }}\nexpect: {{ latency_under: 100ms }}",
        lab.url("/")
    );
    let obs = probe_http(&yaml, &env).await;
    assert_down(&obs, "expected under 100ms");
    assert!(reason(&obs).starts_with("took 2"), "{}", reason(&obs));

    // Creep 0 -> 300ms over 600ms (on top of nothing): requests get slower, then stay at
    // 300ms; a request that started at t since the creep was set takes at least creep(t).
    lab.set_latency(Duration::ZERO)
        .set_creep(Duration::ZERO, 300 * MS, 600 * MS);
    let set = Instant::now();
    let mut seen = Vec::new();
    for _ in 0..200 {
        let t = set.elapsed();
        let r = get(a, "/").await;
        let floor = Duration::from_secs_f64(0.3 * (t.as_secs_f64() / 0.6).min(1.0));
        assert!(
            r.took >= floor,
            "started at {t:?}: took {:?} < {floor:?}",
            r.took
        );
        seen.push((t.as_millis(), r.took.as_millis()));
        if t > 600 * MS {
            break;
        }
    }
    println!("creep (start ms, took ms): {seen:?}");
    assert!(seen.len() >= 2, "{seen:?}");
    assert!(seen.last().unwrap().1 >= 300, "{seen:?}");

    // Spikes of 500ms on every 3rd request.
    lab.heal();
    lab.set_spikes_every(3, 500 * MS);
    let mut took = Vec::new();
    for _ in 0..6 {
        took.push(get(a, "/").await.took);
    }
    println!("spikes every 3rd: {took:?}");
    for i in [2, 5] {
        assert!(took[i] >= 500 * MS, "{took:?}");
    }
    let calm = [0, 1, 3, 4].map(|i| took[i]).into_iter().max().unwrap();
    assert!(calm < took[2].min(took[5]), "{took:?}");
}

#[tokio::test]
async fn lab_errors_at_an_exact_rate() {
    let lab = lab().await;
    let a = lab.addr();
    lab.set_error_rate("10%", 503);
    let mut statuses = Vec::new();
    for _ in 0..200 {
        statuses.push(get(a, "/").await.status);
    }
    assert_eq!(statuses.iter().filter(|s| **s == 503).count(), 20);
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 180);
    // Evenly: the 10th, 20th, ... request.
    assert!(
        statuses
            .chunks(10)
            .all(|c| c[9] == 503 && c[..9].iter().all(|s| *s == 200))
    );
    let s = lab.stats();
    assert_eq!((s.requests, s.errors), (200, 20));
    let e = get(a, "/").await;
    assert_eq!(e.header("x-build"), Some("A"));

    // The probe's default expectation (any 2xx) catches one.
    lab.set_error_rate("100%", 502);
    let env = Env::new(&[]).unwrap();
    let obs = probe_http(&format!("request: {{ url: '{}' }}", lab.url("/")), &env).await;
    assert_down(&obs, "status 502");
}

#[tokio::test]
async fn lab_hang_reads_and_never_answers() {
    let lab = lab().await;
    let a = lab.addr();
    lab.set_hang(Hang::All);
    let mut s = send(a, "POST", "/write", "{\"x\":1}").await;
    let mut buf = [0u8; 64];
    let waited = tokio::time::timeout(500 * MS, s.read(&mut buf)).await;
    assert!(waited.is_err(), "answered: {waited:?}");
    let st = lab.stats();
    assert_eq!((st.hangs, st.hanging), (1, 1));

    // The real probe runs out of its deadline waiting.
    let env = Env::new(&[]).unwrap();
    let spec: crate::probe::http::Spec =
        serde_yaml::from_str(&format!("request: {{ url: '{}' }}", lab.url("/"))).unwrap();
    let check = std::sync::Arc::new(spec).build().unwrap();
    let cx = CheckCx {
        env: &env,
        deadline: Instant::now() + 300 * MS,
    };
    let obs = check.check(&cx).await;
    assert_down(&obs, "timed out after");

    // Writes only: reads pass, writes hang (Exalate).
    lab.set_hang(Hang::Writes);
    assert_eq!(get(a, "/read").await.status, 200);
    let mut w = send(a, "PUT", "/write", "x").await;
    assert!(
        tokio::time::timeout(300 * MS, w.read(&mut buf))
            .await
            .is_err()
    );

    // A client that gives up releases its hung request.
    drop((s, w));
    eventually("the hung requests to be released", || {
        lab.stats().hanging <= 1
    })
    .await;
    println!("after the clients left: {:?} hanging", lab.stats().hanging);

    // Off: answered again.
    lab.set_hang(Hang::Off);
    assert_eq!(request(a, "POST", "/write", "x").await.status, 200);
}

#[tokio::test]
async fn lab_bodies_fixed_growing_and_streamed() {
    let lab = lab().await;
    let a = lab.addr();
    lab.set_body(100_000, 50_000);
    let mut sizes = Vec::new();
    for _ in 0..4 {
        let r = get(a, "/users").await;
        assert!(r.body.starts_with(b"ok build A\n"));
        assert_eq!(r.header("content-length"), Some(&*r.body.len().to_string()));
        sizes.push(r.body.len());
    }
    assert_eq!(sizes, [100_000, 150_000, 200_000, 250_000]);
    // /version is never padded.
    assert_eq!(get(a, "/version").await.json(), json!({"build": "A"}));
    let s = lab.stats();
    assert_eq!(s.largest_body, 250_000);
    assert!(s.bytes_sent >= 700_000, "{}", s.bytes_sent);

    // A body far larger than the filler buffer, read as a stream.
    lab.set_body(32 << 20, 0);
    let t = Instant::now();
    let mut conn = send(a, "GET", "/users", "").await;
    let mut total = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = tokio::time::timeout(LIMIT, conn.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        if n == 0 {
            break;
        }
        total += n;
    }
    println!("32 MiB body read in {:?}", t.elapsed());
    assert!(total > 32 << 20 && total < (32 << 20) + 512, "{total}");

    // The probe's max_body refuses it.
    let env = Env::new(&[]).unwrap();
    let yaml = format!(
        "request: {{ url: '{}' }}\nexpect: {{ max_body: 1MiB }}",
        lab.url("/users")
    );
    let obs = probe_http(&yaml, &env).await;
    assert!(!obs.ok, "{obs:?}");
    println!("probe on a 32 MiB body: {}", reason(&obs));
}

#[tokio::test]
async fn lab_version_skew_per_address() {
    let lab = Lab::edges(3).await.unwrap();
    assert_eq!(lab.addrs().len(), 3);
    let port = lab.addr().port();
    assert!(lab.addrs().iter().all(|a| a.port() == port));
    lab.set_builds("A", &["127.0.0.2"], "B");
    let mut builds = Vec::new();
    for a in lab.addrs() {
        let v = get(*a, "/version").await;
        assert_eq!(v.header("x-build"), v.json()["build"].as_str());
        builds.push(v.json()["build"].as_str().unwrap().to_owned());
    }
    assert_eq!(builds, ["A", "B", "A"]);
    assert_eq!(lab.stats().by_build["B"], 1);
    // The websocket upgrade names its edge's build too.
    let stale = lab.addrs()[1];
    let stream = TcpStream::connect(stale).await.unwrap();
    let (_ws, resp) =
        tokio_tungstenite::client_async(format!("ws://{stale}/socket/websocket"), stream)
            .await
            .unwrap();
    assert_eq!(resp.headers()["x-build"], "B");

    // The http probe's edges check names the stale edge.
    let dns = Zone::new()
        .a(
            "edges.test",
            &[1, 2, 3].map(|i| Ipv4Addr::new(127, 0, 0, i)),
        )
        .serve()
        .await;
    let env = Env::new(&[dns]).unwrap();
    let yaml = format!(
        "request: {{ url: 'http://edges.test:{port}/version' }}\nedges: {{ version_header: x-build }}"
    );
    let obs = probe_http(&yaml, &env).await;
    assert_eq!(
        reason(&obs),
        "edges disagree: 127.0.0.1, 127.0.0.3 serve \"A\"; 127.0.0.2 serves \"B\" (stale: 127.0.0.2)"
    );
    let by_body = format!(
        "request: {{ url: 'http://edges.test:{port}/' }}\nedges: {{ version_regex: 'build (\\w+)' }}"
    );
    assert!(reason(&probe_http(&by_body, &env).await).contains("(stale: 127.0.0.2)"));
    // With the port too; then healed.
    lab.set_builds("v2", &[&format!("127.0.0.3:{port}")], "v1");
    assert!(reason(&probe_http(&yaml, &env).await).contains("(stale: 127.0.0.3)"));
    lab.heal();
    assert_up(&probe_http(&yaml, &env).await);
}

fn ws_yaml(lab: &LabHandle, extra: &str) -> String {
    format!(
        "url: '{}'\nphoenix: {{ topic: 'room:lobby' }}\n{extra}",
        lab.ws_url("/socket/websocket")
    )
}

#[tokio::test]
async fn lab_websocket_joins_ok_refused_slow() {
    let lab = lab().await;
    assert_up(&probe_ws(&ws_yaml(&lab, "")).await);
    // v1 serializer, and an exchange after the join (other events are echoed in a reply).
    let v1 = "phoenix: { topic: 'room:lobby', vsn: 1.0.0 }";
    let yaml = format!("url: '{}'\n{v1}", lab.ws_url("/socket/websocket"));
    assert_up(&probe_ws(&yaml).await);
    let echo = ws_yaml(
        &lab,
        "send: ['[\"1\",\"2\",\"room:lobby\",\"ping\",{\"n\":7}]']\nexpect: { json: { /4/response/n: 7 } }",
    );
    assert_up(&probe_ws(&echo).await);

    lab.refuse_joins(Some("storm"));
    assert_down(
        &probe_ws(&ws_yaml(&lab, "")).await,
        "phoenix join refused: storm",
    );
    lab.refuse_joins(None);

    lab.set_join_delay(300 * MS, Duration::ZERO);
    let obs = probe_ws(&ws_yaml(&lab, "")).await;
    assert_up(&obs);
    println!("slow join: {:?}", phase(&obs, "join"));
    assert!(phase(&obs, "join") >= 300 * MS);
    lab.set_join_delay(Duration::ZERO, Duration::ZERO);

    lab.refuse_upgrades(Some(503));
    assert_down(
        &probe_ws(&ws_yaml(&lab, "")).await,
        "upgrade refused: 503 service unavailable",
    );
    lab.refuse_upgrades(None);

    let s = lab.stats().websockets;
    assert_eq!((s.upgrades, s.upgrades_refused), (6, 1), "{s:?}");
    assert_eq!((s.joins, s.joins_ok, s.joins_refused), (5, 4, 1), "{s:?}");
    eventually("every probe socket to close", || {
        lab.stats().websockets.open == 0
    })
    .await;
}

type Client = tokio_tungstenite::WebSocketStream<TcpStream>;

/// A client that upgrades and joins `room:lobby` (v2); returns it once joined.
async fn join(lab: &LabHandle) -> Client {
    let stream = TcpStream::connect(lab.addr()).await.unwrap();
    let url = lab.ws_url("/socket/websocket?vsn=2.0.0");
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream).await.unwrap();
    ws.send(Message::text(r#"["1","1","room:lobby","phx_join",{}]"#))
        .await
        .unwrap();
    let reply = tokio::time::timeout(LIMIT, ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let v: Value = serde_json::from_str(reply.to_text().unwrap()).unwrap();
    assert_eq!(v[3], "phx_reply");
    assert_eq!(v[4]["status"], "ok", "{v}");
    ws
}

/// What a client sees after a drop: `Some(code)` for a close frame, `None` for a cut.
async fn ended(ws: &mut Client) -> Option<CloseCode> {
    loop {
        match tokio::time::timeout(LIMIT, ws.next())
            .await
            .expect("socket still open")
        {
            Some(Ok(Message::Close(f))) => return f.map(|f| f.code),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return None,
        }
    }
}

#[tokio::test]
async fn lab_drop_all_closes_every_socket_and_counts_reconnects() {
    const N: usize = 20;
    let lab = lab().await;
    let mut clients = futures_util::future::join_all((0..N).map(|_| join(&lab))).await;
    eventually("20 open sockets", || {
        lab.stats().websockets.open == N as u64
    })
    .await;

    assert_eq!(lab.drop_websockets(DropHow::Close), N as u64);
    for ws in &mut clients {
        assert_eq!(ended(ws).await, Some(CloseCode::Away));
    }
    eventually("every socket closed", || lab.stats().websockets.open == 0).await;
    let s = lab.stats().websockets;
    assert_eq!((s.drops, s.dropped), (1, N as u64));
    assert_eq!(s.since_drop.upgrades, 0);

    // The storm: everyone reconnects at once; the lab takes them and counts them.
    let t = Instant::now();
    let mut clients = futures_util::future::join_all((0..N).map(|_| join(&lab))).await;
    println!("{N} rejoins in {:?}", t.elapsed());
    let s = lab.stats();
    assert_eq!(s.websockets.since_drop.upgrades, N as u64);
    assert_eq!(s.websockets.since_drop.joins, N as u64);
    assert!(s.websockets.since_drop.ms.is_some());
    let joins = &s.per_second["joins"];
    assert!(joins.recent.iter().sum::<u64>() >= N as u64, "{joins:?}");
    assert!(joins.peak >= (N / 2) as u64, "{joins:?}");

    // Reset: cut without a close frame.
    assert_eq!(lab.drop_websockets(DropHow::Reset), N as u64);
    for ws in &mut clients {
        assert_eq!(ended(ws).await, None);
    }
    eventually("every socket closed", || lab.stats().websockets.open == 0).await;
    assert_eq!(lab.stats().websockets.dropped, 2 * N as u64);

    // The control API does the same.
    let mut one = join(&lab).await;
    let r = request(lab.addr(), "POST", "/_lab/websockets/drop?how=close", "").await;
    assert_eq!(r.json()["dropped"], 1);
    assert_eq!(ended(&mut one).await, Some(CloseCode::Away));
}

#[tokio::test]
async fn lab_joins_slow_down_as_they_pile_up() {
    let lab = lab().await;
    // 100ms for every join in flight: ten at once wait up to a second.
    lab.set_join_delay(Duration::ZERO, 100 * MS);
    let timed = (0..10).map(|_| async {
        let t = Instant::now();
        let ws = join(&lab).await;
        (t.elapsed(), ws)
    });
    let done = futures_util::future::join_all(timed).await;
    let mut took: Vec<Duration> = done.iter().map(|(t, _)| *t).collect();
    took.sort();
    println!("10 joins at once, 100ms per join in flight: {took:?}");
    assert!(took[0] >= 100 * MS);
    assert!(took[9] >= 300 * MS, "{took:?}");

    // A probe with a burst sees it in its burst phases.
    let obs = probe_ws(&ws_yaml(&lab, "burst: 8")).await;
    assert_up(&obs);
    println!(
        "burst of 8: p50 {:?}, max {:?}",
        phase(&obs, "burst_p50"),
        phase(&obs, "burst_max")
    );
    assert!(phase(&obs, "burst_max") >= 200 * MS);

    // With a bound on each join: the probe's own join (alone, 100ms) passes, the burst's
    // pile-up does not.
    let obs = probe_ws(&ws_yaml(&lab, "burst: 8\njoin_under: 250ms")).await;
    assert!(
        reason(&obs).starts_with("burst: ")
            && reason(&obs).ends_with("(join took longer than 250ms (join_under))"),
        "{}",
        reason(&obs)
    );
}

#[tokio::test]
async fn lab_stops_when_dropped() {
    let lab = lab().await;
    let a = lab.addr();
    lab.set_hang(Hang::All);
    let mut hung = send(a, "GET", "/", "").await;
    eventually("the request to hang", || lab.stats().hanging == 1).await;
    lab.stop();
    // The hung connection is closed, and nothing listens any more.
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(LIMIT, hung.read(&mut buf))
        .await
        .unwrap();
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    let t = Instant::now();
    loop {
        if TcpStream::connect(a).await.is_err() {
            break;
        }
        assert!(t.elapsed() < LIMIT, "still listening");
        tokio::time::sleep(10 * MS).await;
    }
}
