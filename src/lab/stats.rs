//! What the lab saw: counters, gauges and per-second rates (`GET /_lab/stats`).

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// Seconds of per-second history kept.
const KEEP: usize = 120;
/// Seconds of per-second history shown (`recent`).
const SHOW: u64 = 10;
/// Most source addresses counted apart (`by_peer`); clients from further ones are counted
/// in the totals only, so a flood of sources cannot grow the lab's memory.
pub const MAX_PEERS: usize = 64;

/// What is counted per second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Per {
    Connections = 0,
    Requests = 1,
    Upgrades = 2,
    Joins = 3,
}

const PER: [(Per, &str); 4] = [
    (Per::Connections, "connections"),
    (Per::Requests, "requests"),
    (Per::Upgrades, "upgrades"),
    (Per::Joins, "joins"),
];

/// A snapshot of the lab's counters (since start or the last reset) and gauges (now).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Since the lab started (not reset).
    pub uptime_ms: u64,
    /// TCP connections accepted (control API included).
    pub connections: u64,
    /// Requests to the target (not the control API, not websocket upgrades).
    pub requests: u64,
    /// Injected errors served.
    pub errors: u64,
    /// Requests that were hung.
    pub hangs: u64,
    /// Requests hanging now (gauge).
    pub hanging: u64,
    /// Body bytes of target answers handed to the connections.
    pub bytes_sent: u64,
    /// Length of the largest body answered.
    pub largest_body: u64,
    /// Target answers (requests not hung) by build served.
    pub by_build: BTreeMap<String, u64>,
    /// Target requests by local address.
    pub by_addr: BTreeMap<String, u64>,
    /// By source address (the client's IP, at most [`MAX_PEERS`] of them): who brings the
    /// load. A client that binds its own loopback address (127.0.0.x) is told apart this way,
    /// e.g. a reconnect storm ([`super::storm`]) from the prober watching through it.
    pub by_peer: BTreeMap<String, PeerStats>,
    pub websockets: WsStats,
    /// `connections`, `requests`, `upgrades`, `joins`, per second.
    pub per_second: BTreeMap<String, PerSecond>,
}

/// Websocket counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WsStats {
    /// Open now (gauge).
    pub open: u64,
    /// Upgrade requests (connection attempts), refused ones included.
    pub upgrades: u64,
    pub upgrades_refused: u64,
    /// `phx_join` frames received, and how they were answered (a join dropped before its
    /// reply is neither).
    pub joins: u64,
    pub joins_ok: u64,
    pub joins_refused: u64,
    /// Drop-all events.
    pub drops: u64,
    /// Sockets closed by them.
    pub dropped: u64,
    /// Since the last drop-all: the reconnect storm.
    pub since_drop: SinceDrop,
}

/// Reconnects after a drop-all.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SinceDrop {
    pub upgrades: u64,
    pub joins: u64,
    /// Milliseconds since the last drop-all (absent before the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ms: Option<u64>,
}

/// What one source address brought (since start or the last reset).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PeerStats {
    pub connections: u64,
    pub requests: u64,
    pub upgrades: u64,
    pub joins: u64,
    /// `connections`, `requests`, `upgrades`, `joins`, per second, from this address.
    pub per_second: BTreeMap<String, PerSecond>,
}

/// One per-second rate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PerSecond {
    /// The current second so far.
    pub now: u64,
    /// The last complete second.
    pub last: u64,
    /// The busiest second since the last reset.
    pub peak: u64,
    /// The last 10 seconds, oldest first, the current one last.
    pub recent: Vec<u64>,
}

/// The live counters.
#[derive(Default)]
pub(crate) struct Counters {
    pub connections: AtomicU64,
    pub requests: AtomicU64,
    pub errors: AtomicU64,
    pub hangs: AtomicU64,
    pub hanging: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub largest_body: AtomicU64,
    pub ws_open: AtomicU64,
    pub upgrades: AtomicU64,
    pub upgrades_refused: AtomicU64,
    pub joins: AtomicU64,
    pub joins_ok: AtomicU64,
    pub joins_refused: AtomicU64,
    pub joins_in_flight: AtomicU64,
    pub drops: AtomicU64,
    pub dropped: AtomicU64,
    pub upgrades_since_drop: AtomicU64,
    pub joins_since_drop: AtomicU64,
}

/// Counts per second of each [`Per`], the last [`KEEP`] seconds, and the busiest second.
#[derive(Default)]
struct Series {
    /// (second since start, counts by [`Per`]), oldest first.
    buckets: VecDeque<(u64, [u64; 4])>,
    peak: [u64; 4],
    /// Since start or the last reset.
    total: [u64; 4],
}

impl Series {
    fn add(&mut self, sec: u64, what: Per) {
        if self.buckets.back().is_none_or(|(s, _)| *s != sec) {
            self.buckets.push_back((sec, [0; 4]));
            while self.buckets.len() > KEEP {
                self.buckets.pop_front();
            }
        }
        let i = what as usize;
        let b = &mut self.buckets.back_mut().expect("pushed").1;
        b[i] += 1;
        self.peak[i] = self.peak[i].max(b[i]);
        self.total[i] += 1;
    }

