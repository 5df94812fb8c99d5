//! `kind: db_write`: writes a canary row, reads it back and prunes old ones, over one fresh
//! connection per check, each step timed (`connect`, `write`, `read`, `prune`) and bounded
//! by the check's deadline. With `replica_dsn`, it also times how long the write takes to
//! show up on a replica (`replica_connect`, `replication`).
//!
//! Why writes and not just reads (Exalate 2021): after a failover, reads passed while every
//! write hung; a read-only health check saw nothing. So this probe writes, tells a read-only
//! database (or a refused write) apart from an unreachable one, proves reads still pass
//! when writes fail, and never waits on a hung write past its deadline: the statement is
//! dropped with its connection, and the server is told to give up by itself shortly after
//! (Postgres `statement_timeout`, MariaDB `max_statement_time` and lock wait timeouts,
//! SQLite's busy timeout), so a stuck database does not collect one waiting session per check.
//!
//! The canary table (`probed_canary` unless `table` says otherwise) is created on first use:
//! `id` (auto-increment key), `token` (random, unique per check) and `written_at_ms` (the
//! probe's wall clock, unix milliseconds). Pruning keeps the newest `keep` rows with one
//! short index scan and one ranged delete.
//!
//! DSN credentials never appear in a reason: DSNs are shown as `scheme://user@host:port/db`,
//! query values as `***`, and any password that found its way into a message is blanked.

use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use reqwest::Url;
use schemars::JsonSchema;
use serde::Deserialize;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlDatabaseError};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgRow};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{AssertSqlSafe, ConnectOptions, Row};
use tokio::time::Instant;

use super::net::password_secrets;
use super::{CheckCx, Observation, until};
use crate::redact::{redact_query, scrub, secret_list};
use crate::text::FieldError;
use crate::text::{io_text, lower_first};
use crate::units::{Dur, Secret, format_duration};

/// Default canary table.
pub const DEFAULT_TABLE: &str = "probed_canary";
/// Default number of canary rows kept.
pub const DEFAULT_KEEP: u64 = 100;
/// Most canary rows `keep` may ask for.
const MAX_KEEP: u64 = 1_000_000;

/// A database write probe.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// The database: `postgres://` (or `postgresql://`), `mysql://` (or `mariadb://`) URL
    /// with user, password, host, port and database, or `sqlite://path` (relative to the
    /// probe file). The password is never shown.
    pub dsn: Secret,
    /// The canary table: a plain identifier, optionally schema-qualified
    /// (`monitoring.probed_canary`). Created when missing. Default: `probed_canary`.
    #[serde(default = "default_table")]
    pub table: String,
    /// A replica of `dsn` (same kind of database) on which the canary row must show up.
    pub replica_dsn: Option<Secret>,
    /// How many canary rows to keep; older ones are deleted at each check. Default: 100.
    #[serde(default = "default_keep")]
    pub keep: u64,
    /// Latency expectations. Every one given must hold for the probe to be up.
    #[serde(default)]
    pub expect: Expect,
}

fn default_table() -> String {
    DEFAULT_TABLE.into()
}
fn default_keep() -> u64 {
    DEFAULT_KEEP
}

/// Latency expectations of a `db_write` probe.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "DbWriteExpect")]
pub struct Expect {
    /// Fail when the INSERT of the canary row takes this long or longer.
    pub write_under: Option<Dur>,
    /// Fail when reading the canary row back takes this long or longer.
    pub read_under: Option<Dur>,
    /// Fail when the canary row takes this long or longer to show up on the replica
    /// (needs `replica_dsn`).
    pub replication_under: Option<Dur>,
    /// Fail when the whole check (connect, write, read, replication, prune) takes this long
    /// or longer.
    pub latency_under: Option<Dur>,
}

