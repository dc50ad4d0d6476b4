//! `COPY`: bulk load with `COPY t [(cols)] FROM STDIN` and bulk export with
//! `COPY t [(cols)] TO STDOUT` / `COPY (query) TO STDOUT`, in Postgres' text
//! and CSV formats (options FORMAT, HEADER, DELIMITER, NULL, QUOTE, ESCAPE).
//!
//! A load is parsed as it streams in, converted to Arrow batches of
//! [`BATCH_ROWS`] rows, and written with one `Session::ingest` call when the
//! client sends CopyDone: all of it commits as one transaction (or joins the
//! open `BEGIN` block), or none of it does. A row that cannot be read fails
//! the COPY with an error naming its line.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Buf, Bytes};
use datafusion::arrow::array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    StringBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::ScalarValue;
use datafusion::sql::sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Statement,
};
use futures::{Sink, SinkExt, StreamExt};
use pgwire::api::copy::CopyHandler;
use pgwire::api::portal::Format;
use pgwire::api::results::{CopyResponse, Tag};
use pgwire::api::{ClientInfo, PgWireConnectionState};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail, CopyInResponse, CopyOutResponse};
use pgwire::messages::data::DataRow;
use pgwire::messages::PgWireBackendMessage;
use strata_storage::schema::{timestamp_type, type_name, ID, VALID_FROM, VALID_TO};

use super::conn::{err, query_err, Conn, Exec, Inner, E};
use super::types::{decode_param, encode_batch, field_infos, pg_type_for_arrow, plan_columns};

/// Rows per Arrow batch of a load.
pub const BATCH_ROWS: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyFormat {
    Text,
    Csv,
    /// COPY … TO STDOUT only: one Parquet file, streamed as CopyData.
    Parquet,
}

/// The options of one COPY.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    pub format: CopyFormat,
    pub delimiter: u8,
    pub null: String,
    pub header: bool,
    pub quote: u8,
    pub escape: u8,
}

/// A parsed COPY statement.
#[derive(Debug, Clone)]
pub enum CopyCommand {
    /// `COPY table [(columns)] FROM STDIN`
    From {
        table: String,
        columns: Vec<String>,
        opts: CopyOptions,
    },
    /// `COPY table|(query) TO STDOUT`: the query to run.
    To { query: String, opts: CopyOptions },
    /// `COPY … TO 'file'` (or another server-side target): an export the
    /// session runs as a statement (strata_query::export).
    Server,
}

/// Does this statement start with the COPY keyword?
pub fn is_copy(sql: &str) -> bool {
    let s = sql.trim_start();
    // `get`: the first four bytes may end inside a multi-byte character.
    s.get(..4).is_some_and(|w| w.eq_ignore_ascii_case("copy"))
        && s[4..]
            .chars()
            .next()
            .is_none_or(|c| c.is_whitespace() || c == '(')
}

fn syntax(msg: impl Into<String>) -> E {
    err("42601", msg)
}

