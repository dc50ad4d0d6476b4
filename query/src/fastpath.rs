//! Point lookups without the planner.
//!
//! `SELECT cols FROM t WHERE _id = $1` is the most common statement an
//! application sends, and planning it on DataFusion (SQL to logical plan,
//! optimizer, physical plan) costs far more than answering it: the entity's
//! rows are a hash probe in the live index plus a binary search in the few
//! segments whose bloom filter admits the id. This module recognizes that
//! shape on the parsed statement and answers it straight from the storage
//! engine, at the same temporal coordinate the planner would use.
//!
//! `ORDER BY` on selected columns is sorted here (an entity's history is
//! a handful of rows).
//!
//! Anything it does not recognize exactly (joins, expressions, ORDER BY
//! on anything else,
//! a key whose type does not match `_id`, reads inside a transaction with
//! writes, …) goes to the planner unchanged, so the answer is always the
//! planner's answer; `tests/point_lookup.rs` checks the two agree.

use std::sync::Arc;

use datafusion::arrow::array::{new_null_array, RecordBatch};
use datafusion::arrow::compute::{
    cast_with_options, concat_batches, lexsort_to_indices, take_record_batch, CastOptions,
    SortColumn, SortOptions,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::sql::sqlparser::ast::{self, Expr, SelectItem, SetExpr, Statement, TableFactor};
use strata_storage::schema::{ID, TEMPORAL_COLUMNS};
use strata_storage::EntityId;

use crate::error::{QueryError, Result};
use crate::session::Output;
use crate::sql::ident_name as ident;

/// A recognized point lookup, before binding.
#[derive(Debug)]
struct Lookup {
    /// The table reference as written (a synthetic name for a reference
    /// with a temporal clause).
    table: String,
    items: Vec<Item>,
    key: Key,
    /// `ORDER BY` keys, in order (empty: none).
    order: Vec<OrderKey>,
}

/// One `ORDER BY` key: a column of the select list, by output name or
/// (qualified, or not an output name) by the column it reads.
#[derive(Debug)]
struct OrderKey {
    name: String,
    qualified: bool,
    descending: bool,
    nulls_first: bool,
}

#[derive(Debug)]
enum Item {
    /// `*`: the table's columns without the temporal ones.
    Star,
    /// A column, and the name it is output as.
    Column { name: String, output: String },
}

#[derive(Debug)]
enum Key {
    Param(usize),
    Value(ScalarValue),
}

/// `col` or `q.col` (with `q` the table or its alias); the column name.
fn column(e: &Expr, qualifier: &str) -> Option<String> {
    match e {
        Expr::Identifier(i) => Some(ident(i)),
        Expr::CompoundIdentifier(parts) => match parts.as_slice() {
            [q, c] if ident(q) == qualifier => Some(ident(c)),
            _ => None,
        },
        Expr::Nested(inner) => column(inner, qualifier),
        _ => None,
    }
}

fn key(e: &Expr) -> Option<Key> {
    match e {
        Expr::Value(v) => match &v.value {
            ast::Value::Placeholder(p) => {
                let n: usize = p.strip_prefix('$')?.parse().ok()?;
                (n >= 1).then(|| Key::Param(n - 1))
            }
            ast::Value::Number(n, _) => n.parse::<i64>().ok().map(|i| Key::Value(i.into())),
            ast::Value::SingleQuotedString(s) => {
                Some(Key::Value(ScalarValue::Utf8(Some(s.clone()))))
            }
            _ => None,
        },
        Expr::Nested(inner) => key(inner),
        _ => None,
    }
}

/// The lookup `stmt` is, if it is exactly one.
fn recognize(stmt: &Statement) -> Option<Lookup> {
    let Statement::Query(q) = stmt else {
        return None;
    };
    let ast::Query {
        with,
        body,
        order_by,
        limit_clause,
        fetch,
        locks,
        for_clause,
        settings,
        format_clause,
        pipe_operators,
    } = q.as_ref();
    if with.is_some()
        || limit_clause.is_some()
        || fetch.is_some()
        || !locks.is_empty()
        || for_clause.is_some()
        || settings.is_some()
        || format_clause.is_some()
        || !pipe_operators.is_empty()
    {
        return None;
    }
    let SetExpr::Select(s) = body.as_ref() else {
        return None;
    };
    let ast::Select {
        select_token: _,
        optimizer_hints,
        distinct,
        select_modifiers,
        top,
        top_before_distinct: _,
        projection,
        exclude,
        into,
        from,
        lateral_views,
        prewhere,
        selection,
        connect_by,
        group_by,
        cluster_by,
        distribute_by,
        sort_by,
        having,
        named_window,
        qualify,
        window_before_qualify: _,
        value_table_mode,
        flavor,
    } = s.as_ref();
    let no_grouping =
        matches!(group_by, ast::GroupByExpr::Expressions(e, m) if e.is_empty() && m.is_empty());
    if !optimizer_hints.is_empty()
        || distinct.is_some()
        || select_modifiers.is_some()
        || top.is_some()
        || exclude.is_some()
        || into.is_some()
        || !lateral_views.is_empty()
        || prewhere.is_some()
        || !connect_by.is_empty()
        || !no_grouping
        || !cluster_by.is_empty()
        || !distribute_by.is_empty()
        || !sort_by.is_empty()
        || having.is_some()
        || !named_window.is_empty()
        || qualify.is_some()
        || value_table_mode.is_some()
        || !matches!(flavor, ast::SelectFlavor::Standard)
    {
        return None;
    }
    let [from] = from.as_slice() else {
        return None;
    };
    if !from.joins.is_empty() {
        return None;
    }
    let TableFactor::Table {
        name,
        alias,
        args,
        with_hints,
        version,
        with_ordinality,
        partitions,
        json_path,
        sample,
        index_hints,
    } = &from.relation
    else {
        return None;
    };
    if args.is_some()
        || !with_hints.is_empty()
        || version.is_some()
        || *with_ordinality
        || !partitions.is_empty()
        || json_path.is_some()
        || sample.is_some()
        || !index_hints.is_empty()
    {
        return None;
    }
    let table = crate::sql::object_name(name).ok()?;
    let qualifier = match alias {
        Some(a) if a.columns.is_empty() => ident(&a.name),
        Some(_) => return None,
        None => table.clone(),
    };
    let Some(Expr::BinaryOp {
        left,
        op: ast::BinaryOperator::Eq,
        right,
    }) = selection
    else {
        return None;
    };
    let key = if column(left, &qualifier).as_deref() == Some(ID) {
        key(right)?
    } else if column(right, &qualifier).as_deref() == Some(ID) {
        key(left)?
    } else {
        return None;
    };
    // An entity's history is a handful of rows: sorting them here is far
    // cheaper than planning a sort.
    let mut order = Vec::new();
    if let Some(ob) = order_by {
        let ast::OrderByKind::Expressions(exprs) = &ob.kind else {
            return None;
        };
        if ob.interpolate.is_some() {
            return None;
        }
        for e in exprs {
            if e.with_fill.is_some() {
                return None;
            }
            let (name, qualified) = match &e.expr {
                Expr::Identifier(i) => (ident(i), false),
                Expr::CompoundIdentifier(_) => (column(&e.expr, &qualifier)?, true),
                _ => return None,
            };
            let descending = e.options.asc == Some(false);
            order.push(OrderKey {
                name,
                qualified,
                descending,
                // DataFusion's default (and PostgreSQL's): NULLs sort as
                // the largest value.
                nulls_first: e.options.nulls_first.unwrap_or(descending),
            });
        }
    }
    let mut items = Vec::with_capacity(projection.len());
    for p in projection {
        items.push(match p {
            SelectItem::UnnamedExpr(e) => {
                let name = column(e, &qualifier)?;
                Item::Column {
                    output: name.clone(),
                    name,
                }
            }
            SelectItem::ExprWithAlias { expr, alias } => Item::Column {
                name: column(expr, &qualifier)?,
                output: ident(alias),
            },
            SelectItem::Wildcard(o) if crate::wildcard::is_plain(o) => Item::Star,
            SelectItem::QualifiedWildcard(ast::SelectItemQualifiedWildcardKind::ObjectName(n), o)
                if crate::wildcard::is_plain(o)
                    && matches!(n.0.as_slice(), [p] if p.as_ident().map(ident).as_deref() == Some(qualifier.as_str())) =>
            {
                Item::Star
            }
            _ => return None,
        });
    }
    Some(Lookup {
        table,
        items,
        key,
        order,
    })
}

/// The key as an entity id comparable with an `_id` column of type `id_type`,
/// the way the planner would coerce it; `None` when the planner should decide.
fn entity(key: &ScalarValue, id_type: &DataType) -> Option<EntityId> {
    match (id_type, key) {
        // The planner compares an integer `_id` with a string as strings:
        // only a string that is an integer's canonical text finds that row.
        (DataType::Int64, ScalarValue::Utf8(Some(s))) => s
            .parse::<i64>()
            .ok()
            .filter(|i| i.to_string() == *s)
            .map(EntityId::Int),
        (DataType::Int64, v) => match crate::provider::scalar_id(v)? {
            e @ EntityId::Int(_) => Some(e),
            _ => None,
        },
        (DataType::Utf8, v) => match crate::provider::scalar_id(v)? {
            e @ EntityId::Text(_) => Some(e),
            _ => None,
        },
        _ => None,
    }
}

/// Column `f` of a found batch, by name, in `f`'s type (NULL if missing).
fn column_as(b: &RecordBatch, f: &Field) -> Result<datafusion::arrow::array::ArrayRef> {
    match b.column_by_name(f.name()) {
        Some(c) if c.data_type() == f.data_type() => Ok(c.clone()),
        Some(c) => {
            let opts = CastOptions {
                safe: false,
                ..Default::default()
            };
            cast_with_options(c, f.data_type(), &opts).map_err(|e| {
                QueryError::Invalid(format!(
                    "column `{}` changed type while the query ran ({e}); run the query again",
                    f.name()
                ))
            })
        }
        None => Ok(new_null_array(f.data_type(), b.num_rows())),
    }
}

/// An `ORDER BY` key as a column of the output.
struct SortColumnAt {
    column: usize,
    options: SortOptions,
}

/// `batches` as one batch sorted by `keys`.
fn sorted(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    keys: &[SortColumnAt],
) -> Result<Vec<RecordBatch>> {
    if batches.iter().map(RecordBatch::num_rows).sum::<usize>() < 2 {
        return Ok(batches.to_vec());
    }
    let all = concat_batches(schema, batches)?;
    let columns: Vec<SortColumn> = keys
        .iter()
        .map(|k| SortColumn {
            values: all.column(k.column).clone(),
            options: Some(k.options),
        })
        .collect();
    let order = lexsort_to_indices(&columns, None)?;
    Ok(vec![take_record_batch(&all, &order)?])
}

impl crate::session::Session {
    /// Answer `stmt` directly if it is a point lookup; `None` to plan it.
    pub(crate) async fn try_point_lookup(
        &self,
        stmt: &Statement,
        rw: &crate::temporal::Rewritten,
        params: &[ScalarValue],
    ) -> Result<Option<Output>> {
        if !matches!(rw.kind, crate::temporal::StatementKind::Plain) {
            return Ok(None);
        }
        let Some(lookup) = recognize(stmt) else {
            return Ok(None);
        };
        let key = match &lookup.key {
            Key::Param(i) => match params.get(*i) {
                Some(v) => v,
                None => return Ok(None),
            },
            Key::Value(v) => v,
        };
        let times = self.times(rw)?;
        if times.pending.is_some() {
            // Inside a transaction with writes: the planner's path sees them.
            return Ok(None);
        }
        let (table, coord) = match times.overrides.iter().find(|(n, _, _)| *n == lookup.table) {
            Some((_, t, c)) => (t.clone(), *c),
            None => (lookup.table.clone(), times.default),
        };
        let engine = &self.db.engine;
        let Some(stored) = engine.table_output_schema(&table) else {
            return Ok(None);
        };
        let full = crate::provider::planner_schema_of(stored);
        let Ok(id_field) = full.field_with_name(ID) else {
            return Ok(None);
        };
        if strata_storage::schema::SqlType::of(id_field).is_some() {
            // A uuid key: the planner converts the key to the column's type.
            return Ok(None);
        }
        let Some(id) = entity(key, id_field.data_type()) else {
            return Ok(None);
        };
        // The output columns: (column in the table, output name).
        let mut cols: Vec<(Arc<Field>, String)> = Vec::new();
        for item in &lookup.items {
            match item {
                Item::Star => {
                    for f in full.fields() {
                        if !TEMPORAL_COLUMNS.contains(&f.name().as_str()) {
                            cols.push((f.clone(), f.name().clone()));
                        }
                    }
                }
                Item::Column { name, output } => match full.field_with_name(name) {
                    Ok(f) => cols.push((Arc::new(f.clone()), output.clone())),
                    // Unknown column: the planner words the error.
                    Err(_) => return Ok(None),
                },
            }
        }
        // Duplicate output names: the planner's rules (and error) apply.
        let mut names: Vec<&str> = cols.iter().map(|(_, o)| o.as_str()).collect();
        names.sort_unstable();
        if names.windows(2).any(|w| w[0] == w[1]) {
            return Ok(None);
        }
        // The sort keys as output columns: an output name, else (or when
        // qualified) the column an output reads; anything else (a column
        // not selected) is the planner's.
        let mut sort_keys = Vec::with_capacity(lookup.order.len());
        for k in &lookup.order {
            let by_output = if k.qualified {
                None
            } else {
                cols.iter().position(|(_, o)| *o == k.name)
            };
            let Some(i) = by_output.or_else(|| cols.iter().position(|(f, _)| *f.name() == k.name))
            else {
                return Ok(None);
            };
            sort_keys.push(SortColumnAt {
                column: i,
                options: SortOptions {
                    descending: k.descending,
                    nulls_first: k.nulls_first,
                },
            });
        }
        // At a past system time the pieces of a version (rows of files
        // written before view columns) are merged back (crate::merge): read
        // every column over all of valid time.
        let merge = crate::merge::needed(&coord, engine.latest_system_time())
            && engine.may_hold_pieces(&table);
        let scan_coord = if merge {
            crate::merge::scan_coordinate(&coord)
        } else {
            coord
        };
        engine
            .load_blooms_for(&table, std::slice::from_ref(&id))
            .await?;
        let Some(mut scan) = engine.scan(&table, scan_coord, Some(vec![id]))? else {
            return Ok(None);
        };
        if !merge {
            scan.columns = Some(Arc::new(
                cols.iter()
                    .map(|(f, _)| f.name().clone())
                    .filter(|n| !TEMPORAL_COLUMNS.contains(&n.as_str()))
                    .collect(),
            ));
        }
        let schema: SchemaRef = Arc::new(Schema::new(
            cols.iter()
                .map(|(f, out)| {
                    Field::new(out, f.data_type().clone(), true).with_metadata(f.metadata().clone())
                })
                .collect::<Vec<_>>(),
        ));
        let mut found: Vec<RecordBatch> = scan.live.clone();
        for i in 0..scan.segments.len() {
            if let Some(b) = scan.segment(i).await? {
                found.push(b);
            }
        }
        if merge {
            let conformed = found
                .iter()
                .map(|b| {
                    let arrays = full
                        .fields()
                        .iter()
                        .map(|f| column_as(b, f))
                        .collect::<Result<Vec<_>>>()?;
                    Ok(RecordBatch::try_new(full.clone(), arrays)?)
                })
                .collect::<Result<Vec<_>>>()?;
            found = crate::merge::merge_batches(full.clone(), &conformed, coord.valid)?;
        }
        let mut batches = Vec::with_capacity(found.len());
        for b in found {
            let arrays = cols
                .iter()
                .map(|(f, _)| column_as(&b, f))
                .collect::<Result<Vec<_>>>()?;
            batches.push(RecordBatch::try_new(schema.clone(), arrays)?);
        }
        if !sort_keys.is_empty() {
            batches = sorted(&schema, &batches, &sort_keys)?;
        }
        self.db
            .point_lookups
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let stream = RecordBatchStreamAdapter::new(
            schema.clone(),
            futures::stream::iter(batches.into_iter().map(Ok)),
        );
        Ok(Some(Output::Rows {
            schema,
            stream: Box::pin(stream),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(sql: &str) -> Option<Lookup> {
        let mut s = crate::sql::parse(sql).unwrap();
        recognize(&s.pop().unwrap())
    }

    #[test]
    fn recognizes_point_lookups_only() {
        for sql in [
            "SELECT * FROM t WHERE _id = $1",
            "SELECT a, b AS c FROM t WHERE _id = 5",
            "SELECT t.a, t.* FROM t WHERE t._id = 'x'",
            "SELECT o.a FROM public.t AS o WHERE $1 = o._id",
            "SELECT _valid_from FROM t WHERE (_id) = ($2)",
            "SELECT * FROM t WHERE _id = 1 ORDER BY a",
            "SELECT a, b FROM t WHERE _id = 1 ORDER BY t.b DESC NULLS LAST, a",
        ] {
            assert!(lookup(sql).is_some(), "{sql}");
        }
        let l =
            lookup("SELECT a FROM t AS x WHERE _id = 1 ORDER BY x.a DESC, b NULLS FIRST").unwrap();
        let keys: Vec<(&str, bool, bool, bool)> = l
            .order
            .iter()
            .map(|k| (k.name.as_str(), k.qualified, k.descending, k.nulls_first))
            .collect();
        assert_eq!(keys, [("a", true, true, true), ("b", false, false, true)]);
        for sql in [
            "SELECT a + 1 FROM t WHERE _id = 1",
            "SELECT * FROM t WHERE _id = 1 ORDER BY a + 1",
            "SELECT * FROM t WHERE _id = 1 ORDER BY 1",
            "SELECT * FROM t WHERE _id = 1 ORDER BY u.a",
            "SELECT * FROM t WHERE _id = 1 LIMIT 1",
            "SELECT * FROM t WHERE _id = 1 AND a = 2",
            "SELECT * FROM t WHERE a = 1",
            "SELECT * FROM t, u WHERE _id = 1",
            "SELECT * FROM t JOIN u ON true WHERE _id = 1",
            "SELECT DISTINCT a FROM t WHERE _id = 1",
            "SELECT count(*) FROM t WHERE _id = 1",
            "SELECT u.a FROM t WHERE _id = 1",
            "SELECT * FROM t AS x(a, b) WHERE _id = 1",
            "SELECT * FROM t WHERE _id = 1.5",
            "SELECT * FROM t WHERE _id = $0",
            "WITH c AS (SELECT 1) SELECT * FROM t WHERE _id = 1",
            "SELECT * FROM t WHERE _id = 1 UNION SELECT * FROM t WHERE _id = 2",
            "SELECT * FROM other.t WHERE _id = 1",
        ] {
            assert!(lookup(sql).is_none(), "{sql}");
        }
    }

    #[test]
    fn coerces_keys_like_the_planner() {
        let int = DataType::Int64;
        assert_eq!(
            entity(&ScalarValue::Int32(Some(3)), &int),
            Some(EntityId::Int(3))
        );
        assert_eq!(
            entity(&ScalarValue::Utf8(Some("7".into())), &int),
            Some(EntityId::Int(7))
        );
        assert_eq!(entity(&ScalarValue::Utf8(Some("07".into())), &int), None);
        assert_eq!(entity(&ScalarValue::Utf8(Some("x".into())), &int), None);
        assert_eq!(entity(&ScalarValue::Int64(None), &int), None);
        let text = DataType::Utf8;
        assert_eq!(
            entity(&ScalarValue::Utf8(Some("a".into())), &text),
            Some(EntityId::Text("a".into()))
        );
        assert_eq!(entity(&ScalarValue::Int64(Some(1)), &text), None);
    }
}

/// The rows of `INSERT … VALUES (…), (…)` when every value is a literal or a
/// parameter, built without the planner; `None` when the planner should
/// evaluate the source (expressions, casts, a query, mixed types in a column).
pub(crate) fn values_batch(source: &ast::Query, params: &[ScalarValue]) -> Option<RecordBatch> {
    if source.with.is_some()
        || source.order_by.is_some()
        || source.limit_clause.is_some()
        || source.fetch.is_some()
    {
        return None;
    }
    let SetExpr::Values(values) = source.body.as_ref() else {
        return None;
    };
    let width = values.rows.first()?.len();
    if width == 0 || values.rows.iter().any(|r| r.len() != width) {
        return None;
    }
    let mut columns: Vec<Vec<ScalarValue>> = vec![Vec::with_capacity(values.rows.len()); width];
    for row in &values.rows {
        for (i, e) in row.iter().enumerate() {
            columns[i].push(literal(e, params)?);
        }
    }
    let mut fields = Vec::with_capacity(width);
    let mut arrays = Vec::with_capacity(width);
    for (i, col) in columns.into_iter().enumerate() {
        // One type per column (as the planner requires); NULLs take it.
        let mut ty = DataType::Null;
        for v in &col {
            let t = v.data_type();
            if t == DataType::Null {
                continue;
            }
            if ty == DataType::Null {
                ty = t;
            } else if ty != t {
                return None;
            }
        }
        let typed: Vec<ScalarValue> = if ty == DataType::Null {
            col
        } else {
            let null = ScalarValue::try_from(&ty).ok()?;
            col.into_iter()
                .map(|v| if v.is_null() { null.clone() } else { v })
                .collect()
        };
        let array = if ty == DataType::Null {
            datafusion::arrow::array::new_null_array(&DataType::Null, typed.len())
        } else {
            ScalarValue::iter_to_array(typed).ok()?
        };
        fields.push(Field::new(format!("column{}", i + 1), ty, true));
        arrays.push(array);
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).ok()
}

/// A literal or parameter as the planner would type it.
fn literal(e: &Expr, params: &[ScalarValue]) -> Option<ScalarValue> {
    match e {
        Expr::Value(v) => match &v.value {
            ast::Value::Placeholder(p) => {
                let n: usize = p.strip_prefix('$')?.parse().ok()?;
                params.get(n.checked_sub(1)?).cloned()
            }
            ast::Value::Number(n, _) => number(n, false),
            ast::Value::SingleQuotedString(s) => Some(ScalarValue::Utf8(Some(s.clone()))),
            ast::Value::Boolean(b) => Some(ScalarValue::Boolean(Some(*b))),
            ast::Value::Null => Some(ScalarValue::Null),
            _ => None,
        },
        Expr::UnaryOp {
            op: ast::UnaryOperator::Minus,
            expr,
        } => match expr.as_ref() {
            Expr::Value(v) => match &v.value {
                ast::Value::Number(n, _) => number(n, true),
                _ => None,
            },
            _ => None,
        },
        Expr::Nested(inner) => literal(inner, params),
        _ => None,
    }
}

/// An integer literal is BIGINT; other numbers (`1.5`, `1e3`) DOUBLE.
fn number(n: &str, negative: bool) -> Option<ScalarValue> {
    let text = if negative {
        format!("-{n}")
    } else {
        n.to_string()
    };
    if n.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .parse::<i64>()
            .ok()
            .map(|i| ScalarValue::Int64(Some(i)));
    }
    text.parse::<f64>()
        .ok()
        .filter(|f| f.is_finite())
        .map(|f| ScalarValue::Float64(Some(f)))
}
