//! Sequences of related calls whose results are known exactly (SPEC.md §12, §17, §19,
//! §20): a port allocated then closed twice, a loopback channel, channels to the other
//! fuzzers, memory populated, mapped, written, released and touched again, a space created
//! and destroyed twice, a poll on a raised port, a timer a moment ahead then `BLOCK`.

use super::{gfn_slot, Call, Fuzzer, Shown, WINDOW, WINDOW_PAGES};
use crate::support;
use guest_rt::abi::event::{event_cmd, split_status, status, DOMAIN_SELF};
use guest_rt::abi::hypercall::{sched_cmd, Hypercall};
use guest_rt::abi::memory::{map_flags, map_op, memory_cmd, space_cmd, split_query, MapEntry, LARGE_PAGE_SIZE};
use guest_rt::abi::trap::vector;
use guest_rt::abi::Errno;
use guest_rt::events::shared_info;

/// How many kinds of sequence there are.
pub const KINDS: u64 = 7;

/// Runs sequence `kind` (0..KINDS).
pub fn run(fuzzer: &mut Fuzzer, kind: u64) {
    fuzzer.counts.sequences += 1;
    match kind {
        0 => port_twice_closed(fuzzer),
        1 => loopback(fuzzer),
        2 => peer_channels(fuzzer),
        3 => map_release_touch(fuzzer),
        4 => space_destroyed_twice(fuzzer),
        5 => poll_raised_port(fuzzer),
        _ => timer_then_block(fuzzer),
    }
}

/// Issues `call` and checks its result is `expected`; returns whether it was.
fn expect(fuzzer: &mut Fuzzer, call: Call, expected: Result<u64, Errno>) -> bool {
    let result = fuzzer.issue(call);
    if result != expected {
        fuzzer.fail(&call, result, format_args!("expected {} in this sequence", Shown(expected)));
    }
    result == expected
}

fn event(command: u64, a: u64, b: u64) -> Call {
    Call::new(Hypercall::EVENT_CHANNEL_OP, &[command, a, b])
}

/// A new port by `call`, or `None` when the domain has no free port left (documented).
fn allocate(fuzzer: &mut Fuzzer, call: Call) -> Option<u64> {
    match fuzzer.issue(call) {
        Ok(port) => Some(port),
        Err(Errno::ENOSPC) => None,
        result => {
            fuzzer.fail(&call, result, "expected a new port or -ENOSPC");
            None
        }
    }
}

/// ALLOC_UNBOUND(self), STATUS, CLOSE, CLOSE again (-EINVAL), SEND (-EINVAL), STATUS (closed).
fn port_twice_closed(fuzzer: &mut Fuzzer) {
    let Some(port) = allocate(fuzzer, event(event_cmd::ALLOC_UNBOUND, DOMAIN_SELF, 0)) else { return };
    let packed = status::UNBOUND | fuzzer.domain << 8;
    expect(fuzzer, event(event_cmd::STATUS, port, 0), Ok(packed));
    expect(fuzzer, event(event_cmd::CLOSE, port, 0), Ok(0));
    expect(fuzzer, event(event_cmd::CLOSE, port, 0), Err(Errno::EINVAL));
    expect(fuzzer, event(event_cmd::SEND, port, 0), Err(Errno::EINVAL));
    expect(fuzzer, event(event_cmd::STATUS, port, 0), Ok(status::CLOSED));
}

/// A loopback channel: SEND raises the other end; closing one end leaves the other UNBOUND.
fn loopback(fuzzer: &mut Fuzzer) {
    let Some(first) = allocate(fuzzer, event(event_cmd::ALLOC_UNBOUND, DOMAIN_SELF, 0)) else { return };
    let Some(second) = allocate(fuzzer, event(event_cmd::BIND_INTERDOMAIN, DOMAIN_SELF, first)) else {
        expect(fuzzer, event(event_cmd::CLOSE, first, 0), Ok(0));
        return;
    };
    shared_info().clear_pending(first as u32);
    expect(fuzzer, event(event_cmd::SEND, second, 0), Ok(0));
    if !shared_info().is_pending(first as u32) {
        let call = event(event_cmd::SEND, second, 0);
        fuzzer.fail(&call, Ok(0), format_args!("SEND on loopback port {second} left port {first} not pending"));
    }
    expect(fuzzer, event(event_cmd::CLOSE, second, 0), Ok(0));
    let (state, remote_domain, _) = split_status(fuzzer.issue(event(event_cmd::STATUS, first, 0)).unwrap_or(0));
    if (state, remote_domain) != (status::UNBOUND, fuzzer.domain) {
        let call = event(event_cmd::STATUS, first, 0);
        fuzzer.fail(&call, Ok(state), "the surviving end of a closed loopback must be UNBOUND naming this domain");
    }
    if shared_info().is_pending(first as u32) {
        expect(fuzzer, event(event_cmd::CLOSE, first, 0), Ok(0));
        if shared_info().is_pending(first as u32) {
            fuzzer.fail(&event(event_cmd::CLOSE, first, 0), Ok(0), "CLOSE must clear the pending bit");
        }
    } else {
        expect(fuzzer, event(event_cmd::CLOSE, first, 0), Ok(0));
    }
    expect(fuzzer, event(event_cmd::CLOSE, second, 0), Err(Errno::EINVAL));
}

