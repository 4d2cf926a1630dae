//! Choosing QEMU's accelerator: KVM where it boots the hypervisor *and* is not slower than
//! TCG for the hypervisor's kind of work, TCG otherwise.
//!
//! `/dev/kvm` opening says little. On some hosts QEMU with KVM dies before the guest runs
//! one instruction (an AMD host whose KVM cannot set an MSR the CPU model asks for), and on
//! others KVM works but every guest trap is a round trip through the host: on a kvm-pvm
//! host (software nested virtualization) a hypercall or page fault costs about a
//! millisecond, so the conformance suite takes ten minutes under KVM and fifteen seconds
//! under TCG. So xtask *measures*: it boots the hypervisor with a probe guest that takes
//! [`PROBE_FAULTS`] demand-paging faults (a #PF bounce, a map hypercall and an `iret` each)
//! under each accelerator, and uses KVM only if it took no longer. The two times are
//! remembered in a cache file keyed by what could change them (QEMU binary, host kernel,
//! host CPU, the CPU model, the probe); a KVM that does not boot is never cached, so fixing
//! the host takes effect at once.
//!
//! This module is the decision only: no process is started here ([`crate::qemu`] runs the
//! probes), so every path is a host test.

use crate::{Error, Result};
use std::time::Duration;

/// The accelerator QEMU runs with.
#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Accel {
    /// Hardware virtualization through /dev/kvm.
    Kvm,
    /// QEMU's emulator.
    Tcg,
}

/// The CPU model under KVM: the host's CPU with an invariant TSC (the hypervisor's clock
/// relies on it), without IA32_ARCH_CAPABILITIES. QEMU's `host` model asks KVM to set
/// that MSR (0x10a), and AMD hosts' KVM refuses it ("failed to set MSR 0x10a"), killing
/// QEMU before the first instruction; the hypervisor never reads the MSR, and on Intel
/// hosts dropping it only hides a list of hardware mitigations.
pub const KVM_CPU: &str = "host,+invtsc,-arch-capabilities";
/// The CPU model under TCG: everything QEMU emulates.
pub const TCG_CPU: &str = "max";

/// The conformance guest the probe boots, and the faults it is asked to take: enough
/// guest traps to dominate a kvm-pvm boot, few enough to cost seconds there once per host.
pub const PROBE_GUEST: &str = "fault_loop";
/// See [`PROBE_GUEST`].
pub const PROBE_FAULTS: u32 = 200;

impl Accel {
    /// The `-accel` and `-cpu` arguments.
    pub fn args(self) -> [&'static str; 4] {
        match self {
            Accel::Kvm => ["-accel", "kvm", "-cpu", KVM_CPU],
            Accel::Tcg => ["-accel", "tcg", "-cpu", TCG_CPU],
        }
    }

