//! The dispatcher: delivers the outbox. Probes never wait on it.
//!
//! One loop, woken when the store commits new alerts, when a send ends, when the next retry
//! falls due, and at least once a second:
//!
//! 1. **Housekeeping** in short transactions: resolve incidents whose recovery held long
//!    enough; fire escalation steps of open, unacknowledged incidents; queue reminders;
//!    re-send to notifiers that need refreshing while an incident fires (Alertmanager);
//!    page incidents whose mute (silence, maintenance) has ended.
//! 2. **Delivery**: every due `pending` row is sent, several at once, each under the
//!    notifier's deadline (plus a hard stop), so a hung channel stalls nothing. Each try is
//!    recorded in `attempts`. A failure is retried with exponential backoff and jitter (or
//!    after the receiver's `Retry-After`); after `max_attempts`, or at once on a permanent
//!    error, the page moves to the next notifier of its fallback chain and the failure is
//!    logged as an error. Rows stay `pending` while in flight, so a crash mid-send resends
//!    after the restart; the dedup key makes pager and Alertmanager fold the resend into the
//!    same incident.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::plan::Router;
use super::{Alert, BuildCx, Notifier, SendError};
use crate::config::{AlertingOptions, Config, ProbeConfig};
use crate::store::{
    AfterAttempt, Attempt, DueDelivery, Followups, OpenIncident, Store, StoreError,
};

mod memory;
pub use memory::MemoryPager;

/// Sends at once, all channels together.
const MAX_PARALLEL_SENDS: usize = 16;
/// Slack on top of a notifier's own deadline before the send is abandoned.
const SEND_BACKSTOP: Duration = Duration::from_secs(2);

/// What the dispatcher works from; swapped whole on reload.
pub struct Plan {
    pub notifiers: HashMap<String, Arc<Notifier>>,
    pub router: Arc<Router>,
    pub probes: HashMap<String, Arc<ProbeConfig>>,
    pub options: AlertingOptions,
    /// Whose claim a delivery is (`instance`), when several daemons share the outbox.
    pub claimer: String,
}

impl Plan {
    /// How long a claim on a delivery lasts: the slowest notifier's deadline, the send's
    /// backstop, and slack. A daemon that dies mid-send leaves its claim for this long,
    /// then another sends.
    pub fn lease(&self) -> Duration {
        let slowest = self
            .notifiers
            .values()
            .map(|n| n.timeout())
            .max()
            .unwrap_or_default();
        slowest + SEND_BACKSTOP + Duration::from_secs(5)
    }
}

impl Plan {
    /// Builds every notifier of `config`; a notifier that cannot be built is left out and
    /// named in the returned errors (its pages then go to the fallback chain).
    pub fn build(config: &Config, cx: &BuildCx) -> (Plan, Vec<String>) {
        let mut notifiers = HashMap::new();
        let mut errors = Vec::new();
        for (name, n) in &config.notifiers {
            match n.spec.build(cx) {
                Ok(built) => {
                    notifiers.insert(name.clone(), Arc::new(built));
                }
                Err(e) => errors.push(format!("notifier {name}: {e}")),
            }
        }
        (
            Plan {
                notifiers,
                router: Arc::new(Router::from_config(config)),
                probes: config
                    .probes
                    .iter()
                    .map(|p| (p.name.clone(), p.clone()))
                    .collect(),
                options: config.alerting.clone(),
                claimer: config.instance.clone(),
            },
            errors,
        )
    }
}

/// Counters for `/metrics` and the status API.
#[derive(Debug, Default)]
pub struct DispatchStats {
    pub delivered: std::sync::atomic::AtomicU64,
    pub failed_attempts: std::sync::atomic::AtomicU64,
    pub given_up: std::sync::atomic::AtomicU64,
    /// Consecutive failed attempts per notifier (0 after a success).
    pub streaks: Mutex<HashMap<String, u64>>,
    /// Messages waiting in the outbox (pending), as of the last pass.
    pub pending: std::sync::atomic::AtomicI64,
    /// Creation time (unix ms) of the oldest message not yet delivered, in the outbox or
    /// being paged from memory; 0 when there is none.
    pub oldest_pending_at: std::sync::atomic::AtomicI64,
    /// Pages sent from memory while the store could not be written.
    pub paged_from_memory: std::sync::atomic::AtomicU64,
}

