//! Machine-readable test results (`cargo xtask test --junit FILE`): JUnit XML, the format CI
//! systems read, with one test case per host unit test and per conformance case.
//!
//! Host tests come from cargo's own output ([`parse_libtest`]: libtest's machine formats
//! are unstable); the conformance runner hands its suite over as JSON ([`suites_to_json`]),
//! and [`render`] writes the one XML file.

use serde_json::{json, Value};
use std::time::Duration;

/// One group of test cases (a test binary, the conformance suite).
#[derive(Clone, Debug, PartialEq)]
pub struct Suite {
    /// E.g. `unittests src/lib.rs (xtask)` or `conformance (tcg)`.
    pub name: String,
    /// Its cases, in the order they ran or were reported.
    pub cases: Vec<TestCase>,
}

/// One test.
#[derive(Clone, Debug, PartialEq)]
pub struct TestCase {
    /// Its full name (`module::tests::name`, `traps::bp`).
    pub name: String,
    /// How long it took, where known.
    pub time: Duration,
    /// How it ended.
    pub outcome: Outcome,
}

/// How a test ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// It passed.
    Passed,
    /// It failed: a one-line message, and what it printed (a conformance case: its console).
    Failed {
        /// The first line of the failure.
        message: String,
        /// Everything it printed.
        output: String,
    },
    /// It was not run (`#[ignore]`).
    Skipped,
}

impl Suite {
    fn failures(&self) -> usize {
        self.cases.iter().filter(|case| matches!(case.outcome, Outcome::Failed { .. })).count()
    }

    fn skipped(&self) -> usize {
        self.cases.iter().filter(|case| case.outcome == Outcome::Skipped).count()
    }
}

/// Text for an XML attribute or element: the five special characters escaped, and the
/// characters XML 1.0 cannot carry at all (most C0 controls, which a guest's console may
/// contain) written as `\u{..}`.
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            '\t' | '\n' | '\r' => escaped.push(character),
            character if (character as u32) < 0x20 || matches!(character, '\u{fffe}' | '\u{ffff}') => {
                escaped.push_str(&format!("\\u{{{:x}}}", character as u32));
            }
            character => escaped.push(character),
        }
    }
    escaped
}

/// The JUnit XML document for `suites`.
pub fn render(name: &str, suites: &[Suite]) -> String {
    let total: usize = suites.iter().map(|suite| suite.cases.len()).sum();
    let failures: usize = suites.iter().map(Suite::failures).sum();
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    xml.push_str(&format!("<testsuites name=\"{}\" tests=\"{total}\" failures=\"{failures}\">\n", escape(name)));
    for suite in suites {
        let time: f64 = suite.cases.iter().map(|case| case.time.as_secs_f64()).sum();
        xml.push_str(&format!(
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" skipped=\"{}\" time=\"{time:.3}\">\n",
            escape(&suite.name),
            suite.cases.len(),
            suite.failures(),
            suite.skipped()
        ));
        for case in &suite.cases {
            let (class, short) = match case.name.rsplit_once("::") {
                Some((class, short)) => (class, short),
                None => (suite.name.as_str(), case.name.as_str()),
            };
            let open = format!(
                "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
                escape(class),
                escape(short),
                case.time.as_secs_f64()
            );
            match &case.outcome {
                Outcome::Passed => xml.push_str(&format!("{open}/>\n")),
                Outcome::Skipped => xml.push_str(&format!("{open}>\n      <skipped/>\n    </testcase>\n")),
                Outcome::Failed { message, output } => xml.push_str(&format!(
                    "{open}>\n      <failure message=\"{}\"/>\n      <system-out>{}</system-out>\n    </testcase>\n",
                    escape(message),
                    escape(output)
                )),
            }
        }
        xml.push_str("  </testsuite>\n");
    }
    xml.push_str("</testsuites>\n");
    xml
}

