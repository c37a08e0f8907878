//! One Prometheus registry per process, for the vehicle, the workers and the monitor.
//!
//! The registry is `metrics-exporter-prometheus`'s, behind the `metrics` facade: the text
//! it renders has a HELP and a TYPE line for every family, counters end in `_total`,
//! latencies are histograms with [`BUCKETS_S`], label values are escaped. What a process
//! counts lives in its report (the figures `--json` prints at the end); once a second the
//! process publishes the report through its [`Catalogue`], where every series is declared
//! once with its kind and help, and [`Catalogue::undeclared`] finds a figure a report
//! gained without one. Histograms are fed sample by sample where latencies are seen.

mod catalogue;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use metrics::Label;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use serde::Serialize;
use serde_json::Value;

pub use catalogue::{DETECT_TO_RECOMMEND_SECONDS, MONITOR, VEHICLE, WORKER};

/// Histogram bucket bounds, seconds: a millisecond-deadline task path up to a second.
pub const BUCKETS_S: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5];

/// What a series is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (its name ends in `_total`).
    Counter,
    Gauge,
    /// Fed sample by sample (its name ends in `_seconds`).
    Histogram,
}

/// One series: where its values are in the report, its name, kind and help.
///
/// `path` is a JSON pointer whose `{label}` segments match any key of a map, the key
/// becoming that label's value (`/frames/{stream}`); `""` for a histogram, which is fed
/// directly.
#[derive(Debug, Clone, Copy)]
pub struct Series {
    pub path: &'static str,
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
}

/// The series one kind of process serves, and the report figures deliberately not
/// served (each with why).
#[derive(Debug)]
pub struct Catalogue {
    pub series: &'static [Series],
    pub not_served: &'static [(&'static str, &'static str)],
}

impl Catalogue {
    /// The series called `name`.
    pub fn get(&self, name: &str) -> Option<&Series> {
        self.series.iter().find(|s| s.name == name)
    }

    /// The JSON pointers of every number in `report` that no series and no
    /// `not_served` entry covers: a figure added to a report without a metric.
    pub fn undeclared(&self, report: &impl Serialize) -> Vec<String> {
        let Ok(v) = serde_json::to_value(report) else { return vec!["(the report does not serialize)".into()] };
        let mut out = Vec::new();
        numbers(&v, String::new(), &mut out);
        let covered = |p: &str| {
            let under = |root: &str| p == root || p.starts_with(&format!("{root}/"));
            self.series.iter().any(|s| !s.path.is_empty() && matches(s.path, p))
                || self.not_served.iter().any(|(r, _)| under(r))
        };
        out.retain(|p| !covered(p));
        out
    }

    /// Sets every series from `report`: counters to their running totals, gauges to
    /// their values.
    pub fn publish(&self, report: &impl Serialize) {
        let Ok(v) = serde_json::to_value(report) else { return };
        for s in self.series.iter().filter(|s| s.kind != Kind::Histogram) {
            let segments: Vec<&str> = s.path.split('/').skip(1).collect();
            walk(&v, &segments, &mut Vec::new(), &mut |labels, x| {
                if let Some(n) = x.as_f64().or_else(|| x.as_bool().map(|b| f64::from(u8::from(b)))) {
                    set(s, labels, n);
                }
            });
        }
    }

    /// Gives every series its HELP text (the registry prints it with the family).
    fn describe(&self) {
        for s in self.series {
            match s.kind {
                Kind::Counter => metrics::describe_counter!(s.name, s.help),
                Kind::Gauge => metrics::describe_gauge!(s.name, s.help),
                Kind::Histogram => metrics::describe_histogram!(s.name, metrics::Unit::Seconds, s.help),
            }
        }
    }
}

fn set(s: &Series, labels: Vec<Label>, n: f64) {
    match s.kind {
        Kind::Counter => metrics::counter!(s.name, labels).absolute(n.max(0.0) as u64),
        Kind::Gauge => metrics::gauge!(s.name, labels).set(n),
        Kind::Histogram => {}
    }
}

/// Calls `each` with every value `segments` reach under `v`, and the labels its
/// `{label}` segments took.
fn walk(v: &Value, segments: &[&str], labels: &mut Vec<Label>, each: &mut dyn FnMut(Vec<Label>, &Value)) {
    let Some((first, rest)) = segments.split_first() else {
        each(labels.clone(), v);
        return;
    };
    let Value::Object(m) = v else { return };
    match first.strip_prefix('{').and_then(|l| l.strip_suffix('}')) {
        Some(label) => {
            for (key, x) in m {
                labels.push(Label::new(label.to_string(), key.clone()));
                walk(x, rest, labels, each);
                labels.pop();
            }
        }
        None => {
            if let Some(x) = m.get(*first) {
                walk(x, rest, labels, each);
            }
        }
    }
}

/// Whether the concrete pointer `path` is one `pattern` reaches.
fn matches(pattern: &str, path: &str) -> bool {
    let (a, b): (Vec<&str>, Vec<&str>) = (pattern.split('/').collect(), path.split('/').collect());
    a.len() == b.len() && a.iter().zip(&b).all(|(p, x)| p == x || (p.starts_with('{') && p.ends_with('}')))
}

fn numbers(v: &Value, path: String, out: &mut Vec<String>) {
    match v {
        Value::Number(_) | Value::Bool(_) => out.push(path),
        Value::Object(m) => m.iter().for_each(|(k, x)| numbers(x, format!("{path}/{k}"), out)),
        Value::Array(a) => a.iter().enumerate().for_each(|(i, x)| numbers(x, format!("{path}/{i}"), out)),
        _ => {}
    }
}

/// Why the registry could not be installed.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the Prometheus registry: {0}")]
pub struct MetricsError(String);

/// The process's registry: renders the text `/metrics` serves. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    handle: PrometheusHandle,
    /// Per histogram fed from a latency store: the counts already fed, by value.
    fed: Arc<Mutex<HashMap<&'static str, HashMap<u64, u64>>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

static INSTALLED: OnceLock<PrometheusHandle> = OnceLock::new();

impl Metrics {
    /// Installs the process-wide registry (once; later calls share it) and describes
    /// `catalogues`' series.
    pub fn install(catalogues: &[&Catalogue]) -> Result<Self, MetricsError> {
        let handle = match INSTALLED.get() {
            Some(h) => h.clone(),
            None => {
                let builder = PrometheusBuilder::new()
                    .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &BUCKETS_S)
                    .map_err(|e| MetricsError(e.to_string()))?;
                let h = builder.install_recorder().map_err(|e| MetricsError(e.to_string()))?;
                INSTALLED.get_or_init(|| h).clone()
            }
        };
        catalogues.iter().for_each(|c| c.describe());
        Ok(Self { handle, fed: Arc::default() })
    }

    /// The registry in Prometheus text format.
    pub fn render(&self) -> String {
        self.handle.render()
    }

    /// Feeds histogram `name` what a latency store recorded since the last call:
    /// `recorded` is every value (seconds) with how often it was recorded so far.
    pub fn feed_histogram(&self, name: &'static str, recorded: &[(f64, u64)]) {
        let Ok(mut fed) = self.fed.lock() else { return };
        let seen = fed.entry(name).or_default();
        let h = metrics::histogram!(name);
        for (seconds, count) in recorded {
            let before = seen.insert(seconds.to_bits(), *count).unwrap_or(0);
            let new = count.saturating_sub(before);
            if new > 0 {
                h.record_many(*seconds, new as usize);
            }
        }
    }
}

#[cfg(test)]
mod tests;
