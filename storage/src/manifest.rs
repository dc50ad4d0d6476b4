//! The manifest: which segments make up each table, as of which log sequence
//! number. Versions are JSON objects at `manifest/<version:020>.json`, each
//! written once with a conditional create.

use std::collections::BTreeMap;

use arrow::datatypes::Field;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::segment::SegmentMeta;
use crate::store::Storage;
use crate::time::Micros;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SegmentEntryManifest {
    #[serde(flatten)]
    pub meta: SegmentMeta,
    /// Object path of this segment's deletion vector, if it has dead rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_path: Option<String>,
    #[serde(default)]
    pub deleted_rows: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TableManifest {
    pub columns: Vec<Field>,
    pub segments: Vec<SegmentEntryManifest>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub version: u64,
    /// Every log record up to and including this sequence number is reflected
    /// in the segments; replay starts after it.
    pub log_seq: u64,
    /// System time of the last transaction at `log_seq`.
    pub last_system_time: Micros,
    /// Wall-clock time this version was written (µs since the epoch); the
    /// previous version's grace period for collection starts here.
    #[serde(default)]
    pub created_at: Micros,
    pub tables: BTreeMap<String, TableManifest>,
}

/// Version 2 added segment tiers, levels, sizes and per-batch statistics
/// (version 1 manifests are read too: their segments are level 0).
pub const FORMAT_VERSION: u32 = 2;

pub fn manifest_path(version: u64) -> String {
    format!("manifest/{version:020}.json")
}

impl Manifest {
    /// The newest manifest in the store, or an empty one (version 0).
    pub async fn load_latest(storage: &Storage) -> Result<Manifest> {
        Ok(Manifest::load_latest_sized(storage).await?.0)
    }

    /// The newest manifest and the bytes read for it.
    pub async fn load_latest_sized(storage: &Storage) -> Result<(Manifest, usize)> {
        let paths = storage.list("manifest").await?;
        let Some(last) = paths.iter().filter(|p| p.ends_with(".json")).max() else {
            return Ok((
                Manifest {
                    format: FORMAT_VERSION,
                    ..Default::default()
                },
                0,
            ));
        };
        let bytes = storage
            .get(last)
            .await?
            .ok_or_else(|| Error::NotFound(format!("manifest {last} vanished")))?;
        let m = Manifest::parse(last, &bytes)?;
        Ok((m, bytes.len()))
    }

    /// Parse and check one manifest object.
    pub fn parse(path: &str, bytes: &[u8]) -> Result<Manifest> {
        let last = &path.to_string();
        let m: Manifest = serde_json::from_slice(bytes).map_err(|e| Error::Corrupt {
            path: last.clone(),
            reason: format!("bad manifest JSON: {e}"),
        })?;
        if m.format != FORMAT_VERSION && m.format != 1 {
            return Err(Error::Corrupt {
                path: last.clone(),
                reason: format!(
                    "manifest format {} is not supported (this build reads {FORMAT_VERSION})",
                    m.format
                ),
            });
        }
        Ok(m)
    }

    pub fn to_bytes(&self) -> bytes::Bytes {
        bytes::Bytes::from(serde_json::to_vec_pretty(self).expect("manifest serializes"))
    }
}

/// A directory-safe name for a table's objects: the name with anything but
/// `[A-Za-z0-9_]` replaced, plus a hash so distinct names never collide.
pub fn table_dir(table: &str) -> String {
    let clean: String = table
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    let h = xxhash_rust::xxh3::xxh3_64(table.as_bytes()) as u32;
    format!("tables/{clean}-{h:08x}")
}
