//! Boot sequence of the kernel proper: from `kernel_entry` (called by the boot code at EL1 with
//! the MMU on) to the image's main function. Each step logs what it found.

use crate::arch::{cpu, exception, psci, recover};
use crate::drivers::gic::{self, InterruptController, IrqId, Trigger};
use crate::{console, irq, mm, time};
use devicetree::{Fdt, GicKind, MachineInfo, PsciMethod};
use spin::Once;

static MACHINE: Once<MachineInfo<'static>> = Once::new();
static DTB: Once<Fdt<'static>> = Once::new();

/// The machine description read from the devicetree at boot.
pub fn machine() -> &'static MachineInfo<'static> {
    MACHINE
        .get()
        .expect("the devicetree is parsed before anything asks for it")
}

/// The devicetree QEMU passed (for the `dtb` command).
pub fn dtb() -> &'static Fdt<'static> {
    DTB.get()
        .expect("the devicetree is parsed before anything asks for it")
}

unsafe extern "Rust" {
    /// The image's main function, defined with [`entry_point!`](crate::entry_point).
    fn kernel_main() -> !;
}

/// Defines the main function of a kernel image (the kernel binary, a test image):
/// `kernel::entry_point!(path::to::main)` where `main: fn() -> !`.
#[macro_export]
macro_rules! entry_point {
    ($main:path) => {
        #[unsafe(export_name = "kernel_main")]
        fn __kernel_main() -> ! {
            let main: fn() -> ! = $main;
            main()
        }
    };
}

/// Stops the boot with a clear message (used for problems the kernel cannot work around, such
/// as a missing or malformed devicetree).
fn boot_failure(args: core::fmt::Arguments<'_>) -> ! {
    crate::println!("\n*** boot failed: {args}");
    crate::power::exit(1)
}

/// Called by the boot code (boot/src/entry.s) on the boot CPU.
#[unsafe(no_mangle)]
extern "C" fn kernel_entry(dtb_pa: u64, entry_el: u64) -> ! {
    cpu::set_cpu_index(0);
    exception::init();
    time::init_clock();
    // SAFETY: the boot page tables map GiB 0, where the early UART lives, as device memory.
    unsafe { console::init_early() };
    console::init_logger();
    crate::println!(
        "\n{} {} booting",
        env!("CARGO_PKG_NAME"),
        env!("CARGO_PKG_VERSION")
    );
    log::info!(
        target: "cpu",
        "{} (midr={:#x}), entered at EL{entry_el}, running at EL{}",
        cpu::model_name(),
        cpu::midr(),
        cpu::current_el()
    );

    let fdt = read_devicetree(dtb_pa);
    let dtb_pa = mm::ptr_to_phys(fdt.as_bytes().as_ptr()).as_u64();
    let machine = match MachineInfo::from_fdt(&fdt) {
        Ok(machine) => MACHINE.call_once(|| machine),
        Err(err) => boot_failure(format_args!("devicetree at {dtb_pa:#x}: {err}")),
    };
    crate::cmdline::init(machine.bootargs.unwrap_or(""));
    crate::trace::configure_from_cmdline();
    log::info!(
        target: "dtb",
        "{dtb_pa:#x} ({} bytes), {} CPUs, {} virtio-mmio slots, bootargs {:?}",
        fdt.total_size(),
        machine.cpus.len(),
        machine.virtio_mmio.len(),
        crate::cmdline::raw()
    );

    if let Some(uart) = machine.uart {
        if uart.base >= mm::layout::GIB {
            boot_failure(format_args!(
                "the console UART at {:#x} is outside the MMIO the boot code maps",
                uart.base
            ));
        }
        let clock = uart
            .clock_hz
            .map_or(crate::drivers::pl011::DEFAULT_CLOCK_HZ, |hz| hz as u32);
        // SAFETY: GiB 0 (all of QEMU virt's MMIO) is mapped as device memory by the boot tables,
        // and the kernel's tables map the console UART from `mm::init` on.
        unsafe { console::init(linear(uart.base), clock) };
    }
    if let Some(psci) = machine.psci {
        psci::set_conduit_smc(psci.method == PsciMethod::Smc);
    }
    SECURE.store(entry_el == 3, core::sync::atomic::Ordering::Relaxed);

    mm::init(machine, dtb_pa, fdt.total_size() as u64);
    // Leave the boot stack (in .bss, no guard) for a kernel stack with a guard region; the boot
    // flow continues there as the first thread.
    let stack = match mm::stack::KernelStack::new(MAIN_THREAD) {
        Ok(stack) => stack,
        Err(err) => boot_failure(format_args!("no kernel stack: {err}")),
    };
    let top = stack.top().as_u64();
    *MAIN_STACK.lock() = Some(stack);
    // SAFETY: `top` is the top of a mapped stack nothing else uses; `continue_boot` never returns.
    unsafe { cpu::run_on_stack(top, continue_boot) }
}

