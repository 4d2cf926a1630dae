//! Event channels and the virtual interrupt flag (SPEC.md §17–§18): the shared-info page's
//! event fields, `irq_disable`/`irq_enable`, typed [`Port`]s, per-port handlers and the
//! upcall entry that dispatches them.
//!
//! The upcall mask in `vcpu_info[0]` *is* the virtual interrupt flag: 1 = events off. A
//! domain starts with it set; [`init`] registers the upcall entry and [`irq_enable`]
//! turns delivery on. The hypervisor delivers an upcall on a return to the guest when
//! `upcall_pending != 0`, the mask is 0 and a callback is registered: it bounces an
//! [`ExceptionFrame`](hypercall_abi::trap::ExceptionFrame) with vector [`EVENT_VECTOR`] to the entry and sets the mask, so the
//! handlers below run with events off; `iret` restores the mask from the frame's IF.
//!
//! ```ignore
//! use guest_rt::events::{self, Port};
//! events::init()?;
//! let port = Port::bind_ipi()?;
//! events::set_handler(port, |port| guest_rt::println!("event on {port:?}"));
//! events::irq_enable();
//! port.send()?; // the handler runs on the hypercall's return
//! ```
//!
//! Critical sections: data a handler touches may only be changed with events off
//! ([`irq_save`], [`IrqGuard`]); handlers are plain `fn`s and share state through statics.

use core::ptr::null_mut;
use core::sync::atomic::{compiler_fence, AtomicPtr, AtomicU64, AtomicU8, Ordering};

use hypercall_abi::event::{event_cmd, split_status, DOMAIN_SELF, EVENT_VECTOR, PORTS_MAX};
use hypercall_abi::shared_info::{SharedInfo, VcpuInfo, EVENT_PORTS};
use hypercall_abi::Errno;

use crate::hypercall::{HypercallInterface, Hypercalls, HYPERVISOR};
use crate::entry::try_start_info;
use crate::frame::{entry_stub, ShowFrame, TrapContext};

/// `remote_domain` of [`Port::alloc_unbound`] meaning this domain.
pub const SELF: u64 = DOMAIN_SELF;

/// Code passed to `crash` when the event entry is reached with another vector.
pub const WRONG_VECTOR_CRASH_CODE: u32 = 4;

// ---------------------------------------------------------------------------------------
// The shared-info page.

/// This domain's shared-info page. Every access is atomic: the hypervisor writes the page
/// between any two guest instructions (on hypercalls, preemption and wake-ups), so no Rust
/// reference to its fields may exist.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SharedInfoPage {
    base: *mut SharedInfo,
}

// SAFETY: the wrapper only hands out atomic views of the page, which any context may use.
unsafe impl Send for SharedInfoPage {}
// SAFETY: as for Send.
unsafe impl Sync for SharedInfoPage {}

const PENDING_OFFSET: usize = core::mem::offset_of!(SharedInfo, evtchn_pending);
const MASK_OFFSET: usize = core::mem::offset_of!(SharedInfo, evtchn_mask);
const UPCALL_PENDING_OFFSET: usize = core::mem::offset_of!(VcpuInfo, upcall_pending);
const UPCALL_MASK_OFFSET: usize = core::mem::offset_of!(VcpuInfo, upcall_mask);
const SELECTOR_OFFSET: usize = core::mem::offset_of!(VcpuInfo, pending_selector);

impl SharedInfoPage {
    /// A view of the page at `address`.
    ///
    /// # Safety
    ///
    /// `address` must be a 4096-byte shared-info page (the hypervisor's, or a test's) that
    /// stays mapped read-write for as long as the view is used, and that nothing accesses
    /// non-atomically meanwhile.
    pub const unsafe fn from_address(address: u64) -> Self {
        Self { base: address as *mut SharedInfo }
    }

    /// The page's address.
    pub fn address(&self) -> u64 {
        self.base as u64
    }

    fn byte(&self, offset: usize) -> &AtomicU8 {
        // SAFETY: `offset` is inside the page (callers pass field offsets), the page is
        // valid for the view's lifetime (from_address), and only atomics access it.
        unsafe { AtomicU8::from_ptr(self.base.cast::<u8>().add(offset)) }
    }

    fn word(&self, offset: usize) -> &AtomicU64 {
        debug_assert!(offset & 7 == 0 && offset + 8 <= 4096);
        // SAFETY: as in `byte`; every u64 field of the page is 8-byte aligned (the page is
        // page aligned and the ABI asserts the offsets).
        unsafe { AtomicU64::from_ptr(self.base.cast::<u8>().add(offset).cast::<u64>()) }
    }

