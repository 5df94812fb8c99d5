//! End to end: the real `probed` and `probectl` binaries against local targets.

mod support;

use std::time::Duration;

use support::{Daemon, Target, probectl, wait_for};

fn one_probe(name: &str, url: &str, every: &str, after: u32) -> String {
    format!(
        "probes:\n  - name: {name}\n    kind: http\n    every: {every}\n    timeout: 250ms\n    \
         request: {{ url: \"{url}\" }}\n    alert: {{ after: {after}, recover_after: 1 }}\n"
    )
}

/// The acceptance test: a target goes off and on; `probectl status --json` follows
/// up -> down -> up within `after x every` plus a second, and the results are in SQLite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn target_off_and_on_goes_up_down_up() {
    let mut target = Target::start().await;
    let every = Duration::from_millis(500);
    let after = 2u32;
    let mut d = Daemon::new(&one_probe("web", &target.url("/"), "500ms", after), "");
    d.start();
    let bound = every * after + Duration::from_secs(1);

    d.wait_state("web", "up", Duration::from_secs(10));
    let (v, code) = d.status();
    assert_eq!(code, 0, "all up is exit 0: {v}");
    assert_eq!(v["daemon"]["alive"], true);
    let p = &v["probes"][0];
    assert_eq!(p["kind"], "http");
    assert!(p["last_latency_ms"].as_f64().unwrap() > 0.0);
    assert!(p["last_checked_at"].as_str().unwrap().ends_with('Z'));

    target.off();
    let took = d.wait_state("web", "down", bound + Duration::from_secs(5));
    assert!(took <= bound, "down after {took:?}, bound {bound:?}");
    let (v, code) = d.status();
    assert_eq!(code, 2, "something down is exit 2: {v}");
    let err = v["probes"][0]["last_error"].as_str().unwrap();
    assert!(err.contains("refused"), "reason names the refusal: {err}");

    target.on().await;
    let took = d.wait_state("web", "up", bound + Duration::from_secs(5));
    assert!(took <= bound, "up again after {took:?}, bound {bound:?}");

    // The table form shows the probe and its state.
    let out = d.probectl(&["status"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("web") && table.contains("UP"), "{table}");

    // history through the API, newest first, with failures in it.
    let out = d.probectl(&["history", "web", "--json", "-n", "1000"]);
    assert!(out.status.success());
    let h: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = h["results"].as_array().unwrap();
    assert!(rows.iter().any(|r| r["ok"] == false));
    assert!(rows.iter().any(|r| r["ok"] == true));

    // Stop cleanly; everything is in SQLite, including the state changes.
    let st = d.stop();
    assert!(st.success(), "SIGTERM exit: {st}\n{}", d.log());
    let db = sqlite(&d.db()).await;
    let (ok, failed): (i64, i64) = sqlx::query_as(
        "SELECT sum(ok), sum(1 - ok) FROM results r JOIN probes p ON p.id = r.probe_id WHERE p.name = 'web'",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert!(
        ok >= 2 && failed >= after as i64,
        "ok {ok}, failed {failed}"
    );
    // The probe's own changes (loc -1) and this location's verdict's (a lone daemon: the
    // same).
    for loc in [-1, 0] {
        let changes: Vec<(String, String)> = sqlx::query_as(
            "SELECT from_state, to_state FROM state_changes WHERE loc = ? ORDER BY id",
        )
        .bind(loc)
        .fetch_all(&db)
        .await
        .unwrap();
        let changes: Vec<String> = changes
            .into_iter()
            .map(|(a, b)| format!("{a}->{b}"))
            .collect();
        assert_eq!(
            changes,
            ["pending->up", "up->down", "down->up"],
            "loc {loc}"
        );
    }
}

async fn sqlite(path: &std::path::Path) -> sqlx::SqlitePool {
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .read_only(true);
    sqlx::SqlitePool::connect_with(opts).await.unwrap()
}

/// State survives a restart: a probe that was down comes back down, not pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_resumes_after_restart() {
    let mut target = Target::start().await;
    target.off();
    let mut d = Daemon::new(&one_probe("gone", &target.url("/"), "300ms", 1), "");
    d.start();
    d.wait_state("gone", "down", Duration::from_secs(10));
    assert!(d.stop().success());
    d.start();
    // The very first status after the restart already knows.
    let (v, _) = d.status();
    assert_eq!(v["probes"][0]["state"], "down", "{v}");
    assert!(v["probes"][0]["since"].is_string());
    assert!(v["probes"][0]["uptime_24h"].as_f64() == Some(0.0), "{v}");
}

