//! The boot command line: which domains to start, with what memory and arguments.
//!
//! Grammar (SPEC.md §2.4): space-separated tokens;
//! `domain=<image>[,mem=<N>K|<N>M][,maxmem=<N>K|<N>M][,module=<member>][,arg=<word>]...`
//! once per domain in start order (`maxmem=` is the reservation quota, default = `mem=`,
//! never below it; `module=` names the archive member given to the domain as its boot
//! module),
//! `bench` and `audit` as flags, `slice=<ms>` for the scheduler, `trace[=<all|id|image>[,...]]` for
//! the hypercall trace; anything else is reported as unknown and ignored.

use crate::trace::selection::Selection;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

/// Bytes per page.
const PAGE_BYTES: u64 = 4096;
/// Memory of a domain whose token has no `mem=`: 4 MiB.
pub const DEFAULT_MEMORY_PAGES: u64 = 1024;
/// Smallest `mem=`: 128 KiB.
pub const MIN_MEMORY_BYTES: u64 = 128 << 10;
/// Largest `mem=`: 256 MiB.
pub const MAX_MEMORY_BYTES: u64 = 256 << 20;

/// One domain to start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainSpec {
    /// Member name in the boot archive.
    pub image: String,
    /// Pages populated at boot (`mem=`).
    pub memory_pages: u64,
    /// Reservation quota in pages (`maxmem=`; `memory_pages` if absent).
    pub max_pages: u64,
    /// The `arg=` words joined by single spaces.
    pub args: String,
    /// `module=`: the boot-archive member given to the domain as its module.
    pub module: Option<String>,
}

/// What is wrong with a `domain=` token.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)] // Each variant's meaning is its Display line below (one place for each fact).
pub enum SpecProblem {
    EmptyImage,
    /// An option other than `mem=`, `maxmem=`, `module=`, `arg=`.
    UnknownOption(String),
    /// `mem=` value not of the form `<N>K` or `<N>M`.
    BadMemory(String),
    DuplicateMemory,
    DuplicateMaximum,
    /// `maxmem=` (bytes) below `mem=` (bytes).
    MaximumBelowMemory {
        maximum: u64,
        memory: u64,
    },
    MemoryTooSmall(u64),
    MemoryTooLarge(u64),
    NotPageMultiple(u64),
    EmptyArgument,
    EmptyModule,
    DuplicateModule,
}

/// A refused `domain=` token: the token and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecError {
    /// The token as written.
    pub token: String,
    /// What is wrong with it.
    pub problem: SpecProblem,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "'{}': ", self.token)?;
        match &self.problem {
            SpecProblem::EmptyImage => {
                f.write_str("no image name; write domain=<image>[,mem=<N>K|<N>M][,maxmem=<N>K|<N>M][,module=<member>][,arg=<word>]...")
            }
            SpecProblem::UnknownOption(option) => {
                write!(f, "unknown option '{option}' (known: mem=, maxmem=, module=, arg=)")
            }
            SpecProblem::BadMemory(value) => write!(f, "bad memory size '{value}'; write <N>K or <N>M, e.g. mem=4M"),
            SpecProblem::DuplicateMemory => f.write_str("mem= given more than once"),
            SpecProblem::DuplicateMaximum => f.write_str("maxmem= given more than once"),
            SpecProblem::MaximumBelowMemory { maximum, memory } => {
                write!(
                    f,
                    "maxmem {}K is below mem {}K; maxmem is the most a domain may grow to",
                    maximum >> 10,
                    memory >> 10
                )
            }
            SpecProblem::MemoryTooSmall(bytes) => {
                write!(f, "memory {}K is below the minimum of {}K", bytes >> 10, MIN_MEMORY_BYTES >> 10)
            }
            SpecProblem::MemoryTooLarge(bytes) => {
                write!(f, "memory {}K is above the maximum of {}M", bytes >> 10, MAX_MEMORY_BYTES >> 20)
            }
            SpecProblem::NotPageMultiple(bytes) => {
                write!(f, "memory {}K is not a whole number of 4K pages", bytes >> 10)
            }
            SpecProblem::EmptyArgument => f.write_str("empty arg= (an argument is one non-empty word)"),
            SpecProblem::EmptyModule => f.write_str("empty module= (name a member of the boot archive)"),
            SpecProblem::DuplicateModule => f.write_str("module= given more than once (a domain has one module)"),
        }
    }
}

