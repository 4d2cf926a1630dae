//! The running system: boot sequence, the domain table, and the two Rust entry points
//! the assembly calls (`hypercall_dispatch`, `trap_dispatch`).

use crate::machine::apic::CONSOLE_VECTOR;
use crate::machine::{apic, boot, console, cpu, descriptors, entry, exit_device, extended_state, heap, ioapic, memory, pit, pvh, rtc};
use crate::wakeups::{self, Wait, Wakeups};
use hypercall_abi::shared_info::SharedInfo;
use hypervisor::event_channel::EventChannels;
use hypervisor::paging::FrameMemory;
use hypervisor::time::{self, Clock, Timers};
use hypervisor::upcall;
use zerocopy::IntoBytes;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use hypercall_abi::exit::ExitStatus;
use hypercall_abi::ABI_VERSION;
use hypervisor::command_line::{self, DomainSpec};
use hypervisor::domain_builder;
use hypervisor::domain_memory::DomainMemory;
use hypervisor::frame_allocator::{Frame, FrameAllocator};
use hypervisor::outcome::{self, Outcome};
use hypervisor::paging::AddressSpace;
use hypervisor::trap_frame::TrapFrame;
use hypervisor::vcpu::{Mode, Vcpu};
use hypervisor::scheduler::{Reason, Scheduler};
use hypervisor::console_input::{EscapeDecoder, InputRing};
use crate::input_focus;
use hypercall_abi::event::DOMAIN_SELF;
use hypervisor::{archive, image, layout};
use memory::DirectMap;
use core::sync::atomic::{AtomicU64, Ordering};
use spin::Mutex;
use x86_64::registers::control::{Cr3, Cr3Flags};
use x86_64::structures::paging::PhysFrame;
use x86_64::PhysAddr;

/// Frames above this are not managed (the frame allocator's bitmap covers 4 GiB).
const MANAGED_LIMIT: u64 = (hypervisor::frame_allocator::MAX_FRAMES as u64) * 4096;
/// Low memory holds firmware structures; domains never get it.
const LOW_MEMORY_END: u64 = 1 << 20;

pub(crate) static FRAMES: Mutex<FrameAllocator> = Mutex::new(FrameAllocator::new());
pub(crate) static SYSTEM: Mutex<Option<System>> = Mutex::new(None);
/// The root CR3 holds, so unchanged roots are not reloaded (a CR3 write is a trap on
/// some hosts). Every change to a space that is not loaded is followed by a CR3 write
/// before that space is used, so skipping same-root writes never leaves stale TLB entries.
static LOADED_ROOT: AtomicU64 = AtomicU64::new(0);

extern "C" {
    static __image_end: u8;
}

pub(crate) struct Domain {
    pub id: u32,
    pub name: String,
    /// Saved registers while not running.
    pub state: TrapFrame,
    pub vcpu: Vcpu,
    /// `None` once the domain has ended.
    pub memory: Option<DomainMemory>,
    pub extended_state: extended_state::Area,
    /// What it sleeps for, if blocked.
    pub wait: Wait,
    /// Whether it has run at all (for the boot line that all domains have).
    pub entered: bool,
    /// Console input not yet read (SPEC.md §21).
    pub input: InputRing,
}

impl Domain {
    /// The address space of the mode the vCPU is in.
    pub fn current_space(&self) -> Option<&AddressSpace> {
        let memory = self.memory.as_ref()?;
        match self.vcpu.mode {
            Mode::Kernel => Some(memory.kernel_space()),
            Mode::User => memory.user_space(),
        }
    }

    /// CR3 for the mode the vCPU is in.
    pub fn current_root(&self) -> Option<Frame> {
        let memory = self.memory.as_ref()?;
        match self.vcpu.mode {
            Mode::Kernel => Some(memory.kernel_root()),
            Mode::User => memory.user_root(),
        }
    }
}

