//! Physical rules that only make a plan cheaper, allowed to fail.
//!
//! DataFusion 55's `ProjectionPushdown` can fail on a plan that an earlier
//! pass of itself produced: after the first pass embeds a reordering
//! projection into a `FilterExec` above a FULL join, the second pass asserts
//! that a column's name matches its index and stops the whole query with an
//! internal error ("Input field name i0 does not match with the projection
//! expression k"; differential run seed 790475471, worker 0 query 12699).
//! The plan it was given was valid, and pushing projections down only
//! narrows the columns operators carry, so on an error Strata keeps that
//! plan instead of failing the query.
//!
//! Only rules whose output is equivalent to their input (same rows, same
//! schema) may be wrapped; rules that establish requirements
//! (`EnsureRequirements`, `SanityCheckPlan`) must never be.

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::Result;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;

type Rule = Arc<dyn PhysicalOptimizerRule + Send + Sync>;

/// Names of DataFusion's physical rules that may be skipped when they fail.
const OPTIONAL: &[&str] = &["ProjectionPushdown"];

/// Wraps the rules named in [`OPTIONAL`]; returns the others unchanged.
pub(crate) fn guard(rule: Rule) -> Rule {
    if OPTIONAL.contains(&rule.name()) {
        Arc::new(Optional(rule))
    } else {
        rule
    }
}

/// A rule whose failure leaves the plan as it was.
#[derive(Debug)]
struct Optional(Rule);

impl PhysicalOptimizerRule for Optional {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match self.0.optimize(Arc::clone(&plan), config) {
            Ok(better) => Ok(better),
            Err(e) => {
                tracing::debug!(rule = self.0.name(), error = %e, "optional physical rule failed; plan kept");
                Ok(plan)
            }
        }
    }

    // The inner rule's name, so EXPLAIN VERBOSE reads as before.
    fn name(&self) -> &str {
        self.0.name()
    }

    fn schema_check(&self) -> bool {
        self.0.schema_check()
    }
}
