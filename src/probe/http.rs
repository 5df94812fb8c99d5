//! `kind: http`: one HTTP request over a fresh connection, timed phase by phase the way
//! blackbox_exporter reports it (`resolve`, `connect`, `tls`, `processing`, `transfer`),
//! then checked against expectations (status, latency, body, headers, size).
//!
//! The request runs on hyper over a connection this module resolves (hickory), connects and
//! TLS-wraps (rustls) itself, so each step is timed and the IP recorded. The body is read up
//! to a cap and never further: a 10 GB response costs at most `max_body` bytes of reading and
//! nothing of memory unless a body expectation needs the text.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{CheckCx, FieldError, Observation};
use crate::units::{ByteSize, Dur};

/// Default cap on the response body read by a probe.
pub const DEFAULT_MAX_BODY: u64 = 10 << 20;

/// An HTTP probe.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// The request to send.
    pub request: Request,
    /// What a good answer looks like. Without it: a 2xx status.
    #[serde(default)]
    pub expect: Expect,
    /// Follow redirects (3xx with `Location`), each on a fresh connection. Default: true.
    #[serde(default = "yes")]
    pub follow_redirects: bool,
    /// Most redirects to follow before failing. Default: 10.
    #[serde(default = "ten")]
    pub max_redirects: u32,
    /// TLS options for https URLs.
    #[serde(default)]
    pub tls: TlsOptions,
    /// Address family to use: `any` (default: the first address the resolver gives),
    /// `ipv4` or `ipv6`.
    #[serde(default)]
    pub ip: IpPreference,
}

fn yes() -> bool {
    true
}
fn ten() -> u32 {
    10
}

/// The request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// `http://` or `https://` URL. Userinfo in the URL is never shown in output.
    pub url: String,
    /// HTTP method. Default: GET.
    #[serde(default = "get")]
    pub method: String,
    /// Request headers. Values may hold secrets (`Authorization`); they are never shown.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Request body, sent as is (for writes: POST, PUT, PATCH).
    #[serde(default)]
    pub body: Option<String>,
}

fn get() -> String {
    "GET".into()
}

/// Expectations. Every one given must hold for the probe to be up.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Accepted status codes: numbers (`200`), ranges (`"200-299"`) or classes (`"2xx"`).
    /// Default: any 2xx.
    #[serde(default)]
    pub status: Vec<StatusPattern>,
    /// Fail when the whole check takes this long or longer.
    pub latency_under: Option<Dur>,
    /// The body must contain this text.
    pub body_contains: Option<String>,
    /// The body must not contain this text.
    pub body_not_contains: Option<String>,
    /// The body must match this regular expression.
    pub body_regex: Option<String>,
    /// JSON pointers (RFC 6901) into the body, each with the value it must equal,
    /// e.g. `{"/status": "ok", "/db/writable": true}`.
    #[serde(default)]
    pub json: BTreeMap<String, serde_json::Value>,
    /// Response headers that must be present, each with a regular expression its value
    /// must match (`".*"` for presence only). Names are case-insensitive.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Largest body accepted; reading stops past it and the probe fails. Default: 10 MiB.
    pub max_body: Option<ByteSize>,
}

/// One accepted status: a code, a range `"200-299"` or a class `"2xx"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusPattern {
    pub lo: u16,
    pub hi: u16,
}

impl StatusPattern {
    pub fn matches(&self, code: u16) -> bool {
        (self.lo..=self.hi).contains(&code)
    }
    pub fn parse(s: &str) -> Result<StatusPattern, String> {
        let t = s.trim();
        let bad = || format!("invalid status {t:?} (write 200, \"200-299\" or \"2xx\")");
        let code = |x: &str| -> Result<u16, String> {
            let n: u16 = x.trim().parse().map_err(|_| bad())?;
            if (100..=599).contains(&n) {
                Ok(n)
            } else {
                Err(format!("status {n} is outside 100-599"))
            }
        };
        if let Some(class) = t.strip_suffix("xx").or_else(|| t.strip_suffix("XX")) {
            let d: u16 = class.parse().map_err(|_| bad())?;
            if !(1..=5).contains(&d) {
                return Err(bad());
            }
            return Ok(StatusPattern {
                lo: d * 100,
                hi: d * 100 + 99,
            });
        }
        if let Some((a, b)) = t.split_once('-') {
            let (lo, hi) = (code(a)?, code(b)?);
            if lo > hi {
                return Err(format!("status range {t:?} is empty"));
            }
            return Ok(StatusPattern { lo, hi });
        }
        let c = code(t)?;
        Ok(StatusPattern { lo: c, hi: c })
    }
}

impl<'de> Deserialize<'de> for StatusPattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        let s = match Raw::deserialize(d)? {
            Raw::N(n) => n.to_string(),
            Raw::S(s) => s,
        };
        StatusPattern::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// TLS options.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsOptions {
    /// Skip certificate verification (the expiry is still recorded). Default: false.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// Extra PEM file of CA certificates to trust, beside the bundled web PKI roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// Name to send as SNI and verify the certificate against (default: the URL's host).
    pub server_name: Option<String>,
}

/// Address family preference.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IpPreference {
    #[default]
    Any,
    Ipv4,
    Ipv6,
}

impl Spec {
    /// Every problem, without I/O (the CA file is read at build time).
    pub fn validate(&self) -> Vec<FieldError> {
        todo!("http validate")
    }

    /// The URL's host, for the per-host concurrency cap.
    pub fn target_host(&self) -> Option<String> {
        todo!("http target_host")
    }

    /// Compiles regexes, reads the CA file, builds the TLS config.
    pub fn build(&self) -> Result<Check, String> {
        todo!("http build")
    }
}

/// A runnable HTTP probe.
pub struct Check {
    pub spec: Spec,
}

impl Check {
    pub async fn check(&self, _cx: &CheckCx<'_>) -> Observation {
        todo!("http check")
    }
}
