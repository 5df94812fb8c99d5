//! MURAL 2018 (`../shared/incidents/mural-2018-websocket-reconnect-storm.txt`): after a
//! deploy, some CDN edges kept serving the old bundle; then a load balancer change made
//! every connected client re-establish its websocket at once, the joins slowed down, clients
//! timed out and retried, and the retries made it worse.
//!
//! Replayed on a compressed clock against the real `probed`:
//!
//! 1. Three edges of one site (the lab on 127.0.0.1-3, one port, the name `edges.test`
//!    resolving to all three through a DNS server of the test's own); 300 realtime users
//!    joined on a Phoenix channel, arrived over two seconds.
//! 2. **Fault: 127.0.0.2 serves the stale build.** Expect the skew page naming that edge.
//! 3. **Fault: every websocket is dropped.** The users reconnect at once; each join costs the
//!    server more the more joins are in flight (the lab's join contention), a client gives up
//!    on its join after a second and reconnects at once. Expect the join latency page
//!    (`join_under`), while the daemon's own load at the lab, counted apart by source
//!    address (the storm binds 127.0.0.77), stays at one connection per edge and per probe
//!    per interval however bad the storm gets.
//! 4. The storm subsides (every user back; the clients' connection budget and time are
//!    bounded in any case), the lab heals, both probes recover in their one incident each:
//!    no false page, no second trigger.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use probed::lab::storm::{Reconnect, Storm, StormConfig};
use probed::lab::{DropHow, Lab, LabHandle, Stats};

use crate::support::Daemon;
use crate::support::receiver::Receiver;
use crate::support::scenario::{Channel, Expect, Scenario};
use crate::support::smtp::Smtp;
use probed::lab::dns::Zone;

const PD_KEY: &str = "R0UT1NGKEY0123456789abcdefABCDEF";
/// Compressed interval of both probes.
const EVERY: Duration = Duration::from_millis(300);
const AFTER: u32 = 2;
/// Realtime users.
const USERS: usize = 300;
/// Where the storm comes from; the daemon connects from 127.0.0.1.
const STORM_SOURCE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 77);
const DAEMON_SOURCE: &str = "127.0.0.1";
/// The bound on each wait of the scenario's own (beyond the pages' bounds).
const LIMIT: Duration = Duration::from_secs(20);

/// What the daemon brought to the lab (its source address) since the last reset.
fn daemon_load(s: &Stats) -> (u64, u64, u64, u64, u64, u64) {
    let p = s.by_peer.get(DAEMON_SOURCE).cloned().unwrap_or_default();
    let peak = |k: &str| p.per_second.get(k).map_or(0, |r| r.peak);
    (
        p.connections,
        p.upgrades,
        p.joins,
        peak("connections"),
        peak("upgrades"),
        peak("joins"),
    )
}

