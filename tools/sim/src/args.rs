//! Command-line parsing (hand-rolled: a handful of options do not need a parser crate).

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;

use reclaim::PolicyKind;
use reclaim::workload::WorkloadKind;

/// `--help` text.
pub const HELP: &str = "\
sim: replay a page-reference trace through every reclaim policy and Belady's OPT

USAGE:
    cargo sim -- [--workload NAME|all | --trace FILE|-] [--frames N,... | --frames-pct P,...]
                 [options]

SOURCE (default: --workload all):
    --workload NAME|all   built-in workload: uniform, zipf, hotscan, loop, phase, or all
    --trace FILE|-        Valgrind Lackey trace (`valgrind --tool=lackey --trace-mem=yes`),
                          `-` for standard input; page = address >> 12, S and M are writes
    --seed N              workload seed (default 1)
    --pages N             workload footprint in pages (default 16384 = 64 MiB)
    --accesses N          workload length (default 2000000)
    --strict              stop at the first malformed trace line (default: skip and count)

MEMORY SIZES (default: --frames-pct 10,20,30,40,50,60,70,80,90,100):
    --frames N[,N...]     memory sizes in 4 KiB frames
    --frames-pct P[,P...] memory sizes in percent of the footprint (1..=100)

POLICIES AND OUTPUT:
    --policies A[,B...]   policies to run: mglru, lru2, clock, clockpro (default: all);
                          OPT always runs, as the reference
    --min-ttl-ms N        MGLRU thrash protection (default 0: off)
    --csv                 print CSV: source,policy,frames,faults,faults_vs_opt,swap_writes
    --svg PATH            also write a plot of faults/OPT against memory size
    --jobs N              simulations in parallel (default: available CPUs)
    --emit-lackey PATH    write the (single) --workload as a Lackey trace and exit
    -h, --help            this text

MGLRU GENERATIONS PLOT (instead of a simulation; `cargo xtask plots` runs it):
    --lru-log FILE        a kernel console log with the samples of `lru watch INTERVAL_MS COUNT`:
                          with --svg PATH, plot each generation's pages against guest time
    --title TEXT          the plot's title (with --lru-log)

The table shows, per memory size, each policy's page faults (first touches included), the
ratio to OPT's faults, and pages written to swap (dirty or never-swapped pages cost a write).
OPT gets the frames a policy can fill: the memory size minus the low-watermark reserve that the
memory model keeps free (frames / 512 of them; none under 512 frames).
";

/// Where accesses come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// Built-in workloads.
    Workloads(Vec<WorkloadKind>),
    /// A Lackey trace file, or standard input (`None`).
    Trace(Option<PathBuf>),
}

/// Memory sizes to simulate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sizes {
    /// Absolute frame counts.
    Frames(Vec<u32>),
    /// Percentages of the footprint.
    Percent(Vec<u32>),
}

/// A run's options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    pub source: Source,
    pub sizes: Sizes,
    pub policies: Vec<PolicyKind>,
    pub seed: u64,
    pub pages: u32,
    pub accesses: u64,
    pub strict: bool,
    pub min_ttl_ms: u64,
    pub csv: bool,
    pub svg: Option<PathBuf>,
    pub jobs: Option<usize>,
    pub emit_lackey: Option<PathBuf>,
}

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Print [`HELP`].
    Help,
    /// Simulate.
    Run(Options),
    /// Plot MGLRU generations from a kernel log.
    Generations(GenerationsPlot),
}

/// `--lru-log FILE --svg PATH [--title TEXT]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GenerationsPlot {
    pub log: PathBuf,
    pub svg: PathBuf,
    pub title: String,
}

/// Default title of the generations plot.
pub const GENERATIONS_TITLE: &str = "MGLRU generation sizes over time";

/// The options of a simulation, which `--lru-log` does not take.
const SIMULATION_OPTIONS: &[&str] = &[
    "--workload",
    "--trace",
    "--seed",
    "--pages",
    "--accesses",
    "--strict",
    "--frames",
    "--frames-pct",
    "--policies",
    "--min-ttl-ms",
    "--csv",
    "--jobs",
    "--emit-lackey",
];

