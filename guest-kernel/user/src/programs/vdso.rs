//! The vDSO: the kernel maps one into every program (`AT_SYSINFO_EHDR`), libc finds its
//! functions by name and version as musl does, and what they answer agrees with the
//! system calls: the same clocks, never going back, the unknown clocks refused with
//! EINVAL by the kernel behind them. Its clock page cannot be written, nor made writable;
//! a write kills the writer with SIGSEGV and nobody else notices.

use std::process::ExitCode;

use crate::check::{ensure, expect_eq, Outcome, Suite};
use crate::process::{errno, errno_name, in_child, Status};

const VERSION: &str = "LINUX_2.6";
const PAGE: usize = 4096;

type ClockGettime = extern "C" fn(libc::clockid_t, *mut libc::timespec) -> libc::c_int;
type Gettimeofday = extern "C" fn(*mut libc::timeval, *mut libc::c_void) -> libc::c_int;
/// `time_t` is 64 bits on x86-64 (libc deprecates its alias).
type Time = extern "C" fn(*mut i64) -> i64;
type Getcpu = extern "C" fn(*mut libc::c_uint, *mut libc::c_uint, *mut libc::c_void) -> libc::c_int;

/// The clocks a vDSO serves without the kernel.
const CLOCKS: [(libc::clockid_t, &str); 6] = [
    (libc::CLOCK_REALTIME, "REALTIME"),
    (libc::CLOCK_MONOTONIC, "MONOTONIC"),
    (libc::CLOCK_MONOTONIC_RAW, "MONOTONIC_RAW"),
    (libc::CLOCK_REALTIME_COARSE, "REALTIME_COARSE"),
    (libc::CLOCK_MONOTONIC_COARSE, "MONOTONIC_COARSE"),
    (libc::CLOCK_BOOTTIME, "BOOTTIME"),
];
/// Clock ids no kernel knows (Linux 6.17 and later take 16 to 23 for auxiliary clocks).
const UNKNOWN_CLOCKS: [libc::clockid_t; 4] = [64, 100, 1000, libc::clockid_t::MAX];

/// The vDSO's mapped image, from its ELF header to the end of its load segment.
fn image() -> Result<&'static [u8], String> {
    // SAFETY: getauxval reads the process's auxiliary vector.
    let header = unsafe { libc::getauxval(libc::AT_SYSINFO_EHDR) } as usize;
    ensure(header != 0 && header.is_multiple_of(PAGE), || format!("AT_SYSINFO_EHDR is {header:#x}"))?;
    // SAFETY: the kernel maps at least the header's page there, readable.
    let head = unsafe { std::slice::from_raw_parts(header as *const u8, 64) };
    expect_eq("the vDSO's ELF magic and class", &head[..5], b"\x7fELF\x02")?;
    let (table, entry_size, count) = (word(head, 0x20) as usize, half(head, 0x36) as usize, half(head, 0x38) as usize);
    ensure(table + entry_size * count <= PAGE, || "the program headers run off the first page".into())?;
    // SAFETY: as above; the program headers lie in the first page (checked).
    let first = unsafe { std::slice::from_raw_parts(header as *const u8, PAGE) };
    let load = (0..count)
        .map(|index| table + index * entry_size)
        .find(|&at| quarter(first, at) == 1) // PT_LOAD
        .ok_or("the vDSO has no load segment")?;
    let size = word(first, load + 0x28) as usize;
    ensure((PAGE..=64 * PAGE).contains(&size), || format!("the vDSO's load segment is {size} bytes"))?;
    // SAFETY: the load segment is mapped whole, readable, for the process's life.
    Ok(unsafe { std::slice::from_raw_parts(header as *const u8, size) })
}

fn word(bytes: &[u8], at: usize) -> u64 {
    bytes.get(at..at + 8).map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or_default()))
}
fn quarter(bytes: &[u8], at: usize) -> u32 {
    bytes.get(at..at + 4).map_or(0, |b| u32::from_le_bytes(b.try_into().unwrap_or_default()))
}
fn half(bytes: &[u8], at: usize) -> u16 {
    bytes.get(at..at + 2).map_or(0, |b| u16::from_le_bytes(b.try_into().unwrap_or_default()))
}
fn string(bytes: &[u8], at: usize) -> &[u8] {
    let rest = bytes.get(at..).unwrap_or_default();
    &rest[..rest.iter().position(|&byte| byte == 0).unwrap_or(rest.len())]
}

