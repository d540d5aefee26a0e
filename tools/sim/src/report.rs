//! Results: the text table, CSV and an SVG plot of faults relative to OPT.

use std::fmt::Write as _;

use crate::svg::{self, Axis, Panel, Series};

/// Header of `--csv` output (exact).
pub const CSV_HEADER: &str = "source,policy,frames,faults,faults_vs_opt,swap_writes";

/// One policy at one memory size on one source.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Trace or workload name.
    pub source: String,
    /// Policy name, or `opt`.
    pub policy: &'static str,
    /// Frames of memory.
    pub frames: u32,
    /// Frames as a percentage of the footprint.
    pub percent: f64,
    /// Page faults (first touches included).
    pub faults: u64,
    /// `faults / opt faults` at the same size.
    pub vs_opt: f64,
    /// Pages written to swap.
    pub swap_writes: u64,
}

/// `--csv`: the header, then one row per policy and size (OPT included).
pub fn csv(rows: &[Row]) -> String {
    let mut out = String::new();
    out.push_str(CSV_HEADER);
    out.push('\n');
    for row in rows {
        let _ = writeln!(
            out,
            "{},{},{},{},{:.4},{}",
            csv_field(&row.source),
            row.policy,
            row.frames,
            row.faults,
            row.vs_opt,
            row.swap_writes
        );
    }
    out
}

/// Quote a field that holds a comma, quote or line break.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

/// The text table of one source.
pub fn table(source_title: &str, rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "== {source_title}");
    let _ = writeln!(
        out,
        "{:>6} {:>9}  {:<9} {:>11} {:>9} {:>11}",
        "mem%", "frames", "policy", "faults", "vs OPT", "swap_writes"
    );
    let mut last_frames = None;
    for row in rows {
        if last_frames.is_some_and(|f| f != row.frames) {
            out.push('\n');
        }
        last_frames = Some(row.frames);
        let _ = writeln!(
            out,
            "{:>5.1}% {:>9}  {:<9} {:>11} {:>8.3}x {:>11}",
            row.percent, row.frames, row.policy, row.faults, row.vs_opt, row.swap_writes
        );
    }
    out
}

/// Geometric mean over sources of each policy's faults/OPT, per memory percentage.
pub fn summary(rows: &[Row], policies: &[&'static str]) -> String {
    let mut percents: Vec<f64> = rows.iter().map(|r| r.percent).collect();
    percents.sort_by(f64::total_cmp);
    percents.dedup();
    let mut out = String::new();
    let _ = writeln!(out, "== geometric mean of faults / OPT over all sources");
    let _ = write!(out, "{:>6}", "mem%");
    for policy in policies {
        let _ = write!(out, " {policy:>9}");
    }
    out.push('\n');
    for percent in percents {
        let _ = write!(out, "{percent:>5.1}%");
        for policy in policies {
            let ratios: Vec<f64> = rows
                .iter()
                .filter(|r| r.policy == *policy && r.percent == percent)
                .map(|r| r.vs_opt)
                .collect();
            let _ = write!(out, " {:>8.3}x", geometric_mean(&ratios));
        }
        out.push('\n');
    }
    out
}

/// Geometric mean (1 for no values).
pub fn geometric_mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        return 1.0;
    }
    (values.iter().map(|v| v.ln()).sum::<f64>() / values.len() as f64).exp()
}

const PANEL_W: f64 = 640.0;
const PANEL_H: f64 = 360.0;
/// Right margin: the legend of policy names.
const RIGHT: f64 = 150.0;

