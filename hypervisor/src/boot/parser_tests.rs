//! Robustness of the boot-input parsers: the archive reader and the command line get
//! random and corrupted input. Never a panic; every refusal is a readable reason; what is
//! accepted round-trips (generated archives and command lines parse back to what made them).

use super::archive::{members, Member};
use super::command_line::{parse, DomainSpec, MAX_MEMORY_BYTES, MIN_MEMORY_BYTES, SLICE_RANGE_MS};
use proptest::prelude::*;
use std::collections::HashSet;

fn config() -> ProptestConfig {
    ProptestConfig { failure_persistence: None, ..ProptestConfig::default() }
}

/// A ustar archive of `files` (regular files; names ending in '/' become directories).
fn archive(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, bytes) in files {
        let mut header = tar::Header::new_ustar();
        header.set_path(name).unwrap();
        header.set_mode(0o644);
        if name.ends_with('/') {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_size(0);
            header.set_cksum();
            builder.append(&header, &[][..]).unwrap();
        } else {
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(bytes.len() as u64);
            header.set_cksum();
            builder.append(&header, bytes.as_slice()).unwrap();
        }
    }
    builder.into_inner().unwrap()
}

/// Whatever `members` returned for `bytes` is a reason, or members that lie inside the
/// archive with clean, distinct names.
fn judge_archive(bytes: &[u8]) -> Result<Option<Vec<Member<'_>>>, TestCaseError> {
    match members(bytes) {
        Ok(list) => {
            prop_assert!(!list.is_empty());
            let range = bytes.as_ptr_range();
            let mut names = HashSet::new();
            for member in &list {
                prop_assert!(!member.name.is_empty() && !member.name.starts_with("./") && !member.name.ends_with('/'));
                prop_assert!(names.insert(member.name), "duplicate {}", member.name);
                let inside = member.bytes.is_empty()
                    || range.contains(&member.bytes.as_ptr()) && member.bytes.as_ptr_range().end <= range.end;
                prop_assert!(inside, "member {} lies outside the archive", member.name);
            }
            Ok(Some(list))
        }
        Err(error) => {
            let text = error.to_string();
            prop_assert!(!text.is_empty() && !text.contains('\n'), "reason {:?}", text);
            Ok(None)
        }
    }
}

fn member_name() -> impl Strategy<Value = String> {
    "[a-z0-9_.-]{1,24}".prop_filter("not a dot path", |name| name != "." && name != "..")
}