pub(crate) struct System {
    pub domains: Vec<Domain>,
    pub current: usize,
    pub outcomes: Vec<Outcome>,
    pub hypervisor_root: Frame,
    pub frames_free_at_start: u64,
    pub extended_state: extended_state::Method,
    /// Who runs next; domain `i` is scheduler index `i`.
    pub scheduler: Scheduler,
    /// Every domain's event-channel ports.
    pub events: EventChannels,
    /// TSC to nanoseconds since boot (SPEC.md §19).
    pub clock: Clock,
    /// Each domain's `set_timer_op` deadline.
    pub timers: Timers,
    /// Each polling domain's `sched_op(POLL)` timeout.
    pub poll_deadlines: Timers,
    /// (wc_sec, wc_nsec): the wallclock at system time 0, from the RTC.
    pub wallclock: (u32, u32),
    /// The TSC at hypervisor entry, and how many domains have not run yet: when the last
    /// one first runs, the boot line says how long it took to start them all.
    pub entry_tsc: u64,
    pub never_entered: usize,
    /// TSC ticks per second (for the summary's milliseconds).
    pub tsc_hz: u64,
    /// The domain console input goes to, and the Ctrl-] escape state (SPEC.md §21.3).
    pub focus: Option<u32>,
    pub escape: EscapeDecoder,
}

