//! Badges for READMEs and dashboards, in shields.io's "flat" style: `GET
//! /badge/{probe}/status.svg`, `uptime-24h.svg`, `uptime-7d.svg`, `uptime-30d.svg` and
//! `latency.svg`, for public probes only.
//!
//! Everything on a badge comes from the [`View`] (display name, coarse status, uptime and
//! latency figures), so a badge says nothing the status page does not. A probe that is not
//! public and a probe that does not exist get the same answer ([`for_probe`] returns `None`
//! for both), so badges cannot be used to find out which internal probes exist.
//!
//! Text widths are estimated as shields.io does, from Verdana's advance widths at 11 px, and
//! every text also carries `textLength`, so a renderer with another font squeezes or
//! stretches it to the box rather than overflowing it.

use std::borrow::Cow;
use std::fmt::Write;

use super::{Component, Status, View};

/// `Content-Type` of a badge.
pub const CONTENT_TYPE: &str = "image/svg+xml";

/// shields.io's named colours.
pub mod color {
    pub const BRIGHTGREEN: &str = "#4c1";
    pub const GREEN: &str = "#97ca00";
    pub const YELLOWGREEN: &str = "#a4a61d";
    pub const YELLOW: &str = "#dfb317";
    pub const ORANGE: &str = "#fe7d37";
    pub const RED: &str = "#e05d44";
    pub const BLUE: &str = "#007ec6";
    pub const LIGHTGREY: &str = "#9f9f9f";
    /// The label's background.
    pub const GREY: &str = "#555";
}

/// Which badge (the file name in the URL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Status,
    Uptime24h,
    Uptime7d,
    Uptime30d,
    Latency,
}

impl Kind {
    /// `status.svg` -> `Status`, ...; `None` for any other name.
    pub fn from_file(file: &str) -> Option<Kind> {
        Some(match file {
            "status.svg" => Kind::Status,
            "uptime-24h.svg" => Kind::Uptime24h,
            "uptime-7d.svg" => Kind::Uptime7d,
            "uptime-30d.svg" => Kind::Uptime30d,
            "latency.svg" => Kind::Latency,
            _ => return None,
        })
    }
}

/// The badge `file` of public probe `probe`, or `None` (unknown badge, unknown probe or a
/// probe that is not public: the caller answers the same 404 for all three).
pub fn for_probe(v: &View, probe: &str, file: &str) -> Option<String> {
    let kind = Kind::from_file(file)?;
    let c = v.component(probe)?;
    let (label, message, color) = content(c, kind);
    Some(render(&label, &message, color))
}

/// Label, message and colour of badge `kind` for component `c`.
pub fn content(c: &Component, kind: Kind) -> (String, String, &'static str) {
    let uptime = |label: &str, v: Option<f64>| {
        let (m, col) = match v {
            Some(p) => (format_percent(p), uptime_color(p)),
            None => ("no data".to_owned(), color::LIGHTGREY),
        };
        (label.to_owned(), m, col)
    };
    match kind {
        Kind::Status => {
            let label = if c.name.trim().is_empty() {
                "status".to_owned()
            } else {
                c.name.clone()
            };
            let (m, col) = status_message(c.status);
            (label, m.to_owned(), col)
        }
        Kind::Uptime24h => uptime("uptime 24h", c.uptime_24h),
        Kind::Uptime7d => uptime("uptime 7d", c.uptime_7d),
        Kind::Uptime30d => uptime("uptime 30d", c.uptime_30d),
        Kind::Latency => {
            let (m, col) = match c.last_latency_ms {
                _ if !c.has_latency => ("n/a".to_owned(), color::LIGHTGREY),
                Some(ms) => (format_ms(ms), latency_color(ms)),
                None => ("no data".to_owned(), color::LIGHTGREY),
            };
            ("latency".to_owned(), m, col)
        }
    }
}

/// A status as a badge says it, with its colour.
pub fn status_message(s: Status) -> (&'static str, &'static str) {
    match s {
        Status::Operational => ("operational", color::BRIGHTGREEN),
        Status::DegradedPerformance => ("degraded", color::YELLOW),
        Status::PartialOutage => ("partial outage", color::ORANGE),
        Status::MajorOutage => ("major outage", color::RED),
        Status::UnderMaintenance => ("maintenance", color::BLUE),
    }
}

