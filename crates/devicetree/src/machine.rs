//! What the kernel needs to know about a QEMU `virt` machine, read from its devicetree.

use arrayvec::ArrayVec;

use crate::error::{Error, Name};
use crate::fdt::{Fdt, MemRegion};
use crate::irq::{IrqSpec, gic_version};
use crate::node::Node;

/// Capacity of [`MachineInfo::ram`].
pub const MAX_RAM_REGIONS: usize = 8;
/// Capacity of [`MachineInfo::reserved`].
pub const MAX_RESERVED_REGIONS: usize = 16;
/// Capacity of [`MachineInfo::virtio_mmio`] (QEMU `virt` always creates 32).
pub const MAX_VIRTIO_MMIO: usize = 64;
/// Capacity of [`MachineInfo::cpus`].
pub const MAX_CPUS: usize = 64;
/// Capacity of the redistributor list of [`GicKind::V3`].
pub const MAX_REDISTRIBUTOR_REGIONS: usize = 4;

/// The machine as the kernel sees it at boot. Strings borrow from the DTB.
///
/// The DTB's own placement is not in it: the caller knows the address it was given and
/// [`Fdt::total_size`] gives the length to keep reserved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MachineInfo<'a> {
    /// Every `reg` entry of every enabled `device_type = "memory"` node, in DTB order.
    pub ram: ArrayVec<MemRegion, MAX_RAM_REGIONS>,
    /// The memory reservation block's entries, then the `reg` entries of the enabled
    /// children of `/reserved-memory`.
    pub reserved: ArrayVec<MemRegion, MAX_RESERVED_REGIONS>,
    /// `/chosen/bootargs`, the kernel command line.
    pub bootargs: Option<&'a str>,
    /// The console: `/chosen/stdout-path`, else the first enabled `arm,pl011`.
    pub uart: Option<UartInfo>,
    pub gic: GicInfo,
    pub timer: Option<TimerInfo>,
    /// Every enabled `virtio,mmio` node, in DTB order (QEMU lists them from the highest
    /// address down).
    pub virtio_mmio: ArrayVec<VirtioMmioSlot, MAX_VIRTIO_MMIO>,
    pub psci: Option<PsciInfo>,
    /// The `device_type = "cpu"` children of `/cpus`, in DTB order.
    pub cpus: ArrayVec<CpuInfo, MAX_CPUS>,
}

/// The console UART.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UartInfo {
    pub base: u64,
    pub size: u64,
    pub irq: Option<IrqSpec>,
    /// The reference clock, if `clocks` leads to a `fixed-clock` (the "uartclk" entry when
    /// `clock-names` has one, else the first).
    pub clock_hz: Option<u64>,
}

/// The interrupt controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GicInfo {
    pub distributor: MemRegion,
    pub kind: GicKind,
    /// What `interrupt-parent` properties use to refer to it.
    pub phandle: Option<u32>,
}

/// The version-specific part of [`GicInfo`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GicKind {
    /// GICv2 (`arm,cortex-a15-gic`, `arm,gic-400`): a memory-mapped CPU interface.
    V2 { cpu_interface: MemRegion },
    /// GICv3 (`arm,gic-v3`): redistributor regions (`#redistributor-regions`, default 1).
    V3 {
        redistributors: ArrayVec<MemRegion, MAX_REDISTRIBUTOR_REGIONS>,
    },
}

impl GicInfo {
    /// 2 or 3.
    pub fn version(&self) -> u32 {
        match self.kind {
            GicKind::V2 { .. } => 2,
            GicKind::V3 { .. } => 3,
        }
    }
}

/// The generic timer's per-CPU interrupts, as GIC INTIDs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerInfo {
    pub secure_phys: u32,
    pub nonsecure_phys: u32,
    pub virt: u32,
    pub hyp: u32,
}

/// One virtio-mmio transport slot (a device may or may not sit behind it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtioMmioSlot {
    pub base: u64,
    pub size: u64,
    pub irq: IrqSpec,
}

/// How PSCI calls reach the firmware.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsciMethod {
    Hvc,
    Smc,
}