pub fn boot(start_info_address: u64) -> ! {
    // Read while the boot identity map (where boot.s keeps it) still exists.
    let entry_tsc = boot::entry_tsc();
    console::init();
    cpu::mask_legacy_interrupts();
    heap::init();
    let selectors = descriptors::init();
    let features = cpu::detect();

    let boot_info = match pvh::read_boot_info(start_info_address) {
        Ok(info) => info,
        Err(reason) => {
            hvprintln!("cannot boot: {reason}");
            exit_device::exit(ExitStatus::NOTHING_TO_RUN);
        }
    };

    // Frames: all RAM above 1 MiB, minus the image and the boot modules.
    let mut ram_end = 0;
    let mut ram_bytes = 0;
    {
        let mut frames = FRAMES.lock();
        for region in boot_info.memory_map.iter().filter(|region| region.kind == pvh::RAM) {
            ram_bytes += region.end - region.start;
            let start = region.start.max(LOW_MEMORY_END);
            let end = region.end.min(MANAGED_LIMIT);
            if start < end {
                frames.add_region(start, end);
                ram_end = ram_end.max(end);
            }
        }
        // Address of a linker symbol, not dereferenced.
        let image_end = &raw const __image_end as u64 - memory::DIRECT_MAP_BASE;
        frames.reserve(0, image_end);
        frames.reserve(boot_info.start_info_range.0, boot_info.start_info_range.1);
        for module in &boot_info.modules {
            frames.reserve(module.start, module.start.saturating_add(module.size));
        }
    }
    // NX must be on before any table that uses the bit is live.
    cpu::enable_protections(&features);
    let hypervisor_root = memory::install_hypervisor_tables(&mut FRAMES.lock(), ram_end, features.global_pages);
    grow_heap();
    cpu::enable_hypercall_entry(
        entry::hypercall_entry_address(),
        selectors.kernel_code,
        selectors.kernel_data,
        selectors.user_code,
        selectors.user_data,
    );

    let extended_state = extended_state::enable(features.xsave && !cpu::under_kvm());
    print_banner(&features, ram_bytes);
    let (tsc_hz, tsc_source) = match features.tsc_khz {
        Some((khz, source)) => (khz * 1000, source),
        None => match pit::calibrate_tsc() {
            Some(calibration) => (calibration.hz, calibration.source),
            None => {
                hvprintln!("cannot boot: no TSC frequency (no cpuid leaf 0x40000010/0x15/0x16 and no PIT to calibrate against)");
                exit_device::exit(ExitStatus::HYPERVISOR_PANIC);
            }
        },
    };
    let Some(clock) = Clock::new(entry_tsc, tsc_hz) else {
        hvprintln!("cannot boot: TSC frequency {tsc_hz} Hz is out of range");
        exit_device::exit(ExitStatus::HYPERVISOR_PANIC);
    };
    if features.tsc_khz.is_none() {
        hvprintln!("tsc: {} kHz ({tsc_source}; no cpuid leaf 0x40000010/0x15/0x16)", tsc_hz / 1000);
    }
    match apic::init(&mut FRAMES.lock(), hypervisor_root, tsc_hz) {
        Ok(description) => hvprintln!("apic: {description}"),
        Err(reason) => {
            hvprintln!("cannot boot: local APIC: {reason}");
            exit_device::exit(ExitStatus::HYPERVISOR_PANIC);
        }
    }
    let console_input_ready = match enable_console_input(hypervisor_root) {
        Ok(()) => true,
        Err(reason) => {
            hvprintln!("console input: unavailable ({reason}); domains read none");
            false
        }
    };
    let wallclock = match rtc::read_unix_seconds() {
        Some(seconds) => time::wallclock_base(seconds, clock.now_ns(cpu::rdtsc())),
        None => {
            hvprintln!("rtc: not readable; the wallclock reads 0");
            (0, 0)
        }
    };
    hvprintln!(
        "extended state: {}, {} bytes per domain, switched eagerly ({} cycles per save+restore)",
        extended_state.describe(),
        extended_state.area_size(),
        extended_state::measure_switch_cost(&extended_state)
    );

    let command_line = command_line::parse(&boot_info.command_line);
    for unknown in &command_line.unknown {
        hvprintln!("ignoring unknown command-line option '{unknown}'");
    }
    for invalid in &command_line.invalid {
        hvprintln!("ignoring command-line option {invalid}");
    }
    let slice_ms = command_line.slice_ms.unwrap_or(DEFAULT_SLICE_MS);
    if slice_ms != DEFAULT_SLICE_MS {
        hvprintln!("scheduler: slice {slice_ms} ms (slice=)");
    }
    let mut system = System {
        domains: Vec::new(),
        current: 0,
        scheduler: Scheduler::new(tsc_hz / 1000 * slice_ms),
        tsc_hz,
        events: EventChannels::new(),
        clock,
        timers: Timers::new(),
        poll_deadlines: Timers::new(),
        wallclock,
        entry_tsc,
        never_entered: 0,
        focus: None,
        escape: EscapeDecoder::new(),
        outcomes: Vec::new(),
        hypervisor_root,
        frames_free_at_start: FRAMES.lock().free_count(),
        extended_state,
    };

    let archive_bytes = match boot_info.modules.first() {
        Some(module) if module.start.checked_add(module.size).is_some_and(|end| end <= ram_end) => {
            // SAFETY: the module lies in RAM below ram_end (checked), which the direct map
            // covers; its frames were reserved above, so nothing else will write them.
            unsafe { memory::physical_slice(module.start, module.size as usize) }
        }
        Some(_) => {
            hvprintln!("the boot module lies outside usable RAM; cannot read guest images");
            finish(system);
        }
        None => {
            hvprintln!("no boot module: pass guest images as a tar archive with -initrd (cargo xtask run does this)");
            finish(system);
        }
    };
    let members = match archive::members(archive_bytes) {
        Ok(members) => members,
        Err(error) => {
            hvprintln!("boot module is not a usable guest archive: {error}");
            finish(system);
        }
    };

    let specs: Vec<Result<DomainSpec, String>> = if command_line.domains.is_empty() {
        members
            .iter()
            .map(|member| {
                Ok(DomainSpec {
                    image: String::from(member.name),
                    memory_pages: command_line::DEFAULT_MEMORY_PAGES,
                    max_pages: command_line::DEFAULT_MEMORY_PAGES,
                    args: String::new(),
                })
            })
            .collect()
    } else {
        command_line.domains.into_iter().map(|spec| spec.map_err(|error| format!("{error}"))).collect()
    };

    for spec in specs {
        let spec = match spec {
            Ok(spec) => spec,
            Err(reason) => {
                hvprintln!("refused domain specification: {reason}");
                system.outcomes.push(Outcome::Refused);
                continue;
            }
        };
        let Some(member) = members.iter().find(|member| member.name == spec.image) else {
            let names: Vec<&str> = members.iter().map(|member| member.name).collect();
            hvprintln!("refused {}: no such image in the boot archive (it has: {})", spec.image, names.join(", "));
            system.outcomes.push(Outcome::Refused);
            continue;
        };
        let id = system.domains.len() as u32 + 1;
        // Event channels name this domain by id; DOMAIN_SELF and above are not ids.
        if u64::from(id) >= DOMAIN_SELF {
            hvprintln!("refused {}: domain id {id} would reach {DOMAIN_SELF:#x} (DOMAIN_SELF)", spec.image);
            system.outcomes.push(Outcome::Refused);
            continue;
        }
        match create_domain(&system, id, &spec, member.bytes) {
            Ok(domain) => {
                hvprintln!(
                    "d{} {}: started: {} pages (max {}), entry {:#x}, args '{}'",
                    domain.id,
                    domain.name,
                    spec.memory_pages,
                    spec.max_pages,
                    domain.state.rip,
                    spec.args
                );
                let index = system.scheduler.add();
                system.events.add_domain(domain.id);
                debug_assert_eq!(index, system.domains.len());
                system.domains.push(domain);
                system.never_entered += 1;
            }
            Err(reason) => {
                hvprintln!("refused {}: {reason}", spec.image);
                system.outcomes.push(Outcome::Refused);
            }
        }
    }

    if system.domains.is_empty() {
        finish(system);
    }
    if console_input_ready {
        input_focus::initial_focus(&mut system);
    }
    let first_index = system.scheduler.switch(Reason::Yield, cpu::rdtsc()).expect("a domain was just added");
    let mut first = system.domains[first_index].state;
    enter_domain(&mut system, first_index);
    let cycles = cpu::rdtsc().wrapping_sub(entry_tsc);
    hvprintln!("boot: first guest instruction {cycles} cycles after hypervisor entry");
    // The first domain's slice end, like every other return to a guest: a first domain
    // that never traps must still be preempted (SPEC.md §20.1).
    wakeups::rearm(&mut system);
    *SYSTEM.lock() = Some(system);
    match first.prepare_return() {
        Some(_) => entry::run_first(&first),
        // Entry points were validated as canonical with the image; unreachable in
        // practice, but a bad entry must not take the hypervisor down.
        None => {
            let mut guard = SYSTEM.lock();
            let system = guard.as_mut().expect("system installed above");
            kill_current(system, "entry point is not canonical");
            let frame = next_frame_or_finish(guard);
            entry::run_first(&frame)
        }
    }
}

