//! The writer's transaction: one batch of results, the probes' state, rollups and state
//! changes (with their incidents and first pages), committed together.

use std::collections::HashMap;

use sqlx::QueryBuilder;

use super::{Conn, Database, Db, GREATEST, PG, incidents};
use crate::evaluate::Transition;
use crate::paging::Page;
use crate::probe::Observation;
use crate::store::{DAY_MS, HOUR_MS, OVERALL, Record, StateChange};

/// Rows per INSERT statement (10 parameters each, well under either backend's limit).
const ROWS_PER_INSERT: usize = 200;

/// Whether a multi-row statement of `rows` rows is kept prepared on its connection. Its text
/// changes with the row count, and sqlx keeps up to 100 prepared statements per connection:
/// every partial chunk size (1 to 199 rows) became a cached statement of its own, up to
/// 200 rows of compiled program each, about 9 MB of SQLite memory at 10,000 probes. Only the
/// full chunk, which recurs, is kept.
fn keep_prepared(rows: usize) -> bool {
    rows == ROWS_PER_INSERT
}

impl Db {
    /// Commits one batch in one transaction.
    /// `loc` is this daemon's location: its results and verdicts are written under it.
    pub(crate) async fn commit(
        &self,
        results: &[Record],
        changes: &[StateChange],
        loc: i64,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.write.begin().await?;
        let kept: Vec<&Record> = results.iter().filter(|r| r.keep).collect();
        for chunk in kept.chunks(ROWS_PER_INSERT) {
            let mut q: QueryBuilder<Database> = QueryBuilder::new(if PG {
                "INSERT INTO results (probe_id, at, loc, ok, duration_us, status_code, error, \
                 phases, ip, cert_expiry, size) "
            } else {
                "INSERT OR REPLACE INTO results (probe_id, at, loc, ok, duration_us, status_code, \
                 error, phases, ip, cert_expiry, size) "
            });
            q.push_values(chunk, |mut b, r| {
                let o = &r.obs;
                b.push_bind(r.probe_id)
                    .push_bind(r.at)
                    .push_bind(loc)
                    .push_bind(o.ok as i64)
                    .push_bind(o.duration.as_micros() as i64)
                    .push_bind(o.status_code.map(i64::from))
                    .push_bind(o.error.clone())
                    .push_bind(phases_json(o))
                    .push_bind(o.ip.map(|ip| ip.to_string()))
                    .push_bind(o.cert_expiry)
                    .push_bind(o.size.map(|s| s as i64));
            });
            if PG {
                // A result replaces one of the same probe and time, as SQLite's OR REPLACE.
                q.push(
                    " ON CONFLICT (probe_id, at, loc) DO UPDATE SET ok = excluded.ok, \
                     duration_us = excluded.duration_us, status_code = excluded.status_code, \
                     error = excluded.error, phases = excluded.phases, ip = excluded.ip, \
                     cert_expiry = excluded.cert_expiry, size = excluded.size",
                );
            }
            q.build()
                .persistent(keep_prepared(chunk.len()))
                .execute(&mut *tx)
                .await?;
        }
        // Rollups: one upsert per (probe, hour) and per (probe, day) in this batch.
        for (span, table, col) in [
            (HOUR_MS, "rollups_hourly", "hour"),
            (DAY_MS, "rollups_daily", "day"),
        ] {
            let mut spans: HashMap<(i64, i64), (i64, i64, i64, i64)> = HashMap::new();
            for r in &kept {
                let e = spans
                    .entry((r.probe_id, r.at - r.at.rem_euclid(span)))
                    .or_default();
                let us = r.obs.duration.as_micros() as i64;
                e.0 += 1;
                e.1 += r.obs.ok as i64;
                e.2 += us;
                e.3 = e.3.max(us);
            }
            let spans: Vec<_> = spans.into_iter().collect();
            // PostgreSQL wants the row being updated named; SQLite takes the bare column.
            let t = if PG {
                format!("{table}.")
            } else {
                String::new()
            };
            for chunk in spans.chunks(ROWS_PER_INSERT) {
                let mut q: QueryBuilder<Database> = QueryBuilder::new(format!(
                    "INSERT INTO {table} (probe_id, {col}, runs, ok, sum_duration_us, max_duration_us) "
                ));
                q.push_values(chunk, |mut b, ((id, at), (runs, ok, sum, max))| {
                    b.push_bind(*id)
                        .push_bind(*at)
                        .push_bind(*runs)
                        .push_bind(*ok)
                        .push_bind(*sum)
                        .push_bind(*max);
                });
                q.push(format!(
                    " ON CONFLICT (probe_id, {col}) DO UPDATE SET runs = {t}runs + excluded.runs, \
                     ok = {t}ok + excluded.ok, \
                     sum_duration_us = {t}sum_duration_us + excluded.sum_duration_us, \
                     max_duration_us = {GREATEST}({t}max_duration_us, excluded.max_duration_us)"
                ));
                q.build()
                    .persistent(keep_prepared(chunk.len()))
                    .execute(&mut *tx)
                    .await?;
            }
        }
        // The verdicts a change carries first: a newer result of the batch (below) wins.
        for c in changes {
            if let Some(v) = &c.verdicts {
                sqlx::query(
                    "INSERT INTO probe_locations (probe_id, loc, state, state_since, \
                     consecutive_failures, consecutive_successes, recent) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (probe_id, loc) DO UPDATE SET state = excluded.state, \
                     state_since = excluded.state_since, \
                     consecutive_failures = excluded.consecutive_failures, \
                     consecutive_successes = excluded.consecutive_successes, \
                     recent = excluded.recent",
                )
                .bind(c.probe_id)
                .bind(loc)
                .bind(v.state.as_str())
                .bind(v.since)
                .bind(v.consecutive_failures as i64)
                .bind(v.consecutive_successes as i64)
                .bind(v.recent as i64)
                .execute(&mut *tx)
                .await?;
            }
        }
        // This location's verdict on each probe: its state after the latest result of the
        // batch, and that result.
        let mut latest: HashMap<i64, &Record> = HashMap::new();
        for r in results {
            latest
                .entry(r.probe_id)
                .and_modify(|cur| {
                    if r.at >= cur.at {
                        *cur = r
                    }
                })
                .or_insert(r);
        }
        let latest: Vec<&Record> = latest.into_values().collect();
        for chunk in latest.chunks(ROWS_PER_INSERT) {
            let mut q: QueryBuilder<Database> = QueryBuilder::new(
                "INSERT INTO probe_locations (probe_id, loc, state, state_since, \
                 consecutive_failures, consecutive_successes, recent, checked_at, ok, \
                 duration_us, error) ",
            );
            q.push_values(chunk, |mut b, r| {
                b.push_bind(r.probe_id)
                    .push_bind(loc)
                    .push_bind(r.verdicts.state.as_str())
                    .push_bind(r.verdicts.since)
                    .push_bind(r.verdicts.consecutive_failures as i64)
                    .push_bind(r.verdicts.consecutive_successes as i64)
                    .push_bind(r.verdicts.recent as i64)
                    .push_bind(r.at)
                    .push_bind(r.obs.ok as i64)
                    .push_bind(r.obs.duration.as_micros() as i64)
                    .push_bind(r.obs.error.clone());
            });
            q.push(
                " ON CONFLICT (probe_id, loc) DO UPDATE SET state = excluded.state, \
                 state_since = excluded.state_since, \
                 consecutive_failures = excluded.consecutive_failures, \
                 consecutive_successes = excluded.consecutive_successes, \
                 recent = excluded.recent, checked_at = excluded.checked_at, ok = excluded.ok, \
                 duration_us = excluded.duration_us, error = excluded.error \
                 WHERE probe_locations.checked_at IS NULL \
                 OR excluded.checked_at >= probe_locations.checked_at",
            );
            q.build()
                .persistent(keep_prepared(chunk.len()))
                .execute(&mut *tx)
                .await?;
        }
        for c in changes {
            if let Some(t) = &c.local {
                record_change(&mut tx, c.probe_id, loc, t).await?;
            }
            let Some(o) = &c.overall else { continue };
            let t = &o.transition;
            // Only from the state this daemon saw: when another location's daemon made the
            // same change first, there is nothing left to do (it opened the incident).
            let made = sqlx::query(
                "UPDATE probes SET state = $1, state_since = $2 WHERE id = $3 AND state = $4",
            )
            .bind(t.to.as_str())
            .bind(t.at)
            .bind(c.probe_id)
            .bind(t.from.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected()
                > 0;
            if !made {
                tracing::debug!(probe_id = c.probe_id, from = %t.from, to = %t.to, "state already changed elsewhere");
                continue;
            }
            record_change(&mut tx, c.probe_id, OVERALL, t).await?;
            // The incident and its first page, in this same transaction: durable before any
            // send is tried.
            match &o.page {
                Some(Page::Open(plan)) => {
                    incidents::open_incident(&mut tx, c.probe_id, t.at, plan).await?
                }
                Some(Page::Recover { hold_ms, locations }) => {
                    incidents::recover_incident(&mut tx, c.probe_id, t.at, *hold_ms, locations)
                        .await?
                }
                None => {}
            }
        }
        tx.commit().await
    }
}

/// A row of `state_changes`: `loc` is the location whose verdict changed, or [`OVERALL`].
async fn record_change(
    conn: &mut Conn,
    probe_id: i64,
    loc: i64,
    t: &Transition,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO state_changes (probe_id, at, from_state, to_state, reason, loc) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(probe_id)
    .bind(t.at)
    .bind(t.from.as_str())
    .bind(t.to.as_str())
    .bind(t.reason.clone())
    .bind(loc)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

fn phases_json(o: &Observation) -> Option<String> {
    if o.phases.is_empty() {
        return None;
    }
    let mut s = String::with_capacity(16 * o.phases.len());
    s.push('{');
    for (i, (name, d)) in o.phases.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        // Milliseconds with microsecond precision.
        s.push_str(&format!("\"{name}\":{:.3}", d.as_secs_f64() * 1000.0));
    }
    s.push('}');
    Some(s)
}
