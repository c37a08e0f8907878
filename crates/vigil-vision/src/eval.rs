//! Evaluation on fresh simulator crops, with a colour-only baseline beside the CNN.

use serde::Serialize;
use std::collections::BTreeMap;
use vigil_core::ObstacleClass;

use crate::Result;
use crate::model::Recogniser;
use crate::preprocess::INPUT_SIZE;
use crate::train::Example;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClassScores {
    pub precision: f32,
    pub recall: f32,
    pub support: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub samples: usize,
    pub accuracy: f32,
    pub per_class: BTreeMap<String, ClassScores>,
    /// confusion[true][predicted], rows and columns in `classes` order.
    pub confusion: Vec<Vec<usize>>,
    pub classes: Vec<String>,
    pub baseline_accuracy: f32,
}

/// Confusion matrix, accuracy and per-class precision/recall of predictions.
pub fn score(
    truth: &[ObstacleClass],
    predicted: &[ObstacleClass],
) -> (f32, Vec<Vec<usize>>, BTreeMap<String, ClassScores>) {
    let k = ObstacleClass::ALL.len();
    let mut confusion = vec![vec![0usize; k]; k];
    for (t, p) in truth.iter().zip(predicted) {
        confusion[t.index()][p.index()] += 1;
    }
    let correct: usize = (0..k).map(|i| confusion[i][i]).sum();
    let accuracy = correct as f32 / truth.len().max(1) as f32;
    let per_class = ObstacleClass::ALL
        .iter()
        .map(|c| {
            let i = c.index();
            let tp = confusion[i][i] as f32;
            let predicted: usize = (0..k).map(|r| confusion[r][i]).sum();
            let support: usize = confusion[i].iter().sum();
            let scores = ClassScores {
                precision: if predicted > 0 { tp / predicted as f32 } else { 0.0 },
                recall: if support > 0 { tp / support as f32 } else { 0.0 },
                support,
            };
            (c.name().to_string(), scores)
        })
        .collect();
    (accuracy, confusion, per_class)
}

fn mean_colour(e: &Example) -> [f32; 3] {
    let n = INPUT_SIZE * INPUT_SIZE;
    let mut m = [0f32; 3];
    for (c, slot) in m.iter_mut().enumerate() {
        *slot = e.crop.0[c * n..(c + 1) * n].iter().sum::<f32>() / n as f32;
    }
    m
}

/// Colour-only baseline: each crop's mean colour, nearest class centroid (centroids fit
/// on `fit`, scored on `test`).
pub fn colour_baseline(fit: &[Example], test: &[Example]) -> f32 {
    let k = ObstacleClass::ALL.len();
    let mut sums = vec![[0f32; 3]; k];
    let mut counts = vec![0usize; k];
    for e in fit {
        let m = mean_colour(e);
        let i = e.class.index();
        for c in 0..3 {
            sums[i][c] += m[c];
        }
        counts[i] += 1;
    }
    let centroids: Vec<[f32; 3]> = sums
        .iter()
        .zip(&counts)
        .map(|(s, &n)| {
            let n = n.max(1) as f32;
            [s[0] / n, s[1] / n, s[2] / n]
        })
        .collect();
    let correct = test
        .iter()
        .filter(|e| {
            let m = mean_colour(e);
            let best = (0..k)
                .min_by(|&a, &b| {
                    let d = |c: &[f32; 3]| (0..3).map(|j| (c[j] - m[j]).powi(2)).sum::<f32>();
                    d(&centroids[a]).total_cmp(&d(&centroids[b]))
                })
                .unwrap_or(0);
            best == e.class.index()
        })
        .count();
    correct as f32 / test.len().max(1) as f32
}

/// Classifies `test` with `model` and scores it; the baseline centroids are fit on `fit`.
pub fn evaluate(model: &Recogniser, fit: &[Example], test: &[Example]) -> Result<EvalReport> {
    let mut predicted = Vec::with_capacity(test.len());
    for chunk in test.chunks(64) {
        let crops: Vec<_> = chunk.iter().map(|e| e.crop.clone()).collect();
        predicted.extend(model.classify(&crops)?.into_iter().map(|p| p.class));
    }
    let truth: Vec<ObstacleClass> = test.iter().map(|e| e.class).collect();
    let (accuracy, confusion, per_class) = score(&truth, &predicted);
    Ok(EvalReport {
        samples: test.len(),
        accuracy,
        per_class,
        confusion,
        classes: ObstacleClass::ALL.iter().map(|c| c.name().to_string()).collect(),
        baseline_accuracy: colour_baseline(fit, test),
    })
}
