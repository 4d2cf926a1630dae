//! The static gates CI enforces besides the tests (`cargo xtask lint`, called by `.ci/run`):
//! formatting, clippy for the host, the bare-metal target and the userland's musl target
//! (where libc's types differ from the host's), and rustdoc, each with
//! warnings denied. Kept as data so the gates a developer runs are the ones CI runs.

use crate::build::TARGET;

/// Packages built for [`TARGET`]: the hypervisor, the guest packages and the no_std
/// libraries they use. Their `x86_64-unknown-none` code (inline asm, entry points) is only
/// compiled, and so only linted, for that target.
pub const BARE_METAL_PACKAGES: &[&str] = &[
    "hypercall-abi",
    "hypervisor",
    "guest-rt",
    "guest-kernel-core",
    "guest-kernel",
    "conformance-guests",
    "guide-listings",
];

/// One gate: a cargo invocation that must succeed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gate {
    /// What it checks, for the report.
    pub name: &'static str,
    /// Arguments to cargo.
    pub args: Vec<String>,
    /// Extra environment, as (variable, value).
    pub env: Vec<(&'static str, String)>,
}

fn words(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_string).collect()
}

/// Every gate, in the order they run. `rustdoc_flags` is the caller's `RUSTDOCFLAGS`, kept
/// in front of `-D warnings`.
pub fn gates(rustdoc_flags: Option<&str>) -> Vec<Gate> {
    let mut bare_metal = words(&format!("clippy --target {TARGET}"));
    for package in BARE_METAL_PACKAGES {
        bare_metal.extend(["-p".to_string(), package.to_string()]);
    }
    bare_metal.extend(words("-- -D warnings"));
    let rustdoc = match rustdoc_flags.map(str::trim).filter(|flags| !flags.is_empty()) {
        Some(flags) => format!("{flags} -D warnings"),
        None => "-D warnings".to_string(),
    };
    // guest-kernel's native build is another feature set of a package above: a gate of its own.
    let native = words(&format!(
        "clippy --target {TARGET} -p {} --no-default-features --features native --bin {} -- -D warnings",
        crate::native::PACKAGE,
        crate::native::BIN
    ));
    vec![
        Gate { name: "formatting (cargo fmt --check)", args: words("fmt --all --check"), env: Vec::new() },
        Gate { name: "clippy, host", args: words("clippy --workspace --all-targets -- -D warnings"), env: Vec::new() },
        Gate { name: "clippy, x86_64-unknown-none", args: bare_metal, env: Vec::new() },
        Gate {
            name: "clippy, x86_64-unknown-linux-musl (guest-kernel's userland)",
            args: words(&format!(
                "clippy --target {} -p {} --all-targets -- -D warnings",
                crate::userland::TARGET,
                crate::userland::PACKAGE
            )),
            env: Vec::new(),
        },
        Gate { name: "clippy, x86_64-unknown-none, guest-kernel native", args: native, env: Vec::new() },
        Gate { name: "rustdoc", args: words("doc --workspace --no-deps"), env: vec![("RUSTDOCFLAGS", rustdoc)] },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::build::GUEST_PACKAGES;

    #[test]
    fn bare_metal_clippy_covers_every_image_package() {
        let gates = gates(None);
        let bare_metal = gates.iter().find(|gate| gate.args.contains(&TARGET.to_string())).unwrap();
        for package in GUEST_PACKAGES.iter().chain(&["hypervisor"]) {
            assert!(bare_metal.args.contains(&package.to_string()), "{package}");
        }
    }

    #[test]
    fn the_native_kernel_has_a_clippy_gate() {
        let gates = gates(None);
        let native = gates.iter().find(|gate| gate.args.contains(&"native".to_string())).unwrap();
        assert!(native.args.contains(&TARGET.to_string()), "{native:?}");
        assert!(native.args.contains(&"--no-default-features".to_string()), "{native:?}");
    }

    #[test]
    fn every_gate_denies_warnings() {
        for gate in gates(Some("--cfg docsrs")) {
            let denied = gate.args.ends_with(&words("-- -D warnings"))
                || gate.args.contains(&"--check".to_string())
                || gate.env.iter().any(|(name, value)| *name == "RUSTDOCFLAGS" && value.ends_with("-D warnings"));
            assert!(denied, "{gate:?}");
        }
        let rustdoc = gates(Some("--cfg docsrs")).into_iter().find(|gate| gate.args[0] == "doc").unwrap();
        assert_eq!(rustdoc.env, [("RUSTDOCFLAGS", "--cfg docsrs -D warnings".to_string())]);
    }
}
