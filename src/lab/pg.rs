//! PostgreSQL faults on the real server: a scratch database of the lab's own, and the ways a
//! database stops taking writes while reads still pass (Exalate 2021).
//!
//! [`PgLab::create`] makes a database with a unique name (`probed_lab_<pid>_<random>`) on the
//! local PostgreSQL (`postgres://postgres@127.0.0.1:5432`, trust auth; [`PgLab::create_on`]
//! for another server); it is dropped with `WITH (FORCE)` by [`PgLab::cleanup`], or when the
//! lab is dropped (from a thread of its own, so a failing test cleans up too). Tests running
//! in parallel each get their own database and never see each other's faults.
//!
//! The faults:
//!
//! | call | what a client sees |
//! |---|---|
//! | [`PgLab::read_only`]`(true)` | a failover onto a read-only node: every write fails at once (SQLSTATE 25006), reads pass. Sessions already open are ended, as a failover ends them, so pooled connections reconnect and pick the change up |
//! | [`PgLab::lock_writes`]`(table)` | writes hang: another session holds `LOCK TABLE .. IN EXCLUSIVE MODE` in an open transaction; SELECTs still pass, INSERT/UPDATE/DELETE wait for as long as it is held (or until their own `statement_timeout`) |
//! | [`PgLab::lock_all`]`(table)` | everything on the table hangs: `ACCESS EXCLUSIVE`, SELECTs wait too |
//! | [`PgLab::release`] | the lock is let go (the holding transaction rolls back); what waited goes on |
//!
//! From an async test:
//!
//! ```no_run
//! # async fn t() -> Result<(), sqlx::Error> {
//! use probed::lab::pg::PgLab;
//! let mut db = PgLab::create().await?;
//! db.execute("CREATE TABLE orders (id BIGSERIAL PRIMARY KEY, note TEXT)").await?;
//! let dsn = db.dsn(); // postgres://postgres@127.0.0.1:5432/probed_lab_...
//! db.lock_writes("orders").await?; // reads pass, writes hang
//! assert_eq!(db.scalar("SELECT count(*) FROM orders").await?, 0);
//! db.release().await?;
//! db.cleanup().await; // or let it drop
//! # let _ = dsn; Ok(()) }
//! ```
//!
//! From a blocking test (the `probed` daemon handle of `tests/support`), run these on a
//! runtime the test keeps for as long as the lab lives: the holding connection belongs to it.
//! `let rt = tokio::runtime::Runtime::new()?; let mut db = rt.block_on(PgLab::create())?;`

use std::time::Duration;

use sqlx::postgres::PgConnection;
use sqlx::{AssertSqlSafe, Connection};

/// The machine's PostgreSQL, as the tests reach it (trust auth on loopback).
pub const LOCAL_SERVER: &str = "postgres://postgres@127.0.0.1:5432";

/// A scratch database on a real PostgreSQL, and the faults it can be put in. See the module
/// docs.
pub struct PgLab {
    /// `postgres://user@host:port`, without a database.
    server: String,
    name: String,
    /// The session holding a lock, inside its open transaction.
    holder: Option<PgConnection>,
    /// Set once the database is gone.
    dropped: bool,
}

impl PgLab {
    /// A fresh database on the local PostgreSQL ([`LOCAL_SERVER`]).
    pub async fn create() -> Result<PgLab, sqlx::Error> {
        PgLab::create_on(LOCAL_SERVER).await
    }

