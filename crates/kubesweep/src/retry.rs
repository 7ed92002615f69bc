//! Retrying API requests: exponential backoff with jitter, honouring the
//! server's `retryAfterSeconds` on 429 (API Priority and Fairness), retrying
//! 5xx, server timeouts and broken connections, and never retrying what the
//! caller must decide on (404, 409, 4xx).
//!
//! A broken connection (refused, reset, timed out: the API server restarting)
//! is retried past the attempt count for as long as the outage budget allows
//! ([`RetryPolicy::outage_budget`], `--api-outage-timeout`): a restart takes
//! longer than a few backoff steps, and nothing has reached the server, so
//! waiting is safe. API errors never get this grace.
//!
//! kube-rs turns an error response into `kube::Error::Api(Status)` after the
//! HTTP response is consumed, so the `Retry-After` header is not reachable
//! here; the API server writes the same value into the Status body as
//! `details.retryAfterSeconds`, which is what we read.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::Rng;

/// How often and how patiently to retry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts, the first included (1 = no retry).
    pub max_attempts: u32,
    /// Backoff before the first retry; doubled each time.
    pub base_delay: Duration,
    /// Upper bound of one backoff step.
    pub max_delay: Duration,
    /// Upper bound for a server-requested delay (a misbehaving proxy could ask for hours).
    pub max_retry_after: Duration,
    /// How long a request keeps retrying broken connections, counted from
    /// the first one in a row, even after `max_attempts` (zero: no grace).
    pub outage_budget: Duration,
}

/// The outage budget of [`RetryPolicy::standard`], in milliseconds; the
/// command line sets it once from `--api-outage-timeout`.
static OUTAGE_BUDGET_MS: AtomicU64 = AtomicU64::new(DEFAULT_OUTAGE_BUDGET.as_millis() as u64);

/// Default of `--api-outage-timeout`.
pub const DEFAULT_OUTAGE_BUDGET: Duration = Duration::from_secs(60);

/// Sets the outage budget every [`RetryPolicy::standard`] made from now on
/// carries (process-wide, so that discovery, backup and execution agree).
pub fn set_outage_budget(budget: Duration) {
    let ms = u64::try_from(budget.as_millis()).unwrap_or(u64::MAX);
    OUTAGE_BUDGET_MS.store(ms, Ordering::Relaxed);
}

fn outage_budget() -> Duration {
    Duration::from_millis(OUTAGE_BUDGET_MS.load(Ordering::Relaxed))
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::standard()
    }
}

impl RetryPolicy {
    /// For mutations and lists during a run: rides out a few seconds of
    /// throttling or an API server restart.
    pub fn standard() -> Self {
        Self {
            max_attempts: 8,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(30),
            outage_budget: outage_budget(),
        }
    }

    /// For probes whose failure is itself an answer (a broken aggregated API
    /// answers 503 forever; the first contact with a server that is down).
    pub fn quick() -> Self {
        Self {
            max_attempts: 3,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            max_retry_after: Duration::from_secs(5),
            // A probe's failure is its answer: no grace.
            outage_budget: Duration::ZERO,
        }
    }

    /// No retries at all.
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::quick()
        }
    }

    /// Whether to try again after attempt number `attempt` (1-based) failed
    /// retryably; `outage` is how long connections have been failing in a
    /// row when the failure was a broken connection.
    pub fn retries_after(&self, attempt: u32, outage: Option<Duration>) -> bool {
        attempt < self.max_attempts || outage.is_some_and(|d| d < self.outage_budget)
    }

    /// Backoff before retry number `retry` (0-based), with "equal jitter":
    /// half fixed, half random, so concurrent workers spread out but every
    /// worker still waits at least half the nominal time.
    pub fn backoff(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.min(20));
        let nominal = self.base_delay.saturating_mul(factor).min(self.max_delay);
        let half = nominal / 2;
        let jitter_ms = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
        let extra = if jitter_ms == 0 {
            0
        } else {
            rand::rng().random_range(0..=jitter_ms)
        };
        half + Duration::from_millis(extra)
    }
}

/// What to do with an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Retryable {
    /// Try again; the server may have said how long to wait.
    Yes {
        /// `details.retryAfterSeconds` of the Status, when set.
        retry_after: Option<Duration>,
    },
    /// Hand the error to the caller.
    No,
}

/// Classifies an error for retrying.
pub fn classify(err: &kube::Error) -> Retryable {
    match err {
        kube::Error::Api(status) => {
            let retry_after = status
                .details
                .as_ref()
                .map(|d| d.retry_after_seconds)
                .filter(|s| *s > 0)
                .map(|s| Duration::from_secs(u64::from(s)));
            match status.code {
                // 429: APF throttling. 500/502/503/504: server or aggregated
                // API having a moment; all are transient from our side.
                429 | 500 | 502 | 503 | 504 => Retryable::Yes { retry_after },
                _ if status.reason == "ServerTimeout" || status.reason == "Timeout" => {
                    Retryable::Yes { retry_after }
                }
                _ => Retryable::No,
            }
        }
        e if is_transport_error(e) => Retryable::Yes { retry_after: None },
        _ => Retryable::No,
    }
}

