//! The daemon's wiring: open the store, start the writer, the API and one task per probe;
//! reload on demand (keeping each probe's state); shut down in order. The state it starts
//! and changes ([`Shared`]: the runner, the dispatcher, the config, the running probes) is
//! defined by the watchdog, the lowest layer that reads it, and handed to the watchdog's
//! tasks and the API.
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
use crate::metrics::Metrics;
use crate::probe::Env;
use crate::schedule::{Live, ProbeEntry, Runner, Running, UptimeWindow};
use crate::store::{Store, StoreError};
use crate::watchdog::Shared;

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

/// A running daemon.
pub struct Daemon {
    /// Its state, as the watchdog and the API read it (this module alone changes it).
    pub shared: Arc<Shared>,
    /// What the notifiers are built with (a reload rebuilds them); its HTTP client also
    /// sends the heartbeats.
    build_cx: crate::alert::BuildCx,
    pub local_addr: std::net::SocketAddr,
    probes_cancel: CancellationToken,
    writer_cancel: CancellationToken,
    dispatch_cancel: CancellationToken,
    api_cancel: CancellationToken,
    probe_tasks: TaskTracker,
    background: TaskTracker,
    /// Stops the heartbeat and Watchdog alert tasks (replaced when a reload changes them).
    switch_cancel: Mutex<CancellationToken>,
    /// Where this daemon stands, as it started (a change waits for a restart).
    location: String,
}

/// Tunes the allocator before any thread starts: one malloc arena instead of glibc's
/// default of up to eight per core. With one per thread that allocates (the runtime's
/// workers, SQLite's connection threads), each arena kept its own free pages: at 10,000
/// probes RSS was 88 MB with the default and 68.5 MB with one arena, for a live heap of
/// about 41 MB (`benches/spine.sh`, BENCHMARKS.md). Call first thing in `main`.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            // glibc: sets a malloc tunable; returns 1 on success, 0 on a bad value.
            safe fn mallopt(param: std::ffi::c_int, value: std::ffi::c_int) -> std::ffi::c_int;
        }
        const M_ARENA_MAX: std::ffi::c_int = -8;
        // MALLOC_ARENA_MAX in the environment still wins: an operator's choice.
        if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
            mallopt(M_ARENA_MAX, 1);
        }
    }
}

/// Hands the heap's free pages back to the system once a config is applied. Loading one
/// peaks at about twice what the daemon then keeps (the YAML, its position index and the
/// checks being built: at 10,000 probes 115 MB of heap for 57 MB kept); glibc's allocator
/// keeps the freed pages in its arenas, so without this RSS stays at the peak for good.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        unsafe extern "C" {
            // glibc: releases free memory at the top of the heap and every whole free page
            // inside the arenas (madvise); takes no pointer, cannot fail in a harmful way.
            safe fn malloc_trim(pad: usize) -> std::ffi::c_int;
        }
        malloc_trim(0);
    }
}

