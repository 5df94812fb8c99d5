//! The store: probed's own database, holding results, probe state, hourly and daily rollups,
//! state changes, incidents, the outbox and its delivery attempts, silences, push pings.
//! Every query of it is in this module, and nowhere else.
//!
//! Two backends, the same schema and meaning: one SQLite file (`data_dir/probed.db`, WAL),
//! the embedded default, opened by [`Store::open`]; or a PostgreSQL database that several
//! daemons may share (`store: { url: postgres://... }`), opened by [`Store::open_postgres`].
//! The queries are written once (`sql/`) and compiled for each (`sqlite.rs`,
//! `postgres.rs`, which also open them and hold their migrations); the [`Store`] handle
//! hands every call to the one it was opened on. Besides the queries of this file (probe
//! registration, results and rollups read back, push pings, retention), the topics have
//! files of their own: `writer.rs` (the writer task), `incidents.rs`, `outbox.rs`,
//! `silences.rs`, `views.rs` (the public views' reads), `clock.rs` (timers shifted after a
//! clock step).
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
use tokio::sync::mpsc;

use crate::evaluate::{State, Transition, Verdicts};
use crate::probe::Observation;

/// Runs `$e` with `$db` bound to the queries of `$backend` (a `&Backend`: the same code,
/// compiled for each).
macro_rules! on_db {
    ($backend:expr, $db:ident => $e:expr) => {
        match $backend {
            $crate::store::Backend::Sqlite($db) => $e,
            $crate::store::Backend::Postgres($db) => $e,
        }
    };
}

mod clock;
mod incidents;
mod outbox;
pub mod postgres;
pub mod silences;
pub mod sqlite;
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
    /// `path` is the file, or the database URL without its password.
    #[error("cannot open {path}: {source}")]
    Open { path: String, source: sqlx::Error },
    #[error("cannot migrate {path}: {source}")]
    Migrate {
        path: String,
        source: sqlx::migrate::MigrateError,
    },
    #[error("store query failed: {0}")]
    Query(#[from] sqlx::Error),
    /// It did not answer in time (a cut network leaves sockets open for minutes).
    #[error("{0}")]
    Unanswered(String),
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
    /// Keep the result itself (a row of `results`, rollups). `false` for the daemon's own
    /// `location` probes, which run every 2 s: only their verdict is kept.
    pub keep: bool,
}

/// A state change on its way to the writer (never dropped): this location's own verdict,
/// the probe's state (the quorum of the locations), or both.
#[derive(Debug)]
pub struct StateChange {
    pub probe_id: i64,
    /// This location's verdicts after the change, persisted so a restart resumes them.
    pub verdicts: Option<Verdicts>,
    /// This location's own verdict changed: recorded, never pages by itself.
    pub local: Option<Transition>,
    /// The probe's state changed.
    pub overall: Option<Overall>,
}

/// A change of the probe's own state, the quorum of its locations. Applied only if the
/// store still holds `transition.from`: when several daemons see the same change, whoever
/// writes first makes it (and opens the incident), the others find it made.
#[derive(Debug)]
pub struct Overall {
    pub transition: Transition,
    /// What the change does to the probe's incident (open it with its first page, or start
    /// its resolve hold), decided above the store when it happened.
    pub page: Option<crate::paging::Page>,
}

impl StateChange {
    /// The change's page, if it opens or recovers an incident.
    pub fn page_mut(&mut self) -> Option<&mut crate::paging::Page> {
        self.overall.as_mut().and_then(|o| o.page.as_mut())
    }
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

/// The backend a store was opened on, with its pools.
#[derive(Clone)]
pub(crate) enum Backend {
    Sqlite(Arc<sqlite::sql::Db>),
    Postgres(Arc<postgres::sql::Db>),
}

/// Handle to the store, cheap to clone.
#[derive(Clone)]
pub struct Store {
    db: Backend,
    results: mpsc::Sender<Record>,
    changes: mpsc::UnboundedSender<StateChange>,
    pub stats: Arc<StoreStats>,
    queue_capacity: usize,
    /// Woken after a commit that queued alerts, so the dispatcher sends at once.
    pub alerts_queued: Arc<tokio::sync::Notify>,
    /// The SQLite file as opened, to tell when it is deleted or replaced under us.
    file: Option<Arc<sqlite::FileId>>,
    /// Drawn once with the schema (`meta.store_id`); part of every dedup key.
    pub id: Arc<str>,
    /// This daemon's location's id ([`Store::set_location`]; 0, the first location, until
    /// set), shared with the writer, which tags results with it.
    loc: Arc<AtomicI64>,
}

/// A probe's persisted state, read at start to resume.
#[derive(Debug, Clone)]
pub struct SavedProbe {
    pub id: i64,
    /// This location's verdicts.
    pub verdicts: Verdicts,
    /// The probe's own state (the quorum's) and since when.
    pub overall: (State, Option<i64>),
    /// This location's latest result.
    pub last: Option<LastResult>,
}

/// A location's latest verdict on a probe, as another location reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteVote {
    pub probe_id: i64,
    pub location: String,
    pub state: State,
    pub checked_at: Option<i64>,
    pub error: Option<String>,
}

