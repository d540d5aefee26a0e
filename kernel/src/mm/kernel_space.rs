//! The kernel's address space (TTBR1): its tables, and mapping devices and stacks into it.

use super::{PAGE_SIZE, PhysAddr, PhysFrame, PhysRange, VirtAddr, frame, phys_to_virt};
use crate::arch::mmu::{self, Tlb};
use crate::sync::IrqSpinLock;
use core::ptr::NonNull;
use devicetree::{GicKind, MachineInfo};
use pagetable::{
    AddressSpace, DirtyTracking, Granularity, MapError, MemoryAttributes, PhysMemory, Space, Walk,
};

const _: () = assert!(
    boot::MAIR_EL1 == pagetable::MAIR_EL1_VALUE,
    "boot code and page tables must agree on MAIR"
);

/// Translation table frames come from the frame allocator and are reached through the linear map.
#[derive(Clone, Copy, Default)]
pub struct KernelMemory;

// SAFETY: frames come zeroed from the frame allocator and are owned by the caller until freed;
// the linear map reaches every RAM frame at one fixed address.
unsafe impl PhysMemory for KernelMemory {
    fn allocate_table(&self) -> Option<PhysFrame> {
        frame::alloc_zeroed(0).ok()
    }

    fn free_table(&self, frame: PhysFrame) {
        // SAFETY: the address space frees a table only once it is unlinked and flushed.
        unsafe { frame::free(frame, 0) };
    }

    fn table_entries(&self, frame: PhysFrame) -> NonNull<pagetable::interface::TableEntries> {
        NonNull::new(super::phys_ptr(frame.start())).expect("linear-map addresses are not null")
    }
}

pub type KernelAddressSpace = AddressSpace<KernelMemory, Tlb>;

static KERNEL_SPACE: IrqSpinLock<Option<KernelAddressSpace>> = IrqSpinLock::new(None);

/// A table with no valid entry, loaded into TTBR0 while no user address space is active.
static EMPTY_USER_TABLE: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

/// The TTBR0 value that maps nothing in the user half.
pub fn empty_user_ttbr() -> u64 {
    EMPTY_USER_TABLE.load(core::sync::atomic::Ordering::Acquire)
}

/// Runs `f` on the kernel address space.
pub fn with<R>(f: impl FnOnce(&mut KernelAddressSpace) -> R) -> R {
    let mut guard = KERNEL_SPACE.lock();
    f(guard
        .as_mut()
        .expect("the kernel address space exists after mm::init"))
}

fn virt(pa: u64) -> Result<VirtAddr, MapError> {
    let pa = PhysAddr::new(pa).map_err(|_| MapError::PhysicalOutOfRange { start: pa, len: 0 })?;
    Ok(phys_to_virt(pa))
}

fn map_linear(
    space: &mut KernelAddressSpace,
    range: PhysRange,
    attributes: MemoryAttributes,
    granularity: Granularity,
) -> Result<(), MapError> {
    if range.is_empty() {
        return Ok(());
    }
    let pa = PhysAddr::new(range.start).map_err(|_| MapError::PhysicalOutOfRange {
        start: range.start,
        len: range.len(),
    })?;
    space.map(phys_to_virt(pa), pa, range.len(), attributes, granularity)
}

/// Maps the pages covering `[pa, pa + size)` as device memory at their linear address, leaving
/// pages that are already mapped alone (devices share pages: 32 virtio-mmio slots fit in four).
fn map_device_in(space: &mut KernelAddressSpace, pa: u64, size: u64) -> Result<VirtAddr, MapError> {
    let start = pa & !(PAGE_SIZE - 1);
    let end = pa
        .checked_add(size)
        .and_then(|end| end.checked_next_multiple_of(PAGE_SIZE))
        .ok_or(MapError::PhysicalOutOfRange {
            start: pa,
            len: size,
        })?;
    let mut page = start;
    while page < end {
        let va = virt(page)?;
        if space.translate(va).is_none() {
            let frame_pa = PhysAddr::new(page).map_err(|_| MapError::PhysicalOutOfRange {
                start: page,
                len: PAGE_SIZE,
            })?;
            space.map(
                va,
                frame_pa,
                PAGE_SIZE,
                MemoryAttributes::KERNEL_DEVICE,
                Granularity::Pages,
            )?;
        }
        page += PAGE_SIZE;
    }
    virt(pa)
}

