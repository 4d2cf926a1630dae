//! The one checked accessor for guest memory: validates a whole guest range by walking the
//! hypervisor-owned page tables in software, then copies, so it can never fault.

use crate::mm::frames::Frame;
use crate::mm::paging::{AddressSpace, FrameMemory, PageFlags};
use core::fmt;
use hypercall_abi::layout::{is_canonical, HYPERVISOR_END, HYPERVISOR_START, PAGE_SIZE};

/// Why a guest range cannot be accessed. Nothing was copied.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)] // Each variant's doc names its fields.
pub enum GuestFault {
    /// Part of the range is not canonical (or the range crosses the non-canonical hole).
    NonCanonical,
    /// The range touches the hypervisor's reserved range.
    HypervisorRange,
    /// The range wraps around the end of the address space.
    Wraps,
    /// No page is mapped at `address` (the first byte of the range in that page).
    NotMapped { address: u64 },
    /// The page at `address` is mapped supervisor-only.
    NotUserAccessible { address: u64 },
    /// The page at `address` is read-only and the access writes.
    ReadOnly { address: u64 },
}

impl fmt::Display for GuestFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NonCanonical => f.write_str("guest range is not canonical"),
            Self::HypervisorRange => f.write_str("guest range touches the hypervisor's reserved range"),
            Self::Wraps => f.write_str("guest range wraps around the end of the address space"),
            Self::NotMapped { address } => write!(f, "guest address {address:#x} is not mapped"),
            Self::NotUserAccessible { address } => write!(f, "guest address {address:#x} is not user accessible"),
            Self::ReadOnly { address } => write!(f, "guest address {address:#x} is read-only"),
        }
    }
}

/// Checks the address arithmetic of `address..address + length` and returns the address of
/// its last byte (`None` for an empty range).
pub(crate) fn check_range(address: u64, length: usize) -> Result<Option<u64>, GuestFault> {
    if !is_canonical(address) {
        return Err(GuestFault::NonCanonical);
    }
    let touches_hypervisor = |first: u64, last: u64| first < HYPERVISOR_END && last >= HYPERVISOR_START;
    if length == 0 {
        return if touches_hypervisor(address, address) { Err(GuestFault::HypervisorRange) } else { Ok(None) };
    }
    let last = address.checked_add(length as u64 - 1).ok_or(GuestFault::Wraps)?;
    // Both ends canonical and in the same half means no byte in between is in the hole.
    if !is_canonical(last) || (address >> 63) != (last >> 63) {
        return Err(GuestFault::NonCanonical);
    }
    if touches_hypervisor(address, last) {
        return Err(GuestFault::HypervisorRange);
    }
    Ok(Some(last))
}

/// The part of a validated range that lies in one page.
struct Chunk {
    frame: Frame,
    offset_in_page: usize,
    /// Offset of this chunk from the start of the range.
    range_offset: usize,
    length: usize,
}

/// Translates the page holding `current` (inside `address..=last`), checking user access
/// and, if `write`, write access. Returns the chunk and where the next chunk starts.
/// Work is one four-level table walk.
fn chunk_at(
    memory: &impl FrameMemory,
    space: &AddressSpace,
    address: u64,
    last: u64,
    current: u64,
    write: bool,
) -> Result<(Chunk, Option<u64>), GuestFault> {
    let frame = page_frame(memory, space, current, write)?;
    let chunk_last = (current | (PAGE_SIZE - 1)).min(last);
    let chunk = Chunk {
        frame,
        offset_in_page: (current % PAGE_SIZE) as usize,
        range_offset: (current - address) as usize,
        length: (chunk_last - current + 1) as usize,
    };
    let next = if chunk_last == last { None } else { Some(chunk_last + 1) };
    Ok((chunk, next))
}

/// Checks every page of `address..=last` without copying anything.
fn validate(
    memory: &impl FrameMemory,
    space: &AddressSpace,
    address: u64,
    last: u64,
    write: bool,
) -> Result<(), GuestFault> {
    let mut current = Some(address);
    while let Some(page_address) = current {
        current = chunk_at(memory, space, address, last, page_address, write)?.1;
    }
    Ok(())
}

