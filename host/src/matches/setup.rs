//! Where matches come from: the queue a player asks for, and a match's first state.

use super::announce::{announcements, fold, match_found};
use super::*;
use crate::matchmaking::Seating;

/// A human player matchmaking seated: its queue entry, its socket and the instance holding it.
#[derive(Debug, Clone)]
pub struct Seated {
    pub entry: QueueEntry,
    pub socket: SocketId,
    pub instance: String,
}

impl Matches {
    /// The queue of `game` (default: the configured one) in `mode` (default: the game's first),
    /// as the active module of that game describes it.
    pub fn queue(&self, game: Option<&str>, asked: Option<&str>) -> Result<Queue, MatchError> {
        let rules = self.inner.modules.rules();
        let default_game = &self.inner.settings.game;
        let game = game.unwrap_or(default_game);
        let Some(module) = rules.active(game) else {
            return Err(MatchError::UnknownGame {
                game: game.to_string(),
                served: rules.games(),
            });
        };
        let description = crate::rules::description_of(&module, game);
        let mode = match asked {
            Some(name) => description.modes.iter().find(|m| m.name == name),
            None => description.modes.first(),
        };
        let Some(mode) = mode else {
            return Err(MatchError::UnknownMode {
                game: game.to_string(),
                mode: asked.unwrap_or_default().to_string(),
                modes: description.modes.iter().map(|m| m.name.clone()).collect(),
            });
        };
        // The default game's default mode keeps the original's queues. Only the default game's
        // own first mode can be it, and that is this description's first mode.
        let first_mode = &description.modes[0].name;
        Ok(Queue {
            game: game.to_string(),
            mode: mode.name.clone(),
            lane: crate::matchmaking::lane(game, &mode.name, default_game, first_mode),
            config: mode.config.clone(),
            seating: Seating {
                min: description.players.min as usize,
                max: description.players.max as usize,
                fill_after_ms: self.inner.settings.match_fill.as_millis() as u64,
            },
            bots: module.has_bot(),
        })
    }

    /// Starts a match of `queue` for these players and `bots` of the game's bots: sets it up
    /// with the game's active rules and the mode's settings, stores it and tells the players.
    pub async fn start(
        &self,
        queue: &Queue,
        humans: Vec<Seated>,
        bots: usize,
    ) -> Result<GameState, MatchError> {
        let hub = &self.inner;
        let game = queue.game.clone();
        let module = hub
            .modules
            .rules()
            .active(&game)
            .ok_or_else(|| MatchError::NoRules(game.clone()))?;
        if bots > 0 && !module.has_bot() {
            return Err(MatchError::NoBots(game));
        }
        let level = humans.first().map_or(0, |h| h.entry.level);
        let mut players: Vec<PlayerSlot> = humans
            .iter()
            .map(|seated| PlayerSlot {
                id: seated.entry.id.clone(),
                socket_id: seated.socket.clone(),
                instance_id: seated.instance.clone(),
                state: Value::Object(Default::default()),
                level: seated.entry.level,
                connected: true,
                bot: false,
            })
            .collect();
        players.extend((0..bots).map(|_| PlayerSlot::bot(level)));
        players.sort_by(|a, b| a.id.cmp(&b.id));
        let seats: Vec<Seat> = players
            .iter()
            .map(|slot| Seat {
                id: slot.id.clone(),
                level: slot.level,
            })
            .collect();
        let seed: u64 = rand::random();
        let config = queue.config.clone();
        let input = LogInput::Setup {
            seed,
            seats: seats.clone(),
            config: config.clone(),
        };
        let transition = call(&module, move |m| m.setup(seed, &seats, &config)).await?;

        let room_id = uuid::Uuid::new_v4().to_string();
        let now = now_ms();
        let mut state = GameState {
            room_id: room_id.clone(),
            players,
            game_data: RawValue::from_string("null".into()).expect("null is JSON"),
            turn: 0,
            status: Status::Active,
            created_at: now,
            updated_at: now,
            game,
            module: module.sha256_hex(),
            version: 1,
            winners: None,
            round_ends_at: None,
        };
        let record = MatchRecord::of(&state);
        fold(
            &mut state,
            &transition,
            hub.settings.round_timeout_of(&module),
            true,
        );
        let mut messages = vec![match_found(&state)];
        messages.extend(announcements(&state, &transition));
        let log: Vec<LogEntry> = hub
            .settings
            .match_log
            .then(|| state.log_entry(input))
            .into_iter()
            .collect();
        hub.store
            .insert_match(&record, &state, &messages, &log)
            .await?;
        let seats = humans
            .iter()
            .map(|seated| SocketAt {
                socket: seated.socket.clone(),
                instance: seated.instance.clone(),
            })
            .collect();
        // Seated first: a socket here hears the room only once it follows it.
        hub.outbox.seated(&room_id, seats).await;
        hub.outbox.changed(&room_id, state.version, messages).await;
        self.remember_members(&state);
        // The players' sessions name the match already (stored with it).
        let sockets = humans
            .iter()
            .map(|seated| (seated.socket.clone(), seated.instance.clone()))
            .collect();
        crate::store::note_socket_rooms(&hub.store, sockets, &room_id);

        self.spawn_actor(module, state.clone());

        // A player whose socket closed while the match was being set up was not yet in it when
        // its disconnection was handled: hand that disconnection to the match now. One that
        // connected again meanwhile (its new socket found no match in its session yet) is
        // handed the match on that socket.
        for seated in &humans {
            let current = hub.store.session(&seated.entry.id).await.ok().flatten();
            match current.and_then(|s| s.socket_id.zip(s.instance_id)) {
                Some((socket, _)) if socket == seated.socket => {}
                Some((socket, instance)) => {
                    let at = SocketAt {
                        socket: socket.clone(),
                        instance,
                    };
                    hub.outbox.seated(&room_id, vec![at]).await;
                    let player = &seated.entry.id;
                    if let Err(error) = self.reconnected(&room_id, player, &socket).await {
                        tracing::warn!(room = room_id, player, %error, "could not hand a new match to a player's new socket");
                    }
                }
                None => {
                    self.disconnected(&room_id, &seated.entry.id, &seated.socket)
                        .await
                }
            }
        }
        Ok(state)
    }
}
