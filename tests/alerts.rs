//! The alert path end to end: the real `probed` binary, a real SMTP server (aiosmtpd), and
//! local receivers speaking the webhook and PagerDuty Events API shapes.

mod support;

use std::time::Duration;

use support::receiver::{Receiver, Reply};
use support::smtp::Smtp;
use support::{Daemon, Target, wait_for};

const ADMIN: &str = "admin-token-5f4e3d2c1b";
const PD_KEY: &str = "R0UT1NGKEY0123456789abcdefABCDEF";
const HOOK_SECRET: &str = "hook-signing-secret-9a8b7c";

fn probe(name: &str, url: &str) -> String {
    format!(
        "  - name: {name}\n    kind: http\n    every: 500ms\n    timeout: 400ms\n    \
         request: {{ url: \"{url}\" }}\n    alert: {{ after: 2, recover_after: 1, resolve_hold: 0s }}\n"
    )
}

fn daemon(probes: &[String], notifiers_and_routes: &str) -> Daemon {
    Daemon::new(
        &format!("probes:\n{}", probes.concat()),
        &format!(
            "admin_token: {ADMIN}\ninstance: e2e\nalerting: {{ max_attempts: 2, retry_base: 100ms, retry_max: 1s }}\n{notifiers_and_routes}"
        ),
    )
}

/// Down pages through the route (webhook and email) within `after x every` plus a second;
/// recovery sends resolve notices. No secret shows up anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn down_pages_through_the_route_and_recovery_resolves() {
    let mut target = Target::start().await;
    let hook = Receiver::webhook(vec![]).await;
    let smtp = Smtp::start();
    let mut d = daemon(
        &[probe("web", &target.url("/"))],
        &format!(
            "notifiers:\n  hook: {{ kind: webhook, url: \"{}/hook\", secret: {HOOK_SECRET} }}\n  \
             mail: {{ kind: email, smtp: {{ host: 127.0.0.1, port: {}, tls: none }}, from: probed@example.com, to: [oncall@example.com] }}\n\
             routes:\n  - notify: [hook, mail]\n",
            hook.url(),
            smtp.port
        ),
    );
    d.start();
    d.wait_state("web", "up", Duration::from_secs(10));

    target.off();
    let bound = Duration::from_millis(500) * 2 + Duration::from_secs(1);
    let (got, took) = hook.wait_accepted(bound + Duration::from_secs(10), "the trigger", |r| {
        r.iter().any(|r| r.body["event"] == "trigger")
    });
    assert!(took <= bound, "paged after {took:?}, bound {bound:?}");
    let trigger = got.iter().find(|r| r.body["event"] == "trigger").unwrap();
    assert_eq!(trigger.body["probe"], "web");
    assert_eq!(trigger.body["state"], "down");
    assert!(trigger.body["reason"].as_str().unwrap().contains("refused"));
    assert!(
        trigger.body["dedup_key"]
            .as_str()
            .unwrap()
            .starts_with("probed-e2e-")
    );
    assert!(
        trigger
            .header("x-probed-signature")
            .unwrap()
            .starts_with("sha256=")
    );
    let (mails, _) = smtp.wait(Duration::from_secs(10), "the email page", |m| !m.is_empty());
    assert!(mails[0].contains("DOWN web"), "{}", mails[0]);
    assert!(mails[0].contains("oncall@example.com"));

    target.on().await;
    hook.wait_accepted(Duration::from_secs(10), "the resolve notice", |r| {
        r.iter()
            .any(|r| r.body["event"] == "resolve" && r.body["state"] == "up")
    });
    smtp.wait(Duration::from_secs(10), "the resolve email", |m| {
        m.iter().any(|m| m.contains("RESOLVED web"))
    });

    // The incident is recorded, resolved, with its deliveries.
    let out = d.probectl(&["incidents", "--all", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let inc = &v["incidents"][0];
    assert_eq!(inc["probe"], "web");
    assert_eq!(inc["state"], "resolved");
    let delivered: Vec<String> = inc["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            format!(
                "{} {} {}",
                d["event"].as_str().unwrap(),
                d["notifier"].as_str().unwrap(),
                d["status"].as_str().unwrap()
            )
        })
        .collect();
    for want in [
        "trigger hook delivered",
        "trigger mail delivered",
        "resolve hook delivered",
        "resolve mail delivered",
    ] {
        assert!(
            delivered.iter().any(|d| d == want),
            "{want} missing: {delivered:?}"
        );
    }
    let table = String::from_utf8_lossy(&d.probectl(&["incidents", "--all"]).stdout).into_owned();
    let status = String::from_utf8_lossy(&d.probectl(&["status", "--json"]).stdout).into_owned();
    assert!(d.stop().success());
    let mut outputs = vec![
        d.log(),
        table,
        status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ];
    outputs.extend(mails);
    outputs.extend(hook.requests().iter().map(|r| r.body.to_string()));
    for o in &outputs {
        for secret in [ADMIN, HOOK_SECRET] {
            assert!(!o.contains(secret), "secret leaked:\n{o}");
        }
    }
}

