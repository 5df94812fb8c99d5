//! A local HTTP receiver for alert tests: records every request (path, headers, JSON body)
//! and answers from a script (a queue of replies, then a default). Speaks enough of
//! PagerDuty's Events API v2 (`POST /v2/enqueue` -> 202 `{"status":"success",...}`, one
//! incident per `dedup_key`) to stand in for it, and serves as a webhook receiver.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Status and JSON body.
    Status(u16, &'static str),
    /// Read the request, never answer (the connection stays open until the test ends).
    Hang,
}

#[derive(Debug, Clone)]
pub struct Request {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: serde_json::Value,
    /// The body as text (for bodies that are not JSON, e.g. a heartbeat's `/fail` reasons).
    pub text: String,
    /// What was answered.
    pub answered: Option<u16>,
    /// When the request was read (wall clock, to compare with a fault's time).
    pub at: std::time::SystemTime,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct State {
    script: VecDeque<Reply>,
    requests: Vec<Request>,
}

pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    /// Starts on 127.0.0.1:`port` (0: any), answering `default` once the script is used up.
    pub async fn start_on(port: u16, default: Reply, script: Vec<Reply>) -> Receiver {
        let l = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let addr = l.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            script: script.into(),
            requests: Vec::new(),
        }));
        let st = state.clone();
        let dflt = default.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = l.accept().await else {
                    continue;
                };
                let st = st.clone();
                let dflt = dflt.clone();
                tokio::spawn(async move {
                    let Some((path, headers, body)) = read_request(&mut s).await else {
                        return;
                    };
                    let reply = {
                        let mut g = st.lock().unwrap();
                        let reply = g.script.pop_front().unwrap_or(dflt);
                        g.requests.push(Request {
                            path,
                            headers,
                            body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
                            text: String::from_utf8_lossy(&body).into_owned(),
                            answered: match reply {
                                Reply::Status(c, _) => Some(c),
                                Reply::Hang => None,
                            },
                            at: std::time::SystemTime::now(),
                        });
                        reply
                    };
                    match reply {
                        Reply::Hang => {
                            // Hold the connection open until the peer goes away.
                            let mut buf = [0u8; 64];
                            while let Ok(n) = s.read(&mut buf).await {
                                if n == 0 {
                                    break;
                                }
                            }
                        }
                        Reply::Status(code, body) => {
                            let extra = if code == 429 {
                                "Retry-After: 1\r\n"
                            } else {
                                ""
                            };
                            let resp = format!(
                                "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                                body.len()
                            );
                            let _ = s.write_all(resp.as_bytes()).await;
                            let _ = s.shutdown().await;
                        }
                    }
                });
            }
        });
        Receiver { addr, state, task }
    }

    /// A PagerDuty-like endpoint: 202 with the Events API's success body.
    pub async fn pagerduty(script: Vec<Reply>) -> Receiver {
        Receiver::start_on(
            0,
            Reply::Status(
                202,
                r#"{"status":"success","message":"Event processed","dedup_key":"x"}"#,
            ),
            script,
        )
        .await
    }

    /// A webhook receiver: 200 `{}`.
    pub async fn webhook(script: Vec<Reply>) -> Receiver {
        Receiver::start_on(0, Reply::Status(200, "{}"), script).await
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().requests.clone()
    }

    /// The requests answered with 2xx.
    pub fn accepted(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.answered.is_some_and(|c| (200..300).contains(&c)))
            .collect()
    }

    /// Polls until `pred` holds for the accepted requests; returns them and the time waited.
    pub fn wait_accepted(
        &self,
        limit: Duration,
        what: &str,
        pred: impl Fn(&[Request]) -> bool,
    ) -> (Vec<Request>, Duration) {
        let t0 = Instant::now();
        loop {
            let got = self.accepted();
            if pred(&got) {
                return (got, t0.elapsed());
            }
            if t0.elapsed() > limit {
                panic!("timed out after {limit:?} waiting for {what}; got {got:#?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Distinct dedup keys of accepted PagerDuty-style events: one per incident.
    pub fn incidents(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .accepted()
            .iter()
            .filter_map(|r| r.body["dedup_key"].as_str().map(str::to_owned))
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }
}

async fn read_request(
    s: &mut tokio::net::TcpStream,
) -> Option<(String, Vec<(String, String)>, Vec<u8>)> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 1 << 20 {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let path = lines.next()?.split(' ').nth(1)?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some((path, headers, body))
}
