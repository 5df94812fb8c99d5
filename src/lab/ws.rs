//! The lab's websocket endpoint: the upgrade (refusable), then Phoenix Channels as
//! `src/probe/websocket.rs` speaks it (v2 `[join_ref, ref, topic, event, payload]` arrays,
//! v1 objects, answered in kind), joins refused or slowed at will, and drop-all.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};

use super::faults::Join;
use super::http::{LabBody, text};
use super::stats::{Gauge, Per, add};
use super::{DropHow, Shared};

/// Largest frame or message the lab reads.
const MAX_MESSAGE: usize = 1 << 20;
/// How long sending the drop-all close frame may take.
const CLOSE_SEND: Duration = Duration::from_secs(1);

type Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// A request asking for a websocket.
pub(crate) fn is_upgrade(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|p| p.trim().eq_ignore_ascii_case("websocket"))
        })
}

/// Answers an upgrade request: refused (the faults' status, or 400 when it is not a valid
/// websocket request), or `101` with the session served in a task of its own.
pub(crate) fn upgrade(
    shared: Arc<Shared>,
    local: std::net::SocketAddr,
    peer: IpAddr,
    mut req: Request<Incoming>,
) -> Response<LabBody> {
    let c = &shared.rec.c;
    add(&c.upgrades, 1);
    add(&c.upgrades_since_drop, 1);
    shared.rec.per(Per::Upgrades, peer);
    let faults = shared.faults();
    if let Some(code) = faults.websocket.upgrade_status {
        add(&c.upgrades_refused, 1);
        let status = StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return text(status, "lab: websocket upgrade refused\n");
    }
    let key = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned();
    let version_ok = req
        .headers()
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v.as_bytes() == b"13");
    let (Some(key), true) = (key, version_ok) else {
        add(&c.upgrades_refused, 1);
        return text(
            StatusCode::BAD_REQUEST,
            "lab: a websocket upgrade needs Sec-WebSocket-Key and Sec-WebSocket-Version: 13\n",
        );
    };
    let protocol = req
        .headers()
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty());
    let on_upgrade = hyper::upgrade::on(&mut req);
    // Subscribed before the 101 goes out: a drop-all from now on reaches this socket.
    let drops = shared.drops.subscribe();
    let task_shared = shared.clone();
    tokio::spawn(async move {
        let shared = task_shared;
        let upgraded = tokio::select! {
            _ = shared.token.cancelled() => return,
            u = on_upgrade => u,
        };
        let Ok(upgraded) = upgraded else { return };
        let config = WebSocketConfig::default()
            .max_frame_size(Some(MAX_MESSAGE))
            .max_message_size(Some(MAX_MESSAGE));
        let ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config))
                .await;
        session(&shared, peer, ws, drops).await;
    });
    let mut resp = Response::new(LabBody::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(
        header::UPGRADE,
        header::HeaderValue::from_static("websocket"),
    );
    h.insert(
        header::CONNECTION,
        header::HeaderValue::from_static("Upgrade"),
    );
    if let Ok(v) = header::HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if let Some(p) = protocol.and_then(|p| header::HeaderValue::from_str(&p).ok()) {
        h.insert(header::SEC_WEBSOCKET_PROTOCOL, p);
    }
    if let Ok(v) = header::HeaderValue::from_str(faults.build_for(local)) {
        h.insert("x-build", v);
    }
    resp
}

/// Why a session ends.
enum End {
    /// The client left, an error, or the lab stopped.
    Gone,
    /// A drop-all.
    Dropped(DropHow),
}

/// Serves one websocket of `peer` until the client leaves, a drop-all, or the lab stops.
async fn session(
    shared: &Shared,
    peer: IpAddr,
    mut ws: Ws,
    mut drops: watch::Receiver<(u64, DropHow)>,
) {
    let _open = Gauge::up(&shared.rec.c.ws_open);
    let end = loop {
        let msg = tokio::select! {
            _ = shared.token.cancelled() => break End::Gone,
            d = drops.changed() => break dropped(d, &mut drops),
            m = ws.next() => m,
        };
        match msg {
            Some(Ok(Message::Text(t))) => {
                if let Err(end) = on_text(shared, peer, &mut ws, &mut drops, t.as_str()).await {
                    break end;
                }
            }
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break End::Gone,
            Some(Ok(_)) => {}
        }
    };
    if let End::Dropped(how) = end {
        add(&shared.rec.c.dropped, 1);
        if how == DropHow::Close {
            let frame = CloseFrame {
                code: CloseCode::Away,
                reason: "lab: every websocket dropped".into(),
            };
            let _ = tokio::time::timeout(CLOSE_SEND, ws.close(Some(frame))).await;
        }
    }
    // Dropping `ws` closes the connection.
}

