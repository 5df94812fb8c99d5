//! TLS across the kinds that speak it (http, tcp with `tls: true`, tls, websocket), against
//! real rustls servers on 127.0.0.1: a self-signed certificate that is its own CA, given as
//! `ca_file`, is trusted (name and dates still checked), and every reason these checks give
//! is words, never Rust's debug formatting (`Other(OtherError(CaUsedAsEndEntity))`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::testkit::{
    Pki, ca_signed, env, hold, pem_file, reason, run_in, self_signed, self_signed_ca, spec,
    tcp_server, tls_server,
};
use super::{Env, Observation};

/// One TLS server per kind: HTTP/1.1 answering 200, a WebSocket upgrade, an echo (tcp and
/// the tls kind only need the handshake).
struct Servers {
    http: SocketAddr,
    ws: SocketAddr,
    echo: SocketAddr,
}

async fn servers(config: Arc<rustls::ServerConfig>) -> Servers {
    let http = tls_server(config.clone(), |mut tls| async move {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            match tls.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let _ = tls
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            .await;
        let _ = tls.shutdown().await;
    })
    .await;
    let ws = tls_server(config.clone(), |tls| async move {
        if let Ok(mut ws) = tokio_tungstenite::accept_async(tls).await {
            let _ = ws.close(None).await;
        }
    })
    .await;
    let echo = super::testkit::echo_server(config).await;
    Servers { http, ws, echo }
}

/// Runs each kind against `s` with `tls` options (`ca_file: …`, `server_name: …`, as YAML
/// map entries) and returns (kind, observation).
async fn each_kind(env: &Env, s: &Servers, tls: &[String]) -> Vec<(&'static str, Observation)> {
    let within = Duration::from_secs(5);
    let inline = tls.join(", ");
    let lines: String = tls.iter().map(|t| format!("\n{t}")).collect();
    let http: super::http::Spec = spec(&format!(
        "request: {{ url: 'https://127.0.0.1:{}/' }}\ntls: {{ {inline} }}",
        s.http.port()
    ));
    let ws: super::websocket::Spec = spec(&format!(
        "url: 'wss://127.0.0.1:{}/'\ntls: {{ {inline} }}",
        s.ws.port()
    ));
    let tcp: super::tcp::Spec = spec(&format!(
        "host: 127.0.0.1\nport: {}\ntls: true{lines}",
        s.echo.port()
    ));
    let tls_kind: super::tls::Spec =
        spec(&format!("host: 127.0.0.1\nport: {}{lines}", s.echo.port()));
    vec![
        ("http", run_in(&http, env, within).await),
        ("websocket", run_in(&ws, env, within).await),
        ("tcp", run_in(&tcp, env, within).await),
        ("tls", run_in(&tls_kind, env, within).await),
    ]
}

/// Rust's debug formatting in a reason: `(FooError`, `Other(`, `CamelCase(` or
/// `CamelCase {`, `field: Some(`.
fn debug_formatting(reason: &str) -> Option<String> {
    let patterns = [
        r"\(\s*[A-Za-z_][A-Za-z0-9_]*Error\b",
        r"\bOther\(",
        r"\b[A-Z][a-z0-9]+[A-Z][A-Za-z0-9]*\s*[({]",
        r"\b(Some|None|Ok|Err)\(",
        r"\b[a-z_]+: [A-Z][A-Za-z]+\s*[({]",
        r"\bkind: [A-Z]",
    ];
    patterns.iter().find_map(|p| {
        regex::Regex::new(p)
            .unwrap()
            .find(reason)
            .map(|m| format!("{p} matched {:?}", m.as_str()))
    })
}

#[test]
fn the_debug_formatting_check_catches_what_rustls_used_to_show() {
    for bad in [
        "tls: invalid peer certificate: Other(OtherError(CaUsedAsEndEntity))",
        "tls: received corrupt message of type InvalidContentType(x)",
        "connect: (IoError something)",
        "error: Custom { kind: InvalidData, error: \"x\" }",
        "tls: peer sent Some(3)",
    ] {
        assert!(debug_formatting(bad).is_some(), "{bad}");
    }
    for good in [
        "tls: invalid peer certificate: unknown issuer (not signed by a trusted root)",
        "tls: invalid peer certificate: certificate not valid for name \"other.example\"",
        "certificate for 127.0.0.1 expired 2 days ago (notAfter 2026-11-20 10:00 UTC)",
        "the job reported a failure (exit status 137) 5s ago",
    ] {
        assert_eq!(debug_formatting(good), None, "{good}");
    }
}

