//! From a system call number and its six argument registers to the file call that serves
//! it. The kernel's dispatcher asks here first (or for the numbers it routes here);
//! `None` means the number is not a file call.

use linux_raw_sys::general as uapi;

use super::caller::Caller;
use super::outcome::CallResult;
use super::world::Files;
use super::{control, directories, io, metadata, open, readiness, socket};

/// Every system call number [`dispatch`] serves.
pub const CALLS: &[u32] = &[
    uapi::__NR_read,
    uapi::__NR_write,
    uapi::__NR_open,
    uapi::__NR_close,
    uapi::__NR_stat,
    uapi::__NR_fstat,
    uapi::__NR_lstat,
    uapi::__NR_poll,
    uapi::__NR_lseek,
    uapi::__NR_ioctl,
    uapi::__NR_pread64,
    uapi::__NR_pwrite64,
    uapi::__NR_readv,
    uapi::__NR_writev,
    uapi::__NR_access,
    uapi::__NR_pipe,
    uapi::__NR_select,
    uapi::__NR_dup,
    uapi::__NR_dup2,
    uapi::__NR_sendto,
    uapi::__NR_recvfrom,
    uapi::__NR_shutdown,
    uapi::__NR_socketpair,
    uapi::__NR_getsockopt,
    uapi::__NR_fcntl,
    uapi::__NR_fsync,
    uapi::__NR_fdatasync,
    uapi::__NR_truncate,
    uapi::__NR_ftruncate,
    uapi::__NR_getcwd,
    uapi::__NR_chdir,
    uapi::__NR_fchdir,
    uapi::__NR_rename,
    uapi::__NR_mkdir,
    uapi::__NR_rmdir,
    uapi::__NR_creat,
    uapi::__NR_link,
    uapi::__NR_unlink,
    uapi::__NR_symlink,
    uapi::__NR_readlink,
    uapi::__NR_chmod,
    uapi::__NR_fchmod,
    uapi::__NR_chown,
    uapi::__NR_fchown,
    uapi::__NR_lchown,
    uapi::__NR_umask,
    uapi::__NR_sync,
    uapi::__NR_getdents64,
    uapi::__NR_openat,
    uapi::__NR_mkdirat,
    uapi::__NR_fchownat,
    uapi::__NR_newfstatat,
    uapi::__NR_unlinkat,
    uapi::__NR_renameat,
    uapi::__NR_linkat,
    uapi::__NR_symlinkat,
    uapi::__NR_readlinkat,
    uapi::__NR_fchmodat,
    uapi::__NR_faccessat,
    uapi::__NR_pselect6,
    uapi::__NR_ppoll,
    uapi::__NR_utimensat,
    uapi::__NR_dup3,
    uapi::__NR_pipe2,
    uapi::__NR_preadv,
    uapi::__NR_pwritev,
    uapi::__NR_syncfs,
    uapi::__NR_renameat2,
    uapi::__NR_statx,
    uapi::__NR_faccessat2,
    uapi::__NR_fchmodat2,
];

