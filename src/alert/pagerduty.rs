//! `kind: pagerduty`: pages through PagerDuty's Events API v2
//! (`POST {base_url}/v2/enqueue`, developer.pagerduty.com/docs/events-api-v2/trigger-events).
//!
//! Every message of one incident carries the alert's `dedup_key`, so PagerDuty folds
//! reminders, escalations and resends after a crash into one PagerDuty incident, and the
//! `acknowledge` and `resolve` events close the one the `trigger` opened.
//!
//! How an answer is read and classified, and how errors are told without the URL or the
//! routing key, is `alert/http.rs`.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use super::http::{
    Scrub, check_timeout, exchange, parse_base_url, status_text, truncate_chars, url_secrets,
    within,
};
use super::{Alert, BuildCx, Delivered, Event, SendError};
use crate::probe::FieldError;
use crate::units::{Dur, Secret};

/// Where the Events API lives when `base_url` is not set.
pub const DEFAULT_BASE_URL: &str = "https://events.pagerduty.com";

/// PagerDuty's limit on `payload.summary`.
const MAX_SUMMARY_CHARS: usize = 1024;

/// Settings of a `pagerduty` notifier.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// The routing key: the "Integration Key" of an Events API v2 integration on the
    /// PagerDuty service to page (32 characters). A secret: write it as
    /// `"${PD_ROUTING_KEY}"`. It is never shown in errors, logs or output.
    pub routing_key: Secret,
    /// Base URL of the Events API, without the `/v2/enqueue` path. Default:
    /// `https://events.pagerduty.com` (EU accounts may use `https://events.eu.pagerduty.com`);
    /// set it for an egress proxy, a gateway or a test server.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Deadline of one send, connection included. Default: 10s.
    pub timeout: Option<Dur>,
}

fn default_base_url() -> String {
    DEFAULT_BASE_URL.into()
}

impl Spec {
    /// No file paths in these settings.
    pub fn resolve_paths(&mut self, _base: &std::path::Path) {}

    /// Every problem in the settings, found without I/O. Never shows the routing key.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let key = self.routing_key.expose();
        if key.trim().is_empty() {
            errs.push(FieldError::new(
                "routing_key",
                "is empty (the integration key of an events api v2 integration)",
            ));
        } else if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
            errs.push(FieldError::new(
                "routing_key",
                "contains whitespace or control characters",
            ));
        }
        if let Err(e) = parse_base_url(&self.base_url) {
            errs.push(FieldError::new("base_url", e));
        }
        if let Some(e) = check_timeout(self.timeout) {
            errs.push(FieldError::new("timeout", e));
        }
        errs
    }

    /// The sender. Only fails on what [`Spec::validate`] reports.
    pub fn build(&self, cx: &BuildCx) -> Result<Sender, String> {
        if let Some(e) = self.validate().into_iter().next() {
            return Err(format!("{}: {}", e.path, e.message));
        }
        let base = parse_base_url(&self.base_url).map_err(|e| format!("base_url: {e}"))?;
        let mut secrets = url_secrets(&base);
        secrets.push(self.routing_key.expose().to_string());
        Ok(Sender {
            http: cx.http.clone(),
            url: format!("{}/v2/enqueue", self.base_url.trim_end_matches('/')),
            routing_key: self.routing_key.clone(),
            timeout: self
                .timeout
                .map_or(super::DEFAULT_SEND_TIMEOUT, Duration::from),
            scrub: Scrub::new(secrets),
        })
    }
}

/// A ready `pagerduty` notifier.
pub struct Sender {
    http: reqwest::Client,
    /// `{base_url}/v2/enqueue`.
    url: String,
    routing_key: Secret,
    timeout: Duration,
    /// The routing key and the base URL's userinfo.
    scrub: Scrub,
}

/// The Events API's answer, success or not.
#[derive(Debug, Default, Deserialize)]
struct EventsResponse {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    dedup_key: Option<String>,
    #[serde(default)]
    errors: Vec<Value>,
}

impl Sender {
    /// Sends one event, within the notifier's deadline.
    pub async fn send(&self, alert: &Alert) -> Result<Delivered, SendError> {
        let body = self.event(alert);
        within("pagerduty", self.timeout, self.post(&body))
            .await
            .map_err(|e| self.scrub.error(e))
    }

