//! Traps: the saved register frame, the exception frames bounced to a guest kernel
//! and `iret` validation. Exception names are the ABI's
//! (`hypercall_abi::trap::vector::name`), shared with guest-rt.

pub mod bounce;
pub mod frame;
