//! An application embedding the modhost server: its own route beside `/m/`, the built-in
//! dist watcher off, reloads driven from code, a clean stop.
//!
//! ```sh
//! cargo run -p server --example embed -- modules/dist
//! curl localhost:6061/app/status          # the application's own route
//! curl localhost:6061/m/bench             # a module, if modules/dist/bench.wasm exists
//! ```

use std::time::Duration;

use server::{ServerBuilder, ServerConfig};

fn main() -> anyhow::Result<()> {
    let dist = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "modules/dist".to_owned());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let mut config = ServerConfig::at(".");
        config.dist_dir = dist.into();
        config.listen = "127.0.0.1:6061".parse()?;
        // The application decides when modules reload (here: every 30 s, and at start).
        config.watch_dist = false;
        config.drain_timeout = Duration::from_secs(2);
        let server = ServerBuilder::new(config)
            .route("/app/", |request| async move {
                let path = request.uri().path().to_owned();
                server::text_response(200, format!("the application answers {path}\n"))
            })
            .start()
            .await?;
        println!(
            "embedded modhost on http://{}: {} module(s)",
            server.addr(),
            server.status().len()
        );
        let mut reload = tokio::time::interval(Duration::from_secs(30));
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = reload.tick() => server.reload_all().await,
            }
        }
        server.shutdown().await;
        Ok(())
    })
}