pub struct Dispatcher {
    /// Incidents and the outbox: short transactions on the write connection; the memory
    /// pager reads on the read pool while writes fail.
    store: Store,
    memory: Mutex<memory::MemoryState>,
    plan: RwLock<Arc<Plan>>,
    wake: Arc<Notify>,
    in_flight: Mutex<HashSet<i64>>,
    slots: Arc<Semaphore>,
    pub stats: DispatchStats,
    /// Whether a probe (by id) still pages as things stand now: down or degraded, and seen
    /// by a daemon that can see. Asked before each retry of a page from memory, which may
    /// wait out a long outage; set by the daemon (until then: always).
    still_firing: RwLock<Option<StillFiring>>,
}

/// See [`Dispatcher::set_still_firing`].
pub type StillFiring = Arc<dyn Fn(i64) -> bool + Send + Sync>;

impl Dispatcher {
    /// What a page from memory asks before each retry: does the probe still page?
    pub fn set_still_firing(&self, f: StillFiring) {
        *self.still_firing.write().unwrap() = Some(f);
    }

    fn still_firing(&self, probe_id: i64) -> bool {
        self.still_firing
            .read()
            .unwrap()
            .as_ref()
            .is_none_or(|f| f(probe_id))
    }

    /// Delivers the outbox of `store`, woken by its commits that queue alerts.
    pub fn new(store: Store, plan: Plan) -> Arc<Dispatcher> {
        let wake = store.alerts_queued.clone();
        Arc::new(Dispatcher {
            store,
            memory: Mutex::new(Default::default()),
            plan: RwLock::new(Arc::new(plan)),
            wake,
            in_flight: Mutex::new(HashSet::new()),
            slots: Arc::new(Semaphore::new(MAX_PARALLEL_SENDS)),
            stats: DispatchStats::default(),
            still_firing: RwLock::new(None),
        })
    }

    pub fn set_plan(&self, plan: Plan) {
        *self.plan.write().unwrap() = Arc::new(plan);
        self.wake.notify_one();
    }

    /// A built notifier of the running config, by name.
    pub fn notifier(&self, name: &str) -> Option<Arc<Notifier>> {
        self.plan().notifiers.get(name).cloned()
    }

    fn plan(&self) -> Arc<Plan> {
        self.plan.read().unwrap().clone()
    }

