//! The per-image QEMU configuration a kernel image embeds in its ELF section `.qemu_config`.
//!
//! The section holds UTF-8 text, one directive per line; everything from `#` to the end of a line
//! is a comment and blank lines are ignored. NUL bytes separate blocks (several objects may each
//! contribute one, and the linker pads between them); each block is parsed on its own and line
//! numbers in errors count within the block. A later scalar directive overrides an earlier one, so
//! a test image's block can refine a block the kernel library contributes.
//!
//! ```text
//! machine virt,gic-version=3      # QEMU -M value
//! cpu max                         # QEMU -cpu value
//! memory 64M                      # QEMU -m value: N, NK, NM or NG
//! smp 4                           # QEMU -smp value: a positive integer
//! icount                          # -icount shift=0,sleep=off (deterministic guest time)
//! timeout 120                     # test-mode wall-clock limit in seconds
//! arg -global virtio-mmio.force-legacy=false   # raw QEMU arguments, split like a shell
//! disk data size=16M fill=lba blkdebug=event=read_aio,errno=5,sector=2048,once=on
//! nodisk                          # no disk at all
//! ```
//!
//! `disk <name> size=<N[K|M|G]> [fill=zero|lba] [blkdebug=<rule>[;<rule>...]]` declares a disk
//! image created fresh for every run; see [`DiskSpec`]. Disks are attached in declaration order
//! and replace the default disk. Unknown directives and malformed lines are errors.

use crate::error::Error;

/// Longest disk name: the name doubles as the virtio-blk serial, which holds 20 bytes.
pub const MAX_DISK_NAME_LEN: usize = 20;

/// Bytes in one disk sector, the unit of disk sizes and of `fill=lba`.
pub const SECTOR_SIZE: u64 = 512;

/// Keys QEMU 7.2's blkdebug accepts in an `[inject-error]` section.
pub const BLKDEBUG_KEYS: [&str; 7] = [
    "event",
    "state",
    "iotype",
    "errno",
    "sector",
    "once",
    "immediately",
];

/// Everything a `.qemu_config` section can ask for. `None`/empty fields mean "not set here".
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageConfig {
    /// `machine`: the QEMU `-M` value.
    pub machine: Option<String>,
    /// `cpu`: the QEMU `-cpu` value.
    pub cpu: Option<String>,
    /// `memory`: the QEMU `-m` value.
    pub memory: Option<String>,
    /// `smp`: the number of CPUs.
    pub smp: Option<u32>,
    /// `icount`: run with `-icount shift=0,sleep=off`.
    pub icount: bool,
    /// `timeout`: the test-mode wall-clock limit in seconds.
    pub timeout_secs: Option<u64>,
    /// `arg`: extra QEMU arguments, in order.
    pub qemu_args: Vec<String>,
    /// `disk` / `nodisk`.
    pub disks: DiskSelection,
}

/// Which disks an image wants.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum DiskSelection {
    /// No `disk` or `nodisk` directive: the shared default data disk.
    #[default]
    Default,
    /// `nodisk`: no disk at all.
    NoDisk,
    /// One or more `disk` directives, in declaration order.
    Declared(Vec<DiskSpec>),
}

/// One `disk` directive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskSpec {
    /// Name, `[A-Za-z0-9_-]{1,20}`: part of the image file name and the virtio-blk serial.
    pub name: String,
    /// Size in bytes, a positive multiple of [`SECTOR_SIZE`].
    pub size: u64,
    /// Initial content.
    pub fill: Fill,
    /// blkdebug error-injection rules; empty means a plain raw image.
    pub blkdebug: Vec<BlkdebugRule>,
}

/// Initial content of a declared disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// All zero bytes (a sparse file).
    Zero,
    /// Sector `i` holds `i` as a little-endian u64, repeated 64 times.
    Lba,
}

/// One blkdebug `[inject-error]` rule: its `key=value` pairs in the order written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlkdebugRule {
    /// The rule's fields; keys are from [`BLKDEBUG_KEYS`] and include `event`.
    pub fields: Vec<(String, String)>,
}

