//! Silences in SQL: added straight to the write pool, listed while they run.

use sqlx::Row;

use super::Db;
use crate::store::StoreError;
use crate::store::silences::Silence;

impl Db {
    /// Adds a silence of `probe` from `now` to `until` (unix ms); its id.
    pub(crate) async fn add_silence(
        &self,
        probe: &str,
        until: i64,
        now: i64,
        by: &str,
        reason: Option<&str>,
    ) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar::<_, i64>(
            "INSERT INTO silences (probe, until, created_at, created_by, reason) VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(probe)
        .bind(until)
        .bind(now)
        .bind(by)
        .bind(reason)
        .fetch_one(&self.write)
        .await?)
    }

    /// The silences still running at `now` (unix ms), the first to end first.
    pub(crate) async fn silences_active(&self, now: i64) -> Result<Vec<Silence>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, probe, until, created_at, created_by, reason FROM silences WHERE until > $1 ORDER BY until",
        )
        .bind(now)
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .iter()
            .map(|r| Silence {
                id: r.get("id"),
                probe: r.get("probe"),
                until: r.get("until"),
                created_at: r.get("created_at"),
                created_by: r.get("created_by"),
                reason: r.get("reason"),
            })
            .collect())
    }
}
