//! Networking the probe kinds share: resolving a host with the env's resolver (honouring
//! [`IpPreference`]) and connecting to each address in turn, the rustls client configs (ring
//! provider, web PKI roots plus a `ca_file`, or an accept-anything verifier), the TLS
//! handshake, certificate expiry, URLs without their userinfo, and the secrets of a request
//! (headers, userinfo) collected for scrubbing. The words of reasons (I/O and TLS errors)
//! are [`crate::text`]'s; the scrubbing is [`crate::redact`]'s.
//!
//! Everything here is one version of a helper several kinds need; a kind keeps what is its
//! own (its spec, its protocol, its verdict).

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use http::header::{HeaderMap, HeaderName, HeaderValue};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, RootCertStore};
use schemars::JsonSchema;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;

use super::{CheckCx, Env, Observation, until};
use crate::redact::redact_query;
use crate::text::{error_chain, io_text, rustls_text, short, tidy};

// ---- hosts and addresses -------------------------------------------------------------------

/// Address family preference.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum IpPreference {
    #[default]
    Any,
    Ipv4,
    Ipv6,
}

/// Most addresses of one name tried in turn.
pub(crate) const MAX_ADDRESSES: usize = 8;

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

/// Whether an IP literal fits the address family asked for.
pub(crate) fn family_check(pref: IpPreference, addr: IpAddr) -> Result<(), String> {
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

/// Makes a relative path relative to `base` (the directory of the probe's file).
pub(crate) fn resolve_path(path: &mut Option<PathBuf>, base: &Path) {
    if let Some(p) = path
        && p.is_relative()
    {
        *p = base.join(&*p);
    }
}

/// Resolves `host` (unless it is an IP literal, which must fit `ip`) and connects to its
/// addresses in the resolver's order until one accepts, all within the deadline. Records the
/// `resolve` and `connect` phases and the address used.
pub(crate) async fn connect(
    cx: &CheckCx<'_>,
    started: Instant,
    obs: &mut Observation,
    host: &str,
    port: u16,
    ip: IpPreference,
) -> Result<TcpStream, String> {
    let ips = addresses(cx, started, obs, host, ip).await?;
    connect_any(cx, started, obs, &ips, port).await
}

/// The addresses to try for `host`: the IP literal itself (which must fit `ip`, and takes no
/// time to resolve) or what the resolver answers. Records the `resolve` phase.
pub(crate) async fn addresses(
    cx: &CheckCx<'_>,
    started: Instant,
    obs: &mut Observation,
    host: &str,
    ip: IpPreference,
) -> Result<Vec<IpAddr>, String> {
    let t = Instant::now();
    if let Ok(addr) = host.parse::<IpAddr>() {
        // No lookup, but the time it took to tell (as blackbox_exporter reports it).
        obs.phase("resolve", t.elapsed());
        family_check(ip, addr)?;
        return Ok(vec![addr]);
    }
    let ips = resolve(cx, started, host, ip).await;
    obs.phase("resolve", t.elapsed());
    ips
}

/// The addresses of `host`, of the family asked for, in the resolver's order (at most
/// [`MAX_ADDRESSES`]).
pub(crate) async fn resolve(
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

/// Connects to `ips` on `port` in turn until one accepts (`localhost` is often ::1 first
/// while the service listens on 127.0.0.1 only), as a browser would; all within the
/// deadline. Records the `connect` phase and the address tried last; the reason of a failure
/// names every address and why it failed.
pub(crate) async fn connect_any(
    cx: &CheckCx<'_>,
    started: Instant,
    obs: &mut Observation,
    ips: &[IpAddr],
    port: u16,
) -> Result<TcpStream, String> {
    let t = Instant::now();
    let mut failures = Vec::new();
    for &ip in ips {
        let addr = SocketAddr::new(ip, port);
        obs.ip = Some(ip);
        match until(cx, started, "connecting", TcpStream::connect(addr)).await {
            Err(timeout) => {
                obs.phase("connect", t.elapsed());
                return Err(format!("{timeout} to {addr}"));
            }
            Ok(Err(e)) => failures.push(format!("{addr}: {}", io_text(&e))),
            Ok(Ok(tcp)) => {
                obs.phase("connect", t.elapsed());
                // Only a latency nicety; a socket that refuses it still works.
                let _ = tcp.set_nodelay(true);
                return Ok(tcp);
            }
        }
    }
    obs.phase("connect", t.elapsed());
    Err(format!("connect to {}", failures.join("; ")))
}

// ---- TLS -----------------------------------------------------------------------------------

/// ALPN of the kinds that speak HTTP/1.1 over TLS (`http`, the websocket upgrade): a server
/// that would pick h2 must not.
pub(crate) const ALPN_HTTP1: &[&[u8]] = &[b"http/1.1"];

/// The ring crypto provider, built once.
pub(crate) fn provider() -> &'static Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
}

/// Checks a `server_name` field; the name as rustls takes it.
pub(crate) fn server_name(name: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(name.to_string()).map_err(|_| format!("invalid server name {name:?}"))
}

/// The certificates of a `ca_file`: as trust anchors, and as they are (a certificate that
/// is exactly one of them is trusted as the server's own, see [`CaFileVerifier`]).
#[derive(Clone)]
pub(crate) struct CaFile {
    pub roots: RootCertStore,
    pub certs: Vec<CertificateDer<'static>>,
}

impl CaFile {
    /// Whether `leaf` is, byte for byte, one of the file's certificates.
    pub(crate) fn holds(&self, leaf: &CertificateDer<'_>) -> bool {
        self.certs.iter().any(|c| c.as_ref() == leaf.as_ref())
    }
}

/// Reads a PEM file of CA certificates into a trust store; each must be usable as a root.
/// Errors name the file, not the field: callers put the field in front.
pub(crate) fn read_ca_file(path: &Path) -> Result<CaFile, String> {
    use rustls::pki_types::pem::PemObject;
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {shown}: {}", io_text(&e)))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{shown}: {}", tidy(&e.to_string())))?;
    if certs.is_empty() {
        return Err(format!("no certificate in {shown}"));
    }
    let mut store = RootCertStore::empty();
    for c in &certs {
        store
            .add(c.clone())
            .map_err(|e| format!("{shown}: unusable ca certificate: {}", rustls_text(&e)))?;
    }
    Ok(CaFile {
        roots: store,
        certs,
    })
}

