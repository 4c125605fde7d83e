//! A TCP proxy on 127.0.0.1 between syncd and a server, which injects the
//! link faults of a flaky network on command.
//!
//! Modes: [`Mode::Pass`] forwards; [`Mode::Refuse`] resets every open
//! connection and closes the listener, so new connections are refused
//! (ECONNREFUSED), as from a host that rebooted; [`Mode::Blackhole`]
//! stalls open connections and drops new connection attempts (the accept
//! queue is shrunk to one entry and filled, so the kernel drops further
//! SYNs and clients time out, as behind a dead route); [`Mode::Freeze`]
//! stalls open connections and accepts new ones that then get no byte, as
//! a hung host whose kernel still answers. [`Proxy::fault_after`] injects
//! a fault once a number of bytes went upstream, so it lands mid-transfer
//! deterministically. Each connection is two pump threads; stalled pumps
//! stop reading, so TCP back-pressure reaches both ends as on a real link.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Pass,
    Refuse,
    Blackhole,
    Freeze,
}

struct Conn {
    client: TcpStream,
    /// Connected when the first byte may flow (a frozen connection never
    /// reaches the server).
    server: Mutex<Option<TcpStream>>,
    dead: AtomicBool,
}

struct Shared {
    target: SocketAddr,
    mode: Mutex<Mode>,
    /// The mode the listener thread has put in place.
    applied: Mutex<Mode>,
    conns: Mutex<Vec<Arc<Conn>>>,
    up: AtomicU64,
    down: AtomicU64,
    accepted: AtomicU64,
    cuts: AtomicU64,
    /// (upstream byte count, fault) armed by `fault_after`.
    armed: Mutex<Option<(u64, Mode)>>,
    stop: AtomicBool,
}

