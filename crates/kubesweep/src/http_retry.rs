//! HTTP-level retries for what only a response's headers say. API Priority
//! and Fairness rejects with 429 and a `Retry-After` header (plain text, no
//! Status body) that kube-rs drops when it builds its error, so only a
//! layer below kube-rs can honour it. Every other failure, a 503 without
//! `Retry-After` included (a broken aggregated API answers that at once,
//! forever), is left to [`crate::retry`], whose callers know whether a
//! failure is worth waiting for: retrying such a 503 here too multiplied
//! the cost of probing one dead API group by four.

use std::time::Duration;

use http::{Request, Response, StatusCode, header::RETRY_AFTER};
use kube::client::Body;
use tower::BoxError;
use tower::retry::Policy;

/// Retries 429s (waiting what the server asks, else backing off) and
/// 503/504s that carry `Retry-After`, a few times. Cloned per request, so
/// the attempt count is per request.
#[derive(Clone, Debug)]
pub(crate) struct ServerAskedRetry {
    attempt: u32,
    max_retries: u32,
    base_delay: Duration,
    max_delay: Duration,
}

impl ServerAskedRetry {
    /// At most `max_retries` retries per request; backoff from `base_delay`
    /// doubling, and no wait (asked or not) longer than `max_delay`.
    pub(crate) fn new(max_retries: u32, base_delay: Duration, max_delay: Duration) -> Self {
        Self {
            attempt: 0,
            max_retries,
            base_delay,
            max_delay,
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
        Some(tokio::time::sleep(delay))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> ServerAskedRetry {
        ServerAskedRetry::new(3, Duration::from_millis(100), Duration::from_secs(10))
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
