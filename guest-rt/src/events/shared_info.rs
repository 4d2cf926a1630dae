//! This domain's shared-info page (SPEC.md §8): a view whose every access is atomic.

use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};

use hypercall_abi::shared_info::{SharedInfo, VcpuInfo, EVENT_PORTS};

use crate::entry::try_start_info;

/// This domain's shared-info page. Every access is atomic: the hypervisor writes the page
/// between any two guest instructions (on hypercalls, preemption and wake-ups), so no Rust
/// reference to its fields may exist.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SharedInfoPage {
    base: *mut SharedInfo,
}

// SAFETY: the wrapper only hands out atomic views of the page, which any context may use.
unsafe impl Send for SharedInfoPage {}
// SAFETY: as for Send.
unsafe impl Sync for SharedInfoPage {}

const PENDING_OFFSET: usize = core::mem::offset_of!(SharedInfo, evtchn_pending);
const MASK_OFFSET: usize = core::mem::offset_of!(SharedInfo, evtchn_mask);
const UPCALL_PENDING_OFFSET: usize = core::mem::offset_of!(VcpuInfo, upcall_pending);
const UPCALL_MASK_OFFSET: usize = core::mem::offset_of!(VcpuInfo, upcall_mask);
const SELECTOR_OFFSET: usize = core::mem::offset_of!(VcpuInfo, pending_selector);

impl SharedInfoPage {
    /// A view of the page at `address`.
    ///
    /// # Safety
    ///
    /// `address` must be a 4096-byte shared-info page (the hypervisor's, or a test's) that
    /// stays mapped read-write for as long as the view is used, and that nothing accesses
    /// non-atomically meanwhile.
    pub const unsafe fn from_address(address: u64) -> Self {
        Self { base: address as *mut SharedInfo }
    }

    /// The page's address.
    #[inline]
    pub fn address(&self) -> u64 {
        self.base as u64
    }

    fn byte(&self, offset: usize) -> &AtomicU8 {
        // SAFETY: `offset` is inside the page (callers pass field offsets), the page is
        // valid for the view's lifetime (from_address), and only atomics access it.
        unsafe { AtomicU8::from_ptr(self.base.cast::<u8>().add(offset)) }
    }

    fn word(&self, offset: usize) -> &AtomicU64 {
        debug_assert!(offset & 7 == 0 && offset + 8 <= 4096);
        // SAFETY: as in `byte`; every u64 field of the page is 8-byte aligned (the page is
        // page aligned and the ABI asserts the offsets).
        unsafe { AtomicU64::from_ptr(self.base.cast::<u8>().add(offset).cast::<u64>()) }
    }

    /// `vcpu_info[0].upcall_pending`.
    pub fn upcall_pending(&self) -> u8 {
        self.byte(UPCALL_PENDING_OFFSET).load(Ordering::Acquire)
    }

    /// Writes `vcpu_info[0].upcall_pending` (the dispatcher clears it before a scan).
    pub fn set_upcall_pending(&self, value: u8) {
        self.byte(UPCALL_PENDING_OFFSET).store(value, Ordering::Release);
    }

    /// `vcpu_info[0].upcall_mask`: nonzero = events off.
    pub fn upcall_mask(&self) -> u8 {
        self.byte(UPCALL_MASK_OFFSET).load(Ordering::Acquire)
    }

    /// Writes `vcpu_info[0].upcall_mask` (no delivery check: see `irq_enable`).
    pub fn set_upcall_mask(&self, value: u8) {
        self.byte(UPCALL_MASK_OFFSET).store(value, Ordering::Release);
    }

    /// `vcpu_info[0].pending_selector`.
    pub fn pending_selector(&self) -> u64 {
        self.word(SELECTOR_OFFSET).load(Ordering::Acquire)
    }

    /// Reads and clears `pending_selector` in one atomic exchange.
    pub fn take_pending_selector(&self) -> u64 {
        self.word(SELECTOR_OFFSET).swap(0, Ordering::AcqRel)
    }

    /// Word `index` of `evtchn_pending`.
    pub fn pending_word(&self, index: usize) -> u64 {
        self.word(PENDING_OFFSET + 8 * index).load(Ordering::Acquire)
    }