impl Spec {
    /// Every problem, without I/O. Messages never repeat a DSN: it may hold a password.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let primary = match parse_dsn(self.dsn.expose()) {
            Ok(d) => Some(d),
            Err(e) => {
                errs.push(FieldError::new("dsn", e));
                None
            }
        };
        if let Some(replica) = &self.replica_dsn {
            match parse_dsn(replica.expose()) {
                Err(e) => errs.push(FieldError::new("replica_dsn", e)),
                Ok(r) => {
                    if let Some(p) = &primary
                        && p.driver != r.driver
                    {
                        errs.push(FieldError::new(
                            "replica_dsn",
                            format!(
                                "a replica of a {} database must be {} too, not {}",
                                p.driver.name(),
                                p.driver.name(),
                                r.driver.name()
                            ),
                        ));
                    }
                }
            }
        }
        if let Err(e) = check_table(&self.table) {
            errs.push(FieldError::new("table", e));
        }
        if self.keep == 0 {
            errs.push(FieldError::new(
                "keep",
                "must be at least 1 (the row just written)",
            ));
        } else if self.keep > MAX_KEEP {
            errs.push(FieldError::new(
                "keep",
                format!("{} is too many (at most {MAX_KEEP})", self.keep),
            ));
        }
        let e = &self.expect;
        for (name, d) in [
            ("write_under", e.write_under),
            ("read_under", e.read_under),
            ("replication_under", e.replication_under),
            ("latency_under", e.latency_under),
        ] {
            if d.is_some_and(|d| d.0.is_zero()) {
                errs.push(FieldError::new(
                    format!("expect.{name}"),
                    "must be more than 0",
                ));
            }
        }
        if e.replication_under.is_some() && self.replica_dsn.is_none() {
            errs.push(FieldError::new(
                "expect.replication_under",
                "needs replica_dsn (the replica to watch)",
            ));
        }
        errs
    }

    /// Makes a relative SQLite path relative to `base` (the directory of the probe's file).
    pub fn resolve_paths(&mut self, base: &Path) {
        for dsn in std::iter::once(&mut self.dsn).chain(self.replica_dsn.as_mut()) {
            if let Some(resolved) = resolve_sqlite(dsn.expose(), base) {
                *dsn = Secret::new(resolved);
            }
        }
    }

    /// The DSN's host (lower-case), for the per-host concurrency cap; none for SQLite.
    pub fn target_host(&self) -> Option<String> {
        parse_dsn(self.dsn.expose()).ok().and_then(|d| d.host)
    }

    /// `host:port` of the database server, or the SQLite file's path (never the DSN: it
    /// holds the password).
    pub fn instance(&self) -> Option<String> {
        let raw = self.dsn.expose().trim();
        let url = reqwest::Url::parse(raw).ok()?;
        let port = match url.scheme() {
            "postgres" | "postgresql" => 5432,
            "mysql" | "mariadb" => 3306,
            _ => return Some(url.path().to_owned()).filter(|p| !p.is_empty()),
        };
        Some(crate::probe::net::host_port_instance(
            url.host_str()
                .filter(|h| !h.is_empty())
                .unwrap_or("localhost"),
            url.port().unwrap_or(port),
        ))
    }

    /// Parses the DSNs into connect options and prepares the statements.
    pub fn build(&self) -> Result<Check, String> {
        if let Some(e) = self.validate().into_iter().next() {
            return Err(format!("{}: {}", e.path, e.message));
        }
        let mut secrets = Vec::new();
        let primary =
            Target::new(self.dsn.expose(), &mut secrets).map_err(|e| format!("dsn: {e}"))?;
        let replica = match &self.replica_dsn {
            Some(r) => Some(
                Target::new(r.expose(), &mut secrets).map_err(|e| format!("replica_dsn: {e}"))?,
            ),
            None => None,
        };
        let secrets = secret_list(secrets);
        Ok(Check {
            sql: Sql {
                driver: primary.driver,
                table: self.table.clone(),
                keep: self.keep,
            },
            primary,
            replica,
            table: self.table.clone(),
            expect: self.expect.clone(),
            secrets,
        })
    }
}

/// The canary table name: `name` or `schema.name`, each part a plain identifier.
fn check_table(table: &str) -> Result<(), String> {
    let parts: Vec<&str> = table.split('.').collect();
    let plain = |p: &str| {
        let mut chars = p.chars();
        matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
            && p.len() <= 63
    };
    if parts.len() > 2 || !parts.iter().all(|p| plain(p)) {
        return Err(format!(
            "invalid table name {table:?}: use letters, digits and _ (not first), \
             at most 63 each, optionally schema.table"
        ));
    }
    Ok(())
}

/// The kind of database a DSN names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Driver {
    Postgres,
    MySql,
    Sqlite,
}

impl Driver {
    fn name(self) -> &'static str {
        match self {
            Driver::Postgres => "postgres",
            Driver::MySql => "mysql",
            Driver::Sqlite => "sqlite",
        }
    }
}

/// A parsed DSN. No `Debug`: it holds the password.
struct Dsn {
    driver: Driver,
    /// What sqlx parses: `mariadb://` rewritten as `mysql://`.
    url: String,
    /// For messages: no password, query values as `***`.
    display: String,
    /// Lower-case; none for SQLite or a Unix socket.
    host: Option<String>,
    /// The password, as written and percent-decoded, for scrubbing messages.
    secrets: Vec<String>,
}

