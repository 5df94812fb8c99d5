//! Alertmanager HA for real: the real `probed` binary pages a two-member Alertmanager
//! cluster with gossip on (Debian's prometheus-alertmanager), and one notification comes out
//! per change, however many POSTs the members got.
//!
//! How the cluster dedups (what the test synchronises on): each member groups the alerts it
//! receives on its own (they are not gossiped; that is why probed POSTs to every member). At
//! each flush of a group, the member at position N of the cluster (`alertmanager_peer_position`,
//! members sorted by name) first waits N x `--cluster.peer-timeout`, then looks the group up in
//! its notification log (`alertmanager_nflog_query_duration_seconds_count` counts the look-ups,
//! one per flush here: one receiver, one integration) and sends only what the log does not
//! hold. The member that sends logs it and gossips the entry; the other counts the entry
//! arriving in `alertmanager_nflog_gossip_messages_propagated_total`.
//! `alertmanager_notifications_total` counts sends, before the request goes out.

mod support;

use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};
use support::Daemon;
use support::Target;
use support::alertmanager::{Alertmanager, Gossip};
use support::receiver::{Receiver, Request};

const PROBE: &str = "checkout";
const INSTANCE: &str = "e2e-ha";

/// The cluster's timings. GROUP_INTERVAL must exceed PEER_TIMEOUT (see the resolve below).
const PEER_TIMEOUT: Duration = Duration::from_secs(2);
const GROUP_WAIT: Duration = Duration::from_secs(1);
const GROUP_INTERVAL: Duration = Duration::from_secs(5);

const LOOKUPS: &str = "alertmanager_nflog_query_duration_seconds_count";
const SENT: &str = r#"alertmanager_notifications_total{integration="webhook"}"#;
const GOSSIP_IN: &str = "alertmanager_nflog_gossip_messages_propagated_total";
const POSITION: &str = "alertmanager_peer_position";
const GOT_FIRING: &str = r#"alertmanager_alerts_received_total{status="firing",version="v2"}"#;
const GOT_RESOLVED: &str = r#"alertmanager_alerts_received_total{status="resolved",version="v2"}"#;

/// Everything to the test's webhook receiver. The group is notified `group_wait` after its
/// first alert, then looked at again every `group_interval` (that is when a resolve goes
/// out), and never repeated (`repeat_interval`).
fn am_config(hook: &str) -> String {
    format!(
        "route:\n  receiver: hook\n  group_wait: {}ms\n  group_interval: {}ms\n  repeat_interval: 1h\n\
         receivers:\n  - name: hook\n    webhook_configs:\n      - url: \"{hook}/alertmanager\"\n        send_resolved: true\n",
        GROUP_WAIT.as_millis(),
        GROUP_INTERVAL.as_millis()
    )
}

/// The notifications the cluster sent, with `status` "firing" or "resolved".
fn notifications(hook: &Receiver, status: &str) -> Vec<Request> {
    hook.accepted()
        .into_iter()
        .filter(|r| r.path == "/alertmanager" && r.body["status"] == status)
        .collect()
}

