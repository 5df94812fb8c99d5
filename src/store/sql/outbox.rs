//! The outbox's deliveries in SQL: which rows are due, the backlog, each try recorded with its
//! consequence in one transaction.

use sqlx::Row;

use super::incidents::enqueue;
use super::{Db, PG};
use crate::paging::Alert;
use crate::store::{AfterAttempt, Attempt, Backlog, DueDelivery, StoreError};

/// Rows read per delivery pass.
const DUE_PER_PASS: i64 = 256;

impl Db {
    /// Pending rows due by `now` that no one else holds a claim on, claimed for `claimer`
    /// until `now + lease_ms`, the most overdue first (at most 256 per pass).
    pub(crate) async fn due_deliveries(
        &self,
        now: i64,
        claimer: &str,
        lease_ms: i64,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        // PostgreSQL: rows another daemon is claiming this very moment are skipped, not
        // waited for. SQLite has one writer: nothing to skip.
        let mut rows = sqlx::query(if PG {
            "UPDATE outbox SET claimed_by = $1, claim_until = $2 WHERE id IN \
             (SELECT id FROM outbox WHERE status = 'pending' AND due_at <= $3 \
             AND (claim_until IS NULL OR claim_until <= $3 OR claimed_by = $1) \
             ORDER BY due_at, id LIMIT $4 FOR UPDATE SKIP LOCKED) \
             RETURNING id, notifier, alert, attempts, fallback, due_at"
        } else {
            "UPDATE outbox SET claimed_by = $1, claim_until = $2 WHERE id IN \
             (SELECT id FROM outbox WHERE status = 'pending' AND due_at <= $3 \
             AND (claim_until IS NULL OR claim_until <= $3 OR claimed_by = $1) \
             ORDER BY due_at, id LIMIT $4) \
             RETURNING id, notifier, alert, attempts, fallback, due_at"
        })
        .bind(claimer)
        .bind(now + lease_ms)
        .bind(now)
        .bind(DUE_PER_PASS)
        .fetch_all(&self.write)
        .await?;
        rows.sort_by_key(|r| (r.get::<i64, _>("due_at"), r.get::<i64, _>("id")));
        Ok(rows
            .into_iter()
            .map(|r| DueDelivery {
                id: r.get("id"),
                notifier: r.get("notifier"),
                alert: r.get("alert"),
                attempts: r.get::<i64, _>("attempts") as u32,
                fallback: serde_json::from_str(r.get("fallback")).unwrap_or_default(),
            })
            .collect())
    }

    /// The backlog, the rows `in_flight` left out of its next due time.
    pub(crate) async fn outbox_backlog(&self, in_flight: &[i64]) -> Result<Backlog, StoreError> {
        let row = sqlx::query(
            "SELECT count(*) AS n, min(created_at) AS oldest FROM outbox WHERE status = 'pending'",
        )
        .fetch_one(&self.read)
        .await?;
        let pending: i64 = row.get("n");
        let next_due = if pending as usize > in_flight.len() {
            let due: Vec<(i64, i64)> = sqlx::query_as(
                "SELECT id, due_at FROM outbox WHERE status = 'pending' ORDER BY due_at LIMIT $1",
            )
            .bind(in_flight.len() as i64 + 1)
            .fetch_all(&self.read)
            .await?;
            due.into_iter()
                .find(|(id, _)| !in_flight.contains(id))
                .map(|(_, at)| at)
        } else {
            None
        };
        Ok(Backlog {
            pending,
            oldest: row.get("oldest"),
            next_due,
        })
    }

    /// Records a try and what becomes of its row, in one transaction.
    pub(crate) async fn record_attempt(
        &self,
        a: &Attempt<'_>,
        after: AfterAttempt<'_>,
    ) -> Result<(), StoreError> {
        let mut tx = self.write.begin().await?;
        sqlx::query(
            "INSERT INTO attempts (outbox_id, notifier, at, ok, detail, duration_us) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(a.outbox_id)
        .bind(a.notifier)
        .bind(a.at)
        .bind(a.ok as i64)
        .bind(a.detail)
        .bind(a.took_us)
        .execute(&mut *tx)
        .await?;
        match after {
            AfterAttempt::Delivered => {
                sqlx::query(
                    "UPDATE outbox SET status = 'delivered', attempts = $1, delivered_at = $2, \
                     last_error = NULL WHERE id = $3 AND status = 'pending'",
                )
                .bind(a.attempts as i64)
                .bind(a.at)
                .bind(a.outbox_id)
                .execute(&mut *tx)
                .await?;
            }
            AfterAttempt::Retry { due_at } => {
                sqlx::query(
                    "UPDATE outbox SET attempts = $1, last_error = $2, due_at = $3, \
                     claimed_by = NULL, claim_until = NULL WHERE id = $4 AND status = 'pending'",
                )
                .bind(a.attempts as i64)
                .bind(a.detail)
                .bind(due_at)
                .bind(a.outbox_id)
                .execute(&mut *tx)
                .await?;
            }
            AfterAttempt::Failed { fallback, alert } => {
                sqlx::query(
                    "UPDATE outbox SET status = 'failed', attempts = $1, last_error = $2 \
                     WHERE id = $3 AND status = 'pending'",
                )
                .bind(a.attempts as i64)
                .bind(a.detail)
                .bind(a.outbox_id)
                .execute(&mut *tx)
                .await?;
                if let Some((next, rest)) = fallback {
                    let alert: Alert = serde_json::from_str(alert)
                        .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
                    // The page moves on; its event stays what it was.
                    let mut template = alert.clone();
                    template.at = a.at;
                    enqueue(
                        &mut tx,
                        &template,
                        alert.event,
                        std::slice::from_ref(next),
                        rest,
                        a.at,
                    )
                    .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }
}
