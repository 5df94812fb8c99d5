//! `kind: websocket`: one websocket session over a fresh connection, timed phase by phase
//! (`resolve`, `connect`, `tls`, `upgrade`, `join`), the way a user's browser pays for a
//! realtime join: the upgrade, then an exchange of text frames (frames to send, a frame to
//! expect, or a preset that speaks Phoenix Channels v2 or Socket.IO v4), then a clean close.
//!
//! Like the HTTP probe, this module resolves (hickory), connects and TLS-wraps (rustls) the
//! connection itself, then hands it to tungstenite for the upgrade, so every step is timed
//! and the address probed is known. Incoming frames are capped (`max_frame`): a giant frame
//! is a clear failure, never an unbounded allocation.
//!
//! `burst` opens many joins at once after the main check and reports how long they took:
//! the reconnect storm of the MURAL 2018 postmortem (every client rejoining at the same
//! moment), as a measurement. It is opt-in, capped, and runs in the check's own task: when
//! the check returns, no connection of it is left open.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use rustls::ClientConfig;
use schemars::JsonSchema;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::net::{self, IpPreference, TlsClient, json_eq};
use super::{CheckCx, Env, Observation, until};
use crate::text::FieldError;
use crate::text::{lower_first, regex_error, short};
use crate::units::{ByteSize, Dur, format_bytes, format_duration};

/// Default cap on one incoming frame (and on one message made of fragments).
pub const DEFAULT_MAX_FRAME: u64 = 1 << 20;
/// Largest `max_frame` accepted.
pub const MAX_FRAME_LIMIT: u64 = 64 << 20;
/// Most joins one `burst` may open.
pub const MAX_BURST: u32 = 200;
/// How long a check waits for the server's reply to its Close (never past the deadline).
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// A websocket probe.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// `ws://` or `wss://` URL to upgrade. Userinfo (`user:password@`) is sent as Basic
    /// credentials and never shown in output.
    pub url: String,
    /// Headers of the upgrade request (e.g. `Origin`, `Authorization`, `Cookie`). Values may
    /// hold secrets; they are never shown.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Subprotocols to offer (`Sec-WebSocket-Protocol`); the server must pick one of them.
    #[serde(default)]
    pub subprotocols: Vec<String>,
    /// Text frames to send after the upgrade (after the preset's join, when there is one),
    /// in order. A single string is one frame.
    #[serde(default, deserialize_with = "one_or_many")]
    #[schemars(schema_with = "one_or_many_schema")]
    pub send: Vec<String>,
    /// A text frame to wait for after sending (after the preset's join, when there is one).
    /// Frames that do not match are skipped; the first one that matches wins.
    pub expect: Option<Expect>,
    /// Preset: join a Phoenix Channels topic (protocol v2 by default) and expect an `ok` reply.
    pub phoenix: Option<Phoenix>,
    /// Preset: connect a Socket.IO v4 namespace over the Engine.IO 4 websocket transport.
    pub socketio: Option<SocketIo>,
    /// TLS options for `wss://` URLs.
    #[serde(default)]
    pub tls: TlsOptions,
    /// After a successful check, open this many joins at once (each a full connect, TLS,
    /// upgrade and exchange, to the address just probed) and report their time as phases
    /// `burst_p50`, `burst_p95` and `burst_max`; any failed join fails the check. At most 200.
    /// Default: off.
    pub burst: Option<u32>,
    /// Largest incoming frame or message accepted; a larger one fails the check without
    /// being read. Default: 1 MiB, at most 64 MiB.
    pub max_frame: Option<ByteSize>,
    /// The join (the `join` phase: the preset's join, then `send` and `expect`) must take
    /// less than this. The wait ends there and the check is down (`join took longer than
    /// 500ms (join_under)`), so a slow join costs the target no more of the probe's time.
    /// Applies to each join of a `burst` too. Default: no bound but the timeout.
    pub join_under: Option<Dur>,
}

/// What a good frame looks like. Every condition given must hold on the same text frame.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "WebsocketExpect")]
pub struct Expect {
    /// The frame must contain this text.
    pub contains: Option<String>,
    /// The frame must match this regular expression.
    pub regex: Option<String>,
    /// JSON pointers (RFC 6901) into the frame, each with the value it must equal,
    /// e.g. `{"/4/status": "ok"}`.
    #[serde(default)]
    pub json: BTreeMap<String, serde_json::Value>,
    /// How long to wait for a matching frame, counted from the end of sending. Default: the
    /// rest of the check's deadline.
    pub within: Option<Dur>,
}

/// The Phoenix Channels preset.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "WebsocketPhoenix")]
pub struct Phoenix {
    /// Topic to join, e.g. `room:lobby`.
    pub topic: String,
    /// Join parameters (a JSON object). Default: `{}`. String values are treated as secrets.
    #[serde(default = "empty_object")]
    pub payload: serde_json::Value,
    /// Serializer version: `2.0.0` (arrays, the default) or `1.0.0` (objects). Added to the
    /// URL's query as `vsn=` when the URL has none. The URL is used as written otherwise, so
    /// it names the transport, e.g. `wss://host/socket/websocket`.
    #[serde(default = "vsn2")]
    pub vsn: String,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}
fn vsn2() -> String {
    "2.0.0".into()
}

