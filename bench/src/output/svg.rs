//! The SVG chart of a run: a header (with one colour key for every panel), then one row per
//! scenario with
//!
//! - on the left, throughput bars per implementation (ops/s, or payload MB/s where the scenario
//!   moves payload), with the matching raw loopback reference as a grey bar where there is one;
//! - on the right, each implementation's latency distribution as a percentile curve (min, p10
//!   … p99.9, max) on a logarithmic µs axis, plus dashed reference lines (for
//!   `heartbeat-under-load`: the idle `heartbeat-seq` p99 of each implementation);
//! - under both, notes (ratios, errors).
//!
//! [`build_chart`] fills a [`Chart`] from the results; the rest of this module only draws it.
//! plotters' SVG backend writes text as `<text>` elements and lays it out with its built-in size
//! estimate, so no font library is involved.

use std::fmt::Display;
use std::path::Path;

use plotters::coord::Shift;
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use raftnet_bench::measure::CURVE_PERCENTILES;
use raftnet_bench::raw::Raw;
use raftnet_bench::scenario::Scenario;

use super::{header_lines, num, opt, si, times};
use crate::results::{Metrics, Results, Subject, raw_reference, under_load, vs_tokio};

/// The whole chart.
#[derive(Debug, Clone, Default)]
pub(crate) struct Chart {
    /// The first header line.
    pub(crate) title: String,
    /// Further header lines (placement, window, raw references…).
    pub(crate) subtitle: Vec<String>,
    /// One row per scenario.
    pub(crate) panels: Vec<Panel>,
}

/// One scenario's row.
#[derive(Debug, Clone, Default)]
pub(crate) struct Panel {
    /// The scenario name.
    pub(crate) scenario: String,
    /// The unit of the bars (`ops/s`, `MB/s`).
    pub(crate) throughput_unit: String,
    /// Throughput bars, left to right.
    pub(crate) bars: Vec<Bar>,
    /// Latency percentile curves, one per implementation.
    pub(crate) curves: Vec<Curve>,
    /// Horizontal reference lines on the latency plot.
    pub(crate) reference_lines: Vec<RefLine>,
    /// Lines of text under the row.
    pub(crate) notes: Vec<String>,
}

/// One throughput bar.
#[derive(Debug, Clone)]
pub(crate) struct Bar {
    /// The implementation (`raftnet`, `tokio`, `raw`…): the label and the colour.
    pub(crate) series: String,
    /// The value; `None` draws no bar (an error).
    pub(crate) value: Option<f64>,
}

/// A latency distribution.
#[derive(Debug, Clone)]
pub(crate) struct Curve {
    /// The implementation: the label and the colour.
    pub(crate) series: String,
    /// Microseconds at each of [`CURVE_PERCENTILES`].
    pub(crate) points_us: Vec<Option<f64>>,
}

/// A horizontal line on the latency plot: the idle heartbeat-seq p99 of an implementation, on
/// heartbeat-under-load's panel (the chart's colour key explains dashed lines; no label is drawn).
#[derive(Debug, Clone)]
pub(crate) struct RefLine {
    /// The implementation it belongs to (its colour).
    pub(crate) series: String,
    /// Where, in µs.
    pub(crate) value_us: f64,
}

