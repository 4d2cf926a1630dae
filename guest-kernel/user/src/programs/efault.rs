//! EFAULT for every kind of pointer a system call takes, and a process that survives them
//! all: buffers the kernel reads and writes, paths, stat buffers, argv and envp arrays and
//! their strings, timespecs, signal sets and actions, descriptor arrays, wait statuses,
//! directory entries, and the structures uname and sysinfo fill.
//!
//! Each pointer is tried at the addresses of [`BAD_ADDRESSES`] and just past the end of a
//! mapping; a fixed-size structure also straddling that end (its first bytes mapped).

use std::os::fd::AsRawFd;
use std::process::ExitCode;

use crate::check::expect_eq;
use crate::check::{Outcome, Suite};
use crate::process::{errno_name, exit_now, fork, pipe, wait, wait_for, Fork, Status};
use crate::syscall::{raw, MappingEnd, BAD_ADDRESSES};

/// What every bad address gets.
fn expect_efault(what: &str, address_name: &str, result: Result<i64, i32>) -> Outcome {
    match result {
        Err(libc::EFAULT) => Ok(()),
        Err(error) => Err(format!("{what} with {address_name}: {}, expected EFAULT", errno_name(error))),
        Ok(value) => Err(format!("{what} with {address_name}: succeeded ({value}), expected EFAULT")),
    }
}

/// Tries `call` with every bad address, and the first byte past a mapping.
fn at_every_bad_address(what: &str, call: impl Fn(usize) -> Result<i64, i32>) -> Outcome {
    for (name, address) in BAD_ADDRESSES {
        expect_efault(what, name, call(address))?;
    }
    let mapping = MappingEnd::new()?;
    expect_efault(what, "the end of a mapping", call(mapping.end()))
}

/// Like [`at_every_bad_address`], plus a `size`-byte structure whose last bytes (8, or half
/// of a smaller one) lie past the end of a mapping.
fn at_every_bad_address_and_straddling(what: &str, size: usize, call: impl Fn(usize) -> Result<i64, i32>) -> Outcome {
    at_every_bad_address(what, &call)?;
    let mut mapping = MappingEnd::new()?;
    let outside = if size > 8 { 8 } else { size / 2 };
    let start = mapping.place_at_end(&vec![0u8; size - outside]);
    expect_efault(what, "a structure straddling the end of a mapping", call(start))
}

fn call(number: i64, arguments: &[usize]) -> Result<i64, i32> {
    let mut all = [0usize; 6];
    all[..arguments.len()].copy_from_slice(arguments);
    // SAFETY: every pointer argument these tests pass is either unmapped (the point of the
    // test) or a valid buffer of the size given.
    unsafe { raw(number, all) }
}

const AT_FDCWD: usize = libc::AT_FDCWD as usize;

fn buffers_the_kernel_reads() -> Outcome {
    let (_reader, writer) = pipe()?;
    let fd = writer.as_raw_fd() as usize;
    at_every_bad_address("write(pipe, buffer, 16)", |address| call(libc::SYS_write, &[fd, address, 16]))?;
    // The vectored form: a bad iovec array, and a good one pointing at a bad buffer.
    at_every_bad_address("writev(pipe, iov, 1)", |address| call(libc::SYS_writev, &[fd, address, 1]))?;
    at_every_bad_address("writev(pipe, [bad buffer], 1)", |address| {
        let iov = libc::iovec { iov_base: address as *mut libc::c_void, iov_len: 16 };
        call(libc::SYS_writev, &[fd, &iov as *const libc::iovec as usize, 1])
    })
}

fn buffers_the_kernel_writes() -> Outcome {
    let zero = std::fs::File::open("/dev/zero").map_err(|error| format!("open /dev/zero: {error}"))?;
    let fd = zero.as_raw_fd() as usize;
    at_every_bad_address("read(/dev/zero, buffer, 16)", |address| call(libc::SYS_read, &[fd, address, 16]))?;
    let (reader, writer) = pipe()?;
    let read_end = reader.as_raw_fd() as usize;
    at_every_bad_address("read(pipe with data, buffer, 16)", |address| {
        call(libc::SYS_write, &[writer.as_raw_fd() as usize, b"0123456789abcdef".as_ptr() as usize, 16])?;
        let result = call(libc::SYS_read, &[read_end, address, 16]);
        // Empty the pipe for the next address, whatever the failed read left in it.
        let mut drain = [0u8; 64];
        let flags = call(libc::SYS_fcntl, &[read_end, libc::F_GETFL as usize])?;
        call(libc::SYS_fcntl, &[read_end, libc::F_SETFL as usize, flags as usize | libc::O_NONBLOCK as usize])?;
        let _ = call(libc::SYS_read, &[read_end, drain.as_mut_ptr() as usize, drain.len()]);
        call(libc::SYS_fcntl, &[read_end, libc::F_SETFL as usize, flags as usize])?;
        result
    })?;
    at_every_bad_address("getcwd(buffer, 256)", |address| call(libc::SYS_getcwd, &[address, 256]))?;
    at_every_bad_address("readlinkat(/bin/sh, buffer, 64)", |address| {
        call(libc::SYS_readlinkat, &[AT_FDCWD, c"/bin/sh".as_ptr() as usize, address, 64])
    })?;
    at_every_bad_address("getrandom(buffer, 16)", |address| call(libc::SYS_getrandom, &[address, 16, 0]))
}

