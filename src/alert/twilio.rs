//! `kind: twilio`: texts each configured number through Twilio's Messages API
//! (`POST {base_url}/2010-04-01/Accounts/{AccountSid}/Messages.json`, form-encoded, HTTP
//! basic auth; twilio.com/docs/messaging/api/message-resource).
//!
//! The text is short: the one-line summary, since when, and the link, cut to two
//! concatenated GSM-7 segments. With several recipients, a resend after a partial failure
//! texts only those that were not accepted yet: the sender remembers, per alert
//! (`dedup_key` and event), which numbers Twilio accepted, until every one has been.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;

use super::http::{Scrub, exchange, parse_base_url, status_text, truncate_chars, url_secrets};
use super::{Alert, BuildCx, Delivered, Event, SendError};
pub use crate::config::notify::twilio::{DEFAULT_BASE_URL, Spec};
use crate::units::{Secret, format_duration};

/// Longest text sent: two concatenated GSM-7 segments (153 characters each), so a page
/// costs at most two SMS when its text is plain GSM-7. The cut ends in `...`, not `…`,
/// which is outside GSM-7 and would switch the whole text to UCS-2.
pub const MAX_SMS_CHARS: usize = 306;

/// How many alerts the sender remembers partial deliveries of.
const REMEMBER_ALERTS: usize = 1024;

impl Spec {
    /// The sender. Only fails on what [`Spec::validate`] reports.
    pub fn build(&self, cx: &BuildCx) -> Result<Sender, String> {
        if let Some(e) = self.validate().into_iter().next() {
            return Err(format!("{}: {}", e.path, e.message));
        }
        let origin = match (&self.messaging_service_sid, &self.from) {
            (Some(m), _) => ("MessagingServiceSid", m.clone()),
            (None, Some(f)) => ("From", f.clone()),
            (None, None) => return Err("from: is required".into()),
        };
        let base = parse_base_url(&self.base_url).map_err(|e| format!("base_url: {e}"))?;
        let mut secrets = url_secrets(&base);
        secrets.push(self.auth_token.expose().to_string());
        // What basic auth sends: base64 of the pair.
        secrets.push(format!("{}:{}", self.account_sid, self.auth_token.expose()));
        Ok(Sender {
            http: cx.http.clone(),
            url: format!(
                "{}/2010-04-01/Accounts/{}/Messages.json",
                self.base_url.trim_end_matches('/'),
                self.account_sid
            ),
            account_sid: self.account_sid.clone(),
            auth_token: self.auth_token.clone(),
            origin,
            to: self.to.clone(),
            timeout: self
                .timeout
                .map_or(super::DEFAULT_SEND_TIMEOUT, Duration::from),
            accepted: Mutex::new(Accepted::default()),
            scrub: Scrub::new(secrets),
        })
    }
}

/// A ready `twilio` notifier.
pub struct Sender {
    http: reqwest::Client,
    /// `{base_url}/2010-04-01/Accounts/{sid}/Messages.json`.
    url: String,
    account_sid: String,
    auth_token: Secret,
    /// (`From` | `MessagingServiceSid`, value).
    origin: (&'static str, String),
    to: Vec<String>,
    timeout: Duration,
    /// Recipients already accepted for alerts not yet fully delivered.
    accepted: Mutex<Accepted>,
    /// The auth token, the `sid:token` pair and the base URL's userinfo.
    scrub: Scrub,
}

/// One alert, as far as delivery memory goes: a reminder after a fully delivered reminder
/// is a new message, a resend after a partial failure is not.
type AlertKey = (String, Event);

/// Bounded memory of partial deliveries: (recipient, message SID) per alert, the oldest
/// alert forgotten first.
#[derive(Default)]
struct Accepted {
    order: VecDeque<AlertKey>,
    by_alert: HashMap<AlertKey, Vec<(String, String)>>,
}

impl Accepted {
    fn get(&self, key: &AlertKey) -> Vec<(String, String)> {
        self.by_alert.get(key).cloned().unwrap_or_default()
    }

