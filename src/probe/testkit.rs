//! What the probe kinds' tests share: specs from YAML and one check of any kind within a
//! deadline ([`spec`], [`env`], [`run_in`], [`check_in`], [`assert_by_deadline`]); test
//! peers: TCP and TLS servers on 127.0.0.1:0, a DNS server answering from a table, and a
//! small PKI (a CA, leaves signed by it, self-signed leaves) made with rcgen. Each server
//! runs in the test's runtime and goes away with it.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, date_time_ymd,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde::de::DeserializeOwned;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use super::net::unix_now;
use super::{CheckCx, Env, Observation};
use crate::text::FieldError;

// ---- specs and checks ----------------------------------------------------------------------

/// A probe kind's spec (its own fields, not the common ones) from YAML; a test's own
/// mistake panics. Each kind's tests wrap it in a `spec` typed to their `Spec`.
pub(crate) fn spec<S: DeserializeOwned>(yaml: &str) -> S {
    serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("bad test spec: {e}\n{yaml}"))
}

/// The default environment: the system resolver and the bundled roots.
pub(crate) fn env() -> Env {
    Env::new(&[]).expect("env")
}

/// A kind's spec, built into its check as the daemon builds it. Every kind has one.
pub(crate) trait KindSpec {
    type Check: KindCheck;
    fn build_check(&self) -> Result<Self::Check, String>;
}

/// A kind's built check, run once.
pub(crate) trait KindCheck {
    async fn check_once(&self, cx: &CheckCx<'_>) -> Observation;
}

macro_rules! kinds {
    ($($kind:ident),* $(,)?) => {$(
        impl KindSpec for super::$kind::Spec {
            type Check = super::$kind::Check;
            fn build_check(&self) -> Result<Self::Check, String> {
                // `Arc::new` for the kinds whose check shares its spec (http); the others
                // build from `&Spec` through the `Arc`.
                std::sync::Arc::new(self.clone()).build()
            }
        }

        impl KindCheck for super::$kind::Check {
            async fn check_once(&self, cx: &CheckCx<'_>) -> Observation {
                self.check(cx).await
            }
        }
    )*};
}

kinds! { backup, db_write, dns, http, push, redis, tcp, tls, websocket }

/// Builds `spec` and runs one check of it in `env`, with a deadline `within` from now.
pub(crate) async fn run_in<S: KindSpec>(spec: &S, env: &Env, within: Duration) -> Observation {
    let check = spec.build_check().expect("build");
    check_in(&check, env, within).await
}

/// Runs one check of a built `check` in `env`, with a deadline `within` from now.
pub(crate) async fn check_in(check: &impl KindCheck, env: &Env, within: Duration) -> Observation {
    let cx = CheckCx {
        env,
        deadline: Instant::now() + within,
    };
    check.check_once(&cx).await
}

/// How long after its deadline a check may take to come back.
pub(crate) const DEADLINE_SLACK: Duration = Duration::from_millis(250);

/// The deadline check: a check given `within` came back after `took`, less than
/// [`DEADLINE_SLACK`] past its deadline.
#[track_caller]
pub(crate) fn assert_by_deadline(took: Duration, within: Duration) {
    assert!(
        took < within + DEADLINE_SLACK,
        "the check took {took:?}, more than {DEADLINE_SLACK:?} past its deadline of {within:?}"
    );
}

// ---- TCP and TLS servers -------------------------------------------------------------------

/// A TCP server on 127.0.0.1:0 running `serve` on each connection.
pub(crate) async fn tcp_server<F, Fut>(serve: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream));
        }
    });
    addr
}

/// An address on 127.0.0.1 nothing listens on: connecting is refused.
pub(crate) async fn refused_addr() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

/// Reads (and ignores) whatever the peer sends until it goes away; never writes a byte.
pub(crate) async fn hold(mut s: TcpStream) {
    let mut buf = [0u8; 1024];
    while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
}

