//! Native Linux measurements that `cargo xtask bench` sets beside the guest rows, taken
//! in the same run on the same machine so that the ratios do not depend on which CPU the
//! bench ran on. Each reference is the closest thing Linux does natively to what the
//! guest row does: a system call, a minor page fault, a populated shared mapping, a
//! signal for a breakpoint. All counts are TSC cycles per iteration.

use std::ffi::c_void;
use std::io;

/// A native operation measured on the host.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Reference {
    /// `getppid()`: the cheapest system call that always enters the kernel (glibc caches
    /// nothing for it).
    Getppid,
    /// A minor fault: the first write to a page of fresh private anonymous memory, so the
    /// kernel allocates and zeroes a page and maps it. Cycles per touch.
    MinorFault,
    /// `mmap(MAP_SHARED | MAP_POPULATE)` of 512 already-populated memfd pages, one write
    /// per page, `munmap`. Cycles per whole map + touch + unmap.
    MapPopulate,
    /// `int3` delivered as SIGTRAP to an installed handler that returns at once.
    Sigtrap,
}

/// Pages of the [`Reference::MapPopulate`] batch; the guest's map-batch row uses as many.
pub const MAP_BATCH_PAGES: usize = 512;

/// Pages mapped per round of the minor-fault measurement; each is touched once, then the
/// region is unmapped (untimed) and a fresh one mapped.
const FAULT_REGION_PAGES: usize = 4096;

const PAGE_SIZE: usize = 4096;

/// Median and 99th percentile of one reference, and how many samples they came from.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Measurement {
    /// 50th percentile (upper middle for an even count).
    pub median: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Samples measured (after the warm-up).
    pub iterations: usize,
}

impl Reference {
    /// Every reference, in the order the table lists them.
    pub const ALL: [Reference; 4] = [Reference::Getppid, Reference::MinorFault, Reference::MapPopulate, Reference::Sigtrap];

    /// The name in the table's `reference` column.
    pub fn name(self) -> &'static str {
        match self {
            Reference::Getppid => "getppid",
            Reference::MinorFault => "minor fault",
            Reference::MapPopulate => "mmap populate 512",
            Reference::Sigtrap => "SIGTRAP",
        }
    }

    /// (warm-up, measured) iterations: enough that the median is stable, few enough that
    /// all references together take well under a second.
    pub fn iterations(self) -> (usize, usize) {
        match self {
            Reference::Getppid => (10_000, 200_000),
            Reference::MinorFault => (FAULT_REGION_PAGES, 8 * FAULT_REGION_PAGES),
            Reference::MapPopulate => (100, 2_000),
            Reference::Sigtrap => (1_000, 50_000),
        }
    }

    /// Measures this reference now.
    pub fn measure(self) -> io::Result<Measurement> {
        let (warm_up, iterations) = self.iterations();
        let mut samples = match self {
            Reference::Getppid => measure_getppid(warm_up, iterations),
            Reference::MinorFault => measure_minor_faults(warm_up, iterations)?,
            Reference::MapPopulate => measure_map_populate(warm_up, iterations)?,
            Reference::Sigtrap => measure_sigtrap(warm_up, iterations)?,
        };
        let (median, p99) = median_p99(&mut samples);
        Ok(Measurement { median, p99, iterations })
    }
}

/// Median and 99th percentile of `samples` (sorted in place).
pub fn median_p99(samples: &mut [u64]) -> (u64, u64) {
    assert!(!samples.is_empty());
    samples.sort_unstable();
    let p99 = (samples.len() * 99 / 100).min(samples.len() - 1);
    (samples[samples.len() / 2], samples[p99])
}

/// The TSC, fenced on both sides so the read neither moves into nor out of the work.
/// Inline assembly rather than the intrinsics so the cost is the same in the debug build
/// `cargo xtask` runs as in a release build (the references must not be inflated by
/// unoptimized Rust, or every ratio would flatter the guest).
#[inline(always)]
pub fn timestamp() -> u64 {
    let low: u32;
    let high: u32;
    // SAFETY: lfence and rdtsc are unprivileged on Linux and write only EAX/EDX; no
    // `nomem`, so the compiler keeps the measured memory accesses on their side.
    unsafe {
        core::arch::asm!("lfence", "rdtsc", "lfence", out("eax") low, out("edx") high, options(nostack, preserves_flags));
    }
    (u64::from(high) << 32) | u64::from(low)
}

