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
    Scrub, exchange, parse_base_url, status_text, truncate_chars, url_secrets, within,
};
use super::{Alert, BuildCx, Delivered, Event, SendError};
pub use crate::config::notify::pagerduty::{DEFAULT_BASE_URL, Spec};
use crate::units::Secret;

/// PagerDuty's limit on `payload.summary`.
const MAX_SUMMARY_CHARS: usize = 1024;

impl Spec {
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
mod tests;
