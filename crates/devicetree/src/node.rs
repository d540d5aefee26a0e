//! Nodes: their properties, children, addresses and interrupts.

use core::fmt;

use crate::MAX_DEPTH;
use crate::cursor::{Cursor, Token};
use crate::error::{Error, Name};
use crate::fdt::{Fdt, MemRegion};
use crate::irq::{IrqSpec, gic_version};
use crate::property::{Cells, Property, StrList, str_list_contains};

/// Spec defaults when a parent has no `#address-cells` / `#size-cells`.
const DEFAULT_ADDRESS_CELLS: u32 = 2;
const DEFAULT_SIZE_CELLS: u32 = 1;
/// Bound on `interrupt-parent` hops, so that a phandle cycle ends in an error, not a hang.
const MAX_INTERRUPT_HOPS: usize = 4 * MAX_DEPTH;

/// A node of a validated [`Fdt`]. It knows its depth and its ancestors' offsets, so that its
/// parent and its path are found without allocation or a search from the root.
#[derive(Clone, Copy)]
pub struct Node<'a> {
    fdt: Fdt<'a>,
    /// Offset of the node's BEGIN_NODE token.
    offset: usize,
    /// Offset of the first token after the node's name.
    body: usize,
    name: &'a str,
    depth: usize,
    /// BEGIN_NODE offsets of the root, ..., the parent (`depth` entries).
    ancestors: [u32; MAX_DEPTH],
}

impl<'a> Node<'a> {
    pub(crate) fn new(
        fdt: Fdt<'a>,
        offset: usize,
        body: usize,
        name: &'a str,
        depth: usize,
        ancestors: [u32; MAX_DEPTH],
    ) -> Self {
        Node {
            fdt,
            offset,
            body,
            name,
            depth,
            ancestors,
        }
    }

