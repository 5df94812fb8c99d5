//! Service-level objectives per probe: multi-window, multi-burn-rate alerts (the SRE
//! workbook, chapter 5) and Apdex. They catch what `after` consecutive failures cannot: an
//! error rate of a few percent, or a latency that creeps, where most runs still pass.
//!
//! ```yaml
//! slo:
//!   objective: 99.9%          # of runs that must succeed; a failed run is a bad event
//!   burn_rates:               # default: the workbook's three
//!     - { long: 1h, short: 5m, factor: 14.4 }
//!     - { long: 6h, short: 30m, factor: 6 }
//!     - { long: 3d, short: 6h, factor: 1, severity: warning }   # a ticket, not a page
//!   apdex: { target: 150ms, min: 0.85, window: 5m }     # severity: as the probe's
//!   time_scale: 1             # every window divided by this (a compressed clock, for labs)
//!   min_runs: 5               # runs a window needs before it can alert
//! ```
//!
//! **Burn rate** over a window is the share of bad runs divided by the error budget
//! (`1 - objective`): 1× spends the budget exactly over the objective's period. A rule alerts
//! when both its long and its short window burn faster than its factor: the long window
//! makes it significant, the short one makes it current. A window alerts only once runs
//! have been counted for (11/12 of) its length and it holds `min_runs`: one failure among
//! a new probe's first runs is not a burn rate.
//!
//! **Apdex** over `window`: (satisfied + tolerating / 2) / runs, where a run is satisfied
//! within `target`, tolerating within 4 × `target`, and frustrated beyond that or failed.
//!
//! **Without flapping.** A probe runs a few times a minute, so a short window holds few runs
//! and at an error rate of a few percent it is bad one moment and clean the next. An alert
//! therefore stays on until its *long* window falls back under the factor (for Apdex: until
//! the score climbs halfway from `min` to 1), not until the short window next looks clean.
//!
//! An alert moves the probe to `degraded`, which opens an incident and pages like `down`
//! (the incident continues if the probe then goes down, and again if it recovers to
//! `degraded`). Runs while the probe is `down` are not counted: that incident already
//! paged, and counting them would hold the probe degraded for a long window after it
//! recovered. The windows start afresh when a probe goes down.
//!
//! Memory is bounded: one ring of [`SLOTS`] counters per distinct window length.

use std::fmt::Write as _;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::units::{Dur, format_duration};

/// Slots per window: a window is summed over its current slot and the 11 before, so it
/// spans between 11/12 and 12/12 of its length.
pub const SLOTS: usize = 12;

/// One burn-rate rule.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BurnRate {
    pub long: Dur,
    pub short: Dur,
    pub factor: f64,
    /// The incident's severity (routing label) when this rule alerts. Default: the
    /// probe's `alert.severity`.
    #[serde(default)]
    pub severity: Option<String>,
}

/// An Apdex objective.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApdexSpec {
    /// T: a run within it is satisfied, within 4 T tolerating.
    pub target: Dur,
    /// Alert when the score falls below this (0 to 1). Default: 0.85.
    #[serde(default = "default_apdex_min")]
    pub min: f64,
    /// The window the score is taken over. Default: 5m.
    #[serde(default = "default_apdex_window")]
    pub window: Dur,
    /// The incident's severity when Apdex alerts. Default: the probe's `alert.severity`.
    #[serde(default)]
    pub severity: Option<String>,
}

fn default_apdex_min() -> f64 {
    0.85
}

fn default_apdex_window() -> Dur {
    Dur::secs(300)
}

/// `99.9%`, `99.9` or `0.999`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Objective(pub f64);

impl schemars::JsonSchema for Objective {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "SloObjective".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "The share of runs that must succeed: 99.9%, 99.9 or 0.999.",
            "type": ["string", "number"],
            "exclusiveMinimum": 0,
            "pattern": format!(r"^\s*([0-9]+\.?[0-9]*|\.[0-9]+)\s*%?\s*${}", crate::units::INTERP_ALT),
            "examples": ["99.9%", 0.999],
            "patternErrorMessage": "not an objective: write e.g. 99.9%",
        })
    }
}

