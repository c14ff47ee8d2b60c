//! The sockets of the fleet and of each instance: who is connected where.
//!
//! On one server, `socket_mappings` holds every socket's mapping (as the original), and each
//! instance's set names its own sockets, for reaping. On a cluster, each instance's hash holds
//! its sockets' mappings, in the instance's slot ([`Keys::instance_sockets`]): what the fleet
//! counts is read instance by instance, from the registry.

use super::*;

impl RedisStore {
    pub async fn put_socket(&self, mapping: &SocketMapping) -> StoreResult<()> {
        let instance = &mapping.instance_id;
        let list = self.keys.instance_sockets(instance);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hset(
                self.keys.socket_mappings_of(instance),
                &mapping.socket_id,
                json(mapping),
            )
            .ignore();
        if !self.keys.spread {
            pipe.sadd(&list, &mapping.socket_id).ignore();
        }
        let result = pipe
            .pexpire(&list, SOCKET_LIST_TTL_MS as i64)
            .ignore()
            .query_async::<()>(&mut self.conn())
            .await;
        self.ok(result)
    }

    pub async fn remove_socket(
        &self,
        socket: &str,
        instance: &str,
    ) -> StoreResult<Option<SocketMapping>> {
        let mappings = self.keys.socket_mappings_of(instance);
        let mut pipe = redis::pipe();
        pipe.atomic()
            .hget(&mappings, socket)
            .hdel(&mappings, socket)
            .ignore();
        if !self.keys.spread {
            pipe.srem(self.keys.instance_sockets(instance), socket)
                .ignore();
        }
        let result: Result<(Option<String>,), _> = pipe.query_async(&mut self.conn()).await;
        let (mapping,) = self.ok(result)?;
        mapping.map(|raw| parse(&raw)).transpose()
    }

    pub async fn set_socket_room(
        &self,
        socket: &str,
        instance: &str,
        room: Option<&str>,
    ) -> StoreResult<()> {
        let result: Result<i64, _> = self
            .scripts
            .set_socket_room
            .key(self.keys.socket_mappings_of(instance))
            .arg(socket)
            .arg(room.unwrap_or(""))
            .invoke_async(&mut self.conn())
            .await;
        self.ok(result).map(|_| ())
    }

    pub async fn socket_count(&self) -> StoreResult<usize> {
        if self.keys.spread {
            return Ok(self.sockets_by_instance().await?.values().sum());
        }
        let result = self.conn().hlen(&self.keys.socket_mappings).await;
        self.ok(result)
    }

    pub async fn sockets_by_instance(&self) -> StoreResult<BTreeMap<String, usize>> {
        let mut counts = BTreeMap::new();
        if self.keys.spread {
            // Each registered instance's hash, live or not yet reaped.
            for instance in self.registered_instances().await? {
                let count = self.instance_socket_count(&instance).await?;
                if count > 0 {
                    counts.insert(instance, count);
                }
            }
            return Ok(counts);
        }
        for mapping in self
            .scan_hash::<SocketMapping>(&self.keys.socket_mappings)
            .await?
        {
            *counts.entry(mapping.1.instance_id).or_default() += 1;
        }
        Ok(counts)
    }

    /// How many sockets `instance` has registered.
    pub(super) async fn instance_socket_count(&self, instance: &str) -> StoreResult<usize> {
        let list = self.keys.instance_sockets(instance);
        let result = if self.keys.spread {
            self.conn().hlen(&list).await
        } else {
            self.conn().scard(&list).await
        };
        self.ok(result)
    }

    pub async fn instance_sockets(&self, instance: &str) -> StoreResult<Vec<SocketMapping>> {
        let list = self.keys.instance_sockets(instance);
        let raw: Vec<String> = if self.keys.spread {
            let result = self.conn().hvals(&list).await;
            self.ok(result)?
        } else {
            let ids: Vec<String> = {
                let result = self.conn().smembers(&list).await;
                self.ok(result)?
            };
            if ids.is_empty() {
                return Ok(Vec::new());
            }
            let result: Result<Vec<Option<String>>, _> = redis::cmd("HMGET")
                .arg(&self.keys.socket_mappings)
                .arg(&ids)
                .query_async(&mut self.conn())
                .await;
            self.ok(result)?.into_iter().flatten().collect()
        };
        raw.iter().map(|raw| parse(raw)).collect()
    }

    /// Every socket mapping of the fleet, by socket id: for cleanup, never a hot path. On a
    /// cluster, every instance's hash on every node, registered or not.
    pub(super) async fn every_socket_mapping(&self) -> StoreResult<Vec<(String, SocketMapping)>> {
        if !self.keys.spread {
            return self.scan_hash(&self.keys.socket_mappings).await;
        }
        let pattern = format!(
            "{}instance:{{*}}:sockets",
            glob_escape(&self.keys.tagged_prefix)
        );
        let result = self.conn().scan_everywhere(&pattern).await;
        let mut mappings = Vec::new();
        for list in self.ok(result)? {
            mappings.extend(self.scan_hash(&list).await?);
        }
        Ok(mappings)
    }
}
