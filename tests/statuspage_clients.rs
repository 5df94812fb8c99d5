//! The Statuspage-compatible JSON (`/api/v2/*.json`) read by real third-party Statuspage
//! clients, as they read a hosted page, against the real binary:
//!
//! - PyPI `statuspage-prometheus-exporter` (its `RUN_MODE=once` pass, `services.json`
//!   pointing at probed's `/api/v2/summary.json`, metrics written to a textfile);
//! - npm `statuspage.io` (pinned 3.3.8: 3.4.6, the latest, ships no `dist/`), built for a page
//!   id and pointed at probed with its `setApiUrl`, from `tests/peers/statuspage_io_client.js`.
//!
//! Both are installed by `deploy/test.sh`; without them the tests fail saying so, never skip.
//! The field-by-field check against Statuspage's documentation is `tests/statuspage_api.rs`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::{Daemon, Target, free_port, http_get_blocking, wait_for};

const PROXY_VARS: &[&str] = &[
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "all_proxy",
    "ALL_PROXY",
];

fn peers() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers")
}

fn public_probe(name: &str, title: &str, url: &str) -> String {
    format!(
        "  - name: {name}\n    kind: http\n    every: 200ms\n    timeout: 150ms\n    \
         request: {{ url: \"{url}\" }}\n    alert: {{ after: 2, recover_after: 1, resolve_hold: 0s }}\n    \
         public: true\n    title: \"{title}\"\n"
    )
}

/// probed with one public probe up ("Website") and one down ("Public API", nothing listening
/// on its port), waited on until summary.json carries the open incident; returns the summary.
fn daemon_with_open_incident(web: &Target) -> (Daemon, Value) {
    let dead = format!("http://127.0.0.1:{}/", free_port());
    let mut d = Daemon::new(
        &format!(
            "probes:\n{}{}",
            public_probe("api", "Public API", &dead),
            public_probe("web", "Website", &web.url("/"))
        ),
        "status_page: { title: Acme Status, url: \"https://status.example.com\" }\n",
    );
    d.start();
    d.wait_state("web", "up", Duration::from_secs(10));
    d.wait_state("api", "down", Duration::from_secs(10));
    let mut summary = Value::Null;
    wait_for(
        Duration::from_secs(20),
        "the incident in summary.json",
        || {
            let (code, _, body) = support::split_response(&http_get_blocking(&format!(
                "{}/api/v2/summary.json",
                d.url()
            )));
            if code != 200 {
                return false;
            }
            let (a, b) = (body.find('{').unwrap(), body.rfind('}').unwrap());
            summary = serde_json::from_str(&body[a..=b]).unwrap();
            summary["incidents"]
                .as_array()
                .is_some_and(|i| !i.is_empty())
        },
    );
    (d, summary)
}

/// One sample of the textfile: the value of `metric` whose labels contain every `labels`
/// pair (`key="value"`), with the whole label set.
fn sample<'a>(prom: &'a str, metric: &str, labels: &[&str]) -> Option<(&'a str, f64)> {
    prom.lines().find_map(|l| {
        let rest = l.strip_prefix(metric)?.strip_prefix('{')?;
        let (set, value) = rest.rsplit_once("} ")?;
        labels
            .iter()
            .all(|p| set.contains(p))
            .then(|| (set, value.trim().parse().unwrap()))
    })
}

