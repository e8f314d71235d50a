//! Rate-limit counters: GCRA in memory and in real Redis (one quota for
//! every limiter on the same Redis), and the fall back to local counts
//! while Redis is unreachable.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use carapace_auth::rate_limit::{LimitKey, Quota, RateLimiter as _, RouteClass, Verdict};
use carapace_infra::rate_limit::{MemoryLimiter, Quotas, RedisLimiter};
use carapace_tenancy::{OrgId, SubjectId};
use secrecy::SecretString;
use tokio::net::{TcpListener, TcpStream};

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

/// A TCP relay to Redis that the test can cut.
struct Relay {
    url: String,
    up: Arc<AtomicBool>,
    accept: tokio::task::JoinHandle<()>,
}

async fn relay(target: &str) -> Relay {
    let target = target
        .trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_owned();
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let url = format!(
        "redis://{}",
        listener.local_addr().unwrap_or_else(|e| panic!("{e}"))
    );
    let up = Arc::new(AtomicBool::new(true));
    let flag = up.clone();
    let accept = tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let Ok(mut outbound) = TcpStream::connect(&target).await else {
                continue;
            };
            let flag = flag.clone();
            tokio::spawn(async move {
                let pipe = tokio::io::copy_bidirectional(&mut inbound, &mut outbound);
                tokio::pin!(pipe);
                loop {
                    tokio::select! {
                        _ = &mut pipe => return,
                        () = tokio::time::sleep(std::time::Duration::from_millis(20)) => {
                            if !flag.load(Ordering::Relaxed) {
                                return; // dropping both ends cuts the connection
                            }
                        }
                    }
                }
            });
        }
    });
    Relay { url, up, accept }
}

#[tokio::test]
async fn redis_counts_one_quota_for_every_limiter_and_falls_back_to_memory_when_down() {
    let Some(redis) = carapace_testkit::redis_url("redis_rate_limits") else {
        return;
    };
    let relay = relay(&redis).await;
    let url = SecretString::from(relay.url.clone());
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
    relay.up.store(false, Ordering::Relaxed);
    relay.accept.abort();
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let fresh = someone();
    assert_eq!(allowed(&one, &fresh, 6).await, 4, "local limits still hold");
    assert!(!one.healthy());
    assert!(one.ping().await.is_err());
}
