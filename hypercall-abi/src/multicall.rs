//! Multicall (SPEC.md §13): several hypercalls for one entry into the hypervisor.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// One call of `multicall(entries, count)`. The hypervisor writes `result` back.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct MulticallEntry {
    /// Hypercall number.
    pub op: u64,
    /// Arguments in SPEC.md §5.1 order.
    pub args: [u64; 6],
    /// What the call returned (as RAX would hold it).
    pub result: i64,
}

/// Largest `count` one multicall accepts; more is `-EINVAL`.
pub const MULTICALL_MAX: u64 = 64;

const _: () = {
    assert!(core::mem::size_of::<MulticallEntry>() == 64);
    assert!(core::mem::offset_of!(MulticallEntry, result) == 56);
};