/// Runs file system call `number` with arguments `a` (RDI, RSI, RDX, R10, R8, R9), or
/// `None` if `number` is not one.
pub fn dispatch(files: &mut Files, caller: &mut Caller<'_>, number: u64, a: [u64; 6]) -> Option<CallResult> {
    let (f, c) = (files, caller);
    Some(match u32::try_from(number).ok()? {
        uapi::__NR_read => io::read(f, c, a[0], a[1], a[2]),
        uapi::__NR_write => io::write(f, c, a[0], a[1], a[2]),
        uapi::__NR_readv => io::readv(f, c, a[0], a[1], a[2]),
        uapi::__NR_writev => io::writev(f, c, a[0], a[1], a[2]),
        uapi::__NR_pread64 => io::pread64(f, c, a[0], a[1], a[2], a[3]),
        uapi::__NR_pwrite64 => io::pwrite64(f, c, a[0], a[1], a[2], a[3]),
        uapi::__NR_preadv => io::preadv(f, c, a[0], a[1], a[2], a[3]),
        uapi::__NR_pwritev => io::pwritev(f, c, a[0], a[1], a[2], a[3]),
        uapi::__NR_lseek => io::lseek(f, c, a[0], a[1], a[2]),
        uapi::__NR_open => open::open(f, c, a[0], a[1], a[2]),
        uapi::__NR_openat => open::openat(f, c, a[0], a[1], a[2], a[3]),
        uapi::__NR_creat => open::creat(f, c, a[0], a[1]),
        uapi::__NR_close => open::close(f, c, a[0]),
        uapi::__NR_dup => open::dup(f, c, a[0]),
        uapi::__NR_dup2 => open::dup2(f, c, a[0], a[1]),
        uapi::__NR_dup3 => open::dup3(f, c, a[0], a[1], a[2]),
        uapi::__NR_fcntl => open::fcntl(f, c, a[0], a[1], a[2]),
        uapi::__NR_pipe => open::pipe(f, c, a[0]),
        uapi::__NR_pipe2 => open::pipe2(f, c, a[0], a[1]),
        uapi::__NR_socketpair => socket::socketpair(f, c, a[0], a[1], a[2], a[3]),
        uapi::__NR_shutdown => socket::shutdown(f, c, a[0], a[1]),
        uapi::__NR_sendto => socket::sendto(f, c, a[0], a[1], a[2], a[3], [a[4], a[5]]),
        uapi::__NR_recvfrom => socket::recvfrom(f, c, a[0], a[1], a[2], a[3], [a[4], a[5]]),
        uapi::__NR_getsockopt => socket::getsockopt(f, c, a[0], a[1], a[2], a[3], a[4]),
        uapi::__NR_stat => metadata::stat(f, c, a[0], a[1]),
        uapi::__NR_fstat => metadata::fstat(f, c, a[0], a[1]),
        uapi::__NR_lstat => metadata::lstat(f, c, a[0], a[1]),
        uapi::__NR_newfstatat => metadata::newfstatat(f, c, a[0], a[1], a[2], a[3]),
        uapi::__NR_statx => metadata::statx(f, c, a[0], a[1], a[2], a[3], a[4]),
        uapi::__NR_access => metadata::access(f, c, a[0], a[1]),
        uapi::__NR_faccessat => metadata::faccessat(f, c, a[0], a[1], a[2]),
        uapi::__NR_faccessat2 => metadata::faccessat2(f, c, a[0], a[1], a[2], a[3]),
        uapi::__NR_readlink => metadata::readlink(f, c, a[0], a[1], a[2]),
        uapi::__NR_readlinkat => metadata::readlinkat(f, c, a[0], a[1], a[2], a[3]),
        uapi::__NR_chmod => metadata::chmod(f, c, a[0], a[1]),
        uapi::__NR_fchmod => metadata::fchmod(f, c, a[0], a[1]),
        uapi::__NR_fchmodat => metadata::fchmodat(f, c, a[0], a[1], a[2]),
        uapi::__NR_fchmodat2 => metadata::fchmodat2(f, c, a[0], a[1], a[2], a[3]),
        uapi::__NR_chown => metadata::chown(f, c, a[0], a[1], a[2]),
        uapi::__NR_fchown => metadata::fchown(f, c, a[0], a[1], a[2]),
        uapi::__NR_lchown => metadata::lchown(f, c, a[0], a[1], a[2]),
        uapi::__NR_fchownat => metadata::fchownat(f, c, a[0], a[1], a[2], a[3], a[4]),
        uapi::__NR_utimensat => metadata::utimensat(f, c, a[0], a[1], a[2], a[3]),
        uapi::__NR_truncate => metadata::truncate(f, c, a[0], a[1]),
        uapi::__NR_ftruncate => metadata::ftruncate(f, c, a[0], a[1]),
        uapi::__NR_sync => metadata::sync(f, c),
        uapi::__NR_fsync | uapi::__NR_fdatasync | uapi::__NR_syncfs => metadata::fsync(f, c, a[0]),
        uapi::__NR_getdents64 => directories::getdents64(f, c, a[0], a[1], a[2]),
        uapi::__NR_mkdir => directories::mkdir(f, c, a[0], a[1]),
        uapi::__NR_mkdirat => directories::mkdirat(f, c, a[0], a[1], a[2]),
        uapi::__NR_rmdir => directories::rmdir(f, c, a[0]),
        uapi::__NR_unlink => directories::unlink(f, c, a[0]),
        uapi::__NR_unlinkat => directories::unlinkat(f, c, a[0], a[1], a[2]),
        uapi::__NR_rename => directories::rename(f, c, a[0], a[1]),
        uapi::__NR_renameat => directories::renameat(f, c, a[0], a[1], a[2], a[3]),
        uapi::__NR_renameat2 => directories::renameat2(f, c, a[0], a[1], a[2], a[3], a[4]),
        uapi::__NR_link => directories::link(f, c, a[0], a[1]),
        uapi::__NR_linkat => directories::linkat(f, c, a[0], a[1], a[2], a[3], a[4]),
        uapi::__NR_symlink => directories::symlink(f, c, a[0], a[1]),
        uapi::__NR_symlinkat => directories::symlinkat(f, c, a[0], a[1], a[2]),
        uapi::__NR_chdir => directories::chdir(f, c, a[0]),
        uapi::__NR_fchdir => directories::fchdir(f, c, a[0]),
        uapi::__NR_getcwd => directories::getcwd(f, c, a[0], a[1]),
        uapi::__NR_umask => directories::umask(f, c, a[0]),
        uapi::__NR_ioctl => control::ioctl(f, c, a[0], a[1], a[2]),
        uapi::__NR_poll => readiness::poll(f, c, a[0], a[1], a[2]),
        uapi::__NR_ppoll => readiness::ppoll(f, c, a[0], a[1], a[2], a[3], a[4]),
        uapi::__NR_select => readiness::select(f, c, a[0], [a[1], a[2], a[3]], a[4]),
        uapi::__NR_pselect6 => readiness::pselect6(f, c, a[0], [a[1], a[2], a[3]], a[4], a[5]),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::World;
    use super::*;

    #[test]
    fn every_listed_call_is_served_and_others_are_not() {
        let mut world = World::new();
        for (index, &number) in CALLS.iter().enumerate() {
            assert!(!CALLS[..index].contains(&number), "{number} listed twice");
            // Every argument 0: whatever the call answers, it answers without panicking.
            let _ = world.call(number, &[]);
        }
        let mut caller_files = crate::files::ProcessFiles::new(&mut world.files);
        let mut caller = Caller {
            pid: 7,
            process: &mut caller_files,
            memory: &mut world.memory,
            processes: &world.processes,
            timed_out: false,
        };
        for number in [uapi::__NR_getpid, uapi::__NR_execve, uapi::__NR_mmap, uapi::__NR_socket, uapi::__NR_connect] {
            assert!(dispatch(&mut world.files, &mut caller, u64::from(number), [0; 6]).is_none());
        }
        assert!(dispatch(&mut world.files, &mut caller, 1 << 32, [0; 6]).is_none(), "not a 32-bit number");
        assert_eq!(CALLS.len(), 71);
    }
}
