//! Driving QEMU (contract: "QEMU command line"): finding or installing it, choosing the
//! accelerator, assembling the command line, and running it with a timeout.

use crate::accel::{self, Accel, Choice, Measured};
use crate::error::{EXIT_NO_ENDING, EXIT_QEMU_REFUSED, EXIT_TIMEOUT};
use crate::{workspace, Error, Result};
use hypercall_abi::exit::ExitStatus;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use wait_timeout::ChildExt;

/// The QEMU binary.
pub const QEMU: &str = "qemu-system-x86_64";
/// The Debian package that provides it.
pub const QEMU_PACKAGE: &str = "qemu-system-x86";
/// Memory of the virtual machine (not of a domain).
pub const MACHINE_MEMORY: &str = "512M";

/// The QEMU machine type.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Machine {
    /// `-M microvm`: no firmware, fastest boot.
    #[default]
    Microvm,
    /// `-M q35`: a PC with firmware.
    Q35,
    /// `-M pc`: the older PC (i440FX) with firmware, where Xen and Linux were measured
    /// (`cargo xtask bench --kernel` runs all its columns on it).
    Pc,
}

impl Machine {
    /// The `-M` value.
    pub fn argument(self) -> &'static str {
        match self {
            Machine::Microvm => "microvm,x-option-roms=off,rtc=on",
            Machine::Q35 => "q35",
            Machine::Pc => "pc",
        }
    }
}

/// True if /dev/kvm opens for reading and writing.
pub fn kvm_usable() -> bool {
    std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok()
}

/// Refuses `--accel kvm` early where /dev/kvm does not open ([`accel::check_request`]).
pub fn check_accel_request(requested: Option<Accel>) -> Result<()> {
    accel::check_request(requested, kvm_usable())
}

/// Chooses the accelerator for runs of `hypervisor` with `qemu` ([`accel::choose`]). The
/// probe boots the built [`accel::PROBE_GUEST`] image under each accelerator, unless the
/// workspace's cache file holds this host's times.
pub fn choose_accel(requested: Option<Accel>, qemu: &Path, hypervisor: &Path) -> Result<Choice> {
    let fingerprint = accel::fingerprint(&describe_binary(qemu), &host_kernel(), &host_cpu());
    let (probe_guest, cache) = (workspace::probe_guest(), workspace::accel_probe_cache());
    let mut host = ProbingHost { qemu, hypervisor, probe_guest: &probe_guest, cache: &cache, fingerprint };
    accel::choose(requested, &mut host)
}

/// The host behind [`choose_accel`]: /dev/kvm, the cache file, real probes.
struct ProbingHost<'a> {
    qemu: &'a Path,
    hypervisor: &'a Path,
    probe_guest: &'a Path,
    cache: &'a Path,
    fingerprint: String,
}

/// How long one probe may take (a kvm-pvm host needs a few seconds, a loaded one more).
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);

impl ProbingHost<'_> {
    fn launch(&self, accel: Accel) -> std::result::Result<Launch, String> {
        let image = std::fs::read(self.probe_guest)
            .map_err(|error| format!("cannot read the probe guest {}: {error}", self.probe_guest.display()))?;
        let archive =
            crate::archive::build(&[(accel::PROBE_GUEST.to_string(), image)]).map_err(|error| error.message)?;
        let initrd = self.cache.with_extension("tar");
        write_archive(&initrd, &archive).map_err(|error| error.message)?;
        let mut domain = crate::cmdline::Domain::new(accel::PROBE_GUEST);
        domain.args = vec![accel::PROBE_FAULTS.to_string()];
        let append = crate::cmdline::command_line(&[domain], &[]).map_err(|error| error.message)?;
        Ok(Launch {
            qemu: self.qemu.to_path_buf(),
            hypervisor: self.hypervisor.to_path_buf(),
            initrd,
            append,
            accel,
            machine: Machine::Microvm,
            memory: MACHINE_MEMORY,
            extra: Vec::new(),
            timeout: PROBE_TIMEOUT,
        })
    }
}

impl accel::Host for ProbingHost<'_> {
    fn kvm_opens(&self) -> bool {
        kvm_usable()
    }

    fn cached(&self) -> Option<Measured> {
        accel::read_cache(&std::fs::read_to_string(self.cache).ok()?, &self.fingerprint)
    }

    fn probe(&mut self, accel: Accel) -> std::result::Result<Duration, String> {
        eprintln!("qemu: measuring {} with a probe guest ({} page faults) ...", accel.name(), accel::PROBE_FAULTS);
        let launch = self.launch(accel)?;
        let outcome = run(&launch, ConsoleMode::Capture).map_err(|error| error.message)?;
        accel::judge_probe(&outcome.output, &outcome.stderr, outcome.raw_exit, outcome.timed_out)?;
        Ok(outcome.wall)
    }

    fn remember(&mut self, measured: Measured) {
        // A cache that cannot be written only costs the next run another measurement.
        let _ = std::fs::write(self.cache, accel::write_cache(&self.fingerprint, measured));
    }
}

