//! The session layer every front end shares: parse a statement, plan it on
//! DataFusion at a temporal coordinate, turn writes into storage events, and
//! keep per-connection state (the open transaction).

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::CatalogProviderList;
use datafusion::catalog::MemoryCatalogProviderList;
use datafusion::common::ParamValues;
use datafusion::common::ScalarValue;
use datafusion::execution::context::SessionContext;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionConfig;
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::{self, CopyTarget, Statement};
use futures::{StreamExt, TryStreamExt};
use strata_storage::log::{Op, OpKind};
use strata_storage::schema::{ID, TEMPORAL_COLUMNS};
use strata_storage::{Coordinate, Engine, EngineConfig, TxRequest};

use crate::error::{QueryError, Result};
use crate::provider::{PendingWrites, QueryTimes, StrataCatalog, StrataSchema};
use crate::sql::{ident_name, object_name};
use crate::temporal::{self, StatementKind};

/// What a statement produced.
pub enum Output {
    /// A result set, streamed.
    Rows {
        schema: SchemaRef,
        stream: SendableRecordBatchStream,
    },
    /// A command's tag (`INSERT 0 3`, `BEGIN`, …) and affected row count.
    Command { tag: String, rows: u64 },
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Output::Rows { schema, .. } => write!(f, "Rows({schema:?})"),
            Output::Command { tag, .. } => write!(f, "Command({tag})"),
        }
    }
}

impl Output {
    /// Collect a result set (commands give no batches).
    pub async fn collect(self) -> Result<Vec<RecordBatch>> {
        match self {
            Output::Rows { stream, .. } => Ok(stream.try_collect().await?),
            Output::Command { .. } => Ok(vec![]),
        }
    }
}

/// The engine plus the DataFusion state every query starts from.
pub struct Database {
    pub(crate) engine: Arc<Engine>,
    base: SessionState,
    /// Planning contexts to reuse: building a DataFusion session state (every
    /// function registered anew) costs more than planning a point lookup.
    pool: parking_lot::Mutex<Vec<Pooled>>,
    /// Statements answered by the point-lookup path (crate::fastpath).
    pub(crate) point_lookups: std::sync::atomic::AtomicU64,
    /// Statements run, and those that failed (`/metrics`).
    statements: std::sync::atomic::AtomicU64,
    statement_errors: std::sync::atomic::AtomicU64,
    /// Where server-side COPY … TO 'file' may write (`None`: nowhere).
    export_root: Option<crate::export::ExportRoot>,
    /// Roles and grants (crate::access).
    pub(crate) access: Arc<crate::access::Access>,
    /// The audit trail (crate::access::audit).
    audit: crate::access::audit::Audit,
    /// Where clients reach this node, for data contracts (crate::contract).
    endpoints: crate::contract::SharedEndpoints,
    /// Receives loads and exports (crate::lineage).
    lineage: parking_lot::RwLock<Option<crate::lineage::LineageHook>>,
}

/// A reusable planning context and the coordinate slot its catalog reads.
struct Pooled {
    ctx: SessionContext,
    times: Arc<parking_lot::RwLock<Arc<QueryTimes>>>,
}

/// At most this many idle contexts are kept.
const POOL_MAX: usize = 16;

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Database({:?})", self.engine)
    }
}

/// Run a query's first step; if it ran out of memory (a hash join's build
/// side cannot spill), plan it again with sort-merge joins, whose sorts and
/// buffered batches spill, and run that instead. A hash join builds its table
/// before it yields its first row, so such a failure shows on the first batch
/// and no row has reached the client yet. A second failure is the answer
/// (SQLSTATE 53200).
async fn without_hash_join_if_too_big(
    ctx: &SessionContext,
    plan: LogicalPlan,
    mut stream: SendableRecordBatchStream,
) -> Result<SendableRecordBatchStream> {
    let first = stream.next().await;
    match first {
        Some(Err(e))
            if matches!(
                e.find_root(),
                datafusion::error::DataFusionError::ResourcesExhausted(_)
            ) && e.find_root().to_string().contains("HashJoin") =>
        {
            drop(stream);
            tracing::info!("a hash join ran out of memory; running the query again with sort-merge joins, which spill");
            let mut state = ctx.state();
            let opts = state.config_mut().options_mut();
            opts.optimizer.prefer_hash_join = false;
            // DataFusion plans sort-merge joins only over two or more
            // partitions (a small pool may have planned one).
            opts.execution.target_partitions = opts.execution.target_partitions.max(2);
            let df = datafusion::dataframe::DataFrame::new(state, plan);
            Ok(df.execute_stream().await?)
        }
        first => {
            let schema = stream.schema();
            Ok(Box::pin(
                datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(
                    schema,
                    futures::stream::iter(first).chain(stream),
                ),
            ))
        }
    }
}

/// Share of the process memory budget (`EngineConfig::memory_limit`) that
/// query execution may hold, all queries together: 50%.
pub const QUERY_MEMORY_SHARE: f64 = 0.5;

/// Query memory each partition of a plan should have at least; a smaller
/// query pool plans fewer partitions (one, under 128 MiB).
pub const MIN_PARTITION_MEMORY: usize = 64 << 20;

/// How query execution uses memory and disk. All sessions of a `Database`
/// share one DataFusion runtime: one memory pool, one spill directory.
#[derive(Debug, Clone, Default)]
pub struct RuntimeOptions {
    /// Bytes that sorts, aggregations, joins and other buffering operators
    /// may reserve, all running queries together (a `FairSpillPool`: each
    /// spilling operator gets a fair share and spills past it). `None`: no
    /// limit.
    pub query_memory: Option<usize>,
    /// Where spill files go (a fresh `datafusion-*` directory inside it,
    /// removed when the database closes). `None`: the system temp directory.
    pub spill_dir: Option<std::path::PathBuf>,
    /// Where server-side `COPY … TO 'file'` may write: a directory or an
    /// object store URL (crate::export). `None`: such COPYs are refused.
    pub export_root: Option<String>,
}

impl RuntimeOptions {
    /// Query memory as [`QUERY_MEMORY_SHARE`] of a process budget.
    pub fn from_budget(memory_limit: Option<usize>) -> RuntimeOptions {
        RuntimeOptions {
            query_memory: memory_limit.map(|m| ((m as f64) * QUERY_MEMORY_SHARE) as usize),
            spill_dir: None,
            export_root: None,
        }
    }

    fn runtime(&self) -> Result<Arc<RuntimeEnv>> {
        let mut b = RuntimeEnvBuilder::new();
        if let Some(limit) = self.query_memory {
            let pool = TrackConsumersPool::new(
                FairSpillPool::new(limit),
                std::num::NonZeroUsize::new(3).expect("3 > 0"),
            );
            b = b.with_memory_pool(Arc::new(pool));
        }
        if let Some(dir) = &self.spill_dir {
            std::fs::create_dir_all(dir).map_err(|e| {
                QueryError::Invalid(format!(
                    "cannot create the spill directory {}: {e} (set --spill-dir to a writable directory)",
                    dir.display()
                ))
            })?;
            b = b.with_disk_manager_builder(
                DiskManagerBuilder::default()
                    .with_mode(DiskManagerMode::Directories(vec![dir.clone()])),
            );
        }
        Ok(b.build_arc()?)
    }
}

impl Database {
    /// Open with query memory as a share of `config.memory_limit`
    /// ([`RuntimeOptions::from_budget`]) and spills in the system temp dir.
    pub async fn open(config: EngineConfig) -> Result<Arc<Database>> {
        let opts = RuntimeOptions::from_budget(config.memory_limit);
        Database::open_with(config, opts).await
    }

