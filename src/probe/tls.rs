//! `kind: tls`: connect, do a TLS handshake and judge the certificate chain the server sent:
//! trusted (the web PKI roots plus `ca_file`), valid for the name, not expired and not about to
//! expire (`min_days_left`). Phases `resolve`, `connect`, `tls`; the earliest `notAfter` of the
//! chain goes to `cert_expiry` (blackbox_exporter's `probe_ssl_earliest_cert_expiry`).
//!
//! The handshake itself accepts any chain (it still checks that the server holds the key of
//! the certificate it sent) and the chain is judged right after it, by [`PeerCheck`]. So a
//! check reports the expiry of a chain it rejects, can skip the chain check and keep the
//! expiry check, and words its own reasons. Nothing is written to the connection before the
//! judgement, which is why `tcp` with `tls: true` can use the same path.
//!
//! The connection helpers (resolve, connect, the handshake itself, error text) are in
//! `net`; [`PeerCheck`] (handshake and judgement) is shared with `tcp`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, RootCertStore};
use schemars::JsonSchema;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::net::{self, IpPreference, check_host, host_key, resolve_path};
use super::{CheckCx, Observation};
use crate::text::FieldError;

/// Settings of a `tls` probe.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Host name or IP address to connect to.
    pub host: String,
    /// TCP port. Default: 443.
    #[serde(default = "https_port")]
    pub port: u16,
    /// Name sent as SNI and checked against the certificate. Default: `host`.
    pub server_name: Option<String>,
    /// PEM file of CA certificates to trust beside the bundled web PKI roots (a private CA).
    /// Relative to the probe file's directory.
    pub ca_file: Option<PathBuf>,
    /// Fail when the earliest expiry in the chain is fewer than this many days away.
    /// Default: 14.
    #[serde(default = "fourteen")]
    pub min_days_left: u32,
    /// Check that the chain leads to a trusted root (web PKI roots plus `ca_file`). With
    /// `false` the chain is still read: expiry (and the name, with `check_hostname`) are
    /// still checked. Default: true.
    #[serde(default = "yes")]
    pub check_chain: bool,
    /// Check that the certificate is valid for `server_name` (its subjectAltNames).
    /// Default: true.
    #[serde(default = "yes")]
    pub check_hostname: bool,
    /// Address family: `any` (default: each address the resolver gives, in its order),
    /// `ipv4` (A records only) or `ipv6` (AAAA records only).
    #[serde(default)]
    pub ip: IpPreference,
}

fn https_port() -> u16 {
    443
}
fn fourteen() -> u32 {
    14
}
fn yes() -> bool {
    true
}

/// Largest `min_days_left` accepted: beyond it every certificate would fail.
pub(crate) const MAX_DAYS_LEFT: u32 = 3650;

impl Spec {
    /// Every problem, without I/O (the CA file is read by `build`).
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if let Err(e) = check_host(&self.host, self.ip) {
            errs.push(FieldError::new("host", e));
        }
        if self.port == 0 {
            errs.push(FieldError::new(
                "port",
                "port 0 is not a port (use 1-65535)",
            ));
        }
        if let Some(name) = &self.server_name
            && let Err(e) = net::server_name(name)
        {
            errs.push(FieldError::new("server_name", e));
        }
        if self.min_days_left > MAX_DAYS_LEFT {
            errs.push(FieldError::new(
                "min_days_left",
                format!(
                    "{} days is more than any certificate lasts (at most {MAX_DAYS_LEFT})",
                    self.min_days_left
                ),
            ));
        }
        errs
    }

    /// Makes `ca_file` relative to `base` (the directory of the probe's file).
    pub fn resolve_paths(&mut self, base: &Path) {
        resolve_path(&mut self.ca_file, base);
    }

    /// The host (lower-case, IPv6 without brackets), for the per-host concurrency cap.
    pub fn target_host(&self) -> Option<String> {
        Some(host_key(&self.host))
    }

    pub fn instance(&self) -> Option<String> {
        Some(crate::probe::net::host_port_instance(&self.host, self.port))
    }

    /// Reads the CA file and readies the chain judgement.
    pub fn build(&self) -> Result<Check, String> {
        if let Some(e) = self.validate().into_iter().next() {
            return Err(format!("{}: {}", e.path, e.message));
        }
        let host = host_key(&self.host);
        let name = self.server_name.clone().unwrap_or_else(|| host.clone());
        let peer = PeerCheck::new(
            &name,
            self.ca_file.as_deref(),
            self.check_chain,
            self.check_hostname,
            Some(self.min_days_left),
        )?;
        Ok(Check {
            host,
            port: self.port,
            ip: self.ip,
            peer,
        })
    }
}

