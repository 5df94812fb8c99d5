//! The store's tests, run on both backends: this file is compiled with the queries, once for
//! SQLite and once for PostgreSQL (a fresh database per test), so each test below is two.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::test_store;
use crate::evaluate::{State, Transition, Verdicts};
use crate::probe::Observation;
use crate::probe::push::{Ping, PingKind, PushState};
use crate::store::silences::Silence;
use crate::store::views::{DailyRollup, HourlyRollup, IncidentSummary};
use crate::store::{HOUR_MS, Record, ShiftedTimers, StateChange};

const H: i64 = HOUR_MS;

pub(crate) fn rec(id: i64, at: i64, ok: bool) -> Record {
    Record {
        keep: true,
        probe_id: id,
        at,
        obs: Observation {
            ok,
            error: (!ok).then(|| "status 503, expected 2xx".to_owned()),
            duration: Duration::from_micros(1500),
            phases: vec![("connect", Duration::from_micros(300))],
            status_code: Some(if ok { 200 } else { 503 }),
            ..Default::default()
        },
        verdicts: Verdicts {
            state: if ok { State::Up } else { State::Down },
            since: Some(at),
            consecutive_failures: (!ok) as u32,
            consecutive_successes: ok as u32,
            recent: (!ok) as u64,
        },
    }
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_never_blocks() {
    let (store, writer, _db) = test_store(2).await;
    let ids = store.register(&[("a".into(), "http")]).await.unwrap();
    let id = ids["a"].id;
    // The writer is not running: the queue holds 2, the rest are dropped and counted.
    let accepted: Vec<bool> = (0..5)
        .map(|i| store.record(rec(id, 1000 + i, true)))
        .collect();
    assert_eq!(accepted, [true, true, false, false, false]);
    assert_eq!(store.stats.dropped.load(Ordering::Relaxed), 3);
    assert_eq!(store.queue_depth(), 2);
    // Once it runs, what was queued is written, and shutdown drains it.
    let stop = CancellationToken::new();
    stop.cancel();
    writer.run(stop, Duration::from_secs(1)).await;
    assert_eq!(store.stats.written.load(Ordering::Relaxed), 2);
    let rows = store.results("a", 10, None).await.unwrap().unwrap();
    assert_eq!(rows.len(), 2);
}

#[tokio::test]
async fn results_state_rollups_retention_and_resume() {
    let (store, writer, db) = test_store(100).await;
    let ids = store
        .register(&[("a".into(), "http"), ("b".into(), "http")])
        .await
        .unwrap();
    let (a, b) = (ids["a"].id, ids["b"].id);
    assert_eq!(ids["a"].verdicts.state, State::Pending);
    let now = 1_000 * HOUR_MS;
    let day = 24 * HOUR_MS;
    for (i, at) in [now - 10 * day, now - 2 * HOUR_MS, now - 1000, now]
        .iter()
        .enumerate()
    {
        store.record(rec(a, *at, i != 2));
    }
    store.record(rec(b, now, false));
    store.state_change(both(
        b,
        Transition {
            from: State::Pending,
            to: State::Down,
            at: now,
            reason: Some("status 503, expected 2xx".into()),
        },
        rec(b, now, false).verdicts,
        None,
    ));
    let stop = CancellationToken::new();
    stop.cancel();
    writer.run(stop, Duration::from_secs(1)).await;

    let rows = store.results("a", 10, None).await.unwrap().unwrap();
    let ats: Vec<i64> = rows.iter().map(|r| r.at_ms).collect();
    assert_eq!(
        ats,
        [now, now - 1000, now - 2 * HOUR_MS, now - 10 * day],
        "newest first"
    );
    assert_eq!(rows[1].error.as_deref(), Some("status 503, expected 2xx"));
    assert_eq!(rows[0].phases, Some(serde_json::json!({"connect": 0.3})));
    assert_eq!(rows[0].latency_ms, 1.5);
    assert!(store.results("nope", 10, None).await.unwrap().is_none());
    let page = store
        .results("a", 2, Some(now - 1000))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(page.len(), 2, "paging back with before=");

    let roll = store.rollups_since(now - day).await.unwrap();
    let a_runs: u64 = roll[&a].iter().map(|h| h.runs).sum();
    let a_ok: u64 = roll[&a].iter().map(|h| h.ok).sum();
    assert_eq!((a_runs, a_ok), (3, 2), "{:?}", roll[&a]);

    // Retention: 7 days keeps all but the 10-day-old result.
    assert_eq!(
        store
            .prune(Duration::from_secs(7 * 86400), now)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store.results("a", 10, None).await.unwrap().unwrap().len(),
        3
    );

    // A restart resumes each probe's state from the latest result or change.
    store.close().await;
    let (store, _writer) = db.reopen(100).await;
    let saved = store.register(&[("a".into(), "http")]).await.unwrap();
    assert_eq!(saved["a"].verdicts.state, State::Up);
    assert_eq!(saved["a"].last.as_ref().unwrap().at, now);
    assert_eq!(saved["b"].verdicts.state, State::Down);
    assert_eq!(
        saved["b"].last.as_ref().unwrap().error.as_deref(),
        Some("status 503, expected 2xx")
    );
}

/// A plan paging `pager` for probe `probe`, resolving at once.
pub(crate) fn page_plan(probe: &str) -> crate::alert::plan::PagePlan {
    crate::alert::plan::PagePlan {
        alert: crate::alert::Alert {
            incident: 0,
            dedup_key: String::new(),
            probe: probe.into(),
            ..crate::alert::testing::alert(crate::alert::Event::Trigger)
        },
        notify: vec!["pager".into()],
        fallback: vec![],
        muted: None,
        send_resolve: true,
        resolve_hold_ms: 0,
        paged_from_memory: false,
    }
}

/// Degraded opens an incident and queues its page; down then continues it (no second
/// page); recovering to degraded keeps it open; up starts its resolve. The runs an
/// objective tracker replays start after the last recovery from down.
#[tokio::test]
async fn degraded_opens_one_incident_through_down_and_back_and_replays_after_recovery() {
    let (store, writer, _db) = test_store(100).await;
    let id = store.register(&[("a".into(), "http")]).await.unwrap()["a"].id;
    let stop = CancellationToken::new();
    let run = tokio::spawn(writer.run(stop.clone(), Duration::from_millis(10)));
    let mut plan = page_plan("a");
    plan.alert.state = "degraded".into();
    plan.alert.reason = Some("burning".into());
    let change = |from, to, at| {
        let transition = Transition {
            from,
            to,
            at,
            reason: Some("burning".into()),
        };
        let page = crate::alert::plan::page_for(&transition, plan.clone());
        both(id, transition, rec(id, at, true).verdicts, page)
    };
    let incidents = async || store.incidents(false, 10).await.unwrap();
    let settle = async || {
        let n = store.stats.written.load(Ordering::Relaxed);
        until("a commit", || {
            store.queue_depth() == 0 && store.stats.written.load(Ordering::Relaxed) > n
        })
        .await;
    };
    for (i, at) in (1_000..1_010).enumerate() {
        store.record(rec(id, at, i != 3));
    }
    store.state_change(change(State::Pending, State::Up, 1_000));
    store.state_change(change(State::Up, State::Degraded, 1_010));
    store.record(rec(id, 1_010, true));
    settle().await;
    let open = incidents().await;
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0].reason.as_deref(), Some("burning"));
    assert_eq!(open[0].deliveries.len(), 1, "{open:?}");
    // Every run so far is replayed (no down yet).
    assert_eq!(store.slo_history(id, 0).await.unwrap().len(), 11);

    store.state_change(change(State::Degraded, State::Down, 1_020));
    store.record(rec(id, 1_020, false));
    settle().await;
    // Down: nothing to replay until it recovers.
    assert!(store.slo_history(id, 0).await.unwrap().is_empty());
    store.state_change(change(State::Down, State::Degraded, 1_030));
    store.record(rec(id, 1_030, true));
    store.record(rec(id, 1_031, true));
    settle().await;
    let still = incidents().await;
    assert_eq!(still.len(), 1, "one incident throughout: {still:?}");
    assert_eq!(still[0].id, open[0].id);
    assert_eq!(still[0].deliveries.len(), 1, "no second page: {still:?}");
    assert!(still[0].recovered_at.is_none());
    // After the recovery at 1 030: only the run after it.
    let replay = store.slo_history(id, 0).await.unwrap();
    assert_eq!(
        replay.iter().map(|r| r.0).collect::<Vec<_>>(),
        [1_031],
        "{replay:?}"
    );

    store.state_change(change(State::Degraded, State::Up, 1_040));
    store.record(rec(id, 1_040, true));
    settle().await;
    let resolving = incidents().await;
    assert!(resolving[0].recovered_at.is_some(), "{resolving:?}");
    stop.cancel();
    run.await.unwrap();
}

