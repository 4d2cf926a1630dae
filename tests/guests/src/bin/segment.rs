//! Conformance: `set_segment_base` (FS, GS_KERNEL, GS_USER).
//!
//! * `bases`: good FS and GS_KERNEL bases are read through `fs:[n]` / `gs:[n]`; a
//!   non-canonical base (XSA-193) or an unknown segment is `-EINVAL` and leaves the old
//!   base working; any canonical base is accepted, the hypervisor range included (it is
//!   only a number until used).
//! * `modes`: GS_USER is live in guest-user mode and GS_KERNEL again once back in
//!   guest-kernel mode; FS is the same in both.
#![cfg_attr(target_os = "none", no_std, no_main)]

use conformance_guests::words;
use guest_rt::abi::layout::{HYPERVISOR_START, PAGE_SIZE};
use guest_rt::abi::trap::{segment as which, vector};
use guest_rt::abi::{Errno, StartInfo};
use guest_rt::hypercall::set_segment_base;
use guest_rt::println;
use guest_rt::segment::{self, read_fs, read_gs};
use guest_rt::test::Reporter;
use guest_rt::trap::{self, TrapAction, TrapContext};
use guest_rt::user::{self, SyscallAction, UserExit, UserSpace};

guest_rt::entry!(segments);

#[repr(C, align(4096))]
struct Page([u64; 512]);

static FS_DATA: Page = {
    let mut words = [0u64; 512];
    words[0] = 0xf5f5_0000_0000_0001;
    words[1] = 0xf5f5_0000_0000_0002;
    Page(words)
};
static FS_OTHER: Page = {
    let mut words = [0u64; 512];
    words[0] = 0xf5f5_0000_0000_0003;
    Page(words)
};
static GS_DATA: Page = {
    let mut words = [0u64; 512];
    words[0] = 0x6565_0000_0000_0001;
    words[1] = 0x6565_0000_0000_0002;
    Page(words)
};

const USER_GS_VALUE: u64 = 0x05e6_0000_0000_0001;
const USER_FS_VALUE: u64 = 0x05f5_0000_0000_0002;

#[cfg(target_arch = "x86_64")]
core::arch::global_asm!(
    ".pushsection .text.segment_user, \"ax\", @progbits",
    ".balign 4096",
    ".global segment_user_start",
    "segment_user_start:",
    ".global segment_user_gs",
    "segment_user_gs:",
    "mov rdi, qword ptr gs:[0]",
    "mov eax, {exit}",
    "syscall",
    "ud2",
    ".global segment_user_fs",
    "segment_user_fs:",
    "mov rdi, qword ptr fs:[8]",
    "mov eax, {exit}",
    "syscall",
    "ud2",
    ".balign 4096",
    ".global segment_user_end",
    "segment_user_end:",
    ".popsection",
    exit = const user::SYSCALL_EXIT,
);

extern "C" {
    fn segment_user_start();
    fn segment_user_end();
    fn segment_user_gs();
    fn segment_user_fs();
}

fn address(function: unsafe extern "C" fn()) -> u64 {
    function as *const () as u64
}

fn page(data: &Page) -> u64 {
    data as *const Page as u64
}

fn read_fs0() -> u64 {
    // SAFETY: FS base is one of this guest's readable pages when this is called.
    unsafe { read_fs(0) }
}

fn read_gs0() -> u64 {
    // SAFETY: GS base is `GS_DATA` when this is called.
    unsafe { read_gs(0) }
}

