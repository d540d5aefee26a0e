//! Where things live in the kernel's virtual address space.

use crate::arch::exception::{STACK_SHIFT, STACK_SIZE};

pub const GIB: u64 = 1 << 30;

/// Start of the linear map: kernel virtual address = physical address + `LINEAR_BASE`.
pub const LINEAR_BASE: u64 = boot::KERNEL_VIRT_OFFSET;

/// Start of the kernel stack area.
pub const STACKS_BASE: u64 = 0xffff_8000_0000_0000;
/// Each kernel stack owns a slot of twice its size, aligned to that: the stack fills the lower
/// half (so a valid SP has bit STACK_SHIFT clear, which the exception entry checks) and the
/// upper half stays unmapped, guarding the stack of the next slot.
pub const STACK_SLOT_SIZE: u64 = 2 * STACK_SIZE as u64;
/// Kernel stacks that can exist at once.
pub const MAX_STACKS: usize = 4096;
/// End of the kernel stack area.
pub const STACKS_END: u64 = STACKS_BASE + MAX_STACKS as u64 * STACK_SLOT_SIZE;

const _: () = assert!(STACK_SLOT_SIZE == 1 << (STACK_SHIFT + 1));
const _: () = assert!(STACKS_BASE.is_multiple_of(STACK_SLOT_SIZE));
