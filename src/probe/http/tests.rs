//! Tests of `kind: http`: the pure parts (validation, status patterns, redaction,
//! redirects), then checks against local servers (hyper, raw TCP, TLS with a test PKI, a
//! local DNS zone).

use std::net::{Ipv4Addr, SocketAddr};

use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use super::*;
use crate::probe::net::base64;
use crate::probe::testkit::{
    self, Pki, Zone, assert_by_deadline, assert_down, assert_up, ca_signed, env, hold, pem_file,
    reason, refused_addr, run_in, tcp_server,
};

// ---- helpers -------------------------------------------------------------------------

/// A spec of this kind from YAML: [`testkit::spec`](crate::probe::testkit::spec), typed.
fn spec(yaml: &str) -> Spec {
    crate::probe::testkit::spec(yaml)
}

/// A spec of this kind from YAML, built into a check.
fn build(yaml: &str) -> Result<Check, String> {
    std::sync::Arc::new(spec(yaml)).build()
}

async fn run(spec: &Spec) -> Observation {
    run_in(spec, &env(), Duration::from_secs(5)).await
}

/// What the test server saw of one request.
#[derive(Debug)]
struct Seen {
    method: String,
    path: String,
    headers: HeaderMap,
    body: Bytes,
}

/// What the test server answers.
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    /// Server-side think time before answering (the behaviour under test, not a sync).
    delay: Duration,
}

fn reply(status: u16, body: &str) -> Reply {
    Reply {
        status,
        headers: Vec::new(),
        body: body.to_string(),
        delay: Duration::ZERO,
    }
}

impl Reply {
    fn header(mut self, name: &'static str, value: &str) -> Reply {
        self.headers.push((name, value.to_string()));
        self
    }
}

/// A hyper HTTP/1 server on 127.0.0.1:0 answering each request with `answer`; every
/// request it saw comes out of the returned channel.
async fn http_server(
    answer: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
) -> (SocketAddr, mpsc::UnboundedReceiver<Seen>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let answer = Arc::new(answer);
    let addr =
        tcp_server(move |stream| serve_http(TokioIo::new(stream), answer.clone(), tx.clone()))
            .await;
    (addr, rx)
}

async fn serve_http<I>(
    io: TokioIo<I>,
    answer: Arc<impl Fn(&Seen) -> Reply + Send + Sync + 'static>,
    tx: mpsc::UnboundedSender<Seen>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let (answer, tx) = (answer.clone(), tx.clone());
        async move {
            let (parts, body) = req.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let seen = Seen {
                method: parts.method.to_string(),
                path: parts.uri.to_string(),
                headers: parts.headers,
                body,
            };
            let r = answer(&seen);
            let _ = tx.send(seen);
            tokio::time::sleep(r.delay).await;
            let mut resp = http::Response::new(Full::new(Bytes::from(r.body)));
            *resp.status_mut() = StatusCode::from_u16(r.status).unwrap();
            for (k, v) in r.headers {
                resp.headers_mut()
                    .append(k, HeaderValue::from_str(&v).unwrap());
            }
            Ok::<_, std::convert::Infallible>(resp)
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, svc)
        .await;
}

/// Reads until the end of the request head (the probe's requests here have no body).
async fn read_head(s: &mut TcpStream) {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut byte).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&byte[..n]),
        }
    }
}

// ---- pure parts ----------------------------------------------------------------------

#[test]
fn status_patterns_parse_match_and_display() {
    let ok = [
        ("200", 200, 200, "200"),
        (" 204 ", 204, 204, "204"),
        ("2xx", 200, 299, "2xx"),
        ("5XX", 500, 599, "5xx"),
        ("200-204", 200, 204, "200-204"),
        ("300-399", 300, 399, "3xx"),
    ];
    for (s, lo, hi, shown) in ok {
        let p = StatusPattern::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!((p.lo, p.hi), (lo, hi), "{s}");
        assert_eq!(p.to_string(), shown, "{s}");
        assert!(p.matches(lo) && p.matches(hi) && !p.matches(hi + 1), "{s}");
    }
    let bad = [
        ("abc", "invalid status"),
        ("6xx", "invalid status"),
        ("0xx", "invalid status"),
        ("99", "outside 100-599"),
        ("600", "outside 100-599"),
        ("299-200", "is empty"),
        ("", "invalid status"),
    ];
    for (s, msg) in bad {
        let e = StatusPattern::parse(s).unwrap_err();
        assert!(e.contains(msg), "{s}: {e}");
    }
    let e: Expect = serde_yaml::from_str("status: [200, \"3xx\", \"401-403\"]").unwrap();
    assert_eq!(
        e.status,
        vec![
            StatusPattern { lo: 200, hi: 200 },
            StatusPattern { lo: 300, hi: 399 },
            StatusPattern { lo: 401, hi: 403 }
        ]
    );
}

