//! Booting Debian's Linux with the lmbench program as PID 1, natively and as Xen's dom0
//! (`cargo xtask bench --kernel`'s `linux-native` and `linux-xen` columns).
//!
//! The initramfs holds only `/bin/lmbench` and `/bin/lmbench-true`, the same bytes as in
//! guest-kernel's initramfs (taken out of it), so all four columns run one binary. Linux
//! starts it as `rdinit=` with the words after `--` on its command line as arguments; it
//! mounts devtmpfs itself and powers the machine off when done.
//!
//! Natively, QEMU boots the bzImage with `-kernel`/`-initrd`/`-append`. On Xen, QEMU's
//! multiboot loader boots Xen (`-kernel`, its command line in `-append`) with two modules
//! in `-initrd`: the kernel with its command line, then the initramfs. Xen gives dom0 a
//! fixed 512 MiB (`dom0_mem`), and dom0's console is Xen's (`hvc0`), which Xen writes to
//! the serial port.

use crate::cpio::{self, Node};
use crate::{lmbench, qemu, Error, Result};
use std::path::{Path, PathBuf};

/// Linux's command line, before the `--` that starts the program's arguments: the serial
/// console, no boot chatter, an immediate reboot on panic (so a program that dies ends
/// QEMU, which runs with `-no-reboot`), and the program as the first process.
const LINUX_OPTIONS: &str = "quiet panic=-1 rdinit=/bin/lmbench";

/// Linux's console natively and as dom0.
const NATIVE_CONSOLE: &str = "console=ttyS0";
const DOM0_CONSOLE: &str = "console=hvc0";

/// The memory Xen gives dom0.
pub const DOM0_MEMORY: &str = "512M";

/// Xen's command line: its console on the first serial port, dom0's memory, and no
/// background scrubbing of free memory after boot. Xen scrubs in its idle loop, so a
/// dom0 that blocks (the pipe and fork rows, a timer) would otherwise wake late behind
/// scrub chunks for the first seconds. The `xen` column of `cargo xtask bench` boots Xen
/// the same way with a smaller dom0.
pub fn xen_options(dom0_memory: &str) -> String {
    format!("console=com1 com1=115200,8n1 dom0_mem={dom0_memory} bootscrub=0")
}

/// The initramfs holding the two programs of guest-kernel's `initramfs` (a cpio newc
/// archive): `/bin/lmbench` and `/bin/lmbench-true`, and an empty `/dev` for devtmpfs.
pub fn initramfs(guest_kernel_initramfs: &[u8]) -> Result<Vec<u8>> {
    let mut nodes = vec![Node::directory("bin", 0o755), Node::directory("dev", 0o755)];
    for program in [lmbench::PROGRAM, lmbench::TRUE_PROGRAM] {
        nodes.push(Node::file(&program[1..], program_bytes(guest_kernel_initramfs, program)?, 0o755));
    }
    cpio::write(&nodes)
}

/// The contents of the regular file at `path` (absolute) in a cpio archive.
fn program_bytes(archive: &[u8], path: &str) -> Result<Vec<u8>> {
    use guest_kernel_core::fs::cpio::Archive;
    use guest_kernel_core::fs::FileType;
    let wanted = path.trim_start_matches('/').as_bytes();
    for entry in Archive::new(archive) {
        let entry = entry.map_err(|error| Error::failed(format!("guest-kernel's initramfs is damaged: {error:?}")))?;
        if entry.path == wanted && entry.kind() == Some(FileType::Regular) && !entry.data.is_empty() {
            return Ok(entry.data.to_vec());
        }
    }
    Err(Error::failed(format!(
        "guest-kernel's initramfs has no program {path}: the lmbench programs are built with guest-kernel's userland (guest-kernel/user)"
    )))
}

/// Checks the program's arguments can go on Linux's command line as they are.
fn check_arguments(arguments: &[String]) -> Result<()> {
    match arguments.iter().find(|word| word.is_empty() || !word.bytes().all(|byte| byte.is_ascii_graphic())) {
        Some(word) => Err(Error::usage(format!("lmbench argument {word:?} cannot go on Linux's command line"))),
        None => Ok(()),
    }
}

/// Linux's whole command line with `console` and the program's `arguments`.
fn command_line(console: &str, arguments: &[String]) -> Result<String> {
    check_arguments(arguments)?;
    let mut line = format!("{console} {LINUX_OPTIONS}");
    if !arguments.is_empty() {
        line.push_str(" -- ");
        line.push_str(&arguments.join(" "));
    }
    Ok(line)
}

/// One Linux boot: what QEMU's `-kernel`, `-initrd` and `-append` get.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Boot {
    /// `-kernel`: Linux, or Xen.
    pub kernel: PathBuf,
    /// `-initrd`: the initramfs, or Xen's module list.
    pub initrd: PathBuf,
    /// `-append`: Linux's command line, or Xen's.
    pub append: String,
}

