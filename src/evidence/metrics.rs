//! Metric series → a compact summary the model can read (min, max, mean, p95, last,
//! change points, windows that differ from the baseline), and PNG charts for a
//! reader. Shared by Prometheus and the APM sources.
//!
//! Change points come from binary segmentation on the mean: a split is kept when the
//! shift is large against the series' own noise (estimated from first differences,
//! so a step does not inflate it) and each side has a few points. Windows that
//! differ from the baseline compare each point to the first quarter of the series,
//! which in an incident query is usually the "before".

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use plotters::prelude::*;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("chart drawing failed: {0}")]
    Draw(String),
    #[error("PNG encoding failed: {0}")]
    Encode(String),
    #[error("chart is {size} bytes, above the {cap}-byte cap")]
    TooLarge { size: usize, cap: usize },
}

pub type Result<T> = std::result::Result<T, Error>;

/// Points one series keeps for summaries; longer inputs are rejected upstream.
pub const MAX_POINTS: usize = 20_000;
/// Change points reported per series.
pub const MAX_CHANGE_POINTS: usize = 4;
/// Anomalous windows reported per series.
pub const MAX_WINDOWS: usize = 4;
/// A shift is a change point when it exceeds this many noise standard deviations.
const SHIFT_SIGMAS: f64 = 6.0;
/// Points each side of a change point needs.
const MIN_SEGMENT: usize = 3;
/// A point differs from the baseline beyond this many robust deviations …
const WINDOW_SIGMAS: f64 = 5.0;
/// … and by at least this share of the baseline level (so tiny absolute noise on a
/// flat line does not count).
const WINDOW_MIN_RELATIVE: f64 = 0.10;
/// Bytes one PNG chart may take.
pub const MAX_CHART_BYTES: usize = 512 * 1024;

/// One series: labels and (unix seconds, value) points in time order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Series {
    pub labels: BTreeMap<String, String>,
    pub points: Vec<(i64, f64)>,
}

impl Series {
    pub fn named(labels: BTreeMap<String, String>) -> Self {
        Series {
            labels,
            points: Vec::new(),
        }
    }

