//! The spectrogram picture of a clip: a linear-frequency STFT in dBFS with labelled axes and
//! a dB colour scale, the anomalous windows marked, the window scores against their
//! thresholds plotted under it and, when the profile has one, the spectrogram of its typical
//! normal sound beside it. Drawn with `plotters` (text with DejaVu Sans: Debian's
//! `fonts-dejavu-core`).

use std::path::Path;
use std::sync::OnceLock;

use plotters::prelude::*;
use plotters::style::colors::colormaps::{ColorMap, ViridisRGB};
use realfft::RealFftPlanner;

use super::EvidenceError;

/// Size of the PNG in pixels.
pub const WIDTH: u32 = 1200;
pub const HEIGHT: u32 = 720;
/// The colour scale's range in dBFS.
const DB_MIN: f64 = -110.0;
const DB_MAX: f64 = -10.0;

/// One scored window of the clip's span (stream seconds relative to nothing: the caller
/// gives times relative to the clip's first sample).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WindowScores {
    pub start_s: f64,
    pub end_s: f64,
    /// (scorer, score, threshold) of the scorers that scored the window.
    pub scores: Vec<(String, f64, f64)>,
}

impl WindowScores {
    pub fn anomalous(&self) -> bool {
        self.scores.iter().any(|(_, s, t)| s > t)
    }
}

/// Magnitudes in dBFS: `frames` columns of `bins` rows (row 0 = 0 Hz).
#[derive(Debug, Clone)]
pub struct Spectrogram {
    pub rate: u32,
    pub seconds: f64,
    pub frames: usize,
    pub bins: usize,
    pub db: Vec<f32>,
}

impl Spectrogram {
    /// A Hann-windowed STFT of `samples`, at most `max_frames` columns, pooled (max) to at most
    /// `max_bins` rows. A full-scale sine reads about 0 dBFS.
    pub fn compute(samples: &[f32], rate: u32, max_frames: usize, max_bins: usize) -> Self {
        let n = if rate >= 32_000 { 2048 } else { 1024 };
        let seconds = samples.len() as f64 / f64::from(rate.max(1));
        let hop = (samples.len().saturating_sub(n) / max_frames.max(1)).max(n / 4);
        let frames = if samples.len() < n {
            1
        } else {
            (samples.len() - n) / hop + 1
        };
        let half = n / 2;
        let pool = half.div_ceil(max_bins.max(1));
        let bins = half.div_ceil(pool);
        let window: Vec<f32> = (0..n)
            .map(|i| 0.5 - 0.5 * (2.0 * std::f32::consts::PI * i as f32 / n as f32).cos())
            .collect();
        let gain: f32 = window.iter().sum::<f32>() / 2.0;
        let fft = RealFftPlanner::<f32>::new().plan_fft_forward(n);
        let mut input = fft.make_input_vec();
        let mut spec = fft.make_output_vec();
        let mut db = vec![DB_MIN as f32; frames * bins];
        for f in 0..frames {
            let at = f * hop;
            for (i, x) in input.iter_mut().enumerate() {
                *x = samples.get(at + i).copied().unwrap_or(0.0) * window[i];
            }
            if fft.process(&mut input, &mut spec).is_err() {
                continue;
            }
            for b in 0..bins {
                let lo = b * pool;
                let hi = ((b + 1) * pool).min(half);
                let m = spec[lo..hi].iter().map(|c| c.norm()).fold(0.0f32, f32::max);
                db[f * bins + b] = 20.0 * (m / gain).max(1e-9).log10();
            }
        }
        Self {
            rate,
            seconds,
            frames,
            bins,
            db,
        }
    }

    /// Mean level (dBFS, power mean) between `lo_hz` and `hi_hz` in each column.
    pub fn band_db(&self, lo_hz: f64, hi_hz: f64) -> Vec<f64> {
        let hz_per_bin = f64::from(self.rate) / 2.0 / self.bins as f64;
        let b0 = (lo_hz / hz_per_bin).floor() as usize;
        let b1 = ((hi_hz / hz_per_bin).ceil() as usize).min(self.bins);
        (0..self.frames)
            .map(|f| {
                let p: f64 = (b0..b1)
                    .map(|b| 10f64.powf(f64::from(self.db[f * self.bins + b]) / 10.0))
                    .sum::<f64>()
                    / (b1 - b0).max(1) as f64;
                10.0 * p.max(1e-30).log10()
            })
            .collect()
    }
}

/// Registers DejaVu Sans with plotters once; the error says which package to install.
fn font() -> Result<(), String> {
    static FONT: OnceLock<Result<(), String>> = OnceLock::new();
    FONT.get_or_init(|| {
        let candidates = [
            std::env::var_os("EARSHOT_FONT").map(std::path::PathBuf::from),
            Some("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf".into()),
            Some("/usr/share/fonts/dejavu/DejaVuSans.ttf".into()),
            Some("/usr/share/fonts/TTF/DejaVuSans.ttf".into()),
        ];
        for p in candidates.into_iter().flatten() {
            if let Ok(bytes) = std::fs::read(&p) {
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                return plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
                    .map_err(|_| format!("{} is not a usable TrueType font", p.display()));
            }
        }
        Err("no DejaVu Sans font found for the spectrogram's labels: install `fonts-dejavu-core` or set EARSHOT_FONT to a .ttf file".into())
    })
    .clone()
}

