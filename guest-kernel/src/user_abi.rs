//! What the kernel and its user programs agree on: system-call numbers (Linux x86-64's, so
//! user code reads familiarly) and error numbers.

/// System-call numbers.
pub mod number {
    /// `write(buffer, length)`: prints to the kernel console; returns `length`.
    pub const WRITE: u64 = 1;
    /// `getpid()`: the process id.
    pub const GETPID: u64 = 39;
    /// `exit(code)`: ends the process.
    pub const EXIT: u64 = 60;
}

/// Error numbers, returned negated.
pub mod errno {
    /// A buffer is not the process's memory.
    pub const EFAULT: u64 = 14;
    /// An argument is out of range.
    pub const EINVAL: u64 = 22;
    /// No such system call.
    pub const ENOSYS: u64 = 38;
}
