//! Event-triggered recording (`vigil monitor --capture-on`): for each recommendation whose
//! action is a trigger, the seconds around it of that vehicle's drive are cut from Kafka
//! retention into an MCAP file of their own (frames inlined, the `vigil record` format),
//! listed in `index.json` beside them. A trigger inside a window already kept for the
//! same drive joins it (a hard brake is rarely alone), as Apollo's smart recorder does.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use serde::Serialize;
use vigil_brokers::BrokerConfig;
use vigil_brokers::monitor::{Monitor, Trigger};
use vigil_bus::embedded::recorder::RecordOptions;
use vigil_core::Nanos;
use vigil_replay::{Drive, StreamCounters};

/// One window kept, as `index.json` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct Captured {
    /// The drive's id (`vigil drives`), from the messages written.
    pub drive: String,
    pub vehicle: String,
    pub run: Option<String>,
    pub trigger: String,
    pub task_id: String,
    /// The trigger's capture time and the window kept around it, ns since the epoch.
    pub at_ns: Nanos,
    pub from_ns: Nanos,
    pub to_ns: Nanos,
    /// The file, relative to the index.
    pub file: String,
    pub messages: u64,
    pub frames: u64,
    /// Later triggers that fell inside this window.
    pub joined: u64,
}

/// The captures of one monitor.
#[derive(Debug)]
pub struct Capture {
    brokers: BrokerConfig,
    before: Nanos,
    after: Nanos,
    out: PathBuf,
    /// Triggers whose window has not passed yet, each with the later ones it took in.
    pending: Vec<(Trigger, u64)>,
    kept: Vec<Captured>,
}

/// A name from Kafka made safe for a file name (vehicle ids and run ids come from headers
/// anyone who may produce can set: no `/`, no `..`).
fn file_safe(s: &str) -> String {
    let safe: String =
        s.chars().take(64).map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    if safe.is_empty() { "_".into() } else { safe }
}

impl Capture {
    pub fn new(brokers: BrokerConfig, before: Nanos, after: Nanos, out: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(out)
            .with_context(|| format!("cannot create the capture directory {} (--out)", out.display()))?;
        Ok(Self { brokers, before, after, out: out.to_path_buf(), pending: Vec::new(), kept: Vec::new() })
    }

    /// The windows kept so far.
    pub fn kept(&self) -> &[Captured] {
        &self.kept
    }

    fn same_drive(a: &Trigger, vehicle: &str, run: &Option<String>) -> bool {
        a.vehicle == vehicle && &a.run == run
    }

    /// Takes a trigger: a new window, or one more in a window already kept or waiting.
    pub fn offer(&mut self, t: Trigger) {
        let after = self.after;
        let pending =
            self.pending.iter_mut().find(|(p, _)| Self::same_drive(p, &t.vehicle, &t.run) && t.at_ns < p.at_ns + after);
        if let Some((_, joined)) = pending {
            *joined += 1;
            return;
        }
        let covering = self.kept.iter_mut().find(|k| k.vehicle == t.vehicle && k.run == t.run && t.at_ns < k.to_ns);
        if let Some(k) = covering {
            k.joined += 1;
            return;
        }
        tracing::info!(trigger = %t.trigger, vehicle = %t.vehicle, task = %t.task_id, "capture triggered");
        self.pending.push((t, 0));
    }

    /// Cuts every window whose end the monitor has seen pass in its vehicle's telemetry
    /// (all of them when `stopping`), and rewrites the index.
    pub fn cut_due(&mut self, monitor: &Monitor, stopping: bool) -> anyhow::Result<()> {
        let (due, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending).into_iter().partition(|(t, _)| {
            stopping || monitor.newest_capture(&t.vehicle).is_some_and(|n| n >= t.at_ns + self.after)
        });
        self.pending = waiting;
        if due.is_empty() {
            return Ok(());
        }
        for (t, joined) in due {
            match self.cut(&t) {
                Ok(mut c) => {
                    c.joined = joined;
                    eprintln!(
                        "vigil monitor: kept {} around {} of {} ({} messages)",
                        c.file, c.trigger, c.vehicle, c.messages
                    );
                    self.kept.push(c);
                }
                Err(e) => tracing::error!(error = %format!("{e:#}"), task = %t.task_id, "capture failed"),
            }
        }
        self.write_index()
    }

    fn cut(&self, t: &Trigger) -> anyhow::Result<Captured> {
        let (from, to) = (t.at_ns.saturating_sub(self.before), t.at_ns.saturating_add(self.after));
        let run = t.run.as_deref();
        let drive = Drive::from_kafka(&self.brokers, Some(&t.vehicle), run, Some(from), Some(to))
            .with_context(|| format!("reading {}'s drive around {} from Kafka", t.vehicle, t.at_ns))?;
        let name = format!(
            "{}-{}-{}-{}.mcap",
            file_safe(&t.vehicle),
            file_safe(run.unwrap_or("run")),
            file_safe(&t.trigger),
            t.at_ns
        );
        let path = self.out.join(&name);
        let written = drive
            .write_mcap(&path, RecordOptions::default(), &Arc::new(StreamCounters::default()))
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(Captured {
            drive: written.drive,
            vehicle: t.vehicle.clone(),
            run: t.run.clone(),
            trigger: t.trigger.clone(),
            task_id: t.task_id.clone(),
            at_ns: t.at_ns,
            from_ns: from,
            to_ns: to,
            file: name,
            messages: written.messages,
            frames: written.frames,
            joined: 0,
        })
    }

    /// `index.json`, replaced whole (written beside, then renamed: a reader never sees
    /// half of it).
    fn write_index(&self) -> anyhow::Result<()> {
        let path = self.out.join("index.json");
        let tmp = self.out.join(".index.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&self.kept)?)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::file_safe;

    #[test]
    fn names_from_kafka_cannot_leave_the_capture_directory() {
        assert_eq!(file_safe("veh-0000"), "veh-0000");
        assert_eq!(file_safe("../../etc/passwd"), "______etc_passwd");
        assert_eq!(file_safe(""), "_");
        assert_eq!(file_safe(&"a".repeat(500)).len(), 64);
    }
}