/// The Socket.IO preset.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "WebsocketSocketIo")]
pub struct SocketIo {
    /// Namespace to connect. Default: `/`.
    #[serde(default = "root_namespace")]
    pub namespace: String,
}

fn root_namespace() -> String {
    "/".into()
}

/// TLS options.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "WebsocketTls")]
pub struct TlsOptions {
    /// Skip certificate verification (the expiry is still recorded). Default: false.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// Extra PEM file of CA certificates to trust, beside the bundled web PKI roots.
    pub ca_file: Option<std::path::PathBuf>,
    /// Name to send as SNI and verify the certificate against (default: the URL's host).
    pub server_name: Option<String>,
}

/// The schema [`one_or_many`] reads.
fn one_or_many_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "anyOf": [{ "type": "string" }, { "type": "array", "items": { "type": "string" } }],
    })
}

/// `send: "one frame"` or `send: [a, b]`.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Raw::deserialize(d)? {
        Raw::One(s) => vec![s],
        Raw::Many(v) => v,
    })
}

/// Headers the probe writes itself; a spec may not set them.
const RESERVED_HEADERS: &[(&str, &str)] = &[
    ("connection", "set by the probe"),
    ("upgrade", "set by the probe"),
    ("sec-websocket-key", "set by the probe"),
    ("sec-websocket-version", "set by the probe"),
    ("sec-websocket-accept", "a response header"),
    ("sec-websocket-protocol", "set it with subprotocols"),
    (
        "sec-websocket-extensions",
        "websocket extensions are not supported",
    ),
];

