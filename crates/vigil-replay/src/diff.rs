//! The replay against the recording: the digest of the replayed recommendations, what
//! changed, and both scored against ground truth.

use std::collections::BTreeMap;

use vigil_core::Digest;
use vigil_proto::v1;

use crate::collect::{Collected, Replayed};
use crate::report::{Change, GroundTruthDiff, ReplayDiff, Score};
use crate::score::{class_name, score, task_order};

/// The digest of the replayed recommendations (task id, action, class, in task order)
/// and their count per action.
pub(crate) fn digest(replayed: &Replayed) -> (String, BTreeMap<String, u64>) {
    let mut digest = Digest::new();
    let mut by_action: BTreeMap<String, u64> =
        vigil_core::policy::Action::ALL.iter().map(|a| (a.name().to_string(), 0)).collect();
    for r in replayed.values() {
        let action = vigil_proto::action_from_proto(r.action()).name();
        digest.update(r.task_id.as_bytes());
        digest.update(action.as_bytes());
        digest.update(class_name(r.class()).as_bytes());
        *by_action.entry(action.to_string()).or_default() += 1;
    }
    (digest.hex(), by_action)
}

fn label(r: &v1::Recommendation) -> String {
    format!("{} {}", vigil_proto::action_from_proto(r.action()).name(), class_name(r.class()))
}

/// Compares every task id seen then or now.
pub(crate) fn diff(c: &Collected) -> ReplayDiff {
    let truth_for = |id: &str| c.side.truths.of(id);
    let mut diff = ReplayDiff {
        recorded: c.side.recorded.len() as u64,
        compared: 0,
        changed: 0,
        only_recorded: 0,
        only_replayed: 0,
        examples: Vec::new(),
        ground_truth: None,
    };
    let mut all_ids: Vec<(String, u64, String)> =
        c.replayed.keys().cloned().chain(c.side.recorded.keys().map(|k| task_order(k))).collect();
    all_ids.sort();
    all_ids.dedup();
    let mut gtd = GroundTruthDiff {
        recorded: Score::default(),
        replayed: Score::default(),
        new_misses: 0,
        new_false_alarms: 0,
        fixed_misses: 0,
        fixed_false_alarms: 0,
    };
    for key in &all_ids {
        let id = key.2.as_str();
        let (then, now) = (c.side.recorded.get(id), c.replayed.get(key));
        compare(&mut diff, id, then, now, || truth_for(id));
        if let Some(truth) = truth_for(id) {
            against_truth(&mut gtd, &truth, then, now);
        }
    }
    if c.side.truths.any() {
        diff.ground_truth = Some(gtd);
    }
    diff
}

fn compare(
    diff: &mut ReplayDiff,
    id: &str,
    then: Option<&v1::Recommendation>,
    now: Option<&v1::Recommendation>,
    truth: impl Fn() -> Option<String>,
) {
    match (then, now) {
        (Some(a), Some(b)) => {
            diff.compared += 1;
            if label(a) != label(b) {
                diff.changed += 1;
                if diff.examples.len() < 20 {
                    diff.examples.push(Change {
                        task_id: id.into(),
                        recorded: Some(label(a)),
                        replayed: Some(label(b)),
                        truth: truth(),
                    });
                }
            }
        }
        (Some(_), None) => diff.only_recorded += 1,
        (None, Some(_)) => diff.only_replayed += 1,
        (None, None) => {}
    }
}

/// Scores then and now against `truth`, and counts misses and false alarms that came or
/// went.
fn against_truth(
    gtd: &mut GroundTruthDiff,
    truth: &str,
    then: Option<&v1::Recommendation>,
    now: Option<&v1::Recommendation>,
) {
    let outcome = |r: Option<&v1::Recommendation>, s: &mut Score| {
        r.map(|r| {
            let p = class_name(r.class());
            score(s, truth, p);
            (truth != "none" && p == "none", truth == "none" && p != "none")
        })
    };
    let then_o = outcome(then, &mut gtd.recorded);
    let now_o = outcome(now, &mut gtd.replayed);
    if let (Some((miss_then, fa_then)), Some((miss_now, fa_now))) = (then_o, now_o) {
        gtd.new_misses += u64::from(miss_now && !miss_then);
        gtd.fixed_misses += u64::from(miss_then && !miss_now);
        gtd.new_false_alarms += u64::from(fa_now && !fa_then);
        gtd.fixed_false_alarms += u64::from(fa_then && !fa_now);
    }
}
