//! When to retry an Azure request and how long to wait.
//!
//! Azure signals throttling with 429 and 503 (and 207 items near capacity). It may say how long to
//! wait in `retry-after-ms`, `x-ms-retry-after-ms` (milliseconds) or `Retry-After` (seconds); when
//! it does not, we back off exponentially with full jitter so that many edge PCs restarting at
//! once do not hammer the service in lockstep.

use std::time::Duration;

use rand::Rng;
use reqwest::header::HeaderMap;

/// Retry policy for one logical request.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts including the first.
    pub max_attempts: u32,
    pub base: Duration,
    pub max_delay: Duration,
}

impl RetryPolicy {
    /// For uploads: patient (a throttled bulk load should finish, not fail).
    pub const UPLOAD: RetryPolicy = RetryPolicy {
        max_attempts: 10,
        base: Duration::from_millis(250),
        max_delay: Duration::from_secs(30),
    };
    /// For management calls (create, get, count): a few quick tries.
    pub const MANAGEMENT: RetryPolicy = RetryPolicy {
        max_attempts: 4,
        base: Duration::from_millis(200),
        max_delay: Duration::from_secs(5),
    };
    /// For per-window queries: no retry; the breaker and centroid fallback handle failures and
    /// a retried query would arrive too late to matter anyway.
    pub const QUERY: RetryPolicy = RetryPolicy {
        max_attempts: 1,
        base: Duration::from_millis(0),
        max_delay: Duration::from_millis(0),
    };

    /// Delay before attempt `attempt + 1` (attempt counts from 1), honouring a server hint.
    pub fn delay(&self, attempt: u32, hint: Option<Duration>) -> Duration {
        if let Some(h) = hint {
            // The server knows its capacity; cap only absurd values.
            return h.min(Duration::from_secs(120));
        }
        let exp = self.base.saturating_mul(
            1u32.checked_shl(attempt.saturating_sub(1).min(20))
                .unwrap_or(u32::MAX),
        );
        let cap = exp.min(self.max_delay);
        // Full jitter: uniform in [cap/2, cap] keeps some spacing while spreading clients.
        let lo = cap.as_millis() as u64 / 2;
        let hi = cap.as_millis() as u64;
        let ms = if hi > lo {
            rand::rng().random_range(lo..=hi)
        } else {
            hi
        };
        Duration::from_millis(ms)
    }
}

/// Status codes worth retrying unchanged: throttling and transient server trouble.
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502 | 503 | 504)
}

/// Per-item statuses in a 207 answer that mean "try this document again": 409 (version
/// conflict), 422 (index temporarily unavailable), 429 and 503 (throttled), 500.
pub fn is_retryable_item_status(status: u16) -> bool {
    matches!(status, 409 | 422 | 429 | 500 | 503)
}

/// Server hint from `retry-after-ms`, `x-ms-retry-after-ms` or `Retry-After` (delta seconds; an
/// HTTP date is ignored and falls back to backoff).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    for name in ["retry-after-ms", "x-ms-retry-after-ms"] {
        if let Some(ms) = get(name).and_then(|v| v.parse::<f64>().ok())
            && ms.is_finite()
            && ms >= 0.0
        {
            return Some(Duration::from_millis(ms as u64));
        }
    }
    get("retry-after")
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn hints_are_read_in_documented_order() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert("retry-after", HeaderValue::from_static("2"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("x-ms-retry-after-ms", HeaderValue::from_static("150"));
        assert_eq!(retry_after(&h), Some(Duration::from_millis(150)));
        h.insert("retry-after-ms", HeaderValue::from_static("40"));
        assert_eq!(retry_after(&h), Some(Duration::from_millis(40)));
        let mut d = HeaderMap::new();
        d.insert(
            "retry-after",
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&d), None);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy::UPLOAD;
        let d1 = p.delay(1, None);
        assert!(
            d1 >= Duration::from_millis(125) && d1 <= Duration::from_millis(250),
            "{d1:?}"
        );
        let d9 = p.delay(9, None);
        assert!(
            d9 >= Duration::from_secs(15) && d9 <= Duration::from_secs(30),
            "{d9:?}"
        );
        assert_eq!(
            p.delay(3, Some(Duration::from_millis(7))),
            Duration::from_millis(7)
        );
    }
}
