//! How the trap entry reads what the CPU reported (SPEC.md §4.4, §11): a page fault on
//! the `syscall` entry stub, the trapping hypercall, a #GP naming a refused gate, and the
//! exceptions that are just what they say.

use super::tests::{boot, delivered_frame, hypercall, install_handler, plant_code, Fixture};
use crate::mm::guest_memory;
use crate::platform::Platform;
use crate::system::Step;
use hypercall_abi::hypercall::{Hypercall, TRAPPING_HYPERCALL};
use hypercall_abi::trap::{vector, TrapTableEntry};
use hypercall_abi::GuestVirtualAddress;
use zerocopy::IntoBytes;

/// Registers the guest's entry point as the handler of each of `vectors`.
fn install_handlers(fixture: &mut Fixture, vectors: &[u8]) -> u64 {
    let handler = fixture.1.rip;
    let table: Vec<TrapTableEntry> = vectors
        .iter()
        .map(|&vector| TrapTableEntry { vector, flags: 0, reserved: [0; 6], handler: GuestVirtualAddress(handler) })
        .collect();
    let address = fixture.1.rsp - 512;
    let (system, _) = &mut *fixture;
    let space = system.domains[0].memory.as_ref().unwrap().kernel_space();
    guest_memory::copy_to_guest(&mut system.memory, space, address, table.as_bytes()).unwrap();
    hypercall(fixture, Hypercall::SET_TRAP_TABLE, [address, vectors.len() as u64, 0, 0]);
    assert_eq!(fixture.1.rax, 0, "SET_TRAP_TABLE");
    handler
}

/// What `version(0)` returns to domain 0 as a plain hypercall.
fn version_result() -> u64 {
    let mut fixture = boot(2);
    hypercall(&mut fixture, Hypercall::VERSION, [0, 0, 0, 0]);
    fixture.1.rax
}

#[test]
fn a_page_fault_on_the_syscall_entry_stub_is_the_system_call_it_was() {
    let mut fixture = boot(2);
    let (system, frame) = &mut fixture;
    let resume_at = frame.rip + 0x20;
    frame.vector = u64::from(vector::PAGE_FAULT);
    frame.rip = system.platform.hypercall_entry_address();
    [frame.rcx, frame.r11] = [resume_at, 0x202];
    frame.rax = Hypercall::VERSION.0;
    frame.rdi = 0;
    assert!(matches!(system.exception(frame), Step::Resume(_)));
    assert_eq!((system.current, frame.rip, frame.rflags & 0x200), (0, resume_at, 0x200));
    assert_eq!(frame.rax, version_result(), "the hypercall ran");
}

#[test]
fn a_page_fault_elsewhere_is_bounced_with_its_address_and_other_faults_without() {
    let mut fixture = boot(2);
    let handler = install_handlers(&mut fixture, &[vector::PAGE_FAULT, vector::GENERAL_PROTECTION]);
    // `int 0` at the faulting RIP: a #GP whose error code names no gate stays a #GP.
    let at = plant_code(&mut fixture, &[0xcd, 0x00]);
    let (system, frame) = &mut fixture;
    system.platform.fault_address = 0x0000_1234_5000;
    let saved = *frame;
    frame.rip = at;
    frame.vector = u64::from(vector::PAGE_FAULT);
    frame.error_code = 2;
    assert!(matches!(system.exception(frame), Step::Resume(_)));
    assert_eq!((system.current, frame.rip), (0, handler), "delivered");
    let delivered = delivered_frame(system, frame.rsp);
    assert_eq!((delivered.vector, delivered.error_code), (u64::from(vector::PAGE_FAULT), 2));
    assert_eq!((delivered.fault_address.0, delivered.iret.rip), (0x0000_1234_5000, at));
    *frame = saved;
    frame.rip = at;
    frame.vector = u64::from(vector::GENERAL_PROTECTION);
    frame.error_code = 0;
    assert!(matches!(system.exception(frame), Step::Resume(_)));
    let delivered = delivered_frame(system, frame.rsp);
    assert_eq!((delivered.vector, delivered.error_code), (u64::from(vector::GENERAL_PROTECTION), 0));
    assert_eq!((delivered.fault_address.0, delivered.iret.rip), (0, at), "no fault address for a #GP");
}

#[test]
fn the_trapping_hypercall_is_a_hypercall_and_another_ud_is_a_ud() {
    let mut fixture = boot(2);
    let handler = install_handlers(&mut fixture, &[vector::INVALID_OPCODE]);
    let at = plant_code(&mut fixture, &TRAPPING_HYPERCALL);
    let (system, frame) = &mut fixture;
    let saved = *frame;
    frame.rip = at;
    frame.vector = u64::from(vector::INVALID_OPCODE);
    frame.rax = Hypercall::VERSION.0;
    frame.rdi = 0;
    assert!(matches!(system.exception(frame), Step::Resume(_)));
    assert_eq!(frame.rip, at + TRAPPING_HYPERCALL.len() as u64, "resumed after the sequence");
    assert_eq!(frame.rax, version_result());
    // A plain `ud2` with other bytes after it is an invalid opcode.
    let at = plant_code(&mut fixture, &[0x0f, 0x0b, b'x', b'y']);
    let (system, frame) = &mut fixture;
    *frame = saved;
    frame.rip = at;
    frame.vector = u64::from(vector::INVALID_OPCODE);
    frame.rax = Hypercall::VERSION.0;
    assert!(matches!(system.exception(frame), Step::Resume(_)));
    assert_eq!(frame.rip, handler, "delivered");
    let delivered = delivered_frame(system, frame.rsp);
    assert_eq!((delivered.vector, delivered.iret.rip), (u64::from(vector::INVALID_OPCODE), at));
}

