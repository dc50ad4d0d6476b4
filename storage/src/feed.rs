//! The change feed: one table's committed changes, read from the log in
//! commit order, as Arrow batches (docs/architecture.md "Change feed").
//!
//! A change is one row of a put, delete or erase event. Every change carries
//! the **position** of its transaction: `seq << 16 | index`, where `seq` is
//! the log record and `index` the transaction's place in that record (a
//! group commit holds several). Positions only grow, and they never change:
//! an ERASE rewrites old records without the erased rows but keeps every
//! transaction in its place. A consumer that saved the position of the last
//! transaction it processed resumes with [`FeedStart::After`] and gets every
//! later transaction once.
//!
//! The feed reads only records this node has applied, so it agrees with
//! reads on this node. It reads what the log retains: records that
//! collection deleted (`GcConfig::log_retention` after a manifest covers
//! them) cannot be replayed, and a feed that needs them is refused with an
//! error that says so.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{
    new_null_array, Array, ArrayRef, AsArray, Int64Array, RecordBatch, StringArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::log::{log_path, seq_of, LogRecord, Op, OpKind};
use crate::schema::{adapt_array, timestamp_type, TableSchema, ID, VALID_FROM, VALID_TO};
use crate::time::{fmt_micros, Micros};

/// Bits of a position that number the transaction inside its log record.
pub const TX_BITS: u32 = 16;

/// The change feed's own columns, before the table's.
pub const POSITION: &str = "_position";
pub const SYSTEM_TIME: &str = "_system_time";
pub const OP: &str = "_op";

/// Records kept in memory for open feeds (at most this many, and at most
/// [`RECENT_BYTES`]).
const RECENT_RECORDS: usize = 4096;
const RECENT_BYTES: usize = 64 << 20;
/// Rows per delivered batch (a bulk load's event is split).
const BATCH_ROWS: usize = 8192;

/// The position of transaction `tx` of log record `seq`.
pub fn position(seq: u64, tx: usize) -> i64 {
    ((seq << TX_BITS) | tx as u64) as i64
}

/// The log record and transaction index of a position.
pub fn split_position(p: i64) -> (u64, usize) {
    let p = p as u64;
    (p >> TX_BITS, (p & ((1 << TX_BITS) - 1)) as usize)
}

/// Where a feed starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedStart {
    /// The first transaction in the log.
    Beginning,
    /// Transactions after this position (a consumer's saved position).
    After(i64),
    /// Transactions at this system time or later (`inclusive`), or only
    /// after it.
    SystemTime { at: Micros, inclusive: bool },
    /// Transactions this node has not applied yet: the changes after a
    /// snapshot of the present (see [`Engine::applied_point`]).
    Position(i64),
}

/// The columns of a feed over a table with `schema`: position, system
/// time, operation, `_id`, the valid-time period, then the other columns.
pub fn feed_schema(schema: &TableSchema) -> SchemaRef {
    let mut fields = vec![
        Field::new(POSITION, DataType::Int64, false),
        Field::new(SYSTEM_TIME, timestamp_type(), false),
        Field::new(OP, DataType::Utf8, false),
    ];
    let mut rest = Vec::new();
    for f in &schema.columns {
        if f.name() == ID {
            fields.push(f.as_ref().clone());
        } else {
            rest.push(f.as_ref().clone());
        }
    }
    fields.push(Field::new(VALID_FROM, timestamp_type(), true));
    fields.push(Field::new(VALID_TO, timestamp_type(), true));
    fields.extend(rest);
    Arc::new(Schema::new(fields))
}

/// A record applied by `engine`: kept for open feeds. An erase drops every
/// kept record (its purge rewrites them), and its own record is not kept.
pub(crate) fn applied(engine: &Engine, rec: &LogRecord, erases: bool) {
    let mut recent = engine.recent.lock();
    if erases || engine.feeds.load(Ordering::SeqCst) == 0 {
        recent.clear();
        return;
    }
    if recent.back().is_some_and(|r| r.seq + 1 != rec.seq) {
        recent.clear();
    }
    recent.push_back(Arc::new(rec.clone()));
    let mut bytes: usize = recent.iter().map(|r| record_bytes(r)).sum();
    while recent.len() > RECENT_RECORDS || (bytes > RECENT_BYTES && recent.len() > 1) {
        if let Some(r) = recent.pop_front() {
            bytes -= record_bytes(&r);
        }
    }
}

fn record_bytes(r: &LogRecord) -> usize {
    r.txs
        .iter()
        .flat_map(|t| t.ops.iter())
        .map(|o| o.batch.get_array_memory_size())
        .sum()
}