/// Parses a DSN. Errors never repeat it (it may hold a password).
fn parse_dsn(raw: &str) -> Result<Dsn, String> {
    let raw = raw.trim();
    let Some((scheme, rest)) = raw.split_once(':') else {
        return Err(
            "dsn has no scheme (start it with postgres://, mysql://, mariadb:// or sqlite://)"
                .into(),
        );
    };
    let scheme = scheme.to_ascii_lowercase();
    match scheme.as_str() {
        "postgres" | "postgresql" => network_dsn(Driver::Postgres, &scheme, raw),
        "mysql" => network_dsn(Driver::MySql, &scheme, raw),
        "mariadb" => network_dsn(Driver::MySql, &scheme, &format!("mysql:{rest}")),
        "sqlite" => sqlite_dsn(rest),
        other => Err(format!(
            "unsupported dsn scheme {other:?} (use postgres, mysql, mariadb or sqlite)"
        )),
    }
}

fn network_dsn(driver: Driver, scheme: &str, url: &str) -> Result<Dsn, String> {
    let parsed = Url::parse(url).map_err(|e| format!("invalid dsn: {e}"))?;
    let host = parsed.host_str().filter(|h| !h.is_empty()).map(|h| {
        h.trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase()
    });
    // Checked with the driver's own parser, which is what connects later.
    let checked = match driver {
        Driver::Postgres => PgConnectOptions::from_str(url).map(|_| ()),
        _ => MySqlConnectOptions::from_str(url).map(|_| ()),
    };
    let mut secrets = Vec::new();
    if let Some(pw) = parsed.password() {
        password_secrets(pw, &mut secrets);
    }
    if let Err(e) = checked {
        return Err(scrub(
            &format!("invalid dsn: {}", lower_first(&e.to_string())),
            &secrets,
        ));
    }
    let default_port = if driver == Driver::Postgres {
        5432
    } else {
        3306
    };
    let mut display = format!("{scheme}://");
    if !parsed.username().is_empty() {
        display.push_str(parsed.username());
        display.push('@');
    }
    if let Some(h) = parsed.host_str() {
        display.push_str(&h.to_ascii_lowercase());
        display.push_str(&format!(":{}", parsed.port().unwrap_or(default_port)));
    }
    display.push_str(parsed.path());
    if let Some(q) = parsed.query() {
        display.push('?');
        display.push_str(&redact_query(q));
    }
    Ok(Dsn {
        driver,
        url: url.to_string(),
        display,
        host,
        secrets,
    })
}

fn sqlite_dsn(rest: &str) -> Result<Dsn, String> {
    let body = rest.strip_prefix("//").unwrap_or(rest);
    let (path, query) = match body.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (body, None),
    };
    if path.is_empty() {
        return Err("sqlite dsn has no path (write sqlite://path/to/file.db)".into());
    }
    let url = format!("sqlite://{body}");
    SqliteConnectOptions::from_str(&url)
        .map_err(|e| format!("invalid dsn: {}", lower_first(&e.to_string())))?;
    let mut display = format!("sqlite://{path}");
    if let Some(q) = query {
        // SQLite options (`mode=rwc`) hold no secret; shown as written.
        display.push('?');
        display.push_str(q);
    }
    Ok(Dsn {
        driver: Driver::Sqlite,
        url,
        display,
        host: None,
        secrets: Vec::new(),
    })
}

/// `sqlite://relative/path` made relative to `base`; `None` when nothing changes.
fn resolve_sqlite(raw: &str, base: &Path) -> Option<String> {
    let raw = raw.trim();
    let (scheme, rest) = raw.split_once(':')?;
    if !scheme.eq_ignore_ascii_case("sqlite") {
        return None;
    }
    let body = rest.strip_prefix("//").unwrap_or(rest);
    let (path, query) = match body.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (body, None),
    };
    if path.is_empty() || path == ":memory:" || Path::new(path).is_absolute() {
        return None;
    }
    let joined = base.join(path);
    let mut out = format!("sqlite://{}", joined.display());
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Some(out)
}

/// Connect options for one database, ready to connect.
enum Options {
    Pg(PgConnectOptions),
    My(MySqlConnectOptions),
    Lite(SqliteConnectOptions),
}

/// One database the check talks to.
struct Target {
    driver: Driver,
    display: String,
    options: Options,
}

