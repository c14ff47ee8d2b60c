//! The instance registry: heartbeats, the live, the dead and their reaping.

use super::*;

impl RedisStore {
    pub async fn heartbeat(
        &self,
        instance: &str,
        ttl_ms: u64,
        about: &InstanceAbout,
    ) -> StoreResult<bool> {
        let stamp = json(&serde_json::json!({
            "instanceId": instance,
            "at": crate::model::now_ms(),
            "startedAt": about.started_at,
            "code": about.code,
            "build": env!("CARGO_PKG_VERSION"),
        }));
        let list = self.keys.instance_sockets(instance);
        let mut beat = redis::pipe();
        beat.set_options(
            self.keys.instance(instance),
            stamp,
            redis::SetOptions::default().with_expiration(redis::SetExpiry::PX(ttl_ms)),
        )
        .ignore()
        .sadd(&self.keys.instances, instance);
        // The socket list outlives the heartbeat, for a survivor reaps from it.
        if !self.keys.spread {
            beat.pexpire(&list, SOCKET_LIST_TTL_MS as i64).ignore();
        }
        let result = beat.query_async::<(u32,)>(&mut self.conn()).await;
        let (added,) = self.ok(result)?;
        if self.keys.spread {
            self.renew_socket_list(list);
        }
        Ok(added == 0)
    }

    /// On a cluster, renews the lifetime of this instance's socket list, which is in the
    /// instance's slot, not the registry's: on a task of its own, for a node that hangs there
    /// must not hold up the heartbeat (the fleet would take this instance for dead). At most
    /// one renewal is on its way; a missed one is harmless, the list lives an hour.
    fn renew_socket_list(&self, list: String) {
        if self.renewing_sockets.swap(true, Ordering::AcqRel) {
            return;
        }
        let store = self.clone();
        tokio::spawn(async move {
            let result: Result<(), _> =
                store.conn().pexpire(&list, SOCKET_LIST_TTL_MS as i64).await;
            if let Err(error) = result {
                tracing::warn!(list, %error, "the socket list's lifetime was not renewed");
            }
            store.renewing_sockets.store(false, Ordering::Release);
        });
    }

    pub async fn deregister(&self, instance: &str) -> StoreResult<()> {
        let list = self.keys.instance_sockets(instance);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .srem(&self.keys.instances, instance)
            .ignore()
            .del(self.keys.instance(instance))
            .ignore();
        if !self.keys.spread {
            pipe.del(&list).ignore();
        }
        let result = pipe.query_async::<()>(&mut self.conn()).await;
        self.ok(result)?;
        if self.keys.spread {
            // In the instance's slot. Left by a failure here, it expires with its TTL.
            self.forget_instance(instance).await?;
        }
        Ok(())
    }

    pub async fn live_instances(&self) -> StoreResult<Vec<InstanceInfo>> {
        let ids = self.registered_instances().await?;
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.get(self.keys.instance(id));
        }
        let result: Result<Vec<Option<String>>, _> = pipe.query_async(&mut self.conn()).await;
        let stamps = self.ok(result)?;
        let mut live = Vec::new();
        for (id, stamp) in ids.into_iter().zip(stamps) {
            // An instance is alive while its heartbeat's key is.
            let Some(stamp) = stamp else { continue };
            let stamp: serde_json::Value = serde_json::from_str(&stamp).unwrap_or_default();
            live.push(InstanceInfo {
                sockets: self.instance_socket_count(&id).await?,
                id,
                started_at: stamp["startedAt"].as_u64(),
                build: stamp["build"].as_str().map(str::to_string),
                code: serde_json::from_value(stamp["code"].clone()).unwrap_or_default(),
            });
        }
        Ok(live)
    }

    /// Every registered instance, sorted: alive, or dead and not yet reaped.
    pub(super) async fn registered_instances(&self) -> StoreResult<Vec<String>> {
        let result: Result<Vec<String>, _> = self.conn().smembers(&self.keys.instances).await;
        let mut ids = self.ok(result)?;
        ids.sort();
        Ok(ids)
    }

    pub async fn claim_dead_instances(&self, instance: &str) -> StoreResult<Vec<String>> {
        let result: Result<Vec<String>, _> = self
            .scripts
            .claim_dead_instances
            .key(&self.keys.instances)
            .arg(&self.keys.prefix)
            .arg(instance)
            .invoke_async(&mut self.conn())
            .await;
        self.ok(result)
    }

    pub async fn return_dead_instance(&self, instance: &str) -> StoreResult<()> {
        let result: Result<(), _> = self.conn().sadd(&self.keys.instances, instance).await;
        self.ok(result)
    }

    pub async fn forget_instance(&self, instance: &str) -> StoreResult<()> {
        let result: Result<(), _> = self.conn().del(self.keys.instance_sockets(instance)).await;
        self.ok(result)
    }

    pub async fn instance_alive(&self, instance: &str) -> StoreResult<bool> {
        let result: Result<bool, _> = self.conn().exists(self.keys.instance(instance)).await;
        self.ok(result)
    }
}