fn dropped(
    changed: Result<(), watch::error::RecvError>,
    drops: &mut watch::Receiver<(u64, DropHow)>,
) -> End {
    match changed {
        Ok(()) => End::Dropped(drops.borrow_and_update().1),
        Err(_) => End::Gone,
    }
}

/// One Phoenix message, v2 or v1.
struct Phx {
    v2: bool,
    join_ref: Value,
    reference: Value,
    topic: Value,
    event: String,
    payload: Value,
}

impl Phx {
    fn parse(text: &str) -> Option<Phx> {
        match serde_json::from_str::<Value>(text).ok()? {
            Value::Array(a) if a.len() == 5 => Some(Phx {
                v2: true,
                join_ref: a[0].clone(),
                reference: a[1].clone(),
                topic: a[2].clone(),
                event: a[3].as_str()?.to_owned(),
                payload: a[4].clone(),
            }),
            Value::Object(o) if o.get("topic").is_some() && o.get("event").is_some() => Some(Phx {
                v2: false,
                join_ref: o.get("join_ref").cloned().unwrap_or(Value::Null),
                reference: o.get("ref").cloned().unwrap_or(Value::Null),
                topic: o["topic"].clone(),
                event: o["event"].as_str()?.to_owned(),
                payload: o.get("payload").cloned().unwrap_or(Value::Null),
            }),
            _ => None,
        }
    }

    /// The `phx_reply` to this message, with `status` and `response`.
    fn reply(&self, status: &str, response: Value) -> Message {
        let payload = json!({ "status": status, "response": response });
        let v = if self.v2 {
            json!([
                self.join_ref,
                self.reference,
                self.topic,
                "phx_reply",
                payload
            ])
        } else {
            json!({
                "topic": self.topic, "event": "phx_reply", "payload": payload,
                "ref": self.reference, "join_ref": self.join_ref,
            })
        };
        Message::text(v.to_string())
    }
}

/// Answers one text frame: a join (refused or late at will), any other Phoenix event (an
/// `ok` reply echoing its payload), or anything else (echoed).
async fn on_text(
    shared: &Shared,
    peer: IpAddr,
    ws: &mut Ws,
    drops: &mut watch::Receiver<(u64, DropHow)>,
    text: &str,
) -> Result<(), End> {
    let Some(msg) = Phx::parse(text) else {
        return ws
            .send(Message::text(text.to_owned()))
            .await
            .map_err(|_| End::Gone);
    };
    if msg.event != "phx_join" {
        let reply = msg.reply("ok", msg.payload.clone());
        return ws.send(reply).await.map_err(|_| End::Gone);
    }
    let c = &shared.rec.c;
    add(&c.joins, 1);
    add(&c.joins_since_drop, 1);
    shared.rec.per(Per::Joins, peer);
    let w = shared.faults().websocket;
    let reply = {
        let _in_flight = Gauge::up(&c.joins_in_flight);
        let n = c.joins_in_flight.load(Ordering::Relaxed);
        let wait = w.join_delay.0
            + w.join_cost
                .0
                .saturating_mul(u32::try_from(n).unwrap_or(u32::MAX));
        if !wait.is_zero() {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shared.token.cancelled() => return Err(End::Gone),
                d = drops.changed() => return Err(dropped(d, drops)),
            }
        }
        match w.join {
            Join::Ok => {
                add(&c.joins_ok, 1);
                msg.reply("ok", json!({}))
            }
            Join::Refuse => {
                add(&c.joins_refused, 1);
                msg.reply("error", json!({ "reason": w.refuse_reason() }))
            }
        }
    };
    ws.send(reply).await.map_err(|_| End::Gone)
}
