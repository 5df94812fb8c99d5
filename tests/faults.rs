//! Fault injection against the real `probed` binary: `kill -9` with an incident open, `kill -9`
//! with a page still pending in the outbox, and a notifier that never answers. Each test
//! states the bound it holds the daemon to and prints what it measured.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::receiver::{Receiver, Reply, Request};
use support::{Daemon, Target, wait_for};

const ADMIN: &str = "admin-token-faults-6c5b4a";
/// Consecutive failures that make a probe down (every probe here).
const AFTER: u32 = 2;

/// An http probe on `url`, every `every_ms`, down after [`AFTER`] failures, up after one
/// success, resolved at once.
fn probe(name: &str, url: &str, every_ms: u64) -> String {
    format!(
        "  - name: {name}\n    kind: http\n    every: {every_ms}ms\n    timeout: {}ms\n    \
         request: {{ url: \"{url}\" }}\n    \
         alert: {{ after: {AFTER}, recover_after: 1, resolve_hold: 0s }}\n",
        every_ms * 4 / 5
    )
}

fn daemon(probes: &[String], alerting: &str, notifiers_and_routes: &str) -> Daemon {
    Daemon::new(
        &format!("probes:\n{}", probes.concat()),
        &format!("admin_token: {ADMIN}\ninstance: faults\n{alerting}\n{notifiers_and_routes}"),
    )
}

/// One webhook notifier `hook` at `base`/hook, and a route sending everything to it.
fn hook_route(base: &str) -> String {
    format!(
        "notifiers:\n  hook: {{ kind: webhook, url: \"{base}/hook\" }}\nroutes:\n  - notify: [hook]\n"
    )
}

/// `probectl incidents --all --json`, parsed (empty while the daemon does not answer).
fn incidents(d: &Daemon) -> Vec<Value> {
    let out = d.probectl(&["incidents", "--all", "--json"]);
    serde_json::from_slice::<Value>(&out.stdout)
        .ok()
        .and_then(|v| v["incidents"].as_array().cloned())
        .unwrap_or_default()
}

/// `event notifier status` of each delivery of `incident`.
fn deliveries(incident: &Value) -> Vec<String> {
    incident["deliveries"]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|d| {
                    format!(
                        "{} {} {}",
                        d["event"].as_str().unwrap_or("?"),
                        d["notifier"].as_str().unwrap_or("?"),
                        d["status"].as_str().unwrap_or("?")
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Nothing left to send: at least one incident, and no delivery of any incident pending. From
/// then on no request reaches a receiver unless something new happens, so counting the
/// requests is final.
fn settled(incidents: &[Value]) -> bool {
    !incidents.is_empty()
        && incidents.iter().all(|i| {
            i["deliveries"]
                .as_array()
                .is_some_and(|l| l.iter().all(|d| d["status"] != "pending"))
        })
}

fn with_event<'a>(reqs: &'a [Request], event: &str) -> Vec<&'a Request> {
    reqs.iter().filter(|r| r.body["event"] == event).collect()
}

/// GET `/healthz`: the status code and the JSON body.
fn healthz(d: &Daemon) -> (u16, Value) {
    let (code, _, body) =
        support::split_response(&support::http_get_blocking(&format!("{}/healthz", d.url())));
    let (start, end) = (body.find('{'), body.rfind('}'));
    let body = match (start, end) {
        (Some(s), Some(e)) => serde_json::from_str(&body[s..=e]).unwrap_or(Value::Null),
        _ => Value::Null,
    };
    (code, body)
}

/// A probe is paging (trigger delivered to the webhook); the daemon is killed with -9; the
/// target comes back while it is dead. The restarted daemon resumes the open incident,
/// sees the probe up, and resolves that same incident: one resolve with the trigger's
/// incident id and dedup key, no second trigger, one incident on record, resolved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resumes_an_open_incident_and_resolves_what_cleared_while_down() {
    let mut target = Target::start().await;
    let hook = Receiver::webhook(vec![]).await;
    let mut d = daemon(
        &[probe("web", &target.url("/"), 500)],
        "alerting: { max_attempts: 2, retry_base: 100ms, retry_max: 1s }",
        &hook_route(&hook.url()),
    );
    d.start();
    d.wait_state("web", "up", Duration::from_secs(10));

    target.off();
    let (got, paged_in) = hook.wait_accepted(Duration::from_secs(20), "the trigger", |r| {
        !with_event(r, "trigger").is_empty()
    });
    eprintln!("paged {paged_in:?} after the target went away");
    let trigger = with_event(&got, "trigger")[0].clone();
    assert_eq!(trigger.body["probe"], "web");
    let id = trigger.body["incident"].as_i64().expect("incident id");
    let key = trigger.body["dedup_key"]
        .as_str()
        .expect("dedup key")
        .to_owned();
    // probed-<instance>-<store id>-<incident>: the store id (12 hex digits) keeps a fresh
    // database from reusing an old one's keys.
    let store_id = key
        .strip_prefix("probed-faults-")
        .and_then(|k| k.strip_suffix(&format!("-{id}")))
        .unwrap_or_else(|| panic!("dedup key {key}"));
    assert!(
        store_id.len() == 12 && store_id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{key}"
    );
    // The delivery is on record before the kill: otherwise resending it after the restart
    // would be right, and this test is about the incident, not the send.
    wait_for(
        Duration::from_secs(10),
        "the trigger recorded as delivered",
        || {
            incidents(&d).iter().any(|i| {
                i["id"] == id && deliveries(i).contains(&"trigger hook delivered".to_owned())
            })
        },
    );

    d.kill9();
    // Cleared while nobody was watching.
    target.on().await;
    let restarted = Instant::now();
    d.start();
    hook.wait_accepted(
        Duration::from_secs(20),
        "the resolve after the restart",
        |r| !with_event(r, "resolve").is_empty(),
    );
    let resolved_in = restarted.elapsed();
    eprintln!("resolved {resolved_in:?} after the restart began");
    wait_for(Duration::from_secs(10), "the outbox to settle", || {
        let l = incidents(&d);
        settled(&l) && l.iter().all(|i| i["state"] == "resolved")
    });

    let accepted = hook.accepted();
    let resolves = with_event(&accepted, "resolve");
    assert_eq!(resolves.len(), 1, "one resolve: {accepted:#?}");
    assert_eq!(resolves[0].body["incident"], id, "the same incident");
    assert_eq!(resolves[0].body["dedup_key"], key.as_str(), "the same key");
    assert_eq!(resolves[0].body["probe"], "web");
    assert_eq!(resolves[0].body["state"], "up");
    assert_eq!(
        with_event(&accepted, "trigger").len(),
        1,
        "no second page: {accepted:#?}"
    );
    assert_eq!(
        hook.requests().len(),
        2,
        "one trigger and one resolve, nothing else: {:#?}",
        hook.requests()
    );

    let list = incidents(&d);
    assert_eq!(list.len(), 1, "one incident: {list:#?}");
    assert_eq!(list[0]["id"], id);
    assert_eq!(list[0]["state"], "resolved");
    assert_eq!(
        deliveries(&list[0]),
        ["trigger hook delivered", "resolve hook delivered"],
        "{list:#?}"
    );
    assert_eq!(d.probe_state("web"), "up");
    assert!(d.stop().success());
}