fn ident_name(i: &datafusion::sql::sqlparser::ast::Ident) -> String {
    strata_query::ident::normalize(i)
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Find the `)` closing the `(` at byte `open`, skipping quoted text and comments.
fn matching_paren(s: &str, open: usize) -> Option<usize> {
    let b = s.as_bytes();
    let mut depth = 0usize;
    let mut i = open;
    while i < b.len() {
        match b[i] {
            b'(' => depth += 1,
            b')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            q @ (b'\'' | b'"') => {
                i += 1;
                while i < b.len() && b[i] != q {
                    i += 1;
                }
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Parse a COPY statement.
pub fn parse_copy(sql: &str) -> Result<CopyCommand, E> {
    let trimmed = sql.trim().trim_end_matches(';').trim_end();
    let parsed = strata_query::sql::parse(trimmed);
    let (stmt, query_text) = match parsed {
        Ok(mut v) if v.len() == 1 => (v.pop().expect("one statement"), None),
        Ok(_) => return Err(syntax("expected one COPY statement")),
        Err(e) => {
            // `COPY (query) TO …` whose query uses Strata's own syntax: take the
            // query as text, parse the rest around a stand-in.
            let after = trimmed[4..].trim_start();
            let open = trimmed.len() - after.len();
            if !after.starts_with('(') {
                return Err(syntax(format!("COPY: {e}")));
            }
            let close = matching_paren(trimmed, open)
                .ok_or_else(|| syntax("COPY (query): the query's parenthesis is not closed"))?;
            let inner = trimmed[open + 1..close].to_string();
            let stand_in = format!("COPY (SELECT 1) {}", &trimmed[close + 1..]);
            let mut v =
                strata_query::sql::parse(&stand_in).map_err(|e| syntax(format!("COPY: {e}")))?;
            if v.len() != 1 {
                return Err(syntax("expected one COPY statement"));
            }
            (v.pop().expect("one statement"), Some(inner))
        }
    };
    let Statement::Copy {
        source,
        to,
        target,
        options,
        legacy_options,
        values,
    } = stmt
    else {
        return Err(syntax("not a COPY statement"));
    };
    if !values.is_empty() {
        return Err(syntax(
            "COPY … FROM STDIN with inline data is not supported: send the data in the COPY protocol (psql: \\copy)",
        ));
    }
    match (&target, to) {
        (CopyTarget::Stdin, false) | (CopyTarget::Stdout, true) => {}
        (CopyTarget::File { .. } | CopyTarget::Program { .. }, _) => {
            return Ok(CopyCommand::Server)
        }
        (CopyTarget::Stdin, true) => return Err(syntax("COPY … TO needs STDOUT, not STDIN")),
        (CopyTarget::Stdout, false) => return Err(syntax("COPY … FROM needs STDIN, not STDOUT")),
    }
    let opts = copy_options(&options, &legacy_options)?;
    match source {
        CopySource::Table {
            table_name,
            columns,
        } => {
            let table = table_name
                .0
                .last()
                .and_then(|p| p.as_ident())
                .map(ident_name)
                .ok_or_else(|| syntax(format!("COPY: unsupported table name {table_name}")))?;
            let columns: Vec<String> = columns.iter().map(ident_name).collect();
            if to {
                let cols = if columns.is_empty() {
                    "*".to_string()
                } else {
                    columns
                        .iter()
                        .map(|c| quote_ident(c))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                Ok(CopyCommand::To {
                    query: format!("SELECT {cols} FROM {}", quote_ident(&table)),
                    opts,
                })
            } else if opts.format == CopyFormat::Parquet {
                Err(err(
                    "0A000",
                    "COPY … FROM with FORMAT parquet is not supported: load Parquet files through Flight SQL \
                     ingest (pyarrow.parquet.read_table, then ADBC adbc_ingest; docs/flight.md)",
                ))
            } else {
                Ok(CopyCommand::From {
                    table,
                    columns,
                    opts,
                })
            }
        }
        CopySource::Query(q) => Ok(CopyCommand::To {
            query: query_text.unwrap_or_else(|| q.to_string()),
            opts,
        }),
    }
}

fn one_byte(what: &str, c: char) -> Result<u8, E> {
    if c.is_ascii() {
        Ok(c as u8)
    } else {
        Err(err(
            "0A000",
            format!("COPY {what} must be a single one-byte character"),
        ))
    }
}

fn copy_options(options: &[CopyOption], legacy: &[CopyLegacyOption]) -> Result<CopyOptions, E> {
    let mut format = CopyFormat::Text;
    let mut delimiter = None;
    let mut null = None;
    let mut header = false;
    let mut quote = None;
    let mut escape = None;
    for o in options {
        match o {
            CopyOption::Format(f) => {
                format = match f.value.to_ascii_lowercase().as_str() {
                    "text" => CopyFormat::Text,
                    "csv" => CopyFormat::Csv,
                    "parquet" => CopyFormat::Parquet,
                    "binary" => {
                        return Err(err(
                            "0A000",
                            "COPY FORMAT binary is not supported: use text or csv",
                        ))
                    }
                    other => {
                        return Err(err(
                            "22023",
                            format!("COPY format \"{other}\" not recognized: use text, csv or (COPY … TO) parquet"),
                        ))
                    }
                }
            }
            CopyOption::Delimiter(c) => delimiter = Some(one_byte("delimiter", *c)?),
            CopyOption::Null(s) => null = Some(s.clone()),
            CopyOption::Header(h) => header = *h,
            CopyOption::Quote(c) => quote = Some(one_byte("quote", *c)?),
            CopyOption::Escape(c) => escape = Some(one_byte("escape", *c)?),
            CopyOption::Freeze(_) => {}
            CopyOption::Encoding(e) => {
                let e = e.to_ascii_uppercase().replace(['-', '_'], "");
                if e != "UTF8" && e != "SQLASCII" {
                    return Err(err(
                        "0A000",
                        format!("COPY ENCODING {e} is not supported: Strata reads and writes UTF8"),
                    ));
                }
            }
            other => {
                return Err(err(
                    "0A000",
                    format!("COPY option {other} is not supported"),
                ))
            }
        }
    }
    for o in legacy {
        match o {
            CopyLegacyOption::Binary => {
                return Err(err(
                    "0A000",
                    "COPY BINARY is not supported: use text or csv",
                ))
            }
            CopyLegacyOption::Csv(csv) => {
                format = CopyFormat::Csv;
                for c in csv {
                    match c {
                        CopyLegacyCsvOption::Header => header = true,
                        CopyLegacyCsvOption::Quote(q) => quote = Some(one_byte("quote", *q)?),
                        CopyLegacyCsvOption::Escape(q) => escape = Some(one_byte("escape", *q)?),
                        other => {
                            return Err(err(
                                "0A000",
                                format!("COPY option {other} is not supported"),
                            ))
                        }
                    }
                }
            }
            CopyLegacyOption::Delimiter(c) => delimiter = Some(one_byte("delimiter", *c)?),
            CopyLegacyOption::Null(s) => null = Some(s.clone()),
            CopyLegacyOption::Header => header = true,
            other => {
                return Err(err(
                    "0A000",
                    format!("COPY option {other} is not supported"),
                ))
            }
        }
    }
    if format == CopyFormat::Parquet
        && (header || delimiter.is_some() || null.is_some() || quote.is_some() || escape.is_some())
    {
        return Err(err(
            "22023",
            "COPY options HEADER, DELIMITER, NULL, QUOTE and ESCAPE do not apply to FORMAT parquet",
        ));
    }
    let csv = format == CopyFormat::Csv;
    if !csv && (quote.is_some() || escape.is_some()) {
        return Err(err("0A000", "COPY QUOTE and ESCAPE are only for CSV"));
    }
    let delimiter = delimiter.unwrap_or(if csv { b',' } else { b'\t' });
    if matches!(delimiter, b'\n' | b'\r') || (!csv && delimiter == b'\\') {
        return Err(err(
            "22023",
            "COPY delimiter cannot be newline, carriage return or (in text format) backslash",
        ));
    }
    let quote = quote.unwrap_or(b'"');
    if csv && quote == delimiter {
        return Err(err("22023", "COPY delimiter and quote must be different"));
    }
    Ok(CopyOptions {
        format,
        delimiter,
        null: null.unwrap_or_else(|| if csv { String::new() } else { "\\N".into() }),
        header,
        quote,
        escape: escape.unwrap_or(quote),
    })
}

// ---------------------------------------------------------------------------
// COPY FROM STDIN.

/// Columns of one batch, as text, with the line each row started on.
struct TextBatch {
    cols: Vec<StringArray>,
    lines: Vec<u64>,
}

/// A load in progress on a connection.
pub struct CopyIn {
    table: String,
    /// Target columns; empty until the CSV header names them.
    columns: Vec<String>,
    /// Each column's type: the table's, or None to infer from all the data.
    types: Vec<Option<DataType>>,
    /// Take the column names from the header (new table, no column list).
    names_from_header: bool,
    opts: CopyOptions,
    buf: Vec<u8>,
    /// Where the record-end scan resumes in `buf`, and whether it is inside quotes.
    scan: usize,
    in_quote: bool,
    /// 1-based line number of the next record.
    line: u64,
    header_pending: bool,
    /// Saw the `\.` end marker.
    ended: bool,
    builders: Vec<StringBuilder>,
    lines: Vec<u64>,
    /// Batches whose columns still need a type decided at the end.
    text_batches: Vec<TextBatch>,
    /// Batches already converted (every type known).
    typed: Vec<Vec<ArrayRef>>,
    rows: u64,
}

impl CopyIn {
    /// Set up a load into `table`; `existing` is the table's schema if it exists.
    pub fn new(
        table: String,
        columns: Vec<String>,
        opts: CopyOptions,
        existing: Option<&[Field]>,
    ) -> Result<CopyIn, E> {
        let names_from_header = columns.is_empty() && existing.is_none();
        if names_from_header && !opts.header {
            return Err(err(
                "42P01",
                format!(
                    "table \"{table}\" does not exist: give the columns, e.g. COPY {table} (_id, name) FROM STDIN, or load CSV WITH HEADER to take them from the header"
                ),
            ));
        }
        let columns = if columns.is_empty() {
            existing
                .map(|fs| fs.iter().map(|f| f.name().clone()).collect())
                .unwrap_or_default()
        } else {
            columns
        };
        for (i, c) in columns.iter().enumerate() {
            if columns[..i].contains(c) {
                return Err(err(
                    "42701",
                    format!("column \"{c}\" specified more than once"),
                ));
            }
        }
        if !names_from_header && !columns.iter().any(|c| c == ID) {
            return Err(err(
                "42703",
                format!(
                    "COPY into {table} needs an `_id` column: every row is an entity keyed by `_id`; add _id to the column list"
                ),
            ));
        }
        let mut c = CopyIn {
            table,
            columns: vec![],
            types: vec![],
            names_from_header,
            header_pending: opts.header,
            opts,
            buf: vec![],
            scan: 0,
            in_quote: false,
            line: 1,
            ended: false,
            builders: vec![],
            lines: vec![],
            text_batches: vec![],
            typed: vec![],
            rows: 0,
        };
        if !names_from_header {
            c.set_columns(columns, existing);
        }
        Ok(c)
    }

    fn set_columns(&mut self, columns: Vec<String>, existing: Option<&[Field]>) {
        self.types = columns
            .iter()
            .map(|c| {
                existing
                    .and_then(|fs| fs.iter().find(|f| f.name() == c))
                    .map(|f| f.data_type().clone())
                    .filter(|t| *t != DataType::Null)
                    .or_else(|| {
                        // A row's valid period: timestamps, never inferred as text.
                        (c == VALID_FROM || c == VALID_TO).then(timestamp_type)
                    })
            })
            .collect();
        self.builders = columns.iter().map(|_| StringBuilder::new()).collect();
        self.columns = columns;
    }

    pub fn columns(&self) -> usize {
        self.columns.len()
    }

    /// Take in a chunk of the client's data.
    pub fn feed(&mut self, data: &[u8]) -> Result<(), E> {
        if self.ended {
            return Ok(());
        }
        self.buf.extend_from_slice(data);
        let buf = std::mem::take(&mut self.buf);
        let used = self.consume(&buf, false)?;
        self.buf = buf;
        self.buf.drain(..used);
        self.scan -= used;
        Ok(())
    }

    /// Read the complete records in `buf` (all of it when `last`); returns bytes used.
    fn consume(&mut self, buf: &[u8], last: bool) -> Result<usize, E> {
        let mut start = 0;
        let csv = self.opts.format == CopyFormat::Csv;
        loop {
            if self.ended {
                return Ok(buf.len());
            }
            let mut i = self.scan.max(start);
            let mut end = None;
            while i < buf.len() {
                let b = buf[i];
                if csv {
                    if self.in_quote {
                        if b == self.opts.escape
                            && self.opts.escape != self.opts.quote
                            && i + 1 < buf.len()
                        {
                            i += 2;
                            continue;
                        }
                        if b == self.opts.quote {
                            self.in_quote = false;
                        }
                    } else if b == self.opts.quote {
                        self.in_quote = true;
                    } else if b == b'\n' {
                        end = Some(i);
                        break;
                    }
                } else if b == b'\n' {
                    end = Some(i);
                    break;
                }
                i += 1;
            }
            match end {
                Some(e) => {
                    self.scan = e + 1;
                    self.record(&buf[start..e])?;
                    start = e + 1;
                }
                None => {
                    self.scan = buf.len();
                    if last && start < buf.len() {
                        if self.in_quote {
                            return Err(err(
                                "22P04",
                                format!(
                                    "COPY {}, line {}: unterminated CSV quoted field",
                                    self.table, self.line
                                ),
                            ));
                        }
                        self.record(&buf[start..])?;
                        return Ok(buf.len());
                    }
                    return Ok(start);
                }
            }
        }
    }

    fn bad(&self, line: u64, msg: impl std::fmt::Display) -> E {
        err("22P04", format!("COPY {}, line {line}: {msg}", self.table))
    }

    /// One record (without its newline).
    fn record(&mut self, rec: &[u8]) -> Result<(), E> {
        let line = self.line;
        self.line += 1 + rec.iter().filter(|b| **b == b'\n').count() as u64;
        let rec = rec.strip_suffix(b"\r").unwrap_or(rec);
        if self.opts.format == CopyFormat::Text && rec == b"\\." {
            self.ended = true;
            return Ok(());
        }
        if self.opts.format == CopyFormat::Csv && rec == b"\\." {
            self.ended = true;
            return Ok(());
        }
        let fields = match self.opts.format {
            // (Parquet loads are refused when the COPY is parsed.)
            CopyFormat::Text | CopyFormat::Parquet => self.text_fields(rec, line)?,
            CopyFormat::Csv => self.csv_fields(rec, line)?,
        };
        if self.header_pending {
            self.header_pending = false;
            if self.names_from_header {
                let names: Vec<String> = fields
                    .into_iter()
                    .map(|f| f.unwrap_or_default().trim().to_string())
                    .collect();
                if !names.iter().any(|c| c == ID) {
                    return Err(self.bad(
                        line,
                        "the header has no `_id` column: every row is an entity keyed by `_id`",
                    ));
                }
                for (i, c) in names.iter().enumerate() {
                    if c.is_empty() || names[..i].contains(c) {
                        return Err(
                            self.bad(line, format!("header column \"{c}\" is empty or repeated"))
                        );
                    }
                }
                self.set_columns(names, None);
            }
            return Ok(());
        }
        if fields.len() != self.columns.len() {
            let what = if fields.len() > self.columns.len() {
                "extra data after the last expected column"
            } else {
                "missing data for a column"
            };
            return Err(self.bad(
                line,
                format!(
                    "{what}: expected {} columns ({}), found {}",
                    self.columns.len(),
                    self.columns.join(", "),
                    fields.len()
                ),
            ));
        }
        for (b, f) in self.builders.iter_mut().zip(fields) {
            match f {
                Some(v) => b.append_value(v),
                None => b.append_null(),
            }
        }
        self.lines.push(line);
        self.rows += 1;
        if self.lines.len() >= BATCH_ROWS {
            self.flush_batch()?;
        }
        Ok(())
    }

    fn utf8(&self, raw: Vec<u8>, line: u64) -> Result<String, E> {
        String::from_utf8(raw).map_err(|_| {
            err(
                "22021",
                format!(
                    "COPY {}, line {line}: invalid byte sequence for encoding \"UTF8\"",
                    self.table
                ),
            )
        })
    }

    fn text_fields(&self, rec: &[u8], line: u64) -> Result<Vec<Option<String>>, E> {
        let mut out = Vec::with_capacity(self.columns.len());
        let null = self.opts.null.as_bytes();
        for raw in rec.split(|b| *b == self.opts.delimiter) {
            if raw == null {
                out.push(None);
                continue;
            }
            if !raw.contains(&b'\\') {
                out.push(Some(self.utf8(raw.to_vec(), line)?));
                continue;
            }
            let mut v = Vec::with_capacity(raw.len());
            let mut i = 0;
            while i < raw.len() {
                let b = raw[i];
                if b != b'\\' || i + 1 >= raw.len() {
                    v.push(b);
                    i += 1;
                    continue;
                }
                let n = raw[i + 1];
                i += 2;
                match n {
                    b'b' => v.push(8),
                    b'f' => v.push(12),
                    b'n' => v.push(b'\n'),
                    b'r' => v.push(b'\r'),
                    b't' => v.push(b'\t'),
                    b'v' => v.push(11),
                    b'0'..=b'7' => {
                        let mut x = (n - b'0') as u32;
                        let mut k = 0;
                        while k < 2 && i < raw.len() && (b'0'..=b'7').contains(&raw[i]) {
                            x = x * 8 + (raw[i] - b'0') as u32;
                            i += 1;
                            k += 1;
                        }
                        v.push((x & 0xff) as u8);
                    }
                    b'x' if i < raw.len() && raw[i].is_ascii_hexdigit() => {
                        let mut x = 0u32;
                        let mut k = 0;
                        while k < 2 && i < raw.len() && raw[i].is_ascii_hexdigit() {
                            x = x * 16 + (raw[i] as char).to_digit(16).unwrap_or(0);
                            i += 1;
                            k += 1;
                        }
                        v.push(x as u8);
                    }
                    other => v.push(other),
                }
            }
            out.push(Some(self.utf8(v, line)?));
        }
        Ok(out)
    }

    fn csv_fields(&self, rec: &[u8], line: u64) -> Result<Vec<Option<String>>, E> {
        let (d, q, esc) = (self.opts.delimiter, self.opts.quote, self.opts.escape);
        let null = self.opts.null.as_bytes();
        let mut out = Vec::with_capacity(self.columns.len());
        let mut i = 0;
        loop {
            let mut v = Vec::new();
            let mut quoted = false;
            let mut in_q = false;
            while i < rec.len() {
                let b = rec[i];
                if in_q {
                    // An escaped quote or escape (`""` when ESCAPE is the quote).
                    if b == esc && i + 1 < rec.len() && (rec[i + 1] == q || rec[i + 1] == esc) {
                        v.push(rec[i + 1]);
                        i += 2;
                        continue;
                    }
                    if b == q {
                        in_q = false;
                    } else {
                        v.push(b);
                    }
                } else if b == q {
                    in_q = true;
                    quoted = true;
                } else if b == d {
                    break;
                } else {
                    v.push(b);
                }
                i += 1;
            }
            if in_q {
                return Err(self.bad(line, "unterminated CSV quoted field"));
            }
            if !quoted && v == null {
                out.push(None);
            } else {
                out.push(Some(self.utf8(v, line)?));
            }
            if i >= rec.len() {
                break;
            }
            i += 1; // the delimiter
        }
        Ok(out)
    }

    /// Close the current batch: convert typed columns now (so a bad value
    /// fails early, naming its line), keep it as text if a type is pending.
    fn flush_batch(&mut self) -> Result<(), E> {
        if self.lines.is_empty() {
            return Ok(());
        }
        let cols: Vec<StringArray> = self.builders.iter_mut().map(|b| b.finish()).collect();
        let lines = std::mem::take(&mut self.lines);
        if self.types.iter().all(|t| t.is_some()) {
            let mut arrays = Vec::with_capacity(cols.len());
            for (i, c) in cols.iter().enumerate() {
                let dt = self.types[i].clone().expect("typed");
                arrays.push(self.convert(c, &dt, &lines, i)?);
            }
            self.typed.push(arrays);
        } else {
            for (i, c) in cols.iter().enumerate() {
                if let Some(dt) = self.types[i].clone() {
                    self.convert(c, &dt, &lines, i)?;
                }
            }
            self.text_batches.push(TextBatch { cols, lines });
        }
        Ok(())
    }

    fn convert(
        &self,
        col: &StringArray,
        dt: &DataType,
        lines: &[u64],
        idx: usize,
    ) -> Result<ArrayRef, E> {
        let bad = |r: usize, v: &str, why: String| {
            err(
                "22P02",
                format!(
                    "COPY {}, line {}, column {}: invalid input for type {}: \"{}\"{}",
                    self.table,
                    lines[r],
                    self.columns[idx],
                    type_name(dt),
                    if v.len() > 100 {
                        &v[..v.floor_char_boundary(100)]
                    } else {
                        v
                    },
                    if why.is_empty() {
                        String::new()
                    } else {
                        format!(" ({why})")
                    }
                ),
            )
        };
        Ok(match dt {
            DataType::Utf8 => Arc::new(col.clone()),
            DataType::Int64 => {
                let mut out = Vec::with_capacity(col.len());
                for (r, v) in col.iter().enumerate() {
                    out.push(match v {
                        None => None,
                        Some(s) => Some(parse_int(s).ok_or_else(|| bad(r, s, String::new()))?),
                    });
                }
                Arc::new(Int64Array::from(out))
            }
            DataType::Float64 => {
                let mut out = Vec::with_capacity(col.len());
                for (r, v) in col.iter().enumerate() {
                    out.push(match v {
                        None => None,
                        Some(s) => Some(parse_float(s).ok_or_else(|| bad(r, s, String::new()))?),
                    });
                }
                Arc::new(Float64Array::from(out))
            }
            DataType::Boolean => {
                let mut out = Vec::with_capacity(col.len());
                for (r, v) in col.iter().enumerate() {
                    out.push(match v {
                        None => None,
                        Some(s) => Some(parse_bool(s).ok_or_else(|| bad(r, s, String::new()))?),
                    });
                }
                Arc::new(BooleanArray::from(out))
            }
            other => {
                let ty = pg_type_for_arrow(other);
                let mut vals = Vec::with_capacity(col.len());
                for (r, v) in col.iter().enumerate() {
                    let sv = decode_param(&ty, false, v.map(str::as_bytes))
                        .map_err(|m| bad(r, v.unwrap_or(""), m))?;
                    let sv = if sv.data_type() == *other {
                        sv
                    } else {
                        sv.cast_to(other)
                            .map_err(|e| bad(r, v.unwrap_or(""), e.to_string()))?
                    };
                    vals.push(sv);
                }
                if vals.is_empty() {
                    datafusion::arrow::array::new_empty_array(other)
                } else {
                    ScalarValue::iter_to_array(vals).map_err(|e| {
                        err(
                            "22P02",
                            format!("COPY {}, column {}: {e}", self.table, self.columns[idx]),
                        )
                    })?
                }
            }
        })
    }

    /// All data is in: finish parsing and build the batches to write.
    pub fn finish(&mut self) -> Result<Vec<RecordBatch>, E> {
        let buf = std::mem::take(&mut self.buf);
        let from = self.scan.min(buf.len());
        self.scan = from;
        if !self.ended {
            // Parse what remains (a last record without a newline).
            self.consume(&buf, true)?;
        }
        if self.columns.is_empty() {
            return Ok(vec![]);
        }
        self.flush_batch()?;
        // Decide the pending types from all the data.
        for i in 0..self.types.len() {
            if self.types[i].is_none() {
                let t = infer(self.text_batches.iter().map(|b| &b.cols[i]));
                self.types[i] = Some(t);
            }
        }
        let fields: Vec<Field> = self
            .columns
            .iter()
            .zip(&self.types)
            .map(|(n, t)| Field::new(n, t.clone().expect("typed"), true))
            .collect();
        let schema = Arc::new(Schema::new(fields));
        let mut out = Vec::new();
        for arrays in std::mem::take(&mut self.typed) {
            out.push(RecordBatch::try_new(schema.clone(), arrays).map_err(internal)?);
        }
        for b in std::mem::take(&mut self.text_batches) {
            let mut arrays = Vec::with_capacity(b.cols.len());
            for (i, c) in b.cols.iter().enumerate() {
                let dt = self.types[i].clone().expect("typed");
                arrays.push(self.convert(c, &dt, &b.lines, i)?);
            }
            out.push(RecordBatch::try_new(schema.clone(), arrays).map_err(internal)?);
        }
        Ok(out)
    }

    pub fn table(&self) -> &str {
        &self.table
    }
}

fn internal(e: impl std::fmt::Display) -> E {
    err("XX000", format!("COPY: {e}"))
}

fn parse_int(s: &str) -> Option<i64> {
    s.trim().parse::<i64>().ok()
}

fn parse_float(s: &str) -> Option<f64> {
    let t = s.trim();
    match t.to_ascii_lowercase().as_str() {
        "nan" => Some(f64::NAN),
        "infinity" | "+infinity" | "inf" | "+inf" => Some(f64::INFINITY),
        "-infinity" | "-inf" => Some(f64::NEG_INFINITY),
        _ => {
            // Rust also takes "inf"/"nan" spellings handled above; refuse other words.
            if t.bytes()
                .any(|b| b.is_ascii_alphabetic() && b != b'e' && b != b'E')
            {
                None
            } else {
                t.parse::<f64>().ok()
            }
        }
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "t" | "true" | "y" | "yes" | "on" | "1" => Some(true),
        "f" | "false" | "n" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// The type of a new column: BIGINT if every value is an integer, else DOUBLE
/// PRECISION if every value is a number, else BOOLEAN if every value is
/// true/false, else TEXT.
fn infer<'a>(cols: impl Iterator<Item = &'a StringArray>) -> DataType {
    let (mut int, mut float, mut boolean, mut any) = (true, true, true, false);
    for c in cols {
        for s in c.iter().flatten() {
            any = true;
            if int && parse_int(s).is_none() {
                int = false;
            }
            if !int && float && parse_float(s).is_none() {
                float = false;
            }
            if boolean
                && !matches!(
                    s.trim().to_ascii_lowercase().as_str(),
                    "t" | "f" | "true" | "false"
                )
            {
                boolean = false;
            }
            if !int && !float && !boolean {
                return DataType::Utf8;
            }
        }
    }
    if !any {
        DataType::Utf8
    } else if int {
        DataType::Int64
    } else if float {
        DataType::Float64
    } else if boolean {
        DataType::Boolean
    } else {
        DataType::Utf8
    }
}

// ---------------------------------------------------------------------------
// COPY TO STDOUT.

/// Split an encoded text DataRow into its fields.
fn row_fields(row: &DataRow) -> Vec<Option<&[u8]>> {
    let mut out = Vec::with_capacity(row.field_count.max(0) as usize);
    let mut b: &[u8] = &row.data;
    for _ in 0..row.field_count {
        if b.len() < 4 {
            break;
        }
        let n = b.get_i32();
        if n < 0 {
            out.push(None);
        } else {
            let n = (n as usize).min(b.len());
            out.push(Some(&b[..n]));
            b = &b[n..];
        }
    }
    out
}

/// Write one output line for `fields` in the COPY format.
pub fn format_line(out: &mut Vec<u8>, fields: &[Option<&[u8]>], opts: &CopyOptions) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(opts.delimiter);
        }
        match (f, opts.format) {
            (None, _) => out.extend_from_slice(opts.null.as_bytes()),
            // (Parquet output does not go through lines: copy_out_parquet.)
            (Some(v), CopyFormat::Text | CopyFormat::Parquet) => {
                for &b in v.iter() {
                    match b {
                        b'\\' => out.extend_from_slice(b"\\\\"),
                        b'\n' => out.extend_from_slice(b"\\n"),
                        b'\r' => out.extend_from_slice(b"\\r"),
                        b'\t' => out.extend_from_slice(b"\\t"),
                        8 => out.extend_from_slice(b"\\b"),
                        12 => out.extend_from_slice(b"\\f"),
                        11 => out.extend_from_slice(b"\\v"),
                        b if b == opts.delimiter => {
                            out.push(b'\\');
                            out.push(b);
                        }
                        b => out.push(b),
                    }
                }
            }
            (Some(v), CopyFormat::Csv) => {
                let needs = v.is_empty() && opts.null.is_empty()
                    || *v == opts.null.as_bytes()
                    || v.iter().any(|&b| {
                        b == opts.delimiter
                            || b == opts.quote
                            || b == opts.escape
                            || b == b'\n'
                            || b == b'\r'
                    })
                    || v.starts_with(b"\\.");
                if needs {
                    out.push(opts.quote);
                    for &b in v.iter() {
                        if b == opts.quote || b == opts.escape {
                            out.push(opts.escape);
                        }
                        out.push(b);
                    }
                    out.push(opts.quote);
                } else {
                    out.extend_from_slice(v);
                }
            }
        }
    }
    out.push(b'\n');
}

/// Run `COPY … TO STDOUT`: CopyOutResponse, one CopyData per row, CopyDone.
/// Returns the number of rows; the caller sends CommandComplete.
async fn copy_out<C>(
    inner: &Arc<Inner>,
    client: &mut C,
    query: &str,
    opts: &CopyOptions,
) -> Result<usize, PgWireError>
where
    C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let parsed = super::conn::parse_one(query);
    let mut reports = vec![];
    let (schema, mut stream) = match inner
        .run(&mut reports, query, parsed.as_ref(), vec![], true)
        .await
    {
        Ok(Exec::Rows { schema, stream }) => (schema, stream),
        Ok(_) => {
            return Err(PgWireError::UserError(err(
                "0A000",
                "COPY (query) TO needs a query that returns rows",
            )))
        }
        Err(e) => return Err(PgWireError::UserError(e)),
    };
    if opts.format == CopyFormat::Parquet {
        return copy_out_parquet(
            inner,
            client,
            schema,
            stream,
            super::cursor::is_subscribe(query),
        )
        .await;
    }
    let plans = plan_columns(&schema);
    let fields = Arc::new(field_infos(
        &plans,
        &Format::UnifiedText,
        &inner.format_options().await,
    ));
    let ncols = plans.len();
    client
        .send(PgWireBackendMessage::CopyOutResponse(CopyOutResponse::new(
            0,
            ncols as i16,
            vec![0; ncols],
        )))
        .await?;
    if opts.header {
        let names: Vec<Option<&[u8]>> = plans.iter().map(|p| Some(p.name.as_bytes())).collect();
        let mut line = Vec::new();
        format_line(&mut line, &names, opts);
        client
            .feed(PgWireBackendMessage::CopyData(CopyData::new(Bytes::from(
                line,
            ))))
            .await?;
    }
    let mut n = 0usize;
    let mut cancel = inner.cancel.subscribe();
    loop {
        let next = tokio::select! {
            b = stream.next() => b,
            _ = cancel.changed() => {
                return Err(PgWireError::UserError(err("57014", "canceling statement due to user request")));
            }
        };
        let Some(batch) = next else { break };
        let batch = batch.map_err(|e| {
            PgWireError::UserError(err("XX000", format!("COPY: the query failed: {e}")))
        })?;
        let rows = encode_batch(&batch, &plans, &fields)?;
        for row in &rows {
            let mut line = Vec::with_capacity(row.data.len() + 8);
            format_line(&mut line, &row_fields(row), opts);
            client
                .feed(PgWireBackendMessage::CopyData(CopyData::new(Bytes::from(
                    line,
                ))))
                .await?;
            n += 1;
        }
        client.flush().await?;
    }
    client
        .feed(PgWireBackendMessage::CopyDone(CopyDone::new()))
        .await?;
    Ok(n)
}

/// Bytes of Parquet sent per CopyData message.
const PARQUET_CHUNK: usize = 1 << 20;

/// `COPY … TO STDOUT (FORMAT parquet)`: the result as one Parquet file,
/// streamed as CopyData as row groups fill (psql's `\copy … TO 'f.parquet'`
/// writes the bytes as they come). Returns the number of rows.
async fn copy_out_parquet<C>(
    inner: &Arc<Inner>,
    client: &mut C,
    schema: datafusion::arrow::datatypes::SchemaRef,
    mut stream: datafusion::execution::SendableRecordBatchStream,
    endless: bool,
) -> Result<usize, PgWireError>
where
    C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    use parquet::arrow::ArrowWriter;
    use parquet::basic::Compression;
    use parquet::file::properties::WriterProperties;
    if endless {
        return Err(PgWireError::UserError(err(
            "0A000",
            "a Parquet file ends with its footer, and a subscription never ends: read SUBSCRIBE as text or csv",
        )));
    }
    let failed = |e: &dyn std::fmt::Display| {
        PgWireError::UserError(err("XX000", format!("COPY … (FORMAT parquet): {e}")))
    };
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        // DuckDB's row group size: groups stream out as they fill.
        .set_max_row_group_row_count(Some(122_880))
        .build();
    let mut writer =
        ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props)).map_err(|e| failed(&e))?;
    let ncols = schema.fields().len();
    client
        .send(PgWireBackendMessage::CopyOutResponse(CopyOutResponse::new(
            1,
            ncols as i16,
            vec![1; ncols],
        )))
        .await?;
    let mut n = 0usize;
    let mut cancel = inner.cancel.subscribe();
    loop {
        let next = tokio::select! {
            b = stream.next() => b,
            _ = cancel.changed() => {
                return Err(PgWireError::UserError(err("57014", "canceling statement due to user request")));
            }
        };
        let Some(batch) = next else { break };
        let batch = batch.map_err(|e| {
            PgWireError::UserError(err("XX000", format!("COPY: the query failed: {e}")))
        })?;
        n += batch.num_rows();
        writer.write(&batch).map_err(|e| failed(&e))?;
        // Row groups are written out as they fill; send what is written.
        if writer.inner().len() >= PARQUET_CHUNK {
            let bytes = std::mem::take(writer.inner_mut());
            send_chunks(client, bytes).await?;
        }
    }
    let bytes = writer.into_inner().map_err(|e| failed(&e))?;
    send_chunks(client, bytes).await?;
    client
        .feed(PgWireBackendMessage::CopyDone(CopyDone::new()))
        .await?;
    Ok(n)
}

