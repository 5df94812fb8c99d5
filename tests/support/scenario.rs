//! Incident scenarios (tests/scenarios.rs): the bookkeeping that turns a replayed postmortem
//! into figures.
//!
//! A scenario injects faults (each marked with [`Scenario::fault`], the moment it took
//! effect), waits for the pages it expects ([`Scenario::expect`]), and ends with
//! [`Scenario::finish`], which counts every page that arrived and was not expected (false)
//! or arrived twice for one incident and event (duplicate), prints a table of the figures and
//! appends it to `target/scenarios.md`. A second incident of a probe that already paged
//! (a flap) counts as a duplicate.
//!
//! - **Detection**: fault to the incident's `opened_at` (the daemon's own record).
//! - **Page**: fault to the moment the channel accepted the message: the SMTP server wrote
//!   it to its Maildir (the file's mtime), or the pager endpoint read the request.
//!
//! A page is one message a person gets: a trigger, an escalation or a reminder. Resolves and
//! acknowledgements are counted apart and never count as false pages.

use std::fmt::Write as _;
use std::time::{Duration, Instant, SystemTime};

use super::Daemon;
use super::receiver::Receiver;
use super::smtp::Smtp;

/// One message a channel accepted.
#[derive(Debug, Clone)]
pub struct Page {
    /// `email`, `pager` or `webhook`, with the notifier's address for several of a kind.
    pub channel: String,
    /// When the channel accepted it.
    pub at: SystemTime,
    /// `trigger`, `escalation`, `reminder`, `resolve`, `acknowledge`.
    pub event: String,
    /// The probe it is about.
    pub probe: String,
    /// Subject or summary (for messages in failures and the table).
    pub summary: String,
    /// One per incident.
    pub dedup_key: String,
}

impl Page {
    /// A message that calls a person (not a resolve or an acknowledgement).
    pub fn pages(&self) -> bool {
        matches!(self.event.as_str(), "trigger" | "escalation" | "reminder")
    }
}

/// Where pages arrive: each source lists what its channel has accepted so far.
pub enum Channel<'a> {
    Email(&'a Smtp),
    Pager(&'a Receiver),
    Webhook(&'a Receiver),
}

impl Channel<'_> {
    pub fn pages(&self) -> Vec<Page> {
        match self {
            Channel::Email(s) => email_pages(s),
            Channel::Pager(r) => pager_pages(r),
            Channel::Webhook(r) => webhook_pages(r),
        }
    }
}

/// The messages in the SMTP server's Maildir, oldest first.
pub fn email_pages(smtp: &Smtp) -> Vec<Page> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(smtp.maildir.join("new")) {
        for e in rd.flatten() {
            let (Ok(text), Ok(meta)) = (std::fs::read_to_string(e.path()), e.metadata()) else {
                continue;
            };
            // The head, with folded lines (a long subject) unfolded.
            let mut head: Vec<String> = Vec::new();
            for l in text.lines().take_while(|l| !l.is_empty()) {
                match head.last_mut() {
                    Some(prev) if l.starts_with([' ', '\t']) => {
                        prev.push(' ');
                        prev.push_str(l.trim());
                    }
                    _ => head.push(l.to_owned()),
                }
            }
            let header = |name: &str| -> String {
                head.iter()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
                    })
                    .unwrap_or_default()
            };
            let summary = header("subject");
            // `[probed] DOWN name: reason` / `[probed] RESOLVED name`
            let probe = summary
                .split_whitespace()
                .nth(2)
                .unwrap_or_default()
                .trim_end_matches(':')
                .to_owned();
            out.push(Page {
                channel: format!("email:{}", smtp.port),
                at: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                event: header("x-probed-event"),
                probe,
                summary,
                dedup_key: header("x-probed-dedup-key"),
            });
        }
    }
    out.sort_by_key(|p| p.at);
    out
}