    /// `{job="api", instance="a:9100"}`-style name; `__name__` first without braces.
    pub fn display_name(&self) -> String {
        let name = self.labels.get("__name__").cloned().unwrap_or_default();
        let rest: Vec<String> = self
            .labels
            .iter()
            .filter(|(k, _)| k.as_str() != "__name__")
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect();
        if rest.is_empty() {
            if name.is_empty() {
                "{}".into()
            } else {
                name
            }
        } else {
            format!("{name}{{{}}}", rest.join(", "))
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChangePoint {
    /// First timestamp of the new level.
    pub at: i64,
    pub before_mean: f64,
    pub after_mean: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Window {
    pub start: i64,
    pub end: i64,
    pub points: usize,
    pub mean: f64,
    /// The value furthest from the baseline.
    pub peak: f64,
    pub baseline: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub series: String,
    pub points: usize,
    pub first: Option<i64>,
    pub last_at: Option<i64>,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    pub p95: f64,
    pub last: f64,
    pub change_points: Vec<ChangePoint>,
    pub windows: Vec<Window>,
    /// NaN/Inf samples skipped.
    pub non_finite: usize,
}

impl Summary {
    /// How much this series matters for an incident: big level shifts and long
    /// deviations rank first. Used to pick which series get a chart.
    pub fn salience(&self) -> f64 {
        let scale = self.max.abs().max(self.min.abs()).max(1e-12);
        let shifts: f64 = self
            .change_points
            .iter()
            .map(|c| (c.after_mean - c.before_mean).abs() / scale)
            .sum();
        let windows: f64 = self
            .windows
            .iter()
            .map(|w| (w.mean - w.baseline).abs() / scale * w.points as f64)
            .sum::<f64>()
            / self.points.max(1) as f64;
        shifts + windows
    }
}

/// Summarises one series.
pub fn summarize(series: &Series) -> Summary {
    let finite: Vec<(i64, f64)> = series
        .points
        .iter()
        .copied()
        .filter(|(_, v)| v.is_finite())
        .take(MAX_POINTS)
        .collect();
    let non_finite = series.points.iter().filter(|(_, v)| !v.is_finite()).count();
    let values: Vec<f64> = finite.iter().map(|(_, v)| *v).collect();
    let n = values.len();
    let (min, max, mean) = if n == 0 {
        (f64::NAN, f64::NAN, f64::NAN)
    } else {
        let min = values.iter().copied().fold(f64::INFINITY, f64::min);
        let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (min, max, values.iter().sum::<f64>() / n as f64)
    };
    Summary {
        series: series.display_name(),
        points: n,
        first: finite.first().map(|(t, _)| *t),
        last_at: finite.last().map(|(t, _)| *t),
        min,
        max,
        mean,
        p95: percentile(&values, 0.95),
        last: values.last().copied().unwrap_or(f64::NAN),
        change_points: change_points(&finite),
        windows: windows(&finite),
        non_finite,
    }
}

/// Nearest-rank percentile; NaN for no values.
pub fn percentile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn median(values: &[f64]) -> f64 {
    percentile(values, 0.5)
}

/// Noise of a series from its first differences (robust to level shifts): MAD of
/// the differences scaled to a standard deviation of the values.
fn noise_sigma(values: &[f64]) -> f64 {
    if values.len() < 3 {
        return 0.0;
    }
    let diffs: Vec<f64> = values.windows(2).map(|w| w[1] - w[0]).collect();
    let m = median(&diffs);
    let mad: Vec<f64> = diffs.iter().map(|d| (d - m).abs()).collect();
    // MAD → sigma (1.4826), differences have √2 the spread of the values.
    let robust = median(&mad) * 1.4826 / std::f64::consts::SQRT_2;
    // The MAD is zero for regular patterns (a sawtooth, values on a grid); the RMS of
    // the differences with the largest tenth dropped (where the steps are) covers them.
    let mut magnitudes: Vec<f64> = diffs.iter().map(|d| d.abs()).collect();
    magnitudes.sort_by(f64::total_cmp);
    let kept = &magnitudes[..(magnitudes.len() * 9).div_ceil(10)];
    let rms = (kept.iter().map(|d| d * d).sum::<f64>() / kept.len().max(1) as f64).sqrt();
    robust.max(rms / std::f64::consts::SQRT_2)
}

fn change_points(points: &[(i64, f64)]) -> Vec<ChangePoint> {
    let values: Vec<f64> = points.iter().map(|(_, v)| *v).collect();
    if values.len() < 2 * MIN_SEGMENT {
        return Vec::new();
    }
    let range = values.iter().copied().fold(f64::NEG_INFINITY, f64::max)
        - values.iter().copied().fold(f64::INFINITY, f64::min);
    // A flat or stepwise-flat series has zero noise; any shift above a sliver of the
    // range is then real.
    let sigma = noise_sigma(&values)
        .max(range * 1e-6)
        .max(f64::MIN_POSITIVE);
    let mut splits = Vec::new();
    let mut stack = vec![(0usize, values.len())];
    while let Some((start, end)) = stack.pop() {
        if splits.len() >= MAX_CHANGE_POINTS || end - start < 2 * MIN_SEGMENT {
            continue;
        }
        let segment = &values[start..end];
        let total: f64 = segment.iter().sum();
        let mut left = 0.0;
        let mut best: Option<(usize, f64)> = None;
        for k in 1..segment.len() {
            left += segment[k - 1];
            if k < MIN_SEGMENT || segment.len() - k < MIN_SEGMENT {
                continue;
            }
            let (nl, nr) = (k as f64, (segment.len() - k) as f64);
            let shift = (left / nl - (total - left) / nr).abs();
            // The t-statistic of the split with the noise as the standard deviation.
            let stat = shift / sigma * (nl * nr / (nl + nr)).sqrt();
            if best.is_none_or(|(_, s)| stat > s) {
                best = Some((k, stat));
            }
        }
        let Some((k, stat)) = best else { continue };
        let (nl, nr) = (k as f64, (segment.len() - k) as f64);
        let before = segment[..k].iter().sum::<f64>() / nl;
        let after = segment[k..].iter().sum::<f64>() / nr;
        // Significant, and large enough against the noise point by point too (a long
        // series makes tiny drifts significant).
        if stat >= SHIFT_SIGMAS * 2.0 && (after - before).abs() >= SHIFT_SIGMAS * sigma {
            splits.push(start + k);
            stack.push((start, start + k));
            stack.push((start + k, end));
        }
    }
    splits.sort_unstable();
    // Means between consecutive splits, so each change reports its own two levels.
    let mut bounds = vec![0];
    bounds.extend(&splits);
    bounds.push(values.len());
    let means: Vec<f64> = bounds
        .windows(2)
        .map(|b| values[b[0]..b[1]].iter().sum::<f64>() / (b[1] - b[0]).max(1) as f64)
        .collect();
    splits
        .iter()
        .enumerate()
        .map(|(i, &split)| ChangePoint {
            at: points[split].0,
            before_mean: means[i],
            after_mean: means[i + 1],
        })
        .collect()
}

fn windows(points: &[(i64, f64)]) -> Vec<Window> {
    let n = points.len();
    if n < 8 {
        return Vec::new();
    }
    let baseline_len = (n / 4).max(MIN_SEGMENT);
    let baseline_values: Vec<f64> = points[..baseline_len].iter().map(|(_, v)| *v).collect();
    let base = median(&baseline_values);
    let deviations: Vec<f64> = baseline_values.iter().map(|v| (v - base).abs()).collect();
    let spread = (median(&deviations) * 1.4826)
        .max(noise_sigma(&baseline_values))
        .max(base.abs() * 1e-9);
    let threshold = (WINDOW_SIGMAS * spread).max(base.abs() * WINDOW_MIN_RELATIVE);
    let mut out: Vec<Window> = Vec::new();
    let mut current: Option<(usize, usize)> = None;
    for (i, (_, v)) in points.iter().enumerate().skip(baseline_len) {
        let off = (v - base).abs() > threshold && (v - base).abs() > 0.0;
        current = match (current, off) {
            (None, true) => Some((i, i)),
            (Some((s, _)), true) => Some((s, i)),
            // One quiet point inside a deviation does not end it.
            (Some((s, e)), false) if i == e + 1 => Some((s, e)),
            (Some((s, e)), false) => {
                out.push(window(points, s, e, base));
                None
            }
            (None, false) => None,
        };
    }
    if let Some((s, e)) = current {
        out.push(window(points, s, e, base));
    }
    // The largest deviations first, then in time order for reading.
    out.sort_by(|a, b| {
        let area = |w: &Window| (w.mean - w.baseline).abs() * w.points as f64;
        area(b).total_cmp(&area(a))
    });
    out.truncate(MAX_WINDOWS);
    out.sort_by_key(|w| w.start);
    out
}

fn window(points: &[(i64, f64)], start: usize, end: usize, base: f64) -> Window {
    let slice = &points[start..=end];
    let mean = slice.iter().map(|(_, v)| v).sum::<f64>() / slice.len() as f64;
    let peak = slice
        .iter()
        .map(|(_, v)| *v)
        .max_by(|a, b| (a - base).abs().total_cmp(&(b - base).abs()))
        .unwrap_or(mean);
    Window {
        start: slice[0].0,
        end: slice[slice.len() - 1].0,
        points: slice.len(),
        mean,
        peak,
        baseline: base,
    }
}

/// The evidence shape of metric series, shared by every metric source:
/// `{"kind": "metric_series", "step_seconds": 60, "series": [{"labels": {…},
/// "values": [[unix_seconds, value], …]}]}`. Non-finite values are written as strings
/// (`"NaN"`, `"+Inf"`) since JSON has no such numbers.
pub fn series_to_json(series: &[Series], step_seconds: i64) -> serde_json::Value {
    use serde_json::{json, Value};
    let items: Vec<Value> = series
        .iter()
        .map(|s| {
            let values: Vec<Value> = s
                .points
                .iter()
                .map(|(t, v)| {
                    let value = serde_json::Number::from_f64(*v)
                        .map(Value::Number)
                        .unwrap_or_else(|| Value::String(non_finite_text(*v).into()));
                    json!([t, value])
                })
                .collect();
            json!({"labels": s.labels, "values": values})
        })
        .collect();
    json!({"kind": SERIES_KIND, "step_seconds": step_seconds, "series": items})
}

/// The `kind` marker of [`series_to_json`].
pub const SERIES_KIND: &str = "metric_series";

fn non_finite_text(v: f64) -> &'static str {
    if v.is_nan() {
        "NaN"
    } else if v > 0.0 {
        "+Inf"
    } else {
        "-Inf"
    }
}

/// Reads back [`series_to_json`]; None for any other JSON.
pub fn series_from_json(value: &serde_json::Value) -> Option<Vec<Series>> {
    use serde_json::Value;
    if value.get("kind").and_then(Value::as_str) != Some(SERIES_KIND) {
        return None;
    }
    let mut out = Vec::new();
    for item in value.get("series")?.as_array()? {
        let labels = item
            .get("labels")?
            .as_object()?
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
            .collect();
        let mut points = Vec::new();
        for p in item.get("values")?.as_array()? {
            let t = p.get(0)?.as_i64()?;
            let v = match p.get(1)? {
                Value::Number(n) => n.as_f64()?,
                Value::String(s) => match s.as_str() {
                    "+Inf" => f64::INFINITY,
                    "-Inf" => f64::NEG_INFINITY,
                    _ => f64::NAN,
                },
                _ => return None,
            };
            points.push((t, v));
        }
        out.push(Series { labels, points });
    }
    Some(out)
}

/// A timestamp for the model, in UTC.
pub fn ts(t: i64) -> String {
    DateTime::<Utc>::from_timestamp(t, 0)
        .map(|d| d.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_else(|| t.to_string())
}

/// A number in 4 significant digits.
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    if v == 0.0 {
        return "0".into();
    }
    let magnitude = v.abs().log10().floor() as i32;
    if (-3..6).contains(&magnitude) {
        let decimals = (3 - magnitude).max(0) as usize;
        let text = format!("{v:.decimals$}");
        if text.contains('.') {
            text.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            text
        }
    } else {
        format!("{v:.3e}")
    }
}

/// The summary in a few lines of text.
pub fn render(summary: &Summary) -> String {
    let mut out = format!(
        "{}: {} pts {}..{}; min {} max {} mean {} p95 {} last {}",
        summary.series,
        summary.points,
        summary.first.map(ts).unwrap_or_default(),
        summary.last_at.map(ts).unwrap_or_default(),
        num(summary.min),
        num(summary.max),
        num(summary.mean),
        num(summary.p95),
        num(summary.last),
    );
    if summary.non_finite > 0 {
        out.push_str(&format!("; {} NaN/Inf skipped", summary.non_finite));
    }
    for c in &summary.change_points {
        out.push_str(&format!(
            "\n  change at {}: {} → {}",
            ts(c.at),
            num(c.before_mean),
            num(c.after_mean)
        ));
    }
    for w in &summary.windows {
        out.push_str(&format!(
            "\n  differs from baseline {} {}..{} ({} pts): mean {} peak {}",
            num(w.baseline),
            ts(w.start),
            ts(w.end),
            w.points,
            num(w.mean),
            num(w.peak)
        ));
    }
    out
}

/// Series by salience, rendered until `budget` characters; the rest are counted.
pub fn render_all(summaries: &[Summary], budget: usize) -> String {
    let mut order: Vec<&Summary> = summaries.iter().collect();
    order.sort_by(|a, b| b.salience().total_cmp(&a.salience()));
    let mut out = String::new();
    let mut shown = 0;
    for s in &order {
        let text = render(s);
        if !out.is_empty() && out.len() + text.len() + 80 > budget {
            break;
        }
        out.push_str(&text);
        out.push('\n');
        shown += 1;
    }
    if shown < order.len() {
        out.push_str(&format!(
            "… {} more series with smaller changes not shown\n",
            order.len() - shown
        ));
    }
    out
}

const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// A line chart of up to six series as PNG bytes. It carries no text (no font is
/// needed on the machine); the attachment's description names the series, in
/// palette order (blue, red, green, orange, purple, brown), and the time range.
pub fn chart_png(series: &[&Series], width: u32, height: u32) -> Result<Vec<u8>> {
    let mut buffer = vec![0u8; (width * height * 3) as usize];
    let points: Vec<(i64, f64)> = series
        .iter()
        .flat_map(|s| s.points.iter().copied())
        .filter(|(_, v)| v.is_finite())
        .collect();
    let (t0, t1) = points.iter().fold((i64::MAX, i64::MIN), |(a, b), (t, _)| {
        (a.min(*t), b.max(*t))
    });
    let (v0, v1) = points
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), (_, v)| {
            (a.min(*v), b.max(*v))
        });
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| Error::Draw(e.to_string()))?;
        if !points.is_empty() {
            let pad = ((v1 - v0) * 0.05).max(1e-9);
            let t1 = if t1 > t0 { t1 } else { t0 + 1 };
            let mut chart = ChartBuilder::on(&root)
                .margin(12)
                .build_cartesian_2d(t0..t1, (v0 - pad)..(v1 + pad))
                .map_err(|e| Error::Draw(e.to_string()))?;
            // Grid lines only: labels need a font.
            chart
                .configure_mesh()
                .disable_x_mesh()
                .y_labels(5)
                .x_labels(2)
                .light_line_style(RGBColor(235, 235, 235))
                .bold_line_style(RGBColor(210, 210, 210))
                .axis_style(RGBColor(120, 120, 120))
                .draw()
                .map_err(|e| Error::Draw(e.to_string()))?;
            for (i, s) in series.iter().take(PALETTE.len()).enumerate() {
                chart
                    .draw_series(LineSeries::new(
                        s.points.iter().copied().filter(|(_, v)| v.is_finite()),
                        PALETTE[i].stroke_width(2),
                    ))
                    .map_err(|e| Error::Draw(e.to_string()))?;
            }
        }
        root.present().map_err(|e| Error::Draw(e.to_string()))?;
    }
    let mut png_bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut png_bytes, width, height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder
            .write_header()
            .map_err(|e| Error::Encode(e.to_string()))?;
        writer
            .write_image_data(&buffer)
            .map_err(|e| Error::Encode(e.to_string()))?;
    }
    if png_bytes.len() > MAX_CHART_BYTES {
        return Err(Error::TooLarge {
            size: png_bytes.len(),
            cap: MAX_CHART_BYTES,
        });
    }
    Ok(png_bytes)
}