/// A certificate of `ca_file` served as the server's own (a self-signed certificate that is
/// its own CA, as `openssl req -x509` makes): trusted as it is, as blackbox_exporter (Go's
/// crypto/x509) trusts it, once it is valid now and for `name`. webpki alone refuses it
/// (`CaUsedAsEndEntity`), since a CA certificate is not a server's.
pub(crate) fn check_ca_file_leaf(
    leaf: &CertificateDer<'_>,
    name: &ServerName<'_>,
    now: UnixTime,
) -> Result<(), rustls::Error> {
    use rustls::CertificateError;
    let bad = || rustls::Error::InvalidCertificate(CertificateError::BadEncoding);
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).map_err(|_| bad())?;
    let now_s = now.as_secs() as i64;
    let validity = cert.validity();
    if validity.not_after.timestamp() <= now_s {
        return Err(rustls::Error::InvalidCertificate(
            CertificateError::ExpiredContext {
                time: now,
                not_after: UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                    validity.not_after.timestamp().max(0) as u64,
                )),
            },
        ));
    }
    if validity.not_before.timestamp() > now_s {
        return Err(rustls::Error::InvalidCertificate(
            CertificateError::NotValidYetContext {
                time: now,
                not_before: UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                    validity.not_before.timestamp().max(0) as u64,
                )),
            },
        ));
    }
    let parsed = rustls::server::ParsedCertificate::try_from(leaf)?;
    rustls::client::verify_server_name(&parsed, name)
}

/// The web PKI verifier, and a certificate of `ca_file` served as the server's own accepted
/// as [`check_ca_file_leaf`] says; the handshake's signatures are checked as ever.
#[derive(Debug)]
struct CaFileVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    certs: Vec<CertificateDer<'static>>,
}

