//! The shipped configs load through the public API, and a broken copy of them reports every
//! problem as `file:line:col: message`. (The loader's own cases live beside it, in
//! `src/config/load/tests.rs`.)

use std::path::Path;

use probed::config::{load, load_str};

#[test]
fn shipped_demo_config_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("probed.yaml");
    let c = load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert!(!c.probes.is_empty());
    for p in &c.probes {
        assert!(p.timeout <= p.schedule.interval(), "{}", p.name);
        assert!(p.source.contains("probes/demo.yaml:"), "{}", p.source);
    }
}

#[test]
fn broken_config_reports_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("probes")).unwrap();
    std::fs::write(
        dir.path().join("probes/api.yaml"),
        "probes:\n  - name: api\n    kind: htp\n  - name: api\n    kind: http\n    request: { url: \"https://x.example/\", methd: POST }\n",
    )
    .unwrap();
    let text = "probes: probes/\ndefaults: { every: 30s, timout: 10s }\nadmin_token: ${TOKEN}\n";
    let env = |_: &str| None;
    let errs = load_str(text, &dir.path().join("probed.yaml"), &env).unwrap_err();
    let got = errs
        .to_string()
        .replace(&format!("{}/", dir.path().display()), "");
    let want = [
        r#"probed.yaml:2:25: unknown key "timout", did you mean "timeout"?"#,
        "probed.yaml:3:14: environment variable TOKEN is not set (use ${TOKEN:-default} for a fallback)",
        r#"probes/api.yaml:3:11: unknown kind "htp", did you mean "http"?"#,
        r#"probes/api.yaml:4:5: duplicate probe name "api" (first defined at probes/api.yaml:2:5)"#,
        r#"probes/api.yaml:6:43: unknown key "methd", did you mean "method"?"#,
    ];
    assert_eq!(got, want.join("\n"));
}

/// The shipped systemd unit is valid (`systemd-analyze verify`, with ExecStart pointed at the
/// built binary) and keeps its watchdog and hardening settings.
#[test]
fn the_systemd_unit_verifies_and_is_hardened() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let unit = std::fs::read_to_string(root.join("deploy/probed.service")).unwrap();
    for want in [
        "Type=notify",
        "WatchdogSec=",
        "DynamicUser=yes",
        "StateDirectory=probed",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=\n",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
    ] {
        assert!(unit.contains(want), "deploy/probed.service lacks {want:?}");
    }
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("probed.service");
    std::fs::write(
        &copy,
        unit.replace("/usr/local/bin/probed", env!("CARGO_BIN_EXE_probed")),
    )
    .unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze (Debian's systemd) is needed to check the unit");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "{stderr}");
}
