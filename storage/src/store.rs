//! Object store access: the few operations Strata needs (conditional create,
//! put, get, list, delete) over any `object_store` backend, plus the fsync that
//! `LocalFileSystem` does not do, and a fault-injection hook for recovery tests.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use crate::error::{Error, Result};

/// Where the durable state lives.
#[derive(Debug, Clone)]
pub enum StoreLocation {
    /// A directory on the local filesystem (created if missing).
    Local(PathBuf),
    /// An object store URL such as `s3://bucket/prefix`. S3 settings
    /// (endpoint, credentials, region) come from the usual `AWS_*` variables.
    Url(String),
    /// Nothing durable: for tests and scratch work.
    Memory,
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

impl Storage {
    pub fn open(location: &StoreLocation) -> Result<Storage> {
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
                })
            }
            StoreLocation::Memory => Ok(Storage {
                inner: Arc::new(InMemory::new()),
                local_root: None,
                fault: None,
                description: "memory".to_string(),
            }),
            StoreLocation::Url(u) => {
                let url = url::Url::parse(u)
                    .map_err(|e| Error::Invalid(format!("bad object store URL `{u}`: {e}")))?;
                if url.scheme() == "file" {
                    let path = url.to_file_path().map_err(|_| {
                        Error::Invalid(format!("bad file URL `{u}`: not an absolute path"))
                    })?;
                    return Storage::open(&StoreLocation::Local(path));
                }
                let opts: Vec<(String, String)> = std::env::vars()
                    .filter(|(k, _)| k.starts_with("AWS_"))
                    .map(|(k, v)| (k.to_ascii_lowercase(), v))
                    .collect();
                let (store, prefix) = object_store::parse_url_opts(&url, opts)?;
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
                })
            }
        }
    }

    pub fn with_fault_hook(mut self, hook: Arc<dyn FaultHook>) -> Self {
        self.fault = Some(hook);
        self
    }

    pub fn describe(&self) -> &str {
        &self.description
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
        self.inner
            .put(&Path::from(path), PutPayload::from_bytes(data))
            .await?;
        self.sync_local(path).await
    }

    /// Read a whole object; `Ok(None)` if it does not exist.
    pub async fn get(&self, path: &str) -> Result<Option<Bytes>> {
        match self.inner.get(&Path::from(path)).await {
            Ok(r) => Ok(Some(r.bytes().await?)),
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

    pub async fn delete(&self, path: &str) -> Result<()> {
        self.check_fault(path)?;
        match self.inner.delete(&Path::from(path)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// An object's bytes for zero-copy reading: memory-mapped in place on a
    /// local directory, fetched whole otherwise. `Ok(None)` if it does not exist.
    pub async fn get_mapped(&self, path: &str) -> Result<Option<Bytes>> {
        if let Some(file) = self.local_path(path) {
            return tokio::task::spawn_blocking(move || -> Result<Option<Bytes>> {
                let f = match std::fs::File::open(&file) {
                    Ok(f) => f,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => return Err(e.into()),
                };
                if f.metadata()?.len() == 0 {
                    return Ok(Some(Bytes::new()));
                }
                // SAFETY: objects are immutable once written (a rewrite goes
                // to a new name), so the mapped bytes do not change under us.
                let map = unsafe { memmap2::Mmap::map(&f)? };
                Ok(Some(Bytes::from_owner(map)))
            })
            .await
            .map_err(|e| Error::Internal(format!("mmap task failed: {e}")))?;
        }
        self.get(path).await
    }
}