pub(crate) async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let t0 = std::time::Instant::now();
    while !cond() {
        assert!(t0.elapsed() < Duration::from_secs(30), "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Only the probes asked for, from the time asked for; none asked, none read.
#[tokio::test]
async fn rollups_of_the_probes_asked_for() {
    let (store, _writer, _db) = test_store(10).await;
    let ids = store
        .register(&[("a".into(), "http"), ("b".into(), "http")])
        .await
        .unwrap();
    let (a, b) = (ids["a"].id, ids["b"].id);
    store
        .exec_raw(&format!(
            "INSERT INTO rollups_daily (probe_id, day, runs, ok, sum_duration_us, \
             max_duration_us) VALUES ({a}, 0, 10, 9, 0, 0), ({a}, 100, 4, 4, 0, 0), \
             ({b}, 100, 2, 1, 0, 0)"
        ))
        .await;
    store
        .exec_raw(&format!(
            "INSERT INTO rollups_hourly (probe_id, hour, runs, ok, sum_duration_us, \
             max_duration_us) VALUES ({a}, 0, 1, 1, 500, 500), ({a}, 10, 3, 2, 900, 400), \
             ({b}, 10, 1, 0, 7, 7)"
        ))
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
    let (store, _writer, _db) = test_store(10).await;
    let ids = store.register(&[("web".into(), "http")]).await.unwrap();
    let web = ids["web"].id;
    store
        .exec_raw(&format!(
            "INSERT INTO incidents (id, probe_id, probe, severity, opened_at, alert, \
             acknowledged_at, recovered_at, resolve_due_at, resolved_at) VALUES \
             (1, {web}, 'web', 'critical', 10, '{{\"state\":\"down\"}}', NULL, NULL, NULL, NULL), \
             (2, {web}, 'web', 'warning', 20, '{{}}', NULL, NULL, NULL, 30), \
             (3, {web}, 'web', 'critical', 200, \
              '{{\"state\":\"degraded\",\"fired_as\":[\"down\",\"degraded\"]}}', 210, 220, 225, 230)"
        ))
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
            resolve_due_at: Some(225),
            resolved_at: Some(230),
            reason: None,
            opened_as: Some("degraded".into()),
            fired_as: vec!["down".into(), "degraded".into()],
        }
    );
    assert_eq!(h[1].opened_as.as_deref(), Some("down"));
    let all = store.incident_history(0).await.unwrap();
    assert_eq!(all.iter().map(|i| i.id).collect::<Vec<_>>(), [3, 2, 1]);
    assert_eq!(all[1].opened_as, None);
}