impl<'de> Deserialize<'de> for Objective {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let crate::probe::backup::Percent(n) = Deserialize::deserialize(d)
            .map_err(|e: D::Error| D::Error::custom(format!("objective: {e}")))?;
        // 0.999 and 99.9 both mean 99.9%.
        let f = if n > 1.0 { n / 100.0 } else { n };
        if !(f > 0.0 && f < 1.0) {
            return Err(D::Error::custom(format!(
                "objective {n} must be between 0% and 100% (exclusive), e.g. 99.9%"
            )));
        }
        Ok(Objective(f))
    }
}

/// `slo:` of a probe.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SloSpec {
    pub objective: Option<Objective>,
    #[serde(default)]
    pub burn_rates: Option<Vec<BurnRate>>,
    pub apdex: Option<ApdexSpec>,
    /// Every window is divided by this. Default: 1.
    #[serde(default = "one")]
    pub time_scale: f64,
    /// Runs a window needs before it can alert. Default: 5.
    #[serde(default = "default_min_runs")]
    pub min_runs: u32,
}

fn one() -> f64 {
    1.0
}

/// Largest `time_scale`: a 3-day window becomes 2.6 s.
const MAX_TIME_SCALE: f64 = 100_000.0;
/// Largest `min_runs`: a week of runs every 6 s.
const MAX_MIN_RUNS: u32 = 100_000;

fn default_min_runs() -> u32 {
    5
}

/// The SRE workbook's rules for a 30-day objective: the first two page (the probe's
/// severity), the slow burn is a ticket (severity `warning`, for routes to tell apart).
pub fn workbook_rules() -> Vec<BurnRate> {
    let h = |n: u64| Dur::secs(n * 3600);
    vec![
        BurnRate {
            long: h(1),
            short: Dur::secs(300),
            factor: 14.4,
            severity: None,
        },
        BurnRate {
            long: h(6),
            short: Dur::secs(1800),
            factor: 6.0,
            severity: None,
        },
        BurnRate {
            long: h(72),
            short: h(6),
            factor: 1.0,
            severity: Some("warning".into()),
        },
    ]
}

impl SloSpec {
    /// Problems, each with the key it is about (relative to `slo`).
    pub fn validate(&self) -> Vec<(Vec<&'static str>, String)> {
        let mut out = Vec::new();
        if self.objective.is_none() && self.apdex.is_none() {
            out.push((
                vec![],
                "slo needs an objective (burn-rate alerts) or apdex, or both".into(),
            ));
        }
        if self.burn_rates.is_some() && self.objective.is_none() {
            out.push((
                vec!["burn_rates"],
                "burn_rates need an objective (e.g. objective: 99.9%)".into(),
            ));
        }
        if let Some(rules) = &self.burn_rates {
            if rules.is_empty() {
                out.push((vec!["burn_rates"], "burn_rates is empty: leave it out for the workbook's rules, or remove the objective".into()));
            }
            for r in rules {
                if r.short.0 >= r.long.0 {
                    out.push((
                        vec!["burn_rates"],
                        format!(
                            "a burn-rate rule's short window ({}) must be shorter than its long window ({})",
                            format_duration(r.short.0),
                            format_duration(r.long.0)
                        ),
                    ));
                }
                if r.severity.as_deref().is_some_and(|s| s.trim().is_empty()) {
                    out.push((
                        vec!["burn_rates"],
                        "a burn-rate rule's severity is empty".into(),
                    ));
                }
                if !(r.factor.is_finite() && r.factor > 0.0) {
                    out.push((
                        vec!["burn_rates"],
                        format!("burn-rate factor {} must be above 0", r.factor),
                    ));
                }
            }
        }
        if let Some(a) = &self.apdex {
            if a.target.0.is_zero() {
                out.push((
                    vec!["apdex", "target"],
                    "apdex target must be above 0".into(),
                ));
            }
            if a.severity.as_deref().is_some_and(|s| s.trim().is_empty()) {
                out.push((vec!["apdex", "severity"], "apdex severity is empty".into()));
            }
            if !(a.min > 0.0 && a.min <= 1.0) {
                out.push((
                    vec!["apdex", "min"],
                    format!("apdex min {} must be above 0 and at most 1", a.min),
                ));
            }
        }
        if !(self.time_scale.is_finite() && (1.0..=MAX_TIME_SCALE).contains(&self.time_scale)) {
            out.push((
                vec!["time_scale"],
                format!(
                    "time_scale must be between 1 and {MAX_TIME_SCALE} (windows are divided by it)"
                ),
            ));
        }
        if !(1..=MAX_MIN_RUNS).contains(&self.min_runs) {
            out.push((
                vec!["min_runs"],
                format!("min_runs must be between 1 and {MAX_MIN_RUNS}"),
            ));
        }
        out
    }

