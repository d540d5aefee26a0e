//! Interrupt dispatch: one handler per interrupt ID, called with the interrupt acknowledged and
//! ended around it. Counts every interrupt for the `irq` shell command.

use crate::drivers::gic::{DEFAULT_PRIORITY, InterruptController, IrqId, Trigger};
use core::fmt;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use spin::Once;

/// An interrupt handler (runs with interrupts masked).
pub type Handler = fn(IrqId);

static CONTROLLER: Once<&'static dyn InterruptController> = Once::new();
/// Handler of each interrupt ID as a `fn` address (0 = none).
static HANDLERS: [AtomicUsize; IrqId::LIMIT as usize] =
    [const { AtomicUsize::new(0) }; IrqId::LIMIT as usize];
/// Names for the `irq` listing.
static NAMES: crate::sync::IrqSpinLock<[Option<&'static str>; IrqId::LIMIT as usize]> =
    crate::sync::IrqSpinLock::new([None; IrqId::LIMIT as usize]);
static COUNTS: [AtomicU64; IrqId::LIMIT as usize] =
    [const { AtomicU64::new(0) }; IrqId::LIMIT as usize];
static SPURIOUS: AtomicU64 = AtomicU64::new(0);
/// Set by interrupt handlers that want the CPU back from user code (the scheduler tick).
static PREEMPT: [core::sync::atomic::AtomicBool; crate::arch::cpu::MAX_CPUS] =
    [const { core::sync::atomic::AtomicBool::new(false) }; crate::arch::cpu::MAX_CPUS];
static UNHANDLED: AtomicU64 = AtomicU64::new(0);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrqError {
    NoController,
    OutOfRange(IrqId),
    AlreadyRegistered(IrqId),
}

impl fmt::Display for IrqError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoController => f.write_str("no interrupt controller"),
            Self::OutOfRange(irq) => write!(
                f,
                "interrupt {} is beyond what the controller implements",
                irq.0
            ),
            Self::AlreadyRegistered(irq) => write!(f, "interrupt {} already has a handler", irq.0),
        }
    }
}

/// Installs the interrupt controller (once, at boot).
pub fn set_controller(controller: &'static dyn InterruptController) {
    CONTROLLER.call_once(|| controller);
}

pub fn controller() -> Option<&'static dyn InterruptController> {
    CONTROLLER.get().copied()
}

/// Routes `irq` to `handler` and enables it at the controller (for the calling CPU).
pub fn register(
    irq: IrqId,
    trigger: Trigger,
    name: &'static str,
    handler: Handler,
) -> Result<(), IrqError> {
    let gic = controller().ok_or(IrqError::NoController)?;
    if irq.0 >= gic.num_irqs() {
        return Err(IrqError::OutOfRange(irq));
    }
    HANDLERS[irq.0 as usize]
        .compare_exchange(0, handler as usize, Ordering::AcqRel, Ordering::Acquire)
        .map_err(|_| IrqError::AlreadyRegistered(irq))?;
    NAMES.lock()[irq.0 as usize] = Some(name);
    log::debug!(target: "irq", "INTID {} ({name}, {trigger:?}) registered", irq.0);
    gic.enable(irq, trigger, DEFAULT_PRIORITY);
    Ok(())
}

/// Routes a banked interrupt (SGI or PPI: one copy per CPU) to `handler` and enables it on the
/// calling CPU. Every CPU calls this for itself; they must all pass the same handler.
pub fn register_banked(
    irq: IrqId,
    trigger: Trigger,
    name: &'static str,
    handler: Handler,
) -> Result<(), IrqError> {
    let gic = controller().ok_or(IrqError::NoController)?;
    if !irq.is_private() {
        return Err(IrqError::OutOfRange(irq));
    }
    match HANDLERS[irq.0 as usize].compare_exchange(
        0,
        handler as usize,
        Ordering::AcqRel,
        Ordering::Acquire,
    ) {
        Ok(_) => {
            NAMES.lock()[irq.0 as usize] = Some(name);
            log::debug!(target: "irq", "INTID {} ({name}, {trigger:?}, per CPU) registered", irq.0);
        }
        Err(existing) if existing == handler as usize => {}
        Err(_) => return Err(IrqError::AlreadyRegistered(irq)),
    }
    gic.enable(irq, trigger, DEFAULT_PRIORITY);
    Ok(())
}

/// The trigger mode a devicetree interrupt specifier gives.
pub fn trigger_of(spec: &devicetree::IrqSpec) -> Trigger {
    match spec.trigger {
        devicetree::Trigger::Edge => Trigger::Edge,
        devicetree::Trigger::Level => Trigger::Level,
    }
}

/// Disables `irq` and removes its handler.
pub fn unregister(irq: IrqId) {
    if let Some(gic) = controller() {
        gic.disable(irq);
    }
    if let Some(slot) = HANDLERS.get(irq.0 as usize) {
        slot.store(0, Ordering::Release);
        NAMES.lock()[irq.0 as usize] = None;
        log::debug!(target: "irq", "INTID {} unregistered", irq.0);
    }
}

/// Enables a banked (per-CPU) interrupt that already has a handler on the calling CPU.
pub fn enable_on_this_cpu(irq: IrqId, trigger: Trigger) {
    if let Some(gic) = controller() {
        gic.enable(irq, trigger, DEFAULT_PRIORITY);
    }
}