impl Target {
    fn new(raw: &str, secrets: &mut Vec<String>) -> Result<Target, String> {
        let dsn = parse_dsn(raw)?;
        secrets.extend(dsn.secrets.iter().cloned());
        let bad = |e: sqlx::Error| scrub(&format!("invalid dsn: {e}"), &dsn.secrets);
        let options = match dsn.driver {
            Driver::Postgres => {
                let mut o = PgConnectOptions::from_str(&dsn.url).map_err(bad)?;
                if o.get_application_name().is_none() {
                    o = o.application_name("probed");
                }
                Options::Pg(o.disable_statement_logging())
            }
            Driver::MySql => Options::My(
                MySqlConnectOptions::from_str(&dsn.url)
                    .map_err(bad)?
                    .disable_statement_logging(),
            ),
            Driver::Sqlite => Options::Lite(
                SqliteConnectOptions::from_str(&dsn.url)
                    .map_err(bad)?
                    .disable_statement_logging(),
            ),
        };
        Ok(Target {
            driver: dsn.driver,
            display: dsn.display,
            options,
        })
    }

    /// A fresh connection. A MariaDB/MySQL session gets lock wait (and, on MariaDB,
    /// statement) timeouts that end a little after `deadline`, SQLite a busy timeout, so a
    /// statement the check abandons does not wait on the server for ever; Postgres gets its
    /// `statement_timeout` statement by statement (see [`Conn::pg_rows`]).
    async fn connect(&self, deadline: Instant) -> Result<Conn, sqlx::Error> {
        let left = deadline.saturating_duration_since(Instant::now()) + SERVER_GRACE;
        match &self.options {
            Options::Pg(o) => Ok(Conn::Pg(o.connect().await?)),
            Options::My(o) => {
                let mut c = o.connect().await?;
                let secs = left.as_secs_f64();
                let whole = secs.ceil().max(1.0) as u64;
                // `max_statement_time` is MariaDB's (it covers writes); MySQL lacks it, and
                // there the lock wait timeouts alone bound a blocked write. Best effort: the
                // client-side deadline holds either way.
                let both = format!(
                    "SET SESSION max_statement_time = {secs:.3}, \
                     innodb_lock_wait_timeout = {whole}, lock_wait_timeout = {whole}"
                );
                if sqlx::raw_sql(AssertSqlSafe(both))
                    .execute(&mut c)
                    .await
                    .is_err()
                {
                    let locks = format!(
                        "SET SESSION innodb_lock_wait_timeout = {whole}, lock_wait_timeout = {whole}"
                    );
                    let _ = sqlx::raw_sql(AssertSqlSafe(locks)).execute(&mut c).await;
                }
                Ok(Conn::My(c))
            }
            Options::Lite(o) => Ok(Conn::Lite(o.clone().busy_timeout(left).connect().await?)),
        }
    }
}

/// How long past the check's deadline the server keeps a statement the check abandoned.
const SERVER_GRACE: Duration = Duration::from_millis(500);

/// The statements of a check. Values are written inline (the token is hex, the rest are
/// integers), so each statement is one round trip of the simple (text) protocol, without
/// a prepare on every fresh connection.
struct Sql {
    driver: Driver,
    table: String,
    keep: u64,
}

impl Sql {
    fn create(&self) -> String {
        let t = &self.table;
        match self.driver {
            Driver::Postgres => format!(
                "CREATE TABLE IF NOT EXISTS {t} (id BIGSERIAL PRIMARY KEY, \
                 token VARCHAR(64) NOT NULL, written_at_ms BIGINT NOT NULL)"
            ),
            Driver::MySql => format!(
                "CREATE TABLE IF NOT EXISTS {t} (id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, \
                 token VARCHAR(64) NOT NULL, written_at_ms BIGINT NOT NULL)"
            ),
            Driver::Sqlite => format!(
                "CREATE TABLE IF NOT EXISTS {t} (id INTEGER PRIMARY KEY, \
                 token TEXT NOT NULL, written_at_ms INTEGER NOT NULL)"
            ),
        }
    }

    /// `token` is lower-case hex (made by the check, never from outside).
    fn insert(&self, token: &str, at_ms: i64) -> String {
        debug_assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
        let returning = if self.driver == Driver::Postgres {
            " RETURNING id"
        } else {
            ""
        };
        format!(
            "INSERT INTO {} (token, written_at_ms) VALUES ('{token}', {at_ms}){returning}",
            self.table
        )
    }

    fn select(&self, id: i64) -> String {
        format!("SELECT token FROM {} WHERE id = {id}", self.table)
    }

    /// Deletes all but the newest `keep` rows: one primary-key scan of `keep` + 1 entries
    /// and a ranged delete. The derived table lets MySQL delete from a table the subquery
    /// reads; when there are `keep` rows or fewer the bound is NULL and nothing goes.
    fn prune(&self) -> String {
        let (t, keep) = (&self.table, self.keep);
        format!(
            "DELETE FROM {t} WHERE id <= (SELECT id FROM \
             (SELECT id FROM {t} ORDER BY id DESC LIMIT 1 OFFSET {keep}) AS cut)"
        )
    }
}

