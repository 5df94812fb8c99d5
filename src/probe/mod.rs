//! Probes: the closed set of probe kinds, what one check returns ([`Observation`]), and what
//! a check may use ([`CheckCx`], [`Env`]).
//!
//! Adding a kind is one file under `probe/` (its `Spec` with `///` docs, a pure `validate`,
//! a `build` into a runnable probe, its `check`, and its tests) plus one line in the
//! `kinds!` list below. A forgotten arm anywhere is a compile error.
//!
//! Invariant: a check never fails with `Err` or a panic because the target misbehaves. A
//! target that is down, slow, hostile or absent is an `Observation` with `ok: false` and a
//! reason. Every check has a deadline (`CheckCx::deadline`) that it honours itself, so it can
//! say which phase ran out of time; the scheduler adds an outer hard stop as a backstop.

pub mod backup;
pub mod db_write;
pub mod dns;
pub mod http;
pub mod location;
pub(crate) mod net;
pub mod push;
pub mod redis;
pub mod tcp;
#[cfg(test)]
pub(crate) mod testkit;
pub mod tls;
#[cfg(test)]
mod tls_reasons;
pub mod websocket;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

/// What one check saw. Durations come from the monotonic clock.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Observation {
    /// The verdict: every expectation held.
    pub ok: bool,
    /// Why the check failed (`ok == false`), in words an on-call engineer can act on.
    pub error: Option<String>,
    /// Whole check, start to verdict.
    #[serde(serialize_with = "ser_ms")]
    pub duration: Duration,
    /// Phase timings in order, named as blackbox_exporter names them
    /// (`resolve`, `connect`, `tls`, `processing`, `transfer` for HTTP).
    #[serde(serialize_with = "ser_phases")]
    pub phases: Vec<(&'static str, Duration)>,
    /// HTTP status of the last response, when there was one.
    pub status_code: Option<u16>,
    /// The address actually probed.
    pub ip: Option<IpAddr>,
    /// Earliest `notAfter` in the peer's certificate chain, unix seconds.
    pub cert_expiry: Option<i64>,
    /// Bytes of response body read (HTTP) or the size measured (files).
    pub size: Option<u64>,
    /// Redirects followed.
    pub redirects: u32,
    /// What the last TLS handshake of the check showed, for blackbox_exporter's TLS series.
    #[serde(skip)]
    pub tls: Option<Box<TlsSeen>>,
    /// HTTP: what the last response was.
    #[serde(skip)]
    pub http: Option<HttpSeen>,
    /// Whether a regular expression on the body or the answer failed the check (blackbox's
    /// `probe_failed_due_to_regex`); `None` where the kind has none to apply.
    #[serde(skip)]
    pub failed_due_to_regex: Option<bool>,
    /// DNS: the answer's sections.
    #[serde(skip)]
    pub dns: Option<DnsSeen>,
    /// Push: the pings as judged.
    #[serde(skip)]
    pub push: Option<PushSeen>,
}

/// A TLS handshake as blackbox_exporter reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSeen {
    /// `TLS 1.2`, `TLS 1.3`.
    pub version: &'static str,
    /// Earliest `notAfter` of the chain the peer sent, unix seconds.
    pub chain_expiry: Option<i64>,
    /// The leaf certificate: SHA-256 of its DER (lower-case hex), subject, issuer and
    /// subject alternative names (comma-separated), as blackbox's `probe_ssl_last_chain_info`.
    pub fingerprint_sha256: String,
    pub subject: String,
    pub issuer: String,
    pub sans: String,
}

/// The last HTTP response of a check.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct HttpSeen {
    /// `1.0`, `1.1`, `2`.
    pub version: f64,
    /// Its `Content-Length` header, -1 without one (as blackbox).
    pub content_length: i64,
    /// It came over TLS.
    pub ssl: bool,
}

/// A DNS answer's section sizes, and the zone's serial when the answer holds a SOA.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DnsSeen {
    pub answer: u32,
    pub authority: u32,
    pub additional: u32,
    pub serial: Option<u32>,
}

/// A push probe's pings, for its series (a push has no duration or address of its own).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PushSeen {
    /// Unix ms of the last ping of any kind.
    pub last_ping_at: Option<i64>,
    /// The exit status the job last reported.
    pub exit_status: Option<i64>,
}

fn ser_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}

/// Longest reason kept, in characters.
pub const MAX_REASON: usize = 1000;

