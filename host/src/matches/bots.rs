//! The host's bots: seats a game's own bot export plays ([`abi::EXPORT_BOT`]).
//!
//! A bot holds no socket and lives in the match state (`PlayerSlot::bot`), so it survives
//! whatever instance seated it. Every actor of a match with a connected player drives its bots:
//! after each change it waits the think time, then asks each bot, with that bot's own view,
//! what it does, and plays the answer through the rules' action export, inside the same
//! compare-and-set as a player's action. Two instances asking at once cannot make a bot act
//! twice: the loser of the race recomputes from the new state, where that bot has nothing to do
//! (or asks again with the new view), and the bot's seed comes from the match's room and
//! version, so both ask the same question and get the same answer.

use super::actor::Actor;
use super::announce::transitioned;
use super::*;
use sha2::{Digest, Sha256};

/// When an actor next asks its match's bots, and the version they last looked at.
#[derive(Debug, Default)]
pub(super) struct BotClock {
    pub(super) due: Option<Instant>,
    seen: u64,
}

impl Actor {
    /// Sets the bots' clock after a change they have not seen yet.
    pub(super) fn schedule_bots(&mut self) {
        let game = &self.game;
        if game.status == Status::Finished
            || self.bots.due.is_some()
            || self.bots.seen == game.version
            || game.bots().next().is_none()
        {
            return;
        }
        self.bots.due = Some(Instant::now() + self.hub().settings.bots.think);
    }

    /// Whether only bots are left to play this match (every player gone or in its grace): then
    /// any actor of it plays them to the end, wherever its players were.
    pub(super) fn bots_alone(&self) -> bool {
        self.game.status != Status::Finished
            && self.game.bots().next().is_some()
            && self.game.players.iter().all(|p| p.bot || !p.connected)
    }

    /// Asks each bot in seat order; the first that acts ends the turn of asking (the next bot
    /// thinks after that change).
    pub(super) async fn play_bots(&mut self) {
        self.bots.due = None;
        self.bots.seen = self.game.version;
        let bots: Vec<PlayerId> = self.game.bots().map(|slot| slot.id.clone()).collect();
        for bot in bots {
            let before = self.game.version;
            let result = self
                .change(|game, module, settings| {
                    let bot = bot.clone();
                    async move {
                        if game.status == Status::Finished {
                            return Ok(None);
                        }
                        let seed = bot_seed(&game, &bot);
                        let state = game.game_data.clone();
                        let player = bot.clone();
                        let action = call(&module, move |m| {
                            let view = m.view(&state, &player)?;
                            m.bot(&view, &player, seed)
                        })
                        .await?;
                        let Some(action) = action else {
                            return Ok(None);
                        };
                        let state = game.game_data.clone();
                        let input = LogInput::Action {
                            player: bot.clone(),
                            action: action.clone(),
                            bot: true,
                        };
                        let transition =
                            call(&module, move |m| m.action(&state, &bot, &action)).await?;
                        Ok(Some(transitioned(
                            game,
                            &transition,
                            settings.round_timeout_of(&module),
                            false,
                            input,
                        )))
                    }
                })
                .await;
            match result {
                Ok(()) if self.game.version != before => return,
                Ok(()) => {}
                Err(error) => {
                    // A refused or failed bot only stalls its seat until the round times out.
                    tracing::debug!(room = %self.game.room_id, bot, %error, "the bot did not act");
                }
            }
        }
    }
}

/// The seed a bot decides with: the same for every instance asking at the same point of the
/// match, different from one point to the next.
fn bot_seed(game: &GameState, bot: &str) -> u64 {
    let mut hash = Sha256::new();
    hash.update(game.room_id.as_bytes());
    hash.update(game.version.to_le_bytes());
    hash.update(bot.as_bytes());
    let digest = hash.finalize();
    u64::from_le_bytes(digest[..8].try_into().expect("a SHA-256 has 8 bytes"))
}