/// Events a PagerDuty-like receiver accepted, oldest first. A resolve carries no payload:
/// its probe is the one its dedup key triggered for.
pub fn pager_pages(r: &Receiver) -> Vec<Page> {
    let accepted = r.accepted();
    let mut probe_of = std::collections::HashMap::new();
    for q in &accepted {
        if let Some(p) = q.body["payload"]["component"].as_str() {
            probe_of.insert(
                q.body["dedup_key"].as_str().unwrap_or_default().to_owned(),
                p.to_owned(),
            );
        }
    }
    accepted
        .iter()
        .map(|q| {
            let key = q.body["dedup_key"].as_str().unwrap_or_default().to_owned();
            let event = match q.body["event_action"].as_str().unwrap_or_default() {
                "trigger" => q.body["payload"]["custom_details"]["event"]
                    .as_str()
                    .unwrap_or("trigger")
                    .to_owned(),
                other => other.to_owned(),
            };
            Page {
                channel: format!("pager:{}", r.addr.port()),
                at: q.at,
                event,
                probe: probe_of.get(&key).cloned().unwrap_or_default(),
                summary: q.body["payload"]["summary"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                dedup_key: key,
            }
        })
        .collect()
}

/// Alerts a webhook receiver accepted (probed's own JSON: the `Alert`), oldest first.
pub fn webhook_pages(r: &Receiver) -> Vec<Page> {
    r.accepted()
        .iter()
        .filter(|q| q.body.is_object())
        .map(|q| Page {
            channel: format!("webhook:{}", r.addr.port()),
            at: q.at,
            event: q.body["event"].as_str().unwrap_or_default().to_owned(),
            probe: q.body["probe"].as_str().unwrap_or_default().to_owned(),
            summary: q.body["summary"]
                .as_str()
                .or(q.body["reason"].as_str())
                .unwrap_or_default()
                .to_owned(),
            dedup_key: q.body["dedup_key"].as_str().unwrap_or_default().to_owned(),
        })
        .collect()
}

/// One expected page and when it came.
#[derive(Debug, Clone)]
pub struct Figure {
    /// What was expected, e.g. `write probe pages`.
    pub what: String,
    pub probe: String,
    /// The fault it answers.
    pub fault: String,
    /// Fault to incident opened (None when the page is not the incident's first, e.g. an
    /// escalation).
    pub detection: Option<Duration>,
    /// Fault to the message accepted.
    pub page: Duration,
    /// The bound it had to meet.
    pub bound: Duration,
    pub channel: String,
    pub summary: String,
}

/// What one expectation waits for.
pub struct Expect<'a> {
    /// Shown in the table.
    pub what: &'a str,
    /// The probe the page is about.
    pub probe: &'a str,
    /// `trigger` or `escalation` (or `reminder`).
    pub event: &'a str,
    /// The channel it must arrive on.
    pub on: &'a Channel<'a>,
    /// The page must be accepted within this much of the fault.
    pub bound: Duration,
    /// Text the page's summary must contain (the right reason).
    pub says: &'a str,
}

pub struct Scenario {
    pub name: &'static str,
    faults: Vec<(String, SystemTime, Instant)>,
    figures: Vec<Figure>,
    /// (probe, event, fault time) expected: a page matching one of these, arriving at or
    /// after that fault, is not false (one before its fault is).
    expected: Vec<(String, String, SystemTime)>,
    started: Instant,
}

/// Fault time to an instant on the wall clock, saturating at zero.
fn since(t0: SystemTime, t: SystemTime) -> Duration {
    t.duration_since(t0).unwrap_or_default()
}

impl Scenario {
    pub fn new(name: &'static str) -> Scenario {
        println!("== scenario {name}");
        Scenario {
            name,
            faults: Vec::new(),
            figures: Vec::new(),
            expected: Vec::new(),
            started: Instant::now(),
        }
    }

    /// Marks the moment a fault takes effect (call it right after injecting it). Returns
    /// its name for [`Scenario::expect`].
    pub fn fault(&mut self, what: &str) -> String {
        println!(
            "  [{:>6.2}s] fault: {what}",
            self.started.elapsed().as_secs_f64()
        );
        self.faults
            .push((what.to_owned(), SystemTime::now(), Instant::now()));
        what.to_owned()
    }

    /// A note in the scenario's log (what is checked, what was seen).
    pub fn note(&self, what: &str) {
        println!("  [{:>6.2}s] {what}", self.started.elapsed().as_secs_f64());
    }

