//! The running system: boot sequence, the domain table, and the two Rust entry points
//! the assembly calls (`hypercall_dispatch`, `trap_dispatch`).

use crate::machine::{boot, console, cpu, descriptors, entry, exit_device, heap, memory, pvh};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use hypercall_abi::exit::ExitStatus;
use hypercall_abi::ABI_VERSION;
use hypervisor::command_line::{self, DomainSpec};
use hypervisor::domain_builder::{self, BuiltDomain};
use hypervisor::frame_allocator::{Frame, FrameAllocator};
use hypervisor::guest_memory::{self, GuestFault};
use hypervisor::hypercall::{self, Disposition, Guest};
use hypervisor::outcome::{self, Outcome};
use hypervisor::trap_frame::{ReturnPath, TrapFrame};
use hypervisor::{archive, exception, image, layout, scheduler};
use memory::DirectMap;
use spin::Mutex;
use x86_64::registers::control::{Cr3, Cr3Flags};
use x86_64::structures::paging::PhysFrame;
use x86_64::PhysAddr;

/// Frames above this are not managed (the frame allocator's bitmap covers 4 GiB).
const MANAGED_LIMIT: u64 = (hypervisor::frame_allocator::MAX_FRAMES as u64) * 4096;
/// Low memory holds firmware structures; domains never get it.
const LOW_MEMORY_END: u64 = 1 << 20;

static FRAMES: Mutex<FrameAllocator> = Mutex::new(FrameAllocator::new());
static SYSTEM: Mutex<Option<System>> = Mutex::new(None);

extern "C" {
    static __image_end: u8;
}

struct Domain {
    id: u32,
    name: String,
    state: TrapFrame,
    memory: Option<BuiltDomain>,
}

struct System {
    domains: Vec<Domain>,
    current: usize,
    outcomes: Vec<Outcome>,
    hypervisor_root: Frame,
    frames_free_at_start: u64,
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
    cpu::enable_hypercall_entry(
        entry::hypercall_entry_address(),
        selectors.kernel_code,
        selectors.kernel_data,
        selectors.user_code,
        selectors.user_data,
    );

    print_banner(&features, ram_bytes);

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
                    "d{} {}: started: {} pages, entry {:#x}, args '{}'",
                    domain.id,
                    domain.name,
                    spec.memory_pages,
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
    switch_address_space(&system.domains[0]);
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
        id,
        &spec.args,
    )
    .map_err(|error| format!("{error}"))?;
    let state = TrapFrame::new_guest(built.entry, built.start_info, built.stack_top);
    Ok(Domain { id, name: spec.image.clone(), state, memory: Some(built) })
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

fn switch_address_space(domain: &Domain) {
    if let Some(memory) = &domain.memory {
        load_root(memory.space.root());
    }
}

fn load_root(root: Frame) {
    let frame = PhysFrame::containing_address(PhysAddr::new(root.address()));
    // SAFETY: every root the hypervisor loads carries its own mappings in slots
    // 256..272 (copied from the hypervisor's root), so the code, stack and data in use
    // stay mapped across the switch.
    unsafe { Cr3::write(frame, Cr3Flags::empty()) };
}

/// The calling domain, as hypercall handlers see it.
struct CallingDomain<'a> {
    id: u32,
    memory: &'a BuiltDomain,
}

impl Guest for CallingDomain<'_> {
    fn read(&self, address: u64, buffer: &mut [u8]) -> Result<(), GuestFault> {
        guest_memory::copy_from_guest(&DirectMap, &self.memory.space, address, buffer)
    }

    fn console_write(&mut self, bytes: &[u8]) {
        console::write_domain(self.id, bytes);
    }
}

/// Rust side of the `syscall` entry. Returns how to go back to the guest.
#[no_mangle]
extern "C" fn hypercall_dispatch(frame: &mut TrapFrame) -> u64 {
    handle_hypercall(SYSTEM.lock(), frame)
}

/// One hypercall, from either entry (`syscall` or the trapping `ud2; "rf"`).
fn handle_hypercall(mut guard: spin::MutexGuard<'_, Option<System>>, frame: &mut TrapFrame) -> u64 {
    let system = guard.as_mut().expect("hypercalls arrive only after boot installed the system");
    let domain = &system.domains[system.current];
    let Some(memory) = domain.memory.as_ref() else {
        unreachable!("the running domain always has memory");
    };
    let mut caller = CallingDomain { id: domain.id, memory };
    match hypercall::dispatch(frame.rax, frame.hypercall_arguments(), &mut caller) {
        Disposition::Return(value) => {
            frame.rax = value as u64;
            finish_return(guard, frame)
        }
        Disposition::Yield => {
            frame.rax = 0;
            let current = system.current;
            system.domains[current].state = *frame;
            let next = next_runnable(system).expect("the caller itself is runnable");
            if next != current {
                system.current = next;
                *frame = system.domains[next].state;
                switch_address_space(&system.domains[next]);
            }
            finish_return(guard, frame)
        }
        Disposition::Shutdown(outcome) => {
            let (id, name) = (domain.id, domain.name.clone());
            match outcome {
                Outcome::Poweroff(code) => hvprintln!("d{id} {name}: exited: poweroff code {code}"),
                Outcome::Crash(code) => hvprintln!("d{id} {name}: exited: crash code {code}"),
                Outcome::Killed | Outcome::Refused => {}
            }
            end_current(system, outcome);
            *frame = next_frame_or_finish(guard);
            ReturnPath::Iret as u64
        }
    }
}