/// A runnable `tls` probe.
pub struct Check {
    host: String,
    port: u16,
    ip: IpPreference,
    peer: PeerCheck,
}

impl Check {
    /// Resolve, connect, handshake, judge the chain; the connection is closed without a byte
    /// of application data.
    pub async fn check(&self, cx: &CheckCx<'_>) -> Observation {
        let started = Instant::now();
        let mut obs = Observation::default();
        let result = match net::connect(cx, started, &mut obs, &self.host, self.port, self.ip).await
        {
            Ok(tcp) => self
                .peer
                .handshake(cx, started, &mut obs, tcp)
                .await
                .map(drop),
            Err(e) => Err(e),
        };
        obs.duration = started.elapsed();
        match result {
            Ok(()) => {
                obs.ok = true;
                obs
            }
            Err(reason) => obs.fail(reason),
        }
    }
}

/// How a peer's certificate chain is judged, and the TLS handshake that reads it.
pub(crate) struct PeerCheck {
    /// The name the certificate must be valid for, as shown in reasons.
    name: String,
    server_name: ServerName<'static>,
    /// The certificates of `ca_file`, trusted beside `Env::roots`.
    extra_roots: Option<net::CaFile>,
    check_chain: bool,
    check_hostname: bool,
    /// Fail when the earliest expiry is fewer days away; `None`: only record it.
    min_days_left: Option<u32>,
}

impl PeerCheck {
    /// Reads `ca_file` (errors start with `ca_file:`); `name` is the SNI and the name checked.
    pub(crate) fn new(
        name: &str,
        ca_file: Option<&Path>,
        check_chain: bool,
        check_hostname: bool,
        min_days_left: Option<u32>,
    ) -> Result<PeerCheck, String> {
        let server_name = net::server_name(name).map_err(|e| format!("server_name: {e}"))?;
        let extra_roots = ca_file
            .map(net::read_ca_file)
            .transpose()
            .map_err(|e| format!("ca_file: {e}"))?;
        Ok(PeerCheck {
            name: name.to_string(),
            server_name,
            extra_roots,
            check_chain,
            check_hostname,
            min_days_left,
        })
    }

