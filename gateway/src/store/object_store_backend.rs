use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::list::{PaginatedListOptions, PaginatedListStore};
use object_store::path::Path;
use object_store::{
    ClientOptions, GetOptions, GetRange, ObjectMeta, ObjectStore, ObjectStoreExt, PutMode,
    PutOptions, PutPayload, RetryConfig, UpdateVersion,
};

use super::{
    BackendKind, BlobStore, ByteStream, ListPage, MultipartWriter, ObjectInfo, PutCondition,
    StoreError, StoreLocation, StoreResult,
};

/// Connection settings for S3-compatible endpoints; anything left `None` comes from the standard
/// AWS environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
/// `AWS_REGION`, `AWS_ENDPOINT_URL`, `AWS_PROFILE`).
#[derive(Clone, Debug, Default)]
pub struct S3Settings {
    /// Endpoint URL (`http://127.0.0.1:9000`); plain http is allowed when given explicitly.
    pub endpoint_url: Option<String>,
    /// Region; defaults to the environment, then `us-east-1`.
    pub region: Option<String>,
    /// Access key id; defaults to the environment, then the profile.
    pub access_key_id: Option<String>,
    /// Secret access key; defaults to the environment, then the profile.
    pub secret_access_key: Option<String>,
    /// Timeout for establishing a connection.
    pub connect_timeout: Option<Duration>,
    /// Timeout for one whole request (headers and body).
    pub request_timeout: Option<Duration>,
}

/// [`BlobStore`] over Apache Arrow's `object_store` crate.
pub struct ObjectStoreBlob {
    store: Arc<dyn ObjectStore>,
    paginated: Option<Arc<dyn PaginatedListStore>>,
    s3_lister: Option<super::s3_list::S3Lister>,
    local_root: Option<std::path::PathBuf>,
    description: String,
}

impl ObjectStoreBlob {
    /// Wraps an already-built store (tests use this with `InMemory`).
    pub fn from_store(store: Arc<dyn ObjectStore>, description: impl Into<String>) -> Self {
        Self {
            store,
            paginated: None,
            s3_lister: None,
            local_root: None,
            description: description.into(),
        }
    }

    /// A cloud store with native paginated listings.
    fn paginated<S: ObjectStore + PaginatedListStore>(s: Arc<S>, description: String) -> Self {
        Self {
            store: s.clone(),
            paginated: Some(s),
            s3_lister: None,
            local_root: None,
            description,
        }
    }