/// A self-signed certificate that is its own CA (CA:TRUE), given as `ca_file`: trusted by
/// every kind, as blackbox_exporter trusts it; its name and dates still count. Every reason
/// of every case, across the kinds, is free of debug formatting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_signed_ca_in_ca_file_is_trusted_and_every_reason_is_words() {
    let env = env();
    let own = self_signed_ca(&["127.0.0.1", "own.internal"], -86_400, 365 * 86_400);
    let expired = self_signed_ca(&["127.0.0.1"], -10 * 86_400, -2 * 86_400);
    let signed = ca_signed(&["127.0.0.1"], 90 * 86_400);
    let plain = self_signed(&["127.0.0.1"]);
    let files: Vec<_> = [&own, &expired, &signed, &plain]
        .iter()
        .map(|p: &&Pki| pem_file(&p.ca_pem))
        .collect();
    let ca = |i: usize| format!("ca_file: '{}'", files[i].path().display());
    let (own_s, expired_s, signed_s, plain_s) = (
        servers(own.server.clone()).await,
        servers(expired.server.clone()).await,
        servers(signed.server.clone()).await,
        servers(plain.server.clone()).await,
    );
    // Not TLS at all: an SSH banner where a handshake was expected.
    let ssh = tcp_server(|mut s| async move {
        let _ = s.write_all(b"SSH-2.0-OpenSSH_9.6\r\n").await;
        hold(s).await;
    })
    .await;
    let ssh_s = Servers {
        http: ssh,
        ws: ssh,
        echo: ssh,
    };

    // (what, servers, tls options, None for up or a piece every kind's reason holds)
    let cases: Vec<(&str, &Servers, Vec<String>, Option<&str>)> = vec![
        ("own ca in ca_file", &own_s, vec![ca(0)], None),
        (
            "own ca in ca_file, by its other name",
            &own_s,
            vec![ca(0), "server_name: own.internal".into()],
            None,
        ),
        (
            "own ca in ca_file, wrong name",
            &own_s,
            vec![ca(0), "server_name: other.example".into()],
            Some("not valid for name \"other.example\""),
        ),
        // Refused with what to do about it.
        (
            "own ca, no ca_file",
            &own_s,
            vec![],
            Some(
                "is a CA certificate (CA:TRUE); if it is self-signed on purpose, put that certificate itself in ca_file",
            ),
        ),
        (
            "own ca, another ca_file",
            &own_s,
            vec![ca(2)],
            Some("put that certificate itself in ca_file to trust it"),
        ),
        (
            "expired own ca in ca_file",
            &expired_s,
            vec![ca(1)],
            Some("expired"),
        ),
        ("ca-signed with its ca", &signed_s, vec![ca(2)], None),
        (
            "ca-signed, no ca_file",
            &signed_s,
            vec![],
            Some("unknown issuer"),
        ),
        ("self-signed leaf in ca_file", &plain_s, vec![ca(3)], None),
        ("not tls", &ssh_s, vec![ca(0)], Some("tls")),
    ];
    let mut failures = Vec::new();
    for (what, s, tls, want) in &cases {
        for (kind, obs) in each_kind(&env, s, tls).await {
            let r = reason(&obs);
            if let Some(bad) = debug_formatting(r) {
                failures.push(format!("{what} / {kind}: debug formatting ({bad}): {r}"));
            }
            match want {
                None if !obs.ok => failures.push(format!("{what} / {kind}: down: {r}")),
                Some(_) if obs.ok => failures.push(format!("{what} / {kind}: up")),
                Some(w) if !r.contains(w) => {
                    failures.push(format!("{what} / {kind}: {r:?} lacks {w:?}"))
                }
                _ => {}
            }
            if *what == "own ca in ca_file" && obs.ok {
                assert_eq!(obs.cert_expiry, Some(own.leaf_not_after), "{kind}");
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