async fn send_chunks<C>(client: &mut C, bytes: Vec<u8>) -> Result<(), PgWireError>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send + Sync,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let bytes = Bytes::from(bytes);
    let mut off = 0;
    while off < bytes.len() {
        let end = (off + PARQUET_CHUNK).min(bytes.len());
        client
            .feed(PgWireBackendMessage::CopyData(CopyData::new(
                bytes.slice(off..end),
            )))
            .await?;
        off = end;
    }
    client.flush().await?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Hooks for the connection.

/// What a COPY in a simple query did.
pub enum Started {
    /// Finished (COPY TO): go on with the next statement.
    Done,
    /// Failed; the error has been sent.
    Failed,
    /// Copy-in mode: the client now sends data; send nothing more for this query.
    CopyIn,
}

impl Inner {
    /// Prepare a load: check the statement and the table.
    async fn begin_copy_in(
        &self,
        table: String,
        columns: Vec<String>,
        opts: CopyOptions,
    ) -> Result<CopyIn, E> {
        let st = self.state.lock().await;
        st.session.check_not_aborted().map_err(query_err)?;
        let existing = st.session.database().engine().table_schema(&table);
        drop(st);
        CopyIn::new(
            table,
            columns,
            opts,
            existing.as_ref().map(|s| s.columns.as_slice()),
        )
    }

