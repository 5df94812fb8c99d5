//! Wisembly, 16 September 2020 (`../shared/incidents/wisembly-2020-redis-dump-ram.txt`):
//! Redis dumps grew too long (11:43, a "routine" alert), then failed, as Redis's memory
//! ate the backend's RAM; from 12:43 the app slowed from 120 ms to 209 ms and its error
//! rate rose from 0.0812% to 2.39%; the realtime server fell back to long polling; at
//! 14:49 the backend died: a full outage.
//!
//! Replayed against one real `probed` paging over real SMTP:
//!
//! - `sessions-redis` (a real `redis-server`, [`probed::lab::redis::RedisLab`]): dumps slow
//!   down (a bgsave runs past `max_bgsave_in_progress: 1s`), then fail, while memory
//!   headroom shrinks under `min_headroom: 20%`. Expected: its page, well *before* the
//!   hard outage, and only one (the later faults continue the same incident).
//! - `app` (the lab): 120 ms, creeping to 209 ms, errors from 0.0812% to 2.39%, with an
//!   objective (99.9%, the workbook's burn-rate rules) and Apdex (T 150 ms), both
//!   compressed 120x (1h -> 30 s, 5m -> 2.5 s). Expected: one `degraded` page, no
//!   flapping; the hard outage then continues that incident (no second page).
//! - `realtime` (a Phoenix websocket): upgrades refused (the fall back to long polling).
//!   Expected: its page.
//! - `app-api` (the lab): the same error rate with no latency, an objective of 99.9% and the
//!   workbook's rules compressed 300x (1h -> 12 s, 120 runs as at one run every 30 s).
//!   Expected: one burn-rate page.

use std::time::Duration;

use probed::lab::redis::RedisLab;

use crate::support::Daemon;
use crate::support::scenario::{Channel, Expect, Scenario, email_route};
use crate::support::smtp::Smtp;
use crate::support::{lab, runtime};

