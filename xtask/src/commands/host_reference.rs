//! Native Linux measurements that `cargo xtask bench` sets beside the guest rows, taken
//! in the same run on the same machine so that the ratios do not depend on which CPU the
//! bench ran on. Each reference is the closest thing Linux does natively to what the
//! guest row does: a system call, a minor page fault, a populated shared mapping, a
//! signal for a breakpoint, a pipe ping-pong, a clock read, a yield to another process,
//! a sleep until a deadline, starting processes. All counts are TSC cycles per iteration.
//!
//! The references with several processes pin them all to one CPU (the one the
//! measurement starts on; children inherit it), because the guest rows they are held
//! against run on the hypervisor's one CPU: a second CPU would let the host overlap what
//! the guest must do in turn.

use std::ffi::{c_void, CString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

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
    /// One byte written to a child process through one pipe and written back through
    /// another, both processes on one CPU: the parent's `write` wakes the child, its
    /// `read` blocks until the reply. Cycles per round trip.
    PipePingPong,
    /// `clock_gettime(CLOCK_MONOTONIC)`: the vDSO's seqlocked read of the kernel's time
    /// data, `rdtsc` and the scaling — no system call with the TSC clocksource.
    ClockGettime,
    /// `sched_yield()` between two processes that do nothing else, both on one CPU: half
    /// a round trip (the parent's yield runs the child, whose yield runs the parent), so
    /// cycles per switch, yield included.
    SchedYield,
    /// How late `clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME)` returns for a deadline
    /// [`SLEEP_AHEAD_NS`] ahead, with the thread's timer slack at 1 ns (the default 50 µs
    /// slack is a deliberate delay the guest's timer does not have). Cycles late.
    NanosleepLateness,
    /// `fork` + `execv("/bin/true")` of 64 processes on one CPU, then `waitpid` of all
    /// 64: the nearest native thing to starting 64 small domains. Cycles per batch.
    Spawn64,
}

/// Pages of the [`Reference::MapPopulate`] batch; the guest's map-batch row uses as many.
pub const MAP_BATCH_PAGES: usize = 512;

/// How far ahead [`Reference::NanosleepLateness`] sets each deadline (the guest's timer
/// row sets its own: the lateness, not the sleep, is measured).
pub const SLEEP_AHEAD_NS: u64 = 1_000_000;

/// Processes per [`Reference::Spawn64`] batch: as many as the boot row's domains.
pub const SPAWN_BATCH: usize = 64;

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
    pub const ALL: [Reference; 9] = [
        Reference::Getppid,
        Reference::MinorFault,
        Reference::MapPopulate,
        Reference::Sigtrap,
        Reference::PipePingPong,
        Reference::ClockGettime,
        Reference::SchedYield,
        Reference::NanosleepLateness,
        Reference::Spawn64,
    ];

    /// The name in the table's `reference` column.
    pub fn name(self) -> &'static str {
        match self {
            Reference::Getppid => "getppid",
            Reference::MinorFault => "minor fault",
            Reference::MapPopulate => "mmap populate 512",
            Reference::Sigtrap => "SIGTRAP",
            Reference::PipePingPong => "pipe ping-pong",
            Reference::ClockGettime => "clock_gettime",
            Reference::SchedYield => "sched_yield",
            Reference::NanosleepLateness => "clock_nanosleep",
            Reference::Spawn64 => "fork+exec+wait 64",
        }
    }

    /// (warm-up, measured) iterations: enough that the median is stable, few enough that
    /// all references together take a few seconds (the sleeps and the 64-process batches
    /// are most of it).
    pub fn iterations(self) -> (usize, usize) {
        match self {
            Reference::Getppid => (10_000, 200_000),
            Reference::MinorFault => (FAULT_REGION_PAGES, 8 * FAULT_REGION_PAGES),
            Reference::MapPopulate => (100, 2_000),
            Reference::Sigtrap => (1_000, 50_000),
            Reference::PipePingPong => (1_000, 20_000),
            Reference::ClockGettime => (10_000, 200_000),
            Reference::SchedYield => (1_000, 20_000),
            Reference::NanosleepLateness => (20, 500),
            Reference::Spawn64 => (1, 8),
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
            Reference::PipePingPong => measure_pipe_ping_pong(warm_up, iterations)?,
            Reference::ClockGettime => measure_clock_gettime(warm_up, iterations)?,
            Reference::SchedYield => measure_sched_yield(warm_up, iterations)?,
            Reference::NanosleepLateness => measure_nanosleep_lateness(warm_up, iterations)?,
            Reference::Spawn64 => measure_spawn_batch(warm_up, iterations)?,
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
        let address =
            unsafe { libc::mmap(std::ptr::null_mut(), length, libc::PROT_READ | libc::PROT_WRITE, flags, fd, 0) };
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

/// Pins the calling thread to the CPU it runs on now, until dropped (then the previous
/// affinity is restored). Processes forked meanwhile inherit the one CPU.
struct PinnedToOneCpu {
    previous: libc::cpu_set_t,
}

impl PinnedToOneCpu {
    fn new() -> io::Result<Self> {
        // SAFETY: an all-zero cpu_set_t is the empty set; the kernel fills it in.
        let mut previous: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: the pointer and size describe `previous`, a live local.
        if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut previous) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: no preconditions.
        let cpu = unsafe { libc::sched_getcpu() };
        if cpu < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: as above, the empty set.
        let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `cpu` came from sched_getcpu, so it is below CPU_SETSIZE.
        unsafe { libc::CPU_SET(cpu as usize, &mut one) };
        // SAFETY: the pointer and size describe `one`, a live local.
        if unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &one) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { previous })
    }
}

