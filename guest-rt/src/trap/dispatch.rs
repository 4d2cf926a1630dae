//! The common exception entry: every trap-table vector and the system-call callback point
//! at it; it runs the vector's Rust handler (a guest-user `syscall` goes to the user run
//! instead) and carries out the handler's [`TrapAction`].

use hypercall_abi::trap::{SYSCALL_VECTOR, VECTORS};
use spin::Mutex;

use crate::frame::{entry_stub, ShowFrame, TrapAction, TrapContext, TrapHandler, UNHANDLED_CRASH_CODE};
use crate::hypercall::crash;
use crate::user_mode;

static HANDLERS: Mutex<[Option<TrapHandler>; VECTORS]> = Mutex::new([None; VECTORS]);

/// Sets (or, with `None`, forgets) the Rust handler of `vector`.
pub(super) fn store_handler(vector: u8, handler: Option<TrapHandler>) {
    HANDLERS.lock()[usize::from(vector)] = handler;
}

fn handler_for(vector: u64) -> Option<TrapHandler> {
    let handlers = HANDLERS.lock();
    handlers.get(vector as usize).copied().flatten()
}

/// The address every trap-table entry (and the system-call callback) points at.
pub fn entry_address() -> u64 {
    #[cfg(all(target_arch = "x86_64", target_os = "none"))]
    {
        extern "C" {
            fn ringfence_trap_entry();
        }
        ringfence_trap_entry as *const () as u64
    }
    #[cfg(not(all(target_arch = "x86_64", target_os = "none")))]
    {
        0
    }
}

/// Called by the entry stub with the context on the handler's stack.
#[cfg_attr(not(all(target_arch = "x86_64", target_os = "none")), allow(dead_code))]
extern "C" fn dispatch(context: &mut TrapContext) {
    let vector = context.frame.vector;
    let action = if vector == SYSCALL_VECTOR {
        user_mode::dispatch_syscall(context)
    } else {
        match handler_for(vector) {
            Some(handler) => handler(context),
            None => {
                crate::println!("trap: unhandled {}", ShowFrame(&context.frame));
                crash(UNHANDLED_CRASH_CODE)
            }
        }
    };
    match action {
        TrapAction::Resume => {}
        TrapAction::EndUserRun(code) => user_mode::end_run(code, &context.frame),
    }
}

entry_stub!("ringfence_trap_entry", dispatch);
