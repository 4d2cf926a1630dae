//! std::fs on the kernel's file system: create, write, read, append, seek, list, rename,
//! remove, symbolic links, permissions, the errors std maps to its kinds, and /dev/null
//! and /dev/zero.

use std::fs;
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::check::{ensure, expect_eq};
use crate::check::{Outcome, Suite};

/// A directory of its own under /tmp for each case, removed afterwards.
struct Scratch(PathBuf);

impl Scratch {
    fn new(case: &str) -> Result<Scratch, String> {
        let dir = std::env::temp_dir().join(format!("test-fs-{}-{case}", std::process::id()));
        fs::create_dir(&dir).map_err(|error| format!("create_dir {}: {error}", dir.display()))?;
        Ok(Scratch(dir))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn io<T>(what: &str, path: &Path, result: std::io::Result<T>) -> Result<T, String> {
    result.map_err(|error| format!("{what} {}: {error}", path.display()))
}

fn write_read_append() -> Outcome {
    let scratch = Scratch::new("rw")?;
    let file = scratch.path("notes.txt");
    io("write", &file, fs::write(&file, "first line\n"))?;
    expect_eq("contents", io("read", &file, fs::read_to_string(&file))?, "first line\n".to_string())?;
    let mut appender = io("open for append", &file, fs::OpenOptions::new().append(true).open(&file))?;
    io("append", &file, appender.write_all(b"second line\n"))?;
    drop(appender);
    expect_eq("after append", io("read", &file, fs::read_to_string(&file))?, "first line\nsecond line\n".to_string())?;
    io("overwrite", &file, fs::write(&file, "short\n"))?;
    expect_eq("after an overwrite (truncated)", io("read", &file, fs::read_to_string(&file))?, "short\n".to_string())?;
    let metadata = io("metadata", &file, fs::metadata(&file))?;
    expect_eq("is_file and length", (metadata.is_file(), metadata.len()), (true, 6))
}

fn seek_and_holes() -> Outcome {
    let scratch = Scratch::new("seek")?;
    let path = scratch.path("data");
    let mut file = io("create", &path, fs::OpenOptions::new().read(true).write(true).create_new(true).open(&path))?;
    io("write", &path, file.write_all(b"0123456789"))?;
    io("seek", &path, file.seek(SeekFrom::Start(3)))?;
    let mut four = [0u8; 4];
    io("read", &path, file.read_exact(&mut four))?;
    expect_eq("bytes 3..7", &four, b"3456")?;
    expect_eq("position from the end", io("seek", &path, file.seek(SeekFrom::End(-2)))?, 8)?;
    // Writing past the end leaves a hole that reads as zeros.
    io("seek", &path, file.seek(SeekFrom::Start(20)))?;
    io("write", &path, file.write_all(b"end"))?;
    let all = io("read", &path, fs::read(&path))?;
    expect_eq("length with the hole", all.len(), 23)?;
    expect_eq("the hole", &all[10..20], &[0u8; 10][..])?;
    expect_eq("after the hole", &all[20..], b"end")
}

fn large_file() -> Outcome {
    let scratch = Scratch::new("large")?;
    let path = scratch.path("big");
    let data: Vec<u8> = (0..1 << 20).map(|index: u32| (index * 13 + index / 4096) as u8).collect();
    io("write", &path, fs::write(&path, &data))?;
    let back = io("read", &path, fs::read(&path))?;
    ensure(back == data, || format!("read back {} bytes that differ from the 1 MiB written", back.len()))
}

fn directories() -> Outcome {
    let scratch = Scratch::new("dirs")?;
    let nested = scratch.path("a/b/c");
    io("create_dir_all", &nested, fs::create_dir_all(&nested))?;
    for name in ["one", "two", "three"] {
        io("write", &scratch.path(name), fs::write(scratch.path(name), name))?;
    }
    let mut names: Vec<String> = io("read_dir", &scratch.0, fs::read_dir(&scratch.0))?
        .map(|entry| entry.map(|entry| entry.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()
        .map_err(|error| format!("read_dir entry: {error}"))?;
    names.sort();
    expect_eq("entries", names, vec!["a".to_string(), "one".into(), "three".into(), "two".into()])?;
    let kinds = io("read_dir", &scratch.0, fs::read_dir(&scratch.0))?
        .filter_map(Result::ok)
        .map(|entry| (entry.file_name().to_string_lossy().into_owned(), entry.file_type().map(|kind| kind.is_dir())))
        .find(|(name, _)| name == "a");
    expect_eq("a's type from read_dir", kinds.map(|(_, is_dir)| is_dir.ok()), Some(Some(true)))?;
    let error = fs::remove_dir(scratch.path("a")).err().map(|error| error.kind());
    expect_eq("remove_dir of a non-empty directory", error, Some(ErrorKind::DirectoryNotEmpty))?;
    io("remove_dir_all", &scratch.path("a"), fs::remove_dir_all(scratch.path("a")))?;
    ensure(!scratch.path("a").exists(), || "a still exists".into())
}

fn rename_and_remove() -> Outcome {
    let scratch = Scratch::new("rename")?;
    let (from, to) = (scratch.path("from"), scratch.path("to"));
    io("write", &from, fs::write(&from, "moved"))?;
    io("write", &to, fs::write(&to, "replaced"))?;
    io("rename", &from, fs::rename(&from, &to))?;
    expect_eq("old name", from.exists(), false)?;
    expect_eq("new name", io("read", &to, fs::read_to_string(&to))?, "moved".to_string())?;
    io("remove_file", &to, fs::remove_file(&to))?;
    expect_eq("removed", to.exists(), false)
}

fn errors_have_their_kinds() -> Outcome {
    let scratch = Scratch::new("errors")?;
    let kind = |result: std::io::Result<()>| result.err().map(|error| error.kind());
    expect_eq(
        "open a missing file",
        kind(fs::File::open(scratch.path("missing")).map(drop)),
        Some(ErrorKind::NotFound),
    )?;
    expect_eq("create_dir of an existing directory", kind(fs::create_dir(&scratch.0)), Some(ErrorKind::AlreadyExists))?;
    io("write", &scratch.path("file"), fs::write(scratch.path("file"), "x"))?;
    expect_eq(
        "create_dir below a file",
        kind(fs::create_dir(scratch.path("file/sub"))),
        Some(ErrorKind::NotADirectory),
    )?;
    expect_eq("remove_file of a directory", kind(fs::remove_file(&scratch.0)).is_some(), true)?;
    expect_eq("read_dir of a file", kind(fs::read_dir(scratch.path("file")).map(drop)), Some(ErrorKind::NotADirectory))
}

fn symbolic_links() -> Outcome {
    let scratch = Scratch::new("links")?;
    let (target, link) = (scratch.path("target"), scratch.path("link"));
    io("write", &target, fs::write(&target, "through the link"))?;
    io("symlink", &link, symlink("target", &link))?;
    expect_eq("read_link", io("read_link", &link, fs::read_link(&link))?, PathBuf::from("target"))?;
    expect_eq("read through it", io("read", &link, fs::read_to_string(&link))?, "through the link".to_string())?;
    let own = io("symlink_metadata", &link, fs::symlink_metadata(&link))?;
    ensure(own.file_type().is_symlink(), || "symlink_metadata does not say symlink".into())?;
    io("remove_file", &target, fs::remove_file(&target))?;
    expect_eq("a dangling link", fs::metadata(&link).err().map(|error| error.kind()), Some(ErrorKind::NotFound))
}

fn permissions() -> Outcome {
    let scratch = Scratch::new("modes")?;
    let path = scratch.path("private");
    io("write", &path, fs::write(&path, "secret"))?;
    io("set_permissions", &path, fs::set_permissions(&path, fs::Permissions::from_mode(0o600)))?;
    let mode = io("metadata", &path, fs::metadata(&path))?.permissions().mode();
    expect_eq("mode", mode & 0o7777, 0o600)
}

fn working_directory() -> Outcome {
    let scratch = Scratch::new("cwd")?;
    let previous = std::env::current_dir().map_err(|error| format!("current_dir: {error}"))?;
    io("set_current_dir", &scratch.0, std::env::set_current_dir(&scratch.0))?;
    let result = (|| {
        io("write", Path::new("relative"), fs::write("relative", "here"))?;
        let now = std::env::current_dir().map_err(|error| format!("current_dir: {error}"))?;
        expect_eq("current_dir", now, scratch.0.clone())
    })();
    io("set_current_dir", &previous, std::env::set_current_dir(&previous))?;
    result?;
    expect_eq(
        "the relative file",
        io("read", &scratch.path("relative"), fs::read_to_string(scratch.path("relative")))?,
        "here".to_string(),
    )
}

fn devices() -> Outcome {
    let null = Path::new("/dev/null");
    io("write", null, fs::write(null, b"discarded"))?;
    expect_eq("/dev/null reads", io("read", null, fs::read(null))?.len(), 0)?;
    let zero = Path::new("/dev/zero");
    let mut bytes = [0xffu8; 4096];
    io("read", zero, io("open", zero, fs::File::open(zero))?.read_exact(&mut bytes))?;
    ensure(bytes.iter().all(|&byte| byte == 0), || "/dev/zero gave a non-zero byte".into())
}

/// Runs the cases (the program takes no arguments).
pub fn main(arguments: &[String]) -> ExitCode {
    if let Err(code) = crate::check::no_arguments(arguments) {
        return code;
    }
    let mut suite = Suite::new("fs");
    suite.case("write_read_append", write_read_append);
    suite.case("seek_and_holes", seek_and_holes);
    suite.case("large_file", large_file);
    suite.case("directories", directories);
    suite.case("rename_and_remove", rename_and_remove);
    suite.case("error_kinds", errors_have_their_kinds);
    suite.case("symlinks", symbolic_links);
    suite.case("permissions", permissions);
    suite.case("working_directory", working_directory);
    suite.case("dev_null_and_zero", devices);
    suite.finish()
}