/// Uptime colours, as uptime badges commonly grade them.
pub fn uptime_color(pct: f64) -> &'static str {
    match pct {
        p if p >= 99.9 => color::BRIGHTGREEN,
        p if p >= 99.0 => color::GREEN,
        p if p >= 97.0 => color::YELLOWGREEN,
        p if p >= 95.0 => color::YELLOW,
        p if p >= 90.0 => color::ORANGE,
        _ => color::RED,
    }
}

/// Latency colours.
pub fn latency_color(ms: f64) -> &'static str {
    match ms {
        m if m < 200.0 => color::BRIGHTGREEN,
        m if m < 500.0 => color::GREEN,
        m if m < 1000.0 => color::YELLOW,
        m if m < 2000.0 => color::ORANGE,
        _ => color::RED,
    }
}

/// `99.95%`, `100%`, `97.5%`: rounded *down* to two decimals, so 99.999% never reads as
/// 100%.
pub fn format_percent(pct: f64) -> String {
    let hundredths = (pct.clamp(0.0, 100.0) * 100.0 + 1e-6).floor() as u64;
    let mut s = format!("{}.{:02}", hundredths / 100, hundredths % 100);
    while s.ends_with('0') {
        s.pop();
    }
    if s.ends_with('.') {
        s.pop();
    }
    s.push('%');
    s
}

/// `123 ms`; `4.2 ms` under 10 ms.
pub fn format_ms(ms: f64) -> String {
    let ms = ms.max(0.0);
    if ms < 9.95 {
        format!("{ms:.1} ms")
    } else {
        format!("{} ms", ms.round() as u64)
    }
}

/// Verdana's advance widths for ASCII 32..=126, in font units (2048 to the em), as shields.io
/// measures badge text.
#[rustfmt::skip]
const VERDANA_ADVANCE: [u16; 95] = [
    720, 806, 940, 1676, 1302, 2204, 1488, 550, 930, 930, 1302, 1676, 745, 930, 745, 930, // ' '..'/'
    1302, 1302, 1302, 1302, 1302, 1302, 1302, 1302, 1302, 1302, 930, 930, 1676, 1676, 1676, 1117, // '0'..'?'
    2048, 1400, 1404, 1430, 1578, 1295, 1177, 1588, 1539, 862, 931, 1419, 1140, 1726, 1532, 1612, // '@'..'O'
    1235, 1612, 1424, 1400, 1262, 1499, 1400, 2025, 1403, 1260, 1403, 930, 930, 930, 1676, 1302, // 'P'..'_'
    1302, 1230, 1276, 1067, 1276, 1220, 720, 1276, 1296, 562, 705, 1212, 562, 1992, 1296, 1243, // '`'..'o'
    1276, 1276, 874, 1067, 807, 1296, 1212, 1676, 1212, 1212, 1076, 1300, 930, 1300, 1676, // 'p'..'~'
];

/// Width of `text` in Verdana 11 px. Characters outside ASCII count as a full em (as wide
/// as the widest Latin letters, as wide as a CJK ideograph), so the estimate errs wide.
pub fn text_width(text: &str) -> f64 {
    text.chars()
        .map(|c| match c as u32 {
            n @ 32..=126 => f64::from(VERDANA_ADVANCE[(n - 32) as usize]) * 11.0 / 2048.0,
            n if n < 32 || (0x7f..0xa0).contains(&n) => 0.0,
            _ => 11.0,
        })
        .sum()
}

/// `s` without the characters XML 1.0 does not allow (C0 controls but tab, newline and
/// carriage return; U+FFFE, U+FFFF). Config texts may hold them (YAML `"\x01"`), and one of
/// them makes a whole document ill-formed.
pub fn xml_chars(s: &str) -> Cow<'_, str> {
    let bad = |c: char| {
        (c < ' ' && !matches!(c, '\t' | '\n' | '\r')) || c == '\u{fffe}' || c == '\u{ffff}'
    };
    if s.chars().any(bad) {
        Cow::Owned(s.chars().filter(|c| !bad(*c)).collect())
    } else {
        Cow::Borrowed(s)
    }
}

/// `s` escaped for XML text and attribute values (and HTML).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in xml_chars(s).chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Line breaks would be normalized away in attributes; a badge is one line.
            '\t' | '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Padding either side of each text, px.
const PAD: f64 = 5.0;

