//! Results: the text table, CSV and an SVG plot of faults relative to OPT.

use std::fmt::Write as _;

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
const LEFT: f64 = 70.0;
const RIGHT: f64 = 150.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;
const COLORS: [&str; 6] = [
    "#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
];

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// An SVG with one panel per source: faults/OPT (y) against memory size in % of the footprint
/// (x), one line per policy, OPT as the dashed 1.0 baseline.
pub fn svg(rows: &[Row], policies: &[&'static str]) -> String {
    let mut sources: Vec<&str> = Vec::new();
    for row in rows {
        if !sources.contains(&row.source.as_str()) {
            sources.push(&row.source);
        }
    }
    let height = PANEL_H * sources.len().max(1) as f64;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{PANEL_W}" height="{height}" viewBox="0 0 {PANEL_W} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        out,
        r#"<rect width="{PANEL_W}" height="{height}" fill="white"/>"#
    );
    for (index, source) in sources.iter().enumerate() {
        let panel: Vec<&Row> = rows.iter().filter(|r| r.source == *source).collect();
        plot_panel(&mut out, index as f64 * PANEL_H, source, &panel, policies);
    }
    out.push_str("</svg>\n");
    out
}

fn plot_panel(out: &mut String, y0: f64, source: &str, rows: &[&Row], policies: &[&'static str]) {
    let plot_w = PANEL_W - LEFT - RIGHT;
    let plot_h = PANEL_H - TOP - BOTTOM;
    let max_ratio = rows.iter().map(|r| r.vs_opt).fold(1.0, f64::max);
    // Round the top of the y axis up to a multiple of 0.5.
    let y_max = ((max_ratio * 2.0).ceil() / 2.0).max(1.5);
    let x_of = |percent: f64| LEFT + plot_w * percent.clamp(0.0, 100.0) / 100.0;
    let y_of = |ratio: f64| y0 + TOP + plot_h * (1.0 - (ratio - 1.0) / (y_max - 1.0));
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" font-size="14" font-weight="bold">{}</text>"#,
        LEFT,
        y0 + 24.0,
        escape(source)
    );
    // Axes, grid and ticks.
    let _ = writeln!(
        out,
        r##"<rect x="{LEFT}" y="{}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#333"/>"##,
        y0 + TOP
    );
    for tick in 0..=10 {
        let percent = f64::from(tick) * 10.0;
        let x = x_of(percent);
        let _ = writeln!(
            out,
            r##"<line x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="#ddd"/><text x="{x}" y="{}" text-anchor="middle">{percent}</text>"##,
            y0 + TOP,
            y0 + TOP + plot_h,
            y0 + TOP + plot_h + 16.0
        );
    }
    let steps = ((y_max - 1.0) / 0.25).round() as u32;
    for step in 0..=steps {
        let ratio = 1.0 + f64::from(step) * 0.25;
        let y = y_of(ratio);
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{y}" x2="{}" y2="{y}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{ratio:.2}</text>"##,
            LEFT + plot_w,
            LEFT - 6.0,
            y + 4.0
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{}" y="{}" text-anchor="middle">memory size (% of footprint)</text>"#,
        LEFT + plot_w / 2.0,
        y0 + PANEL_H - 12.0
    );
    let _ = writeln!(
        out,
        r#"<text x="18" y="{}" text-anchor="middle" transform="rotate(-90 18 {})">faults / OPT</text>"#,
        y0 + TOP + plot_h / 2.0,
        y0 + TOP + plot_h / 2.0
    );
    // One line per policy, then the legend.
    let mut legend_y = y0 + TOP + 10.0;
    let legend_x = LEFT + plot_w + 16.0;
    let mut draw = |name: &str, color: &str, dash: &str, points: Vec<(f64, f64)>| {
        let path: Vec<String> = points
            .iter()
            .map(|(p, r)| format!("{:.1},{:.1}", x_of(*p), y_of(*r)))
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2"{dash} points="{}"/>"#,
            path.join(" ")
        );
        let _ = writeln!(
            out,
            r#"<line x1="{legend_x}" y1="{legend_y}" x2="{}" y2="{legend_y}" stroke="{color}" stroke-width="2"{dash}/><text x="{}" y="{}">{}</text>"#,
            legend_x + 24.0,
            legend_x + 30.0,
            legend_y + 4.0,
            escape(name)
        );
        legend_y += 18.0;
    };
    for (index, policy) in policies.iter().enumerate() {
        let mut points: Vec<(f64, f64)> = rows
            .iter()
            .filter(|r| r.policy == *policy)
            .map(|r| (r.percent, r.vs_opt))
            .collect();
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        draw(policy, COLORS[index % COLORS.len()], "", points);
    }
    let mut opt: Vec<(f64, f64)> = rows
        .iter()
        .filter(|r| r.policy == "opt")
        .map(|r| (r.percent, 1.0))
        .collect();
    opt.sort_by(|a, b| a.0.total_cmp(&b.0));
    draw("opt", "#000", r#" stroke-dasharray="6 4""#, opt);
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

    /// Minimal XML check: every tag closes in order, attributes are quoted, text has no bare `<`/`&`.
    fn well_formed(svg: &str) -> Result<usize, String> {
        let mut stack: Vec<&str> = Vec::new();
        let mut rest = svg;
        let mut elements = 0;
        while let Some(start) = rest.find('<') {
            let text = &rest[..start];
            if text.contains('&') && !text.contains("&amp;") && !text.contains("&lt;") {
                return Err(format!("bare & in text {text:?}"));
            }
            let end = rest[start..].find('>').ok_or("unterminated tag")? + start;
            let tag = &rest[start + 1..end];
            if !tag.matches('"').count().is_multiple_of(2) {
                return Err(format!("unbalanced quotes in <{tag}>"));
            }
            if let Some(name) = tag.strip_prefix('/') {
                let open = stack
                    .pop()
                    .ok_or(format!("</{name}> without opening tag"))?;
                if open != name {
                    return Err(format!("</{name}> closes <{open}>"));
                }
            } else if !tag.ends_with('/') {
                stack.push(tag.split_whitespace().next().ok_or("empty tag")?);
                elements += 1;
            } else {
                elements += 1;
            }
            rest = &rest[end + 1..];
        }
        if stack.is_empty() && rest.trim().is_empty() {
            Ok(elements)
        } else {
            Err(format!("unclosed {stack:?}"))
        }
    }

    #[test]
    fn svg_is_well_formed_with_lines_legend_and_labels() {
        let image = svg(&rows(), &["mglru", "clock"]);
        assert!(image.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        let elements = well_formed(&image).unwrap();
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
    }

    #[test]
    fn the_checker_rejects_broken_xml() {
        assert!(well_formed("<svg><g></svg>").is_err());
        assert!(well_formed("<svg a=\"1></svg>").is_err());
        assert!(well_formed("<svg>a & b</svg>").is_err());
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