/// Where `address..address + length` lies in its page, when the range is not empty and
/// does not leave that page: the shape of every frame a bounce writes and `iret` reads.
/// For such a range the checks of [`check_range`] come down to `address` itself, because
/// the canonical hole and the hypervisor range both start and end on page boundaries.
#[inline(always)]
fn inside_one_page(address: u64, length: usize) -> Option<usize> {
    let offset = (address % PAGE_SIZE) as usize;
    let fits = length != 0 && length <= PAGE_SIZE as usize - offset;
    let allowed = is_canonical(address) && !(HYPERVISOR_START..HYPERVISOR_END).contains(&address);
    (fits && allowed).then_some(offset)
}

/// The frame of the page holding `address`, checked for user access and, if `write`,
/// write access. Work is one four-level table walk, or none when it is the space's last
/// translation.
#[inline(always)]
fn page_frame(memory: &impl FrameMemory, space: &AddressSpace, address: u64, write: bool) -> Result<Frame, GuestFault> {
    let (frame, flags) = space.translate(memory, address).ok_or(GuestFault::NotMapped { address })?;
    if !flags.contains(PageFlags::USER) {
        return Err(GuestFault::NotUserAccessible { address });
    }
    if write && !flags.contains(PageFlags::WRITABLE) {
        return Err(GuestFault::ReadOnly { address });
    }
    Ok(frame)
}

/// Copies `buffer.len()` bytes of guest memory at `address` into `buffer`. The whole range
/// is validated (canonical, no wrap, outside the hypervisor range, every page present and
/// user accessible) before a single byte is copied.
#[inline(always)]
pub fn copy_from_guest(
    memory: &impl FrameMemory,
    space: &AddressSpace,
    address: u64,
    buffer: &mut [u8],
) -> Result<(), GuestFault> {
    if let Some(offset) = inside_one_page(address, buffer.len()) {
        memory.read(page_frame(memory, space, address, false)?, offset, buffer);
        return Ok(());
    }
    read_in_chunks(memory, space, address, buffer)
}

/// [`copy_from_guest`] for any range, page by page.
fn read_in_chunks(
    memory: &impl FrameMemory,
    space: &AddressSpace,
    address: u64,
    buffer: &mut [u8],
) -> Result<(), GuestFault> {
    let Some(last) = check_range(address, buffer.len())? else {
        return Ok(());
    };
    validate(memory, space, address, last, false)?;
    let mut current = Some(address);
    while let Some(page_address) = current {
        let (chunk, next) = chunk_at(memory, space, address, last, page_address, false)?;
        let target = &mut buffer[chunk.range_offset..chunk.range_offset + chunk.length];
        memory.read(chunk.frame, chunk.offset_in_page, target);
        current = next;
    }
    Ok(())
}

/// Copies `bytes` into guest memory at `address`. The whole range is validated (as for
/// [`copy_from_guest`], plus every page writable) before a single byte is written.
///
/// The copy pass walks the tables again rather than remembering the first walk (which
/// would need a heap allocation per call); the walks agree because the writes only reach
/// guest data frames, and page-table frames are never guest-mapped (the mapping
/// hypercalls refuse them).
#[inline(always)]
pub fn copy_to_guest(
    memory: &mut impl FrameMemory,
    space: &AddressSpace,
    address: u64,
    bytes: &[u8],
) -> Result<(), GuestFault> {
    if let Some(offset) = inside_one_page(address, bytes.len()) {
        memory.write(page_frame(memory, space, address, true)?, offset, bytes);
        return Ok(());
    }
    write_in_chunks(memory, space, address, bytes)
}