/// Writes one byte at the start of each of `pages` pages from `address`, in assembly so
/// the loop costs the same at any optimization level.
///
/// # Safety
///
/// The pages must be mapped writable and owned by the caller.
#[inline(always)]
unsafe fn touch_pages(address: *mut u8, pages: usize) {
    if pages == 0 {
        return;
    }
    // SAFETY: the caller guarantees `pages` writable pages at `address`.
    unsafe {
        core::arch::asm!(
            "2:",
            "mov byte ptr [{address}], 1",
            "add {address}, 4096",
            "dec {pages}",
            "jnz 2b",
            address = inout(reg) address => _,
            pages = inout(reg) pages => _,
            options(nostack),
        );
    }
}

/// `warm_up` unmeasured runs of `work`, then `iterations` measured ones.
fn sample(warm_up: usize, iterations: usize, mut work: impl FnMut()) -> Vec<u64> {
    for _ in 0..warm_up {
        work();
    }
    let mut samples = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let start = timestamp();
        work();
        samples.push(timestamp().wrapping_sub(start));
    }
    samples
}

fn measure_getppid(warm_up: usize, iterations: usize) -> Vec<u64> {
    let mut sink = 0u32;
    // SAFETY: getppid has no preconditions.
    let samples = sample(warm_up, iterations, || sink = sink.wrapping_add(unsafe { libc::getppid() } as u32));
    std::hint::black_box(sink);
    samples
}

/// An anonymous or shared mapping, unmapped on drop.
struct Mapping {
    address: *mut u8,
    length: usize,
}

impl Mapping {
    /// `mmap(NULL, length, READ|WRITE, flags, fd, 0)`.
    fn new(length: usize, flags: i32, fd: i32) -> io::Result<Self> {
        // SAFETY: a fresh mapping chosen by the kernel (NULL hint, no MAP_FIXED) cannot
        // overlap anything Rust owns.
        let address = unsafe { libc::mmap(std::ptr::null_mut(), length, libc::PROT_READ | libc::PROT_WRITE, flags, fd, 0) };
        if address == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { address: address.cast(), length })
    }

    /// Writes one byte to each page of `pages` (volatile: every write happens, once).
    fn touch(&self, pages: std::ops::Range<usize>) {
        assert!(pages.start <= pages.end && pages.end * PAGE_SIZE <= self.length);
        // SAFETY: the pages are inside this live read-write mapping.
        unsafe { touch_pages(self.address.add(pages.start * PAGE_SIZE), pages.len()) };
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the range is exactly the mapping this value owns, and no reference into
        // it outlives `self`.
        unsafe { libc::munmap(self.address.cast::<c_void>(), self.length) };
    }
}

/// Cycles of each first write to a page of fresh private anonymous memory. Regions of
/// [`FAULT_REGION_PAGES`] are mapped and unmapped outside the timed touches, and marked
/// `MADV_NOHUGEPAGE` so every touch is one 4 KiB minor fault rather than one 2 MiB fault
/// followed by free touches.
fn measure_minor_faults(warm_up: usize, iterations: usize) -> io::Result<Vec<u64>> {
    let mut samples = Vec::with_capacity(warm_up + iterations);
    while samples.len() < warm_up + iterations {
        let region = Mapping::new(FAULT_REGION_PAGES * PAGE_SIZE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1)?;
        // SAFETY: advice on our own live mapping; it changes no contents.
        if unsafe { libc::madvise(region.address.cast(), region.length, libc::MADV_NOHUGEPAGE) } != 0 {
            return Err(io::Error::last_os_error());
        }
        for page in 0..FAULT_REGION_PAGES.min(warm_up + iterations - samples.len()) {
            let start = timestamp();
            region.touch(page..page + 1);
            samples.push(timestamp().wrapping_sub(start));
        }
    }
    Ok(samples.split_off(warm_up))
}