/// The only notifier answers 500, so the page stays pending in the outbox, retried; the
/// daemon is killed with -9 meanwhile. From then on the receiver accepts (a fresh one on the
/// same port). The restarted daemon delivers the page exactly once, with the same dedup key,
/// and there is still one incident.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resumes_pending_pages() {
    let mut target = Target::start().await;
    target.off();
    let failing = Receiver::start_on(
        0,
        Reply::Status(500, r#"{"error":"temporarily broken"}"#),
        vec![],
    )
    .await;
    let port = failing.addr.port();
    let mut d = daemon(
        &[probe("db", &target.url("/"), 500)],
        "alerting: { max_attempts: 50, retry_base: 200ms, retry_max: 1s }",
        &format!(
            "{}watchdog: {{ max_undelivered_age: 1s }}\n",
            hook_route(&failing.url())
        ),
    );
    d.start();
    wait_for(Duration::from_secs(20), "two failed tries", || {
        failing.requests().len() >= 2
    });
    // The self-check names the page that waits too long.
    wait_for(
        Duration::from_secs(10),
        "/healthz to name the stuck page",
        || {
            let (code, h) = healthz(&d);
            code == 503
                && h["problems"].as_array().is_some_and(|p| {
                    p.iter().any(|p| {
                        p.as_str()
                            .is_some_and(|p| p.starts_with("alert delivery: 1 message pending"))
                    })
                })
        },
    );
    assert!(metric(&d, "probed_outbox_oldest_undelivered_age_seconds") >= 1.0);
    // Pending on record, with failed tries counted.
    wait_for(
        Duration::from_secs(10),
        "the page pending after failed tries",
        || {
            incidents(&d).first().is_some_and(|i| {
                i["deliveries"][0]["status"] == "pending"
                    && i["deliveries"][0]["attempts"].as_i64() >= Some(1)
            })
        },
    );
    d.kill9();
    let before = failing.requests();
    assert!(failing.accepted().is_empty(), "nothing accepted yet");
    let key = before[0].body["dedup_key"]
        .as_str()
        .expect("dedup key")
        .to_owned();
    let id = before[0].body["incident"].as_i64().expect("incident id");
    assert!(
        before
            .iter()
            .all(|r| r.body["event"] == "trigger" && r.body["dedup_key"] == key.as_str()),
        "every try is the same page: {before:#?}"
    );
    eprintln!("{} failed tries before the kill", before.len());

    // The receiver is fixed: a fresh one on the same port, accepting everything.
    drop(failing);
    wait_for(
        Duration::from_secs(5),
        "the receiver's port to be free",
        || std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
    );
    let hook = Receiver::start_on(port, Reply::Status(200, "{}"), vec![]).await;

    let restarted = Instant::now();
    d.start();
    hook.wait_accepted(Duration::from_secs(20), "the page after the restart", |r| {
        !r.is_empty()
    });
    eprintln!(
        "pending page delivered {:?} after the restart began",
        restarted.elapsed()
    );
    wait_for(Duration::from_secs(10), "the outbox to settle", || {
        settled(&incidents(&d))
    });

    let reqs = hook.requests();
    assert_eq!(reqs.len(), 1, "delivered exactly once: {reqs:#?}");
    assert_eq!(reqs[0].answered, Some(200));
    assert_eq!(reqs[0].body["event"], "trigger");
    assert_eq!(reqs[0].body["probe"], "db");
    assert_eq!(reqs[0].body["incident"], id);
    assert_eq!(reqs[0].body["dedup_key"], key.as_str(), "the same page");

    let list = incidents(&d);
    assert_eq!(list.len(), 1, "one incident: {list:#?}");
    assert_eq!(list[0]["id"], id);
    assert_eq!(list[0]["state"], "open", "the probe is still down");
    assert_eq!(
        deliveries(&list[0]),
        ["trigger hook delivered"],
        "{list:#?}"
    );
    // Every recorded try counts: the failed ones before the kill (one may have been cut
    // short by it, unrecorded) and the one that delivered.
    let attempts = list[0]["deliveries"][0]["attempts"].as_i64().unwrap();
    assert!(
        (2..=before.len() as i64 + 1).contains(&attempts),
        "attempts {attempts}, {} tries seen before the kill",
        before.len()
    );
    assert!(d.stop().success());
}

