//! The instance's life among others: it heartbeats into the registry, reaps instances whose
//! heartbeat expired (their sockets' mappings, queue entries, and a reconnection grace for their
//! players' matches), follows the rooms of its own players (`feeds`, in version order:
//! `order`), writes its own state back when Redis returns after an outage, and times out
//! reconnection graces and finished games. A lone in-memory instance runs the same loops; the
//! registry parts are no-ops there.

pub mod feeds;
pub mod follower;
mod order;

use crate::gateway::Gateway;
use crate::matches::Matches;
use crate::model::now_ms;
use crate::modules::Modules;
use crate::store::{InstanceAbout, Store};
use futures_util::StreamExt;
use serde::Deserialize;
use socketioxide_redis::drivers::Driver;
use std::sync::Arc;
use std::time::Duration;

/// Batches of expired sessions one sweep takes at most (a Redis batch is 100 sessions).
const MAX_EXPIRY_BATCHES_PER_TICK: usize = 50;

#[derive(Clone)]
pub struct Cluster {
    pub store: Arc<Store>,
    pub gateway: Gateway,
    pub matches: Matches,
    pub modules: Modules,
    pub instance_id: String,
    /// How long the heartbeat key lives; instances beat three times per TTL.
    pub heartbeat_ttl: Duration,
    /// How long a finished game stays readable.
    pub finished_game_retention: Duration,
    /// How often the fleet tidies a cluster's rooms ([`crate::redis_store::RedisStore::tidy_rooms`]).
    pub tidy_interval: Duration,
    /// When this instance started (ms since the epoch), told to the fleet with its heartbeat.
    pub started_at: u64,
}

impl Cluster {
    /// Registers this instance; called once before it takes players.
    pub async fn register(&self) -> Result<(), crate::store::StoreError> {
        self.store
            .heartbeat(
                &self.instance_id,
                self.heartbeat_ttl.as_millis() as u64,
                &self.about(),
            )
            .await
            .map(|_| ())
    }

    /// What this instance tells the fleet of itself with each heartbeat.
    fn about(&self) -> InstanceAbout {
        InstanceAbout {
            started_at: self.started_at,
            code: self.modules.loaded_code(),
        }
    }

    /// Leaves the registry at once (after the gateway let every socket go).
    pub async fn deregister(&self) {
        if let Err(error) = self.store.deregister(&self.instance_id).await {
            tracing::warn!(%error, "could not leave the instance registry");
        }
    }

    /// Heartbeats, catches up with the fleet's active modules, and reaps until dropped.
    pub async fn heartbeat(self) {
        let mut tick = tokio::time::interval(self.heartbeat_ttl / 3);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut was_up = true;
        // Since when the registry cannot be trusted to tell the dead, and nobody is reaped
        // for two TTLs. When the store came back after an outage: the others lost it too,
        // most likely, and their heartbeats expired meanwhile. Reaping them before they beat
        // again would take live instances' players out of their matches (and refuse the
        // write-back of what those instances played alone meanwhile). While the store is
        // slow: a heartbeat that takes a third of the TTL to land is late for everyone, and
        // the others' may have expired on the way (three instances reaped one another so,
        // their players' sessions expiring while they played on: both found by the chaos run).
        let mut unsure_since: Option<tokio::time::Instant> = None;
        // Whether to write back once more at the next beat, after being taken for dead: the
        // reaper may still have been letting this instance's sockets go while the first
        // write-back ran.
        let mut again = false;
        loop {
            tick.tick().await;
            if self.gateway.draining() {
                continue;
            }
            let ttl = self.heartbeat_ttl.as_millis() as u64;
            let sent = tokio::time::Instant::now();
            let beat = self
                .store
                .heartbeat(&self.instance_id, ttl, &self.about())
                .await;
            if sent.elapsed() > self.heartbeat_ttl / 3 {
                unsure_since = Some(tokio::time::Instant::now());
            }
            match beat {
                Ok(listed) => {
                    if !was_up {
                        tracing::info!(
                            "the shared store is back: writing this instance's state back"
                        );
                        self.write_back().await;
                        unsure_since = Some(tokio::time::Instant::now());
                        again = !listed;
                    } else if !listed {
                        // Alive all along, but its heartbeat expired (Redis slow, or cut off
                        // from this instance alone): another instance reaped its players.
                        // Left so, their sessions would expire while they play on here.
                        tracing::warn!(
                            "this instance was taken for dead: putting its players back"
                        );
                        self.write_back().await;
                        again = true;
                    } else if std::mem::take(&mut again) {
                        self.write_back().await;
                    }
                    was_up = true;
                    if let Err(error) = self.modules.reconcile().await {
                        tracing::warn!(%error, "could not read the fleet's active modules");
                    }
                }
                Err(error) => {
                    if was_up {
                        tracing::warn!(%error, "the shared store is unreachable; going on alone");
                    }
                    was_up = false;
                    continue;
                }
            }
            if unsure_since.is_some_and(|since| since.elapsed() < self.heartbeat_ttl * 2) {
                continue;
            }
            match self.store.claim_dead_instances(&self.instance_id).await {
                Ok(dead) => {
                    // Each on a task of its own: a node that hangs holding a dead instance's
                    // sockets must not hold up this instance's own heartbeat.
                    for instance in dead {
                        let cluster = self.clone();
                        tokio::spawn(async move { cluster.reap(&instance).await });
                    }
                }
                Err(error) => tracing::warn!(%error, "could not look for dead instances"),
            }
        }
    }

