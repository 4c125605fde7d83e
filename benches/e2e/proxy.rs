//! A counting TCP proxy on 127.0.0.1, between every ssh client of one run
//! and the benchmark's sshd: whatever crosses the "link" (rsync's protocol,
//! syncd's SFTP requests, lsyncd's remote `mv` commands, ssh's own
//! handshakes and keep-alives) is counted here, in both directions, so
//! bytes over ssh are one measure for every daemon and the reference.
//!
//! One thread accepts; each connection gets two pump threads (one per
//! direction) that copy through a 256 KiB buffer and add what they copied
//! to the proxy's counters. Loopback only, and it forwards only to the
//! port it was given. Dropping the proxy shuts every connection down.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};

struct Shared {
    target: SocketAddr,
    /// Client → server bytes.
    up: AtomicU64,
    /// Server → client bytes.
    down: AtomicU64,
    accepted: AtomicU64,
    conns: Mutex<Vec<TcpStream>>,
    stop: AtomicBool,
}

/// The proxy; see the module doc.
pub struct Proxy {
    port: u16,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// Bytes through the proxy so far.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Count {
    pub up: u64,
    pub down: u64,
    pub connections: u64,
}

impl Count {
    pub fn total(&self) -> u64 {
        self.up + self.down
    }

    /// What went through between `earlier` and `self`.
    pub fn since(&self, earlier: Count) -> Count {
        Count {
            up: self.up - earlier.up,
            down: self.down - earlier.down,
            connections: self.connections - earlier.connections,
        }
    }
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1 and forwards to
    /// 127.0.0.1:`target_port`.
    pub fn start(target_port: u16) -> Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the proxy")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let shared = Arc::new(Shared {
            target: SocketAddr::from(([127, 0, 0, 1], target_port)),
            up: AtomicU64::new(0),
            down: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            conns: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("proxy :{port}"))
            .spawn(move || accept_loop(&s, listener))?;
        Ok(Proxy {
            port,
            shared,
            thread: Some(thread),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn count(&self) -> Count {
        Count {
            up: self.shared.up.load(Ordering::SeqCst),
            down: self.shared.down.load(Ordering::SeqCst),
            connections: self.shared.accepted.load(Ordering::SeqCst),
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Ok(mut conns) = self.shared.conns.lock() {
            for c in conns.drain(..) {
                let _ = c.shutdown(Shutdown::Both);
            }
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(s: &Arc<Shared>, listener: TcpListener) {
    while !s.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => {
                s.accepted.fetch_add(1, Ordering::SeqCst);
                if let Err(e) = serve(s, client) {
                    eprintln!("e2e: proxy: {e:#}");
                }
            }
            Err(_) => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}

fn serve(s: &Arc<Shared>, client: TcpStream) -> Result<()> {
    client.set_nonblocking(false)?;
    let server = TcpStream::connect(s.target).context("connecting to sshd")?;
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    if let Ok(mut conns) = s.conns.lock() {
        conns.push(client.try_clone()?);
        conns.push(server.try_clone()?);
        // Forget connections both ends of which are closed (keeps the list short).
        conns.retain(|c| c.peer_addr().is_ok());
    }
    let (c_read, s_write) = (client.try_clone()?, server.try_clone()?);
    let (up, down) = (s.clone(), s.clone());
    std::thread::spawn(move || pump(c_read, s_write, &up.up));
    std::thread::spawn(move || pump(server, client, &down.down));
    Ok(())
}

/// Copies `from` → `to` until EOF or an error, counting; then half-closes
/// `to`, as the peer did.
fn pump(mut from: TcpStream, mut to: TcpStream, counter: &AtomicU64) {
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
                counter.fetch_add(n as u64, Ordering::SeqCst);
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