impl Spec {
    /// Every problem, without I/O (the CA file is read at build time). Messages never repeat
    /// the URL or a header value: either may hold a secret.
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        match parse_target(&self.url) {
            Err(e) => errs.push(FieldError::new("url", e)),
            Ok(t) => {
                if let Err(e) = self.session_path(&t) {
                    errs.push(FieldError::new("url", e));
                }
            }
        }
        for (name, value) in &self.headers {
            let path = format!("headers.{name}");
            match HeaderName::from_bytes(name.as_bytes()) {
                Err(_) => errs.push(FieldError::new(path, "invalid header name")),
                Ok(h) => {
                    if let Some((_, why)) = RESERVED_HEADERS.iter().find(|(r, _)| *r == h.as_str())
                    {
                        errs.push(FieldError::new(path, format!("cannot be set: {why}")));
                    } else if HeaderValue::from_str(value).is_err() {
                        errs.push(FieldError::new(
                            path,
                            "invalid header value (control characters or non-ascii text)",
                        ));
                    }
                }
            }
        }
        for (i, p) in self.subprotocols.iter().enumerate() {
            if p.is_empty() || !p.bytes().all(is_token_byte) {
                errs.push(FieldError::new(
                    format!("subprotocols[{i}]"),
                    format!(
                        "invalid subprotocol {:?} (letters, digits and !#$%&'*+-.^_`|~)",
                        short(p)
                    ),
                ));
            }
        }
        if let Some(expect) = &self.expect {
            if let Some(re) = &expect.regex
                && let Err(e) = regex::Regex::new(re)
            {
                errs.push(FieldError::new("expect.regex", regex_error(&e)));
            }
            for ptr in expect.json.keys() {
                if !ptr.is_empty() && !ptr.starts_with('/') {
                    errs.push(FieldError::new(
                        format!("expect.json.{ptr}"),
                        format!("invalid json pointer {ptr:?}: must be empty or start with /"),
                    ));
                }
            }
            if expect.within.is_some_and(|w| w.0.is_zero()) {
                errs.push(FieldError::new("expect.within", "must be more than 0s"));
            }
        }
        if self.phoenix.is_some() && self.socketio.is_some() {
            errs.push(FieldError::new(
                "socketio",
                "phoenix and socketio are two presets: set one of them",
            ));
        }
        if let Some(px) = &self.phoenix {
            if px.topic.trim().is_empty() {
                errs.push(FieldError::new("phoenix.topic", "must not be empty"));
            }
            if !px.payload.is_object() {
                errs.push(FieldError::new(
                    "phoenix.payload",
                    "must be a json object (the join parameters)",
                ));
            }
            if !matches!(px.vsn.as_str(), "1.0.0" | "2.0.0") {
                errs.push(FieldError::new(
                    "phoenix.vsn",
                    format!(
                        "unsupported version {:?} (use 2.0.0 or 1.0.0)",
                        short(&px.vsn)
                    ),
                ));
            }
        }
        if let Some(sio) = &self.socketio
            && let Err(e) = check_namespace(&sio.namespace)
        {
            errs.push(FieldError::new("socketio.namespace", e));
        }
        match self.burst {
            Some(0) => errs.push(FieldError::new(
                "burst",
                "must be at least 1 (leave it out to turn bursts off)",
            )),
            Some(n) if n > MAX_BURST => errs.push(FieldError::new(
                "burst",
                format!("{n} joins is too many (at most {MAX_BURST})"),
            )),
            _ => {}
        }
        if let Some(limit) = self.join_under {
            if limit.0.is_zero() {
                errs.push(FieldError::new("join_under", "must be more than 0s"));
            } else if self.phoenix.is_none()
                && self.socketio.is_none()
                && self.send.is_empty()
                && self.expect.is_none()
            {
                errs.push(FieldError::new(
                    "join_under",
                    "there is no join to time: set phoenix, socketio, send or expect",
                ));
            }
        }
        match self.max_frame {
            Some(ByteSize(0)) => {
                errs.push(FieldError::new("max_frame", "must be more than 0 bytes"))
            }
            Some(ByteSize(n)) if n > MAX_FRAME_LIMIT => errs.push(FieldError::new(
                "max_frame",
                format!(
                    "{} is too large (at most {})",
                    format_bytes(n),
                    format_bytes(MAX_FRAME_LIMIT)
                ),
            )),
            _ => {}
        }
        if let Some(name) = &self.tls.server_name
            && let Err(e) = net::server_name(name)
        {
            errs.push(FieldError::new("tls.server_name", e));
        }
        errs
    }

    /// Makes `tls.ca_file` relative to `base` (the directory of the probe's file).
    pub fn resolve_paths(&mut self, base: &std::path::Path) {
        net::resolve_path(&mut self.tls.ca_file, base);
    }

    /// The URL's host (lower-case, IPv6 without brackets), for the per-host concurrency cap.
    pub fn target_host(&self) -> Option<String> {
        parse_target(&self.url).ok().map(|t| t.host)
    }

    pub fn instance(&self) -> Option<String> {
        crate::probe::net::url_instance(&self.url)
    }

    /// The path and query to upgrade, after the preset's additions: `vsn=` for Phoenix; the
    /// `/socket.io/` path, `EIO=4` and `transport=websocket` for Socket.IO.
    fn session_path(&self, target: &Target) -> Result<String, String> {
        let mut pq = target.path.as_str().to_string();
        if let Some(px) = &self.phoenix {
            match query_param(&pq, "vsn") {
                Some(v) if v != px.vsn => {
                    return Err(format!(
                        "the url asks for vsn={} but phoenix.vsn is {}",
                        short(v),
                        short(&px.vsn)
                    ));
                }
                Some(_) => {}
                None => pq = with_param(&pq, "vsn", &px.vsn),
            }
        }
        if self.socketio.is_some() {
            let (path, query) = pq.split_once('?').unwrap_or((&pq, ""));
            if path == "/" {
                pq = if query.is_empty() {
                    "/socket.io/".to_string()
                } else {
                    format!("/socket.io/?{query}")
                };
            }
            match query_param(&pq, "EIO") {
                Some("4") => {}
                Some(v) => {
                    return Err(format!(
                        "socketio speaks Engine.IO 4, the url asks for EIO={}",
                        short(v)
                    ));
                }
                None => pq = with_param(&pq, "EIO", "4"),
            }
            match query_param(&pq, "transport") {
                Some("websocket") => {}
                Some(v) => {
                    return Err(format!(
                        "socketio uses the websocket transport, the url asks for transport={}",
                        short(v)
                    ));
                }
                None => pq = with_param(&pq, "transport", "websocket"),
            }
        }
        Ok(pq)
    }

    /// Compiles the expectation, reads the CA file, builds the upgrade request's headers and
    /// the TLS config.
    pub fn build(&self) -> Result<Check, String> {
        if let Some(e) = self.validate().into_iter().next() {
            return Err(format!("{}: {}", e.path, e.message));
        }
        let target = parse_target(&self.url).map_err(|e| format!("url: {e}"))?;
        let path = self
            .session_path(&target)
            .map_err(|e| format!("url: {e}"))?;
        let uri: http::Uri = format!(
            "{}://{}{path}",
            if target.secure { "wss" } else { "ws" },
            target.authority()
        )
        .parse()
        .map_err(|e: http::uri::InvalidUri| format!("url: invalid url: {e}"))?;

        let mut secrets = Vec::new();
        let mut headers = net::sensitive_headers(&self.headers, "headers", &mut secrets)?;
        if let Some(userinfo) = &target.userinfo {
            let auth = net::userinfo_auth(userinfo, &mut secrets);
            if !headers.contains_key(header::AUTHORIZATION) {
                headers.insert(header::AUTHORIZATION, auth);
            }
        }
        if let Some(px) = &self.phoenix {
            json_strings(&px.payload, &mut secrets);
        }
        let secrets = crate::redact::secret_list(secrets);

        if !headers.contains_key(header::HOST) {
            let host = HeaderValue::from_str(&target.authority())
                .map_err(|_| "url: invalid host".to_string())?;
            headers.insert(header::HOST, host);
        }
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        if !self.subprotocols.is_empty() {
            let offered = HeaderValue::from_str(&self.subprotocols.join(", "))
                .map_err(|_| "subprotocols: invalid subprotocol".to_string())?;
            headers.insert(header::SEC_WEBSOCKET_PROTOCOL, offered);
        }

        let preset = if let Some(px) = &self.phoenix {
            let v2 = px.vsn == "2.0.0";
            let join = if v2 {
                serde_json::json!(["1", "1", px.topic, "phx_join", px.payload])
            } else {
                serde_json::json!({
                    "topic": px.topic, "event": "phx_join", "payload": px.payload,
                    "ref": "1", "join_ref": "1",
                })
            };
            Preset::Phoenix {
                join: join.to_string(),
                topic: px.topic.clone(),
                v2,
            }
        } else if let Some(sio) = &self.socketio {
            Preset::SocketIo {
                namespace: sio.namespace.clone(),
            }
        } else {
            Preset::None
        };
        let expect = match &self.expect {
            None => None,
            Some(e) => Some(Matcher {
                contains: e.contains.clone(),
                regex: e
                    .regex
                    .as_deref()
                    .map(regex::Regex::new)
                    .transpose()
                    .map_err(|err| format!("expect.regex: {}", regex_error(&err)))?,
                json: e.json.clone(),
                within: e.within.map(|w| w.0),
            }),
        };

        // The upgrade is an HTTP/1.1 request: a server that would pick h2 must not.
        let tls = TlsClient::new(
            self.tls.insecure_skip_verify,
            self.tls.ca_file.as_deref(),
            "tls.ca_file",
            net::ALPN_HTTP1,
        )?;
        let max_frame = self.max_frame.map_or(DEFAULT_MAX_FRAME, |b| b.0);

        Ok(Check {
            spec: self.clone(),
            target,
            uri,
            headers,
            preset,
            expect,
            max_frame,
            tls,
            secrets,
        })
    }
}

