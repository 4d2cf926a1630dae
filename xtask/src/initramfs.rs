//! guest-kernel's initramfs (`target/ringfence/initramfs.cpio`), the root file system it
//! unpacks at boot: Debian's busybox with a link for every applet, guest-kernel's `init`,
//! test programs and benchmark, and the files of `guest-kernel/user/rootfs/` (`/etc/rc`, the test
//! scripts and their expected output, the test runner `/tests/run`).
//!
//! ```text
//! bin/busybox                 Debian's busybox-static
//! bin/sh, bin/ls, usr/bin/[   ... links to /bin/busybox, where `busybox --list-full` puts them
//! sbin/init                   guest-kernel/user's init (busybox's init applet is left out)
//! bin/kernel-test             the test programs, one executable
//! bin/test-fork, ...          links to /bin/kernel-test, one per program
//! bin/lmbench                 the benchmark (cargo xtask bench --kernel)
//! bin/lmbench-true            what its fork exec row runs
//! etc/, tests/                guest-kernel/user/rootfs/ as it is (executable bits kept)
//! dev/ proc/                  empty: the kernel provides their contents
//! tmp/ (1777) root/ (0700)
//! ```
//!
//! The archive is the same bytes for the same inputs (sorted members, root-owned, time 0),
//! and the file is rewritten only when those bytes change, so what depends on its time
//! sees a change only when there is one.

use crate::cpio::{self, Node};
use crate::{busybox, userland, workspace, Error, Result};
use std::path::{Path, PathBuf};

/// The archive's file.
pub fn path() -> PathBuf {
    workspace::artifact_dir().join("initramfs.cpio")
}

/// The directory copied into the archive as it is.
pub fn rootfs_dir() -> PathBuf {
    workspace::root().join("guest-kernel").join("user").join("rootfs")
}

/// The program that runs guest-kernel's test suite inside the guest.
pub const TEST_RUNNER: &str = "/tests/run";

/// The directories every archive has, with their permissions.
const DIRECTORIES: &[(&str, u32)] = &[
    ("bin", 0o755),
    ("dev", 0o755),
    ("etc", 0o755),
    ("proc", 0o755),
    ("root", 0o700),
    ("sbin", 0o755),
    ("tmp", 0o1777),
    ("usr", 0o755),
    ("usr/bin", 0o755),
    ("usr/sbin", 0o755),
];

/// Where busybox and guest-kernel's programs go.
const BUSYBOX: &str = "bin/busybox";
const INIT: &str = "sbin/init";
const KERNEL_TEST: &str = "bin/kernel-test";
const LMBENCH: &str = "bin/lmbench";
const LMBENCH_TRUE: &str = "bin/lmbench-true";

/// Everything the archive is made from.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    /// busybox's executable.
    pub busybox: Vec<u8>,
    /// Its applets' paths (`bin/ls`), from [`busybox::applets`].
    pub applets: Vec<String>,
    /// guest-kernel's init.
    pub init: Vec<u8>,
    /// The test programs' executable.
    pub kernel_test: Vec<u8>,
    /// The test programs' names (`test-fork`).
    pub test_programs: Vec<String>,
    /// The benchmark.
    pub lmbench: Vec<u8>,
    /// The program its `fork exec` row runs.
    pub lmbench_true: Vec<u8>,
    /// The files of the root file system directory: path below it, contents, executable.
    pub rootfs: Vec<(String, Vec<u8>, bool)>,
}

/// The archive's members, sorted by path (a directory before what it holds).
pub fn layout(inputs: Inputs) -> Result<Vec<Node>> {
    let mut nodes: Vec<Node> = DIRECTORIES.iter().map(|(path, mode)| Node::directory(path, *mode)).collect();
    nodes.push(Node::file(BUSYBOX, inputs.busybox, 0o755));
    nodes.extend(inputs.applets.iter().map(|applet| Node::symlink(applet, &format!("/{BUSYBOX}"))));
    nodes.push(Node::file(INIT, inputs.init, 0o755));
    nodes.push(Node::file(KERNEL_TEST, inputs.kernel_test, 0o755));
    nodes.push(Node::file(LMBENCH, inputs.lmbench, 0o755));
    nodes.push(Node::file(LMBENCH_TRUE, inputs.lmbench_true, 0o755));
    nodes.extend(
        inputs.test_programs.iter().map(|name| Node::symlink(&format!("bin/{name}"), &format!("/{KERNEL_TEST}"))),
    );
    for (path, contents, executable) in inputs.rootfs {
        // The directories on the way (`tests` for `tests/run`), unless already there.
        let mut parent = String::new();
        for part in path.split('/').collect::<Vec<_>>().split_last().map_or(&[][..], |(_, parents)| parents) {
            parent = if parent.is_empty() { part.to_string() } else { format!("{parent}/{part}") };
            if !nodes.iter().any(|node| node.path == parent) {
                nodes.push(Node::directory(&parent, 0o755));
            }
        }
        nodes.push(Node::file(&path, contents, if executable { 0o755 } else { 0o644 }));
    }
    nodes.sort_by(|a, b| a.path.cmp(&b.path));
    if let Some(pair) = nodes.windows(2).find(|pair| pair[0].path == pair[1].path) {
        return Err(Error::failed(format!(
            "{} would be in the initramfs twice (a busybox applet or a program of the same name as a file in {}?)",
            pair[0].path,
            rootfs_dir().display()
        )));
    }
    Ok(nodes)
}

