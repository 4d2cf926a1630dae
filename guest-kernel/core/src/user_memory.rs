//! Reading and writing a process's memory from a system call: the one door through which
//! user pointers are used. The platform gives raw copies that fail with EFAULT on any
//! byte the process may not access; this module builds what system calls need on top:
//! typed values, NUL-terminated strings (paths) and pointer arrays (`argv`, `envp`), with
//! Linux's limits and errors. A pointer is never dereferenced here; a bad one is an
//! errno, never a fault in the kernel.

use alloc::vec::Vec;
use zerocopy::{FromBytes, Immutable, IntoBytes};

use crate::exec::stack::MAX_STRING;
use crate::fs::path::PATH_MAX;
use crate::linux::Errno;

/// The process memory a system call may touch.
pub trait UserMemory {
    /// Copies `into.len()` bytes from `address`; EFAULT if any is not readable by the
    /// process (nothing is promised about `into` then).
    fn read(&self, address: u64, into: &mut [u8]) -> Result<(), Errno>;

    /// Copies `from` to `address`; EFAULT if any byte is not writable by the process
    /// (the bytes before it may have been written, as on Linux).
    fn write(&mut self, address: u64, from: &[u8]) -> Result<(), Errno>;
}

/// Size of a page: strings are read a page at a time, so a string that ends just before
/// an unmapped page is read without touching that page.
const PAGE_SIZE: u64 = 4096;

/// Reads a `T` at `address`.
pub fn read_value<T: FromBytes + IntoBytes>(memory: &dyn UserMemory, address: u64) -> Result<T, Errno> {
    let mut value = T::new_zeroed();
    memory.read(address, value.as_mut_bytes())?;
    Ok(value)
}

/// Writes `value` at `address`.
pub fn write_value<T: IntoBytes + Immutable>(
    memory: &mut dyn UserMemory,
    address: u64,
    value: &T,
) -> Result<(), Errno> {
    memory.write(address, value.as_bytes())
}

/// Reads the NUL-terminated string at `address` (without its NUL). `limit` counts the
/// NUL; a longer string is `too_long`.
pub fn read_string(memory: &dyn UserMemory, address: u64, limit: usize, too_long: Errno) -> Result<Vec<u8>, Errno> {
    let mut string = Vec::new();
    let mut at = address;
    loop {
        let to_page_end = PAGE_SIZE - at % PAGE_SIZE;
        let wanted = (to_page_end as usize).min(limit + 1 - string.len().min(limit));
        let mut chunk = [0u8; PAGE_SIZE as usize];
        let chunk = &mut chunk[..wanted.max(1)];
        memory.read(at, chunk)?;
        if let Some(end) = chunk.iter().position(|&byte| byte == 0) {
            string.extend_from_slice(&chunk[..end]);
            return if string.len() < limit { Ok(string) } else { Err(too_long) };
        }
        string.extend_from_slice(chunk);
        if string.len() >= limit {
            return Err(too_long);
        }
        at = at.checked_add(chunk.len() as u64).ok_or(Errno::EFAULT)?;
    }
}

/// Reads a path argument: at most `PATH_MAX` bytes with its NUL (ENAMETOOLONG), not
/// empty (ENOENT, as Linux answers an empty path without `AT_EMPTY_PATH`).
pub fn read_path(memory: &dyn UserMemory, address: u64) -> Result<Vec<u8>, Errno> {
    let path = read_string(memory, address, PATH_MAX, Errno::ENAMETOOLONG)?;
    if path.is_empty() {
        return Err(Errno::ENOENT);
    }
    Ok(path)
}

