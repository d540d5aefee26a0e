//! A validated DTB and the tree-wide queries on it.

use core::fmt;

use crate::MAX_DEPTH;
use crate::cursor::{Cursor, Token};
use crate::error::{Block, Error};
use crate::header::{BlockRange, HEADER_SIZE, Header, be_u64};
use crate::node::Node;
use crate::property::str_list_contains;

/// The largest `totalsize` [`Fdt::from_ptr`] believes: QEMU's own DTBs are 1 MiB, a DTB given
/// with `-dtb` grows by QEMU's 1 MiB of free space (just over 2 MiB), real boards' are far
/// smaller; anything much bigger is more likely garbage than a device tree.
pub const MAX_TOTAL_SIZE_FROM_PTR: usize = 8 << 20;

/// A base address and a size, as found in `reg` and in the memory reservation block.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemRegion {
    pub base: u64,
    pub size: u64,
}

impl MemRegion {
    /// The first address after the region, or `None` if it wraps around 64 bits.
    pub fn end(&self) -> Option<u64> {
        self.base.checked_add(self.size)
    }
}

/// A flattened devicetree whose header, memory reservation block and structure block have
/// all been checked, so that walking it can meet no malformed token.
///
/// Cheap to copy: it is a slice, the decoded header and a few offsets.
#[derive(Clone, Copy)]
pub struct Fdt<'a> {
    blob: &'a [u8],
    header: Header,
    structure: BlockRange,
    strings: BlockRange,
    root: usize,
}

impl<'a> Fdt<'a> {
    /// Checks `blob` (which may be longer than the DTB's `totalsize`) and wraps it.
    ///
    /// Everything is validated here in one pass: the header fields, the block bounds, the
    /// reservation list's terminator, and every token, name, property and string offset of the
    /// structure block, with nesting limited to [`MAX_DEPTH`] levels.
    pub fn new(blob: &'a [u8]) -> Result<Self, Error> {
        let header = Header::read(blob)?;
        header.check_identity(blob.len())?;
        let blob = blob.get(..header.total_size as usize).unwrap_or_default();
        let (structure, strings) = header.check_blocks()?;
        let mut fdt = Fdt {
            blob,
            header,
            structure,
            strings,
            root: structure.start,
        };
        fdt.check_reservations()?;
        fdt.root = fdt.check_structure()?;
        Ok(fdt)
    }

