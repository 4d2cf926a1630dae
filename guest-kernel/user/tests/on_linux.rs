//! The userland on the host's Linux: every test program passes there, so what it expects
//! of guest-kernel is what Linux does; init maps its command's end to its own exit
//! status as the kernel's shutdown code needs; and lmbench prints the lines `cargo xtask
//! bench --kernel` reads, also as the first process of a Linux machine.
//!
//! The fork bomb and the memory hog run with their host caps (`--limit`, `--limit-mib`):
//! as root on a shared machine neither may run unbounded.

use std::process::{Command, Output};

fn run(program: &str, arguments: &[&str]) -> Output {
    Command::new(program).args(arguments).output().unwrap_or_else(|error| panic!("cannot run {program}: {error}"))
}

const KERNEL_TEST: &str = env!("CARGO_BIN_EXE_kernel-test");

/// Runs test program `program` through `kernel-test` and checks it passed.
fn passes(program: &str, arguments: &[&str]) {
    let output = run(KERNEL_TEST, &[&[program], arguments].concat());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && !stdout.contains("FAIL"),
        "{program} {arguments:?} failed on Linux ({}):\n{stdout}{stderr}",
        output.status
    );
    let cases = stdout.lines().filter(|line| line.starts_with("ok ")).count();
    assert!(cases > 0, "{program} reported no case:\n{stdout}");
}

#[test]
fn fork() {
    passes("fork", &[]);
}

#[test]
fn pipe() {
    passes("pipe", &[]);
}

#[test]
fn signal() {
    passes("signal", &[]);
}

#[test]
fn mmap() {
    passes("mmap", &[]);
}

#[test]
fn exec() {
    passes("exec", &[]);
}

#[test]
fn vdso() {
    passes("vdso", &[]);
}

#[test]
fn efault() {
    passes("efault", &[]);
}

#[test]
fn brk() {
    passes("brk", &[]);
}

#[test]
fn proc() {
    passes("proc", &[]);
}

#[test]
fn command() {
    passes("command", &[]);
}

#[test]
fn fs() {
    passes("fs", &[]);
}

#[test]
fn time() {
    passes("time", &[]);
}

#[test]
fn vector() {
    passes("vector", &[]);
}

#[test]
fn fork_bomb_with_a_host_cap() {
    passes("fork-bomb", &["--limit", "64"]);
}

#[test]
fn memory_hog_with_a_host_cap() {
    passes("memory-hog", &["--limit-mib", "64"]);
}

