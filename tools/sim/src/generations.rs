//! `--lru-log FILE --svg OUT`: MGLRU generation sizes over time, from the kernel's
//! `lru watch INTERVAL_MS COUNT` samples in a console log.
//!
//! Each sample is a line `lru_sample t_ms=<guest ms since boot>` followed by the policy's debug
//! view; for MGLRU that holds a table under the header `seq age_ms nr_anon nr_file` with one
//! row per live generation (`crates/reclaim/src/mglru.rs`, `write_debug`). Everything else in
//! the log (boot messages, commands, program output, the tier table after the generations) is
//! skipped.

use std::collections::BTreeMap;
use std::fmt;

use crate::svg::{self, Axis, Panel, Series};

/// The sampling command's marker line, before `t_ms=`.
const MARKER: &str = "lru_sample";
/// Columns of MGLRU's generation table.
const HEADER: [&str; 4] = ["seq", "age_ms", "nr_anon", "nr_file"];

/// One live generation in one sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Generation {
    pub seq: u64,
    pub age_ms: u64,
    pub anon: u64,
    pub file: u64,
}

impl Generation {
    fn pages(&self) -> u64 {
        self.anon + self.file
    }
}

/// One `lru_sample`: its guest time and the generations then.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    pub t_ms: u64,
    pub generations: Vec<Generation>,
}

/// A log that cannot be plotted; `line` is 1-based (0: the log as a whole).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for LogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            f.write_str(&self.message)
        } else {
            write!(f, "line {}: {}", self.line, self.message)
        }
    }
}

impl std::error::Error for LogError {}

fn error(line: usize, message: impl Into<String>) -> LogError {
    LogError {
        line,
        message: message.into(),
    }
}

/// Where the parser is inside the current sample.
enum State {
    /// Outside any sample.
    Outside,
    /// After `lru_sample` (on the given line), before the table header.
    BeforeHeader(usize),
    /// In the generation rows.
    Rows,
    /// Past the generation table, up to the next sample.
    AfterTable,
}

/// The samples of a console log, in order.
pub fn parse(log: &str) -> Result<Vec<Sample>, LogError> {
    let mut samples: Vec<Sample> = Vec::new();
    let mut state = State::Outside;
    for (index, raw) in log.lines().enumerate() {
        let number = index + 1;
        let line = raw.trim();
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() == Some(&MARKER) {
            if let State::BeforeHeader(start) = state {
                return Err(no_table(start));
            }
            let t_ms = match words.as_slice() {
                [_, time] => time.strip_prefix("t_ms=").and_then(|t| t.parse().ok()),
                _ => None,
            }
            .ok_or_else(|| {
                error(
                    number,
                    format!("`{line}`: expected `{MARKER} t_ms=<guest ms>`"),
                )
            })?;
            if let Some(previous) = samples.last()
                && t_ms < previous.t_ms
            {
                return Err(error(
                    number,
                    format!(
                        "t_ms={t_ms} is earlier than the previous sample's t_ms={}",
                        previous.t_ms
                    ),
                ));
            }
            samples.push(Sample {
                t_ms,
                generations: Vec::new(),
            });
            state = State::BeforeHeader(number);
            continue;
        }
        match state {
            State::BeforeHeader(_) if words == HEADER => state = State::Rows,
            State::Rows if words.first().is_some_and(|w| w.parse::<u64>().is_ok()) => {
                let generation = row(&words).ok_or_else(|| {
                    error(
                        number,
                        format!(
                            "generation row `{line}`: expected four numbers `{}`",
                            HEADER.join(" ")
                        ),
                    )
                })?;
                if let Some(sample) = samples.last_mut() {
                    sample.generations.push(generation);
                }
            }
            State::Rows => state = State::AfterTable,
            State::Outside | State::BeforeHeader(_) | State::AfterTable => {}
        }
    }
    if let State::BeforeHeader(start) = state {
        return Err(no_table(start));
    }
    if samples.is_empty() {
        return Err(error(
            0,
            format!("no `{MARKER}` lines (the kernel's `lru watch INTERVAL_MS COUNT` prints them)"),
        ));
    }
    Ok(samples)
}

fn no_table(line: usize) -> LogError {
    error(
        line,
        format!(
            "this sample has no MGLRU generation table (header `{}`): is the policy mglru?",
            HEADER.join(" ")
        ),
    )
}

fn row(words: &[&str]) -> Option<Generation> {
    let [seq, age_ms, anon, file] = words else {
        return None;
    };
    Some(Generation {
        seq: seq.parse().ok()?,
        age_ms: age_ms.parse().ok()?,
        anon: anon.parse().ok()?,
        file: file.parse().ok()?,
    })
}

/// Width of the plot area and height of the figure, in pixels.
const PLOT_W: f64 = 700.0;
const HEIGHT: f64 = 480.0;