/// The chart of an invocation: the header and the raw references on top, a panel per scenario.
pub(crate) fn build_chart(results: &Results) -> Chart {
    let mut subtitle = header_lines(results);
    let raw_text: Vec<String> = Raw::EVERY
        .iter()
        .filter_map(|&raw| {
            let m = results.raw(raw)?;
            Some(match raw {
                Raw::Bulk => format!("raw bulk 1 MiB writes: {} MB/s", si(m.mb_per_sec)),
                Raw::PingPong => format!(
                    "raw 64 B ping-pong: {} RTT/s, p50 {} µs, p99 {} µs",
                    si(m.ops_per_sec),
                    opt(m.p50_us, num),
                    opt(m.p99_us, num)
                ),
                Raw::ClusterNoNetwork => format!(
                    "cluster-64 without a network: {} writes/s",
                    si(m.ops_per_sec)
                ),
                Raw::ClusterBenchNoNetwork => format!(
                    "cluster-bench-64 without a network: {} writes/s",
                    si(m.ops_per_sec)
                ),
            })
        })
        .collect();
    if !raw_text.is_empty() {
        subtitle.push(format!(
            "raw loopback references (grey): {}",
            raw_text.join("; ")
        ));
    }
    let mut panels = Vec::new();
    for &scenario in &results.options.scenarios {
        let subject = Subject::Scenario(scenario);
        let by_mb = matches!(
            scenario,
            Scenario::Append64x1kPipelined | Scenario::Append1mPipelined | Scenario::Snapshot64m
        );
        let value = |m: &Metrics| if by_mb { m.mb_per_sec } else { m.ops_per_sec };
        let mut panel = Panel {
            scenario: scenario.name().into(),
            throughput_unit: if by_mb {
                "payload MB/s".into()
            } else {
                "ops/s".into()
            },
            ..Default::default()
        };
        for imp in &results.impl_names {
            let Some(row) = results.get(subject, imp) else {
                continue;
            };
            let m = row.median();
            panel.bars.push(Bar {
                series: imp.clone(),
                value: m.as_ref().map(value),
            });
            match &m {
                Some(m) => panel.curves.push(Curve {
                    series: imp.clone(),
                    points_us: m.curve_us.clone(),
                }),
                None => panel
                    .notes
                    .push(format!("{imp}: error: {}", row.error().unwrap_or_default())),
            }
            if scenario == Scenario::HeartbeatUnderLoad
                && let Some(u) = under_load(results, imp)
            {
                panel.reference_lines.push(RefLine {
                    series: imp.clone(),
                    value_us: u.idle_p99_us,
                });
                panel.notes.push(format!(
                    "{imp}: p50 = {} and p99 = {} the idle heartbeat-seq p99 ({} µs)",
                    opt(u.p50_vs_idle, times),
                    opt(u.p99_vs_idle, times),
                    num(u.idle_p99_us)
                ));
            }
        }
        if let Some(raw) = raw_reference(scenario)
            && let Some(m) = results.raw(raw)
        {
            panel.bars.push(Bar {
                series: "raw".into(),
                value: Some(value(&m)),
            });
            if raw == Raw::PingPong {
                panel.curves.push(Curve {
                    series: "raw".into(),
                    points_us: m.curve_us.clone(),
                });
            }
        }
        if let Some(v) = vs_tokio(results, scenario) {
            panel.notes.push(format!(
                "raftnet÷tokio: ops/s {}, MB/s {}; tokio÷raftnet: p50 {}, p99 {}, CPU/op {}  (> 1 = raftnet better)",
                opt(v.ops, times),
                opt(v.mb, times),
                opt(v.p50, times),
                opt(v.p99, times),
                opt(v.cpu, times)
            ));
        }
        panels.push(panel);
    }
    Chart {
        title: "raftnet vs tokio: Raft RPC scenarios on loopback".into(),
        subtitle,
        panels,
    }
}

/// The colour of an implementation in every panel.
fn series_color(series: &str) -> RGBColor {
    match series {
        "raftnet" => RGBColor(31, 119, 180),
        "tokio" => RGBColor(230, 120, 20),
        "raw" => RGBColor(140, 140, 140),
        _ => RGBColor(44, 160, 44),
    }
}

const WIDTH: u32 = 1200;
const HEADER_LINE: u32 = 20;
const ROW: u32 = 250;
const NOTE_LINE: u32 = 16;
const BARS_WIDTH: u32 = 420;

fn e<E: Display>(err: E) -> String {
    err.to_string()
}

/// Draw `chart` into an SVG file at `path` (its directory is created if missing).
pub(crate) fn write_svg(path: &Path, chart: &Chart) -> Result<(), String> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|err| format!("{}: {err}", dir.display()))?;
    }
    let header = HEADER_LINE * (3 + chart.subtitle.len() as u32);
    let rows: Vec<u32> = chart
        .panels
        .iter()
        .map(|p| ROW + NOTE_LINE * p.notes.len() as u32)
        .collect();
    let height = header + rows.iter().sum::<u32>() + 10;
    let root = SVGBackend::new(path, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE).map_err(e)?;

    let (head, mut body) = root.split_vertically(header);
    draw_header(&head, chart)?;
    for (panel, &h) in chart.panels.iter().zip(&rows) {
        let (row, rest) = body.split_vertically(h);
        body = rest;
        draw_panel(&row, panel)?;
    }
    root.present().map_err(e)?;
    Ok(())
}

