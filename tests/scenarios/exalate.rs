//! Exalate 2021, replayed: after a database failover reads pass but writes hang; the app's
//! hung writes clog the reverse proxy in front of it, which then hangs on everything; the
//! monitoring that went through that proxy goes blind, and the escalation reaches no one.
//!
//! The cast, all real and on loopback:
//!
//! - the database: a scratch PostgreSQL database ([`PgLab`]); the fault is a session holding
//!   `LOCK TABLE probed_canary IN EXCLUSIVE MODE`: SELECTs pass, INSERTs wait;
//! - the app behind its reverse proxy: the fault lab ([`probed::lab::Lab`]), `hang: writes`
//!   (the app's writes wait on the database), then `hang: all` (the proxy's queues full);
//! - **outside**: a `probed` that is outside the serving path, as DESIGN.md asks: a
//!   `db_write` probe on the database, a read and a write probe of the app through the
//!   proxy, a peer watch on the other daemon's `/healthz`; it pages on-call by email first
//!   (a real SMTP server, aiosmtpd), escalates to the lead by email, and falls back to a
//!   PagerDuty-like pager when a channel keeps failing;
//! - **inside**: a second `probed` placed the way Exalate's monitoring was: it probes the app
//!   through the proxy and its webhook to on-call goes through that proxy too;
//! - the mail relay goes down before the incident, so every email page must fall back.
//!
//! What it shows: the write probe pages at its deadline while reads still pass (the app's
//! read probe stays up, the canary table answers SELECTs, and no canary row lands after the
//! lock); when the proxy hangs on everything, the inside daemon sees it (its incident opens)
//! but none of its pages is accepted anywhere, while the outside daemon keeps paging, and
//! pages about the inside daemon's silence too (its `/healthz` fails on the undelivered
//! page); every page and every escalation reaches the pager through the fallback chain,
//! because the primary (SMTP) is down. No false or duplicate page.
//!
//! Bounds (compressed clock: probes every 400 ms, `after: 2`):
//!
//! - the rule: a page within `after × every + 2 s` of its fault, plus, here, the
//!   fallback: email to a dead relay is refused at once, so the pager gets the page after
//!   `max_attempts` tries and the backoff between them, at most
//!   `Σ_{k=1}^{max_attempts-1} min(retry_base·2^(k-1), retry_max) × 1.2` (±20 % jitter):
//!   200 ms and 400 ms, jittered, is 0.72 s (3.52 s in all);
//! - an escalation: the trigger's bound, plus `escalate.after` (3 s), plus one dispatcher
//!   pass (escalations are looked at least once a second): 7.52 s;
//! - the page about the blind monitor is a chain: the inside daemon's detection
//!   (`after × every`), then its page undelivered for `max_undelivered_age` (1 s) makes its
//!   `/healthz` fail, then the peer watch's `after` (600 ms), then the 2 s of slack and the
//!   fallback: 5.12 s.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use probed::lab::pg::PgLab;
use probed::lab::{Hang, Lab};

use crate::support::receiver::Receiver;
use crate::support::scenario::{Channel, Expect, Scenario};
use crate::support::smtp::Smtp;
use crate::support::{Daemon, http_get_blocking, split_response, wait_for};

const PD_KEY: &str = "EXALATEROUTINGKEY0123456789abcdef";

/// Probes run every `EVERY` and page after `AFTER` failures in a row.
const EVERY: Duration = Duration::from_millis(400);
const TIMEOUT: Duration = Duration::from_millis(350);
const AFTER: u32 = 2;
/// `alerting:` of the outside daemon.
const MAX_ATTEMPTS: u32 = 3;
const RETRY_BASE: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(1);
/// The escalation step and the inside daemon's undelivered-page limit.
const ESCALATE_AFTER: Duration = Duration::from_secs(3);
const MAX_UNDELIVERED: Duration = Duration::from_secs(1);
/// The peer watch: checked every 200 ms, down after 600 ms of failures.
const PEER_EVERY: Duration = Duration::from_millis(200);
const PEER_AFTER: Duration = Duration::from_millis(600);

const LIMIT: Duration = Duration::from_secs(20);

/// The bound for a page sent straight away: `after × every` plus two seconds.
fn direct_bound() -> Duration {
    EVERY * AFTER + Duration::from_secs(2)
}

