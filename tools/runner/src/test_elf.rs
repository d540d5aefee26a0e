//! Test helpers: a tiny ELF64 writer (program headers and named sections, nothing else) and
//! per-test scratch directories.

use std::path::{Path, PathBuf};

/// One program header with its file bytes.
pub struct Segment {
    pub kind: u32,
    pub vaddr: u64,
    pub paddr: u64,
    pub bytes: Vec<u8>,
    pub memsz: u64,
}

impl Segment {
    /// A PT_LOAD segment whose memory image is exactly `bytes`, identity-mapped.
    pub fn load(paddr: u64, bytes: &[u8]) -> Self {
        Segment {
            kind: object::elf::PT_LOAD.0,
            vaddr: paddr,
            paddr,
            bytes: bytes.to_vec(),
            memsz: bytes.len() as u64,
        }
    }

    /// A PT_LOAD segment with no file bytes (bss).
    pub fn bss(paddr: u64, memsz: u64) -> Self {
        Segment {
            memsz,
            ..Segment::load(paddr, &[])
        }
    }
}

/// Builder for a little-endian ELF64 executable.
pub struct TestElf {
    machine: u16,
    segments: Vec<Segment>,
    sections: Vec<SectionSpec>,
    symbols: Vec<(String, u64, u64)>,
}

/// A section to write: non-alloc data, or code loaded at `address`.
struct SectionSpec {
    name: String,
    bytes: Vec<u8>,
    code_address: Option<u64>,
}

/// A section header's variable fields.
struct RawSection {
    name: usize,
    kind: u32,
    flags: u64,
    address: u64,
    offset: usize,
    size: usize,
    link: u32,
    info: u32,
    entsize: u64,
}

impl TestElf {
    pub fn new() -> Self {
        TestElf {
            machine: object::elf::EM_AARCH64.0,
            segments: Vec::new(),
            sections: Vec::new(),
            symbols: Vec::new(),
        }
    }

    pub fn machine(mut self, machine: u16) -> Self {
        self.machine = machine;
        self
    }

    pub fn segment(mut self, segment: Segment) -> Self {
        self.segments.push(segment);
        self
    }

    /// A non-alloc PROGBITS section.
    pub fn section(mut self, name: &str, bytes: &[u8]) -> Self {
        self.sections.push(SectionSpec {
            name: name.to_string(),
            bytes: bytes.to_vec(),
            code_address: None,
        });
        self
    }

    /// An executable PROGBITS section at `address` (its bytes are not loaded by any segment).
    pub fn code_section(mut self, name: &str, address: u64, bytes: &[u8]) -> Self {
        self.sections.push(SectionSpec {
            name: name.to_string(),
            bytes: bytes.to_vec(),
            code_address: Some(address),
        });
        self
    }

    /// A global function symbol in the first section (goes into .symtab/.strtab).
    pub fn symbol(mut self, name: &str, address: u64, size: u64) -> Self {
        self.symbols.push((name.to_string(), address, size));
        self
    }

