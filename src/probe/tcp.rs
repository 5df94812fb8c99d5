//! `kind: tcp`: connect to a port (optionally through TLS), optionally send a line, and
//! optionally check what comes back: a banner (`SSH-2.0`, `220 ` of SMTP), a `PONG`, an echo.
//! Phases `resolve`, `connect`, `tls` (with `tls: true`) and `exchange` (when something is
//! sent or expected).
//!
//! The reply is read until every expectation holds, the peer closes, `max_read` bytes came,
//! or the deadline: a peer that never speaks costs the deadline and nothing more, a peer that
//! never stops costs `max_read` bytes.

use std::path::{Path, PathBuf};

use schemars::JsonSchema;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use super::net::{self, IpPreference, check_host, host_key, resolve_path};
use super::tls::PeerCheck;
use super::{CheckCx, Observation, until};
use crate::text::FieldError;
use crate::text::{io_text, regex_error, short};
use crate::units::{ByteSize, format_bytes};

/// Default cap on the bytes read while waiting for `expect`.
pub const DEFAULT_MAX_READ: u64 = 64 << 10;
/// Largest `max_read`: a tcp probe reads a banner or a short answer, not a download.
const MAX_READ_LIMIT: u64 = 1 << 20;

/// Settings of a `tcp` probe.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Host name or IP address to connect to.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Text to send once connected (after the TLS handshake with `tls: true`), as is. In a
    /// double-quoted YAML string `\r\n` and `\n` are line ends: `send: "PING\r\n"`.
    pub send: Option<String>,
    /// What the peer must send (first, or in answer to `send`). Without it the probe is up
    /// once connected (and `send` written).
    #[serde(default)]
    pub expect: Expect,
    /// Most bytes read while waiting for `expect`. Default: 64 KiB; at most 1 MiB.
    pub max_read: Option<ByteSize>,
    /// Do a TLS handshake after connecting and talk through it; the certificate chain is
    /// judged as the `tls` kind judges it, before anything is sent. Default: false.
    #[serde(default)]
    pub tls: bool,
    /// With `tls`: the name sent as SNI and checked against the certificate. Default: `host`.
    pub server_name: Option<String>,
    /// With `tls`: PEM file of CA certificates to trust beside the bundled web PKI roots.
    /// Relative to the probe file's directory.
    pub ca_file: Option<PathBuf>,
    /// With `tls`: check that the chain leads to a trusted root. Default: true.
    pub check_chain: Option<bool>,
    /// With `tls`: check that the certificate is valid for `server_name`. Default: true.
    pub check_hostname: Option<bool>,
    /// With `tls`: fail when the earliest expiry in the chain is fewer than this many days
    /// away. Default: none (the expiry is recorded, not judged; the `tls` kind judges it).
    pub min_days_left: Option<u32>,
    /// Address family: `any` (default: each address the resolver gives, in its order),
    /// `ipv4` (A records only) or `ipv6` (AAAA records only).
    #[serde(default)]
    pub ip: IpPreference,
}