/// Reads cargo test's human output (stdout and stderr interleaved): a suite per test
/// binary (`Running ...`, `Doc-tests ...`), a case per `test NAME ... ok|FAILED|ignored`
/// line, the `---- NAME stdout ----` blocks as the failures' output.
pub fn parse_libtest(output: &str) -> Vec<Suite> {
    let mut suites: Vec<Suite> = Vec::new();
    let mut failure_output: Vec<(String, String)> = Vec::new();
    let mut in_block: Option<(String, String)> = None;
    for line in output.lines() {
        let trimmed = line.trim();
        if let Some(rest) = trimmed.strip_prefix("Running ") {
            suites.push(Suite { name: rest.to_string(), cases: Vec::new() });
            continue;
        }
        if let Some(rest) = trimmed.strip_prefix("Doc-tests ") {
            suites.push(Suite { name: format!("doc-tests {rest}"), cases: Vec::new() });
            continue;
        }
        if let Some(name) = trimmed.strip_prefix("---- ").and_then(|rest| rest.strip_suffix(" stdout ----")) {
            if let Some(done) = in_block.take() {
                failure_output.push(done);
            }
            in_block = Some((name.to_string(), String::new()));
            continue;
        }
        if let Some((_, text)) = in_block.as_mut() {
            if trimmed == "failures:" || trimmed.starts_with("test result:") {
                failure_output.extend(in_block.take());
            } else {
                text.push_str(line);
                text.push('\n');
                continue;
            }
        }
        let Some(rest) = trimmed.strip_prefix("test ") else { continue };
        let Some((name, verdict)) = rest.rsplit_once(" ... ") else { continue };
        let outcome = match verdict {
            "ok" => Outcome::Passed,
            "ignored" => Outcome::Skipped,
            verdict if verdict.starts_with("ignored,") => Outcome::Skipped,
            "FAILED" => Outcome::Failed { message: "failed".to_string(), output: String::new() },
            _ => continue,
        };
        if suites.is_empty() {
            suites.push(Suite { name: "tests".to_string(), cases: Vec::new() });
        }
        let suite = suites.last_mut().expect("pushed above");
        suite.cases.push(TestCase { name: name.to_string(), time: Duration::ZERO, outcome });
    }
    failure_output.extend(in_block);
    for (name, text) in failure_output {
        let case = suites.iter_mut().flat_map(|suite| suite.cases.iter_mut()).find(|case| {
            case.name == name && matches!(case.outcome, Outcome::Failed { ref output, .. } if output.is_empty())
        });
        if let Some(case) = case {
            let message = text
                .lines()
                .find(|line| line.contains("panicked at") || line.starts_with("assertion"))
                .unwrap_or("failed")
                .trim()
                .to_string();
            case.outcome = Outcome::Failed { message, output: text };
        }
    }
    suites.retain(|suite| !suite.cases.is_empty());
    suites
}

/// `suites` as JSON, how the conformance runner hands its results to xtask.
pub fn suites_to_json(suites: &[Suite]) -> String {
    let suites: Vec<Value> = suites
        .iter()
        .map(|suite| {
            let cases: Vec<Value> = suite
                .cases
                .iter()
                .map(|case| {
                    let (outcome, message, output) = match &case.outcome {
                        Outcome::Passed => ("passed", "", ""),
                        Outcome::Skipped => ("skipped", "", ""),
                        Outcome::Failed { message, output } => ("failed", message.as_str(), output.as_str()),
                    };
                    json!({"name": case.name, "time_us": case.time.as_micros() as u64, "outcome": outcome,
                           "message": message, "output": output})
                })
                .collect();
            json!({"name": suite.name, "cases": cases})
        })
        .collect();
    Value::Array(suites).to_string()
}

