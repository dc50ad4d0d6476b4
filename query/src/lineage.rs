//! Lineage of loads and exports: what a load wrote into which table, and
//! what an export read from which tables into which file. The session
//! reports each run to a hook the server sets (`serve --openlineage-url`
//! turns them into OpenLineage run events); without a hook nothing is done.

use std::sync::Arc;

use strata_storage::time::Micros;

/// A dataset a run read or wrote.
#[derive(Debug, Clone, PartialEq)]
pub enum Dataset {
    /// A Strata table (with its columns: name and Postgres type).
    Table {
        name: String,
        columns: Vec<(String, String)>,
    },
    /// A file or directory an export wrote, as the export root shows it
    /// (`/abs/path` or `s3://bucket/key`).
    File(String),
}

/// One load or export.
#[derive(Debug, Clone)]
pub struct LineageRun {
    /// `load` or `export`.
    pub kind: &'static str,
    pub inputs: Vec<Dataset>,
    pub outputs: Vec<Dataset>,
    pub started: Micros,
    pub ended: Micros,
    /// Rows written, or the error.
    pub outcome: Result<u64, String>,
    /// Who ran it (`None`: the embedded API's owner).
    pub role: Option<String>,
    /// The statement, for an export (`None` for a load).
    pub statement: Option<String>,
}

/// Receives every run.
pub type LineageHook = Arc<dyn Fn(LineageRun) + Send + Sync>;

/// A table as a dataset, with its columns.
pub fn table_dataset(engine: &strata_storage::Engine, table: &str) -> Dataset {
    let columns = engine
        .table_schema(table)
        .map(|ts| {
            ts.columns
                .iter()
                .map(|f| {
                    let (oid, typmod) = crate::pg_catalog::pg_type_of_field(f);
                    (
                        f.name().clone(),
                        crate::pg_catalog::format_type(oid, Some(typmod as i64))
                            .unwrap_or_else(|| "text".into()),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    Dataset::Table {
        name: table.to_string(),
        columns,
    }
}