    /// The rates as seen in second `sec`.
    fn rates(&self, sec: u64) -> BTreeMap<String, PerSecond> {
        let count = |s: u64, i: usize| {
            self.buckets
                .iter()
                .rev()
                .find(|(b, _)| *b == s)
                .map_or(0, |(_, n)| n[i])
        };
        PER.iter()
            .map(|(p, name)| {
                let i = *p as usize;
                let recent = (sec.saturating_sub(SHOW - 1)..=sec)
                    .map(|s| count(s, i))
                    .collect();
                let rate = PerSecond {
                    now: count(sec, i),
                    last: sec.checked_sub(1).map_or(0, |s| count(s, i)),
                    peak: self.peak[i],
                    recent,
                };
                (name.to_string(), rate)
            })
            .collect()
    }
}

/// Per-second series and the maps.
struct Window {
    all: Series,
    /// By source address, at most [`MAX_PEERS`].
    peers: BTreeMap<IpAddr, Series>,
    by_build: BTreeMap<String, u64>,
    by_addr: BTreeMap<String, u64>,
    last_drop: Option<Instant>,
}

pub(crate) struct Recorder {
    pub c: Counters,
    started: Instant,
    w: Mutex<Window>,
}

pub(crate) fn add(a: &AtomicU64, n: u64) {
    a.fetch_add(n, Ordering::Relaxed);
}

fn get(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

/// Decrements a gauge when dropped.
pub(crate) struct Gauge<'a>(&'a AtomicU64);

impl<'a> Gauge<'a> {
    pub(crate) fn up(a: &'a AtomicU64) -> Gauge<'a> {
        a.fetch_add(1, Ordering::Relaxed);
        Gauge(a)
    }
}

impl Drop for Gauge<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Recorder {
    pub(crate) fn new() -> Recorder {
        Recorder {
            c: Counters::default(),
            started: Instant::now(),
            w: Mutex::new(Window {
                all: Series::default(),
                peers: BTreeMap::new(),
                by_build: BTreeMap::new(),
                by_addr: BTreeMap::new(),
                last_drop: None,
            }),
        }
    }

    fn window(&self) -> std::sync::MutexGuard<'_, Window> {
        self.w.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn second(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// Counts one event from `peer` in the current second.
    pub(crate) fn per(&self, what: Per, peer: IpAddr) {
        let sec = self.second();
        let mut w = self.window();
        w.all.add(sec, what);
        let tracked = w.peers.len() < MAX_PEERS || w.peers.contains_key(&peer);
        if tracked {
            w.peers.entry(peer).or_default().add(sec, what);
        }
    }

    /// A target request from `peer` on `local`.
    pub(crate) fn request(&self, local: std::net::SocketAddr, peer: IpAddr) {
        add(&self.c.requests, 1);
        self.per(Per::Requests, peer);
        *self.window().by_addr.entry(local.to_string()).or_default() += 1;
    }

    /// An answer of `build` (not hung).
    pub(crate) fn answered(&self, build: &str) {
        *self.window().by_build.entry(build.to_owned()).or_default() += 1;
    }

    pub(crate) fn body(&self, len: u64) {
        self.c.largest_body.fetch_max(len, Ordering::Relaxed);
    }

    /// A drop-all: the reconnect counters start over.
    pub(crate) fn drop_all(&self) {
        add(&self.c.drops, 1);
        self.c.upgrades_since_drop.store(0, Ordering::Relaxed);
        self.c.joins_since_drop.store(0, Ordering::Relaxed);
        self.window().last_drop = Some(Instant::now());
    }

    /// Counters, maps and per-second history back to zero; gauges stay.
    pub(crate) fn reset(&self) {
        let c = &self.c;
        for a in [
            &c.connections,
            &c.requests,
            &c.errors,
            &c.hangs,
            &c.bytes_sent,
            &c.largest_body,
            &c.upgrades,
            &c.upgrades_refused,
            &c.joins,
            &c.joins_ok,
            &c.joins_refused,
            &c.drops,
            &c.dropped,
            &c.upgrades_since_drop,
            &c.joins_since_drop,
        ] {
            a.store(0, Ordering::Relaxed);
        }
        let mut w = self.window();
        w.all = Series::default();
        w.peers.clear();
        w.by_build.clear();
        w.by_addr.clear();
        w.last_drop = None;
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let c = &self.c;
        let sec = self.second();
        let w = self.window();
        let per_second = w.all.rates(sec);
        let by_peer = w
            .peers
            .iter()
            .map(|(ip, s)| {
                let t = |p: Per| s.total[p as usize];
                let peer = PeerStats {
                    connections: t(Per::Connections),
                    requests: t(Per::Requests),
                    upgrades: t(Per::Upgrades),
                    joins: t(Per::Joins),
                    per_second: s.rates(sec),
                };
                (ip.to_string(), peer)
            })
            .collect();
        Stats {
            uptime_ms: self.started.elapsed().as_millis() as u64,
            connections: get(&c.connections),
            requests: get(&c.requests),
            errors: get(&c.errors),
            hangs: get(&c.hangs),
            hanging: get(&c.hanging),
            bytes_sent: get(&c.bytes_sent),
            largest_body: get(&c.largest_body),
            by_build: w.by_build.clone(),
            by_addr: w.by_addr.clone(),
            by_peer,
            websockets: WsStats {
                open: get(&c.ws_open),
                upgrades: get(&c.upgrades),
                upgrades_refused: get(&c.upgrades_refused),
                joins: get(&c.joins),
                joins_ok: get(&c.joins_ok),
                joins_refused: get(&c.joins_refused),
                drops: get(&c.drops),
                dropped: get(&c.dropped),
                since_drop: SinceDrop {
                    upgrades: get(&c.upgrades_since_drop),
                    joins: get(&c.joins_since_drop),
                    ms: w.last_drop.map(|t| t.elapsed().as_millis() as u64),
                },
            },
            per_second,
        }
    }
}