/// Most rows kept of one statement's answer.
const MAX_ROWS: usize = 16;

/// An open connection of one of the three kinds.
enum Conn {
    Pg(PgConnection),
    My(MySqlConnection),
    Lite(SqliteConnection),
}

impl Conn {
    /// Runs `sql` (one statement) on Postgres inside a transaction whose
    /// `statement_timeout` ends a little after `deadline`. `SET LOCAL` ends with the
    /// transaction: nothing stays on the session, which a transaction-pooling pgbouncer
    /// would hand to another client next. One round trip with the statement.
    async fn pg_rows(
        c: &mut PgConnection,
        sql: &str,
        deadline: Instant,
    ) -> Result<Vec<PgRow>, sqlx::Error> {
        let ms = (deadline.saturating_duration_since(Instant::now()) + SERVER_GRACE).as_millis();
        let batch = format!("BEGIN; SET LOCAL statement_timeout = {ms}; {sql}; COMMIT");
        // Read row by row and keep at most MAX_ROWS: the probe's statements return one row,
        // and a canary table someone else filled costs no more memory than that.
        let rows = {
            let mut stream = sqlx::raw_sql(AssertSqlSafe(batch)).fetch(&mut *c);
            let mut rows = Vec::new();
            let mut failed = None;
            while let Some(row) = stream.next().await {
                match row {
                    Ok(row) if rows.len() < MAX_ROWS => rows.push(row),
                    Ok(_) => {}
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            match failed {
                Some(e) => Err(e),
                None => Ok(rows),
            }
        };
        if rows.is_err() {
            // A failed statement leaves the transaction aborted; the connection goes on.
            let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *c).await;
        }
        rows
    }

    /// Runs one statement for its effect.
    async fn execute(&mut self, sql: &str, deadline: Instant) -> Result<(), sqlx::Error> {
        let q = AssertSqlSafe(sql.to_string());
        match self {
            Conn::Pg(c) => Conn::pg_rows(c, sql, deadline).await.map(|_| ()),
            Conn::My(c) => sqlx::raw_sql(q).execute(&mut *c).await.map(|_| ()),
            Conn::Lite(c) => sqlx::raw_sql(q).execute(&mut *c).await.map(|_| ()),
        }
    }

    /// `SELECT 1`: proves the database still answers reads.
    async fn select_one(&mut self) -> Result<(), sqlx::Error> {
        match self {
            Conn::Pg(c) => sqlx::raw_sql("SELECT 1").execute(&mut *c).await.map(|_| ()),
            Conn::My(c) => sqlx::raw_sql("SELECT 1").execute(&mut *c).await.map(|_| ()),
            Conn::Lite(c) => sqlx::raw_sql("SELECT 1").execute(&mut *c).await.map(|_| ()),
        }
    }

    /// Inserts the canary row; its id.
    async fn insert(&mut self, sql: &str, deadline: Instant) -> Result<i64, sqlx::Error> {
        let q = AssertSqlSafe(sql.to_string());
        match self {
            Conn::Pg(c) => Conn::pg_rows(c, sql, deadline)
                .await?
                .first()
                .ok_or(sqlx::Error::RowNotFound)?
                .try_get::<i64, _>(0),
            Conn::My(c) => Ok(sqlx::raw_sql(q).execute(&mut *c).await?.last_insert_id() as i64),
            Conn::Lite(c) => Ok(sqlx::raw_sql(q).execute(&mut *c).await?.last_insert_rowid()),
        }
    }

    /// The first column of the first row, as text, if there is a row.
    async fn first_text(
        &mut self,
        sql: &str,
        deadline: Instant,
    ) -> Result<Option<String>, sqlx::Error> {
        let q = AssertSqlSafe(sql.to_string());
        match self {
            Conn::Pg(c) => Conn::pg_rows(c, sql, deadline)
                .await?
                .first()
                .map(|r| r.try_get::<String, _>(0))
                .transpose(),
            // The first row only: the rest of an answer is read and dropped, never held.
            Conn::My(c) => sqlx::raw_sql(q)
                .fetch_optional(&mut *c)
                .await?
                .map(|r| r.try_get::<String, _>(0))
                .transpose(),
            Conn::Lite(c) => sqlx::raw_sql(q)
                .fetch_optional(&mut *c)
                .await?
                .map(|r| r.try_get::<String, _>(0))
                .transpose(),
        }
    }
}

/// What a failed statement means for the probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// The canary table does not exist (yet).
    MissingTable,
    /// The table already exists (a concurrent `CREATE TABLE IF NOT EXISTS`).
    AlreadyExists,
    /// The database refuses every write: read-only mode, a hot standby, a read-only
    /// transaction default.
    ReadOnly,
    /// This user may not write here.
    Denied,
    /// The password or user was refused.
    Auth,
    Other,
}

