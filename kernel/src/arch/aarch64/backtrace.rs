//! Frame-pointer backtraces. Every function keeps a frame record {previous fp, return address}
//! at x29 (`-C force-frame-pointers=yes`); the chain ends with fp = 0. Addresses are printed raw
//! as `  #N 0x...`; the host runner adds symbol names and source lines.

use core::fmt::{self, Write};

/// Frames printed at most (a corrupted chain must not loop forever).
const MAX_FRAMES: usize = 32;
/// A caller's frame record lies above its callee's on the same stack, within this distance.
const MAX_FRAME_DISTANCE: u64 = 1 << 20;

/// True if a kernel (EL1) read of the 16 bytes at `addr` would not fault.
fn readable(addr: u64) -> bool {
    if addr < boot::KERNEL_VIRT_OFFSET || !addr.is_multiple_of(8) {
        return false;
    }
    let translates = |va: u64| {
        let par: u64;
        // SAFETY: AT performs a translation without accessing memory; it only updates PAR_EL1.
        unsafe {
            core::arch::asm!("at s1e1r, {va}", "isb", "mrs {par}, par_el1", va = in(reg) va, par = out(reg) par, options(nostack, preserves_flags));
        }
        par & 1 == 0
    };
    translates(addr) && translates(addr + 8)
}

/// Calls `visit(depth, return_address)` for each frame reachable from the frame record at `fp`.
pub fn walk(mut fp: u64, mut visit: impl FnMut(usize, u64)) {
    for depth in 0..MAX_FRAMES {
        if fp == 0 || !readable(fp) {
            return;
        }
        // SAFETY: `readable` checked that both words of the record translate for an EL1 read.
        let next = unsafe { core::ptr::read_volatile(fp as *const u64) };
        // SAFETY: as above.
        let ret = unsafe { core::ptr::read_volatile((fp + 8) as *const u64) };
        if ret == 0 {
            return;
        }
        visit(depth, ret);
        if next <= fp || next - fp > MAX_FRAME_DISTANCE {
            return;
        }
        fp = next;
    }
}

/// Writes `backtrace:` and one `  #N 0x...` line per frame: `pc` (if given) as frame 0, then
/// the return addresses found from the frame record at `fp` as frames 1, 2, ... The numbering
/// tells the host-side symbolizer which addresses are return addresses (frames >= 1, looked up
/// at the call before them): a call that never returns (to the panic handler) is often its
/// function's last instruction, so the return address already belongs to the next function.
pub fn write(out: &mut dyn Write, pc: Option<u64>, fp: u64) -> fmt::Result {
    writeln!(out, "backtrace:")?;
    if let Some(pc) = pc {
        writeln!(out, "  #0 {pc:#018x}")?;
    }
    let mut result = Ok(());
    walk(fp, |depth, ret| {
        if result.is_ok() {
            result = writeln!(out, "  #{} {ret:#018x}", depth + 1);
        }
    });
    result
}

/// The current frame pointer (for backtraces of the running code, e.g. in a panic).
#[inline(always)]
pub fn current_fp() -> u64 {
    let fp: u64;
    // SAFETY: reads x29.
    unsafe {
        core::arch::asm!("mov {}, x29", out(reg) fp, options(nomem, nostack, preserves_flags))
    };
    fp
}
