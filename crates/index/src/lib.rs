//! The encrypted IVF index engine of vecseal.
//!
//! [`Database`] keeps a catalog of named indexes in a [`Store`]; an
//! [`Index`] is one encrypted index: items (id, vector, contents, metadata),
//! search vectors sealed in blocks per inverted list, and after
//! [`Index::train`] the k-means centroids that route queries and upserts.
//!
//! What the store sees (see docs/SECURITY.md): index names in the catalog,
//! the keyring (wrapped keys and RBAC user ids), and otherwise only blinded
//! keys and sealed values.
//!
//! # Record layout
//!
//! | namespace | key | value |
//! |---|---|---|
//! | `catalog` | `index/` + name | index id, tag, keyring |
//! | `meta` | index id ‖ blind("state") | sealed index state (dimension, metric, generation, number of lists and blocks, the blocks' digest, metadata schema) |
//! | `meta` | index id ‖ blind("centroids", generation) | sealed centroids |
//! | `items` | index id ‖ blind(item id) | sealed item (vector, contents, metadata) |
//! | `meta` | index id ‖ `rotation` | empty: a data-key rotation is in progress (records of two data keys may coexist) |
//! | `blocks` | index id ‖ blind(block number) | sealed block of up to ~128 KiB of search vectors of one list (float32, or at a compressed [`Precision`] a per-dimension range and codes), with its list, generation and number |
//!
//! Every sealed value's associated data is its kind and its full storage key,
//! which begins with the index id: a value moved to another item, kind or
//! index fails to open.
//!
//! The catalog entry's tag is a MAC, under a key derived from the data key,
//! of the name, the id and the keyring; the state records the tag of the
//! current entry. Swapping two indexes' entries, replacing a wrap or
//! restoring an older keyring is [`Error::CatalogTampered`].
//!
//! Blocks are copy-on-write: a change to a block writes it under a fresh
//! block number and deletes the old one in the same atomic batch, so deleted
//! or overwritten vectors never stay reachable, and caches never go stale.
//!
//! The blocks are their own directory: each names its list, generation and
//! number inside its sealed plaintext, and the state holds their count and a
//! keyed digest (a sum of per-block MACs), updated in O(1) per block. A
//! write therefore re-seals the state header and the blocks it touches,
//! whatever the size of the index; opening reads every block (it must, to
//! map ids to blocks), rebuilds the lists and checks them against the
//! digest, so a block removed, restored or replaced is detected.
//!
//! # Searching
//!
//! A query batch runs in chunks of up to 4096 queries. Within a chunk every
//! block of a probed list (every block, before training) is read once, for
//! all the queries of the chunk that probe it. With the list cache off, a
//! worker copies the sealed block from the store into a buffer it reuses,
//! decrypts it there and scans the vectors in place: the block layout puts
//! them 4-byte aligned, so they are not copied again, and memory does not
//! grow with the index. A tiled SIMD kernel scores a block against a few
//! queries with the same rounding for every pair; for many queries a GEMM
//! gives rigorous lower bounds and only the pairs that may enter a top-k are
//! rescored by that kernel. Results (distances and ties, broken by id) equal
//! brute force over the scanned vectors. At a compressed [`Precision`] the
//! scan is of decoded codes and keeps `top_k × rerank_mult` candidates,
//! which are rescored exactly from their items.
#![deny(missing_docs)]
#![deny(unsafe_code)]

mod cache;
mod catalog;
mod codec;
mod database;
mod distance;
mod edit;
pub mod filter;
mod guarded;
mod handle;
mod keys;
mod load;
mod metaindex;
mod options;
mod precision;
mod quantized;
mod rotate;
mod route;
mod scan;
mod search;
mod shared;
mod state;
#[cfg(test)]
mod test_support;
mod topk;
mod train;
mod users;
mod write;

