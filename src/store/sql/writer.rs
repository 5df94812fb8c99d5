//! The writer's transaction: one batch of results, the probes' state, rollups and state
//! changes (with their incidents and first pages), committed together.

use std::collections::HashMap;

use sqlx::QueryBuilder;

use super::{Database, Db, GREATEST, PG, incidents};
use crate::paging::Page;
use crate::probe::Observation;
use crate::store::{DAY_MS, HOUR_MS, Record, StateChange};

/// Rows per INSERT statement (10 parameters each, well under either backend's limit).
const ROWS_PER_INSERT: usize = 200;

impl Db {
    /// Commits one batch in one transaction.
    pub(crate) async fn commit(
        &self,
        results: &[Record],
        changes: &[StateChange],
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.write.begin().await?;
        for chunk in results.chunks(ROWS_PER_INSERT) {
            let mut q: QueryBuilder<Database> = QueryBuilder::new(if PG {
                "INSERT INTO results \
                 (probe_id, at, ok, duration_us, status_code, error, phases, ip, cert_expiry, size) "
            } else {
                "INSERT OR REPLACE INTO results \
                 (probe_id, at, ok, duration_us, status_code, error, phases, ip, cert_expiry, size) "
            });
            q.push_values(chunk, |mut b, r| {
                let o = &r.obs;
                b.push_bind(r.probe_id)
                    .push_bind(r.at)
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
                    " ON CONFLICT (probe_id, at) DO UPDATE SET ok = excluded.ok, \
                     duration_us = excluded.duration_us, status_code = excluded.status_code, \
                     error = excluded.error, phases = excluded.phases, ip = excluded.ip, \
                     cert_expiry = excluded.cert_expiry, size = excluded.size",
                );
            }
            q.build().execute(&mut *tx).await?;
        }
        // Rollups: one upsert per (probe, hour) and per (probe, day) in this batch.
        for (span, table, col) in [
            (HOUR_MS, "rollups_hourly", "hour"),
            (DAY_MS, "rollups_daily", "day"),
        ] {
            let mut spans: HashMap<(i64, i64), (i64, i64, i64, i64)> = HashMap::new();
            for r in results {
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
                q.build().execute(&mut *tx).await?;
            }
        }
        // Probe state: the latest result of each probe in this batch.
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
                "UPDATE probes SET state = v.column2, state_since = v.column3, \
                 consecutive_failures = v.column4, consecutive_successes = v.column5, \
                 last_checked_at = v.column6, last_ok = v.column7, last_duration_us = v.column8, \
                 last_error = v.column9, recent = v.column10 FROM (",
            );
            q.push_values(chunk, |mut b, r| {
                b.push_bind(r.probe_id)
                    .push_bind(r.verdicts.state.as_str())
                    .push_bind(r.verdicts.since)
                    .push_bind(r.verdicts.consecutive_failures as i64)
                    .push_bind(r.verdicts.consecutive_successes as i64)
                    .push_bind(r.at)
                    .push_bind(r.obs.ok as i64)
                    .push_bind(r.obs.duration.as_micros() as i64)
                    .push_bind(r.obs.error.clone())
                    .push_bind(r.verdicts.recent as i64);
            });
            q.push(") AS v WHERE probes.id = v.column1");
            q.build().execute(&mut *tx).await?;
        }
        for c in changes {
            sqlx::query(
                "INSERT INTO state_changes (probe_id, at, from_state, to_state, reason) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(c.probe_id)
            .bind(c.transition.at)
            .bind(c.transition.from.as_str())
            .bind(c.transition.to.as_str())
            .bind(c.transition.reason.clone())
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE probes SET state = $1, state_since = $2, consecutive_failures = $3, \
                 consecutive_successes = $4, recent = $5 WHERE id = $6",
            )
            .bind(c.verdicts.state.as_str())
            .bind(c.verdicts.since)
            .bind(c.verdicts.consecutive_failures as i64)
            .bind(c.verdicts.consecutive_successes as i64)
            .bind(c.verdicts.recent as i64)
            .bind(c.probe_id)
            .execute(&mut *tx)
            .await?;
            // The incident and its first page, in this same transaction: durable before any
            // send is tried.
            match &c.page {
                Some(Page::Open(plan)) => {
                    incidents::open_incident(&mut tx, c.probe_id, c.transition.at, plan).await?
                }
                Some(Page::Recover { hold_ms }) => {
                    incidents::recover_incident(&mut tx, c.probe_id, c.transition.at, *hold_ms)
                        .await?
                }
                None => {}
            }
        }
        tx.commit().await
    }
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