    pub async fn open_with(config: EngineConfig, opts: RuntimeOptions) -> Result<Arc<Database>> {
        let runtime = opts.runtime()?;
        let export_root = opts
            .export_root
            .as_deref()
            .map(crate::export::ExportRoot::open)
            .transpose()?;
        let engine = Engine::open(config).await?;
        let mut cfg = SessionConfig::new()
            .with_default_catalog_and_schema("strata", "public")
            .with_create_default_catalog_and_schema(false)
            // information_schema is Postgres's, from crate::pg_catalog.
            .with_information_schema(false);
        // DataFusion's logical and physical plans disagree on the
        // nullability of `x IS TRUE` (and similar), and the check of the
        // aggregate's input schema then refuses `SELECT DISTINCT (a > 1) IS
        // TRUE …` with an internal error; the types agree, only that flag
        // differs.
        cfg.options_mut()
            .execution
            .skip_physical_aggregate_schema_check = true;
        // A hash join hands its keys to the scans below as a list (rather
        // than a probe of its table) up to this many: a list of integer
        // keys becomes a bitmap there (crate::key_sink::KeyBitmap), one
        // bit test per row. DataFusion's default is 150 (TPC-H Q17 has 204
        // parts). Not more: DataFusion builds the list as one expression
        // per key, then copies and drops it, ~0.4 µs a key; at 65,536 that
        // made TPC-H Q7, Q8 and Q14 two to three times slower.
        cfg.options_mut()
            .optimizer
            .hash_join_inlist_pushdown_max_distinct_values = 4_096;
        if let Some(limit) = opts.query_memory {
            // Each sort holds back memory for merging its spilled runs
            // (DataFusion's default: 10 MB). Under a small pool that reserve
            // alone exceeds a sort's share and the sort fails instead of
            // spilling: size it from the pool, a quarter of a partition's share.
            // Every partition of a sort, aggregation or join reserves on
            // its own, and a sort's merge phase holds a batch per spilled
            // run: below `MIN_PARTITION_MEMORY` a partition's share is too
            // small to spill in, so a small pool runs fewer partitions.
            let parts = cfg
                .target_partitions()
                .min(limit / MIN_PARTITION_MEMORY)
                .max(1);
            cfg = cfg.with_target_partitions(parts);
            let reserve = (limit / (4 * parts)).clamp(64 << 10, 10 << 20);
            cfg = cfg.with_sort_spill_reservation_bytes(reserve);
        }
        // DataFusion's physical filter pushdown (both phases) maps a
        // filter's columns into a join's inputs by *name*: above `a RIGHT
        // JOIN b` a filter on `a.s0` was pushed into `b` as `b.s0`, and the
        // query answered wrongly (apache/datafusion#25296, fixed after
        // 55). The logical optimizer already pushes filters down by
        // qualified column; the physical pass adds only dynamic filters
        // (TopK, join build sides): crate::join_filter hands the join
        // ones to Strata's scans, following columns by position.
        // Projection pushdown may fail on a valid plan; it is then skipped
        // (crate::optional_rule).
        let physical: Vec<_> = datafusion::physical_optimizer::optimizer::PhysicalOptimizer::new()
            .rules
            .into_iter()
            .filter(|r| !r.name().starts_with("FilterPushdown"))
            .map(crate::optional_rule::guard)
            .chain([
                Arc::new(crate::nested_loop::ReplayableNestedLoops)
                    as Arc<dyn datafusion::physical_optimizer::PhysicalOptimizerRule + Send + Sync>,
                // Join filters into scans, by column position (the part of
                // `FilterPushdown` Strata keeps; crate::join_filter).
                Arc::new(crate::join_filter::JoinFiltersIntoScans),
            ])
            .collect();
        let mut builder = SessionStateBuilder::new()
            .with_config(cfg)
            .with_runtime_env(runtime)
            .with_default_features()
            .with_query_planner(Arc::new(crate::apply::StrataQueryPlanner))
            .with_optimizer_rule(Arc::new(crate::subquery_eq::SubqueryEqualities))
            .with_optimizer_rule(Arc::new(crate::semijoin::SemiJoinPushdown))
            // Last: grouping by short text as by an integer (crate::text_keys).
            .with_optimizer_rule(Arc::new(crate::text_keys::TextGroupKeys));
        // One rule of our own inside DataFusion's list: before
        // `eliminate_cross_join`, which drops join keys that span two of its
        // inputs (crate::join_keys).
        let mut logical = datafusion::optimizer::Optimizer::new().rules;
        let at = logical
            .iter()
            .position(|r| r.name() == "eliminate_cross_join")
            .unwrap_or(0);
        logical.insert(at, Arc::new(crate::join_keys::JoinKeysAcrossInputs));
        *builder.optimizer() = Some(datafusion::optimizer::Optimizer::with_rules(logical));
        *builder.physical_optimizers() = Some(
            datafusion::physical_optimizer::optimizer::PhysicalOptimizer::with_rules(physical),
        );
        let mut base = builder.build();
        let access: Arc<crate::access::Access> = Default::default();
        let endpoints: crate::contract::SharedEndpoints = Default::default();
        crate::pg_catalog::register_functions(&mut base, &engine, &access, &endpoints)?;
        crate::period::register(&mut base)?;
        crate::casts::register(&mut base)?;
        crate::overflow::register(&mut base)?;
        crate::pg_typeof::register(&mut base)?;
        base.add_analyzer_rule(Arc::new(crate::setops::SetOpMultiplicity));
        base.add_analyzer_rule(Arc::new(crate::insubquery::InSubqueryNulls));
        base.add_analyzer_rule(Arc::new(crate::inlist::InListComparisons));
        base.add_analyzer_rule(Arc::new(crate::literal_right::LiteralsRight));
        base.add_analyzer_rule(Arc::new(crate::float_zero::FloatZero));
        {
            use datafusion::execution::FunctionRegistry;
            base.register_function_rewrite(Arc::new(crate::numeric_sum::NumericSum))?;
        }
        let audit = crate::access::audit::Audit::start(&engine);
        Ok(Arc::new(Database {
            engine,
            base,
            pool: parking_lot::Mutex::new(Vec::new()),
            point_lookups: Default::default(),
            statements: Default::default(),
            statement_errors: Default::default(),
            export_root,
            access,
            audit,
            endpoints,
            lineage: Default::default(),
        }))
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Where server-side exports go, if the server allows them.
    pub fn export_root(&self) -> Option<&crate::export::ExportRoot> {
        self.export_root.as_ref()
    }

    /// The runtime every query of this database runs in (its memory pool
    /// and spill directory).
    pub fn runtime(&self) -> Arc<RuntimeEnv> {
        self.base.runtime_env().clone()
    }

    /// How many statements were answered as point lookups without planning.
    pub fn point_lookups(&self) -> u64 {
        self.point_lookups
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Statements run by every session of this database since it opened,
    /// and how many of them failed.
    pub fn statement_counts(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.statements.load(Relaxed),
            self.statement_errors.load(Relaxed),
        )
    }

    /// Send every load and export to `hook` (crate::lineage).
    pub fn set_lineage(&self, hook: crate::lineage::LineageHook) {
        *self.lineage.write() = Some(hook);
    }

    /// Where clients reach this node (data contracts, lineage).
    pub fn endpoints(&self) -> crate::contract::Endpoints {
        self.endpoints.read().clone()
    }

    pub(crate) fn report_lineage(&self, run: impl FnOnce() -> crate::lineage::LineageRun) {
        if let Some(hook) = self.lineage.read().clone() {
            hook(run());
        }
    }

    /// Say where clients reach this node (named in data contracts).
    pub fn set_endpoints(&self, e: crate::contract::Endpoints) {
        *self.endpoints.write() = e;
    }

    /// The ODCS data contract of `table` (`None`: of every table) as JSON.
    pub fn contract(&self, table: Option<&str>) -> Result<serde_json::Value> {
        crate::contract::contract(
            &self.engine,
            &self.access.cached(),
            &self.endpoints.read(),
            table,
        )
    }

    /// [`Database::contract`] after reading the latest comments and labels.
    pub async fn contract_now(&self, table: Option<&str>) -> Result<serde_json::Value> {
        self.access.state(&self.engine).await?;
        self.contract(table)
    }

    /// Keep the audit trail (crate::access::audit; the server turns it on
    /// when it asks for passwords).
    pub fn set_audit(&self, on: bool) {
        self.audit.set_enabled(on)
    }

    /// Record an audit event (logins, from the front ends).
    pub fn audit(&self, e: crate::access::audit::AuditEvent) {
        self.audit.record(e)
    }

    /// Roles and grants, and who the bootstrap superusers are.
    pub fn access(&self) -> &Arc<crate::access::Access> {
        &self.access
    }

    /// A session of the embedded API's owner (a superuser); a front end
    /// sets the user who logged in with [`Session::set_user`].
    pub fn session(self: &Arc<Self>) -> Session {
        Session {
            db: self.clone(),
            user: None,
            masking: None,
            client: None,
            tx: None,
            fast_path: true,
            parsed: Default::default(),
            last_commit: None,
            read_after: None,
            read_after_timeout: DEFAULT_READ_AFTER_TIMEOUT,
        }
    }

    /// The default coordinate: latest committed system time, valid time now.
    pub(crate) fn default_coordinate(&self) -> Coordinate {
        let s = self.engine.latest_system_time();
        let now = strata_storage::Clock::now_us(&strata_storage::SystemClock);
        Coordinate::as_of(s, now.max(s))
    }

    fn new_context(&self, times: QueryTimes) -> Pooled {
        let list = MemoryCatalogProviderList::new();
        let slot = Arc::new(parking_lot::RwLock::new(Arc::new(times)));
        let schema = Arc::new(StrataSchema {
            engine: self.engine.clone(),
            times: slot.clone(),
        });
        let strata = Arc::new(StrataCatalog { schema });
        let functions = crate::pg_catalog::function_names(&self.base);
        list.register_catalog(
            "strata".into(),
            crate::pg_catalog::catalog(strata, &self.engine, &self.access, functions),
        );
        let state = SessionStateBuilder::new_from_existing(self.base.clone())
            .with_catalog_list(Arc::new(list) as Arc<dyn CatalogProviderList>)
            .build();
        Pooled {
            ctx: SessionContext::new_with_state(state),
            times: slot,
        }
    }

    /// A context for planning one statement at `times`: an idle one from the
    /// pool, or a new one. Give it back with `checkin` once planned.
    fn checkout(&self, times: QueryTimes) -> Pooled {
        match self.pool.lock().pop() {
            Some(p) => {
                *p.times.write() = Arc::new(times);
                p
            }
            None => self.new_context(times),
        }
    }

    fn checkin(&self, p: Pooled) {
        let mut pool = self.pool.lock();
        if pool.len() < POOL_MAX {
            pool.push(p);
        }
    }
}

/// An open `BEGIN … COMMIT` block.
#[derive(Debug, Default)]
pub(crate) struct OpenTx {
    pub(crate) ops: Vec<Op>,
    pub(crate) system_time: Option<i64>,
    /// The earliest snapshot a write of the transaction was computed from
    /// (an UPDATE or DELETE): checked at COMMIT, first committer wins.
    read_at: Option<i64>,
    failed: Option<String>,
    /// `SAVEPOINT name`s, oldest first, with the number of writes before each.
    savepoints: Vec<(String, usize)>,
}

impl OpenTx {
    /// The newest savepoint called `name`.
    fn savepoint(&self, name: &str) -> Result<usize> {
        self.savepoints
            .iter()
            .rposition(|(n, _)| n == name)
            .ok_or_else(|| QueryError::Transaction(format!("savepoint `{name}` does not exist")))
    }
}

/// A session's transaction block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxState {
    /// No block open: each statement commits on its own.
    Idle,
    /// In a `BEGIN … COMMIT` block.
    Open,
    /// In a block where a statement failed: only ROLLBACK (or ROLLBACK TO
    /// a savepoint) runs; COMMIT rolls back and says so with an error.
    Failed,
}

