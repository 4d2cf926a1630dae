//! Keeping README.md true: its sections and code blocks, and matching a listing of console
//! output against a real run with what varies from run to run masked (numbers, addresses,
//! timings, the QEMU binary's path, the accelerator's reason, CPU feature signs).

use crate::workspace;

/// The README's text.
pub fn text() -> std::io::Result<String> {
    std::fs::read_to_string(workspace::root().join("README.md"))
}

/// The body of the level-2 section `heading` (`## heading`), up to the next level-2 heading.
pub fn section<'a>(readme: &'a str, heading: &str) -> Option<&'a str> {
    let title = format!("## {heading}\n");
    let start = readme.find(&title)? + title.len();
    let rest = &readme[start..];
    let end = rest.find("\n## ").map_or(rest.len(), |end| end + 1);
    Some(&rest[..end])
}

/// The fenced code blocks of `text`, as (info string, body).
pub fn code_blocks(text: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut open: Option<(String, String)> = None;
    for line in text.lines() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(info)) => open = Some((info.trim().to_string(), String::new())),
            (Some(_), Some(_)) => blocks.extend(open.take()),
            (Some((_, body)), None) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, None) => {}
        }
    }
    blocks
}

/// The "What you will see" section: the `cargo xtask` command of its `sh` block (as
/// arguments after `cargo xtask`) and the lines of the listing that follows it.
pub fn what_you_will_see(readme: &str) -> Result<(Vec<String>, Vec<String>), String> {
    let section = section(readme, "What you will see").ok_or("README.md has no \"## What you will see\" section")?;
    let blocks = code_blocks(section);
    let command = blocks
        .iter()
        .find(|(info, _)| info == "sh")
        .and_then(|(_, body)| body.lines().next())
        .ok_or("README.md's \"What you will see\" section has no `sh` block with the command")?;
    let words = shell_words(command)?;
    let arguments = match words.split_first() {
        Some((cargo, rest)) if cargo == "cargo" && rest.first().is_some_and(|word| word == "xtask") => {
            rest[1..].to_vec()
        }
        _ => {
            return Err(format!("README.md's \"What you will see\" command is not a `cargo xtask` command: {command}"))
        }
    };
    let (_, body) = blocks
        .iter()
        .find(|(info, _)| info.is_empty())
        .ok_or("README.md's \"What you will see\" section has no listing")?;
    Ok((arguments, body.lines().map(str::to_string).collect()))
}