/// The address of `name` at `version`, found the way musl finds it: the tables from the
/// dynamic segment, every symbol of DT_HASH's chain count, its version through DT_VERSYM
/// and DT_VERDEF.
fn lookup(image: &[u8], name: &str) -> Result<usize, String> {
    let base = image.as_ptr() as usize;
    let (table, entry_size, count) = (word(image, 0x20) as usize, half(image, 0x36) as usize, half(image, 0x38));
    let (mut bias, mut dynamic) = (None, None);
    for index in 0..count as usize {
        let at = table + index * entry_size;
        match quarter(image, at) {
            1 => bias = Some(word(image, at + 8).wrapping_sub(word(image, at + 16)) as usize),
            2 => dynamic = Some(word(image, at + 8) as usize),
            _ => {}
        }
    }
    let (bias, mut at) = (bias.ok_or("no PT_LOAD")?, dynamic.ok_or("no PT_DYNAMIC")?);
    let [mut strings, mut symbols, mut hash, mut versym, mut verdef] = [None; 5];
    loop {
        let value = Some(bias.wrapping_add(word(image, at + 8) as usize));
        match word(image, at) {
            0 => break,
            4 => hash = value,
            5 => strings = value,
            6 => symbols = value,
            0x6fff_fff0 => versym = value,
            0x6fff_fffc => verdef = value,
            _ => {}
        }
        at += 16;
        ensure(at < image.len(), || "the dynamic section has no end".into())?;
    }
    let (strings, symbols, hash) =
        (strings.ok_or("no DT_STRTAB")?, symbols.ok_or("no DT_SYMTAB")?, hash.ok_or("no DT_HASH")?);
    let verdef = verdef.ok_or("no DT_VERDEF")?;
    let versym = versym.ok_or("no DT_VERSYM")?;
    for index in 0..quarter(image, hash + 4) as usize {
        let symbol = symbols + 24 * index;
        let kind_and_binding = image.get(symbol + 4).copied().unwrap_or(0);
        if kind_and_binding & 15 != 2 || !matches!(kind_and_binding >> 4, 1 | 2) || half(image, symbol + 6) == 0 {
            continue;
        }
        if string(image, strings + quarter(image, symbol) as usize) != name.as_bytes() {
            continue;
        }
        let wanted = half(image, versym + 2 * index) & 0x7fff;
        let mut definition = verdef;
        let version = loop {
            if half(image, definition + 2) & 1 == 0 && half(image, definition + 4) & 0x7fff == wanted {
                let auxiliary = definition + quarter(image, definition + 12) as usize;
                break string(image, strings + quarter(image, auxiliary) as usize);
            }
            match quarter(image, definition + 16) as usize {
                0 => return Err(format!("{name}'s version {wanted} is not defined")),
                next => definition += next,
            }
        };
        if version == VERSION.as_bytes() {
            return Ok(base + bias + word(image, symbol + 8) as usize);
        }
    }
    Err(format!("the vDSO has no {name}@{VERSION}"))
}

/// `name` from the vDSO as a function of type `F`.
fn function<F: Copy>(name: &str) -> Result<F, String> {
    let address = lookup(image()?, name)?;
    ensure(size_of::<F>() == size_of::<usize>(), || "not a function pointer type".into())?;
    // SAFETY: the symbol is a function of the vDSO with the C signature `F` names (Linux's
    // vDSO ABI), mapped executable for the process's life.
    Ok(unsafe { std::mem::transmute_copy::<usize, F>(&address) })
}

fn nanoseconds(time: &libc::timespec) -> i128 {
    i128::from(time.tv_sec) * 1_000_000_000 + i128::from(time.tv_nsec)
}

/// `clock_gettime` by the system call itself.
fn system_call_time(clock: libc::clockid_t) -> Result<i128, String> {
    let mut time = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `time` is a valid timespec for the kernel to fill.
    let result = unsafe { libc::syscall(libc::SYS_clock_gettime, clock, &mut time) };
    ensure(result == 0, || format!("the system call clock_gettime({clock}): {}", errno_name(errno())))?;
    Ok(nanoseconds(&time))
}

fn vdso_time(gettime: ClockGettime, clock: libc::clockid_t) -> Result<i128, String> {
    let mut time = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    let result = gettime(clock, &mut time);
    ensure(result == 0, || format!("__vdso_clock_gettime({clock}) returned {result}"))?;
    ensure((0..1_000_000_000).contains(&time.tv_nsec), || format!("tv_nsec {} out of range", time.tv_nsec))?;
    Ok(nanoseconds(&time))
}

fn every_function_is_found_with_its_version() -> Outcome {
    let image = image()?;
    for name in ["__vdso_clock_gettime", "__vdso_gettimeofday", "__vdso_time", "__vdso_clock_getres", "__vdso_getcpu"] {
        let address = lookup(image, name)?;
        let inside = image.as_ptr() as usize..image.as_ptr() as usize + image.len();
        ensure(inside.contains(&address), || format!("{name} at {address:#x} is outside the image"))?;
    }
    Ok(())
}

