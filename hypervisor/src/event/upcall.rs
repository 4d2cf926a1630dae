//! The event bits of a domain's shared-info page (SPEC.md §8): the per-port pending and
//! mask bitmaps, vCPU 0's `pending_selector`, `upcall_pending` and `upcall_mask`, read and
//! written through [`FrameMemory`] on the page's [`Frame`].
//!
//! The page is shared with the guest, so every value read here is guest-controlled: the
//! functions only test and set bits and never index anything with what they read.
//! Single-byte fields are written as single bytes so a store never covers a neighbouring
//! field the guest owns (`upcall_mask` sits next to `upcall_pending`). A domain's only
//! vCPU never runs while the hypervisor works on its page, so read-modify-write of a
//! bitmap word cannot lose a concurrent guest update.
//!
//! Port numbers are `u32`; a port outside the bitmaps ([`EVENT_PORTS`]) is ignored (every
//! caller validates against `PORTS_MAX` first; this is only the memory-safety net).

use crate::domain::vcpu::Vcpu;
use crate::mm::frames::Frame;
use crate::mm::paging::FrameMemory;
use core::mem::offset_of;
use hypercall_abi::shared_info::{SharedInfo, VcpuInfo, EVENT_PORTS};

/// `vcpu_info[0].upcall_pending` (u8).
const UPCALL_PENDING: usize = offset_of!(VcpuInfo, upcall_pending);
/// `vcpu_info[0].upcall_mask` (u8): the virtual interrupt flag, 1 = events off.
const UPCALL_MASK: usize = offset_of!(VcpuInfo, upcall_mask);
/// `vcpu_info[0].pending_selector` (u64): bit w = word w of the pending bitmap may be set.
const PENDING_SELECTOR: usize = offset_of!(VcpuInfo, pending_selector);
/// `evtchn_pending[0]`.
const PENDING_BITMAP: usize = offset_of!(SharedInfo, evtchn_pending);
/// `evtchn_mask[0]`.
const MASK_BITMAP: usize = offset_of!(SharedInfo, evtchn_mask);
/// Words in each bitmap.
const BITMAP_WORDS: usize = EVENT_PORTS / 64;

/// Word index and bit of `port` in a bitmap, or `None` outside the bitmaps.
fn locate(port: u32) -> Option<(usize, u64)> {
    let port = usize::try_from(port).ok().filter(|&port| port < EVENT_PORTS)?;
    Some((port / 64, 1 << (port % 64)))
}

fn read_word(memory: &impl FrameMemory, frame: Frame, offset: usize) -> u64 {
    let mut bytes = [0u8; 8];
    memory.read(frame, offset, &mut bytes);
    u64::from_le_bytes(bytes)
}

fn write_word(memory: &mut impl FrameMemory, frame: Frame, offset: usize, value: u64) {
    memory.write(frame, offset, &value.to_le_bytes());
}

fn read_byte(memory: &impl FrameMemory, frame: Frame, offset: usize) -> u8 {
    let mut byte = [0u8; 1];
    memory.read(frame, offset, &mut byte);
    byte[0]
}

fn write_byte(memory: &mut impl FrameMemory, frame: Frame, offset: usize, value: u8) {
    memory.write(frame, offset, &[value]);
}

fn test_bit(memory: &impl FrameMemory, frame: Frame, bitmap: usize, word: usize, bit: u64) -> bool {
    read_word(memory, frame, bitmap + word * 8) & bit != 0
}

/// Sets or clears `bit` of word `word`; returns whether it was set before.
fn update_bit(memory: &mut impl FrameMemory, frame: Frame, bitmap: usize, word: usize, bit: u64, set: bool) -> bool {
    let offset = bitmap + word * 8;
    let old = read_word(memory, frame, offset);
    let new = if set { old | bit } else { old & !bit };
    if new != old {
        write_word(memory, frame, offset, new);
    }
    old & bit != 0
}

/// Marks selector word `word` and `upcall_pending`, so the guest scans that word on its
/// next upcall.
fn announce(memory: &mut impl FrameMemory, frame: Frame, word: usize) {
    let selector = read_word(memory, frame, PENDING_SELECTOR);
    write_word(memory, frame, PENDING_SELECTOR, selector | 1 << word);
    write_byte(memory, frame, UPCALL_PENDING, 1);
}