/// `stuck` reads every request and never answers (timeout 1s); `ok` works. Three probes
/// routed to `stuck` (fallback `ok`) go down together and their sends hang; then a fourth,
/// routed straight to `ok`, goes down. It is paged within `after × every + 1s` regardless;
/// the three hung pages reach `ok` through the fallback within the bound the config
/// gives; `stuck` saw exactly `max_attempts` unanswered requests per page; `/healthz`
/// names `stuck` (and not `ok`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_notifier_cannot_stall_the_dispatcher() {
    const VIA: [&str; 3] = ["via-1", "via-2", "via-3"];
    const VIA_EVERY_MS: u64 = 500;
    const DIRECT_EVERY_MS: u64 = 250;
    const MAX_ATTEMPTS: u32 = 3;
    const TIMEOUT: Duration = Duration::from_secs(1);
    /// The dispatcher's hard stop on top of a notifier's timeout.
    const BACKSTOP: Duration = Duration::from_secs(2);
    const RETRY_BASE: Duration = Duration::from_millis(200);
    const RETRY_MAX: Duration = Duration::from_secs(1);
    /// The dispatcher looks at the outbox at least this often.
    const TICK: Duration = Duration::from_secs(1);

    let mut hung_target = Target::start().await;
    let mut direct_target = Target::start().await;
    let stuck = Receiver::start_on(0, Reply::Hang, vec![]).await;
    let ok = Receiver::webhook(vec![]).await;
    let mut probes: Vec<String> = VIA
        .iter()
        .map(|n| probe(n, &hung_target.url(&format!("/{n}")), VIA_EVERY_MS))
        .collect();
    probes.push(probe("direct", &direct_target.url("/"), DIRECT_EVERY_MS));
    let mut d = daemon(
        &probes,
        &format!(
            "alerting: {{ max_attempts: {MAX_ATTEMPTS}, retry_base: {}ms, retry_max: {}ms }}",
            RETRY_BASE.as_millis(),
            RETRY_MAX.as_millis()
        ),
        &format!(
            "notifiers:\n  stuck: {{ kind: webhook, url: \"{}/hook\", timeout: {}ms }}\n  \
             ok: {{ kind: webhook, url: \"{}/hook\" }}\n\
             routes:\n  - match: {{ probe: direct }}\n    notify: [ok]\n  \
             - match: {{ probe: \"via-*\" }}\n    notify: [stuck]\n    fallback: [ok]\n",
            stuck.url(),
            TIMEOUT.as_millis(),
            ok.url()
        ),
    );
    d.start();
    for n in VIA.iter().chain(&["direct"]) {
        d.wait_state(n, "up", Duration::from_secs(10));
    }

    // The three pages to `stuck`: all hanging.
    let hung_at = Instant::now();
    hung_target.off();
    wait_for(
        Duration::from_secs(10),
        "a hanging send for each of the three pages",
        || {
            let mut probes: Vec<String> = stuck
                .requests()
                .iter()
                .map(|r| r.body["probe"].as_str().unwrap_or("").to_owned())
                .collect();
            probes.sort();
            probes.dedup();
            probes == VIA
        },
    );
    eprintln!(
        "three sends hanging at stuck {:?} after their target went away",
        hung_at.elapsed()
    );

    // While they hang, another probe goes down: paged on time.
    let direct_bound = Duration::from_millis(DIRECT_EVERY_MS) * AFTER + Duration::from_secs(1);
    direct_target.off();
    let (_, direct_took) = ok.wait_accepted(
        direct_bound + Duration::from_secs(10),
        "the direct page",
        |r| {
            r.iter()
                .any(|r| r.body["probe"] == "direct" && r.body["event"] == "trigger")
        },
    );
    let stuck_tries_then = stuck.requests().len();
    eprintln!(
        "direct page: {direct_took:?} (bound {direct_bound:?}); stuck had seen {stuck_tries_then} \
         requests by then, none answered"
    );
    assert!(
        direct_took <= direct_bound,
        "the direct page took {direct_took:?} with stuck hanging; bound {direct_bound:?}"
    );

    // The hung pages through the fallback. Worst case per page from its target going away:
    // detection (after × every), then max_attempts tries of at most timeout + backstop each,
    // the backoff between them (base × 2^(k-1), +20% jitter, capped) and a dispatcher tick
    // before each retry, plus a tick for the fallback's send.
    let backoffs: Duration = (1..MAX_ATTEMPTS)
        .map(|k| (RETRY_BASE * (1 << (k - 1))).mul_f64(1.2).min(RETRY_MAX))
        .sum();
    let fallback_bound = Duration::from_millis(VIA_EVERY_MS) * AFTER
        + (TIMEOUT + BACKSTOP) * MAX_ATTEMPTS
        + backoffs
        + TICK * MAX_ATTEMPTS
        + Duration::from_secs(1);
    ok.wait_accepted(
        fallback_bound + Duration::from_secs(10),
        "the three fallback pages",
        |r| VIA.iter().all(|n| r.iter().any(|r| r.body["probe"] == *n)),
    );
    let fallback_took = hung_at.elapsed();
    eprintln!(
        "fallback pages all delivered {fallback_took:?} after the fault (bound {fallback_bound:?})"
    );
    assert!(
        fallback_took <= fallback_bound,
        "fallback took {fallback_took:?}; bound {fallback_bound:?}"
    );
    wait_for(Duration::from_secs(10), "the outbox to settle", || {
        settled(&incidents(&d))
    });

    // `stuck`: max_attempts requests per page, none answered.
    let hung = stuck.requests();
    let mut per_probe: BTreeMap<String, usize> = BTreeMap::new();
    for r in &hung {
        assert_eq!(r.answered, None, "stuck never answers");
        assert_eq!(r.body["event"], "trigger");
        *per_probe
            .entry(r.body["probe"].as_str().unwrap_or("?").to_owned())
            .or_default() += 1;
    }
    let want: BTreeMap<String, usize> = VIA
        .iter()
        .map(|n| (n.to_string(), MAX_ATTEMPTS as usize))
        .collect();
    assert_eq!(per_probe, want, "{hung:#?}");

    // `ok`: one trigger per probe, nothing else.
    let got = ok.accepted();
    let mut paged: Vec<&str> = got
        .iter()
        .map(|r| {
            assert_eq!(r.body["event"], "trigger");
            r.body["probe"].as_str().unwrap()
        })
        .collect();
    paged.sort();
    assert_eq!(paged, ["direct", "via-1", "via-2", "via-3"], "{got:#?}");

    // On record: each hung page failed on `stuck` with the timeout, then delivered by `ok`.
    let list = incidents(&d);
    assert_eq!(list.len(), 4, "{list:#?}");
    for i in &list {
        if i["probe"] == "direct" {
            assert_eq!(deliveries(i), ["trigger ok delivered"], "{i:#}");
            continue;
        }
        assert_eq!(
            deliveries(i),
            ["trigger stuck failed", "trigger ok delivered"],
            "{i:#}"
        );
        let first = &i["deliveries"][0];
        assert_eq!(first["attempts"], MAX_ATTEMPTS);
        let err = first["last_error"].as_str().unwrap_or("");
        assert!(err.contains("no answer within 1s"), "{err}");
    }
    assert!(d.log().contains("falling back"));

    // `/healthz` names the failing notifier, and only it.
    let (code, health) = healthz(&d);
    eprintln!("/healthz: {code} {health}");
    assert_eq!(code, 503, "{health}");
    assert_eq!(health["status"], "unhealthy");
    let problems: Vec<&str> = health["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let streak = VIA.len() as u32 * MAX_ATTEMPTS;
    assert!(
        problems.contains(
            &format!("notifiers: stuck: {streak} failed delivery attempts in a row").as_str()
        ),
        "{problems:?}"
    );
    assert!(
        problems.iter().all(|p| !p.contains(" ok: ")),
        "{problems:?}"
    );
    let metrics = support::http_get_blocking(&format!("{}/metrics", d.url()));
    assert!(
        metrics.contains(&format!(
            "probed_notifier_failure_streak{{notifier=\"stuck\"}} {streak}"
        )),
        "{metrics}"
    );

    let stopping = Instant::now();
    assert!(d.stop().success());
    eprintln!("stopped in {:?}", stopping.elapsed());
}

