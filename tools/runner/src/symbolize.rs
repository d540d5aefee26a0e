//! Turns code addresses in kernel output into `symbol+offset (file:line)` using the kernel ELF's
//! symbol table and DWARF line tables.
//!
//! Recognised forms (hex digits in either case):
//! - backtrace frames `#<n> 0x<16 hex digits>`: frame 0 is the faulting/current PC and is looked
//!   up as is; frames n >= 1 are return addresses, looked up at `addr - 4` (the `bl`);
//! - `elr=0x<hex>`: an exception PC, looked up as is;
//! - `lr=0x<hex>`: a return address, looked up at `addr - 4`.
//!
//! `elr=`/`lr=` match case-insensitively and only at the start of a word.

use addr2line::gimli;
use object::{CompressionFormat, Object, ObjectSection, SectionKind, SymbolMap, SymbolMapName};

/// Indentation that precedes the `at ...` annotation line.
pub const ANNOTATION_INDENT: &str = "      ";

/// A code address found in a line of output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeAddress {
    /// The address as printed.
    pub address: u64,
    /// Whether it is a return address (to be looked up 4 bytes earlier, at the call).
    pub is_return_address: bool,
}

impl CodeAddress {
    /// The address to look up: the call instruction for return addresses.
    pub fn probe(self) -> u64 {
        if self.is_return_address {
            self.address.saturating_sub(4)
        } else {
            self.address
        }
    }
}

/// Finds every code address in `line`, in order of appearance.
pub fn find_code_addresses(line: &str) -> Vec<CodeAddress> {
    let bytes = line.as_bytes();
    let mut found = Vec::new();
    let mut index = 0;
    while index < bytes.len() {
        if let Some((code, end)) =
            match_frame(bytes, index).or_else(|| match_register(bytes, index))
        {
            found.push(code);
            index = end;
        } else {
            index += 1;
        }
    }
    found
}

/// `#<n>` then spaces/tabs then `0x` and exactly 16 hex digits.
fn match_frame(bytes: &[u8], start: usize) -> Option<(CodeAddress, usize)> {
    if bytes[start] != b'#' {
        return None;
    }
    let digits_end = scan(bytes, start + 1, |byte| byte.is_ascii_digit());
    if digits_end == start + 1 {
        return None;
    }
    let frame: u64 = std::str::from_utf8(&bytes[start + 1..digits_end])
        .ok()?
        .parse()
        .ok()?;
    let hex_start = scan(bytes, digits_end, |byte| byte == b' ' || byte == b'\t');
    if hex_start == digits_end {
        return None;
    }
    let (address, end) = match_hex(bytes, hex_start, 16..=16)?;
    Some((
        CodeAddress {
            address,
            is_return_address: frame >= 1,
        },
        end,
    ))
}

/// `elr=0x<hex>` or `lr=0x<hex>` at a word start.
fn match_register(bytes: &[u8], start: usize) -> Option<(CodeAddress, usize)> {
    if start > 0 && is_word_byte(bytes[start - 1]) {
        return None;
    }
    let rest = &bytes[start..];
    let (prefix_len, is_return_address) = if starts_with_ignore_case(rest, b"elr=") {
        (4, false)
    } else if starts_with_ignore_case(rest, b"lr=") {
        (3, true)
    } else {
        return None;
    };
    let (address, end) = match_hex(bytes, start + prefix_len, 1..=16)?;
    Some((
        CodeAddress {
            address,
            is_return_address,
        },
        end,
    ))
}

/// `0x` followed by a number of hex digits in `len`, not followed by another word character.
fn match_hex(
    bytes: &[u8],
    start: usize,
    len: std::ops::RangeInclusive<usize>,
) -> Option<(u64, usize)> {
    if !starts_with_ignore_case(&bytes[start..], b"0x") {
        return None;
    }
    let digits_start = start + 2;
    let end = scan(bytes, digits_start, |byte| byte.is_ascii_hexdigit());
    if !len.contains(&(end - digits_start)) || bytes.get(end).is_some_and(|&b| is_word_byte(b)) {
        return None;
    }
    let text = std::str::from_utf8(&bytes[digits_start..end]).ok()?;
    Some((u64::from_str_radix(text, 16).ok()?, end))
}

fn scan(bytes: &[u8], start: usize, accept: impl Fn(u8) -> bool) -> usize {
    start
        + bytes[start.min(bytes.len())..]
            .iter()
            .take_while(|&&byte| accept(byte))
            .count()
}

fn starts_with_ignore_case(bytes: &[u8], prefix: &[u8]) -> bool {
    bytes.len() >= prefix.len() && bytes[..prefix.len()].eq_ignore_ascii_case(prefix)
}

fn is_word_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_'
}

type Reader<'data> = gimli::EndianSlice<'data, gimli::RunTimeEndian>;

/// Symbol and line lookup for one ELF held in memory.
pub struct Symbolizer<'data> {
    /// Address ranges of executable sections: only addresses inside them are code.
    code: Vec<std::ops::Range<u64>>,
    symbols: SymbolMap<SymbolMapName<'data>>,
    /// `None` when the ELF has no usable DWARF: lookups then give the symbol only.
    lines: Option<addr2line::Context<Reader<'data>>>,
}

