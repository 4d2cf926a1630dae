//! The Linux x86-64 system-call table: each number Linux gives, the kernel's handler, and
//! its name (for `verbose`'s counts). A number not in the table answers ENOSYS and is
//! counted.

use guest_kernel_core::linux::Errno;
use guest_kernel_core::process_tree::Pid;
use guest_kernel_core::signal::{ExitStatus, Signal, SignalSet};
use linux_raw_sys::general as nr;

use super::process::{Restart, Sleep};
use super::Kernel;
use crate::arch::machine::Machine;

mod files;
mod memory;
mod processes;
mod signals;
mod system;
mod time;

/// What a system call decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Return this in RAX.
    Return(u64),
    /// Return this and send the caller a signal (EPIPE with SIGPIPE).
    ReturnAndSignal(u64, Signal),
    /// The call set the registers itself (`execve`, `rt_sigreturn`).
    Registers,
    /// Sleep; run the same call again when woken or `timeout_ns` after it first slept,
    /// holding `mask` as the signal mask meanwhile if given.
    Block {
        /// What wakes it.
        sleep: Sleep,
        /// How long it may sleep, counted from its first sleep.
        timeout_ns: Option<u64>,
        /// The mask while asleep.
        mask: Option<SignalSet>,
    },
    /// The process ends.
    Exit(ExitStatus),
}

impl From<Result<u64, Errno>> for Flow {
    fn from(result: Result<u64, Errno>) -> Flow {
        match result {
            Ok(value) => Flow::Return(value),
            Err(errno) => Flow::Return(errno.to_return()),
        }
    }
}

/// The register value of a failed call.
pub const fn error(errno: Errno) -> u64 {
    errno.to_return()
}

/// One system call as its handler sees it.
#[derive(Copy, Clone, Debug)]
pub struct Call {
    /// The caller.
    pub pid: Pid,
    /// RDI, RSI, RDX, R10, R8, R9.
    pub arguments: [u64; 6],
    /// Set when the call runs again after sleeping.
    pub restart: Option<Restart>,
}

impl Call {
    /// Whether this run follows a sleep whose deadline passed.
    pub fn timed_out(&self) -> bool {
        self.restart.is_some_and(|restart| restart.timed_out)
    }
}

macro_rules! table {
    ($($number:ident => $name:literal $handler:path,)*) => {
        /// Runs system call `number` for `pid`.
        pub fn dispatch<M: Machine>(kernel: &mut Kernel<M>, pid: Pid, number: u64, restart: Option<Restart>) -> Flow {
            let Some(process) = kernel.processes.get(&pid) else { return Flow::Return(error(Errno::ESRCH)) };
            let registers = &process.context.registers;
            let call = Call {
                pid,
                arguments: [registers.rdi, registers.rsi, registers.rdx, registers.r10, registers.r8, registers.r9],
                restart,
            };
            $(
                if number == u64::from(nr::$number) {
                    return $handler(kernel, &call);
                }
            )*
            if let Some(flow) = files::dispatch(kernel, &call, number) {
                return flow;
            }
            *kernel.unknown_calls.entry(number).or_insert(0) += 1;
            Flow::Return(error(Errno::ENOSYS))
        }

        /// The name of system call `number`.
        pub fn name(number: u64) -> &'static str {
            $(
                if number == u64::from(nr::$number) {
                    return $name;
                }
            )*
            "a file call, or not implemented"
        }
    };
}