/// Rust side of every exception and interrupt.
#[no_mangle]
extern "C" fn trap_dispatch(frame: &mut TrapFrame) -> u64 {
    let name = exception::name(frame.vector);
    if !frame.from_guest() {
        panic!(
            "hypervisor {} (vector {}) at rip {:#x} error {:#x} cr2 {:#x}",
            name,
            frame.vector,
            frame.rip,
            frame.error_code,
            cpu::fault_address()
        );
    }
    match frame.vector {
        6 => {
            let guard = SYSTEM.lock();
            if is_trapping_hypercall(&guard, frame) {
                frame.rip += hypercall_abi::hypercall::TRAPPING_HYPERCALL.len() as u64;
                handle_hypercall(guard, frame)
            } else {
                kill_for_exception(guard, frame)
            }
        }
        // Not caused by the guest: nothing to deliver yet, resume it.
        2 | 32..=255 => {
            let guard = SYSTEM.lock();
            finish_return(guard, frame)
        }
        18 => panic!("machine check while running a guest at rip {:#x}", frame.rip),
        _ => kill_for_exception(SYSTEM.lock(), frame),
    }
}

/// Kills the current domain for the exception in `frame` (SPEC.md §12.2) and continues
/// with the next domain.
fn kill_for_exception(mut guard: spin::MutexGuard<'_, Option<System>>, frame: &mut TrapFrame) -> u64 {
    let system = guard.as_mut().expect("guests run only after boot installed the system");
    let cr2 = if frame.vector == 14 { cpu::fault_address() } else { 0 };
    let reason = format!(
        "{} at rip {:#x} error {:#x} cr2 {:#x}",
        exception::name(frame.vector),
        frame.rip,
        frame.error_code,
        cr2
    );
    kill_current(system, &reason);
    *frame = next_frame_or_finish(guard);
    ReturnPath::Iret as u64
}

/// Does the #UD in `frame` come from the trapping hypercall sequence? Read through the
/// checked accessor: the bytes are the guest's and may be anywhere.
fn is_trapping_hypercall(system: &Option<System>, frame: &TrapFrame) -> bool {
    let Some(system) = system.as_ref() else { return false };
    let Some(memory) = system.domains[system.current].memory.as_ref() else { return false };
    let mut bytes = [0u8; 4];
    guest_memory::copy_from_guest(&DirectMap, &memory.space, frame.rip, &mut bytes).is_ok()
        && bytes == hypercall_abi::hypercall::TRAPPING_HYPERCALL
}

/// Validates `frame` for return to the current domain; a frame that cannot be returned
/// to safely kills its domain and the next one runs instead.
fn finish_return(mut guard: spin::MutexGuard<'_, Option<System>>, frame: &mut TrapFrame) -> u64 {
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

fn kill_current(system: &mut System, reason: &str) {
    let domain = &system.domains[system.current];
    hvprintln!("d{} {}: killed: {}", domain.id, domain.name, reason);
    end_current(system, Outcome::Killed);
}

/// Releases the current domain's memory and records how it ended.
fn end_current(system: &mut System, outcome: Outcome) {
    let hypervisor_root = system.hypervisor_root;
    // Leave the dying address space before its tables are freed.
    load_root(hypervisor_root);
    if let Some(memory) = system.domains[system.current].memory.take() {
        domain_builder::destroy(&mut DirectMap, &mut *FRAMES.lock(), memory);
    }
    system.outcomes.push(outcome);
}

/// The domain after the current one that still has memory (has not ended).
fn next_runnable(system: &System) -> Option<usize> {
    scheduler::next_runnable(system.domains.len(), system.current, |index| system.domains[index].memory.is_some())
}

/// The state of the next runnable domain (now current, its address space loaded), or
/// the end of the run when none is left.
fn next_frame_or_finish(mut guard: spin::MutexGuard<'_, Option<System>>) -> TrapFrame {
    let system = guard.as_mut().expect("system installed");
    match next_runnable(system) {
        Some(next) => {
            system.current = next;
            switch_address_space(&system.domains[next]);
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
