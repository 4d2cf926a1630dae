//! Builds a new domain's memory from a validated image: gfns, the initial address space,
//! loaded segments, the start-info page, the shared-info mapping, the stack, the boot
//! module and the free region. All or nothing.

use crate::domain::image::LoadPlan;
use crate::domain::layout::DomainLayout;
use crate::mm::domain_memory::{DomainMemory, MemoryError, Tlb, MAX_PAGES_LIMIT};
use crate::mm::frames::{Frame, FrameSource};
use crate::mm::paging::{FrameMemory, PageSize};
use core::fmt;
use hypercall_abi::layout::{INITIAL_STACK_PAGES, PAGE_SIZE};
use hypercall_abi::memory::{map_flags, INITIAL_SPACE};
use hypercall_abi::start_info::{CMD_LINE_CAPACITY, START_INFO_MAGIC};
use hypercall_abi::{Gfn, GuestVirtualAddress, StartInfo, ABI_VERSION};
use zerocopy::{FromZeros, IntoBytes};

/// A domain's memory, ready to run.
#[derive(Debug)]
pub struct BuiltDomain {
    /// Its memory and address spaces.
    pub memory: DomainMemory,
    /// The image's entry point (RIP at entry).
    pub entry: u64,
    /// Address of the start-info page (RDI at entry).
    pub start_info: u64,
    /// One past the initial stack (RSP at entry is `stack_top - 8`).
    pub stack_top: u64,
}

/// Why a domain could not be built. Everything allocated was given back.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)] // Each variant's doc names its fields.
pub enum BuildError {
    /// No free frame (or heap) for the domain's memory or its page tables.
    OutOfMemory { memory_pages: u64 },
    /// The quota is below the initial memory.
    QuotaBelowMemory { memory_pages: u64, max_pages: u64 },
    /// The quota is above what a domain may have.
    QuotaTooLarge { max_pages: u64 },
    /// A mapping was refused (the layout and the image disagree).
    Map { address: u64, error: MemoryError },
    /// `load`, `layout` and `memory_pages` do not describe the same domain.
    LayoutMismatch,
    /// A segment's file bytes are not inside the image given.
    ImageMismatch,
    /// The module given is not the size the layout was planned for.
    ModuleMismatch,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfMemory { memory_pages } => {
                write!(f, "out of memory building a domain of {memory_pages} pages; lower mem= or start fewer domains")
            }
            Self::QuotaBelowMemory { memory_pages, max_pages } => {
                write!(f, "maxmem of {max_pages} pages is below mem of {memory_pages} pages; raise maxmem=")
            }
            Self::QuotaTooLarge { max_pages } => {
                write!(f, "maxmem of {max_pages} pages is above the limit of {MAX_PAGES_LIMIT}; lower maxmem=")
            }
            Self::Map { address, error } => write!(f, "cannot map {address:#x}: {}", error.errno()),
            Self::LayoutMismatch => f.write_str("layout does not match the image and memory size (hypervisor bug)"),
            Self::ImageMismatch => f.write_str("segment bytes lie outside the image (hypervisor bug)"),
            Self::ModuleMismatch => {
                f.write_str("the module is not the size its layout was planned for (hypervisor bug)")
            }
        }
    }
}

/// The builder changes only the initial space before anyone runs in it: no TLB holds it.
struct NoTlb;

impl Tlb for NoTlb {
    fn flush_page(&mut self, _: u64) {}
    fn flush_all(&mut self) {}
}