/// `token` characters of RFC 9110, what a subprotocol name is made of.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn check_namespace(ns: &str) -> Result<(), String> {
    if !ns.starts_with('/') {
        return Err(format!("namespace {:?} must start with /", short(ns)));
    }
    if ns.contains([',', '?', ' ']) || ns.chars().any(char::is_control) {
        return Err(format!(
            "namespace {:?} must not contain commas, spaces or ?",
            short(ns)
        ));
    }
    Ok(())
}

/// Collects the string values of a JSON document (join parameters often carry a token).
fn json_strings(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|v| json_strings(v, out)),
        serde_json::Value::Object(o) => o.values().for_each(|v| json_strings(v, out)),
        _ => {}
    }
}

/// The value of query parameter `name` in a path-and-query, when present.
fn query_param<'a>(pq: &'a str, name: &str) -> Option<&'a str> {
    let query = pq.split_once('?')?.1;
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then_some(v)
    })
}

/// `pq` with `name=value` appended to its query.
fn with_param(pq: &str, name: &str, value: &str) -> String {
    let sep = if !pq.contains('?') {
        "?"
    } else if pq.ends_with(['?', '&']) {
        ""
    } else {
        "&"
    };
    format!("{pq}{sep}{name}={value}")
}

/// A parsed `ws`/`wss` URL.
type Target = net::UrlTarget;

/// Parses a probe URL. Errors never repeat the URL (it may hold a password).
fn parse_target(url: &str) -> Result<Target, String> {
    Target::parse(url, ["ws", "wss"])
}

/// What the session does after the upgrade, before `send` and `expect`.
enum Preset {
    None,
    /// Phoenix Channels: the join frame (ref `1`) and the topic its reply names.
    Phoenix {
        join: String,
        topic: String,
        v2: bool,
    },
    /// Socket.IO v4: wait for the Engine.IO open packet, connect the namespace.
    SocketIo {
        namespace: String,
    },
}

/// A compiled `expect`.
struct Matcher {
    contains: Option<String>,
    regex: Option<regex::Regex>,
    json: BTreeMap<String, serde_json::Value>,
    within: Option<Duration>,
}

impl Matcher {
    /// `Ok` when every condition holds on `text`; otherwise what did not, in words that never
    /// quote the frame itself (a frame may echo a token back).
    fn test(&self, text: &str) -> Result<(), String> {
        if let Some(want) = &self.contains
            && !text.contains(want.as_str())
        {
            return Err(format!("does not contain {:?}", short(want)));
        }
        if let Some(re) = &self.regex
            && !re.is_match(text)
        {
            return Err(format!("does not match /{}/", short(re.as_str())));
        }
        if !self.json.is_empty() {
            let doc: serde_json::Value =
                serde_json::from_str(text).map_err(|_| "is not json".to_string())?;
            for (ptr, want) in &self.json {
                match doc.pointer(ptr) {
                    None => return Err(format!("has no json {ptr:?}")),
                    Some(got) if !json_eq(got, want) => {
                        return Err(format!(
                            "has json {ptr:?} = {}, expected {}",
                            short(&got.to_string()),
                            short(&want.to_string())
                        ));
                    }
                    Some(_) => {}
                }
            }
        }
        Ok(())
    }
}

/// A runnable websocket probe.
pub struct Check {
    pub spec: Spec,
    target: Target,
    /// `ws://authority/path?query` after the preset's additions, without userinfo.
    uri: http::Uri,
    /// The upgrade request's headers but `Sec-WebSocket-Key`, which is fresh per connection.
    headers: HeaderMap,
    preset: Preset,
    expect: Option<Matcher>,
    /// Largest incoming frame or message, bytes.
    max_frame: u64,
    /// The TLS client config (the env's roots plus `tls.ca_file`, or any certificate).
    tls: TlsClient,
    /// Values that must never appear in a reason (userinfo, header values), longest first.
    secrets: Vec<String>,
}

/// Any connection the upgrade can run over: TCP, or TLS over TCP.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One upgraded session.
struct Session {
    ws: WebSocketStream<Box<dyn Io>>,
    /// Answer Engine.IO pings (`2`) with pongs (`3`) while waiting for frames.
    engine_io: bool,
    /// Bytes of data frames received.
    received: u64,
}

