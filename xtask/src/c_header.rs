//! The C binding of the ABI: `hypercall-abi/include/ringfence.h`, generated from
//! hypercall-abi's Rust items (SPEC.md §5–§13) and checked in. `cargo xtask gen-header`
//! rewrites it; a host test fails when the checked-in file differs from what
//! [`generate`] produces.
//!
//! Every value is taken from a Rust constant, never typed here. Rust has no reflection, so
//! each struct's fields are listed here by name and C type; the names go through
//! `core::mem::offset_of!` (a renamed Rust field does not compile) and the header asserts
//! every offset and the struct's size with `_Static_assert` (a field added in Rust but not
//! here fails the size assertion in every C compiler that includes the header).

use hypercall_abi::errno::Errno;
use hypercall_abi::hypercall::Hypercall;
use std::fmt::Write as _;
use std::path::PathBuf;
use zerocopy::FromZeros;

/// The checked-in header, relative to the workspace root.
pub const HEADER_PATH: &str = "hypercall-abi/include/ringfence.h";

/// Where the checked-in header lives.
pub fn header_path() -> PathBuf {
    crate::workspace::root().join(HEADER_PATH)
}

/// A value a C `#define` can carry, written with the suffix of its width.
trait CValue {
    fn c_literal(&self) -> String;
}

fn unsigned(value: u64, suffix: &str) -> String {
    if value >= 0x1_0000 {
        format!("0x{value:x}{suffix}")
    } else {
        format!("{value}{suffix}")
    }
}

impl CValue for u8 {
    fn c_literal(&self) -> String {
        unsigned(u64::from(*self), "U")
    }
}

impl CValue for u16 {
    fn c_literal(&self) -> String {
        unsigned(u64::from(*self), "U")
    }
}

impl CValue for u32 {
    fn c_literal(&self) -> String {
        unsigned(u64::from(*self), "U")
    }
}

impl CValue for u64 {
    fn c_literal(&self) -> String {
        unsigned(*self, "ULL")
    }
}

impl CValue for usize {
    fn c_literal(&self) -> String {
        unsigned(*self as u64, "ULL")
    }
}

impl CValue for i64 {
    fn c_literal(&self) -> String {
        format!("{self}LL")
    }
}

fn define(out: &mut String, name: &str, value: &dyn CValue) {
    writeln!(out, "#define {name} {}", value.c_literal()).unwrap();
}

/// `constants!(out, "RINGFENCE_PREFIX_", path::to::module { A, B })` emits
/// `#define RINGFENCE_PREFIX_A <module::A>` for each name.
macro_rules! constants {
    ($out:expr, $prefix:literal, $module:path { $($name:ident),+ $(,)? }) => {{
        use $module as module;
        $(define($out, concat!($prefix, stringify!($name)), &module::$name);)+
    }};
}

/// One field of a generated struct: its name, the C type of one element, whether it is
/// an array (the length is derived from the Rust field's size), and its offset.
struct Field {
    name: &'static str,
    c_type: &'static str,
    array: bool,
    size: usize,
    offset: usize,
}

/// A generated struct: `struct ringfence_<name>`, mirroring `rust` (for the comment).
struct Struct {
    name: &'static str,
    rust: &'static str,
    size: usize,
    fields: Vec<Field>,
}

/// `c_struct!("c_name", RustType { field: "c type", array_field: "c type"[] })`: the
/// field list of one struct, with sizes and offsets from the Rust type.
macro_rules! c_struct {
    ($c_name:literal, $ty:path { $($field:ident : $c_type:literal $([$($array:tt)?])?),+ $(,)? }) => {{
        let zeroed = <$ty>::new_zeroed();
        Struct {
            name: $c_name,
            rust: stringify!($ty),
            size: core::mem::size_of::<$ty>(),
            fields: vec![$(Field {
                name: stringify!($field),
                c_type: $c_type,
                array: c_struct!(@array $([$($array)?])?),
                size: core::mem::size_of_val(&zeroed.$field),
                offset: core::mem::offset_of!($ty, $field),
            }),+],
        }
    }};
    (@array) => { false };
    (@array [$($array:tt)?]) => { true };
}

