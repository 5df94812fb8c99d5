//! What the outside world may see: the status page, its feeds, the Statuspage-style JSON and
//! badges all render one [`View`], built here from [`Sources`]: the live state the caller
//! (the API) gathers from the running daemon (the config, each probe's status, the windows
//! muting paging now), plus history and incidents read from the store.
//!
//! **Only probes with `public: true` appear**, and of them only what is safe by construction:
//! the display name (`title`, else the name), `description`, `group`, a coarse status, times,
//! uptime and latency figures. Never a URL, host, address, header, DSN, label, reason or error
//! text: a probe's error often names an internal host (`connect to 10.0.0.5:5432: refused`),
//! so incident texts here are fixed sentences, not the probe's words.
//!
//! Long windows come from `rollups_daily` (one row per probe and day, kept 400 days) and the
//! last day from `rollups_hourly`, never from raw results (the store's reads for the views,
//! `src/store/views.rs`), and a built view is reused for [`CACHE_FOR`], so the page answers
//! in about the same time with a year of history as with a day, and a burst of readers costs
//! one build.

pub mod badge;
pub mod feed;
pub mod page;
pub mod statuspage;
mod wording;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::{Config, Maintenance};
use crate::evaluate::State;
use crate::report::ProbeStatus;
use crate::store::views::IncidentSummary;
use crate::store::{Store, StoreError};

/// How long a built view is served before it is rebuilt (and the `max-age` readers get).
pub const CACHE_FOR: Duration = Duration::from_secs(10);
const DAY_MS: i64 = 86_400_000;
const HOUR_MS: i64 = 3_600_000;
/// Resolved incidents shown: this many, from the history window.
const RECENT_INCIDENTS: usize = 50;
/// Maintenance windows shown ahead of time.
const MAINTENANCE_HORIZON_MS: i64 = 14 * DAY_MS;

/// A component's status, in Statuspage's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Operational,
    UnderMaintenance,
    DegradedPerformance,
    PartialOutage,
    MajorOutage,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Operational => "operational",
            Status::UnderMaintenance => "under_maintenance",
            Status::DegradedPerformance => "degraded_performance",
            Status::PartialOutage => "partial_outage",
            Status::MajorOutage => "major_outage",
        }
    }

    /// For people: `Operational`, `Degraded performance`, ...
    pub fn label(self) -> &'static str {
        match self {
            Status::Operational => "Operational",
            Status::UnderMaintenance => "Under maintenance",
            Status::DegradedPerformance => "Degraded performance",
            Status::PartialOutage => "Partial outage",
            Status::MajorOutage => "Major outage",
        }
    }
}

/// The page as a whole.
#[derive(Debug, Clone)]
pub struct Page {
    /// Stable, derived from the instance name.
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub url: String,
    /// When something on it last changed (a component's state, an incident), unix ms.
    pub updated_at: i64,
    /// The start of the UTC day the daemon started, unix ms: the `created_at` of a component
    /// with no result yet.
    pub created_at: i64,
}

/// One day of a component's history.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Day {
    /// Start of the UTC day, unix ms.
    pub start: i64,
    /// Successful runs in percent; `None` with no runs that day.
    pub uptime: Option<f64>,
    pub runs: u64,
}

/// One public probe.
#[derive(Debug, Clone)]
pub struct Component {
    pub id: String,
    /// The probe's name (part of badge URLs; a public probe's name is public).
    pub probe: String,
    pub name: String,
    pub description: Option<String>,
    pub group: Option<String>,
    pub status: Status,
    /// When the current state began, unix ms.
    pub since: Option<i64>,
    pub position: usize,
    /// Oldest first, one per day of the history window (the last one is today).
    pub days: Vec<Day>,
    pub uptime_24h: Option<f64>,
    pub uptime_7d: Option<f64>,
    pub uptime_30d: Option<f64>,
    /// Mean latency per hour over the last 24 hours, oldest first (ms; `None`: no runs).
    pub latency_24h: Vec<Option<f64>>,
    pub last_latency_ms: Option<f64>,
    /// Whether its kind has a response time to show (not a push probe, not a backup check).
    pub has_latency: bool,
    /// The start of the first UTC day it has results for (as far back as the daily rollups
    /// go), unix ms: its Statuspage `created_at`, the same on every build. `None` before its
    /// first result.
    pub created_at: Option<i64>,
}

/// A group of components (`group:` in the config).
#[derive(Debug, Clone)]
pub struct Group {
    pub id: String,
    pub name: String,
    /// Indexes into [`View::components`].
    pub members: Vec<usize>,
    pub status: Status,
    pub position: usize,
    /// The earliest of its members' [`Component::created_at`]: stable across builds.
    pub created_at: Option<i64>,
}