    /// Reads and checks the DTB at `ptr`, the address the boot loader passed in `x0`.
    ///
    /// Only the 40-byte header is read before the magic and `totalsize` are checked
    /// (`totalsize` must be at most [`MAX_TOTAL_SIZE_FROM_PTR`]); only then are `totalsize`
    /// bytes read.
    ///
    /// # Safety
    ///
    /// `ptr` must be readable for 40 bytes. If those bytes start with the FDT magic and their
    /// `totalsize` is at most [`MAX_TOTAL_SIZE_FROM_PTR`], `ptr` must be readable for
    /// `totalsize` bytes. Those bytes must not be written for the rest of the program (the
    /// result borrows them for `'static`): keep the DTB's pages reserved and read-only.
    pub unsafe fn from_ptr(ptr: *const u8) -> Result<Fdt<'static>, Error> {
        if ptr.is_null() {
            return Err(Error::NullPointer);
        }
        // SAFETY: the caller guarantees 40 readable, unchanging bytes at `ptr`.
        let header_bytes = unsafe { core::slice::from_raw_parts(ptr, HEADER_SIZE) };
        let header = Header::read(header_bytes)?;
        if header.magic != crate::header::FDT_MAGIC {
            return Err(Error::BadMagic {
                found: header.magic,
            });
        }
        let total_size = header.total_size as usize;
        if total_size > MAX_TOTAL_SIZE_FROM_PTR {
            let limit = MAX_TOTAL_SIZE_FROM_PTR;
            return Err(Error::TotalSizeOverLimit {
                total_size: header.total_size,
                limit,
            });
        }
        if total_size < HEADER_SIZE {
            return Err(Error::TotalSizeTooSmall {
                total_size: header.total_size,
            });
        }
        // SAFETY: the magic matched and `totalsize` is within the limit, so the caller
        // guarantees `totalsize` readable bytes that stay unchanged for `'static`.
        let blob = unsafe { core::slice::from_raw_parts(ptr, total_size) };
        Fdt::new(blob)
    }

    /// The decoded header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The DTB's size in bytes (`totalsize`): what the kernel must keep reserved.
    pub fn total_size(&self) -> usize {
        self.blob.len()
    }

    /// The DTB's bytes, `totalsize` long.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.blob
    }

    /// The entries of the memory reservation block (`/memreserve/`), terminator excluded.
    pub fn memory_reservations(&self) -> MemoryReservations<'a> {
        MemoryReservations {
            blob: self.blob,
            pos: self.header.off_mem_rsvmap as usize,
        }
    }

    /// The root node `/`.
    pub fn root(&self) -> Node<'a> {
        // The structure check proved an empty-named BEGIN_NODE at `root`: name NUL + padding.
        Node::new(*self, self.root, self.root + 8, "", 0, [0; MAX_DEPTH])
    }

    /// Every node, depth first in DTB order, starting with the root.
    pub fn nodes(&self) -> Nodes<'a> {
        Nodes {
            fdt: *self,
            cursor: self.cursor(self.root),
            ancestors: [0; MAX_DEPTH],
            open: 0,
        }
    }

    /// The node at `path` ("/", "/chosen", "/cpus/cpu@0"). A component without a unit address
    /// also matches a node whose name has one ("/cpus/cpu" finds "cpu@0"). A path not starting
    /// with '/' starts with an alias from `/aliases` ("serial0", "serial0/child").
    pub fn find_node(&self, path: &str) -> Option<Node<'a>> {
        let (mut node, rest) = match path.strip_prefix('/') {
            Some(rest) => (self.root(), rest),
            None => {
                let (alias, rest) = path.split_once('/').unwrap_or((path, ""));
                let aliases = self.root().child("aliases")?;
                let target = aliases.property(alias)?.as_str().ok()?;
                if !target.starts_with('/') {
                    return None; // an alias must name a full path, not another alias
                }
                (self.find_node(target)?, rest)
            }
        };
        for component in rest.split('/').filter(|component| !component.is_empty()) {
            node = node.child(component)?;
        }
        Some(node)
    }

    /// Every node whose `compatible` list contains `compatible`, in DTB order.
    pub fn compatible_nodes<'c>(
        &self,
        compatible: &'c str,
    ) -> impl Iterator<Item = Node<'a>> + use<'a, 'c> {
        let mut nodes = self.nodes();
        core::iter::from_fn(move || {
            nodes.find_by_property(|cursor, name_offset, value| {
                cursor.string_is(name_offset, "compatible") && str_list_contains(value, compatible)
            })
        })
    }

    /// The first node whose `compatible` list contains `compatible`.
    pub fn find_compatible(&self, compatible: &str) -> Option<Node<'a>> {
        self.compatible_nodes(compatible).next()
    }

    /// The node whose `phandle` (or legacy `linux,phandle`) is `phandle`.
    pub fn find_phandle(&self, phandle: u32) -> Option<Node<'a>> {
        if phandle == 0 || phandle == u32::MAX {
            return None; // reserved values that no node may carry
        }
        let wanted = phandle.to_be_bytes();
        self.nodes().find_by_property(|cursor, name_offset, value| {
            value == wanted
                && (cursor.string_is(name_offset, "phandle")
                    || cursor.string_is(name_offset, "linux,phandle"))
        })
    }

    /// A token cursor at `pos` in the structure block.
    pub(crate) fn cursor(&self, pos: usize) -> Cursor<'a> {
        Cursor::new(self.blob, self.structure, self.strings, pos)
    }

    /// Walks the reservation list to its terminator; it must neither wrap addresses nor touch
    /// the other blocks.
    fn check_reservations(&self) -> Result<(), Error> {
        let start = self.header.off_mem_rsvmap as usize;
        let mut offset = start;
        while let Some(region) = reservation_at(self.blob, offset)? {
            if region.end().is_none() {
                let (address, size) = (region.base, region.size);
                return Err(Error::ReservationOverflow {
                    offset,
                    address,
                    size,
                });
            }
            offset += RESERVATION_SIZE;
        }
        let reservations = BlockRange {
            start,
            end: offset + RESERVATION_SIZE,
        };
        for (other, block) in [
            (self.structure, Block::Structure),
            (self.strings, Block::Strings),
        ] {
            if reservations.overlaps(&other) {
                return Err(Error::BlocksOverlap {
                    first: Block::MemoryReservations,
                    second: block,
                });
            }
        }
        Ok(())
    }

    /// Walks every token once; returns the offset of the root's BEGIN_NODE.
    fn check_structure(&self) -> Result<usize, Error> {
        let mut cursor = self.cursor(self.structure.start);
        let root = match cursor.next_token()? {
            Token::BeginNode { offset, name: "" } => offset,
            Token::BeginNode { offset, .. } => return Err(Error::NamedRootNode { offset }),
            Token::EndNode { offset } | Token::Prop { offset, .. } | Token::End { offset } => {
                return Err(Error::NoRootNode { offset });
            }
        };
        // `has_child[d]`: the open node at depth d has already had a child node.
        let mut has_child = [false; MAX_DEPTH];
        let mut open = 1;
        loop {
            match cursor.next_token()? {
                Token::BeginNode { offset, .. } => {
                    if open == 0 {
                        return Err(Error::TokenAfterRoot { offset });
                    }
                    if open == MAX_DEPTH {
                        return Err(Error::TooDeep {
                            offset,
                            limit: MAX_DEPTH,
                        });
                    }
                    if let Some(parent) = has_child.get_mut(open - 1) {
                        *parent = true;
                    }
                    if let Some(this) = has_child.get_mut(open) {
                        *this = false;
                    }
                    open += 1;
                }
                Token::Prop {
                    offset,
                    name_offset,
                    ..
                } => {
                    cursor.string(offset, name_offset)?;
                    if open == 0 {
                        return Err(Error::TokenAfterRoot { offset });
                    }
                    if has_child.get(open - 1).copied().unwrap_or(false) {
                        return Err(Error::PropertyAfterChild { offset });
                    }
                }
                Token::EndNode { offset } => {
                    if open == 0 {
                        return Err(Error::UnbalancedEndNode { offset });
                    }
                    open -= 1;
                }
                Token::End { offset } => {
                    if open != 0 {
                        return Err(Error::EndInsideNode { offset, open });
                    }
                    return Ok(root);
                }
            }
        }
    }
}

