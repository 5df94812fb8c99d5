//! The fault lab: a target server on loopback that misbehaves on demand, for tests and by
//! hand (`probectl lab`).
//!
//! One server, listening on one or more addresses (e.g. 127.0.0.1, .2 and .3 on one port,
//! three "edges" of one site) with the same behaviour, except that some addresses may serve a
//! stale build. Its faults change at runtime, through the [`LabHandle`] a test holds or the
//! control API under `/_lab/` on the same addresses:
//!
//! | request | |
//! |---|---|
//! | `GET /_lab` | this usage |
//! | `GET /_lab/faults` | the faults, as JSON ([`Faults`]) |
//! | `POST /_lab/faults` | a JSON merge patch (RFC 7386) of the faults: `{"latency":{"base":"120ms"}}`; `null` removes |
//! | `PUT /_lab/faults` | the faults, whole (what is left out is healthy) |
//! | `DELETE /_lab/faults` | back to healthy |
//! | `GET /_lab/stats` | counters, gauges and per-second rates ([`Stats`]) |
//! | `POST /_lab/stats/reset` | counters to zero |
//! | `POST /_lab/websockets/drop[?how=reset]` | drop every open websocket at once (close frame 1001, or `reset`: no close frame) |
//!
//! Every other request is the target's:
//!
//! - `GET /version`: `{"build":"A"}`; every answer carries `x-build: A`, the build of the
//!   address it was served on (what `edges: { version_header: x-build }` compares);
//! - any request with `Upgrade: websocket`: a websocket speaking Phoenix Channels (v2
//!   arrays, v1 objects, answered in kind): `phx_join` is answered `ok` (or refused, or late),
//!   any other event gets an `ok` reply echoing its payload, and a frame that is not
//!   Phoenix's is echoed back;
//! - anything else: `200 ok build A` (text), padded to the body size the faults ask for.
//!
//! The faults ([`Faults`]): latency (fixed, creeping, spikes), errors at an exact rate,
//! hanging requests (all, or writes only), fixed or growing bodies, a stale build on some
//! addresses, and for websockets: refused upgrades, refused or slow joins (slower as more
//! arrive at once), and drop-all. The control API itself is never faulty.

pub mod dns;
mod faults;
mod http;
pub mod pg;
pub mod redis;
mod stats;
pub mod storm;
mod ws;

#[cfg(test)]
mod tests;

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use faults::{Body, Creep, Errors, Faults, Hang, Join, Latency, Rate, Spikes, Stale, WsFaults};
pub use stats::{MAX_PEERS, PeerStats, PerSecond, SinceDrop, Stats, WsStats};

use faults::Engine;
use stats::Recorder;

/// How a drop-all ends the sockets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DropHow {
    /// A close frame (1001, going away), then the connection is closed.
    #[default]
    Close,
    /// The connection is closed without a close frame (a load balancer cutting it).
    Reset,
}

/// What every connection of a lab shares.
pub(crate) struct Shared {
    engine: Mutex<Engine>,
    pub(crate) rec: Recorder,
    /// Drop-all: a generation number and how; each websocket watches it.
    drops: watch::Sender<(u64, DropHow)>,
    /// Cancelled when the lab stops: every task of it ends.
    pub(crate) token: CancellationToken,
}

impl Shared {
    pub(crate) fn engine(&self) -> std::sync::MutexGuard<'_, Engine> {
        self.engine.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn faults(&self) -> Faults {
        self.engine().faults.clone()
    }

    /// Checks `f` and makes it the faults.
    pub(crate) fn set_faults(&self, f: Faults) -> Result<Faults, String> {
        f.validate()?;
        self.engine().set(f.clone());
        Ok(f)
    }

    pub(crate) fn patch(&self, patch: &serde_json::Value) -> Result<Faults, String> {
        let mut e = self.engine();
        let f = e.faults.patched(patch)?;
        e.set(f.clone());
        Ok(f)
    }

