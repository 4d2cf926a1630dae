//! A new program's initial stack, laid out as Linux's x86-64 `execve` does, because libc's
//! start code reads it: at the stack pointer `argc`, then the `argv` pointers and a null,
//! the `envp` pointers and a null, then the auxiliary vector (tag, value pairs ending in
//! `AT_NULL`); above them, 16-byte aligned, the random bytes `AT_RANDOM` points at, the
//! platform name, and at the top the strings themselves, the program's path last.

use alloc::vec::Vec;
use linux_raw_sys::auxvec as tag;

use crate::linux::Errno;

/// The longest single argument or environment string, NUL included (Linux's
/// `MAX_ARG_STRLEN`, 32 pages).
pub const MAX_STRING: usize = 32 * 4096;

/// What the auxiliary vector tells the program about itself and its process.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct AuxValues {
    /// `AT_PHDR`: where its program headers are in memory.
    pub program_headers: u64,
    /// `AT_PHENT`: size of one program header.
    pub program_header_size: u64,
    /// `AT_PHNUM`: number of program headers.
    pub program_header_count: u64,
    /// `AT_ENTRY`: its entry point.
    pub entry: u64,
    /// `AT_UID`, `AT_EUID`.
    pub uid: u64,
    /// `AT_GID`, `AT_EGID`.
    pub gid: u64,
    /// `AT_HWCAP`: CPUID leaf 1's EDX, as Linux reports it.
    pub hardware_capabilities: u64,
    /// `AT_CLKTCK`: the tick rate `times` counts in.
    pub clock_ticks: u64,
    /// `AT_RANDOM`'s 16 bytes (libc seeds its stack protector and pointer guard from them).
    pub random: [u8; 16],
    /// `AT_SYSINFO_EHDR`: the vDSO's ELF header, or 0 for none (the pair is left out).
    pub vdso: u64,
}

/// The built stack: copy `bytes` to `stack_pointer` (they end at the top given).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitialStack {
    /// The initial `rsp`, 16-byte aligned, pointing at `argc`.
    pub stack_pointer: u64,
    /// The contents from `stack_pointer` to the top.
    pub bytes: Vec<u8>,
}

const PLATFORM: &[u8] = b"x86_64\0";

