//! Fixtures for remote destinations, all on loopback and started and ended
//! by the test that uses them: a TCP [`proxy`] that injects link faults, a
//! private [`sshd`] and an [`rsyncd`], and [`procs`], the process-tree
//! helpers their teardown uses (a server's per-connection children must be
//! ended too, and only those).

pub mod procs;
pub mod proxy;
pub mod rsyncd;
pub mod sshd;

/// A free TCP port on 127.0.0.1 (bound and released: a server started
/// right after can take it; the fixtures retry on the rare collision).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}
