//! Tests of the Twilio notifier: its config, the text it sends, and deliveries against
//! the fake Twilio (`super::fake`).

use super::fake::{Answer, FakeTwilio};
use super::*;
use crate::alert::http::fake::{assert_field_errors, dead_addr, permanent, retry};
use crate::alert::testing::alert;

const SID: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "s3cr3t-auth-token-0123456789";
const FROM: &str = "+15550001111";
const A: &str = "+15550002222";
const B: &str = "+15550003333";

fn spec(yaml: &str) -> Spec {
    crate::alert::http::fake::spec(yaml)
}

fn sender_for(base_url: &str, token: &str, to: &[&str], timeout: &str) -> Sender {
    let s = spec(&format!(
        "{{ account_sid: {SID}, auth_token: '{token}', from: '{FROM}', to: {to:?}, \
           base_url: '{base_url}', timeout: {timeout} }}"
    ));
    assert_eq!(s.validate(), vec![]);
    s.build(&BuildCx::new().expect("build cx")).expect("build")
}

fn sender(base_url: &str, to: &[&str]) -> Sender {
    sender_for(base_url, TOKEN, to, "5s")
}

// ---- config ----------------------------------------------------------------------------

#[test]
fn validate_reports_every_problem_without_the_token() {
    let good = spec(&format!(
        "{{ account_sid: {SID}, auth_token: {TOKEN}, from: '{FROM}', to: ['{A}', '{B}'] }}"
    ));
    assert_eq!(good.validate(), vec![]);
    let s = good.build(&BuildCx::new().unwrap()).unwrap();
    assert_eq!(
        s.url,
        format!("https://api.twilio.com/2010-04-01/Accounts/{SID}/Messages.json")
    );
    assert_eq!(s.timeout(), crate::alert::DEFAULT_SEND_TIMEOUT);
    assert_eq!(s.refresh_every(), None);
    let mg = spec(&format!(
        "{{ account_sid: {SID}, auth_token: t, messaging_service_sid: MG0123456789abcdef0123456789abcdef, to: ['{A}'], timeout: 3s }}"
    ));
    assert_eq!(mg.validate(), vec![]);
    assert_eq!(
        mg.build(&BuildCx::new().unwrap()).unwrap().timeout(),
        Duration::from_secs(3)
    );

    let base = format!("account_sid: {SID}, auth_token: {TOKEN}");
    let cases: Vec<(String, &[(&str, &str)])> = vec![
        (
            format!("{{ account_sid: XY12, auth_token: t, from: '{FROM}', to: ['{A}'] }}"),
            &[("account_sid", "must start with AC")],
        ),
        (
            format!("{{ account_sid: 'AC/../x', auth_token: t, from: '{FROM}', to: ['{A}'] }}"),
            &[("account_sid", "must start with AC")],
        ),
        (
            format!("{{ account_sid: {SID}, auth_token: '', from: '{FROM}', to: ['{A}'] }}"),
            &[("auth_token", "is empty")],
        ),
        (
            format!("{{ {base}, to: ['{A}'] }}"),
            &[("from", "is required (or set messaging_service_sid)")],
        ),
        (
            format!("{{ {base}, from: '{FROM}', messaging_service_sid: MG1, to: ['{A}'] }}"),
            &[("messaging_service_sid", "not both")],
        ),
        (
            format!("{{ {base}, from: '5550001111', to: ['{A}'] }}"),
            &[("from", "\"5550001111\" is not an e.164 number")],
        ),
        (
            format!("{{ {base}, messaging_service_sid: PN123, to: ['{A}'] }}"),
            &[("messaging_service_sid", "must start with MG")],
        ),
        (
            format!("{{ {base}, from: '{FROM}', to: [] }}"),
            &[("to", "needs at least one number")],
        ),
        (
            format!("{{ {base}, from: '{FROM}', to: ['{A}', '+0123', '+1 555', '{A}'] }}"),
            &[
                ("to[1]", "\"+0123\" is not an e.164 number"),
                ("to[2]", "\"+1 555\" is not an e.164 number"),
                ("to[3]", "is listed twice (see to[0])"),
            ],
        ),
        (
            format!("{{ {base}, from: '{FROM}', to: ['{A}'], base_url: 'api.twilio.com' }}"),
            &[("base_url", "invalid url")],
        ),
        (
            format!("{{ {base}, from: '{FROM}', to: ['{A}'], timeout: 0ms }}"),
            &[("timeout", "must be more than 0")],
        ),
        (
            "{ account_sid: '', auth_token: '', to: [] }".to_string(),
            &[
                ("account_sid", "must start with AC"),
                ("auth_token", "is empty"),
                ("from", "is required"),
                ("to", "needs at least one number"),
            ],
        ),
    ];
    for (yaml, want) in &cases {
        let got = spec(yaml).validate();
        assert_field_errors(yaml, &got, want);
        for g in &got {
            assert!(!g.message.contains(TOKEN), "{yaml}");
        }
        assert!(
            spec(yaml).build(&BuildCx::new().unwrap()).is_err(),
            "{yaml}"
        );
    }
    for missing in ["account_sid", "auth_token", "to"] {
        let yaml = format!(
            "{{ {} }}",
            [
                format!("account_sid: {SID}"),
                format!("auth_token: {TOKEN}"),
                format!("from: '{FROM}'"),
                format!("to: ['{A}']"),
            ]
            .into_iter()
            .filter(|f| !f.starts_with(missing))
            .collect::<Vec<_>>()
            .join(", ")
        );
        assert!(serde_yaml::from_str::<Spec>(&yaml).is_err(), "{yaml}");
    }
    assert!(
        serde_yaml::from_str::<Spec>(&format!(
            "{{ {base}, from: '{FROM}', to: ['{A}'], cc: [] }}"
        ))
        .is_err()
    );
    assert!(!format!("{good:?}").contains(TOKEN));
}