/// An SVG with one panel per source: faults/OPT (y) against memory size in % of the footprint
/// (x), one line per policy, OPT as the dashed 1.0 baseline.
pub fn svg(rows: &[Row], policies: &[&'static str]) -> String {
    let mut sources: Vec<&str> = Vec::new();
    for row in rows {
        if !sources.contains(&row.source.as_str()) {
            sources.push(&row.source);
        }
    }
    let mut body = String::new();
    for (index, source) in sources.iter().enumerate() {
        let panel: Vec<&Row> = rows.iter().filter(|r| r.source == *source).collect();
        plot_panel(&mut body, index as f64 * PANEL_H, source, &panel, policies);
    }
    svg::document(PANEL_W, PANEL_H * sources.len().max(1) as f64, &body)
}

fn plot_panel(out: &mut String, top: f64, source: &str, rows: &[&Row], policies: &[&'static str]) {
    let max_ratio = rows.iter().map(|r| r.vs_opt).fold(1.5, f64::max);
    let panel = Panel {
        top,
        width: PANEL_W,
        height: PANEL_H,
        right: RIGHT,
        title: source.to_string(),
        x: Axis {
            title: "memory size (% of footprint)".into(),
            min: 0.0,
            max: 100.0,
            ticks: (0..=10).map(|tick| f64::from(tick) * 10.0).collect(),
            decimals: 0,
        },
        y: Axis::from("faults / OPT", 1.0, max_ratio),
    };
    let points = |policy: &str, ratio: &dyn Fn(&Row) -> f64| {
        let mut points: Vec<(f64, f64)> = rows
            .iter()
            .filter(|r| r.policy == policy)
            .map(|r| (r.percent, ratio(r)))
            .collect();
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        points
    };
    let mut series: Vec<Series> = policies
        .iter()
        .enumerate()
        .map(|(index, policy)| Series {
            name: policy.to_string(),
            color: svg::COLORS[index % svg::COLORS.len()],
            dashed: false,
            points: points(policy, &|r| r.vs_opt),
            peak_label: None,
        })
        .collect();
    series.push(Series {
        name: "opt".into(),
        color: "#000",
        dashed: true,
        points: points("opt", &|_| 1.0),
        peak_label: None,
    });
    panel.draw(out, &series);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<Row> {
        let mut rows = Vec::new();
        for (frames, percent) in [(10, 10.0), (50, 50.0)] {
            for (policy, faults) in [("opt", 100), ("mglru", 120), ("clock", 150)] {
                rows.push(Row {
                    source: "a<b>&c".into(),
                    policy,
                    frames,
                    percent,
                    faults: faults * 100 / frames as u64,
                    vs_opt: faults as f64 / 100.0,
                    swap_writes: 7,
                });
            }
        }
        rows
    }

    #[test]
    fn csv_has_the_exact_header_and_one_row_per_policy_and_size() {
        let text = csv(&rows());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "source,policy,frames,faults,faults_vs_opt,swap_writes"
        );
        assert_eq!(lines.len(), 1 + 6);
        assert_eq!(lines[1], "a<b>&c,opt,10,1000,1.0000,7");
        assert_eq!(lines[2], "a<b>&c,mglru,10,1200,1.2000,7");
        assert_eq!(csv_field("x,y\"z"), "\"x,y\"\"z\"");
    }

    #[test]
    fn geometric_mean_of_ratios() {
        assert!((geometric_mean(&[1.0, 4.0]) - 2.0).abs() < 1e-12);
        assert_eq!(geometric_mean(&[]), 1.0);
        let text = summary(&rows(), &["mglru", "clock"]);
        assert!(text.contains(" 10.0%    1.200x    1.500x\n"), "{text}");
    }

    #[test]
    fn svg_is_well_formed_with_lines_legend_and_labels() {
        let image = svg(&rows(), &["mglru", "clock"]);
        assert!(image.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        let elements = svg::well_formed(&image).unwrap();
        assert!(elements > 20, "{elements}");
        // Two policy lines and the OPT baseline.
        assert_eq!(image.matches("<polyline").count(), 3);
        assert!(image.contains(">memory size (% of footprint)</text>"));
        assert!(image.contains(">faults / OPT</text>"));
        assert!(
            image.contains(">mglru</text>")
                && image.contains(">clock</text>")
                && image.contains(">opt</text>")
        );
        // The source name is escaped.
        assert!(image.contains(">a&lt;b&gt;&amp;c</text>"));
        // mglru at 10% is drawn at ratio 1.2: x = 70 + 420 * 0.1 = 112.
        assert!(image.contains("points=\"112.0,"), "{image}");
        // The y axis runs from 1 to 1.5 (ticks 0.1 apart) for ratios up to 1.5.
        assert!(image.contains(">1.50</text>") && !image.contains(">1.60</text>"));
    }

    #[test]
    fn a_steep_panel_keeps_a_readable_number_of_ticks() {
        let mut rows = rows();
        rows[5].vs_opt = 98.7;
        let image = svg(&rows, &["mglru", "clock"]);
        let y_labels = image.matches(r#"text-anchor="end""#).count();
        assert_eq!(y_labels, 6, "{image}");
        assert!(image.contains(">100</text>"));
    }

    #[test]
    fn table_lists_every_row() {
        let text = table("demo", &rows());
        assert!(text.starts_with("== demo\n"));
        assert!(
            text.contains(" 10.0%        10  mglru            1200    1.200x           7"),
            "{text}"
        );
        assert_eq!(text.lines().count(), 2 + 6 + 1);
    }
}
