//! How to open a database: where the data lives and a few engine settings.

use std::path::PathBuf;
use std::sync::Arc;

use strata_storage::{CompactionConfig, EngineConfig, GcConfig, StoreLocation, TestClock};

/// Default data directory for the CLI and the server.
pub const DEFAULT_DATA_DIR: &str = "./strata-data";

#[derive(Debug, Clone)]
pub struct Config {
    pub location: StoreLocation,
    /// `(start µs, step µs)`: a deterministic clock for tests.
    pub test_clock: Option<(i64, i64)>,
    /// Flush the live index to segments past this many rectangles.
    pub flush_rows: usize,
    /// Compaction settings (defaults: 100 MiB segments, fan-out 4, in the background).
    pub compaction: CompactionConfig,
    /// Collection settings (defaults: 10 min grace, 24 h log retention).
    pub gc: GcConfig,
}

impl Config {
    pub fn dir(path: impl Into<PathBuf>) -> Config {
        Config::new(StoreLocation::Local(path.into()))
    }

    /// `s3://bucket/prefix`, `file:///path`, …; a plain path means a directory.
    pub fn url(url: &str) -> Config {
        if url.contains("://") {
            Config::new(StoreLocation::Url(url.to_string()))
        } else {
            Config::dir(url)
        }
    }

    pub fn memory() -> Config {
        Config::new(StoreLocation::Memory)
    }

    fn new(location: StoreLocation) -> Config {
        Config {
            location,
            test_clock: None,
            flush_rows: 1_000_000,
            compaction: CompactionConfig::default(),
            gc: GcConfig::default(),
        }
    }

    pub fn with_test_clock(mut self, start_us: i64, step_us: i64) -> Config {
        self.test_clock = Some((start_us, step_us));
        self
    }

    pub fn with_flush_rows(mut self, rows: usize) -> Config {
        self.flush_rows = rows;
        self
    }

    pub fn with_compaction(mut self, c: CompactionConfig) -> Config {
        self.compaction = c;
        self
    }

    pub fn with_gc(mut self, gc: GcConfig) -> Config {
        self.gc = gc;
        self
    }

    pub(crate) fn engine_config(&self) -> EngineConfig {
        let mut c = EngineConfig::new(self.location.clone());
        c.flush_rows = self.flush_rows;
        c.compaction = self.compaction.clone();
        c.gc = self.gc.clone();
        if let Some((start, step)) = self.test_clock {
            c.clock = Arc::new(TestClock::new(start, step));
        }
        c
    }
}

/// Parse `START,STEP` for `--test-clock`: START an RFC 3339 timestamp or
/// microseconds, STEP a duration like `1s`, `10ms`, `1d` or microseconds.
pub fn parse_test_clock(s: &str) -> Result<(i64, i64), String> {
    let (a, b) = s.split_once(',').ok_or_else(|| {
        format!("--test-clock wants START,STEP (e.g. 2020-01-01T00:00:00Z,1d), got `{s}`")
    })?;
    let start = match a.trim().parse::<i64>() {
        Ok(v) => v,
        Err(_) => chrono::DateTime::parse_from_rfc3339(a.trim())
            .map_err(|e| format!("bad START `{a}`: {e} (use RFC 3339, e.g. 2020-01-01T00:00:00Z)"))?
            .timestamp_micros(),
    };
    let b = b.trim();
    let step = if let Ok(v) = b.parse::<i64>() {
        v
    } else {
        let (num, unit) = b.split_at(b.find(|c: char| !c.is_ascii_digit()).unwrap_or(b.len()));
        let n: i64 = num.parse().map_err(|_| format!("bad STEP `{b}`"))?;
        let mult = match unit {
            "us" => 1,
            "ms" => 1_000,
            "s" => 1_000_000,
            "m" | "min" => 60_000_000,
            "h" => 3_600_000_000,
            "d" => 86_400_000_000,
            _ => {
                return Err(format!(
                    "bad STEP unit `{unit}`: use us, ms, s, min, h or d"
                ))
            }
        };
        n * mult
    };
    if step <= 0 {
        return Err("STEP must be positive".into());
    }
    Ok((start, step))
}
