//! Cleanup: what nothing live backs any more (`POST /health/cleanup`).

use super::*;

impl RedisStore {
    pub async fn cleanup(&self, instance: &str, live: &HashSet<String>) -> StoreResult<Cleaned> {
        let mut cleaned = Cleaned::default();
        let alive: HashSet<String> = self
            .live_instances()
            .await?
            .into_iter()
            .map(|i| i.id)
            .collect();

        // Registrations of instances that stopped heartbeating, and their socket lists.
        for dead in self.claim_dead_instances(instance).await? {
            self.forget_instance(&dead).await?;
            cleaned.instances += 1;
        }

        // Mappings no live socket backs.
        let mut players = HashSet::new();
        for (socket, mapping) in self.every_socket_mapping().await? {
            let backed = crate::store::socket_is_backed(
                &socket,
                &mapping.instance_id,
                instance,
                live,
                &alive,
            );
            if backed {
                players.insert(mapping.player_id);
            } else {
                self.remove_socket(&socket, &mapping.instance_id).await?;
                cleaned.socket_mappings += 1;
            }
        }

        // Sessions held by a socket nothing live backs: released, expiring at once (the socket
        // is gone, and a session a socket holds never expires by itself).
        let pattern = format!("{}session:*", glob_escape(&self.keys.prefix));
        let released_at = crate::model::now_ms();
        for key in self.scan_keys(&pattern).await? {
            let result: Result<Option<String>, _> = self.conn().get(&key).await;
            let Some(raw) = self.ok(result)? else {
                continue;
            };
            let Ok(session) = parse::<Session>(&raw) else {
                tracing::warn!(key, "skipping an unreadable session");
                continue;
            };
            let (Some(socket), Some(owner)) = (&session.socket_id, &session.instance_id) else {
                continue;
            };
            if !crate::store::socket_is_backed(socket, owner, instance, live, &alive)
                && self
                    .release_session(&session.player_id, socket, released_at)
                    .await?
                    .is_some()
            {
                cleaned.sessions += 1;
            }
        }

        // Queue entries of players with no live socket.
        #[derive(serde::Deserialize)]
        struct Queued {}
        for (player, _) in self.scan_hash::<Queued>(&self.keys.queued).await? {
            if !players.contains(&player) && self.leave_queue(&player).await? {
                cleaned.queue_entries += 1;
            }
        }

        // Match records without a game state.
        for (room, _) in self.scan_hash::<MatchRecord>(&self.keys.matches).await? {
            if !self.has_game(&room).await? {
                let result: Result<(), _> = self.conn().hdel(&self.keys.matches, &room).await;
                self.ok(result)?;
                cleaned.matches += 1;
            }
        }
        // On a cluster, rooms of matches never seated, and matches whose end the fleet missed.
        cleaned.matches += self.tidy_now().await?.orphan_rooms;
        Ok(cleaned)
    }
}