    fn add(&mut self, key: &AlertKey, to: &str, sid: &str) {
        if !self.by_alert.contains_key(key) {
            while self.order.len() >= REMEMBER_ALERTS {
                if let Some(old) = self.order.pop_front() {
                    self.by_alert.remove(&old);
                }
            }
            self.order.push_back(key.clone());
        }
        self.by_alert
            .entry(key.clone())
            .or_default()
            .push((to.to_string(), sid.to_string()));
    }

    fn forget(&mut self, key: &AlertKey) {
        if self.by_alert.remove(key).is_some() {
            self.order.retain(|k| k != key);
        }
    }
}

/// Twilio's answer: a message resource on success, an error object otherwise.
#[derive(Debug, Default, Deserialize)]
struct ApiAnswer {
    sid: Option<String>,
    code: Option<i64>,
    message: Option<String>,
}

/// Why one recipient's message failed.
struct Failure {
    /// `{to}: ...`.
    error: SendError,
    /// The number itself is the problem (400: invalid, unsubscribed, not mobile): the
    /// other recipients are still worth trying. Otherwise (auth, rate limit, outage,
    /// network) they would fail the same way, so the send stops.
    this_number_only: bool,
}

impl Sender {
    /// Texts every recipient not yet accepted for this alert, within the notifier's
    /// deadline.
    pub async fn send(&self, alert: &Alert) -> Result<Delivered, SendError> {
        let deadline = Instant::now() + self.timeout;
        let result = match tokio::time::timeout_at(deadline, self.send_all(alert, deadline)).await {
            Ok(r) => r,
            Err(_) => {
                let key = (alert.dedup_key.clone(), alert.event);
                let done = self.lock().get(&key).len();
                Err(SendError::retry(format!(
                    "twilio: no answer within {} ({done} of {} recipients accepted)",
                    format_duration(self.timeout),
                    self.to.len()
                )))
            }
        };
        result.map_err(|e| self.scrub.error(e))
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

    fn lock(&self) -> std::sync::MutexGuard<'_, Accepted> {
        self.accepted.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn send_all(&self, alert: &Alert, deadline: Instant) -> Result<Delivered, SendError> {
        let key = (alert.dedup_key.clone(), alert.event);
        let text = sms_text(alert);
        let mut accepted = self.lock().get(&key);
        let mut failures: Vec<Failure> = Vec::new();
        let mut not_tried = 0;
        for to in &self.to {
            if accepted.iter().any(|(t, _)| t == to) {
                continue;
            }
            if failures.iter().any(|f| !f.this_number_only) {
                not_tried += 1;
                continue;
            }
            match self.text_one(to, &text, deadline).await {
                Ok(sid) => {
                    self.lock().add(&key, to, &sid);
                    accepted.push((to.clone(), sid));
                }
                Err(f) => failures.push(f),
            }
        }
        let sids = accepted
            .iter()
            .map(|(to, sid)| format!("{sid} to {to}"))
            .collect::<Vec<_>>()
            .join(", ");
        if failures.is_empty() {
            self.lock().forget(&key);
            return Ok(Delivered {
                detail: format!("{} sms accepted: {sids}", accepted.len()),
            });
        }

        let mut reason = String::from("twilio: ");
        reason.push_str(
            &failures
                .iter()
                .map(|f| f.error.to_string())
                .collect::<Vec<_>>()
                .join("; "),
        );
        reason.push_str(&format!(
            " ({} of {} recipients accepted",
            accepted.len(),
            self.to.len()
        ));
        if !accepted.is_empty() {
            reason.push_str(&format!(": {sids}"));
        }
        if not_tried > 0 {
            reason.push_str(&format!(", {not_tried} not tried"));
        }
        reason.push(')');
        let retry_after = failures
            .iter()
            .filter_map(|f| match f.error {
                SendError::Retry { retry_after, .. } => retry_after,
                SendError::Permanent { .. } => None,
            })
            .max();
        if failures
            .iter()
            .any(|f| matches!(f.error, SendError::Retry { .. }))
        {
            Err(SendError::Retry {
                reason,
                retry_after,
            })
        } else {
            Err(SendError::Permanent { reason })
        }
    }

    /// One message to one number; the message SID on success.
    async fn text_one(&self, to: &str, text: &str, deadline: Instant) -> Result<String, Failure> {
        let left = deadline.saturating_duration_since(Instant::now());
        let req = self
            .http
            .post(&self.url)
            .timeout(left)
            .basic_auth(&self.account_sid, Some(self.auth_token.expose()))
            .form(&[("To", to), (self.origin.0, &self.origin.1), ("Body", text)]);
        let reply = exchange(to, req, self.timeout)
            .await
            .map_err(|error| Failure {
                error,
                this_number_only: false,
            })?;
        let status = reply.status;
        let parsed: Option<ApiAnswer> = reply.json();
        if status.is_success() {
            return Ok(parsed
                .and_then(|a| a.sid)
                .unwrap_or_else(|| format!("{} without a sid", status.as_u16())));
        }
        let said = match &parsed {
            Some(ApiAnswer {
                code: Some(c),
                message: Some(m),
                ..
            }) => format!("code {c}: {}", self.scrub.quote(m)),
            Some(ApiAnswer {
                message: Some(m), ..
            }) => self.scrub.quote(m),
            _ => reply.snippet(&self.scrub),
        };
        let what = if matches!(status.as_u16(), 401 | 403) {
            "authentication failed"
        } else {
            ""
        };
        let head = status_text(status);
        let reason = if what.is_empty() {
            format!("{to}: {head}: {said}")
        } else {
            format!("{to}: {what} ({head}, {said})")
        };
        Err(Failure {
            error: reply.fail(reason),
            this_number_only: status.as_u16() == 400,
        })
    }
}

/// The SMS text: the summary, when it started (and ended), the link; at most
/// [`MAX_SMS_CHARS`] characters, cut in the summary so the time and link survive.
pub fn sms_text(alert: &Alert) -> String {
    let head = alert
        .summary()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let mut tail = match (alert.event, alert.resolved_at) {
        (Event::Acknowledge, _) if alert.acknowledged_by.is_some() => format!(
            "\nacked by {}, since {}",
            alert.acknowledged_by.as_deref().unwrap_or_default(),
            short_time(alert.opened_at)
        ),
        (Event::Resolve, Some(end)) => {
            let secs = ((end - alert.opened_at).max(0) / 1000).max(1) as u64;
            format!(
                "\ndown {} from {}",
                format_duration(Duration::from_secs(secs)),
                short_time(alert.opened_at)
            )
        }
        _ => format!("\nsince {}", short_time(alert.opened_at)),
    };
    if let Some(link) = &alert.link
        && link.chars().count() <= MAX_SMS_CHARS / 2
    {
        tail.push('\n');
        tail.push_str(link);
    }
    let room = MAX_SMS_CHARS - tail.chars().count();
    truncate_chars(&head, room) + &tail
}

/// `2023-11-14 22:13 UTC`.
fn short_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
pub(crate) mod fake {
    //! A local stand-in for Twilio's Messages API: it checks basic auth against the account
    //! it was started with (`401`, code 20003), checks the form as Twilio does (`400` with
    //! Twilio's error codes: 21604, 21211, 21603, 21602, ...; the documented magic test
    //! numbers `+15005550001`, `+15005550004`, `+15005550009` fail as documented), keeps the
    //! messages it accepted (`201` with a message resource), and can be scripted to fail
    //! (`429` with `Retry-After`, `500`, a hang) for the next requests or for good (the
    //! scripting is `alert::http::fake`).
    //!
    //! ```ignore
    //! let (base_url, tw) = FakeTwilio::start("AC...", "token").await;
    //! tw.script(Answer::Real);                   // the first request is answered for real,
    //! tw.script(Answer::status(500));            // the second fails, then real again
    //! // ... send with base_url ...
    //! assert_eq!(tw.messages_to("+15550002222").len(), 1);
    //! let req = &tw.requests()[0];               // headers, raw body, form fields, answer
    //! ```

