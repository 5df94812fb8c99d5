//! `kind: email`: one plain-text mail per alert through an SMTP relay (lettre's async
//! transport, rustls for STARTTLS and implicit TLS), a fresh connection per send.
//!
//! Subject is [`Alert::summary`], body [`Alert::body`]. Every mail of one incident carries
//! `References: <dedup-key@probed>` (and later ones `In-Reply-To` the same), so mail clients
//! thread them; `X-Probed-Event` and `X-Probed-Dedup-Key` let filters act on them.
//!
//! Failures: a 4xx reply and anything short of a reply (refused, reset, TLS, timeout) are
//! worth a retry; a 5xx reply (bad credentials, a refused recipient) is permanent.

use std::time::Duration;

use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::http::{Scrub, error_chain, no_answer, within};
use super::{Alert, BuildCx, Delivered, Event, SendError};
use crate::config::notify::email::mailbox;
pub use crate::config::notify::email::{Smtp, Spec, TlsMode};

impl Spec {
    /// The transport (reads `ca_file`), ready to connect on each send.
    pub fn build(&self, _cx: &BuildCx) -> Result<Sender, String> {
        let s = &self.smtp;
        let host = s.host.trim().to_string();
        let port = s.port.unwrap_or(s.tls.default_port());
        let timeout = self.timeout.map_or(super::DEFAULT_SEND_TIMEOUT, |t| t.0);
        let from = mailbox(&self.from).map_err(|e| format!("from: {e}"))?;
        let to = self
            .to
            .iter()
            .enumerate()
            .map(|(i, t)| mailbox(t).map_err(|e| format!("to[{i}]: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        if to.is_empty() {
            return Err("to: at least one recipient is needed".into());
        }

        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.clone())
            .port(port)
            .timeout(Some(timeout));
        if s.tls != TlsMode::None {
            let mut tls = TlsParameters::builder(host.clone())
                .dangerous_accept_invalid_certs(s.accept_invalid_certs);
            if let Some(path) = &s.ca_file {
                tls = tls.add_root_certificate(read_ca_file(path)?);
            }
            let tls = tls
                .build_rustls()
                .map_err(|e| format!("smtp: tls setup: {}", error_chain(&e)))?;
            builder = builder.tls(match s.tls {
                TlsMode::Tls => Tls::Wrapper(tls),
                _ => Tls::Required(tls),
            });
        }
        let mut secrets = Vec::new();
        if let (Some(user), Some(password)) = (&s.username, &s.password) {
            builder = builder.credentials(Credentials::new(
                user.clone(),
                password.expose().to_string(),
            ));
            secrets.push(password.expose().to_string());
            // AUTH PLAIN sends base64 of `\0user\0password` (AUTH LOGIN each alone).
            secrets.push(format!("\0{user}\0{}", password.expose()));
        }
        Ok(Sender {
            transport: builder.build(),
            shown: if host.contains(':') {
                format!("smtp [{host}]:{port}")
            } else {
                format!("smtp {host}:{port}")
            },
            from,
            to,
            subject_prefix: self.subject_prefix.clone(),
            timeout,
            scrub: Scrub::new(secrets),
        })
    }
}

/// A ready `email` notifier.
pub struct Sender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    /// `smtp host:port`, how messages name the relay.
    shown: String,
    from: Mailbox,
    to: Vec<Mailbox>,
    subject_prefix: Option<String>,
    timeout: Duration,
    scrub: Scrub,
}

impl Sender {
    /// One mail, within `timeout`. `detail` is the server's reply (`250 ...`).
    pub async fn send(&self, alert: &Alert) -> Result<Delivered, SendError> {
        let message = self.message(alert)?;
        let sent = async {
            match self.transport.send(message).await {
                Ok(reply) => Ok(Delivered {
                    detail: format!(
                        "{} {}",
                        reply.code(),
                        self.scrub
                            .quote(&reply.message().collect::<Vec<_>>().join(" "))
                    )
                    .trim_end()
                    .to_string(),
                }),
                Err(e) => Err(self.failure(&e)),
            }
        };
        within(&self.shown, self.timeout, sent)
            .await
            .map_err(|e| self.scrub.error(e))
    }

