//! The public side against the real binary: the Statuspage-compatible JSON checked field by
//! field against Statuspage's documented public API v2, and a config full of secrets whose
//! public documents carry none of them.
//! The HTML status page `/status`, in a real browser, is `tests/status_page_browser.rs`.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::{Daemon, Target, http_get_blocking, wait_for};

/// GET `url`: status code, head (lowercased) and body.
fn get(url: &str) -> (u16, String, String) {
    support::split_response(&http_get_blocking(url))
}

fn json(d: &Daemon, path: &str) -> Value {
    let (code, head, body) = get(&format!("{}{path}", d.url()));
    assert_eq!(code, 200, "{path}: {head}\n{body}");
    assert!(head.contains("content-type: application/json"), "{head}");
    assert!(head.contains("cache-control: public, max-age="), "{head}");
    assert!(head.contains("access-control-allow-origin: *"), "{head}");
    // The body may be chunked: take the JSON object.
    let (a, b) = (body.find('{').unwrap(), body.rfind('}').unwrap());
    serde_json::from_str(&body[a..=b]).unwrap_or_else(|e| panic!("{path}: {e}\n{body}"))
}

fn is_time(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|t| chrono::DateTime::parse_from_rfc3339(t).is_ok())
}

/// Every field Statuspage documents for each object, with its type.
fn check_page(p: &Value) {
    for k in ["id", "name", "url", "time_zone"] {
        assert!(p[k].is_string(), "page.{k}: {p}");
    }
    assert!(is_time(&p["updated_at"]), "{p}");
}

fn check_component(c: &Value) {
    for k in ["id", "name", "page_id"] {
        assert!(c[k].is_string(), "component.{k}: {c}");
    }
    assert!(
        [
            "operational",
            "degraded_performance",
            "partial_outage",
            "major_outage",
            "under_maintenance"
        ]
        .contains(&c["status"].as_str().unwrap_or("")),
        "{c}"
    );
    assert!(
        is_time(&c["created_at"]) && is_time(&c["updated_at"]),
        "{c}"
    );
    assert!(c["position"].is_u64(), "{c}");
    for k in ["showcase", "group", "only_show_if_degraded"] {
        assert!(c[k].is_boolean(), "component.{k}: {c}");
    }
    for k in ["description", "start_date", "group_id"] {
        assert!(c[k].is_null() || c[k].is_string(), "component.{k}: {c}");
    }
    if c["group"] == true {
        assert!(c["components"].is_array(), "a group lists its members: {c}");
    }
}

const INCIDENT: &[&str] = &[
    "investigating",
    "identified",
    "monitoring",
    "resolved",
    "postmortem",
];
const MAINTENANCE: &[&str] = &["scheduled", "in_progress", "verifying", "completed"];

fn check_incident(i: &Value) {
    check_event(i, INCIDENT)
}

fn check_event(i: &Value, statuses: &[&str]) {
    for k in ["id", "name", "page_id", "shortlink"] {
        assert!(i[k].is_string(), "incident.{k}: {i}");
    }
    assert!(
        statuses.contains(&i["status"].as_str().unwrap_or("")),
        "{i}"
    );
    assert!(
        ["none", "minor", "major", "critical", "maintenance"]
            .contains(&i["impact"].as_str().unwrap_or("")),
        "{i}"
    );
    for k in ["created_at", "updated_at", "started_at"] {
        assert!(is_time(&i[k]), "incident.{k}: {i}");
    }
    for k in ["monitoring_at", "resolved_at"] {
        assert!(i[k].is_null() || is_time(&i[k]), "incident.{k}: {i}");
    }
    let updates = i["incident_updates"].as_array().expect("incident_updates");
    assert!(!updates.is_empty());
    for u in updates {
        for k in ["id", "status", "body", "incident_id"] {
            assert!(u[k].is_string(), "update.{k}: {u}");
        }
        for k in ["created_at", "updated_at", "display_at"] {
            assert!(is_time(&u[k]), "update.{k}: {u}");
        }
        assert!(u["deliver_notifications"].is_boolean(), "{u}");
        assert!(
            u["affected_components"].is_null() || u["affected_components"].is_array(),
            "{u}"
        );
    }
    for c in i["components"].as_array().expect("components") {
        check_component(c);
    }
}

fn check_status(s: &Value) {
    assert!(
        ["none", "minor", "major", "critical", "maintenance"]
            .contains(&s["indicator"].as_str().unwrap_or("")),
        "{s}"
    );
    assert!(s["description"].is_string(), "{s}");
}