/// Where an incident stands, in Statuspage's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncidentStatus {
    Investigating,
    Identified,
    Monitoring,
    Resolved,
}

impl IncidentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentStatus::Investigating => "investigating",
            IncidentStatus::Identified => "identified",
            IncidentStatus::Monitoring => "monitoring",
            IncidentStatus::Resolved => "resolved",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            IncidentStatus::Investigating => "Investigating",
            IncidentStatus::Identified => "Identified",
            IncidentStatus::Monitoring => "Monitoring",
            IncidentStatus::Resolved => "Resolved",
        }
    }
}

/// One step of an incident's life, newest last.
#[derive(Debug, Clone)]
pub struct Update {
    pub status: IncidentStatus,
    pub at: i64,
    /// A fixed sentence (never the probe's error text).
    pub body: String,
}

/// An incident of a public probe.
#[derive(Debug, Clone)]
pub struct Incident {
    pub id: i64,
    /// The component it affects (index into [`View::components`]).
    pub component: usize,
    pub name: String,
    pub status: IncidentStatus,
    /// `minor` for an incident that only ever was degraded; one that went down `critical`,
    /// `major` or `minor`, from the probe's severity.
    pub impact: &'static str,
    /// What it did to its component: `degraded_performance` or `major_outage`, from the
    /// state it stands (or last stood) in.
    pub component_status: Status,
    /// The component's status when it opened (for the first update's
    /// `affected_components`).
    pub opened_status: Status,
    pub opened_at: i64,
    /// When the probe was seen back up and the resolve hold began; `None` while it is down,
    /// and for one resolved without a hold (recovered and resolved at the same moment).
    pub monitoring_at: Option<i64>,
    /// When the resolve hold ended and the incident was resolved.
    pub resolved_at: Option<i64>,
    pub updated_at: i64,
    pub updates: Vec<Update>,
}

/// A maintenance window that covers public probes.
#[derive(Debug, Clone)]
pub struct MaintenanceWindow {
    pub id: String,
    pub name: String,
    pub start: i64,
    pub end: i64,
    pub in_progress: bool,
    /// Indexes into [`View::components`].
    pub components: Vec<usize>,
}

/// Everything public, at one moment.
#[derive(Debug, Clone)]
pub struct View {
    pub page: Page,
    pub components: Vec<Component>,
    pub groups: Vec<Group>,
    /// Newest first (by when each opened, then by id): every unresolved one and the most
    /// recent resolved ones of the history window ([`RECENT_INCIDENTS`] at most).
    pub incidents: Vec<Incident>,
    pub maintenances: Vec<MaintenanceWindow>,
    pub history_days: u32,
    /// Built at, unix ms.
    pub built_at: i64,
}

impl View {
    /// The overall indicator and its description, as Statuspage words them.
    pub fn indicator(&self) -> (&'static str, &'static str) {
        let worst = self
            .components
            .iter()
            .map(|c| c.status)
            .max()
            .unwrap_or(Status::Operational);
        let down = self
            .components
            .iter()
            .filter(|c| c.status == Status::MajorOutage)
            .count();
        match worst {
            Status::Operational => ("none", "All Systems Operational"),
            Status::UnderMaintenance => ("maintenance", "Service Under Maintenance"),
            Status::DegradedPerformance => ("minor", "Minor Service Outage"),
            Status::PartialOutage => ("major", "Partial System Outage"),
            Status::MajorOutage if down * 2 > self.components.len() => {
                ("critical", "Major Service Outage")
            }
            Status::MajorOutage => ("major", "Partial System Outage"),
        }
    }

    pub fn unresolved(&self) -> impl Iterator<Item = &Incident> {
        self.incidents
            .iter()
            .filter(|i| i.status != IncidentStatus::Resolved)
    }

    pub fn component(&self, probe: &str) -> Option<&Component> {
        self.components.iter().find(|c| c.probe == probe)
    }
}

/// The last built view, reused for [`CACHE_FOR`].
#[derive(Default)]
pub struct Cache {
    last: Mutex<Option<(Instant, Arc<View>)>>,
    /// Serializes builds, so a burst of readers after expiry costs one.
    building: tokio::sync::Mutex<()>,
}

