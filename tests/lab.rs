//! The real `probed` binary against the fault lab (`probed::lab`): latency that creeps past
//! an http probe's bound, and a websocket whose joins are refused. Each test waits by
//! polling with a limit, and prints what it measured.

mod support;

use std::time::{Duration, Instant};

use probed::lab::LabHandle;
use support::Daemon;

/// A lab on 127.0.0.1, served by its own runtime (the daemon handle blocks the test thread).
fn lab() -> (tokio::runtime::Runtime, LabHandle) {
    let rt = support::runtime();
    let lab = support::lab(&rt);
    (rt, lab)
}

const LIMIT: Duration = Duration::from_secs(30);

#[test]
fn http_probe_goes_down_when_latency_creeps_past_its_bound() {
    let (_rt, lab) = lab();
    let mut d = Daemon::new(
        &format!(
            "probes:\n  - name: api\n    kind: http\n    every: 500ms\n    timeout: 450ms\n    \
             request: {{ url: \"{}\" }}\n    expect: {{ latency_under: 100ms }}\n    \
             alert: {{ after: 2, recover_after: 1 }}\n",
            lab.url("/api")
        ),
        "",
    );
    d.start();
    d.wait_state("api", "up", LIMIT);

    // oVice: an endpoint slowly getting slower. 0 -> 250ms over 1.5s: past 100ms after
    // 0.6s at the earliest, so the probe cannot be down sooner than that.
    lab.set_creep(
        Duration::ZERO,
        Duration::from_millis(250),
        Duration::from_millis(1500),
    );
    let set = Instant::now();
    d.wait_state("api", "down", LIMIT);
    let took = set.elapsed();
    let why = d.last_error("api");
    println!("down {took:?} after the creep began: {why}");
    assert!(took >= Duration::from_millis(600), "{took:?}");
    assert!(why.contains("expected under 100ms"), "{why}");
    assert!(why.starts_with("took "), "{why}");

    // One attempt per interval, however slow the target: the prober adds no load of its own.
    let s = lab.stats();
    let peak = s.per_second["requests"].peak;
    println!(
        "lab saw {} requests, at most {peak} in one second",
        s.requests
    );
    assert!(
        peak <= 4,
        "{peak} requests in one second from one probe every 500ms"
    );

    lab.heal();
    d.wait_state("api", "up", LIMIT);
    assert_eq!(d.stop().code(), Some(0));
}

#[test]
fn websocket_probe_goes_down_on_refused_joins_and_back_up() {
    let (_rt, lab) = lab();
    let mut d = Daemon::new(
        &format!(
            "probes:\n  - name: realtime\n    kind: websocket\n    every: 500ms\n    timeout: 450ms\n    \
             url: \"{}\"\n    phoenix: {{ topic: \"room:lobby\" }}\n    \
             alert: {{ after: 2, recover_after: 1 }}\n",
            lab.ws_url("/socket/websocket")
        ),
        "",
    );
    d.start();
    d.wait_state("realtime", "up", LIMIT);
    assert!(lab.stats().websockets.joins_ok >= 1);

    lab.refuse_joins(Some("lab: too many joins"));
    d.wait_state("realtime", "down", LIMIT);
    let why = d.last_error("realtime");
    println!("down: {why}");
    assert!(
        why.contains("phoenix join refused: lab: too many joins"),
        "{why}"
    );
    let ws = lab.stats().websockets;
    assert!(ws.joins_refused >= 2, "{ws:?}");

    // Refused at the upgrade instead: still down, for that reason.
    lab.refuse_joins(None).refuse_upgrades(Some(503));
    support::wait_for(LIMIT, "the upgrade refusal to be the reason", || {
        d.last_error("realtime").contains("upgrade refused: 503")
    });

    lab.heal();
    d.wait_state("realtime", "up", LIMIT);
    // The probe closes its sockets: none is left open at the lab.
    support::wait_for(LIMIT, "no socket left open", || {
        lab.stats().websockets.open == 0
    });
    assert_eq!(d.stop().code(), Some(0));
}
