//! Reconnect-storm clients: many websocket clients that connect to the lab, join a Phoenix
//! channel, hold the socket, and when it is dropped reconnect and rejoin, either at once
//! (the clients of the MURAL 2018 postmortem, every one back at the same moment, retrying
//! as soon as a join times out) or with exponential backoff and full jitter (what that
//! postmortem promised instead).
//!
//! Bounded in count and in time: connection attempts of all clients together stop at
//! [`StormConfig::max_connects`], and every client stops [`StormConfig::max_duration`] after
//! the start, when [`Storm::stop`] is called, or when the [`Storm`] is dropped.
//!
//! **Telling the storm's load from the prober's.** Each client binds its socket to
//! [`StormConfig::source`] before connecting, another loopback address (127.0.0.x, all of
//! 127/8 is local on Linux), and the lab counts connections, upgrades and joins per source
//! address ([`super::Stats::by_peer`], with per-second rates). The prober under test
//! connects from the address the kernel picks, 127.0.0.1, so its own load is read off the
//! same lab, under the same join contention, without a second lab or any marking of the
//! traffic itself.
//!
//! What the clients saw is counted ([`StormStats`]): connection attempts, joins accepted,
//! refused or failed (timed out included), drops, clients joined now, and join latency
//! percentiles (from sending `phx_join` to its `ok` reply).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use serde::Serialize;
use serde_json::Value;
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Most clients one storm may run.
pub const MAX_CLIENTS: usize = 5_000;
/// Longest a storm may run.
pub const MAX_DURATION: Duration = Duration::from_secs(600);

/// How a client comes back after its socket is dropped or its join fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconnect {
    /// At once, and again at once after every failure: synchronized load.
    Immediately,
    /// After the `n`th failure in a row (0 after a drop of a joined socket), a random wait
    /// in `[0, min(max, base × 2^n))`: exponential backoff with full jitter.
    Backoff { base: Duration, max: Duration },
}

impl Reconnect {
    /// The wait before the next connect, after `failures` failures in a row.
    fn delay(&self, failures: u32) -> Duration {
        match *self {
            Reconnect::Immediately => Duration::ZERO,
            Reconnect::Backoff { base, max } => {
                let cap = base
                    .saturating_mul(1u32.checked_shl(failures.min(30)).unwrap_or(u32::MAX))
                    .min(max);
                if cap.is_zero() {
                    return Duration::ZERO;
                }
                let nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
                Duration::from_nanos(rand::rng().random_range(0..nanos))
            }
        }
    }
}

/// A storm's settings.
#[derive(Debug, Clone)]
pub struct StormConfig {
    /// The lab address every client connects to.
    pub target: SocketAddr,
    /// Path and query of the upgrade. Default: `/socket/websocket?vsn=2.0.0`.
    pub path: String,
    /// The Phoenix topic joined (v2 serializer). Default: `room:lobby`.
    pub topic: String,
    /// How many clients. At most [`MAX_CLIENTS`].
    pub clients: usize,
    /// Local address each client binds before connecting (e.g. 127.0.0.77), so the lab
    /// counts the storm apart from other clients. `None`: the kernel picks.
    pub source: Option<IpAddr>,
    pub reconnect: Reconnect,
    /// How long a client waits for its connect and upgrade, then for its join reply, before
    /// giving up and reconnecting (a browser's join timeout). Default: 5 s.
    pub timeout: Duration,
    /// Connection attempts of all clients together; once spent, no client reconnects.
    /// Default: four per client.
    pub max_connects: u64,
    /// Every client stops this long after the start. Default: 30 s, at most
    /// [`MAX_DURATION`].
    pub max_duration: Duration,
    /// The clients' first connects, spread evenly over this from the start (users arriving
    /// over time, before the storm). Default: 0, all at once.
    pub ramp: Duration,
}

impl StormConfig {
    /// `clients` clients on `target`, reconnecting at once, with the defaults above.
    pub fn new(target: SocketAddr, clients: usize) -> StormConfig {
        StormConfig {
            target,
            path: "/socket/websocket?vsn=2.0.0".into(),
            topic: "room:lobby".into(),
            clients,
            source: None,
            reconnect: Reconnect::Immediately,
            timeout: Duration::from_secs(5),
            max_connects: 4 * clients as u64,
            max_duration: Duration::from_secs(30),
            ramp: Duration::ZERO,
        }
    }