    /// `vcpu_info[0].upcall_pending`.
    pub fn upcall_pending(&self) -> u8 {
        self.byte(UPCALL_PENDING_OFFSET).load(Ordering::Acquire)
    }

    /// Writes `vcpu_info[0].upcall_pending` (the dispatcher clears it before a scan).
    pub fn set_upcall_pending(&self, value: u8) {
        self.byte(UPCALL_PENDING_OFFSET).store(value, Ordering::Release);
    }

    /// `vcpu_info[0].upcall_mask`: nonzero = events off.
    pub fn upcall_mask(&self) -> u8 {
        self.byte(UPCALL_MASK_OFFSET).load(Ordering::Acquire)
    }

    /// Writes `vcpu_info[0].upcall_mask` (no delivery check: see [`irq_enable`]).
    pub fn set_upcall_mask(&self, value: u8) {
        self.byte(UPCALL_MASK_OFFSET).store(value, Ordering::Release);
    }

    /// `vcpu_info[0].pending_selector`.
    pub fn pending_selector(&self) -> u64 {
        self.word(SELECTOR_OFFSET).load(Ordering::Acquire)
    }

    /// Reads and clears `pending_selector` in one atomic exchange.
    pub fn take_pending_selector(&self) -> u64 {
        self.word(SELECTOR_OFFSET).swap(0, Ordering::AcqRel)
    }

    /// Word `index` of `evtchn_pending`.
    pub fn pending_word(&self, index: usize) -> u64 {
        self.word(PENDING_OFFSET + 8 * index).load(Ordering::Acquire)
    }

    /// Word `index` of `evtchn_mask`.
    pub fn mask_word(&self, index: usize) -> u64 {
        self.word(MASK_OFFSET + 8 * index).load(Ordering::Acquire)
    }

    fn port_bit(port: u32) -> (usize, u64) {
        let port = port as usize % EVENT_PORTS;
        (port / 64, 1u64 << (port % 64))
    }

    /// Port `port`'s pending bit.
    pub fn is_pending(&self, port: u32) -> bool {
        let (word, bit) = Self::port_bit(port);
        self.pending_word(word) & bit != 0
    }

    /// Port `port`'s mask bit.
    pub fn is_masked(&self, port: u32) -> bool {
        let (word, bit) = Self::port_bit(port);
        self.mask_word(word) & bit != 0
    }

    /// Atomically clears port `port`'s pending bit; true if it was set.
    pub fn clear_pending(&self, port: u32) -> bool {
        let (word, bit) = Self::port_bit(port);
        self.word(PENDING_OFFSET + 8 * word).fetch_and(!bit, Ordering::AcqRel) & bit != 0
    }

    /// Atomically sets port `port`'s pending bit (tests of the scan); true if it was set.
    pub fn set_pending(&self, port: u32) -> bool {
        let (word, bit) = Self::port_bit(port);
        self.word(PENDING_OFFSET + 8 * word).fetch_or(bit, Ordering::AcqRel) & bit != 0
    }

    /// Atomically sets port `port`'s mask bit (masking needs no hypercall); true if it
    /// was set.
    pub fn set_mask(&self, port: u32) -> bool {
        let (word, bit) = Self::port_bit(port);
        self.word(MASK_OFFSET + 8 * word).fetch_or(bit, Ordering::AcqRel) & bit != 0
    }

    /// Atomically clears port `port`'s mask bit *without* re-delivery (unmasking a pending
    /// port needs [`Port::unmask`]); true if it was set.
    pub fn clear_mask(&self, port: u32) -> bool {
        let (word, bit) = Self::port_bit(port);
        self.word(MASK_OFFSET + 8 * word).fetch_and(!bit, Ordering::AcqRel) & bit != 0
    }

    /// Sets selector bit `word` (tests of the scan).
    pub fn set_selector_bit(&self, word: usize) {
        self.word(SELECTOR_OFFSET).fetch_or(1 << (word % 64), Ordering::AcqRel);
    }
}

/// This domain's shared-info page, or `None` before the start code ran (and on the host).
pub fn try_shared_info() -> Option<SharedInfoPage> {
    let start = try_start_info()?;
    // SAFETY: the hypervisor maps the shared-info page read-write at this address for the
    // domain's whole life and it cannot be unmapped (SPEC.md §8); guest-rt accesses it
    // only through the atomic views of SharedInfoPage.
    (start.shared_info_address != 0).then(|| unsafe { SharedInfoPage::from_address(start.shared_info_address) })
}

