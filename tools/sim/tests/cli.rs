//! The simulator binary end to end: help, errors, CSV, SVG, Lackey input, generations plot.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn sim(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sim"))
        .args(args)
        .output()
        .expect("run sim")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("sim-cli-{}-{name}", std::process::id()))
}

#[test]
fn help_describes_usage() {
    let output = sim(&["--help"]);
    assert!(output.status.success());
    let text = stdout(&output);
    assert!(
        text.contains("USAGE:") && text.contains("--trace FILE|-") && text.contains("--frames-pct")
    );
}

#[test]
fn bad_arguments_exit_with_status_2_and_a_message() {
    let output = sim(&["--frames-pct", "0"]);
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(
        stderr(&output),
        "sim: --frames-pct `0`: must be at least 1\n"
    );
    let output = sim(&["--trace", "/nonexistent/trace.txt"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).starts_with("sim: cannot open /nonexistent/trace.txt: "),
        "{}",
        stderr(&output)
    );
}

#[test]
fn csv_has_one_row_per_policy_and_size_including_opt() {
    let output = sim(&[
        "--workload",
        "loop,zipf",
        "--pages",
        "200",
        "--accesses",
        "5000",
        "--frames-pct",
        "25,50",
        "--csv",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "source,policy,frames,faults,faults_vs_opt,swap_writes"
    );
    // 2 workloads x 2 sizes x (OPT + 4 policies).
    assert_eq!(lines.len(), 1 + 2 * 2 * 5);
    // OPT on a 200-page loop with 50 frames: 200 cold faults, then 150 per later round of 200.
    assert!(
        lines[1].starts_with("loop,opt,50,3800,1.0000,"),
        "{}",
        lines[1]
    );
    // A loop over 200 pages with 50 frames: every access faults under LRU-like policies.
    assert!(lines[2].starts_with("loop,mglru,50,5000,"), "{}", lines[2]);
    assert!(lines.iter().skip(1).all(|l| l.split(',').count() == 6));
}

#[test]
fn policies_can_be_restricted_and_an_svg_written() {
    let svg = temp("plot.svg");
    let output = sim(&[
        "--workload",
        "hotscan",
        "--pages",
        "256",
        "--accesses",
        "4000",
        "--frames-pct",
        "20,60",
        "--policies",
        "mglru,clockpro",
        "--svg",
        svg.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let table = stdout(&output);
    assert!(
        table.starts_with("== hotscan: 256 pages, 4000 accesses\n"),
        "{table}"
    );
    assert!(table.contains(" mglru ") && table.contains(" clockpro ") && !table.contains(" lru2 "));
    let image = std::fs::read_to_string(&svg).unwrap();
    std::fs::remove_file(&svg).unwrap();
    assert!(image.starts_with("<svg ") && image.trim_end().ends_with("</svg>"));
    assert_eq!(image.matches("<polyline").count(), 3);
}

#[test]
fn a_lackey_trace_replays_like_the_workload_it_was_emitted_from() {
    let trace = temp("zipf.lackey");
    let common = ["--pages", "300", "--accesses", "6000", "--seed", "9"];
    let output = sim(&[
        &[
            "--workload",
            "zipf",
            "--emit-lackey",
            trace.to_str().unwrap(),
        ],
        &common[..],
    ]
    .concat());
    assert!(output.status.success(), "{}", stderr(&output));
    let sizes = ["--frames", "40,150", "--csv"];
    let from_workload = stdout(&sim(
        &[&["--workload", "zipf"], &common[..], &sizes[..]].concat()
    ));
    let from_trace = stdout(&sim(
        &[&["--trace", trace.to_str().unwrap()], &sizes[..]].concat()
    ));
    // Same pages in the same leaf tables, so the same decisions; only the source name differs.
    let trace_name = trace.file_name().unwrap().to_str().unwrap();
    assert_eq!(from_trace.replace(trace_name, "zipf"), from_workload);
    // The same trace on standard input, with a malformed line and a banner added.
    let mut text = std::fs::read_to_string(&trace).unwrap();
    std::fs::remove_file(&trace).unwrap();
    text.insert_str(0, "program output\n==1== banner\n");
    let mut child = Command::new(env!("CARGO_BIN_EXE_sim"))
        .args(["--trace", "-", "--frames", "40,150", "--csv"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), text.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    assert_eq!(stdout(&output).replace("stdin", "zipf"), from_workload);
    assert!(
        stderr(&output)
            .contains("skipped 1 malformed line(s); first at line 1: \"program output\"")
    );
    // Strict mode stops there instead.
    let mut child = Command::new(env!("CARGO_BIN_EXE_sim"))
        .args(["--trace", "-", "--strict"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), b" L 1000,4\n L oops\n").unwrap();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output),
        "sim: malformed Lackey line 2: expected `address,size`: \" L oops\"\n"
    );
}

#[test]
fn opt_gets_the_frames_a_policy_can_fill() {
    // 1024 frames for a 1024-page loop: the model keeps the low watermark (2 frames) free, so no
    // policy can hold the whole loop, and neither may OPT, the floor they are measured against.
    let output = sim(&[
        "--workload",
        "loop",
        "--pages",
        "1024",
        "--accesses",
        "10240",
        "--frames",
        "1024",
        "--csv",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let faults: Vec<(&str, u64)> = text
        .lines()
        .skip(1)
        .map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            (fields[1], fields[3].parse().unwrap())
        })
        .collect();
    assert_eq!(faults[0].0, "opt");
    // With 1022 frames OPT faults 1024 cold, then 2 per later round of the loop (9 rounds): 1042,
    // not the 1024 cold faults alone that the whole machine would give it.
    assert_eq!(faults[0].1, 1042, "{text}");
    assert!(faults.iter().all(|&(_, f)| f >= faults[0].1), "{text}");
}

#[test]
fn lru_watch_samples_become_a_generations_plot_and_bad_ones_name_their_line() {
    let log = temp("lru-watch.log");
    let svg = temp("generations.svg");
    let sample = |t_ms: u32, rows: &str| {
        format!(
            "lru_sample t_ms={t_ms}\nmglru max_seq 5 min_seq anon 4 file 4 tracked 9\n\
             \x20    seq     age_ms  nr_anon  nr_file\n{rows}tiers evicted up to: anon 3 file 3\n"
        )
    };
    let good = format!(
        "> lru watch 10 2\npolicy=mglru\n{}{}",
        sample(
            5,
            "       4          5        6        0\n       5          1        3        0\n"
        ),
        sample(15, "       5         11        9        0\n")
    );
    std::fs::write(&log, &good).unwrap();
    let args = [
        "--lru-log",
        log.to_str().unwrap(),
        "--svg",
        svg.to_str().unwrap(),
    ];
    let output = sim(&args);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).starts_with("sim: 2 samples over 10 ms of guest time -> "),
        "{}",
        stderr(&output)
    );
    let image = std::fs::read_to_string(&svg).unwrap();
    assert!(image.contains(">seq 4</text>") && image.contains(">seq 5</text>"));
    assert!(image.contains(">MGLRU generation sizes over time</text>"));
    // Line 12 is the second sample's row.
    std::fs::write(
        &log,
        good.replace("       5         11        9", "       5         11"),
    )
    .unwrap();
    let output = sim(&args);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output),
        format!(
            "sim: {}: line 12: generation row `5         11        0`: expected four numbers `seq age_ms nr_anon nr_file`\n",
            log.display()
        )
    );
    std::fs::remove_file(&log).ok();
    std::fs::remove_file(&svg).ok();
}
