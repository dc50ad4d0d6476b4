//! Join keys that span several inputs of an inner-join tree.
//!
//! DataFusion 55's `eliminate_cross_join` flattens a tree of inner joins
//! into its leaf inputs and the set of their equi-join keys, then rebuilds
//! the joins pair by pair, taking each key whose two sides fall one on each
//! of the two inputs being joined. A key one of whose sides reads columns of
//! two leaves (`CASE a1.k WHEN 0 THEN a2.k + a2.k END = a3.k`, where a1 and
//! a2 are joined first) fits no pair, and when the tree is not under a
//! filter it is dropped: the query returns rows the condition rejects.
//! Found by the differential test (seed 790475471):
//! `… JOIN a2 ON … LEFT JOIN a3 ON a1.k = a3.k WHERE a3.k = CASE a1.k WHEN 0
//! THEN a2.k + a2.k END` (the filter becomes a key once the LEFT JOIN turns
//! inner).
//!
//! This rule runs just before `eliminate_cross_join` (query/src/session.rs)
//! and moves such keys into the join's filter, which that rule keeps. Keys
//! whose sides each read one leaf (every key of a plain join chain) stay
//! keys. Joins whose keys treat NULLs as equal are left alone (a filter
//! `l = r` would not).

use datafusion::common::tree_node::Transformed;
use datafusion::common::{NullEquality, Result as DfResult};
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, Join, JoinType, LogicalPlan};
use datafusion::optimizer::{ApplyOrder, OptimizerConfig, OptimizerRule};

#[derive(Debug, Default)]
pub struct JoinKeysAcrossInputs;

/// The inputs `eliminate_cross_join` would flatten an inner join into.
fn leaves<'a>(p: &'a LogicalPlan, out: &mut Vec<&'a LogicalPlan>) {
    match p {
        LogicalPlan::Join(j) if j.join_type == JoinType::Inner => {
            leaves(&j.left, out);
            leaves(&j.right, out);
        }
        _ => out.push(p),
    }
}

impl OptimizerRule for JoinKeysAcrossInputs {
    fn name(&self) -> &str {
        "strata_join_keys_across_inputs"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::TopDown)
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> DfResult<Transformed<LogicalPlan>> {
        let LogicalPlan::Join(join) = plan else {
            return Ok(Transformed::no(plan));
        };
        if join.join_type != JoinType::Inner
            || join.on.is_empty()
            || join.null_equality != NullEquality::NullEqualsNothing
        {
            return Ok(Transformed::no(LogicalPlan::Join(join)));
        }
        let mut inputs = Vec::new();
        leaves(&join.left, &mut inputs);
        leaves(&join.right, &mut inputs);
        if inputs.len() <= 2 {
            // Not a tree: the key's sides are the two inputs' own.
            return Ok(Transformed::no(LogicalPlan::Join(join)));
        }
        let within_one = |e: &Expr| {
            let cols = e.column_refs();
            inputs
                .iter()
                .any(|p| cols.iter().all(|c| p.schema().has_column(c)))
        };
        let (keep, moved): (Vec<(Expr, Expr)>, Vec<(Expr, Expr)>) = join
            .on
            .iter()
            .cloned()
            .partition(|(l, r)| within_one(l) && within_one(r));
        if moved.is_empty() {
            return Ok(Transformed::no(LogicalPlan::Join(join)));
        }
        let filter = conjunction(
            moved
                .into_iter()
                .map(|(l, r)| l.eq(r))
                .chain(join.filter.clone()),
        );
        Ok(Transformed::yes(LogicalPlan::Join(Join {
            on: keep,
            filter,
            ..join
        })))
    }
}