/// The parsed command line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommandLine {
    /// One entry per `domain=` token, in order; refused tokens keep their place so the
    /// hypervisor can report them where they appeared.
    pub domains: Vec<Result<DomainSpec, SpecError>>,
    /// Tokens that are not options the hypervisor knows.
    pub unknown: Vec<String>,
    /// `bench` was given (reserved for benchmark runs).
    pub bench: bool,
    /// `slice=<ms>`: the scheduler's time slice, if given and valid.
    pub slice_ms: Option<u64>,
    /// `trace` or `trace=<list>`: the domains whose hypercalls are traced (SPEC.md §22).
    pub trace: Option<Selection>,
    /// `audit`: print the end-of-run audit line (SPEC.md §15).
    pub audit: bool,
    /// Known options with a value they cannot take, each with the reason.
    pub invalid: Vec<String>,
}

/// The time slices `slice=` accepts, in milliseconds.
pub const SLICE_RANGE_MS: core::ops::RangeInclusive<u64> = 1..=1000;

/// Parses the command line. Never fails: problems are reported per token.
pub fn parse(text: &str) -> CommandLine {
    let mut command_line = CommandLine::default();
    for token in text.split_ascii_whitespace() {
        if let Some(spec) = token.strip_prefix("domain=") {
            let parsed = parse_domain(spec).map_err(|problem| SpecError { token: token.to_string(), problem });
            command_line.domains.push(parsed);
        } else if token == "bench" {
            command_line.bench = true;
        } else if token == "audit" {
            command_line.audit = true;
        } else if let Some(value) = token.strip_prefix("slice=") {
            match value.parse::<u64>() {
                Ok(ms) if SLICE_RANGE_MS.contains(&ms) => command_line.slice_ms = Some(ms),
                _ => command_line.invalid.push(format!(
                    "'{token}': the slice is a whole number of milliseconds from {} to {}",
                    SLICE_RANGE_MS.start(),
                    SLICE_RANGE_MS.end()
                )),
            }
        } else if token == "trace" {
            command_line.trace = Some(Selection::All);
        } else if let Some(value) = token.strip_prefix("trace=") {
            match Selection::parse(value) {
                Ok(selection) => command_line.trace = Some(selection),
                Err(why) => command_line.invalid.push(format!("'{token}': {why}")),
            }
        } else {
            command_line.unknown.push(token.to_string());
        }
    }
    command_line
}

fn parse_domain(spec: &str) -> Result<DomainSpec, SpecProblem> {
    let mut parts = spec.split(',');
    let image = parts.next().unwrap_or_default();
    if image.is_empty() {
        return Err(SpecProblem::EmptyImage);
    }
    let mut memory_pages = None;
    let mut max_pages = None;
    let mut args = String::new();
    let mut module: Option<String> = None;
    for option in parts {
        if let Some(value) = option.strip_prefix("maxmem=") {
            if max_pages.is_some() {
                return Err(SpecProblem::DuplicateMaximum);
            }
            max_pages = Some(parse_memory(value)?);
        } else if let Some(value) = option.strip_prefix("mem=") {
            if memory_pages.is_some() {
                return Err(SpecProblem::DuplicateMemory);
            }
            memory_pages = Some(parse_memory(value)?);
        } else if let Some(member) = option.strip_prefix("module=") {
            if module.is_some() {
                return Err(SpecProblem::DuplicateModule);
            }
            if member.is_empty() {
                return Err(SpecProblem::EmptyModule);
            }
            module = Some(member.to_string());
        } else if let Some(word) = option.strip_prefix("arg=") {
            if word.is_empty() {
                return Err(SpecProblem::EmptyArgument);
            }
            if !args.is_empty() {
                args.push(' ');
            }
            args.push_str(word);
        } else {
            return Err(SpecProblem::UnknownOption(option.to_string()));
        }
    }
    let memory_pages = memory_pages.unwrap_or(DEFAULT_MEMORY_PAGES);
    let max_pages = max_pages.unwrap_or(memory_pages);
    if max_pages < memory_pages {
        return Err(SpecProblem::MaximumBelowMemory {
            maximum: max_pages * PAGE_BYTES,
            memory: memory_pages * PAGE_BYTES,
        });
    }
    Ok(DomainSpec { image: image.to_string(), memory_pages, max_pages, args, module })
}