    /// A server-side COPY (`COPY … TO 'file'`), run by the session like any
    /// statement; its command tag.
    async fn run_server_copy(&self, sql: &str) -> Result<Tag, E> {
        let parsed = super::conn::parse_one(sql);
        let mut reports = vec![];
        match self
            .run(&mut reports, sql, parsed.as_ref(), vec![], false)
            .await?
        {
            Exec::Command(tag) => {
                let rows = tag
                    .rsplit(' ')
                    .next()
                    .and_then(|n| n.parse::<usize>().ok())
                    .unwrap_or(0);
                Ok(Tag::new("COPY").with_rows(rows))
            }
            _ => Err(err("XX000", "COPY … TO a file returned rows")),
        }
    }

    /// Check a COPY statement being prepared (extended protocol).
    pub(super) fn check_copy(&self, sql: &str) -> Result<(), E> {
        match parse_copy(sql)? {
            CopyCommand::From {
                table,
                columns,
                opts,
            } => {
                let existing = self.shared.db.database().engine().table_schema(&table);
                CopyIn::new(
                    table,
                    columns,
                    opts,
                    existing.as_ref().map(|s| s.columns.as_slice()),
                )
                .map(|_| ())
            }
            CopyCommand::To { .. } | CopyCommand::Server => Ok(()),
        }
    }