fn scalar_size(c_type: &str, structs: &[Struct]) -> usize {
    match c_type {
        "uint8_t" | "int8_t" => 1,
        "uint16_t" | "int16_t" => 2,
        "uint32_t" | "int32_t" => 4,
        "uint64_t" | "int64_t" => 8,
        other => structs
            .iter()
            .find(|s| other.strip_prefix("struct ringfence_") == Some(s.name))
            .map(|s| s.size)
            .unwrap_or_else(|| panic!("C type {other} is not a known scalar or an earlier generated struct")),
    }
}

fn structs() -> Vec<Struct> {
    use hypercall_abi::{memory, multicall, note, shared_info, start_info, trap};
    vec![
        c_struct!("start_info", start_info::StartInfo {
            magic: "uint64_t",
            abi_version: "uint32_t",
            domain_id: "uint32_t",
            nr_pages: "uint64_t",
            image_start: "uint64_t",
            image_end: "uint64_t",
            start_info_address: "uint64_t",
            stack_bottom: "uint64_t",
            stack_top: "uint64_t",
            free_start: "uint64_t",
            free_pages: "uint64_t",
            shared_info_address: "uint64_t",
            cmd_line_length: "uint32_t",
            flags: "uint32_t",
            cmd_line: "uint8_t"[],
            free_gfn: "uint64_t",
            max_pages: "uint64_t",
            module_start: "uint64_t",
            module_length: "uint64_t",
            module_gfn: "uint64_t",
            reserved: "uint8_t"[],
        }),
        c_struct!("trap_table_entry", trap::TrapTableEntry {
            vector: "uint8_t",
            flags: "uint8_t",
            reserved: "uint8_t"[],
            handler: "uint64_t",
        }),
        c_struct!(
            "iret_frame",
            trap::IretFrame {
                rax: "uint64_t",
                r11: "uint64_t",
                rcx: "uint64_t",
                flags: "uint64_t",
                rip: "uint64_t",
                cs: "uint64_t",
                rflags: "uint64_t",
                rsp: "uint64_t",
                ss: "uint64_t",
            }
        ),
        c_struct!(
            "exception_frame",
            trap::ExceptionFrame {
                vector: "uint64_t",
                error_code: "uint64_t",
                fault_address: "uint64_t",
                flags: "uint64_t",
                iret: "struct ringfence_iret_frame",
            }
        ),
        c_struct!(
            "map_entry",
            memory::MapEntry { virtual_address: "uint64_t", gfn: "uint64_t", op: "uint32_t", flags: "uint32_t" }
        ),
        c_struct!("multicall_entry", multicall::MulticallEntry {
            op: "uint64_t",
            args: "uint64_t"[],
            result: "int64_t",
        }),
        c_struct!("vcpu_time_info", shared_info::VcpuTimeInfo {
            version: "uint32_t",
            pad0: "uint32_t",
            tsc_timestamp: "uint64_t",
            system_time: "uint64_t",
            tsc_to_system_mul: "uint32_t",
            tsc_shift: "int8_t",
            pad1: "uint8_t"[],
        }),
        c_struct!("vcpu_info", shared_info::VcpuInfo {
            upcall_pending: "uint8_t",
            upcall_mask: "uint8_t",
            pad: "uint8_t"[],
            pending_selector: "uint64_t",
            cr2: "uint64_t",
            arch_pad: "uint64_t",
            time: "struct ringfence_vcpu_time_info",
        }),
        c_struct!("shared_info", shared_info::SharedInfo {
            vcpu_info: "struct ringfence_vcpu_info"[],
            evtchn_pending: "uint64_t"[],
            evtchn_mask: "uint64_t"[],
            wc_version: "uint32_t",
            wc_sec: "uint32_t",
            wc_nsec: "uint32_t",
            pad: "uint32_t",
            reserved: "uint8_t"[],
        }),
        c_struct!(
            "abi_note_descriptor",
            note::AbiNoteDescriptor { major: "uint16_t", minor: "uint16_t", reserved: "uint32_t" }
        ),
        c_struct!("abi_note", note::AbiNote {
            name_size: "uint32_t",
            descriptor_size: "uint32_t",
            note_type: "uint32_t",
            name: "uint8_t"[],
            descriptor: "struct ringfence_abi_note_descriptor",
        }),
    ]
}