    /// Drops every open websocket; returns how many were open.
    pub(crate) fn drop_websockets(&self, how: DropHow) -> u64 {
        let open = self
            .rec
            .c
            .ws_open
            .load(std::sync::atomic::Ordering::Relaxed);
        self.rec.drop_all();
        self.drops.send_modify(|(generation, h)| {
            *generation += 1;
            *h = how;
        });
        open
    }
}

/// Starts labs.
pub struct Lab;

impl Lab {
    /// A healthy lab on `listen` (see [`Lab::start_with`]).
    pub async fn start(listen: &[SocketAddr]) -> io::Result<LabHandle> {
        Lab::start_with(listen, Faults::default()).await
    }

    /// A lab with `faults` from the start, on every address of `listen`. Port 0 on several
    /// addresses means one free port shared by all of them (edges of one site): the first
    /// address picks it, the others take it (retried on another port when one is taken).
    pub async fn start_with(listen: &[SocketAddr], faults: Faults) -> io::Result<LabHandle> {
        faults
            .validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let listeners = bind_all(listen).await?;
        let addrs = listeners
            .iter()
            .map(TcpListener::local_addr)
            .collect::<io::Result<Vec<_>>>()?;
        let shared = Arc::new(Shared {
            engine: Mutex::new(Engine::new(faults)),
            rec: Recorder::new(),
            drops: watch::channel((0, DropHow::Close)).0,
            token: CancellationToken::new(),
        });
        for l in listeners {
            tokio::spawn(http::accept(shared.clone(), l));
        }
        Ok(LabHandle { shared, addrs })
    }

    /// A healthy lab on 127.0.0.1 .. 127.0.0.`n`, one free port shared by all.
    pub async fn edges(n: u8) -> io::Result<LabHandle> {
        let listen: Vec<SocketAddr> = (1..=n.max(1))
            .map(|i| SocketAddr::from(([127, 0, 0, i], 0)))
            .collect();
        Lab::start(&listen).await
    }
}

/// Connections a listener holds before they are accepted. The standard library's (and
/// tokio's) 128 drops SYNs when a few hundred clients reconnect at once; they then retry
/// a second later, which would blur the join contention a storm is meant to show.
const BACKLOG: u32 = 1024;

/// A listener on `addr` with [`BACKLOG`].
fn listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let sock = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    sock.set_reuseaddr(true)?;
    sock.bind(addr)?;
    sock.listen(BACKLOG)
}

/// Binds every address; see [`Lab::start_with`] for port 0.
async fn bind_all(listen: &[SocketAddr]) -> io::Result<Vec<TcpListener>> {
    let Some(first) = listen.first() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the lab needs at least one address to listen on",
        ));
    };
    let shared_port = first.port() == 0 && listen.len() > 1;
    let tries = if shared_port { 20 } else { 1 };
    let mut last = None;
    for _ in 0..tries {
        let head = listener(*first)?;
        let port = head.local_addr()?.port();
        let mut ls = vec![head];
        let mut failed = None;
        for a in &listen[1..] {
            let mut a = *a;
            if a.port() == 0 {
                a.set_port(port);
            }
            match listener(a) {
                Ok(l) => ls.push(l),
                Err(e) => {
                    failed = Some(io::Error::new(
                        e.kind(),
                        format!("cannot listen on {a}: {e}"),
                    ));
                    break;
                }
            }
        }
        match failed {
            None => return Ok(ls),
            Some(e) => last = Some(e),
        }
    }
    Err(last.expect("tried at least once"))
}

/// A running lab. Dropping it (or [`LabHandle::stop`]) stops it: listeners close, every
/// connection (hung ones and websockets included) is dropped.
pub struct LabHandle {
    shared: Arc<Shared>,
    addrs: Vec<SocketAddr>,
}

