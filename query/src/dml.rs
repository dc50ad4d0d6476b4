//! UPDATE, DELETE, ERASE and ASSERT: Strata plans these itself. Each reads the
//! affected versions at the statement's snapshot (as a query on DataFusion) and
//! turns them into put / delete / erase events over valid-time periods.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, RecordBatch, TimestampMicrosecondArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{Field, Schema, TimestampMicrosecondType};
use datafusion::common::ScalarValue;
use datafusion::sql::sqlparser::ast::{self, Statement};
use strata_storage::log::{Op, OpKind};
use strata_storage::schema::{timestamp_type, ID, TEMPORAL_COLUMNS, VALID_FROM, VALID_TO};
use strata_storage::{TimeSelector, OPEN};

use crate::error::{QueryError, Result};
use crate::session::{Output, Session};
use crate::sql::{object_name, parse};
use crate::temporal::{Rewritten, StatementKind};

const VF: &str = "__strata_vf";
const VT: &str = "__strata_vt";

fn table_and_alias(t: &ast::TableWithJoins) -> Result<(String, Option<String>)> {
    if !t.joins.is_empty() {
        return Err(QueryError::Unsupported(
            "UPDATE/DELETE of a join is not supported; use a subquery in WHERE".into(),
        ));
    }
    match &t.relation {
        ast::TableFactor::Table { name, alias, .. } => Ok((
            object_name(name)?,
            alias.as_ref().map(|a| crate::ident::normalize(&a.name)),
        )),
        other => Err(QueryError::Unsupported(format!("cannot write to {other}"))),
    }
}

/// The name an UPDATE's or DELETE's read of its target table plans under.
pub(crate) const DML_TARGET: &str = "__strata_dml";

impl Session {
    /// Run `select_sql` (which reads table `table` through the synthetic name
    /// `__strata_dml`) at the statement's snapshot, with the given valid-time selection.
    async fn read_versions(
        &self,
        rw: &Rewritten,
        table: &str,
        valid: TimeSelector,
        all_system: bool,
        select_sql: String,
        params: &[ScalarValue],
        read_at: i64,
    ) -> Result<Vec<RecordBatch>> {
        if self.db.engine.table_schema(table).is_none() {
            return Err(crate::provider::unknown_table(&self.db.engine, table).into());
        }
        let sys = if all_system {
            Some(TimeSelector::All)
        } else {
            self.dml_snapshot(rw, read_at).map(TimeSelector::AsOf)
        };
        let mut overrides = rw.overrides.clone();
        overrides.push(("__strata_dml".into(), table.to_string(), sys, Some(valid)));
        let inner = Rewritten {
            sql: select_sql.clone(),
            kind: StatementKind::Plain,
            default_system: rw.default_system,
            default_valid: rw.default_valid,
            overrides,
            contextual: rw.contextual,
        };
        let stmt = parse(&select_sql)?
            .pop()
            .ok_or_else(|| QueryError::Internal("empty DML read".into()))?;
        let (ctx, plan) = self.plan(stmt, &inner, params).await?;
        Ok(ctx.execute_logical_plan(plan).await?.collect().await?)
    }

    /// Fix the snapshot of an UPDATE or DELETE (see `dml_snapshot`).
    fn begin_dml(&self) -> i64 {
        self.db.engine.latest_system_time()
    }

    /// The earliest "now" of a DML statement: its snapshot, or inside a
    /// transaction with writes the provisional commit time it reads at.
    fn dml_floor(&self, read_at: i64) -> i64 {
        match &self.tx {
            Some(tx) if !tx.ops.is_empty() => self
                .db
                .engine
                .provisional_system_time(tx.system_time)
                .max(read_at),
            _ => read_at,
        }
    }

