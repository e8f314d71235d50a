//! Rate-limit counters behind [`RateLimiter`]: GCRA in memory (one
//! instance, `governor`), or GCRA in Redis (an atomic script over the
//! server's clock, so every instance charges one shared quota).
//!
//! Redis unreachable: [`RedisLimiter`] *fails to local*: it logs the error,
//! reports itself unhealthy (readiness shows `redis` failing) and counts in
//! its own memory until Redis answers again, so limits still hold per
//! instance and the service stays up. A Redis that accepts connections and
//! never answers costs a request at most [`REDIS_DEADLINE`]: every call has
//! that hard deadline (the connection manager's own timeouts, reconnects
//! and retries can add up to seconds), and a [`Breaker`] then stops calling
//! Redis for [`COOL_DOWN`], after which one probe (a request's check, or
//! readiness) decides whether it is back.

use std::num::NonZeroU32;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use carapace_auth::rate_limit::{LimitKey, Quota, RateLimiter, RouteClass, Verdict};
use carapace_tenancy::StorageError;
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota as GovernorQuota};
use secrecy::{ExposeSecret as _, SecretString};

/// The quota of each route class.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quotas {
    /// Login, MFA verify, refresh, password reset (per client address).
    pub authentication: Quota,
    /// AI routes (per principal).
    pub ai: Quota,
    /// Every other authenticated route (per principal).
    pub api: Quota,
}

impl Default for Quotas {
    fn default() -> Self {
        Self {
            authentication: Quota::new(30, 10),
            ai: Quota::new(30, 5),
            api: Quota::new(1200, 200),
        }
    }
}

impl Quotas {
    /// The quota of `class`.
    pub fn of(&self, class: RouteClass) -> Quota {
        match class {
            RouteClass::Authentication => self.authentication,
            RouteClass::Ai => self.ai,
            RouteClass::Api => self.api,
        }
    }
}

/// GCRA counters in this process's memory.
#[derive(Debug)]
pub struct MemoryLimiter {
    by_class: Vec<(RouteClass, DefaultKeyedRateLimiter<String>)>,
}

/// Keys remembered before idle ones are dropped.
const MEMORY_KEYS_MAX: usize = 100_000;

impl MemoryLimiter {
    /// Counters for `quotas`.
    pub fn new(quotas: Quotas) -> Self {
        let by_class = RouteClass::ALL
            .into_iter()
            .map(|class| {
                let q = quotas.of(class);
                let quota = GovernorQuota::with_period(q.emission_interval())
                    .unwrap_or_else(|| GovernorQuota::per_second(NonZeroU32::MIN))
                    .allow_burst(q.burst);
                (class, governor::RateLimiter::keyed(quota))
            })
            .collect();
        Self { by_class }
    }

    fn check_now(&self, class: RouteClass, key: &LimitKey) -> Verdict {
        let Some((_, limiter)) = self.by_class.iter().find(|(c, _)| *c == class) else {
            return Verdict::Allow;
        };
        if limiter.len() > MEMORY_KEYS_MAX {
            limiter.retain_recent();
        }
        match limiter.check_key(&key.to_string()) {
            Ok(()) => Verdict::Allow,
            Err(not_until) => Verdict::Deny {
                retry_after: not_until.wait_time_from(DefaultClock::default().now()),
            },
        }
    }
}

impl RateLimiter for MemoryLimiter {
    async fn check(&self, class: RouteClass, key: &LimitKey) -> Verdict {
        self.check_now(class, key)
    }
}

/// GCRA over Redis: `KEYS[1]` holds the theoretical arrival time (ms, the
/// Redis server's clock); `ARGV` are the emission interval and the burst
/// tolerance in ms. Returns 0 when allowed, else the milliseconds to wait.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
if now < tat - tolerance then
  return math.ceil(tat - tolerance - now)
end
local next_tat = tat + interval
redis.call('SET', KEYS[1], string.format('%.3f', next_tat), 'PX', math.ceil(next_tat - now) + 1000)
return 0
";

/// The longest a request waits for Redis; past it, the local count
/// answers and the [`Breaker`] opens.
pub const REDIS_DEADLINE: Duration = Duration::from_millis(250);
/// How long Redis is left alone after a failure before one probe.
pub const COOL_DOWN: Duration = Duration::from_secs(5);