/// `<N>K` or `<N>M` to pages, with the range and page-multiple checks.
fn parse_memory(value: &str) -> Result<u64, SpecProblem> {
    let bad = || SpecProblem::BadMemory(value.to_string());
    let (digits, unit) = match value.as_bytes().last() {
        Some(b'K') => (&value[..value.len() - 1], 1u64 << 10),
        Some(b'M') => (&value[..value.len() - 1], 1u64 << 20),
        _ => return Err(bad()),
    };
    // `u64::from_str` alone would accept a leading '+'; the grammar is digits only.
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(bad());
    }
    // Overflow while parsing or scaling means "far too large", not "malformed".
    let bytes = digits.parse::<u64>().ok().and_then(|count| count.checked_mul(unit)).unwrap_or(u64::MAX);
    if bytes > MAX_MEMORY_BYTES {
        return Err(SpecProblem::MemoryTooLarge(bytes));
    }
    if bytes < MIN_MEMORY_BYTES {
        return Err(SpecProblem::MemoryTooSmall(bytes));
    }
    if bytes % PAGE_BYTES != 0 {
        return Err(SpecProblem::NotPageMultiple(bytes));
    }
    Ok(bytes / PAGE_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(token: &str) -> Result<DomainSpec, SpecProblem> {
        let mut parsed = parse(token);
        assert_eq!(parsed.domains.len(), 1, "{token}");
        parsed.domains.remove(0).map_err(|error| {
            assert_eq!(error.token, token);
            error.problem
        })
    }

    #[test]
    fn full_and_minimal_specs() {
        assert_eq!(
            one("domain=guest-kernel,mem=8M,arg=hello,arg=world"),
            Ok(DomainSpec {
                image: "guest-kernel".into(),
                memory_pages: 2048,
                max_pages: 2048,
                args: "hello world".into(),
                module: None,
            })
        );
        let default = DomainSpec {
            image: "hello".into(),
            memory_pages: DEFAULT_MEMORY_PAGES,
            max_pages: DEFAULT_MEMORY_PAGES,
            args: String::new(),
            module: None,
        };
        assert_eq!(one("domain=hello"), Ok(default));
        assert_eq!(one("domain=a,arg=x,mem=128K").map(|spec| (spec.memory_pages, spec.args)), Ok((32, "x".into())));
        assert_eq!(one("domain=a,mem=256M").map(|spec| spec.memory_pages), Ok(65536));
        assert_eq!(one("domain=a,mem=132K").map(|spec| spec.memory_pages), Ok(33));
    }

    #[test]
    fn module_option() {
        let spec = one("domain=guest-kernel,module=initramfs,arg=init=/bin/sh").unwrap();
        assert_eq!(spec.module.as_deref(), Some("initramfs"));
        assert_eq!(spec.args, "init=/bin/sh");
        assert_eq!(one("domain=a,mem=8M,module=a").map(|spec| spec.module), Ok(Some("a".into())), "its own image");
        assert_eq!(one("domain=a,module=x=y").map(|spec| spec.module), Ok(Some("x=y".into())));
        assert_eq!(
            one("domain=a,module=dir/initramfs.cpio").map(|spec| spec.module),
            Ok(Some("dir/initramfs.cpio".into()))
        );
        assert_eq!(one("domain=a").map(|spec| spec.module), Ok(None));
        assert_eq!(one("domain=a,module="), Err(SpecProblem::EmptyModule));
        assert_eq!(one("domain=a,module=x,module=x"), Err(SpecProblem::DuplicateModule));
        assert_eq!(one("domain=a,module=x,mem=4M,module=y"), Err(SpecProblem::DuplicateModule));
        assert_eq!(one("domain=a,modules=x"), Err(SpecProblem::UnknownOption("modules=x".into())));
        let text = parse("domain=a,module=").domains[0].as_ref().unwrap_err().to_string();
        assert_eq!(text, "'domain=a,module=': empty module= (name a member of the boot archive)");
        let text = parse("domain=a,module=x,module=y").domains[0].as_ref().unwrap_err().to_string();
        assert_eq!(text, "'domain=a,module=x,module=y': module= given more than once (a domain has one module)");
        let text = parse("domain=a,initrd=x").domains[0].as_ref().unwrap_err().to_string();
        assert!(text.contains("(known: mem=, maxmem=, module=, arg=)"), "{text}");
    }

    #[test]
    fn slice_option() {
        assert_eq!(parse("slice=25 domain=a").slice_ms, Some(25));
        assert_eq!(parse("domain=a").slice_ms, None);
        for bad in ["slice=0", "slice=1001", "slice=", "slice=5ms", "slice=-1"] {
            let parsed = parse(bad);
            assert_eq!(parsed.slice_ms, None, "{bad}");
            assert_eq!(parsed.invalid.len(), 1, "{bad}");
            assert!(parsed.invalid[0].contains("from 1 to 1000"), "{}", parsed.invalid[0]);
        }
        // The last valid one wins, like any repeated flag.
        assert_eq!(parse("slice=5 slice=7").slice_ms, Some(7));
    }

    #[test]
    fn trace_option() {
        use crate::trace::selection::Selector;
        assert_eq!(parse("domain=a").trace, None);
        assert_eq!(parse("trace domain=a").trace, Some(Selection::All));
        assert_eq!(parse("trace=all").trace, Some(Selection::All));
        assert_eq!(
            parse("trace=2,hello").trace,
            Some(Selection::Some(alloc::vec![Selector::Id(2), Selector::Image("hello".into())]))
        );
        let parsed = parse("trace=1,,2");
        assert_eq!(parsed.trace, None);
        assert_eq!(parsed.invalid.len(), 1);
        assert!(parsed.invalid[0].starts_with("'trace=1,,2': an empty item"), "{}", parsed.invalid[0]);
        // The last valid one wins.
        assert_eq!(parse("trace=1 trace").trace, Some(Selection::All));
    }

    #[test]
    fn several_domains_flags_and_unknown_tokens_in_order() {
        let parsed = parse("  console=ttyS0 domain=a bench\tdomain=b,mem=x   domain=c\n quiet ");
        assert!(parsed.bench);
        assert_eq!(parsed.unknown, ["console=ttyS0", "quiet"]);
        assert_eq!(parsed.domains.len(), 3);
        assert_eq!(parsed.domains[0].as_ref().unwrap().image, "a");
        assert_eq!(parsed.domains[1].as_ref().unwrap_err().problem, SpecProblem::BadMemory("x".into()));
        assert_eq!(parsed.domains[2].as_ref().unwrap().image, "c");
        let empty = parse("");
        assert!(empty.domains.is_empty() && empty.unknown.is_empty() && !empty.bench);
        assert_eq!(parse("domain").unknown, ["domain"]);
        assert_eq!(parse("benchmark").unknown, ["benchmark"]);
    }

    #[test]
    fn audit_is_a_flag_and_nothing_else_turns_it_on() {
        assert!(parse("domain=a audit").audit);
        assert!(!parse("domain=a bench").audit);
        for near_miss in ["audit=1", "audits", "AUDIT"] {
            let parsed = parse(near_miss);
            assert!(!parsed.audit, "{near_miss}");
            assert_eq!(parsed.unknown, [near_miss]);
        }
    }

    #[test]
    fn memory_errors() {
        assert_eq!(one("domain=a,mem=64K"), Err(SpecProblem::MemoryTooSmall(64 << 10)));
        assert_eq!(one("domain=a,mem=0K"), Err(SpecProblem::MemoryTooSmall(0)));
        assert_eq!(one("domain=a,mem=257M"), Err(SpecProblem::MemoryTooLarge(257 << 20)));
        assert_eq!(one("domain=a,mem=130K"), Err(SpecProblem::NotPageMultiple(130 << 10)));
        assert_eq!(one("domain=a,mem=99999999999999999999999M"), Err(SpecProblem::MemoryTooLarge(u64::MAX)));
        assert_eq!(
            one("domain=a,mem=18014398509481984M"),
            Err(SpecProblem::MemoryTooLarge(u64::MAX)),
            "2^54 M overflows"
        );
        for bad in ["4", "4G", "M", "+4M", "-4M", "4k", "0x10M", "", "４M"] {
            assert_eq!(one(&format!("domain=a,mem={bad}")), Err(SpecProblem::BadMemory(bad.into())), "{bad:?}");
        }
        assert_eq!(one("domain=a,mem=4M,mem=8M"), Err(SpecProblem::DuplicateMemory));
    }

    #[test]
    fn maximum_memory() {
        let spec = one("domain=a,mem=4M,maxmem=16M").unwrap();
        assert_eq!((spec.memory_pages, spec.max_pages), (1024, 4096));
        let spec = one("domain=a,maxmem=8M,mem=8M").unwrap();
        assert_eq!((spec.memory_pages, spec.max_pages), (2048, 2048));
        assert_eq!(one("domain=a,mem=2M").map(|spec| spec.max_pages), Ok(512), "default = mem");
        assert_eq!(
            one("domain=a,maxmem=8M").map(|spec| (spec.memory_pages, spec.max_pages)),
            Ok((DEFAULT_MEMORY_PAGES, 2048))
        );
        assert_eq!(
            one("domain=a,mem=8M,maxmem=4M"),
            Err(SpecProblem::MaximumBelowMemory { maximum: 4 << 20, memory: 8 << 20 })
        );
        assert_eq!(
            one("domain=a,maxmem=1M"),
            Err(SpecProblem::MaximumBelowMemory { maximum: 1 << 20, memory: 4 << 20 }),
            "below the default mem"
        );
        assert_eq!(one("domain=a,maxmem=4M,maxmem=8M"), Err(SpecProblem::DuplicateMaximum));
        assert_eq!(one("domain=a,maxmem=300M"), Err(SpecProblem::MemoryTooLarge(300 << 20)));
        assert_eq!(one("domain=a,maxmem=4G"), Err(SpecProblem::BadMemory("4G".into())));
        let text = parse("domain=a,mem=8M,maxmem=4M").domains[0].as_ref().unwrap_err().to_string();
        assert_eq!(
            text,
            "'domain=a,mem=8M,maxmem=4M': maxmem 4096K is below mem 8192K; maxmem is the most a domain may grow to"
        );
    }

    #[test]
    fn structure_errors() {
        assert_eq!(one("domain="), Err(SpecProblem::EmptyImage));
        assert_eq!(one("domain=,mem=4M"), Err(SpecProblem::EmptyImage));
        assert_eq!(one("domain=a,"), Err(SpecProblem::UnknownOption(String::new())));
        assert_eq!(one("domain=a,cpus=2"), Err(SpecProblem::UnknownOption("cpus=2".into())));
        assert_eq!(one("domain=a,arg="), Err(SpecProblem::EmptyArgument));
        assert_eq!(one("domain=a,arg=x=y").map(|spec| spec.args), Ok("x=y".into()));
    }

    #[test]
    fn errors_display_on_one_line_with_the_token() {
        let parsed = parse("domain=a,mem=4G");
        let text = parsed.domains[0].as_ref().unwrap_err().to_string();
        assert_eq!(text, "'domain=a,mem=4G': bad memory size '4G'; write <N>K or <N>M, e.g. mem=4M");
        let text = parse("domain=a,mem=64K").domains[0].as_ref().unwrap_err().to_string();
        assert_eq!(text, "'domain=a,mem=64K': memory 64K is below the minimum of 128K");
        assert!(!text.contains('\n'));
    }
}
