//! Engine.IO spoken by hand, for tests that must send what no well-behaved client sends: forged
//! session ids, events in the same burst as the connect, connections dropped mid-handshake.

use crate::support::PATIENCE;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::net::SocketAddr;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Engine.IO's packet separator in a polling payload.
pub const SEPARATOR: char = '\u{1e}';

/// An HTTP long-polling client, one request at a time.
pub struct Polling {
    base: String,
    http: reqwest::Client,
    /// The session id the server handed out at the handshake.
    pub sid: String,
    /// Socket.IO packets received and not yet taken.
    pending: Vec<String>,
}

impl Polling {
    /// Opens an Engine.IO session by polling.
    pub async fn open(addr: SocketAddr) -> Polling {
        let base = format!("http://{addr}/socket.io/?EIO=4&transport=polling");
        let http = reqwest::Client::new();
        let body = http.get(&base).send().await.unwrap().text().await.unwrap();
        let open: Value = serde_json::from_str(body.strip_prefix('0').expect("an open packet"))
            .unwrap_or_else(|e| panic!("{body}: {e}"));
        Polling {
            base,
            http,
            sid: open["sid"].as_str().unwrap().to_string(),
            pending: Vec::new(),
        }
    }

    /// POSTs `payload` naming session `sid`: the status and the body.
    pub async fn post_as(&self, sid: &str, payload: &str) -> (u16, String) {
        let response = self
            .http
            .post(format!("{}&sid={sid}", self.base))
            .body(payload.to_string())
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// GETs naming session `sid`: the status and the body.
    pub async fn get_as(&self, sid: &str) -> (u16, String) {
        let response = self
            .http
            .get(format!("{}&sid={sid}", self.base))
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// POSTs packets in this client's own session.
    pub async fn send(&self, packets: &[&str]) {
        let joined = packets.join(&SEPARATOR.to_string());
        let (status, body) = self.post_as(&self.sid, &joined).await;
        assert_eq!((status, body.as_str()), (200, "ok"), "POST {joined}");
    }

    /// Connects to the default namespace; returns the socket id.
    pub async fn connect(&mut self) -> String {
        self.send(&["40"]).await;
        // Socket.IO packets, their Engine.IO type taken off: `0{sid}` is the connect's answer.
        let connected = self.next_where(|p| p.starts_with("0{")).await;
        let ack: Value = serde_json::from_str(&connected[1..]).unwrap();
        ack["sid"].as_str().unwrap().to_string()
    }

    /// The next Socket.IO packet for which `check` holds, polling as long as it takes (answering
    /// pings on the way).
    pub async fn next_where(&mut self, check: impl Fn(&str) -> bool) -> String {
        let wait = async {
            loop {
                if let Some(at) = self.pending.iter().position(|p| check(p)) {
                    return self.pending.remove(at);
                }
                let (status, body) = self.get_as(&self.sid).await;
                assert_eq!(status, 200, "GET in its own session: {body}");
                for packet in body.split(SEPARATOR) {
                    if packet == "2" {
                        self.send(&["3"]).await;
                    } else if let Some(socket_io) = packet.strip_prefix('4') {
                        self.pending.push(socket_io.to_string());
                    }
                }
            }
        };
        tokio::time::timeout(PATIENCE, wait)
            .await
            .unwrap_or_else(|_| panic!("no packet awaited; pending {:?}", self.pending))
    }

    /// The payload of the next event `name`.
    pub async fn next_event(&mut self, name: &str) -> Value {
        let prefix = format!("2[\"{name}\"");
        let packet = self.next_where(|p| p.starts_with(&prefix)).await;
        let array: Value = serde_json::from_str(&packet[1..]).unwrap();
        array[1].clone()
    }
}

pub type Raw = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A websocket-only Engine.IO session, its open packet read.
pub async fn websocket(addr: SocketAddr) -> Raw {
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let (mut raw, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let open = next_text(&mut raw).await.expect("an open packet");
    assert!(open.starts_with('0'), "engine.io open packet: {open}");
    raw
}

/// The next text frame, answering pings on the way; `None` once the connection is closed.
pub async fn next_text(raw: &mut Raw) -> Option<String> {
    let wait = async {
        loop {
            match raw.next().await {
                Some(Ok(Message::Text(text))) if text.as_str() == "2" => {
                    raw.send(Message::text("3")).await.ok()?;
                }
                Some(Ok(Message::Text(text))) => return Some(text.to_string()),
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
                Some(Ok(_)) => {}
            }
        }
    };
    tokio::time::timeout(PATIENCE, wait)
        .await
        .expect("a frame or the end of the connection in time")
}

/// The next event's name and payload on a raw websocket, skipping other packets.
pub async fn next_event(raw: &mut Raw) -> Option<(String, Value)> {
    loop {
        let text = next_text(raw).await?;
        if let Some(event) = text.strip_prefix("42") {
            let array: Value = serde_json::from_str(event).unwrap();
            return Some((array[0].as_str().unwrap().to_string(), array[1].clone()));
        }
    }
}