/// SIGHUP reloads: a new probe appears; a broken config is refused and the last good one
/// keeps running, with the failure visible in /healthz and status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reload_keeps_last_good_config() {
    let target = Target::start().await;
    let mut d = Daemon::new(&one_probe("first", &target.url("/a"), "300ms", 1), "");
    d.start();
    d.wait_state("first", "up", Duration::from_secs(10));

    let two = format!(
        "{}  - name: second\n    kind: http\n    every: 300ms\n    timeout: 200ms\n    request: {{ url: \"{}\" }}\n",
        one_probe("first", &target.url("/a"), "300ms", 1),
        target.url("/b")
    );
    d.write_probes(&two);
    d.signal("HUP");
    d.wait_state("second", "up", Duration::from_secs(10));

    d.write_probes("probes:\n  - name: broken\n    kind: htp\n");
    d.signal("HUP");
    wait_for(Duration::from_secs(10), "the failed reload to show", || {
        let (v, _) = d.status();
        v["daemon"]["healthy"] == false
    });
    let (v, code) = d.status();
    let names: Vec<&str> = v["probes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["first", "second"], "last good config still runs");
    assert_eq!(
        code, 1,
        "unhealthy daemon with all probes up is exit 1: {v}"
    );
    let problems = v["daemon"]["problems"].to_string();
    assert!(problems.contains("reload"), "{problems}");
    assert!(d.log().contains("did you mean"), "reload errors are logged");
    assert!(d.stop().success());
}

/// `--log-format json` (here through its env var) logs one JSON object per line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs() {
    let target = Target::start().await;
    let mut d = Daemon::new(&one_probe("web", &target.url("/"), "300ms", 1), "");
    d.start_env(&[("PROBED_LOG_FORMAT", "json")]);
    d.wait_state("web", "up", Duration::from_secs(10));
    assert!(d.stop().success());
    let log = d.log();
    let events: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(
        events.iter().any(|e| e["message"] == "probed started"),
        "{log}"
    );
    assert!(
        events.iter().any(|e| e["message"] == "probe state changed"
            && e["probe"] == "web"
            && e["to"] == "up"),
        "{log}"
    );
}

/// Secrets in the config (URL userinfo, header values from the environment, a token from a
/// file) appear nowhere: not in logs, the status API, history, metrics or probectl output.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_leak() {
    const PASS: &str = "s3cr3t-userinfo-pw";
    const TOKEN: &str = "tok-9f8e7d6c5b4a";
    const ADMIN: &str = "admin-1234567890";
    let mut refused = Target::start().await;
    refused.off();
    let probes = format!(
        "probes:\n  \
         - name: leaky-refused\n    kind: http\n    every: 300ms\n    timeout: 250ms\n    \
           request: {{ url: \"http://user:{PASS}@{}/x?token={TOKEN}\", headers: {{ authorization: \"Bearer ${{API_TOKEN}}\" }} }}\n  \
         - name: leaky-nxdomain\n    kind: http\n    every: 300ms\n    timeout: 250ms\n    \
           request: {{ url: \"https://user:{PASS}@nosuch.invalid/?k={TOKEN}\" }}\n",
        refused.addr
    );
    let mut d = Daemon::new(&probes, "admin_token_file: admin.token\n");
    std::fs::write(d.dir.path().join("admin.token"), ADMIN).unwrap();
    d.start_env(&[("API_TOKEN", TOKEN)]);
    d.wait_state("leaky-refused", "down", Duration::from_secs(10));
    let mut outputs = vec![
        String::from_utf8_lossy(&d.probectl(&["status"]).stdout).into_owned(),
        String::from_utf8_lossy(&d.probectl(&["status", "--json"]).stdout).into_owned(),
        String::from_utf8_lossy(&d.probectl(&["history", "leaky-refused"]).stdout).into_owned(),
        String::from_utf8_lossy(&d.probectl(&["history", "leaky-nxdomain", "--json"]).stdout)
            .into_owned(),
        http_get(&format!("{}/metrics", d.url())).await,
        http_get(&format!("{}/api/v1/probes/leaky-refused/results", d.url())).await,
    ];
    for name in ["leaky-refused", "leaky-nxdomain"] {
        let out = d.probectl(&["run", name, "--json"]);
        outputs.push(String::from_utf8_lossy(&out.stdout).into_owned());
        outputs.push(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    assert!(d.stop().success());
    outputs.push(d.log());
    assert!(outputs[0].contains("leaky-refused"), "{}", outputs[0]);
    // The reasons are there (the paths a secret could leak through were exercised).
    assert!(outputs[1].contains("connection refused"), "{}", outputs[1]);
    for out in &outputs {
        for secret in [PASS, TOKEN, ADMIN] {
            assert!(!out.contains(secret), "secret {secret} leaked in:\n{out}");
        }
    }
}

/// `probectl status` when nothing listens: exit 3 and one clear line, no stack trace.
#[test]
fn status_without_daemon_is_unknown() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("probed.yaml");
    std::fs::write(
        &cfg,
        format!("listen: 127.0.0.1:{}\nprobes: []\n", support::free_port()),
    )
    .unwrap();
    let out = probectl(&cfg, &["status"]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot reach probed at http://127.0.0.1:"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    let out = probectl(&cfg, &["status", "--json"]);
    assert_eq!(out.status.code(), Some(3));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["daemon"]["alive"], false);
}

