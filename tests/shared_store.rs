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
    // Kept to us-east, where no daemon runs: shown, but judged by no one.
    let far = d.probe_state("far");
    assert!(far == "pending" || far == "unknown", "{far}");

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

/// Three daemons, three locations, one store: each probes `api` from where it stands (here,
/// each through a target of its own, so one place can lose it while the others keep it).
struct Three {
    daemons: Vec<Daemon>,
    targets: Vec<Target>,
    hook: Receiver,
    _db: ScratchDb,
}

const LOCATIONS: [&str; 3] = ["eu-west", "us-east", "ap-south"];

impl Three {
    async fn start() -> Three {
        let db = ScratchDb::create();
        let hook = Receiver::webhook(vec![]).await;
        let mut targets = Vec::new();
        let mut daemons = Vec::new();
        // `pair`, kept to two of the locations, on a target of its own.
        let pair = Target::start().await;
        for loc in LOCATIONS {
            let target = Target::start().await;
            let mut d = Daemon::new(
                &format!(
                    "probes:\n  - name: api\n    kind: http\n    every: 500ms\n    timeout: 400ms\n    \
                     request: {{ url: \"{}\" }}\n    alert: {{ after: 2, resolve_hold: 0s }}\n  \
                     - name: pair\n    kind: http\n    every: 500ms\n    timeout: 400ms\n    \
                     public: true\n    request: {{ url: \"{}\" }}\n    locations: [eu-west, us-east]\n",
                    target.url("/"),
                    pair.url("/")
                ),
                &format!(
                    "admin_token: {ADMIN}\ninstance: probed-{loc}\nlocation: {loc}\n\
                     watchdog: {{ lost_after: 4s }}\n\
                     store: {{ url: \"{}\" }}\n\
                     notifiers:\n  hook: {{ kind: webhook, url: \"{}/hook\" }}\nroutes:\n  - notify: [hook]\n",
                    db.url,
                    hook.url()
                ),
            );
            d.start();
            targets.push(target);
            daemons.push(d);
        }
        targets.push(pair);
        Three {
            daemons,
            targets,
            hook,
            _db: db,
        }
    }

    /// Waits until every daemon says location `loc` sees `api` as `state`.
    fn wait_location(&self, loc: &str, state: &str) {
        for d in &self.daemons {
            support::wait_for(
                Duration::from_secs(20),
                &format!("{loc} seen {state} at {}", d.url()),
                || {
                    let (v, _) = d.status();
                    v["probes"][0]["locations"].as_array().is_some_and(|ls| {
                        ls.iter()
                            .any(|l| l["location"] == loc && l["state"] == state)
                    })
                },
            );
        }
    }

    /// The webhook's messages of `event` about `probe`.
    fn events(&self, event: &str, probe: &str) -> Vec<serde_json::Value> {
        self.hook
            .requests()
            .into_iter()
            .filter(|r| r.body["event"] == event && r.body["probe"] == probe)
            .map(|r| r.body)
            .collect()
    }
}

