//! Secrets in every encoding, end to end: the real `probed` and `probectl` against
//! notifier endpoints that refuse each request and echo it back in their error body (the
//! request's credentials as sent, raw, JSON-escaped or percent-encoded). No form of any
//! secret may come back out: not in `/api/v1/incidents` (which, without the admin token,
//! shows a delivery's error only as its status and a short phrase), `probectl incidents
//! --json`, `probectl test-alert`, the daemon's log, or any byte of its SQLite files.

mod support;

use std::io::{Read, Write};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use support::{Daemon, Target, wait_for};

const ADMIN: &str = "admin-token-7c6b5a4d3e";

// The webhook's URL userinfo: the password as written in the URL, and as sent (decoded),
// with characters that JSON and URLs both escape.
const HOOK_USER: &str = "hookuser";
const HOOK_PW: &str = "h00k\"p@ss\\w0rd/7";
const HOOK_PW_WRITTEN: &str = "h00k%22p%40ss%5Cw0rd%2F7";
// A header value of the webhook.
const HOOK_KEY: &str = "k3y\"with\\quote-55";
// The Alertmanager URL's userinfo.
const AM_USER: &str = "amuser";
const AM_PW: &str = "am-p@ss w0rd-x9";
const AM_PW_WRITTEN: &str = "am-p%40ss%20w0rd-x9";
// Twilio's basic auth: account sid and auth token.
const TW_SID: &str = "AC0123456789abcdef0123456789abcdef";
const TW_TOKEN: &str = "f00dfeedc0ffee0123456789abcdef42";

/// Standard base64 with padding.
fn base64(input: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in input.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(c.get(1).copied().unwrap_or(0)) << 8)
            | u32::from(c.get(2).copied().unwrap_or(0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Every byte but the unreserved ones as `%XX`.
fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A string as JSON writes it, without the quotes.
fn json_escaped(s: &str) -> String {
    let q = serde_json::to_string(s).unwrap();
    q[1..q.len() - 1].to_string()
}

/// Every form of every secret that must never come back out, with a name for the message.
fn forbidden() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut add = |what: &str, form: String| {
        if !out.iter().any(|(_, f)| *f == form) {
            out.push((what.to_string(), form));
        }
    };
    for (what, s) in [
        ("webhook password", HOOK_PW),
        ("webhook password as written", HOOK_PW_WRITTEN),
        ("webhook header", HOOK_KEY),
        ("alertmanager password", AM_PW),
        ("alertmanager password as written", AM_PW_WRITTEN),
        ("twilio auth token", TW_TOKEN),
    ] {
        add(what, s.to_string());
        add(&format!("{what}, percent-encoded"), pct(s));
        add(&format!("{what}, json-escaped"), json_escaped(s));
        add(&format!("{what}, base64"), base64(s.as_bytes()));
    }
    for (what, user, pw) in [
        ("webhook userinfo", HOOK_USER, HOOK_PW),
        ("alertmanager userinfo", AM_USER, AM_PW),
        ("twilio basic auth", TW_SID, TW_TOKEN),
    ] {
        let pair = format!("{user}:{pw}");
        let b64 = base64(pair.as_bytes());
        add(&format!("{what}, the pair"), pair);
        add(&format!("{what}, base64 of the pair"), b64.clone());
        add(
            &format!("{what}, base64 of the pair, json-escaped"),
            json_escaped(&b64),
        );
        add(
            &format!("{what}, base64 of the pair, percent-encoded"),
            pct(&b64),
        );
    }
    out
}

#[track_caller]
fn assert_clean(place: &str, text: &[u8]) {
    let text = String::from_utf8_lossy(text);
    for (what, form) in forbidden() {
        assert!(
            !text.contains(&form),
            "{what} ({form:?}) leaked in {place}:\n{text}"
        );
    }
}

/// Request headers worth echoing: the ones a client sets for its own reasons.
const DULL: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "accept",
    "user-agent",
    "x-probed-event",
    "x-probed-dedup-key",
    "x-probed-signature",
];

/// A server that refuses every request and echoes it back, in the encoding its path
/// starts with: `/raw` (header lines as received), `/json` (a JSON object) or `/pct`
/// (form fields, percent-encoded). Alertmanager's `/api/v2/alerts` gets 500, the rest 400;
/// a Twilio Messages path gets Twilio's error object with the echo as its `message`.
async fn echo_server() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                    if buf.len() > 1 << 20 {
                        return;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                let mut lines = head.split("\r\n");
                let path = lines
                    .next()
                    .and_then(|l| l.split(' ').nth(1))
                    .unwrap_or("/")
                    .to_string();
                let headers: Vec<(String, String)> = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                    .collect();
                let len: usize = headers
                    .iter()
                    .find(|(k, _)| k == "content-length")
                    .and_then(|(_, v)| v.parse().ok())
                    .unwrap_or(0);
                let mut body = buf[head_end..].to_vec();
                while body.len() < len {
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => body.extend_from_slice(&chunk[..n]),
                    }
                }
                let body = String::from_utf8_lossy(&body).into_owned();
                let shown: Vec<&(String, String)> = headers
                    .iter()
                    .filter(|(k, _)| !DULL.contains(&k.as_str()))
                    .collect();
                let echo = if path.starts_with("/json") {
                    let h: serde_json::Map<String, serde_json::Value> = shown
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone().into()))
                        .collect();
                    // Keys in order: the headers first, then what was sent.
                    serde_json::json!({"headers": h, "sent": body}).to_string()
                } else if path.starts_with("/pct") {
                    let mut f: Vec<String> = shown
                        .iter()
                        .map(|(k, v)| format!("{k}={}", pct(v)))
                        .collect();
                    f.push(format!("sent={}", pct(&body)));
                    f.join("&")
                } else {
                    let mut t: Vec<String> =
                        shown.iter().map(|(k, v)| format!("{k}: {v}")).collect();
                    t.push(body);
                    t.join("\n")
                };
                let (status, out) = if path.ends_with("/api/v2/alerts") {
                    (500, echo)
                } else if path.contains("/2010-04-01/Accounts/") {
                    let e = serde_json::json!({
                        "code": 21211,
                        "message": echo,
                        "more_info": "https://www.twilio.com/docs/errors/21211",
                        "status": 400,
                    });
                    (400, e.to_string())
                } else {
                    (400, echo)
                };
                let resp = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{out}",
                    out.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

