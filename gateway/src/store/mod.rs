//! The storage seam: one small trait of our own in front of every object store.
//!
//! Everything above this module talks to [`BlobStore`]; the production implementation wraps
//! Apache Arrow's `object_store` (S3, GCS, Azure, local directory, memory), and tests can wrap it
//! again to inject faults or latency. Keys are plain bucket keys (no mount prefix logic here).

mod error;
mod location;
mod object_store_backend;
mod retry;
mod s3_list;

use std::ops::Range;
use std::time::SystemTime;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;

pub use error::{StoreError, StoreResult};
pub use location::{BackendKind, StoreLocation};
pub use object_store_backend::{ObjectStoreBlob, S3Settings};
pub use retry::{RetryPolicy, RetryingStore};

/// Metadata of one object as the store reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Full key in the bucket.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// ETag (or an equivalent version token); used for If-Match on every read of an open file.
    pub etag: Option<String>,
    /// Version id where the store has versioning.
    pub version: Option<String>,
    /// Last modification time.
    pub last_modified: SystemTime,
}

/// One page of a delimited listing.
#[derive(Clone, Debug, Default)]
pub struct ListPage {
    /// Objects directly under the prefix.
    pub objects: Vec<ObjectInfo>,
    /// Common prefixes (sub-"directories"), each ending with `/`.
    pub prefixes: Vec<String>,
    /// Token for the next page, `None` on the last page.
    pub next_token: Option<String>,
}

/// Condition attached to a write.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum PutCondition {
    /// Unconditional overwrite.
    #[default]
    None,
    /// Only create; fail with [`StoreError::Precondition`] if the key exists.
    IfNoneMatch,
    /// Only replace the version with this ETag.
    IfMatch(String),
}

/// A stream of body chunks of a GET.
pub type ByteStream = BoxStream<'static, StoreResult<Bytes>>;

/// An in-progress multipart upload. Parts are uploaded in order of `put_part` calls.
#[async_trait]
pub trait MultipartWriter: Send {
    /// Uploads the next part.
    async fn put_part(&mut self, data: Bytes) -> StoreResult<()>;
    /// Completes the upload and returns the new object's metadata.
    async fn complete(self: Box<Self>) -> StoreResult<ObjectInfo>;
    /// Aborts the upload, releasing any stored parts.
    async fn abort(self: Box<Self>) -> StoreResult<()>;
}

/// The operations cairn needs from an object store.
#[async_trait]
pub trait BlobStore: Send + Sync + std::fmt::Debug + 'static {
    /// Lists keys under `prefix` grouped by `/` (one directory level), one page at a time.
    /// `page_token` is `None` for the first page, then the previous page's `next_token`.
    async fn list(
        &self,
        prefix: &str,
        page_token: Option<String>,
        max_keys: Option<usize>,
    ) -> StoreResult<ListPage>;

    /// Metadata of one object.
    async fn head(&self, key: &str) -> StoreResult<ObjectInfo>;

    /// Bytes `range` of the object, failing with [`StoreError::Precondition`] when `if_match`
    /// is given and the object's ETag differs.
    async fn get_range(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> StoreResult<ByteStream>;

    /// Writes a whole object.
    async fn put(&self, key: &str, data: Bytes, condition: PutCondition)
        -> StoreResult<ObjectInfo>;

    /// Starts a multipart upload.
    async fn put_multipart(&self, key: &str) -> StoreResult<Box<dyn MultipartWriter>>;

    /// Deletes an object (deleting a missing key is not an error).
    async fn delete(&self, key: &str) -> StoreResult<()>;

    /// Server-side copy of `from` to `to`.
    async fn copy(&self, from: &str, to: &str) -> StoreResult<()>;

    /// Writes the empty marker object of a directory (`key` ends in `/`), so an empty
    /// directory shows in listings. Backends that cannot hold such keys say
    /// [`StoreError::Unsupported`]; empty directories then live only on this mount.
    async fn put_dir_marker(&self, key: &str) -> StoreResult<()> {
        Err(StoreError::Unsupported(format!("directory marker {key}")))
    }

    /// Deletes a directory marker object (a missing one is not an error).
    async fn delete_dir_marker(&self, key: &str) -> StoreResult<()> {
        Err(StoreError::Unsupported(format!("directory marker {key}")))
    }

    /// A short human description (`s3://bucket at http://...`) for logs and errors.
    fn describe(&self) -> String;
}

/// Reads a whole GET stream into one buffer (tests, small objects).
pub async fn collect_stream(mut s: ByteStream) -> StoreResult<Bytes> {
    use futures::StreamExt;
    let mut out = bytes::BytesMut::new();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out.freeze())
}