/// A small tmpfs mounted for one test (root only), unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        Ok(Tmpfs(dir.to_path_buf()))
    }

    /// Fills what is left with one file; returns its path and size.
    fn fill(&self) -> (std::path::PathBuf, u64) {
        use std::io::Write;
        let path = self.0.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 16 * 1024];
        let mut n = 0u64;
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(k) => n += k as u64,
                Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
                Err(e) => panic!("filling the tmpfs: {e}"),
            }
        }
        let _ = f.flush();
        (path, n)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// One sample of `/metrics` (the first series whose line starts with `series`).
fn metric(d: &Daemon, series: &str) -> f64 {
    let body = support::http_get_blocking(&format!("{}/metrics", d.url()));
    body.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in /metrics"))
}

/// The disk under the store fills up (a real tmpfs, filled to the last byte). Probing goes
/// on; results are held in memory; a probe that goes down meanwhile is paged from memory at
/// once; `/healthz` names the store; the heartbeat turns into `/fail` with that reason. Once
/// space is freed, everything held is written (every request the target served has its
/// result, none dropped), the incident is recorded with its page as already sent, the
/// heartbeat is healthy again, and the recovery resolves the same pager incident.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_buffers_results_pages_from_memory_and_reports_degraded() {
    let web = Target::start().await;
    let mut flaky = Target::start().await;
    let hook = Receiver::webhook(vec![]).await;
    let beats = Receiver::webhook(vec![]).await;
    let mut d = daemon(
        &[
            probe("web", &web.url("/"), 200),
            probe("flaky", &flaky.url("/"), 200),
        ],
        "alerting: { max_attempts: 3, retry_base: 100ms, retry_max: 1s }",
        &format!(
            "{}watchdog:\n  heartbeat: {{ url: \"{}/hb/secret-77\", every: 200ms }}\n",
            hook_route(&hook.url()),
            beats.url()
        ),
    );
    let disk = match Tmpfs::mount(&d.dir.path().join("data"), "4m") {
        Ok(t) => t,
        Err(e) => panic!(
            "this test mounts a small tmpfs under the store to make the disk really fill up, \
             which needs root (CI runs as root): {e}"
        ),
    };
    d.start();
    d.wait_state("web", "up", Duration::from_secs(10));
    d.wait_state("flaky", "up", Duration::from_secs(10));
    beats.wait_accepted(Duration::from_secs(10), "healthy pings", |r| {
        r.iter().filter(|r| r.path == "/hb/secret-77").count() >= 2
    });

    // The fault: not one byte left under the store.
    let (filler, filled) = disk.fill();
    let t_fault = Instant::now();
    eprintln!("filled the tmpfs with {filled} bytes");
    let mut store_problem = String::new();
    wait_for(
        Duration::from_secs(15),
        "/healthz to name the store",
        || {
            let (code, h) = healthz(&d);
            store_problem = h["problems"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .find(|p| p.starts_with("store: writes failing"))
                .unwrap_or_default()
                .to_owned();
            code == 503 && !store_problem.is_empty()
        },
    );
    eprintln!(
        "unhealthy {:?} after the fault: {store_problem}",
        t_fault.elapsed()
    );
    assert!(store_problem.contains("full"), "{store_problem}");
    let is_store_fail =
        |r: &Request| r.path == "/hb/secret-77/fail" && r.text.contains("store: writes failing");
    let (_, took) = beats.wait_accepted(Duration::from_secs(10), "a /fail ping", |r| {
        r.iter().any(is_store_fail)
    });
    eprintln!("heartbeat reported the store {took:?} after /healthz did");
    let early_fails = beats
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/fail") && !is_store_fail(r))
        .count();
    assert_eq!(early_fails, 0, "no /fail for anything else");

    // Probing goes on, and a probe that goes down now is paged from memory.
    flaky.off();
    let t_down = Instant::now();
    let bound = Duration::from_millis(200) * AFTER + Duration::from_secs(1);
    let (got, took) = hook.wait_accepted(bound + Duration::from_secs(10), "the page", |r| {
        !with_event(r, "trigger").is_empty()
    });
    eprintln!("paged from memory {took:?} after the target went down (bound {bound:?})");
    assert!(took <= bound, "paged after {took:?}, bound {bound:?}");
    let trigger = with_event(&got, "trigger")[0].clone();
    assert_eq!(trigger.body["probe"], "flaky");
    let key = trigger.body["dedup_key"].as_str().unwrap().to_owned();
    assert!(key.starts_with("probed-faults-"), "{key}");
    assert_eq!(d.probe_state("flaky"), "down", "state kept in memory");
    // A few seconds of results pile up in memory.
    let mut buffered = 0.0;
    wait_for(Duration::from_secs(15), "results held in memory", || {
        buffered = metric(&d, "probed_store_buffered");
        buffered >= 25.0
    });
    assert!(
        d.log().contains("paging from memory"),
        "the log says how it paged"
    );
    let (code, _) = healthz(&d);
    assert_eq!(code, 503, "still failing: nothing has freed the disk");
    let outage = t_fault.elapsed();

    // Space comes back: what was held is written, and health returns.
    std::fs::remove_file(&filler).unwrap();
    let t_free = Instant::now();
    wait_for(Duration::from_secs(15), "/healthz to be ok again", || {
        healthz(&d).0 == 200
    });
    let healed = t_free.elapsed();
    let fails_so_far = beats.requests().len();
    beats.wait_accepted(Duration::from_secs(10), "a healthy ping again", |r| {
        r[fails_so_far.min(r.len())..]
            .iter()
            .any(|r| r.path == "/hb/secret-77")
    });
    eprintln!(
        "outage {outage:?} ({:?} of it with flaky down); healthy {healed:?} after space came back; {buffered} results were held",
        t_down.elapsed() - t_free.elapsed()
    );
    // The recovery resolves the very incident the memory page opened at the pager.
    flaky.on().await;
    let (got, _) = hook.wait_accepted(Duration::from_secs(10), "the resolve", |r| {
        !with_event(r, "resolve").is_empty()
    });
    assert_eq!(
        with_event(&got, "trigger").len(),
        1,
        "paged once, not again"
    );
    assert_eq!(
        with_event(&got, "resolve")[0].body["dedup_key"],
        key.as_str()
    );

    let incs = incidents(&d);
    assert_eq!(incs.len(), 1, "{incs:#?}");
    let trig = incs[0]["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["event"] == "trigger")
        .cloned()
        .unwrap_or_default();
    assert_eq!(trig["status"], "delivered", "{trig}");
    assert_eq!(metric(&d, "probed_store_dropped_total"), 0.0);
    assert!(metric(&d, "probed_alerts_paged_from_memory_total") >= 1.0);

    // Nothing lost: every request the target served has its stored result (a drain on stop
    // writes what is queued; at most the one run cut short by the stop is missing).
    assert!(d.stop().success());
    let served = web.hits.load(std::sync::atomic::Ordering::Relaxed) as i64;
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", d.db().display()))
        .await
        .unwrap();
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM results r JOIN probes p ON p.id = r.probe_id WHERE p.name = 'web'",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    eprintln!("web: {served} requests served, {stored} results stored");
    assert!(
        (0..=1).contains(&(served - stored)),
        "served {served}, stored {stored}"
    );
    assert!(
        !d.log().contains("secret-77"),
        "the heartbeat URL is never logged"
    );
    drop(disk);
}

/// A target for the storm test, on its own thread and runtime (so the test's own waiting
/// never delays it): records each connection's open and close times, and either holds each
/// one open without answering (`hang`) or drops it at once.
/// Each connection's open and (once seen) close time.
type Conns = std::sync::Arc<std::sync::Mutex<Vec<(Instant, Option<Instant>)>>>;

struct Storm {
    addr: std::net::SocketAddr,
    conns: Conns,
    hang: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Storm {
    fn start() -> Storm {
        use std::sync::atomic::Ordering::SeqCst;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        let addr = l.local_addr().unwrap();
        let conns: Conns = Default::default();
        let hang = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (c, h) = (conns.clone(), hang.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let l = tokio::net::TcpListener::from_std(l).unwrap();
                loop {
                    let Ok((mut s, _)) = l.accept().await else {
                        continue;
                    };
                    let i = {
                        let mut g = c.lock().unwrap();
                        g.push((Instant::now(), None));
                        g.len() - 1
                    };
                    let (c, h) = (c.clone(), h.clone());
                    tokio::spawn(async move {
                        if h.load(SeqCst) {
                            // Hold it until the prober gives up.
                            use tokio::io::AsyncReadExt;
                            let mut buf = [0u8; 1024];
                            while let Ok(k) = s.read(&mut buf).await {
                                if k == 0 {
                                    break;
                                }
                            }
                        }
                        drop(s);
                        c.lock().unwrap()[i].1 = Some(Instant::now());
                    });
                }
            });
        });
        Storm { addr, conns, hang }
    }

    fn total(&self) -> u64 {
        self.conns.lock().unwrap().len() as u64
    }

    /// Most connections open at once. A close is seen a moment after the prober closed
    /// (its FIN and a new connect can arrive together), so each one counts as closed
    /// `slack` before the target saw it; a real breach of a cap lasts a whole check.
    fn peak(&self, slack: Duration) -> usize {
        let now = Instant::now();
        let mut events: Vec<(Instant, i32)> = Vec::new();
        for (open, close) in self.conns.lock().unwrap().iter() {
            let close = close.unwrap_or(now);
            let close = close.checked_sub(slack).unwrap_or(close).max(*open);
            events.push((*open, 1));
            events.push((close, -1));
        }
        // Closes before opens at the same instant.
        events.sort_by_key(|(t, d)| (*t, *d));
        let (mut cur, mut peak) = (0i32, 0i32);
        for (_, d) in events {
            cur += d;
            peak = peak.max(cur);
        }
        peak as usize
    }
}

