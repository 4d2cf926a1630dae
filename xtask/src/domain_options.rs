//! The domain options of `cargo xtask run` and `cargo xtask gdb`: `--guest IMAGE` starts a
//! domain, and the `--arg`, `--mem`, `--maxmem`, `--module` and `--name` that follow it (up
//! to the next `--guest`) are that domain's own; the same options before the first
//! `--guest` are defaults for every domain.
//!
//! clap's derive cannot say which `--guest` an option follows, so [`DomainOptions`]
//! implements clap's traits itself: it keeps every occurrence with its position on the
//! command line, and [`DomainOptions::resolve`] binds them. Binding errors are xtask usage
//! errors (exit 121), reported after clap parsed the rest.

use crate::{archive, cmdline, Error, Result};
use clap::{Arg, ArgAction, ArgMatches, Command, FromArgMatches};

/// The guest booted when no `--guest` is given.
pub const DEFAULT_GUEST: &str = "guest-kernel";

/// The options this module binds, as clap ids (also the long option names).
const GUEST: &str = "guest";
const ARG: &str = "arg";
const MEM: &str = "mem";
const MAXMEM: &str = "maxmem";
const NAME: &str = "name";
const MODULE: &str = "module";

/// One domain option as written, with its position among the command's arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Occurrence {
    index: usize,
    option: &'static str,
    value: String,
}

/// The domain options of one command, in command-line order (see the module comment).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DomainOptions {
    occurrences: Vec<Occurrence>,
}

/// One domain as the command line asks for it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DomainRequest {
    /// The `--guest` value: a built guest's name, an ELF file, or a guest crate directory.
    pub guest: String,
    /// `--name`: the domain's image name; `None` = derived from the guest (see `run`).
    pub name: Option<String>,
    /// `--mem`, canonical spelling (`4M`); `None` = the hypervisor's default.
    pub mem: Option<String>,
    /// `--maxmem`, canonical spelling; `None` = equal to `mem`.
    pub maxmem: Option<String>,
    /// `--module`: the file given to the domain as its module (SPEC.md §2.4), as written.
    pub module: Option<String>,
    /// Argument words: the global `--arg`s, then the domain's own, then the words after `--`.
    pub args: Vec<String>,
}

/// The per-domain settings being collected: the globals, or one `--guest`'s.
#[derive(Default)]
struct Settings {
    name: Option<String>,
    mem: Option<String>,
    maxmem: Option<String>,
    module: Option<String>,
    args: Vec<String>,
}

impl Settings {
    /// Records `option value`; `whose` names the scope for messages ("every domain",
    /// "--guest hello (domain 2)").
    fn set(&mut self, option: &str, value: &str, whose: &str) -> Result<()> {
        let slot = match option {
            ARG => {
                self.args.push(value.to_string());
                return Ok(());
            }
            NAME => {
                check_name(value)?;
                &mut self.name
            }
            MODULE => &mut self.module,
            MEM => &mut self.mem,
            _ => &mut self.maxmem,
        };
        if slot.is_some() {
            return Err(Error::usage(format!(
                "--{option} given twice for {whose}; give it once (options after a --guest are that domain's own, before the first --guest they are every domain's)"
            )));
        }
        *slot = Some(match option {
            NAME | MODULE => value.to_string(),
            _ => cmdline::parse_mem(value)?.0,
        });
        Ok(())
    }
}

impl DomainOptions {
    /// Binds the options to domains; `words` (after `--`) go to every domain, last.
    /// Without a `--guest`, the options describe one [`DEFAULT_GUEST`] domain.
    pub fn resolve(&self, words: &[String]) -> Result<Vec<DomainRequest>> {
        let mut globals = Settings::default();
        let mut domains: Vec<(String, Settings)> = Vec::new();
        let mut occurrences = self.occurrences.clone();
        occurrences.sort_by_key(|occurrence| occurrence.index);
        let any_guest = occurrences.iter().any(|occurrence| occurrence.option == GUEST);
        for Occurrence { option, value, .. } in occurrences {
            if option == GUEST {
                domains.push((value, Settings::default()));
                continue;
            }
            let number = domains.len();
            match domains.last_mut() {
                Some((guest, settings)) => settings.set(option, &value, &format!("--guest {guest} (domain {number})"))?,
                None if option == NAME && any_guest => {
                    return Err(Error::usage(format!(
                        "--name {value} comes before the first --guest, where it would name every domain; put it after the --guest it names"
                    )))
                }
                None => globals.set(option, &value, "every domain")?,
            }
        }
        if domains.is_empty() {
            domains.push((DEFAULT_GUEST.to_string(), Settings::default()));
        }
        let requests: Vec<DomainRequest> = domains
            .into_iter()
            .map(|(guest, own)| DomainRequest {
                guest,
                name: own.name.or_else(|| globals.name.clone()),
                mem: own.mem.or_else(|| globals.mem.clone()),
                maxmem: own.maxmem.or_else(|| globals.maxmem.clone()),
                module: own.module.or_else(|| globals.module.clone()),
                args: globals.args.iter().chain(&own.args).chain(words).cloned().collect(),
            })
            .collect();
        for (number, request) in requests.iter().enumerate() {
            let Some(name) = &request.name else { continue };
            if let Some(first) = requests[..number].iter().position(|earlier| earlier.name.as_ref() == Some(name)) {
                return Err(Error::usage(format!(
                    "--name {name} is given to domains {} and {}; each domain's name must be unique (it is the image's name in the boot archive and on the console)",
                    first + 1,
                    number + 1
                )));
            }
        }
        Ok(requests)
    }
}

