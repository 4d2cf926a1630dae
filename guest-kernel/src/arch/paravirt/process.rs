//! User processes on ringfence: a new address space (`address_space_op(CREATE)`) with
//! the image's regions mapped USER, entered through guest-rt's `user::run`. Every region
//! is mapped at the same address in the kernel root too, so the kernel reads user memory
//! at user addresses, as a native kernel does. After the run the user root is dropped, the
//! aliases unmapped, the space destroyed and its zeroed pages freed.

extern crate alloc;

use alloc::vec::Vec;
use core::ptr;
use core::sync::atomic::{AtomicPtr, Ordering};

use guest_rt::abi::layout::PAGE_SIZE;
use guest_rt::abi::memory::map_flags;
use guest_rt::abi::Errno;
use guest_rt::memory::{self, MapBatch, Space};
use guest_rt::trap::{vector_name, TrapContext};
use guest_rt::user::{self, SyscallAction, UserSpace};

use super::error::failed;
use super::pages;
use crate::arch::interface::{
    ArchError, Backing, SyscallDispatcher, SyscallResult, SystemCall, UserExit, UserImage, UserRegion,
};
use crate::user_abi::number;

/// First address past user space (the lower canonical half).
const USER_LIMIT: u64 = 0x0000_8000_0000_0000;

// guest-rt ends a run itself on its exit number without calling the dispatcher; the
// core numbers system calls like Linux x86-64, where exit is that same number, so the
// core's exit and guest-rt's agree.
const _: () = assert!(number::EXIT == user::SYSCALL_EXIT);

/// During [`run`]: points at a `&mut SyscallDispatcher` on `run`'s stack; else null.
static DISPATCHER: AtomicPtr<()> = AtomicPtr::new(ptr::null_mut());
/// During [`run`]: points at the `&[UserRegion]` of the image on `run`'s stack; else null.
static REGIONS: AtomicPtr<()> = AtomicPtr::new(ptr::null_mut());

/// guest-rt's system-call handler: forwards to the core's dispatcher of the current run.
pub(super) fn system_call(context: &mut TrapContext) -> SyscallAction {
    let (number, arguments) = context.syscall();
    let slot = DISPATCHER.load(Ordering::Acquire) as *mut &mut SyscallDispatcher<'_>;
    if slot.is_null() {
        // Only guest-user mode makes system calls, and it runs only inside `run`.
        return SyscallAction::Exit(u64::MAX);
    }
    // SAFETY: `run` stores a pointer to its local `&mut SyscallDispatcher` before entering
    // user mode and clears it after `user::run` returns; `run`'s frame stays alive above
    // this handler meanwhile (events from user mode land on `run`'s stack, below it).
    // Nothing else uses the dispatcher during the run, and system calls do not nest (they
    // come only from user mode, and this runs in kernel mode), so the borrow is unique.
    let dispatcher = unsafe { &mut **slot };
    match dispatcher(&SystemCall { number, arguments }) {
        SyscallResult::Return(value) => SyscallAction::Return(value),
        SyscallResult::Exit(code) => SyscallAction::Exit(code),
    }
}

/// The pages a run has mapped, so that every exit path takes them down.
struct Mappings {
    space: UserSpace,
    /// Addresses mapped in the kernel root.
    kernel_aliases: Vec<u64>,
    /// Heap pages from [`pages::allocate`] backing zeroed regions.
    owned_pages: Vec<u64>,
    /// The space may be the user root.
    activated: bool,
    destroyed: bool,
}

impl Mappings {
    fn tear_down(&mut self) -> Result<(), ArchError> {
        if self.activated {
            // DESTROY refuses a root; and with no user root an `iret` to user mode kills
            // the domain rather than entering a space about to lose its pages.
            memory::switch_space(Space::INITIAL, None).map_err(failed("address_space_op(SWITCH)"))?;
            self.activated = false;
        }
        if !self.kernel_aliases.is_empty() {
            let mut batch = MapBatch::new();
            for &address in &self.kernel_aliases {
                batch.unmap(address);
            }
            let result = batch.apply(Space::INITIAL);
            self.kernel_aliases.drain(..result.done);
            result.result.map_err(failed("mmu_update(UNMAP)"))?;
        }
        if !self.destroyed {
            memory::destroy_space(self.space.space()).map_err(failed("address_space_op(DESTROY)"))?;
            self.destroyed = true;
        }
        for page in self.owned_pages.drain(..) {
            // SAFETY: from `pages::allocate`, freed once (drained); the space that mapped
            // it is destroyed and its kernel alias unmapped (both checked above).
            unsafe { pages::free(page) };
        }
        Ok(())
    }
}

