//! `cargo xtask run`: boot guests under the hypervisor and stream the console.

use clap::Args;
use std::path::{Path, PathBuf};
use std::time::Duration;
use xtask::accel::{self, Accel};
use xtask::build::{self, GuestBin};
use xtask::cmdline::{self, Domain};
use xtask::domain_options::DomainOptions;
use xtask::qemu::{self, ConsoleMode, Launch, Machine};
use xtask::{archive, workspace, Error, Result};

/// Options of `cargo xtask run` (and of `cargo xtask gdb`, which boots the same way).
#[derive(Args, Debug)]
pub struct RunArgs {
    /// `--guest` and the options that describe domains (`xtask::domain_options`).
    #[command(flatten)]
    pub domains: DomainOptions,
    /// Accelerator (default: the faster of KVM and TCG on this host, measured once and cached).
    #[arg(long, value_enum)]
    pub accel: Option<Accel>,
    /// QEMU machine type.
    #[arg(long, value_enum, default_value_t = Machine::Microvm)]
    pub machine: Machine,
    /// Kill QEMU after this many seconds (exit 124). Default: 60 for run; none for gdb.
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
    /// An extra QEMU argument (repeatable), appended to xtask's own, e.g.
    /// `--qemu-arg=-d --qemu-arg=int`.
    #[arg(long = "qemu-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub qemu_args: Vec<String>,
    /// Record every hypercall, bounce and upcall of all domains, or of these (comma-separated
    /// ids or image names), and print them decoded with a summary after the run.
    #[arg(long, value_name = "DOMAINS", num_args = 0..=1, require_equals = true, default_missing_value = "all")]
    pub trace: Option<String>,
    /// Boot guest-kernel's native build instead, directly under QEMU (no hypervisor): the
    /// `--arg` words are its options, the words after `--` its command; exits with its
    /// power-off code (2 if it crashed). Not with --guest, --mem, --maxmem, --name, --trace.
    #[arg(long)]
    pub native: bool,
    /// With --native: the initramfs (a cpio newc archive) passed as QEMU's -initrd.
    #[arg(long, value_name = "PATH", requires = "native")]
    pub initrd: Option<PathBuf>,
    /// Words after `--`: more argument words for every domain, after the `--arg` ones; for
    /// guest-kernel, the command its init runs (e.g. `-- sh -c 'echo hi'`).
    #[arg(last = true, value_name = "WORDS")]
    pub words: Vec<String>,
}

/// `run --native`: the options that apply to a native run, the others refused.
fn native_run(args: &RunArgs) -> Result<xtask::native::Run> {
    let requests = args.domains.resolve(&[])?;
    let plain = match requests.as_slice() {
        [request] => {
            request.guest == xtask::domain_options::DEFAULT_GUEST
                && request.name.is_none()
                && request.mem.is_none()
                && request.maxmem.is_none()
        }
        _ => false,
    };
    if !plain || args.trace.is_some() {
        return Err(Error::usage(
            "--native boots guest-kernel alone, without the hypervisor: --guest, --mem, --maxmem, --name and --trace \
             do not apply (give the machine more memory with --qemu-arg=-m --qemu-arg=1G)",
        ));
    }
    Ok(xtask::native::Run {
        accel: args.accel,
        machine: args.machine,
        timeout: args.timeout.map_or(RUN_TIMEOUT, Duration::from_secs),
        qemu_args: args.qemu_args.clone(),
        initrd: args.initrd.clone(),
        options: requests.into_iter().next().map(|request| request.args).unwrap_or_default(),
        words: args.words.clone(),
    })
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

/// The name a file gives its image: its stem, made acceptable to the grammar.
fn stem_name(path: &Path) -> String {
    let stem = path.file_stem().map(|stem| stem.to_string_lossy().into_owned()).unwrap_or_default();
    let name: String =
        stem.chars().map(|c| if c.is_ascii_alphanumeric() || "-_.+".contains(c) { c } else { '_' }).take(90).collect();
    if name.is_empty() || name == "." || name == ".." {
        "image".to_string()
    } else {
        name
    }
}

/// Checks a `--module` value names a file (SPEC.md §2.4: the module is an archive member).
fn module_path(value: &str) -> Result<PathBuf> {
    let path = Path::new(value);
    if !path.exists() {
        return Err(Error::usage(format!(
            "--module {value}: no such file; give the path of the file the domain should get (e.g. an initramfs)"
        )));
    }
    if !path.is_file() {
        return Err(Error::usage(format!("--module {value} is not a file; give the path of a file, not a directory")));
    }
    Ok(path.to_path_buf())
}

/// A `--module` file's bytes; an empty file is refused here, as the hypervisor would
/// refuse it (a module holds at least one byte).
fn read_module(path: &Path) -> Result<Vec<u8>> {
    let shown = path.display();
    let bytes = std::fs::read(path).map_err(|error| {
        Error::usage(format!("--module {shown} cannot be read ({error}); check the file's permissions"))
    })?;
    if bytes.is_empty() {
        return Err(Error::usage(format!(
            "--module {shown} is empty; a module holds at least one byte (the hypervisor refuses an empty one)"
        )));
    }
    Ok(bytes)
}

/// The ported kernel's image name.
const GUEST_KERNEL: &str = "guest-kernel";

/// A guest-kernel domain boots its initramfs with enough memory, and the words after
/// `--` are the command its init runs (each word encoded, so it may hold spaces); its own
/// `--arg` words are kernel options (`verbose`, `quiet`, `init=PATH`).
fn kernel_domain(request: &mut xtask::domain_options::DomainRequest, words: &[String]) -> Result<()> {
    if request.module.is_none() {
        request.module = Some(xtask::initramfs::initramfs()?.to_string_lossy().into_owned());
    }
    if request.mem.is_none() && request.maxmem.is_none() {
        request.mem = Some(xtask::kernel_args::MEMORY.to_string());
    }
    if !words.is_empty() {
        let command: Vec<std::ffi::OsString> = words.iter().map(std::ffi::OsString::from).collect();
        request.args = xtask::kernel_args::tokens(&request.args, &command)?;
    }
    Ok(())
}

/// One domain on its way to the command line: its `--name` (if any), the name its guest
/// suggests, and its image file.
struct Named<'a> {
    explicit: Option<&'a str>,
    suggested: String,
    image: &'a Path,
}