    /// A fresh database on `server` (`postgres://user[:password]@host:port`, no database;
    /// the user may create databases). Its name is unique to this process and call.
    pub async fn create_on(server: &str) -> Result<PgLab, sqlx::Error> {
        let server = server.trim_end_matches('/').to_owned();
        let name = format!(
            "probed_lab_{}_{:012x}",
            std::process::id(),
            rand::random::<u64>() & 0xffff_ffff_ffff
        );
        let mut admin = PgConnection::connect(&format!("{server}/postgres")).await?;
        // CREATE DATABASE copies template1 and fails while another session is connected to
        // it (SQLSTATE 55006), which a test elsewhere may briefly be: try a few times.
        let create = format!("CREATE DATABASE {name}");
        let mut tries = 0;
        loop {
            match sqlx::raw_sql(AssertSqlSafe(create.clone()))
                .execute(&mut admin)
                .await
            {
                Ok(_) => break,
                Err(sqlx::Error::Database(e))
                    if e.code().as_deref() == Some("55006") && tries < 20 =>
                {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e),
            }
        }
        let _ = admin.close().await;
        Ok(PgLab {
            server,
            name,
            holder: None,
            dropped: false,
        })
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `postgres://user@host:port/<name>`: what a probe or an app connects to.
    pub fn dsn(&self) -> String {
        format!("{}/{}", self.server, self.name)
    }

    /// A new session on the database (for a test's own reads, writes and watching).
    pub async fn connect(&self) -> Result<PgConnection, sqlx::Error> {
        PgConnection::connect(&self.dsn()).await
    }

    /// Runs `sql` (one or more statements) on a new session.
    pub async fn execute(&self, sql: &str) -> Result<(), sqlx::Error> {
        let mut c = self.connect().await?;
        let r = sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
            .execute(&mut c)
            .await
            .map(|_| ());
        let _ = c.close().await;
        r
    }

    /// The first column of the first row of `sql`, as a number, on a new session whose
    /// statements give up after 5 s (a read that hangs is an error, not a stuck test).
    pub async fn scalar(&self, sql: &str) -> Result<i64, sqlx::Error> {
        let mut c = self.connect().await?;
        sqlx::raw_sql("SET statement_timeout = 5000")
            .execute(&mut c)
            .await?;
        let r = sqlx::query_scalar::<_, i64>(AssertSqlSafe(sql.to_owned()))
            .fetch_one(&mut c)
            .await;
        let _ = c.close().await;
        r
    }

    /// Read-only on (every new transaction is read-only: writes fail at once with SQLSTATE
    /// 25006, reads pass) or off. The setting applies to new sessions, so the sessions open
    /// on the database (other than the lab's lock holder) are ended, as a failover ends
    /// them: clients reconnect and see the new state. Returns how many were ended.
    pub async fn read_only(&mut self, on: bool) -> Result<u64, sqlx::Error> {
        let mut admin = PgConnection::connect(&format!("{}/postgres", self.server)).await?;
        let flag = if on { "on" } else { "off" };
        sqlx::raw_sql(AssertSqlSafe(format!(
            "ALTER DATABASE {} SET default_transaction_read_only = {flag}",
            self.name
        )))
        .execute(&mut admin)
        .await?;
        let holder = self.holder_pid().await?;
        let ended: i64 = sqlx::query_scalar(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid() AND pid <> $2",
        )
        .bind(&self.name)
        .bind(holder.unwrap_or(0))
        .fetch_one(&mut admin)
        .await?;
        let _ = admin.close().await;
        Ok(ended as u64)
    }

    /// Writes to `table` hang, reads pass: a session of the lab takes `LOCK TABLE <table>
    /// IN EXCLUSIVE MODE` in a transaction it keeps open until [`PgLab::release`]. A lock
    /// already held is released first.
    pub async fn lock_writes(&mut self, table: &str) -> Result<(), sqlx::Error> {
        self.lock(table, "EXCLUSIVE").await
    }

    /// Everything on `table` hangs, SELECTs included (`ACCESS EXCLUSIVE`), until
    /// [`PgLab::release`].
    pub async fn lock_all(&mut self, table: &str) -> Result<(), sqlx::Error> {
        self.lock(table, "ACCESS EXCLUSIVE").await
    }

    async fn lock(&mut self, table: &str, mode: &str) -> Result<(), sqlx::Error> {
        check_ident(table)?;
        self.release().await?;
        let mut c = self.connect().await?;
        // A lock held by a test must not outlive it: if the test process dies, the server
        // ends this idle transaction by itself.
        sqlx::raw_sql(AssertSqlSafe(format!(
            "SET idle_in_transaction_session_timeout = '10min'; BEGIN; \
             LOCK TABLE {table} IN {mode} MODE"
        )))
        .execute(&mut c)
        .await?;
        self.holder = Some(c);
        Ok(())
    }

    /// Lets a lock go (its transaction rolls back); nothing when none is held.
    pub async fn release(&mut self) -> Result<(), sqlx::Error> {
        if let Some(mut c) = self.holder.take() {
            sqlx::raw_sql("ROLLBACK").execute(&mut c).await?;
            let _ = c.close().await;
        }
        Ok(())
    }

    /// Whether a lock is held.
    pub fn locked(&self) -> bool {
        self.holder.is_some()
    }

    /// Sessions on the database now waiting for a lock (what a held lock has piled up).
    pub async fn waiting_for_locks(&self) -> Result<i64, sqlx::Error> {
        let mut admin = PgConnection::connect(&format!("{}/postgres", self.server)).await?;
        let n = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'",
        )
        .bind(&self.name)
        .fetch_one(&mut admin)
        .await;
        let _ = admin.close().await;
        n
    }

    async fn holder_pid(&mut self) -> Result<Option<i32>, sqlx::Error> {
        match self.holder.as_mut() {
            None => Ok(None),
            Some(c) => Ok(Some(
                sqlx::query_scalar("SELECT pg_backend_pid()")
                    .fetch_one(c)
                    .await?,
            )),
        }
    }

    /// Lets any lock go and drops the database (its sessions are ended).
    pub async fn cleanup(mut self) {
        let _ = self.release().await;
        drop_database(&self.server, &self.name).await;
        self.dropped = true;
    }
}

impl Drop for PgLab {
    fn drop(&mut self) {
        if self.dropped {
            return;
        }
        // Closing the holder's socket ends its transaction; FORCE ends every other session.
        drop(self.holder.take());
        let (server, name) = (self.server.clone(), self.name.clone());
        // Drop may run inside a runtime (which cannot block on another), or outside any:
        // a thread of its own with its own runtime does both.
        let done = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(drop_database(&server, &name));
            }
        });
        let _ = done.join();
    }
}