/// A daemon writing to this store, as it last said it was alive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DaemonRow {
    pub instance: String,
    pub location: String,
    pub started_at: i64,
    pub seen_at: i64,
    /// Why it cannot see, while it is blind.
    pub blind: Option<String>,
    pub version: String,
}

/// The id `state_changes.loc` gives a change of the probe's own state (the quorum's).
pub const OVERALL: i64 = -1;

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
        let (db, file) = sqlite::open(data_dir).await?;
        Store::with(Backend::Sqlite(Arc::new(db)), Some(Arc::new(file)), queue).await
    }

    /// Connects to the PostgreSQL database at `url` (`postgres://user:password@host/db`) and
    /// applies migrations; several daemons may share it.
    pub async fn open_postgres(url: &str, queue: usize) -> Result<(Store, Writer), StoreError> {
        let db = postgres::open(url).await?;
        Store::with(Backend::Postgres(Arc::new(db)), None, queue).await
    }

    async fn with(
        db: Backend,
        file: Option<Arc<sqlite::FileId>>,
        queue: usize,
    ) -> Result<(Store, Writer), StoreError> {
        let id = on_db!(&db, d => d.store_id().await)?;
        let queue = queue.max(1);
        let (rtx, rrx) = mpsc::channel(queue);
        let (ctx, crx) = mpsc::unbounded_channel();
        let stats = Arc::new(StoreStats::default());
        let alerts_queued = Arc::new(tokio::sync::Notify::new());
        let loc = Arc::new(AtomicI64::new(0));
        Ok((
            Store {
                loc: loc.clone(),
                db: db.clone(),
                results: rtx,
                changes: ctx,
                stats: stats.clone(),
                queue_capacity: queue,
                alerts_queued: alerts_queued.clone(),
                file,
                id: id.into(),
            },
            Writer {
                db,
                loc,
                results: rrx,
                changes: crx,
                stats,
                alerts_queued,
                buffer: MAX_BATCH * 16,
                failover: None,
            },
        ))
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend(&self) -> &'static str {
        match self.db {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// `None` while `data_dir/probed.db` is still the file the store opened; else why not
    /// (deleted or replaced under the daemon: SQLite goes on writing to the unlinked file).
    /// One `stat`; the first time it fails is logged as an error. Always `None` on
    /// PostgreSQL.
    pub fn file_problem(&self) -> Option<String> {
        let file = self.file.as_ref()?;
        let p = file.problem()?;
        if !file.gone.swap(true, Ordering::Relaxed) {
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

    /// Says where this daemon stands: registers the location (the first ever gets id 0,
    /// which rows from before locations carry) and returns its id; results and verdicts are
    /// written under it from now on. A location new to the store starts its verdicts from
    /// the probes' states.
    pub async fn set_location(&self, name: &str) -> Result<i64, StoreError> {
        let id = on_db!(&self.db, db => db.location_id(name).await)?;
        self.loc.store(id, Ordering::Relaxed);
        Ok(id)
    }

    /// This daemon's location id.
    pub fn location(&self) -> i64 {
        self.loc.load(Ordering::Relaxed)
    }

    /// Makes sure every probe has a row; returns each one's id and saved state (this
    /// location's verdicts, the probe's own state).
    pub async fn register(
        &self,
        probes: &[(String, &'static str)],
    ) -> Result<HashMap<String, SavedProbe>, StoreError> {
        on_db!(&self.db, db => db.register(probes, self.location()).await)
    }

    /// The other locations' verdicts with a result since `since_ms`.
    pub async fn remote_votes(&self, since_ms: i64) -> Result<Vec<RemoteVote>, StoreError> {
        on_db!(&self.db, db => db.remote_votes(self.location(), since_ms).await)
    }

    /// The probes' own states (id, state, since) that changed since `since_ms`.
    pub async fn overall_changes(
        &self,
        since_ms: i64,
    ) -> Result<Vec<(i64, State, Option<i64>)>, StoreError> {
        on_db!(&self.db, db => db.overall_changes(since_ms).await)
    }

    /// Says this daemon is alive (and whether it is blind).
    pub async fn daemon_seen(&self, d: &DaemonRow) -> Result<(), StoreError> {
        on_db!(&self.db, db => db.daemon_seen(d).await)
    }

    /// Every daemon that ever wrote to this store, as it last said it was.
    pub async fn daemons(&self) -> Result<Vec<DaemonRow>, StoreError> {
        on_db!(&self.db, db => db.daemons().await)
    }

    /// Hourly rollups since `since_ms`, by probe id (oldest first).
    pub async fn rollups_since(
        &self,
        since_ms: i64,
    ) -> Result<HashMap<i64, Vec<HourRollup>>, StoreError> {
        on_db!(&self.db, db => db.rollups_since(since_ms).await)
    }

    /// The runs an objective tracker replays after a restart (oldest first): the results
    /// since `since_ms` that came after the probe last recovered from `down` (its windows
    /// start afresh then); none while it is down.
    pub async fn slo_history(
        &self,
        probe_id: i64,
        since_ms: i64,
    ) -> Result<Vec<(i64, bool, Duration)>, StoreError> {
        on_db!(&self.db, db => db.slo_history(probe_id, self.location(), since_ms).await)
    }

    /// The newest results of a probe (newest first), at most `limit`, before `before_ms`.
    pub async fn results(
        &self,
        probe: &str,
        limit: u32,
        before_ms: Option<i64>,
    ) -> Result<Option<Vec<ResultRow>>, StoreError> {
        on_db!(&self.db, db => db.results(probe, limit, before_ms).await)
    }

    /// Deletes raw results older than `keep`; rollups are kept 400 days, delivery records of
    /// settled messages 90. Deletes probe by probe in bounded chunks, so the writer is never
    /// blocked for long.
    pub async fn prune(&self, keep: Duration, now_ms: i64) -> Result<u64, StoreError> {
        on_db!(&self.db, db => db.prune(keep, now_ms).await)
    }

    /// Makes sure each push probe has a ping row (its clock starts now if new) and returns
    /// every push probe's ping state by probe id.
    pub async fn push_states(
        &self,
        probe_ids: &[i64],
        now_ms: i64,
    ) -> Result<HashMap<i64, crate::probe::push::PushState>, StoreError> {
        on_db!(&self.db, db => db.push_states(probe_ids, now_ms).await)
    }

    /// Records one ping (`ok`, `fail`, `start` or `log`) and returns the new state.
    pub async fn push_ping(
        &self,
        probe_id: i64,
        ping: &crate::probe::push::Ping,
        now_ms: i64,
    ) -> Result<crate::probe::push::PushState, StoreError> {
        on_db!(&self.db, db => db.push_ping(probe_id, ping, now_ms).await)
    }

    /// The last `limit` pings of the push probe `probe`, newest first (empty for any other).
    pub async fn recent_pings(
        &self,
        probe: &str,
        limit: u32,
    ) -> Result<Vec<crate::probe::push::PingRow>, StoreError> {
        on_db!(&self.db, db => db.recent_pings(probe, limit).await)
    }

    /// Closes the pools (after the writer has finished).
    pub async fn close(&self) {
        on_db!(&self.db, db => db.close().await)
    }

    /// Runs a statement as written, on the write pool (tests only).
    #[cfg(test)]
    pub(crate) async fn exec_raw(&self, sql: &str) {
        on_db!(&self.db, db => db.exec_raw(sql).await)
    }

    /// A query's rows, every column as an integer (tests only).
    #[cfg(test)]
    pub(crate) async fn ints_raw(&self, sql: &str) -> Vec<Vec<Option<i64>>> {
        on_db!(&self.db, db => db.ints_raw(sql).await)
    }

    /// A query's rows, every column as text (tests only).
    #[cfg(test)]
    pub(crate) async fn texts_raw(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        on_db!(&self.db, db => db.texts_raw(sql).await)
    }
}