fn emit_structs(out: &mut String) {
    let all = structs();
    for (index, item) in all.iter().enumerate() {
        let earlier = &all[..index];
        writeln!(out, "/* hypercall_abi::{} */", item.rust).unwrap();
        writeln!(out, "struct ringfence_{} {{", item.name).unwrap();
        for field in &item.fields {
            let element = scalar_size(field.c_type, earlier);
            if field.array {
                assert!(
                    field.size % element == 0 && field.size > 0,
                    "{}.{}: {} bytes is no array of {}",
                    item.rust,
                    field.name,
                    field.size,
                    field.c_type
                );
                writeln!(out, "    {} {}[{}];", field.c_type, field.name, field.size / element).unwrap();
            } else {
                assert_eq!(field.size, element, "{}.{} is not one {}", item.rust, field.name, field.c_type);
                writeln!(out, "    {} {};", field.c_type, field.name).unwrap();
            }
        }
        writeln!(out, "}};").unwrap();
        for field in &item.fields {
            writeln!(
                out,
                "_Static_assert(offsetof(struct ringfence_{0}, {1}) == {2}, \"ringfence_{0}.{1} is at offset {2}\");",
                item.name, field.name, field.offset
            )
            .unwrap();
        }
        writeln!(
            out,
            "_Static_assert(sizeof(struct ringfence_{0}) == {1}, \"struct ringfence_{0} is {1} bytes\");\n",
            item.name, item.size
        )
        .unwrap();
    }
}