    use bytes::Bytes;
    use http::{HeaderMap, StatusCode};
    use serde_json::json;

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
        /// The body as `application/x-www-form-urlencoded` fields, in order.
        pub form: Vec<(String, String)>,
        /// `(user, password)` from HTTP basic auth, when sent.
        pub basic_auth: Option<(String, String)>,
        /// The status the fake answered (0 for a hang).
        pub answered: u16,
    }

    impl Received {
        /// The first form field of that name.
        pub fn field(&self, name: &str) -> Option<&str> {
            self.form
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        }
    }

    /// A message the fake accepted.
    #[derive(Debug, Clone, PartialEq)]
    pub struct Message {
        /// `SM` + 32 hex digits.
        pub sid: String,
        pub to: String,
        pub from: Option<String>,
        pub messaging_service_sid: Option<String>,
        pub body: String,
        /// Segments Twilio would bill: GSM-7 text 160 (153 when split), else 70 (67).
        pub num_segments: usize,
    }

    /// What the fake keeps.
    #[derive(Default)]
    pub struct State {
        messages: Vec<Message>,
    }

    /// The Messages API of one account, for [`Fake`].
    pub struct MessagesApi {
        account_sid: String,
        auth_token: String,
    }

    /// A handle on a running fake; clones share it.
    pub type FakeTwilio = Fake<MessagesApi>;

