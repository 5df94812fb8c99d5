//! The public views' reads in SQL: rollups of a set of probes, the incident history.

use sqlx::{QueryBuilder, Row};

use super::{Database, Db, PG};
use crate::store::StoreError;
use crate::store::views::{DailyRollup, HourlyRollup, IncidentSummary};

/// ` AND probe_id IN ($1, $2, ...)`. The statement's text changes with the number of ids:
/// run it unprepared (`persistent(false)`), or each count becomes a cached statement of its
/// own on every reading connection.
fn ids_in(q: &mut QueryBuilder<Database>, ids: &[i64]) {
    q.push(" AND probe_id IN (");
    let mut sep = q.separated(", ");
    for id in ids {
        sep.push_bind(*id);
    }
    q.push(")");
}

impl Db {
    /// The daily rollups of the probes `ids` from the day starting at `from` (unix ms) on.
    pub(crate) async fn daily_rollups(
        &self,
        ids: &[i64],
        from: i64,
    ) -> Result<Vec<DailyRollup>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut q =
            QueryBuilder::new("SELECT probe_id, day, runs, ok FROM rollups_daily WHERE day >= ");
        q.push_bind(from);
        ids_in(&mut q, ids);
        let rows = q.build().persistent(false).fetch_all(&self.read).await?;
        Ok(rows
            .iter()
            .map(|r| DailyRollup {
                probe_id: r.get("probe_id"),
                day: r.get("day"),
                runs: r.get::<i64, _>("runs") as u64,
                ok: r.get::<i64, _>("ok") as u64,
            })
            .collect())
    }

    /// The first day each of the probes `ids` has a daily rollup for (its first result, as
    /// far back as the rollups are kept): (probe id, start of that UTC day).
    pub(crate) async fn first_days(&self, ids: &[i64]) -> Result<Vec<(i64, i64)>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut q = QueryBuilder::new(
            "SELECT probe_id, MIN(day) AS first FROM rollups_daily WHERE runs > 0",
        );
        ids_in(&mut q, ids);
        q.push(" GROUP BY probe_id");
        let rows = q.build().persistent(false).fetch_all(&self.read).await?;
        Ok(rows
            .iter()
            .map(|r| (r.get("probe_id"), r.get("first")))
            .collect())
    }

    /// The hourly rollups of the probes `ids` from the hour starting at `from` (unix ms) on.
    pub(crate) async fn hourly_rollups(
        &self,
        ids: &[i64],
        from: i64,
    ) -> Result<Vec<HourlyRollup>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut q = QueryBuilder::new(
            "SELECT probe_id, hour, runs, ok, sum_duration_us FROM rollups_hourly WHERE hour >= ",
        );
        q.push_bind(from);
        ids_in(&mut q, ids);
        let rows = q.build().persistent(false).fetch_all(&self.read).await?;
        Ok(rows
            .iter()
            .map(|r| HourlyRollup {
                probe_id: r.get("probe_id"),
                hour: r.get("hour"),
                runs: r.get::<i64, _>("runs") as u64,
                ok: r.get::<i64, _>("ok") as u64,
                sum_duration_us: r.get("sum_duration_us"),
            })
            .collect())
    }

    /// Every unresolved incident and every one opened since `since` (unix ms), newest first.
    pub(crate) async fn incident_history(
        &self,
        since: i64,
    ) -> Result<Vec<IncidentSummary>, StoreError> {
        let rows = sqlx::query(if PG {
            "SELECT id, probe, severity, opened_at, acknowledged_at, recovered_at, resolve_due_at, \
             resolved_at, reason, alert::jsonb ->> 'state' AS opened_as, \
             alert::jsonb ->> 'fired_as' AS fired_as FROM incidents \
             WHERE resolved_at IS NULL OR opened_at >= $1 ORDER BY opened_at DESC, id DESC"
        } else {
            "SELECT id, probe, severity, opened_at, acknowledged_at, recovered_at, resolve_due_at, \
             resolved_at, reason, json_extract(alert, '$.state') AS opened_as, \
             json_extract(alert, '$.fired_as') AS fired_as FROM incidents \
             WHERE resolved_at IS NULL OR opened_at >= $1 ORDER BY opened_at DESC, id DESC"
        })
        .bind(since)
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .iter()
            .map(|r| IncidentSummary {
                id: r.get("id"),
                probe: r.get("probe"),
                severity: r.get("severity"),
                opened_at: r.get("opened_at"),
                acknowledged_at: r.get("acknowledged_at"),
                recovered_at: r.get("recovered_at"),
                resolve_due_at: r.get("resolve_due_at"),
                resolved_at: r.get("resolved_at"),
                reason: r.get("reason"),
                opened_as: r.get("opened_as"),
                fired_as: r
                    .get::<Option<String>, _>("fired_as")
                    .and_then(|j| serde_json::from_str(&j).ok())
                    .unwrap_or_default(),
            })
            .collect())
    }
}