    /// The full name, unit address included ("cpu@0"); "" for the root.
    pub fn name(&self) -> &'a str {
        self.name
    }

    /// The part of the name before '@' ("cpu" for "cpu@0").
    pub fn base_name(&self) -> &'a str {
        self.name
            .split_once('@')
            .map_or(self.name, |(base, _)| base)
    }

    /// 0 for the root, 1 for its children, and so on.
    pub fn depth(&self) -> usize {
        self.depth
    }

    /// Offset of the node's BEGIN_NODE token in the DTB.
    pub fn offset(&self) -> usize {
        self.offset
    }

    /// The full path, displayed ("/cpus/cpu@0").
    pub fn path(&self) -> NodePath<'a> {
        NodePath { node: *self }
    }

    /// The enclosing node; `None` for the root.
    pub fn parent(&self) -> Option<Node<'a>> {
        let depth = self.depth.checked_sub(1)?;
        let offset = *self.ancestors.get(depth)? as usize;
        Node::at(self.fdt, offset, depth, self.ancestors)
    }

    /// The node whose BEGIN_NODE is at `offset`, with `ancestors[..depth]` enclosing it.
    pub(crate) fn at(
        fdt: Fdt<'a>,
        offset: usize,
        depth: usize,
        ancestors: [u32; MAX_DEPTH],
    ) -> Option<Node<'a>> {
        let mut cursor = fdt.cursor(offset);
        match cursor.next_token() {
            Ok(Token::BeginNode { name, .. }) => Some(Node::new(
                fdt,
                offset,
                cursor.position(),
                name,
                depth,
                ancestors,
            )),
            _ => None,
        }
    }

    /// The node's properties, in DTB order.
    pub fn properties(&self) -> Properties<'a> {
        Properties {
            cursor: self.fdt.cursor(self.body),
        }
    }

    /// The property called `name`.
    pub fn property(&self, name: &str) -> Option<Property<'a>> {
        let mut cursor = self.fdt.cursor(self.body);
        while let Ok(Token::Prop {
            offset,
            name_offset,
            value,
        }) = cursor.next_token()
        {
            if cursor.string_is(name_offset, name) {
                let name = cursor.string(offset, name_offset).ok()?;
                return Some(Property::new(name, value, offset));
            }
        }
        None
    }

    /// The property called `name`, or a `MissingProperty` error naming this node.
    pub fn required_property(&self, name: &str) -> Result<Property<'a>, Error> {
        self.property(name).ok_or(Error::MissingProperty {
            node: Name::new(self.name),
            property: Name::new(name),
        })
    }

    /// The node's direct children, in DTB order.
    pub fn children(&self) -> Children<'a> {
        Children {
            parent: *self,
            cursor: self.fdt.cursor(self.body),
            done: false,
        }
    }

    /// The child called `name`; a `name` without '@' also matches a child's base name.
    pub fn child(&self, name: &str) -> Option<Node<'a>> {
        let by_base = !name.contains('@');
        self.children()
            .find(|child| child.name == name || (by_base && child.base_name() == name))
    }

    /// The `compatible` strings (none if the property is absent or not a string list).
    pub fn compatible(&self) -> StrList<'a> {
        let list = self
            .property("compatible")
            .map(|property| property.as_str_list());
        list.and_then(Result::ok).unwrap_or_default()
    }

    /// Whether `compatible` lists `compatible`.
    pub fn is_compatible(&self, compatible: &str) -> bool {
        self.property("compatible")
            .is_some_and(|property| str_list_contains(property.value(), compatible))
    }

    /// The node's `phandle` (or legacy `linux,phandle`), if it has a well-formed one.
    pub fn phandle(&self) -> Option<u32> {
        let property = self
            .property("phandle")
            .or_else(|| self.property("linux,phandle"))?;
        property.as_u32().ok()
    }

    /// `device_type`, if present and a string.
    pub fn device_type(&self) -> Option<&'a str> {
        self.property("device_type")?.as_str().ok()
    }

    /// Whether `status` is absent, "okay" or "ok" (anything else, e.g. "disabled", is not).
    pub fn is_enabled(&self) -> bool {
        self.property("status")
            .is_none_or(|status| matches!(status.as_str(), Ok("okay" | "ok")))
    }

    /// This node's `#address-cells` (how its children's `reg` addresses are encoded).
    pub fn address_cells(&self) -> Result<u32, Error> {
        self.property("#address-cells")
            .map_or(Ok(DEFAULT_ADDRESS_CELLS), |p| p.as_u32())
    }

    /// This node's `#size-cells` (how its children's `reg` sizes are encoded).
    pub fn size_cells(&self) -> Result<u32, Error> {
        self.property("#size-cells")
            .map_or(Ok(DEFAULT_SIZE_CELLS), |p| p.as_u32())
    }

    /// The `reg` entries, decoded with the parent's `#address-cells` and `#size-cells`.
    ///
    /// As the devicetree specification says, the cell counts come from the parent alone
    /// (defaults 2 and 1 when it lacks them); they are not inherited from further up. Each
    /// count must be at most 2 so that values fit `u64`.
    pub fn reg(&self) -> Result<Reg<'a>, Error> {
        let property = self.required_property("reg")?;
        let (address_cells, size_cells) = match self.parent() {
            Some(parent) => (parent.address_cells()?, parent.size_cells()?),
            None => (DEFAULT_ADDRESS_CELLS, DEFAULT_SIZE_CELLS),
        };
        if address_cells > 2 || size_cells > 2 || address_cells + size_cells == 0 {
            return Err(Error::UnsupportedCells {
                node: Name::new(self.name),
                address_cells,
                size_cells,
            });
        }
        let cells = property.as_cells()?;
        if cells.len() % (address_cells + size_cells) as usize != 0 {
            return Err(property.bad_length("whole (address, size) entries"));
        }
        Ok(Reg {
            cells,
            address_cells,
            size_cells,
        })
    }

    /// The interrupt controller this node's interrupts go to.
    ///
    /// Found as Linux does: follow this node's `interrupt-parent` phandle, or else go to the
    /// tree parent, until reaching a node with `#interrupt-cells`.
    pub fn interrupt_parent(&self) -> Result<Node<'a>, Error> {
        let mut current = *self;
        for _ in 0..MAX_INTERRUPT_HOPS {
            let next = match current.property("interrupt-parent") {
                Some(link) => {
                    let phandle = link.as_u32()?;
                    self.fdt
                        .find_phandle(phandle)
                        .ok_or(Error::UnknownPhandle {
                            node: Name::new(current.name),
                            property: Name::new("interrupt-parent"),
                            phandle,
                        })?
                }
                None => current.parent().ok_or(Error::NoInterruptParent {
                    node: Name::new(self.name),
                })?,
            };
            if next.property("#interrupt-cells").is_some() {
                return Ok(next);
            }
            current = next;
        }
        Err(Error::InterruptParentLoop {
            node: Name::new(self.name),
        })
    }

    /// The `interrupts` specifiers, split by the controller's `#interrupt-cells`.
    pub fn interrupts(&self) -> Result<Interrupts<'a>, Error> {
        let property = self.required_property("interrupts")?;
        let controller = self.interrupt_parent()?;
        let cells_per_interrupt = controller.required_property("#interrupt-cells")?.as_u32()?;
        if cells_per_interrupt == 0 {
            return Err(Error::ZeroInterruptCells {
                controller: Name::new(controller.name),
            });
        }
        let cells = property.as_cells()?;
        if cells.len() % cells_per_interrupt as usize != 0 {
            return Err(property.bad_length("whole #interrupt-cells specifiers"));
        }
        Ok(Interrupts {
            controller,
            cells_per_interrupt: cells_per_interrupt as usize,
            cells,
        })
    }

    /// Interrupt number `index` of this node, decoded as a GIC 3-cell specifier.
    pub fn irq(&self, index: usize) -> Result<IrqSpec, Error> {
        let mut interrupts = self.interrupts()?;
        let controller = interrupts.controller();
        if gic_version(&controller).is_none() || interrupts.cells_per_interrupt != 3 {
            return Err(Error::NotGicInterrupt {
                node: Name::new(self.name),
                controller: Name::new(controller.name),
            });
        }
        let mut specifier = interrupts.nth(index).ok_or(Error::MissingInterrupt {
            node: Name::new(self.name),
            index,
        })?;
        let cells = [specifier.next(), specifier.next(), specifier.next()];
        let [Some(irq_type), Some(number), Some(flags)] = cells else {
            return Err(Error::MissingInterrupt {
                node: Name::new(self.name),
                index,
            });
        };
        IrqSpec::from_gic_cells(self.name, [irq_type, number, flags])
    }
}