/// Byte offset of `wc_version` in the shared-info page.
const WALLCLOCK_OFFSET: usize = core::mem::offset_of!(SharedInfo, wc_version);
/// Byte offset of `vcpu_info[0].time`.
const TIME_INFO_OFFSET: usize = core::mem::offset_of!(SharedInfo, vcpu_info) + core::mem::offset_of!(hypercall_abi::shared_info::VcpuInfo, time);

/// Writes a seqlocked block of the shared-info page at `offset`, whose first u32 is its
/// version: the version goes odd, `body(odd version)` writes the fields, the version goes
/// even again (SPEC.md §19.2, §19.3).
fn seqlock_write(shared: Frame, offset: usize, body: impl FnOnce(u32)) {
    let mut version = [0u8; 4];
    DirectMap.read(shared, offset, &mut version);
    let odd = u32::from_le_bytes(version) | 1;
    DirectMap.write(shared, offset, &odd.to_le_bytes());
    body(odd);
    DirectMap.write(shared, offset, &odd.wrapping_add(1).to_le_bytes());
}

/// Writes the wallclock (wc_sec, wc_nsec) under its version.
fn write_wallclock(shared: Frame, (seconds, nanoseconds): (u32, u32)) {
    seqlock_write(shared, WALLCLOCK_OFFSET, |_| {
        DirectMap.write(shared, WALLCLOCK_OFFSET + 4, &seconds.to_le_bytes());
        DirectMap.write(shared, WALLCLOCK_OFFSET + 8, &nanoseconds.to_le_bytes());
    });
}

/// Refreshes vCPU 0's time info under its version.
pub(crate) fn write_time_info(shared: Frame, clock: &Clock) {
    // The info carries the (odd) version in its first field, so the copy keeps it odd.
    seqlock_write(shared, TIME_INFO_OFFSET, |odd| {
        DirectMap.write(shared, TIME_INFO_OFFSET, clock.vcpu_time_info(cpu::rdtsc(), odd).as_bytes());
    });
}