impl Drop for PinnedToOneCpu {
    fn drop(&mut self) {
        // SAFETY: the pointer and size describe the set read in `new`.
        unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &self.previous) };
    }
}

/// A forked child process, killed and reaped on drop.
struct Child {
    pid: libc::pid_t,
}

impl Child {
    /// Forks; the child runs `body`, then `_exit(0)`. `body` must make only
    /// async-signal-safe calls (no allocation, no locks): the child is a copy of a process
    /// that may have other threads, whose locks it inherits held.
    fn spawn(body: impl FnOnce()) -> io::Result<Self> {
        // SAFETY: the child runs only `body` (async-signal-safe by the contract above) and
        // `_exit`, which skips every destructor and atexit handler of the copied process.
        match unsafe { libc::fork() } {
            -1 => Err(io::Error::last_os_error()),
            0 => {
                body();
                // SAFETY: ends the child without running the parent's cleanup twice.
                unsafe { libc::_exit(0) }
            }
            pid => Ok(Self { pid }),
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let mut status = 0;
        // SAFETY: `pid` is our child, not yet reaped (only this drop reaps it), so the
        // number cannot belong to another process; the status pointer is a live local.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            libc::waitpid(self.pid, &mut status, 0);
        }
    }
}

/// A pipe: (read end, write end), both close-on-exec.
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors are new and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Reads or writes one byte; true if one byte moved.
fn transfer_byte(fd: i32, write: bool) -> bool {
    let mut byte = 0u8;
    let buffer = (&mut byte as *mut u8).cast::<c_void>();
    // SAFETY: the buffer is one live byte; read and write are async-signal-safe.
    let moved = unsafe {
        if write {
            libc::write(fd, buffer, 1)
        } else {
            libc::read(fd, buffer, 1)
        }
    };
    moved == 1
}