fn paths() -> Outcome {
    at_every_bad_address("openat(path)", |address| {
        call(libc::SYS_openat, &[AT_FDCWD, address, libc::O_RDONLY as usize])
    })?;
    let mut stat = [0u8; 256];
    let stat_buffer = stat.as_mut_ptr() as usize;
    at_every_bad_address("newfstatat(path)", |address| {
        call(libc::SYS_newfstatat, &[AT_FDCWD, address, stat_buffer, 0])
    })?;
    at_every_bad_address("mkdirat(path)", |address| call(libc::SYS_mkdirat, &[AT_FDCWD, address, 0o755]))?;
    at_every_bad_address("unlinkat(path)", |address| call(libc::SYS_unlinkat, &[AT_FDCWD, address, 0]))?;
    at_every_bad_address("chdir(path)", |address| call(libc::SYS_chdir, &[address]))?;
    at_every_bad_address("readlinkat(path)", |address| {
        call(libc::SYS_readlinkat, &[AT_FDCWD, address, stat_buffer, 64])
    })?;
    // A path whose bytes run into unmapped memory before any NUL.
    let mut mapping = MappingEnd::new()?;
    let start = mapping.place_at_end(b"/tmp/unterminated");
    expect_efault("openat(path)", "a path running off a mapping", call(libc::SYS_openat, &[AT_FDCWD, start, 0]))
}

fn stat_buffers() -> Outcome {
    let size = std::mem::size_of::<libc::stat>();
    let root = std::fs::File::open("/").map_err(|error| format!("open /: {error}"))?;
    let fd = root.as_raw_fd() as usize;
    at_every_bad_address_and_straddling("fstat(fd, buffer)", size, |address| call(libc::SYS_fstat, &[fd, address]))?;
    at_every_bad_address_and_straddling("newfstatat(\"/\", buffer)", size, |address| {
        call(libc::SYS_newfstatat, &[AT_FDCWD, c"/".as_ptr() as usize, address, 0])
    })
}

/// Runs execve in a child (in case the kernel wrongly runs the program) and returns its
/// result: the errno as the child's exit code; 0 means the program ran.
fn execve_in_child(path: usize, argv: usize, envp: usize) -> Result<i64, i32> {
    match fork() {
        Err(error) => Err(error),
        Ok(Fork::Child) => exit_now(match call(libc::SYS_execve, &[path, argv, envp]) {
            Err(error) => error,
            Ok(_) => 0,
        }),
        Ok(Fork::Parent(pid)) => match wait(pid, 0) {
            Ok((_, Status::Exited(0))) => Ok(0),
            Ok((_, Status::Exited(code))) => Err(code),
            // Killed: not an errno; reported as the negated shell code.
            Ok((_, other)) => Err(-other.shell_code()),
            Err(error) => Err(error),
        },
    }
}

fn argument_arrays() -> Outcome {
    let program = c"/bin/true".as_ptr() as usize;
    let good: [usize; 2] = [program, 0];
    let good_array = good.as_ptr() as usize;
    at_every_bad_address("execve(path)", |address| execve_in_child(address, good_array, 0))?;
    at_every_bad_address("execve(argv array)", |address| execve_in_child(program, address, 0))?;
    at_every_bad_address("execve(envp array)", |address| execve_in_child(program, good_array, address))?;
    at_every_bad_address("execve(argv[1])", |address| {
        let argv: [usize; 3] = [program, address, 0];
        execve_in_child(program, argv.as_ptr() as usize, 0)
    })?;
    at_every_bad_address("execve(envp[0])", |address| {
        let envp: [usize; 2] = [address, 0];
        execve_in_child(program, good_array, envp.as_ptr() as usize)
    })?;
    // An argv array whose terminating NULL would lie past the end of a mapping.
    let mut mapping = MappingEnd::new()?;
    let start = mapping.place_at_end(&program.to_ne_bytes());
    expect_efault("execve(argv array)", "an array running off a mapping", execve_in_child(program, start, 0))
}

