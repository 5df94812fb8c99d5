//! The scheduler: one task and one timer per probe.
//!
//! Timing rules, in order of importance:
//!
//! * **Spread.** A probe's runs fall at a fixed phase of its interval, derived from a hash of
//!   its name and aligned to the wall clock: `t mod every == hash(name) mod every`. Ten
//!   thousand probes on a 30 s interval start at ten thousand different instants, the same
//!   ones after every restart, and never in one synchronized burst against what they watch.
//!   Cron schedules fire at their times plus a small hashed offset (at most a tenth of the
//!   gap between fires, at most 10 s).
//! * **Monotonic.** After the first fire, ticks advance on `tokio::time::Instant` by whole
//!   intervals, so a wall-clock step (NTP) neither fires every probe at once nor stretches a
//!   gap.
//! * **No overlap.** A run happens inside its probe's task, so the next tick cannot start
//!   while the previous run is still going. Ticks that pass meanwhile are *skipped and
//!   counted* (`probed_runs_skipped_total{reason="overlap"}`), never queued to fire in a burst.
//!   A tick that falls on the previous run's deadline (timeout = interval) is not one of
//!   them: it starts as soon as that run is over, at most [`LATE_START`] late.
//! * **Deadline.** Every run has one: `timeout` from its scheduled start. The check honours it
//!   itself (so it can say which phase ran out of time); a hard stop 250 ms later is the
//!   backstop.
//! * **Caps.** A global semaphore bounds checks in flight; a per-host one bounds checks
//!   against one host. Waiting for a per-host slot counts against the deadline: when every
//!   slot is held by checks the host is not answering, the run is `down` saying so. A run that
//!   finds no global slot before its deadline is skipped and counted (it is the daemon's own
//!   limit, not the target's fault), never reported as the target being down.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{ProbeConfig, Schedule};
use crate::evaluate::Verdicts;
use crate::hash::stable_hash;
use crate::metrics::{Metrics, ProbeMetrics};
use crate::probe::{CheckCx, Env, Observation, Probe};
use crate::store::{HourRollup, LastResult, Overall, Record, StateChange, Store};

/// Hard stop after a check's own deadline, should the check overrun it.
const BACKSTOP: Duration = Duration::from_millis(250);

/// How late a tick may still start once the previous run is over (a quarter of the timeout
/// at most): a run that ends at its deadline, which is the next tick when the timeout equals
/// the interval, does not cost that tick.
const LATE_START: Duration = BACKSTOP.saturating_add(Duration::from_millis(50));

/// What probe tasks share.
pub struct Runner {
    pub env: Env,
    pub store: Store,
    pub metrics: Metrics,
    pub global: Arc<Semaphore>,
    pub max_concurrent: usize,
    pub max_per_host: usize,
    /// Routes and maintenance windows of the running config (swapped on reload).
    pub router: std::sync::RwLock<Arc<crate::alert::plan::Router>>,
    /// Runs skipped, all probes together (overlap or no global slot).
    pub skipped_total: std::sync::atomic::AtomicU64,
    hosts: Mutex<std::collections::HashMap<String, Arc<Semaphore>>>,
    /// Where this daemon stands (`location`).
    pub location: String,
    /// The other locations' latest verdicts, by probe id (a shared store; [`Runner::sync`]).
    pub votes: std::sync::RwLock<HashMap<i64, Vec<crate::evaluate::Vote>>>,
    /// Why this daemon cannot see, while it is blind.
    pub blind: Mutex<Option<String>>,
    /// What the blind judgment reads besides the probes: references, the store.
    pub sight: Mutex<SightState>,
    /// This daemon has been blind since it started.
    ever_blind: std::sync::atomic::AtomicBool,
    /// When this daemon last stopped being blind (unix ms): its verdicts from before then
    /// are blind ones.
    blind_ended_at: std::sync::atomic::AtomicI64,
    /// When each other location was last seen blind: its verdicts from before then are
    /// blind ones.
    remote_blind_at: Mutex<HashMap<String, i64>>,
    /// When the other locations were last read from the shared store (unix ms; 0: never).
    last_read_ok: std::sync::atomic::AtomicI64,
    /// The running probes and `watchdog.blind`, for [`Runner::judge_sight_now`].
    sight_input: std::sync::RwLock<(Vec<Arc<ProbeEntry>>, crate::config::BlindOptions)>,
    /// When [`Runner::judge_sight_now`] last judged ([`crate::time::mono_ms`]).
    sight_judged_at: std::sync::atomic::AtomicI64,
}

/// A judgement of sight younger than this stands for the verdicts turning bad meanwhile:
/// in an outage thousands turn at once, and each judging every probe again made the
/// daemon's CPU grow with the square of its probes just when it has to page.
const SIGHT_FRESH_MS: i64 = 20;

impl Runner {
    pub fn new(
        env: Env,
        store: Store,
        metrics: Metrics,
        max_concurrent: usize,
        max_per_host: usize,
    ) -> Runner {
        Runner {
            env,
            store,
            metrics,
            global: Arc::new(Semaphore::new(max_concurrent.max(1))),
            max_concurrent: max_concurrent.max(1),
            max_per_host: max_per_host.max(1),
            skipped_total: Default::default(),
            router: Default::default(),
            hosts: Default::default(),
            location: String::new(),
            votes: Default::default(),
            blind: Default::default(),
            sight: Default::default(),
            ever_blind: Default::default(),
            blind_ended_at: Default::default(),
            remote_blind_at: Default::default(),
            sight_input: Default::default(),
            sight_judged_at: Default::default(),
            last_read_ok: Default::default(),
        }
    }

    /// Says where this daemon stands.
    pub fn at_location(mut self, location: &str) -> Runner {
        self.location = location.to_owned();
        self.env.locations.set_own(location);
        self
    }

    /// The per-host semaphore for `host`, shared by every probe of that host.
    pub fn host_slot(&self, host: &str) -> Arc<Semaphore> {
        self.hosts
            .lock()
            .unwrap()
            .entry(host.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(self.max_per_host)))
            .clone()
    }
}

/// One configured probe as the daemon runs it; shared with the API.
pub struct ProbeEntry {
    pub cfg: Arc<ProbeConfig>,
    pub id: i64,
    pub live: Mutex<Live>,
    /// `every 30s` / `cron ...`, rendered once for the status API.
    pub schedule_text: String,
    /// With no result for this long, the status API calls the probe `unknown`: two
    /// intervals plus the timeout plus 5 s.
    pub stale_after_ms: i64,
    /// When the next run is due, on the [`crate::time::mono_ms`] scale (-1: not scheduled).
    /// A run more than its timeout plus [`OVERDUE_GRACE`] past this is overdue: its task or
    /// the runtime is stuck.
    pub next_due: std::sync::atomic::AtomicI64,
    /// The host it talks to ([`crate::probe::ProbeSpec::target_host`]), worked out once: the
    /// blindness judgement reads it for every probe, often.
    pub host: Option<String>,
}

