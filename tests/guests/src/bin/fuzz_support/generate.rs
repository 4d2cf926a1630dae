//! One random hypercall: a number biased to the defined ones, arguments biased to
//! boundaries, then shaped per hypercall so that pointers follow the module's safety rule
//! (`super`) and nothing takes the fuzzer's own footing away.

use super::{buffers, gfn_slot, Call, Fuzzer, GFN_SLOT, POLL_PORTS, READ_BYTES};
use guest_rt::abi::event::{event_cmd, DOMAIN_SELF};
use guest_rt::abi::hypercall::{console_cmd, sched_cmd, shutdown_reason, Hypercall, SHUTDOWN_CODE_MAX};
use guest_rt::abi::layout::HYPERVISOR_START;
use guest_rt::abi::memory::{memory_cmd, space_cmd, LARGE_PAGE_ORDER, LARGE_PAGE_PAGES, NO_SPACE, SPACES_MAX};

/// The text the fuzzer's console writes print.
pub const TEXT: &[u8] = b"fuzz:console\n";
/// Console writes that print [`TEXT`]; later writes of it have count 0.
const PRINTING_WRITES: u64 = 16;

/// A hypercall number: mostly a defined one, sometimes any small or huge number.
pub fn number(fuzzer: &mut Fuzzer) -> u64 {
    let random = &mut fuzzer.random;
    match random.below(20) {
        0 => {
            let any = random.next_u64();
            random.pick(&[33, 63, 64, 255, 1 << 16, 1 << 32, 1 << 63, u64::MAX, any])
        }
        1..=3 => random.below(64),
        _ => random.pick(Hypercall::ALL).0 .0,
    }
}

/// An argument value biased to boundaries (no pointer into the fuzzer's memory).
pub fn value(fuzzer: &mut Fuzzer) -> u64 {
    let random = &mut fuzzer.random;
    match random.below(10) {
        0 => 0,
        1 | 2 => random.below(16),
        3 => u64::MAX,
        4 => HYPERVISOR_START + random.below(1 << 39),
        5 => 0x0000_8000_0000_0000 + random.below(1 << 46),
        6 => random.pick(&[4095, 4096, 4097, 1 << 21, u64::from(u32::MAX), 1 << 32, 1 << 47, i64::MAX as u64]),
        7 => (1u64 << random.below(64)).wrapping_sub(random.below(2)),
        _ => random.next_u64(),
    }
}

/// A count biased to the edges of `limit` (an array's capacity or a call's maximum).
pub fn count(fuzzer: &mut Fuzzer, limit: u64) -> u64 {
    let random = &mut fuzzer.random;
    match random.below(8) {
        0 => 0,
        1 => 1,
        2 => limit,
        3 => limit + 1,
        4 => u64::MAX,
        _ => random.below(limit.min(16) + 1),
    }
}

/// An address-space handle: the initial one, a live scratch one, or none.
pub fn space(fuzzer: &mut Fuzzer) -> u64 {
    let live: Option<u64> = {
        let scratch: alloc::vec::Vec<u64> = fuzzer.scratch_spaces().collect();
        (!scratch.is_empty()).then(|| fuzzer.random.pick(&scratch))
    };
    let any = value(fuzzer);
    let random = &mut fuzzer.random;
    match random.below(6) {
        0 => 0,
        1 | 2 => live.unwrap_or(0),
        3 => random.below(SPACES_MAX + 2),
        4 => NO_SPACE,
        _ => any,
    }
}