    /// When the fault `fault` was marked.
    pub fn fault_time(&self, fault: &str) -> SystemTime {
        self.faults
            .iter()
            .find(|(f, _, _)| f == fault)
            .unwrap_or_else(|| panic!("no fault named {fault:?} was marked"))
            .1
    }

    /// Waits (up to the bound plus 10 s, so a late page is measured rather than missed)
    /// for the first page `e` describes that arrived after `fault`, records its figures
    /// and asserts it met its bound. `d` is asked for the incident's opening time.
    pub fn expect(&mut self, d: &Daemon, fault: &str, e: Expect<'_>) -> Figure {
        let t0 = self.fault_time(fault);
        self.expected
            .push((e.probe.to_owned(), e.event.to_owned(), t0));
        let limit = e.bound + Duration::from_secs(10);
        let waited = Instant::now();
        let page = loop {
            let found = e.on.pages().into_iter().find(|p| {
                p.probe == e.probe && p.event == e.event && p.at >= t0 && p.summary.contains(e.says)
            });
            if let Some(p) = found {
                break p;
            }
            if waited.elapsed() > limit {
                panic!(
                    "{}: no {} page for {} saying {:?} within {limit:?} of {fault:?}; pages so far: {:#?}\n\
                     daemon log:\n{}",
                    self.name,
                    e.event,
                    e.probe,
                    e.says,
                    e.on.pages(),
                    tail(&d.log(), 60)
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let detection = (e.event == "trigger")
            .then(|| opened_at(d, e.probe, t0).map(|at| since(t0, at)))
            .flatten();
        let fig = Figure {
            what: e.what.to_owned(),
            probe: e.probe.to_owned(),
            fault: fault.to_owned(),
            detection,
            page: since(t0, page.at),
            bound: e.bound,
            channel: page.channel.clone(),
            summary: page.summary.clone(),
        };
        self.note(&format!(
            "page: {} after {:.2}s (detected {}; bound {:.1}s) via {}: {}",
            fig.what,
            fig.page.as_secs_f64(),
            fig.detection
                .map(|d| format!("{:.2}s", d.as_secs_f64()))
                .unwrap_or_else(|| "-".into()),
            fig.bound.as_secs_f64(),
            fig.channel,
            fig.summary
        ));
        assert!(
            fig.page <= fig.bound,
            "{}: {} took {:?}, over its bound {:?}",
            self.name,
            fig.what,
            fig.page,
            fig.bound
        );
        self.figures.push(fig.clone());
        fig
    }

    /// Counts the pages on `channels` that were not expected (false) and the repeats of an
    /// expected (probe, event) within one incident (duplicates); prints the figures and
    /// appends them to `target/scenarios.md`; asserts both counts are zero. Returns them.
    pub fn finish(self, channels: &[&Channel<'_>]) -> (usize, usize) {
        let mut false_pages = Vec::new();
        let mut duplicates = Vec::new();
        let mut seen: Vec<(String, String, String)> = Vec::new();
        for ch in channels {
            for p in ch.pages().into_iter().filter(Page::pages) {
                // A page for an expected probe and event that came before the fault it
                // answers (the probe went down on its own) is false too.
                let expected = self
                    .expected
                    .iter()
                    .any(|(probe, ev, t0)| *probe == p.probe && *ev == p.event && p.at >= *t0);
                if !expected {
                    false_pages.push(p);
                    continue;
                }
                // Per channel, probe and event: a second incident of the same probe (a
                // flap) is a duplicate page too.
                let key = (p.channel.clone(), p.probe.clone(), p.event.clone());
                // A reminder repeats by design; a trigger or an escalation must not.
                if p.event != "reminder" && seen.contains(&key) {
                    duplicates.push(p);
                } else {
                    seen.push(key);
                }
            }
        }
        let mut table = String::new();
        let _ = writeln!(
            table,
            "\n### {} ({:.1}s)\n\n| expected page | probe | after fault | detection | page | bound | via |\n|---|---|---|---|---|---|---|",
            self.name,
            self.started.elapsed().as_secs_f64()
        );
        for f in &self.figures {
            let _ = writeln!(
                table,
                "| {} | {} | {} | {} | {:.2}s | {:.1}s | {} |",
                f.what,
                f.probe,
                f.fault,
                f.detection
                    .map(|d| format!("{:.2}s", d.as_secs_f64()))
                    .unwrap_or_else(|| "-".into()),
                f.page.as_secs_f64(),
                f.bound.as_secs_f64(),
                f.channel.split(':').next().unwrap_or_default()
            );
        }
        let _ = writeln!(
            table,
            "\nfalse pages: {}, duplicate pages: {}",
            false_pages.len(),
            duplicates.len()
        );
        println!("{table}");
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/target/scenarios.md");
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            use std::io::Write;
            let _ = f.write_all(table.as_bytes());
        }
        assert!(
            false_pages.is_empty(),
            "{}: false pages: {false_pages:#?}",
            self.name
        );
        assert!(
            duplicates.is_empty(),
            "{}: duplicate pages: {duplicates:#?}",
            self.name
        );
        (false_pages.len(), duplicates.len())
    }
}

/// Config for one email notifier `oncall` on `smtp`, and a route sending everything to it.
pub fn email_route(smtp: &Smtp) -> String {
    format!(
        "notifiers:\n  oncall: {{ kind: email, smtp: {{ host: 127.0.0.1, port: {}, tls: none }}, \
         from: probed@example.com, to: [oncall@example.com] }}\nroutes:\n  - notify: [oncall]\n",
        smtp.port
    )
}

/// A sample of the daemon's `/metrics` (the first series of `name`), 0 when absent.
/// The first sample of `name`: a family name, or one with its first labels
/// (`probe_success{probe="web"`, the rest of its labels after it).
pub fn metric(d: &Daemon, name: &str) -> f64 {
    let body = super::http_get_blocking(&format!("{}/metrics", d.url()));
    body.lines()
        .find(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with([' ', '{', ',']))
        })
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}

/// Waits until everything the daemon had observed when called is committed to its store
/// (with its incidents and queued pages): the store's queue was seen empty, and a commit
/// came after that (it holds whatever the writer had taken off the queue).
pub fn settle(d: &Daemon) {
    let mut written = 0.0;
    super::wait_for(Duration::from_secs(20), "the store queue to drain", || {
        let depth = metric(d, "probed_store_queue_depth");
        written = metric(d, "probed_store_written_total");
        depth == 0.0
    });
    super::wait_for(Duration::from_secs(20), "a commit after that", || {
        metric(d, "probed_store_written_total") > written
    });
}

/// The daemon's incidents of `probe` (newest first), from `/api/v1/incidents`.
pub fn incidents(d: &Daemon, probe: &str) -> Vec<serde_json::Value> {
    let body = super::http_get_blocking(&format!("{}/api/v1/incidents?limit=1000", d.url()));
    let (_, _, json) = super::split_response(&body);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
    v["incidents"]
        .as_array()
        .map(|a| a.iter().filter(|i| i["probe"] == probe).cloned().collect())
        .unwrap_or_default()
}

/// When the daemon opened the incident for `probe` that is the first opened at or after
/// `t0` (its own record, from `/api/v1/incidents`).
pub fn opened_at(d: &Daemon, probe: &str, t0: SystemTime) -> Option<SystemTime> {
    let body = super::http_get_blocking(&format!("{}/api/v1/incidents?limit=1000", d.url()));
    let (_, _, json) = super::split_response(&body);
    let v: serde_json::Value = serde_json::from_str(&json).ok()?;
    v["incidents"]
        .as_array()?
        .iter()
        .filter(|i| i["probe"] == probe)
        .filter_map(|i| {
            let t = chrono::DateTime::parse_from_rfc3339(i["opened_at"].as_str()?).ok()?;
            let ms = t.timestamp_millis();
            Some(SystemTime::UNIX_EPOCH + Duration::from_millis(ms as u64))
        })
        // The incident can open a little before the page's fault mark is taken (the
        // mark is set right after injecting): allow 50 ms.
        .filter(|at| *at + Duration::from_millis(50) >= t0)
        .min()
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
