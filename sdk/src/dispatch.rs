//! The ABI's operations as plain functions from input bytes to reply bytes, generic over a game.
//!
//! The wasm exports that [`crate::export_game!`] generates call these, and so does the native
//! harness in [`crate::testing`]: one code path, so a native run and a wasm run of the same inputs
//! give the same bytes.

use crate::{Bot, Ctx, Game, Rng};
use abi::{
    ActionInput, BotInput, Description, GuestError, LeaveInput, MigrateInput, Mode, PlayerCount,
    PlayerView, Rejection, Reply, Seat, SetupInput, TimeoutInput, Transition, ViewInput,
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::value::RawValue;

/// What the SDK keeps in the host's match state around the game's own state: the seats (to know
/// whose views to produce and who may act) and the RNG (so randomness continues where it left off).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Stored<S> {
    pub players: Vec<Seat>,
    pub rng: Rng,
    pub game: S,
}

type GameTransition<G> =
    Transition<Stored<<G as Game>::State>, <G as Game>::View, <G as Game>::Event>;

/// [`abi::EXPORT_SETUP`].
pub fn setup<G: Game>(input: &[u8]) -> Vec<u8> {
    encode(setup_typed::<G>(input))
}

/// [`abi::EXPORT_ACTION`].
pub fn action<G: Game>(input: &[u8]) -> Vec<u8> {
    encode(action_typed::<G>(input))
}

/// [`abi::EXPORT_TIMEOUT`].
pub fn timeout<G: Game>(input: &[u8]) -> Vec<u8> {
    encode(
        decode_state::<G, TimeoutInput<Stored<G::State>>>(input, |i| &i.state).map(|input| {
            let mut stored = input.state;
            let mut ctx = Ctx::new(&mut stored.rng);
            G::timeout(&mut stored.game, &mut ctx);
            let events = ctx.events;
            transition::<G>(stored, events)
        }),
    )
}

/// [`abi::EXPORT_LEAVE`].
pub fn leave<G: Game>(input: &[u8]) -> Vec<u8> {
    encode(
        decode_state::<G, LeaveInput<Stored<G::State>>>(input, |i| &i.state).and_then(|input| {
            let mut stored = input.state;
            ensure_seated(&stored.players, &input.player)?;
            let mut ctx = Ctx::new(&mut stored.rng);
            G::leave(&mut stored.game, &input.player, &mut ctx);
            let events = ctx.events;
            Ok(transition::<G>(stored, events))
        }),
    )
}

/// [`abi::EXPORT_MIGRATE`]: [`Game::migrate`] on the game state another version stored.
pub fn migrate<G: Game>(input: &[u8]) -> Vec<u8> {
    encode(
        decode::<MigrateInput<Stored<serde_json::Value>>>(input).and_then(|input| {
            let Stored { players, rng, game } = input.state;
            let game = G::migrate(game).ok_or_else(|| {
                GuestError::Rejected(Rejection::new(
                    "cannot_migrate",
                    "this version cannot carry that match over",
                ))
            })?;
            let stored = Stored { players, rng, game };
            // What a migration made of another version's state must hold like any other.
            check_stored::<G>(&stored)?;
            Ok(transition::<G>(stored, Vec::new()))
        }),
    )
}

/// [`abi::EXPORT_VIEW`].
pub fn view<G: Game>(input: &[u8]) -> Vec<u8> {
    encode(
        decode_state::<G, ViewInput<Stored<G::State>>>(input, |i| &i.state).and_then(|input| {
            ensure_seated(&input.state.players, &input.player)?;
            Ok(G::view(&input.state.game, &input.player))
        }),
    )
}

/// [`abi::EXPORT_BOT`]: what [`Bot::act`] does with the seat's view, or `null`.
pub fn bot<G: Bot>(input: &[u8]) -> Vec<u8>
where
    G::View: DeserializeOwned,
    G::Action: Serialize,
{
    encode(decode::<BotInput<G::View>>(input).map(|input| {
        let mut rng = Rng::from_seed(input.seed);
        G::act(input.view, &input.player, &mut rng)
    }))
}

/// [`abi::EXPORT_DESCRIBE`]: the game called `name`, as [`Game::players`],
/// [`Game::round_timeout`] and [`Game::modes`] describe it.
pub fn describe<G: Game>(name: &str, input: &[u8]) -> Vec<u8> {
    encode(decode::<()>(input).map(|()| description::<G>(name)))
}

/// What [`describe`] answers, as a value.
pub fn description<G: Game>(name: &str) -> Description<G::Config> {
    let players = G::players();
    Description {
        name: name.to_string(),
        players: PlayerCount {
            min: *players.start(),
            max: *players.end(),
        },
        round_timeout_ms: G::round_timeout().map(|t| t.as_millis() as u64),
        modes: G::modes()
            .into_iter()
            .map(|(name, config)| Mode { name, config })
            .collect(),
    }
}

fn setup_typed<G: Game>(input: &[u8]) -> Reply<GameTransition<G>> {
    let input: SetupInput<Box<RawValue>> = decode(input)?;
    let config = if input.config.get() == "null" {
        G::Config::default()
    } else {
        serde_json::from_str(input.config.get()).map_err(|_| {
            GuestError::Rejected(Rejection::new(
                "invalid_config",
                "this match configuration is not one of this game's",
            ))
        })?
    };
    let mut rng = Rng::from_seed(input.seed);
    let mut ctx = Ctx::new(&mut rng);
    let game = G::setup(&input.players, config, &mut ctx).map_err(GuestError::Rejected)?;
    let events = ctx.events;
    let stored = Stored {
        players: input.players,
        rng,
        game,
    };
    Ok(transition::<G>(stored, events))
}