/// The files below `dir`, as (path relative to it with `/` separators, contents,
/// executable), sorted. Only regular files and directories may be there.
pub fn read_tree(dir: &Path) -> Result<Vec<(String, Vec<u8>, bool)>> {
    use std::os::unix::fs::PermissionsExt;
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let entries = std::fs::read_dir(&current).map_err(|error| Error::io("cannot list", &current, error))?;
        for entry in entries {
            let entry = entry.map_err(|error| Error::io("cannot list", &current, error))?;
            let path = entry.path();
            let metadata = std::fs::symlink_metadata(&path).map_err(|error| Error::io("cannot stat", &path, error))?;
            if metadata.is_dir() {
                pending.push(path);
                continue;
            }
            let relative = path.strip_prefix(dir).unwrap_or(&path);
            let name = relative
                .to_str()
                .filter(|name| metadata.is_file() && !name.contains(['\\', '\0']))
                .ok_or_else(|| Error::failed(format!("{} is not a regular file with a plain name", path.display())))?;
            let contents = std::fs::read(&path).map_err(|error| Error::io("cannot read", &path, error))?;
            files.push((name.to_string(), contents, metadata.permissions().mode() & 0o111 != 0));
        }
    }
    files.sort();
    Ok(files)
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|error| Error::io("cannot read", path, error))
}

/// Checks the archive as guest-kernel will see it: its own unpacker builds the tree, and
/// what the kernel starts and init runs is there.
pub fn check(archive: &[u8]) -> Result<()> {
    use guest_kernel_core::fs::path::{resolve, Follow};
    use guest_kernel_core::fs::tree::{FileSystem, ROOT};
    let mut fs = FileSystem::new(archive.len() as u64 * 2);
    guest_kernel_core::fs::initramfs::unpack(&mut fs, archive)
        .map_err(|error| Error::failed(format!("guest-kernel would not unpack the initramfs: {error}")))?;
    for path in ["/sbin/init", "/bin/sh", "/bin/test-fork", "/bin/lmbench", "/bin/lmbench-true", "/etc/rc", TEST_RUNNER]
    {
        resolve(&fs, ROOT, path.as_bytes(), Follow::Yes)
            .map_err(|error| Error::failed(format!("the initramfs has no {path} ({error})")))?;
    }
    Ok(())
}