/// A command line that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArgError {
    /// An option this program does not have.
    Unknown(String),
    /// An option given without its value.
    MissingValue(&'static str),
    /// A value that does not parse or is out of range.
    BadValue {
        option: &'static str,
        value: String,
        reason: String,
    },
    /// Two options that exclude each other.
    Conflict(&'static str, &'static str),
    /// An argument that is not UTF-8.
    NotUtf8(OsString),
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgError::Unknown(arg) => write!(f, "unknown argument `{arg}` (see --help)"),
            ArgError::MissingValue(option) => write!(f, "{option} needs a value"),
            ArgError::BadValue {
                option,
                value,
                reason,
            } => write!(f, "{option} `{value}`: {reason}"),
            ArgError::Conflict(a, b) => write!(f, "{a} and {b} cannot be used together"),
            ArgError::NotUtf8(arg) => write!(f, "argument {arg:?} is not valid UTF-8"),
        }
    }
}

impl std::error::Error for ArgError {}

fn bad(option: &'static str, value: &str, reason: impl fmt::Display) -> ArgError {
    ArgError::BadValue {
        option,
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

fn number<T>(option: &'static str, value: &str, min: T) -> Result<T, ArgError>
where
    T: std::str::FromStr + PartialOrd + fmt::Display + Copy,
    T::Err: fmt::Display,
{
    let parsed: T = value
        .replace('_', "")
        .parse()
        .map_err(|e| bad(option, value, e))?;
    if parsed < min {
        return Err(bad(option, value, format_args!("must be at least {min}")));
    }
    Ok(parsed)
}

fn list<T>(
    option: &'static str,
    value: &str,
    item: impl Fn(&str) -> Result<T, ArgError>,
) -> Result<Vec<T>, ArgError> {
    if value.is_empty() {
        return Err(bad(option, value, "empty list"));
    }
    value.split(',').map(item).collect()
}

/// Parse the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Command, ArgError> {
    let mut options = Options {
        source: Source::Workloads(WorkloadKind::ALL.to_vec()),
        sizes: Sizes::Percent((1..=10).map(|i| i * 10).collect()),
        policies: PolicyKind::ALL.to_vec(),
        seed: 1,
        pages: 16384,
        accesses: 2_000_000,
        strict: false,
        min_ttl_ms: 0,
        csv: false,
        svg: None,
        jobs: None,
        emit_lackey: None,
    };
    let (mut workload_given, mut trace_given, mut frames_given, mut pct_given) =
        (false, false, false, false);
    let (mut lru_log, mut title, mut simulation_option) = (None, None, None);
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let arg = arg.into_string().map_err(ArgError::NotUtf8)?;
        let (name, inline) = match arg.split_once('=') {
            Some((name, value)) if name.starts_with("--") => {
                (name.to_string(), Some(value.to_string()))
            }
            _ => (arg.clone(), None),
        };
        let flag = |value: &Option<String>| match value {
            Some(_) => Err(ArgError::Unknown(arg.clone())),
            None => Ok(true),
        };
        let mut value = |option: &'static str| -> Result<String, ArgError> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => args
                    .next()
                    .ok_or(ArgError::MissingValue(option))?
                    .into_string()
                    .map_err(ArgError::NotUtf8),
            }
        };
        if let Some(option) = SIMULATION_OPTIONS.iter().find(|option| **option == name) {
            simulation_option.get_or_insert(*option);
        }
        match name.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--lru-log" => lru_log = Some(PathBuf::from(value("--lru-log")?)),
            "--title" => title = Some(value("--title")?),
            "--workload" => {
                let v = value("--workload")?;
                let kinds = if v == "all" {
                    WorkloadKind::ALL.to_vec()
                } else {
                    list("--workload", &v, |name| {
                        name.parse().map_err(|e| bad("--workload", name, e))
                    })?
                };
                options.source = Source::Workloads(kinds);
                workload_given = true;
            }
            "--trace" => {
                let v = value("--trace")?;
                options.source = Source::Trace(if v == "-" {
                    None
                } else {
                    Some(PathBuf::from(v))
                });
                trace_given = true;
            }
            "--frames" => {
                let v = value("--frames")?;
                options.sizes =
                    Sizes::Frames(list("--frames", &v, |n| number("--frames", n, 1u32))?);
                frames_given = true;
            }
            "--frames-pct" => {
                let v = value("--frames-pct")?;
                let pcts = list("--frames-pct", &v, |p| {
                    let pct = number("--frames-pct", p, 1u32)?;
                    if pct > 100 {
                        Err(bad("--frames-pct", p, "must be at most 100"))
                    } else {
                        Ok(pct)
                    }
                })?;
                options.sizes = Sizes::Percent(pcts);
                pct_given = true;
            }
            "--policies" => {
                let v = value("--policies")?;
                options.policies = list("--policies", &v, |name| {
                    name.parse().map_err(|e| bad("--policies", name, e))
                })?;
            }
            "--seed" => options.seed = number("--seed", &value("--seed")?, 0u64)?,
            "--pages" => options.pages = number("--pages", &value("--pages")?, 1u32)?,
            "--accesses" => options.accesses = number("--accesses", &value("--accesses")?, 1u64)?,
            "--min-ttl-ms" => {
                options.min_ttl_ms = number("--min-ttl-ms", &value("--min-ttl-ms")?, 0u64)?
            }
            "--jobs" => options.jobs = Some(number("--jobs", &value("--jobs")?, 1usize)?),
            "--svg" => options.svg = Some(PathBuf::from(value("--svg")?)),
            "--emit-lackey" => options.emit_lackey = Some(PathBuf::from(value("--emit-lackey")?)),
            "--csv" => options.csv = flag(&inline)?,
            "--strict" => options.strict = flag(&inline)?,
            _ => return Err(ArgError::Unknown(arg)),
        }
    }
    if let Some(log) = lru_log {
        if let Some(option) = simulation_option {
            return Err(ArgError::Conflict("--lru-log", option));
        }
        let Some(svg) = options.svg else {
            return Err(bad("--lru-log", &log.to_string_lossy(), "needs --svg PATH"));
        };
        return Ok(Command::Generations(GenerationsPlot {
            log,
            svg,
            title: title.unwrap_or_else(|| GENERATIONS_TITLE.to_string()),
        }));
    }
    if let Some(title) = title {
        return Err(bad("--title", &title, "only with --lru-log"));
    }
    if workload_given && trace_given {
        return Err(ArgError::Conflict("--workload", "--trace"));
    }
    if frames_given && pct_given {
        return Err(ArgError::Conflict("--frames", "--frames-pct"));
    }
    if options.emit_lackey.is_some()
        && !matches!(&options.source, Source::Workloads(kinds) if kinds.len() == 1)
    {
        return Err(bad("--emit-lackey", "", "needs exactly one --workload"));
    }
    Ok(Command::Run(options))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Options, ArgError> {
        match parse(args.iter().map(OsString::from))? {
            Command::Run(options) => Ok(options),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn defaults_are_all_workloads_at_ten_sizes() {
        let options = run(&[]).unwrap();
        assert_eq!(
            options.source,
            Source::Workloads(WorkloadKind::ALL.to_vec())
        );
        assert_eq!(
            options.sizes,
            Sizes::Percent(vec![10, 20, 30, 40, 50, 60, 70, 80, 90, 100])
        );
        assert_eq!(options.policies, PolicyKind::ALL);
        assert!(!options.csv && options.svg.is_none());
    }

    #[test]
    fn parses_every_option() {
        let options = run(&[
            "--trace=-",
            "--frames",
            "100,2_000",
            "--policies",
            "mglru,clock",
            "--csv",
            "--svg",
            "out.svg",
            "--strict",
            "--min-ttl-ms",
            "1000",
            "--jobs=2",
        ])
        .unwrap();
        assert_eq!(options.source, Source::Trace(None));
        assert_eq!(options.sizes, Sizes::Frames(vec![100, 2000]));
        assert_eq!(options.policies, [PolicyKind::Mglru, PolicyKind::Clock]);
        assert!(options.csv && options.strict);
        assert_eq!(options.svg, Some(PathBuf::from("out.svg")));
        assert_eq!((options.min_ttl_ms, options.jobs), (1000, Some(2)));
        let options = run(&[
            "--workload",
            "zipf,loop",
            "--seed",
            "7",
            "--pages",
            "64",
            "--accesses",
            "1000",
        ])
        .unwrap();
        assert_eq!(
            options.source,
            Source::Workloads(vec![WorkloadKind::Zipf, WorkloadKind::Loop])
        );
        assert_eq!(
            (options.seed, options.pages, options.accesses),
            (7, 64, 1000)
        );
        assert_eq!(parse([OsString::from("-h")]), Ok(Command::Help));
    }

    #[test]
    fn bad_command_lines_say_what_is_wrong() {
        let cases: [(&[&str], &str); 10] = [
            (&["--bogus"], "unknown argument `--bogus` (see --help)"),
            (&["--frames"], "--frames needs a value"),
            (&["--frames", "0"], "--frames `0`: must be at least 1"),
            (
                &["--frames", "12,x"],
                "--frames `x`: invalid digit found in string",
            ),
            (
                &["--frames-pct", "150"],
                "--frames-pct `150`: must be at most 100",
            ),
            (
                &["--policies", "lru"],
                "--policies `lru`: unknown reclaim policy `lru`; expected one of: mglru, lru2, clock, clockpro",
            ),
            (
                &["--workload", "scan"],
                "--workload `scan`: unknown workload; expected one of: uniform, zipf, hotscan, loop, phase",
            ),
            (
                &["--workload", "zipf", "--trace", "x"],
                "--workload and --trace cannot be used together",
            ),
            (
                &["--frames", "1", "--frames-pct", "5"],
                "--frames and --frames-pct cannot be used together",
            ),
            (&["--csv=yes"], "unknown argument `--csv=yes` (see --help)"),
        ];
        for (args, message) in cases {
            assert_eq!(run(args).unwrap_err().to_string(), message, "{args:?}");
        }
        assert_eq!(
            run(&["--emit-lackey", "x"]).unwrap_err().to_string(),
            "--emit-lackey ``: needs exactly one --workload"
        );
        assert_eq!(
            run(&["--policies", ""]).unwrap_err().to_string(),
            "--policies ``: empty list"
        );
    }

    #[test]
    fn lru_log_plots_generations_and_takes_no_simulation_option() {
        let plot = |args: &[&str]| parse(args.iter().map(OsString::from));
        assert_eq!(
            plot(&["--lru-log", "k.log", "--svg", "g.svg"]),
            Ok(Command::Generations(GenerationsPlot {
                log: PathBuf::from("k.log"),
                svg: PathBuf::from("g.svg"),
                title: GENERATIONS_TITLE.to_string(),
            }))
        );
        assert_eq!(
            plot(&["--title=zipf", "--svg", "g.svg", "--lru-log", "k.log"]),
            Ok(Command::Generations(GenerationsPlot {
                log: PathBuf::from("k.log"),
                svg: PathBuf::from("g.svg"),
                title: "zipf".to_string(),
            }))
        );
        assert_eq!(
            plot(&["--lru-log", "k.log"]).unwrap_err().to_string(),
            "--lru-log `k.log`: needs --svg PATH"
        );
        assert_eq!(
            run(&["--title", "x"]).unwrap_err().to_string(),
            "--title `x`: only with --lru-log"
        );
        let values = [
            "zipf", "t", "1", "1", "1", "", "1", "1", "mglru", "0", "", "1", "x",
        ];
        for (option, value) in SIMULATION_OPTIONS.iter().zip(values) {
            let mut args = vec!["--lru-log", "k.log", "--svg", "g.svg", option];
            if !value.is_empty() {
                args.push(value);
            }
            assert_eq!(
                plot(&args).unwrap_err().to_string(),
                format!("--lru-log and {option} cannot be used together"),
                "{args:?}"
            );
        }
        assert_eq!(SIMULATION_OPTIONS.len(), values.len());
    }
}