/// A circuit breaker in front of Redis: closed (calls go through), open
/// (no calls until the cool-down ends), or probing (one call, after the
/// cool-down, decides; the others meanwhile count locally).
#[derive(Debug)]
pub struct Breaker {
    state: Mutex<BreakerState>,
    cool_down: Duration,
    probe_for: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BreakerState {
    Closed,
    Open { until: Instant },
    Probing { until: Instant },
}

impl Breaker {
    /// A closed breaker that stays open `cool_down` after a failure and
    /// gives a probe `probe_for` to report before another may go.
    pub fn new(cool_down: Duration, probe_for: Duration) -> Self {
        Self {
            state: Mutex::new(BreakerState::Closed),
            cool_down,
            probe_for,
        }
    }

    /// Whether a call may go to Redis now. After the cool-down, the first
    /// caller is let through as the probe; a probe that never reports (its
    /// request went away) is replaced after `probe_for`.
    pub fn admit(&self) -> bool {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        match *state {
            BreakerState::Closed => true,
            BreakerState::Open { until } | BreakerState::Probing { until } if now < until => false,
            BreakerState::Open { .. } | BreakerState::Probing { .. } => {
                *state = BreakerState::Probing {
                    until: now + self.probe_for,
                };
                true
            }
        }
    }

    /// A call reached Redis: closes the breaker. True if it was not closed.
    pub fn succeeded(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::replace(&mut *state, BreakerState::Closed) != BreakerState::Closed
    }

    /// A call failed or timed out: opens the breaker for the cool-down.
    /// True if it was closed.
    pub fn failed(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let open = BreakerState::Open {
            until: Instant::now() + self.cool_down,
        };
        std::mem::replace(&mut *state, open) == BreakerState::Closed
    }

    /// Whether calls go through (the last one reached Redis).
    pub fn closed(&self) -> bool {
        *self.state.lock().unwrap_or_else(PoisonError::into_inner) == BreakerState::Closed
    }
}

/// GCRA counters shared in Redis, with a local fallback.
pub struct RedisLimiter {
    conn: redis::aio::ConnectionManager,
    script: redis::Script,
    quotas: Quotas,
    local: MemoryLimiter,
    breaker: Breaker,
}

impl std::fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("quotas", &self.quotas)
            .field("breaker", &self.breaker)
            .finish_non_exhaustive()
    }
}

/// Redis did not answer within [`REDIS_DEADLINE`], or its circuit is open.
#[derive(Debug, thiserror::Error)]
enum RedisDown {
    #[error("Redis: circuit open after a failure")]
    Open,
    #[error("Redis: no answer within the deadline")]
    Deadline,
    #[error("Redis: {0:?}")]
    Failed(redis::ErrorKind),
}

