//! A local HTTP receiver for outbound calls (alert webhooks): records every
//! request and answers what the test sets, or is down.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

/// One received request.
#[derive(Clone, Debug)]
pub struct Received {
    /// Method and path (`POST /hook`).
    pub line: String,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Received {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the receiver answers: status line, extra headers, body.
#[derive(Clone, Debug)]
pub struct Answer {
    /// e.g. `200 OK`.
    pub status: String,
    /// Extra header lines.
    pub headers: Vec<String>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl Answer {
    /// `200 OK`, empty.
    pub fn ok() -> Self {
        Self::status("200 OK")
    }

    /// An empty answer with `status`.
    pub fn status(status: &str) -> Self {
        Self {
            status: status.to_owned(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }
}

/// A running receiver on 127.0.0.1.
#[derive(Clone, Debug)]
pub struct Receiver {
    /// Its base URL, `http://127.0.0.1:<port>`.
    pub base: String,
    received: Arc<Mutex<Vec<Received>>>,
    answer: Arc<Mutex<Answer>>,
}

impl Receiver {
    /// Starts a receiver answering `200 OK`.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("bind: {e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("{e}"))
            .port();
        let receiver = Self {
            base: format!("http://127.0.0.1:{port}"),
            received: Arc::default(),
            answer: Arc::new(Mutex::new(Answer::ok())),
        };
        let r = receiver.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let r = r.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let (head_end, length) = loop {
                        let Ok(n) = stream.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                            let length = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            break (end + 4, length);
                        }
                    };
                    while buf.len() < head_end + length {
                        let Ok(n) = stream.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            break;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                    let mut lines = head.lines();
                    let line = lines.next().unwrap_or_default().to_owned();
                    let headers = lines
                        .filter_map(|l| l.split_once(':'))
                        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
                        .collect();
                    let body = buf[head_end..].to_vec();
                    if let Ok(mut all) = r.received.lock() {
                        all.push(Received {
                            line,
                            headers,
                            body,
                        });
                    }
                    let answer = r
                        .answer
                        .lock()
                        .map(|a| a.clone())
                        .unwrap_or_else(|_| Answer::ok());
                    let mut out = format!(
                        "HTTP/1.1 {}\r\nconnection: close\r\ncontent-length: {}\r\n",
                        answer.status,
                        answer.body.len()
                    );
                    for h in &answer.headers {
                        out.push_str(h);
                        out.push_str("\r\n");
                    }
                    out.push_str("\r\n");
                    let _ = stream.write_all(out.as_bytes()).await;
                    let _ = stream.write_all(&answer.body).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        receiver
    }

    /// From now on, answer `answer`.
    pub fn answer(&self, answer: Answer) {
        if let Ok(mut a) = self.answer.lock() {
            *a = answer;
        }
    }

    /// Every request so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().map(|r| r.clone()).unwrap_or_default()
    }
}