/// Held from applying an own erase until its purge has rewritten the log.
pub(crate) struct Purging<'a>(&'a Engine);

impl<'a> Purging<'a> {
    pub(crate) fn start(engine: &'a Engine) -> Purging<'a> {
        engine.purging.fetch_add(1, Ordering::SeqCst);
        Purging(engine)
    }
}

impl Drop for Purging<'_> {
    fn drop(&mut self) {
        self.0.purging.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Engine {
    /// The last applied log record and the system time of its last
    /// transaction, read together: a snapshot as of that system time holds
    /// exactly the transactions at positions before `position(seq + 1, 0)`.
    pub fn applied_point(&self) -> (u64, Micros) {
        let s = self.state.read();
        (s.applied_seq, s.last_system_time)
    }

    /// The oldest log record still in the store (None: the log is empty).
    async fn oldest_log_seq(&self) -> Result<Option<u64>> {
        Ok(self
            .storage
            .list("log")
            .await?
            .iter()
            .filter_map(|p| seq_of(p))
            .min())
    }

    /// Log record `seq` as it stands after every erase this node has
    /// applied: never a copy from before an own erase's purge. None: not in
    /// the store (collected, or not written yet).
    pub(crate) async fn feed_record(&self, seq: u64) -> Result<Option<Arc<LogRecord>>> {
        loop {
            let epoch = self.erase_epoch.load(Ordering::SeqCst);
            if self.purging.load(Ordering::SeqCst) > 0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
                continue;
            }
            let kept = {
                let recent = self.recent.lock();
                recent.front().and_then(|f| {
                    let i = seq.checked_sub(f.seq)? as usize;
                    recent.get(i).filter(|r| r.seq == seq).cloned()
                })
            };
            let rec = match kept {
                Some(r) => Some(r),
                None => {
                    let path = log_path(seq);
                    match self.storage.get(&path).await? {
                        None => None,
                        Some(bytes) => Some(Arc::new(LogRecord::decode(&path, &bytes)?)),
                    }
                }
            };
            if self.erase_epoch.load(Ordering::SeqCst) == epoch
                && self.purging.load(Ordering::SeqCst) == 0
            {
                return Ok(rec);
            }
        }
    }

    /// The position of the first transaction at system time `t` or later
    /// (`inclusive`), or after it; the end of the applied log if none.
    pub async fn position_at(&self, t: Micros, inclusive: bool) -> Result<i64> {
        let (applied, _) = self.applied_point();
        let oldest = self.oldest_log_seq().await?.unwrap_or(applied + 1);
        let past = |time: Micros| if inclusive { time < t } else { time <= t };
        // Binary search over records for the first whose last transaction
        // is not past; empty records (knocks) take the next one's place.
        let (mut lo, mut hi) = (oldest.max(1), applied + 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let mut probe = mid;
            let mut last = None;
            while probe < hi {
                let rec = self.record_for_feed(probe, applied).await?;
                if let Some(tx) = rec.txs.last() {
                    last = Some(tx.system_time);
                    break;
                }
                probe += 1;
            }
            match last {
                None => hi = mid,
                Some(time) if past(time) => lo = probe + 1,
                Some(_) => hi = mid,
            }
        }
        if lo > applied {
            return Ok(position(applied + 1, 0));
        }
        let rec = self.record_for_feed(lo, applied).await?;
        let tx = rec
            .txs
            .iter()
            .position(|tx| !past(tx.system_time))
            .unwrap_or(rec.txs.len());
        if lo == oldest && oldest > 1 && tx == 0 {
            // History before the oldest record may be what was asked for.
            // Unless it starts exactly at an inclusive `t`, collected records
            // may have held transactions asked for.
            let first = rec.txs.first().map(|t| t.system_time).unwrap_or(t);
            if !(inclusive && first == t) {
                return Err(collected(oldest, Some(first), &self.gc));
            }
        }
        Ok(position(lo, tx))
    }

    /// A record this node applied (so it exists unless collected).
    async fn record_for_feed(&self, seq: u64, applied: u64) -> Result<Arc<LogRecord>> {
        match self.feed_record(seq).await? {
            Some(r) => Ok(r),
            None if seq <= applied => {
                let first = self.oldest_log_seq().await?.unwrap_or(applied + 1);
                Err(collected(first, None, &self.gc))
            }
            None => Err(Error::Internal(format!(
                "log record {seq} is not applied on this node yet"
            ))),
        }
    }

    /// Open a change feed over `table` (which must exist), starting at `start`.
    pub async fn change_feed(
        self: &Arc<Self>,
        table: &str,
        start: FeedStart,
    ) -> Result<ChangeFeed> {
        let schema = self
            .table_schema(table)
            .ok_or_else(|| Error::NotFound(format!("table \"{table}\" does not exist")))?;
        let next = self.feed_start(start).await?;
        self.feeds.fetch_add(1, Ordering::SeqCst);
        Ok(ChangeFeed {
            engine: self.clone(),
            table: table.to_string(),
            out: feed_schema(&schema),
            schema,
            next,
            ready: VecDeque::new(),
            watch: self.applied_watch.subscribe(),
        })
    }

    /// Read every table's transactions from `start`, in commit order: for
    /// sinks that publish the whole log (the Kafka sink).
    pub async fn log_feed(self: &Arc<Self>, start: FeedStart) -> Result<LogFeed> {
        let next = self.feed_start(start).await?;
        self.feeds.fetch_add(1, Ordering::SeqCst);
        Ok(LogFeed {
            engine: self.clone(),
            next,
            watch: self.applied_watch.subscribe(),
        })
    }

    /// The position a feed starting at `start` reads first, checked
    /// against the applied log and what collection left of it.
    async fn feed_start(&self, start: FeedStart) -> Result<i64> {
        let (applied, _) = self.applied_point();
        let end = position(applied + 1, 0);
        let next = match start {
            FeedStart::Beginning => position(1, 0),
            FeedStart::After(p) => p.saturating_add(1),
            FeedStart::Position(p) => p,
            FeedStart::SystemTime { at, inclusive } => self.position_at(at, inclusive).await?,
        };
        if next < 0 || next > end {
            return Err(Error::Invalid(format!(
                "position {} is past the end of this node's log (the next transaction will be at position {end} or later): \
                 positions come from a feed's _position column; is this the same database?",
                next.saturating_sub(1)
            )));
        }
        let (seq, _) = split_position(next);
        if seq <= applied {
            if let Some(oldest) = self.oldest_log_seq().await? {
                if seq < oldest {
                    return Err(collected(oldest, None, &self.gc));
                }
            }
        }
        Ok(next)
    }
}

/// Every table's transactions from a start position, in commit order.
pub struct LogFeed {
    engine: Arc<Engine>,
    /// The position of the next transaction to read.
    next: i64,
    watch: tokio::sync::watch::Receiver<u64>,
}

impl Drop for LogFeed {
    fn drop(&mut self) {
        self.engine.feeds.fetch_sub(1, Ordering::SeqCst);
    }
}

impl LogFeed {
    /// The position of the next transaction the feed will read.
    pub fn next_position(&self) -> i64 {
        self.next
    }

