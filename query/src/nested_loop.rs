//! Nested-loop joins that survive their memory-limited fallback.
//!
//! DataFusion's `NestedLoopJoinExec` buffers its left (build) input. When
//! that does not fit the memory pool it falls back to a multi-pass join that
//! executes the left input a second time (partition 0) to spill it. Two
//! things go wrong there in DataFusion 55:
//!
//! - an input that cannot be executed twice — anything holding a
//!   `RepartitionExec`, which hands out each output partition once — panics
//!   (`partition not used yet`): TPC-H Q16 at SF 10 under a 3GiB budget,
//!   whose `NOT IN` becomes nested-loop anti and mark joins over the big
//!   `partsupp ⋈ part` side;
//! - for joins that emit unmatched or matched *left* rows (LEFT, LEFT SEMI,
//!   LEFT ANTI, LEFT MARK), each right partition decides about the left rows
//!   alone in the fallback, so with more than one right partition a left row
//!   matched in another partition is emitted as if unmatched (DataFusion's
//!   own comment in `nested_loop_join.rs` says so): wrong answers.
//!
//! This physical rule (run after DataFusion's own) wraps every nested-loop
//! join's left input in [`ReplayableExec`], which executes a fresh copy of
//! its plan (`reset_plan_states`) when asked for a partition again, and gives
//! the left-emitting join types a single right partition.

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode, TreeNodeRecursion};
use datafusion::common::{JoinType, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::execution_plan::reset_plan_states;
use datafusion::physical_plan::joins::NestedLoopJoinExec;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PhysicalExpr,
    PlanProperties, SendableRecordBatchStream,
};
use parking_lot::Mutex;

/// The physical optimizer rule (see the module docs).
#[derive(Debug, Default)]
pub struct ReplayableNestedLoops;

impl PhysicalOptimizerRule for ReplayableNestedLoops {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|p| {
            let Some(nlj) = p.downcast_ref::<NestedLoopJoinExec>() else {
                return Ok(Transformed::no(p));
            };
            if nlj.left().is::<ReplayableExec>() {
                return Ok(Transformed::no(p));
            }
            let left: Arc<dyn ExecutionPlan> = Arc::new(ReplayableExec::new(nlj.left().clone()));
            let mut right = nlj.right().clone();
            let left_emitting = matches!(
                nlj.join_type(),
                JoinType::Left | JoinType::LeftSemi | JoinType::LeftAnti | JoinType::LeftMark
            );
            if left_emitting && right.output_partitioning().partition_count() > 1 {
                right = Arc::new(CoalescePartitionsExec::new(right));
            }
            #[allow(deprecated)] // replace_children's options add nothing here
            let p = p.clone().with_new_children(vec![left, right])?;
            Ok(Transformed::yes(p))
        })
        .data()
    }

    fn name(&self) -> &str {
        "strata_replayable_nested_loops"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Its input, executable more than once per partition: the first execution
/// of a partition runs the input itself, a later one a copy of the input's
/// plan with fresh state.
#[derive(Debug)]
pub struct ReplayableExec {
    input: Arc<dyn ExecutionPlan>,
    /// Partitions executed so far.
    used: Mutex<Vec<usize>>,
}

impl ReplayableExec {
    pub fn new(input: Arc<dyn ExecutionPlan>) -> ReplayableExec {
        ReplayableExec {
            input,
            used: Mutex::new(Vec::new()),
        }
    }
}

impl DisplayAs for ReplayableExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "ReplayableExec")
    }
}

impl ExecutionPlan for ReplayableExec {
    fn name(&self) -> &str {
        "ReplayableExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match children.pop() {
            Some(input) if children.is_empty() => Ok(Arc::new(ReplayableExec::new(input))),
            _ => datafusion::common::internal_err!("ReplayableExec takes exactly one child"),
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let again = {
            let mut used = self.used.lock();
            let again = used.contains(&partition);
            if !again {
                used.push(partition);
            }
            again
        };
        if again {
            reset_plan_states(self.input.clone())?.execute(partition, context)
        } else {
            self.input.execute(partition, context)
        }
    }
}