/// Why waiting for a frame ended without one.
enum Waited {
    /// `expect.within` ran out (before the deadline).
    Within,
    /// Anything else, in words: the deadline, the connection closing, a protocol error.
    Failed(String),
}

impl Check {
    /// One check: resolve, connect, TLS, upgrade, exchange, close; then the burst, when set.
    /// Never fails other than with an `Observation` that says why. `duration` runs from the
    /// start to the end of the exchange: neither the close nor the burst counts in it.
    pub async fn check(&self, cx: &CheckCx<'_>) -> Observation {
        let started = Instant::now();
        let mut obs = Observation::default();
        let outcome = self.main(cx, started, &mut obs).await;
        if obs.duration.is_zero() {
            obs.duration = started.elapsed();
        }
        if let Err(reason) = outcome {
            return obs.fail(self.scrub(reason));
        }
        obs.ok = true;
        if let (Some(n), Some(ip)) = (self.spec.burst, obs.ip)
            && let Err(reason) = self.burst(cx, started, ip, n, &mut obs).await
        {
            return obs.fail(self.scrub(reason));
        }
        obs
    }

    /// Blanks out any secret that found its way into a message (a second line of defence:
    /// messages are built never to include them).
    fn scrub(&self, reason: String) -> String {
        crate::redact::scrub(&reason, &self.secrets)
    }

    async fn main(
        &self,
        cx: &CheckCx<'_>,
        started: Instant,
        obs: &mut Observation,
    ) -> Result<(), String> {
        let ips = net::addresses(cx, started, obs, &self.target.host, IpPreference::Any).await?;
        let mut session = self.open(cx, started, obs, &ips).await?;
        let outcome = self.exchange(cx, started, obs, &mut session).await;
        obs.duration = started.elapsed();
        obs.size = Some(session.received);
        close(cx, session).await;
        outcome
    }

    /// Connects (each address in turn), TLS-wraps for `wss`, and upgrades, timing each step.
    async fn open(
        &self,
        cx: &CheckCx<'_>,
        started: Instant,
        obs: &mut Observation,
        ips: &[IpAddr],
    ) -> Result<Session, String> {
        let tcp = net::connect_any(cx, started, obs, ips, self.target.port).await?;

        let io: Box<dyn Io> = if self.target.secure {
            let t = Instant::now();
            let tls = self.tls_handshake(cx, started, tcp).await;
            obs.phase("tls", t.elapsed());
            let tls = tls?;
            net::record_tls(obs, tls.get_ref().1);
            Box::new(tls)
        } else {
            Box::new(tcp)
        };

        let t = Instant::now();
        let request = self.request(&cx.env.user_agent)?;
        let max = usize::try_from(self.max_frame).unwrap_or(usize::MAX);
        let config = WebSocketConfig::default()
            .max_frame_size(Some(max))
            .max_message_size(Some(max))
            // Many probes hold sessions at once (bursts): a small eager read buffer.
            .read_buffer_size(16 << 10)
            .write_buffer_size(0);
        let upgraded = until(
            cx,
            started,
            "waiting for the websocket upgrade",
            tokio_tungstenite::client_async_with_config(request, io, Some(config)),
        )
        .await;
        obs.phase("upgrade", t.elapsed());
        match upgraded? {
            Ok((ws, response)) => {
                obs.status_code = Some(response.status().as_u16());
                Ok(Session {
                    ws,
                    engine_io: matches!(self.preset, Preset::SocketIo { .. }),
                    received: 0,
                })
            }
            Err(WsError::Http(response)) => {
                let status = response.status();
                obs.status_code = Some(status.as_u16());
                Err(match status.canonical_reason() {
                    Some(words) => format!(
                        "upgrade refused: {} {}",
                        status.as_u16(),
                        words.to_ascii_lowercase()
                    ),
                    None => format!("upgrade refused: {}", status.as_u16()),
                })
            }
            Err(e) => {
                // These are checked only once the server answered 101.
                if let WsError::Protocol(
                    ProtocolError::MissingUpgradeWebSocketHeader
                    | ProtocolError::MissingConnectionUpgradeHeader
                    | ProtocolError::SecWebSocketAcceptKeyMismatch
                    | ProtocolError::SecWebSocketSubProtocolError(_),
                ) = &e
                {
                    obs.status_code = Some(101);
                }
                Err(match e {
                    WsError::Protocol(ProtocolError::HandshakeIncomplete) => {
                        "upgrade failed: connection closed by the server before its response"
                            .to_string()
                    }
                    e => format!("upgrade failed: {}", ws_error_text(&e)),
                })
            }
        }
    }

    /// The upgrade request: the prepared headers, the env's `User-Agent` unless the spec
    /// set one, and a fresh key.
    fn request(&self, user_agent: &HeaderValue) -> Result<http::Request<()>, String> {
        let mut request = http::Request::new(());
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = self.headers.clone();
        if !request.headers().contains_key(header::USER_AGENT) {
            request
                .headers_mut()
                .insert(header::USER_AGENT, user_agent.clone());
        }
        let key = tokio_tungstenite::tungstenite::handshake::client::generate_key();
        let key = HeaderValue::from_str(&key).map_err(|_| "upgrade: bad key".to_string())?;
        request.headers_mut().insert(header::SEC_WEBSOCKET_KEY, key);
        Ok(request)
    }

