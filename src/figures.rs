//! The paper's figures as PNG files (plotters, bitmap backend, embedded DejaVu font): class counts
//! before and after augmentation (Fig. 3), a sample beat per class (Fig. 4), training curves
//! (Fig. 5) and the confusion matrix.

use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::{Error, Result};

const FONT: &str = "sans-serif";
const SIZE: (u32, u32) = (900, 560);
const PALETTE: [RGBColor; 5] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
];

/// Plotters' errors are generic over the backend; they become [`Error::Figure`] naming the file.
fn fail(path: &Path) -> impl Fn(Box<dyn std::error::Error + '_>) -> Error + '_ {
    move |e| Error::Figure {
        file: path.display().to_string(),
        what: e.to_string(),
    }
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// A white canvas; the DejaVu font is registered on first use.
fn canvas(path: &Path, size: (u32, u32)) -> Result<Area<'_>> {
    static FONT_ONCE: Once = Once::new();
    FONT_ONCE.call_once(|| {
        plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular())
            .unwrap_or_else(|_| panic!("the embedded DejaVu font parses"));
    });
    let root = BitMapBackend::new(path, size).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(path)(Box::new(e)))?;
    Ok(root)
}

/// Fig. 3: beats per class in the training part before and after augmentation (log scale).
pub fn class_counts(path: &Path, names: &[&str], before: &[usize], after: &[usize]) -> Result<()> {
    let root = canvas(path, SIZE)?;
    let err = fail(path);
    let top = before
        .iter()
        .chain(after)
        .copied()
        .max()
        .unwrap_or(1)
        .max(1) as f64
        * 3.0;
    let n = names.len();
    let mut chart = ChartBuilder::on(&root)
        .caption("Training beats per class", (FONT, 24))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.5f64..n as f64 - 0.5, (0.8f64..top).log_scale())
        .map_err(|e| err(Box::new(e)))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n + 1)
        .x_label_formatter(&|x| label_at(names, *x))
        .y_desc("beats (log scale)")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style((FONT, 16))
        .draw()
        .map_err(|e| err(Box::new(e)))?;
    for (k, (counts, title)) in [
        (before, "before augmentation"),
        (after, "after augmentation"),
    ]
    .into_iter()
    .enumerate()
    {
        let color = PALETTE[k];
        let offset = k as f64 * 0.4 - 0.4;
        chart
            .draw_series(counts.iter().enumerate().map(|(i, &c)| {
                let x = i as f64 + offset;
                Rectangle::new([(x, 0.8), (x + 0.38, (c as f64).max(0.8))], color.filled())
            }))
            .map_err(|e| err(Box::new(e)))?
            .label(format!("{title} ({} beats)", counts.iter().sum::<usize>()))
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 12, y + 6)], color.filled()));
    }
    legend(&mut chart, path, SeriesLabelPosition::UpperRight)?;
    root.present().map_err(|e| err(Box::new(e)))
}

/// The class name at an integer tick, nothing between ticks.
fn label_at(names: &[&str], x: f64) -> String {
    let i = x.round();
    if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < names.len() {
        names[i as usize].to_string()
    } else {
        String::new()
    }
}

fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    path: &Path,
    position: SeriesLabelPosition,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    chart
        .configure_series_labels()
        .label_font((FONT, 16))
        .border_style(BLACK)
        .background_style(WHITE.mix(0.9))
        .position(position)
        .draw()
        .map_err(|e| fail(path)(Box::new(e)))
}

/// Fig. 4: one beat of each class (187 samples at 125 Hz), a panel each.
pub fn sample_beats(path: &Path, beats: &[(&str, &[f32])]) -> Result<()> {
    let root = canvas(path, (1200, 320))?;
    let err = fail(path);
    let panels = root.split_evenly((1, beats.len().max(1)));
    for (k, ((name, beat), panel)) in beats.iter().zip(&panels).enumerate() {
        let seconds = beat.len() as f64 / 125.0;
        let mut chart = ChartBuilder::on(panel)
            .caption(format!("class {name}"), (FONT, 20))
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(if k == 0 { 40 } else { 20 })
            .build_cartesian_2d(0f64..seconds, -0.05f64..1.05)
            .map_err(|e| err(Box::new(e)))?;
        chart
            .configure_mesh()
            .x_labels(4)
            .y_labels(3)
            .x_desc("s")
            .label_style((FONT, 13))
            .draw()
            .map_err(|e| err(Box::new(e)))?;
        chart
            .draw_series(LineSeries::new(
                beat.iter()
                    .enumerate()
                    .map(|(i, &v)| (i as f64 / 125.0, f64::from(v))),
                PALETTE[k % PALETTE.len()].stroke_width(2),
            ))
            .map_err(|e| err(Box::new(e)))?;
    }
    root.present().map_err(|e| err(Box::new(e)))
}