/// The newest PSCI version the node declares compatibility with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsciVersion {
    /// `arm,psci`: function IDs only from the node's properties.
    V0_1,
    /// `arm,psci-0.2`: standard function IDs.
    V0_2,
    /// `arm,psci-1.0`.
    V1_0,
}

/// PSCI function IDs. For 0.2 and later these are the standard IDs (the SMC64 ones for calls
/// that take addresses); for 0.1 only those the node lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PsciFunctions {
    pub psci_version: Option<u32>,
    pub cpu_suspend: Option<u32>,
    pub cpu_off: Option<u32>,
    pub cpu_on: Option<u32>,
    pub affinity_info: Option<u32>,
    pub migrate: Option<u32>,
    pub system_off: Option<u32>,
    pub system_reset: Option<u32>,
}

impl PsciFunctions {
    /// The function IDs fixed by PSCI 0.2 (ARM DEN 0022).
    const STANDARD: PsciFunctions = PsciFunctions {
        psci_version: Some(0x8400_0000),
        cpu_suspend: Some(0xc400_0001),
        cpu_off: Some(0x8400_0002),
        cpu_on: Some(0xc400_0003),
        affinity_info: Some(0xc400_0004),
        migrate: Some(0xc400_0005),
        system_off: Some(0x8400_0008),
        system_reset: Some(0x8400_0009),
    };
}

/// The PSCI firmware interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PsciInfo {
    pub method: PsciMethod,
    pub version: PsciVersion,
    pub functions: PsciFunctions,
}

/// How a secondary CPU is started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnableMethod {
    /// PSCI CPU_ON.
    Psci,
    /// Write the entry point to `release_addr` and send an event.
    SpinTable { release_addr: u64 },
    /// No `enable-method` property.
    Absent,
    /// A method this crate does not know.
    Unknown,
}

/// One CPU node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuInfo {
    /// The `reg` value: the CPU's MPIDR affinity fields.
    pub mpidr: u64,
    pub enable_method: EnableMethod,
}

impl<'a> MachineInfo<'a> {
    /// Extracts the machine description. Missing memory, GIC or CPUs are errors; everything
    /// else is optional, but what is present must be well formed.
    pub fn from_fdt(fdt: &Fdt<'a>) -> Result<Self, Error> {
        let chosen = fdt.find_node("/chosen");
        let bootargs = match chosen.and_then(|chosen| chosen.property("bootargs")) {
            Some(bootargs) => Some(bootargs.as_str()?),
            None => None,
        };
        Ok(MachineInfo {
            ram: ram(fdt)?,
            reserved: reserved(fdt)?,
            bootargs,
            uart: match console(fdt, chosen)? {
                Some(node) => Some(uart(fdt, &node)?),
                None => None,
            },
            gic: gic(fdt)?,
            timer: timer(fdt)?,
            virtio_mmio: virtio_mmio(fdt)?,
            psci: psci(fdt)?,
            cpus: cpus(fdt)?,
        })
    }

    /// Total bytes of RAM over all regions.
    pub fn ram_size(&self) -> u64 {
        self.ram
            .iter()
            .fold(0, |total, region| total.saturating_add(region.size))
    }
}

/// Appends `item`, or reports that more than `N` of `what` exist.
fn push<T, const N: usize>(
    list: &mut ArrayVec<T, N>,
    item: T,
    what: &'static str,
) -> Result<(), Error> {
    list.try_push(item)
        .map_err(|_| Error::TooMany { what, limit: N })
}

/// The first enabled node compatible with any of `compatibles`.
fn first_enabled<'a>(fdt: &Fdt<'a>, compatibles: &[&str]) -> Option<Node<'a>> {
    fdt.nodes()
        .find(|node| node.is_enabled() && compatibles.iter().any(|c| node.is_compatible(c)))
}

/// The `index`-th `reg` entry of `node`, which must exist.
fn reg_entry(node: &Node<'_>, index: usize) -> Result<MemRegion, Error> {
    node.reg()?
        .nth(index)
        .ok_or_else(|| match node.required_property("reg") {
            Ok(reg) => reg.bad_length("more (address, size) entries"),
            Err(missing) => missing,
        })
}

