//! Object store access: the few operations Strata needs (conditional create,
//! put, get, list, delete) over any `object_store` backend, plus the fsync that
//! `LocalFileSystem` does not do, and a fault-injection hook for recovery tests.
//!
//! Reads of immutable objects are zero-copy: [`Storage::get_mapped`] returns
//! `Bytes` backed by a memory map — of the file itself on a local directory,
//! of a copy in the local disk cache ([`crate::cache`]) on a remote store.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};

use crate::cache::{map_file, CacheConfig, CacheStats, DiskCache, DEFAULT_CACHE_SIZE};
use crate::error::{Error, Result};

/// Where the durable state lives.
#[derive(Debug, Clone)]
pub enum StoreLocation {
    /// A directory on the local filesystem (created if missing).
    Local(PathBuf),
    /// An object store URL: `s3://bucket/prefix` (settings from the `AWS_*`
    /// variables), `az://container/prefix` or `abfs://…`, `azure://…`
    /// (`AZURE_*`, `AZURITE_BLOB_STORAGE_URL`), `gs://bucket/prefix`
    /// (`GOOGLE_*`); see [`store_env_options`].
    Url(String),
    /// Nothing durable: for tests and scratch work.
    Memory,
    /// Any `object_store` implementation, treated like a remote store (reads
    /// go through the disk cache). `name` stands for its URL (the default
    /// cache directory is named by its hash). For tests and benches, e.g. a
    /// [`LatencyStore`].
    Custom {
        store: Arc<dyn ObjectStore>,
        name: String,
    },
}

/// Called before every write; returning an error makes the write fail
/// (before anything reaches the store). Used by tests to inject faults.
pub trait FaultHook: Send + Sync + std::fmt::Debug {
    fn before_write(&self, path: &str) -> std::io::Result<()>;
}

#[derive(Debug, Clone)]
pub struct Storage {
    inner: Arc<dyn ObjectStore>,
    /// Set for a local directory: we fsync written files and their directory.
    local_root: Option<PathBuf>,
    fault: Option<Arc<dyn FaultHook>>,
    description: String,
    /// Set for a remote store (unless the cache is turned off).
    cache: Option<DiskCache>,
    /// Requests sent to `inner`, by kind.
    requests: Arc<RequestCounts>,
}

/// A new object being written (see [`Storage::sink`]). Dropped unfinished,
/// its temporary file is removed.
#[derive(Debug)]
pub enum ObjectSink {
    File {
        out: Option<std::io::BufWriter<std::fs::File>>,
        tmp: PathBuf,
    },
    Memory(Vec<u8>),
}

impl std::io::Write for ObjectSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            ObjectSink::File { out: Some(w), .. } => w.write(buf),
            ObjectSink::File { out: None, .. } => {
                Err(std::io::Error::other("sink already finished"))
            }
            ObjectSink::Memory(v) => v.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            ObjectSink::File { out: Some(w), .. } => w.flush(),
            _ => Ok(()),
        }
    }
}