fn emit_constants(out: &mut String) {
    out.push_str("/* Errors (SPEC.md §5.3): a hypercall returns -RINGFENCE_Exxx. */\n");
    for number in 1..=4096 {
        if let Some(name) = Errno(number).name() {
            define(out, &format!("RINGFENCE_{name}"), &number);
        }
    }
    out.push_str("\n/* version sub-commands and feature bits (SPEC.md §6.1). */\n");
    constants!(out, "RINGFENCE_VERSION_CMD_", hypercall_abi::hypercall::version_cmd { ABI_VERSION, FEATURES });
    constants!(
        out,
        "RINGFENCE_FEATURE_",
        hypercall_abi::hypercall::features {
            CONSOLE_WRITE,
            SCHED_YIELD,
            TRAPS,
            MEMORY,
            MULTICALL,
            SEGMENT_BASES,
            EXTENDED_STATE,
            EVENTS,
            TIME,
            TIMERS,
            CONSOLE_READ,
            MODULE,
            ALL,
        }
    );
    out.push_str("\n/* console_io (SPEC.md §6.2). */\n");
    constants!(out, "RINGFENCE_CONSOLE_", hypercall_abi::hypercall::console_cmd { WRITE, READ, WRITE_MAX });
    out.push_str("\n/* sched_op and shutdown (SPEC.md §6.3, §20). */\n");
    constants!(out, "RINGFENCE_SCHED_", hypercall_abi::hypercall::sched_cmd { YIELD, BLOCK, SHUTDOWN, POLL });
    constants!(out, "RINGFENCE_SHUTDOWN_", hypercall_abi::hypercall::shutdown_reason { POWEROFF, CRASH });
    constants!(out, "RINGFENCE_", hypercall_abi::hypercall { SHUTDOWN_CODE_MAX });
    out.push_str("\n/* callback_op (SPEC.md §11.3). */\n");
    constants!(out, "RINGFENCE_CALLBACK_", hypercall_abi::hypercall::callback_cmd { REGISTER });
    constants!(out, "RINGFENCE_CALLBACK_TYPE_", hypercall_abi::trap::callback_type { SYSCALL });
    out.push_str("\n/* Traps (SPEC.md §11). */\n");
    constants!(
        out,
        "RINGFENCE_",
        hypercall_abi::trap {
            KERNEL_CS,
            KERNEL_SS,
            USER_CS,
            USER_SS,
            VECTORS,
            SYSCALL_VECTOR,
            TRAP_TABLE_MAX,
            RFLAGS_GUEST_SETTABLE,
            RFLAGS_INTERRUPT,
            EXCEPTION_HEADER_BYTES,
        }
    );
    constants!(
        out,
        "RINGFENCE_VECTOR_",
        hypercall_abi::trap::vector {
            DIVIDE_ERROR,
            DEBUG,
            NMI,
            BREAKPOINT,
            OVERFLOW,
            BOUND_RANGE,
            INVALID_OPCODE,
            DEVICE_NOT_AVAILABLE,
            DOUBLE_FAULT,
            INVALID_TSS,
            SEGMENT_NOT_PRESENT,
            STACK_SEGMENT,
            GENERAL_PROTECTION,
            PAGE_FAULT,
            X87_FLOATING_POINT,
            ALIGNMENT_CHECK,
            MACHINE_CHECK,
            SIMD_FLOATING_POINT,
            VIRTUALIZATION,
            CONTROL_PROTECTION,
            FIRST_SOFTWARE,
        }
    );
    constants!(out, "RINGFENCE_TRAP_FLAG_", hypercall_abi::trap::trap_flags { USER_MAY_RAISE, ALL });
    constants!(out, "RINGFENCE_IRET_FLAG_", hypercall_abi::trap::iret_flags { ALL });
    constants!(out, "RINGFENCE_EXCEPTION_FLAG_", hypercall_abi::trap::exception_flags { FROM_USER });
    constants!(out, "RINGFENCE_PF_", hypercall_abi::trap::page_fault { PRESENT, WRITE, USER, RESERVED, FETCH });
    constants!(out, "RINGFENCE_SEGMENT_", hypercall_abi::trap::segment { FS, GS_KERNEL, GS_USER });
    out.push_str("\n/* Memory (SPEC.md §3, §12). */\n");
    constants!(
        out,
        "RINGFENCE_",
        hypercall_abi::layout { PAGE_SIZE, HYPERVISOR_START, HYPERVISOR_END, INITIAL_STACK_PAGES }
    );
    constants!(
        out,
        "RINGFENCE_",
        hypercall_abi::memory {
            BATCH_MAX,
            LARGE_PAGE_PAGES,
            LARGE_PAGE_SIZE,
            LARGE_PAGE_ORDER,
            INITIAL_SPACE,
            NO_SPACE,
            SPACES_MAX,
        }
    );
    constants!(
        out,
        "RINGFENCE_MEMORY_",
        hypercall_abi::memory::memory_cmd {
            CURRENT_RESERVATION,
            MAXIMUM_RESERVATION,
            INCREASE_RESERVATION,
            DECREASE_RESERVATION,
            MAXIMUM_GFN,
        }
    );
    constants!(
        out,
        "RINGFENCE_SPACE_",
        hypercall_abi::memory::space_cmd { CREATE, DESTROY, SWITCH, FLUSH_VA, FLUSH_ALL, QUERY }
    );
    constants!(out, "RINGFENCE_MAP_OP_", hypercall_abi::memory::map_op { MAP, UNMAP, PROTECT });
    constants!(
        out,
        "RINGFENCE_MAP_",
        hypercall_abi::memory::map_flags { WRITABLE, USER, NO_EXECUTE, LARGE, WRITE_THROUGH, ALL }
    );
    out.push_str("\n/* Multicall (SPEC.md §13). */\n");
    constants!(out, "RINGFENCE_", hypercall_abi::multicall { MULTICALL_MAX });
    out.push_str("\n/* Event channels and virtual interrupts (SPEC.md §17, §18). */\n");
    constants!(out, "RINGFENCE_", hypercall_abi::event { PORTS_MAX, EVENT_VECTOR, DOMAIN_SELF });
    constants!(
        out,
        "RINGFENCE_EVENT_",
        hypercall_abi::event::event_cmd {
            ALLOC_UNBOUND,
            BIND_INTERDOMAIN,
            BIND_VIRQ,
            BIND_IPI,
            CLOSE,
            SEND,
            STATUS,
            UNMASK,
        }
    );
    constants!(
        out,
        "RINGFENCE_EVENT_STATUS_",
        hypercall_abi::event::status { CLOSED, UNBOUND, INTERDOMAIN, VIRQ, IPI }
    );
    constants!(out, "RINGFENCE_VIRQ_", hypercall_abi::event::virq { TIMER, DEBUG, CONSOLE, COUNT });
    constants!(out, "RINGFENCE_", hypercall_abi::shared_info { MAX_VCPUS, EVENT_PORTS });
    out.push_str("\n/* The start-info page (SPEC.md §7). */\n");
    constants!(out, "RINGFENCE_", hypercall_abi::start_info { START_INFO_MAGIC, CMD_LINE_CAPACITY });
    out.push_str("\n/* Exit statuses of the hypervisor (SPEC.md §10). */\n");
    for (name, status) in [
        ("SUCCESS", hypercall_abi::exit::ExitStatus::SUCCESS),
        ("NONZERO_CODE", hypercall_abi::exit::ExitStatus::NONZERO_CODE),
        ("CRASHED", hypercall_abi::exit::ExitStatus::CRASHED),
        ("KILLED", hypercall_abi::exit::ExitStatus::KILLED),
        ("REFUSED", hypercall_abi::exit::ExitStatus::REFUSED),
        ("NOTHING_TO_RUN", hypercall_abi::exit::ExitStatus::NOTHING_TO_RUN),
        ("HYPERVISOR_PANIC", hypercall_abi::exit::ExitStatus::HYPERVISOR_PANIC),
    ] {
        define(out, &format!("RINGFENCE_EXIT_{name}"), &status.0);
    }
}

