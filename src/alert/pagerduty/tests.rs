//! Tests of the PagerDuty notifier: its config, and deliveries against the fake Events
//! API (`super::fake`).

use tokio::time::Instant;

use super::fake::{Answer, FakePagerDuty, IncidentStatus};
use super::*;
use crate::alert::http::fake::{assert_field_errors, dead_addr, permanent, retry};
use crate::alert::testing::alert;

const KEY: &str = "R0UT1NGK3Y0123456789abcdefABCDEF";

fn spec(yaml: &str) -> Spec {
    crate::alert::http::fake::spec(yaml)
}

fn sender_with(base_url: &str, key: &str, timeout: &str) -> Sender {
    let s = spec(&format!(
        "{{ routing_key: '{key}', base_url: '{base_url}', timeout: {timeout} }}"
    ));
    assert_eq!(s.validate(), vec![]);
    s.build(&BuildCx::new().expect("build cx")).expect("build")
}

fn sender(base_url: &str) -> Sender {
    sender_with(base_url, KEY, "5s")
}

// ---- config ----------------------------------------------------------------------------

#[test]
fn validate_reports_every_problem_without_the_key() {
    let good = spec(&format!("{{ routing_key: {KEY} }}"));
    assert_eq!(good.validate(), vec![]);
    assert_eq!(good.base_url, DEFAULT_BASE_URL);
    assert!(good.timeout.is_none());
    let s = good.build(&BuildCx::new().unwrap()).unwrap();
    assert_eq!(s.url, "https://events.pagerduty.com/v2/enqueue");
    assert_eq!(s.timeout(), crate::alert::DEFAULT_SEND_TIMEOUT);
    assert_eq!(s.refresh_every(), None);

    let cases: &[(&str, &[(&str, &str)])] = &[
        ("{ routing_key: '' }", &[("routing_key", "is empty")]),
        ("{ routing_key: '   ' }", &[("routing_key", "is empty")]),
        (
            "{ routing_key: 'abc def' }",
            &[("routing_key", "contains whitespace")],
        ),
        (
            "{ routing_key: k, base_url: 'ftp://x' }",
            &[("base_url", "unsupported url scheme \"ftp\"")],
        ),
        (
            "{ routing_key: k, base_url: 'not a url' }",
            &[("base_url", "invalid url")],
        ),
        (
            "{ routing_key: k, base_url: 'https://h/?a=1' }",
            &[("base_url", "must not have a query")],
        ),
        (
            "{ routing_key: k, timeout: 0s }",
            &[("timeout", "must be more than 0")],
        ),
        (
            "{ routing_key: '', base_url: 'x:', timeout: 0 }",
            &[
                ("routing_key", "is empty"),
                ("base_url", ""),
                ("timeout", "must be more than 0"),
            ],
        ),
    ];
    for (yaml, want) in cases {
        let got = spec(yaml).validate();
        assert_field_errors(yaml, &got, want);
        for g in &got {
            assert_eq!(g.message, g.message.to_lowercase(), "{yaml}: lower-case");
        }
    }
    let e = spec("{ routing_key: 'sec ret' }").validate();
    assert!(!format!("{e:?}").contains("sec ret"));
    assert!(
        spec("{ routing_key: '' }")
            .build(&BuildCx::new().unwrap())
            .is_err()
    );
    let unknown = serde_yaml::from_str::<Spec>("{ routing_key: k, severity_map: {} }");
    assert!(unknown.is_err());
    let debug = format!("{:?}", spec(&format!("{{ routing_key: {KEY} }}")));
    assert!(!debug.contains(KEY), "{debug}");
}