fn create_domain(system: &System, id: u32, spec: &DomainSpec, bytes: &[u8]) -> Result<Domain, String> {
    let load = image::validate(bytes, ABI_VERSION).map_err(|error| format!("{error}"))?;
    let plan = layout::plan(&load, spec.memory_pages).map_err(|error| format!("{error}"))?;
    let built = domain_builder::build(
        &mut DirectMap,
        &mut *FRAMES.lock(),
        system.hypervisor_root,
        bytes,
        &load,
        &plan,
        spec.memory_pages,
        spec.max_pages,
        id,
        &spec.args,
    )
    .map_err(|error| format!("{error}"))?;
    let state = TrapFrame::new_guest(built.entry, built.start_info, built.stack_top);
    let shared = built.memory.shared_info_frame();
    upcall::init(&mut DirectMap, shared);
    write_wallclock(shared, system.wallclock);
    write_time_info(shared, &system.clock);
    Ok(Domain {
        id,
        name: spec.image.clone(),
        state,
        vcpu: Vcpu::new(),
        memory: Some(built.memory),
        extended_state: extended_state::Area::new(&system.extended_state),
        wait: Wait::Nothing,
        entered: false,
        input: InputRing::new(),
    })
}

/// Routes COM1's receive interrupt through the I/O APIC to [`CONSOLE_VECTOR`] on this
/// CPU and turns it on (SPEC.md §21.1). Until a domain has the focus, bytes are dropped.
fn enable_console_input(hypervisor_root: Frame) -> Result<(), &'static str> {
    ioapic::init(&mut FRAMES.lock(), hypervisor_root)?;
    ioapic::route_isa_irq(ioapic::COM1_IRQ, CONSOLE_VECTOR, apic::id())?;
    // The pin first: an edge while it is masked would be lost for good.
    ioapic::unmask(ioapic::COM1_IRQ);
    console::enable_receive_interrupt();
    Ok(())
}

/// Gives the heap its late region: contiguous 2 MiB blocks taken before any domain
/// exists, when the allocator's lowest free blocks are still consecutive.
fn grow_heap() {
    let blocks = heap::LATE_SIZE / (2 << 20);
    let mut frames = FRAMES.lock();
    let mut taken: Vec<Frame> = Vec::new();
    for _ in 0..blocks {
        match frames.allocate_large() {
            Some(block) => taken.push(block),
            None => break,
        }
    }
    let contiguous = taken.len() as u64 == blocks
        && taken.windows(2).all(|pair| pair[1].address() == pair[0].address() + (2 << 20));
    if !contiguous {
        for block in taken {
            for index in 0..512 {
                let _ = frames.free(Frame::from_number(block.number() + index));
            }
        }
        hvprintln!("heap: no contiguous {} MiB for the late heap; domains are limited to the 1 MiB early heap", heap::LATE_SIZE >> 20);
        return;
    }
    let start = memory::virtual_address(taken[0].address()) as *mut u8;
    // SAFETY: the frames were just allocated (so nothing else owns them), are
    // contiguous (checked) and lie below ram_end, which the direct map covers read-write;
    // this runs once on the boot path.
    unsafe { heap::add_late_region(start) };
}

fn print_banner(features: &cpu::Features, ram_bytes: u64) {
    let frames = FRAMES.lock();
    hvprintln!(
        "ringfence {} ABI {}: {} MiB RAM, {} frames managed, {} free",
        env!("CARGO_PKG_VERSION"),
        ABI_VERSION,
        ram_bytes >> 20,
        frames.managed_count(),
        frames.free_count()
    );
    drop(frames);
    let mut in_use = String::new();
    for (present, name) in [
        (features.no_execute, "NX"),
        (features.smep, "SMEP"),
        (features.smap, "SMAP"),
        (features.pcid, "PCID"),
        (features.tsc_deadline, "TSC-deadline"),
        (features.xsave, "XSAVE"),
        (features.invariant_tsc, "invariant-TSC"),
    ] {
        in_use.push_str(if present { " +" } else { " -" });
        in_use.push_str(name);
    }
    hvprintln!("cpu:{in_use}");
    // Without a CPUID frequency, boot calibrates against the PIT and says so itself.
    if let Some((khz, source)) = features.tsc_khz {
        hvprintln!("tsc: {khz} kHz ({source})");
    }
}

