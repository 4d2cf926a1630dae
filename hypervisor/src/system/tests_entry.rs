//! What a domain finds when it is built and each time it is entered: the wallclock and
//! its time info in shared info (SPEC.md §19.2, §19.3), its own segment bases in the CPU;
//! and what the console says of it: the boot line that says every domain has run, the
//! command line's ignored options and slice, the input a domain's full ring dropped; and
//! what the CPU is told as a domain runs: the root and GS base of each mode it enters, the
//! TLB flushes of its page-table changes.

use super::tests::{archive, boot, hypercall, shared_info, system_with, yield_until, Fixture};
use crate::mm::fakes::TestMemory;
use crate::mm::frames::Frame;
use crate::mm::paging::FrameMemory;
use crate::platform::fake::FakePlatform;
use crate::system::boot::BootModule;
use crate::system::{System, TIME_INFO_OFFSET};
use crate::time::Clock;
use hypercall_abi::hypercall::Hypercall;
use hypercall_abi::shared_info::{SharedInfo, VcpuTimeInfo};
use hypercall_abi::trap::segment;
use zerocopy::FromBytes;

/// 2.5 GHz, so time info's scale is not the identity.
const TSC_HZ: u64 = 2_500_000_000;
const WALLCLOCK: (u32, u32) = (1_765_000_000, 123_456_789);

fn read_shared(memory: &TestMemory, frame: Frame) -> SharedInfo {
    let mut bytes = [0u8; 4096];
    memory.read(frame, 0, &mut bytes);
    SharedInfo::read_from_bytes(&bytes).unwrap()
}

fn time_info(memory: &TestMemory, frame: Frame) -> VcpuTimeInfo {
    let mut bytes = [0u8; core::mem::size_of::<VcpuTimeInfo>()];
    memory.read(frame, TIME_INFO_OFFSET, &mut bytes);
    VcpuTimeInfo::read_from_bytes(&bytes).unwrap()
}

/// A system at TSC `tsc` with [`WALLCLOCK`], its one domain built.
fn built_at(tsc: u64) -> System<FakePlatform> {
    let mut platform = FakePlatform::default();
    platform.tsc = tsc;
    let mut system = system_with(platform, TSC_HZ, Clock::new(1_000, TSC_HZ).unwrap(), WALLCLOCK);
    system.load_domains(BootModule::Present(&archive(1)), Vec::new()).unwrap();
    system
}

#[test]
fn a_built_domain_finds_the_wallclock_and_its_time_info_in_shared_info() {
    let tsc = 7_777_777;
    let system = built_at(tsc);
    let shared = read_shared(&system.memory, shared_info(&system, 0));
    assert_eq!((shared.wc_sec, shared.wc_nsec), WALLCLOCK);
    assert_eq!(shared.wc_version % 2, 0, "even: no update in progress");
    assert_ne!(shared.wc_version, 0, "written under its version");
    let info = shared.vcpu_info[0].time;
    let expected = system.clock.vcpu_time_info(tsc, info.version);
    assert_eq!((info.version % 2, info.version != 0), (0, true));
    assert_eq!(
        (info.tsc_timestamp, info.system_time, info.tsc_to_system_mul, info.tsc_shift),
        (expected.tsc_timestamp, expected.system_time, expected.tsc_to_system_mul, expected.tsc_shift)
    );
    assert_eq!(info.system_time, system.clock.now_ns(tsc), "the system time at the TSC it was written");
}

#[test]
fn entering_a_domain_refreshes_its_time_info() {
    let mut fixture: Fixture = boot(2);
    let frame = shared_info(&fixture.0, 1);
    let before = time_info(&fixture.0.memory, frame);
    fixture.0.platform.tsc = 3_000_000_000;
    yield_until(&mut fixture, 1);
    let after = time_info(&fixture.0.memory, frame);
    assert_eq!(after.tsc_timestamp, 3_000_000_000, "the TSC read as it was entered");
    assert_eq!(after.system_time, fixture.0.clock.now_ns(3_000_000_000));
    assert_eq!(after.version, before.version + 2, "one seqlocked update");
}

