//! The vDSO: a small shared object the kernel maps into every process (its ELF header's
//! address is `AT_SYSINFO_EHDR` in the auxiliary vector) so that reading the clocks costs
//! no system call. libc finds its functions by name and version (`__vdso_clock_gettime`,
//! `LINUX_2.6`) through the dynamic section, as it would in Linux's own vDSO.
//!
//! * [`clock`]: the read-only clock page the vDSO's code reads (mapped just below the
//!   image), the parameters it holds and the formula both the kernel and the vDSO compute;
//! * [`image`]: the ELF image around the vDSO's machine code (which the platform's asm
//!   provides: it is the only part that is code).

pub mod clock;
pub mod image;