#[test]
fn validate_reports_every_problem_with_its_path() {
    let good = spec(
        r#"
request:
  url: "https://user:pw@api.example.com:8443/v1?x=1"
  method: POST
  headers: { content-type: application/json, authorization: "Bearer s3cret-token" }
  body: '{"ping":1}'
expect:
  status: [200, "2xx"]
  body_regex: '"ok":\s*true'
  json: { "/status": ok, "": {} }
  headers: { etag: ".*" }
max_redirects: 30
tls: { server_name: api.internal }
"#,
    );
    assert_eq!(good.validate(), vec![]);
    assert_eq!(good.target_host().as_deref(), Some("api.example.com"));

    let cases: &[(&str, &[(&str, &str)])] = &[
        (
            "request: { url: 'ftp://h/x' }",
            &[("request.url", "unsupported url scheme \"ftp\"")],
        ),
        (
            "request: { url: '/just/a/path' }",
            &[("request.url", "no scheme")],
        ),
        (
            "request: { url: 'http://' }",
            &[("request.url", "invalid url")],
        ),
        (
            "request: { url: 'http://a b/' }",
            &[("request.url", "invalid url")],
        ),
        (
            "request: { url: 'http://h:99999/' }",
            &[("request.url", "invalid port \"99999\"")],
        ),
        (
            "request: { url: 'http://h:abc/' }",
            &[("request.url", "invalid port")],
        ),
        (
            "request: { url: 'http://h:0/' }",
            &[("request.url", "invalid port")],
        ),
        (
            "request: { url: 'http://[::1]:x/' }",
            &[("request.url", "invalid port")],
        ),
        (
            "request: { url: 'http://h/', method: 'GE T' }",
            &[("request.method", "invalid method")],
        ),
        (
            "request: { url: 'http://h/', headers: { 'X Bad': v, X-Ok: \"line\\nbreak-s3cret\" } }",
            &[
                ("request.headers.X Bad", "invalid header name"),
                ("request.headers.X-Ok", "invalid header value"),
            ],
        ),
        (
            "request: { url: 'http://h/' }\nexpect: { body_regex: '(unclosed' }",
            &[("expect.body_regex", "invalid regular expression")],
        ),
        (
            "request: { url: 'http://h/' }\nexpect: { json: { status: ok, /fine: 1 } }",
            &[("expect.json.status", "must be empty or start with /")],
        ),
        (
            "request: { url: 'http://h/' }\nexpect: { headers: { etag: '[z-a]', 'bad name': x } }",
            &[
                ("expect.headers.bad name", "invalid header name"),
                ("expect.headers.etag", "invalid regular expression"),
            ],
        ),
        (
            "request: { url: 'http://h/' }\nmax_redirects: 31",
            &[("max_redirects", "at most 30")],
        ),
        (
            "request: { url: 'http://h/' }\ntls: { server_name: 'not a name' }",
            &[("tls.server_name", "invalid server name")],
        ),
        (
            "request: { url: 'http://127.0.0.1/' }\nip: ipv6",
            &[("ip", "is an ipv4 address")],
        ),
        (
            "request: { url: 'http://h/' }\nexpect: { max_body: 0 }",
            &[("expect.max_body", "more than 0")],
        ),
        (
            "request: { url: 'http://h/' }\nexpect: { max_body: 2GiB }",
            &[("expect.max_body", "2 GiB is too large (at most 1 GiB)")],
        ),
        // Everything at once: all reported, not just the first.
        (
            "request: { url: 'gopher://u:hunter22@h/', method: '' }\nmax_redirects: 99\nexpect: { body_regex: '(' }",
            &[
                ("request.url", "unsupported url scheme"),
                ("request.method", "invalid method"),
                ("expect.body_regex", "invalid regular expression"),
                ("max_redirects", "too many"),
            ],
        ),
    ];
    for (yaml, want) in cases {
        let errs = spec(yaml).validate();
        assert_eq!(errs.len(), want.len(), "{yaml}: {errs:?}");
        for ((path, msg), e) in want.iter().zip(&errs) {
            assert_eq!(e.path, *path, "{yaml}: {errs:?}");
            assert!(e.message.contains(msg), "{yaml}: {:?}", e.message);
            assert!(!e.message.ends_with('.'), "{:?}", e.message);
            assert!(
                !e.message.starts_with(char::is_uppercase),
                "{:?}",
                e.message
            );
            for secret in ["hunter22", "s3cret"] {
                assert!(!e.message.contains(secret), "{:?} leaks", e.message);
            }
        }
        // build() refuses what validate() reports.
        assert!(build(yaml).is_err(), "{yaml}");
    }
}

#[test]
fn target_host_is_lower_case_without_brackets() {
    let cases = [
        ("http://API.Example.com/x", Some("api.example.com")),
        ("https://u:p@[::1]:8443/", Some("::1")),
        ("http://10.0.0.1:8080", Some("10.0.0.1")),
        ("ftp://x/", None),
    ];
    for (url, want) in cases {
        let s = spec(&format!("request: {{ url: '{url}' }}"));
        assert_eq!(s.target_host().as_deref(), want, "{url}");
    }
}

#[test]
fn redact_url_hides_userinfo_and_query_values() {
    let cases = [
        (
            "https://alice:hunter2@api.example.com/v1/x?token=abc&flag",
            "https://api.example.com/v1/x?token=***&flag",
        ),
        ("http://bob@h:8080", "http://h:8080/"),
        ("http://u:p%40ss@[::1]:80/a", "http://[::1]/a"),
        ("HTTPS://h:443/", "https://h/"),
        ("not a url", "<invalid url>"),
    ];
    for (url, want) in cases {
        let shown = redact_url(url);
        assert_eq!(shown, want, "{url}");
        for secret in ["alice", "hunter2", "bob", "p%40ss", "abc"] {
            assert!(!shown.contains(secret), "{shown} leaks {secret}");
        }
    }
    let t = parse_target("http://u%3Ax:p%40ss@h/").unwrap();
    assert_eq!(t.userinfo.as_deref(), Some("u:x:p@ss"));
}

#[test]
fn redirect_locations_resolve_against_the_current_url() {
    let base = parse_target("https://h:8443/a/b/c?q=1").unwrap();
    let cases = [
        ("/x", "https://h:8443/x"),
        ("x?y=1", "https://h:8443/a/b/x?y=***"),
        ("?z=2", "https://h:8443/a/b/c?z=***"),
        ("//other/p", "https://other/p"),
        ("http://other:81/p#frag", "http://other:81/p"),
        ("HTTPS://Other/", "https://other/"),
    ];
    for (loc, want) in cases {
        let t = resolve_location(&base, loc).unwrap_or_else(|e| panic!("{loc}: {e}"));
        assert_eq!(t.display(), want, "{loc}");
    }
    for bad in ["", "ftp://x/", "http://bad host/"] {
        assert!(resolve_location(&base, bad).is_err(), "{bad}");
    }
}

// ---- against real servers ------------------------------------------------------------

