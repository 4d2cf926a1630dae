//! Conformance cases of a domain's module (SPEC.md §2.4, §3.2, §7): the `module` guest
//! sees the member's exact bytes where the layout puts them, read-only; a domain without
//! `module=` sees none; and every malformed or unusable `module=` refuses its domain with
//! its reason while the other domains run.

use crate::cases::{case, domain, success, Case, DomainSpec, ImageSource, ModuleSpec};
use crate::judge::DomainOutcome;
use hypercall_abi::exit::ExitStatus;
use xtask::images;

/// Three whole pages and a partial one.
const PRESENT_BYTES: usize = 3 * 4096 + 123;
/// Past 2 MiB, so the module's pages span more than one page table.
const LARGE_BYTES: usize = (2 << 20) + 1;
/// More than a 128K domain holds.
const TOO_BIG_BYTES: usize = 200 << 10;

/// FNV-1a, 64 bits: the `module` guest hashes what it was given the same way.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
}

/// Deterministic noise of `size` bytes as the archive member `member`.
fn noise(member: &str, seed: u64, size: usize) -> ModuleSpec {
    ModuleSpec { member: member.to_string(), source: ImageSource::Garbage { seed, size } }
}

/// A `module` guest given `size` bytes of noise as the member `member`, told their length
/// and hash.
fn present(member: &str, seed: u64, size: usize) -> DomainSpec {
    let length = format!("length={size}");
    let hash = format!("fnv={:#x}", fnv1a(&images::garbage(seed, size)));
    let mut spec = success("module", &["present", &length, &hash]);
    spec.module = Some(noise(member, seed, size));
    spec
}

/// A `module` domain that must be refused, and a companion that must run.
fn refused(name: &str, mut spec: DomainSpec, line: &[&str]) -> Case {
    spec.outcome = DomainOutcome::Refused;
    case(format!("module::{name}"), vec![spec, success("companion", &[])], ExitStatus::REFUSED, &[line])
}

fn positive(name: &str, domains: Vec<DomainSpec>) -> Case {
    Case::all_succeed(
        format!("module::{name}"),
        domains,
        ("every frame returned", crate::cases_memory::frames_returned),
    )
}

/// Every module case, in order.
pub fn all() -> Vec<Case> {
    let mut cases = Vec::new();
    let mut present_case = positive("present", vec![present("initramfs", 0x6d6f_6475, PRESENT_BYTES)]);
    present_case.expectation.hypervisor_lines.push(vec![
        "d1 module: started: 1024 pages (max 1024), entry 0x".into(),
        format!(", module initramfs ({PRESENT_BYTES} bytes)"),
    ]);
    cases.push(present_case);
    cases.push(positive("none", vec![success("module", &["none"])]));
    cases.push(positive("large", vec![present("large", 0x1a_26e, LARGE_BYTES)]));
    // One member given to two domains: each gets its own read-only copy.
    let shared = || present("shared", 0x5ba_12ed, PRESENT_BYTES);
    cases.push(positive("shared", vec![shared(), shared()]));

    let mut missing = domain("module", &["present"], DomainOutcome::Refused);
    missing.module = Some(ModuleSpec { member: "no-such-module".into(), source: ImageSource::Missing });
    cases.push(refused(
        "missing",
        missing,
        &["refused module: no module 'no-such-module' in the boot archive (it has: ", "companion)"],
    ));
    let mut twice = domain("module", &[], DomainOutcome::Refused);
    twice.token_options = &["module=a", "module=b"];
    cases.push(refused(
        "twice",
        twice,
        &["refused domain specification: 'domain=module,module=a,module=b': module= given more than once"],
    ));
    let mut empty_name = domain("module", &[], DomainOutcome::Refused);
    empty_name.token_options = &["module="];
    cases.push(refused(
        "empty_name",
        empty_name,
        &["refused domain specification: 'domain=module,module=': empty module= (name a member of the boot archive)"],
    ));
    let mut empty_member = domain("module", &["present"], DomainOutcome::Refused);
    empty_member.module = Some(noise("empty-module", 1, 0));
    cases.push(refused(
        "empty_member",
        empty_member,
        &["refused module: module 'empty-module' is empty; a module holds at least one byte"],
    ));
    let mut too_big = domain("module", &["present"], DomainOutcome::Refused);
    too_big.mem = Some("128K");
    too_big.module = Some(noise("too-big", 2, TOO_BIG_BYTES));
    cases.push(refused(
        "too_big",
        too_big,
        &[
            "refused module: needs at least ",
            "and a 50-page module) but the domain has 32; raise mem= or give a smaller module",
        ],
    ));
    cases
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::judge::Verdict;

    #[test]
    fn fnv1a_matches_its_published_vectors() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn present_domains_are_told_the_length_and_hash_of_their_member() {
        let spec = present("m", 9, 5000);
        assert_eq!(spec.args[0], "present");
        assert_eq!(spec.args[1], "length=5000");
        assert_eq!(spec.args[2], format!("fnv={:#x}", fnv1a(&images::garbage(9, 5000))));
        assert_eq!(spec.module.map(|module| module.member), Some("m".into()));
        assert!(images::garbage(1, 0).is_empty(), "the empty member is empty");
    }

    #[test]
    fn every_refusal_keeps_the_companion_running() {
        for case in all().iter().filter(|case| case.expectation.status == ExitStatus::REFUSED) {
            assert_eq!(case.expectation.domains[0].outcome, DomainOutcome::Refused, "{}", case.name);
            assert_eq!(case.expectation.domains[1].outcome, DomainOutcome::Verdict(Verdict::Success), "{}", case.name);
        }
    }
}