/// True for errors below HTTP: refused/reset connections, TLS, timeouts.
/// A credential failure (exec plugin, token file) is not one, even when a
/// middleware layer wrapped it.
pub fn is_transport_error(err: &kube::Error) -> bool {
    match err {
        kube::Error::HyperError(_) => true,
        kube::Error::Service(_) => !matches!(wrapped_kube_error(err), Some(kube::Error::Auth(_))),
        _ => false,
    }
}

/// The `kube::Error` a middleware layer (our retry buffer) wrapped into
/// `kube::Error::Service`, if any.
pub fn wrapped_kube_error(err: &kube::Error) -> Option<&kube::Error> {
    let kube::Error::Service(boxed) = err else {
        return None;
    };
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(boxed.as_ref());
    while let Some(e) = current {
        if let Some(inner) = e.downcast_ref::<kube::Error>() {
            return Some(inner);
        }
        current = e.source();
    }
    None
}

/// True for 404.
pub fn is_not_found(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == 404)
}

/// True for 409: a precondition (UID, resourceVersion) failed or a write raced.
pub fn is_conflict(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == 409)
}

/// True for 403.
pub fn is_forbidden(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == 403)
}

/// True for a 403 from the authorizer: the credentials may not do this
/// (RBAC revoked, a missing grant). Not for the other 403s a write can get:
/// an admission webhook or policy that denies the request, or a namespace
/// being terminated; those are about the object, not about who asks. The
/// authorizer's message is always `... is forbidden: User "NAME" cannot
/// VERB ...` (whatever authorizer denied it).
pub fn is_permission_denied(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == 403 && s.message.contains("is forbidden: User \""))
}