/// Prepares a new domain's page: both bitmaps, the selector and `upcall_pending` zero
/// (every port unmasked, so a freshly bound port delivers without an extra UNMASK), and
/// `upcall_mask` = 1, so no upcall arrives before the guest registered a callback and
/// enabled events. Nothing else on the page is touched.
pub fn init(memory: &mut impl FrameMemory, frame: Frame) {
    for word in 0..BITMAP_WORDS {
        write_word(memory, frame, PENDING_BITMAP + word * 8, 0);
        write_word(memory, frame, MASK_BITMAP + word * 8, 0);
    }
    write_word(memory, frame, PENDING_SELECTOR, 0);
    write_byte(memory, frame, UPCALL_PENDING, 0);
    write_byte(memory, frame, UPCALL_MASK, 1);
}

/// Raises `port`: sets its pending bit; if that bit was clear and the port is unmasked,
/// also its selector bit and `upcall_pending`. Returns true exactly when this raise set
/// `upcall_pending` for a new event, i.e. when a domain blocked in `sched_op(BLOCK)` must
/// be woken. An already pending port changes nothing (the first raise woke the domain).
/// A poller is woken on the pending bit alone, masked or not: see [`any_pending`].
pub fn raise(memory: &mut impl FrameMemory, frame: Frame, port: u32) -> bool {
    let Some((word, bit)) = locate(port) else {
        return false;
    };
    if update_bit(memory, frame, PENDING_BITMAP, word, bit, true) {
        return false;
    }
    if test_bit(memory, frame, MASK_BITMAP, word, bit) {
        return false;
    }
    announce(memory, frame, word);
    true
}

/// `UNMASK(port)`: clears its mask bit; if the port is pending, sets its selector bit and
/// `upcall_pending` so the event is delivered on the way back to the guest. Returns
/// whether it set `upcall_pending`.
pub fn unmask(memory: &mut impl FrameMemory, frame: Frame, port: u32) -> bool {
    let Some((word, bit)) = locate(port) else {
        return false;
    };
    update_bit(memory, frame, MASK_BITMAP, word, bit, false);
    if !test_bit(memory, frame, PENDING_BITMAP, word, bit) {
        return false;
    }
    announce(memory, frame, word);
    true
}

/// A closed port: its pending and mask bits are cleared, so the next port opened with
/// the same number starts unmasked and quiet. The selector and `upcall_pending` are left
/// alone: a guest scanning a word with nothing in it finds nothing.
pub fn clear_port(memory: &mut impl FrameMemory, frame: Frame, port: u32) {
    let Some((word, bit)) = locate(port) else {
        return;
    };
    update_bit(memory, frame, PENDING_BITMAP, word, bit, false);
    update_bit(memory, frame, MASK_BITMAP, word, bit, false);
}

/// `upcall_pending` is set (whatever the mask): what `sched_op(BLOCK)` checks before
/// sleeping, and what wakes a blocked domain.
pub fn upcall_pending(memory: &impl FrameMemory, frame: Frame) -> bool {
    read_byte(memory, frame, UPCALL_PENDING) != 0
}

/// An upcall may be delivered now: `upcall_pending` set and `upcall_mask` clear.
pub fn upcall_deliverable(memory: &impl FrameMemory, frame: Frame) -> bool {
    upcall_pending(memory, frame) && !upcall_mask(memory, frame)
}

/// The delivery decision made on every return to the guest: an upcall is deliverable and
/// the vCPU has an event callback to deliver it to. (Without a callback the event stays
/// pending until one is registered.)
pub fn upcall_due(memory: &impl FrameMemory, frame: Frame, vcpu: &Vcpu) -> bool {
    vcpu.event_callback.is_some() && upcall_deliverable(memory, frame)
}

/// The virtual interrupt flag, inverted: true when events are masked. Any non-zero byte
/// the guest stored counts as masked.
pub fn upcall_mask(memory: &impl FrameMemory, frame: Frame) -> bool {
    read_byte(memory, frame, UPCALL_MASK) != 0
}

/// Sets `upcall_mask` (1 when `masked`): on upcall delivery, in `sched_op(BLOCK)`, and
/// when `iret` restores the flag a frame carries.
pub fn set_upcall_mask(memory: &mut impl FrameMemory, frame: Frame, masked: bool) {
    write_byte(memory, frame, UPCALL_MASK, u8::from(masked));
}