/// The longest the retries of a failing channel take before its fallback is tried: the
/// backoff after each failed try but the last, at its jittered worst (+20 %). The tries
/// themselves are refused connections (milliseconds).
fn fallback_delay() -> Duration {
    (1..MAX_ATTEMPTS)
        .map(|k| (RETRY_BASE * 2u32.pow(k - 1)).min(RETRY_MAX).mul_f64(1.2))
        .sum()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// JSON from one of a daemon's API paths.
fn api(d: &Daemon, path: &str) -> serde_json::Value {
    let (code, _, body) = split_response(&http_get_blocking(&format!("{}{path}", d.url())));
    assert_eq!(code, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

/// The incident of `probe` opened last, if any.
fn incident(d: &Daemon, probe: &str) -> Option<serde_json::Value> {
    api(d, "/api/v1/incidents?limit=1000")["incidents"]
        .as_array()?
        .iter()
        .find(|i| i["probe"] == probe)
        .cloned()
}

/// An http probe of the app; a POST writes a canary note.
fn http_probe(name: &str, method: &str, url: &str) -> String {
    let body = if method == "POST" {
        ", body: '{\"note\":\"canary\"}', headers: { content-type: application/json }"
    } else {
        ""
    };
    format!(
        "  - name: {name}\n    kind: http\n    every: {}ms\n    timeout: {}ms\n    \
         request: {{ method: {method}, url: \"{url}\"{body} }}\n",
        EVERY.as_millis(),
        TIMEOUT.as_millis()
    )
}

#[test]
fn exalate_writes_hang_the_proxy_clogs_the_monitor_behind_it_goes_blind() {
    let rt = crate::support::runtime();
    let mut db = rt
        .block_on(PgLab::create())
        .expect("a scratch database on the local PostgreSQL (deploy/test.sh starts it)");
    let proxy = rt
        .block_on(Lab::start(&[SocketAddr::from(([127, 0, 0, 1], 0))]))
        .unwrap();
    let pager = rt.block_on(Receiver::pagerduty(vec![]));
    let mut smtp = Smtp::start();
    let alerting = format!(
        "alerting: {{ max_attempts: {MAX_ATTEMPTS}, retry_base: {}ms, retry_max: {}ms }}\n\
         defaults: {{ alert: {{ after: {AFTER}, recover_after: 1, severity: critical }} }}\n",
        RETRY_BASE.as_millis(),
        RETRY_MAX.as_millis()
    );

    // Inside: probes the app through the proxy, pages through the proxy.
    let mut inside = Daemon::new(
        &format!(
            "probes:\n{}",
            http_probe("app-via-proxy", "GET", &proxy.url("/health"))
        ),
        &format!(
            "instance: probed-inside\n{alerting}\
             notifiers:\n  oncall-hook: {{ kind: webhook, url: \"{}\", timeout: 500ms }}\n\
             routes:\n  - notify: [oncall-hook]\n\
             watchdog: {{ max_undelivered_age: {}ms }}\n",
            proxy.url("/hooks/oncall"),
            MAX_UNDELIVERED.as_millis()
        ),
    );
    inside.start();

    // Outside: its own path to the database, the app and on-call.
    let mail = |to: &str| {
        format!(
            "{{ kind: email, smtp: {{ host: 127.0.0.1, port: {}, tls: none }}, \
             from: probed@example.com, to: [{to}] }}",
            smtp.port
        )
    };
    // Plain TCP to the loopback database: a debug build spends ~100 ms building a TLS
    // config for each `sslmode=prefer` connection, most of the second connection's budget
    // for reading while the write hangs.
    let mut outside = Daemon::new(
        &format!(
            "probes:\n  - name: db-write\n    kind: db_write\n    dsn: \"{}?sslmode=disable\"\n    \
             every: {}ms\n    timeout: {}ms\n{}{}",
            db.dsn(),
            EVERY.as_millis(),
            TIMEOUT.as_millis(),
            http_probe("app-read", "GET", &proxy.url("/api/items")),
            http_probe("app-write", "POST", &proxy.url("/api/items")),
        ),
        &format!(
            "instance: probed-outside\n{alerting}\
             notifiers:\n  oncall-mail: {}\n  lead-mail: {}\n  \
             pager: {{ kind: pagerduty, routing_key: {PD_KEY}, base_url: \"{}\" }}\n\
             routes:\n  - notify: [oncall-mail]\n    \
             escalate:\n      - {{ after: {}ms, notify: [lead-mail] }}\n    fallback: [pager]\n\
             watchdog:\n  peers:\n    - {{ name: inside, url: \"{}\", after: {}ms, every: {}ms }}\n",
            mail("oncall@example.com"),
            mail("lead@example.com"),
            pager.url(),
            ESCALATE_AFTER.as_millis(),
            inside.url(),
            PEER_AFTER.as_millis(),
            PEER_EVERY.as_millis()
        ),
    );
    outside.start();
    for p in ["db-write", "app-read", "app-write", "peer:inside"] {
        outside.wait_state(p, "up", LIMIT);
    }
    inside.wait_state("app-via-proxy", "up", LIMIT);

    let mut sc = Scenario::new("exalate");
    // Both paging paths work before the incident: the inside daemon's webhook is accepted
    // (by the proxy), the outside daemon's email by the relay.
    for (d, notifier) in [(&inside, "oncall-hook"), (&outside, "oncall-mail")] {
        let out = d.probectl(&["test-alert", notifier]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "test-alert {notifier}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    smtp.wait(LIMIT, "the test email", |m| m.len() == 1);
    // The relay goes down: from now on every email page has to fall back to the pager.
    smtp.stop();
    sc.note("mail relay down (the primary channel)");
    let canary_rows = rt
        .block_on(db.scalar("SELECT count(*) FROM probed_canary"))
        .unwrap();
    assert!(canary_rows >= 1, "the write probe has written");

    // ---- the failover: reads pass, writes hang; the app's writes hang behind them ------
    rt.block_on(db.lock_writes("probed_canary")).unwrap();
    let db_at = SystemTime::now();
    let db_fault = sc.fault("database: writes hang, reads pass");
    proxy.set_hang(Hang::Writes);
    let writes_fault = sc.fault("proxy: the app's writes hang (waiting on the database)");

    let trigger_bound = direct_bound() + fallback_delay();
    let escalation_bound = trigger_bound + ESCALATE_AFTER + Duration::from_secs(1);
    let pager_ch = Channel::Pager(&pager);
    let email_ch = Channel::Email(&smtp);
    sc.expect(
        &outside,
        &db_fault,
        Expect {
            what: "write probe pages at its deadline, reads passing (mail down: via the pager)",
            probe: "db-write",
            event: "trigger",
            on: &pager_ch,
            bound: trigger_bound,
            says: "; reads still pass (probed_canary read in ",
        },
    );
    sc.expect(
        &outside,
        &writes_fault,
        Expect {
            what: "the app's write probe pages (via the pager)",
            probe: "app-write",
            event: "trigger",
            on: &pager_ch,
            bound: trigger_bound,
            says: "timed out after",
        },
    );

    // Reads still pass: the database answers SELECTs on the locked table at once, and no
    // canary row was written since the lock (writes hang, they are not refused).
    let rows_now = rt
        .block_on(db.scalar("SELECT count(*) FROM probed_canary"))
        .expect("reads pass on the locked table");
    let newest = rt
        .block_on(db.scalar("SELECT max(written_at_ms) FROM probed_canary"))
        .unwrap();
    let db_ms = db_at.duration_since(UNIX_EPOCH).unwrap().as_millis() as i64;
    assert!(
        newest < db_ms,
        "a canary row landed {} ms after the lock",
        newest - db_ms
    );
    sc.note(&format!(
        "database reads pass ({rows_now} canary rows readable), no write landed since the lock"
    ));
    assert_eq!(outside.probe_state("app-read"), "up");
    assert_eq!(inside.probe_state("app-via-proxy"), "up");
    sc.note("the app's reads are up; the inside monitor (reads only) sees nothing wrong");

    // ---- the proxy clogs: everything hangs ------------------------------------------------
    let reads_until_ms = now_ms();
    proxy.set_hang(Hang::All);
    let proxy_fault = sc.fault("proxy: hangs on everything");
    sc.expect(
        &outside,
        &proxy_fault,
        Expect {
            what: "the app's read probe pages (via the pager)",
            probe: "app-read",
            event: "trigger",
            on: &pager_ch,
            bound: trigger_bound,
            says: "timed out after",
        },
    );
    let peer_bound =
        EVERY * AFTER + MAX_UNDELIVERED + PEER_AFTER + Duration::from_secs(2) + fallback_delay();
    sc.expect(
        &outside,
        &proxy_fault,
        Expect {
            what: "the blind monitor is paged about (its page is stuck)",
            probe: "peer:inside",
            event: "trigger",
            on: &pager_ch,
            bound: peer_bound,
            says: "DOWN peer:inside",
        },
    );

    // The inside daemon saw it: its incident is open. Its page went into the proxy and
    // never came out: tried, unanswered, not delivered.
    wait_for(LIMIT, "the inside daemon's page to have failed", || {
        incident(&inside, "app-via-proxy").is_some_and(|i| {
            i["deliveries"]
                .as_array()
                .is_some_and(|d| d.iter().any(|d| d["attempts"].as_i64() >= Some(1)))
        })
    });
    let blind = incident(&inside, "app-via-proxy").unwrap();
    let deliveries = blind["deliveries"].as_array().unwrap();
    assert!(
        deliveries.iter().all(|d| d["status"] != "delivered"),
        "{blind:#}"
    );
    let health = api(&inside, "/api/v1/status")["daemon"].clone();
    assert_eq!(health["healthy"], false, "{health:#}");
    sc.note(&format!(
        "inside monitor: incident opened at {}, its page {} ({}), its own health: {}",
        blind["opened_at"].as_str().unwrap_or("?"),
        deliveries[0]["status"].as_str().unwrap_or("?"),
        deliveries[0]["last_error"].as_str().unwrap_or("-"),
        health["problems"]
    ));

    // Unacknowledged, every incident escalates to the lead, whose mail is down too: the
    // escalations reach the pager through the fallback.
    for (probe, fault, bound) in [
        ("db-write", &db_fault, escalation_bound),
        ("app-write", &writes_fault, escalation_bound),
        ("app-read", &proxy_fault, escalation_bound),
        (
            "peer:inside",
            &proxy_fault,
            peer_bound + ESCALATE_AFTER + Duration::from_secs(1),
        ),
    ] {
        sc.expect(
            &outside,
            fault,
            Expect {
                what: "escalation reaches the fallback",
                probe,
                event: "escalation",
                on: &pager_ch,
                bound,
                says: probe,
            },
        );
    }

    // Reads stayed up while writes were down: every run of the app's read probe between
    // the database fault and the proxy's clog passed.
    let results = api(&outside, "/api/v1/probes/app-read/results?limit=1000");
    let window: Vec<&serde_json::Value> = results["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            let at = r["at_ms"].as_i64().unwrap_or(0);
            at >= db_ms && at < reads_until_ms
        })
        .collect();
    assert!(!window.is_empty(), "no read ran while writes were down");
    assert!(
        window.iter().all(|r| r["ok"] == true),
        "a read failed while only writes hung: {window:#?}"
    );
    sc.note(&format!(
        "{} reads of the app while writes were down, all passed",
        window.len()
    ));

    // Nothing the inside daemon sent reached anyone.
    let from_inside: Vec<_> = pager_ch
        .pages()
        .into_iter()
        .filter(|p| p.dedup_key.contains("probed-inside"))
        .collect();
    assert!(from_inside.is_empty(), "{from_inside:#?}");

    // ---- recovery: the lock goes, the proxy drains -----------------------------------------
    rt.block_on(db.release()).unwrap();
    proxy.heal();
    sc.fault("recovery: lock released, proxy healed");
    // The database and the app recover; the inside daemon stays unhealthy, and so paged:
    // its page was never delivered (its notifier's failure streak is on record until a
    // send works again), which is what someone must look at.
    wait_for(
        LIMIT,
        "the three outside incidents to resolve on the pager",
        || {
            pager
                .accepted()
                .iter()
                .filter(|r| r.body["event_action"] == "resolve")
                .count()
                >= 3
        },
    );
    inside.wait_state("app-via-proxy", "up", LIMIT);
    let resolved: Vec<String> = pager_ch
        .pages()
        .into_iter()
        .filter(|p| p.event == "resolve")
        .map(|p| p.probe)
        .collect();
    sc.note(&format!("resolved on the pager: {resolved:?}"));
    assert!(!resolved.iter().any(|p| p == "peer:inside"), "{resolved:?}");
    assert_eq!(outside.probe_state("peer:inside"), "down");

    let log = outside.log();
    assert!(!log.contains(PD_KEY), "the routing key is in the log");
    assert!(log.contains("falling back"), "the fallback is logged");
    sc.finish(&[&pager_ch, &email_ch]);
    assert!(inside.stop().success());
    assert!(outside.stop().success());
    rt.block_on(db.cleanup());
}
