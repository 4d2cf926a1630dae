//! Debugging a boot with gdb (`cargo xtask gdb`): finding or installing gdb, QEMU's
//! gdbstub arguments, gdb's command line with the hypervisor's and a guest's symbols, and
//! the scripted session `cargo xtask test` drives through it.
//!
//! Facts this rests on, found under QEMU 7.2 with TCG and `-M microvm`: QEMU's x86_64
//! gdbstub always speaks the 64-bit register set, so gdb (given the ELF64 hypervisor)
//! needs no `set architecture` although the CPU starts in real mode at the firmware's reset
//! vector and enters the hypervisor through its 32-bit PVH entry; plain `break` works
//! everywhere, because under TCG a gdb breakpoint is an address QEMU compares each
//! instruction with — it writes nothing to guest memory, so it may be set before the
//! hypervisor's higher-half mapping exists and it fires in whatever address space is
//! current.

use crate::{packages, Error, Result};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The gdb binary.
pub const GDB: &str = "gdb";
/// The Debian package that provides it.
pub const GDB_PACKAGE: &str = "gdb";

/// `gdb` from PATH, installed with apt-get when it is missing and we are root on a Debian
/// system; otherwise fails (exit 122) with the command that installs it.
pub fn ensure_gdb() -> Result<PathBuf> {
    if let Some(gdb) = find_gdb() {
        return Ok(gdb);
    }
    if packages::apt_install(GDB, GDB_PACKAGE)? {
        return find_gdb()
            .ok_or_else(|| Error::environment(format!("{GDB_PACKAGE} was installed but {GDB} is still not in PATH")));
    }
    Err(Error::environment(format!(
        "{GDB} not found in PATH; install it with: sudo apt-get update && sudo apt-get install -y {GDB_PACKAGE}"
    )))
}

fn find_gdb() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(GDB)).find(|candidate| candidate.is_file())
}

/// Where QEMU's gdbstub listens: a Unix socket named by our process id, so runs in
/// parallel never share one (a TCP port could be taken). In the temporary directory,
/// because a socket path must stay below 108 bytes; `/tmp` if that directory's path has
/// white space, which gdb's `target remote` cannot take.
pub fn socket_path() -> PathBuf {
    let temporary = std::env::temp_dir();
    let directory = if temporary.to_string_lossy().contains(char::is_whitespace) { "/tmp".into() } else { temporary };
    directory.join(format!("ringfence-gdb-{}.sock", std::process::id()))
}

/// The QEMU arguments that start the machine halted with its gdbstub on `socket`.
pub fn qemu_args(socket: &Path) -> Vec<String> {
    // QEMU's option syntax escapes a comma in a value by doubling it.
    let path = socket.display().to_string().replace(',', ",,");
    vec!["-S".into(), "-gdb".into(), format!("unix:{path},server=on,wait=off")]
}

/// A file name as a gdb command argument: quoted, so spaces survive.
fn quoted(path: &Path) -> String {
    format!("\"{}\"", path.display().to_string().replace('\\', "\\\\").replace('"', "\\\""))
}

/// What gdb is told to do.
#[derive(Clone, Debug)]
pub struct Session<'a> {
    /// The hypervisor ELF: gdb's program, its symbols at their link addresses.
    pub hypervisor: &'a Path,
    /// The guest ELF whose symbols are added (they load at their link addresses).
    pub guest: Option<&'a Path>,
    /// The gdbstub's socket.
    pub socket: &'a Path,
    /// Commands to run once attached (`-ex`), in order.
    pub commands: &'a [String],
    /// Batch mode: run the commands and exit; ignore ~/.gdbinit so a script behaves the
    /// same everywhere.
    pub batch: bool,
}