fn action_typed<G: Game>(input: &[u8]) -> Reply<GameTransition<G>> {
    let input: ActionInput<Stored<G::State>, Box<RawValue>> =
        decode_state::<G, _>(input, |i: &ActionInput<Stored<G::State>, _>| &i.state)?;
    let mut stored = input.state;
    ensure_seated(&stored.players, &input.player)?;
    // The decoder's own wording (Rust type names, columns) means nothing to a player.
    let action: G::Action = serde_json::from_str(input.action.get()).map_err(|_| {
        GuestError::Rejected(Rejection::new(
            "invalid_action",
            "this is not an action of this game; see the game's rules for what one looks like",
        ))
    })?;
    let mut ctx = Ctx::new(&mut stored.rng);
    G::action(&mut stored.game, &input.player, action, &mut ctx).map_err(GuestError::Rejected)?;
    let events = ctx.events;
    Ok(transition::<G>(stored, events))
}

fn transition<G: Game>(
    stored: Stored<G::State>,
    events: Vec<abi::Event<G::Event>>,
) -> GameTransition<G> {
    let views = stored
        .players
        .iter()
        .map(|seat| PlayerView {
            player: seat.id.clone(),
            view: G::view(&stored.game, &seat.id),
        })
        .collect();
    Transition {
        turn: G::turn(&stored.game),
        outcome: G::outcome(&stored.game),
        events,
        views,
        state: stored,
    }
}

fn ensure_seated(players: &[Seat], player: &str) -> Result<(), GuestError> {
    if players.iter().any(|seat| seat.id == player) {
        Ok(())
    } else {
        Err(GuestError::Rejected(Rejection::new(
            "not_in_match",
            format!("player {player:?} is not in this match"),
        )))
    }
}

/// Decodes an input that carries a stored state, and refuses a state the game says it could
/// not have produced ([`Game::check`]) before any of its code sees it.
fn decode_state<G: Game, T: DeserializeOwned>(
    input: &[u8],
    state: impl Fn(&T) -> &Stored<G::State>,
) -> Result<T, GuestError> {
    let decoded: T = decode(input)?;
    check_stored::<G>(state(&decoded))?;
    Ok(decoded)
}

fn check_stored<G: Game>(stored: &Stored<G::State>) -> Result<(), GuestError> {
    G::check(&stored.game, &stored.players).map_err(|why| GuestError::BadInput {
        message: format!("not a state of this game: {why}"),
    })
}

fn decode<T: DeserializeOwned>(input: &[u8]) -> Result<T, GuestError> {
    serde_json::from_slice(input).map_err(|e| GuestError::BadInput {
        message: e.to_string(),
    })
}

fn encode<T: Serialize>(reply: Reply<T>) -> Vec<u8> {
    serde_json::to_vec(&reply).unwrap_or_else(|e| {
        // Only a game type whose Serialize impl fails can get here (e.g. a map with non-string
        // keys); say so rather than trap.
        let failed: Reply<()> = Err(GuestError::Internal {
            message: format!("the rules could not encode their reply: {e}"),
        });
        serde_json::to_vec(&failed).expect("a reply of plain strings always encodes")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Outcome;

    /// A game that says more of itself than the defaults.
    struct Party;

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    struct Board {
        side: u32,
    }

    impl Game for Party {
        type Config = Board;
        type State = ();
        type Action = ();
        type View = ();
        type Event = ();
        fn setup(_: &[Seat], _: Board, _: &mut Ctx<()>) -> Result<(), Rejection> {
            Ok(())
        }
        fn action(_: &mut (), _: &str, _: (), _: &mut Ctx<()>) -> Result<(), Rejection> {
            Ok(())
        }
        fn timeout(_: &mut (), _: &mut Ctx<()>) {}
        fn leave(_: &mut (), _: &str, _: &mut Ctx<()>) {}
        fn view(_: &(), _: &str) {}
        fn turn(_: &()) -> u64 {
            1
        }
        fn outcome(_: &()) -> Option<Outcome> {
            None
        }
        fn players() -> std::ops::RangeInclusive<u32> {
            2..=6
        }
        fn round_timeout() -> Option<std::time::Duration> {
            Some(std::time::Duration::from_secs(90))
        }
        fn modes() -> Vec<(String, Board)> {
            vec![
                ("small".into(), Board { side: 6 }),
                ("large".into(), Board { side: 12 }),
            ]
        }
    }

    #[test]
    fn a_game_describes_itself_as_its_author_says() {
        let reply = describe::<Party>("party", b"null");
        assert_eq!(
            String::from_utf8(reply).unwrap(),
            r#"{"Ok":{"name":"party","players":{"min":2,"max":6},"roundTimeoutMs":90000,"modes":[{"name":"small","config":{"side":6}},{"name":"large","config":{"side":12}}]}}"#
        );
    }

    #[test]
    fn describing_takes_only_null() {
        let reply: Reply<Description<Board>> =
            serde_json::from_slice(&describe::<Party>("party", b"{}")).unwrap();
        assert!(
            matches!(reply, Err(GuestError::BadInput { .. })),
            "{reply:?}"
        );
    }
}
