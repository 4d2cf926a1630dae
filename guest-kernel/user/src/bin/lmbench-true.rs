//! `/bin/lmbench-true`: exits 0 at once. The `fork exec` row of `lmbench` runs it, so
//! that row measures fork, execve of a small static program and wait, not a program's
//! start-up: it has no standard library (Rust's runs a few system calls and maps a
//! larger image before `main`), only musl's C start-up (`__libc_start_main`), as a
//! static C `true` would.

// Built as a test (`cargo clippy --all-targets`), the file has the test harness's std and
// `main` instead.
#![cfg_attr(not(test), no_std)]
#![cfg_attr(not(test), no_main)]

// The C start files (`crt1.o`) call `main`; their `__libc_start_main` is in the C
// library, which the `libc` crate links only for std (std links it for every other
// program): statically with musl, as the target's programs are, dynamically with glibc
// (the host build, which tests/on_linux.rs runs).
#[cfg_attr(target_env = "musl", link(name = "c", kind = "static"))]
#[cfg_attr(not(target_env = "musl"), link(name = "c"))]
unsafe extern "C" {}

#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    // Nothing above can panic; if it ever did, a failing exit is the honest end.
    // SAFETY: `_exit` only ends the process.
    unsafe { libc::_exit(1) }
}