impl ServerCertVerifier for CaFileVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(_) if self.certs.iter().any(|c| c.as_ref() == end_entity.as_ref()) => {
                check_ca_file_leaf(end_entity, server_name, now)
                    .map(|()| ServerCertVerified::assertion())
            }
            result => result,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A client config (ring) that verifies chains against `roots` (and trusts the `ca_file`
/// certificates `pinned` as the server's own, see [`CaFileVerifier`]), or, without roots,
/// lets any chain through ([`AcceptAnyCert`]); with `alpn` and no resumption: each check
/// pays a full handshake, as a new user would (no session tickets or ids).
fn client_config(
    roots: Option<Arc<RootCertStore>>,
    pinned: &[CertificateDer<'static>],
    alpn: &[&[u8]],
) -> Result<Arc<ClientConfig>, String> {
    let builder = ClientConfig::builder_with_provider(provider().clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {}", rustls_text(&e)))?;
    let mut config = match roots {
        Some(roots) if !pinned.is_empty() => {
            let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
                roots,
                provider().clone(),
            )
            .build()
            .map_err(|e| format!("tls: {}", error_chain(&e)))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(CaFileVerifier {
                    inner,
                    certs: pinned.to_vec(),
                }))
                .with_no_client_auth()
        }
        Some(roots) => builder.with_root_certificates(roots).with_no_client_auth(),
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCert))
            .with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// A client config that lets any chain through the handshake (see [`AcceptAnyCert`]).
pub(crate) fn accept_any_config(alpn: &[&[u8]]) -> Result<Arc<ClientConfig>, String> {
    client_config(None, &[], alpn)
}

/// The TLS client config of a probe: built once per set of roots.
pub(crate) enum TlsClient {
    /// `insecure_skip_verify`: the roots play no part.
    Fixed(Arc<ClientConfig>),
    /// Verifying: the env's roots plus `ca_file`, cached for the env's root store.
    PerRoots {
        alpn: &'static [&'static [u8]],
        /// The certificates of `ca_file`, trusted beside `Env::roots`.
        extra: Option<CaFile>,
        cache: Mutex<Option<(Arc<RootCertStore>, Arc<ClientConfig>)>>,
    },
}

impl TlsClient {
    /// Reads `ca_file` (errors start with the name of its field, `ca_field`; the file is read
    /// even when verification is off: a broken file is a broken config) and readies the
    /// config.
    pub(crate) fn new(
        insecure_skip_verify: bool,
        ca_file: Option<&Path>,
        ca_field: &str,
        alpn: &'static [&'static [u8]],
    ) -> Result<TlsClient, String> {
        let extra = ca_file
            .map(read_ca_file)
            .transpose()
            .map_err(|e| format!("{ca_field}: {e}"))?;
        if insecure_skip_verify {
            return Ok(TlsClient::Fixed(accept_any_config(alpn)?));
        }
        Ok(TlsClient::PerRoots {
            alpn,
            extra,
            cache: Mutex::new(None),
        })
    }

    /// The config for this env's roots, built once and cached.
    pub(crate) fn config(&self, env: &Env) -> Result<Arc<ClientConfig>, String> {
        let (alpn, extra, cache) = match self {
            TlsClient::Fixed(config) => return Ok(config.clone()),
            TlsClient::PerRoots { alpn, extra, cache } => (alpn, extra, cache),
        };
        let mut cache = cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((roots, config)) = cache.as_ref()
            && Arc::ptr_eq(roots, &env.roots)
        {
            return Ok(config.clone());
        }
        let (roots, pinned) = match extra {
            None => (env.roots.clone(), &[][..]),
            Some(extra) => {
                let mut store = (*env.roots).clone();
                store.extend(extra.roots.roots.iter().cloned());
                (Arc::new(store), &extra.certs[..])
            }
        };
        let config = client_config(Some(roots), pinned, alpn)?;
        *cache = Some((env.roots.clone(), config.clone()));
        Ok(config)
    }
}

/// The TLS handshake over `io` with `config`, sending `name` as SNI, within the deadline.
pub(crate) async fn tls_handshake<IO>(
    cx: &CheckCx<'_>,
    started: Instant,
    config: Arc<ClientConfig>,
    name: &str,
    io: IO,
) -> Result<tokio_rustls::client::TlsStream<IO>, String>
where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let server_name = server_name(name).map_err(|e| format!("tls: {e}"))?;
    let connector = tokio_rustls::TlsConnector::from(config);
    until(
        cx,
        started,
        "in the tls handshake",
        connector.connect(server_name, io),
    )
    .await
    .map_err(|timeout| format!("{timeout} with {name}"))?
    .map_err(|e| format!("tls: {}", io_text(&e)))
}

/// A certificate verifier that accepts any certificate (`insecure_skip_verify`, or a chain
/// judged after the handshake), while still checking the handshake signatures: the server
/// must hold the key of the certificate it sent.
#[derive(Debug)]
pub(crate) struct AcceptAnyCert;

