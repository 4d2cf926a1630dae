//! The judge: parses a console transcript into hypervisor lines and per-domain lines, and
//! checks it against a case's expectations. Pure, so it is unit-tested on the host with
//! sample transcripts.
//!
//! XTF semantics: a test guest ends with exactly one `Test result: <verdict>` line; a guest
//! expected to report that prints none has the verdict ERROR.

use hypercall_abi::exit::ExitStatus;
use std::fmt;

/// Where a console line came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// `(hv) ...`
    Hypervisor,
    /// `(dN) ...`
    Domain(u32),
    /// Anything else (firmware, QEMU).
    Other,
}

/// One console line with its prefix removed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// Who printed it.
    pub source: Source,
    /// The text after the prefix.
    pub text: String,
}

/// A guest's final verdict.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// `Test result: SUCCESS`
    Success,
    /// `Test result: SKIP`
    Skip,
    /// `Test result: ERROR`, or no / several result lines.
    Error,
    /// `Test result: FAILURE`
    Failure,
}

impl Verdict {
    fn parse(text: &str) -> Option<Verdict> {
        Some(match text.trim() {
            "SUCCESS" => Verdict::Success,
            "SKIP" => Verdict::Skip,
            "ERROR" => Verdict::Error,
            "FAILURE" => Verdict::Failure,
            _ => return None,
        })
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Success => "SUCCESS",
            Verdict::Skip => "SKIP",
            Verdict::Error => "ERROR",
            Verdict::Failure => "FAILURE",
        })
    }
}

/// The prefix of a result line.
pub const RESULT_PREFIX: &str = "Test result: ";

/// A parsed console.
#[derive(Clone, Debug, Default)]
pub struct Transcript {
    /// Every line in console order.
    pub lines: Vec<Line>,
}

impl Transcript {
    /// Splits the console into lines and classifies them by prefix.
    pub fn parse(output: &str) -> Self {
        let lines = output
            .lines()
            .map(|raw| raw.trim_end_matches('\r'))
            .filter(|raw| !raw.is_empty())
            .map(|raw| {
                if let Some(text) = raw.strip_prefix("(hv) ") {
                    return Line { source: Source::Hypervisor, text: text.to_string() };
                }
                if let Some(rest) = raw.strip_prefix("(d") {
                    if let Some((id, text)) = rest.split_once(')') {
                        if let Ok(id) = id.parse() {
                            let text = text.strip_prefix(' ').unwrap_or(text);
                            return Line { source: Source::Domain(id), text: text.to_string() };
                        }
                    }
                }
                Line { source: Source::Other, text: raw.to_string() }
            })
            .collect();
        Self { lines }
    }

    /// The hypervisor's lines.
    pub fn hypervisor(&self) -> impl Iterator<Item = &str> {
        self.lines.iter().filter(|line| line.source == Source::Hypervisor).map(|line| line.text.as_str())
    }

    /// Domain `id`'s lines.
    pub fn domain(&self, id: u32) -> impl Iterator<Item = &str> {
        self.lines.iter().filter(move |line| line.source == Source::Domain(id)).map(|line| line.text.as_str())
    }

    /// `(hv) d<ID> <image>: started ...` lines: (id, image), by id.
    pub fn started(&self) -> Vec<(u32, String)> {
        let mut started: Vec<(u32, String)> = self
            .hypervisor()
            .filter_map(|text| {
                let rest = text.strip_prefix('d')?;
                let (id, rest) = rest.split_once(' ')?;
                let (image, rest) = rest.split_once(": ")?;
                rest.starts_with("started").then(|| Some((id.parse().ok()?, image.to_string())))?
            })
            .collect();
        started.sort();
        started
    }

    /// Domain `id`'s result lines.
    pub fn results(&self, id: u32) -> Vec<&str> {
        self.domain(id).filter_map(|text| text.strip_prefix(RESULT_PREFIX)).collect()
    }

    /// Domain `id`'s verdict under XTF semantics, with the reason when it is an ERROR that
    /// the guest did not print itself.
    pub fn verdict(&self, id: u32) -> (Verdict, Option<String>) {
        match self.results(id).as_slice() {
            [] => (Verdict::Error, Some(format!("d{id} printed no '{RESULT_PREFIX}' line"))),
            [one] => match Verdict::parse(one) {
                Some(verdict) => (verdict, None),
                None => (Verdict::Error, Some(format!("d{id} printed an unknown verdict '{one}'"))),
            },
            many => (Verdict::Error, Some(format!("d{id} printed {} '{RESULT_PREFIX}' lines", many.len()))),
        }
    }

