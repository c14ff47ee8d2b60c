//! A socket's mapping and session die with it, however early it goes: 2,000 connections that
//! send their connect and drop at once leave nothing behind, in memory and on Redis.

use crate::cluster_support::{PrivateRedis, Shared, cluster_server, unique_prefix};
use crate::support::{Endpoint, PATIENCE, http, server};
use futures_util::{SinkExt, StreamExt};
use host::server::RunningServer;
use redis::Commands;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use tokio_tungstenite::MaybeTlsStream;
use tokio_tungstenite::tungstenite::Message;

const ATTEMPTS: usize = 2_000;

/// Opens a websocket, sends Socket.IO's connect and resets the TCP connection at once.
async fn connect_and_drop(addr: SocketAddr) {
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let Ok((mut ws, _)) = tokio_tungstenite::connect_async(url).await else {
        return;
    };
    let _ = ws.send(Message::text("40")).await;
    if let MaybeTlsStream::Plain(tcp) = ws.get_ref() {
        // A reset, not a goodbye: the server learns of it only when it next reads or writes.
        let _ = socket2::SockRef::from(tcp).set_linger(Some(Duration::ZERO));
    }
    drop(ws);
}

async fn churn(addr: SocketAddr) {
    futures_util::stream::iter(0..ATTEMPTS)
        .for_each_concurrent(32, |_| connect_and_drop(addr))
        .await;
}

/// The server's count of socket mappings and sessions.
async fn held(server: &impl Endpoint) -> (u64, u64) {
    let (_, stats) = http(server, "GET", "/health/stats", None).await;
    let count = |v: &Value| v.as_u64().unwrap_or_else(|| panic!("{stats}"));
    (
        count(&stats["socketMappings"]["total"]),
        count(&stats["sessions"]["total"]),
    )
}

/// Waits until nothing is held; panics with what is left if that never comes.
async fn until_nothing_is_held(server: &RunningServer) {
    // Sockets close over a moment, and released sessions live out their (short) grace.
    let deadline = tokio::time::Instant::now() + PATIENCE * 2;
    let mut left = held(server).await;
    while left != (0, 0) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        left = held(server).await;
    }
    assert_eq!(
        left,
        (0, 0),
        "(socket mappings, sessions) left by {ATTEMPTS} dropped connections"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_leave_nothing_in_memory() {
    let server = server(|c| c.reconnect_grace = Duration::from_millis(100)).await;
    churn(server.addr()).await;
    until_nothing_is_held(&server).await;
    let (_, health) = http(&server, "GET", "/health", None).await;
    assert_eq!(health["details"]["activeSocketMappings"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_connections_leave_nothing_on_redis() {
    dropped_connections_leave_nothing_on(PrivateRedis::start()).await;
}

pub(crate) async fn dropped_connections_leave_nothing_on(redis: impl Shared) {
    let prefix = unique_prefix();
    let server = cluster_server(&redis, &prefix, |c| {
        c.reconnect_grace = Duration::from_millis(100);
    })
    .await;
    churn(server.addr()).await;
    until_nothing_is_held(&server).await;
    let mut conn = redis.conn();
    let mappings = redis.socket_mappings(&prefix).len();
    let sessions: Vec<String> = conn
        .keys(format!("{}session:*", redis.key_prefix(&prefix)))
        .unwrap();
    assert_eq!((mappings, sessions.len()), (0, 0), "{sessions:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_releases_sessions_no_live_socket_holds() {
    cleanup_releases_orphaned_sessions(PrivateRedis::start()).await;
}

pub(crate) async fn cleanup_releases_orphaned_sessions(redis: impl Shared) {
    let prefix = unique_prefix();
    let server = cluster_server(&redis, &prefix, |c| {
        c.instance_id = "cleaner".into();
        c.reconnect_grace = Duration::from_millis(100);
    })
    .await;
    // A session held by a socket this instance does not have, and one of an instance that is
    // not alive: what a crash in the middle of a connection would leave.
    let mut conn = redis.conn();
    for (player, socket, instance) in [("ghost", "gone", "cleaner"), ("orphan", "s", "dead")] {
        let session = serde_json::json!({
            "playerId": player, "tokenSha256": "00", "socketId": socket, "instanceId": instance,
        });
        let () = conn
            .set(
                format!("{}session:{player}", redis.key_prefix(&prefix)),
                session.to_string(),
            )
            .unwrap();
    }
    assert_eq!(held(&server).await.1, 2);
    let (status, cleaned) = http(&server, "POST", "/health/cleanup", None).await;
    assert_eq!(status, 200);
    assert_eq!(cleaned["details"]["sessions"], 2, "{cleaned}");
    until_nothing_is_held(&server).await;
}