// ---- the text --------------------------------------------------------------------------

#[test]
fn texts_are_compact() {
    assert_eq!(
        sms_text(&alert(Event::Trigger)),
        "[probed] DOWN api-write: status 503, expected 200, 201\n\
         since 2023-11-14 22:13 UTC\n\
         http://probed.example/status#api-write"
    );
    assert_eq!(
        sms_text(&alert(Event::Resolve)),
        "[probed] RESOLVED api-write\n\
         down 2m from 2023-11-14 22:13 UTC\n\
         http://probed.example/status#api-write"
    );
    let mut ack = alert(Event::Acknowledge);
    ack.acknowledged_by = Some("alice".into());
    ack.link = None;
    assert_eq!(
        sms_text(&ack),
        "[probed] ACKNOWLEDGED api-write: status 503, expected 200, 201\n\
         acked by alice, since 2023-11-14 22:13 UTC"
    );
    let mut multi = alert(Event::Trigger);
    multi.reason = Some("line one\n\n  line two\t".into());
    assert!(sms_text(&multi).starts_with("[probed] DOWN api-write: line one line two\n"));
}

#[test]
fn long_reasons_are_cut_to_two_segments_on_character_boundaries() {
    for reason in ["x".repeat(2000), "é€🚨ü".repeat(500)] {
        let mut a = alert(Event::Trigger);
        a.reason = Some(reason.clone());
        let text = sms_text(&a);
        let n = text.chars().count();
        assert!(n <= MAX_SMS_CHARS, "{n} characters");
        assert!(n >= MAX_SMS_CHARS - 3, "{n}: the room is used");
        assert!(text.contains("...\nsince 2023-11-14 22:13 UTC\nhttp://probed.example/"));
        assert!(text.starts_with("[probed] DOWN api-write: "));
        // A String is valid UTF-8 by construction; check the cut kept whole characters.
        let kept = text.split("...\n").next().unwrap();
        let kept = kept.strip_prefix("[probed] DOWN api-write: ").unwrap();
        assert!(reason.starts_with(kept));
    }
    let mut a = alert(Event::Trigger);
    a.link = Some(format!("https://probed.example/{}", "p".repeat(400)));
    let text = sms_text(&a);
    assert!(
        !text.contains("https://"),
        "an overlong link is dropped: {text}"
    );
}

// ---- against the fake ------------------------------------------------------------------

