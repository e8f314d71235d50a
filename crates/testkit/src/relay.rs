//! A TCP relay in front of a real service (PostgreSQL, Redis) that a test
//! can break in the ways networks break, to see what Carapace does while
//! the service is unreachable and after it comes back:
//!
//! - [`Relay::reset`]: every connection is aborted with a TCP RST (as when
//!   the server's process dies or a firewall rejects), and new ones too;
//! - [`Relay::black_hole`]: connections stay open but nothing is forwarded
//!   either way (a partition, or a server that accepts and never answers);
//!   bytes sent meanwhile are delivered after [`Relay::restore`], as TCP
//!   retransmission would;
//! - [`Relay::terminate`] (or [`Relay::cut`]): every connection is closed
//!   cleanly (FIN), and new ones are closed as soon as they are accepted.
//!
//! [`Relay::restore`] forwards again.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the relay does with connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Forward both ways.
    Forward,
    /// Abort every connection with a RST.
    Reset,
    /// Keep connections open, forward nothing.
    BlackHole,
    /// Close every connection cleanly.
    Terminate,
}

/// A relay listening on a local port and forwarding to a target.
#[derive(Debug)]
pub struct Relay {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
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
        let (mode, watching) = watch::channel(Mode::Forward);
        let accept = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                tokio::spawn(serve(inbound, target.clone(), watching.clone()));
            }
        });
        Self { addr, mode, accept }
    }

    /// The local address (`127.0.0.1:port`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        *self.mode.borrow()
    }

    async fn switch(&self, mode: Mode) {
        self.mode.send_replace(mode);
        // Every connection's task sees the change at once; give them a
        // moment to act on it.
        tokio::time::sleep(Duration::from_millis(60)).await;
    }

    /// Aborts every connection with a RST, and each new one as it comes,
    /// until [`Self::restore`].
    pub async fn reset(&self) {
        self.switch(Mode::Reset).await;
    }

    /// Stops forwarding: connections (old and new) stay open and silent
    /// until [`Self::restore`], which delivers what was sent meanwhile.
    pub async fn black_hole(&self) {
        self.switch(Mode::BlackHole).await;
    }

    /// Closes every connection cleanly, and each new one as it comes,
    /// until [`Self::restore`].
    pub async fn terminate(&self) {
        self.switch(Mode::Terminate).await;
    }

    /// The same as [`Self::terminate`].
    pub async fn cut(&self) {
        self.terminate().await;
    }

    /// Forwards again.
    pub fn restore(&self) {
        self.mode.send_replace(Mode::Forward);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Ends `stream` the way `mode` says: a RST for [`Mode::Reset`], else a
/// clean close.
fn end(stream: TcpStream, mode: Mode) {
    if mode == Mode::Reset {
        let _ = stream.set_zero_linger();
    }
    drop(stream);
}

/// One accepted connection, for its whole life.
async fn serve(inbound: TcpStream, target: String, mut mode: watch::Receiver<Mode>) {
    // A new connection waits while the relay is a black hole, and is ended
    // at once while it resets or terminates.
    let now = loop {
        let now = *mode.borrow_and_update();
        if now != Mode::BlackHole {
            break now;
        }
        if mode.changed().await.is_err() {
            return;
        }
    };
    if now != Mode::Forward {
        return end(inbound, now);
    }
    let Ok(outbound) = TcpStream::connect(&target).await else {
        return end(inbound, Mode::Reset);
    };
    let (mut inbound, mut outbound) = (inbound, outbound);
    {
        let pipe = tokio::io::copy_bidirectional(&mut inbound, &mut outbound);
        tokio::pin!(pipe);
        loop {
            let now = *mode.borrow_and_update();
            match now {
                Mode::Forward => {
                    tokio::select! {
                        _ = &mut pipe => return,
                        changed = mode.changed() => if changed.is_err() { return },
                    }
                }
                // The pipe is not polled: nothing moves until the mode
                // changes, and then it carries on where it stopped.
                Mode::BlackHole => {
                    if mode.changed().await.is_err() {
                        return;
                    }
                }
                Mode::Reset | Mode::Terminate => break,
            }
        }
    }
    let now = *mode.borrow();
    end(outbound, now);
    end(inbound, now);
}