/// Each served clock read by the vDSO lies between two system-call reads around it.
fn readings_agree_with_the_system_call() -> Outcome {
    let gettime: ClockGettime = function("__vdso_clock_gettime")?;
    for (clock, name) in CLOCKS {
        for _ in 0..200 {
            let before = system_call_time(clock)?;
            let read = vdso_time(gettime, clock)?;
            let after = system_call_time(clock)?;
            ensure(before <= read && read <= after, || {
                format!("CLOCK_{name}: the vDSO read {read} between system-call reads {before} and {after}")
            })?;
            ensure(after - before < 1_000_000_000, || format!("CLOCK_{name}: a second between two reads"))?;
        }
    }
    Ok(())
}

fn the_monotonic_clock_never_goes_back() -> Outcome {
    let gettime: ClockGettime = function("__vdso_clock_gettime")?;
    let mut previous = vdso_time(gettime, libc::CLOCK_MONOTONIC)?;
    for round in 0..20_000 {
        let now = if round % 100 == 99 {
            system_call_time(libc::CLOCK_MONOTONIC)?
        } else {
            vdso_time(gettime, libc::CLOCK_MONOTONIC)?
        };
        ensure(now >= previous, || format!("read {round}: the monotonic clock went back from {previous} to {now}"))?;
        previous = now;
    }
    Ok(())
}

/// Through libc: the clock musl's `clock_gettime` reads (the vDSO, found by musl) agrees
/// with the system call.
fn libc_reads_agree_with_the_system_call() -> Outcome {
    for _ in 0..200 {
        let before = system_call_time(libc::CLOCK_MONOTONIC)?;
        let mut time = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: `time` is a valid timespec.
        let result = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut time) };
        expect_eq("clock_gettime", result, 0)?;
        let after = system_call_time(libc::CLOCK_MONOTONIC)?;
        let read = nanoseconds(&time);
        ensure(before <= read && read <= after, || format!("libc read {read} between {before} and {after}"))?;
    }
    Ok(())
}

fn unknown_clocks_are_einval_and_cpu_clocks_reach_the_kernel() -> Outcome {
    let gettime: ClockGettime = function("__vdso_clock_gettime")?;
    let getres: ClockGettime = function("__vdso_clock_getres")?;
    for clock in UNKNOWN_CLOCKS {
        let mut time = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        expect_eq(&format!("__vdso_clock_gettime({clock})"), gettime(clock, &mut time), -libc::EINVAL)?;
        expect_eq(&format!("__vdso_clock_getres({clock})"), getres(clock, &mut time), -libc::EINVAL)?;
        // SAFETY: `time` is a valid timespec.
        let result = unsafe { libc::clock_gettime(clock, &mut time) };
        expect_eq(&format!("clock_gettime({clock}) through libc"), (result, errno()), (-1, libc::EINVAL))?;
    }
    for clock in [libc::CLOCK_PROCESS_CPUTIME_ID, libc::CLOCK_THREAD_CPUTIME_ID] {
        let used = vdso_time(gettime, clock)?;
        ensure((0..3_600 * 1_000_000_000).contains(&used), || format!("CPU clock {clock} read {used} ns"))?;
    }
    Ok(())
}

fn resolutions_match_the_system_call() -> Outcome {
    let getres: ClockGettime = function("__vdso_clock_getres")?;
    for clock in 0..8 {
        let (mut from_vdso, mut from_kernel) = ([0i64; 2], [0i64; 2]);
        let result = getres(clock, from_vdso.as_mut_ptr().cast());
        // SAFETY: a valid timespec-sized buffer.
        let expected = unsafe { libc::syscall(libc::SYS_clock_getres, clock, from_kernel.as_mut_ptr()) };
        expect_eq(&format!("clock_getres({clock})'s result"), i64::from(result), expected)?;
        expect_eq(&format!("clock_getres({clock})"), from_vdso, from_kernel)?;
        expect_eq(&format!("clock_getres({clock}, NULL)"), getres(clock, std::ptr::null_mut()), 0)?;
    }
    Ok(())
}

