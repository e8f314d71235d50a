//! Rate-limit counters behind [`RateLimiter`]: GCRA in memory (one
//! instance, `governor`), or GCRA in Redis (an atomic script over the
//! server's clock, so every instance charges one shared quota).
//!
//! Redis unreachable: [`RedisLimiter`] *fails to local*: it logs the error,
//! reports itself unhealthy (readiness shows `redis` failing) and counts in
//! its own memory until Redis answers again, so limits still hold per
//! instance and the service stays up.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

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

/// GCRA counters shared in Redis, with a local fallback.
pub struct RedisLimiter {
    conn: redis::aio::ConnectionManager,
    script: redis::Script,
    quotas: Quotas,
    local: MemoryLimiter,
    healthy: Arc<AtomicBool>,
}

impl std::fmt::Debug for RedisLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLimiter")
            .field("quotas", &self.quotas)
            .field("healthy", &self.healthy.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// How long one Redis call may take before the local fallback answers.
const REDIS_TIMEOUT: Duration = Duration::from_millis(250);

impl RedisLimiter {
    /// Connects to `url` (`redis://` or `rediss://`). Fails if Redis cannot
    /// be reached now; once running, outages fall back to local counts.
    pub async fn connect(url: &SecretString, quotas: Quotas) -> Result<Self, StorageError> {
        let client = redis::Client::open(url.expose_secret())
            .map_err(|_| StorageError::Internal("CARAPACE_REDIS_URL is not a Redis URL".into()))?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(REDIS_TIMEOUT))
            .set_number_of_retries(1);
        let conn = tokio::time::timeout(
            Duration::from_secs(5),
            redis::aio::ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| StorageError::Unavailable("Redis did not answer".into()))?
        .map_err(|e| StorageError::Unavailable(format!("Redis: {:?}", e.kind()).into()))?;
        Ok(Self {
            conn,
            script: redis::Script::new(GCRA),
            quotas,
            local: MemoryLimiter::new(quotas),
            healthy: Arc::new(AtomicBool::new(true)),
        })
    }

    /// Whether the last call reached Redis.
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// A round trip to Redis (readiness); updates [`Self::healthy`].
    pub async fn ping(&self) -> Result<(), StorageError> {
        let mut conn = self.conn.clone();
        let pong: Result<String, _> =
            tokio::time::timeout(REDIS_TIMEOUT * 4, redis::cmd("PING").query_async(&mut conn))
                .await
                .unwrap_or_else(|_| {
                    Err(redis::RedisError::from(std::io::Error::from(
                        std::io::ErrorKind::TimedOut,
                    )))
                });
        let ok = pong.is_ok();
        self.healthy.store(ok, Ordering::Relaxed);
        pong.map(|_| ())
            .map_err(|e| StorageError::Unavailable(format!("Redis: {:?}", e.kind()).into()))
    }

    async fn shared(
        &self,
        class: RouteClass,
        key: &LimitKey,
    ) -> Result<Verdict, redis::RedisError> {
        let q = self.quotas.of(class);
        let interval_ms = q.emission_interval().as_secs_f64() * 1000.0;
        let tolerance_ms = interval_ms * f64::from(q.burst.get() - 1);
        let mut conn = self.conn.clone();
        let wait_ms: u64 = self
            .script
            .key(format!("carapace:rl:{}:{key}", class.as_str()))
            .arg(interval_ms)
            .arg(tolerance_ms)
            .invoke_async(&mut conn)
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
            Ok(v) => {
                if !self.healthy.swap(true, Ordering::Relaxed) {
                    tracing::warn!("Redis reachable again: rate limits are shared again");
                }
                v
            }
            Err(e) => {
                if self.healthy.swap(false, Ordering::Relaxed) {
                    tracing::error!(error = ?e.kind(), "Redis unreachable: rate limits fall back to this instance's memory");
                }
                self.local.check_now(class, key)
            }
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
