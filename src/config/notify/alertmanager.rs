//! The settings of an `alertmanager` notifier: what the config reads and checks,
//! without I/O. The sender they build is `alert/alertmanager.rs`.

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::Deserialize;

use super::{check_timeout, parse_base_url, parse_url};
use crate::text::FieldError;
use crate::units::{Dur, format_duration};

/// Settings of an `alertmanager` notifier.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Base URL of each Alertmanager of the cluster, e.g. `http://am-1:9093` (with its
    /// route prefix, if any). Every alert goes to all of them; a send succeeds when at
    /// least one accepted it. Userinfo is sent as basic auth and never shown.
    pub urls: Vec<String>,
    /// While an incident fires, resend it this often; each send's `endsAt` is three of
    /// these ahead, so Alertmanager resolves the alert by itself if the sends stop.
    /// Default: 1m. Must be under 5m (Alertmanager's own `resolve_timeout`).
    pub resend_every: Option<Dur>,
    /// Static labels added to every alert, e.g. `{ env: prod }`. They cannot replace the
    /// labels probed sets ([`RESERVED_LABELS`]: `alertname`, `instance`, `probed_instance`,
    /// `location`, `job`, `probe`, `state`, `severity`, `kind`, `group`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `generatorURL` of alerts that carry no link of their own (the daemon sets one per
    /// probe when `external_url` is configured).
    pub generator_url: Option<String>,
    /// Deadline of one send to all the URLs. Default: 10s.
    pub timeout: Option<Dur>,
}

/// `resend_every` must stay under this: Alertmanager's default `resolve_timeout`.
const MAX_RESEND_EVERY: Duration = Duration::from_secs(300);

/// Label names probed sets itself on a probe's alert: a static label cannot take them, and
/// a probe label of one of these names goes to Alertmanager as `exported_<name>`.
pub const RESERVED_LABELS: &[&str] = &[
    "alertname",
    "instance",
    "probed_instance",
    "location",
    "job",
    "probe",
    "state",
    "severity",
    "kind",
    "group",
];

impl Spec {
    /// No file paths in these settings.
    pub fn resolve_paths(&mut self, _base: &std::path::Path) {}

    /// Every problem, without I/O. Messages never repeat a URL.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if self.urls.is_empty() {
            errs.push(FieldError::new(
                "urls",
                "at least one alertmanager url is needed",
            ));
        }
        let mut seen = Vec::new();
        for (i, u) in self.urls.iter().enumerate() {
            let path = format!("urls[{i}]");
            match parse_base_url(u) {
                Err(e) => errs.push(FieldError::new(path, e)),
                Ok(url) => {
                    let key = url.to_string();
                    if seen.contains(&key) {
                        errs.push(FieldError::new(path, "the same url is listed twice"));
                    }
                    seen.push(key);
                }
            }
        }
        if let Some(r) = self.resend_every {
            if r.0 < Duration::from_secs(1) {
                errs.push(FieldError::new("resend_every", "must be at least 1s"));
            } else if r.0 >= MAX_RESEND_EVERY {
                errs.push(FieldError::new(
                    "resend_every",
                    format!(
                        "must be under {} (alertmanager resolves alerts not resent within its resolve_timeout)",
                        format_duration(MAX_RESEND_EVERY)
                    ),
                ));
            }
        }
        for (name, value) in &self.labels {
            let path = format!("labels.{name}");
            if !valid_label_name(name) {
                errs.push(FieldError::new(
                    path,
                    "invalid label name (letters, digits and _, not starting with a digit)",
                ));
            } else if RESERVED_LABELS.contains(&name.as_str()) || name.starts_with("__") {
                errs.push(FieldError::new(path, "this label is set by probed"));
            } else if value.is_empty() {
                errs.push(FieldError::new(path, "a label value must not be empty"));
            }
        }
        if let Some(g) = &self.generator_url
            && let Err(e) = parse_url(g)
        {
            errs.push(FieldError::new("generator_url", e));
        }
        if let Some(e) = check_timeout(self.timeout) {
            errs.push(FieldError::new("timeout", e));
        }
        errs
    }
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, the label names every Alertmanager accepts.
fn valid_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
