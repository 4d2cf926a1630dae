//! `cargo xtask run`: boot guests under the hypervisor and stream the console.

use clap::Args;
use std::path::{Path, PathBuf};
use std::time::Duration;
use xtask::accel::{self, Accel};
use xtask::build::{self, GuestBin};
use xtask::cmdline::{self, Domain};
use xtask::qemu::{self, ConsoleMode, Launch, Machine};
use xtask::{archive, workspace, Error, Result};

/// Options of `cargo xtask run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// A guest to start (repeatable, one domain each, in order): a built guest's name, an
    /// ELF file, or a guest crate directory (with Cargo.toml). Default: guest-kernel.
    #[arg(long = "guest", value_name = "NAME_OR_PATH")]
    guests: Vec<String>,
    /// Memory of every domain, <N>K or <N>M (hypervisor default: 4M).
    #[arg(long, value_name = "SIZE")]
    mem: Option<String>,
    /// Reservation quota of every domain (`maxmem=`): how far `memory_op` may grow it.
    #[arg(long, value_name = "SIZE")]
    maxmem: Option<String>,
    /// An argument word for every domain (repeatable).
    #[arg(long = "arg", value_name = "WORD")]
    args: Vec<String>,
    /// Accelerator (default: the faster of KVM and TCG on this host, measured once and cached).
    #[arg(long, value_enum)]
    accel: Option<Accel>,
    /// QEMU machine type.
    #[arg(long, value_enum, default_value_t = Machine::Microvm)]
    machine: Machine,
    /// Kill QEMU after this many seconds (exit 124).
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    timeout: u64,
    /// An extra QEMU argument (repeatable), appended to xtask's own, e.g.
    /// `--qemu-arg=-s --qemu-arg=-S` for QEMU's gdbstub.
    #[arg(long = "qemu-arg", value_name = "ARG", allow_hyphen_values = true)]
    qemu_args: Vec<String>,
    /// Record every hypercall, bounce and upcall of all domains, or of these (comma-separated
    /// ids or image names), and print them decoded with a summary after the run.
    #[arg(long, value_name = "DOMAINS", num_args = 0..=1, require_equals = true, default_missing_value = "all")]
    trace: Option<String>,
    /// Words after `--`: more argument words for every domain, after the `--arg` ones.
    #[arg(last = true, value_name = "WORDS")]
    words: Vec<String>,
}

/// Where a `--guest` value points.
#[derive(Debug, PartialEq, Eq)]
enum GuestSource {
    Built(String),
    File(PathBuf),
    Crate(PathBuf),
}

/// Decides what a `--guest` value means: a built guest's name first, then a path.
fn classify(value: &str, known: &[GuestBin]) -> Result<GuestSource> {
    let looks_like_path = value.contains('/') || value.ends_with(".elf");
    if !looks_like_path
        && (known.iter().any(|guest| guest.bin == value) || xtask::c_guests::names().iter().any(|c| c == value))
    {
        return Ok(GuestSource::Built(value.to_string()));
    }
    let path = Path::new(value);
    if path.is_dir() {
        return Ok(GuestSource::Crate(path.to_path_buf()));
    }
    if path.is_file() {
        return Ok(GuestSource::File(path.to_path_buf()));
    }
    if looks_like_path {
        return Err(Error::usage(format!("guest path {value} does not exist")));
    }
    let mut names: Vec<&str> = known.iter().map(|guest| guest.bin.as_str()).collect();
    names.sort_unstable();
    Err(Error::usage(format!(
        "unknown guest '{value}'; available guests are: {}; or pass a path to an ELF file or a guest crate directory",
        names.join(", ")
    )))
}

/// An archive member name for a file: its stem, made acceptable to the grammar, and unique.
fn image_name(path: &Path, taken: &[String]) -> String {
    let stem = path.file_stem().map(|stem| stem.to_string_lossy().into_owned()).unwrap_or_default();
    let mut name: String =
        stem.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.+".contains(c) { c } else { '_' }).take(90).collect();
    if name.is_empty() || name == "." || name == ".." {
        name = "image".to_string();
    }
    let base = name.clone();
    let mut counter = 2;
    while taken.contains(&name) {
        name = format!("{base}-{counter}");
        counter += 1;
    }
    name
}

