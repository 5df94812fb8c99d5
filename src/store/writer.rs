//! The writer task: drains the store's queues and commits each batch of results, the probes'
//! state, rollups and state changes (with their incidents and first pages) in one
//! transaction; buffers in memory and hands pages to the [`Failover`] while commits fail.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sqlx::sqlite::SqlitePool;
use sqlx::{QueryBuilder, Sqlite};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{DAY_MS, HOUR_MS, Record, StateChange, StoreStats, incidents};
use crate::paging::Page;
use crate::probe::Observation;

/// The writer task's half. Run it with [`Writer::run`].
pub struct Writer {
    pub(super) write: SqlitePool,
    pub(super) results: mpsc::Receiver<Record>,
    pub(super) changes: mpsc::UnboundedReceiver<StateChange>,
    pub(super) stats: Arc<StoreStats>,
    pub(super) alerts_queued: Arc<tokio::sync::Notify>,
    pub(super) buffer: usize,
    pub(super) failover: Option<Arc<dyn Failover>>,
}

/// Most results committed in one transaction.
pub(super) const MAX_BATCH: usize = 4096;
/// After the first result of a batch arrives, how long the writer gathers more before it
/// commits. A commit costs far more than a row, so gathering for a moment cuts the store's
/// CPU per result several times over; results become readable at most this much later.
const LINGER: Duration = Duration::from_millis(200);
/// Rows per INSERT statement (10 parameters each, well under SQLite's limit).
const ROWS_PER_INSERT: usize = 200;

/// Who pages while the store cannot be written: the dispatcher, from memory.
pub trait Failover: Send + Sync {
    /// `change` could not be committed. If it should page, page it from memory now, and mark
    /// its plan so that the incident, once it is written, does not page a second time.
    fn unwritten(&self, change: &mut StateChange);
    /// Commits work again.
    fn recovered(&self);
}

impl Writer {
    /// Results held in memory while commits fail (at least one batch).
    pub fn with_buffer(mut self, results: usize) -> Writer {
        self.buffer = results.max(MAX_BATCH);
        self
    }

    /// Who pages state changes that cannot be committed.
    pub fn with_failover(mut self, failover: Arc<dyn Failover>) -> Writer {
        self.failover = Some(failover);
        self
    }

