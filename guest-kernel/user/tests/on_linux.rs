//! The userland on the host's Linux: every test program passes there, so what it expects
//! of guest-kernel is what Linux does; and init maps its command's end to its own exit
//! status as the kernel's shutdown code needs.
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
