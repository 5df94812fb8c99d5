//! Watching the watcher: the daemon's own liveness made visible from outside.
//!
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

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::alert::Notifier;
use crate::config::{Heartbeat, WatchdogAlert};
use crate::daemon::Shared;

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
        .filter(|e| e.live.lock().unwrap().verdicts.state == crate::evaluate::State::Down)
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

/// Pings one heartbeat URL for as long as the daemon runs.
pub async fn heartbeat(
    shared: Arc<Shared>,
    hb: Heartbeat,
    index: usize,
    cancel: CancellationToken,
) {
    let client = shared.build_cx.http.clone();
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