/// What the reply must hold; every one given must. Compared with the raw bytes read.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "TcpExpect")]
pub struct Expect {
    /// The reply must contain this text.
    pub contains: Option<String>,
    /// The reply must match this regular expression (`^SSH-2\.0-`).
    pub regex: Option<String>,
}

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
        if self.send.as_deref() == Some("") {
            errs.push(FieldError::new(
                "send",
                "send is empty (leave it out to send nothing)",
            ));
        }
        if let Some(days) = self.min_days_left
            && days > super::tls::MAX_DAYS_LEFT
        {
            errs.push(FieldError::new(
                "min_days_left",
                format!(
                    "{days} days is more than any certificate lasts (at most {})",
                    super::tls::MAX_DAYS_LEFT
                ),
            ));
        }
        if self.expect.contains.as_deref() == Some("") {
            errs.push(FieldError::new(
                "expect.contains",
                "must not be empty (leave it out to expect nothing)",
            ));
        }
        if let Some(re) = &self.expect.regex
            && let Err(e) = regex::bytes::Regex::new(re)
        {
            errs.push(FieldError::new("expect.regex", regex_error(&e)));
        }
        match self.max_read {
            Some(ByteSize(0)) => {
                errs.push(FieldError::new("max_read", "must be more than 0 bytes"))
            }
            Some(ByteSize(n)) if n > MAX_READ_LIMIT => errs.push(FieldError::new(
                "max_read",
                format!(
                    "{} is more than a tcp probe reads (at most {})",
                    format_bytes(n),
                    format_bytes(MAX_READ_LIMIT)
                ),
            )),
            Some(_) if !self.expects() => errs.push(FieldError::new(
                "max_read",
                "max_read applies only with expect (contains or regex)",
            )),
            _ => {}
        }
        if let Some(name) = &self.server_name
            && let Err(e) = net::server_name(name)
        {
            errs.push(FieldError::new("server_name", e));
        }
        if !self.tls {
            let given = [
                ("server_name", self.server_name.is_some()),
                ("ca_file", self.ca_file.is_some()),
                ("check_chain", self.check_chain.is_some()),
                ("check_hostname", self.check_hostname.is_some()),
                ("min_days_left", self.min_days_left.is_some()),
            ];
            for (field, _) in given.iter().filter(|(_, given)| *given) {
                errs.push(FieldError::new(
                    *field,
                    format!("{field} applies only with tls: true"),
                ));
            }
        }
        errs
    }

    fn expects(&self) -> bool {
        self.expect.contains.is_some() || self.expect.regex.is_some()
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

    /// Compiles the regex, reads the CA file.
    pub fn build(&self) -> Result<Check, String> {
        if let Some(e) = self.validate().into_iter().next() {
            return Err(format!("{}: {}", e.path, e.message));
        }
        let host = host_key(&self.host);
        let regex = self
            .expect
            .regex
            .as_deref()
            .map(regex::bytes::Regex::new)
            .transpose()
            .map_err(|e| format!("expect.regex: {}", regex_error(&e)))?;
        let tls = if self.tls {
            let name = self.server_name.clone().unwrap_or_else(|| host.clone());
            Some(PeerCheck::new(
                &name,
                self.ca_file.as_deref(),
                self.check_chain.unwrap_or(true),
                self.check_hostname.unwrap_or(true),
                self.min_days_left,
            )?)
        } else {
            None
        };
        Ok(Check {
            host,
            port: self.port,
            ip: self.ip,
            send: self.send.clone().map(String::into_bytes),
            contains: self.expect.contains.clone(),
            regex,
            max_read: self.max_read.map_or(DEFAULT_MAX_READ, |b| b.0) as usize,
            tls,
        })
    }
}

/// A runnable `tcp` probe.
pub struct Check {
    host: String,
    port: u16,
    ip: IpPreference,
    send: Option<Vec<u8>>,
    contains: Option<String>,
    regex: Option<regex::bytes::Regex>,
    max_read: usize,
    tls: Option<PeerCheck>,
}

impl Check {
    /// Resolve, connect, (TLS,) send, read until the expectations hold. `size` is the number
    /// of bytes read.
    pub async fn check(&self, cx: &CheckCx<'_>) -> Observation {
        let started = Instant::now();
        let mut obs = Observation::default();
        let result = self.run(cx, started, &mut obs).await;
        obs.duration = started.elapsed();
        match result {
            Ok(()) => {
                obs.ok = true;
                obs
            }
            Err(reason) => obs.fail(reason),
        }
    }

    async fn run(
        &self,
        cx: &CheckCx<'_>,
        started: Instant,
        obs: &mut Observation,
    ) -> Result<(), String> {
        let tcp = net::connect(cx, started, obs, &self.host, self.port, self.ip).await?;
        match &self.tls {
            None => self.exchange(cx, started, obs, tcp).await,
            Some(peer) => {
                let tls = peer.handshake(cx, started, obs, tcp).await?;
                self.exchange(cx, started, obs, tls).await
            }
        }
    }

