//! Arrays: random `mmu_update` batches (entries safe for the initial space, or anything
//! for a scratch space) and random multicall arrays of generated calls, with the rules of
//! SPEC.md §12.4 and §13 checked on the whole array.

use super::generate::{self, calls_address, done_pointer, entries_address};
use super::{buffers, Call, Fuzzer, Shown, UNWRITTEN, WINDOW, WINDOW_LARGE, WINDOW_PAGES};
use guest_rt::abi::hypercall::{sched_cmd, Hypercall};
use guest_rt::abi::memory::{map_flags, map_op, MapEntry, BATCH_MAX, LARGE_PAGE_PAGES, SPACES_MAX};
use guest_rt::abi::multicall::{MulticallEntry, MULTICALL_MAX};
use guest_rt::abi::{Errno, Gfn, GuestVirtualAddress};

/// A virtual address for an entry: in the window of the initial space or one no mapping
/// may have (`wild`: anywhere, for spaces the fuzzer never runs on).
fn address(fuzzer: &mut Fuzzer, wild: bool) -> u64 {
    let page = WINDOW + fuzzer.random.below(WINDOW_PAGES) * 4096;
    let any = generate::value(fuzzer);
    let random = &mut fuzzer.random;
    match random.below(8) {
        0 => WINDOW_LARGE,
        1 => page + 1 + random.below(4095),
        2 => guest_rt::abi::layout::HYPERVISOR_START + (random.below(1 << 27) << 12),
        3 => 0x0000_8000_0000_0000 + (random.below(1 << 34) << 12),
        4 if wild => any & !0xfff,
        5 if wild => random.below(1 << 35) << 12,
        _ => page,
    }
}

/// A gfn for an entry: one the fuzzer populated, one of its initial gfns (aliased into the
/// window, never written through), or none of the domain's.
fn gfn(fuzzer: &mut Fuzzer) -> u64 {
    let own = (!fuzzer.extents.is_empty())
        .then(|| fuzzer.extents[fuzzer.random.below(fuzzer.extents.len() as u64) as usize].0);
    let limit = fuzzer.gfn_limit;
    let random = &mut fuzzer.random;
    match random.below(6) {
        0 | 1 => own.unwrap_or(0),
        2 => random.below(limit),
        3 => limit + random.below(1 << 20),
        4 => random.below(limit) & !(LARGE_PAGE_PAGES - 1),
        _ => 0,
    }
}

/// One entry.
fn entry(fuzzer: &mut Fuzzer, wild: bool) -> MapEntry {
    let virtual_address = address(fuzzer, wild);
    let gfn = gfn(fuzzer);
    let random = &mut fuzzer.random;
    let any = random.next_u64() as u32;
    let op = random.pick(&[map_op::MAP, map_op::MAP, map_op::UNMAP, map_op::PROTECT, 3, any]);
    let mut flags = random.below(u64::from(map_flags::ALL) + 1) as u32;
    if random.below(8) == 0 {
        flags |= 1 << random.below(32);
    }
    if virtual_address == WINDOW_LARGE && random.below(2) == 0 {
        flags |= map_flags::LARGE;
    }
    MapEntry { virtual_address: GuestVirtualAddress(virtual_address), gfn: Gfn(gfn), op, flags }
}

/// Fills the first `count` entries of the array.
pub fn fill(fuzzer: &mut Fuzzer, count: usize, wild: bool) {
    for index in 0..count.min(BATCH_MAX as usize) {
        let value = entry(fuzzer, wild);
        // SAFETY: in bounds; a raw write into the fuzzer's static, no reference formed.
        unsafe { core::ptr::addr_of_mut!((*buffers()).entries[index]).write(value) };
    }
}

/// A random `mmu_update` array. On a live scratch space the entries may name any address
/// (refilled with safe ones afterwards); the result, `done` and the no-space rule are checked.
pub fn mmu_batch(fuzzer: &mut Fuzzer) {
    fuzzer.counts.batches += 1;
    let space = generate::space(fuzzer);
    let live = space < SPACES_MAX && fuzzer.spaces[space as usize];
    let wild = live && space != 0 && fuzzer.user_root != Some(space);
    let count = generate::count(fuzzer, BATCH_MAX);
    let filled = count.min(BATCH_MAX) as usize;
    fill(fuzzer, filled, wild);
    let done = done_pointer(fuzzer);
    // SAFETY: a raw write into the fuzzer's static.
    unsafe { core::ptr::addr_of_mut!((*buffers()).done).write(u64::MAX) };
    let call = Call::new(Hypercall::MMU_UPDATE, &[space, entries_address(), count, done]);
    let result = fuzzer.issue(call);
    // SAFETY: a raw pointer into the fuzzer's static; no reference is formed.
    let done_word = unsafe { core::ptr::addr_of!((*buffers()).done) };
    // SAFETY: a raw read of the fuzzer's static.
    let written = unsafe { done_word.read() };
    let own_done = done == done_word as u64;
    if !live {
        if result != Err(Errno::ESRCH) {
            fuzzer.fail(&call, result, "a space that is not live must be -ESRCH");
        }
    } else if let Ok(completed) = result {
        if completed != filled as u64 {
            fuzzer.fail(&call, result, format_args!("all {filled} entries succeeded, so the result must be {filled}"));
        }
        if own_done && written != completed {
            fuzzer.fail(&call, result, format_args!("done says {written}"));
        }
    } else if own_done && written >= filled as u64 {
        fuzzer.fail(&call, result, format_args!("an entry failed, yet done says {written} of {filled}"));
    }
    if wild {
        fill(fuzzer, filled, false);
    }
}

