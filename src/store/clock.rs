//! Shifting the stored timers after a wall-clock step (see [`crate::clock`]).

use super::{Store, StoreError};

/// Rows moved by [`Store::shift_timers`], by table.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ShiftedTimers {
    pub incidents: u64,
    pub outbox: u64,
    pub pushes: u64,
    pub silences: u64,
}

impl Store {
    /// Moves every pending timer by `delta_ms`, in one transaction: open incidents (opened,
    /// acknowledged, recovered, resolve due, last reminder), the outbox rows still pending or
    /// of an open incident (created, due, delivered), every push probe's ping clock, and the
    /// silences still running at `now_ms` (given on the clock the timers are kept in). NULLs
    /// stay NULL. History (results, state changes, attempts, resolved incidents, expired
    /// silences) is left as it was recorded.
    pub async fn shift_timers(
        &self,
        delta_ms: i64,
        now_ms: i64,
    ) -> Result<ShiftedTimers, StoreError> {
        on_db!(&self.db, db => db.shift_timers(delta_ms, now_ms).await)
    }
}
