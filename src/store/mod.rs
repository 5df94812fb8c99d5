//! The store: one SQLite file (`data_dir/probed.db`, WAL) holding results, probe state,
//! hourly rollups, state changes, incidents, the outbox and its delivery attempts,
//! silences, push pings. Every query of that file is here: `writer.rs` (the writer task's
//! batches: results, probe state, rollups, state changes), `incidents.rs` (incidents; the
//! first page, written in the state change's own transaction), `outbox.rs` (deliveries),
//! `silences.rs`, `views.rs` (the public views' reads), `clock.rs` (timers shifted after a
//! clock step). This file keeps the handle ([`Store`]): opening and migrations, probe
//! registration, results and rollups read back, push pings, retention.
//!
//! Writes go through one writer task ([`Writer::run`]) that drains a bounded queue and
//! commits whatever has accumulated in one transaction, so a burst of results costs one
//! fsync, not hundreds. A probe never waits on it: [`Store::record`] is a `try_send`; when
//! the queue is full the result is dropped *and counted* (`probed_store_dropped_total`).
//! State changes travel on their own unbounded channel (there is at most one per probe run,
//! and they are never dropped), and are written in the same transaction as the batch.
//! Reads go through a separate pool, so the API never queues behind the writer.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite};
use tokio::sync::mpsc;

use crate::evaluate::{State, Transition, Verdicts};
use crate::probe::Observation;

mod clock;
mod incidents;
mod outbox;
pub mod silences;
pub mod views;
mod writer;
pub use clock::ShiftedTimers;
pub use incidents::{AckError, Delivery, Followups, IncidentRow, OpenIncident};
pub use outbox::{AfterAttempt, Attempt, Backlog, DueDelivery};
use writer::MAX_BATCH;
pub use writer::{Failover, Writer};

/// Store errors, with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot open {path}: {source}")]
    Open { path: String, source: sqlx::Error },
    #[error("cannot migrate {path}: {source}")]
    Migrate {
        path: String,
        source: sqlx::migrate::MigrateError,
    },
    #[error("store query failed: {0}")]
    Query(#[from] sqlx::Error),
}

/// One result on its way to the writer.
#[derive(Debug)]
pub struct Record {
    pub probe_id: i64,
    /// Wall-clock start of the run, unix ms.
    pub at: i64,
    pub obs: Observation,
    /// The probe's state after this result, persisted so a restart resumes it.
    pub verdicts: Verdicts,
}

/// A state change on its way to the writer (never dropped).
#[derive(Debug)]
pub struct StateChange {
    pub probe_id: i64,
    pub transition: Transition,
    pub verdicts: Verdicts,
    /// What the change does to the probe's incident (open it with its first page, or start
    /// its resolve hold), decided above the store when it happened.
    pub page: Option<crate::paging::Page>,
}

/// Counters the writer keeps, read by `/metrics` and the status API.
#[derive(Debug, Default)]
pub struct StoreStats {
    pub written: AtomicU64,
    pub dropped: AtomicU64,
    pub batches: AtomicU64,
    pub write_errors: AtomicU64,
    /// Consecutive failed commits (0 when the last one succeeded).
    pub failing_streak: AtomicU64,
    /// When the current run of failed commits began, unix ms (0 when commits work).
    pub failing_since: AtomicI64,
    /// Results taken off the queue and not yet written (a batch, or the memory buffer while
    /// commits fail).
    pub buffered: AtomicU64,
    pub last_error: Mutex<Option<String>>,
}

/// Handle to the store, cheap to clone.
#[derive(Clone)]
pub struct Store {
    read: SqlitePool,
    write: SqlitePool,
    results: mpsc::Sender<Record>,
    changes: mpsc::UnboundedSender<StateChange>,
    pub stats: Arc<StoreStats>,
    queue_capacity: usize,
    /// Woken after a commit that queued alerts, so the dispatcher sends at once.
    pub alerts_queued: Arc<tokio::sync::Notify>,
    /// The database file as opened, to tell when it is deleted or replaced under us.
    file: Arc<FileId>,
    /// Drawn once with the schema (`meta.store_id`); part of every dedup key.
    pub id: Arc<str>,
}

/// Which file the store opened: its path, device and inode.
#[derive(Debug)]
struct FileId {
    path: std::path::PathBuf,
    dev: u64,
    ino: u64,
    /// Set once the file was found gone, so the error is logged once.
    gone: std::sync::atomic::AtomicBool,
}