fn aborted(why: &str) -> QueryError {
    QueryError::Aborted(format!(
        "current transaction is aborted ({why}); commands ignored until end of transaction block (ROLLBACK)"
    ))
}

/// One connection's state.
pub struct Session {
    pub(crate) db: Arc<Database>,
    /// Who runs the statements (`None`: the embedded API's owner, a superuser).
    pub(crate) user: Option<String>,
    /// The masks the running statement's reads get (crate::access::mask).
    pub(crate) masking: Option<Arc<crate::access::mask::Masking>>,
    /// The client's address, for the audit trail.
    client: Option<String>,
    pub(crate) tx: Option<OpenTx>,
    /// Answer point lookups without the planner (crate::fastpath).
    fast_path: bool,
    /// Parsed statements by SQL text (see `PARSED_MAX`).
    parsed: std::collections::HashMap<String, Arc<Vec<(temporal::Rewritten, Statement)>>>,
    /// The system time of this session's last commit (`SHOW strata.last_commit`).
    last_commit: Option<i64>,
    /// `SET strata.read_after`: every statement first waits until this node
    /// has applied the commit at this system time (read your writes made on
    /// another node), for at most `read_after_timeout`.
    read_after: Option<i64>,
    read_after_timeout: std::time::Duration,
}

/// How long a statement waits for `strata.read_after` by default.
pub const DEFAULT_READ_AFTER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// The session settings Strata itself reads (`SET` / `SHOW`); the Postgres
/// front end keeps the other settings.
pub const STRATA_SETTINGS: &[(&str, &str)] = &[
    (
        "strata.last_commit",
        "The system time of this session's last commit (read only); give it to strata.read_after on another node.",
    ),
    (
        "strata.read_after",
        "Wait before each statement until this node has applied the commit at this system time (read your writes across nodes); empty: no wait.",
    ),
    (
        "strata.read_after_timeout",
        "How long a statement waits for strata.read_after (milliseconds, or 2s, 500ms).",
    ),
];

/// Statements a session keeps parsed, by their SQL text (a prepared
/// statement or a repeated query is tokenized, rewritten and parsed once).
const PARSED_MAX: usize = 256;

/// A query's plan after the analyzer, whose schema is what the query
/// returns: Strata's analyzer rules change some types (`sum` of bigints is
/// numeric, crate::numeric_sum), and a front end describes the result and
/// encodes each column by this schema. (Running the plan analyzes it again;
/// every rule leaves an analyzed plan as it is.) A statement that is not a
/// query, or one whose parameters are not bound yet (Describe of a
/// prepared statement) and cannot be analyzed without them, keeps the
/// plan as planned.
fn analyzed(ctx: &SessionContext, plan: LogicalPlan) -> Result<LogicalPlan> {
    if matches!(
        plan,
        LogicalPlan::Ddl(_)
            | LogicalPlan::Dml(_)
            | LogicalPlan::Copy(_)
            | LogicalPlan::Statement(_)
            | LogicalPlan::Explain(_)
            | LogicalPlan::Analyze(_)
            | LogicalPlan::DescribeTable(_)
    ) {
        return Ok(plan);
    }
    // Only `sum`, CASE and set operations change a type after planning (a
    // union's branches, and a CASE's results, coerce to their common type:
    // `length(…)` (integer) UNION ALL a bigint is bigint, which the plan
    // before analysis calls integer; a CASE is typed by its first branch);
    // analyzing every plan twice costs too much on deep expressions (type
    // coercion of nested checked arithmetic calls is far slower than of the
    // operators they replace).
    if !has_sum_or_case(&plan) && !has_union(&plan) {
        return Ok(plan);
    }
    let state = ctx.state();
    match state
        .analyzer()
        .execute_and_check(plan.clone(), state.config_options(), |_, _| {})
    {
        Ok(p) => Ok(p),
        Err(_) if plan.get_parameter_types().is_ok_and(|p| !p.is_empty()) => Ok(plan),
        Err(e) => Err(e.into()),
    }
}

fn has_union(plan: &LogicalPlan) -> bool {
    use datafusion::common::tree_node::TreeNode;
    plan.exists(|p| Ok(matches!(p, LogicalPlan::Union(_))))
        .unwrap_or(true)
}

