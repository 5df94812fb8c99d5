//! Shifting the stored timers after a wall-clock step, in SQL.

use super::Db;
use crate::store::{ShiftedTimers, StoreError};

impl Db {
    /// Moves every pending timer by `delta_ms`, in one transaction: open incidents (opened,
    /// acknowledged, recovered, resolve due, last reminder), the outbox rows still pending or
    /// of an open incident (created, due, delivered), every push probe's ping clock, and the
    /// silences still running at `now_ms` (given on the clock the timers are kept in). NULLs
    /// stay NULL. History (results, state changes, attempts, resolved incidents, expired
    /// silences) is left as it was recorded.
    pub(crate) async fn shift_timers(
        &self,
        delta_ms: i64,
        now_ms: i64,
    ) -> Result<ShiftedTimers, StoreError> {
        let mut tx = self.write.begin().await?;
        // Outbox first: which incidents are open is read before they move.
        let outbox = sqlx::query(
            "UPDATE outbox SET created_at = created_at + $1, due_at = due_at + $1, \
             delivered_at = delivered_at + $1 WHERE status = 'pending' \
             OR incident_id IN (SELECT id FROM incidents WHERE resolved_at IS NULL)",
        )
        .bind(delta_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let incidents = sqlx::query(
            "UPDATE incidents SET opened_at = opened_at + $1, \
             acknowledged_at = acknowledged_at + $1, recovered_at = recovered_at + $1, \
             resolve_due_at = resolve_due_at + $1, last_reminder_at = last_reminder_at + $1 \
             WHERE resolved_at IS NULL",
        )
        .bind(delta_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let pushes = sqlx::query(
            "UPDATE pushes SET first_seen_at = first_seen_at + $1, \
             last_ping_at = last_ping_at + $1, last_success_at = last_success_at + $1, \
             started_at = started_at + $1",
        )
        .bind(delta_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query("UPDATE push_runs SET started_at = started_at + $1")
            .bind(delta_ms)
            .execute(&mut *tx)
            .await?;
        let silences = sqlx::query(
            "UPDATE silences SET until = until + $1, created_at = created_at + $1 \
             WHERE until > $2",
        )
        .bind(delta_ms)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(ShiftedTimers {
            incidents,
            outbox,
            pushes,
            silences,
        })
    }
}