impl ServerCertVerifier for AcceptAnyCert {
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
            &provider().signature_verification_algorithms,
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
            &provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Earliest `notAfter` of the certificates, unix seconds; unparseable ones are skipped.
pub(crate) fn earliest_not_after(certs: &[CertificateDer<'_>]) -> Option<i64> {
    certs
        .iter()
        .filter_map(|c| x509_parser::parse_x509_certificate(c.as_ref()).ok())
        .map(|(_, cert)| cert.validity().not_after.timestamp())
        .min()
}

/// Folds the peer's earliest `notAfter` into `obs.cert_expiry` (the earliest over every TLS
/// connection of a check), and records what this handshake showed as `obs.tls`.
pub(crate) fn record_tls(obs: &mut Observation, conn: &rustls::ClientConnection) {
    let certs = conn.peer_certificates();
    if let Some(expiry) = certs.and_then(earliest_not_after) {
        obs.cert_expiry = Some(obs.cert_expiry.map_or(expiry, |e| e.min(expiry)));
    }
    obs.tls = Some(Box::new(tls_seen(
        conn.protocol_version(),
        certs.unwrap_or_default(),
    )));
}

/// A handshake's version and chain (leaf first) as blackbox_exporter reports them.
pub(crate) fn tls_seen(
    version: Option<rustls::ProtocolVersion>,
    chain: &[CertificateDer<'_>],
) -> crate::probe::TlsSeen {
    let version = match version {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLS 1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLS 1.2",
        Some(_) => "other",
        None => "unknown",
    };
    let mut seen = crate::probe::TlsSeen {
        version,
        chain_expiry: earliest_not_after(chain),
        ..Default::default()
    };
    if let Some(leaf) = chain.first() {
        use sha2::Digest;
        seen.fingerprint_sha256 = sha2::Sha256::digest(leaf.as_ref())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if let Ok((_, cert)) = x509_parser::parse_x509_certificate(leaf.as_ref()) {
            seen.subject = cert.subject().to_string();
            seen.issuer = cert.issuer().to_string();
            if let Ok(Some(san)) = cert.subject_alternative_name() {
                seen.sans = san
                    .value
                    .general_names
                    .iter()
                    .filter_map(|n| match n {
                        x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_string()),
                        x509_parser::extensions::GeneralName::IPAddress(ip) => match ip.len() {
                            4 => Some(
                                std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*ip).ok()?)
                                    .to_string(),
                            ),
                            16 => Some(
                                std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*ip).ok()?)
                                    .to_string(),
                            ),
                            _ => None,
                        },
                        _ => None,
                    })
                    .collect::<Vec<_>>()
                    .join(",");
            }
        }
    }
    seen
}

// ---- URLs ----------------------------------------------------------------------------------

