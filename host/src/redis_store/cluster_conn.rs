//! A Redis Cluster connection that is made again from the seed nodes once redis-rs has lost
//! every node of it.
//!
//! redis-rs 1.8.1 drops a node's connection from its map when, after a slot refresh, it cannot
//! reach that node; with none left, each further refresh fails without any I/O
//! (`ClusterConnectionNotFound`) and is retried at once, for ever: the connection never
//! answers again, and its task spins (ARCHITECTURE, "What upstream should change"). The chaos
//! run on a cluster left an instance's subscriber so after a node restart; nodes that announce
//! ports nobody listens on while a slot moves do it at will
//! (`a_cluster_connection_that_lost_every_node_is_made_again`).
//!
//! [`HealingCluster`] notices that error, on any request or on a `PING` every
//! [`WATCH_EVERY`], and opens a new connection from the seed nodes in place of the old one
//! (whose task ends with it). A subscriber's channels are not carried over: it hands its push
//! sender a disconnection, so the bus subscribes again to every channel, as after any loss.
//! The same error comes while every node is out of reach for a moment (a network cut): the
//! connection is then opened again once they answer, which costs a subscriber one round of
//! subscriptions (86 times in a 10-minute chaos run with 13 cuts and 16 node restarts).
//!
//! A subscriber's watcher also asks each master its `CLIENT ID` on that connection. redis-rs
//! drops a node's connection without a word when a slot refresh no longer lists the node's
//! address (nodes that, learning addresses by gossip, list one at an old port for a moment),
//! and opens a new one when the address comes back. Its own subscribing again on the new
//! connection sends all of that node's channels in one `SSUBSCRIBE`, which the node refuses
//! when they are in different slots; so the subscriptions of that node were lost, and only
//! the changed id shows it. The watcher then tells the bus as of a new connection
//! (`a_cluster_connection_that_lost_every_node_is_made_again` lost a room's channel so, one
//! run in 26, before this).

use futures_util::future::BoxFuture;
use redis::aio::ConnectionLike;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};
use redis::{
    Cmd, ErrorKind, FromRedisValue, Pipeline, RedisError, RedisFuture, RedisResult, Value,
};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// How often an idle connection is asked a `PING`, to notice it lost every node.
const WATCH_EVERY: Duration = Duration::from_secs(2);
/// The wait before another try when a new connection could not be opened.
const RETRY_OPEN: Duration = Duration::from_secs(1);

/// Opens a new connection from the seed nodes.
pub(super) type Open<C = ClusterConnection> =
    Box<dyn Fn() -> BoxFuture<'static, RedisResult<C>> + Send + Sync>;
/// Told once a new connection is in place (a subscriber: subscribe again).
pub(super) type Remade = Box<dyn Fn() + Send + Sync>;

/// What the watcher asks every [`WATCH_EVERY`].
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Watch {
    /// A `PING`, to notice a connection that lost every node.
    Ping,
    /// Each master's `CLIENT ID` on this connection, to notice as well a node's connection
    /// that redis-rs replaced, and the subscriptions lost with it: [`Remade`] is told.
    NodeConnections,
}

/// Each master's address, and the id it gave this connection.
type NodeIds = HashMap<String, i64>;

#[derive(Clone)]
pub struct HealingCluster {
    shared: Arc<Shared<ClusterConnection>>,
}

/// What a connection and its watcher share; generic over the connection so that the reopening
/// can be tested without a cluster.
struct Shared<C> {
    current: Mutex<C>,
    open: Open<C>,
    remade: Remade,
    /// A new connection is being opened.
    opening: AtomicBool,
    /// The masters' ids for the connection in use, as the watcher saw them last
    /// ([`Watch::NodeConnections`]); none yet for a new connection.
    node_ids: Mutex<Option<NodeIds>>,
}

impl HealingCluster {
    /// Watches `conn`, opened by `open`, and makes it again with `open` when it lost every node.
    pub(super) fn new(
        conn: ClusterConnection,
        open: Open,
        remade: Remade,
        asks: Watch,
    ) -> HealingCluster {
        let shared = Arc::new(Shared {
            current: Mutex::new(conn),
            open,
            remade,
            opening: AtomicBool::new(false),
            node_ids: Mutex::new(None),
        });
        tokio::spawn(watch(Arc::downgrade(&shared), asks));
        HealingCluster { shared }
    }

