//! Tests of `kind: websocket`: the pure parts, then sessions against local servers
//! (tungstenite, raw TCP, TLS), Socket.IO against the real server, and secrets kept out
//! of reasons.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};

use http::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt};
use tokio::sync::mpsc;

use super::*;
use crate::probe::net::base64;
use crate::probe::testkit::phases as names;
use crate::probe::testkit::{
    Pki, Zone, assert_by_deadline, assert_down, assert_up, ca_signed, env, hold, pem_file, reason,
    refused_addr, run_in, tcp_server, tls_server,
};

// ---- helpers -------------------------------------------------------------------------

/// A spec of this kind from YAML: [`testkit::spec`](crate::probe::testkit::spec), typed.
fn spec(yaml: &str) -> Spec {
    crate::probe::testkit::spec(yaml)
}

async fn run(spec: &Spec) -> Observation {
    run_in(spec, &env(), Duration::from_secs(5)).await
}

fn phase(obs: &Observation, name: &str) -> Duration {
    obs.phases
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no phase {name} in {:?}", obs.phases))
        .1
}

/// What a test server saw of one upgrade request.
#[derive(Debug)]
struct Seen {
    path: String,
    headers: HeaderMap,
}

/// Upgrades `stream` (server side, tungstenite), reporting the request to `tx`. `refuse`
/// answers that status instead; the first subprotocol offered is picked.
async fn upgrade<S>(
    stream: S,
    tx: mpsc::UnboundedSender<Seen>,
    refuse: Option<u16>,
) -> Option<WebSocketStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // The callback's type is tungstenite's, large error and all.
    #[allow(clippy::result_large_err)]
    let callback = move |req: &http::Request<()>, mut resp: http::Response<()>| {
        let _ = tx.send(Seen {
            path: req.uri().to_string(),
            headers: req.headers().clone(),
        });
        if let Some(code) = refuse {
            let mut r = http::Response::new(Some("go away".to_string()));
            *r.status_mut() = StatusCode::from_u16(code).unwrap();
            return Err(r);
        }
        if let Some(offered) = req.headers().get("sec-websocket-protocol") {
            let first = offered.to_str().unwrap().split(',').next().unwrap().trim();
            resp.headers_mut().insert(
                "sec-websocket-protocol",
                HeaderValue::from_str(first).unwrap(),
            );
        }
        Ok(resp)
    };
    tokio_tungstenite::accept_hdr_async(stream, callback)
        .await
        .ok()
}

/// A websocket server on 127.0.0.1:0 handing each upgraded connection to `serve`; every
/// upgrade request it saw comes out of the returned channel.
async fn ws_server<F, Fut>(
    refuse: Option<u16>,
    serve: F,
) -> (SocketAddr, mpsc::UnboundedReceiver<Seen>)
where
    F: Fn(WebSocketStream<TcpStream>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = mpsc::unbounded_channel();
    let serve = Arc::new(serve);
    let addr = tcp_server(move |stream| {
        let (tx, serve) = (tx.clone(), serve.clone());
        async move {
            if let Some(ws) = upgrade(stream, tx, refuse).await {
                serve(ws).await;
            }
        }
    })
    .await;
    (addr, rx)
}

