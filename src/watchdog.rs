//! Watching the watcher: the daemon's own liveness made visible from outside.
//!
//! * **Self-checks** ([`Shared::health`]): runtime, scheduler lag, overdue probes, store,
//!   store queue, alert delivery, notifiers, config; behind `/healthz` and `probectl status`,
//!   and what the systemd status, the heartbeats and the Watchdog alert below go by. They
//!   read [`Shared`], the running daemon's state, defined here (the lowest layer that reads
//!   it) and owned and changed by the daemon; the computed gauges of `/metrics` are
//!   gathered from it too ([`Shared::gauges`]).
//! * **Pulse.** A task stamps the time every 250 ms. If the runtime wedges, the pulse stops,
//!   and so does everything below that depends on it.
//! * **systemd.** `READY=1` once the probes run; `WATCHDOG=1` every half `WATCHDOG_USEC`, only
//!   while the pulse is fresh and the scheduler turns (not every probe overdue), so a hung
//!   daemon is restarted by systemd (`Type=notify`,
//!   `WatchdogSec=` in deploy/probed.service). `STATUS=` tells `systemctl status` how things are.
//! * **Heartbeats** (the dead-man's switch): each `watchdog.heartbeat` URL is pinged every
//!   `every` while the daemon is healthy (`/healthz` has no problems); while it is not, the
//!   ping goes to `<url>/fail` with the problems as the body, healthchecks.io style. When the
//!   daemon is dead, the pings stop and the receiver pages through its own path.
//! * **The `Watchdog` alert** (`watchdog.alertmanager`): Prometheus' always-firing alert, sent
//!   through the named alertmanager notifiers every `every` while the daemon is healthy, each
//!   send ending three `every`s ahead. Alertmanager routes it to a dead man's switch (the
//!   receiver that pages when an alert stops arriving).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::alert::Notifier;
use crate::alert::dispatch::Dispatcher;
use crate::config::{Config, Heartbeat, WatchdogAlert};
use crate::evaluate::State;
use crate::metrics::Gauges;
use crate::report::HealthCheck;
use crate::schedule::{ProbeEntry, Runner, Running};

/// How often the pulse beats, and how old it may be before the daemon counts as hung.
const PULSE_EVERY: Duration = Duration::from_millis(250);
const PULSE_STALE_MS: i64 = 5_000;

/// The watchdog's counters.
#[derive(Debug, Default)]
pub struct WatchdogStats {
    /// Last pulse, unix ms.
    pub pulse: AtomicI64,
    /// Last pulse on the monotonic scale ([`crate::time::mono_ms`]), what [`alive`](Self::alive)
    /// judges by: a wall-clock step must not make the daemon look hung.
    pub pulse_mono: AtomicI64,
    pub heartbeats_ok: AtomicU64,
    pub heartbeats_failed: AtomicU64,
    pub watchdog_alerts_ok: AtomicU64,
    pub watchdog_alerts_failed: AtomicU64,
}

impl WatchdogStats {
    /// The runtime is turning.
    pub fn alive(&self) -> bool {
        self.pulse.load(Ordering::Relaxed) != 0
            && crate::time::mono_ms() - self.pulse_mono.load(Ordering::Relaxed) < PULSE_STALE_MS
    }
}

/// The running daemon's state: owned and changed by the daemon (start, reload), judged by
/// the watchdog (the self-checks behind `/healthz`, systemd, heartbeats, the Watchdog
/// alert) and reported by the API. Defined here, in the lowest layer that reads all of it,
/// so that neither the watchdog nor the API imports the daemon.
pub struct Shared {
    pub runner: Arc<Runner>,
    pub dispatcher: Arc<Dispatcher>,
    pub watchdog: Arc<WatchdogStats>,
    pub config: RwLock<Arc<Config>>,
    /// The running probes, by name: the daemon starts, restarts and stops them.
    pub probes: RwLock<BTreeMap<String, Running>>,
    /// With a shared store, the probes kept to other locations (`locations:`), by name: not
    /// run here, but shown, their state and verdicts read from the store, so that every
    /// daemon reports the same probes.
    pub elsewhere: RwLock<BTreeMap<String, Arc<ProbeEntry>>>,
    /// Wall-clock start, unix ms.
    pub started_at: i64,
    /// Why the last reload failed, until one succeeds (the `config` self-check).
    pub last_reload_error: Mutex<Option<String>>,
    /// Woken when the shared store tells of a location not watched yet.
    pub rewatch: tokio::sync::Notify,
}

