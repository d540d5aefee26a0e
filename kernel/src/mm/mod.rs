//! Memory management: the linear map, physical frames, the kernel heap, page faults.

pub mod fault;
pub mod frame;
pub mod heap;

use devicetree::MachineInfo;

pub const PAGE_SIZE: usize = 4096;

/// A physical address. (Temporary until the page-table crate provides the typed addresses.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct PhysAddr(u64);

impl PhysAddr {
    pub const fn new(pa: u64) -> Self {
        Self(pa)
    }
    pub const fn as_u64(self) -> u64 {
        self.0
    }
    pub const fn align_up(self, align: u64) -> Self {
        Self(self.0.div_ceil(align) * align)
    }
    pub const fn align_down(self, align: u64) -> Self {
        Self(self.0 / align * align)
    }
}

/// Kernel virtual address of physical address `pa` in the linear map.
pub fn phys_to_virt(pa: PhysAddr) -> usize {
    (pa.as_u64() + boot::KERNEL_VIRT_OFFSET) as usize
}

/// Physical address behind a linear-map virtual address.
pub fn virt_to_phys(va: usize) -> PhysAddr {
    PhysAddr::new(va as u64 - boot::KERNEL_VIRT_OFFSET)
}

/// A half-open physical range [start, end).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhysRange {
    pub start: u64,
    pub end: u64,
}

impl PhysRange {
    pub fn new(start: u64, end: u64) -> Self {
        Self {
            start,
            end: end.max(start),
        }
    }
}

/// Calls `add` for every part of `range` not covered by any of `holes`, in address order.
pub fn subtract_ranges(range: PhysRange, holes: &mut [PhysRange], mut add: impl FnMut(PhysRange)) {
    holes.sort_unstable_by_key(|hole| hole.start);
    let mut cursor = range.start;
    for hole in holes.iter() {
        if hole.end <= cursor || hole.start >= range.end {
            continue;
        }
        if hole.start > cursor {
            add(PhysRange::new(cursor, hole.start));
        }
        cursor = cursor.max(hole.end);
    }
    if cursor < range.end {
        add(PhysRange::new(cursor, range.end));
    }
}

/// Physical extent of the kernel image, bss included.
pub fn kernel_image() -> PhysRange {
    unsafe extern "C" {
        static __kernel_start: u8;
        static __kernel_end: u8;
    }
    let (start, end) = (
        &raw const __kernel_start as usize,
        &raw const __kernel_end as usize,
    );
    PhysRange::new(virt_to_phys(start).as_u64(), virt_to_phys(end).as_u64())
}

/// Gives the frame allocator all RAM the devicetree reports, minus the kernel image, the DTB,
/// reserved ranges and the boot stub below the image.
pub fn init(machine: &MachineInfo<'_>, dtb_pa: u64, dtb_size: u64) {
    let image = kernel_image();
    let ram_base = machine
        .ram
        .iter()
        .map(|r| r.base)
        .min()
        .unwrap_or(image.start);
    let mut holes = boot_holes(machine, image, ram_base, dtb_pa, dtb_size);
    // Only the GiB holding the image is mapped so far (boot tables).
    let mapped = PhysRange::new(
        image.start & !((1 << 30) - 1),
        (image.start & !((1 << 30) - 1)) + (1 << 30),
    );
    for region in &machine.ram {
        let ram = PhysRange::new(
            region.base.max(mapped.start),
            region.base.saturating_add(region.size).min(mapped.end),
        );
        subtract_ranges(ram, &mut holes, |free| {
            // SAFETY: RAM per the devicetree, outside everything in use, mapped by the boot tables,
            // each range added once (the holes and RAM regions do not overlap each other).
            unsafe { frame::add_range(PhysAddr::new(free.start), PhysAddr::new(free.end)) };
        });
    }
    let frames = frame::stats();
    log::info!(
        "{} MiB RAM, kernel image {:#x}..{:#x}, {} frames free",
        machine.ram_size() >> 20,
        image.start,
        image.end,
        frames.free
    );
}

/// The ranges of RAM the frame allocator must not get.
fn boot_holes(
    machine: &MachineInfo<'_>,
    image: PhysRange,
    ram_base: u64,
    dtb_pa: u64,
    dtb_size: u64,
) -> arrayvec::ArrayVec<PhysRange, 24> {
    let mut holes = arrayvec::ArrayVec::new();
    holes.push(PhysRange::new(ram_base, image.end));
    holes.push(PhysRange::new(dtb_pa, dtb_pa + dtb_size));
    for reserved in machine.reserved.iter().take(holes.capacity() - holes.len()) {
        holes.push(PhysRange::new(
            reserved.base,
            reserved.base.saturating_add(reserved.size),
        ));
    }
    holes
}
