//! Log lines at a level: [`log()`](crate::log()) and the `trace!` … `error!` macros.
//!
//! Lines go to the host's log (`log_at`), tagged with the module's name and version. `print!`
//! and `eprint!` work too (stdout and stderr are captured at info and warn level), but these
//! carry a level and cost no WASI call.

use std::fmt;

use crate::sys;

/// A log level; the host may filter by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Very detailed tracing (wire code 0).
    Trace = 0,
    /// Debugging detail (1).
    Debug = 1,
    /// Normal operation (2).
    Info = 2,
    /// Something unexpected that the module handled (3).
    Warn = 3,
    /// A failure (4).
    Error = 4,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        })
    }
}

/// Writes one log line at `level`. The host cuts lines longer than its limit (4 KiB by
/// default) and rate-limits chatty modules.
pub fn log(level: Level, text: &str) {
    sys::log_at(level as i32, text);
}

/// Logs a formatted line at a level: `guest::log!(guest::Level::Warn, "slow: {ms} ms")`.
#[macro_export]
macro_rules! log {
    ($level:expr, $($arg:tt)+) => {
        $crate::log($level, &::std::format!($($arg)+))
    };
}

/// Logs a formatted line at trace level.
#[macro_export]
macro_rules! trace {
    ($($arg:tt)+) => { $crate::log!($crate::Level::Trace, $($arg)+) };
}

/// Logs a formatted line at debug level.
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => { $crate::log!($crate::Level::Debug, $($arg)+) };
}

/// Logs a formatted line at info level: `guest::info!("user {id} created")`.
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => { $crate::log!($crate::Level::Info, $($arg)+) };
}

/// Logs a formatted line at warn level.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => { $crate::log!($crate::Level::Warn, $($arg)+) };
}

/// Logs a formatted line at error level.
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => { $crate::log!($crate::Level::Error, $($arg)+) };
}

#[cfg(test)]
mod tests {
    use super::Level;
    use crate::testing;

    #[test]
    fn macros_format_and_carry_the_level() {
        let id = 7;
        crate::info!("user {id} created");
        crate::warn!("slow: {} ms", 12);
        crate::log!(Level::Trace, "raw");
        crate::error!("boom");
        assert_eq!(
            testing::take_logs(),
            [
                (Level::Info, "user 7 created".to_owned()),
                (Level::Warn, "slow: 12 ms".to_owned()),
                (Level::Trace, "raw".to_owned()),
                (Level::Error, "boom".to_owned()),
            ]
        );
    }
}
