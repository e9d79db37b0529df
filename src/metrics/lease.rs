//! A monitor instance's right to publish its state (health, `earshot_monitor_up`, events).
//!
//! Why: `Monitor::stop` waits a bounded time for its threads; a thread stuck in inference or
//! a slow index call can outlive it while a successor with the same name already runs. State
//! is keyed by monitor name, so a late write from the old instance (its "stopped" health, its
//! "shutdown" event) would land on the successor. Every such write goes through the instance's
//! lease, and the daemon retires the lease before a successor starts: from then on the old
//! threads' writes are dropped. Writers hold a read lock while they write, and [`Lease::retire`]
//! takes the write lock, so a write that began before retirement has finished when `retire`
//! returns; none can begin after.

use std::sync::Arc;

use parking_lot::RwLock;

/// Shared between one monitor instance's threads and the daemon (see the module docs).
#[derive(Clone, Debug)]
pub struct Lease(Arc<RwLock<bool>>);

impl Default for Lease {
    fn default() -> Self {
        Self::new()
    }
}

impl Lease {
    /// A live lease.
    pub fn new() -> Self {
        Self(Arc::new(RwLock::new(true)))
    }

    /// Runs `write` if the lease is live, holding it live until `write` returns; `None` when
    /// the instance was retired (its write is dropped).
    pub fn with<R>(&self, write: impl FnOnce() -> R) -> Option<R> {
        let live = self.0.read();
        if *live { Some(write()) } else { None }
    }

    /// True until [`Lease::retire`].
    pub fn is_live(&self) -> bool {
        *self.0.read()
    }

    /// Ends the instance's right to publish; waits for a write in progress to finish.
    pub fn retire(&self) {
        *self.0.write() = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// A write that started before `retire` completes before `retire` returns; a write
    /// attempted afterwards does not run.
    #[test]
    fn retire_waits_for_a_write_in_progress_and_blocks_later_ones() {
        let lease = Lease::new();
        let done = Arc::new(AtomicUsize::new(0));
        let (l2, d2) = (lease.clone(), done.clone());
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            l2.with(|| {
                started_tx.send(()).unwrap();
                std::thread::sleep(Duration::from_millis(300));
                d2.fetch_add(1, Ordering::SeqCst);
            })
        });
        started_rx.recv().unwrap();
        lease.retire();
        assert_eq!(done.load(Ordering::SeqCst), 1, "retire returned mid-write");
        assert!(t.join().unwrap().is_some());
        assert!(lease.with(|| done.fetch_add(1, Ordering::SeqCst)).is_none());
        assert_eq!(done.load(Ordering::SeqCst), 1);
        assert!(!lease.is_live());
    }
}