    /// Every problem with these settings.
    pub fn validate(&self) -> Result<(), String> {
        let mut errs = Vec::new();
        if self.clients == 0 || self.clients > MAX_CLIENTS {
            errs.push(format!("clients: {} (1 to {MAX_CLIENTS})", self.clients));
        }
        if self.max_duration.is_zero() || self.max_duration > MAX_DURATION {
            errs.push(format!(
                "max_duration: {:?} (more than 0, at most {MAX_DURATION:?})",
                self.max_duration
            ));
        }
        if self.ramp >= self.max_duration && !self.max_duration.is_zero() {
            errs.push(format!(
                "ramp: {:?} must be shorter than max_duration ({:?})",
                self.ramp, self.max_duration
            ));
        }
        if self.timeout.is_zero() {
            errs.push("timeout: must be more than 0".into());
        }
        if !self.path.starts_with('/') {
            errs.push(format!("path: {:?} must start with /", self.path));
        }
        if let (Some(src), t) = (self.source, self.target)
            && src.is_ipv4() != t.is_ipv4()
        {
            errs.push(format!("source: {src} is not of the target's family ({t})"));
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs.join("; "))
        }
    }
}

/// Join latency percentiles (nearest rank) over the joins accepted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Latencies {
    pub count: usize,
    pub p50: Duration,
    pub p95: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Latencies {
    fn of(mut times: Vec<Duration>) -> Latencies {
        if times.is_empty() {
            return Latencies::default();
        }
        times.sort();
        let at = |p: usize| {
            let rank = (times.len() * p).div_ceil(100).max(1);
            times[rank.min(times.len()) - 1]
        };
        Latencies {
            count: times.len(),
            p50: at(50),
            p95: at(95),
            p99: at(99),
            max: times[times.len() - 1],
        }
    }
}

impl std::fmt::Display for Latencies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: Duration| d.as_millis();
        write!(
            f,
            "{} joins: p50 {}ms, p95 {}ms, p99 {}ms, max {}ms",
            self.count,
            ms(self.p50),
            ms(self.p95),
            ms(self.p99),
            ms(self.max)
        )
    }
}

/// What a storm's clients saw, since it started.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StormStats {
    /// Connection attempts (each a fresh TCP connection and upgrade).
    pub connects: u64,
    /// Attempts that did not reach a websocket (connect or upgrade failed or timed out).
    pub connects_failed: u64,
    pub joins_ok: u64,
    /// Joins answered `error`.
    pub joins_refused: u64,
    /// Joins without an answer: timed out, or the socket ended first.
    pub joins_failed: u64,
    /// Of `joins_failed`, those the client gave up on (timeout).
    pub joins_timed_out: u64,
    /// Joined sockets the server ended (a drop-all).
    pub drops: u64,
    /// Clients joined now.
    pub joined: u64,
    /// Connection attempts left in the budget.
    pub budget_left: u64,
    /// Join latency (phx_join sent to its ok reply).
    pub join: Latencies,
}

/// The clients' shared state.
struct Inner {
    cfg: StormConfig,
    token: CancellationToken,
    /// When every client stops.
    end: Instant,
    budget: AtomicU64,
    connects: AtomicU64,
    connects_failed: AtomicU64,
    joins_ok: AtomicU64,
    joins_refused: AtomicU64,
    joins_failed: AtomicU64,
    joins_timed_out: AtomicU64,
    drops: AtomicU64,
    joined: AtomicU64,
    /// (when the join was sent, how long its ok reply took); at most `max_connects` long.
    latencies: Mutex<Vec<(Instant, Duration)>>,
}

fn add(a: &AtomicU64) {
    a.fetch_add(1, Ordering::Relaxed);
}

fn get(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

impl Inner {
    /// Takes one connection attempt from the budget; false when it is spent.
    fn spend(&self) -> bool {
        self.budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1))
            .is_ok()
    }

    /// Sleeps `d`, or less when cancelled or the storm's end comes first; false then.
    async fn wait(&self, d: Duration) -> bool {
        let until = (Instant::now() + d).min(self.end);
        tokio::select! {
            _ = self.token.cancelled() => false,
            _ = tokio::time::sleep_until(until) => Instant::now() < self.end,
        }
    }
}

/// A running storm. Dropping it stops every client (their sockets close with their tasks).
pub struct Storm {
    inner: Arc<Inner>,
    tasks: TaskTracker,
    started: Instant,
}

