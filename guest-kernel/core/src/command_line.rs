//! The kernel command line, the same on both platforms: space-separated tokens, the
//! kernel's options first, then `--`, then the command init runs, one token per argv word.
//!
//! ```text
//! verbose init=/sbin/init -- sh -c echo%20%24%28%286%2A7%29%29%20%7C%20cat
//! ```
//!
//! Options: `verbose` (the kernel reports more, e.g. its counts of unknown system calls at
//! shutdown), `quiet` (it reports less) and `init=<path>` (the first program, default
//! [`DEFAULT_INIT`]). After the first `--` every token is a word, even another `--`.
//!
//! A word is percent-encoded so it fits in one token of any boot loader's command line
//! (ringfence's `arg=` words cannot hold spaces or commas; QEMU's `-append` splits on
//! spaces): every byte outside [`is_plain`]'s set is written `%XX`, two upper-case
//! hexadecimal digits, so a word may hold spaces, commas, quotes, `$`, `|` or `%` itself.
//! A NUL cannot be part of an argv word (C strings end there), so the token `%00` alone
//! stands for the empty word, which a space-separated line could not carry otherwise.
//! The encoder ([`encode_word`]) is what `cargo xtask run` uses, so both sides read the set
//! from here.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// The program the kernel starts when the command line names none.
pub const DEFAULT_INIT: &[u8] = b"/sbin/init";

/// The token between the options and the command.
pub const SEPARATOR: &[u8] = b"--";

/// The token that stands for the empty word.
pub const EMPTY_WORD: &str = "%00";

/// True for the bytes a word keeps as they are: ASCII letters and digits and `._/=+:@-`.
pub const fn is_plain(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'/' | b'=' | b'+' | b':' | b'@' | b'-')
}

/// Why a word cannot be encoded: argv words are C strings.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct NulInWord {
    /// Where the NUL is.
    pub offset: usize,
}

impl fmt::Display for NulInWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "byte {} is a NUL, which a program argument cannot hold", self.offset)
    }
}

/// The token for `word`: plain bytes as they are, every other byte `%XX`.
pub fn encode_word(word: &[u8]) -> Result<String, NulInWord> {
    if let Some(offset) = word.iter().position(|&byte| byte == 0) {
        return Err(NulInWord { offset });
    }
    if word.is_empty() {
        return Ok(String::from(EMPTY_WORD));
    }
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    let mut token = String::with_capacity(word.len());
    for &byte in word {
        if is_plain(byte) {
            token.push(char::from(byte));
        } else {
            token.push('%');
            token.push(char::from(DIGITS[usize::from(byte >> 4)]));
            token.push(char::from(DIGITS[usize::from(byte & 15)]));
        }
    }
    Ok(token)
}

/// What is wrong with a command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandLineError {
    /// An option before `--` the kernel does not know.
    UnknownOption(Vec<u8>),
    /// `init=` with an empty or relative path.
    BadInit(Vec<u8>),
    /// A `%` in a word not followed by two hexadecimal digits, or a `%00` inside a longer
    /// word: the word's position after `--` and the token.
    BadWord {
        /// 0 for the program, 1 for its first argument, and so on.
        index: usize,
        /// The token as written.
        token: Vec<u8>,
    },
}

impl fmt::Display for CommandLineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        match self {
            CommandLineError::UnknownOption(option) => write!(
                f,
                "unknown kernel option '{}' (known: verbose, quiet, init=<path>; the command follows '--')",
                text(option)
            ),
            CommandLineError::BadInit(path) => {
                write!(f, "init='{}' is not an absolute path", text(path))
            }
            CommandLineError::BadWord { index, token } => write!(
                f,
                "command word {index} '{}' is not percent-encoded: '%' must be followed by two hexadecimal digits, and %00 stands alone",
                text(token)
            ),
        }
    }
}

/// The bytes of the word a token encodes. A byte other than `%` stands for itself, so
/// a hand-written token of plain bytes needs no encoding.
pub fn decode_word(token: &[u8]) -> Option<Vec<u8>> {
    if token == EMPTY_WORD.as_bytes() {
        return Some(Vec::new());
    }
    let mut word = Vec::with_capacity(token.len());
    let mut rest = token;
    while let Some((&byte, after)) = rest.split_first() {
        if byte != b'%' {
            word.push(byte);
            rest = after;
            continue;
        }
        let digit = |index: usize| after.get(index).and_then(|&digit| char::from(digit).to_digit(16));
        let value = digit(0)? << 4 | digit(1)?;
        let value = u8::try_from(value).ok().filter(|&value| value != 0)?;
        word.push(value);
        rest = &after[2..];
    }
    Some(word)
}

/// The kernel command line, read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandLine {
    /// `verbose`.
    pub verbose: bool,
    /// `quiet`.
    pub quiet: bool,
    /// The first program (`init=`, else [`DEFAULT_INIT`]).
    pub init: Vec<u8>,
    /// The command after `--`, decoded: init's arguments after its own name. Empty when the
    /// line has no command.
    pub command: Vec<Vec<u8>>,
}

