//! The PostgreSQL backend: one database several daemons may share (`store: { url: ... }`).
//! One pool serves reads and writes; its schema is `migrations/postgres/`, applied at start
//! under sqlx's migration lock, so daemons starting together migrate once. The queries are
//! `sql/`, compiled here with `Database = Postgres`.
//!
//! The server going away must never hang the daemon: a connection is waited for at most
//! [`ACQUIRE_TIMEOUT`], a statement runs at most [`STATEMENT_TIMEOUT`] on the server, and
//! the writer gives a commit a deadline of its own (a cut network leaves a socket open for
//! minutes; see `writer.rs`).

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use super::StoreError;

/// The queries' database.
pub(crate) type Database = sqlx::Postgres;
/// Whether the queries are compiled for PostgreSQL (yes).
const PG: bool = true;

/// The queries, compiled for PostgreSQL.
// Loaded once per backend on purpose: that is how the queries are written once.
#[allow(clippy::duplicate_mod)]
#[path = "sql/mod.rs"]
pub(crate) mod sql;

/// Longest wait for a connection (a new one includes connecting and authenticating).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a statement may run on the server.
const STATEMENT_TIMEOUT: &str = "30s";
/// Connections of one daemon: the writer, the dispatcher, the API's reads.
const MAX_CONNECTIONS: u32 = 8;

/// Connects to `url` and applies migrations.
pub(super) async fn open(url: &str) -> Result<sql::Db, StoreError> {
    let shown = display_url(url);
    let opts = PgConnectOptions::from_str(url)
        .map_err(|source| StoreError::Open {
            path: shown.clone(),
            source,
        })?
        .application_name("probed")
        .options([("statement_timeout", STATEMENT_TIMEOUT)]);
    let pool = PgPoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(opts)
        .await
        .map_err(|source| StoreError::Open {
            path: shown.clone(),
            source,
        })?;
    sqlx::migrate!("migrations/postgres")
        .run(&pool)
        .await
        .map_err(|source| StoreError::Migrate {
            path: shown.clone(),
            source,
        })?;
    Ok(sql::Db {
        read: pool.clone(),
        write: pool,
    })
}

/// `url` as it may be shown: `postgres://user@host:5432/db`, never the password, and the
/// query's values blanked.
pub fn display_url(url: &str) -> String {
    let Ok(u) = reqwest::Url::parse(url) else {
        return "the store's url (unreadable)".into();
    };
    let mut out = format!("{}://", u.scheme());
    if !u.username().is_empty() {
        out.push_str(u.username());
        out.push('@');
    }
    out.push_str(u.host_str().unwrap_or(""));
    out.push_str(&format!(":{}", u.port().unwrap_or(5432)));
    out.push_str(u.path());
    if let Some(q) = u.query() {
        out.push('?');
        out.push_str(&crate::redact::redact_query(q));
    }
    out
}

/// The PostgreSQL server the tests use: `PROBED_TEST_PG`, else the machine's own
/// (`postgres://postgres@127.0.0.1:5432/postgres`, trust auth; `deploy/test.sh` sees to it).
#[cfg(test)]
pub(crate) fn test_server() -> String {
    std::env::var("PROBED_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A store of its own for one test: a fresh database on the test server, dropped with the
/// guard, so tests run in parallel and leave nothing behind.
#[cfg(test)]
pub(crate) async fn test_store(queue: usize) -> (super::Store, super::Writer, TestDb) {
    let db = TestDb::create().await;
    let (store, writer) = super::Store::open_postgres(&db.url, queue)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    (store, writer, db)
}

/// A scratch database, dropped (with whatever is still connected to it) when this is.
#[cfg(test)]
pub(crate) struct TestDb {
    pub(crate) name: String,
    pub(crate) url: String,
}

#[cfg(test)]
impl TestDb {
    pub(crate) async fn create() -> TestDb {
        use sqlx::Connection;
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let server = test_server();
        let name = format!(
            "probed_t_{}_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
            rand::random::<u32>()
        );
        let mut admin = sqlx::PgConnection::connect(&server)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot reach the test PostgreSQL at {}: {e} (deploy/test.sh starts it; \
                     PROBED_TEST_PG names another)",
                    display_url(&server)
                )
            });
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
        let mut url = reqwest::Url::parse(&server).unwrap();
        url.set_path(&format!("/{name}"));
        TestDb {
            name,
            url: url.to_string(),
        }
    }
}

#[cfg(test)]
impl Drop for TestDb {
    fn drop(&mut self) {
        let (server, name) = (test_server(), self.name.clone());
        // Drop runs inside the test's runtime: the database goes from a thread of its own.
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                use sqlx::Connection;
                if let Ok(mut admin) = sqlx::PgConnection::connect(&server).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut admin)
                    .await;
                }
            })
        });
        let _ = done.join();
    }
}

#[cfg(test)]
impl TestDb {
    /// The same database opened again, as after a restart.
    pub(crate) async fn reopen(&self, queue: usize) -> (super::Store, super::Writer) {
        super::Store::open_postgres(&self.url, queue).await.unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_shown_without_their_password() {
        for (url, shown) in [
            (
                "postgres://probed:s3cret@db.internal/probed",
                "postgres://probed@db.internal:5432/probed",
            ),
            (
                "postgresql://u:p%40ss@10.0.0.2:6432/x?sslmode=require&password=hunter2",
                "postgresql://u@10.0.0.2:6432/x?sslmode=***&password=***",
            ),
            ("not a url s3cret", "the store's url (unreadable)"),
        ] {
            assert_eq!(display_url(url), shown);
        }
    }

    /// An unreachable server is a clear error naming it without its password, within the
    /// connection deadline.
    #[tokio::test]
    async fn an_unreachable_server_is_a_clear_error() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let url = format!("postgres://probed:s3cret@127.0.0.1:{port}/probed");
        let t0 = std::time::Instant::now();
        let err = crate::store::Store::open_postgres(&url, 10)
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(t0.elapsed() < ACQUIRE_TIMEOUT + Duration::from_secs(5));
        assert!(
            err.starts_with(&format!(
                "cannot open postgres://probed@127.0.0.1:{port}/probed: "
            )),
            "{err}"
        );
        assert!(!err.contains("s3cret"), "{err}");
    }

    /// Two daemons starting at once on a new database migrate it once, and agree on its id.
    #[tokio::test]
    async fn daemons_starting_together_migrate_once() {
        let db = TestDb::create().await;
        let (a, b) = tokio::join!(
            crate::store::Store::open_postgres(&db.url, 10),
            crate::store::Store::open_postgres(&db.url, 10)
        );
        let ((a, _), (b, _)) = (a.unwrap(), b.unwrap());
        assert_eq!(a.id, b.id);
        assert_eq!(a.id.len(), 12, "{}", a.id);
        a.close().await;
        b.close().await;
    }
}