    /// The burn-rate rules in force.
    pub fn rules(&self) -> Vec<BurnRate> {
        if self.objective.is_none() {
            return Vec::new();
        }
        self.burn_rates.clone().unwrap_or_else(workbook_rules)
    }

    /// A configured window on the compressed clock, in ms (at least 1).
    fn scaled(&self, d: Duration) -> i64 {
        ((d.as_secs_f64() * 1000.0 / self.time_scale).round() as i64).max(1)
    }

    /// The longest window, scaled: how much history a restart replays.
    pub fn history(&self) -> Duration {
        let mut ms = self
            .rules()
            .iter()
            .map(|r| self.scaled(r.long.0))
            .max()
            .unwrap_or(0);
        if let Some(a) = &self.apdex {
            ms = ms.max(self.scaled(a.window.0));
        }
        Duration::from_millis(ms as u64)
    }
}

/// What one slot counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub runs: u32,
    pub bad: u32,
    pub satisfied: u32,
    pub tolerating: u32,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.runs += o.runs;
        self.bad += o.bad;
        self.satisfied += o.satisfied;
        self.tolerating += o.tolerating;
    }

    /// Share of bad runs.
    pub fn error_ratio(&self) -> f64 {
        if self.runs == 0 {
            0.0
        } else {
            self.bad as f64 / self.runs as f64
        }
    }

    pub fn apdex(&self) -> Option<f64> {
        (self.runs > 0)
            .then(|| (self.satisfied as f64 + self.tolerating as f64 / 2.0) / self.runs as f64)
    }
}

/// Counts over a sliding window of `len` ms, in [`SLOTS`] slots.
#[derive(Debug, Clone)]
struct Ring {
    len: i64,
    width: i64,
    /// (slot number, counts); the slot number is `at / width`.
    slots: [(i64, Counts); SLOTS],
}

impl Ring {
    fn new(len: i64) -> Ring {
        Ring {
            len,
            width: (len / SLOTS as i64).max(1),
            slots: [(i64::MIN, Counts::default()); SLOTS],
        }
    }

    fn add(&mut self, at: i64, c: &Counts) {
        let n = at.div_euclid(self.width);
        let slot = &mut self.slots[n.rem_euclid(SLOTS as i64) as usize];
        if slot.0 != n {
            if slot.0 > n {
                return; // older than the window (a clock step back): dropped
            }
            *slot = (n, Counts::default());
        }
        slot.1.add(c);
    }

    fn sum(&self, now: i64) -> Counts {
        let n = now.div_euclid(self.width);
        let mut c = Counts::default();
        for (k, s) in &self.slots {
            if *k <= n && *k > n - SLOTS as i64 {
                c.add(s);
            }
        }
        c
    }
}

/// Which alert is on.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Firing {
    Burn(usize),
    Apdex,
}

/// One probe's SLO state: its windows and the alert that is on, if any.
#[derive(Debug, Clone)]
pub struct Tracker {
    spec: SloSpec,
    rules: Vec<BurnRate>,
    rings: Vec<Ring>,
    firing: Option<Firing>,
    /// The first run counted (since the tracker began or was reset).
    first_at: Option<i64>,
}

/// A rule's burn rates right now, for the status API.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BurnFigure {
    /// `1h/5m`.
    pub windows: String,
    pub factor: f64,
    pub long: f64,
    pub short: f64,
    pub firing: bool,
}

/// The objectives' figures for the status API.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Figures {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub objective: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub burn_rates: Vec<BurnFigure>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apdex: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
}