    /// Writes until `cancel` fires and the queue is drained (or `grace` passes after
    /// cancellation).
    ///
    /// When a commit fails (disk full, read-only file system, a lock held by another
    /// process), nothing is thrown away: the batch stays, the writer keeps taking results off
    /// the queue into a memory buffer of `buffer` results (so probes never block and the
    /// queue never fills), and retries with backoff up to 5 s. State changes that should page
    /// are handed to the [`Failover`] at once, so paging does not wait for the disk. When a
    /// commit works again the buffer is written, oldest first, a batch at a time. Past the
    /// bound the oldest buffered results are dropped and counted
    /// (`probed_store_dropped_total`); state changes are never dropped.
    pub async fn run(mut self, cancel: CancellationToken, grace: Duration) {
        let mut pending: VecDeque<Record> = VecDeque::with_capacity(MAX_BATCH);
        let mut changes: Vec<StateChange> = Vec::new();
        // Changes already offered to the failover (a prefix of `changes`).
        let mut offered = 0;
        let mut backoff = Duration::from_millis(100);
        let mut draining_since: Option<tokio::time::Instant> = None;
        // Set while commits fail: when to try again.
        let mut retry_at: Option<tokio::time::Instant> = None;
        loop {
            if pending.is_empty() && changes.is_empty() {
                if draining_since.is_some() {
                    // Cancelled and drained: whatever still arrives is taken below.
                    match (self.results.try_recv(), self.changes.try_recv()) {
                        (Err(_), Err(_)) => break,
                        (r, c) => {
                            pending.extend(r.ok());
                            changes.extend(c.ok());
                        }
                    }
                } else {
                    tokio::select! {
                        biased;
                        Some(c) = self.changes.recv() => changes.push(c),
                        Some(r) = self.results.recv() => pending.push_back(r),
                        _ = cancel.cancelled() => {
                            draining_since = Some(tokio::time::Instant::now());
                            continue;
                        }
                    }
                }
            }
            if let Some(mut at) = retry_at {
                // Failing: keep the queue moving into the buffer until the next try.
                if let Some(t) = draining_since {
                    at = at.min(t + grace);
                }
                loop {
                    tokio::select! {
                        biased;
                        _ = cancel.cancelled(), if draining_since.is_none() => {
                            draining_since = Some(tokio::time::Instant::now());
                            at = at.min(tokio::time::Instant::now() + grace);
                        }
                        Some(c) = self.changes.recv() => changes.push(c),
                        Some(r) = self.results.recv() => self.buffer_push(&mut pending, r),
                        _ = tokio::time::sleep_until(at) => break,
                    }
                }
                while let Ok(r) = self.results.try_recv() {
                    self.buffer_push(&mut pending, r);
                }
            } else {
                if draining_since.is_none() {
                    let until = tokio::time::Instant::now() + LINGER;
                    while pending.len() < MAX_BATCH {
                        tokio::select! {
                            biased;
                            _ = cancel.cancelled() => break,
                            r = self.results.recv() => match r {
                                Some(r) => pending.push_back(r),
                                None => break,
                            },
                            _ = tokio::time::sleep_until(until) => break,
                        }
                    }
                }
                while pending.len() < MAX_BATCH {
                    match self.results.try_recv() {
                        Ok(r) => pending.push_back(r),
                        Err(_) => break,
                    }
                }
            }
            while let Ok(c) = self.changes.try_recv() {
                changes.push(c);
            }
            let n = pending.len().min(MAX_BATCH);
            let s = self.stats.clone();
            match self.commit(&pending.make_contiguous()[..n], &changes).await {
                Ok(()) => {
                    pending.drain(..n);
                    s.written.fetch_add(n as u64, Ordering::Relaxed);
                    s.batches.fetch_add(1, Ordering::Relaxed);
                    s.buffered.store(pending.len() as u64, Ordering::Relaxed);
                    if s.failing_streak.swap(0, Ordering::AcqRel) > 0 {
                        tracing::info!(
                            still_buffered = pending.len(),
                            "store writes work again; writing what was buffered"
                        );
                        *s.last_error.lock().unwrap() = None;
                        s.failing_since.store(0, Ordering::Relaxed);
                        if let Some(f) = &self.failover {
                            f.recovered();
                        }
                    }
                    if !changes.is_empty() {
                        self.alerts_queued.notify_one();
                    }
                    changes.clear();
                    offered = 0;
                    backoff = Duration::from_millis(100);
                    retry_at = None;
                }
                Err(e) => {
                    s.write_errors.fetch_add(1, Ordering::Relaxed);
                    // The reason, the buffer and the start of the outage are set before
                    // the streak that makes `/healthz` read them (Release here, Acquire
                    // there), so a reader never sees a failure without its reason.
                    *s.last_error.lock().unwrap() = Some(e.to_string());
                    s.buffered.store(pending.len() as u64, Ordering::Relaxed);
                    if s.failing_since.load(Ordering::Relaxed) == 0 {
                        s.failing_since
                            .store(crate::time::now_ms(), Ordering::Relaxed);
                    }
                    let streak = s.failing_streak.fetch_add(1, Ordering::Release) + 1;
                    if streak.is_power_of_two() {
                        tracing::error!(error = %e, streak, buffered = pending.len(), "store write failed; buffering in memory and retrying");
                    }
                    // What should page pages now, from memory.
                    if let Some(f) = &self.failover {
                        for c in &mut changes[offered..] {
                            f.unwritten(c);
                        }
                        offered = changes.len();
                    }
                    let give_up = draining_since.is_some_and(|t| t.elapsed() >= grace);
                    if give_up {
                        s.dropped.fetch_add(pending.len() as u64, Ordering::Relaxed);
                        tracing::error!(
                            lost = pending.len(),
                            changes = changes.len(),
                            "shutting down with unwritten results"
                        );
                        break;
                    }
                    retry_at = Some(tokio::time::Instant::now() + backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Buffers one result while commits fail; past the bound the oldest goes, counted.
    fn buffer_push(&self, pending: &mut VecDeque<Record>, r: Record) {
        if pending.len() >= self.buffer {
            pending.pop_front();
            let n = self.stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(
                    dropped = n,
                    buffer = self.buffer,
                    "store buffer full: oldest unwritten result dropped"
                );
            }
        }
        pending.push_back(r);
        self.stats
            .buffered
            .store(pending.len() as u64, Ordering::Relaxed);
    }

    async fn commit(&self, results: &[Record], changes: &[StateChange]) -> Result<(), sqlx::Error> {
        let mut tx = self.write.begin().await?;
        for chunk in results.chunks(ROWS_PER_INSERT) {
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
                "INSERT OR REPLACE INTO results \
                 (probe_id, at, ok, duration_us, status_code, error, phases, ip, cert_expiry, size) ",
            );
            q.push_values(chunk, |mut b, r| {
                let o = &r.obs;
                b.push_bind(r.probe_id)
                    .push_bind(r.at)
                    .push_bind(o.ok as i64)
                    .push_bind(o.duration.as_micros() as i64)
                    .push_bind(o.status_code.map(i64::from))
                    .push_bind(o.error.clone())
                    .push_bind(phases_json(o))
                    .push_bind(o.ip.map(|ip| ip.to_string()))
                    .push_bind(o.cert_expiry)
                    .push_bind(o.size.map(|s| s as i64));
            });
            q.build().execute(&mut *tx).await?;
        }
        // Rollups: one upsert per (probe, hour) and per (probe, day) in this batch.
        for (span, table, col) in [
            (HOUR_MS, "rollups_hourly", "hour"),
            (DAY_MS, "rollups_daily", "day"),
        ] {
            let mut spans: HashMap<(i64, i64), (i64, i64, i64, i64)> = HashMap::new();
            for r in results {
                let e = spans
                    .entry((r.probe_id, r.at - r.at.rem_euclid(span)))
                    .or_default();
                let us = r.obs.duration.as_micros() as i64;
                e.0 += 1;
                e.1 += r.obs.ok as i64;
                e.2 += us;
                e.3 = e.3.max(us);
            }
            let spans: Vec<_> = spans.into_iter().collect();
            for chunk in spans.chunks(ROWS_PER_INSERT) {
                let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(format!(
                    "INSERT INTO {table} (probe_id, {col}, runs, ok, sum_duration_us, max_duration_us) "
                ));
                q.push_values(chunk, |mut b, ((id, at), (runs, ok, sum, max))| {
                    b.push_bind(*id)
                        .push_bind(*at)
                        .push_bind(*runs)
                        .push_bind(*ok)
                        .push_bind(*sum)
                        .push_bind(*max);
                });
                q.push(format!(
                    " ON CONFLICT(probe_id, {col}) DO UPDATE SET runs = runs + excluded.runs, \
                     ok = ok + excluded.ok, sum_duration_us = sum_duration_us + excluded.sum_duration_us, \
                     max_duration_us = max(max_duration_us, excluded.max_duration_us)"
                ));
                q.build().execute(&mut *tx).await?;
            }
        }
        // Probe state: the latest result of each probe in this batch.
        let mut latest: HashMap<i64, &Record> = HashMap::new();
        for r in results {
            latest
                .entry(r.probe_id)
                .and_modify(|cur| {
                    if r.at >= cur.at {
                        *cur = r
                    }
                })
                .or_insert(r);
        }
        let latest: Vec<&Record> = latest.into_values().collect();
        for chunk in latest.chunks(ROWS_PER_INSERT) {
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
                "UPDATE probes SET state = v.column2, state_since = v.column3, \
                 consecutive_failures = v.column4, consecutive_successes = v.column5, \
                 last_checked_at = v.column6, last_ok = v.column7, last_duration_us = v.column8, \
                 last_error = v.column9, recent = v.column10 FROM (",
            );
            q.push_values(chunk, |mut b, r| {
                b.push_bind(r.probe_id)
                    .push_bind(r.verdicts.state.as_str())
                    .push_bind(r.verdicts.since)
                    .push_bind(r.verdicts.consecutive_failures as i64)
                    .push_bind(r.verdicts.consecutive_successes as i64)
                    .push_bind(r.at)
                    .push_bind(r.obs.ok as i64)
                    .push_bind(r.obs.duration.as_micros() as i64)
                    .push_bind(r.obs.error.clone())
                    .push_bind(r.verdicts.recent as i64);
            });
            q.push(") AS v WHERE probes.id = v.column1");
            q.build().execute(&mut *tx).await?;
        }
        for c in changes {
            sqlx::query(
                "INSERT INTO state_changes (probe_id, at, from_state, to_state, reason) \
                 VALUES (?, ?, ?, ?, ?)",
            )
            .bind(c.probe_id)
            .bind(c.transition.at)
            .bind(c.transition.from.as_str())
            .bind(c.transition.to.as_str())
            .bind(c.transition.reason.clone())
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE probes SET state = ?, state_since = ?, consecutive_failures = ?, \
                 consecutive_successes = ?, recent = ? WHERE id = ?",
            )
            .bind(c.verdicts.state.as_str())
            .bind(c.verdicts.since)
            .bind(c.verdicts.consecutive_failures as i64)
            .bind(c.verdicts.consecutive_successes as i64)
            .bind(c.verdicts.recent as i64)
            .bind(c.probe_id)
            .execute(&mut *tx)
            .await?;
            // The incident and its first page, in this same transaction: durable before any
            // send is tried.
            match &c.page {
                Some(Page::Open(plan)) => {
                    incidents::open_incident(&mut tx, c.probe_id, c.transition.at, plan).await?
                }
                Some(Page::Recover { hold_ms }) => {
                    incidents::recover_incident(&mut tx, c.probe_id, c.transition.at, *hold_ms)
                        .await?
                }
                None => {}
            }
        }
        tx.commit().await
    }
}

fn phases_json(o: &Observation) -> Option<String> {
    if o.phases.is_empty() {
        return None;
    }
    let mut s = String::with_capacity(16 * o.phases.len());
    s.push('{');
    for (i, (name, d)) in o.phases.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        // Milliseconds with microsecond precision.
        s.push_str(&format!("\"{name}\":{:.3}", d.as_secs_f64() * 1000.0));
    }
    s.push('}');
    Some(s)
}