/// Checks a `--name` against the hypervisor's command-line grammar (SPEC.md §2.3, §2.4):
/// the name is a `domain=` token's image and a boot-archive member, and it appears in
/// console lines, so it is visible ASCII without the grammar's separators.
pub fn check_name(name: &str) -> Result<()> {
    let visible = name.bytes().all(|byte| byte.is_ascii_graphic());
    if visible && !name.contains([',', '/', '=']) && archive::check_name(name).is_ok() {
        return Ok(());
    }
    Err(Error::usage(format!(
        "--name '{}' is not a valid domain name: use 1 to {} visible ASCII characters without ',', '/' or '=' (e.g. --name left)",
        name.escape_default(),
        archive::NAME_MAX
    )))
}

impl FromArgMatches for DomainOptions {
    fn from_arg_matches(matches: &ArgMatches) -> std::result::Result<Self, clap::Error> {
        let mut options = Self::default();
        options.update_from_arg_matches(matches)?;
        Ok(options)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> std::result::Result<(), clap::Error> {
        for option in [GUEST, ARG, MEM, MAXMEM, MODULE, NAME] {
            let (Some(indices), Some(values)) = (matches.indices_of(option), matches.get_many::<String>(option)) else {
                continue;
            };
            self.occurrences.extend(indices.zip(values).map(|(index, value)| Occurrence {
                index,
                option,
                value: value.clone(),
            }));
        }
        Ok(())
    }
}

impl clap::Args for DomainOptions {
    fn augment_args(command: Command) -> Command {
        let option = |id: &'static str, value_name: &'static str, help: &'static str| {
            Arg::new(id).long(id).value_name(value_name).action(ArgAction::Append).help(help)
        };
        command
            .arg(option(
                GUEST,
                "NAME_OR_PATH",
                "A guest to start (repeatable, one domain each, in order): a built guest's name, an ELF \
                 file, or a guest crate directory (with Cargo.toml). The --arg, --mem, --maxmem, --module \
                 and --name that follow it, up to the next --guest, are this domain's own. Default: \
                 guest-kernel",
            ))
            .arg(option(
                NAME,
                "NAME",
                "The domain's name (after its --guest; before it only when there is no --guest): its \
                 image's name in the boot archive and on the console, 1 to 100 visible ASCII characters \
                 without ',', '/' or '='. Each --name must be unique. Default: the guest's name or file \
                 stem, with -2, -3... if another image has it",
            ))
            .arg(option(
                MEM,
                "SIZE",
                "Memory, <N>K or <N>M: the domain's (after its --guest) or every domain's (before the \
                 first --guest). Hypervisor default: 4M",
            ))
            .arg(option(
                MAXMEM,
                "SIZE",
                "Reservation quota (`maxmem=`, how far `memory_op` may grow the domain); placed like --mem",
            ))
            .arg(option(
                MODULE,
                "PATH",
                "A file the domain gets in its memory, read-only, as its module (`module=`, SPEC.md §2.4; \
                 e.g. an initramfs; guest-rt's `module()` reads it); placed like --mem. It counts toward \
                 the domain's memory",
            ))
            .arg(option(
                ARG,
                "WORD",
                "An argument word (repeatable): the domain's own (after its --guest) or every domain's \
                 (before the first --guest). A domain gets every domain's words, then its own, then the \
                 words after --",
            ))
    }

    fn augment_args_for_update(command: Command) -> Command {
        Self::augment_args(command)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        domains: DomainOptions,
        #[arg(long)]
        timeout: Option<u64>,
        #[arg(last = true)]
        words: Vec<String>,
    }

    fn resolve(line: &str) -> Result<Vec<DomainRequest>> {
        let cli = Cli::try_parse_from(std::iter::once("run").chain(line.split_whitespace())).unwrap();
        cli.domains.resolve(&cli.words)
    }

