//! The behaviour every `Store` must have, as functions over `&dyn Store`, run against each
//! backend.

use state::{
    BatchOutcome, CasOutcome, Entry, Namespace, Quota, Store, StoreErrorKind, Usage, WriteOp,
};

/// Runs `check` against every backend, naming the backend on failure.
fn for_each_backend(check: fn(&dyn Store)) {
    for (name, store, _dir) in crate::backends() {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&*store)));
        if let Err(panic) = outcome {
            eprintln!("backend {name} failed");
            std::panic::resume_unwind(panic);
        }
    }
}

fn kind(result: Result<impl std::fmt::Debug, state::StoreError>) -> StoreErrorKind {
    result.expect_err("the call must fail").kind().clone()
}

#[test]
fn set_get_delete_exists() {
    for_each_backend(|store| {
        let users = Namespace::new("users");
        assert_eq!(store.get(&users, b"alice").unwrap(), None);
        assert!(!store.exists(&users, b"alice").unwrap());
        let first = store.set(&users, b"alice", b"admin").unwrap();
        assert_eq!(
            store.get(&users, b"alice").unwrap(),
            Some(Entry {
                value: b"admin".to_vec(),
                revision: first
            })
        );
        assert!(store.exists(&users, b"alice").unwrap());
        let second = store.set(&users, b"alice", b"").unwrap();
        assert!(second > first);
        assert_eq!(store.get(&users, b"alice").unwrap().unwrap().value, b"");
        assert!(store.delete(&users, b"alice").unwrap());
        assert!(!store.delete(&users, b"alice").unwrap());
        assert_eq!(store.get(&users, b"alice").unwrap(), None);
        // Revisions are never reused, even after a delete.
        let third = store.set(&users, b"alice", b"back").unwrap();
        assert!(third > second);
    });
}

#[test]
fn keys_may_be_any_bytes() {
    for_each_backend(|store| {
        let ns = Namespace::new("bytes");
        let keys: [&[u8]; 4] = [b"\x00", b"\xff\xff", b"\xff\x00", &[0x80; 256]];
        for key in keys {
            store.set(&ns, key, key).unwrap();
        }
        for key in keys {
            assert_eq!(store.get(&ns, key).unwrap().unwrap().value, key);
        }
        let page = store.list(&ns, b"\xff", None, 10).unwrap();
        assert_eq!(page.keys, vec![b"\xff\x00".to_vec(), b"\xff\xff".to_vec()]);
        assert_eq!(page.cursor, None);
        assert_eq!(store.list(&ns, b"", None, 10).unwrap().keys.len(), 4);
    });
}

#[test]
fn namespaces_are_independent() {
    for_each_backend(|store| {
        // "a" + "bc" and "ab" + "c" must stay two keys of two namespaces.
        let a = Namespace::new("a");
        let ab = Namespace::new("ab");
        store.set(&a, b"bc", b"1").unwrap();
        store.set(&ab, b"c", b"22").unwrap();
        store.set(&ab, b"bc", b"333").unwrap();
        assert_eq!(store.get(&a, b"bc").unwrap().unwrap().value, b"1");
        assert_eq!(store.get(&ab, b"bc").unwrap().unwrap().value, b"333");
        assert_eq!(store.get(&a, b"c").unwrap(), None);
        assert_eq!(
            store.list(&a, b"", None, 100).unwrap().keys,
            vec![b"bc".to_vec()]
        );
        assert_eq!(
            store.list(&ab, b"", None, 100).unwrap().keys,
            vec![b"bc".to_vec(), b"c".to_vec()]
        );
        assert_eq!(store.usage(&a).unwrap(), Usage { keys: 1, bytes: 3 });
        assert_eq!(store.usage(&ab).unwrap(), Usage { keys: 2, bytes: 8 });
        assert!(store.delete(&a, b"bc").unwrap());
        assert!(store.exists(&ab, b"bc").unwrap());
        assert_eq!(store.usage(&a).unwrap(), Usage::default());
    });
}

