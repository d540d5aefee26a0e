//! Text output for the kernel shell's `dtb` command: the tree, and a machine summary.

use core::fmt::{self, Write};

use crate::fdt::Fdt;
use crate::machine::{EnableMethod, GicKind, MachineInfo, PsciMethod, PsciVersion, TimerInfo};
use crate::property::{Property, StrList};

/// Values wrap before a line would grow longer than this.
const MAX_LINE: usize = 78;
/// Spaces per nesting level.
const INDENT: usize = 2;

/// Writes the whole tree in dtc's source syntax: memory reservations, then nodes indented by
/// depth, each property decoded as strings, `<cells>` in hex or `[bytes]`, as its bytes suggest.
/// Long values wrap onto further lines so that lines stay under 80 columns.
pub fn write_tree<W: Write + ?Sized>(fdt: &Fdt<'_>, out: &mut W) -> fmt::Result {
    let out = &mut Columns { out, column: 0 };
    for reservation in fdt.memory_reservations() {
        writeln!(
            out,
            "/memreserve/ {:#x} {:#x};",
            reservation.base, reservation.size
        )?;
    }
    let mut open = 0;
    for node in fdt.nodes() {
        close_nodes(out, &mut open, node.depth())?;
        let name = if node.depth() == 0 { "/" } else { node.name() };
        indent(out, node.depth())?;
        writeln!(out, "{name} {{")?;
        for property in node.properties() {
            write_property(out, &property, node.depth() + 1)?;
        }
        open = node.depth() + 1;
    }
    close_nodes(out, &mut open, 0)
}

/// A writer that knows the column it is at, so that values can wrap.
struct Columns<'w, W: ?Sized> {
    out: &'w mut W,
    column: usize,
}

impl<W: Write + ?Sized> Write for Columns<'_, W> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        self.column = match text.rfind('\n') {
            Some(newline) => text.len() - newline - 1,
            None => self.column.saturating_add(text.len()),
        };
        self.out.write_str(text)
    }
}

/// Writes `};` lines until only `depth` nodes remain open.
fn close_nodes<W: Write + ?Sized>(
    out: &mut Columns<'_, W>,
    open: &mut usize,
    depth: usize,
) -> fmt::Result {
    while *open > depth {
        *open -= 1;
        indent(out, *open)?;
        writeln!(out, "}};")?;
    }
    Ok(())
}

fn indent<W: Write + ?Sized>(out: &mut Columns<'_, W>, depth: usize) -> fmt::Result {
    write!(out, "{:1$}", "", depth * INDENT)
}

fn write_property<W: Write + ?Sized>(
    out: &mut Columns<'_, W>,
    property: &Property<'_>,
    depth: usize,
) -> fmt::Result {
    indent(out, depth)?;
    write!(out, "{}", property.name())?;
    if property.value().is_empty() {
        return writeln!(out, ";");
    }
    write!(out, " = ")?;
    if let Some(strings) = printable_strings(property) {
        for (index, string) in strings.enumerate() {
            if index > 0 {
                write!(out, ",")?;
                separate(out, string.len() + 2, depth)?;
            }
            write!(out, "\"{string}\"")?;
        }
        writeln!(out, ";")
    } else if let Ok(cells) = property.as_cells() {
        write!(out, "<")?;
        for (index, cell) in cells.enumerate() {
            if index > 0 {
                separate(out, hex_width(cell), depth)?;
            }
            write!(out, "{cell:#x}")?;
        }
        writeln!(out, ">;")
    } else {
        write!(out, "[")?;
        for (index, byte) in property.value().iter().enumerate() {
            if index > 0 {
                separate(out, 2, depth)?;
            }
            write!(out, "{byte:02x}")?;
        }
        writeln!(out, "];")
    }
}

/// Before an item `width` characters wide: a space, or a line break and a deeper indent if
/// the item and the closing `>;` would not fit on the line.
fn separate<W: Write + ?Sized>(
    out: &mut Columns<'_, W>,
    width: usize,
    depth: usize,
) -> fmt::Result {
    if out.column.saturating_add(width + 3) > MAX_LINE {
        writeln!(out)?;
        indent(out, depth + 2)
    } else {
        write!(out, " ")
    }
}

