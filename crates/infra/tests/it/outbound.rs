//! The SSRF-safe outbound client: refused targets never get a request.

use std::time::Duration;

use carapace_infra::outbound::{OutboundError, OutboundPolicy, SafeHttp, is_forbidden};
use carapace_testkit::receiver::{Answer, Receiver};

fn policy(https_only: bool, allow_loopback: bool, hosts: &[&str]) -> OutboundPolicy {
    OutboundPolicy {
        https_only,
        allowed_hosts: hosts.iter().map(|h| (*h).to_owned()).collect(),
        allow_loopback,
        timeout: Duration::from_secs(5),
        max_response_bytes: 1024,
    }
}

#[tokio::test]
async fn production_refuses_inside_addresses_other_hosts_and_plain_http() {
    let hosts = [
        "127.0.0.1",
        "10.0.0.1",
        "192.168.1.1",
        "172.16.0.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "::1",
        "fe80::1",
        "fd00::1",
        "::ffff:127.0.0.1",
        "localhost",
        "alerts.example.org",
    ];
    let http = SafeHttp::new(policy(true, false, &hosts));
    for target in [
        "https://127.0.0.1/hook",
        "https://10.0.0.1/hook",
        "https://192.168.1.1/hook",
        "https://172.16.0.1/hook",
        "https://169.254.169.254/latest/meta-data/",
        "https://100.64.0.1/hook",
        "https://0.0.0.0/hook",
        "https://[::1]/hook",
        "https://[fe80::1]/hook",
        "https://[fd00::1]/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://localhost/hook",
        "http://alerts.example.org/hook",
        "https://elsewhere.example.org/hook",
        "https://user:pass@alerts.example.org/hook",
        "ftp://alerts.example.org/hook",
        "not a url",
    ] {
        let vetted = http.vet(target).await;
        assert!(
            matches!(vetted, Err(OutboundError::Refused(_))),
            "{target} must be refused before any request: {vetted:?}"
        );
    }
}

#[test]
fn forbidden_ranges() {
    for ip in [
        "127.0.0.1",
        "10.1.2.3",
        "172.31.255.255",
        "192.168.0.1",
        "169.254.169.254",
        "100.100.100.200",
        "0.0.0.0",
        "255.255.255.255",
        "224.0.0.1",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "::ffff:10.0.0.1",
        "64:ff9b::a00:1",
    ] {
        let ip = ip.parse().unwrap_or_else(|e| panic!("{ip}: {e}"));
        assert!(is_forbidden(ip, false), "{ip} must be forbidden");
    }
    for ip in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"] {
        let ip = ip.parse().unwrap_or_else(|e| panic!("{ip}: {e}"));
        assert!(!is_forbidden(ip, false), "{ip} is public");
    }
    let loopback = "127.0.0.1".parse().unwrap_or_else(|e| panic!("{e}"));
    assert!(!is_forbidden(loopback, true), "loopback only when allowed");
}

#[tokio::test]
async fn redirects_are_not_followed_and_big_answers_are_cut() {
    let receiver = Receiver::start().await;
    let http = SafeHttp::new(policy(false, true, &["127.0.0.1"]));
    let url = format!("{}/hook", receiver.base);
    assert_eq!(
        http.post_json(&url, &[], b"{}".to_vec())
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        200
    );
    receiver.answer(Answer {
        status: "302 Found".into(),
        headers: vec![format!("location: {}/elsewhere", receiver.base)],
        body: Vec::new(),
    });
    let redirected = http.post_json(&url, &[], b"{}".to_vec()).await;
    assert!(matches!(redirected, Err(OutboundError::Failed(_))));
    let lines: Vec<String> = receiver.received().iter().map(|r| r.line.clone()).collect();
    assert_eq!(
        lines.len(),
        2,
        "the redirect target was never requested: {lines:?}"
    );
    assert!(lines.iter().all(|l| l.starts_with("POST /hook")));
    receiver.answer(Answer {
        status: "200 OK".into(),
        headers: Vec::new(),
        body: vec![b'x'; 10_000],
    });
    assert!(matches!(
        http.post_json(&url, &[], b"{}".to_vec()).await,
        Err(OutboundError::Failed(_))
    ));
    // Loopback is refused unless the policy allows it, even for a local test.
    let strict = SafeHttp::new(policy(false, false, &["127.0.0.1"]));
    assert!(matches!(
        strict.post_json(&url, &[], b"{}".to_vec()).await,
        Err(OutboundError::Refused(_))
    ));
    assert_eq!(receiver.received().len(), 3);
}
