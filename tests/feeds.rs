//! Incident feeds and badges end to end: the real `probed` binary with public and internal
//! probes, a public target taken down and back up, and the feeds read by a real feed parser
//! (Python's feedparser, tests/peers/parse_feed.py), the badges by a real XML parser
//! (tests/peers/check_svg.py).

mod support;

use std::collections::HashMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{Daemon, Target, wait_for};

const PAGE_URL: &str = "https://status.example.com/status";
const PAGE_TITLE: &str = r#"Acme <Status> & "Co""#;
const CHECKOUT_TITLE: &str = r#"Checkout <API> & "Pay""#;

fn probe(name: &str, url: &str, extra: &str) -> String {
    format!(
        "  - name: {name}\n    kind: http\n    every: 300ms\n    timeout: 250ms\n    \
         request: {{ url: \"{url}\" }}\n    alert: {{ after: 2, recover_after: 1, resolve_hold: 0s }}\n{extra}"
    )
}

/// A response: status code, headers (lower-case names), body.
struct Reply {
    code: u16,
    headers: HashMap<String, String>,
    body: String,
}

fn get(url: &str) -> Reply {
    let raw = support::http_get_blocking(url);
    let (head, body) = raw.split_once("\r\n\r\n").expect("a complete response");
    let mut lines = head.lines();
    let code = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {head}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Reply {
        code,
        headers,
        body: body.to_owned(),
    }
}

