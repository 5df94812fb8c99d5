//! The public status page, `GET /status`: one server-rendered HTML document from the
//! [`View`], with inline CSS and inline SVG, no JavaScript.
//!
//! It shows the overall banner, open incidents with their updates, maintenance windows,
//! every public component (under its group's heading, ungrouped ones on their own) with its
//! state in words and colour, one uptime bar per day of the history window, the 24 h / 7 d /
//! 30 d uptime and a 24 h latency sparkline, then the recent resolved incidents and the time
//! the page was built. Nothing here reaches past the [`View`], which is public-safe by
//! construction, and every piece of text is escaped ([`escape`]): titles, descriptions and
//! group names come from the config.
//!
//! A view is rendered once (the last rendering is kept with its view and its `ETag`), so a
//! burst of readers within the view's cache time costs one rendering; `If-None-Match` with
//! the current `ETag` answers 304.

use std::fmt::{self, Write as _};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::{Component, Day, Incident, IncidentStatus, MaintenanceWindow, Status, View};

/// Text escaped for HTML element content and for quoted attribute values.
pub struct Esc<'a>(pub &'a str);

impl fmt::Display for Esc<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(['&', '<', '>', '"', '\'']) {
            f.write_str(&rest[..i])?;
            f.write_str(match rest.as_bytes()[i] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[i + 1..];
        }
        f.write_str(rest)
    }
}

/// `s` escaped for HTML text and quoted attributes: `& < > " '`.
pub fn escape(s: &str) -> String {
    Esc(s).to_string()
}

/// A rendered page and its `ETag`, plain and gzipped.
pub struct Rendered {
    pub body: Bytes,
    /// Quoted, as sent: `"` + 16 hex digits of the body's SHA-256 + `"`.
    pub etag: String,
    /// The body gzipped (a page of hundreds of components is mostly repeated bar markup:
    /// it shrinks about tenfold), with its own `ETag` (`"<hex>-gz"`).
    pub gzip: Option<(Bytes, String)>,
}

/// Gzip at a middle level: the page is compressed once per view, not per reader.
fn gzip(body: &[u8]) -> Option<Bytes> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 8),
        flate2::Compression::new(6),
    );
    enc.write_all(body).ok()?;
    enc.finish().ok().map(Bytes::from)
}

/// Whether the reader takes gzip (`Accept-Encoding: gzip`, not with `q=0`).
fn accepts_gzip(req: &HeaderMap) -> bool {
    req.get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(','))
        .any(|item| {
            let mut parts = item.split(';').map(str::trim);
            let coding = parts.next().unwrap_or("");
            let q_zero = parts.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !q_zero
        })
}

/// The last view rendered, with its rendering: a view is rendered once however many read it.
static LAST: Mutex<Option<(Arc<View>, Arc<Rendered>)>> = Mutex::new(None);

/// The rendering of `v`, reused while `v` is the current view.
pub fn rendered(v: &Arc<View>) -> Arc<Rendered> {
    if let Some((view, r)) = LAST.lock().unwrap_or_else(|e| e.into_inner()).as_ref()
        && Arc::ptr_eq(view, v)
    {
        return r.clone();
    }
    let body = render(v);
    let etag = etag_of(body.as_bytes());
    let r = Arc::new(Rendered {
        gzip: gzip(body.as_bytes()).map(|g| (g, format!("{}-gz\"", &etag[..etag.len() - 1]))),
        etag,
        body: Bytes::from(body),
    });
    *LAST.lock().unwrap_or_else(|e| e.into_inner()) = Some((v.clone(), r.clone()));
    r
}

/// A strong `ETag` for `body`.
pub fn etag_of(body: &[u8]) -> String {
    let h = Sha256::digest(body);
    let mut s = String::with_capacity(18);
    s.push('"');
    for b in &h[..8] {
        let _ = write!(s, "{b:02x}");
    }
    s.push('"');
    s
}

/// Whether an `If-None-Match` header value names `etag` (or is `*`). Weak comparison, as
/// RFC 9110 asks for `If-None-Match`.
pub fn etag_matches(if_none_match: &str, etag: &str) -> bool {
    if_none_match
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
}

/// No script, no outside resource: only the inline styles and SVG the page carries.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; \
                   base-uri 'none'; form-action 'none'";

/// The HTTP answer to `GET /status`: the page, or 304 when the reader has this version.
pub fn response(v: &Arc<View>, req: &HeaderMap, cache_control: &'static str) -> Response {
    let r = rendered(v);
    let (body, tag, gzipped) = match &r.gzip {
        Some((g, tag)) if accepts_gzip(req) => (g.clone(), tag.as_str(), true),
        _ => (r.body.clone(), r.etag.as_str(), false),
    };
    let etag = HeaderValue::from_str(tag).expect("hex in quotes is a valid header value");
    let fresh = req
        .get(header::IF_NONE_MATCH)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|h| etag_matches(h, tag));
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            )],
            body,
        )
            .into_response()
    };
    let h = resp.headers_mut();
    if gzipped && !fresh {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    h.insert(header::ETAG, etag);
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(cache_control),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

// --- words and numbers ---------------------------------------------------------------------

/// `Jan 5, 2026 14:03 UTC`.
fn when(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%b %-d, %Y %H:%M UTC").to_string())
        .unwrap_or_default()
}

/// `Jan 5, 2026`.
fn date(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%b %-d, %Y").to_string())
        .unwrap_or_default()
}

/// `<time datetime="...">Jan 5, 2026 14:03 UTC</time>`.
fn time_tag(out: &mut String, ms: i64) {
    let _ = write!(
        out,
        r#"<time datetime="{}">{}</time>"#,
        crate::time::rfc3339(ms),
        when(ms)
    );
}

/// `< 1 min`, `12 min`, `3 h 5 min`, `2 d 4 h`.
fn span(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..60 => "< 1 min".to_owned(),
        60..3600 => format!("{} min", s / 60),
        3600..86400 => match (s % 3600) / 60 {
            0 => format!("{} h", s / 3600),
            m => format!("{} h {m} min", s / 3600),
        },
        _ => match (s % 86400) / 3600 {
            0 => format!("{} d", s / 86400),
            h => format!("{} d {h} h", s / 86400),
        },
    }
}

