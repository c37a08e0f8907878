//! Scheduling priority of the two planes: the urgent path (sensor → fusion → task → reply
//! → command, and in a simulated run the sensors themselves) runs above telemetry, so a
//! busy computer costs the log time before it costs a deadline.
//!
//! Linux keeps a nice value and a policy per thread, and a new thread inherits its
//! creator's: a process enters [`Plane::Urgent`] on its main thread before it starts
//! anything, and the bulk threads (the telemetry actor's arbiter) step down to
//! [`Plane::Bulk`].

use thread_priority::{
    RealtimeThreadSchedulePolicy, ThreadPriority, ThreadPriorityValue, ThreadSchedulePolicy,
    set_thread_priority_and_policy, thread_native_id,
};

/// How the planes are told apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PriorityMode {
    /// Leave every thread as the process started.
    Off,
    /// Niceness: urgent about -10, bulk about +10. Raising needs CAP_SYS_NICE (or
    /// RLIMIT_NICE); without it only the bulk plane steps down.
    #[default]
    Nice,
    /// SCHED_RR for the urgent plane (needs CAP_SYS_NICE or RLIMIT_RTPRIO), bulk at +10.
    /// The kernel's RT throttling still leaves others 5 % of each core.
    Realtime,
}

impl std::str::FromStr for PriorityMode {
    type Err = PriorityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "off" => Ok(Self::Off),
            "nice" => Ok(Self::Nice),
            "realtime" | "rt" => Ok(Self::Realtime),
            other => Err(PriorityError::Unknown(other.to_string())),
        }
    }
}

impl PriorityMode {
    pub fn name(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Nice => "nice",
            Self::Realtime => "realtime",
        }
    }
}

/// Which plane the calling thread serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plane {
    Urgent,
    Bulk,
}

#[derive(Debug, thiserror::Error)]
pub enum PriorityError {
    #[error("unknown priority mode {0:?}: use off, nice or realtime")]
    Unknown(String),
    #[error(
        "cannot give the {plane} plane {what}: {reason} (run as root, grant CAP_SYS_NICE, raise RLIMIT_NICE/RLIMIT_RTPRIO, or pass --priority off)"
    )]
    Denied { plane: &'static str, what: &'static str, reason: String },
}

/// Crossplatform priorities thread-priority maps onto niceness (0..=99 → +20..-20).
const URGENT_NICE: u8 = 75; // nice -11
const BULK_NICE: u8 = 25; // nice +9
const URGENT_RR: u8 = 10;

/// Puts the calling thread (and every thread it starts afterwards) on `plane`. Returns
/// what was applied, for the report.
pub fn enter(plane: Plane, mode: PriorityMode) -> Result<&'static str, PriorityError> {
    use thread_priority::NormalThreadSchedulePolicy::Other;
    let (policy, value, what) = match (mode, plane) {
        (PriorityMode::Off, _) => return Ok("unchanged"),
        (PriorityMode::Nice, Plane::Urgent) => (ThreadSchedulePolicy::Normal(Other), URGENT_NICE, "nice -11"),
        (PriorityMode::Realtime, Plane::Urgent) => {
            (ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::RoundRobin), URGENT_RR, "SCHED_RR 10")
        }
        (_, Plane::Bulk) => (ThreadSchedulePolicy::Normal(Other), BULK_NICE, "nice +9"),
    };
    let plane_name = if plane == Plane::Urgent { "urgent" } else { "bulk" };
    let denied = |reason: String| PriorityError::Denied { plane: plane_name, what, reason };
    let value = ThreadPriorityValue::try_from(value).map_err(|e| denied(e.to_string()))?;
    set_thread_priority_and_policy(thread_native_id(), ThreadPriority::Crossplatform(value), policy)
        .map_err(|e| denied(format!("{e:?}")))?;
    Ok(what)
}

/// [`enter`], logging instead of failing: a process without the privilege still runs,
/// with the bulk plane stepped down only. Returns what was applied.
pub fn enter_or_warn(plane: Plane, mode: PriorityMode) -> &'static str {
    match enter(plane, mode) {
        Ok(what) => what,
        Err(e) => {
            tracing::warn!(error = %e, "scheduling priority not applied");
            "denied"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nice_of_this_thread() -> i64 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
        // Field 19 (nice), counted after the parenthesised command name.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        rest.split_whitespace().nth(16).and_then(|v| v.parse().ok()).unwrap_or(i64::MIN)
    }

    #[test]
    fn bulk_steps_down_and_threads_started_after_inherit_it() {
        let (applied, own, child) = std::thread::spawn(|| {
            let applied = enter(Plane::Bulk, PriorityMode::Nice);
            let own = nice_of_this_thread();
            let child = std::thread::spawn(nice_of_this_thread).join().unwrap_or(i64::MIN);
            (applied.ok(), own, child)
        })
        .join()
        .unwrap_or((None, 0, 0));
        assert_eq!(applied, Some("nice +9"));
        assert_eq!((own, child), (9, 9));
    }

    #[test]
    fn off_changes_nothing_and_modes_parse() {
        assert_eq!(enter(Plane::Urgent, PriorityMode::Off).ok(), Some("unchanged"));
        assert_eq!("rt".parse::<PriorityMode>().ok(), Some(PriorityMode::Realtime));
        let e = "fast".parse::<PriorityMode>().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("use off, nice or realtime"), "{e}");
    }
}