    /// The last `count` raw lines, re-prefixed.
    pub fn tail(&self, count: usize) -> Vec<String> {
        let skip = self.lines.len().saturating_sub(count);
        self.lines[skip..]
            .iter()
            .map(|line| match line.source {
                Source::Hypervisor => format!("(hv) {}", line.text),
                Source::Domain(id) => format!("(d{id}) {}", line.text),
                Source::Other => line.text.clone(),
            })
            .collect()
    }
}

/// What one domain of a case should do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DomainOutcome {
    /// Starts and ends with this verdict.
    Verdict(Verdict),
    /// Starts and prints no result line (killed before it could).
    NoResult,
    /// Starts; its result is not judged (the hypervisor lines are).
    Started,
    /// Never starts (refused).
    Refused,
}

/// What one domain is expected to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainExpectation {
    /// Image name on the command line.
    pub image: String,
    /// What it should do.
    pub outcome: DomainOutcome,
}

/// A custom check over the whole transcript.
pub type Check = fn(&Transcript) -> Result<(), String>;

/// Everything a case expects.
#[derive(Clone, Debug)]
pub struct Expectation {
    /// The hypervisor's exit status.
    pub status: ExitStatus,
    /// One per `domain=` token, in order.
    pub domains: Vec<DomainExpectation>,
    /// Each entry: substrings that must appear in one `(hv)` line, in this order.
    pub hypervisor_lines: Vec<Vec<String>>,
    /// Each entry: substrings that must appear in one console line (with its `(hv) ` or
    /// `(dN) ` prefix), in this order.
    pub console_lines: Vec<Vec<String>>,
    /// Substrings no console line may contain.
    pub forbidden: Vec<String>,
    /// Extra checks.
    pub checks: Vec<(&'static str, Check)>,
}

/// Substrings no case may ever show.
pub const ALWAYS_FORBIDDEN: &[&str] = &["(hv) PANIC"];

/// How QEMU ended, as the judge needs it.
#[derive(Clone, Debug)]
pub struct Ending {
    /// The hypervisor's status, when QEMU exited through the device.
    pub status: Option<ExitStatus>,
    /// We killed QEMU at the timeout.
    pub timed_out: bool,
    /// QEMU's raw exit code.
    pub raw_exit: Option<i32>,
}

impl fmt::Display for Ending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.timed_out, self.status, self.raw_exit) {
            (true, _, _) => f.write_str("timed out"),
            (false, Some(status), _) => write!(f, "{} ({})", status.0, status.describe()),
            (false, None, Some(code)) => write!(f, "no exit device (QEMU status {code})"),
            (false, None, None) => f.write_str("no exit device (QEMU killed by a signal)"),
        }
    }
}

impl Expectation {
    /// Human summary, for failure messages.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = vec![format!("exit status {} ({})", self.status.0, self.status.describe())];
        for (index, domain) in self.domains.iter().enumerate() {
            lines.push(format!("domain #{} {}: {:?}", index + 1, domain.image, domain.outcome));
        }
        for wanted in &self.hypervisor_lines {
            lines.push(format!("a (hv) line containing, in order, {wanted:?}"));
        }
        for wanted in &self.console_lines {
            lines.push(format!("a console line containing, in order, {wanted:?}"));
        }
        for forbidden in self.forbidden.iter().map(String::as_str).chain(ALWAYS_FORBIDDEN.iter().copied()) {
            lines.push(format!("no line containing {forbidden:?}"));
        }
        for (name, _) in &self.checks {
            lines.push(format!("check: {name}"));
        }
        lines
    }
}