impl FileId {
    fn of(path: &Path) -> std::io::Result<FileId> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path)?;
        Ok(FileId {
            path: path.to_path_buf(),
            dev: m.dev(),
            ino: m.ino(),
            gone: Default::default(),
        })
    }

    /// `None` while the path still names the file that was opened; else what happened to it.
    fn problem(&self) -> Option<String> {
        use std::os::unix::fs::MetadataExt;
        let p = self.path.display();
        let what = match std::fs::metadata(&self.path) {
            Ok(m) if (m.dev(), m.ino()) == (self.dev, self.ino) => return None,
            Ok(_) => format!("{p} was replaced by another file"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => format!("{p} was deleted"),
            Err(e) => format!("{p} cannot be looked at: {}", e.kind()),
        };
        Some(format!(
            "{what} while open: results go to a file nothing will read, and a restart \
             starts from an empty database; restore the file or restart probed"
        ))
    }
}

/// A probe's persisted state, read at start to resume.
#[derive(Debug, Clone)]
pub struct SavedProbe {
    pub id: i64,
    pub verdicts: Verdicts,
    pub last: Option<LastResult>,
}

/// The latest result of a probe.
#[derive(Debug, Clone, PartialEq)]
pub struct LastResult {
    pub at: i64,
    pub ok: bool,
    pub duration_us: i64,
    pub error: Option<String>,
    pub status_code: Option<u16>,
}

/// A stored result, as the API returns it.
#[derive(Debug, Clone, Serialize)]
pub struct ResultRow {
    /// RFC 3339 time of the run.
    pub at: String,
    pub at_ms: i64,
    pub ok: bool,
    pub latency_ms: f64,
    pub status_code: Option<i64>,
    pub error: Option<String>,
    pub phases: Option<serde_json::Value>,
    pub ip: Option<String>,
    pub cert_expiry: Option<i64>,
    pub size: Option<i64>,
}

/// Runs per hour for one probe (from `rollups_hourly`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HourRollup {
    pub hour: i64,
    pub runs: u64,
    pub ok: u64,
}

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