/// Called from the exception vector for IRQs: handles everything pending.
pub fn handle_irq() {
    let Some(gic) = controller() else { return };
    let mut handled = false;
    while let Some(ack) = gic.acknowledge() {
        handled = true;
        let id = ack.irq.0 as usize;
        COUNTS[id].fetch_add(1, Ordering::Relaxed);
        let handler = HANDLERS[id].load(Ordering::Acquire);
        log::trace!(target: "irq", "INTID {id} on cpu{}{}", crate::arch::cpu::cpu_index(), if handler == 0 { " (no handler: disabled)" } else { "" });
        if handler == 0 {
            UNHANDLED.fetch_add(1, Ordering::Relaxed);
            gic.disable(ack.irq);
        } else {
            // SAFETY: HANDLERS only ever holds addresses of `Handler` functions (see `register`).
            let handler: Handler = unsafe { core::mem::transmute::<usize, Handler>(handler) };
            handler(ack.irq);
        }
        gic.end_of_interrupt(ack);
    }
    if !handled {
        SPURIOUS.fetch_add(1, Ordering::Relaxed);
    }
}

/// Asks that user code interrupted on this CPU return to the kernel after the interrupt.
pub fn request_preempt() {
    PREEMPT[crate::arch::cpu::cpu_index()].store(true, Ordering::Relaxed);
}

/// Takes (and clears) this CPU's preemption request.
pub fn take_preempt_request() -> bool {
    PREEMPT[crate::arch::cpu::cpu_index()].swap(false, Ordering::Relaxed)
}

/// Times interrupt `irq` has been taken.
pub fn count(irq: IrqId) -> u64 {
    COUNTS
        .get(irq.0 as usize)
        .map_or(0, |c| c.load(Ordering::Relaxed))
}

/// Writes `key=value` statistics and one line per interrupt that has a handler or was taken.
pub fn write_stats(out: &mut dyn fmt::Write) -> fmt::Result {
    match controller() {
        Some(gic) => writeln!(
            out,
            "gic_version={}\nnum_irqs={}",
            gic.version(),
            gic.num_irqs()
        )?,
        None => writeln!(out, "gic_version=none")?,
    }
    writeln!(
        out,
        "spurious={}\nunhandled={}",
        SPURIOUS.load(Ordering::Relaxed),
        UNHANDLED.load(Ordering::Relaxed)
    )?;
    let names = NAMES.lock();
    for (id, name) in names.iter().enumerate() {
        let count = COUNTS[id].load(Ordering::Relaxed);
        if name.is_some() || count > 0 {
            writeln!(out, "irq{id}={count} {}", name.unwrap_or("(no handler)"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::cpu;
    use crate::ktest::prelude::*;

    /// Waits (interrupts on) until `done` holds, for at most 100 ms of guest time.
    fn wait_until(done: impl Fn() -> bool) -> bool {
        let end = cpu::counter() + crate::time::us_to_ticks(100_000);
        while !done() && cpu::counter() < end {
            core::hint::spin_loop();
        }
        done()
    }

    ktest! {
        fn software_pended_spi_reaches_its_handler() -> TestResult {
            static SEEN: AtomicU64 = AtomicU64::new(0);
            let irq = IrqId(64);
            check_ok!(register(irq, Trigger::Edge, "test-spi", |irq| { SEEN.store(u64::from(irq.0), Ordering::SeqCst); }));
            let before = count(irq);
            check_ok!(controller().ok_or("no controller")).set_pending(irq);
            let delivered = wait_until(|| SEEN.load(Ordering::SeqCst) == 64);
            unregister(irq);
            check!(delivered, "the handler did not run");
            check_eq!(count(irq), before + 1);
            Ok(())
        }

        fn sgi_to_this_cpu_is_delivered() -> TestResult {
            static SEEN: AtomicU64 = AtomicU64::new(0);
            let sgi = IrqId(3);
            check_ok!(register(sgi, Trigger::Edge, "test-sgi", |_| { SEEN.fetch_add(1, Ordering::SeqCst); }));
            let gic = check_ok!(controller().ok_or("no controller"));
            gic.send_sgi(3, 1 << cpu::cpu_index());
            let delivered = wait_until(|| SEEN.load(Ordering::SeqCst) == 1);
            unregister(sgi);
            check!(delivered, "SGI 3 was not delivered");
            Ok(())
        }

        fn registration_errors_are_reported() -> TestResult {
            let gic = check_ok!(controller().ok_or("no controller"));
            let beyond = IrqId(gic.num_irqs());
            check_eq!(register(beyond, Trigger::Level, "x", |_| {}), Err(IrqError::OutOfRange(beyond)));
            check_ok!(register(IrqId(70), Trigger::Level, "first", |_| {}));
            let again = register(IrqId(70), Trigger::Level, "second", |_| {});
            unregister(IrqId(70));
            check_eq!(again, Err(IrqError::AlreadyRegistered(IrqId(70))));
            check!(alloc::format!("{}", IrqError::OutOfRange(beyond)).contains("beyond"));
            Ok(())
        }

        fn stats_list_registered_interrupts() -> TestResult {
            let mut text = alloc::string::String::new();
            check_ok!(write_stats(&mut text));
            check!(text.contains("gic_version="), "{text}");
            check!(text.contains(" timer"), "the timer interrupt is listed: {text}");
            Ok(())
        }
    }
}