impl Tracker {
    pub fn new(spec: &SloSpec) -> Tracker {
        let rules = spec.rules();
        let mut lens: Vec<i64> = rules
            .iter()
            .flat_map(|r| [spec.scaled(r.long.0), spec.scaled(r.short.0)])
            .collect();
        if let Some(a) = &spec.apdex {
            lens.push(spec.scaled(a.window.0));
        }
        lens.sort_unstable();
        lens.dedup();
        Tracker {
            spec: spec.clone(),
            rules,
            rings: lens.into_iter().map(Ring::new).collect(),
            firing: None,
            first_at: None,
        }
    }

    pub fn spec(&self) -> &SloSpec {
        &self.spec
    }

    /// Forgets every run and the alert (the probe went down: that incident covers it).
    pub fn reset(&mut self) {
        *self = Tracker::new(&self.spec);
    }

    /// Counts one run.
    pub fn add(&mut self, at: i64, ok: bool, took: Duration) {
        let mut c = Counts {
            runs: 1,
            bad: !ok as u32,
            ..Counts::default()
        };
        if ok && let Some(a) = &self.spec.apdex {
            if took <= a.target.0 {
                c.satisfied = 1;
            } else if took <= a.target.0 * 4 {
                c.tolerating = 1;
            }
        }
        for r in &mut self.rings {
            r.add(at, &c);
        }
        self.first_at = Some(self.first_at.map_or(at, |f| f.min(at)));
    }

    fn window(&self, len: Duration, now: i64) -> Counts {
        let ms = self.spec.scaled(len);
        self.rings
            .iter()
            .find(|r| r.len == ms)
            .map(|r| r.sum(now))
            .unwrap_or_default()
    }

    fn budget(&self) -> f64 {
        1.0 - self.spec.objective.map_or(0.999, |o| o.0)
    }

    fn burn(&self, len: Duration, now: i64) -> (f64, Counts) {
        let c = self.window(len, now);
        (c.error_ratio() / self.budget(), c)
    }

    /// Whether a window of `len` is covered: runs have been counted for (nearly) as long as
    /// it lasts. A window alerts only then: one failure among a fresh probe's first runs
    /// is not a burn rate.
    fn covered(&self, len: Duration, now: i64) -> bool {
        self.first_at
            .is_some_and(|f| now - f >= self.spec.scaled(len) * (SLOTS as i64 - 1) / SLOTS as i64)
    }

    /// Rule `i`'s figures in words.
    fn burn_text(&self, i: usize, now: i64) -> String {
        let r = &self.rules[i];
        let mut s = format!(
            "error budget burning {} over {} and {} over {} (alerts above {}; objective {})",
            times(self.burn(r.long.0, now).0),
            format_duration(r.long.0),
            times(self.burn(r.short.0, now).0),
            format_duration(r.short.0),
            times(r.factor),
            percent(self.spec.objective.map_or(0.999, |o| o.0)),
        );
        if self.spec.time_scale != 1.0 {
            let _ = write!(s, " [time_scale {}]", self.spec.time_scale);
        }
        s
    }

    /// Whether rule `i` alerts now: both windows over its factor, the long one covered and
    /// holding enough runs.
    fn rule_fires(&self, i: usize, now: i64) -> bool {
        let r = &self.rules[i];
        let (long, lc) = self.burn(r.long.0, now);
        let (short, sc) = self.burn(r.short.0, now);
        self.covered(r.long.0, now)
            && lc.runs >= self.spec.min_runs
            && sc.runs >= 1
            && long > r.factor
            && short > r.factor
    }

    fn apdex_now(&self, now: i64) -> Option<(f64, Counts)> {
        let a = self.spec.apdex.as_ref()?;
        let c = self.window(a.window.0, now);
        Some((c.apdex()?, c))
    }

    fn apdex_text(&self, now: i64) -> String {
        let Some(a) = &self.spec.apdex else {
            return String::new();
        };
        let (score, c) = self.apdex_now(now).unwrap_or_default();
        let mut s = format!(
            "Apdex {score:.2} over {}, below {:.2} (T = {}; {} of {} runs satisfied, {} tolerating)",
            format_duration(a.window.0),
            a.min,
            format_duration(a.target.0),
            c.satisfied,
            c.runs,
            c.tolerating
        );
        if self.spec.time_scale != 1.0 {
            let _ = write!(s, " [time_scale {}]", self.spec.time_scale);
        }
        s
    }

