//! JSON helpers for [`Module::snapshot`](crate::Module::snapshot) and
//! [`Module::restore`](crate::Module::restore): save a `Serialize` state, restore a
//! `Deserialize` one (feature `json`).

use crate::Error;

/// The state as JSON, for [`Module::snapshot`](crate::Module::snapshot):
///
/// ```
/// # #[derive(serde::Serialize, serde::Deserialize, Default)] struct State { hits: u64 }
/// # struct Counter { state: State }
/// # impl guest::Module for Counter {
/// fn snapshot(&mut self) -> Result<Vec<u8>, guest::Error> {
///     guest::snapshot_json(&self.state)
/// }
///
/// fn restore(&mut self, state: &[u8]) -> Result<(), guest::Error> {
///     self.state = guest::restore_json(state)?;
///     Ok(())
/// }
/// # }
/// ```
pub fn snapshot_json<T: serde::Serialize>(state: &T) -> Result<Vec<u8>, Error> {
    serde_json::to_vec(state)
        .map_err(|error| Error::state("snapshot", format!("state as JSON: {error}")))
}

/// The state saved by [`snapshot_json`], for [`Module::restore`](crate::Module::restore).
/// A state that doesn't fit `T` (a field the new version's type lacks a default for, say)
/// is an `Err`, which refuses the swap: the old version keeps serving.
pub fn restore_json<T: serde::de::DeserializeOwned>(state: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(state)
        .map_err(|error| Error::state("restore", format!("state from JSON: {error}")))
}

#[cfg(test)]
mod tests {
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct State {
        hits: u64,
        names: Vec<String>,
    }

    #[test]
    fn json_state_round_trips_and_mismatches_are_named() {
        let state = State {
            hits: 3,
            names: vec!["ada".into()],
        };
        let bytes = super::snapshot_json(&state).unwrap();
        assert_eq!(super::restore_json::<State>(&bytes).unwrap(), state);
        let error = super::restore_json::<State>(b"{\"hits\":\"x\"}").unwrap_err();
        assert_eq!(error.call(), "restore");
        assert!(
            error.to_string().starts_with("restore: state from JSON: "),
            "{error}"
        );
    }
}
