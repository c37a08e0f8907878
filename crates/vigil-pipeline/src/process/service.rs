//! What a long-running process tells its service manager, in systemd's `sd_notify`
//! protocol (the sd-notify crate): `READY=1` once it serves, `WATCHDOG=1` from its
//! supervision loop while its actor system lives (so a wedged process is restarted, not
//! one that merely has a timer thread left), a `STATUS=` line `systemctl status` shows,
//! and `STOPPING=1` on the way out. Without `NOTIFY_SOCKET` (not under systemd) nothing
//! is sent.

use std::time::{Duration, Instant};

use sd_notify::NotifyState;

/// How often the status line is refreshed when no watchdog asks for more.
const STATUS_EVERY: Duration = Duration::from_secs(5);

/// The notifications of one process.
#[derive(Debug)]
pub struct Service {
    /// Half the watchdog interval systemd set (`WATCHDOG_USEC`), if it set one for us.
    ping_every: Option<Duration>,
    next: Instant,
    stopped: bool,
}

impl Service {
    /// Reads the watchdog interval systemd gave this process, if any.
    pub fn from_env() -> Self {
        let ping_every = sd_notify::watchdog_enabled().map(|d| d / 2);
        if let Some(every) = ping_every {
            tracing::info!(every_ms = every.as_millis() as u64, "systemd watchdog: pinging");
        }
        Self { ping_every, next: Instant::now(), stopped: false }
    }

    /// Serving: the brokers are connected and the actors started.
    pub fn ready(&mut self, status: &str) {
        send(&[NotifyState::Ready, NotifyState::Status(status)]);
        self.next = Instant::now();
    }

    /// Called from the supervision loop. While `alive` (the actor system runs), pings the
    /// watchdog at half its interval with the current status; once not, stops pinging so
    /// systemd restarts the process (`Restart=on-failure`).
    pub fn tick(&mut self, alive: bool, status: impl FnOnce() -> String) {
        if self.stopped || Instant::now() < self.next {
            return;
        }
        if !alive {
            tracing::error!("the actor system has stopped; no more watchdog pings");
            send(&[NotifyState::Status("actor system stopped")]);
            self.stopped = true;
            return;
        }
        let status = status();
        match self.ping_every {
            Some(every) => {
                send(&[NotifyState::Watchdog, NotifyState::Status(&status)]);
                self.next = Instant::now() + every;
            }
            None => {
                send(&[NotifyState::Status(&status)]);
                self.next = Instant::now() + STATUS_EVERY;
            }
        }
    }

    /// On the way out: systemd waits for the process to end instead of restarting it.
    pub fn stopping(&mut self) {
        send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
        self.stopped = true;
    }
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify the service manager (NOTIFY_SOCKET)");
    }
}
