//! The in-memory key-value store behind [`crate::kv`] in `cargo test`: one per test thread,
//! with the host's default limits, so a module's storage logic is tested without a server.

use std::cell::RefCell;
use std::collections::BTreeMap;

use binary::{Envelope, KvErrorKind, KvOp, KvRequest, KvResponse, KvWrite};

/// The host's default limits (`state::Limits`).
const MAX_KEY: usize = 256;
const MAX_VALUE: usize = 1024 * 1024;
const MAX_PAGE: u32 = 1000;
const MAX_BATCH: usize = 1000;

#[derive(Default)]
struct Memory {
    /// `(store, key)` to `(value, revision)`.
    entries: BTreeMap<(String, Vec<u8>), (Vec<u8>, u64)>,
    /// Stores other than the module's own that tests have granted.
    granted: Vec<String>,
    revision: u64,
}

thread_local! {
    static MEMORY: RefCell<Memory> = RefCell::new(Memory::default());
}

/// Forgets every key and grant on this thread.
pub(crate) fn reset() {
    MEMORY.with(|memory| *memory.borrow_mut() = Memory::default());
}

/// Lets this thread's module open the shared store `name`, as a `stores = [..]` grant would.
pub(crate) fn grant(name: &str) {
    MEMORY.with(|memory| memory.borrow_mut().granted.push(name.to_owned()));
}

/// The stand-in for the `kv` import: decodes the request, answers with an encoded response.
pub(crate) fn serve(request: &[u8]) -> Result<Vec<u8>, i32> {
    let request = KvRequest::decode(request).map_err(|_| -1)?;
    let response = MEMORY.with(|memory| memory.borrow_mut().serve(request));
    Ok(response.encode())
}

fn error(kind: KvErrorKind, message: impl Into<String>) -> KvResponse {
    KvResponse::Error {
        kind,
        message: message.into(),
    }
}

fn check_key(key: &[u8]) -> Result<(), KvResponse> {
    if key.is_empty() {
        return Err(error(KvErrorKind::Invalid, "the key is empty"));
    }
    if key.len() > MAX_KEY {
        return Err(error(
            KvErrorKind::TooLarge,
            format!(
                "key of {} bytes exceeds the limit of {MAX_KEY} bytes",
                key.len()
            ),
        ));
    }
    Ok(())
}

fn check_value(value: &[u8]) -> Result<(), KvResponse> {
    if value.len() > MAX_VALUE {
        return Err(error(
            KvErrorKind::TooLarge,
            format!(
                "value of {} bytes exceeds the limit of {MAX_VALUE} bytes",
                value.len()
            ),
        ));
    }
    Ok(())
}

impl Memory {
    fn serve(&mut self, request: KvRequest) -> KvResponse {
        if !request.store.is_empty() && !self.granted.contains(&request.store) {
            return error(
                KvErrorKind::Denied,
                format!("no grant for store \"{}\"", request.store),
            );
        }
        match self.run(&request.store, request.op) {
            Ok(response) | Err(response) => response,
        }
    }

    fn current(&self, store: &str, key: &[u8]) -> u64 {
        self.entries
            .get(&(store.to_owned(), key.to_vec()))
            .map_or(0, |(_, revision)| *revision)
    }

    fn write(&mut self, store: &str, key: Vec<u8>, value: Option<Vec<u8>>) -> u64 {
        match value {
            Some(value) => {
                self.revision += 1;
                self.entries
                    .insert((store.to_owned(), key), (value, self.revision));
                self.revision
            }
            None => {
                self.entries.remove(&(store.to_owned(), key));
                0
            }
        }
    }