table! {
    __NR_getppid => "getppid" processes::getppid,
    __NR_getpid => "getpid" processes::getpid,
    __NR_mmap => "mmap" memory::mmap,
    __NR_mprotect => "mprotect" memory::mprotect,
    __NR_munmap => "munmap" memory::munmap,
    __NR_brk => "brk" memory::brk,
    __NR_madvise => "madvise" memory::madvise,
    __NR_mremap => "mremap" memory::mremap,
    __NR_rt_sigaction => "rt_sigaction" signals::rt_sigaction,
    __NR_rt_sigprocmask => "rt_sigprocmask" signals::rt_sigprocmask,
    __NR_rt_sigreturn => "rt_sigreturn" signals::rt_sigreturn,
    __NR_rt_sigsuspend => "rt_sigsuspend" signals::rt_sigsuspend,
    __NR_rt_sigpending => "rt_sigpending" signals::rt_sigpending,
    __NR_pause => "pause" signals::pause,
    __NR_sigaltstack => "sigaltstack" signals::sigaltstack,
    __NR_kill => "kill" signals::kill,
    __NR_tkill => "tkill" signals::tkill,
    __NR_tgkill => "tgkill" signals::tgkill,
    __NR_sched_yield => "sched_yield" processes::sched_yield,
    __NR_nanosleep => "nanosleep" time::nanosleep,
    __NR_clock_nanosleep => "clock_nanosleep" time::clock_nanosleep,
    __NR_getitimer => "getitimer" time::getitimer,
    __NR_clone => "clone" processes::clone,
    __NR_fork => "fork" processes::fork,
    __NR_vfork => "vfork" processes::vfork,
    __NR_execve => "execve" processes::execve,
    __NR_exit => "exit" processes::exit,
    __NR_exit_group => "exit_group" processes::exit,
    __NR_wait4 => "wait4" processes::wait4,
    __NR_uname => "uname" system::uname,
    __NR_gettimeofday => "gettimeofday" time::gettimeofday,
    __NR_getrlimit => "getrlimit" system::getrlimit,
    __NR_setrlimit => "setrlimit" system::setrlimit,
    __NR_prlimit64 => "prlimit64" system::prlimit64,
    __NR_getrusage => "getrusage" time::getrusage,
    __NR_sysinfo => "sysinfo" system::sysinfo,
    __NR_times => "times" time::times,
    __NR_getuid => "getuid" system::identity,
    __NR_getgid => "getgid" system::identity,
    __NR_geteuid => "geteuid" system::identity,
    __NR_getegid => "getegid" system::identity,
    __NR_setuid => "setuid" system::set_identity,
    __NR_setgid => "setgid" system::set_identity,
    __NR_setreuid => "setreuid" system::set_identity,
    __NR_setregid => "setregid" system::set_identity,
    __NR_setresuid => "setresuid" system::set_identity,
    __NR_setresgid => "setresgid" system::set_identity,
    __NR_getresuid => "getresuid" system::get_three_identities,
    __NR_getresgid => "getresgid" system::get_three_identities,
    __NR_getgroups => "getgroups" system::getgroups,
    __NR_setgroups => "setgroups" system::setgroups,
    __NR_setpgid => "setpgid" processes::setpgid,
    __NR_getpgid => "getpgid" processes::getpgid,
    __NR_getpgrp => "getpgrp" processes::getpgrp,
    __NR_setsid => "setsid" processes::setsid,
    __NR_getsid => "getsid" processes::getsid,
    __NR_gettid => "gettid" processes::getpid,
    __NR_time => "time" time::time,
    __NR_futex => "futex" system::futex,
    __NR_sched_getaffinity => "sched_getaffinity" system::sched_getaffinity,
    __NR_set_tid_address => "set_tid_address" processes::set_tid_address,
    __NR_set_robust_list => "set_robust_list" system::accepted,
    __NR_clock_gettime => "clock_gettime" time::clock_gettime,
    __NR_clock_getres => "clock_getres" time::clock_getres,
    __NR_arch_prctl => "arch_prctl" processes::arch_prctl,
    __NR_prctl => "prctl" processes::prctl,
    __NR_getrandom => "getrandom" system::getrandom,
    __NR_getcpu => "getcpu" system::getcpu,
}

/// Whether a call interrupted by a handler with `SA_RESTART` is restarted (Linux restarts
/// these; sleeps, `poll`, `select` and `rt_sigsuspend` return EINTR instead).
pub fn restartable(number: u64) -> bool {
    [
        nr::__NR_read,
        nr::__NR_write,
        nr::__NR_readv,
        nr::__NR_writev,
        nr::__NR_pread64,
        nr::__NR_pwrite64,
        nr::__NR_wait4,
        nr::__NR_ioctl,
        nr::__NR_open,
        nr::__NR_openat,
        nr::__NR_futex,
    ]
    .iter()
    .any(|&restartable| u64::from(restartable) == number)
}

/// Whether a signal interrupts the sleeping call (a `vfork` parent waits for its child
/// whatever comes, as on Linux).
pub fn interruptible(number: u64) -> bool {
    number != u64::from(nr::__NR_vfork) && number != u64::from(nr::__NR_clone)
}