fn timespecs() -> Outcome {
    let size = std::mem::size_of::<libc::timespec>();
    at_every_bad_address_and_straddling("clock_gettime(MONOTONIC, timespec)", size, |address| {
        call(libc::SYS_clock_gettime, &[libc::CLOCK_MONOTONIC as usize, address])
    })?;
    at_every_bad_address_and_straddling("nanosleep(request)", size, |address| {
        call(libc::SYS_nanosleep, &[address, 0])
    })?;
    at_every_bad_address_and_straddling("clock_nanosleep(request)", size, |address| {
        call(libc::SYS_clock_nanosleep, &[libc::CLOCK_MONOTONIC as usize, 0, address, 0])
    })
}

fn signal_structures() -> Outcome {
    // The kernel's struct sigaction: handler, flags, restorer, mask.
    at_every_bad_address_and_straddling("rt_sigaction(act)", 32, |address| {
        call(libc::SYS_rt_sigaction, &[libc::SIGUSR1 as usize, address, 0, 8])
    })?;
    at_every_bad_address_and_straddling("rt_sigaction(oldact)", 32, |address| {
        call(libc::SYS_rt_sigaction, &[libc::SIGUSR1 as usize, 0, address, 8])
    })?;
    at_every_bad_address("rt_sigprocmask(set)", |address| {
        call(libc::SYS_rt_sigprocmask, &[libc::SIG_BLOCK as usize, address, 0, 8])
    })?;
    at_every_bad_address("rt_sigprocmask(oldset)", |address| {
        call(libc::SYS_rt_sigprocmask, &[libc::SIG_BLOCK as usize, 0, address, 8])
    })?;
    at_every_bad_address("rt_sigpending(set)", |address| call(libc::SYS_rt_sigpending, &[address, 8]))?;
    at_every_bad_address("rt_sigsuspend(mask)", |address| call(libc::SYS_rt_sigsuspend, &[address, 8]))
}

fn descriptor_arrays_and_statuses() -> Outcome {
    at_every_bad_address_and_straddling("pipe2(fds)", 8, |address| call(libc::SYS_pipe2, &[address, 0]))?;
    at_every_bad_address("wait4(status)", |address| {
        let child = match fork() {
            Err(error) => return Err(error),
            Ok(Fork::Child) => exit_now(0),
            Ok(Fork::Parent(pid)) => pid,
        };
        let result = call(libc::SYS_wait4, &[child as usize, address, 0, 0]);
        // Linux reaps the child before it finds the status pointer bad; a kernel that
        // checks first leaves it to reap.
        let _ = wait_for(child);
        result
    })
}

fn filled_structures() -> Outcome {
    let directory = std::fs::File::open("/").map_err(|error| format!("open /: {error}"))?;
    let fd = directory.as_raw_fd() as usize;
    at_every_bad_address("getdents64(buffer, 4096)", |address| call(libc::SYS_getdents64, &[fd, address, 4096]))?;
    at_every_bad_address_and_straddling("uname(buffer)", std::mem::size_of::<libc::utsname>(), |address| {
        call(libc::SYS_uname, &[address])
    })?;
    // Linux's struct sysinfo is 112 bytes on x86-64; libc's type may carry padding past it.
    at_every_bad_address_and_straddling("sysinfo(buffer)", 112, |address| call(libc::SYS_sysinfo, &[address]))
}

fn the_process_is_intact() -> Outcome {
    // After all of the above, ordinary calls still work.
    // SAFETY: utsname is plain bytes; all zero is a valid value.
    let mut name: libc::utsname = unsafe { std::mem::zeroed() };
    call(libc::SYS_uname, &[&mut name as *mut libc::utsname as usize]).map_err(errno_name)?;
    let child = match fork() {
        Err(error) => return Err(format!("fork: {}", errno_name(error))),
        Ok(Fork::Child) => exit_now(3),
        Ok(Fork::Parent(pid)) => pid,
    };
    expect_eq("a child", wait_for(child)?, Status::Exited(3))
}

/// Runs the cases (the program takes no arguments).
pub fn main(arguments: &[String]) -> ExitCode {
    if let Err(code) = crate::check::no_arguments(arguments) {
        return code;
    }
    let mut suite = Suite::new("efault");
    suite.case("buffers_read_by_the_kernel", buffers_the_kernel_reads);
    suite.case("buffers_written_by_the_kernel", buffers_the_kernel_writes);
    suite.case("paths", paths);
    suite.case("stat_buffers", stat_buffers);
    suite.case("argv_envp", argument_arrays);
    suite.case("timespecs", timespecs);
    suite.case("signal_structures", signal_structures);
    suite.case("fd_arrays_and_wait_status", descriptor_arrays_and_statuses);
    suite.case("filled_structures", filled_structures);
    suite.case("process_intact", the_process_is_intact);
    suite.finish()
}