/// A silence added is listed until it ends; the first to end comes first.
#[tokio::test]
async fn added_silences_are_listed_while_they_run() {
    let (store, _writer, _db) = test_store(10).await;
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

/// Live timers move by the step, NULLs stay NULL, history stays put; a step back undoes
/// a step forward exactly.
#[tokio::test]
async fn a_shift_moves_live_timers_only() {
    let (store, _writer, _db) = test_store(10).await;
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
    store
        .exec_raw(&format!(
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
        ))
        .await;
    // Outbox: a delivered page of the open incident, a pending retry, a pending resolve
    // notice of the resolved incident, a delivered page of the resolved one (history).
    store
        .exec_raw(&format!(
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
        ))
        .await;
    // Pushes: one pinged (started, never succeeded), one never pinged.
    store
        .exec_raw(&format!(
            "INSERT INTO pushes (probe_id, first_seen_at, last_ping_at, last_kind, \
             last_success_at, started_at, pings) VALUES \
             ({job}, {}, {t}, 'start', NULL, {t}, 1), ({new}, {t}, NULL, NULL, NULL, NULL, 0)",
            t - H
        ))
        .await;
    // Silences: one running, one over.
    store
        .exec_raw(&format!(
            "INSERT INTO silences (id, probe, until, created_at) VALUES \
             (1, 'web', {}, {}), (2, 'web', {}, {})",
            t + H,
            t - 60_000,
            t - 1,
            t - H
        ))
        .await;
    let before = (
        store.ints_raw("SELECT id FROM incidents").await.len(),
        store.ints_raw("SELECT id FROM outbox").await.len(),
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
        store
            .ints_raw(
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
        store
            .ints_raw("SELECT created_at, due_at, delivered_at FROM outbox ORDER BY id")
            .await,
        [
            vec![s(t), s(t), s(t + 1)],
            vec![s(t + 3), s(t + 4_000), None],
            vec![s(t - H), s(t - H), None],
            vec![Some(t - 2 * H), Some(t - 2 * H), Some(t - 2 * H + 1)],
        ]
    );
    assert_eq!(
        store
            .ints_raw(
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
        store
            .ints_raw("SELECT until, created_at FROM silences ORDER BY id")
            .await,
        [
            vec![s(t + H), s(t - 60_000)],
            vec![Some(t - 1), Some(t - H)]
        ]
    );
    let after = (
        store.ints_raw("SELECT id FROM incidents").await.len(),
        store.ints_raw("SELECT id FROM outbox").await.len(),
    );
    assert_eq!(before, after, "no row added or lost");

    // The clock goes back by as much: every live timer is where it was. (The silence is
    // judged on the shifted clock: it still runs.)
    store.shift_timers(-H, t + H).await.unwrap();
    assert_eq!(
        store
            .ints_raw("SELECT opened_at, resolve_due_at FROM incidents WHERE id = 1")
            .await,
        [vec![Some(t), Some(t + 20)]]
    );
    assert_eq!(
        store
            .ints_raw("SELECT due_at FROM outbox WHERE id = 2")
            .await,
        [vec![Some(t + 4_000)]]
    );
    assert_eq!(
        store
            .ints_raw(&format!(
                "SELECT last_ping_at FROM pushes WHERE probe_id = {job}"
            ))
            .await,
        [vec![Some(t)]]
    );
    assert_eq!(
        store
            .ints_raw("SELECT until FROM silences ORDER BY id")
            .await,
        [vec![Some(t + H)], vec![Some(t - 1)]]
    );
}

/// A change of a lone location's verdict that is also the probe's: both, as one daemon on
/// its own sends it.
pub(crate) fn both(
    id: i64,
    transition: Transition,
    verdicts: Verdicts,
    page: Option<crate::paging::Page>,
) -> StateChange {
    StateChange {
        probe_id: id,
        verdicts: Some(verdicts),
        local: Some(transition.clone()),
        overall: Some(crate::store::Overall { transition, page }),
    }
}

/// A new probe (pending) of `id` going down, opening its incident with `plan`.
fn down(id: i64, at: i64, plan: crate::alert::plan::PagePlan) -> StateChange {
    both(
        id,
        Transition {
            from: State::Pending,
            to: State::Down,
            at,
            reason: Some("status 503".into()),
        },
        rec(id, at, false).verdicts,
        Some(crate::paging::Page::Open(Box::new(plan))),
    )
}

/// Runs a writer until what was queued so far is committed, then stops it.
async fn drain(writer: crate::store::Writer) {
    let stop = CancellationToken::new();
    stop.cancel();
    writer.run(stop, Duration::from_secs(5)).await;
}

/// An incident's life in the store: opened with its first page (the dedup key carries the
/// store's id), delivered, acknowledged (escalations and reminders stop, those paged are
/// told), recovered, resolved after its hold (a resolve notice to each notifier paged).
#[tokio::test]
async fn an_incident_from_open_to_resolved() {
    let (store, writer, _db) = test_store(10).await;
    let id = store.register(&[("api".into(), "http")]).await.unwrap()["api"].id;
    let mut plan = page_plan("api");
    plan.notify = vec!["mail".into(), "sms".into()];
    plan.fallback = vec!["hook".into()];
    store.state_change(down(id, 1_000, plan));
    drain(writer).await;

    let open = store.open_incidents().await.unwrap();
    assert_eq!(open.len(), 1, "{open:?}");
    let inc = open[0].id;
    let alert: crate::paging::Alert = serde_json::from_str(&open[0].alert).unwrap();
    assert_eq!(
        alert.dedup_key,
        format!("probed-probed-test-{}-{inc}", store.id)
    );
    let due = store.due_deliveries(1_000, "me", 60_000).await.unwrap();
    assert_eq!(
        due.iter().map(|d| d.notifier.as_str()).collect::<Vec<_>>(),
        ["mail", "sms"]
    );
    assert_eq!(due[0].fallback, ["hook"]);
    let backlog = store.outbox_backlog(&[]).await.unwrap();
    assert_eq!((backlog.pending, backlog.oldest), (2, Some(1_000)));
    // mail delivers; sms fails for good and falls back to hook.
    let attempt = |d: &crate::store::DueDelivery, ok| crate::store::Attempt {
        outbox_id: d.id,
        notifier: if ok { "mail" } else { "sms" },
        at: 1_100,
        ok,
        detail: if ok { "250 ok" } else { "http 400" },
        took_us: 10,
        attempts: 1,
    };
    store
        .record_attempt(
            &attempt(&due[0], true),
            crate::store::AfterAttempt::Delivered,
        )
        .await
        .unwrap();
    store
        .record_attempt(
            &attempt(&due[1], false),
            crate::store::AfterAttempt::Failed {
                fallback: due[1].fallback.split_first(),
                alert: &due[1].alert,
            },
        )
        .await
        .unwrap();
    let due = store.due_deliveries(2_000, "me", 60_000).await.unwrap();
    assert_eq!(
        due.iter().map(|d| d.notifier.as_str()).collect::<Vec<_>>(),
        ["hook"],
        "the page moved down the chain"
    );
    assert_eq!(store.last_sends(inc).await.unwrap().len(), 3);

    // Acknowledged: told to mail (it delivered), refused a second time.
    store
        .acknowledge(inc, "alice", 1_200)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store.acknowledge(inc, "bob", 1_300).await.unwrap(),
        Err(crate::store::AckError::Already("alice".into()))
    );
    assert_eq!(
        store.acknowledge(inc + 100, "bob", 1_300).await.unwrap(),
        Err(crate::store::AckError::NotFound)
    );
    let listed = store.incidents(true, 10).await.unwrap();
    assert_eq!(listed[0].state, "acknowledged");
    assert_eq!(listed[0].acknowledged_by.as_deref(), Some("alice"));
    let events: Vec<(String, String, String)> = listed[0]
        .deliveries
        .iter()
        .map(|d| (d.notifier.clone(), d.event.clone(), d.status.clone()))
        .collect();
    assert!(
        events.contains(&("mail".into(), "acknowledge".into(), "pending".into())),
        "{events:?}"
    );

    // Recovered at 2 000 with a hold of 500: due to resolve from 2 500.
    store
        .exec_raw(&format!(
            "UPDATE incidents SET recovered_at = 2000, resolve_due_at = 2500 WHERE id = {inc}"
        ))
        .await;
    assert!(
        store
            .incidents_due_to_resolve(2_499)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.incidents_due_to_resolve(2_500).await.unwrap(), [inc]);
    store.resolve_incident(inc, 2_500).await.unwrap();
    store.resolve_incident(inc, 2_600).await.unwrap(); // once only
    assert!(store.open_incidents().await.unwrap().is_empty());
    let all = store.incidents(false, 10).await.unwrap();
    assert_eq!(all[0].state, "resolved");
    let resolves: Vec<&str> = all[0]
        .deliveries
        .iter()
        .filter(|d| d.event == "resolve")
        .map(|d| d.notifier.as_str())
        .collect();
    assert_eq!(resolves, ["mail"], "only those that delivered a page");
    assert_eq!(
        all[0]
            .deliveries
            .iter()
            .filter(|d| d.notifier == "hook")
            .map(|d| d.status.as_str())
            .collect::<Vec<_>>(),
        ["cancelled"],
        "the unsent page stopped"
    );
}

/// What a resend of an open incident tells, read from the store: the probe's state now
/// (down, then degraded: the same incident), why (the latest failure while down, a location's
/// latest result first; the objective named while degraded), and a template that follows the
/// state, whose resolve still names every state it fired in.
#[tokio::test]
async fn an_open_incident_tells_the_probes_state_and_reason_now() {
    let (store, writer, _db) = test_store(100).await;
    let ids = store
        .register(&[("api".into(), "http"), ("loc".into(), "location")])
        .await
        .unwrap();
    let (api, loc) = (ids["api"].id, ids["loc"].id);
    let failing = |id, at, error: &str, keep| {
        let mut r = rec(id, at, false);
        r.obs.error = Some(error.into());
        r.keep = keep;
        r
    };
    store.state_change(down(api, 1_000, page_plan("api")));
    store.record(failing(api, 1_000, "certificate has expired", true));
    store.record(failing(api, 1_100, "connection refused", true));
    store.record(rec(api, 1_200, true));
    store.state_change(both(
        api,
        Transition {
            from: State::Down,
            to: State::Degraded,
            at: 1_300,
            reason: Some("Apdex 0.50 under 0.85".into()),
        },
        rec(api, 1_300, true).verdicts,
        None,
    ));
    // A location probe's results are not kept: only its latest, per location, says why.
    store.record(failing(loc, 1_000, "status 503", true));
    store.record(failing(loc, 1_100, "no word from eu-west for 3m", false));
    drain(writer).await;

    let open = store.open_incidents().await.unwrap();
    assert_eq!(open.len(), 1, "{open:?}");
    let r = &open[0];
    assert_eq!(
        (r.probe_id, r.probe_state.as_deref(), r.recovered_at),
        (api, Some("degraded"), None)
    );
    let reason = async |id, state, since| store.current_reason(id, state, since).await.unwrap();
    // Down: its latest run passed, so the last failure of the incident's results.
    assert_eq!(
        reason(api, "down", 1_000).await.as_deref(),
        Some("connection refused")
    );
    assert_eq!(reason(api, "down", 1_150).await, None, "none since");
    assert_eq!(
        reason(api, "degraded", 1_000).await.as_deref(),
        Some("Apdex 0.50 under 0.85")
    );
    assert_eq!(reason(api, "degraded", 1_400).await, None);
    assert_eq!(
        reason(loc, "down", 0).await.as_deref(),
        Some("no word from eu-west for 3m")
    );

    // The template follows the state; `fired_as` keeps the one it left.
    let mut alert: crate::paging::Alert = serde_json::from_str(&r.alert).unwrap();
    assert_eq!(
        (alert.state.as_str(), &alert.fired_as[..]),
        ("down", &["down".to_owned()][..])
    );
    assert!(alert.fire_as("degraded"));
    store.set_incident_alert(r.id, &alert).await.unwrap();
    let stored: crate::paging::Alert =
        serde_json::from_str(&store.open_incidents().await.unwrap()[0].alert).unwrap();
    assert_eq!(stored, alert);
    assert_eq!(stored.fired_as, ["down", "degraded"]);

    // Paged, recovered, resolved: the resolve names both states it fired in.
    let due = store.due_deliveries(1_000, "me", 60_000).await.unwrap();
    assert_eq!(due.len(), 1, "{due:?}");
    let delivered = crate::store::Attempt {
        outbox_id: due[0].id,
        notifier: "pager",
        at: 1_100,
        ok: true,
        detail: "202",
        took_us: 10,
        attempts: 1,
    };
    store
        .record_attempt(&delivered, crate::store::AfterAttempt::Delivered)
        .await
        .unwrap();
    store
        .exec_raw(&format!(
            "UPDATE incidents SET recovered_at = 2000, resolve_due_at = 2000 WHERE id = {}",
            r.id
        ))
        .await;
    assert_eq!(
        store.open_incidents().await.unwrap()[0].recovered_at,
        Some(2_000)
    );
    store.resolve_incident(r.id, 2_000).await.unwrap();
    let due = store.due_deliveries(2_000, "me", 60_000).await.unwrap();
    assert_eq!(due.len(), 1, "{due:?}");
    let resolve: crate::paging::Alert = serde_json::from_str(&due[0].alert).unwrap();
    assert_eq!(
        (resolve.event, resolve.state.as_str()),
        (crate::paging::Event::Resolve, "up")
    );
    assert_eq!(resolve.fired_as, ["down", "degraded"]);
    assert_eq!(resolve.fired_states(), ["down", "degraded"]);
}

/// Two daemons sharing one database, each opening an incident for the same probe at the
/// same time, open one between them, with one first page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_writers_open_one_incident_for_one_probe() {
    let (a, wa, db) = test_store(10).await;
    let (b, wb) = db.reopen(10).await;
    let id = a.register(&[("api".into(), "http")]).await.unwrap()["api"].id;
    b.register(&[("api".into(), "http")]).await.unwrap();
    a.state_change(down(id, 1_000, page_plan("api")));
    b.state_change(down(id, 1_001, page_plan("api")));
    tokio::join!(drain(wa), drain(wb));
    let open = a.incidents(true, 10).await.unwrap();
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0].deliveries.len(), 1, "{open:?}");
    assert_eq!(b.incidents(true, 10).await.unwrap()[0].id, open[0].id);
}

