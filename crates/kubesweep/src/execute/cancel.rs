//! Cooperative cancellation of a run: the front end (a signal handler) asks
//! the executor to stop starting new work; requests already in flight finish,
//! since each is a single UID-bound API call that is safe to complete. A
//! `watch` channel rather than a flag alone, so a wait can sleep until either
//! its timer or the cancellation fires.

use std::sync::Arc;

use tokio::sync::watch;

/// A cancellation token shared by the front end and the executor; clones
/// observe the same state.
#[derive(Clone, Debug)]
pub struct Cancel {
    state: Arc<watch::Sender<bool>>,
}

impl Default for Cancel {
    fn default() -> Self {
        Self::new()
    }
}

impl Cancel {
    /// A token that is not cancelled.
    pub fn new() -> Self {
        Self {
            state: Arc::new(watch::Sender::new(false)),
        }
    }

    /// Asks the run to stop; idempotent.
    pub fn cancel(&self) {
        self.state.send_replace(true);
    }

    /// Whether [`Cancel::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        *self.state.borrow()
    }

    /// Resolves once the token is cancelled (at once if it already is).
    pub async fn cancelled(&self) {
        let mut rx = self.state.subscribe();
        // The sender lives in `self`, so the channel cannot close under us.
        let _ = rx.wait_for(|cancelled| *cancelled).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_clone_sees_the_cancellation_and_waiters_wake() {
        let token = Cancel::new();
        let other = token.clone();
        assert!(!other.is_cancelled());
        let waiter = tokio::spawn({
            let t = other.clone();
            async move { t.cancelled().await }
        });
        token.cancel();
        waiter.await.expect("waiter wakes");
        assert!(other.is_cancelled());
        // Already cancelled: resolves at once.
        other.cancelled().await;
    }
}
