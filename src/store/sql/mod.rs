//! The store's queries, written once and compiled once per backend: this folder is the
//! module `sql` of both `store::sqlite` and `store::postgres`, where `super::Database` is
//! `sqlx::Sqlite` or `sqlx::Postgres` and `super::PG` says which. Every query and every
//! test here runs on both. The SQL is the subset both dialects speak (`$1` placeholders,
//! `ON CONFLICT ... DO UPDATE`, `RETURNING`); where they part, `if PG { .. } else { .. }`
//! picks the text, a constant the compiler folds away.
//!
//! What lives in this folder: [`Db`] (the pools) with probe registration, results read
//! back, rollups, retention and push pings (this file); the writer's transaction
//! (`writer.rs`); incidents, the outbox, silences, the public views' reads and the clock
//! shift, each in a file of its own. The public `Store` handle (`store/mod.rs`) hands each
//! call to the backend it was opened on.

use std::collections::HashMap;
use std::time::Duration;

use sqlx::{QueryBuilder, Row};

use super::{Database, PG};
use crate::evaluate::{State, Verdicts};
use crate::store::{DAY_MS, HOUR_MS, HourRollup, LastResult, ResultRow, SavedProbe, StoreError};

mod clock;
pub(super) mod incidents;
mod outbox;
mod silences;
#[cfg(test)]
pub(crate) mod tests;
mod views;
pub(super) mod writer;

#[cfg(test)]
pub(crate) use super::test_store;

/// A pool of this backend's connections.
pub(crate) type Pool = sqlx::Pool<Database>;
/// One connection of this backend (inside a transaction, as `&mut *tx`).
pub(crate) type Conn = <Database as sqlx::Database>::Connection;
type DbRow = <Database as sqlx::Database>::Row;

/// The pools of one opened store. `read` serves the API and the dispatcher's reads; `write`
/// the writer and the short transactions of the alert path. On SQLite they are separate
/// (one write connection, SQLite having one writer anyway; a read-only pool beside it); on
/// PostgreSQL one pool serves both.
pub(crate) struct Db {
    pub(crate) read: Pool,
    pub(crate) write: Pool,
}

impl Db {
    /// `meta.store_id`, drawn when the schema was made.
    pub(crate) async fn store_id(&self) -> Result<String, sqlx::Error> {
        sqlx::query_scalar("SELECT value FROM meta WHERE key = 'store_id'")
            .fetch_one(&self.write)
            .await
    }

