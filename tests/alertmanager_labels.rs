//! What the real `probed` binary tells a real Alertmanager (Debian's prometheus-alertmanager),
//! and what Alertmanager's ordinary rules then do with it.
//!
//! Alertmanager's usual config groups by `[alertname, instance]` and inhibits warnings by
//! criticals `equal: [instance]`: rules made for Prometheus' alerts, where `instance` is the
//! target. probed's alerts carry the probe's target as `instance` (the daemon is
//! `probed_instance` and `location`), so those rules work per target: two targets down are
//! two groups, and one target's critical alert silences a warning about that target only.
//! A degraded incident is `ProbeDegraded`; a resend tells the probe's current reason.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::Daemon;
use support::alertmanager::Alertmanager;

/// Grouped by alert name and target, criticals inhibiting warnings of the same target: the
/// rules of Alertmanager's own example config.
const AM_CONFIG: &str = "\
route:
  receiver: none
  group_by: [alertname, instance]
  group_wait: 1s
receivers:
  - name: none
inhibit_rules:
  - source_matchers: [severity=\"critical\"]
    target_matchers: [severity=\"warning\"]
    equal: [instance]
";

/// The daemon's name and place, as its alerts carry them.
const INSTANCE: &str = "e2e-labels";
const LOCATION: &str = "eu-west";

/// Every alert to Alertmanager, re-sent every second while it fires.
fn daemon_config(am: &Alertmanager) -> String {
    format!(
        "instance: {INSTANCE}\nlocation: {LOCATION}\n\
         notifiers:\n  am: {{ kind: alertmanager, urls: [\"{}\"], resend_every: 1s }}\n\
         routes:\n  - notify: [am]\n",
        am.url()
    )
}

/// The alerts Alertmanager holds (active or suppressed; ended ones are not listed) of
/// probe `probe`.
fn alerts_of(am: &Alertmanager, probe: &str) -> Vec<Value> {
    am.alerts("")
        .into_iter()
        .filter(|a| a["labels"]["probe"] == probe)
        .collect()
}

/// Polls every 50 ms until `cond` holds; panics after `limit` with what Alertmanager holds
/// and both logs.
fn until(
    limit: Duration,
    what: &str,
    am: &Alertmanager,
    d: &Daemon,
    mut cond: impl FnMut() -> bool,
) {
    let t0 = Instant::now();
    while !cond() {
        if t0.elapsed() > limit {
            panic!(
                "timed out after {limit:?} waiting for {what}\nalertmanager holds: {:#}\n\
                 groups: {:#}\nprobed log:\n{}\nalertmanager log (tail):\n{}",
                Value::Array(am.alerts("")),
                Value::Array(am.groups()),
                d.log(),
                tail(&am.log(), 40)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A loopback URL where nothing listens: probes of it are down (connection refused).
fn dead_url(path_and_query: &str) -> (u16, String) {
    let port = support::free_port();
    (port, format!("http://127.0.0.1:{port}{path_and_query}"))
}

/// Two targets down, a critical probe on one and a warning probe on the other: two groups,
/// and the warning stays active (with `instance` = the daemon, as before, one critical
/// alert inhibited every warning the daemon sent). Two probes of one target, critical and
/// warning: one group, and the warning is inhibited by the critical one. The labels are
/// the whole set, the target without its userinfo and query.
#[test]
fn alertmanager_groups_and_inhibits_per_target_not_per_daemon() {
    let am = Alertmanager::start_with(AM_CONFIG);
    let (checkout_port, _) = dead_url("");
    let checkout_url =
        format!("http://shop:s3cr3t-pw@127.0.0.1:{checkout_port}/health?token=t0ken-9#top");
    let (_, search_url) = dead_url("/search");
    // One target, named two ways: its query differs, its instance does not.
    let (cart_port, _) = dead_url("");
    let cart = |q: &str| format!("http://127.0.0.1:{cart_port}/?{q}");
    let probe = |name: &str, url: &str, severity: &str, extra: &str| {
        format!(
            "  - name: {name}\n    kind: http\n    every: 300ms\n    timeout: 250ms\n    \
             request: {{ url: \"{url}\" }}\n    alert: {{ after: 2, severity: {severity} }}\n{extra}"
        )
    };
    let probes = [
        probe(
            "checkout",
            &checkout_url,
            "critical",
            // A probe label named as one of probed's own is kept, renamed.
            "    labels: { team: shop, instance: web-7 }\n",
        ),
        probe("search", &search_url, "warning", ""),
        probe("cart-api", &cart("v=api"), "critical", ""),
        probe("cart-page", &cart("v=page"), "warning", ""),
    ];
    let mut d = Daemon::new(
        &format!("probes:\n{}", probes.concat()),
        &daemon_config(&am),
    );
    d.start();

    until(
        Duration::from_secs(20),
        "the four alerts, cart-page inhibited",
        &am,
        &d,
        || {
            let all = am.alerts("");
            all.len() == 4
                && all.iter().any(|a| {
                    a["labels"]["probe"] == "cart-page" && a["status"]["state"] == "suppressed"
                })
        },
    );
    let one = |probe: &str| {
        let mine = alerts_of(&am, probe);
        assert_eq!(mine.len(), 1, "{probe}: {mine:#?}");
        mine[0].clone()
    };
    let (checkout, search, cart_api, cart_page) = (
        one("checkout"),
        one("search"),
        one("cart-api"),
        one("cart-page"),
    );

    // The whole label set: the target as instance, without userinfo, query or fragment.
    assert_eq!(
        checkout["labels"],
        json!({
            "alertname": "ProbeDown",
            "instance": format!("http://127.0.0.1:{checkout_port}/health"),
            "probed_instance": INSTANCE,
            "location": LOCATION,
            "job": "probed",
            "probe": "checkout",
            "state": "down",
            "severity": "critical",
            "kind": "http",
            "team": "shop",
            "exported_instance": "web-7",
        })
    );
    let text = checkout.to_string();
    for secret in ["s3cr3t-pw", "t0ken-9", "shop:"] {
        assert!(!text.contains(secret), "{secret} in {checkout:#}");
    }
    assert_eq!(
        (
            &cart_api["labels"]["instance"],
            &cart_page["labels"]["instance"]
        ),
        (
            &json!(format!("http://127.0.0.1:{cart_port}/")),
            &json!(format!("http://127.0.0.1:{cart_port}/"))
        )
    );

    // Another target's critical alert does not touch the warning...
    assert_eq!(search["labels"]["severity"], "warning");
    assert_eq!(search["status"]["state"], "active", "{search:#}");
    assert_eq!(search["status"]["inhibitedBy"], json!([]), "{search:#}");
    // ... its own target's does.
    assert_eq!(
        cart_page["status"]["inhibitedBy"],
        json!([cart_api["fingerprint"]]),
        "{cart_page:#}"
    );
    for a in [&checkout, &cart_api] {
        assert_eq!(a["status"]["state"], "active", "{a:#}");
    }

    // Grouped by alertname and target: three groups, the cart's two alerts in one.
    let mut groups: Vec<(String, Vec<String>)> = am
        .groups()
        .iter()
        .map(|g| {
            assert_eq!(g["labels"]["alertname"], "ProbeDown", "{g:#}");
            let mut probes: Vec<String> = g["alerts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["labels"]["probe"].as_str().unwrap().to_owned())
                .collect();
            probes.sort();
            (g["labels"]["instance"].as_str().unwrap().to_owned(), probes)
        })
        .collect();
    groups.sort();
    let mut want = vec![
        (
            format!("http://127.0.0.1:{checkout_port}/health"),
            vec!["checkout".to_owned()],
        ),
        (
            search["labels"]["instance"].as_str().unwrap().to_owned(),
            vec!["search".to_owned()],
        ),
        (
            format!("http://127.0.0.1:{cart_port}/"),
            vec!["cart-api".to_owned(), "cart-page".to_owned()],
        ),
    ];
    want.sort();
    assert_eq!(groups, want);
    assert!(d.stop().success());
}

/// A probe outside its objective (Apdex) pages Alertmanager as `ProbeDegraded`,
/// `state="degraded"`. Down, the same incident is `ProbeDown` and the degraded alert ends.
/// Still down for another reason, the alert's next resend tells the new reason (the
/// annotations are rebuilt every time, not copied from the first page). Up again, it ends.
#[test]
fn a_degraded_incident_is_probe_degraded_and_each_resend_tells_the_reason_now() {
    let rt = support::runtime();
    let lab = support::lab(&rt);
    let am = Alertmanager::start_with(AM_CONFIG);
    let mut d = Daemon::new(
        &format!(
            "probes:\n  - name: slow\n    kind: http\n    every: 200ms\n    timeout: 180ms\n    \
             request: {{ url: \"{}\" }}\n    alert: {{ after: 2, resolve_hold: 0s }}\n    \
             labels: {{ team: core }}\n    \
             slo: {{ apdex: {{ target: 50ms, window: 5m }}, time_scale: 150, min_runs: 5 }}\n",
            lab.url("/")
        ),
        &daemon_config(&am),
    );
    d.start();
    d.wait_state("slow", "up", Duration::from_secs(10));
    // The Apdex window (5m / 150 = 2 s) is covered once the probe ran that long.
    support::wait_for(Duration::from_secs(20), "a covered window", || {
        lab.stats().requests >= 12
    });

    lab.set_latency(Duration::from_millis(120));
    until(
        Duration::from_secs(20),
        "the degraded alert",
        &am,
        &d,
        || {
            alerts_of(&am, "slow")
                .iter()
                .any(|a| a["labels"]["alertname"] == "ProbeDegraded")
        },
    );
    let degraded = alerts_of(&am, "slow");
    assert_eq!(degraded.len(), 1, "{degraded:#?}");
    let l = &degraded[0]["labels"];
    assert_eq!(
        (
            &l["alertname"],
            &l["state"],
            &l["instance"],
            &l["team"],
            &l["job"]
        ),
        (
            &json!("ProbeDegraded"),
            &json!("degraded"),
            &json!(lab.url("/")),
            &json!("core"),
            &json!("probed")
        ),
        "{degraded:#?}"
    );
    let summary = degraded[0]["annotations"]["summary"].as_str().unwrap_or("");
    assert!(
        summary.starts_with("[probed] DEGRADED slow: Apdex"),
        "{summary}"
    );

    // Down: the same incident goes on as ProbeDown; ProbeDegraded ends (ended alerts are
    // not listed).
    lab.set_error_rate("100%", 503);
    until(Duration::from_secs(20), "ProbeDown alone", &am, &d, || {
        let mine = alerts_of(&am, "slow");
        mine.len() == 1 && mine[0]["labels"]["alertname"] == "ProbeDown"
    });
    let down = alerts_of(&am, "slow").remove(0);
    assert_eq!(down["labels"]["state"], "down", "{down:#}");
    assert_eq!(down["status"]["state"], "active", "{down:#}");
    let described = |a: &Value| {
        a["annotations"]["description"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    };
    assert!(described(&down).contains("status 503"), "{down:#}");

    // Still down, now for another reason: no state change, no new incident; the alert (the
    // same fingerprint) is re-sent with the reason as it is now.
    lab.set_error_rate("100%", 500);
    until(
        Duration::from_secs(20),
        "the new reason in a resend",
        &am,
        &d,
        || {
            alerts_of(&am, "slow")
                .iter()
                .any(|a| described(a).contains("status 500"))
        },
    );
    let resent = alerts_of(&am, "slow");
    assert_eq!(resent.len(), 1, "{resent:#?}");
    assert_eq!(resent[0]["fingerprint"], down["fingerprint"]);
    let summary = resent[0]["annotations"]["summary"].as_str().unwrap_or("");
    assert!(
        summary.starts_with("[probed] DOWN slow: status 500"),
        "{summary}"
    );
    assert_eq!(d.probe_state("slow"), "down");
    let incidents: Value =
        serde_json::from_slice(&d.probectl(&["incidents", "--json"]).stdout).unwrap();
    let incidents = incidents["incidents"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        incidents.len(),
        1,
        "one incident throughout: {incidents:#?}"
    );

    // Up again: the incident resolves and Alertmanager holds nothing of it.
    lab.heal();
    until(Duration::from_secs(20), "the resolve", &am, &d, || {
        alerts_of(&am, "slow").is_empty()
    });
    assert!(am.alerts("?active=true").is_empty());
    assert!(d.stop().success());
}