/// Whether any of `ports` is pending, masked or not (`sched_op(POLL)`). Ports outside the
/// bitmaps count as not pending. Reads at most one word per listed port.
pub fn any_pending(memory: &impl FrameMemory, frame: Frame, ports: &[u32]) -> bool {
    ports.iter().filter_map(|&port| locate(port)).any(|(word, bit)| test_bit(memory, frame, PENDING_BITMAP, word, bit))
}

/// Whether `port` is pending (for tests and reports).
pub fn is_pending(memory: &impl FrameMemory, frame: Frame, port: u32) -> bool {
    any_pending(memory, frame, &[port])
}

/// Whether `port` is masked (for tests and reports).
pub fn is_masked(memory: &impl FrameMemory, frame: Frame, port: u32) -> bool {
    locate(port).is_some_and(|(word, bit)| test_bit(memory, frame, MASK_BITMAP, word, bit))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::fakes::TestMemory;

    const PAGE: Frame = Frame::from_number(0x42);

    fn page() -> TestMemory {
        let mut memory = TestMemory::default();
        memory.zero(PAGE);
        init(&mut memory, PAGE);
        memory
    }

    fn selector(memory: &TestMemory) -> u64 {
        read_word(memory, PAGE, PENDING_SELECTOR)
    }

    fn mask_port(memory: &mut TestMemory, port: u32) {
        let (word, bit) = locate(port).unwrap();
        update_bit(memory, PAGE, MASK_BITMAP, word, bit, true);
    }

    fn guest_clears_upcall(memory: &mut TestMemory) {
        write_byte(memory, PAGE, UPCALL_PENDING, 0);
        write_word(memory, PAGE, PENDING_SELECTOR, 0);
    }

    #[test]
    fn offsets_match_the_abi() {
        assert_eq!((UPCALL_PENDING, UPCALL_MASK, PENDING_SELECTOR), (0, 1, 8));
        assert_eq!((PENDING_BITMAP, MASK_BITMAP), (2048, 2560));
    }

    #[test]
    fn init_masks_upcalls_and_unmasks_ports() {
        let mut memory = TestMemory::default();
        memory.frames.insert(PAGE, Box::new([0xff; 4096]));
        init(&mut memory, PAGE);
        let bytes = &memory.frames[&PAGE];
        assert_eq!(bytes[0], 0, "upcall_pending");
        assert_eq!(bytes[1], 1, "upcall_mask");
        assert!(bytes[2..8].iter().all(|&byte| byte == 0xff), "pad untouched");
        assert!(bytes[8..16].iter().all(|&byte| byte == 0), "selector");
        assert!(bytes[16..2048].iter().all(|&byte| byte == 0xff), "cr2 and time untouched");
        assert!(bytes[2048..3072].iter().all(|&byte| byte == 0), "bitmaps");
        assert!(bytes[3072..].iter().all(|&byte| byte == 0xff), "wallclock untouched");
        assert!(upcall_mask(&memory, PAGE));
        assert!(!upcall_pending(&memory, PAGE));
        assert!(!upcall_deliverable(&memory, PAGE));
    }

    #[test]
    fn raise_sets_pending_selector_and_flag_once() {
        let mut memory = page();
        assert!(raise(&mut memory, PAGE, 70));
        assert!(is_pending(&memory, PAGE, 70));
        assert_eq!(selector(&memory), 1 << 1);
        assert!(upcall_pending(&memory, PAGE));
        assert!(!upcall_deliverable(&memory, PAGE), "a new domain has events masked");
        set_upcall_mask(&mut memory, PAGE, false);
        assert!(upcall_deliverable(&memory, PAGE));
        // Raising again while pending does nothing more, even after the guest consumed
        // the selector and flag.
        guest_clears_upcall(&mut memory);
        assert!(!raise(&mut memory, PAGE, 70));
        assert_eq!(selector(&memory), 0);
        assert!(!upcall_pending(&memory, PAGE));
        // A second port in another word.
        assert!(raise(&mut memory, PAGE, 1));
        assert_eq!(selector(&memory), 1);
        assert!(raise(&mut memory, PAGE, 4095));
        assert_eq!(selector(&memory), 1 | 1 << 63);
    }

    #[test]
    fn masked_port_pends_without_upcall_until_unmasked() {
        let mut memory = page();
        set_upcall_mask(&mut memory, PAGE, false);
        mask_port(&mut memory, 5);
        assert!(is_masked(&memory, PAGE, 5));
        assert!(!raise(&mut memory, PAGE, 5));
        assert!(is_pending(&memory, PAGE, 5));
        assert!(!upcall_pending(&memory, PAGE));
        assert_eq!(selector(&memory), 0);
        assert!(any_pending(&memory, PAGE, &[9, 5]), "a poller still sees it");
        assert!(unmask(&mut memory, PAGE, 5));
        assert!(!is_masked(&memory, PAGE, 5));
        assert_eq!(selector(&memory), 1);
        assert!(upcall_deliverable(&memory, PAGE));
        // Unmasking a port that is not pending only clears the mask.
        guest_clears_upcall(&mut memory);
        mask_port(&mut memory, 6);
        assert!(!unmask(&mut memory, PAGE, 6));
        assert!(!is_masked(&memory, PAGE, 6));
        assert!(!upcall_pending(&memory, PAGE));
    }

    #[test]
    fn clear_port_drops_pending_and_mask() {
        let mut memory = page();
        raise(&mut memory, PAGE, 3);
        mask_port(&mut memory, 3);
        clear_port(&mut memory, PAGE, 3);
        assert!(!is_pending(&memory, PAGE, 3));
        assert!(!is_masked(&memory, PAGE, 3));
        // The next raise of the reused number announces again.
        guest_clears_upcall(&mut memory);
        assert!(raise(&mut memory, PAGE, 3));
    }

    #[test]
    fn mask_byte_round_trip_and_guest_values() {
        let mut memory = page();
        set_upcall_mask(&mut memory, PAGE, false);
        assert!(!upcall_mask(&memory, PAGE));
        set_upcall_mask(&mut memory, PAGE, true);
        assert!(upcall_mask(&memory, PAGE));
        // The guest may store any non-zero value: still masked.
        write_byte(&mut memory, PAGE, UPCALL_MASK, 0x80);
        assert!(upcall_mask(&memory, PAGE));
        // The flag byte next to it is not disturbed by mask writes.
        raise(&mut memory, PAGE, 2);
        set_upcall_mask(&mut memory, PAGE, false);
        assert!(upcall_pending(&memory, PAGE));
    }

    #[test]
    fn ports_outside_the_bitmaps_are_ignored() {
        let mut memory = page();
        let before = memory.frames[&PAGE].clone();
        for port in [4096, 5000, u32::MAX] {
            assert!(!raise(&mut memory, PAGE, port));
            assert!(!unmask(&mut memory, PAGE, port));
            clear_port(&mut memory, PAGE, port);
            assert!(!is_masked(&memory, PAGE, port));
        }
        assert!(!any_pending(&memory, PAGE, &[4096, u32::MAX]));
        assert_eq!(memory.frames[&PAGE], before);
    }

    #[test]
    fn delivery_needs_a_callback() {
        let mut memory = page();
        let mut vcpu = Vcpu::new();
        set_upcall_mask(&mut memory, PAGE, false);
        raise(&mut memory, PAGE, 1);
        assert!(!upcall_due(&memory, PAGE, &vcpu));
        vcpu.event_callback = Some(0xffff_ffff_8000_1000);
        assert!(upcall_due(&memory, PAGE, &vcpu));
        set_upcall_mask(&mut memory, PAGE, true);
        assert!(!upcall_due(&memory, PAGE, &vcpu));
    }

    #[test]
    fn any_pending_of_nothing_is_false() {
        let memory = page();
        assert!(!any_pending(&memory, PAGE, &[]));
        assert!(!any_pending(&memory, PAGE, &[1, 2, 1023]));
    }

    #[test]
    fn raising_a_pending_port_again_leaves_it_and_its_selector_bit_set() {
        let mut memory = page();
        for _ in 0..2 {
            raise(&mut memory, PAGE, 3);
            raise(&mut memory, PAGE, 5);
        }
        assert!(is_pending(&memory, PAGE, 3) && is_pending(&memory, PAGE, 5));
        assert_eq!(selector(&memory), 1, "word 0 stays announced");
    }
}
