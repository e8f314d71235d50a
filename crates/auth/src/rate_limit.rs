//! Rate limiting: which quota a request counts against, whom it is charged
//! to, and the port that keeps the count (in memory, or shared in Redis so
//! several instances enforce one quota).
//!
//! Authenticated requests are charged to their principal (user or service
//! account), never to an address, so a rotating IP does not buy more; the
//! unauthenticated authentication routes (login, MFA verify, refresh,
//! password reset) are charged to the client's address, taken from the
//! socket or, only when the socket peer is a configured trusted proxy, from
//! `X-Forwarded-For` ([`client_ip`]).

use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

use carapace_tenancy::{OrgId, SubjectId};

/// Routes that share a quota.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RouteClass {
    /// Login, MFA verification, token refresh and password reset: charged
    /// to the client address, strictest.
    Authentication,
    /// AI routes (assistant): charged to the principal, strict.
    Ai,
    /// Every other authenticated route: charged to the principal.
    Api,
}

impl RouteClass {
    /// Every class.
    pub const ALL: [Self; 3] = [Self::Authentication, Self::Ai, Self::Api];

    /// Short stable name (metrics, storage keys).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Authentication => "auth",
            Self::Ai => "ai",
            Self::Api => "api",
        }
    }
}

/// A GCRA quota: `per_minute` requests sustained, up to `burst` at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    /// Sustained requests per minute.
    pub per_minute: NonZeroU32,
    /// Requests allowed back to back after a quiet spell.
    pub burst: NonZeroU32,
}

impl Quota {
    /// `per_minute` sustained with a burst of `burst` (each at least 1).
    pub fn new(per_minute: u32, burst: u32) -> Self {
        Self {
            per_minute: NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN),
            burst: NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN),
        }
    }

    /// Time between two requests at the sustained rate.
    pub fn emission_interval(&self) -> Duration {
        Duration::from_secs(60) / self.per_minute.get()
    }
}

/// Whom a request is charged to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LimitKey {
    /// An authenticated principal.
    Principal {
        /// Its organization.
        org: OrgId,
        /// Its subject.
        subject: SubjectId,
    },
    /// An unauthenticated client, by address.
    Client(IpAddr),
}

impl fmt::Display for LimitKey {
    /// The storage form (`p:<org>:<subject>` or `ip:<address>`); no PHI.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Principal { org, subject } => write!(f, "p:{org}:{}", subject.as_str()),
            Self::Client(ip) => write!(f, "ip:{ip}"),
        }
    }
}

/// A limiter's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Go ahead.
    Allow,
    /// Over quota: try again after this long.
    Deny {
        /// How long until one more request would be allowed.
        retry_after: Duration,
    },
}

/// Keeps the counts. Implementations decide what to do when their store
/// is unreachable and say so in their docs; they never panic.
pub trait RateLimiter: Send + Sync {
    /// Charges one request of `class` to `key`.
    fn check(&self, class: RouteClass, key: &LimitKey) -> impl Future<Output = Verdict> + Send;
}

/// A set of trusted proxies (addresses or CIDR networks).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<ipnet::IpNet>);

/// A trusted-proxy entry that is neither an address nor a network.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not an IP address or CIDR network: {0:?}")]
pub struct BadProxy(pub String);

impl TrustedProxies {
    /// Parses a comma-separated list (`10.0.0.0/8, 192.0.2.7, ::1`).
    pub fn parse(list: &str) -> Result<Self, BadProxy> {
        let mut nets = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let net = match ipnet::IpNet::from_str(item) {
                Ok(n) => n,
                Err(_) => IpAddr::from_str(item)
                    .map(ipnet::IpNet::from)
                    .map_err(|_| BadProxy(item.to_owned()))?,
            };
            nets.push(net);
        }
        Ok(Self(nets))
    }

    /// Whether `ip` is one of them.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|n| n.contains(&ip))
    }
}

/// IPv4-mapped IPv6 addresses as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The client's address: the socket `peer`, unless the peer is a trusted
/// proxy, in which case the right-most `X-Forwarded-For` entry that is not
/// itself a trusted proxy (entries further left are the client's own
/// claims and could be anything). A malformed entry ends the walk at the
/// last address known good.
pub fn client_ip(peer: IpAddr, forwarded_for: Option<&str>, trusted: &TrustedProxies) -> IpAddr {
    let peer = canonical(peer);
    if !trusted.contains(peer) {
        return peer;
    }
    let mut client = peer;
    if let Some(list) = forwarded_for {
        for hop in list.rsplit(',').map(str::trim) {
            match IpAddr::from_str(hop) {
                Ok(ip) => {
                    client = canonical(ip);
                    if !trusted.contains(client) {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let trusted = TrustedProxies::parse("10.0.0.0/8").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            client_ip(ip("203.0.113.9"), Some("198.51.100.1"), &trusted),
            ip("203.0.113.9")
        );
        assert_eq!(
            client_ip(ip("203.0.113.9"), None, &TrustedProxies::default()),
            ip("203.0.113.9")
        );
    }

    #[test]
    fn a_trusted_proxy_forwards_the_first_untrusted_hop_from_the_right() {
        let trusted =
            TrustedProxies::parse("10.0.0.0/8, 192.0.2.7").unwrap_or_else(|e| panic!("{e}"));
        // The client claims 1.1.1.1; the outer proxy saw 198.51.100.4.
        assert_eq!(
            client_ip(
                ip("10.1.2.3"),
                Some("1.1.1.1, 198.51.100.4, 192.0.2.7"),
                &trusted
            ),
            ip("198.51.100.4")
        );
        assert_eq!(
            client_ip(ip("10.1.2.3"), Some("garbage, 198.51.100.4"), &trusted),
            ip("198.51.100.4")
        );
        assert_eq!(client_ip(ip("10.1.2.3"), None, &trusted), ip("10.1.2.3"));
    }

    #[test]
    fn mapped_addresses_match_their_ipv4_networks() {
        let trusted = TrustedProxies::parse("127.0.0.1").unwrap_or_else(|e| panic!("{e}"));
        assert!(trusted.contains(ip("::ffff:127.0.0.1")));
        assert!(TrustedProxies::parse("not-an-ip").is_err());
    }

    #[test]
    fn quotas_space_requests_evenly() {
        assert_eq!(
            Quota::new(600, 10).emission_interval(),
            Duration::from_millis(100)
        );
        assert_eq!(Quota::new(0, 0).burst.get(), 1);
    }

    #[test]
    fn keys_name_principals_and_addresses_without_phi() {
        let org = OrgId::generate();
        let subject = SubjectId::parse("user-1").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            LimitKey::Principal { org, subject }.to_string(),
            format!("p:{org}:user-1")
        );
        assert_eq!(LimitKey::Client(ip("::1")).to_string(), "ip:::1");
    }
}
