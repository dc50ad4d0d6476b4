//! The segment reader's room: opening segment files (memory-mapped in place
//! on a local directory; through the local disk cache for remote stores) and
//! keeping the set of open files within a byte budget, so that mapped segment
//! data cannot grow the process without bound.
//!
//! A file stays open while it is among the most recently opened ones within
//! the budget; a scan that holds an `Arc<SegmentFile>` keeps its mapping alive
//! until it is done, even after the file was closed here.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use crate::error::{Error, Result};
use crate::segment::{Segment, SegmentFile};
use crate::store::Storage;

#[derive(Debug)]
pub struct OpenFiles {
    budget: usize,
    inner: Mutex<OpenInner>,
}

#[derive(Debug, Default)]
struct OpenInner {
    /// Open segments, oldest first, with the size counted for each.
    order: VecDeque<(Weak<Segment>, Weak<SegmentFile>, usize)>,
    bytes: usize,
}

impl OpenFiles {
    pub fn new(budget: usize) -> OpenFiles {
        OpenFiles {
            budget: budget.max(1),
            inner: Mutex::new(OpenInner::default()),
        }
    }

    /// Bytes of segment files open now (mapped or, for remote stores, cached).
    pub fn open_bytes(&self) -> usize {
        self.inner.lock().bytes
    }

    /// Open `seg`'s file (or return it if already open).
    pub async fn open(&self, storage: &Storage, seg: &Arc<Segment>) -> Result<Arc<SegmentFile>> {
        if let Some(f) = seg.opened() {
            return Ok(f);
        }
        let path = seg.meta.path.clone();
        let bytes = storage
            .get_mapped(&path)
            .await?
            .ok_or_else(|| Error::Corrupt {
                path: path.clone(),
                reason: "segment listed in the manifest is missing".into(),
            })?;
        let file = {
            let p = path.clone();
            tokio::task::spawn_blocking(move || SegmentFile::open(&p, bytes))
                .await
                .map_err(|e| Error::Internal(format!("segment open task failed: {e}")))??
        };
        if file.rows() as u64 != seg.meta.rows {
            return Err(Error::Corrupt {
                path,
                reason: format!(
                    "segment has {} rows, manifest says {}",
                    file.rows(),
                    seg.meta.rows
                ),
            });
        }
        let file = Arc::new(file);
        let size = file.size_bytes();
        let mut closed = Vec::new();
        {
            let mut slot = seg.file.lock();
            if let Some(f) = slot.as_ref() {
                // Opened concurrently: keep the first.
                return Ok(f.clone());
            }
            *slot = Some(file.clone());
        }
        {
            let mut g = self.inner.lock();
            g.order
                .push_back((Arc::downgrade(seg), Arc::downgrade(&file), size));
            g.bytes += size;
            while g.bytes > self.budget && g.order.len() > 1 {
                let (w, f, sz) = g.order.pop_front().unwrap();
                g.bytes -= sz;
                if let Some(s) = w.upgrade() {
                    closed.push((s, f));
                }
            }
        }
        // Close outside the lock (dropping a mapping may unmap).
        for (s, f) in closed {
            let mut slot = s.file.lock();
            if slot
                .as_ref()
                .is_some_and(|cur| Weak::ptr_eq(&Arc::downgrade(cur), &f))
            {
                slot.take();
            }
        }
        Ok(file)
    }
}