/// A parsed URL of a plain/secure scheme pair (`http`/`https`, `ws`/`wss`), split into what
/// a check needs. No `Debug`: it holds the URL's userinfo.
#[derive(Clone)]
pub(crate) struct UrlTarget {
    /// The plain and the secure scheme.
    schemes: [&'static str; 2],
    pub(crate) secure: bool,
    /// Lower-case, without the brackets of an IPv6 literal.
    pub(crate) host: String,
    pub(crate) port: u16,
    /// Path and query, `/` when the URL has none; what goes on the request line.
    pub(crate) path: http::uri::PathAndQuery,
    /// `user:password` from the URL, percent-decoded. Never displayed.
    pub(crate) userinfo: Option<String>,
}

impl UrlTarget {
    /// Parses a probe URL whose scheme is one of `schemes` (plain, secure). Errors never
    /// repeat the URL (it may hold a password).
    pub(crate) fn parse(url: &str, schemes: [&'static str; 2]) -> Result<UrlTarget, String> {
        let [plain, secure] = schemes;
        let uri: http::Uri = url
            .trim()
            .parse()
            .map_err(|e: http::uri::InvalidUri| format!("invalid url: {e}"))?;
        let is_secure = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case(plain) => false,
            Some(s) if s.eq_ignore_ascii_case(secure) => true,
            Some(s) => {
                return Err(format!(
                    "unsupported url scheme {:?} (use {plain} or {secure})",
                    s.to_ascii_lowercase()
                ));
            }
            None => {
                return Err(format!(
                    "url has no scheme (start it with {plain}:// or {secure}://)"
                ));
            }
        };
        let authority = uri.authority().ok_or("url has no host")?;
        let host = host_key(authority.host());
        if host.is_empty() {
            return Err("url has no host".into());
        }
        // The http crate accepts any text after the colon (`h:99999`, `h:abc`) and then
        // reports no port at all; unchecked, such a URL would silently probe port 80 or 443.
        let host_port = authority
            .as_str()
            .rsplit_once('@')
            .map_or(authority.as_str(), |(_, hp)| hp);
        let port_text = match host_port.rfind(']') {
            Some(i) => host_port[i + 1..].strip_prefix(':'),
            None => host_port.rsplit_once(':').map(|(_, p)| p),
        };
        let port = match port_text {
            None | Some("") => {
                if is_secure {
                    443
                } else {
                    80
                }
            }
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 => n,
                _ => return Err(format!("invalid port {:?} in url (use 1-65535)", short(p))),
            },
        };
        let userinfo = authority
            .as_str()
            .rsplit_once('@')
            .map(|(ui, _)| percent_decode(ui));
        let path = match uri.path_and_query() {
            Some(pq) if pq.as_str().starts_with('/') => pq.clone(),
            Some(pq) => format!("/{}", pq.as_str())
                .parse()
                .map_err(|e: http::uri::InvalidUri| format!("invalid url: {e}"))?,
            None => http::uri::PathAndQuery::from_static("/"),
        };
        Ok(UrlTarget {
            schemes,
            secure: is_secure,
            host,
            port,
            path,
            userinfo,
        })
    }

    pub(crate) fn scheme(&self) -> &'static str {
        self.schemes[usize::from(self.secure)]
    }

    /// `host`, `host:8080` or `[::1]:8080`: the `Host` header and the URL's authority
    /// without userinfo.
    pub(crate) fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let default = if self.secure { 443 } else { 80 };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// The URL for messages: no userinfo, query values replaced by `***`.
    pub(crate) fn display(&self) -> String {
        let mut out = format!(
            "{}://{}{}",
            self.scheme(),
            self.authority(),
            self.path.path()
        );
        if let Some(q) = self.path.query() {
            out.push('?');
            out.push_str(&redact_query(q));
        }
        out
    }
}

// One version of each, shared with the notifiers.
pub(crate) use crate::redact::{base64, percent_decode};

/// `Basic <base64(user:password)>`, marked sensitive.
pub(crate) fn basic_auth(userinfo: &str) -> HeaderValue {
    let mut v = HeaderValue::from_str(&format!("Basic {}", base64(userinfo.as_bytes())))
        .unwrap_or_else(|_| HeaderValue::from_static("Basic"));
    v.set_sensitive(true);
    v
}

// ---- secrets -------------------------------------------------------------------------------

/// The request headers of a spec (`field` is their path, e.g. `request.headers`), every
/// value marked sensitive and kept in `secrets`.
pub(crate) fn sensitive_headers<'a>(
    spec: impl IntoIterator<Item = (&'a String, &'a String)>,
    field: &str,
    secrets: &mut Vec<String>,
) -> Result<HeaderMap, String> {
    let mut headers = HeaderMap::new();
    for (name, value) in spec {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("{field}.{name}: invalid header name"))?;
        let mut value = HeaderValue::from_str(value)
            .map_err(|_| format!("{field}.{name}: invalid header value"))?;
        value.set_sensitive(true);
        secrets.push(value.to_str().unwrap_or_default().to_string());
        headers.append(name, value);
    }
    Ok(headers)
}

/// The `Authorization` header for a URL's userinfo; the userinfo, its password (as written
/// and decoded) and the header go to `secrets`.
pub(crate) fn userinfo_auth(userinfo: &str, secrets: &mut Vec<String>) -> HeaderValue {
    secrets.push(userinfo.to_string());
    if let Some((_, password)) = userinfo.split_once(':') {
        password_secrets(password, secrets);
    }
    let auth = basic_auth(userinfo);
    secrets.push(auth.to_str().unwrap_or_default().to_string());
    auth
}

/// A password as written and percent-decoded, into `secrets`.
pub(crate) fn password_secrets(password: &str, secrets: &mut Vec<String>) {
    secrets.push(password.to_string());
    secrets.push(percent_decode(password));
}