impl fmt::Debug for Fdt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the blob itself: thousands of bytes would drown whatever is being debugged.
        f.debug_struct("Fdt")
            .field("address", &self.blob.as_ptr())
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

/// Iterator over the memory reservation block's entries (see [`Fdt::memory_reservations`]).
#[derive(Clone, Debug)]
pub struct MemoryReservations<'a> {
    blob: &'a [u8],
    pos: usize,
}

impl Iterator for MemoryReservations<'_> {
    type Item = MemRegion;

    fn next(&mut self) -> Option<MemRegion> {
        let entry = reservation_at(self.blob, self.pos).ok()??;
        self.pos += RESERVATION_SIZE;
        Some(entry)
    }
}

/// Size of one reservation entry: a `u64` address and a `u64` size.
const RESERVATION_SIZE: usize = 16;

/// The reservation entry at `offset`, or `None` for the (0, 0) terminator.
fn reservation_at(blob: &[u8], offset: usize) -> Result<Option<MemRegion>, Error> {
    let missing = Error::UnterminatedReservations { offset };
    let base = be_u64(blob, offset).ok_or(missing)?;
    let size = be_u64(blob, offset.checked_add(8).ok_or(missing)?).ok_or(missing)?;
    Ok((base != 0 || size != 0).then_some(MemRegion { base, size }))
}

/// Iterator over every node of the tree, depth first (see [`Fdt::nodes`]).
#[derive(Clone, Debug)]
pub struct Nodes<'a> {
    fdt: Fdt<'a>,
    cursor: Cursor<'a>,
    /// BEGIN_NODE offsets of the nodes enclosing the cursor, outermost first.
    ancestors: [u32; MAX_DEPTH],
    open: usize,
}

impl<'a> Nodes<'a> {
    /// Records the node whose BEGIN_NODE was just read as open, and returns it.
    fn enter(&mut self, offset: usize, name: &'a str) -> Node<'a> {
        let node = Node::new(
            self.fdt,
            offset,
            self.cursor.position(),
            name,
            self.open,
            self.ancestors,
        );
        if let Some(slot) = self.ancestors.get_mut(self.open) {
            *slot = offset as u32;
            self.open += 1;
        }
        node
    }

    /// Walks on to the next property that `matches` (given its name offset and value) and
    /// returns the node holding it. Faster than testing each node: names are only compared.
    fn find_by_property(
        &mut self,
        mut matches: impl FnMut(&Cursor<'a>, u32, &'a [u8]) -> bool,
    ) -> Option<Node<'a>> {
        loop {
            match self.cursor.next_token().ok()? {
                Token::BeginNode { offset, name } => {
                    self.enter(offset, name);
                }
                Token::Prop {
                    name_offset, value, ..
                } => {
                    if matches(&self.cursor, name_offset, value) {
                        let depth = self.open.checked_sub(1)?;
                        let offset = *self.ancestors.get(depth)? as usize;
                        return Node::at(self.fdt, offset, depth, self.ancestors);
                    }
                }
                Token::EndNode { .. } => self.leave()?,
                Token::End { .. } => return None,
            }
        }
    }

    /// Records that the innermost open node closed; `None` once the root has.
    fn leave(&mut self) -> Option<()> {
        self.open = self.open.checked_sub(1)?;
        (self.open > 0).then_some(())
    }
}

impl<'a> Iterator for Nodes<'a> {
    type Item = Node<'a>;

    fn next(&mut self) -> Option<Node<'a>> {
        loop {
            match self.cursor.next_token().ok()? {
                Token::BeginNode { offset, name } => return Some(self.enter(offset, name)),
                Token::Prop { .. } => {}
                Token::EndNode { .. } => self.leave()?,
                Token::End { .. } => return None,
            }
        }
    }
}