    /// The connection in use now.
    fn conn(&self) -> ClusterConnection {
        self.shared
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Passes `result` on, making the connection again if it says every node is lost.
    fn check<T>(&self, result: RedisResult<T>) -> RedisResult<T> {
        if let Err(error) = &result
            && lost_every_node(error)
        {
            self.shared.clone().reopen();
        }
        result
    }

    pub async fn ssubscribe(&mut self, channel: &str) -> RedisResult<()> {
        let result = self.conn().ssubscribe(channel).await;
        self.check(result)
    }

    pub async fn sunsubscribe(&mut self, channel: &str) -> RedisResult<()> {
        let result = self.conn().sunsubscribe(channel).await;
        self.check(result)
    }

    pub async fn route_command(&mut self, cmd: Cmd, routing: RoutingInfo) -> RedisResult<Value> {
        let result = self.conn().route_command(cmd, routing).await;
        self.check(result)
    }
}

fn lost_every_node(error: &RedisError) -> bool {
    error.kind() == ErrorKind::ClusterConnectionNotFound
}

impl<C: Send + 'static> Shared<C> {
    /// Opens a new connection in the background, unless one is being opened.
    fn reopen(self: Arc<Self>) {
        if self.opening.swap(true, Ordering::AcqRel) {
            return;
        }
        tracing::warn!("the cluster connection lost every node: opening it again from the seeds");
        tokio::spawn(open_while_owned(Arc::downgrade(&self)));
    }
}

/// Tries to open a new connection every [`RETRY_OPEN`] until one opens, and puts it in place,
/// for as long as someone holds the old one: a connection dropped while its nodes are out of
/// reach (a server shutting down during an outage) stops trying.
async fn open_while_owned<C>(shared: Weak<Shared<C>>) {
    loop {
        let Some(attempt) = shared.upgrade().map(|shared| (shared.open)()) else {
            return;
        };
        match attempt.await {
            Ok(conn) => {
                let Some(shared) = shared.upgrade() else {
                    return;
                };
                *shared.current.lock().unwrap_or_else(|p| p.into_inner()) = conn;
                *shared.node_ids.lock().unwrap_or_else(|p| p.into_inner()) = None;
                shared.opening.store(false, Ordering::Release);
                (shared.remade)();
                tracing::info!("the cluster connection is open again");
                return;
            }
            Err(error) => {
                tracing::debug!(%error, "the cluster connection could not be opened yet");
                tokio::time::sleep(RETRY_OPEN).await;
            }
        }
    }
}

/// Asks the connection every [`WATCH_EVERY`] while it is in use, so that one that lost every
/// node is made again even when nothing else asks anything of it (a subscriber), and, for
/// [`Watch::NodeConnections`], tells when a node's connection was replaced.
async fn watch(shared: Weak<Shared<ClusterConnection>>, asks: Watch) {
    loop {
        tokio::time::sleep(WATCH_EVERY).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let cluster = HealingCluster { shared };
        let mut conn = cluster.conn();
        if asks == Watch::Ping {
            let result: RedisResult<String> = redis::cmd("PING").query_async(&mut conn).await;
            let _ = cluster.check(result);
            continue;
        }
        let every_master = RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None));
        let mut client_id = redis::cmd("CLIENT");
        client_id.arg("ID");
        let result = conn.route_command(client_id, every_master).await;
        let Ok(answers) = cluster.check(result) else {
            continue;
        };
        let replaced = {
            let mut seen = cluster
                .shared
                .node_ids
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            replaced_since(&mut seen, node_ids(answers))
        };
        if replaced {
            tracing::info!("a node's connection was replaced: subscribing again");
            (cluster.shared.remade)();
        }
    }
}

/// The ids in a multi-node answer (address → id); a node that answered an error is left out.
fn node_ids(answers: Value) -> NodeIds {
    let Value::Map(answers) = answers else {
        return NodeIds::new();
    };
    answers
        .into_iter()
        .filter_map(|(node, id)| {
            let node = String::from_redis_value(node).ok()?;
            let Value::Int(id) = id else {
                return None;
            };
            Some((node, id))
        })
        .collect()
}

/// Takes this round's ids into `seen`, and tells whether a node's connection was replaced since
/// the rounds before (never in the first round of a connection).
fn replaced_since(seen: &mut Option<NodeIds>, now: NodeIds) -> bool {
    let replaced = seen.as_ref().is_some_and(|seen| any_replaced(seen, &now));
    // A node that did not answer this time keeps its last id: its connection may be the same
    // one, and if it is not, its next answer shows it.
    seen.get_or_insert_default().extend(now);
    replaced
}

/// Whether a node answers with another connection than before: one seen before with another
/// id (a node that left the map and came back answers on a new connection), or one not seen
/// before (a new node: its connection holds none of the subscriptions, whatever redis-rs
/// could not make again).
fn any_replaced(before: &NodeIds, now: &NodeIds) -> bool {
    now.iter()
        .any(|(node, id)| before.get(node).is_none_or(|old| old != id))
}

