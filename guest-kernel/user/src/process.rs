//! Processes: fork, wait4 and what its status word says, pipes as owned descriptors.

use std::fmt;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

/// How a process ended, from `wait4`'s status word.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// `exit(code)`.
    Exited(i32),
    /// Killed by this signal.
    Signaled(i32),
    /// Stopped or continued (only with WUNTRACED/WCONTINUED, which these tests do not ask for).
    Other(i32),
}

impl Status {
    /// Decodes a status word.
    pub fn from_raw(word: i32) -> Status {
        if libc::WIFEXITED(word) {
            Status::Exited(libc::WEXITSTATUS(word))
        } else if libc::WIFSIGNALED(word) {
            Status::Signaled(libc::WTERMSIG(word))
        } else {
            Status::Other(word)
        }
    }

    /// The shell's `$?` for it: the exit code, or 128 plus the signal.
    pub fn shell_code(self) -> i32 {
        match self {
            Status::Exited(code) => code,
            Status::Signaled(signal) => 128 + signal,
            Status::Other(_) => 255,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Exited(code) => write!(f, "exit {code}"),
            Status::Signaled(signal) => write!(f, "killed by signal {signal} ({})", signal_name(*signal)),
            Status::Other(word) => write!(f, "status word {word:#x}"),
        }
    }
}

/// The usual name of a signal number, for messages.
pub fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGCHLD => "SIGCHLD",
        libc::SIGCONT => "SIGCONT",
        libc::SIGSTOP => "SIGSTOP",
        libc::SIGTSTP => "SIGTSTP",
        libc::SIGSYS => "SIGSYS",
        _ => "another signal",
    }
}

/// The errno of the last failed call.
pub fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// The name of an errno, for messages (`ENOENT (2)`).
pub fn errno_name(number: i32) -> String {
    let name = match number {
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::ESRCH => "ESRCH",
        libc::EINTR => "EINTR",
        libc::E2BIG => "E2BIG",
        libc::ENOEXEC => "ENOEXEC",
        libc::EBADF => "EBADF",
        libc::ECHILD => "ECHILD",
        libc::EAGAIN => "EAGAIN",
        libc::ENOMEM => "ENOMEM",
        libc::EACCES => "EACCES",
        libc::EFAULT => "EFAULT",
        libc::EEXIST => "EEXIST",
        libc::ENOTDIR => "ENOTDIR",
        libc::EISDIR => "EISDIR",
        libc::EINVAL => "EINVAL",
        libc::ENOTTY => "ENOTTY",
        libc::ESPIPE => "ESPIPE",
        libc::EPIPE => "EPIPE",
        libc::ENAMETOOLONG => "ENAMETOOLONG",
        libc::ENOSYS => "ENOSYS",
        libc::ENOTEMPTY => "ENOTEMPTY",
        _ => return format!("errno {number}"),
    };
    format!("{name} ({number})")
}

/// The result of a call that returns -1 and sets errno: `Ok(value)` or `Err(errno)`.
pub fn checked(value: i64) -> Result<i64, i32> {
    if value == -1 {
        Err(errno())
    } else {
        Ok(value)
    }
}

/// Sets this process's core-file size limit to zero (inherited by its children). A kernel
/// without resource limits refuses, which leaves nothing to turn off.
pub fn no_core_dumps() {
    let none = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `none` is a valid rlimit for the kernel to read.
    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &none) };
}

/// Which side of a fork this is.
pub enum Fork {
    /// The new process.
    Child,
    /// The old one, with the child's pid.
    Parent(libc::pid_t),
}

/// `fork()`, or the errno it failed with.
pub fn fork() -> Result<Fork, i32> {
    // SAFETY: the test programs are single-threaded, so the child's copy of the process
    // holds no lock another thread was holding.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(errno()),
        0 => Ok(Fork::Child),
        pid => Ok(Fork::Parent(pid)),
    }
}

/// Ends this process at once with `code`: no destructors, no flushing of buffers it shares
/// with its parent.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` only ends the process.
    unsafe { libc::_exit(code) }
}

/// `wait4(pid, &status, options)`: the pid reaped (0 with WNOHANG when none is ready) and
/// its status, or the errno. EINTR is retried.
pub fn wait(pid: libc::pid_t, options: i32) -> Result<(libc::pid_t, Status), i32> {
    loop {
        let mut word = 0;
        // SAFETY: `word` is a valid int for the kernel to write; no rusage is asked for.
        let reaped = unsafe { libc::wait4(pid, &mut word, options, std::ptr::null_mut()) };
        match reaped {
            -1 if errno() == libc::EINTR => continue,
            -1 => return Err(errno()),
            reaped => return Ok((reaped, Status::from_raw(word))),
        }
    }
}

