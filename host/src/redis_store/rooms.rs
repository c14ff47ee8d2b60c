//! What reaches a room's players on other instances: its channel, its log, and the notes one
//! instance sends another. The room feeds (`crate::cluster::feeds`) read them.
//!
//! Names carry the room in braces (`room:{<room>}`), the hash tag a Redis Cluster places by, so
//! that a room's channel and log live with each other, and on a Redis Cluster with its game.

use super::{Keys, RedisStore, json};
use crate::matches::Message;
use crate::store::StoreResult;
use redis::AsyncCommands;
use redis::streams::StreamRangeReply;
use serde::Serialize;

/// How long a room's log outlives its last entry. Its readers want seconds of it: an instance
/// that subscribed after the match started, or whose connection was down a moment.
pub(super) const LOG_LIFETIME_MS: u64 = 3600 * 1000;
/// How long a finished match's log outlives its last entry: long enough for a late instance to
/// deliver the end (catch-ups come within seconds); its entries hold every player's views, about
/// 110 KB for a wizard battle, which an hour of finished matches would keep for nothing.
pub(super) const FINISHED_LOG_LIFETIME_MS: u64 = 60 * 1000;
/// The most entries one catch-up reads (the log keeps 64).
const CATCH_UP_MAX: usize = 64;

impl Keys {
    pub(super) fn room_channel(&self, room: &str) -> String {
        format!("{}room:{{{room}}}", self.tagged_prefix)
    }

    pub(super) fn room_log(&self, room: &str) -> String {
        format!("{}room:{{{room}}}:log", self.tagged_prefix)
    }

    pub(super) fn match_log(&self, room: &str) -> String {
        format!("{}match_log:{{{room}}}", self.tagged_prefix)
    }

    /// On a cluster, a room's game: a hash of its `state`, `version`, `module` and, once over,
    /// `finished` (when).
    pub(super) fn game(&self, room: &str) -> String {
        format!("{}game:{{{room}}}", self.tagged_prefix)
    }

    /// On a cluster, every key of a room: its game, its match log and its delivery log.
    pub(super) fn room_keys(&self, room: &str) -> [String; 3] {
        [self.game(room), self.match_log(room), self.room_log(room)]
    }

    fn inbox(&self, instance: &str) -> String {
        format!("{}instance:{instance}:inbox", self.prefix)
    }
}

impl RedisStore {
    /// The channel of `room`'s envelopes and chat.
    pub fn room_channel(&self, room: &str) -> String {
        self.keys.room_channel(room)
    }

    /// What every room's channel starts with; the room follows.
    pub fn room_channel_prefix(&self) -> &str {
        &self.keys.room_channels
    }

    /// The room a channel is of (the inverse of [`RedisStore::room_channel`]).
    pub fn room_of_channel<'a>(&self, channel: &'a str) -> Option<&'a str> {
        channel
            .strip_prefix(self.room_channel_prefix())?
            .strip_suffix('}')
    }

    /// `instance`'s own channel.
    pub fn inbox_channel(&self, instance: &str) -> String {
        self.keys.inbox(instance)
    }

    /// The envelopes of `room` stored after `version`, oldest first.
    pub async fn room_log_after(&self, room: &str, version: u64) -> StoreResult<Vec<Vec<u8>>> {
        let result: Result<StreamRangeReply, _> = self
            .conn()
            .xrange_count(
                self.keys.room_log(room),
                format!("({version}-0"),
                "+",
                CATCH_UP_MAX,
            )
            .await;
        let reply = self.ok(result)?;
        Ok(reply
            .ids
            .into_iter()
            .filter_map(|entry| entry.get::<Vec<u8>>("e"))
            .collect())
    }

    /// The version `room`'s stored state has, if it is stored.
    pub async fn room_version(&self, room: &str) -> StoreResult<Option<u64>> {
        let result = if self.keys.spread {
            self.conn().hget(self.keys.game(room), "version").await
        } else {
            self.conn().hget(&self.keys.game_versions, room).await
        };
        self.ok(result)
    }

    /// Sends `messages` (chat: no version, not logged) to the instances that hold `room`'s
    /// players.
    pub async fn publish_to_room(&self, room: &str, messages: &[Message]) -> StoreResult<()> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Envelope<'a> {
            room_id: &'a str,
            event: &'static str,
            data: Data<'a>,
        }
        #[derive(Serialize)]
        struct Data<'a> {
            messages: &'a [Message],
        }
        let envelope = json(&Envelope {
            room_id: room,
            event: "roomMessages",
            data: Data { messages },
        });
        self.publish(&self.keys.room_channel(room), &envelope).await
    }

    /// Sends `note` to `instance`'s inbox.
    pub async fn tell_instance(&self, instance: &str, note: &str) -> StoreResult<()> {
        self.publish(&self.keys.inbox(instance), note).await
    }
}