/// `probectl check-config`: a summary and exit 0, or every error and exit 1.
#[test]
fn check_config_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.yaml");
    std::fs::write(
        &good,
        "probes:\n  - { name: a, kind: http, request: { url: \"http://127.0.0.1:1/\" } }\n",
    )
    .unwrap();
    let out = probectl(&good, &["check-config"]);
    assert_eq!(out.status.code(), Some(0));
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("ok: 1 probes (1 http)"), "{s}");

    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "listen: nope\nprobes:\n  - { name: a, kind: http, timout: 1s, request: { url: \"http://x/\" } }\n  - { name: a, kind: http, request: { url: \"http://x/\" } }\n",
    )
    .unwrap();
    let out = probectl(&bad, &["check-config"]);
    assert_eq!(out.status.code(), Some(1));
    let s = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = s.lines().collect();
    assert!(lines.len() >= 3, "every error reported: {s}");
    for l in &lines {
        assert!(
            l.starts_with(&format!("{}:", bad.display())),
            "file:line:col form: {l}"
        );
    }
    assert!(s.contains("did you mean \"timeout\""), "{s}");
    assert!(s.contains("duplicate probe name"), "{s}");
}

/// `probectl run`: one check without the daemon; exit 0 up, 2 down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probectl_run_prints_phases_and_verdict() {
    let mut target = Target::start().await;
    let d = Daemon::new(&one_probe("web", &target.url("/x"), "10s", 1), "");
    let out = d.probectl(&["run", "web"]);
    let s = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{s}");
    for phase in [
        "resolve",
        "connect",
        "processing",
        "transfer",
        "total",
        "status 200",
    ] {
        assert!(s.contains(phase), "{phase} missing in:\n{s}");
    }
    target.off();
    let out = d.probectl(&["run", "web", "--json"]);
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert!(v["error"].as_str().unwrap().contains("refused"), "{v}");
    let out = d.probectl(&["run", "wbe"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("did you mean \"web\""));
}

/// /metrics speaks the blackbox_exporter names with a `probe` label and the target as
/// `instance`, plus probed_* metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_use_blackbox_names() {
    let target = Target::start().await;
    let probes = format!(
        "{}  - {{ name: port, kind: tcp, every: 300ms, timeout: 250ms, host: 127.0.0.1, port: {} }}\n",
        one_probe("web", &target.url("/"), "300ms", 1),
        target.addr.port()
    );
    let mut d = Daemon::new(&probes, "");
    d.start();
    d.wait_state("web", "up", Duration::from_secs(10));
    d.wait_state("port", "up", Duration::from_secs(10));
    let text = http_get(&format!("{}/metrics", d.url())).await;
    let port = format!(
        "probe=\"port\",instance=\"127.0.0.1:{}\"",
        target.addr.port()
    );
    let web = format!("probe=\"web\",instance=\"{}\"", target.url("/"));
    for want in [
        format!("probe_success{{{port}}} 1"),
        format!("probed_phase_duration_seconds{{{port},phase=\"connect\"}}"),
        format!("probe_success{{{web}}} 1"),
        format!("probe_http_status_code{{{web}}} 200"),
        format!("probe_http_duration_seconds{{{web},phase=\"connect\"}}"),
        format!("probe_duration_seconds{{{web}}}"),
        format!("probed_runs_total{{{web},result=\"success\"}}"),
        format!("probed_probe_state{{{web},state=\"up\"}} 1"),
        "probed_schedule_lag_seconds_bucket".into(),
        "probed_store_queue_depth".into(),
        "probed_store_dropped_total 0".into(),
    ] {
        assert!(
            text.contains(&want),
            "{want} missing from /metrics:\n{text}"
        );
    }
    let health = http_get(&format!("{}/healthz", d.url())).await;
    assert!(health.contains("\"status\":\"ok\""), "{health}");
    assert!(d.stop().success());
}

