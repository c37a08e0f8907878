//! Playback control of a replay from the viewer (the protocol's `PlaybackControl`): play,
//! pause, speed, and seeking ahead. A streaming replay cannot go back (the pipeline has
//! already seen what is behind), so a seek behind the current time is refused
//! (`did_seek` false). The replay asks [`Playback::due`] before each instant.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use foxglove::websocket::{PlaybackCommand, PlaybackControlRequest, PlaybackState, PlaybackStatus, ServerListener};
use vigil_core::Nanos;

/// What the viewer asked, and where the replay is.
#[derive(Debug)]
struct State {
    paused: bool,
    speed: f64,
    /// Skip instants before this capture time.
    seek: Option<Nanos>,
    /// The capture time of the instant fed last.
    current: Nanos,
    /// Real time and capture time the pacing counts from (reset by a pause, a seek or a
    /// new speed).
    anchor: Option<(Instant, Nanos)>,
    skipped: u64,
}

/// The replay's pace as the viewer sets it.
#[derive(Debug)]
pub struct Playback {
    state: Mutex<State>,
    changed: Condvar,
}

impl Playback {
    /// Playing at `speed` times real time.
    pub fn new(speed: f64) -> Arc<Self> {
        let speed = if speed.is_finite() && speed > 0.0 { speed } else { 1.0 };
        let state = State { paused: false, speed, seek: None, current: 0, anchor: None, skipped: 0 };
        Arc::new(Self { state: Mutex::new(state), changed: Condvar::new() })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until the instant captured at `t` is due (paced at the speed set, held
    /// while paused); `false` when it is to be skipped (the viewer sought past it).
    pub fn due(&self, t: Nanos) -> bool {
        let mut s = self.lock();
        loop {
            if let Some(target) = s.seek {
                if t < target {
                    s.skipped += 1;
                    s.current = t;
                    return false;
                }
                s.seek = None;
                s.anchor = None;
            }
            if s.paused {
                s.anchor = None;
                s = self.changed.wait_timeout(s, Duration::from_millis(200)).map_or_else(|p| p.into_inner().0, |r| r.0);
                continue;
            }
            let (from, t0) = *s.anchor.get_or_insert((Instant::now(), t));
            let due = from + Duration::from_secs_f64((t - t0).max(0) as f64 * 1e-9 / s.speed);
            let now = Instant::now();
            if due <= now {
                s.current = t;
                return true;
            }
            // A request wakes this early; the loop looks again.
            s = self.changed.wait_timeout(s, due - now).map_or_else(|p| p.into_inner().0, |r| r.0);
        }
    }

    /// Instants skipped by seeks.
    pub fn skipped(&self) -> u64 {
        self.lock().skipped
    }

    /// The state to tell the viewer.
    pub fn state(&self, ended: bool) -> PlaybackState {
        let s = self.lock();
        let status = match (ended, s.paused) {
            (true, _) => PlaybackStatus::Ended,
            (false, true) => PlaybackStatus::Paused,
            (false, false) => PlaybackStatus::Playing,
        };
        PlaybackState {
            status,
            current_time: s.current.max(0) as u64,
            playback_speed: s.speed as f32,
            did_seek: false,
            request_id: None,
        }
    }

    /// Plays on (a viewer that paused the replay went away).
    fn resume(&self) {
        self.lock().paused = false;
        self.changed.notify_all();
    }

    fn request(&self, r: PlaybackControlRequest) -> PlaybackState {
        let did_seek = {
            let mut s = self.lock();
            s.paused = matches!(r.playback_command, PlaybackCommand::Pause);
            let speed = f64::from(r.playback_speed);
            if speed.is_finite() && speed > 0.0 && speed != s.speed {
                s.speed = speed;
                s.anchor = None;
            }
            match r.seek_time.map(|t| t.min(i64::MAX as u64) as Nanos) {
                Some(t) if t > s.current => {
                    s.seek = Some(t);
                    s.anchor = None;
                    true
                }
                Some(t) => {
                    tracing::info!(at = t, current = s.current, "a replay cannot seek back; playing on");
                    false
                }
                None => false,
            }
        };
        self.changed.notify_all();
        PlaybackState { did_seek, request_id: Some(r.request_id), ..self.state(false) }
    }
}

/// The server's listener: playback requests to [`Playback`].
#[derive(Debug)]
pub(super) struct Listener(pub(super) Arc<Playback>);

impl ServerListener for Listener {
    fn on_playback_control_request(&self, request: PlaybackControlRequest) -> Option<PlaybackState> {
        Some(self.0.request(request))
    }

    /// A replay paused by a viewer that disconnects would otherwise wait forever.
    fn on_client_disconnect(&self) {
        self.0.resume();
    }
}
