use metrics_exporter_prometheus::PrometheusBuilder;
use serde::Serialize;

use super::*;

#[derive(Serialize)]
struct Tasks {
    raised: u64,
    outstanding: i64,
    rejected_replies: std::collections::BTreeMap<String, u64>,
}

#[derive(Serialize)]
struct Report {
    mode: &'static str,
    frames: std::collections::BTreeMap<String, u64>,
    tasks: Tasks,
    gaps: u64,
}

const TEST: Catalogue = Catalogue {
    series: &[
        Series { path: "", name: "t_latency_seconds", kind: Kind::Histogram, help: "Latency." },
        Series { path: "/frames/{stream}", name: "t_frames_total", kind: Kind::Counter, help: "Frames." },
        Series { path: "/tasks/raised", name: "t_tasks_raised_total", kind: Kind::Counter, help: "Raised." },
        Series { path: "/tasks/outstanding", name: "t_tasks_outstanding", kind: Kind::Gauge, help: "Open." },
        Series {
            path: "/tasks/rejected_replies/{reason}",
            name: "t_replies_rejected_total",
            kind: Kind::Counter,
            help: "Refused \"replies\".\nPer reason.",
        },
    ],
    not_served: &[],
};

fn report(raised: u64) -> Report {
    Report {
        mode: "vehicle",
        frames: [("lidar".to_string(), 100), ("camera".to_string(), 200)].into(),
        tasks: Tasks { raised, outstanding: -1, rejected_replies: [("veh\"} 1\nfake_metric 9".to_string(), 2)].into() },
        gaps: 3,
    }
}

/// Renders what `f` records, with the registry every process installs.
fn rendered(f: impl FnOnce(&Metrics)) -> String {
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &BUCKETS_S)
        .unwrap()
        .build_recorder();
    let m = Metrics { handle: recorder.handle(), fed: Arc::default() };
    metrics::with_local_recorder(&recorder, || {
        TEST.describe();
        f(&m)
    });
    m.render()
}

#[test]
fn a_report_becomes_typed_described_families() {
    let t = rendered(|m| {
        TEST.publish(&report(7));
        TEST.publish(&report(9));
        m.feed_histogram("t_latency_seconds", &[(0.004, 1), (0.03, 1)]);
        // The store now holds one more 4 ms sample and a 2 s one: only those are new.
        m.feed_histogram("t_latency_seconds", &[(0.004, 2), (0.03, 1), (2.0, 1)]);
    });
    eprintln!("{t}");
    for line in [
        "# HELP t_tasks_raised_total Raised.\n",
        "# TYPE t_tasks_raised_total counter\n",
        "t_tasks_raised_total 9\n",
        "# TYPE t_tasks_outstanding gauge\n",
        "t_tasks_outstanding -1\n",
        "t_frames_total{stream=\"lidar\"} 100\n",
        "t_frames_total{stream=\"camera\"} 200\n",
        "# TYPE t_latency_seconds histogram\n",
        "t_latency_seconds_bucket{le=\"0.005\"} 2\n",
        "t_latency_seconds_bucket{le=\"0.05\"} 3\n",
        "t_latency_seconds_bucket{le=\"+Inf\"} 4\n",
        "t_latency_seconds_count 4\n",
    ] {
        assert!(t.contains(line), "missing `{}` in:\n{t}", line.trim());
    }
    assert!(!t.contains("mode"), "strings are not metrics: {t}");
    assert!(!t.contains("gaps"), "only declared figures are served: {t}");
    // A hostile label value stays inside its quotes and its line.
    let hostile = t.lines().find(|l| l.starts_with("t_replies_rejected_total{")).expect("the labelled series");
    assert!(hostile.ends_with("\"} 2"), "{hostile}");
    assert!(!t.lines().any(|l| l.starts_with("fake_metric")), "{t}");
}

#[test]
fn a_figure_without_a_series_is_found() {
    assert_eq!(TEST.undeclared(&report(1)), vec!["/gaps".to_string()]);
    let with_gaps = Catalogue { series: TEST.series, not_served: &[("/gaps", "a test figure")] };
    assert!(with_gaps.undeclared(&report(1)).is_empty());
}

#[test]
fn every_served_name_follows_the_prometheus_conventions() {
    let mut names = std::collections::HashSet::new();
    for c in [&VEHICLE, &WORKER, &MONITOR] {
        for s in c.series {
            assert!(names.insert(s.name), "{} is declared twice", s.name);
            assert!(s.name.starts_with("vigil_"), "{}", s.name);
            assert!(s.name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'), "{}", s.name);
            assert_eq!(
                s.kind == Kind::Counter,
                s.name.ends_with("_total"),
                "{}: counters and only counters end in _total",
                s.name
            );
            assert_eq!(s.kind == Kind::Histogram, s.path.is_empty(), "{}", s.name);
            if s.kind == Kind::Histogram {
                assert!(s.name.ends_with("_seconds"), "{}: histograms are latencies in seconds", s.name);
            }
            assert!(s.help.len() > 10 && s.help.ends_with('.'), "{}: {}", s.name, s.help);
        }
    }
}
