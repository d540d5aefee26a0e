//! Host tests against simulated memory ([`crate::sim`]).

mod aging;
mod encoding;
mod mapping;
mod model;

use crate::sim::{RecordingTlb, SimMemory};
use crate::{AddressSpace, Asid, DirtyTracking, Page, PhysAddr, PhysFrame, Space, VirtAddr};

/// The ASID of user address spaces in tests.
const ASID: Asid = Asid(7);
const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
const GIB: u64 = 1024 * MIB;

type TestSpace<'a> = AddressSpace<&'a SimMemory, &'a RecordingTlb<'a>>;

fn va(addr: u64) -> VirtAddr {
    VirtAddr::new(addr).unwrap()
}

fn pa(addr: u64) -> PhysAddr {
    PhysAddr::new(addr).unwrap()
}

fn page(addr: u64) -> Page {
    Page::from_start(va(addr)).unwrap()
}

fn frame(addr: u64) -> PhysFrame {
    PhysFrame::from_start(pa(addr)).unwrap()
}

/// A user address space (ASID 7) whose root the recorder observes.
fn user_space<'a>(
    memory: &'a SimMemory,
    tlb: &'a RecordingTlb<'a>,
    tracking: DirtyTracking,
) -> TestSpace<'a> {
    let space = AddressSpace::new(memory, tlb, Space::User(ASID), tracking).unwrap();
    tlb.set_root(space.root());
    space
}

/// The kernel address space.
fn kernel_space<'a>(memory: &'a SimMemory, tlb: &'a RecordingTlb<'a>) -> TestSpace<'a> {
    let space = AddressSpace::new(memory, tlb, Space::Kernel, DirtyTracking::Untracked).unwrap();
    tlb.set_root(space.root());
    space
}