async fn http_get(url: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut s = tokio::net::TcpStream::connect(host).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut buf))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&buf).into_owned()
}

/// `kind: push`: jobs ping in; silence past period + grace is `down`, a `/fail` ping is
/// `down` with its exit status, and the clock survives a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_heartbeats_and_a_clock_that_survives_restarts() {
    const TOKEN: &str = "nightly-backup-0123456789";
    let mut d = Daemon::new(
        &format!(
            "probes:\n  - name: nightly\n    kind: push\n    every: 200ms\n    timeout: 100ms\n    \
             token: {TOKEN}\n    period: 1s\n    grace: 1s\n    alert: {{ after: 1 }}\n"
        ),
        "",
    );
    d.start();
    let ping =
        |path: &str| support::http_post_blocking(&format!("{}/api/v1/push/{TOKEN}{path}", d.url()));
    assert!(ping("").starts_with("HTTP/1.1 200"));
    d.wait_state("nightly", "up", Duration::from_secs(10));
    assert!(ping("/fail?exit_status=3").starts_with("HTTP/1.1 200"));
    d.wait_state("nightly", "down", Duration::from_secs(10));
    let (v, _) = d.status();
    assert_eq!(
        v["probes"][0]["last_error"]
            .as_str()
            .unwrap()
            .split(" (exit")
            .next(),
        Some("the job reported a failure")
    );
    assert!(
        v["probes"][0]["last_error"]
            .as_str()
            .unwrap()
            .contains("exit status 3")
    );
    assert!(ping("").starts_with("HTTP/1.1 200"));
    d.wait_state("nightly", "up", Duration::from_secs(10));
    // Unknown token: 404, and nothing says which tokens exist.
    let r = support::http_post_blocking(&format!("{}/api/v1/push/not-a-real-token-000", d.url()));
    assert!(r.starts_with("HTTP/1.1 404"), "{r}");

    // Restart right after a successful ping and stay silent: the probe goes down measured
    // from that ping, not from the restart.
    assert!(d.stop().success());
    d.start();
    d.wait_state("nightly", "down", Duration::from_secs(10));
    let (v, _) = d.status();
    let reason = v["probes"][0]["last_error"].as_str().unwrap();
    assert!(reason.starts_with("last successful ping"), "{reason}");
    assert!(d.stop().success());
    assert!(!d.log().contains(TOKEN), "the token is never logged");
    assert!(!v.to_string().contains(TOKEN));
}

/// The dead-man's switch: the heartbeat URL is pinged while the daemon is healthy, and gets
/// `/fail` once it is not (here: a failed reload). The URL's secret never shows in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_pings_while_healthy_and_fails_when_not() {
    let recv = support::receiver::Receiver::webhook(vec![]).await;
    let target = Target::start().await;
    let mut d = Daemon::new(
        &one_probe("web", &target.url("/"), "300ms", 1),
        &format!(
            "watchdog:\n  heartbeat: {{ url: \"{}/ping/hb-secret-4711\", every: 200ms }}\n",
            recv.url()
        ),
    );
    d.start();
    recv.wait_accepted(Duration::from_secs(10), "two healthy pings", |r| {
        r.iter()
            .filter(|r| r.path == "/ping/hb-secret-4711")
            .count()
            >= 2
    });
    d.write_probes("probes:\n  - name: broken\n    kind: htp\n");
    d.signal("HUP");
    recv.wait_accepted(Duration::from_secs(10), "a /fail ping", |r| {
        r.iter().any(|r| r.path == "/ping/hb-secret-4711/fail")
    });
    assert!(d.stop().success());
    assert!(!d.log().contains("hb-secret-4711"));
}

/// Heartbeats follow the config: a reload that moves the heartbeat to another URL stops the
/// old pings and starts the new ones, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_changes_apply_on_reload() {
    let recv = support::receiver::Receiver::webhook(vec![]).await;
    let target = Target::start().await;
    let mut d = Daemon::new(
        &one_probe("web", &target.url("/"), "300ms", 1),
        &format!(
            "watchdog:\n  heartbeat: {{ url: \"{}/ping/old\", every: 200ms }}\n",
            recv.url()
        ),
    );
    d.start();
    recv.wait_accepted(Duration::from_secs(10), "pings to the old URL", |r| {
        r.iter().filter(|r| r.path == "/ping/old").count() >= 2
    });
    let cfg = std::fs::read_to_string(&d.config).unwrap();
    std::fs::write(&d.config, cfg.replace("/ping/old", "/ping/new")).unwrap();
    d.signal("HUP");
    recv.wait_accepted(Duration::from_secs(10), "pings to the new URL", |r| {
        r.iter().filter(|r| r.path == "/ping/new").count() >= 2
    });
    // Once the new ones run, the old ones have stopped: none after the second new ping.
    let reqs = recv.requests();
    let second_new = reqs
        .iter()
        .enumerate()
        .filter(|(_, r)| r.path == "/ping/new")
        .nth(1)
        .map(|(i, _)| i)
        .unwrap();
    assert!(
        reqs[second_new..].iter().all(|r| r.path != "/ping/old"),
        "{:?}",
        reqs.iter().map(|r| r.path.as_str()).collect::<Vec<_>>()
    );
    assert!(
        reqs.iter().all(|r| !r.path.ends_with("/fail")),
        "healthy throughout"
    );
    assert!(d.stop().success());
}