    /// The next log record with transactions to read, and the index of
    /// the first of them (the transaction at `position(rec.seq, index)`),
    /// waiting for a commit if there is none yet. Transactions are read
    /// whole; the feed moves past the record.
    pub async fn next(&mut self) -> Result<(Arc<LogRecord>, usize)> {
        loop {
            let Some((rec, first_tx)) =
                applied_record(&self.engine, &mut self.watch, self.next).await?
            else {
                let _ =
                    tokio::time::timeout(Duration::from_millis(200), self.watch.changed()).await;
                continue;
            };
            self.next = position(rec.seq + 1, 0);
            if first_tx < rec.txs.len() {
                return Ok((expand_loads(&self.engine, rec, None).await?, first_tx));
            }
        }
    }
}

/// The log record holding position `next` and the index of `next`'s
/// transaction in it; `None` if that record is not applied yet (the watch
/// is then marked seen, so the next applied record wakes a wait on it).
async fn applied_record(
    engine: &Engine,
    watch: &mut tokio::sync::watch::Receiver<u64>,
    next: i64,
) -> Result<Option<(Arc<LogRecord>, usize)>> {
    loop {
        let (seq, first_tx) = split_position(next);
        let (applied, _) = engine.applied_point();
        if seq > applied {
            watch.mark_unchanged();
            // A record applied between the check and the mark wakes nobody:
            // look again.
            if engine.applied_point().0 < seq {
                return Ok(None);
            }
            continue;
        }
        let rec = engine.record_for_feed(seq, applied).await?;
        if rec.txs.len() >= 1 << TX_BITS {
            return Err(Error::Internal(format!(
                "log record {seq} holds {} transactions, more than a feed position can number",
                rec.txs.len()
            )));
        }
        return Ok(Some((rec, first_tx)));
    }
}

fn collected(oldest: u64, first_time: Option<Micros>, gc: &crate::gc::GcConfig) -> Error {
    let since = first_time
        .map(|t| format!(" (system time {})", fmt_micros(t)))
        .unwrap_or_default();
    Error::NotFound(format!(
        "the change history asked for is no longer in the log: the oldest log record kept is {oldest}{since}, \
         at position {}; older records were collected (log retention {} s after a checkpoint covers them). \
         Start WITH SNAPSHOT (the state, then the changes), or from a later position or system time",
        position(oldest, 0),
        gc.log_retention.as_secs()
    ))
}

/// `rec` with every bulk load event (of `table`, or of every table) given
/// as the put of its rows, read back from the segments the load wrote, in
/// entity-hash order. Refused once those segments are no longer the
/// table's as written (compaction merged them, an erase rewrote them): the
/// rows are then not addressable as the load's any more.
async fn expand_loads(
    engine: &Engine,
    rec: Arc<LogRecord>,
    table: Option<&str>,
) -> Result<Arc<LogRecord>> {
    let wanted = |op: &Op| op.kind == OpKind::Load && table.is_none_or(|t| t == op.table);
    if !rec.txs.iter().any(|tx| tx.ops.iter().any(wanted)) {
        return Ok(rec);
    }
    let mut out = (*rec).clone();
    for (i, tx) in out.txs.iter_mut().enumerate() {
        let mut ops = Vec::with_capacity(tx.ops.len());
        for op in std::mem::take(&mut tx.ops) {
            if wanted(&op) {
                ops.extend(load_as_puts(engine, &op, position(rec.seq, i)).await?);
            } else {
                ops.push(op);
            }
        }
        tx.ops = ops;
    }
    Ok(Arc::new(out))
}

/// A bulk load event's rows as put events (`_id`, the user columns as
/// written, `_valid_from`, `_valid_to` with NULL for open).
async fn load_as_puts(engine: &Engine, op: &Op, pos: i64) -> Result<Vec<Op>> {
    let mut out = Vec::new();
    for meta in crate::load::load_segments(op)? {
        let seg = {
            let s = engine.state.read();
            s.tables.get(&op.table).and_then(|t| {
                t.segments
                    .iter()
                    .find(|e| e.seg.meta.path == meta.path)
                    .map(|e| e.seg.clone())
            })
        };
        let Some(seg) = seg else {
            return Err(Error::NotFound(format!(
                "the bulk load into table \"{}\" at position {pos} wrote its rows as segments, and \
                 compaction or an erase has since rewritten them: a change feed cannot replay that load. \
                 Start WITH SNAPSHOT, or after position {pos}",
                op.table
            )));
        };
        let file = engine.open_files.open(&engine.storage, &seg).await?;
        let user_end = file.user_end();
        for b in 0..file.num_batches() {
            let batch = file.decode(b, None)?;
            let schema = batch.schema();
            let mut fields: Vec<Field> = Vec::new();
            let mut cols: Vec<ArrayRef> = Vec::new();
            for i in crate::segment::SYSTEM_COLUMNS..user_end {
                fields.push(schema.field(i).clone());
                cols.push(batch.column(i).clone());
            }
            for (name, i) in [(VALID_FROM, 1), (VALID_TO, 2)] {
                let v = batch
                    .column(i)
                    .as_primitive::<arrow::datatypes::TimestampMicrosecondType>();
                let a: arrow::array::TimestampMicrosecondArray = v
                    .values()
                    .iter()
                    .map(|&x| (x != crate::time::OPEN).then_some(x))
                    .collect();
                fields.push(Field::new(name, timestamp_type(), true));
                cols.push(Arc::new(a.with_timezone("UTC")));
            }
            out.push(Op {
                kind: OpKind::Put,
                table: op.table.clone(),
                batch: RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?,
            });
        }
    }
    Ok(out)
}

/// One table's changes from a start position, in commit order.
pub struct ChangeFeed {
    engine: Arc<Engine>,
    table: String,
    /// The table's columns when the feed opened: the feed's columns.
    schema: TableSchema,
    out: SchemaRef,
    /// The position of the next transaction to read.
    next: i64,
    ready: VecDeque<RecordBatch>,
    watch: tokio::sync::watch::Receiver<u64>,
}

impl Drop for ChangeFeed {
    fn drop(&mut self) {
        self.engine.feeds.fetch_sub(1, Ordering::SeqCst);
    }
}

impl ChangeFeed {
    /// The feed's columns ([`feed_schema`]).
    pub fn schema(&self) -> SchemaRef {
        self.out.clone()
    }

