//! Kernel stacks with guard regions (see [`layout`](super::layout)): a stack overflow runs into
//! unmapped memory, and the fault (or the exception entry's SP check) names the stack.

use super::layout::{MAX_STACKS, STACK_SLOT_SIZE, STACKS_BASE, STACKS_END};
use super::{PAGE_SIZE, VirtAddr, frame, kernel_space};
use crate::arch::exception::STACK_SIZE;
use crate::sync::IrqSpinLock;
use alloc::string::String;
use core::fmt;
use pagetable::{Granularity, MapError, MemoryAttributes, Unmapped};

/// Frames of one stack, as a buddy order.
const STACK_ORDER: usize = (STACK_SIZE as u64 / PAGE_SIZE).trailing_zeros() as usize;

struct Slots {
    used: [bool; MAX_STACKS],
    names: [Option<String>; MAX_STACKS],
}

/// Slot 0 is never used: its upper half is the guard of slot 1.
static SLOTS: IrqSpinLock<Slots> = IrqSpinLock::new(Slots {
    used: {
        let mut used = [false; MAX_STACKS];
        used[0] = true;
        used
    },
    names: [const { None }; MAX_STACKS],
});

#[derive(Debug, PartialEq, Eq)]
pub enum StackError {
    /// All stack slots are in use.
    NoSlot,
    OutOfMemory,
    Map(MapError),
}

impl fmt::Display for StackError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSlot => write!(f, "all {MAX_STACKS} kernel stack slots are in use"),
            Self::OutOfMemory => f.write_str("no memory for a kernel stack"),
            Self::Map(err) => write!(f, "cannot map a kernel stack: {err}"),
        }
    }
}

/// A kernel stack; unmapped and freed on drop.
pub struct KernelStack {
    slot: usize,
}

impl KernelStack {
    /// Allocates and maps a stack, named for reports (a stack overflow names it).
    pub fn new(name: &str) -> Result<Self, StackError> {
        let slot = {
            let mut slots = SLOTS.lock();
            let slot = slots
                .used
                .iter()
                .position(|used| !used)
                .ok_or(StackError::NoSlot)?;
            slots.used[slot] = true;
            slots.names[slot] = Some(String::from(name));
            slot
        };
        let stack = Self { slot };
        let frames = frame::alloc(STACK_ORDER).map_err(|_| StackError::OutOfMemory)?;
        let mapped = kernel_space::with(|space| {
            space.map(
                stack.bottom(),
                frames.start(),
                STACK_SIZE as u64,
                MemoryAttributes::KERNEL_DATA,
                Granularity::Pages,
            )
        });
        if let Err(err) = mapped {
            // SAFETY: the block was just allocated and never mapped.
            unsafe { frame::free(frames, STACK_ORDER) };
            return Err(StackError::Map(err));
        }
        Ok(stack)
    }

    /// Lowest address of the stack.
    pub fn bottom(&self) -> VirtAddr {
        VirtAddr::new(STACKS_BASE + self.slot as u64 * STACK_SLOT_SIZE)
            .expect("stack slots are in the kernel half")
    }

    /// Initial stack pointer (one past the highest byte).
    pub fn top(&self) -> VirtAddr {
        VirtAddr::new(self.bottom().as_u64() + STACK_SIZE as u64)
            .expect("stack slots are in the kernel half")
    }

    /// The unmapped guard region below the stack.
    pub fn guard(&self) -> core::ops::Range<u64> {
        self.bottom().as_u64() - (STACK_SLOT_SIZE - STACK_SIZE as u64)..self.bottom().as_u64()
    }
}

impl Drop for KernelStack {
    fn drop(&mut self) {
        let mut first_frame = None;
        let result = kernel_space::with(|space| {
            space.unmap(self.bottom(), STACK_SIZE as u64, |unmapped| {
                if let Unmapped::Leaf(leaf) = unmapped {
                    first_frame.get_or_insert(leaf.pa);
                }
            })
        });
        match (
            result,
            first_frame.and_then(|pa| super::PhysFrame::from_start(pa).ok()),
        ) {
            // SAFETY: the stack's frames were one block of STACK_ORDER, now unmapped and flushed.
            (Ok(()), Some(frames)) => unsafe { frame::free(frames, STACK_ORDER) },
            (result, _) => log::error!(
                "kernel stack {}: unmap failed ({result:?}); its frames leak",
                self.slot
            ),
        }
        let mut slots = SLOTS.lock();
        slots.used[self.slot] = false;
        slots.names[self.slot] = None;
    }
}

/// If `address` lies in the guard region of a kernel stack, the name of that stack.
pub fn guarded_stack_name(address: u64) -> Option<String> {
    if !(STACKS_BASE..STACKS_END).contains(&address) {
        return None;
    }
    let offset = address - STACKS_BASE;
    // The upper half of slot n guards the stack in slot n + 1.
    if offset % STACK_SLOT_SIZE < STACK_SIZE as u64 {
        return None;
    }
    let slot = (offset / STACK_SLOT_SIZE) as usize + 1;
    let slots = SLOTS.try_lock()?;
    if !slots.used.get(slot).copied().unwrap_or(false) {
        return None;
    }
    slots.names.get(slot).cloned().flatten()
}

/// The name of the stack `sp` is on (or just ran off the bottom of), for overflow reports.
pub fn stack_name_of(sp: u64) -> Option<String> {
    if !(STACKS_BASE..STACKS_END).contains(&sp) {
        return None;
    }
    let offset = sp - STACKS_BASE;
    let slot = if offset % STACK_SLOT_SIZE < STACK_SIZE as u64 {
        (offset / STACK_SLOT_SIZE) as usize
    } else {
        (offset / STACK_SLOT_SIZE) as usize + 1
    };
    SLOTS.try_lock()?.names.get(slot).cloned().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::recover::{Caught, catch};
    use crate::ktest::prelude::*;

    ktest! {
        fn stacks_are_mapped_with_an_unmapped_guard_below() -> TestResult {
            let before = frame::stats();
            {
                let stack = check_ok!(KernelStack::new("test stack"));
                check_eq!(stack.bottom().as_u64() % STACK_SLOT_SIZE, 0);
                let translate = |va: u64| kernel_space::with(|space| space.translate(check_ok_va(va)));
                check!(translate(stack.bottom().as_u64()).is_some(), "the lowest stack page is mapped");
                check!(translate(stack.top().as_u64() - 8).is_some(), "the highest stack page is mapped");
                let guard = stack.guard();
                check!(translate(guard.start).is_none() && translate(guard.end - 8).is_none(), "the guard is unmapped");
                check_eq!(guarded_stack_name(guard.end - 8).as_deref(), Some("test stack"));
                check_eq!(stack_name_of(stack.top().as_u64() - 16).as_deref(), Some("test stack"));
                // Touching the guard faults (the fault handler reports it by name when nothing catches it).
                // SAFETY: the write faults; `catch` turns the fault into an error.
                let result = catch(|| unsafe { core::ptr::write_volatile((guard.end - 8) as *mut u64, 1) });
                match result {
                    Err(Caught::Fault { far, .. }) => check_eq!(far, guard.end - 8),
                    other => fail!("writing the guard did not fault: {other:?}"),
                }
            }
            check_eq!(frame::stats(), before, "dropping the stack returns its frames");
            Ok(())
        }
    }

    fn check_ok_va(va: u64) -> VirtAddr {
        VirtAddr::new(va).expect("test addresses are canonical")
    }
}
