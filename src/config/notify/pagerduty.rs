//! The settings of a `pagerduty` notifier (Events API v2): what the config reads and checks,
//! without I/O. The sender they build is `alert/pagerduty.rs`.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{check_timeout, parse_base_url};
use crate::text::FieldError;
use crate::units::{Dur, Secret};

/// Where the Events API lives when `base_url` is not set.
pub const DEFAULT_BASE_URL: &str = "https://events.pagerduty.com";

/// Settings of a `pagerduty` notifier.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
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
}