/// Uptime in percent, cut (never rounded up) to two decimals: 99.999 is `99.99%`, and only
/// a perfect record reads `100%`.
fn pct(p: f64) -> String {
    if p >= 100.0 {
        return "100%".into();
    }
    format!("{:.2}%", ((p * 100.0) + 1e-6).floor() / 100.0)
}

fn latency(ms: f64) -> String {
    if ms < 10.0 {
        format!("{ms:.1} ms")
    } else if ms < 1000.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{:.2} s", ms / 1000.0)
    }
}

/// The CSS class of a status (colour; the words are always beside it).
fn status_class(s: Status) -> &'static str {
    match s {
        Status::Operational => "op",
        Status::UnderMaintenance => "mt",
        Status::DegradedPerformance => "dg",
        Status::PartialOutage => "po",
        Status::MajorOutage => "mo",
    }
}

/// A day's bar colour by its uptime; grey without data.
fn day_class(d: &Day) -> &'static str {
    match d.uptime {
        None => "nd",
        Some(p) if p >= 99.9 => "op",
        Some(p) if p >= 99.0 => "dg",
        Some(p) if p >= 95.0 => "po",
        Some(_) => "mo",
    }
}

/// Uptime over the whole history window, weighted by runs.
fn window_uptime(days: &[Day]) -> Option<f64> {
    let runs: u64 = days.iter().map(|d| d.runs).sum();
    let ok: f64 = days
        .iter()
        .filter_map(|d| d.uptime.map(|u| u * d.runs as f64 / 100.0))
        .sum();
    (runs > 0).then(|| ok * 100.0 / runs as f64)
}

// --- the page ------------------------------------------------------------------------------