/// Polls `cond` every 20 ms until it holds; panics after `limit` with `what` and `diag()`.
fn until(limit: Duration, what: &str, diag: &dyn Fn() -> String, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        if t0.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for {what}\n{}", diag());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One firing and one resolved notification out of a two-member cluster, each member of
/// which got every POST (the firing one again every second while it fired).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ha_pair_sends_one_firing_and_one_resolved_notification() {
    let started = Instant::now();
    let hook = Receiver::webhook(vec![]).await;
    let gossip = Gossip {
        peer_timeout: PEER_TIMEOUT,
        gossip_interval: Duration::from_millis(50),
        pushpull_interval: Duration::from_secs(1),
    };
    let ams = Alertmanager::start_cluster(2, &am_config(&hook.url()), &gossip);
    let formed = started.elapsed();
    // Who sends first (position 0) and who waits a peer timeout and dedups (position 1).
    let (first, second) = match (ams[0].metric(POSITION), ams[1].metric(POSITION)) {
        (p, q) if p == 0.0 && q == 1.0 => (&ams[0], &ams[1]),
        (p, q) if p == 1.0 && q == 0.0 => (&ams[1], &ams[0]),
        other => panic!("peer positions of a formed pair: {other:?}"),
    };
    let diag = || -> String {
        let mut s = String::new();
        for (name, am) in [("first", first), ("second", second)] {
            let m = |series| am.try_metric(series);
            s.push_str(&format!(
                "{name} ({}): position {:?}, sent {:?}, log look-ups {:?}, log entries gossiped \
                 in {:?}, alerts received firing {:?} resolved {:?}\n",
                am.url(),
                m(POSITION),
                m(SENT),
                m(LOOKUPS),
                m(GOSSIP_IN),
                m(GOT_FIRING),
                m(GOT_RESOLVED),
            ));
            for l in am.log().lines().filter(|l| {
                [
                    "msg=flushing",
                    "Notify success",
                    "Notify for alerts",
                    "level=warn",
                    "level=error",
                ]
                .iter()
                .any(|w| l.contains(w))
            }) {
                s.push_str(&format!("  {l}\n"));
            }
        }
        for r in hook.requests() {
            s.push_str(&format!(
                "webhook got {} {} at {:?}\n",
                r.path, r.text, r.at
            ));
        }
        s
    };

    // A probe on a target that refuses connections, paging both members.
    let mut target = Target::start().await;
    target.off();
    let mut d = Daemon::new(
        &format!(
            "probes:\n  - name: {PROBE}\n    kind: http\n    every: 500ms\n    timeout: 400ms\n    \
             request: {{ url: \"{}\" }}\n    alert: {{ after: 2, recover_after: 1, resolve_hold: 0s }}\n",
            target.url("/")
        ),
        &format!(
            "instance: {INSTANCE}\nnotifiers:\n  am: {{ kind: alertmanager, urls: [\"{}\", \"{}\"], resend_every: 1s }}\n\
             routes:\n  - notify: [am]\n",
            ams[0].url(),
            ams[1].url()
        ),
    );
    d.start();

    // --- firing ---------------------------------------------------------------------------
    until(
        Duration::from_secs(20),
        "the firing notification",
        &diag,
        || !notifications(&hook, "firing").is_empty(),
    );
    let firing_at = notifications(&hook, "firing")[0].at;
    // Both members hold the alert, as one alert with one identity, though each got it
    // several times: probed re-sends it every second while it fires.
    until(
        Duration::from_secs(10),
        "probed's re-sends at both members",
        &diag,
        || ams.iter().all(|am| am.metric(GOT_FIRING) >= 3.0),
    );
    let held: Vec<Value> = ams
        .iter()
        .map(|am| {
            let alerts = am.alerts("");
            assert_eq!(alerts.len(), 1, "{}: {alerts:#?}", am.url());
            assert_eq!(alerts[0]["status"]["state"], "active", "{}", am.url());
            alerts[0].clone()
        })
        .collect();
    assert_eq!(held[0]["labels"], held[1]["labels"]);
    assert_eq!(held[0]["fingerprint"], held[1]["fingerprint"]);

    // The second member's say: it flushes the group when the first does (both got the
    // alert at once), waits PEER_TIMEOUT, then looks the group up in its notification log,
    // where the first member's entry has arrived by gossip, and sends nothing. Its first
    // look-up is that decision; a send would be counted in SENT before the request goes out.
    until(
        GROUP_WAIT + PEER_TIMEOUT + Duration::from_secs(10),
        "the second member to look the group up in its notification log",
        &diag,
        || second.metric(LOOKUPS) >= 1.0,
    );
    assert_eq!(
        (first.metric(SENT), second.metric(SENT)),
        (1.0, 0.0),
        "one firing notification, from the first member:\n{}",
        diag()
    );
    assert!(
        second.metric(GOSSIP_IN) >= 1.0,
        "the first member's log entry never reached the second:\n{}",
        diag()
    );
    let firing = notifications(&hook, "firing");
    assert_eq!(
        firing.len(),
        1,
        "exactly one firing notification:\n{}",
        diag()
    );

    // The notification carries probed's identity of the incident: the label set, the same
    // on every POST of it (Alertmanager's identity: the fingerprint), and the dedup key.
    // `instance` is the target; the daemon is `probed_instance` and `location` (which
    // defaults to the instance name).
    let n = &firing[0].body;
    assert_eq!(n["alerts"].as_array().map(Vec::len), Some(1), "{n:#}");
    let a = &n["alerts"][0];
    assert_eq!(
        a["labels"],
        json!({
            "alertname": "ProbeDown",
            "instance": target.url("/"),
            "probed_instance": INSTANCE,
            "location": INSTANCE,
            "job": "probed",
            "probe": PROBE,
            "state": "down",
            "severity": "critical",
            "kind": "http",
        }),
        "{n:#}"
    );
    assert_eq!(a["fingerprint"], held[0]["fingerprint"], "{n:#}");
    let incidents: Value =
        serde_json::from_slice(&d.probectl(&["incidents", "--json"]).stdout).unwrap();
    let incident = incidents["incidents"][0]["id"]
        .as_i64()
        .expect("an incident");
    let key = a["annotations"]["dedup_key"].as_str().unwrap_or_default();
    assert!(
        key.starts_with(&format!("probed-{INSTANCE}-")) && key.ends_with(&format!("-{incident}")),
        "dedup key {key:?} of incident {incident}: {n:#}"
    );

    // --- resolved -------------------------------------------------------------------------
    // The resolve goes out at the group's next flush. Alertmanager's HA is at least once: a
    // resolve that reaches one member just before a flush and the other just after (the
    // members' flushes are milliseconds apart) leaves the second member with a stale,
    // still-firing flush whose look-up, PEER_TIMEOUT later, finds the first member's
    // resolved entry, so it sends a second "firing" and later a second "resolved". That is
    // Alertmanager's race, not probed's. The flushes come every GROUP_INTERVAL after the
    // first (when the firing notification arrived), so the test heals the target between
    // 0.3s and GROUP_INTERVAL - 1.5s into an interval: the resolve, a probe interval (0.5s)
    // and a send after the heal, then lands clear of both members' flushes.
    let since = |t: SystemTime| SystemTime::now().duration_since(t).unwrap_or_default();
    let phase = |t: SystemTime| {
        Duration::from_nanos((since(t).as_nanos() % GROUP_INTERVAL.as_nanos()) as u64)
    };
    let (lo, hi) = (
        Duration::from_millis(300),
        GROUP_INTERVAL - Duration::from_millis(1500),
    );
    let p = phase(firing_at);
    if p < lo {
        tokio::time::sleep(lo - p).await;
    } else if p > hi {
        tokio::time::sleep(GROUP_INTERVAL - p + lo).await;
    }
    target.on().await;
    until(
        Duration::from_secs(10),
        "the resolve at both members",
        &diag,
        || ams.iter().all(|am| am.metric(GOT_RESOLVED) >= 1.0),
    );
    let resolve_phase = phase(firing_at);
    let diag = || {
        format!(
            "the resolve was seen at both {resolve_phase:?} into a group interval\n{}",
            diag()
        )
    };
    until(
        GROUP_INTERVAL + PEER_TIMEOUT + Duration::from_secs(10),
        "the resolved notification",
        &diag,
        || !notifications(&hook, "resolved").is_empty(),
    );
    // The first member sent it at a flush; the second flushed then too and looks the group
    // up PEER_TIMEOUT later. Its look-up for the flush before came PEER_TIMEOUT after that
    // one, so before this flush (GROUP_INTERVAL > PEER_TIMEOUT): the count read now, as the
    // notification lands, holds every look-up but this flush's, and the next one is the
    // second member's decision on the resolve. (After it the group is empty on both and is
    // flushed no more; reading late would time out here, not pass.)
    let lookups = second.metric(LOOKUPS);
    until(
        PEER_TIMEOUT + Duration::from_secs(10),
        "the second member to look the resolved group up",
        &diag,
        || second.metric(LOOKUPS) > lookups,
    );
    assert_eq!(
        (first.metric(SENT), second.metric(SENT)),
        (2.0, 0.0),
        "one resolved notification, from the first member:\n{}",
        diag()
    );
    assert!(
        second.metric(GOSSIP_IN) >= 2.0,
        "the first member's resolved entry never reached the second:\n{}",
        diag()
    );
    let resolved = notifications(&hook, "resolved");
    assert_eq!(
        resolved.len(),
        1,
        "exactly one resolved notification:\n{}",
        diag()
    );
    let r = &resolved[0].body;
    assert_eq!(r["alerts"].as_array().map(Vec::len), Some(1), "{r:#}");
    assert_eq!(r["alerts"][0]["status"], "resolved", "{r:#}");
    assert_eq!(r["alerts"][0]["labels"], a["labels"], "{r:#}");
    assert_eq!(r["alerts"][0]["fingerprint"], a["fingerprint"], "{r:#}");
    assert_eq!(
        r["alerts"][0]["annotations"]["dedup_key"], a["annotations"]["dedup_key"],
        "{r:#}"
    );
    // Seconds after the firing one: no late duplicate of it either.
    assert_eq!(notifications(&hook, "firing").len(), 1, "{}", diag());
    for am in &ams {
        assert!(am.alerts("?active=true").is_empty(), "{}", diag());
    }
    assert!(d.stop().success());
    eprintln!(
        "cluster formed in {formed:?}; the resolve reached both members {resolve_phase:?} into \
         a group interval; whole test {:?}",
        started.elapsed()
    );
}
