//! The sockets of the fleet (`socket_mappings`) and of each instance: who is connected where.

use super::*;

impl RedisStore {
    pub async fn put_socket(&self, mapping: &SocketMapping) -> StoreResult<()> {
        let list = self.keys.instance_sockets(&mapping.instance_id);
        let result = redis::pipe()
            .atomic()
            .hset(
                &self.keys.socket_mappings,
                &mapping.socket_id,
                json(mapping),
            )
            .ignore()
            .sadd(&list, &mapping.socket_id)
            .ignore()
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
        let result: Result<(Option<String>,), _> = redis::pipe()
            .atomic()
            .hget(&self.keys.socket_mappings, socket)
            .hdel(&self.keys.socket_mappings, socket)
            .ignore()
            .srem(self.keys.instance_sockets(instance), socket)
            .ignore()
            .query_async(&mut self.conn())
            .await;
        let (mapping,) = self.ok(result)?;
        mapping.map(|raw| parse(&raw)).transpose()
    }

    pub async fn set_socket_room(&self, socket: &str, room: Option<&str>) -> StoreResult<()> {
        let result: Result<i64, _> = self
            .scripts
            .set_socket_room
            .key(&self.keys.socket_mappings)
            .arg(socket)
            .arg(room.unwrap_or(""))
            .invoke_async(&mut self.conn())
            .await;
        self.ok(result).map(|_| ())
    }

    pub async fn socket_count(&self) -> StoreResult<usize> {
        let result = self.conn().hlen(&self.keys.socket_mappings).await;
        self.ok(result)
    }

    pub async fn sockets_by_instance(&self) -> StoreResult<BTreeMap<String, usize>> {
        let mut counts = BTreeMap::new();
        for mapping in self
            .scan_hash::<SocketMapping>(&self.keys.socket_mappings)
            .await?
        {
            *counts.entry(mapping.1.instance_id).or_default() += 1;
        }
        Ok(counts)
    }

    pub async fn instance_sockets(&self, instance: &str) -> StoreResult<Vec<SocketMapping>> {
        let ids: Vec<String> = {
            let result = self
                .conn()
                .smembers(self.keys.instance_sockets(instance))
                .await;
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
        self.ok(result)?
            .into_iter()
            .flatten()
            .map(|raw| parse(&raw))
            .collect()
    }
}
