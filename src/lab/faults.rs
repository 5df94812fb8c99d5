//! What the lab does wrong ([`Faults`], the JSON of `/_lab/faults`), and the decision taken
//! for each request ([`Engine::plan`]).
//!
//! Everything that is a count (errors at a rate, spikes every N requests, growing bodies) is
//! deterministic, so a short test sees the exact figure: an error rate of 2.39% serves
//! exactly 239 errors over 10,000 requests, spread evenly (an accumulator, not a coin).

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use tokio::time::Instant;

use crate::units::{ByteSize, Dur};

/// One in a billion: the unit of [`Rate`].
const BILLION: u64 = 1_000_000_000;

/// Every fault, as set through [`super::LabHandle`] or `POST /_lab/faults`. The default is
/// a healthy target serving build `A`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Added before every answer (errors included; not the control API, not websockets).
    pub latency: Latency,
    /// Errors at a set rate.
    pub errors: Errors,
    /// Requests that are read and never answered.
    pub hang: Hang,
    /// Response body size: fixed, or growing with each request.
    pub body: Body,
    /// The build this target serves: the `x-build` header of every answer and
    /// `GET /version` (`{"build":"A"}`).
    pub build: String,
    /// Listen addresses that serve another build (a CDN edge serving a stale bundle).
    pub stale: Stale,
    /// The websocket endpoint's faults.
    pub websocket: WsFaults,
}

impl Default for Faults {
    fn default() -> Faults {
        Faults {
            latency: Latency::default(),
            errors: Errors::default(),
            hang: Hang::Off,
            body: Body::default(),
            build: "A".into(),
            stale: Stale::default(),
            websocket: WsFaults::default(),
        }
    }
}

/// Latency: `base + creep(t) + spike`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Latency {
    /// Fixed delay before every answer.
    pub base: Dur,
    /// Added on top of `base`, moving linearly from `from` to `to` over `over` (counted from
    /// when the creep was set), then staying at `to`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub creep: Option<Creep>,
    /// Occasional extra delay.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spikes: Option<Spikes>,
}

/// A latency that creeps from `from` to `to` over `over`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Creep {
    pub from: Dur,
    pub to: Dur,
    pub over: Dur,
}

impl Creep {
    /// The creep `elapsed` after it was set: linear from `from` to `to`, then `to`.
    pub fn at(&self, elapsed: Duration) -> Duration {
        let t = (elapsed.as_secs_f64() / self.over.0.as_secs_f64()).min(1.0);
        let (a, b) = (self.from.0.as_secs_f64(), self.to.0.as_secs_f64());
        Duration::from_secs_f64((a + (b - a) * t).max(0.0))
    }
}

/// Spikes of `add`: on every `every`th request (counted from when the spikes were set), or
/// with `probability` (random, each request), or both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spikes {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<Rate>,
    pub add: Dur,
}

/// Errors: `rate` of the requests (spread evenly, exact) are answered with `status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Errors {
    pub rate: Rate,
    pub status: u16,
}

impl Default for Errors {
    fn default() -> Errors {
        Errors {
            rate: Rate::ZERO,
            status: 500,
        }
    }
}

/// Which requests hang: read in full, then never answered (until the client gives up or
/// the lab stops).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Hang {
    #[default]
    Off,
    /// Every request (websocket upgrades and the control API excepted).
    All,
    /// Writes only (any method but GET, HEAD, OPTIONS): reads pass, writes are stuck, as in
    /// the Exalate postmortem.
    Writes,
}

/// Body size of ordinary answers (not `/version`, not errors). The `n`th answer since this
/// was set (from 0) is `bytes + growth × n` bytes long, at least the natural body; it is
/// streamed from a shared buffer, never allocated whole.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Body {
    pub bytes: ByteSize,
    pub growth: ByteSize,
}

/// Listen addresses (`127.0.0.2`, or with the port, `127.0.0.2:8080`) that serve `build`
/// instead of the lab's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Stale {
    pub addrs: Vec<String>,
    pub build: String,
}

impl Default for Stale {
    fn default() -> Stale {
        Stale {
            addrs: Vec::new(),
            build: "B".into(),
        }
    }
}

