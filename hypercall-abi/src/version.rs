//! ABI versioning (SPEC.md §9): major = incompatible, minor = additive only.

/// An ABI version as carried in the guest's ELF note and returned by `version`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct AbiVersion {
    /// Incompatible changes bump this.
    pub major: u16,
    /// Additive changes (new hypercalls, new ops, fields carved from reserved space).
    pub minor: u16,
}

/// The ABI version this crate describes.
pub const ABI_VERSION: AbiVersion = AbiVersion { major: 0, minor: 4 };

/// Why a guest built against some version cannot run on a hypervisor offering another.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Incompatibility {
    /// Majors differ: nothing can be assumed about the guest's expectations.
    MajorMismatch,
    /// The guest needs a newer minor than the hypervisor offers.
    GuestNewer,
}

impl AbiVersion {
    /// Packs the version the way the `version` hypercall returns it: `major << 16 | minor`.
    pub const fn packed(self) -> u32 {
        ((self.major as u32) << 16) | self.minor as u32
    }

    /// Inverse of [`AbiVersion::packed`].
    pub const fn from_packed(value: u32) -> Self {
        Self { major: (value >> 16) as u16, minor: value as u16 }
    }

    /// SPEC.md §9: can a guest built against `guest` run on a hypervisor offering `self`?
    /// Same major and a guest minor no newer than ours.
    pub fn accepts(self, guest: AbiVersion) -> Result<(), Incompatibility> {
        if guest.major != self.major {
            Err(Incompatibility::MajorMismatch)
        } else if guest.minor > self.minor {
            Err(Incompatibility::GuestNewer)
        } else {
            Ok(())
        }
    }
}

impl core::fmt::Display for AbiVersion {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_as_major_dot_minor() {
        // The form the boot banner ("ABI 0.4") and SPEC.md's change list use.
        extern crate std;
        use std::string::ToString;
        assert_eq!(AbiVersion { major: 0, minor: 4 }.to_string(), "0.4");
        assert_eq!(AbiVersion { major: 12, minor: 345 }.to_string(), "12.345");
    }

    #[test]
    fn packing_round_trips() {
        let v = AbiVersion { major: 3, minor: 0xfffe };
        assert_eq!(v.packed(), 0x0003_fffe);
        assert_eq!(AbiVersion::from_packed(v.packed()), v);
    }

    #[test]
    fn compatibility_rules() {
        let hv = AbiVersion { major: 1, minor: 4 };
        assert_eq!(hv.accepts(AbiVersion { major: 1, minor: 0 }), Ok(()));
        assert_eq!(hv.accepts(AbiVersion { major: 1, minor: 4 }), Ok(()));
        assert_eq!(hv.accepts(AbiVersion { major: 1, minor: 5 }), Err(Incompatibility::GuestNewer));
        assert_eq!(hv.accepts(AbiVersion { major: 0, minor: 4 }), Err(Incompatibility::MajorMismatch));
        assert_eq!(hv.accepts(AbiVersion { major: 2, minor: 0 }), Err(Incompatibility::MajorMismatch));
    }
}
