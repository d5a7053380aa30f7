use std::sync::Arc;

/// Identity of one cached block: which object, which version of it, which block index.
///
/// `object` is the store-qualified name (e.g. `s3://bucket/key`), `version` is the ETag (or
/// version id) the block was read under, and `index` is `offset / block_size`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockKey {
    /// Store-qualified object name.
    pub object: Arc<str>,
    /// ETag or version id of the object when the block was fetched.
    pub version: Arc<str>,
    /// Block index within the object (offset / block size).
    pub index: u64,
}

impl BlockKey {
    /// Builds a key for block `index` of `object` at `version`.
    pub fn new(object: Arc<str>, version: Arc<str>, index: u64) -> Self {
        Self {
            object,
            version,
            index,
        }
    }
}