/// One place that cannot reach a target pages no one; two of three page once, saying who
/// sees what; healing resolves once; every daemon tells the same state, with a row per
/// location. Killing one daemon, the other two carry on and page once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_of_three_locations_page_once_and_one_alone_pages_no_one() {
    let mut three = Three::start().await;
    for d in &three.daemons {
        d.wait_state("api", "up", Duration::from_secs(20));
    }
    three.wait_location("ap-south", "up");

    // `pair` runs at eu-west and us-east only, yet ap-south reports it as the others do:
    // its state and those two locations' rows, from the store, in the status and the
    // public documents alike.
    for d in &three.daemons {
        support::wait_for(
            Duration::from_secs(20),
            &format!("pair up from two locations at {}", d.url()),
            || {
                let (v, _) = d.status();
                let pair = v["probes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|p| p["name"] == "pair");
                pair.is_some_and(|p| {
                    let locs: Vec<&str> = p["locations"]
                        .as_array()
                        .map(|ls| ls.iter().filter_map(|l| l["location"].as_str()).collect())
                        .unwrap_or_default();
                    p["state"] == "up"
                        && p["last_checked_at"].is_string()
                        && locs == ["eu-west", "us-east"]
                })
            },
        );
        let components = support::http_get_blocking(&format!("{}/api/v2/components.json", d.url()));
        assert!(components.contains("\"name\":\"pair\""), "{components}");
    }
    assert_eq!(three.daemons[2].probe_state("pair"), "up");

    // eu-west alone loses it: every daemon sees eu-west's verdict, the probe stays up.
    three.targets[0].off();
    three.wait_location("eu-west", "down");
    for d in &three.daemons {
        assert_eq!(d.probe_state("api"), "up", "one location of three");
    }

    // us-east too: two of three.
    three.targets[1].off();
    let (got, _) = three
        .hook
        .wait_accepted(Duration::from_secs(20), "the trigger", |r| {
            r.iter().any(|r| r.body["event"] == "trigger")
        });
    let trigger = got.iter().find(|r| r.body["event"] == "trigger").unwrap();
    assert_eq!(
        trigger.body["locations"], "from eu-west, us-east (2 of 3); ap-south sees it up",
        "{}",
        trigger.body
    );
    assert!(
        trigger.body["summary"]
            .as_str()
            .unwrap_or_default()
            .contains("DOWN api from eu-west, us-east (2 of 3); ap-south sees it up"),
        "{}",
        trigger.body
    );
    for d in &three.daemons {
        d.wait_state("api", "down", Duration::from_secs(10));
    }
    // The table with a row per location.
    let table =
        String::from_utf8_lossy(&three.daemons[2].probectl(&["status", "--locations"]).stdout)
            .into_owned();
    for want in ["@eu-west", "@us-east", "@ap-south"] {
        assert!(table.contains(want), "{table}");
    }

    three.targets[0].on().await;
    three.targets[1].on().await;
    three
        .hook
        .wait_accepted(Duration::from_secs(20), "the resolve", |r| {
            r.iter().any(|r| r.body["event"] == "resolve")
        });
    for d in &three.daemons {
        d.wait_state("api", "up", Duration::from_secs(10));
    }
    let triggers = three.events("trigger", "api");
    assert_eq!(triggers.len(), 1, "one page: {triggers:?}");
    let resolves = three.events("resolve", "api");
    assert_eq!(resolves.len(), 1, "one resolve: {resolves:?}");

    // ap-south's daemon dies: the loss is paged once, by the other two between them.
    three.daemons[2].kill9();
    let (got, _) = three
        .hook
        .wait_accepted(Duration::from_secs(20), "the location page", |r| {
            r.iter()
                .any(|r| r.body["event"] == "trigger" && r.body["probe"] == "location:ap-south")
        });
    let lost = got
        .iter()
        .find(|r| r.body["probe"] == "location:ap-south")
        .unwrap();
    let reason = lost.body["reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("no daemon at ap-south has written to the store for"),
        "{}",
        lost.body
    );
    // eu-west and us-east lose the target: they carry on, and page once.
    three.targets[0].off();
    three.targets[1].off();
    three
        .hook
        .wait_accepted(Duration::from_secs(20), "the second trigger", |r| {
            r.iter()
                .filter(|r| r.body["event"] == "trigger" && r.body["probe"] == "api")
                .count()
                == 2
        });
    three.targets[0].on().await;
    three.targets[1].on().await;
    three
        .hook
        .wait_accepted(Duration::from_secs(30), "the second resolve", |r| {
            r.iter()
                .filter(|r| r.body["event"] == "resolve" && r.body["probe"] == "api")
                .count()
                == 2
        });
    assert_eq!(three.events("trigger", "api").len(), 2);
    assert_eq!(
        three.events("trigger", "location:ap-south").len(),
        1,
        "the lost location paged once"
    );
    for loc in ["eu-west", "us-east"] {
        let pages = three.events("trigger", &format!("location:{loc}"));
        assert!(pages.is_empty(), "{loc} was never lost: {pages:?}");
    }
}

