//! The Prometheus side of probed, checked with Debian's Prometheus and promtool (issue 15):
//! the shipped alerting rules (`deploy/prometheus/rules.yml`) pass `promtool check rules`
//! and their unit tests (`rules.test.yml`), load into a real Prometheus scraping the real
//! `probed` and name only families it exports; every query of the Grafana dashboard
//! (`deploy/grafana/probed.json`) returns series there; and `/metrics` passes
//! `promtool check metrics` with zero problems.
//!
//! The daemon runs three http probes: one up (with objectives, so the burn rate and Apdex
//! series exist), one down (connection refused), one over TLS whose certificate expires in
//! 10 days.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use support::prometheus::{Prometheus, promtool, scrape_config};
use support::{Daemon, Target, poll_for};
use tokio::io::AsyncWriteExt;

/// A file of the repository.
fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn output_text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The job name Prometheus scrapes probed as; the rules' `ProbedDown` expects `probed`.
const JOB: &str = "probed";

/// How long series may take to appear: a few probe runs and scrapes, with room for a
/// machine busy with other builds.
const SERIES_WITHIN: Duration = Duration::from_secs(30);

/// An HTTPS server on 127.0.0.1:0 answering `200 ok`, its self-signed certificate valid
/// until `valid_for` from now; served by `rt`.
fn tls_target(rt: &tokio::runtime::Runtime, valid_for: Duration) -> SocketAddr {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let epoch = rcgen::date_time_ymd(1970, 1, 1);
    let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    params.not_before = epoch + (now - Duration::from_secs(86400));
    params.not_after = epoch + (now + valid_for);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut s) = acceptor.accept(s).await else {
                    return;
                };
                if !support::read_head(&mut s).await {
                    return;
                }
                let _ = s
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    )
                    .await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

/// The real `probed` with three http probes (`up` with objectives, `down` to a closed
/// port, `tls` to an HTTPS target whose certificate expires in 10 days), and what they
/// probe, kept alive as long as it.
struct Lab {
    daemon: Daemon,
    /// The targets as `instance` shows them: `up`'s, `down`'s and `tls`'s.
    urls: [String; 3],
    _target: Target,
    _rt: tokio::runtime::Runtime,
}

const UP: &str = "up";
const DOWN: &str = "down";
const TLS: &str = "tls";

fn lab() -> Lab {
    let rt = support::runtime();
    let target = rt.block_on(Target::start());
    let tls = tls_target(&rt, Duration::from_secs(10 * 86400));
    // A port nothing listens on: connection refused.
    let closed = support::free_port();
    let probes = format!(
        "probes:\n\
         - name: {UP}\n  kind: http\n  every: 500ms\n  timeout: 400ms\n  \
           request: {{ url: \"{up}\" }}\n  \
           slo: {{ objective: 99%, apdex: {{ target: 1s }} }}\n\
         - name: {DOWN}\n  kind: http\n  every: 500ms\n  timeout: 400ms\n  \
           request: {{ url: \"http://127.0.0.1:{closed}/\" }}\n\
         - name: {TLS}\n  kind: http\n  every: 500ms\n  timeout: 400ms\n  \
           request: {{ url: \"https://{tls}/\" }}\n  tls: {{ insecure_skip_verify: true }}\n",
        up = target.url("/"),
    );
    let mut daemon = Daemon::new(&probes, "");
    daemon.start();
    Lab {
        daemon,
        urls: [
            target.url("/"),
            format!("http://127.0.0.1:{closed}/"),
            format!("https://{tls}/"),
        ],
        _target: target,
        _rt: rt,
    }
}

impl Lab {
    /// A Prometheus scraping this daemon every second, reading `rule_files`.
    fn prometheus(&self, rule_files: &[&Path]) -> Prometheus {
        let target = format!("127.0.0.1:{}", self.daemon.port);
        Prometheus::start(&scrape_config(JOB, &[target], rule_files))
    }
}

