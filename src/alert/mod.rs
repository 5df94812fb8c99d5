//! The alert path: notifier kinds (one file each), what a page carries ([`Alert`]), and how a
//! send can fail ([`SendError`]). Incidents, the durable outbox and the dispatcher that
//! delivers from it live in `alert/dispatch.rs`; the queries behind them in `store/`.
//!
//! Adding a notifier kind: its settings (`Spec`, with `///` docs and a pure `validate`) in
//! `config/notify/`, where the config checks them, and one line in the list of
//! `config::notify::for_each_kind`; here one file (a `build` of that `Spec` into a sender,
//! and `send`) of the same name.
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

use std::sync::Arc;
use std::time::Duration;

pub use crate::config::notify::{KINDS, NotifierSpec};
pub use crate::paging::{Alert, Event};

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
        /// A notifier ready to send.
        pub enum Notifier { $($variant($module::Sender)),* }

        impl NotifierSpec {
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

crate::config::notify::for_each_kind!(kinds);

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
            locations: None,
            target: Some("https://api.example.com/v1/canary".into()),
            source_location: "eu-west".into(),
            fired_as: if event == Event::Test {
                vec![]
            } else {
                vec!["down".into()]
            },
            recovered_at: None,
        }
    }
}