fn draw_header<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    chart: &Chart,
) -> Result<(), String> {
    area.draw(&Text::new(
        chart.title.clone(),
        (10, 6),
        ("sans-serif", 18).into_font().style(FontStyle::Bold),
    ))
    .map_err(e)?;
    for (i, line) in chart.subtitle.iter().enumerate() {
        area.draw(&Text::new(
            line.clone(),
            (10, 10 + HEADER_LINE as i32 * (i as i32 + 1)),
            ("sans-serif", 13).into_font(),
        ))
        .map_err(e)?;
    }
    // The colour key (the same colours in every panel).
    let y = 10 + HEADER_LINE as i32 * (chart.subtitle.len() as i32 + 1);
    let mut series: Vec<&str> = Vec::new();
    for panel in &chart.panels {
        let names = panel.bars.iter().map(|b| b.series.as_str());
        for name in names.chain(panel.curves.iter().map(|c| c.series.as_str())) {
            if !series.contains(&name) {
                series.push(name);
            }
        }
    }
    let mut x = 10;
    for name in series {
        let color = series_color(name);
        area.draw(&Rectangle::new(
            [(x, y + 2), (x + 14, y + 12)],
            color.filled(),
        ))
        .map_err(e)?;
        let label = if name == "raw" {
            "raw loopback reference".to_string()
        } else {
            name.to_string()
        };
        let width = 8 * label.chars().count() as i32;
        area.draw(&Text::new(
            label,
            (x + 20, y),
            ("sans-serif", 13).into_font(),
        ))
        .map_err(e)?;
        x += 20 + width + 24;
    }
    if chart.panels.iter().any(|p| !p.reference_lines.is_empty()) {
        area.draw(&PathElement::new(
            vec![(x, y + 7), (x + 6, y + 7)],
            BLACK.stroke_width(2),
        ))
        .map_err(e)?;
        area.draw(&PathElement::new(
            vec![(x + 10, y + 7), (x + 16, y + 7)],
            BLACK.stroke_width(2),
        ))
        .map_err(e)?;
        area.draw(&Text::new(
            "dashed: that implementation's idle heartbeat-seq p99 (on heartbeat-under-load)",
            (x + 22, y),
            ("sans-serif", 13).into_font(),
        ))
        .map_err(e)?;
    }
    Ok(())
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
) -> Result<(), String> {
    let (plots, notes) = area.split_vertically(ROW);
    plots
        .draw(&PathElement::new(
            vec![(0, 0), (WIDTH as i32, 0)],
            BLACK.mix(0.3),
        ))
        .map_err(e)?;
    let (left, right) = plots.split_horizontally(BARS_WIDTH);
    draw_bars(&left, panel)?;
    draw_curves(&right, panel)?;
    for (i, note) in panel.notes.iter().enumerate() {
        notes
            .draw(&Text::new(
                note.clone(),
                (14, NOTE_LINE as i32 * i as i32),
                ("sans-serif", 12).into_font().color(&BLACK.mix(0.8)),
            ))
            .map_err(e)?;
    }
    Ok(())
}

fn draw_bars<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
) -> Result<(), String> {
    let n = panel.bars.len().max(1);
    let max = panel
        .bars
        .iter()
        .filter_map(|b| b.value)
        .fold(0.0f64, f64::max);
    let top = if max > 0.0 { max * 1.25 } else { 1.0 };
    let names: Vec<String> = panel.bars.iter().map(|b| b.series.clone()).collect();
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("{}: {}", panel.scenario, panel.throughput_unit),
            ("sans-serif", 15).into_font().style(FontStyle::Bold),
        )
        .margin(8)
        .x_label_area_size(22)
        .y_label_area_size(58)
        .build_cartesian_2d((0..n - 1).into_segmented(), 0f64..top)
        .map_err(e)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_labels(5)
        .light_line_style(TRANSPARENT)
        .y_label_formatter(&|v| si(*v))
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => names.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .draw()
        .map_err(e)?;
    for (i, bar) in panel.bars.iter().enumerate() {
        let color = series_color(&bar.series);
        match bar.value {
            Some(v) => {
                let mut rect = Rectangle::new(
                    [
                        (SegmentValue::Exact(i), 0.0),
                        (SegmentValue::Exact(i + 1), v),
                    ],
                    color.filled(),
                );
                rect.set_margin(0, 0, 14, 14);
                chart.draw_series(std::iter::once(rect)).map_err(e)?;
                chart
                    .draw_series(std::iter::once(Text::new(
                        si(v),
                        (SegmentValue::CenterOf(i), v),
                        ("sans-serif", 12)
                            .into_font()
                            .color(&BLACK)
                            .pos(Pos::new(HPos::Center, VPos::Bottom)),
                    )))
                    .map_err(e)?;
            }
            None => {
                chart
                    .draw_series(std::iter::once(Text::new(
                        "error".to_string(),
                        (SegmentValue::CenterOf(i), top * 0.05),
                        ("sans-serif", 12)
                            .into_font()
                            .color(&RED)
                            .pos(Pos::new(HPos::Center, VPos::Bottom)),
                    )))
                    .map_err(e)?;
            }
        }
    }
    Ok(())
}