/// Queries that must each return at least one series, polled together until every one
/// does or `limit` has passed; the ones that never did, each with what Prometheus last
/// said (its error, or no series).
fn queries_without_series(
    prom: &Prometheus,
    queries: Vec<(String, String)>,
    limit: Duration,
) -> Vec<(String, String, String)> {
    let mut pending: Vec<(String, String, String)> = queries
        .into_iter()
        .map(|(what, expr)| (what, expr, String::new()))
        .collect();
    poll_for(limit, || {
        pending.retain_mut(|(_, expr, last)| match prom.series(expr) {
            Ok(s) if !s.is_empty() => false,
            Ok(_) => {
                *last = "no series".into();
                true
            }
            Err(e) => {
                *last = e;
                true
            }
        });
        pending.is_empty()
    });
    pending
}

fn report(failed: &[(String, String, String)]) -> String {
    failed
        .iter()
        .map(|(what, expr, why)| format!("  {what}: {expr}\n    -> {why}"))
        .collect::<Vec<_>>()
        .join("\n")
}

// ---- the rules --------------------------------------------------------------------------

/// `promtool check rules` and `promtool test rules` pass on the shipped files.
#[test]
fn rules_pass_promtool_check_and_their_unit_tests() {
    let rules = repo("deploy/prometheus/rules.yml");
    let out = promtool(&["check", "rules", rules.to_str().unwrap()], b"");
    let text = output_text(&out);
    assert!(out.status.success(), "promtool check rules: {text}");
    assert!(text.contains("SUCCESS"), "promtool check rules: {text}");

    let tests = repo("deploy/prometheus/rules.test.yml");
    let out = promtool(&["test", "rules", tests.to_str().unwrap()], b"");
    let text = output_text(&out);
    assert!(out.status.success(), "promtool test rules: {text}");
    assert!(
        text.contains("SUCCESS") && !text.contains("FAILED"),
        "promtool test rules: {text}"
    );
}

/// The metric families an alerting rule's expression reads (`probe_*`, `probed_*`).
fn families_in(expr: &str) -> Vec<String> {
    let re = regex::Regex::new(r"[a-zA-Z_:][a-zA-Z0-9_:]*").unwrap();
    re.find_iter(expr)
        .map(|m| m.as_str().to_owned())
        .filter(|w| w.starts_with("probe_") || w.starts_with("probed_"))
        .collect()
}

