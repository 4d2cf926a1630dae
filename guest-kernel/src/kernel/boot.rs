//! Boot: the banner, the command line, the initramfs unpacked into the file system, and
//! init started.

extern crate alloc;

use alloc::vec::Vec;
use core::fmt;

use guest_kernel_core::command_line;
use guest_kernel_core::process_tree::INIT;

use super::Kernel;
use crate::arch::machine::Machine;
use crate::console::kprintln;

/// Shutdown codes of a kernel that could not start init (a shell's 127 is "command not
/// found"; these say why the kernel could not run anything).
pub const BAD_COMMAND_LINE: u32 = 125;
/// The initramfs is damaged or missing.
pub const BAD_INITRAMFS: u32 = 126;
/// init could not be started.
pub const NO_INIT: u32 = 127;

/// Share of memory the file system may hold (the initramfs included).
const FILE_SYSTEM_SHARE: u64 = 4;
/// Memory kept for the kernel's own structures (process table, page records, pipes),
/// besides the file system.
const KERNEL_RESERVE: u64 = 8 << 20;

/// Collects [`Machine::describe`] into a fixed buffer.
struct Description {
    text: [u8; 256],
    length: usize,
}

impl fmt::Write for Description {
    fn write_str(&mut self, piece: &str) -> fmt::Result {
        let end = (self.length + piece.len()).min(self.text.len());
        let taken = end - self.length;
        self.text[self.length..end].copy_from_slice(&piece.as_bytes()[..taken]);
        self.length = end;
        Ok(())
    }
}

/// Boots: returns the kernel with init ready, or the shutdown code of a boot that failed.
pub fn boot<M: Machine>(machine: &'static M) -> Result<Kernel<M>, u32> {
    let info = machine.boot_info();
    let options = match command_line::parse(info.command_line.as_bytes()) {
        Ok(options) => options,
        Err(error) => {
            kprintln!("guest-kernel: command line '{}': {error}", info.command_line);
            return Err(BAD_COMMAND_LINE);
        }
    };
    if !options.quiet {
        let mut description = Description { text: [0; 256], length: 0 };
        let _ = machine.describe(&mut description);
        kprintln!(
            "guest-kernel {}: {}",
            super::VERSION,
            core::str::from_utf8(&description.text[..description.length]).unwrap_or("?")
        );
        kprintln!(
            "guest-kernel: memory {} KiB, initramfs {} KiB, command line '{}'",
            info.memory_bytes / 1024,
            info.initramfs.len() / 1024,
            info.command_line
        );
    }
    if info.initramfs.is_empty() {
        kprintln!("guest-kernel: no initramfs: boot with one (cargo xtask run builds and passes it)");
        return Err(BAD_INITRAMFS);
    }
    let budget = (info.memory_bytes / FILE_SYSTEM_SHARE).max(info.initramfs.len() as u64 * 2);
    let fs = match super::unpack(info.initramfs, budget) {
        Ok(fs) => fs,
        Err(error) => {
            kprintln!("guest-kernel: initramfs: {error}");
            return Err(BAD_INITRAMFS);
        }
    };
    let reserved = fs.usage().0 + info.initramfs.len() as u64 + KERNEL_RESERVE;
    let frame_limit = Kernel::<M>::frame_limit(info.memory_bytes, reserved);
    let init_path = options.init.clone();
    let mut arguments: Vec<Vec<u8>> = alloc::vec![init_path.clone()];
    arguments.extend(options.command.iter().cloned());
    let mut kernel = match Kernel::new(machine, fs, options, info.memory_bytes, frame_limit) {
        Ok(kernel) => kernel,
        Err(error) => {
            kprintln!("guest-kernel: file system: cannot provide /dev and /proc: {error}");
            return Err(BAD_INITRAMFS);
        }
    };
    // What the console is; init sets the rest of its environment (PATH, HOME) itself.
    let environment: Vec<Vec<u8>> = alloc::vec![b"TERM=linux".to_vec()];
    if let Err(error) = kernel.start_init(&init_path, &arguments, &environment) {
        kprintln!("guest-kernel: cannot run init '{}': {error}", alloc::string::String::from_utf8_lossy(&init_path));
        return Err(NO_INIT);
    }
    debug_assert!(kernel.processes.contains_key(&INIT));
    Ok(kernel)
}
