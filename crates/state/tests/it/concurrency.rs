//! Many threads on one store: increments and compare-and-swap stay atomic.

use std::sync::Barrier;

use state::{CasOutcome, Namespace};

#[test]
fn concurrent_increments_are_never_lost() {
    for (name, store, _dir) in crate::backends() {
        let ns = Namespace::new("counters");
        let (threads, increments) = (6, 50);
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    for _ in 0..increments {
                        store.increment(&ns, b"hits", 1).unwrap();
                    }
                });
            }
        });
        let total = threads * increments;
        assert_eq!(
            store.get(&ns, b"hits").unwrap().unwrap().value,
            total.to_string().into_bytes(),
            "{name}"
        );
    }
}

#[test]
fn racing_creates_have_exactly_one_winner() {
    for (name, store, _dir) in crate::backends() {
        let ns = Namespace::new("locks");
        for round in 0..20 {
            let key = format!("lock-{round}");
            let barrier = Barrier::new(2);
            let outcomes: Vec<CasOutcome> = std::thread::scope(|scope| {
                let racers: Vec<_> = (0..2u8)
                    .map(|racer| {
                        let (store, ns, key, barrier) = (&store, &ns, &key, &barrier);
                        scope.spawn(move || {
                            barrier.wait();
                            store
                                .compare_and_swap(ns, key.as_bytes(), None, Some(&[racer]))
                                .unwrap()
                        })
                    })
                    .collect();
                racers
                    .into_iter()
                    .map(|racer| racer.join().unwrap())
                    .collect()
            });
            let winners: Vec<u64> = outcomes
                .iter()
                .filter_map(|outcome| match outcome {
                    CasOutcome::Swapped { revision } => Some(*revision),
                    CasOutcome::Conflict { .. } => None,
                })
                .collect();
            assert_eq!(winners.len(), 1, "{name}: {outcomes:?}");
            // The loser saw the winner's revision.
            assert!(outcomes.contains(&CasOutcome::Conflict {
                current: Some(winners[0])
            }));
        }
    }
}
