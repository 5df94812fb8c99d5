//! A shared PostgreSQL store (issue 14), end to end: the real `probed` binary on a scratch
//! database of the machine's PostgreSQL.

mod support;

use std::time::Duration;

use support::pg::ScratchDb;
use support::receiver::Receiver;
use support::{Daemon, Target};

const ADMIN: &str = "admin-token-5f4e3d2c1b";

/// One daemon on PostgreSQL does what it does on SQLite: pages a probe that goes down,
/// resolves it when it recovers, keeps its history there, and resumes from it after a
/// `kill -9`. A probe kept to another location does not run here. The store's password
/// is never shown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_on_postgres_pages_resolves_and_resumes() {
    let db = ScratchDb::create();
    // The URL as a user writes it: the password from the environment.
    let url = db.url.replacen("postgres@", "postgres:${PG_PASSWORD}@", 1);
    let mut target = Target::start().await;
    let elsewhere = Target::start().await;
    let hook = Receiver::webhook(vec![]).await;
    let mut d = Daemon::new(
        &format!(
            "probes:\n  - name: web\n    kind: http\n    every: 500ms\n    timeout: 400ms\n    \
             request: {{ url: \"{}\" }}\n    alert: {{ after: 2, resolve_hold: 0s }}\n  \
             - name: far\n    kind: http\n    every: 500ms\n    timeout: 400ms\n    \
             request: {{ url: \"{}\" }}\n    locations: [us-east]\n",
            target.url("/"),
            elsewhere.url("/")
        ),
        &format!(
            "admin_token: {ADMIN}\ninstance: pg-1\nlocation: eu-west\n\
             store: {{ url: \"{url}\" }}\n\
             notifiers:\n  hook: {{ kind: webhook, url: \"{}/hook\" }}\nroutes:\n  - notify: [hook]\n",
            hook.url()
        ),
    );
    let pw = "pg-pass-7c6b5a";
    d.start_env(&[("PG_PASSWORD", pw)]);
    d.wait_state("web", "up", Duration::from_secs(15));
    assert_eq!(d.probe_state("far"), "absent", "kept to us-east");

    target.off();
    let (got, _) = hook.wait_accepted(Duration::from_secs(15), "the trigger", |r| {
        r.iter().any(|r| r.body["event"] == "trigger")
    });
    let key = got[0].body["dedup_key"].as_str().unwrap().to_owned();
    let store_id = &db.rows("SELECT value FROM meta WHERE key = 'store_id'")[0][0];
    assert!(
        key.starts_with(&format!("probed-pg-1-{}-", store_id.as_deref().unwrap())),
        "{key}"
    );
    target.on().await;
    hook.wait_accepted(Duration::from_secs(15), "the resolve", |r| {
        r.iter().any(|r| r.body["event"] == "resolve")
    });

    // A crash, and a restart on the same database: the state and the incident are there.
    d.kill9();
    d.start_env(&[("PG_PASSWORD", pw)]);
    let (v, _) = d.status();
    let web = v["probes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "web")
        .unwrap();
    assert_eq!(web["state"], "up", "resumed from the store: {web}");
    let out = d.probectl(&["incidents", "--all", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["incidents"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["incidents"][0]["state"], "resolved");

    let results = db.rows("SELECT count(*)::text FROM results r JOIN probes p ON p.id = r.probe_id WHERE p.name = 'web'");
    assert!(
        results[0][0].as_deref().unwrap().parse::<u64>().unwrap() >= 4,
        "{results:?}"
    );
    assert_eq!(elsewhere.hits.load(std::sync::atomic::Ordering::Relaxed), 0);
    assert!(d.stop().success());
    let log = d.log();
    assert!(log.contains("postgres://postgres@127.0.0.1:"), "{log}");
    assert!(!log.contains(pw), "the store's password in the log:\n{log}");
}

/// A store that cannot be reached at start is a clear error and exit status, naming the
/// server without its password.
#[test]
fn an_unreachable_store_at_start_is_a_clear_error() {
    let port = support::free_port();
    let mut d = Daemon::new(
        "probes: []\n",
        &format!("store: {{ url: \"postgres://probed:pw-9f8e7d@127.0.0.1:{port}/probed\" }}\n"),
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_probed"))
        .arg("-c")
        .arg(&d.config)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains(&format!(
            "cannot open postgres://probed@127.0.0.1:{port}/probed"
        )),
        "{err}"
    );
    assert!(!err.contains("pw-9f8e7d"), "{err}");
    d.child = None;
}