    /// The TLS handshake over `io`, then the judgement of the chain. Records the `tls` phase
    /// (handshake and judgement) and `cert_expiry`.
    pub(crate) async fn handshake<IO>(
        &self,
        cx: &CheckCx<'_>,
        started: Instant,
        obs: &mut Observation,
        io: IO,
    ) -> Result<tokio_rustls::client::TlsStream<IO>, String>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let t = Instant::now();
        let result = self.handshake_inner(cx, started, obs, io).await;
        obs.phase("tls", t.elapsed());
        result
    }

    async fn handshake_inner<IO>(
        &self,
        cx: &CheckCx<'_>,
        started: Instant,
        obs: &mut Observation,
        io: IO,
    ) -> Result<tokio_rustls::client::TlsStream<IO>, String>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let tls = net::tls_handshake(cx, started, client_config()?, &self.name, io).await?;
        let conn = tls.get_ref().1;
        let chain = conn.peer_certificates().unwrap_or_default();
        let verdict = self.judge(chain, &cx.env.roots, UnixTime::now());
        obs.cert_expiry = verdict.expiry;
        obs.tls = Some(Box::new(net::tls_seen(conn.protocol_version(), chain)));
        verdict.result.map(|()| tls)
    }

    /// Judges `chain` (leaf first, as sent) at `now`: expiry of the leaf, the path to a
    /// trusted root, the name, then `min_days_left` over the chain. Pure, so tests can move
    /// the clock.
    fn judge(&self, chain: &[CertificateDer<'_>], roots: &RootCertStore, now: UnixTime) -> Verdict {
        let fail = |reason: String, expiry| Verdict {
            expiry,
            result: Err(reason),
        };
        let Some(leaf_der) = chain.first() else {
            return fail("tls: the server sent no certificate".into(), None);
        };
        let now_s = now.as_secs() as i64;
        // Unparseable certificates past the leaf are left to the chain check.
        let mut certs: Vec<(usize, CertInfo)> = chain
            .iter()
            .enumerate()
            .filter_map(|(i, der)| CertInfo::parse(der).map(|c| (i, c)))
            .collect();
        if certs.first().is_none_or(|(i, _)| *i != 0) {
            return fail(
                "tls: the server's certificate cannot be parsed as x.509".into(),
                None,
            );
        }
        let leaf = certs[0].1.clone();
        if leaf.not_after <= now_s {
            return fail(
                format!(
                    "certificate for {} expired {} ago (notAfter {})",
                    self.name,
                    span(now_s - leaf.not_after),
                    date(leaf.not_after)
                ),
                Some(earliest(&certs)),
            );
        }
        if leaf.not_before > now_s {
            return fail(
                format!(
                    "certificate for {} is not valid before {} (check the certificate or this \
                     machine's clock)",
                    self.name,
                    date(leaf.not_before)
                ),
                Some(earliest(&certs)),
            );
        }
        let parsed = match rustls::server::ParsedCertificate::try_from(leaf_der) {
            Ok(p) => p,
            Err(e) => {
                return fail(
                    format!("tls: {}", crate::text::rustls_text(&e)),
                    Some(earliest(&certs)),
                );
            }
        };
        if self.check_chain {
            if let Err(e) = self.verify_chain(leaf_der, &parsed, &chain[1..], roots, now) {
                let reason = match expired_in_chain(&e, &certs, now_s) {
                    Some(c) => format!(
                        "certificate {} in the chain for {} expired {} ago (notAfter {})",
                        c.subject,
                        self.name,
                        span(now_s - c.not_after),
                        date(c.not_after)
                    ),
                    None => format!("tls: {}", crate::text::rustls_text(&e)),
                };
                return fail(reason, Some(earliest(&certs)));
            }
            // The chain verified, so expired extra certificates the server sends (an old
            // cross-signed root, say) are on no path a client uses: they do not count.
            certs.retain(|(i, c)| *i == 0 || c.not_after > now_s);
        }
        let expiry = earliest(&certs);
        if self.check_hostname
            && let Err(e) = rustls::client::verify_server_name(&parsed, &self.server_name)
        {
            return fail(
                format!("tls: {}", crate::text::rustls_text(&e)),
                Some(expiry),
            );
        }
        // Without the chain check an expired certificate anywhere in the chain fails.
        if let Some((_, c)) = certs.iter().find(|(_, c)| c.not_after <= now_s) {
            return fail(
                format!(
                    "certificate {} in the chain for {} expired {} ago (notAfter {})",
                    c.subject,
                    self.name,
                    span(now_s - c.not_after),
                    date(c.not_after)
                ),
                Some(expiry),
            );
        }
        if let Some(min) = self.min_days_left {
            let (i, c) = certs
                .iter()
                .min_by_key(|(_, c)| c.not_after)
                .unwrap_or(&certs[0]);
            let left = c.not_after - now_s;
            if left < i64::from(min) * 86_400 {
                let whose = if *i == 0 {
                    format!("certificate for {}", self.name)
                } else {
                    format!("certificate {} in the chain for {}", c.subject, self.name)
                };
                return fail(
                    format!("{whose} expires in {} (min_days_left {min})", span(left)),
                    Some(expiry),
                );
            }
        }
        Verdict {
            expiry: Some(expiry),
            result: Ok(()),
        }
    }

    /// A path from the leaf to a root of `roots` or, failing that for want of an issuer, to
    /// one of `ca_file`; or a leaf that is exactly a certificate of `ca_file` (a self-signed
    /// certificate that is its own CA, see [`net::check_ca_file_leaf`]; its name and dates are
    /// judged by the caller).
    fn verify_chain(
        &self,
        leaf_der: &CertificateDer<'_>,
        leaf: &rustls::server::ParsedCertificate<'_>,
        intermediates: &[CertificateDer<'_>],
        roots: &RootCertStore,
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        let algs = net::provider().signature_verification_algorithms.all;
        let verify = |store: &RootCertStore| {
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                leaf,
                store,
                intermediates,
                now,
                algs,
            )
        };
        let result = match (verify(roots), &self.extra_roots) {
            (Err(e), Some(extra)) if is_unknown_issuer(&e) => verify(&extra.roots),
            (result, _) => result,
        };
        match (result, &self.extra_roots) {
            (Err(_), Some(extra)) if extra.holds(leaf_der) => Ok(()),
            (result, _) => result,
        }
    }
}

