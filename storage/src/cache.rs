//! The local disk cache for remote stores: immutable objects fetched from an
//! object store are kept as files under one directory, memory-mapped for
//! readers, within a byte limit.
//!
//! - Layout: `<dir>/objects/<object path>` for cached objects and `<dir>/tmp/`
//!   for downloads in flight (a download is written to a temporary name and
//!   renamed into place, so a crash never leaves a half-written object under
//!   `objects/`; temporary files are removed when the cache is opened).
//! - Accounting: `used` is every byte the directory holds or is about to hold:
//!   cached files, downloads in flight (reserved at their full size before the
//!   first byte is written), and files already unlinked while a reader still
//!   maps them (the kernel keeps their blocks until the last mapping goes, so
//!   they are counted until their last `Bytes` is dropped). `used` never
//!   passes the limit.
//! - Eviction: least recently used first, skipping files that are pinned (a
//!   `Bytes` of their mapping is alive). When nothing more can be evicted (the
//!   object is larger than the limit, or the rest is pinned), the object is
//!   read into memory and returned without being cached.
//! - Restart: opening scans `objects/` and takes every file back, oldest
//!   modification time least recently used.
//! - Concurrency: requests for the same uncached object wait for one fetch.
//!
//! One process per cache directory: two processes sharing one would each keep
//! their own accounting.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parking_lot::Mutex;
use tokio::io::AsyncWriteExt;

use crate::error::{Error, Result};

/// Default cache size limit: 10 GiB.
pub const DEFAULT_CACHE_SIZE: u64 = 10 << 30;

/// How a remote store's cache is set up (`--cache-dir`, `--cache-size`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheConfig {
    /// The directory; `None`: `$XDG_CACHE_HOME/strata/<hash of the store URL>`
    /// (`~/.cache/strata/…` without `XDG_CACHE_HOME`).
    pub dir: Option<PathBuf>,
    /// The limit in bytes; `None`: [`DEFAULT_CACHE_SIZE`]. `Some(0)` turns the
    /// cache off (every read goes to the store).
    pub size: Option<u64>,
}

impl CacheConfig {
    /// The directory used for a store described by `store` (its URL).
    pub fn resolve_dir(&self, store: &str) -> PathBuf {
        if let Some(d) = &self.dir {
            return d.clone();
        }
        let base = std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(std::env::temp_dir);
        let h = xxhash_rust::xxh3::xxh3_64(store.as_bytes());
        base.join("strata").join(format!("{h:016x}"))
    }
}

/// A snapshot of the cache's state and counters (the `strata_cache` table).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub dir: String,
    pub limit_bytes: u64,
    /// Bytes the directory holds or has reserved (see the module docs).
    pub used_bytes: u64,
    /// Cached objects (not counting unlinked files still mapped).
    pub files: u64,
    /// Cached objects with a live mapping, plus unlinked ones still mapped.
    pub pinned: u64,
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    pub evicted_bytes: u64,
    /// Bytes fetched from the store (cached or not).
    pub fetched_bytes: u64,
    /// Misses that could not be cached (object larger than the free space
    /// left after evicting every unpinned file); read into memory instead.
    pub uncached_reads: u64,
}

impl CacheStats {
    /// hits / (hits + misses), or `None` before the first read.
    pub fn hit_rate(&self) -> Option<f64> {
        let n = self.hits + self.misses;
        (n > 0).then(|| self.hits as f64 / n as f64)
    }
}

#[derive(Debug)]
struct Entry {
    /// Distinguishes this file from an earlier one at the same path that was
    /// removed while still mapped.
    id: u64,
    size: u64,
    pins: usize,
    /// Position in `State::lru`.
    tick: u64,
}

#[derive(Debug, Default)]
struct State {
    entries: HashMap<String, Entry>,
    /// tick → path, oldest first.
    lru: BTreeMap<u64, String>,
    next_tick: u64,
    next_id: u64,
    used: u64,
    /// Files unlinked while mapped: id → (size, pins).
    zombies: HashMap<u64, (u64, usize)>,
}

impl State {
    fn touch(&mut self, path: &str) {
        let t = self.next_tick;
        self.next_tick += 1;
        if let Some(e) = self.entries.get_mut(path) {
            self.lru.remove(&e.tick);
            e.tick = t;
            self.lru.insert(t, path.to_string());
        }
    }