async fn drop_database(server: &str, name: &str) {
    if let Ok(mut admin) = PgConnection::connect(&format!("{server}/postgres")).await {
        let _ = sqlx::raw_sql(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await;
        let _ = admin.close().await;
    }
}

/// A table name the lab puts into SQL: `name` or `schema.name`, plain identifiers.
fn check_ident(table: &str) -> Result<(), sqlx::Error> {
    let plain = |p: &str| {
        let mut c = p.chars();
        matches!(c.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
            && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let parts: Vec<&str> = table.split('.').collect();
    if parts.len() <= 2 && parts.iter().all(|p| plain(p)) {
        Ok(())
    } else {
        Err(sqlx::Error::Protocol(format!(
            "lab: {table:?} is not a plain table name"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads pass and writes hang under `lock_writes`; both hang under `lock_all`; read-only
    /// refuses writes at once, also on a session opened before it; the database goes away.
    #[tokio::test]
    async fn faults_do_what_they_say_and_the_database_is_dropped() {
        let mut db = PgLab::create().await.unwrap();
        let name = db.name().to_owned();
        db.execute(
            "CREATE TABLE t (id BIGSERIAL PRIMARY KEY, v INT); INSERT INTO t (v) VALUES (1)",
        )
        .await
        .unwrap();

        db.lock_writes("t").await.unwrap();
        assert!(db.locked());
        assert_eq!(db.scalar("SELECT count(*) FROM t").await.unwrap(), 1);
        let mut c = db.connect().await.unwrap();
        let hung = sqlx::raw_sql("SET statement_timeout = 300; INSERT INTO t (v) VALUES (2)")
            .execute(&mut c)
            .await
            .unwrap_err();
        assert!(hung.to_string().contains("statement timeout"), "{hung}");

        // A write waits while the lock is held, and goes through once it is let go.
        let mut w = db.connect().await.unwrap();
        let waiter = tokio::spawn(async move {
            sqlx::raw_sql("SET statement_timeout = 20000; INSERT INTO t (v) VALUES (2)")
                .execute(&mut w)
                .await
                .map(|_| ())
        });
        let give_up = tokio::time::Instant::now() + Duration::from_secs(10);
        while db.waiting_for_locks().await.unwrap() != 1 {
            assert!(
                tokio::time::Instant::now() < give_up,
                "the write never waited"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        db.release().await.unwrap();
        waiter.await.unwrap().unwrap();
        assert_eq!(db.scalar("SELECT count(*) FROM t").await.unwrap(), 2);

        db.lock_all("t").await.unwrap();
        let read = sqlx::raw_sql("SET statement_timeout = 300; SELECT count(*) FROM t")
            .execute(&mut c)
            .await
            .unwrap_err();
        assert!(read.to_string().contains("statement timeout"), "{read}");
        db.release().await.unwrap();
        assert!(!db.locked());
        sqlx::raw_sql("INSERT INTO t (v) VALUES (3)")
            .execute(&mut c)
            .await
            .unwrap();

        // Read-only: the session opened before is ended (a failover's disconnect); a new
        // one can read and cannot write.
        assert!(db.read_only(true).await.unwrap() >= 1);
        assert!(sqlx::raw_sql("SELECT 1").execute(&mut c).await.is_err());
        let mut c = db.connect().await.unwrap();
        assert_eq!(db.scalar("SELECT count(*) FROM t").await.unwrap(), 3);
        let refused = sqlx::raw_sql("INSERT INTO t (v) VALUES (4)")
            .execute(&mut c)
            .await
            .unwrap_err();
        let code = refused
            .as_database_error()
            .and_then(|e| e.code())
            .map(|c| c.into_owned());
        assert_eq!(code.as_deref(), Some("25006"), "{refused}");
        db.read_only(false).await.unwrap();
        db.execute("INSERT INTO t (v) VALUES (5)").await.unwrap();

        db.cleanup().await;
        let left = databases_named(&name).await;
        assert_eq!(left, 0, "the scratch database is gone");
    }

    /// How many databases are called `name` on the server.
    async fn databases_named(name: &str) -> i64 {
        let mut admin = PgConnection::connect(&format!("{LOCAL_SERVER}/postgres"))
            .await
            .unwrap();
        sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
            .bind(name)
            .fetch_one(&mut admin)
            .await
            .unwrap()
    }

    /// Dropped without cleanup (a failing test) and with a lock held: still gone.
    #[tokio::test]
    async fn dropping_the_lab_drops_the_database() {
        let mut db = PgLab::create().await.unwrap();
        let name = db.name().to_owned();
        db.execute("CREATE TABLE t (id INT)").await.unwrap();
        db.lock_all("t").await.unwrap();
        drop(db);
        let left = databases_named(&name).await;
        assert_eq!(left, 0);
        assert!(
            PgLab::create()
                .await
                .unwrap()
                .lock_writes("x; DROP")
                .await
                .is_err()
        );
    }
}