/// Parses the raw bytes of a `.qemu_config` section.
pub fn parse(section: &[u8]) -> Result<ImageConfig, Error> {
    let blocks: Vec<&[u8]> = section
        .split(|&byte| byte == 0)
        .filter(|block| !block.is_empty())
        .collect();
    let several = blocks.len() > 1;
    let mut config = ImageConfig::default();
    for (index, block) in blocks.iter().enumerate() {
        let block_number = index + 1;
        let text = std::str::from_utf8(block).map_err(|_| Error::Config {
            location: format!("block {block_number}"),
            message: "is not UTF-8 text".to_string(),
        })?;
        for (line_index, line) in text.lines().enumerate() {
            parse_line(&mut config, line).map_err(|message| Error::Config {
                location: if several {
                    format!("block {block_number}, line {}", line_index + 1)
                } else {
                    format!("line {}", line_index + 1)
                },
                message,
            })?;
        }
    }
    Ok(config)
}

/// Applies one line to `config`; the error is the message without the location.
fn parse_line(config: &mut ImageConfig, line: &str) -> Result<(), String> {
    let line = match line.find('#') {
        Some(comment) => &line[..comment],
        None => line,
    }
    .trim();
    if line.is_empty() {
        return Ok(());
    }
    let (directive, rest) = match line.split_once(char::is_whitespace) {
        Some((directive, rest)) => (directive, rest.trim()),
        None => (line, ""),
    };
    match directive {
        "machine" => config.machine = Some(single_token(directive, rest)?.to_string()),
        "cpu" => config.cpu = Some(single_token(directive, rest)?.to_string()),
        "memory" => {
            let value = single_token(directive, rest)?;
            if !is_memory_size(value) {
                return Err(format!(
                    "`memory` wants N, NK, NM or NG (e.g. 64M), not `{value}`"
                ));
            }
            config.memory = Some(value.to_string());
        }
        "smp" => {
            let value = single_token(directive, rest)?;
            config.smp = Some(parse_positive(directive, value)?);
        }
        "icount" => {
            no_arguments(directive, rest)?;
            config.icount = true;
        }
        "timeout" => {
            let value = single_token(directive, rest)?;
            config.timeout_secs = Some(parse_positive(directive, value)?);
        }
        "arg" => {
            let words = shell_words::split(rest)
                .map_err(|error| format!("`arg` has unbalanced quoting: {error}"))?;
            if words.is_empty() {
                return Err("`arg` needs at least one QEMU argument".to_string());
            }
            config.qemu_args.extend(words);
        }
        "disk" => {
            let disk = parse_disk(rest)?;
            match &mut config.disks {
                DiskSelection::NoDisk => {
                    return Err("`disk` cannot be combined with `nodisk`".to_string());
                }
                DiskSelection::Declared(disks) => {
                    if disks.iter().any(|known| known.name == disk.name) {
                        return Err(format!("disk `{}` is declared twice", disk.name));
                    }
                    disks.push(disk);
                }
                DiskSelection::Default => config.disks = DiskSelection::Declared(vec![disk]),
            }
        }
        "nodisk" => {
            no_arguments(directive, rest)?;
            if matches!(config.disks, DiskSelection::Declared(_)) {
                return Err("`nodisk` cannot be combined with `disk`".to_string());
            }
            config.disks = DiskSelection::NoDisk;
        }
        unknown => return Err(format!("unknown directive `{unknown}`")),
    }
    Ok(())
}

fn single_token<'a>(directive: &str, rest: &'a str) -> Result<&'a str, String> {
    let mut words = rest.split_whitespace();
    match (words.next(), words.next()) {
        (Some(value), None) => Ok(value),
        (None, _) => Err(format!("`{directive}` needs a value")),
        (Some(_), Some(_)) => Err(format!("`{directive}` takes exactly one value")),
    }
}

fn no_arguments(directive: &str, rest: &str) -> Result<(), String> {
    if rest.is_empty() {
        Ok(())
    } else {
        Err(format!("`{directive}` takes no value"))
    }
}

fn parse_positive<T>(directive: &str, value: &str) -> Result<T, String>
where
    T: std::str::FromStr + Default + PartialEq,
{
    match value.parse::<T>() {
        Ok(number) if number != T::default() => Ok(number),
        _ => Err(format!(
            "`{directive}` wants a positive integer, not `{value}`"
        )),
    }
}

/// QEMU's `-m` shape: digits with an optional K, M or G suffix (no suffix means MiB to QEMU).
fn is_memory_size(value: &str) -> bool {
    let digits = value.trim_end_matches(['K', 'M', 'G', 'k', 'm', 'g']);
    value.len() - digits.len() <= 1
        && !digits.is_empty()
        && digits.bytes().all(|byte| byte.is_ascii_digit())
}

