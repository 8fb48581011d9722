//! The gate every request passes, in this order: a concurrency permit, the shared cool-down a
//! throttling server imposes on the whole crawler, then the global requests-per-second limit.

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

/// The burst allowed at `rps`: a twentieth of a second's worth, at least one request.
pub const fn burst(rps: u32) -> u32 {
    if rps / 20 > 1 { rps / 20 } else { 1 }
}

/// Requests in flight, cool-down and rate, shared by every endpoint.
pub struct Limiter {
    permits: Semaphore,
    cool_down_until: Mutex<Option<Instant>>,
    rate: Option<DefaultDirectRateLimiter>,
}

impl Limiter {
    /// `rps == 0` means no client-side rate limit. The burst is a twentieth of a second's worth,
    /// so no one-second window sees much more than `rps`.
    pub fn new(concurrency: usize, rps: u32) -> Self {
        let rate = NonZeroU32::new(rps).map(|r| {
            let burst = NonZeroU32::new(burst(rps)).expect("burst is at least 1");
            RateLimiter::direct(Quota::per_second(r).allow_burst(burst))
        });
        Self { permits: Semaphore::new(concurrency.max(1)), cool_down_until: Mutex::new(None), rate }
    }

    /// Wait until a request may be sent; the permit is held until the response body is read.
    pub async fn acquire(&self) -> SemaphorePermit<'_> {
        let permit = self.permits.acquire().await.expect("the semaphore is never closed");
        loop {
            let until = *self.cool_down_until.lock().expect("cool-down lock");
            match until {
                Some(t) if t > Instant::now() => tokio::time::sleep_until(t).await,
                _ => break,
            }
        }
        if let Some(rate) = &self.rate {
            rate.until_ready().await;
        }
        permit
    }

    /// Hold every request back for `wait` (the server said so); a later, longer wait wins.
    pub fn cool_down(&self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut gate = self.cool_down_until.lock().expect("cool-down lock");
        if gate.is_none_or(|t| t < until) {
            *gate = Some(until);
        }
    }
}