#[test]
fn bad_caps_are_usage_errors() {
    for (arguments, message) in [
        (&["fork-bomb", "--limit", "many"][..], "--limit takes a number of processes"),
        (&["memory-hog", "--bogus"][..], "usage: test-memory-hog [--limit-mib MIB]"),
        (&["fork", "extra"][..], "takes no arguments"),
        (&["no-such-test"][..], "usage: kernel-test PROGRAM"),
        (&[][..], "usage: kernel-test PROGRAM"),
    ] {
        let program = KERNEL_TEST;
        let output = run(program, arguments);
        assert_eq!(output.status.code(), Some(2), "{program} {arguments:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(message), "{program} {arguments:?}: {stderr}");
    }
}

#[test]
fn the_programs_are_listed_and_run_by_the_name_they_are_linked_as() {
    let listed = run(KERNEL_TEST, &["--list"]);
    assert!(listed.status.success());
    let names = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(
        names.lines().all(|name| name.starts_with("test-"))
            && names.lines().count() == guest_kernel_user::programs::PROGRAMS.len(),
        "{names}"
    );
    assert!(names.lines().any(|name| name == "test-fork-bomb"), "{names}");
    // As the initramfs installs it: /bin/test-brk, a link to kernel-test.
    let dir = std::env::temp_dir().join(format!("kernel-test-link-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let link = dir.join("test-brk");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(KERNEL_TEST, &link).unwrap();
    let output = run(link.to_str().unwrap(), &[]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("ok brk."));
}

#[test]
fn init_exits_with_its_commands_status() {
    let init = env!("CARGO_BIN_EXE_init");
    let status = |arguments: &[&str]| run(init, arguments);
    assert_eq!(status(&["sh", "-c", "exit 3"]).status.code(), Some(3));
    assert_eq!(status(&["true"]).status.code(), Some(0));
    // Killed: 128 plus the signal, and one line saying so.
    let killed = status(&["sh", "-c", "kill -TERM $$"]);
    assert_eq!(killed.status.code(), Some(143));
    assert_eq!(String::from_utf8_lossy(&killed.stderr), "init: sh killed by signal 15 (SIGTERM)\n");
    let missing = status(&["no-such-command-anywhere"]);
    assert_eq!(missing.status.code(), Some(127));
    assert_eq!(
        String::from_utf8_lossy(&missing.stderr),
        "init: cannot run no-such-command-anywhere: No such file or directory (os error 2)\n"
    );
    assert_eq!(status(&["/etc/passwd"]).status.code(), Some(126), "found but not executable");
    // The command's signals are at their defaults: SIGPIPE too, which Rust ignores in init.
    assert_eq!(status(&["sh", "-c", "kill -PIPE $$; exit 0"]).status.code(), Some(128 + 13));
    assert_eq!(status(&["sh", "-c", "kill -INT $$; exit 0"]).status.code(), Some(128 + 2));
}

#[test]
fn init_passes_words_unchanged_and_sets_the_environment() {
    let output = Command::new(env!("CARGO_BIN_EXE_init"))
        .args(["sh", "-c", "printf '[%s]' \"$@\" \"$HOME\" \"$PATH\"", "sh", "a b", "", "$x|y,z"])
        .env_clear()
        .output()
        .expect("cannot run init");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "[a b][][$x|y,z][/root][/bin:/sbin:/usr/bin:/usr/sbin]",
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn init_outlives_its_commands_orphans() {
    // The command leaves a background child behind and exits; init ends with the command.
    let start = std::time::Instant::now();
    let output = run(env!("CARGO_BIN_EXE_init"), &["sh", "-c", "sleep 5 >/dev/null 2>&1 & exit 4"]);
    assert_eq!(output.status.code(), Some(4));
    assert!(start.elapsed() < std::time::Duration::from_secs(4), "init waited for the orphan");
}

const LMBENCH: &str = env!("CARGO_BIN_EXE_lmbench");

/// The wire names of lmbench's rows, in the order of a full run.
const LMBENCH_ROWS: [&str; 9] = [
    "null_syscall",
    "write_devnull",
    "fork_exit",
    "fork_exec",
    "pipe_roundtrip",
    "ctx_switch",
    "page_fault",
    "mmap_512",
    "clock_gettime",
];

/// Checks one of lmbench's row lines, as `cargo xtask bench --kernel` reads them:
/// `lmbench <wire> median <c> p99 <c> min <c> max <c> iterations <n>`, with
/// min <= median <= p99 <= max. Returns the wire name.
fn lmbench_row(line: &str, iterations: u64) -> &str {
    let words: Vec<&str> = line.split(' ').collect();
    let labels: Vec<&str> = words.iter().skip(2).step_by(2).copied().collect();
    assert_eq!(words.len(), 12, "{line}");
    assert_eq!(
        (words[0], labels.as_slice()),
        ("lmbench", &["median", "p99", "min", "max", "iterations"][..]),
        "{line}"
    );
    let numbers: Vec<u64> = words.iter().skip(3).step_by(2).map(|word| word.parse().expect(line)).collect();
    let [median, p99, min, max, count] = numbers[..] else { panic!("{line}") };
    assert!(min <= median && median <= p99 && p99 <= max && max > 0, "{line}");
    assert_eq!(count, iterations, "{line}");
    words[1]
}

#[test]
fn lmbench_prints_every_row_in_order() {
    // lmbench-true is not in /bin on the host: fork exec finds it next to lmbench.
    let output = run(LMBENCH, &["--iterations", "50"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{}\n{stdout}{}", output.status, String::from_utf8_lossy(&output.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    let (done, rows) = lines.split_last().unwrap();
    assert_eq!(*done, "lmbench done rows 9", "{stdout}");
    let wires: Vec<&str> = rows.iter().map(|line| lmbench_row(line, 50)).collect();
    assert_eq!(wires, LMBENCH_ROWS, "{stdout}");
}

#[test]
fn lmbench_runs_the_rows_asked_for() {
    let output = run(LMBENCH, &["--row", "fork_exec", "--row=null_syscall", "--iterations=7"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{stdout}");
    assert_eq!((lmbench_row(lines[0], 7), lmbench_row(lines[1], 7)), ("fork_exec", "null_syscall"));
    assert_eq!(lines[2], "lmbench done rows 2");
}

#[test]
fn lmbench_refuses_bad_arguments_with_status_1() {
    for (arguments, message) in [
        (&["--row", "bogus"][..], "lmbench error usage unknown row \"bogus\"; --row takes one of: null_syscall "),
        (&["--iterations", "0"][..], "lmbench error usage --iterations takes a whole number from 1 to "),
        (&["--row"][..], "lmbench error usage --row needs a value"),
        (&["extra"][..], "lmbench error usage unknown argument \"extra\""),
    ] {
        let output = run(LMBENCH, arguments);
        assert_eq!(output.status.code(), Some(1), "{arguments:?}");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.starts_with(message) && stdout.lines().count() == 1, "{arguments:?}: {stdout}");
        assert!(String::from_utf8_lossy(&output.stderr).starts_with("usage: lmbench "), "{arguments:?}");
    }
    let help = run(LMBENCH, &["--help"]);
    assert!(help.status.success() && String::from_utf8_lossy(&help.stdout).starts_with("usage: lmbench "));
}

#[test]
fn lmbench_true_exits_0_at_once() {
    let output = run(env!("CARGO_BIN_EXE_lmbench-true"), &["any", "words"]);
    assert_eq!(output.status.code(), Some(0));
    assert!(output.stdout.is_empty() && output.stderr.is_empty());
}

#[test]
fn lmbench_as_pid_1_mounts_devtmpfs_and_powers_off() {
    // As Linux's first process would be: PID 1 of a new PID namespace, with an empty /dev
    // (a tmpfs over it, in a new mount namespace, so the host's /dev is untouched).
    // lmbench must mount devtmpfs to write to /dev/null, and its power-off is what
    // reboot(2) does in a PID namespace: the namespace's init is killed by SIGINT.
    use std::os::unix::process::ExitStatusExt;
    let script =
        format!("mount -t tmpfs none /dev && test ! -e /dev/null && exec {LMBENCH} --iterations 5 --row write_devnull");
    let output = run("unshare", &["--pid", "--fork", "--mount", "sh", "-c", &script]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.signal(), Some(libc::SIGINT), "{}\n{stdout}{stderr}", output.status);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}{stderr}");
    assert_eq!((lmbench_row(lines[0], 5), lines[1]), ("write_devnull", "lmbench done rows 1"));
}
