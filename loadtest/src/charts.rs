//! SVG charts (plotters, SVG backend only): latency histogram, latency / throughput / memory
//! over time, and cold-start phases as stacked bars.

use crate::coldstart::ColdStartReport;
use crate::report::{ScenarioReport, TimelinePoint};
use crate::stats::{histogram, percentile};
use anyhow::Result;
use plotters::prelude::*;
use std::path::Path;

const FONT: &str = "sans-serif";

pub fn latency_histogram(path: &Path, scenario: &str, latencies: &[f64]) -> Result<()> {
    let root = SVGBackend::new(path, (900, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let max = latencies.iter().copied().fold(0.0, f64::max).max(1e-3) * 1.05;
    let bins = 40;
    let counts = histogram(latencies, 0.0, max, bins);
    let width = max / bins as f64;
    let top = counts.iter().copied().max().unwrap_or(0).max(1) as f64 * 1.15;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{scenario}: latency of successful requests (n = {})", latencies.len()), (FONT, 20))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..max, 0f64..top)?;
    chart.configure_mesh().x_desc("latency (s)").y_desc("requests").draw()?;
    chart.draw_series(counts.iter().enumerate().map(|(i, &c)| {
        let x0 = i as f64 * width;
        Rectangle::new([(x0, 0.0), (x0 + width, c as f64)], BLUE.mix(0.55).filled())
    }))?;
    for (p, color) in [(50.0, GREEN), (90.0, RGBColor(230, 140, 0)), (99.0, RED)] {
        if let Some(x) = percentile(latencies, p) {
            chart
                .draw_series(LineSeries::new(vec![(x, 0.0), (x, top)], color.stroke_width(2)))?
                .label(format!("p{p:.0} = {x:.3} s"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        }
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.9)).border_style(BLACK).draw()?;
    root.present()?;
    Ok(())
}

pub fn timeline(path: &Path, s: &ScenarioReport) -> Result<()> {
    let root = SVGBackend::new(path, (900, 900)).into_drawing_area();
    root.fill(&WHITE)?;
    let areas = root.split_evenly((3, 1));
    let tmax = (s.timeline.len() as f64).max(1.0);
    let warm = s.warmup_s;

    // latency p50 / p99 per second of completion
    let lmax = s.timeline.iter().filter_map(|p| p.p99).fold(0.0, f64::max).max(1e-3) * 1.1;
    let mut c = ChartBuilder::on(&areas[0])
        .caption(format!("{}: {} — latency over time", s.scenario, s.load.describe()), (FONT, 18))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..tmax, 0f64..lmax)?;
    c.configure_mesh().x_desc("time (s)").y_desc("latency (s)").draw()?;
    for (name, color, pick) in
        [("p50", BLUE, (|p: &TimelinePoint| p.p50) as fn(&TimelinePoint) -> Option<f64>), ("p99", RED, |p: &TimelinePoint| p.p99)]
    {
        let pts: Vec<(f64, f64)> = s.timeline.iter().filter_map(|p| pick(p).map(|v| (p.t + 0.5, v))).collect();
        c.draw_series(LineSeries::new(pts, color.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    c.draw_series(LineSeries::new(vec![(warm, 0.0), (warm, lmax)], BLACK.mix(0.4)))?
        .label("end of warm-up")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK.mix(0.4)));
    c.configure_series_labels().background_style(WHITE.mix(0.9)).border_style(BLACK).draw()?;

    // throughput: successful answers, 429s and errors per second, as a moving average (one
    // answer every few seconds would otherwise draw a saw)
    let w = ((s.timeline.len() / 30).max(5)).min(s.timeline.len().max(1));
    let smooth = |pick: fn(&TimelinePoint) -> u64| -> Vec<(f64, f64)> {
        (0..s.timeline.len())
            .map(|i| {
                let lo = (i + 1).saturating_sub(w);
                let sum: u64 = s.timeline[lo..=i].iter().map(pick).sum();
                (s.timeline[i].t + 1.0, sum as f64 / (i + 1 - lo) as f64)
            })
            .collect()
    };
    let all = smooth(|p| p.completed_ok + p.rejected_429 + p.errors);
    let rmax = all.iter().map(|p| p.1).fold(0.0, f64::max).max(0.1) * 1.15;
    let mut c = ChartBuilder::on(&areas[1])
        .caption(format!("throughput ({w} s moving average)"), (FONT, 18))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..tmax, 0f64..rmax)?;
    c.configure_mesh().x_desc("time (s)").y_desc("answers / s").draw()?;
    for (name, color, pick) in [
        ("ok", GREEN, (|p: &TimelinePoint| p.completed_ok) as fn(&TimelinePoint) -> u64),
        ("429", RGBColor(230, 140, 0), |p: &TimelinePoint| p.rejected_429),
        ("errors", RED, |p: &TimelinePoint| p.errors),
    ] {
        let pts = smooth(pick);
        c.draw_series(LineSeries::new(pts, color.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    c.configure_series_labels().background_style(WHITE.mix(0.9)).border_style(BLACK).draw()?;

    // server memory
    let mem: Vec<(f64, f64)> = s.timeline.iter().filter_map(|p| p.rss_bytes.map(|b| (p.t + 0.5, b as f64 / 1048576.0))).collect();
    let mmax = mem.iter().map(|p| p.1).fold(0.0, f64::max).max(1.0) * 1.1;
    let mut c = ChartBuilder::on(&areas[2])
        .caption(format!("server resident memory ({})", s.rss.source), (FONT, 18))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..tmax, 0f64..mmax)?;
    c.configure_mesh().x_desc("time (s)").y_desc("RSS (MiB)").draw()?;
    c.draw_series(LineSeries::new(mem, BLUE.stroke_width(2)))?;
    root.present()?;
    Ok(())
}

pub fn coldstart_phases(path: &Path, r: &ColdStartReport) -> Result<()> {
    let rows = &r.rows;
    let n = rows.len().max(1);
    let mut phase_names: Vec<String> = Vec::new();
    for row in rows {
        for (p, _) in &row.segments {
            if !phase_names.contains(p) {
                phase_names.push(p.clone());
            }
        }
    }
    let legend_rows = phase_names.len().div_ceil(4).max(1) as u32;
    let height = 110 + 70 * n as u32 + 24 * legend_rows;
    let root = SVGBackend::new(path, (1000, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let (upper, lower) = root.split_vertically(height - 24 * legend_rows - 10);
    let xmax = rows.iter().map(|row| row.first_transcript_s.median).fold(0.0, f64::max).max(1e-3) * 1.05;
    let names: Vec<String> = rows.iter().map(|row| format!("{} / {}", row.engine, row.cache)).collect();
    let mut chart = ChartBuilder::on(&upper)
        .caption("scale from zero: exec → first transcript (medians)", (FONT, 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(190)
        // an integer range is inclusive here: 0..n-1 gives n rows
        .build_cartesian_2d(0f64..xmax, (0..n - 1).into_segmented())?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc("seconds from exec")
        .y_labels(n)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => names.get(*i).cloned().unwrap_or_default(),
            SegmentValue::Last => String::new(),
        })
        .draw()?;
    let color_of = |pi: usize| Palette99::pick(pi).to_rgba();
    for (pi, phase) in phase_names.iter().enumerate() {
        let color = color_of(pi);
        let bars: Vec<Rectangle<(f64, SegmentValue<usize>)>> = rows
            .iter()
            .enumerate()
            .filter_map(|(i, row)| {
                let mut x0 = 0.0;
                for (p, v) in &row.segments {
                    if p == phase {
                        let mut rect = Rectangle::new([(x0, SegmentValue::Exact(i)), (x0 + v, SegmentValue::Exact(i + 1))], color.filled());
                        rect.set_margin(12, 12, 0, 0);
                        return Some(rect);
                    }
                    x0 += v;
                }
                None
            })
            .collect();
        chart.draw_series(bars)?;
    }
    // legend under the chart, four phases a row
    for (pi, phase) in phase_names.iter().enumerate() {
        let (col, row) = ((pi % 4) as i32, (pi / 4) as i32);
        let (x, y) = (200 + col * 195, 4 + row * 24);
        lower.draw(&Rectangle::new([(x, y), (x + 14, y + 14)], color_of(pi).filled()))?;
        lower.draw(&Text::new(phase.clone(), (x + 20, y + 1), (FONT, 14)))?;
    }
    root.present()?;
    Ok(())
}
