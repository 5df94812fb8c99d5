//! The incident history as feeds, `GET /feed.atom` (Atom 1.0, RFC 4287) and `GET /feed.rss`
//! (RSS 2.0), one entry per incident as hosted status pages' history feeds have it.
//!
//! Entries are ordered by their last update, newest first, so a resolved incident comes back
//! to the top when it resolves. Each has a stable id (a `tag:` URI from the page's host, the
//! day the incident opened and its number), a link to `<page url>#incident-<id>`, `published`
//! = opened, `updated` = its last update, and the updates (status, UTC time, the fixed
//! public sentence) as an HTML list, newest first. Everything comes from the [`View`], so
//! the feeds say nothing the page does not.
//!
//! Written with `atom_syndication` and `rss`, which escape every text (and split `]]>` in
//! RSS's CDATA); text that XML 1.0 cannot carry at all (control characters) is dropped first.

use atom_syndication as atom;
use chrono::{DateTime, FixedOffset, Utc};

use super::badge::{escape, xml_chars};
use super::{Incident, IncidentStatus, View};

pub const ATOM_CONTENT_TYPE: &str = "application/atom+xml; charset=utf-8";
pub const RSS_CONTENT_TYPE: &str = "application/rss+xml; charset=utf-8";

fn utc(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn fixed(ms: i64) -> DateTime<FixedOffset> {
    utc(ms).fixed_offset()
}

fn text(s: &str) -> String {
    xml_chars(s).into_owned()
}

/// The incidents, last updated first (ties: higher id first).
fn ordered(v: &View) -> Vec<&Incident> {
    let mut list: Vec<&Incident> = v.incidents.iter().collect();
    list.sort_by_key(|i| std::cmp::Reverse((i.updated_at, i.id)));
    list
}

/// When the feed last changed: its newest update, else when the page did.
pub fn updated(v: &View) -> i64 {
    v.incidents
        .iter()
        .map(|i| i.updated_at)
        .max()
        .unwrap_or(v.page.updated_at)
}

/// The page's host, for `tag:` ids (`status.example.com`; without a port).
fn host(v: &View) -> String {
    v.page
        .url
        .parse::<http::Uri>()
        .ok()
        .and_then(|u| {
            u.host()
                .map(|h| h.trim_matches(['[', ']']).to_ascii_lowercase())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "probed.invalid".into())
}

/// A stable, unique id: `tag:status.example.com,2026-11-21:incident-42` (RFC 4151). The day
/// it opened keeps ids apart should the store ever start numbering afresh.
pub fn entry_id(v: &View, i: &Incident) -> String {
    format!(
        "tag:{},{}:incident-{}",
        host(v),
        utc(i.opened_at).format("%Y-%m-%d"),
        i.id
    )
}

/// `<page url>#incident-<id>`.
pub fn link(v: &View, i: &Incident) -> String {
    format!("{}#incident-{}", v.page.url, i.id)
}

/// The incident's name, `— resolved` once it is.
pub fn title(i: &Incident) -> String {
    if i.status == IncidentStatus::Resolved {
        format!("{} — resolved", text(&i.name))
    } else {
        text(&i.name)
    }
}

/// The updates as an HTML list, newest first; every text escaped.
pub fn html(i: &Incident) -> String {
    let mut out = String::from("<ul>");
    for u in i.updates.iter().rev() {
        out.push_str(&format!(
            "<li><strong>{}</strong> ({}): {}</li>",
            u.status.label(),
            utc(u.at).format("%Y-%m-%d %H:%M:%S UTC"),
            escape(&u.body)
        ));
    }
    out.push_str("</ul>");
    out
}

/// The feed's description: the page's own, else a sentence naming it.
fn description(v: &View) -> String {
    match &v.page.description {
        Some(d) => text(d),
        None => format!("Incident history of {}", text(&v.page.name)),
    }
}

/// `/feed.atom`.
pub fn atom(v: &View) -> String {
    let entries = ordered(v)
        .into_iter()
        .map(|i| atom::Entry {
            title: atom::Text::plain(title(i)),
            id: entry_id(v, i),
            updated: fixed(i.updated_at),
            published: Some(fixed(i.opened_at)),
            links: vec![atom::Link {
                href: link(v, i),
                rel: "alternate".into(),
                mime_type: Some("text/html".into()),
                ..Default::default()
            }],
            content: Some(atom::Content {
                content_type: Some("html".into()),
                value: Some(html(i)),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect();
    let feed = atom::Feed {
        title: atom::Text::plain(text(&v.page.name)),
        id: v.page.url.clone(),
        updated: fixed(updated(v)),
        // RFC 4287 wants an author on the feed when entries have none.
        authors: vec![atom::Person {
            name: text(&v.page.name),
            ..Default::default()
        }],
        subtitle: Some(atom::Text::plain(description(v))),
        links: vec![atom::Link {
            href: v.page.url.clone(),
            rel: "alternate".into(),
            mime_type: Some("text/html".into()),
            ..Default::default()
        }],
        generator: Some(atom::Generator {
            value: "probed".into(),
            version: Some(env!("CARGO_PKG_VERSION").into()),
            ..Default::default()
        }),
        entries,
        ..Default::default()
    };
    feed.to_string()
}

/// `/feed.rss`. `pubDate` is when an incident opened; its last update is `dc:date`
/// (read as `updated` by feed readers).
pub fn rss(v: &View) -> String {
    let items = ordered(v)
        .into_iter()
        .map(|i| rss::Item {
            title: Some(title(i)),
            link: Some(link(v, i)),
            description: Some(html(i)),
            guid: Some(rss::Guid {
                value: entry_id(v, i),
                permalink: false,
            }),
            pub_date: Some(utc(i.opened_at).to_rfc2822()),
            dublin_core_ext: Some(rss::extension::dublincore::DublinCoreExtension {
                dates: vec![crate::time::rfc3339(i.updated_at)],
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect();
    let channel = rss::Channel {
        title: text(&v.page.name),
        link: v.page.url.clone(),
        description: description(v),
        last_build_date: Some(utc(updated(v)).to_rfc2822()),
        generator: Some(format!("probed {}", env!("CARGO_PKG_VERSION"))),
        items,
        ..Default::default()
    };
    channel.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::public::{Component, Page, Status, Update};

    const T0: i64 = 1_763_721_425_000; // 2025-11-21T10:37:05Z

    fn component(name: &str) -> Component {
        crate::public::testing::component(name, Status::Operational)
    }

    fn incident(id: i64, name: &str, opened: i64, resolved: Option<i64>) -> Incident {
        let mut updates = vec![Update {
            status: IncidentStatus::Investigating,
            at: opened,
            body: format!("{name} is not responding as expected. We are investigating."),
        }];
        if let Some(r) = resolved {
            updates.push(Update {
                status: IncidentStatus::Monitoring,
                at: r,
                body: format!("{name} has recovered. We are monitoring."),
            });
            updates.push(Update {
                status: IncidentStatus::Resolved,
                at: r,
                body: "This incident has been resolved.".into(),
            });
        }
        let last = updates.last().unwrap();
        Incident {
            id,
            component: 0,
            name: format!("{name} is down"),
            status: last.status,
            impact: "critical",
            component_status: Status::MajorOutage,
            opened_status: Status::MajorOutage,
            opened_at: opened,
            monitoring_at: resolved,
            resolved_at: resolved,
            updated_at: last.at,
            updates,
        }
    }

    fn view() -> View {
        let hostile = r#"<b>"Pay" & 'Ship'</b> ]]> x"#;
        View {
            page: Page {
                id: "p".into(),
                name: "Acme <Status> & \"Co\"".into(),
                description: None,
                url: "https://status.example.com:8443/status".into(),
                updated_at: T0,
                created_at: 0,
            },
            components: vec![component(hostile)],
            groups: Vec::new(),
            incidents: vec![
                // Open first in the view, but its last update is older.
                incident(7, "Search", T0 + 1_000, None),
                incident(5, hostile, T0 - 60_000, Some(T0 + 5_000)),
                incident(3, "Old\u{1}", T0 - 86_400_000, Some(T0 - 86_000_000)),
            ],
            maintenances: Vec::new(),
            history_days: 90,
            built_at: T0 + 10_000,
        }
    }

    #[test]
    fn ids_links_titles_and_order() {
        let v = view();
        let order: Vec<i64> = ordered(&v).iter().map(|i| i.id).collect();
        assert_eq!(order, [5, 7, 3], "newest update first");
        assert_eq!(
            entry_id(&v, &v.incidents[1]),
            "tag:status.example.com,2025-11-21:incident-5"
        );
        assert_eq!(
            link(&v, &v.incidents[1]),
            "https://status.example.com:8443/status#incident-5"
        );
        assert_eq!(title(&v.incidents[0]), "Search is down");
        assert!(title(&v.incidents[1]).ends_with("is down — resolved"));
        assert_eq!(updated(&v), T0 + 5_000);
        let h = html(&v.incidents[1]);
        assert!(h.starts_with("<ul><li><strong>Resolved</strong> (2025-11-21 10:37:10 UTC): "));
        assert!(h.contains(
            "&lt;b&gt;&quot;Pay&quot; &amp; &#39;Ship&#39;&lt;/b&gt; ]]&gt; x has recovered"
        ));
        assert_eq!(h.matches("<li>").count(), 3);
    }

    #[test]
    fn atom_is_escaped_and_complete() {
        let v = view();
        let xml = atom(&v);
        assert!(
            xml.starts_with(
                "<?xml version=\"1.0\"?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\">"
            )
        );
        // The hostile name never appears raw: once escaped in the title, twice in the HTML
        // content (escaped as HTML, then as XML text).
        assert!(!xml.contains("<b>") && !xml.contains("\"Pay\""));
        assert!(xml.contains("<title>&lt;b&gt;&quot;Pay&quot; &amp; &apos;Ship&apos;&lt;/b&gt; ]]&gt; x is down — resolved</title>"), "{xml}");
        assert!(
            xml.contains("&amp;lt;b&amp;gt;&amp;quot;Pay&amp;quot; &amp;amp; &amp;#39;Ship"),
            "{xml}"
        );
        assert!(xml.contains("<title>Acme &lt;Status&gt; &amp; &quot;Co&quot;</title>"));
        assert!(xml.contains("<id>tag:status.example.com,2025-11-21:incident-5</id>"));
        assert!(xml.contains("<published>2025-11-21T10:36:05+00:00</published>"));
        assert!(xml.contains("<updated>2025-11-21T10:37:10+00:00</updated>"));
        assert!(xml.contains("<content type=\"html\">&lt;ul&gt;&lt;li&gt;&lt;strong&gt;Resolved"));
        assert!(xml.contains(r#"href="https://status.example.com:8443/status#incident-5""#));
        // The control character is gone (it would make the document ill-formed).
        assert!(!xml.contains('\u{1}') && xml.contains("Old is down — resolved"));
        // Newest update first.
        let p5 = xml.find("incident-5</id>").unwrap();
        let p7 = xml.find("incident-7</id>").unwrap();
        let p3 = xml.find("incident-3</id>").unwrap();
        assert!(p5 < p7 && p7 < p3);
        // It reads back as Atom with the same entries.
        let back: atom::Feed = xml.parse().unwrap();
        assert_eq!(back.entries.len(), 3);
        assert_eq!(
            back.entries[0].title.value,
            r#"<b>"Pay" & 'Ship'</b> ]]> x is down — resolved"#
        );
        assert_eq!(back.title.value, "Acme <Status> & \"Co\"");
        assert_eq!(back.updated, fixed(T0 + 5_000));
    }

    #[test]
    fn rss_is_escaped_and_complete() {
        let v = view();
        let xml = rss(&v);
        assert!(xml.contains("<rss version=\"2.0\""));
        assert!(!xml.contains("<b>\"Pay\""));
        assert!(xml.contains(
            "<guid isPermaLink=\"false\">tag:status.example.com,2025-11-21:incident-5</guid>"
        ));
        assert!(
            xml.contains("<pubDate>Fri, 21 Nov 2025 10:36:05 +0000</pubDate>"),
            "{xml}"
        );
        assert!(xml.contains("<dc:date>2025-11-21T10:37:10.000Z</dc:date>"));
        assert!(xml.contains("<lastBuildDate>Fri, 21 Nov 2025 10:37:10 +0000</lastBuildDate>"));
        assert!(!xml.contains('\u{1}'));
        // A `]]>` in the text cannot end the CDATA early: the document reads back whole.
        let back = rss::Channel::read_from(xml.as_bytes()).unwrap();
        assert_eq!(back.title, "Acme <Status> & \"Co\"");
        assert_eq!(
            back.description,
            "Incident history of Acme <Status> & \"Co\""
        );
        assert_eq!(back.items.len(), 3);
        let first = &back.items[0];
        assert_eq!(
            first.title.as_deref(),
            Some(r#"<b>"Pay" & 'Ship'</b> ]]> x is down — resolved"#)
        );
        assert!(first.description.as_deref().unwrap().contains(
            "&lt;b&gt;&quot;Pay&quot; &amp; &#39;Ship&#39;&lt;/b&gt; ]]&gt; x has recovered"
        ));
        assert_eq!(
            first.link.as_deref(),
            Some("https://status.example.com:8443/status#incident-5")
        );
    }

    #[test]
    fn an_empty_history_is_a_valid_feed() {
        let mut v = view();
        v.incidents.clear();
        v.page.description = Some("All of Acme".into());
        let back: atom::Feed = atom(&v).parse().unwrap();
        assert!(back.entries.is_empty());
        assert_eq!(back.updated, fixed(T0));
        let back = rss::Channel::read_from(rss(&v).as_bytes()).unwrap();
        assert!(back.items.is_empty());
        assert_eq!(back.description, "All of Acme");
    }
}