impl Drop for ObjectSink {
    fn drop(&mut self) {
        if let ObjectSink::File { out: Some(_), tmp } = self {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

/// Outcome of a conditional create.
#[derive(Debug, PartialEq, Eq)]
pub enum CreateOutcome {
    Created,
    AlreadyExists,
}

/// Create, write, sync and remove a file in `dir`: a directory the process
/// cannot write is found at open, not at the first commit.
fn probe_writable(dir: &std::path::Path) -> std::io::Result<()> {
    use std::io::Write as _;
    let probe = dir.join(format!(".strata-write-probe-{}", std::process::id()));
    let r = (|| {
        let mut f = std::fs::File::create(&probe)?;
        f.write_all(b"strata")?;
        f.sync_all()
    })();
    let _ = std::fs::remove_file(&probe);
    r
}

/// The environment variables that configure the store of `scheme`, as
/// `object_store` config keys (lowercased: `AZURE_STORAGE_ACCOUNT_NAME` is
/// `azure_storage_account_name`, and so on): `AWS_*` for S3, `AZURE_*` for
/// Azure Blob Storage, `GOOGLE_*` for Google Cloud Storage. Variables that
/// are no config key of that store are ignored by `object_store`.
/// (`AZURITE_BLOB_STORAGE_URL`, the emulator's address when
/// `AZURE_STORAGE_USE_EMULATOR=true`, is read by `object_store` itself.)
pub fn store_env_options(scheme: &object_store::ObjectStoreScheme) -> Vec<(String, String)> {
    use object_store::ObjectStoreScheme as S;
    let prefix = match scheme {
        S::AmazonS3 => "AWS_",
        S::MicrosoftAzure => "AZURE_",
        S::GoogleCloudStorage => "GOOGLE_",
        _ => return Vec::new(),
    };
    std::env::vars()
        .filter(|(k, _)| k.starts_with(prefix))
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect()
}

/// What to set for a store of `scheme`, for an error that says so.
fn store_settings_hint(scheme: &object_store::ObjectStoreScheme) -> &'static str {
    use object_store::ObjectStoreScheme as S;
    match scheme {
        S::AmazonS3 => {
            "S3 settings come from AWS_* variables: AWS_REGION, AWS_ACCESS_KEY_ID and \
             AWS_SECRET_ACCESS_KEY (or a role), AWS_ENDPOINT (+ AWS_ALLOW_HTTP=true) for an \
             S3-compatible server"
        }
        S::MicrosoftAzure => {
            "Azure settings come from AZURE_* variables: AZURE_STORAGE_ACCOUNT_NAME and a \
             credential (AZURE_STORAGE_ACCOUNT_KEY, AZURE_STORAGE_SAS_KEY, \
             AZURE_STORAGE_CLIENT_ID + AZURE_STORAGE_CLIENT_SECRET + AZURE_STORAGE_TENANT_ID, \
             or AZURE_STORAGE_TOKEN); for Azurite, AZURE_STORAGE_USE_EMULATOR=true and \
             AZURITE_BLOB_STORAGE_URL=http://127.0.0.1:PORT"
        }
        S::GoogleCloudStorage => {
            "Google Cloud Storage settings come from GOOGLE_* variables: \
             GOOGLE_SERVICE_ACCOUNT (a key file), GOOGLE_SERVICE_ACCOUNT_KEY (the key JSON) or \
             GOOGLE_APPLICATION_CREDENTIALS; for an emulator, GOOGLE_ALLOW_HTTP=true and \
             GOOGLE_SERVICE_ACCOUNT_KEY='{\"gcs_base_url\": \"http://HOST:PORT\", \
             \"disable_oauth\": true, \"client_email\": \"\", \"private_key\": \"\", \
             \"private_key_id\": \"\"}'"
        }
        _ => "use s3://, az://, abfs://, azure://, gs:// or file://",
    }
}

/// The `object_store` for a remote store URL (anything but `file://`) and
/// the path prefix within it, configured from the environment
/// ([`store_env_options`]). A URL no store is built with, or settings that
/// are missing or bad, give an [`Error::Invalid`] naming what to set.
fn open_url(url: &url::Url, u: &str) -> Result<(Box<dyn ObjectStore>, Path)> {
    use object_store::ObjectStoreScheme as S;
    let (scheme, _) = S::parse(url).map_err(|e| {
        Error::Invalid(format!(
            "unsupported object store URL `{u}`: {e}; use s3://BUCKET/PREFIX, \
             az://CONTAINER/PREFIX, gs://BUCKET/PREFIX or file:///PATH"
        ))
    })?;
    if !matches!(
        scheme,
        S::AmazonS3 | S::MicrosoftAzure | S::GoogleCloudStorage
    ) {
        return Err(Error::Invalid(format!(
            "unsupported object store URL `{u}`: use s3://BUCKET/PREFIX, \
             az://CONTAINER/PREFIX, gs://BUCKET/PREFIX or file:///PATH"
        )));
    }
    object_store::parse_url_opts(url, store_env_options(&scheme)).map_err(|e| {
        Error::Invalid(format!(
            "cannot open object store `{u}`: {e}. {}",
            store_settings_hint(&scheme)
        ))
    })
}

/// The `object_store` and path prefix for a remote store URL (`s3://…`,
/// `az://…`, `gs://…`), configured from the environment like the database's
/// own store ([`store_env_options`]): for places Strata writes to that are
/// not its store, such as export targets. A bad URL or missing settings give
/// an [`Error::Invalid`] naming what to set.
pub fn open_remote_url(u: &str) -> Result<(Box<dyn ObjectStore>, Path)> {
    let url = url::Url::parse(u).map_err(|e| Error::Invalid(format!("`{u}` is not a URL: {e}")))?;
    open_url(&url, u)
}

/// Objects written once under a unique name and never modified: segments,
/// blooms and deletion vectors (everything under `tables/`). Only these are
/// cached or mapped by [`Storage::get`]; the log (rewritten by ERASE) and
/// manifests are always read from the store.
fn immutable(path: &str) -> bool {
    path.starts_with("tables/")
}

/// The OS error number beneath an object store error, if any.
fn os_error(e: &object_store::Error) -> Option<i32> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return io.raw_os_error();
        }
        source = s.source();
    }
    None
}