impl Default for CommandLine {
    fn default() -> Self {
        CommandLine { verbose: false, quiet: false, init: DEFAULT_INIT.to_vec(), command: Vec::new() }
    }
}

/// Reads `line`: tokens separated by ASCII white space (runs of it count as one).
pub fn parse(line: &[u8]) -> Result<CommandLine, CommandLineError> {
    let mut parsed = CommandLine::default();
    let mut tokens = line.split(u8::is_ascii_whitespace).filter(|token| !token.is_empty());
    for token in tokens.by_ref() {
        match token {
            SEPARATOR => break,
            b"verbose" => parsed.verbose = true,
            b"quiet" => parsed.quiet = true,
            _ => match token.strip_prefix(b"init=") {
                Some(path) if path.starts_with(b"/") => parsed.init = path.to_vec(),
                Some(path) => return Err(CommandLineError::BadInit(path.to_vec())),
                None => return Err(CommandLineError::UnknownOption(token.to_vec())),
            },
        }
    }
    for (index, token) in tokens.enumerate() {
        let word = decode_word(token).ok_or_else(|| CommandLineError::BadWord { index, token: token.to_vec() })?;
        parsed.command.push(word);
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Words and their tokens, both ways.
    const VECTOR: &[(&[u8], &str)] = &[
        (b"sh", "sh"),
        (b"-c", "-c"),
        (b"echo $((6*7)) | cat", "echo%20%24%28%286%2A7%29%29%20%7C%20cat"),
        (b"a,b", "a%2Cb"),
        (b"100%", "100%25"),
        (b"it's \"quoted\"", "it%27s%20%22quoted%22"),
        (b"tab\tnew\nline", "tab%09new%0Aline"),
        (b"key=value:x@y+z_w.v/u-t", "key=value:x@y+z_w.v/u-t"),
        (b"\xff\x01", "%FF%01"),
        (b"", "%00"),
        (b"--", "--"),
    ];

    #[test]
    fn words_encode_and_decode_as_the_vector_says() {
        for (word, token) in VECTOR {
            assert_eq!(encode_word(word).as_deref(), Ok(*token), "{word:?}");
            assert_eq!(decode_word(token.as_bytes()).as_deref(), Some(*word), "{token}");
        }
    }

    #[test]
    fn every_byte_but_nul_round_trips_and_tokens_hold_only_plain_bytes() {
        let every: Vec<u8> = (1..=255).collect();
        let token = encode_word(&every).unwrap();
        assert!(token.bytes().all(|byte| is_plain(byte) || byte == b'%' || byte.is_ascii_hexdigit()));
        assert!(!token.contains([' ', ',', '\t']));
        assert_eq!(decode_word(token.as_bytes()), Some(every));
        assert_eq!(encode_word(b"a\0b"), Err(NulInWord { offset: 1 }));
    }

    #[test]
    fn lower_case_digits_and_unencoded_bytes_are_read_too() {
        assert_eq!(decode_word(b"a%2cb%7e"), Some(b"a,b~".to_vec()));
        assert_eq!(decode_word(b"l$ne'"), Some(b"l$ne'".to_vec()));
    }

    #[test]
    fn broken_escapes_are_refused() {
        for token in [&b"%"[..], b"%4", b"%G0", b"a%zz", b"x%00", b"%00%00", b"%0"] {
            assert_eq!(decode_word(token), None, "{:?}", String::from_utf8_lossy(token));
        }
    }

    #[test]
    fn options_come_before_the_separator_and_words_after() {
        let line = b"verbose  init=/bin/sh\t-- sh -c echo%20hi%2C%20there -- %00";
        let parsed = parse(line).unwrap();
        assert!(parsed.verbose && !parsed.quiet);
        assert_eq!(parsed.init, b"/bin/sh");
        let words: Vec<&[u8]> = parsed.command.iter().map(Vec::as_slice).collect();
        assert_eq!(words, [&b"sh"[..], b"-c", b"echo hi, there", b"--", b""]);

        assert_eq!(parse(b"").unwrap(), CommandLine::default());
        assert_eq!(parse(b"quiet --").unwrap(), CommandLine { quiet: true, ..CommandLine::default() });
        assert_eq!(parse(b"quiet").unwrap().init, DEFAULT_INIT);
    }

    #[test]
    fn bad_lines_name_what_is_wrong() {
        assert_eq!(parse(b"verbos -- sh"), Err(CommandLineError::UnknownOption(b"verbos".to_vec())));
        assert_eq!(parse(b"init=sbin/init"), Err(CommandLineError::BadInit(b"sbin/init".to_vec())));
        assert_eq!(parse(b"init="), Err(CommandLineError::BadInit(Vec::new())));
        let error = parse(b"-- sh -c 100%").unwrap_err();
        assert_eq!(error, CommandLineError::BadWord { index: 2, token: b"100%".to_vec() });
        assert!(error.to_string().contains("command word 2 '100%'"), "{error}");
        assert!(parse(b"sh").unwrap_err().to_string().contains("the command follows '--'"));
    }
}