/// The wall clock, unix seconds.
pub(crate) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// JSON equality where `1` and `1.0` are the same number.
pub(crate) fn json_eq(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| json_eq(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// A URL as Prometheus' `instance` label shows a target: scheme, host, port and path, without
/// userinfo, query or fragment (they can hold secrets). What does not parse as a URL
/// yields nothing rather than the raw text.
pub fn url_instance(raw: &str) -> Option<String> {
    let url = reqwest::Url::parse(raw.trim()).ok()?;
    let host = url.host_str().filter(|h| !h.is_empty());
    let mut out = format!("{}://", url.scheme());
    if let Some(h) = host {
        out.push_str(h);
        if let Some(p) = url.port() {
            out.push_str(&format!(":{p}"));
        }
    }
    out.push_str(url.path());
    Some(out)
}

/// `host:port` as Prometheus' `instance` label shows it (an IPv6 host in brackets).
pub fn host_port_instance(host: &str, port: u16) -> String {
    let h = host.trim();
    if h.contains(':') && !h.starts_with('[') {
        format!("[{h}]:{port}")
    } else {
        format!("{h}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redact::{scrub, secret_list};

    /// The target as `instance` shows it never carries userinfo, query or fragment.
    #[test]
    fn instance_of_a_url_keeps_no_secret() {
        let i = url_instance;
        assert_eq!(
            i("https://user:pw-1@api.example.com:8443/health?token=t-2#frag").as_deref(),
            Some("https://api.example.com:8443/health")
        );
        assert_eq!(
            i("http://api.example.com").as_deref(),
            Some("http://api.example.com/")
        );
        assert_eq!(
            i("wss://[::1]:9000/socket?vsn=2").as_deref(),
            Some("wss://[::1]:9000/socket")
        );
        assert_eq!(i("not a url"), None);
        assert_eq!(host_port_instance("::1", 53), "[::1]:53");
        assert_eq!(host_port_instance("db.internal", 5432), "db.internal:5432");
        let spec = |y: &str| {
            crate::config::load_str(
                &format!("probes:\n  - {y}\n"),
                std::path::Path::new("/tmp/p.yaml"),
                &|_| None,
            )
            .unwrap()
            .probes[0]
                .spec
                .instance()
        };
        assert_eq!(
            spec("{ name: d, kind: db_write, dsn: \"postgres://u:pw-3@db.internal/app\" }")
                .as_deref(),
            Some("db.internal:5432")
        );
        assert_eq!(
            spec("{ name: r, kind: redis, url: \"redis://:pw-4@cache:6380/0\" }").as_deref(),
            Some("cache:6380")
        );
        assert_eq!(
            spec("{ name: n, kind: dns, query_name: example.com, nameservers: [\"127.0.0.1\"] }")
                .as_deref(),
            Some("127.0.0.1:53")
        );
    }

    #[test]
    fn base64_encodes_basic_credentials() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("Aladdin:open sesame", "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
        ] {
            assert_eq!(base64(input.as_bytes()), want, "{input}");
        }
    }

    #[test]
    fn reasons_are_scrubbed_of_every_form_of_a_secret() {
        let mut secrets = Vec::new();
        let auth = userinfo_auth("probe:s3cr%22t-pw", &mut secrets);
        let headers = [("x-key".to_string(), "Bearer t0ken\\value".to_string())];
        let h = headers.iter().map(|(k, v)| (k, v));
        sensitive_headers(h, "request.headers", &mut secrets).unwrap();
        let secrets = secret_list(secrets);
        let sent = auth.to_str().unwrap().to_string();
        let echo = format!(
            "{sent} | {} | s3cr\"t-pw | {} | t0ken%5Cvalue | x",
            &sent["Basic ".len()..],
            serde_json::to_string("t0ken\\value").unwrap(),
        );
        assert_eq!(
            scrub(&echo, &secrets),
            "*** | *** | *** | \"***\" | *** | x"
        );
    }

    #[test]
    fn json_numbers_compare_by_value() {
        use serde_json::json;
        assert!(json_eq(&json!(1), &json!(1.0)));
        assert!(json_eq(&json!({"a": [1, 2.0]}), &json!({"a": [1.0, 2]})));
        assert!(!json_eq(&json!(1), &json!("1")));
        assert!(!json_eq(&json!({"a": 1}), &json!({"a": 1, "b": 2})));
    }
}