impl Cache {
    /// The current view: the cached one while fresh, else the one `build` makes (usually
    /// [`build`] of the moment's [`Sources`]). `build` is only awaited when no fresh view is
    /// at hand, so gathering its sources costs nothing while the cache serves.
    pub async fn get(
        &self,
        build: impl Future<Output = Result<View, StoreError>>,
    ) -> Result<Arc<View>, StoreError> {
        if let Some(v) = self.fresh() {
            return Ok(v);
        }
        let _one = self.building.lock().await;
        if let Some(v) = self.fresh() {
            return Ok(v);
        }
        let v = Arc::new(build.await?);
        *self.last.lock().unwrap() = Some((Instant::now(), v.clone()));
        Ok(v)
    }

    fn fresh(&self) -> Option<Arc<View>> {
        self.last
            .lock()
            .unwrap()
            .as_ref()
            .filter(|(at, _)| at.elapsed() < CACHE_FOR)
            .map(|(_, v)| v.clone())
    }
}

/// A stable short id (12 hex digits) for `what`.
pub fn id_of(what: &str) -> String {
    format!("{:012x}", crate::hash::stable_hash(what) & 0xffff_ffff_ffff)
}

/// What a view is built from, gathered by the caller (the API) from the running daemon, so
/// that this module reads live state as data and needs nothing above the store.
pub struct Sources<'a> {
    /// The running config: which probes are public, the page's options, the maintenance
    /// windows it announces.
    pub config: &'a Config,
    /// The maintenance windows that mute paging now (the alert router's): a probe under one
    /// is `under_maintenance`.
    pub muting: &'a [Maintenance],
    /// Every probe's live status, from memory (the status report's probes).
    pub probes: &'a [ProbeStatus],
    /// Each running probe's store id, by name.
    pub ids: &'a HashMap<String, i64>,
    /// When the daemon started, unix ms: the page's `updated_at` until something changes.
    pub started_at: i64,
    /// History (rollups) and incidents.
    pub store: &'a Store,
}