/// Reads [`suites_to_json`] back.
pub fn suites_from_json(text: &str) -> Result<Vec<Suite>, String> {
    let value: Value = serde_json::from_str(text).map_err(|error| format!("not JSON: {error}"))?;
    let string = |value: &Value, key: &str| value[key].as_str().map(str::to_string).ok_or(format!("no string {key}"));
    let mut suites = Vec::new();
    for suite in value.as_array().ok_or("not a list of suites")? {
        let mut cases = Vec::new();
        for case in suite["cases"].as_array().ok_or("a suite without cases")? {
            let outcome = match case["outcome"].as_str() {
                Some("passed") => Outcome::Passed,
                Some("skipped") => Outcome::Skipped,
                Some("failed") => {
                    Outcome::Failed { message: string(case, "message")?, output: string(case, "output")? }
                }
                other => return Err(format!("unknown outcome {other:?}")),
            };
            let time = Duration::from_micros(case["time_us"].as_u64().ok_or("no time_us")?);
            cases.push(TestCase { name: string(case, "name")?, time, outcome });
        }
        suites.push(Suite { name: string(suite, "name")?, cases });
    }
    Ok(suites)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CARGO_TEST: &str = "\
   Compiling xtask v0.1.0
    Finished `test` profile [unoptimized + debuginfo] target(s) in 1.00s
     Running unittests src/lib.rs (target/debug/deps/xtask-0123)

running 3 tests
test accel::tests::tie ... ok
test junit::tests::broken ... FAILED
test slow::one ... ignored, needs QEMU

failures:

---- junit::tests::broken stdout ----

thread 'junit::tests::broken' panicked at xtask/src/junit.rs:10:5:
assertion `left == right` failed: a <b> & \"c\"
  left: 1
 right: 2

failures:
    junit::tests::broken

test result: FAILED. 1 passed; 1 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.00s

     Running unittests src/main.rs (target/debug/deps/conformance-4567)

running 1 test
test cases::tests::names ... ok

test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s

   Doc-tests guest_rt

running 1 test
test guest-rt/src/lib.rs - entry (line 10) ... ignored

test result: ok. 0 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.00s
";

    #[test]
    fn cargo_test_output_becomes_suites() {
        let suites = parse_libtest(CARGO_TEST);
        let names: Vec<&str> = suites.iter().map(|suite| suite.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "unittests src/lib.rs (target/debug/deps/xtask-0123)",
                "unittests src/main.rs (target/debug/deps/conformance-4567)",
                "doc-tests guest_rt"
            ]
        );
        let first = &suites[0].cases;
        assert_eq!(first.len(), 3);
        assert_eq!(first[0].outcome, Outcome::Passed);
        assert_eq!(first[2].outcome, Outcome::Skipped);
        let Outcome::Failed { message, output } = &first[1].outcome else { panic!("{:?}", first[1]) };
        assert!(message.starts_with("thread 'junit::tests::broken' panicked at xtask/src/junit.rs:10:5"), "{message}");
        assert!(output.contains("right: 2") && !output.contains("test result"), "{output}");
        assert_eq!(suites[2].cases[0].outcome, Outcome::Skipped);
    }

    /// The document is well-formed XML with the counts and the failure, checked by a real
    /// XML parser.
    #[test]
    fn the_report_is_valid_xml() {
        let mut suites = parse_libtest(CARGO_TEST);
        suites.push(Suite {
            name: "conformance (tcg)".to_string(),
            cases: vec![TestCase {
                name: "traps::bp".to_string(),
                time: Duration::from_millis(1500),
                outcome: Outcome::Failed {
                    message: "seen: no line \"(d1) traps: ok\"".to_string(),
                    output: "(hv) ringfence\r\n(d1) \u{1b}[31mred\u{7} & <tags>\n".to_string(),
                },
            }],
        });
        let xml = render("ringfence", &suites);
        let mut reader = quick_xml::Reader::from_str(&xml);
        let (mut testcases, mut failures, mut suites_seen) = (0, 0, 0);
        let mut text = String::new();
        loop {
            match reader.read_event() {
                Ok(quick_xml::events::Event::Eof) => break,
                Ok(quick_xml::events::Event::Start(element) | quick_xml::events::Event::Empty(element)) => {
                    match element.name().as_ref() {
                        b"testcase" => testcases += 1,
                        b"failure" => failures += 1,
                        b"testsuite" => suites_seen += 1,
                        _ => {}
                    }
                }
                Ok(quick_xml::events::Event::Text(content)) => text.push_str(&content.unescape().unwrap()),
                Ok(_) => {}
                Err(error) => panic!("not well-formed at {}: {error}\n{xml}", reader.buffer_position()),
            }
        }
        assert_eq!((suites_seen, testcases, failures), (4, 6, 2));
        assert!(xml.contains("<testsuites name=\"ringfence\" tests=\"6\" failures=\"2\">"));
        assert!(text.contains("\\u{1b}[31mred\\u{7} & <tags>"), "{text}");
        assert!(xml.contains("classname=\"traps\" name=\"bp\" time=\"1.500\""));
    }

    #[test]
    fn suites_survive_the_json_hand_over() {
        let suites = parse_libtest(CARGO_TEST);
        assert_eq!(suites_from_json(&suites_to_json(&suites)).unwrap(), suites);
        assert!(suites_from_json("[{\"name\": \"x\"}]").is_err());
        assert!(suites_from_json("not json").is_err());
    }
}