/// Lays out the stack that ends at `top` (exclusive, 16-byte aligned) for a program started
/// with `arguments` and `environment` (each string without its NUL), whose path is `path`.
///
/// E2BIG if a string is longer than [`MAX_STRING`] or everything together exceeds `limit`
/// bytes (Linux allows a quarter of the stack limit); EINVAL if a string holds a NUL or
/// `top` is not aligned.
pub fn build(
    top: u64,
    path: &[u8],
    arguments: &[&[u8]],
    environment: &[&[u8]],
    aux: &AuxValues,
    limit: usize,
) -> Result<InitialStack, Errno> {
    if !top.is_multiple_of(16) {
        return Err(Errno::EINVAL);
    }
    let strings = arguments.iter().chain(environment).chain(core::iter::once(&path));
    let mut strings_size = 0usize;
    for string in strings.clone() {
        if string.contains(&0) {
            return Err(Errno::EINVAL);
        }
        if string.len() + 1 > MAX_STRING {
            return Err(Errno::E2BIG);
        }
        strings_size += string.len() + 1;
    }
    let aux_pairs = if aux.vdso != 0 { 19 } else { 18 };
    let pointers_size = 8 * (1 + arguments.len() + 1 + environment.len() + 1 + 2 * aux_pairs);
    let blobs_size = 16 + PLATFORM.len();
    // Linux counts the strings and their pointers against the limit.
    let counted = strings_size + 8 * (arguments.len() + environment.len() + 2);
    if counted > limit {
        return Err(Errno::E2BIG);
    }
    // Top down: 8 zero bytes, the strings, the random bytes and platform name, then the
    // pointer block at a 16-byte aligned stack pointer.
    let strings_start = top - 8 - strings_size as u64;
    let random_address = (strings_start - blobs_size as u64) & !15;
    let platform_address = random_address + 16;
    let stack_pointer = (random_address - pointers_size as u64) & !15;
    let length = usize::try_from(top - stack_pointer).map_err(|_| Errno::E2BIG)?;

    let mut bytes = alloc::vec![0u8; length];
    let offset = |address: u64| (address - stack_pointer) as usize;
    let mut string_addresses = Vec::with_capacity(arguments.len() + environment.len() + 1);
    let mut cursor = strings_start;
    for string in strings {
        let at = offset(cursor);
        bytes[at..at + string.len()].copy_from_slice(string);
        string_addresses.push(cursor);
        cursor += string.len() as u64 + 1;
    }
    let at = offset(random_address);
    bytes[at..at + 16].copy_from_slice(&aux.random);
    let at = offset(platform_address);
    bytes[at..at + PLATFORM.len()].copy_from_slice(PLATFORM);

    let (argument_addresses, rest) = string_addresses.split_at(arguments.len());
    let (environment_addresses, path_address) = rest.split_at(environment.len());
    let mut words: Vec<u64> = Vec::with_capacity(pointers_size / 8);
    words.push(arguments.len() as u64);
    words.extend(argument_addresses);
    words.push(0);
    words.extend(environment_addresses);
    words.push(0);
    let mut pairs: Vec<(u32, u64)> = alloc::vec![
        (tag::AT_PHDR, aux.program_headers),
        (tag::AT_PHENT, aux.program_header_size),
        (tag::AT_PHNUM, aux.program_header_count),
        (tag::AT_PAGESZ, 4096),
        (tag::AT_BASE, 0),
        (tag::AT_FLAGS, 0),
        (tag::AT_ENTRY, aux.entry),
        (tag::AT_UID, aux.uid),
        (tag::AT_EUID, aux.uid),
        (tag::AT_GID, aux.gid),
        (tag::AT_EGID, aux.gid),
        (tag::AT_SECURE, 0),
        (tag::AT_HWCAP, aux.hardware_capabilities),
        (tag::AT_CLKTCK, aux.clock_ticks),
        (tag::AT_RANDOM, random_address),
        (tag::AT_PLATFORM, platform_address),
        (tag::AT_EXECFN, path_address[0]),
    ];
    if aux.vdso != 0 {
        pairs.push((tag::AT_SYSINFO_EHDR, aux.vdso));
    }
    pairs.push((tag::AT_NULL, 0));
    debug_assert_eq!(pairs.len(), aux_pairs);
    for (key, value) in pairs {
        words.extend([u64::from(key), value]);
    }
    for (index, word) in words.iter().enumerate() {
        bytes[index * 8..index * 8 + 8].copy_from_slice(&word.to_le_bytes());
    }
    Ok(InitialStack { stack_pointer, bytes })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOP: u64 = 0x7fff_ffff_f000;

    fn word(stack: &InitialStack, address: u64) -> u64 {
        let at = (address - stack.stack_pointer) as usize;
        u64::from_le_bytes(stack.bytes[at..at + 8].try_into().unwrap())
    }

    fn string(stack: &InitialStack, address: u64) -> &[u8] {
        let at = (address - stack.stack_pointer) as usize;
        let end = stack.bytes[at..].iter().position(|&byte| byte == 0).unwrap();
        &stack.bytes[at..at + end]
    }

    fn aux() -> AuxValues {
        AuxValues {
            program_headers: 0x400040,
            program_header_size: 56,
            program_header_count: 9,
            entry: 0x401000,
            uid: 0,
            gid: 0,
            hardware_capabilities: 0x178b_fbff,
            clock_ticks: 100,
            random: *b"0123456789abcdef",
            vdso: 0x7fff_ff10_1000,
        }
    }

    /// The arguments, the environment and the auxiliary pairs, as a program sees them.
    type Seen = (Vec<Vec<u8>>, Vec<Vec<u8>>, Vec<(u64, u64)>);

    /// Walks the stack as libc's start code does.
    fn read_back(stack: &InitialStack) -> Seen {
        let mut at = stack.stack_pointer;
        let argc = word(stack, at);
        at += 8;
        let mut arguments = Vec::new();
        for _ in 0..argc {
            arguments.push(string(stack, word(stack, at)).to_vec());
            at += 8;
        }
        assert_eq!(word(stack, at), 0, "argv ends in a null");
        at += 8;
        let mut environment = Vec::new();
        while word(stack, at) != 0 {
            environment.push(string(stack, word(stack, at)).to_vec());
            at += 8;
        }
        at += 8;
        let mut pairs = Vec::new();
        loop {
            let pair = (word(stack, at), word(stack, at + 8));
            pairs.push(pair);
            at += 16;
            if pair.0 == u64::from(tag::AT_NULL) {
                break;
            }
        }
        (arguments, environment, pairs)
    }

    #[test]
    fn the_stack_reads_back_as_libc_reads_it() {
        let stack =
            build(TOP, b"/bin/busybox", &[b"sh", b"-c", b"echo hi"], &[b"PATH=/bin", b"HOME=/"], &aux(), 1 << 21)
                .unwrap();
        assert_eq!(stack.stack_pointer % 16, 0, "rsp is 16-byte aligned at entry");
        assert_eq!(stack.stack_pointer + stack.bytes.len() as u64, TOP);
        let (arguments, environment, pairs) = read_back(&stack);
        assert_eq!(arguments, [&b"sh"[..], b"-c", b"echo hi"]);
        assert_eq!(environment, [&b"PATH=/bin"[..], b"HOME=/"]);
        let value = |key: u32| pairs.iter().find(|(k, _)| *k == u64::from(key)).map(|(_, v)| *v).unwrap();
        assert_eq!(value(tag::AT_PHDR), 0x400040);
        assert_eq!(value(tag::AT_PHNUM), 9);
        assert_eq!(value(tag::AT_ENTRY), 0x401000);
        assert_eq!(value(tag::AT_PAGESZ), 4096);
        assert_eq!(value(tag::AT_SYSINFO_EHDR), 0x7fff_ff10_1000);
        assert_eq!(string(&stack, value(tag::AT_EXECFN)), b"/bin/busybox");
        assert_eq!(string(&stack, value(tag::AT_PLATFORM)), b"x86_64");
        let random = value(tag::AT_RANDOM);
        let at = (random - stack.stack_pointer) as usize;
        assert_eq!(&stack.bytes[at..at + 16], b"0123456789abcdef");
        assert_eq!(pairs.last(), Some(&(u64::from(tag::AT_NULL), 0)));
    }

    #[test]
    fn no_arguments_and_no_environment_are_fine() {
        let stack = build(TOP, b"/init", &[], &[], &aux(), 4096).unwrap();
        let (arguments, environment, _) = read_back(&stack);
        assert!(arguments.is_empty() && environment.is_empty());
    }

    #[test]
    fn without_a_vdso_there_is_no_sysinfo_pair() {
        let stack = build(TOP, b"/init", &[], &[], &AuxValues { vdso: 0, ..aux() }, 4096).unwrap();
        let (_, _, pairs) = read_back(&stack);
        assert!(pairs.iter().all(|&(key, _)| key != u64::from(tag::AT_SYSINFO_EHDR)));
        assert_eq!(pairs.len(), 18);
    }

    #[test]
    fn too_much_is_e2big_and_bad_strings_are_refused() {
        let long = alloc::vec![b'x'; MAX_STRING];
        assert_eq!(build(TOP, b"/p", &[&long], &[], &aux(), usize::MAX), Err(Errno::E2BIG));
        let many: Vec<&[u8]> = (0..1000).map(|_| &b"0123456789"[..]).collect();
        assert_eq!(build(TOP, b"/p", &many, &[], &aux(), 4096), Err(Errno::E2BIG));
        assert!(build(TOP, b"/p", &many, &[], &aux(), 1 << 20).is_ok());
        assert_eq!(build(TOP, b"/p", &[b"a\0b"], &[], &aux(), 4096), Err(Errno::EINVAL));
        assert_eq!(build(TOP - 8, b"/p", &[], &[], &aux(), 4096), Err(Errno::EINVAL));
    }
}
