//! From queues to matches: a player joins a queue; a match starts when the store says one can
//! (at once when a table is full, or once a partial table has waited `MATCH_FILL_MS`), or at
//! once against bots. Every decision is the store's, atomically ([`Store::join_queue`],
//! [`Store::fill_queue`]), so a player is in one match at most whichever instances ask.
//!
//! The clocks: an instance that queues a player also watches that player's wait. When it has
//! waited the fill time, the instance asks the store whether its queue is due; when it has
//! waited `BOT_AFTER_MS`, whether it still waits, and seats it (and whoever waits with it) with
//! bots. An instance that dies takes its clocks with it, and its players' entries are skipped as
//! ghosts, so nobody is matched with a player who is gone.

use super::setup::Seated;
use super::*;
use crate::matchmaking::{Joined, Seating};

/// A little past a deadline, so that the store's clock has passed it too.
const CLOCK_SLACK: Duration = Duration::from_millis(25);

impl Matches {
    /// Queues `me` in `queue`, or starts the match it completes. `Ok(None)`: it waits.
    pub async fn join(&self, queue: &Queue, me: Seated) -> Result<Option<GameState>, MatchError> {
        let store = &self.inner.store;
        loop {
            let joined = store
                .join_queue(&queue.lane, &me.entry, &me.instance, queue.seating)
                .await?;
            let others = match joined {
                Joined::Matched { others } => others,
                Joined::Playing { room } => return Err(MatchError::AlreadyInMatch(room)),
                Joined::Waiting => {
                    self.watch(queue, &me);
                    return Ok(None);
                }
            };
            let (mut seated, lost) = self.seat(others).await?;
            seated.push(me.clone());
            if lost == 0 || seated.len() >= queue.seating.min {
                match self.start(queue, seated.clone(), 0).await {
                    Err(MatchError::SeatedElsewhere { player, room }) => {
                        // Seated elsewhere while this match was being made: the others go back
                        // to waiting, and so does `me` unless it is the one.
                        seated.retain(|s| s.entry.id != player);
                        if player != me.entry.id {
                            seated.pop();
                        }
                        for other in seated {
                            Box::pin(self.join(queue, other)).await?;
                        }
                        if player == me.entry.id {
                            return Err(MatchError::AlreadyInMatch(room));
                        }
                        continue;
                    }
                    started => return started.map(Some),
                }
            }
            // Someone taken from the queue had gone meanwhile and the rest are too few: they
            // go back to waiting (each keeps its clock), and so does `me`.
            seated.pop();
            for other in seated {
                Box::pin(self.join(queue, other)).await?;
            }
        }
    }

    /// Starts a match at once for `me` and bots in the other `seats - 1` seats.
    pub async fn against_bots(
        &self,
        queue: &Queue,
        me: Seated,
        seats: usize,
    ) -> Result<GameState, MatchError> {
        if !queue.bots {
            return Err(MatchError::NoBots(queue.game.clone()));
        }
        let Seating { min, max, .. } = queue.seating;
        if seats < min || seats > max {
            return Err(MatchError::BadSeats {
                game: queue.game.clone(),
                asked: seats,
                min,
                max,
            });
        }
        self.inner.store.leave_queue(&me.entry.id).await?;
        self.start(queue, vec![me], seats - 1).await
    }

    /// The sockets of players taken from a queue, and how many of them had gone meanwhile.
    async fn seat(&self, entries: Vec<QueueEntry>) -> Result<(Vec<Seated>, usize), MatchError> {
        let mut seated = Vec::with_capacity(entries.len());
        let mut lost = 0;
        for entry in entries {
            match self.inner.store.session(&entry.id).await? {
                Some(Session {
                    socket_id: Some(socket),
                    instance_id: Some(instance),
                    ..
                }) => seated.push(Seated {
                    entry,
                    socket,
                    instance,
                }),
                _ => lost += 1,
            }
        }
        Ok((seated, lost))
    }

    /// Watches a waiting player's clocks: the fill time of a queue that seats a range, and the
    /// wait after which bots join.
    fn watch(&self, queue: &Queue, me: &Seated) {
        let seating = queue.seating;
        if seating.min < seating.max {
            let fill = Duration::from_millis(seating.fill_after_ms);
            self.after(fill, queue, me, seating, 0);
        }
        if let Some(after) = self.inner.settings.bots.after.filter(|_| queue.bots) {
            // Whoever waits then, alone or not: seated now, bots in the seats up to the fewest.
            let now = Seating {
                min: 1,
                max: seating.max,
                fill_after_ms: after.as_millis() as u64,
            };
            self.after(after, queue, me, now, seating.min);
        }
    }

    /// After `wait`, asks the store whether `me`'s queue is due under `seating`, and if so
    /// starts its match with bots in the seats up to `fill_with_bots`.
    fn after(
        &self,
        wait: Duration,
        queue: &Queue,
        me: &Seated,
        seating: Seating,
        fill_with_bots: usize,
    ) {
        let (matches, queue, level) = (self.clone(), queue.clone(), me.entry.level);
        tokio::spawn(async move {
            tokio::time::sleep(wait + CLOCK_SLACK).await;
            let taken = match matches
                .inner
                .store
                .fill_queue(&queue.lane, level, seating)
                .await
            {
                Ok(Some(taken)) => taken,
                Ok(None) => return,
                Err(error) => {
                    tracing::warn!(%error, lane = queue.lane, level, "queue clock not checked");
                    return;
                }
            };
            let result = async {
                let (seated, _) = matches.seat(taken).await?;
                let bots = fill_with_bots.saturating_sub(seated.len());
                if seated.is_empty() {
                    return Ok(None);
                }
                if seated.len() + bots < queue.seating.min {
                    // Too few left of those taken, and no bots to make up: back they go.
                    for other in seated {
                        Box::pin(matches.join(&queue, other)).await?;
                    }
                    return Ok(None);
                }
                match matches.start(&queue, seated.clone(), bots).await {
                    Err(MatchError::SeatedElsewhere { player, room }) => {
                        tracing::debug!(player, room, "a waiting player plays elsewhere");
                        for other in seated.into_iter().filter(|s| s.entry.id != player) {
                            Box::pin(matches.join(&queue, other)).await?;
                        }
                        Ok(None)
                    }
                    started => started.map(Some),
                }
            };
            match result.await {
                Ok(Some(game)) => tracing::debug!(room = game.room_id, "a waiting table started"),
                Ok(None) => {}
                Err(error) => {
                    tracing::error!(%error, lane = queue.lane, level, "a waiting table did not start")
                }
            }
        });
    }
}
