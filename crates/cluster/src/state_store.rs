//! Module state shared by every node of a cluster: [`state::RemoteStore`] over NATS JetStream
//! KV ([`JetStreamKv`]), one bucket per namespace, reached through its own NATS connection.
//!
//! `state` owns the meaning (validation, quotas, revisions, the commit protocol); this file
//! only maps its [`state::RemoteKv`] calls onto JetStream: a namespace's bucket is
//! [`state_bucket`], a record is the last message on `$KV.<bucket>.<key>`, and
//! compare-and-set is a publish with `Nats-Expected-Last-Subject-Sequence` (0 = the key has
//! no message), which NATS 2.9 checks atomically.
//!
//! The store's calls are synchronous (module worker threads make them); each one runs on the
//! tokio runtime given at connect time and the caller waits, at most
//! [`StateStoreConfig::request_timeout`], for its answer. When NATS is not connected a call
//! fails at once with [`state::StoreErrorKind::Unavailable`].

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_nats::jetstream;
use futures_util::StreamExt as _;
use state::{Record, StoreErrorKind};

use crate::error::ClusterError;

/// How often, and how far apart, a node whose bucket creation was refused looks for the
/// bucket another node made in the same moment.
const BUCKET_RACE_CHECKS: usize = 10;
const BUCKET_RACE_PAUSE: Duration = Duration::from_millis(50);

/// The cluster's shared state store.
pub type JetStreamStore = state::RemoteStore<JetStreamKv>;

/// How a node reaches the cluster's shared state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateStoreConfig {
    /// The NATS server, as [`ClusterConfig::url`](crate::ClusterConfig::url).
    pub url: String,
    /// The cluster's name: buckets are `modhost-<cluster>-kv-<namespace>`.
    pub cluster_name: String,
    /// Size limits of keys, values, pages and batches (as the embedded store's).
    pub limits: state::Limits,
    /// Longest wait for one NATS request (default 2 s, well inside a module call's 5 s).
    pub request_timeout: Duration,
    /// How long a write retries while other nodes win its namespace (default 2 s).
    pub retry_for: Duration,
    /// Replicas of each bucket in a clustered NATS (default 1).
    pub replicas: usize,
}

impl StateStoreConfig {
    /// The config for `url` and `cluster_name`, with every other setting at its default.
    pub fn new(url: impl Into<String>, cluster_name: impl Into<String>) -> StateStoreConfig {
        StateStoreConfig {
            url: url.into(),
            cluster_name: cluster_name.into(),
            limits: state::Limits::default(),
            request_timeout: Duration::from_secs(2),
            retry_for: Duration::from_secs(2),
            replicas: 1,
        }
    }
}

/// The JetStream KV bucket holding `namespace` of `cluster`: `modhost-<cluster>-kv-<name>`,
/// where the name keeps ASCII letters, digits and `-` and writes every other byte as `_xx`
/// (lowercase hex), so `module/users` becomes `module_2fusers`. A name whose escaped form
/// exceeds 128 characters is `_h` plus the 64-bit FNV-1a hash of the name instead.
pub fn state_bucket(cluster: &str, namespace: &str) -> String {
    let mut escaped = String::with_capacity(namespace.len());
    for byte in namespace.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' {
            escaped.push(char::from(byte));
        } else {
            escaped.push_str(&format!("_{byte:02x}"));
        }
    }
    if escaped.len() > 128 {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in namespace.bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
        escaped = format!("_h{hash:016x}");
    }
    format!("modhost-{cluster}-kv-{escaped}")
}

/// Connects the shared state store. Returns at once even when NATS is not reachable yet: the
/// client keeps trying in the background and calls fail with
/// [`Unavailable`](state::StoreErrorKind::Unavailable) meanwhile. Must run inside the tokio
/// runtime that will carry the store's requests.
pub async fn connect_state_store(config: StateStoreConfig) -> Result<JetStreamStore, ClusterError> {
    let limits = config.limits;
    let retry_for = config.retry_for;
    let remote = JetStreamKv::connect(config).await?;
    Ok(state::RemoteStore::new(
        remote,
        state::RemoteConfig { limits, retry_for },
    ))
}

