//! SVG drawing shared by the simulator's plots: a document, and panels with a frame, grid, tick
//! labels, axis titles, one polyline per series and a legend beside the plot.

use std::fmt::Write as _;

/// Margins of a panel's plot area, in pixels (the right margin holds the legend).
pub const LEFT: f64 = 70.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;
/// Vertical distance between legend entries, and the width of one legend column.
const LEGEND_ROW: f64 = 18.0;
const LEGEND_COLUMN: f64 = 80.0;

/// Line colours, used in turn.
pub const COLORS: [&str; 10] = [
    "#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
    "#bcbd22", "#7f7f7f",
];

/// `text` with the XML special characters escaped.
pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A whole SVG document of `width` x `height` pixels on a white background around `body`.
pub fn document(width: f64, height: f64, body: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        out,
        r#"<rect width="{width}" height="{height}" fill="white"/>"#
    );
    out.push_str(body);
    out.push_str("</svg>\n");
    out
}

/// One axis: its title (with the unit), its range and where its ticks go.
#[derive(Clone, Debug, PartialEq)]
pub struct Axis {
    pub title: String,
    pub min: f64,
    pub max: f64,
    pub ticks: Vec<f64>,
    /// Decimals of the tick labels.
    pub decimals: usize,
}

impl Axis {
    /// An axis from 0 to at least `max` with about six ticks at multiples of 1, 2 or 5 times a
    /// power of ten; the range ends on a tick.
    pub fn from_zero(title: &str, max: f64) -> Self {
        Self::from(title, 0.0, max)
    }

    /// An axis from `min` to at least `max`: a tick at `min`, then about six ticks at multiples
    /// of 1, 2 or 5 times a power of ten; the range ends on a tick.
    pub fn from(title: &str, min: f64, max: f64) -> Self {
        let span = if max > min { max - min } else { 1.0 };
        let raw = span / 6.0;
        let magnitude = 10f64.powf(raw.log10().floor());
        let step = [1.0, 2.0, 5.0, 10.0]
            .iter()
            .map(|m| m * magnitude)
            .find(|step| *step >= raw)
            .unwrap_or(10.0 * magnitude);
        // (Rounding errors of the division must not add or drop a tick.)
        let first = (min / step + 1e-9).floor() as i64 + 1;
        let last = ((min + span) / step - 1e-9).ceil() as i64;
        let mut ticks = vec![min];
        ticks.extend((first..=last).map(|i| i as f64 * step));
        Self {
            title: title.to_string(),
            min,
            max: last as f64 * step,
            ticks,
            decimals: if step >= 1.0 { 0 } else { 2 },
        }
    }

    /// Where `value` lies between `min` (0) and `max` (1), clamped to the axis.
    fn fraction(&self, value: f64) -> f64 {
        ((value - self.min) / (self.max - self.min)).clamp(0.0, 1.0)
    }
}

/// A line in a panel, with its legend entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    pub name: String,
    pub color: &'static str,
    pub dashed: bool,
    /// (x, y) in axis units, in drawing order.
    pub points: Vec<(f64, f64)>,
    /// A short label drawn above the line's highest point (for plots with many lines), unless
    /// the line stays on the x axis.
    pub peak_label: Option<String>,
}

/// One plot: `width` x `height` pixels at vertical offset `top` of the document.
#[derive(Clone, Debug, PartialEq)]
pub struct Panel {
    pub top: f64,
    pub width: f64,
    pub height: f64,
    /// Right margin, where the legend goes (see [`legend_width`]).
    pub right: f64,
    pub title: String,
    pub x: Axis,
    pub y: Axis,
}

/// The right margin that holds a legend of `entries` entries beside a panel `height` pixels
/// high: as many columns as it takes.
pub fn legend_width(entries: usize, height: f64) -> f64 {
    let columns = entries.div_ceil(legend_rows(height)).max(1);
    30.0 + LEGEND_COLUMN * columns as f64
}

/// Legend entries that fit in one column beside a panel `height` pixels high.
fn legend_rows(height: f64) -> usize {
    (((height - TOP - BOTTOM - 10.0) / LEGEND_ROW).floor() as usize + 1).max(1)
}

impl Panel {
    fn plot_width(&self) -> f64 {
        self.width - LEFT - self.right
    }

    fn plot_height(&self) -> f64 {
        self.height - TOP - BOTTOM
    }