/// Splits a command line into words as a POSIX shell would for plain words, single- and
/// double-quoted strings (no variables, escapes inside double quotes, or globbing: the
/// README's commands need none).
pub fn shell_words(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut characters = line.chars();
    while let Some(character) = characters.next() {
        match character {
            ' ' | '\t' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' | '"' => {
                in_word = true;
                loop {
                    match characters.next() {
                        Some(close) if close == character => break,
                        Some(other) => word.push(other),
                        None => return Err(format!("unterminated quote in: {line}")),
                    }
                }
            }
            '#' if !in_word => break,
            other => {
                in_word = true;
                word.push(other);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// A README line that stands for any number of lines of the run.
pub const ELIDED_LINES: &str = "...";
/// Inside a README line: any text of the run's line.
const ELIDED_TEXT: &str = " ... ";

/// The prefix of the accelerator line; its reason depends on the host (whether /dev/kvm
/// opens, the cached probe), so it is masked, and checked by a host test instead.
const ACCEL_LINE: &str = "qemu: accelerator ";

/// `line` with what varies between runs and hosts replaced by fixed marks (an ABI version,
/// `ABI 0.3`, is kept).
pub fn mask(line: &str) -> String {
    let mut line = line.to_string();
    if let Some(rest) = line.strip_prefix(ACCEL_LINE) {
        if let (Some(open), Some(close)) = (rest.find(" ("), rest.rfind("): ")) {
            if open < close {
                line = format!("{ACCEL_LINE}{} (REASON){}", &rest[..open], &rest[close + 1..]);
            }
        }
    }
    // The QEMU binary is wherever PATH found it.
    if let Some(rest) = line.strip_prefix("qemu: /") {
        let program = rest.split(' ').next().unwrap_or_default();
        if program.ends_with("qemu-system-x86_64") {
            line = format!("qemu: QEMU{}", &rest[program.len()..]);
        }
    }
    let mut masked = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    let mut previous = ' ';
    while let Some(c) = chars.next() {
        if c == '0' && chars.peek() == Some(&'x') {
            chars.next();
            while chars.next_if(char::is_ascii_hexdigit).is_some() {}
            masked.push_str("0xN");
            previous = 'N';
        } else if c.is_ascii_digit() && masked.ends_with("ABI ") {
            // The ABI version is a fact the README states, not a measurement: kept.
            masked.push(c);
            while let Some(digit) = chars.next_if(|c| c.is_ascii_digit() || *c == '.') {
                masked.push(digit);
            }
            previous = c;
        } else if c.is_ascii_digit() {
            while chars.next_if(char::is_ascii_digit).is_some() {}
            masked.push('N');
            previous = 'N';
        } else if (c == '+' || c == '-') && previous == ' ' && chars.peek().is_some_and(char::is_ascii_alphabetic) {
            // A CPU feature's sign (`+NX`, `-PCID`) depends on the CPU model QEMU gives.
            masked.push('±');
            previous = c;
        } else {
            masked.push(c);
            previous = c;
        }
    }
    masked
}

/// True if the run's masked line matches a README line's masked pattern, where the README
/// line may elide text with ` ... `.
fn line_matches(pattern: &str, line: &str) -> bool {
    let parts: Vec<&str> = pattern.split(ELIDED_TEXT).collect();
    let [first, middle @ .., last] = parts.as_slice() else { return pattern == line };
    let Some(mut rest) = line.strip_prefix(first).and_then(|rest| rest.strip_prefix(' ')) else { return false };
    for part in middle {
        let needle = format!(" {part} ");
        let Some(at) = rest.find(&needle) else { return false };
        rest = &rest[at + needle.len()..];
    }
    rest.strip_suffix(last).is_some_and(|head| head.ends_with(' '))
}

/// Checks that `run` (a run's output, stdout and stderr in order) shows the README listing
/// `expected`: from the run's line that matches the listing's first line to its end, line
/// by line, where a `...` line of the listing stands for any lines. Lines before the first
/// (cargo's, the build's) are not part of the listing.
pub fn check_listing(expected: &[String], run: &str) -> Result<(), String> {
    let patterns: Vec<String> = expected.iter().map(|line| mask(line)).collect();
    let raw: Vec<&str> = run.lines().collect();
    let lines: Vec<String> = raw.iter().map(|line| mask(line)).collect();
    let first = patterns.first().ok_or("the README listing is empty")?;
    let mut at = lines
        .iter()
        .position(|line| line_matches(first, line))
        .ok_or_else(|| format!("the run has no line like the listing's first, `{}`", expected[0]))?;
    let mut index = 0;
    while index < patterns.len() {
        if patterns[index] == ELIDED_LINES {
            index += 1;
            let Some(next) = patterns.get(index) else { return Ok(()) };
            at += lines[at..].iter().position(|line| line_matches(next, line)).ok_or_else(|| {
                format!("after a `...` line, the run has no line like the listing's `{}`", expected[index])
            })?;
        }
        match lines.get(at) {
            Some(line) if line_matches(&patterns[index], line) => {}
            Some(_) => {
                return Err(format!(
                    "the listing's line `{}` does not match the run's line `{}`",
                    expected[index], raw[at]
                ))
            }
            None => return Err(format!("the run ended before the listing's line `{}`", expected[index])),
        }
        index += 1;
        at += 1;
    }
    match raw.get(at) {
        Some(extra) => Err(format!("the run has a line after the listing's last: `{extra}`")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accel::{self, Accel, Measured};
    use std::time::Duration;

    fn readme() -> String {
        text().unwrap()
    }

    /// A host whose probe times are cached, as on the machine the README's run came from.
    struct Cached(Measured);

    impl accel::Host for Cached {
        fn kvm_opens(&self) -> bool {
            true
        }
        fn cached(&self) -> Option<Measured> {
            Some(self.0)
        }
        fn probe(&mut self, _: Accel) -> std::result::Result<Duration, String> {
            Err("cached; no probe".into())
        }
        fn remember(&mut self, _: Measured) {}
    }

    #[test]
    fn the_listing_starts_with_the_line_xtask_prints_for_the_commands_accelerator() {
        let (arguments, listing) = what_you_will_see(&readme()).unwrap();
        assert_eq!(arguments[..3], ["run", "--accel", "tcg"], "the README's run is a TCG run");
        assert_eq!(arguments[3], "--", "the command follows --: {arguments:?}");
        let measured = Measured { kvm: Duration::from_millis(2), tcg: Duration::from_millis(1) };
        let choice = accel::choose(Some(Accel::Tcg), &mut Cached(measured)).unwrap();
        assert_eq!(
            choice.lines,
            std::slice::from_ref(&listing[0]),
            "README.md's first listing line is not what xtask prints"
        );
    }

    #[test]
    fn shell_words_split_like_a_shell() {
        assert_eq!(
            shell_words("cargo xtask run -- sh -c 'a; b | c' \"d e\"f # note").unwrap(),
            ["cargo", "xtask", "run", "--", "sh", "-c", "a; b | c", "d ef"]
        );
        assert_eq!(shell_words("x ''").unwrap(), ["x", ""]);
        assert!(shell_words("x 'open").is_err());
    }

    #[test]
    fn the_new_guest_listing_is_the_template() {
        let readme = readme();
        let section = section(&readme, "Writing your own guest").unwrap();
        let blocks = code_blocks(section);
        let (_, commands) = blocks.iter().find(|(info, _)| info == "sh").unwrap();
        assert!(commands.contains("cargo xtask new-guest ../my-guest "), "{commands}");
        assert!(commands.contains("cargo xtask run --guest ../my-guest "), "{commands}");
        let (_, main) = blocks.iter().find(|(info, _)| info == "rust").unwrap();
        assert_eq!(
            main,
            crate::template::MAIN_RS,
            "README.md's guest listing differs from xtask/templates/guest/main.rs"
        );
    }

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_string).collect()
    }

    #[test]
    fn sections_and_blocks_are_found() {
        let readme = "# t\n## A\ntext\n```sh\nx\n```\n### sub\n```rust\nfn a() {}\n```\n## B\n```\nb\n```\n";
        let a = section(readme, "A").unwrap();
        assert_eq!(code_blocks(a), [("sh".to_string(), "x\n".to_string()), ("rust".into(), "fn a() {}\n".into())]);
        assert_eq!(code_blocks(section(readme, "B").unwrap()), [(String::new(), "b\n".to_string())]);
        assert!(section(readme, "C").is_none());
    }

    #[test]
    fn masking_keeps_words_and_hides_what_varies() {
        assert_eq!(mask("(hv) tsc: 2596095 kHz at 0xffffffff80008bcb, 21.3 ms"), "(hv) tsc: N kHz at 0xN, N.N ms");
        assert_eq!(mask("(hv) cpu: +NX -PCID x87+SSE a -> b"), "(hv) cpu: ±NX ±PCID xN+SSE a -> b");
        assert_eq!(
            mask("qemu: accelerator tcg (as requested): -accel tcg -cpu max"),
            mask("qemu: accelerator tcg (measured before on this host: 1 ms (a), so x): -accel tcg -cpu max")
        );
        assert_eq!(mask("qemu: /opt/q/bin/qemu-system-x86_64 -M microvm"), "qemu: QEMU ±M microvm");
        assert_ne!(mask("(hv) exit status 0: all"), mask("(hv) exit status 0: some"));
        assert_eq!(mask("ringfence 0.1.0 ABI 0.3: 511 MiB"), "ringfence N.N.N ABI 0.3: N MiB");
        assert_ne!(mask("hypervisor ABI 0.3, features"), mask("hypervisor ABI 0.4, features"));
    }

    #[test]
    fn a_listing_matches_its_run_and_fails_when_it_drifts() {
        let run = "   Compiling x\nqemu: /usr/bin/qemu-system-x86_64 -M microvm -m 512M -append domain=g\n(hv) a 1\n(hv) b 2\n(hv) c 3\n(d1) end 0x10\nxtask: done (12 ms)\n";
        let good = lines("qemu: /usr/bin/qemu-system-x86_64 -M microvm ... -append domain=g\n(hv) a 7\n...\n(d1) end 0xff\nxtask: done (1 ms)");
        check_listing(&good, run).unwrap();
        let exact = lines(&run.lines().skip(1).collect::<Vec<_>>().join("\n"));
        check_listing(&exact, run).unwrap();
        for (index, drifted, complaint) in [
            (1, "(hv) A 7", "does not match the run's line `(hv) a 1`"),
            (
                0,
                "qemu: /usr/bin/qemu-system-x86_64 -M microvm ... -append domain=h",
                "no line like the listing's first",
            ),
            (3, "(d1) finish 0xff", "after a `...` line"),
        ] {
            let mut listing = good.clone();
            listing[index] = drifted.to_string();
            let error = check_listing(&listing, run).unwrap_err();
            assert!(error.contains(complaint), "{error}");
        }
        let shorter = &good[..good.len() - 1];
        assert!(check_listing(shorter, run).unwrap_err().contains("a line after the listing's last"));
        let longer = [good.clone(), lines("xtask: more")].concat();
        assert!(check_listing(&longer, run).unwrap_err().contains("ended before"));
    }
}