/// MURAL's reconnect storm, from the prober's side: 40 probes of one host that first hangs on
/// every connection, then drops every connection at once. The daemon's own load on that host
/// stays bounded: never more than `max_per_host` connections open at once, and at most one
/// attempt per probe per interval (no retries inside a run, no catch-up bursts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storming_target_gets_bounded_load() {
    use std::sync::atomic::Ordering::SeqCst;
    const PROBES: u64 = 40;
    const EVERY_MS: u64 = 500;
    const PER_HOST: usize = 8;
    let storm = Storm::start();
    let url = format!("http://{}/", storm.addr);
    let probes: Vec<String> = (0..PROBES)
        .map(|i| probe(&format!("p{i:02}"), &url, EVERY_MS))
        .collect();
    let mut d = daemon(
        &probes,
        &format!("defaults: {{ max_per_host: {PER_HOST} }}"),
        "",
    );
    d.start();
    // Phase 1: the host hangs. Every probe goes down (slots held by hung checks count against
    // the deadline), and the host never sees more than the cap at once.
    wait_for(Duration::from_secs(20), "every probe down", || {
        let (v, _) = d.status();
        v["probes"]
            .as_array()
            .is_some_and(|p| p.len() as u64 == PROBES && p.iter().all(|p| p["state"] == "down"))
    });
    let window = Duration::from_secs(3);
    let (t0, n0) = (Instant::now(), storm.total());
    wait_for(window * 2, "a measuring window", || t0.elapsed() >= window);
    let (hung, took) = (storm.total() - n0, t0.elapsed());
    let peak = storm.peak(Duration::from_millis(20));
    // Phase 2: every connection is dropped at once, and the probes keep coming back.
    storm.hang.store(false, SeqCst);
    let (t1, n1) = (Instant::now(), storm.total());
    wait_for(window * 2, "a measuring window", || t1.elapsed() >= window);
    let (dropped, took2) = (storm.total() - n1, t1.elapsed());
    let bound = |d: Duration| PROBES * (d.as_millis() as u64 / EVERY_MS + 1);
    eprintln!(
        "hanging host: {hung} connections in {took:?} (bound {}), peak {peak} at once (cap {PER_HOST}); \
         dropping host: {dropped} connections in {took2:?} (bound {})",
        bound(took),
        bound(took2)
    );
    assert!(peak <= PER_HOST, "peak {peak} open at once, cap {PER_HOST}");
    assert!(hung <= bound(took), "{hung} connections in {took:?}");
    assert!(
        dropped <= bound(took2),
        "{dropped} connections in {took2:?}"
    );
    // And the daemon said why the hung ones were down.
    let (v, _) = d.status();
    let reasons: Vec<String> = v["probes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["last_error"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(reasons.len() as u64, PROBES, "{reasons:?}");
    assert!(d.stop().success());
}

