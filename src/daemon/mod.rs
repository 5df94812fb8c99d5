//! The daemon's wiring: open the store, start the writer, the API and one task per probe;
//! reload on demand (keeping each probe's state); shut down in order.
//!
//! Shutdown order (SIGTERM): stop every probe at once (in-flight checks are dropped: their
//! targets owe us nothing), then let the store writer drain what is queued within a grace
//! period, then stop the API. Nothing already observed is lost unless the grace period runs
//! out, and then the loss is counted and logged.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod clock;

use crate::config::{Config, ProbeConfig};
use crate::evaluate::State;
use crate::metrics::{Gauges, Metrics};
use crate::probe::Env;
use crate::report::HealthCheck;
use crate::schedule::{Live, ProbeEntry, Runner, UptimeWindow};
use crate::store::{Store, StoreError};

/// How long the writer may take to drain after SIGTERM.
const DRAIN_GRACE: Duration = Duration::from_secs(10);
/// How often old results are pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("{0}")]
    Env(String),
}

/// What the API and the probe tasks share.
pub struct Shared {
    pub runner: Arc<Runner>,
    pub dispatcher: Arc<crate::alert::dispatch::Dispatcher>,
    pub watchdog: Arc<crate::watchdog::WatchdogStats>,
    pub build_cx: crate::alert::BuildCx,
    pub config: RwLock<Arc<Config>>,
    probes: RwLock<BTreeMap<String, Running>>,
    /// Wall-clock start, unix ms.
    pub started_at: i64,
    pub last_reload_error: Mutex<Option<String>>,
    /// The public view (status page, feeds, Statuspage JSON, badges), rebuilt at most every
    /// few seconds.
    pub public: crate::public::Cache,
}

