//! Properties and the typed views of their values.

use crate::error::{Error, Name};
use crate::header::be_u32;

/// One property of a node: its name and raw value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Property<'a> {
    name: &'a str,
    value: &'a [u8],
    offset: usize,
}

impl<'a> Property<'a> {
    pub(crate) fn new(name: &'a str, value: &'a [u8], offset: usize) -> Self {
        Property {
            name,
            value,
            offset,
        }
    }

    /// The property's name.
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// The raw value bytes.
    pub fn value(&self) -> &'a [u8] {
        self.value
    }

    /// Offset of the property's PROP token in the DTB (for error messages and dumps).
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// The value as one big-endian `u32` (exactly 4 bytes).
    pub fn as_u32(&self) -> Result<u32, Error> {
        let bytes = self.value.try_into().map_err(|_| self.bad_length("4"))?;
        Ok(u32::from_be_bytes(bytes))
    }

    /// The value as one big-endian `u64` (exactly 8 bytes).
    pub fn as_u64(&self) -> Result<u64, Error> {
        let bytes = self.value.try_into().map_err(|_| self.bad_length("8"))?;
        Ok(u64::from_be_bytes(bytes))
    }

    /// The value as a number of either size: 4 bytes (one cell) or 8 bytes (two cells), as
    /// bindings such as `clock-frequency` allow.
    pub fn as_u32_or_u64(&self) -> Result<u64, Error> {
        match self.value.len() {
            4 => self.as_u32().map(u64::from),
            _ => self.as_u64().map_err(|_| self.bad_length("4 or 8")),
        }
    }

    /// The value as one NUL-terminated UTF-8 string (without the NUL).
    pub fn as_str(&self) -> Result<&'a str, Error> {
        let mut list = self.as_str_list()?;
        match (list.next(), list.next()) {
            (Some(text), None) => Ok(text),
            _ => Err(self.bad_string()),
        }
    }

    /// The value as a list of NUL-terminated UTF-8 strings (e.g. `compatible`).
    pub fn as_str_list(&self) -> Result<StrList<'a>, Error> {
        let text = core::str::from_utf8(self.value).map_err(|_| self.bad_string())?;
        if text.is_empty() {
            return Ok(StrList { rest: None });
        }
        let body = text.strip_suffix('\0').ok_or(self.bad_string())?;
        Ok(StrList { rest: Some(body) })
    }

    /// The value as big-endian 32-bit cells (length a multiple of 4).
    pub fn as_cells(&self) -> Result<Cells<'a>, Error> {
        if !self.value.len().is_multiple_of(4) {
            return Err(self.bad_length("a multiple of 4"));
        }
        Ok(Cells { bytes: self.value })
    }

    /// A `BadPropertyLength` error for this property; `expected` completes "expected ... bytes".
    pub(crate) fn bad_length(&self, expected: &'static str) -> Error {
        Error::BadPropertyLength {
            property: Name::new(self.name),
            offset: self.offset,
            len: self.value.len(),
            expected,
        }
    }

    fn bad_string(&self) -> Error {
        Error::BadString {
            property: Name::new(self.name),
            offset: self.offset,
        }
    }
}

/// Whether the string-list `value` (NUL-terminated strings) has the entry `wanted`. Compares
/// bytes only, which is all that finding a node by `compatible` needs.
pub(crate) fn str_list_contains(value: &[u8], wanted: &str) -> bool {
    value.strip_suffix(&[0]).is_some_and(|body| {
        body.split(|&byte| byte == 0)
            .any(|entry| entry == wanted.as_bytes())
    })
}

/// Iterator over the strings of a string-list property.
#[derive(Clone, Debug, Default)]
pub struct StrList<'a> {
    /// The strings not yet returned, NUL-separated, final NUL removed.
    rest: Option<&'a str>,
}

impl<'a> Iterator for StrList<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let rest = self.rest?;
        match rest.split_once('\0') {
            Some((first, tail)) => {
                self.rest = Some(tail);
                Some(first)
            }
            None => {
                self.rest = None;
                Some(rest)
            }
        }
    }
}

/// Iterator over the 32-bit big-endian cells of a property value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cells<'a> {
    /// Always a multiple of 4 bytes long.
    bytes: &'a [u8],
}

impl<'a> Cells<'a> {
    /// The number of cells not yet consumed.
    pub fn len(&self) -> usize {
        self.bytes.len() / 4
    }

    /// Whether no cells remain.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The cell at `index`, counted from the current position.
    pub fn get(&self, index: usize) -> Option<u32> {
        be_u32(self.bytes, index.checked_mul(4)?)
    }

    /// Consumes `count` cells as one big-endian number. `None` if fewer remain or `count` > 2.
    pub fn read_number(&mut self, count: u32) -> Option<u64> {
        if count > 2 || self.len() < count as usize {
            return None;
        }
        let mut number = 0u64;
        for _ in 0..count {
            number = (number << 32) | u64::from(self.next()?);
        }
        Some(number)
    }

    /// Splits off the next `count` cells as their own `Cells`.
    pub fn take_prefix(&mut self, count: usize) -> Option<Cells<'a>> {
        let split = count.checked_mul(4)?;
        let (head, tail) = self.bytes.split_at_checked(split)?;
        self.bytes = tail;
        Some(Cells { bytes: head })
    }
}

impl Iterator for Cells<'_> {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        let cell = be_u32(self.bytes, 0)?;
        self.bytes = self.bytes.get(4..).unwrap_or_default();
        Some(cell)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.len(), Some(self.len()))
    }
}

impl ExactSizeIterator for Cells<'_> {}