/// A flat badge: `label` on grey, `message` on `color`.
pub fn render(label: &str, message: &str, color: &str) -> String {
    let label_text = text_width(label).ceil();
    let message_text = text_width(message).ceil();
    let label_w = label_text + 2.0 * PAD;
    let message_w = message_text + 2.0 * PAD;
    let width = label_w + message_w;
    let (l, m) = (escape(label), escape(message));
    let title = format!("{l}: {m}");
    let mut svg = String::with_capacity(1500);
    // Texts are drawn at 10x and scaled down by 0.1, as shields.io does, for finer
    // positioning.
    let _ = write!(
        svg,
        concat!(
            r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="20" role="img" aria-label="{title}">"##,
            r##"<title>{title}</title>"##,
            r##"<linearGradient id="s" x2="0" y2="100%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient>"##,
            r##"<clipPath id="r"><rect width="{w}" height="20" rx="3" fill="#fff"/></clipPath>"##,
            r##"<g clip-path="url(#r)"><rect width="{lw}" height="20" fill="{grey}"/><rect x="{lw}" width="{mw}" height="20" fill="{color}"/><rect width="{w}" height="20" fill="url(#s)"/></g>"##,
            r##"<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" text-rendering="geometricPrecision" font-size="110">"##,
            r##"<text aria-hidden="true" x="{lx}" y="150" fill="#010101" fill-opacity=".3" transform="scale(.1)" textLength="{ll}">{l}</text>"##,
            r##"<text x="{lx}" y="140" transform="scale(.1)" fill="#fff" textLength="{ll}">{l}</text>"##,
            r##"<text aria-hidden="true" x="{mx}" y="150" fill="#010101" fill-opacity=".3" transform="scale(.1)" textLength="{ml}">{m}</text>"##,
            r##"<text x="{mx}" y="140" transform="scale(.1)" fill="#fff" textLength="{ml}">{m}</text>"##,
            r##"</g></svg>"##,
        ),
        w = width,
        title = title,
        lw = label_w,
        mw = message_w,
        grey = color::GREY,
        color = escape(color),
        lx = label_w * 5.0,
        ll = label_text * 10.0,
        mx = (label_w + message_w / 2.0) * 10.0,
        ml = message_text * 10.0,
        l = l,
        m = m,
    );
    svg
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::public::{Page, View};

    fn component(name: &str, status: Status) -> Component {
        Component {
            uptime_24h: Some(99.95),
            uptime_7d: Some(98.0),
            last_latency_ms: Some(123.4),
            ..crate::public::testing::component(name, status)
        }
    }

    fn view(components: Vec<Component>) -> View {
        View {
            page: Page {
                id: "p".into(),
                name: "Acme".into(),
                description: None,
                url: "https://status.example.com".into(),
                updated_at: 0,
                created_at: 0,
            },
            components,
            groups: Vec::new(),
            incidents: Vec::new(),
            maintenances: Vec::new(),
            history_days: 90,
            built_at: 0,
        }
    }

    /// The `width` attribute of the root element.
    fn width_of(svg: &str) -> f64 {
        let rest = &svg[svg.find("width=\"").unwrap() + 7..];
        rest[..rest.find('"').unwrap()].parse().unwrap()
    }

    #[test]
    fn widths_follow_verdana_and_grow_with_text() {
        // shields.io's own figures for Verdana 11px.
        assert!((text_width("a") - 6.606).abs() < 0.01);
        assert!((text_width(" ") - 3.867).abs() < 0.01);
        assert!((text_width("W") - 10.876).abs() < 0.01);
        assert!(text_width("iiii") < text_width("mmmm"));
        assert_eq!(text_width("a\u{1}b"), text_width("ab"));
        assert_eq!(text_width("日本"), 22.0);

        let short = render("api", "operational", color::BRIGHTGREEN);
        let long = render("the public checkout api", "operational", color::BRIGHTGREEN);
        let longer = render("the public checkout api", "partial outage", color::ORANGE);
        assert!(width_of(&short) < width_of(&long));
        assert!(width_of(&long) < width_of(&longer));
        // Each box holds its text plus padding: no overflow.
        let w = width_of(&long);
        let need = text_width("the public checkout api") + text_width("operational") + 4.0 * PAD;
        assert!(w >= need && w < need + 2.0, "{w} vs {need}");
    }

    #[test]
    fn text_is_escaped_and_accessible() {
        let svg = render("<a href=\"x\">&'", "ok </text><script>", color::RED);
        assert!(!svg.contains("<a "));
        assert!(!svg.contains("<script>"));
        assert!(svg.contains("&lt;a href=&quot;x&quot;&gt;&amp;&#39;"));
        assert!(svg.contains(r#"role="img""#));
        assert!(svg.contains(
            "aria-label=\"&lt;a href=&quot;x&quot;&gt;&amp;&#39;: ok &lt;/text&gt;&lt;script&gt;\""
        ));
        assert!(svg.contains(
            "<title>&lt;a href=&quot;x&quot;&gt;&amp;&#39;: ok &lt;/text&gt;&lt;script&gt;</title>"
        ));
        // Control characters are dropped (XML 1.0 forbids them).
        let svg = render("a\u{1}b", "c\u{fffe}", color::RED);
        assert!(svg.contains(">ab<") && svg.contains(">c<"));
        assert_eq!(svg.matches("<text").count(), 4);
    }

    #[test]
    fn colours_by_threshold() {
        assert_eq!(uptime_color(100.0), color::BRIGHTGREEN);
        assert_eq!(uptime_color(99.9), color::BRIGHTGREEN);
        assert_eq!(uptime_color(99.89), color::GREEN);
        assert_eq!(uptime_color(99.0), color::GREEN);
        assert_eq!(uptime_color(98.0), color::YELLOWGREEN);
        assert_eq!(uptime_color(96.0), color::YELLOW);
        assert_eq!(uptime_color(92.0), color::ORANGE);
        assert_eq!(uptime_color(50.0), color::RED);
        assert_eq!(latency_color(50.0), color::BRIGHTGREEN);
        assert_eq!(latency_color(300.0), color::GREEN);
        assert_eq!(latency_color(700.0), color::YELLOW);
        assert_eq!(latency_color(1500.0), color::ORANGE);
        assert_eq!(latency_color(5000.0), color::RED);
    }

    #[test]
    fn figures_read_as_people_expect() {
        assert_eq!(format_percent(100.0), "100%");
        assert_eq!(format_percent(99.95), "99.95%");
        assert_eq!(format_percent(99.999), "99.99%");
        assert_eq!(format_percent(97.5), "97.5%");
        assert_eq!(format_percent(0.0), "0%");
        assert_eq!(format_ms(123.4), "123 ms");
        assert_eq!(format_ms(4.24), "4.2 ms");
        assert_eq!(format_ms(1999.6), "2000 ms");
    }

    #[test]
    fn badges_per_probe() {
        let v = view(vec![component("Checkout API", Status::MajorOutage)]);
        let status = for_probe(&v, "api", "status.svg").unwrap();
        assert!(status.contains("<title>Checkout API: major outage</title>"));
        assert!(status.contains(color::RED));
        let up = for_probe(&v, "api", "uptime-24h.svg").unwrap();
        assert!(
            up.contains("<title>uptime 24h: 99.95%</title>") && up.contains(color::BRIGHTGREEN)
        );
        let up = for_probe(&v, "api", "uptime-7d.svg").unwrap();
        assert!(up.contains("uptime 7d: 98%") && up.contains(color::YELLOWGREEN));
        let up = for_probe(&v, "api", "uptime-30d.svg").unwrap();
        assert!(up.contains("uptime 30d: no data") && up.contains(color::LIGHTGREY));
        let lat = for_probe(&v, "api", "latency.svg").unwrap();
        assert!(lat.contains("latency: 123 ms") && lat.contains(color::BRIGHTGREEN));
        // Unknown probe (internal probes are not in the view at all) and unknown badge.
        assert!(for_probe(&v, "db-internal", "status.svg").is_none());
        assert!(for_probe(&v, "api", "status.png").is_none());
        assert!(for_probe(&v, "api", "../status.svg").is_none());

        for (s, want) in [
            (Status::Operational, "operational"),
            (Status::DegradedPerformance, "degraded"),
            (Status::PartialOutage, "partial outage"),
            (Status::UnderMaintenance, "maintenance"),
        ] {
            let v = view(vec![component("A & B", s)]);
            let svg = for_probe(&v, "api", "status.svg").unwrap();
            assert!(
                svg.contains(&format!("<title>A &amp; B: {want}</title>")),
                "{svg}"
            );
        }
        let v = view(vec![component(" ", Status::Operational)]);
        let svg = for_probe(&v, "api", "status.svg").unwrap();
        assert!(svg.contains("<title>status: operational</title>"));
    }
}
