//! The start-info page (SPEC.md §7): one read-only page the hypervisor fills in for every
//! new domain; RDI holds its address at the guest's first instruction.

use crate::address::{Gfn, GuestVirtualAddress};
use crate::layout::{is_guest_range, PAGE_SIZE};
use core::ops::Range;
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
    /// Address of the module's first byte (page aligned), or 0 when the domain was
    /// given none (ABI 0.4). Read it through [`StartInfo::module_range`].
    pub module_start: GuestVirtualAddress,
    /// The module's length in bytes; 0 when there is none (ABI 0.4).
    pub module_length: u64,
    /// The gfn mapped at `module_start`; the module's gfns are contiguous; 0 when there is
    /// no module (ABI 0.4).
    pub module_gfn: Gfn,
    /// Zero; later minor versions carve fields from here.
    pub reserved: [u8; 4096 - 136 - CMD_LINE_CAPACITY],
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

    /// Where the module's bytes lie (SPEC.md §3.2, §7), or `None` when there is no
    /// module. A page whose module fields are inconsistent also gives `None` rather than a
    /// range a reader could trust: the module must be non-empty, start on a page boundary,
    /// lie between the initial stack and the free region (where §3.2 puts it), and be
    /// guest memory without wrapping.
    pub fn module_range(&self) -> Option<Range<u64>> {
        let start = self.module_start.0;
        let length = self.module_length;
        if start == 0 || length == 0 || !start.is_multiple_of(PAGE_SIZE) || !is_guest_range(start, length) {
            return None;
        }
        let end = start.checked_add(length)?;
        (start >= self.stack_top.0 && end <= self.free_start.0).then_some(start..end)
    }

    /// Pages the module occupies (its last page is zero past `module_length`).
    pub const fn module_pages(&self) -> u64 {
        self.module_length.div_ceil(PAGE_SIZE)
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
    assert!(core::mem::offset_of!(StartInfo, module_start) == 112 + CMD_LINE_CAPACITY);
    assert!(core::mem::offset_of!(StartInfo, module_length) == 120 + CMD_LINE_CAPACITY);
    assert!(core::mem::offset_of!(StartInfo, module_gfn) == 128 + CMD_LINE_CAPACITY);
    assert!(core::mem::offset_of!(StartInfo, reserved) == 136 + CMD_LINE_CAPACITY);
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

    #[test]
    fn a_full_cmd_line_is_cut_to_leave_its_nul() {
        // SPEC.md §7: `cmd_line` is NUL-terminated, so at most capacity - 1 bytes are text
        // even when every byte is set and the length claims more.
        let mut info = StartInfo::new_zeroed();
        info.cmd_line = [b'x'; CMD_LINE_CAPACITY];
        for length in [CMD_LINE_CAPACITY as u32, u32::MAX] {
            info.cmd_line_length = length;
            assert_eq!(info.cmd_line().len(), 1023, "length {length}");
        }
    }

    /// A page laid out as SPEC.md §3.2 says, with a module of `length` bytes after the
    /// stack's guard page and its own guard page before the free region.
    fn with_module(length: u64) -> StartInfo {
        let mut info = StartInfo::new_zeroed();
        info.stack_top = GuestVirtualAddress(0x50_0000);
        info.module_start = GuestVirtualAddress(0x50_1000);
        info.module_length = length;
        info.free_start = GuestVirtualAddress(0x50_1000 + (info.module_pages() + 1) * PAGE_SIZE);
        info
    }

    #[test]
    fn module_range_of_a_consistent_page() {
        let info = with_module(3 * PAGE_SIZE + 123);
        assert_eq!(info.module_pages(), 4);
        assert_eq!(info.module_range(), Some(0x50_1000..0x50_1000 + 3 * PAGE_SIZE + 123));
        assert_eq!(with_module(1).module_range(), Some(0x50_1000..0x50_1001));
        assert_eq!(with_module(PAGE_SIZE).module_pages(), 1);
        assert_eq!(StartInfo::new_zeroed().module_range(), None, "no module: every field 0");
    }

    #[test]
    fn module_range_refuses_an_inconsistent_page() {
        let mut empty = with_module(100);
        empty.module_length = 0;
        assert_eq!(empty.module_range(), None);
        let mut unaligned = with_module(100);
        unaligned.module_start.0 += 8;
        assert_eq!(unaligned.module_range(), None);
        let mut over_free = with_module(100);
        over_free.module_length = over_free.free_start.0 - over_free.module_start.0 + 1;
        assert_eq!(over_free.module_range(), None, "must end before the free region");
        let mut in_stack = with_module(100);
        in_stack.module_start = GuestVirtualAddress(in_stack.stack_top.0 - PAGE_SIZE);
        assert_eq!(in_stack.module_range(), None, "must start after the stack");
        let mut wraps = with_module(100);
        wraps.module_start = GuestVirtualAddress(0xffff_ffff_ffff_f000);
        wraps.module_length = 0x2000;
        wraps.free_start = GuestVirtualAddress(u64::MAX);
        assert_eq!(wraps.module_range(), None);
        let mut hypervisor = with_module(100);
        hypervisor.stack_top = GuestVirtualAddress(0xffff_7000_0000_0000);
        hypervisor.module_start = GuestVirtualAddress(crate::layout::HYPERVISOR_START);
        hypervisor.free_start = GuestVirtualAddress(u64::MAX);
        assert_eq!(hypervisor.module_range(), None, "never the hypervisor's range");
    }
}