fn emit_note(out: &mut String) {
    use hypercall_abi::note;
    let name = std::str::from_utf8(note::NOTE_NAME).expect("ASCII").trim_end_matches('\0');
    out.push_str("/* The ABI-version ELF note (SPEC.md §9.4). */\n");
    writeln!(out, "#define RINGFENCE_NOTE_NAME \"{name}\"").unwrap();
    define(out, "RINGFENCE_NOTE_NAME_SIZE", &(note::NOTE_NAME.len() as u32));
    define(out, "RINGFENCE_NOTE_TYPE_ABI_VERSION", &note::NOTE_TYPE_ABI_VERSION);
    writeln!(out, "#define RINGFENCE_NOTE_SECTION \"{}\"", note::NOTE_SECTION).unwrap();
    out.push_str(concat!(
        "/* Emits the note (once per image, at file scope); guest-rt/guest.ld keeps it. */\n",
        "#define RINGFENCE_ABI_NOTE()                                                   \\\n",
        "    __attribute__((used, section(RINGFENCE_NOTE_SECTION), aligned(4)))        \\\n",
        "    static const struct ringfence_abi_note ringfence_abi_note_ = {             \\\n",
        "        RINGFENCE_NOTE_NAME_SIZE, sizeof(struct ringfence_abi_note_descriptor), \\\n",
        "        RINGFENCE_NOTE_TYPE_ABI_VERSION, RINGFENCE_NOTE_NAME,                   \\\n",
        "        { RINGFENCE_ABI_VERSION_MAJOR, RINGFENCE_ABI_VERSION_MINOR, 0 } }\n\n",
    ));
}

const HYPERCALL_HELPERS: &str = r#"/* The hypercall instruction (SPEC.md §5.1): number in RAX, arguments in RDI, RSI, RDX,
 * R10, R8, R9, result in RAX (negative: -errno); `syscall` clobbers RCX and R11. Only
 * for code running in a ringfence domain (guest-kernel mode). */
#if defined(__x86_64__)
static inline int64_t ringfence_hypercall6(uint64_t number, uint64_t a1, uint64_t a2, uint64_t a3,
                                           uint64_t a4, uint64_t a5, uint64_t a6)
{
    register uint64_t r10 __asm__("r10") = a4;
    register uint64_t r8 __asm__("r8") = a5;
    register uint64_t r9 __asm__("r9") = a6;
    uint64_t result;
    __asm__ __volatile__("syscall"
                         : "=a"(result), "+D"(a1), "+S"(a2), "+d"(a3), "+r"(r10), "+r"(r8), "+r"(r9)
                         : "a"(number)
                         : "rcx", "r11", "memory");
    return (int64_t)result;
}

static inline int64_t ringfence_hypercall3(uint64_t number, uint64_t a1, uint64_t a2, uint64_t a3)
{
    return ringfence_hypercall6(number, a1, a2, a3, 0, 0, 0);
}

/* version(cmd) */
static inline int64_t ringfence_version(uint64_t cmd)
{
    return ringfence_hypercall3(RINGFENCE_HYPERCALL_VERSION, cmd, 0, 0);
}

/* console_io(WRITE, count, buffer): returns count or -errno. */
static inline int64_t ringfence_console_write(const void *buffer, uint64_t count)
{
    return ringfence_hypercall3(RINGFENCE_HYPERCALL_CONSOLE_IO, RINGFENCE_CONSOLE_WRITE, count,
                                (uint64_t)(uintptr_t)buffer);
}

/* sched_op(SHUTDOWN, reason, code): does not return on success. */
static inline int64_t ringfence_shutdown(uint64_t reason, uint64_t code)
{
    return ringfence_hypercall3(RINGFENCE_HYPERCALL_SCHED_OP, RINGFENCE_SCHED_SHUTDOWN, reason, code);
}
#endif

"#;