impl Drop for Mappings {
    fn drop(&mut self) {
        // An error path already has an error to report; whatever could not be taken
        // down stays mapped and its pages stay allocated (leaked, never reused).
        let _ = self.tear_down();
    }
}

/// Builds the address space for `image`, runs it, and takes the space down.
pub(super) fn run(image: &UserImage<'_>, dispatcher: &mut SyscallDispatcher<'_>) -> Result<UserExit, ArchError> {
    let space = UserSpace::create().map_err(failed("address_space_op(CREATE)"))?;
    let mut mappings =
        Mappings { space, kernel_aliases: Vec::new(), owned_pages: Vec::new(), activated: false, destroyed: false };
    let mut user_batch = MapBatch::new();
    let mut kernel_batch = MapBatch::new();
    for region in image.regions {
        if !region.start.is_multiple_of(PAGE_SIZE)
            || region.start == 0
            || region.end() > USER_LIMIT
            || region.end() < region.start
        {
            return Err(failed("user region outside user space")(Errno::EINVAL));
        }
        for index in 0..region.pages {
            let address = region.start + index * PAGE_SIZE;
            let (gfn, flags) = match region.backing {
                Backing::Kernel(source) => {
                    let (gfn, _) = memory::query(Space::INITIAL, source + index * PAGE_SIZE)
                        .map_err(failed("address_space_op(QUERY)"))?;
                    (gfn.0, map_flags::USER)
                }
                Backing::Zeroed => {
                    let (page, gfn) = pages::allocate()?;
                    mappings.owned_pages.push(page);
                    (gfn, map_flags::USER | map_flags::WRITABLE | map_flags::NO_EXECUTE)
                }
            };
            user_batch.map(address, gfn, flags);
            kernel_batch.map(address, gfn, flags);
        }
    }
    user_batch.apply(space.space()).result.map_err(failed("mmu_update(MAP) user space"))?;
    let applied = kernel_batch.apply(Space::INITIAL);
    mappings.kernel_aliases.extend(kernel_batch.entries()[..applied.done].iter().map(|entry| entry.virtual_address.0));
    applied.result.map_err(failed("mmu_update(MAP) kernel aliases"))?;
    mappings.activated = true;
    space.activate().map_err(failed("address_space_op(SWITCH)"))?;

    let mut dispatcher_slot: &mut SyscallDispatcher<'_> = dispatcher;
    let regions_slot: &[UserRegion] = image.regions;
    DISPATCHER.store(&mut dispatcher_slot as *mut &mut SyscallDispatcher<'_> as *mut (), Ordering::Release);
    REGIONS.store(&regions_slot as *const &[UserRegion] as *mut (), Ordering::Release);
    let exit = user::run(image.entry, image.stack_top, image.argument);
    DISPATCHER.store(ptr::null_mut(), Ordering::Release);
    REGIONS.store(ptr::null_mut(), Ordering::Release);

    mappings.tear_down()?;
    match exit.map_err(failed("user::run"))? {
        user::UserExit::Exit(code) => Ok(UserExit::Exited(code)),
        user::UserExit::Ended { frame, .. } => Ok(UserExit::Faulted {
            exception: vector_name(frame.vector),
            instruction: frame.iret.rip,
            address: frame.fault_address.0,
        }),
    }
}

/// Copies from the running process's memory, through the kernel root's aliases.
pub(super) fn copy_from_user(address: u64, buffer: &mut [u8]) -> Result<(), ArchError> {
    let slot = REGIONS.load(Ordering::Acquire) as *const &[UserRegion];
    if slot.is_null() {
        return Err(failed("copy_from_user outside a user run")(Errno::EINVAL));
    }
    // SAFETY: non-null only while `run` is on the stack with the image (and so this
    // slice) borrowed for the whole run; the slot is only ever read.
    let regions: &[UserRegion] = unsafe { *slot };
    let inside = address
        .checked_add(buffer.len() as u64)
        .is_some_and(|end| regions.iter().any(|region| region.start <= address && end <= region.end()));
    if !inside {
        return Err(failed("copy_from_user")(Errno::EFAULT));
    }
    // SAFETY: `run` mapped every page of every region at its user address in the kernel
    // root, readable, for the whole run, and the range lies inside one region. No Rust
    // reference covers user memory, and user code is not running while the kernel
    // handles its system call (one vCPU), so nothing writes it during the copy.
    unsafe { ptr::copy_nonoverlapping(address as *const u8, buffer.as_mut_ptr(), buffer.len()) };
    Ok(())
}
