//! The hypervisor's boot command line (SPEC.md §2.4):
//! `domain=<image>[,mem=<N>K|<N>M][,maxmem=<N>K|<N>M][,module=<member>][,arg=<word>]...`,
//! one token per domain, in start order.

use crate::{Error, Result};

/// One `domain=` token.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Domain {
    /// The archive member to run.
    pub image: String,
    /// Memory, as written on the command line (`2M`, `512K`); `None` = hypervisor default.
    pub mem: Option<String>,
    /// Reservation quota (`maxmem=`), same spelling; `None` = equal to `mem`.
    pub maxmem: Option<String>,
    /// The archive member given to the domain as its module (`module=`); `None` = none.
    pub module: Option<String>,
    /// Argument words; the hypervisor joins them with single spaces.
    pub args: Vec<String>,
}

impl Domain {
    /// A domain running `image` with default memory and no arguments.
    pub fn new(image: impl Into<String>) -> Self {
        Self { image: image.into(), ..Self::default() }
    }

    /// The `domain=` token. Fails if a word or the module's name would break the grammar
    /// (space or comma).
    pub fn token(&self) -> Result<String> {
        let mut token = format!("domain={}", self.image);
        if let Some(mem) = &self.mem {
            token.push_str(",mem=");
            token.push_str(mem);
        }
        if let Some(maxmem) = &self.maxmem {
            token.push_str(",maxmem=");
            token.push_str(maxmem);
        }
        if let Some(module) = &self.module {
            crate::archive::check_name(module)?;
            token.push_str(",module=");
            token.push_str(module);
        }
        for arg in &self.args {
            if arg.is_empty() || arg.contains([' ', ',', '\t', '\n']) {
                return Err(Error::usage(format!(
                    "guest argument '{arg}' cannot be passed: arguments are single non-empty words without spaces or commas (pass several --arg)"
                )));
            }
            token.push_str(",arg=");
            token.push_str(arg);
        }
        Ok(token)
    }
}

/// The whole command line: the domain tokens, then `extra` tokens verbatim.
pub fn command_line(domains: &[Domain], extra: &[String]) -> Result<String> {
    let mut tokens = domains.iter().map(Domain::token).collect::<Result<Vec<_>>>()?;
    tokens.extend(extra.iter().cloned());
    Ok(tokens.join(" "))
}

/// Validates a memory size as the grammar writes it: `<N>K` or `<N>M` (also lower case),
/// a whole number of 4 KiB pages. Returns the canonical spelling and the size in bytes.
/// Limits (128K..=256M) are the hypervisor's to enforce, so they are not checked here.
pub fn parse_mem(text: &str) -> Result<(String, u64)> {
    let bad = || Error::usage(format!("memory size '{text}' is not <N>K or <N>M (e.g. 512K, 4M)"));
    let (digits, unit) = text.split_at(text.len().saturating_sub(1));
    let multiplier = match unit {
        "K" | "k" => 1024,
        "M" | "m" => 1024 * 1024,
        _ => return Err(bad()),
    };
    if digits.is_empty() || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(bad());
    }
    let count: u64 = digits.parse().map_err(|_| bad())?;
    let bytes = count.checked_mul(multiplier).ok_or_else(bad)?;
    if bytes % hypercall_abi::layout::PAGE_SIZE != 0 {
        return Err(Error::usage(format!("memory size '{text}' is not a whole number of 4K pages")));
    }
    Ok((format!("{count}{}", unit.to_ascii_uppercase()), bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_follow_the_grammar() {
        let plain = Domain::new("guest-kernel");
        assert_eq!(plain.token().unwrap(), "domain=guest-kernel");
        let full = Domain {
            image: "start_info".into(),
            mem: Some("2M".into()),
            maxmem: None,
            module: None,
            args: vec!["alpha".into(), "beta".into()],
        };
        assert_eq!(full.token().unwrap(), "domain=start_info,mem=2M,arg=alpha,arg=beta");
        assert_eq!(
            command_line(&[full, plain], &["bench".into()]).unwrap(),
            "domain=start_info,mem=2M,arg=alpha,arg=beta domain=guest-kernel bench"
        );
        assert_eq!(command_line(&[], &[]).unwrap(), "");
        let with_module = Domain {
            module: Some("initramfs".into()),
            maxmem: Some("8M".into()),
            args: vec!["init=/bin/sh".into()],
            ..Domain::new("guest-kernel")
        };
        assert_eq!(with_module.token().unwrap(), "domain=guest-kernel,maxmem=8M,module=initramfs,arg=init=/bin/sh");
    }

    #[test]
    fn module_names_that_break_the_grammar_are_refused() {
        for name in ["", "a,b", "a b", "a=b", "a/b"] {
            let domain = Domain { module: Some(name.into()), ..Domain::new("x") };
            let error = domain.token().unwrap_err();
            assert_eq!(error.exit_code, crate::error::EXIT_USAGE, "{name:?}");
        }
    }

    #[test]
    fn words_that_break_the_grammar_are_refused() {
        for word in ["a b", "a,b", ""] {
            let domain = Domain { args: vec![word.into()], ..Domain::new("x") };
            assert!(domain.token().is_err(), "{word:?}");
        }
    }

    #[test]
    fn memory_sizes() {
        assert_eq!(parse_mem("4M").unwrap(), ("4M".into(), 4 << 20));
        assert_eq!(parse_mem("512k").unwrap(), ("512K".into(), 512 << 10));
        for bad in ["", "M", "4", "4G", "-4M", "4.5M", "1K", "99999999999999999999M"] {
            assert!(parse_mem(bad).is_err(), "{bad:?}");
        }
    }
}
