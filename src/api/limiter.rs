//! The gate every request passes, in this order: a concurrency permit, the shared cool-down a
//! throttling server imposes on the whole crawler, then the global requests-per-second limit.
//!
//! `--rps` is a ceiling, not a promise: it is a governor rate limiter, and under it an adaptive
//! pacer (governor's quotas cannot change) takes over once the server throttles: the rate drops
//! multiplicatively and then climbs back additively (AIMD), quickly while far below the rate at
//! which the server last throttled and slowly past it, so an unpublished server limit is found
//! and held without hammering it.

use std::collections::VecDeque;
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

/// Lowest rate the crawler slows down to.
const MIN_RATE: f64 = 1.0;
/// Multiplicative decrease on throttling.
const DECREASE: f64 = 0.7;
/// How often the rate may change.
const ADJUST_EVERY: Duration = Duration::from_secs(1);

/// Requests in flight, cool-down and rate, shared by every endpoint.
pub struct Limiter {
    permits: Semaphore,
    cool_down_until: Mutex<Option<Instant>>,
    /// `--rps`; `None` = no ceiling.
    ceiling: Option<f64>,
    rate: Option<DefaultDirectRateLimiter>,
    aimd: Mutex<Aimd>,
}

struct Aimd {
    /// The adapted rate; `None` until the server throttles.
    current: Option<f64>,
    /// The next free send slot at the adapted rate.
    next_slot: Instant,
    /// The rate at which the server last throttled.
    limit_seen: Option<f64>,
    lowest: Option<f64>,
    /// When the rate last dropped.
    last_decrease: Option<Instant>,
    last_increase: Instant,
    started: Instant,
    /// Successful responses of the last second.
    oks: VecDeque<Instant>,
    /// The most successful responses seen in one second. The rate never drops below half of it:
    /// a server that throttles at random, whatever the rate, must not slow the crawl to a crawl.
    best_second: f64,
}

impl Aimd {
    /// Drop what happened more than a second before `now`.
    fn forget_before(&mut self, now: Instant) {
        let old = |t: &Instant| now.duration_since(*t) > Duration::from_secs(1);
        while self.oks.front().is_some_and(old) {
            self.oks.pop_front();
        }
    }
}

impl Limiter {
    /// `rps == 0` means no client-side rate limit (until the server throttles).
    pub fn new(concurrency: usize, rps: u32) -> Self {
        let ceiling = (rps > 0).then_some(f64::from(rps));
        let now = Instant::now();
        Self {
            permits: Semaphore::new(concurrency.max(1)),
            cool_down_until: Mutex::new(None),
            ceiling,
            rate: ceiling.map(governor_for),
            aimd: Mutex::new(Aimd {
                current: None,
                next_slot: now,
                limit_seen: None,
                lowest: None,
                last_decrease: None,
                last_increase: now,
                started: now,
                oks: VecDeque::new(),
                best_second: 0.0,
            }),
        }
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
        let slot = {
            let mut a = self.aimd.lock().expect("aimd lock");
            a.current.map(|rps| {
                let slot = a.next_slot.max(Instant::now());
                a.next_slot = slot + Duration::from_secs_f64(1.0 / rps);
                slot
            })
        };
        if let Some(slot) = slot {
            tokio::time::sleep_until(slot).await;
        }
        permit
    }

    /// A response that was not throttling: count it, and let the rate climb back. Returns the
    /// new rate when it changed.
    pub fn on_success(&self) -> Option<f64> {
        let now = Instant::now();
        let mut a = self.aimd.lock().expect("aimd lock");
        a.oks.push_back(now);
        a.forget_before(now);
        a.best_second = a.best_second.max(a.oks.len() as f64);
        let current = a.current?;
        let seen = a.limit_seen?;
        let since_drop = a.last_decrease.map_or(ADJUST_EVERY, |d| now.saturating_duration_since(d));
        if since_drop < ADJUST_EVERY || now.duration_since(a.last_increase) < ADJUST_EVERY {
            return None;
        }
        // Quickly back towards the rate that was throttled, then one request per second more.
        let step = if current < seen { ((seen - current) / 2.0).max(1.0) } else { 1.0 };
        let next = self.ceiling.map_or(current + step, |c| (current + step).min(c));
        if next == current {
            return None;
        }
        tracing::debug!("rate {current:.1} -> {next:.1} req/s");
        a.current = Some(next);
        a.last_increase = now;
        Some(next)
    }

    /// The server throttled a request sent at `sent` (429, or `Retry-After` on an error): every
    /// request waits `wait`, and the rate drops, unless the request left before the last drop.
    pub fn on_throttle(&self, sent: Instant, wait: Duration) {
        let now = Instant::now();
        let gate_before = {
            let mut gate = self.cool_down_until.lock().expect("cool-down lock");
            let before = *gate;
            let until = now + wait;
            if gate.is_none_or(|t| t < until) {
                *gate = Some(until);
            }
            before
        };
        let mut a = self.aimd.lock().expect("aimd lock");
        // Responses to requests sent before the last drop, or right after it, say nothing new.
        if a.last_decrease.is_some_and(|d| sent < d || now.duration_since(d) < ADJUST_EVERY) {
            return;
        }
        a.forget_before(now);
        // What got through lately is the best guess of the server's limit, over a window that
        // no cool-down slowed down.
        let quiet_since = gate_before.map_or(a.started, |g| g.min(now)).max(a.started);
        let window = now.duration_since(quiet_since).min(Duration::from_secs(1)).as_secs_f64();
        let observed = (window >= 0.05 && a.oks.len() >= 3).then(|| a.oks.len() as f64 / window);
        let basis = match (a.current.or(self.ceiling), observed) {
            (Some(c), Some(o)) => c.min(o),
            (Some(c), None) => c,
            (None, Some(o)) => o,
            // No rate and nothing observed yet: the cool-down alone holds the crawl back.
            (None, None) => return,
        }
        .max(MIN_RATE);
        let next = (basis * DECREASE).max(a.best_second * 0.5).max(MIN_RATE);
        if a.current == Some(next) {
            return;
        }
        tracing::debug!("throttled: rate {:?} -> {next:.1} req/s (observed {observed:?})", a.current);
        a.limit_seen = Some(basis);
        a.current = Some(next);
        a.lowest = Some(a.lowest.map_or(next, |l: f64| l.min(next)));
        a.last_decrease = Some(now);
        a.next_slot = a.next_slot.min(now + Duration::from_secs_f64(1.0 / next));
    }

    /// Hold every request back for `wait`; a later, longer wait wins.
    pub fn cool_down(&self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut gate = self.cool_down_until.lock().expect("cool-down lock");
        if gate.is_none_or(|t| t < until) {
            *gate = Some(until);
        }
    }

    /// The rate in force (`None` = unlimited), and the lowest it went to.
    pub fn rate(&self) -> (Option<f64>, Option<f64>) {
        let a = self.aimd.lock().expect("aimd lock");
        (a.current.or(self.ceiling), a.lowest)
    }
}

fn governor_for(rps: f64) -> DefaultDirectRateLimiter {
    let period = Duration::from_secs_f64(1.0 / rps.max(MIN_RATE));
    let burst = NonZeroU32::new(burst(rps as u32)).expect("burst is at least 1");
    let quota = Quota::with_period(period).expect("a positive period").allow_burst(burst);
    RateLimiter::direct(quota)
}