#[test]
fn list_pages_through_a_prefix_in_byte_order() {
    for_each_backend(|store| {
        let ns = Namespace::new("pages");
        for index in (0..25).rev() {
            store
                .set(&ns, format!("user:{index:02}").as_bytes(), b"x")
                .unwrap();
        }
        store.set(&ns, b"other", b"x").unwrap();
        store.set(&ns, b"user;", b"x").unwrap();
        let mut seen = Vec::new();
        let mut cursor = None;
        let mut pages = 0;
        loop {
            let page = store.list(&ns, b"user:", cursor.as_deref(), 10).unwrap();
            assert!(page.keys.len() <= 10);
            seen.extend(page.keys);
            pages += 1;
            match page.cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        let expected: Vec<Vec<u8>> = (0..25)
            .map(|index| format!("user:{index:02}").into_bytes())
            .collect();
        assert_eq!(seen, expected);
        assert_eq!(pages, 3);
        // An exact fit says no more follow.
        let all = store.list(&ns, b"user:", None, 25).unwrap();
        assert_eq!((all.keys.len(), all.cursor), (25, None));
    });
}

#[test]
fn a_stale_cursor_continues_after_its_deleted_key() {
    for_each_backend(|store| {
        let ns = Namespace::new("stale");
        for key in [b"k1", b"k2", b"k3", b"k4"] {
            store.set(&ns, key, b"v").unwrap();
        }
        let first = store.list(&ns, b"k", None, 2).unwrap();
        assert_eq!(first.keys, vec![b"k1".to_vec(), b"k2".to_vec()]);
        assert!(store.delete(&ns, b"k2").unwrap());
        let rest = store.list(&ns, b"k", first.cursor.as_deref(), 2).unwrap();
        assert_eq!(rest.keys, vec![b"k3".to_vec(), b"k4".to_vec()]);
    });
}

#[test]
fn a_cursor_of_another_list_is_invalid() {
    for_each_backend(|store| {
        let ns = Namespace::new("cursors");
        let other = Namespace::new("other");
        for key in [b"a1", b"a2", b"b1"] {
            store.set(&ns, key, b"v").unwrap();
            store.set(&other, key, b"v").unwrap();
        }
        let cursor = store.list(&ns, b"a", None, 1).unwrap().cursor.unwrap();
        assert!(store.list(&ns, b"a", Some(&cursor), 1).is_ok());
        for (namespace, prefix, cursor) in [
            (&other, &b"a"[..], &cursor[..]),
            (&ns, b"b", &cursor),
            (&ns, b"a", b"a1"),
            (&ns, b"a", b""),
        ] {
            let error = store.list(namespace, prefix, Some(cursor), 1).unwrap_err();
            assert_eq!(error.kind(), &StoreErrorKind::CursorInvalid);
        }
    });
}

#[test]
fn increment_counts_in_decimal_text() {
    for_each_backend(|store| {
        let ns = Namespace::new("counters");
        assert_eq!(store.increment(&ns, b"hits", 40).unwrap(), 40);
        assert_eq!(store.increment(&ns, b"hits", 2).unwrap(), 42);
        assert_eq!(store.get(&ns, b"hits").unwrap().unwrap().value, b"42");
        assert_eq!(store.increment(&ns, b"hits", -50).unwrap(), -8);
        assert_eq!(store.get(&ns, b"hits").unwrap().unwrap().value, b"-8");
        store.set(&ns, b"text", b"forty-two").unwrap();
        assert_eq!(
            kind(store.increment(&ns, b"text", 1)),
            StoreErrorKind::NotAnInteger
        );
        assert_eq!(
            store.get(&ns, b"text").unwrap().unwrap().value,
            b"forty-two"
        );
        store
            .set(&ns, b"max", i64::MAX.to_string().as_bytes())
            .unwrap();
        assert_eq!(
            kind(store.increment(&ns, b"max", 1)),
            StoreErrorKind::Overflow
        );
        assert_eq!(store.increment(&ns, b"max", 0).unwrap(), i64::MAX);
        assert_eq!(store.increment(&ns, b"min", i64::MIN).unwrap(), i64::MIN);
        assert_eq!(
            store
                .increment(&ns, b"min", -1)
                .map_err(|e| e.kind().clone()),
            Err(StoreErrorKind::Overflow)
        );
    });
}

#[test]
fn compare_and_swap_compares_revisions() {
    for_each_backend(|store| {
        let ns = Namespace::new("cas");
        // Create only if absent.
        let created = store
            .compare_and_swap(&ns, b"lock", None, Some(b"me"))
            .unwrap();
        let CasOutcome::Swapped { revision } = created else {
            panic!("create failed: {created:?}");
        };
        assert_eq!(
            store
                .compare_and_swap(&ns, b"lock", None, Some(b"you"))
                .unwrap(),
            CasOutcome::Conflict {
                current: Some(revision)
            }
        );
        assert_eq!(
            store
                .compare_and_swap(&ns, b"lock", Some(revision + 1000), None)
                .unwrap(),
            CasOutcome::Conflict {
                current: Some(revision)
            }
        );
        let swapped = store
            .compare_and_swap(&ns, b"lock", Some(revision), Some(b"me again"))
            .unwrap();
        let CasOutcome::Swapped { revision: next } = swapped else {
            panic!("swap failed: {swapped:?}");
        };
        assert!(next > revision);
        assert_eq!(store.get(&ns, b"lock").unwrap().unwrap().revision, next);
        // Delete by revision: revision 0.
        assert_eq!(
            store
                .compare_and_swap(&ns, b"lock", Some(next), None)
                .unwrap(),
            CasOutcome::Swapped { revision: 0 }
        );
        assert!(!store.exists(&ns, b"lock").unwrap());
        assert_eq!(
            store
                .compare_and_swap(&ns, b"lock", Some(next), None)
                .unwrap(),
            CasOutcome::Conflict { current: None }
        );
        assert_eq!(store.usage(&ns).unwrap(), Usage::default());
    });
}

#[test]
fn batch_is_all_or_nothing() {
    for_each_backend(|store| {
        let ns = Namespace::new("batch");
        let old = store.set(&ns, b"old", b"1").unwrap();
        let applied = store
            .batch(
                &ns,
                &[
                    WriteOp::Set {
                        key: b"a".to_vec(),
                        value: b"1".to_vec(),
                    },
                    WriteOp::Delete {
                        key: b"old".to_vec(),
                    },
                    // Sees the delete just before it.
                    WriteOp::CompareAndSwap {
                        key: b"old".to_vec(),
                        expected: None,
                        value: Some(b"2".to_vec()),
                    },
                ],
            )
            .unwrap();
        assert_eq!(applied, BatchOutcome::Applied);
        let new_old = store.get(&ns, b"old").unwrap().unwrap();
        assert_eq!(new_old.value, b"2");
        assert!(new_old.revision > old);
        assert_eq!(store.usage(&ns).unwrap(), Usage { keys: 2, bytes: 6 });

        let conflict = store
            .batch(
                &ns,
                &[
                    WriteOp::Set {
                        key: b"b".to_vec(),
                        value: b"1".to_vec(),
                    },
                    WriteOp::Delete { key: b"a".to_vec() },
                    WriteOp::CompareAndSwap {
                        key: b"old".to_vec(),
                        expected: Some(old),
                        value: None,
                    },
                ],
            )
            .unwrap();
        assert_eq!(
            conflict,
            BatchOutcome::Conflict {
                index: 2,
                current: Some(new_old.revision)
            }
        );
        assert!(!store.exists(&ns, b"b").unwrap());
        assert!(store.exists(&ns, b"a").unwrap());
        assert_eq!(store.usage(&ns).unwrap(), Usage { keys: 2, bytes: 6 });
        assert_eq!(store.batch(&ns, &[]).unwrap(), BatchOutcome::Applied);
    });
}

#[test]
fn quotas_count_keys_and_bytes() {
    for_each_backend(|store| {
        let mut ns = Namespace::new("quota");
        ns.quota = Quota {
            max_keys: 2,
            max_bytes: 20,
        };
        store.set(&ns, b"k1", b"12345678").unwrap(); // 10 bytes
        assert_eq!(store.usage(&ns).unwrap(), Usage { keys: 1, bytes: 10 });
        store.set(&ns, b"k1", b"1234").unwrap(); // overwrite: 6 bytes
        assert_eq!(store.usage(&ns).unwrap(), Usage { keys: 1, bytes: 6 });
        store.set(&ns, b"k2", b"12345678").unwrap(); // 16 bytes
        assert_eq!(
            kind(store.set(&ns, b"k3", b"")),
            StoreErrorKind::QuotaKeys { max: 2 }
        );
        assert_eq!(
            kind(store.set(&ns, b"k2", b"1234567890123")),
            StoreErrorKind::QuotaBytes { max: 20 }
        );
        assert_eq!(
            kind(store.increment(&ns, b"k3", 1)),
            StoreErrorKind::QuotaKeys { max: 2 }
        );
        assert_eq!(
            kind(store.compare_and_swap(&ns, b"k3", None, Some(b""))),
            StoreErrorKind::QuotaKeys { max: 2 }
        );
        // Nothing of the refused writes landed.
        assert_eq!(store.usage(&ns).unwrap(), Usage { keys: 2, bytes: 16 });
        assert_eq!(store.get(&ns, b"k2").unwrap().unwrap().value, b"12345678");
        assert!(!store.exists(&ns, b"k3").unwrap());
        // A batch is judged by its net effect: delete one, add another.
        let swap = [
            WriteOp::Delete {
                key: b"k1".to_vec(),
            },
            WriteOp::Set {
                key: b"k3".to_vec(),
                value: b"1".to_vec(),
            },
        ];
        assert_eq!(store.batch(&ns, &swap).unwrap(), BatchOutcome::Applied);
        assert_eq!(store.usage(&ns).unwrap(), Usage { keys: 2, bytes: 13 });
        let grow = [WriteOp::Set {
            key: b"k4".to_vec(),
            value: Vec::new(),
        }];
        assert_eq!(
            kind(store.batch(&ns, &grow)),
            StoreErrorKind::QuotaKeys { max: 2 }
        );
        // Above a lowered quota, shrinking is still allowed; growing is not.
        ns.quota.max_bytes = 5;
        assert_eq!(
            kind(store.set(&ns, b"k3", b"12")),
            StoreErrorKind::QuotaBytes { max: 5 }
        );
        store.set(&ns, b"k2", b"1").unwrap();
        assert!(store.delete(&ns, b"k3").unwrap());
        assert_eq!(store.usage(&ns).unwrap(), Usage { keys: 1, bytes: 3 });
    });
}

#[test]
fn every_limit_has_its_error_and_message() {
    for_each_backend(|store| {
        let users = Namespace::new("users");
        let message = |result: Result<u64, state::StoreError>| {
            let error = result.unwrap_err();
            assert_eq!(error.namespace(), "users");
            error.to_string()
        };
        assert_eq!(
            message(store.set(&users, &[b'k'; 300], b"v")),
            r#"store "users": key of 300 bytes exceeds the limit of 256 bytes"#
        );
        assert_eq!(
            message(store.set(&users, b"", b"v")),
            r#"store "users": key is empty"#
        );
        assert_eq!(
            message(store.set(&users, b"k", &vec![0; (1 << 20) + 1])),
            r#"store "users": value of 1048577 bytes exceeds the limit of 1048576 bytes"#
        );
        assert!(store.set(&users, &[b'k'; 256], &vec![0; 1 << 20]).is_ok());
        assert_eq!(
            store.list(&users, b"", None, 0).unwrap_err().to_string(),
            r#"store "users": list limit of 0 keys is outside 1..=1000"#
        );
        assert_eq!(
            kind(store.list(&users, b"", None, 1001)),
            StoreErrorKind::PageLimit {
                requested: 1001,
                max: 1000
            }
        );
        let ops = vec![WriteOp::Delete { key: b"k".to_vec() }; 1001];
        assert_eq!(
            store.batch(&users, &ops).unwrap_err().to_string(),
            r#"store "users": batch of 1001 operations exceeds the limit of 1000"#
        );
        let bad_key = [WriteOp::Delete { key: Vec::new() }];
        assert_eq!(
            kind(store.batch(&users, &bad_key)),
            StoreErrorKind::KeyEmpty
        );
        for (error, text) in [
            (
                StoreErrorKind::QuotaKeys { max: 2 },
                "write would exceed the namespace's quota of 2 keys",
            ),
            (
                StoreErrorKind::QuotaBytes { max: 9 },
                "write would exceed the namespace's quota of 9 bytes",
            ),
            (
                StoreErrorKind::CursorInvalid,
                "list cursor does not belong to this namespace and prefix",
            ),
            (
                StoreErrorKind::NotAnInteger,
                "value is not a decimal 64-bit integer",
            ),
            (
                StoreErrorKind::Overflow,
                "increment overflows a 64-bit integer",
            ),
        ] {
            assert_eq!(error.to_string(), text);
        }
        let long = Namespace::new("n".repeat(256));
        assert_eq!(
            kind(store.get(&long, b"k")),
            StoreErrorKind::NamespaceTooLong { len: 256, max: 255 }
        );
        assert_eq!(
            kind(store.usage(&long)),
            StoreErrorKind::NamespaceTooLong { len: 256, max: 255 }
        );
        assert!(
            store
                .set(&Namespace::new("n".repeat(255)), b"k", b"v")
                .is_ok()
        );
    });
}

#[test]
fn stats_count_calls_errors_and_commits() {
    for_each_backend(|store| {
        let ns = Namespace::new("stats");
        store.set(&ns, b"k", b"1").unwrap();
        store.get(&ns, b"k").unwrap();
        store.increment(&ns, b"k", 1).unwrap();
        store.exists(&ns, b"k").unwrap();
        store.list(&ns, b"", None, 10).unwrap();
        let _ = store.compare_and_swap(&ns, b"k", None, Some(b"x")).unwrap();
        store
            .batch(&ns, &[WriteOp::Delete { key: b"k".to_vec() }])
            .unwrap();
        assert!(!store.delete(&ns, b"k").unwrap());
        let _ = store.get(&ns, b"").unwrap_err();
        let stats = store.stats();
        assert_eq!(
            (stats.get, stats.set, stats.delete, stats.exists),
            (2, 1, 1, 1)
        );
        assert_eq!(
            (stats.list, stats.increment, stats.cas, stats.batch),
            (1, 1, 1, 1)
        );
        assert_eq!(stats.errors, 1);
        // set, increment, batch wrote; the conflicting CAS and the no-op delete did not.
        assert_eq!(stats.commits, 3);
        assert_eq!(stats.commit_latency.count, 3);
        assert_eq!(
            stats.commit_latency.buckets.len(),
            state::COMMIT_LATENCY_BUCKETS.len()
        );
    });
}
