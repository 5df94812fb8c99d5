//! Scratch PostgreSQL databases on the test server (`PROBED_TEST_PG`, else the machine's own
//! at 127.0.0.1:5432 with trust auth, which `deploy/test.sh` starts): one per test, dropped
//! with its handle, so tests run in parallel and leave nothing behind.

use sqlx::Connection;

/// The server the tests use.
pub fn server() -> String {
    std::env::var("PROBED_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh database, dropped (with whatever is still connected to it) when this is.
pub struct ScratchDb {
    pub name: String,
    /// Its URL, for `store: { url: ... }`.
    pub url: String,
}

impl ScratchDb {
    pub fn create() -> ScratchDb {
        let name = format!(
            "probed_e2e_{}_{}",
            std::process::id(),
            rand::random::<u32>()
        );
        let admin_url = server();
        let n = name.clone();
        block_on(async move {
            let mut admin = sqlx::PgConnection::connect(&admin_url)
                .await
                .unwrap_or_else(|e| {
                    panic!("cannot reach the test PostgreSQL ({e}); deploy/test.sh starts it")
                });
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {n}")))
                .execute(&mut admin)
                .await
                .unwrap();
        });
        let mut url = reqwest::Url::parse(&server()).unwrap();
        url.set_path(&format!("/{name}"));
        ScratchDb {
            name,
            url: url.to_string(),
        }
    }

    /// Every row of `sql` in this database, each column read as text.
    pub fn rows(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        let (url, sql) = (self.url.clone(), sql.to_owned());
        block_on(async move {
            use sqlx::Row;
            let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .fetch_all(&mut c)
                .await
                .unwrap()
                .iter()
                .map(|r| {
                    (0..r.len())
                        .map(|i| r.get::<Option<String>, _>(i))
                        .collect()
                })
                .collect()
        })
    }
}

impl Drop for ScratchDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        block_on(async move {
            if let Ok(mut admin) = sqlx::PgConnection::connect(&server()).await {
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await;
            }
        });
    }
}

/// Runs `f` to completion on a runtime of its own, on a thread of its own (so it works from
/// inside a test's runtime too).
fn block_on<T: Send + 'static>(f: impl std::future::Future<Output = T> + Send + 'static) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    })
    .join()
    .unwrap()
}

/// A PostgreSQL server of the test's own (initdb in a temporary folder), in network
/// namespace `ns` on `host`, so a test can stop, crash and restart it. Runs as the
/// `postgres` user (initdb and postgres refuse root).
pub struct PrivatePg {
    dir: tempfile::TempDir,
    ns: String,
    pub host: String,
    pub port: u16,
    child: Option<std::process::Child>,
}

/// A program of the machine's PostgreSQL (`/usr/lib/postgresql/<version>/bin/<name>`).
fn pg_bin(name: &str) -> std::path::PathBuf {
    let mut found: Vec<std::path::PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path().join("bin").join(name))
                .filter(|p| p.exists())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!("no {name} under /usr/lib/postgresql (deploy/test.sh installs postgresql)")
    })
}

impl PrivatePg {
    pub fn start_in(ns: &str, host: &str) -> PrivatePg {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let data = dir.path().join("pg");
        let st = std::process::Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(pg_bin("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8"])
            .output()
            .unwrap();
        assert!(
            st.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&st.stderr)
        );
        let hba = data.join("pg_hba.conf");
        let mut rules = std::fs::read_to_string(&hba).unwrap();
        rules.push_str("host all all 10.0.0.0/8 trust\n");
        std::fs::write(&hba, rules).unwrap();
        let mut pg = PrivatePg {
            dir,
            ns: ns.to_owned(),
            host: host.to_owned(),
            port: 5432,
            child: None,
        };
        pg.start();
        pg.psql("CREATE DATABASE probed");
        pg
    }

    /// Starts the server (again) on the same folder and waits until it takes connections.
    pub fn start(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("pg.log")).unwrap();
        let child = std::process::Command::new("ip")
            .args(["netns", "exec", &self.ns, "runuser", "-u", "postgres", "--"])
            .arg(pg_bin("postgres"))
            .arg("-D")
            .arg(self.dir.path().join("pg"))
            .arg("-k")
            .arg(self.dir.path())
            .args([
                "-c",
                &format!("listen_addresses={}", self.host),
                "-p",
                &self.port.to_string(),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let t0 = std::time::Instant::now();
        loop {
            let ok = std::process::Command::new("ip")
                .args(["netns", "exec", &self.ns])
                .arg(pg_bin("pg_isready"))
                .args(["-q", "-h", &self.host, "-p", &self.port.to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            assert!(
                t0.elapsed() < std::time::Duration::from_secs(30),
                "the private PostgreSQL did not start: {}",
                std::fs::read_to_string(self.dir.path().join("pg.log")).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// A fast shutdown (SIGINT), waited for.
    pub fn stop(&mut self) {
        // The postmaster runs under runuser: stop it by its pid file.
        let pid = std::fs::read_to_string(self.dir.path().join("pg/postmaster.pid"))
            .ok()
            .and_then(|t| t.lines().next().map(str::to_owned));
        if let Some(pid) = pid {
            let _ = std::process::Command::new("kill")
                .args(["-INT", &pid])
                .status();
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }

    /// The URL of database `db` on it.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@{}:{}/{db}", self.host, self.port)
    }

    /// Runs `sql` with psql (inside the namespace) on database `probed`; its output, rows as
    /// `a|b` lines.
    pub fn psql_in(&self, db: &str, sql: &str) -> String {
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", &self.ns, "psql", "-h", &self.host])
            .args(["-p", &self.port.to_string(), "-U", "postgres", "-d", db])
            .args(["-qtA", "-c", sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    pub fn psql(&self, sql: &str) -> String {
        self.psql_in("postgres", sql)
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        self.stop();
    }
}