    impl FakeTwilio {
        /// Starts the fake for one account on 127.0.0.1 (a free port); returns its base URL
        /// (`http://127.0.0.1:PORT`, for `base_url`) and the handle.
        pub async fn start(account_sid: &str, auth_token: &str) -> (String, FakeTwilio) {
            Fake::serve(MessagesApi {
                account_sid: account_sid.into(),
                auth_token: auth_token.into(),
            })
            .await
        }

        /// Every message accepted, in order.
        pub fn messages(&self) -> Vec<Message> {
            self.state(|st| st.messages.clone())
        }

        /// The messages accepted for one number.
        pub fn messages_to(&self, to: &str) -> Vec<Message> {
            self.state(|st| st.messages.iter().filter(|m| m.to == to).cloned().collect())
        }
    }

    impl Service for MessagesApi {
        type Received = Received;
        type State = State;

        fn receive(&self, parts: http::request::Parts, body: Bytes) -> Received {
            let basic_auth = parts
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(parse_basic_auth);
            Received {
                method: parts.method.to_string(),
                path: path_and_query(&parts),
                form: parse_form(&body),
                headers: parts.headers,
                body,
                basic_auth,
                answered: 0,
            }
        }

        fn answered(req: &mut Received, status: u16) {
            req.answered = status;
        }

        fn real(&self, st: &mut State, req: &Received) -> Resp {
            real(self, st, req)
        }

        /// Without a body, a Twilio error object for that status (`429` is code 20429
        /// "Too Many Requests").
        fn reply(&self, status: u16, body: Option<String>) -> Resp {
            match body {
                Some(b) => respond(status, b),
                None if status == 429 => error(429, 20429, "Too Many Requests"),
                None => {
                    let reason = StatusCode::from_u16(status)
                        .ok()
                        .and_then(|c| c.canonical_reason())
                        .unwrap_or("Error");
                    error(status, 20000 + u32::from(status), reason)
                }
            }
        }
    }

    /// Twilio's error object.
    fn error(status: u16, code: u32, message: &str) -> Resp {
        json_resp(
            status,
            &json!({
                "code": code,
                "message": message,
                "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
                "status": status,
            }),
        )
    }

    fn is_e164(s: &str) -> bool {
        s.strip_prefix('+').is_some_and(|d| {
            (2..=15).contains(&d.len())
                && d.bytes().all(|b| b.is_ascii_digit())
                && !d.starts_with('0')
        })
    }

    /// GSM-7 basic set, roughly: printable ASCII and newlines (Twilio also counts a few
    /// accented letters as GSM-7; being stricter only overcounts).
    fn num_segments(body: &str) -> usize {
        let n = body.chars().count();
        let gsm = body
            .chars()
            .all(|c| c == '\n' || c == '\r' || (' '..='~').contains(&c));
        let (single, split) = if gsm { (160, 153) } else { (70, 67) };
        if n <= single { 1 } else { n.div_ceil(split) }
    }

