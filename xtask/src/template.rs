//! The guest crate `cargo xtask new-guest` writes (templates in `xtask/templates/guest/`):
//! a crate that builds in or out of the checkout, with the pinned toolchain and the
//! workspace's locked crate versions. The README's "Writing your own guest" listing is
//! [`MAIN_RS`], checked by a test; the workspace's guest packages include [`BUILD_RS`]'s
//! file as their build script, so every guest links the same way.

use crate::{workspace, Error, Result};
use std::path::{Path, PathBuf};

/// The guest's `src/main.rs`: hello, then one hypercall.
pub const MAIN_RS: &str = include_str!("../templates/guest/main.rs");
/// The guest's `build.rs`: links its binaries with guest-rt's linker script.
pub const BUILD_RS: &str = include_str!("../templates/guest/build.rs");
/// The guest's `Cargo.toml`, with `@NAME@` and `@GUEST_RT@` (a TOML string) to fill in.
const CARGO_TOML: &str = include_str!("../templates/guest/Cargo.toml.template");
/// The guest's `.gitignore`.
const GITIGNORE: &str = include_str!("../templates/guest/gitignore");

/// Longest accepted crate name: it is also the binary's and the boot-archive image's name.
pub const MAX_NAME: usize = 64;

/// Names cargo or rustc refuse for a package with a binary of the same name (built-in
/// crates, cargo's own directories in `target/`, the guest's own dependencies), besides the
/// Rust keywords below.
const RESERVED: &[&str] = &[
    "alloc",
    "core",
    "std",
    "test",
    "proc_macro",
    "build",
    "deps",
    "examples",
    "incremental",
    "guest_rt",
    "hypercall_abi",
];

/// Rust's strict and reserved keywords: a crate name (with `-` read as `_`) must not be one.
const KEYWORDS: &[&str] = &[
    "as", "async", "await", "become", "box", "break", "const", "continue", "crate", "do", "dyn", "else", "enum",
    "extern", "false", "final", "fn", "for", "gen", "if", "impl", "in", "let", "loop", "macro", "match", "mod", "move",
    "mut", "override", "priv", "pub", "ref", "return", "self", "static", "struct", "super", "trait", "true", "try",
    "type", "typeof", "unsafe", "unsized", "use", "virtual", "where", "while", "yield",
];

/// Checks a guest crate's name: cargo's rules for a package whose binary has the same name
/// and is an image name in the boot archive (SPEC.md's grammar is wider).
pub fn check_name(name: &str) -> Result<()> {
    let fix = "pass --name NAME with letters, digits, '-' and '_', starting with a letter";
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(Error::usage(format!("guest name '{name}' must be 1 to {MAX_NAME} characters; {fix}")));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphabetic())
        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(Error::usage(format!("guest name '{name}' is not a valid crate name; {fix}")));
    }
    let crate_name = name.replace('-', "_");
    if KEYWORDS.contains(&crate_name.as_str()) || RESERVED.contains(&crate_name.as_str()) {
        return Err(Error::usage(format!(
            "guest name '{name}' is reserved (a Rust keyword, a built-in crate, a cargo directory or a guest dependency); {fix}"
        )));
    }
    Ok(())
}

/// `text` as a TOML basic string.
fn toml_string(text: &str) -> String {
    let mut quoted = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            c if c.is_control() => quoted.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// The guest's `Cargo.toml` for crate `name` depending on the guest-rt at `guest_rt`.
pub fn cargo_toml(name: &str, guest_rt: &Path) -> String {
    CARGO_TOML.replace("@NAME@", name).replace("@GUEST_RT@", &toml_string(&guest_rt.to_string_lossy()))
}

/// One file of a new guest crate: its path relative to the crate directory and contents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct File {
    /// Relative path.
    pub path: PathBuf,
    /// Contents.
    pub contents: String,
}

/// Every file of a new guest crate named `name`, depending on this checkout's guest-rt by
/// absolute path, with copies of the workspace's `Cargo.lock` (the same crate versions, so
/// a warm registry cache builds it offline) and `rust-toolchain.toml` (the same compiler
/// and the bare-metal target, when cargo runs in the crate's directory).
pub fn guest_crate(name: &str) -> Result<Vec<File>> {
    check_name(name)?;
    let root = workspace::root();
    let guest_rt = root.join("guest-rt");
    let guest_rt = guest_rt.canonicalize().map_err(|error| Error::io("cannot resolve", &guest_rt, error))?;
    let read = |file: &str| {
        let path = root.join(file);
        std::fs::read_to_string(&path).map_err(|error| Error::io("cannot read", &path, error))
    };
    let file = |path: &str, contents: String| File { path: PathBuf::from(path), contents };
    Ok(vec![
        file("Cargo.toml", cargo_toml(name, &guest_rt)),
        file("Cargo.lock", read("Cargo.lock")?),
        file("rust-toolchain.toml", read("rust-toolchain.toml")?),
        file("build.rs", BUILD_RS.to_string()),
        file("src/main.rs", MAIN_RS.to_string()),
        file(".gitignore", GITIGNORE.to_string()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_cargo_rules() {
        for good in ["my-guest", "g", "hello_2", "A1"] {
            check_name(good).unwrap();
        }
        for bad in
            ["", "1abc", "-x", "my guest", "ünï", "a/b", "a.b", "fn", "self", "test", "build", "guest-rt", "core"]
        {
            let error = check_name(bad).unwrap_err();
            assert_eq!(error.exit_code, crate::error::EXIT_USAGE, "{bad}");
            assert!(error.message.contains("--name"), "{}", error.message);
        }
        check_name(&"a".repeat(MAX_NAME)).unwrap();
        assert!(check_name(&"a".repeat(MAX_NAME + 1)).is_err());
    }

    #[test]
    fn the_manifest_names_the_crate_and_quotes_the_path() {
        let toml = cargo_toml("my-guest", Path::new("/home/a \"b\"\\c/guest-rt"));
        assert!(toml.contains("name = \"my-guest\"\n"), "{toml}");
        assert!(toml.contains(r#"guest-rt = { path = "/home/a \"b\"\\c/guest-rt" }"#), "{toml}");
        assert!(!toml.contains('@'), "every placeholder is filled: {toml}");
        assert!(toml.contains("\n[workspace]\n"), "the guest is its own workspace");
    }

    #[test]
    fn a_guest_crate_has_every_file_it_needs() {
        let files = guest_crate("my-guest").unwrap();
        let paths: Vec<&str> = files.iter().map(|file| file.path.to_str().unwrap()).collect();
        assert_eq!(paths, ["Cargo.toml", "Cargo.lock", "rust-toolchain.toml", "build.rs", "src/main.rs", ".gitignore"]);
        let guest_rt = workspace::root().join("guest-rt").canonicalize().unwrap();
        assert!(files[0].contents.contains(&toml_string(guest_rt.to_str().unwrap())));
        let lock = std::fs::read_to_string(workspace::root().join("Cargo.lock")).unwrap();
        assert_eq!(files[1].contents, lock);
        assert!(guest_crate("fn").is_err());
    }

    #[test]
    fn the_workspace_guests_build_with_the_template_build_script() {
        for package in ["guest-kernel", "tests/guests"] {
            let build = std::fs::read_to_string(workspace::root().join(package).join("build.rs")).unwrap();
            assert!(
                build.contains("include!(\"") && build.contains("/xtask/templates/guest/build.rs\");"),
                "{package}"
            );
        }
    }
}