pub struct Proxy {
    port: u16,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Starts a proxy on a free port of 127.0.0.1 forwarding to
    /// 127.0.0.1:`target_port`, in [`Mode::Pass`].
    pub fn start(target_port: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared {
            target: SocketAddr::from(([127, 0, 0, 1], target_port)),
            mode: Mutex::new(Mode::Pass),
            applied: Mutex::new(Mode::Pass),
            conns: Mutex::new(Vec::new()),
            up: AtomicU64::new(0),
            down: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            cuts: AtomicU64::new(0),
            armed: Mutex::new(None),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name(format!("proxy :{port}"))
            .spawn(move || listen_loop(s, Some(listener), port))
            .unwrap();
        Proxy {
            port,
            shared,
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Switches the mode and waits until it is in place (a refused port is
    /// closed, a blackholed one full) when this returns.
    pub fn set(&self, mode: Mode) {
        set_mode(&self.shared, mode);
        let t = Instant::now();
        while *self.shared.applied.lock().unwrap() != mode {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "proxy mode {mode:?} not applied"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Injects `fault` once `bytes` more bytes went upstream: `Refuse`
    /// resets the open connections and refuses new ones, `Freeze` stalls
    /// them, `Pass` only resets them.
    pub fn fault_after(&self, bytes: u64, fault: Mode) {
        let at = self.shared.up.load(Ordering::SeqCst) + bytes;
        *self.shared.armed.lock().unwrap() = Some((at, fault));
    }

    /// Faults injected by `fault_after` so far.
    pub fn cuts(&self) -> u64 {
        self.shared.cuts.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Bytes forwarded client → server so far.
    pub fn up_bytes(&self) -> u64 {
        self.shared.up.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        cut_all(&self.shared);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn set_mode(s: &Shared, mode: Mode) {
    if mode == Mode::Refuse {
        cut_all(s);
    }
    *s.mode.lock().unwrap() = mode;
}

/// Resets a connected TCP socket at once, whatever other descriptors of it
/// exist: connect(2) with AF_UNSPEC makes Linux send a RST and close it.
fn reset(sock: &TcpStream) {
    let addr = libc::sockaddr {
        sa_family: libc::AF_UNSPEC as libc::sa_family_t,
        sa_data: [0; 14],
    };
    // SAFETY: a plain syscall on a socket this proxy owns.
    unsafe {
        libc::connect(
            sock.as_raw_fd(),
            &addr,
            std::mem::size_of::<libc::sockaddr>() as libc::socklen_t,
        )
    };
}

fn cut_all(s: &Shared) {
    let conns: Vec<Arc<Conn>> = s.conns.lock().unwrap().drain(..).collect();
    for c in conns {
        c.dead.store(true, Ordering::SeqCst);
        reset(&c.client);
        if let Some(srv) = c.server.lock().unwrap().as_ref() {
            reset(srv);
        }
    }
}

fn listen_loop(s: Arc<Shared>, mut listener: Option<TcpListener>, port: u16) {
    // Our own connections that fill a blackholed accept queue.
    let mut fillers: Vec<TcpStream> = Vec::new();
    let mut shrunk = false;
    while !s.stop.load(Ordering::SeqCst) {
        let mode = *s.mode.lock().unwrap();
        match mode {
            Mode::Refuse => {
                listener = None;
                fillers.clear();
                shrunk = false;
            }
            _ if listener.is_none() => listener = Some(rebind(port)),
            _ => {}
        }
        if let Some(l) = &listener {
            if mode == Mode::Blackhole && !shrunk {
                // A backlog of 0 holds one pending connection: ours. The
                // kernel then drops every further SYN.
                // SAFETY: listen(2) on our own listening socket.
                unsafe { libc::listen(l.as_raw_fd(), 0) };
                shrunk = true;
                if let Ok(f) = TcpStream::connect_timeout(
                    &SocketAddr::from(([127, 0, 0, 1], port)),
                    Duration::from_millis(300),
                ) {
                    fillers.push(f);
                }
            }
            if mode != Mode::Blackhole && shrunk {
                // SAFETY: as above.
                unsafe { libc::listen(l.as_raw_fd(), 128) };
                shrunk = false;
            }
        }
        *s.applied.lock().unwrap() = mode;
        let Some(l) = listener.as_ref().filter(|_| mode != Mode::Blackhole) else {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        };
        match l.accept() {
            Ok((client, peer)) => {
                if let Some(i) = fillers
                    .iter()
                    .position(|f| f.local_addr().ok() == Some(peer))
                {
                    fillers.swap_remove(i);
                    continue;
                }
                s.accepted.fetch_add(1, Ordering::SeqCst);
                serve(&s, client);
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn rebind(port: u16) -> TcpListener {
    let t = Instant::now();
    loop {
        match TcpListener::bind(("127.0.0.1", port)) {
            Ok(l) => {
                l.set_nonblocking(true).unwrap();
                return l;
            }
            Err(e) if t.elapsed() > Duration::from_secs(10) => {
                panic!("the proxy cannot take its port {port} back: {e}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn serve(s: &Arc<Shared>, client: TcpStream) {
    client.set_nonblocking(false).unwrap();
    let _ = client.set_nodelay(true);
    let conn = Arc::new(Conn {
        client,
        server: Mutex::new(None),
        dead: AtomicBool::new(false),
    });
    s.conns.lock().unwrap().push(conn.clone());
    let s = s.clone();
    std::thread::spawn(move || {
        // Connect to the server only once bytes may flow.
        while !conn.dead.load(Ordering::SeqCst) && stalled(&s) {
            std::thread::sleep(Duration::from_millis(5));
        }
        if conn.dead.load(Ordering::SeqCst) || s.stop.load(Ordering::SeqCst) {
            return;
        }
        let server = match TcpStream::connect(s.target) {
            Ok(x) => x,
            Err(_) => {
                reset(&conn.client);
                conn.dead.store(true, Ordering::SeqCst);
                return;
            }
        };
        let _ = server.set_nodelay(true);
        *conn.server.lock().unwrap() = Some(server.try_clone().unwrap());
        let (c1, s1) = (
            conn.client.try_clone().unwrap(),
            server.try_clone().unwrap(),
        );
        let (s2, c2) = (server, conn.client.try_clone().unwrap());
        let (sh1, cn1) = (s.clone(), conn.clone());
        let up = std::thread::spawn(move || pump(&sh1, &cn1, c1, s1, true));
        pump(&s, &conn, s2, c2, false);
        let _ = up.join();
        s.conns.lock().unwrap().retain(|c| !Arc::ptr_eq(c, &conn));
    });
}

fn stalled(s: &Shared) -> bool {
    matches!(*s.mode.lock().unwrap(), Mode::Blackhole | Mode::Freeze)
}

/// Copies `from` → `to` until EOF, an error or a cut; stops reading while
/// the link is stalled.
fn pump(s: &Shared, conn: &Conn, mut from: TcpStream, mut to: TcpStream, upstream: bool) {
    from.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if conn.dead.load(Ordering::SeqCst) || s.stop.load(Ordering::SeqCst) {
            return;
        }
        if stalled(s) {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        let n = match from.read(&mut buf) {
            Ok(0) => {
                let _ = to.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(_) => {
                reset(&to);
                return;
            }
        };
        if to.write_all(&buf[..n]).is_err() {
            reset(&from);
            return;
        }
        let counter = if upstream { &s.up } else { &s.down };
        let total = counter.fetch_add(n as u64, Ordering::SeqCst) + n as u64;
        if upstream {
            let fire = {
                let mut armed = s.armed.lock().unwrap();
                match *armed {
                    Some((at, fault)) if total >= at => {
                        *armed = None;
                        Some(fault)
                    }
                    _ => None,
                }
            };
            if let Some(fault) = fire {
                s.cuts.fetch_add(1, Ordering::SeqCst);
                match fault {
                    Mode::Freeze | Mode::Blackhole => set_mode(s, fault),
                    Mode::Refuse => set_mode(s, Mode::Refuse),
                    Mode::Pass => cut_all(s),
                }
                if fault != Mode::Freeze && fault != Mode::Blackhole {
                    return;
                }
            }
        }
    }
}