    /// The system time an UPDATE or DELETE reads at, fixed once per
    /// statement: the latest commit this node has applied when the
    /// statement starts (`None` inside a transaction with writes, which
    /// reads at its provisional commit time to see them, or under a
    /// `SETTING DEFAULT SYSTEM_TIME`). The rows are rewritten from this
    /// snapshot, its "now" is not earlier than it, and a later commit that
    /// changed one of them is a conflict.
    fn dml_snapshot(&self, rw: &Rewritten, read_at: i64) -> Option<i64> {
        let pending = self.tx.as_ref().is_some_and(|t| !t.ops.is_empty());
        (!pending && rw.default_system.is_none()).then_some(read_at)
    }

    /// The valid-time portion a DML statement acts on, and the start used
    /// for "now": the wall clock, but never before the snapshot the
    /// statement reads (a version another node committed "ahead" of this
    /// node's clock is then not seen as still valid at now, to be rewritten
    /// over a period that ends before the commit starts it).
    fn portion(&self, p: Option<TimeSelector>, floor: i64) -> (TimeSelector, Option<i64>) {
        match p {
            Some(sel) => (sel, None),
            None => {
                let clock = strata_storage::Clock::now_us(&strata_storage::SystemClock);
                let now = clock.max(floor);
                (
                    TimeSelector::Range {
                        from: now,
                        to: OPEN,
                    },
                    Some(now),
                )
            }
        }
    }

    /// Turn the rows read for a DML statement into events of `kind`, write
    /// them (or add them to the open transaction) and report `TAG n`.
    async fn emit(
        &mut self,
        table: &str,
        kind: OpKind,
        tag: &str,
        batches: Vec<RecordBatch>,
        to_event: impl Fn(&RecordBatch) -> Result<RecordBatch>,
        read_at: Option<i64>,
    ) -> Result<Output> {
        let mut ops = Vec::new();
        let mut rows = 0;
        for b in batches.iter().filter(|b| b.num_rows() > 0) {
            rows += b.num_rows() as u64;
            ops.push(Op {
                kind,
                table: table.to_string(),
                batch: to_event(b)?,
            });
        }
        if !ops.is_empty() {
            self.write_after_read(ops, read_at).await?;
        }
        Ok(Output::Command {
            tag: format!("{tag} {rows}"),
            rows,
        })
    }

    pub(crate) async fn update(
        &mut self,
        u: &ast::Update,
        portion: Option<TimeSelector>,
        rw: &Rewritten,
        params: &[ScalarValue],
    ) -> Result<Output> {
        let (table, alias) = table_and_alias(&u.table)?;
        if u.from.is_some() || u.returning.is_some() {
            return Err(QueryError::Unsupported(
                "UPDATE … FROM / RETURNING is not supported yet".into(),
            ));
        }
        let schema = self.db.engine.table_schema(&table);
        let mut sets: Vec<(String, String)> = Vec::new();
        for a in &u.assignments {
            let col = match &a.target {
                ast::AssignmentTarget::ColumnName(n) => {
                    n.0.last()
                        .and_then(|p| p.as_ident())
                        .map(crate::ident::normalize)
                }
                _ => None,
            }
            .ok_or_else(|| {
                QueryError::Unsupported("SET of a column tuple is not supported".into())
            })?;
            if col == ID || TEMPORAL_COLUMNS.contains(&col.as_str()) {
                return Err(QueryError::Invalid(format!(
                    "cannot SET `{col}`: `_id` and the temporal columns are not updatable (use FOR PORTION OF VALID_TIME to change periods)"
                )));
            }
            sets.push((col, a.value.to_string()));
        }
        let mut cols: Vec<String> = Vec::new();
        for f in schema.iter().flat_map(|s| s.columns.iter()) {
            match sets.iter().find(|(c, _)| c == f.name()) {
                Some((c, e)) => cols.push(format!("({e}) AS \"{c}\"")),
                None => cols.push(format!("\"{}\"", f.name())),
            }
        }
        for (c, e) in &sets {
            if schema.as_ref().and_then(|s| s.index_of(c)).is_none() {
                cols.push(format!("({e}) AS \"{c}\""));
            }
        }
        let read_at = self.begin_dml();
        let (valid, now) = self.portion(portion, self.dml_floor(read_at));
        let sql = format!(
            "SELECT {}, _valid_from AS {VF}, _valid_to AS {VT} FROM __strata_dml AS \"{}\"{}",
            cols.join(", "),
            alias.unwrap_or_else(|| table.clone()),
            u.selection
                .as_ref()
                .map(|w| format!(" WHERE {w}"))
                .unwrap_or_default()
        );
        // The rows are rewritten from what this snapshot shows: a commit
        // after it that changed one of them makes this one a conflict
        // (first committer wins), not a lost update.
        let batches = self
            .read_versions(rw, &table, valid, false, sql, params, read_at)
            .await?;
        self.emit(
            &table,
            OpKind::Put,
            "UPDATE",
            batches,
            |b| clip(b, valid, now, true),
            Some(read_at),
        )
        .await
    }