/// Names every domain. A `--name` is kept as given (`DomainOptions::resolve` made them
/// unique). Any other domain takes its suggested name, or that name with `-2`, `-3`...
/// when another image already has it: domains of one image share its name (and its
/// archive member), domains of different images never do.
fn assign_names(domains: &[Named]) -> Vec<String> {
    let mut owners: Vec<(String, &Path)> =
        domains.iter().filter_map(|domain| Some((domain.explicit?.to_string(), domain.image))).collect();
    let mut names = Vec::new();
    for domain in domains {
        if let Some(name) = domain.explicit {
            names.push(name.to_string());
            continue;
        }
        let free = |name: &str| owners.iter().all(|(owned, image)| owned != name || *image == domain.image);
        let mut name = domain.suggested.clone();
        let mut counter = 2;
        while !free(&name) {
            name = format!("{}-{counter}", domain.suggested);
            counter += 1;
        }
        owners.push((name.clone(), domain.image));
        names.push(name);
    }
    names
}

/// A boot ready to start: QEMU's launch, and what was booted where.
pub struct Prepared {
    /// The QEMU run.
    pub launch: Launch,
    /// Each domain's name and image file, in domain order (d1 first).
    pub domains: Vec<(String, PathBuf)>,
    /// How the accelerator was chosen (printed before the run).
    pub accel_lines: Vec<String>,
    /// `--trace` was given: the run's trace is decoded after it.
    pub traced: bool,
}