impl Shared {
    /// Every probe entry, in name order.
    pub fn entries(&self) -> Vec<Arc<ProbeEntry>> {
        self.probes
            .read()
            .unwrap()
            .values()
            .map(|r| r.entry.clone())
            .collect()
    }

    /// Every probe to report, in name order: those running here and those kept to other
    /// locations.
    pub fn reported_entries(&self) -> Vec<Arc<ProbeEntry>> {
        let mut all = self.entries();
        let elsewhere = self.elsewhere.read().unwrap();
        if !elsewhere.is_empty() {
            all.extend(elsewhere.values().cloned());
            all.sort_by(|a, b| a.cfg.name.cmp(&b.cfg.name));
        }
        all
    }

    /// The probes kept to other locations (see [`Shared::elsewhere`]).
    pub fn elsewhere_entries(&self) -> Vec<Arc<ProbeEntry>> {
        self.elsewhere.read().unwrap().values().cloned().collect()
    }

    /// Runs skipped so far, all probes together (overlap or no global slot).
    pub fn runs_skipped(&self) -> u64 {
        self.runner.skipped_total.load(Ordering::Relaxed)
    }

    /// The daemon's self-checks, each passing or not, with what it measured.
    pub fn health(&self) -> Vec<HealthCheck> {
        use crate::units::format_duration as fd;
        let cfg = self.config.read().unwrap().clone();
        let limits = &cfg.watchdog;
        let mut out = Vec::new();
        let mut check = |name: &str, ok: bool, detail: String| {
            out.push(HealthCheck {
                name: name.to_owned(),
                ok,
                detail,
            })
        };
        let pulse_age = crate::time::mono_ms() - self.watchdog.pulse_mono.load(Ordering::Relaxed);
        check(
            "runtime",
            self.watchdog.alive(),
            if self.watchdog.alive() {
                "turning".into()
            } else {
                format!("pulse is stale ({pulse_age} ms old)")
            },
        );
        let p99 = self.runner.metrics.recent_lag.p99();
        check(
            "scheduler lag",
            p99.is_none_or(|l| l <= limits.max_lag),
            match p99 {
                Some(l) => format!(
                    "start lag p99 {} over the last minute (limit {})",
                    fd(l),
                    fd(limits.max_lag)
                ),
                None => "no runs in the last minute".into(),
            },
        );
        let now = crate::time::mono_ms();
        let overdue: Vec<String> = self
            .entries()
            .iter()
            .filter(|e| e.overdue(now))
            .map(|e| e.cfg.name.clone())
            .collect();
        check(
            "overdue probes",
            overdue.is_empty(),
            match overdue.len() {
                0 => "none".into(),
                n => format!(
                    "{n} probe{} past due by more than their timeout plus {}: {}{}",
                    if n == 1 { "" } else { "s" },
                    fd(crate::schedule::OVERDUE_GRACE),
                    overdue
                        .iter()
                        .take(5)
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", "),
                    if n > 5 { ", ..." } else { "" }
                ),
            },
        );
        let st = &self.runner.store.stats;
        // The streak first (Acquire): the writer sets the reason before it.
        let failing = st.failing_streak.load(Ordering::Acquire) > 0;
        let buffered = st.buffered.load(Ordering::Relaxed);
        let since = st.failing_since.load(Ordering::Relaxed);
        let file_problem = self.runner.store.file_problem();
        check(
            "store",
            !failing && file_problem.is_none(),
            if let Some(p) = file_problem {
                p
            } else if !failing || since == 0 {
                "writes work".into()
            } else {
                let e = st.last_error.lock().unwrap().clone().unwrap_or_default();
                let for_ = Duration::from_millis((crate::time::now_ms() - since).max(0) as u64);
                format!(
                    "writes failing for {}: {e}; {buffered} results held in memory (of {}), {} dropped so far",
                    fd(for_),
                    cfg.store.buffer,
                    st.dropped.load(Ordering::Relaxed)
                )
            },
        );
        let depth = self.runner.store.queue_depth();
        let limit = cfg.store.queue;
        check(
            "store queue",
            depth * 10 < limit * 9,
            format!("{depth} of {limit} queued"),
        );
        let ds = &self.dispatcher.stats;
        let oldest = ds.oldest_pending_at.load(Ordering::Relaxed);
        let pending = ds.pending.load(Ordering::Relaxed);
        let age = (oldest > 0)
            .then(|| Duration::from_millis((crate::time::now_ms() - oldest).max(0) as u64));
        check(
            "alert delivery",
            age.is_none_or(|a| a <= limits.max_undelivered_age),
            match age {
                None => "nothing undelivered".into(),
                Some(a) => format!(
                    "{pending} message{} pending, oldest undelivered for {} (limit {})",
                    if pending == 1 { "" } else { "s" },
                    fd(a),
                    fd(limits.max_undelivered_age)
                ),
            },
        );
        let mut failing: Vec<String> = ds
            .streaks
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, s)| **s >= 3)
            .map(|(n, s)| format!("{n}: {s} failed delivery attempts in a row"))
            .collect();
        failing.sort();
        check(
            "notifiers",
            failing.is_empty(),
            if failing.is_empty() {
                "no failure streaks".into()
            } else {
                failing.join("; ")
            },
        );
        let reload = self.last_reload_error.lock().unwrap().clone();
        check(
            "config",
            reload.is_none(),
            match reload {
                Some(e) => format!("last reload failed: {e}"),
                None => "running the last loaded config".into(),
            },
        );
        let blind = self.runner.blind();
        check(
            "sight",
            blind.is_none(),
            match blind {
                Some(why) => format!(
                    "blind: {why}; its verdicts count toward no quorum and its probes page \
                     no one (location:{} pages instead)",
                    self.runner.location
                ),
                None => format!("sees from {}", self.runner.location),
            },
        );
        out
    }

    /// The daemon's failing self-checks, named with their reasons; empty when healthy.
    pub fn problems(&self) -> Vec<String> {
        problems_of(&self.health())
    }

    /// Updates the gauges that are computed rather than counted.
    pub fn refresh_gauges(&self) {
        self.runner.metrics.refresh(&self.gauges());
    }

    /// The computed gauges' values of this moment, from where each is kept.
    pub fn gauges(&self) -> Gauges {
        let checks = self.health();
        let now = crate::time::mono_ms();
        let entries = self.entries();
        let wall = crate::clock::now_ms();
        let slo = entries
            .iter()
            .filter_map(|e| {
                let f = e
                    .live
                    .lock()
                    .unwrap()
                    .slo
                    .as_ref()
                    .map(|t| t.figures(wall))?;
                Some((e.cfg.name.clone(), f))
            })
            .collect();
        let mut counts: HashMap<State, i64> = HashMap::new();
        let mut probe_states = Vec::with_capacity(entries.len());
        for e in &entries {
            let state = e.live.lock().unwrap().overall;
            *counts.entry(state).or_default() += 1;
            probe_states.push((e.cfg.name.clone(), state.as_str()));
        }
        let st = &self.runner.store.stats;
        let ds = &self.dispatcher.stats;
        let oldest = ds.oldest_pending_at.load(Ordering::Relaxed);
        let w = &self.watchdog;
        Gauges {
            checks: checks.into_iter().map(|c| (c.name, c.ok)).collect(),
            probes_overdue: entries.iter().filter(|e| e.overdue(now)).count() as i64,
            slo,
            probe_states,
            probes_by_state: [
                State::Pending,
                State::Up,
                State::Down,
                State::Degraded,
                State::Paused,
            ]
            .into_iter()
            .map(|s| (s.as_str(), counts.get(&s).copied().unwrap_or(0)))
            .collect(),
            store_buffered: st.buffered.load(Ordering::Relaxed) as i64,
            store_queue_depth: self.runner.store.queue_depth() as i64,
            store_dropped: st.dropped.load(Ordering::Relaxed) as i64,
            store_written: st.written.load(Ordering::Relaxed) as i64,
            store_write_errors: st.write_errors.load(Ordering::Relaxed) as i64,
            outbox_pending: ds.pending.load(Ordering::Relaxed),
            outbox_oldest_age: if oldest > 0 {
                ((crate::time::now_ms() - oldest).max(0) as f64) / 1000.0
            } else {
                0.0
            },
            alerts_paged_from_memory: ds.paged_from_memory.load(Ordering::Relaxed) as i64,
            alerts_delivered: ds.delivered.load(Ordering::Relaxed) as i64,
            alert_attempts_failed: ds.failed_attempts.load(Ordering::Relaxed) as i64,
            alerts_undeliverable: ds.given_up.load(Ordering::Relaxed) as i64,
            notifier_failure_streaks: ds
                .streaks
                .lock()
                .unwrap()
                .iter()
                .map(|(name, streak)| (name.clone(), *streak as i64))
                .collect(),
            switch_sends: [
                ("heartbeat", "ok", &w.heartbeats_ok),
                ("heartbeat", "failed", &w.heartbeats_failed),
                ("alertmanager", "ok", &w.watchdog_alerts_ok),
                ("alertmanager", "failed", &w.watchdog_alerts_failed),
            ]
            .into_iter()
            .map(|(via, result, n)| (via, result, n.load(Ordering::Relaxed) as i64))
            .collect(),
        }
    }
}