    pub(crate) async fn delete(
        &mut self,
        d: &ast::Delete,
        portion: Option<TimeSelector>,
        rw: &Rewritten,
        params: &[ScalarValue],
    ) -> Result<Output> {
        let (table, alias) = delete_target(d)?;
        let read_at = self.begin_dml();
        let (valid, now) = self.portion(portion, self.dml_floor(read_at));
        let sql =
            format!(
            "SELECT \"_id\", _valid_from AS {VF}, _valid_to AS {VT} FROM __strata_dml AS \"{}\"{}",
            alias.unwrap_or_else(|| table.clone()),
            d.selection.as_ref().map(|w| format!(" WHERE {w}")).unwrap_or_default()
        );
        let batches = self
            .read_versions(rw, &table, valid, false, sql, params, read_at)
            .await?;
        self.emit(
            &table,
            OpKind::Delete,
            "DELETE",
            batches,
            |b| clip(b, valid, now, false),
            Some(read_at),
        )
        .await
    }

    pub(crate) async fn erase(
        &mut self,
        d: &ast::Delete,
        rw: &Rewritten,
        params: &[ScalarValue],
    ) -> Result<Output> {
        let (table, alias) = delete_target(d)?;
        let sql = format!(
            "SELECT DISTINCT \"_id\" FROM __strata_dml AS \"{}\"{}",
            alias.unwrap_or_else(|| table.clone()),
            d.selection
                .as_ref()
                .map(|w| format!(" WHERE {w}"))
                .unwrap_or_default()
        );
        let batches = self
            .read_versions(rw, &table, TimeSelector::All, true, sql, params, 0)
            .await?;
        // Blind: an erase removes every version whatever was written since.
        self.emit(
            &table,
            OpKind::Erase,
            "ERASE",
            batches,
            |b| Ok(b.clone()),
            None,
        )
        .await
    }

    pub(crate) async fn assert(
        &mut self,
        stmt: Statement,
        rw: &Rewritten,
        params: &[ScalarValue],
    ) -> Result<Output> {
        // `ASSERT e` → `SELECT count(*) > 0 … WHERE e`: a subquery predicate
        // such as EXISTS (…) is planned in a filter (as a semi join), which
        // DataFusion cannot do in a projection.
        let wrapped = match &stmt {
            Statement::Query(q) => match q.body.as_ref() {
                ast::SetExpr::Select(sel) if sel.from.is_empty() && sel.projection.len() == 1 => {
                    match &sel.projection[0] {
                        ast::SelectItem::UnnamedExpr(e)
                            if e.to_string().to_ascii_uppercase().contains("SELECT") =>
                        {
                            Some(format!(
                                "SELECT count(*) > 0 FROM (SELECT 1) AS __strata_assert WHERE {e}"
                            ))
                        }
                        _ => None,
                    }
                }
                _ => None,
            },
            _ => None,
        };
        let stmt = match wrapped {
            Some(sql) => crate::sql::parse(&sql)?.pop().unwrap_or(stmt),
            None => stmt,
        };
        let (ctx, plan) = self.plan(stmt, rw, params).await?;
        let batches = ctx.execute_logical_plan(plan).await?.collect().await?;
        // `columns().first()`: `ASSERT FROM t` asserts no expression at all
        // (an empty select list), and its batches have no column.
        let ok = batches.iter().find(|b| b.num_rows() > 0).and_then(|b| {
            b.columns()
                .first()?
                .as_any()
                .downcast_ref::<BooleanArray>()
                .map(|a| a.is_valid(0) && a.value(0))
        });
        match ok {
            Some(true) => Ok(Output::Command {
                tag: "ASSERT".into(),
                rows: 0,
            }),
            Some(false) => Err(QueryError::Assertion(format!(
                "assertion failed: {}",
                rw.sql.trim_start().trim_start_matches("SELECT").trim()
            ))),
            None => Err(QueryError::Invalid(
                "ASSERT needs a boolean expression".into(),
            )),
        }
    }
}