#[tokio::test]
async fn up_with_phases_ip_size_and_status() {
    let (addr, _seen) = http_server(|_| reply(200, "hello")).await;
    let obs = run(&spec(&format!("request: {{ url: 'http://{addr}/' }}"))).await;
    assert_up(&obs);
    assert_eq!(obs.status_code, Some(200));
    assert_eq!(obs.ip, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    assert_eq!(obs.size, Some(5));
    assert_eq!(obs.redirects, 0);
    assert_eq!(obs.cert_expiry, None);
    let names: Vec<_> = obs.phases.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["resolve", "connect", "processing", "transfer"]);
    // An IP literal is not resolved: the phase is the moment it took to tell.
    assert!(
        obs.phases[0].1 < Duration::from_millis(5),
        "{:?}",
        obs.phases[0]
    );
    assert_eq!(
        obs.http,
        Some(crate::probe::HttpSeen {
            version: 1.1,
            content_length: 5,
            ssl: false
        })
    );
    assert_eq!(obs.failed_due_to_regex, Some(false));
    let sum: Duration = obs.phases.iter().map(|(_, d)| *d).sum();
    assert!(obs.duration >= sum, "{:?} < {sum:?}", obs.duration);
}

#[tokio::test]
async fn status_expectations() {
    // The server answers with the status named by the path: /503 -> 503.
    let (addr, _seen) =
        http_server(|s| reply(s.path.trim_start_matches('/').parse().unwrap(), "")).await;
    let cases: &[(u16, &str, Option<&str>)] = &[
        (200, "", None),
        (204, "", None),
        (503, "", Some("status 503, expected 2xx")),
        (302, "", Some("status 302, expected 2xx")),
        (201, "expect: { status: [200, 201] }", None),
        (
            503,
            "expect: { status: [200, 201] }",
            Some("status 503, expected 200, 201"),
        ),
        (404, "expect: { status: ['400-404'] }", None),
        (
            405,
            "expect: { status: ['400-404'] }",
            Some("status 405, expected 400-404"),
        ),
        (503, "expect: { status: [5xx] }", None),
        (
            200,
            "expect: { status: [5xx, 418] }",
            Some("status 200, expected 5xx, 418"),
        ),
    ];
    for (code, expect, want) in cases {
        let obs = run(&spec(&format!(
            "request: {{ url: 'http://{addr}/{code}' }}\n{expect}"
        )))
        .await;
        assert_eq!(obs.status_code, Some(*code), "{code} {expect}");
        match want {
            None => assert_up(&obs),
            Some(w) => assert_eq!(reason(&obs), *w, "{code} {expect}"),
        }
    }
}

