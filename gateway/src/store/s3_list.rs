//! S3 ListObjectsV2 done by us, signed with `object_store`'s own SigV4 signer.
//!
//! `object_store` turns every listed key into its `Path` type and fails the *whole page* when one
//! key is not a valid path (`a//b`, `./x`, `x/../y`). A bucket written by other tools can hold
//! such keys, and one of them must not make a directory unreadable, so listings of S3 buckets are
//! parsed here, keys kept as raw strings, and the namespace decides what can be shown.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use object_store::aws::{AmazonS3, AwsAuthorizer};
use object_store::client::{HttpClient, HttpConnector, HttpRequestBody, ReqwestConnector};
use object_store::ClientOptions;
use percent_encoding::percent_decode_str;
use serde::Deserialize;

use super::{ListPage, ObjectInfo, StoreError, StoreResult};

/// Lists one S3 bucket with raw keys.
pub(crate) struct S3Lister {
    client: HttpClient,
    s3: Arc<AmazonS3>,
    /// `http://host:port/bucket` (path style) or `https://bucket.s3.region.amazonaws.com`.
    base: String,
    region: String,
}

impl std::fmt::Debug for S3Lister {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Lister")
            .field("base", &self.base)
            .finish()
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListBucketResult {
    #[serde(default)]
    contents: Vec<Contents>,
    #[serde(default)]
    common_prefixes: Vec<CommonPrefix>,
    #[serde(default)]
    next_continuation_token: Option<String>,
    #[serde(default)]
    is_truncated: Option<bool>,
    #[serde(default)]
    encoding_type: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Contents {
    key: String,
    #[serde(default)]
    last_modified: Option<String>,
    #[serde(default, rename = "ETag")]
    e_tag: Option<String>,
    #[serde(default)]
    size: u64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CommonPrefix {
    prefix: String,
}

impl S3Lister {
    pub(crate) fn new(
        s3: Arc<AmazonS3>,
        options: &ClientOptions,
        endpoint: Option<&str>,
        bucket: &str,
        region: &str,
    ) -> StoreResult<Self> {
        let client = ReqwestConnector::default()
            .connect(options)
            .map_err(|e| StoreError::Other(super::error::chain(&e)))?;
        let base = match endpoint {
            Some(ep) => format!("{}/{}", ep.trim_end_matches('/'), bucket),
            None => format!("https://{bucket}.s3.{region}.amazonaws.com"),
        };
        Ok(Self {
            client,
            s3,
            base,
            region: region.to_string(),
        })
    }

    pub(crate) async fn list(
        &self,
        prefix: &str,
        page_token: Option<String>,
        max_keys: Option<usize>,
    ) -> StoreResult<ListPage> {
        let mut url = url::Url::parse(&format!("{}/", self.base.trim_end_matches('/')))
            .map_err(|e| StoreError::Other(format!("bad endpoint {}: {e}", self.base)))?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("list-type", "2");
            q.append_pair("delimiter", "/");
            q.append_pair("encoding-type", "url");
            if !prefix.is_empty() {
                q.append_pair("prefix", prefix);
            }
            if let Some(t) = &page_token {
                q.append_pair("continuation-token", t);
            }
            if let Some(m) = max_keys {
                q.append_pair("max-keys", &m.to_string());
            }
        }
        // SigV4 wants RFC 3986 encoding of the query (%20, not +).
        let uri = url.as_str().replace('+', "%20");
        let cred = self.s3.credentials().get_credential().await?;
        let mut req = http::Request::builder()
            .method(http::Method::GET)
            .uri(&uri)
            .body(HttpRequestBody::empty())
            .map_err(|e| StoreError::Other(format!("cannot build list request: {e}")))?;
        AwsAuthorizer::new(&cred, "s3", &self.region)
            .try_authorize(&mut req, None)
            .map_err(StoreError::from)?;
        let resp = self.client.execute(req).await.map_err(|e| {
            StoreError::Transient(format!("list {prefix:?}: {}", super::error::chain(&e)))
        })?;
        let status = resp.status();
        let body: Bytes = resp.into_body().bytes().await.map_err(|e| {
            StoreError::Transient(format!("list {prefix:?}: {}", super::error::chain(&e)))
        })?;
        let text = String::from_utf8_lossy(&body);
        if !status.is_success() {
            let code = xml_tag(&text, "Code").unwrap_or_default();
            let msg = format!("list {prefix:?} in {}: HTTP {status} {code}", self.base);
            return Err(match status.as_u16() {
                404 => StoreError::NotFound(msg),
                401 | 403 => StoreError::Auth(msg),
                429 | 503 => StoreError::Throttled(msg),
                s if s >= 500 => StoreError::Transient(msg),
                _ => StoreError::Other(msg),
            });
        }
        parse_list(&text)
    }
}

/// RFC 3986 encoding of a key in a URL path: everything but unreserved characters and `/`.
const KEY_ENCODE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

impl S3Lister {
    /// A signed body-less request on one raw key (directory markers, whose trailing `/`
    /// `object_store` paths cannot carry): PUT writes an empty object, DELETE removes it.
    pub(crate) async fn raw(&self, method: http::Method, key: &str) -> StoreResult<()> {
        let uri = format!(
            "{}/{}",
            self.base.trim_end_matches('/'),
            percent_encoding::utf8_percent_encode(key, KEY_ENCODE)
        );
        let cred = self.s3.credentials().get_credential().await?;
        let mut req = http::Request::builder()
            .method(method.clone())
            .uri(&uri)
            .header(http::header::CONTENT_LENGTH, "0")
            // What s3fs and the S3 console write for folders: other tools treat it as one.
            .header(http::header::CONTENT_TYPE, "application/x-directory")
            .body(HttpRequestBody::empty())
            .map_err(|e| StoreError::Other(format!("cannot build {method} request: {e}")))?;
        AwsAuthorizer::new(&cred, "s3", &self.region)
            .try_authorize(&mut req, None)
            .map_err(StoreError::from)?;
        let resp = self.client.execute(req).await.map_err(|e| {
            StoreError::Transient(format!("{method} {key:?}: {}", super::error::chain(&e)))
        })?;
        let status = resp.status();
        if status.is_success() || (method == http::Method::DELETE && status.as_u16() == 404) {
            return Ok(());
        }
        let body: Bytes = resp.into_body().bytes().await.unwrap_or_default();
        let text = String::from_utf8_lossy(&body);
        let code = xml_tag(&text, "Code").unwrap_or_default();
        let msg = format!("{method} {key:?} in {}: HTTP {status} {code}", self.base);
        Err(match status.as_u16() {
            404 => StoreError::NotFound(msg),
            401 | 403 => StoreError::Auth(msg),
            429 | 503 => StoreError::Throttled(msg),
            s if s >= 500 => StoreError::Transient(msg),
            _ => StoreError::Other(msg),
        })
    }
}

fn xml_tag(text: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = text.find(&open)? + open.len();
    let end = text[start..].find(&format!("</{tag}>"))? + start;
    Some(text[start..end].to_string())
}

fn decode(s: &str, url_encoded: bool) -> Option<String> {
    if !url_encoded {
        return Some(s.to_string());
    }
    percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

/// Parses a ListObjectsV2 response body.
fn parse_list(text: &str) -> StoreResult<ListPage> {
    let r: ListBucketResult = quick_xml::de::from_str(text)
        .map_err(|e| StoreError::Transient(format!("unparsable list response: {e}")))?;
    let encoded = r.encoding_type.as_deref() == Some("url");
    let objects = r
        .contents
        .into_iter()
        .filter_map(|c| {
            Some(ObjectInfo {
                key: decode(&c.key, encoded)?,
                size: c.size,
                etag: c.e_tag,
                version: None,
                last_modified: c
                    .last_modified
                    .as_deref()
                    .and_then(parse_time)
                    .unwrap_or(SystemTime::UNIX_EPOCH),
            })
        })
        .collect();
    let prefixes = r
        .common_prefixes
        .into_iter()
        .filter_map(|p| decode(&p.prefix, encoded))
        .collect();
    let next_token = if r.is_truncated.unwrap_or(false) {
        r.next_continuation_token
    } else {
        None
    };
    Ok(ListPage {
        objects,
        prefixes,
        next_token,
    })
}

/// Parses S3's `2024-01-02T03:04:05.000Z`.
fn parse_time(s: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(s.trim_end_matches('Z').split('.').next()?)
        .ok()
        .map(|t| {
            let frac = s
                .split('.')
                .nth(1)
                .map(|f| f.trim_end_matches('Z'))
                .and_then(|f| format!("0.{f}").parse::<f64>().ok())
                .unwrap_or(0.0);
            t + std::time::Duration::from_secs_f64(frac)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_page_with_unusual_keys() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>b</Name><Prefix></Prefix><KeyCount>3</KeyCount><MaxKeys>1000</MaxKeys>
  <Delimiter>/</Delimiter><EncodingType>url</EncodingType><IsTruncated>true</IsTruncated>
  <NextContinuationToken>tok==</NextContinuationToken>
  <Contents><Key>a%20b.txt</Key><LastModified>2024-01-02T03:04:05.500Z</LastModified>
    <ETag>&quot;abc&quot;</ETag><Size>12</Size><StorageClass>STANDARD</StorageClass></Contents>
  <Contents><Key>x/../y</Key><LastModified>2024-01-02T03:04:05.000Z</LastModified>
    <ETag>&quot;def&quot;</ETag><Size>0</Size></Contents>
  <CommonPrefixes><Prefix>.%2F</Prefix></CommonPrefixes>
  <CommonPrefixes><Prefix>d/</Prefix></CommonPrefixes>
</ListBucketResult>"#;
        let p = parse_list(xml).unwrap();
        assert_eq!(p.objects.len(), 2);
        assert_eq!(p.objects[0].key, "a b.txt");
        assert_eq!(p.objects[0].etag.as_deref(), Some("\"abc\""));
        assert_eq!(p.objects[0].size, 12);
        assert_eq!(p.objects[1].key, "x/../y");
        assert_eq!(p.prefixes, vec!["./".to_string(), "d/".to_string()]);
        assert_eq!(p.next_token.as_deref(), Some("tok=="));
        let t = p.objects[0]
            .last_modified
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap();
        assert_eq!(t.as_millis(), 1704164645500);
    }

    #[test]
    fn empty_page() {
        let xml = r#"<ListBucketResult><Name>b</Name><IsTruncated>false</IsTruncated></ListBucketResult>"#;
        let p = parse_list(xml).unwrap();
        assert!(p.objects.is_empty() && p.prefixes.is_empty() && p.next_token.is_none());
    }
}