/// systemd `Type=notify`: READY=1 once running, then WATCHDOG=1 keep-alives at half of
/// WATCHDOG_USEC, over a real notify socket.
#[test]
fn systemd_ready_and_watchdog_keepalives() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut d = Daemon::new("probes: []\n", "");
    d.start_env(&[
        ("NOTIFY_SOCKET", path.to_str().unwrap()),
        ("WATCHDOG_USEC", "400000"),
    ]);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got
        .iter()
        .filter(|m: &&String| m.contains("WATCHDOG=1"))
        .count()
        < 2
    {
        let n = sock
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no notification ({e}); got {got:?}"));
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert!(got[0].contains("READY=1"), "{got:?}");
    assert!(got.iter().any(|m| m.contains("STATUS=")), "{got:?}");
    assert!(d.stop().success());
}

/// Config values that once passed `check-config` and then crashed the daemon, and files
/// that the loader read whole. Against the real binaries: `check-config` names each at its
/// line and column; a reload with them is refused and the daemon goes on; a redis probe's
/// `dump_file` (a path, never read by the loader) of 1 GiB reloads at once; a `data_dir`
/// change is logged as waiting for a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_config_values_are_refused_and_a_reload_survives_them() {
    let target = Target::start().await;
    let first = one_probe("first", &target.url("/"), "300ms", 1);
    let mut d = Daemon::new(&first, "");
    d.start();
    d.wait_state("first", "up", Duration::from_secs(10));

    // check-config: every bad number at its place, exit 1.
    let bad = d.dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "store: { queue: 18446744073709551615 }\n\
         defaults: { max_concurrent: 18446744073709551615, max_per_host: 18446744073709551615 }\n\
         probes: /dev/zero\n",
    )
    .unwrap();
    let out = probectl(&bad, &["check-config"]);
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    for want in [
        "bad.yaml:1:17: queue must be a whole number from 1 to 10000000",
        "bad.yaml:2:29: max_concurrent must be a whole number from 1 to 100000",
        "bad.yaml:2:65: max_per_host must be a whole number from 1 to 100000",
        "bad.yaml:3:9: cannot read \"/dev/zero\": larger than 32 MiB",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }

    // A redis probe with a 1 GiB dump file (sparse): the loader never reads it.
    let dump = d.dir.path().join("dump.rdb");
    std::fs::File::create(&dump)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    d.write_probes(&format!(
        "{first}  - name: cache\n    kind: redis\n    every: 1s\n    timeout: 500ms\n    \
         url: \"redis://127.0.0.1:9\"\n    dump_file: dump.rdb\n"
    ));
    d.signal("HUP");
    wait_for(Duration::from_secs(10), "the cache probe to appear", || {
        let (v, _) = d.status();
        v["probes"]
            .as_array()
            .is_some_and(|l| l.iter().any(|p| p["name"] == "cache"))
    });

    // The crashing numbers on reload: refused, the daemon stays.
    let port = d.port;
    let main = |extra: &str| {
        format!("listen: 127.0.0.1:{port}\ndata_dir: ./data\nprobes: probes.yaml\n{extra}")
    };
    std::fs::write(&d.config, main("store: { queue: 18446744073709551615 }\n")).unwrap();
    d.signal("HUP");
    wait_for(
        Duration::from_secs(10),
        "the refused reload to show",
        || d.status().0["daemon"]["healthy"] == false,
    );
    assert!(d.log().contains("queue must be a whole number"));

    // A data_dir change waits for a restart, and says so.
    std::fs::write(&d.config, main("").replace("./data", "./elsewhere")).unwrap();
    d.signal("HUP");
    wait_for(Duration::from_secs(10), "the data_dir warning", || {
        d.log().contains("setting=\"data_dir\"") || d.log().contains("setting=data_dir")
    });
    d.wait_state("first", "up", Duration::from_secs(5));
    assert!(d.stop().success(), "{}", d.log());
}
