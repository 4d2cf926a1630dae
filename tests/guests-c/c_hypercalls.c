/* c_hypercalls: a conformance guest written in C against the generated ABI header
 * (hypercall-abi/include/ringfence.h), as Xen's public headers let Mini-OS be written.
 *
 * Freestanding (no libc), linked with guest-rt/guest.ld; built by `cargo xtask build`
 * (xtask/src/c_guests.rs). Entry contract (SPEC.md §2, guest-rt/src/entry.rs): RDI = the
 * start-info page, RSP = stack_top - 8. Prints one "c_hypercalls: ok <check>" line per
 * passed check, then "Test result: SUCCESS" and powers off with code 0; a failed check
 * prints "c_hypercalls: FAIL <check>: got <value>", "Test result: FAILURE" and powers off
 * with code 1. */
#include <ringfence.h>

RINGFENCE_ABI_NOTE();

static char line[256];
static unsigned line_length;
static int failures;

static void put(const char *text)
{
    while (*text && line_length < sizeof line - 1)
        line[line_length++] = *text++;
}

static void put_hex(uint64_t value)
{
    static const char digits[] = "0123456789abcdef";
    char buffer[19];
    int at = 18;
    buffer[at] = 0;
    do {
        buffer[--at] = digits[value & 0xf];
        value >>= 4;
    } while (value);
    buffer[--at] = 'x';
    buffer[--at] = '0';
    put(&buffer[at]);
}

static void put_signed(int64_t value)
{
    if (value < 0) {
        put("-");
        put_hex(-(uint64_t)value);
    } else {
        put_hex((uint64_t)value);
    }
}

/* Writes the line built so far with a newline; the line is one console_io(WRITE). */
static void end_line(void)
{
    line[line_length++] = '\n';
    ringfence_console_write(line, line_length);
    line_length = 0;
}

static void check(const char *what, int64_t got, int64_t expected)
{
    if (got == expected) {
        put("c_hypercalls: ok ");
        put(what);
    } else {
        failures++;
        put("c_hypercalls: FAIL ");
        put(what);
        put(": got ");
        put_signed(got);
        put(", expected ");
        put_signed(expected);
    }
    end_line();
}

/* version(cmd) through the trapping form of the hypercall instruction (SPEC.md §5.1). */
static int64_t version_trapping(uint64_t cmd)
{
    int64_t result;
    __asm__ __volatile__(RINGFENCE_TRAPPING_HYPERCALL
                         : "=a"(result), "+D"(cmd)
                         : "a"(RINGFENCE_HYPERCALL_VERSION)
                         : "rcx", "r11", "rsi", "rdx", "r10", "r8", "r9", "memory");
    return result;
}

static const char message[] = "c_hypercalls: hello from C\n";

/* Entries for multicall, in .data so the hypervisor may write the results back. */
static struct ringfence_multicall_entry calls[3];

__attribute__((noreturn)) void _start(const struct ringfence_start_info *start_info)
{
    check("start_info magic", (int64_t)start_info->magic, (int64_t)RINGFENCE_START_INFO_MAGIC);
    check("start_info abi_version", start_info->abi_version, RINGFENCE_ABI_VERSION);
    check("start_info address", (int64_t)start_info->start_info_address, (int64_t)(uintptr_t)start_info);
    check("start_info domain_id nonzero", start_info->domain_id != 0, 1);

    check("version(ABI_VERSION)", ringfence_version(RINGFENCE_VERSION_CMD_ABI_VERSION), RINGFENCE_ABI_VERSION);
    check("version(FEATURES)", ringfence_version(RINGFENCE_VERSION_CMD_FEATURES), RINGFENCE_FEATURE_ALL);
    check("version(ABI_VERSION) via ud2 rf", version_trapping(RINGFENCE_VERSION_CMD_ABI_VERSION),
          RINGFENCE_ABI_VERSION);
    check("version(unknown command)", ringfence_version(RINGFENCE_VERSION_CMD_FEATURES + 1), -RINGFENCE_EINVAL);

    /* Number 2 is not in the table; TABLE_SIZE and all bits set are past it (SPEC.md §5.3). */
    check("unknown hypercall 2", ringfence_hypercall3(2, 0, 0, 0), -RINGFENCE_ENOSYS);
    check("unknown hypercall TABLE_SIZE", ringfence_hypercall3(RINGFENCE_HYPERCALL_TABLE_SIZE, 0, 0, 0),
          -RINGFENCE_ENOSYS);
    check("unknown hypercall ~0", ringfence_hypercall6(~0ULL, 1, 2, 3, 4, 5, 6), -RINGFENCE_ENOSYS);

    check("console_io(WRITE) length", ringfence_console_write(message, sizeof message - 1),
          (int64_t)(sizeof message - 1));
    check("console_io(WRITE) hypervisor range", ringfence_console_write((const void *)RINGFENCE_HYPERVISOR_START, 8),
          -RINGFENCE_EFAULT);
    check("console_io(WRITE) over WRITE_MAX", ringfence_console_write(message, RINGFENCE_CONSOLE_WRITE_MAX + 1),
          -RINGFENCE_EINVAL);

    calls[0].op = RINGFENCE_HYPERCALL_VERSION;
    calls[0].args[0] = RINGFENCE_VERSION_CMD_ABI_VERSION;
    calls[1].op = RINGFENCE_HYPERCALL_VERSION;
    calls[1].args[0] = RINGFENCE_VERSION_CMD_FEATURES;
    calls[2].op = RINGFENCE_HYPERCALL_TABLE_SIZE;
    check("multicall completed", ringfence_hypercall3(RINGFENCE_HYPERCALL_MULTICALL, (uint64_t)(uintptr_t)calls, 3, 0),
          3);
    check("multicall[0] version", calls[0].result, RINGFENCE_ABI_VERSION);
    check("multicall[1] features", calls[1].result, RINGFENCE_FEATURE_ALL);
    check("multicall[2] unknown", calls[2].result, -RINGFENCE_ENOSYS);

    put(failures ? "Test result: FAILURE" : "Test result: SUCCESS");
    end_line();
    ringfence_shutdown(RINGFENCE_SHUTDOWN_POWEROFF, failures ? 1 : 0);
    for (;;)
        __asm__ __volatile__("ud2");
}
