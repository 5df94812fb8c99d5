//! oVice, August 2022 (`../shared/incidents/ovice-2022-api-outages.txt`): an endpoint that
//! grew slower release by release until it crossed its Apdex target (they settled on
//! Apdex 100 ms), a burst of errors from requests the API could not handle, and responses
//! that grew until pods ran out of memory and were restarted in a loop.
//!
//! Three lab targets, each failing one way, watched by one real `probed` paging over real
//! SMTP:
//!
//! - `calendar`: Apdex T = 100 ms (window 5m, compressed 60x to 5 s). Its latency goes to
//!   250 ms: every run is merely tolerating, the score falls to 0.5, the probe is
//!   `degraded` and pages, while every run still passes.
//! - `api`: a burst of 500s (every request, for as long as it takes to page), then healthy:
//!   down after `after: 3`, and one resolve.
//! - `export`: its body grows by 2 MiB per request, past `max_body: 1MiB` and on to
//!   tens of MiB: down, "response body larger than 1 MiB limit", and the daemon's peak memory stays flat.

use std::time::Duration;

use crate::support::Daemon;
use crate::support::scenario::{Channel, Expect, Scenario, email_route};
use crate::support::smtp::Smtp;
use crate::support::{lab, runtime};

/// The daemon's peak resident memory (VmHWM), in KiB.
fn peak_rss_kib(d: &Daemon) -> u64 {
    let pid = d.child.as_ref().expect("running").id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

#[test]
fn ovice_apdex_error_burst_and_growing_bodies() {
    const MIB: u64 = 1 << 20;
    let rt = runtime();
    let (calendar, api, export) = (lab(&rt), lab(&rt), lab(&rt));
    let smtp = Smtp::start();
    let mut d = Daemon::new(
        &format!(
            "probes:\n\
             - name: calendar\n  kind: http\n  every: 500ms\n  timeout: 450ms\n  public: true\n  title: Calendar\n  \
               request: {{ url: \"{}\" }}\n  \
               slo: {{ apdex: {{ target: 100ms, min: 0.85, window: 5m }}, time_scale: 60, min_runs: 5 }}\n\
             - name: api\n  kind: http\n  every: 200ms\n  timeout: 190ms\n  \
               request: {{ url: \"{}\" }}\n  alert: {{ after: 3 }}\n\
             - name: export\n  kind: http\n  every: 300ms\n  timeout: 290ms\n  \
               request: {{ url: \"{}\" }}\n  expect: {{ max_body: 1MiB }}\n  alert: {{ after: 2 }}\n",
            calendar.url("/api/calendar/subscribe"),
            api.url("/api/spaces"),
            export.url("/api/export"),
        ),
        &email_route(&smtp),
    );
    d.start();
    let mut s = Scenario::new("oVice");
    for p in ["calendar", "api", "export"] {
        d.wait_state(p, "up", Duration::from_secs(20));
    }
    // The Apdex window (5 s compressed) must be covered before it may alert: let the
    // calendar run healthy for a full window first, as it would have in production.
    crate::support::wait_for(Duration::from_secs(30), "a full Apdex window", || {
        let (v, _) = d.status();
        v["probes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "calendar")
            .and_then(|p| p["slo"]["apdex"].as_f64())
            .is_some()
            && calendar.stats().requests >= 12
    });
    let rss_before = peak_rss_kib(&d);
    let email = Channel::Email(&smtp);

    // 1. The calendar endpoint slows past its Apdex target: every run still passes.
    calendar.set_latency(Duration::from_millis(250));
    let slow = s.fault("calendar latency 250 ms (Apdex T 100 ms)");
    s.expect(
        &d,
        &slow,
        Expect {
            what: "Apdex page, runs still passing",
            probe: "calendar",
            event: "trigger",
            on: &email,
            // The Apdex window's own bound: the window (5 s) plus two seconds.
            bound: Duration::from_secs(7),
            says: "DEGRADED calendar: Apdex ",
        },
    );
    assert_eq!(d.probe_state("calendar"), "degraded");
    let metric = |name: &str| crate::support::scenario::metric(&d, name);
    assert_eq!(metric("probed_slo_alert{probe=\"calendar\""), 1.0);
    assert!(metric("probed_slo_apdex{probe=\"calendar\"") < 0.85);
    // The status page says so in its own words: degraded performance, not an outage.
    let (_, _, body) = crate::support::split_response(&crate::support::http_get_blocking(
        &format!("{}/api/v2/summary.json", d.url()),
    ));
    let summary: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(summary["components"][0]["status"], "degraded_performance");
    assert_eq!(summary["incidents"][0]["name"], "Calendar is degraded");
    assert!(
        summary["incidents"][0]["incident_updates"][0]["body"]
            .as_str()
            .unwrap()
            .contains("slower or less reliable than usual")
    );

    // 2. A burst of errors on the API, healed once it has paged.
    api.set_error_rate("100%", 500);
    let burst = s.fault("api answers 500 to everything");
    s.expect(
        &d,
        &burst,
        Expect {
            what: "error burst page",
            probe: "api",
            event: "trigger",
            on: &email,
            // after x every + 2 s
            bound: Duration::from_millis(3 * 200) + Duration::from_secs(2),
            says: "DOWN api: status 500",
        },
    );
    api.heal();
    d.wait_state("api", "up", Duration::from_secs(10));

    // 3. The export grows by 2 MiB per request: past the 1 MiB limit at once, and on.
    export.set_body(2 * MIB, 2 * MIB);
    let grow = s.fault("export body 2 MiB and growing 2 MiB per request");
    s.expect(
        &d,
        &grow,
        Expect {
            what: "oversized body page",
            probe: "export",
            event: "trigger",
            on: &email,
            bound: Duration::from_millis(2 * 300) + Duration::from_secs(2),
            says: "DOWN export: response body larger than 1 MiB limit",
        },
    );
    // Let it grow on to 40 MiB and more per answer, and check the daemon never held it.
    crate::support::wait_for(Duration::from_secs(30), "bodies of 40 MiB", || {
        export.stats().largest_body >= 40 * MIB
    });
    let st = export.stats();
    let rss_after = peak_rss_kib(&d);
    s.note(&format!(
        "export: largest body {} MiB; daemon peak RSS {} MiB before, {} MiB after",
        st.largest_body / MIB,
        rss_before / 1024,
        rss_after / 1024
    ));
    // The http probe reads at most max_body (plus one read buffer) per run: the peak may
    // not grow by anything near one body.
    assert!(
        rss_after < rss_before + 16 * 1024,
        "peak RSS grew from {rss_before} KiB to {rss_after} KiB while bodies were {} MiB",
        st.largest_body / MIB
    );
    assert_eq!(d.probe_state("calendar"), "degraded", "no flapping");

    // The resolve of the api incident arrived, and is not a page.
    smtp.wait(Duration::from_secs(10), "the api resolve", |m| {
        m.iter().any(|m| m.contains("RESOLVED api"))
    });
    s.finish(&[&email]);
    assert_eq!(d.stop().code(), Some(0));
}
