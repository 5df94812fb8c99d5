//! The alert path: notifier kinds (one file each), what a page carries ([`Alert`]), and how a
//! send can fail ([`SendError`]). Incidents, the durable outbox and the dispatcher that
//! delivers from it live in `alert/dispatch.rs`.
//!
//! Adding a notifier kind is one file (its `Spec` with `///` docs, a pure `validate`, a
//! `build` into a [`Notifier`], and `send`) plus one line in the `kinds!` list below.
//!
//! Invariant: a notifier never sees a probe's configuration, only the [`Alert`], whose text
//! is built from names, states and the probe's own (already scrubbed) reason. Secrets in a
//! notifier's own spec are [`crate::units::Secret`]s and never appear in errors it returns.

pub mod alertmanager;
pub mod dispatch;
pub mod email;
pub(crate) mod http;
pub mod outbox;
pub mod pagerduty;
pub mod plan;
pub mod twilio;
pub mod webhook;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::probe::FieldError;

/// What happened, as told to a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// An incident opened: the first page.
    Trigger,
    /// Still open; sent every `remind_every`.
    Reminder,
    /// Still open and unacknowledged after an escalation step's `after`.
    Escalation,
    /// Someone acknowledged it.
    Acknowledge,
    /// The probe recovered; the incident is closed.
    Resolve,
    /// `probectl test-alert`.
    Test,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Trigger => "trigger",
            Event::Reminder => "reminder",
            Event::Escalation => "escalation",
            Event::Acknowledge => "acknowledge",
            Event::Resolve => "resolve",
            Event::Test => "test",
        }
    }

    /// Whether the incident is still firing from the receiver's point of view.
    pub fn firing(self) -> bool {
        !matches!(self, Event::Resolve)
    }
}

/// One message to deliver. Everything in it is safe to show: no URL, header, DSN or secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub event: Event,
    /// The incident's id (0 for a test).
    pub incident: i64,
    /// Stable for every message of one incident, so a receiver (PagerDuty, Alertmanager)
    /// folds a resend after a crash into the same incident. `probed-<instance>-<incident>`.
    pub dedup_key: String,
    pub probe: String,
    /// The probe's kind (`http`, ...).
    pub kind: String,
    pub severity: String,
    /// `down` (or `degraded`: outside its objectives) while firing, `up` once resolved.
    pub state: String,
    /// The failing observation's reason.
    pub reason: Option<String>,
    /// When the incident opened, unix ms.
    pub opened_at: i64,
    /// When this message was created, unix ms.
    pub at: i64,
    pub resolved_at: Option<i64>,
    pub acknowledged_by: Option<String>,
    /// The probe's labels (routing matched on these).
    pub labels: BTreeMap<String, String>,
    pub group: Option<String>,
    /// Link to the daemon's status for this probe, when `external_url` is set.
    pub link: Option<String>,
    /// Which daemon sent it (`instance` in the config, else the host name).
    pub source: String,
}

impl Alert {
    /// One line: `[probed] DOWN api-write: status 503, expected 200`.
    pub fn summary(&self) -> String {
        let what = match self.event {
            Event::Resolve => "RESOLVED",
            Event::Acknowledge => "ACKNOWLEDGED",
            Event::Test => "TEST",
            _ if self.state == "degraded" => "DEGRADED",
            _ => "DOWN",
        };
        let mut s = format!("[probed] {what} {}", self.probe);
        if self.event.firing()
            && let Some(r) = &self.reason
        {
            s.push_str(": ");
            s.push_str(r);
        }
        s
    }

    /// A few lines for channels with room (email, webhook): probe, state, reason, since
    /// when, link.
    pub fn body(&self) -> String {
        use std::fmt::Write;
        let mut b = String::new();
        let _ = writeln!(b, "{}", self.summary());
        let _ = writeln!(b);
        let _ = writeln!(b, "probe:     {} ({})", self.probe, self.kind);
        let _ = writeln!(b, "state:     {}", self.state);
        let _ = writeln!(b, "severity:  {}", self.severity);
        if let Some(r) = &self.reason {
            let _ = writeln!(b, "reason:    {r}");
        }
        let _ = writeln!(b, "since:     {}", crate::time::rfc3339(self.opened_at));
        if let Some(t) = self.resolved_at {
            let _ = writeln!(b, "resolved:  {}", crate::time::rfc3339(t));
        }
        if let Some(who) = &self.acknowledged_by {
            let _ = writeln!(b, "acked by:  {who}");
        }
        if let Some(g) = &self.group {
            let _ = writeln!(b, "group:     {g}");
        }
        if let Some(l) = &self.link {
            let _ = writeln!(b, "link:      {l}");
        }
        if self.incident == 0 && self.event != Event::Test {
            // Paged from memory: the store could not be written when it went down.
            let _ = writeln!(b, "incident:  not yet recorded ({})", self.event.as_str());
        } else {
            let _ = writeln!(b, "incident:  {} ({})", self.incident, self.event.as_str());
        }
        let _ = writeln!(b, "sent by:   {}", self.source);
        b
    }
}