/// What ends a multicall after an entry (SPEC.md §13), with the entry's exact result.
fn ender(call: &Call) -> Option<Option<Result<u64, Errno>>> {
    match call.hypercall() {
        Hypercall::IRET | Hypercall::MULTICALL => Some(Some(Err(Errno::EINVAL))),
        Hypercall::SCHED_OP => match call.args[0] {
            sched_cmd::YIELD => Some(Some(Ok(0))),
            sched_cmd::BLOCK => Some(Some(Err(Errno::EINVAL))),
            // Refused when valid, its own error when not: either way the batch ends.
            sched_cmd::POLL => Some(None),
            _ => None,
        },
        _ => None,
    }
}

/// A random multicall array of generated calls (and of calls that end a batch), issued
/// from the fuzzer's array or from unreadable memory; checks the count completed, every
/// entry's result, and that nothing after the end was run.
pub fn multicall(fuzzer: &mut Fuzzer) {
    fuzzer.counts.multicalls += 1;
    let count = generate::count(fuzzer, MULTICALL_MAX);
    let own = fuzzer.random.below(8) != 0;
    let entries = count.min(MULTICALL_MAX) as usize;
    let mut calls = [Call::new(Hypercall::VERSION, &[]); MULTICALL_MAX as usize];
    for (index, slot) in calls.iter_mut().enumerate().take(entries) {
        let special = fuzzer.random.below(16) == 0;
        *slot = if special {
            let any = generate::value(fuzzer);
            fuzzer.random.pick(&[
                Call::new(Hypercall::IRET, &[]),
                Call::new(Hypercall::MULTICALL, &[calls_address(), 1]),
                Call::new(Hypercall::SCHED_OP, &[sched_cmd::YIELD]),
                Call::new(Hypercall::SCHED_OP, &[sched_cmd::BLOCK]),
                Call::new(Hypercall::SCHED_OP, &[sched_cmd::POLL, any, 129, 1]),
            ])
        } else {
            generate::call(fuzzer, Some(index)).unwrap_or(Call::new(Hypercall::VERSION, &[0]))
        };
        let value = MulticallEntry { op: slot.number, args: slot.args, result: UNWRITTEN };
        // SAFETY: `index` < MULTICALL_MAX; a raw write into the fuzzer's static.
        unsafe { core::ptr::addr_of_mut!((*buffers()).calls[index]).write(value) };
    }
    let address = if own { calls_address() } else { fuzzer.unreadable() };
    let call = Call::new(Hypercall::MULTICALL, &[address, count]);
    if own {
        for entry_call in &calls[..entries] {
            fuzzer.count_call(entry_call);
        }
    }
    let result = fuzzer.issue(call);
    if !own {
        return;
    }
    let expected = if count > MULTICALL_MAX {
        Err(Errno::EINVAL)
    } else {
        let end = calls[..entries].iter().position(|call| ender(call).is_some()).map_or(entries, |index| index + 1);
        Ok(end as u64)
    };
    if result != expected {
        fuzzer.fail(&call, result, format_args!("expected {}", Shown(expected)));
        return;
    }
    let completed = expected.unwrap_or(0) as usize;
    for (index, entry_call) in calls.iter().enumerate().take(entries) {
        // SAFETY: in bounds; a raw read of the fuzzer's static.
        let written = unsafe { core::ptr::addr_of!((*buffers()).calls[index].result).read() };
        if index >= completed {
            if written != UNWRITTEN {
                fuzzer.fail(
                    entry_call,
                    Errno::from_return(written),
                    format_args!("entry {index} ran after the batch ended"),
                );
            }
            continue;
        }
        if written == UNWRITTEN {
            fuzzer.fail(entry_call, result, format_args!("entry {index} of the multicall has no result"));
            continue;
        }
        let entry_result = Errno::from_return(written);
        fuzzer.judge(entry_call, entry_result);
        if let Some(Some(exact)) = ender(entry_call) {
            if entry_result != exact {
                fuzzer.fail(entry_call, entry_result, format_args!("entry {index} must be {}", Shown(exact)));
            }
        }
        fuzzer.observe(entry_call, entry_result);
    }
}