/// One call, or `None` for one the fuzzer never makes (`iret`, an unbounded `BLOCK`).
/// `entry` is the multicall entry the call will be (its own gfn slot), `None` when direct.
pub fn call(fuzzer: &mut Fuzzer, entry: Option<usize>) -> Option<Call> {
    let number = number(fuzzer);
    let mut args = [0u64; 6];
    for argument in args.iter_mut() {
        *argument = value(fuzzer);
    }
    let mut call = Call { number, args };
    // A sub-command is picked from the defined ones most of the time; the shaping below
    // looks at the final value, so a random one that happens to be defined is shaped too.
    let pick_command = |fuzzer: &mut Fuzzer, defined: u64, args: &mut [u64; 6]| {
        if fuzzer.random.below(4) != 0 {
            args[0] = fuzzer.random.below(defined + 1);
        }
    };
    match call.hypercall() {
        Hypercall::SET_TRAP_TABLE => {
            // Never count 0 nor a readable table: either would replace the fuzzer's handlers.
            call.args[0] = fuzzer.unreadable();
            if call.args[1] == 0 {
                call.args[1] = 1;
            }
        }
        Hypercall::MMU_UPDATE => {
            call.args[0] = space(fuzzer);
            // The entries array always holds entries safe for the initial space (`batches`).
            call.args[1] = if fuzzer.random.below(4) == 0 { fuzzer.unreadable() } else { entries_address() };
            call.args[2] = count(fuzzer, 1024);
            call.args[3] = done_pointer(fuzzer);
        }
        Hypercall::MEMORY_OP => {
            pick_command(fuzzer, 5, &mut call.args);
            shape_memory_op(fuzzer, &mut call.args, entry);
        }
        Hypercall::MULTICALL => {
            // Nested arrays are `batches`' job; here only unreadable ones.
            call.args[0] = fuzzer.unreadable();
        }
        Hypercall::CONSOLE_IO => {
            pick_command(fuzzer, 2, &mut call.args);
            shape_console(fuzzer, &mut call.args);
        }
        Hypercall::IRET => return None,
        Hypercall::ADDRESS_SPACE_OP => {
            pick_command(fuzzer, 6, &mut call.args);
            if call.args[0] != space_cmd::CREATE {
                call.args[1] = space(fuzzer);
            }
            if call.args[0] == space_cmd::SWITCH {
                call.args[2] = space(fuzzer);
                // Only the initial space (or a handle that is not live) may become the
                // kernel root: the fuzzer's code is mapped there alone.
                if call.args[1] < SPACES_MAX && fuzzer.spaces[call.args[1] as usize] {
                    call.args[1] = 0;
                }
            }
        }
        Hypercall::SCHED_OP => {
            pick_command(fuzzer, 4, &mut call.args);
            shape_sched_op(fuzzer, &mut call.args, entry)?;
        }
        Hypercall::EVENT_CHANNEL_OP => shape_event_channel_op(fuzzer, &mut call.args),
        _ => {}
    }
    Some(call)
}

/// The address of the `mmu_update` entries array.
pub fn entries_address() -> u64 {
    // SAFETY: a raw pointer into the static; no reference is formed.
    unsafe { core::ptr::addr_of_mut!((*buffers()).entries) as u64 }
}

/// The address of the multicall entries array.
pub fn calls_address() -> u64 {
    // SAFETY: as above.
    unsafe { core::ptr::addr_of_mut!((*buffers()).calls) as u64 }
}

/// `mmu_update`'s `done`: none, the fuzzer's own word, or an unwritable address.
pub fn done_pointer(fuzzer: &mut Fuzzer) -> u64 {
    match fuzzer.random.below(4) {
        0 => 0,
        1 => fuzzer.unreadable(),
        // SAFETY: a raw pointer into the static; no reference is formed.
        _ => unsafe { core::ptr::addr_of_mut!((*buffers()).done) as u64 },
    }
}

/// `memory_op`: gfn arrays are the fuzzer's slot (with a count inside it) or unreadable;
/// a released gfn is one the fuzzer populated itself, or one that is not the domain's.
fn shape_memory_op(fuzzer: &mut Fuzzer, args: &mut [u64; 6], entry: Option<usize>) {
    let command = args[0];
    if command != memory_cmd::INCREASE_RESERVATION && command != memory_cmd::DECREASE_RESERVATION {
        return;
    }
    args[3] = fuzzer.random.pick(&[0, 0, 0, LARGE_PAGE_ORDER, 1, args[3]]);
    if fuzzer.random.below(4) == 0 {
        args[1] = fuzzer.unreadable();
        return;
    }
    let slot = gfn_slot(entry);
    args[1] = slot as u64;
    let any = fuzzer.random.below(GFN_SLOT as u64 + 1);
    args[2] = fuzzer.random.pick(&[0, 1, 1, 2, 3, GFN_SLOT as u64, any]);
    if command == memory_cmd::DECREASE_RESERVATION {
        for index in 0..args[2] as usize {
            let gfn = releasable(fuzzer, args[3]);
            // SAFETY: `index` < GFN_SLOT; a raw write into the fuzzer's static slot.
            unsafe { slot.add(index).write(gfn) };
        }
    }
}

/// A gfn `DECREASE_RESERVATION` of `order` may name without releasing the fuzzer's own
/// memory: an extent it populated (order 9: only a block wholly above its initial gfns),
/// or a gfn beyond the domain's limit.
fn releasable(fuzzer: &mut Fuzzer, order: u64) -> u64 {
    let beyond = fuzzer.gfn_limit + fuzzer.random.below(1 << 20);
    let candidates: alloc::vec::Vec<u64> = fuzzer
        .extents
        .iter()
        .filter(|&&(gfn, extent_order)| order != LARGE_PAGE_ORDER || extent_order == order || gfn >= fuzzer.gfn_floor())
        .map(|&(gfn, _)| gfn)
        .collect();
    let own = (!candidates.is_empty()).then(|| fuzzer.random.pick(&candidates));
    match (fuzzer.random.below(4), own) {
        (0, _) | (_, None) => {
            fuzzer.random.pick(&[beyond, u64::MAX, fuzzer.gfn_limit, beyond & !(LARGE_PAGE_PAGES - 1)])
        }
        (_, Some(gfn)) => gfn,
    }
}

