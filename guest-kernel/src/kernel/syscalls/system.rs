//! System information and the calls a one-user, one-thread-per-process kernel answers
//! simply: identities (everyone is root), resource limits, randomness, `futex`.

use guest_kernel_core::linux::layouts::Utsname;
use guest_kernel_core::linux::Errno;
use guest_kernel_core::user_memory::{read_value, write_value, UserMemory};
use linux_raw_sys::general as uapi;

use super::{error, Call, Flow};
use crate::arch::machine::Machine;
use crate::kernel::exec::STACK_BYTES;
use crate::kernel::process::Sleep;
use crate::kernel::{Kernel, PROCESS_LIMIT};

/// The release `uname` reports: new enough for libc's checks (glibc wants ≥ 3.2).
const RELEASE: &str = "6.1.0-ringfence";

/// `uname(buf)`.
pub fn uname<M: Machine>(kernel: &mut Kernel<M>, call: &Call) -> Flow {
    let version = concat!("#1 guest-kernel ", env!("CARGO_PKG_VERSION"));
    let names = Utsname::new(["Linux", "ringfence", RELEASE, version, "x86_64", "(none)"]);
    kernel.with_memory(call.pid, |memory| write_value(memory, call.arguments[0], &names)).map(|()| 0).into()
}

/// `sysinfo(info)`.
pub fn sysinfo<M: Machine>(kernel: &mut Kernel<M>, call: &Call) -> Flow {
    let uptime = kernel.machine.now_ns() / 1_000_000_000;
    let total = kernel.memory_bytes;
    let free = (kernel.frames.limit().saturating_sub(kernel.frames.live()) as u64) * 4096;
    // struct sysinfo: uptime, loads[3], totalram, freeram, sharedram, bufferram,
    // totalswap, freeswap (longs), procs (u16 + padding), totalhigh, freehigh, mem_unit.
    let mut bytes = [0u8; 112];
    let mut put = |offset: usize, value: u64| bytes[offset..offset + 8].copy_from_slice(&value.to_le_bytes());
    put(0, uptime);
    put(32, total);
    put(40, free);
    bytes[80..82].copy_from_slice(&(kernel.processes.len() as u16).to_le_bytes());
    bytes[104..108].copy_from_slice(&1u32.to_le_bytes());
    kernel.with_memory(call.pid, |memory| memory.write(call.arguments[0], &bytes)).map(|()| 0).into()
}

/// `getrandom(buf, count, flags)`.
pub fn getrandom<M: Machine>(kernel: &mut Kernel<M>, call: &Call) -> Flow {
    let [address, count, flags, ..] = call.arguments;
    let known = u64::from(uapi::GRND_NONBLOCK | uapi::GRND_RANDOM | uapi::GRND_INSECURE);
    if flags & !known != 0 {
        return Flow::Return(error(Errno::EINVAL));
    }
    // At most a page per call, as a short read libc loops over.
    let count = count.min(4096) as usize;
    let mut bytes = [0u8; 4096];
    kernel.random.stir(kernel.machine.now_ns());
    kernel.random.fill(&mut bytes[..count]);
    kernel.with_memory(call.pid, |memory| memory.write(address, &bytes[..count])).map(|()| count as u64).into()
}

/// A resource limit: (current, maximum).
fn limit(resource: u64) -> Result<[u64; 2], Errno> {
    const INFINITY: u64 = u64::MAX;
    match u32::try_from(resource).map_err(|_| Errno::EINVAL)? {
        uapi::RLIMIT_STACK => Ok([STACK_BYTES, INFINITY]),
        uapi::RLIMIT_NOFILE => {
            let files = guest_kernel_core::descriptors::LIMIT as u64;
            Ok([files, files])
        }
        uapi::RLIMIT_NPROC => Ok([PROCESS_LIMIT as u64, PROCESS_LIMIT as u64]),
        uapi::RLIMIT_CORE => Ok([0, 0]),
        resource if resource < uapi::RLIM_NLIMITS => Ok([INFINITY, INFINITY]),
        _ => Err(Errno::EINVAL),
    }
}

/// `getrlimit(resource, rlim)`.
pub fn getrlimit<M: Machine>(kernel: &mut Kernel<M>, call: &Call) -> Flow {
    let [resource, address, ..] = call.arguments;
    limit(resource)
        .and_then(|value| kernel.with_memory(call.pid, |memory| write_value(memory, address, &value)))
        .map(|()| 0)
        .into()
}

/// `setrlimit(resource, rlim)`: limits are fixed; setting one at or below them is accepted
/// (and changes nothing), above them EPERM.
pub fn setrlimit<M: Machine>(kernel: &mut Kernel<M>, call: &Call) -> Flow {
    let [resource, address, ..] = call.arguments;
    let result = (|| {
        let current = limit(resource)?;
        let wanted: [u64; 2] = kernel.with_memory(call.pid, |memory| read_value(memory, address))?;
        if wanted[0] > wanted[1] {
            return Err(Errno::EINVAL);
        }
        if wanted[1] > current[1] {
            return Err(Errno::EPERM);
        }
        Ok(0)
    })();
    result.into()
}

