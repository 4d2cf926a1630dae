//! The writer half of the shared-info seqlocks (SPEC.md §19.2, §19.3): a reader that sees
//! an even version before and after its copy must have a consistent copy, so the version
//! has to be odd for the whole update and end one above where the update began.

use crate::mm::fakes::TestMemory;
use crate::mm::frames::Frame;
use crate::mm::paging::FrameMemory;
use crate::platform::fake::FakePlatform;
use crate::system::{System, TIME_INFO_OFFSET, WALLCLOCK_OFFSET};

fn version(memory: &TestMemory, frame: Frame, offset: usize) -> u32 {
    let mut bytes = [0u8; 4];
    memory.read(frame, offset, &mut bytes);
    u32::from_le_bytes(bytes)
}

#[test]
fn the_version_is_odd_during_an_update_and_bumped_to_even_after_it() {
    let frame = Frame::from_number(7);
    for offset in [TIME_INFO_OFFSET, WALLCLOCK_OFFSET] {
        let mut memory = TestMemory::default();
        memory.zero(frame);
        let mut seen = Vec::new();
        for _ in 0..3 {
            let before = version(&memory, frame, offset);
            System::<FakePlatform>::seqlock_write(&mut memory, frame, offset, |memory, odd| {
                // What a reader sees mid-update: odd, and what the body is told.
                let during = version(memory, frame, offset);
                assert_eq!((during % 2, during), (1, odd), "offset {offset:#x}");
                memory.write(frame, offset + 8, &u64::from(odd).to_le_bytes());
            });
            let after = version(&memory, frame, offset);
            assert_eq!(after % 2, 0, "even after the update");
            assert_ne!(after, before, "a reader's second look must differ from its first");
            seen.push(after);
        }
        assert_eq!(seen, [2, 4, 6], "offset {offset:#x}: one step of 2 per update");
    }
}

#[test]
fn an_odd_version_left_by_an_interrupted_writer_still_ends_even() {
    let frame = Frame::from_number(8);
    let mut memory = TestMemory::default();
    memory.zero(frame);
    memory.write(frame, TIME_INFO_OFFSET, &5u32.to_le_bytes());
    System::<FakePlatform>::seqlock_write(&mut memory, frame, TIME_INFO_OFFSET, |_, odd| assert_eq!(odd, 5));
    assert_eq!(version(&memory, frame, TIME_INFO_OFFSET), 6);
}