fn files() -> impl Strategy<Value = Vec<(String, Vec<u8>)>> {
    prop::collection::vec((member_name(), prop::collection::vec(any::<u8>(), 0..1300)), 1..5).prop_map(|files| {
        // Distinct names; every other one behind "./" or after a directory entry.
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        for (index, (name, bytes)) in files.into_iter().enumerate() {
            if !seen.insert(name.clone()) {
                continue;
            }
            match index % 3 {
                1 => out.push((format!("./{name}"), bytes)),
                2 => {
                    out.push((format!("dir{index}/"), Vec::new()));
                    out.push((name, bytes));
                }
                _ => out.push((name, bytes)),
            }
        }
        out
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn archives_round_trip(files in files(), padding in 0usize..511) {
        let mut bytes = archive(&files);
        // A loader may pad the module with a partial block.
        bytes.resize(bytes.len() + padding, 0);
        let list = judge_archive(&bytes)?.expect("a generated archive is accepted");
        let expected: Vec<(&str, &[u8])> = files
            .iter()
            .filter(|(name, _)| !name.ends_with('/'))
            .map(|(name, contents)| (name.trim_start_matches("./"), contents.as_slice()))
            .collect();
        let got: Vec<(&str, &[u8])> = list.iter().map(|member| (member.name, member.bytes)).collect();
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn random_bytes_get_a_reason(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        judge_archive(&bytes)?;
    }

    /// A valid archive with bytes overwritten, each header's checksum repaired or not (so
    /// the corruption reaches the fields behind the checksum), then maybe cut short.
    #[test]
    fn corrupted_archives_get_a_reason_or_sound_members(
        files in files(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        repair in any::<bool>(),
        cut in prop::option::of(any::<prop::sample::Index>()),
    ) {
        let mut bytes = archive(&files);
        for (index, value) in edits {
            let at = index.index(bytes.len());
            bytes[at] = value;
        }
        if repair {
            for block in bytes.chunks_mut(512).filter(|block| block.iter().any(|&byte| byte != 0)) {
                block[148..156].fill(b' ');
                let sum: u64 = block.iter().map(|&byte| u64::from(byte)).sum();
                block[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
            }
        }
        if let Some(cut) = cut {
            bytes.truncate(cut.index(bytes.len()));
        }
        judge_archive(&bytes)?;
    }
}

/// A valid `domain=` token and the spec it stands for.
fn domain_token() -> impl Strategy<Value = (String, DomainSpec)> {
    let pages = (MIN_MEMORY_BYTES / 4096)..=(MAX_MEMORY_BYTES / 4096);
    (
        "[a-z][a-z0-9_.-]{0,15}",
        prop::option::of(pages.clone()),
        prop::option::of(0u64..1024),
        prop::option::of("[a-z0-9._/-]{1,12}"),
        prop::collection::vec("[!-+--~]{1,10}", 0..4),
        any::<bool>(),
    )
        .prop_map(|(image, memory, extra, module, args, megabytes)| {
            let memory_pages = memory.unwrap_or(1024);
            let max_pages = extra.map_or(memory_pages, |extra| (memory_pages + extra).min(MAX_MEMORY_BYTES / 4096));
            let mut token = format!("domain={image}");
            let size = |pages: u64| {
                if megabytes && pages.is_multiple_of(256) {
                    format!("{}M", pages / 256)
                } else {
                    format!("{}K", pages * 4)
                }
            };
            if let Some(pages) = memory {
                token += &format!(",mem={}", size(pages));
            }
            if extra.is_some() {
                token += &format!(",maxmem={}", size(max_pages));
            }
            if let Some(module) = &module {
                token += &format!(",module={module}");
            }
            for arg in &args {
                token += &format!(",arg={arg}");
            }
            (token, DomainSpec { image, memory_pages, max_pages, args: args.join(" "), module })
        })
}

/// Pieces of the grammar and of its near misses, glued into tokens.
fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("domain=".to_string()),
        Just(",".to_string()),
        Just("mem=".to_string()),
        Just("maxmem=".to_string()),
        Just("module=".to_string()),
        Just("arg=".to_string()),
        Just("K".to_string()),
        Just("M".to_string()),
        Just("bench".to_string()),
        Just("slice=".to_string()),
        Just("trace".to_string()),
        Just("=".to_string()),
        Just(" ".to_string()),
        Just("+".to_string()),
        "[0-9]{1,25}",
        "[a-z]{1,6}",
        any::<String>(),
    ]
}

fn command_line_text() -> impl Strategy<Value = String> {
    prop::collection::vec(fragment(), 0..24).prop_map(|fragments| fragments.concat())
}

proptest! {
    #![proptest_config(config())]

    /// Any text: every token lands in exactly one place, every refusal names its token and
    /// says what is wrong, and every accepted domain respects the documented limits.
    #[test]
    fn command_lines_never_panic(text in prop_oneof![command_line_text(), any::<String>()]) {
        let parsed = parse(&text);
        let tokens: Vec<&str> = text.split_ascii_whitespace().collect();
        let domain_tokens: Vec<&str> = tokens.iter().copied().filter(|token| token.starts_with("domain=")).collect();
        prop_assert_eq!(parsed.domains.len(), domain_tokens.len());
        let others = tokens.iter().filter(|token| !token.starts_with("domain=")).count();
        let flags = tokens.iter().filter(|&&token| token == "bench" || token == "trace").count();
        let valued = tokens
            .iter()
            .filter(|token| token.starts_with("slice=") || token.starts_with("trace="))
            .count();
        // Each non-domain token is a flag, a slice/trace value (valid or invalid), or unknown.
        prop_assert_eq!(parsed.unknown.len() + flags + valued, others);
        prop_assert!(parsed.invalid.len() <= valued);
        prop_assert_eq!(parsed.bench, tokens.contains(&"bench"));
        if let Some(ms) = parsed.slice_ms {
            prop_assert!(SLICE_RANGE_MS.contains(&ms));
        }
        for reason in &parsed.invalid {
            prop_assert!(reason.starts_with('\'') && reason.len() > 4 && !reason.contains('\n'));
        }
        for (result, token) in parsed.domains.iter().zip(domain_tokens) {
            match result {
                Ok(spec) => {
                    prop_assert!(!spec.image.is_empty());
                    prop_assert!(spec.memory_pages * 4096 >= MIN_MEMORY_BYTES);
                    prop_assert!(spec.memory_pages <= spec.max_pages);
                    prop_assert!(spec.max_pages * 4096 <= MAX_MEMORY_BYTES);
                    prop_assert!(spec.args.split(' ').all(|word| !word.is_empty()) || spec.args.is_empty());
                    prop_assert!(spec.module.as_ref().is_none_or(|module| !module.is_empty()));
                }
                Err(error) => {
                    prop_assert_eq!(&error.token, token);
                    let text = error.to_string();
                    let prefix = format!("'{token}': ");
                    prop_assert!(text.starts_with(&prefix) && text.len() > prefix.len(), "{}", text);
                }
            }
        }
    }

    /// Valid domains and options, written out and parsed back.
    #[test]
    fn command_lines_round_trip(
        domains in prop::collection::vec(domain_token(), 0..4),
        bench in any::<bool>(),
        slice in prop::option::of(SLICE_RANGE_MS),
    ) {
        let mut tokens: Vec<String> = domains.iter().map(|(token, _)| token.clone()).collect();
        if bench {
            tokens.insert(tokens.len() / 2, "bench".to_string());
        }
        if let Some(ms) = slice {
            tokens.push(format!("slice={ms}"));
        }
        let parsed = parse(&tokens.join("  "));
        let expected: Vec<_> = domains.into_iter().map(|(_, spec)| Ok(spec)).collect();
        prop_assert_eq!(parsed.domains, expected);
        prop_assert_eq!(parsed.bench, bench);
        prop_assert_eq!(parsed.slice_ms, slice);
        prop_assert!(parsed.unknown.is_empty() && parsed.invalid.is_empty());
    }
}