fn has_sum_or_case(plan: &LogicalPlan) -> bool {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::{Expr, WindowFunctionDefinition};
    let is_sum = |e: &Expr| match e {
        Expr::Case(_) => true,
        Expr::AggregateFunction(f) => f.func.name() == "sum",
        Expr::WindowFunction(w) => {
            matches!(&w.fun, WindowFunctionDefinition::AggregateUDF(f) if f.name() == "sum")
        }
        _ => false,
    };
    let mut found = false;
    let _ = plan.apply_with_subqueries(|p| {
        found = p
            .expressions()
            .iter()
            .any(|e| e.exists(|e| Ok(is_sum(e))).unwrap_or(true));
        Ok(if found {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    found
}

impl Session {
    pub fn database(&self) -> &Arc<Database> {
        &self.db
    }

    /// Run every later statement as `user` (its privileges are checked).
    pub fn set_user(&mut self, user: &str) {
        self.user = Some(user.to_string());
    }

    /// The client's address (`ip:port`), for the audit trail.
    pub fn set_client(&mut self, client: &str) {
        self.client = Some(client.to_string());
    }

    /// The client's address, if a front end gave it.
    pub fn client(&self) -> Option<&str> {
        self.client.as_deref()
    }

    /// The user statements run as (`None`: the embedded API's owner).
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    pub fn in_transaction(&self) -> bool {
        self.tx.is_some()
    }

    /// Whether a transaction block is open, and whether it failed.
    pub fn transaction_state(&self) -> TxState {
        match &self.tx {
            None => TxState::Idle,
            Some(OpenTx {
                failed: Some(_), ..
            }) => TxState::Failed,
            Some(_) => TxState::Open,
        }
    }

    /// Mark the open transaction block (if any) failed, for an error a front
    /// end met outside [`Session::execute`] (a result stream that failed
    /// after its statement returned, a parameter that did not bind): until
    /// ROLLBACK (or ROLLBACK TO a savepoint), statements are refused with
    /// 25P02, and COMMIT rolls back. The first reason is kept.
    pub fn fail_transaction(&mut self, why: &str) {
        if let Some(tx) = &mut self.tx {
            tx.failed.get_or_insert_with(|| why.to_string());
        }
    }

    /// `Err` (25P02) when the open transaction block failed: what a front end
    /// checks before work it does itself (a COPY load) inside the block.
    pub fn check_not_aborted(&self) -> Result<()> {
        match &self.tx {
            Some(OpenTx {
                failed: Some(why), ..
            }) => Err(aborted(why)),
            _ => Ok(()),
        }
    }

    /// Turn the planner-free point-lookup path on or off (on by default;
    /// off plans every statement, for comparing the two).
    pub fn set_fast_path(&mut self, on: bool) {
        self.fast_path = on;
    }

    /// Run every statement in `sql`; parameters (`$1`, …) bind by position.
    pub async fn execute(&mut self, sql: &str, params: &[ScalarValue]) -> Result<Vec<Output>> {
        let stmts = match self.parsed.get(sql) {
            Some(p) => p.clone(),
            None => {
                let p = Arc::new(crate::sql::rewrite_and_parse(sql, params)?);
                // Only statements whose rewrite depends on nothing but their
                // text are kept: no temporal clause (which may read a
                // parameter or the clock), no DML portion, ERASE or ASSERT.
                if p.iter().all(|(rw, _)| rw.is_context_free()) {
                    if self.parsed.len() >= PARSED_MAX {
                        self.parsed.clear();
                    }
                    self.parsed.insert(sql.to_string(), p.clone());
                }
                p
            }
        };
        let mut out = Vec::with_capacity(stmts.len());
        for (rw, stmt) in stmts.iter() {
            use std::sync::atomic::Ordering::Relaxed;
            self.db.statements.fetch_add(1, Relaxed);
            match self.run(stmt, rw, params).await {
                Ok(o) => out.push(o),
                Err(e) => {
                    self.db.statement_errors.fetch_add(1, Relaxed);
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    /// Run one parsed statement without Strata's temporal extensions.
    /// `sql` is the text it came from (for column detection).
    pub async fn execute_statement(
        &mut self,
        stmt: Statement,
        sql: &str,
        params: &[ScalarValue],
    ) -> Result<Output> {
        let rw = temporal::Rewritten {
            sql: sql.to_string(),
            kind: temporal::StatementKind::Plain,
            default_system: None,
            default_valid: None,
            overrides: vec![],
            contextual: false,
        };
        self.run(&stmt, &rw, params).await
    }

    async fn run(
        &mut self,
        stmt: &Statement,
        rw: &temporal::Rewritten,
        params: &[ScalarValue],
    ) -> Result<Output> {
        // A commit this node acknowledged but could not apply yet (a read
        // fault while applying) is applied before anything reads.
        self.db.engine.apply_acknowledged().await?;
        let setting = matches!(stmt, Statement::Set(_) | Statement::ShowVariable { .. });
        if let (Some(t), false) = (self.read_after, setting) {
            let engine = &self.db.engine;
            if !engine
                .wait_for_system_time(t, self.read_after_timeout)
                .await?
            {
                return Err(QueryError::Timeout(format!(
                    "this node has not applied the commit at system time {} (strata.read_after) within {} ms \
                     (strata.read_after_timeout): it has applied commits up to {}. Is that commit on this store? \
                     Wait longer, or SET strata.read_after = '' to read without waiting",
                    strata_storage::time::fmt_micros(t),
                    self.read_after_timeout.as_millis(),
                    strata_storage::time::fmt_micros(engine.latest_system_time()),
                )));
            }
        }
        if !matches!(stmt, Statement::Rollback { .. } | Statement::Commit { .. }) {
            self.check_not_aborted()?;
        }
        match self.authorize(stmt, rw).await {
            Ok(m) => self.masking = m.map(Arc::new),
            Err(e) => {
                if let Some(tx) = &mut self.tx {
                    tx.failed.get_or_insert_with(|| e.to_string());
                }
                self.audit_statement(stmt, rw, Err(&e));
                return Err(e);
            }
        }
        // Point lookups are answered without the planner (crate::fastpath)
        // and without copying the statement.
        let r = match stmt {
            // (A masked read is planned: the masks are a plan rewrite.)
            Statement::Query(_) if self.fast_path && self.masking.is_none() => {
                match self.try_point_lookup(stmt, rw, params).await {
                    Ok(Some(out)) => Ok(out),
                    Ok(None) => self.dispatch(stmt.clone(), rw, params).await,
                    Err(e) => Err(e),
                }
            }
            _ => self.dispatch(stmt.clone(), rw, params).await,
        };
        if let (Err(e), Some(tx)) = (&r, &mut self.tx) {
            tx.failed.get_or_insert_with(|| e.to_string());
        }
        self.audit_statement(stmt, rw, r.as_ref().map(|_| ()));
        r
    }

    /// Record a statement in the audit trail if it is one to record: DDL,
    /// role and privilege statements, ERASE, and any refused statement.
    /// Only statements of a front end's session (one with a user).
    fn audit_statement(
        &self,
        stmt: &Statement,
        rw: &temporal::Rewritten,
        r: std::result::Result<(), &QueryError>,
    ) {
        let Some(user) = &self.user else { return };
        let event = match (&rw.kind, stmt) {
            (StatementKind::Governance(g), _) => Some(g.audit_event()),
            (StatementKind::Erase, _) => Some("erase"),
            (
                _,
                Statement::CreateTable(_)
                | Statement::AlterTable(_)
                | Statement::Drop { .. }
                | Statement::Truncate(_)
                | Statement::CreateView(_)
                | Statement::CreateIndex(_),
            ) => Some("ddl"),
            _ => None,
        };
        let (event, detail) = match r {
            Err(QueryError::Privilege(m)) => ("denied", Some(m.clone())),
            Ok(()) if event.is_some() => (event.unwrap_or_default(), None),
            _ => return,
        };
        let text = match &rw.kind {
            StatementKind::Governance(g) => g.audit_text(),
            StatementKind::Subscribe(s) => format!("SUBSCRIBE TO {}", s.table),
            StatementKind::Erase => {
                let t = stmt.to_string();
                format!("ERASE {}", t.strip_prefix("DELETE ").unwrap_or(&t))
            }
            _ => stmt.to_string(),
        };
        let text: String = text.chars().take(4000).collect();
        self.db.audit(crate::access::audit::AuditEvent {
            event,
            role: user.clone(),
            client: self.client.clone(),
            statement: Some(text),
            detail,
        });
    }

    async fn dispatch(
        &mut self,
        stmt: Statement,
        rw: &temporal::Rewritten,
        params: &[ScalarValue],
    ) -> Result<Output> {
        if let Some(out) = self.strata_setting(&stmt)? {
            return Ok(out);
        }
        match (&rw.kind, &stmt) {
            (StatementKind::Erase, Statement::Delete(d)) => return self.erase(d, rw, params).await,
            (StatementKind::Subscribe(s), _) => return self.subscribe(s).await,
            (StatementKind::Governance(g), _) => return self.governance(g).await,
            (_, Statement::Copy { target, .. })
                if !matches!(target, CopyTarget::Stdin | CopyTarget::Stdout) =>
            {
                return self.copy_file_reported(&stmt, rw, params).await
            }
            (StatementKind::Checkpoint, _) => {
                self.db
                    .engine()
                    .checkpoint()
                    .await
                    .map_err(QueryError::from)?;
                return Ok(Output::Command {
                    tag: "CHECKPOINT".into(),
                    rows: 0,
                });
            }
            (StatementKind::Assert, Statement::Query(_)) => {
                return self.assert(stmt, rw, params).await
            }
            (StatementKind::Portion(p), Statement::Update(u)) => {
                return self.update(u, *p, rw, params).await
            }
            (StatementKind::Portion(p), Statement::Delete(d)) => {
                return self.delete(d, *p, rw, params).await
            }
            _ => {}
        }
        match stmt {
            Statement::StartTransaction { .. } => {
                if self.tx.is_some() {
                    return Err(QueryError::Transaction(
                        "a transaction is already open; COMMIT or ROLLBACK it first".into(),
                    ));
                }
                let system_time = match rw.kind {
                    StatementKind::BeginAt(t) => {
                        let last = self.db.engine.latest_system_time();
                        if t <= last {
                            let why = format!(
                                "cannot pin system time {}: it is not after the last committed transaction's system time {}",
                                strata_storage::time::fmt_micros(t),
                                strata_storage::time::fmt_micros(last)
                            );
                            // The block is open but failed, as after any error
                            // inside it: what the client sends until it ends
                            // the block must not run in autocommit.
                            self.tx = Some(OpenTx {
                                failed: Some(why.clone()),
                                ..Default::default()
                            });
                            return Err(QueryError::Invalid(why));
                        }
                        Some(t)
                    }
                    _ => None,
                };
                self.tx = Some(OpenTx {
                    system_time,
                    ..Default::default()
                });
                Ok(Output::Command {
                    tag: "BEGIN".into(),
                    rows: 0,
                })
            }
            Statement::Commit { .. } => {
                let Some(tx) = self.tx.take() else {
                    return Ok(Output::Command {
                        tag: "COMMIT".into(),
                        rows: 0,
                    });
                };
                if let Some(why) = tx.failed {
                    // Rolled back (the block is gone); the error says why.
                    // (The Postgres wire answers `ROLLBACK` instead, as
                    // Postgres does.)
                    return Err(QueryError::Transaction(format!(
                        "transaction rolled back: {why}"
                    )));
                }
                if !tx.ops.is_empty() {
                    let info = self
                        .db
                        .engine
                        .commit(TxRequest {
                            ops: tx.ops,
                            system_time: tx.system_time,
                            read_at: tx.read_at,
                        })
                        .await?;
                    self.last_commit = Some(info.system_time);
                }
                Ok(Output::Command {
                    tag: "COMMIT".into(),
                    rows: 0,
                })
            }
            Statement::Savepoint { name } => {
                let Some(tx) = &mut self.tx else {
                    return Err(QueryError::Transaction(
                        "SAVEPOINT can only be used in a transaction block (BEGIN first)".into(),
                    ));
                };
                tx.savepoints.push((ident_name(&name), tx.ops.len()));
                Ok(Output::Command {
                    tag: "SAVEPOINT".into(),
                    rows: 0,
                })
            }
            Statement::ReleaseSavepoint { name } => {
                let tx = self.tx.as_mut().ok_or_else(|| {
                    QueryError::Transaction(
                        "RELEASE SAVEPOINT can only be used in a transaction block".into(),
                    )
                })?;
                let i = tx.savepoint(&ident_name(&name))?;
                tx.savepoints.truncate(i);
                Ok(Output::Command {
                    tag: "RELEASE".into(),
                    rows: 0,
                })
            }
            Statement::Rollback {
                savepoint: Some(name),
                ..
            } => {
                let tx = self.tx.as_mut().ok_or_else(|| {
                    QueryError::Transaction(
                        "ROLLBACK TO SAVEPOINT can only be used in a transaction block".into(),
                    )
                })?;
                let i = tx.savepoint(&ident_name(&name))?;
                // Undo the writes after the savepoint, which stays; the
                // transaction works again if it had failed after it.
                tx.ops.truncate(tx.savepoints[i].1);
                tx.savepoints.truncate(i + 1);
                tx.failed = None;
                Ok(Output::Command {
                    tag: "ROLLBACK".into(),
                    rows: 0,
                })
            }
            Statement::Rollback { .. } => {
                self.tx = None;
                Ok(Output::Command {
                    tag: "ROLLBACK".into(),
                    rows: 0,
                })
            }
            Statement::Insert(ins) => self.insert(ins, rw, params).await,
            Statement::CreateTable(ct) => self.create_table(ct).await,
            other => self.query(other, rw, params).await,
        }
    }

    /// A server-side `COPY … TO 'file'` (or `FROM 'file'`), reported to
    /// the lineage hook.
    async fn copy_file_reported(
        &mut self,
        stmt: &Statement,
        rw: &temporal::Rewritten,
        params: &[ScalarValue],
    ) -> Result<Output> {
        let started = self.db.engine.clock_now();
        let r = self.copy_file(stmt, rw, params).await;
        let ended = self.db.engine.clock_now();
        if let Statement::Copy {
            source,
            to: true,
            target: CopyTarget::File { filename },
            ..
        } = stmt
        {
            let engine = &self.db.engine;
            let synthetic: std::collections::HashMap<&str, &str> = rw
                .overrides
                .iter()
                .map(|(n, t, _, _)| (n.as_str(), t.as_str()))
                .collect();
            let mut inputs: Vec<String> = Vec::new();
            let mut add = |n: &ast::ObjectName| {
                if let Ok(n) = object_name(n) {
                    let t = synthetic
                        .get(n.as_str())
                        .map(|t| t.to_string())
                        .unwrap_or(n);
                    if engine.has_table(&t) && !inputs.contains(&t) {
                        inputs.push(t);
                    }
                }
            };
            match source {
                ast::CopySource::Table { table_name, .. } => add(table_name),
                ast::CopySource::Query(q) => {
                    let _ = ast::visit_relations(q.as_ref(), |n| {
                        add(n);
                        std::ops::ControlFlow::<()>::Continue(())
                    });
                }
            }
            let file = match self.db.export_root() {
                Some(root) => root
                    .resolve(filename)
                    .map(|p| root.show(&p))
                    .unwrap_or_else(|_| filename.clone()),
                None => filename.clone(),
            };
            self.db.report_lineage(|| crate::lineage::LineageRun {
                kind: "export",
                inputs: inputs
                    .iter()
                    .map(|t| crate::lineage::table_dataset(engine, t))
                    .collect(),
                outputs: vec![crate::lineage::Dataset::File(file)],
                started,
                ended,
                outcome: match &r {
                    Ok(Output::Command { rows, .. }) => Ok(*rows),
                    Ok(_) => Ok(0),
                    Err(e) => Err(e.to_string()),
                },
                role: self.user.clone(),
                statement: Some(stmt.to_string()),
            });
        }
        r
    }

    /// Plan a statement on DataFusion at the query's coordinates.
    pub(crate) fn times(&self, rw: &temporal::Rewritten) -> Result<QueryTimes> {
        // Inside a transaction with writes, reads see those writes: at the
        // system time the transaction would commit at, on private copies.
        let pending = match &self.tx {
            Some(tx) if !tx.ops.is_empty() => {
                let t = self.db.engine.provisional_system_time(tx.system_time);
                let (schemas, ops) = self.db.engine.prepare_pending(&tx.ops, t)?;
                Some(Arc::new(PendingWrites {
                    ops,
                    system_time: t,
                    schemas,
                }))
            }
            _ => None,
        };
        let base = match &pending {
            Some(p) => {
                let now = strata_storage::Clock::now_us(&strata_storage::SystemClock);
                Coordinate::as_of(p.system_time, now.max(p.system_time))
            }
            None => self.db.default_coordinate(),
        };
        let default = temporal::coordinate(base, rw.default_system, rw.default_valid);
        Ok(QueryTimes {
            default,
            overrides: rw
                .overrides
                .iter()
                .map(|(n, t, s, v)| (n.clone(), t.clone(), temporal::coordinate(default, *s, *v)))
                .collect(),
            pending,
        })
    }

    pub(crate) async fn plan(
        &self,
        stmt: Statement,
        rw: &temporal::Rewritten,
        params: &[ScalarValue],
    ) -> Result<(SessionContext, LogicalPlan)> {
        let times = self.times(rw)?;
        // The catalog tables (pg_roles, relacl, …) read the roles and grants
        // as last loaded: load them if they changed.
        self.db.access.state(&self.db.engine).await?;
        let mut stmt = stmt;
        crate::pg_catalog::rewrite(&mut stmt);
        if params.iter().any(|p| matches!(p, ScalarValue::List(_))) {
            crate::describe::cast_any_placeholders(&mut stmt, params);
        }
        if let Some(user) = &self.user {
            crate::access::name_user_in_privilege_calls(&mut stmt, user);
        }
        crate::naming::alias_sorted_casts(&mut stmt);
        crate::naming::unique_output_names(&mut stmt);
        {
            let engine = self.db.engine.clone();
            let times = &times;
            let synthetic: std::collections::HashMap<&str, &str> = rw
                .overrides
                .iter()
                .map(|(n, t, _, _)| (n.as_str(), t.as_str()))
                .collect();
            let tables = |name: &ast::ObjectName| -> Option<Vec<String>> {
                let n = object_name(name).ok()?;
                let t = synthetic
                    .get(n.as_str())
                    .map(|t| t.to_string())
                    .unwrap_or(n);
                let ts = times.table_schema(&engine, &t)?;
                Some(ts.columns.iter().map(|f| f.name().clone()).collect())
            };
            crate::wildcard::hide_temporal_columns(&mut stmt, &tables);
        }
        // Only plain queries plan on a shared, reused context: other
        // statements (SET, PREPARE, …) may change the context itself.
        let reuse = matches!(stmt, Statement::Query(_));
        let pooled = if reuse {
            self.db.checkout(times)
        } else {
            self.db.new_context(times)
        };
        let ctx = pooled.ctx.clone();
        let planned = ctx
            .state()
            .statement_to_plan(DfStatement::Statement(Box::new(stmt)))
            .await;
        // Table providers have copied their coordinates: the context is free.
        if reuse {
            self.db.checkin(pooled);
        }
        let plan = planned.map_err(|e| self.explain_planning_error(e, rw))?;
        let plan = match &self.masking {
            Some(m) => {
                let synthetic: std::collections::HashMap<&str, &str> = rw
                    .overrides
                    .iter()
                    .map(|(n, t, _, _)| (n.as_str(), t.as_str()))
                    .collect();
                // An UPDATE's or DELETE's read of its own target
                // (`__strata_dml`) writes the rows back: not masked.
                let real = |n: &str| -> Option<String> {
                    (n != crate::dml::DML_TARGET)
                        .then(|| synthetic.get(n).copied().unwrap_or(n).to_string())
                };
                m.apply(plan, &real)?
            }
            None => plan,
        };
        let plan = if params.is_empty() {
            plan
        } else {
            plan.with_param_values(ParamValues::List(
                params.iter().cloned().map(Into::into).collect(),
            ))?
        };
        Ok((ctx.clone(), analyzed(&ctx, plan)?))
    }

    /// DataFusion says "table 'strata.public.x' not found"; say it our way, with a suggestion.
    fn explain_planning_error(
        &self,
        e: datafusion::error::DataFusionError,
        rw: &temporal::Rewritten,
    ) -> QueryError {
        let msg = e.find_root().to_string();
        if let Some(rest) = msg.split("table '").nth(1) {
            if let Some(full) = rest
                .split("' not found")
                .next()
                .filter(|_| msg.contains("' not found"))
            {
                let parts: Vec<&str> = full.split('.').collect();
                if let [_, schema, _] = parts.as_slice() {
                    if !matches!(*schema, "public" | "information_schema" | "pg_catalog") {
                        return QueryError::UndefinedTable(format!(
                            "schema `{schema}` does not exist: Strata tables live in `public`"
                        ));
                    }
                }
                let name = full.rsplit('.').next().unwrap_or(full);
                // A table reference with a temporal clause was renamed for planning.
                let name = rw
                    .overrides
                    .iter()
                    .find(|(n, ..)| n == name)
                    .map(|(_, t, ..)| t.as_str())
                    .unwrap_or(name);
                let hint = crate::error::closest(name, &self.db.engine.table_names())
                    .map(|c| format!(" (did you mean `{c}`?)"))
                    .unwrap_or_default();
                return QueryError::UndefinedTable(format!("table `{name}` does not exist{hint}"));
            }
        }
        e.into()
    }

    /// Plan one rewritten statement without running it, to describe its
    /// parameters and result (the Postgres front end's Describe).
    pub async fn plan_only(
        &self,
        stmt: Statement,
        rw: &temporal::Rewritten,
    ) -> Result<LogicalPlan> {
        Ok(self.plan(stmt, rw, &[]).await?.1)
    }

    pub(crate) async fn query(
        &mut self,
        stmt: Statement,
        rw: &temporal::Rewritten,
        params: &[ScalarValue],
    ) -> Result<Output> {
        // (Point lookups were answered in `run`.)
        let (ctx, plan) = self.plan(stmt, rw, params).await?;
        if let LogicalPlan::Ddl(_) | LogicalPlan::Dml(_) | LogicalPlan::Copy(_) = &plan {
            return Err(QueryError::Unsupported(format!(
                "this statement is not supported by Strata yet: {}",
                plan.display()
            )));
        }
        let retry = plan.clone();
        let df = ctx.execute_logical_plan(plan).await?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let stream = without_hash_join_if_too_big(&ctx, retry, df.execute_stream().await?).await?;
        if !schema
            .fields()
            .iter()
            .any(|f| f.name().contains(crate::naming::DUPLICATE_MARK))
        {
            return Ok(Output::Rows { schema, stream });
        }
        // Repeated output names were planned apart: give them back.
        let fields: Vec<Field> = schema
            .fields()
            .iter()
            .map(|f| {
                let n = crate::naming::client_name(f.name()).to_string();
                f.as_ref().clone().with_name(n)
            })
            .collect();
        let renamed: SchemaRef =
            Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()));
        let out = renamed.clone();
        let stream = stream.map(move |b| {
            let b = b?;
            // The batch's own types (the planner's schema may differ in
            // details such as nullability), under the client's names.
            let fields: Vec<Field> = b
                .schema()
                .fields()
                .iter()
                .zip(out.fields())
                .map(|(f, o)| f.as_ref().clone().with_name(o.name().clone()))
                .collect();
            Ok::<_, datafusion::error::DataFusionError>(RecordBatch::try_new_with_options(
                Arc::new(Schema::new(fields)),
                b.columns().to_vec(),
                &RecordBatchOptions::new().with_row_count(Some(b.num_rows())),
            )?)
        });
        let stream = Box::pin(
            datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(
                renamed.clone(),
                stream,
            ),
        );
        Ok(Output::Rows {
            schema: renamed,
            stream,
        })
    }

    /// Set one of [`STRATA_SETTINGS`] (`value` `None`: back to its default).
    pub fn set_setting(&mut self, name: &str, value: Option<&str>) -> Result<()> {
        let value = value
            .map(str::trim)
            .filter(|v| !v.is_empty() && !v.eq_ignore_ascii_case("default"));
        match name.to_ascii_lowercase().as_str() {
            "strata.read_after" => {
                self.read_after = match value {
                    None => None,
                    Some(v) => Some(temporal::parse_time_literal(v).map_err(|_| {
                        QueryError::Invalid(format!(
                            "invalid value for strata.read_after: \"{v}\" (give the system time of a commit, as SHOW strata.last_commit prints it on the node that made it, e.g. '2026-12-06T10:00:00.123456Z'; '' turns it off)"
                        ))
                    })?),
                };
            }
            "strata.read_after_timeout" => {
                self.read_after_timeout = match value {
                    None => DEFAULT_READ_AFTER_TIMEOUT,
                    Some(v) => parse_timeout(v).ok_or_else(|| {
                        QueryError::Invalid(format!(
                            "invalid value for strata.read_after_timeout: \"{v}\" (use milliseconds or a number with a unit: '2s', '500ms', '1min')"
                        ))
                    })?,
                };
            }
            "strata.last_commit" => {
                return Err(QueryError::Invalid(
                    "strata.last_commit is read only: it shows the system time of this session's last commit".into(),
                ))
            }
            other => {
                return Err(QueryError::Invalid(format!(
                    "unrecognized configuration parameter \"{other}\" (Strata's settings: {})",
                    STRATA_SETTINGS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                )))
            }
        }
        Ok(())
    }

    /// `SET strata.… = …` and `SHOW strata.…` (embedded and Flight SQL; the
    /// Postgres front end keeps its settings itself and hands these over).
    fn strata_setting(&mut self, stmt: &Statement) -> Result<Option<Output>> {
        let is_strata = |n: &str| {
            n.len() > 7
                && n.get(..7)
                    .is_some_and(|p| p.eq_ignore_ascii_case("strata."))
        };
        match stmt {
            Statement::Set(ast::Set::SingleAssignment {
                variable, values, ..
            }) if is_strata(&variable.to_string()) => {
                let value = match values.as_slice() {
                    [ast::Expr::Value(v)] => match &v.value {
                        ast::Value::SingleQuotedString(s) => s.clone(),
                        other => other.to_string(),
                    },
                    [e] => e.to_string(),
                    _ => {
                        return Err(QueryError::Invalid(format!(
                            "SET {variable} takes one value"
                        )))
                    }
                };
                self.set_setting(&variable.to_string(), Some(&value))?;
                Ok(Some(Output::Command {
                    tag: "SET".into(),
                    rows: 0,
                }))
            }
            Statement::ShowVariable { variable } => {
                let name = variable
                    .iter()
                    .map(|i| i.value.clone())
                    .collect::<Vec<_>>()
                    .join(".");
                if !is_strata(&name) {
                    return Ok(None);
                }
                let value =
                    self.show_setting(&name).ok_or_else(|| {
                        QueryError::Invalid(format!(
                        "unrecognized configuration parameter \"{name}\" (Strata's settings: {})",
                        STRATA_SETTINGS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                    ))
                    })?;
                let schema = Arc::new(Schema::new(vec![Field::new(
                    name.to_ascii_lowercase(),
                    DataType::Utf8,
                    false,
                )]));
                let batch = RecordBatch::try_new(
                    schema.clone(),
                    vec![Arc::new(datafusion::arrow::array::StringArray::from(vec![
                        value,
                    ]))],
                )?;
                let stream = Box::pin(
                    datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(
                        schema.clone(),
                        futures::stream::iter(vec![Ok(batch)]),
                    ),
                );
                Ok(Some(Output::Rows { schema, stream }))
            }
            _ => Ok(None),
        }
    }

    /// The value of one of [`STRATA_SETTINGS`] as `SHOW` prints it.
    pub fn show_setting(&self, name: &str) -> Option<String> {
        Some(match name.to_ascii_lowercase().as_str() {
            "strata.last_commit" => self
                .last_commit
                .map(strata_storage::time::fmt_micros)
                .unwrap_or_default(),
            "strata.read_after" => self
                .read_after
                .map(strata_storage::time::fmt_micros)
                .unwrap_or_default(),
            "strata.read_after_timeout" => {
                format!("{}ms", self.read_after_timeout.as_millis())
            }
            _ => return None,
        })
    }

    /// Commit `ops` (blind writes: INSERT, COPY) now, or add them to the
    /// open transaction.
    pub(crate) async fn write(&mut self, ops: Vec<Op>) -> Result<()> {
        self.write_after_read(ops, None).await
    }

    /// Commit `ops` now, or add them to the open transaction; `read_at`: the
    /// snapshot they were computed from (see `TxRequest::read_at`).
    pub(crate) async fn write_after_read(
        &mut self,
        ops: Vec<Op>,
        read_at: Option<i64>,
    ) -> Result<()> {
        // On a read-only node, refuse the statement itself (not only the
        // COMMIT of a transaction block).
        self.db
            .engine
            .check_writable("write")
            .map_err(QueryError::Storage)?;
        match &mut self.tx {
            Some(tx) => {
                tx.ops.extend(ops);
                tx.read_at = match (tx.read_at, read_at) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                Ok(())
            }
            None => {
                let info = self
                    .db
                    .engine
                    .commit(TxRequest {
                        ops,
                        system_time: None,
                        read_at,
                    })
                    .await?;
                self.last_commit = Some(info.system_time);
                Ok(())
            }
        }
    }

    async fn insert(
        &mut self,
        ins: ast::Insert,
        rw: &temporal::Rewritten,
        params: &[ScalarValue],
    ) -> Result<Output> {
        let table = match &ins.table {
            ast::TableObject::TableName(n) => object_name(n)?,
            other => {
                return Err(QueryError::Unsupported(format!(
                    "INSERT INTO {other} is not supported"
                )))
            }
        };
        let source = ins
            .source
            .ok_or_else(|| QueryError::Unsupported("INSERT needs VALUES or a query".into()))?;
        let mut columns: Vec<String> =
            ins.columns.iter().map(object_name).collect::<Result<_>>()?;
        if columns.is_empty() {
            let ts = self.db.engine.table_schema(&table).ok_or_else(|| {
                QueryError::Invalid(format!(
                    "INSERT INTO {table} without a column list needs an existing table; name the columns, e.g. INSERT INTO {table} (_id, …) VALUES …"
                ))
            })?;
            columns = ts.columns.iter().map(|f| f.name().clone()).collect();
        }
        // Literal and parameter rows are built directly (crate::fastpath).
        let batches = match crate::fastpath::values_batch(&source, params) {
            Some(b) if self.fast_path => vec![b],
            _ => {
                let (ctx, plan) = self.plan(Statement::Query(source), rw, params).await?;
                let df = ctx.execute_logical_plan(plan).await?;
                df.collect().await?
            }
        };
        let mut rows = 0u64;
        let mut ops = Vec::new();
        for b in batches {
            if b.num_rows() == 0 {
                continue;
            }
            if b.num_columns() != columns.len() {
                return Err(QueryError::Invalid(format!(
                    "INSERT has {} target columns but the source gives {} values per row",
                    columns.len(),
                    b.num_columns()
                )));
            }
            rows += b.num_rows() as u64;
            ops.push(Op {
                kind: OpKind::Put,
                table: table.clone(),
                batch: rename(&b, &columns)?,
            });
        }
        if !columns.iter().any(|c| c == ID) {
            return Err(QueryError::Invalid(format!(
                "INSERT INTO {table} needs an `_id` column: every row is an entity keyed by `_id`"
            )));
        }
        if !ops.is_empty() {
            self.write(ops).await?;
        }
        Ok(Output::Command {
            tag: format!("INSERT 0 {rows}"),
            rows,
        })
    }

    /// A whole load at hand (COPY FROM, Flight SQL ingest): into a table
    /// that holds no rows, outside a transaction block and without a
    /// load-wide valid period, as a bulk load ([`Session::load_batches`]);
    /// otherwise (or if an `_id` repeats) through [`Session::ingest`].
    pub async fn load_or_ingest(
        &mut self,
        table: &str,
        batches: Vec<RecordBatch>,
        valid: Option<(Option<i64>, Option<i64>)>,
    ) -> Result<u64> {
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        if self.tx.is_none()
            && valid.is_none()
            && rows >= strata_storage::load::MIN_ROWS
            && !self.db.engine.table_holds_versions(table)
        {
            let again = batches.clone();
            if let BulkLoaded::Rows(n) = self.load_batches(table, again.into_iter().map(Ok)).await?
            {
                return Ok(n);
            }
        }
        self.ingest(table, batches, valid).await
    }

    /// Bulk load into a table that holds no rows, writing segments straight
    /// from the rows (`strata_storage::load`): one transaction, all or
    /// nothing, the rows written once. Unless [`BulkLoaded::Rows`], nothing
    /// was loaded and the rows must go through [`Session::ingest`]
    /// instead. A load smaller than `strata_storage::load::MIN_ROWS` is
    /// committed through the ordinary path here.
    pub async fn load_batches<I>(&mut self, table: &str, batches: I) -> Result<BulkLoaded>
    where
        I: Iterator<Item = Result<RecordBatch>>,
    {
        if self.tx.is_some() {
            return Err(QueryError::Invalid(
                "a bulk load runs as a transaction of its own: COMMIT or ROLLBACK the open one first"
                    .into(),
            ));
        }
        self.authorize_load(table, "bulk load").await?;
        let started = self.db.engine.clock_now();
        let r = self.load_rows(table, batches).await;
        if !matches!(r, Ok(BulkLoaded::Rows(_)) | Err(_)) {
            return r;
        }
        let outcome = r.as_ref().map_err(|e| e.to_string()).map(|n| match n {
            BulkLoaded::Rows(n) => *n,
            _ => 0,
        });
        self.report_load(table, started, outcome);
        r
    }

    /// May this session load rows into `table`? A refusal is audited as
    /// `{what} into {table}`.
    async fn authorize_load(&mut self, table: &str, what: &str) -> Result<()> {
        let r = self.authorize_ingest(table).await;
        if let (Err(QueryError::Privilege(m)), Some(user)) = (&r, &self.user) {
            self.db.audit(crate::access::audit::AuditEvent {
                event: "denied",
                role: user.clone(),
                client: self.client.clone(),
                statement: Some(format!(
                    "{what} into {table} (COPY FROM, Flight SQL ingest, strata import)"
                )),
                detail: Some(m.clone()),
            });
        }
        r
    }

    async fn load_rows<I>(&mut self, table: &str, batches: I) -> Result<BulkLoaded>
    where
        I: Iterator<Item = Result<RecordBatch>>,
    {
        use strata_storage::LoadOutcome;
        let engine = self.db.engine.clone();
        let Some(mut load) = engine.begin_load(table).await? else {
            return Ok(BulkLoaded::TableHoldsRows);
        };
        for b in batches {
            let pushed = match b {
                Ok(b) if b.num_rows() > 0 && b.schema().index_of(ID).is_err() => {
                    Err(QueryError::Invalid(format!(
                        "rows loaded into {table} need an `_id` column: every row is an entity keyed by `_id`"
                    )))
                }
                Ok(b) => load.push(b).await.map_err(QueryError::from),
                Err(e) => Err(e),
            };
            if let Err(e) = pushed {
                load.abort().await;
                return Err(e);
            }
        }
        match load.commit().await? {
            LoadOutcome::Loaded { rows, .. } => Ok(BulkLoaded::Rows(rows)),
            LoadOutcome::Repeated => Ok(BulkLoaded::RepeatedId),
            LoadOutcome::Small(batches) => Ok(BulkLoaded::Rows(
                self.ingest_rows(table, batches, None).await?,
            )),
        }
    }

    /// Bulk ingest: put every row of `batches` into `table` (created on first
    /// write), in the open transaction or as one transaction of its own. Each
    /// batch needs an `_id` column; `_valid_from` / `_valid_to` columns, when
    /// present, give each row's valid period, otherwise `valid` (if given)
    /// applies to the whole load, otherwise `[now, ∞)`.
    /// Returns the number of rows written.
    pub async fn ingest(
        &mut self,
        table: &str,
        batches: Vec<RecordBatch>,
        valid: Option<(Option<i64>, Option<i64>)>,
    ) -> Result<u64> {
        let started = self.db.engine.clock_now();
        let r = self.ingest_rows(table, batches, valid).await;
        self.report_load(
            table,
            started,
            r.as_ref().map(|n| *n).map_err(|e| e.to_string()),
        );
        r
    }

    /// Report a load of `table` that began at `started` to the lineage hook.
    fn report_load(&self, table: &str, started: i64, outcome: std::result::Result<u64, String>) {
        let ended = self.db.engine.clock_now();
        self.db.report_lineage(|| crate::lineage::LineageRun {
            kind: "load",
            inputs: vec![],
            outputs: vec![crate::lineage::table_dataset(&self.db.engine, table)],
            started,
            ended,
            outcome,
            role: self.user.clone(),
            statement: None,
        });
    }

    async fn ingest_rows(
        &mut self,
        table: &str,
        batches: Vec<RecordBatch>,
        valid: Option<(Option<i64>, Option<i64>)>,
    ) -> Result<u64> {
        use datafusion::arrow::array::TimestampMicrosecondArray;
        self.authorize_load(table, "load").await?;
        let mut rows = 0u64;
        let mut ops = Vec::new();
        for b in batches {
            if b.num_rows() == 0 {
                continue;
            }
            let schema = b.schema();
            if schema.index_of(ID).is_err() {
                return Err(QueryError::Invalid(format!(
                    "rows loaded into {table} need an `_id` column: every row is an entity keyed by `_id`"
                )));
            }
            let mut b = b;
            if let Some((from, to)) = valid {
                let mut fields: Vec<Field> =
                    schema.fields().iter().map(|f| f.as_ref().clone()).collect();
                let mut cols: Vec<ArrayRef> = b.columns().to_vec();
                let n = b.num_rows();
                for (name, v) in [
                    (strata_storage::schema::VALID_FROM, from),
                    (strata_storage::schema::VALID_TO, to),
                ] {
                    let Some(v) = v else { continue };
                    if schema.index_of(name).is_ok() {
                        return Err(QueryError::Invalid(format!(
                            "the load gives `{name}` both as a column and for the whole batch; give one"
                        )));
                    }
                    fields.push(Field::new(
                        name,
                        strata_storage::schema::timestamp_type(),
                        true,
                    ));
                    let arr = TimestampMicrosecondArray::from(vec![v; n]).with_timezone("UTC");
                    cols.push(Arc::new(arr));
                }
                b = RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?;
            }
            rows += b.num_rows() as u64;
            ops.push(Op {
                kind: OpKind::Put,
                table: table.to_string(),
                batch: b,
            });
        }
        if !ops.is_empty() {
            self.write(ops).await?;
        }
        Ok(rows)
    }

    async fn create_table(&mut self, ct: ast::CreateTable) -> Result<Output> {
        let table = object_name(&ct.name)?;
        if self.db.engine.table_schema(&table).is_some() {
            if ct.if_not_exists {
                return Ok(Output::Command {
                    tag: "CREATE TABLE".into(),
                    rows: 0,
                });
            }
            return Err(QueryError::Invalid(format!(
                "table `{table}` already exists"
            )));
        }
        let mut fields = Vec::new();
        for c in &ct.columns {
            let name = crate::ident::normalize(&c.name);
            if TEMPORAL_COLUMNS.contains(&name.as_str()) {
                continue;
            }
            fields.push(crate::casts::column_field(&name, &c.data_type)?);
        }
        if !fields.iter().any(|f| f.name() == ID) {
            fields.insert(0, Field::new(ID, DataType::Int64, true));
        }
        let schema = Arc::new(Schema::new(fields));
        let batch = RecordBatch::new_empty(schema);
        self.write(vec![Op {
            kind: OpKind::CreateTable,
            table,
            batch,
        }])
        .await?;
        Ok(Output::Command {
            tag: "CREATE TABLE".into(),
            rows: 0,
        })
    }
}

/// How [`Session::load_batches`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkLoaded {
    /// Loaded, in one transaction: this many rows.
    Rows(u64),
    /// Nothing loaded: the table holds rows (load it with `ingest`).
    TableHoldsRows,
    /// Nothing loaded: an `_id` occurs more than once in the input (load
    /// it with `ingest`, where the later row is a new version).
    RepeatedId,
}

fn rename(b: &RecordBatch, columns: &[String]) -> Result<RecordBatch> {
    let mut seen = HashSet::new();
    for c in columns {
        if !seen.insert(c) {
            return Err(QueryError::Invalid(format!(
                "column `{c}` is named twice in INSERT"
            )));
        }
    }
    let fields: Vec<Field> = b
        .schema()
        .fields()
        .iter()
        .zip(columns)
        // Keep the metadata: a `'…'::uuid` value is a uuid (crate::casts).
        .map(|(f, n)| {
            Field::new(n, f.data_type().clone(), true).with_metadata(f.metadata().clone())
        })
        .collect();
    let cols: Vec<ArrayRef> = b.columns().to_vec();
    Ok(RecordBatch::try_new_with_options(
        Arc::new(Schema::new(fields)),
        cols,
        &RecordBatchOptions::new().with_row_count(Some(b.num_rows())),
    )?)
}

/// `500`, `500ms`, `2s`, `1min`: a duration of at least 1 ms.
fn parse_timeout(v: &str) -> Option<std::time::Duration> {
    let v = v.trim().to_ascii_lowercase();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, unit) = v.split_at(split);
    let n: u64 = num.parse().ok()?;
    let ms = match unit.trim() {
        "" | "ms" => n,
        "s" => n.checked_mul(1000)?,
        "min" => n.checked_mul(60_000)?,
        _ => return None,
    };
    (ms > 0).then(|| std::time::Duration::from_millis(ms))
}
