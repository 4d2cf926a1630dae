//! The policy half of boot: reading the command line, building a domain for each image
//! the boot archive and command line name, and running the first one. The machine half
//! (descriptor tables, memory map, devices) is the binary's.

use crate::boot::archive;
use crate::boot::command_line::{self, CommandLine, DomainSpec};
use crate::console::input::InputRing;
use crate::domain::builder;
use crate::domain::outcome::Outcome;
use crate::domain::vcpu::Vcpu;
use crate::domain::{image, layout};
use crate::event::upcall;
use crate::hypercall::guest::POLL_PORTS_MAX;
use crate::platform::{say, Platform};
use crate::sched::policy::Reason;
use crate::system::Wait;
use crate::system::{Domain, Step, System};
use crate::trap::frame::TrapFrame;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use hypercall_abi::event::DOMAIN_SELF;
use hypercall_abi::exit::ExitStatus;
use hypercall_abi::ABI_VERSION;

/// The time slice of the round-robin scheduler unless `slice=` says otherwise (SPEC.md
/// §20.1).
pub const DEFAULT_SLICE_MS: u64 = 10;

/// Parses the command line, reporting what it ignores, and says the time slice.
pub fn read_command_line(platform: &mut impl Platform, text: &str) -> (CommandLine, u64) {
    let command_line = command_line::parse(text);
    for unknown in &command_line.unknown {
        say!(*platform, "ignoring unknown command-line option '{unknown}'");
    }
    for invalid in &command_line.invalid {
        say!(*platform, "ignoring command-line option {invalid}");
    }
    let slice_ms = command_line.slice_ms.unwrap_or(DEFAULT_SLICE_MS);
    if slice_ms != DEFAULT_SLICE_MS {
        say!(*platform, "scheduler: slice {slice_ms} ms (slice=)");
    }
    (command_line, slice_ms)
}

/// Why a domain's `module=` cannot be given to it.
enum ModuleProblem<'a> {
    /// No archive member has the name.
    Missing(&'a str),
    /// The member holds no bytes: nothing a guest could tell from no module at all.
    Empty(&'a str),
}

/// The bytes of `spec`'s module (`module=`) among `members` (empty when it names none).
fn module_of<'a, 'b>(spec: &'a DomainSpec, members: &[archive::Member<'b>]) -> Result<&'b [u8], ModuleProblem<'a>> {
    let Some(name) = spec.module.as_deref() else { return Ok(&[]) };
    match members.iter().find(|member| member.name == name) {
        None => Err(ModuleProblem::Missing(name)),
        Some(member) if member.bytes.is_empty() => Err(ModuleProblem::Empty(name)),
        Some(member) => Ok(member.bytes),
    }
}

/// The boot module (the guest-image archive), as the machine found it.
pub enum BootModule<'a> {
    /// Its bytes.
    Present(&'a [u8]),
    /// It lies outside usable RAM.
    OutsideRam,
    /// There is none.
    Missing,
}