/// A binary named by its path, size and modification time (a QEMU upgrade changes them).
fn describe_binary(path: &Path) -> String {
    let metadata = std::fs::metadata(path).ok();
    let size = metadata.as_ref().map_or(0, std::fs::Metadata::len);
    let modified = metadata
        .and_then(|metadata| metadata.modified().ok())
        .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |since| since.as_secs());
    format!("{} {size} {modified}", path.display())
}

fn host_kernel() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string()
}

fn host_cpu() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        cpuinfo
            .lines()
            .find(|line| line.split(':').next().is_some_and(|key| key.trim() == name))
            .and_then(|line| line.split_once(':'))
            .map(|(_, value)| value.trim().to_string())
            .unwrap_or_default()
    };
    format!("{} / {}", field("vendor_id"), field("model name"))
}

/// `qemu-system-x86_64` from PATH.
pub fn find_qemu() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(QEMU)).find(|candidate| candidate.is_file())
}

/// Finds QEMU, installing it with apt-get when it is missing and we are root on a Debian
/// system; otherwise fails (exit 122) with the command that installs it.
pub fn ensure_qemu() -> Result<PathBuf> {
    if let Some(qemu) = find_qemu() {
        return Ok(qemu);
    }
    if crate::packages::apt_install(QEMU, QEMU_PACKAGE)? {
        return find_qemu().ok_or_else(|| {
            Error::environment(format!("{QEMU_PACKAGE} was installed but {QEMU} is still not in PATH"))
        });
    }
    Err(Error::environment(format!(
        "{QEMU} not found in PATH; install it with: sudo apt-get update && sudo apt-get install -y {QEMU_PACKAGE}"
    )))
}

/// Everything one QEMU run needs.
#[derive(Clone, Debug)]
pub struct Launch {
    /// The QEMU binary.
    pub qemu: PathBuf,
    /// The hypervisor image (`-kernel`).
    pub hypervisor: PathBuf,
    /// The boot archive (`-initrd`).
    pub initrd: PathBuf,
    /// The hypervisor command line (`-append`).
    pub append: String,
    /// Accelerator.
    pub accel: Accel,
    /// Machine type.
    pub machine: Machine,
    /// The machine's memory (`-m`): [`MACHINE_MEMORY`] unless a run needs another size.
    pub memory: &'static str,
    /// Extra QEMU arguments, appended last.
    pub extra: Vec<String>,
    /// Kill QEMU after this long.
    pub timeout: Duration,
}

impl Launch {
    /// The QEMU arguments (without the program).
    pub fn args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = Vec::new();
        let mut push = |items: &[&str]| args.extend(items.iter().map(OsString::from));
        push(&["-M", self.machine.argument(), "-nodefaults", "-no-user-config"]);
        push(&["-display", "none", "-serial", "stdio", "-no-reboot", "-m", self.memory]);
        push(&["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]);
        push(&self.accel.args());
        args.push("-kernel".into());
        args.push(self.hypervisor.clone().into());
        args.push("-initrd".into());
        args.push(self.initrd.clone().into());
        args.push("-append".into());
        args.push(self.append.clone().into());
        args.extend(self.extra.iter().map(OsString::from));
        args
    }

    /// The command as a shell-like line, for messages.
    pub fn display(&self) -> String {
        let mut line = self.qemu.display().to_string();
        for arg in self.args() {
            let arg = arg.to_string_lossy();
            if arg.is_empty() || arg.contains([' ', '"', '\'']) {
                line.push_str(&format!(" '{arg}'"));
            } else {
                line.push(' ');
                line.push_str(&arg);
            }
        }
        line
    }
}

/// What to do with the serial console while QEMU runs.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum ConsoleMode {
    /// Copy it to our stdout as it arrives (and capture it too).
    Stream,
    /// Only capture it.
    Capture,
}

/// How a QEMU run ended.
#[derive(Clone, Debug)]
pub struct RunOutcome {
    /// The hypervisor's exit status, if QEMU exited through the exit device.
    pub status: Option<ExitStatus>,
    /// QEMU's raw exit code (`None` if it died by a signal, e.g. our kill on timeout).
    pub raw_exit: Option<i32>,
    /// True if we killed QEMU because the timeout passed.
    pub timed_out: bool,
    /// The serial console (QEMU's stdout), lossily decoded.
    pub output: String,
    /// QEMU's own diagnostics (stderr).
    pub stderr: String,
    /// Wall time from spawn to exit.
    pub wall: Duration,
}