pub use catalog::NAMESPACES;
pub use database::{Database, IndexConfig};
pub use filter::Filter;
pub use guarded::{Capability, GuardedStore};
pub use handle::{Index, LoadedIndex};
pub use keys::Credentials;
pub use metaindex::FieldSchema;
pub use options::{
    auto_n_lists, auto_n_probes, Field, Fields, GetResult, Hit, IndexInfo, Item, MetadataMatches,
    MetadataQuery, ProgressFn, QueryOptions, TrainOptions, TrainProgress, TrainingState,
    MAX_CONTENTS_BYTES, MAX_ID_BYTES, MAX_METADATA_BYTES, MAX_METADATA_DEPTH, MAX_TOP_K,
};
pub use precision::Precision;
pub use rotate::{RotateProgress, Rotated};
pub use vecseal_codec::Error as DecodeError;
pub use vecseal_codec::Record;
pub use vecseal_envelope::Error as EnvelopeError;
pub use vecseal_envelope::{SecretKey, Suite};
pub use vecseal_keyring::Error as AccessError;
pub use vecseal_keyring::{UserEntry, UserId};
pub use vecseal_kmeans::kernel::SimdLevel;
pub use vecseal_kmeans::Error as KMeansError;
pub use vecseal_storage::Error as StorageError;
pub use vecseal_storage::Store;

/// `f` over `items` on the rayon pool, or on this thread when there is
/// only one: from a thread outside the pool, handing work to it costs a
/// wake-up (tens of µs), more than a one-item write's sealing.
pub(crate) fn map_pooled<T: Sync, R: Send>(
    items: &[T],
    f: impl Fn(&T) -> R + Sync + Send,
) -> Vec<R> {
    use rayon::prelude::*;
    if items.len() <= 1 {
        items.iter().map(f).collect()
    } else {
        items.par_iter().map(f).collect()
    }
}

impl Error {
    /// `name` was 0 where at least 1 is needed.
    pub(crate) fn zero(name: &'static str) -> Self {
        Error::InvalidParameter {
            name,
            value: "0".into(),
            expected: "at least 1",
        }
    }

    /// Whether the same call may succeed if made again unchanged: another
    /// process's commit got in its way, or the storage engine is out of
    /// reach for now (a service answers 503).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Conflict(_) => true,
            Error::Storage(e) => e.is_retryable(),
            _ => false,
        }
    }
}

/// Similarity metric of an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Metric {
    /// Euclidean (L2) distance.
    Euclidean,
    /// Squared Euclidean distance.
    #[default]
    SquaredEuclidean,
    /// Cosine distance, `1 − cos(q, x)`.
    Cosine,
    /// Negative inner product, `−q·x` (smaller is more similar).
    InnerProduct,
}

impl Metric {
    /// The stable name (`euclidean`, `squared-euclidean`, `cosine`, `inner-product`).
    pub fn name(self) -> &'static str {
        match self {
            Metric::Euclidean => "euclidean",
            Metric::SquaredEuclidean => "squared-euclidean",
            Metric::Cosine => "cosine",
            Metric::InnerProduct => "inner-product",
        }
    }

    /// Whether this is one of the Euclidean metrics (whose integer-pass
    /// distances need the query's and the decoded vectors' squared norms).
    pub(crate) fn is_euclidean(self) -> bool {
        matches!(self, Metric::SquaredEuclidean | Metric::Euclidean)
    }
}

