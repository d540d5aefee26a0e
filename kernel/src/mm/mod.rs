//! Memory management: the kernel's address space, physical frames, the kernel heap, kernel
//! stacks, user address spaces and page faults.
//!
//! Kernel virtual memory (TTBR1, the upper half):
//!
//! | range                                 | what                                             |
//! |---------------------------------------|--------------------------------------------------|
//! | `0xffff_0000_0000_0000` + PA          | linear map: all RAM (RW, XN), MMIO in use (device, XN); the kernel image inside it with per-section permissions |
//! | [`layout::STACKS_BASE`] ...           | kernel stacks, each with an unmapped guard region below |
//!
//! User address spaces (TTBR0, the lower half) each have their own tables and ASID.

pub mod aspace;
pub mod bench;
pub mod fault;
pub mod frame;
pub mod heap;
pub mod kernel_space;
pub mod layout;
pub mod stack;
pub mod stress;
pub mod swap;
pub mod vmscan;

use devicetree::MachineInfo;
pub use pagetable::{PAGE_SIZE, Page, PhysAddr, PhysFrame, VirtAddr};

/// Kernel virtual address of physical address `pa` in the linear map.
pub fn phys_to_virt(pa: PhysAddr) -> VirtAddr {
    VirtAddr::new(pa.as_u64() + layout::LINEAR_BASE).expect("physical addresses are below 2^48")
}

/// A pointer to physical memory through the linear map.
pub fn phys_ptr<T>(pa: PhysAddr) -> *mut T {
    phys_to_virt(pa).as_u64() as *mut T
}

/// Physical address behind a linear-map address (`va` must lie in the linear map).
pub fn virt_to_phys(va: VirtAddr) -> PhysAddr {
    PhysAddr::new(va.as_u64() - layout::LINEAR_BASE).expect("linear-map addresses map below 2^48")
}

/// Physical address behind a pointer into the linear map (heap, frames, statics).
pub fn ptr_to_phys<T>(ptr: *const T) -> PhysAddr {
    virt_to_phys(VirtAddr::new(ptr as u64).expect("kernel pointers are canonical"))
}

