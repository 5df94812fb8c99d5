//! `kind: push` with healthchecks.io's ping URLs, against the real `probed` binary over real
//! HTTP: every URL form a cron line uses (`/$?`, `/start`, `/fail`, `/log`, a trailing
//! slash, HEAD/GET/POST), the job's output as the reason on the page and in the results API
//! (its last 10 KiB), run durations by `?rid=`, and none of it on the public side.

mod support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use support::Daemon;
use support::receiver::Receiver;

const TOKEN: &str = "cron-job-token-0123456789";

/// One request over a fresh connection; `body` sent with a Content-Length, or chunked (as
/// curl sends a body read from a pipe). The status code and the raw response.
fn request(method: &str, url: &str, body: &[u8], chunked: bool) -> (u16, String) {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut s = std::net::TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    if chunked {
        req.push_str("Transfer-Encoding: chunked\r\n\r\n");
        let mut out = req.into_bytes();
        for part in body.chunks(3000) {
            out.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
            out.extend_from_slice(part);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
        s.write_all(&out).unwrap();
    } else {
        req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let mut out = req.into_bytes();
        out.extend_from_slice(body);
        s.write_all(&out).unwrap();
    }
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let code = buf
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {buf:?}"));
    (code, buf)
}

fn daemon(hook: &Receiver) -> Daemon {
    Daemon::new(
        &format!(
            "probes:\n  - name: nightly\n    kind: push\n    every: 200ms\n    timeout: 100ms\n    \
             token: {TOKEN}\n    period: 1h\n    grace: 1h\n    public: true\n    \
             alert: {{ after: 1, recover_after: 1, resolve_hold: 0s }}\n"
        ),
        &format!(
            "instance: push\nstatus_page: {{ title: Jobs }}\n\
             alerting: {{ max_attempts: 2, retry_base: 100ms, retry_max: 1s }}\n\
             notifiers:\n  hook: {{ kind: webhook, url: \"{}/hook\" }}\nroutes:\n  - notify: [hook]\n",
            hook.url()
        ),
    )
}

/// The stored pings of `nightly`, newest first, and its results.
fn results(d: &Daemon) -> serde_json::Value {
    let raw = support::http_get_blocking(&format!("{}/api/v1/probes/nightly/results", d.url()));
    let (code, _, body) = support::split_response(&raw);
    assert_eq!(code, 200, "{raw}");
    serde_json::from_str(&body).unwrap()
}

/// Every URL form answers as healthchecks.io's does; each moves the probe as it says.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_healthchecks_url_form_is_understood() {
    let hook = Receiver::webhook(vec![]).await;
    let mut d = daemon(&hook);
    d.start();
    let base = format!("{}/api/v1/push/{TOKEN}", d.url());
    // (method, rest of the URL, answer, state after it, a piece of the reason)
    let cases: &[(&str, &str, u16, &str, &str)] = &[
        ("GET", "", 200, "up", ""),
        ("POST", "/1", 200, "down", "(exit status 1)"),
        ("HEAD", "/0", 200, "up", ""),
        ("GET", "/137/", 200, "down", "(exit status 137)"),
        ("POST", "/", 200, "up", ""),
        ("GET", "/fail/", 200, "down", "the job reported a failure "),
        ("POST", "/0/", 200, "up", ""),
        (
            "POST",
            "/fail?exit_status=2",
            200,
            "down",
            "(exit status 2)",
        ),
        ("GET", "?exit_status=0", 200, "up", ""),
        ("GET", "/255", 200, "down", "(exit status 255)"),
        ("HEAD", "/start", 200, "up", ""),
        ("POST", "/0", 200, "up", ""),
        ("GET", "/start/", 200, "up", ""),
        ("GET", "/log", 200, "up", ""),
        ("POST", "/log/", 200, "up", ""),
        ("GET", "/0", 200, "up", ""),
    ];
    let mut pings = 0;
    for (method, rest, code, state, reason) in cases {
        let (got, raw) = request(method, &format!("{base}{rest}"), b"", false);
        assert_eq!(got, *code, "{method} {rest}: {raw}");
        pings += 1;
        d.wait_state("nightly", state, Duration::from_secs(10));
        let err = d.last_error("nightly");
        assert!(err.contains(reason), "{method} {rest}: {err:?}");
    }
    let v = results(&d);
    let kinds: Vec<&str> = v["pings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.len(), pings);
    assert_eq!(&kinds[..4], ["ok", "log", "log", "start"], "newest first");

    // What is refused, and how.
    let refused: &[(&str, &str, u16)] = &[
        ("GET", "/256", 400),
        ("GET", "/99999", 400),
        ("GET", "/-1", 404),
        ("GET", "/stop", 404),
        ("POST", "/start?rid=not-a-uuid", 400),
        ("GET", "/start/extra", 404),
        ("POST", "?exit_status=abc", 400),
    ];
    for (method, rest, code) in refused {
        let (got, raw) = request(method, &format!("{base}{rest}"), b"", false);
        assert_eq!(got, *code, "{method} {rest}: {raw}");
    }
    for rest in ["", "/", "/0", "/start", "/log"] {
        let url = format!("{}/api/v1/push/not-a-real-token-000{rest}", d.url());
        assert_eq!(request("POST", &url, b"", false).0, 404, "{rest}");
    }
    assert_eq!(results(&d)["pings"].as_array().unwrap().len(), pings);
    assert!(d.stop().success());
    assert!(!d.log().contains(TOKEN), "the token is never logged");
}

/// A cron job killed with 137 pages on-call with its exit status and the last lines of its
/// output; the output is kept (its last 10 KiB) in the results API, `probectl history` shows
/// the reason, a `/log` body is kept and changes nothing, runs are timed by `rid`, and the
/// public documents never carry any of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_job_pages_with_its_exit_status_and_output() {
    let hook = Receiver::webhook(vec![]).await;
    let mut d = daemon(&hook);
    d.start();
    let base = format!("{}/api/v1/push/{TOKEN}", d.url());
    assert_eq!(request("GET", &format!("{base}/0"), b"", false).0, 200);
    d.wait_state("nightly", "up", Duration::from_secs(10));

    // 20 KiB of output: the first half is dropped, the end kept. The job echoes its own ping
    // URL too: the token does not survive into what is kept.
    let mut output = String::from("HEAD-OF-OUTPUT\n");
    while output.len() < 20 * 1024 {
        output.push_str("copying chunk ............................................\n");
    }
    output.push_str(&format!(
        "curl {base}/$?\nrsync: write failed: No space left\nKilled\n"
    ));
    let (code, raw) = request("POST", &format!("{base}/137"), output.as_bytes(), true);
    assert_eq!(code, 200, "{raw}");

    let (got, _) = hook.wait_accepted(Duration::from_secs(15), "the page", |r| {
        r.iter().any(|r| r.body["event"] == "trigger")
    });
    let page = got.iter().find(|r| r.body["event"] == "trigger").unwrap();
    let reason = page.body["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("the job reported a failure (exit status 137) "),
        "{reason}"
    );
    assert!(
        reason.ends_with("/api/v1/push/***/$? | rsync: write failed: No space left | Killed"),
        "{reason}"
    );
    assert!(reason.contains(" ago: …"), "cut in front: {reason}");
    assert!(
        !reason.contains('\n') && reason.chars().count() < 300,
        "{reason}"
    );
    assert!(!page.text.contains(TOKEN));

    let v = results(&d);
    let kept = v["pings"][0]["body"].as_str().unwrap();
    assert_eq!(v["pings"][0]["exit_status"], 137);
    assert!(
        kept.len() <= 10 * 1024 && kept.len() > 10 * 1024 - 64,
        "{}",
        kept.len()
    );
    assert!(kept.ends_with("No space left\nKilled\n"));
    assert!(!kept.contains("HEAD-OF-OUTPUT"), "the head is dropped");
    assert!(!kept.contains(TOKEN) && kept.contains("/api/v1/push/***/$?"));
    assert!(
        v["results"][0]["error"]
            .as_str()
            .unwrap()
            .contains("(exit status 137)")
    );
    let out = d.probectl(&["history", "nightly", "--limit", "1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("the job reported a failure (exit status 137)"),
        "{text}"
    );

    // A log message is kept and changes nothing.
    let (code, _) = request(
        "POST",
        &format!("{base}/log"),
        b"LOG-MESSAGE disk 91%",
        false,
    );
    assert_eq!(code, 200);
    let v = results(&d);
    assert_eq!(v["pings"][0]["kind"], "log");
    assert_eq!(v["pings"][0]["body"], "LOG-MESSAGE disk 91%");
    assert_eq!(d.probe_state("nightly"), "down");
    assert!(d.last_error("nightly").ends_with("| Killed"));

    // Runs by rid: b starts and finishes inside a, so a took at least as long as b, and no
    // longer than the test saw from a's start to its finish.
    let (a, b) = (
        "0f8fad5b-d9cb-469f-a165-70867728950e",
        "7C9E6679-7425-40DE-944B-E07FC1F90AE7",
    );
    let t0 = Instant::now();
    assert_eq!(
        request("GET", &format!("{base}/start?rid={a}"), b"", false).0,
        200
    );
    assert_eq!(
        request("GET", &format!("{base}/start?rid={b}"), b"", false).0,
        200
    );
    for _ in 0..5 {
        assert_eq!(request("GET", &format!("{base}/log"), b"", false).0, 200);
    }
    assert_eq!(
        request("GET", &format!("{base}/0?rid={b}"), b"", false).0,
        200
    );
    assert_eq!(
        request("POST", &format!("{base}/0?rid={a}"), b"", false).0,
        200
    );
    let seen = t0.elapsed().as_millis() as i64;
    let v = results(&d);
    let da = v["pings"][0]["duration_ms"].as_i64().unwrap();
    let db = v["pings"][1]["duration_ms"].as_i64().unwrap();
    assert_eq!(v["pings"][0]["rid"], a);
    assert_eq!(v["pings"][1]["rid"], b.to_ascii_lowercase());
    assert!(db <= da && da <= seen, "b {db}ms, a {da}ms, seen {seen}ms");
    d.wait_state("nightly", "up", Duration::from_secs(10));
    // The run's duration is the result's.
    support::wait_for(
        Duration::from_secs(10),
        "a result with a's duration",
        || {
            let r = &results(&d)["results"][0];
            r["ok"] == true && r["latency_ms"].as_f64() == Some(da as f64)
        },
    );

    // Fail again with output, then read every public document: no output, no exit status.
    request(
        "POST",
        &format!("{base}/3"),
        b"SECRET-ISH-OUTPUT line",
        false,
    );
    d.wait_state("nightly", "down", Duration::from_secs(10));
    assert!(
        d.last_error("nightly")
            .ends_with("ago: SECRET-ISH-OUTPUT line")
    );
    for path in [
        "/status",
        "/api/v2/summary.json",
        "/api/v2/status.json",
        "/api/v2/components.json",
        "/api/v2/incidents.json",
        "/api/v2/incidents/unresolved.json",
        "/feed.atom",
        "/feed.rss",
        "/badge/nightly/status.svg",
    ] {
        let raw = support::http_get_blocking(&format!("{}{path}", d.url()));
        assert!(raw.starts_with("HTTP/1.1 200"), "{path}: {raw}");
        for never in [
            "SECRET-ISH",
            "Killed",
            "LOG-MESSAGE",
            "exit status",
            "No space",
        ] {
            assert!(!raw.contains(never), "{path} shows {never:?}: {raw}");
        }
    }
    assert!(d.stop().success());
    assert!(!d.log().contains(TOKEN), "the token is never logged");
    // The daemon's own log carries reasons as it does every probe's (the operator's, not
    // the public's): the output's last lines show there, as on the page.
}
