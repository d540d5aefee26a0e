//! Inter-process communication in the L4/seL4 style: synchronous rendezvous on endpoints, with a
//! small register payload ([`abi::Message`]) and, for bulk data, pages lent to the receiver for
//! the duration of a call. Tasks reach endpoints only through capabilities in their capability
//! table.
//!
//! - `send` blocks until a receiver takes the message;
//! - `receive` blocks until a sender arrives;
//! - `call` sends and blocks until the receiver replies;
//! - `reply` answers the call a task received last (its one-time reply right).

use crate::drivers::virtio::UserDevice;
use crate::mm::PhysFrame;
use crate::mm::aspace::SharedSpace;
use crate::sync::IrqSpinLock;
use crate::task::{ThreadId, WaitQueue};
use abi::{Error, Message};
use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

/// Pages lent with a call: the caller's frames, mapped into the receiver while it handles it.
/// The frames are pinned (reclaim leaves them alone) and the lender's address space, which
/// owns them, is kept alive until the grant is dropped, even if the lender dies first.
pub struct Grant {
    frames: Vec<PhysFrame>,
    _lender: SharedSpace,
}

impl Grant {
    /// Lends `frames` of `lender`; the caller has pinned them.
    pub fn new(frames: Vec<PhysFrame>, lender: SharedSpace) -> Self {
        Self {
            frames,
            _lender: lender,
        }
    }

    pub fn frames(&self) -> &[PhysFrame] {
        &self.frames
    }

    /// Adds a pinned frame.
    pub fn push(&mut self, frame: PhysFrame) {
        self.frames.push(frame);
    }
}

