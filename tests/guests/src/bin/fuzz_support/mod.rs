//! The fuzzer's machinery, included by `fuzz.rs` with `#[path]`: the [`Fuzzer`] that issues
//! every call and judges its result, the calls it generates (`generate`), related-call
//! sequences (`sequences`), multicall and `mmu_update` arrays (`batches`) and the errors
//! SPEC.md documents for each hypercall (`documented`).
//!
//! Safety rule, relied on by every `unsafe` hypercall here: a pointer argument names either
//! one of the fuzzer's own [`Buffers`] with a count that stays inside it, or an address
//! that is surely not readable by the guest (a guard page, the hypervisor range, a
//! non-canonical or wrapping address). Calls that could take the fuzzer's own footing
//! away (a valid shutdown, switching its kernel root, removing its trap handlers, `iret`,
//! a sleep nothing wakes) are shaped or left out where they are generated.

pub mod batches;
pub mod documented;
pub mod generate;
pub mod sequences;

extern crate alloc;

use alloc::vec::Vec;
use conformance_guests::{raw_result, Landmarks, XorShift};
use core::cell::UnsafeCell;
use core::fmt;
use guest_rt::abi::hypercall::Hypercall;
use guest_rt::abi::memory::{memory_cmd, space_cmd, MapEntry, LARGE_PAGE_PAGES, NO_SPACE, SPACES_MAX};
use guest_rt::abi::multicall::{MulticallEntry, MULTICALL_MAX};
use guest_rt::abi::{Errno, Gfn, GuestVirtualAddress};
use guest_rt::println;
use guest_rt::test::Reporter;

/// Calls between two progress lines (`fuzz: call #N`), so a run that dies is replayed from
/// the last one with `echo_from=` (README, "Fuzzing").
pub const PROGRESS_EVERY: u64 = 1 << 16;
/// Failures printed in full; later ones are only counted.
const FAILURES_SHOWN: u32 = 8;
/// The virtual-address window of the initial space the fuzzer maps and unmaps in; nothing
/// else of the initial space is ever named by a generated mapping.
pub const WINDOW: u64 = 0x0000_6000_0000_0000;
/// The window's size: 4 KiB pages and one 2 MiB slot.
pub const WINDOW_PAGES: u64 = 64;
/// Where the window's 2 MiB slot starts (2 MiB aligned, after the 4 KiB pages).
pub const WINDOW_LARGE: u64 = WINDOW + 0x20_0000;
/// gfns per output or input slot of `memory_op`.
pub const GFN_SLOT: usize = 16;
/// Ports a `POLL` array holds (`sched_op(POLL)`'s most).
pub const POLL_PORTS: usize = 128;
/// Bytes of the console `READ` buffer.
pub const READ_BYTES: usize = 256;
/// A multicall entry's result before the hypervisor writes it: no hypercall returns it.
pub const UNWRITTEN: i64 = i64::MIN;

/// One hypercall: its number and the six argument registers.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// Hypercall number.
    pub number: u64,
    /// RDI, RSI, RDX, R10, R8, R9.
    pub args: [u64; 6],
}

impl Call {
    /// `number` with the first arguments given and the rest 0.
    pub fn new(number: Hypercall, first: &[u64]) -> Self {
        let mut args = [0; 6];
        args[..first.len()].copy_from_slice(first);
        Self { number: number.0, args }
    }

    /// The hypercall it names.
    pub fn hypercall(&self) -> Hypercall {
        Hypercall(self.number)
    }
}

/// `name(a, b, ...)` with the arguments the hypercall reads, in hex; an unknown number
/// shows all six.
impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = self.hypercall().arguments();
        let shown = if self.hypercall().name().is_some() { names.len() } else { 6 };
        match self.hypercall().name() {
            Some(name) => write!(f, "{name}(")?,
            None => write!(f, "hypercall {:#x}(", self.number)?,
        }
        for (index, value) in self.args[..shown].iter().enumerate() {
            let separator = if index == 0 { "" } else { ", " };
            write!(f, "{separator}{value:#x}")?;
        }
        f.write_str(")")
    }
}

