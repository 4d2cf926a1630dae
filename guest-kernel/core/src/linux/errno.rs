//! The error a system call returns: a Linux errno, returned to user space negated.

use core::fmt;
use linux_raw_sys::errno as uapi;

/// A Linux error number (positive; [`Errno::to_return`] negates it for the return register).
#[derive(Copy, Clone, PartialEq, Eq, Hash)]
pub struct Errno(u32);

macro_rules! errnos {
    ($($name:ident: $what:literal),* $(,)?) => {
        impl Errno {
            $(
                #[doc = $what]
                pub const $name: Errno = Errno(uapi::$name);
            )*

            /// The symbolic name, if it is one the kernel uses.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $(uapi::$name => Some(stringify!($name)),)*
                    _ => None,
                }
            }
        }
    };
}

errnos! {
    EPERM: "Operation not permitted.",
    ENOENT: "No such file or directory.",
    ESRCH: "No such process.",
    EINTR: "Interrupted system call.",
    EIO: "I/O error.",
    ENXIO: "No such device or address.",
    E2BIG: "Argument list too long.",
    ENOEXEC: "Exec format error.",
    EBADF: "Bad file descriptor.",
    ECHILD: "No child processes.",
    EAGAIN: "Try again (would block, or a resource is temporarily exhausted).",
    ENOMEM: "Out of memory.",
    EACCES: "Permission denied.",
    EFAULT: "Bad address.",
    EBUSY: "Device or resource busy.",
    EEXIST: "File exists.",
    EXDEV: "Cross-device link.",
    ENOTDIR: "Not a directory.",
    EISDIR: "Is a directory.",
    EINVAL: "Invalid argument.",
    ENFILE: "File table overflow.",
    EMFILE: "Too many open files.",
    ENOTTY: "Not a typewriter (not a terminal).",
    EFBIG: "File too large.",
    ENOSPC: "No space left on device.",
    ESPIPE: "Illegal seek.",
    EROFS: "Read-only file system.",
    EMLINK: "Too many links.",
    EPIPE: "Broken pipe.",
    ERANGE: "Result too large.",
    ENAMETOOLONG: "File name too long.",
    ENOSYS: "Function not implemented.",
    ENOTEMPTY: "Directory not empty.",
    ELOOP: "Too many symbolic links encountered.",
    ENODEV: "No such device.",
    ETIMEDOUT: "Connection timed out.",
    EOPNOTSUPP: "Operation not supported.",
    ENOTSOCK: "Socket operation on non-socket.",
    EMSGSIZE: "Message too long.",
    ENOPROTOOPT: "Protocol not available (an unknown socket option).",
    EPROTONOSUPPORT: "Protocol not supported.",
    ESOCKTNOSUPPORT: "Socket type not supported.",
    EAFNOSUPPORT: "Address family not supported by protocol.",
    EISCONN: "Transport endpoint is already connected.",
}

impl Errno {
    /// The errno number.
    pub const fn number(self) -> u32 {
        self.0
    }

    /// The value a system call returns for this error: `-errno` as a register.
    pub const fn to_return(self) -> u64 {
        (self.0 as u64).wrapping_neg()
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} ({})", self.0),
            None => write!(f, "errno {}", self.0),
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_carry_linux_numbers_and_names() {
        assert_eq!(Errno::EFAULT.number(), 14);
        assert_eq!(Errno::ENOSYS.number(), 38);
        assert_eq!(Errno::ENOSYS.to_return(), (-38i64) as u64);
        assert_eq!(format!("{:?}", Errno::ENOMEM), "ENOMEM (12)");
        assert_eq!(Errno::EAGAIN.name(), Some("EAGAIN"));
    }
}
