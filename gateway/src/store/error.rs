use std::error::Error as StdError;

/// Errors of the storage seam, classified by what the caller should do about them.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The key (or the bucket) does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// A condition (If-Match / If-None-Match) failed: the object changed or already exists.
    #[error("precondition failed: {0}")]
    Precondition(String),
    /// The store asked us to slow down (HTTP 429/503 SlowDown).
    #[error("throttled by the object store: {0}")]
    Throttled(String),
    /// A network or server error that may succeed when retried.
    #[error("transient object store error: {0}")]
    Transient(String),
    /// Credentials missing, wrong or lacking permission.
    #[error("access denied: {0}")]
    Auth(String),
    /// A key that the store cannot represent.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// The backend does not offer this operation or option (e.g. If-Match on a local directory).
    #[error("not supported by this store: {0}")]
    Unsupported(String),
    /// Anything else (bad configuration, ...).
    #[error("{0}")]
    Other(String),
}

/// Result alias of the storage seam.
pub type StoreResult<T> = Result<T, StoreError>;

impl StoreError {
    /// True when retrying the same request may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Throttled(_) | StoreError::Transient(_))
    }
}

/// Flattens an error and its sources into one line.
pub(crate) fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(src) = cur {
        let t = src.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = src.source();
    }
    s
}

/// HTTP status of a failed request, read from `object_store`'s message (its retry error type is
/// not public): "... non-2xx status code: 503 Service Unavailable ...".
fn http_status(e: &(dyn StdError + 'static)) -> Option<u16> {
    let text = chain(e);
    let idx = text.find("status code: ")? + "status code: ".len();
    text[idx..].get(..3)?.parse().ok()
}

impl From<object_store::Error> for StoreError {
    fn from(e: object_store::Error) -> Self {
        use object_store::Error as E;
        let msg = chain(&e);
        match e {
            E::NotFound { .. } => StoreError::NotFound(msg),
            E::Precondition { .. } | E::NotModified { .. } | E::AlreadyExists { .. } => {
                StoreError::Precondition(msg)
            }
            E::Unauthenticated { .. } | E::PermissionDenied { .. } => StoreError::Auth(msg),
            E::InvalidPath { .. } => StoreError::InvalidKey(msg),
            E::NotSupported { .. } | E::NotImplemented { .. } => StoreError::Unsupported(msg),
            ref other => match http_status(other) {
                Some(429) | Some(503) => StoreError::Throttled(msg),
                Some(401) | Some(403) => StoreError::Auth(msg),
                Some(404) => StoreError::NotFound(msg),
                Some(412) => StoreError::Precondition(msg),
                Some(s) if s >= 500 => StoreError::Transient(msg),
                Some(_) => StoreError::Other(msg),
                // No HTTP status: connection refused/reset, timeout, body read error.
                None if msg.contains("NoSuchBucket") => StoreError::NotFound(msg),
                None => {
                    if looks_like_io(other) {
                        StoreError::Transient(msg)
                    } else {
                        StoreError::Other(msg)
                    }
                }
            },
        }
    }
}

fn looks_like_io(e: &(dyn StdError + 'static)) -> bool {
    use object_store::client::{HttpError, HttpErrorKind};
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(err) = cur {
        if err.is::<std::io::Error>() || err.is::<tokio::time::error::Elapsed>() {
            return true;
        }
        if let Some(h) = err.downcast_ref::<HttpError>() {
            return matches!(
                h.kind(),
                HttpErrorKind::Connect
                    | HttpErrorKind::Request
                    | HttpErrorKind::Timeout
                    | HttpErrorKind::Interrupted
                    | HttpErrorKind::Decode
            );
        }
        cur = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_basic_variants() {
        let nf = object_store::Error::NotFound {
            path: "k".into(),
            source: "gone".into(),
        };
        assert!(matches!(StoreError::from(nf), StoreError::NotFound(_)));
        let pre = object_store::Error::Precondition {
            path: "k".into(),
            source: "etag".into(),
        };
        assert!(matches!(StoreError::from(pre), StoreError::Precondition(_)));
        let io = object_store::Error::Generic {
            store: "S3",
            source: Box::new(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "reset",
            )),
        };
        let e = StoreError::from(io);
        assert!(e.is_retryable(), "{e:?}");
    }
}