fn classify(driver: Driver, e: &sqlx::Error) -> Failure {
    let sqlx::Error::Database(d) = e else {
        return Failure::Other;
    };
    match driver {
        Driver::Postgres => match d.code().as_deref() {
            Some("42P01") => Failure::MissingTable,
            Some("42P07") | Some("23505") => Failure::AlreadyExists,
            Some("25006") => Failure::ReadOnly,
            Some("42501") => Failure::Denied,
            Some("28P01") | Some("28000") => Failure::Auth,
            _ => Failure::Other,
        },
        Driver::MySql => match d
            .try_downcast_ref::<MySqlDatabaseError>()
            .map(|e| e.number())
        {
            Some(1146) => Failure::MissingTable,
            Some(1050) => Failure::AlreadyExists,
            // ER_OPTION_PREVENTS_STATEMENT (read_only, super_read_only),
            // ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION, ER_READ_ONLY_MODE (innodb_read_only).
            Some(1290) | Some(1792) | Some(1836) => Failure::ReadOnly,
            // Table, database, column or command access denied.
            Some(1142) | Some(1044) | Some(1143) | Some(1227) => Failure::Denied,
            Some(1045) | Some(1698) => Failure::Auth,
            _ => Failure::Other,
        },
        Driver::Sqlite => {
            let code: i64 = d.code().and_then(|c| c.parse().ok()).unwrap_or(0);
            if code & 0xff == 8 {
                // SQLITE_READONLY and its extended codes.
                Failure::ReadOnly
            } else if code & 0xff == 23 {
                // SQLITE_AUTH
                Failure::Denied
            } else if d.message().starts_with("no such table") {
                Failure::MissingTable
            } else if d.message().contains("already exists") {
                Failure::AlreadyExists
            } else {
                Failure::Other
            }
        }
    }
}

/// A driver error in one line: the server's own message with its code, or what went wrong
/// on the way (`connection refused`).
fn error_text(driver: Driver, e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(d) => {
            let msg = d.message().trim_end_matches('.');
            match driver {
                Driver::MySql => match d.try_downcast_ref::<MySqlDatabaseError>() {
                    Some(my) => format!("{msg} (error {})", my.number()),
                    None => msg.to_string(),
                },
                Driver::Postgres => match d.code() {
                    Some(c) => format!("{msg} (SQLSTATE {c})"),
                    None => msg.to_string(),
                },
                Driver::Sqlite => match d.code() {
                    Some(c) => format!("{msg} (sqlite code {c})"),
                    None => msg.to_string(),
                },
            }
        }
        sqlx::Error::Io(e) => io_text(e),
        sqlx::Error::Tls(e) => format!("tls: {}", lower_first(&e.to_string())),
        sqlx::Error::Protocol(s) => format!("protocol error: {s}"),
        sqlx::Error::Configuration(e) => format!("bad connection settings: {e}"),
        other => lower_first(&other.to_string()),
    }
}

/// A runnable `db_write` probe.
pub struct Check {
    primary: Target,
    replica: Option<Target>,
    table: String,
    sql: Sql,
    expect: Expect,
    /// Passwords of the DSNs, longest first: blanked out of any reason.
    secrets: Vec<String>,
}

impl Check {
    /// One check: connect, write, read back, (wait for the replica), prune, judge. Never
    /// fails other than with an `Observation` that says why.
    pub async fn check(&self, cx: &CheckCx<'_>) -> Observation {
        let started = Instant::now();
        let mut obs = Observation::default();
        let ran = self.run(cx, started, &mut obs).await;
        obs.duration = started.elapsed();
        match ran.and_then(|()| self.verdict(&obs)) {
            Ok(()) => {
                obs.ok = true;
                obs
            }
            Err(reason) => obs.fail(scrub(&reason, &self.secrets)),
        }
    }