/// Reads a NULL-terminated array of string pointers (`argv`, `envp`); a null `address`
/// is an empty array (Linux accepts it). E2BIG if a string is longer than
/// [`MAX_STRING`], or the strings and their pointers together exceed `limit` bytes.
pub fn read_string_array(memory: &dyn UserMemory, address: u64, limit: usize) -> Result<Vec<Vec<u8>>, Errno> {
    let mut strings = Vec::new();
    if address == 0 {
        return Ok(strings);
    }
    let mut used = 0usize;
    for index in 0u64.. {
        let slot = index.checked_mul(8).and_then(|offset| address.checked_add(offset)).ok_or(Errno::EFAULT)?;
        let pointer: u64 = read_value(memory, slot)?;
        if pointer == 0 {
            return Ok(strings);
        }
        let string = read_string(memory, pointer, MAX_STRING, Errno::E2BIG)?;
        used = used.saturating_add(string.len() + 1 + 8);
        if used > limit {
            return Err(Errno::E2BIG);
        }
        strings.push(string);
    }
    Err(Errno::E2BIG)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// User memory as one readable and writable range of whole pages (access is granted
    /// by the page, as the hardware does).
    pub(crate) struct Flat {
        pub base: u64,
        pub bytes: Vec<u8>,
    }

    impl Flat {
        fn range(&self, address: u64, length: usize) -> Result<core::ops::Range<usize>, Errno> {
            let start = address.checked_sub(self.base).ok_or(Errno::EFAULT)? as usize;
            let end = start.checked_add(length).ok_or(Errno::EFAULT)?;
            if end > self.bytes.len() {
                return Err(Errno::EFAULT);
            }
            Ok(start..end)
        }
    }

    impl UserMemory for Flat {
        fn read(&self, address: u64, into: &mut [u8]) -> Result<(), Errno> {
            let range = self.range(address, into.len())?;
            into.copy_from_slice(&self.bytes[range]);
            Ok(())
        }

        fn write(&mut self, address: u64, from: &[u8]) -> Result<(), Errno> {
            let range = self.range(address, from.len())?;
            self.bytes[range].copy_from_slice(from);
            Ok(())
        }
    }

    const BASE: u64 = 0x10_0000;

    fn memory_with(at: usize, data: &[u8], size: usize) -> Flat {
        let mut bytes = alloc::vec![0xaau8; size];
        bytes[at..at + data.len()].copy_from_slice(data);
        Flat { base: BASE, bytes }
    }

    #[test]
    fn values_round_trip() {
        let mut memory = memory_with(0, &[], 64);
        write_value(&mut memory, BASE + 8, &0x1122_3344_5566_7788u64).unwrap();
        assert_eq!(read_value::<u64>(&memory, BASE + 8), Ok(0x1122_3344_5566_7788));
        assert_eq!(read_value::<u64>(&memory, BASE + 60), Err(Errno::EFAULT));
        assert_eq!(read_value::<u64>(&memory, 0), Err(Errno::EFAULT));
    }

    #[test]
    fn strings_end_at_their_nul_and_may_end_before_unreadable_memory() {
        // The string ends 2 bytes before the end of memory (and of its page).
        let memory = memory_with(4096 - 6, b"/bin\0", 4096);
        assert_eq!(read_path(&memory, BASE + 4096 - 6).unwrap(), b"/bin");
        // A string that runs into unreadable memory without a NUL is EFAULT.
        let memory = memory_with(4096 - 4, b"abcd", 4096);
        assert_eq!(read_path(&memory, BASE + 4096 - 4), Err(Errno::EFAULT));
        assert_eq!(read_path(&memory, 0x10), Err(Errno::EFAULT));
    }

    #[test]
    fn paths_are_bounded_and_not_empty() {
        let mut long = alloc::vec![b'a'; PATH_MAX];
        long.push(0);
        let memory = memory_with(0, &long, 3 * PATH_MAX);
        assert_eq!(read_path(&memory, BASE), Err(Errno::ENAMETOOLONG));
        let memory = memory_with(1, &long[1..], 3 * PATH_MAX);
        assert_eq!(read_path(&memory, BASE + 1).map(|path| path.len()), Ok(PATH_MAX - 1), "PATH_MAX counts the NUL");
        let memory = memory_with(0, b"\0", 4096);
        assert_eq!(read_path(&memory, BASE), Err(Errno::ENOENT));
    }

    #[test]
    fn string_arrays_are_read_until_null_within_the_limit() {
        let mut bytes = alloc::vec![0xffu8; 4096];
        let strings = [&b"sh\0"[..], b"-c\0", b"echo hi\0"];
        let mut at = 64;
        for (index, string) in strings.iter().enumerate() {
            bytes[index * 8..index * 8 + 8].copy_from_slice(&(BASE + at as u64).to_le_bytes());
            bytes[at..at + string.len()].copy_from_slice(string);
            at += string.len();
        }
        bytes[24..32].fill(0);
        let memory = Flat { base: BASE, bytes };
        let argv = read_string_array(&memory, BASE, 1 << 20).unwrap();
        assert_eq!(argv, [&b"sh"[..], b"-c", b"echo hi"]);
        assert_eq!(read_string_array(&memory, 0, 1 << 20).unwrap().len(), 0, "a null array is empty");
        assert_eq!(read_string_array(&memory, BASE, 20), Err(Errno::E2BIG));
        assert_eq!(read_string_array(&memory, BASE + 4092, 1 << 20), Err(Errno::EFAULT), "runs off memory");
    }
}
