//! User address spaces on ringfence (SPEC.md §12.3–§12.5): `address_space_op` handles,
//! changed with batched `mmu_update`s. Every mapping is a user one (`USER`; `WRITABLE` if
//! writable; `NO_EXECUTE` unless executable), so any of these spaces may be the user root.
//! The kernel root stays the initial space.
//!
//! Only spaces made here are accepted: handle 0 is the kernel's own space, and a handle
//! the kernel never got is a bug to refuse, not to pass on. A domain holds at most 64
//! spaces (`SPACES_MAX`), the kernel's included: one more is `-ENOSPC`.

use core::sync::atomic::{AtomicU64, Ordering};

use guest_rt::abi::memory::{map_flags, map_op, MapEntry, INITIAL_SPACE, NO_SPACE, SPACES_MAX};
use guest_rt::abi::Errno;
use guest_rt::memory::{self, map_entry, protect_entry, unmap_entry, Space};

use super::error::machine_error as failed;
use super::{entry, frames};
use crate::arch::machine::{AddressSpace, MachineError, PageAccess, PageUpdate, PAGE_SIZE, USER_LIMIT};

/// Bit h: handle h was created here and not destroyed.
static LIVE: AtomicU64 = AtomicU64::new(0);

/// Entries per `mmu_update` (one stack array).
const BATCH: usize = 64;

const _: () = assert!(SPACES_MAX <= 64, "LIVE has one bit per handle");

fn live(space: AddressSpace) -> Result<Space, MachineError> {
    let known = space.0 < SPACES_MAX && LIVE.load(Ordering::Acquire) & (1 << space.0) != 0;
    if known {
        Ok(Space::from_raw(space.0))
    } else {
        Err(failed("address space (not one create_space made)", Errno::ESRCH))
    }
}

/// `Machine::create_space`.
pub fn create() -> Result<AddressSpace, MachineError> {
    let space = memory::create_space().map_err(|errno| failed("address_space_op(CREATE)", errno))?;
    let handle = space.raw();
    if handle == INITIAL_SPACE || handle >= SPACES_MAX {
        // Not a handle the hypervisor can give (SPEC.md §12.3); never use it.
        let _ = memory::destroy_space(space);
        return Err(failed("address_space_op(CREATE) (a handle out of range)", Errno::EINVAL));
    }
    LIVE.fetch_or(1 << handle, Ordering::AcqRel);
    Ok(AddressSpace(handle))
}

/// `Machine::destroy_space`. The last user root stays installed after its run, so it is
/// uninstalled first (`DESTROY` refuses a root).
pub fn destroy(space: AddressSpace) -> Result<(), MachineError> {
    let handle = live(space)?;
    if entry::state().user_root.load(Ordering::Acquire) == space.0 {
        memory::switch_space(Space::INITIAL, None).map_err(|errno| failed("address_space_op(SWITCH)", errno))?;
        entry::state().user_root.store(NO_SPACE, Ordering::Release);
    }
    memory::destroy_space(handle).map_err(|errno| failed("address_space_op(DESTROY)", errno))?;
    LIVE.fetch_and(!(1 << space.0), Ordering::AcqRel);
    Ok(())
}

/// Makes `space` the user root, with one `SWITCH` only if it is not already.
pub fn make_user_root(space: AddressSpace) -> Result<(), MachineError> {
    if entry::state().user_root.load(Ordering::Acquire) == space.0 {
        return Ok(());
    }
    let handle = live(space)?;
    memory::switch_space(Space::INITIAL, Some(handle)).map_err(|errno| failed("address_space_op(SWITCH)", errno))?;
    entry::state().user_root.store(space.0, Ordering::Release);
    Ok(())
}

/// `Machine::update_space`: the updates in order, [`BATCH`] per `mmu_update`.
pub fn update(space: AddressSpace, updates: &[PageUpdate]) -> Result<(), (usize, MachineError)> {
    let handle = live(space).map_err(|error| (0, error))?;
    let mut entries = [MapEntry::default(); BATCH];
    let mut applied = 0;
    while applied < updates.len() {
        let mut count = 0;
        let mut refused = None;
        for update in updates[applied..].iter().take(BATCH) {
            match entry_of(update) {
                Ok(entry) => {
                    entries[count] = entry;
                    count += 1;
                }
                Err(error) => {
                    refused = Some(error);
                    break;
                }
            }
        }
        let result = memory::mmu_update(handle, &entries[..count]);
        applied += result.done;
        if let Err(errno) = result.result {
            let operation = entries[..count].get(result.done).map_or("mmu_update", operation_name);
            return Err((applied, failed(operation, errno)));
        }
        if let Some(error) = refused {
            return Err((applied, error));
        }
    }
    Ok(())
}

fn operation_name(entry: &MapEntry) -> &'static str {
    match entry.op {
        map_op::MAP => "mmu_update(MAP)",
        map_op::UNMAP => "mmu_update(UNMAP)",
        _ => "mmu_update(PROTECT)",
    }
}

/// The `mmu_update` entry of one update, or why it is refused before the hypervisor sees it.
fn entry_of(update: &PageUpdate) -> Result<MapEntry, MachineError> {
    match *update {
        PageUpdate::Map { address, frame, access } => {
            user_page(address)?;
            Ok(map_entry(address, frames::gfn_of(frame)?, flags(access)))
        }
        PageUpdate::Protect { address, access } => {
            user_page(address)?;
            Ok(protect_entry(address, flags(access)))
        }
        PageUpdate::Unmap { address } => {
            user_page(address)?;
            Ok(unmap_entry(address, 0))
        }
    }
}

fn user_page(address: u64) -> Result<(), MachineError> {
    if address.is_multiple_of(PAGE_SIZE) && address < USER_LIMIT {
        Ok(())
    } else {
        Err(failed("page update (not a page-aligned user address)", Errno::EINVAL))
    }
}

fn flags(access: PageAccess) -> u32 {
    let mut flags = map_flags::USER;
    if access.writable {
        flags |= map_flags::WRITABLE;
    }
    if !access.executable {
        flags |= map_flags::NO_EXECUTE;
    }
    flags
}
