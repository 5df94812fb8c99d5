//! Silences (`probectl silence`, `POST /api/v1/silences`): added straight to the write pool,
//! not through the writer's queue, so the API can answer with the new silence's id.

use sqlx::Row;

use super::{Store, StoreError};

/// One silence, as stored: it mutes pages of the probes `probe` names (a name or a glob)
/// until `until`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Silence {
    pub id: i64,
    /// Probe name or glob.
    pub probe: String,
    /// Unix ms, on the timers' clock (see [`crate::clock`]).
    pub until: i64,
    pub created_at: i64,
    pub created_by: Option<String>,
    pub reason: Option<String>,
}

impl Store {
    /// Adds a silence of `probe` from `now` to `until` (unix ms); its id.
    pub async fn add_silence(
        &self,
        probe: &str,
        until: i64,
        now: i64,
        by: &str,
        reason: Option<&str>,
    ) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar::<_, i64>(
            "INSERT INTO silences (probe, until, created_at, created_by, reason) VALUES (?, ?, ?, ?, ?) RETURNING id",
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
    pub async fn silences_active(&self, now: i64) -> Result<Vec<Silence>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, probe, until, created_at, created_by, reason FROM silences WHERE until > ? ORDER BY until",
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A silence added is listed until it ends; the first to end comes first.
    #[tokio::test]
    async fn added_silences_are_listed_while_they_run() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _writer) = Store::open(dir.path(), 10).await.unwrap();
        let a = store
            .add_silence("api-*", 5_000, 1_000, "alice", Some("deploy"))
            .await
            .unwrap();
        let b = store
            .add_silence("web", 3_000, 1_000, "api", None)
            .await
            .unwrap();
        let listed = store.silences_active(2_000).await.unwrap();
        assert_eq!(
            listed,
            [
                Silence {
                    id: b,
                    probe: "web".into(),
                    until: 3_000,
                    created_at: 1_000,
                    created_by: Some("api".into()),
                    reason: None,
                },
                Silence {
                    id: a,
                    probe: "api-*".into(),
                    until: 5_000,
                    created_at: 1_000,
                    created_by: Some("alice".into()),
                    reason: Some("deploy".into()),
                },
            ]
        );
        let later = store.silences_active(3_000).await.unwrap();
        assert_eq!(later.iter().map(|s| s.id).collect::<Vec<_>>(), [a]);
    }
}