    async fn run(
        &self,
        cx: &CheckCx<'_>,
        started: Instant,
        obs: &mut Observation,
    ) -> Result<(), String> {
        let p = &self.primary;
        let d = p.driver;

        let t = Instant::now();
        let connected = until(cx, started, "connecting", p.connect(cx.deadline)).await;
        obs.phase("connect", t.elapsed());
        let mut conn = connect_result(p, connected, "")?;

        let mut replica = match &self.replica {
            None => None,
            Some(r) => {
                let t = Instant::now();
                let connected = until(cx, started, "connecting", r.connect(cx.deadline)).await;
                obs.phase("replica_connect", t.elapsed());
                Some(connect_result(r, connected, " the replica")?)
            }
        };

        // Write: the INSERT, and on a missing table, CREATE TABLE IF NOT EXISTS and the
        // INSERT again.
        let token = format!("{:032x}", rand::random::<u128>());
        let at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let t = Instant::now();
        // A write still waiting after a quarter of its time: read the table on a second
        // connection meanwhile (a connection can take as long as that quarter), so a hung
        // write's reason says whether reads still pass (Exalate: they did). Costs a
        // connection only when writes are slow.
        let slow = t + cx.deadline.saturating_duration_since(t) / 4;
        let (written, reads) = {
            let write = until(
                cx,
                started,
                "writing",
                self.write(&mut conn, &token, at_ms, cx.deadline),
            );
            let read_meanwhile = async {
                tokio::time::sleep_until(slow).await;
                self.read_elsewhere(cx.deadline).await
            };
            tokio::pin!(write, read_meanwhile);
            let mut reads: Option<Result<Duration, String>> = None;
            let written = loop {
                tokio::select! {
                    w = &mut write => break w,
                    r = &mut read_meanwhile, if reads.is_none() => reads = Some(r),
                }
            };
            (written, reads)
        };
        obs.phase("write", t.elapsed());
        let id = match written {
            Err(timeout) => {
                let reads = match reads {
                    Some(Ok(took)) => format!(
                        "reads still pass ({} read in {} on a second connection)",
                        self.table,
                        format_duration(took)
                    ),
                    Some(Err(e)) => format!("reads fail too: {e}"),
                    None => format!("reads of {} did not answer either", self.table),
                };
                return Err(format!(
                    "{timeout} to {} on {}; {reads}",
                    self.table, p.display
                ));
            }
            Ok(Ok(id)) => id,
            Ok(Err(e)) => return Err(self.write_refused(cx, started, obs, &mut conn, &e).await),
        };

        // Read it back on the same connection.
        let t = Instant::now();
        let select = self.sql.select(id);
        let read = until(
            cx,
            started,
            "reading",
            conn.first_text(&select, cx.deadline),
        )
        .await;
        obs.phase("read", t.elapsed());
        match read {
            Err(timeout) => {
                return Err(format!(
                    "{timeout} back from {} on {}",
                    self.table, p.display
                ));
            }
            Ok(Err(e)) => return Err(format!("read back failed: {}", error_text(d, &e))),
            Ok(Ok(None)) => {
                return Err(format!(
                    "the canary row just written (id {id}) is not there on read back"
                ));
            }
            Ok(Ok(Some(got))) if got != token => {
                return Err(format!(
                    "read back another canary row for id {id} than the one just written"
                ));
            }
            Ok(Ok(Some(_))) => {}
        }

        // Replication: poll the replica until the row shows up.
        if let (Some(r), Some(rconn)) = (&self.replica, replica.as_mut()) {
            let t = Instant::now();
            let seen = until(
                cx,
                started,
                "waiting for the write to reach the replica",
                self.await_replica(rconn, id, &token, cx.deadline),
            )
            .await;
            obs.phase("replication", t.elapsed());
            match seen {
                Err(timeout) => return Err(format!("{timeout} {}", r.display)),
                Ok(Err(e)) => {
                    return Err(format!(
                        "reading the replica {} failed: {}",
                        r.display,
                        error_text(d, &e)
                    ));
                }
                Ok(Ok(())) => {}
            }
        }
        drop(replica);

        let t = Instant::now();
        let prune = self.sql.prune();
        let pruned = until(cx, started, "pruning", conn.execute(&prune, cx.deadline)).await;
        obs.phase("prune", t.elapsed());
        match pruned {
            Err(timeout) => Err(format!("{timeout} {} on {}", self.table, p.display)),
            Ok(Err(e)) => Err(format!(
                "pruning old canary rows of {} failed: {}",
                self.table,
                error_text(d, &e)
            )),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// The INSERT; on a missing table, CREATE TABLE IF NOT EXISTS and the INSERT again
    /// (trying the INSERT first costs nothing once the table is there, and needs no
    /// CREATE privilege then).
    async fn write(
        &self,
        conn: &mut Conn,
        token: &str,
        at_ms: i64,
        deadline: Instant,
    ) -> Result<i64, sqlx::Error> {
        let d = self.primary.driver;
        let insert = self.sql.insert(token, at_ms);
        match conn.insert(&insert, deadline).await {
            Err(e) if classify(d, &e) == Failure::MissingTable => {
                if let Err(e) = conn.execute(&self.sql.create(), deadline).await
                    && classify(d, &e) != Failure::AlreadyExists
                {
                    return Err(e);
                }
                conn.insert(&insert, deadline).await
            }
            other => other,
        }
    }

    /// Reads the canary table (its newest row) on a fresh connection: how long that took,
    /// or why it failed. A table not created yet is read as `SELECT 1`.
    async fn read_elsewhere(&self, deadline: Instant) -> Result<Duration, String> {
        let d = self.primary.driver;
        let t = Instant::now();
        let mut c = self
            .primary
            .connect(deadline)
            .await
            .map_err(|e| format!("cannot connect: {}", error_text(d, &e)))?;
        let newest = format!("SELECT token FROM {} ORDER BY id DESC LIMIT 1", self.table);
        match c.first_text(&newest, deadline).await {
            Ok(_) => Ok(t.elapsed()),
            Err(e) if classify(d, &e) == Failure::MissingTable => c
                .select_one()
                .await
                .map(|()| t.elapsed())
                .map_err(|e| error_text(d, &e)),
            Err(e) => Err(error_text(d, &e)),
        }
    }

    /// The reason for a failed write; for a read-only database or a refused write, whether
    /// reads still pass (a `SELECT 1`, timed as the `read` phase).
    async fn write_refused(
        &self,
        cx: &CheckCx<'_>,
        started: Instant,
        obs: &mut Observation,
        conn: &mut Conn,
        e: &sqlx::Error,
    ) -> String {
        let d = self.primary.driver;
        let text = error_text(d, e);
        let head = match classify(d, e) {
            Failure::ReadOnly => format!("database is read-only: {text}"),
            Failure::Denied => format!("write refused: {text}"),
            _ => return format!("write to {} failed: {text}", self.table),
        };
        let t = Instant::now();
        let read = until(cx, started, "reading", conn.select_one()).await;
        obs.phase("read", t.elapsed());
        match read {
            Ok(Ok(())) => format!("{head}; reads still pass"),
            Ok(Err(e)) => format!("{head}; reads fail too: {}", error_text(d, &e)),
            Err(_) => format!("{head}; reads did not answer before the deadline either"),
        }
    }

    async fn await_replica(
        &self,
        rconn: &mut Conn,
        id: i64,
        token: &str,
        deadline: Instant,
    ) -> Result<(), sqlx::Error> {
        // Polls quickly at first (a healthy replica is milliseconds behind), then every
        // 100 ms; the check's deadline bounds the whole wait.
        let select = self.sql.select(id);
        let mut pause = Duration::from_millis(2);
        loop {
            if rconn.first_text(&select, deadline).await?.as_deref() == Some(token) {
                return Ok(());
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
    }

    fn verdict(&self, obs: &Observation) -> Result<(), String> {
        let phase = |name: &str| {
            obs.phases
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(Duration::ZERO, |p| p.1)
        };
        let e = &self.expect;
        let mut slow = Vec::new();
        for (what, field, took, limit) in [
            ("write", "write_under", phase("write"), e.write_under),
            ("read", "read_under", phase("read"), e.read_under),
            (
                "replication",
                "replication_under",
                phase("replication"),
                e.replication_under,
            ),
            ("check", "latency_under", obs.duration, e.latency_under),
        ] {
            if let Some(limit) = limit
                && took >= limit.0
            {
                slow.push(format!(
                    "{what} took {} ({field} {limit})",
                    format_duration(took)
                ));
            }
        }
        if slow.is_empty() {
            Ok(())
        } else {
            Err(slow.join("; "))
        }
    }
}

/// A connection attempt's outcome as a reason: the DSN without its password, and what the
/// server or the network said.
fn connect_result(
    target: &Target,
    connected: Result<Result<Conn, sqlx::Error>, String>,
    which: &str,
) -> Result<Conn, String> {
    match connected {
        Ok(Ok(c)) => Ok(c),
        Err(timeout) => Err(format!("{timeout} to{which} {}", target.display)),
        Ok(Err(e)) => {
            let text = error_text(target.driver, &e);
            let text = if classify(target.driver, &e) == Failure::Auth {
                format!("authentication failed: {text}")
            } else {
                text
            };
            Err(format!(
                "cannot connect to{which} {}: {text}",
                target.display
            ))
        }
    }
}

#[cfg(test)]
mod tests;