/// How one connection of a client ended.
enum Ended {
    /// Joined, then the server ended the socket.
    Dropped,
    /// Never joined.
    Failed,
    /// The storm is over.
    Stopped,
}

impl Storm {
    /// Starts `cfg.clients` clients at once on the current runtime.
    pub fn start(cfg: StormConfig) -> Result<Storm, String> {
        cfg.validate()?;
        let started = Instant::now();
        let inner = Arc::new(Inner {
            end: started + cfg.max_duration,
            budget: AtomicU64::new(cfg.max_connects),
            token: CancellationToken::new(),
            connects: AtomicU64::new(0),
            connects_failed: AtomicU64::new(0),
            joins_ok: AtomicU64::new(0),
            joins_refused: AtomicU64::new(0),
            joins_failed: AtomicU64::new(0),
            joins_timed_out: AtomicU64::new(0),
            drops: AtomicU64::new(0),
            joined: AtomicU64::new(0),
            latencies: Mutex::new(Vec::new()),
            cfg,
        });
        let tasks = TaskTracker::new();
        let n = inner.cfg.clients as u32;
        for i in 0..n {
            let first = inner.cfg.ramp.mul_f64(f64::from(i) / f64::from(n));
            tasks.spawn(client(inner.clone(), first));
        }
        tasks.close();
        Ok(Storm {
            inner,
            tasks,
            started,
        })
    }

    /// Counters now; join latencies of every join.
    pub fn stats(&self) -> StormStats {
        self.stats_since(self.started)
    }

