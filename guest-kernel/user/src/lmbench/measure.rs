//! The rows' work, each iteration timed on its own with [`now`] before and after.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};

use super::cycles::now;
use super::row::Row;
use crate::process::{errno, errno_name, exit_now, fork, pipe, read, wait_for, write, Fork, Status};

/// Where the initramfs installs `fork exec`'s program.
pub const INSTALLED_TRUE: &str = "/bin/lmbench-true";
/// Its name next to `lmbench` (in a build directory).
const TRUE_NAME: &str = "lmbench-true";
/// Its exit code when `execve` fails in the child.
const EXEC_FAILED: i32 = 127;

/// The page size of x86_64.
const PAGE_SIZE: usize = 4096;
/// Pages `page fault` maps at a time: 4 MiB, far more than any cache of page-table
/// entries holds, little enough for a small guest; a longer row maps again.
const FAULT_CHUNK_PAGES: usize = 1024;
/// Pages `mmap 512` maps (2 MiB).
const POPULATED_PAGES: usize = 512;

/// The sample buffer: allocated and written once, before any row, so that no row's
/// samples include the faults and allocations of storing them.
pub struct Samples {
    taken: Vec<u64>,
}

impl Samples {
    /// Room for `capacity` samples, its pages already touched.
    pub fn new(capacity: usize) -> Samples {
        let mut taken = Vec::with_capacity(capacity);
        taken.resize(capacity, u64::MAX);
        taken.clear();
        Samples { taken }
    }

    /// Stores a sample; [`measure`] has checked there is room (a row records at most its
    /// iterations, and its warm-ups are fewer).
    fn record(&mut self, cycles: u64) {
        self.taken.push(cycles);
    }

    /// The samples of the last row.
    pub fn taken(&mut self) -> &mut [u64] {
        &mut self.taken
    }
}

/// What rows need from outside the program.
#[derive(Clone, Debug, Default)]
pub struct Context {
    /// How the program was run (`argv[0]`): `fork exec`'s program may be next to it.
    pub invoked_as: String,
    /// Why `/dev/null` could not be made available, when lmbench had to (as PID 1).
    pub dev_null_problem: Option<String>,
}

/// Keeps this process and its children on 4 KiB pages: Linux could back `page fault`'s
/// and `mmap 512`'s regions with 2 MiB transparent huge pages, which guest-kernel and Linux
/// as a Xen PV guest do not have, and the columns would not measure the same work. A
/// kernel without such pages refuses the call or ignores it: there is nothing to turn off.
pub fn small_pages_only() {
    // SAFETY: PR_SET_THP_DISABLE takes no pointer.
    unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
}

/// Untimed iterations before the timed ones, so that caches, TLBs and the kernel's
/// first-use paths (a pipe's buffer, a page-table page) are warm as in the timed ones.
pub fn warm_ups(iterations: usize) -> usize {
    (iterations / 10).clamp(1, 100)
}

/// Measures `row` `iterations` times into `samples` (emptied first).
pub fn measure(row: Row, iterations: usize, samples: &mut Samples, context: &Context) -> Result<(), String> {
    if iterations > samples.taken.capacity() {
        return Err(format!("{iterations} iterations, but room for {} samples", samples.taken.capacity()));
    }
    samples.taken.clear();
    match row {
        Row::NullSyscall => null_syscall(iterations, samples),
        Row::WriteDevnull => write_devnull(iterations, samples, context),
        Row::ForkExit => fork_exit(iterations, samples),
        Row::ForkExec => fork_exec(iterations, samples, context),
        Row::PipeRoundtrip => pipe_roundtrip(iterations, samples),
        Row::CtxSwitch => ctx_switch(iterations, samples),
        Row::PageFault => page_fault(iterations, samples),
        Row::Mmap512 => mmap_512(iterations, samples),
        Row::ClockGettime => clock_gettime(iterations, samples),
    }
}

/// Runs `once` for the warm-ups, then `iterations` times recording the cycles it returns.
fn repeat(
    iterations: usize,
    samples: &mut Samples,
    mut once: impl FnMut() -> Result<u64, String>,
) -> Result<(), String> {
    for _ in 0..warm_ups(iterations) {
        once()?;
    }
    for _ in 0..iterations {
        let cycles = once()?;
        samples.record(cycles);
    }
    Ok(())
}

/// The cycles from `start` to `end` (zero, not a wrapped-around count, should a
/// migration between processors with unsynchronized counters ever run the clock back).
fn elapsed(start: u64, end: u64) -> u64 {
    end.saturating_sub(start)
}

