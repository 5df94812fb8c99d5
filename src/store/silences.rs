//! Silences (`probectl silence`, `POST /api/v1/silences`): added straight to the write pool,
//! not through the writer's queue, so the API can answer with the new silence's id.

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
        on_db!(&self.db, db => db.add_silence(probe, until, now, by, reason).await)
    }

    /// The silences still running at `now` (unix ms), the first to end first.
    pub async fn silences_active(&self, now: i64) -> Result<Vec<Silence>, StoreError> {
        on_db!(&self.db, db => db.silences_active(now).await)
    }
}
