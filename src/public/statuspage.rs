//! The [`View`] in the shape of Atlassian Statuspage's public API v2 (`/api/v2/summary.json`,
//! `status.json`, `components.json`, `incidents.json`, `incidents/unresolved.json`,
//! `scheduled-maintenances.json`, `.../upcoming.json`, `.../active.json`), so status
//! aggregators and widgets read it as they read a hosted page: every documented field is
//! present, with `null` where probed has nothing to say.

use serde_json::{Value, json};

use super::{Component, Incident, IncidentStatus, MaintenanceWindow, Status, View};
use crate::time::rfc3339;

/// `page`.
pub fn page(v: &View) -> Value {
    json!({
        "id": v.page.id,
        "name": v.page.name,
        "url": v.page.url,
        "time_zone": "Etc/UTC",
        "updated_at": rfc3339(v.page.updated_at),
    })
}

/// `status`: the overall indicator.
pub fn status(v: &View) -> Value {
    let (indicator, description) = v.indicator();
    json!({ "indicator": indicator, "description": description })
}

/// `components`: groups first-class as Statuspage has them (`group: true`, `components`:
/// member ids), members pointing back with `group_id`.
pub fn components(v: &View) -> Value {
    let mut out = Vec::new();
    let mut position = 0;
    let mut emitted_groups = std::collections::HashSet::new();
    for (i, c) in v.components.iter().enumerate() {
        let group = v.groups.iter().find(|g| g.members.contains(&i));
        if let Some(g) = group
            && emitted_groups.insert(g.id.clone())
        {
            position += 1;
            out.push(json!({
                "id": g.id,
                "name": g.name,
                "status": g.status.as_str(),
                "created_at": rfc3339(g.created_at.unwrap_or(v.page.created_at)),
                "updated_at": rfc3339(
                    g.members.iter().filter_map(|m| v.components[*m].since).max().unwrap_or(v.built_at)
                ),
                "position": position,
                "description": null,
                "showcase": false,
                "start_date": null,
                "group_id": null,
                "page_id": v.page.id,
                "group": true,
                "only_show_if_degraded": false,
                "components": g.members.iter().map(|m| v.components[*m].id.clone()).collect::<Vec<_>>(),
            }));
        }
        position += 1;
        out.push(component(v, c, group.map(|g| g.id.as_str()), position));
    }
    Value::Array(out)
}

fn component(v: &View, c: &Component, group_id: Option<&str>, position: usize) -> Value {
    json!({
        "id": c.id,
        "name": c.name,
        "status": c.status.as_str(),
        "created_at": rfc3339(c.created_at.unwrap_or(v.page.created_at)),
        "updated_at": rfc3339(c.since.unwrap_or(v.built_at)),
        "position": position,
        "description": c.description,
        "showcase": true,
        "start_date": c.created_at.map(|t| rfc3339(t)[..10].to_owned()),
        "group_id": group_id,
        "page_id": v.page.id,
        "group": false,
        "only_show_if_degraded": false,
    })
}

fn incident(v: &View, i: &Incident) -> Value {
    let c = &v.components[i.component];
    // The first update: what opening did to the component; the resolving one: back to
    // operational.
    let affected = |old: Status, new: Status| json!([{ "code": c.id, "name": c.name, "old_status": old.as_str(), "new_status": new.as_str() }]);
    let last = i.updates.len() - 1;
    let id = format!("{}", i.id);
    let updates: Vec<Value> = i
        .updates
        .iter()
        .enumerate()
        .rev()
        .map(|(n, u)| {
            json!({
                "id": format!("{id}-{n}"),
                "status": u.status.as_str(),
                "body": u.body,
                "incident_id": id,
                "created_at": rfc3339(u.at),
                "updated_at": rfc3339(u.at),
                "display_at": rfc3339(u.at),
                "affected_components": match u.status {
                    _ if n == 0 => affected(Status::Operational, i.opened_status),
                    IncidentStatus::Resolved if n == last => {
                        affected(i.component_status, Status::Operational)
                    }
                    _ => Value::Null,
                },
                "deliver_notifications": true,
                "custom_tweet": null,
                "tweet_id": null,
            })
        })
        .collect();
    json!({
        "id": id,
        "name": i.name,
        "status": i.status.as_str(),
        "created_at": rfc3339(i.opened_at),
        "updated_at": rfc3339(i.updated_at),
        "monitoring_at": i.monitoring_at.map(rfc3339),
        "resolved_at": i.resolved_at.map(rfc3339),
        "impact": i.impact,
        "shortlink": format!("{}#incident-{}", v.page.url, i.id),
        "started_at": rfc3339(i.opened_at),
        "page_id": v.page.id,
        "incident_updates": updates,
        "components": [component(v, c, None, c.position)],
    })
}