fn public_probe(name: &str, title: &str, group: &str, url: &str) -> String {
    format!(
        "  - name: {name}\n    kind: http\n    every: 200ms\n    timeout: 150ms\n    \
         request: {{ url: \"{url}\" }}\n    alert: {{ after: 2, recover_after: 1, resolve_hold: 0s }}\n    \
         public: true\n    title: \"{title}\"\n    group: {group}\n"
    )
}

/// The JSON documents as Statuspage documents them: every field present with its type, the
/// enums in range; a down component is `major_outage`, its group `partial_outage` (one of
/// two members down), the overall indicator `major`, the incident unresolved with its first
/// update naming the affected component; after recovery, back to all operational with the
/// incident resolved in `incidents.json`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuspage_json_has_every_documented_field() {
    let mut api = Target::start().await;
    let web = Target::start().await;
    // A maintenance window two days ahead (shown up to 14 days ahead).
    let start = chrono::Utc::now() + chrono::Duration::days(2);
    let end = start + chrono::Duration::hours(2);
    let mut d = Daemon::new(
        &format!(
            "probes:\n{}{}",
            public_probe("api", "Public API", "Core", &api.url("/")),
            public_probe("web", "Website", "Core", &web.url("/"))
        ),
        &format!(
            "status_page: {{ title: Acme Status, url: \"https://status.example.com\" }}\n\
             maintenance:\n  - {{ name: db upgrade, probes: [web], start: \"{}\", end: \"{}\" }}\n",
            start.format("%Y-%m-%dT%H:%M:%SZ"),
            end.format("%Y-%m-%dT%H:%M:%SZ")
        ),
    );
    d.start();
    d.wait_state("api", "up", Duration::from_secs(10));
    d.wait_state("web", "up", Duration::from_secs(10));
    api.off();
    d.wait_state("api", "down", Duration::from_secs(10));
    let mut summary = Value::Null;
    wait_for(
        Duration::from_secs(20),
        "the incident in summary.json",
        || {
            summary = json(&d, "/api/v2/summary.json");
            summary["incidents"]
                .as_array()
                .is_some_and(|i| !i.is_empty())
        },
    );
    check_page(&summary["page"]);
    assert_eq!(summary["page"]["name"], "Acme Status");
    assert_eq!(summary["page"]["url"], "https://status.example.com");
    check_status(&summary["status"]);
    assert_eq!(summary["status"]["indicator"], "major");
    let comps = summary["components"].as_array().unwrap();
    comps.iter().for_each(check_component);
    let by_name = |n: &str| comps.iter().find(|c| c["name"] == n).cloned().unwrap();
    let (core, api_c, web_c) = (by_name("Core"), by_name("Public API"), by_name("Website"));
    assert_eq!(core["group"], true);
    assert_eq!(core["status"], "partial_outage");
    assert_eq!(
        core["components"],
        serde_json::json!([api_c["id"], web_c["id"]])
    );
    assert_eq!(api_c["status"], "major_outage");
    assert_eq!(api_c["group_id"], core["id"]);
    assert_eq!(web_c["status"], "operational");
    let inc = &summary["incidents"][0];
    check_incident(inc);
    assert_eq!(inc["name"], "Public API is down");
    assert_eq!(inc["status"], "investigating");
    assert_eq!(inc["resolved_at"], Value::Null);
    let first = inc["incident_updates"].as_array().unwrap().last().unwrap();
    assert_eq!(first["affected_components"][0]["code"], api_c["id"]);
    assert_eq!(
        first["affected_components"][0]["new_status"],
        "major_outage"
    );
    // The maintenance window covering a public probe, scheduled.
    let m = &summary["scheduled_maintenances"][0];
    check_event(m, MAINTENANCE);
    assert_eq!(m["status"], "scheduled");
    assert_eq!(m["impact"], "maintenance");
    assert!(is_time(&m["scheduled_for"]) && is_time(&m["scheduled_until"]));

    // The other documents agree.
    let st = json(&d, "/api/v2/status.json");
    check_page(&st["page"]);
    assert_eq!(st["status"], summary["status"]);
    let cj = json(&d, "/api/v2/components.json");
    assert_eq!(cj["components"], summary["components"]);
    let un = json(&d, "/api/v2/incidents/unresolved.json");
    assert_eq!(un["incidents"].as_array().unwrap().len(), 1);
    let up = json(&d, "/api/v2/scheduled-maintenances/upcoming.json");
    assert_eq!(up["scheduled_maintenances"].as_array().unwrap().len(), 1);
    let active = json(&d, "/api/v2/scheduled-maintenances/active.json");
    assert!(
        active["scheduled_maintenances"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // Recovery: all operational, the incident resolved (the view is rebuilt every 10 s).
    api.on().await;
    d.wait_state("api", "up", Duration::from_secs(10));
    let mut all = Value::Null;
    wait_for(Duration::from_secs(30), "the incident resolved", || {
        all = json(&d, "/api/v2/incidents.json");
        all["incidents"][0]["status"] == "resolved"
    });
    check_incident(&all["incidents"][0]);
    assert!(is_time(&all["incidents"][0]["resolved_at"]));
    let statuses: Vec<&str> = all["incidents"][0]["incident_updates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["status"].as_str().unwrap())
        .collect();
    // Newest first; no monitoring stage: resolve_hold 0s resolves the moment it recovers.
    assert_eq!(statuses, ["resolved", "investigating"], "newest first");
    assert_eq!(all["incidents"][0]["monitoring_at"], Value::Null);
    let summary = json(&d, "/api/v2/summary.json");
    assert_eq!(summary["status"]["indicator"], "none");
    assert_eq!(summary["status"]["description"], "All Systems Operational");
    assert!(summary["incidents"].as_array().unwrap().is_empty());
    assert!(d.stop().success());
}

/// A config full of secrets (URL userinfo and query tokens, header values, DSN and Redis
/// passwords, notifier keys, the admin token) and internal probes: every public document
/// carries none of them, nor any internal probe's name, host, address or error text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn public_documents_leak_nothing_internal() {
    let mut shown = Target::start().await;
    let hidden = Target::start().await;
    let secrets = [
        "u5er-s3cret",
        "qu3ry-t0ken",
        "B34rer-t0ken",
        "pg-pa55word",
        "r3dis-pa55",
        "R0UT1NGKEYsecret00000000000000AB",
        "adm1n-t0ken",
        "hook-s1gning",
    ];
    let probes = format!(
        "probes:\n\
         {public}\
         \x20 - name: internal-billing\n    kind: http\n    every: 200ms\n    timeout: 150ms\n    \
         request: {{ url: \"{hidden_url}\", headers: {{ authorization: \"Bearer B34rer-t0ken\" }} }}\n    \
         alert: {{ after: 1 }}\n    group: Core\n\
         \x20 - name: internal-db\n    kind: db_write\n    every: 300ms\n    timeout: 250ms\n    \
         dsn: \"postgres://probe:pg-pa55word@127.0.0.1:1/app\"\n    alert: {{ after: 1 }}\n\
         \x20 - name: internal-cache\n    kind: redis\n    every: 300ms\n    timeout: 250ms\n    \
         url: \"redis://:r3dis-pa55@127.0.0.1:1\"\n    alert: {{ after: 1 }}\n",
        public = public_probe(
            "shown",
            "Checkout",
            "Core",
            &shown
                .url("/pay?token=qu3ry-t0ken")
                .replace("http://", "http://user:u5er-s3cret@")
        ),
        hidden_url = hidden.url("/internal/ledger"),
    );
    let mut d = Daemon::new(
        &probes,
        "admin_token: adm1n-t0ken\n\
         status_page: { title: Acme Status, url: \"https://status.example.com\" }\n\
         notifiers:\n  pager: { kind: pagerduty, routing_key: R0UT1NGKEYsecret00000000000000AB, base_url: \"http://127.0.0.1:1\" }\n  \
         hook: { kind: webhook, url: \"http://127.0.0.1:1/hook\", secret: hook-s1gning }\n\
         routes:\n  - notify: [pager, hook]\n",
    );
    d.start();
    d.wait_state("shown", "up", Duration::from_secs(10));
    // Incidents on both sides: the public probe goes down; the internal ones are down.
    shown.off();
    d.wait_state("shown", "down", Duration::from_secs(10));
    d.wait_state("internal-db", "down", Duration::from_secs(10));
    wait_for(Duration::from_secs(20), "the public incident", || {
        json(&d, "/api/v2/incidents/unresolved.json")["incidents"]
            .as_array()
            .is_some_and(|i| !i.is_empty())
    });
    let forbidden: Vec<String> = secrets
        .iter()
        .map(|s| s.to_string())
        .chain(
            [
                "internal-billing",
                "internal-db",
                "internal-cache",
                "/internal/ledger",
                "/pay",
                "127.0.0.1",
                "connection refused",
                "postgres",
                "redis",
                "ledger",
            ]
            .map(String::from),
        )
        .chain([
            shown.addr.port().to_string(),
            hidden.addr.port().to_string(),
        ])
        .collect();
    let mut checked = 0;
    for (path, names_it) in PUBLIC_PATHS {
        let (code, head, body) = get(&format!("{}{path}", d.url()));
        assert_eq!(code, 200, "{path}: {head}\n{body}");
        for f in &forbidden {
            assert!(
                !body.contains(f.as_str()) && !head.contains(&f.to_ascii_lowercase()),
                "{path} shows {f:?}:\n{body}"
            );
        }
        if *names_it {
            assert!(body.contains("Checkout"), "{path} shows the public probe");
        }
        checked += 1;
    }
    assert_eq!(checked, PUBLIC_PATHS.len());
    // An internal probe has no badge: the same 404 as a probe that does not exist.
    let (code, _, internal) = get(&format!("{}/badge/internal-billing/status.svg", d.url()));
    let (_, _, unknown) = get(&format!("{}/badge/no-such-probe/status.svg", d.url()));
    assert_eq!((code, internal), (404, unknown));
    assert!(d.stop().success());
}

/// Every public document, and whether it names the public probe.
const PUBLIC_PATHS: &[(&str, bool)] = &[
    ("/api/v2/summary.json", true),
    ("/api/v2/status.json", false),
    ("/api/v2/components.json", true),
    ("/api/v2/incidents.json", true),
    ("/api/v2/incidents/unresolved.json", true),
    ("/api/v2/scheduled-maintenances.json", false),
    ("/status", true),
    ("/feed.atom", true),
    ("/feed.rss", true),
    ("/badge/shown/status.svg", true),
    ("/badge/shown/uptime-24h.svg", false),
    ("/badge/shown/latency.svg", false),
];

/// An incident says what it did: a degraded one is impact `minor` and leaves its component
/// `degraded_performance`; a down one is `major_outage` with the probe's impact. A resolve
/// hold shows as `monitoring_at` (the probe was seen back up) before `resolved_at` (the hold
/// ended). `incidents.json` is newest first. A group's `created_at` is its earliest
/// member's, the same on every rebuild of the view.
#[test]
fn incidents_follow_their_state_and_times_hold_still() {
    let rt = support::runtime();
    let lab = support::lab(&rt);
    let mut api = rt.block_on(Target::start());
    let mut d = Daemon::new(
        &format!(
            "probes:\n  - name: search\n    kind: http\n    every: 200ms\n    timeout: 180ms\n    \
             request: {{ url: \"{lab}\" }}\n    alert: {{ after: 2, resolve_hold: 0s }}\n    \
             slo: {{ apdex: {{ target: 50ms, window: 5m }}, time_scale: 150, min_runs: 5 }}\n    \
             public: true\n    title: Search\n    group: Core\n\
             \x20 - name: api\n    kind: http\n    every: 200ms\n    timeout: 150ms\n    \
             request: {{ url: \"{api}\" }}\n    alert: {{ after: 2, recover_after: 1, resolve_hold: 1s }}\n    \
             public: true\n    title: Public API\n    group: Core\n",
            lab = lab.url("/"),
            api = api.url("/"),
        ),
        "status_page: { title: Acme Status, url: \"https://status.example.com\" }\n",
    );
    d.start();
    d.wait_state("search", "up", Duration::from_secs(10));
    d.wait_state("api", "up", Duration::from_secs(10));
    let group_created = |d: &Daemon| {
        let cj = json(d, "/api/v2/components.json");
        let comps = cj["components"].as_array().unwrap().clone();
        let core = comps.iter().find(|c| c["name"] == "Core").unwrap().clone();
        let members: Vec<String> = comps
            .iter()
            .filter(|c| c["group_id"] == core["id"])
            .map(|c| c["created_at"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(members.len(), 2, "{cj}");
        (
            core["created_at"].as_str().unwrap().to_owned(),
            members.into_iter().min().unwrap(),
            cj["page"]["updated_at"].clone(),
        )
    };
    let (created0, earliest0, _) = group_created(&d);
    assert_eq!(created0, earliest0, "the earliest member's");

    // Degraded: Apdex falls once the lab answers slower than the 50 ms target.
    wait_for(Duration::from_secs(20), "a covered Apdex window", || {
        lab.stats().requests >= 12
    });
    lab.set_latency(Duration::from_millis(120));
    let mut un = Value::Null;
    wait_for(Duration::from_secs(30), "the degraded incident", || {
        un = json(&d, "/api/v2/incidents/unresolved.json");
        un["incidents"].as_array().is_some_and(|i| !i.is_empty())
    });
    let inc = &un["incidents"][0];
    check_incident(inc);
    assert_eq!(inc["name"], "Search is degraded", "{inc}");
    assert_eq!(inc["impact"], "minor", "{inc}");
    let first = inc["incident_updates"].as_array().unwrap().last().unwrap();
    assert_eq!(
        first["affected_components"][0]["new_status"], "degraded_performance",
        "{inc}"
    );
    assert_eq!(inc["components"][0]["status"], "degraded_performance");
    assert_eq!(
        first["body"],
        "Search is slower or less reliable than usual. We are investigating."
    );

    // Down, later: major_outage, and first in incidents.json.
    api.off();
    d.wait_state("api", "down", Duration::from_secs(10));
    let mut all = Value::Null;
    wait_for(Duration::from_secs(30), "both incidents", || {
        all = json(&d, "/api/v2/incidents.json");
        all["incidents"].as_array().is_some_and(|i| i.len() == 2)
    });
    let list = all["incidents"].as_array().unwrap();
    assert_eq!(list[0]["name"], "Public API is down", "newest first: {all}");
    assert_eq!(list[1]["name"], "Search is degraded", "{all}");
    let created: Vec<&str> = list
        .iter()
        .map(|i| i["created_at"].as_str().unwrap())
        .collect();
    assert!(created[0] >= created[1], "{created:?}");
    let down = &list[0];
    assert!(
        ["major", "critical"].contains(&down["impact"].as_str().unwrap()),
        "{down}"
    );
    let first = down["incident_updates"].as_array().unwrap().last().unwrap();
    assert_eq!(
        first["affected_components"][0]["new_status"], "major_outage",
        "{down}"
    );
    assert_eq!(
        first["body"], "Public API is not responding as expected. We are investigating.",
        "a refused connection: no code to tell"
    );

    // Back up: monitoring from the moment it was seen up, resolved when the 1 s hold ended.
    api.on().then_block(&rt);
    let mut resolved = Value::Null;
    wait_for(
        Duration::from_secs(30),
        "the down incident resolved",
        || {
            let all = json(&d, "/api/v2/incidents.json");
            resolved = all["incidents"]
                .as_array()
                .unwrap()
                .iter()
                .find(|i| i["name"] == "Public API is down")
                .cloned()
                .unwrap_or_default();
            resolved["status"] == "resolved"
        },
    );
    check_incident(&resolved);
    let t = |k: &str| {
        chrono::DateTime::parse_from_rfc3339(
            resolved[k]
                .as_str()
                .unwrap_or_else(|| panic!("{k}: {resolved}")),
        )
        .unwrap()
    };
    let (monitoring, resolved_at) = (t("monitoring_at"), t("resolved_at"));
    let hold = resolved_at - monitoring;
    assert!(
        hold >= chrono::Duration::milliseconds(900) && hold < chrono::Duration::seconds(10),
        "monitoring_at {monitoring} then resolved_at {resolved_at}: the 1 s hold"
    );
    let statuses: Vec<&str> = resolved["incident_updates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["resolved", "monitoring", "investigating"]);
    let last = &resolved["incident_updates"][0];
    assert_eq!(last["affected_components"][0]["new_status"], "operational");

    // Rebuilt since (the page changed), the group's created_at has not moved.
    let (created1, earliest1, updated1) = group_created(&d);
    assert_ne!(updated1, Value::Null);
    assert_eq!(
        (created1.as_str(), earliest1.as_str()),
        (created0.as_str(), earliest0.as_str())
    );
    assert!(d.stop().success());
}

/// `fut.then_block(&rt)`: runs a future to completion on `rt` from a plain test thread.
trait ThenBlock: std::future::Future + Sized {
    fn then_block(self, rt: &tokio::runtime::Runtime) -> Self::Output {
        rt.block_on(self)
    }
}
impl<F: std::future::Future> ThenBlock for F {}
