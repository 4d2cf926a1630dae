//! Event channels and the virtual interrupt flag (SPEC.md §17–§18): the shared-info page's
//! event fields, `irq_disable`/`irq_enable`, typed [`Port`]s, per-port handlers and the
//! upcall entry that dispatches them.
//!
//! The upcall mask in `vcpu_info[0]` *is* the virtual interrupt flag: 1 = events off. A
//! domain starts with it set; [`init`] registers the upcall entry and [`irq_enable`]
//! turns delivery on. The hypervisor delivers an upcall on a return to the guest when
//! `upcall_pending != 0`, the mask is 0 and a callback is registered: it bounces an
//! [`ExceptionFrame`](hypercall_abi::trap::ExceptionFrame) with vector
//! [`EVENT_VECTOR`](hypercall_abi::event::EVENT_VECTOR) to the entry and sets the mask, so
//! port handlers run with events off; `iret` restores the mask from the frame's IF.
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

mod interrupt_flag;
mod port;
mod shared_info;
mod upcall;
mod wait;

pub use interrupt_flag::{irq_disable, irq_enable, irq_restore, irq_save, irqs_disabled, IrqGuard, IrqState};
pub use port::{clear_handler, set_handler, EventHandler, Port, PortStatus, SELF};
pub use shared_info::{shared_info, try_shared_info, SharedInfoPage};
pub use upcall::{dispatch_pending, entry_address, init, scan, stats, UpcallStats, WRONG_VECTOR_CRASH_CODE};
pub use wait::{block, poll, wait_until};