/// `text` on one line: control characters escaped (`\n`, `\u{1b}`), cut to [`MAX_REASON`]
/// characters with an ellipsis.
pub fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_REASON + 8));
    for (n, c) in text.chars().enumerate() {
        if n >= MAX_REASON {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn ser_phases<S: serde::Serializer>(
    p: &[(&'static str, Duration)],
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(Some(p.len()))?;
    for (k, v) in p {
        m.serialize_entry(k, &(v.as_secs_f64() * 1000.0))?;
    }
    m.end()
}

impl Observation {
    /// A failed observation with its reason, made one line of at most [`MAX_REASON`]
    /// characters: a peer's bytes quoted in a reason (a server's error text, a body) can
    /// hold newlines, escapes for a terminal, or megabytes.
    pub fn fail(mut self, reason: impl Into<String>) -> Observation {
        self.ok = false;
        self.error = Some(one_line(&reason.into()));
        self
    }

    /// Add the time of one phase (adds up when a phase repeats, e.g. across redirects).
    pub fn phase(&mut self, name: &'static str, d: Duration) {
        if let Some(p) = self.phases.iter_mut().find(|(n, _)| *n == name) {
            p.1 += d;
        } else {
            self.phases.push((name, d));
        }
    }
}

/// Shared, read-only things checks use: the DNS resolver and TLS roots. Built once per
/// daemon (or per `probectl run`).
pub struct Env {
    pub resolver: hickory_resolver::TokioResolver,
    /// Root certificates trusted by default (webpki roots plus the system's, when readable).
    pub roots: Arc<rustls::RootCertStore>,
    /// Heartbeats pushed in by jobs, for `kind: push` (filled by the daemon).
    pub push: push::Board,
    /// Whether this daemon is blind, and the other locations' heartbeats, for
    /// `kind: location` (filled by the daemon).
    pub locations: location::Board,
    /// Sent as `User-Agent` by HTTP and websocket probes that do not set their own:
    /// `probed/<version> (<instance>; <location>)`, so a target's owner can tell the
    /// locations apart in their logs ([`Env::with_origin`]); `probed/<version>` alone until
    /// it is set.
    pub user_agent: ::http::HeaderValue,
}

impl Env {
    /// The system resolver (`/etc/resolv.conf`, `/etc/hosts`) and the bundled web PKI roots.
    /// `nameservers` replaces the system's nameservers when non-empty.
    pub fn new(nameservers: &[std::net::SocketAddr]) -> Result<Env, String> {
        use hickory_resolver::config::{NameServerConfig, ResolverConfig};
        use hickory_resolver::net::runtime::TokioRuntimeProvider;
        let provider = TokioRuntimeProvider::default();
        let builder = if nameservers.is_empty() {
            match hickory_resolver::TokioResolver::builder(provider.clone()) {
                Ok(b) => b,
                // No usable /etc/resolv.conf: names still resolve from /etc/hosts.
                Err(_) => hickory_resolver::TokioResolver::builder_with_config(
                    ResolverConfig::default(),
                    provider,
                ),
            }
        } else {
            let mut cfg = ResolverConfig::default();
            for ns in nameservers {
                let mut server = NameServerConfig::udp_and_tcp(ns.ip());
                for c in &mut server.connections {
                    c.port = ns.port();
                }
                cfg.add_name_server(server);
            }
            hickory_resolver::TokioResolver::builder_with_config(cfg, provider)
        };
        let mut builder = builder;
        // A probe has its own deadline; one try per nameserver keeps DNS inside it.
        builder.options_mut().attempts = 1;
        // No cache: each check pays for its DNS lookup as a new user would, and the resolve
        // phase measures the resolver, not a cache hit.
        builder.options_mut().cache_size = 0;
        let resolver = builder
            .build()
            .map_err(|e| format!("cannot build the DNS resolver: {e}"))?;
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        Ok(Env {
            resolver,
            roots: Arc::new(roots),
            push: Default::default(),
            locations: Default::default(),
            user_agent: ::http::HeaderValue::from_static(concat!(
                "probed/",
                env!("CARGO_PKG_VERSION")
            )),
        })
    }

    /// Says where requests come from: `User-Agent: probed/<version> (<instance>;
    /// <location>)`. Characters a header cannot carry become `?`.
    pub fn with_origin(mut self, instance: &str, location: &str) -> Env {
        let ua = format!(
            "probed/{} ({instance}; {location})",
            env!("CARGO_PKG_VERSION")
        );
        let ua: String = ua
            .chars()
            .map(|c| {
                if c.is_ascii_graphic() || c == ' ' {
                    c
                } else {
                    '?'
                }
            })
            .collect();
        if let Ok(v) = ::http::HeaderValue::from_str(&ua) {
            self.user_agent = v;
        }
        self
    }
}

/// What one check gets: the shared environment and its hard deadline.
pub struct CheckCx<'a> {
    pub env: &'a Env,
    pub deadline: Instant,
}

macro_rules! kinds {
    ($($name:literal => $variant:ident($module:ident)),* $(,)?) => {
        /// The configuration of one probe's kind-specific part, tagged by `kind`.
        // One value per configured probe, alive as long as the probe: boxing the larger
        // kinds would only add an indirection to every check.
        /// Shared (`Arc`): the config and the compiled check hold the same spec.
        #[derive(Debug, Clone)]
        pub enum ProbeSpec { $($variant(std::sync::Arc<$module::Spec>)),* }

        /// A probe ready to run: its spec with everything compiled (regexes, TLS config).
        /// Boxed: each probe's task holds one, and the largest kind is about 1 KB while an
        /// HTTP check needs less; unboxed, every task paid for the largest, more than once.
        pub enum Probe { $($variant(Box<$module::Check>)),* }

        /// Every kind name, for "did you mean" and for docs.
        pub const KINDS: &[&str] = &[$($name),*];

        /// Each kind's own fields (its `Spec`) as a JSON Schema, by kind name, for
        /// `probectl schema`. Nested types land in `generator`'s definitions.
        pub fn kind_schemas(
            generator: &mut schemars::SchemaGenerator,
        ) -> Vec<(&'static str, schemars::Schema)> {
            vec![$(($name, <$module::Spec as schemars::JsonSchema>::json_schema(generator))),*]
        }

        impl ProbeSpec {
            /// Deserializes the kind-specific fields (everything but the common ones).
            /// `Err(())` means `kind` names no kind (the caller reports it, with a suggestion).
            #[allow(clippy::result_unit_err)]
            pub fn from_value(kind: &str, v: serde_yaml::Value)
                -> Result<Result<ProbeSpec, serde_path_to_error::Error<serde_yaml::Error>>, ()> {
                match kind {
                    $($name => Ok(serde_path_to_error::deserialize(v)
                        .map(|s| ProbeSpec::$variant(std::sync::Arc::new(s)))),)*
                    _ => Err(()),
                }
            }
            pub fn kind(&self) -> &'static str {
                match self { $(ProbeSpec::$variant(_) => $name),* }
            }
            /// Every problem in the spec, found without I/O.
            pub fn validate(&self) -> Vec<crate::text::FieldError> {
                match self { $(ProbeSpec::$variant(s) => s.validate()),* }
            }
            /// Makes relative file paths in the spec relative to `base` (the directory of the
            /// file that defines the probe).
            pub fn resolve_paths(&mut self, base: &std::path::Path) {
                match self { $(ProbeSpec::$variant(s) => std::sync::Arc::make_mut(s).resolve_paths(base)),* }
            }
            /// The host this probe talks to, for the per-host concurrency cap.
            pub fn target_host(&self) -> Option<String> {
                match self { $(ProbeSpec::$variant(s) => s.target_host()),* }
            }
            /// What the probe targets, as Prometheus' `instance` label names it: a URL
            /// without userinfo, query or fragment (they can hold secrets), `host:port`, a
            /// path. `None` for kinds with no target of their own (push, location).
            pub fn instance(&self) -> Option<String> {
                match self { $(ProbeSpec::$variant(s) => s.instance()),* }
            }
            /// Compiles the spec into a runnable probe. Only fails on what `validate` reports.
            pub fn build(&self) -> Result<Probe, String> {
                match self { $(ProbeSpec::$variant(s) => s.build().map(|c| Probe::$variant(Box::new(c)))),* }
            }
        }

        impl Probe {
            /// One check. Never returns an error: trouble is an `Observation` with a reason.
            pub async fn check(&self, cx: &CheckCx<'_>) -> Observation {
                match self { $(Probe::$variant(p) => p.check(cx).await),* }
            }
        }
    };
}

kinds! {
    "http" => Http(http),
    "websocket" => Websocket(websocket),
    "db_write" => DbWrite(db_write),
    "backup" => Backup(backup),
    "redis" => Redis(redis),
    "tcp" => Tcp(tcp),
    "tls" => Tls(tls),
    "dns" => Dns(dns),
    "push" => Push(push),
    "location" => Location(location),
}

/// Timeout helper for checks: runs `fut` until the check's deadline. On expiry the error
/// names the phase, e.g. "timed out after 5s while connecting".
pub async fn until<T>(
    cx: &CheckCx<'_>,
    started: Instant,
    phase: &str,
    fut: impl std::future::Future<Output = T>,
) -> Result<T, String> {
    match tokio::time::timeout_at(cx.deadline, fut).await {
        Ok(v) => Ok(v),
        Err(_) => Err(format!(
            "timed out after {} while {phase}",
            crate::units::format_duration(round_ms(started.elapsed()))
        )),
    }
}

fn round_ms(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reason_is_one_line_of_at_most_1000_characters() {
        let obs = Observation::default().fail("-ERR line one\r\nline two\t\u{1b}[31mred");
        assert_eq!(
            obs.error.as_deref(),
            Some("-ERR line one\\r\\nline two\\t\\u{1b}[31mred")
        );
        let long = "é".repeat(5000);
        let cut = Observation::default().fail(long).error.unwrap();
        assert_eq!(cut.chars().count(), MAX_REASON + 1);
        assert!(cut.ends_with('…'));
    }
}
