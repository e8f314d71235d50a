//! A local stand-in for AWS KMS: moto's server (`pip install
//! 'moto[server]'`), started on a free port for one test and stopped when
//! dropped. Its KMS really encrypts and checks the encryption context; it
//! does not check signatures.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running moto server.
#[derive(Debug)]
pub struct LocalKms {
    child: Child,
    /// Its endpoint, `http://127.0.0.1:<port>/`.
    pub endpoint: String,
}

impl LocalKms {
    /// Starts `moto_server` (or `CARAPACE_TEST_MOTO_SERVER`); `None` after
    /// a SKIP line when it is not installed (a failure under
    /// `CARAPACE_REQUIRE_SERVICES=1`).
    pub async fn start(test: &str) -> Option<Self> {
        let program =
            std::env::var("CARAPACE_TEST_MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
        let port = match TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
            Ok(addr) => addr.port(),
            Err(e) => panic!("{test}: no free port: {e}"),
        };
        let child = Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) => {
                crate::skip(test, &format!("cannot run {program} ({e})"));
                return None;
            }
        };
        let kms = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}/"),
        };
        let started = Instant::now();
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        while std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "{test}: {program} did not start listening"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Some(kms)
    }

    /// Creates a symmetric key and returns its id (moto does not check
    /// signatures, so this administrative call goes unsigned).
    pub async fn create_key(&self) -> String {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let answer: serde_json::Value = reqwest::Client::new()
            .post(&self.endpoint)
            .header("x-amz-target", "TrentService.CreateKey")
            .header("content-type", "application/x-amz-json-1.1")
            .header(
                "authorization",
                "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/kms/aws4_request, SignedHeaders=host, Signature=0",
            )
            .body("{}")
            .send()
            .await
            .unwrap_or_else(|e| panic!("local KMS: {e}"))
            .json()
            .await
            .unwrap_or_else(|e| panic!("local KMS: {e}"));
        answer["KeyMetadata"]["KeyId"]
            .as_str()
            .unwrap_or_else(|| panic!("local KMS: no key id in {answer}"))
            .to_owned()
    }

    /// Stops the server (a KMS outage).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for LocalKms {
    fn drop(&mut self) {
        self.stop();
    }
}
