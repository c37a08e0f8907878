//! Pictures: training curves and confusion matrices.

use std::path::Path;

use vigil_plot::Canvas;

use crate::train::EpochStats;
use crate::{Result, VisionError};

fn write(canvas: &Canvas, path: &Path) -> Result<()> {
    canvas.write_png(path).map_err(|e| VisionError::Io(e.to_string()))
}

type Metric = fn(&EpochStats) -> f32;

/// Loss (left panel) and accuracy (right panel) per epoch, train and validation.
pub fn training_curves(history: &[EpochStats], path: &Path) -> Result<()> {
    let (w, h) = (900usize, 380usize);
    let mut c = Canvas::new(w, h, [255, 255, 255]);
    let panels = [(40.0, "LOSS"), (490.0, "ACCURACY")];
    let max_loss = history.iter().map(|s| s.train_loss.max(s.validation_loss)).fold(0.1f32, f32::max) as f64;
    let n = history.len().max(2) as f64;
    for (k, (x0, title)) in panels.iter().enumerate() {
        let (pw, ph, y0) = (400.0, 280.0, 60.0);
        c.rect(*x0, y0, x0 + pw, y0 + ph, [120, 120, 120], 1);
        c.text(*x0 as i64, 20, title, [0, 0, 0], 3);
        let top = if k == 0 { max_loss } else { 1.0 };
        let label = if k == 0 { format!("{top:.2}") } else { "1.0".into() };
        c.text(*x0 as i64 + 4, y0 as i64 + 4, &label, [90, 90, 90], 2);
        let to = |i: usize, v: f64| (x0 + pw * i as f64 / (n - 1.0), y0 + ph * (1.0 - (v / top).clamp(0.0, 1.0)));
        let series: [(Metric, [u8; 3]); 2] = if k == 0 {
            [(|s| s.train_loss, [30, 90, 220]), (|s| s.validation_loss, [230, 120, 20])]
        } else {
            [(|s| s.train_accuracy, [30, 90, 220]), (|s| s.validation_accuracy, [230, 120, 20])]
        };
        for (f, col) in &series {
            for i in 1..history.len() {
                let (a, b) = (to(i - 1, f(&history[i - 1]) as f64), to(i, f(&history[i]) as f64));
                c.line(a.0, a.1, b.0, b.1, *col);
                c.line(a.0, a.1 + 1.0, b.0, b.1 + 1.0, *col);
            }
            for (i, s) in history.iter().enumerate() {
                let p = to(i, f(s) as f64);
                c.disc(p.0, p.1, 3.0, *col);
            }
        }
        c.text(*x0 as i64, (y0 + ph + 12.0) as i64, &format!("EPOCH 1-{}", history.len()), [90, 90, 90], 2);
    }
    c.text(600, 355, "TRAIN", [30, 90, 220], 2);
    c.text(700, 355, "VALIDATION", [230, 120, 20], 2);
    write(&c, path)
}

/// A confusion matrix as a shaded grid with counts; rows are the truth.
pub fn confusion_matrix(confusion: &[Vec<usize>], classes: &[String], title: &str, path: &Path) -> Result<()> {
    confusion_matrices(&[(title, confusion)], classes, path)
}

/// Confusion matrices side by side (a model comparison on the same data): rows are the
/// true class, columns the predicted one; each cell is shaded by its share of the row.
pub fn confusion_matrices(panels: &[(&str, &[Vec<usize>])], classes: &[String], path: &Path) -> Result<()> {
    let k = classes.len();
    let cell = 70usize;
    let (x0, y0) = (150usize, 80usize);
    let (pw, h) = (x0 + cell * k + 30, y0 + cell * k + 60);
    let mut c = Canvas::new(pw * panels.len().max(1), h, [255, 255, 255]);
    for (p, (title, confusion)) in panels.iter().enumerate() {
        let ox = p * pw;
        c.text((ox + 10) as i64, 10, title, [0, 0, 0], 3);
        c.text((ox + x0) as i64, 50, "PREDICTED", [80, 80, 80], 2);
        for (i, row) in confusion.iter().enumerate() {
            let total = row.iter().sum::<usize>().max(1) as f64;
            for (j, &v) in row.iter().enumerate() {
                let f = v as f64 / total;
                let shade = (255.0 * (1.0 - f)) as u8;
                let col = if i == j { [shade, 255 - (255 - shade) / 3, shade] } else { [255, shade, shade] };
                let (cx, cy) = (ox + x0 + j * cell, y0 + i * cell);
                for y in cy..cy + cell {
                    for x in cx..cx + cell {
                        c.set(x as i64, y as i64, col);
                    }
                }
                c.rect(cx as f64, cy as f64, (cx + cell) as f64, (cy + cell) as f64, [200, 200, 200], 1);
                let text = v.to_string();
                let ink = if f > 0.6 { [255, 255, 255] } else { [0, 0, 0] };
                c.text((cx + cell / 2) as i64 - text.len() as i64 * 4, (cy + cell / 2) as i64 - 5, &text, ink, 2);
            }
            let name: String = classes.get(i).map_or("?", |s| s.as_str()).chars().take(3).collect::<String>();
            let name = name.to_uppercase();
            c.text((ox + 20) as i64, (y0 + i * cell + cell / 2) as i64 - 5, &name, [0, 0, 0], 3);
            c.text((ox + x0 + i * cell + 12) as i64, (y0 + k * cell + 12) as i64, &name, [0, 0, 0], 3);
        }
    }
    write(&c, path)
}