    /// Word `index` of `evtchn_mask`.
    pub fn mask_word(&self, index: usize) -> u64 {
        self.word(MASK_OFFSET + 8 * index).load(Ordering::Acquire)
    }

    fn port_bit(port: u32) -> (usize, u64) {
        let port = port as usize % EVENT_PORTS;
        (port / 64, 1u64 << (port % 64))
    }

    /// Port `port`'s pending bit.
    pub fn is_pending(&self, port: u32) -> bool {
        let (word, bit) = Self::port_bit(port);
        self.pending_word(word) & bit != 0
    }

    /// Port `port`'s mask bit.
    pub fn is_masked(&self, port: u32) -> bool {
        let (word, bit) = Self::port_bit(port);
        self.mask_word(word) & bit != 0
    }

    /// Atomically clears port `port`'s pending bit; true if it was set.
    pub fn clear_pending(&self, port: u32) -> bool {
        let (word, bit) = Self::port_bit(port);
        self.word(PENDING_OFFSET + 8 * word).fetch_and(!bit, Ordering::AcqRel) & bit != 0
    }

    /// Atomically sets port `port`'s pending bit (tests of the scan); true if it was set.
    pub fn set_pending(&self, port: u32) -> bool {
        let (word, bit) = Self::port_bit(port);
        self.word(PENDING_OFFSET + 8 * word).fetch_or(bit, Ordering::AcqRel) & bit != 0
    }

    /// Atomically sets port `port`'s mask bit (masking needs no hypercall); true if it
    /// was set.
    pub fn set_mask(&self, port: u32) -> bool {
        let (word, bit) = Self::port_bit(port);
        self.word(MASK_OFFSET + 8 * word).fetch_or(bit, Ordering::AcqRel) & bit != 0
    }

    /// Atomically clears port `port`'s mask bit *without* re-delivery (unmasking a pending
    /// port needs `Port::unmask`); true if it was set.
    pub fn clear_mask(&self, port: u32) -> bool {
        let (word, bit) = Self::port_bit(port);
        self.word(MASK_OFFSET + 8 * word).fetch_and(!bit, Ordering::AcqRel) & bit != 0
    }

    /// Sets selector bit `word` (tests of the scan).
    pub fn set_selector_bit(&self, word: usize) {
        self.word(SELECTOR_OFFSET).fetch_or(1 << (word % 64), Ordering::AcqRel);
    }
}

/// This domain's shared-info page, or `None` before the start code ran (and on the host).
#[inline]
pub fn try_shared_info() -> Option<SharedInfoPage> {
    let start = try_start_info()?;
    // SAFETY: the hypervisor maps the shared-info page read-write at this address for the
    // domain's whole life and it cannot be unmapped (SPEC.md §8); guest-rt accesses it
    // only through the atomic views of SharedInfoPage.
    (start.shared_info_address.0 != 0).then(|| unsafe { SharedInfoPage::from_address(start.shared_info_address.0) })
}

/// This domain's shared-info page.
///
/// # Panics
///
/// Outside a running domain.
#[inline]
pub fn shared_info() -> SharedInfoPage {
    try_shared_info().expect("guest_rt::events::shared_info() outside a running ringfence domain")
}

#[cfg(test)]
pub(super) mod fixture {
    extern crate std;
    use super::*;
    use std::boxed::Box;
    use zerocopy::FromZeros;

    /// A zeroed page on the heap and a view of it (the box must outlive the view).
    pub fn page() -> (Box<SharedInfo>, SharedInfoPage) {
        let mut info = Box::new(SharedInfo::new_zeroed());
        // SAFETY: the box outlives every use in the test and is only accessed through the view.
        let view = unsafe { SharedInfoPage::from_address(&mut *info as *mut SharedInfo as u64) };
        (info, view)
    }
}

#[cfg(test)]
mod tests {
    use super::fixture::page;

    #[test]
    fn mask_and_pending_bits() {
        let (_info, page) = page();
        assert!(!page.set_mask(64));
        assert!(page.is_masked(64) && page.mask_word(1) == 1);
        assert!(page.clear_mask(64) && !page.is_masked(64));
        assert!(!page.clear_pending(7));
    }
}