/// The outcome of judging a chain: the earliest expiry counted, and the verdict.
struct Verdict {
    expiry: Option<i64>,
    result: Result<(), String>,
}

/// What the judgement needs of one certificate.
#[derive(Clone)]
struct CertInfo {
    not_before: i64,
    not_after: i64,
    /// The subject's common name, quoted, or the whole subject.
    subject: String,
}

impl CertInfo {
    fn parse(der: &CertificateDer<'_>) -> Option<CertInfo> {
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
        let subject = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_string)
            .unwrap_or_else(|| cert.subject().to_string());
        Some(CertInfo {
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            subject: format!("{subject:?}"),
        })
    }
}

fn earliest(certs: &[(usize, CertInfo)]) -> i64 {
    certs.iter().map(|(_, c)| c.not_after).min().unwrap_or(0)
}

fn is_unknown_issuer(e: &rustls::Error) -> bool {
    matches!(
        e,
        rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
    )
}

/// For an expiry error from the chain check, the expired certificate it is about.
fn expired_in_chain<'a>(
    e: &rustls::Error,
    certs: &'a [(usize, CertInfo)],
    now: i64,
) -> Option<&'a CertInfo> {
    use rustls::CertificateError::{Expired, ExpiredContext};
    match e {
        rustls::Error::InvalidCertificate(Expired | ExpiredContext { .. }) => certs
            .iter()
            .map(|(_, c)| c)
            .filter(|c| c.not_after <= now)
            .min_by_key(|c| c.not_after),
        _ => None,
    }
}

