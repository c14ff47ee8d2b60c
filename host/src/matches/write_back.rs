//! Writing back what a match did in memory while the store was away.

use super::actor::Actor;
use super::*;
use crate::model::state_digest;

impl Actor {
    /// Writes back what changed while the store was away.
    pub(super) async fn write_back(&mut self) {
        let game = self.game.clone();
        match self.store(&game, &[], &self.unlogged).await {
            Ok(()) => {
                tracing::info!(room = %self.game.room_id, version = self.game.version, "match written back");
                self.stored_version = self.game.version;
                self.unsaved = false;
                self.unlogged.clear();
                self.unanswered.clear();
            }
            Err(StoreError::Unavailable(_)) => {}
            Err(error) => {
                if self.own_write_landed().await {
                    return; // The rest goes at the next tick.
                }
                // Someone else changed the stored match meanwhile (only possible if it had a
                // player elsewhere after all): the stored one wins.
                tracing::error!(room = %self.game.room_id, %error, "write-back refused; taking the stored match");
                self.unsaved = false;
                self.unlogged.clear();
                self.unanswered.clear();
                self.reload().await;
            }
        }
    }

    /// Whether the stored match is one of this copy's own changes, whose write landed though
    /// its answer was lost (the connection broke after the script ran): then the store holds
    /// it, with its log entries, and only the changes after it remain to be written back. Not
    /// telling this from another writer's change threw away acknowledged actions (found by the
    /// chaos run).
    async fn own_write_landed(&mut self) -> bool {
        let Ok(Some(stored)) = self.hub().store.game(&self.game.room_id).await else {
            return false;
        };
        let digest = state_digest(&stored.game_data);
        let landed = self
            .unanswered
            .iter()
            .any(|(version, state)| *version == stored.version && *state == digest);
        if !landed {
            return false;
        }
        tracing::info!(room = %self.game.room_id, version = stored.version, "a write whose answer was lost had landed");
        self.stored_version = stored.version;
        self.unlogged.retain(|entry| entry.version > stored.version);
        self.unanswered
            .retain(|(version, _)| *version > stored.version);
        self.unsaved = stored.version < self.game.version;
        true
    }
}