    /// The pixel position of a point in axis units.
    pub fn at(&self, x: f64, y: f64) -> (f64, f64) {
        (
            LEFT + self.plot_width() * self.x.fraction(x),
            self.top + TOP + self.plot_height() * (1.0 - self.y.fraction(y)),
        )
    }

    /// Draws the title, frame, grid, tick labels and axis titles, then `series` with their
    /// legend.
    pub fn draw(&self, out: &mut String, series: &[Series]) {
        let (plot_w, plot_h) = (self.plot_width(), self.plot_height());
        let (top, bottom) = (self.top + TOP, self.top + TOP + plot_h);
        let _ = writeln!(
            out,
            r#"<text x="{LEFT}" y="{}" font-size="14" font-weight="bold">{}</text>"#,
            self.top + 24.0,
            escape(&self.title)
        );
        let _ = writeln!(
            out,
            r##"<rect x="{LEFT}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#333"/>"##
        );
        for &tick in &self.x.ticks {
            let (x, _) = self.at(tick, self.y.min);
            let _ = writeln!(
                out,
                r##"<line x1="{x}" y1="{top}" x2="{x}" y2="{bottom}" stroke="#ddd"/><text x="{x}" y="{}" text-anchor="middle">{tick:.*}</text>"##,
                bottom + 16.0,
                self.x.decimals
            );
        }
        for &tick in &self.y.ticks {
            let (_, y) = self.at(self.x.min, tick);
            let _ = writeln!(
                out,
                r##"<line x1="{LEFT}" y1="{y}" x2="{}" y2="{y}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{tick:.*}</text>"##,
                LEFT + plot_w,
                LEFT - 6.0,
                y + 4.0,
                self.y.decimals
            );
        }
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="middle">{}</text>"#,
            LEFT + plot_w / 2.0,
            self.top + self.height - 12.0,
            escape(&self.x.title)
        );
        let middle = top + plot_h / 2.0;
        let _ = writeln!(
            out,
            r#"<text x="18" y="{middle}" text-anchor="middle" transform="rotate(-90 18 {middle})">{}</text>"#,
            escape(&self.y.title)
        );
        let rows = legend_rows(self.height);
        for (index, line) in series.iter().enumerate() {
            let dash = if line.dashed {
                r#" stroke-dasharray="6 4""#
            } else {
                ""
            };
            let color = line.color;
            let path: Vec<String> = line
                .points
                .iter()
                .map(|&(x, y)| {
                    let (px, py) = self.at(x, y);
                    format!("{px:.1},{py:.1}")
                })
                .collect();
            let _ = writeln!(
                out,
                r#"<polyline fill="none" stroke="{color}" stroke-width="2"{dash} points="{}"/>"#,
                path.join(" ")
            );
            let peak = line
                .points
                .iter()
                .copied()
                .reduce(|a, b| if b.1 > a.1 { b } else { a });
            if let (Some(label), Some((x, y))) = (&line.peak_label, peak)
                && y > self.y.min
            {
                let (px, py) = self.at(x, y);
                let _ = writeln!(
                    out,
                    r#"<text x="{px:.1}" y="{:.1}" text-anchor="middle" font-size="10" fill="{color}">{}</text>"#,
                    py - 4.0,
                    escape(label)
                );
            }
            let legend_x = LEFT + plot_w + 16.0 + LEGEND_COLUMN * (index / rows) as f64;
            let legend_y = top + 10.0 + LEGEND_ROW * (index % rows) as f64;
            let _ = writeln!(
                out,
                r#"<line x1="{legend_x}" y1="{legend_y}" x2="{}" y2="{legend_y}" stroke="{color}" stroke-width="2"{dash}/><text x="{}" y="{}">{}</text>"#,
                legend_x + 24.0,
                legend_x + 30.0,
                legend_y + 4.0,
                escape(&line.name)
            );
        }
    }
}

