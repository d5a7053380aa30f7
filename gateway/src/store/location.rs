use std::path::PathBuf;

use super::{StoreError, StoreResult};

/// Which backend a mount URL names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackendKind {
    /// `s3://bucket` (AWS S3 or any S3-compatible endpoint).
    S3 {
        /// Bucket name.
        bucket: String,
    },
    /// `gs://bucket`.
    Gcs {
        /// Bucket name.
        bucket: String,
    },
    /// `az://container` (account from `AZURE_STORAGE_ACCOUNT_NAME`).
    Azure {
        /// Container name.
        container: String,
    },
    /// `file:///dir`: a local directory acting as the bucket.
    Local {
        /// Absolute root directory.
        root: PathBuf,
    },
    /// `memory://`: an in-process store, for unit tests only.
    Memory,
}

/// A parsed mount URL: the backend plus the key prefix the mount shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreLocation {
    /// The backend and bucket.
    pub kind: BackendKind,
    /// Key prefix the mount is rooted at: empty, or ending with `/`.
    pub prefix: String,
}

impl StoreLocation {
    /// Parses `s3://bucket[/prefix]`, `gs://…`, `az://…`, `file:///dir` or `memory://`.
    pub fn parse(url: &str) -> StoreResult<Self> {
        let bad = |why: &str| {
            StoreError::Other(format!(
                "invalid bucket URL '{url}': {why} (expected s3://BUCKET[/PREFIX], gs://BUCKET[/PREFIX], \
                 az://CONTAINER[/PREFIX] or file:///ABSOLUTE/DIR)"
            ))
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
        match scheme {
            "file" => {
                if !rest.starts_with('/') {
                    return Err(bad(
                        "file:// URLs need an absolute path, e.g. file:///data/bucket",
                    ));
                }
                Ok(Self {
                    kind: BackendKind::Local {
                        root: PathBuf::from(rest),
                    },
                    prefix: String::new(),
                })
            }
            "memory" => Ok(Self {
                kind: BackendKind::Memory,
                prefix: normalize_prefix(rest),
            }),
            "s3" | "s3a" | "gs" | "az" | "azure" => {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(bad("missing bucket name"));
                }
                if prefix.split('/').any(|s| s == "." || s == "..") {
                    return Err(bad("the prefix may not contain '.' or '..' segments"));
                }
                let bucket = bucket.to_string();
                let kind = match scheme {
                    "s3" | "s3a" => BackendKind::S3 { bucket },
                    "gs" => BackendKind::Gcs { bucket },
                    _ => BackendKind::Azure { container: bucket },
                };
                Ok(Self {
                    kind,
                    prefix: normalize_prefix(prefix),
                })
            }
            other => Err(bad(&format!("unsupported scheme '{other}'"))),
        }
    }

    /// The URL again, normalized, for logs and mount tables.
    pub fn display(&self) -> String {
        match &self.kind {
            BackendKind::S3 { bucket } => format!("s3://{bucket}/{}", self.prefix),
            BackendKind::Gcs { bucket } => format!("gs://{bucket}/{}", self.prefix),
            BackendKind::Azure { container } => format!("az://{container}/{}", self.prefix),
            BackendKind::Local { root } => format!("file://{}", root.display()),
            BackendKind::Memory => format!("memory://{}", self.prefix),
        }
    }
}

/// `a/b` -> `a/b/`, `` -> ``, duplicate slashes removed.
fn normalize_prefix(p: &str) -> String {
    let parts: Vec<&str> = p.split('/').filter(|s| !s.is_empty()).collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!("{}/", parts.join("/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_s3_with_prefix() {
        let l = StoreLocation::parse("s3://bkt/a/b").unwrap();
        assert_eq!(
            l.kind,
            BackendKind::S3 {
                bucket: "bkt".into()
            }
        );
        assert_eq!(l.prefix, "a/b/");
        assert_eq!(StoreLocation::parse("s3://bkt").unwrap().prefix, "");
        assert_eq!(StoreLocation::parse("s3://bkt/").unwrap().prefix, "");
    }

    #[test]
    fn parses_file() {
        let l = StoreLocation::parse("file:///tmp/x").unwrap();
        assert_eq!(
            l.kind,
            BackendKind::Local {
                root: "/tmp/x".into()
            }
        );
    }

    #[test]
    fn rejects_bad_urls() {
        for u in ["bkt", "ftp://x", "s3://", "file://relative", "s3://b/../x"] {
            let e = StoreLocation::parse(u).unwrap_err().to_string();
            assert!(e.contains("invalid bucket URL"), "{u}: {e}");
        }
    }
}
