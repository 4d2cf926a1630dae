//! The start-info page (SPEC.md §7): one read-only page the hypervisor fills in for every
//! new domain; RDI holds its address at the guest's first instruction.

use crate::address::{Gfn, GuestVirtualAddress};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `StartInfo::magic`: the bytes `"RINGFNCE"` read as a little-endian u64.
pub const START_INFO_MAGIC: u64 = u64::from_le_bytes(*b"RINGFNCE");

/// Capacity of [`StartInfo::cmd_line`] in bytes, including the terminating NUL.
pub const CMD_LINE_CAPACITY: usize = 1024;

/// The start-info page. Every field is little-endian and every byte not named is zero;
/// later minor versions carve new fields out of `reserved`.
#[derive(Clone, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct StartInfo {
    /// [`START_INFO_MAGIC`].
    pub magic: u64,
    /// The hypervisor's ABI, `major << 16 | minor` (as `version(ABI_VERSION)` returns).
    pub abi_version: u32,
    /// This domain's id (1-based; 0 is never a domain).
    pub domain_id: u32,
    /// Pages of pseudo-physical memory this domain owns (gfn `0..nr_pages`).
    pub nr_pages: u64,
    /// Lowest guest virtual address of the loaded image (page aligned).
    pub image_start: GuestVirtualAddress,
    /// One past the highest guest virtual address of the loaded image (page aligned).
    pub image_end: GuestVirtualAddress,
    /// Address of this page.
    pub start_info_address: GuestVirtualAddress,
    /// Lowest address of the initial stack.
    pub stack_bottom: GuestVirtualAddress,
    /// One past the highest address of the initial stack.
    pub stack_top: GuestVirtualAddress,
    /// Start of the domain's remaining memory, mapped read-write and no-execute.
    pub free_start: GuestVirtualAddress,
    /// Pages mapped at `free_start`.
    pub free_pages: u64,
    /// Address of the shared-info page (ABI 0.2: always provided; 0 in ABI 0.1).
    pub shared_info_address: GuestVirtualAddress,
    /// Bytes in `cmd_line` before its NUL.
    pub cmd_line_length: u32,
    /// Reserved flags; zero in ABI 0.1.
    pub flags: u32,
    /// The domain's arguments from the boot command line, NUL-terminated UTF-8.
    pub cmd_line: [u8; CMD_LINE_CAPACITY],
    /// The gfn mapped at `free_start`; the free region's gfns are contiguous (ABI 0.2).
    pub free_gfn: Gfn,
    /// The domain's reservation quota in pages, fixed at creation (ABI 0.2).
    pub max_pages: u64,
    /// Zero; later minor versions carve fields from here.
    pub reserved: [u8; 4096 - 112 - CMD_LINE_CAPACITY],
}

impl StartInfo {
    /// The command line as text (up to `cmd_line_length` or the first NUL; empty if not
    /// UTF-8, which the hypervisor never writes).
    pub fn cmd_line(&self) -> &str {
        let length = (self.cmd_line_length as usize).min(CMD_LINE_CAPACITY - 1);
        let text = &self.cmd_line[..length];
        let text = match text.iter().position(|&byte| byte == 0) {
            Some(nul) => &text[..nul],
            None => text,
        };
        core::str::from_utf8(text).unwrap_or("")
    }
}

const _: () = {
    assert!(core::mem::size_of::<StartInfo>() == 4096);
    assert!(core::mem::offset_of!(StartInfo, magic) == 0);
    assert!(core::mem::offset_of!(StartInfo, abi_version) == 8);
    assert!(core::mem::offset_of!(StartInfo, domain_id) == 12);
    assert!(core::mem::offset_of!(StartInfo, nr_pages) == 16);
    assert!(core::mem::offset_of!(StartInfo, image_start) == 24);
    assert!(core::mem::offset_of!(StartInfo, image_end) == 32);
    assert!(core::mem::offset_of!(StartInfo, start_info_address) == 40);
    assert!(core::mem::offset_of!(StartInfo, stack_bottom) == 48);
    assert!(core::mem::offset_of!(StartInfo, stack_top) == 56);
    assert!(core::mem::offset_of!(StartInfo, free_start) == 64);
    assert!(core::mem::offset_of!(StartInfo, free_pages) == 72);
    assert!(core::mem::offset_of!(StartInfo, shared_info_address) == 80);
    assert!(core::mem::offset_of!(StartInfo, cmd_line_length) == 88);
    assert!(core::mem::offset_of!(StartInfo, flags) == 92);
    assert!(core::mem::offset_of!(StartInfo, cmd_line) == 96);
    assert!(core::mem::offset_of!(StartInfo, free_gfn) == 96 + CMD_LINE_CAPACITY);
    assert!(core::mem::offset_of!(StartInfo, max_pages) == 104 + CMD_LINE_CAPACITY);
    assert!(core::mem::offset_of!(StartInfo, reserved) == 112 + CMD_LINE_CAPACITY);
};

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::FromZeros;

    #[test]
    fn magic_spells_ringfnce() {
        assert_eq!(&START_INFO_MAGIC.to_le_bytes(), b"RINGFNCE");
    }

    #[test]
    fn cmd_line_is_bounded_by_length() {
        let mut info = StartInfo::new_zeroed();
        info.cmd_line[..5].copy_from_slice(b"a b c");
        info.cmd_line_length = 3;
        assert_eq!(info.cmd_line(), "a b");
        info.cmd_line_length = u32::MAX;
        assert_eq!(info.cmd_line(), "a b c", "a length past capacity is clamped; the NULs after the text are not text");
    }
}