/// Escalation, reminder and refresh are queued together; a mute that ends pages once.
#[tokio::test]
async fn followups_and_a_mute_that_ends() {
    let (store, writer, _db) = test_store(10).await;
    let ids = store
        .register(&[("api".into(), "http"), ("web".into(), "http")])
        .await
        .unwrap();
    let mut muted = page_plan("web");
    muted.muted = Some("maintenance window \"deploy\"".into());
    store.state_change(down(ids["api"].id, 1_000, page_plan("api")));
    store.state_change(down(ids["web"].id, 1_000, muted));
    drain(writer).await;
    let open = store.open_incidents().await.unwrap();
    let (api, web) = match open[0].probe.as_str() {
        "api" => (&open[0], &open[1]),
        _ => (&open[1], &open[0]),
    };
    assert!(api.paged && !web.paged);
    let alert: crate::paging::Alert = serde_json::from_str(&api.alert).unwrap();
    let (sms, hook, am) = (
        ["sms".to_string()],
        ["hook".to_string()],
        ["am".to_string()],
    );
    store
        .queue_followups(
            api.id,
            &alert,
            &crate::store::Followups {
                escalate: Some((1, &sms, &hook)),
                remind: Some((&hook, &[])),
                last_reminder_at: None,
                refresh: &am,
            },
            5_000,
        )
        .await
        .unwrap();
    let again = store.open_incidents().await.unwrap();
    let api2 = again.iter().find(|i| i.id == api.id).unwrap();
    assert_eq!(
        (api2.escalation_step, api2.last_reminder_at),
        (1, Some(5_000))
    );
    let mut queued: Vec<String> = store
        .due_deliveries(5_000, "me", 60_000)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.notifier)
        .collect();
    queued.sort();
    assert_eq!(queued, ["am", "hook", "pager", "sms"]);

    let web_alert: crate::paging::Alert = serde_json::from_str(&web.alert).unwrap();
    let pager = ["pager".to_string()];
    store
        .page_after_mute(web.id, &web_alert, Some((&pager, &[])), 6_000)
        .await
        .unwrap();
    let web2 = store.open_incidents().await.unwrap();
    assert!(web2.iter().all(|i| i.paged), "{web2:?}");
}

