//! The writer task: drains the store's queues and commits each batch of results, the probes'
//! state, rollups and state changes (with their incidents and first pages) in one
//! transaction; buffers in memory and hands pages to the [`Failover`] while commits fail.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{Backend, Record, StateChange, StoreStats};

/// The writer task's half. Run it with [`Writer::run`].
pub struct Writer {
    pub(super) db: Backend,
    /// This daemon's location id (see `Store::set_location`).
    pub(super) loc: Arc<std::sync::atomic::AtomicI64>,
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
/// Longest a commit to PostgreSQL may take before it counts as failed.
const COMMIT_DEADLINE: Duration = Duration::from_secs(10);

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
            // Newest first: after an outage the store learns each probe's latest verdict with
            // the first commit, not after the whole buffer (other locations read it).
            let from = pending.len() - n;
            match self
                .commit(&pending.make_contiguous()[from..], &changes)
                .await
            {
                Ok(()) => {
                    pending.truncate(from);
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

    /// One batch, in one transaction, on whichever backend the store was opened on. On
    /// PostgreSQL a commit has [`COMMIT_DEADLINE`]: a server that stops answering (a cut
    /// network leaves the socket open for minutes) is a failed commit, so the buffer and the
    /// failover take over, as for a full disk. SQLite answers or fails on its own (its busy
    /// timeout).
    async fn commit(&self, results: &[Record], changes: &[StateChange]) -> Result<(), sqlx::Error> {
        let loc = self.loc.load(Ordering::Relaxed);
        match &self.db {
            Backend::Sqlite(db) => db.commit(results, changes, loc).await,
            Backend::Postgres(db) => {
                tokio::time::timeout(COMMIT_DEADLINE, db.commit(results, changes, loc))
                    .await
                    .unwrap_or_else(|_| {
                        Err(sqlx::Error::Io(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!(
                                "PostgreSQL did not answer within {}",
                                crate::units::format_duration(COMMIT_DEADLINE)
                            ),
                        )))
                    })
            }
        }
    }
}