/// The websocket endpoint (any path, on an `Upgrade: websocket` request; it speaks Phoenix
/// Channels v2 and v1 and echoes other text frames).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WsFaults {
    /// Refuse the upgrade itself with this HTTP status (e.g. 503).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upgrade_status: Option<u16>,
    /// `ok`, or `refuse`: every `phx_join` is answered `{"status":"error"}` with `reason`.
    pub join: Join,
    /// The refusal's reason. Default: `lab: join refused`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Wait before each join reply.
    pub join_delay: Dur,
    /// Extra wait before each join reply for every join in flight at that moment (itself
    /// included): joins get slower as more arrive at once, like a reconnect storm's
    /// compute-heavy handshakes.
    pub join_cost: Dur,
}

/// How joins are answered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Join {
    #[default]
    Ok,
    Refuse,
}

impl WsFaults {
    pub(crate) fn refuse_reason(&self) -> String {
        self.reason
            .clone()
            .unwrap_or_else(|| "lab: join refused".into())
    }
}

/// A rate: written `"2.39%"` or as a fraction (`0.0239`); kept in parts per billion.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rate(u64);

impl Rate {
    pub const ZERO: Rate = Rate(0);

    /// Parts per billion.
    pub fn ppb(self) -> u64 {
        self.0
    }

    /// A fraction, 0 to 1.
    pub fn from_fraction(f: f64) -> Result<Rate, String> {
        if !f.is_finite() || !(0.0..=1.0).contains(&f) {
            return Err(format!(
                "invalid rate {f}: a fraction from 0 to 1, or a percentage such as \"2.39%\""
            ));
        }
        Ok(Rate((f * BILLION as f64).round() as u64))
    }

    /// A fraction of 1.
    pub fn as_fraction(self) -> f64 {
        self.0 as f64 / BILLION as f64
    }
}

impl std::str::FromStr for Rate {
    type Err = String;
    /// `"2.39%"`, `"0.0812 %"`, or a fraction `"0.0239"`.
    fn from_str(s: &str) -> Result<Rate, String> {
        let t = s.trim();
        let (num, percent) = match t.strip_suffix('%') {
            Some(n) => (n.trim(), true),
            None => (t, false),
        };
        let n: f64 = num
            .parse()
            .map_err(|_| format!("invalid rate {s:?} (write e.g. \"2.39%\" or 0.0239)"))?;
        Rate::from_fraction(if percent { n / 100.0 } else { n })
            .map_err(|_| format!("invalid rate {s:?}: must be from 0% to 100%"))
    }
}

impl fmt::Display for Rate {
    /// As a percentage, without trailing zeros: `2.39%`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // ppb / 10^7 is the percentage; seven decimals are exact.
        let whole = self.0 / 10_000_000;
        let frac = self.0 % 10_000_000;
        if frac == 0 {
            write!(f, "{whole}%")
        } else {
            let digits = format!("{frac:07}");
            write!(f, "{whole}.{}%", digits.trim_end_matches('0'))
        }
    }
}

