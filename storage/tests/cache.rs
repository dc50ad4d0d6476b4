//! The disk cache of a remote store, over a store that adds 20 ms to every
//! request: the directory never passes its limit, pinned files survive
//! eviction and deletion is accounted exactly, one fetch serves concurrent
//! misses, and a reopened cache finds its files again (a hit, no fetch).

use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use strata_storage::store::{LatencyStore, Storage};
use strata_storage::{CacheConfig, StoreLocation};

const KIB: usize = 1024;

/// Bytes of every file under `dir` (cached objects and temporary downloads).
fn disk_usage(dir: &FsPath) -> u64 {
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        if m.is_dir() {
            n += disk_usage(&e.path());
        } else {
            n += m.len();
        }
    }
    n
}

fn object(i: usize, len: usize) -> Bytes {
    Bytes::from((0..len).map(|j| (i * 31 + j) as u8).collect::<Vec<u8>>())
}

async fn fill(store: &Arc<LatencyStore>, n: usize, len: usize) {
    for i in 0..n {
        store
            .put(
                &Path::from(format!("tables/t/seg-{i}.arrow")),
                PutPayload::from_bytes(object(i, len)),
            )
            .await
            .unwrap();
    }
}

fn open(store: &Arc<LatencyStore>, dir: &FsPath, limit: u64) -> Storage {
    Storage::open_with_cache(
        &store.location("test://latency"),
        &CacheConfig {
            dir: Some(dir.to_path_buf()),
            size: Some(limit),
        },
    )
    .unwrap()
}

fn path(i: usize) -> String {
    format!("tables/t/seg-{i}.arrow")
}

#[tokio::test]
async fn never_exceeds_limit_and_honours_pins() {
    let store = LatencyStore::memory(Duration::from_millis(20));
    fill(&store, 12, 10 * KIB).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    let limit = 35 * KIB as u64;
    let s = open(&store, &dir, limit);

    // Keep object 0 mapped for the whole workload.
    let pinned = s.get_mapped(&path(0)).await.unwrap().unwrap();
    assert_eq!(pinned, object(0, 10 * KIB));
    // Read 3.4x the limit, twice over.
    for round in 0..2 {
        for i in 1..12 {
            let b = s.get(&path(i)).await.unwrap().unwrap();
            assert_eq!(b, object(i, 10 * KIB), "round {round} object {i}");
            let st = s.cache_stats().unwrap();
            assert!(st.used_bytes <= limit, "{st:?}");
            let du = disk_usage(&dir);
            assert!(
                du <= limit,
                "cache directory holds {du} bytes, limit {limit}"
            );
            assert_eq!(du, st.used_bytes, "accounting matches the disk: {st:?}");
        }
    }
    let st = s.cache_stats().unwrap();
    assert!(st.evictions >= 18, "{st:?}");
    assert_eq!(st.files, 3);
    assert_eq!(st.pinned, 1);
    // The pinned object was never evicted: reading it again is a hit.
    let gets = store.gets();
    let again = s.get_mapped(&path(0)).await.unwrap().unwrap();
    assert_eq!(store.gets(), gets, "pinned object was fetched again");
    assert_eq!(again, pinned);
    drop(again);
    drop(pinned);
    assert_eq!(s.cache_stats().unwrap().pinned, 0);

    // Pin everything the cache holds (30 KiB of 35): a new object cannot
    // fit, so it is read from memory, uncached, and the directory stays put.
    let held: Vec<Bytes> = {
        let mut v = Vec::new();
        for i in [9, 10, 11] {
            v.push(s.get_mapped(&path(i)).await.unwrap().unwrap());
        }
        v
    };
    let before = s.cache_stats().unwrap();
    assert_eq!(before.pinned, 3, "{before:?}");
    let b = s.get_mapped(&path(1)).await.unwrap().unwrap();
    assert_eq!(b, object(1, 10 * KIB));
    let after = s.cache_stats().unwrap();
    assert_eq!(after.uncached_reads, before.uncached_reads + 1);
    assert_eq!(after.used_bytes, before.used_bytes);
    assert!(disk_usage(&dir) <= limit);
    drop(held);

    // An object larger than the whole cache: read uncached, nothing evicted.
    store
        .put(
            &Path::from("tables/t/big.arrow"),
            PutPayload::from_bytes(object(99, 40 * KIB)),
        )
        .await
        .unwrap();
    let files = s.cache_stats().unwrap().files;
    let big = s.get_mapped("tables/t/big.arrow").await.unwrap().unwrap();
    assert_eq!(big.len(), 40 * KIB);
    assert_eq!(s.cache_stats().unwrap().files, files);
    assert!(disk_usage(&dir) <= limit);

    // A missing object is `None`, not an error, and caches nothing.
    assert!(s.get_mapped("tables/t/nope.arrow").await.unwrap().is_none());
}

