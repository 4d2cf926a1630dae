//! Making sure the pinned toolchain has the targets and components `rust-toolchain.toml`
//! lists.
//!
//! rustup installs them only when it installs the toolchain itself: a toolchain of the same
//! version that was already there is used as it is, and the first bare-metal build then
//! fails with "can't find crate for `core`". So xtask looks into the toolchain's sysroot
//! (one `rustc` call, no rustup needed), and adds what is missing with rustup, saying so
//! in one line; without rustup it names what to install.

use crate::{workspace, Error, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// What `rust-toolchain.toml` asks for beyond the compiler.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Wanted {
    /// The `channel` (a version), for messages.
    pub channel: String,
    /// Extra standard libraries (`targets`).
    pub targets: Vec<String>,
    /// Extra tools (`components`).
    pub components: Vec<String>,
}

/// Reads the `[toolchain]` table's `channel`, `targets` and `components`: each a string or
/// a one-line array of strings, as rustup writes them.
pub fn parse_toolchain_file(text: &str) -> std::result::Result<Wanted, String> {
    let mut wanted = Wanted::default();
    for (number, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        let Some((key, value)) = line.split_once('=') else { continue };
        let strings = || -> std::result::Result<Vec<String>, String> {
            let value = value.trim();
            let inner = value.strip_prefix('[').and_then(|rest| rest.strip_suffix(']')).unwrap_or(value);
            inner
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| {
                    item.strip_prefix('"')
                        .and_then(|item| item.strip_suffix('"'))
                        .map(str::to_string)
                        .ok_or_else(|| format!("line {}: {item} is not a quoted string", number + 1))
                })
                .collect()
        };
        match key.trim() {
            "channel" => wanted.channel = strings()?.concat(),
            "targets" => wanted.targets = strings()?,
            "components" => wanted.components = strings()?,
            _ => {}
        }
    }
    Ok(wanted)
}

/// The file in the sysroot whose presence shows a component is installed (`None`: one this
/// module does not know, which is then left to rustup).
fn component_file(component: &str) -> Option<&'static str> {
    match component {
        "rustfmt" => Some("bin/rustfmt"),
        "clippy" => Some("bin/cargo-clippy"),
        "rust-src" => Some("lib/rustlib/src/rust/library"),
        _ => None,
    }
}

/// What is missing from `sysroot`: the targets without a standard library and the
/// components without their file. `exists` answers for a path below the sysroot.
pub fn missing(wanted: &Wanted, exists: impl Fn(&Path) -> bool) -> Wanted {
    let targets = wanted
        .targets
        .iter()
        .filter(|target| !exists(&Path::new("lib/rustlib").join(target).join("lib")))
        .cloned()
        .collect();
    let components = wanted
        .components
        .iter()
        .filter(|component| component_file(component).is_some_and(|file| !exists(Path::new(file))))
        .cloned()
        .collect();
    Wanted { channel: wanted.channel.clone(), targets, components }
}

/// What to do about what is missing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Everything is there.
    Nothing,
    /// rustup commands to run (argument lists), with a line saying what they add.
    Install {
        /// One line for the user.
        announce: String,
        /// Each a `rustup` argument list.
        commands: Vec<Vec<String>>,
    },
    /// No rustup: an error (a missing target) or a warning (only components), naming the fix.
    Cannot {
        /// True if building cannot work without it.
        fatal: bool,
        /// The message.
        message: String,
    },
}

/// Decides what to do about `missing` when rustup is (or is not) on PATH.
pub fn plan(missing: &Wanted, have_rustup: bool) -> Plan {
    if missing.targets.is_empty() && missing.components.is_empty() {
        return Plan::Nothing;
    }
    let mut what = Vec::new();
    if !missing.targets.is_empty() {
        what.push(format!("target {}", missing.targets.join(", ")));
    }
    if !missing.components.is_empty() {
        what.push(format!("component {}", missing.components.join(", ")));
    }
    let what = what.join(" and ");
    let toolchain = if missing.channel.is_empty() {
        "the pinned toolchain".to_string()
    } else {
        format!("toolchain {}", missing.channel)
    };
    if have_rustup {
        let mut commands = Vec::new();
        if !missing.targets.is_empty() {
            commands.push([&["target".to_string(), "add".to_string()][..], &missing.targets].concat());
        }
        if !missing.components.is_empty() {
            commands.push([&["component".to_string(), "add".to_string()][..], &missing.components].concat());
        }
        return Plan::Install {
            announce: format!("toolchain: {toolchain} lacks {what}; adding it with rustup"),
            commands,
        };
    }
    let mut fix = Vec::new();
    if !missing.targets.is_empty() {
        fix.push(format!("rustup target add {}", missing.targets.join(" ")));
    }
    if !missing.components.is_empty() {
        fix.push(format!("rustup component add {}", missing.components.join(" ")));
    }
    Plan::Cannot {
        fatal: !missing.targets.is_empty(),
        message: format!(
            "{toolchain} lacks {what} and rustup is not installed; install rustup (https://rustup.rs, or Debian's package rustup), then run `{}` in this checkout",
            fix.join(" && ")
        ),
    }
}