    /// Runs until `cancel`; then waits up to `grace` for sends in flight.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken, grace: Duration) {
        let sends = TaskTracker::new();
        // Consecutive failed passes: logged at 1, 2, 4, 8, ... so a dead disk does not flood
        // the log once a second.
        let (mut hk_fails, mut send_fails) = (0u64, 0u64);
        loop {
            // Timers and the now they are compared with stay on one clock: a wall-clock
            // step's shift waits for this pass (see crate::clock).
            let frame = crate::clock::gate().await;
            let now = crate::clock::now_ms();
            match self.housekeeping(now).await {
                Ok(()) => hk_fails = 0,
                Err(e) => {
                    hk_fails += 1;
                    if hk_fails.is_power_of_two() {
                        tracing::error!(error = %e, failures = hk_fails, "alert housekeeping failed; retrying");
                    }
                }
            }
            match self.send_due(now, &sends).await {
                Ok(()) => send_fails = 0,
                Err(e) => {
                    send_fails += 1;
                    if send_fails.is_power_of_two() {
                        tracing::error!(error = %e, failures = send_fails, "reading the alert outbox failed; retrying");
                    }
                }
            }
            drop(frame);
            // Sleep until the next retry falls due (so a backoff is honoured to the
            // millisecond and jittered retries stay apart), at most a second.
            let mut nap = Duration::from_secs(1);
            match self.measure_backlog().await {
                Ok(Some(due)) => {
                    let until = (due - crate::clock::now_ms()).clamp(10, 1000);
                    nap = Duration::from_millis(until as u64);
                }
                Ok(None) => {}
                Err(e) => tracing::debug!(error = %e, "measuring the outbox failed"),
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(nap) => {}
            }
        }
        sends.close();
        if tokio::time::timeout(grace, sends.wait()).await.is_err() {
            tracing::warn!("sends still in flight at shutdown; they resume after the restart");
        }
    }

    async fn housekeeping(&self, now: i64) -> Result<(), StoreError> {
        let plan = self.plan();
        // Resolve incidents whose recovery held.
        for id in self.store.incidents_due_to_resolve(now).await? {
            self.store.resolve_incident(id, now).await?;
            tracing::info!(incident = id, "incident resolved");
        }
        // Open incidents: mute ended, escalation, reminders, refresh.
        let open = self.store.open_incidents().await?;
        let refreshing = plan.notifiers.values().any(|n| n.refresh_every().is_some());
        for r in open {
            let (id, probe) = (r.id, r.probe.as_str());
            let Ok(mut alert) = serde_json::from_str::<Alert>(&r.alert) else {
                continue;
            };
            let (recovering, acked, opened) = (r.recovering, r.acknowledged, r.opened_at);
            let Some(probe_cfg) = plan.probes.get(probe) else {
                // The probe left the config: nothing will ever recover it. Close the incident
                // (resolve notices go out as for a recovery).
                if !recovering {
                    self.store.close_incident_now(id, now).await?;
                    tracing::info!(incident = id, probe = %probe, "probe removed from the config; closing its incident");
                }
                continue;
            };
            // Down and degraded are one incident, which goes on in the probe's state now:
            // its template follows (`fired_as` keeps the state it leaves, so that
            // Alertmanager hears that alert end), and receivers that are re-sent to hear it
            // at once rather than at their next resend.
            let flipped = match r.probe_state.as_deref() {
                Some(now_in @ ("down" | "degraded")) if alert.fire_as(now_in) => {
                    let reason = self
                        .store
                        .current_reason(r.probe_id, now_in, r.opened_at)
                        .await?;
                    alert.reason = reason.or(alert.reason);
                    self.store.set_incident_alert(id, &alert).await?;
                    tracing::info!(incident = id, probe = %probe, state = %alert.state, "incident goes on in the probe's new state");
                    true
                }
                _ => false,
            };
            // The incident's own severity (an objective's rule may carry its own).
            let route = plan.router.route_as(probe_cfg, &alert.severity);
            if !r.paged {
                if recovering || acked {
                    continue;
                }
                let mut muted = plan
                    .router
                    .maintenance(probe, now)
                    .map(|m| format!("maintenance window {m:?}"));
                if muted.is_none() {
                    muted = self.store.silence_covering(probe, now).await?;
                }
                if muted.is_none() {
                    self.freshen(&r, &mut alert).await?;
                    let to = route.map(|r| (r.notify.as_slice(), r.fallback.as_slice()));
                    self.store.page_after_mute(id, &alert, to, now).await?;
                    tracing::info!(incident = id, probe = %probe, "mute ended; paging");
                }
                continue;
            }
            // Decide first; write only when something is due, so a thousand quiet open
            // incidents cost a read, not a thousand transactions a second.
            let step = r.escalation_step as usize;
            let escalation = route
                .filter(|_| !recovering && !acked)
                .and_then(|route| route.escalate.get(step).map(|s| (route, s)))
                .filter(|(_, s)| now - opened >= s.after.as_millis() as i64);
            let reminder = route.filter(|_| !recovering && !acked).filter(|route| {
                route.remind_every.is_some_and(|every| {
                    let last = r.last_reminder_at.unwrap_or(opened);
                    now - last >= every.as_millis() as i64
                })
            });
            // Receivers that forget alerts not re-sent (Alertmanager) hear again while it
            // fires, recovering or not, until resolved.
            let mut refresh = Vec::new();
            if refreshing {
                for (name, last) in self.store.last_sends(id).await? {
                    if let Some(every) = plan.notifiers.get(&name).and_then(|n| n.refresh_every())
                        && (flipped || now - last >= every.as_millis() as i64)
                    {
                        refresh.push(name);
                    }
                }
            }
            if escalation.is_none() && reminder.is_none() && refresh.is_empty() {
                continue;
            }
            self.freshen(&r, &mut alert).await?;
            let followups = Followups {
                escalate: escalation.map(|(route, s)| {
                    (
                        step as i64 + 1,
                        s.notify.as_slice(),
                        route.fallback.as_slice(),
                    )
                }),
                remind: reminder.map(|route| (route.notify.as_slice(), route.fallback.as_slice())),
                last_reminder_at: r.last_reminder_at,
                refresh: &refresh,
            };
            self.store
                .queue_followups(id, &alert, &followups, now)
                .await?;
            if let Some((_, s)) = escalation {
                tracing::warn!(incident = id, probe = %probe, step = step + 1, notify = ?s.notify, "unacknowledged: escalating");
            }
        }
        Ok(())
    }

    /// Brings a message of open incident `r` up to date before it is queued: the reason is
    /// the probe's current one (a resend does not repeat the reason the incident opened
    /// with, which may be long gone), and a recovering incident says since when it is up.
    async fn freshen(&self, r: &OpenIncident, alert: &mut Alert) -> Result<(), StoreError> {
        let reason = self
            .store
            .current_reason(r.probe_id, &alert.state, r.opened_at)
            .await?;
        if reason.is_some() {
            alert.reason = reason;
        }
        alert.recovered_at = r.recovered_at;
        Ok(())
    }

    async fn send_due(self: &Arc<Self>, now: i64, sends: &TaskTracker) -> Result<(), StoreError> {
        let plan = self.plan();
        let lease = plan.lease().as_millis() as i64;
        for job in self.store.due_deliveries(now, &plan.claimer, lease).await? {
            if !self.in_flight.lock().unwrap().insert(job.id) {
                continue;
            }
            let me = self.clone();
            let permit = self.slots.clone().acquire_owned().await;
            sends.spawn(async move {
                let mut sent = me.send(&job).await;
                drop(permit);
                // The outcome (a retry's due time) is written on the timers' clock, with no
                // clock-step shift in between (see crate::clock).
                let _frame = crate::clock::gate().await;
                sent.at = crate::clock::now_ms();
                // The row stays in flight (never sent twice) until its outcome is recorded:
                // while the store cannot be written, keep trying, without holding a slot.
                let mut wait = Duration::from_millis(100);
                let mut failures = 0u64;
                while let Err(e) = me.record(&job, &sent).await {
                    failures += 1;
                    if failures.is_power_of_two() {
                        tracing::error!(outbox = job.id, error = %e, failures, "recording a delivery failed; retrying");
                    }
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
                me.in_flight.lock().unwrap().remove(&job.id);
                me.wake.notify_one();
            });
        }
        Ok(())
    }

    /// Records the creation time of the oldest undelivered message and the outbox's pending
    /// count; returns when the next pending row not in flight falls due.
    async fn measure_backlog(&self) -> Result<Option<i64>, StoreError> {
        use std::sync::atomic::Ordering::Relaxed;
        let in_flight: Vec<i64> = self.in_flight.lock().unwrap().iter().copied().collect();
        let backlog = self.store.outbox_backlog(&in_flight).await?;
        let mut oldest = backlog.oldest;
        if let Some(m) = self.memory.lock().unwrap().oldest() {
            oldest = Some(oldest.map_or(m, |o| o.min(m)));
        }
        self.stats.pending.store(backlog.pending, Relaxed);
        self.stats
            .oldest_pending_at
            .store(oldest.unwrap_or(0), Relaxed);
        Ok(backlog.next_due)
    }

    /// One try of one outbox row, under the notifier's deadline.
    async fn send(&self, job: &DueDelivery) -> Sent {
        let plan = self.plan();
        let started = tokio::time::Instant::now();
        let result = match (
            plan.notifiers.get(&job.notifier),
            serde_json::from_str::<Alert>(&job.alert),
        ) {
            (None, _) => Err(SendError::permanent(format!(
                "notifier {:?} is not configured (or could not be built)",
                job.notifier
            ))),
            (_, Err(e)) => Err(SendError::permanent(format!("unreadable alert: {e}"))),
            (Some(n), Ok(alert)) => send_within(n, &alert).await,
        };
        Sent {
            result,
            took_us: started.elapsed().as_micros() as i64,
            at: crate::time::now_ms(),
        }
    }

    /// Records a try and its consequence (delivered, retry later, fall back, give up).
    async fn record(&self, job: &DueDelivery, sent: &Sent) -> Result<(), StoreError> {
        use std::sync::atomic::Ordering::Relaxed;
        let plan = self.plan();
        let (result, now) = (&sent.result, sent.at);
        let attempts = job.attempts + 1;
        let detail = match &result {
            Ok(d) => d.detail.clone(),
            Err(e) => e.to_string(),
        };
        let attempt = Attempt {
            outbox_id: job.id,
            notifier: &job.notifier,
            at: now,
            ok: result.is_ok(),
            detail: &detail,
            took_us: sent.took_us,
            attempts,
        };
        let e = match result {
            Ok(_) => {
                self.store
                    .record_attempt(&attempt, AfterAttempt::Delivered)
                    .await?;
                self.stats.attempted(&job.notifier, true);
                tracing::info!(notifier = %job.notifier, outbox = job.id, attempts, detail = %detail, "alert delivered");
                return Ok(());
            }
            Err(e) => e,
        };
        self.stats.attempted(&job.notifier, false);
        let permanent = matches!(e, SendError::Permanent { .. });
        if !permanent && attempts < plan.options.max_attempts {
            let wait = retry_wait(&plan.options, attempts, e);
            let due_at = now + wait.as_millis() as i64;
            self.store
                .record_attempt(&attempt, AfterAttempt::Retry { due_at })
                .await?;
            tracing::warn!(
                notifier = %job.notifier, attempts, retry_in = %crate::units::format_duration(wait), error = %detail,
                "alert delivery failed; retrying"
            );
            return Ok(());
        }
        let fallback = job.fallback.split_first();
        self.store
            .record_attempt(
                &attempt,
                AfterAttempt::Failed {
                    fallback,
                    alert: &job.alert,
                },
            )
            .await?;
        match fallback {
            Some((next, _)) => tracing::error!(
                notifier = %job.notifier, fallback = %next, attempts, error = %detail,
                "alert channel failed; falling back"
            ),
            None => {
                self.stats.given_up.fetch_add(1, Relaxed);
                tracing::error!(
                    notifier = %job.notifier, attempts, error = %detail, incident = %incident_of(&job.alert),
                    "alert could not be delivered and no fallback is left"
                );
            }
        }
        Ok(())
    }
}