#[test]
fn entering_a_domain_loads_its_own_segment_bases() {
    let mut fixture = boot(2);
    fixture.0.domains[1].vcpu.fs_base = 0x7000_1000;
    let (fs, gs) = (fixture.0.domains[1].vcpu.fs_base, fixture.0.domains[1].vcpu.gs_base());
    assert_ne!(fixture.0.platform.segment_bases, Some((fs, gs)), "domain 0's are loaded");
    yield_until(&mut fixture, 1);
    assert_eq!(fixture.0.platform.segment_bases, Some((fs, gs)));
    // Domain 0's base, set through the hypercall while it runs, comes back with it.
    yield_until(&mut fixture, 0);
    let step = hypercall(&mut fixture, Hypercall::SET_SEGMENT_BASE, [segment::FS, 0x6000_2000, 0, 0]);
    assert!(matches!(step, crate::system::Step::Resume(_)));
    yield_until(&mut fixture, 1);
    yield_until(&mut fixture, 0);
    assert_eq!(fixture.0.platform.segment_bases.map(|(fs, _)| fs), Some(0x6000_2000));
}

#[test]
fn the_all_domains_line_comes_once_every_domain_has_run_and_only_for_several() {
    const LINE: &str = "boot: all ";
    let single = boot(1);
    assert!(!single.0.platform.said(LINE), "one domain: its first-instruction line says it all");
    let mut fixture = boot(3);
    assert!(!fixture.0.platform.said(LINE), "two domains have not run yet");
    yield_until(&mut fixture, 1);
    assert!(!fixture.0.platform.said(LINE), "one domain has not run yet");
    yield_until(&mut fixture, 2);
    yield_until(&mut fixture, 0);
    yield_until(&mut fixture, 1);
    let lines: Vec<&String> = fixture.0.platform.lines.iter().filter(|line| line.contains(LINE)).collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains("all 3 domains reached their first instruction"), "{}", lines[0]);
}

#[test]
fn the_command_line_says_what_it_ignores_and_a_slice_other_than_the_default() {
    use crate::system::boot::{read_command_line, DEFAULT_SLICE_MS};
    let mut platform = FakePlatform::default();
    let (command_line, slice) = read_command_line(&mut platform, "slice=3 audit frobnicate");
    assert_eq!((slice, command_line.slice_ms, command_line.audit), (3, Some(3), true));
    assert!(platform.said("scheduler: slice 3 ms (slice=)"), "{:?}", platform.lines);
    assert!(platform.said("ignoring unknown command-line option 'frobnicate'"), "{:?}", platform.lines);
    let mut quiet = FakePlatform::default();
    let (_, slice) = read_command_line(&mut quiet, "");
    assert_eq!(slice, DEFAULT_SLICE_MS);
    assert!(quiet.lines.is_empty(), "the default slice and an empty line say nothing: {:?}", quiet.lines);
}

#[test]
fn a_domain_that_ends_with_a_full_ring_says_how_many_bytes_it_dropped() {
    use hypercall_abi::hypercall::{sched_cmd, shutdown_reason};
    let mut fixture = boot(2);
    for byte in 0..crate::console::input::RING_BYTES + 5 {
        fixture.0.domains[0].input.push(byte as u8);
    }
    hypercall(&mut fixture, Hypercall::SCHED_OP, [sched_cmd::SHUTDOWN, shutdown_reason::POWEROFF, 0, 0]);
    assert!(fixture.0.platform.said("console input: d1 g1: 5 bytes dropped (its ring was full)"));
    // The other domain's ring dropped nothing: no such line when it ends.
    hypercall(&mut fixture, Hypercall::SCHED_OP, [sched_cmd::SHUTDOWN, shutdown_reason::POWEROFF, 0, 0]);
    let dropped = fixture.0.platform.lines.iter().filter(|line| line.contains("bytes dropped")).count();
    assert_eq!(dropped, 1, "{:?}", fixture.0.platform.lines);
}