/// Channels with the other fuzzers (who may have ended: -ESRCH) and the witness (whose
/// ports are offered to others or bound: -EPERM or -EINVAL).
fn peer_channels(fuzzer: &mut Fuzzer) {
    if let Some(&peer) = fuzzer.peers.get(fuzzer.random.below(fuzzer.peers.len().max(1) as u64) as usize) {
        // Offer a port to the peer; it binds it when its own fuzzing names it. Left open:
        // the peer's end and this one are released by whoever ends first and by death.
        match fuzzer.issue(event(event_cmd::ALLOC_UNBOUND, peer, 0)) {
            Ok(_) | Err(Errno::ESRCH | Errno::ENOSPC) => {}
            result => {
                fuzzer.fail(&event(event_cmd::ALLOC_UNBOUND, peer, 0), result, "expected a port, -ESRCH or -ENOSPC")
            }
        }
        let remote_port = 1 + fuzzer.random.below(32);
        let bind = event(event_cmd::BIND_INTERDOMAIN, peer, remote_port);
        match fuzzer.issue(bind) {
            Ok(port) => {
                // The peer may close its end or die at any moment: then ours is UNBOUND.
                let send = event(event_cmd::SEND, port, 0);
                let result = fuzzer.issue(send);
                if !matches!(result, Ok(0) | Err(Errno::EINVAL)) {
                    fuzzer.fail(&send, result, "SEND on a channel to a peer: 0, or -EINVAL once the peer closed");
                }
                expect(fuzzer, event(event_cmd::CLOSE, port, 0), Ok(0));
            }
            Err(Errno::ESRCH | Errno::EINVAL | Errno::EPERM | Errno::ENOSPC) => {}
            result => fuzzer.fail(&bind, result, "expected a port, -ESRCH, -EINVAL, -EPERM or -ENOSPC"),
        }
    }
    if let Some(witness) = fuzzer.witness {
        let port = 1 + fuzzer.random.below(8);
        let bind = event(event_cmd::BIND_INTERDOMAIN, witness, port);
        let result = fuzzer.issue(bind);
        if !matches!(result, Err(Errno::EPERM | Errno::EINVAL)) {
            fuzzer.fail(&bind, result, "the witness's ports are bound or offered to others: -EPERM or -EINVAL");
        }
    }
}

fn map_entry(virtual_address: u64, gfn: u64, op: u32, flags: u32) -> MapEntry {
    MapEntry {
        virtual_address: guest_rt::abi::GuestVirtualAddress(virtual_address),
        gfn: guest_rt::abi::Gfn(gfn),
        op,
        flags,
    }
}

/// One `mmu_update` of one entry through the direct gfn slot's neighbour: the entries array.
fn update(fuzzer: &mut Fuzzer, space: u64, value: MapEntry, expected: Result<u64, Errno>) -> bool {
    // SAFETY: a raw pointer into the fuzzer's static; no reference is formed.
    let entry = unsafe { core::ptr::addr_of_mut!((*super::buffers()).entries[0]) };
    // SAFETY: a raw write of entry 0 into the fuzzer's static.
    unsafe { entry.write(value) };
    let call = Call::new(Hypercall::MMU_UPDATE, &[space, super::generate::entries_address(), 1, 0]);
    let passed = expect(fuzzer, call, expected);
    // The array must stay safe for the initial space: an UNMAP in the window is.
    // SAFETY: as above.
    unsafe { entry.write(map_entry(WINDOW, 0, map_op::UNMAP, 0)) };
    passed
}