/// A result as a guest sees it: the value or `-ERRNO`.
pub struct Shown(pub Result<u64, Errno>);

impl fmt::Display for Shown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Ok(value) => write!(f, "{value:#x}"),
            Err(errno) => write!(f, "-{errno}"),
        }
    }
}

/// Every buffer a generated pointer may name. Only raw pointers into it are formed while
/// a hypercall runs (the hypervisor writes some of it), never references.
#[repr(C, align(4096))]
pub struct Buffers {
    /// `mmu_update` entries: `BATCH_MAX` of them, so no count reads past the array.
    pub entries: [MapEntry; 1024],
    /// Multicall entries: `MULTICALL_MAX` of them.
    pub calls: [MulticallEntry; MULTICALL_MAX as usize],
    /// `memory_op` gfn arrays, one slot per multicall entry and one (the last) for direct calls.
    pub gfns: [[u64; GFN_SLOT]; MULTICALL_MAX as usize + 1],
    /// `sched_op(POLL)` port arrays.
    pub ports: [u32; POLL_PORTS],
    /// `mmu_update`'s `done` output.
    pub done: u64,
    /// Console `READ` bytes.
    pub read: [u8; READ_BYTES],
}

struct Shared(UnsafeCell<Buffers>);

// SAFETY: a guest has one vCPU and the fuzzer no upcalls: one thread ever touches it.
unsafe impl Sync for Shared {}

static BUFFERS: Shared = Shared(UnsafeCell::new(Buffers {
    entries: [MapEntry { virtual_address: GuestVirtualAddress(0), gfn: Gfn(0), op: 0, flags: 0 }; 1024],
    calls: [MulticallEntry { op: 0, args: [0; 6], result: 0 }; MULTICALL_MAX as usize],
    gfns: [[0; GFN_SLOT]; MULTICALL_MAX as usize + 1],
    ports: [0; POLL_PORTS],
    done: 0,
    read: [0; READ_BYTES],
}));

/// The fuzzer's buffers (see [`Buffers`] for how they may be used).
pub fn buffers() -> *mut Buffers {
    BUFFERS.0.get()
}

/// The slot of `memory_op` gfns for multicall entry `entry`, or for direct calls (`None`).
pub fn gfn_slot(entry: Option<usize>) -> *mut u64 {
    let index = entry.unwrap_or(MULTICALL_MAX as usize);
    // SAFETY: in bounds of the static; a raw pointer, no reference is formed.
    unsafe { core::ptr::addr_of_mut!((*buffers()).gfns[index]) as *mut u64 }
}

/// How the calls fared.
pub struct Counts {
    /// Calls issued (direct, in sequences, and inside batches).
    pub calls: u64,
    /// Successful results.
    pub ok: u64,
    /// Documented errors, by errno number (index = errno, up to 63).
    pub errors: [u64; 64],
    /// Related-call sequences run.
    pub sequences: u64,
    /// Multicall arrays issued.
    pub multicalls: u64,
    /// `mmu_update` arrays issued.
    pub batches: u64,
    /// Console writes that printed.
    pub printing_writes: u64,
    /// Generated calls the fuzzer does not make (`iret`, an unbounded `BLOCK`).
    pub skipped: u64,
}

impl Default for Counts {
    fn default() -> Self {
        Self {
            calls: 0,
            ok: 0,
            errors: [0; 64],
            sequences: 0,
            multicalls: 0,
            batches: 0,
            printing_writes: 0,
            skipped: 0,
        }
    }
}