    /// Builds the store a mount URL names. Does no I/O beyond checking a local root exists.
    pub fn open(location: &StoreLocation, s3: &S3Settings) -> StoreResult<Self> {
        let client = client_options(s3);
        let cfg_err = |e: object_store::Error| StoreError::Other(super::error::chain(&e));
        match &location.kind {
            BackendKind::S3 { bucket } => {
                let mut b = object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_retry(retry_config());
                let env_endpoint = std::env::var("AWS_ENDPOINT_URL_S3")
                    .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
                    .ok();
                let endpoint = s3.endpoint_url.clone().or(env_endpoint);
                let mut client = client;
                if let Some(ep) = &endpoint {
                    b = b.with_endpoint(ep);
                    if ep.starts_with("http://") {
                        client = client.with_allow_http(true);
                    }
                }
                let region = s3
                    .region
                    .clone()
                    .or_else(|| std::env::var("AWS_REGION").ok())
                    .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
                    .or_else(|| profile_value("region"))
                    .unwrap_or_else(|| "us-east-1".to_string());
                b = b.with_region(&region);
                if let (Some(ak), Some(sk)) = (&s3.access_key_id, &s3.secret_access_key) {
                    b = b.with_access_key_id(ak).with_secret_access_key(sk);
                } else if std::env::var("AWS_ACCESS_KEY_ID").is_err() {
                    if let (Some(ak), Some(sk)) = (
                        profile_value("aws_access_key_id"),
                        profile_value("aws_secret_access_key"),
                    ) {
                        b = b.with_access_key_id(ak).with_secret_access_key(sk);
                        if let Some(t) = profile_value("aws_session_token") {
                            b = b.with_token(t);
                        }
                    }
                }
                let s = Arc::new(
                    b.with_client_options(client.clone())
                        .build()
                        .map_err(cfg_err)?,
                );
                let lister = super::s3_list::S3Lister::new(
                    s.clone(),
                    &client,
                    endpoint.as_deref(),
                    bucket,
                    &region,
                )?;
                Ok(Self {
                    store: s.clone(),
                    paginated: Some(s),
                    s3_lister: Some(lister),
                    local_root: None,
                    description: format!(
                        "s3://{bucket} at {}",
                        endpoint.unwrap_or_else(|| format!("AWS region {region}"))
                    ),
                })
            }
            BackendKind::Gcs { bucket } => {
                let s = Arc::new(
                    object_store::gcp::GoogleCloudStorageBuilder::from_env()
                        .with_bucket_name(bucket)
                        .with_retry(retry_config())
                        .with_client_options(client)
                        .build()
                        .map_err(cfg_err)?,
                );
                Ok(Self::paginated(s, format!("gs://{bucket}")))
            }
            BackendKind::Azure { container } => {
                let s = Arc::new(
                    object_store::azure::MicrosoftAzureBuilder::from_env()
                        .with_container_name(container)
                        .with_retry(retry_config())
                        .with_client_options(client)
                        .build()
                        .map_err(cfg_err)?,
                );
                Ok(Self::paginated(s, format!("az://{container}")))
            }
            BackendKind::Local { root } => {
                if !root.is_dir() {
                    return Err(StoreError::NotFound(format!(
                        "local bucket directory {} does not exist or is not a directory",
                        root.display()
                    )));
                }
                let s =
                    object_store::local::LocalFileSystem::new_with_prefix(root).map_err(cfg_err)?;
                let mut me = Self::from_store(Arc::new(s), format!("file://{}", root.display()));
                me.local_root = Some(root.clone());
                Ok(me)
            }
            BackendKind::Memory => Ok(Self::from_store(
                Arc::new(object_store::memory::InMemory::new()),
                "memory://",
            )),
        }
    }
}

impl std::fmt::Debug for ObjectStoreBlob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectStoreBlob")
            .field("store", &self.description)
            .finish()
    }
}

fn client_options(s3: &S3Settings) -> ClientOptions {
    ClientOptions::new()
        .with_connect_timeout(s3.connect_timeout.unwrap_or(Duration::from_secs(5)))
        .with_timeout(s3.request_timeout.unwrap_or(Duration::from_secs(120)))
        .with_pool_max_idle_per_host(64)
}

/// The client's own retries stay short: [`super::RetryingStore`] owns the retry schedule, but
/// multipart parts can only be retried inside the client.
fn retry_config() -> RetryConfig {
    RetryConfig {
        max_retries: 2,
        retry_timeout: Duration::from_secs(30),
        ..Default::default()
    }
}

/// Reads `name` for `AWS_PROFILE` (default `default`) from `~/.aws/credentials` or `~/.aws/config`.
fn profile_value(name: &str) -> Option<String> {
    let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
    let home = std::env::var("HOME").ok()?;
    let creds = std::env::var("AWS_SHARED_CREDENTIALS_FILE")
        .unwrap_or_else(|_| format!("{home}/.aws/credentials"));
    let config = std::env::var("AWS_CONFIG_FILE").unwrap_or_else(|_| format!("{home}/.aws/config"));
    for (file, section) in [
        (creds, profile.clone()),
        (config.clone(), format!("profile {profile}")),
        (config, profile.clone()),
    ] {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        if let Some(v) = ini_lookup(&text, &section, name) {
            return Some(v);
        }
    }
    None
}

fn ini_lookup(text: &str, section: &str, name: &str) -> Option<String> {
    let mut in_section = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') && line.ends_with(']') {
            in_section = line[1..line.len() - 1].trim() == section;
        } else if in_section {
            if let Some((k, v)) = line.split_once('=') {
                if k.trim() == name {
                    return Some(v.trim().to_string());
                }
            }
        }
    }
    None
}

