//! Robustness of the ELF image validator: random bytes, corrupted valid images and
//! randomly shaped segment tables. Never a panic; a refusal is one readable line; an
//! acceptance is a load plan that keeps every promise `LoadPlan` documents.

use super::image::tests::{abi_note_bytes, load, note_segment, raw_note, TestImage, TestSegment, TEXT};
use super::image::{validate, LoadPlan, MAX_IMAGE_SPAN, MAX_LOAD_SEGMENTS};
use hypercall_abi::layout::{is_canonical, HYPERVISOR_END, HYPERVISOR_START};
use hypercall_abi::ABI_VERSION;
use proptest::prelude::*;

const PAGE: u64 = 4096;

fn config() -> ProptestConfig {
    ProptestConfig { failure_persistence: None, ..ProptestConfig::default() }
}

/// Checks what `validate` returned for `image`.
fn judge(image: &[u8]) -> Result<(), TestCaseError> {
    match validate(image, ABI_VERSION) {
        Ok(plan) => check_plan(image, &plan),
        Err(error) => {
            let text = error.to_string();
            prop_assert!(!text.is_empty() && !text.contains('\n'), "reason {:?}", text);
            Ok(())
        }
    }
}

/// Every promise of an accepted image, recomputed from the plan's own segments.
fn check_plan(image: &[u8], plan: &LoadPlan) -> Result<(), TestCaseError> {
    let segments = &plan.segments;
    prop_assert!(!segments.is_empty() && segments.len() <= MAX_LOAD_SEGMENTS);
    for segment in segments {
        prop_assert!(segment.memory_size > 0);
        prop_assert!(segment.file_size <= segment.memory_size);
        let file_end = segment.file_offset.checked_add(segment.file_size);
        prop_assert!(file_end.is_some_and(|end| end <= image.len() as u64), "file bytes outside the file");
        let last = segment.virtual_start.checked_add(segment.memory_size - 1);
        prop_assert!(last.is_some(), "segment wraps");
        for address in [segment.virtual_start, segment.last_address()] {
            prop_assert!(is_canonical(address));
            prop_assert!(!(HYPERVISOR_START..HYPERVISOR_END).contains(&address));
        }
        // Canonical at both ends and not wrapping: the segment cannot straddle the hole or
        // the hypervisor range unless it contains it whole, which is far above the span.
        prop_assert!(segment.memory_size <= MAX_IMAGE_SPAN);
    }
    for pair in segments.windows(2) {
        prop_assert!(pair[0].last_page() < pair[1].first_page(), "segments share a page");
    }
    prop_assert_eq!(plan.image_start, segments[0].first_page() * PAGE);
    let last_page = segments[segments.len() - 1].last_page();
    prop_assert_eq!(plan.image_end, (last_page + 1) * PAGE);
    prop_assert!(plan.image_end - plan.image_start <= MAX_IMAGE_SPAN);
    let pages: u64 = segments.iter().map(|segment| segment.last_page() - segment.first_page() + 1).sum();
    prop_assert_eq!(plan.image_pages, pages);
    let entry = plan.entry;
    prop_assert!(segments
        .iter()
        .any(|segment| segment.executable && segment.virtual_start <= entry && entry <= segment.last_address()));
    prop_assert!(ABI_VERSION.accepts(plan.abi).is_ok());
    Ok(())
}

/// Addresses where segment checks have edges: the usual link address, page boundaries
/// around it, the top of each half, the hypervisor range, the non-canonical hole.
fn address() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => (0u64..16).prop_map(|page| TEXT + page * PAGE),
        2 => (0u64..0x3000).prop_map(|offset| TEXT + offset),
        1 => (0u64..4).prop_map(|page| u64::MAX - page * PAGE - (PAGE - 1)),
        1 => (0u64..4).prop_map(|page| 0x0000_7fff_ffff_f000 - page * PAGE),
        1 => (0u64..3).prop_map(|offset| HYPERVISOR_START + offset * PAGE),
        1 => (0u64..3).prop_map(|offset| HYPERVISOR_END - PAGE + offset * PAGE),
        1 => (0u64..3).prop_map(|offset| 0x0000_8000_0000_0000 + offset * PAGE),
        1 => any::<u64>(),
    ]
}

fn size() -> impl Strategy<Value = u64> {
    prop_oneof![4 => 0u64..0x3000, 1 => Just(MAX_IMAGE_SPAN), 1 => Just(MAX_IMAGE_SPAN + 1), 1 => any::<u64>()]
}

fn segment() -> impl Strategy<Value = TestSegment> {
    let flags = prop_oneof![Just(5u32), Just(4), Just(6), Just(7), any::<u32>()];
    let loadable = (address(), size(), flags, 0usize..0x1100).prop_map(|(vaddr, memsz, flags, length)| {
        load(vaddr, memsz, flags, &vec![0x90; length.min(memsz.try_into().unwrap_or(usize::MAX))])
    });
    let note = prop_oneof![
        Just(note_segment(&[&abi_note_bytes(ABI_VERSION)])),
        (any::<u32>(), prop::collection::vec(any::<u8>(), 0..24))
            .prop_map(|(kind, descriptor)| note_segment(&[&raw_note(b"ringfence\0", kind, &descriptor)])),
    ];
    let other = (any::<u32>(), address()).prop_map(|(p_type, vaddr)| TestSegment { p_type, ..load(vaddr, 0, 4, b"") });
    prop_oneof![6 => loadable, 2 => note, 1 => other]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_bytes_get_a_reason(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        judge(&bytes)?;
    }

    /// A valid image with up to eight bytes overwritten, then maybe cut short.
    #[test]
    fn corrupted_images_get_a_reason_or_a_sound_plan(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut image = TestImage::valid().build();
        for (index, value) in edits {
            let at = index.index(image.len());
            image[at] = value;
        }
        if truncate {
            image.truncate(cut.index(image.len()));
        }
        judge(&image)?;
    }

    /// Well-formed files whose segment tables are random: overlapping, wrapping, outside
    /// guest memory, too many, notes with odd descriptors, other segment types.
    #[test]
    fn random_segment_tables_get_a_reason_or_a_sound_plan(
        segments in prop_oneof![
            prop::collection::vec(segment(), 0..MAX_LOAD_SEGMENTS + 3),
            // The valid image's segments plus a few: mostly accepted, so plans get checked.
            prop::collection::vec(segment(), 0..4).prop_map(|extra| [TestImage::valid().segments, extra].concat()),
        ],
        entry in prop_oneof![Just(TEXT + 0x10), address()],
    ) {
        let image = TestImage { entry, segments, ..TestImage::valid() }.build();
        judge(&image)?;
    }
}

/// The plan checks accept what they should (a minimal valid image).
#[test]
fn segment_tables_can_be_accepted() {
    let segments = vec![load(TEXT, 0x100, 5, &[0x90; 0x10]), note_segment(&[&abi_note_bytes(ABI_VERSION)])];
    let image = TestImage { entry: TEXT, segments, ..TestImage::valid() }.build();
    let plan = validate(&image, ABI_VERSION).expect("a minimal valid image");
    check_plan(&image, &plan).unwrap();
}
