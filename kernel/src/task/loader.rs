//! Loading user programs: a strict reader of the ELF64 files in the kernel image, and their
//! segments placed in a fresh address space with exactly the permissions each segment asks for
//! (never writable and executable).

use crate::mm::PAGE_SIZE;
use crate::mm::aspace::{SpaceError, UserSpace};
use core::fmt;
use pagetable::MemoryAttributes;

const PT_LOAD: u32 = 1;
const PF_X: u32 = 1;
const PF_W: u32 = 2;
const PF_R: u32 = 4;
const EM_AARCH64: u16 = 183;
const ET_EXEC: u16 = 2;

#[derive(Debug, PartialEq, Eq)]
pub enum LoadError {
    /// Not a 64-bit little-endian AArch64 executable.
    NotAnExecutable,
    /// A header or segment lies (partly) outside the file.
    Truncated,
    /// A segment asks to be writable and executable.
    WritableAndExecutable {
        vaddr: u64,
    },
    /// A segment is not page aligned, or lies outside the program area.
    BadSegment {
        vaddr: u64,
    },
    /// The entry point is not in an executable segment.
    BadEntry(u64),
    Space(SpaceError),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotAnExecutable => f.write_str("not a 64-bit little-endian AArch64 executable"),
            Self::Truncated => f.write_str("the ELF file is truncated"),
            Self::WritableAndExecutable { vaddr } => {
                write!(f, "segment at {vaddr:#x} is writable and executable")
            }
            Self::BadSegment { vaddr } => write!(
                f,
                "segment at {vaddr:#x} is misaligned or outside the program area"
            ),
            Self::BadEntry(entry) => {
                write!(f, "entry point {entry:#x} is not in an executable segment")
            }
            Self::Space(err) => write!(f, "{err}"),
        }
    }
}

fn u16_at(bytes: &[u8], offset: usize) -> Result<u16, LoadError> {
    let raw = bytes.get(offset..offset + 2).ok_or(LoadError::Truncated)?;
    Ok(u16::from_le_bytes([raw[0], raw[1]]))
}

fn u32_at(bytes: &[u8], offset: usize) -> Result<u32, LoadError> {
    let raw = bytes.get(offset..offset + 4).ok_or(LoadError::Truncated)?;
    Ok(u32::from_le_bytes(
        raw.try_into().map_err(|_| LoadError::Truncated)?,
    ))
}

fn u64_at(bytes: &[u8], offset: usize) -> Result<u64, LoadError> {
    let raw = bytes.get(offset..offset + 8).ok_or(LoadError::Truncated)?;
    Ok(u64::from_le_bytes(
        raw.try_into().map_err(|_| LoadError::Truncated)?,
    ))
}

/// A loadable segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub vaddr: u64,
    pub memory_size: u64,
    pub file_offset: u64,
    pub file_size: u64,
    pub flags: u32,
}

/// Reads the entry point and the loadable segments of an ELF file.
pub fn parse(elf: &[u8]) -> Result<(u64, arrayvec::ArrayVec<Segment, 8>), LoadError> {
    let ident_ok = elf.get(..7) == Some(&[0x7f, b'E', b'L', b'F', 2, 1, 1][..]);
    if !ident_ok || u16_at(elf, 18)? != EM_AARCH64 || u16_at(elf, 16)? != ET_EXEC {
        return Err(LoadError::NotAnExecutable);
    }
    let entry = u64_at(elf, 24)?;
    let table = u64_at(elf, 32)? as usize;
    let entry_size = u16_at(elf, 54)? as usize;
    let count = u16_at(elf, 56)? as usize;
    if entry_size < 56 {
        return Err(LoadError::NotAnExecutable);
    }
    let mut segments = arrayvec::ArrayVec::new();
    for index in 0..count {
        let header = table
            .checked_add(index * entry_size)
            .ok_or(LoadError::Truncated)?;
        if u32_at(elf, header)? != PT_LOAD {
            continue;
        }
        let segment = Segment {
            flags: u32_at(elf, header + 4)?,
            file_offset: u64_at(elf, header + 8)?,
            vaddr: u64_at(elf, header + 16)?,
            file_size: u64_at(elf, header + 32)?,
            memory_size: u64_at(elf, header + 40)?,
        };
        let file_end = segment
            .file_offset
            .checked_add(segment.file_size)
            .ok_or(LoadError::Truncated)?;
        if file_end > elf.len() as u64 || segment.file_size > segment.memory_size {
            return Err(LoadError::Truncated);
        }
        if segment.flags & PF_W != 0 && segment.flags & PF_X != 0 {
            return Err(LoadError::WritableAndExecutable {
                vaddr: segment.vaddr,
            });
        }
        if segment.flags & PF_R == 0 {
            return Err(LoadError::BadSegment {
                vaddr: segment.vaddr,
            });
        }
        let end = segment.vaddr.checked_add(segment.memory_size);
        if !segment.vaddr.is_multiple_of(PAGE_SIZE)
            || segment.vaddr < abi::layout::PROGRAM_BASE
            || end.is_none_or(|end| end > abi::layout::MAP_BASE)
        {
            return Err(LoadError::BadSegment {
                vaddr: segment.vaddr,
            });
        }
        segments
            .try_push(segment)
            .map_err(|_| LoadError::BadSegment {
                vaddr: segment.vaddr,
            })?;
    }
    let executable = segments
        .iter()
        .any(|s| s.flags & PF_X != 0 && (s.vaddr..s.vaddr + s.memory_size).contains(&entry));
    if !executable {
        return Err(LoadError::BadEntry(entry));
    }
    Ok((entry, segments))
}

