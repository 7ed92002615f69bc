//! HTTP-level retries for what only a response's headers say. API Priority
//! and Fairness rejects with 429 and a `Retry-After` header (plain text, no
//! Status body) that kube-rs drops when it builds its error, so only a
//! layer below kube-rs can honour it. Every other failure, a 503 without
//! `Retry-After` included (a broken aggregated API answers that at once,
//! forever), is left to [`crate::retry`], whose callers know whether a
//! failure is worth waiting for: retrying such a 503 here too multiplied
//! the cost of probing one dead API group by four.
//!
//! A 429 says the server as a whole is over its limit, not that one request
//! was: the [`ThrottleGate`] holds back every request of the client (new ones
//! too) until the wait the server asked for has passed, and each waiter adds
//! its own random part, so that `apply`'s many workers do not all come back
//! in the same millisecond (the max-in-flight filter answers every request
//! over the limit with the same `Retry-After: 1`, and synchronised retries
//! were mostly rejected again: 665 429s for a 135-action plan at 64 in
//! flight, see `tests/faults_load.rs` of the CLI).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response, StatusCode, header::RETRY_AFTER};
use kube::client::Body;
use rand::Rng;
use tokio::time::Instant;
use tower::retry::Policy;
use tower::{BoxError, Layer, Service};

/// Retries 429s (waiting what the server asks, else backing off) and
/// 503/504s that carry `Retry-After`, a few times. Cloned per request, so
/// the attempt count is per request.
#[derive(Clone, Debug)]
pub(crate) struct ServerAskedRetry {
    attempt: u32,
    max_retries: u32,
    base_delay: Duration,
    max_delay: Duration,
    /// Told of every 429, so that the client's other requests wait too.
    gate: ThrottleGate,
}

impl ServerAskedRetry {
    /// At most `max_retries` retries per request; backoff from `base_delay`
    /// doubling, and no wait (asked or not) longer than `max_delay`. A 429
    /// closes `gate` for the wait it asks.
    pub(crate) fn new(
        max_retries: u32,
        base_delay: Duration,
        max_delay: Duration,
        gate: ThrottleGate,
    ) -> Self {
        Self {
            attempt: 0,
            max_retries,
            base_delay,
            max_delay,
            gate,
        }
    }

    /// How long to wait before retrying a response with `status` and
    /// `Retry-After` value `retry_after`; `None` when it is not retried here.
    fn delay(&self, status: StatusCode, retry_after: Option<&str>) -> Option<Duration> {
        if self.attempt >= self.max_retries {
            return None;
        }
        let asked = retry_after
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let backoff = self.base_delay.saturating_mul(1 << self.attempt.min(16));
        let delay = match status {
            StatusCode::TOO_MANY_REQUESTS => asked.unwrap_or(backoff),
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT => asked?,
            _ => return None,
        };
        Some(delay.min(self.max_delay))
    }
}

impl<Res> Policy<Request<Body>, Response<Res>, BoxError> for ServerAskedRetry {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        _request: &mut Request<Body>,
        result: &mut Result<Response<Res>, BoxError>,
    ) -> Option<Self::Future> {
        let response = result.as_ref().ok()?;
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok());
        let delay = self.delay(response.status(), retry_after)?;
        self.attempt += 1;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            self.gate.close_for(delay);
        }
        Some(tokio::time::sleep(delay + jitter(delay)))
    }

    fn clone_request(&mut self, request: &Request<Body>) -> Option<Request<Body>> {
        // A streaming body cannot be sent twice: such a request is not retried.
        let body = request.body().try_clone()?;
        let mut builder = Request::builder()
            .method(request.method().clone())
            .uri(request.uri().clone())
            .version(request.version());
        if let Some(headers) = builder.headers_mut() {
            headers.extend(request.headers().clone());
        }
        let mut clone = builder.body(body).ok()?;
        *clone.extensions_mut() = request.extensions().clone();
        Some(clone)
    }
}

/// A random extra wait of up to half of `delay`, so that requests told to
/// wait the same time spread out.
fn jitter(delay: Duration) -> Duration {
    let half = u64::try_from((delay / 2).as_millis()).unwrap_or(u64::MAX);
    if half == 0 {
        return Duration::ZERO;
    }
    Duration::from_millis(rand::rng().random_range(0..=half))
}

/// Shared by every request of one client: closed for the wait a 429 asked
/// for, during which [`Gated`] holds back each request (first attempts and
/// retries alike) until the wait is over, plus a random part of it.
#[derive(Clone, Debug, Default)]
pub(crate) struct ThrottleGate {
    /// Until when it is closed, and the wait that closed it last.
    closed: Arc<Mutex<Option<(Instant, Duration)>>>,
}

