//! The start-up summary `modhost serve` and `modhost dev` print once listening: a table of
//! the modules (route, bus subscriptions, version, load time) and the admin URLs, for a
//! terminal rather than a log.

use std::fmt::Write as _;
use std::net::SocketAddr;

use crate::registry::{CompiledFrom, ModuleStatus};

/// Longest refusal reason shown; the rest is in `/_admin/modules` and the log.
const MAX_REASON: usize = 100;

/// The table for the server at `addr` serving `modules`.
pub fn startup_summary(addr: SocketAddr, modules: &[ModuleStatus]) -> String {
    let base = format!("http://{addr}");
    let mut rows: Vec<[String; 5]> = vec![[
        "MODULE".to_owned(),
        "ROUTE".to_owned(),
        "SUBSCRIPTIONS".to_owned(),
        "VERSION".to_owned(),
        "LOADED".to_owned(),
    ]];
    for module in modules {
        let Some(version) = &module.version else {
            let reason = module
                .last_rejected
                .as_ref()
                .map_or("no version loaded", |rejection| rejection.reason.as_str());
            rows.push([
                module.name.clone(),
                "-".to_owned(),
                "-".to_owned(),
                "refused".to_owned(),
                shorten(reason),
            ]);
            continue;
        };
        let mut route = format!("/m/{}", module.name);
        if let Some(middleware) = &module.middleware {
            let _ = write!(route, " (middleware: {}", middleware.applies_to);
            if !middleware.modules.is_empty() {
                let _ = write!(route, " {}", middleware.modules.join(","));
            }
            route.push(')');
        }
        let subscriptions = if module.subscriptions.is_empty() {
            "-".to_owned()
        } else {
            module.subscriptions.join(", ")
        };
        let mut loaded = module
            .load_ms
            .map_or_else(String::new, |ms| format!("{ms:.1} ms"));
        match module.compiled_from {
            Some(CompiledFrom::Compiled) => loaded.push_str(", compiled"),
            Some(CompiledFrom::DiskCache) => loaded.push_str(", disk cache"),
            Some(CompiledFrom::MemoryCache) => loaded.push_str(", memory cache"),
            None => {}
        }
        rows.push([
            module.name.clone(),
            route,
            subscriptions,
            version.clone(),
            loaded,
        ]);
    }
    let mut widths = [0usize; 5];
    for row in &rows {
        for (width, text) in widths.iter_mut().zip(row) {
            *width = (*width).max(text.chars().count());
        }
    }
    let mut out = String::new();
    if modules.is_empty() {
        out.push_str("  no modules yet: put NAME.wasm files in the dist dir\n");
    } else {
        for row in &rows {
            let mut line = String::from(" ");
            for (text, width) in row.iter().zip(widths) {
                let _ = write!(line, " {text:<width$} ");
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
    }
    let _ = writeln!(out, "  status page  {base}/_admin");
    let _ = writeln!(out, "  metrics      {base}/_admin/metrics");
    let _ = writeln!(
        out,
        "  admin JSON   {base}/_admin/modules  (also /_admin/status, /_admin/ws)"
    );
    let _ = writeln!(out, "  websocket    ws://{addr}/ws?topic=TOPIC");
    out
}

/// The first line of `reason`, at most [`MAX_REASON`] characters.
fn shorten(reason: &str) -> String {
    let line = reason.lines().next().unwrap_or_default();
    if line.chars().count() <= MAX_REASON {
        return line.to_owned();
    }
    let mut short: String = line.chars().take(MAX_REASON - 1).collect();
    short.push('…');
    short
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{MiddlewareStatus, Rejection};

    fn module(name: &str) -> ModuleStatus {
        ModuleStatus {
            name: name.to_owned(),
            version: Some("0123456789abcdef".to_owned()),
            abi: Some(1),
            loaded_at: Some(0),
            load_ms: Some(12.34),
            compiled_from: Some(CompiledFrom::DiskCache),
            instances: 1,
            requests: 0,
            inline_requests: 0,
            errors: 0,
            traps: 0,
            messages: 0,
            message_errors: 0,
            message_batches: 0,
            swaps: 0,
            last_rejected: None,
            last_swap: None,
            subscriptions: Vec::new(),
            middleware: None,
            kv_keys: None,
            kv_bytes: None,
            kv_operations: 0,
            kv_errors: 0,
            outbound: Default::default(),
        }
    }

    #[test]
    fn the_table_lines_up_modules_routes_subscriptions_and_versions() {
        let mut auth = module("auth");
        auth.middleware = Some(MiddlewareStatus {
            applies_to: "only",
            modules: vec!["users".to_owned()],
        });
        let mut receiver = module("receiver");
        receiver.subscriptions = vec!["greetings.*".to_owned(), "x".to_owned()];
        let mut broken = module("broken");
        broken.version = None;
        broken.last_rejected = Some(Rejection {
            version: "ffff".to_owned(),
            reason: format!("module \"broken\": {}\nmore", "x".repeat(200)),
            at: 0,
        });
        let addr: SocketAddr = "127.0.0.1:6060".parse().unwrap();
        let text = startup_summary(addr, &[auth, broken, receiver]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "  MODULE    ROUTE                             SUBSCRIPTIONS   VERSION           LOADED"
        );
        assert_eq!(
            lines[1],
            "  auth      /m/auth (middleware: only users)  -               0123456789abcdef  12.3 ms, disk cache"
        );
        assert!(lines[2].starts_with("  broken    -                                 -               refused           module \"broken\": xxx"), "{}", lines[2]);
        assert!(lines[2].ends_with("x…"), "shortened: {}", lines[2]);
        assert_eq!(
            lines[3],
            "  receiver  /m/receiver                       greetings.*, x  0123456789abcdef  12.3 ms, disk cache"
        );
        assert_eq!(lines[4], "  status page  http://127.0.0.1:6060/_admin");
        assert_eq!(
            lines[5],
            "  metrics      http://127.0.0.1:6060/_admin/metrics"
        );
        assert!(lines[6].starts_with("  admin JSON   http://127.0.0.1:6060/_admin/modules"));
        assert_eq!(
            lines[7],
            "  websocket    ws://127.0.0.1:6060/ws?topic=TOPIC"
        );
        assert_eq!(lines.len(), 8);
    }

    #[test]
    fn no_modules_says_where_they_go() {
        let text = startup_summary("127.0.0.1:1".parse().unwrap(), &[]);
        assert!(text.starts_with("  no modules yet"), "{text}");
        assert!(text.contains("http://127.0.0.1:1/_admin\n"));
    }
}
