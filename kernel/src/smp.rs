//! Bringing up the secondary CPUs: each is started with PSCI CPU_ON at `boot::secondary_entry`
//! with a start block holding the boot CPU's MMU configuration, its stack and its index; it then
//! initialises its exception vectors, GIC CPU interface and timer, and runs the scheduler.

use crate::arch::cpu::{self, MAX_CPUS};
use crate::arch::{exception, psci};
use crate::mm::{self, stack::KernelStack};
use crate::sync::IrqSpinLock;
use aarch64_cpu::registers::{MAIR_EL1, Readable, SCTLR_EL1, TCR_EL1, TTBR1_EL1};
use core::fmt;
use core::sync::atomic::{AtomicBool, Ordering};

/// What `secondary_entry` reads (layout shared with boot/src/entry.s).
#[repr(C)]
struct StartBlock {
    mair: u64,
    tcr: u64,
    ttbr0: u64,
    ttbr1: u64,
    sctlr: u64,
    stack_top: u64,
    cpu: u64,
    entry: u64,
}

/// One start block per CPU. Only the boot CPU writes them, one at a time, before starting that
/// CPU; the started CPU only reads its own.
struct StartBlocks(core::cell::UnsafeCell<[StartBlock; MAX_CPUS]>);

// SAFETY: see the type's comment: writes are serialised by the boot CPU starting CPUs one by one.
unsafe impl Sync for StartBlocks {}

static START_BLOCKS: StartBlocks = StartBlocks(core::cell::UnsafeCell::new(
    [const {
        StartBlock {
            mair: 0,
            tcr: 0,
            ttbr0: 0,
            ttbr1: 0,
            sctlr: 0,
            stack_top: 0,
            cpu: 0,
            entry: 0,
        }
    }; MAX_CPUS],
));
/// Each secondary's stack, until it takes it over.
static STACKS: [IrqSpinLock<Option<KernelStack>>; MAX_CPUS] =
    [const { IrqSpinLock::new(None) }; MAX_CPUS];
static STARTED: [AtomicBool; MAX_CPUS] = [const { AtomicBool::new(false) }; MAX_CPUS];

/// How long a started CPU may take to report in (guest microseconds).
const START_TIMEOUT_US: u64 = 500_000;

#[derive(Debug)]
pub enum StartError {
    Stack(mm::stack::StackError),
    /// PSCI refused (its error code).
    Psci(i64),
    /// The CPU was started but never reported in.
    Timeout,
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stack(err) => write!(f, "{err}"),
            Self::Psci(code) => {
                let name = match code {
                    -1 => "NOT_SUPPORTED (no PSCI firmware answers in this security state)",
                    -2 => "INVALID_PARAMETERS",
                    -3 => "DENIED",
                    -4 => "ALREADY_ON",
                    -5 => "ON_PENDING",
                    -6 => "INTERNAL_FAILURE",
                    -9 => "INVALID_ADDRESS",
                    _ => "unknown error",
                };
                write!(f, "PSCI CPU_ON failed with {code}: {name}")
            }
            Self::Timeout => write!(
                f,
                "it did not come up within {} ms",
                START_TIMEOUT_US / 1000
            ),
        }
    }
}

/// Starts every CPU the devicetree lists (up to [`MAX_CPUS`]); returns how many run.
pub fn start_secondaries() -> usize {
    let machine = crate::init::machine();
    let me = cpu::mpidr_affinity();
    let mut index = 1;
    for info in machine.cpus.iter().filter(|info| info.mpidr != me) {
        if index >= MAX_CPUS {
            log::warn!(target: "smp", "ignoring CPUs beyond {MAX_CPUS}");
            break;
        }
        match start(index, info.mpidr) {
            Ok(()) => index += 1,
            Err(err) => log::error!(target: "smp", "CPU with MPIDR {:#x}: {err}", info.mpidr),
        }
    }
    if index > 1 {
        log::info!(target: "smp", "{index} CPUs online");
    }
    index
}

fn start(index: usize, mpidr: u64) -> Result<(), StartError> {
    let stack = KernelStack::new(&alloc::format!("idle cpu{index}")).map_err(StartError::Stack)?;
    let block = StartBlock {
        mair: MAIR_EL1.get(),
        tcr: TCR_EL1.get(),
        ttbr0: mm::virt_to_phys(
            mm::VirtAddr::new(boot::identity_map_root()).expect("kernel address"),
        )
        .as_u64(),
        ttbr1: TTBR1_EL1.get(),
        // Without WXN: the boot identity map the CPU starts from is writable and executable.
        sctlr: SCTLR_EL1.get() & !(1 << 19),
        stack_top: stack.top().as_u64(),
        cpu: index as u64,
        entry: secondary_main as *const () as u64,
    };
    *STACKS[index].lock() = Some(stack);
    // Only the boot CPU writes start blocks, one CPU at a time, before starting it; the started
    // CPU only reads its own block.
    let slot = START_BLOCKS
        .0
        .get()
        .cast::<StartBlock>()
        .wrapping_add(index);
    // SAFETY: as above: nobody else accesses this slot now.
    unsafe { slot.write(block) };
    let block_pa = mm::ptr_to_phys(slot).as_u64();
    // The started CPU reads the block with its MMU (and caches) off: clean it to the point of
    // coherency.
    let block_va = mm::phys_to_virt(mm::PhysAddr::new(block_pa).expect("RAM address")).as_u64();
    for line in (block_va..block_va + core::mem::size_of::<StartBlock>() as u64).step_by(16) {
        // SAFETY: cache maintenance by VA on memory we own; no data changes.
        unsafe { core::arch::asm!("dc cvac, {}", in(reg) line, options(nostack, preserves_flags)) };
    }
    aarch64_cpu::asm::barrier::dsb(aarch64_cpu::asm::barrier::SY);
    let entry_pa = boot::secondary_entry_address() - boot::KERNEL_VIRT_OFFSET;
    psci::cpu_on(mpidr, entry_pa, block_pa).map_err(StartError::Psci)?;
    let deadline = cpu::counter() + crate::time::us_to_ticks(START_TIMEOUT_US);
    while !STARTED[index].load(Ordering::Acquire) {
        if cpu::counter() > deadline {
            return Err(StartError::Timeout);
        }
        core::hint::spin_loop();
    }
    Ok(())
}

/// First Rust code of a secondary CPU (MMU on, on its stack, interrupts masked).
extern "C" fn secondary_main(index: usize) -> ! {
    exception::init();
    crate::arch::mmu::set_user_tables(mm::kernel_space::empty_user_ttbr());
    crate::arch::mmu::enable_features();
    let Some(stack) = STACKS[index].lock().take() else {
        panic!("cpu{index} started without its stack");
    };
    crate::init::init_secondary_interrupts();
    STARTED[index].store(true, Ordering::Release);
    crate::task::run_secondary_cpu(stack)
}