/// [`copy_to_guest`] for any range, page by page.
fn write_in_chunks(
    memory: &mut impl FrameMemory,
    space: &AddressSpace,
    address: u64,
    bytes: &[u8],
) -> Result<(), GuestFault> {
    let Some(last) = check_range(address, bytes.len())? else {
        return Ok(());
    };
    validate(memory, space, address, last, true)?;
    let mut current = Some(address);
    while let Some(page_address) = current {
        let (chunk, next) = chunk_at(memory, space, address, last, page_address, true)?;
        memory.write(chunk.frame, chunk.offset_in_page, &bytes[chunk.range_offset..chunk.range_offset + chunk.length]);
        current = next;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::fakes::{TestFrames, TestMemory};
    use crate::mm::frames::FrameSource;

    struct Fixture {
        memory: TestMemory,
        frames: TestFrames,
        space: AddressSpace,
    }

    const BASE: u64 = 0x40_0000;

    /// Pages at BASE: 0 RW user, 1 RW user, 2 RO user, 3 RW supervisor, 4 unmapped,
    /// 5 RW user. Page n is filled with byte n.
    fn fixture() -> Fixture {
        let mut memory = TestMemory::default();
        let mut frames = TestFrames::new();
        let hypervisor_root = Frame::from_number(1);
        memory.zero(hypervisor_root);
        let mut space = AddressSpace::new(&mut memory, &mut frames, hypervisor_root).unwrap();
        let user_rw = PageFlags::USER | PageFlags::WRITABLE;
        let pages = [(0, user_rw), (1, user_rw), (2, PageFlags::USER), (3, PageFlags::WRITABLE), (5, user_rw)];
        for (page, flags) in pages {
            let frame = frames.allocate().unwrap();
            memory.write(frame, 0, &[page as u8; 4096]);
            space.map(&mut memory, &mut frames, BASE + page * 4096, frame, flags).unwrap();
        }
        Fixture { memory, frames, space }
    }

    #[test]
    fn reads_and_writes_across_a_page_boundary() {
        let mut fixture = fixture();
        let mut buffer = [0u8; 8];
        copy_from_guest(&fixture.memory, &fixture.space, BASE + 4092, &mut buffer).unwrap();
        assert_eq!(buffer, [0, 0, 0, 0, 1, 1, 1, 1]);
        copy_to_guest(&mut fixture.memory, &fixture.space, BASE + 4094, b"abcd").unwrap();
        copy_from_guest(&fixture.memory, &fixture.space, BASE + 4092, &mut buffer).unwrap();
        assert_eq!(buffer, [0, 0, b'a', b'b', b'c', b'd', 1, 1]);
        // A read spanning more than two pages.
        let mut big = vec![0u8; 4096 + 2];
        copy_from_guest(&fixture.memory, &fixture.space, BASE + 4095, &mut big).unwrap();
        assert_eq!((big[0], big[1], big[4096], big[4097]), (b'b', b'c', 1, 2));
    }

    #[test]
    fn partial_mappings_fail_without_partial_success() {
        let mut fixture = fixture();
        // Page 1 is writable, page 2 read-only: nothing of the write may land in page 1.
        let result = copy_to_guest(&mut fixture.memory, &fixture.space, BASE + 2 * 4096 - 2, b"wxyz");
        assert_eq!(result, Err(GuestFault::ReadOnly { address: BASE + 2 * 4096 }));
        let mut buffer = [0u8; 2];
        copy_from_guest(&fixture.memory, &fixture.space, BASE + 2 * 4096 - 2, &mut buffer).unwrap();
        assert_eq!(buffer, [1, 1], "no byte was written before the fault");

        // Reads into supervisor and unmapped pages, reported at the first bad byte.
        let mut buffer = [0xeeu8; 16];
        let result = copy_from_guest(&fixture.memory, &fixture.space, BASE + 3 * 4096 - 8, &mut buffer);
        assert_eq!(result, Err(GuestFault::NotUserAccessible { address: BASE + 3 * 4096 }));
        assert_eq!(buffer, [0xee; 16], "buffer untouched on failure");
        let result = copy_from_guest(&fixture.memory, &fixture.space, BASE + 5 * 4096 - 4, &mut buffer);
        assert_eq!(result, Err(GuestFault::NotMapped { address: BASE + 5 * 4096 - 4 }));
        let result = copy_from_guest(&fixture.memory, &fixture.space, BASE + 6 * 4096 - 4, &mut buffer);
        assert_eq!(result, Err(GuestFault::NotMapped { address: BASE + 6 * 4096 }));
        // Read-only pages can be read.
        copy_from_guest(&fixture.memory, &fixture.space, BASE + 2 * 4096, &mut buffer).unwrap();
        assert_eq!(buffer, [2; 16]);
        let _ = &mut fixture.frames;
    }

    #[test]
    fn address_arithmetic_is_checked_first() {
        let mut fixture = fixture();
        let mut buffer = [0u8; 4];
        let mut read = |address| copy_from_guest(&fixture.memory, &fixture.space, address, &mut buffer);
        assert_eq!(read(u64::MAX - 1), Err(GuestFault::Wraps));
        assert_eq!(read(0x0000_8000_0000_0000), Err(GuestFault::NonCanonical));
        assert_eq!(read(0x0000_7fff_ffff_fffe), Err(GuestFault::NonCanonical), "runs into the hole");
        assert_eq!(read(HYPERVISOR_START), Err(GuestFault::HypervisorRange));
        assert_eq!(read(HYPERVISOR_END - 2), Err(GuestFault::HypervisorRange));
        assert_eq!(read(HYPERVISOR_END), Err(GuestFault::NotMapped { address: HYPERVISOR_END }));
        assert_eq!(
            copy_to_guest(&mut fixture.memory, &fixture.space, HYPERVISOR_START + 0x1000, b"x"),
            Err(GuestFault::HypervisorRange)
        );
    }

    /// The one-page path must answer exactly as the page-by-page path: the same bytes, the
    /// same fault at the same address, for every kind of page and at the page's edges.
    #[test]
    fn one_page_copies_agree_with_copies_in_chunks() {
        let offsets = [0u64, 1, 8, 4088, 4089, 4095];
        let lengths = [1usize, 7, 8, 104, 4095, 4096];
        let pages = (0..7u64).map(|page| BASE + page * 4096);
        let odd = [0x0000_7fff_ffff_f000, 0x0000_8000_0000_0000, HYPERVISOR_START, HYPERVISOR_END - 4096, 0];
        for start in pages.chain(odd) {
            for (offset, length) in
                offsets.iter().flat_map(|&offset| lengths.iter().map(move |&length| (offset, length)))
            {
                let address = start + offset;
                let (mut fast, mut chunks) = (fixture(), fixture());
                let (mut fast_bytes, mut chunk_bytes) = (vec![0xa5u8; length], vec![0xa5u8; length]);
                assert_eq!(
                    copy_from_guest(&fast.memory, &fast.space, address, &mut fast_bytes),
                    read_in_chunks(&chunks.memory, &chunks.space, address, &mut chunk_bytes),
                    "read of {length} at {address:#x}"
                );
                assert_eq!(fast_bytes, chunk_bytes, "bytes read at {address:#x}");
                let pattern = vec![0x5au8; length];
                assert_eq!(
                    copy_to_guest(&mut fast.memory, &fast.space, address, &pattern),
                    write_in_chunks(&mut chunks.memory, &chunks.space, address, &pattern),
                    "write of {length} at {address:#x}"
                );
                for page in 0..7u64 {
                    let (mut after_fast, mut after_chunks) = ([0u8; 4096], [0u8; 4096]);
                    let _ = copy_from_guest(&fast.memory, &fast.space, BASE + page * 4096, &mut after_fast);
                    let _ = copy_from_guest(&chunks.memory, &chunks.space, BASE + page * 4096, &mut after_chunks);
                    assert_eq!(after_fast, after_chunks, "page {page} after a write at {address:#x}");
                }
            }
        }
    }

    #[test]
    fn zero_length_needs_only_a_valid_address() {
        let mut fixture = fixture();
        assert_eq!(copy_from_guest(&fixture.memory, &fixture.space, 0x1234, &mut []), Ok(()));
        assert_eq!(copy_to_guest(&mut fixture.memory, &fixture.space, u64::MAX, &[]), Ok(()));
        assert_eq!(
            copy_from_guest(&fixture.memory, &fixture.space, 0x0000_8000_0000_0000, &mut []),
            Err(GuestFault::NonCanonical)
        );
        assert_eq!(
            copy_to_guest(&mut fixture.memory, &fixture.space, HYPERVISOR_START, &[]),
            Err(GuestFault::HypervisorRange)
        );
        assert!(GuestFault::ReadOnly { address: 0x10 }.to_string().contains("0x10"));
    }
}
