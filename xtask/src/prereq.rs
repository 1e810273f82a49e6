//! What a command needs installed before it builds or runs anything, ensured in one place: every
//! command that builds a kernel or a bare-metal library gets the targets (and QEMU, and Miri)
//! from here, so none of them fails on a fresh machine with "can't find crate for `core`".

use crate::qemu;
use crate::report::Tally;
use crate::toolchain;

/// The prerequisites of one command.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Needs {
    /// The bare-metal Rust targets of the pinned toolchain (`rustup target add`).
    pub targets: bool,
    /// Both QEMU system emulators.
    pub qemu: bool,
    /// Miri (and the standard library sources it builds) on the nightly toolchain.
    pub miri: bool,
}

/// Which prerequisites are in place after [`ensure`]: a step that needs a missing one is
/// skipped (its prerequisite already counts as failed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ready {
    pub targets: bool,
    pub qemu: bool,
    pub miri: bool,
}

impl Ready {
    /// Whether everything `needs` asks for is in place.
    pub fn covers(self, needs: Needs) -> bool {
        (!needs.targets || self.targets) && (!needs.qemu || self.qemu) && (!needs.miri || self.miri)
    }
}

fn record(tally: &mut Tally, name: &str, ok: bool) -> bool {
    println!("{name} ... {}", if ok { "ok" } else { "FAILED" });
    tally.record(name, ok);
    ok
}

/// Installs what `needs` asks for and is missing, counting each prerequisite as one check.
pub fn ensure(needs: Needs, tally: &mut Tally) -> Ready {
    if needs == Needs::default() {
        return Ready::default();
    }
    eprintln!("\n==== prerequisites ====");
    let mut ready = Ready::default();
    if needs.targets {
        let ok = toolchain::ensure_targets();
        ready.targets = record(tally, "rustup targets", ok);
    }
    if needs.qemu {
        let ok = match qemu::ensure_qemu() {
            Ok(()) => true,
            Err(e) => {
                eprintln!("{e}");
                false
            }
        };
        ready.qemu = record(tally, "QEMU installed", ok);
    }
    if needs.miri {
        let ok = toolchain::ensure_miri();
        ready.miri = record(tally, "miri (nightly) installed", ok);
    }
    ready
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_covers_what_was_needed() {
        let all = Needs {
            targets: true,
            qemu: true,
            miri: true,
        };
        let none = Ready::default();
        assert!(none.covers(Needs::default()));
        assert!(!none.covers(all));
        let targets_only = Ready {
            targets: true,
            ..Ready::default()
        };
        assert!(targets_only.covers(Needs {
            targets: true,
            ..Needs::default()
        }));
        assert!(!targets_only.covers(Needs {
            targets: true,
            qemu: true,
            miri: false
        }));
        assert!(Ready {
            targets: true,
            qemu: true,
            miri: true
        }
        .covers(all));
    }

    #[test]
    fn nothing_needed_nothing_checked() {
        let mut tally = Tally::default();
        assert_eq!(ensure(Needs::default(), &mut tally), Ready::default());
        assert_eq!(tally, Tally::default());
    }
}
