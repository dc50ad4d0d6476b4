//! Strata storage: the transaction log, live index, segments and manifest on
//! object storage, and bitemporal resolution. Knows nothing of SQL.

pub mod cache;
pub mod compaction;
pub mod conflict;
pub mod engine;
pub mod entity;
pub mod error;
pub mod feed;
pub mod gc;
pub mod load;
pub mod log;
pub mod manifest;
pub mod prune;
pub mod reader;
pub mod reference;
pub mod schema;
pub mod segment;
pub mod store;
pub mod table;
pub mod temporal;
pub mod time;

pub use cache::{CacheConfig, CacheStats};
pub use compaction::CompactionConfig;
pub use engine::{
    CommitInfo, CommitMetrics, Engine, EngineConfig, OpenReport, PastScans, ScanMetrics,
    SegmentInfo, TableScan, TxRequest,
};
pub use entity::EntityId;
pub use error::{Error, ErrorKind, Result};
pub use feed::{ChangeFeed, FeedStart, LogFeed};
pub use gc::{GcConfig, GcReport};
pub use load::{BulkLoad, LoadOutcome};
pub use log::{Op, OpKind};
pub use prune::{CmpOp, ColumnPredicate, StatValue, Test};
pub use segment::Tier;
pub use store::{
    FaultCounts, FaultHook, Faults, FaultyStore, LatencyStore, ObjectSink, StoreLocation,
};
pub use temporal::{Coordinate, TimeSelector};
pub use time::{Clock, Micros, SystemClock, TestClock, OPEN};