/// Waits for `pid` and returns how it ended; an error names the errno.
pub fn wait_for(pid: libc::pid_t) -> Result<Status, String> {
    wait(pid, 0).map(|(_, status)| status).map_err(|error| format!("wait4({pid}) failed: {}", errno_name(error)))
}

/// Runs `body` in a child process, which exits with what `body` returns, and returns how
/// the child ended. For what would kill or damage the caller: faults, signals, exec.
pub fn in_child(body: impl FnOnce() -> i32) -> Result<Status, String> {
    match fork() {
        Err(error) => Err(format!("fork failed: {}", errno_name(error))),
        Ok(Fork::Child) => exit_now(body()),
        Ok(Fork::Parent(pid)) => wait_for(pid),
    }
}

/// A pipe: (read end, write end), both close-on-exec.
pub fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    pipe_with(libc::O_CLOEXEC)
}

/// `pipe2` with `flags`: (read end, write end).
pub fn pipe_with(flags: i32) -> Result<(OwnedFd, OwnedFd), String> {
    let mut ends = [0; 2];
    // SAFETY: `ends` has room for the two descriptors.
    if unsafe { libc::pipe2(ends.as_mut_ptr(), flags) } == -1 {
        return Err(format!("pipe2 failed: {}", errno_name(errno())));
    }
    // SAFETY: the kernel just opened both descriptors, and nothing else owns them.
    Ok(unsafe { (OwnedFd::from_raw_fd(ends[0]), OwnedFd::from_raw_fd(ends[1])) })
}

/// Closes a descriptor this process's copy of an owned one refers to (in a child after
/// fork, whose copies of the parent's `OwnedFd`s are not dropped).
pub fn close(fd: i32) {
    // SAFETY: closing a descriptor number touches no memory; the caller owns the number.
    unsafe { libc::close(fd) };
}

/// `read(2)` into `buffer`: the count or the errno (EINTR is reported, not retried).
pub fn read(fd: i32, buffer: &mut [u8]) -> Result<usize, i32> {
    // SAFETY: `buffer` is valid for writes of its length.
    let count = unsafe { libc::read(fd, buffer.as_mut_ptr().cast(), buffer.len()) };
    usize::try_from(count).map_err(|_| errno())
}

/// `write(2)` of `bytes`: the count or the errno (EINTR is reported, not retried).
pub fn write(fd: i32, bytes: &[u8]) -> Result<usize, i32> {
    // SAFETY: `bytes` is valid for reads of its length.
    let count = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
    usize::try_from(count).map_err(|_| errno())
}

/// Reads until end of file (retrying EINTR).
pub fn read_to_end(fd: i32) -> Result<Vec<u8>, i32> {
    let mut all = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match read(fd, &mut buffer) {
            Ok(0) => return Ok(all),
            Ok(count) => all.extend_from_slice(&buffer[..count]),
            Err(libc::EINTR) => continue,
            Err(error) => return Err(error),
        }
    }
}

/// Writes all of `bytes` (retrying EINTR and short writes).
pub fn write_all(fd: i32, mut bytes: &[u8]) -> Result<(), i32> {
    while !bytes.is_empty() {
        match write(fd, bytes) {
            Ok(count) => bytes = &bytes[count..],
            Err(libc::EINTR) => continue,
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Sleeps for `milliseconds` with `nanosleep` (std's sleep, which retries EINTR).
pub fn sleep_ms(milliseconds: u64) {
    std::thread::sleep(std::time::Duration::from_millis(milliseconds));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_words_decode_as_linux_writes_them() {
        assert_eq!(Status::from_raw(42 << 8), Status::Exited(42));
        assert_eq!(Status::from_raw(9), Status::Signaled(9));
        assert_eq!(Status::from_raw(0x80 | 11), Status::Signaled(11), "core dump bit");
        assert_eq!(Status::Signaled(15).shell_code(), 143);
        assert_eq!(Status::Signaled(13).to_string(), "killed by signal 13 (SIGPIPE)");
        assert_eq!(errno_name(libc::EFAULT), "EFAULT (14)");
    }

    #[test]
    fn a_child_reports_its_exit_code() {
        assert_eq!(in_child(|| 7), Ok(Status::Exited(7)));
    }
}
