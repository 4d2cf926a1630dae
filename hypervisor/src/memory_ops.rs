//! The bodies of the memory hypercalls (SPEC.md §12): `memory_op`, `address_space_op` and
//! `mmu_update`. Arguments are the guest's registers `[RDI, RSI, RDX, R10, R8, R9]`; every
//! one is hostile. Guest arrays are read and written through the checked accessor in the
//! kernel root (hypercalls come only from guest-kernel mode). Batches do at most
//! [`BATCH_MAX`] entries, whatever count the guest passes.

use crate::domain_memory::{DomainMemory, MemoryError};
use crate::frame_allocator::FrameSource;
use crate::guest_memory::{copy_from_guest, copy_to_guest};
use crate::paging::{FrameMemory, PageSize};
use hypercall_abi::errno::Errno;
use hypercall_abi::memory::{map_flags, map_op, memory_cmd, space_cmd, MapEntry, BATCH_MAX, LARGE_PAGE_ORDER};
use zerocopy::FromBytes;

pub use crate::domain_memory::Tlb;

/// Bytes of one gfn in a guest array.
const GFN_BYTES: u64 = 8;
/// Bytes of one [`MapEntry`].
const ENTRY_BYTES: u64 = core::mem::size_of::<MapEntry>() as u64;

/// The address of element `index` of a guest array, or `None` if it wraps.
fn element(base: u64, index: u64, size: u64) -> Option<u64> {
    index.checked_mul(size).and_then(|offset| base.checked_add(offset))
}

/// A batch's result: the number done, or the error if it stopped at its first extent.
fn stopped(done: u64, error: Errno) -> i64 {
    if done == 0 {
        error.to_return()
    } else {
        done as i64
    }
}

fn extent_size(order: u64) -> Option<PageSize> {
    match order {
        0 => Some(PageSize::Small),
        LARGE_PAGE_ORDER => Some(PageSize::Large),
        _ => None,
    }
}

fn result(outcome: Result<(), MemoryError>) -> i64 {
    outcome.map_or_else(|error| error.errno().to_return(), |()| 0)
}

/// `memory_op(cmd, a, b, c)`: reservation queries and changes.
pub fn memory_op(
    arguments: &[u64; 6],
    domain: &mut DomainMemory,
    memory: &mut impl FrameMemory,
    frames: &mut impl FrameSource,
    tlb: &mut impl Tlb,
) -> i64 {
    let [command, gfns, count, order, ..] = *arguments;
    match command {
        // Quotas are at most 2^24 pages: these always fit an i64.
        memory_cmd::CURRENT_RESERVATION => domain.populated_pages() as i64,
        memory_cmd::MAXIMUM_RESERVATION => domain.max_pages() as i64,
        memory_cmd::MAXIMUM_GFN => domain.maximum_gfn() as i64,
        memory_cmd::INCREASE_RESERVATION => match extent_size(order) {
            Some(size) => increase(domain, memory, frames, tlb, gfns, count, size),
            None => Errno::EINVAL.to_return(),
        },
        memory_cmd::DECREASE_RESERVATION => match extent_size(order) {
            Some(size) => decrease(domain, memory, frames, tlb, gfns, count, size),
            None => Errno::EINVAL.to_return(),
        },
        _ => Errno::ENOSYS.to_return(),
    }
}

fn increase(
    domain: &mut DomainMemory,
    memory: &mut impl FrameMemory,
    frames: &mut impl FrameSource,
    tlb: &mut impl Tlb,
    gfns: u64,
    count: u64,
    size: PageSize,
) -> i64 {
    for done in 0..count.min(BATCH_MAX) {
        let gfn = match domain.populate(memory, frames, size) {
            Ok(gfn) => gfn,
            Err(error) => return stopped(done, error.errno()),
        };
        let written = element(gfns, done, GFN_BYTES)
            .is_some_and(|address| copy_to_guest(memory, domain.kernel_space(), address, &gfn.to_le_bytes()).is_ok());
        if !written {
            // The guest cannot learn the gfn, so it could never give it back: undo.
            domain.release(memory, frames, tlb, gfn, size).expect("a gfn just populated is releasable");
            return stopped(done, Errno::EFAULT);
        }
    }
    count.min(BATCH_MAX) as i64
}