    /// Write a finished load through the session; returns the rows written.
    async fn commit_copy_in(&self, mut c: CopyIn) -> Result<u64, E> {
        let batches = c.finish()?;
        let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
        let mut st = self.state.lock().await;
        st.session.check_not_aborted().map_err(query_err)?;
        if rows == 0 {
            return Ok(0);
        }
        match st.session.load_or_ingest(c.table(), batches, None).await {
            Ok(n) => Ok(n),
            Err(e) => Err(err(
                e.sqlstate(),
                format!("COPY {}: {e}; nothing was loaded", c.table()),
            )),
        }
    }
}

impl Conn {
    /// Handle a COPY statement of a simple query.
    pub(super) async fn simple_copy<C>(
        &self,
        client: &mut C,
        sql: &str,
        last: bool,
    ) -> PgWireResult<Started>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let cmd = match parse_copy(sql) {
            Ok(c) => c,
            Err(e) => return self.fail(client, e).await,
        };
        match cmd {
            CopyCommand::From {
                table,
                columns,
                opts,
            } => {
                if !last {
                    return self
                        .fail(
                            client,
                            err(
                                "0A000",
                                "COPY … FROM STDIN must be the last statement of a query string",
                            ),
                        )
                        .await;
                }
                let c = match self.0.begin_copy_in(table, columns, opts).await {
                    Ok(c) => c,
                    Err(e) => return self.fail(client, e).await,
                };
                let n = c.columns();
                *self.0.copy_in.lock().expect("copy lock") = Some(Box::new(c));
                client.set_state(PgWireConnectionState::CopyInProgress(false));
                client
                    .send(PgWireBackendMessage::CopyInResponse(CopyInResponse::new(
                        0,
                        n as i16,
                        vec![0; n],
                    )))
                    .await?;
                Ok(Started::CopyIn)
            }
            CopyCommand::Server => match self.0.run_server_copy(sql).await {
                Ok(tag) => {
                    client
                        .feed(PgWireBackendMessage::CommandComplete(tag.into()))
                        .await?;
                    Ok(Started::Done)
                }
                Err(e) => self.fail(client, e).await,
            },
            CopyCommand::To { query, opts } => {
                match copy_out(&self.0, client, &query, &opts).await {
                    Ok(n) => {
                        client
                            .feed(PgWireBackendMessage::CommandComplete(
                                Tag::new("COPY").with_rows(n).into(),
                            ))
                            .await?;
                        Ok(Started::Done)
                    }
                    Err(PgWireError::UserError(e)) => self.fail(client, e).await,
                    Err(e) => Err(e),
                }
            }
        }
    }

    async fn fail<C>(&self, client: &mut C, e: E) -> PgWireResult<Started>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.0.mark_failed(&e.message).await;
        client
            .feed(PgWireBackendMessage::ErrorResponse((*e).into()))
            .await?;
        Ok(Started::Failed)
    }

    /// Handle a COPY statement of the extended protocol (from `do_query`).
    pub(super) async fn extended_copy<C>(
        &self,
        client: &mut C,
        sql: &str,
    ) -> PgWireResult<pgwire::api::results::Response>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        use pgwire::api::results::Response;
        let cmd = match parse_copy(sql) {
            Ok(c) => c,
            Err(e) => {
                self.0.mark_failed(&e.message).await;
                return Err(PgWireError::UserError(e));
            }
        };
        match cmd {
            CopyCommand::From {
                table,
                columns,
                opts,
            } => {
                let c = match self.0.begin_copy_in(table, columns, opts).await {
                    Ok(c) => c,
                    Err(e) => {
                        self.0.mark_failed(&e.message).await;
                        return Err(PgWireError::UserError(e));
                    }
                };
                let n = c.columns();
                *self.0.copy_in.lock().expect("copy lock") = Some(Box::new(c));
                Ok(Response::CopyIn(CopyResponse::new(
                    0,
                    n,
                    futures::stream::empty(),
                )))
            }
            CopyCommand::Server => match self.0.run_server_copy(sql).await {
                Ok(tag) => Ok(Response::Execution(tag)),
                Err(e) => {
                    self.0.mark_failed(&e.message).await;
                    Err(PgWireError::UserError(e))
                }
            },
            CopyCommand::To { query, opts } => match copy_out(&self.0, client, &query, &opts).await
            {
                Ok(n) => Ok(Response::Execution(Tag::new("COPY").with_rows(n))),
                Err(e) => {
                    self.0.mark_failed(&e.to_string()).await;
                    Err(e)
                }
            },
        }
    }

    /// Drop a load after an error; an open transaction becomes failed.
    async fn abort_copy(&self) {
        self.0.copy_in.lock().expect("copy lock").take();
        self.0.mark_failed("the COPY load was abandoned").await;
    }
}