    /// The QEMU arguments that put the guest on instruction-counted time, where there is
    /// such a thing: under TCG the guest's clocks then advance 1 ns per instruction
    /// executed (`shift=0`, a 1 GHz machine that runs one instruction per cycle), not while
    /// the host has QEMU descheduled, and never by sleeping (`sleep=off`: an idle CPU
    /// jumps to its next timer). The rate is fixed, not `shift=auto`: auto follows the
    /// host's speed, and on a loaded host it climbed until a 1 ms slice was a few thousand
    /// instructions and a case that takes 0.5 s took 70 s. KVM has no instruction
    /// counting: none.
    pub fn virtual_time_args(self) -> Vec<String> {
        match self {
            Accel::Kvm => Vec::new(),
            Accel::Tcg => ["-icount", "shift=0,sleep=off"].iter().map(|word| word.to_string()).collect(),
        }
    }

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// The start of the hypervisor's first console line.
pub const BANNER: &str = "(hv) ringfence ";

/// Reads a probe run: `console` is what the hypervisor printed, `stderr` QEMU's own
/// diagnostics, `exit` QEMU's exit status (`None`: killed by a signal), `timed_out` true
/// when the probe had to be killed. `Ok` when the hypervisor booted and the probe guest
/// powered off with code 0, else the reason in one line.
pub fn judge_probe(console: &str, stderr: &str, exit: Option<i32>, timed_out: bool) -> std::result::Result<(), String> {
    let booted = console.lines().any(|line| line.trim_end().starts_with(BANNER));
    if booted {
        if console.lines().any(|line| line.trim_end() == "(hv) exit status 0: all domains powered off with code 0") {
            return Ok(());
        }
        let last = console.lines().map(str::trim_end).rfind(|line| !line.is_empty()).unwrap_or_default();
        return Err(format!("the probe guest did not finish cleanly (last line: {last})"));
    }
    // QEMU's first complaint is the cause; later lines (an assertion in kvm.c) follow from it.
    let complaint = stderr.lines().map(str::trim).find(|line| !line.is_empty());
    Err(match (complaint, exit, timed_out) {
        (_, _, true) => "no banner before the probe's timeout".to_string(),
        (Some(line), _, _) => line.to_string(),
        (None, Some(code), _) => format!("QEMU exited with status {code} before the hypervisor's banner"),
        (None, None, _) => "QEMU was killed by a signal before the hypervisor's banner".to_string(),
    })
}

/// The probe's wall times on this host.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Measured {
    /// Under KVM.
    pub kvm: Duration,
    /// Under TCG.
    pub tcg: Duration,
}

impl Measured {
    /// The faster accelerator for the hypervisor's work: KVM unless it took longer.
    pub fn faster(self) -> Accel {
        if self.kvm <= self.tcg {
            Accel::Kvm
        } else {
            Accel::Tcg
        }
    }

    /// The cache file's second line.
    pub fn to_line(self) -> String {
        format!("kvm {} us, tcg {} us", self.kvm.as_micros(), self.tcg.as_micros())
    }

    /// Reads [`Measured::to_line`] back.
    pub fn from_line(line: &str) -> Option<Measured> {
        let (kvm, tcg) = line.trim().split_once(", ")?;
        let micros = |part: &str, name: &str| -> Option<Duration> {
            let number = part.strip_prefix(name)?.strip_suffix(" us")?.parse().ok()?;
            Some(Duration::from_micros(number))
        };
        Some(Measured { kvm: micros(kvm, "kvm ")?, tcg: micros(tcg, "tcg ")? })
    }

    fn describe(self) -> String {
        format!(
            "a probe of {PROBE_FAULTS} guest page faults took {} ms under KVM and {} ms under TCG",
            self.kvm.as_millis(),
            self.tcg.as_millis()
        )
    }
}

/// The accelerator chosen and the lines that say why (printed by the caller).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    /// The accelerator to use.
    pub accel: Accel,
    /// True if KVM boots the hypervisor here (whether or not it was chosen): `cargo xtask
    /// test` then proves KVM with a smoke subset when TCG was chosen for speed.
    pub kvm_boots: bool,
    /// One line each: a failed probe's reason first, then the choice.
    pub lines: Vec<String>,
}

/// The facts a choice depends on, gathered by the caller.
pub trait Host {
    /// True if /dev/kvm opens for reading and writing.
    fn kvm_opens(&self) -> bool;
    /// The times cached for this host, if any.
    fn cached(&self) -> Option<Measured>;
    /// Boots the probe under `accel` once: its wall time, or why it failed.
    fn probe(&mut self, accel: Accel) -> std::result::Result<Duration, String>;
    /// Remembers the times for this host.
    fn remember(&mut self, measured: Measured);
}

/// Refuses `--accel kvm` where /dev/kvm does not open: checked before anything is built, and
/// again by [`choose`].
pub fn check_request(requested: Option<Accel>, kvm_opens: bool) -> Result<()> {
    if requested == Some(Accel::Kvm) && !kvm_opens {
        return Err(Error::environment(
            "--accel kvm was asked for but /dev/kvm cannot be opened read-write; use --accel tcg, or give this user access to /dev/kvm (group kvm)",
        ));
    }
    Ok(())
}

