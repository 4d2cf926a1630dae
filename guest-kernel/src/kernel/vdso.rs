//! The vDSO in every process: the image (built once at boot from the platform's code) and
//! the clock page below it, mapped read-only at the same addresses into every new program
//! by `execve` and shared by `fork` like any page. The kernel holds one reference to each
//! frame for its whole life, so no process's `munmap` frees them, and a write is never
//! allowed to reach them: the clock page's region is read-only and cannot be made
//! writable (`mprotect` answers EACCES, as Linux does for its vvar page); the image's can
//! (a debugger's breakpoint), and the first write copies the page for that process alone.
//!
//! The clock page follows the platform's clock: [`Vdso::refresh`] rewrites it, under its
//! sequence count, whenever the parameters changed. One processor and a kernel that runs
//! only between user runs mean no reader is ever inside a write; the count still tells a
//! reader whose read an interrupt split that the page changed under it.

extern crate alloc;

use alloc::vec::Vec;
use core::fmt;

use guest_kernel_core::exec::program::Protection;
use guest_kernel_core::linux::Errno;
use guest_kernel_core::memory::regions::{Purpose, Regions};
use guest_kernel_core::vdso::clock::{ClockPage, ClockParameters};
use guest_kernel_core::vdso::image::{self, ImageError};
use zerocopy::IntoBytes;

use super::exec::STACK_TOP;
use super::frames::{Frames, FRAME_BYTES};
use super::space::Space;
use crate::arch::machine::{Frame, Machine, PageAccess, PAGE_SIZE};
use crate::arch::vdso;

/// Where every process has the clock page; the image follows it (`AT_SYSINFO_EHDR`). Above
/// the stack, with a gap of 1 MiB, where no `mmap` without a fixed address goes.
pub const CLOCK_PAGE_ADDRESS: u64 = STACK_TOP + (1 << 20);
/// The image's first byte, its ELF header.
pub const IMAGE_ADDRESS: u64 = CLOCK_PAGE_ADDRESS + PAGE_SIZE;

const _: () =
    assert!(image::TEXT_TO_CLOCK_PAGE as u64 == image::TEXT_OFFSET as u64 + IMAGE_ADDRESS - CLOCK_PAGE_ADDRESS);

/// Why there is no vDSO (the kernel then runs without one: libc uses system calls).
#[derive(Copy, Clone, Debug)]
pub enum VdsoError {
    /// The platform's code and its function table disagree.
    Image(ImageError),
    /// No frame for it.
    OutOfMemory,
}

impl fmt::Display for VdsoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VdsoError::Image(error) => write!(f, "its image cannot be built ({error:?})"),
            VdsoError::OutOfMemory => f.write_str("no memory for its pages"),
        }
    }
}

/// The vDSO's frames and what the clock page holds.
pub struct Vdso {
    image: Vec<Frame>,
    clock: Frame,
    /// The clock page as last written.
    page: ClockPage,
}

impl Vdso {
    /// Builds the image and the clock page for `parameters` and a wallclock of
    /// `wallclock_at_zero_ns` at clock 0.
    pub fn new(frames: &mut Frames, parameters: ClockParameters, wallclock_at_zero_ns: u64) -> Result<Vdso, VdsoError> {
        let bytes = image::build(vdso::code(), &vdso::functions()).map_err(VdsoError::Image)?;
        let mut taken: Vec<Frame> = Vec::new();
        let release = |frames: &mut Frames, taken: &[Frame]| {
            for &frame in taken {
                let _ = frames.release(frame);
            }
        };
        for chunk in bytes.chunks(FRAME_BYTES) {
            let Some(frame) = frames.allocate() else {
                release(frames, &taken);
                return Err(VdsoError::OutOfMemory);
            };
            taken.push(frame);
            // A frame just allocated is live and a chunk is at most a frame.
            let _ = frames.write(frame, 0, chunk);
        }
        let Some(clock) = frames.allocate() else {
            release(frames, &taken);
            return Err(VdsoError::OutOfMemory);
        };
        let mut vdso = Vdso { image: taken, clock, page: ClockPage::default() };
        vdso.write(frames, ClockPage::new(parameters, wallclock_at_zero_ns, 2));
        Ok(vdso)
    }

    /// Writes `page` (with an even count) under the seqlock.
    fn write(&mut self, frames: &mut Frames, page: ClockPage) {
        let odd = page.sequence.wrapping_sub(1);
        // The clock frame is the kernel's for its whole life: these writes cannot fail.
        let _ = frames.write(self.clock, 0, odd.as_bytes());
        let _ = frames.write(self.clock, 0, page.as_bytes());
        self.page = page;
    }

    /// Brings the clock page up to date with the platform's clock, if it changed.
    pub fn refresh<M: Machine>(&mut self, machine: &M, frames: &mut Frames, wallclock_at_zero_ns: u64) {
        let next = ClockPage::new(machine.clock_parameters(), wallclock_at_zero_ns, self.page.sequence);
        if next != self.page {
            self.write(frames, ClockPage { sequence: self.page.sequence.wrapping_add(2), ..next });
        }
    }

    /// Adds the vDSO's regions to a new program's `regions`.
    pub fn plan(&self, regions: &mut Regions) -> Result<(), Errno> {
        let read = Protection { read: true, write: false, execute: false };
        let code = Protection { read: true, write: false, execute: true };
        regions.insert(CLOCK_PAGE_ADDRESS, PAGE_SIZE, read, Purpose::VdsoData)?;
        regions.insert(IMAGE_ADDRESS, self.image.len() as u64 * PAGE_SIZE, code, Purpose::VdsoImage)?;
        Ok(())
    }

    /// Maps the vDSO's pages into `space` (planned with [`Vdso::plan`]), each one more
    /// holder of the kernel's frame.
    pub fn map<M: Machine>(&self, machine: &M, frames: &mut Frames, space: &mut Space) -> Result<(), Errno> {
        let data = PageAccess { writable: false, executable: false };
        let code = PageAccess { writable: false, executable: true };
        let pages = core::iter::once((CLOCK_PAGE_ADDRESS, self.clock, data)).chain(
            self.image
                .iter()
                .enumerate()
                .map(|(index, &frame)| (IMAGE_ADDRESS + index as u64 * PAGE_SIZE, frame, code)),
        );
        for (address, frame, access) in pages {
            frames.share(frame).map_err(|_| Errno::ENOMEM)?;
            if space.map(machine, address, frame, access).is_err() {
                let _ = frames.release(frame);
                return Err(Errno::ENOMEM);
            }
        }
        Ok(())
    }
}
