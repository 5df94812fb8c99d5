//! The settings of a `twilio` notifier (SMS): what the config reads and checks,
//! without I/O. The sender they build is `alert/twilio.rs`.

use schemars::JsonSchema;
use serde::Deserialize;

use super::{check_timeout, parse_base_url};
use crate::text::FieldError;
use crate::units::{Dur, Secret};

/// Where the API lives when `base_url` is not set.
pub const DEFAULT_BASE_URL: &str = "https://api.twilio.com";

/// Settings of a `twilio` notifier.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// The Twilio account SID (`AC` followed by 32 hex digits), the user of HTTP basic auth.
    pub account_sid: String,
    /// The account's auth token. A secret: write it as `"${TWILIO_TOKEN}"`. It is never
    /// shown in errors, logs or output.
    pub auth_token: Secret,
    /// The sending number, in E.164 form (`+15550001111`). Set this or
    /// `messaging_service_sid`, not both.
    #[serde(default)]
    pub from: Option<String>,
    /// A messaging service (`MG...`) to send through instead of `from`: Twilio picks the
    /// number from the service's sender pool.
    #[serde(default)]
    pub messaging_service_sid: Option<String>,
    /// Numbers to text, in E.164 form; each gets its own message.
    pub to: Vec<String>,
    /// Base URL of the API, without the `/2010-04-01/...` path. Default:
    /// `https://api.twilio.com`; set it for an egress proxy, a gateway or a test server.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Deadline of one send, every recipient included. Default: 10s.
    pub timeout: Option<Dur>,
}

fn default_base_url() -> String {
    DEFAULT_BASE_URL.into()
}

/// `+` then 2 to 15 digits, the first not 0 (ITU-T E.164).
fn is_e164(s: &str) -> bool {
    s.strip_prefix('+').is_some_and(|d| {
        (2..=15).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_digit()) && !d.starts_with('0')
    })
}

/// `prefix` then letters and digits only (the SID goes into the URL path).
fn is_sid(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix)
        .is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_alphanumeric()))
}

impl Spec {
    /// No file paths in these settings.
    pub fn resolve_paths(&mut self, _base: &std::path::Path) {}

    /// Every problem in the settings, found without I/O. Never shows the auth token.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if !is_sid(&self.account_sid, "AC") {
            errs.push(FieldError::new(
                "account_sid",
                "must start with AC followed by letters and digits (the account sid from the twilio console)",
            ));
        }
        if self.auth_token.expose().trim().is_empty() {
            errs.push(FieldError::new("auth_token", "is empty"));
        }
        match (&self.from, &self.messaging_service_sid) {
            (None, None) => errs.push(FieldError::new(
                "from",
                "is required (or set messaging_service_sid)",
            )),
            (Some(_), Some(_)) => errs.push(FieldError::new(
                "messaging_service_sid",
                "set either from or messaging_service_sid, not both",
            )),
            _ => {}
        }
        if let Some(f) = &self.from
            && !is_e164(f)
        {
            errs.push(FieldError::new(
                "from",
                format!("{f:?} is not an e.164 number (write e.g. +15550001111)"),
            ));
        }
        if let Some(m) = &self.messaging_service_sid
            && !is_sid(m, "MG")
        {
            errs.push(FieldError::new(
                "messaging_service_sid",
                "must start with MG followed by letters and digits",
            ));
        }
        if self.to.is_empty() {
            errs.push(FieldError::new("to", "needs at least one number"));
        }
        for (i, n) in self.to.iter().enumerate() {
            if !is_e164(n) {
                errs.push(FieldError::new(
                    format!("to[{i}]"),
                    format!("{n:?} is not an e.164 number (write e.g. +15550002222)"),
                ));
            } else if let Some(j) = self.to[..i].iter().position(|m| m == n) {
                errs.push(FieldError::new(
                    format!("to[{i}]"),
                    format!("{n} is listed twice (see to[{j}])"),
                ));
            }
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