#[tokio::test]
async fn every_recipient_gets_the_text_with_the_right_fields_and_auth() {
    let (url, tw) = FakeTwilio::start(SID, TOKEN).await;
    let s = sender(&url, &[A, B]);
    let d = s.send(&alert(Event::Trigger)).await.expect("send");
    let msgs = tw.messages();
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert_eq!(
        d.detail,
        format!(
            "2 sms accepted: {} to {A}, {} to {B}",
            msgs[0].sid, msgs[1].sid
        )
    );
    let text = sms_text(&alert(Event::Trigger));
    for (m, to) in msgs.iter().zip([A, B]) {
        assert_eq!(m.to, to);
        assert_eq!(m.from.as_deref(), Some(FROM));
        assert_eq!(m.body, text);
        assert_eq!(m.num_segments, 1);
    }
    let reqs = tw.requests();
    assert_eq!(reqs.len(), 2);
    for (r, to) in reqs.iter().zip([A, B]) {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, format!("/2010-04-01/Accounts/{SID}/Messages.json"));
        assert_eq!(
            r.headers["content-type"],
            "application/x-www-form-urlencoded"
        );
        assert_eq!(r.basic_auth, Some((SID.to_string(), TOKEN.to_string())));
        assert_eq!(r.field("To"), Some(to));
        assert_eq!(r.field("From"), Some(FROM));
        assert_eq!(r.field("Body"), Some(text.as_str()));
        assert_eq!(r.field("MessagingServiceSid"), None);
        let raw = String::from_utf8(r.body.to_vec()).unwrap();
        assert!(
            raw.starts_with(&format!("To=%2B{}&From=", &to[1..])),
            "{raw}"
        );
        assert_eq!(r.answered, 201);
    }
}

#[tokio::test]
async fn a_messaging_service_replaces_from() {
    let (url, tw) = FakeTwilio::start(SID, TOKEN).await;
    let mg = "MG0123456789abcdef0123456789abcdef";
    let s = spec(&format!(
        "{{ account_sid: {SID}, auth_token: {TOKEN}, messaging_service_sid: {mg}, \
           to: ['{A}'], base_url: '{url}' }}"
    ))
    .build(&BuildCx::new().unwrap())
    .unwrap();
    s.send(&alert(Event::Test)).await.expect("send");
    let r = &tw.requests()[0];
    assert_eq!(r.field("MessagingServiceSid"), Some(mg));
    assert_eq!(r.field("From"), None);
    let m = &tw.messages()[0];
    assert_eq!(
        (m.from.as_deref(), m.messaging_service_sid.as_deref()),
        (None, Some(mg))
    );
    assert!(m.body.starts_with("[probed] TEST api-write"));
}

