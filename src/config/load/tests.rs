//! Loader tests: configs as strings, a fake environment, files in a temporary folder.
//! Expected messages are data: the full list of `file:line:col: message`, in order.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::interp::expand;
use super::*;
use crate::config::{AlertSpec, Defaults, Route, Schedule};

/// A fake environment.
fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
    move |k| {
        vars.iter()
            .find(|(n, _)| *n == k)
            .map(|(_, v)| v.to_string())
    }
}

/// Writes `files` into a fresh folder, loads `text` as `probed.yaml` there.
fn load_in(
    text: &str,
    files: &[(&str, &str)],
    vars: &[(&str, &str)],
) -> (tempfile::TempDir, Result<Config, ConfigErrors>) {
    let dir = tempfile::tempdir().unwrap();
    for (name, body) in files {
        let p = dir.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, body).unwrap();
    }
    let r = load_str(text, &dir.path().join("probed.yaml"), &env(vars));
    (dir, r)
}

/// The errors as `file:line:col: message`, paths relative to the folder.
fn error_lines(dir: &Path, r: Result<Config, ConfigErrors>) -> Vec<String> {
    let prefix = format!("{}/", dir.display());
    match r {
        Ok(_) => Vec::new(),
        Err(errs) => errs
            .0
            .iter()
            .map(|e| e.to_string().replace(&prefix, ""))
            .collect(),
    }
}

fn errors_of(text: &str, files: &[(&str, &str)], vars: &[(&str, &str)]) -> Vec<String> {
    let (dir, r) = load_in(text, files, vars);
    error_lines(dir.path(), r)
}

fn ok(text: &str, files: &[(&str, &str)], vars: &[(&str, &str)]) -> Config {
    let (dir, r) = load_in(text, files, vars);
    match r {
        Ok(c) => c,
        Err(_) => panic!("unexpected errors: {:#?}", error_lines(dir.path(), r)),
    }
}

const FULL: &str = r#"
listen: 0.0.0.0:9000
data_dir: state
admin_token: "${ADMIN_TOKEN}"
probes: probes/
defaults:
  every: 1m
  timeout: 5s
  alert: { after: 3, severity: warning }
  max_concurrent: 100
  max_per_host: 4
  nameservers: ["10.0.0.53:53", "10.0.0.54"]
store: { retention: 14d, queue: 1000 }
notifiers:
  oncall-mail:
    kind: email
    smtp: { host: smtp.example.com, port: 587, username: probed, password_file: secrets/smtp }
    from: probed@example.com
    to: [oncall@example.com]
  pager: { kind: pagerduty, routing_key: "${PD_KEY}" }
routes:
  - match: { severity: critical }
    notify: [pager]
    fallback: [oncall-mail]
  - notify: [oncall-mail]
watchdog:
  heartbeat: { url: "https://hc.example.net/ping/x", every: 60s }
"#;

const PROBES_A: &str = r#"
probes:
  - name: api-write
    kind: http
    every: 30s
    request: { method: POST, url: "https://api.example.com/v1/canary", body: '{"ping":1}' }
    expect: { status: [200, 201], latency_under: 500ms }
    alert: { recover_after: 2 }
    group: API
    public: true
    labels: { team: core }
    description: the write path
"#;

const PROBES_B: &str = r#"
probes:
  - name: home
    kind: http
    cron: "*/5 * * * *"
    timeout: 2s
    request: { url: "https://www.example.com/" }
"#;

#[test]
fn full_config_loads_with_defaults_applied() {
    let c = ok(
        FULL,
        &[
            ("probes/a.yaml", PROBES_A),
            ("probes/b.yml", PROBES_B),
            ("probes/notes.txt", "not a probe file"),
            ("secrets/smtp", "hunter2\n"),
        ],
        &[("ADMIN_TOKEN", "t0ken"), ("PD_KEY", "pdkey")],
    );
    assert_eq!(c.listen, "0.0.0.0:9000".parse().unwrap());
    assert!(c.data_dir.ends_with("state"));
    assert_eq!(c.admin_token.as_ref().map(Secret::expose), Some("t0ken"));
    assert_eq!(c.defaults.every, Duration::from_secs(60));
    assert_eq!(c.defaults.timeout, Duration::from_secs(5));
    assert_eq!(
        c.defaults.alert,
        AlertSpec {
            after: 3,
            recover_after: 1,
            severity: "warning".into(),
            ..AlertSpec::default()
        }
    );
    assert_eq!(c.defaults.max_concurrent, 100);
    assert_eq!(c.defaults.max_per_host, 4);
    assert_eq!(
        c.defaults.nameservers,
        vec![
            "10.0.0.53:53".parse().unwrap(),
            "10.0.0.54:53".parse().unwrap()
        ]
    );
    assert_eq!(c.store.retention, Duration::from_secs(14 * 86400));
    assert_eq!(c.store.queue, 1000);

    assert_eq!(c.notifiers.len(), 2);
    let mail = &c.notifiers["oncall-mail"];
    assert_eq!(mail.kind, "email");
    assert_eq!(mail.settings["smtp"]["password"], "hunter2");
    assert!(mail.settings["smtp"].get("password_file").is_none());
    assert!(mail.settings.get("kind").is_none());
    assert_eq!(c.notifiers["pager"].settings["routing_key"], "pdkey");

    assert_eq!(
        c.routes,
        vec![
            Route {
                matchers: [("severity".to_string(), "critical".to_string())].into(),
                notify: vec!["pager".into()],
                fallback: vec!["oncall-mail".into()],
                escalate: vec![],
                remind_every: None,
                resolve: true,
            },
            Route {
                matchers: BTreeMap::new(),
                notify: vec!["oncall-mail".into()],
                fallback: vec![],
                escalate: vec![],
                remind_every: None,
                resolve: true,
            },
        ]
    );
    assert_eq!(c.watchdog.heartbeats.len(), 1);
    assert_eq!(c.watchdog.heartbeats[0].every, Duration::from_secs(60));
    assert_eq!(c.watchdog.max_lag, Duration::from_secs(1), "default");

    let names: Vec<&str> = c.probes.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["api-write", "home"]);
    let api = &c.probes[0];
    assert_eq!(api.schedule, Schedule::Every(Duration::from_secs(30)));
    assert_eq!(api.timeout, Duration::from_secs(5));
    assert_eq!(
        api.alert,
        AlertSpec {
            after: 3,
            recover_after: 2,
            severity: "warning".into(),
            ..AlertSpec::default()
        }
    );
    assert_eq!(api.group.as_deref(), Some("API"));
    assert!(api.public);
    assert_eq!(api.labels["team"], "core");
    assert_eq!(api.spec.kind(), "http");
    assert!(api.source.ends_with("probes/a.yaml:3:5"), "{}", api.source);
    assert_eq!(api.description.as_deref(), Some("the write path"));

    let home = &c.probes[1];
    match &home.schedule {
        Schedule::Cron { expr, .. } => assert_eq!(expr, "*/5 * * * *"),
        other => panic!("expected a cron schedule, got {other}"),
    }
    assert_eq!(home.schedule.interval(), Duration::from_secs(300));
    assert_eq!(home.timeout, Duration::from_secs(2));
    assert_eq!(home.alert, c.defaults.alert);
    assert!(!home.public);
    assert!(home.source.ends_with("probes/b.yml:3:5"), "{}", home.source);
}