/// One named curve over epochs 1..; `None` points are left out.
pub struct Curve<'a> {
    pub name: &'a str,
    pub values: Vec<Option<f64>>,
}

/// Fig. 5: losses (left) and accuracies (right) per epoch.
pub fn training_curves(path: &Path, losses: &[Curve], accuracies: &[Curve]) -> Result<()> {
    let root = canvas(path, (1200, 480))?;
    let err = fail(path);
    let halves = root.split_evenly((1, 2));
    for (k, (curves, title)) in [(losses, "loss"), (accuracies, "accuracy")]
        .into_iter()
        .enumerate()
    {
        let epochs = curves
            .iter()
            .map(|c| c.values.len())
            .max()
            .unwrap_or(1)
            .max(1);
        let points = curves
            .iter()
            .flat_map(|c| c.values.iter().flatten().copied());
        let (lo, hi) = points.fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
        let (lo, hi) = if lo > hi { (0.0, 1.0) } else { (lo, hi) };
        let pad = ((hi - lo) * 0.08).max(1e-3);
        // Headroom above the curves for the legend (a row per curve), so it covers none of them.
        let headroom = (hi - lo).max(1e-3) * (0.12 + 0.11 * curves.len() as f64);
        let mut chart = ChartBuilder::on(&halves[k])
            .caption(title, (FONT, 22))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(60)
            .build_cartesian_2d(0.5f64..epochs as f64 + 0.5, lo - pad..hi + headroom)
            .map_err(|e| err(Box::new(e)))?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .x_labels(epochs.min(13))
            .x_label_formatter(&|x| format!("{x:.0}"))
            .label_style((FONT, 14))
            .draw()
            .map_err(|e| err(Box::new(e)))?;
        for (j, curve) in curves.iter().enumerate() {
            let color = PALETTE[j % PALETTE.len()];
            let pts: Vec<(f64, f64)> = curve
                .values
                .iter()
                .enumerate()
                .filter_map(|(i, v)| v.map(|v| (i as f64 + 1.0, v)))
                .collect();
            chart
                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                .map_err(|e| err(Box::new(e)))?
                .label(curve.name)
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2))
                });
            chart
                .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled())))
                .map_err(|e| err(Box::new(e)))?;
        }
        legend(&mut chart, path, SeriesLabelPosition::UpperRight)?;
    }
    root.present().map_err(|e| err(Box::new(e)))
}

/// The confusion matrix: cells shaded by the share of their row (recall), labelled with counts.
pub fn confusion(path: &Path, names: &[&str], counts: &[Vec<usize>]) -> Result<()> {
    let root = canvas(path, (640, 600))?;
    let err = fail(path);
    let n = names.len();
    let mut chart = ChartBuilder::on(&root)
        .caption("Confusion matrix (rows: truth)", (FONT, 22))
        .margin(16)
        .x_label_area_size(50)
        .y_label_area_size(50)
        .build_cartesian_2d(-0.5f64..n as f64 - 0.5, n as f64 - 0.5..-0.5f64)
        .map_err(|e| err(Box::new(e)))?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_labels(n + 1)
        .y_labels(n + 1)
        .x_label_formatter(&|x| label_at(names, *x))
        .y_label_formatter(&|y| label_at(names, *y))
        .x_desc("predicted")
        .y_desc("truth")
        .label_style((FONT, 16))
        .draw()
        .map_err(|e| err(Box::new(e)))?;
    for (t, row) in counts.iter().enumerate() {
        let total = row.iter().sum::<usize>().max(1) as f64;
        for (p, &c) in row.iter().enumerate() {
            let share = c as f64 / total;
            let shade = (255.0 * (1.0 - 0.85 * share)) as u8;
            let (x, y) = (p as f64, t as f64);
            chart
                .draw_series([Rectangle::new(
                    [(x - 0.5, y - 0.5), (x + 0.5, y + 0.5)],
                    RGBColor(shade, shade, 255).filled(),
                )])
                .map_err(|e| err(Box::new(e)))?;
            let color = if share > 0.6 { WHITE } else { BLACK };
            chart
                .draw_series([Text::new(
                    format!("{c}"),
                    (x - 0.2, y - 0.08),
                    (FONT, 18).into_font().color(&color),
                )])
                .map_err(|e| err(Box::new(e)))?;
        }
    }
    root.present().map_err(|e| err(Box::new(e)))
}