/// What one try came to.
struct Sent {
    result: Result<super::Delivered, SendError>,
    took_us: i64,
    /// When it ended, unix ms.
    at: i64,
}

fn incident_of(alert_json: &str) -> i64 {
    serde_json::from_str::<Alert>(alert_json)
        .map(|a| a.incident)
        .unwrap_or(0)
}

/// One send to `n`, under its own deadline plus [`SEND_BACKSTOP`]: a hung channel ends as a
/// retryable failure.
async fn send_within(n: &Notifier, alert: &Alert) -> Result<super::Delivered, SendError> {
    let limit = n.timeout() + SEND_BACKSTOP;
    tokio::time::timeout(limit, n.send(alert))
        .await
        .unwrap_or_else(|_| {
            Err(SendError::retry(format!(
                "no answer within {}",
                crate::units::format_duration(limit)
            )))
        })
}

impl DispatchStats {
    /// Counts one attempt on `notifier`: delivered (its failure streak ends) or failed (the
    /// streak grows).
    fn attempted(&self, notifier: &str, ok: bool) {
        use std::sync::atomic::Ordering::Relaxed;
        let mut streaks = self.streaks.lock().unwrap();
        if ok {
            self.delivered.fetch_add(1, Relaxed);
            streaks.insert(notifier.to_owned(), 0);
        } else {
            self.failed_attempts.fetch_add(1, Relaxed);
            *streaks.entry(notifier.to_owned()).or_default() += 1;
        }
    }
}

