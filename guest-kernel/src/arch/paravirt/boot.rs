//! The domain's entry point: guest-rt's start code (ABI note, start info, heap, panic
//! handler) around the kernel's main function.

/// Declares the kernel's main function, a `fn() -> u32` whose result is the poweroff
/// code, and emits the platform's entry point around it.
macro_rules! boot {
    ($main:path) => {
        fn ringfence_entry(_start: &'static ::guest_rt::abi::StartInfo) -> u32 {
            $main()
        }
        ::guest_rt::entry!(ringfence_entry);
    };
}
pub(crate) use boot;
