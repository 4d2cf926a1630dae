//! Conformance: frames another domain dirtied are zeroed when they come back, even after
//! the allocator has gone all the way round machine memory (SPEC.md §12.1, §12.7). The
//! hypervisor's frame allocator is next-fit, so a new extent normally gets a frame nobody
//! has used since boot, and QEMU's RAM starts zeroed: a hypervisor that never zeroed would
//! pass every case that stays within one lap. This case goes round twice.
//!
//! * `dirty` (domain 1) — `INCREASE_RESERVATION`s all its headroom in rounds of
//!   [`ROUND`] pages, maps each round and fills every word of every page with its pattern
//!   (tag, domain id, gfn, offset); it gives the first half back with
//!   `DECREASE_RESERVATION` and holds the second half until it ends, so both ways a frame
//!   goes back (release and death) are covered.
//! * `check frames=<F>` (domain 2, started beside it) — waits until domain 1 has ended
//!   (an event-channel call naming it is `-ESRCH` from then on, SPEC.md §17.3), then runs rounds
//!   of: `INCREASE_RESERVATION` of [`ROUND`] pages, map them, read every word (all must be
//!   zero), mark each with its own pattern in one word, `DECREASE_RESERVATION` — until it has been given
//!   more than 2·F frames, F being at least the frames the hypervisor manages (the runner
//!   passes the machine's memory in frames). Next-fit hands out increasing frame numbers
//!   until it wraps, so one pass of the cursor gives out at most F frames: more than 2·F
//!   allocations after domain 1 ended mean the cursor wrapped at least twice, so it swept
//!   all of machine memory once with every frame of domain 1 free, and each of them was
//!   handed out again after it ended (to this domain, or as a page table on its behalf). The runner checks the count against the `frames
//!   managed` of the hypervisor's boot line; a non-zero word is classified by its tag
//!   (domain 1's pattern, this domain's own from an earlier round, or other).
#![cfg_attr(target_os = "none", no_std, no_main)]

extern crate alloc;

use alloc::vec;
use alloc::vec::Vec;

use conformance_guests::{argument, words};
use guest_rt::abi::layout::PAGE_SIZE;
use guest_rt::abi::memory::{map_flags, MapEntry, BATCH_MAX};
use guest_rt::abi::{Errno, StartInfo};
use guest_rt::events::Port;
use guest_rt::hypercall::HYPERVISOR;
use guest_rt::memory::{self, map_entry, Space};
use guest_rt::println;
use guest_rt::test::Reporter;

guest_rt::entry!(frame_lap);

/// Pages per round: one full `INCREASE_RESERVATION`, `mmu_update` and
/// `DECREASE_RESERVATION` each (few hypercalls: a KVM host on PVM pays ~1 ms per trap).
const ROUND: usize = BATCH_MAX as usize;

/// Rounds between two progress lines of the checker.
const PROGRESS_ROUNDS: u64 = 64;

/// Where a round's pages are mapped (4 MiB of otherwise unused lower half).
const WINDOW: u64 = 0x0000_4800_0000_0000;

/// The high 16 bits of every pattern word; bits 32–47 are the domain id, 0–31 the gfn
/// and the byte offset (`gfn << 12 | offset`).
const TAG: u64 = 0xd1f7 << 48;

/// Words per page.
const WORDS: usize = (PAGE_SIZE / 8) as usize;

/// The domain that dirties (the `dirty` role's id in the case).
const DIRTIER: u64 = 1;

fn frame_lap(start: &'static StartInfo) -> u32 {
    let mut reporter = Reporter::new();
    match words(start).next() {
        Some("dirty") => dirty(start, &mut reporter),
        Some("check") => match argument(start, "frames") {
            Some(frames) => check(start, frames, &mut reporter),
            None => reporter.error("check needs frames=<machine frames>"),
        },
        other => reporter.error(format_args!("unknown role {other:?}")),
    }
    reporter.finish()
}

fn pattern(domain: u64, gfn: u64, word: usize) -> u64 {
    TAG | (domain << 32) | (((gfn << 12) | (word as u64 * 8)) & 0xffff_ffff)
}

/// The page of `WINDOW` that round slot `index` maps.
fn page(index: usize) -> &'static mut [u64; WORDS] {
    let address = WINDOW + index as u64 * PAGE_SIZE;
    // SAFETY: the caller mapped this page writable for this domain alone, and the
    // reference is dropped before the page is given back.
    unsafe { &mut *(address as *mut [u64; WORDS]) }
}

fn fill(index: usize, domain: u64, gfn: u64) {
    for (word, slot) in page(index).iter_mut().enumerate() {
        *slot = pattern(domain, gfn, word);
    }
}

/// Populates `gfns.len()` pages and maps them at `WINDOW`; false (reported) on failure.
fn populate_and_map(reporter: &mut Reporter, gfns: &mut [u64], entries: &mut Vec<MapEntry>) -> bool {
    gfns.fill(u64::MAX);
    if !reporter.expect_eq(memory::increase_reservation(gfns, 0), Ok(gfns.len()), "INCREASE_RESERVATION of a round") {
        return false;
    }
    entries.clear();
    let flags = map_flags::WRITABLE | map_flags::NO_EXECUTE;
    entries
        .extend(gfns.iter().enumerate().map(|(index, &gfn)| map_entry(WINDOW + index as u64 * PAGE_SIZE, gfn, flags)));
    reporter.expect_eq(memory::mmu_update(Space::INITIAL, entries).result, Ok(()), "map a round")
}