    /// Cleans up after an instance that died without saying so.
    async fn reap(&self, instance: &str) {
        let sockets = match self.store.instance_sockets(instance).await {
            Ok(sockets) => sockets,
            Err(error) => {
                // Claimed, it left the registry: back it goes, for the next round to claim
                // again, or its players' sessions would stay held by sockets nobody has.
                tracing::warn!(instance, %error, "could not read a dead instance's sockets");
                if let Err(error) = self.store.return_dead_instance(instance).await {
                    tracing::warn!(instance, %error, "a dead instance is lost to reaping");
                }
                return;
            }
        };
        tracing::info!(instance, sockets = sockets.len(), "reaping a dead instance");
        crate::metrics::instance_reaped();
        for mapping in &sockets {
            // Taken for dead while only slow: it puts its players back itself once it beats
            // again (`write_back`), and what is still here is its own.
            if self.store.instance_alive(instance).await.unwrap_or(false) {
                tracing::warn!(instance, "a reaped instance beats again: reaping stopped");
                return;
            }
            self.gateway
                .socket_gone(&mapping.socket_id, &mapping.player_id, instance)
                .await;
        }
        if let Err(error) = self.store.forget_instance(instance).await {
            tracing::warn!(instance, %error, "could not forget a dead instance");
        }
    }

    /// Puts this instance's sockets and sessions back after an outage (Redis may have come back
    /// empty). Matches write themselves back.
    async fn write_back(&self) {
        let ttl = self.heartbeat_ttl.as_millis() as u64;
        if let Err(error) = self
            .store
            .heartbeat(&self.instance_id, ttl, &self.about())
            .await
        {
            tracing::warn!(%error, "re-registration failed");
        }
        self.gateway.write_back().await;
    }

    /// On a cluster, every `tidy_interval`: removes the rooms nobody was seated in and settles
    /// the matches whose end the fleet missed, unless another instance did so this interval.
    /// A task of its own, because a tidying scans every node's keys: the sweep's forfeits must
    /// not wait for it.
    pub async fn tidy_rooms(self) {
        let Store::Redis(redis) = &*self.store else {
            return;
        };
        let first = tokio::time::Instant::now() + self.tidy_interval;
        let mut tick = tokio::time::interval_at(first, self.tidy_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            match redis
                .tidy_rooms(&self.instance_id, self.tidy_interval)
                .await
            {
                Ok(Some(tidied)) if tidied != Default::default() => {
                    tracing::info!(?tidied, "the fleet's rooms tidied")
                }
                Ok(_) => {}
                Err(error) => tracing::debug!(%error, "tidying skipped"),
            }
        }
    }

    /// Follows module activations made on other instances (uploads, file changes, rollbacks).
    pub async fn follow_module_events(self) {
        let Store::Redis(redis) = &*self.store else {
            return;
        };
        let bus = redis.bus();
        let channel = redis.module_events_channel().to_string();
        let mut stream = match Driver::subscribe(&bus, channel, 1024).await {
            Ok(stream) => stream,
            Err(error) => {
                tracing::error!(%error, "cannot follow module events");
                return;
            }
        };
        #[derive(Deserialize)]
        struct Activated {
            game: String,
            version: String,
        }
        while let Some((_, message)) = stream.next().await {
            let Ok(Activated { game, version }) = serde_json::from_slice(&message) else {
                tracing::warn!("unreadable module event");
                continue;
            };
            if let Err(error) = self.modules.adopt(&game, &version).await {
                tracing::error!(game, version, %error, "could not adopt the fleet's active module");
            }
        }
    }

    /// Forfeits players who stayed away past their grace, forgets finished games nobody has
    /// looked at for the retention time, and unloads module versions nothing uses.
    pub async fn sweep(self) {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_prune = 0;
        loop {
            tick.tick().await;
            let now = now_ms();
            // The store hands expired sessions out in batches: take them all, so that a wave
            // of departures (thousands of sockets gone at once) does not linger.
            for _ in 0..MAX_EXPIRY_BATCHES_PER_TICK {
                match self.store.expire_sessions(now).await {
                    Ok(expired) if expired.is_empty() => break,
                    Ok(expired) => {
                        for session in expired {
                            tracing::debug!(player = session.player_id, "session expired");
                            if let Some(room) = &session.room_id {
                                self.matches.forfeit(room, &session.player_id).await;
                            }
                        }
                    }
                    Err(error) => {
                        tracing::debug!(%error, "session sweep skipped");
                        break;
                    }
                }
            }
            if now.saturating_sub(last_prune) >= 1_000 {
                last_prune = now;
                self.modules.unload_unused(Default::default()).await;
                let cutoff = now.saturating_sub(self.finished_game_retention.as_millis() as u64);
                match self.store.prune_finished(cutoff).await {
                    Ok(0) => {}
                    Ok(pruned) => tracing::debug!(pruned, "finished games forgotten"),
                    Err(error) => tracing::debug!(%error, "prune skipped"),
                }
            }
        }
    }
}
