//! Several places, one truth, over a real network (issue 14): three real `probed`, each in a
//! network namespace of its own, share one real PostgreSQL that the test starts itself in a
//! core namespace, beside the target (the fault lab) and a real SMTP server for the pages.
//! The locations reach the core over veths into a bridge; a route is cut with a blackhole, a
//! whole location by taking its link down. Needs root (as CI runs): without it the test
//! fails saying so, it never skips.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::Duration;

use support::netns::Net;
use support::pg::PrivatePg;
use support::smtp::Smtp;
use support::{Daemon, wait_for};

const LOCATIONS: [&str; 3] = ["eu-west", "us-east", "ap-south"];

/// The fault lab (`probectl lab`) in namespace `ns`, on `addr`; killed when dropped. Its
/// stdout stays open (it writes there).
struct Lab {
    child: Child,
    _out: BufReader<std::process::ChildStdout>,
}

impl Lab {
    fn start(ns: &str, addr: &str) -> Lab {
        let mut child = Net::command(ns, env!("CARGO_BIN_EXE_probectl"))
            .args(["lab", "--listen", addr])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        out.read_line(&mut line).unwrap();
        assert!(
            line.contains("listening on"),
            "the lab did not start: {line:?}"
        );
        Lab { child, _out: out }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The pages about `probe` (`DOWN` or `RESOLVED`) among the mails, by their subject.
fn pages(smtp: &Smtp, what: &str, probe: &str) -> Vec<String> {
    let want = format!("Subject: [probed] {what} {probe}");
    smtp.messages()
        .into_iter()
        .filter(|m| {
            m.lines().any(|l| {
                l == want
                    || l.starts_with(&format!("{want} "))
                    || l.starts_with(&format!("{want}:"))
            })
        })
        .collect()
}

/// The state of `probe` as daemon `d` tells it, and each location's verdict.
fn seen(d: &Daemon, probe: &str) -> serde_json::Value {
    let (v, _) = d.status();
    v["probes"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == probe).cloned())
        .unwrap_or_default()
}

#[test]
fn three_locations_over_a_real_network() {
    // Declared first, dropped last: the processes inside the namespaces go before them.
    let net = Net::new(3);
    let mut pg = PrivatePg::start_in(&net.core, &net.core_ip(1));
    let _lab = Lab::start(&net.core, &format!("{}:8080", net.core_ip(2)));
    let _reference = Lab::start(&net.core, &format!("{}:8080", net.core_ip(3)));
    let smtp = Smtp::start_in(&net.core, &net.core_ip(1));
    let target = net.core_ip(2);
    let mut daemons: Vec<Daemon> = Vec::new();
    for (i, loc) in LOCATIONS.iter().enumerate() {
        let mut d = Daemon::new(
            &format!(
                "probes:\n  - name: api\n    kind: http\n    every: 500ms\n    timeout: 400ms\n    \
                 request: {{ url: \"http://{target}:8080/health\" }}\n    \
                 alert: {{ after: 2, resolve_hold: 0s }}\n"
            ),
            &format!(
                "instance: probed-{loc}\nlocation: {loc}\nstore: {{ url: \"{}\" }}\n\
                 watchdog: {{ lost_after: 5s, reference: [\"http://{}:8080/ref\"] }}\n\
                 alerting: {{ max_attempts: 3, retry_base: 500ms, retry_max: 2s }}\n\
                 notifiers:\n  mail: {{ kind: email, smtp: {{ host: {}, port: {}, tls: none }}, \
                 from: probed@example.com, to: [oncall@example.com] }}\n\
                 routes:\n  - notify: [mail]\n",
                pg.url("probed"),
                net.core_ip(3),
                net.core_ip(1),
                smtp.port
            ),
        );
        d.start_in(&net.locations[i]);
        daemons.push(d);
    }
    for d in &daemons {
        d.wait_state("api", "up", Duration::from_secs(30));
    }
    let every_sees = |loc: &str, state: &str| {
        for d in &daemons {
            wait_for(
                Duration::from_secs(30),
                &format!("{loc} seeing api {state}"),
                || {
                    seen(d, "api")["locations"].as_array().is_some_and(|ls| {
                        ls.iter().any(|l| {
                            l["location"] == loc && l["state"] == state && l["stale"] == false
                        })
                    })
                },
            );
        }
    };
    every_sees("ap-south", "up");

    // 1. eu-west loses the target: no page. us-east too: one page, naming both.
    net.blackhole(0, &target, true);
    every_sees("eu-west", "down");
    for d in &daemons {
        assert_eq!(
            seen(d, "api")["state"],
            "up",
            "one location of three pages no one"
        );
    }
    net.blackhole(1, &target, true);
    smtp.wait(Duration::from_secs(30), "the page", |_| {
        !pages(&smtp, "DOWN", "api").is_empty()
    });
    let page = &pages(&smtp, "DOWN", "api")[0];
    assert!(
        page.contains("DOWN api from eu-west, us-east (2 of 3); ap-south sees it up"),
        "{page}"
    );
    net.blackhole(0, &target, false);
    net.blackhole(1, &target, false);
    smtp.wait(Duration::from_secs(30), "the resolve", |_| {
        !pages(&smtp, "RESOLVED", "api").is_empty()
    });
    for d in &daemons {
        d.wait_state("api", "up", Duration::from_secs(15));
    }
    assert_eq!(pages(&smtp, "DOWN", "api").len(), 1, "one page");
    assert_eq!(pages(&smtp, "RESOLVED", "api").len(), 1, "one resolve");

    // 2. PostgreSQL stops for 30 s while two locations lose the target: each pages from
    //    memory on what it knows alone (duplicates are allowed here: failing open), and once
    //    the store is back the incidents reconcile to one.
    pg.stop();
    let stopped = std::time::Instant::now();
    net.blackhole(0, &target, true);
    net.blackhole(1, &target, true);
    smtp.wait(
        Duration::from_secs(30),
        "a page while the store is down",
        |_| pages(&smtp, "DOWN", "api").len() >= 2,
    );
    // The outage lasts 30 s in all: its length is the scenario, not a wait for anything.
    wait_for(
        Duration::from_secs(60),
        "the end of the 30 s outage",
        || stopped.elapsed() >= Duration::from_secs(30),
    );
    pg.start();
    let open = |pg: &PrivatePg| {
        pg.psql_in(
            "probed",
            "SELECT count(*) FROM incidents i JOIN probes p ON p.id = i.probe_id \
             WHERE p.name = 'api' AND i.resolved_at IS NULL",
        )
    };
    wait_for(
        Duration::from_secs(60),
        "the incidents to reconcile",
        || open(&pg) == "1",
    );
    net.blackhole(0, &target, false);
    net.blackhole(1, &target, false);
    wait_for(Duration::from_secs(60), "the incident to resolve", || {
        open(&pg) == "0"
    });
    for d in &daemons {
        d.wait_state("api", "up", Duration::from_secs(30));
    }

    // Settled again: every daemon reads every location's fresh verdict.
    for loc in LOCATIONS {
        every_sees(loc, "up");
    }

    // 3. ap-south is cut off entirely: the other two page its loss once; ap-south, blind,
    //    pages nothing per probe (it could not reach the mail relay anyway), and nothing
    //    arrives twice once it is back.
    let api_pages = pages(&smtp, "DOWN", "api").len();
    net.cut(2, true);
    smtp.wait(Duration::from_secs(40), "the lost location's page", |_| {
        !pages(&smtp, "DOWN", "location:ap-south").is_empty()
    });
    let lost = &pages(&smtp, "DOWN", "location:ap-south")[0];
    assert!(
        lost.contains("no daemon at ap-south has written to the store for"),
        "{lost}"
    );
    net.cut(2, false);
    smtp.wait(Duration::from_secs(40), "the location's resolve", |_| {
        !pages(&smtp, "RESOLVED", "location:ap-south").is_empty()
    });
    daemons[2].wait_state("api", "up", Duration::from_secs(30));
    // Back: it sees again, its writer has caught up and nothing waits to be sent from
    // memory; so whatever it was going to send has been sent.
    wait_for(Duration::from_secs(60), "ap-south to catch up", || {
        let (v, _) = daemons[2].status();
        v["daemon"]["healthy"] == true
            && v["daemon"]["store_queue_depth"] == 0
            && v["daemon"]["checks"].as_array().is_some_and(|cs| {
                cs.iter()
                    .any(|c| c["name"] == "alert delivery" && c["ok"] == true)
            })
    });
    assert_eq!(
        pages(&smtp, "DOWN", "location:ap-south").len(),
        1,
        "its loss paged once"
    );
    let after = pages(&smtp, "DOWN", "api");
    if after.len() != api_pages {
        std::fs::write("/tmp/netns-pages.txt", after.join("\n=====\n")).unwrap();
        for (i, d) in daemons.iter().enumerate() {
            std::fs::write(format!("/tmp/netns-d{i}.log"), d.log()).unwrap();
        }
    }
    assert_eq!(after.len(), api_pages, "no per-probe page");
    for loc in ["eu-west", "us-east"] {
        let p = pages(&smtp, "DOWN", &format!("location:{loc}"));
        assert!(p.is_empty(), "{loc} was never lost: {p:#?}");
    }
    drop(daemons);
}
