//! Prometheus metrics at `GET /metrics`: requests and their latency by
//! route template and status, rate-limit refusals by class, the database
//! pool, the kill switch. Served only with `Authorization: Bearer
//! <CARAPACE_METRICS_TOKEN>`; without a configured token the route does not
//! exist (404). Labels carry route templates, never paths or query values.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of one request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

/// Labels of one route.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

/// Labels of one rate-limit class.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClassLabels {
    class: &'static str,
}

fn latency_histogram() -> Histogram {
    // 1 ms to about 16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// The server's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    rate_limited: Family<ClassLabels, Counter>,
    pool_size: Gauge<i64, std::sync::atomic::AtomicI64>,
    pool_idle: Gauge<i64, std::sync::atomic::AtomicI64>,
    kill_switch: Gauge<i64, std::sync::atomic::AtomicI64>,
    slow: Counter<u64, AtomicU64>,
    audit_backlog: Gauge<i64, std::sync::atomic::AtomicI64>,
    alerts_queued: Gauge<i64, std::sync::atomic::AtomicI64>,
    alerts_delivered: Counter<u64, AtomicU64>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("carapace");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: Family<RouteLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        let rate_limited = Family::<ClassLabels, Counter>::default();
        let pool_size = Gauge::default();
        let pool_idle = Gauge::default();
        let kill_switch = Gauge::default();
        let slow = Counter::default();
        let audit_backlog = Gauge::default();
        let alerts_queued = Gauge::default();
        let alerts_delivered = Counter::default();
        registry.register(
            "audit_unchained_events",
            "Audit events found waiting to be chained by this instance's last chaining pass",
            audit_backlog.clone(),
        );
        registry.register(
            "alert_outbox_undelivered",
            "Alerts still queued after this instance's last delivery pass (failed, to be retried)",
            alerts_queued.clone(),
        );
        registry.register(
            "alerts_delivered",
            "Alerts delivered by this instance",
            alerts_delivered.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests by method, route template and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by method and route template",
            latency.clone(),
        );
        registry.register(
            "rate_limited",
            "Requests refused by a rate limit, by class",
            rate_limited.clone(),
        );
        registry.register(
            "db_pool_connections",
            "Open database connections",
            pool_size.clone(),
        );
        registry.register(
            "db_pool_idle_connections",
            "Idle database connections",
            pool_idle.clone(),
        );
        registry.register(
            "kill_switch_engaged",
            "1 while the kill switch is on",
            kill_switch.clone(),
        );
        registry.register(
            "slow_requests",
            "Requests slower than the slow-request threshold",
            slow.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            rate_limited,
            pool_size,
            pool_idle,
            kill_switch,
            slow,
            audit_backlog,
            alerts_queued,
            alerts_delivered,
        }
    }

    /// What this instance's chaining pass found (and chained).
    pub fn audit_pass(&self, chained: u64) {
        self.audit_backlog
            .set(i64::try_from(chained).unwrap_or(i64::MAX));
    }

    /// What this instance's delivery pass did.
    pub fn alerts_pass(&self, delivered: u64, still_queued: u64) {
        self.alerts_delivered.inc_by(delivered);
        self.alerts_queued
            .set(i64::try_from(still_queued).unwrap_or(i64::MAX));
    }

    /// Counts one answered request.
    pub fn request(&self, method: &str, route: &str, status: u16, took: Duration, slow: bool) {
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_owned(),
                route: route.to_owned(),
                status,
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                method: method.to_owned(),
                route: route.to_owned(),
            })
            .observe(took.as_secs_f64());
        if slow {
            self.slow.inc();
        }
    }

    /// Counts one rate-limit refusal.
    pub fn rate_limited(&self, class: &'static str) {
        self.rate_limited
            .get_or_create(&ClassLabels { class })
            .inc();
    }

    /// The text exposition, after sampling the gauges.
    pub fn render(&self, pool: (u32, u32), kill_switch: bool) -> String {
        self.pool_size.set(i64::from(pool.0));
        self.pool_idle.set(i64::from(pool.1));
        self.kill_switch.set(i64::from(kill_switch));
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_by_route_template() {
        let m = Metrics::new();
        m.request(
            "GET",
            "/api/v1/patients/{id}",
            200,
            Duration::from_millis(3),
            false,
        );
        m.request(
            "GET",
            "/api/v1/patients/{id}",
            200,
            Duration::from_millis(5),
            true,
        );
        m.rate_limited("auth");
        m.audit_pass(12);
        m.alerts_pass(2, 1);
        let text = m.render((4, 3), false);
        assert!(text.contains(
            r#"carapace_http_requests_total{method="GET",route="/api/v1/patients/{id}",status="200"} 2"#
        ), "{text}");
        assert!(
            text.contains(r#"carapace_rate_limited_total{class="auth"} 1"#),
            "{text}"
        );
        assert!(text.contains("carapace_db_pool_connections 4"), "{text}");
        assert!(text.contains("carapace_slow_requests_total 1"), "{text}");
        assert!(
            text.contains("carapace_audit_unchained_events 12"),
            "{text}"
        );
        assert!(
            text.contains("carapace_alert_outbox_undelivered 1"),
            "{text}"
        );
        assert!(text.contains("carapace_alerts_delivered_total 2"), "{text}");
        assert!(
            text.contains("carapace_http_request_duration_seconds_bucket"),
            "{text}"
        );
    }
}
