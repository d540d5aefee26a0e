//! The DTB header and the checks that make every block offset safe to use.

use crate::error::{Block, Error};

/// The FDT magic number, the first big-endian word of every DTB.
pub const FDT_MAGIC: u32 = 0xd00d_feed;
/// Size of the version-17 header in bytes.
pub const HEADER_SIZE: usize = 40;
/// The layout version this parser implements.
const CURRENT_VERSION: u32 = 17;
/// Version 16 is the oldest layout with the same structure block encoding as 17.
const OLDEST_VERSION: u32 = 16;

/// Reads the big-endian `u32` at `offset`, or `None` if it is not wholly inside `bytes`.
pub(crate) fn be_u32(bytes: &[u8], offset: usize) -> Option<u32> {
    let word = bytes.get(offset..offset.checked_add(4)?)?;
    word.try_into().ok().map(u32::from_be_bytes)
}

/// Reads the big-endian `u64` at `offset`, or `None` if it is not wholly inside `bytes`.
pub(crate) fn be_u64(bytes: &[u8], offset: usize) -> Option<u64> {
    let word = bytes.get(offset..offset.checked_add(8)?)?;
    word.try_into().ok().map(u64::from_be_bytes)
}

/// The header fields, as stored (big-endian decoded).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub magic: u32,
    pub total_size: u32,
    pub off_dt_struct: u32,
    pub off_dt_strings: u32,
    pub off_mem_rsvmap: u32,
    pub version: u32,
    pub last_comp_version: u32,
    pub boot_cpuid_phys: u32,
    pub size_dt_strings: u32,
    /// Only present from version 17; for version 16 it is taken to run to `totalsize`.
    pub size_dt_struct: u32,
}

impl Header {
    /// Decodes the header fields without judging them.
    pub(crate) fn read(blob: &[u8]) -> Result<Header, Error> {
        let field = |index: usize| be_u32(blob, index * 4);
        let (
            Some(magic),
            Some(total_size),
            Some(off_dt_struct),
            Some(off_dt_strings),
            Some(off_mem_rsvmap),
            Some(version),
            Some(last_comp_version),
            Some(boot_cpuid_phys),
            Some(size_dt_strings),
            Some(size_dt_struct),
        ) = (
            field(0),
            field(1),
            field(2),
            field(3),
            field(4),
            field(5),
            field(6),
            field(7),
            field(8),
            field(9),
        )
        else {
            return Err(Error::BlobTooSmall { len: blob.len() });
        };
        Ok(Header {
            magic,
            total_size,
            off_dt_struct,
            off_dt_strings,
            off_mem_rsvmap,
            version,
            last_comp_version,
            boot_cpuid_phys,
            size_dt_strings,
            size_dt_struct,
        })
    }

    /// Checks the fields that need no other part of the DTB: magic, `totalsize` against the
    /// bytes `available`, and the versions.
    pub(crate) fn check_identity(&self, available: usize) -> Result<(), Error> {
        if self.magic != FDT_MAGIC {
            return Err(Error::BadMagic { found: self.magic });
        }
        if (self.total_size as usize) < HEADER_SIZE {
            return Err(Error::TotalSizeTooSmall {
                total_size: self.total_size,
            });
        }
        if self.total_size as usize > available {
            return Err(Error::TotalSizeTooBig {
                total_size: self.total_size,
                available,
            });
        }
        if self.version < OLDEST_VERSION {
            return Err(Error::UnsupportedVersion {
                version: self.version,
            });
        }
        if self.last_comp_version > CURRENT_VERSION {
            return Err(Error::IncompatibleVersion {
                last_comp_version: self.last_comp_version,
            });
        }
        Ok(())
    }

    /// Size of the structure block: the header field from version 17, else the rest of the DTB.
    pub(crate) fn struct_size(&self) -> u32 {
        if self.version >= CURRENT_VERSION {
            self.size_dt_struct
        } else {
            self.total_size.saturating_sub(self.off_dt_struct)
        }
    }

    /// Checks that the structure and strings blocks lie inside `totalsize`, after the header,
    /// aligned, and apart. Returns their byte ranges.
    pub(crate) fn check_blocks(&self) -> Result<(BlockRange, BlockRange), Error> {
        if !self.off_mem_rsvmap.is_multiple_of(8) {
            let offset = self.off_mem_rsvmap;
            return Err(Error::MisalignedBlock {
                block: Block::MemoryReservations,
                offset,
                align: 8,
            });
        }
        if !self.off_dt_struct.is_multiple_of(4) {
            let offset = self.off_dt_struct;
            return Err(Error::MisalignedBlock {
                block: Block::Structure,
                offset,
                align: 4,
            });
        }
        let structure = self.block(Block::Structure, self.off_dt_struct, self.struct_size())?;
        let strings = self.block(Block::Strings, self.off_dt_strings, self.size_dt_strings)?;
        // The reservation block's length is only known once its terminator is found, but at
        // least its first entry (16 bytes) must fit.
        self.block(Block::MemoryReservations, self.off_mem_rsvmap, 16)?;
        if structure.overlaps(&strings) {
            return Err(Error::BlocksOverlap {
                first: Block::Structure,
                second: Block::Strings,
            });
        }
        Ok((structure, strings))
    }

    fn block(&self, block: Block, offset: u32, size: u32) -> Result<BlockRange, Error> {
        let out_of_bounds = Error::BlockOutOfBounds {
            block,
            offset,
            size,
            total_size: self.total_size,
        };
        let end = offset.checked_add(size).ok_or(out_of_bounds)?;
        if end > self.total_size {
            return Err(out_of_bounds);
        }
        if (offset as usize) < HEADER_SIZE {
            return Err(Error::BlocksOverlap {
                first: Block::Header,
                second: block,
            });
        }
        Ok(BlockRange {
            start: offset as usize,
            end: end as usize,
        })
    }
}

/// The byte range `start..end` of a block within the DTB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct BlockRange {
    pub start: usize,
    pub end: usize,
}

impl BlockRange {
    /// Whether the two ranges share a byte (empty ranges share none).
    pub fn overlaps(&self, other: &BlockRange) -> bool {
        self.start < other.end && other.start < self.end
    }
}