/// Silences by SQLite's glob rules on either backend; an open incident stops a page from
/// memory.
#[tokio::test]
async fn silences_cover_by_glob_and_open_incidents_are_seen() {
    let (store, writer, _db) = test_store(10).await;
    let id = store.register(&[("api-1".into(), "http")]).await.unwrap()["api-1"].id;
    let s = store
        .add_silence("api-[0-9]", 5_000, 1_000, "alice", None)
        .await
        .unwrap();
    store
        .add_silence("web*", 9_000, 1_000, "alice", None)
        .await
        .unwrap();
    let covering = store
        .silence_covering("api-1", 2_000)
        .await
        .unwrap()
        .unwrap();
    assert!(
        covering.starts_with(&format!("silence {s} until ")),
        "{covering}"
    );
    assert_eq!(store.silence_covering("api-x", 2_000).await.unwrap(), None);
    assert_eq!(
        store.silence_covering("api-1", 5_000).await.unwrap(),
        None,
        "ended"
    );
    assert_eq!(
        store
            .open_incident_or_silence(id, "api-1", 6_000)
            .await
            .unwrap(),
        None
    );
    store.state_change(down(id, 6_000, page_plan("api-1")));
    drain(writer).await;
    let why = store
        .open_incident_or_silence(id, "api-1", 6_000)
        .await
        .unwrap()
        .unwrap();
    assert!(why.ends_with("is still open"), "{why}");
}