/// This domain's shared-info page.
///
/// # Panics
///
/// Outside a running domain.
pub fn shared_info() -> SharedInfoPage {
    try_shared_info().expect("guest_rt::events::shared_info() outside a running ringfence domain")
}

// ---------------------------------------------------------------------------------------
// The virtual interrupt flag.

/// Turns event delivery off (upcall mask = 1): a plain store, no hypercall.
pub fn irq_disable() {
    shared_info().set_upcall_mask(1);
    // Keep the critical section's accesses after the store.
    compiler_fence(Ordering::SeqCst);
}

/// Turns event delivery on (upcall mask = 0); if an event is already pending, makes one
/// cheap hypercall (`version`) so the hypervisor delivers it before this returns.
pub fn irq_enable() {
    enable_on(shared_info(), &HYPERVISOR);
}

fn enable_on<I: HypercallInterface>(page: SharedInfoPage, hypercalls: &Hypercalls<I>) {
    // Keep the critical section's accesses before the store.
    compiler_fence(Ordering::SeqCst);
    page.set_upcall_mask(0);
    // The store must come before the load of `upcall_pending` in program order (SPEC.md
    // §18.1); a compiler barrier keeps it there. No memory fence is needed: the
    // hypervisor reads the mask and sets `upcall_pending` only on this vCPU's CPU,
    // between two of its instructions, and a CPU sees its own earlier store. So an event
    // raised before the store is seen by the load, and one raised after it came through
    // a hypervisor entry whose return, with the mask already clear, delivered it.
    compiler_fence(Ordering::SeqCst);
    if page.upcall_pending() != 0 {
        let _ = hypercalls.version_op(hypercall_abi::hypercall::version_cmd::ABI_VERSION);
    }
}

/// True if event delivery is off.
pub fn irqs_disabled() -> bool {
    shared_info().upcall_mask() != 0
}

/// The saved state of the virtual interrupt flag ([`irq_save`]).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct IrqState {
    mask: u8,
}

impl IrqState {
    /// True if events were off.
    pub fn was_disabled(self) -> bool {
        self.mask != 0
    }
}

/// Turns event delivery off and returns the previous state for [`irq_restore`].
pub fn irq_save() -> IrqState {
    let page = shared_info();
    let mask = page.upcall_mask();
    page.set_upcall_mask(1);
    compiler_fence(Ordering::SeqCst);
    IrqState { mask }
}

/// Restores the state [`irq_save`] returned (enabling delivers anything pending).
pub fn irq_restore(state: IrqState) {
    if state.was_disabled() {
        irq_disable();
    } else {
        irq_enable();
    }
}

/// Events off from [`IrqGuard::new`] until the guard is dropped (then as before).
#[must_use = "events are back on when the guard is dropped"]
pub struct IrqGuard {
    saved: IrqState,
}

impl IrqGuard {
    /// Saves the state and turns events off.
    pub fn new() -> Self {
        Self { saved: irq_save() }
    }
}

impl Default for IrqGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for IrqGuard {
    fn drop(&mut self) {
        irq_restore(self.saved);
    }
}

// ---------------------------------------------------------------------------------------
// Ports.

/// An event-channel port of this domain (1..[`PORTS_MAX`]).
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(transparent)]
pub struct Port(u32);

/// A port's state as `STATUS` reports it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct PortStatus {
    /// [`hypercall_abi::event::status`] value.
    pub state: u64,
    /// The domain at the other end (or allowed to bind, for UNBOUND).
    pub remote_domain: u64,
    /// The remote port (INTERDOMAIN), or the virq (VIRQ).
    pub remote_port: u64,
}

impl PortStatus {
    /// Unpacks `STATUS`'s value.
    pub const fn from_packed(value: u64) -> Self {
        let (state, remote_domain, remote_port) = split_status(value);
        Self { state, remote_domain, remote_port }
    }
}

fn port_from(value: u64) -> Port {
    Port(value as u32)
}

impl Port {
    /// The port numbered `number`, unchecked (tests name bad ports on purpose).
    pub const fn from_raw(number: u32) -> Self {
        Self(number)
    }

    /// The port's number.
    pub const fn number(self) -> u32 {
        self.0
    }