#[async_trait]
impl CopyHandler for Conn {
    async fn on_copy_data<C>(&self, client: &mut C, copy_data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let r = {
            let mut g = self.0.copy_in.lock().expect("copy lock");
            match g.as_mut() {
                Some(c) => c.feed(&copy_data.data),
                None => Err(err("08P01", "CopyData received but no COPY is in progress")),
            }
        };
        if let Err(e) = r {
            self.abort_copy().await;
            client.set_transaction_status(self.0.tx_status().await);
            return Err(PgWireError::UserError(e));
        }
        Ok(())
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let c = self.0.copy_in.lock().expect("copy lock").take();
        let Some(c) = c else {
            return Err(PgWireError::UserError(err(
                "08P01",
                "CopyDone received but no COPY is in progress",
            )));
        };
        match self.0.commit_copy_in(*c).await {
            Ok(n) => {
                client
                    .send(PgWireBackendMessage::CommandComplete(
                        Tag::new("COPY").with_rows(n as usize).into(),
                    ))
                    .await?;
                client.set_transaction_status(self.0.tx_status().await);
                Ok(())
            }
            Err(e) => {
                self.0.mark_failed(&e.message).await;
                client.set_transaction_status(self.0.tx_status().await);
                Err(PgWireError::UserError(e))
            }
        }
    }