/// Parses a byte size: `N`, `NK`, `NM` or `NG` (binary multiples). `None` when malformed or
/// out of range.
pub fn parse_size(text: &str) -> Option<u64> {
    let (digits, multiplier) = match text.as_bytes().last()? {
        b'K' | b'k' => (&text[..text.len() - 1], 1u64 << 10),
        b'M' | b'm' => (&text[..text.len() - 1], 1 << 20),
        b'G' | b'g' => (&text[..text.len() - 1], 1 << 30),
        _ => (text, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(multiplier)
}

fn parse_disk(rest: &str) -> Result<DiskSpec, String> {
    let mut words = rest.split_whitespace();
    let name = words
        .next()
        .ok_or_else(|| "`disk` needs a name and size=<N[K|M|G]>".to_string())?;
    if name.contains('=') {
        return Err(format!("`disk` wants its name first, before `{name}`"));
    }
    if name.len() > MAX_DISK_NAME_LEN
        || !name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-')
    {
        return Err(format!(
            "disk name `{name}` must be 1 to {MAX_DISK_NAME_LEN} characters of A-Z a-z 0-9 _ -"
        ));
    }
    let mut size = None;
    let mut fill = None;
    let mut blkdebug = None;
    for word in words {
        let (key, value) = word
            .split_once('=')
            .ok_or_else(|| format!("disk option `{word}` is not key=value"))?;
        let already_set = match key {
            "size" => size.replace(parse_disk_size(value)?).is_some(),
            "fill" => fill
                .replace(match value {
                    "zero" => Fill::Zero,
                    "lba" => Fill::Lba,
                    other => return Err(format!("`fill` wants zero or lba, not `{other}`")),
                })
                .is_some(),
            "blkdebug" => blkdebug.replace(parse_blkdebug(value)?).is_some(),
            other => {
                return Err(format!(
                    "unknown disk option `{other}` (expected size, fill, blkdebug)"
                ));
            }
        };
        if already_set {
            return Err(format!("disk option `{key}` is given twice"));
        }
    }
    Ok(DiskSpec {
        name: name.to_string(),
        size: size.ok_or_else(|| format!("disk `{name}` needs size=<N[K|M|G]>"))?,
        fill: fill.unwrap_or(Fill::Zero),
        blkdebug: blkdebug.unwrap_or_default(),
    })
}

fn parse_disk_size(value: &str) -> Result<u64, String> {
    match parse_size(value) {
        Some(size) if size > 0 && size % SECTOR_SIZE == 0 => Ok(size),
        Some(_) => Err(format!(
            "disk size `{value}` must be a positive multiple of {SECTOR_SIZE} bytes"
        )),
        None => Err(format!("disk size `{value}` is not N, NK, NM or NG")),
    }
}

fn parse_blkdebug(value: &str) -> Result<Vec<BlkdebugRule>, String> {
    value
        .split(';')
        .map(|rule| {
            if rule.is_empty() {
                return Err("blkdebug has an empty rule".to_string());
            }
            let mut fields: Vec<(String, String)> = Vec::new();
            for field in rule.split(',') {
                let (key, value) = field
                    .split_once('=')
                    .ok_or_else(|| format!("blkdebug field `{field}` is not key=value"))?;
                if !BLKDEBUG_KEYS.contains(&key) {
                    return Err(format!(
                        "unknown blkdebug key `{key}` (expected one of {})",
                        BLKDEBUG_KEYS.join(", ")
                    ));
                }
                if value.is_empty() || value.contains('"') {
                    return Err(format!("blkdebug `{key}` needs a value without `\"`"));
                }
                if fields.iter().any(|(known, _)| known == key) {
                    return Err(format!("blkdebug key `{key}` is given twice in one rule"));
                }
                fields.push((key.to_string(), value.to_string()));
            }
            if !fields.iter().any(|(key, _)| key == "event") {
                return Err(format!("blkdebug rule `{rule}` needs an event=<name>"));
            }
            Ok(BlkdebugRule { fields })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_text(text: &str) -> Result<ImageConfig, Error> {
        parse(text.as_bytes())
    }

    fn error_text(text: &str) -> String {
        parse_text(text).unwrap_err().to_string()
    }

    #[test]
    fn empty_section_means_nothing_set() {
        assert_eq!(parse(b"").unwrap(), ImageConfig::default());
        assert_eq!(parse(b"\0\0\0").unwrap(), ImageConfig::default());
        assert_eq!(
            parse_text("\n  # only a comment\n\n").unwrap(),
            ImageConfig::default()
        );
    }

    #[test]
    fn every_scalar_directive() {
        let config = parse_text(
            "machine virt,gic-version=3\ncpu max\nmemory 64M\nsmp 4\nicount\ntimeout 120\n",
        )
        .unwrap();
        assert_eq!(
            config,
            ImageConfig {
                machine: Some("virt,gic-version=3".into()),
                cpu: Some("max".into()),
                memory: Some("64M".into()),
                smp: Some(4),
                icount: true,
                timeout_secs: Some(120),
                qemu_args: vec![],
                disks: DiskSelection::Default,
            }
        );
    }

    #[test]
    fn comments_and_whitespace_are_ignored() {
        let config = parse_text("  cpu   cortex-a76   # the one with HAFDBS\n\t# smp 8\n").unwrap();
        assert_eq!(config.cpu.as_deref(), Some("cortex-a76"));
        assert_eq!(config.smp, None);
    }

    #[test]
    fn arg_lines_are_shell_split_and_accumulate() {
        let config = parse_text(
            "arg -global virtio-mmio.force-legacy=false\narg -d 'int,guest_errors' -D \"/tmp/q log\"\n",
        )
        .unwrap();
        assert_eq!(
            config.qemu_args,
            [
                "-global",
                "virtio-mmio.force-legacy=false",
                "-d",
                "int,guest_errors",
                "-D",
                "/tmp/q log"
            ]
        );
    }

    #[test]
    fn nul_separated_blocks_later_scalars_win() {
        let config = parse(b"smp 2\ncpu max\n\0\0\0\0smp 4\narg -a\0\0arg -b").unwrap();
        assert_eq!(config.smp, Some(4));
        assert_eq!(config.cpu.as_deref(), Some("max"));
        assert_eq!(config.qemu_args, ["-a", "-b"]);
    }

    #[test]
    fn disks_in_declaration_order_with_options() {
        let config = parse_text(
            "disk swap size=16M\n\
             disk data size=4K fill=lba blkdebug=event=read_aio,errno=5,sector=2048,once=on;event=write_aio,errno=28\n",
        )
        .unwrap();
        assert_eq!(
            config.disks,
            DiskSelection::Declared(vec![
                DiskSpec {
                    name: "swap".into(),
                    size: 16 << 20,
                    fill: Fill::Zero,
                    blkdebug: vec![],
                },
                DiskSpec {
                    name: "data".into(),
                    size: 4096,
                    fill: Fill::Lba,
                    blkdebug: vec![
                        BlkdebugRule {
                            fields: vec![
                                ("event".into(), "read_aio".into()),
                                ("errno".into(), "5".into()),
                                ("sector".into(), "2048".into()),
                                ("once".into(), "on".into()),
                            ],
                        },
                        BlkdebugRule {
                            fields: vec![
                                ("event".into(), "write_aio".into()),
                                ("errno".into(), "28".into()),
                            ],
                        },
                    ],
                },
            ])
        );
    }

    #[test]
    fn nodisk() {
        assert_eq!(parse_text("nodisk").unwrap().disks, DiskSelection::NoDisk);
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("4K"), Some(4096));
        assert_eq!(parse_size("64M"), Some(64 << 20));
        assert_eq!(parse_size("2g"), Some(2 << 30));
        assert_eq!(parse_size(""), None);
        assert_eq!(parse_size("M"), None);
        assert_eq!(parse_size("1T"), None);
        assert_eq!(parse_size("-1K"), None);
        assert_eq!(parse_size("99999999999999999999G"), None);
        assert_eq!(parse_size("17179869184G"), None, "overflows u64");
    }

    #[test]
    fn unknown_directive_names_the_line() {
        assert_eq!(
            error_text("cpu max\n\nsmpp 4\n"),
            ".qemu_config line 3: unknown directive `smpp`"
        );
    }

    #[test]
    fn errors_in_later_blocks_name_the_block() {
        assert_eq!(
            parse(b"cpu max\0\0\nbogus\n").unwrap_err().to_string(),
            ".qemu_config block 2, line 2: unknown directive `bogus`"
        );
    }

    #[test]
    fn non_utf8_block_is_an_error() {
        assert_eq!(
            parse(b"cpu max\0\xff\xfe").unwrap_err().to_string(),
            ".qemu_config block 2: is not UTF-8 text"
        );
    }

    #[test]
    fn bad_scalar_lines() {
        let cases = [
            ("machine", "`machine` needs a value"),
            ("cpu max extra", "`cpu` takes exactly one value"),
            (
                "memory lots",
                "`memory` wants N, NK, NM or NG (e.g. 64M), not `lots`",
            ),
            (
                "memory 64MB",
                "`memory` wants N, NK, NM or NG (e.g. 64M), not `64MB`",
            ),
            ("smp 0", "`smp` wants a positive integer, not `0`"),
            ("smp -2", "`smp` wants a positive integer, not `-2`"),
            ("smp four", "`smp` wants a positive integer, not `four`"),
            ("timeout 0", "`timeout` wants a positive integer, not `0`"),
            (
                "timeout 1.5",
                "`timeout` wants a positive integer, not `1.5`",
            ),
            ("icount yes", "`icount` takes no value"),
            ("nodisk please", "`nodisk` takes no value"),
            ("arg", "`arg` needs at least one QEMU argument"),
            (
                "arg -D 'unterminated",
                "`arg` has unbalanced quoting: missing closing quote",
            ),
        ];
        for (line, message) in cases {
            assert_eq!(
                error_text(line),
                format!(".qemu_config line 1: {message}"),
                "line `{line}`"
            );
        }
    }

    #[test]
    fn bad_disk_lines() {
        let cases = [
            ("disk", "`disk` needs a name and size=<N[K|M|G]>"),
            (
                "disk size=1M",
                "`disk` wants its name first, before `size=1M`",
            ),
            (
                "disk a/b size=1M",
                "disk name `a/b` must be 1 to 20 characters of A-Z a-z 0-9 _ -",
            ),
            (
                "disk abcdefghijklmnopqrstu size=1M",
                "disk name `abcdefghijklmnopqrstu` must be 1 to 20 characters of A-Z a-z 0-9 _ -",
            ),
            ("disk d", "disk `d` needs size=<N[K|M|G]>"),
            ("disk d size", "disk option `size` is not key=value"),
            (
                "disk d size=1M size=2M",
                "disk option `size` is given twice",
            ),
            (
                "disk d size=lots",
                "disk size `lots` is not N, NK, NM or NG",
            ),
            (
                "disk d size=1000",
                "disk size `1000` must be a positive multiple of 512 bytes",
            ),
            (
                "disk d size=0",
                "disk size `0` must be a positive multiple of 512 bytes",
            ),
            (
                "disk d size=1M fill=ones",
                "`fill` wants zero or lba, not `ones`",
            ),
            (
                "disk d size=1M format=qcow2",
                "unknown disk option `format` (expected size, fill, blkdebug)",
            ),
            ("disk d size=1M blkdebug=", "blkdebug has an empty rule"),
            (
                "disk d size=1M blkdebug=event=read_aio;",
                "blkdebug has an empty rule",
            ),
            (
                "disk d size=1M blkdebug=errno=5",
                "blkdebug rule `errno=5` needs an event=<name>",
            ),
            (
                "disk d size=1M blkdebug=event=read_aio,errno",
                "blkdebug field `errno` is not key=value",
            ),
            (
                "disk d size=1M blkdebug=event=read_aio,probability=5",
                "unknown blkdebug key `probability` (expected one of event, state, iotype, errno, sector, once, immediately)",
            ),
            (
                "disk d size=1M blkdebug=event=read_aio,errno=",
                "blkdebug `errno` needs a value without `\"`",
            ),
            (
                "disk d size=1M blkdebug=event=\"read_aio\"",
                "blkdebug `event` needs a value without `\"`",
            ),
            (
                "disk d size=1M blkdebug=event=read_aio,event=write_aio",
                "blkdebug key `event` is given twice in one rule",
            ),
        ];
        for (line, message) in cases {
            assert_eq!(
                error_text(line),
                format!(".qemu_config line 1: {message}"),
                "line `{line}`"
            );
        }
    }

    #[test]
    fn disk_conflicts() {
        assert_eq!(
            error_text("disk a size=1M\ndisk a size=2M"),
            ".qemu_config line 2: disk `a` is declared twice"
        );
        assert_eq!(
            error_text("nodisk\ndisk a size=1M"),
            ".qemu_config line 2: `disk` cannot be combined with `nodisk`"
        );
        assert_eq!(
            error_text("disk a size=1M\nnodisk"),
            ".qemu_config line 2: `nodisk` cannot be combined with `disk`"
        );
    }
}
