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
use crate::store::{
    DAY_MS, DaemonRow, HOUR_MS, HourRollup, LastResult, RemoteVote, ResultRow, SavedProbe,
    StoreError,
};

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

    /// The id of location `name`, registering it if new: ids count from 0, the location
    /// every row written before locations existed carries. A new location's verdicts start
    /// from the probes' own states.
    pub(crate) async fn location_id(&self, name: &str) -> Result<i64, StoreError> {
        // Two daemons registering new locations at once may draw the same id: the loser's
        // insert fails on the key, and it draws again.
        for _ in 0..10 {
            if let Some(id) =
                sqlx::query_scalar::<_, i64>("SELECT id FROM locations WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&self.write)
                    .await?
            {
                return Ok(id);
            }
            let mut tx = self.write.begin().await?;
            let inserted = sqlx::query_scalar::<_, i64>(
                "INSERT INTO locations (id, name) \
                 SELECT COALESCE(max(id) + 1, 0), $1 FROM locations WHERE true \
                 ON CONFLICT DO NOTHING RETURNING id",
            )
            .bind(name)
            .fetch_optional(&mut *tx)
            .await;
            let id = match inserted {
                Ok(Some(id)) => id,
                // Someone else took the id or the name meanwhile: look again.
                Ok(None) => continue,
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => continue,
                Err(e) => return Err(e.into()),
            };
            sqlx::query(
                "INSERT INTO probe_locations (probe_id, loc, state, state_since, \
                 consecutive_failures, consecutive_successes, recent, checked_at, ok, \
                 duration_us, error) \
                 SELECT id, $1, state, state_since, consecutive_failures, \
                 consecutive_successes, recent, last_checked_at, last_ok, last_duration_us, \
                 last_error FROM probes WHERE true ON CONFLICT DO NOTHING",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            return Ok(id);
        }
        Err(StoreError::Query(sqlx::Error::Protocol(format!(
            "cannot register location {name:?}: its id kept being taken"
        ))))
    }

    pub(crate) async fn register(
        &self,
        probes: &[(String, &'static str)],
        loc: i64,
    ) -> Result<HashMap<String, SavedProbe>, StoreError> {
        let mut tx = self.write.begin().await?;
        for chunk in probes.chunks(400) {
            let mut q: QueryBuilder<Database> =
                QueryBuilder::new("INSERT INTO probes (name, kind) ");
            q.push_values(chunk, |mut b, (name, kind)| {
                b.push_bind(name.clone()).push_bind(*kind);
            });
            q.push(" ON CONFLICT (name) DO UPDATE SET kind = excluded.kind");
            // Its text changes with the chunk's size: not kept prepared (see `ids_in`).
            q.build().persistent(false).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        let rows = sqlx::query(
            "SELECT p.id, p.name, p.state AS overall, p.state_since AS overall_since, \
             l.state, l.state_since, l.consecutive_failures, l.consecutive_successes, \
             l.recent, l.checked_at, l.ok, l.duration_us, l.error \
             FROM probes p LEFT JOIN probe_locations l ON l.probe_id = p.id AND l.loc = $1",
        )
        .bind(loc)
        .fetch_all(&self.write)
        .await?;
        let mut out = HashMap::with_capacity(rows.len());
        for r in rows {
            let name: String = r.get("name");
            let last = r.get::<Option<i64>, _>("checked_at").map(|at| LastResult {
                at,
                ok: r.get::<Option<i64>, _>("ok") == Some(1),
                duration_us: r.get::<Option<i64>, _>("duration_us").unwrap_or(0),
                error: r.get("error"),
                status_code: None,
            });
            let state = r.get::<Option<String>, _>("state");
            out.insert(
                name,
                SavedProbe {
                    id: r.get("id"),
                    verdicts: Verdicts {
                        state: state
                            .as_deref()
                            .and_then(State::parse)
                            .unwrap_or(State::Pending),
                        since: r.get("state_since"),
                        consecutive_failures: r
                            .get::<Option<i64>, _>("consecutive_failures")
                            .unwrap_or(0) as u32,
                        consecutive_successes: r
                            .get::<Option<i64>, _>("consecutive_successes")
                            .unwrap_or(0) as u32,
                        recent: r.get::<Option<i64>, _>("recent").unwrap_or(0) as u64,
                    },
                    overall: (
                        State::parse(r.get("overall")).unwrap_or(State::Pending),
                        r.get("overall_since"),
                    ),
                    last,
                },
            );
        }
        Ok(out)
    }

    pub(crate) async fn remote_votes(
        &self,
        loc: i64,
        since_ms: i64,
    ) -> Result<Vec<RemoteVote>, StoreError> {
        let rows = sqlx::query(
            "SELECT pl.probe_id, l.name, pl.state, pl.checked_at, pl.error \
             FROM probe_locations pl JOIN locations l ON l.id = pl.loc \
             WHERE pl.loc != $1 AND pl.checked_at >= $2",
        )
        .bind(loc)
        .bind(since_ms)
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .iter()
            .map(|r| RemoteVote {
                probe_id: r.get("probe_id"),
                location: r.get("name"),
                state: State::parse(r.get("state")).unwrap_or(State::Pending),
                checked_at: r.get("checked_at"),
                error: r.get("error"),
            })
            .collect())
    }

    pub(crate) async fn overall_changes(
        &self,
        since_ms: i64,
    ) -> Result<Vec<(i64, State, Option<i64>)>, StoreError> {
        let rows = sqlx::query("SELECT id, state, state_since FROM probes WHERE state_since >= $1")
            .bind(since_ms)
            .fetch_all(&self.read)
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                (
                    r.get("id"),
                    State::parse(r.get("state")).unwrap_or(State::Pending),
                    r.get("state_since"),
                )
            })
            .collect())
    }

    pub(crate) async fn daemon_seen(&self, d: &DaemonRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO daemons (instance, location, started_at, seen_at, blind, version) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (instance) DO UPDATE SET \
             location = excluded.location, started_at = excluded.started_at, \
             seen_at = excluded.seen_at, blind = excluded.blind, version = excluded.version",
        )
        .bind(&d.instance)
        .bind(&d.location)
        .bind(d.started_at)
        .bind(d.seen_at)
        .bind(&d.blind)
        .bind(&d.version)
        .execute(&self.write)
        .await?;
        Ok(())
    }

    pub(crate) async fn daemons(&self) -> Result<Vec<DaemonRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT instance, location, started_at, seen_at, blind, version FROM daemons \
             ORDER BY instance",
        )
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .iter()
            .map(|r| DaemonRow {
                instance: r.get("instance"),
                location: r.get("location"),
                started_at: r.get("started_at"),
                seen_at: r.get("seen_at"),
                blind: r.get("blind"),
                version: r.get("version"),
            })
            .collect())
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

    /// This location's runs (`loc`) after its own verdict last recovered from down.
    pub(crate) async fn slo_history(
        &self,
        probe_id: i64,
        loc: i64,
        since_ms: i64,
    ) -> Result<Vec<(i64, bool, Duration)>, StoreError> {
        let row = sqlx::query(
            "SELECT (SELECT max(at) FROM state_changes WHERE probe_id = $1 AND loc = $2 \
             AND to_state = 'down') AS went, \
             (SELECT max(at) FROM state_changes WHERE probe_id = $1 AND loc = $2 \
             AND from_state = 'down') AS back",
        )
        .bind(probe_id)
        .bind(loc)
        .fetch_one(&self.read)
        .await?;
        let (went, back): (Option<i64>, Option<i64>) = (row.get("went"), row.get("back"));
        let from = match (went, back) {
            (Some(w), b) if b.is_none_or(|b| b < w) => return Ok(Vec::new()),
            (_, Some(b)) => since_ms.max(b + 1),
            _ => since_ms,
        };
        let rows = sqlx::query(
            "SELECT at, ok, duration_us FROM results WHERE probe_id = $1 AND loc = $2 \
             AND at >= $3 ORDER BY at",
        )
        .bind(probe_id)
        .bind(loc)
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
            // A constant: no input in this text.
            sqlx::AssertSqlSafe(format!("SELECT probe_id, {PUSH_COLUMNS} FROM pushes")),
        )
        .fetch_all(&self.write)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.get("probe_id"), push_state(&r)))
            .collect())
    }

    /// One ping in one transaction: its log row (the last [`PINGS_KEPT`] per probe), the
    /// run it opens or closes (`?rid=`, else the last `start`), and the probe's ping state,
    /// which a `log` ping leaves as it was but for the count.
    pub(crate) async fn push_ping(
        &self,
        probe_id: i64,
        ping: &crate::probe::push::Ping,
        now_ms: i64,
    ) -> Result<crate::probe::push::PushState, StoreError> {
        let kind = ping.kind.as_str();
        let mut tx = self.write.begin().await?;
        sqlx::query(
            "INSERT INTO pushes (probe_id, first_seen_at) VALUES ($1, $2) \
             ON CONFLICT (probe_id) DO NOTHING",
        )
        .bind(probe_id)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        // The run this ping finishes: the start with its rid, else the last start (when the
        // last ping was one), as healthchecks.io times runs.
        let mut duration_ms = None;
        if matches!(kind, "ok" | "fail") {
            let started: Option<i64> = match &ping.rid {
                Some(rid) => {
                    sqlx::query_scalar(
                        "DELETE FROM push_runs WHERE probe_id = $1 AND rid = $2 \
                         RETURNING started_at",
                    )
                    .bind(probe_id)
                    .bind(rid)
                    .fetch_optional(&mut *tx)
                    .await?
                }
                None => sqlx::query_scalar(
                    "SELECT started_at FROM pushes WHERE probe_id = $1 AND last_kind = 'start'",
                )
                .bind(probe_id)
                .fetch_optional(&mut *tx)
                .await?
                .flatten(),
            };
            duration_ms = started.map(|t| (now_ms - t).max(0));
        }
        if kind == "start"
            && let Some(rid) = &ping.rid
        {
            sqlx::query(
                "INSERT INTO push_runs (probe_id, rid, started_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (probe_id, rid) DO UPDATE SET started_at = excluded.started_at",
            )
            .bind(probe_id)
            .bind(rid)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
            // Runs never finished are forgotten after a week.
            sqlx::query("DELETE FROM push_runs WHERE probe_id = $1 AND started_at < $2")
                .bind(probe_id)
                .bind(now_ms - 7 * DAY_MS)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "INSERT INTO push_pings (probe_id, at, kind, exit_status, rid, duration_ms, body) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(probe_id)
        .bind(now_ms)
        .bind(kind)
        .bind(ping.exit_status)
        .bind(ping.rid.as_deref())
        .bind(duration_ms)
        .bind(ping.body.as_deref())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM push_pings WHERE probe_id = $1 AND at < \
             (SELECT at FROM push_pings WHERE probe_id = $1 ORDER BY at DESC LIMIT 1 OFFSET $2)",
        )
        .bind(probe_id)
        .bind(PINGS_KEPT - 1)
        .execute(&mut *tx)
        .await?;
        let row = if kind == "log" {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE pushes SET pings = pings + 1 WHERE probe_id = $1 RETURNING {PUSH_COLUMNS}"
            )))
            .bind(probe_id)
            .fetch_one(&mut *tx)
            .await?
        } else {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "UPDATE pushes SET last_ping_at = $2, last_kind = $3, exit_status = $4, \
                 last_success_at = CASE WHEN $3 = 'ok' THEN $2 ELSE last_success_at END, \
                 started_at = CASE WHEN $3 = 'start' THEN $2 ELSE NULL END, \
                 last_body = $5, \
                 last_duration_ms = CASE WHEN $3 = 'start' THEN last_duration_ms ELSE $6 END, \
                 pings = pings + 1 WHERE probe_id = $1 RETURNING {PUSH_COLUMNS}"
            )))
            .bind(probe_id)
            .bind(now_ms)
            .bind(kind)
            .bind(ping.exit_status)
            .bind(ping.body.as_deref())
            .bind(duration_ms)
            .fetch_one(&mut *tx)
            .await?
        };
        tx.commit().await?;
        Ok(push_state(&row))
    }

    pub(crate) async fn recent_pings(
        &self,
        probe: &str,
        limit: u32,
    ) -> Result<Vec<crate::probe::push::PingRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT pp.at, pp.kind, pp.exit_status, pp.rid, pp.duration_ms, pp.body \
             FROM push_pings pp JOIN probes p ON p.id = pp.probe_id \
             WHERE p.name = $1 ORDER BY pp.at DESC LIMIT $2",
        )
        .bind(probe)
        .bind(limit.min(PINGS_KEPT as u32) as i64)
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let at: i64 = r.get("at");
                crate::probe::push::PingRow {
                    at: crate::time::rfc3339(at),
                    kind: r.get("kind"),
                    exit_status: r.get("exit_status"),
                    rid: r.get("rid"),
                    duration_ms: r.get("duration_ms"),
                    body: r.get("body"),
                }
            })
            .collect())
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
        last_body: r.get("last_body"),
        last_duration_ms: r.get("last_duration_ms"),
    }
}

/// The columns [`push_state`] reads.
const PUSH_COLUMNS: &str = "first_seen_at, last_ping_at, last_kind, exit_status, \
                            last_success_at, started_at, pings, last_body, last_duration_ms";

/// Pings kept per push probe in `push_pings`.
const PINGS_KEPT: i64 = 100;

/// `$1` placeholders in the text are fine on both; this is the one shape that differs by
/// more than a word: SQLite's two-argument `max(a, b)` is PostgreSQL's `greatest(a, b)`.
const GREATEST: &str = if PG { "greatest" } else { "max" };