#[tokio::test]
async fn delete_of_a_mapped_object_is_freed_when_unmapped() {
    let store = LatencyStore::memory(Duration::from_millis(20));
    fill(&store, 2, 10 * KIB).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    let s = open(&store, &dir, 100 * KIB as u64);
    let b = s.get_mapped(&path(0)).await.unwrap().unwrap();
    let used = s.cache_stats().unwrap().used_bytes;
    assert_eq!(used, 10 * KIB as u64);
    // A slice shares the mapping: it keeps the pin too.
    let slice = b.slice(100..200);
    drop(b);
    s.delete(&path(0)).await.unwrap();
    // Unlinked at once (no erased bytes under objects/), still counted while mapped.
    assert!(!dir.join("objects").join(path(0)).exists());
    let st = s.cache_stats().unwrap();
    assert_eq!((st.files, st.pinned, st.used_bytes), (0, 1, used), "{st:?}");
    assert_eq!(slice, object(0, 10 * KIB).slice(100..200));
    drop(slice);
    let st = s.cache_stats().unwrap();
    assert_eq!((st.files, st.pinned, st.used_bytes), (0, 0, 0), "{st:?}");
    // Gone from the store as well.
    assert!(s.get_mapped(&path(0)).await.unwrap().is_none());
}

#[tokio::test]
async fn concurrent_misses_fetch_once() {
    let store = LatencyStore::memory(Duration::from_millis(20));
    fill(&store, 1, 64 * KIB).await;
    let tmp = tempfile::tempdir().unwrap();
    let s = open(&store, &tmp.path().join("cache"), 1 << 20);
    let gets = store.gets();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.get_mapped(&path(0)).await.unwrap().unwrap() })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), object(0, 64 * KIB));
    }
    assert_eq!(store.gets() - gets, 1, "eight concurrent misses, one fetch");
    let st = s.cache_stats().unwrap();
    assert_eq!((st.misses, st.hits), (1, 7), "{st:?}");
}

#[tokio::test]
async fn found_again_after_reopen() {
    let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let store = Arc::new(LatencyStore::new(inner.clone(), Duration::from_millis(20)));
    fill(&store, 4, 10 * KIB).await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cache");
    {
        let s = open(&store, &dir, 100 * KIB as u64);
        for i in 0..4 {
            s.get(&path(i)).await.unwrap().unwrap();
        }
        assert_eq!(s.cache_stats().unwrap().misses, 4);
    }
    // A download a crashed process left behind.
    std::fs::write(dir.join("tmp").join("999-0"), b"half an object").unwrap();

    let gets = store.gets();
    let s = open(&store, &dir, 100 * KIB as u64);
    assert!(
        std::fs::read_dir(dir.join("tmp")).unwrap().next().is_none(),
        "temporary files are removed at open"
    );
    let st = s.cache_stats().unwrap();
    assert_eq!((st.files, st.used_bytes), (4, 40 * KIB as u64), "{st:?}");
    for i in 0..4 {
        assert_eq!(s.get(&path(i)).await.unwrap().unwrap(), object(i, 10 * KIB));
    }
    assert_eq!(store.gets(), gets, "reopened cache fetched again");
    let st = s.cache_stats().unwrap();
    assert_eq!((st.hits, st.misses), (4, 0), "{st:?}");
    assert_eq!(st.hit_rate(), Some(1.0));
    drop(s);

    // Reopened with a smaller limit: evicted down to it, oldest first.
    let s = open(&store, &dir, 25 * KIB as u64);
    let st = s.cache_stats().unwrap();
    assert_eq!((st.files, st.used_bytes), (2, 20 * KIB as u64), "{st:?}");
    assert!(disk_usage(&dir) <= 25 * KIB as u64);
}