/// The index of domain `id` among `domains`, if it is still live (ids start at 1).
pub(crate) fn live_index(domains: &[Domain], id: u32) -> Option<usize> {
    let index = (id as usize).checked_sub(1)?;
    domains.get(index).filter(|domain| domain.memory.is_some()).map(|_| index)
}

/// Makes `index` the running domain: its extended state, segment bases and the root of
/// its vCPU's mode are loaded. The outgoing domain's extended state must have been saved
/// (see [`leave_current`]).
pub(crate) fn enter_domain(system: &mut System, index: usize) {
    system.current = index;
    if !system.domains[index].entered {
        system.domains[index].entered = true;
        system.never_entered -= 1;
        if system.never_entered == 0 && system.domains.len() > 1 {
            let cycles = cpu::rdtsc().wrapping_sub(system.entry_tsc);
            hvprintln!("boot: all {} domains reached their first instruction {cycles} cycles after hypervisor entry", system.domains.len());
        }
    }
    let method = system.extended_state;
    let domain = &mut system.domains[index];
    domain.extended_state.restore(&method);
    if let Some(memory) = domain.memory.as_ref() {
        write_time_info(memory.shared_info_frame(), &system.clock);
    }
    load_segment_bases(&domain.vcpu);
    domain.vcpu.segments_dirty = false;
    if let Some(root) = domain.current_root() {
        load_root(root);
    }
}

/// Saves what the hardware holds of the running domain before another one runs.
pub(crate) fn leave_current(system: &mut System) {
    let method = system.extended_state;
    let domain = &mut system.domains[system.current];
    if domain.memory.is_some() {
        domain.extended_state.save(&method);
    }
}

/// FS base, and GS base of the vCPU's mode (the hypervisor never uses either).
pub(crate) fn load_segment_bases(vcpu: &Vcpu) {
    cpu::write_segment_bases(vcpu.fs_base, vcpu.gs_base());
}

pub(crate) fn load_root(root: Frame) {
    if LOADED_ROOT.swap(root.address(), Ordering::Relaxed) == root.address() {
        return;
    }
    let frame = PhysFrame::containing_address(PhysAddr::new(root.address()));
    // SAFETY: every root the hypervisor loads carries its own mappings in slots
    // 256..272 (copied from the hypervisor's root), so the code, stack and data in use
    // stay mapped across the switch.
    unsafe { Cr3::write(frame, Cr3Flags::empty()) };
}

/// Validates `frame` for return to the current domain; a frame that cannot be returned
/// to safely kills its domain and the next one runs instead.
pub(crate) fn finish_return(mut guard: spin::MutexGuard<'static, Option<System>>, frame: &mut TrapFrame) -> u64 {
    loop {
        let system = guard.as_mut().expect("system installed");
        let domain = &system.domains[system.current];
        // SPEC.md §18.4: every return to a guest delivers a pending, unmasked event first.
        if let Some(memory) = domain.memory.as_ref() {
            if upcall::upcall_due(&DirectMap, memory.shared_info_frame(), &domain.vcpu) {
                return crate::dispatch::deliver_upcall(guard, frame);
            }
        }
        wakeups::rearm(system);
        if let Some(path) = frame.prepare_return() {
            return path as u64;
        }
        kill_current(system, &format!("return to non-canonical rip {:#x} refused (XSA-7 guard)", frame.rip));
        *frame = next_frame_or_finish(guard);
        guard = SYSTEM.lock();
    }
}

pub(crate) fn kill_current(system: &mut System, reason: &str) {
    let domain = &system.domains[system.current];
    hvprintln!("d{} {}: killed: {}", domain.id, domain.name, reason);
    end_current(system, Outcome::Killed);
}

