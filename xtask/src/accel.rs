//! Choosing QEMU's accelerator: KVM where it really boots the hypervisor, TCG otherwise.
//!
//! `/dev/kvm` opening is not enough. On some hosts QEMU with KVM dies before the guest runs
//! one instruction (an AMD host whose KVM cannot set an MSR the CPU model asks for, a
//! nested setup without a feature), and every run then ends the same way. So KVM is
//! *probed*: QEMU boots the hypervisor with no domains and must reach its banner. A host
//! that passed is remembered in a cache file keyed by what could change the answer (QEMU
//! binary, host kernel, host CPU, the CPU model asked for); a failure is never cached, so
//! fixing the host takes effect at once.
//!
//! This module is the decision only: no process is started here ([`crate::qemu`] runs the
//! probe), so every path is a host test.

use crate::{Error, Result};

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

impl Accel {
    /// The `-accel` and `-cpu` arguments.
    pub fn args(self) -> [&'static str; 4] {
        match self {
            Accel::Kvm => ["-accel", "kvm", "-cpu", KVM_CPU],
            Accel::Tcg => ["-accel", "tcg", "-cpu", TCG_CPU],
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

/// What booting the hypervisor under KVM showed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    /// The banner appeared.
    Boots,
    /// QEMU ended (or hung) before the banner; the reason in one line.
    Fails(String),
}

/// Reads a probe run: `console` is what the hypervisor printed, `stderr` QEMU's own
/// diagnostics, `exit` QEMU's exit status (`None`: killed by a signal), `timed_out` true
/// when the probe had to be killed.
pub fn judge_probe(console: &str, stderr: &str, exit: Option<i32>, timed_out: bool) -> Probe {
    if console.lines().any(|line| line.trim_end().starts_with(BANNER)) {
        return Probe::Boots;
    }
    // QEMU's first complaint is the cause; later lines (an assertion in kvm.c) follow from it.
    let complaint = stderr.lines().map(str::trim).find(|line| !line.is_empty());
    let reason = match (complaint, exit, timed_out) {
        (_, _, true) => "no banner before the probe's timeout".to_string(),
        (Some(line), _, _) => line.to_string(),
        (None, Some(code), _) => format!("QEMU exited with status {code} before the hypervisor's banner"),
        (None, None, _) => "QEMU was killed by a signal before the hypervisor's banner".to_string(),
    };
    Probe::Fails(reason)
}

/// The start of the hypervisor's first console line.
pub const BANNER: &str = "(hv) ringfence ";

/// The accelerator chosen and the lines that say why (printed by the caller).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Choice {
    /// The accelerator to use.
    pub accel: Accel,
    /// One line each: a failed probe's reason first, then the choice.
    pub lines: Vec<String>,
}

/// The facts a choice depends on, gathered by the caller.
pub trait Host {
    /// True if /dev/kvm opens for reading and writing.
    fn kvm_opens(&self) -> bool;
    /// True if the cache says KVM booted the hypervisor on this host before.
    fn cached_boots(&self) -> bool;
    /// Boots the hypervisor under KVM once.
    fn probe(&mut self) -> Probe;
    /// Remembers that KVM boots the hypervisor here.
    fn remember_boots(&mut self);
}

/// Refuses `--accel kvm` where /dev/kvm does not open: checked before anything is built, and
/// again by [`choose`].
pub fn check_request(requested: Option<Accel>, kvm_opens: bool) -> Result<()> {
    if requested == Some(Accel::Kvm) && !kvm_opens {
        return Err(Error::usage(
            "--accel kvm was asked for but /dev/kvm cannot be opened read-write; use --accel tcg, or give this user access to /dev/kvm (group kvm)",
        ));
    }
    Ok(())
}

/// Chooses the accelerator. `requested` is the user's `--accel`: TCG is taken as it is;
/// KVM must open and boot (else an error naming the reason and `--accel tcg`). Without a
/// request KVM is used where it boots, and TCG otherwise, saying why.
pub fn choose(requested: Option<Accel>, host: &mut impl Host) -> Result<Choice> {
    let line = |accel: Accel, why: &str| {
        let args = accel.args();
        format!("qemu: accelerator {} ({why}): {}", accel.name(), args.join(" "))
    };
    if requested == Some(Accel::Tcg) {
        return Ok(Choice { accel: Accel::Tcg, lines: vec![line(Accel::Tcg, "as requested")] });
    }
    if !host.kvm_opens() {
        check_request(requested, false)?;
        return Ok(Choice { accel: Accel::Tcg, lines: vec![line(Accel::Tcg, "/dev/kvm is not usable")] });
    }
    let why = if requested.is_some() { "as requested" } else { "/dev/kvm is usable" };
    if host.cached_boots() {
        return Ok(Choice { accel: Accel::Kvm, lines: vec![line(Accel::Kvm, why)] });
    }
    match host.probe() {
        Probe::Boots => {
            host.remember_boots();
            Ok(Choice { accel: Accel::Kvm, lines: vec![line(Accel::Kvm, &format!("{why}; probed: it boots the hypervisor"))] })
        }
        Probe::Fails(reason) => match requested {
            Some(_) => Err(Error::usage(format!(
                "--accel kvm was asked for but QEMU with KVM does not boot the hypervisor on this host: {reason}; use --accel tcg"
            ))),
            None => Ok(Choice {
                accel: Accel::Tcg,
                lines: vec![
                    format!("qemu: KVM does not boot the hypervisor on this host: {reason}"),
                    line(Accel::Tcg, "falling back from KVM"),
                ],
            }),
        },
    }
}

/// The cache key: one line naming everything a KVM verdict depends on. `qemu` describes the
/// binary (path, size, modification time), `kernel` the host kernel release, `cpu` the
/// host CPU's model name.
pub fn fingerprint(qemu: &str, kernel: &str, cpu: &str) -> String {
    format!("qemu {qemu}; kernel {kernel}; cpu {cpu}; model {KVM_CPU}; boots")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host whose answers are set by the test, counting probes.
    struct FakeHost {
        opens: bool,
        cached: bool,
        probe: Probe,
        probes: usize,
        remembered: bool,
    }

    fn host(opens: bool, cached: bool, probe: Probe) -> FakeHost {
        FakeHost { opens, cached, probe, probes: 0, remembered: false }
    }

    impl Host for FakeHost {
        fn kvm_opens(&self) -> bool {
            self.opens
        }
        fn cached_boots(&self) -> bool {
            self.cached
        }
        fn probe(&mut self) -> Probe {
            self.probes += 1;
            self.probe.clone()
        }
        fn remember_boots(&mut self) {
            self.remembered = true;
        }
    }

    const MSR: &str = "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69";

    #[test]
    fn tcg_on_request_never_probes() {
        let mut fake = host(true, false, Probe::Boots);
        let choice = choose(Some(Accel::Tcg), &mut fake).unwrap();
        assert_eq!(choice.accel, Accel::Tcg);
        assert_eq!(choice.lines, ["qemu: accelerator tcg (as requested): -accel tcg -cpu max"]);
        assert_eq!(fake.probes, 0);
    }

    #[test]
    fn no_dev_kvm_means_tcg_or_an_error_when_kvm_was_asked_for() {
        let choice = choose(None, &mut host(false, false, Probe::Boots)).unwrap();
        assert_eq!(choice.accel, Accel::Tcg);
        assert!(choice.lines[0].contains("/dev/kvm is not usable"));
        let error = choose(Some(Accel::Kvm), &mut host(false, true, Probe::Boots)).unwrap_err();
        assert!(error.message.contains("use --accel tcg"), "{}", error.message);
        assert_eq!(error.exit_code, crate::error::EXIT_USAGE);
    }

    #[test]
    fn a_booting_kvm_is_probed_once_and_remembered() {
        let mut fake = host(true, false, Probe::Boots);
        let choice = choose(None, &mut fake).unwrap();
        assert_eq!(choice.accel, Accel::Kvm);
        assert_eq!((fake.probes, fake.remembered), (1, true));
        assert!(choice.lines[0].ends_with("-accel kvm -cpu host,+invtsc,-arch-capabilities"), "{:?}", choice.lines);

        let mut cached = host(true, true, Probe::Fails("never asked".into()));
        assert_eq!(choose(None, &mut cached).unwrap().accel, Accel::Kvm);
        assert_eq!(cached.probes, 0, "a cached verdict is not probed again");
    }

    #[test]
    fn a_failing_kvm_falls_back_to_tcg_saying_why() {
        let mut fake = host(true, false, Probe::Fails(MSR.into()));
        let choice = choose(None, &mut fake).unwrap();
        assert_eq!(choice.accel, Accel::Tcg);
        assert_eq!(choice.lines.len(), 2, "the reason and the choice: {:?}", choice.lines);
        assert!(choice.lines[0].contains(MSR));
        assert!(choice.lines[1].contains("accelerator tcg (falling back from KVM)"));
        assert!(!fake.remembered, "a failure is not cached");
    }

    #[test]
    fn a_failing_kvm_that_was_asked_for_is_an_error() {
        let error = choose(Some(Accel::Kvm), &mut host(true, false, Probe::Fails(MSR.into()))).unwrap_err();
        assert!(error.message.contains(MSR) && error.message.contains("use --accel tcg"), "{}", error.message);
    }

    #[test]
    fn probe_runs_are_judged_by_the_banner() {
        let banner = "(hv) ringfence 0.1.0 ABI 0.3: 511 MiB RAM\r\n(hv) exit status 5: nothing to run\n";
        assert_eq!(judge_probe(banner, "", Some(11), false), Probe::Boots);
        let stderr = format!(
            "{MSR}\nqemu-system-x86_64: ../../target/i386/kvm/kvm.c:3183: kvm_buf_set_msrs: Assertion failed.\n"
        );
        assert_eq!(judge_probe("", &stderr, None, false), Probe::Fails(MSR.into()));
        assert_eq!(
            judge_probe("", "", Some(1), false),
            Probe::Fails("QEMU exited with status 1 before the hypervisor's banner".into())
        );
        assert!(matches!(judge_probe("", "", None, false), Probe::Fails(reason) if reason.contains("signal")));
        assert!(
            matches!(judge_probe("(hv) PANIC", "", None, true), Probe::Fails(reason) if reason.contains("timeout"))
        );
        assert_eq!(
            judge_probe("(hv) ringfenced\n", "", Some(0), false),
            Probe::Fails("QEMU exited with status 0 before the hypervisor's banner".into())
        );
    }

    #[test]
    fn the_fingerprint_names_the_cpu_model() {
        let key = fingerprint("/usr/bin/qemu 123 456", "6.1.0", "AMD EPYC");
        assert!(key.contains(KVM_CPU) && key.contains("AMD EPYC") && key.contains("6.1.0"));
        assert_ne!(key, fingerprint("/usr/bin/qemu 123 457", "6.1.0", "AMD EPYC"));
    }
}