#[test]
fn a_refused_gate_is_the_int_n_it_names_in_either_error_code_form() {
    for error_code in [0x40 * 8 + 2, 0x40 * 16 + 2] {
        let mut fixture = boot(2);
        let handler = install_handler(&mut fixture, 0x40);
        let at = plant_code(&mut fixture, &[0xcd, 0x40]);
        let (system, frame) = &mut fixture;
        frame.rip = at;
        frame.vector = u64::from(vector::GENERAL_PROTECTION);
        frame.error_code = error_code;
        assert!(matches!(system.exception(frame), Step::Resume(_)));
        assert_eq!((system.current, frame.rip), (0, handler), "error {error_code:#x}: delivered");
        let delivered = delivered_frame(system, frame.rsp);
        assert_eq!((delivered.vector, delivered.iret.rip), (0x40, at + 2), "error {error_code:#x}: after the int");
    }
    // A gate other than the instruction's: a #GP, at the instruction.
    let mut fixture = boot(2);
    let handler = install_handlers(&mut fixture, &[0x40, vector::GENERAL_PROTECTION]);
    let at = plant_code(&mut fixture, &[0xcd, 0x40]);
    let (system, frame) = &mut fixture;
    frame.rip = at;
    frame.vector = u64::from(vector::GENERAL_PROTECTION);
    frame.error_code = 0x41 * 8 + 2;
    assert!(matches!(system.exception(frame), Step::Resume(_)));
    assert_eq!(frame.rip, handler);
    let delivered = delivered_frame(system, frame.rsp);
    assert_eq!((delivered.vector, delivered.error_code), (u64::from(vector::GENERAL_PROTECTION), 0x41 * 8 + 2));
    assert_eq!(delivered.iret.rip, at);
}

#[test]
fn a_user_int3_the_trap_table_refuses_is_a_gp_at_the_instruction() {
    use crate::domain::vcpu::Mode;
    use hypercall_abi::address::Gfn;
    use hypercall_abi::memory::{map_flags, map_op, space_cmd, MapEntry, INITIAL_SPACE};
    const CODE: u64 = 0x0000_4000_0000_0000;
    let mut fixture = boot(2);
    // #BP's entry does not let guest-user mode raise it.
    let handler = install_handlers(&mut fixture, &[vector::BREAKPOINT, vector::GENERAL_PROTECTION]);
    hypercall(&mut fixture, Hypercall::ADDRESS_SPACE_OP, [space_cmd::CREATE, 0, 0, 0]);
    let user = fixture.1.rax;
    let entry = MapEntry {
        virtual_address: GuestVirtualAddress(CODE),
        gfn: Gfn(0),
        op: map_op::MAP,
        flags: map_flags::WRITABLE | map_flags::USER,
    };
    let entries = fixture.1.rsp - 2048;
    {
        let (system, _) = &mut fixture;
        let space = system.domains[0].memory.as_ref().unwrap().kernel_space();
        guest_memory::copy_to_guest(&mut system.memory, space, entries, entry.as_bytes()).unwrap();
    }
    hypercall(&mut fixture, Hypercall::MMU_UPDATE, [user, entries, 1, 0]);
    assert_eq!(fixture.1.rax, 1, "the code page is mapped in the user space");
    hypercall(&mut fixture, Hypercall::ADDRESS_SPACE_OP, [space_cmd::SWITCH, INITIAL_SPACE, user, 0]);
    assert_eq!(fixture.1.rax, 0, "SWITCH to the user space");
    let (system, frame) = &mut fixture;
    let kernel_stack = frame.rsp - 4096;
    system.domains[0].vcpu.kernel_stack = Some(kernel_stack);
    system.change_mode(Mode::User);
    let space = system.domains[0].memory.as_ref().unwrap().user_space().unwrap();
    guest_memory::copy_to_guest(&mut system.memory, space, CODE + 0x10, &[0xcc]).unwrap();
    // What the CPU reports for it: #BP, RIP after the int3.
    frame.rip = CODE + 0x11;
    frame.vector = u64::from(vector::BREAKPOINT);
    frame.error_code = 0;
    assert!(matches!(system.exception(frame), Step::Resume(_)));
    assert_eq!((system.current, frame.rip), (0, handler), "delivered, not killed");
    let delivered = delivered_frame(system, frame.rsp);
    let gate = u64::from(vector::BREAKPOINT) * 8 + 2;
    assert_eq!((delivered.vector, delivered.error_code), (u64::from(vector::GENERAL_PROTECTION), gate));
    assert_eq!(delivered.iret.rip, CODE + 0x10, "reported at the int3, as a refused hardware gate is");
}