impl ConnectionLike for HealingCluster {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let mut conn = self.conn();
            let result = conn.req_packed_command(cmd).await;
            self.check(result)
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let mut conn = self.conn();
            let result = conn.req_packed_commands(pipeline, offset, count).await;
            self.check(result)
        })
    }

    fn get_db(&self) -> i64 {
        self.conn().get_db()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// A `Shared` whose every attempt to open fails, counting the attempts.
    fn never_opens(attempts: Arc<AtomicUsize>) -> Arc<Shared<()>> {
        Arc::new(Shared {
            current: Mutex::new(()),
            open: Box::new(move || {
                attempts.fetch_add(1, Ordering::SeqCst);
                Box::pin(async { Err(RedisError::from((ErrorKind::Io, "nobody listens"))) })
            }),
            remade: Box::new(|| {}),
            opening: AtomicBool::new(false),
            node_ids: Mutex::new(None),
        })
    }

    #[tokio::test]
    async fn a_connection_dropped_while_it_reopens_stops_trying() {
        let attempts = Arc::new(AtomicUsize::new(0));
        let shared = never_opens(attempts.clone());
        shared.clone().reopen();
        // Waited for, not timed: a loaded machine may run the retry late.
        let deadline = tokio::time::Instant::now() + RETRY_OPEN * 30;
        while attempts.load(Ordering::SeqCst) < 2 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "it retries while held"
            );
            tokio::time::sleep(RETRY_OPEN / 20).await;
        }

        // The test's runtime has one thread: the retry task runs only while this test awaits,
        // so the count read here is the last one taken with the connection held.
        drop(shared);
        let at_drop = attempts.load(Ordering::SeqCst);
        tokio::time::sleep(RETRY_OPEN * 2).await;
        assert_eq!(
            attempts.load(Ordering::SeqCst),
            at_drop,
            "no attempt after the connection was dropped"
        );
    }

    #[tokio::test]
    async fn a_connection_that_opens_is_put_in_place_once() {
        let opened = Arc::new(AtomicUsize::new(0));
        let told = Arc::new(AtomicUsize::new(0));
        let (o, t) = (opened.clone(), told.clone());
        let shared = Arc::new(Shared {
            current: Mutex::new(0),
            open: Box::new(move || {
                let n = o.fetch_add(1, Ordering::SeqCst) + 1;
                Box::pin(async move { Ok(n) })
            }),
            remade: Box::new(move || {
                t.fetch_add(1, Ordering::SeqCst);
            }),
            opening: AtomicBool::new(false),
            node_ids: Mutex::new(None),
        });
        shared.clone().reopen();
        shared.clone().reopen(); // while the first is under way: not another
        tokio::time::sleep(RETRY_OPEN / 2).await;
        assert_eq!(*shared.current.lock().unwrap(), 1);
        assert_eq!(told.load(Ordering::SeqCst), 1);
        assert!(!shared.opening.load(Ordering::SeqCst));
    }

    fn ids(pairs: &[(&str, i64)]) -> NodeIds {
        pairs
            .iter()
            .map(|(node, id)| (node.to_string(), *id))
            .collect()
    }

    #[test]
    fn a_node_answering_with_another_connection_counts_as_replaced() {
        let before = ids(&[("a:1", 7), ("b:2", 9)]);
        assert!(!any_replaced(&before, &before));
        assert!(any_replaced(&before, &ids(&[("a:1", 7), ("b:2", 12)])));
        // Back in the map, or new: its connection holds none of the lost subscriptions.
        assert!(any_replaced(
            &before,
            &ids(&[("a:1", 7), ("b:2", 9), ("c:3", 1)])
        ));
        // A node that did not answer this time, or left: nothing to make again here.
        assert!(!any_replaced(&before, &ids(&[("a:1", 7)])));
    }

    #[test]
    fn a_node_that_did_not_answer_is_judged_by_its_next_answer() {
        let mut seen = None;
        assert!(!replaced_since(&mut seen, ids(&[("a:1", 7), ("b:2", 9)])));
        assert!(!replaced_since(&mut seen, ids(&[("a:1", 7)]))); // b did not answer
        assert!(!replaced_since(&mut seen, ids(&[("a:1", 7), ("b:2", 9)])));
        assert!(replaced_since(&mut seen, ids(&[("a:1", 7), ("b:2", 10)])));
        assert!(!replaced_since(&mut seen, ids(&[("a:1", 7), ("b:2", 10)])));
    }

    #[test]
    fn ids_are_read_from_a_multi_node_answer() {
        let answer = Value::Map(vec![
            (Value::BulkString(b"a:1".to_vec()), Value::Int(7)),
            // What stands for a node that answered an error.
            (Value::BulkString(b"b:2".to_vec()), Value::Nil),
        ]);
        assert_eq!(node_ids(answer), ids(&[("a:1", 7)]));
    }
}
