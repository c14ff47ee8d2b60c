//! What players hear of a match: every change turned into messages, each to its audience.

use super::*;

/// A change an actor computed: the next game state, what to tell once it is stored, and the
/// input that caused it, for the match log (`None`: a change the log does not record, like a
/// player's free-form client state).
pub(super) struct Change<T> {
    pub(super) next: GameState,
    pub(super) messages: Vec<Message>,
    pub(super) answer: T,
    pub(super) input: Option<LogInput>,
}

/// Writes a transition into the game state document. The round clock restarts when the turn
/// moves, or when `restart_clock` says so (a timeout that left the round open).
pub(super) fn fold(
    game: &mut GameState,
    transition: &Transition,
    round_timeout: Duration,
    restart_clock: bool,
) {
    let turn_moved = transition.turn != game.turn;
    game.game_data = transition.state.clone();
    game.turn = transition.turn;
    if let Some(outcome) = &transition.outcome {
        game.status = Status::Finished;
        game.winners = Some(outcome.winners.clone());
        game.round_ends_at = None;
    } else if turn_moved || restart_clock {
        game.round_ends_at = Some(now_ms() + round_timeout.as_millis() as u64);
    }
}

/// `matchFound`, as the original sent it: the room and its players, sorted by id; every seat,
/// bots marked `bot: true`.
pub(super) fn match_found(game: &GameState) -> Message {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct MatchFound<'a> {
        room_id: &'a str,
        players: Vec<FoundSeat<'a>>,
        version: u64,
    }
    #[derive(Serialize)]
    struct FoundSeat<'a> {
        id: &'a str,
        level: i64,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        bot: bool,
    }
    Message::new(
        everyone(game),
        "matchFound",
        payload(&MatchFound {
            room_id: &game.room_id,
            players: game
                .players
                .iter()
                .map(|slot| FoundSeat {
                    id: &slot.id,
                    level: slot.level,
                    bot: slot.bot,
                })
                .collect(),
            version: game.version,
        }),
    )
}

/// Every player of a game (bots have nobody to tell).
pub(super) fn everyone(game: &GameState) -> To {
    To::Players(game.humans().into_iter().map(String::from).collect())
}

/// Whether `player` is one of the game's bots.
fn is_bot(game: &GameState, player: &str) -> bool {
    game.slot(player).is_some_and(|slot| slot.bot)
}

/// What each player hears of a transition: the rules' events (each to its audience), then its
/// own view, then the end of the game if it ended.
pub(super) fn announcements(game: &GameState, transition: &Transition) -> Vec<Message> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct GameEvent<'a> {
        room_id: &'a str,
        turn: u64,
        event: &'a RawValue,
        version: u64,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct ViewEvent<'a> {
        room_id: &'a str,
        turn: u64,
        version: u64,
        view: &'a RawValue,
        #[serde(skip_serializing_if = "Option::is_none")]
        round_ends_at: Option<u64>,
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct GameOver<'a> {
        room_id: &'a str,
        winners: &'a [PlayerId],
        version: u64,
    }
    let room = game.room_id.as_str();
    let mut messages = Vec::new();
    for event in &transition.events {
        let body = payload(&GameEvent {
            room_id: room,
            turn: transition.turn,
            event: &event.event,
            version: game.version,
        });
        let to = match &event.to {
            None => everyone(game),
            Some(player) if is_bot(game, player) => continue,
            Some(player) => To::Player(player.clone()),
        };
        messages.push(Message::new(to, "gameEvent", body));
    }
    for view in transition.views.iter().filter(|v| !is_bot(game, &v.player)) {
        let body = payload(&ViewEvent {
            room_id: room,
            turn: transition.turn,
            version: game.version,
            view: &view.view,
            round_ends_at: game.round_ends_at,
        });
        messages.push(Message::new(To::Player(view.player.clone()), "view", body));
    }
    if let Some(outcome) = &transition.outcome {
        let body = payload(&GameOver {
            room_id: room,
            winners: &outcome.winners,
            version: game.version,
        });
        messages.push(Message::new(everyone(game), "gameOver", body));
    }
    messages
}

/// The change a rules transition makes in answer to `input`, with its announcements.
pub(super) fn transitioned(
    mut game: GameState,
    transition: &Transition,
    round_timeout: Duration,
    restart_clock: bool,
    input: LogInput,
) -> Change<()> {
    fold(&mut game, transition, round_timeout, restart_clock);
    let messages = announcements(&game, transition);
    Change {
        next: game,
        messages,
        answer: (),
        input: Some(input),
    }
}

/// The same message for every player of the match but `player`.
pub(super) fn to_others(
    game: &GameState,
    player: &str,
    event: &'static str,
    body: Box<RawValue>,
) -> Vec<Message> {
    game.players
        .iter()
        .filter(|p| p.id != player && !p.bot)
        .map(|p| Message::new(To::Player(p.id.clone()), event, body.clone()))
        .collect()
}

/// `resumed`, to a player back in its match: where the match is, as this player sees it.
pub(super) fn resumed(game: &GameState, player: &str, view: Box<RawValue>) -> Message {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Resumed<'a> {
        room_id: &'a str,
        turn: u64,
        version: u64,
        view: &'a RawValue,
        round_ends_at: Option<u64>,
        state: GameState,
    }
    let body = payload(&Resumed {
        room_id: &game.room_id,
        turn: game.turn,
        version: game.version,
        view: &view,
        round_ends_at: game.round_ends_at,
        state: game.for_player(view.clone()),
    });
    Message::new(To::Player(player.to_string()), "resumed", body)
}
