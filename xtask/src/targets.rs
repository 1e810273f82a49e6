//! The QEMU kernels: one table row each, and how each architecture boots and exits.

use std::path::PathBuf;

use crate::toolchain::root;

/// The bare-metal targets the libraries and kernels build for.
pub const TARGETS: [&str; 2] = ["x86_64-unknown-none", "aarch64-unknown-none"];

/// An architecture QEMU emulates for us.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    Aarch64,
}

/// How a kernel run ended, in the harness's terms (`qemu-tests/src/harness.rs`: `EXIT_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelExit {
    /// `EXIT_SUCCESS` (0).
    Success,
    /// `EXIT_FAILURE` (1): some test failed.
    TestFailures,
    /// `EXIT_CRASH` (3): unexpected exception or panic.
    Crash,
    /// Anything else (a triple-fault reset, QEMU's own error, killed by the timeout).
    Unexpected(Option<i32>),
}

impl std::fmt::Display for KernelExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KernelExit::Success => f.write_str("success"),
            KernelExit::TestFailures => f.write_str("test failures"),
            KernelExit::Crash => f.write_str("crash"),
            KernelExit::Unexpected(Some(s)) => {
                write!(f, "unexpected QEMU exit status {s} (not a harness code)")
            }
            KernelExit::Unexpected(None) => f.write_str("killed by a signal"),
        }
    }
}

impl Arch {
    /// Its name on the command line (`cargo xtask qemu x86_64`).
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }

    pub fn from_name(s: &str) -> Option<Arch> {
        [Arch::X86_64, Arch::Aarch64]
            .into_iter()
            .find(|a| a.name() == s)
    }

    /// Rust target.
    pub fn target(self) -> &'static str {
        match self {
            Arch::X86_64 => TARGETS[0],
            Arch::Aarch64 => TARGETS[1],
        }
    }

    /// QEMU system emulator.
    pub fn qemu(self) -> &'static str {
        match self {
            Arch::X86_64 => "qemu-system-x86_64",
            Arch::Aarch64 => "qemu-system-aarch64",
        }
    }

    /// QEMU arguments common to every kernel of the architecture (the machine, the memory size
    /// and any extra arguments come from the kernel's row; `-kernel` is appended last).
    pub fn base_args(self) -> &'static [&'static str] {
        match self {
            // The kernel exits by writing v to port 0xf4: QEMU then exits with (v << 1) | 1.
            // `-no-reboot` turns a triple fault into exit status 0 instead of a reboot loop.
            Arch::X86_64 => &[
                "-accel",
                "tcg",
                "-display",
                "none",
                "-serial",
                "stdio",
                "-no-reboot",
                "-device",
                "isa-debug-exit,iobase=0xf4,iosize=0x04",
            ],
            // The kernel exits through semihosting SYS_EXIT with the harness code itself.
            Arch::Aarch64 => &[
                "-cpu",
                "cortex-a72",
                "-accel",
                "tcg",
                "-display",
                "none",
                "-serial",
                "stdio",
                "-monitor",
                "none",
                "-semihosting",
            ],
        }
    }

    /// Maps QEMU's exit status (`None`: killed by a signal) to the harness's exit code.
    pub fn kernel_exit(self, status: Option<i32>) -> KernelExit {
        let code = match (self, status) {
            (Arch::X86_64, Some(s)) if s & 1 == 1 => Some(s >> 1),
            (Arch::X86_64, _) => None,
            (Arch::Aarch64, s) => s,
        };
        match code {
            Some(0) => KernelExit::Success,
            Some(1) => KernelExit::TestFailures,
            Some(3) => KernelExit::Crash,
            _ => KernelExit::Unexpected(status),
        }
    }
}

/// What a kernel is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A test kernel run by `cargo xtask test`; `negative_control`: also build it with
    /// `no-tlb-flush` and require exactly the TLB-dependent tests to fail.
    Test { negative_control: bool },
    /// A demo booted by `cargo xtask qemu`.
    Demo,
}