/// How long before the next try: what the receiver asked (`Retry-After`, capped at
/// `retry_max`), else the backoff.
fn retry_wait(o: &AlertingOptions, attempt: u32, e: &SendError) -> Duration {
    match e {
        SendError::Retry {
            retry_after: Some(d),
            ..
        } => (*d).min(o.retry_max),
        _ => backoff(o, attempt),
    }
}

/// `retry_base × 2^(attempt-1)`, capped at `retry_max`, with ±20% jitter so retries of many
/// pages never line up.
pub fn backoff(o: &AlertingOptions, attempt: u32) -> Duration {
    use rand::Rng;
    let exp = o
        .retry_base
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
        .min(o.retry_max);
    let jitter = rand::rng().random_range(0.8..1.2);
    exp.mul_f64(jitter).min(o.retry_max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        let o = AlertingOptions {
            max_attempts: 5,
            retry_base: Duration::from_secs(2),
            retry_max: Duration::from_secs(60),
        };
        for (attempt, base) in [(1u32, 2.0f64), (2, 4.0), (3, 8.0), (4, 16.0)] {
            let d = backoff(&o, attempt).as_secs_f64();
            assert!(
                (base * 0.8..=base * 1.2).contains(&d),
                "attempt {attempt}: {d}"
            );
        }
        assert!(backoff(&o, 30) <= Duration::from_secs(60));
        // Jitter: not every draw the same.
        let draws: HashSet<u128> = (0..20).map(|_| backoff(&o, 3).as_millis()).collect();
        assert!(draws.len() > 1);
    }
}
