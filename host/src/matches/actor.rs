//! The task that owns a running match on this instance.

use super::announce::*;
use super::bots::BotClock;
use super::*;
use crate::model::state_digest;

/// The task that owns a running match on this instance.
pub(super) struct Actor {
    pub(super) matches: Matches,
    pub(super) module: RulesModule,
    /// The last state this actor saw or wrote.
    pub(super) game: GameState,
    /// The version the store holds, as far as this actor knows.
    pub(super) stored_version: u64,
    /// Changes went on in memory while the store was away and still have to be written back.
    pub(super) unsaved: bool,
    /// The log entries of those changes, written back with them.
    pub(super) unlogged: Vec<LogEntry>,
    /// Those changes' versions and state digests: a write whose answer was lost may have
    /// landed after all (`write_back.rs`).
    pub(super) unanswered: Vec<(u64, String)>,
    /// A round just ended: the moment a match may move to a newly active version.
    round_ended: bool,
    /// The version that refused to carry this match over (not asked again).
    refused_migration: Option<String>,
    /// When the match's bots are next asked what they do, and the version they last saw.
    pub(super) bots: BotClock,
}

impl Actor {
    pub(super) fn new(matches: Matches, module: RulesModule, game: GameState) -> Actor {
        Actor {
            matches,
            module,
            stored_version: game.version,
            game,
            unsaved: false,
            unlogged: Vec::new(),
            unanswered: Vec::new(),
            round_ended: false,
            refused_migration: None,
            bots: BotClock::default(),
        }
    }