    /// The mail for `alert`.
    fn message(&self, alert: &Alert) -> Result<Message, SendError> {
        let summary = alert.summary();
        let subject = match &self.subject_prefix {
            Some(p) if !p.trim().is_empty() => format!("{} {summary}", p.trim_end()),
            _ => summary,
        };
        // One line: a reason with a newline must not start a header of its own.
        let subject: String = subject
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let thread = format!("<{}@probed>", msg_id_part(&alert.dedup_key));
        let mut m = Message::builder()
            .from(self.from.clone())
            .subject(subject)
            .message_id(None)
            .references(thread.clone())
            .header(ContentType::TEXT_PLAIN)
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("X-Probed-Event"),
                alert.event.as_str().to_string(),
            ))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("X-Probed-Dedup-Key"),
                alert.dedup_key.clone(),
            ));
        if alert.event != Event::Trigger && alert.event != Event::Test {
            m = m.in_reply_to(thread);
        }
        for t in &self.to {
            m = m.to(t.clone());
        }
        m.body(alert.body())
            .map_err(|e| SendError::permanent(format!("cannot build the mail: {e}")))
    }

    /// A failed send: 5xx replies and client-side refusals are permanent, everything else
    /// (4xx replies, network, TLS, timeouts) worth a retry.
    fn failure(&self, e: &lettre::transport::smtp::Error) -> SendError {
        if let Some(code) = e.status() {
            let said = std::error::Error::source(e)
                .map(|s| s.to_string())
                .unwrap_or_default();
            let said = self.scrub.quote(&said);
            let reason = format!("{}: server answered {code} {said}", self.shown)
                .trim_end()
                .to_string();
            return if e.is_permanent() {
                SendError::permanent(reason)
            } else {
                SendError::retry(reason)
            };
        }
        if e.is_timeout() {
            return no_answer(&self.shown, self.timeout);
        }
        let reason = format!("{}: {}", self.shown, error_chain(e));
        // A client error is lettre refusing to go on (no AUTH mechanism in common, no
        // STARTTLS on offer): the same next time.
        if e.is_client() {
            SendError::permanent(reason)
        } else {
            SendError::retry(reason)
        }
    }

    pub fn refresh_every(&self) -> Option<Duration> {
        None
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// What this notifier's texts are scrubbed of.
    pub(crate) fn scrub(&self) -> &super::http::Scrub {
        &self.scrub
    }
}

/// The dedup key as the left part of a message id: other characters become `.`.
fn msg_id_part(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) {
                c
            } else {
                '.'
            }
        })
        .collect()
}