    /// `ALLOC_UNBOUND(remote_domain)`: a new port only `remote_domain` ([`SELF`] = this
    /// domain) may bind.
    pub fn alloc_unbound(remote_domain: u64) -> Result<Port, Errno> {
        HYPERVISOR.event_channel_op(event_cmd::ALLOC_UNBOUND, remote_domain, 0).map(port_from)
    }

    /// `BIND_INTERDOMAIN(remote_domain, remote_port)`: connects a new local port to the
    /// remote's unbound port that names this domain.
    pub fn bind_interdomain(remote_domain: u64, remote_port: u32) -> Result<Port, Errno> {
        HYPERVISOR.event_channel_op(event_cmd::BIND_INTERDOMAIN, remote_domain, u64::from(remote_port)).map(port_from)
    }

    /// `BIND_VIRQ(virq)` ([`hypercall_abi::event::virq`]).
    pub fn bind_virq(virq: u64) -> Result<Port, Errno> {
        HYPERVISOR.event_channel_op(event_cmd::BIND_VIRQ, virq, 0).map(port_from)
    }

    /// `BIND_IPI()`: a port this domain signals itself through.
    pub fn bind_ipi() -> Result<Port, Errno> {
        HYPERVISOR.event_channel_op(event_cmd::BIND_IPI, 0, 0).map(port_from)
    }

    /// `SEND(port)`.
    pub fn send(self) -> Result<(), Errno> {
        HYPERVISOR.event_channel_op(event_cmd::SEND, u64::from(self.0), 0).map(drop)
    }

    /// `CLOSE(port)`; also forgets the port's handler.
    pub fn close(self) -> Result<(), Errno> {
        let result = HYPERVISOR.event_channel_op(event_cmd::CLOSE, u64::from(self.0), 0).map(drop);
        if result.is_ok() {
            clear_handler(self);
        }
        result
    }

    /// `STATUS(port)`.
    pub fn status(self) -> Result<PortStatus, Errno> {
        HYPERVISOR.event_channel_op(event_cmd::STATUS, u64::from(self.0), 0).map(PortStatus::from_packed)
    }

    /// `UNMASK(port)`: clears the mask bit; a pending event is delivered on the return.
    pub fn unmask(self) -> Result<(), Errno> {
        HYPERVISOR.event_channel_op(event_cmd::UNMASK, u64::from(self.0), 0).map(drop)
    }

    /// Sets the mask bit (no hypercall): the port's events stay pending, undelivered.
    pub fn mask(self) {
        shared_info().set_mask(self.0);
    }

    /// The pending bit.
    pub fn is_pending(self) -> bool {
        shared_info().is_pending(self.0)
    }

    /// The mask bit.
    pub fn is_masked(self) -> bool {
        shared_info().is_masked(self.0)
    }

    /// Atomically clears the pending bit; true if it was set.
    pub fn clear_pending(self) -> bool {
        shared_info().clear_pending(self.0)
    }
}

// ---------------------------------------------------------------------------------------
// Handlers and the dispatcher.

/// A port's event handler; runs with events off.
pub type EventHandler = fn(Port);

/// Lock-free so the dispatcher never waits for code it interrupted: each slot holds a
/// `fn(Port)` cast to a pointer, or null.
static HANDLERS: [AtomicPtr<()>; PORTS_MAX as usize] = [const { AtomicPtr::new(null_mut()) }; PORTS_MAX as usize];
static UPCALLS: AtomicU64 = AtomicU64::new(0);
static UNHANDLED: AtomicU64 = AtomicU64::new(0);
static LAST_RFLAGS: AtomicU64 = AtomicU64::new(0);
static LAST_MASK: AtomicU64 = AtomicU64::new(0);

/// Sets `port`'s handler (a port outside `1..PORTS_MAX` is ignored).
pub fn set_handler(port: Port, handler: EventHandler) {
    if let Some(slot) = HANDLERS.get(port.0 as usize) {
        slot.store(handler as *mut (), Ordering::Release);
    }
}

/// Forgets `port`'s handler.
pub fn clear_handler(port: Port) {
    if let Some(slot) = HANDLERS.get(port.0 as usize) {
        slot.store(null_mut(), Ordering::Release);
    }
}

fn handler_for(port: u32) -> Option<EventHandler> {
    let pointer = HANDLERS.get(port as usize)?.load(Ordering::Acquire);
    if pointer.is_null() {
        return None;
    }
    // SAFETY: `set_handler` is the only writer of a non-null slot and stores a
    // `fn(Port)`; function pointers and data pointers have the same size on x86_64.
    Some(unsafe { core::mem::transmute::<*mut (), EventHandler>(pointer) })
}

