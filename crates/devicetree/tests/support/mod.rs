//! Shared by the test files: the QEMU fixtures, a DTB writer that can also write malformed
//! blobs, and a walk that calls every reader on every node.
// Each test file uses a different part of this module.
#![allow(dead_code)]

use devicetree::{Fdt, MachineInfo, write_summary, write_tree};

/// The QEMU-dumped fixtures (see fixtures/regenerate.sh), by name.
pub const FIXTURES: [(&str, &[u8]); 9] = [
    ("default", include_bytes!("../../fixtures/default.dtb")),
    ("gicv3", include_bytes!("../../fixtures/gicv3.dtb")),
    (
        "virtualization",
        include_bytes!("../../fixtures/virtualization.dtb"),
    ),
    ("secure", include_bytes!("../../fixtures/secure.dtb")),
    ("smp4", include_bytes!("../../fixtures/smp4.dtb")),
    ("mem4g", include_bytes!("../../fixtures/mem4g.dtb")),
    ("bootargs", include_bytes!("../../fixtures/bootargs.dtb")),
    ("two_blk", include_bytes!("../../fixtures/two_blk.dtb")),
    ("modern", include_bytes!("../../fixtures/modern.dtb")),
];

/// The fixture called `name`.
pub fn fixture(name: &str) -> &'static [u8] {
    FIXTURES
        .iter()
        .find(|(fixture, _)| *fixture == name)
        .map(|(_, blob)| *blob)
        .unwrap()
}

/// Header field numbers (each a big-endian u32 at 4 * index).
pub mod field {
    pub const MAGIC: usize = 0;
    pub const TOTAL_SIZE: usize = 1;
    pub const OFF_DT_STRUCT: usize = 2;
    pub const OFF_DT_STRINGS: usize = 3;
    pub const OFF_MEM_RSVMAP: usize = 4;
    pub const VERSION: usize = 5;
    pub const LAST_COMP_VERSION: usize = 6;
    pub const BOOT_CPUID_PHYS: usize = 7;
    pub const SIZE_DT_STRINGS: usize = 8;
    pub const SIZE_DT_STRUCT: usize = 9;
}

pub fn header_field(blob: &[u8], index: usize) -> u32 {
    u32::from_be_bytes(blob[index * 4..index * 4 + 4].try_into().unwrap())
}

pub fn set_header_field(blob: &mut [u8], index: usize, value: u32) {
    blob[index * 4..index * 4 + 4].copy_from_slice(&value.to_be_bytes());
}

pub const BEGIN_NODE: u32 = 1;
pub const END_NODE: u32 = 2;
pub const PROP: u32 = 3;
pub const NOP: u32 = 4;
pub const END: u32 = 9;

/// Writes a DTB token by token. Nothing is checked, so malformed blobs are as easy to make
/// as good ones.
#[derive(Default)]
pub struct DtbBuilder {
    structure: Vec<u8>,
    strings: Vec<u8>,
    reservations: Vec<(u64, u64)>,
}

impl DtbBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// BEGIN_NODE with `name`, NUL-terminated and padded.
    pub fn begin(&mut self, name: &str) -> &mut Self {
        self.word(BEGIN_NODE);
        self.structure.extend_from_slice(name.as_bytes());
        self.structure.push(0);
        self.pad();
        self
    }

    pub fn end(&mut self) -> &mut Self {
        self.word(END_NODE)
    }

    /// A property whose name is added to (or found in) the strings block.
    pub fn prop(&mut self, name: &str, value: &[u8]) -> &mut Self {
        let name_offset = self.string(name);
        self.prop_raw(value.len() as u32, name_offset, value)
    }

    /// A PROP token with the given length and name offset fields, then `value`.
    pub fn prop_raw(&mut self, len: u32, name_offset: u32, value: &[u8]) -> &mut Self {
        self.word(PROP).word(len).word(name_offset);
        self.structure.extend_from_slice(value);
        self.pad();
        self
    }

    pub fn prop_empty(&mut self, name: &str) -> &mut Self {
        self.prop(name, &[])
    }

    pub fn prop_u32(&mut self, name: &str, value: u32) -> &mut Self {
        self.prop_cells(name, &[value])
    }

    pub fn prop_cells(&mut self, name: &str, cells: &[u32]) -> &mut Self {
        let bytes: Vec<u8> = cells.iter().flat_map(|cell| cell.to_be_bytes()).collect();
        self.prop(name, &bytes)
    }

    pub fn prop_str(&mut self, name: &str, value: &str) -> &mut Self {
        self.prop_strs(name, &[value])
    }

    pub fn prop_strs(&mut self, name: &str, values: &[&str]) -> &mut Self {
        let mut bytes = Vec::new();
        for value in values {
            bytes.extend_from_slice(value.as_bytes());
            bytes.push(0);
        }
        self.prop(name, &bytes)
    }

    /// A raw big-endian word in the structure block.
    pub fn word(&mut self, word: u32) -> &mut Self {
        self.structure.extend_from_slice(&word.to_be_bytes());
        self
    }

    /// Raw bytes in the structure block (no padding).
    pub fn bytes(&mut self, bytes: &[u8]) -> &mut Self {
        self.structure.extend_from_slice(bytes);
        self
    }

    /// Raw bytes appended to the strings block; returns their offset.
    pub fn raw_string(&mut self, bytes: &[u8]) -> u32 {
        let offset = self.strings.len() as u32;
        self.strings.extend_from_slice(bytes);
        offset
    }

    /// A memory reservation entry.
    pub fn reserve(&mut self, address: u64, size: u64) -> &mut Self {
        self.reservations.push((address, size));
        self
    }

    /// The offset the next structure token will have in the finished blob.
    pub fn next_offset(&self) -> usize {
        self.structure_offset() + self.structure.len()
    }

    /// The blob with an END token appended.
    pub fn finish(&self) -> Vec<u8> {
        let mut with_end = self.structure.clone();
        with_end.extend_from_slice(&END.to_be_bytes());
        self.assemble(&with_end)
    }

    /// The blob exactly as written, without a final END token.
    pub fn finish_without_end(&self) -> Vec<u8> {
        self.assemble(&self.structure)
    }

    fn structure_offset(&self) -> usize {
        40 + 16 * (self.reservations.len() + 1)
    }

    /// Header, reservations (+ terminator), structure block, strings block.
    fn assemble(&self, structure: &[u8]) -> Vec<u8> {
        let off_rsvmap = 40;
        let off_struct = self.structure_offset();
        let off_strings = off_struct + structure.len();
        let total = off_strings + self.strings.len();
        let mut blob = vec![0; 40];
        let fields = [
            0xd00d_feed,
            total as u32,
            off_struct as u32,
            off_strings as u32,
            off_rsvmap,
            17,
            16,
            0,
            self.strings.len() as u32,
            structure.len() as u32,
        ];
        for (index, value) in fields.into_iter().enumerate() {
            set_header_field(&mut blob, index, value);
        }
        for &(address, size) in self.reservations.iter().chain(&[(0, 0)]) {
            blob.extend_from_slice(&address.to_be_bytes());
            blob.extend_from_slice(&size.to_be_bytes());
        }
        blob.extend_from_slice(structure);
        blob.extend_from_slice(&self.strings);
        blob
    }

    fn string(&mut self, name: &str) -> u32 {
        let mut needle = name.as_bytes().to_vec();
        needle.push(0);
        let found = self
            .strings
            .windows(needle.len())
            .position(|window| window == needle);
        match found {
            Some(offset) if offset == 0 || self.strings[offset - 1] == 0 => offset as u32,
            _ => self.raw_string(&needle),
        }
    }

    fn pad(&mut self) {
        while !self.structure.len().is_multiple_of(4) {
            self.structure.push(0);
        }
    }
}