/// A GET with an optional bearer token; the body.
fn get(url: &str, token: Option<&str>) -> String {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut s = std::net::TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{raw}");
    body.to_string()
}

/// The deliveries of the first incident, by notifier name.
fn deliveries(incidents: &str) -> Vec<(String, serde_json::Value)> {
    let v: serde_json::Value =
        serde_json::from_str(incidents).unwrap_or_else(|e| panic!("not JSON ({e}): {incidents}"));
    v["incidents"][0]["deliveries"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|d| (d["notifier"].as_str().unwrap_or("").to_string(), d.clone()))
                .collect()
        })
        .unwrap_or_default()
}

const FORMATS: [&str; 3] = ["raw", "json", "pct"];

/// Every notifier refuses its page with the request echoed back; what the daemon, its API,
/// its CLI and its files keep of that holds no form of any secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echoed_credentials_never_come_back_out() {
    let mut target = Target::start().await;
    target.off();
    let echo = echo_server().await;
    let mut notifiers = String::from("notifiers:\n");
    let mut names = Vec::new();
    for f in FORMATS {
        notifiers.push_str(&format!(
            "  hook-{f}: {{ kind: webhook, url: 'http://{HOOK_USER}:{HOOK_PW_WRITTEN}@{echo}/{f}/hook', \
             headers: {{ x-api-key: '{HOOK_KEY}' }} }}\n  \
             am-{f}: {{ kind: alertmanager, urls: ['http://{AM_USER}:{AM_PW_WRITTEN}@{echo}/{f}'] }}\n  \
             sms-{f}: {{ kind: twilio, account_sid: {TW_SID}, auth_token: {TW_TOKEN}, from: '+15550001111', \
             to: ['+15550002222'], base_url: 'http://{echo}/{f}' }}\n"
        ));
        names.extend([format!("hook-{f}"), format!("am-{f}"), format!("sms-{f}")]);
    }
    let mut d = Daemon::new(
        &format!(
            "probes:\n  - name: api\n    kind: http\n    every: 500ms\n    timeout: 400ms\n    \
             request: {{ url: \"{}\" }}\n    alert: {{ after: 2 }}\n",
            target.url("/")
        ),
        &format!(
            "admin_token: {ADMIN}\ninstance: e2e\n\
             alerting: {{ max_attempts: 2, retry_base: 100ms, retry_max: 1s }}\n\
             {notifiers}routes:\n  - notify: [{}]\n",
            names.join(", ")
        ),
    );
    d.start();

    // Every page fails for good: one try on a 400, two on a 500.
    let api = format!("{}/api/v1/incidents?open=false", d.url());
    wait_for(Duration::from_secs(40), "every delivery to fail", || {
        let got = deliveries(&get(&api, None));
        got.len() == names.len() && got.iter().all(|(_, d)| d["status"] == "failed")
    });

    // Without the token, the API tells the status and nothing of the answer.
    let public = get(&api, None);
    assert_clean("/api/v1/incidents", public.as_bytes());
    for (name, d) in deliveries(&public) {
        let want = if name.starts_with("am-") {
            "http 500"
        } else {
            "http 400"
        };
        assert_eq!(d["last_error"], want, "{name}: {d}");
    }

    // With it, the whole (redacted) text: the echo is there, its secrets are not.
    let full = get(&api, Some(ADMIN));
    assert_clean("/api/v1/incidents with the admin token", full.as_bytes());
    for (name, d) in deliveries(&full) {
        let e = d["last_error"].as_str().unwrap_or_default();
        assert!(e.contains("***"), "{name}: the echo, redacted: {e}");
        if name.starts_with("hook-") || name.starts_with("am-") {
            assert!(e.contains("authorization"), "{name}: the echo shows: {e}");
        }
    }

    let out = d.probectl(&["incidents", "--all", "--json"]);
    assert!(out.status.success());
    assert_clean("probectl incidents --json", &out.stdout);
    assert_clean("probectl incidents --json (stderr)", &out.stderr);
    let table = d.probectl(&["incidents", "--all"]);
    assert_clean("probectl incidents", &table.stdout);

    for name in &names {
        let out = d.probectl(&["test-alert", name]);
        assert_eq!(out.status.code(), Some(2), "{name}: refused");
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(said.contains("refused"), "{name}: {said}");
        assert_clean(&format!("probectl test-alert {name}"), &out.stdout);
        assert_clean(&format!("probectl test-alert {name} (stderr)"), &out.stderr);
    }

    let log = d.log();
    assert!(log.contains("alert delivery failed"), "{log}");
    assert!(d.stop().success());
    assert_clean("the daemon's log", log.as_bytes());
    let mut files = 0;
    for entry in std::fs::read_dir(d.dir.path().join("data")).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name().to_string_lossy().starts_with("probed.db") {
            files += 1;
            let bytes = std::fs::read(entry.path()).unwrap();
            assert_clean(&entry.path().display().to_string(), &bytes);
        }
    }
    assert!(files >= 1, "the database was read");
}
