//! The one door through which system calls touch a process's memory: core's
//! [`UserMemory`] over the process's [`Space`] and the [`Frames`] behind it. An address
//! the process may not access is EFAULT; a page the process may access but has not
//! touched yet reads as zeros and is mapped (or copied, after `fork`) when written, just
//! as the process's own access would.

use guest_kernel_core::linux::Errno;
use guest_kernel_core::memory::regions::Access as RegionAccess;
use guest_kernel_core::user_memory::UserMemory;

use super::frames::{Frames, FRAME_BYTES};
use super::space::{Resolution, Space};
use crate::arch::machine::{Access, Machine, PAGE_SIZE, USER_LIMIT};

/// A process's memory as one system call sees it.
pub struct UserAccess<'a, M: Machine> {
    pub machine: &'a M,
    pub space: &'a mut Space,
    pub frames: &'a mut Frames,
}

/// Splits `[address, address + length)` into per-page pieces: (page, offset, length, done).
fn pieces(address: u64, length: usize) -> Result<impl Iterator<Item = (u64, usize, usize, usize)>, Errno> {
    let end = address.checked_add(length as u64).ok_or(Errno::EFAULT)?;
    if end > USER_LIMIT {
        return Err(Errno::EFAULT);
    }
    let mut at = address;
    Ok(core::iter::from_fn(move || {
        if at >= end {
            return None;
        }
        let page = at & !(PAGE_SIZE - 1);
        let offset = (at - page) as usize;
        let piece = (FRAME_BYTES - offset).min((end - at) as usize);
        let done = (at - address) as usize;
        at += piece as u64;
        Some((page, offset, piece, done))
    }))
}

impl<M: Machine> UserMemory for UserAccess<'_, M> {
    fn read(&self, address: u64, into: &mut [u8]) -> Result<(), Errno> {
        for (page, offset, length, done) in pieces(address, into.len())? {
            if !self.space.regions.allows(page + offset as u64, RegionAccess::Read) {
                return Err(Errno::EFAULT);
            }
            let target = &mut into[done..done + length];
            match self.space.page(page) {
                Some(mapped) => self.frames.read(mapped.frame, offset, target).map_err(|_| Errno::EFAULT)?,
                None => target.fill(0),
            }
        }
        Ok(())
    }

    fn write(&mut self, address: u64, from: &[u8]) -> Result<(), Errno> {
        for (page, offset, length, done) in pieces(address, from.len())? {
            match self.space.resolve(self.machine, self.frames, page + offset as u64, Access::Write) {
                Resolution::Mapped => {}
                Resolution::Refused | Resolution::Platform(_) => return Err(Errno::EFAULT),
                Resolution::OutOfMemory => return Err(Errno::ENOMEM),
            }
            let mapped = self.space.page(page).ok_or(Errno::EFAULT)?;
            self.frames.write(mapped.frame, offset, &from[done..done + length]).map_err(|_| Errno::EFAULT)?;
        }
        Ok(())
    }
}
