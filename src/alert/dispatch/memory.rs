//! Paging from memory while the store cannot be written.
//!
//! Normally a page exists only once the state change that caused it is committed (the outbox
//! row is written in the same transaction). When the disk is full, the file system went
//! read-only or another process holds the database lock, that commit fails and keeps
//! failing; waiting for it would silence the daemon exactly when something else is wrong.
//! So the store writer hands each uncommitted change that should page to the
//! [`MemoryPager`], which sends it at once: the route's notifiers, each with its retries
//! (backoff, `Retry-After`) and its fallback chain, as the outbox would.
//!
//! The page carries its own dedup key (`probed-<instance>-<probe id>-<time>`), and the change
//! is marked paged; when the store comes back and the incident is written, it keeps that key
//! (so the resolve reaches the same pager incident) and its outbox rows are recorded as sent
//! rather than sent again. A probe pages from memory once per outage of the store.
//! Escalations, reminders and resolves wait for the store.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use super::{Dispatcher, retry_wait, send_within};
use crate::alert::{Alert, Event, SendError};
use crate::paging::{Page, PagePlan};
use crate::store::{Failover, StateChange};

/// What the memory pager remembers.
#[derive(Debug, Default)]
pub struct MemoryState {
    /// Probes paged from memory during this outage of the store.
    paged: HashSet<i64>,
    /// Pages still being sent: started at (unix ms), by sequence number.
    sending: HashMap<u64, i64>,
    next: u64,
}

impl MemoryState {
    /// When the oldest page still being sent from memory started.
    pub fn oldest(&self) -> Option<i64> {
        self.sending.values().copied().min()
    }
}

/// The dispatcher in its role as the store's [`Failover`].
pub struct MemoryPager(pub Arc<Dispatcher>);

impl Failover for MemoryPager {
    fn unwritten(&self, change: &mut StateChange) {
        // Only a change that opens an incident pages.
        let Some(at) = change.overall.as_ref().map(|o| o.transition.at) else {
            return;
        };
        let probe_id = change.probe_id;
        let Some(Page::Open(plan)) = change.page_mut() else {
            return;
        };
        if plan.muted.is_some() || plan.notify.is_empty() || plan.paged_from_memory {
            return;
        }
        if !self.0.memory.lock().unwrap().paged.insert(probe_id) {
            return;
        }
        plan.paged_from_memory = true;
        plan.alert.dedup_key = format!("probed-{}-{}-{}", plan.alert.source, probe_id, at);
        let d = self.0.clone();
        let plan = plan.clone();
        tokio::spawn(async move { d.page_from_memory(probe_id, plan).await });
    }

    fn recovered(&self) {
        self.0.memory.lock().unwrap().paged.clear();
    }
}

impl Dispatcher {
    async fn page_from_memory(self: Arc<Self>, probe_id: i64, plan: Box<PagePlan>) {
        let now = crate::clock::now_ms();
        let probe = plan.alert.probe.clone();
        // The rules the store applies when the change is written: an incident still open (a
        // flap within its resolve hold) continues without a page; a silence mutes. Reads
        // usually still work; if they do not, page anyway.
        match self
            .store
            .open_incident_or_silence(probe_id, &probe, now)
            .await
        {
            Ok(Some(why)) => {
                tracing::info!(probe = %probe, why = %why, "store cannot be written; not paging from memory");
                return;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(probe = %probe, error = %e, "cannot read incidents or silences; paging from memory regardless")
            }
        }
        let seq = {
            let mut m = self.memory.lock().unwrap();
            m.next += 1;
            let seq = m.next;
            m.sending.insert(seq, now);
            seq
        };
        tracing::warn!(probe = %probe, notify = ?plan.notify, "store cannot be written: paging from memory");
        let mut alert = plan.alert.clone();
        alert.event = Event::Trigger;
        alert.at = now;
        let alert = Arc::new(alert);
        let mut chains = tokio::task::JoinSet::new();
        for name in &plan.notify {
            let mut chain = vec![name.clone()];
            chain.extend(plan.fallback.iter().filter(|f| *f != name).cloned());
            let (me, alert) = (self.clone(), alert.clone());
            chains.spawn(async move { me.send_chain(probe_id, &alert, &chain).await });
        }
        while chains.join_next().await.is_some() {}
        self.memory.lock().unwrap().sending.remove(&seq);
    }

    /// Tries each notifier of `chain` in turn (with its retries) until one accepts.
    async fn send_chain(&self, probe_id: i64, alert: &Alert, chain: &[String]) {
        for (i, name) in chain.iter().enumerate() {
            let plan = self.plan();
            let Some(n) = plan.notifiers.get(name).cloned() else {
                tracing::error!(notifier = %name, "notifier is not configured (or could not be built); trying the next");
                continue;
            };
            let mut attempt = 0;
            let error = loop {
                attempt += 1;
                let sent = {
                    let _permit = self.slots.acquire().await;
                    send_within(&n, alert).await
                };
                self.stats.attempted(name, sent.is_ok());
                match sent {
                    Ok(d) => {
                        self.stats.paged_from_memory.fetch_add(1, Relaxed);
                        tracing::warn!(notifier = %name, probe = %alert.probe, attempts = attempt, detail = %d.detail, "alert delivered from memory");
                        return;
                    }
                    Err(e) => {
                        if matches!(e, SendError::Permanent { .. })
                            || attempt >= plan.options.max_attempts
                        {
                            break e;
                        }
                        let wait = retry_wait(&plan.options, attempt, &e);
                        tracing::warn!(notifier = %name, attempts = attempt, error = %e, "alert delivery from memory failed; retrying");
                        tokio::time::sleep(wait).await;
                        if self.covered_elsewhere(probe_id, alert).await {
                            return;
                        }
                        if !self.still_firing(probe_id) {
                            tracing::info!(probe = %alert.probe, "no longer paging (it recovered, or this daemon cannot see); not paging from memory");
                            return;
                        }
                    }
                }
            };
            match chain.get(i + 1) {
                Some(next) => {
                    tracing::error!(notifier = %name, fallback = %next, error = %error, "alert channel failed; falling back")
                }
                None => {
                    self.stats.given_up.fetch_add(1, Relaxed);
                    tracing::error!(notifier = %name, probe = %alert.probe, error = %error, "alert could not be delivered and no fallback is left");
                }
            }
        }
    }

    /// Whether a page from memory has become one too many while it was being retried: the
    /// store can be read again, and an incident of the probe open since this page's began
    /// (still open, or resolved since) has another key: a daemon sharing the store opened it
    /// and paged it through the outbox. An incident under this page's own key is this
    /// page's, written since: it still goes out.
    async fn covered_elsewhere(&self, probe_id: i64, alert: &Alert) -> bool {
        match self
            .store
            .incident_keys_since(probe_id, alert.opened_at)
            .await
        {
            Ok(keys) if keys.iter().any(|k| *k != alert.dedup_key) => {
                tracing::info!(probe = %alert.probe, "an incident opened elsewhere covers this page; not paging from memory");
                true
            }
            _ => false,
        }
    }
}