/// Name of the thread that continues the boot and runs the image's main function.
const MAIN_THREAD: &str = "main";
/// Its stack, between allocating it and handing it to the scheduler.
static MAIN_STACK: crate::sync::IrqSpinLock<Option<mm::stack::KernelStack>> =
    crate::sync::IrqSpinLock::new(None);

/// Whether the kernel runs in the secure state (entered at EL3).
static SECURE: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// The rest of the boot, on the boot CPU's kernel stack.
fn continue_boot() -> ! {
    let Some(stack) = MAIN_STACK.lock().take() else {
        boot_failure(format_args!("the main thread's stack went missing"));
    };
    if let Err(err) = crate::task::init_boot_cpu(MAIN_THREAD, stack) {
        boot_failure(format_args!("scheduler: {err}"));
    }
    init_interrupts(
        machine(),
        SECURE.load(core::sync::atomic::Ordering::Relaxed),
    );
    crate::smp::start_secondaries();
    crate::drivers::virtio::init(machine());
    mm::swap::init();
    mm::vmscan::start_kswapd();
    // SAFETY: `kernel_main` is defined by the image through `entry_point!`.
    unsafe { kernel_main() }
}

/// The linear-map address of MMIO or RAM at `pa` (below 2^48 on any devicetree the kernel
/// accepted).
fn linear(pa: u64) -> usize {
    match mm::PhysAddr::new(pa) {
        Ok(pa) => mm::phys_to_virt(pa).as_u64() as usize,
        Err(err) => boot_failure(format_args!("{err}")),
    }
}

/// Finds, validates and parses the DTB, or stops with a clear message.
///
/// A Linux-style boot passes its address in x0. Firmware-style boots (QEMU with no `-kernel`,
/// entering at the highest exception level) pass nothing but leave the DTB at the start of RAM,
/// which on QEMU virt is the start of the GiB holding the kernel image: look there when x0 is 0.
fn read_devicetree(dtb_pa: u64) -> Fdt<'static> {
    let dtb_pa = if dtb_pa != 0 {
        dtb_pa
    } else {
        let ram_start = mm::kernel_image().start & !((1 << 30) - 1);
        // SAFETY: the boot tables map the GiB holding the image; reading its first word is harmless.
        let magic = unsafe { core::ptr::read_volatile(linear(ram_start) as *const u32) };
        if u32::from_be(magic) != devicetree::FDT_MAGIC {
            boot_failure(format_args!(
                "no devicetree: x0 = 0 and none at the start of RAM ({ram_start:#x}). QEMU passes one to a raw Image with the arm64 header; boot the Image, not the ELF"
            ));
        }
        log::info!(target: "dtb", "x0 = 0; using the devicetree at the start of RAM ({ram_start:#x})");
        ram_start
    };
    let gib = dtb_pa >> 30;
    if gib == 0 || gib >= 512 {
        boot_failure(format_args!(
            "the devicetree at {dtb_pa:#x} is outside RAM the boot code maps"
        ));
    }
    let va = linear(dtb_pa);
    // A DTB pointer into a hole of the physical address space faults on the first read: report
    // that instead of taking the fault.
    // SAFETY: the boot tables map the DTB's GiB; `from_ptr` reads the header before anything else
    // and checks every offset against the size the header gives.
    match recover::catch(|| unsafe { Fdt::from_ptr(va as *const u8) }) {
        Ok(Ok(fdt)) => *DTB.call_once(|| fdt),
        Ok(Err(err)) => boot_failure(format_args!("malformed devicetree at {dtb_pa:#x}: {err}")),
        Err(fault) => boot_failure(format_args!(
            "cannot read the devicetree at {dtb_pa:#x}: {fault:?}"
        )),
    }
}