#[test]
fn empty_config_is_all_defaults() {
    let c = load_str("", Path::new("/etc/probed/probed.yaml"), &env(&[])).unwrap();
    assert_eq!(c.listen, "127.0.0.1:9797".parse().unwrap());
    assert_eq!(c.data_dir, Path::new("/etc/probed/data"));
    assert_eq!(c.defaults, Defaults::default());
    assert_eq!(c.store, StoreOptions::default());
    assert!(c.probes.is_empty() && c.notifiers.is_empty() && c.routes.is_empty());
    assert!(c.admin_token.is_none() && c.watchdog == Default::default());
}

#[test]
fn inline_probes_and_timeout_defaults() {
    let c = ok(
        r#"
defaults: { every: 30s, timeout: 10s }
probes:
  - { name: fast, kind: http, every: 2s, request: { url: "http://a.example/" } }
  - { name: slow, kind: http, request: { url: "http://b.example/" } }
  - { name: nightly, kind: http, cron: "0 0 3 * * *", request: { url: "http://c.example/" } }
"#,
        &[],
        &[],
    );
    let t: Vec<(Schedule, Duration)> = c
        .probes
        .iter()
        .map(|p| (p.schedule.clone(), p.timeout))
        .collect();
    // The default timeout is capped at the interval.
    assert_eq!(
        t[0],
        (
            Schedule::Every(Duration::from_secs(2)),
            Duration::from_secs(2)
        )
    );
    assert_eq!(
        t[1],
        (
            Schedule::Every(Duration::from_secs(30)),
            Duration::from_secs(10)
        )
    );
    assert_eq!(t[2].1, Duration::from_secs(10));
    assert!(
        c.probes[0].source.ends_with("probed.yaml:4:7"),
        "{}",
        c.probes[0].source
    );
}