    pub(super) async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>, me: Mailbox) {
        let room = self.game.room_id.clone();
        let mut running = crate::metrics::RunningMatch::new(&self.game.game, &self.game.module);
        let mut write_back = tokio::time::interval(WRITE_BACK_EVERY);
        // Bots may move first (wizard battle's rounds are simultaneous): not only after a change.
        self.schedule_bots();
        while self.game.status != Status::Finished || self.unsaved {
            let next = self.round_deadline();
            tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => self.handle(command).await,
                    None => break,
                },
                _ = sleep_until(next), if next.is_some() && self.game.status != Status::Finished => {
                    self.on_round_deadline().await
                }
                _ = write_back.tick(), if self.unsaved => self.write_back().await,
                _ = sleep_until(self.bots.due), if self.bots.due.is_some() => self.play_bots().await,
            }
            if std::mem::take(&mut self.round_ended) {
                self.migrate_if_asked().await;
                running.runs(&self.game.module);
            }
            self.schedule_bots();
            if !self.unsaved && !self.has_local_player() && !self.bots_alone() {
                // The match's players are on other instances now; their actors carry it.
                break;
            }
        }
        {
            let mut actors = self.matches.actors();
            if actors.get(&room).is_some_and(|m| m.same_channel(&me)) {
                actors.remove(&room);
            }
        }
        // Answer whatever arrived meanwhile, so no caller waits forever.
        commands.close();
        while let Ok(command) = commands.try_recv() {
            self.handle(command).await;
        }
        if self.game.status == Status::Finished {
            tracing::info!(room, winners = ?self.game.winners, "match over");
        }
    }

    pub(super) fn hub(&self) -> &Hub {
        &self.matches.inner
    }

    fn instance(&self) -> &str {
        &self.hub().settings.instance_id
    }

    pub(super) fn has_local_player(&self) -> bool {
        self.game
            .players
            .iter()
            .any(|p| p.instance_id == self.instance())
    }

    fn round_deadline(&self) -> Option<Instant> {
        let ends_at = self.game.round_ends_at?;
        let left = ends_at.saturating_sub(now_ms());
        Some(Instant::now() + Duration::from_millis(left))
    }

    async fn handle(&mut self, command: Command) {
        match command {
            Command::Act {
                player,
                action,
                arrived,
                done,
            } => {
                let result = self.act(&player, action).await;
                let code = result.as_ref().map_or_else(|error| error.code(), |_| "ok");
                crate::metrics::action(&self.game.game, code, arrived.elapsed());
                let _ = done.send(result);
            }
            Command::View { player, done } => {
                let _ = done.send(
                    self.view(&player)
                        .await
                        .map(|view| (self.game.clone(), view)),
                );
            }
            Command::PlayerState {
                player,
                state,
                done,
            } => {
                let _ = done.send(self.set_player_state(&player, state).await);
            }
            Command::Disconnected {
                player,
                socket,
                grace,
                done,
            } => {
                let _ = done.send(self.disconnected(&player, &socket, grace).await);
            }
            Command::Reconnected {
                player,
                socket,
                done,
            } => {
                let _ = done.send(self.reconnected(&player, &socket).await);
            }
            Command::Forfeit { player, done } => {
                let _ = done.send(self.forfeit(&player).await);
            }
            Command::Changed { version } => {
                if version > self.game.version && !self.unsaved {
                    self.reload().await;
                }
            }
        }
    }

    /// Reads the stored state. Returns false if the store could not be read.
    pub(super) async fn reload(&mut self) -> bool {
        match self.hub().store.game(&self.game.room_id).await {
            Ok(Some(stored)) => {
                if stored.module != self.game.module
                    && let Ok(module) = self.matches.pinned_module(&stored.module).await
                {
                    self.module = module;
                }
                self.stored_version = stored.version;
                self.game = stored;
                true
            }
            Ok(None) => {
                // Pruned or cleaned away: nothing is left to play.
                self.game.status = Status::Finished;
                true
            }
            Err(error) => {
                tracing::warn!(room = %self.game.room_id, %error, "could not reload the match");
                false
            }
        }
    }

    /// Computes a change from the current state and stores it by compare-and-set; when another
    /// instance wrote first, reloads and computes again. Tells the players once it is stored.
    pub(super) async fn change<T, F, Fut>(&mut self, mut compute: F) -> Result<T, MatchError>
    where
        F: FnMut(GameState, RulesModule, MatchSettings) -> Fut,
        Fut: Future<Output = Result<Option<Change<T>>, MatchError>>,
        T: Default,
    {
        for _ in 0..MAX_ATTEMPTS {
            let settings = self.hub().settings.clone();
            // The computation sees the version its change will be stored under, so that every
            // message it makes carries it: a client orders and de-duplicates by it.
            let mut base = self.game.clone();
            base.version += 1;
            let Some(change) = compute(base, self.module.clone(), settings).await? else {
                return Ok(T::default());
            };
            let mut next = change.next;
            next.version = self.game.version + 1;
            next.updated_at = now_ms();
            let entry = change
                .input
                .filter(|_| self.hub().settings.match_log)
                .map(|input| next.log_entry(input));
            // Whatever went on in memory meanwhile is logged before this change, in order.
            let log: Vec<LogEntry> = self.unlogged.iter().cloned().chain(entry).collect();
            match self.store(&next, &change.messages, &log).await {
                Ok(()) => {
                    self.stored_version = next.version;
                    self.unsaved = false;
                    self.unlogged.clear();
                    self.unanswered.clear();
                }
                Err(StoreError::Conflict { .. }) if !self.unsaved => {
                    if !self.reload().await {
                        return Err(MatchError::Unavailable);
                    }
                    if self.game.status == Status::Finished {
                        return Err(MatchError::Finished);
                    }
                    continue;
                }
                Err(StoreError::Unavailable(_))
                    if self.all_players_local()
                        && self.hub().outbox.delivered(&self.game.room_id) < next.version =>
                {
                    // Nobody elsewhere can change this match meanwhile: go on in memory. Unless
                    // this instance already delivered this version from the fleet: then this
                    // copy is behind (another actor went on), and what it computed must not
                    // reach players who saw newer (found by the chaos run).
                    self.unsaved = true;
                    self.unlogged = log;
                    self.unanswered
                        .push((next.version, state_digest(&next.game_data)));
                }
                Err(error) => {
                    tracing::warn!(room = %self.game.room_id, %error, "change not stored");
                    return Err(MatchError::Unavailable);
                }
            }
            self.round_ended |= next.turn != self.game.turn && next.status != Status::Finished;
            self.game = next;
            let (room, version) = (&self.game.room_id, self.game.version);
            self.hub()
                .outbox
                .changed(room, version, change.messages)
                .await;
            return Ok(change.answer);
        }
        Err(MatchError::Busy)
    }

    fn all_players_local(&self) -> bool {
        self.game
            .players
            .iter()
            .all(|p| p.bot || p.instance_id == self.instance())
    }

    /// Stores `next` by compare-and-set on the version the store holds. A store that lost the
    /// match altogether (Redis came back empty) gets it back whole: this copy is the newest.
    pub(super) async fn store(
        &self,
        next: &GameState,
        messages: &[Message],
        log: &[LogEntry],
    ) -> Result<(), StoreError> {
        let store = &self.hub().store;
        let log_given = log.len();
        // A write replaces the version it expects, whose entries the write that stored it
        // logged: sent again, one would be logged twice and the log would no longer replay.
        // None should be; a 20-minute chaos run once logged an entry twice by a path not
        // found, so the store is never handed one.
        let log = newer_than(log, self.stored_version);
        if log.len() < log_given {
            tracing::error!(room = %next.room_id, stored = self.stored_version, "log entries at or below the stored version left out");
        }
        let result = store
            .replace_game(next, self.stored_version, messages, &log)
            .await;
        tracing::debug!(
            room = %next.room_id,
            expected = self.stored_version,
            version = next.version,
            log = ?log.iter().map(|entry| (entry.version, entry.at)).collect::<Vec<_>>(),
            ?result,
            "store"
        );
        match result {
            Err(StoreError::NoSuchGame(_)) => {
                // Its log is gone too: it goes on from these entries (a replay of it cannot
                // start from the setup, and says so).
                tracing::warn!(room = %next.room_id, "the store lost this match; restoring it");
                let record = MatchRecord::of(next);
                store.insert_match(&record, next, messages, &log).await
            }
            other => other,
        }
    }

    async fn act(&mut self, player: &str, action: Box<RawValue>) -> Result<u64, MatchError> {
        let player = player.to_string();
        self.change(|game, module, settings| {
            let (player, action) = (player.clone(), action.clone());
            async move {
                check_player(&game, &player)?;
                let state = game.game_data.clone();
                let input = LogInput::Action {
                    player: player.clone(),
                    action: action.clone(),
                    bot: false,
                };
                let transition = call(&module, move |m| m.action(&state, &player, &action)).await?;
                Ok(Some(transitioned(
                    game,
                    &transition,
                    settings.round_timeout_of(&module),
                    false,
                    input,
                )))
            }
        })
        .await
        .map(|()| self.game.turn)
    }

    async fn view(&self, player: &str) -> Result<Box<RawValue>, MatchError> {
        if !self.game.has_player(player) {
            return Err(MatchError::NotInRoom);
        }
        let (state, who) = (self.game.game_data.clone(), player.to_string());
        call(&self.module, move |m| m.view(&state, &who)).await
    }

    async fn set_player_state(&mut self, player: &str, state: Value) -> Result<(), MatchError> {
        let player = player.to_string();
        self.change(|mut game, _, _| {
            let (player, state) = (player.clone(), state.clone());
            async move {
                let slot = game.slot_mut(&player).ok_or(MatchError::NotInRoom)?;
                slot.state = state.clone();
                // The original's broadcast, exactly: `{playerId, state}` (no version).
                #[derive(Serialize)]
                #[serde(rename_all = "camelCase")]
                struct Updated<'a> {
                    player_id: &'a str,
                    state: &'a Value,
                }
                let body = payload(&Updated {
                    player_id: &player,
                    state: &state,
                });
                let messages = vec![Message::new(everyone(&game), "playerStateUpdated", body)];
                Ok(Some(Change {
                    next: game,
                    messages,
                    answer: (),
                    input: None,
                }))
            }
        })
        .await
    }

    async fn disconnected(
        &mut self,
        player: &str,
        socket: &str,
        grace: Duration,
    ) -> Result<(), MatchError> {
        let player = player.to_string();
        self.change(|mut game, _, _| {
            let player = player.clone();
            let socket = socket.to_string();
            async move {
                let Some(slot) = game.slot_mut(&player) else {
                    return Ok(None);
                };
                // A socket the player already replaced going away changes nothing.
                if slot.socket_id != socket || !slot.connected {
                    return Ok(None);
                }
                slot.connected = false;
                #[derive(Serialize)]
                #[serde(rename_all = "camelCase")]
                struct Gone<'a> {
                    room_id: &'a str,
                    player_id: &'a str,
                    reconnect_within_ms: u64,
                    version: u64,
                }
                let body = payload(&Gone {
                    room_id: &game.room_id,
                    player_id: &player,
                    reconnect_within_ms: grace.as_millis() as u64,
                    version: game.version,
                });
                let messages = to_others(&game, &player, "opponentDisconnected", body);
                Ok(Some(Change {
                    next: game,
                    messages,
                    answer: (),
                    input: Some(LogInput::Disconnected { player }),
                }))
            }
        })
        .await
    }

    /// The player is back on `socket`: a change, whose messages include the player's own
    /// `resumed`, so that it reaches the player in version order with everything else (sent
    /// apart, it could arrive after a newer message the new socket already got).
    async fn reconnected(&mut self, player: &str, socket: &str) -> Result<(), MatchError> {
        let instance = self.instance().to_string();
        let player = player.to_string();
        self.change(|mut game, module, _| {
            let (player, socket, instance) = (player.clone(), socket.to_string(), instance.clone());
            async move {
                let slot = game.slot_mut(&player).ok_or(MatchError::NotInRoom)?;
                let was_away = !slot.connected;
                slot.socket_id = socket;
                slot.instance_id = instance;
                slot.connected = true;
                let mut messages = Vec::new();
                if was_away {
                    #[derive(Serialize)]
                    #[serde(rename_all = "camelCase")]
                    struct Back<'a> {
                        room_id: &'a str,
                        player_id: &'a str,
                        version: u64,
                    }
                    let body = payload(&Back {
                        room_id: &game.room_id,
                        player_id: &player,
                        version: game.version,
                    });
                    messages = to_others(&game, &player, "opponentReconnected", body);
                }
                let (state, who) = (game.game_data.clone(), player.clone());
                let view = call(&module, move |m| m.view(&state, &who)).await?;
                messages.push(resumed(&game, &player, view));
                Ok(Some(Change {
                    next: game,
                    messages,
                    answer: (),
                    input: Some(LogInput::Reconnected { player }),
                }))
            }
        })
        .await
    }

    async fn forfeit(&mut self, player: &str) -> Result<(), MatchError> {
        let player = player.to_string();
        self.change(|game, module, settings| {
            let player = player.clone();
            async move {
                // Back in time after all, or already out.
                if game.slot(&player).is_none_or(|slot| slot.connected)
                    || game.status == Status::Finished
                {
                    return Ok(None);
                }
                tracing::info!(room = %game.room_id, player, "reconnection grace over: forfeit");
                let state = game.game_data.clone();
                let input = LogInput::Leave {
                    player: player.clone(),
                };
                let transition = call(&module, move |m| m.leave(&state, &player)).await?;
                Ok(Some(transitioned(
                    game,
                    &transition,
                    settings.round_timeout_of(&module),
                    false,
                    input,
                )))
            }
        })
        .await
    }

    /// At a round boundary: if another version of the game is active now and it can carry this
    /// match over (its optional migration export accepts the state), the match moves to it.
    /// Otherwise it stays on the version it started with.
    async fn migrate_if_asked(&mut self) {
        if self.unsaved || self.game.status == Status::Finished {
            return;
        }
        let Some(active) = self.hub().modules.rules().active(&self.game.game) else {
            return;
        };
        let target = active.sha256_hex();
        if target == self.game.module
            || !active.can_migrate()
            || self.refused_migration.as_deref() == Some(target.as_str())
        {
            return;
        }
        let result = self
            .change(|game, _, _| {
                let (active, target) = (active.clone(), target.clone());
                async move {
                    if game.module == target || game.status == Status::Finished {
                        return Ok(None);
                    }
                    let state = game.game_data.clone();
                    let transition = call(&active, move |m| m.migrate(&state)).await?;
                    let mut next = game;
                    let from = std::mem::replace(&mut next.module, target);
                    next.game_data = transition.state.clone();
                    let messages = announcements(&next, &transition);
                    Ok(Some(Change {
                        next,
                        messages,
                        answer: (),
                        input: Some(LogInput::Migrate { from }),
                    }))
                }
            })
            .await;
        match result {
            Ok(()) if self.game.module == target => {
                tracing::info!(room = %self.game.room_id, version = target, "match moved to the active version");
                self.module = active;
            }
            Ok(()) => {}
            Err(error) => {
                tracing::info!(room = %self.game.room_id, version = target, %error, "match stays on its version");
                self.refused_migration = Some(target);
            }
        }
    }

    async fn on_round_deadline(&mut self) {
        // Another instance may have moved the round on already; catch up before timing it out.
        if !self.unsaved {
            self.reload().await;
        }
        let due = |game: &GameState| {
            game.status != Status::Finished && game.round_ends_at.is_some_and(|at| at <= now_ms())
        };
        if !due(&self.game) {
            return;
        }
        let result = self
            .change(|game, module, settings| async move {
                if !due(&game) {
                    return Ok(None);
                }
                let state = game.game_data.clone();
                let transition = call(&module, move |m| m.timeout(&state)).await?;
                // If the rules keep the round open, it gets another full round.
                Ok(Some(transitioned(
                    game,
                    &transition,
                    settings.round_timeout_of(&module),
                    true,
                    LogInput::Timeout,
                )))
            })
            .await;
        if let Err(error) = result {
            tracing::error!(room = %self.game.room_id, %error, "round timeout failed");
            // Try again after another full round rather than at once.
            let retry_at = now_ms() + self.hub().settings.round_timeout.as_millis() as u64;
            self.game.round_ends_at = Some(retry_at);
        }
    }
}

