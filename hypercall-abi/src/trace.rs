//! The hypercall trace (SPEC.md §22): the records the hypervisor writes to its trace port
//! when the command line says `trace=`, read back by `cargo xtask run --trace`.
//!
//! The stream is a sequence of [`TraceRecord`]s, little-endian, with no gaps: one
//! [`kind::START`], one [`kind::DOMAIN`] per traced domain, then the events, drop counts
//! and, when the run ends normally, one [`kind::END`].

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// The trace port: COM2's I/O base. Nothing else of the hypervisor uses it.
pub const TRACE_PORT: u16 = 0x2f8;

/// Version of the record stream, in the START record's `number`.
pub const FORMAT_VERSION: u64 = 1;

/// [`TraceRecord::kind`] values.
pub mod kind {
    /// Opens the stream: `number` is [`super::FORMAT_VERSION`], `arguments[0]` the TSC
    /// frequency in Hz, `tsc` the time tracing began.
    pub const START: u8 = 0;
    /// A traced domain: `domain` its id; `arguments` hold its image name, UTF-8,
    /// NUL-padded (cut at 48 bytes).
    pub const DOMAIN: u8 = 1;
    /// A hypercall: `number` is RAX, `arguments` RDI, RSI, RDX, R10, R8, R9 as the guest
    /// passed them; `tsc` and `tsc_end` bracket the handler.
    pub const HYPERCALL: u8 = 2;
    /// An exception, software interrupt or guest-user `syscall` bounced to the guest
    /// kernel: `number` is the vector ([`crate::trap::SYSCALL_VECTOR`] for a system
    /// call); `arguments` are the error code, the fault address, the interrupted RIP, then
    /// for a system call the user's RAX, RDI and RSI (zero otherwise).
    pub const BOUNCE: u8 = 3;
    /// An event upcall delivered to the event callback: `number` is
    /// [`crate::event::EVENT_VECTOR`], `arguments[2]` the interrupted RIP.
    pub const UPCALL: u8 = 4;
    /// Records of `domain` lost because its ring was full: `number` of them, since the
    /// previous DROPPED record for it.
    pub const DROPPED: u8 = 5;
    /// Closes the stream at the end of the run: `tsc` is the time.
    pub const END: u8 = 6;
}

/// [`TraceRecord::flags`] bits.
pub mod flags {
    /// `result` is meaningful: the value RAX gets when the hypercall returns (for a
    /// bounce or upcall: 0 delivered, -1 not deliverable, the domain was killed). Clear
    /// for `iret` and a successful `sched_op(SHUTDOWN)`, which do not return.
    pub const RESULT: u8 = 1 << 0;
    /// The hypercall yields or may sleep (`sched_op(YIELD)`, `BLOCK`, `POLL`), or was
    /// preempted (SPEC.md §5.5): other domains may run before it returns `result`.
    pub const SWITCHED: u8 = 1 << 1;
}

/// One trace record: 88 bytes.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct TraceRecord {
    /// What this record is ([`kind`]).
    pub kind: u8,
    /// [`flags`] bits.
    pub flags: u8,
    /// Zero.
    pub reserved: [u8; 2],
    /// The domain's id (0 for START and END).
    pub domain: u32,
    /// Hypercall number, vector, drop count or format version, by kind.
    pub number: u64,
    /// Six argument registers or kind-specific values.
    pub arguments: [u64; 6],
    /// The result (see [`flags::RESULT`]).
    pub result: i64,
    /// TSC when the event began.
    pub tsc: u64,
    /// TSC when the handler ended (hypercalls and bounces; `tsc` otherwise).
    pub tsc_end: u64,
}

/// Size of a record on the wire.
pub const RECORD_BYTES: usize = core::mem::size_of::<TraceRecord>();

const _: () = assert!(RECORD_BYTES == 88);

/// Most bytes of an image name a DOMAIN record carries.
pub const NAME_BYTES: usize = 48;

/// The image name in a DOMAIN record's arguments, NUL-padded, cut at [`NAME_BYTES`].
pub fn pack_name(name: &str) -> [u64; 6] {
    let mut bytes = [0u8; NAME_BYTES];
    let length = name.len().min(NAME_BYTES);
    bytes[..length].copy_from_slice(&name.as_bytes()[..length]);
    let mut words = [0u64; 6];
    for (word, chunk) in words.iter_mut().zip(bytes.chunks_exact(8)) {
        let mut eight = [0u8; 8];
        eight.copy_from_slice(chunk);
        *word = u64::from_le_bytes(eight);
    }
    words
}

/// The name bytes [`pack_name`] stored, up to the first NUL.
pub fn unpack_name(words: &[u64; 6]) -> [u8; NAME_BYTES] {
    let mut bytes = [0u8; NAME_BYTES];
    for (chunk, word) in bytes.chunks_exact_mut(8).zip(words) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_cut() {
        let words = pack_name("guest-kernel");
        let bytes = unpack_name(&words);
        assert_eq!(&bytes[..12], b"guest-kernel");
        assert!(bytes[12..].iter().all(|&byte| byte == 0));
        let long = "x".repeat(60);
        assert_eq!(unpack_name(&pack_name(&long)), [b'x'; NAME_BYTES]);
    }

    #[test]
    fn the_layout_is_the_wire_format() {
        let record = TraceRecord { kind: kind::HYPERCALL, domain: 2, number: 18, ..TraceRecord::default() };
        let bytes = record.as_bytes();
        assert_eq!(bytes.len(), RECORD_BYTES);
        assert_eq!(bytes[0], kind::HYPERCALL);
        assert_eq!(&bytes[4..8], &2u32.to_le_bytes());
        assert_eq!(&bytes[8..16], &18u64.to_le_bytes());
        assert_eq!(core::mem::offset_of!(TraceRecord, tsc_end), 80);
    }
}
