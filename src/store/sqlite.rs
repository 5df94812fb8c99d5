//! The SQLite backend: one file, `data_dir/probed.db`, in WAL mode; one write connection
//! (SQLite has one writer anyway, and the writer task and the few other writes take turns)
//! beside a read-only pool. Its schema is `migrations/sqlite/`. The queries are `sql/`,
//! compiled here with `Database = Sqlite`.

use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::StoreError;

/// The queries' database.
pub(crate) type Database = sqlx::Sqlite;
/// Whether the queries are compiled for PostgreSQL (no: SQLite).
const PG: bool = false;

/// The queries, compiled for SQLite.
// Loaded once per backend on purpose: that is how the queries are written once.
#[allow(clippy::duplicate_mod)]
#[path = "sql/mod.rs"]
pub(crate) mod sql;

/// Opens (creating if needed) `data_dir/probed.db` and applies migrations.
pub(super) async fn open(data_dir: &Path) -> Result<(sql::Db, FileId), StoreError> {
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
    // One connection for writes: SQLite has one writer anyway, and this makes the writer
    // task and the few other writes (probe registration, retention) take turns.
    let write = SqlitePoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        // A connection must come back with no transaction open. After a failed COMMIT (disk
        // full) SQLite and sqlx can disagree on whether one is: sqlx then turns every later
        // BEGIN into a SAVEPOINT inside a transaction that never commits, and writes
        // "succeed" without ever reaching the file. Such a connection is closed (which rolls
        // back) and the pool opens a fresh one.
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
    sqlx::migrate!("migrations/sqlite")
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
    let file_id = FileId::of(&file).map_err(|source| StoreError::DataDir {
        path: path.clone(),
        source,
    })?;
    Ok((sql::Db { read, write }, file_id))
}

/// Which file the store opened: its path, device and inode.
#[derive(Debug)]
pub(crate) struct FileId {
    path: std::path::PathBuf,
    dev: u64,
    ino: u64,
    /// Set once the file was found gone, so the error is logged once.
    pub(super) gone: std::sync::atomic::AtomicBool,
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
    pub(super) fn problem(&self) -> Option<String> {
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

/// A store of its own for one test: a file in a temporary folder, gone with the guard.
#[cfg(test)]
pub(crate) async fn test_store(queue: usize) -> (super::Store, super::Writer, TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let (store, writer) = super::Store::open(dir.path(), queue).await.unwrap();
    (store, writer, TestDb(dir))
}

/// Keeps a test's database until dropped.
#[cfg(test)]
pub(crate) struct TestDb(pub(crate) tempfile::TempDir);

#[cfg(test)]
impl TestDb {
    /// The same database opened again, as after a restart.
    pub(crate) async fn reopen(&self, queue: usize) -> (super::Store, super::Writer) {
        super::Store::open(self.0.path(), queue).await.unwrap()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;

    use sqlx::Connection;
    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::evaluate::{State, Transition};
    use crate::paging::Page;
    use std::sync::Mutex;
    use std::sync::atomic::AtomicU64;

    use crate::store::Failover;
    use crate::store::sqlite::sql::tests::{both, page_plan, rec, until};
    use crate::store::writer::MAX_BATCH;
    use crate::store::{StateChange, Store};

    /// Records what the writer hands over while commits fail.
    #[derive(Default)]
    struct Handed {
        unwritten: Mutex<Vec<i64>>,
        recovered: AtomicU64,
    }

    impl Failover for Handed {
        fn unwritten(&self, change: &mut StateChange) {
            self.unwritten.lock().unwrap().push(change.probe_id);
            if let Some(Page::Open(p)) = change.page_mut() {
                p.paged_from_memory = true;
                p.alert.dedup_key = "paged-from-memory".into();
            }
        }
        fn recovered(&self) {
            self.recovered.fetch_add(1, Ordering::Relaxed);
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
        store.state_change(both(
            id,
            Transition {
                from: State::Pending,
                to: State::Down,
                at: 1_000 + total,
                reason: Some("status 503".into()),
            },
            rec(id, 1_000 + total, false).verdicts,
            Some(Page::Open(Box::new(page_plan("a")))),
        ));
        let st = store.stats.clone();
        // The hand-over to the pager follows the failed commit: wait for it as well (it
        // once lagged the counters under load).
        until(
            "the commit to fail, the buffer to fill and the page to be handed over",
            || {
                st.failing_streak.load(Ordering::Relaxed) > 0
                    && st.buffered.load(Ordering::Relaxed) == MAX_BATCH as u64
                    && store.queue_depth() == 0
                    && !handed.unwritten.lock().unwrap().is_empty()
            },
        )
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
        assert_eq!(
            store.ints_raw("SELECT min(at) FROM results").await,
            [[Some(2_000)]]
        );
        let row = &store
            .texts_raw(
                "SELECT o.status, o.last_error, json_extract(i.alert, '$.dedup_key') \
                 FROM outbox o JOIN incidents i ON i.id = o.incident_id",
            )
            .await[0];
        assert_eq!(
            row[0].as_deref(),
            Some("delivered"),
            "recorded as sent, not sent again"
        );
        let note = row[1].clone().unwrap_or_default();
        assert!(note.contains("from memory"), "{note}");
        assert_eq!(
            row[2].as_deref(),
            Some("paged-from-memory"),
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

    /// A database deleted under the running store is named, once it is gone.
    #[tokio::test]
    async fn a_deleted_file_is_a_problem() {
        let (store, _writer, db) = test_store(10).await;
        assert_eq!(store.file_problem(), None);
        std::fs::remove_file(db.0.path().join("probed.db")).unwrap();
        let p = store.file_problem().unwrap();
        assert!(p.contains("probed.db was deleted while open"), "{p}");
    }

    /// Silences match as they always did in SQLite's GLOB, now on every backend: the
    /// matcher agrees with SQLite itself on every case here.
    #[tokio::test]
    async fn silence_globs_agree_with_sqlite() {
        let (store, _writer, _db) = test_store(10).await;
        let patterns = [
            "api-*",
            "api-?",
            "api-[0-9]",
            "api-[^0-9]",
            "[]]x",
            "[^]]x",
            "a[b-d]e",
            "a[-b]c",
            "a[b-]c",
            "[",
            "x[",
            "[]",
            "*",
            "",
            "a*b*c",
            "*[0-9][0-9]",
            "API-*",
            "ü*",
            "a?c",
        ];
        let names = [
            "api-1", "api-x", "api-", "]x", "xx", "ace", "a-c", "abc", "a]c", "x[", "", "aXbYc",
            "web-42", "API-1", "über", "abc",
        ];
        for p in patterns {
            for n in names {
                let q = |s: &str| s.replace('\'', "''");
                let want = store
                    .ints_raw(&format!("SELECT '{}' GLOB '{}'", q(n), q(p)))
                    .await[0][0]
                    == Some(1);
                assert_eq!(
                    crate::config::silence_glob_match(p, n),
                    want,
                    "{n:?} GLOB {p:?}"
                );
            }
        }
    }
}