    fn apdex_fires(&self, now: i64) -> bool {
        let Some(a) = &self.spec.apdex else {
            return false;
        };
        self.covered(a.window.0, now)
            && self
                .apdex_now(now)
                .is_some_and(|(score, c)| c.runs >= self.spec.min_runs && score < a.min)
    }

    /// Whether the alert that is on may stay on (its hysteresis).
    fn holds(&self, f: Firing, now: i64) -> bool {
        match f {
            Firing::Burn(i) => {
                let r = &self.rules[i];
                let (long, lc) = self.burn(r.long.0, now);
                lc.runs > 0 && long > r.factor
            }
            Firing::Apdex => {
                let Some(a) = &self.spec.apdex else {
                    return false;
                };
                self.apdex_now(now)
                    .is_some_and(|(score, _)| score < a.min + (1.0 - a.min) / 2.0)
            }
        }
    }

    /// Evaluates at `now`: whether the probe is outside its objectives (an alert is on).
    /// A new alert is the first rule that fires, in order, then Apdex.
    pub fn evaluate(&mut self, now: i64) -> bool {
        if let Some(f) = self.firing {
            if self.holds(f, now) {
                return true;
            }
            self.firing = None;
        }
        self.firing = (0..self.rules.len())
            .find(|&i| self.rule_fires(i, now))
            .map(Firing::Burn)
            .or_else(|| self.apdex_fires(now).then_some(Firing::Apdex));
        self.firing.is_some()
    }

    /// Why the probe is outside its objectives (the alert that is on, with its figures at
    /// `now`), as of the last [`Tracker::evaluate`]. Worded only when asked: a probe that
    /// stays degraded does not format its reason on every run.
    pub fn reason(&self, now: i64) -> Option<String> {
        self.firing.map(|f| self.describe(f, now))
    }

    /// The severity of the alert that is on, when its rule sets one.
    pub fn severity(&self) -> Option<&str> {
        match self.firing? {
            Firing::Burn(i) => self.rules[i].severity.as_deref(),
            Firing::Apdex => self.spec.apdex.as_ref()?.severity.as_deref(),
        }
    }

    fn describe(&self, f: Firing, now: i64) -> String {
        match f {
            Firing::Burn(i) => self.burn_text(i, now),
            Firing::Apdex => self.apdex_text(now),
        }
    }

    /// The figures at `now`, for the status API.
    pub fn figures(&self, now: i64) -> Figures {
        Figures {
            objective: self.spec.objective.map(|o| o.0 * 100.0),
            burn_rates: self
                .rules
                .iter()
                .enumerate()
                .map(|(i, r)| BurnFigure {
                    windows: format!(
                        "{}/{}",
                        format_duration(r.long.0),
                        format_duration(r.short.0)
                    ),
                    factor: r.factor,
                    long: round2(self.burn(r.long.0, now).0),
                    short: round2(self.burn(r.short.0, now).0),
                    firing: self.firing == Some(Firing::Burn(i)),
                })
                .collect(),
            apdex: self.apdex_now(now).map(|(s, _)| round2(s)),
            alert: self.reason(now),
        }
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// `14.4x`, `2x` (ASCII: reasons go into mail subjects and SMS).
fn times(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}x")
    } else {
        let s = format!("{x:.1}");
        format!("{}x", s.trim_end_matches(".0"))
    }
}