    /// Sends and reads, as the spec asks; records the `exchange` phase and `size`.
    async fn exchange<S>(
        &self,
        cx: &CheckCx<'_>,
        started: Instant,
        obs: &mut Observation,
        mut io: S,
    ) -> Result<(), String>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        if self.send.is_none() && !self.expects() {
            return Ok(());
        }
        let t = Instant::now();
        let mut reply = Vec::new();
        let result = self.talk(cx, started, &mut io, &mut reply).await;
        obs.phase("exchange", t.elapsed());
        obs.size = Some(reply.len() as u64);
        result
    }

    fn expects(&self) -> bool {
        self.contains.is_some() || self.regex.is_some()
    }

    async fn talk<S>(
        &self,
        cx: &CheckCx<'_>,
        started: Instant,
        io: &mut S,
        reply: &mut Vec<u8>,
    ) -> Result<(), String>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        if let Some(data) = &self.send {
            let sent = async {
                io.write_all(data).await?;
                io.flush().await
            };
            until(cx, started, "sending", sent)
                .await?
                .map_err(|e| format!("sending: {}", io_text(&e)))?;
        }
        if !self.expects() {
            return Ok(());
        }
        let mut chunk = vec![0u8; self.max_read.min(16 << 10)];
        // Where the search for `contains` resumes: a match may straddle two reads.
        let mut searched = 0;
        let mut found = false;
        loop {
            if let Some(needle) = &self.contains
                && !found
            {
                let needle = needle.as_bytes();
                found = reply[searched..].windows(needle.len()).any(|w| w == needle);
                searched = reply.len().saturating_sub(needle.len() - 1);
            }
            let missing = self.missing(found, reply);
            if missing.is_empty() {
                return Ok(());
            }
            if reply.len() >= self.max_read {
                return Err(format!(
                    "expected {missing} in the first {} of the reply, got {}",
                    format_bytes(self.max_read as u64),
                    shown(reply)
                ));
            }
            let room = (self.max_read - reply.len()).min(chunk.len());
            let read = until(
                cx,
                started,
                &format!("waiting for {missing}"),
                io.read(&mut chunk[..room]),
            )
            .await
            .map_err(|timeout| format!("{timeout} (got {})", shown(reply)))?;
            match read {
                Ok(0) => return Err(closed(&missing, reply)),
                // A TLS peer that closes without close_notify.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Err(closed(&missing, reply));
                }
                Err(e) => {
                    return Err(format!(
                        "reading the reply: {} (got {})",
                        io_text(&e),
                        shown(reply)
                    ));
                }
                Ok(n) => reply.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// The expectations that do not hold yet, in words: `"SSH-"`, `/^\+PONG/` or both.
    fn missing(&self, contains_found: bool, reply: &[u8]) -> String {
        let mut out = Vec::new();
        if let Some(c) = &self.contains
            && !contains_found
        {
            out.push(format!("{:?}", short(c)));
        }
        if let Some(re) = &self.regex
            && !re.is_match(reply)
        {
            out.push(format!("/{}/", short(re.as_str())));
        }
        out.join(" and ")
    }
}

fn closed(missing: &str, reply: &[u8]) -> String {
    format!(
        "expected {missing} in the reply, got {} before the peer closed the connection",
        shown(reply)
    )
}

