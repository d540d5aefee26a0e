//! Kernel ELF -> raw arm64 Image, and access to the ELF's `.qemu_config` section.
//!
//! QEMU boots a raw binary that starts with the arm64 Linux Image header by loading it at
//! RAM base + text_offset and passing the DTB address in x0 (an ELF given to `-kernel` boots
//! without a DTB). The Image is the file bytes of the PT_LOAD segments placed at their physical
//! load addresses (`p_paddr`) relative to the lowest one, gaps zero-filled; bss is not stored.

use std::path::{Path, PathBuf};

use object::elf::{EM_AARCH64, PT_LOAD};
use object::read::elf::{ElfFile64, FileHeader, ProgramHeader};
use object::{Endianness, FileKind, Object, ObjectSection};

use crate::error::Error;

/// Name of the ELF section that carries the per-image QEMU configuration.
pub const CONFIG_SECTION: &str = ".qemu_config";

/// Offset and value of the arm64 Image header magic ("ARM\x64").
const IMAGE_MAGIC_OFFSET: usize = 0x38;
const IMAGE_MAGIC: &[u8; 4] = b"ARM\x64";

/// Refuse to write Images larger than this: a bigger span means a stray segment (for example one
/// linked at a virtual instead of a physical load address), not a real kernel.
pub const MAX_IMAGE_SIZE: u64 = 512 << 20;

/// A parsed kernel ELF: a 64-bit little-endian AArch64 ELF file.
pub struct KernelElf<'data> {
    path: PathBuf,
    elf: ElfFile64<'data, Endianness>,
}

impl<'data> KernelElf<'data> {
    /// Parses `data`, the contents of the ELF at `path` (used in error messages).
    pub fn parse(path: &Path, data: &'data [u8]) -> Result<Self, Error> {
        let error = |reason: String| Error::Elf {
            path: path.to_path_buf(),
            reason,
        };
        match FileKind::parse(data) {
            Ok(FileKind::Elf64) => {}
            Ok(FileKind::Elf32) => {
                return Err(error(
                    "is a 32-bit ELF; expected a 64-bit AArch64 kernel ELF".to_string(),
                ));
            }
            _ => return Err(error("is not an ELF file".to_string())),
        }
        let elf = ElfFile64::<Endianness>::parse(data)
            .map_err(|parse_error| error(format!("malformed ELF: {parse_error}")))?;
        let machine = elf.elf_header().e_machine(elf.endian());
        if machine != EM_AARCH64 {
            return Err(error(format!(
                "is not an AArch64 ELF (e_machine = {machine}, expected {EM_AARCH64})"
            )));
        }
        if !elf.is_little_endian() {
            return Err(error(
                "is big-endian; expected little-endian AArch64".to_string(),
            ));
        }
        Ok(KernelElf {
            path: path.to_path_buf(),
            elf,
        })
    }

    /// The raw arm64 Image: PT_LOAD file bytes at `p_paddr - lowest p_paddr`, gaps zero-filled.
    /// Segments without file bytes (pure bss) are skipped.
    pub fn raw_image(&self) -> Result<Vec<u8>, Error> {
        let endian = self.elf.endian();
        let data = self.elf.data();
        let mut segments: Vec<(u64, &[u8])> = Vec::new();
        for header in self.elf.elf_program_headers() {
            if header.p_type(endian) != PT_LOAD || header.p_filesz(endian) == 0 {
                continue;
            }
            let bytes = header.data(endian, data).map_err(|_| {
                self.error(format!(
                    "PT_LOAD segment at paddr {:#x} lies outside the file",
                    header.p_paddr(endian)
                ))
            })?;
            segments.push((header.p_paddr(endian), bytes));
        }
        segments.sort_by_key(|&(paddr, _)| paddr);
        let Some(&(base, _)) = segments.first() else {
            return Err(self.error("has no loadable segment (PT_LOAD with file bytes)".to_string()));
        };

        let mut end = base;
        for &(paddr, bytes) in &segments {
            if paddr < end {
                return Err(self.error(format!(
                    "PT_LOAD segments overlap at physical address {paddr:#x}"
                )));
            }
            end = paddr.checked_add(bytes.len() as u64).ok_or_else(|| {
                self.error(format!(
                    "PT_LOAD segment at {paddr:#x} wraps the address space"
                ))
            })?;
        }
        let span = end - base;
        if span > MAX_IMAGE_SIZE {
            return Err(self.error(format!(
                "PT_LOAD segments span {span:#x} bytes ({base:#x}..{end:#x}), more than the \
                 {MAX_IMAGE_SIZE:#x}-byte limit; check the linker script's physical addresses"
            )));
        }

        let mut image = vec![0u8; span as usize];
        for (paddr, bytes) in segments {
            let offset = (paddr - base) as usize;
            image[offset..offset + bytes.len()].copy_from_slice(bytes);
        }
        if image.get(IMAGE_MAGIC_OFFSET..IMAGE_MAGIC_OFFSET + IMAGE_MAGIC.len())
            != Some(IMAGE_MAGIC.as_slice())
        {
            return Err(self.error(format!(
                "does not start with an arm64 Image header (no \"ARM\\x64\" magic at offset \
                 {IMAGE_MAGIC_OFFSET:#x} of the lowest loadable segment, paddr {base:#x})"
            )));
        }
        Ok(image)
    }