    fn insert(&mut self, path: &str, size: u64) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let tick = self.next_tick;
        self.next_tick += 1;
        self.entries.insert(
            path.to_string(),
            Entry {
                id,
                size,
                pins: 0,
                tick,
            },
        );
        self.lru.insert(tick, path.to_string());
        id
    }

    /// Take `path` out of the index. Its file is to be unlinked by the caller;
    /// returns whether it was cached. Bytes stay counted while it is mapped.
    fn remove(&mut self, path: &str) -> bool {
        let Some(e) = self.entries.remove(path) else {
            return false;
        };
        self.lru.remove(&e.tick);
        if e.pins > 0 {
            self.zombies.insert(e.id, (e.size, e.pins));
        } else {
            self.used -= e.size;
        }
        true
    }
}

/// What the cache shares with the mappings it handed out.
#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    limit: u64,
    state: Mutex<State>,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
    evicted_bytes: AtomicU64,
    fetched_bytes: AtomicU64,
    uncached_reads: AtomicU64,
    tmp_seq: AtomicU64,
}

impl Shared {
    fn objects(&self) -> PathBuf {
        self.dir.join("objects")
    }

    fn file(&self, path: &str) -> PathBuf {
        self.objects().join(path)
    }

    fn unpin(&self, path: &str, id: u64) {
        let mut s = self.state.lock();
        if let Some(e) = s.entries.get_mut(path) {
            if e.id == id {
                e.pins -= 1;
                return;
            }
        }
        if let Some((size, pins)) = s.zombies.get_mut(&id) {
            *pins -= 1;
            if *pins == 0 {
                let size = *size;
                s.zombies.remove(&id);
                s.used -= size;
            }
        }
    }

    /// Make room for `size` more bytes and reserve them; `false` when even
    /// evicting every unpinned file would not make enough room. Files chosen
    /// for eviction are taken out of the index here and unlinked by the caller.
    fn reserve(&self, size: u64, unlink: &mut Vec<PathBuf>) -> bool {
        let mut s = self.state.lock();
        if size > self.limit {
            return false;
        }
        if s.used + size > self.limit {
            let pinned: u64 = s
                .entries
                .values()
                .filter(|e| e.pins > 0)
                .map(|e| e.size)
                .sum();
            let zombie: u64 = s.zombies.values().map(|z| z.0).sum();
            // Bytes that cannot be freed: pinned files, mapped unlinked ones,
            // and other downloads' reservations.
            let cached: u64 = s.entries.values().map(|e| e.size).sum();
            let reserved = s.used - cached - zombie;
            if pinned + zombie + reserved + size > self.limit {
                return false;
            }
            let victims: Vec<String> = s
                .lru
                .values()
                .filter(|p| s.entries.get(*p).is_some_and(|e| e.pins == 0))
                .cloned()
                .collect();
            for p in victims {
                if s.used + size <= self.limit {
                    break;
                }
                let sz = s.entries[&p].size;
                s.remove(&p);
                self.evictions.fetch_add(1, Ordering::Relaxed);
                self.evicted_bytes.fetch_add(sz, Ordering::Relaxed);
                unlink.push(self.file(&p));
            }
        }
        s.used += size;
        true
    }
}

/// A memory map of a cached file that keeps it pinned (never evicted) while
/// any `Bytes` made from it is alive.
struct Pinned {
    map: memmap2::Mmap,
    shared: Arc<Shared>,
    path: String,
    id: u64,
}

impl AsRef<[u8]> for Pinned {
    fn as_ref(&self) -> &[u8] {
        &self.map
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        self.shared.unpin(&self.path, self.id);
    }
}

/// Map a whole file read-only. A zero-length file maps to empty bytes.
pub(crate) fn map_file(file: &std::fs::File) -> std::io::Result<Option<memmap2::Mmap>> {
    if file.metadata()?.len() == 0 {
        return Ok(None);
    }
    // Safety: objects are immutable once written; Strata replaces an object
    // by writing a new file and renaming it over the old name (which leaves
    // this mapping on the old inode), never by writing into it.
    unsafe { memmap2::Mmap::map(file) }.map(Some)
}

/// The disk cache of one remote store.
#[derive(Debug, Clone)]
pub struct DiskCache {
    shared: Arc<Shared>,
    /// Per-path locks so one fetch serves concurrent misses.
    inflight: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
}

