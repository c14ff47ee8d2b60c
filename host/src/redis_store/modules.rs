//! Rules modules: their bytes, compiled artifacts, and which version each game runs.

use super::*;

impl RedisStore {
    pub async fn put_module(&self, game: &str, version: &str, bytes: &[u8]) -> StoreResult<()> {
        let result = redis::pipe()
            .atomic()
            .set(self.keys.module(version), bytes)
            .ignore()
            .hset(&self.keys.module_games, version, game)
            .ignore()
            .query_async::<()>(&mut self.conn())
            .await;
        self.ok(result)
    }

    pub async fn module(&self, version: &str) -> StoreResult<Option<(String, Vec<u8>)>> {
        let result: Result<(Option<String>, Option<Vec<u8>>), _> = redis::pipe()
            .hget(&self.keys.module_games, version)
            .get(self.keys.module(version))
            .query_async(&mut self.conn())
            .await;
        Ok(match self.ok(result)? {
            (Some(game), Some(bytes)) => Some((game, bytes)),
            _ => None,
        })
    }

    pub async fn put_artifact(
        &self,
        version: &str,
        compat: &str,
        artifact: &[u8],
        lifetime: Option<Duration>,
    ) -> StoreResult<()> {
        let key = format!("{}module_artifact:{version}:{compat}", self.keys.prefix);
        let result: Result<(), _> = match lifetime {
            Some(lifetime) => {
                let ms = lifetime.as_millis().max(1) as u64;
                self.conn().pset_ex(key, artifact, ms).await
            }
            None => self.conn().set(key, artifact).await,
        };
        self.ok(result)
    }

    pub async fn artifact(&self, version: &str, compat: &str) -> StoreResult<Option<Vec<u8>>> {
        let key = format!("{}module_artifact:{version}:{compat}", self.keys.prefix);
        let result = self.conn().get(key).await;
        self.ok(result)
    }

    pub async fn set_active_module(&self, game: &str, version: &str) -> StoreResult<()> {
        let event = json(&serde_json::json!({ "game": game, "version": version }));
        let result: Result<i64, _> = self
            .scripts
            .set_active_module
            .key(&self.keys.active_modules)
            .key(&self.keys.module_events)
            .arg(game)
            .arg(version)
            .arg(event)
            .invoke_async(&mut self.conn())
            .await;
        self.ok(result).map(|_| ())
    }

    pub async fn active_modules(&self) -> StoreResult<BTreeMap<String, String>> {
        let result = self.conn().hgetall(&self.keys.active_modules).await;
        self.ok(result)
    }

    pub async fn module_versions(&self) -> StoreResult<BTreeMap<String, String>> {
        let result = self.conn().hgetall(&self.keys.module_games).await;
        self.ok(result)
    }

    pub async fn matches_by_module(&self) -> StoreResult<BTreeMap<String, usize>> {
        let result: Result<BTreeMap<String, i64>, _> =
            self.conn().hgetall(&self.keys.module_matches).await;
        Ok(self
            .ok(result)?
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .map(|(version, n)| (version, n as usize))
            .collect())
    }
}