/// The shipped rules, loaded into a real Prometheus scraping the real probed: every rule
/// evaluates without error, every family a rule reads is exported, `ProbeDown` goes
/// pending for the probe that is down (and only for it), the certificate that expires in
/// 10 days fires `ProbeCertificateExpiringSoon`, and the healthy daemon fires none of its
/// own alerts.
#[test]
fn rules_evaluate_against_what_probed_exports() {
    let lab = lab();
    let rules_file = repo("deploy/prometheus/rules.yml");
    let prom = lab.prometheus(&[&rules_file]);

    // Every rule loaded and evaluated without error.
    let mut rules = Vec::new();
    let evaluated = poll_for(SERIES_WITHIN, || {
        rules = prom
            .rules()
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        !rules.is_empty() && rules.iter().all(|r| r["health"] != "unknown")
    });
    assert!(
        evaluated,
        "rules not loaded or not evaluated within {SERIES_WITHIN:?}: {rules:#?}\nlog:\n{}",
        prom.log()
    );
    let file: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(&rules_file).unwrap()).unwrap();
    let shipped: Vec<&serde_yaml::Value> = file["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap())
        .collect();
    assert_eq!(rules.len(), shipped.len(), "every shipped rule loaded");
    let broken: Vec<String> = rules
        .iter()
        .filter(|r| r["health"] != "ok")
        .map(|r| format!("{}: {} ({})", r["name"], r["health"], r["lastError"]))
        .collect();
    assert!(broken.is_empty(), "rules failing to evaluate: {broken:#?}");

    // Every family a rule reads is one probed exports.
    let mut families: Vec<String> = shipped
        .iter()
        .flat_map(|r| families_in(r["expr"].as_str().unwrap()))
        .collect();
    families.sort();
    families.dedup();
    assert!(
        families.len() >= 8,
        "families read by the rules: {families:?}"
    );
    let queries = families
        .iter()
        .map(|f| ("family read by a rule".to_owned(), f.clone()))
        .collect();
    let missing = queries_without_series(&prom, queries, SERIES_WITHIN);

    // The alerts a live daemon with one probe down and one certificate near expiry has.
    let down = prom.wait_series(
        &format!("ALERTS{{alertname=\"ProbeDown\", probe=\"{DOWN}\"}}"),
        SERIES_WITHIN,
    );
    assert_eq!(down[0]["metric"]["severity"], "critical", "{down:?}");
    let cert = prom.wait_series(
        &format!(
            "ALERTS{{alertname=\"ProbeCertificateExpiringSoon\", probe=\"{TLS}\", alertstate=\"firing\"}}"
        ),
        SERIES_WITHIN,
    );
    assert_eq!(cert[0]["metric"]["severity"], "warning", "{cert:?}");
    let wrong = prom
        .series(&format!(
            "ALERTS{{alertname=\"ProbeDown\", probe!=\"{DOWN}\"}} \
             or ALERTS{{alertname=\"ProbeCertificateExpiringSoon\", probe!=\"{TLS}\"}} \
             or ALERTS{{alertname=~\"Probed.*\"}}"
        ))
        .unwrap();
    assert!(
        wrong.is_empty(),
        "alerts that should not be: {wrong:#?}\nprobed log:\n{}",
        lab.daemon.log()
    );

    assert!(
        missing.is_empty(),
        "families the rules read that probed does not export (within {SERIES_WITHIN:?}):\n{}",
        report(&missing)
    );
}

/// The stock blackbox rules of awesome-prometheus-alerts, unchanged, over the README's
/// scrape config: the failing probe's alert names its target in `instance` (not the
/// daemon's address), the certificate alert names the TLS target, and
/// `label_values(probe_success, instance)` lists every target.
#[test]
fn awesome_prometheus_alerts_blackbox_rules_name_the_target() {
    let lab = lab();
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("blackbox.yml");
    std::fs::write(
        &rules,
        r#"groups:
  - name: BlackboxExporter
    rules:
      - alert: BlackboxProbeFailed
        expr: probe_success == 0
        for: 0m
        labels: { severity: critical }
        annotations:
          summary: Blackbox probe failed (instance {{ $labels.instance }})
          description: "Probe failed
  VALUE = {{ $value }}
  LABELS = {{ $labels }}"
      - alert: BlackboxSslCertificateWillExpireSoon
        expr: 3 <= round((last_over_time(probe_ssl_earliest_cert_expiry[10m]) - time()) / 86400, 0.1) < 20
        for: 0m
        labels: { severity: warning }
        annotations:
          summary: Blackbox SSL certificate will expire soon (instance {{ $labels.instance }})
      - alert: BlackboxProbeHttpFailure
        expr: probe_http_status_code <= 199 OR probe_http_status_code >= 400
        for: 0m
        labels: { severity: critical }
        annotations:
          summary: Blackbox probe HTTP failure (instance {{ $labels.instance }})
"#,
    )
    .unwrap();
    let prom = lab.prometheus(&[&rules]);
    let [up, down, tls] = &lab.urls;
    let failed = prom.wait_series(
        "ALERTS{alertname=\"BlackboxProbeFailed\", alertstate=\"firing\"}",
        SERIES_WITHIN,
    );
    let instances: Vec<&str> = failed
        .iter()
        .filter_map(|s| s["metric"]["instance"].as_str())
        .collect();
    assert_eq!(instances, [down.as_str()], "{failed:#?}");
    let cert = prom.wait_series(
        "ALERTS{alertname=\"BlackboxSslCertificateWillExpireSoon\", alertstate=\"firing\"}",
        SERIES_WITHIN,
    );
    assert_eq!(cert[0]["metric"]["instance"], tls.as_str(), "{cert:#?}");
    // label_values(probe_success, instance): one entry per target.
    let mut listed: Vec<String> = prom
        .series("probe_success")
        .unwrap()
        .iter()
        .filter_map(|s| s["metric"]["instance"].as_str().map(str::to_owned))
        .collect();
    listed.sort();
    let mut want = vec![up.clone(), down.clone(), tls.clone()];
    want.sort();
    assert_eq!(listed, want);
}