fn ram(fdt: &Fdt<'_>) -> Result<ArrayVec<MemRegion, MAX_RAM_REGIONS>, Error> {
    let mut ram = ArrayVec::new();
    for node in fdt
        .nodes()
        .filter(|node| node.device_type() == Some("memory") && node.is_enabled())
    {
        for region in node.reg()? {
            push(&mut ram, region, "RAM regions")?;
        }
    }
    if ram.is_empty() {
        return Err(Error::NoMemory);
    }
    Ok(ram)
}

fn reserved(fdt: &Fdt<'_>) -> Result<ArrayVec<MemRegion, MAX_RESERVED_REGIONS>, Error> {
    let mut reserved = ArrayVec::new();
    for region in fdt.memory_reservations() {
        push(&mut reserved, region, "reserved regions")?;
    }
    if let Some(reserved_memory) = fdt.find_node("/reserved-memory") {
        // Children with only `size` are allocated by the OS, so they reserve nothing yet.
        let placed = reserved_memory
            .children()
            .filter(|child| child.is_enabled() && child.property("reg").is_some());
        for child in placed {
            for region in child.reg()? {
                push(&mut reserved, region, "reserved regions")?;
            }
        }
    }
    Ok(reserved)
}

/// The console node: what `/chosen/stdout-path` names (options after ':' dropped), else the
/// first enabled PL011.
fn console<'a>(fdt: &Fdt<'a>, chosen: Option<Node<'a>>) -> Result<Option<Node<'a>>, Error> {
    let stdout_path = chosen.and_then(|chosen| {
        chosen
            .property("stdout-path")
            .or_else(|| chosen.property("linux,stdout-path"))
    });
    match stdout_path {
        Some(property) => {
            let path = property.as_str()?;
            let path = path.split_once(':').map_or(path, |(path, _options)| path);
            fdt.find_node(path).map(Some).ok_or(Error::BadStdoutPath)
        }
        None => Ok(first_enabled(fdt, &["arm,pl011"])),
    }
}

fn uart(fdt: &Fdt<'_>, node: &Node<'_>) -> Result<UartInfo, Error> {
    let MemRegion { base, size } = reg_entry(node, 0)?;
    let irq = match node.property("interrupts") {
        Some(_) => Some(node.irq(0)?),
        None => None,
    };
    Ok(UartInfo {
        base,
        size,
        irq,
        clock_hz: uart_clock(fdt, node)?,
    })
}

/// The frequency of the UART's reference clock, if it is a `fixed-clock`.
fn uart_clock(fdt: &Fdt<'_>, node: &Node<'_>) -> Result<Option<u64>, Error> {
    let Some(clocks) = node.property("clocks") else {
        return Ok(None);
    };
    let wanted = match node.property("clock-names") {
        Some(names) => names
            .as_str_list()?
            .position(|name| name == "uartclk")
            .unwrap_or(0),
        None => 0,
    };
    let mut cells = clocks.as_cells()?;
    // Each specifier is a phandle and the provider's #clock-cells arguments.
    let mut index = 0;
    while let Some(phandle) = cells.next() {
        let provider = fdt.find_phandle(phandle).ok_or(Error::UnknownPhandle {
            node: Name::new(node.name()),
            property: Name::new("clocks"),
            phandle,
        })?;
        let arguments = match provider.property("#clock-cells") {
            Some(count) => count.as_u32()? as usize,
            None => 0,
        };
        cells
            .take_prefix(arguments)
            .ok_or(clocks.bad_length("whole clock specifiers"))?;
        if index == wanted {
            if !provider.is_compatible("fixed-clock") {
                return Ok(None);
            }
            let frequency = provider.required_property("clock-frequency")?;
            return frequency.as_u32_or_u64().map(Some);
        }
        index += 1;
    }
    Ok(None)
}