impl Store {
    /// Opens (creating if needed) `data_dir/probed.db` and applies migrations.
    pub async fn open(data_dir: &Path, queue: usize) -> Result<(Store, Writer), StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
            path: data_dir.display().to_string(),
            source,
        })?;
        let file = data_dir.join("probed.db");
        let path = file.display().to_string();
        let opts = SqliteConnectOptions::new()
            .filename(&file)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .pragma("temp_store", "memory");
        // One connection for writes: SQLite has one writer anyway, and this makes the
        // writer task and the few other writes (probe registration, retention) take turns.
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            // A connection must come back with no transaction open. After a failed COMMIT
            // (disk full) SQLite and sqlx can disagree on whether one is: sqlx then turns every
            // later BEGIN into a SAVEPOINT inside a transaction that never commits, and writes
            // "succeed" without ever reaching the file. Such a connection is closed (which
            // rolls back) and the pool opens a fresh one.
            .after_release(|conn, _| {
                Box::pin(async move {
                    use sqlx::Connection;
                    let clean = !conn.is_in_transaction();
                    if !clean {
                        tracing::debug!(
                            "store connection left inside a transaction after a failure; reopening it"
                        );
                    }
                    Ok(clean)
                })
            })
            .connect_with(opts.clone())
            .await
            .map_err(|source| StoreError::Open {
                path: path.clone(),
                source,
            })?;
        sqlx::migrate!()
            .run(&write)
            .await
            .map_err(|source| StoreError::Migrate {
                path: path.clone(),
                source,
            })?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts.pragma("query_only", "true"))
            .await
            .map_err(|source| StoreError::Open {
                path: path.clone(),
                source,
            })?;
        let id: String = sqlx::query_scalar("SELECT value FROM meta WHERE key = 'store_id'")
            .fetch_one(&write)
            .await
            .map_err(|source| StoreError::Open {
                path: path.clone(),
                source,
            })?;
        let file_id = FileId::of(&file).map_err(|source| StoreError::DataDir {
            path: path.clone(),
            source,
        })?;
        let queue = queue.max(1);
        let (rtx, rrx) = mpsc::channel(queue);
        let (ctx, crx) = mpsc::unbounded_channel();
        let stats = Arc::new(StoreStats::default());
        let alerts_queued = Arc::new(tokio::sync::Notify::new());
        Ok((
            Store {
                read,
                write: write.clone(),
                results: rtx,
                changes: ctx,
                stats: stats.clone(),
                queue_capacity: queue,
                alerts_queued: alerts_queued.clone(),
                file: Arc::new(file_id),
                id: id.into(),
            },
            Writer {
                write,
                results: rrx,
                changes: crx,
                stats,
                alerts_queued,
                buffer: MAX_BATCH * 16,
                failover: None,
            },
        ))
    }

    /// `None` while `data_dir/probed.db` is still the file the store opened; else why not
    /// (deleted or replaced under the daemon: SQLite goes on writing to the unlinked file).
    /// One `stat`; the first time it fails is logged as an error.
    pub fn file_problem(&self) -> Option<String> {
        let p = self.file.problem()?;
        if !self.file.gone.swap(true, Ordering::Relaxed) {
            tracing::error!(problem = %p, "store file gone");
        }
        Some(p)
    }

    /// Queues a result for the writer without waiting. When the queue is full the result is
    /// dropped and counted; returns false then.
    pub fn record(&self, r: Record) -> bool {
        match self.results.try_send(r) {
            Ok(()) => true,
            Err(_) => {
                let n = self.stats.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                if n.is_power_of_two() {
                    tracing::warn!(
                        dropped = n,
                        "store queue full: result dropped (the writer is behind or failing)"
                    );
                }
                false
            }
        }
    }

    /// Queues a state change. Never dropped while the writer runs.
    pub fn state_change(&self, c: StateChange) {
        if self.changes.send(c).is_err() {
            tracing::error!("store writer has stopped: a state change was not persisted");
        }
    }

    /// Results waiting for the writer.
    pub fn queue_depth(&self) -> usize {
        self.queue_capacity - self.results.capacity()
    }

    /// Makes sure every probe has a row; returns each one's id and saved state.
    pub async fn register(
        &self,
        probes: &[(String, &'static str)],
    ) -> Result<HashMap<String, SavedProbe>, StoreError> {
        let mut tx = self.write.begin().await?;
        for chunk in probes.chunks(400) {
            let mut q: QueryBuilder<Sqlite> = QueryBuilder::new("INSERT INTO probes (name, kind) ");
            q.push_values(chunk, |mut b, (name, kind)| {
                b.push_bind(name.clone()).push_bind(*kind);
            });
            q.push(" ON CONFLICT(name) DO UPDATE SET kind = excluded.kind");
            q.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        let rows = sqlx::query(
            "SELECT id, name, state, state_since, consecutive_failures, consecutive_successes, \
             recent, last_checked_at, last_ok, last_duration_us, last_error FROM probes",
        )
        .fetch_all(&self.write)
        .await?;
        let mut out = HashMap::with_capacity(rows.len());
        for r in rows {
            let name: String = r.get("name");
            let last = r
                .get::<Option<i64>, _>("last_checked_at")
                .map(|at| LastResult {
                    at,
                    ok: r.get::<Option<i64>, _>("last_ok") == Some(1),
                    duration_us: r.get::<Option<i64>, _>("last_duration_us").unwrap_or(0),
                    error: r.get("last_error"),
                    status_code: None,
                });
            out.insert(
                name,
                SavedProbe {
                    id: r.get("id"),
                    verdicts: Verdicts {
                        state: State::parse(r.get("state")).unwrap_or(State::Pending),
                        since: r.get("state_since"),
                        consecutive_failures: r.get::<i64, _>("consecutive_failures") as u32,
                        consecutive_successes: r.get::<i64, _>("consecutive_successes") as u32,
                        recent: r.get::<i64, _>("recent") as u64,
                    },
                    last,
                },
            );
        }
        Ok(out)
    }

    /// Hourly rollups since `since_ms`, by probe id (oldest first).
    pub async fn rollups_since(
        &self,
        since_ms: i64,
    ) -> Result<HashMap<i64, Vec<HourRollup>>, StoreError> {
        let rows = sqlx::query(
            "SELECT probe_id, hour, runs, ok FROM rollups_hourly WHERE hour >= ? \
             ORDER BY probe_id, hour",
        )
        .bind(since_ms - since_ms.rem_euclid(HOUR_MS))
        .fetch_all(&self.read)
        .await?;
        let mut out: HashMap<i64, Vec<HourRollup>> = HashMap::new();
        for r in rows {
            out.entry(r.get("probe_id")).or_default().push(HourRollup {
                hour: r.get("hour"),
                runs: r.get::<i64, _>("runs") as u64,
                ok: r.get::<i64, _>("ok") as u64,
            });
        }
        Ok(out)
    }

    /// The runs an objective tracker replays after a restart (oldest first): the results
    /// since `since_ms` that came after the probe last recovered from `down` (its windows
    /// start afresh then); none while it is down.
    pub async fn slo_history(
        &self,
        probe_id: i64,
        since_ms: i64,
    ) -> Result<Vec<(i64, bool, Duration)>, StoreError> {
        let row = sqlx::query(
            "SELECT (SELECT max(at) FROM state_changes WHERE probe_id = ?1 AND to_state = 'down') \
             AS went, (SELECT max(at) FROM state_changes WHERE probe_id = ?1 AND from_state = 'down') \
             AS back",
        )
        .bind(probe_id)
        .fetch_one(&self.read)
        .await?;
        let (went, back): (Option<i64>, Option<i64>) = (row.get("went"), row.get("back"));
        let from = match (went, back) {
            (Some(w), b) if b.is_none_or(|b| b < w) => return Ok(Vec::new()),
            (_, Some(b)) => since_ms.max(b + 1),
            _ => since_ms,
        };
        let rows = sqlx::query(
            "SELECT at, ok, duration_us FROM results WHERE probe_id = ? AND at >= ? ORDER BY at",
        )
        .bind(probe_id)
        .bind(from)
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                (
                    r.get::<i64, _>("at"),
                    r.get::<i64, _>("ok") != 0,
                    Duration::from_micros(r.get::<i64, _>("duration_us").max(0) as u64),
                )
            })
            .collect())
    }

    /// The newest results of a probe (newest first), at most `limit`, before `before_ms`.
    pub async fn results(
        &self,
        probe: &str,
        limit: u32,
        before_ms: Option<i64>,
    ) -> Result<Option<Vec<ResultRow>>, StoreError> {
        let Some(id) = sqlx::query_scalar::<_, i64>("SELECT id FROM probes WHERE name = ?")
            .bind(probe)
            .fetch_optional(&self.read)
            .await?
        else {
            return Ok(None);
        };
        let rows = sqlx::query(
            "SELECT at, ok, duration_us, status_code, error, phases, ip, cert_expiry, size \
             FROM results WHERE probe_id = ? AND at < ? ORDER BY at DESC LIMIT ?",
        )
        .bind(id)
        .bind(before_ms.unwrap_or(i64::MAX))
        .bind(limit.min(10_000) as i64)
        .fetch_all(&self.read)
        .await?;
        Ok(Some(
            rows.into_iter()
                .map(|r| {
                    let at: i64 = r.get("at");
                    ResultRow {
                        at: crate::time::rfc3339(at),
                        at_ms: at,
                        ok: r.get::<i64, _>("ok") != 0,
                        latency_ms: r.get::<i64, _>("duration_us") as f64 / 1000.0,
                        status_code: r.get("status_code"),
                        error: r.get("error"),
                        phases: r
                            .get::<Option<String>, _>("phases")
                            .and_then(|p| serde_json::from_str(&p).ok()),
                        ip: r.get("ip"),
                        cert_expiry: r.get("cert_expiry"),
                        size: r.get("size"),
                    }
                })
                .collect(),
        ))
    }

    /// Deletes raw results older than `keep`; rollups are kept 400 days. Deletes probe by
    /// probe in bounded chunks, so the writer is never blocked for long.
    pub async fn prune(&self, keep: Duration, now_ms: i64) -> Result<u64, StoreError> {
        let cutoff = now_ms - keep.as_millis() as i64;
        let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM probes")
            .fetch_all(&self.read)
            .await?;
        let mut deleted = 0;
        for id in ids {
            loop {
                let n = sqlx::query(
                    "DELETE FROM results WHERE probe_id = ?1 AND at IN \
                     (SELECT at FROM results WHERE probe_id = ?1 AND at < ?2 LIMIT 5000)",
                )
                .bind(id)
                .bind(cutoff)
                .execute(&self.write)
                .await?
                .rows_affected();
                deleted += n;
                if n < 5000 {
                    break;
                }
            }
        }
        sqlx::query("DELETE FROM rollups_hourly WHERE hour < ?")
            .bind(now_ms - 400 * DAY_MS)
            .execute(&self.write)
            .await?;
        sqlx::query("DELETE FROM rollups_daily WHERE day < ?")
            .bind(now_ms - 400 * DAY_MS)
            .execute(&self.write)
            .await?;
        // Delivery records of settled messages: 90 days (incidents themselves are kept).
        let settled = now_ms - 90 * 24 * HOUR_MS;
        sqlx::query(
            "DELETE FROM attempts WHERE at < ? AND outbox_id IN \
             (SELECT id FROM outbox WHERE status != 'pending')",
        )
        .bind(settled)
        .execute(&self.write)
        .await?;
        sqlx::query("DELETE FROM outbox WHERE status != 'pending' AND created_at < ?")
            .bind(settled)
            .execute(&self.write)
            .await?;
        Ok(deleted)
    }

    /// Makes sure each push probe has a ping row (its clock starts now if new) and returns
    /// every push probe's ping state by probe id.
    pub async fn push_states(
        &self,
        probe_ids: &[i64],
        now_ms: i64,
    ) -> Result<HashMap<i64, crate::probe::push::PushState>, StoreError> {
        for id in probe_ids {
            sqlx::query("INSERT OR IGNORE INTO pushes (probe_id, first_seen_at) VALUES (?, ?)")
                .bind(id)
                .bind(now_ms)
                .execute(&self.write)
                .await?;
        }
        let rows = sqlx::query(
            "SELECT probe_id, first_seen_at, last_ping_at, last_kind, exit_status, \
             last_success_at, started_at, pings FROM pushes",
        )
        .fetch_all(&self.write)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.get("probe_id"), push_state(&r)))
            .collect())
    }

    /// Records one ping (`ok`, `fail` or `start`) and returns the new state.
    pub async fn push_ping(
        &self,
        probe_id: i64,
        kind: &str,
        exit_status: Option<i64>,
        now_ms: i64,
    ) -> Result<crate::probe::push::PushState, StoreError> {
        let row = sqlx::query(
            "INSERT INTO pushes (probe_id, first_seen_at, last_ping_at, last_kind, exit_status, \
             last_success_at, started_at, pings) \
             VALUES (?1, ?2, ?2, ?3, ?4, CASE WHEN ?3 = 'ok' THEN ?2 END, CASE WHEN ?3 = 'start' THEN ?2 END, 1) \
             ON CONFLICT(probe_id) DO UPDATE SET last_ping_at = ?2, last_kind = ?3, exit_status = ?4, \
             last_success_at = CASE WHEN ?3 = 'ok' THEN ?2 ELSE last_success_at END, \
             started_at = CASE WHEN ?3 = 'start' THEN ?2 ELSE NULL END, pings = pings + 1 \
             RETURNING probe_id, first_seen_at, last_ping_at, last_kind, exit_status, \
             last_success_at, started_at, pings",
        )
        .bind(probe_id)
        .bind(now_ms)
        .bind(kind)
        .bind(exit_status)
        .fetch_one(&self.write)
        .await?;
        Ok(push_state(&row))
    }

    /// Closes both pools (after the writer has finished).
    pub async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }
}

