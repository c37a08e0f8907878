//! Live counters of the vehicle and worker processes in Prometheus text format.
//!
//! A process renders its report (the same figures `--json` prints at the end) once a
//! second: every number in it becomes a gauge named by its path
//! (`vigil_vehicle_tasks_completed`, `vigil_worker_amqp_dead_lettered`, …; a map's keys
//! become a label), and latency samples become a histogram. The CLI serves the text.

use std::fmt::Write as _;
use std::sync::{Arc, RwLock};

use serde::Serialize;
use vigil_brokers::monitor::prometheus::escape_label as escape;

/// Histogram bucket bounds, seconds.
const BUCKETS_S: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0];

/// The latest rendering; cheap to clone and share with the HTTP endpoint.
#[derive(Debug, Clone, Default)]
pub struct MetricsText(Arc<RwLock<String>>);

impl MetricsText {
    pub fn set(&self, text: String) {
        if let Ok(mut t) = self.0.write() {
            *t = text;
        }
    }

    pub fn get(&self) -> String {
        self.0.read().map(|t| t.clone()).unwrap_or_default()
    }

    /// Renders `report` under `prefix`, plus a latency histogram of `latency_s`.
    /// `latency_s`: latencies in seconds, each with how many times it was seen.
    pub fn set_report(&self, prefix: &str, report: &impl Serialize, latency_s: &[(f64, u64)]) {
        let Ok(v) = serde_json::to_value(report) else { return };
        let mut out = String::new();
        flatten(&mut out, prefix, &v, None);
        if !latency_s.is_empty() {
            histogram(&mut out, &format!("{prefix}_task_latency_seconds"), latency_s);
        }
        self.set(out);
    }
}

fn sanitize(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect()
}

/// Every number under `v` as a gauge. The keys of the maps whose keys are data (`frames`
/// per stream, `by_action`, `log` per topic) become a `key` label.
fn flatten(out: &mut String, name: &str, v: &serde_json::Value, label: Option<(&str, &str)>) {
    match v {
        serde_json::Value::Number(n) => {
            let Some(x) = n.as_f64() else { return };
            let labels = label.map(|(k, v)| format!("{{{k}=\"{}\"}}", escape(v))).unwrap_or_default();
            let _ = writeln!(out, "{name}{labels} {x}");
        }
        serde_json::Value::Bool(b) => {
            let _ = writeln!(out, "{name} {}", u8::from(*b));
        }
        serde_json::Value::Object(m) => {
            let data_keys = ["_frames", "_by_action", "_log"].iter().any(|k| name.ends_with(k));
            for (k, x) in m {
                if data_keys && x.is_number() {
                    if label.is_none() {
                        flatten(out, name, x, Some(("key", k)));
                    }
                } else {
                    flatten(out, &format!("{name}_{}", sanitize(k)), x, label);
                }
            }
        }
        _ => {}
    }
}

fn histogram(out: &mut String, name: &str, samples_s: &[(f64, u64)]) {
    let _ = writeln!(out, "# TYPE {name} histogram");
    for bound in BUCKETS_S {
        let n: u64 = samples_s.iter().filter(|(s, _)| *s <= bound).map(|(_, n)| n).sum();
        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {n}");
    }
    let sum: f64 = samples_s.iter().map(|(s, n)| s * *n as f64).sum();
    let count: u64 = samples_s.iter().map(|(_, n)| n).sum();
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}\n{name}_sum {sum}\n{name}_count {count}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Inner {
        completed: u64,
        outstanding: i64,
    }

    #[derive(Serialize)]
    struct Report {
        mode: &'static str,
        tasks: Inner,
        frames: std::collections::BTreeMap<String, u64>,
    }

    #[test]
    fn numbers_become_gauges_map_keys_labels_and_latency_a_histogram() {
        let m = MetricsText::default();
        let r = Report {
            mode: "vehicle",
            tasks: Inner { completed: 7, outstanding: -1 },
            frames: [("lidar".to_string(), 100), ("camera".to_string(), 200)].into(),
        };
        m.set_report("vigil_vehicle", &r, &[(0.004, 1), (0.03, 1), (2.0, 1)]);
        let t = m.get();
        assert!(t.contains("vigil_vehicle_tasks_completed 7\n"), "{t}");
        assert!(t.contains("vigil_vehicle_tasks_outstanding -1\n"), "{t}");
        assert!(t.contains("vigil_vehicle_frames{key=\"lidar\"} 100\n"), "{t}");
        assert!(t.contains("vigil_vehicle_task_latency_seconds_bucket{le=\"0.005\"} 1\n"), "{t}");
        assert!(t.contains("vigil_vehicle_task_latency_seconds_bucket{le=\"0.05\"} 2\n"), "{t}");
        assert!(t.contains("vigil_vehicle_task_latency_seconds_bucket{le=\"+Inf\"} 3\n"), "{t}");
        assert!(t.contains("vigil_vehicle_task_latency_seconds_count 3\n"), "{t}");
        assert!(!t.contains("mode"), "strings are not metrics: {t}");
    }
}