fn gic(fdt: &Fdt<'_>) -> Result<GicInfo, Error> {
    let (node, version) = fdt
        .nodes()
        .filter(Node::is_enabled)
        .find_map(|node| Some((node, gic_version(&node)?)))
        .ok_or(Error::NoGic)?;
    let distributor = reg_entry(&node, 0)?;
    let kind = if version == 3 {
        let count = match node.property("#redistributor-regions") {
            Some(count) => count.as_u32()? as usize,
            None => 1,
        };
        let mut redistributors = ArrayVec::new();
        for index in 1..=count {
            push(
                &mut redistributors,
                reg_entry(&node, index)?,
                "GIC redistributor regions",
            )?;
        }
        GicKind::V3 { redistributors }
    } else {
        GicKind::V2 {
            cpu_interface: reg_entry(&node, 1)?,
        }
    };
    Ok(GicInfo {
        distributor,
        kind,
        phandle: node.phandle(),
    })
}

fn timer(fdt: &Fdt<'_>) -> Result<Option<TimerInfo>, Error> {
    let Some(node) = first_enabled(fdt, &["arm,armv8-timer", "arm,armv7-timer"]) else {
        return Ok(None);
    };
    Ok(Some(TimerInfo {
        secure_phys: node.irq(0)?.intid(),
        nonsecure_phys: node.irq(1)?.intid(),
        virt: node.irq(2)?.intid(),
        hyp: node.irq(3)?.intid(),
    }))
}

fn virtio_mmio(fdt: &Fdt<'_>) -> Result<ArrayVec<VirtioMmioSlot, MAX_VIRTIO_MMIO>, Error> {
    let mut slots = ArrayVec::new();
    for node in fdt.compatible_nodes("virtio,mmio").filter(Node::is_enabled) {
        let MemRegion { base, size } = reg_entry(&node, 0)?;
        push(
            &mut slots,
            VirtioMmioSlot {
                base,
                size,
                irq: node.irq(0)?,
            },
            "virtio-mmio nodes",
        )?;
    }
    Ok(slots)
}

fn psci(fdt: &Fdt<'_>) -> Result<Option<PsciInfo>, Error> {
    let Some(node) = first_enabled(fdt, &["arm,psci-1.0", "arm,psci-0.2", "arm,psci"]) else {
        return Ok(None);
    };
    let method = match node.required_property("method")?.as_str()? {
        "hvc" => PsciMethod::Hvc,
        "smc" => PsciMethod::Smc,
        _ => {
            return Err(Error::BadPsciMethod {
                node: Name::new(node.name()),
            });
        }
    };
    let version = if node.is_compatible("arm,psci-1.0") {
        PsciVersion::V1_0
    } else if node.is_compatible("arm,psci-0.2") {
        PsciVersion::V0_2
    } else {
        PsciVersion::V0_1
    };
    let functions = match version {
        PsciVersion::V0_2 | PsciVersion::V1_0 => PsciFunctions::STANDARD,
        PsciVersion::V0_1 => {
            let id = |name| {
                node.property(name)
                    .map(|property| property.as_u32())
                    .transpose()
            };
            PsciFunctions {
                psci_version: None,
                cpu_suspend: id("cpu_suspend")?,
                cpu_off: id("cpu_off")?,
                cpu_on: id("cpu_on")?,
                affinity_info: None,
                migrate: id("migrate")?,
                system_off: None,
                system_reset: None,
            }
        }
    };
    Ok(Some(PsciInfo {
        method,
        version,
        functions,
    }))
}

fn cpus(fdt: &Fdt<'_>) -> Result<ArrayVec<CpuInfo, MAX_CPUS>, Error> {
    let mut cpus = ArrayVec::new();
    let container = fdt.find_node("/cpus").ok_or(Error::NoCpus)?;
    for node in container
        .children()
        .filter(|node| node.device_type() == Some("cpu"))
    {
        let mpidr = reg_entry(&node, 0)?.base;
        let enable_method = match node.property("enable-method") {
            None => EnableMethod::Absent,
            Some(method) => match method.as_str_list()?.next() {
                Some("psci") => EnableMethod::Psci,
                Some("spin-table") => {
                    let release_addr = node.required_property("cpu-release-addr")?.as_u64()?;
                    EnableMethod::SpinTable { release_addr }
                }
                _ => EnableMethod::Unknown,
            },
        };
        push(
            &mut cpus,
            CpuInfo {
                mpidr,
                enable_method,
            },
            "CPUs",
        )?;
    }
    if cpus.is_empty() {
        return Err(Error::NoCpus);
    }
    Ok(cpus)
}
