//! `exception_bounce`: `int3` in guest-kernel mode -> Xen bounces #BP through the virtual
//! IDT to the entry -> the handler (which counts) -> the `iret` hypercall -> the
//! instruction after the `int3`; ringfence's bench_exception.

use core::sync::atomic::{AtomicU64, Ordering};

use crate::harness;

static BREAKPOINTS: AtomicU64 = AtomicU64::new(0);

/// Called by the #BP entry; `int3` is a trap, so the frame already points past it.
pub extern "C" fn on_breakpoint(_: u64) {
    BREAKPOINTS.fetch_add(1, Ordering::Relaxed);
}

pub fn run() {
    let (warmup, iterations) = (harness::warmup(), harness::iterations());
    let summary = harness::bench(|| {
        // SAFETY: #BP's entry returns after the int3 with every register restored.
        unsafe { core::arch::asm!("int3") };
    });
    let count = BREAKPOINTS.load(Ordering::Relaxed);
    if count != (warmup + iterations) as u64 {
        harness::error("exception_bounce", format_args!("{count} breakpoints reached the handler"));
        return;
    }
    harness::report("exception_bounce", &summary);
}
