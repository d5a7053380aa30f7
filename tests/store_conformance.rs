//! Conformance suite of the storage seam: the same checks against every backend reachable here —
//! the in-memory store, a local directory, and a real S3 server (moto) on 127.0.0.1.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use cairn_gateway::store::{
    collect_stream, BlobStore, ObjectStoreBlob, PutCondition, S3Settings, StoreError, StoreLocation,
};

/// What a backend can do, so one suite states each expectation exactly.
struct Caps {
    /// Listing pages honour max_keys (native pagination).
    paginates: bool,
    /// PUT with If-Match is honoured.
    conditional_update: bool,
    /// Keys such as `a//b` can be stored and listed raw.
    raw_keys: bool,
}

async fn get_all(s: &dyn BlobStore, key: &str, range: std::ops::Range<u64>) -> Bytes {
    collect_stream(s.get_range(key, range, None).await.unwrap())
        .await
        .unwrap()
}

async fn list_all(
    s: &dyn BlobStore,
    prefix: &str,
    max_keys: Option<usize>,
) -> (BTreeSet<String>, BTreeSet<String>, usize) {
    let mut objects = BTreeSet::new();
    let mut prefixes = BTreeSet::new();
    let mut token = None;
    let mut pages = 0;
    loop {
        let p = s.list(prefix, token, max_keys).await.unwrap();
        pages += 1;
        objects.extend(p.objects.into_iter().map(|o| o.key));
        prefixes.extend(p.prefixes);
        token = p.next_token;
        if token.is_none() {
            break;
        }
        assert!(pages < 1000, "pagination does not end");
    }
    (objects, prefixes, pages)
}