/// Slack past a run's due time plus its timeout before the run counts as overdue.
pub const OVERDUE_GRACE: Duration = Duration::from_secs(5);

impl ProbeEntry {
    /// Whether the next run is overdue at `now` ([`crate::time::mono_ms`]).
    pub fn overdue(&self, now: i64) -> bool {
        let due = self.next_due.load(std::sync::atomic::Ordering::Relaxed);
        due >= 0 && now - due > (self.cfg.timeout + OVERDUE_GRACE).as_millis() as i64
    }

    fn set_next_due(&self, t: Instant) {
        self.next_due.store(
            crate::time::mono_ms_at(t.into_std()),
            std::sync::atomic::Ordering::Relaxed,
        );
    }
}

impl ProbeEntry {
    pub fn new(cfg: Arc<ProbeConfig>, id: i64, live: Live) -> ProbeEntry {
        let stale_after_ms = (cfg.schedule.interval() * 2 + cfg.timeout).as_millis() as i64 + 5_000;
        ProbeEntry {
            schedule_text: cfg.schedule.to_string(),
            stale_after_ms,
            id,
            live: Mutex::new(live),
            next_due: std::sync::atomic::AtomicI64::new(-1),
            host: cfg.spec.target_host(),
            cfg,
        }
    }
}

/// A probe's running task: its entry (what the API and the self-checks read) and the token
/// that stops it (on reload or shutdown).
pub struct Running {
    pub entry: Arc<ProbeEntry>,
    pub cancel: CancellationToken,
}

/// What the daemon knows of a probe right now.
#[derive(Debug, Clone, Default)]
pub struct Live {
    /// This location's verdicts.
    pub verdicts: Verdicts,
    /// Why this location's verdict last changed (its failure, or the objective breached).
    pub local_reason: Option<String>,
    /// The probe's own state: the quorum of its locations (this one alone, without a shared
    /// store), and since when.
    pub overall: crate::evaluate::State,
    pub overall_since: Option<i64>,
    pub last: Option<LastResult>,
    pub window: UptimeWindow,
    /// The probe's objectives and their windows, when it has `slo:`.
    pub slo: Option<Box<crate::slo::Tracker>>,
}

/// Runs and successes per hour over the last 24 hours (plus the current hour).
#[derive(Debug, Clone, Default)]
pub struct UptimeWindow {
    hours: VecDeque<HourRollup>,
}

const HOUR_MS: i64 = 3_600_000;

impl UptimeWindow {
    pub fn from_rollups(r: Vec<HourRollup>) -> UptimeWindow {
        let mut w = UptimeWindow {
            hours: r.into_iter().collect(),
        };
        while w.hours.len() > 25 {
            w.hours.pop_front();
        }
        w
    }

    pub fn add(&mut self, at: i64, ok: bool) {
        let hour = at - at.rem_euclid(HOUR_MS);
        match self.hours.back_mut() {
            Some(h) if h.hour == hour => {
                h.runs += 1;
                h.ok += ok as u64;
            }
            Some(h) if h.hour > hour => {} // clock stepped back: keep the newer hour
            _ => {
                self.hours.push_back(HourRollup {
                    hour,
                    runs: 1,
                    ok: ok as u64,
                });
                if self.hours.len() > 25 {
                    self.hours.pop_front();
                }
            }
        }
    }

    /// Percentage of successful runs in the last 24 hours, if any ran.
    pub fn uptime_24h(&self, now: i64) -> Option<f64> {
        let from = now - 24 * HOUR_MS;
        let (runs, ok) = self
            .hours
            .iter()
            .filter(|h| h.hour + HOUR_MS > from)
            .fold((0u64, 0u64), |(r, o), h| (r + h.runs, o + h.ok));
        (runs > 0).then(|| ok as f64 * 100.0 / runs as f64)
    }
}

/// Delay until the probe's first fire: the next wall-clock instant whose phase within the
/// interval equals the hash of the name.
pub fn first_delay(name: &str, interval: Duration, now_wall: Duration) -> Duration {
    let iv = interval.as_nanos().max(1);
    let offset = stable_hash(name) as u128 % iv;
    let phase = now_wall.as_nanos() % iv;
    Duration::from_nanos(((offset + iv - phase) % iv) as u64)
}

fn wall_now() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

/// Runs one probe until `cancel` fires.
///
/// A task that dies (a panic: a bug, never the target's doing) must not vanish quietly: the
/// probe is marked due from the moment its task starts, so a death at any point leaves it
/// overdue, which fails `/healthz`'s `overdue probes` check; the panic is logged with the
/// probe's name.
pub async fn run_probe(
    runner: Arc<Runner>,
    entry: Arc<ProbeEntry>,
    probe: Probe,
    metrics: ProbeMetrics,
    cancel: CancellationToken,
) {
    use futures_util::FutureExt;
    entry.set_next_due(Instant::now());
    let name = entry.cfg.name.clone();
    let run = std::panic::AssertUnwindSafe(probe_loop(runner, entry, probe, metrics, cancel));
    if let Err(panic) = run.catch_unwind().await {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        tracing::error!(probe = %name, panic = %what, "probe task died; the probe no longer runs");
    }
}

async fn probe_loop(
    runner: Arc<Runner>,
    entry: Arc<ProbeEntry>,
    probe: Probe,
    mut metrics: ProbeMetrics,
    cancel: CancellationToken,
) {
    let cfg = entry.cfg.clone();
    let host_slot = cfg.spec.target_host().map(|h| runner.host_slot(&h));
    let mut next = match &cfg.schedule {
        Schedule::Every(iv) => Instant::now() + first_delay(&cfg.name, *iv, wall_now()),
        Schedule::Cron { .. } => match next_cron(&cfg) {
            Some(t) => t,
            None => {
                tracing::warn!(probe = %cfg.name, "cron schedule has no future fire time; not running");
                return;
            }
        },
    };
    loop {
        entry.set_next_due(next);
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep_until(next) => {}
        }
        let lag = Instant::now().saturating_duration_since(next);
        runner.metrics.schedule_lag.observe(lag.as_secs_f64());
        runner.metrics.recent_lag.observe(lag);
        // The deadline runs from the scheduled start, so lag never extends a run past its
        // interval.
        let deadline = next + cfg.timeout;
        // Boxed, so the idle task stays small (see `idle_probe_task_is_small`).
        let run = Box::pin(run_once(
            &runner,
            &entry,
            &probe,
            host_slot.as_ref(),
            deadline,
            &mut metrics,
        ));
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = run => {}
        }
        next = match &cfg.schedule {
            Schedule::Every(iv) => {
                let mut n = next + *iv;
                let now = Instant::now();
                // A run that ended at its deadline (timeout = interval) ends a hair after
                // the next tick: that tick starts now, a little late, rather than being
                // skipped. Its deadline still runs from its scheduled time, so lateness
                // never accumulates, and the grace is small enough to leave it most of its
                // timeout.
                let grace = LATE_START.min(cfg.timeout / 4);
                if n + grace < now {
                    let behind = now.duration_since(n).as_nanos() / iv.as_nanos().max(1) + 1;
                    metrics.skipped_overlap(behind as u64);
                    runner
                        .skipped_total
                        .fetch_add(behind as u64, std::sync::atomic::Ordering::Relaxed);
                    n += *iv * behind as u32;
                }
                n
            }
            Schedule::Cron { .. } => match next_cron(&cfg) {
                Some(t) => t.max(next + Duration::from_millis(1)),
                None => return,
            },
        };
    }
}