impl LabHandle {
    /// Every address listened on, in the order given.
    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The first address.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// `http://<first address><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr())
    }

    /// `ws://<first address><path>`.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr())
    }

    /// The faults now.
    pub fn faults(&self) -> Faults {
        self.shared.faults()
    }

    /// Replaces the faults (checked first).
    pub fn set_faults(&self, f: Faults) -> Result<Faults, String> {
        self.shared.set_faults(f)
    }

    /// Changes the faults with `change` (checked first), e.g.
    /// `lab.update(|f| f.latency.base = Dur::millis(120))`.
    pub fn update(&self, change: impl FnOnce(&mut Faults)) -> Result<Faults, String> {
        let mut f = self.faults();
        change(&mut f);
        self.set_faults(f)
    }

    /// A JSON merge patch, as `POST /_lab/faults` takes.
    pub fn patch(&self, patch: &serde_json::Value) -> Result<Faults, String> {
        self.shared.patch(patch)
    }

    /// Back to healthy.
    pub fn heal(&self) {
        self.set(|_| {}, Faults::default());
    }

    fn set(&self, change: impl FnOnce(&mut Faults), base: Faults) -> &LabHandle {
        let mut f = base;
        change(&mut f);
        if let Err(e) = self.set_faults(f) {
            panic!("invalid lab fault: {e}");
        }
        self
    }

    fn change(&self, change: impl FnOnce(&mut Faults)) -> &LabHandle {
        self.set(change, self.faults())
    }

    // ---- setters: each changes one fault and keeps the others; an invalid value panics
    // (a test's mistake). `update` and `patch` report errors instead.

    /// Fixed latency.
    pub fn set_latency(&self, base: Duration) -> &LabHandle {
        self.change(|f| f.latency.base = crate::units::Dur(base))
    }

    /// Latency creeping from `from` to `to` over `over`, from now (on top of the fixed one).
    pub fn set_creep(&self, from: Duration, to: Duration, over: Duration) -> &LabHandle {
        use crate::units::Dur;
        self.change(|f| {
            f.latency.creep = Some(Creep {
                from: Dur(from),
                to: Dur(to),
                over: Dur(over),
            })
        })
    }

    /// `add` more on every `every`th request from now.
    pub fn set_spikes_every(&self, every: u64, add: Duration) -> &LabHandle {
        self.change(|f| {
            f.latency.spikes = Some(Spikes {
                every: Some(every),
                probability: None,
                add: crate::units::Dur(add),
            })
        })
    }

    /// Errors at `rate` (`"2.39%"` or `"0.0239"`), answered with `status`.
    pub fn set_error_rate(&self, rate: &str, status: u16) -> &LabHandle {
        let rate: Rate = rate.parse().unwrap_or_else(|e| panic!("{e}"));
        self.change(|f| f.errors = Errors { rate, status })
    }

    pub fn set_hang(&self, hang: Hang) -> &LabHandle {
        self.change(|f| f.hang = hang)
    }

    /// Bodies of `bytes`, growing by `growth` per answer from now.
    pub fn set_body(&self, bytes: u64, growth: u64) -> &LabHandle {
        use crate::units::ByteSize;
        self.change(|f| {
            f.body = Body {
                bytes: ByteSize(bytes),
                growth: ByteSize(growth),
            }
        })
    }

    /// The build served, and addresses (IPs or ip:port) serving `stale_build` instead.
    pub fn set_builds(&self, build: &str, stale: &[&str], stale_build: &str) -> &LabHandle {
        self.change(|f| {
            f.build = build.into();
            f.stale = Stale {
                addrs: stale.iter().map(|s| s.to_string()).collect(),
                build: stale_build.into(),
            };
        })
    }

    /// Joins refused with `reason` (`Some`), or accepted again (`None`).
    pub fn refuse_joins(&self, reason: Option<&str>) -> &LabHandle {
        self.change(|f| {
            f.websocket.join = if reason.is_some() {
                Join::Refuse
            } else {
                Join::Ok
            };
            f.websocket.reason = reason.map(str::to_owned);
        })
    }

    /// Wait `delay`, plus `cost` per join in flight, before each join reply.
    pub fn set_join_delay(&self, delay: Duration, cost: Duration) -> &LabHandle {
        use crate::units::Dur;
        self.change(|f| {
            f.websocket.join_delay = Dur(delay);
            f.websocket.join_cost = Dur(cost);
        })
    }

    /// Upgrades refused with `status` (`Some`), or accepted again (`None`).
    pub fn refuse_upgrades(&self, status: Option<u16>) -> &LabHandle {
        self.change(|f| f.websocket.upgrade_status = status)
    }

    /// Drops every open websocket at once; returns how many were open.
    pub fn drop_websockets(&self, how: DropHow) -> u64 {
        self.shared.drop_websockets(how)
    }

    pub fn stats(&self) -> Stats {
        self.shared.rec.snapshot()
    }

    /// Counters (not gauges) back to zero.
    pub fn reset_stats(&self) {
        self.shared.rec.reset();
    }

    /// Stops the lab (as dropping the handle does).
    pub fn stop(self) {}
}

