//! Matchmaking: the queues, one per lane and level, each decided by one script.

use super::*;

impl RedisStore {
    pub async fn join_queue(
        &self,
        lane: &str,
        entry: &QueueEntry,
        instance: &str,
        seating: Seating,
    ) -> StoreResult<Joined> {
        let entry_json = json(entry);
        let joiner = Some((entry, entry_json.as_str(), instance));
        let taken = self
            .decide_queue(lane, entry.level, joiner, seating)
            .await?;
        match taken {
            // On a cluster the fleet may not have heard yet that the match ended.
            Joined::Playing { room } if self.settle_if_over(&room).await? => {
                self.decide_queue(lane, entry.level, joiner, seating).await
            }
            taken => Ok(taken),
        }
    }

    pub async fn fill_queue(
        &self,
        lane: &str,
        level: i64,
        seating: Seating,
    ) -> StoreResult<Option<Vec<QueueEntry>>> {
        Ok(match self.decide_queue(lane, level, None, seating).await? {
            Joined::Matched { others } => Some(others),
            Joined::Waiting | Joined::Playing { .. } => None,
        })
    }

    /// One run of `join_queue.lua`: a player joins the queue, or (`None`) its clock is checked.
    async fn decide_queue(
        &self,
        lane: &str,
        level: i64,
        joiner: Option<(&QueueEntry, &str, &str)>,
        seating: Seating,
    ) -> StoreResult<Joined> {
        let (player, entry_json, instance) = joiner
            .map(|(entry, json, instance)| (entry.id.as_str(), json, instance))
            .unwrap_or_default();
        let result: Result<Vec<String>, _> = self
            .scripts
            .join_queue
            .key(self.keys.waiting(lane, level))
            .key(&self.keys.queued)
            .key(self.keys.session(player))
            .key(self.keys.running_index())
            .key(&self.keys.finished_games)
            .arg(player)
            .arg(entry_json)
            .arg(level.to_string())
            .arg(instance)
            .arg(&self.keys.prefix)
            .arg(IDLE_TTL_SECS)
            .arg(lane)
            .arg(seating.min)
            .arg(seating.max)
            .arg(seating.fill_after_ms)
            .invoke_async(&mut self.conn())
            .await;
        let reply = self.ok(result)?;
        match reply.split_first() {
            Some((verdict, taken)) if verdict == "match" => Ok(Joined::Matched {
                others: taken
                    .iter()
                    .map(|raw| parse(raw))
                    .collect::<Result<_, _>>()?,
            }),
            Some((verdict, _)) if verdict == "wait" => Ok(Joined::Waiting),
            Some((verdict, [room])) if verdict == "playing" => {
                Ok(Joined::Playing { room: room.clone() })
            }
            _ => Err(StoreError::Corrupt(format!(
                "the queue script answered {reply:?}"
            ))),
        }
    }

    pub async fn leave_queue(&self, player: &str) -> StoreResult<bool> {
        let result: Result<i64, _> = self
            .scripts
            .leave_queue
            .key(&self.keys.queued)
            .arg(player)
            .arg(&self.keys.prefix)
            .invoke_async(&mut self.conn())
            .await;
        Ok(self.ok(result)? == 1)
    }

    pub async fn queue_counts(&self) -> StoreResult<BTreeMap<(Lane, i64), usize>> {
        let waiting = format!("{}waiting:", self.keys.prefix);
        let pattern = format!("{}*level:*", glob_escape(&waiting));
        let keys: Vec<String> = self.scan_keys(&pattern).await?;
        let mut counts = BTreeMap::new();
        for key in keys {
            // `waiting:<lane>level:<n>`
            let Some((lane, level)) = key
                .strip_prefix(&waiting)
                .and_then(|rest| rest.rsplit_once("level:"))
            else {
                continue;
            };
            let Ok(level) = level.parse::<i64>() else {
                continue;
            };
            let result = self.conn().llen(&key).await;
            let len: usize = self.ok(result)?;
            if len > 0 {
                counts.insert((lane.to_string(), level), len);
            }
        }
        Ok(counts)
    }
}
