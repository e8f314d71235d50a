//! A TCP relay in front of a real service (PostgreSQL, Redis) that a test
//! can cut and restore, to see what Carapace does while the service is
//! unreachable and after it comes back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// A relay listening on a local port and forwarding to a target.
#[derive(Debug)]
pub struct Relay {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
    accept: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// Forwards a fresh local port to `target` (`host:port`).
    pub async fn start(target: &str) -> Self {
        let target = target.to_owned();
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
        let up = Arc::new(AtomicBool::new(true));
        let flag = up.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !flag.load(Ordering::Relaxed) {
                    continue; // dropped at once: the peer sees the connection close
                }
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
                            () = tokio::time::sleep(Duration::from_millis(20)) => {
                                if !flag.load(Ordering::Relaxed) {
                                    return; // dropping both ends cuts the connection
                                }
                            }
                        }
                    }
                });
            }
        });
        Self { addr, up, accept }
    }

    /// The local address (`127.0.0.1:port`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Cuts every connection and refuses new ones until [`Self::restore`].
    pub async fn cut(&self) {
        self.up.store(false, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(60)).await;
    }

    /// Forwards again.
    pub fn restore(&self) {
        self.up.store(true, Ordering::Relaxed);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
    }
}