fn decrease(
    domain: &mut DomainMemory,
    memory: &mut impl FrameMemory,
    frames: &mut impl FrameSource,
    tlb: &mut impl Tlb,
    gfns: u64,
    count: u64,
    size: PageSize,
) -> i64 {
    for done in 0..count.min(BATCH_MAX) {
        let mut bytes = [0u8; GFN_BYTES as usize];
        let read = element(gfns, done, GFN_BYTES).is_some_and(|address| copy_from_guest(memory, domain.kernel_space(), address, &mut bytes).is_ok());
        if !read {
            return stopped(done, Errno::EFAULT);
        }
        if let Err(error) = domain.release(memory, frames, tlb, u64::from_le_bytes(bytes), size) {
            return stopped(done, error.errno());
        }
    }
    count.min(BATCH_MAX) as i64
}

/// `address_space_op(cmd, a, b)`: create, destroy, switch, flush and query spaces.
pub fn address_space_op(
    arguments: &[u64; 6],
    domain: &mut DomainMemory,
    memory: &mut impl FrameMemory,
    frames: &mut impl FrameSource,
    tlb: &mut impl Tlb,
) -> i64 {
    let [command, first, second, ..] = *arguments;
    match command {
        space_cmd::CREATE => domain.create_space(memory, frames).map_or_else(|error| error.errno().to_return(), |handle| handle as i64),
        space_cmd::DESTROY => result(domain.destroy_space(memory, frames, first)),
        space_cmd::SWITCH => result(domain.switch(first, second)),
        space_cmd::FLUSH_VA => result(domain.flush(tlb, first, Some(second))),
        space_cmd::FLUSH_ALL => result(domain.flush(tlb, first, None)),
        // A gfn is below 2^24, so `gfn << 12 | flags` is a positive i64.
        space_cmd::QUERY => domain.query(memory, first, second).map_or_else(|error| error.errno().to_return(), |value| value as i64),
        _ => Errno::ENOSYS.to_return(),
    }
}

/// `mmu_update(handle, entries, count, done)`: applies up to [`BATCH_MAX`] entries in
/// order, stopping at the first that fails; writes the number completed to `done` if it
/// is not 0. Returns that number, or the failing entry's error.
pub fn mmu_update(
    arguments: &[u64; 6],
    domain: &mut DomainMemory,
    memory: &mut impl FrameMemory,
    frames: &mut impl FrameSource,
    tlb: &mut impl Tlb,
) -> i64 {
    let [handle, entries, count, done_address, ..] = *arguments;
    if !domain.has_space(handle) {
        return Errno::ESRCH.to_return();
    }
    let mut done = 0;
    let mut failure = None;
    while done < count.min(BATCH_MAX) {
        let outcome = read_entry(domain, memory, entries, done).and_then(|entry| apply(domain, memory, frames, tlb, handle, &entry));
        if let Err(error) = outcome {
            failure = Some(error);
            break;
        }
        done += 1;
    }
    if done_address != 0 && copy_to_guest(memory, domain.kernel_space(), done_address, &done.to_le_bytes()).is_err() {
        return Errno::EFAULT.to_return();
    }
    failure.map_or(done as i64, Errno::to_return)
}

fn read_entry(domain: &DomainMemory, memory: &impl FrameMemory, entries: u64, index: u64) -> Result<MapEntry, Errno> {
    let mut bytes = [0u8; ENTRY_BYTES as usize];
    let address = element(entries, index, ENTRY_BYTES).ok_or(Errno::EFAULT)?;
    copy_from_guest(memory, domain.kernel_space(), address, &mut bytes).map_err(|_| Errno::EFAULT)?;
    Ok(MapEntry::read_from_bytes(&bytes).expect("the buffer is one entry long"))
}

fn apply(
    domain: &mut DomainMemory,
    memory: &mut impl FrameMemory,
    frames: &mut impl FrameSource,
    tlb: &mut impl Tlb,
    handle: u64,
    entry: &MapEntry,
) -> Result<(), Errno> {
    if entry.flags & !map_flags::ALL != 0 {
        return Err(Errno::EINVAL);
    }
    let address = entry.virtual_address;
    let outcome = match entry.op {
        map_op::MAP => domain.map(memory, frames, tlb, handle, address, entry.gfn, entry.flags),
        map_op::UNMAP | map_op::PROTECT if entry.gfn != 0 => Err(MemoryError::Invalid),
        map_op::UNMAP => domain.unmap(memory, tlb, handle, address, entry.flags & map_flags::LARGE != 0),
        map_op::PROTECT => domain.protect(memory, tlb, handle, address, entry.flags),
        _ => Err(MemoryError::Invalid),
    };
    outcome.map_err(MemoryError::errno)
}