/// Builds what is needed and boots it.
pub fn main(args: RunArgs) -> Result<u8> {
    let mem = args.mem.as_deref().map(cmdline::parse_mem).transpose()?.map(|(text, _)| text);
    let maxmem = args.maxmem.as_deref().map(cmdline::parse_mem).transpose()?.map(|(text, _)| text);
    let qemu_binary = qemu::ensure_qemu()?;
    qemu::check_accel_request(args.accel)?;

    let known = build::guest_bins()?;
    let values = if args.guests.is_empty() { vec!["guest-kernel".to_string()] } else { args.guests.clone() };
    // Classify before building, so a typo is reported at once.
    let sources = values.iter().map(|value| classify(value, &known)).collect::<Result<Vec<_>>>()?;
    // Only what this run boots, in one cargo build: the hypervisor, the named guests, and
    // the accelerator probe's guest when the accelerator is to be chosen.
    let mut wanted: Vec<&str> = sources
        .iter()
        .filter_map(|source| match source {
            GuestSource::Built(name) => Some(name.as_str()),
            _ => None,
        })
        .collect();
    if args.accel.is_none() {
        wanted.push(accel::PROBE_GUEST);
    }
    let guests = known.iter().filter(|guest| wanted.contains(&guest.bin.as_str())).cloned().collect();
    build::build(&build::Images::Hypervisor(guests))?;
    if xtask::c_guests::names().iter().any(|name| wanted.contains(&name.as_str())) {
        xtask::c_guests::build_c_guests()?;
    }

    let mut members: Vec<(String, Vec<u8>)> = Vec::new();
    let mut domains = Vec::new();
    for source in sources {
        let (name, path) = match source {
            GuestSource::Built(name) => {
                let path = workspace::guests_dir().join(format!("{name}.elf"));
                (name, path)
            }
            GuestSource::File(path) => (image_name(&path, &names(&members)), path),
            GuestSource::Crate(dir) => {
                let path = build::build_guest_crate(&dir)?;
                (image_name(&path, &names(&members)), path)
            }
        };
        if !members.iter().any(|(existing, _)| *existing == name) {
            let bytes = std::fs::read(&path).map_err(|error| Error::io("cannot read guest image", &path, error))?;
            members.push((name.clone(), bytes));
        }
        let words = args.args.iter().chain(&args.words).cloned().collect();
        domains.push(Domain { image: name, mem: mem.clone(), maxmem: maxmem.clone(), args: words });
    }

    let images: Vec<String> = domains.iter().map(|domain| domain.image.clone()).collect();
    let trace_token = args.trace.as_deref().map(|value| xtask::trace::option_token(value, &images)).transpose()?;
    let append = cmdline::command_line(&domains, trace_token.as_slice())?;
    let mut extra = args.qemu_args;
    if trace_token.is_some() {
        extra.extend(xtask::trace::qemu_args(&xtask::trace::run_file())?);
    }
    let initrd = workspace::runs_dir().join("run.tar");
    qemu::write_archive(&initrd, &archive::build(&members)?)?;
    let choice = qemu::choose_accel(args.accel, &qemu_binary, &workspace::hypervisor_elf())?;
    let accel = choice.accel;
    let launch = Launch {
        qemu: qemu_binary,
        hypervisor: workspace::hypervisor_elf(),
        initrd,
        append,
        accel,
        machine: args.machine,
        extra,
        timeout: Duration::from_secs(args.timeout),
    };
    for line in &choice.lines {
        eprintln!("{line}");
    }
    eprintln!("qemu: {}", launch.display());
    // The terminal types at the focused domain (Ctrl-] moves the focus; README).
    let outcome = qemu::run_with_input(&launch, ConsoleMode::Stream, qemu::ConsoleInput::Terminal)?;
    eprintln!("xtask: {} ({} ms)", outcome.describe(launch.timeout), outcome.wall.as_millis());
    let code = outcome.xtask_exit_code();
    if trace_token.is_some() {
        // A run that failed keeps its own exit code; its trace is still worth reading.
        match xtask::trace::report(&xtask::trace::run_file()) {
            Ok(report) => print!("{report}"),
            Err(error) if code == 0 => return Err(error),
            Err(error) => eprintln!("xtask: {error}"),
        }
    }
    Ok(u8::try_from(code).unwrap_or(125))
}

fn names(members: &[(String, Vec<u8>)]) -> Vec<String> {
    members.iter().map(|(name, _)| name.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known() -> Vec<GuestBin> {
        ["guest-kernel", "hello"]
            .iter()
            .map(|bin| GuestBin { package: "p".into(), bin: bin.to_string(), manifest: "/x/Cargo.toml".into() })
            .collect()
    }

    #[test]
    fn guest_values_are_classified() {
        assert_eq!(classify("hello", &known()).unwrap(), GuestSource::Built("hello".into()));
        let error = classify("nosuch", &known()).unwrap_err();
        assert!(error.message.contains("available guests are: guest-kernel, hello"), "{}", error.message);
        assert_eq!(error.exit_code, xtask::error::EXIT_USAGE);
        let error = classify("./missing/guest.elf", &known()).unwrap_err();
        assert!(error.message.contains("./missing/guest.elf does not exist"));
        let dir = std::env::temp_dir();
        assert_eq!(classify(dir.to_str().unwrap(), &known()).unwrap(), GuestSource::Crate(dir.clone()));
        let file = dir.join(format!("xtask-classify-{}.bin", std::process::id()));
        std::fs::write(&file, b"not an elf").unwrap();
        assert_eq!(classify(file.to_str().unwrap(), &known()).unwrap(), GuestSource::File(file.clone()));
        std::fs::remove_file(file).unwrap();
    }

    #[test]
    fn image_names_are_stems_made_unique() {
        assert_eq!(image_name(Path::new("/a/my guest.elf"), &[]), "my_guest");
        assert_eq!(image_name(Path::new("/b/hello.elf"), &["hello".into()]), "hello-2");
    }
}
