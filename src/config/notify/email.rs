//! The settings of an `email` notifier (an SMTP relay): what the config reads and checks,
//! without I/O. The sender they build is `alert/email.rs`.

use std::path::PathBuf;
use std::str::FromStr;

use lettre::message::Mailbox;
use schemars::JsonSchema;
use serde::Deserialize;

use super::check_timeout;
use crate::text::FieldError;
use crate::units::{Dur, Secret};

/// Settings of an `email` notifier.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// The relay the mail goes through.
    pub smtp: Smtp,
    /// Sender: `probed@example.com` or `Probed <probed@example.com>`.
    pub from: String,
    /// Recipients, at least one, written as `from` is.
    pub to: Vec<String>,
    /// Put before every subject, e.g. `[prod]`.
    pub subject_prefix: Option<String>,
    /// Deadline of one send, from connecting to the server's last reply. Default: 10s.
    pub timeout: Option<Dur>,
}

/// An SMTP relay.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "EmailSmtp")]
pub struct Smtp {
    /// Host name or IP address of the relay; TLS certificates are checked against it.
    pub host: String,
    /// Port. Default: 25 with `tls: none`, 587 with `starttls`, 465 with `tls`.
    pub port: Option<u16>,
    /// `starttls` (default: plain connection upgraded with STARTTLS, which the server must
    /// offer), `tls` (implicit TLS from the first byte, "smtps") or `none` (plain text:
    /// only for a relay on this host or network).
    #[serde(default)]
    pub tls: TlsMode,
    /// User name for AUTH (PLAIN or LOGIN); needs `password`.
    pub username: Option<String>,
    /// Password for AUTH. `password_file` reads it from a file.
    pub password: Option<Secret>,
    /// Extra PEM file of CA certificates to trust beside the bundled web PKI roots, for a
    /// private relay.
    pub ca_file: Option<PathBuf>,
    /// Accept any certificate (expired, self-signed, another host's). Default: false.
    #[serde(default)]
    pub accept_invalid_certs: bool,
}

/// How the connection to the relay is protected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[schemars(rename = "EmailTlsMode")]
pub enum TlsMode {
    /// Plain text.
    None,
    /// Plain, then upgraded with STARTTLS before anything else is sent; a server without
    /// STARTTLS fails the send.
    #[default]
    Starttls,
    /// TLS from the first byte.
    Tls,
}

impl TlsMode {
    pub(crate) fn default_port(self) -> u16 {
        match self {
            TlsMode::None => 25,
            TlsMode::Starttls => 587,
            TlsMode::Tls => 465,
        }
    }
}

impl Spec {
    /// Makes `smtp.ca_file` relative to `base` (the config file's directory).
    pub fn resolve_paths(&mut self, base: &std::path::Path) {
        if let Some(f) = &mut self.smtp.ca_file
            && f.is_relative()
        {
            *f = base.join(&*f);
        }
    }

    /// Every problem, without I/O (the CA file is read at build time).
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let s = &self.smtp;
        let host = s.host.trim();
        if host.is_empty() {
            errs.push(FieldError::new("smtp.host", "must not be empty"));
        } else if host.contains("://") || host.contains(['/', ' ', '@']) {
            errs.push(FieldError::new(
                "smtp.host",
                "must be a host name or ip address alone (no scheme, port, path or user)",
            ));
        } else if host.contains(':') && host.parse::<std::net::Ipv6Addr>().is_err() {
            errs.push(FieldError::new(
                "smtp.host",
                "must be a host name or ip address alone (the port goes in smtp.port)",
            ));
        }
        if s.port == Some(0) {
            errs.push(FieldError::new("smtp.port", "must be 1-65535"));
        }
        match (&s.username, &s.password) {
            (Some(u), _) if u.is_empty() => {
                errs.push(FieldError::new("smtp.username", "must not be empty"));
            }
            (Some(_), None) => {
                errs.push(FieldError::new(
                    "smtp.password",
                    "a username needs a password",
                ));
            }
            (None, Some(_)) => {
                errs.push(FieldError::new(
                    "smtp.username",
                    "a password needs a username",
                ));
            }
            _ => {}
        }
        if s.password.is_some() && s.tls == TlsMode::None && !is_loopback(host) {
            errs.push(FieldError::new(
                "smtp.tls",
                "a password is never sent in plain text: use tls: starttls or tls",
            ));
        }
        if s.tls == TlsMode::None && (s.ca_file.is_some() || s.accept_invalid_certs) {
            errs.push(FieldError::new(
                "smtp.tls",
                "ca_file and accept_invalid_certs need tls: starttls or tls",
            ));
        }
        if let Err(e) = mailbox(&self.from) {
            errs.push(FieldError::new("from", e));
        }
        if self.to.is_empty() {
            errs.push(FieldError::new("to", "at least one recipient is needed"));
        }
        for (i, t) in self.to.iter().enumerate() {
            if let Err(e) = mailbox(t) {
                errs.push(FieldError::new(format!("to[{i}]"), e));
            }
        }
        if let Some(p) = &self.subject_prefix
            && p.chars().any(char::is_control)
        {
            errs.push(FieldError::new(
                "subject_prefix",
                "must be one line without control characters",
            ));
        }
        if let Some(e) = check_timeout(self.timeout) {
            errs.push(FieldError::new("timeout", e));
        }
        errs
    }
}

/// Parses a mailbox (`a@b.example`, `Name <a@b.example>`). Errors never repeat the text.
pub(crate) fn mailbox(s: &str) -> Result<Mailbox, String> {
    Mailbox::from_str(s.trim()).map_err(|e| {
        format!(
            "invalid mailbox (write a@example.com or \"Name <a@example.com>\"): {}",
            e.to_string().trim_end_matches('.').to_lowercase()
        )
    })
}

/// 127.0.0.1, ::1, localhost: where a plain-text password does not leave the host.
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