impl Storage {
    /// Open a store with the default cache settings (see [`CacheConfig`]).
    pub fn open(location: &StoreLocation) -> Result<Storage> {
        Storage::open_with_cache(location, &CacheConfig::default())
    }

    /// Open a store; a remote one (`Url` other than `file://`, `Custom`) gets
    /// a disk cache set up by `cache`. Local and memory stores ignore it.
    pub fn open_with_cache(location: &StoreLocation, cache: &CacheConfig) -> Result<Storage> {
        let mut s = Storage::open_uncached(location)?;
        s.inner = Arc::new(CountingStore {
            inner: s.inner.clone(),
            counts: s.requests.clone(),
        });
        if s.local_root.is_none() && !matches!(location, StoreLocation::Memory) {
            let limit = cache.size.unwrap_or(DEFAULT_CACHE_SIZE);
            if limit > 0 {
                let dir = cache.resolve_dir(&s.description);
                s.cache = Some(DiskCache::open(&dir, limit)?);
            }
        }
        Ok(s)
    }

    fn open_uncached(location: &StoreLocation) -> Result<Storage> {
        match location {
            StoreLocation::Local(dir) => {
                let not_writable = |e: std::io::Error| Error::NotWritable {
                    path: dir.display().to_string(),
                    reason: e.to_string(),
                    kind: crate::error::io_kind(&e),
                };
                std::fs::create_dir_all(dir).map_err(not_writable)?;
                let dir = std::fs::canonicalize(dir).map_err(not_writable)?;
                probe_writable(&dir).map_err(not_writable)?;
                let inner = LocalFileSystem::new_with_prefix(&dir)?;
                Ok(Storage {
                    inner: Arc::new(inner),
                    local_root: Some(dir.clone()),
                    fault: None,
                    description: dir.display().to_string(),
                    cache: None,
                    requests: Default::default(),
                })
            }
            StoreLocation::Memory => Ok(Storage {
                inner: Arc::new(InMemory::new()),
                local_root: None,
                fault: None,
                description: "memory".to_string(),
                cache: None,
                requests: Default::default(),
            }),
            StoreLocation::Custom { store, name } => Ok(Storage {
                inner: store.clone(),
                local_root: None,
                fault: None,
                description: name.clone(),
                cache: None,
                requests: Default::default(),
            }),
            StoreLocation::Url(u) => {
                let url = url::Url::parse(u)
                    .map_err(|e| Error::Invalid(format!("bad object store URL `{u}`: {e}")))?;
                if url.scheme() == "file" {
                    let path = url.to_file_path().map_err(|_| {
                        Error::Invalid(format!("bad file URL `{u}`: not an absolute path"))
                    })?;
                    return Storage::open_uncached(&StoreLocation::Local(path));
                }
                let (store, prefix) = open_url(&url, u)?;
                let inner: Arc<dyn ObjectStore> = if prefix.as_ref().is_empty() {
                    Arc::from(store)
                } else {
                    Arc::new(object_store::prefix::PrefixStore::new(store, prefix))
                };
                Ok(Storage {
                    inner,
                    local_root: None,
                    fault: None,
                    description: u.clone(),
                    cache: None,
                    requests: Default::default(),
                })
            }
        }
    }

    pub fn with_fault_hook(mut self, hook: Arc<dyn FaultHook>) -> Self {
        self.fault = Some(hook);
        self
    }