    fn request(guest: &str, name: Option<&str>, mem: Option<&str>, args: &[&str]) -> DomainRequest {
        DomainRequest {
            guest: guest.into(),
            name: name.map(Into::into),
            mem: mem.map(Into::into),
            maxmem: None,
            module: None,
            args: args.iter().map(|&arg| arg.into()).collect(),
        }
    }

    #[test]
    fn without_a_guest_the_options_describe_the_default_domain() {
        assert_eq!(resolve("").unwrap(), [request(DEFAULT_GUEST, None, None, &[])]);
        assert_eq!(
            resolve("--arg shell --mem 8m --name console --timeout 5 -- verbose").unwrap(),
            [request(DEFAULT_GUEST, Some("console"), Some("8M"), &["shell", "verbose"])]
        );
    }

    #[test]
    fn options_bind_to_the_preceding_guest() {
        let line = "--guest hello --arg a --name left --mem 512K --guest hello --name right --arg b --arg c";
        assert_eq!(
            resolve(line).unwrap(),
            [request("hello", Some("left"), Some("512K"), &["a"]), request("hello", Some("right"), None, &["b", "c"])]
        );
        // `--option=value` spelling and options interleaved with others bind the same way.
        assert_eq!(
            resolve("--guest=x --timeout 3 --maxmem=8M --guest y --arg=z").unwrap(),
            [
                DomainRequest { maxmem: Some("8M".into()), ..request("x", None, None, &[]) },
                request("y", None, None, &["z"])
            ]
        );
    }

    #[test]
    fn globals_come_first_and_a_domain_overrides_them() {
        let line = "--arg g1 --mem 2M --maxmem 8M --arg g2 --guest a --arg own --mem 1M --guest b -- w1 w2";
        let domains = resolve(line).unwrap();
        assert_eq!(
            domains[0],
            DomainRequest {
                maxmem: Some("8M".into()),
                ..request("a", None, Some("1M"), &["g1", "g2", "own", "w1", "w2"])
            }
        );
        assert_eq!(
            domains[1],
            DomainRequest { maxmem: Some("8M".into()), ..request("b", None, Some("2M"), &["g1", "g2", "w1", "w2"]) }
        );
    }

    #[test]
    fn a_module_binds_like_mem() {
        let domains = resolve("--module all.cpio --guest a --guest b --module own.cpio --guest c").unwrap();
        let modules: Vec<Option<&str>> = domains.iter().map(|domain| domain.module.as_deref()).collect();
        assert_eq!(modules, [Some("all.cpio"), Some("own.cpio"), Some("all.cpio")]);
        assert_eq!(resolve("--guest a").unwrap()[0].module, None);
        assert_eq!(resolve("--module=/x/initramfs.cpio").unwrap()[0].module.as_deref(), Some("/x/initramfs.cpio"));
        let error = resolve("--guest a --module x --module y").unwrap_err();
        assert!(error.message.contains("--module given twice for --guest a (domain 1)"), "{}", error.message);
        assert_eq!(error.exit_code, crate::error::EXIT_USAGE);
    }

    #[test]
    fn binding_errors_are_usage_errors_that_say_the_fix() {
        let cases = [
            ("--guest a --name x --guest b --name x", "--name x is given to domains 1 and 2"),
            ("--name x --guest a", "put it after the --guest it names"),
            ("--guest a --mem 1M --mem 2M", "--mem given twice for --guest a (domain 1)"),
            ("--mem 1M --mem 2M --guest a", "--mem given twice for every domain"),
            ("--guest a --name x --name y", "--name given twice for --guest a (domain 1)"),
            ("--guest a --mem 3G", "memory size '3G' is not <N>K or <N>M"),
            ("--guest a --name a,b", "--name 'a,b' is not a valid domain name"),
        ];
        for (line, expected) in cases {
            let error = resolve(line).unwrap_err();
            assert!(error.message.contains(expected), "{line}: {}", error.message);
            assert_eq!(error.exit_code, crate::error::EXIT_USAGE, "{line}");
        }
    }

    #[test]
    fn names_follow_the_grammar() {
        for good in ["left", "d-1", "guest_kernel.v2", "a+b", &"n".repeat(archive::NAME_MAX)] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        let long = "n".repeat(archive::NAME_MAX + 1);
        for bad in ["", "a b", "a,b", "a/b", "a=b", ".", "..", "tab\there", "é", "nul\0", &long] {
            let error = check_name(bad).unwrap_err();
            assert!(error.message.contains("visible ASCII characters"), "{bad:?}: {}", error.message);
        }
    }
}