/// Cycles of a one-byte round trip to a child process through two pipes, both processes
/// pinned to one CPU. The parent's ends of the child's pipes are closed after the fork, so
/// a child that dies gives an end-of-file, not a hang.
fn measure_pipe_ping_pong(warm_up: usize, iterations: usize) -> io::Result<Vec<u64>> {
    let _pinned = PinnedToOneCpu::new()?;
    let (ping_read, ping_write) = pipe()?;
    let (pong_read, pong_write) = pipe()?;
    let (child_read, child_write) = (ping_read.as_raw_fd(), pong_write.as_raw_fd());
    let child = Child::spawn(|| while transfer_byte(child_read, false) && transfer_byte(child_write, true) {})?;
    drop((ping_read, pong_write));
    let (ping, pong) = (ping_write.as_raw_fd(), pong_read.as_raw_fd());
    let mut failed = false;
    let samples = sample(warm_up, iterations, || {
        // After a failure the rest of the samples are not worth waiting for.
        if !failed {
            failed = !(transfer_byte(ping, true) && transfer_byte(pong, false));
        }
    });
    drop(child);
    if failed {
        return Err(io::Error::other("the pipe ping-pong child stopped answering"));
    }
    Ok(samples)
}

/// `CLOCK_MONOTONIC` in nanoseconds.
fn monotonic_ns() -> io::Result<u64> {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: the pointer is a live local the call fills in.
    if unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64)
}

fn measure_clock_gettime(warm_up: usize, iterations: usize) -> io::Result<Vec<u64>> {
    monotonic_ns()?;
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    let samples = sample(warm_up, iterations, || {
        // SAFETY: as in monotonic_ns; CLOCK_MONOTONIC works (checked above).
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
        std::hint::black_box(&now);
    });
    Ok(samples)
}

/// Cycles per switch: half of each `sched_yield` round trip of this process and a child
/// that yields in a loop, both pinned to one CPU. The child counts its yields in a shared
/// page; a yield that came back without the child having run would be no switch at all,
/// so more than a tenth of those (a scheduler that does not switch on `sched_yield`; a few
/// go to other threads of this process in unit tests) is an error, not a flattering number.
fn measure_sched_yield(warm_up: usize, iterations: usize) -> io::Result<Vec<u64>> {
    let _pinned = PinnedToOneCpu::new()?;
    let shared = Mapping::new(PAGE_SIZE, libc::MAP_SHARED | libc::MAP_ANONYMOUS, -1)?;
    // SAFETY: the page is live, page aligned and zeroed until `shared` drops, which is
    // after the child is killed; only atomics access the counter in either process.
    let child_yields = unsafe { AtomicU64::from_ptr(shared.address.cast::<u64>()) };
    let child = Child::spawn(|| loop {
        child_yields.fetch_add(1, Ordering::Relaxed);
        // SAFETY: no preconditions; async-signal-safe.
        unsafe { libc::sched_yield() };
    })?;
    while child_yields.load(Ordering::Relaxed) == 0 {
        // SAFETY: no preconditions.
        unsafe { libc::sched_yield() };
    }
    let mut no_switch = 0usize;
    let mut samples = sample(warm_up, iterations, || {
        let before = child_yields.load(Ordering::Relaxed);
        // SAFETY: no preconditions.
        unsafe { libc::sched_yield() };
        if child_yields.load(Ordering::Relaxed) == before {
            no_switch += 1;
        }
    });
    drop(child);
    if no_switch > (warm_up + iterations) / 10 {
        return Err(io::Error::other(format!(
            "{no_switch} of {} sched_yield calls returned without running the other process",
            warm_up + iterations
        )));
    }
    for sample in &mut samples {
        *sample /= 2;
    }
    Ok(samples)
}

/// The calling thread's timer slack set to `nanoseconds` until dropped (then restored).
struct TimerSlack {
    previous: libc::c_ulong,
}

impl TimerSlack {
    fn set(nanoseconds: libc::c_ulong) -> io::Result<Self> {
        // SAFETY: PR_GET_TIMERSLACK takes no pointers and returns the slack.
        let previous = unsafe { libc::prctl(libc::PR_GET_TIMERSLACK, 0, 0, 0, 0) };
        // SAFETY: PR_SET_TIMERSLACK takes a value, no pointers.
        if previous < 0 || unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, nanoseconds, 0, 0, 0) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { previous: previous as libc::c_ulong })
    }
}

impl Drop for TimerSlack {
    fn drop(&mut self) {
        // SAFETY: as in `set`.
        unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, self.previous, 0, 0, 0) };
    }
}

