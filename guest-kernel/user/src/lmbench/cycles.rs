//! The clock the samples are read from: the time-stamp counter.

use core::arch::x86_64::{_mm_lfence, _rdtsc};

/// The time-stamp counter once every earlier instruction has finished: `lfence` keeps
/// `rdtsc` from being executed ahead of the work it closes (or opens) a sample of.
#[inline(always)]
pub fn now() -> u64 {
    // SAFETY: lfence needs SSE2, which every x86_64 processor has; rdtsc reads a counter
    // and touches no memory (a kernel that set CR4.TSD would fault the program: none of
    // the kernels measured does).
    unsafe {
        _mm_lfence();
        _rdtsc()
    }
}