impl JetStreamKv {
    /// Connects to NATS for `config` (as [`connect_state_store`], which wraps the result in
    /// the store).
    pub async fn connect(config: StateStoreConfig) -> Result<JetStreamKv, ClusterError> {
        let client = async_nats::ConnectOptions::new()
            .name(format!("modhost {} state", config.cluster_name))
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connection_timeout(Duration::from_secs(2))
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis(100 * u64::try_from(attempts.min(10)).unwrap_or(10))
            })
            .connect(config.url.as_str())
            .await
            .map_err(|error| ClusterError::Nats(format!("{}: {error}", config.url)))?;
        let mut context = jetstream::new(client.clone());
        context.set_timeout(config.request_timeout);
        Ok(JetStreamKv {
            client,
            context,
            runtime: tokio::runtime::Handle::current(),
            buckets: Mutex::new(HashMap::new()),
            config,
        })
    }
}

/// [`state::RemoteKv`] over JetStream KV buckets.
pub struct JetStreamKv {
    client: async_nats::Client,
    context: jetstream::Context,
    runtime: tokio::runtime::Handle,
    /// Buckets opened so far, by namespace.
    buckets: Mutex<HashMap<String, jetstream::kv::Store>>,
    config: StateStoreConfig,
}

impl std::fmt::Debug for JetStreamKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamKv")
            .field("url", &self.config.url)
            .field("cluster", &self.config.cluster_name)
            .finish_non_exhaustive()
    }
}

impl JetStreamKv {
    /// Whether the NATS connection is up now.
    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Runs `future` on the runtime and waits for it, at most the request timeout.
    fn block<T: Send + 'static>(
        &self,
        what: &str,
        future: impl Future<Output = Result<T, StoreErrorKind>> + Send + 'static,
    ) -> Result<T, StoreErrorKind> {
        if !self.is_connected() {
            return Err(StoreErrorKind::Unavailable(format!(
                "not connected to NATS at {}",
                self.config.url
            )));
        }
        let timeout = self.config.request_timeout;
        let (sender, receiver) = std::sync::mpsc::sync_channel(1);
        self.runtime.spawn(async move {
            let _ = sender.send(tokio::time::timeout(timeout, future).await);
        });
        // The task answers within `timeout`; the margin covers a busy runtime.
        let wait = || receiver.recv_timeout(timeout + Duration::from_secs(1));
        let answer = match tokio::runtime::Handle::try_current() {
            // Called on a runtime worker thread (an admin handler): let the runtime move its
            // other tasks elsewhere while this one waits.
            Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(wait)
            }
            // Any other thread (a module worker) just waits. On a current-thread runtime that
            // is the store's own, nothing could answer: the wait ends at the deadline with
            // `Unavailable` rather than hanging (the server runs a multi-thread runtime).
            _ => wait(),
        };
        match answer {
            Ok(Ok(result)) => result,
            Ok(Err(_)) | Err(_) => Err(StoreErrorKind::Unavailable(format!(
                "NATS at {} did not answer {what} within {timeout:?}",
                self.config.url
            ))),
        }
    }

    /// The namespace's bucket, created on first use; when another node creates it in the
    /// same moment, the one it made.
    fn bucket(&self, namespace: &str) -> Result<jetstream::kv::Store, StoreErrorKind> {
        if let Some(bucket) = self
            .buckets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(namespace)
        {
            return Ok(bucket.clone());
        }
        let name = state_bucket(&self.config.cluster_name, namespace);
        let context = self.context.clone();
        let replicas = self.config.replicas;
        let bucket = self.block("opening a state bucket", async move {
            if let Ok(bucket) = context.get_key_value(&name).await {
                return Ok(bucket);
            }
            // The stream a KV bucket is, made directly: async-nats' `create_key_value` first
            // queries the account, whose answer from a 2.9 server it cannot parse.
            let created = context
                .create_stream(jetstream::stream::Config {
                    name: format!("KV_{name}"),
                    description: Some("modhost module state".to_owned()),
                    subjects: vec![format!("$KV.{name}.>")],
                    max_messages_per_subject: 1,
                    storage: jetstream::stream::StorageType::File,
                    num_replicas: replicas,
                    allow_rollup: true,
                    deny_delete: true,
                    allow_direct: true,
                    discard: jetstream::stream::DiscardPolicy::New,
                    ..Default::default()
                })
                .await;
            if let Err(error) = created {
                // Another node creating the same stream in the same moment makes JetStream
                // refuse this one ("subjects overlap with an existing stream", 10065) even
                // though the configurations are equal: if the bucket is there now, use it.
                for _ in 0..BUCKET_RACE_CHECKS {
                    tokio::time::sleep(BUCKET_RACE_PAUSE).await;
                    if let Ok(bucket) = context.get_key_value(&name).await {
                        return Ok(bucket);
                    }
                }
                return Err(StoreErrorKind::Storage(format!(
                    "creating bucket {name}: {error} (is JetStream on? nats-server -js)"
                )));
            }
            context
                .get_key_value(&name)
                .await
                .map_err(|error| StoreErrorKind::Storage(format!("opening bucket {name}: {error}")))
        })?;
        self.buckets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(namespace.to_owned(), bucket.clone());
        Ok(bucket)
    }

    /// Publishes to `key` if its last sequence is `expected`.
    fn publish(
        &self,
        namespace: &str,
        key: &str,
        payload: Vec<u8>,
        delete: bool,
        expected: u64,
    ) -> Result<Option<u64>, StoreErrorKind> {
        // Opening the bucket makes sure its stream exists before the publish.
        self.bucket(namespace)?;
        let subject = format!(
            "$KV.{}.{key}",
            state_bucket(&self.config.cluster_name, namespace)
        );
        let context = self.context.clone();
        self.block("a write", async move {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(
                "Nats-Expected-Last-Subject-Sequence",
                expected.to_string().as_str(),
            );
            if delete {
                headers.insert("KV-Operation", "DEL");
            }
            let acked = match context
                .publish_with_headers(subject, headers, payload.into())
                .await
            {
                Ok(ack) => ack.await,
                Err(error) => Err(error),
            };
            match acked {
                Ok(ack) => Ok(Some(ack.sequence)),
                Err(error) => match error.kind() {
                    jetstream::context::PublishErrorKind::WrongLastSequence => Ok(None),
                    jetstream::context::PublishErrorKind::TimedOut
                    | jetstream::context::PublishErrorKind::BrokenPipe => {
                        Err(StoreErrorKind::Unavailable(format!("NATS: {error}")))
                    }
                    _ => Err(StoreErrorKind::Storage(format!("NATS: {error}"))),
                },
            }
        })
    }
}

