//! probectl as a command line and a Nagios / Icinga plugin: the real `probed` and
//! `probectl` binaries. `check` speaks the Monitoring Plugins guidelines (first line,
//! perfdata, exit 0/1/2/3), usage errors exit 3, completions and man pages are generated.

mod support;

use std::process::{Command, Output};
use std::time::Duration;

use regex::Regex;
use support::{Daemon, Target, free_port, probectl};

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn first_line(o: &Output) -> String {
    stdout(o).lines().next().unwrap_or_default().to_owned()
}

/// `probectl` alone, without a config or a daemon.
fn bare(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_probectl"))
        .args(args)
        .env_remove("PROBED_URL")
        .env_remove("PROBED_CONFIG")
        .output()
        .expect("run probectl")
}

/// One daemon with a probe in each state a plugin tells apart: `web` up, `gone` down
/// (nothing listens), `slow` degraded (Apdex), `job` pending (a yearly cron probe, run
/// on 1 January only: no verdict yet).
#[test]
fn check_speaks_the_plugin_guidelines() {
    let rt = support::runtime();
    let target = rt.block_on(Target::start());
    let lab = support::lab(&rt);
    lab.set_latency(Duration::from_millis(120));
    let probes = format!(
        "probes:\n\
         \x20 - name: web\n    kind: http\n    every: 200ms\n    timeout: 180ms\n    \
         request: {{ url: \"{}\" }}\n\
         \x20 - name: gone\n    kind: http\n    every: 200ms\n    timeout: 180ms\n    \
         request: {{ url: \"http://127.0.0.1:{}/\" }}\n    alert: {{ after: 1 }}\n\
         \x20 - name: slow\n    kind: http\n    every: 200ms\n    timeout: 180ms\n    \
         request: {{ url: \"{}\" }}\n    \
         slo: {{ apdex: {{ target: 50ms, window: 5m }}, time_scale: 150, min_runs: 5 }}\n\
         \x20 - name: job\n    kind: http\n    cron: \"0 0 1 1 *\"\n    timeout: 1s\n    \
         request: {{ url: \"{}\" }}\n",
        target.url("/"),
        free_port(),
        lab.url("/"),
        target.url("/"),
    );
    let mut d = Daemon::new(&probes, "");
    d.start();
    d.wait_state("web", "up", Duration::from_secs(10));
    d.wait_state("gone", "down", Duration::from_secs(10));
    d.wait_state("slow", "degraded", Duration::from_secs(20));
    assert_eq!(d.probe_state("job"), "pending");

    // The first line: service, state word, summary, then `|` and perfdata
    // `label=value[UOM];warn;crit;min;max`.
    let line =
        Regex::new(r"^PROBED (OK|WARNING|CRITICAL|UNKNOWN) - ([^|]+?)(?: \| (.+))?$").unwrap();
    let datum = Regex::new(r"^'?[^=']+'?=-?[0-9.]+(s|%)?(;[0-9.]*){0,4}$").unwrap();
    let cases: &[(&[&str], i32, &str, &str)] = &[
        (&["check", "web"], 0, "OK", r"^web up, [0-9.]+ms$"),
        (
            &["check", "slow"],
            1,
            "WARNING",
            r"^slow degraded: Apdex .*, [0-9.]+ms$",
        ),
        (
            &["check", "gone"],
            2,
            "CRITICAL",
            r"^gone down: .*refused.*",
        ),
        (
            &["check", "job"],
            3,
            "UNKNOWN",
            r"^job pending: no verdict yet$",
        ),
        (
            &["check", "nope"],
            3,
            "UNKNOWN",
            r#"^the daemon has no probe named "nope""#,
        ),
        // Latency thresholds: far above a local answer, and below the lab's 120 ms.
        (
            &["check", "web", "--warning", "1h", "--critical", "2h"],
            0,
            "OK",
            r"^web up",
        ),
        (
            &["check", "slow", "--critical", "100ms"],
            2,
            "CRITICAL",
            r"^slow degraded: .*, 1[0-9]{2}ms \(>= 100ms critical\)$",
        ),
        // Every probe: the worst wins, as for `status`.
        (
            &["check"],
            2,
            "CRITICAL",
            r"^4 probes: 1 up, 1 down, 1 degraded, 1 pending; gone down",
        ),
    ];
    for (args, code, word, summary) in cases {
        let out = d.probectl(args);
        let first = first_line(&out);
        assert_eq!(out.status.code(), Some(*code), "{args:?}: {}", stdout(&out));
        let c = line
            .captures(&first)
            .unwrap_or_else(|| panic!("{args:?}: not a plugin line: {first:?}"));
        assert_eq!(&c[1], *word, "{args:?}: {first}");
        assert!(
            Regex::new(summary).unwrap().is_match(&c[2]),
            "{args:?}: summary {:?} !~ {summary}",
            &c[2]
        );
        for p in c
            .get(3)
            .map(|m| m.as_str())
            .unwrap_or("")
            .split_whitespace()
        {
            assert!(datum.is_match(p), "{args:?}: bad perfdata {p:?} in {first}");
        }
    }

    // One probe's perfdata: latency in seconds with the thresholds, uptime in percent.
    let out = d.probectl(&["check", "web", "--warning", "500ms", "--critical", "2s"]);
    let first = first_line(&out);
    assert!(
        Regex::new(r" \| latency=0\.[0-9]+s;0\.5;2;0 uptime=[0-9.]+%;;;0;100$")
            .unwrap()
            .is_match(&first),
        "{first}"
    );
    // Every probe: counts per state, then one line per probe that is not OK, worst first.
    let out = d.probectl(&["check"]);
    let text = stdout(&out);
    assert!(
        text.lines()
            .next()
            .unwrap()
            .ends_with("| up=1;;;0;4 down=1;;;0;4 degraded=1;;;0;4 pending=1;;;0;4 unknown=0;;;0;4 paused=0;;;0;4"),
        "{text}"
    );
    let rest: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(rest.len(), 3, "{text}");
    assert!(rest[0].starts_with("CRITICAL: gone down: "), "{text}");
    assert!(rest[1].starts_with("UNKNOWN: job pending"), "{text}");
    assert!(rest[2].starts_with("WARNING: slow degraded"), "{text}");

    // --json: the same verdict, for scripts.
    let out = d.probectl(&["check", "gone", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(v["state"], "CRITICAL");
    assert_eq!(v["exit"], 2);
    assert_eq!(v["perfdata"][0]["label"], "latency");

    // Usage errors are UNKNOWN (3), said on stdout too, where Nagios reads.
    for args in [
        &["check", "web", "extra"][..],
        &["check", "--warning", "soon"],
        &["check", "--bogus"],
        &["status", "web-home"],
        &["silence", "web", "--for", "a while"],
        &["no-such-command"],
    ] {
        let out = d.probectl(args);
        assert_eq!(
            out.status.code(),
            Some(3),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.stderr.is_empty(), "{args:?}: says why on stderr");
        if args[0] == "check" {
            assert!(
                first_line(&out).starts_with("PROBED UNKNOWN - usage error: "),
                "{args:?}: {}",
                stdout(&out)
            );
        }
    }

    // The daemon gone: UNKNOWN with the reason, for one probe and for all.
    d.stop();
    for args in [&["check", "web"][..], &["check"]] {
        let out = d.probectl(args);
        assert_eq!(out.status.code(), Some(3), "{args:?}");
        assert!(
            first_line(&out)
                .starts_with("PROBED UNKNOWN - cannot reach probed at http://127.0.0.1:"),
            "{args:?}: {}",
            stdout(&out)
        );
    }
}

/// `--help` and `--version` are not errors; no command at all is a usage error. Off a
/// terminal nothing is coloured.
#[test]
fn help_and_version_exit_0_usage_errors_3() {
    for (args, code) in [
        (&["--help"][..], 0),
        (&["--version"], 0),
        (&["check", "--help"], 0),
        (&["help", "check"], 0),
        (&[], 3),
        (&["status", "--nope"], 3),
        (&["lab", "--latency", "fast"], 3),
    ] {
        let out = bare(args);
        // Not a terminal: no colour, whatever the command.
        assert!(
            !out.stdout.contains(&0x1b) && !out.stderr.contains(&0x1b),
            "{args:?}: escape codes off a terminal"
        );
        assert_eq!(
            out.status.code(),
            Some(code),
            "{args:?}: {}{}",
            stdout(&out),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let help = stdout(&bare(&["--help"]));
    assert!(
        help.contains("3  UNKNOWN"),
        "the exit statuses in --help: {help}"
    );
    assert!(stdout(&bare(&["--version"])).starts_with("probectl "));
}

#[test]
fn completions_for_every_shell() {
    let bash = bare(&["completions", "bash"]);
    assert_eq!(bash.status.code(), Some(0));
    let script = stdout(&bash);
    assert!(
        script.contains("probectl") && script.contains("check"),
        "{script}"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("probectl.bash");
    std::fs::write(&file, &script).unwrap();
    let syntax = Command::new("bash").arg("-n").arg(&file).output().unwrap();
    assert!(
        syntax.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&syntax.stderr)
    );
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = bare(&["completions", shell]);
        assert_eq!(out.status.code(), Some(0), "{shell}");
        assert!(
            stdout(&out).contains("probectl"),
            "{shell}: {}",
            stdout(&out)
        );
    }
    assert_eq!(bare(&["completions", "tcsh"]).status.code(), Some(3));
}

#[test]
fn man_pages_render() {
    let out = bare(&["man"]);
    assert_eq!(out.status.code(), Some(0));
    let page = stdout(&out);
    assert!(
        page.lines().any(|l| l.starts_with(".TH probectl 1")),
        "{page}"
    );
    assert!(
        page.contains("completions") && page.contains("UNKNOWN"),
        "{page}"
    );

    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("man1");
    let out = bare(&["man", "--out", out_dir.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for name in [
        "probed.1",
        "probectl.1",
        "probectl-check.1",
        "probectl-status.1",
        "probectl-completions.1",
    ] {
        let text =
            std::fs::read_to_string(out_dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(
            text.lines().any(|l| l.starts_with(".TH ")),
            "{name}: {text}"
        );
    }
    // The daemon's page says how to start it: its flags and their environment variables.
    let probed = std::fs::read_to_string(out_dir.join("probed.1")).unwrap();
    assert!(
        probed.lines().any(|l| l.starts_with(".TH probed 1"))
            && probed.contains("PROBED_CONFIG")
            && probed.contains("SIGHUP"),
        "{probed}"
    );
    // Rendered by man(1) where it is installed (not a dependency of the tests).
    if Command::new("man")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        let r = Command::new("man")
            .arg("-l")
            .arg(out_dir.join("probectl-check.1"))
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&r.stdout);
        assert!(
            r.status.success(),
            "man -l: {}",
            String::from_utf8_lossy(&r.stderr)
        );
        assert!(
            text.contains("NAME") && text.contains("--warning"),
            "{text}"
        );
    }
}

/// `check-config --json`: the summary, or every error with its position.
#[test]
fn check_config_json() {
    let d = Daemon::new(
        "probes:\n  - name: web\n    kind: http\n    request: { url: \"http://127.0.0.1:1/\" }\n",
        "",
    );
    let out = probectl(&d.config, &["check-config", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["probes"], 1);
    assert_eq!(v["kinds"]["http"], 1);

    d.write_probes("probes:\n  - name: web\n    kind: http\n    every: soon\n    request: { url: \"http://127.0.0.1:1/\" }\n");
    let out = probectl(&d.config, &["check-config", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false);
    let e = &v["errors"][0];
    assert!(e["file"].as_str().unwrap().ends_with("probes.yaml"), "{v}");
    assert_eq!(e["line"], 4, "{v}");
    assert!(e["message"].as_str().unwrap().contains("soon"), "{v}");
}

/// `health`: the daemon's /healthz as a verdict, for a container's HEALTHCHECK: healthy
/// (0), unhealthy after a failed reload (1, naming the check), unreachable (3); `--json`
/// prints /healthz's own JSON.
#[test]
fn health_is_healthz_as_an_exit_status() {
    let rt = support::runtime();
    let target = rt.block_on(Target::start());
    let mut d = Daemon::new(
        &format!(
            "probes:\n  - name: web\n    kind: http\n    every: 200ms\n    timeout: 180ms\n    \
             request: {{ url: \"{}\" }}\n",
            target.url("/")
        ),
        "",
    );
    d.start();
    let out = d.probectl(&["health"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(
        stdout(&out),
        format!("probed at http://127.0.0.1:{}: healthy\n", d.port)
    );
    let out = d.probectl(&["health", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "ok", "{v}");
    assert!(v["checks"].as_array().is_some_and(|c| !c.is_empty()), "{v}");

    // A reload that fails leaves the daemon running its last good config, unhealthy.
    d.write_probes("probes:\n  - name: broken\n    kind: htp\n");
    d.signal("HUP");
    support::wait_for(Duration::from_secs(10), "the failed reload", || {
        d.probectl(&["health"]).status.code() == Some(1)
    });
    let out = d.probectl(&["health"]);
    let line = stdout(&out);
    assert!(
        line.starts_with(&format!(
            "probed at http://127.0.0.1:{}: unhealthy: ",
            d.port
        )) && line.contains("reload"),
        "{line}"
    );
    let out = d.probectl(&["health", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "unhealthy", "{v}");

    // Nothing listening: unreachable, 3, in either form.
    let url = format!("http://127.0.0.1:{}", free_port());
    let out = bare(&["--url", &url, "health", "--timeout", "2s"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert!(
        stdout(&out).starts_with(&format!(
            "probed at {url}: unreachable: cannot reach probed"
        )),
        "{}",
        stdout(&out)
    );
    let out = bare(&["--url", &url, "health", "--json"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "unreachable", "{v}");
    assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
}
