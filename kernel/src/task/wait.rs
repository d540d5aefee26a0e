//! Wait queues: threads block until a condition holds and an event wakes them.

use super::{RunState, Thread, sched};
use crate::sync::IrqSpinLock;
use alloc::collections::VecDeque;
use alloc::sync::Arc;

/// Threads waiting for an event. The waker changes the condition first, then wakes; a waiter
/// checks the condition under the queue's lock before blocking, so no wake-up is lost.
pub struct WaitQueue {
    waiters: IrqSpinLock<VecDeque<Arc<Thread>>>,
}

impl Default for WaitQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl WaitQueue {
    pub const fn new() -> Self {
        Self {
            waiters: IrqSpinLock::new(VecDeque::new()),
        }
    }

    /// Blocks the calling thread until `ready()` holds (checked first, then after every wake-up).
    pub fn wait_until(&self, mut ready: impl FnMut() -> bool) {
        let me = sched::current();
        loop {
            {
                let mut waiters = self.waiters.lock();
                if ready() {
                    return;
                }
                me.sched.lock().run = RunState::Blocked;
                waiters.push_back(me.clone());
            }
            sched::schedule();
            // Woken by something other than this queue (a kill, a timer, an abort), the entry
            // is still here: take it out, so the queue holds only waiting threads (and keeps no
            // exited thread, its stack or its address space, alive).
            self.waiters
                .lock()
                .retain(|waiter| !Arc::ptr_eq(waiter, &me));
            // A test's time budget may have run out while it waited.
            crate::arch::recover::abort_if_requested();
        }
    }

    /// Wakes every waiting thread.
    pub fn wake_all(&self) {
        let woken: VecDeque<Arc<Thread>> = core::mem::take(&mut *self.waiters.lock());
        for thread in woken {
            sched::wake(&thread);
        }
    }

    /// Wakes the longest-waiting thread, if any.
    pub fn wake_one(&self) {
        let thread = self.waiters.lock().pop_front();
        if let Some(thread) = thread {
            sched::wake(&thread);
        }
    }

    /// Number of threads waiting.
    pub fn len(&self) -> usize {
        self.waiters.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