/// The whole header, as `cargo xtask gen-header` writes it.
pub fn generate() -> String {
    let mut out = String::new();
    out.push_str(concat!(
        "/* ringfence.h: the C binding of the ringfence hypercall ABI (SPEC.md).\n",
        " *\n",
        " * GENERATED by `cargo xtask gen-header` from the hypercall-abi crate (xtask/src/c_header.rs);\n",
        " * do not edit. Every value is the Rust item's; every struct offset and size is asserted.\n",
        " * Freestanding: needs only <stdint.h> and <stddef.h>. */\n",
        "#ifndef RINGFENCE_H\n",
        "#define RINGFENCE_H\n\n",
        "#include <stddef.h>\n",
        "#include <stdint.h>\n\n",
    ));
    let version = hypercall_abi::ABI_VERSION;
    out.push_str("/* The ABI version this header describes (SPEC.md §9): version(ABI_VERSION) returns\n");
    out.push_str(" * RINGFENCE_ABI_VERSION = major << 16 | minor. */\n");
    define(&mut out, "RINGFENCE_ABI_VERSION_MAJOR", &version.major);
    define(&mut out, "RINGFENCE_ABI_VERSION_MINOR", &version.minor);
    define(&mut out, "RINGFENCE_ABI_VERSION", &version.packed());
    out.push_str("\n/* Hypercall numbers (RAX; SPEC.md §6.4). */\n");
    for (call, name) in Hypercall::ALL {
        define(&mut out, &format!("RINGFENCE_HYPERCALL_{}", name.to_ascii_uppercase()), &call.0);
    }
    define(&mut out, "RINGFENCE_HYPERCALL_TABLE_SIZE", &Hypercall::TABLE_SIZE);
    let bytes: Vec<String> =
        hypercall_abi::hypercall::TRAPPING_HYPERCALL.iter().map(|byte| format!("0x{byte:02x}")).collect();
    out.push_str("/* The trapping hypercall instruction (ud2 \"rf\"), for inline assembly; same registers\n");
    out.push_str(" * as syscall (SPEC.md §5.1). */\n");
    writeln!(out, "#define RINGFENCE_TRAPPING_HYPERCALL \".byte {}\"", bytes.join(", ")).unwrap();
    out.push('\n');
    emit_constants(&mut out);
    out.push('\n');
    emit_structs(&mut out);
    emit_note(&mut out);
    out.push_str(HYPERCALL_HELPERS);
    out.push_str("#endif /* RINGFENCE_H */\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_in_header_is_current() {
        let path = header_path();
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(checked_in == generate(), "{HEADER_PATH} is stale; run `cargo xtask gen-header`");
    }

    /// The header compiles as strict C11 and its layout assertions hold (gcc is the
    /// toolchain's linker driver, so every host that builds ringfence has it).
    #[test]
    fn the_header_compiles_and_its_assertions_hold() {
        use std::io::Write as _;
        use std::process::{Command, Stdio};
        let mut gcc = Command::new(crate::c_guests::GCC)
            .args(["-std=c11", "-pedantic", "-Wall", "-Wextra", "-Werror", "-fsyntax-only", "-x", "c", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .expect("gcc runs (apt-get install gcc)");
        let source = format!("{}\nRINGFENCE_ABI_NOTE();\n", generate());
        gcc.stdin.take().unwrap().write_all(source.as_bytes()).unwrap();
        assert!(gcc.wait().unwrap().success(), "the generated header does not compile; see gcc's output");
    }

    #[test]
    fn values_come_from_the_rust_items() {
        let header = generate();
        assert!(header.contains("#define RINGFENCE_HYPERCALL_CONSOLE_IO 18ULL\n"));
        assert!(header.contains("#define RINGFENCE_ENOSYS 38LL\n"));
        assert!(header.contains(&format!("#define RINGFENCE_ABI_VERSION {}U\n", hypercall_abi::ABI_VERSION.packed())));
        for (_, name) in Hypercall::ALL {
            assert!(header.contains(&format!("RINGFENCE_HYPERCALL_{} ", name.to_ascii_uppercase())), "{name}");
        }
        assert!(header.contains("_Static_assert(sizeof(struct ringfence_start_info) == 4096,"));
        assert!(header.contains("    uint8_t cmd_line[1024];\n"));
        assert!(header.contains("_Static_assert(offsetof(struct ringfence_multicall_entry, result) == 56,"));
    }
}