/// Another process takes the database's write lock (a real `sqlite3` client in Python holding
/// `BEGIN IMMEDIATE`): commits fail once the busy timeout runs out, the heartbeat turns into
/// `/fail` naming the lock, results are held in memory; when the other process lets go,
/// everything held is written and the heartbeat is healthy again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_locked_by_another_process_is_reported_and_nothing_is_lost() {
    use std::io::{BufRead, Write};
    let web = Target::start().await;
    let beats = Receiver::webhook(vec![]).await;
    let mut d = daemon(
        &[probe("web", &web.url("/"), 200)],
        "",
        &format!(
            "watchdog:\n  heartbeat: {{ url: \"{}/hb/lock\", every: 200ms }}\n",
            beats.url()
        ),
    );
    d.start();
    d.wait_state("web", "up", Duration::from_secs(10));
    let script = "import sqlite3, sys\n\
                  c = sqlite3.connect(sys.argv[1], isolation_level=None)\n\
                  c.execute('BEGIN IMMEDIATE')\n\
                  print('locked', flush=True)\n\
                  sys.stdin.read()\n\
                  c.execute('ROLLBACK')\n";
    let mut locker = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(d.db())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    std::io::BufReader::new(locker.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "locked");
    let t0 = Instant::now();
    let (got, _) = beats.wait_accepted(Duration::from_secs(20), "a /fail naming the lock", |r| {
        r.iter()
            .any(|r| r.path == "/hb/lock/fail" && r.text.contains("locked"))
    });
    let fail = got.iter().find(|r| r.path == "/hb/lock/fail").unwrap();
    eprintln!(
        "reported {:?} after the lock (busy timeout 5 s): {}",
        t0.elapsed(),
        fail.text
    );
    assert!(fail.text.contains("store: writes failing"), "{}", fail.text);
    wait_for(Duration::from_secs(10), "results held in memory", || {
        metric(&d, "probed_store_buffered") >= 10.0
    });
    // The other process lets go.
    locker.stdin.take().unwrap().write_all(b"").unwrap();
    assert!(locker.wait().unwrap().success());
    let seen = beats.requests().len();
    beats.wait_accepted(Duration::from_secs(20), "a healthy ping again", |r| {
        r[seen.min(r.len())..].iter().any(|r| r.path == "/hb/lock")
    });
    assert_eq!(healthz(&d).0, 200);
    assert_eq!(metric(&d, "probed_store_dropped_total"), 0.0);
    assert!(d.stop().success());
    let served = web.hits.load(std::sync::atomic::Ordering::Relaxed) as i64;
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", d.db().display()))
        .await
        .unwrap();
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM results")
        .fetch_one(&db)
        .await
        .unwrap();
    eprintln!("web: {served} requests served, {stored} results stored");
    assert!(
        (0..=1).contains(&(served - stored)),
        "served {served}, stored {stored}"
    );
}