async fn run_suite(s: Arc<dyn BlobStore>, caps: Caps) {
    let s = s.as_ref();
    let data = Bytes::from(common::pseudo_random_bytes(1, 3 * 1024 * 1024 + 17));

    // put / head / get, whole and ranged
    let put = s
        .put("c/data.bin", data.clone(), PutCondition::None)
        .await
        .unwrap();
    let head = s.head("c/data.bin").await.unwrap();
    assert_eq!(head.size, data.len() as u64);
    assert_eq!(head.key, "c/data.bin");
    assert!(head.etag.is_some(), "backend must report an ETag");
    if let Some(e) = &put.etag {
        assert_eq!(
            Some(e),
            head.etag.as_ref(),
            "put and head agree on the ETag"
        );
    }
    assert_eq!(get_all(s, "c/data.bin", 0..data.len() as u64).await, data);
    assert_eq!(get_all(s, "c/data.bin", 5..1005).await, data.slice(5..1005));
    let tail = data.len() as u64 - 1;
    assert_eq!(
        get_all(s, "c/data.bin", tail..tail + 1).await,
        data.slice(tail as usize..)
    );

    // empty object and empty range
    s.put("c/empty", Bytes::new(), PutCondition::None)
        .await
        .unwrap();
    assert_eq!(s.head("c/empty").await.unwrap().size, 0);
    assert!(get_all(s, "c/empty", 0..0).await.is_empty());

    // missing keys
    assert!(matches!(
        s.head("c/missing").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.get_range("c/missing", 0..10, None).await.map(|_| ()),
        Err(StoreError::NotFound(_))
    ));

    // If-Match: the ETag read earlier works, a changed object fails with Precondition
    let etag = head.etag.clone().unwrap();
    let ok = s.get_range("c/data.bin", 0..10, Some(&etag)).await.unwrap();
    assert_eq!(collect_stream(ok).await.unwrap(), data.slice(0..10));
    s.put(
        "c/data.bin",
        Bytes::from_static(b"changed"),
        PutCondition::None,
    )
    .await
    .unwrap();
    let r = s.get_range("c/data.bin", 0..5, Some(&etag)).await;
    assert!(
        matches!(r.map(|_| ()), Err(StoreError::Precondition(_))),
        "stale If-Match must fail"
    );

    // conditional puts
    let r = s
        .put(
            "c/data.bin",
            Bytes::from_static(b"x"),
            PutCondition::IfNoneMatch,
        )
        .await;
    assert!(
        matches!(r, Err(StoreError::Precondition(_))),
        "create over existing key: {r:?}"
    );
    s.put("c/new", Bytes::from_static(b"n"), PutCondition::IfNoneMatch)
        .await
        .unwrap();
    if caps.conditional_update {
        let r = s
            .put(
                "c/new",
                Bytes::from_static(b"m"),
                PutCondition::IfMatch("\"nope\"".into()),
            )
            .await;
        assert!(matches!(r, Err(StoreError::Precondition(_))), "{r:?}");
        let cur = s.head("c/new").await.unwrap().etag.unwrap();
        s.put(
            "c/new",
            Bytes::from_static(b"m"),
            PutCondition::IfMatch(cur),
        )
        .await
        .unwrap();
        assert_eq!(get_all(s, "c/new", 0..1).await, Bytes::from_static(b"m"));
    }

    // delimited listing, nested, with markers
    for k in ["l/a", "l/b", "l/d1/x", "l/d1/y", "l/d2/z", "l/c d+%é"] {
        s.put(k, Bytes::from(k.as_bytes().to_vec()), PutCondition::None)
            .await
            .unwrap();
    }
    // A key the client would store under another name is refused, never rewritten.
    let r = s.put("l/m/", Bytes::new(), PutCondition::None).await;
    assert!(matches!(r, Err(StoreError::InvalidKey(_))), "{r:?}");
    let (objs, pfx, _) = list_all(s, "l/", None).await;
    assert_eq!(
        objs,
        ["l/a", "l/b", "l/c d+%é"]
            .iter()
            .map(|s| s.to_string())
            .collect::<BTreeSet<_>>()
    );
    let mut want: BTreeSet<String> = ["l/d1/", "l/d2/"].iter().map(|s| s.to_string()).collect();
    if caps.raw_keys {
        // the harness stored a `l/m/` marker object with an independent client
        want.insert("l/m/".into());
    }
    assert_eq!(pfx, want);
    let (objs, pfx, _) = list_all(s, "l/d1/", None).await;
    assert_eq!(objs.len(), 2);
    assert!(pfx.is_empty());
    assert_eq!(
        get_all(s, "l/c d+%é", 0..8).await,
        Bytes::from("l/c d+%é".as_bytes()[..8].to_vec())
    );
    let (objs, pfx, _) = list_all(s, "nothing-here/", None).await;
    assert!(objs.is_empty() && pfx.is_empty());

    // pagination returns everything exactly once
    for i in 0..7 {
        s.put(
            &format!("p/k{i}"),
            Bytes::from_static(b"."),
            PutCondition::None,
        )
        .await
        .unwrap();
    }
    let (objs, _, pages) = list_all(s, "p/", Some(2)).await;
    assert_eq!(objs.len(), 7);
    if caps.paginates {
        assert!(pages >= 4, "max_keys=2 over 7 keys gave {pages} pages");
    }

    // copy and delete
    s.copy("l/a", "l/a-copy").await.unwrap();
    assert_eq!(
        get_all(s, "l/a-copy", 0..3).await,
        Bytes::from_static(b"l/a")
    );
    s.delete("l/a-copy").await.unwrap();
    assert!(matches!(
        s.head("l/a-copy").await,
        Err(StoreError::NotFound(_))
    ));
    s.delete("l/a-copy").await.unwrap(); // deleting a missing key is fine

    // multipart: two 5 MiB parts and a short last part
    let part = 5 * 1024 * 1024;
    let big = Bytes::from(common::pseudo_random_bytes(2, 2 * part + 1234));
    let mut w = s.put_multipart("mp/big").await.unwrap();
    w.put_part(big.slice(0..part)).await.unwrap();
    w.put_part(big.slice(part..2 * part)).await.unwrap();
    w.put_part(big.slice(2 * part..)).await.unwrap();
    let info = w.complete().await.unwrap();
    assert_eq!(info.size, big.len() as u64);
    assert_eq!(s.head("mp/big").await.unwrap().size, big.len() as u64);
    assert_eq!(get_all(s, "mp/big", 0..big.len() as u64).await, big);
    let w = s.put_multipart("mp/aborted").await.unwrap();
    w.abort().await.unwrap();
    assert!(matches!(
        s.head("mp/aborted").await,
        Err(StoreError::NotFound(_))
    ));

    // keys that are not valid paths come back raw from listings (S3 only; other stores cannot
    // hold them), and never break the listing of their directory
    if caps.raw_keys {
        let (objs, pfx, _) = list_all(s, "r/", None).await;
        assert!(objs.contains("r/ok"), "{objs:?}");
        assert!(pfx.contains("r//") && pfx.contains("r/./"), "{pfx:?}");
    }
}

