//! Benchmark `boot_64_domains`: the smallest guest there is — it powers off with code 0 at
//! once. `cargo xtask bench` starts 64 of it in one boot; the number is the hypervisor's
//! `(hv) boot: all 64 domains reached their first instruction <c> cycles after hypervisor
//! entry`, so nothing here is timed.
#![cfg_attr(target_os = "none", no_std, no_main)]

use guest_rt::abi::StartInfo;

guest_rt::entry!(bench_boot);

fn bench_boot(_start: &'static StartInfo) -> u32 {
    0
}