/// Counters of the upcall path, for tests.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct UpcallStats {
    /// Upcalls entered.
    pub upcalls: u64,
    /// Events on ports without a handler (cleared and dropped).
    pub unhandled: u64,
    /// `iret.rflags` of the last upcall's frame (IF = the mask was clear).
    pub last_rflags: u64,
    /// `upcall_mask` at the last upcall's entry (the hypervisor sets it to 1).
    pub last_mask: u64,
}

/// The upcall counters so far.
pub fn stats() -> UpcallStats {
    UpcallStats {
        upcalls: UPCALLS.load(Ordering::Relaxed),
        unhandled: UNHANDLED.load(Ordering::Relaxed),
        last_rflags: LAST_RFLAGS.load(Ordering::Relaxed),
        last_mask: LAST_MASK.load(Ordering::Relaxed),
    }
}

/// Scans `page` for pending, unmasked ports: clears `upcall_pending`, takes the selector,
/// and for each set bit of `pending & !mask` in the selected words atomically clears the
/// pending bit and calls `deliver` with the port. Repeats until the selector stays empty
/// (events raised by the handlers are handled in the same call). Returns the events
/// delivered.
pub fn scan(page: SharedInfoPage, mut deliver: impl FnMut(Port)) -> u64 {
    let mut delivered = 0;
    loop {
        page.set_upcall_pending(0);
        let selector = page.take_pending_selector();
        if selector == 0 {
            return delivered;
        }
        for word in BitIter(selector) {
            let word = word as usize;
            let ready = page.pending_word(word) & !page.mask_word(word);
            for bit in BitIter(ready) {
                let port = (word * 64) as u32 + bit;
                // Cleared before the handler runs, so an event raised meanwhile is kept.
                if page.clear_pending(port) {
                    delivered += 1;
                    deliver(Port(port));
                }
            }
        }
    }
}

struct BitIter(u64);

impl Iterator for BitIter {
    type Item = u32;

    fn next(&mut self) -> Option<u32> {
        if self.0 == 0 {
            return None;
        }
        let bit = self.0.trailing_zeros();
        self.0 &= self.0 - 1;
        Some(bit)
    }
}