/// `3 days`, `1 day`, `5 hours`, `12 minutes`: a time span, rounded down, for reasons.
fn span(secs: i64) -> String {
    let secs = secs.max(0);
    let (n, unit) = if secs >= 86_400 {
        (secs / 86_400, "day")
    } else if secs >= 3600 {
        (secs / 3600, "hour")
    } else if secs >= 60 {
        (secs / 60, "minute")
    } else {
        (secs, "second")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

/// `2026-11-20 10:00 UTC`.
fn date(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0).map_or_else(
        || unix.to_string(),
        |d| d.format("%Y-%m-%d %H:%M UTC").to_string(),
    )
}

/// The one client config of every probe's handshake: chains are judged after it, so it holds
/// nothing per probe. No ALPN; no resumption (each check pays a full handshake, as a new
/// client would).
fn client_config() -> Result<Arc<ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
    CONFIG.get_or_init(|| net::accept_any_config(&[])).clone()
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, SocketAddr};
    use std::time::Duration;

    use super::*;
    use crate::probe::net::unix_now;
    use crate::probe::testkit::{
        assert_by_deadline, assert_field_errors, ca_signed, echo_server, env, hold, pem_file,
        phases, reason, refused_addr, run_in, self_signed, tcp_server,
    };

    const DAY: i64 = 86_400;

    /// A spec of this kind from YAML: [`testkit::spec`](crate::probe::testkit::spec), typed.
    fn spec(yaml: &str) -> Spec {
        crate::probe::testkit::spec(yaml)
    }

    #[test]
    fn validate_reports_every_problem_with_its_path() {
        let good = spec(
            "host: Example.COM\nport: 8443\nserver_name: api.internal\nca_file: ca.pem\n\
             min_days_left: 30\ncheck_chain: false\ncheck_hostname: false\nip: ipv4",
        );
        assert_eq!(good.validate(), vec![]);
        assert_eq!(good.port, 8443);
        assert_eq!(good.target_host().as_deref(), Some("example.com"));
        let defaults = spec("host: '[::1]'");
        assert_eq!(defaults.validate(), vec![]);
        assert_eq!(
            (
                defaults.port,
                defaults.min_days_left,
                defaults.check_chain,
                defaults.check_hostname
            ),
            (443, 14, true, true)
        );
        assert_eq!(defaults.target_host().as_deref(), Some("::1"));

        let cases: &[(&str, &[(&str, &str)])] = &[
            ("host: ''", &[("host", "host is empty")]),
            (
                "host: 'https://example.com'",
                &[("host", "without a scheme")],
            ),
            (
                "host: 'example.com:443'",
                &[("host", "write the port in `port`")],
            ),
            ("host: 'exa mple.com'", &[("host", "invalid host name")]),
            ("host: '[nope]'", &[("host", "invalid ipv6 address")]),
            ("host: 10.0.0.1\nip: ipv6", &[("host", "ipv6 asked for")]),
            ("host: '::1'\nip: ipv4", &[("host", "ipv4 asked for")]),
            ("host: h\nport: 0", &[("port", "port 0 is not a port")]),
            (
                "host: h\nserver_name: 'not a name'",
                &[("server_name", "invalid server name")],
            ),
            (
                "host: h\nmin_days_left: 4000",
                &[("min_days_left", "at most 3650")],
            ),
        ];
        for (yaml, want) in cases {
            assert_field_errors(yaml, &spec(yaml).validate(), want);
        }
        for yaml in ["host: h\nbogus: 1", "port: 443", "host: h\nport: 70000"] {
            assert!(serde_yaml::from_str::<Spec>(yaml).is_err(), "{yaml}");
        }
        let e = spec("host: h\nserver_name: 'not a name'")
            .build()
            .err()
            .unwrap();
        assert!(e.starts_with("server_name: invalid server name"), "{e}");
    }

    #[test]
    fn a_bad_ca_file_fails_at_build() {
        for (content, want) in [("", "no certificate in"), ("not pem", "no certificate in")] {
            let f = pem_file(content);
            let e = spec(&format!("host: h\nca_file: '{}'", f.path().display()))
                .build()
                .err()
                .unwrap();
            assert!(e.starts_with("ca_file: ") && e.contains(want), "{e}");
        }
        let e = spec("host: h\nca_file: /nonexistent/ca.pem")
            .build()
            .err()
            .unwrap();
        assert_eq!(
            e,
            "ca_file: cannot read /nonexistent/ca.pem: no such file or directory"
        );
        let mut s = spec("host: h\nca_file: certs/ca.pem");
        s.resolve_paths(Path::new("/etc/probed/probes"));
        assert_eq!(
            s.ca_file.as_deref(),
            Some(Path::new("/etc/probed/probes/certs/ca.pem"))
        );
        let mut s = spec("host: h\nca_file: /abs/ca.pem");
        s.resolve_paths(Path::new("/etc/probed"));
        assert_eq!(s.ca_file.as_deref(), Some(Path::new("/abs/ca.pem")));
    }

    #[tokio::test]
    async fn chains_are_judged_trust_name_and_expiry() {
        let good = ca_signed(&["127.0.0.1", "api.internal"], 90 * DAY + 12 * 3600);
        let soon = ca_signed(&["127.0.0.1"], 5 * DAY + 12 * 3600);
        let expired = ca_signed(&["127.0.0.1"], -(3 * DAY + 3600));
        let selfsigned = self_signed(&["127.0.0.1"]);
        let (good_ca, soon_ca, expired_ca) = (
            pem_file(&good.ca_pem),
            pem_file(&soon.ca_pem),
            pem_file(&expired.ca_pem),
        );
        let ca = |f: &tempfile::NamedTempFile| format!("ca_file: '{}'", f.path().display());
        let good_addr = echo_server(good.server.clone()).await;
        let soon_addr = echo_server(soon.server.clone()).await;
        let expired_addr = echo_server(expired.server.clone()).await;
        let self_addr = echo_server(selfsigned.server.clone()).await;
        let target = |a: SocketAddr| format!("host: 127.0.0.1\nport: {}", a.port());

        // (spec, expected reason or None for up, expected cert_expiry)
        let cases: Vec<(String, Option<String>, Option<i64>)> = vec![
            (
                format!("{}\n{}", target(good_addr), ca(&good_ca)),
                None,
                Some(good.leaf_not_after),
            ),
            (
                format!(
                    "{}\n{}\nserver_name: api.internal",
                    target(good_addr),
                    ca(&good_ca)
                ),
                None,
                Some(good.leaf_not_after),
            ),
            (
                target(good_addr),
                Some(
                    "tls: invalid peer certificate: unknown issuer (not signed by a trusted root)"
                        .into(),
                ),
                Some(good.leaf_not_after),
            ),
            (
                format!(
                    "{}\n{}\nserver_name: other.example",
                    target(good_addr),
                    ca(&good_ca)
                ),
                Some(
                    "tls: invalid peer certificate: certificate not valid for name \
                     \"other.example\"; certificate is only valid for "
                        .into(),
                ),
                Some(good.leaf_not_after),
            ),
            (
                format!(
                    "{}\n{}\nserver_name: other.example\ncheck_hostname: false",
                    target(good_addr),
                    ca(&good_ca)
                ),
                None,
                Some(good.leaf_not_after),
            ),
            (
                format!("{}\n{}\nmin_days_left: 91", target(good_addr), ca(&good_ca)),
                Some("certificate for 127.0.0.1 expires in 90 days (min_days_left 91)".into()),
                Some(good.leaf_not_after),
            ),
            (
                format!("{}\n{}", target(soon_addr), ca(&soon_ca)),
                Some("certificate for 127.0.0.1 expires in 5 days (min_days_left 14)".into()),
                Some(soon.leaf_not_after),
            ),
            (
                format!("{}\n{}\nmin_days_left: 5", target(soon_addr), ca(&soon_ca)),
                None,
                Some(soon.leaf_not_after),
            ),
            (
                format!("{}\n{}", target(expired_addr), ca(&expired_ca)),
                Some(format!(
                    "certificate for 127.0.0.1 expired 3 days ago (notAfter {})",
                    date(expired.leaf_not_after)
                )),
                Some(expired.leaf_not_after),
            ),
            (
                format!("{}\ncheck_chain: false", target(expired_addr)),
                Some("certificate for 127.0.0.1 expired 3 days ago".into()),
                Some(expired.leaf_not_after),
            ),
            (
                format!("{}\ncheck_chain: false", target(self_addr)),
                None,
                Some(selfsigned.leaf_not_after),
            ),
            (
                target(self_addr),
                Some(
                    "tls: invalid peer certificate: unknown issuer (not signed by a trusted root)"
                        .into(),
                ),
                Some(selfsigned.leaf_not_after),
            ),
            (
                format!(
                    "{}\ncheck_chain: false\nserver_name: other.example",
                    target(self_addr)
                ),
                Some(
                    "tls: invalid peer certificate: certificate not valid for name \
                     \"other.example\""
                        .into(),
                ),
                Some(selfsigned.leaf_not_after),
            ),
            (
                format!(
                    "{}\ncheck_chain: false\ncheck_hostname: false\nserver_name: other.example",
                    target(self_addr)
                ),
                None,
                Some(selfsigned.leaf_not_after),
            ),
        ];
        for (yaml, want, expiry) in &cases {
            let obs = run_in(&spec(yaml), &env(), Duration::from_secs(5)).await;
            match want {
                None => assert!(obs.ok, "{yaml}: {:?}", obs.error),
                Some(w) => {
                    assert!(!obs.ok, "{yaml}: up");
                    assert!(
                        reason(&obs).starts_with(w.as_str()),
                        "{yaml}: {:?}",
                        reason(&obs)
                    );
                }
            }
            assert_eq!(obs.cert_expiry, *expiry, "{yaml}");
            assert_eq!(phases(&obs), ["resolve", "connect", "tls"], "{yaml}");
            assert_eq!(obs.ip, Some(IpAddr::from([127, 0, 0, 1])));
        }
    }

    #[test]
    fn a_ca_certificate_served_as_the_leaf_is_said_in_words() {
        let pki = ca_signed(&["db.internal"], 30 * DAY);
        let mut roots = RootCertStore::empty();
        roots.add(pki.chain[1].clone()).unwrap();
        let peer = PeerCheck::new("db.internal", None, true, false, None).unwrap();
        let now = UnixTime::since_unix_epoch(Duration::from_secs(unix_now() as u64));
        // The server sends its CA's certificate alone, as if it were its own.
        let verdict = peer.judge(&pki.chain[1..], &roots, now);
        let reason = verdict.result.unwrap_err();
        assert_eq!(
            reason,
            "tls: invalid peer certificate: the server's certificate is a CA certificate \
             (CA:TRUE); if it is self-signed on purpose, put that certificate itself in ca_file \
             to trust it"
        );
    }

    #[test]
    fn judgement_moves_with_the_clock() {
        let pki = ca_signed(&["db.internal"], 30 * DAY);
        let mut roots = RootCertStore::empty();
        roots.add(pki.chain[1].clone()).unwrap();
        let peer = PeerCheck::new("db.internal", None, true, true, Some(14)).unwrap();
        let at = |offset: i64| {
            UnixTime::since_unix_epoch(Duration::from_secs((unix_now() + offset) as u64))
        };
        let verdict = peer.judge(&pki.chain, &roots, at(0));
        assert_eq!(verdict.result, Ok(()));
        assert_eq!(verdict.expiry, Some(pki.leaf_not_after));
        let verdict = peer.judge(&pki.chain, &roots, at(20 * DAY + 3600));
        assert_eq!(
            verdict.result.unwrap_err(),
            "certificate for db.internal expires in 9 days (min_days_left 14)"
        );
        let left = pki.leaf_not_after - (unix_now() + 30 * DAY - 5 * 3600);
        let verdict = peer.judge(&pki.chain, &roots, at(30 * DAY - 5 * 3600));
        assert_eq!(
            verdict.result.unwrap_err(),
            format!(
                "certificate for db.internal expires in {} (min_days_left 14)",
                span(left)
            )
        );
        let verdict = peer.judge(&pki.chain, &roots, at(32 * DAY));
        assert!(
            verdict
                .result
                .unwrap_err()
                .starts_with("certificate for db.internal expired 2 days ago"),
        );
        let verdict = peer.judge(&pki.chain, &roots, at(-3 * DAY));
        assert!(
            verdict
                .result
                .unwrap_err()
                .starts_with("certificate for db.internal is not valid before "),
        );
        let verdict = peer.judge(&[], &roots, at(0));
        assert_eq!(
            verdict.result.unwrap_err(),
            "tls: the server sent no certificate"
        );
        let verdict = peer.judge(&[CertificateDer::from(vec![0u8, 1, 2])], &roots, at(0));
        assert_eq!(
            verdict.result.unwrap_err(),
            "tls: the server's certificate cannot be parsed as x.509"
        );
        assert_eq!(verdict.expiry, None);
        assert_eq!(
            [59, 60, 3600, 7199, 86_400, 3 * DAY + 5].map(span),
            [
                "59 seconds",
                "1 minute",
                "1 hour",
                "1 hour",
                "1 day",
                "3 days"
            ]
        );
    }

    #[tokio::test]
    async fn refused_and_silent_servers_are_down() {
        let closed = refused_addr().await.port();
        let obs = run_in(
            &spec(&format!("host: 127.0.0.1\nport: {closed}")),
            &env(),
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(
            reason(&obs),
            format!("connect to 127.0.0.1:{closed}: connection refused")
        );
        assert_eq!(phases(&obs), ["resolve", "connect"]);

        // Accepts TCP, never speaks TLS.
        let port = tcp_server(hold).await.port();
        let within = Duration::from_millis(400);
        let t = Instant::now();
        let obs = run_in(
            &spec(&format!("host: 127.0.0.1\nport: {port}")),
            &env(),
            within,
        )
        .await;
        assert_by_deadline(t.elapsed(), within);
        assert!(
            reason(&obs).starts_with("timed out after ")
                && reason(&obs).ends_with("while in the tls handshake with 127.0.0.1"),
            "{}",
            reason(&obs)
        );
        assert_eq!(phases(&obs), ["resolve", "connect", "tls"]);
        assert_eq!(obs.cert_expiry, None);
    }

    #[tokio::test]
    async fn names_resolve_through_the_env_resolver() {
        // `localhost` comes from /etc/hosts: often ::1 first, while the server listens on
        // 127.0.0.1 only; each address is tried in turn.
        let pki = ca_signed(&["localhost"], 90 * DAY);
        let ca = pem_file(&pki.ca_pem);
        let addr = echo_server(pki.server.clone()).await;
        let obs = run_in(
            &spec(&format!(
                "host: localhost\nport: {}\nca_file: '{}'\nip: ipv4",
                addr.port(),
                ca.path().display()
            )),
            &env(),
            Duration::from_secs(5),
        )
        .await;
        assert!(obs.ok, "{:?}", obs.error);
        assert_eq!(obs.ip, Some(IpAddr::from([127, 0, 0, 1])));
    }
}