/// True if `parts` occur in `text` one after another (not overlapping).
pub fn contains_in_order(text: &str, parts: &[String]) -> bool {
    let mut rest = text;
    for part in parts {
        match rest.find(part.as_str()) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// Judges a run. `Ok(())` if every expectation holds; otherwise every problem found.
pub fn judge(expectation: &Expectation, ending: &Ending, output: &str) -> Result<(), Vec<String>> {
    let transcript = Transcript::parse(output);
    let mut problems = Vec::new();

    if ending.timed_out || ending.status != Some(expectation.status) {
        problems.push(format!(
            "exit status: expected {} ({}), got {ending}",
            expectation.status.0,
            expectation.status.describe()
        ));
    }

    let started = transcript.started();
    let expected_started: Vec<&DomainExpectation> =
        expectation.domains.iter().filter(|domain| domain.outcome != DomainOutcome::Refused).collect();
    let started_images: Vec<&str> = started.iter().map(|(_, image)| image.as_str()).collect();
    let expected_images: Vec<&str> = expected_started.iter().map(|domain| domain.image.as_str()).collect();
    if started_images != expected_images {
        problems.push(format!("started domains: expected {expected_images:?}, saw {started_images:?}"));
    }
    for ((id, _), domain) in started.iter().zip(&expected_started) {
        let (verdict, why) = transcript.verdict(*id);
        match &domain.outcome {
            DomainOutcome::Verdict(expected) if verdict != *expected => problems.push(format!(
                "d{id} {}: expected {RESULT_PREFIX}{expected}, got {verdict}{}",
                domain.image,
                why.map(|why| format!(" ({why})")).unwrap_or_default()
            )),
            DomainOutcome::NoResult if !transcript.results(*id).is_empty() => problems.push(format!(
                "d{id} {}: expected no result line, saw {RESULT_PREFIX}{}",
                domain.image,
                transcript.results(*id).join(", ")
            )),
            _ => {}
        }
    }

    for wanted in &expectation.hypervisor_lines {
        if !transcript.hypervisor().any(|text| contains_in_order(text, wanted)) {
            problems.push(format!("no (hv) line contains, in order, {wanted:?}"));
        }
    }

    let raw_lines = transcript.tail(usize::MAX);
    for wanted in &expectation.console_lines {
        if !raw_lines.iter().any(|line| contains_in_order(line, wanted)) {
            problems.push(format!("no console line contains, in order, {wanted:?}"));
        }
    }
    for forbidden in expectation.forbidden.iter().map(String::as_str).chain(ALWAYS_FORBIDDEN.iter().copied()) {
        if let Some(line) = raw_lines.iter().find(|line| line.contains(forbidden)) {
            problems.push(format!("forbidden {forbidden:?} seen: {line}"));
        }
    }

    for (name, check) in &expectation.checks {
        if let Err(why) = check(&transcript) {
            problems.push(format!("{name}: {why}"));
        }
    }

    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ending(status: u8) -> Ending {
        Ending { status: Some(ExitStatus(status)), timed_out: false, raw_exit: Some(ExitStatus(status).qemu_status()) }
    }

    fn privileged_expectation() -> Expectation {
        Expectation {
            status: ExitStatus::KILLED,
            domains: vec![
                DomainExpectation { image: "privileged".into(), outcome: DomainOutcome::NoResult },
                DomainExpectation { image: "companion".into(), outcome: DomainOutcome::Verdict(Verdict::Success) },
            ],
            hypervisor_lines: vec![vec!["d1 privileged: killed: #GP".into()]],
            console_lines: vec![],
            forbidden: vec![],
            checks: vec![],
        }
    }

    const PRIVILEGED_PASS: &str = "\
(hv) ringfence 0.1.0 ABI 0.1 tsc 2600000 kHz (cpuid 0x40000010)\r
(hv) d1 privileged: started, 4M, entry 0xffffffff80000000\r
(hv) d2 companion: started, 4M, entry 0xffffffff80000000\r
(d1) privileged: trying cli\r
(hv) d1 privileged: killed: #GP at rip 0xffffffff80001234 error 0x0 cr2 0x0\r
(d2) companion alive\r
(d2) Test result: SUCCESS\r
(hv) d2 companion: exited: poweroff code 0\r
(hv) exit status 3: a domain was killed by the hypervisor\r
";

    #[test]
    fn parts_match_in_order() {
        let parts = |items: &[&str]| items.iter().map(|item| item.to_string()).collect::<Vec<_>>();
        assert!(contains_in_order("refused x-major: ABI major 9", &parts(&["refused x-major: ", "major"])));
        assert!(!contains_in_order("refused x-major: bad ELF", &parts(&["refused x-major: ", "major"])));
        assert!(!contains_in_order("ab", &parts(&["b", "a"])));
        assert!(contains_in_order("anything", &[]));
    }

    #[test]
    fn lines_are_classified() {
        let transcript = Transcript::parse("(hv) a\n(d12) b c\n(d3)\nqemu noise\n(dx) y\n\n");
        assert_eq!(
            transcript.lines,
            vec![
                Line { source: Source::Hypervisor, text: "a".into() },
                Line { source: Source::Domain(12), text: "b c".into() },
                Line { source: Source::Domain(3), text: "".into() },
                Line { source: Source::Other, text: "qemu noise".into() },
                Line { source: Source::Other, text: "(dx) y".into() },
            ]
        );
        assert_eq!(transcript.tail(2), ["qemu noise", "(dx) y"]);
    }

    #[test]
    fn verdicts_follow_xtf() {
        let transcript = Transcript::parse(
            "(d1) Test result: SUCCESS\n(d2) hi\n(d3) Test result: FAILURE\n(d4) Test result: SUCCESS\n(d4) Test result: SUCCESS\n(d5) Test result: MAYBE\n(d6) Test result: SKIP\n",
        );
        assert_eq!(transcript.verdict(1).0, Verdict::Success);
        assert_eq!(transcript.verdict(2), (Verdict::Error, Some("d2 printed no 'Test result: ' line".into())));
        assert_eq!(transcript.verdict(3).0, Verdict::Failure);
        assert_eq!(transcript.verdict(4).0, Verdict::Error, "two result lines");
        assert_eq!(transcript.verdict(5).0, Verdict::Error);
        assert_eq!(transcript.verdict(6).0, Verdict::Skip);
    }

    #[test]
    fn passing_transcript_passes() {
        assert_eq!(judge(&privileged_expectation(), &ending(3), PRIVILEGED_PASS), Ok(()));
        assert_eq!(Transcript::parse(PRIVILEGED_PASS).started(), [(1, "privileged".into()), (2, "companion".into())]);
    }

    #[test]
    fn wrong_exception_wrong_status_and_result_from_the_killed_domain_fail() {
        let output = PRIVILEGED_PASS
            .replace("killed: #GP", "killed: #UD")
            .replace("(d1) privileged: trying cli", "(d1) Test result: SUCCESS");
        let problems = judge(&privileged_expectation(), &ending(0), &output).unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:#?}");
        assert!(problems[0].contains("expected 3"), "{problems:#?}");
        assert!(problems[1].contains("expected no result line"), "{problems:#?}");
        assert!(problems[2].contains("#GP"), "{problems:#?}");
    }

    #[test]
    fn companion_without_result_is_an_error() {
        let output = PRIVILEGED_PASS.replace("(d2) Test result: SUCCESS\r\n", "");
        let problems = judge(&privileged_expectation(), &ending(3), &output).unwrap_err();
        assert_eq!(
            problems,
            ["d2 companion: expected Test result: SUCCESS, got ERROR (d2 printed no 'Test result: ' line)"]
        );
    }

    #[test]
    fn timeout_panic_and_missing_domains_fail() {
        let output = "(hv) ringfence\n(hv) PANIC at hypervisor/src/main.rs:10: boom\n";
        let timed_out = Ending { status: None, timed_out: true, raw_exit: None };
        let problems = judge(&privileged_expectation(), &timed_out, output).unwrap_err();
        assert!(problems.iter().any(|problem| problem.contains("got timed out")), "{problems:#?}");
        assert!(problems.iter().any(|problem| problem.contains("started domains")), "{problems:#?}");
        assert!(problems.iter().any(|problem| problem.contains("forbidden \"(hv) PANIC\"")), "{problems:#?}");
        let no_device = Ending { status: None, timed_out: false, raw_exit: Some(0) };
        let problems = judge(&privileged_expectation(), &no_device, PRIVILEGED_PASS).unwrap_err();
        assert_eq!(
            problems,
            ["exit status: expected 3 (a domain was killed by the hypervisor), got no exit device (QEMU status 0)"]
        );
    }

    #[test]
    fn refused_domains_must_not_start() {
        let expectation = Expectation {
            status: ExitStatus::REFUSED,
            domains: vec![
                DomainExpectation { image: "hello-abi-major".into(), outcome: DomainOutcome::Refused },
                DomainExpectation { image: "companion".into(), outcome: DomainOutcome::Verdict(Verdict::Success) },
            ],
            hypervisor_lines: vec![vec!["refused hello-abi-major: ".into(), "major".into()]],
            console_lines: vec![],
            forbidden: vec![],
            checks: vec![],
        };
        let pass = "(hv) refused hello-abi-major: ABI major 1 but the hypervisor offers 0.1\n(hv) d1 companion: started\n(d1) Test result: SUCCESS\n";
        assert_eq!(judge(&expectation, &ending(4), pass), Ok(()));
        let started_anyway = "(hv) d1 hello-abi-major: started\n(hv) d2 companion: started\n(d2) Test result: SUCCESS\n(d1) Test result: SUCCESS\n";
        let problems = judge(&expectation, &ending(4), started_anyway).unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:#?}");
        let wrong_reason = pass.replace("ABI major 1", "bad ELF");
        assert!(judge(&expectation, &ending(4), &wrong_reason).is_err());
    }

    #[test]
    fn checks_and_forbidden_lines_run() {
        fn never(_: &Transcript) -> Result<(), String> {
            Err("nope".into())
        }
        let mut expectation = privileged_expectation();
        expectation.checks.push(("never", never));
        expectation.forbidden.push("companion alive".into());
        expectation.console_lines.push(vec!["(d2) companion".into(), "alive".into()]);
        expectation.console_lines.push(vec!["(d1) companion".into()]);
        let problems = judge(&expectation, &ending(3), PRIVILEGED_PASS).unwrap_err();
        assert_eq!(
            problems,
            [
                "no console line contains, in order, [\"(d1) companion\"]",
                "forbidden \"companion alive\" seen: (d2) companion alive",
                "never: nope"
            ]
        );
    }
}