/// The sysroot of the `rustc` that builds this workspace.
fn sysroot() -> Result<PathBuf> {
    let output = Command::new(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()))
        .args(["--print", "sysroot"])
        .current_dir(workspace::root())
        .output()
        .map_err(|error| {
            Error::environment(format!("cannot run rustc: {error}; install Rust with rustup (https://rustup.rs)"))
        })?;
    if !output.status.success() {
        return Err(Error::environment(format!(
            "rustc --print sysroot failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&output.stdout).trim()))
}

/// Adds what `rust-toolchain.toml` lists and the toolchain lacks; fails (exit 122) naming the
/// fix when a missing target cannot be added.
pub fn ensure() -> Result<()> {
    let file = workspace::root().join("rust-toolchain.toml");
    let text = std::fs::read_to_string(&file).map_err(|error| Error::io("cannot read", &file, error))?;
    let wanted =
        parse_toolchain_file(&text).map_err(|error| Error::environment(format!("{}: {error}", file.display())))?;
    let sysroot = sysroot()?;
    let missing = missing(&wanted, |path| sysroot.join(path).exists());
    match plan(&missing, crate::packages::on_path("rustup")) {
        Plan::Nothing => Ok(()),
        Plan::Install { announce, commands } => {
            println!("{announce}");
            for arguments in commands {
                let status = Command::new("rustup")
                    .args(&arguments)
                    .current_dir(workspace::root())
                    .status()
                    .map_err(|error| Error::environment(format!("cannot run rustup: {error}")))?;
                if !status.success() {
                    return Err(Error::environment(format!(
                        "rustup {} failed ({status}); run it yourself in {} (it needs to reach static.rust-lang.org)",
                        arguments.join(" "),
                        workspace::root().display()
                    )));
                }
            }
            Ok(())
        }
        Plan::Cannot { fatal: true, message } => Err(Error::environment(message)),
        Plan::Cannot { fatal: false, message } => {
            eprintln!("warning: {message}");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wanted() -> Wanted {
        Wanted {
            channel: "1.95.0".into(),
            targets: vec!["x86_64-unknown-none".into()],
            components: vec!["rustfmt".into(), "clippy".into()],
        }
    }

    #[test]
    fn the_real_toolchain_file_is_read() {
        let text = std::fs::read_to_string(workspace::root().join("rust-toolchain.toml")).unwrap();
        let parsed = parse_toolchain_file(&text).unwrap();
        assert!(parsed.targets.contains(&"x86_64-unknown-none".to_string()), "{parsed:?}");
        assert!(!parsed.channel.is_empty());
        assert_eq!(
            parse_toolchain_file(
                "[toolchain]\nchannel = \"1.95.0\" # pinned\ncomponents = [ \"rustfmt\",\"clippy\" ]\ntargets = []\n"
            ),
            Ok(Wanted {
                channel: "1.95.0".into(),
                targets: vec![],
                components: vec!["rustfmt".into(), "clippy".into()]
            })
        );
        assert!(parse_toolchain_file("targets = [x86_64]").unwrap_err().contains("line 1"));
    }

    #[test]
    fn what_is_missing_is_read_from_the_sysroot() {
        let everything = |_: &Path| true;
        assert_eq!(plan(&missing(&wanted(), everything), true), Plan::Nothing);
        let bare = missing(&wanted(), |path: &Path| path.starts_with("bin/rustfmt"));
        assert_eq!(bare.targets, ["x86_64-unknown-none"]);
        assert_eq!(bare.components, ["clippy"]);
        // A component this module cannot check is not reported missing.
        let unknown = Wanted { components: vec!["llvm-tools".into()], ..Wanted::default() };
        assert!(missing(&unknown, |_: &Path| false).components.is_empty());
    }

    #[test]
    fn rustup_adds_what_is_missing_in_one_announced_step() {
        let bare = missing(&wanted(), |_: &Path| false);
        let Plan::Install { announce, commands } = plan(&bare, true) else { panic!("expected an install plan") };
        assert_eq!(announce, "toolchain: toolchain 1.95.0 lacks target x86_64-unknown-none and component rustfmt, clippy; adding it with rustup");
        assert_eq!(
            commands,
            [vec!["target", "add", "x86_64-unknown-none"], vec!["component", "add", "rustfmt", "clippy"]]
        );
    }

    #[test]
    fn without_rustup_the_fix_is_named() {
        let bare = missing(&wanted(), |_: &Path| false);
        let Plan::Cannot { fatal, message } = plan(&bare, false) else { panic!("expected an error") };
        assert!(fatal);
        assert!(
            message.contains("install rustup") && message.contains("rustup target add x86_64-unknown-none"),
            "{message}"
        );
        let tools_only = missing(&wanted(), |path: &Path| path.starts_with("lib"));
        assert!(
            matches!(plan(&tools_only, false), Plan::Cannot { fatal: false, .. }),
            "missing tools alone do not stop a build"
        );
    }
}
