//! Raw system calls, past libc's wrappers: the tests hand the kernel pointers that are
//! meant to be bad, and a wrapper could touch them first (musl reads `clock_gettime`'s
//! result through the vDSO, `stat` converts its buffer) or refuse the call (musl's `brk`).

/// Addresses no user program can use: the first page (never mapped), the start of the
/// kernel half of the address space, and the first non-canonical address.
pub const BAD_ADDRESSES: [(&str, usize); 3] =
    [("address 1", 1), ("kernel address", 0xffff_8000_0000_0000), ("non-canonical address", 0x0000_8000_0000_0000)];

/// System call `number` with `arguments` (unused ones zero): the return value, or the
/// errno as Linux returns it (a value in -4095..=-1).
///
/// # Safety
///
/// The call may write where its pointer arguments point: each must be unmapped (the
/// point of these tests) or valid for what the call does with it.
pub unsafe fn raw(number: i64, arguments: [usize; 6]) -> Result<i64, i32> {
    let [a, b, c, d, e, f] = arguments;
    // SAFETY: the caller vouches for the pointers; errno is read right after the call.
    let value = unsafe { libc::syscall(number, a, b, c, d, e, f) };
    if value == -1 {
        Err(crate::process::errno())
    } else {
        Ok(value)
    }
}

/// Two pages mapped read-write and a third, after them, unmapped: `end()` is the first
/// byte past the mapping, for pointers that run off its end.
pub struct MappingEnd {
    base: usize,
}

impl MappingEnd {
    /// Maps the two pages and makes sure the page after them is unmapped.
    pub fn new() -> Result<MappingEnd, String> {
        // SAFETY: a fresh anonymous mapping the kernel places; nothing else refers to it.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                3 * 4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(format!("mmap failed: {}", crate::process::errno_name(crate::process::errno())));
        }
        let base = base as usize;
        // SAFETY: the third page of the mapping just made, which nothing uses.
        if unsafe { libc::munmap((base + 2 * 4096) as *mut libc::c_void, 4096) } == -1 {
            return Err(format!("munmap failed: {}", crate::process::errno_name(crate::process::errno())));
        }
        Ok(MappingEnd { base })
    }

    /// The first byte past the mapping.
    pub fn end(&self) -> usize {
        self.base + 2 * 4096
    }

    /// Writes `bytes` so that they end exactly at [`MappingEnd::end`]; returns where they
    /// start.
    pub fn place_at_end(&mut self, bytes: &[u8]) -> usize {
        let start = self.end() - bytes.len();
        // SAFETY: `start..end()` lies inside the two mapped pages, which this value owns.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), start as *mut u8, bytes.len()) };
        start
    }
}

impl Drop for MappingEnd {
    fn drop(&mut self) {
        // SAFETY: the two pages this value mapped; no reference into them outlives it.
        unsafe { libc::munmap(self.base as *mut libc::c_void, 2 * 4096) };
    }
}
