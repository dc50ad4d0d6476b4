//! How to open a database: where the data lives and a few engine settings.

use std::path::PathBuf;
use std::sync::Arc;

use strata_query::RuntimeOptions;
use strata_storage::CacheConfig;
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
    /// The process memory budget in bytes (`--memory-limit`); `None`: no
    /// limit. Default: [`default_memory_limit`] (half the RAM). Query execution gets `strata_query::session::QUERY_MEMORY_SHARE`
    /// of it.
    pub memory_limit: Option<usize>,
    /// Where queries spill (`--spill-dir`); `None`: the system temp dir.
    pub spill_dir: Option<PathBuf>,
    /// The disk cache of a remote store (`--cache-dir`, `--cache-size`).
    pub cache: CacheConfig,
    /// A read-only node: writes are refused, nothing is written to the
    /// store (`strata serve --role reader`).
    pub read_only: bool,
    /// Where server-side `COPY … TO 'file'` may write (`--export-root`): a
    /// directory or an object store URL. `None`: such COPYs are refused.
    pub export_root: Option<String>,
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
            memory_limit: default_memory_limit(),
            spill_dir: None,
            cache: CacheConfig::default(),
            read_only: false,
            export_root: None,
        }
    }

    /// Any `object_store` implementation, treated as a remote store (reads
    /// through the disk cache): for tests and benches, e.g. a
    /// `strata_storage::LatencyStore`.
    pub fn location(location: StoreLocation) -> Config {
        Config::new(location)
    }

    /// Bound the process's memory (see [`Config::memory_limit`]).
    pub fn with_memory_limit(mut self, bytes: Option<usize>) -> Config {
        self.memory_limit = bytes;
        self
    }

    pub fn with_spill_dir(mut self, dir: impl Into<PathBuf>) -> Config {
        self.spill_dir = Some(dir.into());
        self
    }

    pub fn with_cache_dir(mut self, dir: impl Into<PathBuf>) -> Config {
        self.cache.dir = Some(dir.into());
        self
    }

    /// The disk cache's limit in bytes; 0 turns it off.
    pub fn with_cache_size(mut self, bytes: u64) -> Config {
        self.cache.size = Some(bytes);
        self
    }

    pub(crate) fn runtime_options(&self) -> RuntimeOptions {
        RuntimeOptions {
            spill_dir: self.spill_dir.clone(),
            export_root: self.export_root.clone(),
            ..RuntimeOptions::from_budget(self.memory_limit)
        }
    }

    /// Allow server-side `COPY … TO 'file'` exports under `root`: a
    /// directory or an object store URL (docs/copy.md "Files on the server").
    pub fn with_export_root(mut self, root: impl Into<String>) -> Config {
        self.export_root = Some(root.into());
        self
    }

    pub fn with_test_clock(mut self, start_us: i64, step_us: i64) -> Config {
        self.test_clock = Some((start_us, step_us));
        self
    }

    /// A read-only node (see [`Config::read_only`]).
    pub fn with_read_only(mut self, read_only: bool) -> Config {
        self.read_only = read_only;
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

    /// How long superseded segments and manifests stay readable (`--gc-grace`).
    pub fn with_gc_grace(mut self, grace: std::time::Duration) -> Config {
        self.gc.grace = grace;
        self
    }

    /// How long log records already in segments are kept (`--log-retention`).
    pub fn with_log_retention(mut self, keep: std::time::Duration) -> Config {
        self.gc.log_retention = keep;
        self
    }

    pub(crate) fn engine_config(&self) -> EngineConfig {
        let mut c = EngineConfig::new(self.location.clone());
        c.flush_rows = self.flush_rows;
        c.compaction = self.compaction.clone();
        c.gc = self.gc.clone();
        c.memory_limit = self.memory_limit;
        c.cache = self.cache.clone();
        c.read_only = self.read_only;
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
    let step = match b.parse::<i64>() {
        Ok(v) => v,
        Err(_) => parse_duration_us(b).map_err(|e| format!("bad STEP `{b}`: {e}"))?,
    };
    if step <= 0 {
        return Err("STEP must be positive".into());
    }
    Ok((start, step))
}

/// A duration in microseconds: a number and a unit (`us`, `ms`, `s`, `min`
/// or `m`, `h`, `d`), e.g. `500ms`, `10min`, `24h`; `0` alone is zero.
fn parse_duration_us(s: &str) -> Result<i64, String> {
    let t = s.trim();
    if t == "0" {
        return Ok(0);
    }
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: i64 = num
        .parse()
        .map_err(|_| "use a whole number and a unit, e.g. 10min, 24h, 0s".to_string())?;
    let mult: i64 = match unit.trim() {
        "us" => 1,
        "ms" => 1_000,
        "s" => 1_000_000,
        "m" | "min" => 60_000_000,
        "h" => 3_600_000_000,
        "d" => 86_400_000_000,
        "" => {
            return Err(format!(
                "`{t}` has no unit: use us, ms, s, min, h or d (e.g. {t}s)"
            ))
        }
        u => return Err(format!("unknown unit `{u}`: use us, ms, s, min, h or d")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{t}` is too long"))
}

/// Parse a setting's duration ([`parse_duration_us`]'s forms); `what` names
/// the setting in the error.
pub fn parse_duration(s: &str, what: &str) -> Result<std::time::Duration, String> {
    let us = parse_duration_us(s).map_err(|e| format!("{what}: bad duration `{s}`: {e}"))?;
    Ok(std::time::Duration::from_micros(us as u64))
}

/// Share of the machine's RAM the default `--memory-limit` takes: 50%.
pub const DEFAULT_MEMORY_SHARE: f64 = 0.5;

/// The machine's RAM (`MemTotal` of /proc/meminfo), if known.
pub fn total_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line
        .trim_start_matches("MemTotal:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// The default memory budget: [`DEFAULT_MEMORY_SHARE`] of the machine's
/// RAM; `None` (no limit) where the RAM cannot be read.
pub fn default_memory_limit() -> Option<usize> {
    total_memory().map(|t| ((t as f64) * DEFAULT_MEMORY_SHARE) as usize)
}

/// Parse a size: bytes (`1048576`), or a number and a unit: `KiB`, `MiB`,
/// `GiB`, `TiB` (powers of 1024; `K`, `M`, `G`, `T` mean the same), `kB`,
/// `MB`, `GB`, `TB` (powers of 1000), `B`. Case does not matter; `1.5GiB` is
/// fine. `what` names the setting in the error.
pub fn parse_size(s: &str, what: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad =
        || format!("{what}: bad size `{s}` (use bytes or a number with a unit: 512MiB, 3GiB, 2GB)");
    if num.is_empty() {
        return Err(bad());
    }
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024.0 * 1024.0,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "t" | "tib" => 1024.0f64.powi(4),
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        _ => return Err(bad()),
    };
    let n: f64 = num.parse().map_err(|_| bad())?;
    let v = n * mult;
    if !v.is_finite() || v >= u64::MAX as f64 {
        return Err(bad());
    }
    Ok(v.round() as u64)
}

/// Parse `--memory-limit`: a size ([`parse_size`]), a share of the RAM
/// (`50%`), or `none` / `unlimited`. Refuses less than 16 MiB (too little to
/// plan a query in).
pub fn parse_memory_limit(s: &str) -> Result<Option<usize>, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("none") || t.eq_ignore_ascii_case("unlimited") {
        return Ok(None);
    }
    let bytes = if let Some(p) = t.strip_suffix('%') {
        let p: f64 = p
            .trim()
            .parse()
            .map_err(|_| format!("--memory-limit: bad share `{s}` (use e.g. 50%)"))?;
        if !(p > 0.0 && p <= 100.0) {
            return Err(format!(
                "--memory-limit: share `{s}` must be above 0% and at most 100%"
            ));
        }
        let total = total_memory().ok_or_else(|| {
            format!("--memory-limit {s}: cannot read the machine's RAM from /proc/meminfo; give a size such as 4GiB")
        })?;
        (total as f64 * p / 100.0) as u64
    } else {
        parse_size(t, "--memory-limit")?
    };
    if bytes < 16 << 20 {
        return Err(format!(
            "--memory-limit {s} is below the 16MiB minimum (give e.g. 512MiB or 3GiB)"
        ));
    }
    Ok(Some(usize::try_from(bytes).unwrap_or(usize::MAX)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("3GiB", "x"), Ok(3 << 30));
        assert_eq!(parse_size("512MiB", "x"), Ok(512 << 20));
        assert_eq!(parse_size("512mib", "x"), Ok(512 << 20));
        assert_eq!(parse_size("2GB", "x"), Ok(2_000_000_000));
        assert_eq!(parse_size("1.5G", "x"), Ok(3 << 29));
        assert_eq!(parse_size("4096", "x"), Ok(4096));
        assert_eq!(parse_size(" 10 KiB ", "x"), Ok(10240));
        let e = parse_size("3 gigs", "--cache-size").unwrap_err();
        assert!(e.contains("--cache-size") && e.contains("3 gigs"), "{e}");
        assert!(parse_size("GiB", "x").is_err());
        assert!(parse_size("", "x").is_err());
        assert!(parse_size("1.2.3M", "x").is_err());
    }

    #[test]
    fn durations() {
        use std::time::Duration;
        assert_eq!(parse_duration("10min", "x"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("24h", "x"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("0s", "x"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0", "x"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("250ms", "x"), Ok(Duration::from_millis(250)));
        let e = parse_duration("10", "--gc-grace").unwrap_err();
        assert!(e.contains("--gc-grace") && e.contains("no unit"), "{e}");
        assert!(parse_duration("-1s", "x").is_err());
        assert!(parse_duration("1 week", "x")
            .unwrap_err()
            .contains("unknown unit"));
        assert_eq!(parse_test_clock("0,1d").map(|c| c.1), Ok(86_400_000_000));
        assert!(parse_test_clock("0,1y").is_err());
    }

    #[test]
    fn memory_limits() {
        assert_eq!(parse_memory_limit("3GiB"), Ok(Some(3 << 30)));
        assert_eq!(parse_memory_limit("none"), Ok(None));
        assert!(parse_memory_limit("1MiB").unwrap_err().contains("minimum"));
        assert!(parse_memory_limit("0%").is_err());
        assert!(parse_memory_limit("150%").is_err());
        if let Some(total) = total_memory() {
            let half = parse_memory_limit("50%").unwrap().unwrap() as u64;
            assert!(half.abs_diff(total / 2) < 1024);
            assert_eq!(default_memory_limit(), Some((total / 2) as usize));
        }
    }
}
