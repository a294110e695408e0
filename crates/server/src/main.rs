//! `modhost`: the command line over the `server` library.
//!
//! - `modhost serve`: load every module in the dist dir, hot-reload on changes, serve.
//! - `modhost dev`: build every module first, rebuild on source changes, then as `serve`.
//! - `modhost new NAME [--lang rust|go|c]`: scaffold a module in `modules/NAME/`.
//! - `modhost deploy NAME FILE.wasm --cluster URL [--cluster-name NAME]`: every node of the
//!   cluster installs the module and hot-swaps it.
//!
//! `serve` and `dev` take `--cluster nats://HOST:PORT [--cluster-name NAME] [--node NAME]` to
//! join a cluster of nodes that act as one application.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use server::{ServerBuilder, ServerConfig};

#[derive(Parser)]
#[command(
    name = "modhost",
    version,
    about = "A server for hot-reloadable WebAssembly modules"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the modules in the dist dir, hot-reloading on changes.
    Serve(Options),
    /// Build every module, rebuild on source changes, and serve.
    Dev(Options),
    /// Create a module: modules/NAME/wasm/ that builds, answers GET /m/NAME and has a test.
    New(NewOptions),
    /// Deploy a module to every node of a cluster (through its NATS object store).
    Deploy(DeployOptions),
}

#[derive(Args, Clone)]
struct NewOptions {
    /// The module's name: ASCII letters, digits, `-` and `_` (its URL segment and file name).
    name: String,
    /// The language to write it in.
    #[arg(long, value_enum, default_value = "rust")]
    lang: new::Lang,
    /// Project root; other paths are relative to it.
    #[arg(long, default_value = ".")]
    root: PathBuf,
    /// Module sources: <modules-dir>/<name>/wasm/.
    #[arg(long, default_value = "modules")]
    modules_dir: PathBuf,
}

#[derive(Args, Clone)]
struct DeployOptions {
    /// The module's name (its `/m/NAME`).
    name: String,
    /// The compiled module.
    file: PathBuf,
    /// The cluster's NATS server, e.g. nats://127.0.0.1:4222.
    #[arg(long, value_name = "URL")]
    cluster: String,
    /// The cluster's name [default: modhost].
    #[arg(long, value_name = "NAME", default_value = "modhost")]
    cluster_name: String,
}

#[derive(Args, Clone)]
struct Options {
    /// Project root; other paths are relative to it.
    #[arg(long, default_value = ".")]
    root: PathBuf,
    /// Module sources: <modules-dir>/<name>/wasm/.
    #[arg(long, default_value = "modules")]
    modules_dir: PathBuf,
    /// Compiled modules: <dist-dir>/<name>.wasm.
    #[arg(long, default_value = "modules/dist")]
    dist_dir: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:6060")]
    listen: SocketAddr,
    /// How long a replaced version may drain, e.g. 5s or 500ms.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    drain_timeout: Duration,
    /// A modhost.toml with per-module limits, pool sizes and grants.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Directory of the module state database (modhost.redb) [default: state, or the
    /// config file's `[state] dir`].
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Join a cluster through this NATS server, e.g. nats://127.0.0.1:4222 [default: the
    /// config file's `[cluster] url`, else a single process].
    #[arg(long, value_name = "URL")]
    cluster: Option<String>,
    /// Nodes with the same cluster name form one application [default: modhost].
    #[arg(long, value_name = "NAME")]
    cluster_name: Option<String>,
    /// This node's name in the cluster [default: node-<pid>].
    #[arg(long, value_name = "NAME")]
    node: Option<String>,
    /// The compiler for modules: cranelift (optimised code) or singlepass (compiles several
    /// times faster, runs slower) [default: cranelift for `serve`, singlepass for `dev`].
    #[arg(long, value_name = "NAME", value_parser = parse_compiler)]
    compiler: Option<wasi_host::Compiler>,
}

