//! Wall-clock steps against the real `probed` binary: its wall clock is stepped by an hour,
//! forward and back, while it runs (libfaketime, `LD_PRELOAD`, with the monotonic clock left
//! alone), as NTP stepping a wrong clock would. Push probes must not page, http probes must
//! keep their cadence and sane latencies, an escalation must fire on time, and the step must
//! be logged and counted.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use support::receiver::Receiver;
use support::{Daemon, Target, http_get_blocking, http_post_blocking, wait_for};

/// Debian's `faketime` package (deploy/test.sh installs it).
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";
const TOKEN: &str = "clock-step-push-token-0123";
const HOUR_MS: f64 = 3_600_000.0;

/// The daemon's faked wall clock: an offset from the real one, in a file libfaketime reads
/// on every call (`FAKETIME_NO_CACHE`); the monotonic clock stays real.
struct FakeClock {
    file: PathBuf,
}

impl FakeClock {
    fn new(d: &Daemon) -> FakeClock {
        assert!(
            Path::new(LIBFAKETIME).exists(),
            "{LIBFAKETIME} is missing: the clock-step tests need libfaketime \
             (Debian package `faketime`; deploy/test.sh installs it)"
        );
        let c = FakeClock {
            file: d.dir.path().join("faketime.rc"),
        };
        c.set("+0");
        c
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("LD_PRELOAD", LIBFAKETIME.to_owned()),
            ("FAKETIME_TIMESTAMP_FILE", self.file.display().to_string()),
            ("FAKETIME_NO_CACHE", "1".to_owned()),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_owned()),
        ]
    }

    /// Sets the offset from the real clock (`+3600`, `-3600`, in seconds): written aside and
    /// renamed in, so the daemon never reads half a line.
    fn set(&self, offset: &str) {
        let tmp = self.file.with_extension("tmp");
        std::fs::write(&tmp, format!("{offset}\n")).unwrap();
        std::fs::rename(&tmp, &self.file).unwrap();
    }
}

fn start(d: &mut Daemon, clock: &FakeClock) {
    let env = clock.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    d.start_env(&env);
}