    /// Counters now (since the start); join latencies of the joins sent at or after `t`.
    pub fn stats_since(&self, t: Instant) -> StormStats {
        let i = &self.inner;
        let times = i
            .latencies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(at, _)| *at >= t)
            .map(|(_, d)| *d)
            .collect();
        StormStats {
            connects: get(&i.connects),
            connects_failed: get(&i.connects_failed),
            joins_ok: get(&i.joins_ok),
            joins_refused: get(&i.joins_refused),
            joins_failed: get(&i.joins_failed),
            joins_timed_out: get(&i.joins_timed_out),
            drops: get(&i.drops),
            joined: get(&i.joined),
            budget_left: get(&i.budget),
            join: Latencies::of(times),
        }
    }

    /// Waits (polling every 10 ms, at most `limit`) until `n` clients are joined at once;
    /// the stats then, or the stats at the limit as the error.
    pub async fn until_joined(&self, n: u64, limit: Duration) -> Result<StormStats, StormStats> {
        let t = Instant::now();
        loop {
            let s = self.stats();
            if s.joined >= n {
                return Ok(s);
            }
            if t.elapsed() >= limit || self.tasks.is_empty() {
                return Err(s);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// True once every client has stopped (budget spent, time up, or stopped).
    pub fn is_over(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Stops every client, waits for them to close their sockets, and returns the stats.
    pub async fn stop(self) -> StormStats {
        self.inner.token.cancel();
        self.tasks.wait().await;
        self.stats()
    }
}

impl Drop for Storm {
    fn drop(&mut self) {
        self.inner.token.cancel();
    }
}

/// One client: connect (`first` after the start), join, hold; after a drop or a failure,
/// the reconnect policy; until the budget, the time or the storm ends.
async fn client(sh: Arc<Inner>, first: Duration) {
    let mut failures: u32 = 0;
    let mut wait = first;
    loop {
        if !wait.is_zero() && !sh.wait(wait).await {
            return;
        }
        if sh.token.is_cancelled() || Instant::now() >= sh.end || !sh.spend() {
            return;
        }
        let ended = tokio::select! {
            _ = sh.token.cancelled() => Ended::Stopped,
            _ = tokio::time::sleep_until(sh.end) => Ended::Stopped,
            e = connection(&sh) => e,
        };
        match ended {
            Ended::Stopped => return,
            Ended::Dropped => failures = 0,
            Ended::Failed => failures = failures.saturating_add(1),
        }
        wait = sh.cfg.reconnect.delay(failures);
    }
}

/// Decrements the joined gauge when the joined socket goes, however it goes.
struct Joined<'a>(&'a AtomicU64);

impl Drop for Joined<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One connection: connect (from the source address), upgrade, join, then hold the socket
/// until the server ends it.
async fn connection(sh: &Inner) -> Ended {
    add(&sh.connects);
    let cfg = &sh.cfg;
    let Ok(Some(mut ws)) = tokio::time::timeout(cfg.timeout, open(cfg)).await else {
        add(&sh.connects_failed);
        return Ended::Failed;
    };
    let join = serde_json::json!(["1", "1", cfg.topic, "phx_join", {}]).to_string();
    let sent = Instant::now();
    if ws.send(Message::text(join)).await.is_err() {
        add(&sh.joins_failed);
        return Ended::Failed;
    }
    match tokio::time::timeout(cfg.timeout, join_reply(&mut ws, &cfg.topic)).await {
        Err(_) => {
            add(&sh.joins_failed);
            add(&sh.joins_timed_out);
            return Ended::Failed;
        }
        Ok(Reply::Gone) => {
            add(&sh.joins_failed);
            return Ended::Failed;
        }
        Ok(Reply::Refused) => {
            add(&sh.joins_refused);
            return Ended::Failed;
        }
        Ok(Reply::Ok) => {
            let took = sent.elapsed();
            add(&sh.joins_ok);
            sh.latencies
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((sent, took));
        }
    }
    sh.joined.fetch_add(1, Ordering::Relaxed);
    let _joined = Joined(&sh.joined);
    // Held until the server ends it (tungstenite answers pings as frames are read).
    while let Some(Ok(msg)) = ws.next().await {
        if matches!(msg, Message::Close(_)) {
            break;
        }
    }
    add(&sh.drops);
    Ended::Dropped
}

/// A fresh connection from the source address, upgraded; `None` when either fails.
async fn open(cfg: &StormConfig) -> Option<WebSocketStream<TcpStream>> {
    let sock = match cfg.target {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .ok()?;
    if let Some(src) = cfg.source {
        sock.bind(SocketAddr::new(src, 0)).ok()?;
    }
    let stream = sock.connect(cfg.target).await.ok()?;
    let _ = stream.set_nodelay(true);
    let url = format!("ws://{}{}", cfg.target, cfg.path);
    let (ws, _) = tokio_tungstenite::client_async(url, stream).await.ok()?;
    Some(ws)
}

enum Reply {
    Ok,
    Refused,
    /// The socket ended or broke first.
    Gone,
}

/// Reads until the reply to join ref `1` on `topic`, skipping anything else.
async fn join_reply(ws: &mut WebSocketStream<TcpStream>, topic: &str) -> Reply {
    while let Some(Ok(msg)) = ws.next().await {
        let Message::Text(text) = msg else {
            if matches!(msg, Message::Close(_)) {
                return Reply::Gone;
            }
            continue;
        };
        let Ok(Value::Array(a)) = serde_json::from_str::<Value>(text.as_str()) else {
            continue;
        };
        if a.len() != 5 || a[1] != "1" || a[2] != topic || a[3] != "phx_reply" {
            continue;
        }
        return if a[4]["status"] == "ok" {
            Reply::Ok
        } else {
            Reply::Refused
        };
    }
    Reply::Gone
}

#[cfg(test)]
mod tests {
    //! Storms against the real lab: rejoins after a drop-all, the budget and the time bound,
    //! timeouts under slow joins, and the lab telling the storm's source address apart.
    //! Timings are asserted only as lower bounds the faults impose.

    use std::net::Ipv4Addr;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::lab::{DropHow, Lab, LabHandle};

    const MS: Duration = Duration::from_millis(1);
    /// The bound on any single wait in these tests.
    const LIMIT: Duration = Duration::from_secs(20);

    async fn lab() -> LabHandle {
        Lab::start(&[SocketAddr::from((Ipv4Addr::LOCALHOST, 0))])
            .await
            .unwrap()
    }

    fn src(last: u8) -> Option<IpAddr> {
        Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))
    }

    /// Polls `cond` every 10 ms until it holds, for at most [`LIMIT`].
    async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
        let t = Instant::now();
        while !cond() {
            assert!(t.elapsed() < LIMIT, "timed out waiting for {what}");
            tokio::time::sleep(10 * MS).await;
        }
    }

    #[test]
    fn backoff_is_capped_and_jittered() {
        let r = Reconnect::Backoff {
            base: 100 * MS,
            max: 1000 * MS,
        };
        for (failures, cap) in [(0, 100), (1, 200), (3, 800), (4, 1000), (40, 1000)] {
            let waits: Vec<Duration> = (0..200).map(|_| r.delay(failures)).collect();
            assert!(waits.iter().all(|w| *w < cap * MS), "{failures}: {waits:?}");
            // Full jitter: spread over the range, not one value.
            let (lo, hi) = (waits.iter().min().unwrap(), waits.iter().max().unwrap());
            assert!(*hi - *lo > cap * MS / 4, "{failures}: {lo:?}..{hi:?}");
        }
        assert_eq!(Reconnect::Immediately.delay(7), Duration::ZERO);
    }

    #[test]
    fn settings_are_checked() {
        let t = SocketAddr::from((Ipv4Addr::LOCALHOST, 1));
        assert!(StormConfig::new(t, 10).validate().is_ok());
        let mut c = StormConfig::new(t, 0);
        c.max_duration = Duration::ZERO;
        c.source = Some("::1".parse().unwrap());
        let e = c.validate().unwrap_err();
        for want in ["clients: 0", "max_duration", "source: ::1"] {
            assert!(e.contains(want), "{e}");
        }
        let mut c = StormConfig::new(t, 10);
        c.ramp = c.max_duration;
        assert!(c.validate().unwrap_err().contains("ramp"));
        assert!(Storm::start(StormConfig::new(t, MAX_CLIENTS + 1)).is_err());
    }

    #[tokio::test]
    async fn lab_counts_per_source_address() {
        let lab = lab().await;
        for (source, n) in [(None, 2), (src(9), 3)] {
            for _ in 0..n {
                let sock = TcpSocket::new_v4().unwrap();
                if let Some(ip) = source {
                    sock.bind(SocketAddr::new(ip, 0)).unwrap();
                }
                let mut s = sock.connect(lab.addr()).await.unwrap();
                s.write_all(b"GET / HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n")
                    .await
                    .unwrap();
                let mut out = Vec::new();
                tokio::time::timeout(LIMIT, s.read_to_end(&mut out))
                    .await
                    .unwrap()
                    .unwrap();
                assert!(out.starts_with(b"HTTP/1.1 200"));
            }
        }
        let s = lab.stats();
        let (one, nine) = (&s.by_peer["127.0.0.1"], &s.by_peer["127.0.0.9"]);
        assert_eq!((one.connections, one.requests), (2, 2), "{s:?}");
        assert_eq!((nine.connections, nine.requests), (3, 3), "{s:?}");
        assert_eq!(nine.per_second["requests"].peak, 3, "{nine:?}");
        assert_eq!(s.requests, 5);
        // Reset clears them with the rest.
        lab.reset_stats();
        assert!(lab.stats().by_peer.is_empty());
    }

    #[tokio::test]
    async fn storm_rejoins_after_every_drop() {
        const N: u64 = 60;
        let lab = lab().await;
        let mut cfg = StormConfig::new(lab.addr(), N as usize);
        cfg.source = src(66);
        // Arriving over 300ms: the first client at once, the last 295ms later.
        cfg.ramp = 300 * MS;
        let started = Instant::now();
        let storm = Storm::start(cfg).unwrap();
        let s = storm.until_joined(N, LIMIT).await.expect("all joined");
        assert!(started.elapsed() >= 295 * MS, "the ramp was skipped");
        assert_eq!((s.connects, s.joins_ok, s.drops), (N, N, 0), "{s:?}");
        assert_eq!(s.join.count, N as usize);
        eventually("the lab to hold every socket", || {
            lab.stats().websockets.open == N
        })
        .await;

        // Close frames, then cuts without one: every client is back each time.
        for (round, how) in [DropHow::Close, DropHow::Reset].into_iter().enumerate() {
            let before = Instant::now();
            assert_eq!(lab.drop_websockets(how), N);
            let round = round as u64 + 1;
            eventually("every client to see its drop", || {
                storm.stats().drops == round * N
            })
            .await;
            let s = storm.until_joined(N, LIMIT).await.expect("all rejoined");
            println!("after {how:?}: {s:?}");
            assert_eq!(s.joins_ok, (round + 1) * N, "{s:?}");
            assert_eq!(storm.stats_since(before).join.count, N as usize);
            let ls = lab.stats();
            assert_eq!(ls.websockets.since_drop.joins, N, "{:?}", ls.websockets);
        }

        // The lab counts the storm under its own source address, apart from anyone else.
        let ls = lab.stats();
        let peer = &ls.by_peer["127.0.0.66"];
        assert_eq!((peer.upgrades, peer.joins), (3 * N, 3 * N), "{peer:?}");
        assert!(!ls.by_peer.contains_key("127.0.0.1"), "{:?}", ls.by_peer);
        assert!(peer.per_second["joins"].peak >= 1);

        let s = storm.stop().await;
        assert_eq!(s.joined, 0);
        assert_eq!(s.budget_left, N, "4 per client, 3 spent: {s:?}");
        eventually("the lab to see every socket closed", || {
            lab.stats().websockets.open == 0
        })
        .await;
    }

    #[tokio::test]
    async fn a_storm_of_connects_fits_the_labs_backlog() {
        // 400 connects at once: with a listen backlog of 128 some SYNs are dropped, and
        // their clients connect only at the retransmit, a second later.
        const N: u64 = 400;
        let lab = lab().await;
        let mut cfg = StormConfig::new(lab.addr(), N as usize);
        cfg.source = src(65);
        cfg.timeout = 950 * MS;
        cfg.max_connects = N;
        let storm = Storm::start(cfg).unwrap();
        let s = storm.until_joined(N, LIMIT).await;
        let s = s.unwrap_or_else(|s| panic!("not all joined: {s:?}"));
        println!("{N} at once: {}", s.join);
        assert_eq!((s.connects, s.connects_failed, s.joins_ok), (N, 0, N));
    }

    #[tokio::test]
    async fn refused_joins_spend_the_budget_and_stop() {
        let lab = lab().await;
        lab.refuse_joins(Some("busy"));
        let mut cfg = StormConfig::new(lab.addr(), 20);
        cfg.source = src(67);
        cfg.max_connects = 150;
        let storm = Storm::start(cfg).unwrap();
        eventually("the budget to be spent", || storm.is_over()).await;
        let s = storm.stats();
        println!("{s:?}");
        assert_eq!((s.connects, s.joins_refused, s.budget_left), (150, 150, 0));
        assert_eq!((s.joins_ok, s.joined), (0, 0));
        assert_eq!(lab.stats().by_peer["127.0.0.67"].joins, 150);
    }

    #[tokio::test]
    async fn slow_joins_time_out_and_the_storm_ends_on_time() {
        let lab = lab().await;
        // Every join waits a second: clients giving up after 100 ms retry at once, until
        // the storm's own time is up.
        lab.set_join_delay(Duration::from_secs(1), Duration::ZERO);
        let mut cfg = StormConfig::new(lab.addr(), 10);
        cfg.source = src(68);
        cfg.timeout = 100 * MS;
        cfg.max_connects = 10_000;
        cfg.max_duration = 500 * MS;
        let started = Instant::now();
        let storm = Storm::start(cfg).unwrap();
        eventually("the storm to end", || storm.is_over()).await;
        assert!(started.elapsed() >= 500 * MS);
        let s = storm.stats();
        println!("{s:?}");
        assert!(s.joins_timed_out >= 10, "{s:?}");
        assert_eq!(s.joins_timed_out, s.joins_failed);
        assert_eq!(s.joins_ok, 0);
        assert!(s.budget_left > 0, "stopped by time, not by count: {s:?}");
        eventually("the abandoned sockets to close", || {
            lab.stats().websockets.open == 0
        })
        .await;
    }

    #[tokio::test]
    async fn contention_shows_in_the_join_latency() {
        let lab = lab().await;
        // 50 ms each, plus 5 ms per join in flight.
        lab.set_join_delay(50 * MS, 5 * MS);
        let mut cfg = StormConfig::new(lab.addr(), 40);
        cfg.source = src(69);
        cfg.reconnect = Reconnect::Backoff {
            base: 50 * MS,
            max: 400 * MS,
        };
        let storm = Storm::start(cfg).unwrap();
        let s = storm.until_joined(40, LIMIT).await.expect("all joined");
        println!("40 at once: {}", s.join);
        assert!(s.join.p50 >= 55 * MS, "{}", s.join);
        assert!(s.join.p50 <= s.join.p95 && s.join.p95 <= s.join.p99);
        assert!(s.join.p99 <= s.join.max);
        assert!(s.join.max >= 55 * MS);
        lab.drop_websockets(DropHow::Close);
        let t = Instant::now();
        eventually("the drops", || storm.stats().drops == 40).await;
        let s = storm.until_joined(40, LIMIT).await.expect("all rejoined");
        println!("rejoined with backoff: {}", storm.stats_since(t).join);
        assert_eq!(s.joins_ok, 80);
    }
}