/// Names of the palette colours, in order, for chart descriptions.
pub const PALETTE_NAMES: [&str; 6] = ["blue", "red", "green", "orange", "purple", "brown"];

#[cfg(test)]
mod tests {
    use super::*;

    fn series(values: &[f64]) -> Series {
        Series {
            labels: BTreeMap::from([("__name__".to_string(), "errors".to_string())]),
            points: values
                .iter()
                .enumerate()
                .map(|(i, v)| (1_700_000_000 + i as i64 * 60, *v))
                .collect(),
        }
    }

    /// Deterministic noise in [-0.5, 0.5), so tests need no RNG crate.
    fn wobble(i: usize) -> f64 {
        let mut x = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        x ^= x >> 31;
        x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x ^= x >> 29;
        (x % 10_000) as f64 / 10_000.0 - 0.5
    }

    #[test]
    fn a_step_is_one_change_point_and_one_window() {
        let values: Vec<f64> = (0..120)
            .map(|i| if i < 80 { 10.0 } else { 50.0 } + wobble(i))
            .collect();
        let s = summarize(&series(&values));
        assert_eq!(s.change_points.len(), 1, "{s:?}");
        assert_eq!(s.change_points[0].at, 1_700_000_000 + 80 * 60);
        assert!((s.change_points[0].before_mean - 10.0).abs() < 0.5);
        assert!((s.change_points[0].after_mean - 50.0).abs() < 0.5);
        assert_eq!(s.windows.len(), 1, "{s:?}");
        assert_eq!(s.windows[0].start, 1_700_000_000 + 80 * 60);
        assert_eq!(s.windows[0].points, 40);
        assert!(s.p95 > 49.0 && s.max < 51.0 && s.min > 9.0);
    }