fn line(accel: Accel, why: &str) -> String {
    format!("qemu: accelerator {} ({why}): {}", accel.name(), accel.args().join(" "))
}

/// Chooses the accelerator. `requested` is the user's `--accel`: TCG is taken as it is;
/// KVM must open and boot the probe (else an error naming the reason and `--accel tcg`).
/// Without a request the probe's times decide, measured once per host; a KVM that does not
/// boot falls back to TCG, saying why.
pub fn choose(requested: Option<Accel>, host: &mut impl Host) -> Result<Choice> {
    if requested == Some(Accel::Tcg) {
        return Ok(Choice { accel: Accel::Tcg, kvm_boots: false, lines: vec![line(Accel::Tcg, "as requested")] });
    }
    if !host.kvm_opens() {
        check_request(requested, false)?;
        return Ok(Choice {
            accel: Accel::Tcg,
            kvm_boots: false,
            lines: vec![line(Accel::Tcg, "/dev/kvm is not usable")],
        });
    }
    let (measured, fresh) = match host.cached() {
        Some(measured) => (measured, false),
        None => match host.probe(Accel::Kvm) {
            Err(reason) => {
                return match requested {
                    Some(_) => Err(Error::environment(format!(
                        "--accel kvm was asked for but QEMU with KVM does not run the hypervisor on this host: {reason}; use --accel tcg"
                    ))),
                    None => Ok(Choice {
                        accel: Accel::Tcg,
                        kvm_boots: false,
                        lines: vec![
                            format!("qemu: KVM does not run the hypervisor on this host: {reason}"),
                            line(Accel::Tcg, "falling back from KVM"),
                        ],
                    }),
                };
            }
            Ok(kvm) => match host.probe(Accel::Tcg) {
                Ok(tcg) => {
                    let measured = Measured { kvm, tcg };
                    host.remember(measured);
                    (measured, true)
                }
                // Not cached: TCG failing the probe is a fault to see again, not a fact.
                Err(reason) => {
                    let mut choice = Choice { accel: Accel::Kvm, kvm_boots: true, lines: Vec::new() };
                    choice.lines.push(format!("qemu: the TCG probe failed: {reason}"));
                    choice.lines.push(line(Accel::Kvm, "it runs the probe; TCG did not"));
                    return Ok(choice);
                }
            },
        },
    };
    let when = if fresh { "measured now" } else { "measured before on this host" };
    let why = match (requested, measured.faster()) {
        (Some(_), _) => format!("as requested; {}", measured.describe()),
        (None, Accel::Kvm) => format!("{when}: {}", measured.describe()),
        (None, Accel::Tcg) => format!("{when}: {}, so TCG is faster here", measured.describe()),
    };
    let accel = requested.unwrap_or(measured.faster());
    Ok(Choice { accel, kvm_boots: true, lines: vec![line(accel, &why)] })
}

/// The cache key: one line naming everything the probe's times depend on. `qemu` describes
/// the binary (path, size, modification time), `kernel` the host kernel release, `cpu` the
/// host CPU's vendor and model name.
pub fn fingerprint(qemu: &str, kernel: &str, cpu: &str) -> String {
    format!("qemu {qemu}; kernel {kernel}; cpu {cpu}; model {KVM_CPU}; probe {PROBE_GUEST} {PROBE_FAULTS}")
}

/// Reads a cache file written for `fingerprint`: its times, if the key matches.
pub fn read_cache(text: &str, fingerprint: &str) -> Option<Measured> {
    let mut lines = text.lines();
    if lines.next()? != fingerprint {
        return None;
    }
    Measured::from_line(lines.next()?)
}