/// Push pings: the clock starts when the probe is first known, each ping is recorded, and
/// a restart reads them back.
#[tokio::test]
async fn push_pings_are_kept() {
    let (store, _writer, db) = test_store(10).await;
    let id = store.register(&[("job".into(), "push")]).await.unwrap()["job"].id;
    let first = store.push_states(&[id], 1_000).await.unwrap();
    assert_eq!(first[&id].first_seen_at, 1_000);
    assert_eq!(first[&id].pings, 0);
    let st = store
        .push_ping(id, &ping(PingKind::Start, None, None), 2_000)
        .await
        .unwrap();
    assert_eq!((st.started_at, st.last_success_at), (Some(2_000), None));
    let st = store
        .push_ping(id, &ping(PingKind::Ok, Some(0), None), 3_000)
        .await
        .unwrap();
    assert_eq!(
        (st.started_at, st.last_success_at, st.pings),
        (None, Some(3_000), 2)
    );
    let st = store
        .push_ping(id, &ping(PingKind::Fail, Some(137), None), 4_000)
        .await
        .unwrap();
    assert_eq!(
        (st.last_kind.as_deref(), st.exit_status, st.last_success_at),
        (Some("fail"), Some(137), Some(3_000))
    );
    assert_eq!(st.last_duration_ms, None, "no start before this failure");
    store.close().await;
    let (store, _writer) = db.reopen(10).await;
    let again = store.push_states(&[id], 9_000).await.unwrap();
    assert_eq!(again[&id].first_seen_at, 1_000, "not restarted");
    assert_eq!(again[&id].pings, 3);
}