#[test]
fn events_carry_what_the_api_asks_for() {
    let s = sender("http://127.0.0.1:9");
    let ev = s.event(&alert(Event::Trigger));
    assert_eq!(
        ev,
        json!({
            "routing_key": KEY,
            "event_action": "trigger",
            "dedup_key": "probed-test-42",
            "payload": {
                "summary": "[probed] DOWN api-write: status 503, expected 200, 201",
                "source": "probed-test",
                "severity": "critical",
                "timestamp": "2023-11-14T22:14:20.000Z",
                "component": "api-write",
                "group": "API",
                "class": "http",
                "custom_details": {
                    "reason": "status 503, expected 200, 201",
                    "labels": {"team": "core"},
                    "opened_at": "2023-11-14T22:13:20.000Z",
                    "event": "trigger",
                    "incident": 42,
                    "state": "down",
                },
            },
            "client": "probed",
            "client_url": "http://probed.example/status#api-write",
            "links": [{"href": "http://probed.example/status#api-write", "text": "probed status"}],
        })
    );
    for (event, action) in [
        (Event::Reminder, "trigger"),
        (Event::Escalation, "trigger"),
        (Event::Test, "trigger"),
    ] {
        let ev = s.event(&alert(event));
        assert_eq!(ev["event_action"], action, "{event:?}");
        assert!(ev["payload"].is_object(), "{event:?}");
    }
    for (event, action) in [
        (Event::Acknowledge, "acknowledge"),
        (Event::Resolve, "resolve"),
    ] {
        assert_eq!(
            s.event(&alert(event)),
            json!({"routing_key": KEY, "event_action": action, "dedup_key": "probed-test-42"}),
        );
    }
    let mut a = alert(Event::Trigger);
    (a.link, a.group) = (None, None);
    let ev = s.event(&a);
    assert!(ev.get("links").is_none() && ev.get("client_url").is_none());
    assert!(ev["payload"].get("group").is_none());
}

#[test]
fn severities_map_to_pagerduty_levels() {
    for (ours, theirs) in [
        ("critical", "critical"),
        ("error", "error"),
        ("warning", "warning"),
        ("info", "info"),
        ("WARNING", "warning"),
        ("page", "critical"),
        ("", "critical"),
    ] {
        assert_eq!(severity(ours), theirs, "{ours}");
    }
}

#[test]
fn long_summaries_fit_in_1024_characters() {
    let s = sender("http://127.0.0.1:9");
    let mut a = alert(Event::Trigger);
    a.reason = Some("é€🚨".repeat(1000));
    let ev = s.event(&a);
    let summary = ev["payload"]["summary"].as_str().unwrap();
    assert_eq!(summary.chars().count(), 1024);
    assert!(summary.ends_with("..."));
}

// ---- against the fake ------------------------------------------------------------------

#[tokio::test]
async fn trigger_then_resolve_is_one_resolved_incident() {
    let (url, pd) = FakePagerDuty::start().await;
    let s = sender(&url);
    let d = s.send(&alert(Event::Trigger)).await.expect("trigger");
    assert_eq!(
        d.detail,
        "202 success: Event processed (dedup_key probed-test-42)"
    );
    s.send(&alert(Event::Reminder)).await.expect("reminder");
    s.send(&alert(Event::Resolve)).await.expect("resolve");

    let incidents = pd.incidents();
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    let i = &incidents[0];
    assert_eq!(i.dedup_key, "probed-test-42");
    assert_eq!(i.status, IncidentStatus::Resolved);
    assert_eq!(i.alerts, 2);
    assert_eq!(i.log, ["trigger", "trigger", "resolve"]);
    assert_eq!(
        i.summary,
        "[probed] DOWN api-write: status 503, expected 200, 201"
    );
    assert_eq!(
        (i.source.as_str(), i.severity.as_str()),
        ("probed-test", "critical")
    );

    let reqs = pd.requests();
    assert_eq!(reqs.len(), 3);
    for r in &reqs {
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("POST", "/v2/enqueue")
        );
        assert_eq!(r.headers["content-type"], "application/json");
        assert!(
            r.headers["user-agent"]
                .to_str()
                .unwrap()
                .starts_with("probed/")
        );
        assert_eq!(r.answered, 202);
    }
    assert_eq!(reqs[0].json.as_ref().unwrap()["routing_key"], KEY);
    assert_eq!(
        serde_json::from_slice::<Value>(&reqs[0].body).ok(),
        Some(s.event(&alert(Event::Trigger)))
    );
    assert_eq!(
        reqs[2].json,
        Some(json!({"routing_key": KEY, "event_action": "resolve", "dedup_key": "probed-test-42"}))
    );

    // A new trigger after the resolve opens a new incident, as PagerDuty does.
    s.send(&alert(Event::Trigger)).await.expect("trigger again");
    assert_eq!(pd.incidents().len(), 2);
    assert_eq!(
        pd.incident("probed-test-42").unwrap().status,
        IncidentStatus::Triggered
    );
}