#[test]
fn mural_stale_edge_then_reconnect_storm() {
    let rt = crate::support::runtime();
    let edges = [1, 2, 3].map(|i| Ipv4Addr::new(127, 0, 0, i));
    let lab: LabHandle = rt.block_on(Lab::edges(3)).unwrap();
    let port = lab.addr().port();
    let dns = rt.block_on(Zone::new().a("edges.test", &edges).serve());
    let pager = rt.block_on(Receiver::pagerduty(vec![]));
    let smtp = Smtp::start();

    // The realtime service's nature: a join costs 5ms more for every join in flight (its
    // TLS and auth work, as in the postmortem). Calm traffic never notices.
    lab.set_join_delay(Duration::ZERO, Duration::from_millis(5));

    let every = format!("{}ms", EVERY.as_millis());
    let probes = format!(
        "probes:\n\
         \x20 - name: web-edges\n    kind: http\n    every: {every}\n    timeout: 250ms\n    \
         request: {{ url: \"http://edges.test:{port}/version\" }}\n    \
         edges: {{ version_header: x-build }}\n    \
         alert: {{ after: {AFTER}, recover_after: 1 }}\n\
         \x20 - name: realtime-join\n    kind: websocket\n    every: {every}\n    timeout: 280ms\n    \
         url: \"ws://edges.test:{port}/socket/websocket\"\n    \
         phoenix: {{ topic: \"room:lobby\" }}\n    join_under: 150ms\n    \
         alert: {{ after: {AFTER}, recover_after: 1 }}\n"
    );
    let mut d = Daemon::new(
        &probes,
        &format!(
            "instance: mural\n\
             defaults: {{ nameservers: [\"{}\"] }}\n\
             alerting: {{ max_attempts: 3, retry_base: 200ms, retry_max: 1s }}\n\
             notifiers:\n  \
             pager: {{ kind: pagerduty, routing_key: {PD_KEY}, base_url: \"{}\" }}\n  \
             mail: {{ kind: email, smtp: {{ host: 127.0.0.1, port: {}, tls: none }}, \
             from: probed@example.com, to: [oncall@example.com] }}\n\
             routes:\n  - notify: [pager, mail]\n",
            dns,
            pager.url(),
            smtp.port
        ),
    );
    let mut sc = Scenario::new("MURAL 2018");
    d.start();
    d.wait_state("web-edges", "up", LIMIT);
    d.wait_state("realtime-join", "up", LIMIT);

    // The users, arriving over two seconds; each gives up on a join after a second and
    // reconnects at once (no backoff, no jitter: the clients of the postmortem).
    let mut cfg = StormConfig::new(SocketAddr::from((Ipv4Addr::LOCALHOST, port)), USERS);
    cfg.source = Some(STORM_SOURCE.into());
    cfg.reconnect = Reconnect::Immediately;
    cfg.timeout = Duration::from_secs(1);
    cfg.ramp = Duration::from_secs(2);
    // One connect each to arrive, then at most four more: the storm is bounded in count
    // (and in time).
    cfg.max_connects = 5 * USERS as u64;
    cfg.max_duration = Duration::from_secs(15);
    let storm = {
        let _rt = rt.enter();
        Storm::start(cfg).unwrap()
    };
    let joined = rt
        .block_on(storm.until_joined(USERS as u64, LIMIT))
        .unwrap_or_else(|s| panic!("the users did not all join: {s:?}"));
    sc.note(&format!(
        "{USERS} users joined from {STORM_SOURCE} ({}); the daemon's probes are up",
        joined.join
    ));

    let bound = EVERY * AFTER + Duration::from_secs(2);
    let pager_ch = Channel::Pager(&pager);
    let mail_ch = Channel::Email(&smtp);

    // ---- 2. one edge serves the stale bundle ----------------------------------------------
    lab.set_builds("A", &["127.0.0.2"], "B");
    let stale = sc.fault("127.0.0.2 serves the stale build B");
    for on in [&pager_ch, &mail_ch] {
        sc.expect(
            &d,
            &stale,
            Expect {
                what: "skew page names the stale edge",
                probe: "web-edges",
                event: "trigger",
                on,
                bound,
                says: "(stale: 127.0.0.2)",
            },
        );
    }

    // ---- 3. every websocket dropped: the reconnect storm ----------------------------------
    lab.reset_stats();
    let storm_from = Instant::now();
    let storm_t = tokio::time::Instant::now();
    let dropped = lab.drop_websockets(DropHow::Reset);
    let storm_fault = sc.fault(&format!(
        "every websocket dropped ({dropped} open); {USERS} users reconnect at once"
    ));
    for on in [&pager_ch, &mail_ch] {
        sc.expect(
            &d,
            &storm_fault,
            Expect {
                what: "join latency page",
                probe: "realtime-join",
                event: "trigger",
                on,
                bound,
                says: "join took longer than 150ms",
            },
        );
    }

    // The storm lasts until every user is back (or the clients' budget is spent).
    crate::support::wait_for(LIMIT, "the storm to subside", || {
        storm.stats().joined == USERS as u64 || storm.is_over()
    });
    let storm_secs = storm_from.elapsed().as_secs_f64();
    let during = lab.stats();
    let st = storm.stats_since(storm_t);
    let (conns, upgrades, joins, peak_conns, peak_upgrades, peak_joins) = daemon_load(&during);
    let storm_peer = during
        .by_peer
        .get(&STORM_SOURCE.to_string())
        .cloned()
        .unwrap_or_default();
    sc.note(&format!(
        "storm subsided after {storm_secs:.1}s, {} of {USERS} users back: {} reconnects \
         ({} did not connect), {} joins ok, {} refused, {} failed ({} timed out and retried at \
         once), budget left {}; storm joins {}",
        st.joined,
        st.connects - USERS as u64,
        st.connects_failed,
        st.joins_ok - USERS as u64,
        st.joins_refused,
        st.joins_failed,
        st.joins_timed_out,
        st.budget_left,
        st.join
    ));
    sc.note(&format!(
        "lab, from the storm ({STORM_SOURCE}): {} connections, {} joins, peak {} joins/s",
        storm_peer.connections, storm_peer.joins, storm_peer.per_second["joins"].peak
    ));
    sc.note(&format!(
        "lab, from the daemon ({DAEMON_SOURCE}): {conns} connections, {upgrades} upgrades, \
         {joins} joins in {storm_secs:.1}s ({:.1} connections/s, {:.1} joins/s); \
         peak per second: {peak_conns} connections, {peak_upgrades} upgrades, {peak_joins} joins",
        conns as f64 / storm_secs,
        joins as f64 / storm_secs
    ));

    // The daemon's own load is bounded by its schedule, whatever the storm does: per run,
    // one connection to each of the 3 edges and one websocket (one upgrade, one join); at
    // most ceil(1s / every) runs start in one second, one more for a late start.
    let runs_per_sec = 1000u64.div_ceil(EVERY.as_millis() as u64) + 1;
    let per_interval = storm_secs / EVERY.as_secs_f64() + 2.0;
    sc.note(&format!(
        "daemon bound: {} connections, {runs_per_sec} upgrades and joins in any second; \
         {:.0} websocket runs in the storm's {storm_secs:.1}s",
        4 * runs_per_sec,
        per_interval
    ));
    assert!(peak_conns <= 4 * runs_per_sec, "{peak_conns} connections/s");
    assert!(peak_upgrades <= runs_per_sec, "{peak_upgrades} upgrades/s");
    assert!(peak_joins <= runs_per_sec, "{peak_joins} joins/s");
    assert!(
        joins as f64 <= per_interval,
        "{joins} joins in {storm_secs:.1}s"
    );
    assert!(upgrades as f64 <= per_interval);
    assert!(conns as f64 <= 4.0 * per_interval);
    // The storm itself was real: far more joins than the daemon's.
    assert!(storm_peer.joins >= 10 * joins.max(1), "{storm_peer:?}");
    rt.block_on(storm.stop());
    sc.note(&format!("the {USERS} users leave"));

    // ---- 4. healed: both recover, each in its one incident --------------------------------
    lab.heal();
    sc.note("healed: the stale edge refreshed, no more join contention");
    d.wait_state("web-edges", "up", LIMIT);
    d.wait_state("realtime-join", "up", LIMIT);
    // Resolves come after the hold (three intervals); a flap meanwhile continues the same
    // incident. A second incident of either probe would page again under a new dedup key:
    // counted below, one incident per probe.
    pager.wait_accepted(LIMIT, "both resolves", |r| {
        r.iter()
            .filter(|q| q.body["event_action"] == "resolve")
            .count()
            >= 2
    });
    sc.note("both probes up, both incidents resolved");
    let incidents = pager.incidents();
    assert_eq!(incidents.len(), 2, "{incidents:?}");

    sc.finish(&[&pager_ch, &mail_ch]);
    assert_eq!(d.stop().code(), Some(0));
}