fn push_state(r: &sqlx::sqlite::SqliteRow) -> crate::probe::push::PushState {
    crate::probe::push::PushState {
        first_seen_at: r.get("first_seen_at"),
        last_ping_at: r.get("last_ping_at"),
        last_kind: r.get("last_kind"),
        exit_status: r.get("exit_status"),
        last_success_at: r.get("last_success_at"),
        started_at: r.get("started_at"),
        pings: r.get("pings"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paging::Page;
    use sqlx::Connection;
    use tokio_util::sync::CancellationToken;

    fn rec(id: i64, at: i64, ok: bool) -> Record {
        Record {
            probe_id: id,
            at,
            obs: Observation {
                ok,
                error: (!ok).then(|| "status 503, expected 2xx".to_owned()),
                duration: Duration::from_micros(1500),
                phases: vec![("connect", Duration::from_micros(300))],
                status_code: Some(if ok { 200 } else { 503 }),
                ..Default::default()
            },
            verdicts: Verdicts {
                state: if ok { State::Up } else { State::Down },
                since: Some(at),
                consecutive_failures: (!ok) as u32,
                consecutive_successes: ok as u32,
                recent: (!ok) as u64,
            },
        }
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_never_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let (store, writer) = Store::open(dir.path(), 2).await.unwrap();
        let ids = store.register(&[("a".into(), "http")]).await.unwrap();
        let id = ids["a"].id;
        // The writer is not running: the queue holds 2, the rest are dropped and counted.
        let accepted: Vec<bool> = (0..5)
            .map(|i| store.record(rec(id, 1000 + i, true)))
            .collect();
        assert_eq!(accepted, [true, true, false, false, false]);
        assert_eq!(store.stats.dropped.load(Ordering::Relaxed), 3);
        assert_eq!(store.queue_depth(), 2);
        // Once it runs, what was queued is written, and shutdown drains it.
        let stop = CancellationToken::new();
        stop.cancel();
        writer.run(stop, Duration::from_secs(1)).await;
        assert_eq!(store.stats.written.load(Ordering::Relaxed), 2);
        let rows = store.results("a", 10, None).await.unwrap().unwrap();
        assert_eq!(rows.len(), 2);
    }

    #[tokio::test]
    async fn results_state_rollups_retention_and_resume() {
        let dir = tempfile::tempdir().unwrap();
        let (store, writer) = Store::open(dir.path(), 100).await.unwrap();
        let ids = store
            .register(&[("a".into(), "http"), ("b".into(), "http")])
            .await
            .unwrap();
        let (a, b) = (ids["a"].id, ids["b"].id);
        assert_eq!(ids["a"].verdicts.state, State::Pending);
        let now = 1_000 * HOUR_MS;
        let day = 24 * HOUR_MS;
        for (i, at) in [now - 10 * day, now - 2 * HOUR_MS, now - 1000, now]
            .iter()
            .enumerate()
        {
            store.record(rec(a, *at, i != 2));
        }
        store.record(rec(b, now, false));
        store.state_change(StateChange {
            probe_id: b,
            transition: Transition {
                from: State::Pending,
                to: State::Down,
                at: now,
                reason: Some("status 503, expected 2xx".into()),
            },
            verdicts: rec(b, now, false).verdicts,
            page: None,
        });
        let stop = CancellationToken::new();
        stop.cancel();
        writer.run(stop, Duration::from_secs(1)).await;

        let rows = store.results("a", 10, None).await.unwrap().unwrap();
        let ats: Vec<i64> = rows.iter().map(|r| r.at_ms).collect();
        assert_eq!(
            ats,
            [now, now - 1000, now - 2 * HOUR_MS, now - 10 * day],
            "newest first"
        );
        assert_eq!(rows[1].error.as_deref(), Some("status 503, expected 2xx"));
        assert_eq!(rows[0].phases, Some(serde_json::json!({"connect": 0.3})));
        assert_eq!(rows[0].latency_ms, 1.5);
        assert!(store.results("nope", 10, None).await.unwrap().is_none());
        let page = store
            .results("a", 2, Some(now - 1000))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(page.len(), 2, "paging back with before=");

        let roll = store.rollups_since(now - day).await.unwrap();
        let a_runs: u64 = roll[&a].iter().map(|h| h.runs).sum();
        let a_ok: u64 = roll[&a].iter().map(|h| h.ok).sum();
        assert_eq!((a_runs, a_ok), (3, 2), "{:?}", roll[&a]);

        // Retention: 7 days keeps all but the 10-day-old result.
        assert_eq!(
            store
                .prune(Duration::from_secs(7 * 86400), now)
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            store.results("a", 10, None).await.unwrap().unwrap().len(),
            3
        );

        // A restart resumes each probe's state from the latest result or change.
        store.close().await;
        let (store, _writer) = Store::open(dir.path(), 100).await.unwrap();
        let saved = store.register(&[("a".into(), "http")]).await.unwrap();
        assert_eq!(saved["a"].verdicts.state, State::Up);
        assert_eq!(saved["a"].last.as_ref().unwrap().at, now);
        assert_eq!(saved["b"].verdicts.state, State::Down);
        assert_eq!(
            saved["b"].last.as_ref().unwrap().error.as_deref(),
            Some("status 503, expected 2xx")
        );
    }

    /// A plan paging `pager` for probe `probe`, resolving at once.
    fn page_plan(probe: &str) -> crate::alert::plan::PagePlan {
        crate::alert::plan::PagePlan {
            alert: crate::alert::Alert {
                incident: 0,
                dedup_key: String::new(),
                probe: probe.into(),
                ..crate::alert::testing::alert(crate::alert::Event::Trigger)
            },
            notify: vec!["pager".into()],
            fallback: vec![],
            muted: None,
            send_resolve: true,
            resolve_hold_ms: 0,
            paged_from_memory: false,
        }
    }

    /// Degraded opens an incident and queues its page; down then continues it (no second
    /// page); recovering to degraded keeps it open; up starts its resolve. The runs an
    /// objective tracker replays start after the last recovery from down.
    #[tokio::test]
    async fn degraded_opens_one_incident_through_down_and_back_and_replays_after_recovery() {
        let dir = tempfile::tempdir().unwrap();
        let (store, writer) = Store::open(dir.path(), 100).await.unwrap();
        let id = store.register(&[("a".into(), "http")]).await.unwrap()["a"].id;
        let stop = CancellationToken::new();
        let run = tokio::spawn(writer.run(stop.clone(), Duration::from_millis(10)));
        let mut plan = page_plan("a");
        plan.alert.state = "degraded".into();
        plan.alert.reason = Some("burning".into());
        let change = |from, to, at| {
            let transition = Transition {
                from,
                to,
                at,
                reason: Some("burning".into()),
            };
            StateChange {
                probe_id: id,
                page: crate::alert::plan::page_for(&transition, plan.clone()),
                transition,
                verdicts: rec(id, at, true).verdicts,
            }
        };
        let incidents = async || store.incidents(false, 10).await.unwrap();
        let settle = async || {
            let n = store.stats.written.load(Ordering::Relaxed);
            until("a commit", || {
                store.queue_depth() == 0 && store.stats.written.load(Ordering::Relaxed) > n
            })
            .await;
        };
        for (i, at) in (1_000..1_010).enumerate() {
            store.record(rec(id, at, i != 3));
        }
        store.state_change(change(State::Up, State::Degraded, 1_010));
        store.record(rec(id, 1_010, true));
        settle().await;
        let open = incidents().await;
        assert_eq!(open.len(), 1, "{open:?}");
        assert_eq!(open[0].reason.as_deref(), Some("burning"));
        assert_eq!(open[0].deliveries.len(), 1, "{open:?}");
        // Every run so far is replayed (no down yet).
        assert_eq!(store.slo_history(id, 0).await.unwrap().len(), 11);

        store.state_change(change(State::Degraded, State::Down, 1_020));
        store.record(rec(id, 1_020, false));
        settle().await;
        // Down: nothing to replay until it recovers.
        assert!(store.slo_history(id, 0).await.unwrap().is_empty());
        store.state_change(change(State::Down, State::Degraded, 1_030));
        store.record(rec(id, 1_030, true));
        store.record(rec(id, 1_031, true));
        settle().await;
        let still = incidents().await;
        assert_eq!(still.len(), 1, "one incident throughout: {still:?}");
        assert_eq!(still[0].id, open[0].id);
        assert_eq!(still[0].deliveries.len(), 1, "no second page: {still:?}");
        assert!(still[0].recovered_at.is_none());
        // After the recovery at 1 030: only the run after it.
        let replay = store.slo_history(id, 0).await.unwrap();
        assert_eq!(
            replay.iter().map(|r| r.0).collect::<Vec<_>>(),
            [1_031],
            "{replay:?}"
        );

        store.state_change(change(State::Degraded, State::Up, 1_040));
        store.record(rec(id, 1_040, true));
        settle().await;
        let resolving = incidents().await;
        assert!(resolving[0].recovered_at.is_some(), "{resolving:?}");
        stop.cancel();
        run.await.unwrap();
    }

    /// Records what the writer hands over while commits fail.
    #[derive(Default)]
    struct Handed {
        unwritten: Mutex<Vec<i64>>,
        recovered: AtomicU64,
    }

    impl Failover for Handed {
        fn unwritten(&self, change: &mut StateChange) {
            self.unwritten.lock().unwrap().push(change.probe_id);
            if let Some(Page::Open(p)) = change.page.as_mut() {
                p.paged_from_memory = true;
                p.alert.dedup_key = "paged-from-memory".into();
            }
        }
        fn recovered(&self) {
            self.recovered.fetch_add(1, Ordering::Relaxed);
        }
    }

    async fn until(what: &str, mut cond: impl FnMut() -> bool) {
        let t0 = std::time::Instant::now();
        while !cond() {
            assert!(t0.elapsed() < Duration::from_secs(30), "timed out: {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Another process holds the write lock: the writer keeps taking results into its memory
    /// buffer (dropping the oldest past the bound, counted), hands the paging change to the
    /// failover at once, and writes everything it kept once the lock is gone; the incident,
    /// once written, records the page as sent from memory.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_locked_store_buffers_to_the_bound_pages_from_memory_and_catches_up() {
        let dir = tempfile::tempdir().unwrap();
        let (store, writer) = Store::open(dir.path(), 20_000).await.unwrap();
        let id = store.register(&[("a".into(), "http")]).await.unwrap()["a"].id;
        // The lock, from a separate connection as another process would hold it.
        let mut other = sqlx::SqliteConnection::connect_with(
            &SqliteConnectOptions::new().filename(dir.path().join("probed.db")),
        )
        .await
        .unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut other)
            .await
            .unwrap();
        let handed = Arc::new(Handed::default());
        let stop = CancellationToken::new();
        let run = tokio::spawn(
            writer
                .with_buffer(MAX_BATCH)
                .with_failover(handed.clone())
                .run(stop.clone(), Duration::from_secs(5)),
        );
        let total = MAX_BATCH as i64 + 1000;
        for i in 0..total {
            assert!(
                store.record(rec(id, 1_000 + i, true)),
                "the queue never fills"
            );
        }
        store.state_change(StateChange {
            probe_id: id,
            transition: Transition {
                from: State::Up,
                to: State::Down,
                at: 1_000 + total,
                reason: Some("status 503".into()),
            },
            verdicts: rec(id, 1_000 + total, false).verdicts,
            page: Some(Page::Open(Box::new(page_plan("a")))),
        });
        let st = store.stats.clone();
        until("the commit to fail and the buffer to fill", || {
            st.failing_streak.load(Ordering::Relaxed) > 0
                && st.buffered.load(Ordering::Relaxed) == MAX_BATCH as u64
                && store.queue_depth() == 0
        })
        .await;
        assert_eq!(
            st.dropped.load(Ordering::Relaxed),
            1000,
            "past the bound, counted"
        );
        assert_eq!(st.written.load(Ordering::Relaxed), 0);
        assert!(st.failing_since.load(Ordering::Relaxed) > 0);
        assert!(
            st.last_error
                .lock()
                .unwrap()
                .as_deref()
                .unwrap_or("")
                .contains("locked"),
            "{:?}",
            st.last_error.lock().unwrap()
        );
        assert_eq!(*handed.unwritten.lock().unwrap(), [id], "handed over once");

        sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
        until("the buffer to be written", || {
            st.written.load(Ordering::Relaxed) == MAX_BATCH as u64
        })
        .await;
        assert_eq!(st.failing_streak.load(Ordering::Relaxed), 0);
        assert_eq!(st.buffered.load(Ordering::Relaxed), 0);
        assert_eq!(handed.recovered.load(Ordering::Relaxed), 1);
        stop.cancel();
        run.await.unwrap();
        // The newest were kept: the oldest 1000 went.
        let oldest: i64 = sqlx::query_scalar("SELECT min(at) FROM results")
            .fetch_one(&store.read)
            .await
            .unwrap();
        assert_eq!(oldest, 2_000);
        let (status, note, key): (String, String, String) = sqlx::query_as(
            "SELECT o.status, o.last_error, json_extract(i.alert, '$.dedup_key') \
             FROM outbox o JOIN incidents i ON i.id = o.incident_id",
        )
        .fetch_one(&store.read)
        .await
        .unwrap();
        assert_eq!(status, "delivered", "recorded as sent, not sent again");
        assert!(note.contains("from memory"), "{note}");
        assert_eq!(
            key, "paged-from-memory",
            "the incident keeps the page's key"
        );
    }

    #[tokio::test]
    async fn an_unwritable_data_dir_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, "x").unwrap();
        let err = Store::open(&file.join("data"), 10).await.err().unwrap();
        assert!(
            err.to_string().starts_with("cannot create data directory"),
            "{err}"
        );
    }
}
