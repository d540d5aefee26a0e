//! Guest and host agree on the disk byte for byte: the kernel's `blk sum` of an image the host
//! wrote equals the host's CRC-32, and what `blk write` wrote is in the image file afterwards,
//! exactly there and nowhere else. Both virtio-mmio transports.
//!
//! Needs QEMU and the aarch64 target (tools/setup.sh); builds the kernel with a nested cargo.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use support::{assert_contains, built_kernel_image, output_of, workspace};

const SECTOR: usize = 512;
const DISK_BYTES: usize = 16 << 20;

/// The kernel binary, built once per test process.
fn kernel() -> &'static Path {
    static KERNEL: OnceLock<PathBuf> = OnceLock::new();
    built_kernel_image(&KERNEL, &["--bin", "kernel"], "kernel")
}

/// A fresh disk image `target/qemu/virtio-disk-test-<name>.img` holding `content`.
fn scratch_image(name: &str, content: &[u8]) -> PathBuf {
    let dir = workspace().join("target/qemu");
    std::fs::create_dir_all(&dir).expect("target/qemu");
    let image = dir.join(format!("virtio-disk-test-{name}.img"));
    std::fs::write(&image, content).expect("image written");
    image
}

/// Reproducible pseudo-random bytes (xorshift64).
fn random_bytes(len: usize, mut state: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Boots the kernel with `disk` as blk0 and runs the `;`-separated shell `script`; returns
/// the exit code and the console output.
fn run_script(disk: &Path, extra_qemu_args: &str, script: &str) -> (Option<i32>, String) {
    let result = output_of(
        Command::new(env!("CARGO_BIN_EXE_runner"))
            .arg(kernel())
            .args(script.split_whitespace())
            .env("RUNNER_MODE", "run")
            .env("QEMU_DISK", disk)
            .env("QEMU_EXTRA_ARGS", extra_qemu_args)
            .env("QEMU_TIMEOUT", "120")
            .env_remove("QEMU_CPU")
            .env_remove("QEMU_ICOUNT")
            .stdin(Stdio::null()),
    );
    // The runner adds a swap disk beside the data disk.
    let _ = std::fs::remove_file(disk.with_extension("swap.img"));
    result
}

/// [`run_script`] for a script that must succeed; the console output.
fn run_kernel(disk: &Path, extra_qemu_args: &str, script: &str) -> String {
    let (code, text) = run_script(disk, extra_qemu_args, script);
    assert_eq!(code, Some(0), "{text}");
    text
}

/// The values of every `crc32=` line, in order.
fn crc_lines(text: &str) -> Vec<u32> {
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("crc32=0x"))
        .map(|hex| u32::from_str_radix(hex.trim(), 16).expect("crc32 is hex"))
        .collect()
}

fn sectors(bytes: &[u8], first: usize, count: usize) -> &[u8] {
    &bytes[first * SECTOR..(first + count) * SECTOR]
}