impl Drop for LabHandle {
    fn drop(&mut self) {
        self.shared.token.cancel();
    }
}

/// The control API's usage, as `GET /_lab` and `probectl lab` print it; `base` is the lab's
/// `http://host:port`.
pub fn usage(base: &str) -> String {
    format!(
        "control API (any lab address; never faulty):\n\
         \x20 curl {base}/_lab/faults                      # the faults now\n\
         \x20 curl {base}/_lab/stats                       # counters, per-second rates\n\
         \x20 curl -XPOST {base}/_lab/faults -d '{{\"latency\":{{\"base\":\"120ms\"}}}}'\n\
         \x20 curl -XPOST {base}/_lab/faults -d '{{\"latency\":{{\"creep\":{{\"from\":\"120ms\",\"to\":\"209ms\",\"over\":\"10m\"}}}}}}'\n\
         \x20 curl -XPOST {base}/_lab/faults -d '{{\"latency\":{{\"spikes\":{{\"every\":50,\"add\":\"2s\"}}}}}}'\n\
         \x20 curl -XPOST {base}/_lab/faults -d '{{\"errors\":{{\"rate\":\"2.39%\",\"status\":503}}}}'\n\
         \x20 curl -XPOST {base}/_lab/faults -d '{{\"hang\":\"writes\"}}'      # or all, off\n\
         \x20 curl -XPOST {base}/_lab/faults -d '{{\"body\":{{\"bytes\":\"1MB\",\"growth\":\"100KB\"}}}}'\n\
         \x20 curl -XPOST {base}/_lab/faults -d '{{\"stale\":{{\"addrs\":[\"127.0.0.2\"],\"build\":\"B\"}}}}'\n\
         \x20 curl -XPOST {base}/_lab/faults -d '{{\"websocket\":{{\"join\":\"refuse\",\"join_delay\":\"2s\"}}}}'\n\
         \x20 curl -XPOST {base}/_lab/faults -d '{{\"websocket\":{{\"upgrade_status\":503}}}}'\n\
         \x20 curl -XPOST {base}/_lab/faults -d '{{\"latency\":null}}'       # null removes a fault\n\
         \x20 curl -XDELETE {base}/_lab/faults                # all healthy again\n\
         \x20 curl -XPOST {base}/_lab/websockets/drop         # drop every websocket (?how=reset: no close frame)\n\
         \x20 curl -XPOST {base}/_lab/stats/reset\n\
         target: GET {base}/version ({{\"build\":..}}, header x-build), any other path: 200 ok;\n\
         websocket (Phoenix channels v2/v1): ws://{}/socket/websocket\n",
        base.trim_start_matches("http://")
    )
}