/// One boot of one kernel of the `qemu-tests` package.
#[derive(Debug)]
pub struct Kernel {
    /// Its `[[bin]]` name (source `qemu-tests/src/bin/<bin>.rs`).
    pub bin: &'static str,
    pub arch: Arch,
    /// QEMU's `-machine` value.
    pub machine: &'static str,
    /// QEMU's `-m` value (RAM size).
    pub memory: &'static str,
    /// Further QEMU arguments of this boot alone (e.g. a `-cpu` with other features).
    pub extra: &'static [&'static str],
    /// Prefix of printed test names (`[x86_64] test ...`); unique per row.
    pub label: &'static str,
    pub mode: Mode,
}

const TEST: Mode = Mode::Test {
    negative_control: true,
};
const TEST_ONLY: Mode = Mode::Test {
    negative_control: false,
};
const X86: Arch = Arch::X86_64;
const ARM: Arch = Arch::Aarch64;

/// No extra QEMU arguments.
const NONE: &[&str] = &[];
/// The demos map all RAM with one call: 1 GiB + 256 MiB of it is one 1 GiB page and 128 2 MiB
/// pages (x86: RAM from 0; AArch64 `virt`: from 1 GiB).
const DEMO_RAM: &str = "1280M";
/// QEMU's default x86 CPU (`qemu64`) with 1 GiB pages (CPUID `pdpe1gb`), for the x86 demo.
const X86_1G: &[&str] = &["-cpu", "qemu64,+pdpe1gb"];
/// QEMU's default x86 CPU with SMEP and SMAP, for the test kernel's processes (`spaces::`
/// tests; TCG has no PCID/INVPCID to add), and an x2APIC on four CPUs for its `smp::` test
/// (INIT-SIPI-SIPI and the shootdown IPIs go through the x2APIC's MSRs).
const X86_SPACES: &[&str] = &["-cpu", "qemu64,+smep,+smap,+x2apic", "-smp", "4"];
/// Four CPUs for the AArch64 test kernel's `smp::` test (the others stay powered off until it
/// starts them with PSCI `CPU_ON`).
const SMP4: &[&str] = &["-smp", "4"];
/// The same with QEMU's `max` CPU (the later `-cpu` wins over the base arguments'
/// `cortex-a72`): FEAT_PAN (the `spaces::pan_…` test takes its PAN path) and FEAT_TLBIRANGE
/// (range invalidation), the LPA2 form of TGran4.
const SMP4_MAX: &[&str] = &["-smp", "4", "-cpu", "max"];

#[rustfmt::skip]
/// Every kernel boot: adding one is one line here plus its `[[bin]]` in `qemu-tests`.
pub const KERNELS: &[Kernel] = &[
    //       bin                   arch       machine                           memory              extra          label                mode
    Kernel { bin: "x86_64-tests",  arch: X86, machine: "microvm",                memory: "256M",    extra: X86_SPACES, label: "x86_64",  mode: TEST },
    Kernel { bin: "aarch64-tests", arch: ARM, machine: "virt",                   memory: "256M",    extra: SMP4,   label: "aarch64",     mode: TEST },
    // The same kernel entered at EL2 (it drops to EL1 itself).
    Kernel { bin: "aarch64-tests", arch: ARM, machine: "virt,virtualization=on", memory: "256M",    extra: SMP4,   label: "aarch64/el2", mode: TEST_ONLY },
    // The same kernel on QEMU's `max` CPU (PAN, range TLBIs).
    Kernel { bin: "aarch64-tests", arch: ARM, machine: "virt",                   memory: "256M",    extra: SMP4_MAX, label: "aarch64/max", mode: TEST_ONLY },
    Kernel { bin: "x86_64-demo",   arch: X86, machine: "microvm",                memory: DEMO_RAM,  extra: X86_1G, label: "x86_64",      mode: Mode::Demo },
    Kernel { bin: "aarch64-demo",  arch: ARM, machine: "virt",                   memory: DEMO_RAM,  extra: NONE,   label: "aarch64",     mode: Mode::Demo },
];

impl Kernel {
    pub fn is_test(&self) -> bool {
        matches!(self.mode, Mode::Test { .. })
    }

    /// Whether the kernel's source exists yet.
    pub fn exists(&self) -> bool {
        root()
            .join("qemu-tests/src/bin")
            .join(format!("{}.rs", self.bin))
            .exists()
    }