    /// The position of the next transaction the feed will read.
    pub fn next_position(&self) -> i64 {
        self.next
    }

    /// The next batch of changes (never empty), waiting for a commit if
    /// there is none yet. Rows of one transaction are delivered in order,
    /// and all of a transaction's rows before any of the next's.
    pub async fn next(&mut self) -> Result<RecordBatch> {
        loop {
            if let Some(b) = self.try_next().await? {
                return Ok(b);
            }
            // Woken by each applied record; the timeout covers state
            // swapped in whole (a reload) without one.
            let _ = tokio::time::timeout(Duration::from_millis(200), self.watch.changed()).await;
        }
    }

    /// The next batch of changes if one is ready without waiting for a
    /// commit (it may read the log).
    pub async fn try_next(&mut self) -> Result<Option<RecordBatch>> {
        loop {
            if let Some(b) = self.ready.pop_front() {
                return Ok(Some(b));
            }
            let Some((rec, first_tx)) =
                applied_record(&self.engine, &mut self.watch, self.next).await?
            else {
                return Ok(None);
            };
            let rec = expand_loads(&self.engine, rec, Some(&self.table)).await?;
            let seq = rec.seq;
            for (i, tx) in rec.txs.iter().enumerate().skip(first_tx) {
                let pos = position(seq, i);
                let mut batches = Vec::new();
                for op in tx.ops.iter().filter(|o| o.table == self.table) {
                    if let Some(b) = self.changes(op, pos, tx.system_time)? {
                        batches.push(b);
                    }
                }
                // Every op of the transaction converted before any is handed out.
                for b in batches {
                    let mut off = 0;
                    while off < b.num_rows() {
                        let len = BATCH_ROWS.min(b.num_rows() - off);
                        self.ready.push_back(b.slice(off, len));
                        off += len;
                    }
                }
                self.next = pos + 1;
            }
            self.next = position(seq + 1, 0);
        }
    }

