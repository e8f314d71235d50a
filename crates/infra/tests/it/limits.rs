//! Rate-limit counters: GCRA in memory and in real Redis (one quota for
//! every limiter on the same Redis), and the fall back to local counts
//! while Redis is unreachable.

use carapace_auth::rate_limit::{LimitKey, Quota, RateLimiter as _, RouteClass, Verdict};
use carapace_infra::rate_limit::{MemoryLimiter, Quotas, RedisLimiter};
use carapace_tenancy::{OrgId, SubjectId};
use secrecy::SecretString;

fn quotas(burst: u32) -> Quotas {
    Quotas {
        authentication: Quota::new(1, burst),
        ai: Quota::new(1, burst),
        api: Quota::new(1, burst),
    }
}

fn someone() -> LimitKey {
    LimitKey::Principal {
        org: OrgId::generate(),
        subject: SubjectId::parse("someone").unwrap_or_else(|e| panic!("{e}")),
    }
}

async fn allowed(
    limiter: &impl carapace_auth::rate_limit::RateLimiter,
    key: &LimitKey,
    n: usize,
) -> usize {
    let mut ok = 0;
    for _ in 0..n {
        if limiter.check(RouteClass::Api, key).await == Verdict::Allow {
            ok += 1;
        }
    }
    ok
}

#[tokio::test]
async fn memory_allows_the_burst_then_says_how_long_to_wait() {
    let limiter = MemoryLimiter::new(quotas(3));
    let key = someone();
    assert_eq!(allowed(&limiter, &key, 3).await, 3);
    match limiter.check(RouteClass::Api, &key).await {
        Verdict::Deny { retry_after } => assert!(retry_after.as_secs() >= 1),
        Verdict::Allow => panic!("over the burst"),
    }
    // Classes count apart.
    assert_eq!(limiter.check(RouteClass::Ai, &key).await, Verdict::Allow);
}

#[tokio::test]
async fn redis_counts_one_quota_for_every_limiter_and_falls_back_to_memory_when_down() {
    let Some(redis) = carapace_testkit::redis_url("redis_rate_limits") else {
        return;
    };
    let target = redis.trim_start_matches("redis://").trim_end_matches('/');
    let relay = carapace_testkit::relay::Relay::start(target).await;
    let url = SecretString::from(format!("redis://{}", relay.addr()));
    let one = RedisLimiter::connect(&url, quotas(4))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let two = RedisLimiter::connect(&SecretString::from(redis.clone()), quotas(4))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let key = someone();
    assert_eq!(allowed(&one, &key, 2).await, 2);
    assert_eq!(allowed(&two, &key, 5).await, 2, "the same quota, shared");
    assert!(matches!(
        one.check(RouteClass::Api, &key).await,
        Verdict::Deny { .. }
    ));
    assert!(one.ping().await.is_ok() && one.healthy());

    // Redis becomes unreachable for `one`: it answers from memory (a
    // fresh local quota for the key), says so, and readiness sees it.
    relay.cut().await;
    let fresh = someone();
    assert_eq!(allowed(&one, &fresh, 6).await, 4, "local limits still hold");
    assert!(!one.healthy());
    assert!(one.ping().await.is_err());
}

#[tokio::test]
async fn a_redis_that_never_answers_costs_one_deadline_then_nothing_until_a_probe() {
    let Some(redis) = carapace_testkit::redis_url("redis_black_hole") else {
        return;
    };
    let target = redis.trim_start_matches("redis://").trim_end_matches('/');
    let relay = carapace_testkit::relay::Relay::start(target).await;
    let url = SecretString::from(format!("redis://{}", relay.addr()));
    let limiter = RedisLimiter::connect(&url, quotas(3))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let key = someone();
    assert_eq!(allowed(&limiter, &key, 1).await, 1);

    relay.black_hole().await;
    let fresh = someone();
    let started = std::time::Instant::now();
    assert_eq!(limiter.check(RouteClass::Api, &fresh).await, Verdict::Allow);
    let first = started.elapsed();
    assert!(
        first < carapace_infra::rate_limit::REDIS_DEADLINE * 2,
        "one call waits at most the deadline: {first:?}"
    );
    assert!(!limiter.healthy(), "the circuit is open");
    let started = std::time::Instant::now();
    assert_eq!(
        allowed(&limiter, &fresh, 50).await,
        2,
        "the burst is counted locally"
    );
    let fifty = started.elapsed();
    assert!(
        fifty < std::time::Duration::from_millis(100),
        "an open circuit calls nobody: {fifty:?}"
    );
    assert!(limiter.ping().await.is_err(), "readiness sees it at once");

    // Back: after the cool-down one probe closes the circuit.
    relay.restore();
    tokio::time::sleep(carapace_infra::rate_limit::COOL_DOWN).await;
    let mut healthy = false;
    for _ in 0..20 {
        if limiter.ping().await.is_ok() {
            healthy = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
    assert!(healthy && limiter.healthy(), "Redis is used again");
}