/// A memfd of `pages` pages, every page populated before it is returned.
fn populated_memfd(pages: usize) -> io::Result<std::fs::File> {
    use std::os::fd::FromRawFd;
    // SAFETY: the name is a NUL-terminated literal; the call creates a new descriptor.
    let fd = unsafe { libc::memfd_create(c"ringfence-bench".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor nobody else owns; File closes it on drop.
    let file = unsafe { std::fs::File::from_raw_fd(fd) };
    file.set_len((pages * PAGE_SIZE) as u64)?;
    let mapping = Mapping::new(pages * PAGE_SIZE, libc::MAP_SHARED, fd)?;
    mapping.touch(0..pages);
    Ok(file)
}

/// Cycles of `mmap(MAP_SHARED | MAP_POPULATE)` + one write per page + `munmap` of a memfd
/// of [`MAP_BATCH_PAGES`] pages whose page-cache pages exist before timing starts.
fn measure_map_populate(warm_up: usize, iterations: usize) -> io::Result<Vec<u64>> {
    use std::os::fd::AsRawFd;
    let file = populated_memfd(MAP_BATCH_PAGES)?;
    let fd = file.as_raw_fd();
    let mut failure = None;
    let samples = sample(warm_up, iterations, || {
        match Mapping::new(MAP_BATCH_PAGES * PAGE_SIZE, libc::MAP_SHARED | libc::MAP_POPULATE, fd) {
            Ok(mapping) => mapping.touch(0..MAP_BATCH_PAGES),
            Err(error) => failure = Some(error),
        }
    });
    match failure {
        Some(error) => Err(error),
        None => Ok(samples),
    }
}

extern "C" fn ignore_signal(_signal: libc::c_int) {}

/// Cycles of `int3` → SIGTRAP handler → return. The kernel reports `int3` as a trap with
/// the saved RIP after the instruction, so returning from the handler goes on.
fn measure_sigtrap(warm_up: usize, iterations: usize) -> io::Result<Vec<u64>> {
    // SAFETY: all-zero is a valid `sigaction` (empty mask, no flags) that we fill in.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = ignore_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: as above, the old action is written by the kernel.
    let mut previous: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are to live locals; the handler is async-signal-safe (empty).
    if unsafe { libc::sigaction(libc::SIGTRAP, &action, &mut previous) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let samples = sample(warm_up, iterations, || {
        // SAFETY: with the handler installed, int3 raises SIGTRAP, the handler returns and
        // execution continues after the instruction with every register restored.
        unsafe { core::arch::asm!("int3") };
    });
    // SAFETY: restores the action read above.
    unsafe { libc::sigaction(libc::SIGTRAP, &previous, std::ptr::null_mut()) };
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statistics() {
        let mut samples: Vec<u64> = (1..=100).rev().collect();
        assert_eq!(median_p99(&mut samples), (51, 100));
        assert_eq!(median_p99(&mut [7]), (7, 7));
    }

    #[test]
    fn names_are_distinct() {
        let mut names: Vec<&str> = Reference::ALL.iter().map(|reference| reference.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Reference::ALL.len());
    }

    #[test]
    fn every_reference_is_measured() {
        for reference in Reference::ALL {
            let measurement = reference.measure().unwrap_or_else(|error| panic!("{}: {error}", reference.name()));
            eprintln!("{}: {measurement:?}", reference.name());
            assert!(measurement.median > 0 && measurement.p99 >= measurement.median, "{reference:?} {measurement:?}");
            assert_eq!(measurement.iterations, reference.iterations().1);
        }
    }

    #[test]
    fn faults_cost_more_than_a_syscall() {
        // A minor fault allocates and zeroes a page; it cannot be cheaper than getppid.
        // (A sanity check that the touches really fault, i.e. no huge page got in.)
        let fault = Reference::MinorFault.measure().unwrap();
        let syscall = Reference::Getppid.measure().unwrap();
        assert!(fault.median > syscall.median, "fault {fault:?} syscall {syscall:?}");
    }
}
