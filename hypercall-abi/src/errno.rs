//! Error numbers (SPEC.md §5.3). A hypercall returns `-errno` in RAX on failure; values use
//! Linux/Xen numbering so tools and people already know them.

/// A positive error number; hypercalls return its negation.
#[derive(Copy, Clone, PartialEq, Eq, Hash)]
#[repr(transparent)]
pub struct Errno(pub i64);

impl Errno {
    /// Operation not permitted.
    pub const EPERM: Errno = Errno(1);
    /// No such entity.
    pub const ENOENT: Errno = Errno(2);
    /// No such domain.
    pub const ESRCH: Errno = Errno(3);
    /// Argument list (batch) too long.
    pub const E2BIG: Errno = Errno(7);
    /// Out of memory (quota or hypervisor).
    pub const ENOMEM: Errno = Errno(12);
    /// Bad guest address.
    pub const EFAULT: Errno = Errno(14);
    /// Resource busy.
    pub const EBUSY: Errno = Errno(16);
    /// Already exists.
    pub const EEXIST: Errno = Errno(17);
    /// Invalid argument.
    pub const EINVAL: Errno = Errno(22);
    /// No space left (ports, slots).
    pub const ENOSPC: Errno = Errno(28);
    /// No such hypercall or operation.
    pub const ENOSYS: Errno = Errno(38);

    /// The value a hypercall puts in RAX for this error.
    pub const fn to_return(self) -> i64 {
        -self.0
    }

    /// Splits a raw RAX value into success or error. Any negative value is an error,
    /// including ones this version does not name (SPEC.md §5.3: callers MUST treat unknown
    /// negative values as errors).
    pub const fn from_return(value: i64) -> Result<u64, Errno> {
        if value < 0 {
            Err(Errno(value.wrapping_neg()))
        } else {
            Ok(value as u64)
        }
    }

    /// The conventional symbolic name, or `None` for numbers this version does not define.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            1 => "EPERM",
            2 => "ENOENT",
            3 => "ESRCH",
            7 => "E2BIG",
            12 => "ENOMEM",
            14 => "EFAULT",
            16 => "EBUSY",
            17 => "EEXIST",
            22 => "EINVAL",
            28 => "ENOSPC",
            38 => "ENOSYS",
            _ => return None,
        })
    }
}

impl core::fmt::Display for Errno {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "errno {}", self.0),
        }
    }
}

/// The name and the number, so that `.expect()` in a guest says `ENOMEM (12)`.
impl core::fmt::Debug for Errno {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} ({})", self.0),
            None => write!(f, "Errno({})", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_the_name() {
        extern crate std;
        use std::format;
        assert_eq!(format!("{:?}", Errno::ENOMEM), "ENOMEM (12)");
        assert_eq!(format!("{:?}", Err::<(), _>(Errno::EFAULT)), "Err(EFAULT (14))");
        assert_eq!(format!("{:?}", Errno(99)), "Errno(99)");
        assert_eq!(format!("{}", Errno::ENOMEM), "ENOMEM");
        assert_eq!(format!("{}", Errno(99)), "errno 99");
    }

    #[test]
    fn round_trip_and_names() {
        assert_eq!(Errno::from_return(Errno::EFAULT.to_return()), Err(Errno::EFAULT));
        assert_eq!(Errno::from_return(0), Ok(0));
        assert_eq!(Errno::from_return(7), Ok(7));
        assert_eq!(Errno::ENOSYS.to_return(), -38);
        assert_eq!(Errno::EINVAL.name(), Some("EINVAL"));
        assert_eq!(Errno(999).name(), None);
        assert_eq!(Errno::from_return(i64::MIN), Err(Errno(i64::MIN)));
    }
}