/// The next cron fire as an `Instant`, plus the probe's hashed offset.
fn next_cron(cfg: &ProbeConfig) -> Option<Instant> {
    let Schedule::Cron { schedule, .. } = &cfg.schedule else {
        return None;
    };
    let now = chrono::Utc::now();
    let mut upcoming = schedule.after(&now);
    let fire = upcoming.next()?;
    let gap = upcoming
        .next()
        .and_then(|f2| (f2 - fire).to_std().ok())
        .unwrap_or(Duration::from_secs(60));
    let spread_max = (gap / 10).min(Duration::from_secs(10)).as_millis().max(1) as u64;
    let offset = Duration::from_millis(stable_hash(&cfg.name) % spread_max);
    let wait = (fire - now).to_std().unwrap_or_default() + offset;
    Some(Instant::now() + wait)
}

/// One run: take the slots, check within the deadline, record the observation.
pub(crate) async fn run_once(
    runner: &Runner,
    entry: &ProbeEntry,
    probe: &Probe,
    host_slot: Option<&Arc<Semaphore>>,
    deadline: Instant,
    metrics: &mut ProbeMetrics,
) {
    let cfg = &entry.cfg;
    // On the timers' clock: a state change opens or recovers an incident at this time.
    let at = crate::clock::now_ms();
    let _global: OwnedSemaphorePermit = match runner.global.clone().try_acquire_owned() {
        Ok(p) => p,
        Err(_) => {
            match tokio::time::timeout_at(deadline, runner.global.clone().acquire_owned()).await {
                Ok(Ok(p)) => p,
                _ => {
                    metrics.skipped_capacity();
                    runner
                        .skipped_total
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::warn!(
                        probe = %cfg.name,
                        max_concurrent = runner.max_concurrent,
                        "run skipped: every global check slot stayed busy until its deadline"
                    );
                    return;
                }
            }
        }
    };
    let _host = match host_slot {
        None => None,
        Some(sem) => match tokio::time::timeout_at(deadline, sem.clone().acquire_owned()).await {
            Ok(Ok(p)) => Some(p),
            _ => {
                let host = entry.host.as_deref().unwrap_or_default();
                let obs = Observation::default().fail(host_busy(runner.max_per_host, host));
                record(runner, entry, metrics, at, obs);
                return;
            }
        },
    };
    let obs = check_once(runner, probe, deadline, cfg.timeout).await;
    record(runner, entry, metrics, at, obs);
}

/// One check of `probe` by `deadline`, counted in `probed_checks_in_flight` while it runs
/// (however it ends: a reload or a client that hangs up drops it mid-check), with a hard stop
/// [`BACKSTOP`] past the deadline should the check overrun it; `timeout` is named in that
/// failure. Scheduled runs and `/probe` both check through here.
pub async fn check_once(
    runner: &Runner,
    probe: &Probe,
    deadline: Instant,
    timeout: Duration,
) -> Observation {
    let _in_flight = InFlight::new(&runner.metrics.in_flight);
    let cx = CheckCx {
        env: &runner.env,
        deadline,
    };
    let started = Instant::now();
    // Boxed: a check's state machine is large (hyper, rustls, hickory) and lives only while
    // the check runs, instead of inside every idle probe task.
    let check = Box::pin(probe.check(&cx));
    match tokio::time::timeout_at(deadline + BACKSTOP, check).await {
        Ok(o) => o,
        Err(_) => Observation {
            duration: started.elapsed(),
            ..Default::default()
        }
        .fail(format!(
            "timed out after {} (hard deadline)",
            crate::units::format_duration(timeout)
        )),
    }
}

/// The failure of a check that never started: every check to `host` already allowed
/// (`max_per_host`) was still waiting for answers at its deadline.
pub fn host_busy(max_per_host: usize, host: &str) -> String {
    format!(
        "not started: {max_per_host} checks to {host} were still waiting for answers at the \
         deadline (max_per_host); the host is not answering in time"
    )
}

/// Holds one count of a gauge while alive.
struct InFlight<'a>(&'a prometheus::IntGauge);