/// A lone daemon that loses every host at once is blind: its probes page no one, and one
/// grouped page says why (`location:<name>`); when it sees again it resolves that page, and
/// its probes, back up, never paged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blind_lone_daemon_pages_once_not_per_probe() {
    let mut targets = Vec::new();
    for ip in ["127.0.0.1", "127.0.0.2", "127.0.0.3"] {
        targets.push(Target::start_on(ip).await);
    }
    let hook = Receiver::webhook(vec![]).await;
    let probes: String = targets
        .iter()
        .enumerate()
        .map(|(i, t)| {
            format!(
                "  - name: p{i}\n    kind: http\n    every: 1s\n    timeout: 800ms\n    \
                 request: {{ url: \"{}\" }}\n    alert: {{ after: 2, resolve_hold: 0s }}\n",
                t.url("/")
            )
        })
        .collect();
    let mut d = Daemon::new(
        &format!("probes:\n{probes}"),
        &format!(
            "instance: solo\nlocation: here\nwatchdog: {{ blind: {{ failing: 100%, min_hosts: 3, within: 3s }} }}\n\
             notifiers:\n  hook: {{ kind: webhook, url: \"{}/hook\" }}\nroutes:\n  - notify: [hook]\n",
            hook.url()
        ),
    );
    d.start();
    for i in 0..3 {
        d.wait_state(&format!("p{i}"), "up", Duration::from_secs(15));
    }
    for t in &mut targets {
        t.off();
    }
    let (got, _) = hook.wait_accepted(Duration::from_secs(20), "the blind page", |r| {
        r.iter().any(|r| r.body["event"] == "trigger")
    });
    let page = &got
        .iter()
        .find(|r| r.body["event"] == "trigger")
        .unwrap()
        .body;
    assert_eq!(page["probe"], "location:here", "{page}");
    let reason = page["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("probed at here cannot see: ") && reason.contains("(3 of 3 hosts)"),
        "{reason}"
    );
    let (v, _) = d.status();
    let sight = v["daemon"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "sight")
        .unwrap()
        .clone();
    assert_eq!(sight["ok"], false, "{sight}");
    for t in &mut targets {
        t.on().await;
    }
    hook.wait_accepted(Duration::from_secs(20), "the resolve", |r| {
        r.iter().any(|r| r.body["event"] == "resolve")
    });
    for i in 0..3 {
        d.wait_state(&format!("p{i}"), "up", Duration::from_secs(15));
    }
    let pages: Vec<String> = hook
        .requests()
        .iter()
        .filter(|r| r.body["event"] == "trigger")
        .map(|r| r.body["probe"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(pages, ["location:here"], "one grouped page, none per probe");
    let out = d.probectl(&["incidents", "--all", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["incidents"].as_array().unwrap().len(), 1, "{v}");
}

/// Two daemons share the outbox. The one that claims the page stalls mid-send (the receiver
/// reads and never answers) and is killed (`kill -9`): its claim runs out and the other
/// sends, under the same dedup key; the page is accepted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_killed_mid_send_leaves_its_page_to_the_other() {
    use support::receiver::Reply;
    let db = ScratchDb::create();
    let mut target = Target::start().await;
    let hook = Receiver::webhook(vec![Reply::Hang]).await;
    let mut daemons: Vec<Daemon> = ["eu-west", "us-east"]
        .iter()
        .map(|loc| {
            let mut d = Daemon::new(
                &format!(
                    "probes:\n  - name: api\n    kind: http\n    every: 500ms\n    timeout: 400ms\n    \
                     request: {{ url: \"{}\" }}\n    alert: {{ after: 2, resolve_hold: 0s }}\n",
                    target.url("/")
                ),
                &format!(
                    "instance: probed-{loc}\nlocation: {loc}\nstore: {{ url: \"{}\" }}\n\
                     notifiers:\n  hook: {{ kind: webhook, url: \"{}/hook\", timeout: 3s }}\n\
                     routes:\n  - notify: [hook]\n",
                    db.url,
                    hook.url()
                ),
            );
            d.start();
            d
        })
        .collect();
    for d in &daemons {
        d.wait_state("api", "up", Duration::from_secs(20));
    }
    target.off();
    // The first send reaches the receiver, which holds it.
    support::wait_for(Duration::from_secs(20), "the stalled send", || {
        hook.requests().iter().any(|r| r.body["event"] == "trigger")
    });
    let holder = db.rows("SELECT claimed_by FROM outbox WHERE event = 'trigger'");
    let holder = holder[0][0].clone().expect("claimed");
    let (killed, other) = if holder == "probed-eu-west" {
        (0, 1)
    } else {
        (1, 0)
    };
    daemons[killed].kill9();
    let (got, _) = hook.wait_accepted(Duration::from_secs(30), "the page, sent again", |r| {
        r.iter().any(|r| r.body["event"] == "trigger")
    });
    let triggers: Vec<_> = hook
        .requests()
        .into_iter()
        .filter(|r| r.body["event"] == "trigger")
        .collect();
    assert_eq!(triggers.len(), 2, "the stalled try and the one after it");
    assert_eq!(
        triggers[0].body["dedup_key"], triggers[1].body["dedup_key"],
        "one key: a pager folds them"
    );
    assert_eq!(
        got.iter().filter(|r| r.body["event"] == "trigger").count(),
        1
    );
    let sent_by = db.rows("SELECT claimed_by, status FROM outbox WHERE event = 'trigger'");
    assert_eq!(
        sent_by[0][1].as_deref(),
        Some("delivered"),
        "recorded once: {sent_by:?}"
    );
    assert_eq!(
        sent_by[0][0].as_deref(),
        Some(if other == 0 {
            "probed-eu-west"
        } else {
            "probed-us-east"
        }),
        "the survivor took the claim over"
    );
}