const CSS: &str = r#"
*,*::before,*::after{box-sizing:border-box}
html{-webkit-text-size-adjust:100%}
body{margin:0;background:#f4f6f8;color:#1f2933;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;overflow-wrap:anywhere}
.wrap{max-width:860px;margin:0 auto;padding:0 16px}
header.top{background:#fff;border-bottom:1px solid #e4e7eb;padding:28px 0 22px}
header.top h1{margin:0;font-size:1.6rem;line-height:1.25;font-weight:650;letter-spacing:-.01em}
header.top p{margin:6px 0 0;color:#52606d}
main.wrap{padding-top:24px;padding-bottom:8px}
h2,h3,h4{line-height:1.3}
.banner{display:flex;align-items:center;gap:12px;border-radius:8px;padding:16px 20px;color:#fff;margin:0 0 24px}
.banner h2{margin:0;font-size:1.2rem;font-weight:600}
.banner .sym{flex:none;display:inline-flex;align-items:center;justify-content:center;width:28px;height:28px;border-radius:50%;background:rgba(255,255,255,.22);font-weight:700}
.b-none{background:#23845a}.b-minor{background:#a86a00}.b-major{background:#c2561a}.b-critical{background:#b83232}.b-maintenance{background:#2f6db0}
section{margin:0 0 28px}
.sec{display:flex;flex-wrap:wrap;align-items:baseline;justify-content:space-between;gap:4px 16px;margin:0 0 10px}
.sec h2{margin:0;font-size:1.05rem;font-weight:600;color:#323f4b}
.sec .note{color:#52606d;font-size:.85rem}
.card{background:#fff;border:1px solid #e4e7eb;border-radius:8px;margin:0 0 12px;overflow:hidden}
.ghead{display:flex;flex-wrap:wrap;align-items:center;justify-content:space-between;gap:4px 12px;padding:12px 18px;background:#f9fafb;border-bottom:1px solid #e4e7eb}
.ghead h3{margin:0;font-size:1.05rem;font-weight:600}
.comp{padding:16px 18px}
.comp+.comp{border-top:1px solid #eef0f3}
.chead{display:flex;flex-wrap:wrap;align-items:baseline;justify-content:space-between;gap:2px 12px}
.cname{margin:0;font-size:1rem;font-weight:600;min-width:0}
.cdesc{margin:2px 0 0;color:#616e7c;font-size:.875rem}
.st{display:inline-flex;align-items:center;gap:6px;font-size:.875rem;font-weight:600;white-space:nowrap}
.st .dot{width:9px;height:9px;border-radius:50%;background:currentColor;flex:none}
.st.op{color:#1f7a52}.st.dg{color:#946000}.st.po{color:#b24c12}.st.mo{color:#b42b2b}.st.mt{color:#2a62a0}
.bars{position:relative;display:flex;gap:2px;height:34px;margin:12px 0 4px}
.bars i{flex:1 1 0;min-width:0;border-radius:2px;background:#d5dae0;outline-offset:1px}
.bars i.op{background:#3fae7a}.bars i.dg{background:#e9b63b}.bars i.po{background:#ec8a42}.bars i.mo{background:#dc4c4c}
.bars i:hover,.bars i:focus{opacity:.7}
.bars i:focus-visible{outline:2px solid #1f2933}
.bars i:hover::after,.bars i:focus::after{content:attr(aria-label);position:absolute;z-index:2;left:0;right:0;top:calc(100% + 4px);padding:4px 8px;border-radius:4px;background:#1f2933;color:#fff;font-size:.8rem;text-align:center;pointer-events:none}
.axis{display:flex;align-items:center;gap:10px;color:#52606d;font-size:.75rem}
.axis .rule{flex:1;height:1px;background:#e4e7eb}
.stats{display:flex;flex-wrap:wrap;align-items:center;justify-content:space-between;gap:10px 24px;margin-top:12px}
.up{display:flex;gap:20px;margin:0}
.up div{min-width:0}
.up dt{color:#52606d;font-size:.8rem}
.up dd{margin:0;font-weight:600;font-variant-numeric:tabular-nums}
.lat{display:flex;align-items:center;gap:10px;flex:1 1 200px;max-width:330px;min-width:0}
.lat .lab{color:#52606d;font-size:.8rem;line-height:1.5;white-space:nowrap}
.lat .lab b{display:block;color:#1f2933;font-size:1rem;font-variant-numeric:tabular-nums}
.spark{flex:1;min-width:0;width:100%;height:36px;display:block}
.spark .ln{fill:none;stroke:#3b7dd8;stroke-width:1.6;stroke-linejoin:round;stroke-linecap:round}
.spark .ar{fill:#3b7dd8;fill-opacity:.12;stroke:none}
.spark .pt{fill:none;stroke:#3b7dd8;stroke-width:5;stroke-linecap:round}
.spark .base{stroke:#e4e7eb;stroke-width:1}
.inc{border-left:4px solid #b83232;padding:16px 18px}
.inc.minor{border-left-color:#d69a1d}.inc.major{border-left-color:#c2561a}.inc.mnt{border-left-color:#2f6db0}
.inc h3{margin:0;font-size:1.05rem;font-weight:600}
.meta{margin:4px 0 0;color:#616e7c;font-size:.875rem}
.tag{display:inline-block;padding:1px 8px;border-radius:10px;font-size:.75rem;font-weight:650;letter-spacing:.02em;background:#fde8e8;color:#9b1c1c;vertical-align:1px}
.tag.minor{background:#fdf3d7;color:#7a5200}.tag.major{background:#fdebdc;color:#8f3b0c}.tag.mnt{background:#e1ecf8;color:#1f4f86}.tag.ok{background:#e3f4ec;color:#17603f}
.upd{list-style:none;margin:12px 0 0;padding:0}
.upd li{padding:8px 0 0;margin:8px 0 0;border-top:1px solid #eef0f3}
.upd li:first-child{border-top:0;margin-top:0;padding-top:0}
.upd b{font-weight:650}
.upd time{display:block;color:#52606d;font-size:.8rem}
.past h3{margin:18px 0 8px;font-size:.9rem;font-weight:600;color:#52606d;border-bottom:1px solid #e4e7eb;padding-bottom:6px}
.past h3:first-of-type{margin-top:0}
.past .inc{border-left-color:#c8ced6;margin:0 0 10px}
.past h4{margin:0;font-size:1rem;font-weight:600}
details{margin-top:8px}
summary{cursor:pointer;color:#3b6fb6;font-size:.875rem}
.empty{color:#52606d;margin:0}
footer{color:#52606d;font-size:.8rem;padding:8px 0 32px}
footer a{color:#2f5f9e}
.oneline{margin:0 0 16px;font-weight:600}
.oneline a{color:inherit}
@media (prefers-color-scheme:dark){
body{background:#111820;color:#e4e7eb}
header.top,.card{background:#1b2530;border-color:#2e3a46}
header.top p,.cdesc,.meta,.sec .note,.axis,.up dt,.lat .lab,.upd time,.empty,footer,.past h3{color:#b8c2cc}
.sec h2{color:#d9e2ec}
.ghead{background:#222e3a;border-color:#2e3a46}
.comp+.comp,.upd li{border-color:#2e3a46}
.axis .rule,.spark .base{background:#2e3a46;stroke:#2e3a46}
.lat .lab b{color:#f5f7fa}
.bars i{background:#3e4c59}
.bars i:focus-visible{outline-color:#f5f7fa}
.st.op{color:#5fd39a}.st.dg{color:#f0c453}.st.po{color:#f5a46b}.st.mo{color:#ff8a8a}.st.mt{color:#8ab8f0}
summary,footer a{color:#8ab8f0}
.past h3{border-color:#2e3a46}
.past .inc{border-left-color:#52606d}
}
@media (max-width:480px){
.wrap{padding:0 12px}
header.top{padding:20px 0 16px}
header.top h1{font-size:1.35rem}
.banner{padding:14px 16px}
.banner h2{font-size:1.05rem}
.comp,.inc{padding:14px}
.ghead{padding:10px 14px}
.bars{gap:1px;height:30px}
.up{gap:16px}
.lat{max-width:none;flex-basis:100%}
}
"#;

/// The whole page for `v`.
pub fn render(v: &View) -> String {
    let mut o = String::with_capacity(16_384 + v.components.len() * 8_192);
    let (indicator, words) = v.indicator();
    let _ = write!(
        o,
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>{title}</title>
"#,
        title = Esc(&v.page.name)
    );
    if let Some(d) = &v.page.description {
        let _ = writeln!(o, r#"<meta name="description" content="{}">"#, Esc(d));
    }
    let _ = write!(
        o,
        "<link rel=\"alternate\" type=\"application/atom+xml\" title=\"{t} (Atom)\" href=\"feed.atom\">\n\
         <link rel=\"alternate\" type=\"application/rss+xml\" title=\"{t} (RSS)\" href=\"feed.rss\">\n\
         <style>{CSS}</style>\n</head>\n<body>\n<header class=\"top\"><div class=\"wrap\">\n<h1>{t}</h1>\n",
        t = Esc(&v.page.name)
    );
    if let Some(d) = &v.page.description {
        let _ = writeln!(o, "<p>{}</p>", Esc(d));
    }
    o.push_str("</div></header>\n<main class=\"wrap\">\n");

    // The banner: the overall state, in words.
    let sym = match indicator {
        "none" => "✓",
        "maintenance" => "i",
        _ => "!",
    };
    let _ = writeln!(
        o,
        r#"<section class="banner b-{indicator}" role="status"><span class="sym" aria-hidden="true">{sym}</span><h2>{words}</h2></section>"#
    );

    // Open incidents in one line, each linking to its detail below the components: the
    // components stay above the fold however many are open.
    let open: Vec<&Incident> = v.unresolved().collect();
    if !open.is_empty() {
        let _ = write!(
            o,
            "<p class=\"oneline\">{} open incident{}: ",
            open.len(),
            if open.len() == 1 { "" } else { "s" }
        );
        for (n, i) in open.iter().enumerate() {
            let _ = write!(
                o,
                "{}<a href=\"#incident-{}\">{}</a>",
                if n == 0 { "" } else { ", " },
                i.id,
                Esc(&i.name)
            );
        }
        o.push_str("</p>\n");
    }

    // Components: a group's card where its first member stands in config order.
    let days = v
        .components
        .first()
        .map_or(v.history_days as usize, |c| c.days.len());
    let _ = write!(
        o,
        "<section aria-labelledby=\"h-comp\">\n<div class=\"sec\"><h2 id=\"h-comp\">Components</h2><span class=\"note\">Uptime over the past {days} days</span></div>\n"
    );
    if v.components.is_empty() {
        o.push_str("<div class=\"card comp\"><p class=\"empty\">No public components.</p></div>\n");
    }
    let mut shown = vec![false; v.groups.len()];
    for (i, c) in v.components.iter().enumerate() {
        match v.groups.iter().position(|g| g.members.contains(&i)) {
            Some(gi) if !shown[gi] => {
                shown[gi] = true;
                let g = &v.groups[gi];
                let _ = write!(
                    o,
                    "<div class=\"card group\" id=\"group-{id}\">\n<div class=\"ghead\"><h3>{name}</h3>",
                    id = Esc(&g.id),
                    name = Esc(&g.name)
                );
                state(&mut o, g.status);
                o.push_str("</div>\n");
                for m in &g.members {
                    component(&mut o, &v.components[*m], "h4");
                }
                o.push_str("</div>\n");
            }
            Some(_) => {}
            None => {
                o.push_str("<div class=\"card\">\n");
                component(&mut o, c, "h3");
                o.push_str("</div>\n");
            }
        }
    }
    o.push_str("</section>\n");

    // Open incidents in detail, with every update.
    if !open.is_empty() {
        o.push_str("<section aria-labelledby=\"h-open\">\n<div class=\"sec\"><h2 id=\"h-open\">Current incidents</h2></div>\n");
        for i in open {
            incident(&mut o, v, i, true);
        }
        o.push_str("</section>\n");
    }

    // Maintenance, in progress first (the view sorts by start).
    if !v.maintenances.is_empty() {
        o.push_str("<section aria-labelledby=\"h-mnt\">\n<div class=\"sec\"><h2 id=\"h-mnt\">Maintenance</h2></div>\n");
        for m in &v.maintenances {
            maintenance(&mut o, v, m);
        }
        o.push_str("</section>\n");
    }

    // Resolved incidents, by the day they began.
    let _ = write!(
        o,
        "<section class=\"past\" aria-labelledby=\"h-past\">\n<div class=\"sec\"><h2 id=\"h-past\">Past incidents</h2><span class=\"note\">Last {} days</span></div>\n",
        v.history_days
    );
    let mut day = String::new();
    let mut any = false;
    for i in v
        .incidents
        .iter()
        .filter(|i| i.status == IncidentStatus::Resolved)
    {
        any = true;
        let d = date(i.opened_at);
        if d != day {
            let _ = writeln!(o, "<h3>{d}</h3>");
            day = d;
        }
        incident(&mut o, v, i, false);
    }
    if !any {
        o.push_str("<div class=\"card inc\"><p class=\"empty\">No incidents reported.</p></div>\n");
    }
    o.push_str("</section>\n</main>\n");

    let _ = write!(
        o,
        "<footer class=\"wrap\"><p>Updated {built}. Last change {changed}. All times UTC.</p>\
         <p>Subscribe: <a href=\"feed.atom\">Atom feed</a> · <a href=\"feed.rss\">RSS feed</a> · \
         <a href=\"api/v2/summary.json\">JSON</a> · Powered by probed</p></footer>\n</body>\n</html>\n",
        built = {
            let mut t = String::new();
            time_tag(&mut t, v.built_at);
            t
        },
        changed = {
            let mut t = String::new();
            time_tag(&mut t, v.page.updated_at);
            t
        },
    );
    o
}

/// A state in words, with its colour beside them.
fn state(o: &mut String, s: Status) {
    let _ = write!(
        o,
        r#"<span class="st {}"><span class="dot" aria-hidden="true"></span>{}</span>"#,
        status_class(s),
        s.label()
    );
}

fn component(o: &mut String, c: &Component, heading: &str) {
    let _ = write!(
        o,
        "<div class=\"comp\" id=\"component-{id}\">\n<div class=\"chead\"><{heading} class=\"cname\">{name}</{heading}>",
        id = Esc(&c.id),
        name = Esc(&c.name)
    );
    state(o, c.status);
    o.push_str("</div>\n");
    if let Some(d) = &c.description {
        let _ = writeln!(o, "<p class=\"cdesc\">{}</p>", Esc(d));
    }

    // One bar a day, oldest first; the title tells the day and its uptime.
    let overall = window_uptime(&c.days);
    let _ = write!(
        o,
        "<div class=\"bars\" role=\"list\" aria-label=\"Daily uptime of {name} over the past {n} days: {all}\">",
        name = Esc(&c.name),
        n = c.days.len(),
        all = overall.map_or_else(|| "no data".into(), |p| format!("{} overall", pct(p)))
    );
    for d in &c.days {
        let _ = write!(
            o,
            "<i class=\"{}\" role=\"listitem\" tabindex=\"0\" aria-label=\"{}: {}\"></i>",
            day_class(d),
            date(d.start),
            d.uptime
                .map_or_else(|| "no data".into(), |p| format!("{} uptime", pct(p)))
        );
    }
    let _ = writeln!(
        o,
        "</div>\n<div class=\"axis\" aria-hidden=\"true\"><span>{} days ago</span><span class=\"rule\"></span><span>{}</span><span class=\"rule\"></span><span>Today</span></div>",
        c.days.len(),
        overall.map_or_else(|| "no data yet".into(), |p| format!("{} uptime", pct(p)))
    );

    // The 24 h / 7 d / 30 d figures and the latency sparkline.
    o.push_str("<div class=\"stats\"><dl class=\"up\">");
    for (label, p) in [
        ("24 h", c.uptime_24h),
        ("7 d", c.uptime_7d),
        ("30 d", c.uptime_30d),
    ] {
        let _ = write!(
            o,
            "<div><dt>{label} uptime</dt><dd>{}</dd></div>",
            p.map_or_else(|| "—".into(), pct)
        );
    }
    o.push_str("</dl>");
    if c.has_latency {
        o.push_str("<div class=\"lat\">");
        let _ = write!(
            o,
            "<span class=\"lab\">Response time<b>{}</b></span>",
            c.last_latency_ms.map_or_else(|| "—".into(), latency)
        );
        sparkline(o, &c.latency_24h);
        o.push_str("</div>");
    }
    o.push_str("</div>\n</div>\n");
}

/// An inline SVG of the hourly mean latencies, oldest left; gaps where an hour had no runs.
fn sparkline(o: &mut String, hours: &[Option<f64>]) {
    const W: f64 = 240.0;
    const H: f64 = 36.0;
    let vals: Vec<f64> = hours.iter().flatten().copied().collect();
    let max = vals.iter().copied().fold(0.0_f64, f64::max);
    let min = vals.iter().copied().fold(f64::INFINITY, f64::min);
    let label = if vals.is_empty() {
        "Response time over the last 24 hours: no data".to_owned()
    } else {
        format!(
            "Response time over the last 24 hours, hourly means: {} to {}",
            latency(min),
            latency(max)
        )
    };
    let _ = write!(
        o,
        "<svg class=\"spark\" viewBox=\"0 0 {W} {H}\" preserveAspectRatio=\"none\" role=\"img\" aria-label=\"{label}\"><title>{label}</title>\
         <line class=\"base\" x1=\"0\" y1=\"{y}\" x2=\"{W}\" y2=\"{y}\" vector-effect=\"non-scaling-stroke\"/>",
        y = H - 0.5
    );
    let n = hours.len().max(2);
    let x = |i: usize| i as f64 * W / (n - 1) as f64;
    // From zero to a little above the highest hour; a flat series sits mid-height.
    let flat = vals.len() < 2 || max - min < max * 0.01;
    let top = if max > 0.0 { max * 1.15 } else { 1.0 };
    let y = |v: f64| {
        if flat {
            H / 2.0
        } else {
            H - 1.0 - v / top * (H - 3.0)
        }
    };
    // Each run of hours with data is one line, and the area under it.
    let mut i = 0;
    while i < hours.len() {
        if hours[i].is_none() {
            i += 1;
            continue;
        }
        let start = i;
        while i < hours.len() && hours[i].is_some() {
            i += 1;
        }
        let run: Vec<(f64, f64)> = (start..i)
            .map(|k| (x(k), y(hours[k].unwrap_or(0.0))))
            .collect();
        if let [(px, py)] = run[..] {
            // A lone hour: a dot (a round-capped stroke of no length).
            let _ = write!(
                o,
                "<path class=\"pt\" d=\"M{:.1} {py:.1}h0\" vector-effect=\"non-scaling-stroke\"/>",
                px.clamp(3.0, W - 3.0)
            );
            continue;
        }
        let mut line = String::new();
        for (k, (px, py)) in run.iter().enumerate() {
            let _ = write!(line, "{}{px:.1} {py:.1}", if k == 0 { 'M' } else { 'L' });
        }
        let _ = write!(
            o,
            "<path class=\"ar\" d=\"{line}L{:.1} {H}L{:.1} {H}Z\"/>\
             <path class=\"ln\" d=\"{line}\" vector-effect=\"non-scaling-stroke\"/>",
            run[run.len() - 1].0,
            run[0].0
        );
    }
    o.push_str("</svg>");
}

fn incident(o: &mut String, v: &View, i: &Incident, open: bool) {
    let (class, tag) = if open {
        (i.impact, i.status.label())
    } else {
        ("", "Resolved")
    };
    let heading = if open { "h3" } else { "h4" };
    let _ = write!(
        o,
        "<article class=\"card inc {class}\" id=\"incident-{id}\">\n<{heading}>{name}</{heading}>\n<p class=\"meta\"><span class=\"tag {tagc}\">{tag}</span> ",
        id = i.id,
        name = Esc(&i.name),
        tagc = if open { i.impact } else { "ok" },
    );
    if let Some(c) = v.components.get(i.component) {
        let _ = write!(o, "Affects {} · ", Esc(&c.name));
    }
    match i.resolved_at {
        Some(r) if !open => {
            let _ = write!(o, "Lasted {} · ", span(r - i.opened_at));
            time_tag(o, i.opened_at);
        }
        _ => {
            o.push_str("Began ");
            time_tag(o, i.opened_at);
            let _ = write!(o, ", ongoing for {}", span(v.built_at - i.opened_at));
        }
    }
    o.push_str("</p>\n");
    if !open {
        let _ = write!(o, "<details><summary>{} updates</summary>", i.updates.len());
    }
    updates(o, i);
    if !open {
        o.push_str("</details>");
    }
    o.push_str("\n</article>\n");
}

/// An incident's updates, newest first.
fn updates(o: &mut String, i: &Incident) {
    o.push_str("<ol class=\"upd\">");
    for u in i.updates.iter().rev() {
        let _ = write!(o, "<li><b>{}</b> — {} ", u.status.label(), Esc(&u.body));
        time_tag(o, u.at);
        o.push_str("</li>");
    }
    o.push_str("</ol>");
}

fn maintenance(o: &mut String, v: &View, m: &MaintenanceWindow) {
    let _ = write!(
        o,
        "<article class=\"card inc mnt\" id=\"maintenance-{id}\">\n<h3>{name}</h3>\n<p class=\"meta\"><span class=\"tag mnt\">{tag}</span> ",
        id = Esc(&m.id),
        name = Esc(&m.name),
        tag = if m.in_progress {
            "In progress"
        } else {
            "Scheduled"
        },
    );
    if m.in_progress {
        o.push_str("Until ");
        time_tag(o, m.end);
        o.push_str(" (began ");
        time_tag(o, m.start);
        o.push(')');
    } else {
        time_tag(o, m.start);
        o.push_str(" to ");
        if date(m.start) == date(m.end) {
            // Same day: the end's time alone.
            let _ = write!(
                o,
                r#"<time datetime="{}">{}</time>"#,
                crate::time::rfc3339(m.end),
                chrono::DateTime::from_timestamp_millis(m.end)
                    .map(|t| t.format("%H:%M UTC").to_string())
                    .unwrap_or_default()
            );
        } else {
            time_tag(o, m.end);
        }
    }
    o.push_str("</p>\n");
    let names: Vec<String> = m
        .components
        .iter()
        .filter_map(|c| v.components.get(*c))
        .map(|c| Esc(&c.name).to_string())
        .collect();
    if !names.is_empty() {
        let _ = write!(o, "<p class=\"meta\">Affects {}</p>", names.join(", "));
    }
    o.push_str("\n</article>\n");
}

#[cfg(test)]
mod tests {
    use super::super::{Group, Page, Update};
    use super::*;

    const HOSTILE: &str = r#"<script>alert("x")</script> & 'q' "dq""#;

    #[test]
    fn escape_neutralizes_markup_quotes_and_ampersands() {
        assert_eq!(
            escape(HOSTILE),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;q&#39; &quot;dq&quot;"
        );
        assert_eq!(escape("plain text, é ✓"), "plain text, é ✓");
        assert_eq!(escape(""), "");
        assert_eq!(
            escape("&amp;"),
            "&amp;amp;",
            "escaping is not idempotent by design"
        );
        assert_eq!(escape("\" onmouseover=\"x"), "&quot; onmouseover=&quot;x");
        assert_eq!(escape("<<>>"), "&lt;&lt;&gt;&gt;");
    }

    #[test]
    fn etags_compare_weakly_and_accept_lists_and_star() {
        let e = etag_of(b"body");
        assert_eq!(e.len(), 18);
        assert!(e.starts_with('"') && e.ends_with('"'));
        assert_ne!(e, etag_of(b"body2"));
        assert!(etag_matches(&e, &e));
        assert!(etag_matches(&format!("W/{e}"), &e));
        assert!(etag_matches(&format!("\"other\", {e}"), &e));
        assert!(etag_matches("*", &e));
        assert!(!etag_matches("\"other\"", &e));
        assert!(!etag_matches("", &e));
    }

    #[test]
    fn numbers_read_as_people_expect() {
        assert_eq!(pct(100.0), "100%");
        assert_eq!(pct(99.999), "99.99%");
        assert_eq!(pct(99.99), "99.99%");
        assert_eq!(pct(50.0), "50.00%");
        assert_eq!(pct(0.0), "0.00%");
        assert_eq!(span(45_000), "< 1 min");
        assert_eq!(span(12 * 60_000 + 5_000), "12 min");
        assert_eq!(span(3 * 3_600_000 + 5 * 60_000), "3 h 5 min");
        assert_eq!(span(2 * 86_400_000 + 4 * 3_600_000), "2 d 4 h");
        assert_eq!(latency(4.25), "4.2 ms");
        assert_eq!(latency(123.4), "123 ms");
        assert_eq!(latency(2500.0), "2.50 s");
        assert_eq!(when(0), "Jan 1, 1970 00:00 UTC");
    }

    const NOW: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z
    const DAY: i64 = 86_400_000;

    fn comp(name: &str, group: Option<&str>, status: Status, position: usize) -> Component {
        let days = (0..90)
            .map(|i| Day {
                start: NOW - (89 - i) * DAY,
                uptime: match i {
                    0..30 => None,
                    88 => Some(97.5),
                    _ => Some(100.0),
                },
                runs: if i < 30 { 0 } else { 8640 },
            })
            .collect();
        Component {
            id: super::super::id_of(&format!("component:{name}")),
            probe: format!("probe-{position}"),
            name: name.into(),
            description: Some(format!("{name} description {HOSTILE}")),
            group: group.map(Into::into),
            status,
            since: Some(NOW - 60_000),
            position,
            days,
            uptime_24h: Some(99.5),
            uptime_7d: Some(99.93),
            uptime_30d: None,
            latency_24h: (0..24)
                .map(|h| (h != 5).then_some(10.0 + h as f64))
                .collect(),
            last_latency_ms: Some(12.5),
            has_latency: true,
            created_at: Some(NOW - 60 * DAY),
        }
    }

    fn update(status: IncidentStatus, at: i64, body: &str) -> Update {
        Update {
            status,
            at,
            body: body.into(),
        }
    }

    /// Two groups (one with a hostile name), an ungrouped component, one down; an open
    /// incident, a resolved one, a maintenance window in progress.
    fn view() -> View {
        let components = vec![
            comp("API", Some("Core"), Status::Operational, 1),
            comp(
                &format!("Database {HOSTILE}"),
                Some("Core"),
                Status::MajorOutage,
                2,
            ),
            comp(
                "Website",
                Some(&format!("Edge {HOSTILE}")),
                Status::Operational,
                3,
            ),
            comp("Search", None, Status::UnderMaintenance, 4),
        ];
        let groups = vec![
            Group {
                id: "g1".into(),
                name: "Core".into(),
                members: vec![0, 1],
                status: Status::PartialOutage,
                position: 1,
                created_at: None,
            },
            Group {
                id: "g2".into(),
                name: format!("Edge {HOSTILE}"),
                members: vec![2],
                status: Status::Operational,
                position: 2,
                created_at: None,
            },
        ];
        let db = components[1].name.clone();
        let incidents = vec![
            Incident {
                id: 7,
                component: 1,
                name: format!("{db} is down"),
                status: IncidentStatus::Investigating,
                impact: "critical",
                component_status: Status::MajorOutage,
                opened_status: Status::MajorOutage,
                opened_at: NOW - 12 * 60_000,
                monitoring_at: None,
                resolved_at: None,
                updated_at: NOW - 12 * 60_000,
                updates: vec![update(
                    IncidentStatus::Investigating,
                    NOW - 12 * 60_000,
                    &format!("{db} is not responding as expected. We are investigating."),
                )],
            },
            Incident {
                id: 3,
                component: 0,
                name: "API is down".into(),
                status: IncidentStatus::Resolved,
                impact: "major",
                component_status: Status::MajorOutage,
                opened_status: Status::MajorOutage,
                opened_at: NOW - 3 * DAY,
                monitoring_at: Some(NOW - 3 * DAY + 300_000),
                resolved_at: Some(NOW - 3 * DAY + 600_000),
                updated_at: NOW - 3 * DAY + 600_000,
                updates: vec![
                    update(
                        IncidentStatus::Investigating,
                        NOW - 3 * DAY,
                        "API is not responding.",
                    ),
                    update(
                        IncidentStatus::Monitoring,
                        NOW - 3 * DAY + 300_000,
                        "API has recovered. We are monitoring.",
                    ),
                    update(
                        IncidentStatus::Resolved,
                        NOW - 3 * DAY + 600_000,
                        "This incident has been resolved.",
                    ),
                ],
            },
        ];
        View {
            page: Page {
                id: "p".into(),
                name: format!("Acme {HOSTILE} status"),
                description: Some(format!("What we run {HOSTILE}")),
                url: "https://status.example.com/status".into(),
                updated_at: NOW - 60_000,
                created_at: 0,
            },
            components,
            groups,
            incidents,
            maintenances: vec![MaintenanceWindow {
                id: "m1".into(),
                name: format!("search-reindex {HOSTILE}"),
                start: NOW - 600_000,
                end: NOW + 3_000_000,
                in_progress: true,
                components: vec![3],
            }],
            history_days: 90,
            built_at: NOW,
        }
    }

    #[test]
    fn renders_every_piece_and_escapes_every_text() {
        let html = render(&view());
        // Nothing hostile survives unescaped: no tag, no attribute break-out.
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("alert(\"x\")"));
        assert!(!html.contains("'q'"));
        assert!(
            html.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;q&#39;")
        );
        // The document: language, phone viewport, title.
        assert!(html.starts_with("<!doctype html>\n<html lang=\"en\">"));
        assert!(
            html.contains(
                r#"<meta name="viewport" content="width=device-width, initial-scale=1">"#
            )
        );
        assert!(html.contains("<title>Acme &lt;script&gt;"));
        assert!(html.contains("<h1>Acme &lt;script&gt;"));
        assert!(html.contains("What we run &lt;script&gt;"));
        // The banner: one of four down is a partial outage.
        assert!(html.contains(r#"<section class="banner b-major" role="status">"#));
        assert!(html.contains("<h2>Partial System Outage</h2>"));
        // Groups as headings, in order, each with its members; the ungrouped one alone.
        let core = html.find("<h3>Core</h3>").expect("group heading");
        let edge = html
            .find("<h3>Edge &lt;script&gt;")
            .expect("hostile group heading");
        let api = html.find(r#"<h4 class="cname">API</h4>"#).unwrap();
        let db = html
            .find(r#"<h4 class="cname">Database &lt;script&gt;"#)
            .unwrap();
        let web = html.find(r#"<h4 class="cname">Website</h4>"#).unwrap();
        let search = html.find(r#"<h3 class="cname">Search</h3>"#).unwrap();
        assert!(core < api && api < db && db < edge && edge < web && web < search);
        // States in words, with colour classes.
        assert!(html.contains(
            r#"<span class="st mo"><span class="dot" aria-hidden="true"></span>Major outage</span>"#
        ));
        assert_eq!(
            html.matches(">Operational</span>").count(),
            3,
            "API, Website, group Edge"
        );
        assert!(html.contains(">Partial outage</span>"), "group Core");
        assert!(html.contains(">Under maintenance</span>"));
        // 90 bars per component, grey for days without data, with date and percentage.
        assert_eq!(html.matches("<i class=\"").count(), 4 * 90);
        // Each day reachable by keyboard and touch (focusable, its text in a popover).
        let day = |class: &str, text: &str| {
            format!(r#"<i class="{class}" role="listitem" tabindex="0" aria-label="{text}"></i>"#)
        };
        assert_eq!(
            html.matches(r#"<i class="nd" role="listitem" tabindex="0""#)
                .count(),
            4 * 30
        );
        assert!(html.contains(&day("po", "Dec 31, 2025: 97.50% uptime")));
        assert!(html.contains(&day("nd", "Oct 4, 2025: no data")));
        assert!(html.contains(&day("op", "Jan 1, 2026: 100% uptime")));
        assert!(
            !html.contains("<i class=\"op\" title="),
            "no tooltip-only text"
        );
        // Uptime figures and a sparkline per component, with a gap for the empty hour.
        assert!(html.contains("<dt>24 h uptime</dt><dd>99.50%</dd>"));
        assert!(html.contains("<dt>7 d uptime</dt><dd>99.93%</dd>"));
        assert!(html.contains("<dt>30 d uptime</dt><dd>—</dd>"));
        assert_eq!(html.matches("<svg class=\"spark\"").count(), 4);
        // A kind without a response time (push, backup) shows none.
        let mut v = view();
        v.components[0].has_latency = false;
        let h = render(&v);
        assert_eq!(h.matches("<svg class=\"spark\"").count(), 3);
        assert_eq!(h.matches("<span class=\"lab\">Response time").count(), 3);
        assert_eq!(html.matches("<path class=\"ln\"").count(), 4 * 2);
        assert!(html.contains("hourly means: 10 ms to 33 ms"));
        // The open incident in one line above the components, its detail below them; the
        // resolved one under its day.
        assert!(html.contains(
            "<p class=\"oneline\">1 open incident: <a href=\"#incident-7\">Database &lt;script&gt;"
        ));
        assert!(html.find("<p class=\"oneline\">").unwrap() < core);
        let open = html
            .find("<h2 id=\"h-open\">Current incidents</h2>")
            .unwrap();
        let open_name = html.find("<h3>Database &lt;script&gt;").unwrap();
        assert!(search < open && open < open_name);
        // Feeds: autodiscovery and visible links.
        assert!(html.contains(
            r#"<link rel="alternate" type="application/atom+xml" title="Acme &lt;script&gt;"#
        ));
        assert!(
            html.contains(r#"type="application/rss+xml""#) && html.contains(r#"href="feed.rss""#)
        );
        assert!(html.contains(r#"<a href="feed.atom">Atom feed</a>"#));
        // Dark mode, and no low-contrast grey.
        assert!(html.contains("@media (prefers-color-scheme:dark)"));
        assert!(!html.contains("#7b8794"));
        assert!(html.contains("<span class=\"tag critical\">Investigating</span>"));
        assert!(html.contains("Began <time datetime=\"2025-12-31T23:48:00.000Z\">Dec 31, 2025 23:48 UTC</time>, ongoing for 12 min"));
        assert!(html.contains("is not responding as expected. We are investigating."));
        let past = html.find("<h2 id=\"h-past\">Past incidents</h2>").unwrap();
        let resolved = html.find("<h4>API is down</h4>").unwrap();
        assert!(open_name < past && past < resolved);
        assert!(html.contains("<h3>Dec 29, 2025</h3>"));
        assert!(html.contains("Lasted 10 min"));
        assert!(html.contains("<b>Resolved</b> — This incident has been resolved."));
        // Maintenance in progress, with its times and what it covers.
        assert!(html.contains("<h3>search-reindex &lt;script&gt;"));
        assert!(html.contains("<span class=\"tag mnt\">In progress</span> Until <time datetime=\"2026-01-01T00:50:00.000Z\">"));
        assert!(html.contains("<p class=\"meta\">Affects Search</p>"));
        let mut v = view();
        v.maintenances[0].in_progress = false;
        v.maintenances[0].start = NOW + 3_600_000;
        v.maintenances[0].end = NOW + 5_400_000;
        assert!(render(&v).contains(
            "<span class=\"tag mnt\">Scheduled</span> <time datetime=\"2026-01-01T01:00:00.000Z\">Jan 1, 2026 01:00 UTC</time> to <time datetime=\"2026-01-01T01:30:00.000Z\">01:30 UTC</time>"
        ));
        // Updated at, in UTC.
        assert!(html.contains(
            "Updated <time datetime=\"2026-01-01T00:00:00.000Z\">Jan 1, 2026 00:00 UTC</time>"
        ));
        // Nothing but what the view holds: no probe names (the view's internal handle).
        assert!(!html.contains("probe-1"));
    }

    #[test]
    fn an_empty_quiet_page_says_so() {
        let mut v = view();
        v.incidents.clear();
        v.maintenances.clear();
        for c in &mut v.components {
            c.status = Status::Operational;
        }
        let html = render(&v);
        assert!(html.contains("<section class=\"banner b-none\" role=\"status\">"));
        assert!(html.contains("All Systems Operational"));
        assert!(!html.contains("Current incidents"));
        assert!(!html.contains("h-mnt"));
        assert!(html.contains("No incidents reported."));
        v.components.clear();
        v.groups.clear();
        assert!(render(&v).contains("No public components."));
    }

    #[test]
    fn a_view_is_rendered_once_and_answers_304_to_its_etag() {
        let v = Arc::new(view());
        let a = rendered(&v);
        let b = rendered(&v);
        assert!(Arc::ptr_eq(&a, &b));
        let r = response(&v, &HeaderMap::new(), "public, max-age=10");
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/html; charset=utf-8"
        );
        let etag = r.headers()[header::ETAG].to_str().unwrap().to_owned();
        assert_eq!(etag, etag_of(&a.body));
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, etag.parse().unwrap());
        let r = response(&v, &h, "public, max-age=10");
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(r.headers()[header::ETAG], etag.as_str());
        assert_eq!(r.headers()[header::CACHE_CONTROL], "public, max-age=10");
        h.insert(header::IF_NONE_MATCH, "\"stale\"".parse().unwrap());
        assert_eq!(response(&v, &h, "x").status(), StatusCode::OK);
    }

    #[test]
    fn gzip_when_accepted_with_its_own_etag() {
        let accepts = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT_ENCODING, v.parse().unwrap());
            accepts_gzip(&h)
        };
        assert!(accepts("gzip, deflate, br"));
        assert!(accepts("br;q=1.0, GZIP;q=0.5"));
        assert!(accepts("*"));
        assert!(!accepts("gzip;q=0"));
        assert!(!accepts("br, deflate"));
        assert!(!accepts_gzip(&HeaderMap::new()));

        let v = Arc::new(view());
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_ENCODING, "gzip".parse().unwrap());
        let r = response(&v, &h, "x");
        assert_eq!(r.headers()[header::CONTENT_ENCODING], "gzip");
        assert_eq!(r.headers()[header::VARY], "Accept-Encoding");
        let gz_tag = r.headers()[header::ETAG].to_str().unwrap().to_owned();
        let plain = rendered(&v);
        assert_ne!(gz_tag, plain.etag, "another representation, another ETag");
        let (gz, _) = plain.gzip.as_ref().unwrap();
        let mut out = String::new();
        use std::io::Read;
        flate2::read::GzDecoder::new(&gz[..])
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out.as_bytes(), &plain.body[..]);
        assert!(
            gz.len() * 3 < plain.body.len(),
            "{} -> {}",
            plain.body.len(),
            gz.len()
        );
        h.insert(header::IF_NONE_MATCH, gz_tag.parse().unwrap());
        let r = response(&v, &h, "x");
        assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
        assert!(r.headers().get(header::CONTENT_ENCODING).is_none());
    }
}
