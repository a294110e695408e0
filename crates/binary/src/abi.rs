//! The negative return codes of the ABI 1 host imports (`docs/ABI.md`), shared by the host
//! that returns them and the guest SDK that reads them.

use std::fmt;

/// A refusal an import reports with a negative return value. Non-negative values are
/// results (mailboxes reached, a packed pointer and length), never codes.
///
/// ```
/// use binary::abi::Code;
///
/// assert_eq!(Code::Timeout.get(), -4);
/// assert_eq!(Code::from_i32(-5), Some(Code::NoResponders));
/// assert_eq!(Code::from_i64(-1), Some(Code::Invalid));
/// assert_eq!(Code::from_i32(0), None);
/// ```
#[repr(i32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    /// Input refused: a bad topic, an oversized or undecodable message.
    Invalid = -1,
    /// A limit was hit (subscriptions).
    Limit = -2,
    /// The bus is closed.
    Closed = -3,
    /// `request`: no reply within the timeout.
    Timeout = -4,
    /// `request`: nobody is subscribed to the topic.
    NoResponders = -5,
    /// `request`: every responder's mailbox was full.
    Busy = -6,
}

impl Code {
    /// Every code, in numeric order from -1 down.
    pub const ALL: [Code; 6] = [
        Code::Invalid,
        Code::Limit,
        Code::Closed,
        Code::Timeout,
        Code::NoResponders,
        Code::Busy,
    ];

    /// The value an `i32`-returning import returns.
    #[inline]
    pub const fn get(self) -> i32 {
        self as i32
    }

    /// The value an `i64`-returning import (`request`) returns.
    #[inline]
    pub const fn get_i64(self) -> i64 {
        self as i32 as i64
    }

    /// The code `value` stands for; `None` for a result (≥ 0) or a code this version does
    /// not know.
    pub fn from_i32(value: i32) -> Option<Code> {
        Code::ALL.into_iter().find(|code| code.get() == value)
    }

    /// Like [`Code::from_i32`], for an `i64` return value.
    pub fn from_i64(value: i64) -> Option<Code> {
        i32::try_from(value).ok().and_then(Code::from_i32)
    }

    /// What the code means, as `docs/ABI.md` words it.
    pub fn meaning(self) -> &'static str {
        match self {
            Code::Invalid => "invalid input",
            Code::Limit => "a limit was hit",
            Code::Closed => "the bus is closed",
            Code::Timeout => "request timed out",
            Code::NoResponders => "no subscriber for the request's topic",
            Code::Busy => "every responder's mailbox was full",
        }
    }
}

impl From<Code> for i32 {
    fn from(code: Code) -> i32 {
        code.get()
    }
}

impl From<Code> for i64 {
    fn from(code: Code) -> i64 {
        code.get_i64()
    }
}

impl TryFrom<i32> for Code {
    type Error = i32;

    /// The code for `value`, or `value` back when it is not one.
    fn try_from(value: i32) -> Result<Code, i32> {
        Code::from_i32(value).ok_or(value)
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (code {})", self.meaning(), self.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_results_are_not_codes() {
        for (index, code) in Code::ALL.into_iter().enumerate() {
            assert_eq!(code.get(), -1 - index as i32);
            assert_eq!(Code::from_i32(code.get()), Some(code));
            assert_eq!(Code::from_i64(code.get_i64()), Some(code));
            assert_eq!(Code::try_from(code.get()), Ok(code));
        }
        for value in [0, 1, -7, i32::MIN, i32::MAX] {
            assert_eq!(Code::from_i32(value), None);
        }
        assert_eq!(Code::from_i64(i64::from(i32::MIN) - 1), None);
        assert_eq!(Code::from_i64(-1 << 32 | 1), None);
        assert_eq!(
            Code::Busy.to_string(),
            "every responder's mailbox was full (code -6)"
        );
    }

    /// docs/ABI.md lists every code with its meaning, and no other.
    #[test]
    fn the_abi_document_lists_every_code() {
        let doc = include_str!("../../../docs/ABI.md");
        let line = doc
            .lines()
            .find(|line| line.starts_with("Return codes"))
            .expect("docs/ABI.md has a \"Return codes\" paragraph");
        let start = doc.find(line).unwrap_or(0);
        let paragraph: String = doc[start..]
            .lines()
            .take_while(|line| !line.trim().is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        for code in Code::ALL {
            let entry = format!("`{}` {}", code.get(), code.meaning());
            assert!(paragraph.contains(&entry), "{entry:?} not in {paragraph:?}");
        }
        assert!(!paragraph.contains(&format!("`{}`", -(Code::ALL.len() as i32) - 1)));
    }
}