impl<'a> InFlight<'a> {
    fn new(g: &'a prometheus::IntGauge) -> InFlight<'a> {
        g.inc();
        InFlight(g)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Feeds an observation to the state machine, the metrics and the store. Never waits.
///
/// Two states come out of it. This location's own verdict (`alert.after`, `within`,
/// `recover_after`, objectives: [`crate::evaluate::judge`]) changes with its own runs and is
/// recorded, never paged by itself. The probe's state is the quorum of the locations
/// ([`Runner::overall_change`]): a lone daemon is its own quorum, so both change together;
/// with several sharing a store, the others' verdicts count too, and only a change of the
/// probe's state opens or resolves its incident.
pub fn record(
    runner: &Runner,
    entry: &ProbeEntry,
    metrics: &mut ProbeMetrics,
    at: i64,
    obs: Observation,
) {
    let cfg = &entry.cfg;
    let judged = {
        let mut guard = entry.live.lock().unwrap();
        let live = &mut *guard;
        let judged = crate::evaluate::judge(
            &mut live.verdicts,
            live.slo.as_deref_mut(),
            at,
            (obs.ok, obs.duration),
            obs.error.as_deref(),
            &cfg.alert,
        );
        live.last = Some(LastResult {
            at,
            ok: obs.ok,
            duration_us: obs.duration.as_micros() as i64,
            error: obs.error.clone(),
            status_code: obs.status_code,
        });
        live.window.add(at, obs.ok);
        if let Some(j) = &judged {
            live.local_reason = j.transition.reason.clone();
        }
        judged
    };
    // A verdict turning bad may be the daemon going blind rather than the target going
    // down: judge that first (the half-second judgment may not have run yet).
    if judged.as_ref().is_some_and(|j| {
        matches!(
            j.transition.to,
            crate::evaluate::State::Down | crate::evaluate::State::Degraded
        )
    }) {
        runner.judge_sight_now(at);
    }
    let (verdicts, overall) = {
        let mut live = entry.live.lock().unwrap();
        let severity = judged.as_ref().and_then(|j| j.severity.clone());
        let overall = runner.overall_change(entry, &mut live, at, severity.as_deref());
        (live.verdicts.clone(), overall)
    };
    runner.metrics.observe(metrics, &obs);
    if let Some(t) = judged.as_ref().map(|j| &j.transition)
        && runner.shared_store()
    {
        tracing::info!(probe = %cfg.name, from = %t.from, to = %t.to, reason = t.reason.as_deref().unwrap_or(""), "this location's verdict changed");
    }
    if let Some(o) = &overall {
        log_overall(cfg, o);
    }
    if judged.is_some() || overall.is_some() {
        runner.store.state_change(StateChange {
            probe_id: entry.id,
            verdicts: judged.is_some().then(|| verdicts.clone()),
            local: judged.map(|j| j.transition),
            overall,
        });
    }
    runner.store.record(Record {
        keep: !matches!(cfg.spec, crate::probe::ProbeSpec::Location(_)),
        probe_id: entry.id,
        at,
        obs,
        verdicts,
    });
}

fn log_overall(cfg: &ProbeConfig, o: &Overall) {
    use crate::evaluate::State;
    let t = &o.transition;
    let reason = t.reason.as_deref().unwrap_or("");
    // Who sees what, with several locations.
    let seen = match &o.page {
        Some(crate::paging::Page::Open(p)) => p.alert.locations.clone(),
        Some(crate::paging::Page::Recover { locations, .. }) => locations.clone(),
        None => None,
    }
    .unwrap_or_default();
    match t.to {
        State::Down => {
            tracing::warn!(probe = %cfg.name, from = %t.from, reason, seen, "probe is down")
        }
        State::Degraded => tracing::warn!(
            probe = %cfg.name, from = %t.from, reason, seen, "probe is outside its objectives"
        ),
        to => {
            tracing::info!(probe = %cfg.name, from = %t.from, to = %to, seen, "probe state changed")
        }
    }
}

/// Whether this daemon can see, judged every half second ([`Runner::judge_sight`]).
#[derive(Debug, Default)]
pub struct SightState {
    /// Every reference check failed at its last round (`Some(why)`), or at least one
    /// answered (`Some` of nothing is not used: `references_ok` says it).
    pub references_failing: Option<String>,
    /// At least one reference answered at the last round.
    pub references_ok: bool,
    /// The shared store could not be read at the last sync.
    pub store_unreachable: bool,
}

/// The other locations are read every 2 s: no read for longer than this, and the store
/// counts as out of reach for the votes (a pass may hang before it fails).
const READ_OVERDUE_MS: i64 = 3_000;

/// While the shared store cannot be read, the other locations' last verdicts keep counting
/// for this long (from the last read) before they age: time to tell whether the store went away (then this
/// daemon judges alone, and pages from memory) or this daemon was cut off (then it is
/// blind, and pages no one).
pub const FREEZE_VOTES_MS: i64 = 15_000;

impl Runner {
    /// The probes and options the blind judgment reads (set by the daemon as it applies a
    /// config).
    pub fn set_sight_input(
        &self,
        entries: Vec<Arc<ProbeEntry>>,
        opts: crate::config::BlindOptions,
    ) {
        *self.sight_input.write().unwrap() = (entries, opts);
    }

    /// [`Runner::judge_sight`] on the probes and options last set.
    pub fn judge_sight_now(&self, now: i64) -> Option<String> {
        use std::sync::atomic::Ordering::Relaxed;
        let mono = crate::time::mono_ms();
        let last = self.sight_judged_at.load(Relaxed);
        if last > 0 && mono - last < SIGHT_FRESH_MS {
            return self.blind();
        }
        self.sight_judged_at.store(mono, Relaxed);
        let input = self.sight_input.read().unwrap();
        self.judge_sight(&input.0, &input.1, now)
    }

    /// Judges whether this daemon is blind (`watchdog.blind`, `watchdog.reference`): its
    /// network probes' latest results within `within`, `failing` or more of at least
    /// `min_probes` failed, unless a reference answers; or every reference fails (and the
    /// shared store, if any, cannot be reached). Sets [`Runner::blind`] and the sight board
    /// the `location` probes read, logs the change, and returns the reason while blind.
    /// Probes that reach nothing (push, backup, location) do not count.
    pub fn judge_sight(
        &self,
        entries: &[Arc<ProbeEntry>],
        opts: &crate::config::BlindOptions,
        now: i64,
    ) -> Option<String> {
        // Per host: probes with a recent result, and how many of them failed.
        let mut hosts: HashMap<&str, (usize, usize)> = HashMap::new();
        for e in entries {
            let Some(host) = e.host.as_deref() else {
                continue;
            };
            let live = e.live.lock().unwrap();
            if let Some(l) = live.last.as_ref()
                && now - l.at <= opts.within.as_millis() as i64
            {
                let h = hosts.entry(host).or_default();
                h.0 += 1;
                h.1 += !l.ok as usize;
            }
        }
        let counted: usize = hosts.values().map(|h| h.0).sum();
        let failed: usize = hosts.values().map(|h| h.1).sum();
        let hosts_down = hosts.values().filter(|h| h.0 == h.1).count();
        let sight = self.sight.lock().unwrap();
        let mostly_failing = hosts.len() >= opts.min_hosts
            && hosts_down * 100 >= opts.failing as usize * hosts.len()
            && !sight.references_ok;
        let why = if let Some(r) = sight
            .references_failing
            .as_ref()
            .filter(|_| !self.shared_store() || sight.store_unreachable)
        {
            Some(r.clone())
        } else if mostly_failing {
            Some(format!(
                "{failed} of {counted} probes failed within {} ({hosts_down} of {} hosts)",
                crate::units::format_duration(opts.within),
                hosts.len()
            ))
        } else {
            None
        };
        drop(sight);
        let mut blind = self.blind.lock().unwrap();
        match (&*blind, &why) {
            (None, Some(w)) => {
                tracing::error!(why = %w, "this daemon cannot see: its failures count toward no quorum, its probes page no one, location:{} pages once", self.location)
            }
            (Some(_), None) => {
                self.blind_ended_at
                    .store(now, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!("this daemon sees again; each probe counts again from its next run")
            }
            _ => {}
        }
        blind.clone_from(&why);
        drop(blind);
        if why.is_some() {
            self.ever_blind
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
        self.env.locations.set_blind(why.clone());
        why
    }
}

impl Runner {
    /// Whether the store is shared with other daemons (PostgreSQL): then the other
    /// locations' verdicts count, and [`Runner::sync`] brings them in.
    pub fn shared_store(&self) -> bool {
        self.store.backend() == "postgres"
    }

    /// Why this daemon cannot see, while it is blind: its own verdicts then count toward no
    /// quorum.
    pub fn blind(&self) -> Option<String> {
        self.blind.lock().unwrap().clone()
    }

    /// Whether this daemon has been blind since it started.
    pub fn ever_blind(&self) -> bool {
        self.ever_blind.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The probe's state as the quorum of its locations says it now: this location's
    /// verdict (unless blind) and the other locations' latest (from [`Runner::sync`]),
    /// counted by [`crate::evaluate::tally`] under `alert.locations`. When it differs from
    /// the state the probe has, the change and what it pages (the route's plan, with who
    /// sees what); `None` otherwise. `severity` is an objective's own, for a change this
    /// location's verdict made.
    pub fn overall_change(
        &self,
        entry: &ProbeEntry,
        live: &mut Live,
        now: i64,
        severity: Option<&str>,
    ) -> Option<Overall> {
        use crate::evaluate::{State, Transition, Vote};
        let cfg = &entry.cfg;
        // A blind location's verdicts count toward no quorum, but for its say on the
        // locations themselves (blindness included).
        let location_probe = matches!(cfg.spec, crate::probe::ProbeSpec::Location(_));
        let sees = || {
            self.blind.lock().unwrap().is_none()
                && live.last.as_ref().is_some_and(|l| {
                    l.at > self
                        .blind_ended_at
                        .load(std::sync::atomic::Ordering::Relaxed)
                })
        };
        // A lone location (no other verdict known): with its own vote matching the state,
        // or no vote at all, there is nothing to tally. The common case, kept cheap.
        let alone = self
            .votes
            .read()
            .unwrap()
            .get(&entry.id)
            .is_none_or(|vs| vs.is_empty());
        if alone && (live.verdicts.state == live.overall || !(location_probe || sees())) {
            return None;
        }
        let mut votes: Vec<Vote> = self
            .votes
            .read()
            .unwrap()
            .get(&entry.id)
            .map(|vs| {
                vs.iter()
                    .filter(|v| location_probe || !v.blind)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        // A verdict from before sight came back is a blind one still: it waits for the
        // probe's next run.
        if location_probe || sees() {
            votes.push(Vote {
                location: self.location.clone(),
                state: live.verdicts.state,
                checked_at: live.last.as_ref().map(|l| l.at),
                reason: live.local_reason.clone(),
                blind: false,
            });
        }
        // The store out of reach for a moment (no read for longer than a pass takes): the
        // others' last verdicts stand as they were at the last read (see FREEZE_VOTES_MS).
        let last_read = self.last_read_ok.load(std::sync::atomic::Ordering::Relaxed);
        let frozen_at = (last_read > 0
            && now - last_read > READ_OVERDUE_MS
            && now - last_read < FREEZE_VOTES_MS)
            .then_some(last_read);
        if let Some(t) = frozen_at {
            for v in votes.iter_mut().filter(|v| v.location != self.location) {
                if v.checked_at.is_some_and(|c| t - c <= entry.stale_after_ms) {
                    v.checked_at = Some(now);
                }
            }
        }
        let tally = crate::evaluate::tally(&votes, cfg.alert.locations, now, entry.stale_after_ms);
        let to = tally.state?;
        if to == live.overall {
            return None;
        }
        // The reason of a location that sees it so: this one's first.
        let reason = (to != State::Up)
            .then(|| {
                let mine = votes
                    .iter()
                    .rev()
                    .filter(|v| v.state == to && v.reason.is_some());
                mine.map(|v| v.reason.clone()).next().flatten()
            })
            .flatten();
        let t = Transition {
            from: live.overall,
            to,
            at: now,
            reason,
        };
        live.overall = to;
        live.overall_since = Some(now);
        let mut plan = self.router.read().unwrap().plan_as(
            cfg,
            t.at,
            t.reason.as_deref(),
            severity.filter(|_| to == State::Degraded),
        );
        if to == State::Degraded {
            plan.alert.state = "degraded".into();
        }
        plan.alert.locations = tally.describe(to);
        Some(Overall {
            page: crate::alert::plan::page_for(&t, plan),
            transition: t,
        })
    }

    /// One pass with the other daemons of a shared store: says this one is alive (and
    /// whether it is blind), reads the other locations' verdicts that changed since the
    /// last pass and every probe's state (another daemon may have changed it), and judges
    /// each running probe again, so a probe tips when another location's verdict, or a
    /// location falling silent, makes the quorum move. `me` is this daemon's row.
    ///
    /// Returns the locations heard of for the first time (the daemon starts watching them).
    pub async fn sync(
        &self,
        entries: &[Arc<ProbeEntry>],
        elsewhere: &[Arc<ProbeEntry>],
        me: &crate::store::DaemonRow,
        last: &mut Option<i64>,
    ) -> Result<Vec<String>, crate::store::StoreError> {
        use crate::evaluate::Vote;
        let now = crate::clock::now_ms();
        self.store.daemon_seen(me).await?;
        // Results of other daemons land a little late (their writer lingers) and clocks
        // differ: look back a minute past the last pass; the first pass reads ten minutes.
        let since = last.map_or(now - 600_000, |l| l - 60_000);
        let remote = self.store.remote_votes(since).await?;
        let daemons = self.store.daemons().await?;
        let blind: std::collections::HashSet<String> = daemons
            .iter()
            .filter(|d| d.blind.is_some() && now - d.seen_at < 60_000)
            .map(|d| d.location.clone())
            .collect();
        // Each location as its most recent daemon last said.
        let mut seen: HashMap<String, crate::probe::location::Seen> = HashMap::new();
        for d in daemons {
            if seen.get(&d.location).is_none_or(|s| s.seen_at < d.seen_at) {
                seen.insert(
                    d.location.clone(),
                    crate::probe::location::Seen {
                        instance: d.instance,
                        seen_at: d.seen_at,
                        blind: d.blind,
                    },
                );
            }
        }
        let new = self.env.locations.set_others(seen, now);
        let blind_at = {
            let mut at = self.remote_blind_at.lock().unwrap();
            for b in &blind {
                at.insert(b.clone(), now);
            }
            at.clone()
        };
        // Blind now, or a verdict from before the location was last seen blind.
        let was_blind = |loc: &str, checked: Option<i64>| {
            blind.contains(loc)
                || blind_at
                    .get(loc)
                    .is_some_and(|b| checked.is_none_or(|c| c <= *b))
        };
        {
            let mut votes = self.votes.write().unwrap();
            for r in remote {
                let list = votes.entry(r.probe_id).or_default();
                list.retain(|v| v.location != r.location);
                list.push(Vote {
                    blind: was_blind(&r.location, r.checked_at),
                    location: r.location,
                    state: r.state,
                    checked_at: r.checked_at,
                    reason: r.error,
                });
            }
            // Blindness changes without a new verdict: mark every vote as it is now.
            for list in votes.values_mut() {
                for v in list.iter_mut() {
                    v.blind = was_blind(&v.location, v.checked_at);
                }
            }
        }
        let overall: HashMap<i64, (crate::evaluate::State, Option<i64>)> = self
            .store
            .overall_changes(i64::MIN)
            .await?
            .into_iter()
            .map(|(id, s, since)| (id, (s, since)))
            .collect();
        // Probes kept to other locations: their state as the store has it, judged there.
        for e in elsewhere {
            let mut live = e.live.lock().unwrap();
            if let Some((s, since)) = overall.get(&e.id) {
                live.overall = *s;
                live.overall_since = *since;
            }
        }
        for e in entries {
            let change = {
                let mut live = e.live.lock().unwrap();
                if let Some((s, since)) = overall.get(&e.id)
                    && *s != live.overall
                {
                    live.overall = *s;
                    live.overall_since = *since;
                }
                self.overall_change(e, &mut live, now, None)
            };
            if let Some(o) = change {
                log_overall(&e.cfg, &o);
                self.store.state_change(StateChange {
                    probe_id: e.id,
                    verdicts: None,
                    local: None,
                    overall: Some(o),
                });
            }
        }
        // Every minute, the day's uptime from every location's runs (as the store has them).
        if last.is_none_or(|l| now / 60_000 != l / 60_000) {
            let mut rollups = self.store.rollups_since(now - 25 * HOUR_MS).await?;
            for e in entries.iter().chain(elsewhere) {
                let window = rollups
                    .remove(&e.id)
                    .map(UptimeWindow::from_rollups)
                    .unwrap_or_default();
                e.live.lock().unwrap().window = window;
            }
        }
        *last = Some(now);
        self.last_read_ok
            .store(now, std::sync::atomic::Ordering::Relaxed);
        Ok(new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A runner on a fresh store, and the entry and probe for one http probe from YAML.
    async fn setup(
        probe_yaml: &str,
        max_concurrent: usize,
        max_per_host: usize,
    ) -> (
        Arc<Runner>,
        Arc<ProbeEntry>,
        Probe,
        ProbeMetrics,
        tempfile::TempDir,
        CancellationToken,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::config::load_str(
            &format!("probes:\n  - {probe_yaml}\n"),
            &dir.path().join("probed.yaml"),
            &|_| None,
        )
        .unwrap();
        let pc = cfg.probes[0].clone();
        let (store, writer) = Store::open(&dir.path().join("data"), 1024).await.unwrap();
        let stop = CancellationToken::new();
        tokio::spawn(writer.run(stop.clone(), Duration::from_secs(1)));
        let ids = store
            .register(&[(pc.name.clone(), pc.spec.kind())])
            .await
            .unwrap();
        let runner = Arc::new(Runner::new(
            Env::new(&[]).unwrap(),
            store,
            Metrics::new(),
            max_concurrent,
            max_per_host,
        ));
        let metrics = runner.metrics.probe(&pc);
        let probe = pc.spec.build().unwrap();
        let entry = Arc::new(ProbeEntry::new(
            pc.clone(),
            ids[&pc.name].id,
            Live::default(),
        ));
        (runner, entry, probe, metrics, dir, stop)
    }

    /// A server that accepts and never answers, counting connections open at once.
    async fn hanging_server() -> (std::net::SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let (now, max) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let (n, m) = (now.clone(), max.clone());
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                let (n, m) = (n.clone(), m.clone());
                tokio::spawn(async move {
                    let open = n.fetch_add(1, Ordering::SeqCst) + 1;
                    m.fetch_max(open, Ordering::SeqCst);
                    let mut buf = [0u8; 1024];
                    // Read until the client gives up (closes), never answer.
                    while let Ok(k) = tokio::io::AsyncReadExt::read(&mut s, &mut buf).await {
                        if k == 0 {
                            break;
                        }
                    }
                    n.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        (addr, now, max)
    }

    /// On the paused clock: the wait lasted until `deadline`, not less, and ended there (tokio's
    /// timer wheel rounds a deadline up to the next millisecond).
    fn assert_waited_until(deadline: Instant) {
        let now = Instant::now();
        assert!(
            now >= deadline && now <= deadline + Duration::from_millis(1),
            "ended {:?} after the deadline",
            now.checked_duration_since(deadline)
        );
    }

    #[tokio::test]
    async fn per_host_cap_full_until_the_deadline_is_down_saying_so() {
        let (runner, entry, probe, mut m, _dir, _stop) = setup(
            "{ name: capped, kind: http, request: { url: 'http://127.0.0.1:9/' } }",
            16,
            1,
        )
        .await;
        // On tokio's paused clock (once the store is open): the wait for a slot ends at the
        // deadline exactly, with no real time spent.
        tokio::time::pause();
        // Another check holds the only slot for host 127.0.0.1.
        let held = runner.host_slot("127.0.0.1").acquire_owned().await.unwrap();
        let deadline = Instant::now() + Duration::from_millis(150);
        run_once(
            &runner,
            &entry,
            &probe,
            Some(&runner.host_slot("127.0.0.1")),
            deadline,
            &mut m,
        )
        .await;
        assert_waited_until(deadline);
        let last = entry.live.lock().unwrap().last.clone().unwrap();
        assert!(!last.ok);
        assert_eq!(
            last.error.as_deref(),
            Some(
                "not started: 1 checks to 127.0.0.1 were still waiting for answers at the \
                 deadline (max_per_host); the host is not answering in time"
            )
        );
        drop(held);
    }

    #[tokio::test]
    async fn no_global_slot_skips_and_counts_without_a_verdict() {
        let (runner, entry, probe, mut m, _dir, _stop) = setup(
            "{ name: starved, kind: http, request: { url: 'http://127.0.0.1:9/' } }",
            1,
            8,
        )
        .await;
        tokio::time::pause(); // as above: the wait ends at the deadline, in no real time
        let held = runner.global.clone().acquire_owned().await.unwrap();
        let deadline = Instant::now() + Duration::from_millis(100);
        run_once(&runner, &entry, &probe, None, deadline, &mut m).await;
        assert_waited_until(deadline);
        assert!(
            entry.live.lock().unwrap().last.is_none(),
            "no observation recorded"
        );
        assert_eq!(
            runner
                .skipped_total
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        drop(held);
    }

    /// Runs every 2 s with a 2 s timeout against a host that never answers: each run ends
    /// at its deadline, which is the next tick, and that tick still runs (it used to be
    /// skipped as an overlap, so the failures came 4 s apart and `alert.after: 2` paged a run
    /// late). Never two checks at once. On tokio's paused clock: time moves only when every
    /// task waits, so the figures are exact.
    #[tokio::test]
    async fn a_run_that_times_out_at_the_next_tick_does_not_cost_that_tick() {
        let (addr, _open, max_open) = hanging_server().await;
        let (runner, entry, probe, m, _dir, _stop) = setup(
            &format!(
                "{{ name: hang, kind: http, every: 2s, timeout: 2s, \
                 request: {{ url: 'http://{addr}/' }} }}"
            ),
            16,
            8,
        )
        .await;
        // Paused once the store is open (sqlx's pool timeouts would fire at once).
        tokio::time::pause();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run_probe(
            runner.clone(),
            entry.clone(),
            probe,
            m,
            cancel.clone(),
        ));
        // The first fire comes within 2 s (the spread phase); runs start every 2 s after it
        // and each ends 2 s later, so 15 s hold at least 6 whole runs.
        tokio::time::sleep(Duration::from_secs(15)).await;
        cancel.cancel();
        task.await.unwrap();
        let skipped = runner
            .skipped_total
            .load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(
            skipped, 0,
            "a tick on the previous run's deadline was skipped"
        );
        let live = entry.live.lock().unwrap().clone();
        let failures = live.verdicts.consecutive_failures;
        assert!((6..=7).contains(&failures), "{failures} runs in 15 s");
        assert!(
            live.last
                .unwrap()
                .error
                .unwrap()
                .starts_with("timed out after"),
            "every run times out"
        );
        assert_eq!(
            max_open.load(Ordering::SeqCst),
            1,
            "two checks of one probe overlapped"
        );
    }

    /// A probe task that panics (here: a per-host cap beyond what tokio's semaphore takes,
    /// which the config now refuses) leaves its probe overdue for `/healthz`, instead of
    /// "not scheduled" and silently never run.
    #[tokio::test]
    async fn a_probe_task_that_dies_shows_as_overdue() {
        let (runner, entry, probe, m, _dir, _stop) = setup(
            "{ name: dies, kind: http, every: 1s, timeout: 1s, \
             request: { url: 'http://127.0.0.1:9/' } }",
            16,
            usize::MAX,
        )
        .await;
        let task = tokio::spawn(run_probe(
            runner,
            entry.clone(),
            probe,
            m,
            CancellationToken::new(),
        ));
        task.await.expect("the panic is caught in the task");
        let now = crate::time::mono_ms();
        assert!(
            !entry.overdue(now),
            "not overdue before its timeout and grace"
        );
        let later = now + (entry.cfg.timeout + OVERDUE_GRACE).as_millis() as i64 + 1;
        assert!(
            entry.overdue(later),
            "a dead probe task must show as overdue"
        );
    }

    #[test]
    fn spread_is_deterministic_and_even() {
        let iv = Duration::from_secs(30);
        let now = Duration::from_secs(1_000_000);
        // Same name, same phase, whatever the start time.
        let a = first_delay("api", iv, now);
        let b = first_delay("api", iv, now + Duration::from_secs(7));
        assert_eq!(
            (now + a).as_nanos() % iv.as_nanos(),
            (now + Duration::from_secs(7) + b).as_nanos() % iv.as_nanos()
        );
        // 10,000 probes: no millisecond holds more than a handful of starts, and the starts
        // cover the interval.
        let mut per_ms = vec![0u32; 30_000];
        for i in 0..10_000 {
            let d = first_delay(&format!("probe-{i}"), iv, now);
            assert!(d < iv);
            per_ms[d.as_millis() as usize] += 1;
        }
        let busiest = *per_ms.iter().max().unwrap();
        assert!(busiest <= 6, "{busiest} probes start in one millisecond");
        let used_seconds = (0..30)
            .filter(|s| per_ms[s * 1000..(s + 1) * 1000].iter().any(|&n| n > 0))
            .count();
        assert_eq!(used_seconds, 30);
    }

    #[test]
    fn cron_fires_at_its_time_plus_a_bounded_hashed_offset() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = crate::config::load_str(
            "probes:\n  - { name: c, kind: http, cron: '*/2 * * * * *', timeout: 1s, \
             request: { url: 'http://127.0.0.1:9/' } }\n",
            &dir.path().join("p.yaml"),
            &|_| None,
        )
        .unwrap();
        let pc = &cfg.probes[0];
        assert_eq!(pc.schedule.interval(), Duration::from_secs(2));
        let before = Instant::now();
        let at = next_cron(pc).unwrap();
        // Next even second (at most 2 s away) plus at most a tenth of the gap (200 ms).
        let wait = at.duration_since(before);
        assert!(wait <= Duration::from_millis(2200), "{wait:?}");
    }

    #[test]
    fn uptime_window() {
        let mut w = UptimeWindow::default();
        let t0 = 100 * HOUR_MS;
        for i in 0..10 {
            w.add(t0 + i * 1000, i != 3);
        }
        assert_eq!(w.uptime_24h(t0 + 10_000), Some(90.0));
        // 30 hours later the old hour is outside the window.
        w.add(t0 + 30 * HOUR_MS, true);
        assert_eq!(w.uptime_24h(t0 + 30 * HOUR_MS), Some(100.0));
        assert_eq!(UptimeWindow::default().uptime_24h(t0), None);
    }

    /// Blind by hosts, not probes: every probe of one host failing is that host's outage;
    /// most hosts failing is blindness, unless a reference answers; every reference
    /// failing is blindness. Blind, this location's verdicts count toward no quorum.
    #[tokio::test]
    async fn blindness_counts_hosts_and_listens_to_references() {
        let dir = tempfile::tempdir().unwrap();
        let yaml: String = [
            ("a1", "10.0.0.1"),
            ("a2", "10.0.0.1"),
            ("b", "10.0.0.2"),
            ("c", "10.0.0.3"),
            ("d", "10.0.0.4"),
        ]
        .iter()
        .map(|(n, h)| format!("  - {{ name: {n}, kind: tcp, host: {h}, port: 1 }}\n"))
        .collect();
        let cfg = crate::config::load_str(
            &format!("probes:\n{yaml}"),
            &dir.path().join("probed.yaml"),
            &|_| None,
        )
        .unwrap();
        let (store, _w) = Store::open(&dir.path().join("data"), 10).await.unwrap();
        let runner =
            Runner::new(Env::new(&[]).unwrap(), store, Metrics::new(), 10, 10).at_location("here");
        let entries: Vec<Arc<ProbeEntry>> = cfg
            .probes
            .iter()
            .enumerate()
            .map(|(i, p)| Arc::new(ProbeEntry::new(p.clone(), i as i64, Live::default())))
            .collect();
        let now = 1_000_000;
        let set = |name: &str, ok: bool| {
            let e = entries.iter().find(|e| e.cfg.name == name).unwrap();
            e.live.lock().unwrap().last = Some(LastResult {
                at: now - 1_000,
                ok,
                duration_us: 1,
                error: None,
                status_code: None,
            });
        };
        let opts = crate::config::BlindOptions {
            failing: 75,
            min_hosts: 3,
            within: Duration::from_secs(60),
        };
        for n in ["a1", "a2", "b", "c", "d"] {
            set(n, true);
        }
        // One host's every probe down: its outage, not blindness.
        set("a1", false);
        set("a2", false);
        assert_eq!(runner.judge_sight(&entries, &opts, now), None);
        // Three of four hosts down: blind.
        set("b", false);
        set("c", false);
        let why = runner.judge_sight(&entries, &opts, now).unwrap();
        assert_eq!(why, "4 of 5 probes failed within 1m (3 of 4 hosts)");
        assert_eq!(runner.blind().as_deref(), Some(why.as_str()));
        // Blind, its verdict on a target counts for nothing: no change of the probe.
        let e = &entries[2];
        {
            let mut live = e.live.lock().unwrap();
            live.verdicts.state = crate::evaluate::State::Down;
            live.overall = crate::evaluate::State::Up;
            assert!(runner.overall_change(e, &mut live, now, None).is_none());
        }
        // A reference answers: the network works, the targets are down.
        runner.sight.lock().unwrap().references_ok = true;
        assert_eq!(runner.judge_sight(&entries, &opts, now), None);
        // Its verdicts from before it saw again still count for nothing.
        {
            let mut live = e.live.lock().unwrap();
            assert!(runner.overall_change(e, &mut live, now, None).is_none());
        }
        // Every reference failing is blindness, whatever the probes say.
        for n in ["a1", "a2", "b", "c"] {
            set(n, true);
        }
        {
            let mut s = runner.sight.lock().unwrap();
            s.references_ok = false;
            s.references_failing =
                Some("every reference check fails (a.example: no answer)".into());
        }
        assert_eq!(
            runner.judge_sight(&entries, &opts, now).as_deref(),
            Some("every reference check fails (a.example: no answer)")
        );
        // Too few hosts to tell.
        runner.sight.lock().unwrap().references_failing = None;
        let few = crate::config::BlindOptions {
            min_hosts: 10,
            ..opts
        };
        for n in ["a1", "a2", "b", "c", "d"] {
            set(n, false);
        }
        assert_eq!(runner.judge_sight(&entries, &few, now), None);
    }
}
#[cfg(test)]
async fn tests_setup_for_size(
    d: &std::path::Path,
) -> (Arc<Runner>, Arc<ProbeEntry>, Probe, ProbeMetrics, (), ()) {
    let cfg = crate::config::load_str(
        "probes:\n  - { name: x, kind: http, request: { url: 'http://127.0.0.1:9/' } }\n",
        &d.join("p.yaml"),
        &|_| None,
    )
    .unwrap();
    let pc = cfg.probes[0].clone();
    let (store, _w) = Store::open(&d.join("data"), 10).await.unwrap();
    let runner = Arc::new(Runner::new(
        Env::new(&[]).unwrap(),
        store,
        Metrics::new(),
        4,
        4,
    ));
    let m = runner.metrics.probe(&pc);
    let probe = pc.spec.build().unwrap();
    let e = Arc::new(ProbeEntry::new(pc, 1, Live::default()));
    (runner, e, probe, m, (), ())
}

#[cfg(test)]
mod size_probe {
    /// An idle probe task costs its future's size, ten thousand times over: keep the check's
    /// large state out of it.
    #[tokio::test]
    async fn idle_probe_task_is_small() {
        let dir = tempfile::tempdir().unwrap();
        let (runner, entry, probe, m, _d, _s) = super::tests_setup_for_size(dir.path()).await;
        let f = super::run_probe(
            runner,
            entry,
            probe,
            m,
            tokio_util::sync::CancellationToken::new(),
        );
        let size = std::mem::size_of_val(&f);
        // Measured: 528 bytes (timers and the cancel future; the check is boxed). With the
        // check inlined it was 10 KB, i.e. 100 MB at 10,000 probes, and with the `Probe`
        // enum unboxed 3.4 KB: the largest kind's check, held more than once.
        assert!(size < 1024, "run_probe future is {size} bytes");
    }

    /// What one HTTP probe holds for as long as it is configured, ten thousand times over:
    /// its config, its spec, its entry (live state included), its compiled check, its
    /// metrics series and its idle task; the short strings behind them aside. 64 MiB for
    /// 10,000 probes leaves about 6.5 KB a probe for everything, the store's and the
    /// runtime's share and the binary itself included (BENCHMARKS.md, "Memory per probe").
    #[tokio::test]
    async fn per_probe_state_is_small() {
        use std::mem::size_of;
        let dir = tempfile::tempdir().unwrap();
        let (runner, entry, probe, m, _d, _s) = super::tests_setup_for_size(dir.path()).await;
        assert!(matches!(probe, crate::probe::Probe::Http(_)));
        let task = std::mem::size_of_val(&super::run_probe(
            runner,
            entry,
            probe,
            m,
            tokio_util::sync::CancellationToken::new(),
        ));
        let parts = [
            ("config", size_of::<crate::config::ProbeConfig>()),
            ("http spec", size_of::<crate::probe::http::Spec>()),
            ("entry", size_of::<super::ProbeEntry>()),
            ("http check", size_of::<crate::probe::http::Check>()),
            ("metrics series", size_of::<crate::metrics::ProbeSeries>()),
            ("idle task", task),
        ];
        let total: usize = parts.iter().map(|(_, n)| n).sum();
        // Measured: 2,720 bytes (config 440, spec 408, entry 456, check 592, series 296,
        // task 528). Before issue 17 the same parts cost 6.5 KB, and copies of the config
        // and its YAML about 7 KB more.
        assert!(total <= 3072, "per-probe state is {total} bytes: {parts:?}");
    }
}