fn gettimeofday_time_and_getcpu_agree() -> Outcome {
    let gettimeofday: Gettimeofday = function("__vdso_gettimeofday")?;
    let time: Time = function("__vdso_time")?;
    let getcpu: Getcpu = function("__vdso_getcpu")?;
    let microseconds = |value: &libc::timeval| i128::from(value.tv_sec) * 1_000_000 + i128::from(value.tv_usec);
    for _ in 0..100 {
        let (mut before, mut read, mut after) = [libc::timeval { tv_sec: 0, tv_usec: 0 }; 3].into();
        // SAFETY: valid timevals, no zone.
        unsafe { libc::syscall(libc::SYS_gettimeofday, &mut before, 0) };
        let mut zone = [-1i32; 2];
        expect_eq("__vdso_gettimeofday", gettimeofday(&mut read, zone.as_mut_ptr().cast()), 0)?;
        // SAFETY: as above.
        unsafe { libc::syscall(libc::SYS_gettimeofday, &mut after, 0) };
        ensure(microseconds(&before) <= microseconds(&read) && microseconds(&read) <= microseconds(&after), || {
            format!("gettimeofday: {read:?} not between {before:?} and {after:?}")
        })?;
        ensure((0..1_000_000).contains(&read.tv_usec), || format!("tv_usec {}", read.tv_usec))?;
        expect_eq("the time zone", zone, [0, 0])?;
        // SAFETY: `time` takes a null pointer.
        let first = unsafe { libc::syscall(libc::SYS_time, 0) };
        let mut stored: i64 = 0;
        let seconds = time(&mut stored);
        // SAFETY: as above.
        let last = unsafe { libc::syscall(libc::SYS_time, 0) };
        ensure(first <= seconds && seconds <= last && stored == seconds, || {
            format!("time: {seconds} (stored {stored}) not between {first} and {last}")
        })?;
    }
    expect_eq("__vdso_gettimeofday(NULL, NULL)", gettimeofday(std::ptr::null_mut(), std::ptr::null_mut()), 0)?;
    let (mut cpu, mut node) = (u32::MAX, u32::MAX);
    expect_eq("__vdso_getcpu", getcpu(&mut cpu, &mut node, std::ptr::null_mut()), 0)?;
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    ensure((cpu as usize) < cpus.max(1024) && node != u32::MAX, || format!("getcpu: cpu {cpu} node {node}"))?;
    expect_eq("__vdso_getcpu(NULL, NULL)", getcpu(std::ptr::null_mut(), std::ptr::null_mut(), std::ptr::null_mut()), 0)
}

/// The page below the image holds the clock (Linux's vvar too): writing it kills the
/// writer with SIGSEGV, as does writing the image; it cannot be made writable; and the
/// clock goes on for everyone else.
fn the_clock_page_and_the_image_cannot_be_written() -> Outcome {
    let header = image()?.as_ptr() as usize;
    let clock_page = header - PAGE;
    for (what, address) in [("the clock page", clock_page), ("the image", header)] {
        let status = in_child(|| {
            // SAFETY: none: this write is meant to fault, in a child.
            unsafe { (address as *mut u64).write_volatile(0x5eed) };
            0
        })?;
        expect_eq(&format!("a process that writes {what}"), status, Status::Signaled(libc::SIGSEGV))?;
    }
    // SAFETY: mprotect takes no pointer it dereferences.
    let result = unsafe { libc::mprotect(clock_page as *mut libc::c_void, PAGE, libc::PROT_READ | libc::PROT_WRITE) };
    expect_eq("mprotect(the clock page, PROT_READ | PROT_WRITE)", (result, errno()), (-1, libc::EACCES))?;
    let status = in_child(|| {
        let gettime: ClockGettime = match function("__vdso_clock_gettime") {
            Ok(gettime) => gettime,
            Err(_) => return 2,
        };
        match (system_call_time(libc::CLOCK_MONOTONIC), vdso_time(gettime, libc::CLOCK_MONOTONIC)) {
            (Ok(before), Ok(read)) if read >= before => 0,
            _ => 1,
        }
    })?;
    expect_eq("the vDSO in a forked child", status, Status::Exited(0))?;
    let gettime: ClockGettime = function("__vdso_clock_gettime")?;
    let before = system_call_time(libc::CLOCK_MONOTONIC)?;
    let read = vdso_time(gettime, libc::CLOCK_MONOTONIC)?;
    ensure(read >= before, || format!("after the faults the vDSO read {read}, before it {before}"))
}

/// Runs the cases (the program takes no arguments).
pub fn main(arguments: &[String]) -> ExitCode {
    if let Err(code) = crate::check::no_arguments(arguments) {
        return code;
    }
    let mut suite = Suite::new("vdso");
    suite.case("found", every_function_is_found_with_its_version);
    suite.case("agrees_with_system_call", readings_agree_with_the_system_call);
    suite.case("monotonic", the_monotonic_clock_never_goes_back);
    suite.case("libc", libc_reads_agree_with_the_system_call);
    suite.case("unknown_clocks", unknown_clocks_are_einval_and_cpu_clocks_reach_the_kernel);
    suite.case("resolutions", resolutions_match_the_system_call);
    suite.case("gettimeofday_time_getcpu", gettimeofday_time_and_getcpu_agree);
    suite.case("read_only", the_clock_page_and_the_image_cannot_be_written);
    suite.finish()
}