impl Daemon {
    /// Opens the store, binds the API and starts every probe.
    pub async fn start(config: Config) -> Result<Daemon, DaemonError> {
        // Anchor the monotonic scale the self-checks compare on.
        crate::time::mono_ms();
        let (store, writer) = match &config.store.url {
            Some(url) => Store::open_postgres(url.expose(), config.store.queue).await?,
            None => Store::open(&config.data_dir, config.store.queue).await?,
        };
        store.set_location(&config.location).await?;
        let env = Env::new(&config.defaults.nameservers)
            .map_err(DaemonError::Env)?
            .with_origin(&config.instance, &config.location);
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
        let runner = Arc::new(
            Runner::new(
                env,
                store.clone(),
                Metrics::new(),
                config.defaults.max_concurrent,
                config.defaults.max_per_host,
            )
            .at_location(&config.location),
        );
        // Sharing a store, every daemon watches every location it hears of, its own included
        // (see `rewatch`); a lone one watches its own once it has been blind.
        let config = config.with_location_probes(&watched_locations(&runner));
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
            config: RwLock::new(Arc::new(config.clone())),
            probes: RwLock::new(BTreeMap::new()),
            elsewhere: RwLock::new(BTreeMap::new()),
            started_at: crate::time::now_ms(),
            last_reload_error: Mutex::new(None),
            rewatch: Default::default(),
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
        // A page from memory waiting out an outage goes out only while its probe still
        // pages: down or degraded, from a daemon that can see (its own location's probe
        // aside, which pages precisely because it cannot).
        let weak = Arc::downgrade(&shared);
        dispatcher.set_still_firing(Arc::new(move |id| {
            let Some(s) = weak.upgrade() else {
                return true;
            };
            let blind = s.runner.blind().is_some();
            s.entries().iter().find(|e| e.id == id).is_none_or(|e| {
                let location = matches!(e.cfg.spec, crate::probe::ProbeSpec::Location(_));
                let state = e.live.lock().unwrap().overall;
                matches!(
                    state,
                    crate::evaluate::State::Down | crate::evaluate::State::Degraded
                ) && (location || !blind)
            })
        }));
        let d = Daemon {
            shared: shared.clone(),
            build_cx,
            local_addr,
            probes_cancel: CancellationToken::new(),
            writer_cancel: CancellationToken::new(),
            dispatch_cancel: CancellationToken::new(),
            api_cancel: CancellationToken::new(),
            probe_tasks: TaskTracker::new(),
            background: TaskTracker::new(),
            switch_cancel: Mutex::new(CancellationToken::new()),
            location: config.location.clone(),
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
        d.background
            .spawn(judge_sight(shared.clone(), d.probes_cancel.clone()));
        d.background.spawn(check_references(
            shared.clone(),
            d.build_cx.http.clone(),
            d.probes_cancel.clone(),
        ));
        if shared.runner.shared_store() {
            d.background.spawn(sync_locations(
                shared.clone(),
                config.instance.clone(),
                config.location.clone(),
                d.probes_cancel.clone(),
            ));
        }
        crate::watchdog::notify_ready(&format!("{} probes", config.probes.len()));
        tracing::info!(
            listen = %local_addr,
            probes = config.probes.len(),
            instance = %config.instance,
            location = %config.location,
            store = %store_text(&config),
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
                self.build_cx.http.clone(),
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
        let config = config.with_location_probes(&watched_locations(&self.shared.runner));
        let old = self.shared.config.read().unwrap().clone();
        for (setting, was, now) in restart_only_changes(&old, &config) {
            tracing::warn!(setting, old = %was, new = %now, "this setting changes only with a restart; keeping the old value");
        }
        self.apply(&config).await?;
        *self.shared.runner.router.write().unwrap() =
            Arc::new(crate::alert::plan::Router::from_config(&config));
        let (plan, errors) = crate::alert::dispatch::Plan::build(&config, &self.build_cx);
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

    /// Starts watching the locations heard of since the config was applied (`location:<name>`
    /// probes), keeping everything else as it runs.
    pub async fn rewatch(&self) -> Result<(), DaemonError> {
        let current = (*self.shared.config.read().unwrap().clone()).clone();
        let config = current.with_location_probes(&watched_locations(&self.shared.runner));
        self.apply(&config).await?;
        let (plan, _) = crate::alert::dispatch::Plan::build(&config, &self.build_cx);
        self.shared.dispatcher.set_plan(plan);
        *self.shared.config.write().unwrap() = Arc::new(config);
        Ok(())
    }

    /// Resolves when [`Daemon::rewatch`] is due: the store told of a new location.
    pub async fn rewatch_due(&self) {
        self.shared.rewatch.notified().await
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
        // Probes kept to other locations (`locations:`) are not run here.
        let here: Vec<&Arc<ProbeConfig>> = config
            .probes
            .iter()
            .filter(|p| p.runs_at(&self.location))
            .collect();
        // With a shared store, the others are registered and shown all the same.
        let elsewhere: Vec<&Arc<ProbeConfig>> = if runner.shared_store() {
            config
                .probes
                .iter()
                .filter(|p| !p.runs_at(&self.location))
                .collect()
        } else {
            Vec::new()
        };
        let names: Vec<(String, &'static str)> = here
            .iter()
            .chain(&elsewhere)
            .map(|p| (p.name.clone(), p.spec.kind()))
            .collect();
        let saved = runner.store.register(&names).await?;
        let mut rollups = runner
            .store
            .rollups_since(crate::time::now_ms() - 25 * 3_600_000)
            .await?;
        {
            let mut shown = self.shared.elsewhere.write().unwrap();
            let mut kept = BTreeMap::new();
            for pc in elsewhere {
                let Some(sp) = saved.get(&pc.name) else {
                    continue;
                };
                let entry = match shown.remove(&pc.name) {
                    Some(e) if e.cfg.same_as(pc) => e,
                    old => {
                        let live = match old {
                            Some(e) => e.live.lock().unwrap().clone(),
                            None => Live {
                                overall: sp.overall.0,
                                overall_since: sp.overall.1,
                                window: rollups
                                    .remove(&sp.id)
                                    .map(UptimeWindow::from_rollups)
                                    .unwrap_or_default(),
                                ..Live::default()
                            },
                        };
                        Arc::new(ProbeEntry::new(pc.clone(), sp.id, live))
                    }
                };
                kept.insert(pc.name.clone(), entry);
            }
            *shown = kept;
        }
        // Push probes: their ping clocks, from the store (a restart does not reset them).
        let push_ids: Vec<(i64, String)> = here
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
        let stale: Vec<&Arc<ProbeConfig>> = {
            let probes = self.shared.probes.read().unwrap();
            here.iter()
                .copied()
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
        let wanted: HashMap<&str, &Arc<ProbeConfig>> =
            here.iter().map(|p| (p.name.as_str(), *p)).collect();
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
        for &pc in &here {
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
                        local_reason: s
                            .and_then(|s| s.last.as_ref())
                            .and_then(|l| l.error.clone()),
                        overall: s.map(|s| s.overall.0).unwrap_or_default(),
                        overall_since: s.and_then(|s| s.overall.1),
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
                live.slo = Some(Box::new(t));
            }
            let Some(id) = saved.get(&pc.name).map(|s| s.id) else {
                tracing::error!(probe = %pc.name, "probe has no store id; not running it");
                continue;
            };
            let entry = Arc::new(ProbeEntry::new(pc.clone(), id, live));
            let cancel = self.probes_cancel.child_token();
            let metrics = runner.metrics.probe(pc);
            self.probe_tasks.spawn(crate::schedule::run_probe(
                runner.clone(),
                entry.clone(),
                probe,
                metrics,
                cancel.clone(),
            ));
            probes.insert(pc.name.clone(), Running { entry, cancel });
        }
        drop(probes);
        release_free_memory();
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

/// How often a daemon on a shared store says it is alive and reads the other locations.
const SYNC_EVERY: Duration = Duration::from_secs(2);
/// Longest one such pass may take before the store counts as out of reach.
const SYNC_DEADLINE: Duration = Duration::from_secs(5);

/// With a shared store: every [`SYNC_EVERY`], a [`Runner::sync`](crate::schedule::Runner::sync)
/// pass (this daemon's heartbeat in the store, the other locations' verdicts in, every probe
/// judged again), until `cancel`.
async fn sync_locations(
    shared: Arc<Shared>,
    instance: String,
    location: String,
    cancel: CancellationToken,
) {
    let mut last = None;
    let mut failures = 0u64;
    loop {
        let me = crate::store::DaemonRow {
            instance: instance.clone(),
            location: location.clone(),
            started_at: shared.started_at,
            seen_at: crate::time::now_ms(),
            blind: shared.runner.blind(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        };
        // A cut network leaves the pool's sockets open for minutes: the pass has a deadline.
        let pass = tokio::time::timeout(
            SYNC_DEADLINE,
            shared.runner.sync(
                &shared.entries(),
                &shared.elsewhere_entries(),
                &me,
                &mut last,
            ),
        )
        .await
        .unwrap_or_else(|_| {
            Err(crate::store::StoreError::Unanswered(format!(
                "the store did not answer within {}",
                crate::units::format_duration(SYNC_DEADLINE)
            )))
        });
        match pass {
            Ok(new) => {
                if failures > 0 {
                    tracing::info!(failures, "the store answers again");
                }
                failures = 0;
                shared.runner.sight.lock().unwrap().store_unreachable = false;
                if !new.is_empty() {
                    tracing::info!(locations = ?new, "new locations in the store: watching them");
                    shared.rewatch.notify_one();
                }
            }
            Err(e) => {
                shared.runner.sight.lock().unwrap().store_unreachable = true;
                // Whether it is cut off, not only the store: judged now, not in half a
                // second.
                shared.runner.judge_sight_now(crate::clock::now_ms());
                failures += 1;
                if failures.is_power_of_two() {
                    tracing::warn!(error = %e, failures, "cannot read the other locations from the store; judging on this one's verdicts");
                }
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(SYNC_EVERY) => {}
        }
    }
}

/// How often the daemon judges whether it can see.
const SIGHT_EVERY: Duration = Duration::from_millis(500);
/// How often the reference checks run, and each one's deadline.
const REFERENCE_EVERY: Duration = Duration::from_secs(5);
const REFERENCE_TIMEOUT: Duration = Duration::from_secs(3);

/// The locations whose `location:<name>` probe this daemon runs: sharing a store, every one
/// it knows, its own first; alone, its own once it has been blind (a lone daemon that always
/// saw has nothing to say about it).
fn watched_locations(runner: &Runner) -> Vec<String> {
    if runner.shared_store() || runner.ever_blind() {
        runner.env.locations.locations()
    } else {
        Vec::new()
    }
}

/// Every [`SIGHT_EVERY`], whether this daemon can see (`watchdog.blind`, the references).
/// The first blindness of a lone daemon starts its `location:<name>` probe, which pages it.
async fn judge_sight(shared: Arc<Shared>, cancel: CancellationToken) {
    loop {
        let opts = shared.config.read().unwrap().watchdog.blind;
        shared.runner.set_sight_input(shared.entries(), opts);
        let blind = shared.runner.judge_sight_now(crate::clock::now_ms());
        let own = format!("location:{}", shared.runner.location);
        if blind.is_some() && !shared.probes.read().unwrap().contains_key(&own) {
            shared.rewatch.notify_one();
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(SIGHT_EVERY) => {}
        }
    }
}

/// Every [`REFERENCE_EVERY`], each `watchdog.reference`: any HTTP answer means the network
/// works from here. Only their hosts are ever logged or shown (a URL may hold a token).
async fn check_references(shared: Arc<Shared>, http: reqwest::Client, cancel: CancellationToken) {
    loop {
        let urls = shared.config.read().unwrap().watchdog.reference.clone();
        let mut failures = Vec::new();
        for u in &urls {
            let host = reqwest::Url::parse(u)
                .ok()
                .and_then(|u| u.host_str().map(str::to_owned))
                .unwrap_or_else(|| "?".into());
            match http.get(u).timeout(REFERENCE_TIMEOUT).send().await {
                Ok(_) => {}
                Err(e) => failures.push(format!(
                    "{host}: {}",
                    if e.is_timeout() {
                        "no answer".to_string()
                    } else if e.is_connect() {
                        "cannot connect".to_string()
                    } else {
                        "failed".to_string()
                    }
                )),
            }
        }
        {
            let mut sight = shared.runner.sight.lock().unwrap();
            sight.references_ok = !urls.is_empty() && failures.len() < urls.len();
            sight.references_failing = (!urls.is_empty() && failures.len() == urls.len())
                .then(|| format!("every reference check fails ({})", failures.join("; ")));
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(REFERENCE_EVERY) => {}
        }
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
    diff("location", old.location.clone(), new.location.clone());
    diff("store.url", store_text(old), store_text(new));
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

/// The store as it may be logged: the SQLite file, or the PostgreSQL URL without its password.
fn store_text(c: &Config) -> String {
    match &c.store.url {
        Some(u) => crate::store::postgres::display_url(u.expose()),
        None => c.data_dir.join("probed.db").display().to_string(),
    }
}