/// Validates `args`, builds what they boot, and writes the boot archive `<archive>.tar`
/// in the runs directory. `default_timeout` applies when `--timeout` is not given.
pub fn prepare(args: &RunArgs, archive: &str, default_timeout: Duration) -> Result<Prepared> {
    if args.native {
        return Err(Error::usage("--native is for cargo xtask run (the native kernel has no gdb session here)"));
    }
    let mut requests = args.domains.resolve(&[])?;
    for request in &mut requests {
        if request.guest == GUEST_KERNEL {
            kernel_domain(request, &args.words)?;
        } else {
            request.args.extend(args.words.iter().cloned());
        }
    }
    let modules = requests
        .iter()
        .map(|request| request.module.as_deref().map(module_path).transpose())
        .collect::<Result<Vec<_>>>()?;
    let qemu_binary = qemu::ensure_qemu()?;
    qemu::check_accel_request(args.accel)?;

    let known = build::guest_bins()?;
    // Classify before building, so a typo is reported at once.
    let sources = requests.iter().map(|request| classify(&request.guest, &known)).collect::<Result<Vec<_>>>()?;
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

    let mut images = Vec::new();
    for source in sources {
        images.push(match source {
            GuestSource::Built(name) => (name.clone(), workspace::guests_dir().join(format!("{name}.elf"))),
            GuestSource::File(path) => (stem_name(&path), path),
            GuestSource::Crate(dir) => {
                let path = build::build_guest_crate(&dir)?;
                (stem_name(&path), path)
            }
        });
    }
    // One file reached by two spellings is one image (or module).
    let canonical = |path: &PathBuf| path.canonicalize().unwrap_or(path.clone());
    let resolved: Vec<PathBuf> = images.iter().map(|(_, path)| canonical(path)).collect();
    let resolved_modules: Vec<(PathBuf, &PathBuf)> =
        modules.iter().flatten().map(|path| (canonical(path), path)).collect();
    let mut named: Vec<Named> = requests
        .iter()
        .zip(&images)
        .zip(&resolved)
        .map(|((request, (suggested, _)), image)| Named {
            explicit: request.name.as_deref(),
            suggested: suggested.clone(),
            image,
        })
        .collect();
    // Modules are named after every domain, so they never change a domain's name: a
    // module file shares the member of the same file booted as an image, and takes a
    // suffix where another file has its name.
    named.extend(resolved_modules.iter().map(|(resolved, path)| Named {
        explicit: None,
        suggested: stem_name(path),
        image: resolved,
    }));
    let mut names = assign_names(&named);
    let mut module_names = names.split_off(requests.len()).into_iter();

    let mut members: Vec<(String, Vec<u8>)> = Vec::new();
    let mut domains = Vec::new();
    let mut booted = Vec::new();
    for (((request, name), (_, path)), module_file) in requests.into_iter().zip(names).zip(images).zip(&modules) {
        if !members.iter().any(|(existing, _)| *existing == name) {
            let bytes = std::fs::read(&path).map_err(|error| Error::io("cannot read guest image", &path, error))?;
            members.push((name.clone(), bytes));
        }
        let module = match module_file {
            Some(file) => {
                let member = module_names.next().expect("assign_names named every module");
                if !members.iter().any(|(existing, _)| *existing == member) {
                    members.push((member.clone(), read_module(file)?));
                }
                Some(member)
            }
            None => None,
        };
        domains.push(Domain {
            image: name.clone(),
            mem: request.mem,
            maxmem: request.maxmem,
            module,
            args: request.args,
        });
        booted.push((name, path));
    }

    let images: Vec<String> = domains.iter().map(|domain| domain.image.clone()).collect();
    let trace_token = args.trace.as_deref().map(|value| xtask::trace::option_token(value, &images)).transpose()?;
    let append = cmdline::command_line(&domains, trace_token.as_slice())?;
    let mut extra = args.qemu_args.clone();
    if trace_token.is_some() {
        extra.extend(xtask::trace::qemu_args(&xtask::trace::run_file())?);
    }
    let initrd = workspace::runs_dir().join(format!("{archive}.tar"));
    qemu::write_archive(&initrd, &archive::build(&members)?)?;
    let choice = qemu::choose_accel(args.accel, &qemu_binary, &workspace::hypervisor_elf())?;
    let launch = Launch {
        qemu: qemu_binary,
        hypervisor: workspace::hypervisor_elf(),
        initrd,
        append,
        accel: choice.accel,
        machine: args.machine,
        memory: qemu::MACHINE_MEMORY,
        extra,
        timeout: args.timeout.map_or(default_timeout, Duration::from_secs),
    };
    Ok(Prepared { launch, domains: booted, accel_lines: choice.lines, traced: trace_token.is_some() })
}