#[tokio::test]
async fn a_wrong_token_is_permanent_and_never_shown() {
    let (url, tw) = FakeTwilio::start(SID, TOKEN).await;
    let wrong = "wrong-token-987654321";
    let s = sender_for(&url, wrong, &[A, B], "5s");
    let reason = permanent(s.send(&alert(Event::Trigger)).await);
    assert_eq!(
        reason,
        format!(
            "twilio: {A}: authentication failed (401 unauthorized, code 20003: Authenticate) \
             (0 of 2 recipients accepted, 1 not tried)"
        )
    );
    assert!(!reason.contains(wrong) && !reason.contains(TOKEN));
    assert!(tw.messages().is_empty());
    assert_eq!(tw.requests().len(), 1, "stops after an auth failure");

    // A gateway that echoes the credentials it was sent: masked.
    tw.script(Answer::status(403).body(format!(r#"{{"message":"bad token {wrong}"}}"#)));
    let reason = permanent(s.send(&alert(Event::Trigger)).await);
    assert!(reason.contains("bad token ***"), "{reason}");
    assert!(!reason.contains(wrong), "{reason}");
}

/// A gateway that echoes the basic auth it was sent, in an error message longer than a
/// snippet: neither the pair's base64 nor the token in any encoding is left, and the
/// message is cut short.
#[tokio::test]
async fn echoed_basic_auth_is_masked_in_every_form_and_cut_short() {
    let (url, tw) = FakeTwilio::start(SID, TOKEN).await;
    let s = sender(&url, &[A]);
    let pair = crate::redact::base64(format!("{SID}:{TOKEN}").as_bytes());
    let token_json = serde_json::to_string(&format!("{TOKEN}\"")).unwrap();
    let echo = serde_json::json!({
        "code": 20003,
        "message": format!(
            "Authenticate: Basic {pair}, token {}, {} {}",
            pair.trim_end_matches('=').replace('+', "-").replace('/', "_"),
            &token_json[1..token_json.len() - 1],
            "x".repeat(400)
        ),
    });
    tw.script(Answer::status(401).body(echo.to_string()));
    let reason = permanent(s.send(&alert(Event::Trigger)).await);
    assert!(
        reason.contains("code 20003: Authenticate: Basic ***, token ***, ***"),
        "{reason}"
    );
    for leak in [pair.as_str(), &pair[4..24], TOKEN, "auth-token"] {
        assert!(!reason.contains(leak), "{leak} in {reason}");
    }
    assert!(reason.contains("x...") && reason.len() < 400, "{reason}");
}

#[tokio::test]
async fn rate_limits_are_retried_after_the_wait_twilio_asks_for() {
    let (url, tw) = FakeTwilio::start(SID, TOKEN).await;
    tw.script(Answer::status(429).header("Retry-After", "3"));
    let s = sender(&url, &[A, B]);
    let (reason, after) = retry(s.send(&alert(Event::Trigger)).await);
    assert_eq!(after, Some(Duration::from_secs(3)));
    assert_eq!(
        reason,
        format!(
            "twilio: {A}: 429 too many requests: code 20429: Too Many Requests \
             (0 of 2 recipients accepted, 1 not tried)"
        )
    );
    assert_eq!(tw.requests().len(), 1, "no hammering after a 429");
    s.send(&alert(Event::Trigger)).await.expect("then it goes");
    assert_eq!(tw.messages().len(), 2);
}

#[tokio::test]
async fn an_outage_is_retried_until_it_ends() {
    let (url, tw) = FakeTwilio::start(SID, TOKEN).await;
    tw.set_default(Answer::status(503));
    let s = sender(&url, &[A]);
    for _ in 0..3 {
        let (reason, _) = retry(s.send(&alert(Event::Trigger)).await);
        assert!(reason.contains("503 service unavailable"), "{reason}");
    }
    tw.set_default(Answer::Real);
    s.send(&alert(Event::Trigger)).await.expect("back");
    assert_eq!(tw.messages().len(), 1);
}

#[tokio::test]
async fn a_resend_after_a_partial_failure_texts_nobody_twice() {
    let (url, tw) = FakeTwilio::start(SID, TOKEN).await;
    tw.script(Answer::Real);
    tw.script(Answer::status(500));
    let s = sender(&url, &[A, B]);
    let (reason, after) = retry(s.send(&alert(Event::Trigger)).await);
    let first = tw.messages_to(A);
    assert_eq!(first.len(), 1);
    assert_eq!(
        reason,
        format!(
            "twilio: {B}: 500 internal server error: code 20500: Internal Server Error \
             (1 of 2 recipients accepted: {} to {A})",
            first[0].sid
        )
    );
    assert_eq!(after, None);

    let d = s.send(&alert(Event::Trigger)).await.expect("resend");
    assert_eq!(tw.messages_to(A).len(), 1, "A is not texted twice");
    assert_eq!(tw.messages_to(B).len(), 1);
    assert_eq!(tw.requests().len(), 3);
    assert!(
        d.detail
            .starts_with(&format!("2 sms accepted: {} to {A}, ", first[0].sid))
    );

    // Once delivered, the memory is dropped: the next reminder texts everyone.
    s.send(&alert(Event::Reminder)).await.expect("reminder");
    s.send(&alert(Event::Reminder))
        .await
        .expect("next reminder");
    assert_eq!(tw.messages_to(A).len(), 3);
    assert_eq!(tw.messages_to(B).len(), 3);
    // Another event of the same incident is another message.
    s.send(&alert(Event::Resolve)).await.expect("resolve");
    assert_eq!(tw.messages().len(), 8);
}

#[tokio::test]
async fn a_bad_number_does_not_keep_the_others_from_being_paged() {
    let (url, tw) = FakeTwilio::start(SID, TOKEN).await;
    let bad = "+15005550001"; // Twilio's magic "invalid number"
    let s = sender(&url, &[bad, A]);
    let reason = permanent(s.send(&alert(Event::Trigger)).await);
    assert!(
        reason.starts_with(&format!(
            "twilio: {bad}: 400 bad request: code 21211: The 'To' number {bad} is not a valid phone number. (1 of 2 recipients accepted: SM"
        )),
        "{reason}"
    );
    assert_eq!(tw.messages_to(A).len(), 1);
    let _ = permanent(s.send(&alert(Event::Trigger)).await);
    assert_eq!(tw.messages_to(A).len(), 1, "A is not texted twice");
}

#[tokio::test]
async fn long_reasons_arrive_within_two_segments() {
    let (url, tw) = FakeTwilio::start(SID, TOKEN).await;
    let s = sender(&url, &[A]);
    let mut a = alert(Event::Trigger);
    a.reason = Some("database write timed out; ".repeat(80));
    s.send(&a).await.expect("send");
    let m = &tw.messages()[0];
    assert!(m.body.chars().count() <= MAX_SMS_CHARS);
    assert_eq!(m.num_segments, 2);
    a.reason = Some("écriture échouée ⚠ ".repeat(100));
    s.send(&a).await.expect("send");
    let m = &tw.messages()[1];
    assert!(m.body.chars().count() <= 320, "{}", m.body.chars().count());
    assert!(m.body.contains("écriture échouée"));
}

#[tokio::test]
async fn a_hanging_server_is_retried_within_the_timeout() {
    let (url, tw) = FakeTwilio::start(SID, TOKEN).await;
    tw.script(Answer::Real);
    tw.script(Answer::Hang);
    let s = sender_for(&url, TOKEN, &[A, B], "300ms");
    let start = Instant::now();
    let (reason, after) = retry(s.send(&alert(Event::Trigger)).await);
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_millis(300 + 700), "{took:?}");
    assert!(reason.starts_with("twilio: "), "{reason}");
    assert!(reason.contains("1 of 2 recipients accepted"), "{reason}");
    assert_eq!(after, None);
    assert_eq!(tw.wait_for_requests(2).await.len(), 2);
    // The resend skips A, accepted before the hang.
    s.send(&alert(Event::Trigger)).await.expect("resend");
    assert_eq!(tw.messages_to(A).len(), 1);
    assert_eq!(tw.messages_to(B).len(), 1);
}

#[tokio::test]
async fn an_unreachable_server_is_retried() {
    let addr = dead_addr().await;
    let s = sender(&format!("http://{addr}"), &[A]);
    let (reason, _) = retry(s.send(&alert(Event::Trigger)).await);
    assert!(
        reason.starts_with(&format!("twilio: {A}: connection failed")),
        "{reason}"
    );
}

#[tokio::test]
async fn the_fake_checks_requests_like_twilio() {
    let (url, tw) = FakeTwilio::start(SID, TOKEN).await;
    let http = BuildCx::new().expect("build cx").http;
    let messages = format!("{url}/2010-04-01/Accounts/{SID}/Messages.json");
    type Form<'a> = &'a [(&'a str, &'a str)];
    let cases: &[(Form, u16, &str)] = &[
        (
            &[("To", A), ("From", FROM), ("Body", "hi")],
            201,
            "\"status\":\"queued\"",
        ),
        (&[("From", FROM), ("Body", "hi")], 400, "\"code\":21604"),
        (
            &[("To", "555"), ("From", FROM), ("Body", "hi")],
            400,
            "\"code\":21211",
        ),
        (
            &[("To", "+15005550009"), ("From", FROM), ("Body", "hi")],
            400,
            "\"code\":21614",
        ),
        (&[("To", A), ("Body", "hi")], 400, "\"code\":21603"),
        (
            &[("To", A), ("From", "me"), ("Body", "hi")],
            400,
            "\"code\":21212",
        ),
        (
            &[("To", A), ("MessagingServiceSid", "MG1"), ("Body", "hi")],
            400,
            "\"code\":21701",
        ),
        (&[("To", A), ("From", FROM)], 400, "\"code\":21602"),
    ];
    for (form, status, needle) in cases {
        let r = http
            .post(&messages)
            .basic_auth(SID, Some(TOKEN))
            .form(form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), *status, "{form:?}");
        let text = r.text().await.unwrap();
        assert!(text.contains(needle), "{form:?}: {text}");
    }
    let long = "x".repeat(1601);
    let r = http
        .post(&messages)
        .basic_auth(SID, Some(TOKEN))
        .form(&[("To", A), ("From", FROM), ("Body", long.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert!(r.text().await.unwrap().contains("21617"));
    let form = [("To", A), ("From", FROM), ("Body", "hi")];
    let r = http.post(&messages).form(&form).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.text().await.unwrap().contains("20003"));
    let other = messages.replace(SID, "AC999");
    let r = http
        .post(&other)
        .basic_auth(SID, Some(TOKEN))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    assert_eq!(tw.messages().len(), 1);
    let m = &tw.messages()[0];
    assert_eq!((m.to.as_str(), m.body.as_str()), (A, "hi"));
    // Form decoding: `+`, percent escapes and UTF-8 survive the round trip.
    let body = "a+b & c=d %25 é\n🚨";
    http.post(&messages)
        .basic_auth(SID, Some(TOKEN))
        .form(&[("To", A), ("From", FROM), ("Body", body)])
        .send()
        .await
        .unwrap();
    assert_eq!(tw.messages()[1].body, body);
}
