//! User tasks: threads whose body runs user code in their own address space.

use super::Thread;
use crate::mm::aspace::SharedSpace;

/// The user side of a task.
pub struct UserTask {
    pub space: SharedSpace,
}

/// Asks a user task to end with `code` at its next return to the kernel.
pub fn kill(_thread: &Thread, _code: i64) -> bool {
    false
}