/// The failing checks among `checks`, as `name: why`.
pub fn problems_of(checks: &[HealthCheck]) -> Vec<String> {
    checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| format!("{}: {}", c.name, c.detail))
        .collect()
}

/// Stamps the pulse until cancelled.
pub async fn pulse(stats: Arc<WatchdogStats>, cancel: CancellationToken) {
    loop {
        stats.pulse.store(crate::time::now_ms(), Ordering::Relaxed);
        stats
            .pulse_mono
            .store(crate::time::mono_ms(), Ordering::Relaxed);
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(PULSE_EVERY) => {}
        }
    }
}

/// Tells systemd the daemon is ready (no-op without `NOTIFY_SOCKET`).
pub fn notify_ready(status: &str) {
    let _ = sd_notify::notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(status),
    ]);
}

/// Tells systemd the daemon is stopping.
pub fn notify_stopping() {
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
}

/// Sends `WATCHDOG=1` every half `WATCHDOG_USEC` while the pulse is fresh.
pub async fn systemd_watchdog(shared: Arc<Shared>, cancel: CancellationToken) {
    let Some(period) = sd_notify::watchdog_enabled() else {
        return;
    };
    let every = (period / 2).max(Duration::from_millis(50));
    tracing::info!(every = %crate::units::format_duration(every), "systemd watchdog enabled");
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(every) => {}
        }
        let stalled = scheduler_stalled(&shared);
        if shared.watchdog.alive() && !stalled {
            let status = status_line(&shared);
            let _ = sd_notify::notify(&[
                sd_notify::NotifyState::Watchdog,
                sd_notify::NotifyState::Status(&status),
            ]);
        } else if stalled {
            tracing::error!(
                "every probe is overdue: the scheduler is not turning; withholding the systemd watchdog keep-alive"
            );
        } else {
            tracing::error!("pulse is stale: withholding the systemd watchdog keep-alive");
        }
    }
}