/// `console_io`: writes of the fuzzer's text (a few print) or from unreadable memory;
/// reads into its read buffer or to unwritable memory.
fn shape_console(fuzzer: &mut Fuzzer, args: &mut [u64; 6]) {
    match args[0] {
        console_cmd::WRITE if fuzzer.random.below(2) == 0 => {
            args[2] = TEXT.as_ptr() as u64;
            let printing = fuzzer.counts.printing_writes < PRINTING_WRITES && fuzzer.random.below(64) == 0;
            args[1] = if printing { TEXT.len() as u64 } else { 0 };
            fuzzer.counts.printing_writes += u64::from(printing);
        }
        console_cmd::READ if fuzzer.random.below(2) == 0 => {
            // SAFETY: a raw pointer into the static; no reference is formed.
            args[2] = unsafe { core::ptr::addr_of_mut!((*buffers()).read) as u64 };
            args[1] = fuzzer.random.below(READ_BYTES as u64 + 1);
        }
        console_cmd::WRITE | console_cmd::READ => {
            args[2] = fuzzer.unreadable();
            // An unreadable buffer with count 0 is a valid empty write; keep counts small
            // enough that nothing could print.
            if args[1] == 0 {
                args[1] = 1;
            }
        }
        _ => {}
    }
}

/// `sched_op`: no valid shutdown; `BLOCK` only inside a multicall (refused there); `POLL`
/// with a timeout that is already near, over the fuzzer's port array or unreadable memory.
fn shape_sched_op(fuzzer: &mut Fuzzer, args: &mut [u64; 6], entry: Option<usize>) -> Option<()> {
    match args[0] {
        sched_cmd::SHUTDOWN => {
            let valid_reason = args[1] == shutdown_reason::POWEROFF || args[1] == shutdown_reason::CRASH;
            if valid_reason && args[2] <= SHUTDOWN_CODE_MAX {
                args[1] = fuzzer.random.pick(&[1, 2, 4, u64::MAX]);
            }
        }
        sched_cmd::BLOCK if entry.is_none() => return None,
        sched_cmd::POLL => {
            args[3] = guest_rt::time::now() + 1 + fuzzer.random.below(50_000);
            if fuzzer.random.below(4) == 0 {
                args[1] = fuzzer.unreadable();
                args[2] = 1 + fuzzer.random.below(POLL_PORTS as u64);
            } else {
                // SAFETY: a raw pointer into the static; no reference is formed.
                args[1] = unsafe { core::ptr::addr_of_mut!((*buffers()).ports) as u64 };
                args[2] = fuzzer.random.pick(&[0, 1, 2, POLL_PORTS as u64, POLL_PORTS as u64 + 1, u64::MAX]);
                for index in 0..POLL_PORTS {
                    let port = fuzzer.random.pick(&[1, 2, 3, 0, 1023, 1024]) as u32;
                    // SAFETY: in bounds; a raw write into the static.
                    unsafe { core::ptr::addr_of_mut!((*buffers()).ports[index]).write(port) };
                }
            }
        }
        _ => {}
    }
    Some(())
}

/// `event_channel_op`: domains are mostly this one, the peers and the witness; ports are
/// mostly low (new ports take the lowest number) and closes outnumber allocations, so the
/// domain's ports neither run out nor all stay closed. The link to the witness is never
/// closed nor sent on.
fn shape_event_channel_op(fuzzer: &mut Fuzzer, args: &mut [u64; 6]) {
    let random_domain = value(fuzzer);
    let mut domains = alloc::vec![DOMAIN_SELF, fuzzer.domain, 0, 0x7fef, random_domain];
    domains.extend(fuzzer.peers.iter().copied());
    domains.extend(fuzzer.witness);
    let random = &mut fuzzer.random;
    if random.below(4) != 0 {
        args[0] = random.pick(&[0, 1, 2, 3, 4, 4, 4, 4, 4, 4, 4, 5, 5, 6, 7, 8]);
        args[1] = random.pick(&domains);
        args[2] = 1 + random.below(64);
    }
    match args[0] {
        event_cmd::BIND_VIRQ => args[1] = random.below(5),
        event_cmd::CLOSE | event_cmd::SEND | event_cmd::STATUS | event_cmd::UNMASK => {
            let low = 1 + random.below(64);
            args[1] = random.pick(&[low, low, 0, 1023, 1024, args[1]]);
        }
        _ => {}
    }
    if (args[0] == event_cmd::CLOSE || args[0] == event_cmd::SEND) && Some(args[1]) == fuzzer.link {
        args[1] = 0;
    }
}