    /// The real service's behaviour, in Twilio's order: route, auth, then the form.
    fn real(shared: &MessagesApi, st: &mut State, req: &Received) -> Resp {
        let path = req.path.split('?').next().unwrap_or("");
        let account = path
            .strip_prefix("/2010-04-01/Accounts/")
            .and_then(|r| r.strip_suffix("/Messages.json"))
            .filter(|a| !a.contains('/'));
        let Some(account) = account else {
            return error(
                404,
                20404,
                &format!("The requested resource {path} was not found"),
            );
        };
        let authed = req
            .basic_auth
            .as_ref()
            .is_some_and(|(u, p)| *u == shared.account_sid && *p == shared.auth_token);
        if !authed {
            return error(401, 20003, "Authenticate");
        }
        if account != shared.account_sid {
            return error(
                404,
                20404,
                &format!("The requested resource {path} was not found"),
            );
        }
        if req.method != "POST" {
            return error(405, 20004, "Method not allowed");
        }
        let to = req.field("To").unwrap_or("").trim();
        let from = req.field("From").map(str::trim).filter(|f| !f.is_empty());
        let service = req
            .field("MessagingServiceSid")
            .map(str::trim)
            .filter(|f| !f.is_empty());
        let body = req.field("Body").unwrap_or("");
        if to.is_empty() {
            return error(400, 21604, "A 'To' phone number is required.");
        }
        if !is_e164(to) || to == "+15005550001" {
            return error(
                400,
                21211,
                &format!("The 'To' number {to} is not a valid phone number."),
            );
        }
        if to == "+15005550004" {
            return error(400, 21610, "Attempt to send to unsubscribed recipient");
        }
        if to == "+15005550009" {
            return error(
                400,
                21614,
                &format!("'To' number {to} is not a valid mobile number"),
            );
        }
        if from.is_none() && service.is_none() {
            return error(400, 21603, "A 'From' phone number is required.");
        }
        if let Some(f) = from
            && service.is_none()
            && !is_e164(f)
        {
            return error(
                400,
                21212,
                &format!(
                    "The 'From' number {f} is not a valid phone number, shortcode, or alphanumeric sender ID."
                ),
            );
        }
        if let Some(m) = service
            && !(m.starts_with("MG") && m.len() == 34)
        {
            return error(
                400,
                21701,
                &format!("The Messaging Service Sid {m} is invalid."),
            );
        }
        if body.trim().is_empty() {
            return error(400, 21602, "Message body is required.");
        }
        if body.chars().count() > 1600 {
            return error(
                400,
                21617,
                "The concatenated message body exceeds the 1600 character limit.",
            );
        }
        let sid = format!("SM{:032x}", st.messages.len() + 1);
        let msg = Message {
            sid: sid.clone(),
            to: to.into(),
            from: if service.is_some() {
                None
            } else {
                from.map(Into::into)
            },
            messaging_service_sid: service.map(Into::into),
            body: body.into(),
            num_segments: num_segments(body),
        };
        let now = chrono::Utc::now().to_rfc2822();
        let resource = json!({
            "account_sid": shared.account_sid,
            "api_version": "2010-04-01",
            "body": msg.body,
            "date_created": now,
            "date_sent": null,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": null,
            "error_message": null,
            "from": msg.from,
            "messaging_service_sid": msg.messaging_service_sid,
            "num_media": "0",
            "num_segments": msg.num_segments.to_string(),
            "price": null,
            "price_unit": "USD",
            "sid": sid,
            "status": if service.is_some() { "accepted" } else { "queued" },
            "subresource_uris": {
                "media": format!("/2010-04-01/Accounts/{account}/Messages/{sid}/Media.json"),
            },
            "to": msg.to,
            "uri": format!("/2010-04-01/Accounts/{account}/Messages/{sid}.json"),
        });
        st.messages.push(msg);
        json_resp(201, &resource)
    }

    /// `Basic base64(user:password)`.
    fn parse_basic_auth(v: &str) -> Option<(String, String)> {
        let b64 = v.strip_prefix("Basic ")?.trim();
        let raw = crate::redact::base64_decode(b64)?;
        let text = String::from_utf8(raw).ok()?;
        let (u, p) = text.split_once(':')?;
        Some((u.to_string(), p.to_string()))
    }

    /// `application/x-www-form-urlencoded` fields, in order.
    fn parse_form(body: &[u8]) -> Vec<(String, String)> {
        form_urlencoded::parse(body).into_owned().collect()
    }
}

#[cfg(test)]
mod tests;
