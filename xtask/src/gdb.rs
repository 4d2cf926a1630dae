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

/// The guest function the scripted session stops in (guest-kernel's clock check; the
/// generic function's instance for the paravirtual platform).
pub const GUEST_FUNCTION: &str = "guest_kernel::kernel::timer_check<guest_kernel::arch::paravirt::platform::Paravirt>";
/// The hypercall handler the scripted session stops in.
pub const HYPERCALL_HANDLER: &str = "hypervisor::hypercall::console::console_io";

/// The session `cargo xtask test` runs against guest-kernel and README shows: stop in a
/// hypercall handler, read its arguments and a register, then stop in a guest function,
/// step in it and print its locals.
pub fn scripted_session() -> Vec<String> {
    [
        format!("break {HYPERCALL_HANDLER}"),
        "continue".into(),
        "print *arguments".into(),
        "print/x $rip".into(),
        "delete".into(),
        format!("break {GUEST_FUNCTION}"),
        "continue".into(),
        "next".into(),
        "next".into(),
        "next".into(),
        "info locals".into(),
        "detach".into(),
    ]
    .into()
}

/// Checks gdb's output of [`scripted_session`]: the handler's breakpoint was hit, the
/// register `rip` read there was the breakpoint's address, the handler's arguments were a
/// console write, and the guest function's breakpoint was hit with its locals `first` and
/// `second` printed as numbers.
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
    if !output.contains(&format!("Breakpoint 2, {GUEST_FUNCTION}")) {
        return Err(format!("the breakpoint in the guest function {GUEST_FUNCTION} was not hit"));
    }
    for local in ["first", "second"] {
        let shown = value(local).ok_or(format!("`info locals` did not show `{local}`"))?;
        if shown.parse::<u64>().is_err() {
            return Err(format!("the local `{local}` is {shown}, not a number"));
        }
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
Breakpoint 1 at 0xffff8000001105d3: file hypervisor/src/hypercall/console.rs, line 9.

Breakpoint 1, hypervisor::hypercall::console::console_io (arguments=0xffff800000149958, guest=...) at hypervisor/src/hypercall/console.rs:9
9\t    let [command, count, buffer, ..] = *arguments;
$1 = [0, 85, 18446744071562239256, 0, 0, 0]
$2 = 0xffff8000001105d3
Breakpoint 2 at 0xffffffff800062d2: file guest-kernel/src/arch/paravirt.rs, line 102.

Breakpoint 2, guest_kernel::kernel::timer_check<guest_kernel::arch::paravirt::platform::Paravirt> (arch=<optimized out>) at guest-kernel/src/kernel.rs:173
args = <optimized out>
second = 34745621
spins = <optimized out>
first = 34614750
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
            ("$1 = [0, 85", "$1 = [1, 85", "not a console write"),
            ("$2 = 0xffff8000001105d3", "$2 = 0xffff8000001105d7", "rip is 0xffff8000001105d7"),
            ("$2 = 0xffff8000001105d3", "", "printed no $2"),
            ("Breakpoint 2, guest", "Breakpoint 3, guest", "guest function"),
            ("first = 34614750", "first = <optimized out>", "`first` is <optimized out>"),
            ("second = 34745621", "", "did not show `second`"),
        ];
        for (from, to, expected) in cases {
            let error = check_scripted_session(&GOOD.replace(from, to)).unwrap_err();
            assert!(error.contains(expected), "{from} -> {to}: {error}");
        }
    }
}