/// What one picture shows.
pub struct Picture<'a> {
    pub title: &'a str,
    pub clip: &'a Spectrogram,
    /// Windows with times relative to the clip's first sample.
    pub windows: &'a [WindowScores],
    /// Seconds into the clip of the event's onset (a marker), if known.
    pub onset_s: Option<f64>,
    pub reference: Option<&'a Spectrogram>,
}

fn db_color(v: f64) -> RGBColor {
    ViridisRGB.get_color_normalized(v.clamp(DB_MIN, DB_MAX), DB_MIN, DB_MAX)
}

/// Draws `pic` as a PNG at `path`.
pub fn draw(pic: &Picture<'_>, path: &Path) -> Result<(), EvidenceError> {
    let err = |detail: String| EvidenceError::Image {
        path: path.to_owned(),
        detail,
    };
    font().map_err(err)?;
    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    render(pic, &root).map_err(|e| err(e.to_string()))?;
    root.present().map_err(|e| err(e.to_string()))?;
    Ok(())
}

/// One panel of a side-by-side picture: a spectrogram, its caption, and a span to mark with
/// a red strip along the top (seconds into the spectrogram).
pub struct Panel<'a> {
    pub caption: String,
    pub spec: &'a Spectrogram,
    pub mark: Option<(f64, f64)>,
}

/// Draws spectrograms side by side on one colour scale (`earshot search --spectrogram`: the
/// query beside its best catalog matches) as a PNG at `path`.
pub fn draw_panels(title: &str, panels: &[Panel<'_>], path: &Path) -> Result<(), EvidenceError> {
    let err = |detail: String| EvidenceError::Image {
        path: path.to_owned(),
        detail,
    };
    font().map_err(err)?;
    let height = (HEIGHT as f64 * 0.62) as u32;
    let root = BitMapBackend::new(path, (WIDTH, height)).into_drawing_area();
    let drawn = (|| -> DrawResult {
        root.fill(&WHITE)?;
        let area = root.titled(title, ("sans-serif", 20))?;
        let (specs, bar) = area.split_horizontally(WIDTH - 110);
        let areas = specs.split_evenly((1, panels.len().max(1)));
        for (a, p) in areas.iter().zip(panels) {
            let marks: Vec<WindowScores> = p
                .mark
                .map(|(start_s, end_s)| WindowScores {
                    start_s,
                    end_s,
                    scores: vec![("match".into(), 1.0, 0.0)],
                })
                .into_iter()
                .collect();
            spectrogram_chart(a, p.spec, &p.caption, &marks, None)?;
        }
        colour_bar(&bar)?;
        Ok(())
    })();
    drawn.map_err(|e| err(e.to_string()))?;
    root.present().map_err(|e| err(e.to_string()))?;
    Ok(())
}

type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn render<DB: DrawingBackend>(
    pic: &Picture<'_>,
    root: &DrawingArea<DB, plotters::coord::Shift>,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let root = root.titled(pic.title, ("sans-serif", 20))?;
    let (top, bottom) = root.split_vertically((HEIGHT as f64 * 0.62) as u32);
    let (specs, bar) = top.split_horizontally(WIDTH - 110);
    let (refarea, cliparea) = match pic.reference {
        Some(_) => {
            let (a, b) = specs.split_horizontally(WIDTH / 4);
            (Some(a), b)
        }
        None => (None, specs),
    };
    if let (Some(area), Some(r)) = (refarea, pic.reference) {
        spectrogram_chart(&area, r, "normal reference", &[], None)?;
    }
    spectrogram_chart(&cliparea, pic.clip, "clip", pic.windows, pic.onset_s)?;
    colour_bar(&bar)?;
    scores_chart(&bottom, pic)?;
    Ok(())
}

fn spectrogram_chart<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    s: &Spectrogram,
    caption: &str,
    windows: &[WindowScores],
    onset: Option<f64>,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let nyq = f64::from(s.rate) / 2.0;
    let dur = s.seconds.max(1e-3);
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 16))
        .margin(8)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..dur, 0f64..nyq)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc("time (s)")
        .y_desc("frequency (Hz)")
        .label_style(("sans-serif", 13))
        .draw()?;
    let dt = dur / s.frames as f64;
    let df = nyq / s.bins as f64;
    chart.draw_series((0..s.frames).flat_map(|f| {
        (0..s.bins).map(move |b| {
            let v = f64::from(s.db[f * s.bins + b]);
            Rectangle::new(
                [
                    (f as f64 * dt, b as f64 * df),
                    ((f + 1) as f64 * dt, (b + 1) as f64 * df),
                ],
                db_color(v).filled(),
            )
        })
    }))?;
    // Anomalous windows: a red strip along the top edge.
    chart.draw_series(windows.iter().filter(|w| w.anomalous()).map(|w| {
        Rectangle::new(
            [(w.start_s.max(0.0), nyq * 0.96), (w.end_s.min(dur), nyq)],
            RED.mix(0.8).filled(),
        )
    }))?;
    if let Some(t) = onset.filter(|t| (0.0..=dur).contains(t)) {
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(t, 0.0), (t, nyq)],
            WHITE.stroke_width(2),
        )))?;
    }
    Ok(())
}