fn deliver(port: Port) {
    match handler_for(port.0) {
        Some(handler) => handler(port),
        None => {
            UNHANDLED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Handles whatever is pending now, without an upcall (for code that waits with events
/// off, e.g. after [`poll`]). Returns the events delivered.
pub fn dispatch_pending() -> u64 {
    scan(shared_info(), deliver)
}

/// Called by the entry stub with the context on the interrupted stack.
#[cfg_attr(not(all(target_arch = "x86_64", target_os = "none")), allow(dead_code))]
extern "C" fn upcall(context: &mut TrapContext) {
    if context.frame.vector != EVENT_VECTOR {
        crate::println!("events: the upcall entry got {}", ShowFrame(&context.frame));
        crate::hypercall::crash(WRONG_VECTOR_CRASH_CODE);
    }
    let page = shared_info();
    UPCALLS.fetch_add(1, Ordering::Relaxed);
    LAST_RFLAGS.store(context.frame.iret.rflags, Ordering::Relaxed);
    LAST_MASK.store(u64::from(page.upcall_mask()), Ordering::Relaxed);
    scan(page, deliver);
}

/// The address [`init`] registers as the event callback.
pub fn entry_address() -> u64 {
    #[cfg(all(target_arch = "x86_64", target_os = "none"))]
    {
        extern "C" {
            fn ringfence_event_entry();
        }
        ringfence_event_entry as *const () as u64
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "none")))]
    {
        0
    }
}

/// Registers guest-rt's upcall entry with `set_callbacks` (no failsafe callback). Events
/// stay off until [`irq_enable`] (or [`block`]).
pub fn init() -> Result<(), Errno> {
    // SAFETY: the entry below follows the exception-frame protocol for EVENT_VECTOR.
    unsafe { HYPERVISOR.set_callbacks(entry_address(), 0) }.map(drop)
}

/// `sched_op(BLOCK)`: turns events on and sleeps until one is pending (at once if one
/// is); the upcall has run when this returns, and events are on.
pub fn block() -> Result<(), Errno> {
    HYPERVISOR.block()
}

/// `sched_op(POLL)`: sleeps until one of `ports` is pending or the absolute system time
/// `timeout_ns` passes (0 = none), without changing the upcall mask. Returns `Ok` either
/// way: check [`Port::is_pending`].
pub fn poll(ports: &[Port], timeout_ns: u64) -> Result<(), Errno> {
    // SAFETY: Port is a transparent u32, so the slice is the u32 array POLL reads.
    unsafe { HYPERVISOR.poll_raw(ports.as_ptr() as u64, ports.len() as u64, timeout_ns) }.map(drop)
}

/// Waits with [`block`] until `condition` holds, checking it with events off so a wake-up
/// cannot be missed between the check and the sleep; restores the flag's state at the end.
pub fn wait_until(mut condition: impl FnMut() -> bool) -> Result<(), Errno> {
    let saved = irq_save();
    loop {
        if condition() {
            irq_restore(saved);
            return Ok(());
        }
        if let Err(errno) = block() {
            irq_restore(saved);
            return Err(errno);
        }
        irq_disable();
    }
}

// The upcall entry: the same stub as guest-rt's trap entry, but separate because the trap
// dispatcher's vector table has no slot for EVENT_VECTOR and takes a lock the interrupted
// code may hold.
entry_stub!("ringfence_event_entry", upcall);

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::fake::Fake;
    use hypercall_abi::Hypercall;
    use std::boxed::Box;
    use std::vec::Vec;
    use zerocopy::FromZeros;

    fn page() -> (Box<SharedInfo>, SharedInfoPage) {
        let mut info = Box::new(SharedInfo::new_zeroed());
        // SAFETY: the box outlives every use in the test and is only accessed through the view.
        let view = unsafe { SharedInfoPage::from_address(&mut *info as *mut SharedInfo as u64) };
        (info, view)
    }

    fn raise(page: SharedInfoPage, port: u32) {
        page.set_pending(port);
        if !page.is_masked(port) {
            page.set_selector_bit(port as usize / 64);
            page.set_upcall_pending(1);
        }
    }

    #[test]
    fn scan_delivers_unmasked_pending_ports_once_in_order() {
        let (_info, page) = page();
        for port in [5, 70, 3, 1023] {
            raise(page, port);
        }
        page.set_mask(9);
        raise(page, 9);
        let mut seen = Vec::new();
        assert_eq!(scan(page, |port| seen.push(port.number())), 4);
        assert_eq!(seen, [3, 5, 70, 1023]);
        assert_eq!(page.upcall_pending(), 0);
        assert_eq!(page.pending_selector(), 0);
        assert!(page.is_pending(9) && !page.is_pending(5), "masked stays pending, delivered is cleared");
        assert_eq!(scan(page, |_| panic!("nothing new")), 0);
    }

    #[test]
    fn events_raised_by_a_handler_are_handled_in_the_same_scan() {
        let (_info, page) = page();
        raise(page, 2);
        let mut seen = Vec::new();
        scan(page, |port| {
            seen.push(port.number());
            if seen.len() == 1 {
                raise(page, 2); // the same port again: a new event
                raise(page, 200);
            }
        });
        assert_eq!(seen, [2, 2, 200]);
    }

    #[test]
    fn enabling_calls_the_hypervisor_only_when_something_is_pending() {
        let (_info, page) = page();
        let fake = Fake::default();
        page.set_upcall_mask(1);
        enable_on(page, &Hypercalls::new(&fake));
        assert_eq!(page.upcall_mask(), 0);
        assert!(fake.calls.borrow().is_empty());
        page.set_upcall_mask(1);
        page.set_upcall_pending(1);
        enable_on(page, &Hypercalls::new(&fake));
        let calls = fake.calls.borrow();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].number, Hypercall::VERSION.0);
    }

    #[test]
    fn bits_and_status() {
        let (_info, page) = page();
        assert!(!page.set_mask(64));
        assert!(page.is_masked(64) && page.mask_word(1) == 1);
        assert!(page.clear_mask(64) && !page.is_masked(64));
        assert!(!page.clear_pending(7));
        let status = PortStatus::from_packed(2 | 3 << 8 | 17 << 32);
        assert_eq!(status, PortStatus { state: 2, remote_domain: 3, remote_port: 17 });
        assert_eq!(BitIter(0b1010_0001).collect::<Vec<_>>(), [0, 5, 7]);
    }

    #[test]
    fn handlers_are_set_and_cleared() {
        fn handler(_: Port) {}
        set_handler(Port(12), handler);
        assert!(handler_for(12).is_some());
        clear_handler(Port(12));
        assert!(handler_for(12).is_none());
        set_handler(Port(5000), handler); // ignored
        assert!(handler_for(5000).is_none());
    }
}