    pub fn refresh_every(&self) -> Option<Duration> {
        None
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// What this notifier's texts are scrubbed of.
    pub(crate) fn scrub(&self) -> &super::http::Scrub {
        &self.scrub
    }

    /// The Events API v2 event for `alert`. Acknowledge and resolve carry only the key, the
    /// action and the dedup key, as the API asks.
    fn event(&self, alert: &Alert) -> Value {
        let action = match alert.event {
            Event::Acknowledge => "acknowledge",
            Event::Resolve => "resolve",
            Event::Trigger | Event::Reminder | Event::Escalation | Event::Test => "trigger",
        };
        let mut ev = json!({
            "routing_key": self.routing_key.expose(),
            "event_action": action,
            "dedup_key": alert.dedup_key,
        });
        if action != "trigger" {
            return ev;
        }
        let mut payload = json!({
            "summary": truncate_chars(&alert.summary(), MAX_SUMMARY_CHARS),
            "source": if alert.source.trim().is_empty() { "probed" } else { &alert.source },
            "severity": severity(&alert.severity),
            "timestamp": crate::time::rfc3339(alert.at),
            "component": alert.probe,
            "class": alert.kind,
            "custom_details": {
                "reason": alert.reason,
                "labels": alert.labels,
                "opened_at": crate::time::rfc3339(alert.opened_at),
                "event": alert.event.as_str(),
                "incident": alert.incident,
                "state": alert.state,
            },
        });
        if let Some(g) = &alert.group {
            payload["group"] = json!(g);
        }
        ev["payload"] = payload;
        ev["client"] = json!("probed");
        if let Some(link) = &alert.link {
            ev["client_url"] = json!(link);
            ev["links"] = json!([{ "href": link, "text": "probed status" }]);
        }
        ev
    }

    async fn post(&self, body: &Value) -> Result<Delivered, SendError> {
        let req = self.http.post(&self.url).timeout(self.timeout).json(body);
        let reply = exchange("pagerduty", req, self.timeout).await?;
        let status = reply.status;
        let events: Option<EventsResponse> = reply.json();

        if status.is_success() {
            let a = events.unwrap_or_default();
            let mut detail = format!(
                "{} {}: {}",
                status.as_u16(),
                a.status.as_deref().unwrap_or("accepted"),
                a.message.as_deref().unwrap_or("event sent"),
            );
            if let Some(k) = &a.dedup_key {
                detail.push_str(&format!(" (dedup_key {k})"));
            }
            return Ok(Delivered {
                detail: self.scrub.text(detail),
            });
        }

        let what = match &events {
            Some(a) if a.status.is_some() || a.message.is_some() => {
                let mut s = [a.status.as_deref(), a.message.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(": ");
                if !a.errors.is_empty() {
                    let errs: Vec<String> = a
                        .errors
                        .iter()
                        .map(|e| match e {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        })
                        .collect();
                    s.push_str(&format!(" ({})", errs.join("; ")));
                }
                self.scrub.quote(&s)
            }
            _ => reply.snippet(&self.scrub),
        };
        Err(reply.fail(format!("pagerduty: {}: {what}", status_text(status))))
    }
}

/// Our severity as PagerDuty's: its four levels pass through, anything else pages as
/// `critical` (a page nobody can read the urgency of is treated as urgent).
fn severity(s: &str) -> &'static str {
    match s.to_ascii_lowercase().as_str() {
        "critical" => "critical",
        "error" => "error",
        "warning" => "warning",
        "info" => "info",
        _ => "critical",
    }
}

#[cfg(test)]
pub(crate) mod fake {
    //! A local stand-in for PagerDuty's Events API v2: it checks each event as the real
    //! service does (`400 invalid event` with its error list), keeps incidents by
    //! `dedup_key`, answers `202`, and can be scripted to fail (`500`, `429`, a hang) for the
    //! next requests or for good (the scripting is `alert::http::fake`).
    //!
    //! ```ignore
    //! let (base_url, pd) = FakePagerDuty::start().await;
    //! pd.script(Answer::status(500));            // the next request fails, then real answers
    //! // ... send with base_url ...
    //! assert_eq!(pd.incidents().len(), 1);
    //! let req = &pd.requests()[0];               // headers, raw body, parsed JSON, answer
    //! ```

    use bytes::Bytes;
    use http::{HeaderMap, StatusCode};
    use serde_json::{Value, json};

