//! The `devloop` scenario: save a module's source → the new answer, in dev mode.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::json;

use crate::load::{Connection, Target};
use crate::process::Modhost;
use crate::stats::{Row, Section, median};

use super::{AUTH, Settings};

/// Restores a source file when dropped.
struct Restore {
    path: PathBuf,
    original: String,
}

impl Drop for Restore {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.path, &self.original);
    }
}

async fn wait_version(
    addr: std::net::SocketAddr,
    version: &str,
    timeout: Duration,
) -> anyhow::Result<Instant> {
    let deadline = Instant::now() + timeout;
    let target = Target::get(addr, "/m/users/version").header(AUTH.0, AUTH.1);
    let mut connection = Connection::open(addr).await?;
    loop {
        match connection.send(&target).await {
            Ok((_, body)) if body.as_ref() == version.as_bytes() => return Ok(Instant::now()),
            Ok(_) => {}
            Err(_) => connection = Connection::open(addr).await?,
        }
        if Instant::now() > deadline {
            bail!("version {version:?} not served within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// `modhost dev`: edit one line of `modules/users/wasm/src/lib.rs` → the new answer served.
pub async fn devloop(settings: &Settings) -> anyhow::Result<Section> {
    const LINE: &str = "const VERSION: &str = \"1\";";
    let dir = settings.scratch("devloop")?;
    let source = settings.root.join("modules/users/wasm/src/lib.rs");
    let original = std::fs::read_to_string(&source)?;
    if !original.contains(LINE) {
        bail!("{} has no line {LINE:?}", source.display());
    }
    let modhost = Modhost {
        binary: settings.modhost.clone(),
        command: "dev",
        root: settings.root.clone(),
        dist_dir: dir.join("dist"),
        modules_dir: settings.root.join("modules"),
        log: dir.join("modhost.log"),
        start_timeout: Duration::from_secs(600),
    }
    .start()?;
    let restore = Restore {
        path: source.clone(),
        original: original.clone(),
    };
    wait_version(modhost.addr, "1", Duration::from_secs(30)).await?;
    let mut loops = Vec::new();
    for round in 0..settings.rounds {
        let version = format!("bench-{round}");
        let edited = original.replacen(LINE, &format!("const VERSION: &str = \"{version}\";"), 1);
        let saved = Instant::now();
        std::fs::write(&source, edited)?;
        let served = wait_version(modhost.addr, &version, Duration::from_secs(120)).await?;
        loops.push((served - saved).as_secs_f64() * 1000.0);
        eprintln!("devloop round {round}: {:.0} ms", loops[round]);
        // Let the watcher settle before the next edit.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(restore);
    wait_version(modhost.addr, "1", Duration::from_secs(120)).await?;
    let rows = vec![
        Row::new(
            format!("save → new response ({} edits) median / max", loops.len()),
            format!(
                "{:.0} ms / {:.0} ms",
                median(&loops),
                loops.iter().copied().fold(0.0, f64::max)
            ),
        )
        .target("≤ 2 s", loops.iter().all(|ms| *ms <= 2000.0)),
    ];
    Ok(Section {
        scenario: "devloop".into(),
        title: "`modhost dev`: rewrite `const VERSION` in `modules/users/wasm/src/lib.rs` → `GET /m/users/version` answers the new value (hot profile rebuild, publish, swap)".into(),
        rows,
        runs: json!({ "loop_ms": loops }),
    })
}