/// Cycles between each deadline and the `CLOCK_MONOTONIC` reading after
/// `clock_nanosleep(TIMER_ABSTIME)` returned for it. The lateness is measured in
/// nanoseconds and converted with the TSC rate measured over the whole run (the same
/// readings' span), as the guest converts with its time info's scale.
fn measure_nanosleep_lateness(warm_up: usize, iterations: usize) -> io::Result<Vec<u64>> {
    let _slack = TimerSlack::set(1)?;
    let (first_tsc, first_ns) = (timestamp(), monotonic_ns()?);
    let mut late_ns = Vec::with_capacity(iterations);
    for round in 0..warm_up + iterations {
        let deadline = monotonic_ns()? + SLEEP_AHEAD_NS;
        let until = libc::timespec {
            tv_sec: (deadline / 1_000_000_000) as libc::time_t,
            tv_nsec: (deadline % 1_000_000_000) as libc::c_long,
        };
        loop {
            // SAFETY: the request is a live local; no remainder is asked for.
            let error = unsafe {
                libc::clock_nanosleep(libc::CLOCK_MONOTONIC, libc::TIMER_ABSTIME, &until, std::ptr::null_mut())
            };
            match error {
                0 => break,
                libc::EINTR => continue,
                error => return Err(io::Error::from_raw_os_error(error)),
            }
        }
        let woke = monotonic_ns()?;
        if round >= warm_up {
            late_ns.push(woke.saturating_sub(deadline));
        }
    }
    let (last_tsc, last_ns) = (timestamp(), monotonic_ns()?);
    let cycles_per_ns = last_tsc.wrapping_sub(first_tsc) as f64 / last_ns.saturating_sub(first_ns).max(1) as f64;
    Ok(late_ns.into_iter().map(|ns| (ns as f64 * cycles_per_ns) as u64).collect())
}

/// The `true` program, for the spawn batches.
fn true_program() -> io::Result<CString> {
    let path = ["/bin/true", "/usr/bin/true"]
        .into_iter()
        .find(|path| std::path::Path::new(path).is_file())
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "neither /bin/true nor /usr/bin/true exists"))?;
    Ok(CString::new(path).expect("no NUL in a literal path"))
}

/// Cycles of one batch: [`SPAWN_BATCH`] × (`fork`, `execv(true)` in the child), then a
/// `waitpid` for each; every child must exit with 0. One CPU, as the hypervisor has.
fn measure_spawn_batch(warm_up: usize, iterations: usize) -> io::Result<Vec<u64>> {
    let _pinned = PinnedToOneCpu::new()?;
    let program = true_program()?;
    let argv = [program.as_ptr(), std::ptr::null()];
    let mut pids = Vec::with_capacity(SPAWN_BATCH);
    let mut failure: Option<io::Error> = None;
    let samples = sample(warm_up, iterations, || {
        if failure.is_some() {
            return;
        }
        for _ in 0..SPAWN_BATCH {
            // SAFETY: the child calls only execv and _exit (async-signal-safe) with
            // pointers prepared before the fork.
            match unsafe { libc::fork() } {
                -1 => {
                    failure = Some(io::Error::last_os_error());
                    break;
                }
                0 => {
                    // SAFETY: `argv` is a NULL-terminated array of NUL-terminated strings
                    // that outlive the call; `_exit` only if execv failed.
                    unsafe {
                        libc::execv(program.as_ptr(), argv.as_ptr());
                        libc::_exit(127)
                    }
                }
                pid => pids.push(pid),
            }
        }
        for pid in pids.drain(..) {
            let mut status = 0;
            // SAFETY: `pid` is our unreaped child; the status pointer is a live local.
            let reaped = unsafe { libc::waitpid(pid, &mut status, 0) };
            if reaped != pid || !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
                failure.get_or_insert_with(|| io::Error::other(format!("child {pid}: wait status {status:#x}")));
            }
        }
    });
    match failure {
        Some(error) => Err(error),
        None => Ok(samples),
    }
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
