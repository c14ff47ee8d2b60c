//! Which of this instance's sockets wait for a match, and in which queue.
//!
//! A waiting player's entry lives in the store, and can be lost while the player waits on: Redis
//! may come back empty from an outage, or other instances may take this one for dead (its
//! heartbeat expired) and remove its players' entries. When this instance writes its state back
//! it queues those players again from here (`Gateway::requeue_waiting`). A socket stops waiting
//! when it is seated (here or by another instance), leaves the queue, joins again or goes.

use std::collections::HashMap;
use std::sync::Mutex;

/// What a socket asked for when it joined: the queue (`game`, `mode`) and its level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wait {
    pub game: Option<String>,
    pub mode: Option<String>,
    pub level: i64,
}

#[derive(Default)]
pub struct Waiting(Mutex<HashMap<String, Wait>>);

impl Waiting {
    pub fn waits(&self, socket: &str, wait: Wait) {
        self.lock().insert(socket.to_string(), wait);
    }

    /// `socket` no longer waits (whether or not it did).
    pub fn stops(&self, socket: &str) {
        self.lock().remove(socket);
    }

    /// Every waiting socket, and what it waits for.
    pub fn all(&self) -> Vec<(String, Wait)> {
        self.lock()
            .iter()
            .map(|(socket, wait)| (socket.clone(), wait.clone()))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Wait>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait(level: i64) -> Wait {
        Wait {
            game: None,
            mode: None,
            level,
        }
    }

    #[test]
    fn a_socket_waits_for_what_it_asked_last_until_it_stops() {
        let waiting = Waiting::default();
        waiting.waits("s1", wait(1));
        waiting.waits("s2", wait(2));
        waiting.waits("s1", wait(3));
        let mut all = waiting.all();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            all,
            vec![("s1".to_string(), wait(3)), ("s2".to_string(), wait(2))]
        );
        waiting.stops("s1");
        waiting.stops("never-waited");
        assert_eq!(waiting.all(), vec![("s2".to_string(), wait(2))]);
    }
}