fn draw_curves<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
) -> Result<(), String> {
    let values = panel
        .curves
        .iter()
        .flat_map(|c| c.points_us.iter().flatten().copied())
        .chain(panel.reference_lines.iter().map(|r| r.value_us))
        .filter(|v| *v > 0.0);
    let (lo, hi) = values.fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    let caption = format!("{}: latency (µs, log) by percentile", panel.scenario);
    let font = ("sans-serif", 15).into_font().style(FontStyle::Bold);
    if hi <= 0.0 {
        let chart = ChartBuilder::on(area)
            .caption(caption, font)
            .margin(8)
            .build_cartesian_2d(0f64..1.0, 0f64..1.0)
            .map_err(e)?;
        chart
            .plotting_area()
            .draw(&Text::new(
                "no latencies recorded (throughput-only reference, or an error)".to_string(),
                (0.05, 0.5),
                ("sans-serif", 13).into_font().color(&BLACK.mix(0.6)),
            ))
            .map_err(e)?;
        return Ok(());
    }
    // Whole decades, so the log axis always has labels at both ends.
    let lo = 10f64.powf(lo.log10().floor());
    let hi = 10f64.powf(hi.log10().ceil()).max(lo * 10.0);
    let k = CURVE_PERCENTILES.len();
    let mut chart = ChartBuilder::on(area)
        .caption(caption, font)
        .margin(8)
        .x_label_area_size(22)
        .y_label_area_size(58)
        .build_cartesian_2d((0..k - 1).into_segmented(), (lo..hi).log_scale())
        .map_err(e)?;
    chart
        .configure_mesh()
        .x_labels(k)
        .y_labels(8)
        .y_label_formatter(&|v| si(*v))
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => CURVE_PERCENTILES
                .get(*i)
                .map(|p| p.1.to_string())
                .unwrap_or_default(),
            _ => String::new(),
        })
        .light_line_style(BLACK.mix(0.05))
        .draw()
        .map_err(e)?;
    for curve in &panel.curves {
        let color = series_color(&curve.series);
        let points: Vec<(SegmentValue<usize>, f64)> = curve
            .points_us
            .iter()
            .enumerate()
            .filter_map(|(i, v)| {
                v.filter(|v| *v > 0.0)
                    .map(|v| (SegmentValue::CenterOf(i), v))
            })
            .collect();
        if points.is_empty() {
            continue;
        }
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(e)?;
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 3, color.filled())),
            )
            .map_err(e)?;
    }
    for line in &panel.reference_lines {
        let color = series_color(&line.series);
        let style = color.stroke_width(2);
        chart
            .draw_series(DashedLineSeries::new(
                [
                    (SegmentValue::Exact(0), line.value_us),
                    (SegmentValue::Last, line.value_us),
                ],
                6,
                4,
                style,
            ))
            .map_err(e)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_an_svg() {
        let dir = std::env::temp_dir().join(format!("raftnet-bench-report-{}", std::process::id()));
        let path = dir.join("chart.svg");
        let curve = |s: &str, f: f64| Curve {
            series: s.into(),
            points_us: CURVE_PERCENTILES
                .iter()
                .map(|&(q, _)| Some(f * (1.0 + 10.0 * q)))
                .collect(),
        };
        let chart = Chart {
            title: "t".into(),
            subtitle: vec!["s".into()],
            panels: vec![
                Panel {
                    scenario: "heartbeat-under-load".into(),
                    throughput_unit: "ops/s".into(),
                    bars: vec![
                        Bar {
                            series: "raftnet".into(),
                            value: Some(70_000.0),
                        },
                        Bar {
                            series: "tokio".into(),
                            value: None,
                        },
                        Bar {
                            series: "raw".into(),
                            value: Some(72_000.0),
                        },
                    ],
                    curves: vec![curve("raftnet", 12.0), curve("tokio", 14.0)],
                    reference_lines: vec![RefLine {
                        series: "raftnet".into(),
                        value_us: 18.0,
                    }],
                    notes: vec!["tokio: error: boom".into()],
                },
                Panel {
                    scenario: "raw-bulk-1m".into(),
                    throughput_unit: "MB/s".into(),
                    bars: vec![Bar {
                        series: "raw".into(),
                        value: Some(4850.0),
                    }],
                    ..Panel::default()
                },
            ],
        };
        write_svg(&path, &chart).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("heartbeat-under-load"));
        assert!(svg.contains("dashed: that implementation"));
        assert!(svg.contains("raw loopback reference"));
        let _ = std::fs::remove_dir_all(dir);
    }
}