/// Builds the domain. Guest frame numbers are assigned in this order: image pages (by
/// address), start-info page, stack, module, free region. Every frame is zeroed
/// first, so bss and the unused parts of every page (the module's last one too) read as
/// zero. All initial mappings are kernel-only. On any error everything allocated so far
/// (gfns, page tables, shared info) is returned.
#[allow(clippy::too_many_arguments)] // The call site names every input; a struct would only rename them.
pub fn build(
    memory: &mut impl FrameMemory,
    frames: &mut impl FrameSource,
    hypervisor_root: Frame,
    image: &[u8],
    load: &LoadPlan,
    layout: &DomainLayout,
    memory_pages: u64,
    max_pages: u64,
    domain_id: u32,
    args: &str,
    module: &[u8],
) -> Result<BuiltDomain, BuildError> {
    let expected_pages =
        load.image_pages.checked_add(layout.reserved_pages()).and_then(|pages| pages.checked_add(layout.free_pages));
    if expected_pages != Some(memory_pages) {
        return Err(BuildError::LayoutMismatch);
    }
    if (module.len() as u64).div_ceil(PAGE_SIZE) != layout.module_pages {
        return Err(BuildError::ModuleMismatch);
    }
    if max_pages < memory_pages {
        return Err(BuildError::QuotaBelowMemory { memory_pages, max_pages });
    }
    if max_pages > MAX_PAGES_LIMIT {
        return Err(BuildError::QuotaTooLarge { max_pages });
    }
    let mut domain = DomainMemory::new(memory, frames, hypervisor_root, max_pages)
        .map_err(|_| BuildError::OutOfMemory { memory_pages })?;
    let mut builder = Builder { domain: &mut domain, memory_pages, next_gfn: 0 };
    match builder.populate(memory, frames, image, load, layout, domain_id, args, module) {
        Ok(()) => Ok(BuiltDomain {
            memory: domain,
            entry: load.entry,
            start_info: layout.start_info,
            stack_top: layout.stack_top,
        }),
        Err(error) => {
            domain.destroy(memory, frames);
            Err(error)
        }
    }
}

/// Returns every frame of a domain: page tables, gfns and shared info.
pub fn destroy(memory: &mut impl FrameMemory, frames: &mut impl FrameSource, built: BuiltDomain) {
    built.memory.destroy(memory, frames);
}

/// Populates gfns in order and maps them in the initial space.
struct Builder<'a> {
    domain: &'a mut DomainMemory,
    memory_pages: u64,
    next_gfn: u64,
}