/// Maps a device's registers (idempotent) and returns their kernel virtual address.
pub fn map_device(pa: u64, size: u64) -> Result<VirtAddr, MapError> {
    with(|space| map_device_in(space, pa, size))
}

/// Builds the kernel's tables and switches to them.
pub fn init(machine: &MachineInfo<'_>) -> Result<(), MapError> {
    let mut space = AddressSpace::new(KernelMemory, Tlb, Space::Kernel, DirtyTracking::Untracked)?;
    let image = super::image_layout();
    // The image at 4 KiB granularity with per-section permissions (W^X).
    map_linear(
        &mut space,
        image.text,
        MemoryAttributes::KERNEL_CODE,
        Granularity::Pages,
    )?;
    map_linear(
        &mut space,
        image.rodata,
        MemoryAttributes::KERNEL_RODATA,
        Granularity::Pages,
    )?;
    map_linear(
        &mut space,
        image.data,
        MemoryAttributes::KERNEL_DATA,
        Granularity::Pages,
    )?;
    // All RAM, read-write and never executable, in blocks where alignment allows.
    let mut holes = [image.whole()];
    for region in &machine.ram {
        let ram = PhysRange::new(region.base, region.base.saturating_add(region.size));
        let mut result = Ok(());
        super::subtract_ranges(ram, &mut holes, |part| {
            if result.is_ok() {
                result = map_linear(
                    &mut space,
                    part,
                    MemoryAttributes::KERNEL_DATA,
                    Granularity::AllowBlocks,
                );
            }
        });
        result?;
    }
    // The devices the kernel drives from early on (virtio slots are mapped by their driver).
    if let Some(uart) = machine.uart {
        map_device_in(&mut space, uart.base, uart.size)?;
    }
    map_device_in(
        &mut space,
        machine.gic.distributor.base,
        machine.gic.distributor.size,
    )?;
    match &machine.gic.kind {
        GicKind::V2 { cpu_interface } => {
            map_device_in(&mut space, cpu_interface.base, cpu_interface.size)?;
        }
        GicKind::V3 { redistributors } => {
            for region in redistributors {
                map_device_in(&mut space, region.base, region.size)?;
            }
        }
    }

    let empty = frame::alloc_zeroed(0).map_err(|_| MapError::OutOfMemory)?;
    // SAFETY: the new tables map the image where it runs, the boot stack (in .bss) and the
    // linear map of RAM; `empty` is a zeroed table; the boot identity map is still in TTBR0.
    unsafe { mmu::replace_kernel_tables(space.ttbr(), empty.start().as_u64()) };
    // User space starts empty: TTBR0 stops pointing at the boot identity map.
    mmu::set_user_tables(empty.start().as_u64());
    pagetable::TlbFlush::flush_all(&Tlb);
    EMPTY_USER_TABLE.store(
        empty.start().as_u64(),
        core::sync::atomic::Ordering::Release,
    );
    *KERNEL_SPACE.lock() = Some(space);
    Ok(())
}

/// The level-by-level translation of a kernel address (for `pt`).
pub fn walk(va: VirtAddr) -> Walk {
    with(|space| space.walk(va))
}

/// Counts mappings in the kernel half that are both writable and executable, reporting each.
pub fn wxorx_violations(mut report: impl FnMut(&pagetable::Leaf)) -> Result<usize, MapError> {
    let start =
        VirtAddr::new(pagetable::addr::KERNEL_HALF_START).map_err(|_| MapError::OutOfMemory)?;
    with(|space| space.wxorx_violations(start, pagetable::HALF_SIZE, &mut report))
}
