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