// ---- the dashboard ----------------------------------------------------------------------

/// Every `targets[].expr` of the dashboard, with the title of its panel.
fn dashboard_queries(v: &Value, panel: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) => {
            let title = m.get("title").and_then(Value::as_str).unwrap_or(panel);
            if let Some(Value::Array(targets)) = m.get("targets") {
                for t in targets {
                    if let Some(e) = t.get("expr").and_then(Value::as_str) {
                        out.push((format!("panel {title:?}"), e.to_owned()));
                    }
                }
            }
            for (k, child) in m {
                if k != "targets" {
                    dashboard_queries(child, title, out);
                }
            }
        }
        Value::Array(a) => {
            for child in a {
                dashboard_queries(child, panel, out);
            }
        }
        _ => {}
    }
}

/// `expr` as Grafana sends it: each `$var` / `${var}` / `${var:format}` of the dashboard
/// replaced by its value (`vars`), and Grafana's own interval variables by what they are
/// on a dashboard over a few hours with a short scrape interval. Panics on a variable it
/// does not know, so a query never reaches Prometheus with a `$` Grafana would have filled.
fn substitute(expr: &str, vars: &[(String, String)]) -> String {
    let mut all: Vec<(String, String)> = vars.to_vec();
    for (name, value) in [
        ("__rate_interval", "1m"),
        ("__interval", "15s"),
        ("__range", "1h"),
        ("__range_s", "3600"),
    ] {
        all.push((name.to_owned(), value.to_owned()));
    }
    // Longest names first, so `$__range_s` is not read as `$__range` and `_s`.
    all.sort_by_key(|(n, _)| std::cmp::Reverse(n.len()));
    let braced = regex::Regex::new(r"\$\{([A-Za-z0-9_]+)(?::[^}]*)?\}").unwrap();
    let mut s = braced
        .replace_all(expr, |c: &regex::Captures| {
            let name = &c[1];
            all.iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| panic!("unknown variable ${{{name}}} in {expr}"))
        })
        .into_owned();
    for (name, value) in &all {
        s = s.replace(&format!("${name}"), value);
    }
    assert!(!s.contains('$'), "unknown variable in {expr} (left: {s})");
    s
}