/// The plot: x = guest time since the first sample (ms), y = pages (anonymous and file), one
/// line per generation labelled with its seq at its peak, and the total of all generations
/// dashed.
///
/// A generation's line runs from its birth to its disappearance: it starts at 0 pages at the
/// last sample without it (unless it was there in the first sample) and drops to 0 at the first
/// sample after it left the table (MGLRU retires the oldest generation when it is empty).
pub fn svg(samples: &[Sample], title: &str) -> String {
    let t0 = samples.first().map_or(0, |s| s.t_ms);
    let x_of = |sample: &Sample| (sample.t_ms - t0) as f64;
    let mut lines: BTreeMap<u64, Vec<(f64, f64)>> = BTreeMap::new();
    for (index, sample) in samples.iter().enumerate() {
        for generation in &sample.generations {
            let points = lines.entry(generation.seq).or_insert_with(|| match index {
                0 => Vec::new(),
                _ => vec![(x_of(&samples[index - 1]), 0.0)],
            });
            points.push((x_of(sample), generation.pages() as f64));
        }
        if index > 0 {
            for generation in &samples[index - 1].generations {
                if !sample.generations.iter().any(|g| g.seq == generation.seq)
                    && let Some(points) = lines.get_mut(&generation.seq)
                {
                    points.push((x_of(sample), 0.0));
                }
            }
        }
    }
    let totals: Vec<(f64, f64)> = samples
        .iter()
        .map(|s| {
            (
                x_of(s),
                s.generations.iter().map(Generation::pages).sum::<u64>() as f64,
            )
        })
        .collect();
    let mut series: Vec<Series> = lines
        .into_iter()
        .map(|(seq, points)| Series {
            name: format!("seq {seq}"),
            color: svg::COLORS[seq as usize % svg::COLORS.len()],
            dashed: false,
            points,
            peak_label: Some(seq.to_string()),
        })
        .collect();
    let y_max = totals.iter().map(|p| p.1).fold(0.0, f64::max);
    series.push(Series {
        name: "total".into(),
        color: "#000",
        dashed: true,
        points: totals,
        peak_label: None,
    });
    let right = svg::legend_width(series.len(), HEIGHT);
    let width = svg::LEFT + PLOT_W + right;
    let panel = Panel {
        top: 0.0,
        width,
        height: HEIGHT,
        right,
        title: title.to_string(),
        x: Axis::from_zero(
            "guest time since the first sample (ms)",
            samples.last().map_or(0.0, x_of),
        ),
        y: Axis::from_zero("pages (4 KiB) per generation", y_max),
    };
    let mut body = String::new();
    panel.draw(&mut body, &series);
    svg::document(width, HEIGHT, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three samples in a console log, as `lru watch` prints them, with other output around.
    const LOG: &str = "\
[    0.003733] INFO  swap: blk1: 65536 slots (256 MiB)\r
> run stress zipf 4096 65536 0 1 &\r
started task 4\r
> lru watch 10 3\r
policy=mglru\r
lru_sample t_ms=23\r
mglru max_seq 5 min_seq anon 3 file 3 tracked 2020\r
     seq     age_ms  nr_anon  nr_file\r
       3         23     1468        0\r
       4          5        0        0\r
       5          5      552        0\r
tiers evicted up to: anon 3 file 3 (higher tiers are protected)\r
    tier type  refaulted    evicted  protected\r
       0 anon          0          0          0\r
agings 1 walked 1 skipped_spaces 0\r
lru_sample t_ms=33\r
mglru max_seq 6 min_seq anon 3 file 3 tracked 2037\r
     seq     age_ms  nr_anon  nr_file\r
       3         33      553        0\r
       4         15        0        0\r
       5         15     1083        0\r
       6          2      401        0\r
tiers evicted up to: anon 3 file 3 (higher tiers are protected)\r
stress zipf pages=4096 accesses=65536: verified=ok\r
lru_sample t_ms=43\r
mglru max_seq 7 min_seq anon 5 file 5 tracked 2016\r
     seq     age_ms  nr_anon  nr_file\r
       5         25      438        0\r
       6         12     1310        2\r
       7          1      264        0\r
tiers evicted up to: anon 3 file 3 (higher tiers are protected)\r
";

    #[test]
    fn samples_come_from_the_generation_tables_only() {
        let samples = parse(LOG).unwrap();
        assert_eq!(samples.len(), 3);
        assert_eq!(
            samples.iter().map(|s| s.t_ms).collect::<Vec<_>>(),
            [23, 33, 43]
        );
        assert_eq!(
            samples[0].generations,
            [
                Generation {
                    seq: 3,
                    age_ms: 23,
                    anon: 1468,
                    file: 0
                },
                Generation {
                    seq: 4,
                    age_ms: 5,
                    anon: 0,
                    file: 0
                },
                Generation {
                    seq: 5,
                    age_ms: 5,
                    anon: 552,
                    file: 0
                },
            ]
        );
        // The tier table (numbers too) is not mistaken for generations.
        assert_eq!(samples[1].generations.len(), 4);
        assert_eq!(samples[2].generations[1].pages(), 1312);
    }

    fn parse_error(log: &str) -> String {
        parse(log).unwrap_err().to_string()
    }

    #[test]
    fn malformed_logs_are_reported_with_their_line_number() {
        let bad_row = LOG.replace(
            "       4         15        0",
            "       4         15        x",
        );
        assert_eq!(
            parse_error(&bad_row),
            "line 20: generation row `4         15        x        0`: expected four numbers `seq age_ms nr_anon nr_file`"
        );
        let short_row = LOG.replace(
            "       5         25      438        0",
            "       5         25",
        );
        assert_eq!(
            parse_error(&short_row),
            "line 28: generation row `5         25`: expected four numbers `seq age_ms nr_anon nr_file`"
        );
        let bad_time = LOG.replace("lru_sample t_ms=33", "lru_sample t_ms=3x");
        assert_eq!(
            parse_error(&bad_time),
            "line 16: `lru_sample t_ms=3x`: expected `lru_sample t_ms=<guest ms>`"
        );
        let backwards = LOG.replace("lru_sample t_ms=43", "lru_sample t_ms=13");
        assert_eq!(
            parse_error(&backwards),
            "line 25: t_ms=13 is earlier than the previous sample's t_ms=33"
        );
        let clock = "lru_sample t_ms=5\nclock hand 3 resident 10\nlru_sample t_ms=6\n";
        assert_eq!(
            parse_error(clock),
            "line 1: this sample has no MGLRU generation table (header `seq age_ms nr_anon nr_file`): is the policy mglru?"
        );
        assert_eq!(
            parse_error("lru_sample t_ms=5\nclock hand 3\n"),
            "line 1: this sample has no MGLRU generation table (header `seq age_ms nr_anon nr_file`): is the policy mglru?"
        );
        assert_eq!(
            parse_error("> lru watch 10 0\nerror: lru: watch: COUNT must be at least 1\n"),
            "no `lru_sample` lines (the kernel's `lru watch INTERVAL_MS COUNT` prints them)"
        );
    }

    /// The `points` of the series whose legend entry is `name` (each polyline comes just
    /// before its legend entry).
    fn points_of<'a>(image: &'a str, name: &str) -> &'a str {
        let legend = image
            .find(&format!(">{name}</text>"))
            .unwrap_or_else(|| panic!("no legend entry {name}: {image}"));
        let polyline = image[..legend].rfind("<polyline").unwrap();
        let start = image[polyline..].find("points=\"").unwrap() + polyline + 8;
        let end = image[start..].find('"').unwrap() + start;
        &image[start..end]
    }

    #[test]
    fn each_generation_is_a_line_from_birth_to_disappearance() {
        let samples = parse(LOG).unwrap();
        let image = svg(&samples, "zipf <under> memlimit=8");
        assert!(svg::well_formed(&image).is_ok(), "{image}");
        // seq 3..=7 and the total.
        assert_eq!(image.matches("<polyline").count(), 6);
        assert!(image.contains(">guest time since the first sample (ms)</text>"));
        assert!(image.contains(">pages (4 KiB) per generation</text>"));
        assert!(image.contains(">zipf &lt;under&gt; memlimit=8</text>"));
        // x: 0..20 ms over 700 pixels from x=70; y: 0..2500 pages over 390 pixels from y=40.
        let x = |ms: f64| 70.0 + 700.0 * ms / 20.0;
        let y = |pages: f64| 40.0 + 390.0 * (1.0 - pages / 2500.0);
        let point = |ms: f64, pages: f64| format!("{:.1},{:.1}", x(ms), y(pages));
        // seq 3 lives in the first two samples and drops to 0 at the third.
        assert_eq!(
            points_of(&image, "seq 3"),
            [point(0.0, 1468.0), point(10.0, 553.0), point(20.0, 0.0)].join(" ")
        );
        // seq 6 is born after the first sample: it starts at 0 there.
        assert_eq!(
            points_of(&image, "seq 6"),
            [point(0.0, 0.0), point(10.0, 401.0), point(20.0, 1312.0)].join(" ")
        );
        // Each generation's seq labels its peak (seq 6: 1312 pages at 20 ms); seq 4 never held
        // a page and has no label.
        assert!(!image.contains(">4</text>"), "{image}");
        assert!(
            image.contains(&format!(
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle" font-size="10" fill="{}">6</text>"#,
                x(20.0),
                y(1312.0) - 4.0,
                svg::COLORS[6]
            )),
            "{image}"
        );
        assert_eq!(
            points_of(&image, "total"),
            [point(0.0, 2020.0), point(10.0, 2037.0), point(20.0, 2014.0)].join(" ")
        );
    }
}