/// INCREASE one gfn, map it in the window, find it zeroed, write and read it, QUERY it,
/// DECREASE it, touch the address (#PF), QUERY (-ENOENT), DECREASE again and MAP it
/// (both -EINVAL: no longer populated).
fn map_release_touch(fuzzer: &mut Fuzzer) {
    let slot = gfn_slot(None);
    let increase = Call::new(Hypercall::MEMORY_OP, &[memory_cmd::INCREASE_RESERVATION, slot as u64, 1, 0]);
    match fuzzer.issue(increase) {
        Ok(1) => {}
        Err(Errno::ENOMEM) => return,
        result => {
            fuzzer.fail(&increase, result, "expected 1 or -ENOMEM");
            return;
        }
    }
    // SAFETY: a raw read of the slot the call just wrote.
    let gfn = unsafe { slot.read() };
    let address = WINDOW + fuzzer.random.below(WINDOW_PAGES) * 4096;
    let flags = map_flags::WRITABLE | map_flags::NO_EXECUTE;
    // Whatever the random batches left at the address goes first.
    if let Ok(value) = fuzzer.issue(Call::new(Hypercall::ADDRESS_SPACE_OP, &[space_cmd::QUERY, 0, address])) {
        let (_, existing) = split_query(value);
        let large = existing & map_flags::LARGE;
        let start = if large != 0 { address & !(LARGE_PAGE_SIZE - 1) } else { address };
        update(fuzzer, 0, map_entry(start, 0, map_op::UNMAP, large), Ok(1));
    }
    let map = map_call(fuzzer, address, gfn, flags);
    let mapped = match fuzzer.issue(map) {
        Ok(1) => true,
        Err(Errno::ENOMEM) => false,
        result => {
            let call = map_call(fuzzer, address, gfn, flags);
            fuzzer.fail(&call, result, "mapping a fresh gfn at an empty window address: 1 or -ENOMEM");
            false
        }
    };
    if mapped {
        let offset = fuzzer.random.below(4096);
        let query = Call::new(Hypercall::ADDRESS_SPACE_OP, &[space_cmd::QUERY, 0, address + offset]);
        let result = fuzzer.issue(query);
        if result.map(split_query) != Ok((guest_rt::abi::Gfn(gfn), flags)) {
            fuzzer.fail(&query, result, format_args!("expected gfn {gfn:#x} with flags {flags:#x}"));
        }
        match support::probe_read(address + offset) {
            Ok(0) => {}
            Ok(byte) => {
                fuzzer.fail(&increase, Ok(1), format_args!("a new frame is not zeroed: byte {byte:#x} at {offset:#x}"))
            }
            Err(fault) => {
                fuzzer.fail(&query, result, format_args!("reading the mapped page faulted: {:#x}", fault.error_code))
            }
        }
        let byte = 1 + fuzzer.random.below(255) as u8;
        if support::probe_write(address + offset, byte).is_err() || support::probe_read(address + offset) != Ok(byte) {
            fuzzer.fail(&query, result, "a writable mapping does not keep what was written");
        }
    }
    let decrease = Call::new(Hypercall::MEMORY_OP, &[memory_cmd::DECREASE_RESERVATION, slot as u64, 1, 0]);
    expect(fuzzer, decrease, Ok(1));
    if mapped {
        match support::probe_read(address) {
            Err(fault) if fault.vector == u64::from(vector::PAGE_FAULT) && fault.address == address => {}
            outcome => {
                fuzzer.fail(&decrease, Ok(1), format_args!("touching a released gfn's old address: {outcome:?}"))
            }
        }
    }
    let query = Call::new(Hypercall::ADDRESS_SPACE_OP, &[space_cmd::QUERY, 0, address]);
    expect(fuzzer, query, Err(Errno::ENOENT));
    expect(fuzzer, decrease, Err(Errno::EINVAL));
    let call = map_call(fuzzer, address, gfn, flags);
    expect(fuzzer, call, Err(Errno::EINVAL));
}

/// A one-entry MAP at `address` in the initial space (written to entry 0 first).
fn map_call(_fuzzer: &mut Fuzzer, address: u64, gfn: u64, flags: u32) -> Call {
    // SAFETY: a raw write of entry 0 into the fuzzer's static (a window address).
    unsafe {
        core::ptr::addr_of_mut!((*super::buffers()).entries[0]).write(map_entry(address, gfn, map_op::MAP, flags))
    };
    Call::new(Hypercall::MMU_UPDATE, &[0, super::generate::entries_address(), 1, 0])
}