/// Minimal XML check for tests: every tag closes in order, attributes are quoted, text has no
/// bare `<`/`&`. The number of elements.
#[cfg(test)]
pub fn well_formed(svg: &str) -> Result<usize, String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checker_rejects_broken_xml() {
        assert!(well_formed("<svg><g></svg>").is_err());
        assert!(well_formed("<svg a=\"1></svg>").is_err());
        assert!(well_formed("<svg>a & b</svg>").is_err());
        assert_eq!(well_formed("<svg><g/><text>a &amp; b</text></svg>"), Ok(3));
    }

    #[test]
    fn axes_from_zero_end_on_round_ticks() {
        let axis = Axis::from_zero("time (ms)", 443.0);
        assert_eq!(axis.max, 500.0);
        assert_eq!(axis.ticks, [0.0, 100.0, 200.0, 300.0, 400.0, 500.0]);
        assert_eq!(axis.decimals, 0);
        let axis = Axis::from_zero("pages", 2013.0);
        assert_eq!((axis.max, axis.ticks.len()), (2500.0, 6));
        let axis = Axis::from_zero("x", 0.9);
        assert_eq!((axis.max, axis.ticks[1], axis.decimals), (1.0, 0.2, 2));
        // An empty range still gets an axis.
        assert_eq!(Axis::from_zero("x", 0.0).max, 1.0);
        // From 1: the first tick at 1, the others at multiples of the step.
        let axis = Axis::from("faults / OPT", 1.0, 98.7);
        assert_eq!(axis.ticks, [1.0, 20.0, 40.0, 60.0, 80.0, 100.0]);
        assert_eq!(axis.max, 100.0);
        let axis = Axis::from("faults / OPT", 1.0, 3.8);
        assert_eq!(axis.ticks, [1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0]);
        assert_eq!((axis.max, axis.decimals), (4.0, 2));
    }

    #[test]
    fn long_legends_take_more_columns() {
        // 360 - 40 - 50 - 10 = 260 pixels: 15 rows of 18 pixels.
        assert_eq!(legend_rows(360.0), 15);
        assert_eq!(legend_width(5, 360.0), 110.0);
        assert_eq!(legend_width(15, 360.0), 110.0);
        assert_eq!(legend_width(16, 360.0), 190.0);
        let panel = Panel {
            top: 0.0,
            width: 640.0,
            height: 360.0,
            right: legend_width(16, 360.0),
            title: "t".into(),
            x: Axis::from_zero("x", 10.0),
            y: Axis::from_zero("y", 10.0),
        };
        let series: Vec<Series> = (0..16)
            .map(|i| Series {
                name: format!("s{i}"),
                color: COLORS[i % COLORS.len()],
                dashed: false,
                points: vec![(0.0, 0.0), (10.0, 10.0)],
                peak_label: None,
            })
            .collect();
        let mut body = String::new();
        panel.draw(&mut body, &series);
        // The 16th entry starts the second column, at the first row.
        let plot_w = 640.0 - LEFT - 190.0;
        let second = LEFT + plot_w + 16.0 + LEGEND_COLUMN;
        assert!(
            body.contains(&format!(r#"<line x1="{second}" y1="50" "#)),
            "{body}"
        );
        assert!(well_formed(&document(640.0, 360.0, &body)).is_ok());
        assert!(
            !body.contains("font-size=\"10\""),
            "no peak labels asked for"
        );
    }

    #[test]
    fn peak_labels_sit_above_the_highest_point() {
        let panel = Panel {
            top: 0.0,
            width: 640.0,
            height: 360.0,
            right: 150.0,
            title: "t".into(),
            x: Axis::from_zero("x", 100.0),
            y: Axis::from_zero("y", 10.0),
        };
        let series = Series {
            name: "seq 7".into(),
            color: COLORS[0],
            dashed: false,
            points: vec![(0.0, 0.0), (50.0, 10.0), (100.0, 5.0)],
            peak_label: Some("7".into()),
        };
        let mut body = String::new();
        panel.draw(&mut body, &[series]);
        // (50, 10) is at pixel (280, 40).
        assert!(
            body.contains(r##"<text x="280.0" y="36.0" text-anchor="middle" font-size="10" fill="#d62728">7</text>"##),
            "{body}"
        );
    }

    #[test]
    fn points_map_to_pixels_and_clamp_to_the_axes() {
        let panel = Panel {
            top: 100.0,
            width: 640.0,
            height: 360.0,
            right: 150.0,
            title: "t".into(),
            x: Axis::from_zero("x", 100.0),
            y: Axis::from_zero("y", 10.0),
        };
        // Plot area: x 70..490, y 140..410.
        assert_eq!(panel.at(0.0, 0.0), (70.0, 410.0));
        assert_eq!(panel.at(100.0, 10.0), (490.0, 140.0));
        assert_eq!(panel.at(150.0, -5.0), (490.0, 410.0));
    }
}
