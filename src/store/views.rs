//! The reads behind the public views (`crate::public`): the daily and hourly rollups of a set
//! of probes, and the incidents of the history window. Never raw results, so a year of
//! history costs no more than a day.

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
    /// When the probe was last seen back up (the resolve hold began); `None` while down.
    pub recovered_at: Option<i64>,
    /// When the resolve hold of the last recovery ends (ended): `recovered_at` + the hold.
    pub resolve_due_at: Option<i64>,
    /// The store's resolved time: the recovery that held (equal to `recovered_at`).
    pub resolved_at: Option<i64>,
    /// The failing observation's reason when it opened: internal text (hosts, addresses),
    /// never shown as is; the public side reads only numbers out of it.
    pub reason: Option<String>,
    /// The state it stands in now, or stood in last (`down`, `degraded`): its alert
    /// template's `state`, which follows the probe while the incident is open.
    pub opened_as: Option<String>,
    /// Every state it has fired in (`down`, `degraded`), from its alert template.
    pub fired_as: Vec<String>,
}

impl Store {
    /// The daily rollups of the probes `ids` from the day starting at `from` (unix ms) on.
    pub async fn daily_rollups(
        &self,
        ids: &[i64],
        from: i64,
    ) -> Result<Vec<DailyRollup>, StoreError> {
        on_db!(&self.db, db => db.daily_rollups(ids, from).await)
    }

    /// The hourly rollups of the probes `ids` from the hour starting at `from` (unix ms) on.
    pub async fn hourly_rollups(
        &self,
        ids: &[i64],
        from: i64,
    ) -> Result<Vec<HourlyRollup>, StoreError> {
        on_db!(&self.db, db => db.hourly_rollups(ids, from).await)
    }

    /// The first day each of the probes `ids` has results for, as far back as the daily
    /// rollups go: (probe id, start of that UTC day, unix ms).
    pub async fn first_days(&self, ids: &[i64]) -> Result<Vec<(i64, i64)>, StoreError> {
        on_db!(&self.db, db => db.first_days(ids).await)
    }

    /// Every unresolved incident and every one opened since `since` (unix ms), newest first.
    pub async fn incident_history(&self, since: i64) -> Result<Vec<IncidentSummary>, StoreError> {
        on_db!(&self.db, db => db.incident_history(since).await)
    }
}