impl std::str::FromStr for Metric {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "euclidean" | "l2" => Ok(Metric::Euclidean),
            "squared-euclidean" | "squared_euclidean" => Ok(Metric::SquaredEuclidean),
            "cosine" => Ok(Metric::Cosine),
            "inner-product" | "inner_product" | "ip" => Ok(Metric::InnerProduct),
            other => Err(Error::InvalidParameter {
                name: "metric",
                value: other.to_owned(),
                expected: "euclidean, squared-euclidean, cosine or inner-product",
            }),
        }
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Errors of the index engine.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No index of that name.
    #[error("index {0:?} does not exist")]
    NotFound(String),
    /// An index of that name exists already.
    #[error("index {0:?} already exists")]
    AlreadyExists(String),
    /// The catalog entry of an index (its id and keyring) was changed by
    /// someone without its data key: swapped with another index's, a wrap
    /// replaced, or restored from an older copy. Distinct from a wrong key.
    #[error("the catalog entry of index {name:?} was tampered with: {reason}")]
    CatalogTampered {
        /// The index name.
        name: String,
        /// What did not verify.
        reason: &'static str,
    },
    /// The handle's index was deleted and its name now holds another
    /// index: the handle does nothing any more; load the index again.
    #[error(
        "index {0:?} was deleted and created again since this handle was loaded: load it again"
    )]
    StaleHandle(String),
    /// Another process committed to the index while this call was writing
    /// (a store shared by several processes, and a store lock lost): this
    /// call wrote nothing. Retry it.
    #[error("index {0:?} was changed by another process during this call, which wrote nothing: retry it")]
    Conflict(String),
    /// Key, RBAC or permission failure (wrong key, unknown user, permission denied …).
    #[error(transparent)]
    Access(#[from] vecseal_keyring::Error),
    /// A vector of the wrong dimension.
    #[error("dimension mismatch for {what}: the index has dimension {expected}, got {got}")]
    DimensionMismatch {
        /// Which vector (an item id or `query #n`).
        what: String,
        /// The index's dimension.
        expected: usize,
        /// The vector's length.
        got: usize,
    },
    /// NaN or infinity in a vector.
    #[error("vector of {what} has a non-finite value at position {position}")]
    NonFinite {
        /// Which vector.
        what: String,
        /// Position of the first bad value.
        position: usize,
    },
    /// An empty item id.
    #[error("item ids must be non-empty (item #{0} of the batch has an empty id)")]
    EmptyId(usize),
    /// An invalid parameter or argument.
    #[error("invalid {name}: {value}; expected {expected}")]
    InvalidParameter {
        /// The parameter.
        name: &'static str,
        /// The value given.
        value: String,
        /// What would be valid.
        expected: &'static str,
    },
    /// Too few vectors to train.
    #[error("training needs at least {need} vectors (max(2 × n_lists, 10000)) but the index holds {have}")]
    NotEnoughVectors {
        /// Vectors stored.
        have: usize,
        /// Vectors needed.
        need: usize,
    },
    /// A stored record failed authentication: it was modified, moved or
    /// belongs to other keys. Opaque on purpose.
    #[error("authentication failed on a stored {0}: it was modified, moved, or sealed under another key")]
    Authentication(Record),
    /// The blocks in the store do not match the digest sealed in the index
    /// state: a block was removed, moved, or restored from an older copy.
    #[error("the blocks of the index do not match its sealed state: a block was removed, moved, or restored from an older copy")]
    BlocksTampered,
    /// `query_metadata` cannot answer a filter on a field, by its schema.
    #[error("query_metadata cannot answer a filter on {field:?}: {reason}")]
    NotQueryable {
        /// The field path.
        field: String,
        /// Why, and what would make it answerable.
        reason: &'static str,
    },
    /// A stored record opened but does not decode.
    #[error(transparent)]
    Decode(#[from] vecseal_codec::Error),
    /// A stored record decoded but contradicts the rest of the index (or
    /// is missing).
    #[error("corrupt {what}: {reason}")]
    Corrupt {
        /// The record kind.
        what: Record,
        /// What is wrong.
        reason: String,
    },
    /// The storage engine failed.
    #[error(transparent)]
    Storage(#[from] vecseal_storage::Error),
    /// k-means training failed.
    #[error("training failed: {0}")]
    KMeans(#[from] vecseal_kmeans::Error),
    /// An envelope operation failed (other than authentication).
    #[error(transparent)]
    Envelope(vecseal_envelope::Error),
    /// A malformed metadata filter.
    #[error("invalid filter at {position}: {reason}")]
    BadFilter {
        /// Where in the filter (`$` is its root), or a line and column for
        /// text that is not JSON.
        position: String,
        /// What is wrong and what would be right.
        reason: String,
    },
    /// Metadata that is not a JSON object.
    #[error("metadata of item {0:?} must be a JSON object")]
    BadMetadata(String),
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