/// Builds the view: live states from [`Sources::probes`], history from the rollups,
/// incidents from the store.
pub async fn build(src: &Sources<'_>) -> Result<View, StoreError> {
    let cfg = src.config;
    let opts = &cfg.status_page;
    let now = crate::clock::now_ms();
    let states: HashMap<&str, &ProbeStatus> =
        src.probes.iter().map(|p| (p.name.as_str(), p)).collect();
    let entries = src.ids;

    // Components, in config order.
    let mut components = Vec::new();
    let mut ids = Vec::new();
    for p in cfg.probes.iter().filter(|p| p.public) {
        let Some(id) = entries.get(&p.name) else {
            continue;
        };
        let st = states.get(p.name.as_str());
        let status = if src.muting.iter().any(|m| m.active(&p.name, now)) {
            Status::UnderMaintenance
        } else {
            match st.map(|s| s.state) {
                Some(State::Down) => Status::MajorOutage,
                Some(State::Degraded | State::Unknown) => Status::DegradedPerformance,
                Some(State::Paused) => Status::UnderMaintenance,
                _ => Status::Operational,
            }
        };
        ids.push(*id);
        components.push(Component {
            id: id_of(&format!("component:{}", p.name)),
            probe: p.name.clone(),
            name: p.display_name().to_owned(),
            description: p.description.clone(),
            group: p.group.clone(),
            status,
            since: st
                .and_then(|s| s.since.as_deref())
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.timestamp_millis()),
            position: components.len() + 1,
            days: Vec::new(),
            uptime_24h: None,
            uptime_7d: None,
            uptime_30d: None,
            latency_24h: Vec::new(),
            last_latency_ms: st.and_then(|s| s.last_latency_ms),
            has_latency: wording::has_latency(p.spec.kind()),
            created_at: None,
        });
    }

    // History from the hourly rollups.
    let days = opts.history_days.max(1) as i64;
    let today = now - now.rem_euclid(DAY_MS);
    let since = today - (days - 1) * DAY_MS;
    let this_hour = now - now.rem_euclid(HOUR_MS);
    // From the daily rollups (one row per probe and day) for the bars and the 7- and 30-day
    // figures, and the hourly ones for the last 24 hours: a year of history costs no more.
    let store = src.store;
    let mut per_day: HashMap<i64, Vec<(u64, u64)>> = HashMap::new();
    let mut windows: HashMap<i64, [(u64, u64); 3]> = HashMap::new();
    let mut hourly: HashMap<i64, Vec<(u64, i64)>> = HashMap::new();
    let h24 = this_hour - 23 * HOUR_MS;
    for r in store
        .daily_rollups(&ids, since.min(today - 29 * DAY_MS))
        .await?
    {
        let (id, day, runs, ok) = (r.probe_id, r.day, r.runs, r.ok);
        if day >= since
            && let Some(slot) = per_day
                .entry(id)
                .or_insert_with(|| vec![(0, 0); days as usize])
                .get_mut(((day - since) / DAY_MS) as usize)
        {
            *slot = (runs, ok);
        }
        let w = windows.entry(id).or_default();
        for (i, n) in [7, 30].into_iter().enumerate() {
            if day > today - n * DAY_MS {
                w[i + 1].0 += runs;
                w[i + 1].1 += ok;
            }
        }
    }
    for r in store.hourly_rollups(&ids, h24).await? {
        let age_h = (this_hour - r.hour) / HOUR_MS;
        let w = windows.entry(r.probe_id).or_default();
        w[0].0 += r.runs;
        w[0].1 += r.ok;
        let slot = hourly.entry(r.probe_id).or_insert_with(|| vec![(0, 0); 24]);
        if (0..24).contains(&age_h) {
            slot[23 - age_h as usize] = (r.runs, r.sum_duration_us);
        }
    }
    let first: HashMap<i64, i64> = store.first_days(&ids).await?.into_iter().collect();
    let pct = |(runs, ok): (u64, u64)| (runs > 0).then(|| ok as f64 * 100.0 / runs as f64);
    for (c, id) in components.iter_mut().zip(&ids) {
        let pd = per_day
            .remove(id)
            .unwrap_or_else(|| vec![(0, 0); days as usize]);
        c.days = pd
            .iter()
            .enumerate()
            .map(|(i, (runs, ok))| Day {
                start: since + i as i64 * DAY_MS,
                uptime: pct((*runs, *ok)),
                runs: *runs,
            })
            .collect();
        c.created_at = first.get(id).copied();
        let [w24, w7, w30] = windows.remove(id).unwrap_or_default();
        c.uptime_24h = pct(w24);
        c.uptime_7d = pct(w7);
        c.uptime_30d = pct(w30);
        c.latency_24h = hourly
            .remove(id)
            .unwrap_or_else(|| vec![(0, 0); 24])
            .iter()
            .map(|(runs, sum)| (*runs > 0).then(|| *sum as f64 / *runs as f64 / 1000.0))
            .collect();
    }

    // Groups, in order of first appearance; ungrouped components stand alone.
    let mut groups: Vec<Group> = Vec::new();
    let mut by_name: BTreeMap<String, usize> = BTreeMap::new();
    for (i, c) in components.iter().enumerate() {
        if let Some(g) = &c.group {
            let gi = *by_name.entry(g.clone()).or_insert_with(|| {
                groups.push(Group {
                    id: id_of(&format!("group:{g}")),
                    name: g.clone(),
                    members: Vec::new(),
                    status: Status::Operational,
                    position: groups.len() + 1,
                    created_at: None,
                });
                groups.len() - 1
            });
            groups[gi].members.push(i);
        }
    }
    for g in &mut groups {
        let statuses: Vec<Status> = g.members.iter().map(|i| components[*i].status).collect();
        let worst = statuses
            .iter()
            .copied()
            .max()
            .unwrap_or(Status::Operational);
        let all_down = statuses.iter().all(|s| *s == Status::MajorOutage);
        g.created_at = g
            .members
            .iter()
            .filter_map(|i| components[*i].created_at)
            .min();
        g.status = if worst == Status::MajorOutage && !all_down {
            Status::PartialOutage
        } else {
            worst
        };
    }

    // Incidents of public probes.
    let index: HashMap<&str, usize> = components
        .iter()
        .enumerate()
        .map(|(i, c)| (c.probe.as_str(), i))
        .collect();
    let rows = store.incident_history(since).await?;
    let kinds: HashMap<&str, &'static str> = cfg
        .probes
        .iter()
        .map(|p| (p.name.as_str(), p.spec.kind()))
        .collect();
    // The store's order (newest first), which `incidents.json` keeps.
    let mut incidents = Vec::new();
    let mut resolved_shown = 0;
    for r in rows {
        let Some(&ci) = index.get(r.probe.as_str()) else {
            continue;
        };
        if r.resolved_at.is_some() {
            if resolved_shown == RECENT_INCIDENTS {
                continue;
            }
            resolved_shown += 1;
        }
        incidents.push(incident(
            &r,
            ci,
            &components[ci].name,
            kinds.get(r.probe.as_str()).copied().unwrap_or(""),
        ));
    }

    // Maintenance windows that touch public probes.
    let mut maintenances = Vec::new();
    for m in &cfg.maintenance {
        let covered: Vec<usize> = components
            .iter()
            .enumerate()
            .filter(|(_, c)| m.covers(&c.probe))
            .map(|(i, _)| i)
            .collect();
        if covered.is_empty() {
            continue;
        }
        if let Some((start, end)) = m.current_or_next(now, MAINTENANCE_HORIZON_MS) {
            maintenances.push(MaintenanceWindow {
                id: id_of(&format!("maintenance:{}:{start}", m.name)),
                name: m.name.clone(),
                start,
                end,
                in_progress: start <= now,
                components: covered,
            });
        }
    }
    maintenances.sort_by_key(|m| m.start);

    let updated_at = components
        .iter()
        .filter_map(|c| c.since)
        .chain(incidents.iter().map(|i| i.updated_at))
        .max()
        .unwrap_or(src.started_at);
    let url = opts.url.clone().unwrap_or_else(|| match &cfg.external_url {
        Some(u) => format!("{u}/status"),
        None => format!("http://{}/status", cfg.listen),
    });
    Ok(View {
        page: Page {
            id: id_of(&format!("page:{}", cfg.instance)),
            name: opts.title.clone(),
            description: opts.description.clone(),
            url,
            updated_at,
            // The start of the day the daemon started: a component's first day of results
            // once it has one, so its `created_at` does not move when that day is written.
            created_at: src.started_at - src.started_at.rem_euclid(DAY_MS),
        },
        components,
        groups,
        incidents,
        maintenances,
        history_days: opts.history_days,
        built_at: now,
    })
}