/// Characters in `{cell:#x}`.
fn hex_width(cell: u32) -> usize {
    let digits = (32 - cell.leading_zeros() as usize).div_ceil(4).max(1);
    digits + 2
}

/// The value as strings, if it looks like text: non-empty strings of printable ASCII, each
/// NUL-terminated.
fn printable_strings<'a>(property: &Property<'a>) -> Option<StrList<'a>> {
    let value = property.value();
    let printable = value
        .iter()
        .all(|&byte| byte == 0 || byte == b' ' || byte.is_ascii_graphic());
    let no_empty_string = value.first() != Some(&0) && !value.windows(2).any(|pair| pair == [0, 0]);
    if printable && no_empty_string {
        property.as_str_list().ok()
    } else {
        None
    }
}

/// Writes `key=value` lines describing `info`, one fact per line.
pub fn write_summary<W: Write + ?Sized>(info: &MachineInfo<'_>, out: &mut W) -> fmt::Result {
    if let Some(first) = info.ram.first() {
        writeln!(out, "ram_base={:#x}", first.base)?;
    }
    writeln!(out, "ram_size={}", info.ram_size())?;
    writeln!(out, "ram_regions={}", info.ram.len())?;
    for (index, region) in info.ram.iter().enumerate() {
        writeln!(out, "ram{index}={:#x}+{:#x}", region.base, region.size)?;
    }
    writeln!(out, "reserved_regions={}", info.reserved.len())?;
    for (index, region) in info.reserved.iter().enumerate() {
        writeln!(out, "reserved{index}={:#x}+{:#x}", region.base, region.size)?;
    }
    if let Some(bootargs) = info.bootargs {
        writeln!(out, "bootargs={bootargs}")?;
    }
    if let Some(uart) = &info.uart {
        writeln!(out, "uart={:#x}", uart.base)?;
        writeln!(out, "uart_size={:#x}", uart.size)?;
        if let Some(irq) = uart.irq {
            writeln!(out, "uart_intid={}", irq.intid())?;
        }
        if let Some(hz) = uart.clock_hz {
            writeln!(out, "uart_clock_hz={hz}")?;
        }
    }
    let gic = &info.gic;
    writeln!(out, "gic_version={}", gic.version())?;
    writeln!(out, "gic_dist={:#x}", gic.distributor.base)?;
    match &gic.kind {
        GicKind::V2 { cpu_interface } => writeln!(out, "gic_cpu={:#x}", cpu_interface.base)?,
        GicKind::V3 { redistributors } => {
            for (index, region) in redistributors.iter().enumerate() {
                writeln!(
                    out,
                    "gic_redist{index}={:#x}+{:#x}",
                    region.base, region.size
                )?;
            }
        }
    }
    if let Some(timer) = &info.timer {
        let TimerInfo {
            secure_phys,
            nonsecure_phys,
            virt,
            hyp,
        } = timer;
        writeln!(
            out,
            "timer_intids={secure_phys},{nonsecure_phys},{virt},{hyp}"
        )?;
    }
    writeln!(out, "virtio_mmio_slots={}", info.virtio_mmio.len())?;
    if let Some(first) = info.virtio_mmio.first() {
        writeln!(out, "virtio_mmio0={:#x}+{:#x}", first.base, first.size)?;
        writeln!(out, "virtio_mmio0_intid={}", first.irq.intid())?;
    }
    if let Some(psci) = &info.psci {
        let method = match psci.method {
            PsciMethod::Hvc => "hvc",
            PsciMethod::Smc => "smc",
        };
        let version = match psci.version {
            PsciVersion::V0_1 => "0.1",
            PsciVersion::V0_2 => "0.2",
            PsciVersion::V1_0 => "1.0",
        };
        writeln!(out, "psci_method={method}")?;
        writeln!(out, "psci_version={version}")?;
    }
    writeln!(out, "cpus={}", info.cpus.len())?;
    for (index, cpu) in info.cpus.iter().enumerate() {
        let method = match cpu.enable_method {
            EnableMethod::Psci => "psci",
            EnableMethod::SpinTable { .. } => "spin-table",
            EnableMethod::Absent => "none",
            EnableMethod::Unknown => "unknown",
        };
        writeln!(out, "cpu{index}={:#x},{method}", cpu.mpidr)?;
    }
    Ok(())
}
