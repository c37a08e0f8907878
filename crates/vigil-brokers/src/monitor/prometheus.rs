//! The monitor's snapshot in Prometheus text format.

use std::fmt::Write as _;

use super::{BUCKETS_S, Monitor, Series};

/// A label value as Prometheus text wants it: `\`, `"` and newlines escaped. Vehicle ids
/// and the like come from Kafka headers, which anyone who can produce may set.
pub fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

impl Series {
    pub(super) fn prometheus(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (b, bound) in self.buckets.iter().zip(BUCKETS_S) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {b}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"+Inf\"}} {}\n{name}_sum {}\n{name}_count {}",
            self.count, self.sum_s, self.count
        );
    }
}

impl Monitor {
    /// The snapshot in Prometheus text format.
    pub fn prometheus(&self) -> String {
        let s = self.snapshot();
        let mut o = String::new();
        let family = |o: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        family(&mut o, "vigil_monitor_messages_total", "counter", "Telemetry messages read, per vehicle and stream.");
        for (v, streams) in &s.vehicles {
            let v = escape_label(v);
            for (st, x) in streams {
                let st = escape_label(st);
                let _ = writeln!(o, "vigil_monitor_messages_total{{vehicle=\"{v}\",stream=\"{st}\"}} {}", x.count);
            }
        }
        family(&mut o, "vigil_monitor_bytes_total", "counter", "Telemetry bytes read (as stored in Kafka).");
        for (v, streams) in &s.vehicles {
            let v = escape_label(v);
            for (st, x) in streams {
                let st = escape_label(st);
                let _ = writeln!(o, "vigil_monitor_bytes_total{{vehicle=\"{v}\",stream=\"{st}\"}} {}", x.bytes);
            }
        }
        family(&mut o, "vigil_monitor_stream_rate_hz", "gauge", "Messages per second of capture time.");
        for (v, streams) in &s.vehicles {
            let v = escape_label(v);
            for (st, x) in streams {
                let st = escape_label(st);
                let _ = writeln!(o, "vigil_monitor_stream_rate_hz{{vehicle=\"{v}\",stream=\"{st}\"}} {}", x.rate_hz);
            }
        }
        self.seen.ingest.prometheus(
            &mut o,
            "vigil_monitor_ingest_latency_seconds",
            "Capture to publish on the vehicle, telemetry.",
        );
        self.seen.end_to_end.prometheus(
            &mut o,
            "vigil_monitor_end_to_end_latency_seconds",
            "Frame capture to the recommendation back at the vehicle.",
        );
        family(&mut o, "vigil_monitor_tasks_total", "counter", "Obstacle tasks in the audit log.");
        let _ = writeln!(o, "vigil_monitor_tasks_total {}", s.tasks_seen);
        family(&mut o, "vigil_monitor_tasks_answered_total", "counter", "Tasks whose recommendation was read.");
        let _ = writeln!(o, "vigil_monitor_tasks_answered_total {}", s.tasks_answered);
        family(&mut o, "vigil_monitor_recommendations_total", "counter", "Recommendations read, per action.");
        for (a, n) in &s.by_action {
            let a = escape_label(a);
            let _ = writeln!(o, "vigil_monitor_recommendations_total{{action=\"{a}\"}} {n}");
        }
        family(&mut o, "vigil_monitor_recommended_class_total", "counter", "Recommendations per predicted class.");
        for (c, n) in &s.by_class {
            let c = escape_label(c);
            let _ = writeln!(o, "vigil_monitor_recommended_class_total{{class=\"{c}\"}} {n}");
        }
        if let Some(d) = &s.drift {
            family(&mut o, "vigil_monitor_class_drift_tvd", "gauge", "Predicted classes vs the training mix (0..1).");
            let _ = writeln!(o, "vigil_monitor_class_drift_tvd {}", d.class_tvd);
            family(&mut o, "vigil_monitor_low_confidence_share", "gauge", "Share of predictions below 0.6.");
            let _ = writeln!(o, "vigil_monitor_low_confidence_share {}", d.low_confidence_share);
        }
        family(&mut o, "vigil_monitor_consumer_lag", "gauge", "Records behind the high watermark, per topic.");
        for (t, n) in &s.lag {
            let t = escape_label(t);
            let _ = writeln!(o, "vigil_monitor_consumer_lag{{topic=\"{t}\"}} {n}");
        }
        family(&mut o, "vigil_monitor_decode_errors_total", "counter", "Records that did not decode.");
        let _ = writeln!(o, "vigil_monitor_decode_errors_total {}", s.decode_errors);
        o
    }
}

#[cfg(test)]
mod tests {
    use super::escape_label;

    #[test]
    fn a_hostile_label_value_cannot_end_its_label_or_line() {
        let v = escape_label("veh\"} 1\nvigil_fake 9\\");
        assert_eq!(v, "veh\\\"} 1\\nvigil_fake 9\\\\");
        let line = format!("m{{vehicle=\"{v}\"}} 1");
        assert_eq!(line.lines().count(), 1, "{line}");
    }
}