#[test]
fn console_read_moves_the_pending_input_into_guest_memory_once() {
    use hypercall_abi::hypercall::console_cmd;
    let mut fixture = boot(1);
    for &byte in b"hello" {
        fixture.0.domains[0].input.push(byte);
    }
    // Below the initial stack pointer: mapped and writable in the guest kernel's space.
    let buffer = fixture.1.rsp - 64;
    let read = |fixture: &mut Fixture| {
        let step = hypercall(fixture, Hypercall::CONSOLE_IO, [console_cmd::READ, 16, buffer, 0]);
        assert!(matches!(step, crate::system::Step::Resume(_)));
        fixture.1.rax as i64
    };
    assert_eq!(read(&mut fixture), 5);
    let space = fixture.0.domains[0].memory.as_ref().unwrap().kernel_space();
    let mut bytes = [0u8; 5];
    crate::mm::guest_memory::copy_from_guest(&fixture.0.memory, space, buffer, &mut bytes).unwrap();
    assert_eq!(&bytes, b"hello");
    assert_eq!(read(&mut fixture), 0, "consumed: nothing is read twice");
}

#[test]
fn address_space_op_results_reach_the_caller() {
    use hypercall_abi::memory::space_cmd;
    let mut fixture = boot(1);
    let op = |fixture: &mut Fixture, arguments: [u64; 4]| {
        assert!(matches!(hypercall(fixture, Hypercall::ADDRESS_SPACE_OP, arguments), crate::system::Step::Resume(_)));
        fixture.1.rax as i64
    };
    let first = op(&mut fixture, [space_cmd::CREATE, 0, 0, 0]);
    let second = op(&mut fixture, [space_cmd::CREATE, 0, 0, 0]);
    assert!(first > 0 && second > 0 && first != second, "two handles: {first}, {second}");
    assert_eq!(op(&mut fixture, [space_cmd::DESTROY, second as u64, 0, 0]), 0);
    assert_eq!(op(&mut fixture, [99, 0, 0, 0]), hypercall_abi::Errno::EINVAL.to_return());
}

#[test]
fn a_mode_change_loads_that_modes_root_and_gs_base_once() {
    use crate::domain::vcpu::Mode;
    use hypercall_abi::memory::{space_cmd, INITIAL_SPACE};
    let mut fixture = boot(1);
    let step = hypercall(&mut fixture, Hypercall::ADDRESS_SPACE_OP, [space_cmd::CREATE, 0, 0, 0]);
    assert!(matches!(step, crate::system::Step::Resume(_)));
    let user = fixture.1.rax;
    hypercall(&mut fixture, Hypercall::ADDRESS_SPACE_OP, [space_cmd::SWITCH, INITIAL_SPACE, user, 0]);
    assert_eq!(fixture.1.rax, 0, "SWITCH to a user space");
    let (system, _) = &mut fixture;
    let memory = system.domains[0].memory.as_ref().unwrap();
    let (kernel_root, user_root) = (memory.kernel_root(), memory.user_root().unwrap());
    (system.domains[0].vcpu.gs_kernel, system.domains[0].vcpu.gs_user) = (0x1000, 0x2000);
    let loads = system.platform.roots.len();
    system.change_mode(Mode::User);
    assert_eq!(system.domains[0].vcpu.mode, Mode::User);
    assert_eq!((system.platform.roots.len(), system.platform.roots.last()), (loads + 1, Some(&user_root)));
    assert_eq!(system.platform.segment_bases.map(|(_, gs)| gs), Some(0x2000));
    // Already there: nothing is loaded again.
    system.platform.segment_bases = None;
    system.change_mode(Mode::User);
    assert_eq!((system.platform.roots.len(), system.platform.segment_bases), (loads + 1, None));
    system.change_mode(Mode::Kernel);
    assert_eq!(system.domains[0].vcpu.mode, Mode::Kernel);
    assert_eq!((system.platform.roots.len(), system.platform.roots.last()), (loads + 2, Some(&kernel_root)));
    assert_eq!(system.platform.segment_bases.map(|(_, gs)| gs), Some(0x1000));
}

