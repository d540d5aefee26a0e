//! MMU control: TLB maintenance, translation table base registers, translation control.
//!
//! The page-table layout itself lives in the `pagetable` crate; this module is the part that
//! touches system registers.

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{ReadWriteable, Readable, SCTLR_EL1, TCR_EL1, TTBR0_EL1, Writeable};
use pagetable::{Asid, TlbFlush, VirtAddr};

use super::cpu::{HardwareAccessFlags, hardware_access_flags};

/// TLB maintenance for every CPU in the inner-shareable domain (TLBI ...IS with barriers).
#[derive(Clone, Copy, Default)]
pub struct Tlb;

/// `TLBI` operand: VA bits 55:12 in bits 43:0, ASID in bits 63:48.
fn tlbi_operand(va: VirtAddr, asid: u16) -> u64 {
    ((va.as_u64() >> 12) & 0x0000_0fff_ffff_ffff) | (u64::from(asid) << 48)
}

macro_rules! tlbi {
    ($op:literal, $operand:expr) => {
        // SAFETY: TLB invalidation has no memory effects beyond dropping cached translations;
        // the barriers order it after the descriptor writes and before later accesses.
        unsafe {
            core::arch::asm!(
                "dsb ishst",
                concat!("tlbi ", $op, ", {}"),
                "dsb ish",
                "isb",
                in(reg) $operand,
                options(nostack, preserves_flags)
            )
        }
    };
}

impl TlbFlush for Tlb {
    fn flush_va(&self, va: VirtAddr, asid: Asid) {
        tlbi!("vae1is", tlbi_operand(va, asid.0));
    }

    fn flush_va_all_asids(&self, va: VirtAddr) {
        tlbi!("vaae1is", tlbi_operand(va, 0));
    }

    fn flush_asid(&self, asid: Asid) {
        tlbi!("aside1is", u64::from(asid.0) << 48);
    }

    fn flush_all(&self) {
        // SAFETY: as for `tlbi!`.
        unsafe {
            core::arch::asm!(
                "dsb ishst",
                "tlbi vmalle1is",
                "dsb ish",
                "isb",
                options(nostack, preserves_flags)
            )
        };
    }

    fn publish(&self) {
        barrier::dsb(barrier::ISHST);
        barrier::isb(barrier::SY);
    }
}

core::arch::global_asm!(
    r#"
.section .text.mmu, "ax"
// void replace_ttbr1_from_idmap(u64 new_ttbr1, u64 empty_table)
// Runs from the identity map (TTBR0), never touching memory: points TTBR1 at an empty table,
// invalidates the TLB (break), then installs the new tables (make). Changing the block size of
// live kernel mappings in place would risk TLB conflicts.
.global replace_ttbr1_from_idmap
replace_ttbr1_from_idmap:
    msr     ttbr1_el1, x1
    isb
    tlbi    vmalle1
    dsb     nsh
    isb
    msr     ttbr1_el1, x0
    isb
    tlbi    vmalle1
    dsb     nsh
    isb
    ret
"#
);

unsafe extern "C" {
    fn replace_ttbr1_from_idmap(new_ttbr1: u64, empty_table: u64);
}

/// Switches the kernel half to new tables.
///
/// # Safety
/// `new_ttbr1` must map everything the kernel uses (its image at the same addresses, its stack,
/// the linear map); `empty_table` must be a zeroed table. The boot identity map (TTBR0) must
/// still map the image at its physical address, since the switch runs from there.
pub unsafe fn replace_kernel_tables(new_ttbr1: u64, empty_table: u64) {
    let routine = replace_ttbr1_from_idmap as *const () as u64;
    let physical = routine - boot::KERNEL_VIRT_OFFSET;
    // SAFETY: `physical` is the identity-mapped alias of the routine, which only touches
    // registers; it returns to our (high) return address, which the new tables map.
    unsafe {
        let identity: extern "C" fn(u64, u64) = core::mem::transmute(physical as usize);
        identity(new_ttbr1, empty_table);
    }
}

/// Loads TTBR0 (user half) and makes it take effect. With ASIDs no invalidation is needed.
/// The scheduler calls this on every switch, mostly with the value already loaded (between
/// kernel threads, or back to the same task): then there is nothing to do.
pub fn set_user_tables(ttbr0: u64) {
    if TTBR0_EL1.get() == ttbr0 {
        return;
    }
    TTBR0_EL1.set(ttbr0);
    barrier::isb(barrier::SY);
}

/// Turns on hardware management of the Access flag and dirty state where the CPU has it
/// (FEAT_HAFDBS), and SCTLR_EL1.WXN so that no writable page can ever execute. Returns what
/// the hardware manages.
pub fn enable_features() -> HardwareAccessFlags {
    let hafdbs = hardware_access_flags();
    match hafdbs {
        HardwareAccessFlags::None => {}
        HardwareAccessFlags::AccessFlag => TCR_EL1.modify(TCR_EL1::HA::SET),
        HardwareAccessFlags::AccessFlagAndDirty => {
            TCR_EL1.modify(TCR_EL1::HA::SET + TCR_EL1::HD::SET)
        }
    }
    SCTLR_EL1.modify(SCTLR_EL1::WXN::SET);
    barrier::isb(barrier::SY);
    // TCR and WXN may be cached in TLB entries.
    Tlb.flush_all();
    hafdbs
}

/// True when SCTLR_EL1.WXN is set.
pub fn write_implies_xn() -> bool {
    SCTLR_EL1.is_set(SCTLR_EL1::WXN)
}

/// Whether the hardware updates the Access flag (TCR_EL1.HA) and dirty state (TCR_EL1.HD).
pub fn hardware_updates() -> (bool, bool) {
    (TCR_EL1.is_set(TCR_EL1::HA), TCR_EL1.is_set(TCR_EL1::HD))
}

/// 16-bit ASIDs in use (TCR_EL1.AS), else 8-bit.
pub fn asid_bits() -> u32 {
    if TCR_EL1.is_set(TCR_EL1::AS) { 16 } else { 8 }
}
