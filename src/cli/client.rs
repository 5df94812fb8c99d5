//! A small HTTP/1.1 client for talking to the daemon's API on loopback (hyper over a plain
//! TCP connection, with a deadline on every call).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;

/// Why the daemon could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid daemon url {0:?} (expected http://host:port)")]
    BadUrl(String),
    #[error("cannot reach probed at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("probed at {url} answered {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
}

/// GET `base + path` and return the body; non-2xx is an error carrying the body.
pub async fn get(base: &str, path: &str, timeout: Duration) -> Result<Bytes, ClientError> {
    request(http::Method::GET, base, path, None, None, timeout).await
}

/// GET `base + path` and return the status and body, whatever the status (`/healthz`
/// answers 503 with a body worth reading).
pub async fn get_any(
    base: &str,
    path: &str,
    timeout: Duration,
) -> Result<(u16, Bytes), ClientError> {
    exchange(http::Method::GET, base, path, None, None, timeout).await
}

/// A request with an optional bearer token and JSON body; non-2xx is an error carrying the
/// body.
pub async fn request(
    method: http::Method,
    base: &str,
    path: &str,
    token: Option<&str>,
    json: Option<serde_json::Value>,
    timeout: Duration,
) -> Result<Bytes, ClientError> {
    let url = format!("{}{}", base.trim_end_matches('/'), path);
    let (status, body) = exchange(method, base, path, token, json, timeout).await?;
    if (200..300).contains(&status) {
        Ok(body)
    } else {
        Err(ClientError::Status {
            url,
            status,
            body: String::from_utf8_lossy(&body[..body.len().min(500)]).into_owned(),
        })
    }
}

/// One request: the status and the body (at most 256 MiB), within `timeout`.
async fn exchange(
    method: http::Method,
    base: &str,
    path: &str,
    token: Option<&str>,
    json: Option<serde_json::Value>,
    timeout: Duration,
) -> Result<(u16, Bytes), ClientError> {
    let url = format!("{}{}", base.trim_end_matches('/'), path);
    let uri: http::Uri = url.parse().map_err(|_| ClientError::BadUrl(url.clone()))?;
    if uri.scheme_str() != Some("http") {
        return Err(ClientError::BadUrl(url));
    }
    let host = uri
        .host()
        .ok_or_else(|| ClientError::BadUrl(url.clone()))?
        .trim_matches(|c| c == '[' || c == ']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(80);
    let unreachable = |reason: String| ClientError::Unreachable {
        url: base.to_owned(),
        reason,
    };
    let work = async {
        let stream = tokio::net::TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let driver = tokio::spawn(conn);
        let mut req = http::Request::builder()
            .method(method)
            .uri(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
            .header(http::header::HOST, format!("{host}:{port}"))
            .header(
                http::header::USER_AGENT,
                concat!("probectl/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(t) = token {
            req = req.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let body = match &json {
            Some(v) => {
                req = req.header(http::header::CONTENT_TYPE, "application/json");
                Bytes::from(serde_json::to_vec(v).unwrap_or_default())
            }
            None => Bytes::new(),
        };
        let req = req
            .body(Full::new(body))
            .map_err(|_| ClientError::BadUrl(url.clone()))?;
        let res = sender.send_request(req).await;
        let out = match res {
            Err(e) => Err(unreachable(e.to_string())),
            Ok(resp) => {
                let status = resp.status().as_u16();
                match Limited::new(resp.into_body(), 256 << 20).collect().await {
                    Err(e) => Err(unreachable(format!("reading the answer: {e}"))),
                    Ok(b) => Ok((status, b.to_bytes())),
                }
            }
        };
        driver.abort();
        out
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(unreachable(format!(
            "no answer within {}",
            crate::units::format_duration(timeout)
        ))),
    }
}