fn failed(call: &str) -> String {
    format!("{call} failed: {}", errno_name(errno()))
}

fn null_syscall(iterations: usize, samples: &mut Samples) -> Result<(), String> {
    repeat(iterations, samples, || {
        let start = now();
        // SAFETY: getppid takes no arguments and touches no memory.
        let parent = unsafe { libc::syscall(libc::SYS_getppid) };
        let end = now();
        if parent < 0 {
            return Err(failed("getppid"));
        }
        Ok(elapsed(start, end))
    })
}

fn write_devnull(iterations: usize, samples: &mut Samples, context: &Context) -> Result<(), String> {
    let null = std::fs::OpenOptions::new().write(true).open("/dev/null").map_err(|error| {
        let problem = context.dev_null_problem.as_deref().map(|problem| format!(" ({problem})")).unwrap_or_default();
        format!("cannot open /dev/null: {error}{problem}")
    })?;
    let (fd, byte) = (null.as_raw_fd(), [0u8; 1]);
    repeat(iterations, samples, || {
        let start = now();
        let written = write(fd, &byte);
        let end = now();
        match written {
            Ok(1) => Ok(elapsed(start, end)),
            Ok(count) => Err(format!("write of 1 byte to /dev/null wrote {count}")),
            Err(error) => Err(format!("write to /dev/null failed: {}", errno_name(error))),
        }
    })
}

/// Checks that a child ended with `exit(0)`.
fn exited_cleanly(what: &str, status: Status) -> Result<(), String> {
    match status {
        Status::Exited(0) => Ok(()),
        other => Err(format!("{what} ended with {other}")),
    }
}

fn fork_exit(iterations: usize, samples: &mut Samples) -> Result<(), String> {
    repeat(iterations, samples, || {
        let start = now();
        let child = match fork() {
            Ok(Fork::Child) => exit_now(0),
            Ok(Fork::Parent(pid)) => pid,
            Err(error) => return Err(format!("fork failed: {}", errno_name(error))),
        };
        let status = wait_for(child)?;
        let end = now();
        exited_cleanly("the child", status)?;
        Ok(elapsed(start, end))
    })
}

/// Where `lmbench-true` may be: as installed, then next to this program.
pub fn true_candidates(invoked_as: &str) -> Vec<String> {
    let mut candidates = vec![INSTALLED_TRUE.to_string()];
    if let Some((directory, _)) = invoked_as.rsplit_once('/') {
        let beside = format!("{directory}/{TRUE_NAME}");
        if beside != INSTALLED_TRUE {
            candidates.push(beside);
        }
    }
    candidates
}

/// The first executable [`true_candidates`].
fn find_true(invoked_as: &str) -> Result<CString, String> {
    let candidates = true_candidates(invoked_as);
    for candidate in &candidates {
        let Ok(path) = CString::new(candidate.as_str()) else { continue };
        // SAFETY: `path` is a NUL-terminated string.
        if unsafe { libc::access(path.as_ptr(), libc::X_OK) } == 0 {
            return Ok(path);
        }
    }
    Err(format!("no executable {TRUE_NAME}: looked for {}", candidates.join(" and ")))
}