/// How the Phoenix test server answers a `phx_join`.
#[derive(Clone, Copy)]
enum Px {
    Ok,
    Refuse(&'static str),
    /// Refuses, quoting the join's `token` parameter in the reason.
    RefuseEcho,
    /// Never replies (keeps reading).
    Silent,
    /// Drops the connection without a close frame.
    Drop,
    /// Thinks this long before replying ok (the behaviour under test, not a sync).
    Slow(Duration),
    /// Sends a text frame of this many bytes before replying ok.
    Giant(usize),
    /// Refuses every nth join this server sees (counting from 1), accepts the others.
    RefuseEvery(usize),
}

/// Serves Phoenix Channels (v2 arrays or v1 objects, answered in kind) with compact JSON,
/// as Phoenix does. Before each reply it pushes two frames the probe must skip: a reply
/// on another topic and a presence push on the joined one.
async fn serve_phoenix<S>(mut ws: WebSocketStream<S>, mode: Px, joins: Arc<AtomicUsize>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    while let Some(Ok(msg)) = ws.next().await {
        let Message::Text(text) = msg else { continue };
        let Ok(doc) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        let (v2, topic, event, payload) = match &doc {
            Value::Array(a) if a.len() == 5 => (true, a[2].clone(), a[3].clone(), a[4].clone()),
            Value::Object(o) => (
                false,
                o["topic"].clone(),
                o["event"].clone(),
                o["payload"].clone(),
            ),
            _ => continue,
        };
        if event != "phx_join" {
            continue;
        }
        let n = joins.fetch_add(1, Ordering::SeqCst) + 1;
        let frame = |reference: Value, topic: Value, event: &str, payload: Value| {
            let v = if v2 {
                json!(["1", reference, topic, event, payload])
            } else {
                json!({"topic": topic, "event": event, "payload": payload, "ref": reference, "join_ref": "1"})
            };
            Message::text(v.to_string())
        };
        let noise = [
            frame(
                json!("1"),
                json!("other:topic"),
                "phx_reply",
                json!({"status": "error", "response": {}}),
            ),
            frame(Value::Null, topic.clone(), "presence_state", json!({})),
        ];
        for m in noise {
            let _ = ws.send(m).await;
        }
        let ok = json!({"status": "ok", "response": {}});
        let refused = |reason: &str| json!({"status": "error", "response": {"reason": reason}});
        let reply = match mode {
            Px::Ok => ok,
            Px::Refuse(why) => refused(why),
            Px::RefuseEcho => refused(&format!(
                "bad token {}",
                payload["token"].as_str().unwrap_or_default()
            )),
            Px::Silent => continue,
            Px::Drop => return,
            Px::Slow(d) => {
                tokio::time::sleep(d).await;
                ok
            }
            Px::Giant(size) => {
                let _ = ws.send(Message::text("x".repeat(size))).await;
                ok
            }
            Px::RefuseEvery(k) if n % k == 0 => refused("too many joins"),
            Px::RefuseEvery(_) => ok,
        };
        let _ = ws.send(frame(json!("1"), topic, "phx_reply", reply)).await;
    }
}

async fn phoenix_server(mode: Px) -> (SocketAddr, mpsc::UnboundedReceiver<Seen>) {
    let joins = Arc::new(AtomicUsize::new(0));
    ws_server(None, move |ws| serve_phoenix(ws, mode, joins.clone())).await
}

/// A chatty plain server: `{"type":"welcome"}` on connect; for every text frame it gets,
/// `{"type":"noise"}` then `{"type":"echo","got":<frame>,"n":1}`.
async fn echo_server() -> SocketAddr {
    let (addr, _seen) = ws_server(None, |mut ws| async move {
        let _ = ws.send(Message::text(r#"{"type":"welcome"}"#)).await;
        while let Some(Ok(msg)) = ws.next().await {
            if let Message::Text(t) = msg {
                let _ = ws.send(Message::text(r#"{"type":"noise"}"#)).await;
                let echo = json!({"type": "echo", "got": t.as_str(), "n": 1});
                let _ = ws.send(Message::text(echo.to_string())).await;
            }
        }
    })
    .await;
    addr
}

// ---- pure parts ----------------------------------------------------------------------

#[test]
fn validate_reports_every_problem() {
    let cases: &[(&str, &[(&str, &str)])] = &[
        ("url: ws://h/", &[]),
        (
            "url: 'wss://u:p@h:8443/socket/websocket?vsn=2.0.0'\nheaders: { Origin: 'https://h', Authorization: 'Bearer x' }\nsubprotocols: [v1.chat, 'x-y']\nsend: ['a', 'b']\nexpect: { contains: ok, regex: '^o', json: { /a: 1, '': {a: 1} }, within: 2s }\nphoenix: { topic: 'room:lobby', payload: { token: t } }\ntls: { insecure_skip_verify: true, server_name: h.internal }\nburst: 200\nmax_frame: 64MiB",
            &[],
        ),
        ("url: ws://h/\nsocketio: {}", &[]),
        (
            "url: 'ws://h/socket.io/?EIO=4&transport=websocket'\nsocketio: { namespace: /chat }",
            &[],
        ),
        (
            "url: http://h/",
            &[("url", "unsupported url scheme \"http\" (use ws or wss)")],
        ),
        ("url: 'h:80'", &[("url", "url has no scheme")]),
        ("url: 'ws://h:99999/'", &[("url", "invalid port \"99999\"")]),
        ("url: 'ws://h:0/'", &[("url", "invalid port \"0\"")]),
        (
            "url: ws://h/\nheaders: { Connection: close, Sec-WebSocket-Protocol: x, Sec-WebSocket-Extensions: permessage-deflate, 'bad name': x, X-Ok: \"a\\nb\" }",
            &[
                ("headers.Connection", "cannot be set: set by the probe"),
                ("headers.Sec-WebSocket-Extensions", "not supported"),
                ("headers.Sec-WebSocket-Protocol", "set it with subprotocols"),
                ("headers.X-Ok", "invalid header value"),
                ("headers.bad name", "invalid header name"),
            ],
        ),
        (
            "url: ws://h/\nsubprotocols: [ok, 'a b', '']",
            &[
                ("subprotocols[1]", "invalid subprotocol"),
                ("subprotocols[2]", "invalid subprotocol"),
            ],
        ),
        (
            "url: ws://h/\nexpect: { regex: '(', json: { a: 1 }, within: 0s }",
            &[
                ("expect.regex", "invalid regular expression"),
                ("expect.json.a", "must be empty or start with /"),
                ("expect.within", "must be more than 0s"),
            ],
        ),
        (
            "url: ws://h/\nphoenix: { topic: t }\nsocketio: {}",
            &[("socketio", "set one of them")],
        ),
        (
            "url: ws://h/\nphoenix: { topic: ' ', payload: [1], vsn: 3.0.0 }",
            &[
                ("phoenix.topic", "must not be empty"),
                ("phoenix.payload", "must be a json object"),
                ("phoenix.vsn", "unsupported version \"3.0.0\""),
            ],
        ),
        (
            "url: 'ws://h/socket/websocket?vsn=1.0.0'\nphoenix: { topic: t }",
            &[("url", "the url asks for vsn=1.0.0 but phoenix.vsn is 2.0.0")],
        ),
        (
            "url: ws://h/\nsocketio: { namespace: chat }",
            &[("socketio.namespace", "must start with /")],
        ),
        (
            "url: ws://h/\nsocketio: { namespace: '/a,b' }",
            &[("socketio.namespace", "must not contain")],
        ),
        (
            "url: 'ws://h/?EIO=3'\nsocketio: {}",
            &[("url", "socketio speaks Engine.IO 4, the url asks for EIO=3")],
        ),
        (
            "url: 'ws://h/?transport=polling'\nsocketio: {}",
            &[("url", "the url asks for transport=polling")],
        ),
        ("url: ws://h/\nburst: 0", &[("burst", "must be at least 1")]),
        (
            "url: ws://h/\nphoenix: { topic: t }\njoin_under: 250ms",
            &[],
        ),
        ("url: ws://h/\nsend: hi\njoin_under: 1s", &[]),
        (
            "url: ws://h/\nphoenix: { topic: t }\njoin_under: 0s",
            &[("join_under", "must be more than 0s")],
        ),
        (
            "url: ws://h/\njoin_under: 1s",
            &[("join_under", "there is no join to time")],
        ),
        (
            "url: ws://h/\nburst: 201",
            &[("burst", "201 joins is too many (at most 200)")],
        ),
        (
            "url: ws://h/\nmax_frame: 0",
            &[("max_frame", "must be more than 0 bytes")],
        ),
        (
            "url: ws://h/\nmax_frame: 1GiB",
            &[("max_frame", "1 GiB is too large (at most 64 MiB)")],
        ),
        (
            "url: ws://h/\ntls: { server_name: 'bad name!' }",
            &[("tls.server_name", "invalid server name")],
        ),
    ];
    for (yaml, want) in cases {
        let got = spec(yaml).validate();
        let got_paths: Vec<_> = got.iter().map(|e| e.path.as_str()).collect();
        let want_paths: Vec<_> = want.iter().map(|(p, _)| *p).collect();
        assert_eq!(got_paths, want_paths, "{yaml}: {got:?}");
        for (e, (_, msg)) in got.iter().zip(want.iter()) {
            assert!(
                e.message.contains(msg),
                "{yaml}: {:?} lacks {msg:?}",
                e.message
            );
        }
        assert_eq!(spec(yaml).build().is_ok(), want.is_empty(), "{yaml}");
    }
    // Secrets in a bad url never come back in the message.
    let errs = spec("url: 'http://user:hunter2-secret@h/'").validate();
    assert!(!errs[0].message.contains("hunter2"), "{errs:?}");

    // Unknown fields are refused; `send` takes one string or a list.
    assert!(serde_yaml::from_str::<Spec>("url: ws://h/\nexpect: { status: 101 }").is_err());
    assert!(serde_yaml::from_str::<Spec>("url: ws://h/\nbogus: 1").is_err());
    assert_eq!(spec("url: ws://h/\nsend: one").send, ["one"]);
    assert_eq!(spec("url: ws://h/\nsend: [a, b]").send, ["a", "b"]);
    assert!(spec("url: ws://h/").send.is_empty());
}

#[test]
fn presets_shape_the_url_and_the_host_is_the_target() {
    let cases = [
        (
            "url: 'ws://h/socket/websocket'\nphoenix: { topic: t }",
            "ws://h/socket/websocket?vsn=2.0.0",
        ),
        (
            "url: 'ws://h/socket/websocket?token=abc'\nphoenix: { topic: t, vsn: 1.0.0 }",
            "ws://h/socket/websocket?token=abc&vsn=1.0.0",
        ),
        (
            "url: 'wss://h/socket/websocket?vsn=2.0.0'\nphoenix: { topic: t }",
            "wss://h/socket/websocket?vsn=2.0.0",
        ),
        (
            "url: 'ws://h:81'\nsocketio: {}",
            "ws://h:81/socket.io/?EIO=4&transport=websocket",
        ),
        (
            "url: 'ws://h/?token=x'\nsocketio: {}",
            "ws://h/socket.io/?token=x&EIO=4&transport=websocket",
        ),
        (
            "url: 'ws://h/rt/?EIO=4'\nsocketio: {}",
            "ws://h/rt/?EIO=4&transport=websocket",
        ),
        ("url: 'wss://u:p@h:443/x?y=1'", "wss://h/x?y=1"),
    ];
    for (yaml, want) in cases {
        let check = spec(yaml).build().unwrap();
        assert_eq!(check.uri.to_string(), want, "{yaml}");
    }
    assert_eq!(
        spec("url: 'ws://User:pw@[::1]:9/'")
            .target_host()
            .as_deref(),
        Some("::1")
    );
    assert_eq!(
        spec("url: 'wss://RT.Example.com/'")
            .target_host()
            .as_deref(),
        Some("rt.example.com")
    );
    let mut s = spec("url: wss://h/\ntls: { ca_file: ca.pem }");
    s.resolve_paths(std::path::Path::new("/etc/probed"));
    assert_eq!(
        s.tls.ca_file.unwrap(),
        std::path::Path::new("/etc/probed/ca.pem")
    );
}

#[test]
fn matcher_and_percentiles() {
    let check = spec(
        "url: ws://h/\nexpect: { contains: '\"ok\"', regex: '^\\[', json: { /0: ok, /1/n: 2 } }",
    )
    .build()
    .unwrap();
    let m = check.expect.as_ref().unwrap();
    assert_eq!(m.test(r#"["ok",{"n":2.0}]"#), Ok(()));
    let misses = [
        (r#"["no"]"#, "does not contain \"\\\"ok\\\"\""),
        (r#" "ok""#, "does not match /^\\[/"),
        (r#"["ok""#, "is not json"),
        (r#"["ok",{}]"#, "has no json \"/1/n\""),
        (r#"["ok",{"n":3}]"#, "has json \"/1/n\" = 3, expected 2"),
    ];
    for (text, want) in misses {
        assert_eq!(m.test(text).unwrap_err(), want, "{text}");
    }
    let ms = |v: &[u64]| {
        v.iter()
            .map(|&m| Duration::from_millis(m))
            .collect::<Vec<_>>()
    };
    let t = ms(&(1..=20).collect::<Vec<_>>());
    assert_eq!(percentile(&t, 50), Duration::from_millis(10));
    assert_eq!(percentile(&t, 95), Duration::from_millis(19));
    assert_eq!(percentile(&ms(&[7]), 95), Duration::from_millis(7));
}

// ---- against local servers -----------------------------------------------------------

#[tokio::test]
async fn plain_upgrade_records_phases_and_sends_headers() {
    let (addr, mut seen) = ws_server(None, |mut ws| async move {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    let obs = run(&spec(&format!(
        "url: 'ws://probe:pass%40word@{addr}/live?x=1'\nheaders: {{ X-Token: tok-123, Origin: 'https://app.example' }}\nsubprotocols: [chat.v2, chat.v1]"
    )))
    .await;
    assert_up(&obs);
    assert_eq!(names(&obs), ["resolve", "connect", "upgrade"]);
    assert_eq!(obs.status_code, Some(101));
    assert_eq!(obs.ip, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    assert_eq!(obs.cert_expiry, None);
    assert!(phase(&obs, "upgrade") > Duration::ZERO);
    let seen = seen.recv().await.unwrap();
    assert_eq!(seen.path, "/live?x=1");
    let h = |n: &str| seen.headers.get(n).map(|v| v.to_str().unwrap().to_string());
    assert_eq!(h("x-token").as_deref(), Some("tok-123"));
    assert_eq!(h("origin").as_deref(), Some("https://app.example"));
    assert_eq!(
        h("authorization"),
        Some(format!("Basic {}", base64(b"probe:pass@word")))
    );
    assert_eq!(
        h("sec-websocket-protocol").as_deref(),
        Some("chat.v2, chat.v1")
    );
    assert_eq!(h("host"), Some(addr.to_string()));
    assert!(h("user-agent").unwrap().starts_with("probed/"));
}

/// The upgrade says where the daemon stands, as HTTP probes do.
#[tokio::test]
async fn the_user_agent_names_the_instance_and_location() {
    let (addr, mut seen) = ws_server(None, |mut ws| async move {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    let env = crate::probe::testkit::env().with_origin("probed-us-1", "us-east");
    let s: Spec = spec(&format!("url: 'ws://{addr}/'"));
    assert_up(&crate::probe::testkit::run_in(&s, &env, Duration::from_secs(5)).await);
    assert_eq!(
        seen.recv().await.unwrap().headers["user-agent"],
        format!(
            "probed/{} (probed-us-1; us-east)",
            env!("CARGO_PKG_VERSION")
        )
    );
}

/// A tiny DNS server on UDP 127.0.0.1:0: `rt.test` has an A record (127.0.0.1) and no
/// AAAA; every other name is NXDOMAIN.
async fn dns_server() -> SocketAddr {
    Zone::new()
        .a("rt.test", &[Ipv4Addr::LOCALHOST])
        .serve()
        .await
}

#[tokio::test]
async fn names_resolve_with_the_env_resolver() {
    let env = Env::new(&[dns_server().await]).unwrap();
    let (addr, mut seen) = phoenix_server(Px::Ok).await;
    let port = addr.port();
    let obs = run_in(
        &spec(&format!(
            "url: 'ws://rt.test:{port}/s/websocket'\nphoenix: {{ topic: t }}"
        )),
        &env,
        Duration::from_secs(5),
    )
    .await;
    assert_up(&obs);
    assert_eq!(names(&obs), ["resolve", "connect", "upgrade", "join"]);
    assert!(phase(&obs, "resolve") > Duration::ZERO);
    assert_eq!(obs.ip, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    assert_eq!(
        seen.recv().await.unwrap().headers.get("host").unwrap(),
        &format!("rt.test:{port}")
    );
    let obs = run_in(
        &spec("url: 'ws://nosuch.test/'"),
        &env,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(reason(&obs), "dns: no record for nosuch.test (NXDOMAIN)");
    assert_eq!(names(&obs), ["resolve"]);
    assert_eq!(obs.ip, None);
}

#[tokio::test]
async fn refused_upgrade_reports_the_status() {
    for (code, want) in [
        (403, "upgrade refused: 403 forbidden"),
        (503, "upgrade refused: 503 service unavailable"),
        (426, "upgrade refused: 426 upgrade required"),
        (599, "upgrade refused: 599"),
    ] {
        let (addr, _seen) = ws_server(Some(code), |_ws| async {}).await;
        let obs = run(&spec(&format!("url: 'ws://{addr}/'"))).await;
        assert_eq!(reason(&obs), want);
        assert_eq!(obs.status_code, Some(code));
        assert_eq!(names(&obs), ["resolve", "connect", "upgrade"]);
    }
    // Not a websocket server at all: a plain HTTP 200.
    let addr = tcp_server(|mut s| async move {
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).await;
        let _ = tokio::io::AsyncWriteExt::write_all(
            &mut s,
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nhi",
        )
        .await;
    })
    .await;
    let obs = run(&spec(&format!("url: 'ws://{addr}/'"))).await;
    assert_eq!(reason(&obs), "upgrade refused: 200 ok");
    assert_eq!(obs.status_code, Some(200));
    // A server that closes instead of answering.
    let addr = tcp_server(|mut s| async move {
        let mut buf = [0u8; 4096];
        let _ = s.read(&mut buf).await;
    })
    .await;
    let obs = run(&spec(&format!("url: 'ws://{addr}/'"))).await;
    assert_down(&obs, "upgrade failed: connection closed by the server");
    assert_eq!(obs.status_code, None);
    // Nothing listening.
    let closed = refused_addr().await;
    let obs = run(&spec(&format!("url: 'ws://{closed}/'"))).await;
    assert_eq!(
        reason(&obs),
        format!("connect to {closed}: connection refused")
    );
    assert_eq!(names(&obs), ["resolve", "connect"]);
}

#[tokio::test]
async fn phoenix_join_ok_in_both_serializers() {
    for (vsn, want_query) in [
        ("2.0.0", "token=abc&vsn=2.0.0"),
        ("1.0.0", "token=abc&vsn=1.0.0"),
    ] {
        let (addr, mut seen) = phoenix_server(Px::Ok).await;
        let obs = run(&spec(&format!(
            "url: 'ws://{addr}/socket/websocket?token=abc'\nphoenix: {{ topic: 'room:lobby', vsn: '{vsn}' }}"
        )))
        .await;
        assert_up(&obs);
        assert_eq!(
            names(&obs),
            ["resolve", "connect", "upgrade", "join"],
            "{vsn}"
        );
        assert_eq!(obs.status_code, Some(101));
        assert!(obs.size.unwrap() > 0);
        assert_eq!(
            seen.recv().await.unwrap().path,
            format!("/socket/websocket?{want_query}")
        );
    }
}

#[tokio::test]
async fn phoenix_join_refused_names_the_reason() {
    let (addr, _seen) = phoenix_server(Px::Refuse("unauthorized")).await;
    let obs = run(&spec(&format!(
        "url: 'ws://{addr}/socket/websocket'\nphoenix: {{ topic: 'room:secret', payload: {{ user: 7 }} }}"
    )))
    .await;
    assert_eq!(reason(&obs), "phoenix join refused: unauthorized");
    assert_eq!(names(&obs), ["resolve", "connect", "upgrade", "join"]);
    assert_eq!(obs.status_code, Some(101));
}

#[tokio::test]
async fn silent_upgrade_fails_at_the_deadline() {
    let addr = tcp_server(hold).await;
    let within = Duration::from_millis(400);
    let t = Instant::now();
    let obs = run_in(&spec(&format!("url: 'ws://{addr}/'")), &env(), within).await;
    assert_by_deadline(t.elapsed(), within);
    assert_down(&obs, "while waiting for the websocket upgrade");
    assert!(
        reason(&obs).starts_with("timed out after 4"),
        "{}",
        reason(&obs)
    );
    assert_eq!(names(&obs), ["resolve", "connect", "upgrade"]);
    assert_eq!(obs.status_code, None);
}

#[tokio::test]
async fn silent_join_fails_at_the_deadline_in_the_join_phase() {
    let (addr, _seen) = phoenix_server(Px::Silent).await;
    let within = Duration::from_millis(400);
    let t = Instant::now();
    let obs = run_in(
        &spec(&format!(
            "url: 'ws://{addr}/s/websocket'\nphoenix: {{ topic: t }}"
        )),
        &env(),
        within,
    )
    .await;
    assert_by_deadline(t.elapsed(), within);
    assert_down(&obs, "while waiting for the phoenix join reply");
    assert!(
        reason(&obs).starts_with("timed out after 4"),
        "{}",
        reason(&obs)
    );
    assert_eq!(names(&obs), ["resolve", "connect", "upgrade", "join"]);
    assert!(phase(&obs, "join") >= Duration::from_millis(300));
}

#[tokio::test]
async fn dropped_connection_mid_join_is_down() {
    let (addr, _seen) = phoenix_server(Px::Drop).await;
    let obs = run(&spec(&format!(
        "url: 'ws://{addr}/s/websocket'\nphoenix: {{ topic: t }}"
    )))
    .await;
    assert_eq!(
        reason(&obs),
        "connection closed by the server without a close frame while waiting for the phoenix join reply"
    );
    // A close frame instead: named with its code and reason.
    let (addr, _seen) = ws_server(None, |mut ws| async move {
        let _ = ws.next().await;
        let _ = ws
            .close(Some(CloseFrame {
                code: tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Policy,
                reason: "no joins today".into(),
            }))
            .await;
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    let obs = run(&spec(&format!(
        "url: 'ws://{addr}/s/websocket'\nphoenix: {{ topic: t }}"
    )))
    .await;
    assert_eq!(
        reason(&obs),
        "the server closed the websocket (code 1008: no joins today) while waiting for the phoenix join reply"
    );
}

#[tokio::test]
async fn slow_join_is_measured_and_up() {
    let think = Duration::from_millis(300);
    let (addr, _seen) = phoenix_server(Px::Slow(think)).await;
    let obs = run(&spec(&format!(
        "url: 'ws://{addr}/s/websocket'\nphoenix: {{ topic: t }}"
    )))
    .await;
    assert_up(&obs);
    assert!(phase(&obs, "join") >= think, "{:?}", obs.phases);
    assert!(obs.duration >= think);
}

#[tokio::test]
async fn join_under_bounds_the_join() {
    let think = Duration::from_millis(300);
    let (slow, _s1) = phoenix_server(Px::Slow(think)).await;
    let (fast, _s2) = phoenix_server(Px::Ok).await;
    let yaml = |addr: SocketAddr, bound: &str| {
        format!("url: 'ws://{addr}/s/websocket'\nphoenix: {{ topic: t }}\njoin_under: {bound}")
    };
    assert_up(&run(&spec(&yaml(fast, "2s"))).await);
    assert_up(&run(&spec(&yaml(slow, "2s"))).await);

    // A slow join is cut at the bound, long before the deadline, and named.
    let t = Instant::now();
    let obs = run(&spec(&yaml(slow, "100ms"))).await;
    assert_eq!(reason(&obs), "join took longer than 100ms (join_under)");
    let join = phase(&obs, "join");
    assert!(
        join >= Duration::from_millis(100) && join < think,
        "{join:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());

    // A bound past the deadline: the deadline cuts first, with its own reason.
    let obs = run_in(&spec(&yaml(slow, "5s")), &env(), Duration::from_millis(150)).await;
    assert!(reason(&obs).starts_with("timed out"), "{}", reason(&obs));

    // A join that finished, but not under the bound.
    assert_eq!(
        join_in_time(Duration::from_micros(262_400), Duration::from_millis(250)),
        Err("join took 262ms, expected under 250ms (join_under)".into())
    );
    assert_eq!(
        join_in_time(Duration::from_millis(249), Duration::from_millis(250)),
        Ok(())
    );

    // Each join of a burst is held to it too (a burst slower than the bound: the lab's
    // tests, where joins slow down as they pile up).
    let obs = run(&spec(&format!("{}\nburst: 3", yaml(slow, "2s")))).await;
    assert_up(&obs);
}

#[tokio::test]
async fn expectations_pass_and_fail() {
    let addr = echo_server().await;
    let url = format!("url: 'ws://{addr}/'");
    let cases: &[(&str, Option<&str>)] = &[
        // The greeting alone, no send.
        ("expect: { contains: welcome }", None),
        ("expect: {}", None),
        // Frames that do not match are skipped.
        ("send: hello\nexpect: { contains: '\"echo\"' }", None),
        ("send: [a, b]\nexpect: { regex: '\"got\":\"b\"' }", None),
        (
            "send: hello\nexpect: { json: { /type: echo, /got: hello, /n: 1.0 } }",
            None,
        ),
        ("send: hello", None),
        (
            "send: hello\nexpect: { contains: nope, within: 300ms }",
            Some(
                "no frame matched expect within 300ms (3 frames did not match, the last one does not contain \"nope\")",
            ),
        ),
        (
            "send: hello\nexpect: { regex: '^\\d+$', within: 300ms }",
            Some("(3 frames did not match, the last one does not match /^\\d+$/)"),
        ),
        (
            "send: hello\nexpect: { json: { /type: bye }, within: 300ms }",
            Some("the last one has json \"/type\" = \"echo\", expected \"bye\")"),
        ),
    ];
    for (extra, want) in cases {
        let t = Instant::now();
        let obs = run(&spec(&format!("{url}\n{extra}"))).await;
        match want {
            None => {
                assert_up(&obs);
                assert_eq!(
                    names(&obs),
                    ["resolve", "connect", "upgrade", "join"],
                    "{extra}"
                );
            }
            Some(w) => {
                assert_down(&obs, w);
                assert!(
                    t.elapsed() < Duration::from_secs(2),
                    "{extra}: within ignored"
                );
                assert_eq!(
                    names(&obs),
                    ["resolve", "connect", "upgrade", "join"],
                    "{extra}"
                );
            }
        }
    }
    // Without `within`, the deadline ends the wait, and the phase is named.
    let obs = run_in(
        &spec(&format!("{url}\nexpect: {{ contains: nope }}")),
        &env(),
        Duration::from_millis(400),
    )
    .await;
    assert_down(
        &obs,
        "while waiting for a frame matching expect (1 frame did not match, the last one does not contain \"nope\")",
    );
    // A server that sends nothing at all.
    let (addr, _seen) = ws_server(None, |mut ws| async move {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    let obs = run(&spec(&format!(
        "url: 'ws://{addr}/'\nexpect: {{ contains: x, within: 200ms }}"
    )))
    .await;
    assert_eq!(
        reason(&obs),
        "no frame matched expect within 200ms (no text frame came)"
    );
}

#[tokio::test]
async fn giant_frame_fails_by_size() {
    let (addr, _seen) = phoenix_server(Px::Giant(2 << 20)).await;
    let yaml = format!("url: 'ws://{addr}/s/websocket'\nphoenix: {{ topic: t }}");
    let obs = run(&spec(&yaml)).await;
    assert_eq!(
        reason(&obs),
        "the server sent a frame of 2 MiB, over max_frame (1 MiB) while waiting for the phoenix join reply"
    );
    let obs = run(&spec(&format!("{yaml}\nmax_frame: 4MiB"))).await;
    assert_up(&obs);
    assert!(obs.size.unwrap() > 2 << 20);
}

/// A CA and a leaf certificate for `sans`, signed by it, and a server config using them.
fn pki(sans: &[&str]) -> Pki {
    ca_signed(sans, 365 * 86_400)
}

/// A Phoenix server over TLS (tokio-rustls) on 127.0.0.1:0.
async fn wss_phoenix_server(config: Arc<rustls::ServerConfig>) -> SocketAddr {
    let (tx, _rx) = mpsc::unbounded_channel();
    let joins = Arc::new(AtomicUsize::new(0));
    tls_server(config, move |tls| {
        let (tx, joins) = (tx.clone(), joins.clone());
        async move {
            if let Some(ws) = upgrade(tls, tx, None).await {
                serve_phoenix(ws, Px::Ok, joins).await;
            }
        }
    })
    .await
}

#[tokio::test]
async fn wss_with_a_private_ca() {
    let pki = pki(&["127.0.0.1", "rt.internal"]);
    let addr = wss_phoenix_server(pki.server.clone()).await;
    let ca_file = pem_file(&pki.ca_pem);
    let ca = format!("ca_file: '{}'", ca_file.path().display());
    let base = format!("url: 'wss://{addr}/socket/websocket'\nphoenix: {{ topic: t }}");
    let cases: Vec<(String, Option<&str>)> = vec![
        (format!("tls: {{ {ca} }}"), None),
        (format!("tls: {{ {ca}, server_name: rt.internal }}"), None),
        ("tls: { insecure_skip_verify: true }".into(), None),
        (
            String::new(),
            Some("tls: invalid peer certificate: unknown issuer (not signed by a trusted root)"),
        ),
        (
            format!("tls: {{ {ca}, server_name: other.example }}"),
            Some("tls: invalid peer certificate: certificate not valid for name \"other.example\""),
        ),
    ];
    let env = env();
    for (tls, want) in &cases {
        let obs = run_in(
            &spec(&format!("{base}\n{tls}")),
            &env,
            Duration::from_secs(5),
        )
        .await;
        match want {
            None => {
                assert_up(&obs);
                assert_eq!(obs.cert_expiry, Some(pki.leaf_not_after), "{tls}");
                assert_eq!(
                    names(&obs),
                    ["resolve", "connect", "tls", "upgrade", "join"]
                );
            }
            Some(w) => {
                assert!(reason(&obs).starts_with(w), "{tls}: {:?}", reason(&obs));
                assert_eq!(obs.cert_expiry, None);
                assert_eq!(names(&obs), ["resolve", "connect", "tls"]);
            }
        }
    }
    // The TLS config is built once per env, not per check.
    let check = spec(&format!("{base}\ntls: {{ {ca} }}")).build().unwrap();
    let a = check.tls_config(&env).unwrap();
    assert!(Arc::ptr_eq(&a, &check.tls_config(&env).unwrap()));
    // A bad ca_file fails at build time.
    let e = spec(&format!("{base}\ntls: {{ ca_file: /nonexistent/ca.pem }}"))
        .build()
        .err()
        .unwrap();
    assert_eq!(
        e,
        "tls.ca_file: cannot read /nonexistent/ca.pem: no such file or directory"
    );
}

#[tokio::test]
async fn close_without_a_reply_is_not_a_failure() {
    // Upgrades, then never reads again: the probe's Close is never answered.
    let addr = tcp_server(|s| async move {
        let Ok(ws) = tokio_tungstenite::accept_async(s).await else {
            return;
        };
        let mut tcp = ws.into_inner();
        let mut buf = [0u8; 1];
        // Blocks until the probe drops its socket.
        while let Ok(n) = tcp.read(&mut buf).await {
            if n == 0 {
                break;
            }
            std::future::pending::<()>().await;
        }
    })
    .await;
    let within = Duration::from_millis(600);
    let t = Instant::now();
    let obs = run_in(&spec(&format!("url: 'ws://{addr}/'")), &env(), within).await;
    assert_by_deadline(t.elapsed(), within);
    assert_up(&obs);
    assert!(obs.duration < within);
}

#[tokio::test]
async fn burst_reports_the_join_distribution() {
    let (addr, _seen) = phoenix_server(Px::Ok).await;
    let obs = run(&spec(&format!(
        "url: 'ws://{addr}/s/websocket'\nphoenix: {{ topic: t }}\nburst: 20"
    )))
    .await;
    assert_up(&obs);
    assert_eq!(
        names(&obs),
        [
            "resolve",
            "connect",
            "upgrade",
            "join",
            "burst_p50",
            "burst_p95",
            "burst_max"
        ]
    );
    let (p50, p95, max) = (
        phase(&obs, "burst_p50"),
        phase(&obs, "burst_p95"),
        phase(&obs, "burst_max"),
    );
    assert!(
        Duration::ZERO < p50 && p50 <= p95 && p95 <= max,
        "{:?}",
        obs.phases
    );
}

#[tokio::test]
async fn burst_with_refused_joins_is_down() {
    let (addr, _seen) = phoenix_server(Px::RefuseEvery(5)).await;
    let obs = run(&spec(&format!(
        "url: 'ws://{addr}/s/websocket'\nphoenix: {{ topic: t }}\nburst: 20"
    )))
    .await;
    // The main join is the server's first; of the burst's 20 (its 2nd to 21st), the
    // 5th, 10th, 15th and 20th are refused.
    assert_eq!(
        reason(&obs),
        "burst: 4 of 20 joins failed (phoenix join refused: too many joins)"
    );
    assert!(names(&obs).contains(&"burst_p95"), "{:?}", obs.phases);
    // A main check that fails runs no burst.
    let (addr, mut seen) = phoenix_server(Px::Refuse("nope")).await;
    let obs = run(&spec(&format!(
        "url: 'ws://{addr}/s/websocket'\nphoenix: {{ topic: t }}\nburst: 20"
    )))
    .await;
    assert_eq!(reason(&obs), "phoenix join refused: nope");
    seen.recv().await.unwrap();
    assert!(seen.try_recv().is_err(), "a burst ran after a failed check");
}

// ---- Socket.IO against the real server (npm socket.io) ----------------------------------

/// Starts tests/peers/websocket_socketio_server.js; the child dies with the returned handle.
async fn socketio_server() -> (tokio::process::Child, u16) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers");
    assert!(
        std::path::Path::new(dir)
            .join("node_modules/socket.io")
            .exists(),
        "socket.io is not installed: run deploy/test.sh (npm install into tests/peers)"
    );
    let mut child = tokio::process::Command::new("node")
        .arg(format!("{dir}/websocket_socketio_server.js"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node");
    let stdout = child.stdout.take().unwrap();
    let line = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::io::BufReader::new(stdout).lines().next_line(),
    )
    .await
    .expect("socket.io server did not start")
    .unwrap()
    .expect("socket.io server printed no port");
    (child, line.trim().parse().unwrap())
}

#[tokio::test]
async fn socketio_connect_ok_and_connect_errors() {
    let (_server, port) = socketio_server().await;
    let url = format!("url: 'ws://127.0.0.1:{port}'");
    let cases: &[(&str, Option<&str>)] = &[
        ("socketio: {}", None),
        (
            "socketio: { namespace: /chat }\nexpect: { contains: '42/chat,[\"welcome\"' }",
            None,
        ),
        (
            "socketio: { namespace: /chat }\nsend: '42/chat,[\"ping\",\"hi\"]'\nexpect: { regex: '^42/chat,\\[\"pong\",\"hi\"\\]$', within: 3s }",
            None,
        ),
        (
            "socketio: { namespace: /admin }",
            Some("socket.io connect error: not authorized"),
        ),
        (
            "socketio: { namespace: /nosuch }",
            Some("socket.io connect error: Invalid namespace"),
        ),
    ];
    for (extra, want) in cases {
        let obs = run(&spec(&format!("{url}\n{extra}"))).await;
        match want {
            None => assert_up(&obs),
            Some(w) => assert_eq!(reason(&obs), *w, "{extra}"),
        }
        assert_eq!(
            names(&obs),
            ["resolve", "connect", "upgrade", "join"],
            "{extra}"
        );
        assert_eq!(obs.status_code, Some(101));
    }
    // Not a Socket.IO server: a plain websocket that sends something else first.
    let (addr, _seen) = ws_server(None, |mut ws| async move {
        let _ = ws.send(Message::text("hello")).await;
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    let obs = run(&spec(&format!("url: 'ws://{addr}'\nsocketio: {{}}"))).await;
    assert_eq!(
        reason(&obs),
        "expected the engine.io open packet (0{\"sid\":…}), got \"hello\""
    );
}

// ---- secrets -------------------------------------------------------------------------

#[tokio::test]
async fn secrets_never_appear_in_reasons() {
    let pki = pki(&["127.0.0.1"]);
    let tls = wss_phoenix_server(pki.server.clone()).await;
    let refused = refused_addr().await;
    let silent = tcp_server(hold).await;
    let (forbidden, _s1) = ws_server(Some(403), |_ws| async {}).await;
    let (echo_refusal, _s2) = phoenix_server(Px::RefuseEcho).await;
    let (quiet, _s3) = phoenix_server(Px::Silent).await;
    let secrets = [
        "hunter2-secret",
        "tok-s3cret-value",
        "key-s3cret-value",
        "probe:",
        &base64(b"probe:hunter2-secret"),
    ];
    let targets = [
        format!("ws://{refused}/s"),
        format!("wss://{tls}/s"),
        format!("ws://{silent}/s"),
        format!("ws://{forbidden}/s"),
        format!("ws://{echo_refusal}/s"),
        format!("ws://{quiet}/s"),
        format!("wss://{forbidden}/s"),
    ];
    for target in targets {
        let url = target.replacen("://", "://probe:hunter2-secret@", 1);
        let s = spec(&format!(
            r#"
url: "{url}?token=tok-s3cret-value"
headers: {{ Authorization: "Bearer tok-s3cret-value", X-Api-Key: key-s3cret-value }}
phoenix: {{ topic: "room:1", payload: {{ token: tok-s3cret-value }} }}
"#
        ));
        let obs = run_in(&s, &env(), Duration::from_millis(400)).await;
        let r = reason(&obs);
        assert!(!obs.ok && !r.is_empty(), "{target}");
        for secret in secrets {
            assert!(!r.contains(secret), "{target}: {r:?} leaks {secret:?}");
        }
    }
    // The one echoed by the server is blanked by the scrubber.
    let s = spec(&format!(
        "url: 'ws://{echo_refusal}/s'\nphoenix: {{ topic: t, payload: {{ token: tok-s3cret-value }} }}"
    ));
    assert_eq!(
        reason(&run(&s).await),
        "phoenix join refused: bad token ***"
    );
}

#[test]
fn check_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let check = spec("url: 'ws://127.0.0.1/'\nphoenix: { topic: t }\nburst: 2")
        .build()
        .unwrap();
    let env = env();
    let cx = CheckCx {
        env: &env,
        deadline: Instant::now(),
    };
    let fut = check.check(&cx);
    assert_send(&fut);
}