struct Running {
    entry: Arc<ProbeEntry>,
    cancel: CancellationToken,
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
        for e in &entries {
            *counts
                .entry(e.live.lock().unwrap().verdicts.state)
                .or_default() += 1;
        }
        let st = &self.runner.store.stats;
        let ds = &self.dispatcher.stats;
        let oldest = ds.oldest_pending_at.load(Ordering::Relaxed);
        let w = &self.watchdog;
        Gauges {
            checks: checks.into_iter().map(|c| (c.name, c.ok)).collect(),
            probes_overdue: entries.iter().filter(|e| e.overdue(now)).count() as i64,
            slo,
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

/// A running daemon.
pub struct Daemon {
    pub shared: Arc<Shared>,
    pub local_addr: std::net::SocketAddr,
    probes_cancel: CancellationToken,
    writer_cancel: CancellationToken,
    dispatch_cancel: CancellationToken,
    api_cancel: CancellationToken,
    probe_tasks: TaskTracker,
    background: TaskTracker,
    /// Stops the heartbeat and Watchdog alert tasks (replaced when a reload changes them).
    switch_cancel: Mutex<CancellationToken>,
}

impl Daemon {
    /// Opens the store, binds the API and starts every probe.
    pub async fn start(config: Config) -> Result<Daemon, DaemonError> {
        // Anchor the monotonic scale the self-checks compare on.
        crate::time::mono_ms();
        let (store, writer) = Store::open(&config.data_dir, config.store.queue).await?;
        let env = Env::new(&config.defaults.nameservers).map_err(DaemonError::Env)?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| DaemonError::Listen {
                addr: config.listen,
                source,
            })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| DaemonError::Listen {
                addr: config.listen,
                source,
            })?;
        let api_limits =
            crate::api::server::Limits::for_descriptors(crate::api::server::descriptor_limit());
        tracing::info!(
            max_connections = api_limits.max_connections,
            open_files = crate::api::server::descriptor_limit(),
            "api: at most this many connections, the rest of the open files for the probes"
        );
        if crate::api::server::exposed_without_token(local_addr, config.admin_token.is_some()) {
            tracing::warn!(
                listen = %local_addr,
                "the API listens beyond this machine without an admin_token: writes are \
                 refused, but status, incidents, results and metrics are open to the network"
            );
        }
        let runner = Arc::new(Runner::new(
            env,
            store.clone(),
            Metrics::new(),
            config.defaults.max_concurrent,
            config.defaults.max_per_host,
        ));
        *runner.router.write().unwrap() =
            Arc::new(crate::alert::plan::Router::from_config(&config));
        let build_cx = crate::alert::BuildCx::new().map_err(DaemonError::Env)?;
        let (plan, errors) = crate::alert::dispatch::Plan::build(&config, &build_cx);
        for e in errors {
            tracing::error!("{e}; its pages go to the fallback chain");
        }
        let dispatcher = crate::alert::dispatch::Dispatcher::new(store.clone(), plan);
        let shared = Arc::new(Shared {
            runner,
            dispatcher: dispatcher.clone(),
            watchdog: Default::default(),
            build_cx,
            config: RwLock::new(Arc::new(config.clone())),
            probes: RwLock::new(BTreeMap::new()),
            started_at: crate::time::now_ms(),
            last_reload_error: Mutex::new(None),
            public: Default::default(),
        });
        // Alive from the start: the first heartbeat may go out before the pulse task runs.
        shared
            .watchdog
            .pulse
            .store(crate::time::now_ms(), Ordering::Relaxed);
        shared
            .watchdog
            .pulse_mono
            .store(crate::time::mono_ms(), Ordering::Relaxed);
        let d = Daemon {
            shared: shared.clone(),
            local_addr,
            probes_cancel: CancellationToken::new(),
            writer_cancel: CancellationToken::new(),
            dispatch_cancel: CancellationToken::new(),
            api_cancel: CancellationToken::new(),
            probe_tasks: TaskTracker::new(),
            background: TaskTracker::new(),
            switch_cancel: Mutex::new(CancellationToken::new()),
        };
        let writer = writer
            .with_buffer(config.store.buffer)
            .with_failover(Arc::new(crate::alert::dispatch::MemoryPager(
                dispatcher.clone(),
            )));
        d.background
            .spawn(writer.run(d.writer_cancel.clone(), DRAIN_GRACE));
        d.background
            .spawn(dispatcher.run(d.dispatch_cancel.clone(), DRAIN_GRACE));
        let retention = config.store.retention;
        let prune_stop = d.probes_cancel.clone();
        let prune_store = store.clone();
        d.background.spawn(async move {
            loop {
                match prune_store.prune(retention, crate::time::now_ms()).await {
                    Ok(n) if n > 0 => tracing::info!(deleted = n, "pruned old results"),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "pruning old results failed"),
                }
                tokio::select! {
                    _ = prune_stop.cancelled() => break,
                    _ = tokio::time::sleep(PRUNE_EVERY) => {}
                }
            }
        });
        d.apply(&config).await?;
        // Serve only once the probes are loaded: a status or a push that arrives early waits
        // in the listen backlog instead of finding an empty daemon.
        let api_stop = d.api_cancel.clone();
        let api_shared = shared.clone();
        d.background.spawn(async move {
            if let Err(e) = crate::api::serve(listener, api_shared, api_limits, async move {
                api_stop.cancelled().await
            })
            .await
            {
                tracing::error!(error = %e, "api server failed");
            }
        });
        d.background.spawn(crate::watchdog::pulse(
            shared.watchdog.clone(),
            d.probes_cancel.clone(),
        ));
        d.background.spawn(crate::watchdog::systemd_watchdog(
            shared.clone(),
            d.probes_cancel.clone(),
        ));
        d.background
            .spawn(clock::watch(shared.clone(), d.probes_cancel.clone()));
        d.start_dead_mans_switch(&config);
        crate::watchdog::notify_ready(&format!("{} probes", config.probes.len()));
        tracing::info!(
            listen = %local_addr,
            probes = config.probes.len(),
            data_dir = %config.data_dir.display(),
            "probed started"
        );
        Ok(d)
    }

    /// (Re)starts the outbound heartbeats and the Watchdog alert of `config`.
    fn start_dead_mans_switch(&self, config: &Config) {
        let cancel = self.probes_cancel.child_token();
        let old = std::mem::replace(&mut *self.switch_cancel.lock().unwrap(), cancel.clone());
        old.cancel();
        for (i, hb) in config.watchdog.heartbeats.iter().enumerate() {
            self.background.spawn(crate::watchdog::heartbeat(
                self.shared.clone(),
                hb.clone(),
                i,
                cancel.clone(),
            ));
        }
        if let Some(w) = &config.watchdog.alertmanager {
            self.background
                .spawn(crate::watchdog::alertmanager_watchdog(
                    self.shared.clone(),
                    w.clone(),
                    cancel,
                ));
        }
    }

    /// Replaces the running config: probes that did not change keep running untouched;
    /// changed ones restart with their state; removed ones stop; new ones start pending.
    pub async fn reload(&self, config: Config) -> Result<(), DaemonError> {
        let old = self.shared.config.read().unwrap().clone();
        for (setting, was, now) in restart_only_changes(&old, &config) {
            tracing::warn!(setting, old = %was, new = %now, "this setting changes only with a restart; keeping the old value");
        }
        self.apply(&config).await?;
        *self.shared.runner.router.write().unwrap() =
            Arc::new(crate::alert::plan::Router::from_config(&config));
        let (plan, errors) = crate::alert::dispatch::Plan::build(&config, &self.shared.build_cx);
        for e in errors {
            tracing::error!("{e}; its pages go to the fallback chain");
        }
        self.shared.dispatcher.set_plan(plan);
        let switch_changed = old.watchdog.heartbeats != config.watchdog.heartbeats
            || old.watchdog.alertmanager != config.watchdog.alertmanager;
        if switch_changed {
            self.start_dead_mans_switch(&config);
            tracing::info!(
                heartbeats = config.watchdog.heartbeats.len(),
                watchdog_alert = config.watchdog.alertmanager.is_some(),
                "dead man's switch restarted with the new config"
            );
        }
        *self.shared.config.write().unwrap() = Arc::new(config);
        *self.shared.last_reload_error.lock().unwrap() = None;
        self.shared
            .runner
            .metrics
            .reloads
            .with_label_values(&["success"])
            .inc();
        Ok(())
    }

    /// Records a failed reload (the last good config keeps running).
    pub fn reload_failed(&self, error: String) {
        self.shared
            .runner
            .metrics
            .reloads
            .with_label_values(&["failure"])
            .inc();
        *self.shared.last_reload_error.lock().unwrap() = Some(error);
    }

    async fn apply(&self, config: &Config) -> Result<(), DaemonError> {
        let runner = &self.shared.runner;
        let names: Vec<(String, &'static str)> = config
            .probes
            .iter()
            .map(|p| (p.name.clone(), p.spec.kind()))
            .collect();
        let saved = runner.store.register(&names).await?;
        let mut rollups = runner
            .store
            .rollups_since(crate::time::now_ms() - 25 * 3_600_000)
            .await?;
        // Push probes: their ping clocks, from the store (a restart does not reset them).
        let push_ids: Vec<(i64, String)> = config
            .probes
            .iter()
            .filter_map(|p| match &p.spec {
                crate::probe::ProbeSpec::Push(s) => saved
                    .get(&p.name)
                    .map(|sp| (sp.id, s.token.expose().to_owned())),
                _ => None,
            })
            .collect();
        if !push_ids.is_empty() {
            let ids: Vec<i64> = push_ids.iter().map(|(id, _)| *id).collect();
            let mut states = runner
                .store
                .push_states(&ids, crate::time::now_ms())
                .await?;
            runner.env.push.replace_all(
                push_ids
                    .into_iter()
                    .filter_map(|(id, token)| states.remove(&id).map(|st| (token, st)))
                    .collect(),
            );
        }
        // Objectives: a probe new to this process, or whose `slo` changed, replays its
        // recent runs from the store, so a restart or reload neither forgets an alert nor
        // raises one afresh.
        let stale: Vec<&ProbeConfig> = {
            let probes = self.shared.probes.read().unwrap();
            config
                .probes
                .iter()
                .filter(|pc| {
                    pc.slo.is_some()
                        && probes
                            .get(&pc.name)
                            .is_none_or(|r| r.entry.cfg.slo != pc.slo)
                })
                .collect()
        };
        let mut trackers: HashMap<String, crate::slo::Tracker> = HashMap::new();
        for pc in stale {
            let (Some(spec), Some(sp)) = (&pc.slo, saved.get(&pc.name)) else {
                continue;
            };
            let now = crate::time::now_ms();
            let mut t = crate::slo::Tracker::new(spec);
            match runner
                .store
                .slo_history(sp.id, now - spec.history().as_millis() as i64)
                .await
            {
                Ok(runs) => {
                    for (at, ok, took) in runs {
                        t.add(at, ok, took);
                        t.evaluate(at);
                    }
                }
                Err(e) => {
                    tracing::warn!(probe = %pc.name, error = %e, "cannot read recent results; objectives start afresh")
                }
            }
            trackers.insert(pc.name.clone(), t);
        }
        let mut probes = self.shared.probes.write().unwrap();
        let wanted: HashMap<&str, &ProbeConfig> =
            config.probes.iter().map(|p| (p.name.as_str(), p)).collect();
        // Stop removed probes.
        let removed: Vec<String> = probes
            .keys()
            .filter(|n| !wanted.contains_key(n.as_str()))
            .cloned()
            .collect();
        for name in removed {
            if let Some(r) = probes.remove(&name) {
                r.cancel.cancel();
                runner.metrics.forget(&name);
                tracing::info!(probe = %name, "probe removed");
            }
        }
        for pc in &config.probes {
            let existing = probes.get(&pc.name);
            if let Some(r) = existing
                && r.entry.cfg.same_as(pc)
            {
                continue;
            }
            let probe = match pc.spec.build() {
                Ok(p) => p,
                Err(e) => {
                    // validate() should have caught it; keep the daemon up regardless.
                    tracing::error!(probe = %pc.name, error = %e, "cannot build probe; not running it");
                    continue;
                }
            };
            let mut live = match existing {
                Some(r) => {
                    r.cancel.cancel();
                    r.entry.live.lock().unwrap().clone()
                }
                None => {
                    let s = saved.get(&pc.name);
                    Live {
                        verdicts: s.map(|s| s.verdicts.clone()).unwrap_or_default(),
                        last: s.and_then(|s| s.last.clone()),
                        window: s
                            .and_then(|s| rollups.remove(&s.id))
                            .map(UptimeWindow::from_rollups)
                            .unwrap_or_default(),
                        slo: None,
                    }
                }
            };
            if pc.slo.is_none() {
                live.slo = None;
            } else if let Some(t) = trackers.remove(&pc.name) {
                live.slo = Some(t);
            }
            let Some(id) = saved.get(&pc.name).map(|s| s.id) else {
                tracing::error!(probe = %pc.name, "probe has no store id; not running it");
                continue;
            };
            let entry = Arc::new(ProbeEntry::new(Arc::new(pc.clone()), id, live));
            let cancel = self.probes_cancel.child_token();
            let metrics = runner.metrics.probe(&pc.name, pc.spec.kind());
            self.probe_tasks.spawn(crate::schedule::run_probe(
                runner.clone(),
                entry.clone(),
                probe,
                metrics,
                cancel.clone(),
            ));
            probes.insert(pc.name.clone(), Running { entry, cancel });
        }
        Ok(())
    }

    /// Stops probes, drains the store, stops the API.
    pub async fn shutdown(self) {
        tracing::info!("shutting down: stopping probes");
        crate::watchdog::notify_stopping();
        self.probes_cancel.cancel();
        self.probe_tasks.close();
        self.probe_tasks.wait().await;
        tracing::info!(
            queued = self.shared.runner.store.queue_depth(),
            "draining the store"
        );
        self.writer_cancel.cancel();
        self.dispatch_cancel.cancel();
        self.api_cancel.cancel();
        self.background.close();
        if tokio::time::timeout(DRAIN_GRACE + Duration::from_secs(2), self.background.wait())
            .await
            .is_err()
        {
            tracing::error!("shutdown grace period passed with tasks still running");
        }
        self.shared.runner.store.close().await;
        tracing::info!("probed stopped");
    }
}

/// Settings a reload cannot change (the API socket, the database, the store's queues, the
/// scheduler's slots), as `(setting, old, new)` for each that differs: each is logged, so a
/// change that waits for a restart is never silently ignored.
fn restart_only_changes(old: &Config, new: &Config) -> Vec<(&'static str, String, String)> {
    let mut out = Vec::new();
    let mut diff = |name, a: String, b: String| {
        if a != b {
            out.push((name, a, b));
        }
    };
    diff("listen", old.listen.to_string(), new.listen.to_string());
    diff(
        "data_dir",
        old.data_dir.display().to_string(),
        new.data_dir.display().to_string(),
    );
    diff(
        "store.queue",
        old.store.queue.to_string(),
        new.store.queue.to_string(),
    );
    diff(
        "store.buffer",
        old.store.buffer.to_string(),
        new.store.buffer.to_string(),
    );
    diff(
        "defaults.max_concurrent",
        old.defaults.max_concurrent.to_string(),
        new.defaults.max_concurrent.to_string(),
    );
    diff(
        "defaults.max_per_host",
        old.defaults.max_per_host.to_string(),
        new.defaults.max_per_host.to_string(),
    );
    out
}