fn fork_exec(iterations: usize, samples: &mut Samples, context: &Context) -> Result<(), String> {
    let program = find_true(&context.invoked_as)?;
    let shown = program.to_string_lossy().into_owned();
    // Made before the fork: the child only calls execve.
    let argv = [program.as_ptr(), std::ptr::null()];
    let envp: [*const libc::c_char; 1] = [std::ptr::null()];
    repeat(iterations, samples, || {
        let start = now();
        let child = match fork() {
            Ok(Fork::Child) => {
                // SAFETY: NUL-terminated strings in NULL-terminated arrays, alive in the
                // child until execve replaces it.
                unsafe { libc::execve(program.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
                exit_now(EXEC_FAILED)
            }
            Ok(Fork::Parent(pid)) => pid,
            Err(error) => return Err(format!("fork failed: {}", errno_name(error))),
        };
        let status = wait_for(child)?;
        let end = now();
        if status == Status::Exited(EXEC_FAILED) {
            return Err(format!("execve of {shown} failed in the child"));
        }
        exited_cleanly(&shown, status)?;
        Ok(elapsed(start, end))
    })
}

/// A second process that sends back every token it reads, until its input ends.
struct Echo {
    pid: libc::pid_t,
    to: OwnedFd,
    from: OwnedFd,
}

impl Echo {
    /// Forks the echo for tokens of `size` bytes (at most 4).
    fn start(size: usize) -> Result<Echo, String> {
        let (down_read, down_write) = pipe()?;
        let (up_read, up_write) = pipe()?;
        match fork() {
            Err(error) => Err(format!("fork failed: {}", errno_name(error))),
            Ok(Fork::Child) => {
                // Its copy of the parent's ends must go, or its input would never end.
                drop((down_write, up_read));
                exit_now(echo(down_read.as_raw_fd(), up_write.as_raw_fd(), size))
            }
            Ok(Fork::Parent(pid)) => Ok(Echo { pid, to: down_write, from: up_read }),
        }
    }

    /// Sends `token` and reads it back; the cycles that took.
    fn round_trip(&self, token: &mut [u8]) -> Result<u64, String> {
        let start = now();
        let sent = write(self.to.as_raw_fd(), token);
        let received = read(self.from.as_raw_fd(), token);
        let end = now();
        match (sent, received) {
            (Ok(sent), Ok(received)) if sent == token.len() && received == token.len() => Ok(elapsed(start, end)),
            (Ok(sent), Ok(received)) => {
                Err(format!("sent {sent} and received {received} of a {}-byte token", token.len()))
            }
            (Err(error), _) => Err(format!("write to the pipe failed: {}", errno_name(error))),
            (_, Err(error)) => Err(format!("read from the pipe failed: {}", errno_name(error))),
        }
    }

    /// Ends the echo (its input ends) and checks it ended well.
    fn finish(self) -> Result<(), String> {
        let Echo { pid, to, from } = self;
        drop(to);
        let status = wait_for(pid)?;
        drop(from);
        exited_cleanly("the echoing process", status)
    }
}

/// The echo's loop: 0 when its input ends, 1 on any error.
fn echo(input: i32, output: i32, size: usize) -> i32 {
    let mut token = [0u8; 4];
    let token = &mut token[..size];
    loop {
        match read(input, token) {
            Ok(0) => return 0,
            Ok(count) if count == size => {}
            Err(libc::EINTR) => continue,
            _ => return 1,
        }
        if write(output, token) != Ok(size) {
            return 1;
        }
    }
}

/// Runs `body` with an echo of `size`-byte tokens, and ends the echo whatever happens.
fn with_echo(size: usize, body: impl FnOnce(&Echo) -> Result<(), String>) -> Result<(), String> {
    let echo = Echo::start(size)?;
    let measured = body(&echo);
    let finished = echo.finish();
    measured.and(finished)
}

fn pipe_roundtrip(iterations: usize, samples: &mut Samples) -> Result<(), String> {
    let mut token = [b'x'];
    with_echo(token.len(), |echo| repeat(iterations, samples, || echo.round_trip(&mut token)))
}

/// lmbench's `lat_ctx -s 0 2`: a token (an `int`, as lmbench passes) goes around a ring of
/// two processes, each reading it from its pipe and writing it to the next; a round
/// trip is two switches, and a sample is half a round trip. `lat_ctx` subtracts the cost
/// of the pipe traffic, measured in one process; this row subtracts nothing, the same on
/// every kernel: a switch here includes one pipe write and one pipe read (two system
/// calls and the wake-up of the reader), the scheduler's choice, the switch of address
/// space, registers and FPU state, and half an `lfence; rdtsc` pair.
/// Both processes are kept on one processor where the kernel lets a process choose, so
/// that every pass is a switch, as on the one-processor machines the columns run on.
fn ctx_switch(iterations: usize, samples: &mut Samples) -> Result<(), String> {
    let _pinned = Pinned::here();
    let mut token = 0i32.to_ne_bytes();
    with_echo(token.len(), |echo| repeat(iterations, samples, || Ok(echo.round_trip(&mut token)? / 2)))
}

/// This process kept on the processor it runs on, until dropped (its children inherit
/// that). Nothing is changed where the kernel does not let a process choose its
/// processors (guest-kernel: one processor, no `sched_setaffinity`).
struct Pinned {
    previous: Option<libc::cpu_set_t>,
}

impl Pinned {
    fn here() -> Pinned {
        // SAFETY: a zeroed cpu_set_t is an empty set; the calls get its size and write
        // only within it.
        let previous = unsafe {
            let mut previous: libc::cpu_set_t = std::mem::zeroed();
            let size = std::mem::size_of::<libc::cpu_set_t>();
            let cpu = libc::sched_getcpu();
            let mut only: libc::cpu_set_t = std::mem::zeroed();
            if cpu >= 0 && libc::sched_getaffinity(0, size, &mut previous) == 0 {
                libc::CPU_SET(cpu as usize, &mut only);
                (libc::sched_setaffinity(0, size, &only) == 0).then_some(previous)
            } else {
                None
            }
        };
        Pinned { previous }
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        if let Some(previous) = &self.previous {
            // SAFETY: a set sched_getaffinity filled.
            unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), previous) };
        }
    }
}