/// A probe outside its objectives (Apdex) is `degraded` with one incident; `kill -9` and a
/// restart replay its recent runs from the store, so it stays degraded in the same incident:
/// no resolve, no second page. Then it recovers, and the incident resolves once.
#[test]
fn restart_keeps_a_degraded_probe_degraded_without_a_second_page() {
    let rt = support::runtime();
    let lab = support::lab(&rt);
    let hook = rt.block_on(Receiver::webhook(vec![]));
    let mut d = daemon(
        &[format!(
            "  - name: slow\n    kind: http\n    every: 200ms\n    timeout: 180ms\n    \
             request: {{ url: \"{}\" }}\n    alert: {{ resolve_hold: 0s }}\n    \
             slo: {{ apdex: {{ target: 50ms, window: 5m }}, time_scale: 150, min_runs: 5 }}\n",
            lab.url("/")
        )],
        "",
        &hook_route(&hook.url()),
    );
    d.start();
    d.wait_state("slow", "up", Duration::from_secs(10));
    // The Apdex window (5m / 150 = 2 s) is covered once the probe ran that long.
    wait_for(Duration::from_secs(20), "a covered window", || {
        lab.stats().requests >= 12
    });
    lab.set_latency(Duration::from_millis(120));
    let (got, paged_in) = hook.wait_accepted(Duration::from_secs(20), "the trigger", |r| {
        !with_event(r, "trigger").is_empty()
    });
    eprintln!("degraded page {paged_in:?} after the latency rose");
    let trigger = with_event(&got, "trigger")[0].clone();
    assert_eq!(trigger.body["state"], "degraded");
    let id = trigger.body["incident"].as_i64().unwrap();
    wait_for(Duration::from_secs(10), "the trigger recorded", || {
        settled(&incidents(&d))
    });

    d.kill9();
    let before = lab.stats().requests;
    d.start();
    // Twenty runs after the restart, each judged against the replayed window.
    wait_for(Duration::from_secs(20), "20 runs after the restart", || {
        lab.stats().requests >= before + 20
    });
    assert_eq!(d.probe_state("slow"), "degraded");
    let (v, _) = d.status();
    let slo = &v["probes"][0]["slo"];
    assert!(
        slo["alert"]
            .as_str()
            .unwrap_or("")
            .starts_with("Apdex 0.50"),
        "{slo}"
    );
    let l = incidents(&d);
    assert_eq!(l.len(), 1, "one incident: {l:#?}");
    assert_eq!(l[0]["id"], id);
    assert!(l[0]["recovered_at"].is_null(), "never recovered: {l:#?}");

    // Fast again: up, and the same incident resolves once.
    lab.heal();
    hook.wait_accepted(Duration::from_secs(20), "the resolve", |r| {
        !with_event(r, "resolve").is_empty()
    });
    let accepted = hook.accepted();
    assert_eq!(with_event(&accepted, "trigger").len(), 1, "{accepted:#?}");
    assert_eq!(with_event(&accepted, "resolve").len(), 1, "{accepted:#?}");
    assert_eq!(with_event(&accepted, "resolve")[0].body["incident"], id);
    assert_eq!(d.stop().code(), Some(0));
}