/// HTTP status code of an API error, if it is one.
pub fn status_code(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

/// Runs `op` until it succeeds, fails with a non-retryable error, or the
/// policy's attempts are used up (then the last error is returned).
/// `what` names the request in logs.
pub async fn with_retry<T, F, Fut>(
    policy: &RetryPolicy,
    what: &str,
    mut op: F,
) -> Result<T, kube::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, kube::Error>>,
{
    let mut attempt = 0u32;
    // When the current run of broken connections began.
    let mut outage_since: Option<tokio::time::Instant> = None;
    loop {
        attempt += 1;
        match op().await {
            Ok(value) => return Ok(value),
            Err(err) => {
                let Retryable::Yes { retry_after } = classify(&err) else {
                    return Err(err);
                };
                outage_since = if is_transport_error(&err) {
                    Some(outage_since.unwrap_or_else(tokio::time::Instant::now))
                } else {
                    None
                };
                let outage = outage_since.map(|t| t.elapsed());
                if !policy.retries_after(attempt, outage) {
                    if let Some(down) = outage.filter(|_| attempt > policy.max_attempts) {
                        tracing::warn!(what, down = ?down, budget = ?policy.outage_budget, error = %err,
                            "API server unreachable for longer than the outage budget (--api-outage-timeout); giving up");
                    } else {
                        tracing::debug!(what, attempt, error = %err, "giving up after retries");
                    }
                    return Err(err);
                }
                // Past the attempt count only the outage budget keeps us
                // here: poll at the capped step, but not beyond the budget.
                let backoff = match outage {
                    Some(down) if attempt >= policy.max_attempts => policy
                        .backoff(attempt - 1)
                        .min(policy.outage_budget.saturating_sub(down))
                        .max(Duration::from_millis(100)),
                    _ => policy.backoff(attempt - 1),
                };
                // The server knows its queue; wait at least as long as it asked.
                let delay = match retry_after {
                    Some(server) => server.min(policy.max_retry_after).max(backoff),
                    None => backoff,
                };
                tracing::debug!(what, attempt, ?delay, error = %err, "retrying");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;
    use kube::core::response::StatusDetails;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn api(code: u16, retry_after: u32) -> kube::Error {
        let mut status = Status::failure("x", "").with_code(code);
        if retry_after > 0 {
            status = status.with_details(StatusDetails {
                name: String::new(),
                group: String::new(),
                kind: String::new(),
                uid: String::new(),
                causes: vec![],
                retry_after_seconds: retry_after,
            });
        }
        kube::Error::Api(status.boxed())
    }

    #[test]
    fn only_the_authorizers_403_is_a_permission_denial() {
        let forbidden = |message: &str| {
            kube::Error::Api(Status::failure(message, "Forbidden").with_code(403).boxed())
        };
        assert!(is_permission_denied(&forbidden(
            "customresourcedefinitions.apiextensions.k8s.io \"x\" is forbidden: User \"op\" cannot delete resource \"customresourcedefinitions\" in API group \"apiextensions.k8s.io\" at the cluster scope"
        )));
        // An admission webhook or a terminating namespace says no about the
        // object, not about the caller.
        assert!(!is_permission_denied(&forbidden(
            "admission webhook \"guard.example.com\" denied the request: no"
        )));
        assert!(!is_permission_denied(&forbidden(
            "configmaps \"x\" is forbidden: unable to create new content in namespace n because it is being terminated"
        )));
        assert!(!is_permission_denied(&api(404, 0)));
    }

    #[test]
    fn classification() {
        assert_eq!(
            classify(&api(429, 3)),
            Retryable::Yes {
                retry_after: Some(Duration::from_secs(3))
            }
        );
        assert_eq!(classify(&api(503, 0)), Retryable::Yes { retry_after: None });
        assert_eq!(classify(&api(404, 0)), Retryable::No);
        assert_eq!(classify(&api(409, 0)), Retryable::No);
        assert_eq!(classify(&api(422, 0)), Retryable::No);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy::standard();
        for retry in 0..30 {
            let d = p.backoff(retry);
            assert!(d <= p.max_delay, "{d:?}");
        }
        assert!(p.backoff(0) >= Duration::from_millis(50));
        assert!(p.backoff(6) >= Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn honours_retry_after_then_succeeds() {
        let calls = AtomicU32::new(0);
        let start = tokio::time::Instant::now();
        let out = with_retry(&RetryPolicy::standard(), "t", || {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move { if n == 0 { Err(api(429, 2)) } else { Ok(n) } }
        })
        .await
        .expect("second attempt succeeds");
        assert_eq!(out, 1);
        assert!(start.elapsed() >= Duration::from_secs(2));
    }

    /// A connection error as the retry layer sees it (a refused TCP connect).
    fn refused() -> kube::Error {
        kube::Error::Service(Box::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "connection refused",
        )))
    }

    #[test]
    fn the_outage_budget_extends_only_connection_failures() {
        let p = RetryPolicy {
            outage_budget: Duration::from_secs(60),
            ..RetryPolicy::standard()
        };
        // Within the attempt count, anything retryable retries.
        assert!(p.retries_after(1, None));
        // Past it, an API error (no outage) stops...
        assert!(!p.retries_after(p.max_attempts, None));
        // ...a broken connection goes on while the budget lasts, then stops.
        assert!(p.retries_after(p.max_attempts + 20, Some(Duration::from_secs(59))));
        assert!(!p.retries_after(p.max_attempts + 20, Some(Duration::from_secs(60))));
        // Probes get no grace.
        assert!(!RetryPolicy::quick().retries_after(3, Some(Duration::from_secs(1))));
    }

    #[tokio::test(start_paused = true)]
    async fn rides_out_an_outage_within_the_budget_and_gives_up_after_it() {
        let p = RetryPolicy {
            outage_budget: Duration::from_secs(30),
            ..RetryPolicy::standard()
        };
        // Down for 20 s, then back: succeeds, after 20 s and within 30 s.
        let start = tokio::time::Instant::now();
        let back_at = start + Duration::from_secs(20);
        let out = with_retry(&p, "t", || async move {
            if tokio::time::Instant::now() < back_at {
                Err(refused())
            } else {
                Ok(())
            }
        })
        .await;
        assert!(out.is_ok(), "{out:?}");
        assert!(start.elapsed() >= Duration::from_secs(20));
        assert!(start.elapsed() < Duration::from_secs(30));

        // Down for good: gives up once the budget is spent, not much later.
        let start = tokio::time::Instant::now();
        let err = with_retry(&p, "t", || async { Err::<(), _>(refused()) })
            .await
            .expect_err("gives up");
        assert!(is_transport_error(&err));
        assert!(start.elapsed() >= Duration::from_secs(30));
        assert!(
            start.elapsed() < Duration::from_secs(31),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn does_not_retry_conflicts_and_stops_after_max() {
        let calls = AtomicU32::new(0);
        let err = with_retry(&RetryPolicy::standard(), "t", || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err::<(), _>(api(409, 0)) }
        })
        .await
        .expect_err("conflict surfaces");
        assert!(is_conflict(&err));
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let calls = AtomicU32::new(0);
        let policy = RetryPolicy::quick();
        let err = with_retry(&policy, "t", || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err::<(), _>(api(503, 0)) }
        })
        .await
        .expect_err("gives up");
        assert_eq!(status_code(&err), Some(503));
        assert_eq!(calls.load(Ordering::SeqCst), policy.max_attempts);
    }
}
