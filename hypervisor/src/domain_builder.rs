//! Builds a new domain's memory from a validated image: frames, page tables, loaded
//! segments, the start-info page, the stack and the free region. All or nothing.

use crate::frame_allocator::{Frame, FrameSource};
use crate::image::LoadPlan;
use crate::layout::DomainLayout;
use crate::paging::{AddressSpace, FrameMemory, MapError, PageFlags};
use alloc::vec::Vec;
use core::fmt;
use hypercall_abi::layout::{INITIAL_STACK_PAGES, PAGE_SIZE};
use hypercall_abi::start_info::{CMD_LINE_CAPACITY, START_INFO_MAGIC};
use hypercall_abi::{StartInfo, ABI_VERSION};
use zerocopy::{FromZeros, IntoBytes};

/// A domain's memory, ready to run.
#[derive(Debug)]
pub struct BuiltDomain {
    pub space: AddressSpace,
    /// Machine frame of each guest frame number: `frames[gfn]`, `len() == memory_pages`.
    pub frames: Vec<Frame>,
    pub entry: u64,
    /// Address of the start-info page (RDI at entry).
    pub start_info: u64,
    /// One past the initial stack (RSP at entry is `stack_top - 8`).
    pub stack_top: u64,
}

/// Why a domain could not be built. Everything allocated was given back.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum BuildError {
    /// No free frame for the domain's memory or its page tables.
    OutOfMemory { memory_pages: u64 },
    /// The hypervisor heap could not hold the domain's frame list.
    OutOfHeap,
    /// A mapping was refused (the layout and the image disagree).
    Map { address: u64, error: MapError },
    /// `load`, `layout` and `memory_pages` do not describe the same domain.
    LayoutMismatch,
    /// A segment's file bytes are not inside the image given.
    ImageMismatch,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfMemory { memory_pages } => {
                write!(f, "out of memory building a domain of {memory_pages} pages; lower mem= or start fewer domains")
            }
            Self::OutOfHeap => f.write_str("out of hypervisor heap for the domain's frame list"),
            Self::Map { address, error } => write!(f, "cannot map {address:#x}: {error}"),
            Self::LayoutMismatch => f.write_str("layout does not match the image and memory size (hypervisor bug)"),
            Self::ImageMismatch => f.write_str("segment bytes lie outside the image (hypervisor bug)"),
        }
    }
}

/// Builds the domain. Guest frame numbers are assigned in this order: image pages (by
/// address), start-info page, stack, free region. Every frame is zeroed first, so bss and
/// the unused parts of every page read as zero. On any error everything allocated so far
/// (data frames and page tables) is returned to `frames`.
#[allow(clippy::too_many_arguments)] // The lead's call site names every input; a struct would only rename them.
pub fn build(
    memory: &mut impl FrameMemory,
    frames: &mut impl FrameSource,
    hypervisor_root: Frame,
    image: &[u8],
    load: &LoadPlan,
    layout: &DomainLayout,
    memory_pages: u64,
    domain_id: u32,
    args: &str,
) -> Result<BuiltDomain, BuildError> {
    let expected_pages = load
        .image_pages
        .checked_add(DomainLayout::FIXED_PAGES)
        .and_then(|pages| pages.checked_add(layout.free_pages));
    if expected_pages != Some(memory_pages) {
        return Err(BuildError::LayoutMismatch);
    }
    let count = usize::try_from(memory_pages).map_err(|_| BuildError::LayoutMismatch)?;
    let mut data: Vec<Frame> = Vec::new();
    data.try_reserve_exact(count).map_err(|_| BuildError::OutOfHeap)?;
    for _ in 0..count {
        let Some(frame) = frames.allocate() else {
            release(frames, data);
            return Err(BuildError::OutOfMemory { memory_pages });
        };
        memory.zero(frame);
        data.push(frame);
    }
    let space = match AddressSpace::new(memory, frames, hypervisor_root) {
        Ok(space) => space,
        Err(_) => {
            release(frames, data);
            return Err(BuildError::OutOfMemory { memory_pages });
        }
    };
    let mut built = BuiltDomain { space, frames: data, entry: load.entry, start_info: layout.start_info, stack_top: layout.stack_top };
    match populate(memory, frames, image, load, layout, memory_pages, domain_id, args, &mut built.space, &built.frames) {
        Ok(()) => Ok(built),
        Err(error) => {
            destroy(memory, frames, built);
            Err(error)
        }
    }
}

/// Returns every frame of a domain: page tables and data.
pub fn destroy(memory: &mut impl FrameMemory, frames: &mut impl FrameSource, built: BuiltDomain) {
    built.space.destroy(memory, frames);
    release(frames, built.frames);
}

fn release(frames: &mut impl FrameSource, data: Vec<Frame>) {
    for frame in data {
        frames.free(frame);
    }
}