/// `prlimit64(pid, resource, new, old)`.
pub fn prlimit64<M: Machine>(kernel: &mut Kernel<M>, call: &Call) -> Flow {
    let [pid, resource, new, old, ..] = call.arguments;
    if pid != 0 && pid != u64::from(call.pid) && !kernel.processes.contains_key(&(pid as u32)) {
        return Flow::Return(error(Errno::ESRCH));
    }
    if new != 0 {
        if let Flow::Return(value) = setrlimit(kernel, &Call { arguments: [resource, new, 0, 0, 0, 0], ..*call }) {
            if value != 0 {
                return Flow::Return(value);
            }
        }
    }
    if old != 0 {
        return getrlimit(kernel, &Call { arguments: [resource, old, 0, 0, 0, 0], ..*call });
    }
    limit(resource).map(|_| 0).into()
}

/// `getuid`, `getgid`, `geteuid`, `getegid`: everyone is root.
pub fn identity<M: Machine>(_kernel: &mut Kernel<M>, _call: &Call) -> Flow {
    Flow::Return(0)
}

/// `setuid` and friends: becoming root again is allowed; anything else EPERM (there is
/// no other user).
pub fn set_identity<M: Machine>(_kernel: &mut Kernel<M>, call: &Call) -> Flow {
    let ok = call.arguments[..3].iter().all(|&id| id as u32 == 0 || id as u32 == u32::MAX);
    Flow::Return(if ok { 0 } else { error(Errno::EPERM) })
}

/// `getresuid(ruid, euid, suid)` and `getresgid`.
pub fn get_three_identities<M: Machine>(kernel: &mut Kernel<M>, call: &Call) -> Flow {
    let [first, second, third, ..] = call.arguments;
    kernel
        .with_memory(call.pid, |memory| {
            for address in [first, second, third] {
                write_value(memory, address, &0u32)?;
            }
            Ok(0)
        })
        .into()
}

/// `getgroups(size, list)`: no supplementary groups.
pub fn getgroups<M: Machine>(_kernel: &mut Kernel<M>, _call: &Call) -> Flow {
    Flow::Return(0)
}

/// `setgroups(size, list)`: only the empty list.
pub fn setgroups<M: Machine>(_kernel: &mut Kernel<M>, call: &Call) -> Flow {
    Flow::Return(if call.arguments[0] == 0 { 0 } else { error(Errno::EPERM) })
}

/// Calls that need nothing from a one-thread process (`set_robust_list`).
pub fn accepted<M: Machine>(_kernel: &mut Kernel<M>, _call: &Call) -> Flow {
    Flow::Return(0)
}

/// `sched_getaffinity(pid, size, mask)`: one processor.
pub fn sched_getaffinity<M: Machine>(kernel: &mut Kernel<M>, call: &Call) -> Flow {
    let [_, size, address, ..] = call.arguments;
    if size < 8 || size % 8 != 0 {
        return Flow::Return(error(Errno::EINVAL));
    }
    kernel.with_memory(call.pid, |memory| write_value(memory, address, &1u64)).map(|()| 8).into()
}

/// `getcpu(cpu, node)`: processor 0, node 0.
pub fn getcpu<M: Machine>(kernel: &mut Kernel<M>, call: &Call) -> Flow {
    let [cpu, node, ..] = call.arguments;
    kernel
        .with_memory(call.pid, |memory| {
            for address in [cpu, node] {
                if address != 0 {
                    write_value(memory, address, &0u32)?;
                }
            }
            Ok(0)
        })
        .into()
}

/// `futex(address, op, value, timeout)`. With one thread per process nobody else can
/// wake a waiter, so WAIT with the value unchanged sleeps until a signal or its timeout;
/// WAKE wakes nobody.
pub fn futex<M: Machine>(kernel: &mut Kernel<M>, call: &Call) -> Flow {
    let [address, op, value, timeout, ..] = call.arguments;
    let command = op as u32 & !(uapi::FUTEX_PRIVATE_FLAG | uapi::FUTEX_CLOCK_REALTIME);
    match command {
        uapi::FUTEX_WAKE => Flow::Return(0),
        uapi::FUTEX_WAIT => {
            if address % 4 != 0 {
                return Flow::Return(error(Errno::EINVAL));
            }
            if call.timed_out() {
                return Flow::Return(error(Errno::ETIMEDOUT));
            }
            let current = match kernel.with_memory(call.pid, |memory| {
                let mut word = [0u8; 4];
                memory.read(address, &mut word)?;
                Ok(u32::from_le_bytes(word))
            }) {
                Ok(current) => current,
                Err(errno) => return Flow::Return(error(errno)),
            };
            if current != value as u32 {
                return Flow::Return(error(Errno::EAGAIN));
            }
            let timeout_ns = if timeout == 0 {
                None
            } else {
                match kernel.with_memory(call.pid, |memory| {
                    read_value::<guest_kernel_core::linux::layouts::Timespec>(memory, timeout)
                }) {
                    Ok(timeout) => match timeout.to_nanoseconds() {
                        Some(ns) => Some(ns),
                        None => return Flow::Return(error(Errno::EINVAL)),
                    },
                    Err(errno) => return Flow::Return(error(errno)),
                }
            };
            Flow::Block { sleep: Sleep::Futex(address), timeout_ns, mask: None }
        }
        _ => Flow::Return(error(Errno::ENOSYS)),
    }
}
