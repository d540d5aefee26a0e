//! The EL1 virtual timer (CNTV) of the Arm generic timer.

use aarch64_cpu::registers::{CNTV_CTL_EL0, CNTV_CVAL_EL0, ReadWriteable, Writeable};

/// Fires the timer interrupt when the virtual counter reaches `deadline` (counter ticks).
pub fn arm(deadline: u64) {
    CNTV_CVAL_EL0.set(deadline);
    CNTV_CTL_EL0.write(CNTV_CTL_EL0::ENABLE::SET + CNTV_CTL_EL0::IMASK::CLEAR);
}

/// Stops the timer interrupt.
pub fn disarm() {
    CNTV_CTL_EL0.modify(CNTV_CTL_EL0::ENABLE::CLEAR);
}