/// The pager keeps failing: after its retries the fallback (email) delivers, well within a
/// minute, and the failure is on record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_pager_falls_back_to_email() {
    let mut target = Target::start().await;
    target.off();
    let pager = Receiver::start_on(0, Reply::Status(500, r#"{"status":"error"}"#), vec![]).await;
    let smtp = Smtp::start();
    let mut d = daemon(
        &[probe("api", &target.url("/"))],
        &format!(
            "notifiers:\n  pager: {{ kind: pagerduty, routing_key: {PD_KEY}, base_url: \"{}\" }}\n  \
             mail: {{ kind: email, smtp: {{ host: 127.0.0.1, port: {}, tls: none }}, from: probed@example.com, to: [oncall@example.com] }}\n\
             routes:\n  - match: {{ severity: critical }}\n    notify: [pager]\n    fallback: [mail]\n",
            pager.url(),
            smtp.port
        ),
    );
    d.start();
    let (mails, took) = smtp.wait(Duration::from_secs(60), "the fallback email", |m| {
        m.iter().any(|m| m.contains("DOWN api"))
    });
    assert!(took < Duration::from_secs(60));
    assert_eq!(mails.len(), 1, "one page through the fallback");
    assert_eq!(
        pager.requests().len(),
        2,
        "max_attempts: 2 on the pager first"
    );
    let out = d.probectl(&["incidents", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let deliveries = v["incidents"][0]["deliveries"].as_array().unwrap().clone();
    assert_eq!(deliveries[0]["notifier"], "pager");
    assert_eq!(deliveries[0]["status"], "failed");
    assert!(
        deliveries[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("500")
    );
    assert_eq!(deliveries[1]["notifier"], "mail");
    assert_eq!(deliveries[1]["status"], "delivered");
    assert!(d.log().contains("falling back"), "the failure is reported");
    let metrics = support::http_get_blocking(&format!("{}/metrics", d.url()));
    assert!(
        metrics.contains("probed_alert_attempts_failed_total 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("probed_notifier_failure_streak{notifier=\"pager\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("probed_alerts_delivered_total 1"),
        "{metrics}"
    );
    assert!(!d.log().contains(PD_KEY));
    assert!(d.stop().success());
}

/// The pager answers 500, then 202: retried, and it holds one incident.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pager_500_then_202_is_one_incident() {
    let mut target = Target::start().await;
    target.off();
    let pager = Receiver::pagerduty(vec![Reply::Status(500, r#"{"status":"error"}"#)]).await;
    let mut d = daemon(
        &[probe("api", &target.url("/"))],
        &format!(
            "notifiers:\n  pager: {{ kind: pagerduty, routing_key: {PD_KEY}, base_url: \"{}\" }}\n\
             routes:\n  - notify: [pager]\n",
            pager.url()
        ),
    );
    d.start();
    let (accepted, _) = pager.wait_accepted(Duration::from_secs(20), "the retried trigger", |r| {
        !r.is_empty()
    });
    assert_eq!(accepted[0].body["event_action"], "trigger");
    assert_eq!(pager.requests().len(), 2, "one 500, then the 202");
    assert_eq!(pager.incidents().len(), 1);
    assert!(d.stop().success());
}

/// Killed with -9 while a page is in flight: the restarted daemon delivers it, and the
/// pager still holds a single incident (same dedup key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_send_delivers_after_restart_without_a_second_incident() {
    let mut target = Target::start().await;
    target.off();
    let pager = Receiver::pagerduty(vec![Reply::Hang]).await;
    let mut d = daemon(
        &[probe("db", &target.url("/"))],
        &format!(
            "notifiers:\n  pager: {{ kind: pagerduty, routing_key: {PD_KEY}, base_url: \"{}\", timeout: 30s }}\n\
             routes:\n  - notify: [pager]\n",
            pager.url()
        ),
    );
    d.start();
    wait_for(Duration::from_secs(20), "the page to be in flight", || {
        !pager.requests().is_empty()
    });
    d.kill9();
    assert!(
        pager.accepted().is_empty(),
        "nothing was accepted before the kill"
    );
    d.start();
    let (accepted, _) =
        pager.wait_accepted(Duration::from_secs(20), "the page after restart", |r| {
            !r.is_empty()
        });
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0].body["event_action"], "trigger");
    assert_eq!(
        pager.requests()[0].body["dedup_key"],
        accepted[0].body["dedup_key"],
        "the resend carries the same dedup key"
    );
    assert_eq!(pager.incidents().len(), 1);
    // Still one incident in the daemon too (the probe stayed down across the restart).
    let out = d.probectl(&["incidents", "--all", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["incidents"].as_array().unwrap().len(), 1, "{v}");
    assert!(d.stop().success());
}

/// Acknowledging during escalation stops it: of two incidents opened together, only the
/// unacknowledged one escalates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_stops_escalation() {
    let mut target = Target::start().await;
    target.off();
    let first = Receiver::webhook(vec![]).await;
    let second = Receiver::webhook(vec![]).await;
    let mut d = daemon(
        &[
            probe("acked", &target.url("/a")),
            probe("ignored", &target.url("/b")),
        ],
        &format!(
            "notifiers:\n  first: {{ kind: webhook, url: \"{}\" }}\n  second: {{ kind: webhook, url: \"{}\" }}\n\
             routes:\n  - notify: [first]\n    escalate:\n      - {{ after: 3s, notify: [second] }}\n",
            first.url(),
            second.url()
        ),
    );
    d.start();
    first.wait_accepted(Duration::from_secs(20), "both triggers", |r| {
        r.iter().filter(|r| r.body["event"] == "trigger").count() == 2
    });
    let out = d.probectl(&["incidents", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = v["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["probe"] == "acked")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    // Without the token: refused.
    let out = d.probectl(&["--token", "wrong", "ack", &id.to_string()]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = d.probectl(&["ack", &id.to_string(), "--by", "alice"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Those paged hear of the ack.
    first.wait_accepted(Duration::from_secs(10), "the ack notice", |r| {
        r.iter()
            .any(|r| r.body["event"] == "acknowledge" && r.body["acknowledged_by"] == "alice")
    });
    // The other incident escalates; the acknowledged one does not.
    let (esc, _) =
        second.wait_accepted(Duration::from_secs(20), "the escalation", |r| !r.is_empty());
    assert!(esc.iter().all(|r| r.body["probe"] == "ignored"), "{esc:#?}");
    assert_eq!(esc[0].body["event"], "escalation");
    assert!(d.stop().success());
}

/// A silence mutes pages (the incident still opens); writes need the admin token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_mutes_pages_and_writes_need_the_token() {
    let mut target = Target::start().await;
    let hook = Receiver::webhook(vec![]).await;
    let mut d = daemon(
        &[probe("quiet", &target.url("/"))],
        &format!(
            "notifiers:\n  hook: {{ kind: webhook, url: \"{}\" }}\nroutes:\n  - notify: [hook]\n",
            hook.url()
        ),
    );
    d.start();
    d.wait_state("quiet", "up", Duration::from_secs(10));
    let out = d.probectl(&["--token", "nope", "silence", "quiet", "--for", "1h"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
    // A pattern SQLite's GLOB can never match (an unclosed class) would mute nothing.
    let out = d.probectl(&["silence", "[", "--for", "1h"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("refused (400)"), "{err}");
    assert!(err.contains("\"[\" at 1 is never closed"), "{err}");
    let out = d.probectl(&["silence", "quiet", "--for", "1h", "--reason", "deploy"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    target.off();
    d.wait_state("quiet", "down", Duration::from_secs(10));
    wait_for(Duration::from_secs(10), "the muted incident", || {
        let out = d.probectl(&["incidents", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v["incidents"][0]["muted"]
            .as_str()
            .is_some_and(|m| m.starts_with("silence"))
    });
    // A probe that recovers and fails again meanwhile would page if the silence were
    // ignored; the muted incident has no deliveries at all.
    let out = d.probectl(&["incidents", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["incidents"][0]["deliveries"].as_array().unwrap().len(),
        0,
        "{v}"
    );
    assert!(hook.requests().is_empty());
    assert!(d.stop().success());
}

/// A flapping probe stays one incident with one page; reminders repeat while it is open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flapping_is_one_incident_and_reminders_repeat() {
    let mut target = Target::start().await;
    let hook = Receiver::webhook(vec![]).await;
    let mut d = Daemon::new(
        &format!(
            "probes:\n  - name: flappy\n    kind: http\n    every: 300ms\n    timeout: 250ms\n    \
             request: {{ url: \"{}\" }}\n    alert: {{ after: 1, recover_after: 1, resolve_hold: 1h }}\n",
            target.url("/")
        ),
        &format!(
            "notifiers:\n  hook: {{ kind: webhook, url: \"{}\" }}\nroutes:\n  - notify: [hook]\n    remind_every: 1s\n",
            hook.url()
        ),
    );
    d.start();
    d.wait_state("flappy", "up", Duration::from_secs(10));
    for _ in 0..3 {
        target.off();
        d.wait_state("flappy", "down", Duration::from_secs(10));
        target.on().await;
        d.wait_state("flappy", "up", Duration::from_secs(10));
    }
    target.off();
    hook.wait_accepted(Duration::from_secs(10), "a reminder", |r| {
        r.iter().any(|r| r.body["event"] == "reminder")
    });
    let triggers = hook
        .accepted()
        .iter()
        .filter(|r| r.body["event"] == "trigger")
        .count();
    assert_eq!(triggers, 1, "one page for four bounces");
    // Down four times: one incident, continued three times.
    wait_for(Duration::from_secs(10), "three flaps on record", || {
        let out = d.probectl(&["incidents", "--all", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v["incidents"][0]["flaps"] == 3
    });
    let out = d.probectl(&["incidents", "--all", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["incidents"].as_array().unwrap().len(), 1, "{v}");
    let triggers = hook
        .accepted()
        .iter()
        .filter(|r| r.body["event"] == "trigger")
        .count();
    assert_eq!(triggers, 1, "still one page");
    assert!(d.stop().success());
}

/// A maintenance window in the config mutes pages for the probes it names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_window_mutes_pages() {
    let mut target = Target::start().await;
    target.off();
    let hook = Receiver::webhook(vec![]).await;
    let start = chrono::Utc::now() - chrono::Duration::minutes(5);
    let end = chrono::Utc::now() + chrono::Duration::hours(1);
    let mut d = daemon(
        &[
            probe("in-maint", &target.url("/a")),
            probe("paged", &target.url("/b")),
        ],
        &format!(
            "notifiers:\n  hook: {{ kind: webhook, url: \"{}\" }}\nroutes:\n  - notify: [hook]\n\
             maintenance:\n  - {{ name: migration, probes: [\"in-*\"], start: \"{}\", end: \"{}\" }}\n",
            hook.url(),
            start.to_rfc3339(),
            end.to_rfc3339()
        ),
    );
    d.start();
    let (got, _) = hook.wait_accepted(
        Duration::from_secs(10),
        "the page of the other probe",
        |r| !r.is_empty(),
    );
    assert!(got.iter().all(|r| r.body["probe"] == "paged"), "{got:#?}");
    wait_for(Duration::from_secs(10), "the muted incident", || {
        let out = d.probectl(&["incidents", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v["incidents"].as_array().is_some_and(|l| {
            l.iter().any(|i| {
                i["probe"] == "in-maint"
                    && i["muted"] == "maintenance window \"migration\""
                    && i["deliveries"].as_array().is_some_and(|d| d.is_empty())
            })
        })
    });
    assert!(d.stop().success());
}

/// `probectl test-alert` sends a real test message and says whether it was accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_alert_says_accepted_or_refused() {
    let ok = Receiver::webhook(vec![]).await;
    let refusing = Receiver::start_on(0, Reply::Status(400, r#"{"error":"bad"}"#), vec![]).await;
    let d = daemon(
        &[probe("x", "http://127.0.0.1:9/")],
        &format!(
            "notifiers:\n  good: {{ kind: webhook, url: \"{}\" }}\n  bad: {{ kind: webhook, url: \"{}\" }}\n",
            ok.url(),
            refusing.url()
        ),
    );
    let out = d.probectl(&["test-alert", "good"]);
    let s = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{s}");
    assert!(s.contains("accepted"), "{s}");
    assert_eq!(ok.accepted()[0].body["event"], "test");
    let out = d.probectl(&["test-alert", "bad"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).contains("refused"));
    let out = d.probectl(&["test-alert", "godo"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("did you mean \"good\""));
}

/// Notifier secrets (SMTP password, Twilio token, routing key, webhook secret) never appear
/// in logs, the API, probectl output or the alert text, even when a receiver echoes them
/// back in an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifier_secrets_never_leak() {
    const KEY: &str = "ECHOEDKEY0123456789abcdefABCDEF0";
    const TOKEN: &str = "twilio-token-8d7c6b5a";
    const SMTP_PW: &str = "smtp-password-3e2d1c";
    let mut target = Target::start().await;
    target.off();
    // The pager answers 500 with the routing key in its body; SMS and mail are unreachable.
    let pager = Receiver::start_on(
        0,
        Reply::Status(
            500,
            r#"{"status":"error","message":"bad key ECHOEDKEY0123456789abcdefABCDEF0"}"#,
        ),
        vec![],
    )
    .await;
    let hook = Receiver::webhook(vec![]).await;
    let closed = support::free_port();
    let mut d = daemon(
        &[probe("leaky", &target.url("/"))],
        &format!(
            "notifiers:\n  pager: {{ kind: pagerduty, routing_key: {KEY}, base_url: \"{}\" }}\n  \
             sms: {{ kind: twilio, account_sid: AC0123456789abcdef0123456789abcdef, auth_token: {TOKEN}, \
             from: \"+15550001111\", to: [\"+15550002222\"], base_url: \"http://127.0.0.1:{closed}\" }}\n  \
             mail: {{ kind: email, smtp: {{ host: 127.0.0.1, port: {closed}, tls: none, username: u, password: {SMTP_PW} }}, \
             from: probed@example.com, to: [oncall@example.com] }}\n  \
             hook: {{ kind: webhook, url: \"{}\", secret: {HOOK_SECRET} }}\n\
             routes:\n  - notify: [pager, sms, mail]\n    fallback: [hook]\n",
            pager.url(),
            hook.url()
        ),
    );
    d.start();
    // Every failing channel falls back to the hook: three pages arrive there.
    let (got, _) = hook.wait_accepted(Duration::from_secs(30), "three fallback pages", |r| {
        r.len() >= 3
    });
    let incidents =
        String::from_utf8_lossy(&d.probectl(&["incidents", "--json"]).stdout).into_owned();
    assert!(incidents.contains("\"status\":\"failed\""), "{incidents}");
    let mut outputs = vec![
        incidents,
        String::from_utf8_lossy(&d.probectl(&["incidents"]).stdout).into_owned(),
        String::from_utf8_lossy(&d.probectl(&["status", "--json"]).stdout).into_owned(),
        support::http_get_blocking(&format!("{}/metrics", d.url())),
        support::http_get_blocking(&format!("{}/healthz", d.url())),
        String::from_utf8_lossy(&d.probectl(&["test-alert", "sms"]).stdout).into_owned(),
        String::from_utf8_lossy(&d.probectl(&["test-alert", "mail"]).stdout).into_owned(),
    ];
    outputs.extend(got.iter().map(|r| r.body.to_string()));
    assert!(d.stop().success());
    outputs.push(d.log());
    for o in &outputs {
        for secret in [KEY, TOKEN, SMTP_PW, HOOK_SECRET, ADMIN] {
            assert!(!o.contains(secret), "secret {secret} leaked in:\n{o}");
        }
    }
}

/// The real Alertmanager: the daemon's page shows up in its API as one active alert with
/// our labels, and recovery resolves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_a_real_alertmanager_and_resolves_there() {
    let am = support::alertmanager::Alertmanager::start();
    let mut target = Target::start().await;
    let mut d = daemon(
        &[probe("checkout", &target.url("/"))],
        &format!(
            "notifiers:\n  am: {{ kind: alertmanager, urls: [\"{}\"], resend_every: 1s }}\nroutes:\n  - notify: [am]\n",
            am.url()
        ),
    );
    d.start();
    d.wait_state("checkout", "up", Duration::from_secs(10));
    target.off();
    wait_for(Duration::from_secs(20), "the alert in alertmanager", || {
        am.alerts("?active=true")
            .iter()
            .any(|a| a["labels"]["probe"] == "checkout")
    });
    let alerts = am.alerts("");
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let a = &alerts[0];
    assert_eq!(a["labels"]["alertname"], "ProbeDown");
    assert_eq!(a["labels"]["severity"], "critical");
    // The target is the instance; the daemon is probed_instance.
    assert_eq!(a["labels"]["instance"], target.url("/"));
    assert_eq!(a["labels"]["probed_instance"], "e2e");
    assert_eq!(a["status"]["state"], "active");
    // Re-sent while firing (resend_every: 1s) and still one alert.
    wait_for(Duration::from_secs(10), "a refresh", || {
        let out = d.probectl(&["incidents", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v["incidents"][0]["deliveries"]
            .as_array()
            .is_some_and(|d| d.iter().filter(|d| d["status"] == "delivered").count() >= 2)
    });
    assert_eq!(am.alerts("").len(), 1);
    target.on().await;
    wait_for(Duration::from_secs(20), "the alert to resolve", || {
        !am.alerts("?active=true")
            .iter()
            .any(|a| a["labels"]["probe"] == "checkout")
    });
    assert!(d.stop().success());
}

/// A probe removed from the config (SIGHUP) while its incident is open: the incident
/// closes and those paged hear it resolved, instead of it staying open forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_down_probe_closes_its_incident() {
    let mut target = Target::start().await;
    target.off();
    let hook = Receiver::webhook(vec![]).await;
    let mut d = daemon(
        &[
            probe("doomed", &target.url("/")),
            probe("kept", "http://127.0.0.1:9/"),
        ],
        &format!(
            "notifiers:\n  hook: {{ kind: webhook, url: \"{}\" }}\nroutes:\n  - notify: [hook]\n",
            hook.url()
        ),
    );
    d.start();
    hook.wait_accepted(Duration::from_secs(10), "the trigger", |r| {
        r.iter()
            .any(|r| r.body["probe"] == "doomed" && r.body["event"] == "trigger")
    });
    d.write_probes(&format!(
        "probes:\n{}",
        probe("kept", "http://127.0.0.1:9/")
    ));
    d.signal("HUP");
    hook.wait_accepted(Duration::from_secs(10), "the resolve notice", |r| {
        r.iter()
            .any(|r| r.body["probe"] == "doomed" && r.body["event"] == "resolve")
    });
    assert!(d.stop().success());
}

/// Two daemons watch each other: killing one gets a page from the other, through a real SMTP
/// server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_peer_is_paged_by_the_other() {
    let smtp = Smtp::start();
    let mail = format!(
        "notifiers:\n  mail: {{ kind: email, smtp: {{ host: 127.0.0.1, port: {}, tls: none }}, from: probed@example.com, to: [oncall@example.com] }}\n\
         routes:\n  - notify: [mail]\n",
        smtp.port
    );
    let mut a = Daemon::new("probes: []\n", &format!("instance: probed-a\n{mail}"));
    let mut b = Daemon::new("probes: []\n", &format!("instance: probed-b\n{mail}"));
    a.append_config(&format!(
        "watchdog:\n  peers:\n    - {{ name: b, url: \"http://127.0.0.1:{}\", after: 600ms, every: 200ms }}\n",
        b.port
    ));
    b.append_config(&format!(
        "watchdog:\n  peers:\n    - {{ name: a, url: \"http://127.0.0.1:{}\", after: 600ms, every: 200ms }}\n",
        a.port
    ));
    a.start();
    b.start();
    a.wait_state("peer:b", "up", Duration::from_secs(10));
    b.wait_state("peer:a", "up", Duration::from_secs(10));
    b.kill9();
    let (mails, _) = smtp.wait(Duration::from_secs(20), "the page about b", |m| {
        m.iter().any(|m| m.contains("DOWN peer:b"))
    });
    assert!(
        mails.iter().all(|m| !m.contains("DOWN peer:a")),
        "a is alive: {mails:#?}"
    );
    assert!(mails.iter().any(|m| m.contains("sent by:   probed-a")));
    assert!(a.stop().success());
}

/// `watchdog.alertmanager`: the always-firing `Watchdog` alert is active in a real
/// Alertmanager while the daemon is healthy; once the daemon is unhealthy (a failed reload)
/// the sends stop and Alertmanager ends the alert by itself, which is what the dead man's
/// switch behind it pages on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watchdog_alert_fires_while_healthy_and_ends_when_not() {
    let am = support::alertmanager::Alertmanager::start();
    let target = Target::start().await;
    let mut d = daemon(
        &[probe("web", &target.url("/"))],
        &format!(
            "notifiers:\n  am: {{ kind: alertmanager, urls: [\"{}\"] }}\n\
             watchdog:\n  alertmanager: {{ notify: [am], every: 500ms }}\n",
            am.url()
        ),
    );
    d.start();
    let watchdog = |query: &str| -> Vec<serde_json::Value> {
        am.alerts(query)
            .into_iter()
            .filter(|a| a["labels"]["alertname"] == "Watchdog")
            .collect()
    };
    wait_for(Duration::from_secs(10), "the Watchdog alert", || {
        !watchdog("?active=true").is_empty()
    });
    let a = &watchdog("")[0];
    assert_eq!(a["labels"]["instance"], "e2e");
    assert_eq!(a["labels"]["severity"], "none");
    // Unhealthy: a reload that fails.
    d.write_probes("probes:\n  - name: broken\n    kind: htp\n");
    d.signal("HUP");
    let t0 = std::time::Instant::now();
    wait_for(Duration::from_secs(15), "the Watchdog alert to end", || {
        watchdog("?active=true").is_empty()
    });
    eprintln!(
        "Watchdog alert ended {:?} after the daemon became unhealthy (every 500ms, ends 3 ahead)",
        t0.elapsed()
    );
    assert!(d.log().contains("withholding the Watchdog alert"));
    assert!(d.stop().success());
}