/// The fuzzer: its random stream, what it knows about its own domain, and the verdict.
pub struct Fuzzer {
    /// The random stream (a function of the seed alone: nothing drawn depends on results
    /// another domain could change).
    pub random: XorShift,
    /// This fuzzer's seed.
    pub seed: u64,
    /// This domain's id.
    pub domain: u64,
    /// Addresses of its own layout (guard pages are the unreadable pointers it uses).
    pub landmarks: Landmarks,
    /// Calls issued so far; the number of the last call.
    pub index: u64,
    /// Print every call from this number on (`echo_from=`).
    pub echo_from: Option<u64>,
    /// The verdict.
    pub reporter: Reporter,
    failures: u32,
    /// Tallies.
    pub counts: Counts,
    /// Address-space handles live now (0, the initial space, always is).
    pub spaces: [bool; SPACES_MAX as usize],
    /// The user root (`SWITCH`'s second argument), if any.
    pub user_root: Option<u64>,
    /// Extents the fuzzer populated itself (first gfn, order): the only gfns it releases.
    pub extents: Vec<(u64, u64)>,
    /// The fuzzer's end of its channel to the witness: never closed nor sent on until the end.
    pub link: Option<u64>,
    /// The other fuzzers' domain ids.
    pub peers: Vec<u64>,
    /// The witness's domain id, if one runs.
    pub witness: Option<u64>,
    /// `MAXIMUM_GFN`.
    pub gfn_limit: u64,
    /// Pages populated at creation (gfns below this are the fuzzer's own memory).
    pub initial_pages: u64,
}

impl Fuzzer {
    /// A fuzzer for `domain` with `seed`.
    pub fn new(seed: u64, domain: u64, landmarks: Landmarks, gfn_limit: u64, initial_pages: u64) -> Self {
        let mut spaces = [false; SPACES_MAX as usize];
        spaces[0] = true;
        Self {
            random: XorShift::new(seed),
            seed,
            domain,
            landmarks,
            index: 0,
            echo_from: None,
            reporter: Reporter::new(),
            failures: 0,
            counts: Counts::default(),
            spaces,
            user_root: None,
            extents: Vec::new(),
            link: None,
            peers: Vec::new(),
            witness: None,
            gfn_limit,
            initial_pages,
        }
    }

    /// The first 2 MiB block above the initial gfns: a block from here on holds only
    /// gfns the fuzzer populated, so releasing it whole releases nothing of its own.
    pub fn gfn_floor(&self) -> u64 {
        self.initial_pages.next_multiple_of(LARGE_PAGE_PAGES)
    }

    /// Issues `call` (shaped by the safety rule of this module), checks that its result is
    /// one SPEC.md documents for it, and updates what the fuzzer knows.
    pub fn issue(&mut self, call: Call) -> Result<u64, Errno> {
        self.count_call(&call);
        // SAFETY: every call reaching here was generated under this module's safety rule:
        // its pointers name the fuzzer's buffers within bounds, or unreadable addresses.
        let result = unsafe { raw_result(call.number, call.args) };
        self.judge(&call, result);
        self.observe(&call, result);
        result
    }

    /// Counts a call about to be issued: progress lines and the echo.
    pub fn count_call(&mut self, call: &Call) {
        self.index += 1;
        self.counts.calls += 1;
        if self.index.is_multiple_of(PROGRESS_EVERY) {
            println!("fuzz: call #{} (seed {})", self.index, self.seed);
        }
        if self.echo_from.is_some_and(|from| self.index >= from) {
            println!("fuzz: call #{} {}", self.index, call);
        }
    }

    /// Checks a result against the documented ones and tallies it.
    pub fn judge(&mut self, call: &Call, result: Result<u64, Errno>) {
        match result {
            Ok(_) => self.counts.ok += 1,
            Err(errno) => {
                self.counts.errors[(errno.0 as usize).min(63)] += 1;
                if !documented::errors(call).contains(&errno) {
                    self.fail(call, result, "an error SPEC.md does not document for this call");
                }
            }
        }
        if call.hypercall().name().is_none() && result != Err(Errno::ENOSYS) {
            self.fail(call, result, "an undefined hypercall must return -ENOSYS");
        }
    }