fn delete_target(d: &ast::Delete) -> Result<(String, Option<String>)> {
    let from = match &d.from {
        ast::FromTable::WithFromKeyword(v) | ast::FromTable::WithoutKeyword(v) => v,
    };
    if from.len() != 1 || d.using.is_some() || d.returning.is_some() {
        return Err(QueryError::Unsupported(
            "DELETE/ERASE from one table only (no USING/RETURNING yet)".into(),
        ));
    }
    table_and_alias(&from[0])
}

/// Turn rows `(values…, __vf, __vt)` into an event batch whose valid period is
/// the row's period clipped to the portion. With the default portion, a period
/// starting before now starts at the transaction's system time (NULL).
fn clip(
    b: &RecordBatch,
    portion: TimeSelector,
    now: Option<i64>,
    keep_values: bool,
) -> Result<RecordBatch> {
    let n = b.num_rows();
    let vf_i = b
        .schema()
        .index_of(VF)
        .map_err(|e| QueryError::Internal(e.to_string()))?;
    let vt_i = b
        .schema()
        .index_of(VT)
        .map_err(|e| QueryError::Internal(e.to_string()))?;
    let vf = cast(b.column(vf_i), &timestamp_type())?;
    let vt = cast(b.column(vt_i), &timestamp_type())?;
    let vf = vf.as_primitive::<TimestampMicrosecondType>();
    let vt = vt.as_primitive::<TimestampMicrosecondType>();
    let (pa, pb) = match portion {
        TimeSelector::Range { from, to } => (from, to),
        _ => (i64::MIN, OPEN),
    };
    let mut out_vf = Vec::with_capacity(n);
    let mut out_vt = Vec::with_capacity(n);
    for i in 0..n {
        let f = if vf.is_null(i) { i64::MIN } else { vf.value(i) };
        let t = if vt.is_null(i) { OPEN } else { vt.value(i) };
        let lo = f.max(pa);
        let hi = t.min(pb);
        out_vf.push(match now {
            Some(now) if lo <= now => None,
            _ => Some(lo),
        });
        out_vt.push((hi != OPEN).then_some(hi));
    }
    let mut fields: Vec<Field> = Vec::new();
    let mut cols: Vec<ArrayRef> = Vec::new();
    for (i, f) in b.schema().fields().iter().enumerate() {
        if i == vf_i || i == vt_i || (!keep_values && f.name() != ID) {
            continue;
        }
        fields.push(Field::new(f.name(), f.data_type().clone(), true));
        cols.push(b.column(i).clone());
    }
    fields.push(Field::new(VALID_FROM, timestamp_type(), true));
    cols.push(Arc::new(
        TimestampMicrosecondArray::from(out_vf).with_timezone("UTC"),
    ));
    fields.push(Field::new(VALID_TO, timestamp_type(), true));
    cols.push(Arc::new(
        TimestampMicrosecondArray::from(out_vt).with_timezone("UTC"),
    ));
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), cols)?)
}