impl fmt::Debug for Node<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("path", &format_args!("{}", self.path()))
            .field("offset", &self.offset)
            .finish_non_exhaustive()
    }
}

/// A node's path, written out by `Display`.
#[derive(Clone, Copy, Debug)]
pub struct NodePath<'a> {
    node: Node<'a>,
}

impl fmt::Display for NodePath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let node = &self.node;
        if node.depth == 0 {
            return f.write_str("/");
        }
        // Skip the root (its name is empty); name each other ancestor, then the node.
        let ancestors = node.ancestors.get(1..node.depth).unwrap_or_default();
        for &offset in ancestors {
            if let Ok(Token::BeginNode { name, .. }) = node.fdt.cursor(offset as usize).next_token()
            {
                write!(f, "/{name}")?;
            }
        }
        write!(f, "/{}", node.name)
    }
}

/// Iterator over a node's properties (see [`Node::properties`]).
#[derive(Clone, Debug)]
pub struct Properties<'a> {
    cursor: Cursor<'a>,
}

impl<'a> Iterator for Properties<'a> {
    type Item = Property<'a>;

    fn next(&mut self) -> Option<Property<'a>> {
        match self.cursor.next_token().ok()? {
            Token::Prop {
                offset,
                name_offset,
                value,
            } => {
                // `Fdt::new` resolved every name once, so this cannot fail.
                let name = self.cursor.string(offset, name_offset).ok()?;
                Some(Property::new(name, value, offset))
            }
            // Properties precede children, so the first other token ends the list.
            Token::BeginNode { .. } | Token::EndNode { .. } | Token::End { .. } => None,
        }
    }
}