    async fn on_copy_fail<C>(&self, client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        self.abort_copy().await;
        client.set_transaction_status(self.0.tx_status().await);
        PgWireError::UserError(err(
            "57014",
            format!(
                "COPY from stdin failed: {}; nothing was loaded",
                fail.message
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(sql: &str, data: &[&str]) -> Result<Vec<RecordBatch>, E> {
        let CopyCommand::From {
            table,
            columns,
            opts,
        } = parse_copy(sql)?
        else {
            panic!("not a COPY FROM")
        };
        let mut c = CopyIn::new(table, columns, opts, None)?;
        for d in data {
            c.feed(d.as_bytes())?;
        }
        c.finish()
    }

    #[test]
    fn text_format_with_escapes_and_nulls() {
        let b = load(
            "COPY t (_id, name, score) FROM STDIN",
            &["1\tal\\tice\t1.5\n2\t\\N\t", "2\n3\tc\\\\d\\n\t\\N\n"],
        )
        .unwrap();
        let b = &b[0];
        assert_eq!(b.num_rows(), 3);
        assert_eq!(b.schema().field(0).data_type(), &DataType::Int64);
        assert_eq!(b.schema().field(2).data_type(), &DataType::Float64);
        let names = b.column(1).as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(names.value(0), "al\tice");
        assert!(names.is_null(1));
        assert_eq!(names.value(2), "c\\d\n");
    }

    #[test]
    fn csv_with_quotes_header_and_split_chunks() {
        let b = load(
            "COPY t FROM STDIN WITH (FORMAT csv, HEADER true)",
            &[
                "_id,note,ok\n1,\"a, \"\"b\"\"\",t\n2,,f\n3,\"\",t\n4,\"multi",
                "\nline\",f",
            ],
        )
        .unwrap();
        let b = &b[0];
        assert_eq!(b.num_rows(), 4);
        assert_eq!(b.schema().field(2).data_type(), &DataType::Boolean);
        let notes = b.column(1).as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(notes.value(0), "a, \"b\"");
        assert!(notes.is_null(1));
        assert_eq!(notes.value(2), "");
        assert_eq!(notes.value(3), "multi\nline");
    }

    #[test]
    fn a_bad_row_names_its_line() {
        let CopyCommand::From {
            table,
            columns,
            opts,
        } = parse_copy("COPY t (_id, n) FROM STDIN (FORMAT csv)").unwrap()
        else {
            panic!()
        };
        let existing = [
            Field::new("_id", DataType::Int64, true),
            Field::new("n", DataType::Int64, true),
        ];
        let mut c = CopyIn::new(table, columns, opts, Some(&existing)).unwrap();
        c.feed(b"1,2\n2,3\n3,x\n").unwrap();
        let e = c.finish().unwrap_err();
        assert!(e.message.contains("line 3"), "{}", e.message);
        assert!(e.message.contains("BIGINT"), "{}", e.message);
        let e = load("COPY t (_id, n) FROM STDIN", &["1\t2\n2\t3\t4\n"]).unwrap_err();
        assert!(e.message.contains("line 2"), "{}", e.message);
    }

    #[test]
    fn output_escaping() {
        let text = parse_copy("COPY t TO STDOUT").unwrap();
        let CopyCommand::To { opts, .. } = text else {
            panic!()
        };
        let mut out = vec![];
        format_line(&mut out, &[Some(b"a\tb\\c\n"), None], &opts);
        assert_eq!(out, b"a\\tb\\\\c\\n\t\\N\n");
        let CopyCommand::To { opts, query } =
            parse_copy("COPY (SELECT 1 AS x) TO STDOUT WITH CSV HEADER").unwrap()
        else {
            panic!()
        };
        assert!(query.contains("SELECT 1"));
        let mut out = vec![];
        format_line(
            &mut out,
            &[Some(b"a,b"), Some(b""), None, Some(b"q\"")],
            &opts,
        );
        assert_eq!(out, b"\"a,b\",\"\",,\"q\"\"\"\n");
    }

    #[test]
    fn files_go_to_the_session() {
        // Server-side targets are the session's (strata_query::export),
        // which refuses COPY FROM a file and writes only under the export
        // root (tests/export.rs).
        for sql in [
            "COPY t FROM '/etc/passwd'",
            "COPY t TO 'x.parquet'",
            "COPY (SELECT * FROM t FOR SYSTEM_TIME AS OF NOW()) TO 'x' (FORMAT delta)",
            "COPY t TO PROGRAM 'cat'",
        ] {
            assert!(matches!(parse_copy(sql), Ok(CopyCommand::Server)), "{sql}");
        }
        assert!(is_copy("copy t from stdin"));
        assert!(!is_copy("copycat"));
        // A multi-byte character within the first four bytes (a fuzzed
        // statement panicked here, closing its connection).
        assert!(!is_copy("k \u{fffd}) FROM t2"));
        assert!(!is_copy("é"));
        assert!(!is_copy("cop"));
        assert!(is_copy("  COPY(SELECT 1) TO STDOUT"));
    }
}