#[tokio::test]
async fn log_and_manifests_bypass_the_cache() {
    let store = LatencyStore::memory(Duration::from_millis(1));
    let tmp = tempfile::tempdir().unwrap();
    let s = open(&store, &tmp.path().join("cache"), 1 << 20);
    s.put("log/00000000000000000001", Bytes::from_static(b"one"))
        .await
        .unwrap();
    assert_eq!(
        s.get("log/00000000000000000001").await.unwrap().unwrap(),
        Bytes::from_static(b"one")
    );
    // ERASE rewrites log records in place: the next read must see it.
    s.put("log/00000000000000000001", Bytes::from_static(b"two"))
        .await
        .unwrap();
    assert_eq!(
        s.get("log/00000000000000000001").await.unwrap().unwrap(),
        Bytes::from_static(b"two")
    );
    let st = s.cache_stats().unwrap();
    assert_eq!((st.files, st.hits, st.misses), (0, 0, 0), "{st:?}");
}

#[tokio::test]
async fn ranges_from_the_cache_or_the_store() {
    let store = LatencyStore::memory(Duration::from_millis(1));
    fill(&store, 1, 10 * KIB).await;
    let tmp = tempfile::tempdir().unwrap();
    let s = open(&store, &tmp.path().join("cache"), 1 << 20);
    let want = object(0, 10 * KIB);
    // Not cached: one ranged request, nothing cached.
    let r = s.get_range(&path(0), 100..164).await.unwrap().unwrap();
    assert_eq!(r, want.slice(100..164));
    assert_eq!(s.cache_stats().unwrap().files, 0);
    s.get_mapped(&path(0)).await.unwrap().unwrap();
    let gets = store.gets();
    let r = s
        .get_range(&path(0), 10 * KIB as u64 - 8..10 * KIB as u64)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r, want.slice(10 * KIB - 8..));
    assert_eq!(store.gets(), gets, "cached range read went to the store");
    let e = s.get_range(&path(0), 0..20 * KIB as u64).await.unwrap_err();
    assert!(e.to_string().contains("outside"), "{e}");
}

#[tokio::test]
async fn local_directory_is_mapped_in_place() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Storage::open(&StoreLocation::Local(tmp.path().to_path_buf())).unwrap();
    s.put("tables/t/seg-1.arrow", object(1, 64 * KIB))
        .await
        .unwrap();
    let b = s.get_mapped("tables/t/seg-1.arrow").await.unwrap().unwrap();
    assert_eq!(b, object(1, 64 * KIB));
    assert!(s.cache_stats().is_none(), "a local store has no cache");
    // The file itself is mapped into this process (no copy anywhere).
    let file = std::fs::canonicalize(tmp.path().join("tables/t/seg-1.arrow")).unwrap();
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    assert!(
        maps.lines().any(|l| l.ends_with(file.to_str().unwrap())),
        "{} is not mapped",
        file.display()
    );
    // get() of a segment maps too.
    let b2 = s.get("tables/t/seg-1.arrow").await.unwrap().unwrap();
    assert_eq!(b2, b);
    assert!(s.get_mapped("tables/t/none.arrow").await.unwrap().is_none());
    // Arrow buffers are built on the mapping without a copy.
    let buf = arrow::buffer::Buffer::from(b.clone());
    assert_eq!(buf.as_ptr(), b.as_ptr());
}