fn colour_bar<DB: DrawingBackend>(area: &DrawingArea<DB, plotters::coord::Shift>) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let mut chart = ChartBuilder::on(area)
        .caption("dBFS", ("sans-serif", 14))
        .margin(8)
        .margin_top(30)
        .x_label_area_size(36)
        .y_label_area_size(48)
        .build_cartesian_2d(0f64..1f64, DB_MIN..DB_MAX)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .label_style(("sans-serif", 12))
        .draw()?;
    let steps = 100;
    let d = (DB_MAX - DB_MIN) / steps as f64;
    chart.draw_series((0..steps).map(|i| {
        let lo = DB_MIN + i as f64 * d;
        Rectangle::new([(0.0, lo), (1.0, lo + d)], db_color(lo + d / 2.0).filled())
    }))?;
    Ok(())
}

fn scores_chart<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    pic: &Picture<'_>,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let dur = pic.clip.seconds.max(1e-3);
    let mut hi = 0.0f64;
    let mut scorers: Vec<&str> = Vec::new();
    for w in pic.windows {
        for (name, s, t) in &w.scores {
            hi = hi.max(*s).max(*t);
            if !scorers.contains(&name.as_str()) {
                scorers.push(name);
            }
        }
    }
    let hi = if hi > 0.0 { hi * 1.1 } else { 1.0 };
    // Aligned with the clip's spectrogram above it (same left edge when there is a reference).
    let area = match pic.reference {
        Some(_) => area.split_horizontally(WIDTH / 4).1,
        None => area.clone(),
    };
    let (area, _) = area.split_horizontally(area.dim_in_pixel().0.saturating_sub(110));
    let mut chart = ChartBuilder::on(&area)
        .caption(
            "window scores (solid) vs thresholds (dashed); red: above threshold",
            ("sans-serif", 14),
        )
        .margin(8)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..dur, 0f64..hi)?;
    chart
        .configure_mesh()
        .x_desc("time (s)")
        .y_desc("score")
        .label_style(("sans-serif", 13))
        .draw()?;
    chart.draw_series(pic.windows.iter().filter(|w| w.anomalous()).map(|w| {
        Rectangle::new(
            [(w.start_s.max(0.0), 0.0), (w.end_s.min(dur), hi)],
            RED.mix(0.12).filled(),
        )
    }))?;
    let colours = [BLUE, MAGENTA, GREEN, CYAN];
    for (i, name) in scorers.iter().enumerate() {
        let c = colours[i % colours.len()];
        let mid = |w: &WindowScores| 0.5 * (w.start_s + w.end_s);
        let pts = |k: usize| {
            pic.windows
                .iter()
                .filter_map(|w| {
                    w.scores
                        .iter()
                        .find(|(n, _, _)| n == name)
                        .map(|s| (mid(w), if k == 0 { s.1 } else { s.2 }))
                })
                .collect::<Vec<_>>()
        };
        chart
            .draw_series(LineSeries::new(pts(0), c.stroke_width(2)))?
            .label(name.to_string())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2)));
        chart.draw_series(DashedLineSeries::new(pts(1), 6, 4, c.stroke_width(1)))?;
    }
    if !scorers.is_empty() {
        chart
            .configure_series_labels()
            .label_font(("sans-serif", 13))
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sine_shows_in_its_band_at_full_scale() {
        let rate = 16_000;
        let x: Vec<f32> = (0..rate * 2)
            .map(|i| (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / rate as f32).sin())
            .collect();
        let s = Spectrogram::compute(&x, rate, 400, 256);
        let band = s.band_db(950.0, 1050.0);
        let other = s.band_db(3000.0, 4000.0);
        assert!(band[band.len() / 2] > -12.0, "{}", band[band.len() / 2]);
        assert!(other[other.len() / 2] < -60.0, "{}", other[other.len() / 2]);
    }

    #[test]
    fn draws_a_png_of_the_stated_size() {
        let rate = 16_000;
        let x: Vec<f32> = (0..rate * 3)
            .map(|i| 0.1 * (i as f32 * 0.3).sin())
            .collect();
        let s = Spectrogram::compute(&x, rate, 300, 128);
        let w = vec![WindowScores {
            start_s: 1.0,
            end_s: 2.0,
            scores: vec![("centroid".into(), 0.5, 0.3)],
        }];
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.png");
        draw(
            &Picture {
                title: "t",
                clip: &s,
                windows: &w,
                onset_s: Some(1.5),
                reference: Some(&s),
            },
            &p,
        )
        .unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        let w = u32::from_be_bytes(bytes[16..20].try_into().unwrap());
        let h = u32::from_be_bytes(bytes[20..24].try_into().unwrap());
        assert_eq!((w, h), (WIDTH, HEIGHT));
    }
}
