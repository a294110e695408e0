//! `cargo xtask soak [--minutes N]`: the soak test (`crates/server/tests/soak.rs`) against the
//! real `modhost` binary: concurrent load, a swap every 500 ms, a module trapping on 1% of
//! requests, WebSocket clients coming and going, bus traffic; then RSS, open file descriptors
//! and threads compared between two quiet points.

use crate::step;

/// Runs the soak for `seconds` of load.
fn soak(seconds: u64) -> Result<(), String> {
    let mut command = step::cargo(&[
        "test",
        "--workspace",
        "--locked",
        "--test",
        "soak",
        "--",
        "--ignored",
        "--nocapture",
    ]);
    command.env("MODHOST_SOAK_SECS", seconds.to_string());
    step::run(command)
}

/// The 60-second version `cargo xtask verify` runs.
pub fn verify() -> Result<(), String> {
    soak(60)
}

/// `cargo xtask soak [--minutes N]` (default 10).
pub fn run(args: &[String]) -> Result<(), String> {
    let mut minutes: f64 = 10.0;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--minutes" => {
                let value = args.next().ok_or("--minutes needs a value")?;
                minutes = value
                    .parse()
                    .ok()
                    .filter(|minutes: &f64| *minutes > 0.0 && minutes.is_finite())
                    .ok_or_else(|| format!("--minutes {value:?}: expected a positive number"))?;
            }
            other => return Err(format!("soak: unknown argument {other:?}")),
        }
    }
    soak((minutes * 60.0).round() as u64)
}
