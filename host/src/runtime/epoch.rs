//! The epoch ticker: wasmtime interrupts a call whose deadline (in epochs) has passed, and
//! something must advance the epoch. A thread does, every [`EPOCH_TICK`], but only while a call
//! is running: an idle instance would otherwise wake 500 times a second for nothing (about 1% of
//! a core each, measured with a fleet of idle instances).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::Thread;
use std::time::Duration;
use wasmtime::Engine;

/// How often the epoch advances while a call runs. A call's budget is rounded up to whole ticks.
pub(super) const EPOCH_TICK: Duration = Duration::from_millis(2);

/// Advances the engines' epoch while any call is running, until stopped.
pub(super) struct Ticker {
    running: AtomicUsize,
    stop: AtomicBool,
    thread: Thread,
}

/// Held while wasm code may run: the ticker ticks.
pub(super) struct Running<'a>(&'a Ticker);

impl Ticker {
    pub(super) fn start(engines: Vec<Engine>) -> Arc<Ticker> {
        let (tx, rx) = std::sync::mpsc::channel::<Arc<Ticker>>();
        let handle = std::thread::Builder::new()
            .name("rules-epoch".into())
            .spawn(move || {
                let Ok(ticker) = rx.recv() else { return };
                while !ticker.stop.load(Ordering::Acquire) {
                    if ticker.running.load(Ordering::Acquire) == 0 {
                        // Woken by the next call (an unpark before this park is not lost).
                        std::thread::park();
                        continue;
                    }
                    std::thread::sleep(EPOCH_TICK);
                    for engine in &engines {
                        engine.increment_epoch();
                    }
                }
            })
            .expect("the epoch ticker thread starts");
        let ticker = Arc::new(Ticker {
            running: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            thread: handle.thread().clone(),
        });
        let _ = tx.send(ticker.clone());
        ticker
    }

    /// Marks a call as running until the guard is dropped.
    pub(super) fn running(&self) -> Running<'_> {
        if self.running.fetch_add(1, Ordering::AcqRel) == 0 {
            self.thread.unpark();
        }
        Running(self)
    }

    pub(super) fn stop(&self) {
        self.stop.store(true, Ordering::Release);
        self.thread.unpark();
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::AcqRel);
    }
}