    /// The bytes of the `.qemu_config` section, if the ELF has one.
    pub fn qemu_config(&self) -> Result<Option<&'data [u8]>, Error> {
        let Some(section) = self.elf.section_by_name(CONFIG_SECTION) else {
            return Ok(None);
        };
        section.data().map(Some).map_err(|read_error| {
            self.error(format!(
                "cannot read section {CONFIG_SECTION}: {read_error}"
            ))
        })
    }

    fn error(&self, reason: String) -> Error {
        Error::Elf {
            path: self.path.clone(),
            reason,
        }
    }
}

/// Where the Image for `elf` is written: next to it, with `.bin` appended to the file name.
pub fn image_path(elf: &Path) -> PathBuf {
    let mut name = elf.file_name().unwrap_or_default().to_os_string();
    name.push(".bin");
    elf.with_file_name(name)
}

/// Converts `elf` (read from `elf_path`) and writes the Image next to it; returns its path.
pub fn write_image(elf_path: &Path, elf: &KernelElf<'_>) -> Result<PathBuf, Error> {
    let image = elf.raw_image()?;
    let path = image_path(elf_path);
    std::fs::write(&path, image).map_err(crate::error::io_error("write Image", &path))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_elf::{Segment, TestElf};

    fn header(code: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0u8; 64];
        bytes[..code.len()].copy_from_slice(code);
        bytes[IMAGE_MAGIC_OFFSET..IMAGE_MAGIC_OFFSET + 4].copy_from_slice(IMAGE_MAGIC);
        bytes
    }

    fn convert(elf: &TestElf) -> Result<Vec<u8>, Error> {
        let bytes = elf.build();
        KernelElf::parse(Path::new("k"), &bytes)?.raw_image()
    }

    fn error_of(bytes: &[u8]) -> String {
        match KernelElf::parse(Path::new("target/k"), bytes).and_then(|elf| elf.raw_image()) {
            Ok(_) => panic!("conversion succeeded"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn segments_placed_by_paddr_with_zero_filled_gaps() {
        let text = header(b"\x11\x22");
        let data = vec![0xAA; 16];
        let elf = TestElf::new()
            // Listed out of address order: placement must follow p_paddr, not header order.
            .segment(Segment::load(0x4008_1000, &data))
            .segment(Segment::load(0x4008_0000, &text))
            // bss: memsz only, must not extend the Image.
            .segment(Segment::bss(0x4008_2000, 0x8000));
        let image = convert(&elf).unwrap();
        assert_eq!(image.len(), 0x1000 + 16);
        assert_eq!(&image[..64], &text[..]);
        assert_eq!(&image[..2], b"\x11\x22");
        assert!(image[64..0x1000].iter().all(|&byte| byte == 0));
        assert_eq!(&image[0x1000..], &data[..]);
    }

    #[test]
    fn virtual_addresses_are_ignored() {
        let text = header(b"");
        let mut segment = Segment::load(0x4008_0000, &text);
        segment.vaddr = 0xffff_0000_4008_0000;
        let image = convert(&TestElf::new().segment(segment)).unwrap();
        assert_eq!(image, text);
    }

    #[test]
    fn non_load_segments_are_ignored() {
        let text = header(b"");
        let mut note = Segment::load(0x4000_0000, &[1, 2, 3]);
        note.kind = object::elf::PT_NOTE.0;
        let image = convert(
            &TestElf::new()
                .segment(note)
                .segment(Segment::load(0x4008_0000, &text)),
        )
        .unwrap();
        assert_eq!(image, text);
    }

    #[test]
    fn image_path_appends_bin() {
        assert_eq!(
            image_path(Path::new("target/aarch64-unknown-none/debug/deps/mm-1a2b")),
            Path::new("target/aarch64-unknown-none/debug/deps/mm-1a2b.bin")
        );
        assert_eq!(
            image_path(Path::new("kernel.elf")),
            Path::new("kernel.elf.bin")
        );
    }

    #[test]
    fn write_image_writes_next_to_the_elf() {
        let dir = crate::test_elf::scratch_dir("write_image");
        let elf_path = dir.join("kernel");
        let text = header(b"\x01");
        let bytes = TestElf::new()
            .segment(Segment::load(0x4008_0000, &text))
            .build();
        let elf = KernelElf::parse(&elf_path, &bytes).unwrap();
        let written = write_image(&elf_path, &elf).unwrap();
        assert_eq!(written, dir.join("kernel.bin"));
        assert_eq!(std::fs::read(written).unwrap(), text);
    }

    #[test]
    fn qemu_config_section_is_found() {
        let text = header(b"");
        let bytes = TestElf::new()
            .segment(Segment::load(0x4008_0000, &text))
            .section(".qemu_config", b"smp 2\n\0\0")
            .build();
        let elf = KernelElf::parse(Path::new("k"), &bytes).unwrap();
        assert_eq!(elf.qemu_config().unwrap(), Some(&b"smp 2\n\0\0"[..]));

        let bytes = TestElf::new()
            .segment(Segment::load(0x4008_0000, &text))
            .build();
        let elf = KernelElf::parse(Path::new("k"), &bytes).unwrap();
        assert_eq!(elf.qemu_config().unwrap(), None);
    }

    #[test]
    fn not_an_elf() {
        assert_eq!(
            error_of(b"MZ\x90\x00 not an ELF"),
            "target/k: is not an ELF file"
        );
        assert_eq!(error_of(b""), "target/k: is not an ELF file");
    }

    #[test]
    fn wrong_class_or_machine() {
        let mut elf32 = TestElf::new()
            .segment(Segment::load(0, &header(b"")))
            .build();
        elf32[4] = 1; // EI_CLASS = ELFCLASS32
        assert_eq!(
            error_of(&elf32),
            "target/k: is a 32-bit ELF; expected a 64-bit AArch64 kernel ELF"
        );
        let x86 = TestElf::new()
            .machine(object::elf::EM_X86_64.0)
            .segment(Segment::load(0, &header(b"")))
            .build();
        assert_eq!(
            error_of(&x86),
            "target/k: is not an AArch64 ELF (e_machine = 62, expected 183)"
        );
    }

    #[test]
    fn truncated_elf_is_malformed() {
        let bytes = TestElf::new()
            .segment(Segment::load(0, &header(b"")))
            .build();
        assert!(
            error_of(&bytes[..40]).starts_with("target/k: malformed ELF: "),
            "{}",
            error_of(&bytes[..40])
        );
    }

    #[test]
    fn no_loadable_segment() {
        let only_bss = TestElf::new()
            .segment(Segment::bss(0x4008_0000, 0x1000))
            .build();
        assert_eq!(
            error_of(&only_bss),
            "target/k: has no loadable segment (PT_LOAD with file bytes)"
        );
        assert_eq!(
            error_of(&TestElf::new().build()),
            "target/k: has no loadable segment (PT_LOAD with file bytes)"
        );
    }

    #[test]
    fn overlapping_segments() {
        let elf = TestElf::new()
            .segment(Segment::load(0x4008_0000, &header(b"")))
            .segment(Segment::load(0x4008_0020, &[1; 8]))
            .build();
        assert_eq!(
            error_of(&elf),
            "target/k: PT_LOAD segments overlap at physical address 0x40080020"
        );
    }

    #[test]
    fn huge_span_is_refused() {
        let elf = TestElf::new()
            .segment(Segment::load(0x4008_0000, &header(b"")))
            .segment(Segment::load(0xffff_0000_4008_0000, &[1; 8]))
            .build();
        assert!(
            error_of(&elf).contains("more than the 0x20000000-byte limit"),
            "{}",
            error_of(&elf)
        );
    }

    #[test]
    fn missing_image_header() {
        let elf = TestElf::new()
            .segment(Segment::load(0x4008_0000, &[0; 64]))
            .build();
        assert_eq!(
            error_of(&elf),
            "target/k: does not start with an arm64 Image header (no \"ARM\\x64\" magic at \
             offset 0x38 of the lowest loadable segment, paddr 0x40080000)"
        );
        let short = TestElf::new()
            .segment(Segment::load(0x4008_0000, &[0; 8]))
            .build();
        assert!(error_of(&short).contains("does not start with an arm64 Image header"));
    }

    #[test]
    fn segment_outside_the_file() {
        let mut bytes = TestElf::new()
            .segment(Segment::load(0x4008_0000, &header(b"")))
            .build();
        // p_filesz of the first program header (at e_phoff 64, field offset 32) made huge.
        bytes[64 + 32..64 + 40].copy_from_slice(&0x10_0000u64.to_le_bytes());
        assert_eq!(
            error_of(&bytes),
            "target/k: PT_LOAD segment at paddr 0x40080000 lies outside the file"
        );
    }
}