impl DiskCache {
    /// Open (or create) the cache directory, take back what an earlier
    /// process left in it, and evict down to `limit` if it holds more.
    pub fn open(dir: &FsPath, limit: u64) -> Result<DiskCache> {
        let objects = dir.join("objects");
        let tmp = dir.join("tmp");
        let mk = |p: &FsPath| {
            std::fs::create_dir_all(p).map_err(|e| {
                Error::Invalid(format!(
                    "cannot create the cache directory {}: {e} (set --cache-dir to a writable directory)",
                    p.display()
                ))
            })
        };
        mk(&objects)?;
        // Downloads a crashed process left behind.
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp)?;
        }
        mk(&tmp)?;
        let mut found = Vec::new();
        scan(&objects, &objects, &mut found)?;
        found.sort_by_key(|f| f.2);
        let mut state = State::default();
        for (path, size, _) in &found {
            state.insert(path, *size);
            state.used += size;
        }
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            limit,
            state: Mutex::new(state),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            evicted_bytes: AtomicU64::new(0),
            fetched_bytes: AtomicU64::new(0),
            uncached_reads: AtomicU64::new(0),
            tmp_seq: AtomicU64::new(0),
        });
        // A lowered limit: evict down to it, oldest first (nothing is pinned yet).
        let mut unlink = Vec::new();
        {
            let mut s = shared.state.lock();
            while s.used > limit {
                let Some((_, p)) = s.lru.first_key_value().map(|(t, p)| (*t, p.clone())) else {
                    break;
                };
                let sz = s.entries[&p].size;
                s.remove(&p);
                shared.evictions.fetch_add(1, Ordering::Relaxed);
                shared.evicted_bytes.fetch_add(sz, Ordering::Relaxed);
                unlink.push(shared.file(&p));
            }
        }
        for f in unlink {
            let _ = std::fs::remove_file(f);
        }
        if !found.is_empty() {
            tracing::info!(
                "cache {}: {} objects, {} bytes kept from before",
                dir.display(),
                found.len(),
                shared.state.lock().used
            );
        }
        Ok(DiskCache {
            shared,
            inflight: Default::default(),
        })
    }

    pub fn dir(&self) -> &FsPath {
        &self.shared.dir
    }

    pub fn limit(&self) -> u64 {
        self.shared.limit
    }

    pub fn stats(&self) -> CacheStats {
        let s = self.shared.state.lock();
        let pinned = s.entries.values().filter(|e| e.pins > 0).count() + s.zombies.len();
        CacheStats {
            dir: self.shared.dir.display().to_string(),
            limit_bytes: self.shared.limit,
            used_bytes: s.used,
            files: s.entries.len() as u64,
            pinned: pinned as u64,
            hits: self.shared.hits.load(Ordering::Relaxed),
            misses: self.shared.misses.load(Ordering::Relaxed),
            evictions: self.shared.evictions.load(Ordering::Relaxed),
            evicted_bytes: self.shared.evicted_bytes.load(Ordering::Relaxed),
            fetched_bytes: self.shared.fetched_bytes.load(Ordering::Relaxed),
            uncached_reads: self.shared.uncached_reads.load(Ordering::Relaxed),
        }
    }

    /// Map the cached copy of `path`, pinning it; `None` if not cached.
    fn lookup(&self, path: &str) -> Result<Option<Bytes>> {
        let id = {
            let mut s = self.shared.state.lock();
            let Some(e) = s.entries.get_mut(path) else {
                return Ok(None);
            };
            e.pins += 1;
            let id = e.id;
            s.touch(path);
            id
        };
        // Unpins on every way out, including errors.
        let file = self.shared.file(path);
        let opened = std::fs::File::open(&file).and_then(|f| map_file(&f));
        match opened {
            Ok(Some(map)) => Ok(Some(Bytes::from_owner(Pinned {
                map,
                shared: self.shared.clone(),
                path: path.to_string(),
                id,
            }))),
            Ok(None) => {
                self.shared.unpin(path, id);
                Ok(Some(Bytes::new()))
            }
            Err(e) => {
                self.shared.unpin(path, id);
                // Someone removed the file under us: forget it, fetch again.
                if e.kind() == std::io::ErrorKind::NotFound {
                    let mut s = self.shared.state.lock();
                    if s.entries.get(path).is_some_and(|e| e.id == id) {
                        s.remove(path);
                    }
                    return Ok(None);
                }
                Err(e.into())
            }
        }
    }

    /// The cached copy of `path` if there is one (a hit), without fetching.
    pub fn peek(&self, path: &str) -> Result<Option<Bytes>> {
        let b = self.lookup(path)?;
        if b.is_some() {
            self.shared.hits.fetch_add(1, Ordering::Relaxed);
        }
        Ok(b)
    }

    /// The object at `path`, from the cache or fetched from `store` into it.
    /// `Ok(None)` if the store has no such object.
    pub async fn get(&self, store: &dyn ObjectStore, path: &str) -> Result<Option<Bytes>> {
        if let Some(b) = self.lookup(path)? {
            self.shared.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Some(b));
        }
        let lock = self
            .inflight
            .lock()
            .entry(path.to_string())
            .or_default()
            .clone();
        let guard = lock.lock().await;
        // Another request may have fetched it while we waited.
        if let Some(b) = self.lookup(path)? {
            drop(guard);
            self.release_inflight(path, &lock);
            self.shared.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Some(b));
        }
        self.shared.misses.fetch_add(1, Ordering::Relaxed);
        let r = self.fetch(store, path).await;
        drop(guard);
        self.release_inflight(path, &lock);
        r
    }

    fn release_inflight(&self, path: &str, lock: &Arc<tokio::sync::Mutex<()>>) {
        let mut m = self.inflight.lock();
        // Two references: the map's and ours; nobody else is waiting.
        if Arc::strong_count(lock) == 2 {
            m.remove(path);
        }
    }

    async fn fetch(&self, store: &dyn ObjectStore, path: &str) -> Result<Option<Bytes>> {
        let r = match store.get(&Path::from(path)).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let size = r.meta.size;
        let mut unlink = Vec::new();
        let reserved = self.shared.reserve(size, &mut unlink);
        for f in unlink {
            // The kernel keeps a mapped file's blocks; those were counted as
            // zombies above only if pinned, and evicted files are unpinned.
            let _ = tokio::fs::remove_file(f).await;
        }
        if !reserved {
            self.shared.uncached_reads.fetch_add(1, Ordering::Relaxed);
            let b = r.bytes().await?;
            self.shared
                .fetched_bytes
                .fetch_add(b.len() as u64, Ordering::Relaxed);
            return Ok(Some(b));
        }
        let n = self.shared.tmp_seq.fetch_add(1, Ordering::Relaxed);
        let tmp = self
            .shared
            .dir
            .join("tmp")
            .join(format!("{}-{n}", std::process::id()));
        let written = async {
            let mut f = tokio::fs::File::create(&tmp).await?;
            let mut stream = r.into_stream();
            let mut total = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                total += chunk.len() as u64;
                if total > size {
                    return Err(Error::Internal(format!(
                        "object `{path}` is longer than the {size} bytes the store announced"
                    )));
                }
                f.write_all(&chunk).await?;
            }
            f.flush().await?;
            if total != size {
                return Err(Error::Internal(format!(
                    "object `{path}`: got {total} bytes, the store announced {size}"
                )));
            }
            let dest = self.shared.file(path);
            if let Some(parent) = dest.parent() {
                tokio::fs::create_dir_all(parent).await?;
            }
            tokio::fs::rename(&tmp, &dest).await?;
            Ok::<_, Error>(())
        }
        .await;
        self.shared.fetched_bytes.fetch_add(size, Ordering::Relaxed);
        let mut s = self.shared.state.lock();
        if let Err(e) = written {
            s.used -= size;
            drop(s);
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        // The reservation becomes the entry (a stale entry cannot exist: we
        // hold this path's fetch lock and found nothing).
        let id = s.insert(path, size);
        s.entries.get_mut(path).expect("just inserted").pins += 1;
        drop(s);
        let file = self.shared.file(path);
        let opened = std::fs::File::open(&file).and_then(|f| map_file(&f));
        match opened {
            Ok(Some(map)) => Ok(Some(Bytes::from_owner(Pinned {
                map,
                shared: self.shared.clone(),
                path: path.to_string(),
                id,
            }))),
            Ok(None) => {
                self.shared.unpin(path, id);
                Ok(Some(Bytes::new()))
            }
            Err(e) => {
                self.shared.unpin(path, id);
                Err(e.into())
            }
        }
    }

    /// Forget `path` (it was overwritten or deleted in the store) and unlink
    /// its file. A mapped copy stays readable and counted until unmapped.
    pub fn invalidate(&self, path: &str) {
        let removed = self.shared.state.lock().remove(path);
        if removed {
            let _ = std::fs::remove_file(self.shared.file(path));
        }
    }
}

/// Every regular file under `dir`: (object path, size, mtime).
fn scan(
    root: &FsPath,
    dir: &FsPath,
    out: &mut Vec<(String, u64, std::time::SystemTime)>,
) -> Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let meta = e.metadata()?;
        if meta.is_dir() {
            scan(root, &e.path(), out)?;
        } else if meta.is_file() {
            let p = e.path();
            let rel = p.strip_prefix(root).expect("under root");
            let Some(rel) = rel.to_str() else {
                let _ = std::fs::remove_file(&p);
                continue;
            };
            let rel = rel.replace(std::path::MAIN_SEPARATOR, "/");
            let mtime = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
            out.push((rel, meta.len(), mtime));
        }
    }
    Ok(())
}
