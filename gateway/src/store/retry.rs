use std::future::Future;
use std::ops::Range;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rand::Rng;

use super::{
    BlobStore, ByteStream, ListPage, MultipartWriter, ObjectInfo, PutCondition, StoreResult,
};

/// Retry schedule for transient and throttling errors: exponential backoff with full jitter.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Attempts in total (1 = no retry).
    pub max_attempts: u32,
    /// Delay cap before the first retry.
    pub base_delay: Duration,
    /// Largest delay cap.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 6,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// Delay before retry number `attempt` (1-based): uniform in [0, min(max, base * 2^(attempt-1))].
    pub fn delay(&self, attempt: u32) -> Duration {
        let cap = self
            .base_delay
            .saturating_mul(1u32 << (attempt.saturating_sub(1)).min(16))
            .min(self.max_delay);
        let ms = cap.as_millis() as u64;
        Duration::from_millis(rand::rng().random_range(0..=ms.max(1)))
    }

    /// Runs `op` until it succeeds, fails with a non-retryable error, or attempts run out.
    pub async fn run<T, F, Fut>(&self, what: &str, mut op: F) -> StoreResult<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = StoreResult<T>>,
    {
        let mut attempt = 1;
        loop {
            match op().await {
                Err(e) if e.is_retryable() && attempt < self.max_attempts => {
                    let d = self.delay(attempt);
                    tracing::debug!(%e, attempt, delay_ms = d.as_millis() as u64, "retrying {what}");
                    tokio::time::sleep(d).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

/// A [`BlobStore`] that retries transient errors of the store it wraps.
///
/// GET bodies are retried only up to the response headers; a body that breaks mid-stream is
/// resumed by the reader, which knows how many bytes it already has. Multipart part uploads are
/// retried by the `object_store` client underneath (its own backoff), not here.
#[derive(Debug)]
pub struct RetryingStore<S> {
    inner: S,
    policy: RetryPolicy,
}

impl<S: BlobStore> RetryingStore<S> {
    /// Wraps `inner` with `policy`.
    pub fn new(inner: S, policy: RetryPolicy) -> Self {
        Self { inner, policy }
    }
}

#[async_trait]
impl<S: BlobStore> BlobStore for RetryingStore<S> {
    async fn list(
        &self,
        prefix: &str,
        page_token: Option<String>,
        max_keys: Option<usize>,
    ) -> StoreResult<ListPage> {
        self.policy
            .run("list", || {
                self.inner.list(prefix, page_token.clone(), max_keys)
            })
            .await
    }

    async fn head(&self, key: &str) -> StoreResult<ObjectInfo> {
        self.policy.run("head", || self.inner.head(key)).await
    }

    async fn get_range(
        &self,
        key: &str,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> StoreResult<ByteStream> {
        self.policy
            .run("get", || self.inner.get_range(key, range.clone(), if_match))
            .await
    }

    async fn put(
        &self,
        key: &str,
        data: Bytes,
        condition: PutCondition,
    ) -> StoreResult<ObjectInfo> {
        self.policy
            .run("put", || {
                self.inner.put(key, data.clone(), condition.clone())
            })
            .await
    }

    async fn put_multipart(&self, key: &str) -> StoreResult<Box<dyn MultipartWriter>> {
        // Parts are retried inside the store client: a part slot, once used, cannot be
        // re-requested through the writer, so only the creation is retried here.
        self.policy
            .run("create multipart", || self.inner.put_multipart(key))
            .await
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.policy.run("delete", || self.inner.delete(key)).await
    }

    async fn put_dir_marker(&self, key: &str) -> StoreResult<()> {
        self.policy
            .run("put directory marker", || self.inner.put_dir_marker(key))
            .await
    }

    async fn delete_dir_marker(&self, key: &str) -> StoreResult<()> {
        self.policy
            .run("delete directory marker", || {
                self.inner.delete_dir_marker(key)
            })
            .await
    }

    async fn copy(&self, from: &str, to: &str) -> StoreResult<()> {
        self.policy.run("copy", || self.inner.copy(from, to)).await
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn retries_transient_then_succeeds() {
        let p = RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
        };
        let n = AtomicU32::new(0);
        let r = p
            .run("t", || async {
                if n.fetch_add(1, Ordering::SeqCst) < 2 {
                    Err(StoreError::Transient("boom".into()))
                } else {
                    Ok(7)
                }
            })
            .await;
        assert_eq!(r.unwrap(), 7);
        assert_eq!(n.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn does_not_retry_permanent_errors_and_gives_up() {
        let p = RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(1),
        };
        let n = AtomicU32::new(0);
        let r: StoreResult<()> = p
            .run("t", || async {
                n.fetch_add(1, Ordering::SeqCst);
                Err(StoreError::NotFound("k".into()))
            })
            .await;
        assert!(matches!(r, Err(StoreError::NotFound(_))));
        assert_eq!(n.load(Ordering::SeqCst), 1);
        let m = AtomicU32::new(0);
        let r: StoreResult<()> = p
            .run("t", || async {
                m.fetch_add(1, Ordering::SeqCst);
                Err(StoreError::Throttled("slow down".into()))
            })
            .await;
        assert!(matches!(r, Err(StoreError::Throttled(_))));
        assert_eq!(m.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn delay_is_capped() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(300),
        };
        for a in 1..10 {
            assert!(p.delay(a) <= Duration::from_millis(300));
        }
    }
}
