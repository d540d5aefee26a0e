//! `bench mm`: frame allocation and 4 KiB map/unmap costs, against the kernel heap's cost for
//! the same 4 KiB as the baseline.

use super::{PAGE_SIZE, VirtAddr, frame, kernel_space};
use crate::bench::{measure, report};
use core::fmt::{self, Write};
use pagetable::{Granularity, MemoryAttributes};

/// A kernel-half address nothing else maps (outside the linear map and the stack area).
const SCRATCH_VA: u64 = 0xffff_9000_0000_0000;

pub fn run(out: &mut dyn Write, iterations: u64) -> fmt::Result {
    let heap = measure(iterations, || {
        let block = alloc::boxed::Box::new([0u8; PAGE_SIZE as usize]);
        core::hint::black_box(&block);
    });
    report(out, "heap_alloc_free_4k", iterations, heap, None)?;

    let mut failed = false;
    let frames = measure(iterations, || match frame::alloc(0) {
        // SAFETY: just allocated with order 0, used by nothing.
        Ok(frame) => unsafe { frame::free(frame, 0) },
        Err(_) => failed = true,
    });
    report(
        out,
        "frame_alloc_free",
        iterations,
        frames,
        Some(("heap", heap)),
    )?;

    let Ok(frame) = frame::alloc(0) else {
        return writeln!(out, "error: no frame for the map/unmap benchmark");
    };
    let va = VirtAddr::new(SCRATCH_VA).expect("a canonical kernel address");
    // Keep the intermediate tables alive across iterations (as for a long-lived mapping next
    // door), so the loop measures one leaf's map and unmap.
    let neighbour = VirtAddr::new(SCRATCH_VA + PAGE_SIZE).expect("a canonical kernel address");
    let anchored = kernel_space::with(|space| {
        space.map(
            neighbour,
            frame.start(),
            PAGE_SIZE,
            MemoryAttributes::KERNEL_DATA,
            Granularity::Pages,
        )
    });
    let map_unmap = measure(iterations, || {
        let result = kernel_space::with(|space| {
            space.map(
                va,
                frame.start(),
                PAGE_SIZE,
                MemoryAttributes::KERNEL_DATA,
                Granularity::Pages,
            )?;
            space.unmap(va, PAGE_SIZE, |_| {})
        });
        failed |= result.is_err();
    });
    let _ = kernel_space::with(|space| space.unmap(neighbour, PAGE_SIZE, |_| {}));
    // SAFETY: unmapped above; nothing else refers to it.
    unsafe { frame::free(frame, 0) };
    if anchored.is_err() || failed {
        return writeln!(
            out,
            "error: a mapping or allocation failed during the benchmark"
        );
    }
    report(
        out,
        "map_unmap_4k",
        iterations,
        map_unmap,
        Some(("frame_alloc_free", frames)),
    )
}