    pub(crate) async fn register(
        &self,
        probes: &[(String, &'static str)],
    ) -> Result<HashMap<String, SavedProbe>, StoreError> {
        let mut tx = self.write.begin().await?;
        for chunk in probes.chunks(400) {
            let mut q: QueryBuilder<Database> =
                QueryBuilder::new("INSERT INTO probes (name, kind) ");
            q.push_values(chunk, |mut b, (name, kind)| {
                b.push_bind(name.clone()).push_bind(*kind);
            });
            q.push(" ON CONFLICT (name) DO UPDATE SET kind = excluded.kind");
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

    pub(crate) async fn rollups_since(
        &self,
        since_ms: i64,
    ) -> Result<HashMap<i64, Vec<HourRollup>>, StoreError> {
        let rows = sqlx::query(
            "SELECT probe_id, hour, runs, ok FROM rollups_hourly WHERE hour >= $1 \
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

    pub(crate) async fn slo_history(
        &self,
        probe_id: i64,
        since_ms: i64,
    ) -> Result<Vec<(i64, bool, Duration)>, StoreError> {
        let row = sqlx::query(
            "SELECT (SELECT max(at) FROM state_changes WHERE probe_id = $1 AND to_state = 'down') \
             AS went, (SELECT max(at) FROM state_changes WHERE probe_id = $1 AND from_state = 'down') \
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
            "SELECT at, ok, duration_us FROM results WHERE probe_id = $1 AND at >= $2 ORDER BY at",
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

    pub(crate) async fn results(
        &self,
        probe: &str,
        limit: u32,
        before_ms: Option<i64>,
    ) -> Result<Option<Vec<ResultRow>>, StoreError> {
        let Some(id) = sqlx::query_scalar::<_, i64>("SELECT id FROM probes WHERE name = $1")
            .bind(probe)
            .fetch_optional(&self.read)
            .await?
        else {
            return Ok(None);
        };
        let rows = sqlx::query(
            "SELECT at, ok, duration_us, status_code, error, phases, ip, cert_expiry, size \
             FROM results WHERE probe_id = $1 AND at < $2 ORDER BY at DESC LIMIT $3",
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

    pub(crate) async fn prune(&self, keep: Duration, now_ms: i64) -> Result<u64, StoreError> {
        let cutoff = now_ms - keep.as_millis() as i64;
        let ids: Vec<i64> = sqlx::query_scalar("SELECT id FROM probes")
            .fetch_all(&self.read)
            .await?;
        let mut deleted = 0;
        for id in ids {
            loop {
                let n = sqlx::query(
                    "DELETE FROM results WHERE probe_id = $1 AND at IN \
                     (SELECT at FROM results WHERE probe_id = $1 AND at < $2 LIMIT 5000)",
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
        sqlx::query("DELETE FROM rollups_hourly WHERE hour < $1")
            .bind(now_ms - 400 * DAY_MS)
            .execute(&self.write)
            .await?;
        sqlx::query("DELETE FROM rollups_daily WHERE day < $1")
            .bind(now_ms - 400 * DAY_MS)
            .execute(&self.write)
            .await?;
        // Delivery records of settled messages: 90 days (incidents themselves are kept).
        let settled = now_ms - 90 * DAY_MS;
        sqlx::query(
            "DELETE FROM attempts WHERE at < $1 AND outbox_id IN \
             (SELECT id FROM outbox WHERE status != 'pending')",
        )
        .bind(settled)
        .execute(&self.write)
        .await?;
        sqlx::query("DELETE FROM outbox WHERE status != 'pending' AND created_at < $1")
            .bind(settled)
            .execute(&self.write)
            .await?;
        Ok(deleted)
    }

    pub(crate) async fn push_states(
        &self,
        probe_ids: &[i64],
        now_ms: i64,
    ) -> Result<HashMap<i64, crate::probe::push::PushState>, StoreError> {
        for id in probe_ids {
            sqlx::query(
                "INSERT INTO pushes (probe_id, first_seen_at) VALUES ($1, $2) \
                 ON CONFLICT (probe_id) DO NOTHING",
            )
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

    pub(crate) async fn push_ping(
        &self,
        probe_id: i64,
        kind: &str,
        exit_status: Option<i64>,
        now_ms: i64,
    ) -> Result<crate::probe::push::PushState, StoreError> {
        let row = sqlx::query(
            "INSERT INTO pushes AS p (probe_id, first_seen_at, last_ping_at, last_kind, \
             exit_status, last_success_at, started_at, pings) \
             VALUES ($1, $2, $2, $3, $4, CASE WHEN $3 = 'ok' THEN $2 END, \
             CASE WHEN $3 = 'start' THEN $2 END, 1) \
             ON CONFLICT (probe_id) DO UPDATE SET last_ping_at = $2, last_kind = $3, \
             exit_status = $4, \
             last_success_at = CASE WHEN $3 = 'ok' THEN $2 ELSE p.last_success_at END, \
             started_at = CASE WHEN $3 = 'start' THEN $2 ELSE NULL END, pings = p.pings + 1 \
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

    pub(crate) async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }

    /// Runs a statement as written (tests only: setting up rows a test needs).
    #[cfg(test)]
    pub(crate) async fn exec_raw(&self, sql: &str) {
        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&self.write)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Every row of a query, each column read as an integer (tests only).
    #[cfg(test)]
    pub(crate) async fn ints_raw(&self, sql: &str) -> Vec<Vec<Option<i64>>> {
        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_all(&self.read)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .iter()
            .map(|r| (0..r.len()).map(|i| r.get::<Option<i64>, _>(i)).collect())
            .collect()
    }

    /// Every row of a query, each column read as text (tests only).
    #[cfg(test)]
    pub(crate) async fn texts_raw(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_all(&self.read)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| r.get::<Option<String>, _>(i))
                    .collect()
            })
            .collect()
    }
}

fn push_state(r: &DbRow) -> crate::probe::push::PushState {
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

/// `$1` placeholders in the text are fine on both; this is the one shape that differs by
/// more than a word: SQLite's two-argument `max(a, b)` is PostgreSQL's `greatest(a, b)`.
const GREATEST: &str = if PG { "greatest" } else { "max" };
