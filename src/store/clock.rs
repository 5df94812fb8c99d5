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
        let mut tx = self.write.begin().await?;
        // Outbox first: which incidents are open is read before they move.
        let outbox = sqlx::query(
            "UPDATE outbox SET created_at = created_at + ?1, due_at = due_at + ?1, \
             delivered_at = delivered_at + ?1 WHERE status = 'pending' \
             OR incident_id IN (SELECT id FROM incidents WHERE resolved_at IS NULL)",
        )
        .bind(delta_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let incidents = sqlx::query(
            "UPDATE incidents SET opened_at = opened_at + ?1, \
             acknowledged_at = acknowledged_at + ?1, recovered_at = recovered_at + ?1, \
             resolve_due_at = resolve_due_at + ?1, last_reminder_at = last_reminder_at + ?1 \
             WHERE resolved_at IS NULL",
        )
        .bind(delta_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let pushes = sqlx::query(
            "UPDATE pushes SET first_seen_at = first_seen_at + ?1, \
             last_ping_at = last_ping_at + ?1, last_success_at = last_success_at + ?1, \
             started_at = started_at + ?1",
        )
        .bind(delta_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let silences = sqlx::query(
            "UPDATE silences SET until = until + ?1, created_at = created_at + ?1 \
             WHERE until > ?2",
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

#[cfg(test)]
mod tests {
    use sqlx::Row;

    use super::*;

    const H: i64 = 3_600_000;

    async fn exec(s: &Store, sql: &str) {
        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&s.write)
            .await
            .unwrap();
    }

    async fn ints(s: &Store, sql: &str) -> Vec<Vec<Option<i64>>> {
        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_all(&s.read)
            .await
            .unwrap()
            .iter()
            .map(|r| (0..r.len()).map(|i| r.get::<Option<i64>, _>(i)).collect())
            .collect()
    }

    /// Live timers move by the step, NULLs stay NULL, history stays put; a step back undoes
    /// a step forward exactly.
    #[tokio::test]
    async fn a_shift_moves_live_timers_only() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _writer) = Store::open(dir.path(), 10).await.unwrap();
        let ids = store
            .register(&[
                ("web".into(), "http"),
                ("job".into(), "push"),
                ("new".into(), "push"),
            ])
            .await
            .unwrap();
        let (web, job, new) = (ids["web"].id, ids["job"].id, ids["new"].id);
        let t = 1_000 * H;
        // Incident 1 open and recovering; incident 2 resolved (history).
        exec(
            &store,
            &format!(
                "INSERT INTO incidents (id, probe_id, probe, severity, opened_at, alert, paged, \
                 acknowledged_at, recovered_at, resolve_due_at, last_reminder_at, resolved_at) \
                 VALUES (1, {web}, 'web', 'critical', {t}, '{{}}', 1, NULL, {}, {}, {}, NULL), \
                 (2, {web}, 'web', 'critical', {}, '{{}}', 1, {}, {}, {}, NULL, {})",
                t + 10,
                t + 20,
                t + 5,
                t - 2 * H,
                t - 2 * H + 1,
                t - H,
                t - H,
                t - H
            ),
        )
        .await;
        // Outbox: a delivered page of the open incident, a pending retry, a pending resolve
        // notice of the resolved incident, a delivered page of the resolved one (history).
        exec(
            &store,
            &format!(
                "INSERT INTO outbox (id, incident_id, event, notifier, created_at, due_at, status, \
                 alert, delivered_at) VALUES \
                 (1, 1, 'trigger', 'hook', {t}, {t}, 'delivered', '{{}}', {}), \
                 (2, 1, 'escalation', 'pager', {}, {}, 'pending', '{{}}', NULL), \
                 (3, 2, 'resolve', 'hook', {}, {}, 'pending', '{{}}', NULL), \
                 (4, 2, 'trigger', 'hook', {}, {}, 'delivered', '{{}}', {})",
                t + 1,
                t + 3,
                t + 4_000,
                t - H,
                t - H,
                t - 2 * H,
                t - 2 * H,
                t - 2 * H + 1
            ),
        )
        .await;
        // Pushes: one pinged (started, never succeeded), one never pinged.
        exec(
            &store,
            &format!(
                "INSERT INTO pushes (probe_id, first_seen_at, last_ping_at, last_kind, \
                 last_success_at, started_at, pings) VALUES \
                 ({job}, {}, {t}, 'start', NULL, {t}, 1), ({new}, {t}, NULL, NULL, NULL, NULL, 0)",
                t - H
            ),
        )
        .await;
        // Silences: one running, one over.
        exec(
            &store,
            &format!(
                "INSERT INTO silences (id, probe, until, created_at) VALUES \
                 (1, 'web', {}, {}), (2, 'web', {}, {})",
                t + H,
                t - 60_000,
                t - 1,
                t - H
            ),
        )
        .await;
        let before = (
            ints(&store, "SELECT id FROM incidents").await.len(),
            ints(&store, "SELECT id FROM outbox").await.len(),
        );

        let n = store.shift_timers(H, t).await.unwrap();
        assert_eq!(
            n,
            ShiftedTimers {
                incidents: 1,
                outbox: 3,
                pushes: 2,
                silences: 1
            }
        );
        let s = |v: i64| Some(v + H);
        assert_eq!(
            ints(
                &store,
                "SELECT opened_at, acknowledged_at, recovered_at, resolve_due_at, \
                 last_reminder_at, resolved_at FROM incidents ORDER BY id"
            )
            .await,
            [
                vec![s(t), None, s(t + 10), s(t + 20), s(t + 5), None],
                vec![
                    Some(t - 2 * H),
                    Some(t - 2 * H + 1),
                    Some(t - H),
                    Some(t - H),
                    None,
                    Some(t - H)
                ],
            ]
        );
        assert_eq!(
            ints(
                &store,
                "SELECT created_at, due_at, delivered_at FROM outbox ORDER BY id"
            )
            .await,
            [
                vec![s(t), s(t), s(t + 1)],
                vec![s(t + 3), s(t + 4_000), None],
                vec![s(t - H), s(t - H), None],
                vec![Some(t - 2 * H), Some(t - 2 * H), Some(t - 2 * H + 1)],
            ]
        );
        assert_eq!(
            ints(
                &store,
                "SELECT first_seen_at, last_ping_at, last_success_at, started_at, pings \
                 FROM pushes ORDER BY probe_id"
            )
            .await,
            [
                vec![s(t - H), s(t), None, s(t), Some(1)],
                vec![s(t), None, None, None, Some(0)],
            ]
        );
        assert_eq!(
            ints(&store, "SELECT until, created_at FROM silences ORDER BY id").await,
            [
                vec![s(t + H), s(t - 60_000)],
                vec![Some(t - 1), Some(t - H)]
            ]
        );
        let after = (
            ints(&store, "SELECT id FROM incidents").await.len(),
            ints(&store, "SELECT id FROM outbox").await.len(),
        );
        assert_eq!(before, after, "no row added or lost");

        // The clock goes back by as much: every live timer is where it was. (The silence is
        // judged on the shifted clock: it still runs.)
        store.shift_timers(-H, t + H).await.unwrap();
        assert_eq!(
            ints(
                &store,
                "SELECT opened_at, resolve_due_at FROM incidents WHERE id = 1"
            )
            .await,
            [vec![Some(t), Some(t + 20)]]
        );
        assert_eq!(
            ints(&store, "SELECT due_at FROM outbox WHERE id = 2").await,
            [vec![Some(t + 4_000)]]
        );
        assert_eq!(
            ints(
                &store,
                &format!("SELECT last_ping_at FROM pushes WHERE probe_id = {job}")
            )
            .await,
            [vec![Some(t)]]
        );
        assert_eq!(
            ints(&store, "SELECT until FROM silences ORDER BY id").await,
            [vec![Some(t + H)], vec![Some(t - 1)]]
        );
    }
}