/// The database is deleted under the running daemon (`rm data/probed.db*`; SQLite goes on
/// writing to the unlinked file). `/healthz` fails its store check at once, saying so, and the
/// log says it once. After a restart the database is new and incident ids start again at 1,
/// but the dedup keys differ: a pager still holding the old incident 1 gets a page of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_deleted_under_the_daemon_fails_healthz_and_its_dedup_keys_are_not_reused() {
    let mut target = Target::start().await;
    let hook = Receiver::webhook(vec![]).await;
    let mut d = daemon(
        &[probe("web", &target.url("/"), 300)],
        "",
        &hook_route(&hook.url()),
    );
    d.start();
    d.wait_state("web", "up", Duration::from_secs(10));
    target.off();
    let (got, _) = hook.wait_accepted(Duration::from_secs(20), "the first page", |r| {
        !with_event(r, "trigger").is_empty()
    });
    let first = with_event(&got, "trigger")[0].body.clone();
    assert_eq!(first["incident"], 1);
    assert_eq!(healthz(&d).0, 200, "healthy before the file goes");

    let db = d.db();
    for suffix in ["", "-wal", "-shm"] {
        let f = format!("{}{suffix}", db.display());
        let _ = std::fs::remove_file(&f);
    }
    let store_problem = |h: &Value| {
        h["problems"].as_array().and_then(|p| {
            p.iter()
                .filter_map(Value::as_str)
                .find(|p| p.starts_with("store: "))
                .map(str::to_owned)
        })
    };
    wait_for(
        Duration::from_secs(10),
        "/healthz to fail the store check",
        || healthz(&d).0 == 503,
    );
    let (_, h) = healthz(&d);
    let problem = store_problem(&h).unwrap_or_else(|| panic!("{h}"));
    assert!(
        problem.contains("probed.db was deleted while open"),
        "{problem}"
    );
    assert_eq!(d.log().matches("store file gone").count(), 1, "logged once");

    d.stop();
    d.start();
    let (got, _) = hook.wait_accepted(
        Duration::from_secs(20),
        "a page from the new database",
        |r| with_event(r, "trigger").len() >= 2,
    );
    let second = with_event(&got, "trigger")[1].body.clone();
    assert_eq!(second["incident"], 1, "a new database counts from 1 again");
    assert_ne!(
        first["dedup_key"], second["dedup_key"],
        "the new database reused the old one's dedup key"
    );
    let (code, h) = healthz(&d);
    assert_eq!(code, 200, "the new file is fine: {h}");
}
