//! Locks for data shared with interrupt handlers and other CPUs.

use crate::arch::cpu::{disable_interrupts, restore_interrupts};
use core::ops::{Deref, DerefMut};

/// A spin lock that masks interrupts on this CPU while held, so an interrupt handler that takes
/// the same lock cannot deadlock against the code it interrupted.
pub struct IrqSpinLock<T> {
    inner: spin::Mutex<T>,
}

pub struct IrqSpinLockGuard<'a, T> {
    guard: core::mem::ManuallyDrop<spin::MutexGuard<'a, T>>,
    daif: u64,
}

impl<T> IrqSpinLock<T> {
    pub const fn new(value: T) -> Self {
        Self {
            inner: spin::Mutex::new(value),
        }
    }

    pub fn lock(&self) -> IrqSpinLockGuard<'_, T> {
        let daif = disable_interrupts();
        IrqSpinLockGuard {
            guard: core::mem::ManuallyDrop::new(self.inner.lock()),
            daif,
        }
    }

    /// Takes the lock if it is free (used where waiting could deadlock, e.g. while panicking).
    pub fn try_lock(&self) -> Option<IrqSpinLockGuard<'_, T>> {
        let daif = disable_interrupts();
        match self.inner.try_lock() {
            Some(guard) => Some(IrqSpinLockGuard {
                guard: core::mem::ManuallyDrop::new(guard),
                daif,
            }),
            None => {
                restore_interrupts(daif);
                None
            }
        }
    }
}

impl<T> Deref for IrqSpinLockGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for IrqSpinLockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

impl<T> Drop for IrqSpinLockGuard<'_, T> {
    fn drop(&mut self) {
        // SAFETY: the guard is dropped exactly once, here, before interrupts are restored.
        unsafe { core::mem::ManuallyDrop::drop(&mut self.guard) };
        restore_interrupts(self.daif);
    }
}