/// Iterator over a node's direct children (see [`Node::children`]).
#[derive(Clone, Debug)]
pub struct Children<'a> {
    parent: Node<'a>,
    cursor: Cursor<'a>,
    done: bool,
}

impl<'a> Iterator for Children<'a> {
    type Item = Node<'a>;

    fn next(&mut self) -> Option<Node<'a>> {
        if self.done {
            return None;
        }
        loop {
            match self.cursor.next_token() {
                Ok(Token::Prop { .. }) => {}
                Ok(Token::BeginNode { offset, name }) => {
                    let parent = &self.parent;
                    let mut ancestors = parent.ancestors;
                    *ancestors.get_mut(parent.depth)? = parent.offset as u32;
                    let child = Node::new(
                        parent.fdt,
                        offset,
                        self.cursor.position(),
                        name,
                        parent.depth + 1,
                        ancestors,
                    );
                    self.skip_subtree();
                    return Some(child);
                }
                Ok(Token::EndNode { .. } | Token::End { .. }) | Err(_) => {
                    self.done = true;
                    return None;
                }
            }
        }
    }
}

impl Children<'_> {
    /// Moves the cursor past the END_NODE of the node just entered.
    fn skip_subtree(&mut self) {
        let mut open = 1usize;
        while open > 0 {
            match self.cursor.next_token() {
                Ok(Token::BeginNode { .. }) => open += 1,
                Ok(Token::EndNode { .. }) => open -= 1,
                Ok(Token::Prop { .. }) => {}
                Ok(Token::End { .. }) | Err(_) => {
                    self.done = true;
                    return;
                }
            }
        }
    }
}

/// Iterator over the (address, size) entries of a `reg` property (see [`Node::reg`]).
#[derive(Clone, Copy, Debug)]
pub struct Reg<'a> {
    cells: Cells<'a>,
    address_cells: u32,
    size_cells: u32,
}

impl Iterator for Reg<'_> {
    type Item = MemRegion;

    fn next(&mut self) -> Option<MemRegion> {
        let base = self.cells.read_number(self.address_cells)?;
        let size = self.cells.read_number(self.size_cells)?;
        Some(MemRegion { base, size })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let len = self.cells.len() / (self.address_cells + self.size_cells).max(1) as usize;
        (len, Some(len))
    }
}

impl ExactSizeIterator for Reg<'_> {}

/// The specifiers of an `interrupts` property (see [`Node::interrupts`]).
#[derive(Clone, Copy, Debug)]
pub struct Interrupts<'a> {
    controller: Node<'a>,
    cells_per_interrupt: usize,
    cells: Cells<'a>,
}

impl<'a> Interrupts<'a> {
    /// The interrupt controller the specifiers are meant for.
    pub fn controller(&self) -> Node<'a> {
        self.controller
    }

    /// The controller's `#interrupt-cells`: the length of each specifier.
    pub fn cells_per_interrupt(&self) -> usize {
        self.cells_per_interrupt
    }
}

impl<'a> Iterator for Interrupts<'a> {
    type Item = Cells<'a>;

    fn next(&mut self) -> Option<Cells<'a>> {
        self.cells.take_prefix(self.cells_per_interrupt)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let len = self.cells.len() / self.cells_per_interrupt.max(1);
        (len, Some(len))
    }
}

impl ExactSizeIterator for Interrupts<'_> {}
