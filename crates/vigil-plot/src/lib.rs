//! `vigil-plot`: an RGB canvas with lines, boxes, discs and a 3×5 pixel font, written as
//! PNG. The simulator's snapshots, the vision plots and the replay timeline all draw
//! with it, so none of them has to link another for its pictures.

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("cannot write picture {path}: {message}")]
    Write { path: String, message: String },
}

/// An RGB8 image to draw on.
#[derive(Debug, Clone)]
pub struct Canvas {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<u8>,
}

impl Canvas {
    pub fn new(width: usize, height: usize, fill: [u8; 3]) -> Self {
        Self { width, height, pixels: fill.iter().copied().cycle().take(width * height * 3).collect() }
    }

    pub fn set(&mut self, x: i64, y: i64, c: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as usize) < self.width && (y as usize) < self.height {
            let i = (y as usize * self.width + x as usize) * 3;
            self.pixels[i..i + 3].copy_from_slice(&c);
        }
    }

    pub fn rect(&mut self, x0: f64, y0: f64, x1: f64, y1: f64, c: [u8; 3], thickness: i64) {
        let (x0, y0, x1, y1) = (x0.round() as i64, y0.round() as i64, x1.round() as i64 - 1, y1.round() as i64 - 1);
        for t in 0..thickness {
            for x in x0..=x1 {
                self.set(x, y0 + t, c);
                self.set(x, y1 - t, c);
            }
            for y in y0..=y1 {
                self.set(x0 + t, y, c);
                self.set(x1 - t, y, c);
            }
        }
    }

    pub fn line(&mut self, x0: f64, y0: f64, x1: f64, y1: f64, c: [u8; 3]) {
        let n = ((x1 - x0).abs().max((y1 - y0).abs()).ceil() as i64).max(1);
        for i in 0..=n {
            let t = i as f64 / n as f64;
            self.set((x0 + (x1 - x0) * t).round() as i64, (y0 + (y1 - y0) * t).round() as i64, c);
        }
    }

    pub fn disc(&mut self, cx: f64, cy: f64, r: f64, c: [u8; 3]) {
        let ri = r.ceil() as i64;
        for dy in -ri..=ri {
            for dx in -ri..=ri {
                if (dx * dx + dy * dy) as f64 <= r * r {
                    self.set(cx.round() as i64 + dx, cy.round() as i64 + dy, c);
                }
            }
        }
    }

    /// Draws upper-case text with a 3×5 pixel font, scaled.
    pub fn text(&mut self, x: i64, y: i64, s: &str, c: [u8; 3], scale: i64) {
        for (k, ch) in s.chars().enumerate() {
            let bits = glyph(ch);
            for row in 0..5 {
                for col in 0..3 {
                    if bits >> (14 - (row * 3 + col)) & 1 == 1 {
                        for sy in 0..scale {
                            for sx in 0..scale {
                                self.set(x + (k as i64 * 4 + col) * scale + sx, y + row * scale + sy, c);
                            }
                        }
                    }
                }
            }
        }
    }

    pub fn write_png(&self, path: &Path) -> Result<(), PlotError> {
        let err = |message: String| PlotError::Write { path: path.display().to_string(), message };
        let file = std::fs::File::create(path).map_err(|e| err(e.to_string()))?;
        let mut enc = png::Encoder::new(std::io::BufWriter::new(file), self.width as u32, self.height as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut w = enc.write_header().map_err(|e| err(e.to_string()))?;
        w.write_image_data(&self.pixels).map_err(|e| err(e.to_string()))
    }
}

fn glyph(c: char) -> u16 {
    match c.to_ascii_uppercase() {
        'A' => 0b010_101_111_101_101,
        'B' => 0b110_101_110_101_110,
        'C' => 0b011_100_100_100_011,
        'D' => 0b110_101_101_101_110,
        'E' => 0b111_100_110_100_111,
        'H' => 0b101_101_111_101_101,
        'I' => 0b111_010_010_010_111,
        'M' => 0b101_111_111_101_101,
        'N' => 0b110_101_101_101_101,
        'P' => 0b110_101_110_100_100,
        'R' => 0b110_101_110_101_101,
        'S' => 0b011_100_010_001_110,
        'T' => 0b111_010_010_010_010,
        'V' => 0b101_101_101_101_010,
        'Y' => 0b101_101_010_010_010,
        '0' => 0b111_101_101_101_111,
        '1' => 0b010_110_010_010_111,
        '2' => 0b110_001_010_100_111,
        '3' => 0b110_001_010_001_110,
        '4' => 0b101_101_111_001_001,
        '5' => 0b111_100_110_001_110,
        '6' => 0b011_100_111_101_111,
        '7' => 0b111_001_010_010_010,
        '8' => 0b111_101_111_101_111,
        '9' => 0b111_101_111_001_110,
        'F' => 0b111_100_110_100_100,
        'G' => 0b011_100_101_101_011,
        'J' => 0b001_001_001_101_010,
        'K' => 0b101_101_110_101_101,
        'L' => 0b100_100_100_100_111,
        'O' => 0b010_101_101_101_010,
        'Q' => 0b010_101_101_110_011,
        'U' => 0b101_101_101_101_111,
        'W' => 0b101_101_111_111_101,
        'X' => 0b101_101_010_101_101,
        'Z' => 0b111_001_010_100_111,
        ':' => 0b000_010_000_010_000,
        '/' => 0b001_001_010_100_100,
        '(' => 0b010_100_100_100_010,
        ')' => 0b010_001_001_001_010,
        '.' => 0b000_000_000_000_010,
        '-' => 0b000_000_111_000_000,
        '+' => 0b000_010_111_010_000,
        '=' => 0b000_111_000_111_000,
        '%' => 0b101_001_010_100_101,
        '<' => 0b001_010_100_010_001,
        '>' => 0b100_010_001_010_100,
        ',' => 0b000_000_000_010_100,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::glyph;

    /// Every character the plots print has a glyph, and no two glyphs look alike (a
    /// missing one draws as a blank, as '+' did on the latency histogram).
    #[test]
    fn the_pixel_font_covers_what_the_plots_print_and_tells_glyphs_apart() {
        let chars: Vec<char> = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:/().-+=%<>,".chars().collect();
        for &c in &chars {
            assert_ne!(glyph(c), 0, "no glyph for {c:?}");
            assert_eq!(glyph(c), glyph(c.to_ascii_lowercase()), "{c:?} differs by case");
        }
        for (i, &a) in chars.iter().enumerate() {
            for &b in &chars[i + 1..] {
                assert_ne!(glyph(a), glyph(b), "{a:?} and {b:?} share a glyph");
            }
        }
        assert_eq!(glyph(' '), 0);
    }
}
