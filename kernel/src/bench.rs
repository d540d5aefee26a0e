//! Micro-benchmarks run from the shell (`bench ...`). Costs are guest time per operation: with
//! QEMU's `-icount shift=0,sleep=off` (`QEMU_ICOUNT=1`) one nanosecond of guest time is one
//! instruction, so the figures are deterministic instruction counts; without it they follow
//! host speed. Each figure comes with its ratio to a baseline measured in the same run.

use crate::arch::cpu;
use crate::time::ticks_to_us;
use core::fmt::{self, Write};

/// Guest nanoseconds per operation of `op` run `iterations` times (after one warm-up call).
pub fn measure(iterations: u64, mut op: impl FnMut()) -> u64 {
    op();
    let start = cpu::counter();
    for _ in 0..iterations {
        op();
    }
    let elapsed_ns = u128::from(ticks_to_us(cpu::counter() - start)) * 1000;
    (elapsed_ns / u128::from(iterations.max(1))) as u64
}

/// One result line: `bench=NAME ops=N ns_per_op=N [vs_BASELINE=R]`: guest nanoseconds per
/// operation (instructions with `QEMU_ICOUNT=1`) and the ratio to the baseline's, a factor.
pub fn report(
    out: &mut dyn Write,
    name: &str,
    iterations: u64,
    ns_per_op: u64,
    baseline: Option<(&str, u64)>,
) -> fmt::Result {
    write!(out, "bench={name} ops={iterations} ns_per_op={ns_per_op}")?;
    if let Some((base_name, base_ns)) = baseline {
        let ratio_x100 = u128::from(ns_per_op) * 100 / u128::from(base_ns.max(1));
        write!(
            out,
            " vs_{base_name}={}.{:02}",
            ratio_x100 / 100,
            ratio_x100 % 100
        )?;
    }
    writeln!(out)
}
