//! Domain entry: the `entry!` macro a guest names its main function with,
//! and the start code behind it (start info, heap, main, poweroff).
//!
//! Entry state (contract): RIP = `_start`, RDI = the read-only start-info page,
//! RSP = `stack_top - 8` with `[RSP] = 0`, so `_start` is an ordinary `extern "C"` function
//! whose caller "returned" nowhere; it must never return.

use core::sync::atomic::{AtomicPtr, Ordering};

use hypercall_abi::start_info::START_INFO_MAGIC;
use hypercall_abi::StartInfo;

use crate::console::print_to;
use crate::heap::init_from_start_info;
use crate::hypercall::HYPERVISOR;

static START_INFO: AtomicPtr<StartInfo> = AtomicPtr::new(core::ptr::null_mut());

/// The start-info page this domain was started with.
///
/// # Panics
///
/// Outside a running domain (before the start code ran, or on the host).
pub fn start_info() -> &'static StartInfo {
    try_start_info().expect("guest_rt::start_info() called outside a running ringfence domain")
}

/// The start-info page, or `None` before the start code ran (and on the host).
#[inline]
pub fn try_start_info() -> Option<&'static StartInfo> {
    let pointer = START_INFO.load(Ordering::Acquire);
    // SAFETY: only `__start` stores here, and only a `&'static StartInfo`.
    unsafe { pointer.as_ref() }
}

/// This domain's module (SPEC.md §2.4, §7): the bytes of the boot-archive member its
/// `domain=` token named with `module=` (an initramfs, say), or `None` when it was given
/// none — also under a hypervisor older than ABI 0.4, whose start info holds zeros there,
/// before the start code ran, and on the host. A start-info page whose module fields are
/// inconsistent gives `None` too ([`StartInfo::module_range`]).
///
/// The bytes are read-only: a write faults (§3.2). They stay readable as long as the
/// guest keeps the hypervisor's mapping of them in its kernel root; a guest that unmaps,
/// re-protects or releases the module's pages must stop using the slice first.
pub fn module() -> Option<&'static [u8]> {
    let range = try_start_info()?.module_range()?;
    let length = usize::try_from(range.end - range.start).ok()?;
    // SAFETY: module_range checked that the range is guest memory between the stack and
    // the free region, where the hypervisor maps the module read-only for the domain's
    // life (SPEC.md §3.2); guest-rt never changes that mapping, and nothing writes it.
    Some(unsafe { core::slice::from_raw_parts(range.start as *const u8, length) })
}

/// The start code every guest runs before its main function: records the start info,
/// gives the free region to the heap, calls `main` and powers off with its result.
/// A start-info page without the right magic is not from a ringfence hypervisor; the
/// domain then crashes with code 2 before touching memory the page describes.
///
/// # Safety
///
/// Call exactly once, from `_start`, with the page the hypervisor passed in RDI: its
/// free region must be mapped read-write and unused.
#[doc(hidden)]
pub unsafe fn __start(start_info: &'static StartInfo, main: fn(&'static StartInfo) -> u32) -> ! {
    if start_info.magic != START_INFO_MAGIC {
        print_to(
            &HYPERVISOR,
            format_args!("guest-rt: bad start-info magic {:#018x}; not started by ringfence?\n", start_info.magic),
        );
        HYPERVISOR.crash(2);
    }
    START_INFO.store(start_info as *const StartInfo as *mut StartInfo, Ordering::Release);
    // SAFETY: the caller passes the hypervisor's start info, once.
    unsafe { init_from_start_info(start_info) };
    let code = main(start_info);
    HYPERVISOR.poweroff(code)
}

/// Declares a guest's main function: `guest_rt::entry!(guest_main);` with
/// `fn guest_main(start: &'static StartInfo) -> u32` (the result is the poweroff code).
///
/// Inside a domain this emits `_start` (the image's entry point) and the ABI-version ELF
/// note (section `.note.ringfence`, which the linker script keeps). On the host it emits a
/// `fn main()` that explains the binary is a guest image and exits with status 2, so guest
/// crates build, test and lint on the host. The guest's function therefore must not itself
/// be called `main`.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        /// The ABI version this image was built against (read by the hypervisor).
        #[cfg(target_os = "none")]
        #[used]
        #[link_section = ".note.ringfence"]
        static RINGFENCE_ABI_NOTE: $crate::abi::note::AbiNote = $crate::abi::note::AbiNote::CURRENT;

        /// The image's entry point (contract: RDI = start info, RSP = stack_top - 8).
        #[cfg(target_os = "none")]
        #[no_mangle]
        pub extern "C" fn _start(start_info: &'static $crate::abi::StartInfo) -> ! {
            let main: fn(&'static $crate::abi::StartInfo) -> u32 = $main;
            // SAFETY: `_start` is entered once, by the hypervisor, with its start info.
            unsafe { $crate::entry::__start(start_info, main) }
        }

        #[cfg(not(target_os = "none"))]
        fn main() {
            let _: fn(&'static $crate::abi::StartInfo) -> u32 = $main;
            ::std::eprintln!(
                "{} is a ringfence guest image; build it with `cargo xtask build`",
                ::core::env!("CARGO_BIN_NAME")
            );
            ::std::process::exit(2);
        }
    };
}
