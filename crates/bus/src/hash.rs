//! The hasher of the topic table: `foldhash`'s fast, randomly seeded hasher.
//!
//! Every publish hashes its topic once, and with std's SipHash that was a tenth of the cost of
//! a publish. foldhash (a folded-multiply hash, already in the dependency tree) is several
//! times cheaper on short keys; its seed is random per table, so colliding topics cannot be
//! prepared in advance. It is not a cryptographic hash.

/// Builds the topic table's hashers.
pub(crate) type TopicHashBuilder = foldhash::fast::RandomState;