/// Releases the current domain's memory and records how it ended.
pub(crate) fn end_current(system: &mut System, outcome: Outcome) {
    let hypervisor_root = system.hypervisor_root;
    // Leave the dying address space before its tables are freed.
    load_root(hypervisor_root);
    let current = system.current;
    let id = system.domains[current].id;
    // Ports first: peers' ends change and their waiters wake while this page still exists.
    let System { domains, scheduler, events, timers, .. } = system;
    events.remove_domain(id, &mut Wakeups { domains, scheduler });
    timers.cancel(current);
    system.poll_deadlines.cancel(current);
    system.domains[current].wait = Wait::Nothing;
    if let Some(memory) = system.domains[current].memory.take() {
        memory.destroy(&mut DirectMap, &mut *FRAMES.lock());
    }
    input_focus::domain_ended(system, current);
    system.outcomes.push(outcome);
}

/// The time slice of the round-robin scheduler unless `slice=` says otherwise (SPEC.md
/// §20.1).
const DEFAULT_SLICE_MS: u64 = 10;

/// The state of the next runnable domain after the current one ended (now current, its
/// address space loaded), or the end of the run when none is left.
pub(crate) fn next_frame_or_finish(guard: spin::MutexGuard<'_, Option<System>>) -> TrapFrame {
    next_frame(guard, Reason::Ended)
}

/// Lets the scheduler pick who runs after the current domain stops for `reason`, and
/// returns that domain's state, ready to return to. When every live domain sleeps, the
/// CPU halts with interrupts on until a timer or console interrupt wakes one (SPEC.md
/// §20.1); when none is left, the run ends.
pub(crate) fn next_frame(mut guard: spin::MutexGuard<'_, Option<System>>, reason: Reason) -> TrapFrame {
    let mut reason = reason;
    let mut left = false;
    loop {
        let system = guard.as_mut().expect("system installed");
        let now = cpu::rdtsc();
        match system.scheduler.switch(reason, now) {
            Some(next) => {
                if next != system.current || left {
                    if !left {
                        leave_current(system);
                    }
                    enter_domain(system, next);
                }
                let mut frame = system.domains[next].state;
                // The saved state came from a validated return or a new domain; keep the
                // invariant explicit anyway.
                if frame.prepare_return().is_none() {
                    kill_current(system, "saved state has a non-canonical rip");
                    drop(guard);
                    return next_frame_or_finish(SYSTEM.lock());
                }
                return frame;
            }
            None if system.scheduler.live_count() == 0 => {
                let system = guard.take().expect("system installed");
                drop(guard);
                finish(system)
            }
            None => {
                if !left {
                    leave_current(system);
                    left = true;
                }
                wakeups::expire(system, now);
                if system.scheduler.runnable_count() == 0 {
                    wakeups::rearm(system);
                    drop(guard);
                    entry::idle_halt();
                    guard = SYSTEM.lock();
                }
                reason = Reason::Yield;
            }
        }
    }
}

/// Prints the summary and ends the run with the summarized exit status.
fn finish(system: System) -> ! {
    let free_now = FRAMES.lock().free_count();
    let count = |wanted: fn(&Outcome) -> bool| system.outcomes.iter().filter(|outcome| wanted(outcome)).count();
    hvprintln!(
        "summary: {} domains: {} poweroff, {} crash, {} killed, {} refused; frames free {} at start, {} at end; ports open 0 at start, {} at end",
        system.outcomes.len(),
        count(|outcome| matches!(outcome, Outcome::Poweroff(_))),
        count(|outcome| matches!(outcome, Outcome::Crash(_))),
        count(|outcome| matches!(outcome, Outcome::Killed)),
        count(|outcome| matches!(outcome, Outcome::Refused)),
        system.frames_free_at_start,
        free_now,
        system.events.open_ports()
    );
    let fairness = system.scheduler.fairness(|_| true);
    hvprintln!("scheduler: {}", fairness.display(system.tsc_hz));
    if free_now != system.frames_free_at_start {
        hvprintln!("frame leak: {} frames not returned", system.frames_free_at_start.abs_diff(free_now));
    }
    let status = outcome::exit_status(system.outcomes.iter().copied());
    hvprintln!("exit status {}: {}", status.0, status.describe());
    exit_device::exit(status)
}
