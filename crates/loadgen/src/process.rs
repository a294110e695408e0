//! Child processes: the `modhost` under test and the baseline servers, each killed when its
//! handle drops; resident memory from `/proc`.

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// A running server process, killed on drop.
#[derive(Debug)]
pub struct Server {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// From spawn to listening (for modhost: every module in dist loaded).
    pub startup: Duration,
    /// When the process was spawned.
    pub spawned: Instant,
}

impl Server {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident set size in bytes (`VmRSS`).
    pub fn rss_bytes(&self) -> anyhow::Result<u64> {
        rss_bytes(self.child.id())
    }

    /// CPU time used so far, user plus system, over all threads.
    pub fn cpu_time(&self) -> anyhow::Result<Duration> {
        cpu_time(self.child.id())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads `VmRSS` of `pid`.
pub fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .context("no VmRSS line")?;
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .context("empty VmRSS line")?
        .parse()?;
    Ok(kib * 1024)
}

/// CPU time `pid` has used, user plus system, over all its threads: `utime` and `stime` of
/// `/proc/<pid>/stat`, in clock ticks of 10 ms (`USER_HZ`, which Linux fixes at 100 for
/// everything it reports to user space).
pub fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) is in parentheses and may hold spaces; count after it.
    let (_, rest) = stat
        .rsplit_once(')')
        .context("no command name in /proc/<pid>/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): utime is field 14, stime field 15.
    let ticks = |index: usize| -> anyhow::Result<u64> {
        Ok(fields
            .get(index)
            .context("/proc/<pid>/stat is too short")?
            .parse()?)
    };
    Ok(Duration::from_millis((ticks(11)? + ticks(12)?) * 10))
}

/// How to start `modhost`.
#[derive(Debug, Clone)]
pub struct Modhost {
    /// The binary.
    pub binary: PathBuf,
    /// `serve` or `dev`.
    pub command: &'static str,
    /// `--root`.
    pub root: PathBuf,
    /// `--dist-dir` (absolute, or relative to the root).
    pub dist_dir: PathBuf,
    /// `--modules-dir`.
    pub modules_dir: PathBuf,
    /// Its standard error goes here.
    pub log: PathBuf,
    /// Longest wait for it to listen.
    pub start_timeout: Duration,
    /// More arguments after the standard ones (e.g. `--compiler cranelift`).
    pub args: Vec<String>,
}

impl Modhost {
    /// Starts it on a free loopback port and waits until it listens.
    pub fn start(&self) -> anyhow::Result<Server> {
        let started = Instant::now();
        let mut child = Command::new(&self.binary)
            .arg(self.command)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--root")
            .arg(&self.root)
            .arg("--dist-dir")
            .arg(&self.dist_dir)
            .arg("--modules-dir")
            .arg(&self.modules_dir)
            .args(&self.args)
            .env(
                "RUST_LOG",
                "info,wasmer_wasix=warn,wasmer=warn,cranelift=warn",
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        let stderr = child.stderr.take().context("no stderr pipe")?;
        let (found, addr) = std::sync::mpsc::channel();
        let mut log = std::fs::File::create(&self.log)
            .with_context(|| format!("creating {}", self.log.display()))?;
        std::thread::spawn(move || {
            let mut found = Some(found);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = writeln!(log, "{line}");
                if let Some(rest) = line.strip_prefix("modhost listening on http://")
                    && let (Some(sender), Ok(addr)) = (found.take(), rest.trim().parse())
                {
                    let _ = sender.send((addr, Instant::now()));
                }
            }
        });
        let mut server = Server {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            startup: Duration::ZERO,
            spawned: started,
        };
        match addr.recv_timeout(self.start_timeout) {
            Ok((addr, at)) => {
                server.addr = addr;
                server.startup = at - started;
                Ok(server)
            }
            Err(_) => bail!(
                "modhost did not listen within {:?}; see {}",
                self.start_timeout,
                self.log.display()
            ),
        }
    }
}

/// Starts `loadgen serve <which>` (this binary) and waits for its address.
pub fn baseline(which: &str) -> anyhow::Result<Server> {
    let started = Instant::now();
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .args(["serve", which, "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting a baseline server")?;
    let stdout = child.stdout.take().context("no stdout pipe")?;
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = sender.send(line);
    });
    let mut server = Server {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], 0)),
        startup: Duration::ZERO,
        spawned: started,
    };
    let line = receiver
        .recv_timeout(Duration::from_secs(10))
        .context("baseline server did not start within 10 s")?;
    server.addr = line
        .trim()
        .parse()
        .with_context(|| format!("baseline server printed {line:?}"))?;
    server.startup = started.elapsed();
    Ok(server)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This thread's CPU time, from the scheduler's own nanosecond count.
    fn thread_cpu() -> Duration {
        let schedstat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
        let nanos: u64 = schedstat
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        Duration::from_nanos(nanos)
    }

    #[test]
    fn cpu_time_agrees_with_the_schedulers_count() {
        let (process, thread) = (cpu_time(std::process::id()).unwrap(), thread_cpu());
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut spin = 0_u64;
        while thread_cpu() - thread < Duration::from_millis(300) && Instant::now() < deadline {
            spin = std::hint::black_box(spin.wrapping_add(1));
        }
        let spun = thread_cpu() - thread;
        let counted = cpu_time(std::process::id()).unwrap() - process;
        assert!(
            spun >= Duration::from_millis(300),
            "only {spun:?} of CPU in 20 s"
        );
        // Ticks of 10 ms at both ends, and the test harness's other threads.
        let gap = counted.as_secs_f64() - spun.as_secs_f64();
        assert!(
            (-0.03..=0.06).contains(&gap),
            "/proc/<pid>/stat {counted:?}, scheduler {spun:?}"
        );
    }
}