    fn run(&mut self, store: &str, op: KvOp) -> Result<KvResponse, KvResponse> {
        Ok(match op {
            KvOp::Get { key } => {
                check_key(&key)?;
                match self.entries.get(&(store.to_owned(), key)) {
                    Some((value, revision)) => KvResponse::Entry {
                        value: value.clone(),
                        revision: *revision,
                    },
                    None => KvResponse::Missing,
                }
            }
            KvOp::Set { key, value } => {
                check_key(&key)?;
                check_value(&value)?;
                KvResponse::Revision {
                    revision: self.write(store, key, Some(value)),
                }
            }
            KvOp::Delete { key } => {
                check_key(&key)?;
                let existed = self.current(store, &key) != 0;
                self.write(store, key, None);
                KvResponse::Bool { value: existed }
            }
            KvOp::Exists { key } => {
                check_key(&key)?;
                KvResponse::Bool {
                    value: self.current(store, &key) != 0,
                }
            }
            KvOp::List {
                prefix,
                cursor,
                limit,
            } => {
                if limit == 0 || limit > MAX_PAGE {
                    return Err(error(
                        KvErrorKind::Invalid,
                        format!("a page of {limit} keys: ask for 1 to {MAX_PAGE}"),
                    ));
                }
                if !cursor.is_empty() && !cursor.starts_with(&prefix) {
                    return Err(error(
                        KvErrorKind::BadCursor,
                        "the cursor is not for this prefix",
                    ));
                }
                let mut keys: Vec<Vec<u8>> = self
                    .entries
                    .keys()
                    .filter(|(entry_store, key)| {
                        entry_store == store
                            && key.starts_with(&prefix)
                            && (cursor.is_empty() || key.as_slice() > cursor.as_slice())
                    })
                    .map(|(_, key)| key.clone())
                    .take(limit as usize + 1)
                    .collect();
                let more = keys.len() > limit as usize;
                keys.truncate(limit as usize);
                let cursor = if more {
                    keys.last().cloned().unwrap_or_default()
                } else {
                    Vec::new()
                };
                KvResponse::Keys { keys, cursor }
            }
            KvOp::Increment { key, delta } => {
                check_key(&key)?;
                let now = match self.entries.get(&(store.to_owned(), key.clone())) {
                    None => 0,
                    Some((value, _)) => std::str::from_utf8(value)
                        .ok()
                        .and_then(|text| text.parse::<i64>().ok())
                        .ok_or_else(|| {
                            error(KvErrorKind::NotAnInteger, "the value is not an integer")
                        })?,
                };
                let value = now
                    .checked_add(delta)
                    .ok_or_else(|| error(KvErrorKind::Overflow, "the sum overflows an i64"))?;
                self.write(store, key, Some(value.to_string().into_bytes()));
                KvResponse::Integer { value }
            }
            KvOp::CompareAndSwap {
                key,
                expected,
                value,
            } => {
                check_key(&key)?;
                if let Some(value) = &value {
                    check_value(value)?;
                }
                let current = self.current(store, &key);
                if current != expected {
                    KvResponse::Conflict { index: 0, current }
                } else {
                    KvResponse::Revision {
                        revision: self.write(store, key, value),
                    }
                }
            }
            KvOp::Batch { writes } => {
                if writes.len() > MAX_BATCH {
                    return Err(error(KvErrorKind::TooLarge, "too many writes in one batch"));
                }
                // Applied in order on a copy (a compare-and-swap sees the batch's earlier
                // writes), kept only if every write succeeds.
                let before = (self.entries.clone(), self.revision);
                for (index, write) in writes.into_iter().enumerate() {
                    let (key, value) = match write {
                        KvWrite::Set { key, value } => (key, Some(value)),
                        KvWrite::Delete { key } => (key, None),
                        KvWrite::CompareAndSwap {
                            key,
                            expected,
                            value,
                        } => {
                            let current = self.current(store, &key);
                            if current != expected {
                                (self.entries, self.revision) = before;
                                return Ok(KvResponse::Conflict {
                                    index: index as u32,
                                    current,
                                });
                            }
                            (key, value)
                        }
                    };
                    let checked =
                        check_key(&key).and_then(|()| value.as_deref().map_or(Ok(()), check_value));
                    if let Err(response) = checked {
                        (self.entries, self.revision) = before;
                        return Err(response);
                    }
                    self.write(store, key, value);
                }
                KvResponse::Applied
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::kv;

    #[test]
    fn the_sdk_round_trips_through_the_memory_store() {
        super::reset();
        assert_eq!(kv::get("missing").unwrap(), None);
        let first = kv::set("a", "1").unwrap();
        let second = kv::set("a", "two").unwrap();
        assert!(second > first);
        assert_eq!(kv::increment("n", 5).unwrap(), 5);
        assert_eq!(kv::increment("n", -7).unwrap(), -2);
        assert_eq!(kv::get("n").unwrap().as_deref(), Some(&b"-2"[..]));
        let error = kv::increment("a", 1).unwrap_err();
        assert!(error.to_string().contains("not_an_integer"), "{error}");
        assert!(kv::delete("a").unwrap());
        assert!(!kv::exists("a").unwrap());
    }

    #[test]
    fn lists_page_with_a_cursor() {
        super::reset();
        for index in 0..5 {
            kv::set(&format!("k/{index}"), "x").unwrap();
        }
        kv::set("other", "x").unwrap();
        let first = kv::list("k/", None, 2).unwrap();
        assert_eq!(first.keys, ["k/0", "k/1"]);
        let second = kv::list("k/", first.cursor.as_deref(), 10).unwrap();
        assert_eq!(second.keys, ["k/2", "k/3", "k/4"]);
        assert_eq!(second.cursor, None);
        assert_eq!(kv::keys("k/").unwrap().len(), 5);
        let forged = kv::list("k/", Some(b"zzz"), 2).unwrap_err();
        assert!(matches!(
            forged.kind(),
            crate::ErrorKind::Kv {
                kind: binary::KvErrorKind::BadCursor,
                ..
            }
        ));
    }

    #[test]
    fn a_failed_batch_writes_nothing() {
        super::reset();
        kv::set("taken", "x").unwrap();
        let outcome = kv::Batch::new()
            .set("new", "1")
            .create("taken", "y")
            .commit()
            .unwrap();
        assert!(matches!(
            outcome,
            kv::BatchOutcome::Conflict {
                index: 1,
                current: Some(_)
            }
        ));
        assert!(!kv::exists("new").unwrap());
    }

    #[test]
    fn shared_stores_need_a_grant() {
        super::reset();
        let sessions = kv::Store::shared("sessions");
        let denied = sessions.set("s", "1").unwrap_err();
        assert!(denied.to_string().contains("denied"), "{denied}");
        super::grant("sessions");
        sessions.set("s", "1").unwrap();
        assert_eq!(kv::get("s").unwrap(), None, "stores are separate");
    }

    #[test]
    fn limits_match_the_host() {
        super::reset();
        let long = "k".repeat(257);
        assert!(kv::set(&long, "x").is_err());
        assert!(kv::set("", "x").is_err());
        assert!(kv::set("big", vec![0u8; 1024 * 1024 + 1]).is_err());
        assert!(kv::list("", None, 1001).is_err());
    }
}