    pub use crate::alert::http::fake::Answer;
    use crate::alert::http::fake::{Fake, Resp, Service, json_resp, path_and_query, respond};

    /// One request as the fake received it.
    #[derive(Debug, Clone)]
    pub struct Received {
        pub method: String,
        /// Path and query.
        pub path: String,
        pub headers: HeaderMap,
        pub body: Bytes,
        /// The body as JSON, when it parses.
        pub json: Option<Value>,
        /// The status the fake answered (0 for a hang).
        pub answered: u16,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum IncidentStatus {
        Triggered,
        Acknowledged,
        Resolved,
    }

    /// A PagerDuty incident as the fake keeps it.
    #[derive(Debug, Clone, PartialEq)]
    pub struct Incident {
        /// 1, 2, ... in creation order.
        pub number: u64,
        pub dedup_key: String,
        pub status: IncidentStatus,
        /// From the trigger that opened it.
        pub summary: String,
        pub source: String,
        pub severity: String,
        /// Triggers folded into it (1 + deduplicated re-triggers).
        pub alerts: u32,
        /// Every accepted event action applied to it, in order.
        pub log: Vec<String>,
    }

    /// What the fake keeps.
    #[derive(Default)]
    pub struct State {
        incidents: Vec<Incident>,
        generated_keys: u64,
    }

    /// The Events API's behaviour, for [`Fake`].
    pub struct EventsApi;

    /// A handle on a running fake; clones share it.
    pub type FakePagerDuty = Fake<EventsApi>;

    impl FakePagerDuty {
        /// Starts the fake on 127.0.0.1 (a free port); returns its base URL
        /// (`http://127.0.0.1:PORT`, for `base_url`) and the handle.
        pub async fn start() -> (String, FakePagerDuty) {
            Fake::serve(EventsApi).await
        }

        /// Every incident, open or not, in creation order.
        pub fn incidents(&self) -> Vec<Incident> {
            self.state(|st| st.incidents.clone())
        }

        /// The latest incident with this dedup key.
        pub fn incident(&self, dedup_key: &str) -> Option<Incident> {
            self.state(|st| {
                st.incidents
                    .iter()
                    .rev()
                    .find(|i| i.dedup_key == dedup_key)
                    .cloned()
            })
        }
    }

    impl Service for EventsApi {
        type Received = Received;
        type State = State;

        fn receive(&self, parts: http::request::Parts, body: Bytes) -> Received {
            Received {
                method: parts.method.to_string(),
                path: path_and_query(&parts),
                headers: parts.headers,
                json: serde_json::from_slice::<Value>(&body).ok(),
                body,
                answered: 0,
            }
        }

        fn answered(req: &mut Received, status: u16) {
            req.answered = status;
        }

        fn real(&self, st: &mut State, req: &Received) -> Resp {
            real(st, req)
        }

        /// Without a body, a JSON body shaped like PagerDuty's for that status.
        fn reply(&self, status: u16, body: Option<String>) -> Resp {
            let body = body.unwrap_or_else(|| {
                match status {
                    202 => json!({"status": "success", "message": "Event processed"}),
                    429 => json!({
                        "status": "throttle event",
                        "message": "Requests for this service are arriving too quickly. Please retry later.",
                    }),
                    s => json!({
                        "status": "error",
                        "message": StatusCode::from_u16(s)
                            .ok()
                            .and_then(|c| c.canonical_reason())
                            .unwrap_or("error"),
                    }),
                }
                .to_string()
            });
            let mut r = respond(status, body);
            r.headers_mut().insert(
                "content-type",
                http::HeaderValue::from_static("application/json"),
            );
            r
        }
    }

    fn invalid(errors: Vec<String>) -> Resp {
        json_resp(
            400,
            &json!({"status": "invalid event", "message": "Event object is invalid", "errors": errors}),
        )
    }

    /// A string field, trimmed; `""` when missing or not a string.
    fn text(v: Option<&Value>) -> &str {
        v.and_then(Value::as_str).map_or("", str::trim)
    }

