//! Signal dispositions and masks through `sigaction` and `sigprocmask`.

use crate::process::{errno, errno_name};

/// A handler as `sigaction` takes it (`SA_SIGINFO` form).
pub type InfoHandler = extern "C" fn(i32, *mut libc::siginfo_t, *mut libc::c_void);

/// What to do with a signal.
#[derive(Copy, Clone)]
pub enum Action {
    /// `SIG_DFL`.
    Default,
    /// `SIG_IGN`.
    Ignore,
    /// A plain handler with extra `sa_flags`.
    Handler(extern "C" fn(i32), i32),
    /// An `SA_SIGINFO` handler with extra `sa_flags`.
    InfoHandler(InfoHandler, i32),
}

/// Sets the disposition of `signal`; returns the errno on failure.
pub fn set(signal: i32, action: Action) -> Result<(), i32> {
    // SAFETY: an all-zero sigaction is a valid value (SIG_DFL, empty mask, no flags).
    let mut new: libc::sigaction = unsafe { std::mem::zeroed() };
    let (handler, flags) = match action {
        Action::Default => (libc::SIG_DFL, 0),
        Action::Ignore => (libc::SIG_IGN, 0),
        Action::Handler(handler, flags) => (handler as libc::sighandler_t, flags),
        Action::InfoHandler(handler, flags) => (handler as libc::sighandler_t, flags | libc::SA_SIGINFO),
    };
    new.sa_sigaction = handler;
    new.sa_flags = flags;
    // SAFETY: `new` is initialized; the handlers given are extern "C" functions of the
    // shape their flags announce; no old action is asked for.
    if unsafe { libc::sigaction(signal, &new, std::ptr::null_mut()) } == -1 {
        return Err(errno());
    }
    Ok(())
}

/// Like [`set`], with a message naming the signal and errno.
pub fn install(signal: i32, action: Action) -> Result<(), String> {
    set(signal, action).map_err(|error| format!("sigaction({signal}) failed: {}", errno_name(error)))
}

/// The handler address currently installed for `signal` (`SIG_DFL` is 0, `SIG_IGN` 1).
pub fn current(signal: i32) -> Result<libc::sighandler_t, String> {
    // SAFETY: as in `set`.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    // SAFETY: no new action; `old` is valid for the kernel to fill.
    if unsafe { libc::sigaction(signal, std::ptr::null(), &mut old) } == -1 {
        return Err(format!("sigaction({signal}) query failed: {}", errno_name(errno())));
    }
    Ok(old.sa_sigaction)
}

/// A signal set holding `signals`.
pub fn set_of(signals: &[i32]) -> libc::sigset_t {
    // SAFETY: an all-zero sigset_t is a valid value; sigemptyset then makes it empty.
    let mut set: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid sigset_t for both calls.
    unsafe {
        libc::sigemptyset(&mut set);
        for &signal in signals {
            libc::sigaddset(&mut set, signal);
        }
    }
    set
}

/// True if `set` holds `signal`.
pub fn contains(set: &libc::sigset_t, signal: i32) -> bool {
    // SAFETY: `set` is a valid sigset_t.
    unsafe { libc::sigismember(set, signal) == 1 }
}

/// `sigprocmask(how, set)`: returns the previous mask.
pub fn mask(how: i32, signals: &[i32]) -> Result<libc::sigset_t, String> {
    let set = set_of(signals);
    let mut old = set_of(&[]);
    // SAFETY: both sets are valid for the call.
    if unsafe { libc::sigprocmask(how, &set, &mut old) } == -1 {
        return Err(format!("sigprocmask failed: {}", errno_name(errno())));
    }
    Ok(old)
}

/// The current mask.
pub fn blocked() -> Result<libc::sigset_t, String> {
    let mut old = set_of(&[]);
    // SAFETY: no new set; `old` is valid for the kernel to fill.
    if unsafe { libc::sigprocmask(libc::SIG_BLOCK, std::ptr::null(), &mut old) } == -1 {
        return Err(format!("sigprocmask query failed: {}", errno_name(errno())));
    }
    Ok(old)
}

/// The pending set.
pub fn pending() -> Result<libc::sigset_t, String> {
    let mut set = set_of(&[]);
    // SAFETY: `set` is valid for the kernel to fill.
    if unsafe { libc::sigpending(&mut set) } == -1 {
        return Err(format!("sigpending failed: {}", errno_name(errno())));
    }
    Ok(set)
}

/// `kill(pid, signal)`: the errno on failure.
pub fn kill(pid: libc::pid_t, signal: i32) -> Result<(), i32> {
    // SAFETY: kill has no memory arguments.
    if unsafe { libc::kill(pid, signal) } == -1 {
        Err(errno())
    } else {
        Ok(())
    }
}

/// This process's pid.
pub fn own_pid() -> libc::pid_t {
    // SAFETY: getpid has no arguments and cannot fail.
    unsafe { libc::getpid() }
}

/// The parent's pid.
pub fn parent_pid() -> libc::pid_t {
    // SAFETY: getppid has no arguments and cannot fail.
    unsafe { libc::getppid() }
}