#[test]
fn an_mmu_update_flushes_the_loaded_root_page_by_page_or_whole_past_a_batch() {
    use hypercall_abi::address::{Gfn, GuestVirtualAddress};
    use hypercall_abi::memory::{map_flags, map_op, MapEntry, INITIAL_SPACE};
    use zerocopy::IntoBytes;
    const WINDOW: u64 = 0x0000_4000_0000_0000;
    // Runs one batch of `op` over `pages` pages of WINDOW (all on gfn 0) and returns the
    // TLB flushes it made.
    let batch = |fixture: &mut Fixture, op: u32, pages: u64| {
        let entries: Vec<MapEntry> = (0..pages)
            .map(|page| MapEntry {
                virtual_address: GuestVirtualAddress(WINDOW + page * 4096),
                gfn: Gfn(0),
                op,
                flags: if op == map_op::MAP { map_flags::WRITABLE } else { 0 },
            })
            .collect();
        let address = fixture.1.rsp - 2048;
        let (system, _) = &mut *fixture;
        let space = system.domains[0].memory.as_ref().unwrap().kernel_space();
        crate::mm::guest_memory::copy_to_guest(&mut system.memory, space, address, entries.as_bytes()).unwrap();
        let before = fixture.0.platform.flushes;
        hypercall(fixture, Hypercall::MMU_UPDATE, [INITIAL_SPACE, address, pages, 0]);
        assert_eq!(fixture.1.rax, pages, "op {op} of {pages} pages: all done");
        fixture.0.platform.flushes - before
    };
    let mut fixture = boot(1);
    batch(&mut fixture, map_op::MAP, 1);
    assert_eq!(batch(&mut fixture, map_op::UNMAP, 1), 1, "one page flushed");
    batch(&mut fixture, map_op::MAP, 40);
    assert_eq!(batch(&mut fixture, map_op::UNMAP, 40), 1, "40 pages: one flush of everything");
}

#[test]
fn the_timer_is_armed_only_for_what_is_due_and_only_when_it_moves_earlier() {
    let mut fixture = boot(1);
    hypercall(&mut fixture, Hypercall::VERSION, [0, 0, 0, 0]);
    assert_eq!(fixture.0.platform.armed, None, "a lone domain with no timer: tickless");
    hypercall(&mut fixture, Hypercall::SET_TIMER_OP, [2_000_000, 0, 0, 0]);
    let (armed, arms) = (fixture.0.platform.armed, fixture.0.platform.arms);
    assert_eq!(armed, Some(fixture.0.clock.deadline_tsc(2_000_000)));
    hypercall(&mut fixture, Hypercall::VERSION, [0, 0, 0, 0]);
    assert_eq!((fixture.0.platform.armed, fixture.0.platform.arms), (armed, arms), "the same deadline: no re-arm");
    hypercall(&mut fixture, Hypercall::SET_TIMER_OP, [1_000_000, 0, 0, 0]);
    assert_eq!(fixture.0.platform.armed, Some(fixture.0.clock.deadline_tsc(1_000_000)), "earlier: armed again");
}

#[test]
fn a_segment_base_set_by_a_hypercall_is_live_when_it_returns() {
    let mut fixture = boot(1);
    hypercall(&mut fixture, Hypercall::SET_SEGMENT_BASE, [segment::FS, 0x6000_3000, 0, 0]);
    assert_eq!(fixture.1.rax, 0);
    assert_eq!(fixture.0.platform.segment_bases.map(|(fs, _)| fs), Some(0x6000_3000));
    assert!(!fixture.0.domains[0].vcpu.segments_dirty);
}

#[test]
fn a_lone_domains_long_hypercall_goes_on_past_its_slice_without_a_switch() {
    let mut fixture = boot(1);
    let buffer = fixture.1.rdi;
    // A timer due makes the write stop at its preemption points.
    hypercall(&mut fixture, Hypercall::SET_TIMER_OP, [1_000_000, 0, 0, 0]);
    fixture.0.platform.tsc = super::tests::SLICE + 1;
    let step = hypercall(&mut fixture, Hypercall::CONSOLE_IO, [0, 4096, buffer, 0]);
    let (system, frame) = &mut fixture;
    let mut step = step;
    while step == crate::system::Step::Continue {
        step = system.continue_hypercall(frame);
    }
    assert_eq!(frame.rax, 4096);
    let account = system.scheduler.account(0);
    assert_eq!((account.turns, account.preemptions), (1, 0), "nobody else could run: no preemption");
}