fn bases(reporter: &mut Reporter) {
    reporter.expect_eq(segment::set_fs_base(page(&FS_DATA)), Ok(()), "FS base := FS_DATA");
    reporter.expect_eq(read_fs0(), FS_DATA.0[0], "fs:[0]");
    // SAFETY: FS base is FS_DATA.
    reporter.expect_eq(unsafe { read_fs(8) }, FS_DATA.0[1], "fs:[8]");
    reporter.expect_eq(segment::set_gs_kernel_base(page(&GS_DATA)), Ok(()), "GS_KERNEL base := GS_DATA");
    reporter.expect_eq(read_gs0(), GS_DATA.0[0], "gs:[0]");
    // SAFETY: GS base is GS_DATA.
    reporter.expect_eq(unsafe { read_gs(8) }, GS_DATA.0[1], "gs:[8]");
    reporter.expect_eq(segment::set_gs_user_base(page(&FS_OTHER)), Ok(()), "GS_USER base (not live in kernel mode)");
    reporter.expect_eq(read_gs0(), GS_DATA.0[0], "gs:[0] unchanged by GS_USER");

    for (name, segment) in [("FS", which::FS), ("GS_KERNEL", which::GS_KERNEL), ("GS_USER", which::GS_USER)] {
        for base in [0x0000_8000_0000_0000, 0xffff_7fff_ffff_ffff, 0x8000_0000_0000_0000, 0x0001_0000_0000_0000] {
            reporter.expect_errno(
                set_segment_base(segment, base),
                Errno::EINVAL,
                format_args!("{name} base {base:#x}"),
            );
        }
    }
    for bad in [3, 4, 0x100, u64::MAX] {
        reporter.expect_errno(set_segment_base(bad, page(&FS_DATA)), Errno::EINVAL, format_args!("segment {bad}"));
    }
    // The refusals left the bases alone.
    reporter.expect_eq(read_fs0(), FS_DATA.0[0], "fs:[0] after refused bases");
    reporter.expect_eq(read_gs0(), GS_DATA.0[0], "gs:[0] after refused bases");
    // Any canonical number is accepted.
    for base in [0, 0x0000_7fff_ffff_f000, HYPERVISOR_START, 0xffff_ffff_ffff_f000] {
        reporter.expect_eq(set_segment_base(which::GS_USER, base), Ok(0), format_args!("GS_USER base {base:#x}"));
    }
    reporter.expect_eq(segment::set_fs_base(HYPERVISOR_START), Ok(()), "FS base in the hypervisor range (a number)");
    reporter.expect_eq(segment::set_fs_base(page(&FS_OTHER)), Ok(()), "FS base := FS_OTHER");
    reporter.expect_eq(read_fs0(), FS_OTHER.0[0], "fs:[0] of the new base");
}

fn no_syscalls(_context: &mut TrapContext) -> SyscallAction {
    SyscallAction::Exit(0xbad)
}

fn end_run(context: &mut TrapContext) -> TrapAction {
    println!("user program faulted: {}", trap::ShowFrame(&context.frame));
    TrapAction::EndUserRun(context.vector())
}

fn modes(reporter: &mut Reporter) {
    let setup = (|| -> Result<(u64, u64), Errno> {
        trap::install()?;
        trap::set_handler(vector::PAGE_FAULT, end_run)?;
        trap::set_handler(vector::GENERAL_PROTECTION, end_run)?;
        user::init(no_syscalls)?;
        let space = UserSpace::create()?;
        space.map_kernel_range(address(segment_user_start), address(segment_user_end), 0)?;
        let stack = space.allocate(2)?;
        let data = space.allocate(1)?;
        space.activate()?;
        Ok((stack + 2 * PAGE_SIZE, data))
    })();
    let Some((stack_top, data)) = reporter.expect_ok(setup, "user setup") else { return };
    // SAFETY: `data` is a fresh page of ours (also mapped for the user program), not
    // referenced by anything else.
    unsafe {
        core::ptr::write_volatile(data as *mut u64, USER_GS_VALUE);
        core::ptr::write_volatile((data + 8) as *mut u64, USER_FS_VALUE);
    }
    let _ = reporter.expect_ok(segment::set_gs_kernel_base(page(&GS_DATA)), "GS_KERNEL base");
    let _ = reporter.expect_ok(segment::set_gs_user_base(data), "GS_USER base");
    let _ = reporter.expect_ok(segment::set_fs_base(data), "FS base");
    let exit = user::run(address(segment_user_gs), stack_top, 0);
    reporter.expect_eq(exit, Ok(UserExit::Exit(USER_GS_VALUE)), "gs:[0] in guest-user mode (GS_USER)");
    reporter.expect_eq(read_gs0(), GS_DATA.0[0], "gs:[0] back in guest-kernel mode (GS_KERNEL)");
    let exit = user::run(address(segment_user_fs), stack_top, 0);
    reporter.expect_eq(exit, Ok(UserExit::Exit(USER_FS_VALUE)), "fs:[8] in guest-user mode");
    // SAFETY: FS base is `data`.
    reporter.expect_eq(unsafe { read_fs(8) }, USER_FS_VALUE, "fs:[8] in guest-kernel mode (same FS)");
    println!("GS_USER / GS_KERNEL swapped with the mode; FS shared");
}

fn segments(start: &'static StartInfo) -> u32 {
    let mut reporter = Reporter::new();
    match words(start).next().unwrap_or("") {
        "bases" => bases(&mut reporter),
        "modes" => modes(&mut reporter),
        other => reporter.error(format_args!("unknown sub-case '{other}'")),
    }
    reporter.finish()
}
