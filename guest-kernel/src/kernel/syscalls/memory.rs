//! Memory system calls: `brk`, anonymous `mmap`, `munmap`, `mprotect`, and the advice
//! calls. Core's regions decide; the space's pages follow (freed on unmap, re-protected on
//! `mprotect`, faulted in on demand or at once with `MAP_POPULATE`).

use guest_kernel_core::exec::program::Protection;
use guest_kernel_core::linux::Errno;
use guest_kernel_core::memory::regions::Purpose;
use linux_raw_sys::general as uapi;

use super::{error, Call, Flow};
use crate::arch::machine::{Access, Machine, PAGE_SIZE};
use crate::kernel::space::Resolution;
use crate::kernel::Kernel;

fn protection(prot: u64) -> Result<Protection, Errno> {
    let known = u64::from(uapi::PROT_READ | uapi::PROT_WRITE | uapi::PROT_EXEC);
    if prot & !known != 0 {
        return Err(Errno::EINVAL);
    }
    Ok(Protection {
        read: prot & u64::from(uapi::PROT_READ) != 0,
        write: prot & u64::from(uapi::PROT_WRITE) != 0,
        execute: prot & u64::from(uapi::PROT_EXEC) != 0,
    })
}

/// Frees the pages of the ranges a region change removed.
fn unmap_ranges<M: Machine>(kernel: &mut Kernel<M>, pid: u32, ranges: &[(u64, u64)]) -> Result<(), Errno> {
    let machine = kernel.machine;
    let process = kernel.processes.get_mut(&pid).ok_or(Errno::ESRCH)?;
    let space = process.space.as_mut().ok_or(Errno::ESRCH)?;
    for &(start, end) in ranges {
        space.unmap_range(machine, &mut kernel.frames, start, end).map_err(|_| Errno::ENOMEM)?;
    }
    Ok(())
}

/// `brk(address)`: the new break, or the old one if it cannot move.
pub fn brk<M: Machine>(kernel: &mut Kernel<M>, call: &Call) -> Flow {
    let Some(process) = kernel.processes.get_mut(&call.pid) else { return Flow::Return(error(Errno::ESRCH)) };
    let Some(space) = process.space.as_mut() else { return Flow::Return(error(Errno::ESRCH)) };
    if call.arguments[0] == 0 {
        return Flow::Return(space.regions.break_address());
    }
    let (now, freed) = space.regions.set_break(call.arguments[0]);
    if let Some(range) = freed {
        let _ = unmap_ranges(kernel, call.pid, &[range]);
    }
    Flow::Return(now)
}

/// `mmap(address, length, prot, flags, fd, offset)`: private anonymous mappings.
pub fn mmap<M: Machine>(kernel: &mut Kernel<M>, call: &Call) -> Flow {
    let [address, length, prot, flags, _fd, offset] = call.arguments;
    let result = (|| {
        let protection = protection(prot)?;
        let kind = flags & u64::from(uapi::MAP_TYPE);
        if kind != u64::from(uapi::MAP_PRIVATE) {
            // Shared mappings would need sharing across fork; no program here needs them.
            return Err(Errno::EINVAL);
        }
        if flags & u64::from(uapi::MAP_ANONYMOUS) == 0 {
            // No file-backed mappings: programs read files instead.
            return Err(Errno::ENODEV);
        }
        if length == 0 || offset % PAGE_SIZE != 0 {
            return Err(Errno::EINVAL);
        }
        let fixed = flags & u64::from(uapi::MAP_FIXED | uapi::MAP_FIXED_NOREPLACE) != 0;
        let machine = kernel.machine;
        let process = kernel.processes.get_mut(&call.pid).ok_or(Errno::ESRCH)?;
        let space = process.space.as_mut().ok_or(Errno::ESRCH)?;
        let start = if fixed {
            if address % PAGE_SIZE != 0 {
                return Err(Errno::EINVAL);
            }
            if flags & u64::from(uapi::MAP_FIXED_NOREPLACE) != 0
                && space
                    .regions
                    .iter()
                    .any(|region| region.start < address.saturating_add(length) && address < region.end)
            {
                return Err(Errno::EEXIST);
            }
            let replaced = space.regions.insert(address, length, protection, Purpose::Anonymous)?;
            for (from, to) in replaced {
                space.unmap_range(machine, &mut kernel.frames, from, to).map_err(|_| Errno::ENOMEM)?;
            }
            address
        } else {
            space.regions.map_anywhere(address, length, protection)?
        };
        if flags & u64::from(uapi::MAP_POPULATE) != 0 {
            let end = start.saturating_add(length);
            let mut page = start;
            while page < end {
                match space.resolve(machine, &mut kernel.frames, page, Access::Read) {
                    Resolution::Mapped | Resolution::Refused => {}
                    Resolution::OutOfMemory | Resolution::Platform(_) => return Err(Errno::ENOMEM),
                }
                if protection.write {
                    let _ = space.resolve(machine, &mut kernel.frames, page, Access::Write);
                }
                page += PAGE_SIZE;
            }
        }
        Ok(start)
    })();
    result.into()
}

/// `munmap(address, length)`.
pub fn munmap<M: Machine>(kernel: &mut Kernel<M>, call: &Call) -> Flow {
    let [address, length, ..] = call.arguments;
    let result = (|| {
        let process = kernel.processes.get_mut(&call.pid).ok_or(Errno::ESRCH)?;
        let space = process.space.as_mut().ok_or(Errno::ESRCH)?;
        let removed = space.regions.unmap(address, length)?;
        unmap_ranges(kernel, call.pid, &removed)?;
        Ok(0)
    })();
    result.into()
}

/// `mprotect(address, length, prot)`.
pub fn mprotect<M: Machine>(kernel: &mut Kernel<M>, call: &Call) -> Flow {
    let [address, length, prot, ..] = call.arguments;
    let result = (|| {
        let protection = protection(prot)?;
        if address % PAGE_SIZE != 0 {
            return Err(Errno::EINVAL);
        }
        let machine = kernel.machine;
        let process = kernel.processes.get_mut(&call.pid).ok_or(Errno::ESRCH)?;
        let space = process.space.as_mut().ok_or(Errno::ESRCH)?;
        space.regions.protect(address, length, protection)?;
        let end = address.saturating_add(length.next_multiple_of(PAGE_SIZE));
        space.reprotect(machine, &kernel.frames, address, end).map_err(|_| Errno::ENOMEM)?;
        Ok(0)
    })();
    result.into()
}

/// `madvise`: advice only; `MADV_DONTNEED` on private anonymous memory means "zero it"
/// on Linux, so those pages are dropped.
pub fn madvise<M: Machine>(kernel: &mut Kernel<M>, call: &Call) -> Flow {
    let [address, length, advice, ..] = call.arguments;
    if address % PAGE_SIZE != 0 {
        return Flow::Return(error(Errno::EINVAL));
    }
    if advice == u64::from(uapi::MADV_DONTNEED) {
        let end = address.saturating_add(length.next_multiple_of(PAGE_SIZE));
        return unmap_ranges(kernel, call.pid, &[(address, end)]).map(|()| 0).into();
    }
    Flow::Return(0)
}

/// `mremap`: not provided; libc falls back to allocate, copy and free.
pub fn mremap<M: Machine>(_kernel: &mut Kernel<M>, _call: &Call) -> Flow {
    Flow::Return(error(Errno::ENOMEM))
}
