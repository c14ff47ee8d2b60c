//! Players' sessions: which socket holds each, and the grace of those that left.

use super::*;

impl RedisStore {
    pub async fn session(&self, player: &str) -> StoreResult<Option<Session>> {
        let result: Result<Option<String>, _> = self.conn().get(self.keys.session(player)).await;
        self.ok(result)?.map(|raw| parse(&raw)).transpose()
    }

    pub async fn session_count(&self) -> StoreResult<usize> {
        let pattern = format!("{}session:*", glob_escape(&self.keys.prefix));
        Ok(self.scan_keys(&pattern).await?.len())
    }

    pub async fn claim_session(&self, fresh: &Session, socket: &str) -> StoreResult<Session> {
        let player = &fresh.player_id;
        let result: Result<String, _> = self
            .scripts
            .claim_session
            .key(self.keys.session(player))
            .key(&self.keys.session_expiry)
            .arg(socket)
            .arg(IDLE_TTL_SECS)
            .arg(player)
            .arg(json(fresh))
            .arg(fresh.instance_id.as_deref().unwrap_or_default())
            .invoke_async(&mut self.conn())
            .await;
        parse(&self.ok(result)?)
    }

    pub async fn release_session(
        &self,
        player: &str,
        socket: &str,
        expires_at: u64,
    ) -> StoreResult<Option<Session>> {
        let ttl_ms = expires_at.saturating_sub(crate::model::now_ms()) + SESSION_EXPIRY_MARGIN_MS;
        let result: Result<Option<String>, _> = self
            .scripts
            .release_session
            .key(self.keys.session(player))
            .key(&self.keys.session_expiry)
            .arg(socket)
            .arg(expires_at)
            .arg(player)
            .arg(ttl_ms)
            .invoke_async(&mut self.conn())
            .await;
        self.ok(result)?.map(|raw| parse(&raw)).transpose()
    }

    pub async fn expire_sessions(&self, now_ms: u64) -> StoreResult<Vec<Session>> {
        let result: Result<Vec<String>, _> = self
            .scripts
            .expire_sessions
            .key(&self.keys.session_expiry)
            .arg(now_ms)
            .arg(&self.keys.prefix)
            .invoke_async(&mut self.conn())
            .await;
        self.ok(result)?.iter().map(|raw| parse(raw)).collect()
    }
}
