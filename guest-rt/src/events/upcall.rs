//! Upcalls (SPEC.md §18.4): the entry the hypervisor bounces events to, and the scan of the
//! shared-info page that hands each pending, unmasked port to its handler.

use core::sync::atomic::{AtomicU64, Ordering};

use hypercall_abi::event::EVENT_VECTOR;
use hypercall_abi::Errno;

use super::port::{handler_for, Port};
use super::shared_info::{shared_info, SharedInfoPage};
use crate::frame::{entry_stub, ShowFrame, TrapContext};
use crate::hypercall::{crash, HYPERVISOR};

/// Code passed to `crash` when the event entry is reached with another vector.
pub const WRONG_VECTOR_CRASH_CODE: u32 = 4;

static UPCALLS: AtomicU64 = AtomicU64::new(0);
static UNHANDLED: AtomicU64 = AtomicU64::new(0);
static LAST_RFLAGS: AtomicU64 = AtomicU64::new(0);
static LAST_MASK: AtomicU64 = AtomicU64::new(0);

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
                    deliver(Port::from_raw(port));
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
    match handler_for(port.number()) {
        Some(handler) => handler(port),
        None => {
            UNHANDLED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Handles whatever is pending now, without an upcall (for code that waits with events
/// off, e.g. after `poll`). Returns the events delivered.
pub fn dispatch_pending() -> u64 {
    scan(shared_info(), deliver)
}

/// Called by the entry stub with the context on the interrupted stack.
#[cfg_attr(not(all(target_arch = "x86_64", target_os = "none")), allow(dead_code))]
extern "C" fn upcall(context: &mut TrapContext) {
    if context.frame.vector != EVENT_VECTOR {
        crate::println!("events: the upcall entry got {}", ShowFrame(&context.frame));
        crash(WRONG_VECTOR_CRASH_CODE);
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
/// stay off until `irq_enable` (or `block`).
pub fn init() -> Result<(), Errno> {
    // SAFETY: the entry below follows the exception-frame protocol for EVENT_VECTOR.
    unsafe { HYPERVISOR.set_callbacks(entry_address(), 0) }.map(drop)
}

// The upcall entry: the same stub as guest-rt's trap entry, but separate because the trap
// dispatcher's vector table has no slot for EVENT_VECTOR and takes a lock the interrupted
// code may hold.
entry_stub!("ringfence_event_entry", upcall);

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::events::shared_info::fixture::page;
    use std::vec::Vec;

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
    fn bits_in_order() {
        assert_eq!(BitIter(0b1010_0001).collect::<Vec<_>>(), [0, 5, 7]);
    }
}