impl state::RemoteKv for JetStreamKv {
    fn get(&self, namespace: &str, key: &str) -> Result<Record, StoreErrorKind> {
        let bucket = self.bucket(namespace)?;
        let key = key.to_owned();
        self.block("a read", async move {
            match bucket.entry(key).await {
                Ok(None) => Ok(Record::default()),
                Ok(Some(entry)) => Ok(Record {
                    sequence: entry.revision,
                    value: (entry.operation == jetstream::kv::Operation::Put)
                        .then(|| entry.value.to_vec()),
                }),
                Err(error) => match error.kind() {
                    jetstream::kv::EntryErrorKind::TimedOut => {
                        Err(StoreErrorKind::Unavailable(format!("NATS: {error}")))
                    }
                    _ => Err(StoreErrorKind::Storage(format!("NATS: {error}"))),
                },
            }
        })
    }

    fn put(
        &self,
        namespace: &str,
        key: &str,
        value: &[u8],
        expected: u64,
    ) -> Result<Option<u64>, StoreErrorKind> {
        self.publish(namespace, key, value.to_vec(), false, expected)
    }

    fn delete(
        &self,
        namespace: &str,
        key: &str,
        expected: u64,
    ) -> Result<Option<u64>, StoreErrorKind> {
        self.publish(namespace, key, Vec::new(), true, expected)
    }

    fn keys(&self, namespace: &str, prefix: &str) -> Result<Vec<String>, StoreErrorKind> {
        let bucket = self.bucket(namespace)?;
        let prefix = prefix.to_owned();
        self.block("a key listing", async move {
            let mut keys = bucket
                .keys()
                .await
                .map_err(|error| StoreErrorKind::Storage(format!("NATS: {error}")))?;
            let mut found = Vec::new();
            while let Some(key) = keys.next().await {
                let key = key.map_err(|error| StoreErrorKind::Storage(format!("NATS: {error}")))?;
                if key.starts_with(&prefix) {
                    found.push(key);
                }
            }
            Ok(found)
        })
    }

    fn max_record_bytes(&self) -> usize {
        // Headers and the subject travel in the same message; leave them room.
        let max_payload = self.client.server_info().max_payload;
        let max_payload = if max_payload == 0 {
            1024 * 1024
        } else {
            max_payload
        };
        max_payload.saturating_sub(4096)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_are_injective_subject_tokens() {
        assert_eq!(
            state_bucket("shop", "module/users"),
            "modhost-shop-kv-module_2fusers"
        );
        assert_ne!(state_bucket("c", "a_2f"), state_bucket("c", "a/"));
        let long = state_bucket("c", &"é".repeat(100));
        assert!(
            long.starts_with("modhost-c-kv-_h") && long.len() < 40,
            "{long}"
        );
        for name in ["module/users", "shared/sessions", "x y.z*>"] {
            assert!(
                state_bucket("c", name)
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
            );
        }
    }
}
