//! Traps: the saved register frame, the exception frames bounced to a guest kernel
//! and `iret` validation, and the exception names.

pub mod bounce;
pub mod exception;
pub mod frame;