impl RunOutcome {
    /// Interprets QEMU's ending: the timeout wins, then the exit device — trusted only
    /// when the console shows the hypervisor ending (see [`hypervisor_ended`]): QEMU's own
    /// error status 1 (a bad option, a missing file) is the exit device's code for status 0.
    pub fn from_parts(raw_exit: Option<i32>, timed_out: bool, output: String, stderr: String, wall: Duration) -> Self {
        let status = match (timed_out, raw_exit.and_then(ExitStatus::from_qemu_status)) {
            (false, Some(status)) if hypervisor_ended(&output) => Some(status),
            _ => None,
        };
        Self { status, raw_exit, timed_out, output, stderr, wall }
    }

    /// The exit code `cargo xtask run` ends with: the hypervisor's status, or one of xtask's
    /// own ([`crate::error`]): a timeout, QEMU refusing to start, QEMU ending without the
    /// hypervisor ending the run.
    pub fn xtask_exit_code(&self) -> i32 {
        match (self.timed_out, self.status) {
            (true, _) => EXIT_TIMEOUT,
            (false, Some(status)) => i32::from(status.0),
            (false, None) if self.refused() => EXIT_QEMU_REFUSED,
            (false, None) => EXIT_NO_ENDING,
        }
    }

    /// True if QEMU exited with an error before the hypervisor printed a line.
    fn refused(&self) -> bool {
        self.output.trim().is_empty() && self.raw_exit.is_some_and(|code| code != 0)
    }

    /// One line describing how the run ended.
    pub fn describe(&self, timeout: Duration) -> String {
        match (self.timed_out, self.status) {
            (true, _) => format!("QEMU timed out after {} s and was killed", timeout.as_secs_f64()),
            (false, Some(status)) => format!("hypervisor exit status {}: {}", status.0, status.describe()),
            (false, None) => {
                if let Some(complaint) = halting_complaint(&self.stderr) {
                    return format!("QEMU stopped the machine for good and was killed at once: {complaint}");
                }
                let how = match self.raw_exit {
                    Some(code) => format!("status {code}"),
                    None => "killed by a signal".to_string(),
                };
                let what = if self.refused() {
                    "QEMU refused to start"
                } else {
                    "QEMU ended without the hypervisor ending the run"
                };
                // QEMU's first complaint says why (a refused option, a missing file).
                match self.stderr.lines().map(str::trim).find(|line| !line.is_empty()) {
                    Some(complaint) => format!("{what} ({how}): {complaint}"),
                    None => format!("{what} ({how})"),
                }
            }
        }
    }
}

/// The console lines that end every run of the hypervisor: the summarized `exit status`,
/// a panic report, or a refusal to boot (SPEC.md §10, §15).
const ENDING_LINES: [&str; 3] = ["(hv) exit status ", "(hv) PANIC", "(hv) cannot boot: "];

/// True if `output` shows the hypervisor ending, so that QEMU's exit status came from its
/// exit device.
pub fn hypervisor_ended(output: &str) -> bool {
    output.lines().any(|line| ENDING_LINES.iter().any(|ending| line.starts_with(ending)))
}

/// QEMU's stderr lines after which its machine never runs again: KVM could not run or
/// emulate an instruction, and QEMU pauses the VM for a debugger instead of exiting (Xen
/// 4.17's `rdsspq` under a kvm-pvm host does this at boot). Waiting for the timeout would
/// only waste it.
const HALTING_COMPLAINTS: [&str; 2] = ["KVM internal error", "KVM: entry failed"];

/// The line of QEMU's `stderr` that says its machine has stopped for good (one starting
/// with one of the complaints above), trimmed.
pub fn halting_complaint(stderr: &str) -> Option<&str> {
    stderr.lines().map(str::trim).find(|line| HALTING_COMPLAINTS.iter().any(|complaint| line.starts_with(complaint)))
}

/// True if QEMU's `stderr` says its machine has stopped for good ([`halting_complaint`]).
pub fn machine_halted(stderr: &str) -> bool {
    halting_complaint(stderr).is_some()
}