    /// One event's rows as feed rows.
    fn changes(&self, op: &Op, pos: i64, system_time: Micros) -> Result<Option<RecordBatch>> {
        let (name, values) = match op.kind {
            OpKind::Put => ("put", true),
            OpKind::Delete => ("delete", false),
            OpKind::Erase => ("erase", false),
            OpKind::CreateTable => return Ok(None),
            OpKind::Load => {
                return Err(Error::Internal(
                    "a bulk load event reached the feed unexpanded".into(),
                ))
            }
        };
        let b = &op.batch;
        let n = b.num_rows();
        if n == 0 {
            return Ok(None);
        }
        if values {
            for f in b.schema().fields() {
                let c = f.name();
                if c != ID && c != VALID_FROM && c != VALID_TO && self.schema.index_of(c).is_none()
                {
                    return Err(Error::Invalid(format!(
                        "table \"{}\" gained column \"{c}\" at position {pos}; a change feed keeps the columns it \
                         started with: subscribe again AFTER {} to read on with the new column",
                        self.table,
                        pos - 1
                    )));
                }
            }
        }
        let ts = timestamp_type();
        let period = |name: &str, default: Option<Micros>| -> Result<ArrayRef> {
            if op.kind == OpKind::Erase {
                return Ok(new_null_array(&ts, n));
            }
            let fill = || -> ArrayRef {
                let a: arrow::array::TimestampMicrosecondArray =
                    std::iter::repeat_n(default, n).collect();
                Arc::new(a.with_timezone("UTC"))
            };
            match b.column_by_name(name) {
                None => Ok(fill()),
                Some(c) => {
                    let c = arrow::compute::cast(c, &ts)?;
                    if c.null_count() == 0 || default.is_none() {
                        Ok(c)
                    } else {
                        Ok(arrow::compute::kernels::zip::zip(
                            &arrow::compute::is_not_null(&c)?,
                            &c,
                            &fill(),
                        )?)
                    }
                }
            }
        };
        let mut cols: Vec<ArrayRef> = Vec::with_capacity(self.out.fields().len());
        cols.push(Arc::new(Int64Array::from(vec![pos; n])));
        let st: arrow::array::TimestampMicrosecondArray = vec![Some(system_time); n].into();
        cols.push(Arc::new(st.with_timezone("UTC")));
        cols.push(Arc::new(StringArray::from(vec![name; n])));
        for f in self.out.fields().iter().skip(3) {
            let c = f.name().as_str();
            cols.push(match c {
                VALID_FROM => period(VALID_FROM, Some(system_time))?,
                VALID_TO => period(VALID_TO, None)?,
                _ => match b.column_by_name(c) {
                    Some(a) if c == ID || values => adapt_array(a, f.data_type())?,
                    _ => new_null_array(f.data_type(), n),
                },
            });
        }
        Ok(Some(RecordBatch::try_new(self.out.clone(), cols)?))
    }
}
