//! A check on the built hypervisor: the code every guest trap, hypercall, bounce and
//! `iret` runs is packed at the start of its text, where `hypervisor/hypervisor.ld` puts
//! it by matching mangled names. Under QEMU's TCG each guest page-table switch empties the
//! software TLB and the translated-code lookup cache, so every code page those paths touch
//! after it costs a refill; packed, the guest-user system call's round trip ran ~8 %
//! fewer cycles (docs/trap-instructions.md). A compiler whose mangling the script's
//! patterns no longer match would silently undo that; this check says so instead.

use crate::{Error, Result};
use elf::endian::LittleEndian;
use elf::ElfBytes;
use std::path::Path;

/// How far into the text the hot paths may reach: six pages (they take ~4.7 today).
pub const PACKED_BYTES: u64 = 6 * 4096;

/// Fragments of the (mangled) names of functions on every trap's path; each must name a
/// symbol inside the packed range. `memcpy` comes last in the packed group. (The guest
/// copies' fast path is inlined into its callers, so it has no symbol to look for.)
pub const HOT_FUNCTIONS: [&str; 8] = [
    "hypercall_dispatch",
    "trap_dispatch",
    "13finish_return",
    "12bounce_event",
    "10guest_iret",
    "16handle_hypercall",
    "12AddressSpace9translate",
    "memcpy",
];

/// The first hot function that is not packed, as a message, given the text's start and
/// the image's function symbols (name, address).
pub fn unpacked(text_start: u64, functions: &[(String, u64)]) -> Option<String> {
    HOT_FUNCTIONS.iter().find_map(|fragment| {
        let found = functions.iter().find(|(name, _)| name.contains(fragment));
        match found {
            None => Some(format!("no function named like `{fragment}`")),
            Some((name, address)) => {
                let offset = address.wrapping_sub(text_start);
                (offset >= PACKED_BYTES)
                    .then(|| format!("{name} is {offset:#x} bytes into the text, past the first {PACKED_BYTES:#x}"))
            }
        }
    })
}

/// Checks the hypervisor image at `path` (see the module's documentation).
pub fn check(path: &Path) -> Result<()> {
    let bytes = std::fs::read(path).map_err(|error| Error::io("cannot read", path, error))?;
    let unreadable = |why: String| Error::failed(format!("{}: cannot read its symbols: {why}", path.display()));
    let file = ElfBytes::<LittleEndian>::minimal_parse(&bytes).map_err(|error| unreadable(error.to_string()))?;
    let (symbols, names) = file
        .symbol_table()
        .map_err(|error| unreadable(error.to_string()))?
        .ok_or_else(|| unreadable("it has no symbol table".to_string()))?;
    let mut text_start = None;
    let mut functions = Vec::new();
    for symbol in symbols.iter() {
        let name = names.get(symbol.st_name as usize).map_err(|error| unreadable(error.to_string()))?;
        if name == "__text_start" {
            text_start = Some(symbol.st_value);
        } else if symbol.st_symtype() == elf::abi::STT_FUNC || symbol.st_symtype() == elf::abi::STT_NOTYPE {
            functions.push((name.to_string(), symbol.st_value));
        }
    }
    let text_start = text_start.ok_or_else(|| unreadable("no __text_start symbol".to_string()))?;
    match unpacked(text_start, &functions) {
        None => Ok(()),
        Some(why) => Err(Error::failed(format!(
            "{}: the hot paths are no longer packed at the start of the text: {why}; \
             hypervisor/hypervisor.ld places them by mangled name, so update its patterns \
             (and xtask/src/hot_paths.rs) to the names `nm` shows",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(offset_of_translate: u64) -> Vec<(String, u64)> {
        HOT_FUNCTIONS
            .iter()
            .enumerate()
            .map(|(index, fragment)| {
                let offset = if fragment.contains("translate") { offset_of_translate } else { index as u64 * 0x100 };
                (format!("_ZN10hypervisor{fragment}17h0123E"), 0x1000 + offset)
            })
            .collect()
    }

    #[test]
    fn packed_paths_pass() {
        assert_eq!(unpacked(0x1000, &image(PACKED_BYTES - 16)), None);
    }

    #[test]
    fn a_function_past_the_packed_pages_is_named() {
        let why = unpacked(0x1000, &image(PACKED_BYTES)).expect("translate is past the range");
        assert!(why.contains("12AddressSpace9translate") && why.contains("0x6000"), "{why}");
    }

    #[test]
    fn a_function_that_is_gone_is_named() {
        let mut functions = image(0);
        functions.retain(|(name, _)| !name.contains("memcpy"));
        assert_eq!(unpacked(0x1000, &functions).as_deref(), Some("no function named like `memcpy`"));
    }
}
