//! The key-value capability: which stores a module may reach, and one [`binary::KvRequest`]
//! served against the host's [`state::Store`].

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use binary::{KvErrorKind, KvOp, KvRequest, KvResponse, KvWrite};
use state::{BatchOutcome, CasOutcome, Namespace, Store, StoreError, StoreErrorKind, WriteOp};

use crate::config::KvConfig;

/// The longest store name a module may grant or ask for.
const MAX_STORE_NAME: usize = 64;

/// The namespace of a module's own store.
pub(crate) fn own_namespace(module: &str) -> String {
    format!("module/{module}")
}

/// The namespace of the shared store `name`.
pub(crate) fn shared_namespace(name: &str) -> String {
    format!("shared/{name}")
}

/// Whether `name` may name a shared store: 1 to 64 of `a-z 0-9 - _ .`.
pub fn valid_store_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_STORE_NAME
        && name
            .bytes()
            .all(|byte| matches!(byte, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.'))
}

/// The host's store, which the host can close while modules still hold their access: each
/// call takes a clone for its duration, so closing waits only for calls in flight.
#[derive(Default)]
pub(crate) struct StoreSlot {
    store: RwLock<Option<Arc<dyn Store>>>,
}

impl StoreSlot {
    pub(crate) fn new(store: Option<Arc<dyn Store>>) -> StoreSlot {
        StoreSlot {
            store: RwLock::new(store),
        }
    }

    pub(crate) fn get(&self) -> Option<Arc<dyn Store>> {
        self.store
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Takes the store out and waits (up to `patience`) for the calls in flight to finish, so
    /// the store is dropped — its file closed — when this returns `true`.
    pub(crate) fn close(&self, patience: Duration) -> bool {
        let taken = self
            .store
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let Some(store) = taken else {
            return true;
        };
        // Nobody can take a new clone from the empty slot; wait for the ones in flight.
        let deadline = Instant::now() + patience;
        while Arc::strong_count(&store) > 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        let last = Arc::strong_count(&store) == 1;
        drop(store);
        last
    }
}

/// One module version's view of the store: its own namespace and the shared ones it was
/// granted. Shared by every instance of the version, and cheap to build.
pub(crate) struct KvAccess {
    store: Arc<StoreSlot>,
    module: String,
    own: Namespace,
    shared: BTreeMap<String, Namespace>,
}

impl KvAccess {
    pub(crate) fn new(module: &str, store: Arc<StoreSlot>, config: &KvConfig) -> KvAccess {
        let mut own = Namespace::new(own_namespace(module));
        own.quota = config.quota;
        let shared = config
            .stores
            .iter()
            .filter(|name| valid_store_name(name))
            .map(|name| (name.clone(), Namespace::new(shared_namespace(name))))
            .collect();
        KvAccess {
            store,
            module: module.to_owned(),
            own,
            shared,
        }
    }

    /// The module's own namespace, when the host has a store.
    pub(crate) fn own_usage(&self) -> Option<state::Usage> {
        self.store.get()?.usage(&self.own).ok()
    }

    /// Serves one request. Errors become [`KvResponse::Error`] with a message naming the
    /// module and the store.
    pub(crate) fn serve(&self, request: KvRequest) -> KvResponse {
        let Some(store) = self.store.get() else {
            return self.error(
                KvErrorKind::Unavailable,
                format!(
                    "module \"{}\": this server has no key-value store (or it was closed)",
                    self.module
                ),
            );
        };
        let namespace = if request.store.is_empty() {
            &self.own
        } else {
            match self.shared.get(&request.store) {
                Some(namespace) => namespace,
                None => {
                    return self.error(
                        KvErrorKind::Denied,
                        format!(
                            "module \"{}\" has no grant for store \"{}\" (grant it with `stores = [\"{}\"]` in the module's configuration)",
                            self.module,
                            request.store.escape_debug(),
                            request.store.escape_debug(),
                        ),
                    );
                }
            }
        };
        match run(store.as_ref(), namespace, request.op) {
            Ok(response) => response,
            Err(error) => {
                let kind = error_kind(error.kind());
                self.error(kind, format!("module \"{}\": {error}", self.module))
            }
        }
    }

    fn error(&self, kind: KvErrorKind, message: String) -> KvResponse {
        KvResponse::Error { kind, message }
    }
}

fn run(store: &dyn Store, namespace: &Namespace, op: KvOp) -> Result<KvResponse, StoreError> {
    Ok(match op {
        KvOp::Get { key } => match store.get(namespace, &key)? {
            Some(entry) => KvResponse::Entry {
                value: entry.value,
                revision: entry.revision,
            },
            None => KvResponse::Missing,
        },
        KvOp::Set { key, value } => KvResponse::Revision {
            revision: store.set(namespace, &key, &value)?,
        },
        KvOp::Delete { key } => KvResponse::Bool {
            value: store.delete(namespace, &key)?,
        },
        KvOp::Exists { key } => KvResponse::Bool {
            value: store.exists(namespace, &key)?,
        },
        KvOp::List {
            prefix,
            cursor,
            limit,
        } => {
            let cursor = (!cursor.is_empty()).then_some(cursor.as_slice());
            let page = store.list(namespace, &prefix, cursor, limit)?;
            KvResponse::Keys {
                keys: page.keys,
                cursor: page.cursor.unwrap_or_default(),
            }
        }
        KvOp::Increment { key, delta } => KvResponse::Integer {
            value: store.increment(namespace, &key, delta)?,
        },
        KvOp::CompareAndSwap {
            key,
            expected,
            value,
        } => {
            let expected = (expected != 0).then_some(expected);
            match store.compare_and_swap(namespace, &key, expected, value.as_deref())? {
                CasOutcome::Swapped { revision } => KvResponse::Revision { revision },
                CasOutcome::Conflict { current } => KvResponse::Conflict {
                    index: 0,
                    current: current.unwrap_or(0),
                },
            }
        }
        KvOp::Batch { writes } => {
            let ops: Vec<WriteOp> = writes.into_iter().map(write_op).collect();
            match store.batch(namespace, &ops)? {
                BatchOutcome::Applied => KvResponse::Applied,
                BatchOutcome::Conflict { index, current } => KvResponse::Conflict {
                    index,
                    current: current.unwrap_or(0),
                },
            }
        }
    })
}

fn write_op(write: KvWrite) -> WriteOp {
    match write {
        KvWrite::Set { key, value } => WriteOp::Set { key, value },
        KvWrite::Delete { key } => WriteOp::Delete { key },
        KvWrite::CompareAndSwap {
            key,
            expected,
            value,
        } => WriteOp::CompareAndSwap {
            key,
            expected: (expected != 0).then_some(expected),
            value,
        },
    }
}

/// The wire code for a store error: one mapping, used for every response.
fn error_kind(kind: &StoreErrorKind) -> KvErrorKind {
    match kind {
        StoreErrorKind::KeyEmpty | StoreErrorKind::PageLimit { .. } => KvErrorKind::Invalid,
        StoreErrorKind::KeyTooLong { .. }
        | StoreErrorKind::ValueTooLarge { .. }
        | StoreErrorKind::BatchTooLarge { .. } => KvErrorKind::TooLarge,
        StoreErrorKind::QuotaKeys { .. } | StoreErrorKind::QuotaBytes { .. } => KvErrorKind::Quota,
        StoreErrorKind::CursorInvalid => KvErrorKind::BadCursor,
        StoreErrorKind::NotAnInteger => KvErrorKind::NotAnInteger,
        StoreErrorKind::Overflow => KvErrorKind::Overflow,
        StoreErrorKind::ReadOnly(_) => KvErrorKind::ReadOnly,
        StoreErrorKind::Unavailable(_) => KvErrorKind::Unavailable,
        _ => KvErrorKind::Storage,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn access(stores: &[&str]) -> KvAccess {
        let config = KvConfig {
            stores: stores.iter().map(|name| (*name).to_owned()).collect(),
            ..KvConfig::default()
        };
        let store: Arc<dyn Store> = Arc::new(state::MemoryStore::new(state::Config::default()));
        KvAccess::new("users", Arc::new(StoreSlot::new(Some(store))), &config)
    }

    #[test]
    fn a_module_sees_only_its_own_keys_and_granted_stores() {
        let users = access(&["sessions"]);
        let set = |store: &str| {
            users.serve(KvRequest {
                store: store.into(),
                op: KvOp::Set {
                    key: b"k".to_vec(),
                    value: store.as_bytes().to_vec(),
                },
            })
        };
        assert!(matches!(set(""), KvResponse::Revision { .. }));
        assert!(matches!(set("sessions"), KvResponse::Revision { .. }));
        match set("billing") {
            KvResponse::Error { kind, message } => {
                assert_eq!(kind, KvErrorKind::Denied);
                assert!(
                    message.contains("no grant for store \"billing\""),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
        let get = users.serve(KvRequest::own(KvOp::Get { key: b"k".to_vec() }));
        assert!(matches!(get, KvResponse::Entry { value, .. } if value.is_empty()));
    }

    #[test]
    fn store_errors_carry_their_code_and_the_module() {
        let users = access(&[]);
        let response = users.serve(KvRequest::own(KvOp::Set {
            key: vec![b'k'; 300],
            value: Vec::new(),
        }));
        match response {
            KvResponse::Error { kind, message } => {
                assert_eq!(kind, KvErrorKind::TooLarge);
                assert!(message.starts_with("module \"users\": "), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn no_store_is_a_clear_error() {
        let access = KvAccess::new("users", Arc::default(), &KvConfig::default());
        let response = access.serve(KvRequest::own(KvOp::Exists { key: b"k".to_vec() }));
        assert!(matches!(
            response,
            KvResponse::Error {
                kind: KvErrorKind::Unavailable,
                ..
            }
        ));
    }

    #[test]
    fn closing_the_slot_drops_the_store_and_later_calls_hear_so() {
        let store: Arc<dyn Store> = Arc::new(state::MemoryStore::new(state::Config::default()));
        let weak = Arc::downgrade(&store);
        let slot = Arc::new(StoreSlot::new(Some(store)));
        let access = KvAccess::new("users", slot.clone(), &KvConfig::default());
        assert!(slot.close(Duration::from_secs(1)));
        assert!(weak.upgrade().is_none(), "the store was dropped");
        assert!(matches!(
            access.serve(KvRequest::own(KvOp::Exists { key: b"k".to_vec() })),
            KvResponse::Error {
                kind: KvErrorKind::Unavailable,
                ..
            }
        ));
    }

    #[test]
    fn store_names_are_checked() {
        assert!(valid_store_name("sessions"));
        assert!(valid_store_name("a.b-c_1"));
        assert!(!valid_store_name(""));
        assert!(!valid_store_name("Sessions"));
        assert!(!valid_store_name("a/b"));
        assert!(!valid_store_name(&"x".repeat(65)));
    }
}