/// Linux booted directly.
pub fn native(vmlinuz: &Path, initramfs: &Path, arguments: &[String]) -> Result<Boot> {
    Ok(Boot {
        kernel: vmlinuz.to_path_buf(),
        initrd: initramfs.to_path_buf(),
        append: command_line(NATIVE_CONSOLE, arguments)?,
    })
}

/// Linux booted as Xen's dom0.
pub fn on_xen(xen: &Path, vmlinuz: &Path, initramfs: &Path, arguments: &[String]) -> Result<Boot> {
    let dom0 = command_line(DOM0_CONSOLE, arguments)?;
    Ok(Boot {
        kernel: xen.to_path_buf(),
        initrd: qemu::multiboot_modules(&[(vmlinuz, &dom0), (initramfs, "")])?,
        append: xen_options(DOM0_MEMORY),
    })
}

/// Xen's banner line (`(XEN) Xen version 4.17.7 (Debian ...) ...`), without the prefix.
pub fn xen_banner(console: &str) -> Option<String> {
    console.lines().find_map(|line| {
        let banner = line.trim_end().strip_prefix("(XEN) ")?;
        banner.starts_with("Xen version ").then(|| banner.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        text.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn linux_runs_the_program_as_pid_1_with_its_arguments() {
        let boot = native(Path::new("/d/vmlinuz"), Path::new("/r/lm.cpio"), &words("--iterations 5")).unwrap();
        assert_eq!(boot.append, "console=ttyS0 quiet panic=-1 rdinit=/bin/lmbench -- --iterations 5");
        assert_eq!(boot.initrd, Path::new("/r/lm.cpio"));
        let bare = native(Path::new("/d/vmlinuz"), Path::new("/r/lm.cpio"), &[]).unwrap();
        assert_eq!(bare.append, "console=ttyS0 quiet panic=-1 rdinit=/bin/lmbench");
        for bad in ["", "two words", "tab\t"] {
            let error = native(Path::new("/v"), Path::new("/i"), &[bad.to_string()]).unwrap_err();
            assert_eq!(error.exit_code, crate::error::EXIT_USAGE, "{bad:?}");
        }
    }

    #[test]
    fn xen_gets_linux_and_the_initramfs_as_modules() {
        let boot =
            on_xen(Path::new("/d/xen"), Path::new("/d/vmlinuz"), Path::new("/r/lm.cpio"), &words("--row fork_exit"))
                .unwrap();
        assert_eq!(boot.kernel, Path::new("/d/xen"));
        assert_eq!(boot.append, "console=com1 com1=115200,8n1 dom0_mem=512M bootscrub=0");
        assert_eq!(
            boot.initrd.to_str().unwrap(),
            "/d/vmlinuz console=hvc0 quiet panic=-1 rdinit=/bin/lmbench -- --row fork_exit,/r/lm.cpio"
        );
    }

    #[test]
    fn the_programs_come_out_of_guest_kernels_initramfs() {
        let guest_kernel = cpio::write(&[
            Node::directory("bin", 0o755),
            Node::file("bin/busybox", b"busybox".to_vec(), 0o755),
            Node::file("bin/lmbench", b"\x7fELF lmbench".to_vec(), 0o755),
            Node::file("bin/lmbench-true", b"\x7fELF true".to_vec(), 0o755),
        ])
        .unwrap();
        let ours = initramfs(&guest_kernel).unwrap();
        let entries: Vec<_> = guest_kernel_core::fs::cpio::Archive::new(&ours).map(|entry| entry.unwrap()).collect();
        let listed: Vec<(&[u8], &[u8])> = entries.iter().map(|entry| (entry.path, entry.data)).collect();
        assert_eq!(
            listed,
            [
                (&b"bin"[..], &b""[..]),
                (b"dev", b""),
                (b"bin/lmbench", b"\x7fELF lmbench"),
                (b"bin/lmbench-true", b"\x7fELF true")
            ]
        );
        let without = cpio::write(&[Node::file("bin/lmbench", b"x".to_vec(), 0o755)]).unwrap();
        let error = initramfs(&without).unwrap_err();
        assert!(error.message.contains("has no program /bin/lmbench-true"), "{}", error.message);
    }

    #[test]
    fn xens_banner_is_found() {
        let console = "(XEN) Built-in command line: x\n(XEN) Xen version 4.17.7 (Debian 4.17.7+13) debug=n\r\n";
        assert_eq!(xen_banner(console).unwrap(), "Xen version 4.17.7 (Debian 4.17.7+13) debug=n");
        assert_eq!(xen_banner("Xen version 1"), None);
    }
}