    /// Requests sent to the object store so far, by kind.
    pub fn request_counts(&self) -> [(&'static str, u64); 6] {
        self.requests.snapshot()
    }

    pub fn describe(&self) -> &str {
        &self.description
    }

    /// The disk cache's state and counters; `None` when there is no cache
    /// (local or memory store, or `--cache-size 0`).
    pub fn cache_stats(&self) -> Option<CacheStats> {
        self.cache.as_ref().map(|c| c.stats())
    }

    /// The local path of an object, when the store is a local directory.
    pub fn local_path(&self, path: &str) -> Option<PathBuf> {
        self.local_root.as_ref().map(|r| r.join(path))
    }

    fn check_fault(&self, path: &str) -> Result<()> {
        if let Some(f) = &self.fault {
            f.before_write(path)?;
        }
        Ok(())
    }

    /// Make a just-written local object durable: fsync the file, then its directory.
    async fn sync_local(&self, path: &str) -> Result<()> {
        let Some(root) = &self.local_root else {
            return Ok(());
        };
        let file = root.join(path);
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            std::fs::File::open(&file)?.sync_all()?;
            if let Some(dir) = file.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
            Ok(())
        })
        .await
        .map_err(|e| Error::Internal(format!("fsync task failed: {e}")))??;
        Ok(())
    }

    /// Write `data` at `path` only if nothing is there yet. Durable when it returns `Created`.
    pub async fn create(&self, path: &str, data: Bytes) -> Result<CreateOutcome> {
        self.check_fault(path)?;
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .inner
            .put_opts(&Path::from(path), PutPayload::from_bytes(data), opts)
            .await
        {
            Ok(_) => {
                self.sync_local(path).await?;
                Ok(CreateOutcome::Created)
            }
            Err(object_store::Error::AlreadyExists { .. }) => Ok(CreateOutcome::AlreadyExists),
            Err(e) => Err(e.into()),
        }
    }

    /// Write (or overwrite) `data` at `path`, durably.
    pub async fn put(&self, path: &str, data: Bytes) -> Result<()> {
        self.check_fault(path)?;
        if let Some(c) = &self.cache {
            c.invalidate(path);
        }
        self.inner
            .put(&Path::from(path), PutPayload::from_bytes(data))
            .await?;
        self.sync_local(path).await
    }

    /// A sink to write a new immutable object into as it is produced (a
    /// segment file being encoded): on a local directory, a temporary file
    /// beside `path`, renamed into place by [`Storage::finish_sink`], so the
    /// encoded object is never held in memory; elsewhere a buffer, put whole.
    pub fn sink(&self, path: &str) -> Result<ObjectSink> {
        self.check_fault(path)?;
        let Some(root) = &self.local_root else {
            return Ok(ObjectSink::Memory(Vec::new()));
        };
        let dest = root.join(path);
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = dest.with_file_name(format!(
            "{}.{}.tmp",
            dest.file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("object"),
            crate::engine::flush_tag()
        ));
        let file = std::fs::File::create(&tmp)?;
        Ok(ObjectSink::File {
            out: Some(std::io::BufWriter::with_capacity(1 << 20, file)),
            tmp,
        })
    }

    /// Publish what was written into `sink` at `path`, durably.
    pub async fn finish_sink(&self, path: &str, mut sink: ObjectSink) -> Result<()> {
        match &mut sink {
            ObjectSink::Memory(buf) => self.put(path, Bytes::from(std::mem::take(buf))).await,
            ObjectSink::File { out, tmp } => {
                let tmp = tmp.clone();
                self.check_fault(path)?;
                let w = out.take().expect("a sink is finished once");
                let dest = self
                    .local_root
                    .as_ref()
                    .expect("a file sink belongs to a local store")
                    .join(path);
                let tmp2 = tmp.clone();
                let done = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                    let file = w.into_inner().map_err(|e| e.into_error())?;
                    file.sync_all()?;
                    std::fs::rename(&tmp2, &dest)?;
                    if let Some(dir) = dest.parent() {
                        std::fs::File::open(dir)?.sync_all()?;
                    }
                    Ok(())
                })
                .await
                .map_err(|e| Error::Internal(format!("fsync task failed: {e}")))?;
                if done.is_err() {
                    let _ = std::fs::remove_file(&tmp);
                }
                Ok(done?)
            }
        }
    }

    /// Read a whole object; `Ok(None)` if it does not exist. Immutable
    /// objects (segments, blooms, deletion vectors) come from
    /// [`Storage::get_mapped`]; the log and manifests are read from the store.
    pub async fn get(&self, path: &str) -> Result<Option<Bytes>> {
        if immutable(path) && (self.cache.is_some() || self.local_root.is_some()) {
            return self.get_mapped(path).await;
        }
        self.get_uncached(path).await
    }

    async fn get_uncached(&self, path: &str) -> Result<Option<Bytes>> {
        match self.inner.get(&Path::from(path)).await {
            Ok(r) => Ok(Some(r.bytes().await?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            // On a local directory, a path whose parent is a file (ENOTDIR)
            // cannot hold an object: absent, not an ambiguous failure (a
            // commit's read-back then knows its write did not land).
            Err(e) if self.local_root.is_some() && os_error(&e) == Some(20) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Read a whole immutable object without copying it: `Bytes` backed by a
    /// memory map (`arrow::buffer::Buffer::from(bytes)` builds arrow buffers
    /// on it). `Ok(None)` if it does not exist.
    ///
    /// - Local directory: the file itself is mapped, in place.
    /// - Remote store: the object is fetched into the disk cache (once, for
    ///   concurrent callers) and the cached file mapped. While any `Bytes`
    ///   sharing that mapping lives, the file is pinned: never evicted. An
    ///   object that cannot fit in the cache is returned from memory uncached.
    /// - Memory store: the stored `Bytes` themselves.
    ///
    /// Only for objects that are never modified after they are written (a
    /// cached copy is served without asking the store again).
    pub async fn get_mapped(&self, path: &str) -> Result<Option<Bytes>> {
        if let Some(c) = &self.cache {
            return c.get(self.inner.as_ref(), path).await;
        }
        let Some(root) = &self.local_root else {
            return self.get_uncached(path).await;
        };
        let file = match std::fs::File::open(root.join(path)) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Ok(Some(match map_file(&file)? {
            Some(map) => Bytes::from_owner(map),
            None => Bytes::new(),
        }))
    }

    /// Read `range` of an immutable object (a footer, one batch): from the
    /// mapped file on a local store or a cached copy, else one ranged request
    /// to the store (not cached). `Ok(None)` if the object does not exist; a
    /// range past its end is an error.
    pub async fn get_range(&self, path: &str, range: Range<u64>) -> Result<Option<Bytes>> {
        let cached = match &self.cache {
            Some(c) => c.peek(path)?,
            None if self.local_root.is_some() => self.get_mapped(path).await?,
            None => None,
        };
        if let Some(b) = cached {
            if range.start > range.end || range.end > b.len() as u64 {
                return Err(Error::Invalid(format!(
                    "range {range:?} is outside object `{path}` of {} bytes",
                    b.len()
                )));
            }
            return Ok(Some(b.slice(range.start as usize..range.end as usize)));
        }
        if self.local_root.is_some() {
            return Ok(None);
        }
        match self.inner.get_range(&Path::from(path), range).await {
            Ok(b) => Ok(Some(b)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// All object paths under `prefix` (a folder), sorted.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let p = Path::from(prefix);
        let mut out: Vec<String> = self
            .inner
            .list(Some(&p))
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await?;
        out.sort();
        Ok(out)
    }

    /// All objects under `prefix` with their last-modified time (µs since
    /// the epoch) and size, sorted by path.
    pub async fn list_with_meta(&self, prefix: &str) -> Result<Vec<(String, i64, u64)>> {
        let p = Path::from(prefix);
        let mut out: Vec<(String, i64, u64)> = self
            .inner
            .list(Some(&p))
            .map_ok(|m| {
                (
                    m.location.to_string(),
                    m.last_modified.timestamp_micros(),
                    m.size,
                )
            })
            .try_collect()
            .await?;
        out.sort();
        Ok(out)
    }

    /// Delete an object (and its cached copy: no bytes of it stay on local
    /// disk once no reader maps them).
    pub async fn delete(&self, path: &str) -> Result<()> {
        self.check_fault(path)?;
        if let Some(c) = &self.cache {
            c.invalidate(path);
        }
        match self.inner.delete(&Path::from(path)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// An object store that waits `latency` before every request it passes on
/// to `inner`, and counts requests: a stand-in for S3 in tests and benches.
#[derive(Debug)]
pub struct LatencyStore {
    inner: Arc<dyn ObjectStore>,
    latency: Duration,
    requests: std::sync::atomic::AtomicU64,
    gets: std::sync::atomic::AtomicU64,
}

impl LatencyStore {
    pub fn new(inner: Arc<dyn ObjectStore>, latency: Duration) -> LatencyStore {
        LatencyStore {
            inner,
            latency,
            requests: Default::default(),
            gets: Default::default(),
        }
    }

    /// An in-memory store with `latency` per request.
    pub fn memory(latency: Duration) -> Arc<LatencyStore> {
        Arc::new(LatencyStore::new(Arc::new(InMemory::new()), latency))
    }

    /// Requests of any kind so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// GET requests (whole or ranged) so far.
    pub fn gets(&self) -> u64 {
        self.gets.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A `StoreLocation` over this store, named `name`.
    pub fn location(self: &Arc<Self>, name: &str) -> StoreLocation {
        StoreLocation::Custom {
            store: self.clone(),
            name: name.to_string(),
        }
    }

    async fn wait(&self) {
        self.requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tokio::time::sleep(self.latency).await;
    }
}

impl std::fmt::Display for LatencyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LatencyStore({:?}, {})", self.latency, self.inner)
    }
}

#[async_trait]
impl ObjectStore for LatencyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.wait().await;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.wait().await;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.gets.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.wait().await;
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.gets.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.wait().await;
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let latency = self.latency;
        let inner = self.inner.clone();
        futures::stream::once(async move {
            tokio::time::sleep(latency).await;
            inner.delete_stream(locations)
        })
        .flatten()
        .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.requests
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let latency = self.latency;
        let inner = self.inner.list(prefix);
        futures::stream::once(async move {
            tokio::time::sleep(latency).await;
            inner
        })
        .flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.wait().await;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.wait().await;
        self.inner.copy_opts(from, to, options).await
    }
}

/// What a [`FaultyStore`] injects, each a probability per request (0 to 1).
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// A write (put, create, copy, the start of a multipart upload) fails
    /// before it reaches the store.
    pub write_error: f64,
    /// A write that succeeded in the store returns an error anyway: the
    /// response was lost (a timeout, a dropped connection).
    pub dropped_response: f64,
    /// A conditional create that succeeded in the store returns
    /// `AlreadyExists`: its response was lost and the client's own retry
    /// of the request got 412 (what object_store's S3 client does on a
    /// timeout).
    pub own_retry_conflict: f64,
    /// A read (get, head, ranged get, list) fails.
    pub read_error: f64,
    /// Latency added to every request, drawn evenly from `0..=max_latency`.
    pub max_latency: Duration,
}

impl Faults {
    /// No faults at all.
    pub fn none() -> Faults {
        Faults::default()
    }
}

/// What a [`FaultyStore`] has injected so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultCounts {
    pub write_errors: u64,
    pub dropped_responses: u64,
    pub own_retry_conflicts: u64,
    pub read_errors: u64,
}

/// An object store that injects faults into the requests it passes on to
/// `inner`, at random from a seed (see [`Faults`]), and one-shot faults a
/// test arms for the next write to a path prefix. For tests of ambiguous
/// outcomes: a write that landed but whose caller got an error. Deletes get
/// latency only.
#[derive(Debug)]
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    state: parking_lot::Mutex<FaultState>,
}

#[derive(Debug)]
struct FaultState {
    faults: Faults,
    /// splitmix64
    rng: u64,
    counts: FaultCounts,
    /// Path prefixes whose next successful write is followed by this many
    /// failing reads, and whether its response is lost too.
    drop_next: Vec<(String, u32, bool)>,
    /// Reads that fail from now on.
    fail_reads: u32,
}

enum Injected {
    None,
    /// The response is lost; then this many reads fail.
    Dropped(u32),
    /// The write succeeds; then this many reads fail.
    ThenFailReads(u32),
    OwnRetryConflict,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn ObjectStore>, faults: Faults, seed: u64) -> FaultyStore {
        FaultyStore {
            inner,
            state: parking_lot::Mutex::new(FaultState {
                faults,
                rng: seed,
                counts: FaultCounts::default(),
                drop_next: Vec::new(),
                fail_reads: 0,
            }),
        }
    }

    /// An in-memory store with these faults.
    pub fn memory(faults: Faults, seed: u64) -> Arc<FaultyStore> {
        Arc::new(FaultyStore::new(Arc::new(InMemory::new()), faults, seed))
    }

    /// Change the faults from now on (`Faults::none()` turns them off).
    pub fn set_faults(&self, faults: Faults) {
        self.state.lock().faults = faults;
    }

    /// The next successful write to a path starting with `prefix` lands
    /// but returns an error (once).
    pub fn drop_next_response(&self, prefix: &str) {
        self.drop_next_response_then_fail_reads(prefix, 0);
    }

    /// Like [`FaultyStore::drop_next_response`], and the `reads` reads
    /// after that write fail (its writer cannot find out what happened).
    pub fn drop_next_response_then_fail_reads(&self, prefix: &str, reads: u32) {
        self.state
            .lock()
            .drop_next
            .push((prefix.to_string(), reads, true));
    }

    /// The next successful write to a path starting with `prefix` succeeds
    /// (and says so), and the `reads` reads after it fail.
    pub fn fail_reads_after_next_write(&self, prefix: &str, reads: u32) {
        self.state
            .lock()
            .drop_next
            .push((prefix.to_string(), reads, false));
    }

    pub fn counts(&self) -> FaultCounts {
        self.state.lock().counts
    }

    /// A `StoreLocation` over this store, named `name`.
    pub fn location(self: &Arc<Self>, name: &str) -> StoreLocation {
        StoreLocation::Custom {
            store: self.clone(),
            name: name.to_string(),
        }
    }

    fn injected(what: &str, path: &str) -> object_store::Error {
        object_store::Error::Generic {
            store: "FaultyStore",
            source: format!("injected fault: {what} ({path})").into(),
        }
    }

    /// A random delay, and whether a read fails.
    fn before_read(&self, path: &str) -> (Duration, object_store::Result<()>) {
        let mut s = self.state.lock();
        let d = s.latency();
        let f = s.faults.clone();
        if s.fail_reads > 0 || s.chance(f.read_error) {
            s.fail_reads = s.fail_reads.saturating_sub(1);
            s.counts.read_errors += 1;
            return (d, Err(Self::injected("read failed", path)));
        }
        (d, Ok(()))
    }

    /// A random delay, whether a write fails before the store, and what
    /// happens to its response.
    fn before_write(&self, path: &str, create: bool) -> (Duration, object_store::Result<Injected>) {
        let mut s = self.state.lock();
        let d = s.latency();
        let f = s.faults.clone();
        if s.chance(f.write_error) {
            s.counts.write_errors += 1;
            return (d, Err(Self::injected("write failed", path)));
        }
        if let Some(i) = s
            .drop_next
            .iter()
            .position(|(p, _, _)| path.starts_with(p.as_str()))
        {
            let (_, reads, drop) = s.drop_next.remove(i);
            let injected = if drop {
                Injected::Dropped(reads)
            } else {
                Injected::ThenFailReads(reads)
            };
            return (d, Ok(injected));
        }
        if s.chance(f.dropped_response) {
            return (d, Ok(Injected::Dropped(0)));
        }
        if create && s.chance(f.own_retry_conflict) {
            return (d, Ok(Injected::OwnRetryConflict));
        }
        (d, Ok(Injected::None))
    }

    fn after_write<T>(
        &self,
        path: &str,
        result: object_store::Result<T>,
        injected: Injected,
        create: bool,
    ) -> object_store::Result<T> {
        if result.is_err() {
            return result;
        }
        let mut s = self.state.lock();
        match injected {
            Injected::None => result,
            Injected::OwnRetryConflict if create => {
                s.counts.own_retry_conflicts += 1;
                Err(object_store::Error::AlreadyExists {
                    path: path.to_string(),
                    source: "injected fault: the client's retry of a create that landed".into(),
                })
            }
            Injected::ThenFailReads(reads) => {
                s.fail_reads += reads;
                result
            }
            Injected::Dropped(reads) => {
                s.counts.dropped_responses += 1;
                s.fail_reads += reads;
                Err(Self::injected("response lost after the write", path))
            }
            Injected::OwnRetryConflict => {
                s.counts.dropped_responses += 1;
                Err(Self::injected("response lost after the write", path))
            }
        }
    }
}

impl FaultState {
    fn next(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    fn latency(&mut self) -> Duration {
        let max = self.faults.max_latency.as_micros() as u64;
        if max == 0 {
            return Duration::ZERO;
        }
        Duration::from_micros(self.next() % (max + 1))
    }
}

async fn pause(d: Duration) {
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}

impl std::fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FaultyStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let create = matches!(opts.mode, PutMode::Create);
        let (d, injected) = self.before_write(location.as_ref(), create);
        pause(d).await;
        let injected = injected?;
        let r = self.inner.put_opts(location, payload, opts).await;
        self.after_write(location.as_ref(), r, injected, create)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let (d, injected) = self.before_write(location.as_ref(), false);
        pause(d).await;
        injected?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let (d, r) = self.before_read(location.as_ref());
        pause(d).await;
        r?;
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        let (d, r) = self.before_read(location.as_ref());
        pause(d).await;
        r?;
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let d = self.state.lock().latency();
        let inner = self.inner.clone();
        futures::stream::once(async move {
            pause(d).await;
            inner.delete_stream(locations)
        })
        .flatten()
        .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let what = prefix.map(|p| p.to_string()).unwrap_or_default();
        let (d, r) = self.before_read(&what);
        let inner = self.inner.list(prefix);
        futures::stream::once(async move {
            pause(d).await;
            match r {
                Ok(()) => inner,
                Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
            }
        })
        .flatten()
        .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let what = prefix.map(|p| p.to_string()).unwrap_or_default();
        let (d, r) = self.before_read(&what);
        pause(d).await;
        r?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        let (d, injected) = self.before_write(to.as_ref(), false);
        pause(d).await;
        let injected = injected?;
        let r = self.inner.copy_opts(from, to, options).await;
        self.after_write(to.as_ref(), r, injected, false)
    }
}

