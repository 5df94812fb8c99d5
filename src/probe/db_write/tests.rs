//! Tests of `kind: db_write`: against the machine's PostgreSQL (a scratch database per
//! test), MariaDB and SQLite, then the spec (validation, DSNs shown without credentials,
//! relative paths).

use super::*;
use crate::lab::pg::PgLab;
use crate::probe::testkit::{
    assert_by_deadline, assert_down, assert_up, env, hold, phases, reason, run_in, tcp_server,
};
use sqlx::Connection;

// ---- helpers -------------------------------------------------------------------------

/// The machine's MariaDB (root, no password). PostgreSQL tests each get a scratch
/// database of their own from the lab ([`PgLab`]), dropped when they end.
const MY: &str = "mysql://root@127.0.0.1:3306";

/// A spec of this kind from YAML: [`testkit::spec`](crate::probe::testkit::spec), typed.
fn spec(yaml: &str) -> Spec {
    crate::probe::testkit::spec(yaml)
}

async fn run(spec: &Spec) -> Observation {
    run_in(spec, &env(), Duration::from_secs(10)).await
}

fn unique(prefix: &str) -> String {
    format!("{prefix}_{:016x}", rand::random::<u64>())
}

async fn pg_lab() -> PgLab {
    PgLab::create()
        .await
        .unwrap_or_else(|e| panic!("a scratch database on the local PostgreSQL: {e}"))
}

/// MariaDB statements run when the test ends, pass or fail (dropping tables and users),
/// each on a fresh connection from a thread of its own.
#[derive(Default)]
struct Cleanup(Vec<(String, String)>);

impl Cleanup {
    fn my(&mut self, url: &str, sql: String) {
        self.0.push((url.to_string(), sql));
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let jobs = std::mem::take(&mut self.0);
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                for (url, sql) in jobs.into_iter().rev() {
                    let _ = admin(&url, &sql).await;
                }
            });
        });
        let _ = done.join();
    }
}

/// Runs `sql` (one or more statements) on a fresh MariaDB admin connection.
async fn admin(url: &str, sql: &str) -> Result<(), sqlx::Error> {
    let mut c = MySqlConnection::connect(url).await?;
    sqlx::raw_sql(AssertSqlSafe(sql.to_string()))
        .execute(&mut c)
        .await
        .map(|_| ())
}

