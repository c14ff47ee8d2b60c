//! The guard in front of Engine.IO's HTTP transport: **a player's public id is never a
//! transport session id.**
//!
//! socketioxide gives each socket its Engine.IO session id (`sid`) as its Socket.IO id, and we,
//! like the original backend, show that id to the other players (`matchFound`, `sender`,
//! `getGameState`). Engine.IO's long-polling transport takes the `sid` in the query string as the
//! only proof of who is asking, so whoever knew a polling player's id could post events as that
//! player, read its events, or take its session over with a websocket upgrade.
//!
//! So the `sid` a client is handed at the handshake is replaced here by a secret alias (128
//! random bits), and every request that names a session must name it by its alias: a request
//! naming an unknown session, the real id included, is refused as Engine.IO refuses an unknown
//! session (400, `Session ID unknown`). The socket's id, and so every id players see, stays as
//! it was; the official client keeps finding itself by `socket.id` in `matchFound`.
//!
//! An alias is used for polling requests and for the one upgrade request; a websocket never
//! names its session again. So an alias unused for longer than Engine.IO would keep a silent
//! session ([`ALIAS_IDLE`]) is forgotten.
//!
//! The same guard splits a polling request that carries a Socket.IO `connect` packet followed by
//! more packets: the part up to the connect goes first, the rest once the socket is connected
//! (see `listener::gate` for the websocket side of this).

use axum::body::{Body, Bytes};
use axum::http::{Method, Request, Response, StatusCode, Uri, header};
use futures_util::future::BoxFuture;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tower::{Layer, Service};

/// Longer than Engine.IO keeps a session that stopped answering (socketioxide's defaults: a ping
/// every 25 s, 20 s to answer it), so a live polling session always uses its alias in time.
pub const ALIAS_IDLE: Duration = Duration::from_secs(60);

/// How long the rest of a polling request waits for the connect in front of it to complete.
const CONNECT_WAIT: Duration = Duration::from_secs(5);

/// Whether the socket with this id is connected to this namespace (answered by the gateway).
pub type IsConnected = Arc<dyn Fn(&str, &str) -> bool + Send + Sync>;

/// Secret aliases of Engine.IO session ids.
pub struct Transport {
    path: String,
    max_payload: usize,
    is_connected: IsConnected,
    aliases: Mutex<HashMap<String, Alias>>,
    /// Set when the instance shuts down: new sessions are refused with 503.
    closing: AtomicBool,
}

struct Alias {
    sid: String,
    used: Instant,
}

impl Transport {
    /// A guard for the Engine.IO transport at `path` (`/socket.io`), whose requests carry at
    /// most `max_payload` bytes.
    pub fn new(path: &str, max_payload: usize, is_connected: IsConnected) -> Arc<Self> {
        Arc::new(Transport {
            path: path.to_string(),
            max_payload,
            is_connected,
            aliases: Mutex::new(HashMap::new()),
            closing: AtomicBool::new(false),
        })
    }

    /// Refuses every new session from now on (503, which a load balancer may retry on another
    /// instance); sessions already open go on.
    pub fn refuse_new_sessions(&self) {
        self.closing.store(true, Ordering::Relaxed);
    }

    fn aliases(&self) -> std::sync::MutexGuard<'_, HashMap<String, Alias>> {
        self.aliases
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A new secret alias for `sid`.
    fn alias(&self, sid: &str) -> String {
        let alias = hex::encode(rand::random::<[u8; 16]>());
        self.aliases().insert(
            alias.clone(),
            Alias {
                sid: sid.to_string(),
                used: Instant::now(),
            },
        );
        alias
    }

    /// The session an alias stands for.
    fn resolve(&self, alias: &str) -> Option<String> {
        let mut aliases = self.aliases();
        let entry = aliases.get_mut(alias)?;
        entry.used = Instant::now();
        Some(entry.sid.clone())
    }

    /// Forgets aliases unused for [`ALIAS_IDLE`]; returns how many are left.
    pub fn forget_idle(&self) -> usize {
        let mut aliases = self.aliases();
        aliases.retain(|_, alias| alias.used.elapsed() < ALIAS_IDLE);
        aliases.len()
    }

    /// Forgets idle aliases every few seconds, for ever.
    pub async fn sweep(self: Arc<Self>) {
        let mut every = tokio::time::interval(ALIAS_IDLE / 4);
        loop {
            every.tick().await;
            self.forget_idle();
        }
    }
}

/// The guard as a tower layer, in front of socketioxide's.
#[derive(Clone)]
pub struct TransportLayer(pub Arc<Transport>);

impl<S> Layer<S> for TransportLayer {
    type Service = TransportGuard<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TransportGuard {
            transport: self.0.clone(),
            inner,
        }
    }
}

#[derive(Clone)]
pub struct TransportGuard<S> {
    transport: Arc<Transport>,
    inner: S,
}

