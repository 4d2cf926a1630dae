//! Conformance: SSE/AVX state is per domain (eager save/restore on every switch).
//!
//! Run as two (or more) domains. Each first checks that its XMM (and, with AVX, YMM)
//! registers and MXCSR are in the init state although the other domain already filled
//! its own, then for several rounds fills every register with a pattern derived from its
//! domain id and the round, yields, and checks the pattern is still there.
#![cfg_attr(target_os = "none", no_std, no_main)]

use guest_rt::abi::StartInfo;
use guest_rt::println;
use guest_rt::test::Reporter;

guest_rt::entry!(fpu);

#[cfg(not(target_os = "none"))]
fn fpu(_start: &'static StartInfo) -> u32 {
    let _ = (Reporter::new, ROUNDS);
    println!("fpu runs only inside a ringfence domain");
    2
}

const ROUNDS: u64 = 8;

#[cfg(target_os = "none")]
fn fpu(start: &'static StartInfo) -> u32 {
    use guest_rt::hypercall::yield_now;
    use guest_rt::xstate::{avx_usable, read_mxcsr, read_xmm, read_ymm, write_mxcsr, write_xmm, write_ymm, MXCSR_INIT};

    let mut reporter = Reporter::new();
    let avx = avx_usable();
    if !avx {
        println!("AVX not available (CPUID/XCR0): checking XMM only");
    }
    let id = u64::from(start.domain_id);
    // Let every other domain fill its registers before this one looks at the init state.
    let _ = reporter.expect_ok(yield_now(), "first yield");
    reporter.expect_eq(read_mxcsr(), MXCSR_INIT, "MXCSR in the init state");
    reporter.expect_eq(read_xmm(), [[0; 2]; 16], "XMM registers in the init state");
    if avx {
        reporter.expect_eq(read_ymm(), [[0; 4]; 16], "YMM registers in the init state");
    }
    let pattern = |round: u64, register: usize, lane: usize| -> u64 {
        (id << 56) | (round << 40) | ((register as u64) << 8) | lane as u64 | 0x00a5_0000_0000
    };
    // Rounding control toward zero, all exceptions masked; differs per domain in FZ.
    let mxcsr = MXCSR_INIT | 0x6000 | if id % 2 == 0 { 0x8000 } else { 0 };
    for round in 0..ROUNDS {
        let mut ymm = [[0u64; 4]; 16];
        for (register, lanes) in ymm.iter_mut().enumerate() {
            for (lane, value) in lanes.iter_mut().enumerate() {
                *value = pattern(round, register, lane);
            }
        }
        let mut xmm = [[0u64; 2]; 16];
        for (register, lanes) in xmm.iter_mut().enumerate() {
            lanes.copy_from_slice(&ymm[register][..2]);
        }
        if avx {
            write_ymm(&ymm);
        } else {
            write_xmm(&xmm);
        }
        write_mxcsr(mxcsr);
        let _ = reporter.expect_ok(yield_now(), format_args!("yield in round {round}"));
        let seen_xmm = read_xmm();
        let mut ok = reporter.expect_eq(seen_xmm, xmm, format_args!("XMM after yield, round {round}"));
        if avx {
            ok &= reporter.expect_eq(read_ymm(), ymm, format_args!("YMM after yield, round {round}"));
        }
        ok &= reporter.expect_eq(read_mxcsr(), mxcsr, format_args!("MXCSR after yield, round {round}"));
        if !ok {
            break;
        }
    }
    println!(
        "domain {id}: {} registers kept across {ROUNDS} yields",
        if avx { "YMM0-15 and MXCSR" } else { "XMM0-15 and MXCSR" }
    );
    // Leave the init-state check of later domains meaningful: do not clear.
    reporter.finish()
}