/// Hands out the domain's frames in guest-frame-number order.
struct NextFrame<'a> {
    frames: &'a [Frame],
    next: usize,
}

impl NextFrame<'_> {
    fn take(&mut self) -> Result<Frame, BuildError> {
        let frame = *self.frames.get(self.next).ok_or(BuildError::LayoutMismatch)?;
        self.next += 1;
        Ok(frame)
    }
}

fn map_page(
    memory: &mut impl FrameMemory,
    frames: &mut impl FrameSource,
    space: &mut AddressSpace,
    address: u64,
    frame: Frame,
    flags: PageFlags,
    memory_pages: u64,
) -> Result<(), BuildError> {
    space.map(memory, frames, address, frame, flags).map_err(|error| match error {
        MapError::OutOfFrames => BuildError::OutOfMemory { memory_pages },
        error => BuildError::Map { address, error },
    })
}

#[allow(clippy::too_many_arguments)]
fn populate(
    memory: &mut impl FrameMemory,
    frames: &mut impl FrameSource,
    image: &[u8],
    load: &LoadPlan,
    layout: &DomainLayout,
    memory_pages: u64,
    domain_id: u32,
    args: &str,
    space: &mut AddressSpace,
    data: &[Frame],
) -> Result<(), BuildError> {
    let mut next = NextFrame { frames: data, next: 0 };

    for segment in &load.segments {
        let mut flags = PageFlags::USER;
        if segment.writable {
            flags |= PageFlags::WRITABLE;
        }
        if !segment.executable {
            flags |= PageFlags::NO_EXECUTE;
        }
        let file_start = segment.virtual_start;
        let file_end = file_start.checked_add(segment.file_size).ok_or(BuildError::ImageMismatch)?;
        for page in segment.first_page()..=segment.last_page() {
            let frame = next.take()?;
            let page_start = page * PAGE_SIZE;
            let copy_start = page_start.max(file_start);
            let copy_end = page_start.saturating_add(PAGE_SIZE).min(file_end);
            if copy_start < copy_end {
                let offset = segment
                    .file_offset
                    .checked_add(copy_start - file_start)
                    .and_then(|offset| usize::try_from(offset).ok())
                    .ok_or(BuildError::ImageMismatch)?;
                let length = (copy_end - copy_start) as usize;
                let bytes = offset.checked_add(length).and_then(|end| image.get(offset..end)).ok_or(BuildError::ImageMismatch)?;
                memory.write(frame, (copy_start - page_start) as usize, bytes);
            }
            map_page(memory, frames, space, page_start, frame, flags, memory_pages)?;
        }
    }

    let start_info_frame = next.take()?;
    let info = start_info(load, layout, memory_pages, domain_id, args);
    memory.write(start_info_frame, 0, info.as_bytes());
    let read_only = PageFlags::USER | PageFlags::NO_EXECUTE;
    map_page(memory, frames, space, layout.start_info, start_info_frame, read_only, memory_pages)?;

    let read_write = PageFlags::USER | PageFlags::WRITABLE | PageFlags::NO_EXECUTE;
    for index in 0..INITIAL_STACK_PAGES {
        let frame = next.take()?;
        map_page(memory, frames, space, layout.stack_bottom + index * PAGE_SIZE, frame, read_write, memory_pages)?;
    }
    for index in 0..layout.free_pages {
        let frame = next.take()?;
        map_page(memory, frames, space, layout.free_start + index * PAGE_SIZE, frame, read_write, memory_pages)?;
    }
    if next.next != data.len() {
        return Err(BuildError::LayoutMismatch);
    }
    Ok(())
}