/// Requests sent to the object store, by kind, since the node started
/// (`strata_requests`): what a node costs on S3, GCS or Azure, where each
/// request is billed. HEAD is a GET asking for metadata only.
#[derive(Debug, Default)]
pub struct RequestCounts {
    pub get: std::sync::atomic::AtomicU64,
    pub head: std::sync::atomic::AtomicU64,
    pub put: std::sync::atomic::AtomicU64,
    pub list: std::sync::atomic::AtomicU64,
    pub delete: std::sync::atomic::AtomicU64,
    pub copy: std::sync::atomic::AtomicU64,
}

impl RequestCounts {
    /// `(kind, requests)`, in a fixed order.
    pub fn snapshot(&self) -> [(&'static str, u64); 6] {
        let g = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        [
            ("GET", g(&self.get)),
            ("HEAD", g(&self.head)),
            ("PUT", g(&self.put)),
            ("LIST", g(&self.list)),
            ("DELETE", g(&self.delete)),
            ("COPY", g(&self.copy)),
        ]
    }
}

fn bump(c: &std::sync::atomic::AtomicU64) {
    c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// An object store that counts the requests sent through it by kind.
#[derive(Debug)]
pub(crate) struct CountingStore {
    inner: Arc<dyn ObjectStore>,
    counts: Arc<RequestCounts>,
}

impl std::fmt::Display for CountingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Counting({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for CountingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        bump(&self.counts.put);
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        // The upload's creation; its parts and completion are not counted.
        bump(&self.counts.put);
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        bump(if options.head {
            &self.counts.head
        } else {
            &self.counts.get
        });
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        for _ in ranges {
            bump(&self.counts.get);
        }
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let counts = self.counts.clone();
        let counted = locations
            .map(move |l| {
                bump(&counts.delete);
                l
            })
            .boxed();
        self.inner.delete_stream(counted)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        bump(&self.counts.list);
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        bump(&self.counts.list);
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        bump(&self.counts.copy);
        self.inner.copy_opts(from, to, options).await
    }
}