impl Session<'_> {
    /// gdb's arguments (without the program).
    pub fn args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["-q".into()];
        if self.batch {
            args.extend(["-batch".into(), "-nx".into()]);
        }
        let mut command = |text: String| args.extend(["-ex".into(), text.into()]);
        if let Some(guest) = self.guest {
            // add-symbol-file asks before it adds; the answer is known.
            command("set confirm off".into());
            command(format!("add-symbol-file {}", quoted(guest)));
            command("set confirm on".into());
        }
        // `target remote` takes the path as written, quotes included ([`socket_path`]).
        command(format!("target remote {}", self.socket.display()));
        for text in self.commands {
            command(text.clone());
        }
        args.push(self.hypervisor.into());
        args
    }
}

/// The guest function the scripted session stops in: guest-kernel's system-call
/// dispatcher (the generic function's instance for the paravirtual machine).
pub const GUEST_FUNCTION: &str =
    "guest_kernel::kernel::syscalls::dispatch<guest_kernel::arch::paravirt::machine::ParavirtMachine>";
/// The hypercall handler the scripted session stops in.
pub const HYPERCALL_HANDLER: &str = "hypervisor::hypercall::console::console_io";
/// The line the scripted session's command prints.
pub const SCRIPTED_OUTPUT: &str = "debugged";
/// Linux's `write`: the system call the session waits for.
const WRITE: u64 = 1;
/// The lines from the dispatcher's entry to the first one after its `Call` (the caller
/// and its six argument registers) is made, in the optimized build.
const LINES_TO_CALL: u32 = 4;

/// The command guest-kernel's init runs in the scripted session (the words after `--`):
/// its one `write` is the one the session stops in.
pub fn scripted_command() -> Vec<String> {
    vec!["sh".into(), "-c".into(), format!("echo {SCRIPTED_OUTPUT}")]
}

/// The session `cargo xtask test` runs against guest-kernel running [`scripted_command`]
/// and README shows: stop in a hypercall handler, read its arguments and a register,
/// then stop in the kernel's system-call dispatcher at the first `write`, show how the
/// run loop got there and the kernel's counters, step until the call's registers are
/// read and print the locals.
pub fn scripted_session() -> Vec<String> {
    [
        format!("break {HYPERCALL_HANDLER}"),
        "continue".into(),
        "print *arguments".into(),
        "print/x $rip".into(),
        "delete".into(),
        format!("break {GUEST_FUNCTION} if number == {WRITE}"),
        "continue".into(),
        "backtrace 5".into(),
        "print kernel.counters".into(),
        format!("next {LINES_TO_CALL}"),
        "info locals".into(),
        "detach".into(),
    ]
    .into()
}

