//! The structure block token reader: every read is bounds-checked, every step advances.

use core::fmt;

use crate::error::Error;
use crate::header::{BlockRange, be_u32};

const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;

/// One structure block token (NOPs are skipped). Offsets are those of the token word.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Token<'a> {
    BeginNode {
        offset: usize,
        name: &'a str,
    },
    EndNode {
        offset: usize,
    },
    /// The name stays an offset into the strings block until asked for: most walks only
    /// compare it, and resolving it costs a NUL search and a UTF-8 check.
    Prop {
        offset: usize,
        name_offset: u32,
        value: &'a [u8],
    },
    End {
        offset: usize,
    },
}

/// A position in the structure block.
///
/// Each call to [`Cursor::next_token`] moves forward by at least one 4-byte word or fails, so
/// any loop over tokens ends within `size_dt_struct / 4` steps.
#[derive(Clone, Copy)]
pub(crate) struct Cursor<'a> {
    blob: &'a [u8],
    structure_end: usize,
    strings: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor at `pos`, which must lie in `structure`; both ranges must lie in `blob`
    /// (the header checks guarantee this).
    pub fn new(blob: &'a [u8], structure: BlockRange, strings: BlockRange, pos: usize) -> Self {
        let strings = blob.get(strings.start..strings.end).unwrap_or_default();
        Cursor {
            blob,
            structure_end: structure.end,
            strings,
            pos,
        }
    }

    /// Offset of the next token to be read.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Reads the next token other than NOP.
    pub fn next_token(&mut self) -> Result<Token<'a>, Error> {
        loop {
            let offset = self.pos;
            if offset >= self.structure_end {
                return Err(Error::MissingEnd { offset });
            }
            let token = self.word(offset).ok_or(Error::UnexpectedEnd { offset })?;
            self.pos = offset + 4;
            match token {
                FDT_NOP => continue,
                FDT_BEGIN_NODE => {
                    let name = self.node_name(offset)?;
                    return Ok(Token::BeginNode { offset, name });
                }
                FDT_PROP => return self.property(offset),
                FDT_END_NODE => return Ok(Token::EndNode { offset }),
                FDT_END => return Ok(Token::End { offset }),
                token => return Err(Error::BadToken { offset, token }),
            }
        }
    }

    /// The word at `offset`, if it ends within the structure block.
    fn word(&self, offset: usize) -> Option<u32> {
        if offset.checked_add(4)? > self.structure_end {
            return None;
        }
        be_u32(self.blob, offset)
    }

    /// Reads the NUL-terminated name after a BEGIN_NODE at `token` and skips its padding.
    fn node_name(&mut self, token: usize) -> Result<&'a str, Error> {
        let rest = self
            .blob
            .get(self.pos..self.structure_end)
            .unwrap_or_default();
        let len = rest
            .iter()
            .position(|&byte| byte == 0)
            .ok_or(Error::UnterminatedNodeName { offset: token })?;
        let name = rest.get(..len).unwrap_or_default();
        let name = core::str::from_utf8(name).map_err(|_| Error::InvalidName { offset: token })?;
        // `len` < rest.len(), so the NUL's offset is inside the block; aligning up may step
        // past the block end, which the next `word` reports.
        self.pos = align4(self.pos + len + 1);
        Ok(name)
    }

    /// Reads a PROP token's length, name offset and value (the token word is already read).
    fn property(&mut self, token: usize) -> Result<Token<'a>, Error> {
        let truncated = Error::UnexpectedEnd { offset: token };
        let len = self.word(self.pos).ok_or(truncated)?;
        let name_offset = self.word(self.pos + 4).ok_or(truncated)?;
        let start = self.pos + 8;
        let past_block = Error::PropertyPastBlock {
            offset: token,
            len,
            block_end: self.structure_end,
        };
        let end = start.checked_add(len as usize).ok_or(past_block)?;
        if end > self.structure_end {
            return Err(past_block);
        }
        let value = self.blob.get(start..end).ok_or(past_block)?;
        self.pos = align4(end);
        Ok(Token::Prop {
            offset: token,
            name_offset,
            value,
        })
    }

    /// Whether the property name at `string_offset` is `name`.
    pub fn string_is(&self, string_offset: u32, name: &str) -> bool {
        let start = string_offset as usize;
        let Some(end) = start.checked_add(name.len()) else {
            return false;
        };
        self.strings.get(start..end) == Some(name.as_bytes()) && self.strings.get(end) == Some(&0)
    }

    /// The property name at `string_offset` in the strings block, for the PROP at `token`.
    pub fn string(&self, token: usize, string_offset: u32) -> Result<&'a str, Error> {
        let strings_size = u32::try_from(self.strings.len()).unwrap_or(u32::MAX);
        let rest =
            self.strings
                .get(string_offset as usize..)
                .ok_or(Error::StringOffsetOutOfRange {
                    offset: token,
                    string_offset,
                    strings_size,
                })?;
        if rest.is_empty() {
            return Err(Error::StringOffsetOutOfRange {
                offset: token,
                string_offset,
                strings_size,
            });
        }
        let len = rest
            .iter()
            .position(|&byte| byte == 0)
            .ok_or(Error::UnterminatedString {
                offset: token,
                string_offset,
            })?;
        let name = rest.get(..len).unwrap_or_default();
        core::str::from_utf8(name).map_err(|_| Error::InvalidName { offset: token })
    }
}

impl fmt::Debug for Cursor<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cursor")
            .field("pos", &self.pos)
            .field("structure_end", &self.structure_end)
            .finish_non_exhaustive()
    }
}

/// Rounds `offset` up to a multiple of 4 (offsets are far below `usize::MAX`).
fn align4(offset: usize) -> usize {
    offset.saturating_add(3) & !3
}
