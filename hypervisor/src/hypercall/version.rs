//! `version`: the ABI version and feature bits.

use crate::hypercall::guest::{error, Disposition, Guest};
use hypercall_abi::hypercall::{features, version_cmd};
use hypercall_abi::{Errno, ABI_VERSION};

/// `version(ABI_VERSION | FEATURES)`.
pub(super) fn version(arguments: &[u64; 6], _guest: &mut dyn Guest) -> Disposition {
    match arguments[0] {
        version_cmd::ABI_VERSION => Disposition::Return(i64::from(ABI_VERSION.packed())),
        version_cmd::FEATURES => Disposition::Return(features::ALL as i64),
        _ => error(Errno::EINVAL),
    }
}