/// A sample of `/metrics`, 0 when absent.
fn metric(d: &Daemon, name: &str) -> f64 {
    http_get_blocking(&format!("{}/metrics", d.url()))
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Waits until the daemon has seen `n` steps and shifted its timers after the last one.
fn wait_for_shift(d: &Daemon, n: usize) {
    wait_for(Duration::from_secs(5), "the step to be detected", || {
        metric(d, "probed_clock_steps_total") >= n as f64
    });
    wait_for(Duration::from_secs(5), "the timers to be shifted", || {
        d.log().matches("timers shifted by the clock step").count() >= n
    });
}

/// Target hits over `window`, and the most in any half second of it.
fn hits_during(target: &Target, window: Duration) -> (u64, u64) {
    use std::sync::atomic::Ordering::Relaxed;
    let t0 = Instant::now();
    let mut last = target.hits.load(Relaxed);
    let first = last;
    let mut most = 0;
    while t0.elapsed() < window {
        std::thread::sleep(Duration::from_millis(500));
        let now = target.hits.load(Relaxed);
        most = most.max(now - last);
        last = now;
    }
    (last - first, most)
}

/// Stored latencies of the probe's latest results, and the largest jump between the times
/// they were recorded at (ms).
fn results(d: &Daemon, probe: &str) -> (Vec<f64>, f64) {
    let body = http_get_blocking(&format!(
        "{}/api/v1/probes/{probe}/results?limit=60",
        d.url()
    ));
    let json = &body[body.find("\r\n\r\n").unwrap() + 4..];
    let v: serde_json::Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {body}"));
    let rows = v["results"].as_array().expect("results");
    let lat: Vec<f64> = rows
        .iter()
        .map(|r| r["latency_ms"].as_f64().unwrap())
        .collect();
    let ats: Vec<f64> = rows.iter().map(|r| r["at_ms"].as_f64().unwrap()).collect();
    let jump = ats
        .windows(2)
        .map(|w| (w[0] - w[1]).abs())
        .fold(0.0, f64::max);
    (lat, jump)
}

fn push(d: &Daemon) {
    let r = http_post_blocking(&format!("{}/api/v1/push/{TOKEN}", d.url()));
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
}

/// An hour forward, just after a push probe's ping: it stays up for the period it was given
/// (no false page), then goes down on time when no ping follows; an http probe every 500 ms
/// runs at the same cadence before and after, with millisecond latencies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forward_step_neither_pages_a_push_probe_nor_disturbs_http_probes() {
    let target = Target::start().await;
    let hook = Receiver::webhook(vec![]).await;
    let mut d = Daemon::new(
        &format!(
            "probes:\n\
             \x20 - name: web\n    kind: http\n    every: 500ms\n    timeout: 400ms\n    \
             request: {{ url: \"{}\" }}\n\
             \x20 - name: job\n    kind: push\n    token: {TOKEN}\n    period: 3s\n    grace: 2s\n    \
             every: 250ms\n    alert: {{ after: 1, recover_after: 1 }}\n",
            target.url("/")
        ),
        &format!(
            "notifiers:\n  hook: {{ kind: webhook, url: \"{}\" }}\nroutes:\n  - notify: [hook]\n",
            hook.url()
        ),
    );
    let clock = FakeClock::new(&d);
    start(&mut d, &clock);
    d.wait_state("web", "up", Duration::from_secs(10));
    push(&d);
    d.wait_state("job", "up", Duration::from_secs(10));
    let (before, _) = hits_during(&target, Duration::from_secs(3));

    push(&d);
    let pinged = Instant::now();
    clock.set("+3600");
    let (after, most) = hits_during(&target, Duration::from_secs(3));
    wait_for_shift(&d, 1);
    // Due 5 s (period + grace) after the ping: up until then, and nothing paged.
    while pinged.elapsed() < Duration::from_millis(4_500) {
        let state = d.probe_state("job");
        assert_eq!(
            state,
            "up",
            "{:?} after the ping and the step",
            pinged.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(hook.requests().is_empty(), "{:#?}", hook.requests());
    // ... then down on time: the step neither fired it nor put it off by an hour.
    let (got, _) = hook.wait_accepted(Duration::from_secs(10), "the push probe's page", |r| {
        r.iter().any(|r| r.body["event"] == "trigger")
    });
    let late = pinged.elapsed();
    assert_eq!(got[0].body["probe"], "job");
    assert!(
        late <= Duration::from_millis(6_500),
        "paged {late:?} after the last ping (period 3s + grace 2s)"
    );
    eprintln!(
        "forward step: web hits {before} in 3 s before, {after} in 3 s after (most {most} per \
         0.5 s); push probe paged {late:?} after its last ping"
    );

    assert!(
        (5..=7).contains(&before),
        "{before} hits in 3 s before the step"
    );
    assert!(
        (5..=7).contains(&after),
        "{after} hits in 3 s after the step"
    );
    assert!(most <= 2, "{most} hits in half a second: a burst");
    let (lat, jump) = results(&d, "web");
    assert!(lat.iter().all(|l| *l < 1_000.0), "latencies {lat:?}");
    assert!(
        (jump - HOUR_MS).abs() < 10_000.0,
        "the results' times show the hour's step ({jump} ms): the clock was really stepped"
    );
    let step = metric(&d, "probed_clock_last_step_seconds");
    assert!((step - 3600.0).abs() < 1.0, "last step {step} s");
    // One step, and no spurious one (jitter, libfaketime re-reading its file).
    assert_eq!(metric(&d, "probed_clock_steps_total"), 1.0);
    let log = d.log();
    assert!(
        log.contains("wall clock stepped") && log.contains("step=+1h"),
        "{log}"
    );
    assert!(d.stop().success());
}

/// An hour back, while an incident is open: its escalation (`after: 3s`) still fires about
/// 3 s after it opened, not an hour later; an http probe keeps its cadence, with no burst.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backward_step_does_not_hold_back_an_escalation() {
    let mut broken = Target::start().await;
    broken.off();
    let steady = Target::start().await;
    let first = Receiver::webhook(vec![]).await;
    let second = Receiver::webhook(vec![]).await;
    let mut d = Daemon::new(
        &format!(
            "probes:\n\
             \x20 - name: broken\n    kind: http\n    every: 500ms\n    timeout: 400ms\n    \
             request: {{ url: \"{}\" }}\n    alert: {{ after: 1 }}\n\
             \x20 - name: steady\n    kind: http\n    every: 500ms\n    timeout: 400ms\n    \
             request: {{ url: \"{}\" }}\n",
            broken.url("/"),
            steady.url("/")
        ),
        &format!(
            "notifiers:\n  first: {{ kind: webhook, url: \"{}\" }}\n  second: {{ kind: webhook, url: \"{}\" }}\n\
             routes:\n  - match: {{ probe: broken }}\n    notify: [first]\n    escalate:\n      \
             - {{ after: 3s, notify: [second] }}\n",
            first.url(),
            second.url()
        ),
    );
    let clock = FakeClock::new(&d);
    start(&mut d, &clock);
    first.wait_accepted(Duration::from_secs(10), "the first page", |r| {
        r.iter().any(|r| r.body["event"] == "trigger")
    });
    let paged = Instant::now();
    clock.set("-3600");
    wait_for_shift(&d, 1);
    let (esc, _) = second.wait_accepted(Duration::from_secs(10), "the escalation", |r| {
        r.iter().any(|r| r.body["event"] == "escalation")
    });
    let escalated = paged.elapsed();
    assert_eq!(esc[0].body["probe"], "broken");
    let (hits, most) = hits_during(&steady, Duration::from_secs(3));
    eprintln!(
        "backward step: escalated {escalated:?} after the first page; steady hits {hits} in 3 s \
         (most {most} per 0.5 s)"
    );
    assert!(
        escalated >= Duration::from_millis(2_000) && escalated <= Duration::from_millis(5_000),
        "escalated {escalated:?} after the first page (after: 3s)"
    );
    assert!((5..=7).contains(&hits), "{hits} hits in 3 s after the step");
    assert!(most <= 2, "{most} hits in half a second: a burst");
    let (lat, jump) = results(&d, "steady");
    assert!(lat.iter().all(|l| *l < 1_000.0), "latencies {lat:?}");
    assert!(
        (jump - HOUR_MS).abs() < 10_000.0,
        "no hour's step in the results ({jump} ms)"
    );
    assert_eq!(metric(&d, "probed_clock_steps_total"), 1.0);
    let step = metric(&d, "probed_clock_last_step_seconds");
    assert!((step + 3600.0).abs() < 1.0, "last step {step} s");
    assert!(d.log().contains("step=-1h"), "{}", d.log());
    assert!(d.stop().success());
}

/// An hour forward while another process holds the store's write lock, so the timers cannot
/// be shifted yet: the daemon says so, keeps judging its timers on the clock they were kept
/// in (the push probe pinged just before stays up; nothing pages, not even from memory), and
/// shifts them once the lock is gone; the probe then goes down when its period really ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_the_store_cannot_take_yet_changes_nothing_until_it_can() {
    use sqlx::Connection;
    let hook = Receiver::webhook(vec![]).await;
    let mut d = Daemon::new(
        &format!(
            "probes:\n\
             \x20 - name: job\n    kind: push\n    token: {TOKEN}\n    period: 10s\n    grace: 2s\n    \
             every: 250ms\n    alert: {{ after: 1, recover_after: 1 }}\n"
        ),
        &format!(
            "notifiers:\n  hook: {{ kind: webhook, url: \"{}\" }}\nroutes:\n  - notify: [hook]\n",
            hook.url()
        ),
    );
    let clock = FakeClock::new(&d);
    start(&mut d, &clock);
    push(&d);
    d.wait_state("job", "up", Duration::from_secs(10));
    let mut other = sqlx::SqliteConnection::connect_with(
        &sqlx::sqlite::SqliteConnectOptions::new().filename(d.db()),
    )
    .await
    .unwrap();
    sqlx::raw_sql("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .unwrap();
    let pinged = Instant::now();
    clock.set("+3600");
    wait_for(Duration::from_secs(5), "the step to be detected", || {
        metric(&d, "probed_clock_steps_total") >= 1.0
    });
    // The store's busy timeout (5 s) runs out: the shift fails, is logged, and waits. The
    // shift may first wait out a dispatcher pass that holds the timers' gate while it too
    // waits on the locked store (up to another 5 s): 10 s plus margin.
    wait_for(
        Duration::from_secs(15),
        "the failed shift to be logged",
        || d.log().contains("cannot shift timers after a clock step"),
    );
    eprintln!("failed shift logged {:?} after the step", pinged.elapsed());
    assert!(!d.log().contains("timers shifted"), "{}", d.log());
    assert_eq!(
        d.probe_state("job"),
        "up",
        "{:?} after the step",
        pinged.elapsed()
    );
    sqlx::raw_sql("ROLLBACK").execute(&mut other).await.unwrap();
    drop(other);
    wait_for(Duration::from_secs(10), "the timers to be shifted", || {
        d.log().contains("timers shifted by the clock step")
    });
    let shifted = pinged.elapsed();
    // Due 12 s (period + grace) after the ping.
    while pinged.elapsed() < Duration::from_millis(11_000) {
        let state = d.probe_state("job");
        assert_eq!(
            state,
            "up",
            "{:?} after the ping and the step",
            pinged.elapsed()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(hook.requests().is_empty(), "{:#?}", hook.requests());
    let (got, _) = hook.wait_accepted(Duration::from_secs(10), "the push probe's page", |r| {
        r.iter().any(|r| r.body["event"] == "trigger")
    });
    let late = pinged.elapsed();
    eprintln!(
        "step while the store is locked: shifted {shifted:?} after the step; push probe paged \
         {late:?} after its last ping (due after 12 s)"
    );
    assert_eq!(got[0].body["probe"], "job");
    assert!(
        late <= Duration::from_millis(13_500),
        "paged {late:?} after the last ping"
    );
    assert!(d.stop().success());
}
