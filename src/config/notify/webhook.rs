//! The settings of a `webhook` notifier: what the config reads and checks,
//! without I/O. The sender they build is `alert/webhook.rs`.

use std::collections::BTreeMap;

use reqwest::Method;
use reqwest::header::{HeaderName, HeaderValue};
use schemars::JsonSchema;
use serde::Deserialize;

use super::{check_timeout, parse_url};
use crate::text::FieldError;
use crate::units::{Dur, Secret};

/// Settings of a `webhook` notifier.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// `http://` or `https://` URL the alert is sent to. Userinfo (`user:password@`) is
    /// sent as basic auth. Its path and query often hold a token, so messages show only
    /// the scheme, host and port.
    pub url: String,
    /// Shared secret: each request then carries
    /// `X-Probed-Signature: sha256=<hex of HMAC-SHA256(secret, body)>`.
    pub secret: Option<Secret>,
    /// Extra request headers, e.g. `Authorization`. Values are never shown. `Content-Type`,
    /// `Content-Length`, `Host` and the `X-Probed-*` headers are set by probed.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// HTTP method: `POST` (default), `PUT` or `PATCH`.
    pub method: Option<String>,
    /// Deadline of one send, connection included. Default: 10s.
    pub timeout: Option<Dur>,
}

/// Headers a webhook's `headers` may not set: probed sets them itself.
const RESERVED_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "host",
    "transfer-encoding",
    "x-probed-signature",
    "x-probed-event",
    "x-probed-dedup-key",
];

impl Spec {
    /// No file paths in these settings.
    pub fn resolve_paths(&mut self, _base: &std::path::Path) {}

    /// Every problem, without I/O. Messages never repeat the URL or a header value.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if let Err(e) = parse_url(&self.url) {
            errs.push(FieldError::new("url", e));
        }
        if let Err(e) = self.method() {
            errs.push(FieldError::new("method", e));
        }
        if let Some(s) = &self.secret
            && s.expose().is_empty()
        {
            errs.push(FieldError::new("secret", "must not be empty"));
        }
        for (name, value) in &self.headers {
            let path = format!("headers.{name}");
            if HeaderName::from_bytes(name.as_bytes()).is_err() {
                errs.push(FieldError::new(path, "invalid header name"));
            } else if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                errs.push(FieldError::new(path, "this header is set by probed"));
            } else if HeaderValue::from_str(value.expose()).is_err() {
                errs.push(FieldError::new(
                    path,
                    "invalid header value (control characters or non-ascii text)",
                ));
            }
        }
        if let Some(e) = check_timeout(self.timeout) {
            errs.push(FieldError::new("timeout", e));
        }
        errs
    }

    pub(crate) fn method(&self) -> Result<Method, String> {
        match self
            .method
            .as_deref()
            .map(str::to_ascii_uppercase)
            .as_deref()
        {
            None | Some("POST") => Ok(Method::POST),
            Some("PUT") => Ok(Method::PUT),
            Some("PATCH") => Ok(Method::PATCH),
            Some(other) => Err(format!(
                "unsupported method {other:?} (use POST, PUT or PATCH)"
            )),
        }
    }
}