#[tokio::test]
async fn post_write_reaches_the_server_as_written() {
    let (addr, mut seen) = http_server(|_| reply(201, r#"{"ok":true}"#)).await;
    let port = addr.port();
    let s = spec(&format!(
        r#"
request:
  method: POST
  url: "http://probe:pa%3Ass@127.0.0.1:{port}/v1/canary?x=1"
  body: '{{"ping":1}}'
  headers: {{ content-type: application/json, X-Trace: abc123 }}
expect: {{ status: [200, 201], body_contains: '"ok":true' }}
"#
    ));
    let obs = run(&s).await;
    assert_up(&obs);
    let req = seen.recv().await.unwrap();
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/v1/canary?x=1");
    assert_eq!(&req.body[..], br#"{"ping":1}"#);
    let h = |n: &str| req.headers.get(n).map(|v| v.to_str().unwrap().to_string());
    assert_eq!(h("content-type").as_deref(), Some("application/json"));
    assert_eq!(h("x-trace").as_deref(), Some("abc123"));
    assert_eq!(h("content-length").as_deref(), Some("10"));
    assert_eq!(h("host"), Some(format!("127.0.0.1:{port}")));
    assert_eq!(h("connection").as_deref(), Some("close"));
    assert_eq!(
        h("user-agent").as_deref(),
        Some(concat!("probed/", env!("CARGO_PKG_VERSION")))
    );
    // Userinfo goes as Basic credentials, percent-decoded: "probe:pa:ss".
    assert_eq!(
        h("authorization").as_deref(),
        Some(format!("Basic {}", base64(b"probe:pa:ss")).as_str())
    );
}

/// A daemon says where it stands: `User-Agent: probed/<version> (<instance>; <location>)`,
/// so a target's owner can tell the locations apart; a probe's own User-Agent still wins.
#[tokio::test]
async fn the_user_agent_names_the_instance_and_location() {
    let (addr, mut seen) = http_server(|_| reply(200, "")).await;
    let env = crate::probe::testkit::env().with_origin("probed-eu-1", "eu-west");
    let s: Spec = spec(&format!("request: {{ url: 'http://{addr}/' }}"));
    assert_up(&crate::probe::testkit::run_in(&s, &env, Duration::from_secs(5)).await);
    let req = seen.recv().await.unwrap();
    assert_eq!(
        req.headers["user-agent"],
        format!(
            "probed/{} (probed-eu-1; eu-west)",
            env!("CARGO_PKG_VERSION")
        )
    );
    let mine: Spec = spec(&format!(
        "request: {{ url: 'http://{addr}/', headers: {{ user-agent: mine }} }}"
    ));
    assert_up(&crate::probe::testkit::run_in(&mine, &env, Duration::from_secs(5)).await);
    assert_eq!(seen.recv().await.unwrap().headers["user-agent"], "mine");
    // A character a header cannot carry does not lose the header.
    let odd = crate::probe::testkit::env().with_origin("naïve\n", "eu");
    assert_eq!(
        odd.user_agent.to_str().unwrap(),
        format!("probed/{} (na?ve?; eu)", env!("CARGO_PKG_VERSION"))
    );
}

#[tokio::test]
async fn explicit_host_and_user_agent_win() {
    let (addr, mut seen) = http_server(|_| reply(200, "")).await;
    let s = spec(&format!(
        "request: {{ url: 'http://{addr}/', method: HEAD, headers: {{ Host: vhost.example, User-Agent: mine }} }}"
    ));
    assert_up(&run(&s).await);
    let req = seen.recv().await.unwrap();
    assert_eq!(req.method, "HEAD");
    assert_eq!(req.headers.get_all("host").iter().count(), 1);
    assert_eq!(req.headers["host"], "vhost.example");
    assert_eq!(req.headers.get_all("user-agent").iter().count(), 1);
    assert_eq!(req.headers["user-agent"], "mine");
}

#[tokio::test]
async fn latency_under() {
    let (addr, _seen) = http_server(|s| Reply {
        delay: if s.path == "/slow" {
            Duration::from_millis(150)
        } else {
            Duration::ZERO
        },
        ..reply(200, "")
    })
    .await;
    let fast = run(&spec(&format!(
        "request: {{ url: 'http://{addr}/fast' }}\nexpect: {{ latency_under: 2s }}"
    )))
    .await;
    assert_up(&fast);
    let slow = run(&spec(&format!(
        "request: {{ url: 'http://{addr}/slow' }}\nexpect: {{ latency_under: 100ms }}"
    )))
    .await;
    assert_down(&slow, "expected under 100ms");
    assert!(reason(&slow).starts_with("took "), "{}", reason(&slow));
    assert!(slow.duration >= Duration::from_millis(150));
    assert_eq!(slow.status_code, Some(200));
}

#[tokio::test]
async fn body_and_header_expectations() {
    let (addr, _seen) = http_server(|s| match s.path.as_str() {
        "/json" => reply(
            200,
            r#"{"status":"ok","db":{"writable":true,"lag":0.5},"n":3}"#,
        )
        .header("etag", "\"v42\"")
        .header("x-multi", "a")
        .header("x-multi", "b"),
        _ => reply(200, "<html>build 1.2.3 all good</html>"),
    })
    .await;
    let cases: &[(&str, &str, Option<&str>)] = &[
        ("/text", "body_contains: 'all good'", None),
        (
            "/text",
            "body_contains: 'on fire'",
            Some(r#"body does not contain "on fire""#),
        ),
        ("/text", "body_not_contains: 'error'", None),
        (
            "/text",
            "body_not_contains: 'good'",
            Some(r#"body contains "good""#),
        ),
        ("/text", r#"body_regex: 'build \d+\.\d+\.\d+'"#, None),
        (
            "/text",
            r#"body_regex: 'build 9\.\d+'"#,
            Some(r"body does not match /build 9\.\d+/"),
        ),
        (
            "/json",
            "json: { /status: ok, /db/writable: true, /n: 3.0 }",
            None,
        ),
        (
            "/json",
            "json: { /status: degraded }",
            Some(r#"json "/status" is "ok", expected "degraded""#),
        ),
        (
            "/json",
            "json: { /db/lag: 0 }",
            Some(r#"json "/db/lag" is 0.5, expected 0"#),
        ),
        (
            "/json",
            "json: { /missing: 1 }",
            Some(r#"json "/missing" is missing"#),
        ),
        (
            "/text",
            "json: { /status: ok }",
            Some("body is not json: expected value at line 1 column 1"),
        ),
        ("/json", r#"headers: { ETag: '^"v\d+"$' }"#, None),
        ("/json", "headers: { x-multi: '^b$' }", None),
        (
            "/json",
            "headers: { etag: 'v9' }",
            Some("header etag does not match /v9/"),
        ),
        (
            "/json",
            "headers: { x-absent: '.*' }",
            Some("header x-absent is missing"),
        ),
        // The first failing expectation is the reason.
        (
            "/json",
            "{ status: [500], body_contains: nope }",
            Some("status 200, expected 500"),
        ),
    ];
    for (path, expect, want) in cases {
        let expect = if expect.starts_with('{') {
            format!("expect: {expect}")
        } else {
            format!("expect: {{ {expect} }}")
        };
        let obs = run(&spec(&format!(
            "request: {{ url: 'http://{addr}{path}' }}\n{expect}"
        )))
        .await;
        match want {
            None => assert_up(&obs),
            Some(w) => {
                assert!(!obs.ok, "{expect}");
                assert!(reason(&obs).starts_with(w), "{expect}: {:?}", reason(&obs));
            }
        }
        // blackbox's probe_failed_due_to_regex: a body or header regex that did not match
        // (a header missing is one that did not match, as blackbox counts it).
        let by_regex = want.is_some_and(|w| {
            w.contains("does not match /") || (w.starts_with("header ") && w.ends_with("missing"))
        });
        assert_eq!(obs.failed_due_to_regex, Some(by_regex), "{expect}");
    }
}

#[tokio::test]
async fn server_that_never_answers_is_down_at_the_deadline() {
    // Accepts, reads the request, and then says nothing until the client goes away.
    let addr = tcp_server(|mut s| async move {
        let mut buf = [0u8; 1024];
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
    let t = Instant::now();
    let within = Duration::from_millis(400);
    let obs = run_in(
        &spec(&format!("request: {{ url: 'http://{addr}/' }}")),
        &env(),
        within,
    )
    .await;
    let took = t.elapsed();
    assert_down(&obs, "timed out after ");
    assert_down(&obs, "while waiting for response headers");
    assert!(took >= within, "{took:?}");
    assert_by_deadline(took, within);
    assert!(obs.phases.iter().any(|(n, _)| *n == "processing"));
    assert_eq!(obs.status_code, None);
}

#[tokio::test]
async fn slowloris_headers_are_down_at_the_deadline() {
    // Sends a response head one byte every 50ms: never done before the deadline.
    let addr = tcp_server(|mut s| async move {
        read_head(&mut s).await;
        for b in b"HTTP/1.1 200 OK\r\nX-Slow: "
            .iter()
            .chain(std::iter::repeat(&b'z'))
        {
            if s.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let t = Instant::now();
    let within = Duration::from_millis(500);
    let obs = run_in(
        &spec(&format!("request: {{ url: 'http://{addr}/' }}")),
        &env(),
        within,
    )
    .await;
    assert_by_deadline(t.elapsed(), within);
    assert_down(&obs, "while waiting for response headers");
}

#[tokio::test]
async fn slow_body_is_down_at_the_deadline_in_transfer() {
    let addr = tcp_server(|mut s| async move {
        read_head(&mut s).await;
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nabc")
            .await;
        let mut buf = [0u8; 64];
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
    let obs = run_in(
        &spec(&format!("request: {{ url: 'http://{addr}/' }}")),
        &env(),
        Duration::from_millis(300),
    )
    .await;
    assert_down(&obs, "while reading the response body");
    assert_eq!(obs.status_code, Some(200));
    assert_eq!(obs.size, Some(3));
}

/// Streams a chunked body forever, 16 KiB a chunk, until the client goes away.
async fn endless_body(mut s: TcpStream) {
    read_head(&mut s).await;
    let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    if s.write_all(head).await.is_err() {
        return;
    }
    let mut chunk = b"4000\r\n".to_vec();
    chunk.extend(std::iter::repeat_n(b'x', 0x4000));
    chunk.extend_from_slice(b"\r\n");
    while s.write_all(&chunk).await.is_ok() {}
}

#[tokio::test]
async fn endless_body_stops_at_the_size_limit() {
    let addr = tcp_server(endless_body).await;
    let cases = [
        (
            "expect: { max_body: 256KiB }",
            256 << 10,
            "response body larger than 256 KiB limit (read 272 KiB before stopping)",
        ),
        // The body is kept for the expectation, and still no further than the cap.
        (
            "expect: { max_body: 64KiB, body_contains: never }",
            64 << 10,
            "response body larger than 64 KiB limit (read 80 KiB before stopping)",
        ),
        (
            "",
            DEFAULT_MAX_BODY,
            "response body larger than 10 MiB limit (read ",
        ),
    ];
    for (expect, cap, want) in cases {
        let obs = run(&spec(&format!(
            "request: {{ url: 'http://{addr}/' }}\n{expect}"
        )))
        .await;
        assert_down(&obs, want);
        let size = obs.size.unwrap();
        assert!(size > cap && size <= cap + 0x4000, "{expect}: read {size}");
        assert_eq!(obs.status_code, Some(200));
    }
}

#[tokio::test]
async fn garbage_responses_are_down_with_a_reason() {
    let cases: &[(&[u8], &str)] = &[
        (
            b"HTTP/1.1 99999 lol\r\n\r\n",
            "http: invalid HTTP status-code parsed",
        ),
        (
            b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03garbage\xff\xfe\r\n\r\n",
            "http: invalid HTTP version parsed",
        ),
        (
            b"SSH-2.0-OpenSSH_9.6\r\n",
            "http: invalid HTTP version parsed",
        ),
        (b"", "http: connection closed before message completed"),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
            "reading the response body: error reading a body from connection: \
             end of file before message length reached",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n",
            "http: invalid content-length parsed",
        ),
    ];
    for (bytes, want) in cases {
        let bytes = bytes.to_vec();
        let addr = tcp_server(move |mut s| {
            let bytes = bytes.clone();
            async move {
                read_head(&mut s).await;
                let _ = s.write_all(&bytes).await;
                // Dropping the stream closes the connection.
            }
        })
        .await;
        let t = Instant::now();
        let obs = run(&spec(&format!("request: {{ url: 'http://{addr}/' }}"))).await;
        assert_eq!(reason(&obs), *want);
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "{want}: {:?}",
            t.elapsed()
        );
    }
}

#[tokio::test]
async fn connection_refused_is_down() {
    let addr = refused_addr().await;
    let obs = run(&spec(&format!("request: {{ url: 'http://{addr}/' }}"))).await;
    assert_eq!(
        reason(&obs),
        format!("connect to {addr}: connection refused")
    );
    assert_eq!(obs.ip, Some(addr.ip()));
    assert!(obs.phases.iter().any(|(n, _)| *n == "connect"));
}

#[tokio::test]
async fn redirects_followed_counted_capped_or_not_followed() {
    // /hop/N redirects to /hop/N-1 (relative), /hop/0 answers 200.
    let (addr, mut seen) = http_server(|s| {
        let path = s.path.split('?').next().unwrap();
        match path
            .strip_prefix("/hop/")
            .map(|n| n.parse::<u32>().unwrap())
        {
            Some(0) => reply(200, "landed"),
            Some(n) => reply(302, "").header("location", &format!("{}", n - 1)),
            None if path == "/see-other" => reply(303, "").header("location", "/hop/0"),
            None if path == "/temporary" => reply(307, "").header("location", "/hop/0"),
            None => reply(404, ""),
        }
    })
    .await;
    let obs = run(&spec(&format!("request: {{ url: 'http://{addr}/hop/3' }}"))).await;
    assert_up(&obs);
    assert_eq!(
        (obs.redirects, obs.status_code, obs.size),
        (3, Some(200), Some(6))
    );
    let paths: Vec<_> = std::iter::from_fn(|| seen.try_recv().ok())
        .map(|s| s.path)
        .collect();
    assert_eq!(paths, ["/hop/3", "/hop/2", "/hop/1", "/hop/0"]);

    let capped = run(&spec(&format!(
        "request: {{ url: 'http://{addr}/hop/5' }}\nmax_redirects: 2"
    )))
    .await;
    assert_down(&capped, "too many redirects (max_redirects is 2)");
    assert_eq!(capped.redirects, 2);

    let not_followed = run(&spec(&format!(
        "request: {{ url: 'http://{addr}/hop/1' }}\nfollow_redirects: false"
    )))
    .await;
    assert_eq!(reason(&not_followed), "status 302, expected 2xx");
    assert_eq!(not_followed.redirects, 0);
    let expected_302 = run(&spec(&format!(
        "request: {{ url: 'http://{addr}/hop/1' }}\nfollow_redirects: false\nexpect: {{ status: [302] }}"
    )))
    .await;
    assert_up(&expected_302);

    // POST + 303 becomes GET without a body; POST + 307 stays POST with its body.
    while seen.try_recv().is_ok() {}
    for (path, method, body) in [("/see-other", "GET", ""), ("/temporary", "POST", "hi")] {
        let obs = run(&spec(&format!(
            "request: {{ url: 'http://{addr}{path}', method: POST, body: hi, headers: {{ content-type: text/plain }} }}"
        )))
        .await;
        assert_up(&obs);
        let first = seen.recv().await.unwrap();
        assert_eq!(
            (first.method.as_str(), &first.body[..]),
            ("POST", &b"hi"[..])
        );
        let second = seen.recv().await.unwrap();
        assert_eq!(second.path, "/hop/0");
        assert_eq!(
            (second.method.as_str(), &second.body[..]),
            (method, body.as_bytes())
        );
        assert_eq!(
            second.headers.contains_key("content-type"),
            method == "POST"
        );
    }
}

#[tokio::test]
async fn credentials_are_not_sent_to_another_host() {
    let dns = dns_server().await;
    let env = Env::new(&[dns]).unwrap();
    // 127.0.0.1 redirects to itself, then to other.test (another host, same server).
    let (addr, mut seen) = http_server(move |s| match s.path.as_str() {
        "/start" => reply(302, "").header("location", "/same"),
        "/same" => {
            let port = s.headers["host"]
                .to_str()
                .unwrap()
                .rsplit(':')
                .next()
                .unwrap();
            reply(302, "").header("location", &format!("http://other.test:{port}/end"))
        }
        _ => reply(200, ""),
    })
    .await;
    let s = spec(&format!(
        "request: {{ url: 'http://u:hunter22@{addr}/start', headers: {{ Cookie: session=s3cretcookie }} }}"
    ));
    let obs = run_in(&s, &env, Duration::from_secs(5)).await;
    assert_up(&obs);
    assert_eq!(obs.redirects, 2);
    for path in ["/start", "/same"] {
        let req = seen.recv().await.unwrap();
        assert_eq!(req.path, path);
        assert!(req.headers.contains_key("authorization") && req.headers.contains_key("cookie"));
    }
    let last = seen.recv().await.unwrap();
    assert_eq!(last.path, "/end");
    assert_eq!(last.headers["host"], format!("other.test:{}", addr.port()));
    assert!(
        !last.headers.contains_key("authorization"),
        "{:?}",
        last.headers
    );
    assert!(!last.headers.contains_key("cookie"), "{:?}", last.headers);

    // https -> http on the same host is a downgrade: no credentials either.
    let https = build("request: { url: 'https://u:p@a.example/x' }").unwrap();
    let downgrade = parse_target("http://a.example/y").unwrap();
    let req = https
        .request(
            &downgrade,
            &Method::GET,
            true,
            &HeaderValue::from_static("t"),
        )
        .unwrap();
    assert!(!req.headers().contains_key("authorization"));
    let upgrade = parse_target("https://a.example/y").unwrap();
    let http = build("request: { url: 'http://u:p@a.example/x' }").unwrap();
    let req = http
        .request(&upgrade, &Method::GET, true, &HeaderValue::from_static("t"))
        .unwrap();
    assert!(req.headers().contains_key("authorization"));
}

/// A tiny DNS server on UDP 127.0.0.1:0: `web.test` and `other.test` have an A record
/// (127.0.0.1) and no AAAA; `blackhole.test` is never answered; every other name is
/// NXDOMAIN.
async fn dns_server() -> SocketAddr {
    let local = |last| Ipv4Addr::new(127, 0, 0, last);
    Zone::new()
        .silent("blackhole.test")
        // Three edges of one site, for the version skew check.
        .a("edges.test", &[local(1), local(2), local(3)])
        // Two addresses: nothing listens on the first (127.0.0.2), the server on the
        // second.
        .a("multi.test", &[local(2), Ipv4Addr::LOCALHOST])
        .a("web.test", &[Ipv4Addr::LOCALHOST])
        .a("other.test", &[Ipv4Addr::LOCALHOST])
        .serve()
        .await
}

#[tokio::test]
async fn dns_resolve_phase_nxdomain_family_and_timeout() {
    let dns = dns_server().await;
    let env = Env::new(&[dns]).unwrap();
    let (addr, _seen) = http_server(|_| reply(200, "")).await;
    let port = addr.port();

    let obs = run_in(
        &spec(&format!("request: {{ url: 'http://web.test:{port}/' }}")),
        &env,
        Duration::from_secs(5),
    )
    .await;
    assert_up(&obs);
    assert_eq!(obs.ip, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    assert_eq!(obs.phases[0].0, "resolve");
    assert!(obs.phases[0].1 > Duration::ZERO);

    // The first address refuses: the next one is tried within the same check.
    let obs = run_in(
        &spec(&format!("request: {{ url: 'http://multi.test:{port}/' }}")),
        &env,
        Duration::from_secs(5),
    )
    .await;
    assert_up(&obs);
    assert_eq!(obs.ip, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    // Every address refuses: the reason names each one.
    let closed_port = refused_addr().await.port();
    let obs = run_in(
        &spec(&format!(
            "request: {{ url: 'http://multi.test:{closed_port}/' }}"
        )),
        &env,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(
        reason(&obs),
        format!(
            "connect to 127.0.0.2:{closed_port}: connection refused; \
             127.0.0.1:{closed_port}: connection refused"
        )
    );

    let cases = [
        (
            "request: { url: 'http://nosuch.example/' }",
            "dns: no record for nosuch.example (NXDOMAIN)",
        ),
        (
            "request: { url: 'http://web.test/' }\nip: ipv6",
            "dns: no ipv6 (AAAA) record for web.test",
        ),
    ];
    for (yaml, want) in cases {
        let obs = run_in(&spec(yaml), &env, Duration::from_secs(5)).await;
        assert_eq!(reason(&obs), want, "{yaml}");
        assert_eq!(obs.ip, None);
        assert_eq!(obs.phases.len(), 1, "{:?}", obs.phases);
    }
    let obs = run_in(
        &spec(&format!(
            "request: {{ url: 'http://web.test:{port}/' }}\nip: ipv4"
        )),
        &env,
        Duration::from_secs(5),
    )
    .await;
    assert_up(&obs);

    let t = Instant::now();
    let within = Duration::from_millis(400);
    let obs = run_in(
        &spec("request: { url: 'http://blackhole.test/' }"),
        &env,
        within,
    )
    .await;
    assert_by_deadline(t.elapsed(), within);
    assert_down(&obs, "while resolving blackhole.test");
    assert!(
        reason(&obs).starts_with("timed out after "),
        "{}",
        reason(&obs)
    );
}

/// A CA and a leaf certificate for `sans`, signed by it, and a server config using them.
fn pki(sans: &[&str]) -> Pki {
    ca_signed(sans, 365 * 86_400)
}

/// An HTTPS server (hyper over tokio-rustls) on 127.0.0.1:0 answering 200 `secure`.
async fn tls_server(config: Arc<rustls::ServerConfig>) -> SocketAddr {
    let (tx, _rx) = mpsc::unbounded_channel();
    let answer = Arc::new(|_: &Seen| reply(200, "secure"));
    testkit::tls_server(config, move |tls| {
        serve_http(TokioIo::new(tls), answer.clone(), tx.clone())
    })
    .await
}

#[tokio::test]
async fn tls_verification_expiry_and_errors() {
    let pki = pki(&["127.0.0.1", "api.internal"]);
    let addr = tls_server(pki.server.clone()).await;
    let ca_file = pem_file(&pki.ca_pem);
    let ca = format!("ca_file: '{}'", ca_file.path().display());
    let url = format!("request: {{ url: 'https://{addr}/' }}");
    let cases: Vec<(String, Option<&str>)> = vec![
        (format!("tls: {{ {ca} }}"), None),
        (format!("tls: {{ {ca}, server_name: api.internal }}"), None),
        (
            String::new(),
            Some("tls: invalid peer certificate: unknown issuer (not signed by a trusted root)"),
        ),
        (
            format!("tls: {{ {ca}, server_name: other.example }}"),
            Some("tls: invalid peer certificate: certificate not valid for name \"other.example\""),
        ),
        ("tls: { insecure_skip_verify: true }".into(), None),
        (
            "tls: { insecure_skip_verify: true, server_name: other.example }".into(),
            None,
        ),
    ];
    let env = env();
    for (tls, want) in &cases {
        let obs = run_in(
            &spec(&format!("{url}\n{tls}")),
            &env,
            Duration::from_secs(5),
        )
        .await;
        let names: Vec<_> = obs.phases.iter().map(|(n, _)| *n).collect();
        match want {
            None => {
                assert_up(&obs);
                assert_eq!(obs.cert_expiry, Some(pki.leaf_not_after), "{tls}");
                assert_eq!(
                    names,
                    ["resolve", "connect", "tls", "processing", "transfer"]
                );
                assert_eq!(obs.size, Some(6));
            }
            Some(w) => {
                assert!(reason(&obs).starts_with(w), "{tls}: {:?}", reason(&obs));
                assert_eq!(obs.cert_expiry, None);
                assert_eq!(names, ["resolve", "connect", "tls"]);
            }
        }
    }

    // The TLS config is built once per env, not per check.
    let check = build(&format!("{url}\ntls: {{ {ca} }}")).unwrap();
    let a = check.tls_config(&env).unwrap();
    let b = check.tls_config(&env).unwrap();
    assert!(Arc::ptr_eq(&a, &b));
    let other_env = self::env();
    assert!(!Arc::ptr_eq(&a, &check.tls_config(&other_env).unwrap()));

    // A bad ca_file fails at build time.
    for (content, want) in [("", "no certificate in"), ("not pem", "no certificate in")] {
        let f = pem_file(content);
        let s = spec(&format!(
            "{url}\ntls: {{ ca_file: '{}' }}",
            f.path().display()
        ));
        let e = std::sync::Arc::new(s).build().err().unwrap();
        assert!(e.starts_with("tls.ca_file: ") && e.contains(want), "{e}");
    }
    let e = build(&format!("{url}\ntls: {{ ca_file: /nonexistent/ca.pem }}"))
        .err()
        .unwrap();
    assert_eq!(
        e,
        "tls.ca_file: cannot read /nonexistent/ca.pem: no such file or directory"
    );
}

#[tokio::test]
async fn secrets_never_appear_in_reasons() {
    let pki = pki(&["127.0.0.1"]);
    let tls = tls_server(pki.server.clone()).await;
    let refused = refused_addr().await;
    let silent = tcp_server(hold).await;
    let garbage = tcp_server(|mut s| async move {
        read_head(&mut s).await;
        let _ = s.write_all(b"HTTP/1.1 99999 lol\r\n\r\n").await;
    })
    .await;
    let (plain, _seen) = http_server(|s| match s.path.split('?').next() {
        Some("/bad-location") => reply(302, "").header(
            "location",
            "ftp://user:hunter2-secret@x/?token=tok-s3cret-value",
        ),
        _ => reply(302, "").header("location", "http://probe:hunter2-secret@web.test/"),
    })
    .await;
    let dns = dns_server().await;
    let env = Env::new(&[dns]).unwrap();
    let secrets = [
        "hunter2-secret",
        "tok-s3cret-value",
        "key-s3cret-value",
        "probe:",
        &base64(b"probe:hunter2-secret"),
    ];
    let targets = [
        format!("http://{refused}/"),
        format!("https://{tls}/"),
        format!("http://{tls}/"),
        format!("https://{plain}/"),
        format!("http://{silent}/"),
        format!("http://{garbage}/"),
        format!("http://{plain}/bad-location?token=tok-s3cret-value"),
        format!("http://{plain}/loop"),
        "http://nosuch.example/?token=tok-s3cret-value".to_string(),
    ];
    for target in targets {
        let url = target.replacen("://", "://probe:hunter2-secret@", 1);
        let s = spec(&format!(
            r#"
request:
  url: "{url}"
  headers: {{ Authorization: "Bearer tok-s3cret-value", X-Api-Key: key-s3cret-value }}
max_redirects: 0
"#
        ));
        let obs = run_in(&s, &env, Duration::from_millis(400)).await;
        let r = reason(&obs);
        assert!(!obs.ok && !r.is_empty(), "{target}");
        for secret in secrets {
            assert!(!r.contains(secret), "{target}: {r:?} leaks {secret:?}");
        }
        // Clean by construction, not only thanks to the scrubber below.
        assert!(!r.contains("***") || r.contains("=***"), "{target}: {r:?}");
    }
}

#[test]
fn scrubber_blanks_secrets_that_slip_into_a_reason() {
    let check = build(
        "request: { url: 'http://probe:hunter2-secret@h/', headers: { X-Api-Key: key-s3cret-value, X-Short: on } }",
    )
    .unwrap();
    let basic = base64(b"probe:hunter2-secret");
    let leaked = format!("a probe:hunter2-secret b key-s3cret-value c Basic {basic} on");
    assert_eq!(check.scrub(leaked), "a *** b *** c *** on");
}

#[test]
fn check_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let check = build("request: { url: 'http://127.0.0.1/' }").unwrap();
    let env = env();
    let cx = CheckCx {
        env: &env,
        deadline: Instant::now(),
    };
    let fut = check.check(&cx);
    assert_send(&fut);
}

/// Three edges on 127.0.0.1-3, same port, each serving the version in its slot (and a
/// status). Returns the port.
async fn edges(versions: Arc<Mutex<[(&'static str, u16); 3]>>) -> u16 {
    for _ in 0..20 {
        let first = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = first.local_addr().unwrap().port();
        let mut ls = vec![first];
        for last in [2u8, 3] {
            match TcpListener::bind((Ipv4Addr::new(127, 0, 0, last), port)).await {
                Ok(l) => ls.push(l),
                Err(_) => break,
            }
        }
        if ls.len() < 3 {
            continue;
        }
        for (i, l) in ls.into_iter().enumerate() {
            let versions = versions.clone();
            tokio::spawn(async move {
                while let Ok((mut s, _)) = l.accept().await {
                    let (v, status) = versions.lock().unwrap()[i];
                    tokio::spawn(async move {
                        let mut buf = [0u8; 4096];
                        let mut n = 0;
                        while !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                            match s.read(&mut buf[n..]).await {
                                Ok(0) | Err(_) => return,
                                Ok(k) => n += k,
                            }
                        }
                        let host = String::from_utf8_lossy(&buf[..n])
                            .lines()
                            .find(|l| l.to_ascii_lowercase().starts_with("host:"))
                            .unwrap_or_default()
                            .to_owned();
                        let body = format!("build {v} ({host})");
                        let _ = s
                            .write_all(
                                format!(
                                    "HTTP/1.1 {status} X\r\nx-build: {v}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                                    body.len()
                                )
                                .as_bytes(),
                            )
                            .await;
                    });
                }
            });
        }
        return port;
    }
    panic!("no port free on 127.0.0.1-3");
}

#[tokio::test]
async fn edge_version_skew_names_the_stale_edge() {
    let dns = dns_server().await;
    let env = Env::new(&[dns]).unwrap();
    let versions = Arc::new(Mutex::new([("v2", 200), ("v2", 200), ("v2", 200)]));
    let port = edges(versions.clone()).await;
    let yaml = |extra: &str| {
        format!("request: {{ url: 'http://edges.test:{port}/' }}\nedges: {{ {extra} }}")
    };
    let five = Duration::from_secs(5);
    let check = spec(&yaml("version_header: x-build"));
    let obs = run_in(&check, &env, five).await;
    assert_up(&obs);
    assert!(obs.phases.iter().any(|(n, _)| *n == "connect"));

    // One edge serves the old build: down at once, naming it.
    versions.lock().unwrap()[1] = ("v1", 200);
    let obs = run_in(&check, &env, five).await;
    assert_eq!(
        reason(&obs),
        "edges disagree: 127.0.0.1, 127.0.0.3 serve \"v2\"; 127.0.0.2 serves \"v1\" (stale: 127.0.0.2)"
    );
    // The same marker from the body, by regex.
    let by_body = spec(&yaml(r"version_regex: 'build (v\d+)'"));
    assert!(reason(&run_in(&by_body, &env, five).await).contains("(stale: 127.0.0.2)"));

    // A rollout in progress: tolerated for max_skew_for.
    let patient = spec(&yaml("version_header: x-build, max_skew_for: 1h"));
    assert_up(&run_in(&patient, &env, five).await);

    // An edge that fails outright is named too.
    versions.lock().unwrap()[1] = ("v2", 503);
    let obs = run_in(&check, &env, five).await;
    assert!(
        reason(&obs).starts_with("edge 127.0.0.2: status 503"),
        "{}",
        reason(&obs)
    );

    // Every edge gets the site's Host header, not its IP.
    versions.lock().unwrap()[1] = ("v2", 200);
    let body_host = spec(&yaml(r"version_regex: '(?i)host: (\S+)'"));
    let obs = run_in(&body_host, &env, five).await;
    assert_up(&obs);

    // Edges need exactly one marker.
    let errs = spec(&yaml("max_skew_for: 1m")).validate();
    assert_eq!(errs[0].path, "edges");
}