static GICV2: Once<gic::v2::GicV2> = Once::new();
static GICV3: Once<gic::v3::GicV3> = Once::new();

/// Interrupt controller, timer tick and console input interrupt. `secure`: the kernel runs in
/// Secure EL1 (entered at EL3).
fn init_interrupts(machine: &MachineInfo<'static>, secure: bool) {
    let distributor = linear(machine.gic.distributor.base);
    let controller: &'static dyn InterruptController = match &machine.gic.kind {
        GicKind::V2 { cpu_interface } => {
            // SAFETY: the GIC's registers lie in the device region mapped at its linear address.
            let gic = GICV2.call_once(|| unsafe {
                gic::v2::GicV2::new(distributor, linear(cpu_interface.base))
            });
            gic.init_distributor();
            gic
        }
        GicKind::V3 { redistributors } => {
            let Some(region) = redistributors.first() else {
                boot_failure(format_args!("GICv3 without a redistributor region"));
            };
            // SAFETY: as above.
            let gic = GICV3.call_once(|| unsafe {
                gic::v3::GicV3::new(
                    distributor,
                    linear(region.base),
                    region.size as usize,
                    secure,
                )
            });
            gic.init_distributor();
            gic
        }
    };
    controller.init_cpu();
    irq::set_controller(controller);
    log::info!(target: "irq", "GICv{} at {:#x}, {} interrupt IDs", controller.version(), machine.gic.distributor.base, controller.num_irqs());

    let Some(timer) = machine.timer else {
        boot_failure(format_args!("the devicetree has no arm,armv8-timer node"));
    };
    if let Err(err) = start_local_timer(timer.virt) {
        boot_failure(format_args!("timer interrupt: {err}"));
    }
    log::info!(target: "time", "virtual timer on INTID {}, {} Hz counter, {} Hz tick", timer.virt, time::frequency(), time::TICK_HZ);

    if let Some(uart_irq) = machine.uart.and_then(|uart| uart.irq) {
        match irq::register(
            IrqId(uart_irq.intid()),
            irq::trigger_of(&uart_irq),
            "uart",
            |_| console::handle_irq(),
        ) {
            Ok(()) => console::enable_rx_interrupt(),
            Err(err) => log::warn!("console input stays polled: {err}"),
        }
    }
    cpu::enable_interrupts();
}

/// This CPU's timer interrupt (a per-CPU PPI) and tick.
fn start_local_timer(intid: u32) -> Result<(), irq::IrqError> {
    irq::register_banked(IrqId(intid), Trigger::Level, "timer", |_| {
        time::handle_irq()
    })?;
    time::start_tick();
    Ok(())
}

/// Interrupt set-up of a secondary CPU: its GIC CPU interface (and redistributor) and timer.
pub fn init_secondary_interrupts() {
    if let Some(gic) = irq::controller() {
        gic.init_cpu();
    }
    if let Some(timer) = machine().timer
        && let Err(err) = start_local_timer(timer.virt)
    {
        log::error!(target: "smp", "cpu{}: timer interrupt: {err}", cpu::cpu_index());
    }
}
