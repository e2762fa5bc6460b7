//! Cancel for the sign-ins the window waits for: the user's own ([`super::identity::login_wait`])
//! and an approver's, which `approve`, `deny` and `revoke` wait for before they decide
//! ([`super::grants`]). The window calls `login_cancel` with the sign-in's id; the command
//! that waits for it then drops the engine's call, which abandons the sign-in (the engine takes
//! a sign-in off its list when the wait starts, so nothing else can finish it), and answers
//! with a `bad_request` error.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use snowgate_engine::control::{ControlError, ErrorKind};
use tokio::sync::Notify;

/// What a cancelled wait answers.
pub(crate) const CANCELLED: &str = "the sign-in was cancelled";

/// Sign-ins the window waits for, so that Cancel can end the wait. Managed as state, one for
/// the user's and the approvers' sign-ins alike (their ids come from the same engine).
#[derive(Default)]
pub struct SignInsUnderWay {
    cancels: Mutex<HashMap<String, Arc<Notify>>>,
}

impl SignInsUnderWay {
    /// Runs `wait`, the engine call that waits for the sign-in `login_id`, until it ends or
    /// [`cancel`](Self::cancel) is called for that id; a Cancel that came before the wait
    /// counts too. On Cancel, `wait` is dropped and the answer is a `bad_request` error.
    ///
    /// `wait` is polled first, so that even after an early Cancel the engine takes the sign-in
    /// off its list before the wait is dropped, rather than leaving it under way.
    pub(crate) async fn until_cancelled<T>(
        &self,
        login_id: &str,
        wait: impl Future<Output = Result<T, ControlError>>,
    ) -> Result<T, ControlError> {
        let cancelled = self.signal(login_id);
        let result = tokio::select! {
            biased;
            done = wait => done,
            () = cancelled.notified() => Err(ControlError::new(ErrorKind::BadRequest, CANCELLED)),
        };
        self.forget(login_id);
        result
    }

    /// Ends the wait for `login_id`, or the next one if none is running yet.
    pub(crate) fn cancel(&self, login_id: &str) {
        // A Notify keeps one permit for a wait that has not started.
        self.signal(login_id).notify_one();
    }

    fn signal(&self, login_id: &str) -> Arc<Notify> {
        self.cancels()
            .entry(login_id.to_string())
            .or_default()
            .clone()
    }

    fn forget(&self, login_id: &str) {
        self.cancels().remove(login_id);
    }

    fn cancels(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Notify>>> {
        self.cancels
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap()
            .block_on(f)
    }

    /// A sign-in that never finishes: counts its polls and says when it is dropped.
    struct Endless {
        polls: Arc<AtomicUsize>,
        dropped: Arc<AtomicBool>,
    }

    impl Endless {
        fn new() -> (Endless, Arc<AtomicUsize>, Arc<AtomicBool>) {
            let polls = Arc::new(AtomicUsize::new(0));
            let dropped = Arc::new(AtomicBool::new(false));
            let endless = Endless {
                polls: polls.clone(),
                dropped: dropped.clone(),
            };
            (endless, polls, dropped)
        }
    }

    impl Future for Endless {
        type Output = Result<&'static str, ControlError>;

        fn poll(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Self::Output> {
            self.polls.fetch_add(1, Ordering::SeqCst);
            std::task::Poll::Pending
        }
    }

    impl Drop for Endless {
        fn drop(&mut self) {
            self.dropped.store(true, Ordering::SeqCst);
        }
    }

    fn cancelled() -> ControlError {
        ControlError::new(ErrorKind::BadRequest, CANCELLED)
    }

    #[test]
    fn a_finished_wait_answers_and_is_forgotten() {
        let under_way = SignInsUnderWay::default();
        let answer = block_on(under_way.until_cancelled("abc", async { Ok("alice") }));
        assert_eq!(answer, Ok("alice"));
        assert!(under_way.cancels().is_empty());
    }

    #[test]
    fn an_error_of_the_wait_comes_back_unchanged() {
        let under_way = SignInsUnderWay::default();
        let refused = ControlError::new(ErrorKind::Forbidden, "not an approver");
        let answer: Result<(), _> =
            block_on(under_way.until_cancelled("abc", async { Err(refused.clone()) }));
        assert_eq!(answer, Err(refused));
    }

    #[test]
    fn cancel_during_the_wait_ends_it_and_drops_the_engine_call() {
        let under_way = Arc::new(SignInsUnderWay::default());
        let (endless, polls, dropped) = Endless::new();
        let answer = block_on(async {
            let canceller = under_way.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                canceller.cancel("abc");
            });
            tokio::time::timeout(
                Duration::from_secs(5),
                under_way.until_cancelled("abc", endless),
            )
            .await
            .expect("Cancel ends the wait")
        });
        assert_eq!(answer, Err(cancelled()));
        assert!(polls.load(Ordering::SeqCst) >= 1);
        assert!(dropped.load(Ordering::SeqCst), "the engine call is dropped");
        assert!(under_way.cancels().is_empty());
    }

    #[test]
    fn cancel_before_the_wait_still_lets_the_engine_start_it_once() {
        let under_way = SignInsUnderWay::default();
        under_way.cancel("abc");
        let (endless, polls, dropped) = Endless::new();
        let answer = block_on(async {
            tokio::time::timeout(
                Duration::from_secs(1),
                under_way.until_cancelled("abc", endless),
            )
            .await
            .expect("a Cancel sent before the wait ends the wait at once")
        });
        assert_eq!(answer, Err(cancelled()));
        assert_eq!(
            polls.load(Ordering::SeqCst),
            1,
            "polled once, to take it off the list"
        );
        assert!(dropped.load(Ordering::SeqCst));
    }

    #[test]
    fn cancel_of_another_sign_in_leaves_the_wait_alone() {
        let under_way = SignInsUnderWay::default();
        under_way.cancel("other");
        let (endless, _, _) = Endless::new();
        let answer = block_on(async {
            tokio::time::timeout(
                Duration::from_millis(50),
                under_way.until_cancelled("abc", endless),
            )
            .await
        });
        assert!(answer.is_err(), "still waiting when the timeout struck");
    }
}