    #[test]
    fn noise_alone_changes_nothing() {
        let values: Vec<f64> = (0..300).map(|i| 100.0 + 3.0 * wobble(i)).collect();
        let s = summarize(&series(&values));
        assert!(s.change_points.is_empty(), "{s:?}");
        assert!(s.windows.is_empty(), "{s:?}");
    }

    #[test]
    fn a_spike_is_a_window_not_a_level_change() {
        let mut values: Vec<f64> = (0..100).map(|i| 5.0 + 0.2 * wobble(i)).collect();
        for v in values.iter_mut().skip(60).take(5) {
            *v = 40.0;
        }
        let s = summarize(&series(&values));
        assert_eq!(s.windows.len(), 1, "{s:?}");
        assert_eq!(s.windows[0].points, 5);
        assert_eq!(s.windows[0].peak, 40.0);
    }

    #[test]
    fn empty_and_nan_series_do_not_panic() {
        let s = summarize(&series(&[]));
        assert_eq!(s.points, 0);
        let s = summarize(&series(&[f64::NAN, 1.0, f64::INFINITY]));
        assert_eq!((s.points, s.non_finite), (1, 2));
        assert!(render(&s).contains("2 NaN/Inf skipped"));
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(num(0.000123456), "1.235e-4");
        assert_eq!(num(12.5), "12.5");
        assert_eq!(num(1234.5678), "1235");
        assert_eq!(num(50.0), "50");
        assert_eq!(num(2.5e9), "2.500e9");
    }

    #[test]
    fn json_round_trip() {
        let s = series(&[1.0, f64::NAN, 3.5]);
        let back = series_from_json(&series_to_json(std::slice::from_ref(&s), 60));
        let back = back.unwrap_or_default();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].labels, s.labels);
        assert_eq!(back[0].points[2], s.points[2]);
        assert!(back[0].points[1].1.is_nan());
        assert!(series_from_json(&serde_json::json!({"series": []})).is_none());
    }

    #[test]
    fn chart_is_a_small_png() {
        let a = series(&(0..200).map(|i| (i % 17) as f64).collect::<Vec<_>>());
        let b = series(&[1.0, 2.0, 3.0]);
        let png = chart_png(&[&a, &b], 800, 300).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert!(png.len() < 64 * 1024, "{}", png.len());
        let empty = chart_png(&[], 100, 50).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&empty[..4], b"\x89PNG");
    }
}