/// The start-info page, every field filled; `args` is cut to fit (on a char boundary).
fn start_info(load: &LoadPlan, layout: &DomainLayout, memory_pages: u64, domain_id: u32, args: &str) -> StartInfo {
    let mut length = args.len().min(CMD_LINE_CAPACITY - 1);
    while !args.is_char_boundary(length) {
        length -= 1;
    }
    let mut info = StartInfo::new_zeroed();
    info.magic = START_INFO_MAGIC;
    info.abi_version = ABI_VERSION.packed();
    info.domain_id = domain_id;
    info.nr_pages = memory_pages;
    info.image_start = load.image_start;
    info.image_end = load.image_end;
    info.start_info_address = layout.start_info;
    info.stack_bottom = layout.stack_bottom;
    info.stack_top = layout.stack_top;
    info.free_start = layout.free_start;
    info.free_pages = layout.free_pages;
    info.shared_info_address = 0;
    info.cmd_line_length = length as u32;
    info.flags = 0;
    info.cmd_line[..length].copy_from_slice(&args.as_bytes()[..length]);
    info
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::tests::{TestImage, TEXT};
    use crate::image::validate;
    use crate::layout::plan;
    use crate::test_support::{TestFrames, TestMemory};
    use zerocopy::FromBytes;

    const FREE_PAGES: u64 = 5;

    struct Inputs {
        image: Vec<u8>,
        load: LoadPlan,
        layout: DomainLayout,
        memory_pages: u64,
    }

    fn inputs() -> Inputs {
        let image = TestImage::valid().build();
        let load = validate(&image, ABI_VERSION).unwrap();
        let memory_pages = load.image_pages + DomainLayout::FIXED_PAGES + FREE_PAGES;
        let layout = plan(&load, memory_pages).unwrap();
        Inputs { image, load, layout, memory_pages }
    }

    fn hypervisor_root(memory: &mut TestMemory) -> Frame {
        let root = Frame::from_number(1);
        memory.zero(root);
        root
    }

    fn build_with(memory: &mut TestMemory, frames: &mut TestFrames, inputs: &Inputs, args: &str) -> Result<BuiltDomain, BuildError> {
        let root = hypervisor_root(memory);
        build(memory, frames, root, &inputs.image, &inputs.load, &inputs.layout, inputs.memory_pages, 7, args)
    }

    fn read_page(memory: &TestMemory, built: &BuiltDomain, address: u64) -> ([u8; 4096], PageFlags) {
        let (frame, flags) = built.space.translate(memory, address).unwrap_or_else(|| panic!("{address:#x} unmapped"));
        let mut bytes = [0u8; 4096];
        memory.read(frame, 0, &mut bytes);
        (bytes, flags)
    }

    #[test]
    fn builds_image_start_info_stack_and_free_region() {
        let inputs = inputs();
        let mut memory = TestMemory::default();
        let mut frames = TestFrames::new();
        let built = build_with(&mut memory, &mut frames, &inputs, "hello world").unwrap();
        assert_eq!(built.frames.len() as u64, inputs.memory_pages);
        assert_eq!(built.entry, TEXT + 0x10);
        assert_eq!(built.start_info, inputs.layout.start_info);
        assert_eq!(built.stack_top, inputs.layout.stack_top);

        // Image pages get gfn 0.. in address order.
        let image_pages = [TEXT, TEXT + 0x1000, TEXT + 0x2000, TEXT + 0x3000, TEXT + 0x4000, TEXT + 0x5000];
        for (gfn, address) in image_pages.iter().enumerate() {
            assert_eq!(built.space.translate(&memory, *address).unwrap().0, built.frames[gfn], "{address:#x}");
        }
        // Text: file bytes, zero tail, R-X.
        let (text, flags) = read_page(&memory, &built, TEXT + 0x1000);
        assert!(text[..0x800].iter().all(|&byte| byte == 0x90) && text[0x800..].iter().all(|&byte| byte == 0));
        assert!(flags.contains(PageFlags::USER) && !flags.contains(PageFlags::WRITABLE) && !flags.contains(PageFlags::NO_EXECUTE));
        // Rodata: R--.
        let (rodata, flags) = read_page(&memory, &built, TEXT + 0x2000);
        assert_eq!(&rodata[..6], b"rodata");
        assert!(flags.contains(PageFlags::NO_EXECUTE) && !flags.contains(PageFlags::WRITABLE));
        // Data + bss: RW-, bss zeroed.
        let (data, flags) = read_page(&memory, &built, TEXT + 0x3000);
        assert!(data[..0x20].iter().all(|&byte| byte == 7) && data[0x20..].iter().all(|&byte| byte == 0));
        assert!(flags.contains(PageFlags::WRITABLE | PageFlags::NO_EXECUTE | PageFlags::USER));
        let (bss, _) = read_page(&memory, &built, TEXT + 0x5000);
        assert!(bss.iter().all(|&byte| byte == 0));

        // Start info: complete, read-only, no-execute.
        let (page, flags) = read_page(&memory, &built, inputs.layout.start_info);
        assert!(flags.contains(PageFlags::USER | PageFlags::NO_EXECUTE) && !flags.contains(PageFlags::WRITABLE));
        let info = StartInfo::read_from_bytes(&page).unwrap();
        assert_eq!(info.magic, START_INFO_MAGIC);
        assert_eq!(info.abi_version, ABI_VERSION.packed());
        assert_eq!(info.domain_id, 7);
        assert_eq!(info.nr_pages, inputs.memory_pages);
        assert_eq!((info.image_start, info.image_end), (TEXT, TEXT + 0x6000));
        assert_eq!(info.start_info_address, inputs.layout.start_info);
        assert_eq!((info.stack_bottom, info.stack_top), (inputs.layout.stack_bottom, inputs.layout.stack_top));
        assert_eq!((info.free_start, info.free_pages), (inputs.layout.free_start, FREE_PAGES));
        assert_eq!(info.shared_info_address, 0);
        assert_eq!(info.cmd_line(), "hello world");
        assert_eq!(info.cmd_line[11], 0);
        assert_eq!(info.start_info_address, built.start_info);

        // Stack and free region RW NX; guard pages unmapped.
        for address in [inputs.layout.stack_bottom, inputs.layout.stack_top - 1, inputs.layout.free_start, inputs.layout.free_start + (FREE_PAGES - 1) * 4096] {
            let (_, flags) = read_page(&memory, &built, address);
            assert!(flags.contains(PageFlags::USER | PageFlags::WRITABLE | PageFlags::NO_EXECUTE), "{address:#x}");
        }
        for guard in [TEXT + 0x6000, inputs.layout.start_info + 4096, inputs.layout.stack_top, inputs.layout.free_start + FREE_PAGES * 4096, TEXT - 4096] {
            assert_eq!(built.space.translate(&memory, guard), None, "{guard:#x} must be a guard page");
        }

        // Every gfn mapped exactly once: distinct frames.
        let mut distinct = built.frames.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), built.frames.len());

        destroy(&mut memory, &mut frames, built);
        assert!(frames.outstanding.is_empty(), "destroy returns every frame");
    }

    #[test]
    fn running_out_at_every_point_leaks_nothing() {
        let inputs = inputs();
        let mut memory = TestMemory::default();
        let mut frames = TestFrames::new();
        let built = build_with(&mut memory, &mut frames, &inputs, "").unwrap();
        let needed = frames.allocations;
        destroy(&mut memory, &mut frames, built);
        assert_eq!(needed, inputs.memory_pages + 4, "data frames plus root, PDPT, PD and one page table");
        for allowed in 0..needed {
            let mut memory = TestMemory::default();
            let mut frames = TestFrames::limited(allowed);
            let result = build_with(&mut memory, &mut frames, &inputs, "x");
            assert_eq!(result.map(|_| ()), Err(BuildError::OutOfMemory { memory_pages: inputs.memory_pages }), "{allowed}");
            assert!(frames.outstanding.is_empty(), "leak when running out after {allowed} frames");
        }
        let mut frames = TestFrames::limited(needed);
        assert!(build_with(&mut TestMemory::default(), &mut frames, &inputs, "x").is_ok());
    }

    #[test]
    fn command_line_is_cut_on_a_char_boundary() {
        let inputs = inputs();
        for (args, expected_length) in [("a".repeat(1500), 1023), ("é".repeat(600), 1022), ("b".repeat(1023), 1023), (String::new(), 0)] {
            let mut memory = TestMemory::default();
            let mut frames = TestFrames::new();
            let built = build_with(&mut memory, &mut frames, &inputs, &args).unwrap();
            let (page, _) = read_page(&memory, &built, built.start_info);
            let info = StartInfo::read_from_bytes(&page).unwrap();
            assert_eq!(info.cmd_line_length, expected_length);
            assert_eq!(info.cmd_line(), &args[..expected_length as usize]);
            assert_eq!(info.cmd_line[expected_length as usize], 0, "NUL-terminated");
            destroy(&mut memory, &mut frames, built);
            assert!(frames.outstanding.is_empty());
        }
    }

    #[test]
    fn inconsistent_inputs_are_refused_without_leaks() {
        let inputs = inputs();
        let mut memory = TestMemory::default();
        let mut frames = TestFrames::new();
        let root = hypervisor_root(&mut memory);
        let result = build(&mut memory, &mut frames, root, &inputs.image, &inputs.load, &inputs.layout, inputs.memory_pages + 1, 1, "");
        assert_eq!(result.map(|_| ()), Err(BuildError::LayoutMismatch));
        assert_eq!(frames.allocations, 0);

        // The image given is not the one validated: the segment bytes are not there.
        let short = &inputs.image[..inputs.image.len() / 2];
        let result = build(&mut memory, &mut frames, root, short, &inputs.load, &inputs.layout, inputs.memory_pages, 1, "");
        assert_eq!(result.map(|_| ()), Err(BuildError::ImageMismatch));
        assert!(frames.outstanding.is_empty());

        // A layout that overlaps the image: the mapping is refused, everything returned.
        let mut overlapping = inputs.layout;
        overlapping.start_info = TEXT;
        let result = build(&mut memory, &mut frames, root, &inputs.image, &inputs.load, &overlapping, inputs.memory_pages, 1, "");
        assert_eq!(result.map(|_| ()), Err(BuildError::Map { address: TEXT, error: MapError::AlreadyMapped }));
        assert!(frames.outstanding.is_empty());
        assert!(BuildError::Map { address: TEXT, error: MapError::AlreadyMapped }.to_string().contains("already mapped"));
    }
}