impl<S> Service<Request<Body>> for TransportGuard<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        // The clone that was made ready is the one to call (tower's rule for cloned services).
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let transport = self.transport.clone();
        Box::pin(async move { transport.guard(inner, request).await })
    }
}

impl Transport {
    async fn guard<S>(
        &self,
        mut inner: S,
        mut request: Request<Body>,
    ) -> Result<Response<Body>, S::Error>
    where
        S: Service<Request<Body>, Response = Response<Body>> + Clone,
    {
        if !request.uri().path().starts_with(&self.path) {
            return inner.call(request).await;
        }
        let query = Query::parse(request.uri());
        let polling = query.transport == Some("polling");
        let alias = query.sid.map(str::to_string);
        let Some(alias) = alias else {
            if self.closing.load(Ordering::Relaxed) {
                return Ok(shutting_down());
            }
            // A handshake: the answer's sid is replaced by an alias (polling; a websocket's is
            // never used again, since it never names its session).
            let response = inner.call(request).await?;
            return Ok(if polling {
                self.disguise_handshake(response).await
            } else {
                response
            });
        };
        let Some(sid) = self.resolve(&alias) else {
            return Ok(unknown_session());
        };
        *request.uri_mut() = with_sid(request.uri(), &sid);
        if request.method() == Method::POST && polling {
            return self.post(inner, request, &sid).await;
        }
        inner.call(request).await
    }

    /// Replaces the session id in a polling handshake's answer (`0{"sid":...}`) by an alias.
    async fn disguise_handshake(&self, response: Response<Body>) -> Response<Body> {
        if response.status() != StatusCode::OK {
            return response;
        }
        let (mut parts, body) = response.into_parts();
        let Ok(bytes) = axum::body::to_bytes(body, 64 * 1024).await else {
            return internal_error();
        };
        let Some(sid) = handshake_sid(&bytes) else {
            return internal_error();
        };
        let alias = self.alias(&sid);
        let text = String::from_utf8_lossy(&bytes).replacen(
            &format!("\"sid\":\"{sid}\""),
            &format!("\"sid\":\"{alias}\""),
            1,
        );
        parts.headers.remove(header::CONTENT_LENGTH);
        Response::from_parts(parts, Body::from(text))
    }

    /// A polling POST: if a connect packet stands in front of other packets, the connect goes
    /// alone, and the rest once the socket is connected.
    async fn post<S>(
        &self,
        mut inner: S,
        request: Request<Body>,
        sid: &str,
    ) -> Result<Response<Body>, S::Error>
    where
        S: Service<Request<Body>, Response = Response<Body>> + Clone,
    {
        let (parts, body) = request.into_parts();
        let Ok(bytes) = axum::body::to_bytes(body, self.max_payload).await else {
            return Ok(payload_too_large());
        };
        let Some((first, rest, namespace)) = split_after_connect(&bytes) else {
            return inner
                .call(Request::from_parts(parts, Body::from(bytes)))
                .await;
        };
        let mut first_request = Request::from_parts(parts.clone(), Body::from(first));
        first_request.headers_mut().remove(header::CONTENT_LENGTH);
        let answer = inner.call(first_request).await?;
        if !answer.status().is_success() {
            return Ok(answer);
        }
        let waited = Instant::now();
        while !(self.is_connected)(namespace, sid) && waited.elapsed() < CONNECT_WAIT {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let mut rest_request = Request::from_parts(parts, Body::from(rest));
        rest_request.headers_mut().remove(header::CONTENT_LENGTH);
        inner.call(rest_request).await
    }
}

/// The query parameters the guard reads.
#[derive(Debug, Default, PartialEq)]
struct Query<'a> {
    sid: Option<&'a str>,
    transport: Option<&'a str>,
}

impl<'a> Query<'a> {
    fn parse(uri: &'a Uri) -> Self {
        let mut query = Query::default();
        for pair in uri.query().unwrap_or_default().split('&') {
            match pair.split_once('=') {
                Some(("sid", value)) => query.sid = Some(value),
                Some(("transport", value)) => query.transport = Some(value),
                _ => {}
            }
        }
        query
    }
}

/// `uri` with its `sid` parameter set to `sid`.
fn with_sid(uri: &Uri, sid: &str) -> Uri {
    let query: Vec<String> = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some(("sid", _)) => format!("sid={sid}"),
            _ => pair.to_string(),
        })
        .collect();
    let rewritten = format!("{}?{}", uri.path(), query.join("&"));
    rewritten.parse().unwrap_or_else(|_| uri.clone())
}

/// The session id in a polling handshake's answer: `0{"sid":"...",...}`.
fn handshake_sid(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Open {
        sid: String,
    }
    let open = body.strip_prefix(b"0")?;
    serde_json::from_slice::<Open>(open)
        .ok()
        .map(|open| open.sid)
}