/// The entries of `log` past version `stored`.
fn newer_than(log: &[LogEntry], stored: u64) -> Cow<'_, [LogEntry]> {
    if log.iter().all(|entry| entry.version > stored) {
        return Cow::Borrowed(log);
    }
    Cow::Owned(
        log.iter()
            .filter(|entry| entry.version > stored)
            .cloned()
            .collect(),
    )
}

pub(super) fn check_player(game: &GameState, player: &str) -> Result<(), MatchError> {
    if game.status == Status::Finished {
        return Err(MatchError::Finished);
    }
    if !game.has_player(player) {
        return Err(MatchError::NotInRoom);
    }
    Ok(())
}

pub(super) async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_logs_only_entries_past_the_version_it_replaces() {
        let entry = |version| LogEntry {
            version,
            module: "m".into(),
            at: 1,
            input: LogInput::Timeout,
            turn: 0,
            state: String::new(),
            winners: None,
        };
        let log = [entry(85), entry(86)];
        let versions = |log: &[LogEntry]| log.iter().map(|e| e.version).collect::<Vec<_>>();
        assert_eq!(versions(&newer_than(&log, 84)), [85, 86]);
        assert_eq!(versions(&newer_than(&log, 85)), [86]);
        assert!(newer_than(&log, 86).is_empty());
        assert!(matches!(newer_than(&log, 80), Cow::Borrowed(_)));
    }
}