/// What QEMU's serial input (its stdin) gets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ConsoleInput {
    /// Nothing (stdin is /dev/null).
    #[default]
    None,
    /// Our own stdin: an interactive `cargo xtask run` (QEMU puts a terminal in raw mode
    /// and restores it when it exits).
    Terminal,
    /// `bytes`, written once the console output contains `after` (a conformance case
    /// typing at its guests once they are up).
    After { after: String, bytes: Vec<u8> },
    /// Nothing, and QEMU in a process group of its own, so that the terminal's Ctrl-C
    /// reaches only the program in the foreground (gdb interrupting the guest) and not
    /// QEMU; the caller ends QEMU ([`run_until`]'s `stop`), and so does the death of the
    /// thread that started it.
    Detached,
}

/// Bytes to type once `after` has appeared in the output, and where to type them.
struct Typist {
    after: Vec<u8>,
    bytes: Vec<u8>,
    stdin: std::process::ChildStdin,
    done: bool,
}

impl Typist {
    /// Called with the whole output so far and the length of its newest chunk.
    fn saw(&mut self, all: &[u8], newest: usize) {
        if self.done {
            return;
        }
        // Only a match that ends in the newest chunk is new.
        let from = all.len().saturating_sub(newest + self.after.len());
        if all[from..].windows(self.after.len().max(1)).any(|window| window == self.after.as_slice()) {
            // A QEMU that already exited cannot read it; the case then fails on its own.
            let _ = self.stdin.write_all(&self.bytes).and_then(|()| self.stdin.flush());
            self.done = true;
        }
    }
}

/// Copies `source` to `sink` (if any) as it comes and returns all of it; after each chunk
/// `saw` gets everything so far and the newest chunk's length.
fn pump(mut source: impl Read, mut sink: Option<Box<dyn Write + Send>>, mut saw: impl FnMut(&[u8], usize)) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match source.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(count) => {
                all.extend_from_slice(&buffer[..count]);
                saw(&all, count);
                if let Some(sink) = sink.as_mut() {
                    // A closed stdout (e.g. `| head`) must not stop the capture.
                    let _ = sink.write_all(&buffer[..count]).and_then(|()| sink.flush());
                }
            }
        }
    }
    all
}

/// [`pump`] for QEMU's stdout, typing at QEMU when the output asks for it. The typist (and
/// with it QEMU's stdin) lives until the output ends, so QEMU never sees an early EOF.
fn pump_typing(source: impl Read, sink: Option<Box<dyn Write + Send>>, mut typist: Option<Typist>) -> Vec<u8> {
    pump(source, sink, |all, newest| {
        if let Some(typist) = typist.as_mut() {
            typist.saw(all, newest);
        }
    })
}

/// [`pump`] for QEMU's stderr: sets `halted` once it shows [`machine_halted`] (only the
/// lines the newest chunk touched are looked at).
fn pump_watching(source: impl Read, sink: Option<Box<dyn Write + Send>>, halted: &AtomicBool) -> Vec<u8> {
    pump(source, sink, |all, newest| {
        let chunk_start = all.len() - newest;
        let line_start = all[..chunk_start].iter().rposition(|&byte| byte == b'\n').map_or(0, |newline| newline + 1);
        if machine_halted(&String::from_utf8_lossy(&all[line_start..])) {
            halted.store(true, Ordering::Relaxed);
        }
    })
}

/// Runs QEMU to completion or timeout, with nothing on its serial input.
pub fn run(launch: &Launch, mode: ConsoleMode) -> Result<RunOutcome> {
    run_with_input(launch, mode, ConsoleInput::None)
}

/// Runs QEMU to completion or timeout, feeding its serial input as `input` says.
pub fn run_with_input(launch: &Launch, mode: ConsoleMode, input: ConsoleInput) -> Result<RunOutcome> {
    run_until(launch, mode, input, &AtomicBool::new(false))
}

/// How often [`run_until`] looks at its `stop` flag while QEMU runs.
const STOP_POLL: Duration = Duration::from_millis(50);

/// Like [`run_with_input`], and ends QEMU as soon as `stop` is set (`cargo xtask gdb`
/// stops it when gdb ends): it is killed as at a timeout, but the outcome is not a timeout.
pub fn run_until(launch: &Launch, mode: ConsoleMode, input: ConsoleInput, stop: &AtomicBool) -> Result<RunOutcome> {
    run_on(launch, mode, input, stop, None)
}

/// Like [`run`], with QEMU (all its threads) confined to host CPU `cpu`: the bench's
/// runs, whose cycle counts under TCG otherwise move with where the host scheduler puts
/// QEMU's vCPU thread from one run to the next (measured: medians of the same run 32–63 k
/// cycles unpinned, 32–33 k pinned; docs/trap-instructions.md).
pub fn run_pinned(launch: &Launch, mode: ConsoleMode, cpu: usize) -> Result<RunOutcome> {
    run_on(launch, mode, ConsoleInput::None, &AtomicBool::new(false), Some(cpu))
}