/// A TLS server on 127.0.0.1:0 running `serve` on each connection that completes the
/// handshake.
pub(crate) async fn tls_server<F, Fut>(config: Arc<rustls::ServerConfig>, serve: F) -> SocketAddr
where
    F: Fn(tokio_rustls::server::TlsStream<TcpStream>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let serve = Arc::new(serve);
    tcp_server(move |stream| {
        let (acceptor, serve) = (acceptor.clone(), serve.clone());
        async move {
            if let Ok(tls) = acceptor.accept(stream).await {
                serve(tls).await;
            }
        }
    })
    .await
}

/// A TLS server on 127.0.0.1:0 that echoes what it reads, on each connection.
pub(crate) async fn echo_server(config: Arc<rustls::ServerConfig>) -> SocketAddr {
    tls_server(config, |mut tls| async move {
        let mut buf = [0u8; 1024];
        while let Ok(n) = tls.read(&mut buf).await {
            if n == 0 || tls.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    })
    .await
}

// ---- DNS -----------------------------------------------------------------------------------

pub(crate) use crate::lab::dns::Zone;

// ---- PKI -----------------------------------------------------------------------------------

/// A server certificate and what the tests check against.
pub(crate) struct Pki {
    /// PEM of the CA that signed the leaf (of the leaf itself when self-signed).
    pub ca_pem: String,
    pub leaf_not_after: i64,
    /// What the server sends, leaf first.
    pub chain: Vec<CertificateDer<'static>>,
    pub server: Arc<rustls::ServerConfig>,
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
    let params =
        CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    served_self_signed(params, -86_400, 365 * 86_400)
}

/// `params` signed by their own new key, valid from `from` until `until` seconds from now,
/// and served as the server's own.
fn served_self_signed(mut params: CertificateParams, from: i64, until: i64) -> Pki {
    let key = KeyPair::generate().unwrap();
    valid(&mut params, from, until);
    let cert = params.self_signed(&key).unwrap();
    let chain = vec![cert.der().clone()];
    Pki {
        ca_pem: cert.pem(),
        leaf_not_after: params.not_after.unix_timestamp(),
        server: server(chain.clone(), &key),
        chain,
    }
}

/// A self-signed certificate for `sans` that is its own CA (`IsCa::Ca`, as `openssl req
/// -x509` makes), served as the server's own; valid from `from` until `until` seconds from
/// now.
pub(crate) fn self_signed_ca(sans: &[&str], from: i64, until: i64) -> Pki {
    let mut params =
        CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "probed test self-signed ca");
    served_self_signed(params, from, until)
}

/// A PEM file holding `pem`.
pub(crate) fn pem_file(pem: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    std::io::Write::write_all(&mut f, pem.as_bytes()).unwrap();
    f
}

// ---- observations --------------------------------------------------------------------------

/// The reason of a check, `""` when it has none.
pub(crate) fn reason(obs: &Observation) -> &str {
    obs.error.as_deref().unwrap_or("")
}

/// The names of the phases a check recorded, in order.
pub(crate) fn phases(obs: &Observation) -> Vec<&'static str> {
    obs.phases.iter().map(|(n, _)| *n).collect()
}

#[track_caller]
pub(crate) fn assert_up(obs: &Observation) {
    assert!(obs.ok, "expected up, got {:?}", obs.error);
    assert!(obs.error.is_none());
}

#[track_caller]
pub(crate) fn assert_down(obs: &Observation, needle: &str) {
    assert!(!obs.ok, "expected down with {needle:?}, got up");
    assert!(
        reason(obs).contains(needle),
        "reason {:?} does not contain {needle:?}",
        reason(obs)
    );
}

/// Checks what `validate` found in `yaml`: as many errors as wanted, in order, each with the
/// path wanted and a message that contains the text wanted.
#[track_caller]
pub(crate) fn assert_field_errors(yaml: &str, errs: &[FieldError], want: &[(&str, &str)]) {
    assert_eq!(errs.len(), want.len(), "{yaml}: {errs:?}");
    for (e, (path, msg)) in errs.iter().zip(want.iter()) {
        assert_eq!(e.path, *path, "{yaml}");
        assert!(e.message.contains(msg), "{yaml}: {}", e.message);
    }
}
