//! Deploys across the cluster: a module's `.wasm` put into the cluster's JetStream object
//! store (bucket `modhost-<cluster>-modules`, one object per module) reaches every node, which
//! installs it into its dist dir and hot-swaps it; a node that joins later installs what is
//! there.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use tokio::io::AsyncReadExt as _;

use crate::error::ClusterError;
use crate::node::Inner;
use crate::stats::bump;

/// Largest module a deploy carries.
pub const MAX_MODULE_BYTES: usize = 64 * 1024 * 1024;

/// The object store bucket of `cluster`'s modules.
pub fn bucket(cluster: &str) -> String {
    format!("modhost-{cluster}-modules")
}

/// What a deploy stored.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Deployed {
    /// The module.
    pub module: String,
    /// Its size in bytes.
    pub size: usize,
    /// The object store's digest of it (`SHA-256=<base64url>`).
    pub digest: Option<String>,
}

async fn open_bucket(
    client: &async_nats::Client,
    cluster: &str,
) -> Result<async_nats::jetstream::object_store::ObjectStore, ClusterError> {
    let jetstream = async_nats::jetstream::new(client.clone());
    let name = bucket(cluster);
    if let Ok(store) = jetstream.get_object_store(&name).await {
        return Ok(store);
    }
    jetstream
        .create_object_store(async_nats::jetstream::object_store::Config {
            bucket: name.clone(),
            description: Some("modhost modules deployed to the cluster".to_owned()),
            ..Default::default()
        })
        .await
        .map_err(|error| {
            ClusterError::Nats(format!(
                "object store {name}: {error} (is JetStream on? nats-server -js)"
            ))
        })
}

/// Puts `wasm` as module `module` into the cluster's object store.
pub(crate) async fn put(
    client: &async_nats::Client,
    cluster: &str,
    module: &str,
    wasm: &[u8],
) -> Result<Deployed, ClusterError> {
    if wasm.len() > MAX_MODULE_BYTES {
        return Err(ClusterError::Config(format!(
            "module \"{module}\" is {} bytes, over the deploy limit of {MAX_MODULE_BYTES}",
            wasm.len()
        )));
    }
    let store = open_bucket(client, cluster).await?;
    let mut reader = wasm;
    let info = store
        .put(module, &mut reader)
        .await
        .map_err(|error| ClusterError::Nats(format!("deploying \"{module}\": {error}")))?;
    Ok(Deployed {
        module: module.to_owned(),
        size: info.size,
        digest: info.digest,
    })
}

/// `modhost deploy`: connects to `url`, puts the module, and disconnects. Fails when NATS is
/// not reachable within a few seconds.
pub async fn deploy(
    url: &str,
    cluster: &str,
    module: &str,
    wasm: &[u8],
) -> Result<Deployed, ClusterError> {
    if !crate::config::valid_token(cluster) {
        return Err(ClusterError::Config(format!(
            "invalid cluster name {cluster:?}: 1-64 letters, digits, '-' or '_'"
        )));
    }
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .connect(url)
        .await
        .map_err(|error| ClusterError::Nats(format!("{url}: {error}")))?;
    let deployed = put(&client, cluster, module, wasm).await;
    let _ = client.flush().await;
    deployed
}

/// Installs every module in the bucket, then every change, for as long as the node runs;
/// starts over (with the bucket's latest state) after NATS comes back.
pub(crate) async fn watch_loop(inner: Arc<Inner>) {
    loop {
        if inner.connected()
            && let Err(error) = watch_once(&inner).await
        {
            tracing::debug!("cluster: deploy watch: {error}");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn watch_once(inner: &Inner) -> Result<(), String> {
    let store = open_bucket(&inner.client, &inner.config.cluster_name)
        .await
        .map_err(|error| error.to_string())?;
    let mut changes = store
        .watch_with_history()
        .await
        .map_err(|error| error.to_string())?;
    while let Some(change) = changes.next().await {
        let info = change.map_err(|error| error.to_string())?;
        if info.deleted {
            continue;
        }
        if info.size > MAX_MODULE_BYTES {
            bump(&inner.counters.dropped);
            tracing::warn!(module = %info.name, size = info.size, "cluster: deployed module over the size limit; not installed");
            continue;
        }
        let mut object = match store.get(&info.name).await {
            Ok(object) => object,
            Err(error) => {
                tracing::warn!(module = %info.name, "cluster: reading the deployed module: {error}");
                continue;
            }
        };
        let mut wasm = Vec::with_capacity(info.size);
        if let Err(error) = (&mut object)
            .take(MAX_MODULE_BYTES as u64 + 1)
            .read_to_end(&mut wasm)
            .await
        {
            tracing::warn!(module = %info.name, "cluster: reading the deployed module: {error}");
            continue;
        }
        match inner.local.install(info.name.clone(), wasm).await {
            Ok(()) => {
                bump(&inner.counters.deploys_installed);
                tracing::info!(module = %info.name, "cluster: deployed module installed");
            }
            Err(error) => {
                bump(&inner.counters.deploys_refused);
                tracing::warn!(module = %info.name, "cluster: deployed module refused: {error}");
            }
        }
    }
    Ok(())
}