/// The first number in `text` after `prefix`.
fn number_after(text: &str, prefix: &str) -> Option<u64> {
    let start = text.find(prefix)? + prefix.len();
    let digits: String = text[start..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Checks gdb's output of [`scripted_session`]: the handler's breakpoint was hit, the
/// register `rip` read there was the breakpoint's address, the handler's arguments were a
/// console write; the dispatcher's breakpoint was hit for a `write`, called by the run
/// loop's `system_call`, the kernel's counters printed as numbers, and the local `call`
/// holds the caller's pid and the write of [`SCRIPTED_OUTPUT`] and its newline to
/// standard output.
pub fn check_scripted_session(output: &str) -> std::result::Result<(), String> {
    let set = "Breakpoint 1 at ";
    let address: String = output
        .find(set)
        .map(|at| output[at + set.len()..].chars().take_while(|c| c.is_ascii_hexdigit() || *c == 'x').collect())
        .ok_or(format!("gdb did not set the breakpoint in {HYPERCALL_HANDLER}"))?;
    let hit = format!("Breakpoint 1, {HYPERCALL_HANDLER} (");
    if !output.contains(&hit) {
        return Err(format!("the breakpoint in {HYPERCALL_HANDLER} was not hit (no '{hit}...')"));
    }
    let value = |name: &str| {
        output.lines().find_map(|line| line.strip_prefix(&format!("{name} = ")).map(str::trim).map(str::to_string))
    };
    let arguments = value("$1").ok_or("`print *arguments` printed no $1")?;
    let write = hypercall_abi::hypercall::console_cmd::WRITE;
    if !arguments.starts_with(&format!("[{write}, ")) {
        return Err(format!("the handler's arguments {arguments} are not a console write (command {write})"));
    }
    let rip = value("$2").ok_or("`print/x $rip` printed no $2")?;
    if address.len() < 3 || rip != address {
        return Err(format!("rip is {rip} at the breakpoint, which gdb set at {address}"));
    }

    let hit = format!("Breakpoint 2, {GUEST_FUNCTION} (");
    let stop = output
        .lines()
        .find(|line| line.starts_with(&hit))
        .ok_or(format!("the breakpoint in the guest function {GUEST_FUNCTION} was not hit"))?;
    let pid = number_after(stop, "pid=").ok_or(format!("the dispatcher's stop shows no pid: {stop}"))?;
    if number_after(stop, "number=") != Some(WRITE) {
        return Err(format!("the dispatcher stopped for another call than write ({WRITE}): {stop}"));
    }
    if !output.lines().any(|line| line.starts_with("#1 ") && line.contains("::system_call<")) {
        return Err("the backtrace does not show the run loop's system_call calling the dispatcher".into());
    }
    let counters = value("$3").ok_or("`print kernel.counters` printed no $3")?;
    let fields = counters
        .split_once(" {")
        .and_then(|(_, fields)| fields.strip_suffix('}'))
        .ok_or(format!("the kernel's counters are not a struct: {counters}"))?;
    for field in fields.split(", ") {
        let (name, shown) = field.split_once(": ").unwrap_or((field, ""));
        if shown.parse::<u64>().is_err() {
            return Err(format!("the kernel's counter `{name}` is '{shown}', not a number"));
        }
    }
    // write(1, buffer, 9): the line and its newline, to standard output.
    let call = value("call").ok_or("`info locals` did not show `call`")?;
    let count = SCRIPTED_OUTPUT.len() + 1;
    let arguments = call.split_once("arguments: [").map(|(_, rest)| rest.split(", ").collect::<Vec<_>>());
    let written =
        arguments.as_deref().is_some_and(|words| words.len() > 2 && words[0] == "1" && words[2] == count.to_string());
    if number_after(&call, "pid: ") != Some(pid) || !written {
        return Err(format!("`call` is not pid {pid}'s write of {count} bytes to standard output: {call}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_waits_halted_on_a_socket_of_its_own() {
        assert_eq!(
            qemu_args(Path::new("/tmp/a,b.sock")),
            ["-S", "-gdb", "unix:/tmp/a,,b.sock,server=on,wait=off"],
            "a comma in the path is doubled"
        );
        assert_ne!(socket_path(), PathBuf::from("/tmp/ringfence-gdb-0.sock"));
        assert!(socket_path().display().to_string().len() < 108, "a Unix socket path is short");
    }

    #[test]
    fn gdb_loads_both_symbol_files_then_attaches() {
        let commands = ["break x".to_string()];
        let session = Session {
            hypervisor: Path::new("/t/hypervisor.elf"),
            guest: Some(Path::new("/t/my guest.elf")),
            socket: Path::new("/tmp/s.sock"),
            commands: &commands,
            batch: true,
        };
        let args: Vec<String> = session.args().iter().map(|arg| arg.to_string_lossy().into_owned()).collect();
        assert_eq!(
            args,
            [
                "-q",
                "-batch",
                "-nx",
                "-ex",
                "set confirm off",
                "-ex",
                "add-symbol-file \"/t/my guest.elf\"",
                "-ex",
                "set confirm on",
                "-ex",
                "target remote /tmp/s.sock",
                "-ex",
                "break x",
                "/t/hypervisor.elf"
            ]
        );
        let interactive = Session { guest: None, batch: false, ..session };
        let args: Vec<String> = interactive.args().iter().map(|arg| arg.to_string_lossy().into_owned()).collect();
        assert_eq!(args, ["-q", "-ex", "target remote /tmp/s.sock", "-ex", "break x", "/t/hypervisor.elf"]);
    }

    const GOOD: &str = "\
Breakpoint 1 at 0xffff800000111623: file hypervisor/src/hypercall/console.rs, line 9.

Breakpoint 1, hypervisor::hypercall::console::console_io (arguments=0xffff80000014e9f8, guest=...) at hypervisor/src/hypercall/console.rs:9
9\t    let [command, count, buffer, ..] = *arguments;
$1 = [0, 124, 18446744071562569520, 0, 0, 0]
$2 = 0xffff800000111623
Breakpoint 2 at 0xffffffff8001554f: file guest-kernel/src/kernel/syscalls/mod.rs, line 80.

Breakpoint 2, guest_kernel::kernel::syscalls::dispatch<guest_kernel::arch::paravirt::machine::ParavirtMachine> (kernel=0xffffffff8007a720, pid=2, number=1, restart=...) at guest-kernel/src/kernel/syscalls/mod.rs:80
80\t            let Some(process) = kernel.processes.get(&pid) else { return Flow::Return(error(Errno::ESRCH)) };
#0  guest_kernel::kernel::syscalls::dispatch<guest_kernel::arch::paravirt::machine::ParavirtMachine> (kernel=0xffffffff8007a720, pid=2, number=1, restart=...) at guest-kernel/src/kernel/syscalls/mod.rs:80
#1  0xffffffff8000babf in guest_kernel::kernel::Kernel<guest_kernel::arch::paravirt::machine::ParavirtMachine>::system_call<guest_kernel::arch::paravirt::machine::ParavirtMachine> (self=0xffffffff8007a720, pid=2) at guest-kernel/src/kernel/run.rs:146
$3 = guest_kernel::kernel::Counters {system_calls: 98, page_faults: 12, interrupts: 27, preemptions: 2, processes: 2}
88\t                if number == u64::from(nr::$number) {
call = guest_kernel::kernel::syscalls::Call {pid: 2, arguments: [1, 6218816, 9, 0, 0, 28258992462848613], restart: core::option::Option<guest_kernel::kernel::process::Restart>::None}
registers = <optimized out>
";

    #[test]
    fn a_good_session_passes() {
        assert_eq!(check_scripted_session(GOOD), Ok(()));
    }

    #[test]
    fn each_missing_step_is_named() {
        let cases = [
            ("Breakpoint 1 at", "Breakpoint 1 near", "did not set the breakpoint"),
            ("Breakpoint 1, hypervisor", "", "was not hit"),
            ("$1 = [0, 124", "$1 = [1, 124", "not a console write"),
            ("$2 = 0xffff800000111623", "$2 = 0xffff800000111627", "rip is 0xffff800000111627"),
            ("$2 = 0xffff800000111623", "", "printed no $2"),
            ("Breakpoint 2, guest", "Breakpoint 3, guest", "guest function"),
            ("pid=2, number=1", "number=1", "shows no pid"),
            ("pid=2, number=1", "pid=2, number=12", "another call than write"),
            ("::system_call<", "::step<", "backtrace does not show"),
            ("$3 = ", "$4 = ", "printed no $3"),
            ("preemptions: 2", "preemptions: <optimized out>", "`preemptions` is '<optimized out>'"),
            ("{system_calls", "system_calls", "not a struct"),
            ("call = ", "flow = ", "did not show `call`"),
            ("{pid: 2,", "{pid: 3,", "not pid 2's write of 9 bytes"),
            ("[1, 6218816, 9,", "[2, 6218816, 9,", "to standard output"),
            ("[1, 6218816, 9,", "[1, 6218816, 8,", "write of 9 bytes"),
        ];
        for (from, to, expected) in cases {
            let error = check_scripted_session(&GOOD.replace(from, to)).unwrap_err();
            assert!(error.contains(expected), "{from} -> {to}: {error}");
        }
    }
}