/// Reads a PEM file of CA certificates.
fn read_ca_file(path: &std::path::Path) -> Result<Certificate, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let shown = path.display();
    let pem = std::fs::read(path)
        .map_err(|e| format!("smtp.ca_file: cannot read {shown}: {}", error_chain(&e)))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("smtp.ca_file: {shown}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("smtp.ca_file: no certificate in {shown}"));
    }
    Certificate::from_pem(&pem).map_err(|e| format!("smtp.ca_file: {shown}: {}", error_chain(&e)))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::{Path, PathBuf};
    use std::process::Stdio;

    use tokio::io::{AsyncBufReadExt, BufReader};
    use tokio::process::{Child, Command};
    use tokio::time::Instant;

    use super::*;
    use crate::alert::http::fake::{assert_field_errors, dead_addr, hanging_server};
    use crate::alert::testing::alert;

    // ---- a real SMTP server --------------------------------------------------------------

    /// How the test server is started.
    #[derive(Default)]
    struct Opts {
        /// STARTTLS (required) with a certificate from a test CA.
        starttls: bool,
        /// Implicit TLS with that certificate.
        implicit_tls: bool,
        /// `user:password` that AUTH accepts; AUTH is then required.
        auth: Option<&'static str>,
    }

    /// `tests/peers/smtpd.py` (aiosmtpd) on 127.0.0.1, killed when dropped.
    struct Smtpd {
        /// First, so the server is killed before its directory is removed.
        _child: Child,
        port: u16,
        /// PEM of the CA that signed the server's certificate (when it has one).
        ca_file: PathBuf,
        dir: tempfile::TempDir,
    }

    impl Smtpd {
        async fn start(opts: Opts) -> Smtpd {
            let dir = tempfile::tempdir().unwrap();
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/smtpd.py");
            let mut cmd = Command::new("python3");
            cmd.arg(script)
                .arg("--port=0")
                .arg(format!("--maildir={}", dir.path().join("mail").display()));
            let ca_file = dir.path().join("ca.pem");
            if opts.starttls || opts.implicit_tls {
                let (ca, cert, key) = test_pki();
                std::fs::write(&ca_file, ca).unwrap();
                std::fs::write(dir.path().join("cert.pem"), cert).unwrap();
                std::fs::write(dir.path().join("key.pem"), key).unwrap();
                cmd.arg(format!("--cert={}", dir.path().join("cert.pem").display()))
                    .arg(format!("--key={}", dir.path().join("key.pem").display()));
            }
            if opts.implicit_tls {
                cmd.arg("--implicit-tls");
            }
            if let Some(a) = opts.auth {
                cmd.arg(format!("--auth={a}"));
            }
            let log = std::fs::File::create(dir.path().join("smtpd.log")).unwrap();
            // stdin stays open: the server exits when it closes, so it never outlives us.
            let mut child = cmd
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(log)
                .kill_on_drop(true)
                .spawn()
                .expect("python3 tests/peers/smtpd.py (pip install aiosmtpd)");
            let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
            let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
                .await
                .ok()
                .and_then(|l| l.ok().flatten())
                .unwrap_or_else(|| {
                    let log = std::fs::read_to_string(dir.path().join("smtpd.log"));
                    panic!("smtpd.py did not start: {log:?}")
                });
            let port = line
                .strip_prefix("ready ")
                .and_then(|p| p.trim().parse().ok())
                .unwrap_or_else(|| panic!("unexpected line from smtpd.py: {line:?}"));
            Smtpd {
                _child: child,
                port,
                ca_file,
                dir,
            }
        }

        /// The messages in `Maildir/new`, once there are `n` of them (within 5s).
        async fn messages(&self, n: usize) -> Vec<Mail> {
            let new = self.dir.path().join("mail/new");
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let files: Vec<_> = std::fs::read_dir(&new)
                    .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path()).collect())
                    .unwrap_or_default();
                if files.len() >= n {
                    return files
                        .iter()
                        .map(|f| Mail::parse(&std::fs::read_to_string(f).unwrap()))
                        .collect();
                }
                assert!(
                    Instant::now() < deadline,
                    "{} of {n} messages arrived",
                    files.len()
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    /// A CA, and a certificate for 127.0.0.1 and localhost signed by it: PEMs of the CA,
    /// the certificate and its key.
    fn test_pki() -> (String, String, String) {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "probed smtp test ca");
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".into()])
            .unwrap()
            .signed_by(&key, &*ca)
            .unwrap();
        (ca.pem(), leaf.pem(), key.serialize_pem())
    }

    /// One stored message: unfolded headers (names lower-cased) and the body.
    struct Mail {
        headers: BTreeMap<String, String>,
        body: String,
    }

    impl Mail {
        fn parse(text: &str) -> Mail {
            let text = text.replace("\r\n", "\n");
            let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
            let mut headers = BTreeMap::new();
            let mut last: Option<String> = None;
            for line in head.lines() {
                if line.starts_with([' ', '\t']) {
                    if let Some(k) = &last {
                        let v: &mut String = headers.get_mut(k).unwrap();
                        v.push(' ');
                        v.push_str(line.trim());
                    }
                } else if let Some((k, v)) = line.split_once(':') {
                    let k = k.trim().to_ascii_lowercase();
                    headers.insert(k.clone(), v.trim().to_string());
                    last = Some(k);
                }
            }
            Mail {
                headers,
                body: body.to_string(),
            }
        }

        fn header(&self, name: &str) -> &str {
            self.headers.get(name).map_or("", String::as_str)
        }
    }

    fn spec(yaml: &str) -> Spec {
        crate::alert::http::fake::spec(yaml)
    }

    fn sender(yaml: &str) -> Sender {
        let s = spec(yaml);
        assert_eq!(s.validate(), Vec::new(), "{yaml}");
        s.build(&BuildCx::new().unwrap()).expect("build")
    }

    // ---- tests ---------------------------------------------------------------------------

    #[tokio::test]
    async fn delivers_to_every_recipient() {
        let smtpd = Smtpd::start(Opts::default()).await;
        let n = sender(&format!(
            "{{ smtp: {{ host: 127.0.0.1, port: {}, tls: none }},
                from: 'Probed <probed@example.com>',
                to: [oncall@example.com, 'Backup <backup@example.com>'],
                subject_prefix: '[prod]' }}",
            smtpd.port
        ));
        let a = alert(Event::Trigger);
        let d = n.send(&a).await.expect("delivered");
        assert!(d.detail.starts_with("250 "), "{}", d.detail);

        let mail = smtpd.messages(1).await;
        assert_eq!(mail.len(), 1);
        let m = &mail[0];
        assert_eq!(
            m.header("subject"),
            "[prod] [probed] DOWN api-write: status 503, expected 200, 201"
        );
        assert_eq!(m.header("from"), "Probed <probed@example.com>");
        assert!(
            m.header("to").contains("oncall@example.com"),
            "{}",
            m.header("to")
        );
        assert!(
            m.header("to").contains("backup@example.com"),
            "{}",
            m.header("to")
        );
        // The envelope, as the server saw it.
        assert_eq!(m.header("x-mailfrom"), "probed@example.com");
        assert_eq!(
            m.header("x-rcptto"),
            "oncall@example.com, backup@example.com"
        );
        assert_eq!(m.header("x-probed-dedup-key"), "probed-test-42");
        assert_eq!(m.header("x-probed-event"), "trigger");
        assert_eq!(m.header("references"), "<probed-test-42@probed>");
        assert!(m.header("message-id").starts_with('<'), "{:?}", m.headers);
        assert!(m.header("content-type").starts_with("text/plain"));
        for line in [
            "[probed] DOWN api-write: status 503, expected 200, 201",
            "probe:     api-write (http)",
            "state:     down",
            "reason:    status 503, expected 200, 201",
            "since:     2023-11-14T22:13:20.000Z",
            "incident:  42 (trigger)",
        ] {
            assert!(
                m.body.lines().any(|l| l == line),
                "{line:?} not in {:?}",
                m.body
            );
        }

        // A second mail of the incident: its own Message-ID, threaded under the first.
        n.send(&alert(Event::Resolve)).await.expect("delivered");
        let mail = smtpd.messages(2).await;
        let resolved = mail
            .iter()
            .find(|m| m.header("x-probed-event") == "resolve")
            .expect("the resolve mail");
        assert_eq!(resolved.header("in-reply-to"), "<probed-test-42@probed>");
        assert_eq!(
            resolved.header("subject"),
            "[prod] [probed] RESOLVED api-write"
        );
        assert_ne!(resolved.header("message-id"), m.header("message-id"));
    }

    #[tokio::test]
    async fn starttls_with_a_private_ca() {
        let smtpd = Smtpd::start(Opts {
            starttls: true,
            ..Opts::default()
        })
        .await;
        let n = sender(&format!(
            "{{ smtp: {{ host: 127.0.0.1, port: {}, ca_file: '{}' }},
                from: probed@example.com, to: [oncall@example.com] }}",
            smtpd.port,
            smtpd.ca_file.display()
        ));
        let d = n.send(&alert(Event::Trigger)).await.expect("delivered");
        assert!(d.detail.starts_with("250 "), "{}", d.detail);
        assert_eq!(smtpd.messages(1).await.len(), 1);

        // Without the CA, the certificate is not trusted: a retry, nothing delivered.
        let n = sender(&format!(
            "{{ smtp: {{ host: 127.0.0.1, port: {} }},
                from: probed@example.com, to: [oncall@example.com] }}",
            smtpd.port
        ));
        let e = n.send(&alert(Event::Trigger)).await.unwrap_err();
        assert!(matches!(e, SendError::Retry { .. }), "{e:?}");
        assert!(e.to_string().contains("certificate"), "{e}");

        // Unless told to accept any certificate.
        let n = sender(&format!(
            "{{ smtp: {{ host: 127.0.0.1, port: {}, accept_invalid_certs: true }},
                from: probed@example.com, to: [oncall@example.com] }}",
            smtpd.port
        ));
        n.send(&alert(Event::Trigger)).await.expect("delivered");
        assert_eq!(smtpd.messages(2).await.len(), 2);
    }

    #[tokio::test]
    async fn implicit_tls() {
        let smtpd = Smtpd::start(Opts {
            implicit_tls: true,
            ..Opts::default()
        })
        .await;
        let n = sender(&format!(
            "{{ smtp: {{ host: 127.0.0.1, port: {}, tls: tls, ca_file: '{}' }},
                from: probed@example.com, to: [oncall@example.com] }}",
            smtpd.port,
            smtpd.ca_file.display()
        ));
        let d = n.send(&alert(Event::Trigger)).await.expect("delivered");
        assert!(d.detail.starts_with("250 "), "{}", d.detail);
        let m = smtpd.messages(1).await;
        assert_eq!(m[0].header("x-rcptto"), "oncall@example.com");
    }

    #[tokio::test]
    async fn auth_and_a_wrong_password() {
        let smtpd = Smtpd::start(Opts {
            starttls: true,
            auth: Some("probed:right-pw-4711"),
            ..Opts::default()
        })
        .await;
        let with = |password: &str| {
            sender(&format!(
                "{{ smtp: {{ host: 127.0.0.1, port: {}, ca_file: '{}',
                            username: probed, password: '{password}' }},
                    from: probed@example.com, to: [oncall@example.com] }}",
                smtpd.port,
                smtpd.ca_file.display()
            ))
        };
        let d = with("right-pw-4711")
            .send(&alert(Event::Trigger))
            .await
            .expect("delivered");
        assert!(d.detail.starts_with("250 "), "{}", d.detail);
        assert_eq!(smtpd.messages(1).await.len(), 1);

        let e = with("wrong-pw-0815")
            .send(&alert(Event::Trigger))
            .await
            .unwrap_err();
        assert!(matches!(e, SendError::Permanent { .. }), "{e:?}");
        assert!(e.to_string().contains("535"), "{e}");
        let text = format!("{e} {e:?}");
        assert!(
            !text.contains("wrong-pw-0815") && !text.contains("right-pw"),
            "{text}"
        );

        // Without credentials the server refuses the mail for good.
        let e = sender(&format!(
            "{{ smtp: {{ host: 127.0.0.1, port: {}, ca_file: '{}' }},
                from: probed@example.com, to: [oncall@example.com] }}",
            smtpd.port,
            smtpd.ca_file.display()
        ))
        .send(&alert(Event::Trigger))
        .await
        .unwrap_err();
        assert!(matches!(e, SendError::Permanent { .. }), "{e:?}");
        assert!(e.to_string().contains("530"), "{e}");
    }

    #[tokio::test]
    async fn nothing_listening_is_a_retry() {
        let port = dead_addr().await.port();
        let n = sender(&format!(
            "{{ smtp: {{ host: 127.0.0.1, port: {port}, tls: none, username: u, password: pw-xyz-123 }},
                from: probed@example.com, to: [oncall@example.com], timeout: 2s }}"
        ));
        let e = n.send(&alert(Event::Trigger)).await.unwrap_err();
        let SendError::Retry { reason, .. } = &e else {
            panic!("expected retry, got {e:?}");
        };
        assert!(
            reason.starts_with(&format!("smtp 127.0.0.1:{port}: ")),
            "{reason}"
        );
        assert!(reason.contains("refused"), "{reason}");
        assert!(!reason.contains("pw-xyz-123"));
    }

    #[tokio::test]
    async fn a_silent_server_is_a_retry_at_the_timeout() {
        // Accepts and never greets.
        let port = hanging_server().await.port();
        let n = sender(&format!(
            "{{ smtp: {{ host: 127.0.0.1, port: {port}, tls: none }},
                from: probed@example.com, to: [oncall@example.com], timeout: 300ms }}"
        ));
        let start = Instant::now();
        let e = n.send(&alert(Event::Trigger)).await.unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(2));
        assert!(matches!(e, SendError::Retry { .. }), "{e:?}");
        assert!(e.to_string().contains("no answer within 300ms"), "{e}");
    }

    #[test]
    fn validate_reports_every_problem() {
        let cases: &[(&str, &[(&str, &str)])] = &[
            (
                "{ smtp: { host: smtp.example.com }, from: a@example.com, to: [b@example.com] }",
                &[],
            ),
            (
                "{ smtp: { host: smtp.example.com, port: 0 }, from: 'not a mailbox', to: [] }",
                &[
                    ("smtp.port", "1-65535"),
                    ("from", "invalid mailbox"),
                    ("to", "at least one recipient"),
                ],
            ),
            (
                "{ smtp: { host: 'smtp://x', tls: none, username: u, password: hunter2 },
                   from: a@example.com, to: [b@example.com, 'b@', 'C <c@example.com>'] }",
                &[
                    ("smtp.host", "host name or ip address alone"),
                    ("smtp.tls", "never sent in plain text"),
                    ("to[1]", "invalid mailbox"),
                ],
            ),
            (
                "{ smtp: { host: 'x:25', password: pw, tls: none, accept_invalid_certs: true },
                   from: a@example.com, to: [b@example.com], subject_prefix: \"a\\nb\", timeout: 0s }",
                &[
                    ("smtp.host", "the port goes in smtp.port"),
                    ("smtp.username", "a password needs a username"),
                    ("smtp.tls", "never sent in plain text"),
                    ("smtp.tls", "need tls: starttls or tls"),
                    ("subject_prefix", "one line"),
                    ("timeout", "more than 0s"),
                ],
            ),
            (
                // A local relay may take a password in plain text.
                "{ smtp: { host: 127.0.0.1, tls: none, username: u, password: p },
                   from: a@example.com, to: [b@example.com] }",
                &[],
            ),
        ];
        for (yaml, want) in cases {
            let got = spec(yaml).validate();
            assert_field_errors(yaml, &got, want);
            for e in &got {
                assert!(!e.message.contains("hunter2") && !e.message.ends_with('.'));
            }
        }
        // An unknown `tls` value or field is a parse error, reported by the loader with
        // its line and column.
        for bad in [
            "{ smtp: { host: h, tls: ssl }, from: a@example.com, to: [b@example.com] }",
            "{ smtp: { host: h, pass: x }, from: a@example.com, to: [b@example.com] }",
        ] {
            let e = serde_yaml::from_str::<Spec>(bad).unwrap_err().to_string();
            assert!(e.contains("unknown"), "{e}");
        }
        // Default ports follow `tls`.
        let s = spec("{ smtp: { host: h }, from: a@example.com, to: [b@example.com] }");
        assert_eq!(s.smtp.tls, TlsMode::Starttls);
        assert_eq!(
            [TlsMode::None, TlsMode::Starttls, TlsMode::Tls].map(TlsMode::default_port),
            [25, 587, 465]
        );
    }
}