/// The dashboard's template variables of type `query`: name, its `label_values(...)`
/// query and the value a query gets for it by default (All: its `allValue`).
fn query_variables(dash: &Value) -> Vec<(String, String, String)> {
    dash["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .filter(|v| v["type"] == "query")
        .map(|v| {
            let name = v["name"].as_str().unwrap().to_owned();
            let query = v["query"]["query"]
                .as_str()
                .or(v["query"].as_str())
                .unwrap_or_else(|| panic!("variable {name} has no query"))
                .to_owned();
            assert_eq!(
                v["includeAll"], true,
                "variable {name}: this test reads its default as All"
            );
            let all = v["allValue"]
                .as_str()
                .unwrap_or_else(|| panic!("variable {name}: includeAll without an allValue"))
                .to_owned();
            (name, query, all)
        })
        .collect()
}

/// Every query of `deploy/grafana/probed.json`, run against a real Prometheus scraping the
/// real probed, returns at least one series; so does each template variable's
/// `label_values(...)`, and the probe variable lists every probe.
#[test]
fn every_dashboard_query_returns_series() {
    let dash: Value =
        serde_json::from_str(&std::fs::read_to_string(repo("deploy/grafana/probed.json")).unwrap())
            .expect("the dashboard is JSON");
    assert!(
        dash["schemaVersion"].as_u64().unwrap() >= 36,
        "schemaVersion"
    );
    let vars = query_variables(&dash);
    let names: Vec<&str> = vars.iter().map(|(n, _, _)| n.as_str()).collect();
    assert!(names.contains(&"probe"), "a probe variable: {names:?}");
    let values: Vec<(String, String)> = vars
        .iter()
        .map(|(n, _, all)| (n.clone(), all.clone()))
        .collect();
    let mut queries = Vec::new();
    dashboard_queries(&dash["panels"], "", &mut queries);
    assert!(queries.len() >= 15, "queries found: {queries:#?}");

    let lab = lab();
    let prom = lab.prometheus(&[]);

    // The one probe up and the one down, as Prometheus sees them.
    prom.wait_series(
        &format!("probe_success{{probe=\"{UP}\"}} == 1"),
        SERIES_WITHIN,
    );
    prom.wait_series(
        &format!("probe_success{{probe=\"{DOWN}\"}} == 0"),
        SERIES_WITHIN,
    );

    // The variables: label_values(selector, label) lists the label's values.
    for (name, query, _) in &vars {
        let inner = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .unwrap_or_else(|| panic!("variable {name}: not label_values(...): {query}"));
        let (selector, label) = inner.rsplit_once(',').unwrap();
        let (selector, label) = (substitute(selector.trim(), &values), label.trim());
        let series = prom.wait_series(&selector, SERIES_WITHIN);
        let mut found: Vec<&str> = series
            .iter()
            .filter_map(|s| s["metric"][label].as_str())
            .collect();
        found.sort();
        found.dedup();
        assert!(
            !found.is_empty(),
            "variable {name}: no {label} in {series:?}"
        );
        if name == "probe" {
            assert_eq!(found, [DOWN, TLS, UP], "variable probe lists every probe");
        }
    }

    let queries = queries
        .into_iter()
        .map(|(what, expr)| {
            let e = substitute(&expr, &values);
            (format!("{what} ({expr})"), e)
        })
        .collect();
    let failed = queries_without_series(&prom, queries, SERIES_WITHIN);
    assert!(
        failed.is_empty(),
        "dashboard queries without series after {SERIES_WITHIN:?}:\n{}\ntargets: {}",
        report(&failed),
        prom.targets()
    );
}

// ---- /metrics -----------------------------------------------------------------------------

/// Whether the exposition `body` has a series of `family` for probe `probe` (whatever its
/// other labels), of value `value` if given.
fn has_series(body: &str, family: &str, probe: &str, value: Option<&str>) -> bool {
    body.lines().any(|l| {
        let Some(rest) = l.strip_prefix(family).and_then(|r| r.strip_prefix('{')) else {
            return false;
        };
        let Some((labels, v)) = rest.split_once("} ") else {
            return false;
        };
        labels
            .split(',')
            .any(|kv| kv == format!("probe=\"{probe}\""))
            && value.is_none_or(|want| v.trim() == want)
    })
}

/// `promtool check metrics` finds zero problems in `/metrics`, with every kind of series
/// present: probes up, down and over TLS, objectives, the daemon's own.
#[test]
fn metrics_pass_promtool_check_metrics() {
    let lab = lab();
    let url = format!("{}/metrics", lab.daemon.url());
    let mut body = String::new();
    let complete = poll_for(SERIES_WITHIN, || {
        let (code, _, b) = support::split_response(&support::http_get_blocking(&url));
        body = b;
        code == 200
            && has_series(&body, "probe_success", UP, Some("1"))
            && has_series(&body, "probe_success", DOWN, Some("0"))
            && has_series(&body, "probe_ssl_earliest_cert_expiry", TLS, None)
            && has_series(&body, "probed_slo_apdex", UP, None)
    });
    assert!(complete, "/metrics never had every probe's series:\n{body}");

    let out = promtool(&["check", "metrics"], body.as_bytes());
    let text = output_text(&out);
    assert!(
        out.status.success() && text.trim().is_empty(),
        "promtool check metrics found problems (exit {:?}):\n{text}",
        out.status.code()
    );
}