/// An anonymous private read-write mapping, not populated, unmapped on drop.
struct Anonymous {
    base: *mut libc::c_void,
    length: usize,
}

impl Anonymous {
    fn map(length: usize) -> Result<Anonymous, String> {
        // SAFETY: a fresh mapping the kernel places; nothing else refers to it.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                length,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(format!("mmap of {} KiB failed: {}", length / 1024, errno_name(errno())));
        }
        Ok(Anonymous { base, length })
    }
}

impl Drop for Anonymous {
    fn drop(&mut self) {
        // SAFETY: the mapping this value made; no reference into it outlives it.
        unsafe { libc::munmap(self.base, self.length) };
    }
}

/// Writes the first byte of `pages` fresh pages, timing each write, `FAULT_CHUNK_PAGES`
/// pages to a mapping.
fn touch_pages(mut pages: usize, samples: &mut Samples) -> Result<(), String> {
    while pages > 0 {
        let count = pages.min(FAULT_CHUNK_PAGES);
        let region = Anonymous::map(count * PAGE_SIZE)?;
        for page in 0..count {
            let address = region.base.cast::<u8>().wrapping_add(page * PAGE_SIZE);
            let start = now();
            // SAFETY: the first byte of a page of the read-write mapping `region` owns.
            unsafe { address.write_volatile(1) };
            let end = now();
            samples.record(elapsed(start, end));
        }
        pages -= count;
    }
    Ok(())
}

fn page_fault(iterations: usize, samples: &mut Samples) -> Result<(), String> {
    touch_pages(warm_ups(iterations), samples)?;
    samples.taken.clear();
    touch_pages(iterations, samples)
}

fn mmap_512(iterations: usize, samples: &mut Samples) -> Result<(), String> {
    let length = POPULATED_PAGES * PAGE_SIZE;
    repeat(iterations, samples, || {
        let start = now();
        // SAFETY: a fresh mapping the kernel places and this closure unmaps; nothing else
        // refers to it.
        let (base, unmapped) = unsafe {
            let base = libc::mmap(
                std::ptr::null_mut(),
                length,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            );
            (base, base != libc::MAP_FAILED && libc::munmap(base, length) == 0)
        };
        let end = now();
        if base == libc::MAP_FAILED {
            return Err(failed("mmap(MAP_POPULATE) of 512 pages"));
        }
        if !unmapped {
            return Err(failed("munmap of 512 pages"));
        }
        Ok(elapsed(start, end))
    })
}

fn clock_gettime(iterations: usize, samples: &mut Samples) -> Result<(), String> {
    let mut time = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    repeat(iterations, samples, || {
        let start = now();
        // SAFETY: `time` is a valid timespec for libc (or the kernel) to write.
        let result = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut time) };
        let end = now();
        if result != 0 {
            return Err(failed("clock_gettime(CLOCK_MONOTONIC)"));
        }
        Ok(elapsed(start, end))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lmbench_true_is_looked_for_where_installed_then_beside_lmbench() {
        assert_eq!(true_candidates("/bin/lmbench"), ["/bin/lmbench-true"]);
        assert_eq!(true_candidates("lmbench"), ["/bin/lmbench-true"]);
        assert_eq!(true_candidates("/t/debug/lmbench"), ["/bin/lmbench-true", "/t/debug/lmbench-true"]);
    }

    #[test]
    fn transparent_huge_pages_are_turned_off() {
        small_pages_only();
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        assert!(status.lines().any(|line| line == "THP_enabled:\t0"), "{status}");
    }

    #[test]
    fn a_row_takes_its_iterations_in_the_room_made_for_them() {
        let mut samples = Samples::new(40);
        let context = Context::default();
        for row in [Row::NullSyscall, Row::PageFault, Row::ClockGettime] {
            measure(row, 40, &mut samples, &context).unwrap();
            assert_eq!((samples.taken().len(), samples.taken.capacity()), (40, 40), "{row:?}");
        }
        let error = measure(Row::NullSyscall, 41, &mut samples, &context).unwrap_err();
        assert_eq!(error, "41 iterations, but room for 40 samples");
    }

    #[test]
    fn warm_ups_are_a_tenth_within_bounds() {
        assert_eq!((warm_ups(1), warm_ups(50), warm_ups(200), warm_ups(10_000)), (1, 5, 20, 100));
    }
}