impl Serialize for Rate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Rate, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Rate;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a rate such as \"2.39%\" or a fraction such as 0.0239")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Rate, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Rate, E> {
                Rate::from_fraction(v).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Rate, E> {
                Rate::from_fraction(v as f64).map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Rate, E> {
                Rate::from_fraction(v as f64).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl Faults {
    /// What serde cannot check.
    pub fn validate(&self) -> Result<(), String> {
        let status = |what: &str, code: u16, lo: u16| {
            if (lo..=599).contains(&code) {
                Ok(())
            } else {
                Err(format!(
                    "{what}: {code} is not an HTTP status from {lo} to 599"
                ))
            }
        };
        status("errors.status", self.errors.status, 200)?;
        if let Some(code) = self.websocket.upgrade_status {
            status("websocket.upgrade_status", code, 200)?;
            if code < 300 {
                return Err(
                    "websocket.upgrade_status: a refusal is 300 to 599 (leave it out to accept)"
                        .into(),
                );
            }
        }
        if let Some(c) = &self.latency.creep
            && c.over.0.is_zero()
        {
            return Err("latency.creep.over: must be more than 0s".into());
        }
        if let Some(s) = &self.latency.spikes {
            if s.every == Some(0) {
                return Err("latency.spikes.every: must be at least 1".into());
            }
            if s.every.is_none() && s.probability.is_none() {
                return Err("latency.spikes: needs every, probability or both".into());
            }
        }
        let header = |what: &str, v: &str| {
            if v.is_empty() || http::HeaderValue::from_str(v).is_err() {
                Err(format!("{what}: {v:?} is not a usable header value"))
            } else {
                Ok(())
            }
        };
        header("build", &self.build)?;
        header("stale.build", &self.stale.build)?;
        for a in &self.stale.addrs {
            if a.parse::<SocketAddr>().is_err() && a.parse::<std::net::IpAddr>().is_err() {
                return Err(format!(
                    "stale.addrs: {a:?} is not an address (write 127.0.0.2 or 127.0.0.2:8080)"
                ));
            }
        }
        Ok(())
    }

    /// Applies an RFC 7386 JSON merge patch (objects merge, `null` removes, anything else
    /// replaces) and checks the result.
    pub fn patched(&self, patch: &serde_json::Value) -> Result<Faults, String> {
        let mut doc = serde_json::to_value(self).map_err(|e| e.to_string())?;
        merge(&mut doc, patch);
        let f: Faults = serde_path_to_error::deserialize(doc).map_err(|e| {
            let path = e.path().to_string();
            if path == "." {
                e.into_inner().to_string()
            } else {
                format!("{path}: {}", e.into_inner())
            }
        })?;
        f.validate()?;
        Ok(f)
    }

    /// The build served on `local`.
    pub fn build_for(&self, local: SocketAddr) -> &str {
        let stale = self.stale.addrs.iter().any(|a| {
            a.parse::<SocketAddr>().is_ok_and(|s| s == local)
                || a.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip == local.ip())
        });
        if stale {
            &self.stale.build
        } else {
            &self.build
        }
    }
}

/// RFC 7386.
fn merge(target: &mut serde_json::Value, patch: &serde_json::Value) {
    use serde_json::Value;
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    let t = target.as_object_mut().expect("made an object");
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// What to do with one request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Plan {
    /// Read it, never answer.
    Hang,
    Answer {
        delay: Duration,
        /// Answer with this status instead.
        error: Option<u16>,
        /// Body length wanted (0: the natural body).
        body: u64,
        build: String,
    },
}

/// The faults and the state they count with. Each counter restarts when its section of
/// the faults changes.
pub(crate) struct Engine {
    pub(crate) faults: Faults,
    creep_since: Instant,
    /// Requests since the spikes were set.
    spike_n: u64,
    /// Error accumulator, ppb: every request adds the rate; past a billion is an error.
    error_acc: u64,
    /// Answers with a body since the body fault was set.
    body_n: u64,
}

impl Engine {
    pub(crate) fn new(faults: Faults) -> Engine {
        Engine {
            faults,
            creep_since: Instant::now(),
            spike_n: 0,
            error_acc: 0,
            body_n: 0,
        }
    }

    pub(crate) fn set(&mut self, new: Faults) {
        let old = &self.faults;
        if new.latency.creep != old.latency.creep {
            self.creep_since = Instant::now();
        }
        if new.latency.spikes != old.latency.spikes {
            self.spike_n = 0;
        }
        if new.errors != old.errors {
            self.error_acc = 0;
        }
        if new.body != old.body {
            self.body_n = 0;
        }
        self.faults = new;
    }

    /// The latency an answer given now gets (no spike).
    pub(crate) fn latency_now(&self) -> Duration {
        let l = &self.faults.latency;
        let mut d = l.base.0;
        if let Some(c) = &l.creep {
            d += c.at(self.creep_since.elapsed());
        }
        d
    }

    /// Decides one request. `write`: a method other than GET, HEAD, OPTIONS; `version`:
    /// the `/version` path (its body is never padded).
    pub(crate) fn plan(&mut self, local: SocketAddr, write: bool, version: bool) -> Plan {
        match self.faults.hang {
            Hang::All => return Plan::Hang,
            Hang::Writes if write => return Plan::Hang,
            _ => {}
        }
        let mut delay = self.latency_now();
        if let Some(s) = &self.faults.latency.spikes {
            self.spike_n += 1;
            let every = s.every.is_some_and(|n| self.spike_n % n == 0);
            let chance = s
                .probability
                .is_some_and(|p| p.ppb() > 0 && rand::random::<f64>() < p.as_fraction());
            if every || chance {
                delay += s.add.0;
            }
        }
        let rate = self.faults.errors.rate.ppb();
        let mut error = None;
        if rate > 0 {
            self.error_acc += rate;
            if self.error_acc >= BILLION {
                self.error_acc -= BILLION;
                error = Some(self.faults.errors.status);
            }
        }
        let mut body = 0;
        if error.is_none() && !version {
            let b = &self.faults.body;
            body = b
                .bytes
                .0
                .saturating_add(b.growth.0.saturating_mul(self.body_n));
            self.body_n += 1;
        }
        Plan::Answer {
            delay,
            error,
            body,
            build: self.faults.build_for(local).to_owned(),
        }
    }
}