/// feedparser must be installed (deploy/test.sh installs it): missing, the test fails at
/// once saying so, never skips.
fn require_feedparser() {
    let ok = Command::new("python3")
        .args(["-c", "import feedparser"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        ok,
        "python3 with feedparser is required: run deploy/test.sh, or `python3 -m pip install feedparser`"
    );
}

/// Runs a Python peer script on `input`, returning its JSON.
fn python(script: &str, args: &[&str], input: &str) -> serde_json::Value {
    let path = format!("{}/tests/peers/{script}", env!("CARGO_MANIFEST_DIR"));
    let mut child = Command::new("python3")
        .arg(&path)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {path}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{script} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Unix seconds of an RFC 3339 time.
fn secs(t: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(t)
        .unwrap_or_else(|e| panic!("{t}: {e}"))
        .timestamp()
}

/// Polls `path` until its body satisfies `cond` (the public view is cached for 10 s).
fn wait_body(d: &Daemon, path: &str, what: &str, cond: impl Fn(&str) -> bool) -> Reply {
    let mut last = None;
    wait_for(Duration::from_secs(30), what, || {
        let r = get(&format!("{}{path}", d.url()));
        let ok = r.code == 200 && cond(&r.body);
        last = Some(r);
        ok
    });
    last.unwrap()
}

fn check_public_headers(r: &Reply, content_type: &str) {
    assert_eq!(r.code, 200);
    assert_eq!(r.headers["content-type"], content_type);
    assert_eq!(r.headers["cache-control"], "public, max-age=10");
}

/// A badge, parsed: well-formed SVG with a title and an aria-label saying `label: message`.
fn badge(d: &Daemon, probe: &str, file: &str, cond: impl Fn(&str) -> bool) -> serde_json::Value {
    let r = wait_body(d, &format!("/badge/{probe}/{file}"), file, |b| {
        b.contains("<title>") && cond(b)
    });
    check_public_headers(&r, "image/svg+xml");
    let v = python("check_svg.py", &[], &r.body);
    assert_eq!(v["ok"], true, "{v}\n{}", r.body);
    assert_eq!(v["root"], "{http://www.w3.org/2000/svg}svg");
    assert_eq!(v["role"], "img");
    assert_eq!(v["height"], "20");
    assert_eq!(v["aria_label"], v["title"]);
    let texts = v["texts"].as_array().unwrap();
    assert_eq!(texts.len(), 4, "label and message, each with its shadow");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feeds_and_badges_follow_a_public_incident_and_hide_internal_ones() {
    require_feedparser();
    let mut checkout = Target::start().await;
    let search = Target::start().await;
    let mut internal = Target::start().await;
    let probes = format!(
        "probes:\n{}{}{}",
        probe(
            "checkout",
            &checkout.url("/pay"),
            &format!("    public: true\n    title: '{CHECKOUT_TITLE}'\n"),
        ),
        probe(
            "search",
            &search.url("/"),
            "    public: true\n    title: Search\n"
        ),
        probe("db-internal", &internal.url("/secret-admin"), ""),
    );
    let mut d = Daemon::new(
        &probes,
        &format!(
            "instance: feeds\nstatus_page: {{ title: '{PAGE_TITLE}', url: \"{PAGE_URL}\" }}\n"
        ),
    );
    d.start();
    for p in ["checkout", "search", "db-internal"] {
        d.wait_state(p, "up", Duration::from_secs(10));
    }

    // Down: an incident opens on the public probe and on the internal one.
    checkout.off();
    internal.off();
    d.wait_state("checkout", "down", Duration::from_secs(10));
    d.wait_state("db-internal", "down", Duration::from_secs(10));
    let r = wait_body(&d, "/feed.atom", "the open incident in the feed", |b| {
        b.contains("is down</title>")
    });
    assert!(!r.body.contains("resolved</title>"));
    let v = badge(&d, "checkout", "status.svg", |b| b.contains("major outage"));
    assert_eq!(v["title"], format!("{CHECKOUT_TITLE}: major outage"));

    // Up again: the incident resolves (resolve_hold: 0s).
    checkout.on().await;
    d.wait_state("checkout", "up", Duration::from_secs(10));
    let incidents = |open_only: bool| {
        let mut args = vec!["incidents", "--json"];
        if !open_only {
            args.push("--all");
        }
        let out = d.probectl(&args);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["incidents"].as_array().unwrap().clone()
    };
    wait_for(
        Duration::from_secs(10),
        "the checkout incident to resolve",
        || {
            incidents(false)
                .iter()
                .any(|i| i["probe"] == "checkout" && !i["resolved_at"].is_null())
        },
    );
    let all = incidents(false);
    let inc = all.iter().find(|i| i["probe"] == "checkout").unwrap();
    assert!(
        all.iter()
            .any(|i| i["probe"] == "db-internal" && i["resolved_at"].is_null()),
        "the internal probe has an open incident: {all:?}"
    );
    let id = inc["id"].as_i64().unwrap();
    let opened = secs(inc["opened_at"].as_str().unwrap());
    let resolved = secs(inc["resolved_at"].as_str().unwrap());
    let opened_day = &inc["opened_at"].as_str().unwrap()[..10];
    let want_id = format!("tag:status.example.com,{opened_day}:incident-{id}");
    let want_link = format!("{PAGE_URL}#incident-{id}");
    let want_title = format!("{CHECKOUT_TITLE} is down — resolved");

    let atom = wait_body(
        &d,
        "/feed.atom",
        "the resolved incident in the Atom feed",
        |b| b.contains("resolved</title>"),
    );
    let rss = wait_body(
        &d,
        "/feed.rss",
        "the resolved incident in the RSS feed",
        |b| b.contains("resolved</title>"),
    );
    check_public_headers(&atom, "application/atom+xml; charset=utf-8");
    check_public_headers(&rss, "application/rss+xml; charset=utf-8");

    // Nothing internal in either: not the internal probe, not a target's address or path,
    // not an error text.
    let secrets = [
        "db-internal".to_owned(),
        "secret-admin".to_owned(),
        "/pay".to_owned(),
        "127.0.0.1".to_owned(),
        internal.addr.port().to_string(),
        checkout.addr.port().to_string(),
        "refused".to_owned(),
        "onnect".to_owned(),
    ];
    for (name, body) in [("atom", &atom.body), ("rss", &rss.body)] {
        for s in &secrets {
            assert!(
                !body.contains(s.as_str()),
                "{name} feed names {s:?}:\n{body}"
            );
        }
    }

    for (feed, body, content_type, version) in [
        (
            "atom",
            &atom.body,
            "application/atom+xml; charset=utf-8",
            "atom10",
        ),
        (
            "rss",
            &rss.body,
            "application/rss+xml; charset=utf-8",
            "rss20",
        ),
    ] {
        let v = python("parse_feed.py", &["--content-type", content_type], body);
        assert_eq!(v["bozo"], false, "{feed}: {v}\n{body}");
        assert_eq!(v["version"], version, "{feed}: {v}");
        assert_eq!(v["feed"]["title"], PAGE_TITLE, "{feed}: {v}");
        assert_eq!(v["feed"]["link"], PAGE_URL, "{feed}: {v}");
        assert_eq!(v["feed"]["updated_ts"], resolved, "{feed}: {v}");
        let entries = v["entries"].as_array().unwrap();
        assert_eq!(
            entries.len(),
            1,
            "{feed}: only the public probe's incident: {v}"
        );
        let e = &entries[0];
        assert_eq!(e["id"], want_id.as_str(), "{feed}: {e}");
        assert_eq!(e["title"], want_title.as_str(), "{feed}: {e}");
        assert_eq!(e["link"], want_link.as_str(), "{feed}: {e}");
        assert_eq!(e["published_ts"], opened, "{feed}: {e}");
        assert_eq!(e["updated_ts"], resolved, "{feed}: {e}");
        let summary = e["summary"].as_str().unwrap();
        // The updates, newest first, the display name escaped as HTML text.
        let at = |s: &str| {
            summary
                .find(s)
                .unwrap_or_else(|| panic!("{feed}: {s:?} not in {summary}"))
        };
        // No monitoring stage: resolve_hold 0s resolves the moment it recovers.
        assert!(at("Resolved") < at("Investigating"));
        assert!(!summary.contains("Monitoring"), "{feed}: {summary}");
        at("Checkout &lt;API&gt; &amp; ");
        at("is not responding as expected.");
        at(" UTC)");
        assert!(!summary.contains("<API>"), "{feed}: {summary}");
    }

    // Badges: well-formed, with the expected message.
    let v = badge(&d, "checkout", "status.svg", |b| b.contains("operational"));
    assert_eq!(v["title"], format!("{CHECKOUT_TITLE}: operational"));
    assert_eq!(v["texts"][1]["text"], CHECKOUT_TITLE);
    assert_eq!(v["texts"][3]["text"], "operational");
    let v = badge(&d, "search", "status.svg", |_| true);
    assert_eq!(v["title"], "Search: operational");
    // Checkout failed part of the time: below 100%, above 0%.
    let v = badge(&d, "checkout", "uptime-24h.svg", |_| true);
    let msg = v["texts"][3]["text"].as_str().unwrap().to_owned();
    let pct: f64 = msg.strip_suffix('%').unwrap().parse().unwrap();
    assert!(pct > 0.0 && pct < 100.0, "{msg}");
    assert_eq!(v["title"], format!("uptime 24h: {msg}"));
    for (file, label) in [
        ("uptime-7d.svg", "uptime 7d"),
        ("uptime-30d.svg", "uptime 30d"),
    ] {
        let v = badge(&d, "search", file, |_| true);
        let msg = v["texts"][3]["text"].as_str().unwrap();
        assert_eq!(v["title"], format!("{label}: {msg}"));
        let pct: f64 = msg.strip_suffix('%').unwrap().parse().unwrap();
        assert!(pct > 90.0, "search was up all along: {msg}");
    }
    let v = badge(&d, "search", "latency.svg", |_| true);
    let msg = v["texts"][3]["text"].as_str().unwrap();
    assert!(
        msg.ends_with(" ms") && msg.trim_end_matches(" ms").parse::<f64>().is_ok(),
        "{msg}"
    );
    // The label box grows with the label.
    let w = |v: &serde_json::Value| v["width"].as_str().unwrap().parse::<f64>().unwrap();
    let short = badge(&d, "search", "status.svg", |_| true);
    let long = badge(&d, "checkout", "status.svg", |_| true);
    assert!(w(&long) > w(&short));

    // An internal probe's badge is the same 404 as an unknown probe's: existence not told.
    let internal_badge = get(&format!("{}/badge/db-internal/status.svg", d.url()));
    let unknown = get(&format!("{}/badge/no-such-probe/status.svg", d.url()));
    let bad_file = get(&format!("{}/badge/checkout/status.png", d.url()));
    for r in [&internal_badge, &unknown, &bad_file] {
        assert_eq!(r.code, 404);
        assert_eq!(r.body, unknown.body);
        assert_eq!(
            r.headers.get("content-type"),
            unknown.headers.get("content-type")
        );
        assert!(!r.body.contains("db-internal"));
    }

    assert!(d.stop().success());
}
