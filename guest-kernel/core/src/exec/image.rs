//! The bytes of a program's pages: what `execve` copies into each page it maps (text and
//! data from the file, the rest zero), and with which access.
//!
//! Two segments may share a page at their boundary (a linker may start the data segment in
//! the page where text ends, at another file offset); such a page holds both segments'
//! bytes and the union of their access, as Linux's mapping of both gives.

use super::program::{Program, Protection, Segment, PAGE_SIZE};

/// The page-aligned addresses the program occupies, lowest first, each once.
pub fn page_addresses(program: &Program) -> impl Iterator<Item = u64> + '_ {
    let mut pages: alloc::vec::Vec<u64> = program
        .segments
        .iter()
        .flat_map(|segment| {
            let first = segment.address - segment.address % PAGE_SIZE;
            (first..segment.end()).step_by(PAGE_SIZE as usize)
        })
        .collect();
    pages.sort_unstable();
    pages.dedup();
    pages.into_iter()
}

/// Fills `page` with the contents of the page at `address` (page-aligned) from `file`, and
/// returns its access; `None` if no segment touches it. The plan was checked against
/// `file` ([`super::program::plan`]), so every file range is inside it.
pub fn fill_page(
    program: &Program,
    file: &[u8],
    address: u64,
    page: &mut [u8; PAGE_SIZE as usize],
) -> Option<Protection> {
    page.fill(0);
    let mut protection: Option<Protection> = None;
    for segment in program.segments.iter().filter(|segment| touches(segment, address)) {
        let access = protection.get_or_insert_with(Protection::default);
        access.read |= segment.protection.read;
        access.write |= segment.protection.write;
        access.execute |= segment.protection.execute;
        // The part of this page that holds file bytes of the segment.
        let start = segment.address.max(address);
        let end = (segment.address + segment.file_size).min(address + PAGE_SIZE);
        if start < end {
            let file_start = (segment.file_offset + (start - segment.address)) as usize;
            let length = (end - start) as usize;
            let into = (start - address) as usize;
            if let Some(bytes) = file.get(file_start..file_start + length) {
                page[into..into + length].copy_from_slice(bytes);
            }
        }
    }
    protection
}

fn touches(segment: &Segment, page: u64) -> bool {
    segment.address < page + PAGE_SIZE && page < segment.end()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::program::plan;
    use crate::exec::program::tests::{elf_file, load};
    use elf::abi;

    const USER_LIMIT: u64 = 0x0000_8000_0000_0000;

    #[test]
    fn pages_hold_file_bytes_then_zeros() {
        // Text at 0x401000 (0x800 bytes), data at 0x402100 with 0x100 file bytes and a
        // bss reaching 0x404000.
        let mut file = elf_file(
            abi::ET_EXEC,
            0x401000,
            &[
                load(abi::PF_R | abi::PF_X, 0x1000, 0x401000, 0x800, 0x800),
                load(abi::PF_R | abi::PF_W, 0x2100, 0x402100, 0x100, 0x1f00),
            ],
            0x2200,
        );
        file[0x1000..0x1800].fill(0x90);
        file[0x2100..0x2200].fill(0x11);
        let program = plan(&file, 0, USER_LIMIT).unwrap();
        let pages: alloc::vec::Vec<u64> = page_addresses(&program).collect();
        assert_eq!(pages, [0x401000, 0x402000, 0x403000]);

        let mut page = [0xeeu8; 4096];
        let text = fill_page(&program, &file, 0x401000, &mut page).unwrap();
        assert!(text.execute && !text.write);
        assert!(page[..0x800].iter().all(|&b| b == 0x90));
        assert!(page[0x800..].iter().all(|&b| b == 0), "past the file bytes is zero");

        let data = fill_page(&program, &file, 0x402000, &mut page).unwrap();
        assert!(data.write && !data.execute);
        assert!(page[..0x100].iter().all(|&b| b == 0), "before the segment starts");
        assert!(page[0x100..0x200].iter().all(|&b| b == 0x11));
        assert!(page[0x200..].iter().all(|&b| b == 0), "bss");

        let bss = fill_page(&program, &file, 0x403000, &mut page).unwrap();
        assert!(bss.write);
        assert!(page.iter().all(|&b| b == 0));
        assert_eq!(fill_page(&program, &file, 0x405000, &mut page), None);
    }

    #[test]
    fn a_shared_boundary_page_holds_both_segments() {
        let mut file = elf_file(
            abi::ET_EXEC,
            0x401000,
            &[
                load(abi::PF_R | abi::PF_X, 0x1000, 0x401000, 0x800, 0x800),
                load(abi::PF_R | abi::PF_W, 0x1800, 0x401800, 0x100, 0x100),
            ],
            0x2000,
        );
        file[0x1000..0x1800].fill(0x90);
        file[0x1800..0x1900].fill(0x22);
        let program = plan(&file, 0, USER_LIMIT).unwrap();
        assert_eq!(page_addresses(&program).count(), 1);
        let mut page = [0u8; 4096];
        let access = fill_page(&program, &file, 0x401000, &mut page).unwrap();
        assert!(access.read && access.write && access.execute, "the union of both");
        assert_eq!(page[0x7ff], 0x90);
        assert_eq!(page[0x800], 0x22);
        assert_eq!(page[0x900], 0);
    }
}
