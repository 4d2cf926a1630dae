//! The words guest-kernel's command line carries for the command its init runs
//! (`cargo xtask run -- sh -c 'echo hi'`): `--`, then each word percent-encoded by
//! `guest_kernel_core::command_line` (the kernel decodes with the same module), so a word
//! may hold the spaces and commas that separate tokens and `arg=` words.

use crate::{Error, Result};

/// Memory guest-kernel gets unless told otherwise, on ringfence (`mem=`) and natively
/// (QEMU's `-m`), so the two builds run the same work in the same room: its initramfs,
/// busybox's processes and their page tables need more than the hypervisor's default.
pub const MEMORY: &str = "128M";
use guest_kernel_core::command_line::{encode_word, SEPARATOR};
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

/// The tokens for `options` (kernel options such as `verbose`, passed as they are) and
/// `command` (init's command): the options, `--`, then one encoded token per word. Each
/// token is a word of the guest's command line (`--arg` on ringfence, a space-separated
/// part of QEMU's `-append` natively).
pub fn tokens(options: &[String], command: &[OsString]) -> Result<Vec<String>> {
    let mut tokens = Vec::with_capacity(options.len() + 1 + command.len());
    for option in options {
        let plain = !option.is_empty() && option != "--" && option.bytes().all(|byte| byte.is_ascii_graphic());
        if !plain {
            return Err(Error::usage(format!(
                "kernel option {option:?} cannot be passed: options are single words (the command goes after --)"
            )));
        }
        tokens.push(option.clone());
    }
    tokens.push(String::from_utf8_lossy(SEPARATOR).into_owned());
    for word in command {
        let token = encode_word(word.as_bytes())
            .map_err(|error| Error::usage(format!("command word {word:?} cannot be passed: {error}")))?;
        tokens.push(token);
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;
    use guest_kernel_core::command_line::parse;

    #[test]
    fn the_kernel_reads_back_the_command() {
        let command: Vec<OsString> =
            ["sh", "-c", "echo $((6*7)) | cat", "", "a,b c%", "--"].iter().map(OsString::from).collect();
        let tokens = tokens(&["verbose".to_string()], &command).unwrap();
        assert_eq!(tokens[..4], ["verbose", "--", "sh", "-c"]);
        assert_eq!(tokens[4], "echo%20%24%28%286%2A7%29%29%20%7C%20cat");
        assert!(tokens.iter().all(|token| !token.is_empty() && !token.contains([' ', ','])), "{tokens:?}");
        let parsed = parse(tokens.join(" ").as_bytes()).unwrap();
        assert!(parsed.verbose);
        let words: Vec<OsString> =
            parsed.command.iter().map(|word| std::ffi::OsStr::from_bytes(word).to_os_string()).collect();
        assert_eq!(words, command);
    }

    #[test]
    fn bad_options_are_usage_errors() {
        for option in ["", "--", "two words", "tab\there"] {
            let error = tokens(&[option.to_string()], &[]).unwrap_err();
            assert_eq!(error.exit_code, crate::error::EXIT_USAGE, "{option:?}");
        }
        assert_eq!(tokens(&[], &[]).unwrap(), ["--"]);
    }
}
