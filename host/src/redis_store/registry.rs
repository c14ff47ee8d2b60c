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
        let result = redis::pipe()
            .set_options(
                self.keys.instance(instance),
                stamp,
                redis::SetOptions::default().with_expiration(redis::SetExpiry::PX(ttl_ms)),
            )
            .ignore()
            .sadd(&self.keys.instances, instance)
            .pexpire(&list, SOCKET_LIST_TTL_MS as i64)
            .ignore()
            .query_async::<(u32,)>(&mut self.conn())
            .await;
        let (added,) = self.ok(result)?;
        Ok(added == 0)
    }

    pub async fn deregister(&self, instance: &str) -> StoreResult<()> {
        let result = redis::pipe()
            .atomic()
            .srem(&self.keys.instances, instance)
            .ignore()
            .del(self.keys.instance(instance))
            .ignore()
            .del(self.keys.instance_sockets(instance))
            .ignore()
            .query_async::<()>(&mut self.conn())
            .await;
        self.ok(result)
    }

    pub async fn live_instances(&self) -> StoreResult<Vec<InstanceInfo>> {
        let result: Result<Vec<String>, _> = self.conn().smembers(&self.keys.instances).await;
        let mut ids = self.ok(result)?;
        ids.sort();
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.get(self.keys.instance(id))
                .scard(self.keys.instance_sockets(id));
        }
        let result: Result<Vec<(Option<String>, usize)>, _> =
            pipe.query_async(&mut self.conn()).await;
        let answers = self.ok(result)?;
        Ok(ids
            .into_iter()
            .zip(answers)
            .filter_map(|(id, (stamp, sockets))| {
                // An instance is alive while its heartbeat's key is.
                let stamp: serde_json::Value = serde_json::from_str(&stamp?).unwrap_or_default();
                Some(InstanceInfo {
                    id,
                    sockets,
                    started_at: stamp["startedAt"].as_u64(),
                    build: stamp["build"].as_str().map(str::to_string),
                    code: serde_json::from_value(stamp["code"].clone()).unwrap_or_default(),
                })
            })
            .collect())
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

    pub async fn forget_instance(&self, instance: &str) -> StoreResult<()> {
        let result: Result<(), _> = self.conn().del(self.keys.instance_sockets(instance)).await;
        self.ok(result)
    }

    pub async fn instance_alive(&self, instance: &str) -> StoreResult<bool> {
        let result: Result<bool, _> = self.conn().exists(self.keys.instance(instance)).await;
        self.ok(result)
    }
}