impl RedisLimiter {
    /// Connects to `url` (`redis://` or `rediss://`). Fails if Redis cannot
    /// be reached now; once running, outages fall back to local counts.
    pub async fn connect(url: &SecretString, quotas: Quotas) -> Result<Self, StorageError> {
        let client = redis::Client::open(url.expose_secret())
            .map_err(|_| StorageError::Internal("CARAPACE_REDIS_URL is not a Redis URL".into()))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(REDIS_DEADLINE))
            .set_number_of_retries(1);
        let conn = tokio::time::timeout(
            Duration::from_secs(5),
            redis::aio::ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| StorageError::Unavailable("Redis did not answer".into()))?
        .map_err(|e| StorageError::Unavailable(Box::new(RedisDown::Failed(e.kind()))))?;
        Ok(Self {
            conn,
            script: redis::Script::new(GCRA),
            quotas,
            local: MemoryLimiter::new(quotas),
            breaker: Breaker::new(COOL_DOWN, 2 * REDIS_DEADLINE),
        })
    }

    /// Whether calls reach Redis (its circuit is closed).
    pub fn healthy(&self) -> bool {
        self.breaker.closed()
    }

    /// A round trip to Redis (readiness), through the breaker: while it is
    /// open this fails at once; after the cool-down it is a probe.
    pub async fn ping(&self) -> Result<(), StorageError> {
        let mut conn = self.conn.clone();
        self.call(async move {
            redis::cmd("PING")
                .query_async::<String>(&mut conn)
                .await
                .map(|_| ())
        })
        .await
        .map_err(|e| StorageError::Unavailable(Box::new(e)))
    }

    /// Runs `call` if the breaker admits it, within [`REDIS_DEADLINE`],
    /// and tells the breaker how it went.
    async fn call<T>(
        &self,
        call: impl Future<Output = Result<T, redis::RedisError>>,
    ) -> Result<T, RedisDown> {
        if !self.breaker.admit() {
            return Err(RedisDown::Open);
        }
        let outcome = match tokio::time::timeout(REDIS_DEADLINE, call).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(RedisDown::Failed(e.kind())),
            Err(_) => Err(RedisDown::Deadline),
        };
        match &outcome {
            Ok(_) => {
                if self.breaker.succeeded() {
                    tracing::warn!("Redis reachable again: rate limits are shared again");
                }
            }
            Err(e) => {
                if self.breaker.failed() {
                    tracing::error!(error = %e, "Redis unreachable: rate limits fall back to this instance's memory");
                }
            }
        }
        outcome
    }

    async fn shared(&self, class: RouteClass, key: &LimitKey) -> Result<Verdict, RedisDown> {
        let q = self.quotas.of(class);
        let interval_ms = q.emission_interval().as_secs_f64() * 1000.0;
        let tolerance_ms = interval_ms * f64::from(q.burst.get() - 1);
        let mut conn = self.conn.clone();
        let mut invocation = self
            .script
            .key(format!("carapace:rl:{}:{key}", class.as_str()));
        invocation.arg(interval_ms).arg(tolerance_ms);
        let wait_ms: u64 = self
            .call(async move { invocation.invoke_async(&mut conn).await })
            .await?;
        Ok(if wait_ms == 0 {
            Verdict::Allow
        } else {
            Verdict::Deny {
                retry_after: Duration::from_millis(wait_ms),
            }
        })
    }
}

impl RateLimiter for RedisLimiter {
    async fn check(&self, class: RouteClass, key: &LimitKey) -> Verdict {
        match self.shared(class, key).await {
            Ok(v) => v,
            // Down, slow or its circuit open: this instance counts alone.
            Err(_) => self.local.check_now(class, key),
        }
    }
}

/// The limiter a deployment runs: shared in Redis when configured, else in
/// memory.
#[derive(Debug)]
pub enum Limiter {
    /// This instance's memory.
    Memory(MemoryLimiter),
    /// Shared in Redis (with a local fallback).
    Redis(RedisLimiter),
}

impl Limiter {
    /// Redis at `redis_url` when given (it must answer now), else memory.
    pub async fn connect(
        redis_url: Option<&SecretString>,
        quotas: Quotas,
    ) -> Result<Self, StorageError> {
        Ok(match redis_url {
            Some(url) => Self::Redis(RedisLimiter::connect(url, quotas).await?),
            None => Self::Memory(MemoryLimiter::new(quotas)),
        })
    }

    /// Readiness: `None` without Redis, else whether Redis answers.
    pub async fn redis_check(&self) -> Option<Result<(), StorageError>> {
        match self {
            Self::Memory(_) => None,
            Self::Redis(r) => Some(r.ping().await),
        }
    }
}

impl RateLimiter for Limiter {
    async fn check(&self, class: RouteClass, key: &LimitKey) -> Verdict {
        match self {
            Self::Memory(m) => m.check_now(class, key),
            Self::Redis(r) => r.check(class, key).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_breaker_opens_on_failure_then_lets_one_probe_through() {
        let breaker = Breaker::new(Duration::from_millis(50), Duration::from_millis(30));
        assert!(breaker.admit() && breaker.closed());
        assert!(breaker.failed(), "the first failure opens it");
        assert!(!breaker.failed(), "and is the only one reported");
        assert!(!breaker.admit(), "open: nothing goes to Redis");
        assert!(!breaker.closed());
        std::thread::sleep(Duration::from_millis(60));
        assert!(breaker.admit(), "after the cool-down, one probe");
        assert!(!breaker.admit(), "and only one");
        std::thread::sleep(Duration::from_millis(40));
        assert!(breaker.admit(), "a probe that never reports is replaced");
        assert!(breaker.succeeded(), "a probe that gets through closes it");
        assert!(breaker.closed() && breaker.admit());
        assert!(!breaker.succeeded());
    }
}