#[tokio::test]
async fn acknowledge_acknowledges() {
    let (url, pd) = FakePagerDuty::start().await;
    let s = sender(&url);
    s.send(&alert(Event::Trigger)).await.expect("trigger");
    s.send(&alert(Event::Acknowledge)).await.expect("ack");
    let i = pd.incident("probed-test-42").unwrap();
    assert_eq!(i.status, IncidentStatus::Acknowledged);
    assert_eq!(i.log, ["trigger", "acknowledge"]);
    let ack = pd.requests()[1].json.clone().unwrap();
    assert!(ack.get("payload").is_none(), "{ack}");
    assert_eq!(ack["event_action"], "acknowledge");
}

#[tokio::test]
async fn server_error_then_success_is_retry_then_one_incident() {
    let (url, pd) = FakePagerDuty::start().await;
    pd.script(Answer::status(500));
    let s = sender(&url);
    let (reason, after) = retry(s.send(&alert(Event::Trigger)).await);
    assert_eq!(
        reason,
        "pagerduty: 500 internal server error: error: Internal Server Error"
    );
    assert_eq!(after, None);
    assert!(pd.incidents().is_empty());
    s.send(&alert(Event::Trigger)).await.expect("second try");
    s.send(&alert(Event::Trigger)).await.expect("a resend");
    let incidents = pd.incidents();
    assert_eq!(incidents.len(), 1, "{incidents:?}");
    assert_eq!(
        pd.requests().iter().map(|r| r.answered).collect::<Vec<_>>(),
        [500, 202, 202]
    );
}

#[tokio::test]
async fn rate_limits_and_outages_are_retried() {
    let (url, pd) = FakePagerDuty::start().await;
    pd.script(Answer::status(429));
    pd.script(Answer::status(429).header("Retry-After", "7"));
    pd.script(Answer::status(502).body("<html><body>Bad Gateway</body></html>"));
    pd.script(Answer::status(503).header("Retry-After", "2"));
    let s = sender(&url);
    let (reason, after) = retry(s.send(&alert(Event::Trigger)).await);
    assert!(
        reason.starts_with("pagerduty: 429 too many requests: throttle event"),
        "{reason}"
    );
    assert_eq!(after, None);
    let (_, after) = retry(s.send(&alert(Event::Trigger)).await);
    assert_eq!(after, Some(Duration::from_secs(7)));
    let (reason, _) = retry(s.send(&alert(Event::Trigger)).await);
    assert_eq!(
        reason,
        "pagerduty: 502 bad gateway: <html><body>Bad Gateway</body></html>"
    );
    let (_, after) = retry(s.send(&alert(Event::Trigger)).await);
    assert_eq!(after, Some(Duration::from_secs(2)));
    assert!(pd.incidents().is_empty());
}

#[tokio::test]
async fn invalid_events_are_permanent_and_never_show_the_key() {
    let (url, pd) = FakePagerDuty::start().await;
    // A key of the wrong length: the fake rejects it as PagerDuty does.
    let short = "short-routing-key-123";
    let s = sender_with(&url, short, "5s");
    let reason = permanent(s.send(&alert(Event::Trigger)).await);
    assert_eq!(
        reason,
        "pagerduty: 400 bad request: invalid event: Event object is invalid \
         (Length of 'routing_key' is incorrect (should be 32 characters))"
    );
    assert!(!reason.contains(short));
    assert!(pd.incidents().is_empty());

    // A gateway that echoes what it was sent: the key is masked.
    pd.script(Answer::status(400).body(format!(
        r#"{{"status":"invalid event","message":"Event object is invalid","errors":["unknown routing_key {KEY}"]}}"#
    )));
    let reason = permanent(sender(&url).send(&alert(Event::Trigger)).await);
    assert!(!reason.contains(KEY), "{reason}");
    assert!(reason.contains("unknown routing_key ***"), "{reason}");

    pd.script(Answer::status(403).body("forbidden"));
    let reason = permanent(sender(&url).send(&alert(Event::Trigger)).await);
    assert_eq!(reason, "pagerduty: 403 forbidden: forbidden");
}