/// The host CPU the bench pins QEMU to: the highest one this process may run on (the
/// lowest tend to take the host's interrupts), or `None` where the set cannot be read.
pub fn bench_cpu() -> Option<usize> {
    // SAFETY: cpu_set_t is plain bits, for which all zeroes is a valid (empty) set.
    let mut set: libc::cpu_set_t = unsafe { core::mem::zeroed() };
    // SAFETY: sched_getaffinity(2) writes at most `size_of::<cpu_set_t>()` bytes to `set`,
    // which is that large and ours.
    let read = unsafe { libc::sched_getaffinity(0, core::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if read != 0 {
        return None;
    }
    // SAFETY: CPU_ISSET only reads `set`, with an index below CPU_SETSIZE.
    (0..libc::CPU_SETSIZE as usize).rev().find(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
}

fn run_on(
    launch: &Launch,
    mode: ConsoleMode,
    input: ConsoleInput,
    stop: &AtomicBool,
    cpu: Option<usize>,
) -> Result<RunOutcome> {
    for (what, path) in [("hypervisor image", &launch.hypervisor), ("boot archive", &launch.initrd)] {
        let present = path.is_file() || (what == "boot archive" && multiboot_modules_present(path));
        if !present {
            let fix = if what == "hypervisor image" { "; run `cargo xtask build` first" } else { "" };
            return Err(Error::usage(format!("{what} {} does not exist{fix}", path.display())));
        }
    }
    let start = Instant::now();
    let mut command = Command::new(&launch.qemu);
    if input == ConsoleInput::Detached {
        use std::os::unix::process::CommandExt;
        command.process_group(0);
        // Out of the terminal's reach, QEMU would outlive a killed xtask, halted for ever.
        // SAFETY: the closure runs in the child between fork and exec and calls only
        // prctl(2), which is async-signal-safe; it touches no memory of the parent.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            })
        };
    }
    if let Some(cpu) = cpu {
        use std::os::unix::process::CommandExt;
        // SAFETY: the closure runs in the child between fork and exec; it builds a CPU set
        // on its own stack and calls only sched_setaffinity(2), a plain system call.
        unsafe {
            command.pre_exec(move || {
                let mut set: libc::cpu_set_t = core::mem::zeroed();
                libc::CPU_SET(cpu, &mut set);
                if libc::sched_setaffinity(0, core::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            })
        };
    }
    let mut child = command
        .args(launch.args())
        .stdin(match input {
            ConsoleInput::None | ConsoleInput::Detached => Stdio::null(),
            ConsoleInput::Terminal => Stdio::inherit(),
            ConsoleInput::After { .. } => Stdio::piped(),
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| Error::environment(format!("cannot start {}: {error}", launch.qemu.display())))?;
    let stream = mode == ConsoleMode::Stream;
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    let typist = match (&input, child.stdin.take()) {
        (ConsoleInput::After { after, bytes }, Some(stdin)) => {
            Some(Typist { after: after.as_bytes().to_vec(), bytes: bytes.clone(), stdin, done: false })
        }
        _ => None,
    };
    let out_thread = std::thread::spawn(move || {
        pump_typing(stdout, stream.then(|| Box::new(std::io::stdout()) as Box<dyn Write + Send>), typist)
    });
    let halted = std::sync::Arc::new(AtomicBool::new(false));
    let seen = std::sync::Arc::clone(&halted);
    let err_thread = std::thread::spawn(move || {
        pump_watching(stderr, stream.then(|| Box::new(std::io::stderr()) as Box<dyn Write + Send>), &seen)
    });
    // A timeout too large for an Instant means none.
    let deadline = start.checked_add(launch.timeout);
    let waited = loop {
        let left = deadline.map_or(STOP_POLL, |deadline| deadline.saturating_duration_since(Instant::now()));
        if left.is_zero() || stop.load(Ordering::Relaxed) || halted.load(Ordering::Relaxed) {
            break None;
        }
        let status = child
            .wait_timeout(left.min(STOP_POLL))
            .map_err(|error| Error::failed(format!("waiting for QEMU: {error}")))?;
        if status.is_some() {
            break status;
        }
    };
    let (status, timed_out) = match waited {
        Some(status) => (status, false),
        None => {
            if input == ConsoleInput::Terminal {
                // SIGTERM first: QEMU then restores the terminal it put in raw mode.
                // SAFETY: kill(2) on our own child's pid; no memory is involved.
                unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
                let _ = child.wait_timeout(Duration::from_secs(2));
            }
            let _ = child.kill();
            let status = child.wait().map_err(|error| Error::failed(format!("waiting for killed QEMU: {error}")))?;
            (status, !stop.load(Ordering::Relaxed) && !halted.load(Ordering::Relaxed))
        }
    };
    let wall = start.elapsed();
    let output = out_thread.join().unwrap_or_default();
    let stderr = err_thread.join().unwrap_or_default();
    Ok(RunOutcome::from_parts(
        status.code(),
        timed_out,
        String::from_utf8_lossy(&output).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
        wall,
    ))
}

/// QEMU's `-initrd` for a multiboot kernel (Xen): modules separated by commas, each its
/// file and the command line it gets after a space; a comma inside a module is doubled.
pub fn multiboot_modules(modules: &[(&Path, &str)]) -> Result<PathBuf> {
    let mut list = String::new();
    for (index, (path, command_line)) in modules.iter().enumerate() {
        let file = path.to_str().filter(|file| !file.contains(' ')).ok_or_else(|| {
            Error::environment(format!(
                "{} cannot be a multiboot module: QEMU ends a module's file name at its first space",
                path.display()
            ))
        })?;
        if index > 0 {
            list.push(',');
        }
        list.push_str(&file.replace(',', ",,"));
        if !command_line.is_empty() {
            list.push(' ');
            list.push_str(&command_line.replace(',', ",,"));
        }
    }
    Ok(PathBuf::from(list))
}

/// The files of a [`multiboot_modules`] list.
pub fn multiboot_module_files(list: &str) -> Vec<String> {
    let mut modules = vec![String::new()];
    let mut characters = list.chars().peekable();
    while let Some(character) = characters.next() {
        match (character, characters.peek()) {
            (',', Some(',')) => {
                characters.next();
                modules.last_mut().expect("never empty").push(',');
            }
            (',', _) => modules.push(String::new()),
            (character, _) => modules.last_mut().expect("never empty").push(character),
        }
    }
    modules.iter().map(|module| module.split(' ').next().unwrap_or_default().to_string()).collect()
}

/// True if `initrd` is a multiboot module list whose every file exists.
fn multiboot_modules_present(initrd: &Path) -> bool {
    let files = initrd.to_str().map(multiboot_module_files).unwrap_or_default();
    !files.is_empty() && files.iter().all(|file| Path::new(file).is_file())
}

/// Writes `archive` to `path`, creating its directory.
pub fn write_archive(path: &Path, archive: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|error| Error::io("cannot create", parent, error))?;
    }
    std::fs::write(path, archive).map_err(|error| Error::io("cannot write", path, error))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch(accel: Accel, machine: Machine) -> Launch {
        Launch {
            qemu: QEMU.into(),
            hypervisor: "target/ringfence/hypervisor.elf".into(),
            initrd: "/tmp/a.tar".into(),
            append: "domain=hello arg=x".into(),
            accel,
            machine,
            memory: MACHINE_MEMORY,
            extra: vec!["-s".into()],
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn command_line_matches_the_contract() {
        let line = launch(Accel::Kvm, Machine::Microvm).display();
        assert_eq!(
            line,
            "qemu-system-x86_64 -M microvm,x-option-roms=off,rtc=on -nodefaults -no-user-config \
             -display none -serial stdio -no-reboot -m 512M -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
             -accel kvm -cpu host,+invtsc,-arch-capabilities -kernel target/ringfence/hypervisor.elf -initrd /tmp/a.tar \
             -append 'domain=hello arg=x' -s"
        );
        let args = launch(Accel::Tcg, Machine::Q35).args();
        let args: Vec<&str> = args.iter().map(|arg| arg.to_str().unwrap()).collect();
        assert_eq!(&args[..2], ["-M", "q35"]);
        let accel = args.iter().position(|&arg| arg == "-accel").unwrap();
        assert_eq!(&args[accel..accel + 4], ["-accel", "tcg", "-cpu", "max"]);
        let append = args.iter().position(|&arg| arg == "-append").unwrap();
        assert_eq!(args[append + 1], "domain=hello arg=x", "the command line is one argument");
        assert_eq!(Machine::Pc.argument(), "pc");
    }

    #[test]
    fn multiboot_modules_double_their_commas_and_are_found_again() {
        let dir = std::env::temp_dir().join(format!("xtask-multiboot-{}", std::process::id()));
        let odd = dir.join("a,b");
        std::fs::create_dir_all(&odd).unwrap();
        let (kernel, initramfs) = (odd.join("vmlinuz"), dir.join("lm.cpio"));
        let list = multiboot_modules(&[(&kernel, "console=hvc0 x=1,2 -- --row a"), (&initramfs, "")]).unwrap();
        let text = list.to_str().unwrap();
        let shown = dir.display();
        assert_eq!(text, format!("{shown}/a,,b/vmlinuz console=hvc0 x=1,,2 -- --row a,{shown}/lm.cpio"));
        let files = [kernel.display().to_string(), initramfs.display().to_string()];
        assert_eq!(multiboot_module_files(text), files);
        assert!(!multiboot_modules_present(&list), "the files do not exist yet");
        std::fs::write(&kernel, b"k").unwrap();
        std::fs::write(&initramfs, b"i").unwrap();
        assert!(multiboot_modules_present(&list));
        assert!(multiboot_modules(&[(Path::new("/a b/vmlinuz"), "")]).is_err(), "a space ends the file name");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn exit_statuses_are_decoded() {
        let ended = "(hv) summary: ...\r\n(hv) exit status 0: all domains powered off with code 0\r\n";
        let outcome =
            |raw, timed_out| RunOutcome::from_parts(raw, timed_out, ended.to_string(), String::new(), Duration::ZERO);
        let device = |status: ExitStatus| Some(status.qemu_status());
        assert_eq!(outcome(device(ExitStatus::SUCCESS), false).status, Some(ExitStatus::SUCCESS));
        assert_eq!(outcome(device(ExitStatus::SUCCESS), false).xtask_exit_code(), 0);
        assert_eq!(outcome(device(ExitStatus::KILLED), false).status, Some(ExitStatus::KILLED));
        assert_eq!(outcome(device(ExitStatus::KILLED), false).xtask_exit_code(), 3);
        assert_eq!(outcome(device(ExitStatus::HYPERVISOR_PANIC), false).xtask_exit_code(), 100);
        assert_eq!(outcome(Some(1), false).status, None, "QEMU's own error status, even after the summary");
        assert_eq!(outcome(Some(0), false).status, None, "triple fault with --no-reboot");
        assert_eq!(outcome(Some(0), false).xtask_exit_code(), EXIT_NO_ENDING);
        assert!(outcome(Some(0), false)
            .describe(Duration::ZERO)
            .contains("QEMU ended without the hypervisor ending the run (status 0)"));
        assert_eq!(outcome(None, true).xtask_exit_code(), EXIT_TIMEOUT);
        assert_eq!(outcome(Some(9), true).status, None, "a timeout is never a verdict");
        assert_eq!(outcome(None, false).xtask_exit_code(), EXIT_NO_ENDING);
    }

    /// A stand-in for QEMU: a shell script, with real files for -kernel and -initrd.
    fn fake_qemu(name: &str, script: &str, timeout: Duration) -> Launch {
        let dir = std::env::temp_dir().join(format!("xtask-fake-qemu-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let qemu = dir.join("qemu");
        // Written by a child process: a write descriptor opened here would be inherited by
        // a child that a test on another thread forks at that moment, and exec'ing the
        // script while that child still holds it open fails with ETXTBSY.
        let written = std::process::Command::new("sh")
            .args(["-c", "printf '#!/bin/sh\\n%s\\n' \"$1\" > \"$2\" && chmod 755 \"$2\"", "sh", script])
            .arg(&qemu)
            .status()
            .unwrap();
        assert!(written.success(), "cannot write the fake QEMU {}", qemu.display());
        std::fs::write(dir.join("hv.elf"), b"").unwrap();
        std::fs::write(dir.join("a.tar"), b"").unwrap();
        Launch {
            qemu,
            hypervisor: dir.join("hv.elf"),
            initrd: dir.join("a.tar"),
            timeout,
            ..launch(Accel::Tcg, Machine::Microvm)
        }
    }

    #[test]
    fn a_pinned_run_confines_qemu_to_the_one_cpu() {
        let cpu = bench_cpu().expect("this process's CPU set is readable on Linux");
        let launch = fake_qemu("pinned", "grep Cpus_allowed_list /proc/self/status", Duration::from_secs(10));
        let pinned = run_pinned(&launch, ConsoleMode::Capture, cpu).unwrap();
        assert_eq!(pinned.output.trim(), format!("Cpus_allowed_list:\t{cpu}"));
    }

    #[test]
    fn a_status_counts_only_after_the_hypervisor_ended() {
        // QEMU refusing an option exits 1, the exit device's code for status 0.
        let refused = RunOutcome::from_parts(
            Some(1),
            false,
            String::new(),
            "qemu-system-x86_64: -c: invalid option\n".to_string(),
            Duration::ZERO,
        );
        assert_eq!(refused.status, None);
        assert_eq!(refused.xtask_exit_code(), EXIT_QEMU_REFUSED);
        assert!(refused.describe(Duration::ZERO).ends_with("(status 1): qemu-system-x86_64: -c: invalid option"));
        let early =
            RunOutcome::from_parts(Some(1), false, "(hv) ringfence 0.1.0\n".into(), String::new(), Duration::ZERO);
        assert_eq!(early.status, None, "a banner is not an ending");
        for ending in ["(hv) PANIC at x.rs:1: boom\n", "(hv) cannot boot: no TSC\n"] {
            let panic = ExitStatus::HYPERVISOR_PANIC.qemu_status();
            let outcome = RunOutcome::from_parts(Some(panic), false, ending.into(), String::new(), Duration::ZERO);
            assert_eq!(outcome.status, Some(ExitStatus::HYPERVISOR_PANIC), "{ending}");
        }
    }

    #[test]
    fn run_captures_the_console_and_decodes_the_status() {
        let launch =
            fake_qemu("exit", "echo '(hv) exit status 3: killed'; echo oops >&2; exit 39", Duration::from_secs(10));
        let outcome = run(&launch, ConsoleMode::Capture).unwrap();
        assert_eq!(outcome.output, "(hv) exit status 3: killed\n");
        assert_eq!(outcome.stderr, "oops\n");
        assert_eq!((outcome.status, outcome.raw_exit, outcome.timed_out), (Some(ExitStatus::KILLED), Some(39), false));
    }

    #[test]
    fn run_kills_qemu_at_the_timeout() {
        // Long enough for the fake to print under a loaded machine, far below its 30 s sleep.
        let launch = fake_qemu("hang", "echo started; exec sleep 30", Duration::from_secs(2));
        let outcome = run(&launch, ConsoleMode::Capture).unwrap();
        assert!(outcome.timed_out);
        assert_eq!(outcome.output, "started\n");
        assert_eq!(outcome.xtask_exit_code(), EXIT_TIMEOUT);
        assert!(outcome.wall < Duration::from_secs(10), "{:?}", outcome.wall);
    }

    #[test]
    fn run_until_ends_qemu_when_told_to_stop() {
        let launch = fake_qemu("stop", "echo started; exec sleep 30", Duration::from_secs(60));
        let stop = AtomicBool::new(false);
        let outcome = std::thread::scope(|scope| {
            let running = scope.spawn(|| run_until(&launch, ConsoleMode::Capture, ConsoleInput::None, &stop));
            std::thread::sleep(Duration::from_millis(300));
            stop.store(true, Ordering::Relaxed);
            running.join().unwrap().unwrap()
        });
        assert!(!outcome.timed_out, "a stop is not a timeout");
        assert_eq!((outcome.status, outcome.raw_exit), (None, None), "killed by xtask");
        assert!(outcome.wall < Duration::from_secs(10), "{:?}", outcome.wall);
    }

    #[test]
    fn run_ends_qemu_at_once_when_kvm_stops_its_machine() {
        // What QEMU does on a KVM emulation failure: complain, then pause for ever. The
        // complaint arrives in two writes, its marker split between them.
        let script = "echo booting; printf 'KV' >&2; sleep 0.2; \
                      printf 'M internal error. Suberror: 1\\nemulation failure\\n' >&2; exec sleep 30";
        let launch = fake_qemu("halted", script, Duration::from_secs(60));
        let outcome = run(&launch, ConsoleMode::Capture).unwrap();
        assert!(outcome.wall < Duration::from_secs(20), "not killed at once: {:?}", outcome.wall);
        assert!(!outcome.timed_out, "a halted machine is not a timeout");
        assert_eq!(outcome.xtask_exit_code(), EXIT_NO_ENDING);
        assert_eq!(
            outcome.describe(launch.timeout),
            "QEMU stopped the machine for good and was killed at once: KVM internal error. Suberror: 1"
        );
    }

    #[test]
    fn only_a_complaint_that_starts_a_line_halts_the_machine() {
        assert!(machine_halted("KVM internal error. Suberror: 1\nemulation failure\n"));
        assert!(machine_halted("qemu: warning\n  KVM: entry failed, hardware error 0x80000021\n"));
        assert!(!machine_halted("qemu: warning: the guest said KVM internal error\n"));
        assert!(!machine_halted("qemu-system-x86_64: -accel kvm: failed to initialize kvm\n"));
        assert!(!machine_halted(""));
    }

    #[test]
    fn run_names_a_missing_hypervisor() {
        let mut launch = fake_qemu("missing", "exit 1", Duration::from_secs(1));
        launch.hypervisor = "/nonexistent/hypervisor.elf".into();
        let error = run(&launch, ConsoleMode::Capture).unwrap_err();
        assert!(
            error.message.contains("/nonexistent/hypervisor.elf does not exist; run `cargo xtask build`"),
            "{}",
            error.message
        );
    }
}