/// PyPI `statuspage-prometheus-exporter`, one pass (`RUN_MODE=once`) as from cron: it reads
/// probed's summary.json without error (probe_check 1), sees the page not operational, the
/// down component 0 and the up one 1, and the open incident with its id, name, impact and
/// affected component.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuspage_prometheus_exporter_reads_probed() {
    let import = Command::new("python3")
        .args(["-c", "import statuspage_prometheus_exporter.gauges"])
        .output();
    assert!(
        import.is_ok_and(|o| o.status.success()),
        "python3 with statuspage-prometheus-exporter is required: run deploy/test.sh, or \
         `python3 -m pip install statuspage-prometheus-exporter`"
    );
    let web = Target::start().await;
    let (d, summary) = daemon_with_open_incident(&web);
    let inc = &summary["incidents"][0];

    let work = tempfile::tempdir().unwrap();
    let services = work.path().join("services.json");
    std::fs::write(
        &services,
        serde_json::json!({
            "acme": { "url": format!("{}/api/v2/summary.json", d.url()), "name": "Acme" }
        })
        .to_string(),
    )
    .unwrap();
    let textfile = work.path().join("metrics/statuspage.prom");
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "statuspage_prometheus_exporter.status_monitoring"])
        .current_dir(work.path())
        .env("RUN_MODE", "once")
        .env("SERVICES_JSON_PATH", &services)
        .env("METRICS_TEXTFILE_PATH", &textfile)
        .env_remove("SLACK_WEBHOOK_URL");
    PROXY_VARS.iter().for_each(|v| {
        cmd.env_remove(v);
    });
    let out = cmd.output().expect("run statuspage-prometheus-exporter");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exporter failed: {log}");
    assert!(
        !log.contains(" - ERROR - ") && !log.contains(" - WARNING - "),
        "the exporter complained: {log}"
    );
    let prom = std::fs::read_to_string(&textfile).unwrap();
    let ctx = || format!("{prom}\n--- exporter log:\n{log}");

    let svc = "service_name=\"Acme\"";
    assert_eq!(
        sample(&prom, "statuspage_probe_check", &[svc]).map(|s| s.1),
        Some(1.0),
        "{}",
        ctx()
    );
    assert_eq!(
        sample(&prom, "statuspage_service_status", &[svc]).map(|s| s.1),
        Some(0.0),
        "{}",
        ctx()
    );
    for (component, want) in [("Public API", 0.0), ("Website", 1.0)] {
        let label = format!("component_name=\"{component}\"");
        assert_eq!(
            sample(&prom, "statuspage_component_status", &[svc, &label]).map(|s| s.1),
            Some(want),
            "{component}: {}",
            ctx()
        );
    }
    let id = format!("incident_id=\"{}\"", inc["id"].as_str().unwrap());
    let (labels, v) = sample(&prom, "statuspage_incident_info", &[svc, &id])
        .unwrap_or_else(|| panic!("no incident {id}: {}", ctx()));
    assert_eq!(v, 1.0, "{}", ctx());
    for want in [
        format!("incident_name=\"{}\"", inc["name"].as_str().unwrap()),
        format!("impact=\"{}\"", inc["impact"].as_str().unwrap()),
        format!("shortlink=\"{}\"", inc["shortlink"].as_str().unwrap()),
        "affected_components=\"Public API\"".to_owned(),
    ] {
        assert!(labels.contains(&want), "{want} in {labels}");
    }
}

/// npm `statuspage.io`: summary, status, components, incidents (all and unresolved) and
/// scheduled maintenances fetched and parsed without error; the client sees the down
/// component `major_outage`, the up one `operational`, the indicator `major` and the open
/// incident among the unresolved ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuspage_io_npm_client_reads_probed() {
    assert!(
        peers()
            .join("node_modules/statuspage.io/package.json")
            .exists(),
        "statuspage.io is missing from tests/peers/node_modules: run deploy/test.sh"
    );
    let web = Target::start().await;
    let (d, summary) = daemon_with_open_incident(&web);
    let inc_id = summary["incidents"][0]["id"].clone();

    let mut cmd = Command::new("node");
    cmd.arg(peers().join("statuspage_io_client.js"))
        .arg(d.url())
        .current_dir(peers());
    PROXY_VARS.iter().for_each(|v| {
        cmd.env_remove(v);
    });
    let out = cmd
        .output()
        .expect("run node tests/peers/statuspage_io_client.js (is nodejs installed?)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "statuspage.io client failed: {stderr}"
    );
    let got: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));

    for doc in ["summary", "status"] {
        assert_eq!(got[doc]["status"]["indicator"], "major", "{doc}: {got}");
        assert_eq!(got[doc]["page"]["name"], "Acme Status", "{doc}: {got}");
    }
    for doc in ["summary", "components"] {
        let comps = got[doc]["components"].as_array().unwrap();
        let status = |n: &str| {
            comps
                .iter()
                .find(|c| c["name"] == n)
                .unwrap_or_else(|| panic!("{doc}: no component {n}: {got}"))["status"]
                .clone()
        };
        assert_eq!(status("Public API"), "major_outage", "{doc}");
        assert_eq!(status("Website"), "operational", "{doc}");
    }
    for doc in ["summary", "incidents", "unresolved"] {
        let incs = got[doc]["incidents"].as_array().unwrap();
        let inc = incs
            .iter()
            .find(|i| i["id"] == inc_id)
            .unwrap_or_else(|| panic!("{doc}: no incident {inc_id}: {got}"));
        assert_eq!(inc["name"], "Public API is down", "{doc}");
        assert_eq!(inc["resolved_at"], Value::Null, "{doc}");
        assert_ne!(inc["status"], "resolved", "{doc}");
    }
    assert!(
        got["maintenances"]["scheduled_maintenances"].is_array(),
        "{got}"
    );
}