#[tokio::test]
async fn a_hanging_server_is_retried_within_the_timeout() {
    let (url, pd) = FakePagerDuty::start().await;
    pd.set_default(Answer::Hang);
    let s = sender_with(&url, KEY, "300ms");
    let start = Instant::now();
    let (reason, after) = retry(s.send(&alert(Event::Trigger)).await);
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_millis(300 + 700), "{took:?}");
    assert!(reason.starts_with("pagerduty: "), "{reason}");
    assert!(
        reason.contains("no answer within 300ms") || reason.contains("timed out"),
        "{reason}"
    );
    assert_eq!(after, None);
    assert_eq!(pd.wait_for_requests(1).await.len(), 1);
}

#[tokio::test]
async fn an_unreachable_server_is_retried() {
    let addr = dead_addr().await;
    let s = sender(&format!("http://user:pw@{addr}"));
    let (reason, _) = retry(s.send(&alert(Event::Trigger)).await);
    assert!(
        reason.starts_with("pagerduty: connection failed"),
        "{reason}"
    );
    assert!(!reason.contains("pw"), "{reason}");
}

#[tokio::test]
async fn the_fake_checks_events_like_pagerduty() {
    let (url, pd) = FakePagerDuty::start().await;
    let http = BuildCx::new().expect("build cx").http;
    let enqueue = format!("{url}/v2/enqueue");
    let trigger = |summary: Value, severity: &str| {
        json!({"routing_key": KEY, "event_action": "trigger", "dedup_key": "d1",
               "payload": {"summary": summary, "source": "s", "severity": severity}})
    };
    let cases: Vec<(Value, u16, &str)> = vec![
        (trigger(json!("x"), "critical"), 202, "Event processed"),
        (
            trigger(json!(""), "critical"),
            400,
            "'payload.summary' is missing or blank",
        ),
        (
            trigger(json!("x".repeat(1025)), "info"),
            400,
            "'payload.summary' is too long",
        ),
        (
            trigger(json!("x"), "page"),
            400,
            "'payload.severity' is invalid",
        ),
        (
            json!({"routing_key": KEY, "event_action": "trigger", "dedup_key": "d1"}),
            400,
            "'payload' is missing or blank",
        ),
        (
            json!({"routing_key": "k", "event_action": "resolve", "dedup_key": "d1"}),
            400,
            "Length of 'routing_key' is incorrect",
        ),
        (
            json!({"event_action": "resolve", "dedup_key": "d1"}),
            400,
            "'routing_key' is missing or blank",
        ),
        (
            json!({"routing_key": KEY, "event_action": "close", "dedup_key": "d1"}),
            400,
            "'event_action' is invalid",
        ),
        (
            json!({"routing_key": KEY, "event_action": "acknowledge"}),
            400,
            "'dedup_key' is missing or blank",
        ),
        (
            json!({"routing_key": KEY, "event_action": "resolve", "dedup_key": "nope"}),
            202,
            "Event processed",
        ),
    ];
    for (body, status, needle) in cases {
        let r = http.post(&enqueue).json(&body).send().await.unwrap();
        assert_eq!(r.status().as_u16(), status, "{body}");
        let text = r.text().await.unwrap();
        assert!(text.contains(needle), "{body}: {text}");
    }
    let r = http.post(&enqueue).body("{not json").send().await.unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let r = http
        .post(format!("{url}/v2/other"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    // Only the first case opened an incident; the resolve of an unknown key changed
    // nothing.
    let incidents = pd.incidents();
    assert_eq!(incidents.len(), 1);
    assert_eq!(incidents[0].status, IncidentStatus::Triggered);
    assert_eq!(pd.requests().len(), 12);
}
