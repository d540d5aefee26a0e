//! Typed access to a device's register block.

use core::marker::PhantomData;
use core::ops::Deref;

/// A device register block of type `T` (a tock-registers `register_structs!` type) at a kernel
/// virtual address mapped as device memory.
pub struct Mmio<T> {
    base: usize,
    _registers: PhantomData<fn() -> T>,
}

impl<T> Mmio<T> {
    /// # Safety
    /// `base` must be the kernel virtual address of a mapped register block laid out as `T`,
    /// mapped for as long as this value (and its copies) are used.
    pub const unsafe fn new(base: usize) -> Self {
        Self {
            base,
            _registers: PhantomData,
        }
    }

    pub fn base(&self) -> usize {
        self.base
    }
}

impl<T> Deref for Mmio<T> {
    type Target = T;

    fn deref(&self) -> &T {
        // SAFETY: `new`'s contract: `base` points at a live register block of type `T`. Register
        // types only allow volatile accesses through shared references.
        unsafe { &*(self.base as *const T) }
    }
}
