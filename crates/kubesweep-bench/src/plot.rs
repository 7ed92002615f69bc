//! The plot of a report: time against seeded objects, one line per
//! contender, both axes logarithmic, as SVG (plotters' SVG backend; text is
//! measured without system fonts). Pure apart from the returned string.

use std::collections::BTreeMap;

use plotters::prelude::*;

use crate::report::{BenchReport, Kind};

/// One line of the plot: (objects, median seconds, min, max) per scale.
pub type Series = Vec<(f64, f64, f64, f64)>;

/// The plotted series by name: every contender but the floor's sweep,
/// which is one line ("floor, best concurrency").
pub fn series(reports: &[BenchReport]) -> BTreeMap<String, Series> {
    let mut out: BTreeMap<String, Series> = BTreeMap::new();
    for run in reports.iter().flat_map(|r| &r.scales) {
        let x = run.seeded_objects as f64;
        for c in &run.contenders {
            if c.kind == Kind::Floor {
                continue;
            }
            if let Some(s) = c.seconds {
                out.entry(c.name.clone())
                    .or_default()
                    .push((x, s.median, s.min, s.max));
            }
        }
        if let Some(s) = run.floor().and_then(|f| f.seconds) {
            out.entry("floor (best concurrency)".into())
                .or_default()
                .push((x, s.median, s.min, s.max));
        }
    }
    for points in out.values_mut() {
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    out
}

/// The SVG document.
pub fn svg(reports: &[BenchReport]) -> anyhow::Result<String> {
    let series = series(reports);
    let xs = series.values().flatten().map(|p| p.0);
    let ys = series.values().flatten().flat_map(|p| [p.2, p.3]);
    let (x_min, x_max) = bounds(xs);
    let (y_min, y_max) = bounds(ys);
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (900, 560)).into_drawing_area();
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "kubesweep: removal time against footprint size",
                ("sans-serif", 20),
            )
            .margin(16)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(
                (x_min / 1.5..x_max * 1.5).log_scale(),
                (y_min / 1.5..y_max * 1.5).log_scale(),
            )?;
        chart
            .configure_mesh()
            .x_desc("objects seeded")
            .y_desc("seconds (median; bars: min–max)")
            .draw()?;
        for (i, (name, points)) in series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(
                    points.iter().map(|p| (p.0, p.1)),
                    color.stroke_width(2),
                ))?
                .label(name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
            chart.draw_series(
                points
                    .iter()
                    .map(|p| Circle::new((p.0, p.1), 3, color.filled())),
            )?;
            chart.draw_series(
                points
                    .iter()
                    .map(|p| PathElement::new(vec![(p.0, p.2), (p.0, p.3)], color.stroke_width(1))),
            )?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
    }
    Ok(out)
}

fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| *v > 0.0)
        .fold((f64::INFINITY, 0.0_f64), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo.is_finite() {
        (lo, hi.max(lo * 2.0))
    } else {
        (1.0, 10.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Contender, Machine, Sample, ScaleRun};

    #[test]
    fn draws_one_line_per_contender_and_one_for_the_floor() {
        let sample = |seconds| Sample {
            seconds,
            requests: None,
            max_rss_kib: 1024,
            verified: true,
            extrapolated: None,
            detail: String::new(),
        };
        let run = |objects, t: f64| {
            let mut apply = Contender::new("kubesweep apply", Kind::Kubesweep);
            apply.samples = vec![sample(t), sample(t * 1.1)];
            let mut floor = Contender::new("floor (32 in flight)", Kind::Floor);
            floor.samples = vec![sample(t / 2.0)];
            let mut s = ScaleRun {
                scale: "x".into(),
                seeded_objects: objects,
                plan_actions: 1,
                custom_resource_actions: 1,
                contenders: vec![apply, floor],
            };
            s.summarise();
            s
        };
        let report = BenchReport {
            machine: Machine {
                cores: 2,
                memory_gib: 23.0,
                kubernetes: "v1.37.2".into(),
                load_average_at_start: "1.0".into(),
                note: String::new(),
            },
            command: "scripts/bench".into(),
            started: "now".into(),
            scales: vec![run(186, 10.0), run(2011, 20.0)],
        };
        let s = series(std::slice::from_ref(&report));
        assert_eq!(s.len(), 2);
        assert_eq!(s["floor (best concurrency)"].len(), 2);
        let svg = svg(&[report]).expect("svg");
        assert!(svg.starts_with("<svg"), "{}", &svg[..40]);
        assert!(svg.contains("kubesweep apply"));
    }
}