    /// The ELF `cargo build --release` produces.
    pub fn elf(&self) -> PathBuf {
        root()
            .join("target")
            .join(self.arch.target())
            .join("release")
            .join(self.bin)
    }

    /// QEMU's full argument list.
    pub fn qemu_args(&self) -> Vec<String> {
        let mut args = vec!["-machine".to_string(), self.machine.to_string()];
        args.extend(self.arch.base_args().iter().map(|s| s.to_string()));
        args.extend(["-m".to_string(), self.memory.to_string()]);
        args.extend(self.extra.iter().map(|s| s.to_string()));
        args.push("-kernel".into());
        args.push(self.elf().display().to_string());
        args
    }
}

/// The kernels of one mode, optionally of one architecture.
pub fn select(tests: bool, arch: Option<Arch>) -> impl Iterator<Item = &'static Kernel> {
    KERNELS
        .iter()
        .filter(move |k| k.is_test() == tests && arch.is_none_or(|a| k.arch == a))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x86_exit_status_is_debug_exit_encoding() {
        let x = Arch::X86_64;
        assert_eq!(x.kernel_exit(Some(1)), KernelExit::Success);
        assert_eq!(x.kernel_exit(Some(3)), KernelExit::TestFailures);
        assert_eq!(x.kernel_exit(Some(7)), KernelExit::Crash);
        // Triple fault with -no-reboot: a plain 0 is not success.
        assert_eq!(x.kernel_exit(Some(0)), KernelExit::Unexpected(Some(0)));
        assert_eq!(x.kernel_exit(Some(5)), KernelExit::Unexpected(Some(5)));
        assert_eq!(x.kernel_exit(Some(2)), KernelExit::Unexpected(Some(2)));
        assert_eq!(x.kernel_exit(None), KernelExit::Unexpected(None));
    }

    #[test]
    fn aarch64_exit_status_is_the_harness_code() {
        let a = Arch::Aarch64;
        assert_eq!(a.kernel_exit(Some(0)), KernelExit::Success);
        assert_eq!(a.kernel_exit(Some(1)), KernelExit::TestFailures);
        assert_eq!(a.kernel_exit(Some(3)), KernelExit::Crash);
        assert_eq!(a.kernel_exit(Some(2)), KernelExit::Unexpected(Some(2)));
        assert_eq!(a.kernel_exit(None), KernelExit::Unexpected(None));
    }

    #[test]
    fn table_is_consistent() {
        let mut labels: Vec<(&str, bool)> =
            KERNELS.iter().map(|k| (k.label, k.is_test())).collect();
        labels.sort_unstable();
        let n = labels.len();
        labels.dedup();
        assert_eq!(labels.len(), n, "labels must be unique per mode");
        for k in KERNELS {
            assert!(k.bin.starts_with(k.arch.name()), "{}", k.bin);
        }
        assert_eq!(select(true, None).count(), 4);
        // The `max` row's `-cpu` comes after the base arguments' (QEMU takes the last one).
        let max = KERNELS.iter().find(|k| k.label == "aarch64/max").unwrap();
        let margs = max.qemu_args();
        let cpus: Vec<usize> = (0..margs.len()).filter(|&i| margs[i] == "-cpu").collect();
        assert_eq!(margs[cpus.last().unwrap() + 1], "max");
        assert_eq!(select(false, Some(Arch::Aarch64)).count(), 1);
        assert_eq!(Arch::from_name("aarch64"), Some(Arch::Aarch64));
        assert_eq!(Arch::from_name("riscv64"), None);
        let args = KERNELS[2].qemu_args();
        assert_eq!(args[..2], ["-machine", "virt,virtualization=on"]);
        assert_eq!(args.iter().filter(|a| *a == "-m").count(), 1);
        assert!(args.windows(2).any(|w| w == ["-m", "256M"]));
        let demo = select(false, Some(Arch::X86_64))
            .next()
            .unwrap()
            .qemu_args();
        assert!(demo.windows(2).any(|w| w == ["-cpu", "qemu64,+pdpe1gb"]));
        assert_eq!(args[args.len() - 2], "-kernel");
        assert!(args
            .last()
            .unwrap()
            .ends_with("target/aarch64-unknown-none/release/aarch64-tests"));
    }
}
