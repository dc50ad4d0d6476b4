//! Collection's room: deleting objects no manifest needs any more.
//!
//! - A manifest is needed while it is the newest, and for `grace` after its
//!   successor was created (a reader that planned against it may still open
//!   its segments). Manifests past that are deleted.
//! - A segment, bloom filter or deletion vector is kept while a needed
//!   manifest (or this node's own state) names it. Any other object under
//!   `tables/` older than `grace` is deleted: superseded inputs of a
//!   compaction, and the orphans of a flush or compaction that lost the
//!   manifest race or crashed before publishing. Objects younger than
//!   `grace` are never touched, so one being written right now is safe.
//! - A log record is deleted once every needed manifest covers it (its
//!   sequence number is at or below their `log_seq`) and it is older than
//!   `log_retention` (followers and change feeds read the log).

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::engine::{wall_clock_micros, Engine};
use crate::error::Result;
use crate::manifest::Manifest;

/// Garbage-collection settings.
#[derive(Debug, Clone)]
pub struct GcConfig {
    /// How long a superseded manifest (and what it names) stays readable.
    pub grace: Duration,
    /// How long log records behind the manifest watermark are kept.
    pub log_retention: Duration,
    /// How often the background task collects.
    pub interval: Duration,
}

impl Default for GcConfig {
    fn default() -> Self {
        GcConfig {
            grace: Duration::from_secs(10 * 60),
            log_retention: Duration::from_secs(24 * 60 * 60),
            interval: Duration::from_secs(60),
        }
    }
}

/// What one collection deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcReport {
    pub manifests_deleted: u64,
    pub objects_deleted: u64,
    pub log_records_deleted: u64,
    pub bytes_deleted: u64,
}

impl Engine {
    /// Delete what no manifest in its grace period needs (see the module docs).
    pub async fn collect_garbage(&self) -> Result<GcReport> {
        // No compaction of this node is writing outputs meanwhile, and (below)
        // no flush: what this node writes is either named by its state or
        // not written yet when the objects are listed.
        let _one = self.compacting.lock().await;
        let _w = self.writer.lock().await;
        let mut report = GcReport::default();
        let now = wall_clock_micros();
        let grace = self.gc.grace.as_micros() as i64;
        let retention = self.gc.log_retention.as_micros() as i64;
        let listed = self.storage.list_with_meta("manifest").await?;
        let mut manifests: Vec<(String, i64, Manifest)> = Vec::new();
        for (path, modified, _) in listed.into_iter().filter(|(p, _, _)| p.ends_with(".json")) {
            let Some(bytes) = self.storage.get(&path).await? else {
                continue;
            };
            let m = Manifest::parse(&path, &bytes)?;
            manifests.push((path, modified, m));
        }
        manifests.sort_by_key(|(_, _, m)| m.version);
        let Some(newest) = manifests.last().map(|(_, _, m)| m.version) else {
            return Ok(report);
        };
        let own_version = self.state.read().manifest_version;
        let mut kept: Vec<&Manifest> = Vec::new();
        let mut superseded: Vec<&str> = Vec::new();
        for (i, (path, _, m)) in manifests.iter().enumerate() {
            let needed = m.version == newest || m.version == own_version || {
                // Superseded when the next version was created.
                let (_, succ_modified, succ) = &manifests[i + 1];
                let at = if succ.created_at > 0 {
                    succ.created_at
                } else {
                    *succ_modified
                };
                now - at < grace
            };
            if needed {
                kept.push(m);
            } else {
                superseded.push(path);
            }
        }
        let mut needed: HashSet<String> = HashSet::new();
        for m in &kept {
            for tm in m.tables.values() {
                for se in &tm.segments {
                    needed.insert(se.meta.path.clone());
                    needed.insert(se.meta.bloom_path.clone());
                    if let Some(p) = &se.deleted_path {
                        needed.insert(p.clone());
                    }
                }
            }
        }
        // And whatever this node's state reads now (it may not be published yet).
        {
            let s = self.state.read();
            for t in s.tables.values() {
                for e in &t.segments {
                    needed.insert(e.seg.meta.path.clone());
                    needed.insert(e.seg.meta.bloom_path.clone());
                    if let Some(p) = &e.deleted_path {
                        needed.insert(p.clone());
                    }
                }
            }
        }
        let doomed: Vec<(String, u64)> = self
            .storage
            .list_with_meta("tables")
            .await?
            .into_iter()
            .filter(|(path, modified, _)| !needed.contains(path) && now - modified >= grace)
            .map(|(path, _, size)| (path, size))
            .collect();
        // What is doomed is decided: commits and flushes may go on while it
        // is deleted (a flush writes new names only; this node's compaction
        // stays locked out, so no merge re-creates a doomed output).
        drop(_w);
        // Manifests first: a crash between the two deletions must leave
        // objects no manifest names (collected next time), never a manifest
        // naming deleted objects.
        for path in superseded {
            self.storage.delete(path).await?;
            report.manifests_deleted += 1;
        }
        for (path, size) in doomed {
            self.storage.delete(&path).await?;
            report.objects_deleted += 1;
            report.bytes_deleted += size;
        }
        let covered = kept.iter().map(|m| m.log_seq).min().unwrap_or(0);
        for (path, modified, size) in self.storage.list_with_meta("log").await? {
            let Some(seq) = crate::log::seq_of(&path) else {
                continue;
            };
            if seq <= covered && now - modified >= retention {
                self.storage.delete(&path).await?;
                report.log_records_deleted += 1;
                report.bytes_deleted += size;
            }
        }
        self.counters
            .objects_collected
            .fetch_add(report.objects_deleted, Ordering::Relaxed);
        self.counters
            .log_records_collected
            .fetch_add(report.log_records_deleted, Ordering::Relaxed);
        Ok(report)
    }
}