    /// Layout: ELF header, program headers, segment bytes, section bytes, section headers
    /// (null, the sections, .symtab + .strtab if there are symbols, .shstrtab).
    pub fn build(&self) -> Vec<u8> {
        const EHDR: usize = 64;
        const PHDR: usize = 56;
        const SHDR: usize = 64;
        const SYM: usize = 24;
        let phoff = EHDR;
        let mut body = Vec::new();
        let mut offset = phoff + PHDR * self.segments.len();
        let mut segment_offsets = Vec::new();
        for segment in &self.segments {
            segment_offsets.push(offset);
            body.extend_from_slice(&segment.bytes);
            offset += segment.bytes.len();
        }
        let mut shstrtab = vec![0u8];
        let mut add_name = |name: &str| {
            let at = shstrtab.len();
            shstrtab.extend_from_slice(name.as_bytes());
            shstrtab.push(0);
            at
        };
        let mut raw_sections = Vec::new();
        let add_data = |body: &mut Vec<u8>, offset: &mut usize, bytes: &[u8]| {
            let at = *offset;
            body.extend_from_slice(bytes);
            *offset += bytes.len();
            at
        };
        for section in &self.sections {
            raw_sections.push(RawSection {
                name: add_name(&section.name),
                kind: object::elf::SHT_PROGBITS.0,
                flags: match section.code_address {
                    Some(_) => (object::elf::SHF_ALLOC | object::elf::SHF_EXECINSTR).0,
                    None => 0,
                },
                address: section.code_address.unwrap_or(0),
                offset: add_data(&mut body, &mut offset, &section.bytes),
                size: section.bytes.len(),
                link: 0,
                info: 0,
                entsize: 0,
            });
        }
        if !self.symbols.is_empty() {
            let mut strtab = vec![0u8];
            let mut symtab = vec![0u8; SYM]; // the null symbol
            for (name, address, size) in &self.symbols {
                symtab.extend_from_slice(&(strtab.len() as u32).to_le_bytes());
                symtab.push((object::elf::STB_GLOBAL.0 << 4) | object::elf::STT_FUNC.0);
                symtab.push(0);
                symtab.extend_from_slice(&1u16.to_le_bytes()); // st_shndx: first section
                symtab.extend_from_slice(&address.to_le_bytes());
                symtab.extend_from_slice(&size.to_le_bytes());
                strtab.extend_from_slice(name.as_bytes());
                strtab.push(0);
            }
            let strtab_index = (raw_sections.len() + 2) as u32;
            raw_sections.push(RawSection {
                name: add_name(".symtab"),
                kind: object::elf::SHT_SYMTAB.0,
                flags: 0,
                address: 0,
                offset: add_data(&mut body, &mut offset, &symtab),
                size: symtab.len(),
                link: strtab_index,
                info: 1,
                entsize: SYM as u64,
            });
            raw_sections.push(RawSection {
                name: add_name(".strtab"),
                kind: object::elf::SHT_STRTAB.0,
                flags: 0,
                address: 0,
                offset: add_data(&mut body, &mut offset, &strtab),
                size: strtab.len(),
                link: 0,
                info: 0,
                entsize: 0,
            });
        }
        let shstrtab_name = add_name(".shstrtab");
        raw_sections.push(RawSection {
            name: shstrtab_name,
            kind: object::elf::SHT_STRTAB.0,
            flags: 0,
            address: 0,
            offset: add_data(&mut body, &mut offset, &shstrtab.clone()),
            size: shstrtab.len(),
            link: 0,
            info: 0,
            entsize: 0,
        });
        let padding = (8 - offset % 8) % 8;
        body.resize(body.len() + padding, 0);
        let shoff = offset + padding;
        let shnum = raw_sections.len() + 1;

        let mut out = Vec::new();
        out.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
        out.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        out.extend_from_slice(&self.machine.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&0u64.to_le_bytes()); // e_entry
        out.extend_from_slice(&(phoff as u64).to_le_bytes());
        out.extend_from_slice(&(shoff as u64).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes()); // e_flags
        out.extend_from_slice(&(EHDR as u16).to_le_bytes());
        out.extend_from_slice(&(PHDR as u16).to_le_bytes());
        out.extend_from_slice(&(self.segments.len() as u16).to_le_bytes());
        out.extend_from_slice(&(SHDR as u16).to_le_bytes());
        out.extend_from_slice(&(shnum as u16).to_le_bytes());
        out.extend_from_slice(&((shnum - 1) as u16).to_le_bytes()); // e_shstrndx
        for (segment, &file_offset) in self.segments.iter().zip(&segment_offsets) {
            out.extend_from_slice(&segment.kind.to_le_bytes());
            out.extend_from_slice(&5u32.to_le_bytes()); // R + X
            out.extend_from_slice(&(file_offset as u64).to_le_bytes());
            out.extend_from_slice(&segment.vaddr.to_le_bytes());
            out.extend_from_slice(&segment.paddr.to_le_bytes());
            out.extend_from_slice(&(segment.bytes.len() as u64).to_le_bytes());
            out.extend_from_slice(&segment.memsz.to_le_bytes());
            out.extend_from_slice(&0x1000u64.to_le_bytes());
        }
        out.extend_from_slice(&body);
        out.extend_from_slice(&[0u8; SHDR]);
        for section in &raw_sections {
            out.extend_from_slice(&(section.name as u32).to_le_bytes());
            out.extend_from_slice(&section.kind.to_le_bytes());
            out.extend_from_slice(&section.flags.to_le_bytes());
            out.extend_from_slice(&section.address.to_le_bytes());
            out.extend_from_slice(&(section.offset as u64).to_le_bytes());
            out.extend_from_slice(&(section.size as u64).to_le_bytes());
            out.extend_from_slice(&section.link.to_le_bytes());
            out.extend_from_slice(&section.info.to_le_bytes());
            out.extend_from_slice(&1u64.to_le_bytes()); // sh_addralign
            out.extend_from_slice(&section.entsize.to_le_bytes());
        }
        out
    }
}

/// An empty directory for one test under the system temp directory, removed when dropped.
pub struct ScratchDir(PathBuf);

impl std::ops::Deref for ScratchDir {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Creates the [`ScratchDir`] for `test`.
pub fn scratch_dir(test: &str) -> ScratchDir {
    let dir = std::env::temp_dir().join(format!("runner-test-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch directory");
    ScratchDir(dir)
}