/// Phandle of the GIC in [`machine`].
pub const GIC_PHANDLE: u32 = 1;

/// A minimal virt-like machine: root (2/2 cells, interrupt-parent = GIC), a GICv2, 128 MiB
/// of memory and one CPU; `devices` adds more children of the root before it closes.
pub fn machine(devices: impl FnOnce(&mut DtbBuilder)) -> Vec<u8> {
    let mut dtb = DtbBuilder::new();
    dtb.begin("")
        .prop_u32("#address-cells", 2)
        .prop_u32("#size-cells", 2)
        .prop_u32("interrupt-parent", GIC_PHANDLE);
    dtb.begin("intc@8000000")
        .prop_strs("compatible", &["arm,gic-400"])
        .prop_cells(
            "reg",
            &[0, 0x800_0000, 0, 0x1_0000, 0, 0x801_0000, 0, 0x1_0000],
        )
        .prop_u32("#interrupt-cells", 3)
        .prop_empty("interrupt-controller")
        .prop_u32("phandle", GIC_PHANDLE)
        .end();
    dtb.begin("memory@40000000")
        .prop_str("device_type", "memory")
        .prop_cells("reg", &[0, 0x4000_0000, 0, 0x800_0000])
        .end();
    dtb.begin("cpus")
        .prop_u32("#address-cells", 1)
        .prop_u32("#size-cells", 0);
    dtb.begin("cpu@0")
        .prop_str("device_type", "cpu")
        .prop_u32("reg", 0)
        .end();
    dtb.end();
    devices(&mut dtb);
    dtb.end();
    dtb.finish()
}

/// Calls every reader on every node and property, prints the tree and, if it can be made,
/// the machine summary. Used to show that no input makes any of them panic or hang.
pub fn exercise(fdt: &Fdt<'_>) {
    let mut text = String::new();
    write_tree(fdt, &mut text).unwrap();
    let _ = fdt.memory_reservations().count();
    for node in fdt.nodes() {
        let _ = fdt.find_node(&node.path().to_string());
        let _ = node.parent().map(|parent| parent.children().count());
        for property in node.properties() {
            let _ = property.as_u32();
            let _ = property.as_u64();
            let _ = property.as_u32_or_u64();
            let _ = property.as_str();
            let _ = property.as_str_list().map(Iterator::count);
            let _ = property.as_cells().map(Iterator::count);
        }
        let _ = node.reg().map(Iterator::count);
        let _ = node.interrupts().map(Iterator::count);
        for index in 0..2 {
            if let Err(error) = node.irq(index) {
                assert!(!error.to_string().is_empty());
            }
        }
        let _ = node.phandle().map(|phandle| fdt.find_phandle(phandle));
        let _ = (
            node.is_enabled(),
            node.device_type(),
            node.compatible().count(),
        );
    }
    let _ = fdt.find_node("serial0");
    match MachineInfo::from_fdt(fdt) {
        Ok(info) => write_summary(&info, &mut text).unwrap(),
        Err(error) => assert!(!error.to_string().is_empty()),
    }
}