/// How long `run` lets QEMU run unless `--timeout` says otherwise.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// Builds what is needed and boots it.
pub fn main(args: RunArgs) -> Result<u8> {
    if args.native {
        return xtask::native::run(&native_run(&args)?);
    }
    let Prepared { launch, accel_lines, traced, .. } = prepare(&args, "run", RUN_TIMEOUT)?;
    for line in &accel_lines {
        eprintln!("{line}");
    }
    eprintln!("qemu: {}", launch.display());
    // The terminal types at the focused domain (Ctrl-] moves the focus; README).
    let outcome = qemu::run_with_input(&launch, ConsoleMode::Stream, qemu::ConsoleInput::Terminal)?;
    eprintln!("xtask: {} ({} ms)", outcome.describe(launch.timeout), outcome.wall.as_millis());
    let code = outcome.xtask_exit_code();
    if traced {
        // A run that failed keeps its own exit code; its trace is still worth reading.
        match xtask::trace::report(&xtask::trace::run_file()) {
            Ok(report) => print!("{report}"),
            Err(error) if code == 0 => return Err(error),
            Err(error) => eprintln!("xtask: {error}"),
        }
    }
    Ok(u8::try_from(code).unwrap_or(125))
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

    fn run_args(line: &str) -> RunArgs {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            run: RunArgs,
        }
        <Cli as clap::Parser>::try_parse_from(std::iter::once("run").chain(line.split_whitespace())).unwrap().run
    }

    #[test]
    fn native_runs_take_options_and_words_and_refuse_domain_options() {
        let run = native_run(&run_args("--native --arg verbose --initrd /tmp/i.cpio --timeout 5 -- sh -c x")).unwrap();
        assert_eq!((run.options, run.words), (vec!["verbose".to_string()], vec!["sh".into(), "-c".into(), "x".into()]));
        assert_eq!((run.initrd, run.timeout), (Some(PathBuf::from("/tmp/i.cpio")), Duration::from_secs(5)));
        for line in ["--native --guest hello", "--native --mem 4M", "--native --name k", "--native --trace"] {
            let error = native_run(&run_args(line)).unwrap_err();
            assert_eq!(error.exit_code, xtask::error::EXIT_USAGE, "{line}");
            assert!(error.message.contains("do not apply"), "{line}: {}", error.message);
        }
        let error = prepare(&run_args("--native"), "gdb", Duration::ZERO).err().unwrap();
        assert!(error.message.contains("--native is for cargo xtask run"), "{}", error.message);
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
    fn module_files_must_exist_hold_bytes_and_be_files() {
        let dir = std::env::temp_dir().join(format!("xtask-module-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.cpio");
        let error = module_path(missing.to_str().unwrap()).unwrap_err();
        assert!(error.message.contains("missing.cpio: no such file"), "{}", error.message);
        assert_eq!(error.exit_code, xtask::error::EXIT_USAGE);
        let error = module_path(dir.to_str().unwrap()).unwrap_err();
        assert!(error.message.contains("is not a file"), "{}", error.message);
        let empty = dir.join("empty.cpio");
        std::fs::write(&empty, b"").unwrap();
        let error = read_module(&module_path(empty.to_str().unwrap()).unwrap()).unwrap_err();
        assert!(error.message.contains("empty.cpio is empty; a module holds at least one byte"), "{}", error.message);
        assert_eq!(error.exit_code, xtask::error::EXIT_USAGE);
        let good = dir.join("initramfs.cpio");
        std::fs::write(&good, b"070701").unwrap();
        assert_eq!(read_module(&module_path(good.to_str().unwrap()).unwrap()).unwrap(), b"070701");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn modules_are_named_after_the_domains_without_renaming_them() {
        let names = assign_names(&[
            named(None, "guest-kernel", "/g/guest-kernel.elf"),
            named(Some("initramfs"), "hello", "/g/hello.elf"),
            // Modules: another file already has the name; the same file as an image.
            named(None, "initramfs", "/x/initramfs.cpio"),
            named(None, "initramfs", "/x/initramfs.cpio"),
            named(None, "hello", "/g/hello.elf"),
        ]);
        assert_eq!(names, ["guest-kernel", "initramfs", "initramfs-2", "initramfs-2", "hello"]);
    }

    #[test]
    fn file_names_are_stems_made_acceptable() {
        assert_eq!(stem_name(Path::new("/a/my guest.elf")), "my_guest");
        assert_eq!(stem_name(Path::new("/b/hello.elf")), "hello");
        assert_eq!(stem_name(Path::new("/")), "image");
    }

    fn named<'a>(explicit: Option<&'a str>, suggested: &str, image: &'a str) -> Named<'a> {
        Named { explicit, suggested: suggested.into(), image: Path::new(image) }
    }

    #[test]
    fn domains_of_one_image_share_its_name_and_others_get_a_suffix() {
        let names = assign_names(&[
            named(None, "hello", "/g/hello.elf"),
            named(None, "hello", "/g/hello.elf"),
            named(None, "hello", "/elsewhere/hello.elf"),
            named(None, "hello", "/third/hello.elf"),
        ]);
        assert_eq!(names, ["hello", "hello", "hello-2", "hello-3"]);
    }

    #[test]
    fn explicit_names_are_kept_and_never_taken_by_another_image() {
        let names = assign_names(&[
            named(None, "hello", "/g/hello.elf"),
            named(Some("left"), "pingpong", "/g/pingpong.elf"),
            named(Some("hello"), "pingpong", "/g/pingpong.elf"),
            named(None, "left", "/x/left.elf"),
            named(None, "pingpong", "/g/pingpong.elf"),
        ]);
        // d1's suggestion belongs to d3's --name (another image): suffixed. d5 is the image
        // d2 and d3 named, so it may share either name; it takes its own suggestion.
        assert_eq!(names, ["hello-2", "left", "hello", "left-2", "pingpong"]);
    }
}