/// One config, the exact errors it must give.
struct Case {
    name: &'static str,
    config: &'static str,
    files: &'static [(&'static str, &'static str)],
    env: &'static [(&'static str, &'static str)],
    want: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        name: "unknown top-level key",
        config: "listen: 127.0.0.1:1\nlisen: 127.0.0.1:2\n",
        files: &[],
        env: &[],
        want: &[r#"probed.yaml:2:1: unknown key "lisen", did you mean "listen"?"#],
    },
    Case {
        name: "unknown key, nothing close",
        config: "foo: 1\n",
        files: &[],
        env: &[],
        want: &[
            r#"probed.yaml:1:1: unknown key "foo" (valid keys: listen, data_dir, admin_token, probes, defaults, store, notifiers, routes, watchdog, maintenance, alerting, instance, location, external_url, status_page, modules, modules_file, probe_endpoint)"#,
        ],
    },
    Case {
        name: "unknown key in defaults",
        config: "defaults:\n  every: 30s\n  timout: 5s\n",
        files: &[],
        env: &[],
        want: &[r#"probed.yaml:3:3: unknown key "timout", did you mean "timeout"?"#],
    },
    Case {
        name: "unknown kind",
        config: r#"
probes:
  - name: api
    kind: htp
    request: { url: "http://x.example/" }
"#,
        files: &[],
        env: &[],
        want: &[r#"probed.yaml:4:11: unknown kind "htp", did you mean "http"?"#],
    },
    Case {
        name: "unknown field in request",
        config: r#"
probes:
  - name: api
    kind: http
    request: { url: "http://x.example/", methd: POST }
"#,
        files: &[],
        env: &[],
        want: &[r#"probed.yaml:5:42: unknown key "methd", did you mean "method"?"#],
    },
    Case {
        name: "unknown common key in a probe",
        config: r#"
probes:
  - name: api
    kind: http
    timout: 5s
    request: { url: "http://x.example/" }
"#,
        files: &[],
        env: &[],
        want: &[r#"probed.yaml:5:5: unknown key "timout", did you mean "timeout"?"#],
    },
    Case {
        name: "wrong types",
        config: r#"
probes:
  - name: api
    kind: http
    every: true
    alert: { after: "x" }
    request: { url: "http://x.example/" }
"#,
        files: &[],
        env: &[],
        want: &[
            "probed.yaml:5:12: invalid type: boolean `true`, expected a duration such as 500ms, 30s, 5m or 1h",
            r#"probed.yaml:6:21: expected a number, found a string"#,
        ],
    },
    Case {
        name: "missing name and kind, spec missing a field",
        config: r#"
probes:
  - every: 30s
  - name: api
    kind: http
    request: { method: GET }
"#,
        files: &[],
        env: &[],
        want: &[
            r#"probed.yaml:3:5: missing required key "name""#,
            r#"probed.yaml:3:5: missing required key "kind""#,
            r#"probed.yaml:6:5: missing required key "url""#,
        ],
    },
    Case {
        name: "validate errors at their path",
        config: r#"
probes:
  - name: api
    kind: http
    request:
      url: "ftp://x.example/"
      method: "GE T"
"#,
        files: &[],
        env: &[],
        want: &[
            r#"probed.yaml:6:12: unsupported url scheme "ftp" (use http or https)"#,
            r#"probed.yaml:7:15: invalid method "GE T" (write e.g. GET, POST)"#,
        ],
    },
    Case {
        name: "schedule and timeout checks",
        config: r#"
defaults: { alert: { after: 0 } }
probes:
  - { name: a, kind: http, every: 30s, timeout: 40s, request: { url: "http://x.example/" } }
  - { name: b, kind: http, timeout: 0s, request: { url: "http://x.example/" } }
  - { name: c, kind: http, every: 50ms, request: { url: "http://x.example/" } }
  - { name: d, kind: http, every: 1m, cron: "* * * * *", request: { url: "http://x.example/" } }
  - { name: e, kind: http, cron: "every day", request: { url: "http://x.example/" } }
  - { name: f, kind: http, alert: { after: 0, recover_after: 0 }, request: { url: "http://x.example/" } }
"#,
        files: &[],
        env: &[],
        want: &[
            "probed.yaml:2:29: alert.after must be a whole number from 1 to 10000",
            "probed.yaml:4:49: timeout 40s is longer than the interval 30s",
            "probed.yaml:5:37: timeout must be greater than zero",
            "probed.yaml:6:35: every 50ms is shorter than the minimum of 100ms",
            r#"probed.yaml:7:39: "every" and "cron" are mutually exclusive; keep one"#,
            r#"probed.yaml:8:34: invalid cron expression "every day": ..."#,
            "probed.yaml:9:44: alert.after must be a whole number from 1 to 10000",
            "probed.yaml:9:62: alert.recover_after must be a whole number from 1 to 10000",
        ],
    },
    Case {
        name: "notifiers and routes",
        config: r#"
notifiers:
  pager: { kind: pagerduty, routing_key: x }
  mail: { kind: emial }
  sms: { to: ["+1555"] }
routes:
  - match: { severity: critical }
    notify: [pagr, mail]
    fallback: [nobody]
  - match: { severity: warning }
  - notify: []
"#,
        files: &[],
        env: &[],
        want: &[
            r#"probed.yaml:4:17: unknown notifier kind "emial", did you mean "email"?"#,
            r#"probed.yaml:5:3: missing required key "kind""#,
            r#"probed.yaml:8:14: unknown notifier "pagr", did you mean "pager"?"#,
            r#"probed.yaml:9:16: unknown notifier "nobody" (valid notifiers: pager, mail, sms)"#,
            r#"probed.yaml:10:5: route has no "notify" (name the notifiers to send to)"#,
            r#"probed.yaml:11:13: route has an empty "notify" (name the notifiers to send to)"#,
        ],
    },
    Case {
        name: "duplicate names across files",
        config: "probes: probes\n",
        files: &[
            (
                "probes/a.yaml",
                "probes:\n  - name: other\n    kind: http\n    request: { url: \"http://x.example/\" }\n  - name: api\n    kind: http\n    request: { url: \"http://x.example/\" }\n",
            ),
            (
                "probes/b.yaml",
                "probes:\n  - name: api\n    kind: http\n    request: { url: \"http://y.example/\" }\n",
            ),
        ],
        env: &[],
        want: &[
            r#"probes/b.yaml:2:5: duplicate probe name "api" (first defined at probes/a.yaml:5:5)"#,
        ],
    },
    Case {
        name: "errors in several files are all reported",
        config: "probes: probes/\ndefaults: { every: 10 minutes }\n",
        files: &[
            ("probes/a.yaml", "probes:\n  - { name: a, kind: htp }\n"),
            (
                "probes/b.yaml",
                "probes:\n  - { name: 'b c', kind: http, request: {} }\n",
            ),
            ("probes/c.yaml", "prob:\n  - { name: c }\n"),
        ],
        env: &[],
        want: &[
            r#"probed.yaml:2:20: invalid duration "10 minutes": unknown unit "minutes" (use ms, s, m, h, d)"#,
            r#"probes/a.yaml:2:22: unknown kind "htp", did you mean "http"?"#,
            r#"probes/b.yaml:2:13: invalid probe name "b c" (use letters, digits and _ . : -)"#,
            r#"probes/b.yaml:2:32: missing required key "url""#,
            r#"probes/c.yaml:1:1: unknown key "prob", did you mean "probes"?"#,
        ],
    },
    Case {
        name: "missing probes folder",
        config: "probes: nowhere/\n",
        files: &[],
        env: &[],
        want: &[r#"probed.yaml:1:9: cannot read "nowhere/": no such file or directory"#],
    },
    Case {
        name: "malformed yaml",
        config: "listen: [1, 2\ndefaults: {}\n",
        files: &[],
        env: &[],
        want: &[
            "probed.yaml:2:9: did not find expected ',' or ']', while parsing a flow sequence at line 1 column 9",
        ],
    },
    Case {
        name: "malformed probe file, other files still checked",
        config: "probes: probes/\n",
        files: &[
            ("probes/a.yaml", "probes:\n  - name: a\n   kind: http\n"),
            (
                "probes/b.yaml",
                "probes:\n  - { name: b, kind: http, request: { url: 1 } }\n",
            ),
        ],
        env: &[],
        want: &[
            "probes/a.yaml:3:4: did not find expected '-' indicator, while parsing a block collection at line 2 column 3",
            "probes/b.yaml:2:44: invalid type: integer `1`, expected a string",
        ],
    },
    Case {
        name: "unquoted ${...} in a flow mapping",
        config: "defaults: { max_concurrent: ${MAX} }\n",
        files: &[],
        env: &[],
        want: &[
            r#"probed.yaml:1:30: did not find expected ',' or '}', while parsing a flow mapping at line 1 column 11 (inside { } and [ ], quote a value that uses ${...})"#,
        ],
    },
    Case {
        name: "duplicate key",
        config: "listen: 127.0.0.1:1\nstore: {}\nlisten: 127.0.0.1:2\n",
        files: &[],
        env: &[],
        want: &[r#"probed.yaml:3:1: duplicate key "listen""#],
    },
    Case {
        name: "missing environment variables",
        config: r#"
admin_token: ${ADMIN_TOKEN}
defaults: { every: "${EVERY}", max_concurrent: "${MAX}" }
notifiers:
  pager: { kind: pagerduty, routing_key: "${PD_KEY}", base_url: "${A}/${B:-x}/${C}" }
"#,
        files: &[],
        env: &[("A", "a")],
        want: &[
            "probed.yaml:2:14: environment variable ADMIN_TOKEN is not set (use ${ADMIN_TOKEN:-default} for a fallback)",
            "probed.yaml:3:20: environment variable EVERY is not set (use ${EVERY:-default} for a fallback)",
            "probed.yaml:3:48: environment variable MAX is not set (use ${MAX:-default} for a fallback)",
            "probed.yaml:5:42: environment variable PD_KEY is not set (use ${PD_KEY:-default} for a fallback)",
            "probed.yaml:5:65: environment variable C is not set (use ${C:-default} for a fallback)",
        ],
    },
    Case {
        name: "bad interpolation syntax",
        config: "data_dir: \"${HOME\"\ninstance: \"${NOT VALID}\"\n",
        files: &[],
        env: &[],
        want: &[
            r#"probed.yaml:1:11: unterminated "${" (close it with "}", or write $$ for a dollar)"#,
            r#"probed.yaml:2:11: invalid variable name "NOT VALID" in "${...}" (use letters, digits and _)"#,
        ],
    },
    Case {
        name: "status_page section",
        config: "status_page:\n  titel: Acme\n  url: status.example.com\n  history_days: 0\n",
        files: &[],
        env: &[],
        want: &[
            r#"probed.yaml:2:3: unknown key "titel", did you mean "title"?"#,
            r#"probed.yaml:3:8: status_page.url must be an absolute http(s) URL"#,
            r#"probed.yaml:4:17: history_days must be a whole number from 1 to 400"#,
        ],
    },
    Case {
        name: "watchdog section",
        config: r#"
notifiers:
  mail: { kind: email, smtp: { host: localhost }, from: a@example.com, to: [b@example.com] }
  am: { kind: alertmanager, urls: ["http://127.0.0.1:9093"] }
watchdog:
  heartbeats: []
  max_lag: soon
  alertmanager: { notify: [mail, amm], every: 1m }
"#,
        files: &[],
        env: &[],
        want: &[
            r#"probed.yaml:6:3: unknown key "heartbeats", did you mean "heartbeat"?"#,
            r#"probed.yaml:7:12: invalid duration "soon": expected a number before the unit"#,
            r#"probed.yaml:8:28: notifier "mail" is of kind email; the Watchdog alert needs kind alertmanager"#,
            r#"probed.yaml:8:34: unknown alertmanager notifier "amm", did you mean "am"?"#,
        ],
    },
    Case {
        name: "_file problems",
        config: r#"
admin_token: abc
admin_token_file: secrets/token
notifiers:
  pager: { kind: pagerduty, routing_key_file: secrets/missing }
probes:
  - name: api
    kind: http
    request: { url: "https://x.example/", method_file: secrets/missing }
"#,
        files: &[("secrets/token", "s3cr3t-token\n")],
        env: &[],
        want: &[
            r#"probed.yaml:3:1: both "admin_token" and "admin_token_file" are set; keep one"#,
            r#"probed.yaml:5:47: cannot read routing_key_file "secrets/missing": no such file or directory"#,
            r#"probed.yaml:9:56: cannot read method_file "secrets/missing": no such file or directory"#,
        ],
    },
    Case {
        name: "misspelled _file key",
        config: "admin_tokn_file: secrets/token\n",
        files: &[("secrets/token", "s3cr3t-token\n")],
        env: &[],
        want: &[
            r#"probed.yaml:1:1: unknown key "admin_tokn_file", did you mean "admin_token_file"?"#,
        ],
    },
    Case {
        name: "wrong types in sections",
        config: r#"
listen: localhost
defaults: [1]
store: { retention: 0s, queue: -1 }
notifiers: { a: 1 }
routes: { notify: [a] }
probes: 3
"#,
        files: &[],
        env: &[],
        want: &[
            r#"probed.yaml:2:9: invalid listen address "localhost" (write ip:port, e.g. 127.0.0.1:9797)"#,
            "probed.yaml:3:11: expected a mapping, found a list",
            "probed.yaml:4:21: retention must be greater than zero",
            "probed.yaml:4:32: queue must be a whole number from 1 to 10000000",
            "probed.yaml:5:17: expected a mapping, found a number",
            "probed.yaml:6:9: expected a list of routes, found a mapping",
            "probed.yaml:7:9: expected a list of probes, or a file or folder of them, found a number",
        ],
    },
    Case {
        // Each of these passed check-config and crashed the daemon (a tokio semaphore of
        // 2^64 permits) or a probe task; each number now has its range, at its line.
        name: "numbers out of range",
        config: r#"
defaults: { max_concurrent: 18446744073709551615, max_per_host: 18446744073709551615 }
store: { queue: 18446744073709551615, buffer: 10000001 }
alerting: { max_attempts: 4294967296 }
probes:
  - { name: a, kind: http, alert: { after: 0.5, recover_after: -1 }, request: { url: "http://x.example/" } }
"#,
        files: &[],
        env: &[],
        want: &[
            r#"probed.yaml:2:29: max_concurrent must be a whole number from 1 to 100000"#,
            r#"probed.yaml:2:65: max_per_host must be a whole number from 1 to 100000"#,
            r#"probed.yaml:3:17: queue must be a whole number from 1 to 10000000"#,
            r#"probed.yaml:3:47: buffer must be a whole number from 0 to 10000000"#,
            r#"probed.yaml:4:27: max_attempts must be a whole number from 1 to 1000"#,
            r#"probed.yaml:6:44: alert.after must be a whole number from 1 to 10000"#,
            r#"probed.yaml:6:64: alert.recover_after must be a whole number from 1 to 10000"#,
        ],
    },
    Case {
        // Every ping finds its probe by token: the second probe would never see one.
        name: "duplicate push tokens",
        config: r#"
probes:
  - { name: nightly, kind: push, token: 0123456789abcdef-job, period: 1d }
  - { name: hourly, kind: push, token: 0123456789abcdef-job, period: 1h }
"#,
        files: &[],
        env: &[],
        want: &[
            r#"probed.yaml:4:40: push token already used by probe "nightly" (defined at probed.yaml:3:7); every push probe needs a token of its own"#,
        ],
    },
    Case {
        name: "admin_token that can never match, heartbeat without a host",
        config: r#"
admin_token: "   "
watchdog:
  heartbeat: { url: "http:///ping" }
"#,
        files: &[],
        env: &[],
        want: &[
            r#"probed.yaml:2:14: admin_token is only whitespace (no bearer token could ever match it)"#,
            r#"probed.yaml:4:21: heartbeat url must be an absolute http(s) URL with a host"#,
        ],
    },
    Case {
        name: "admin_token with what a header cannot carry",
        config: "admin_token: \" t0ken\"\n",
        files: &[],
        env: &[],
        want: &[
            r#"probed.yaml:1:14: admin_token must be printable ASCII without spaces at its ends (an Authorization header cannot carry anything else)"#,
        ],
    },
    Case {
        name: "a probes file that never ends",
        config: "probes: /dev/zero\n",
        files: &[],
        env: &[],
        want: &[r#"probed.yaml:1:9: cannot read "/dev/zero": larger than 32 MiB"#],
    },
];

#[test]
fn error_cases() {
    let mut failed = Vec::new();
    for case in CASES {
        let got = errors_of(case.config, case.files, case.env);
        // A trailing "..." matches any rest of the message (a dependency's own wording).
        let matches = got.len() == case.want.len()
            && got
                .iter()
                .zip(case.want)
                .all(|(g, w)| match w.strip_suffix("...") {
                    Some(prefix) => g.starts_with(prefix),
                    None => g == w,
                });
        if !matches {
            failed.push(format!(
                "{}:\n  want {:#?}\n  got  {:#?}",
                case.name, case.want, got
            ));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

#[test]
fn anchors_and_merge_keys() {
    let c = ok(
        r#"
x-http: &http
  kind: http
  every: 10s
  alert: { after: 5 }
probes:
  - <<: *http
    name: a
    request: { url: "https://a.example/" }
  - <<: *http
    name: b
    every: 20s
    request: { url: "https://b.example/" }
"#,
        &[],
        &[],
    );
    let got: Vec<(&str, Duration, u32)> = c
        .probes
        .iter()
        .map(|p| (p.name.as_str(), p.schedule.interval(), p.alert.after))
        .collect();
    assert_eq!(
        got,
        [
            ("a", Duration::from_secs(10), 5),
            ("b", Duration::from_secs(20), 5)
        ]
    );
}

#[test]
fn interpolation() {
    let c = ok(
        r#"
listen: "${HOST:-127.0.0.1}:${PORT}"
data_dir: $$HOME/${SUB:-data}
defaults:
  max_concurrent: ${MAX}
  alert: { severity: "${SEV}" }
notifiers:
  hook:
    kind: webhook
    url: "https://x.example/${PATH_PART}"
instance: cost-$5
watchdog:
    max_lag: ${N}ms
    heartbeat: { url: "https://hc.example/${PATH_PART}", every: "${N}s" }
"#,
        &[],
        &[
            ("PORT", "9000"),
            ("MAX", "12"),
            ("SEV", "123"),
            ("PATH_PART", "a/b"),
            ("N", "42"),
            ("B", "true"),
            ("SUB", ""),
        ],
    );
    assert_eq!(c.listen, "127.0.0.1:9000".parse().unwrap());
    assert!(
        c.data_dir.ends_with("$HOME/data"),
        "{}",
        c.data_dir.display()
    );
    assert_eq!(c.defaults.max_concurrent, 12);
    // Quoted: stays a string even when it looks like a number.
    assert_eq!(c.defaults.alert.severity, "123");
    assert_eq!(c.notifiers["hook"].settings["url"], "https://x.example/a/b");
    // Inside a longer text, too; a `$` not followed by `{` is kept.
    assert_eq!(c.watchdog.max_lag, Duration::from_millis(42));
    assert_eq!(c.watchdog.heartbeats[0].every, Duration::from_secs(42));
    assert_eq!(
        c.watchdog.heartbeats[0].url.expose(),
        "https://hc.example/a/b"
    );
    assert_eq!(c.instance, "cost-$5");
}

#[test]
fn expand_cases() {
    let e = env(&[("A", "x"), ("EMPTY", ""), ("N", "7")]);
    // Input, then the text and whether it was one whole `${...}`, or the error.
    type Want = Result<(&'static str, bool), &'static str>;
    let cases: &[(&str, Want)] = &[
        ("plain", Ok(("plain", false))),
        ("${A}", Ok(("x", true))),
        ("a${A}b", Ok(("axb", false))),
        ("${A}${A}", Ok(("xx", false))),
        ("$$", Ok(("$", false))),
        ("$${A}", Ok(("${A}", false))),
        ("$$${A}", Ok(("$x", false))),
        ("$$$${A}", Ok(("$${A}", false))),
        ("cost $5", Ok(("cost $5", false))),
        ("trailing $", Ok(("trailing $", false))),
        ("${MISSING:-d}", Ok(("d", true))),
        ("${EMPTY:-d}", Ok(("d", true))),
        ("${EMPTY}", Ok(("", true))),
        ("${MISSING:-}", Ok(("", true))),
        ("${N:-a:-b}", Ok(("7", true))),
        ("${MISSING:-a:-b}", Ok(("a:-b", true))),
        (
            "${MISSING}",
            Err("environment variable MISSING is not set (use ${MISSING:-default} for a fallback)"),
        ),
        (
            "${}",
            Err(r#"invalid variable name "" in "${...}" (use letters, digits and _)"#),
        ),
        (
            "${1A}",
            Err(r#"invalid variable name "1A" in "${...}" (use letters, digits and _)"#),
        ),
        (
            "${A",
            Err(r#"unterminated "${" (close it with "}", or write $$ for a dollar)"#),
        ),
    ];
    for (input, want) in cases {
        let got = expand(input, &e);
        match (want, got) {
            (Ok((text, whole)), Ok(x)) => {
                assert_eq!((x.text.as_str(), x.whole), (*text, *whole), "{input}")
            }
            (Err(msg), Err(msgs)) => assert_eq!(msgs, vec![msg.to_string()], "{input}"),
            (want, got) => panic!("{input}: want {want:?}, got {got:?}"),
        }
    }
}

#[test]
fn file_secrets() {
    let c = ok(
        r#"
admin_token_file: secrets/token
notifiers:
  sms:
    kind: twilio
    account_sid: AC0123456789abcdef0123456789abcdef
    auth_token_file: "${SECRETS:-secrets}/twilio"
    from: "+15550001111"
    to: ["+15550002222"]
watchdog:
    heartbeat: [ { url: "https://hc.example/ping/1" }, { url_file: secrets/hb } ]
probes:
  - name: api
    kind: http
    request: { url: "https://x.example/" }
    tls: { ca_file: certs/ca.pem }
"#,
        &[
            ("secrets/token", "tok-123\r\n"),
            ("secrets/twilio", "tw-456\n\n"),
            ("secrets/hb", "https://hc.example/ping/2\n\n"),
        ],
        &[],
    );
    assert_eq!(c.admin_token.unwrap().expose(), "tok-123");
    let s = &c.notifiers["sms"].settings;
    assert_eq!(s["auth_token"], "tw-456");
    assert!(s.get("auth_token_file").is_none());
    // Inside a list of mappings too.
    let hb = &c.watchdog.heartbeats;
    assert_eq!(hb[1].url.expose(), "https://hc.example/ping/2");
    // `ca_file` names a file the probe reads itself: kept as a path, relative to the file
    // that defines the probe.
    let crate::probe::ProbeSpec::Http(h) = &c.probes[0].spec else {
        panic!("an http probe")
    };
    let ca = h.tls.ca_file.as_ref().unwrap();
    assert!(ca.is_absolute() && ca.ends_with("certs/ca.pem"), "{ca:?}");
}

#[test]
fn secrets_never_appear_in_errors() {
    const SECRET: &str = "hunter2-very-secret";
    let config = r#"
admin_token_file: secrets/token
defaults:
  every: ${SECRET}
  max_concurrent: ${SECRET}
store: { retention: "${SHORT}", queue: "${SECRET}" }
notifiers:
  x: { kind: "${SECRET}" }
probes:
  - name: api
    kind: http
    description: ${NUM}
    request:
      url: "https://user:${SECRET}@x.example/"
      method: "${SECRET}"
      headers: { authorization: "Bearer ${SECRET}\n" }
    expect: { body_regex: "(${SECRET}" }
    ip: ${SECRET}
    timeout: secrets/token
  - name: db
    kind: http
    password_file: secrets/token
    request: { url: "https://x.example/" }
  - name: re
    kind: http
    request:
      url: "https://x.example/"
      headers: { "${SECRET}": "a\nb" }
    expect: { body_regex: "(${SECRET}", json: { "${SECRET}": 1 } }
"#;
    let files = [("secrets/token", "hunter2-very-secret\n")];
    let vars = [("SECRET", SECRET), ("SHORT", "ab"), ("NUM", "12345")];
    let got = errors_of(config, &files, &vars);
    assert!(got.len() >= 8, "{got:#?}");
    for line in &got {
        for s in [SECRET, "\"ab\"", "12345"] {
            assert!(!line.contains(s), "{s} leaked in {line}");
        }
    }
    // The messages still say what is wrong.
    assert!(
        got.contains(
            &r#"probed.yaml:6:21: invalid duration "***": expected a number before the unit"#
                .to_string()
        ),
        "{got:#?}"
    );
}

#[test]
fn load_reads_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("probed.yaml");
    std::fs::write(&path, "store: { queue: 10 }\n").unwrap();
    assert_eq!(load(&path).unwrap().store.queue, 10);
    let missing = dir.path().join("missing.yaml");
    let err = load(&missing).unwrap_err().to_string();
    assert!(
        err.ends_with("missing.yaml:1:1: cannot read the config file: no such file or directory"),
        "{err}"
    );
}

#[test]
fn did_you_mean() {
    let cases = [
        ("timout", "did you mean \"timeout\"?"),
        ("reqest", "did you mean \"request\"?"),
        ("xyz", "(valid keys: timeout, request, every)"),
    ];
    for (word, want) in cases {
        let msg = unknown("key", word, &["timeout", "request", "every"]);
        assert!(msg.ends_with(want), "{word}: {msg}");
    }
}

#[test]
fn resolve_paths() {
    let v: Value = serde_yaml::from_str(
        "request: { headers: { x.y: a } }\nexpect: { status: [1, 2, 3], json: { /a.b: 1 } }\n",
    )
    .unwrap();
    let k = |s: &str| Seg::Key(s.into());
    assert_eq!(
        resolve(&v, "request.headers.x.y"),
        [k("request"), k("headers"), k("x.y")]
    );
    assert_eq!(
        resolve(&v, "expect.status[2]"),
        [k("expect"), k("status"), Seg::Idx(2)]
    );
    assert_eq!(
        resolve(&v, "expect.json./a.b"),
        [k("expect"), k("json"), k("/a.b")]
    );
    assert_eq!(resolve(&v, "nope.x"), [k("nope"), k("x")]);
}

#[test]
fn slo_loads_and_its_errors_point_at_the_key() {
    let c = ok(
        "probes:\n  - name: a\n    kind: tcp\n    host: 127.0.0.1\n    port: 1\n    \
         slo: { objective: 99.5%, apdex: { target: 150ms }, time_scale: 60 }\n",
        &[],
        &[],
    );
    let slo = c.probes[0].slo.as_ref().unwrap();
    assert!((slo.objective.unwrap().0 - 0.995).abs() < 1e-12);
    assert_eq!(slo.rules(), crate::slo::workbook_rules());
    assert_eq!(slo.apdex.as_ref().unwrap().min, 0.85);
    let errs = errors_of(
        "probes:\n  - name: a\n    kind: tcp\n    host: 127.0.0.1\n    port: 1\n    slo:\n      \
         objectiv: 99%\n  - name: b\n    kind: tcp\n    host: 127.0.0.1\n    port: 1\n    slo:\n      \
         objective: 99%\n      burn_rates: [{ long: 5m, short: 1h, factor: 2 }]\n      \
         time_scale: 0\n",
        &[],
        &[],
    );
    let all = errs.join("\n");
    assert_eq!(errs.len(), 3, "{all}");
    assert!(
        errs[0].starts_with("probed.yaml:7:7: ")
            && errs[0].contains("unknown")
            && errs[0].contains("did you mean \"objective\"?"),
        "{all}"
    );
    assert!(
        errs[1].starts_with("probed.yaml:14:19: ")
            && errs[1].contains("short window (1h) must be shorter than its long window (5m)"),
        "{all}"
    );
    assert!(
        errs[2].starts_with("probed.yaml:15:19: ")
            && errs[2].contains("time_scale must be between 1 and 100000"),
        "{all}"
    );
}

/// A secret file is a token, not a dump or a device: one over 64 KiB, or not a regular file,
/// is an error, and never read whole.
#[test]
fn secret_files_are_small_regular_files() {
    let big = "x".repeat((64 << 10) + 1);
    let exact = "y".repeat(64 << 10);
    let got = errors_of(
        r#"
notifiers:
  pager: { kind: pagerduty, routing_key_file: big }
  sms: { kind: pagerduty, routing_key_file: /dev/zero }
  ok: { kind: pagerduty, routing_key_file: exact }
"#,
        &[("big", &big), ("exact", &exact)],
        &[],
    );
    assert_eq!(
        got,
        [
            r#"probed.yaml:3:47: cannot read routing_key_file "big": larger than 64 KiB (a secret file holds one token or password)"#,
            r#"probed.yaml:4:45: cannot read routing_key_file "/dev/zero": not a regular file"#,
        ]
    );
}

/// `dump_file` (kind redis) names the dump the probe measures; it is not a secret to inline,
/// and a dump of any size costs nothing to load. Every `x_file` field of a spec is such a
/// path key: the list in `interp` is checked against the sources.
#[test]
fn dump_file_is_a_path_and_every_path_field_is_a_path_key() {
    let dump = "R".repeat(1 << 20);
    let c = ok(
        "probes:\n  - { name: cache, kind: redis, url: 'redis://127.0.0.1:6379', dump_file: data/dump.rdb }\n",
        &[("data/dump.rdb", &dump)],
        &[],
    );
    let crate::probe::ProbeSpec::Redis(r) = &c.probes[0].spec else {
        panic!("a redis probe");
    };
    assert!(r.dump_file.as_ref().unwrap().ends_with("data/dump.rdb"));

    let mut fields = Vec::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut dirs = vec![root];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let text = std::fs::read_to_string(&p).unwrap();
                for line in text.lines() {
                    let t = line.trim_start();
                    if let Some(rest) = t.strip_prefix("pub ")
                        && let Some((name, _)) = rest.split_once(':')
                        && name.ends_with("_file")
                        && name.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                    {
                        fields.push(name.to_string());
                    }
                }
            }
        }
    }
    assert!(fields.iter().any(|f| f == "dump_file"), "{fields:?}");
    for f in fields {
        assert!(
            super::interp::PATH_KEYS.contains(&f.as_str()),
            "{f} is a path field but would be read as a secret: add it to PATH_KEYS"
        );
    }
}

/// Deep nesting is cut off before either YAML parser sees it: libyaml (serde_yaml) takes
/// time with the square of the depth, minutes for 200,000 levels.
#[test]
fn nesting_deeper_than_64_levels_is_an_error_at_once() {
    // The top-level mapping is the first level.
    let at_limit = format!("x-a: {}{}\n", "[".repeat(63), "]".repeat(63));
    ok(&at_limit, &[], &[]);
    for depth in [65, 300, 200_000] {
        let flow = format!("x-a: {}{}\n", "[".repeat(depth), "]".repeat(depth));
        let got = errors_of(&flow, &[], &[]);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got[0].starts_with("probed.yaml:1:")
                && got[0].ends_with(": nested deeper than 64 levels"),
            "{got:?}"
        );
    }
    let block: String = (0..100)
        .map(|i| format!("{}a{i}:\n", "  ".repeat(i)))
        .collect();
    assert_eq!(
        errors_of(&block, &[], &[]),
        ["probed.yaml:65:132: nested deeper than 64 levels"]
    );
    assert_eq!(
        errors_of("store: { queue: 99999999999999999999 }\n", &[], &[]),
        ["probed.yaml:1:17: store.queue: number too large (at most 18446744073709551615)"]
    );
    let dashes = format!("x-a: {}a\n", "- ".repeat(200_000));
    assert_eq!(errors_of(&dashes, &[], &[]).len(), 1);
}

/// Several daemons, one store: `location` (default: the instance), `store.url` (a secret
/// interpolated like any other, never shown in a message), and probes kept to locations.
#[test]
fn locations_and_a_shared_store() {
    let c = ok(
        "instance: probed-eu-1\nlocation: eu-west\nstore: { url: \"postgres://probed:${PG_PASSWORD}@db.internal/probed\" }\n\
         probes:\n  - { name: api, kind: http, request: { url: \"http://a.example/\" }, locations: [eu-west, us-east] }\n  \
         - { name: web, kind: http, request: { url: \"http://b.example/\" } }\n",
        &[],
        &[("PG_PASSWORD", "s3cret-pw")],
    );
    assert_eq!(
        (c.instance.as_str(), c.location.as_str()),
        ("probed-eu-1", "eu-west")
    );
    assert_eq!(
        c.store.url.as_ref().map(|u| u.expose()),
        Some("postgres://probed:s3cret-pw@db.internal/probed")
    );
    assert_eq!(c.probes[0].locations, ["eu-west", "us-east"]);
    assert!(c.probes[0].runs_at("us-east") && !c.probes[0].runs_at("ap-south"));
    assert!(c.probes[1].locations.is_empty() && c.probes[1].runs_at("ap-south"));
    assert!(
        !format!("{c:?}").contains("s3cret-pw"),
        "the url is a secret"
    );

    let c = ok("instance: solo\n", &[], &[]);
    assert_eq!(c.location, "solo", "default: the instance");
    assert_eq!(c.store.url, None, "default: the SQLite file");

    assert_eq!(
        errors_of(
            "location: \"eu west\"\nstore: { url: \"mysql://u:${PW}@h/db\" }\n\
             probes:\n  - { name: a, kind: http, request: { url: \"http://a.example/\" }, locations: [] }\n  \
             - { name: b, kind: http, request: { url: \"http://a.example/\" }, locations: [x, \"y z\", x] }\n",
            &[],
            &[("PW", "hunter2-secret")],
        ),
        [
            "probed.yaml:1:11: invalid location name \"eu west\" (use letters, digits and _ . : -)",
            "probed.yaml:2:15: store.url must be a PostgreSQL URL (postgres://user:password@host/database), not \"mysql\"; leave it out for the embedded SQLite file under data_dir",
            "probed.yaml:4:78: locations is empty: the probe would run nowhere (leave it out to run it everywhere)",
            "probed.yaml:5:82: invalid location name \"y z\" (use letters, digits and _ . : -)",
            "probed.yaml:5:89: location \"x\" is listed twice",
        ]
    );
    assert_eq!(
        errors_of("store: { url: \"postgres://db.internal\" }\n", &[], &[]),
        ["probed.yaml:1:15: store.url names no database (postgres://user:password@host/database)"]
    );
}

/// `alert.locations`: a number, or a share of those reporting.
#[test]
fn alert_locations() {
    let c = ok(
        "defaults: { alert: { locations: 2 } }\nprobes:\n  - { name: a, kind: http, request: { url: \"http://a.example/\" } }\n  \
         - { name: b, kind: http, request: { url: \"http://a.example/\" }, alert: { locations: 50% } }\n",
        &[],
        &[],
    );
    use crate::config::Quorum;
    assert_eq!(c.probes[0].alert.locations, Some(Quorum::Count(2)));
    assert_eq!(c.probes[1].alert.locations, Some(Quorum::Percent(50)));
    assert_eq!(Quorum::needed(Some(Quorum::Percent(50)), 3), 2);
    assert_eq!(
        Quorum::needed(Some(Quorum::Count(2)), 1),
        1,
        "capped at those reporting"
    );
    assert_eq!(Quorum::needed(None, 4), 3, "a majority");
    assert_eq!(
        errors_of(
            "defaults: { alert: { locations: 0 } }\nprobes:\n  - { name: a, kind: http, request: { url: \"http://a.example/\" }, alert: { locations: 150% } }\n  \
             - { name: b, kind: http, request: { url: \"http://a.example/\" }, alert: { locations: most } }\n",
            &[],
            &[],
        ),
        [
            "probed.yaml:1:33: alert.locations must be a whole number from 1 to 1000",
            "probed.yaml:3:87: alert.locations as a share must be from 1% to 100%",
            "probed.yaml:4:87: alert.locations must be a number of locations (e.g. 2) or a share of those reporting (e.g. 50%)",
        ]
    );
}

/// `watchdog.blind`, `watchdog.reference`, `watchdog.lost_after`.
#[test]
fn sight_options() {
    let c = ok(
        "watchdog:\n  blind: { failing: 90%, min_hosts: 5, within: 30s }\n  \
         reference: [\"https://www.example.com/\"]\n  lost_after: 45s\n",
        &[],
        &[],
    );
    let w = &c.watchdog;
    assert_eq!(
        (w.blind.failing, w.blind.min_hosts, w.blind.within),
        (90, 5, Duration::from_secs(30))
    );
    assert_eq!(w.reference, ["https://www.example.com/"]);
    assert_eq!(w.lost_after, Duration::from_secs(45));
    let d = ok("", &[], &[]).watchdog;
    assert_eq!((d.blind.failing, d.blind.min_hosts), (80, 3));
    assert_eq!(d.lost_after, Duration::from_secs(60));
    assert_eq!(
        errors_of(
            "watchdog:\n  blind: { failing: lots }\n  reference: [\"not a url\"]\n  lost_after: 1s\n",
            &[],
            &[],
        ),
        [
            "probed.yaml:2:21: blind.failing must be a share from 1% to 100% (e.g. 80%)",
            "probed.yaml:3:15: a reference must be an absolute http(s) URL",
            "probed.yaml:4:15: lost_after must be at least 2s (daemons write every 2s)",
        ]
    );
}

/// A stock-looking blackbox.yml, as `modules_file:` reads it.
const BLACKBOX_YML: &str = r#"modules:
  http_2xx:
    prober: http
    timeout: 5s
    http:
      preferred_ip_protocol: "ip4"
      valid_status_codes: [200, 204]
      fail_if_body_not_matches_regexp: ["ok"]
      fail_if_header_not_matches:
        - { header: Content-Type, regexp: "text/.*" }
  http_post_2xx:
    prober: http
    http:
      method: POST
      headers: { X-Test: "1" }
      body: '{"a": 1}'
      no_follow_redirects: true
      basic_auth: { username: probe, password: pw-123456 }
  tcp_connect:
    prober: tcp
  ssh_banner:
    prober: tcp
    tcp:
      query_response:
        - expect: "^SSH-2.0-"
      preferred_ip_protocol: ip4
      ip_protocol_fallback: false
"#;

/// blackbox modules map onto probed's kinds; a target is added per request.
#[test]
fn blackbox_modules_load_from_a_file_and_the_config() {
    let c = ok(
        "modules_file: blackbox.yml\n\
         modules:\n  dns_soa:\n    prober: dns\n    dns: { query_name: example.com, query_type: SOA }\n\
         probe_endpoint: { allow: [\"http://127.0.0.1:*/*\", \"127.0.0.1:*\"] }\n",
        &[("blackbox.yml", BLACKBOX_YML)],
        &[],
    );
    let names: Vec<&str> = c.modules.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "dns_soa",
            "http_2xx",
            "http_post_2xx",
            "ssh_banner",
            "tcp_connect"
        ]
    );
    let http = &c.modules["http_2xx"];
    assert_eq!(
        (http.kind, http.timeout),
        ("http", Some(Duration::from_secs(5)))
    );
    let crate::probe::ProbeSpec::Http(h) = http.spec("127.0.0.1:8080/health").unwrap() else {
        panic!("an http spec");
    };
    assert_eq!(h.request.url, "http://127.0.0.1:8080/health");
    assert_eq!(
        h.expect
            .status
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>(),
        ["200", "204"]
    );
    assert_eq!(h.expect.body_regex.as_deref(), Some("ok"));
    assert_eq!(h.expect.headers["content-type"], "text/.*");
    assert_eq!(h.ip, crate::probe::http::IpPreference::Any);
    let crate::probe::ProbeSpec::Http(p) = c.modules["http_post_2xx"].spec("https://x/").unwrap()
    else {
        panic!("an http spec");
    };
    assert_eq!(p.request.method, "POST");
    assert!(!p.follow_redirects);
    assert_eq!(p.request.headers["X-Test"], "1");
    assert_eq!(
        p.request.headers["Authorization"],
        "Basic cHJvYmU6cHctMTIzNDU2"
    );
    let crate::probe::ProbeSpec::Tcp(t) = c.modules["ssh_banner"].spec("127.0.0.1:22").unwrap()
    else {
        panic!("a tcp spec");
    };
    assert_eq!((t.host.as_str(), t.port), ("127.0.0.1", 22));
    assert_eq!(t.expect.regex.as_deref(), Some("^SSH-2.0-"));
    assert_eq!(t.ip, crate::probe::http::IpPreference::Ipv4);
    assert!(
        c.modules["tcp_connect"].spec("127.0.0.1").is_err(),
        "no port"
    );
    let crate::probe::ProbeSpec::Dns(d) = c.modules["dns_soa"].spec("10.0.0.53").unwrap() else {
        panic!("a dns spec");
    };
    assert_eq!(d.nameservers, ["10.0.0.53"]);
    assert_eq!(d.expect.min_answers, Some(0));
    let ep = c.probe_endpoint.unwrap();
    assert!(ep.allows("http://127.0.0.1:9/x") && ep.allows("127.0.0.1:22"));
    assert!(!ep.allows("http://10.0.0.1:9/x"));
    // Without probe_endpoint, /probe is off.
    assert!(ok("", &[], &[]).probe_endpoint.is_none());
}

/// Every module problem, at the blackbox key, in words: unknown keys with a "did you mean",
/// blackbox keys probed cannot honour named as such, icmp, a probed check failing.
#[test]
fn blackbox_module_errors() {
    let got = errors_of(
        r#"modules:
  web:
    prober: http
    timout: 5s
    http:
      valid_status_code: [200]
      valid_http_versions: ["HTTP/1.1"]
      fail_if_body_not_matches_regexp: ["a", "b"]
      tls_config: { cert_file: c.pem, insecure_skip_verify: true }
      fail_if_header_not_matches: [{ header: X, regexp: ".*", allow_missing: true }]
  ping:
    prober: icmp
  grpc:
    prober: grpc
  typo:
    prober: htp
  bad_re:
    prober: http
    http: { fail_if_body_not_matches_regexp: ["("], method: "GE T" }
  banner:
    prober: tcp
    tcp:
      query_response: [{ expect: "^SSH" }, { send: "hi", starttls: true }]
  other_section:
    prober: tcp
    http: { method: GET }
  dns:
    prober: dns
    dns: { query_type: A, valid_rcodes: [NOERROR, SERVFAIL], transport_protocol: tcp }
probe_endpoint:
  allow: ["http://127.0.0.1:*/*", "", "http://h/a?b", "**"]
"#,
        &[],
        &[],
    );
    let want = [
        "probed.yaml:4:5: unknown key \"timout\", did you mean \"timeout\"?",
        "probed.yaml:6:7: unknown key \"valid_status_code\", did you mean \"valid_status_codes\"?",
        "probed.yaml:7:7: blackbox key \"valid_http_versions\" is not supported by probed (probed does not judge the HTTP version)",
        "probed.yaml:8:40: probed takes one regular expression in fail_if_body_not_matches_regexp, not 2 (blackbox requires each to match: write them as one)",
        "probed.yaml:9:21: blackbox key \"cert_file\" is not supported by probed (probed does not present client certificates)",
        "probed.yaml:10:63: blackbox key \"allow_missing\" is not supported by probed (a header under expect must be present)",
        "probed.yaml:12:13: prober \"icmp\" is not supported by probed: this build has no icmp kind (a tcp module, tcp_connect, checks that a host answers on a port)",
        "probed.yaml:14:13: prober \"grpc\" is not supported by probed",
        "probed.yaml:16:13: unknown prober \"htp\", did you mean \"http\"?",
        "probed.yaml:19:47: invalid regular expression: unclosed group",
        "probed.yaml:19:61: invalid method \"GE T\" (write e.g. GET, POST)",
        "probed.yaml:23:23: probed's tcp kind sends at most once and then reads at most once; this query_response does expect, send (write [send], [expect] or [send, expect])",
        "probed.yaml:23:58: blackbox key \"starttls\" is not supported by probed (probed's tcp kind does TLS from the start (tls: true) only)",
        "probed.yaml:26:5: the \"http\" section applies to prober http; this module's prober is tcp",
        "probed.yaml:29:5: missing required key \"query_name\"",
        "probed.yaml:29:41: probed expects one rcode, NOERROR or NXDOMAIN (write valid_rcodes: [NOERROR] or [NXDOMAIN])",
        "probed.yaml:29:82: transport_protocol: only udp is supported by probed (probed asks over udp)",
        "probed.yaml:31:35: allow pattern is empty",
        "probed.yaml:31:39: allow pattern \"http://h/a?b\": '?' is not a wildcard here (patterns take * only)",
        "probed.yaml:31:55: allow pattern \"**\": write one * (it matches one host label, octet, port or path segment; a final /* matches every path below)",
    ];
    assert_eq!(got, want);
}

/// A module in both `modules:` and the `modules_file:` is an error naming both places; the
/// endpoint needs `allow` and a module; a modules file that cannot be read says so.
#[test]
fn blackbox_module_duplicates_and_endpoint_errors() {
    let got = errors_of(
        "modules:\n  http_2xx: { prober: http }\nmodules_file: blackbox.yml\n",
        &[("blackbox.yml", BLACKBOX_YML)],
        &[],
    );
    assert_eq!(
        got,
        [
            "blackbox.yml:2:3: module \"http_2xx\" is defined twice: at probed.yaml:2:3 (modules:) and at blackbox.yml:2:3 (modules_file); keep one"
        ]
    );
    let got = errors_of("probe_endpoint: {}\n", &[], &[]);
    assert_eq!(got, ["probed.yaml:1:1: missing required key \"allow\""]);
    let got = errors_of("probe_endpoint: { allow: [\"127.0.0.1:*\"] }\n", &[], &[]);
    assert_eq!(
        got,
        ["probed.yaml:1:1: probe_endpoint is set but no module is: add modules: or modules_file:"]
    );
    let got = errors_of(
        "probe_endpoint: { allow: [\"127.0.0.1:*\"] }\nmodules_file: nope.yml\n",
        &[],
        &[],
    );
    assert_eq!(
        got,
        ["probed.yaml:2:15: cannot read modules_file \"nope.yml\": no such file or directory"]
    );
}
