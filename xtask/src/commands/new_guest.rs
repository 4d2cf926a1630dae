//! `cargo xtask new-guest PATH`: write a guest crate (xtask::template) that builds anywhere.

use clap::Args;
use std::path::{Path, PathBuf};
use xtask::template::{self, File};
use xtask::{Error, Result};

/// Options of `cargo xtask new-guest`.
#[derive(Args, Debug)]
pub struct NewGuestArgs {
    /// Directory to create the crate in (it must not exist, or be empty); inside or outside
    /// the checkout.
    #[arg(value_name = "PATH")]
    path: PathBuf,
    /// Crate, binary and image name (default: PATH's last component).
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
}

/// Refuses a `path` that is a file or a directory with anything in it.
fn check_destination(path: &Path) -> Result<()> {
    match std::fs::read_dir(path) {
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(_) => Err(Error::usage(format!(
                "{} exists and is not empty; new-guest writes a crate only into a new or empty directory",
                path.display()
            ))),
        },
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(_) if path.exists() => {
            Err(Error::usage(format!("{} exists and is not a directory; name a new directory", path.display())))
        }
        Err(error) => Err(Error::io("cannot read", path, error)),
    }
}

/// The crate name: `--name`, else the last component of `path` (resolved when it exists,
/// so that `.` names the current directory).
fn crate_name(path: &Path, name: Option<&str>) -> Result<String> {
    if let Some(name) = name {
        return Ok(name.to_string());
    }
    let resolved = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    resolved
        .file_name()
        .and_then(|name| name.to_str())
        .map(str::to_string)
        .ok_or_else(|| Error::usage(format!("cannot take a crate name from {}; pass --name NAME", path.display())))
}

/// Writes `files` under `dir`, which [`check_destination`] accepted.
fn write(dir: &Path, files: &[File]) -> Result<()> {
    for file in files {
        let path = dir.join(&file.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|error| Error::io("cannot create", parent, error))?;
        }
        std::fs::write(&path, &file.contents).map_err(|error| Error::io("cannot write", &path, error))?;
    }
    Ok(())
}

/// Checks the destination and the name, then writes the crate.
pub fn create(path: &Path, name: Option<&str>) -> Result<Vec<File>> {
    check_destination(path)?;
    let name = crate_name(path, name)?;
    let files = template::guest_crate(&name)?;
    write(path, &files)?;
    Ok(files)
}

/// Writes the crate and says how to build and boot it.
pub fn main(args: NewGuestArgs) -> Result<u8> {
    let files = create(&args.path, args.name.as_deref())?;
    let shown = args.path.display();
    for file in &files {
        println!("new-guest: wrote {}", Path::new(&args.path).join(&file.path).display());
    }
    println!("new-guest: boot it with `cargo xtask run --guest {shown}` (from the ringfence checkout), or build it");
    println!("new-guest: in {shown} with `cargo build --release --target {}`", xtask::build::TARGET);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use xtask::error::EXIT_USAGE;

    fn scratch(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-new-guest-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_new_or_empty_directory_gets_the_crate() {
        let dir = scratch("fresh").join("my-guest");
        let files = create(&dir, None).unwrap();
        for file in &files {
            assert_eq!(std::fs::read_to_string(dir.join(&file.path)).unwrap(), file.contents);
        }
        assert!(std::fs::read_to_string(dir.join("Cargo.toml")).unwrap().contains("name = \"my-guest\""));
        let empty = scratch("empty");
        std::fs::create_dir_all(&empty).unwrap();
        create(&empty, Some("other")).unwrap();
        assert!(std::fs::read_to_string(empty.join("Cargo.toml")).unwrap().contains("name = \"other\""));
        std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
        std::fs::remove_dir_all(empty).unwrap();
    }

    #[test]
    fn an_existing_crate_or_file_is_refused_untouched() {
        let dir = scratch("taken");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("notes.txt"), "mine").unwrap();
        let error = create(&dir, Some("g")).unwrap_err();
        assert_eq!(error.exit_code, EXIT_USAGE);
        assert!(error.message.contains("exists and is not empty"), "{}", error.message);
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "nothing was written");
        let file = dir.join("notes.txt");
        let error = create(&file, Some("g")).unwrap_err();
        assert_eq!(error.exit_code, EXIT_USAGE);
        assert!(error.message.contains("is not a directory"), "{}", error.message);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_bad_name_is_refused_before_anything_is_written() {
        let dir = scratch("bad-name").join("1st guest");
        let error = create(&dir, None).unwrap_err();
        assert_eq!(error.exit_code, EXIT_USAGE);
        assert!(!dir.exists());
        let error = crate_name(Path::new("/"), None).unwrap_err();
        assert!(error.message.contains("--name"), "{}", error.message);
        let here = std::env::current_dir().unwrap();
        assert_eq!(crate_name(Path::new("."), None).unwrap(), here.file_name().unwrap().to_str().unwrap());
    }
}