/// A delivery the channel accepted, with what it said (`250 2.0.0 queued`, `202`, a SID).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub detail: String,
}

/// Why a send failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth trying again (network trouble, timeouts, 429, 5xx), after `retry_after` when
    /// the receiver said so (`Retry-After`).
    #[error("{reason}")]
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Trying again will not help (400: the request itself is wrong, bad credentials).
    #[error("{reason}")]
    Permanent { reason: String },
}

impl SendError {
    pub fn retry(reason: impl Into<String>) -> SendError {
        SendError::Retry {
            reason: reason.into(),
            retry_after: None,
        }
    }
    pub fn permanent(reason: impl Into<String>) -> SendError {
        SendError::Permanent {
            reason: reason.into(),
        }
    }
}

/// Shared things notifiers are built with.
#[derive(Clone)]
pub struct BuildCx {
    /// One HTTP client (rustls with ring, web PKI roots) for every HTTP notifier.
    pub http: reqwest::Client,
}

impl BuildCx {
    pub fn new() -> Result<BuildCx, String> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .user_agent(concat!("probed/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("http client setup: {e}"))?;
        Ok(BuildCx { http })
    }
}

/// Default deadline of one send, when a notifier's `timeout` is not set.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(10);

macro_rules! kinds {
    ($($name:literal => $variant:ident($module:ident)),* $(,)?) => {
        /// A notifier's settings, by kind.
        #[derive(Debug, Clone)]
        pub enum NotifierSpec { $($variant($module::Spec)),* }

        /// A notifier ready to send.
        pub enum Notifier { $($variant($module::Sender)),* }

        /// Every notifier kind name.
        pub const KINDS: &[&str] = &[$($name),*];

        impl NotifierSpec {
            /// Deserializes the kind-specific settings (everything but `kind`). `Err(())`
            /// means `kind` names no kind.
            #[allow(clippy::result_unit_err)]
            pub fn from_value(kind: &str, v: serde_yaml::Value)
                -> Result<Result<NotifierSpec, serde_path_to_error::Error<serde_yaml::Error>>, ()> {
                match kind {
                    $($name => Ok(serde_path_to_error::deserialize(v).map(NotifierSpec::$variant)),)*
                    _ => Err(()),
                }
            }
            pub fn kind(&self) -> &'static str {
                match self { $(NotifierSpec::$variant(_) => $name),* }
            }
            /// Every problem in the settings, found without I/O.
            pub fn validate(&self) -> Vec<FieldError> {
                match self { $(NotifierSpec::$variant(s) => s.validate()),* }
            }
            /// Makes relative file paths in the settings relative to `base` (the config
            /// file's directory).
            pub fn resolve_paths(&mut self, base: &std::path::Path) {
                match self { $(NotifierSpec::$variant(s) => s.resolve_paths(base)),* }
            }
            /// Builds the sender (reads files such as a CA, prepares clients).
            pub fn build(&self, cx: &BuildCx) -> Result<Notifier, String> {
                match self { $(NotifierSpec::$variant(s) => s.build(cx).map(Notifier::$variant)),* }
            }
        }

        impl Notifier {
            /// Sends one alert, within the notifier's own deadline. What it came to is
            /// free of the notifier's secrets in every form and cut short
            /// (`http::Scrub::outcome`), whatever the kind's own code let through.
            pub async fn send(&self, alert: &Alert) -> Result<Delivered, SendError> {
                match self { $(Notifier::$variant(n) => n.scrub().outcome(n.send(alert).await)),* }
            }
            /// While an incident fires, resend this often (Alertmanager forgets alerts that
            /// are not re-sent). `None`: only on events.
            pub fn refresh_every(&self) -> Option<Duration> {
                match self { $(Notifier::$variant(n) => n.refresh_every()),* }
            }
            /// The deadline of one send.
            pub fn timeout(&self) -> Duration {
                match self { $(Notifier::$variant(n) => n.timeout()),* }
            }
        }
    };
}

kinds! {
    "email" => Email(email),
    "twilio" => Twilio(twilio),
    "pagerduty" => Pagerduty(pagerduty),
    "webhook" => Webhook(webhook),
    "alertmanager" => Alertmanager(alertmanager),
}

#[cfg(test)]
pub(crate) mod testing {
    //! A sample alert for notifier tests.
    use super::*;

    pub fn alert(event: Event) -> Alert {
        Alert {
            event,
            incident: 42,
            dedup_key: "probed-test-42".into(),
            probe: "api-write".into(),
            kind: "http".into(),
            severity: "critical".into(),
            state: if event == Event::Resolve {
                "up"
            } else {
                "down"
            }
            .into(),
            reason: Some("status 503, expected 200, 201".into()),
            opened_at: 1_700_000_000_000,
            at: 1_700_000_060_000,
            resolved_at: (event == Event::Resolve).then_some(1_700_000_120_000),
            acknowledged_by: None,
            labels: [("team".to_string(), "core".to_string())].into(),
            group: Some("API".into()),
            link: Some("http://probed.example/status#api-write".into()),
            source: "probed-test".into(),
        }
    }
}