fn attributes(flags: u32) -> MemoryAttributes {
    if flags & PF_X != 0 {
        MemoryAttributes::USER_CODE
    } else if flags & PF_W != 0 {
        MemoryAttributes::USER_DATA
    } else {
        MemoryAttributes::USER_RODATA
    }
}

/// Places the program's segments and an empty stack (with an unmapped guard page below it) in
/// `space`. Returns the entry point.
pub fn load(space: &mut UserSpace, elf: &[u8]) -> Result<u64, LoadError> {
    let (entry, segments) = parse(elf)?;
    for segment in &segments {
        let len = segment.memory_size.div_ceil(PAGE_SIZE) * PAGE_SIZE;
        let start = segment.file_offset as usize;
        let data = &elf[start..start + segment.file_size as usize];
        space
            .add_region_with_data(segment.vaddr, len, attributes(segment.flags), data)
            .map_err(LoadError::Space)?;
    }
    let stack_bottom = abi::layout::STACK_TOP - abi::layout::STACK_SIZE;
    space
        .add_region(
            stack_bottom,
            abi::layout::STACK_SIZE,
            MemoryAttributes::USER_DATA,
        )
        .map_err(LoadError::Space)?;
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ktest::prelude::*;

    ktest! {
        fn embedded_programs_parse_with_w_xor_x_segments() -> TestResult {
            for (name, elf) in super::super::programs::PROGRAMS {
                let (entry, segments) = check_ok!(parse(elf));
                check!(segments.iter().any(|s| s.flags & PF_X != 0), "{name} has code");
                check!(segments.iter().all(|s| s.flags & (PF_W | PF_X) != (PF_W | PF_X)), "{name} is W^X");
                check!(entry >= abi::layout::PROGRAM_BASE, "{name} entry {entry:#x}");
            }
            Ok(())
        }

        fn malformed_executables_are_refused() -> TestResult {
            let (_, good) = check_ok!(super::super::programs::PROGRAMS.first().ok_or("no programs"));
            check_eq!(parse(&good[..10]), Err(LoadError::Truncated));
            let mut not_elf = good.to_vec();
            not_elf[1] = b'X';
            check_eq!(parse(&not_elf), Err(LoadError::NotAnExecutable));
            check_eq!(parse(&good[..60]), Err(LoadError::Truncated));
            let mut wrong_machine = good.to_vec();
            wrong_machine[18] = 62;
            check_eq!(parse(&wrong_machine), Err(LoadError::NotAnExecutable));
            // Make the first segment writable as well as executable.
            let mut wx = good.to_vec();
            let table = u64_at(&wx, 32).map_err(|e| Failure::new(file!(), line!(), alloc::format!("{e}")))? as usize;
            let first_load = (0..u16_at(&wx, 56).unwrap_or(0) as usize)
                .map(|i| table + i * 56)
                .find(|&h| u32_at(&wx, h) == Ok(PT_LOAD))
                .ok_or(Failure::new(file!(), line!(), "no PT_LOAD".into()))?;
            wx[first_load + 4] = (PF_R | PF_W | PF_X) as u8;
            check!(matches!(parse(&wx), Err(LoadError::WritableAndExecutable { .. })));
            let mut past_end = good.to_vec();
            past_end[first_load + 32..first_load + 40].copy_from_slice(&(1u64 << 40).to_le_bytes());
            check_eq!(parse(&past_end), Err(LoadError::Truncated));
            Ok(())
        }
    }
}