    /// The TLS config for this env's roots, built once and cached.
    fn tls_config(&self, env: &Env) -> Result<Arc<ClientConfig>, String> {
        self.tls.config(env)
    }

    async fn tls_handshake(
        &self,
        cx: &CheckCx<'_>,
        started: Instant,
        tcp: TcpStream,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
        let config = self.tls_config(cx.env)?;
        let name = self
            .spec
            .tls
            .server_name
            .as_deref()
            .unwrap_or(&self.target.host);
        net::tls_handshake(cx, started, config, name, tcp).await
    }

    /// The exchange after the upgrade: the preset's join, `send`, then `expect`. Timed as
    /// `join` when there is anything to do.
    async fn exchange(
        &self,
        cx: &CheckCx<'_>,
        started: Instant,
        obs: &mut Observation,
        s: &mut Session,
    ) -> Result<(), String> {
        if matches!(self.preset, Preset::None) && self.spec.send.is_empty() && self.expect.is_none()
        {
            return Ok(());
        }
        let t = Instant::now();
        let outcome = match self.spec.join_under.map(|d| d.0) {
            // Cut at the bound when it comes before the deadline (else the deadline cuts).
            Some(limit) if t + limit < cx.deadline => {
                match tokio::time::timeout(limit, self.script(cx, started, s)).await {
                    Ok(done) => done.and_then(|()| join_in_time(t.elapsed(), limit)),
                    Err(_) => Err(format!(
                        "join took longer than {} (join_under)",
                        format_duration(limit)
                    )),
                }
            }
            Some(limit) => self
                .script(cx, started, s)
                .await
                .and_then(|()| join_in_time(t.elapsed(), limit)),
            None => self.script(cx, started, s).await,
        };
        obs.phase("join", t.elapsed());
        outcome
    }

    async fn script(
        &self,
        cx: &CheckCx<'_>,
        started: Instant,
        s: &mut Session,
    ) -> Result<(), String> {
        match &self.preset {
            Preset::None => {}
            Preset::Phoenix { join, topic, v2 } => {
                phoenix_join(cx, started, s, join, topic, *v2).await?;
            }
            Preset::SocketIo { namespace } => {
                socketio_connect(cx, started, s, namespace).await?;
            }
        }
        for frame in &self.spec.send {
            s.send(cx, started, frame, "sending a frame").await?;
        }
        let Some(m) = &self.expect else {
            return Ok(());
        };
        let what = "waiting for a frame matching expect";
        let within_end = m.within.map(|w| Instant::now() + w);
        let mut missed = 0u32;
        let mut last_miss = None;
        loop {
            let summary = || match &last_miss {
                None => "no text frame came".to_string(),
                Some(miss) => format!(
                    "{missed} frame{} did not match, the last one {miss}",
                    if missed == 1 { "" } else { "s" }
                ),
            };
            match s.next_text(cx, started, what, within_end).await {
                Ok(text) => match m.test(&text) {
                    Ok(()) => return Ok(()),
                    Err(miss) => {
                        missed += 1;
                        last_miss = Some(miss);
                    }
                },
                Err(Waited::Within) => {
                    let within = m.within.unwrap_or_default();
                    return Err(format!(
                        "no frame matched expect within {} ({})",
                        format_duration(within),
                        summary()
                    ));
                }
                Err(Waited::Failed(e)) => return Err(format!("{e} ({})", summary())),
            }
        }
    }

    /// Opens `n` joins at once to `ip` and records their time distribution; any failed join
    /// fails the check, with how many failed and why.
    async fn burst(
        &self,
        cx: &CheckCx<'_>,
        started: Instant,
        ip: IpAddr,
        n: u32,
        obs: &mut Observation,
    ) -> Result<(), String> {
        // Every join runs in this task (no spawn): dropping the check drops them all.
        let joins = (0..n).map(|_| self.burst_join(cx, started, ip));
        let results = futures_util::future::join_all(joins).await;
        let mut times = Vec::with_capacity(results.len());
        let mut failures: Vec<(String, u32)> = Vec::new();
        for r in results {
            match r {
                Ok(took) => times.push(took),
                Err(reason) => match failures.iter_mut().find(|(f, _)| *f == reason) {
                    Some((_, count)) => *count += 1,
                    None => failures.push((reason, 1)),
                },
            }
        }
        if !times.is_empty() {
            times.sort();
            obs.phase("burst_p50", percentile(&times, 50));
            obs.phase("burst_p95", percentile(&times, 95));
            obs.phase("burst_max", times[times.len() - 1]);
        }
        if failures.is_empty() {
            return Ok(());
        }
        let failed: u32 = failures.iter().map(|(_, c)| c).sum();
        failures.sort_by_key(|(_, c)| std::cmp::Reverse(*c));
        let mut why: Vec<String> = failures
            .iter()
            .take(3)
            .map(|(reason, count)| {
                if failures.len() == 1 {
                    reason.clone()
                } else {
                    format!("{count}× {reason}")
                }
            })
            .collect();
        if failures.len() > 3 {
            why.push("…".into());
        }
        Err(format!(
            "burst: {failed} of {n} joins failed ({})",
            why.join("; ")
        ))
    }