/// The runtime turns but the scheduler does not: there are probes and every one of them is
/// overdue. (One stuck probe is a problem for `/healthz`, not a reason to restart.)
pub fn scheduler_stalled(shared: &Shared) -> bool {
    let now = crate::time::mono_ms();
    let entries = shared.entries();
    !entries.is_empty() && entries.iter().all(|e| e.overdue(now))
}

/// `12 probes, 1 down; healthy` for `systemctl status`. Counts only (no status report is
/// built), since it runs on a runtime worker every keep-alive.
pub fn status_line(shared: &Shared) -> String {
    let entries = shared.entries();
    let down = entries
        .iter()
        .filter(|e| e.live.lock().unwrap().overall == State::Down)
        .count();
    let problems = shared.problems();
    format!(
        "{} probes, {down} down; {}",
        entries.len(),
        if problems.is_empty() {
            "healthy".to_string()
        } else {
            format!("unhealthy: {}", problems.join("; "))
        }
    )
}

/// Pings one heartbeat URL for as long as the daemon runs, through `client` (the
/// notifiers' HTTP client).
pub async fn heartbeat(
    shared: Arc<Shared>,
    client: reqwest::Client,
    hb: Heartbeat,
    index: usize,
    cancel: CancellationToken,
) {
    loop {
        let problems = shared.problems();
        let base = hb.url.expose().trim_end_matches('/');
        let req = if problems.is_empty() {
            client.get(base)
        } else {
            client
                .post(format!("{base}/fail"))
                .body(problems.join("\n"))
        };
        let result = req.timeout(hb.timeout).send().await;
        match result {
            Ok(r) if r.status().is_success() => {
                shared
                    .watchdog
                    .heartbeats_ok
                    .fetch_add(1, Ordering::Relaxed);
            }
            Ok(r) => {
                shared
                    .watchdog
                    .heartbeats_failed
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    heartbeat = index + 1,
                    status = r.status().as_u16(),
                    "heartbeat refused"
                );
            }
            Err(e) => {
                shared
                    .watchdog
                    .heartbeats_failed
                    .fetch_add(1, Ordering::Relaxed);
                // The URL holds the receiver's secret: name the heartbeat by position only.
                let why = if e.is_timeout() {
                    "timed out".to_string()
                } else if e.is_connect() {
                    "cannot connect".to_string()
                } else {
                    "request failed".to_string()
                };
                tracing::warn!(heartbeat = index + 1, error = %why, "heartbeat failed");
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(hb.every) => {}
        }
    }
}

/// Sends the always-firing `Watchdog` alert while the daemon is healthy.
pub async fn alertmanager_watchdog(
    shared: Arc<Shared>,
    w: WatchdogAlert,
    cancel: CancellationToken,
) {
    let started = crate::time::now_ms();
    let mut withheld = false;
    loop {
        let problems = shared.problems();
        if problems.is_empty() {
            withheld = false;
            let instance = shared.config.read().unwrap().instance.clone();
            for name in &w.notify {
                let sent = match shared.dispatcher.notifier(name).as_deref() {
                    Some(Notifier::Alertmanager(am)) => am
                        .send_watchdog(&instance, started, w.every * 3)
                        .await
                        .map_err(|e| e.to_string()),
                    _ => Err("not a working alertmanager notifier".into()),
                };
                match sent {
                    Ok(_) => {
                        shared
                            .watchdog
                            .watchdog_alerts_ok
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        shared
                            .watchdog
                            .watchdog_alerts_failed
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(notifier = %name, error = %e, "Watchdog alert not delivered");
                    }
                }
            }
        } else if !withheld {
            withheld = true;
            tracing::warn!(problems = %problems.join("; "), "unhealthy: withholding the Watchdog alert");
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(w.every) => {}
        }
    }
}
