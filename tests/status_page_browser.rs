//! End to end: the public status page `/status` of the real `probed`, rendered in real
//! headless Chromium (Debian's `chromium`, driven by npm `playwright-core` from
//! `tests/peers/render_page.js`) at phone and desktop sizes, and read as a person reads it.
//!
//! Checks the layout (components above the fold with incidents open), dark mode, axe-core's
//! audit (no violation), keyboard access to each day's detail and feed autodiscovery.
//! Needs `/usr/bin/chromium` and `tests/peers/node_modules/{playwright-core,axe-core}` (installed
//! by `deploy/test.sh`); without them the test fails saying so, it never skips.
//! `STATUS_PAGE_SCREENSHOTS=/tmp/status` keeps the screenshots as `/tmp/status-<size>.png`.
//! The Statuspage-compatible JSON API (`/api/v2/*.json`) is `tests/statuspage_api.rs`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use support::{Daemon, Target, wait_for};

const CHROMIUM: &str = "/usr/bin/chromium";

fn peers() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers")
}

/// Fails (never skips) when the browser or its driver is missing.
fn require_browser() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: the status page test renders in real Chromium; run deploy/test.sh \
         (it installs Debian's chromium) or apt-get install chromium"
    );
    assert!(
        peers()
            .join("node_modules/playwright-core/package.json")
            .exists(),
        "playwright-core is missing from tests/peers/node_modules: run deploy/test.sh (or npm \
         install --no-save --no-audit --no-fund --prefix tests/peers socket.io@4 playwright-core@1 axe-core@4 statuspage.io@3.3.8)"
    );
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "node is missing: run deploy/test.sh (it installs nodejs)"
    );
}

fn probe(name: &str, url: &str, public: &str) -> String {
    format!(
        "  - name: {name}\n    kind: http\n    every: 300ms\n    timeout: 250ms\n    \
         request: {{ url: \"{url}\" }}\n    alert: {{ after: 2, recover_after: 1, resolve_hold: 0s }}\n{public}"
    )
}

/// One GET over a fresh connection with extra header lines: (status code, head, body).
fn get(url: &str, extra: &str) -> (u16, String, String) {
    support::split_response(&support::http_get_with(url, extra))
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .map(str::trim)
}