    /// Records that `call` broke a rule: the seed, the call's number and the call.
    pub fn fail(&mut self, call: &Call, result: Result<u64, Errno>, why: impl fmt::Display) {
        self.failures += 1;
        if self.failures <= FAILURES_SHOWN {
            self.reporter.fail(format_args!(
                "seed {} call #{}: {} returned {}: {}",
                self.seed,
                self.index,
                call,
                Shown(result),
                why
            ));
        }
    }

    /// Failures found.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Updates what the fuzzer knows of its spaces and extents from a call's result.
    pub fn observe(&mut self, call: &Call, result: Result<u64, Errno>) {
        let Ok(value) = result else { return };
        let [command, a, b, c, ..] = call.args;
        if call.hypercall() == Hypercall::ADDRESS_SPACE_OP {
            match command {
                space_cmd::CREATE if value < SPACES_MAX => self.spaces[value as usize] = true,
                space_cmd::DESTROY if a < SPACES_MAX => self.spaces[a as usize] = false,
                space_cmd::SWITCH => self.user_root = (b != NO_SPACE).then_some(b),
                _ => {}
            }
        } else if call.hypercall() == Hypercall::MEMORY_OP && (value as usize) <= GFN_SLOT {
            let gfns = a as *const u64;
            if !self.is_gfn_slot(gfns) {
                return;
            }
            // SAFETY: `gfns` is one of the fuzzer's gfn slots (checked) and `value` ≤ its length.
            let done = unsafe { core::slice::from_raw_parts(gfns, value as usize) };
            match command {
                memory_cmd::INCREASE_RESERVATION => self.extents.extend(done.iter().map(|&gfn| (gfn, c))),
                memory_cmd::DECREASE_RESERVATION => done.iter().for_each(|&gfn| self.released(gfn, c)),
                _ => {}
            }
        }
    }

    /// True if `pointer` is the start of one of the gfn slots.
    fn is_gfn_slot(&self, pointer: *const u64) -> bool {
        (0..=MULTICALL_MAX as usize).any(|index| core::ptr::eq(gfn_slot(Some(index)), pointer))
    }

    /// Forgets extent `gfn` of `order`, released; releasing one gfn of a 2 MiB extent
    /// leaves its other 511 gfns as 4 KiB extents (SPEC.md §12.2).
    fn released(&mut self, gfn: u64, order: u64) {
        if order == 9 {
            self.extents.retain(|&(other, _)| other < gfn || other >= gfn + LARGE_PAGE_PAGES);
            return;
        }
        if let Some(at) = self.extents.iter().position(|&extent| extent == (gfn, order)) {
            self.extents.swap_remove(at);
            return;
        }
        let block = gfn & !(LARGE_PAGE_PAGES - 1);
        if let Some(at) = self.extents.iter().position(|&extent| extent == (block, 9)) {
            self.extents.swap_remove(at);
            self.extents.extend((block..block + LARGE_PAGE_PAGES).filter(|&other| other != gfn).map(|g| (g, 0)));
        }
    }

    /// Live handles other than the initial space.
    pub fn scratch_spaces(&self) -> impl Iterator<Item = u64> + '_ {
        (1..SPACES_MAX).filter(|&handle| self.spaces[handle as usize])
    }

    /// An address no call may read or write: guard pages, the hypervisor range,
    /// non-canonical and wrapping addresses.
    pub fn unreadable(&mut self) -> u64 {
        let offset = self.random.below(0x1000);
        let choices = [
            self.landmarks.guard_above_stack + offset,
            self.landmarks.guard_below_stack + offset,
            self.landmarks.guard_below_start_info + offset,
            guest_rt::abi::layout::HYPERVISOR_START + self.random.below(1 << 39),
            0x0000_8000_0000_0000 + self.random.below(1 << 46),
            u64::MAX - self.random.below(64),
        ];
        self.random.pick(&choices)
    }
}