impl Builder<'_> {
    fn out_of_memory(&self) -> BuildError {
        BuildError::OutOfMemory { memory_pages: self.memory_pages }
    }

    /// Populates the next gfn and returns it with its frame.
    fn next_page(
        &mut self,
        memory: &mut impl FrameMemory,
        frames: &mut impl FrameSource,
    ) -> Result<(u64, Frame), BuildError> {
        if self.next_gfn >= self.memory_pages {
            return Err(BuildError::LayoutMismatch);
        }
        let gfn = self.domain.populate(memory, frames, PageSize::Small).map_err(|_| self.out_of_memory())?;
        // A fresh domain hands out gfns 0, 1, 2...: the order start info promises.
        if gfn != self.next_gfn {
            return Err(BuildError::LayoutMismatch);
        }
        self.next_gfn += 1;
        let frame = self.domain.gfn_frame(gfn).ok_or(BuildError::LayoutMismatch)?;
        Ok((gfn, frame))
    }

    fn map(
        &mut self,
        memory: &mut impl FrameMemory,
        frames: &mut impl FrameSource,
        address: u64,
        gfn: u64,
        flags: u32,
    ) -> Result<(), BuildError> {
        self.domain.map(memory, frames, &mut NoTlb, INITIAL_SPACE, address, gfn, flags).map_err(|error| match error {
            MemoryError::NoMemory => self.out_of_memory(),
            error => BuildError::Map { address, error },
        })
    }

    /// Populates and maps `pages` zeroed pages from `start` with `flags`.
    fn map_zeroed(
        &mut self,
        memory: &mut impl FrameMemory,
        frames: &mut impl FrameSource,
        start: u64,
        pages: u64,
        flags: u32,
    ) -> Result<(), BuildError> {
        for index in 0..pages {
            let (gfn, _) = self.next_page(memory, frames)?;
            self.map(memory, frames, start + index * PAGE_SIZE, gfn, flags)?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn populate(
        &mut self,
        memory: &mut impl FrameMemory,
        frames: &mut impl FrameSource,
        image: &[u8],
        load: &LoadPlan,
        layout: &DomainLayout,
        domain_id: u32,
        args: &str,
        module: &[u8],
    ) -> Result<(), BuildError> {
        for segment in &load.segments {
            let mut flags = 0;
            if segment.writable {
                flags |= map_flags::WRITABLE;
            }
            if !segment.executable {
                flags |= map_flags::NO_EXECUTE;
            }
            let file_start = segment.virtual_start;
            let file_end = file_start.checked_add(segment.file_size).ok_or(BuildError::ImageMismatch)?;
            for page in segment.first_page()..=segment.last_page() {
                let (gfn, frame) = self.next_page(memory, frames)?;
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
                    let bytes = offset
                        .checked_add(length)
                        .and_then(|end| image.get(offset..end))
                        .ok_or(BuildError::ImageMismatch)?;
                    memory.write(frame, (copy_start - page_start) as usize, bytes);
                }
                self.map(memory, frames, page_start, gfn, flags)?;
            }
        }

        let (start_info_gfn, start_info_frame) = self.next_page(memory, frames)?;
        let module_gfn = self.next_gfn + INITIAL_STACK_PAGES;
        let after_stack =
            AfterStack { free_gfn: module_gfn + layout.module_pages, module_gfn, module_length: module.len() as u64 };
        let info = start_info(load, layout, self.memory_pages, self.domain.max_pages(), after_stack, domain_id, args);
        memory.write(start_info_frame, 0, info.as_bytes());
        self.map(memory, frames, layout.start_info, start_info_gfn, map_flags::NO_EXECUTE)?;

        self.domain.map_shared_info(memory, frames, layout.shared_info).map_err(|error| match error {
            MemoryError::NoMemory => self.out_of_memory(),
            error => BuildError::Map { address: layout.shared_info, error },
        })?;

        let read_write = map_flags::WRITABLE | map_flags::NO_EXECUTE;
        self.map_zeroed(memory, frames, layout.stack_bottom, INITIAL_STACK_PAGES, read_write)?;
        // Read-only: a stray write into the module faults instead of changing what the
        // guest was given; the gfns are the guest's, to re-protect or release (§3.2).
        for (index, bytes) in module.chunks(PAGE_SIZE as usize).enumerate() {
            let (gfn, frame) = self.next_page(memory, frames)?;
            memory.write(frame, 0, bytes);
            self.map(memory, frames, layout.module_start + index as u64 * PAGE_SIZE, gfn, map_flags::NO_EXECUTE)?;
        }
        self.map_zeroed(memory, frames, layout.free_start, layout.free_pages, read_write)?;
        if self.next_gfn != self.memory_pages {
            return Err(BuildError::LayoutMismatch);
        }
        Ok(())
    }
}

/// What the start-info page says of the regions after the stack.
struct AfterStack {
    /// The free region's first gfn.
    free_gfn: u64,
    /// The module's first gfn (its pages come right after the stack's).
    module_gfn: u64,
    /// The module's bytes (0: none).
    module_length: u64,
}