    /// One join of a burst: its connect-to-exchange time, or why it failed.
    async fn burst_join(
        &self,
        cx: &CheckCx<'_>,
        started: Instant,
        ip: IpAddr,
    ) -> Result<Duration, String> {
        let t = Instant::now();
        let mut scratch = Observation::default();
        let mut session = self.open(cx, started, &mut scratch, &[ip]).await?;
        let outcome = self.exchange(cx, started, &mut scratch, &mut session).await;
        let took = t.elapsed();
        close(cx, session).await;
        outcome.map(|()| took)
    }
}

/// A join that finished but took `took`, against `join_under`.
fn join_in_time(took: Duration, limit: Duration) -> Result<(), String> {
    if took < limit {
        return Ok(());
    }
    Err(format!(
        "join took {}, expected under {} (join_under)",
        format_duration(Duration::from_millis(took.as_millis() as u64)),
        format_duration(limit)
    ))
}

/// The `p`th percentile (nearest rank) of sorted, non-empty `times`.
fn percentile(times: &[Duration], p: usize) -> Duration {
    let rank = (times.len() * p).div_ceil(100).max(1);
    times[rank.min(times.len()) - 1]
}

/// Sends Close and waits briefly for the server's reply, never past the deadline. A server
/// that does not reply is not a failure of the check; the socket is dropped either way.
async fn close(cx: &CheckCx<'_>, mut s: Session) {
    let end = cx.deadline.min(Instant::now() + CLOSE_GRACE);
    let _ = tokio::time::timeout_at(end, async {
        if s.ws.close(None).await.is_err() {
            return;
        }
        while let Some(Ok(msg)) = s.ws.next().await {
            if matches!(msg, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

impl Session {
    async fn send(
        &mut self,
        cx: &CheckCx<'_>,
        started: Instant,
        text: &str,
        what: &str,
    ) -> Result<(), String> {
        until(cx, started, what, self.ws.send(Message::text(text)))
            .await?
            .map_err(|e| format!("{what}: {}", ws_error_text(&e)))
    }

    /// The next text frame, until the deadline.
    async fn next_by_deadline(
        &mut self,
        cx: &CheckCx<'_>,
        started: Instant,
        what: &str,
    ) -> Result<Utf8Bytes, String> {
        match self.next_text(cx, started, what, None).await {
            Ok(text) => Ok(text),
            Err(Waited::Failed(e)) => Err(e),
            // Only a `within_end` ends a wait this way; there is none here.
            Err(Waited::Within) => Err(format!("timed out while {what}")),
        }
    }

    /// The next text frame, skipping control and binary frames, until `within_end` or the
    /// deadline, whichever comes first.
    async fn next_text(
        &mut self,
        cx: &CheckCx<'_>,
        started: Instant,
        what: &str,
        within_end: Option<Instant>,
    ) -> Result<Utf8Bytes, Waited> {
        loop {
            let next = match within_end {
                Some(end) if end < cx.deadline => tokio::time::timeout_at(end, self.ws.next())
                    .await
                    .map_err(|_| Waited::Within)?,
                _ => until(cx, started, what, self.ws.next())
                    .await
                    .map_err(Waited::Failed)?,
            };
            let msg = match next {
                None => {
                    return Err(Waited::Failed(format!(
                        "connection closed by the server while {what}"
                    )));
                }
                Some(Err(e)) => {
                    return Err(Waited::Failed(format!(
                        "{} while {what}",
                        ws_error_text(&e)
                    )));
                }
                Some(Ok(msg)) => msg,
            };
            match msg {
                Message::Text(text) => {
                    self.received += text.len() as u64;
                    if self.engine_io && text.as_str() == "2" {
                        self.send(cx, started, "3", "answering an engine.io ping")
                            .await
                            .map_err(Waited::Failed)?;
                        continue;
                    }
                    return Ok(text);
                }
                Message::Binary(data) => self.received += data.len() as u64,
                Message::Close(frame) => {
                    return Err(Waited::Failed(format!(
                        "the server closed the websocket{} while {what}",
                        close_text(frame.as_ref())
                    )));
                }
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        }
    }
}

/// ` (code 1008: reason)`: a Close frame's code and reason, for messages.
fn close_text(frame: Option<&CloseFrame>) -> String {
    match frame {
        None => String::new(),
        Some(f) if f.reason.is_empty() => format!(" (code {})", f.code),
        Some(f) => format!(" (code {}: {})", f.code, short(f.reason.as_str())),
    }
}

/// Joins a Phoenix topic with ref `1` and waits for its reply, skipping other frames
/// (presence pushes, other topics).
async fn phoenix_join(
    cx: &CheckCx<'_>,
    started: Instant,
    s: &mut Session,
    join: &str,
    topic: &str,
    v2: bool,
) -> Result<(), String> {
    s.send(cx, started, join, "sending the phoenix join")
        .await?;
    let what = "waiting for the phoenix join reply";
    loop {
        let text = s.next_by_deadline(cx, started, what).await?;
        let Some(msg) = PhoenixMessage::parse(&text, v2) else {
            continue;
        };
        if msg.topic != topic {
            continue;
        }
        match msg.event.as_str() {
            "phx_reply" if msg.reference.as_deref() == Some("1") => {}
            "phx_error" => return Err("phoenix channel crashed while joining (phx_error)".into()),
            "phx_close" => return Err("phoenix channel closed while joining (phx_close)".into()),
            _ => continue,
        }
        let status = msg.payload.get("status").and_then(|s| s.as_str());
        return match status {
            Some("ok") => Ok(()),
            Some("error") => {
                let response = msg.payload.get("response");
                let reason = match response.and_then(|r| r.get("reason")) {
                    Some(serde_json::Value::String(r)) => short(r),
                    Some(other) => short(&other.to_string()),
                    None => {
                        response.map_or_else(|| "no reason given".into(), |r| short(&r.to_string()))
                    }
                };
                Err(format!("phoenix join refused: {reason}"))
            }
            Some(other) => Err(format!(
                "phoenix join reply has status {:?}, expected \"ok\"",
                short(other)
            )),
            None => Err("phoenix join reply has no status".into()),
        };
    }
}

/// One Phoenix message, from either serializer.
struct PhoenixMessage {
    reference: Option<String>,
    topic: String,
    event: String,
    payload: serde_json::Value,
}

impl PhoenixMessage {
    /// `[join_ref, ref, topic, event, payload]` (v2) or `{topic, event, payload, ref}` (v1);
    /// `None` for anything else.
    fn parse(text: &str, v2: bool) -> Option<PhoenixMessage> {
        let doc: serde_json::Value = serde_json::from_str(text).ok()?;
        let reference = |v: Option<&serde_json::Value>| match v? {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        if v2 {
            let parts = doc.as_array()?;
            if parts.len() != 5 {
                return None;
            }
            Some(PhoenixMessage {
                reference: reference(parts.get(1)),
                topic: parts[2].as_str()?.to_string(),
                event: parts[3].as_str()?.to_string(),
                payload: parts[4].clone(),
            })
        } else {
            let obj = doc.as_object()?;
            Some(PhoenixMessage {
                reference: reference(obj.get("ref")),
                topic: obj.get("topic")?.as_str()?.to_string(),
                event: obj.get("event")?.as_str()?.to_string(),
                payload: obj.get("payload").cloned().unwrap_or_default(),
            })
        }
    }
}

/// Socket.IO v4 over Engine.IO 4: waits for the open packet (`0{"sid":…}`), sends the
/// namespace CONNECT (`40` or `40/ns,`), and waits for its answer: CONNECT (`40…{"sid":…}`)
/// or CONNECT_ERROR (`44…{"message":…}`).
async fn socketio_connect(
    cx: &CheckCx<'_>,
    started: Instant,
    s: &mut Session,
    namespace: &str,
) -> Result<(), String> {
    let what = "waiting for the engine.io open packet";
    let text = s.next_by_deadline(cx, started, what).await?;
    let open = text
        .strip_prefix('0')
        .and_then(|json| serde_json::from_str::<serde_json::Value>(json).ok());
    if !open.is_some_and(|o| o.get("sid").is_some_and(|sid| sid.is_string())) {
        return Err(format!(
            "expected the engine.io open packet (0{{\"sid\":…}}), got {:?}",
            short(&text)
        ));
    }
    let connect = if namespace == "/" {
        "40".to_string()
    } else {
        format!("40{namespace},")
    };
    s.send(cx, started, &connect, "sending the socket.io connect")
        .await?;
    let what = "waiting for the socket.io connect reply";
    loop {
        let text = s.next_by_deadline(cx, started, what).await?;
        if text.as_str() == "1" {
            return Err(format!(
                "the engine.io session was closed by the server (close packet) while {what}"
            ));
        }
        // Engine.IO `4` is a message: a Socket.IO packet follows.
        let Some(packet) = text.strip_prefix('4') else {
            continue;
        };
        let mut chars = packet.chars();
        let kind = chars.next();
        let rest = chars.as_str();
        let (ns, data) = match rest.strip_prefix('/') {
            Some(_) => rest.split_once(',').unwrap_or((rest, "")),
            None => ("/", rest),
        };
        if ns != namespace {
            continue;
        }
        match kind {
            Some('0') => return Ok(()),
            Some('4') => {
                let message = match serde_json::from_str::<serde_json::Value>(data) {
                    Ok(serde_json::Value::Object(o)) => match o.get("message") {
                        Some(serde_json::Value::String(m)) => short(m),
                        _ => short(data),
                    },
                    Ok(serde_json::Value::String(m)) => short(&m),
                    _ if data.is_empty() => "no message given".into(),
                    _ => short(data),
                };
                return Err(format!("socket.io connect error: {message}"));
            }
            _ => continue,
        }
    }
}

/// A websocket error in words (lower case, no library prefixes).
fn ws_error_text(e: &WsError) -> String {
    match e {
        WsError::ConnectionClosed | WsError::AlreadyClosed => "connection closed".into(),
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            "connection closed by the server without a close frame".into()
        }
        WsError::Io(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            "connection closed by the server".into()
        }
        WsError::Io(io) => crate::text::io_text(io),
        WsError::Capacity(CapacityError::MessageTooLong { size, max_size }) => format!(
            "the server sent a frame of {}, over max_frame ({})",
            format_bytes(*size as u64),
            format_bytes(*max_size as u64)
        ),
        WsError::Utf8(_) => "the server sent a text frame that is not utf-8".into(),
        WsError::Protocol(p) => {
            format!("websocket protocol error: {}", lower_first(&p.to_string()))
        }
        WsError::Http(r) => format!("http status {}", r.status().as_u16()),
        other => lower_first(&other.to_string()),
    }
}

#[cfg(test)]
mod tests;
