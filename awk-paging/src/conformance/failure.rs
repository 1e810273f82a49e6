//! Failure messages without an allocator (the suite also runs on bare metal).

use core::fmt::{self, Write};

/// Why a check failed: a formatted message in a fixed buffer (longer text is cut).
///
/// ```
/// use awk_paging::conformance::Failure;
/// let f = Failure::new(format_args!("expected {} got {}", 1, 2));
/// assert_eq!(f.as_str(), "expected 1 got 2");
/// ```
#[derive(Clone)]
pub struct Failure {
    buf: [u8; 240],
    len: usize,
}

impl Failure {
    /// Formats a message.
    #[must_use]
    pub fn new(args: fmt::Arguments<'_>) -> Self {
        let mut f = Failure {
            buf: [0; 240],
            len: 0,
        };
        let _ = f.write_fmt(args);
        f
    }

    /// The message.
    #[must_use]
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("<invalid utf-8>")
    }
}

impl Write for Failure {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut take = s.len().min(self.buf.len() - self.len);
        while !s.is_char_boundary(take) {
            take -= 1;
        }
        self.buf[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
        self.len += take;
        Ok(())
    }
}

impl fmt::Debug for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Returns a [`Failure`] from the enclosing check unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($arg:tt)*) => {
        if !$cond {
            return Err($crate::conformance::Failure::new(format_args!($($arg)*)));
        }
    };
}

/// Returns a [`Failure`] unless `left == right`, showing both.
macro_rules! ensure_eq {
    ($left:expr, $right:expr, $($arg:tt)*) => {{
        let (l, r) = (&$left, &$right);
        if l != r {
            return Err($crate::conformance::Failure::new(format_args!(
                "{}: got {:?}, expected {:?}", format_args!($($arg)*), l, r
            )));
        }
    }};
}

pub(crate) use {ensure, ensure_eq};