#[tokio::test]
async fn conformance_memory() {
    let loc = StoreLocation::parse("memory://").unwrap();
    let s = ObjectStoreBlob::open(&loc, &S3Settings::default()).unwrap();
    run_suite(
        Arc::new(s),
        Caps {
            paginates: false,
            conditional_update: true,
            raw_keys: false,
        },
    )
    .await;
}

#[tokio::test]
async fn conformance_local_directory() {
    let dir = common::TempDir::new("conf-local");
    let loc = StoreLocation::parse(&format!("file://{}", dir.path().display())).unwrap();
    let s = ObjectStoreBlob::open(&loc, &S3Settings::default()).unwrap();
    run_suite(
        Arc::new(s),
        Caps {
            paginates: false,
            conditional_update: false,
            raw_keys: false,
        },
    )
    .await;
}

#[tokio::test]
async fn conformance_s3_moto() {
    let server = tokio::task::spawn_blocking(common::S3Server::start)
        .await
        .unwrap();
    for k in ["r/ok", "r//x", "r/./y", "l/m/"] {
        server.put(k, b"raw");
    }
    let loc = StoreLocation::parse(&format!("s3://{}", server.bucket())).unwrap();
    let settings = S3Settings {
        endpoint_url: Some(server.endpoint()),
        region: Some(server.region().to_string()),
        access_key_id: Some(server.access_key().to_string()),
        secret_access_key: Some(server.secret_key().to_string()),
        ..Default::default()
    };
    let s = ObjectStoreBlob::open(&loc, &settings).unwrap();
    run_suite(
        Arc::new(s),
        Caps {
            paginates: true,
            conditional_update: true,
            raw_keys: true,
        },
    )
    .await;
    tokio::task::spawn_blocking(move || drop(server))
        .await
        .unwrap();
}

#[tokio::test]
async fn missing_bucket_and_unreachable_endpoint_are_classified() {
    let server = tokio::task::spawn_blocking(common::S3Server::start)
        .await
        .unwrap();
    let settings = S3Settings {
        endpoint_url: Some(server.endpoint()),
        access_key_id: Some("test".into()),
        secret_access_key: Some("test".into()),
        ..Default::default()
    };
    let loc = StoreLocation::parse("s3://no-such-bucket-here").unwrap();
    let s = ObjectStoreBlob::open(&loc, &settings).unwrap();
    assert!(matches!(
        s.list("", None, Some(1)).await,
        Err(StoreError::NotFound(_))
    ));
    tokio::task::spawn_blocking(move || drop(server))
        .await
        .unwrap();

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let settings = S3Settings {
        endpoint_url: Some(format!("http://127.0.0.1:{port}")),
        access_key_id: Some("test".into()),
        secret_access_key: Some("test".into()),
        ..Default::default()
    };
    let s =
        ObjectStoreBlob::open(&StoreLocation::parse("s3://bucket").unwrap(), &settings).unwrap();
    let e = s.list("", None, Some(1)).await.unwrap_err();
    assert!(
        e.is_retryable(),
        "connection refused must be transient: {e:?}"
    );
}