impl<'data> Symbolizer<'data> {
    /// Reads the symbol table and DWARF of the ELF in `data`. `None` if `data` is no object file.
    pub fn new(data: &'data [u8]) -> Option<Self> {
        let file = object::File::parse(data).ok()?;
        let endian = if file.is_little_endian() {
            gimli::RunTimeEndian::Little
        } else {
            gimli::RunTimeEndian::Big
        };
        let load_section = |id: gimli::SectionId| -> Result<Reader<'data>, gimli::Error> {
            let bytes = file
                .section_by_name(id.name())
                .filter(|section| {
                    // Compressed sections would need decompressing into owned buffers; rustc
                    // and rust-lld do not compress by default, so such sections count as absent.
                    section
                        .compressed_file_range()
                        .is_ok_and(|range| range.format == CompressionFormat::None)
                })
                .and_then(|section| section.data().ok())
                .unwrap_or(&[]);
            Ok(gimli::EndianSlice::new(bytes, endian))
        };
        let lines = gimli::Dwarf::load(load_section)
            .ok()
            .and_then(|dwarf| addr2line::Context::from_dwarf(dwarf).ok());
        let code = file
            .sections()
            .filter(|section| section.kind() == SectionKind::Text)
            .map(|section| section.address()..section.address().saturating_add(section.size()))
            .collect();
        Some(Symbolizer {
            code,
            symbols: file.symbol_map(),
            lines,
        })
    }

    /// `symbol+0xoffset (file:line)` for the code address `address`, leaving out what is
    /// unknown; `None` when the address is not in an executable section or nothing is known.
    ///
    /// The location is that of the function the symbol names: when the address lies in code
    /// inlined into it, the line of the outermost inlined call, which is where that function's
    /// own source continues.
    pub fn describe(&self, address: u64) -> Option<String> {
        if !self.code.iter().any(|range| range.contains(&address)) {
            return None;
        }
        let symbol = self.symbols.containing(address).map(|symbol| {
            format!(
                "{:#}+{:#x}",
                rustc_demangle::demangle(symbol.name()),
                address - symbol.address()
            )
        });
        let location = self.location(address).and_then(|location| {
            let file = location.file?;
            Some(match location.line {
                Some(line) => format!("{file}:{line}"),
                None => file.to_string(),
            })
        });
        match (symbol, location) {
            (Some(symbol), Some(location)) => Some(format!("{symbol} ({location})")),
            (Some(symbol), None) => Some(symbol),
            (None, Some(location)) => Some(format!("?? ({location})")),
            (None, None) => None,
        }
    }

    /// The source location of the outermost frame at `address`.
    fn location(&self, address: u64) -> Option<addr2line::Location<'_>> {
        let lines = self.lines.as_ref()?;
        let mut frames = lines.find_frames(address).skip_all_loads().ok()?;
        let mut outermost = None;
        while let Ok(Some(frame)) = frames.next() {
            if frame.location.is_some() {
                outermost = frame.location;
            }
        }
        outermost.or_else(|| lines.find_location(address).ok().flatten())
    }

    /// The annotation lines (without line ending) for one line of kernel output.
    pub fn annotate(&self, line: &str) -> Vec<String> {
        find_code_addresses(line)
            .into_iter()
            .filter_map(|code| self.describe(code.probe()))
            .map(|description| format!("{ANNOTATION_INDENT}at {description}"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(address: u64, is_return_address: bool) -> CodeAddress {
        CodeAddress {
            address,
            is_return_address,
        }
    }

    #[test]
    fn backtrace_frames() {
        assert_eq!(
            find_code_addresses("  #0 0xffff000040081234"),
            [frame(0xffff_0000_4008_1234, false)]
        );
        assert_eq!(
            find_code_addresses("  #3 0xFFFF000040081234 kernel::mm::fault"),
            [frame(0xffff_0000_4008_1234, true)]
        );
        assert_eq!(
            find_code_addresses("#12\t0x0000000000000010"),
            [frame(0x10, true)]
        );
    }

    #[test]
    fn frames_need_exactly_sixteen_digits_and_a_number() {
        assert!(find_code_addresses("#3 0xffff00004008123").is_empty());
        assert!(find_code_addresses("#3 0xffff0000400812345").is_empty());
        assert!(find_code_addresses("#3 0xffff00004008123g").is_empty());
        assert!(find_code_addresses("# 0xffff000040081234").is_empty());
        assert!(find_code_addresses("#3 ffff000040081234").is_empty());
        assert!(find_code_addresses("#30xffff000040081234").is_empty());
    }

    #[test]
    fn register_dumps() {
        assert_eq!(
            find_code_addresses("ELR=0xffff000040080abc esr=0x96000045 LR=0xffff000040080010"),
            [
                frame(0xffff_0000_4008_0abc, false),
                frame(0xffff_0000_4008_0010, true)
            ]
        );
        assert_eq!(find_code_addresses("elr=0x8"), [frame(8, false)]);
        // `lr=` inside another word, or a malformed number, is not an address.
        assert!(find_code_addresses("xlr=0x1234 elr=0x elr=0x12zz").is_empty());
        assert!(find_code_addresses("lr=0x11112222333344445").is_empty());
    }

    #[test]
    fn return_addresses_probe_the_call() {
        assert_eq!(frame(0x1000, true).probe(), 0xffc);
        assert_eq!(frame(0x1000, false).probe(), 0x1000);
        assert_eq!(frame(2, true).probe(), 0);
    }

    /// Lines of `known_function` (declaration to closing brace), and the function itself: its
    /// symbol is looked up by name in this test binary and then symbolized back.
    const KNOWN_FUNCTION_LINES: std::ops::RangeInclusive<u32> = line!() + 2..=line!() + 4;
    #[inline(never)]
    fn known_function(x: u64) -> u64 {
        std::hint::black_box(x).wrapping_mul(3)
    }

    fn test_binary() -> Vec<u8> {
        std::fs::read(std::env::current_exe().unwrap()).unwrap()
    }

    fn symbol_address(data: &[u8], demangled: &str) -> u64 {
        use object::ObjectSymbol;
        let file = object::File::parse(data).unwrap();
        file.symbols()
            .find(|symbol| {
                symbol
                    .name()
                    .is_ok_and(|name| format!("{:#}", rustc_demangle::demangle(name)) == demangled)
            })
            .map(|symbol| symbol.address())
            .expect("symbol in the test binary")
    }

    #[test]
    fn describes_a_known_function_of_this_binary() {
        assert_eq!(known_function(2), 6);
        let data = test_binary();
        let symbolizer = Symbolizer::new(&data).unwrap();
        let address = symbol_address(&data, "runner::symbolize::tests::known_function");
        let description = symbolizer.describe(address).unwrap();
        let location = description
            .strip_prefix("runner::symbolize::tests::known_function+0x0 (")
            .and_then(|rest| rest.strip_suffix(')'))
            .unwrap_or_else(|| panic!("{description}"));
        let (file, line) = location.rsplit_once(':').unwrap();
        assert!(
            file.ends_with("tools/runner/src/symbolize.rs"),
            "{description}"
        );
        let line: u32 = line.parse().unwrap();
        assert!(KNOWN_FUNCTION_LINES.contains(&line), "{description}");
        let inside = symbolizer.describe(address + 4).unwrap();
        assert!(
            inside.starts_with("runner::symbolize::tests::known_function+0x4 ("),
            "{inside}"
        );
    }

    #[test]
    fn annotation_lines_for_frames() {
        let data = test_binary();
        let symbolizer = Symbolizer::new(&data).unwrap();
        let address = symbol_address(&data, "runner::symbolize::tests::known_function");
        // Frame 0 is exact; frame 1 is a return address 8 bytes in, looked up at +4.
        let line = format!("  #0 {:#018x}   #1 {:#018x}", address, address + 8);
        let annotations = symbolizer.annotate(&line);
        assert_eq!(annotations.len(), 2, "{annotations:?}");
        assert!(
            annotations[0].starts_with("      at runner::symbolize::tests::known_function+0x0 ("),
            "{annotations:?}"
        );
        assert!(
            annotations[1].starts_with("      at runner::symbolize::tests::known_function+0x4 ("),
            "{annotations:?}"
        );
        assert!(symbolizer.annotate("no addresses here").is_empty());
        // An address outside the executable sections (a null function pointer) gives nothing.
        assert!(symbolizer.annotate("elr=0x8").is_empty());
    }

    #[test]
    fn symbol_without_line_info() {
        use crate::test_elf::TestElf;
        let bytes = TestElf::new()
            .code_section(".text", 0x1000, &[0; 0x40])
            .symbol("_ZN6kernel4boot5start17h0123456789abcdefE", 0x1000, 0x20)
            .symbol("vectors", 0x1020, 0x20)
            .build();
        let symbolizer = Symbolizer::new(&bytes).unwrap();
        assert_eq!(
            symbolizer.describe(0x1004).as_deref(),
            Some("kernel::boot::start+0x4")
        );
        assert_eq!(symbolizer.describe(0x1030).as_deref(), Some("vectors+0x10"));
        assert_eq!(symbolizer.describe(0x0ffc), None, "before the code section");
        assert_eq!(symbolizer.describe(0x1040), None, "after the code section");
        assert_eq!(
            symbolizer.annotate("  #1 0x0000000000001028 elr=0x1004 lr=0x1034"),
            [
                "      at vectors+0x4",
                "      at kernel::boot::start+0x4",
                "      at vectors+0x10"
            ]
        );
    }

    #[test]
    fn no_symbols_no_annotation() {
        use crate::test_elf::TestElf;
        let bytes = TestElf::new()
            .code_section(".text", 0x1000, &[0; 16])
            .build();
        let symbolizer = Symbolizer::new(&bytes).unwrap();
        assert_eq!(symbolizer.describe(0x1004), None);
        assert!(symbolizer.annotate("elr=0x1004").is_empty());
        assert!(Symbolizer::new(b"not an object file").is_none());
    }
}
