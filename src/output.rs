//! Rendering result batches for people and scripts: table, CSV, JSON.

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Table,
    Csv,
    Json,
}

pub fn format_batches(batches: &[RecordBatch], format: OutputFormat) -> Result<String, String> {
    let err = |e: datafusion::arrow::error::ArrowError| e.to_string();
    match format {
        OutputFormat::Table => Ok(pretty_format_batches(batches).map_err(err)?.to_string() + "\n"),
        OutputFormat::Csv => {
            let mut buf = Vec::new();
            {
                let mut w = datafusion::arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut buf);
                for b in batches {
                    w.write(b).map_err(err)?;
                }
            }
            String::from_utf8(buf).map_err(|e| e.to_string())
        }
        OutputFormat::Json => {
            let mut buf = Vec::new();
            {
                let mut w = datafusion::arrow::json::ArrayWriter::new(&mut buf);
                let refs: Vec<&RecordBatch> = batches.iter().collect();
                w.write_batches(&refs).map_err(err)?;
                w.finish().map_err(err)?;
            }
            let mut s = String::from_utf8(buf).map_err(|e| e.to_string())?;
            if s.is_empty() {
                s = "[]".into();
            }
            Ok(s + "\n")
        }
    }
}