fn maintenance(v: &View, m: &MaintenanceWindow) -> Value {
    let status = if m.in_progress {
        "in_progress"
    } else {
        "scheduled"
    };
    let comps: Vec<Value> = m
        .components
        .iter()
        .map(|i| component(v, &v.components[*i], None, v.components[*i].position))
        .collect();
    json!({
        "id": m.id,
        "name": m.name,
        "status": status,
        "created_at": rfc3339(m.start.min(v.built_at)),
        "updated_at": rfc3339(m.start.min(v.built_at)),
        "monitoring_at": null,
        "resolved_at": null,
        "impact": "maintenance",
        "shortlink": format!("{}#maintenance-{}", v.page.url, m.id),
        "started_at": rfc3339(m.start),
        "page_id": v.page.id,
        "incident_updates": [{
            "id": format!("{}-0", m.id),
            "status": status,
            "body": format!("Scheduled maintenance: {}.", m.name),
            "incident_id": m.id,
            "created_at": rfc3339(m.start.min(v.built_at)),
            "updated_at": rfc3339(m.start.min(v.built_at)),
            "display_at": rfc3339(m.start.min(v.built_at)),
            "affected_components": null,
            "deliver_notifications": true,
            "custom_tweet": null,
            "tweet_id": null,
        }],
        "components": comps,
        "scheduled_for": rfc3339(m.start),
        "scheduled_until": rfc3339(m.end),
    })
}

/// `/api/v2/summary.json`.
pub fn summary(v: &View) -> Value {
    json!({
        "page": page(v),
        "components": components(v),
        "incidents": v.unresolved().map(|i| incident(v, i)).collect::<Vec<_>>(),
        "scheduled_maintenances": v.maintenances.iter().map(|m| maintenance(v, m)).collect::<Vec<_>>(),
        "status": status(v),
    })
}

/// `/api/v2/status.json`.
pub fn status_doc(v: &View) -> Value {
    json!({ "page": page(v), "status": status(v) })
}

/// `/api/v2/components.json`.
pub fn components_doc(v: &View) -> Value {
    json!({ "page": page(v), "components": components(v) })
}

/// `/api/v2/incidents.json` (all shown), or only the unresolved ones: newest first (by when
/// each opened), as Statuspage lists them.
pub fn incidents_doc(v: &View, unresolved_only: bool) -> Value {
    let list: Vec<Value> = v
        .incidents
        .iter()
        .filter(|i| !unresolved_only || i.status != super::IncidentStatus::Resolved)
        .map(|i| incident(v, i))
        .collect();
    json!({ "page": page(v), "incidents": list })
}

/// `/api/v2/scheduled-maintenances[/upcoming|/active].json`.
pub fn maintenances_doc(v: &View, which: Option<bool>) -> Value {
    let list: Vec<Value> = v
        .maintenances
        .iter()
        .filter(|m| which.is_none_or(|active| m.in_progress == active))
        .map(|m| maintenance(v, m))
        .collect();
    json!({ "page": page(v), "scheduled_maintenances": list })
}
