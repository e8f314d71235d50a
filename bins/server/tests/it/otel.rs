//! OpenTelemetry export (feature `otel`): spans reach an OTLP/HTTP
//! collector (a local receiver standing in for it), carrying the request
//! id and no PHI.

use carapace_server::logging::{Redaction, Traces, json_subscriber};
use carapace_testkit::receiver::Receiver;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_exported_over_otlp_http() {
    let collector = Receiver::start().await;
    let traces = Traces::to(&collector.base).unwrap_or_else(|e| panic!("{e}"));
    let handle = traces.handle();
    let subscriber = json_subscriber(
        tracing_subscriber::EnvFilter::new("info"),
        std::io::sink,
        Redaction::new(""),
        Some(traces),
    );
    // The blocking exporter must not run on the async runtime's threads.
    tokio::task::spawn_blocking(move || {
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!(
                "request",
                request_id = "rid-otel-1",
                path = "/api/v1/patients"
            );
            span.in_scope(|| tracing::info!("request completed"));
        });
        handle.flush();
        handle.shutdown();
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let got = collector.received();
    let export = got
        .iter()
        .find(|r| r.line.starts_with("POST /v1/traces"))
        .unwrap_or_else(|| {
            panic!(
                "no export: {:?}",
                got.iter().map(|r| &r.line).collect::<Vec<_>>()
            )
        });
    assert_eq!(
        export.header("content-type"),
        Some("application/x-protobuf")
    );
    let body = String::from_utf8_lossy(&export.body);
    assert!(
        body.contains("rid-otel-1"),
        "the span's request id is exported"
    );
    assert!(body.contains("carapace"), "the service name is exported");
}