fn ping(kind: PingKind, exit_status: Option<i64>, rid: Option<&str>) -> Ping {
    Ping {
        kind,
        exit_status,
        rid: rid.map(str::to_owned),
        body: None,
    }
}

/// Runs are timed from their start: by rid when given (two runs overlapping are timed
/// apart), else from the start just before; a `log` ping is kept with its body and changes
/// no state; the last 100 pings are kept.
#[tokio::test]
async fn push_runs_are_timed_and_logs_change_nothing() {
    let (store, _writer, _db) = test_store(10).await;
    let id = store.register(&[("job".into(), "push")]).await.unwrap()["job"].id;
    store.push_states(&[id], 1_000).await.unwrap();
    let (a, b) = (
        "0f8fad5b-d9cb-469f-a165-70867728950e",
        "7c9e6679-7425-40de-944b-e07fc1f90ae7",
    );
    store
        .push_ping(id, &ping(PingKind::Start, None, Some(a)), 2_000)
        .await
        .unwrap();
    store
        .push_ping(id, &ping(PingKind::Start, None, Some(b)), 2_500)
        .await
        .unwrap();
    let st = store
        .push_ping(id, &ping(PingKind::Ok, Some(0), Some(a)), 5_000)
        .await
        .unwrap();
    assert_eq!(st.last_duration_ms, Some(3_000), "run a: 2.0s to 5.0s");
    let mut failed = ping(PingKind::Fail, Some(137), Some(b));
    failed.body = Some("step 3\nKilled\n".into());
    let st = store.push_ping(id, &failed, 6_000).await.unwrap();
    assert_eq!(st.last_duration_ms, Some(3_500), "run b: 2.5s to 6.0s");
    assert_eq!(st.last_body.as_deref(), Some("step 3\nKilled\n"));
    // The same rid again finds no open run.
    let st = store
        .push_ping(id, &ping(PingKind::Ok, Some(0), Some(b)), 7_000)
        .await
        .unwrap();
    assert_eq!(st.last_duration_ms, None);
    // No rid: from the start just before.
    store
        .push_ping(id, &ping(PingKind::Start, None, None), 8_000)
        .await
        .unwrap();
    let before = store
        .push_ping(id, &ping(PingKind::Ok, None, None), 8_250)
        .await
        .unwrap();
    assert_eq!(before.last_duration_ms, Some(250));
    let mut log = ping(PingKind::Log, None, None);
    log.body = Some("disk 91% full".into());
    let after = store.push_ping(id, &log, 9_000).await.unwrap();
    assert_eq!(
        after,
        PushState {
            pings: before.pings + 1,
            ..before.clone()
        },
        "a log ping changes nothing but the count"
    );
    let pings = store.recent_pings("job", 100).await.unwrap();
    assert_eq!(
        pings
            .iter()
            .map(|p| (p.kind.as_str(), p.duration_ms, p.body.as_deref()))
            .take(3)
            .collect::<Vec<_>>(),
        vec![
            ("log", None, Some("disk 91% full")),
            ("ok", Some(250), None),
            ("start", None, None)
        ]
    );
    assert_eq!(pings.len(), 8);
    for t in 0..120 {
        store
            .push_ping(id, &ping(PingKind::Log, None, None), 10_000 + t)
            .await
            .unwrap();
    }
    assert_eq!(store.recent_pings("job", 1000).await.unwrap().len(), 100);
    assert!(store.recent_pings("nope", 10).await.unwrap().is_empty());
}

