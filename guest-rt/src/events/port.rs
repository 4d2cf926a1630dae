//! Event-channel ports (SPEC.md §17): `event_channel_op` on typed [`Port`]s, their bits in
//! the shared-info page, and the handler each port's events go to.

use core::ptr::null_mut;
use core::sync::atomic::{AtomicPtr, Ordering};

use hypercall_abi::event::{event_cmd, split_status, DOMAIN_SELF, PORTS_MAX};
use hypercall_abi::Errno;

use super::shared_info::shared_info;
use crate::hypercall::HYPERVISOR;

/// `remote_domain` of [`Port::alloc_unbound`] meaning this domain.
pub const SELF: u64 = DOMAIN_SELF;

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

/// A port's event handler; runs with events off.
pub type EventHandler = fn(Port);

/// Lock-free so the dispatcher never waits for code it interrupted: each slot holds a
/// `fn(Port)` cast to a pointer, or null.
static HANDLERS: [AtomicPtr<()>; PORTS_MAX as usize] = [const { AtomicPtr::new(null_mut()) }; PORTS_MAX as usize];

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

pub(super) fn handler_for(port: u32) -> Option<EventHandler> {
    let pointer = HANDLERS.get(port as usize)?.load(Ordering::Acquire);
    if pointer.is_null() {
        return None;
    }
    // SAFETY: `set_handler` is the only writer of a non-null slot and stores a
    // `fn(Port)`; function pointers and data pointers have the same size on x86_64.
    Some(unsafe { core::mem::transmute::<*mut (), EventHandler>(pointer) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_unpacks() {
        let status = PortStatus::from_packed(2 | 3 << 8 | 17 << 32);
        assert_eq!(status, PortStatus { state: 2, remote_domain: 3, remote_port: 17 });
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
