//! Helpers shared by the conformance guests (one binary per case in `src/bin/`): argument
//! words, the domain's address-space landmarks, a seeded PRNG and a raw-hypercall helper.
#![cfg_attr(not(test), no_std)]
#![warn(missing_docs)]

use hypercall_abi::layout::PAGE_SIZE;
use hypercall_abi::{Errno, StartInfo};

/// The domain's arguments (`StartInfo::cmd_line`), split at ASCII whitespace.
pub fn words(start: &StartInfo) -> core::str::SplitAsciiWhitespace<'_> {
    start.cmd_line().split_ascii_whitespace()
}

/// The number in the `key=<n>` word of the command line, if there is one.
pub fn argument(start: &StartInfo, key: &str) -> Option<u64> {
    words(start)
        .filter_map(|word| word.split_once('='))
        .find(|(name, _)| *name == key)
        .and_then(|(_, value)| parse_number(value))
}

/// Parses a decimal or `0x`-prefixed hexadecimal number.
pub fn parse_number(text: &str) -> Option<u64> {
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// Addresses in the domain's layout (contract: image, guard, start info, guard, stack,
/// guard, free region) derived from the start-info page.
#[derive(Copy, Clone, Debug)]
pub struct Landmarks {
    /// The guard page between the image and the start-info page.
    pub guard_below_start_info: u64,
    /// The start-info page.
    pub start_info: u64,
    /// The guard page between the start-info page and the stack.
    pub guard_below_stack: u64,
    /// Lowest stack address.
    pub stack_bottom: u64,
    /// One past the highest stack address.
    pub stack_top: u64,
    /// The guard page above the stack.
    pub guard_above_stack: u64,
    /// One past the image's last byte (page aligned).
    pub image_end: u64,
}

impl Landmarks {
    /// Landmarks of the domain described by `start`.
    pub fn of(start: &StartInfo) -> Self {
        Self {
            guard_below_start_info: start.start_info_address.0 - PAGE_SIZE,
            start_info: start.start_info_address.0,
            guard_below_stack: start.stack_bottom.0 - PAGE_SIZE,
            stack_bottom: start.stack_bottom.0,
            stack_top: start.stack_top.0,
            guard_above_stack: start.stack_top.0,
            image_end: start.image_end.0,
        }
    }
}

/// A raw hypercall, result split into value or error.
///
/// # Safety
///
/// As for `guest_rt::raw::hypercall`: no pointer argument may name memory the hypercall
/// writes while Rust references to it are alive.
pub unsafe fn raw_result(number: u64, arguments: [u64; 6]) -> Result<u64, Errno> {
    // SAFETY: the caller upholds the contract.
    Errno::from_return(unsafe { guest_rt::raw::hypercall(number, arguments) })
}

/// xorshift64*: small, seeded, good enough to pick fuzz inputs reproducibly.
#[derive(Clone, Debug)]
pub struct XorShift {
    state: u64,
}

impl XorShift {
    /// A generator from `seed` (0 is replaced by a fixed nonzero constant).
    pub const fn new(seed: u64) -> Self {
        Self { state: if seed == 0 { 0x9e37_79b9_7f4a_7c15 } else { seed } }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value in `0..bound` (`bound > 0`; slightly biased, which fuzzing does not mind).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }

    /// One of `choices` (non-empty).
    pub fn pick<T: Copy>(&mut self, choices: &[T]) -> T {
        choices[self.below(choices.len() as u64) as usize]
    }
}

/// The current stack pointer.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub fn stack_pointer() -> u64 {
    let rsp: u64;
    // SAFETY: copies RSP into a register; no memory, stack or flags touched.
    unsafe { core::arch::asm!("mov {}, rsp", out(reg) rsp, options(nomem, nostack, preserves_flags)) };
    rsp
}

/// The accelerator QEMU runs the machine with, from the hypervisor CPUID leaf the guest
/// can read (QEMU's KVM mode says "KVMKVMKVM"); timing bounds depend on it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Accel {
    /// Hardware (or PVM) virtualization: tight bounds.
    Kvm,
    /// Anything else (TCG emulation): loose bounds.
    Other,
}

impl Accel {
    /// Reads CPUID 0x40000000's signature.
    pub fn detect() -> Self {
        // SAFETY: CPUID exists on every x86_64 CPU and only reads identification data.
        // `__cpuid` is a safe function on newer toolchains and unsafe before: the block
        // keeps the crate building at the workspace's rust-version.
        #[allow(unused_unsafe)]
        let leaf = unsafe { core::arch::x86_64::__cpuid(0x4000_0000) };
        let mut signature = [0u8; 12];
        signature[..4].copy_from_slice(&leaf.ebx.to_le_bytes());
        signature[4..8].copy_from_slice(&leaf.ecx.to_le_bytes());
        signature[8..].copy_from_slice(&leaf.edx.to_le_bytes());
        if signature.starts_with(b"KVMKVMKVM") {
            Accel::Kvm
        } else {
            Accel::Other
        }
    }

    /// `kvm` when tight, `tcg` otherwise (for the log).
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Other => "tcg",
        }
    }

    /// `tight` under KVM, `loose` otherwise.
    pub fn pick(self, tight: u64, loose: u64) -> u64 {
        match self {
            Accel::Kvm => tight,
            Accel::Other => loose,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_number("1024"), Some(1024));
        assert_eq!(parse_number("0x10"), Some(16));
        assert_eq!(parse_number("x"), None);
    }

    #[test]
    fn xorshift_is_deterministic_and_bounded() {
        let mut a = XorShift::new(1);
        let mut b = XorShift::new(1);
        for _ in 0..100 {
            let value = a.below(80);
            assert_eq!(value, b.below(80));
            assert!(value < 80);
        }
        assert_ne!(XorShift::new(0).next_u64(), 0);
    }
}
