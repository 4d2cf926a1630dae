//! The running system: boot sequence, the domain table, and the two Rust entry points
//! the assembly calls (`hypercall_dispatch`, `trap_dispatch`).

use crate::machine::{boot, console, cpu, descriptors, entry, exit_device, extended_state, heap, memory, pvh};
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
use hypervisor::{archive, image, layout, scheduler};
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
    let mut system = System {
        domains: Vec::new(),
        current: 0,
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
                system.domains.push(domain);
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
    let mut first = system.domains[0].state;
    enter_domain(&mut system, 0);
    let cycles = cpu::rdtsc().wrapping_sub(entry_tsc);
    hvprintln!("boot: first guest instruction {cycles} cycles after hypervisor entry");
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
    Ok(Domain {
        id,
        name: spec.image.clone(),
        state,
        vcpu: Vcpu::new(),
        memory: Some(built.memory),
        extended_state: extended_state::Area::new(&system.extended_state),
    })
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
    match features.tsc_khz {
        Some((khz, source)) => hvprintln!("tsc: {khz} kHz ({source})"),
        None => hvprintln!("tsc: frequency unknown (no cpuid leaf 0x40000010/0x15/0x16); times in cycles"),
    }
}

/// Makes `index` the running domain: its extended state, segment bases and the root of
/// its vCPU's mode are loaded. The outgoing domain's extended state must have been saved
/// (see [`leave_current`]).
pub(crate) fn enter_domain(system: &mut System, index: usize) {
    system.current = index;
    let method = system.extended_state;
    let domain = &mut system.domains[index];
    domain.extended_state.restore(&method);
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
pub(crate) fn finish_return(mut guard: spin::MutexGuard<'_, Option<System>>, frame: &mut TrapFrame) -> u64 {
    loop {
        if let Some(path) = frame.prepare_return() {
            return path as u64;
        }
        let system = guard.as_mut().expect("system installed");
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
    if let Some(memory) = system.domains[system.current].memory.take() {
        memory.destroy(&mut DirectMap, &mut *FRAMES.lock());
    }
    system.outcomes.push(outcome);
}

/// The domain after the current one that still has memory (has not ended).
pub(crate) fn next_runnable(system: &System) -> Option<usize> {
    scheduler::next_runnable(system.domains.len(), system.current, |index| system.domains[index].memory.is_some())
}

/// The state of the next runnable domain (now current, its address space loaded), or
/// the end of the run when none is left.
pub(crate) fn next_frame_or_finish(mut guard: spin::MutexGuard<'_, Option<System>>) -> TrapFrame {
    let system = guard.as_mut().expect("system installed");
    match next_runnable(system) {
        Some(next) => {
            leave_current(system);
            enter_domain(system, next);
            let mut frame = system.domains[next].state;
            // The saved state came from a validated return or a new domain; keep the
            // invariant explicit anyway.
            if frame.prepare_return().is_none() {
                kill_current(system, "saved state has a non-canonical rip");
                drop(guard);
                return next_frame_or_finish(SYSTEM.lock());
            }
            frame
        }
        None => {
            let system = guard.take().expect("system installed");
            drop(guard);
            finish(system)
        }
    }
}

/// Prints the summary and ends the run with the summarized exit status.
fn finish(system: System) -> ! {
    let free_now = FRAMES.lock().free_count();
    let count = |wanted: fn(&Outcome) -> bool| system.outcomes.iter().filter(|outcome| wanted(outcome)).count();
    hvprintln!(
        "summary: {} domains: {} poweroff, {} crash, {} killed, {} refused; frames free {} at start, {} at end",
        system.outcomes.len(),
        count(|outcome| matches!(outcome, Outcome::Poweroff(_))),
        count(|outcome| matches!(outcome, Outcome::Crash(_))),
        count(|outcome| matches!(outcome, Outcome::Killed)),
        count(|outcome| matches!(outcome, Outcome::Refused)),
        system.frames_free_at_start,
        free_now
    );
    if free_now != system.frames_free_at_start {
        hvprintln!("frame leak: {} frames not returned", system.frames_free_at_start.abs_diff(free_now));
    }
    let status = outcome::exit_status(system.outcomes.iter().copied());
    hvprintln!("exit status {}: {}", status.0, status.describe());
    exit_device::exit(status)
}
