//! Memory management in a running kernel: W^X in the live tables, permission enforcement at
//! EL1 and EL0, user address spaces (demand paging, map/unmap round trips), Access-flag and
//! dirty tracking by hardware or by faults (run on `-cpu cortex-a72` and `-cpu max`), and heap
//! stress.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::vec::Vec;
use core::sync::atomic::Ordering;
use kernel::arch::cpu::{HardwareAccessFlags, hardware_access_flags};
use kernel::arch::esr::{ExceptionClass, FaultStatus};
use kernel::arch::recover::{Caught, catch};
use kernel::arch::user::{UserContext, UserExit, run_user};
use kernel::ktest::prelude::*;
use kernel::mm::aspace::{FAULTS, SharedSpace, UserSpace};
use kernel::mm::{PAGE_SIZE, PhysAddr, VirtAddr, frame, heap, kernel_space};
use pagetable::{Granularity, MemoryAttributes};

kernel::entry_point!(kernel::ktest::main);

static READ_ONLY_VALUE: u64 = 0x5eed;

fn va(address: u64) -> VirtAddr {
    VirtAddr::new(address).expect("test addresses are canonical")
}

ktest! {
    fn live_kernel_tables_have_no_writable_executable_mapping() -> TestResult {
        let mut offenders = Vec::new();
        let count = check_ok!(kernel_space::wxorx_violations(|leaf| offenders.push(leaf.va)));
        check_eq!(count, 0, "W+X mappings at {offenders:?}");
        check!(kernel::arch::mmu::write_implies_xn(), "SCTLR_EL1.WXN is set");
        Ok(())
    }

    fn image_sections_and_linear_map_have_their_permissions() -> TestResult {
        let code = live_kernel_tables_have_no_writable_executable_mapping as *const () as u64;
        let rodata = &READ_ONLY_VALUE as *const u64 as u64;
        let data = &FAULTS as *const _ as u64;
        let heap_block = alloc::boxed::Box::new(0u64);
        let heap = &*heap_block as *const u64 as u64;
        let attributes = |address: u64| {
            kernel_space::with(|space| space.translate(va(address)).map(|t| t.leaf.attributes()))
        };
        let text = check_ok!(check_ok!(attributes(code).ok_or("text is mapped")));
        check!(text.kernel().execute && !text.kernel().write && !text.user_accessible(), "text: {text:?}");
        let ro = check_ok!(check_ok!(attributes(rodata).ok_or("rodata is mapped")));
        check!(!ro.kernel().write && !ro.kernel().execute, "rodata: {ro:?}");
        for (what, address) in [("data", data), ("heap", heap)] {
            let rw = check_ok!(check_ok!(attributes(address).ok_or("mapped")));
            check!(rw.kernel().write && !rw.kernel().execute && !rw.user_accessible(), "{what}: {rw:?}");
        }
        // The last page of RAM is in the linear map.
        let machine = kernel::init::machine();
        let last = machine.ram.iter().map(|r| r.base + r.size).max().unwrap_or(0) - PAGE_SIZE;
        let linear = kernel::mm::phys_to_virt(check_ok!(PhysAddr::new(last)));
        check!(kernel_space::with(|space| space.translate(linear)).is_some(), "last RAM page {last:#x} is mapped");
        Ok(())
    }

    fn writing_read_only_data_is_a_permission_fault() -> TestResult {
        let address = core::hint::black_box(&READ_ONLY_VALUE as *const u64 as u64);
        // SAFETY: the write faults; `catch` turns the fault into an error.
        let caught = catch(|| unsafe { core::ptr::write_volatile(address as *mut u64, 1) });
        match caught {
            Err(Caught::Fault { esr, far, .. }) => {
                check_eq!(esr.class(), ExceptionClass::DataAbortSameEl);
                check!(matches!(esr.fault_status(), Some(FaultStatus::Permission { .. })), "{esr}");
                check!(esr.is_write());
                check_eq!(far, address);
            }
            other => fail!("writing rodata did not fault: {other:?}"),
        }
        check_eq!(READ_ONLY_VALUE, 0x5eed);
        Ok(())
    }

    fn executing_data_is_a_permission_fault() -> TestResult {
        // `ret`, placed in writable (hence never executable) heap memory.
        let code = alloc::boxed::Box::new([0xd65f_03c0u32; 4]);
        let entry = code.as_ptr() as u64;
        // SAFETY: jumping to the heap faults (PXN); `catch` turns the fault into an error.
        let caught = catch(|| unsafe {
            let function: extern "C" fn() = core::mem::transmute(entry as usize);
            function();
        });
        match caught {
            Err(Caught::Fault { esr, far, elr }) => {
                check_eq!(esr.class(), ExceptionClass::InstructionAbortSameEl);
                check!(matches!(esr.fault_status(), Some(FaultStatus::Permission { .. })), "{esr}");
                check_eq!(far, entry);
                check_eq!(elr, entry);
            }
            other => fail!("executing the heap did not fault: {other:?}"),
        }
        Ok(())
    }

    fn kernel_mappings_round_trip() -> TestResult {
        let before = frame::stats();
        let frame = check_ok!(frame::alloc_zeroed(0));
        // A kernel-half address nothing else uses.
        let scratch = va(0xffff_9000_0000_0000);
        check_ok!(kernel_space::with(|space| space.map(scratch, frame.start(), PAGE_SIZE, MemoryAttributes::KERNEL_DATA, Granularity::Pages)));
        let translated = kernel_space::with(|space| space.translate(scratch)).map(|t| t.pa);
        check_eq!(translated, Some(frame.start()));
        // SAFETY: the page was just mapped read-write for the kernel.
        unsafe { core::ptr::write_volatile((scratch.as_u64() + 8) as *mut u64, 0xfeed) };
        // SAFETY: the frame is ours; the linear map reaches it too.
        check_eq!(unsafe { core::ptr::read_volatile(kernel::mm::phys_ptr::<u64>(frame.start()).wrapping_add(1)) }, 0xfeed);
        check_eq!(kernel_space::with(|space| space.map(scratch, frame.start(), PAGE_SIZE, MemoryAttributes::KERNEL_DATA, Granularity::Pages)), Err(pagetable::MapError::AlreadyMapped { va: scratch }));
        let mut unmapped = 0;
        check_ok!(kernel_space::with(|space| space.unmap(scratch, PAGE_SIZE, |_| unmapped += 1)));
        check_eq!(unmapped, 1);
        check!(kernel_space::with(|space| space.translate(scratch)).is_none());
        // SAFETY: unmapped and flushed above.
        unsafe { frame::free(frame, 0) };
        check_eq!(frame::stats(), before, "tables built for the mapping were freed");
        Ok(())
    }

    fn user_pages_fill_on_demand_and_return_on_unmap() -> TestResult {
        let before = frame::stats();
        {
            let space = check_ok!(UserSpace::new());
            let base = 0x10_0000_0000u64;
            let pages = 64;
            check_ok!(space.lock().add_region(base, pages * PAGE_SIZE, MemoryAttributes::USER_DATA));
            kernel::mm::aspace::activate(&space);
            let filled = FAULTS.demand_zero.load(Ordering::Relaxed);
            for page in 0..pages {
                let address = (base + page * PAGE_SIZE) as *mut u64;
                // SAFETY: the region covers the address; the first touch fills the page.
                unsafe { core::ptr::write_volatile(address.wrapping_add(3), page * 7 + 1) };
            }
            check_eq!(FAULTS.demand_zero.load(Ordering::Relaxed) - filled, pages, "one fill per page");
            for page in 0..pages {
                let address = (base + page * PAGE_SIZE) as *const u64;
                // SAFETY: mapped above.
                let value = unsafe { core::ptr::read_volatile(address.wrapping_add(3)) };
                // SAFETY: mapped above.
                let zero = unsafe { core::ptr::read_volatile(address) };
                check_eq!((value, zero), (page * 7 + 1, 0), "page {page}");
                let pa = space.lock().tables().translate(va(base + page * PAGE_SIZE)).map(|t| t.pa);
                check!(pa.is_some(), "page {page} is mapped");
            }
            check_eq!(before.free - frame::stats().free >= pages as usize, true);
            // Outside the region: a real fault, caught.
            // SAFETY: faults; caught.
            let outside = catch(|| unsafe { core::ptr::read_volatile((base + pages * PAGE_SIZE) as *const u64) });
            check!(matches!(outside, Err(Caught::Fault { .. })), "{outside:?}");
            check_ok!(space.lock().remove_region(base));
            check!(space.lock().tables().translate(va(base)).is_none());
            kernel::mm::aspace::deactivate();
        }
        check_eq!(frame::stats(), before, "dropping the space freed pages, tables and root");
        Ok(())
    }

    fn a_thread_keeps_its_user_space_across_sleeps_and_other_threads() -> TestResult {
        use kernel::mm::aspace::{activate, copy_from_user, deactivate};
        const ADDRESS: u64 = 0x40_0000;
        /// Thread body: activates a space holding `value` at ADDRESS, sleeps, reads it back.
        fn reader(value: usize) {
            let Ok(space) = UserSpace::new() else { kernel::task::exit(-1) };
            let bytes = (value as u64).to_le_bytes();
            if space.lock().add_region_with_data(ADDRESS, PAGE_SIZE, MemoryAttributes::USER_DATA, &bytes).is_err() {
                kernel::task::exit(-1);
            }
            activate(&space);
            kernel::task::sleep_us(5_000);
            let read = copy_from_user(ADDRESS, 8).map(|bytes| u64::from_le_bytes(bytes.try_into().unwrap_or([0; 8])));
            deactivate();
            kernel::task::exit(i64::from(read == Ok(value as u64)));
        }
        // Both on this CPU: the second activates its space while the first sleeps.
        let cpu = kernel::arch::cpu::cpu_index();
        let first = check_ok!(kernel::task::Builder::new("reader-1").pin(cpu).spawn(reader, 0x1111));
        kernel::task::sleep_us(1_000);
        let second = check_ok!(kernel::task::Builder::new("reader-2").pin(cpu).spawn(reader, 0x2222));
        check_eq!(kernel::task::wait(first.id()), Some(1), "the first read its own space after sleeping");
        check_eq!(kernel::task::wait(second.id()), Some(1));
        check!(kernel::mm::aspace::active().is_none(), "this thread activated no space");
        Ok(())
    }

    fn user_regions_reject_bad_ranges() -> TestResult {
        use kernel::mm::aspace::SpaceError;
        let space = check_ok!(UserSpace::new());
        let mut space = space.lock();
        check_eq!(space.add_region(0x1001, PAGE_SIZE, MemoryAttributes::USER_DATA), Err(SpaceError::BadRange { start: 0x1001, len: PAGE_SIZE }));
        check_eq!(space.add_region(0x1000, 0, MemoryAttributes::USER_DATA), Err(SpaceError::BadRange { start: 0x1000, len: 0 }));
        check_eq!(space.add_region(0xffff_ffff_f000, 2 * PAGE_SIZE, MemoryAttributes::USER_DATA), Err(SpaceError::BadRange { start: 0xffff_ffff_f000, len: 2 * PAGE_SIZE }));
        check_eq!(space.add_region(0x1000, PAGE_SIZE, MemoryAttributes::KERNEL_DATA), Err(SpaceError::NotUserAccessible));
        check_ok!(space.add_region(0x1000, 4 * PAGE_SIZE, MemoryAttributes::USER_DATA));
        check_eq!(space.add_region(0x3000, 4 * PAGE_SIZE, MemoryAttributes::USER_DATA), Err(SpaceError::Overlap { start: 0x3000 }));
        check_eq!(space.remove_region(0x2000), Err(SpaceError::NoRegion { start: 0x2000 }));
        Ok(())
    }

    fn user_code_cannot_read_kernel_memory() -> TestResult {
        // ldr x0, [x1]; svc #0
        let program: [u32; 2] = [0xf940_0020, 0xd400_0001];
        let bytes: Vec<u8> = program.iter().flat_map(|word| word.to_le_bytes()).collect();
        let (code, stack) = (0x40_0000u64, 0x80_0000u64);
        let space = check_ok!(UserSpace::new());
        check_ok!(space.lock().add_region_with_data(code, PAGE_SIZE, MemoryAttributes::USER_CODE, &bytes));
        check_ok!(space.lock().add_region(stack, PAGE_SIZE, MemoryAttributes::USER_DATA));
        kernel::mm::aspace::activate(&space);
        // SAFETY: kernel-mode write to the user page, which the region covers.
        unsafe { core::ptr::write_volatile(stack as *mut u64, 0x1234_5678) };

        // Reading its own memory works and ends in the system call.
        let mut context = UserContext::new(code, stack + PAGE_SIZE, 0);
        context.frame.x[1] = stack;
        let own = run_user(&mut context);
        // Reading a kernel address faults at EL0.
        let secret = &READ_ONLY_VALUE as *const u64 as u64;
        let mut context_kernel = UserContext::new(code, stack + PAGE_SIZE, 0);
        context_kernel.frame.x[1] = secret;
        let kernel_read = run_user(&mut context_kernel);
        kernel::mm::aspace::deactivate();

        check_eq!(own, UserExit::SystemCall { imm: 0 });
        check_eq!(context.frame.x[0], 0x1234_5678, "the user load read its page");
        check_eq!(context.frame.elr, code + 8, "ELR points after the svc");
        match kernel_read {
            UserExit::Exception { esr, far } => {
                check_eq!(esr.class(), ExceptionClass::DataAbortLowerEl);
                check!(matches!(esr.fault_status(), Some(FaultStatus::Permission { .. }) | Some(FaultStatus::Translation { .. })), "{esr}");
                check_eq!(far, secret);
                check_eq!(context_kernel.frame.elr, code, "the faulting load is reported");
            }
            other => fail!("EL0 read kernel memory without a fault: {other:?}"),
        }
        Ok(())
    }

    fn access_flag_is_set_by_hardware_or_by_a_fault() -> TestResult {
        let space: SharedSpace = check_ok!(UserSpace::new());
        let base = 0x20_0000_0000u64;
        check_ok!(space.lock().add_region(base, PAGE_SIZE, MemoryAttributes::USER_DATA));
        kernel::mm::aspace::activate(&space);
        // SAFETY: inside the region.
        unsafe { core::ptr::write_volatile(base as *mut u64, 1) };
        let young = |space: &SharedSpace| space.lock().tables().translate(va(base)).map(|t| t.leaf.is_young());
        check_eq!(young(&space), Some(true), "a filled page starts young");
        check_eq!(space.lock().tables().test_and_clear_young(va(base)), Ok(true));
        check_eq!(young(&space), Some(false));
        let af_faults = FAULTS.access_flag.load(Ordering::Relaxed);
        // SAFETY: mapped above.
        let value = unsafe { core::ptr::read_volatile(base as *const u64) };
        let faulted = FAULTS.access_flag.load(Ordering::Relaxed) - af_faults;
        let now_young = young(&space);
        check_eq!(space.lock().tables().test_and_clear_young(va(base)), Ok(true), "the access made it young again");
        check_eq!(space.lock().tables().test_and_clear_young(va(base)), Ok(false), "and nothing since");
        kernel::mm::aspace::deactivate();
        check_eq!(value, 1);
        check_eq!(now_young, Some(true));
        match hardware_access_flags() {
            HardwareAccessFlags::None => check_eq!(faulted, 1, "cortex-a72 style: the access took an Access-flag fault"),
            _ => check_eq!(faulted, 0, "FEAT_HAFDBS: the hardware set the flag without a fault"),
        }
        Ok(())
    }

    fn dirty_state_is_tracked_by_hardware_or_by_a_fault() -> TestResult {
        let space: SharedSpace = check_ok!(UserSpace::new());
        let base = 0x30_0000_0000u64;
        check_ok!(space.lock().add_region(base, PAGE_SIZE, MemoryAttributes::USER_DATA));
        kernel::mm::aspace::activate(&space);
        // SAFETY: inside the region (a read fills a clean zero page).
        let _ = unsafe { core::ptr::read_volatile(base as *const u64) };
        let dirty = |space: &SharedSpace| space.lock().tables().translate(va(base)).map(|t| t.leaf.is_dirty());
        let clean_after_read = dirty(&space);
        let write_faults = FAULTS.write.load(Ordering::Relaxed);
        // SAFETY: mapped.
        unsafe { core::ptr::write_volatile(base as *mut u64, 7) };
        let faulted = FAULTS.write.load(Ordering::Relaxed) - write_faults;
        let dirty_after_write = dirty(&space);
        let cleaned = space.lock().tables().test_and_clear_dirty(va(base));
        let cleaned_again = space.lock().tables().test_and_clear_dirty(va(base));
        // SAFETY: mapped; the page is clean (write-protected or DBM) again.
        unsafe { core::ptr::write_volatile(base as *mut u64, 8) };
        let dirty_again = dirty(&space);
        // SAFETY: mapped.
        let value = unsafe { core::ptr::read_volatile(base as *const u64) };
        kernel::mm::aspace::deactivate();
        check_eq!(clean_after_read, Some(false));
        check_eq!(dirty_after_write, Some(true));
        check_eq!((cleaned, cleaned_again), (Ok(true), Ok(false)));
        check_eq!(dirty_again, Some(true));
        check_eq!(value, 8);
        match hardware_access_flags() {
            HardwareAccessFlags::AccessFlagAndDirty => check_eq!(faulted, 0, "DBM: no write fault"),
            _ => check_eq!(faulted, 1, "software dirty tracking: one write fault"),
        }
        Ok(())
    }

    fn heap_survives_random_sizes_and_alignments() -> TestResult {
        let start = heap::stats().used;
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut blocks: Vec<(*mut u8, core::alloc::Layout, u8)> = Vec::new();
        for round in 0..3000u32 {
            let size = 1 + (next() % if round % 100 == 0 { 300_000 } else { 3000 }) as usize;
            let align = 1usize << (next() % 13);
            let layout = check_ok!(core::alloc::Layout::from_size_align(size, align));
            // SAFETY: `layout` has a non-zero size.
            let ptr = unsafe { alloc::alloc::alloc(layout) };
            check!(!ptr.is_null(), "allocation of {size} bytes failed");
            check_eq!(ptr as usize % align, 0);
            let fill = (round % 251) as u8;
            // SAFETY: `ptr` points at `size` bytes we own.
            unsafe { core::ptr::write_bytes(ptr, fill, size) };
            blocks.push((ptr, layout, fill));
            if next() % 3 == 0 {
                let victim = (next() % blocks.len() as u64) as usize;
                let (ptr, layout, fill) = blocks.swap_remove(victim);
                // SAFETY: allocated above with `layout`, filled with `fill`.
                let intact = unsafe { core::slice::from_raw_parts(ptr, layout.size()) }.iter().all(|&b| b == fill);
                check!(intact, "a {}-byte block was overwritten", layout.size());
                // SAFETY: allocated above with `layout`.
                unsafe { alloc::alloc::dealloc(ptr, layout) };
            }
        }
        for (ptr, layout, fill) in blocks.drain(..) {
            // SAFETY: as above.
            let intact = unsafe { core::slice::from_raw_parts(ptr, layout.size()) }.iter().all(|&b| b == fill);
            check!(intact, "a {}-byte block was overwritten", layout.size());
            // SAFETY: as above.
            unsafe { alloc::alloc::dealloc(ptr, layout) };
        }
        drop(blocks);
        check_eq!(heap::stats().used, start, "every byte came back");
        Ok(())
    }
}