/// CREATE a space, map a gfn in it anywhere, QUERY it, DESTROY it, then DESTROY, QUERY
/// and `mmu_update` it again (all -ESRCH).
fn space_destroyed_twice(fuzzer: &mut Fuzzer) {
    let create = Call::new(Hypercall::ADDRESS_SPACE_OP, &[space_cmd::CREATE]);
    let space = match fuzzer.issue(create) {
        Ok(space) => space,
        Err(Errno::ENOSPC | Errno::ENOMEM) => return,
        result => {
            fuzzer.fail(&create, result, "expected a handle, -ENOSPC or -ENOMEM");
            return;
        }
    };
    let address = fuzzer.random.below(1 << 35) << 12;
    let gfn = fuzzer.random.below(fuzzer.initial_pages.max(1));
    let flags = map_flags::USER;
    // SAFETY: a raw pointer into the fuzzer's static; no reference is formed.
    let entry = unsafe { core::ptr::addr_of_mut!((*super::buffers()).entries[0]) };
    // SAFETY: a raw write of entry 0 into the fuzzer's static; made safe again below.
    unsafe { entry.write(map_entry(address, gfn, map_op::MAP, flags)) };
    let map = Call::new(Hypercall::MMU_UPDATE, &[space, super::generate::entries_address(), 1, 0]);
    let mapped = fuzzer.issue(map);
    // SAFETY: as above: an UNMAP in the window is safe for the initial space.
    unsafe { entry.write(map_entry(WINDOW, 0, map_op::UNMAP, 0)) };
    if !matches!(mapped, Ok(1) | Err(Errno::ENOMEM)) {
        fuzzer.fail(&map, mapped, "mapping an own gfn in a new space: 1 or -ENOMEM");
    }
    if mapped == Ok(1) {
        let query = Call::new(Hypercall::ADDRESS_SPACE_OP, &[space_cmd::QUERY, space, address]);
        let result = fuzzer.issue(query);
        if result.map(split_query) != Ok((guest_rt::abi::Gfn(gfn), flags)) {
            fuzzer.fail(&query, result, format_args!("expected gfn {gfn:#x} with flags {flags:#x}"));
        }
    }
    let destroy = Call::new(Hypercall::ADDRESS_SPACE_OP, &[space_cmd::DESTROY, space]);
    expect(fuzzer, destroy, Ok(0));
    expect(fuzzer, destroy, Err(Errno::ESRCH));
    expect(fuzzer, Call::new(Hypercall::ADDRESS_SPACE_OP, &[space_cmd::QUERY, space, address]), Err(Errno::ESRCH));
    update(fuzzer, space, map_entry(address, gfn, map_op::UNMAP, 0), Err(Errno::ESRCH));
}

/// An IPI port: POLL on it with a near timeout returns; SEND raises it; POLL with no
/// timeout then returns at once (it is pending); CLOSE clears it.
fn poll_raised_port(fuzzer: &mut Fuzzer) {
    let Some(port) = allocate(fuzzer, event(event_cmd::BIND_IPI, 0, 0)) else { return };
    // SAFETY: raw writes into the fuzzer's static.
    unsafe { core::ptr::addr_of_mut!((*super::buffers()).ports[0]).write(port as u32) };
    // SAFETY: a raw pointer into the fuzzer's static; no reference is formed.
    let ports = unsafe { core::ptr::addr_of_mut!((*super::buffers()).ports) as u64 };
    let timeout = guest_rt::time::now() + 1 + fuzzer.random.below(100_000);
    expect(fuzzer, Call::new(Hypercall::SCHED_OP, &[sched_cmd::POLL, ports, 1, timeout]), Ok(0));
    expect(fuzzer, event(event_cmd::SEND, port, 0), Ok(0));
    if !shared_info().is_pending(port as u32) {
        fuzzer.fail(&event(event_cmd::SEND, port, 0), Ok(0), "SEND on an IPI port must raise it");
    }
    expect(fuzzer, Call::new(Hypercall::SCHED_OP, &[sched_cmd::POLL, ports, 1, 0]), Ok(0));
    expect(fuzzer, event(event_cmd::CLOSE, port, 0), Ok(0));
    if shared_info().is_pending(port as u32) {
        fuzzer.fail(&event(event_cmd::CLOSE, port, 0), Ok(0), "CLOSE must clear the pending bit");
    }
}

/// `set_timer_op` 20-500 us ahead, then `BLOCK`: it returns 0 whether the deadline came
/// before the `BLOCK` (often, under emulation) or after (SPEC.md §19.4, §20.2) — a timer
/// reached first once left the domain asleep for good. The event callback is unregistered
/// first and events masked again after: `BLOCK` unmasks them, and the callback may be a
/// fuzzed address.
fn timer_then_block(fuzzer: &mut Fuzzer) {
    expect(fuzzer, Call::new(Hypercall::SET_CALLBACKS, &[0, 0]), Ok(0));
    // Events stay masked and nothing reads them: clear the summary flag so BLOCK sleeps.
    shared_info().set_upcall_pending(0);
    let deadline = guest_rt::time::now() + 20_000 + fuzzer.random.below(480_001);
    expect(fuzzer, Call::new(Hypercall::SET_TIMER_OP, &[deadline]), Ok(0));
    expect(fuzzer, Call::new(Hypercall::SCHED_OP, &[sched_cmd::BLOCK]), Ok(0));
    shared_info().set_upcall_mask(1);
}
