//! The initramfs the hypervisor passes with the domain: its boot module (SPEC.md §2.5,
//! feature `MODULE`), mapped read-only for the domain's life.

/// The initramfs (a cpio `newc` archive) the domain was started with; empty without a
/// module.
pub fn initramfs() -> &'static [u8] {
    guest_rt::module().unwrap_or(&[])
}