/// Parses a bucket key into an `object_store` path without re-encoding it. A key the path type
/// would silently change (a trailing or leading `/`) is refused: writing or reading a different
/// key than asked for is never acceptable.
fn path(key: &str) -> StoreResult<Path> {
    let p = Path::parse(key).map_err(|e| StoreError::InvalidKey(format!("{key:?}: {e}")))?;
    if p.as_ref() != key {
        return Err(StoreError::InvalidKey(format!(
            "{key:?} cannot be addressed through this store client (it would become {:?})",
            p.as_ref()
        )));
    }
    Ok(p)
}

fn info(m: ObjectMeta) -> ObjectInfo {
    ObjectInfo {
        key: m.location.to_string(),
        size: m.size,
        etag: m.e_tag,
        version: m.version,
        last_modified: SystemTime::from(m.last_modified),
    }
}

fn page_from(result: object_store::ListResult, prefix: &str) -> ListPage {
    ListPage {
        objects: result
            .objects
            .into_iter()
            .map(info)
            // A `dir/` marker object lists as the prefix itself.
            .filter(|o| o.key.len() + 1 != prefix.len() || !prefix.starts_with(&o.key))
            .collect(),
        prefixes: result
            .common_prefixes
            .into_iter()
            .map(|p| format!("{p}/"))
            .collect(),
        next_token: None,
    }
}