fn round_trip(transport: &str, extra_qemu_args: &str) {
    let original = random_bytes(DISK_BYTES, 0x5eed_0000 + transport.len() as u64);
    let image = scratch_image(transport, &original);

    let text = run_kernel(
        &image,
        extra_qemu_args,
        "blk sum blk0 1000 300 ; blk sum blk0 32760 8 ; blk write blk0 2001 0xa5 3 ; \
         blk write blk0 32767 guest-wrote-this ; blk sum blk0 2000 5 ; blk flush blk0 ; \
         blk ; blk read blk0 2001 ; blk resize blk0 64 ; blk stats blk0",
    );
    assert_contains(
        &text,
        &[
        format!("({transport})"),
        format!("blk0 transport={transport} "),
        " capacity=32768 bytes=16777216 queue=256 queue_max=1024 mode=irq resize=fixed serial=disk0 "
            .to_string(),
        format!("000fa200  {}  |{}|", ["a5"; 16].join(" "), ".".repeat(16)),
        "queue_size=64".to_string(),
        "resize=device_reset".to_string(),
        "resizes_by_device_reset=1".to_string(),
        "failure=none".to_string(),
        ],
    );
    let crcs = crc_lines(&text);
    assert_eq!(crcs.len(), 3, "{text}");

    // Host -> guest: the guest reads what the host wrote.
    assert_eq!(crcs[0], crc32fast::hash(sectors(&original, 1000, 300)));
    assert_eq!(crcs[1], crc32fast::hash(sectors(&original, 32760, 8)));

    // Guest -> host: the image is the original with exactly the guest's writes applied.
    let mut expected = original.clone();
    expected[2001 * SECTOR..2004 * SECTOR].fill(0xa5);
    let text_pattern = b"guest-wrote-this";
    for (i, byte) in expected[32767 * SECTOR..32768 * SECTOR]
        .iter_mut()
        .enumerate()
    {
        *byte = text_pattern[i % text_pattern.len()];
    }
    let after = std::fs::read(&image).expect("image read back");
    assert_eq!(after.len(), DISK_BYTES);
    let first_difference = after.iter().zip(&expected).position(|(a, b)| a != b);
    assert_eq!(
        first_difference, None,
        "image differs from the expected bytes"
    );
    // And the guest's own view after writing matches the host's.
    assert_eq!(crcs[2], crc32fast::hash(sectors(&after, 2000, 5)));
    std::fs::remove_file(&image).expect("image removed");
}

#[test]
fn legacy_transport_agrees_with_the_host_image() {
    round_trip("legacy", "");
}

#[test]
fn modern_transport_agrees_with_the_host_image() {
    round_trip("modern", "-global virtio-mmio.force-legacy=false");
}

#[test]
fn bad_blk_commands_fail_with_a_message() {
    let image = scratch_image("errors", &vec![0u8; 1 << 20]);
    let (code, text) = run_script(
        &image,
        "",
        "blk read blk9 0 ; blk read blk0 2048 ; blk sum blk0 x 1 ; blk resize blk0 3 ; \
         blk write blk0 0 0x77 4096 ; blk sum blk0 0 0 ; blk frobnicate",
    );
    assert_eq!(code, Some(1), "a failed command fails the run:\n{text}");
    assert_contains(
        &text,
        &[
            // blk1 is the swap disk the runner attaches next to the data disk.
            "error: blk: no device `blk9` (devices: blk0 blk1)",
            "error: blk: request reaches past the end of the device",
            "error: blk: START `x` is not a number",
            "error: blk: invalid argument: queue size must be a power of two",
            "error: blk: bad arguments `frobnicate`",
            "crc32=0x00000000",
        ],
    );
    // The read past the end and the write running past it; the write touched nothing.
    assert_eq!(
        text.matches("past the end of the device").count(),
        2,
        "{text}"
    );
    let after = std::fs::read(&image).expect("image read back");
    assert!(
        after.iter().all(|&byte| byte == 0),
        "a refused write changed the image"
    );
    std::fs::remove_file(&image).expect("image removed");
}

#[test]
fn bench_prints_one_line_per_shape() {
    let image = scratch_image("bench", &vec![0u8; 4 << 20]);
    let text = run_kernel(&image, "", "blk bench blk0");
    let lines: Vec<&str> = text
        .lines()
        .filter(|line| line.starts_with("bench="))
        .collect();
    let names: Vec<&str> = lines
        .iter()
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert_eq!(
        names,
        [
            "bench=rand4k_qd1_read",
            "bench=rand4k_qd32_read",
            "bench=seq4k_read",
            "bench=seq64k_read",
            "bench=seq1m_read",
            "bench=rand4k_qd1_write"
        ],
        "{text}"
    );
    for line in lines {
        let mut keys = Vec::new();
        for pair in line.split_whitespace().skip(1) {
            let (key, value) = pair.split_once('=').expect("key=value");
            let value: f64 = value.parse().expect("a number");
            assert!(key == "irqs_per_req" || value > 0.0, "{line}");
            keys.push(key);
        }
        assert_eq!(
            keys,
            [
                "iops",
                "mib_s",
                "insns_per_req",
                "notifies_per_req",
                "irqs_per_req"
            ],
            "{line}"
        );
    }
    std::fs::remove_file(&image).expect("image removed");
}