/// Builds the userland, fetches busybox (once), and writes the archive if its bytes
/// changed; returns its path.
pub fn initramfs() -> Result<PathBuf> {
    let built = userland::build()?;
    let busybox_path = busybox::ensure()?;
    let inputs = Inputs {
        applets: busybox::applets(&busybox_path)?,
        busybox: read(&busybox_path)?,
        init: read(&built.init)?,
        kernel_test: read(&built.kernel_test)?,
        test_programs: built.test_programs,
        lmbench: read(&built.lmbench)?,
        lmbench_true: read(&built.lmbench_true)?,
        rootfs: read_tree(&rootfs_dir())?,
    };
    let archive = cpio::write(&layout(inputs)?)?;
    let path = path();
    if std::fs::read(&path).is_ok_and(|existing| existing == archive) {
        return Ok(path);
    }
    check(&archive)?;
    let directory = workspace::artifact_dir();
    std::fs::create_dir_all(&directory).map_err(|error| Error::io("cannot create", &directory, error))?;
    let partial = path.with_extension(format!("partial.{}", std::process::id()));
    std::fs::write(&partial, &archive).map_err(|error| Error::io("cannot write", &partial, error))?;
    std::fs::rename(&partial, &path).map_err(|error| Error::io("cannot rename to", &path, error))?;
    println!("xtask: wrote {} ({} KiB)", path.display(), archive.len() / 1024);
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpio::Kind;

    fn inputs() -> Inputs {
        Inputs {
            busybox: b"\x7fELF busybox".to_vec(),
            applets: vec!["bin/sh".into(), "usr/bin/[".into(), "bin/ls".into()],
            init: b"\x7fELF init".to_vec(),
            kernel_test: b"\x7fELF kernel-test".to_vec(),
            test_programs: vec!["test-fork".into(), "test-pipe".into()],
            lmbench: b"\x7fELF lmbench".to_vec(),
            lmbench_true: b"\x7fELF lmbench-true".to_vec(),
            rootfs: vec![
                ("etc/rc".into(), b"#!/bin/sh\n".to_vec(), true),
                ("tests/run".into(), b"#!/bin/sh\n".to_vec(), true),
                ("tests/a.sh".into(), b"echo a\n".to_vec(), false),
            ],
        }
    }

    fn find<'a>(nodes: &'a [Node], path: &str) -> &'a Node {
        nodes.iter().find(|node| node.path == path).unwrap_or_else(|| panic!("no {path}"))
    }

    #[test]
    fn the_layout_holds_busybox_our_programs_and_the_rootfs() {
        let nodes = layout(inputs()).unwrap();
        assert_eq!(find(&nodes, "bin/sh").kind, Kind::Symlink("/bin/busybox".into()));
        assert_eq!(find(&nodes, "usr/bin/[").kind, Kind::Symlink("/bin/busybox".into()));
        assert_eq!(find(&nodes, "bin/test-pipe").kind, Kind::Symlink("/bin/kernel-test".into()));
        assert_eq!(find(&nodes, "sbin/init").kind, Kind::File(b"\x7fELF init".to_vec()));
        assert_eq!(find(&nodes, "bin/lmbench").kind, Kind::File(b"\x7fELF lmbench".to_vec()));
        assert_eq!(find(&nodes, "bin/lmbench-true").permissions, 0o755);
        assert_eq!(find(&nodes, "tests").kind, Kind::Directory, "a rootfs directory is made");
        assert_eq!((find(&nodes, "tests/a.sh").permissions, find(&nodes, "tests/run").permissions), (0o644, 0o755));
        assert_eq!((find(&nodes, "tmp").permissions, find(&nodes, "root").permissions), (0o1777, 0o700));
        let paths: Vec<&str> = nodes.iter().map(|node| node.path.as_str()).collect();
        let mut sorted = paths.clone();
        sorted.sort_unstable();
        assert_eq!(paths, sorted);
        let archive = cpio::write(&nodes).unwrap();
        check(&archive).unwrap();
    }

    #[test]
    fn a_clash_is_named() {
        let mut clashing = inputs();
        clashing.rootfs.push(("bin/ls".into(), Vec::new(), false));
        let error = layout(clashing).unwrap_err();
        assert!(error.message.starts_with("bin/ls would be in the initramfs twice"), "{}", error.message);
    }

    #[test]
    fn the_check_finds_a_missing_init() {
        let mut nodes = layout(inputs()).unwrap();
        nodes.retain(|node| node.path != "sbin/init");
        let error = check(&cpio::write(&nodes).unwrap()).unwrap_err();
        assert!(error.message.starts_with("the initramfs has no /sbin/init"), "{}", error.message);
    }

    /// Runs `script` with busybox's sh, every applet on PATH, in /tmp: the environment
    /// init gives a command, as `/tests/run` runs it. Returns standard output and error as
    /// one stream.
    fn run_with_busybox(bin: &Path, script: &Path) -> String {
        use std::io::Read;
        let (mut reader, writer) = std::io::pipe().unwrap();
        let mut child = std::process::Command::new(bin.join("sh"))
            .arg(script)
            .env_clear()
            .env("HOME", "/root")
            .env("PATH", bin)
            .current_dir("/tmp")
            .stdout(writer.try_clone().unwrap())
            .stderr(writer)
            .spawn()
            .unwrap();
        let mut output = String::new();
        reader.read_to_string(&mut output).unwrap();
        child.wait().unwrap();
        output
    }

    #[test]
    fn the_scripts_print_what_they_expect_under_busybox_on_linux() {
        // The scripts are held to what Debian's busybox does on Linux, as the guest will
        // be held to them (the download is cached in target/busybox).
        let busybox = busybox::ensure().unwrap();
        let bin = std::env::temp_dir().join(format!("ringfence-busybox-applets-{}", std::process::id()));
        std::fs::create_dir_all(&bin).unwrap();
        for applet in busybox::applets(&busybox).unwrap() {
            let name = applet.rsplit('/').next().unwrap();
            std::os::unix::fs::symlink(&busybox, bin.join(name)).unwrap();
        }
        let scripts = rootfs_dir().join("tests");
        let mut checked = 0;
        let mut failures = Vec::new();
        for (path, _, _) in read_tree(&scripts).unwrap() {
            let Some(name) = path.strip_suffix(".sh") else { continue };
            let expected = std::fs::read_to_string(scripts.join(format!("{name}.expected"))).unwrap();
            let actual = run_with_busybox(&bin, &scripts.join(&path));
            if actual != expected {
                failures.push(format!("{path}:\n--- expected\n{expected}--- got\n{actual}"));
            }
            checked += 1;
        }
        std::fs::remove_dir_all(&bin).unwrap();
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        assert!(checked >= 5);
    }

    #[test]
    fn the_rootfs_has_what_init_and_the_runner_need() {
        let files = read_tree(&rootfs_dir()).unwrap();
        let get = |name: &str| files.iter().find(|(path, _, _)| path == name);
        for (name, executable) in [("etc/rc", true), ("etc/passwd", false), ("etc/group", false), ("tests/run", true)] {
            let (_, _, found_executable) = get(name).unwrap_or_else(|| panic!("rootfs has no {name}"));
            assert_eq!(*found_executable, executable, "{name}");
        }
        let scripts: Vec<&String> =
            files.iter().map(|(path, _, _)| path).filter(|path| path.ends_with(".sh")).collect();
        assert!(scripts.len() >= 5, "{scripts:?}");
        for script in scripts {
            let expected = script.replace(".sh", ".expected");
            assert!(get(&expected).is_some(), "{script} has no {expected}");
        }
    }
}