/// Physical address behind any kernel pointer, for handing memory to a device: RAM in the
/// linear map by its fixed offset (the tables map all RAM at `LINEAR_BASE + pa`), anything else
/// (kernel stacks) by walking the kernel's tables. `None` if nothing maps it.
pub fn kernel_ptr_to_phys<T>(ptr: *const T) -> Option<PhysAddr> {
    let va = ptr as u64;
    if let Some(pa) = va.checked_sub(layout::LINEAR_BASE) {
        let in_ram = crate::init::machine()
            .ram
            .iter()
            .any(|region| pa >= region.base && pa - region.base < region.size);
        if in_ram {
            return PhysAddr::new(pa).ok();
        }
    }
    let va = VirtAddr::new(va).ok()?;
    kernel_space::with(|space| space.translate(va)).map(|translation| translation.pa)
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

    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    /// The part of `self` inside `other` (possibly empty).
    pub fn intersect(&self, other: &PhysRange) -> PhysRange {
        PhysRange::new(self.start.max(other.start), self.end.min(other.end))
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

/// The kernel image's sections, as physical ranges.
pub struct ImageLayout {
    /// Code: read-only, executable.
    pub text: PhysRange,
    /// Read-only data (and the test case table).
    pub rodata: PhysRange,
    /// Data, bss and the boot stack: read-write, never executable.
    pub data: PhysRange,
}

impl ImageLayout {
    pub fn whole(&self) -> PhysRange {
        PhysRange::new(self.text.start, self.data.end)
    }
}

/// Section boundaries from the linker script.
pub fn image_layout() -> ImageLayout {
    unsafe extern "C" {
        static __kernel_start: u8;
        static __text_end: u8;
        static __rodata_end: u8;
        static __kernel_end: u8;
    }
    let pa = |symbol: *const u8| symbol as u64 - layout::LINEAR_BASE;
    let (start, text_end, rodata_end, end) = (
        pa(&raw const __kernel_start),
        pa(&raw const __text_end),
        pa(&raw const __rodata_end),
        pa(&raw const __kernel_end),
    );
    ImageLayout {
        text: PhysRange::new(start, text_end),
        rodata: PhysRange::new(text_end, rodata_end),
        data: PhysRange::new(rodata_end, end),
    }
}

/// Physical extent of the kernel image, bss included.
pub fn kernel_image() -> PhysRange {
    image_layout().whole()
}

/// RAM the frame allocator must not get: everything below the image's end in the first
/// region (boot stub, image), the DTB and reserved ranges.
fn ram_holes(machine: &MachineInfo<'_>, dtb: PhysRange) -> arrayvec::ArrayVec<PhysRange, 24> {
    let image = kernel_image();
    let ram_base = machine
        .ram
        .iter()
        .map(|r| r.base)
        .min()
        .unwrap_or(image.start);
    let mut holes = arrayvec::ArrayVec::new();
    holes.push(PhysRange::new(ram_base, image.end));
    holes.push(dtb);
    for reserved in machine.reserved.iter().take(holes.capacity() - holes.len()) {
        holes.push(PhysRange::new(
            reserved.base,
            reserved.base.saturating_add(reserved.size),
        ));
    }
    holes
}

/// Adds the free RAM inside `window` to the frame allocator.
fn add_free_ram(machine: &MachineInfo<'_>, dtb: PhysRange, window: PhysRange) {
    let mut holes = ram_holes(machine, dtb);
    for region in &machine.ram {
        let ram =
            PhysRange::new(region.base, region.base.saturating_add(region.size)).intersect(&window);
        subtract_ranges(ram, &mut holes, |free| {
            let (Ok(start), Ok(end)) = (PhysAddr::new(free.start), PhysAddr::new(free.end)) else {
                return;
            };
            // SAFETY: RAM per the devicetree, outside everything in use, mapped read-write by
            // the linear map, each range added once (callers pass disjoint windows).
            unsafe { frame::add_range(start, end) };
        });
    }
}

/// Brings up memory management on the boot CPU:
/// 1. the RAM the boot tables map (the GiB holding the image) goes to the frame allocator;
/// 2. the kernel's own tables are built (W^X image sections, linear map of all RAM, devices)
///    and installed;
/// 3. the rest of RAM goes to the frame allocator;
/// 4. hardware Access flag/dirty management and WXN are switched on.
pub fn init(machine: &MachineInfo<'_>, dtb_pa: u64, dtb_size: u64) {
    let dtb = PhysRange::new(dtb_pa, dtb_pa.saturating_add(dtb_size));
    let image = kernel_image();
    let boot_window = PhysRange::new(
        image.start & !(layout::GIB - 1),
        (image.start & !(layout::GIB - 1)) + layout::GIB,
    );
    add_free_ram(machine, dtb, boot_window);

    if let Err(err) = kernel_space::init(machine) {
        panic!("cannot build the kernel's page tables: {err}");
    }
    add_free_ram(machine, dtb, PhysRange::new(0, boot_window.start));
    add_free_ram(machine, dtb, PhysRange::new(boot_window.end, u64::MAX));
    let hardware = crate::arch::mmu::enable_features();
    vmscan::init(machine);

    let frames = frame::stats();
    log::info!(
        "{} MiB RAM, image {:#x}..{:#x}, {} frames free; W^X tables installed, Access flag: {}",
        machine.ram_size() >> 20,
        image.start,
        image.end,
        frames.free,
        match hardware {
            crate::arch::cpu::HardwareAccessFlags::None => "software (access-flag faults)",
            crate::arch::cpu::HardwareAccessFlags::AccessFlag => "hardware",
            crate::arch::cpu::HardwareAccessFlags::AccessFlagAndDirty =>
                "hardware, dirty state too",
        }
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ktest::prelude::*;
    use alloc::vec::Vec;

    ktest! {
        fn holes_are_cut_out_of_ranges() -> TestResult {
            let collect = |range, holes: &mut [PhysRange]| {
                let mut out = Vec::new();
                subtract_ranges(range, holes, |r| out.push((r.start, r.end)));
                out
            };
            let mut holes = [PhysRange::new(30, 40), PhysRange::new(10, 20), PhysRange::new(35, 50)];
            check_eq!(collect(PhysRange::new(0, 100), &mut holes), [(0, 10), (20, 30), (50, 100)]);
            check_eq!(collect(PhysRange::new(12, 18), &mut holes), []);
            check_eq!(collect(PhysRange::new(15, 32), &mut holes), [(20, 30)]);
            check_eq!(collect(PhysRange::new(60, 70), &mut []), [(60, 70)]);
            Ok(())
        }

        fn kernel_pointers_translate_by_linear_map_or_table_walk() -> TestResult {
            // Heap memory: in the linear map.
            let heap = alloc::vec![0u8; 64];
            let pa = check_ok!(kernel_ptr_to_phys(heap.as_ptr()).ok_or("heap not translated"));
            check_eq!(phys_to_virt(pa).as_u64(), heap.as_ptr() as u64);
            // A stack variable: outside the linear map, found by walking the tables; writing
            // through the linear alias of that physical address changes the variable.
            let mut on_stack = 0u64;
            let stack_va = (&raw mut on_stack) as u64;
            check!(stack_va >= layout::STACKS_BASE, "{stack_va:#x} is not a kernel stack address");
            let pa = check_ok!(kernel_ptr_to_phys(&raw const on_stack).ok_or("stack not translated"));
            // SAFETY: the linear alias of our own stack variable, written once, volatile.
            unsafe { core::ptr::write_volatile(phys_ptr::<u64>(pa), 0x5eed) };
            // SAFETY: a live local, read volatile so the write through its alias is seen.
            let seen = unsafe { core::ptr::read_volatile(&raw const on_stack) };
            check_eq!(seen, 0x5eed);
            // Nothing maps the user half here.
            check_eq!(kernel_ptr_to_phys(0x1000 as *const u8), None);
            Ok(())
        }

        fn linear_map_round_trips() -> TestResult {
            let pa = check_ok!(PhysAddr::new(0x4123_4567));
            check_eq!(virt_to_phys(phys_to_virt(pa)), pa);
            check_eq!(phys_to_virt(pa).as_u64(), 0xffff_0000_4123_4567);
            let layout = image_layout();
            check!(layout.text.start < layout.text.end && layout.text.end <= layout.rodata.start);
            check!(layout.rodata.end <= layout.data.start && layout.data.start < layout.data.end);
            check_eq!(layout.text.start % PAGE_SIZE, 0);
            check_eq!(layout.rodata.start % PAGE_SIZE, 0);
            check_eq!(layout.data.start % PAGE_SIZE, 0);
            Ok(())
        }
    }
}
