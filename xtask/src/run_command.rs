//! Checks the README's run command: runs it exactly as written (on a free port), waits for
//! the server to listen, asks an example module for a 200, then stops it with SIGTERM and
//! expects a graceful shutdown.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::step;

/// The marker line in README.md that precedes the fenced block holding the run command.
const MARKER: &str = "<!-- run-command -->";

/// The run command from README.md, as words.
fn run_command() -> Result<Vec<String>, String> {
    let readme = std::fs::read_to_string(step::root().join("README.md"))
        .map_err(|error| format!("README.md: {error}"))?;
    let after = readme
        .split_once(MARKER)
        .ok_or_else(|| format!("README.md has no {MARKER} line"))?
        .1;
    let command = after
        .lines()
        .skip_while(|line| !line.starts_with("```"))
        .nth(1)
        .ok_or_else(|| format!("README.md: no fenced block after {MARKER}"))?;
    let words: Vec<String> = command.split_whitespace().map(str::to_owned).collect();
    if words.first().map(String::as_str) != Some("cargo") {
        return Err(format!(
            "README.md: the run command {command:?} does not start with cargo"
        ));
    }
    Ok(words)
}

fn http_get(address: &str, path: &str) -> Result<(u16, String), String> {
    let mut stream =
        TcpStream::connect(address).map_err(|error| format!("connecting to {address}: {error}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|error| error.to_string())?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|error| error.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|error| format!("reading the response: {error}"))?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("not an HTTP response: {response:?}"))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// `verify` step: the README's run command serves an example module.
pub fn check() -> Result<(), String> {
    let words = run_command()?;
    eprintln!(
        "README run command: {} --listen 127.0.0.1:0",
        words.join(" ")
    );
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command
        .args(&words[1..])
        .args(["--listen", "127.0.0.1:0"])
        .current_dir(step::root())
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = command
        .spawn()
        .map_err(|error| format!("starting the run command: {error}"))?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("  | {line}");
            let _ = lines.send(line);
        }
    });
    let result = exercise(&received);
    // SIGTERM to the whole group (cargo and modhost): modhost shuts down gracefully.
    let _ = Command::new("kill")
        .args(["-TERM", "--", &format!("-{}", child.id())])
        .status();
    let stopped = wait_for(&received, Duration::from_secs(30), |line| {
        line.contains("modhost stopped")
    });
    let _ = child.kill();
    let _ = child.wait();
    result?;
    stopped
        .map(|_| ())
        .map_err(|error| format!("after SIGTERM: {error}"))
}

fn exercise(received: &mpsc::Receiver<String>) -> Result<(), String> {
    // The first run builds the server and every module: allow for a cold build.
    let line = wait_for(received, Duration::from_secs(1200), |line| {
        line.contains("modhost listening on http://")
    })?;
    let address = line
        .rsplit("http://")
        .next()
        .unwrap_or_default()
        .trim()
        .to_owned();
    let (status, body) = http_get(&address, "/m/bench")?;
    if status != 200 {
        return Err(format!("GET /m/bench answered {status}: {body}"));
    }
    let (status, _) = http_get(&address, "/healthz")?;
    if status != 200 {
        return Err(format!("GET /healthz answered {status}"));
    }
    eprintln!("README run command served GET /m/bench: 200 {body:?}");
    Ok(())
}

fn wait_for(
    received: &mpsc::Receiver<String>,
    limit: Duration,
    wanted: impl Fn(&str) -> bool,
) -> Result<String, String> {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match received.recv_timeout(left) {
            Ok(line) if wanted(&line) => return Ok(line),
            Ok(_) => {}
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return Err(format!("no such line within {limit:?}"));
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err("the command exited first".into());
            }
        }
    }
}