impl ThrottleGate {
    /// Closes the gate for `delay` from now (never shortens an earlier close).
    fn close_for(&self, delay: Duration) {
        let until = Instant::now() + delay;
        let mut closed = self.closed.lock().unwrap_or_else(|e| e.into_inner());
        match *closed {
            Some((earlier, _)) if earlier >= until => {}
            _ => *closed = Some((until, delay)),
        }
    }

    /// How long a request about to be sent waits first.
    fn wait(&self) -> Option<Duration> {
        let closed = *self.closed.lock().unwrap_or_else(|e| e.into_inner());
        let (until, delay) = closed?;
        let now = Instant::now();
        (until > now).then(|| until - now + jitter(delay))
    }
}

impl<S> Layer<S> for ThrottleGate {
    type Service = Gated<S>;

    fn layer(&self, inner: S) -> Gated<S> {
        Gated {
            inner,
            gate: self.clone(),
        }
    }
}

/// A service behind a [`ThrottleGate`].
#[derive(Clone, Debug)]
pub(crate) struct Gated<S> {
    inner: S,
    gate: ThrottleGate,
}

impl<S, Req> Service<Req> for Gated<S>
where
    S: Service<Req> + Clone + Send + 'static,
    S::Future: Send,
    Req: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        // Readiness is asked of the clone that sends the request, after the wait.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Req) -> Self::Future {
        let mut inner = self.inner.clone();
        let wait = self.gate.wait();
        Box::pin(async move {
            if let Some(wait) = wait {
                tokio::time::sleep(wait).await;
            }
            futures::future::poll_fn(|cx| inner.poll_ready(cx)).await?;
            inner.call(request).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> ServerAskedRetry {
        ServerAskedRetry::new(
            3,
            Duration::from_millis(100),
            Duration::from_secs(10),
            ThrottleGate::default(),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_gate_holds_back_new_requests_for_the_asked_wait_and_a_random_part() {
        let gate = ThrottleGate::default();
        assert_eq!(gate.wait(), None, "open at first");
        gate.close_for(Duration::from_secs(1));
        // A shorter close does not reopen it earlier.
        gate.close_for(Duration::from_millis(10));
        let mut service = gate.layer(tower::service_fn(|()| async {
            Ok::<_, BoxError>(Instant::now())
        }));
        let sent = Instant::now();
        let waits: Vec<Duration> = futures::future::join_all((0..50).map(|_| service.call(())))
            .await
            .into_iter()
            .map(|at| at.expect("answer") - sent)
            .collect();
        assert!(
            waits
                .iter()
                .all(|w| *w >= Duration::from_secs(1) && *w <= Duration::from_millis(1500)),
            "{waits:?}"
        );
        let distinct: std::collections::BTreeSet<_> = waits.iter().collect();
        assert!(distinct.len() > 10, "not spread out: {waits:?}");
        assert_eq!(gate.wait(), None, "open again once the wait is over");
    }

    #[test]
    fn throttling_is_retried_as_the_server_asks_or_with_backoff() {
        let p = policy();
        assert_eq!(
            p.delay(StatusCode::TOO_MANY_REQUESTS, Some("2")),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            p.delay(StatusCode::TOO_MANY_REQUESTS, None),
            Some(Duration::from_millis(100))
        );
        assert_eq!(
            p.delay(StatusCode::TOO_MANY_REQUESTS, Some("600")),
            Some(Duration::from_secs(10)),
            "never longer than the cap"
        );
        let third = ServerAskedRetry {
            attempt: 2,
            ..policy()
        };
        assert_eq!(
            third.delay(StatusCode::TOO_MANY_REQUESTS, None),
            Some(Duration::from_millis(400))
        );
        let spent = ServerAskedRetry {
            attempt: 3,
            ..policy()
        };
        assert_eq!(spent.delay(StatusCode::TOO_MANY_REQUESTS, Some("1")), None);
    }

    #[test]
    fn unavailable_is_retried_here_only_when_the_server_says_when() {
        let p = policy();
        assert_eq!(p.delay(StatusCode::SERVICE_UNAVAILABLE, None), None);
        assert_eq!(
            p.delay(StatusCode::SERVICE_UNAVAILABLE, Some("1")),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            p.delay(StatusCode::GATEWAY_TIMEOUT, Some("1")),
            Some(Duration::from_secs(1))
        );
        assert_eq!(p.delay(StatusCode::INTERNAL_SERVER_ERROR, Some("1")), None);
        assert_eq!(p.delay(StatusCode::CONFLICT, None), None);
    }
}