/// A component's status while a probe stands in `state` (`down`, `degraded`).
fn status_in(state: &str) -> Status {
    if state == "degraded" {
        Status::DegradedPerformance
    } else {
        Status::MajorOutage
    }
}

/// One stored incident of the public component `ci` (shown as `name`, a probe of `kind`), as
/// the public sees it: its state's impact, its times, fixed sentences.
fn incident(r: &IncidentSummary, ci: usize, name: &str, kind: &str) -> Incident {
    // The state it stands (or last stood) in, and the one it opened in.
    let now_status = status_in(r.opened_as.as_deref().unwrap_or("down"));
    let opened_status = r.fired_as.first().map_or(now_status, |s| status_in(s));
    let went_down = now_status == Status::MajorOutage || r.fired_as.iter().any(|s| s == "down");
    let impact = match r.severity.as_str() {
        _ if !went_down => "minor",
        "critical" => "critical",
        "warning" | "minor" | "info" => "minor",
        _ => "major",
    };
    // The store's `resolved_at` is the recovery that held; the incident was resolved when
    // that hold ended. Monitoring is the hold itself: none when there was no hold.
    let resolved_at = r
        .resolved_at
        .map(|t| r.resolve_due_at.map_or(t, |due| due.max(t)));
    let monitoring_at = r
        .recovered_at
        .filter(|t| resolved_at.is_none_or(|res| *t < res));
    let mut updates = vec![Update {
        status: IncidentStatus::Investigating,
        at: r.opened_at,
        body: format!(
            "{} We are investigating.",
            wording::opening(kind, name, now_status, r.reason.as_deref())
        ),
    }];
    if let Some(t) = r.acknowledged_at {
        updates.push(Update {
            status: IncidentStatus::Identified,
            at: t,
            body: "The problem has been identified and is being worked on.".into(),
        });
    }
    if let Some(t) = monitoring_at {
        updates.push(Update {
            status: IncidentStatus::Monitoring,
            at: t,
            body: format!("{name} has recovered. We are monitoring."),
        });
    }
    if let Some(t) = resolved_at {
        updates.push(Update {
            status: IncidentStatus::Resolved,
            at: t.max(updates.last().map_or(t, |u| u.at)),
            body: "This incident has been resolved.".into(),
        });
    }
    updates.sort_by_key(|u| u.at);
    let last = updates.last().expect("at least the opening");
    Incident {
        id: r.id,
        component: ci,
        name: wording::title(kind, name, now_status, r.reason.as_deref()),
        status: last.status,
        impact,
        component_status: now_status,
        opened_status,
        opened_at: r.opened_at,
        monitoring_at,
        resolved_at,
        updated_at: last.at,
        updates,
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Hand-built pieces of a [`View`] for the renderers' tests.
    use super::*;

    /// A component with no history or figures.
    pub fn component(name: &str, status: Status) -> Component {
        Component {
            id: "c1".into(),
            probe: "api".into(),
            name: name.into(),
            description: None,
            group: None,
            status,
            since: None,
            position: 1,
            days: Vec::new(),
            uptime_24h: None,
            uptime_7d: None,
            uptime_30d: None,
            latency_24h: Vec::new(),
            last_latency_ms: None,
            has_latency: true,
            created_at: None,
        }
    }
}