async fn my(sql: &str) {
    admin(&format!("{MY}/test"), sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn pg_scalar(c: &mut PgConnection, sql: &str) -> i64 {
    sqlx::query_scalar(AssertSqlSafe(sql.to_string()))
        .fetch_one(c)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn my_scalar(c: &mut MySqlConnection, sql: &str) -> i64 {
    sqlx::query_scalar(AssertSqlSafe(sql.to_string()))
        .fetch_one(c)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn my_count(table: &str) -> i64 {
    let mut c = MySqlConnection::connect(&format!("{MY}/test"))
        .await
        .unwrap();
    sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
        .fetch_one(&mut c)
        .await
        .unwrap()
}

// ---- PostgreSQL ----------------------------------------------------------------------

#[tokio::test]
async fn postgres_writes_reads_and_prunes_to_keep() {
    let db = pg_lab().await;
    let s = spec(&format!("{{dsn: '{}', keep: 3}}", db.dsn()));
    for _ in 0..5 {
        let obs = run(&s).await;
        assert_up(&obs);
        assert_eq!(phases(&obs), ["connect", "write", "read", "prune"]);
    }
    assert_eq!(
        db.scalar("SELECT count(*) FROM probed_canary")
            .await
            .unwrap(),
        3
    );
}

#[tokio::test]
async fn postgres_read_only_database_is_down_while_reads_pass() {
    let mut db = pg_lab().await;
    db.read_only(true).await.unwrap();
    let obs = run(&spec(&format!("{{dsn: '{}'}}", db.dsn()))).await;
    assert_down(&obs, "database is read-only: ");
    assert_down(&obs, "(SQLSTATE 25006); reads still pass");
    assert_eq!(phases(&obs), ["connect", "write", "read"]);
}

/// Exalate: reads pass, writes hang. The check gives up at its deadline, and the
/// abandoned INSERT does not stay waiting on the server.
#[tokio::test]
async fn postgres_write_blocked_by_a_lock_is_down_at_the_deadline() {
    let mut db = pg_lab().await;
    let table = "probed_canary";
    let s = spec(&format!("{{dsn: '{}'}}", db.dsn()));
    assert_up(&run(&s).await);

    // Another session holds the table: every write waits, as after a bad failover;
    // reads still pass.
    db.lock_writes(table).await.unwrap();
    assert_eq!(
        db.scalar(&format!("SELECT count(*) FROM {table}"))
            .await
            .unwrap(),
        1
    );

    // Watches the server's sessions from a connection opened beforehand.
    let mut watch = db.connect().await.unwrap();
    let waiting = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'probed' \
         AND query LIKE '%INSERT INTO {table} %'"
    );

    let deadline = Duration::from_millis(800);
    let t = Instant::now();
    let obs = run_in(&s, &env(), deadline).await;
    let took = t.elapsed();
    assert_down(&obs, "timed out after ");
    assert_down(&obs, "ms while writing to ");
    // Read on a second connection while the write waited: they pass.
    assert_down(&obs, "; reads still pass (probed_canary read in ");
    assert_by_deadline(took, deadline);
    assert_eq!(phases(&obs), ["connect", "write"]);

    // The abandoned INSERT is still waiting on the server (it has 500 ms of grace)...
    assert_eq!(
        pg_scalar(&mut watch, &waiting).await,
        1,
        "the abandoned INSERT is not seen"
    );
    // ...and its statement_timeout ends it soon, while the lock is still held: a stuck
    // database does not collect one waiting session per check.
    let gone = tokio::time::timeout(Duration::from_secs(5), async {
        while pg_scalar(&mut watch, &waiting).await != 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        gone.is_ok(),
        "the abandoned INSERT still waits on the server"
    );
    assert!(db.locked());
    db.release().await.unwrap();
    assert_up(&run(&s).await);

    // Locked for reads too: the reason says so.
    db.lock_all(table).await.unwrap();
    let obs = run_in(&s, &env(), deadline).await;
    assert_down(&obs, "ms while writing to ");
    assert_down(&obs, "; reads of probed_canary did not answer either");
    db.release().await.unwrap();
    assert_up(&run(&s).await);
}

#[tokio::test]
async fn postgres_refused_port_is_down() {
    let obs = run(&spec(
        "{dsn: 'postgres://probe:s3cretpass@127.0.0.1:1/app'}",
    ))
    .await;
    assert_down(
        &obs,
        "cannot connect to postgres://probe@127.0.0.1:1/app: connection refused",
    );
    assert!(!reason(&obs).contains("s3cretpass"));
}

#[tokio::test]
async fn postgres_server_that_never_answers_is_down_at_the_deadline() {
    // Accepts connections and keeps them open without a word.
    let port = tcp_server(hold).await.port();
    let deadline = Duration::from_millis(500);
    let t = Instant::now();
    let obs = run_in(
        &spec(&format!("{{dsn: 'postgres://p@127.0.0.1:{port}/x'}}")),
        &env(),
        deadline,
    )
    .await;
    assert_by_deadline(t.elapsed(), deadline);
    assert_down(&obs, "while connecting to postgres://p@127.0.0.1:");
}

#[tokio::test]
async fn postgres_replica_on_the_same_server_sees_the_write() {
    let db = pg_lab().await;
    let s = spec(&format!(
        "{{dsn: '{0}', replica_dsn: '{0}', expect: {{replication_under: 5s}}}}",
        db.dsn()
    ));
    let obs = run(&s).await;
    assert_up(&obs);
    assert_eq!(
        phases(&obs),
        [
            "connect",
            "replica_connect",
            "write",
            "read",
            "replication",
            "prune"
        ]
    );
}

#[tokio::test]
async fn postgres_slow_write_is_down_with_the_figure() {
    let db = pg_lab().await;
    let s = spec(&format!(
        "{{dsn: '{}', expect: {{write_under: 1us, read_under: 10s}}}}",
        db.dsn()
    ));
    let obs = run(&s).await;
    assert_down(&obs, "write took ");
    assert_down(&obs, " (write_under 1µs)");
    assert!(!reason(&obs).contains("read took"), "{}", reason(&obs));
}

// ---- MariaDB -------------------------------------------------------------------------

#[tokio::test]
async fn mariadb_writes_reads_and_prunes_to_keep() {
    let table = unique("probed_t");
    let mut cleanup = Cleanup::default();
    cleanup.my(
        &format!("{MY}/test"),
        format!("DROP TABLE IF EXISTS {table}"),
    );
    // `mariadb://` is the MySQL protocol.
    let s = spec(&format!(
        "{{dsn: 'mariadb://root@127.0.0.1:3306/test', table: {table}, keep: 2}}"
    ));
    for _ in 0..4 {
        let obs = run(&s).await;
        assert_up(&obs);
        assert_eq!(phases(&obs), ["connect", "write", "read", "prune"]);
    }
    assert_eq!(my_count(&table).await, 2);
}

/// A database that refuses writes. `SET GLOBAL read_only` would do it, but it is global:
/// it would fail every other test writing to this server meanwhile. A user with only
/// SELECT gets the same treatment (writes refused, reads pass) for this test alone.
#[tokio::test]
async fn mariadb_refused_write_is_down_while_reads_pass() {
    let table = unique("probed_t");
    let user = unique("probed_ro");
    let mut cleanup = Cleanup::default();
    cleanup.my(
        &format!("{MY}/test"),
        format!("DROP TABLE IF EXISTS {table}"),
    );
    cleanup.my(
        &format!("{MY}/test"),
        format!("DROP USER IF EXISTS '{user}'@'%'"),
    );
    assert_up(&run(&spec(&format!("{{dsn: '{MY}/test', table: {table}}}"))).await);
    my(&format!(
        "CREATE USER '{user}'@'%' IDENTIFIED BY 'ro-pass-9876'"
    ))
    .await;
    my(&format!("GRANT SELECT ON test.* TO '{user}'@'%'")).await;

    let s = spec(&format!(
        "{{dsn: 'mysql://{user}:ro-pass-9876@127.0.0.1:3306/test', table: {table}}}"
    ));
    let obs = run(&s).await;
    assert_down(&obs, "write refused: INSERT command denied to user");
    assert_down(&obs, "(error 1142); reads still pass");
    assert!(!reason(&obs).contains("ro-pass-9876"));
}

#[tokio::test]
async fn mariadb_wrong_password_is_down_without_the_password() {
    let obs = run(&spec(
        "{dsn: 'mysql://root:wrong-pass-4321@127.0.0.1:3306/test'}",
    ))
    .await;
    assert_down(
        &obs,
        "cannot connect to mysql://root@127.0.0.1:3306/test: authentication failed: ",
    );
    assert_down(&obs, "(error 1045)");
    assert!(
        !reason(&obs).contains("wrong-pass-4321"),
        "{}",
        reason(&obs)
    );
}

#[tokio::test]
async fn mariadb_write_blocked_by_a_table_lock_is_down_at_the_deadline() {
    let table = unique("probed_t");
    let mut cleanup = Cleanup::default();
    cleanup.my(
        &format!("{MY}/test"),
        format!("DROP TABLE IF EXISTS {table}"),
    );
    let s = spec(&format!("{{dsn: '{MY}/test', table: {table}}}"));
    assert_up(&run(&s).await);

    let mut holder = MySqlConnection::connect(&format!("{MY}/test"))
        .await
        .unwrap();
    sqlx::raw_sql(AssertSqlSafe(format!("LOCK TABLES {table} WRITE")))
        .execute(&mut holder)
        .await
        .unwrap();
    // Watches the server's sessions from a connection opened beforehand.
    let mut watch = MySqlConnection::connect(&format!("{MY}/test"))
        .await
        .unwrap();
    let waiting = format!(
        "SELECT count(*) FROM information_schema.processlist \
         WHERE info LIKE 'INSERT INTO {table} %'"
    );
    let deadline = Duration::from_millis(800);
    let t = Instant::now();
    let obs = run_in(&s, &env(), deadline).await;
    let took = t.elapsed();
    assert_down(&obs, "ms while writing to ");
    // LOCK TABLES ... WRITE keeps other sessions' reads out too.
    assert_down(&obs, "did not answer either");
    assert_by_deadline(took, deadline);

    // The abandoned INSERT is still waiting on the server (it has 500 ms of grace)...
    assert_eq!(my_scalar(&mut watch, &waiting).await, 1);
    // ...and the session's timeouts end it soon, while the lock is still held (the
    // server's default lock_wait_timeout is a day).
    let gone = tokio::time::timeout(Duration::from_secs(10), async {
        while my_scalar(&mut watch, &waiting).await != 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        gone.is_ok(),
        "the abandoned INSERT still waits on the server"
    );
    sqlx::raw_sql("UNLOCK TABLES")
        .execute(&mut holder)
        .await
        .unwrap();
}

// ---- SQLite --------------------------------------------------------------------------

#[tokio::test]
async fn sqlite_writes_prunes_and_detects_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("canary.db");
    let s = spec(&format!(
        "{{dsn: 'sqlite://{}?mode=rwc', keep: 2}}",
        file.display()
    ));
    for _ in 0..4 {
        let obs = run(&s).await;
        assert_up(&obs);
        assert_eq!(phases(&obs), ["connect", "write", "read", "prune"]);
    }
    let mut c = SqliteConnection::connect(&format!("sqlite://{}", file.display()))
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM probed_canary")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(n, 2);

    let ro = spec(&format!("{{dsn: 'sqlite://{}?mode=ro'}}", file.display()));
    let obs = run(&ro).await;
    assert_down(
        &obs,
        "database is read-only: attempt to write a readonly database",
    );
    assert_down(&obs, "; reads still pass");
}

// ---- spec ----------------------------------------------------------------------------

fn errors(yaml: &str) -> Vec<String> {
    spec(yaml)
        .validate()
        .into_iter()
        .map(|e| format!("{}: {}", e.path, e.message))
        .collect()
}

#[test]
fn validation_names_every_problem_without_the_password() {
    let cases: &[(&str, &[&str])] = &[
        ("{dsn: 'postgres://u:pw12345@db/app'}", &[]),
        (
            "{dsn: 'oracle://u:pw12345@db/app'}",
            &["dsn: unsupported dsn scheme \"oracle\""],
        ),
        ("{dsn: 'no scheme here'}", &["dsn: dsn has no scheme"]),
        ("{dsn: 'sqlite://'}", &["dsn: sqlite dsn has no path"]),
        (
            "{dsn: 'postgres://db/app', table: 'x; DROP TABLE y'}",
            &["table: invalid table name"],
        ),
        ("{dsn: 'postgres://db/app', table: monitoring.canary}", &[]),
        (
            "{dsn: 'postgres://db/app', table: a.b.c}",
            &["table: invalid"],
        ),
        (
            "{dsn: 'postgres://db/app', keep: 0}",
            &["keep: must be at least 1"],
        ),
        (
            "{dsn: 'postgres://db/app', expect: {replication_under: 1s}}",
            &["expect.replication_under: needs replica_dsn"],
        ),
        (
            "{dsn: 'postgres://db/app', replica_dsn: 'mysql://r/app'}",
            &["replica_dsn: a replica of a postgres database must be postgres too"],
        ),
        (
            "{dsn: 'postgres://db/app', expect: {write_under: 0s}}",
            &["expect.write_under: must be more than 0"],
        ),
    ];
    for (yaml, want) in cases {
        let got = errors(yaml);
        assert_eq!(got.len(), want.len(), "{yaml}: {got:?}");
        for (g, w) in got.iter().zip(want.iter()) {
            assert!(g.starts_with(w), "{yaml}: {g:?} should start with {w:?}");
            assert!(!g.contains("pw12345"), "{g}");
        }
    }
    assert!(
        serde_yaml::from_str::<Spec>("{dsn: 'postgres://db/app', tabel: x}").is_err(),
        "unknown fields are refused"
    );
}

#[test]
fn dsns_are_shown_without_credentials() {
    let cases = [
        (
            "postgres://probe:s3cret@DB.example.com/app",
            "postgres://probe@db.example.com:5432/app",
        ),
        (
            "postgresql://probe:s3cret@db:6432/app?sslmode=require&password=s3cret",
            "postgresql://probe@db:6432/app?sslmode=***&password=***",
        ),
        (
            "mariadb://root:s3cret@10.0.0.5/shop",
            "mariadb://root@10.0.0.5:3306/shop",
        ),
        (
            "sqlite:///var/lib/app.db?mode=rw",
            "sqlite:///var/lib/app.db?mode=rw",
        ),
    ];
    for (dsn, shown) in cases {
        let d = parse_dsn(dsn).unwrap_or_else(|e| panic!("{dsn}: {e}"));
        assert_eq!(d.display, shown);
    }
    assert_eq!(parse_dsn("mariadb://u@h/d").unwrap().url, "mysql://u@h/d");
    assert_eq!(
        spec("{dsn: 'postgres://u:p@Db.Example.com/app'}")
            .target_host()
            .as_deref(),
        Some("db.example.com")
    );
    assert_eq!(spec("{dsn: 'sqlite://x.db'}").target_host(), None);
    // The password never shows through Debug either.
    let s = spec("{dsn: 'postgres://u:s3cret@db/app'}");
    assert!(!format!("{s:?}").contains("s3cret"));
}

#[test]
fn relative_sqlite_paths_follow_the_probe_file() {
    let mut s = spec("{dsn: 'sqlite://data/canary.db?mode=rwc', replica_dsn: 'sqlite:///abs.db'}");
    s.resolve_paths(Path::new("/etc/probed/probes"));
    assert_eq!(
        s.dsn.expose(),
        "sqlite:///etc/probed/probes/data/canary.db?mode=rwc"
    );
    assert_eq!(s.replica_dsn.as_ref().unwrap().expose(), "sqlite:///abs.db");
    let mut pg = spec("{dsn: 'postgres://db/app'}");
    pg.resolve_paths(Path::new("/etc"));
    assert_eq!(pg.dsn.expose(), "postgres://db/app");
}
