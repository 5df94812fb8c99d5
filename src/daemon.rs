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

use crate::config::{Config, ProbeConfig};
use crate::evaluate::State;
use crate::metrics::Metrics;
use crate::probe::Env;
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

    /// The daemon's failing self-checks, named with their reasons; empty when healthy.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let st = &self.runner.store.stats;
        if st.failing_streak.load(Ordering::Relaxed) > 0 {
            let e = st.last_error.lock().unwrap().clone().unwrap_or_default();
            out.push(format!("store: writes failing: {e}"));
        }
        let cap = self.runner.store.queue_depth();
        let limit = self.config.read().unwrap().store.queue;
        if cap * 10 >= limit * 9 {
            out.push(format!("store: queue nearly full ({cap} of {limit})"));
        }
        if let Some(e) = self.last_reload_error.lock().unwrap().as_ref() {
            out.push(format!("config: last reload failed: {e}"));
        }
        for (name, streak) in self.dispatcher.stats.streaks.lock().unwrap().iter() {
            if *streak >= 3 {
                out.push(format!(
                    "notifier {name}: {streak} failed delivery attempts in a row"
                ));
            }
        }
        out.sort();
        out
    }

    /// Updates the gauges that are computed rather than counted.
    pub fn refresh_gauges(&self) {
        let m = &self.runner.metrics;
        let st = &self.runner.store.stats;
        m.store_queue_depth
            .set(self.runner.store.queue_depth() as i64);
        m.store_dropped
            .set(st.dropped.load(Ordering::Relaxed) as i64);
        m.store_written
            .set(st.written.load(Ordering::Relaxed) as i64);
        m.store_write_errors
            .set(st.write_errors.load(Ordering::Relaxed) as i64);
        let ds = &self.dispatcher.stats;
        m.alerts_delivered
            .set(ds.delivered.load(Ordering::Relaxed) as i64);
        m.alert_attempts_failed
            .set(ds.failed_attempts.load(Ordering::Relaxed) as i64);
        m.alerts_undeliverable
            .set(ds.given_up.load(Ordering::Relaxed) as i64);
        for (name, streak) in ds.streaks.lock().unwrap().iter() {
            m.notifier_failure_streak
                .with_label_values(&[name.as_str()])
                .set(*streak as i64);
        }
        let mut counts: HashMap<State, i64> = HashMap::new();
        for e in self.entries() {
            *counts
                .entry(e.live.lock().unwrap().verdicts.state)
                .or_default() += 1;
        }
        for s in [
            State::Pending,
            State::Up,
            State::Down,
            State::Degraded,
            State::Paused,
        ] {
            m.probes_by_state
                .with_label_values(&[s.as_str()])
                .set(counts.get(&s).copied().unwrap_or(0));
        }
    }
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
}

impl Daemon {
    /// Opens the store, binds the API and starts every probe.
    pub async fn start(config: Config) -> Result<Daemon, DaemonError> {
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
        let dispatcher = crate::alert::dispatch::Dispatcher::new(
            store.write_pool().clone(),
            store.read_pool().clone(),
            plan,
            store.alerts_queued.clone(),
        );
        let shared = Arc::new(Shared {
            runner,
            dispatcher: dispatcher.clone(),
            watchdog: Default::default(),
            build_cx,
            config: RwLock::new(Arc::new(config.clone())),
            probes: RwLock::new(BTreeMap::new()),
            started_at: crate::time::now_ms(),
            last_reload_error: Mutex::new(None),
        });
        let d = Daemon {
            shared: shared.clone(),
            local_addr,
            probes_cancel: CancellationToken::new(),
            writer_cancel: CancellationToken::new(),
            dispatch_cancel: CancellationToken::new(),
            api_cancel: CancellationToken::new(),
            probe_tasks: TaskTracker::new(),
            background: TaskTracker::new(),
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
            if let Err(e) =
                crate::api::serve(
                    listener,
                    api_shared,
                    async move { api_stop.cancelled().await },
                )
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
        for (i, hb) in config.watchdog.heartbeats.iter().enumerate() {
            d.background.spawn(crate::watchdog::heartbeat(
                shared.clone(),
                hb.clone(),
                i,
                d.probes_cancel.clone(),
            ));
        }
        crate::watchdog::notify_ready(&format!("{} probes", config.probes.len()));
        tracing::info!(
            listen = %local_addr,
            probes = config.probes.len(),
            data_dir = %config.data_dir.display(),
            "probed started"
        );
        Ok(d)
    }

    /// Replaces the running config: probes that did not change keep running untouched;
    /// changed ones restart with their state; removed ones stop; new ones start pending.
    pub async fn reload(&self, config: Config) -> Result<(), DaemonError> {
        let old = self.shared.config.read().unwrap().clone();
        if old.listen != config.listen {
            tracing::warn!(old = %old.listen, new = %config.listen, "listen address changes need a restart; keeping the old one");
        }
        self.apply(&config).await?;
        *self.shared.runner.router.write().unwrap() =
            Arc::new(crate::alert::plan::Router::from_config(&config));
        let (plan, errors) = crate::alert::dispatch::Plan::build(&config, &self.shared.build_cx);
        for e in errors {
            tracing::error!("{e}; its pages go to the fallback chain");
        }
        self.shared.dispatcher.set_plan(plan);
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
            let live = match existing {
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
                    }
                }
            };
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