impl Drop for Grant {
    fn drop(&mut self) {
        for frame in &self.frames {
            crate::mm::vmscan::set_pinned(*frame, false);
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// Waiting for a receiver.
    Queued,
    /// A receiver took it (a plain send is done now).
    Delivered,
    /// The receiver replied (calls).
    Replied(Message),
    /// The other side went away, or the sender gave up.
    Failed(Error),
}

/// One message on its way from a sender to a receiver (and, for a call, back).
pub struct Transfer {
    pub sender: ThreadId,
    pub message: Message,
    /// A call expects a reply.
    pub is_call: bool,
    pub grant: IrqSpinLock<Option<Grant>>,
    stage: IrqSpinLock<Stage>,
    done: WaitQueue,
}

impl Transfer {
    fn settle(&self, stage: Stage) {
        *self.stage.lock() = stage;
        self.done.wake_all();
    }
}

/// The right to reply to one call. Dropping it unanswered fails the call with `PeerGone`.
pub struct ReplyRight(Option<Arc<Transfer>>);

impl ReplyRight {
    /// The pages lent with the call, if any (taken: the receiver maps them).
    pub fn take_grant(&self) -> Option<Grant> {
        self.0
            .as_ref()
            .and_then(|transfer| transfer.grant.lock().take())
    }

    pub fn reply(mut self, message: Message) {
        if let Some(transfer) = self.0.take() {
            transfer.settle(Stage::Replied(message));
        }
    }
}

impl Drop for ReplyRight {
    fn drop(&mut self) {
        if let Some(transfer) = self.0.take() {
            transfer.settle(Stage::Failed(Error::PeerGone));
        }
    }
}

pub struct Endpoint {
    id: u64,
    pending: IrqSpinLock<VecDeque<Arc<Transfer>>>,
    receivers: WaitQueue,
}

static NEXT_ENDPOINT: AtomicU64 = AtomicU64::new(1);

impl Endpoint {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            id: NEXT_ENDPOINT.fetch_add(1, Ordering::Relaxed),
            pending: IrqSpinLock::new(VecDeque::new()),
            receivers: WaitQueue::new(),
        })
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// Queues a transfer and waits until it reaches `until` (delivered for sends, replied for
    /// calls), or `cancelled()` says to give up.
    fn transmit(
        &self,
        transfer: Arc<Transfer>,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Stage, Error> {
        self.pending.lock().push_back(transfer.clone());
        self.receivers.wake_one();
        let finished = |stage: Stage| match stage {
            Stage::Queued => false,
            Stage::Delivered => !transfer.is_call,
            Stage::Replied(_) | Stage::Failed(_) => true,
        };
        transfer
            .done
            .wait_until(|| finished(*transfer.stage.lock()) || cancelled());
        let stage = *transfer.stage.lock();
        if !finished(stage) {
            // Cancelled: withdraw it if no receiver took it yet; a receiver holding a call's
            // reply right gets `PeerGone`-like silence (its reply goes nowhere).
            self.pending
                .lock()
                .retain(|queued| !Arc::ptr_eq(queued, &transfer));
            *transfer.stage.lock() = Stage::Failed(Error::PeerGone);
            return Err(Error::PeerGone);
        }
        Ok(stage)
    }

    /// Sends `message`, returning once a receiver has taken it.
    pub fn send(
        &self,
        sender: ThreadId,
        message: Message,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<(), Error> {
        let transfer = Arc::new(Transfer {
            sender,
            message,
            is_call: false,
            grant: IrqSpinLock::new(None),
            stage: IrqSpinLock::new(Stage::Queued),
            done: WaitQueue::new(),
        });
        match self.transmit(transfer, cancelled)? {
            Stage::Failed(error) => Err(error),
            _ => Ok(()),
        }
    }

    /// Sends `message` (and lends `grant`) and waits for the reply.
    pub fn call(
        &self,
        sender: ThreadId,
        message: Message,
        grant: Option<Grant>,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Message, Error> {
        let transfer = Arc::new(Transfer {
            sender,
            message,
            is_call: true,
            grant: IrqSpinLock::new(grant),
            stage: IrqSpinLock::new(Stage::Queued),
            done: WaitQueue::new(),
        });
        match self.transmit(transfer, cancelled)? {
            Stage::Replied(reply) => Ok(reply),
            Stage::Failed(error) => Err(error),
            Stage::Queued | Stage::Delivered => Err(Error::PeerGone),
        }
    }

    /// Waits for a sender; returns its id, its message and, for a call, the right to reply.
    pub fn receive(
        &self,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<(ThreadId, Message, Option<ReplyRight>), Error> {
        let mut taken = None;
        self.receivers.wait_until(|| {
            taken = self.pending.lock().pop_front();
            taken.is_some() || cancelled()
        });
        let transfer = taken.ok_or(Error::PeerGone)?;
        let (sender, message) = (transfer.sender, transfer.message);
        if transfer.is_call {
            *transfer.stage.lock() = Stage::Delivered;
            Ok((sender, message, Some(ReplyRight(Some(transfer)))))
        } else {
            transfer.settle(Stage::Delivered);
            Ok((sender, message, None))
        }
    }

    /// Senders waiting.
    pub fn queued(&self) -> usize {
        self.pending.lock().len()
    }
}

/// What a capability refers to.
#[derive(Clone)]
pub enum Capability {
    Endpoint(Arc<Endpoint>),
    /// A device left to a user-mode driver: its registers, DMA memory and interrupt.
    Device(&'static UserDevice),
}

/// Capability slots of one task.
pub const CAPABILITY_SLOTS: usize = 64;

/// A task's capabilities, by slot.
pub struct CapabilityTable {
    slots: [Option<Capability>; CAPABILITY_SLOTS],
}

impl Default for CapabilityTable {
    fn default() -> Self {
        Self::new()
    }
}

impl CapabilityTable {
    pub const fn new() -> Self {
        Self {
            slots: [const { None }; CAPABILITY_SLOTS],
        }
    }

    pub fn get(&self, slot: u64) -> Result<&Capability, Error> {
        usize::try_from(slot)
            .ok()
            .and_then(|slot| self.slots.get(slot))
            .and_then(Option::as_ref)
            .ok_or(Error::NoCapability)
    }

    pub fn endpoint(&self, slot: u64) -> Result<Arc<Endpoint>, Error> {
        match self.get(slot)? {
            Capability::Endpoint(endpoint) => Ok(endpoint.clone()),
            Capability::Device(_) => Err(Error::NoCapability),
        }
    }

    pub fn device(&self, slot: u64) -> Result<&'static UserDevice, Error> {
        match self.get(slot)? {
            Capability::Device(device) => Ok(device),
            Capability::Endpoint(_) => Err(Error::NoCapability),
        }
    }

    /// Puts `capability` in the first free slot.
    pub fn insert(&mut self, capability: Capability) -> Result<u64, Error> {
        let slot = self
            .slots
            .iter()
            .position(Option::is_none)
            .ok_or(Error::Exhausted)?;
        self.slots[slot] = Some(capability);
        Ok(slot as u64)
    }

    /// Puts `capability` in slot `slot` (replacing what was there).
    pub fn set(&mut self, slot: usize, capability: Capability) -> Result<(), Error> {
        *self.slots.get_mut(slot).ok_or(Error::InvalidArgument)? = Some(capability);
        Ok(())
    }

    pub fn remove(&mut self, slot: u64) -> Result<(), Error> {
        let entry = usize::try_from(slot)
            .ok()
            .and_then(|slot| self.slots.get_mut(slot))
            .ok_or(Error::NoCapability)?;
        entry.take().map(drop).ok_or(Error::NoCapability)
    }
}
