//! Telling a service manager how the daemon is doing: systemd's
//! `sd_notify` protocol, and nothing when there is no service manager.
//!
//! With `Type=notify` systemd waits for `READY=1` before it considers syncd
//! started (sent once the watch is up and the workers run), shows the
//! `STATUS=` line in `systemctl status`, and, with `WatchdogSec=`, restarts
//! a daemon whose main loop stops pinging. Outside systemd `NOTIFY_SOCKET`
//! is unset and every call here is a no-op, so syncd works the same without
//! it. The `sd-notify` crate does the socket work.

use std::time::{Duration, Instant};

use sd_notify::NotifyState;

/// Reports that start-up finished.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Reports that the daemon is stopping.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// Updates the status line.
pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

fn send(state: &[NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(state) {
        log::debug!("sd_notify failed: {e}");
    }
}

/// The systemd watchdog, pinged from the main loop so that a wedged loop
/// gets the daemon restarted.
pub struct SystemdWatchdog {
    every: Option<Duration>,
    next: Instant,
}

impl SystemdWatchdog {
    /// Reads `WATCHDOG_USEC`; pings at half the interval, as systemd advises.
    pub fn from_env() -> SystemdWatchdog {
        let every = sd_notify::watchdog_enabled().map(|d| d / 2);
        SystemdWatchdog {
            every,
            next: Instant::now(),
        }
    }

    /// When the next ping is due, if the watchdog is on.
    pub fn due_at(&self) -> Option<Instant> {
        self.every.map(|_| self.next)
    }

    /// Pings when due.
    pub fn tick(&mut self, now: Instant) {
        if let Some(every) = self.every {
            if now >= self.next {
                send(&[NotifyState::Watchdog]);
                self.next = now + every;
            }
        }
    }
}