impl<P: Platform> System<P> {
    /// Builds the domains `specs` names (every archive member when it names none) from
    /// the archive in `module`; a domain that cannot be built is refused. Without any
    /// domain to run, the run ends: the summary is printed and `Err` holds the status.
    pub fn load_domains(
        &mut self,
        module: BootModule<'_>,
        specs: Vec<Result<DomainSpec, command_line::SpecError>>,
    ) -> Result<(), ExitStatus> {
        let archive_bytes = match module {
            BootModule::Present(bytes) => bytes,
            BootModule::OutsideRam => {
                say!(self.platform, "the boot module lies outside usable RAM; cannot read guest images");
                return Err(self.finish());
            }
            BootModule::Missing => {
                say!(
                    self.platform,
                    "no boot module: pass guest images as a tar archive with -initrd (cargo xtask run does this)"
                );
                return Err(self.finish());
            }
        };
        let members = match archive::members(archive_bytes) {
            Ok(members) => members,
            Err(error) => {
                say!(self.platform, "boot module is not a usable guest archive: {error}");
                return Err(self.finish());
            }
        };

        let specs: Vec<Result<DomainSpec, String>> = if specs.is_empty() {
            members
                .iter()
                .map(|member| {
                    Ok(DomainSpec {
                        image: String::from(member.name),
                        memory_pages: command_line::DEFAULT_MEMORY_PAGES,
                        max_pages: command_line::DEFAULT_MEMORY_PAGES,
                        args: String::new(),
                        module: None,
                    })
                })
                .collect()
        } else {
            specs.into_iter().map(|spec| spec.map_err(|error| format!("{error}"))).collect()
        };

        for spec in specs {
            let spec = match spec {
                Ok(spec) => spec,
                Err(reason) => {
                    say!(self.platform, "refused domain specification: {reason}");
                    self.outcomes.push(Outcome::Refused);
                    continue;
                }
            };
            let names = || members.iter().map(|member| member.name).collect::<Vec<&str>>().join(", ");
            let Some(member) = members.iter().find(|member| member.name == spec.image) else {
                say!(self.platform, "refused {}: no such image in the boot archive (it has: {})", spec.image, names());
                self.outcomes.push(Outcome::Refused);
                continue;
            };
            let module = match module_of(&spec, &members) {
                Ok(module) => module,
                Err(ModuleProblem::Missing(name)) => {
                    say!(
                        self.platform,
                        "refused {}: no module '{name}' in the boot archive (it has: {})",
                        spec.image,
                        names()
                    );
                    self.outcomes.push(Outcome::Refused);
                    continue;
                }
                Err(ModuleProblem::Empty(name)) => {
                    say!(
                        self.platform,
                        "refused {}: module '{name}' is empty; a module holds at least one byte",
                        spec.image
                    );
                    self.outcomes.push(Outcome::Refused);
                    continue;
                }
            };
            let id = self.domains.len() as u32 + 1;
            // Event channels name this domain by id; DOMAIN_SELF and above are not ids.
            if u64::from(id) >= DOMAIN_SELF {
                say!(
                    self.platform,
                    "refused {}: domain id {id} would reach {DOMAIN_SELF:#x} (DOMAIN_SELF)",
                    spec.image
                );
                self.outcomes.push(Outcome::Refused);
                continue;
            }
            match self.create_domain(id, &spec, member.bytes, module) {
                Ok(domain) => {
                    let module_note = match &spec.module {
                        Some(name) => format!(", module {name} ({} bytes)", module.len()),
                        None => String::new(),
                    };
                    say!(
                        self.platform,
                        "d{} {}: started: {} pages (max {}), entry {:#x}, args '{}'{module_note}",
                        domain.id,
                        domain.name,
                        spec.memory_pages,
                        spec.max_pages,
                        domain.state.rip,
                        spec.args
                    );
                    let index = self.scheduler.add();
                    self.events.add_domain(domain.id);
                    debug_assert_eq!(index, self.domains.len());
                    self.domains.push(domain);
                    self.never_entered += 1;
                }
                Err(reason) => {
                    say!(self.platform, "refused {}: {reason}", spec.image);
                    self.outcomes.push(Outcome::Refused);
                }
            }
        }
        if self.domains.is_empty() {
            return Err(self.finish());
        }
        Ok(())
    }

    fn create_domain(
        &mut self,
        id: u32,
        spec: &DomainSpec,
        bytes: &[u8],
        module: &[u8],
    ) -> Result<Domain<P::ExtendedState>, String> {
        let load = image::validate(bytes, ABI_VERSION).map_err(|error| format!("{error}"))?;
        let plan = layout::plan(&load, spec.memory_pages, module.len() as u64).map_err(|error| format!("{error}"))?;
        let built = builder::build(
            &mut self.memory,
            &mut *self.frames.lock(),
            self.hypervisor_root,
            bytes,
            &load,
            &plan,
            spec.memory_pages,
            spec.max_pages,
            id,
            &spec.args,
            module,
        )
        .map_err(|error| format!("{error}"))?;
        let state = TrapFrame::new_guest(built.entry, built.start_info, built.stack_top);
        let shared = built.memory.shared_info_frame();
        upcall::init(&mut self.memory, shared);
        self.write_wallclock(shared);
        self.write_time_info(shared);
        Ok(Domain {
            id,
            name: spec.image.clone(),
            state,
            vcpu: Vcpu::new(),
            memory: Some(built.memory),
            extended_state: self.platform.new_extended_state(),
            wait: Wait::Nothing,
            poll_ports: [0; POLL_PORTS_MAX],
            timer_expired: false,
            entered: false,
            input: InputRing::new(),
            continuation: None,
        })
    }

    /// Makes the first domain the running one (with the console focus, when console
    /// input works) and returns its state: the machine installs the system, then calls
    /// [`Self::first_return`] with it.
    pub fn start(&mut self, console_input_ready: bool) -> TrapFrame {
        if console_input_ready {
            self.initial_focus();
        }
        let now = self.platform.read_tsc();
        let first_index = self.scheduler.switch(Reason::Yield, now).expect("a domain was just added");
        let first = self.domains[first_index].state;
        self.enter_domain(first_index);
        let cycles = self.platform.read_tsc().wrapping_sub(self.entry_tsc);
        say!(self.platform, "boot: first guest instruction {cycles} cycles after hypervisor entry");
        // The first domain's slice end, like every other return to a guest: a first
        // domain that never traps must still be preempted (SPEC.md §20.1).
        self.rearm();
        first
    }

    /// Validates the first domain's state for its first entry.
    pub fn first_return(&mut self, frame: &mut TrapFrame) -> Step {
        match frame.prepare_return() {
            Some(path) => Step::Resume(path),
            // Entry points were validated as canonical with the image; unreachable in
            // practice, but a bad entry must not take the hypervisor down.
            None => self.kill_and_continue(frame, "entry point is not canonical"),
        }
    }
}
