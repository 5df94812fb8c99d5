//! The reads behind the public views (`crate::public`): the daily and hourly rollups of a set
//! of probes, and the incidents of the history window. Never raw results, so a year of
//! history costs no more than a day.

use sqlx::{QueryBuilder, Row, Sqlite};

use super::{Store, StoreError};

/// One probe's runs on one UTC day (from `rollups_daily`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DailyRollup {
    pub probe_id: i64,
    /// Start of the UTC day, unix ms.
    pub day: i64,
    pub runs: u64,
    pub ok: u64,
}

/// One probe's runs in one hour (from `rollups_hourly`), with their summed duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HourlyRollup {
    pub probe_id: i64,
    /// Start of the hour, unix ms.
    pub hour: i64,
    pub runs: u64,
    pub ok: u64,
    pub sum_duration_us: i64,
}

/// An incident's times, as the public views tell its story (never its reason).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentSummary {
    pub id: i64,
    pub probe: String,
    pub severity: String,
    pub opened_at: i64,
    pub acknowledged_at: Option<i64>,
    pub recovered_at: Option<i64>,
    pub resolved_at: Option<i64>,
    /// The state it was opened for (`down`, `degraded`), from its alert template.
    pub opened_as: Option<String>,
}

/// ` AND probe_id IN (?, ?, ...)`.
fn ids_in(q: &mut QueryBuilder<Sqlite>, ids: &[i64]) {
    q.push(" AND probe_id IN (");
    let mut sep = q.separated(", ");
    for id in ids {
        sep.push_bind(*id);
    }
    q.push(")");
}

impl Store {
    /// The daily rollups of the probes `ids` from the day starting at `from` (unix ms) on.
    pub async fn daily_rollups(
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
        let rows = q.build().fetch_all(&self.read).await?;
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

    /// The hourly rollups of the probes `ids` from the hour starting at `from` (unix ms) on.
    pub async fn hourly_rollups(
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
        let rows = q.build().fetch_all(&self.read).await?;
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
    pub async fn incident_history(&self, since: i64) -> Result<Vec<IncidentSummary>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, probe, severity, opened_at, acknowledged_at, recovered_at, resolved_at, \
             json_extract(alert, '$.state') AS opened_as FROM incidents WHERE resolved_at IS NULL OR opened_at >= ? ORDER BY opened_at DESC, id DESC",
        )
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
                resolved_at: r.get("resolved_at"),
                opened_as: r.get("opened_as"),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn exec(store: &Store, sql: &str) {
        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&store.write)
            .await
            .unwrap();
    }

    /// Only the probes asked for, from the time asked for; none asked, none read.
    #[tokio::test]
    async fn rollups_of_the_probes_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _writer) = Store::open(dir.path(), 10).await.unwrap();
        let ids = store
            .register(&[("a".into(), "http"), ("b".into(), "http")])
            .await
            .unwrap();
        let (a, b) = (ids["a"].id, ids["b"].id);
        exec(
            &store,
            &format!(
                "INSERT INTO rollups_daily (probe_id, day, runs, ok, sum_duration_us, \
                 max_duration_us) VALUES ({a}, 0, 10, 9, 0, 0), ({a}, 100, 4, 4, 0, 0), \
                 ({b}, 100, 2, 1, 0, 0)"
            ),
        )
        .await;
        exec(
            &store,
            &format!(
                "INSERT INTO rollups_hourly (probe_id, hour, runs, ok, sum_duration_us, \
                 max_duration_us) VALUES ({a}, 0, 1, 1, 500, 500), ({a}, 10, 3, 2, 900, 400), \
                 ({b}, 10, 1, 0, 7, 7)"
            ),
        )
        .await;
        assert_eq!(
            store.daily_rollups(&[a], 50).await.unwrap(),
            [DailyRollup {
                probe_id: a,
                day: 100,
                runs: 4,
                ok: 4
            }]
        );
        assert_eq!(
            store.hourly_rollups(&[a], 5).await.unwrap(),
            [HourlyRollup {
                probe_id: a,
                hour: 10,
                runs: 3,
                ok: 2,
                sum_duration_us: 900
            }]
        );
        assert_eq!(store.daily_rollups(&[a, b], 0).await.unwrap().len(), 3);
        assert!(store.daily_rollups(&[], 0).await.unwrap().is_empty());
        assert!(store.hourly_rollups(&[], 0).await.unwrap().is_empty());
    }

    /// Unresolved incidents whatever their age, resolved ones from `since`, newest first.
    #[tokio::test]
    async fn the_incident_history() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _writer) = Store::open(dir.path(), 10).await.unwrap();
        let ids = store.register(&[("web".into(), "http")]).await.unwrap();
        let web = ids["web"].id;
        exec(
            &store,
            &format!(
                "INSERT INTO incidents (id, probe_id, probe, severity, opened_at, alert, \
                 acknowledged_at, recovered_at, resolved_at) VALUES \
                 (1, {web}, 'web', 'critical', 10, '{{\"state\":\"down\"}}', NULL, NULL, NULL), \
                 (2, {web}, 'web', 'warning', 20, '{{}}', NULL, NULL, 30), \
                 (3, {web}, 'web', 'critical', 200, '{{\"state\":\"degraded\"}}', 210, 220, 230)"
            ),
        )
        .await;
        let h = store.incident_history(100).await.unwrap();
        assert_eq!(h.iter().map(|i| i.id).collect::<Vec<_>>(), [3, 1]);
        assert_eq!(
            h[0],
            IncidentSummary {
                id: 3,
                probe: "web".into(),
                severity: "critical".into(),
                opened_at: 200,
                acknowledged_at: Some(210),
                recovered_at: Some(220),
                resolved_at: Some(230),
                opened_as: Some("degraded".into()),
            }
        );
        assert_eq!(h[1].opened_as.as_deref(), Some("down"));
        let all = store.incident_history(0).await.unwrap();
        assert_eq!(all.iter().map(|i| i.id).collect::<Vec<_>>(), [3, 2, 1]);
        assert_eq!(all[1].opened_as, None);
    }
}