fn parse_compiler(text: &str) -> Result<wasi_host::Compiler, String> {
    match text {
        "cranelift" => Ok(wasi_host::Compiler::Cranelift),
        "singlepass" => Ok(wasi_host::Compiler::Singlepass),
        _ => Err(format!(
            "unknown compiler {text:?}: use cranelift or singlepass"
        )),
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = match text.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(split) => text.split_at(split),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration {text:?}: use e.g. 5s or 500ms"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => {
            return Err(format!(
                "invalid duration unit {unit:?} in {text:?}: use ms, s or m"
            ));
        }
    };
    Duration::try_from_secs_f64(seconds)
        .map_err(|error| format!("invalid duration {text:?}: {error}"))
}

impl Options {
    /// The configuration: `compiler` (the command's default), then the config file, then
    /// the command line.
    fn server_config(&self, compiler: wasi_host::Compiler) -> anyhow::Result<ServerConfig> {
        let mut config = ServerConfig::at(&self.root);
        config.compiler = compiler;
        config.modules_dir = self.modules_dir.clone();
        config.dist_dir = self.dist_dir.clone();
        config.listen = self.listen;
        config.drain_timeout = self.drain_timeout;
        let file = match &self.config {
            Some(path) => Some(path.clone()),
            None => Some(self.root.join("modhost.toml")).filter(|path| path.exists()),
        };
        if let Some(path) = file {
            config.apply_file(&path)?;
        }
        if let Some(compiler) = self.compiler {
            config.compiler = compiler;
        }
        if let Some(dir) = &self.state_dir {
            config.state.dir = dir.clone();
        }
        if let Some(url) = &self.cluster {
            match &mut config.cluster {
                Some(cluster) => cluster.url = url.clone(),
                None => config.cluster = Some(server::ClusterConfig::new(url.clone())),
            }
        }
        if let Some(cluster) = &mut config.cluster {
            if let Some(name) = &self.cluster_name {
                cluster.cluster_name = name.clone();
            }
            if let Some(node) = &self.node {
                cluster.node_name = node.clone();
            }
        } else if self.cluster_name.is_some() || self.node.is_some() {
            anyhow::bail!("--cluster-name and --node need --cluster URL (or a [cluster] section)");
        }
        Ok(config)
    }
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(
                    "info,wasmer_wasix=warn,wasmer=warn,async_nats=warn",
                )
            }),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting tokio")?;
    runtime.block_on(async move {
        match cli.command {
            Command::New(options) => new_module(&options),
            Command::Serve(options) => {
                serve(options.server_config(wasi_host::Compiler::Cranelift)?, None).await
            }
            Command::Dev(options) => {
                let config = options.server_config(wasi_host::Compiler::Singlepass)?;
                let builder = dev::start(&config)?;
                serve(config, Some(builder)).await
            }
            Command::Deploy(options) => {
                if !server::valid_name(&options.name) {
                    anyhow::bail!("invalid module name {:?}", options.name);
                }
                let wasm = std::fs::read(&options.file)
                    .with_context(|| format!("reading {}", options.file.display()))?;
                let deployed = cluster::deploy(
                    &options.cluster,
                    &options.cluster_name,
                    &options.name,
                    &wasm,
                )
                .await?;
                eprintln!(
                    "deployed {} ({} bytes) to cluster {}",
                    deployed.module, deployed.size, options.cluster_name
                );
                Ok(())
            }
        }
    })
}

/// `modhost new`: scaffolds the module and says where it is.
fn new_module(options: &NewOptions) -> anyhow::Result<()> {
    let dir = new::create(
        &options.root.join(&options.modules_dir),
        &options.name,
        options.lang,
    )?;
    eprintln!(
        "created {}: `modhost dev` builds it and serves it at /m/{}; {} says what to edit",
        dir.display(),
        options.name,
        dir.join("README.md").display()
    );
    Ok(())
}

async fn serve(config: ServerConfig, _dev: Option<dev::Dev>) -> anyhow::Result<()> {
    let server = ServerBuilder::new(config).start().await?;
    eprintln!("modhost listening on http://{}", server.addr());
    eprint!(
        "{}",
        server::startup_summary(server.addr(), &server.status())
    );
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
            _ = hangup.recv() => {
                tracing::info!("SIGHUP: reloading every module");
                server.reload_all().await;
            }
        }
    }
    tracing::info!("shutting down: finishing in-flight requests and draining modules");
    server.shutdown().await;
    Ok(())
}

mod dev;
mod new;
