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
//! The connection helpers `tcp` shares (resolve, connect, handshake and judgement, error
//! text) are the `pub(crate)` items of the "shared" section below; they depend on nothing
//! else in this file and can move to a `net` module as they are.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, RootCertStore};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::http::IpPreference;
use super::{CheckCx, FieldError, Observation, until};

/// Settings of a `tls` probe.
#[derive(Debug, Clone, Deserialize)]
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
const MAX_DAYS_LEFT: u32 = 3650;

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
            && let Err(e) = check_server_name(name)
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
        let result = match connect(cx, started, &mut obs, &self.host, self.port, self.ip).await {
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

// ---- shared with `tcp` ---------------------------------------------------------------------

/// Most addresses of one name tried in turn.
const MAX_ADDRESSES: usize = 8;

/// Checks a `host` field: a name or an IP literal (IPv6 with or without brackets), no scheme,
/// no port, and of the family `ip` asks for.
pub(crate) fn check_host(host: &str, ip: IpPreference) -> Result<(), String> {
    let h = host.trim();
    if h.is_empty() {
        return Err("host is empty".into());
    }
    if h.contains("://") {
        return Err("write the host name only, without a scheme (e.g. db.example.com)".into());
    }
    let bare = h
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(h);
    match bare.parse::<IpAddr>() {
        Ok(addr) => family_check(ip, addr),
        Err(_) if h.starts_with('[') => Err(format!("invalid ipv6 address {h:?}")),
        Err(_) if h.contains(':') => Err(format!(
            "invalid host {h:?}: write the port in `port`, not in the host"
        )),
        Err(_) if h.contains(|c: char| c.is_whitespace() || "/?#@".contains(c)) => {
            Err(format!("invalid host name {h:?}"))
        }
        Err(_) => hickory_resolver::proto::rr::Name::from_utf8(h)
            .map(drop)
            .map_err(|_| format!("invalid host name {h:?}")),
    }
}

/// The host as connected to and shown: trimmed, lower-case, IPv6 without brackets.
pub(crate) fn host_key(host: &str) -> String {
    let h = host.trim();
    h.strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(h)
        .to_ascii_lowercase()
}

/// Checks a `server_name` field.
pub(crate) fn check_server_name(name: &str) -> Result<(), String> {
    ServerName::try_from(name.to_string())
        .map(drop)
        .map_err(|_| format!("invalid server name {name:?}"))
}

/// Makes a relative path relative to `base`.
pub(crate) fn resolve_path(path: &mut Option<PathBuf>, base: &Path) {
    if let Some(p) = path
        && p.is_relative()
    {
        *p = base.join(&*p);
    }
}

fn family_check(pref: IpPreference, addr: IpAddr) -> Result<(), String> {
    match (pref, addr) {
        (IpPreference::Ipv4, IpAddr::V6(_)) => Err(format!(
            "ipv4 asked for, but the host {addr} is an ipv6 address"
        )),
        (IpPreference::Ipv6, IpAddr::V4(_)) => Err(format!(
            "ipv6 asked for, but the host {addr} is an ipv4 address"
        )),
        _ => Ok(()),
    }
}

/// Resolves `host` (unless it is an IP literal) and connects to its addresses in the
/// resolver's order until one accepts, all within the deadline. Records the `resolve` and
/// `connect` phases and the address used.
pub(crate) async fn connect(
    cx: &CheckCx<'_>,
    started: Instant,
    obs: &mut Observation,
    host: &str,
    port: u16,
    ip: IpPreference,
) -> Result<TcpStream, String> {
    let t = Instant::now();
    let ips = match host.parse::<IpAddr>() {
        Ok(addr) => {
            obs.phase("resolve", Duration::ZERO);
            family_check(ip, addr)?;
            vec![addr]
        }
        Err(_) => {
            let ips = resolve(cx, started, host, ip).await;
            obs.phase("resolve", t.elapsed());
            ips?
        }
    };
    let t = Instant::now();
    let mut failures = Vec::new();
    for addr in ips {
        let addr = SocketAddr::new(addr, port);
        obs.ip = Some(addr.ip());
        match until(cx, started, "connecting", TcpStream::connect(addr)).await {
            Err(timeout) => {
                obs.phase("connect", t.elapsed());
                return Err(format!("{timeout} to {addr}"));
            }
            Ok(Err(e)) => failures.push(format!("{addr}: {}", io_text(&e))),
            Ok(Ok(tcp)) => {
                obs.phase("connect", t.elapsed());
                return Ok(tcp);
            }
        }
    }
    obs.phase("connect", t.elapsed());
    Err(format!("connect to {}", failures.join("; ")))
}

/// The addresses of `host`, of the family asked for, in the resolver's order.
async fn resolve(
    cx: &CheckCx<'_>,
    started: Instant,
    host: &str,
    ip: IpPreference,
) -> Result<Vec<IpAddr>, String> {
    use hickory_resolver::lookup_ip::LookupIp;
    use hickory_resolver::proto::rr::RecordType;
    let resolver = &cx.env.resolver;
    let (lookup, what) = match ip {
        IpPreference::Any => (
            until(cx, started, "resolving", resolver.lookup_ip(host)).await,
            "address",
        ),
        IpPreference::Ipv4 => (
            until(
                cx,
                started,
                "resolving",
                resolver.lookup(host, RecordType::A),
            )
            .await
            .map(|r| r.map(LookupIp::from)),
            "ipv4 (A)",
        ),
        IpPreference::Ipv6 => (
            until(
                cx,
                started,
                "resolving",
                resolver.lookup(host, RecordType::AAAA),
            )
            .await
            .map(|r| r.map(LookupIp::from)),
            "ipv6 (AAAA)",
        ),
    };
    let lookup = lookup.map_err(|timeout| format!("{timeout} {host}"))?;
    let lookup = lookup.map_err(|e| {
        if e.is_nx_domain() {
            format!("dns: no record for {host} (NXDOMAIN)")
        } else if e.is_no_records_found() {
            format!("dns: no {what} record for {host}")
        } else {
            format!("dns: lookup of {host} failed: {}", tidy(&e.to_string()))
        }
    })?;
    let ips: Vec<IpAddr> = lookup
        .iter()
        .filter(|a| match ip {
            IpPreference::Any => true,
            IpPreference::Ipv4 => a.is_ipv4(),
            IpPreference::Ipv6 => a.is_ipv6(),
        })
        .take(MAX_ADDRESSES)
        .collect();
    if ips.is_empty() {
        return Err(format!("dns: no {what} record for {host}"));
    }
    Ok(ips)
}

/// How a peer's certificate chain is judged, and the TLS handshake that reads it.
pub(crate) struct PeerCheck {
    /// The name the certificate must be valid for, as shown in reasons.
    name: String,
    server_name: ServerName<'static>,
    /// The certificates of `ca_file`, trusted beside `Env::roots`.
    extra_roots: Option<RootCertStore>,
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
        let server_name = ServerName::try_from(name.to_string())
            .map_err(|_| format!("server_name: invalid server name {name:?}"))?;
        let extra_roots = ca_file.map(read_ca_file).transpose()?;
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
        let connector = tokio_rustls::TlsConnector::from(client_config()?);
        let tls = until(
            cx,
            started,
            "in the tls handshake",
            connector.connect(self.server_name.clone(), io),
        )
        .await
        .map_err(|timeout| format!("{timeout} with {}", self.name))?
        .map_err(|e| format!("tls: {}", io_text(&e)))?;
        let chain = tls.get_ref().1.peer_certificates().unwrap_or_default();
        let verdict = self.judge(chain, &cx.env.roots, UnixTime::now());
        obs.cert_expiry = verdict.expiry;
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
            Err(e) => return fail(format!("tls: {e}"), Some(earliest(&certs))),
        };
        if self.check_chain {
            if let Err(e) = self.verify_chain(&parsed, &chain[1..], roots, now) {
                let reason = match expired_in_chain(&e, &certs, now_s) {
                    Some(c) => format!(
                        "certificate {} in the chain for {} expired {} ago (notAfter {})",
                        c.subject,
                        self.name,
                        span(now_s - c.not_after),
                        date(c.not_after)
                    ),
                    None => format!("tls: {e}"),
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
            return fail(format!("tls: {e}"), Some(expiry));
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
    /// one of `ca_file`.
    fn verify_chain(
        &self,
        leaf: &rustls::server::ParsedCertificate<'_>,
        intermediates: &[CertificateDer<'_>],
        roots: &RootCertStore,
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        let algs = provider().signature_verification_algorithms.all;
        let verify = |store: &RootCertStore| {
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                leaf,
                store,
                intermediates,
                now,
                algs,
            )
        };
        match (verify(roots), &self.extra_roots) {
            (Err(e), Some(extra)) if is_unknown_issuer(&e) => verify(extra),
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

/// Reads a PEM file of CA certificates into a trust store; each must be usable as a root.
pub(crate) fn read_ca_file(path: &Path) -> Result<RootCertStore, String> {
    use rustls::pki_types::pem::PemObject;
    let shown = path.display();
    let pem = std::fs::read(path)
        .map_err(|e| format!("ca_file: cannot read {shown}: {}", io_text(&e)))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("ca_file: {shown}: {}", tidy(&e.to_string())))?;
    if certs.is_empty() {
        return Err(format!("ca_file: no certificate in {shown}"));
    }
    let mut store = RootCertStore::empty();
    for c in certs {
        store
            .add(c)
            .map_err(|e| format!("ca_file: {shown}: unusable ca certificate: {e}"))?;
    }
    Ok(store)
}

/// The ring crypto provider, built once.
fn provider() -> &'static Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
}

/// The one client config of every probe's handshake: chains are judged after it, so it holds
/// nothing per probe. No ALPN; no resumption (each check pays a full handshake, as a new
/// client would).
fn client_config() -> Result<Arc<ClientConfig>, String> {
    static CONFIG: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut config = ClientConfig::builder_with_provider(provider().clone())
                .with_safe_default_protocol_versions()
                .map_err(|e| format!("tls: {e}"))?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(JudgedAfterwards(provider().clone())))
                .with_no_client_auth();
            config.resumption = rustls::client::Resumption::disabled();
            Ok(Arc::new(config))
        })
        .clone()
}

/// Lets any chain through the handshake, to be judged right after it by [`PeerCheck`]; still
/// checks the handshake signatures, so the server must hold the key of the certificate it
/// sent.
#[derive(Debug)]
struct JudgedAfterwards(Arc<CryptoProvider>);

impl ServerCertVerifier for JudgedAfterwards {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// An I/O error in words: `connection refused`, not `Connection refused (os error 111)`; a
/// wrapped error (rustls inside tokio-rustls) as itself, with its sources.
pub(crate) fn io_text(e: &std::io::Error) -> String {
    match e.get_ref() {
        Some(inner) => {
            let mut out = tidy(&inner.to_string());
            let mut source = inner.source();
            while let Some(s) = source {
                let text = tidy(&s.to_string());
                if !out.contains(&text) {
                    out.push_str(": ");
                    out.push_str(&text);
                }
                source = s.source();
            }
            out
        }
        None => tidy(&e.to_string()),
    }
}

/// Drops ` (os error N)` and a trailing period, and lower-cases the first letter unless the
/// first word is an acronym (`DNS`, `TLS`).
pub(crate) fn tidy(s: &str) -> String {
    let s = s.find(" (os error ").map_or(s, |i| &s[..i]);
    let s = s.trim_end_matches('.');
    let mut chars = s.chars();
    match (chars.next(), chars.next()) {
        (Some(a), Some(b)) if a.is_uppercase() && !b.is_uppercase() => {
            a.to_lowercase().chain(s[a.len_utf8()..].chars()).collect()
        }
        _ => s.to_string(),
    }
}

/// At most 80 characters of `s`, for reasons.
pub(crate) fn short(s: &str) -> String {
    const MAX: usize = 80;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// Test certificates and a TLS echo server, shared with the `tcp` tests.
#[cfg(test)]
pub(crate) mod test_pki {
    use std::net::SocketAddr;
    use std::sync::Arc;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, date_time_ymd,
    };
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A server certificate and what the tests check against.
    pub(crate) struct Pki {
        /// PEM of the CA that signed the leaf (of the leaf itself when self-signed).
        pub ca_pem: String,
        pub leaf_not_after: i64,
        /// What the server sends, leaf first.
        pub chain: Vec<CertificateDer<'static>>,
        pub server: Arc<rustls::ServerConfig>,
    }

    pub(crate) fn unix_now() -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    /// Valid from `from` until `until`, both in seconds from now (negative: the past).
    fn valid(params: &mut CertificateParams, from: i64, until: i64) {
        let epoch = date_time_ymd(1970, 1, 1);
        params.not_before = epoch + Duration::from_secs((unix_now() + from) as u64);
        params.not_after = epoch + Duration::from_secs((unix_now() + until) as u64);
    }

    fn server(chain: Vec<CertificateDer<'static>>, key: &KeyPair) -> Arc<rustls::ServerConfig> {
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        Arc::new(config)
    }

    /// A CA, and a leaf for `sans` signed by it, valid from a day ago until `until` seconds
    /// from now; the server sends both.
    pub(crate) fn ca_signed(sans: &[&str], until: i64) -> Pki {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "probed test ca");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut leaf =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        leaf.distinguished_name
            .push(DnType::CommonName, "probed test leaf");
        valid(&mut leaf, until.min(0) - 86_400, until);
        let cert = leaf.signed_by(&key, &*ca).unwrap();
        let chain = vec![cert.der().clone(), ca.der().clone()];
        Pki {
            ca_pem: ca.pem(),
            leaf_not_after: leaf.not_after.unix_timestamp(),
            server: server(chain.clone(), &key),
            chain,
        }
    }

    /// A self-signed leaf for `sans`, valid for a year.
    pub(crate) fn self_signed(sans: &[&str]) -> Pki {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        valid(&mut params, -86_400, 365 * 86_400);
        let cert = params.self_signed(&key).unwrap();
        let chain = vec![cert.der().clone()];
        Pki {
            ca_pem: cert.pem(),
            leaf_not_after: params.not_after.unix_timestamp(),
            server: server(chain.clone(), &key),
            chain,
        }
    }

    /// A TLS server on 127.0.0.1:0 that echoes what it reads, on each connection.
    pub(crate) async fn echo_server(config: Arc<rustls::ServerConfig>) -> SocketAddr {
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = tls.read(&mut buf).await {
                        if n == 0 || tls.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    /// A PEM file holding `pem`.
    pub(crate) fn pem_file(pem: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, pem.as_bytes()).unwrap();
        f
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    use super::test_pki::{ca_signed, echo_server, pem_file, self_signed, unix_now};
    use super::*;
    use crate::probe::Env;

    const DAY: i64 = 86_400;

    fn spec(yaml: &str) -> Spec {
        serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("bad test spec: {e}\n{yaml}"))
    }

    async fn run_in(spec: &Spec, within: Duration) -> Observation {
        let env = Env::new(&[]).expect("env");
        let check = spec.build().expect("build");
        let cx = CheckCx {
            env: &env,
            deadline: Instant::now() + within,
        };
        check.check(&cx).await
    }

    fn reason(obs: &Observation) -> &str {
        obs.error.as_deref().unwrap_or("")
    }

    fn phases(obs: &Observation) -> Vec<&'static str> {
        obs.phases.iter().map(|(n, _)| *n).collect()
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
            let errs = spec(yaml).validate();
            assert_eq!(errs.len(), want.len(), "{yaml}: {errs:?}");
            for (e, (path, msg)) in errs.iter().zip(want.iter()) {
                assert_eq!(e.path, *path, "{yaml}");
                assert!(e.message.contains(msg), "{yaml}: {}", e.message);
            }
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
                Some("tls: invalid peer certificate: UnknownIssuer".into()),
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
                Some("tls: invalid peer certificate: UnknownIssuer".into()),
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
            let obs = run_in(&spec(yaml), Duration::from_secs(5)).await;
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
        let closed = {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap().port()
        };
        let obs = run_in(
            &spec(&format!("host: 127.0.0.1\nport: {closed}")),
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(
            reason(&obs),
            format!("connect to 127.0.0.1:{closed}: connection refused")
        );
        assert_eq!(phases(&obs), ["resolve", "connect"]);

        // Accepts TCP, never speaks TLS.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
                });
            }
        });
        let within = Duration::from_millis(400);
        let t = Instant::now();
        let obs = run_in(&spec(&format!("host: 127.0.0.1\nport: {port}")), within).await;
        assert!(
            t.elapsed() < within + Duration::from_millis(250),
            "{:?}",
            t.elapsed()
        );
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
            Duration::from_secs(5),
        )
        .await;
        assert!(obs.ok, "{:?}", obs.error);
        assert_eq!(obs.ip, Some(IpAddr::from([127, 0, 0, 1])));
    }
}