#[test]
fn wisembly_redis_dumps_slow_degradation_then_outage() {
    let rt = runtime();
    let (app, api, realtime) = (lab(&rt), lab(&rt), lab(&rt));
    // The app at its usual pace: 120 ms, 0.0812% errors (one in 1,232: none in this run).
    app.set_latency(Duration::from_millis(120));
    app.set_error_rate("0.0812%", 500);
    api.set_error_rate("0.0812%", 500);
    let redis = RedisLab::start().expect("redis-server (deploy/test.sh installs it)");
    // 20,000 keys: a dump slowed to 200 us per key lasts about 4 s.
    rt.block_on(redis.populate(20_000, 64)).unwrap();
    let smtp = Smtp::start();
    let mut d = Daemon::new(
        &format!(
            "probes:\n\
             - name: sessions-redis\n  kind: redis\n  every: 500ms\n  timeout: 450ms\n  url: \"{}\"\n  \
               max_bgsave_in_progress: 1s\n  max_bgsave_duration: 2s\n  min_headroom: \"20%\"\n  \
               alert: {{ after: 2 }}\n\
             - name: app\n  kind: http\n  every: 250ms\n  timeout: 240ms\n  \
               request: {{ url: \"{}\" }}\n  alert: {{ after: 3 }}\n  \
               slo: {{ objective: 99.9%, apdex: {{ target: 150ms }}, time_scale: 120 }}\n\
             - name: app-api\n  kind: http\n  every: 100ms\n  timeout: 90ms\n  \
               request: {{ url: \"{}\" }}\n  alert: {{ after: 3 }}\n  \
               slo: {{ objective: 99.9%, time_scale: 300 }}\n\
             - name: realtime\n  kind: websocket\n  every: 500ms\n  timeout: 450ms\n  url: \"{}\"\n  \
               phoenix: {{ topic: \"room:lobby\" }}\n  alert: {{ after: 2 }}\n",
            redis.url(),
            app.url("/api/meetings"),
            api.url("/api/questions"),
            realtime.ws_url("/socket/websocket"),
        ),
        &email_route(&smtp),
    );
    d.start();
    let mut s = Scenario::new("Wisembly");
    for p in ["sessions-redis", "app", "app-api", "realtime"] {
        d.wait_state(p, "up", Duration::from_secs(20));
    }
    let email = Channel::Email(&smtp);

    // 11:43: dumps too long. One dump of ~4 s, past max_bgsave_in_progress (1 s; INFO
    // counts whole seconds, so it shows from 2 s).
    rt.block_on(redis.slow_dumps(Duration::from_micros(200)))
        .unwrap();
    rt.block_on(redis.bgsave()).unwrap();
    let dumps = s.fault("redis dumps slow (a bgsave of ~4 s)");
    let redis_page = s.expect(
        &d,
        &dumps,
        Expect {
            what: "dump page (before the outage)",
            probe: "sessions-redis",
            event: "trigger",
            on: &email,
            // INFO shows the running save from 2 s; then after x every + 2 s.
            bound: Duration::from_secs(2) + Duration::from_millis(2 * 500) + Duration::from_secs(2),
            says: "DOWN sessions-redis: bgsave running for",
        },
    );

    // The burn-rate rules alert only once their long window is covered by runs (1h at
    // time_scale 300: 12 s, 120 runs): let app-api run that long first, as in production.
    crate::support::wait_for(Duration::from_secs(40), "120 runs of app-api", || {
        api.stats().requests >= 125
    });

    // 12:43: the app degrades: 120 -> 209 ms over 8 s, errors to 2.39%. Meanwhile the
    // dumps fail outright and Redis's headroom shrinks: the same redis incident.
    app.set_creep(
        Duration::ZERO,
        Duration::from_millis(89),
        Duration::from_secs(8),
    );
    app.set_error_rate("2.39%", 500);
    api.set_error_rate("2.39%", 500);
    let slow = s.fault("app creeps 120 -> 209 ms; app and API errors 0.0812% -> 2.39%");
    rt.block_on(redis.bgsave_done(Duration::from_secs(20)))
        .unwrap();
    redis.fail_dumps().unwrap();
    rt.block_on(redis.bgsave()).unwrap();
    let used = rt
        .block_on(redis.info())
        .unwrap()
        .num("used_memory_rss")
        .unwrap() as u64;
    rt.block_on(redis.set_maxmemory(used + used / 10)).unwrap();
    s.note(&format!(
        "redis: dumps failing, maxmemory {} MiB over {} MiB used (headroom under 20%)",
        (used + used / 10) >> 20,
        used >> 20
    ));
    s.expect(
        &d,
        &slow,
        Expect {
            what: "Apdex page (latency), no flapping",
            probe: "app",
            event: "trigger",
            on: &email,
            // The burn-rate window's own bound: the fast rule's long window (1h at
            // time_scale 120: 30 s) plus 2 s.
            bound: Duration::from_secs(32),
            says: "DEGRADED app: ",
        },
    );
    assert_eq!(d.probe_state("app"), "degraded");
    // The same errors on the API, without the latency: the burn-rate rules page. 2.39% is
    // one error in 42 runs: one in the 1h window is 8.3x, two are 16.7x, over 14.4x.
    s.expect(
        &d,
        &slow,
        Expect {
            what: "burn-rate page (errors), no flapping",
            probe: "app-api",
            event: "trigger",
            on: &email,
            // The fast rule's long window (1h at time_scale 300: 12 s) plus 2 s.
            bound: Duration::from_secs(14),
            says: "DEGRADED app-api: error budget burning ",
        },
    );

    // 15:09: realtime falls back to long polling: websocket upgrades refused.
    realtime.refuse_upgrades(Some(503));
    let ws = s.fault("realtime refuses websocket upgrades");
    s.expect(
        &d,
        &ws,
        Expect {
            what: "realtime page",
            probe: "realtime",
            event: "trigger",
            on: &email,
            bound: Duration::from_millis(2 * 500) + Duration::from_secs(2),
            says: "DOWN realtime: ",
        },
    );

    // 14:49: the backend dies. The app goes down: the incident opened as degraded goes
    // on, nobody is paged twice.
    app.set_error_rate("100%", 503);
    let outage = s.fault("hard outage: app answers 503");
    let took = d.wait_state("app", "down", Duration::from_secs(10));
    s.note(&format!(
        "app down {:.2}s after the outage",
        took.as_secs_f64()
    ));
    let redis_paged_at = s.fault_time(&dumps) + redis_page.page;
    let lead = s
        .fault_time(&outage)
        .duration_since(redis_paged_at)
        .expect("the dump page came before the outage");
    s.note(&format!(
        "the dump page came {:.2}s before the outage",
        lead.as_secs_f64()
    ));
    // The outage is committed with its incident: one incident for the app, opened as
    // degraded, one page for it queued (a second one would show here before it arrived).
    crate::support::scenario::settle(&d);
    let app_incidents = crate::support::scenario::incidents(&d, "app");
    assert_eq!(app_incidents.len(), 1, "{app_incidents:#?}");
    let deliveries = app_incidents[0]["deliveries"].as_array().unwrap();
    assert_eq!(
        deliveries
            .iter()
            .filter(|x| x["event"] == "trigger")
            .count(),
        1,
        "{deliveries:#?}"
    );
    // The redis probe is still down, now for every reason at once, in one incident.
    let why = d.last_error("sessions-redis");
    s.note(&format!("sessions-redis: {why}"));
    assert!(why.contains("last bgsave failed"), "{why}");
    assert!(why.contains("headroom"), "{why}");
    assert_eq!(
        crate::support::scenario::incidents(&d, "sessions-redis").len(),
        1
    );
    s.finish(&[&email]);
    assert_eq!(d.stop().code(), Some(0));
}