/// `99.9%`.
fn percent(f: f64) -> String {
    let s = format!("{:.3}", f * 100.0);
    format!("{}%", s.trim_end_matches('0').trim_end_matches('.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> SloSpec {
        let s: SloSpec = serde_yaml::from_str(yaml).unwrap();
        assert!(s.validate().is_empty(), "{:?}", s.validate());
        s
    }

    const MS: i64 = 1;
    const S: i64 = 1000;

    /// Feeds runs every `every` ms from `from` to `to` (exclusive), failing where `bad(i)`,
    /// taking `took(i)`; returns the alert state after each run, compressed to transitions.
    fn feed(
        t: &mut Tracker,
        from: i64,
        to: i64,
        every: i64,
        bad: impl Fn(i64) -> bool,
        took: impl Fn(i64) -> Duration,
    ) -> Vec<(i64, bool)> {
        let mut out: Vec<(i64, bool)> = Vec::new();
        let mut at = from;
        let mut i = 0;
        while at < to {
            t.add(at, !bad(i), took(i));
            let on = t.evaluate(at);
            if out.last().is_none_or(|(_, o)| *o != on) {
                out.push((at, on));
            }
            at += every;
            i += 1;
        }
        out
    }

    fn fast(_: i64) -> Duration {
        Duration::from_millis(10)
    }

    #[test]
    fn objective_parses_percentages_and_fractions() {
        for (text, want) in [
            ("99.9%", 0.999),
            ("99.9", 0.999),
            ("0.999", 0.999),
            ("95 %", 0.95),
        ] {
            let s: SloSpec = serde_yaml::from_str(&format!("objective: \"{text}\"")).unwrap();
            assert!((s.objective.unwrap().0 - want).abs() < 1e-12, "{text}");
        }
        let s: SloSpec = serde_yaml::from_str("objective: 99.5").unwrap();
        assert!((s.objective.unwrap().0 - 0.995).abs() < 1e-12);
        for bad in ["100%", "0", "-3", "\"lots\""] {
            let e = serde_yaml::from_str::<SloSpec>(&format!("objective: {bad}")).unwrap_err();
            assert!(e.to_string().contains("objective"), "{bad}: {e}");
        }
    }

    #[test]
    fn validation_names_each_problem() {
        let s: SloSpec = serde_yaml::from_str(
            "burn_rates: [{ long: 5m, short: 1h, factor: 0 }]\napdex: { target: 0s, min: 2 }\ntime_scale: 0.5\nmin_runs: 0",
        )
        .unwrap();
        let msgs: Vec<String> = s.validate().into_iter().map(|(_, m)| m).collect();
        let all = msgs.join("\n");
        for want in [
            "burn_rates need an objective",
            "short window (1h) must be shorter than its long window (5m)",
            "factor 0 must be above 0",
            "apdex target must be above 0",
            "apdex min 2 must be above 0",
            "time_scale must be between 1 and 100000",
            "min_runs must be between 1 and 100000",
        ] {
            assert!(all.contains(want), "{want:?} not in:\n{all}");
        }
        let e = serde_yaml::from_str::<SloSpec>("objectiv: 99%").unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
        let none: SloSpec = serde_yaml::from_str("min_runs: 3").unwrap();
        assert!(none.validate()[0].1.contains("needs an objective"));
    }

    #[test]
    fn workbook_rules_are_the_default_and_scale() {
        let s = spec("objective: 99.9%\ntime_scale: 720");
        assert_eq!(s.rules(), workbook_rules());
        // 3 days / 720 = 6 minutes of history.
        assert_eq!(s.history(), Duration::from_secs(360));
        let t = Tracker::new(&s);
        // 5m, 30m, 1h, 6h, 3d: six hours appears twice, one ring each length.
        assert_eq!(t.rings.len(), 5);
        assert_eq!(t.rings[0].len, 300_000 / 720 + 1); // 416.67 rounds up
    }

    #[test]
    fn a_ring_sums_its_window_and_forgets_older_slots() {
        let mut r = Ring::new(1200); // 12 slots of 100 ms
        let one = Counts {
            runs: 1,
            bad: 1,
            ..Counts::default()
        };
        for at in (0..1200).step_by(100) {
            r.add(at, &one);
        }
        assert_eq!(r.sum(1199).runs, 12);
        // 250 ms later, the slots at 0 and 100 (and 200: 1450/100 - 12 = 2) are out.
        assert_eq!(r.sum(1450).runs, 9);
        r.add(1450, &one);
        assert_eq!(r.sum(1450).runs, 10);
        // Long after: nothing.
        assert_eq!(r.sum(10_000).runs, 0);
        // A run from before the newest slot in its place is dropped, not miscounted.
        r.add(10_000, &one);
        r.add(10_000 - 1200, &one);
        assert_eq!(r.sum(10_000).runs, 1);
    }

    /// Wisembly's slow degradation: errors climbing to 2.39% against a 99.9% objective.
    /// The workbook's rules compressed 300× with a run every 100 ms keep as many runs in a
    /// window as a probe every 30 s has in real time (1h -> 12 s: 120 runs; 5m -> 1 s: 10).
    /// The fast rule fires, stays on while the rate holds (no flapping), and clears once the
    /// long window drains.
    #[test]
    fn a_steady_error_rate_fires_once_and_holds_until_the_long_window_drains() {
        let mut t = Tracker::new(&spec(
            "objective: 99.9%\ntime_scale: 300\nburn_rates: [{ long: 1h, short: 5m, factor: 14.4 }]",
        ));
        let calm = feed(&mut t, 0, 20 * S, 100 * MS, |_| false, fast);
        assert_eq!(calm, vec![(0, false)]);
        // 60 s at 2.39%: every 42nd run fails (24.1 s, 28.3 s, ...).
        let storm = feed(&mut t, 20 * S, 80 * S, 100 * MS, |i| i % 42 == 41, fast);
        assert_eq!(storm.len(), 2, "one alert, no flapping: {storm:?}");
        assert!(storm[1].1);
        // One error in 120 runs is 8.3x; the second (28.3 s) makes 16.7x: it fires then.
        assert_eq!(storm[1].0, 28_300, "{storm:?}");
        assert!(t.evaluate(80 * S));
        let why = t.reason(80 * S).unwrap();
        assert!(why.starts_with("error budget burning "), "{why}");
        assert!(why.contains("over 1h and"), "{why}");
        assert!(
            why.contains("(alerts above 14.4x; objective 99.9%)"),
            "{why}"
        );
        assert!(why.ends_with("[time_scale 300]"), "{why}");
        // Healthy again: clears once fewer than two errors are left in the 1h (12 s) window.
        let after = feed(&mut t, 80 * S, 100 * S, 100 * MS, |_| false, fast);
        assert_eq!(after.len(), 2, "{after:?}");
        assert!(!after[1].1 && after[1].0 <= 92 * S, "{after:?}");
    }

    /// With the workbook's three rules: the same, one alert and one clear. The slow-burn
    /// rule (1x over 3d) cannot fire here: its window is not yet covered.
    #[test]
    fn the_workbook_rules_fire_once_and_clear_once() {
        let mut t = Tracker::new(&spec("objective: 99.9%\ntime_scale: 300"));
        feed(&mut t, 0, 20 * S, 100 * MS, |_| false, fast);
        let storm = feed(&mut t, 20 * S, 80 * S, 100 * MS, |i| i % 42 == 41, fast);
        assert_eq!(storm.len(), 2, "{storm:?}");
        let after = feed(&mut t, 80 * S, 100 * S, 100 * MS, |_| false, fast);
        assert_eq!(after.len(), 2, "{after:?}");
        assert!(!after[1].1 && after[1].0 <= 92 * S, "{after:?}");
    }

    /// A single failed run is 1 in 120 in the 1h window: 8.3x, under the fast rule's 14.4x.
    #[test]
    fn a_single_error_does_not_page() {
        let mut t = Tracker::new(&spec("objective: 99.9%\ntime_scale: 300"));
        let runs = feed(&mut t, 0, 31 * S, 100 * MS, |i| i == 300, fast);
        assert_eq!(runs, vec![(0, false)]);
        let f = t.figures(30_900);
        assert!(
            f.burn_rates[0].long > 7.0 && f.burn_rates[0].long < 14.4,
            "{f:?}"
        );
        assert!(f.burn_rates[0].short > 14.4, "{f:?}");
        let rest = feed(&mut t, 31 * S, 60 * S, 100 * MS, |_| false, fast);
        assert_eq!(rest, vec![(31 * S, false)]);
    }

    #[test]
    fn apdex_fires_below_min_and_clears_above_the_midpoint() {
        let mut t = Tracker::new(&spec(
            "apdex: { target: 100ms, min: 0.85, window: 2s }\nmin_runs: 5",
        ));
        // Satisfied.
        assert_eq!(
            feed(&mut t, 0, 5 * S, 100 * MS, |_| false, fast),
            vec![(0, false)]
        );
        // 250 ms: tolerating (<= 400 ms): score 0.5 once the window fills.
        let slow = feed(
            &mut t,
            5 * S,
            10 * S,
            100 * MS,
            |_| false,
            |_| Duration::from_millis(250),
        );
        assert_eq!(slow.len(), 2, "{slow:?}");
        assert!(t.evaluate(10 * S));
        let why = t.reason(10 * S).unwrap();
        assert!(
            why.starts_with("Apdex 0.50 over 2s, below 0.85 (T = 100ms; 0 of "),
            "{why}"
        );
        // Hovering around the threshold does not flap: every 4th run slow gives 0.875,
        // above min (0.85) but below the clear mark (0.925).
        let hover = feed(
            &mut t,
            10 * S,
            20 * S,
            100 * MS,
            |_| false,
            |i| Duration::from_millis(if i % 4 == 0 { 250 } else { 10 }),
        );
        assert_eq!(hover, vec![(10 * S, true)], "stays on");
        // Fast again: clears.
        let ok = feed(&mut t, 20 * S, 25 * S, 100 * MS, |_| false, fast);
        assert_eq!(ok.len(), 2, "{ok:?}");
        // Failures are frustrated.
        t.reset();
        let failing = feed(&mut t, 30 * S, 33 * S, 100 * MS, |i| i % 2 == 0, fast);
        assert!(failing.last().unwrap().1, "{failing:?}");
    }

    #[test]
    fn too_few_runs_never_alert() {
        let mut t = Tracker::new(&spec(
            "objective: 99%\nmin_runs: 10\ntime_scale: 3600\nburn_rates: [{ long: 1h, short: 5m, factor: 14.4 }]",
        ));
        // 1h -> 1 s; runs every 200 ms: 5 in the window, under min_runs, all failing.
        let runs = feed(&mut t, 0, 10 * S, 200 * MS, |_| true, fast);
        assert_eq!(runs, vec![(0, false)]);
    }

    #[test]
    fn figures_report_each_rule() {
        let mut t = Tracker::new(&spec(
            "objective: 99%\nburn_rates: [{ long: 10s, short: 1s, factor: 2 }]\napdex: { target: 50ms }",
        ));
        feed(&mut t, 0, 10 * S, 100 * MS, |i| i % 10 == 0, fast);
        let f = t.figures(10 * S - 100);
        assert_eq!(f.objective, Some(99.0));
        assert_eq!(f.burn_rates.len(), 1);
        assert_eq!(f.burn_rates[0].windows, "10s/1s");
        assert!((f.burn_rates[0].long - 10.0).abs() < 1.5, "{f:?}");
        assert!(f.burn_rates[0].firing);
        assert!(f.alert.is_some());
        assert_eq!(f.apdex, Some(0.9));
    }

    #[test]
    fn an_alert_carries_its_rules_severity() {
        let mut t = Tracker::new(&spec(
            "objective: 99%\nburn_rates: [{ long: 10s, short: 1s, factor: 2, severity: warning }]\napdex: { target: 50ms, severity: info }",
        ));
        assert_eq!(t.severity(), None);
        feed(&mut t, 0, 11 * S, 100 * MS, |i| i % 10 == 0, fast);
        assert!(t.evaluate(11 * S));
        assert_eq!(t.severity(), Some("warning"));
        // The workbook's slow burn is a ticket; the fast rules take the probe's severity.
        let w = workbook_rules();
        assert_eq!(
            w.iter().map(|r| r.severity.as_deref()).collect::<Vec<_>>(),
            [None, None, Some("warning")]
        );
        let mut a = Tracker::new(&spec("apdex: { target: 50ms, window: 2s, severity: info }"));
        feed(
            &mut a,
            0,
            3 * S,
            100 * MS,
            |_| false,
            |_| Duration::from_millis(500),
        );
        assert!(a.evaluate(3 * S - 100));
        assert_eq!(a.severity(), Some("info"));
    }
}