/// Engine.IO's packet separator in a polling payload.
const SEPARATOR: u8 = 0x1e;

/// If a Socket.IO connect packet (`40`, `40{auth}`, `40/ns,...`) stands in front of other
/// packets: the payload up to and with it, the rest, and the namespace it connects to.
fn split_after_connect(payload: &[u8]) -> Option<(Bytes, Bytes, &str)> {
    let mut start = 0;
    for (at, byte) in payload.iter().enumerate() {
        if *byte != SEPARATOR {
            continue;
        }
        let packet = &payload[start..at];
        if let Some(namespace) = connect_namespace(packet) {
            return Some((
                Bytes::copy_from_slice(&payload[..at]),
                Bytes::copy_from_slice(&payload[at + 1..]),
                namespace,
            ));
        }
        start = at + 1;
    }
    None
}

/// The namespace a Socket.IO connect packet connects to, if `packet` is one.
fn connect_namespace(packet: &[u8]) -> Option<&str> {
    let rest = packet.strip_prefix(b"40")?;
    if !rest.starts_with(b"/") {
        return Some("/");
    }
    let end = rest.iter().position(|b| *b == b',').unwrap_or(rest.len());
    std::str::from_utf8(&rest[..end]).ok()
}

fn unknown_session() -> Response<Body> {
    // Word for word what Engine.IO answers, so clients react as they do to an expired session.
    Response::builder()
        .status(StatusCode::BAD_REQUEST)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"code":"1","message":"Session ID unknown"}"#))
        .expect("a static response")
}

fn shutting_down() -> Response<Body> {
    Response::builder()
        .status(StatusCode::SERVICE_UNAVAILABLE)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::RETRY_AFTER, "1")
        .body(Body::from(
            r#"{"code":"shutting_down","message":"this instance is shutting down: connect to another"}"#,
        ))
        .expect("a static response")
}

fn payload_too_large() -> Response<Body> {
    Response::builder()
        .status(StatusCode::PAYLOAD_TOO_LARGE)
        .body(Body::empty())
        .expect("a static response")
}

fn internal_error() -> Response<Body> {
    Response::builder()
        .status(StatusCode::INTERNAL_SERVER_ERROR)
        .body(Body::empty())
        .expect("a static response")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_is_read_and_its_sid_replaced_alone() {
        let uri: Uri = "/socket.io/?EIO=4&transport=polling&t=abc&sid=public"
            .parse()
            .unwrap();
        assert_eq!(
            Query::parse(&uri),
            Query {
                sid: Some("public"),
                transport: Some("polling")
            }
        );
        assert_eq!(
            with_sid(&uri, "secret"),
            "/socket.io/?EIO=4&transport=polling&t=abc&sid=secret"
        );
    }

    #[test]
    fn a_handshake_names_its_session() {
        let body = br#"0{"sid":"AAAAAAAAAAAAAAAA","upgrades":["websocket"],"pingInterval":25000}"#;
        assert_eq!(handshake_sid(body).as_deref(), Some("AAAAAAAAAAAAAAAA"));
        assert_eq!(handshake_sid(b"40"), None);
        assert_eq!(handshake_sid(b"0not json"), None);
    }

    #[test]
    fn a_connect_followed_by_more_is_split_after_it() {
        let payload = b"40{\"token\":1}\x1e42[\"joinMatchmaking\",{\"level\":1}]\x1e3";
        let (first, rest, namespace) = split_after_connect(payload).unwrap();
        assert_eq!(&first[..], b"40{\"token\":1}");
        assert_eq!(&rest[..], b"42[\"joinMatchmaking\",{\"level\":1}]\x1e3");
        assert_eq!(namespace, "/");
        let (_, _, namespace) = split_after_connect(b"40/admin,{}\x1e42/admin,[\"x\"]").unwrap();
        assert_eq!(namespace, "/admin");
        // A connect alone, or last, goes as it is.
        assert!(split_after_connect(b"40").is_none());
        assert!(split_after_connect(b"3\x1e40").is_none());
        assert!(split_after_connect(b"42[\"a\"]\x1e42[\"b\"]").is_none());
    }

    #[test]
    fn idle_aliases_are_forgotten_and_used_ones_kept() {
        let transport = Transport::new("/socket.io", 1024, Arc::new(|_: &str, _: &str| true));
        let kept = transport.alias("kept");
        let idle = transport.alias("idle");
        assert_ne!(kept, idle);
        assert_eq!(transport.resolve(&kept).as_deref(), Some("kept"));
        assert_eq!(transport.resolve("kept"), None, "a real id is no alias");
        transport.aliases().get_mut(&idle).unwrap().used -= ALIAS_IDLE;
        assert_eq!(transport.forget_idle(), 1);
        assert_eq!(transport.resolve(&idle), None);
        assert_eq!(transport.resolve(&kept).as_deref(), Some("kept"));
    }
}