#[async_trait]
impl BlobStore for ObjectStoreBlob {
    async fn list(
        &self,
        prefix: &str,
        page_token: Option<String>,
        max_keys: Option<usize>,
    ) -> StoreResult<ListPage> {
        if let Some(l) = &self.s3_lister {
            return l.list(prefix, page_token, max_keys).await;
        }
        if let Some(p) = &self.paginated {
            let opts = PaginatedListOptions {
                delimiter: Some("/".into()),
                max_keys,
                page_token,
                ..Default::default()
            };
            let pfx = (!prefix.is_empty()).then_some(prefix);
            let r = p.list_paginated(pfx, opts).await?;
            let mut page = page_from(r.result, prefix);
            page.next_token = r.page_token;
            return Ok(page);
        }
        // Stores without native pagination (local directory, memory) answer in one page.
        let p = if prefix.is_empty() {
            None
        } else {
            Some(path(prefix.trim_end_matches('/'))?)
        };
        let r = match self.store.list_with_delimiter(p.as_ref()).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Ok(ListPage::default()),
            Err(e) => return Err(e.into()),
        };
        let mut page = page_from(r, prefix);
        // In a local directory acting as a bucket, an empty directory is the marker object.
        if let Some(root) = &self.local_root {
            if page.objects.is_empty()
                && page.prefixes.is_empty()
                && !prefix.is_empty()
                && root.join(prefix.trim_end_matches('/')).is_dir()
            {
                page.objects.push(ObjectInfo {
                    key: prefix.to_string(),
                    size: 0,
                    etag: None,
                    version: None,
                    last_modified: SystemTime::UNIX_EPOCH,
                });
            }
        }
        Ok(page)
    }

    async fn head(&self, key: &str) -> StoreResult<ObjectInfo> {
        Ok(info(self.store.head(&path(key)?).await?))
    }

    async fn get_range(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> StoreResult<ByteStream> {
        let p = path(key)?;
        if range.is_empty() {
            // Still check the object and its version so an empty read cannot hide a change.
            let m = self.store.head(&p).await?;
            if let (Some(want), Some(have)) = (if_match, m.e_tag.as_deref()) {
                if want != have {
                    return Err(StoreError::Precondition(format!(
                        "{key}: ETag is {have}, expected {want}"
                    )));
                }
            }
            return Ok(futures::stream::empty().boxed());
        }
        let opts = GetOptions {
            range: Some(GetRange::Bounded(range)),
            if_match: if_match.map(str::to_string),
            ..Default::default()
        };
        let r = self.store.get_opts(&p, opts).await?;
        Ok(r.into_stream().map_err(StoreError::from).boxed())
    }

    async fn put(
        &self,
        key: &str,
        data: Bytes,
        condition: PutCondition,
    ) -> StoreResult<ObjectInfo> {
        let size = data.len() as u64;
        let mode = match condition {
            PutCondition::None => PutMode::Overwrite,
            PutCondition::IfNoneMatch => PutMode::Create,
            PutCondition::IfMatch(e) => PutMode::Update(UpdateVersion {
                e_tag: Some(e),
                version: None,
            }),
        };
        let opts = PutOptions {
            mode,
            ..Default::default()
        };
        let r = self
            .store
            .put_opts(&path(key)?, PutPayload::from(data), opts)
            .await?;
        Ok(ObjectInfo {
            key: key.to_string(),
            size,
            etag: r.e_tag,
            version: r.version,
            last_modified: SystemTime::now(),
        })
    }

    async fn put_multipart(&self, key: &str) -> StoreResult<Box<dyn MultipartWriter>> {
        let up = self.store.put_multipart(&path(key)?).await?;
        Ok(Box::new(ObjectStoreMultipart {
            upload: up,
            key: key.to_string(),
            size: 0,
        }))
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        match self.store.delete(&path(key)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn copy(&self, from: &str, to: &str) -> StoreResult<()> {
        Ok(self.store.copy(&path(from)?, &path(to)?).await?)
    }

    async fn put_dir_marker(&self, key: &str) -> StoreResult<()> {
        if let Some(l) = &self.s3_lister {
            return l.raw(http::Method::PUT, key).await;
        }
        if let Some(root) = &self.local_root {
            let dir = local_dir(root, key)?;
            return tokio::fs::create_dir_all(&dir)
                .await
                .map_err(|e| StoreError::Other(format!("mkdir {}: {e}", dir.display())));
        }
        Err(StoreError::Unsupported(format!(
            "directory marker {key} on {}",
            self.description
        )))
    }

    async fn delete_dir_marker(&self, key: &str) -> StoreResult<()> {
        if let Some(l) = &self.s3_lister {
            return l.raw(http::Method::DELETE, key).await;
        }
        if let Some(root) = &self.local_root {
            let dir = local_dir(root, key)?;
            return match tokio::fs::remove_dir(&dir).await {
                Ok(()) => Ok(()),
                // Gone already, or it still holds objects (the directory then stays implied).
                Err(e)
                    if e.kind() == std::io::ErrorKind::NotFound
                        || e.raw_os_error() == Some(libc::ENOTEMPTY) =>
                {
                    Ok(())
                }
                Err(e) => Err(StoreError::Other(format!("rmdir {}: {e}", dir.display()))),
            };
        }
        Err(StoreError::Unsupported(format!(
            "directory marker {key} on {}",
            self.description
        )))
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}

/// The directory a marker key names under a local root (refusing `..` and absolute parts).
fn local_dir(root: &std::path::Path, key: &str) -> StoreResult<std::path::PathBuf> {
    let rel = key.trim_end_matches('/');
    if rel.is_empty()
        || rel
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err(StoreError::InvalidKey(key.to_string()));
    }
    Ok(root.join(rel))
}

struct ObjectStoreMultipart {
    upload: Box<dyn object_store::MultipartUpload>,
    key: String,
    size: u64,
}

#[async_trait]
impl MultipartWriter for ObjectStoreMultipart {
    async fn put_part(&mut self, data: Bytes) -> StoreResult<()> {
        self.size += data.len() as u64;
        Ok(self.upload.put_part(PutPayload::from(data)).await?)
    }

    async fn complete(mut self: Box<Self>) -> StoreResult<ObjectInfo> {
        let r = self.upload.complete().await?;
        Ok(ObjectInfo {
            key: self.key.clone(),
            size: self.size,
            etag: r.e_tag,
            version: r.version,
            last_modified: SystemTime::now(),
        })
    }

    async fn abort(mut self: Box<Self>) -> StoreResult<()> {
        Ok(self.upload.abort().await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini_sections() {
        let t = "[default]\naws_access_key_id = A\n[other]\naws_access_key_id=B\n";
        assert_eq!(
            ini_lookup(t, "default", "aws_access_key_id").as_deref(),
            Some("A")
        );
        assert_eq!(
            ini_lookup(t, "other", "aws_access_key_id").as_deref(),
            Some("B")
        );
        assert_eq!(ini_lookup(t, "none", "aws_access_key_id"), None);
    }
}
