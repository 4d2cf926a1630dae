//! lmbench as a machine's first process: Linux started as `rdinit=/bin/lmbench` runs
//! nothing else, so lmbench itself makes `/dev/null` available and powers the machine off
//! when it is done (a first process that exits panics Linux).

use std::ffi::CStr;

use crate::process::{errno, errno_name};

/// Whether this is the first process (PID 1) of its PID namespace.
pub fn is_first_process() -> bool {
    // SAFETY: getpid touches no memory.
    unsafe { libc::getpid() == 1 }
}

fn can_open(path: &CStr) -> bool {
    // SAFETY: `path` is NUL-terminated; the descriptor is closed at once.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        fd >= 0 && libc::close(fd) == 0
    }
}

/// Makes `/dev/null` openable if it is not: mounts devtmpfs (where Linux makes its device
/// nodes) on `/dev`, making `/dev` first if the root file system has none.
pub fn provide_dev_null() -> Result<(), String> {
    if can_open(c"/dev/null") {
        return Ok(());
    }
    // SAFETY: NUL-terminated literals; no data argument.
    unsafe {
        if libc::mkdir(c"/dev".as_ptr(), 0o755) == -1 && errno() != libc::EEXIST {
            return Err(format!("/dev/null is missing and /dev cannot be made: {}", errno_name(errno())));
        }
        let mounted = libc::mount(c"devtmpfs".as_ptr(), c"/dev".as_ptr(), c"devtmpfs".as_ptr(), 0, std::ptr::null());
        if mounted == -1 {
            return Err(format!(
                "/dev/null is missing and devtmpfs cannot be mounted on /dev: {} (a kernel without CONFIG_DEVTMPFS?)",
                errno_name(errno())
            ));
        }
    }
    if can_open(c"/dev/null") {
        Ok(())
    } else {
        Err(format!("/dev/null cannot be opened even with devtmpfs on /dev: {}", errno_name(errno())))
    }
}

/// Powers the machine off once standard output is flushed (the caller's duty) and the
/// file systems are synced; returns only if the kernel refuses, so that the caller can
/// exit instead.
pub fn power_off() {
    // SAFETY: sync and reboot take no pointers; reboot only returns on failure.
    unsafe {
        libc::sync();
        libc::reboot(libc::RB_POWER_OFF);
    }
}