/// Locations: ids from 0 (what rows from before locations carry), each location's verdict
/// kept apart, the probe's own state changed only from the state it has (the second of two
/// daemons making the same change finds it made, and opens nothing), the others' verdicts
/// read back, daemons' heartbeats.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locations_keep_their_verdicts_and_the_probe_changes_once() {
    let (eu, weu, db) = test_store(10).await;
    let (us, wus) = db.reopen(10).await;
    assert_eq!(eu.set_location("eu-west").await.unwrap(), 0);
    assert_eq!(us.set_location("us-east").await.unwrap(), 1);
    assert_eq!(
        eu.set_location("eu-west").await.unwrap(),
        0,
        "the same again"
    );
    let id = eu.register(&[("api".into(), "http")]).await.unwrap()["api"].id;
    let saved = us.register(&[("api".into(), "http")]).await.unwrap();
    assert_eq!(saved["api"].overall.0, State::Pending);

    // eu sees it down and makes the probe down; us makes the same change after it.
    eu.record(rec(id, 1_000, false));
    eu.state_change(down(id, 1_000, page_plan("api")));
    drain(weu).await;
    us.record(rec(id, 1_001, false));
    us.state_change(down(id, 1_001, page_plan("api")));
    drain(wus).await;
    let open = eu.incidents(true, 10).await.unwrap();
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(open[0].deliveries.len(), 1, "one page: {open:?}");
    assert_eq!(
        eu.ints_raw(&format!(
            "SELECT loc FROM state_changes WHERE probe_id = {id} ORDER BY loc"
        ))
        .await,
        [[Some(-1)], [Some(0)], [Some(1)]],
        "both locations' verdicts, and the probe's one change"
    );
    assert_eq!(
        eu.ints_raw("SELECT loc FROM results ORDER BY loc").await,
        [[Some(0)], [Some(1)]]
    );

    // Each reads the other's verdict.
    let seen_by_eu = eu.remote_votes(0).await.unwrap();
    assert_eq!(seen_by_eu.len(), 1, "{seen_by_eu:?}");
    assert_eq!(
        (
            seen_by_eu[0].location.as_str(),
            seen_by_eu[0].state,
            seen_by_eu[0].checked_at
        ),
        ("us-east", State::Down, Some(1_001))
    );
    assert!(
        eu.remote_votes(2_000).await.unwrap().is_empty(),
        "nothing newer"
    );
    assert_eq!(
        us.overall_changes(0).await.unwrap(),
        [(id, State::Down, Some(1_000))]
    );
    // A restart resumes each location's own verdict, and the probe's state.
    let again = us.register(&[("api".into(), "http")]).await.unwrap();
    assert_eq!(again["api"].verdicts.state, State::Down);
    assert_eq!(again["api"].last.as_ref().unwrap().at, 1_001);
    assert_eq!(again["api"].overall, (State::Down, Some(1_000)));

    // A third location joins: its verdicts start from the probe's state, with no result.
    let (ap, _wap) = db.reopen(10).await;
    assert_eq!(ap.set_location("ap-south").await.unwrap(), 2);
    let ap_saved = ap.register(&[("api".into(), "http")]).await.unwrap();
    assert_eq!(ap_saved["api"].verdicts.state, State::Down);
    assert!(ap_saved["api"].last.is_none(), "no result of its own yet");

    let row = |instance: &str, blind: Option<&str>, seen| crate::store::DaemonRow {
        instance: instance.into(),
        location: "eu-west".into(),
        started_at: 10,
        seen_at: seen,
        blind: blind.map(str::to_owned),
        version: "0.1.0".into(),
    };
    eu.daemon_seen(&row("probed-eu-1", None, 100))
        .await
        .unwrap();
    eu.daemon_seen(&row("probed-eu-1", Some("48 of 50 probes failed"), 200))
        .await
        .unwrap();
    assert_eq!(
        us.daemons().await.unwrap(),
        [row("probed-eu-1", Some("48 of 50 probes failed"), 200)]
    );
}

/// Deliveries are claimed: while one daemon's claim lasts the others leave the row alone; a
/// claim that ran out (its daemon died mid-send) is taken over; a daemon's own claim is its
/// own again (a restart). A retry gives the claim up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_are_claimed_once_and_taken_over_when_a_claim_runs_out() {
    let (a, wa, db) = test_store(10).await;
    let (b, _wb) = db.reopen(10).await;
    let id = a.register(&[("api".into(), "http")]).await.unwrap()["api"].id;
    a.state_change(down(id, 1_000, page_plan("api")));
    drain(wa).await;
    let got = a.due_deliveries(1_000, "probed-a", 10_000).await.unwrap();
    assert_eq!(got.len(), 1);
    assert!(
        b.due_deliveries(1_000, "probed-b", 10_000)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        b.due_deliveries(10_999, "probed-b", 10_000)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        a.due_deliveries(5_000, "probed-a", 10_000)
            .await
            .unwrap()
            .len(),
        1,
        "its own claim, extended"
    );
    // a dies: its claim runs out at 15 000, and b takes the row over.
    let taken = b.due_deliveries(15_000, "probed-b", 10_000).await.unwrap();
    assert_eq!(taken.iter().map(|d| d.id).collect::<Vec<_>>(), [got[0].id]);
    assert!(
        a.due_deliveries(16_000, "probed-a", 10_000)
            .await
            .unwrap()
            .is_empty()
    );
    // b's try fails and is retried later: the claim goes with it.
    b.record_attempt(
        &crate::store::Attempt {
            outbox_id: got[0].id,
            notifier: "pager",
            at: 16_000,
            ok: false,
            detail: "http 503",
            took_us: 1,
            attempts: 1,
        },
        crate::store::AfterAttempt::Retry { due_at: 17_000 },
    )
    .await
    .unwrap();
    assert_eq!(
        a.due_deliveries(17_000, "probed-a", 10_000)
            .await
            .unwrap()
            .len(),
        1
    );
}