    /// The real service's behaviour: validate, then apply the event to the incidents.
    fn real(st: &mut State, req: &Received) -> Resp {
        if req.method != "POST" {
            return json_resp(
                405,
                &json!({"status": "error", "message": "Method Not Allowed"}),
            );
        }
        if req.path.split('?').next() != Some("/v2/enqueue") {
            return json_resp(404, &json!({"status": "error", "message": "Not Found"}));
        }
        let Some(Value::Object(ev)) = &req.json else {
            return json_resp(
                400,
                &json!({"status": "invalid request", "message": "Invalid JSON", "errors": ["Could not parse request body as JSON"]}),
            );
        };
        let mut errors = Vec::new();
        let key = text(ev.get("routing_key"));
        if key.is_empty() {
            errors.push("'routing_key' is missing or blank".to_string());
        } else if key.chars().count() != 32 {
            errors.push("Length of 'routing_key' is incorrect (should be 32 characters)".into());
        }
        let action = text(ev.get("event_action"));
        if !matches!(action, "trigger" | "acknowledge" | "resolve") {
            errors.push(
                "'event_action' is invalid (must be one of the following: 'trigger', 'acknowledge' or 'resolve')"
                    .into(),
            );
        }
        let dedup = text(ev.get("dedup_key")).to_string();
        if dedup.chars().count() > 255 {
            errors.push("'dedup_key' is too long (maximum is 255 characters)".into());
        }
        if matches!(action, "acknowledge" | "resolve") && dedup.is_empty() {
            errors.push("'dedup_key' is missing or blank".into());
        }
        let payload = ev.get("payload").and_then(Value::as_object);
        if action == "trigger" {
            match payload {
                None => errors.push("'payload' is missing or blank".into()),
                Some(p) => {
                    let summary = text(p.get("summary"));
                    if summary.is_empty() {
                        errors.push("'payload.summary' is missing or blank".into());
                    } else if summary.chars().count() > 1024 {
                        errors.push(
                            "'payload.summary' is too long (maximum is 1024 characters)".into(),
                        );
                    }
                    if text(p.get("source")).is_empty() {
                        errors.push("'payload.source' is missing or blank".into());
                    }
                    if !matches!(
                        text(p.get("severity")),
                        "critical" | "error" | "warning" | "info"
                    ) {
                        errors.push(
                            "'payload.severity' is invalid (must be one of the following: 'critical', 'warning', 'error' or 'info')"
                                .into(),
                        );
                    }
                    if let Some(ts) = p.get("timestamp")
                        && ts
                            .as_str()
                            .is_none_or(|t| chrono::DateTime::parse_from_rfc3339(t).is_err())
                    {
                        errors.push("'payload.timestamp' is invalid (must be ISO 8601)".into());
                    }
                }
            }
        }
        if let Some(links) = ev.get("links")
            && !links.as_array().is_some_and(|ls| {
                ls.iter()
                    .all(|l| l.get("href").and_then(Value::as_str).is_some())
            })
        {
            errors.push("'links' is invalid (each link needs an 'href')".into());
        }
        if !errors.is_empty() {
            return invalid(errors);
        }

        let open = st
            .incidents
            .iter_mut()
            .rev()
            .find(|i| i.dedup_key == dedup && i.status != IncidentStatus::Resolved);
        let dedup = match (action, open) {
            ("trigger", Some(i)) => {
                i.alerts += 1;
                i.log.push("trigger".into());
                dedup
            }
            ("trigger", None) => {
                let dedup = if dedup.is_empty() {
                    st.generated_keys += 1;
                    format!("{:032x}", st.generated_keys)
                } else {
                    dedup
                };
                let p = payload.expect("checked above");
                let number = st.incidents.len() as u64 + 1;
                st.incidents.push(Incident {
                    number,
                    dedup_key: dedup.clone(),
                    status: IncidentStatus::Triggered,
                    summary: text(p.get("summary")).into(),
                    source: text(p.get("source")).into(),
                    severity: text(p.get("severity")).into(),
                    alerts: 1,
                    log: vec!["trigger".into()],
                });
                dedup
            }
            (action, Some(i)) => {
                i.status = if action == "resolve" {
                    IncidentStatus::Resolved
                } else {
                    IncidentStatus::Acknowledged
                };
                i.log.push(action.into());
                dedup
            }
            // No open incident with that key: accepted and dropped, as PagerDuty does.
            (_, None) => dedup,
        };
        json_resp(
            202,
            &json!({"status": "success", "message": "Event processed", "dedup_key": dedup}),
        )
    }
}

#[cfg(test)]
mod tests {
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
            Some(
                json!({"routing_key": KEY, "event_action": "resolve", "dedup_key": "probed-test-42"})
            )
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
}
