//! The attack surface in one place: each module tries to break one
//! security promise the way an attacker would (raw requests, odd
//! encodings, replays, races, a dependency that hangs) through the real
//! server on a random port, on both databases where storage is involved.

mod cookies;
mod faults;
mod idempotency;
mod impersonation;
mod issuer_revocation;
pub(crate) mod kit;
mod lockout;
mod mfa_default;
mod migrations;
mod oidc_claims;
mod rate_limit_paths;
mod reset_codes;
mod sessions;
mod stops;
mod timing;

/// Requests written byte for byte onto a TCP connection: the request
/// target reaches the server exactly as written (an HTTP client would
/// normalise some of the spellings an attacker tries).
pub(crate) mod raw {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpStream;

    use crate::support::TestApp;

    /// A response as read off the wire.
    #[derive(Debug)]
    pub struct Answer {
        /// The status code.
        pub status: u16,
        /// Header names (lower-case) and values.
        pub headers: Vec<(String, String)>,
        /// The body, as text.
        pub body: String,
    }

    impl Answer {
        /// The first value of header `name`.
        pub fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        }
    }

    /// Sends `method target HTTP/1.1` with `headers` and `body` (a
    /// `Content-Length` is added, and `Connection: close`).
    pub async fn send(
        app: &TestApp,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Answer {
        let addr = app.base.trim_start_matches("http://");
        let mut request = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\n");
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str(&format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ));
        let exchange = async {
            let mut stream = TcpStream::connect(addr).await?;
            stream.write_all(request.as_bytes()).await?;
            let mut bytes = Vec::new();
            stream.read_to_end(&mut bytes).await?;
            Ok::<_, std::io::Error>(bytes)
        };
        let bytes = tokio::time::timeout(Duration::from_secs(20), exchange)
            .await
            .unwrap_or_else(|_| panic!("{method} {target}: no answer"))
            .unwrap_or_else(|e| panic!("{method} {target}: {e}"));
        parse(&String::from_utf8_lossy(&bytes))
            .unwrap_or_else(|| panic!("{method} {target}: not an HTTP response"))
    }

    fn parse(text: &str) -> Option<Answer> {
        let (head, body) = text.split_once("\r\n\r\n")?;
        let mut lines = head.split("\r\n");
        let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        Some(Answer {
            status,
            headers,
            body: body.to_owned(),
        })
    }
}