/// The start of what was read, quoted with escapes, or `nothing`.
fn shown(reply: &[u8]) -> String {
    if reply.is_empty() {
        return "nothing".into();
    }
    format!("{:?}", short(&String::from_utf8_lossy(reply)))
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, SocketAddr};
    use std::time::Duration;

    use super::*;
    use crate::probe::testkit::{
        assert_by_deadline, assert_field_errors, ca_signed, echo_server, env, hold, pem_file,
        phases, reason, refused_addr, run_in, tcp_server,
    };

    /// A spec of this kind from YAML: [`testkit::spec`](crate::probe::testkit::spec), typed.
    fn spec(yaml: &str) -> Spec {
        crate::probe::testkit::spec(yaml)
    }

    async fn run(spec: &Spec) -> Observation {
        run_in(spec, &env(), Duration::from_secs(5)).await
    }

    /// Sends `banner`, then reads until the peer closes.
    async fn banner_server(banner: &'static str) -> SocketAddr {
        tcp_server(move |mut s| async move {
            let _ = s.write_all(banner.as_bytes()).await;
            hold(s).await;
        })
        .await
    }

    fn at(addr: SocketAddr) -> String {
        format!("host: 127.0.0.1\nport: {}", addr.port())
    }

    #[test]
    fn validate_reports_every_problem_with_its_path() {
        let good = spec(
            "host: Mail.Example.com\nport: 465\nsend: \"EHLO probed\\r\\n\"\n\
             expect: { contains: '250', regex: '^220 ' }\nmax_read: 4KB\ntls: true\n\
             server_name: smtp.example.com\nca_file: ca.pem\ncheck_chain: true\n\
             check_hostname: false\nmin_days_left: 7\nip: ipv6",
        );
        assert_eq!(good.validate(), vec![]);
        assert_eq!(good.send.as_deref(), Some("EHLO probed\r\n"));
        assert_eq!(good.target_host().as_deref(), Some("mail.example.com"));
        assert_eq!(spec("host: 10.0.0.1\nport: 22").validate(), vec![]);

        let cases: &[(&str, &[(&str, &str)])] = &[
            ("host: ''\nport: 22", &[("host", "host is empty")]),
            (
                "host: h\nport: 22\ntls: true\nmin_days_left: 4000000000",
                &[(
                    "min_days_left",
                    "4000000000 days is more than any certificate lasts",
                )],
            ),
            (
                "host: 'db:5432'\nport: 5432",
                &[("host", "write the port in `port`")],
            ),
            (
                "host: 'tcp://db'\nport: 5432",
                &[("host", "without a scheme")],
            ),
            (
                "host: '10.0.0.1'\nport: 22\nip: ipv6",
                &[("host", "ipv6 asked for")],
            ),
            ("host: h\nport: 0", &[("port", "port 0 is not a port")]),
            ("host: h\nport: 1\nsend: ''", &[("send", "send is empty")]),
            (
                "host: h\nport: 1\nexpect: { contains: '' }",
                &[("expect.contains", "must not be empty")],
            ),
            (
                "host: h\nport: 1\nexpect: { regex: '(open' }",
                &[("expect.regex", "invalid regular expression")],
            ),
            (
                "host: h\nport: 1\nexpect: { contains: x }\nmax_read: 0",
                &[("max_read", "more than 0 bytes")],
            ),
            (
                "host: h\nport: 1\nexpect: { contains: x }\nmax_read: 2MiB",
                &[("max_read", "at most 1 MiB")],
            ),
            (
                "host: h\nport: 1\nmax_read: 1KB",
                &[("max_read", "applies only with expect")],
            ),
            (
                "host: h\nport: 1\nserver_name: n\nca_file: c\ncheck_chain: false\n\
                 check_hostname: true\nmin_days_left: 3",
                &[
                    ("server_name", "server_name applies only with tls: true"),
                    ("ca_file", "ca_file applies only with tls: true"),
                    ("check_chain", "check_chain applies only with tls: true"),
                    (
                        "check_hostname",
                        "check_hostname applies only with tls: true",
                    ),
                    ("min_days_left", "min_days_left applies only with tls: true"),
                ],
            ),
            (
                "host: h\nport: 1\ntls: true\nserver_name: 'bad name'",
                &[("server_name", "invalid server name")],
            ),
        ];
        for (yaml, want) in cases {
            assert_field_errors(yaml, &spec(yaml).validate(), want);
        }
        for yaml in [
            "host: h",
            "port: 1",
            "host: h\nport: 1\nexpect: { body: x }",
            "host: h\nport: 1\nip: ipv5",
        ] {
            assert!(serde_yaml::from_str::<Spec>(yaml).is_err(), "{yaml}");
        }
        let mut s = spec("host: h\nport: 1\ntls: true\nca_file: ca.pem");
        s.resolve_paths(Path::new("/etc/probed"));
        assert_eq!(s.ca_file.as_deref(), Some(Path::new("/etc/probed/ca.pem")));
    }

    #[tokio::test]
    async fn banners_match_or_fail_with_what_came() {
        let ssh = banner_server("SSH-2.0-OpenSSH_9.6\r\n").await;
        let cases: &[(&str, Option<&str>)] = &[
            ("expect: { contains: 'SSH-2.0' }", None),
            ("expect: { regex: '^SSH-2\\.0-OpenSSH_\\d' }", None),
            ("expect: { contains: 'OpenSSH', regex: '^SSH-' }", None),
            (
                "expect: { contains: 'SSH-1.99' }",
                Some(
                    "expected \"SSH-1.99\" in the reply, got \"SSH-2.0-OpenSSH_9.6\\r\\n\" \
                     before the peer closed the connection",
                ),
            ),
            (
                "expect: { contains: 'SSH', regex: 'Dropbear' }",
                Some("expected /Dropbear/ in the reply, got"),
            ),
        ];
        // The server keeps the connection open: a mismatch waits for more until the peer
        // closes. This server closes after its banner.
        let closing = tcp_server(|mut s| async move {
            let _ = s.write_all(b"SSH-2.0-OpenSSH_9.6\r\n").await;
        })
        .await;
        for (expect, want) in cases {
            let addr = if want.is_some() { closing } else { ssh };
            let obs = run(&spec(&format!("{}\n{expect}", at(addr)))).await;
            match want {
                None => {
                    assert!(obs.ok, "{expect}: {:?}", obs.error);
                    assert_eq!(phases(&obs), ["resolve", "connect", "exchange"]);
                    assert_eq!(obs.size, Some(21));
                    assert_eq!(obs.ip, Some(IpAddr::from([127, 0, 0, 1])));
                }
                Some(w) => assert!(reason(&obs).starts_with(w), "{expect}: {}", reason(&obs)),
            }
        }

        // Connecting is all that is asked.
        let obs = run(&spec(&at(ssh))).await;
        assert!(obs.ok, "{:?}", obs.error);
        assert_eq!(phases(&obs), ["resolve", "connect"]);
        assert_eq!(obs.size, None);
    }

    #[tokio::test]
    async fn send_then_expect_the_answer() {
        // A tiny Redis-like PING: answers each line it reads.
        let addr = tcp_server(|mut s| async move {
            let mut buf = [0u8; 256];
            let mut seen = Vec::new();
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                seen.extend_from_slice(&buf[..n]);
                if seen.ends_with(b"\r\n") {
                    let answer: &[u8] = if seen == b"PING\r\n" {
                        b"+PONG\r\n"
                    } else {
                        b"-ERR\r\n"
                    };
                    // Split in two writes: a match may straddle reads.
                    let _ = s.write_all(&answer[..2]).await;
                    let _ = s.flush().await;
                    let _ = s.write_all(&answer[2..]).await;
                    seen.clear();
                }
            }
        })
        .await;
        let obs = run(&spec(&format!(
            "{}\nsend: \"PING\\r\\n\"\nexpect: {{ contains: '+PONG' }}",
            at(addr)
        )))
        .await;
        assert!(obs.ok, "{:?}", obs.error);
        assert_eq!(obs.size, Some(7));
        let within = Duration::from_millis(400);
        let obs = run_in(
            &spec(&format!(
                "{}\nsend: \"PONG\\r\\n\"\nexpect: {{ contains: '+PONG' }}",
                at(addr)
            )),
            &env(),
            within,
        )
        .await;
        assert!(
            reason(&obs).starts_with("timed out after ")
                && reason(&obs).ends_with("while waiting for \"+PONG\" (got \"-ERR\\r\\n\")"),
            "{}",
            reason(&obs)
        );
        // Send only: up once written.
        let obs = run(&spec(&format!("{}\nsend: \"PING\\r\\n\"", at(addr)))).await;
        assert!(obs.ok, "{:?}", obs.error);
        assert_eq!(phases(&obs), ["resolve", "connect", "exchange"]);
        assert_eq!(obs.size, Some(0));
    }

    #[tokio::test]
    async fn refused_is_down() {
        let closed = refused_addr().await;
        let obs = run(&spec(&format!("{}\nexpect: {{ contains: x }}", at(closed)))).await;
        assert!(!obs.ok);
        assert_eq!(
            reason(&obs),
            format!("connect to {closed}: connection refused")
        );
        assert_eq!(phases(&obs), ["resolve", "connect"]);
    }

    #[tokio::test]
    async fn a_peer_that_never_speaks_is_down_at_the_deadline() {
        let silent = tcp_server(hold).await;
        let within = Duration::from_millis(400);
        let t = Instant::now();
        let obs = run_in(
            &spec(&format!("{}\nexpect: {{ contains: 'SSH-' }}", at(silent))),
            &env(),
            within,
        )
        .await;
        assert_by_deadline(t.elapsed(), within);
        assert!(!obs.ok);
        assert!(
            reason(&obs).starts_with("timed out after ")
                && reason(&obs).ends_with(" while waiting for \"SSH-\" (got nothing)"),
            "{}",
            reason(&obs)
        );
        assert_eq!(phases(&obs), ["resolve", "connect", "exchange"]);
    }

    #[tokio::test]
    async fn an_endless_reply_stops_at_max_read() {
        let endless = tcp_server(|mut s| async move {
            let block = [b'x'; 4096];
            while s.write_all(&block).await.is_ok() {}
        })
        .await;
        let obs = run(&spec(&format!(
            "{}\nexpect: {{ contains: 'END' }}\nmax_read: 10000",
            at(endless)
        )))
        .await;
        assert!(
            reason(&obs)
                .starts_with("expected \"END\" in the first 9.8 KiB of the reply, got \"xxx"),
            "{}",
            reason(&obs)
        );
        assert_eq!(obs.size, Some(10_000));
    }

    #[tokio::test]
    async fn tls_wrapped_echo() {
        let pki = ca_signed(&["127.0.0.1", "echo.internal"], 90 * 86_400 + 12 * 3600);
        let ca = pem_file(&pki.ca_pem);
        let addr = echo_server(pki.server.clone()).await;
        let base = format!(
            "{}\ntls: true\nsend: \"hello over tls\\n\"\nexpect: {{ contains: 'over tls' }}",
            at(addr)
        );
        let obs = run(&spec(&format!(
            "{base}\nca_file: '{}'",
            ca.path().display()
        )))
        .await;
        assert!(obs.ok, "{:?}", obs.error);
        assert_eq!(phases(&obs), ["resolve", "connect", "tls", "exchange"]);
        assert_eq!(obs.cert_expiry, Some(pki.leaf_not_after));
        assert_eq!(obs.size, Some(15));
        // What blackbox's TLS series show: the version, the leaf's fingerprint and names.
        let tls = obs.tls.as_deref().expect("tls seen");
        assert_eq!(tls.version, "TLS 1.3");
        use sha2::Digest;
        let fp: String = sha2::Sha256::digest(pki.chain[0].as_ref())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(tls.fingerprint_sha256, fp);
        assert_eq!(tls.sans, "127.0.0.1,echo.internal");
        assert_eq!(
            (tls.subject.as_str(), tls.issuer.as_str()),
            ("CN=probed test leaf", "CN=probed test ca")
        );
        assert!(tls.chain_expiry.is_some_and(|e| e <= pki.leaf_not_after));

        let obs = run(&spec(&format!(
            "{base}\nca_file: '{}'\nserver_name: echo.internal\nmin_days_left: 30",
            ca.path().display()
        )))
        .await;
        assert!(obs.ok, "{:?}", obs.error);

        let obs = run(&spec(&format!(
            "{base}\nca_file: '{}'\nmin_days_left: 100",
            ca.path().display()
        )))
        .await;
        assert_eq!(
            reason(&obs),
            "certificate for 127.0.0.1 expires in 90 days (min_days_left 100)"
        );

        // Untrusted: down before anything is sent.
        let obs = run(&spec(&base)).await;
        assert_eq!(
            reason(&obs),
            "tls: invalid peer certificate: unknown issuer (not signed by a trusted root)"
        );
        assert_eq!(phases(&obs), ["resolve", "connect", "tls"]);
        assert_eq!(obs.cert_expiry, Some(pki.leaf_not_after));
        assert_eq!(obs.size, None);

        let obs = run(&spec(&format!("{base}\ncheck_chain: false"))).await;
        assert!(obs.ok, "{:?}", obs.error);

        // A plain-text server under `tls: true`.
        let plain = banner_server("SSH-2.0-OpenSSH_9.6\r\n").await;
        let obs = run(&spec(&format!("{}\ntls: true", at(plain)))).await;
        assert!(reason(&obs).starts_with("tls: "), "{}", reason(&obs));
        assert_eq!(phases(&obs), ["resolve", "connect", "tls"]);
    }
}