/// The cache file's text for `fingerprint` and `measured`.
pub fn write_cache(fingerprint: &str, measured: Measured) -> String {
    format!("{fingerprint}\n{}\n", measured.to_line())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host whose answers are set by the test, counting probes.
    struct FakeHost {
        opens: bool,
        cached: Option<Measured>,
        kvm: std::result::Result<Duration, String>,
        tcg: std::result::Result<Duration, String>,
        probes: Vec<Accel>,
        remembered: Option<Measured>,
    }

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    fn host(kvm: std::result::Result<u64, &str>, tcg: std::result::Result<u64, &str>) -> FakeHost {
        FakeHost {
            opens: true,
            cached: None,
            kvm: kvm.map(ms).map_err(str::to_string),
            tcg: tcg.map(ms).map_err(str::to_string),
            probes: Vec::new(),
            remembered: None,
        }
    }

    impl Host for FakeHost {
        fn kvm_opens(&self) -> bool {
            self.opens
        }
        fn cached(&self) -> Option<Measured> {
            self.cached
        }
        fn probe(&mut self, accel: Accel) -> std::result::Result<Duration, String> {
            self.probes.push(accel);
            match accel {
                Accel::Kvm => self.kvm.clone(),
                Accel::Tcg => self.tcg.clone(),
            }
        }
        fn remember(&mut self, measured: Measured) {
            self.remembered = Some(measured);
        }
    }

    const MSR: &str = "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69";

    #[test]
    fn tcg_on_request_never_probes() {
        let mut fake = host(Ok(1), Ok(1));
        let choice = choose(Some(Accel::Tcg), &mut fake).unwrap();
        assert_eq!((choice.accel, choice.kvm_boots), (Accel::Tcg, false));
        assert_eq!(choice.lines, ["qemu: accelerator tcg (as requested): -accel tcg -cpu max"]);
        assert!(fake.probes.is_empty());
    }

    #[test]
    fn no_dev_kvm_means_tcg_or_an_error_when_kvm_was_asked_for() {
        let mut closed = host(Ok(1), Ok(1));
        closed.opens = false;
        let choice = choose(None, &mut closed).unwrap();
        assert_eq!(choice.accel, Accel::Tcg);
        assert!(choice.lines[0].contains("/dev/kvm is not usable"));
        let error = choose(Some(Accel::Kvm), &mut closed).unwrap_err();
        assert!(error.message.contains("use --accel tcg"), "{}", error.message);
        assert_eq!(error.exit_code, crate::error::EXIT_ENVIRONMENT);
        assert!(closed.probes.is_empty());
    }

    #[test]
    fn the_faster_accelerator_is_chosen_and_remembered() {
        // A kvm-pvm host: every trap a host round trip.
        let mut slow_kvm = host(Ok(3000), Ok(200));
        let choice = choose(None, &mut slow_kvm).unwrap();
        assert_eq!((choice.accel, choice.kvm_boots), (Accel::Tcg, true));
        assert_eq!(slow_kvm.probes, [Accel::Kvm, Accel::Tcg]);
        assert_eq!(slow_kvm.remembered, Some(Measured { kvm: ms(3000), tcg: ms(200) }));
        assert!(
            choice.lines[0].contains("3000 ms under KVM and 200 ms under TCG, so TCG is faster here"),
            "{:?}",
            choice.lines
        );
        // Hardware virtualization: KVM wins, with the CPU model that boots on AMD too.
        let choice = choose(None, &mut host(Ok(150), Ok(200))).unwrap();
        assert_eq!(choice.accel, Accel::Kvm);
        assert!(choice.lines[0].ends_with("-accel kvm -cpu host,+invtsc,-arch-capabilities"), "{:?}", choice.lines);
        assert_eq!(choose(None, &mut host(Ok(200), Ok(200))).unwrap().accel, Accel::Kvm, "a tie goes to KVM");
    }

    #[test]
    fn cached_times_are_not_measured_again() {
        let mut cached = host(Err("never asked"), Err("never asked"));
        cached.cached = Some(Measured { kvm: ms(5000), tcg: ms(100) });
        let choice = choose(None, &mut cached).unwrap();
        assert_eq!((choice.accel, choice.kvm_boots), (Accel::Tcg, true));
        assert!(choice.lines[0].contains("measured before on this host"));
        assert!(cached.probes.is_empty());
        // Asked for, KVM is used even where it is slower.
        assert_eq!(choose(Some(Accel::Kvm), &mut cached).unwrap().accel, Accel::Kvm);
    }

    #[test]
    fn a_failing_kvm_falls_back_to_tcg_saying_why() {
        let mut fake = host(Err(MSR), Ok(200));
        let choice = choose(None, &mut fake).unwrap();
        assert_eq!((choice.accel, choice.kvm_boots), (Accel::Tcg, false));
        assert_eq!(choice.lines.len(), 2, "the reason and the choice: {:?}", choice.lines);
        assert!(choice.lines[0].contains(MSR));
        assert!(choice.lines[1].contains("accelerator tcg (falling back from KVM)"));
        assert_eq!(fake.remembered, None, "a failure is not cached");
        let error = choose(Some(Accel::Kvm), &mut host(Err(MSR), Ok(1))).unwrap_err();
        assert!(error.message.contains(MSR) && error.message.contains("use --accel tcg"), "{}", error.message);
    }

    #[test]
    fn a_failing_tcg_probe_keeps_kvm_and_is_not_cached() {
        let mut fake = host(Ok(3000), Err("the probe guest did not finish cleanly"));
        let choice = choose(None, &mut fake).unwrap();
        assert_eq!(choice.accel, Accel::Kvm);
        assert!(choice.lines[0].contains("TCG probe failed"));
        assert_eq!(fake.remembered, None);
    }

    #[test]
    fn probe_runs_are_judged_by_the_banner_and_the_ending() {
        let clean =
            "(hv) ringfence 0.1.0 ABI 0.3: 511 MiB RAM\r\n(hv) exit status 0: all domains powered off with code 0\r\n";
        assert_eq!(judge_probe(clean, "", Some(1), false), Ok(()));
        let killed = "(hv) ringfence 0.1.0\n(hv) exit status 3: a domain was killed by the hypervisor\n";
        assert!(judge_probe(killed, "", Some(7), false)
            .unwrap_err()
            .contains("did not finish cleanly (last line: (hv) exit status 3"));
        let stderr = format!(
            "{MSR}\nqemu-system-x86_64: ../../target/i386/kvm/kvm.c:3183: kvm_buf_set_msrs: Assertion failed.\n"
        );
        assert_eq!(judge_probe("", &stderr, None, false), Err(MSR.into()));
        assert_eq!(
            judge_probe("", "", Some(1), false),
            Err("QEMU exited with status 1 before the hypervisor's banner".into())
        );
        assert!(judge_probe("", "", None, false).unwrap_err().contains("signal"));
        assert!(judge_probe("(hv) PANIC", "", None, true).unwrap_err().contains("timeout"));
    }

    #[test]
    fn the_cache_round_trips_and_is_keyed() {
        let key = fingerprint("/usr/bin/qemu 123 456", "6.1.0", "AuthenticAMD / AMD EPYC");
        assert!(
            key.contains(KVM_CPU)
                && key.contains("AMD EPYC")
                && key.contains("6.1.0")
                && key.contains("fault_loop 200")
        );
        let measured = Measured { kvm: Duration::from_micros(2_950_123), tcg: Duration::from_micros(181_000) };
        let text = write_cache(&key, measured);
        assert_eq!(read_cache(&text, &key), Some(measured));
        let other = fingerprint("/usr/bin/qemu 123 457", "6.1.0", "AuthenticAMD / AMD EPYC");
        assert_eq!(read_cache(&text, &other), None, "a new QEMU is measured again");
        assert_eq!(read_cache(&format!("{key}\ngarbage\n"), &key), None);
        assert_eq!(read_cache("", &key), None);
    }
}