/// The start-info page, every field filled; `args` is cut to fit (on a char boundary).
fn start_info(
    load: &LoadPlan,
    layout: &DomainLayout,
    memory_pages: u64,
    max_pages: u64,
    after_stack: AfterStack,
    domain_id: u32,
    args: &str,
) -> StartInfo {
    let mut length = args.len().min(CMD_LINE_CAPACITY - 1);
    while !args.is_char_boundary(length) {
        length -= 1;
    }
    let mut info = StartInfo::new_zeroed();
    info.magic = START_INFO_MAGIC;
    info.abi_version = ABI_VERSION.packed();
    info.domain_id = domain_id;
    info.nr_pages = memory_pages;
    info.image_start = GuestVirtualAddress(load.image_start);
    info.image_end = GuestVirtualAddress(load.image_end);
    info.start_info_address = GuestVirtualAddress(layout.start_info);
    info.stack_bottom = GuestVirtualAddress(layout.stack_bottom);
    info.stack_top = GuestVirtualAddress(layout.stack_top);
    info.free_start = GuestVirtualAddress(layout.free_start);
    info.free_pages = layout.free_pages;
    info.shared_info_address = GuestVirtualAddress(layout.shared_info);
    info.free_gfn = Gfn(after_stack.free_gfn);
    info.max_pages = max_pages;
    if layout.module_pages != 0 {
        info.module_start = GuestVirtualAddress(layout.module_start);
        info.module_length = after_stack.module_length;
        info.module_gfn = Gfn(after_stack.module_gfn);
    }
    info.cmd_line_length = length as u32;
    info.flags = 0;
    info.cmd_line[..length].copy_from_slice(&args.as_bytes()[..length]);
    info
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::image::tests::{TestImage, TEXT};
    use crate::domain::image::validate;
    use crate::domain::layout::plan;
    use crate::mm::fakes::{TestFrames, TestMemory};
    use crate::mm::paging::PageFlags;
    use zerocopy::FromBytes;

    const FREE_PAGES: u64 = 5;
    /// Quota above the initial memory.
    const MORE_PAGES: u64 = 100;

    struct Inputs {
        image: Vec<u8>,
        load: LoadPlan,
        layout: DomainLayout,
        memory_pages: u64,
        module: Vec<u8>,
    }

    fn inputs() -> Inputs {
        with_module(Vec::new())
    }

    /// Inputs for a domain given `module`, with [`FREE_PAGES`] free pages.
    fn with_module(module: Vec<u8>) -> Inputs {
        let image = TestImage::valid().build();
        let load = validate(&image, ABI_VERSION).unwrap();
        let module_pages = (module.len() as u64).div_ceil(PAGE_SIZE);
        let memory_pages = load.image_pages + DomainLayout::FIXED_PAGES + module_pages + FREE_PAGES;
        let layout = plan(&load, memory_pages, module.len() as u64).unwrap();
        Inputs { image, load, layout, memory_pages, module }
    }

    fn hypervisor_root(memory: &mut TestMemory) -> Frame {
        let root = Frame::from_number(1);
        memory.zero(root);
        root
    }

    fn build_with(
        memory: &mut TestMemory,
        frames: &mut TestFrames,
        inputs: &Inputs,
        args: &str,
    ) -> Result<BuiltDomain, BuildError> {
        let root = hypervisor_root(memory);
        build(
            memory,
            frames,
            root,
            &inputs.image,
            &inputs.load,
            &inputs.layout,
            inputs.memory_pages,
            inputs.memory_pages + MORE_PAGES,
            7,
            args,
            &inputs.module,
        )
    }

    /// `build` with one vCPU, no arguments and the given sizes and module: the refusal
    /// cases vary only these.
    fn build_sized(
        memory: &mut TestMemory,
        frames: &mut TestFrames,
        root: Frame,
        inputs: &Inputs,
        (memory_pages, max_pages): (u64, u64),
        module: &[u8],
    ) -> Result<BuiltDomain, BuildError> {
        build(memory, frames, root, &inputs.image, &inputs.load, &inputs.layout, memory_pages, max_pages, 1, "", module)
    }

    fn read_page(memory: &TestMemory, built: &BuiltDomain, address: u64) -> ([u8; 4096], PageFlags) {
        let (frame, flags) =
            built.memory.kernel_space().translate(memory, address).unwrap_or_else(|| panic!("{address:#x} unmapped"));
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
        assert_eq!(built.memory.populated_pages(), inputs.memory_pages);
        assert_eq!(built.memory.max_pages(), inputs.memory_pages + MORE_PAGES);
        assert_eq!(built.entry, TEXT + 0x10);
        assert_eq!(built.start_info, inputs.layout.start_info);
        assert_eq!(built.stack_top, inputs.layout.stack_top);

        // Image pages get gfn 0.. in address order.
        let image_pages = [TEXT, TEXT + 0x1000, TEXT + 0x2000, TEXT + 0x3000, TEXT + 0x4000, TEXT + 0x5000];
        for (gfn, address) in image_pages.iter().enumerate() {
            let frame = built.memory.kernel_space().translate(&memory, *address).unwrap().0;
            assert_eq!(Some(frame), built.memory.gfn_frame(gfn as u64), "{address:#x}");
        }
        // Text: file bytes, zero tail, R-X.
        let (text, flags) = read_page(&memory, &built, TEXT + 0x1000);
        assert!(text[..0x800].iter().all(|&byte| byte == 0x90) && text[0x800..].iter().all(|&byte| byte == 0));
        assert!(
            flags.contains(PageFlags::USER)
                && !flags.contains(PageFlags::WRITABLE)
                && !flags.contains(PageFlags::NO_EXECUTE)
        );
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
        assert_eq!((info.image_start.0, info.image_end.0), (TEXT, TEXT + 0x6000));
        assert_eq!(info.start_info_address.0, inputs.layout.start_info);
        assert_eq!((info.stack_bottom.0, info.stack_top.0), (inputs.layout.stack_bottom, inputs.layout.stack_top));
        assert_eq!((info.free_start.0, info.free_pages), (inputs.layout.free_start, FREE_PAGES));
        assert_eq!(info.shared_info_address.0, inputs.layout.shared_info);
        assert_eq!(info.max_pages, inputs.memory_pages + MORE_PAGES);
        let free_gfn = inputs.load.image_pages + DomainLayout::FIXED_PAGES;
        assert_eq!(info.free_gfn, Gfn(free_gfn));
        let free_frame = built.memory.kernel_space().translate(&memory, inputs.layout.free_start).unwrap().0;
        assert_eq!(built.memory.gfn_frame(free_gfn), Some(free_frame));
        // Shared info: the hypervisor's frame, RW NX, not a gfn; every initial page kernel-only.
        let (shared, flags) = built.memory.kernel_space().translate(&memory, inputs.layout.shared_info).unwrap();
        assert_eq!(shared, built.memory.shared_info_frame());
        assert!(flags.contains(PageFlags::WRITABLE | PageFlags::NO_EXECUTE));
        assert_eq!(built.memory.kernel_space().kernel_only_leaves(), inputs.memory_pages + 1);
        assert_eq!(info.cmd_line(), "hello world");
        assert_eq!(info.cmd_line[11], 0);
        assert_eq!(info.start_info_address.0, built.start_info);

        // Stack and free region RW NX; guard pages unmapped.
        for address in [
            inputs.layout.stack_bottom,
            inputs.layout.stack_top - 1,
            inputs.layout.free_start,
            inputs.layout.free_start + (FREE_PAGES - 1) * 4096,
        ] {
            let (_, flags) = read_page(&memory, &built, address);
            assert!(flags.contains(PageFlags::USER | PageFlags::WRITABLE | PageFlags::NO_EXECUTE), "{address:#x}");
        }
        for guard in [
            TEXT + 0x6000,
            inputs.layout.start_info + 4096,
            inputs.layout.stack_top,
            inputs.layout.free_start + FREE_PAGES * 4096,
            TEXT - 4096,
        ] {
            assert_eq!(built.memory.kernel_space().translate(&memory, guard), None, "{guard:#x} must be a guard page");
        }

        // Every gfn mapped exactly once: distinct frames.
        let mut distinct: Vec<_> = (0..inputs.memory_pages).map(|gfn| built.memory.gfn_frame(gfn).unwrap()).collect();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len() as u64, inputs.memory_pages);
        assert!((0..inputs.memory_pages).all(|gfn| built.memory.mapping_count(gfn) == 1));

        destroy(&mut memory, &mut frames, built);
        assert!(frames.outstanding.is_empty(), "destroy returns every frame");
    }

    #[test]
    fn a_module_is_copied_read_only_after_the_stack() {
        // Three whole pages and a partial one, every byte distinct from its neighbours.
        let module: Vec<u8> = (0..3 * 4096 + 123u32).map(|index| (index * 7 + index / 251) as u8).collect();
        let inputs = with_module(module.clone());
        let mut memory = TestMemory::default();
        let mut frames = TestFrames::new();
        let built = build_with(&mut memory, &mut frames, &inputs, "").unwrap();
        let layout = inputs.layout;
        assert_eq!(layout.module_pages, 4);
        assert_eq!(built.memory.populated_pages(), inputs.memory_pages);

        let (page, _) = read_page(&memory, &built, layout.start_info);
        let info = StartInfo::read_from_bytes(&page).unwrap();
        assert_eq!(info.module_start.0, layout.module_start);
        assert_eq!(info.module_length, module.len() as u64);
        let module_gfn = inputs.load.image_pages + DomainLayout::FIXED_PAGES;
        assert_eq!(info.module_gfn, Gfn(module_gfn), "right after the stack's gfns");
        assert_eq!(info.free_gfn, Gfn(module_gfn + 4));
        assert_eq!((info.free_start.0, info.free_pages), (layout.free_start, FREE_PAGES));
        assert_eq!(info.module_range(), Some(layout.module_start..layout.module_start + module.len() as u64));

        let mut copied = Vec::new();
        for index in 0..4 {
            let address = layout.module_start + index * 4096;
            let (bytes, flags) = read_page(&memory, &built, address);
            assert!(flags.contains(PageFlags::NO_EXECUTE) && !flags.contains(PageFlags::WRITABLE), "{address:#x}");
            let frame = built.memory.kernel_space().translate(&memory, address).unwrap().0;
            assert_eq!(built.memory.gfn_frame(module_gfn + index), Some(frame), "gfns in address order");
            copied.extend_from_slice(&bytes);
        }
        assert_eq!(&copied[..module.len()], module.as_slice(), "the module's exact bytes");
        assert!(copied[module.len()..].iter().all(|&byte| byte == 0), "the last page's tail is zero");
        for guard in [layout.module_start - 4096, layout.module_start + 4 * 4096] {
            assert_eq!(built.memory.kernel_space().translate(&memory, guard), None, "{guard:#x} must be a guard page");
        }
        assert_eq!(built.memory.kernel_space().kernel_only_leaves(), inputs.memory_pages + 1);
        destroy(&mut memory, &mut frames, built);
        assert!(frames.outstanding.is_empty(), "destroy returns the module's frames too");
    }

    #[test]
    fn no_module_leaves_its_fields_zero() {
        let inputs = inputs();
        let mut memory = TestMemory::default();
        let mut frames = TestFrames::new();
        let built = build_with(&mut memory, &mut frames, &inputs, "").unwrap();
        let (page, _) = read_page(&memory, &built, built.start_info);
        let info = StartInfo::read_from_bytes(&page).unwrap();
        assert_eq!((info.module_start.0, info.module_length, info.module_gfn.0), (0, 0, 0));
        assert_eq!(info.module_range(), None);
        assert!(info.reserved.iter().all(|&byte| byte == 0));
        destroy(&mut memory, &mut frames, built);
    }

    #[test]
    fn a_module_of_another_size_than_planned_is_refused() {
        let inputs = with_module(vec![1; 5000]);
        let mut memory = TestMemory::default();
        let mut frames = TestFrames::new();
        let root = hypervisor_root(&mut memory);
        let pages = inputs.memory_pages;
        for other in [&[1u8; 9000][..], &[1; 4096][..], &[][..]] {
            let result = build_sized(&mut memory, &mut frames, root, &inputs, (pages, pages), other);
            assert_eq!(result.map(|_| ()), Err(BuildError::ModuleMismatch), "{} bytes", other.len());
        }
        assert_eq!(frames.allocations, 0, "refused before anything was allocated");
    }

    #[test]
    fn running_out_with_a_module_leaks_nothing() {
        let inputs = with_module(vec![0xa5; 4096 + 1]);
        let mut memory = TestMemory::default();
        let mut frames = TestFrames::new();
        let built = build_with(&mut memory, &mut frames, &inputs, "").unwrap();
        let needed = frames.allocations;
        destroy(&mut memory, &mut frames, built);
        for allowed in 0..needed {
            let mut frames = TestFrames::limited(allowed);
            let result = build_with(&mut TestMemory::default(), &mut frames, &inputs, "");
            assert!(matches!(result, Err(BuildError::OutOfMemory { .. })), "{allowed}");
            assert!(frames.outstanding.is_empty(), "leak when running out after {allowed} frames");
        }
    }

    #[test]
    fn running_out_at_every_point_leaks_nothing() {
        let inputs = inputs();
        let mut memory = TestMemory::default();
        let mut frames = TestFrames::new();
        let built = build_with(&mut memory, &mut frames, &inputs, "").unwrap();
        let needed = frames.allocations;
        destroy(&mut memory, &mut frames, built);
        assert_eq!(needed, inputs.memory_pages + 5, "data frames, shared info, root, PDPT, PD and one page table");
        for allowed in 0..needed {
            let mut memory = TestMemory::default();
            let mut frames = TestFrames::limited(allowed);
            let result = build_with(&mut memory, &mut frames, &inputs, "x");
            assert_eq!(
                result.map(|_| ()),
                Err(BuildError::OutOfMemory { memory_pages: inputs.memory_pages }),
                "{allowed}"
            );
            assert!(frames.outstanding.is_empty(), "leak when running out after {allowed} frames");
        }
        let mut frames = TestFrames::limited(needed);
        assert!(build_with(&mut TestMemory::default(), &mut frames, &inputs, "x").is_ok());
    }

    #[test]
    fn command_line_is_cut_on_a_char_boundary() {
        let inputs = inputs();
        for (args, expected_length) in
            [("a".repeat(1500), 1023), ("é".repeat(600), 1022), ("b".repeat(1023), 1023), (String::new(), 0)]
        {
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
        let pages = inputs.memory_pages;
        let result = build_sized(&mut memory, &mut frames, root, &inputs, (pages + 1, pages + 1), &[]);
        assert_eq!(result.map(|_| ()), Err(BuildError::LayoutMismatch));
        let result = build_sized(&mut memory, &mut frames, root, &inputs, (pages, pages - 1), &[]);
        assert_eq!(result.map(|_| ()), Err(BuildError::QuotaBelowMemory { memory_pages: pages, max_pages: pages - 1 }));
        assert!(BuildError::QuotaBelowMemory { memory_pages: pages, max_pages: pages - 1 }
            .to_string()
            .contains("maxmem"));
        let result = build_sized(&mut memory, &mut frames, root, &inputs, (pages, u64::MAX), &[]);
        assert_eq!(result.map(|_| ()), Err(BuildError::QuotaTooLarge { max_pages: u64::MAX }));
        assert_eq!(frames.allocations, 0);
        // The limit itself is a valid quota; one page more is not.
        for (max_pages, too_large) in [(MAX_PAGES_LIMIT, false), (MAX_PAGES_LIMIT + 1, true)] {
            let result = build_sized(&mut memory, &mut frames, root, &inputs, (pages, max_pages), &[]);
            assert_eq!(matches!(result, Err(BuildError::QuotaTooLarge { .. })), too_large, "{max_pages}");
            if let Ok(built) = result {
                destroy(&mut memory, &mut frames, built);
            }
        }

        // The image given is not the one validated: the segment bytes are not there.
        let short = &inputs.image[..inputs.image.len() / 2];
        let result =
            build(&mut memory, &mut frames, root, short, &inputs.load, &inputs.layout, pages, pages, 1, "", &[]);
        assert_eq!(result.map(|_| ()), Err(BuildError::ImageMismatch));
        assert!(frames.outstanding.is_empty());

        // A layout that overlaps the image: the mapping is refused, everything returned.
        let mut overlapping = inputs.layout;
        overlapping.start_info = TEXT;
        let result =
            build(&mut memory, &mut frames, root, &inputs.image, &inputs.load, &overlapping, pages, pages, 1, "", &[]);
        assert_eq!(result.map(|_| ()), Err(BuildError::Map { address: TEXT, error: MemoryError::Exists }));
        assert!(frames.outstanding.is_empty());
        assert!(BuildError::Map { address: TEXT, error: MemoryError::Exists }.to_string().contains("EEXIST"));
        // The shared-info page over the stack: refused the same way.
        let mut overlapping = inputs.layout;
        overlapping.shared_info = TEXT;
        let result =
            build(&mut memory, &mut frames, root, &inputs.image, &inputs.load, &overlapping, pages, pages, 1, "", &[]);
        assert_eq!(result.map(|_| ()), Err(BuildError::Map { address: TEXT, error: MemoryError::Exists }));
        assert!(frames.outstanding.is_empty());
    }
}
