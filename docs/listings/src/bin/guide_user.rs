//! Guide chapter 7: user mode. The guest kernel builds an address space for a ring-3
//! program, serves its system calls, and gets control back when it exits or faults.
#![cfg_attr(target_os = "none", no_std, no_main)]

use guest_rt::abi::layout::PAGE_SIZE;
use guest_rt::abi::trap::vector;
use guest_rt::abi::{Errno, StartInfo};
use guest_rt::println;
use guest_rt::trap::{self, TrapAction, TrapContext};
use guest_rt::user::{self, SyscallAction, UserExit, UserSpace};

guest_rt::entry!(user_main);

/// The one system call this kernel offers besides exit: write(buffer, length).
const SYS_WRITE: u64 = 1;

// ANCHOR: program
// The user program: its own page-aligned page, mapped into the user address space.
#[cfg(target_arch = "x86_64")]
core::arch::global_asm!(
    ".pushsection .text.user_program, \"ax\", @progbits",
    ".balign 4096",
    ".global user_program_start",
    "user_program_start:",
    // write(message, 19), then write(RDI, 8): RDI is an address the kernel passed in.
    "mov r12, rdi",
    "lea rdi, [rip + 2f]",
    "mov esi, 19",
    "mov eax, {write}",
    "syscall",
    "mov rdi, r12",
    "mov esi, 8",
    "mov eax, {write}",
    "syscall",
    // exit(the second write's result)
    "mov rdi, rax",
    "mov eax, {exit}",
    "syscall",
    "ud2",
    "2: .ascii \"hello from ring 3!\\n\"",
    // A program that reads the address in RDI.
    ".global user_peek",
    "user_peek:",
    "mov rax, qword ptr [rdi]",
    "ud2",
    ".balign 4096",
    ".global user_program_end",
    "user_program_end:",
    ".popsection",
    write = const SYS_WRITE,
    exit = const user::SYSCALL_EXIT,
);
// ANCHOR_END: program

extern "C" {
    fn user_program_start();
    fn user_program_end();
    fn user_peek();
}

fn address(function: unsafe extern "C" fn()) -> u64 {
    function as *const () as u64
}

// ANCHOR: syscall
/// Serves a system call. Everything the user program passes is checked: a buffer must
/// lie inside the user program's page, the only user memory this kernel lets it name.
fn system_call(context: &mut TrapContext) -> SyscallAction {
    let (number, [buffer, length, ..]) = context.syscall();
    if number != SYS_WRITE {
        return SyscallAction::Return(Errno::ENOSYS.to_return() as u64);
    }
    let (start, end) = (address(user_program_start), address(user_program_end));
    let inside = buffer >= start && length <= end - start && buffer <= end - length;
    if !inside {
        return SyscallAction::Return(Errno::EFAULT.to_return() as u64);
    }
    // SAFETY: the range lies in the user program's page, which is kernel memory too
    // (mapped at the same address in both spaces) and only ever read.
    let bytes = unsafe { core::slice::from_raw_parts(buffer as *const u8, length as usize) };
    guest_rt::print!("  user: {}", core::str::from_utf8(bytes).unwrap_or("(not UTF-8)\n"));
    SyscallAction::Return(length)
}
// ANCHOR_END: syscall

/// Any exception from user mode ends the run; `user::run` returns its frame.
fn end_run(context: &mut TrapContext) -> TrapAction {
    TrapAction::EndUserRun(context.vector())
}

fn user_main(_start: &'static StartInfo) -> u32 {
    match run() {
        Ok(()) => 0,
        Err(errno) => {
            println!("user: {errno:?}");
            1
        }
    }
}

static KERNEL_SECRET: u64 = 0x5ec7e7;

fn run() -> Result<(), Errno> {
    // ANCHOR: setup
    trap::install()?;
    for vector in [vector::PAGE_FAULT, vector::GENERAL_PROTECTION, vector::INVALID_OPCODE] {
        trap::set_handler(vector, end_run)?;
    }
    user::init(system_call)?; // callback_op(SYSCALL): where a user `syscall` lands
    let space = UserSpace::create()?;
    space.map_kernel_range(address(user_program_start), address(user_program_end), 0)?;
    let stack = space.allocate(1)?;
    space.activate()?; // address_space_op(SWITCH): kernel root stays, user root is ours
                       // ANCHOR_END: setup

    // ANCHOR: run
    let secret = &KERNEL_SECRET as *const u64 as u64;
    let exit = user::run(address(user_program_start), stack + PAGE_SIZE, secret)?;
    match exit {
        UserExit::Exit(code) => {
            println!("the program exited with {} ({})", code as i64, Errno((code as i64).wrapping_neg()))
        }
        UserExit::Ended { code, .. } => println!("the program ended by exception {code}"),
    }
    // ANCHOR_END: run

    // ANCHOR: fault
    let exit = user::run(address(user_peek), stack + PAGE_SIZE, secret)?;
    if let UserExit::Ended { frame, .. } = exit {
        let name = trap::vector_name(frame.vector);
        println!(
            "reading kernel memory from ring 3: {name} at {:#x}, error code {:#x}",
            frame.fault_address.0, frame.error_code
        );
    }
    println!("back in the kernel; the secret is still {KERNEL_SECRET:#x}");
    Ok(())
    // ANCHOR_END: fault
}