/// The daemon's incidents (admin API), as (probe, resolved).
fn incidents(d: &Daemon) -> Vec<(String, bool)> {
    let (_, _, body) = get(&format!("{}/api/v1/incidents", d.url()), "");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    v["incidents"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|i| {
                    (
                        i["probe"].as_str().unwrap_or_default().to_owned(),
                        !i["resolved_at"].is_null(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Three public probes in two groups and one ungrouped, one probe not public; the website
/// flaps (a resolved incident), the database goes down and stays down (an open incident), a
/// maintenance window is scheduled. Chromium at 360, 390 and 1280 px sees the title, the
/// groups, every public component with its state in words, the incident, 90 bars each, no
/// horizontal overflow, and nothing of the private probe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_page_reads_right_in_a_real_browser_on_phone_and_desktop() {
    require_browser();
    let api = Target::start().await;
    let mut db = Target::start().await;
    let mut web = Target::start().await;
    let mut files = Target::start().await;
    let billing = Target::start().await;
    let probes = [
        probe(
            "api-health",
            &api.url("/health"),
            "    public: true\n    title: Public API\n    group: Core services\n    \
             description: REST endpoints for customers\n",
        ),
        probe(
            "db-primary",
            &db.url("/"),
            "    public: true\n    title: Database\n    group: Core services\n",
        ),
        probe(
            "website",
            &web.url("/"),
            "    public: true\n    title: Website\n    group: Edge\n",
        ),
        probe(
            "downloads",
            &files.url("/"),
            "    public: true\n    title: Downloads\n",
        ),
        probe(
            "billing-internal",
            &billing.url("/"),
            "    title: Billing backend\n    group: Core services\n",
        ),
    ];
    let start = chrono::Utc::now() + chrono::Duration::days(2);
    let end = start + chrono::Duration::hours(2);
    let fmt = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:00Z").to_string();
    let mut d = Daemon::new(
        &format!("probes:\n{}", probes.concat()),
        &format!(
            "instance: acme\nstatus_page:\n  title: Acme status\n  description: Live health of Acme's public services.\n\
             maintenance:\n  - {{ name: cdn-upgrade, start: \"{}\", end: \"{}\", probes: [website] }}\n",
            fmt(start),
            fmt(end)
        ),
    );
    d.start();
    for p in [
        "api-health",
        "db-primary",
        "website",
        "downloads",
        "billing-internal",
    ] {
        d.wait_state(p, "up", Duration::from_secs(15));
    }

    // The website flaps: down, then up; its incident resolves at once (resolve_hold: 0s).
    web.off();
    d.wait_state("website", "down", Duration::from_secs(10));
    web.on().await;
    d.wait_state("website", "up", Duration::from_secs(10));
    // The database and the downloads go down and stay down: two open incidents.
    db.off();
    files.off();
    d.wait_state("db-primary", "down", Duration::from_secs(10));
    d.wait_state("downloads", "down", Duration::from_secs(10));
    wait_for(
        Duration::from_secs(15),
        "open db-primary and downloads incidents and a resolved website one",
        || {
            let inc = incidents(&d);
            inc.contains(&("db-primary".into(), false))
                && inc.contains(&("downloads".into(), false))
                && inc.contains(&("website".into(), true))
        },
    );

    // The page follows within the public view's cache time (10 s).
    let url = format!("{}/status", d.url());
    let mut page = (0, String::new(), String::new());
    wait_for(
        Duration::from_secs(30),
        "/status to show the outage",
        || {
            page = get(&url, "");
            page.2.contains("Major outage")
                && page.2.contains("Database is down")
                && page.2.contains("Downloads is down")
                && page.2.contains("Website is down")
        },
    );
    let (code, head, html) = page;
    assert_eq!(code, 200, "{head}");
    assert_eq!(
        header(&head, "content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(
        header(&head, "cache-control"),
        Some("public, max-age=10"),
        "as the other public documents"
    );
    let etag = header(&head, "etag").expect("an ETag").to_owned();
    assert!(
        header(&head, "content-security-policy").is_some_and(|c| c.contains("default-src 'none'"))
    );
    // Nothing internal: not the private probe, not a target's address, not a probe's name.
    for secret in [
        "billing-internal",
        "Billing backend",
        "127.0.0.1",
        "db-primary",
        "api-health",
        "/health",
        "refused",
    ] {
        assert!(!html.contains(secret), "{secret:?} is on the public page");
    }

    // If-None-Match with the current ETag: 304, no body (while the view is the same one).
    let t0 = Instant::now();
    let (code, head304, body) = get(&url, &format!("If-None-Match: {etag}\r\n"));
    let took = t0.elapsed();
    if header(&head304, "etag") == Some(etag.as_str()) {
        assert_eq!(code, 304, "{head304}");
        assert!(body.is_empty());
    } else {
        // The view was rebuilt between the two reads: a fresh page with its new ETag.
        assert_eq!(code, 200, "{head304}");
    }
    let (code, _, _) = get(&url, "If-None-Match: \"stale\"\r\n");
    assert_eq!(code, 200);
    eprintln!(
        "/status: {} bytes, conditional GET answered in {took:?}",
        html.len()
    );

    // Chromium at 360 px, 390 px (phones) and 1280 px.
    let keep = std::env::var("STATUS_PAGE_SCREENSHOTS").ok();
    let shots = keep
        .clone()
        .unwrap_or_else(|| d.dir.path().join("status").display().to_string());
    let out = Command::new("node")
        .arg(peers().join("render_page.js"))
        .arg(&url)
        .arg(&shots)
        .output()
        .expect("run node tests/peers/render_page.js");
    assert!(
        out.status.success(),
        "render_page.js failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "render_page.js printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    });

    for (size, width) in [("narrow", 360), ("phone", 390), ("desktop", 1280)] {
        let v = &seen[size];
        let text = v["text"].as_str().unwrap();
        let ctx = format!("at {size} ({width} px):\n{text}");
        assert_eq!(v["status"], 200, "{ctx}");
        assert_eq!(v["title"], "Acme status", "{ctx}");
        assert_eq!(v["lang"], "en");
        // The viewport meta is honoured (a phone without it lays out at 980 px)...
        assert_eq!(v["innerWidth"], width, "{ctx}");
        // ... and nothing reaches past the right edge.
        assert_eq!(
            v["overflow"], false,
            "horizontal overflow {ctx}: scrollWidth {} > {width}; {}",
            v["scrollWidth"], v["overflowing"]
        );
        // The page's heading, the banner, the description.
        let headings: Vec<(u64, &str)> = v["headings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| (h["level"].as_u64().unwrap(), h["text"].as_str().unwrap()))
            .collect();
        assert!(headings.contains(&(1, "Acme status")), "{headings:?}");
        assert!(text.contains("Live health of Acme's public services."));
        assert!(text.contains("Partial System Outage"), "banner {ctx}");
        // Group headings, with the group's state in words.
        assert!(headings.contains(&(3, "Core services")), "{headings:?}");
        assert!(headings.contains(&(3, "Edge")), "{headings:?}");
        assert!(text.contains("Core services\nPartial outage"), "{ctx}");
        // Every public component, its state in words; 90 bars each, all inside the screen.
        let comps = v["components"].as_array().unwrap();
        let names: Vec<&str> = comps.iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            ["Public API", "Database", "Website", "Downloads"],
            "{ctx}"
        );
        for c in comps {
            let name = c["name"].as_str().unwrap();
            let want = if name == "Database" || name == "Downloads" {
                "Major outage"
            } else {
                "Operational"
            };
            assert_eq!(c["state"], want, "{name} {ctx}");
            assert_eq!(c["bars"], 90, "{name}: one bar per day {ctx}");
            let w = c["minBarWidth"].as_f64().unwrap();
            assert!(w >= 1.5, "{name}: bars {w} px wide {ctx}");
            assert!(
                c["barsRight"].as_f64().unwrap() <= width as f64,
                "{name} {ctx}"
            );
            assert_eq!(c["sparklines"], 1, "{name}");
            let today = c["lastBarTitle"].as_str().unwrap();
            assert!(today.ends_with("% uptime"), "{name}: today's bar: {today}");
        }
        assert_eq!(v["bars"], 4 * 90);
        let sections = |a: &str, b: &str| {
            // `b` somewhere after the first `a`.
            let after = text.find(a).and_then(|i| text[i + a.len()..].find(b));
            assert!(after.is_some(), "{a:?} before {b:?} {ctx}");
        };
        // Open incidents in one line, the components, the incidents' detail, maintenance,
        // then the past.
        sections("2 open incidents: ", "Components");
        sections("Components", "Public API");
        sections("Downloads\n", "Current incidents");
        sections("Current incidents", "Database is down");
        sections("Database is down", "Investigating");
        sections("Investigating", "Database is not responding as expected.");
        sections("Database is not responding as expected.", "Maintenance");
        sections("Maintenance", "cdn-upgrade");
        sections("cdn-upgrade", "Scheduled");
        sections("Scheduled", "Past incidents");
        sections("Past incidents", "Website is down");
        sections("Website is down", "Resolved");
        assert!(text.contains("Uptime over the past 90 days"), "{ctx}");
        assert!(text.contains(" UTC"), "times in UTC {ctx}");
        assert!(text.contains("Updated "), "{ctx}");
        for secret in ["billing-internal", "Billing backend", "127.0.0.1"] {
            assert!(!text.contains(secret), "{secret:?} seen {ctx}");
        }
        // The components start above the fold, with two incidents open.
        let (top, fold) = (
            v["componentsTop"].as_f64().unwrap(),
            v["innerHeight"].as_f64().unwrap(),
        );
        assert!(
            top < fold,
            "components start at {top} px, the fold at {fold} {ctx}"
        );
        // axe-core: no violation of any kind.
        assert_eq!(v["axe"], serde_json::json!([]), "axe-core violations {ctx}");
        // The keyboard reaches a day's detail, and its popover shows it.
        let k = &v["keyboard"];
        assert!(
            k["tabs"].as_u64().is_some(),
            "Tab never reached a day: {k} {ctx}"
        );
        assert!(
            k["label"]
                .as_str()
                .is_some_and(|l| l.ends_with("% uptime") || l.ends_with("no data")),
            "{k}"
        );
        assert_eq!(k["popover"], true, "the focused day shows its text: {k}");
        // Feeds: autodiscovery and visible links.
        let feeds: Vec<&str> = v["feeds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect();
        let base = d.url();
        assert_eq!(
            feeds,
            [
                format!("application/atom+xml {base}/feed.atom"),
                format!("application/rss+xml {base}/feed.rss")
            ],
            "{ctx}"
        );
        assert!(
            text.contains("Atom feed") && text.contains("RSS feed"),
            "{ctx}"
        );
        // Light by default: a light background.
        assert!(luminance(&v["background"]) > 0.8, "{}", v["background"]);
        let png = PathBuf::from(format!("{shots}-{size}.png"));
        let len = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
        assert!(len > 10_000, "screenshot {} is {len} bytes", png.display());
        eprintln!(
            "{size}: loaded in {} ms, screenshot {}",
            v["loadMs"],
            png.display()
        );
    }
    // prefers-color-scheme: dark: a dark background, light text, axe-clean.
    let dark = &seen["dark"];
    assert!(
        luminance(&dark["background"]) < 0.1,
        "dark background: {}",
        dark["background"]
    );
    assert!(
        luminance(&dark["color"]) > 0.7,
        "light text: {}",
        dark["color"]
    );
    assert_eq!(
        dark["axe"],
        serde_json::json!([]),
        "axe-core violations in dark mode"
    );
    let st = d.stop();
    assert!(st.success(), "SIGTERM exit: {st}\n{}", d.log());
}

/// The relative luminance (0 black to 1 white) of a computed `rgb(r, g, b)` colour.
fn luminance(css: &serde_json::Value) -> f64 {
    let s = css.as_str().unwrap_or_default();
    let n: Vec<f64> = s
        .trim_start_matches("rgba(")
        .trim_start_matches("rgb(")
        .trim_end_matches(')')
        .split(',')
        .take(3)
        .map(|c| {
            c.trim()
                .parse::<f64>()
                .unwrap_or_else(|_| panic!("colour {s:?}"))
                / 255.0
        })
        .map(|c| {
            if c <= 0.04045 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        })
        .collect();
    assert_eq!(n.len(), 3, "colour {s:?}");
    0.2126 * n[0] + 0.7152 * n[1] + 0.0722 * n[2]
}