fn headroom(reporter: &mut Reporter) -> Option<u64> {
    let current = reporter.expect_ok(memory::current_reservation(), "CURRENT_RESERVATION")?;
    let maximum = reporter.expect_ok(memory::maximum_reservation(), "MAXIMUM_RESERVATION")?;
    Some(maximum - current)
}

fn dirty(start: &StartInfo, reporter: &mut Reporter) {
    let Some(room) = headroom(reporter) else { return };
    let rounds = room as usize / ROUND;
    if !reporter
        .check(rounds >= 2 && rounds.is_multiple_of(2), format_args!("headroom {room}: an even number of rounds"))
    {
        return;
    }
    let domain = u64::from(start.domain_id);
    let mut entries = Vec::with_capacity(ROUND);
    let mut gfns = vec![0; ROUND];
    for round in 0..rounds {
        if !populate_and_map(reporter, &mut gfns, &mut entries) {
            return;
        }
        for (index, &gfn) in gfns.iter().enumerate() {
            fill(index, domain, gfn);
        }
        if round < rounds / 2 {
            // The release removes the mappings (SPEC.md §12.2).
            reporter.expect_eq(memory::decrease_reservation(&gfns, 0), Ok(ROUND), "give a dirty round back");
        } else {
            // Held until death; the window is reused by the next round.
            let unmap: Vec<MapEntry> =
                entries.iter().map(|entry| memory::unmap_entry(entry.virtual_address.0, 0)).collect();
            reporter.expect_eq(memory::mmu_update(Space::INITIAL, &unmap).result, Ok(()), "unmap a held round");
        }
    }
    let frames = rounds * ROUND;
    println!("frame_lap: dirtied {frames} frames, gave {} back, holds {} until it ends", frames / 2, frames / 2);
}

/// Yields until domain `DIRTIER` has ended; false (reported) if something else went wrong.
/// The probe is a `BIND_INTERDOMAIN` to its port 0, which has no effect: `-EINVAL` (port
/// 0) while it lives, `-ESRCH` once it has ended (the domain is checked first, SPEC.md §17.3).
fn wait_for_dirtier(reporter: &mut Reporter) -> bool {
    let mut probes = 0u32;
    loop {
        probes += 1;
        match Port::bind_interdomain(DIRTIER, 0) {
            Err(Errno::EINVAL) => {
                let _ = HYPERVISOR.yield_now();
            }
            Err(Errno::ESRCH) => {
                println!("frame_lap: domain {DIRTIER} has ended ({probes} probes)");
                return true;
            }
            other => {
                reporter.fail(format_args!("BIND_INTERDOMAIN to port 0 of domain {DIRTIER}: {other:?}"));
                return false;
            }
        }
    }
}

/// Non-zero frames a check found, by whose pattern their first non-zero word carries.
#[derive(Default)]
struct Dirt {
    dirtier: u64,
    own: u64,
    other: u64,
}

impl Dirt {
    /// Counts a page that is not all zero by the tag of its first non-zero word.
    fn count(&mut self, words: &[u64], domain: u64) {
        let first = words.iter().copied().find(|&word| word != 0).unwrap_or(0);
        match ((first >> 48) == (TAG >> 48)).then_some((first >> 32) & 0xffff) {
            Some(DIRTIER) => self.dirtier += 1,
            Some(id) if id == domain => self.own += 1,
            _ => self.other += 1,
        }
    }
}

fn check(start: &StartInfo, machine_frames: u64, reporter: &mut Reporter) {
    let Some(room) = headroom(reporter) else { return };
    if !reporter.check(room == ROUND as u64, format_args!("headroom {room}: one round of {ROUND} pages")) {
        return;
    }
    if !wait_for_dirtier(reporter) {
        return;
    }
    let domain = u64::from(start.domain_id);
    let wanted = 2 * machine_frames + 1;
    let rounds = wanted.div_ceil(ROUND as u64);
    let mut entries = Vec::with_capacity(ROUND);
    let mut gfns = vec![0; ROUND];
    let mut dirt = Dirt::default();
    let mut allocated = 0u64;
    for round in 1..=rounds {
        if !populate_and_map(reporter, &mut gfns, &mut entries) {
            return;
        }
        allocated += ROUND as u64;
        if round.is_multiple_of(PROGRESS_ROUNDS) {
            // Progress for a slow host (a KVM host on PVM pays a trap per page touched).
            println!("frame_lap: {allocated} frames so far");
        }
        for (index, &gfn) in gfns.iter().enumerate() {
            let words = page(index);
            // One OR per word, no branch: the common, all-zero page is read fastest.
            if words.iter().fold(0, |bits, &word| bits | word) != 0 {
                dirt.count(words, domain);
            }
            // One word marks the page as this domain's for the rounds after the next lap.
            words[0] = pattern(domain, gfn, 0);
        }
        if !reporter.expect_eq(memory::decrease_reservation(&gfns, 0), Ok(ROUND), "give a round back") {
            return;
        }
    }
    let Dirt { dirtier, own, other } = dirt;
    println!(
        "frame_lap: {allocated} frames in {rounds} rounds after domain {DIRTIER} ended: {} not zero \
         ({dirtier} with its pattern, {own} with this domain's, {other} other)",
        dirtier + own + other
    );
    reporter.expect_eq(dirtier + own + other, 0, "frames given to this domain that were not zero");
}
