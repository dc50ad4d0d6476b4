//! Flight SQL metadata: SqlInfo, XDBC type info, and the Arrow schema a
//! table shows to clients (its columns plus the four temporal columns).

use std::sync::{Arc, OnceLock};

use arrow::datatypes::{Field, Schema, SchemaRef};
use arrow_flight::sql::metadata::{
    SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo, XdbcTypeInfoData, XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::{
    Nullable, Searchable, SqlInfo, SqlNullOrdering, SqlSupportedTransaction, XdbcDataType,
    XdbcDatetimeSubcode,
};
use strata_storage::schema::{timestamp_type, TEMPORAL_COLUMNS};

use crate::Db;

pub const CATALOG: &str = "strata";
pub const SCHEMA: &str = "public";
pub const TABLE_TYPE: &str = "TABLE";

/// What GetSqlInfo answers.
pub fn sql_info() -> &'static SqlInfoData {
    static INFO: OnceLock<SqlInfoData> = OnceLock::new();
    INFO.get_or_init(|| {
        let mut b = SqlInfoDataBuilder::new();
        b.append(SqlInfo::FlightSqlServerName, "Strata");
        b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
        b.append(SqlInfo::FlightSqlServerArrowVersion, "59.3");
        b.append(SqlInfo::FlightSqlServerReadOnly, false);
        b.append(SqlInfo::FlightSqlServerSql, true);
        b.append(SqlInfo::FlightSqlServerSubstrait, false);
        b.append(
            SqlInfo::FlightSqlServerTransaction,
            SqlSupportedTransaction::None as i32,
        );
        b.append(SqlInfo::FlightSqlServerCancel, false);
        b.append(SqlInfo::FlightSqlServerBulkIngestion, true);
        b.append(SqlInfo::FlightSqlServerIngestTransactionsSupported, false);
        b.append(SqlInfo::SqlDdlCatalog, false);
        b.append(SqlInfo::SqlDdlSchema, false);
        b.append(SqlInfo::SqlDdlTable, true);
        b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
        b.append(SqlInfo::SqlQuotedIdentifierCase, 3i32); // case sensitive
        b.append(SqlInfo::SqlIdentifierCase, 2i32); // lower case
        b.append(
            SqlInfo::SqlNullOrdering,
            SqlNullOrdering::SqlNullsSortedHigh as i32,
        );
        b.append(SqlInfo::SqlSchemaTerm, "schema");
        b.append(SqlInfo::SqlCatalogTerm, "catalog");
        b.append(SqlInfo::SqlProcedureTerm, "procedure");
        b.append(SqlInfo::SqlSupportsColumnAliasing, true);
        b.append(SqlInfo::SqlNullPlusNullIsNull, true);
        b.append(SqlInfo::SqlTransactionsSupported, false);
        b.append(
            SqlInfo::SqlKeywords,
            &[
                "ERASE",
                "FOR",
                "PORTION",
                "SETTING",
                "SYSTEM_TIME",
                "VALID_TIME",
            ][..],
        );
        b.build().expect("static SqlInfo data")
    })
}

/// What GetXdbcTypeInfo answers: the SQL types Strata stores.
pub fn xdbc_info() -> &'static XdbcTypeInfoData {
    static INFO: OnceLock<XdbcTypeInfoData> = OnceLock::new();
    INFO.get_or_init(|| {
        let mut b = XdbcTypeInfoDataBuilder::new();
        let ty = |name: &str,
                  data_type: XdbcDataType,
                  column_size: Option<i32>,
                  quoted: bool,
                  sub: Option<XdbcDatetimeSubcode>| XdbcTypeInfo {
            type_name: name.into(),
            data_type,
            column_size,
            literal_prefix: quoted.then(|| "'".into()),
            literal_suffix: quoted.then(|| "'".into()),
            create_params: None,
            nullable: Nullable::NullabilityNullable,
            case_sensitive: matches!(data_type, XdbcDataType::XdbcVarchar),
            searchable: Searchable::Full,
            unsigned_attribute: matches!(
                data_type,
                XdbcDataType::XdbcBigint | XdbcDataType::XdbcDouble | XdbcDataType::XdbcDecimal
            )
            .then_some(false),
            fixed_prec_scale: false,
            auto_increment: Some(false),
            local_type_name: Some(name.into()),
            minimum_scale: None,
            maximum_scale: None,
            sql_data_type: data_type,
            datetime_subcode: sub,
            num_prec_radix: matches!(
                data_type,
                XdbcDataType::XdbcBigint | XdbcDataType::XdbcDouble | XdbcDataType::XdbcDecimal
            )
            .then_some(10),
            interval_precision: None,
        };
        // Ordered by data type code, as the spec asks.
        b.append(ty(
            "bigint",
            XdbcDataType::XdbcBigint,
            Some(19),
            false,
            None,
        ));
        b.append(ty("bytea", XdbcDataType::XdbcVarbinary, None, true, None));
        b.append(ty("text", XdbcDataType::XdbcVarchar, None, true, None));
        b.append(ty("boolean", XdbcDataType::XdbcBit, Some(1), false, None));
        b.append(XdbcTypeInfo {
            create_params: Some(vec!["precision".into(), "scale".into()]),
            fixed_prec_scale: true,
            minimum_scale: Some(0),
            maximum_scale: Some(38),
            ..ty("numeric", XdbcDataType::XdbcDecimal, Some(38), false, None)
        });
        b.append(ty(
            "double precision",
            XdbcDataType::XdbcDouble,
            Some(15),
            false,
            None,
        ));
        b.append(ty("date", XdbcDataType::XdbcDate, Some(10), true, None));
        b.append(ty(
            "timestamp",
            XdbcDataType::XdbcTimestamp,
            Some(26),
            true,
            Some(XdbcDatetimeSubcode::XdbcSubcodeTimestamp),
        ));
        b.append(ty(
            "timestamptz",
            XdbcDataType::XdbcTimestamp,
            Some(32),
            true,
            Some(XdbcDatetimeSubcode::XdbcSubcodeTimestampWithTimezone),
        ));
        b.build().expect("static XDBC type info")
    })
}

/// A table as clients see it: its columns, then the temporal columns.
pub fn table_schema(db: &Db, table: &str) -> Option<SchemaRef> {
    let ts = db.database().engine().table_schema(table)?;
    let mut fields: Vec<Field> = ts.columns.clone();
    for c in TEMPORAL_COLUMNS {
        if !fields.iter().any(|f| f.name() == c) {
            fields.push(Field::new(c, timestamp_type(), true));
        }
    }
    Some(Arc::new(Schema::new(fields)))
}

/// The tables, sorted by name.
pub fn table_names(db: &Db) -> Vec<String> {
    let mut names = db.database().engine().table_names();
    names.sort();
    names
}

/// GetPrimaryKeys' result schema (Flight SQL spec).
pub fn primary_keys_schema() -> SchemaRef {
    use arrow::datatypes::DataType;
    Arc::new(Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ]))
}

/// Every table's primary key is `_id`.
pub fn primary_keys(
    db: &Db,
    cmd: &arrow_flight::sql::CommandGetPrimaryKeys,
) -> arrow::error::Result<arrow::record_batch::RecordBatch> {
    use arrow::array::{ArrayRef, Int32Array, StringArray};
    let catalog_ok = cmd.catalog.as_deref().is_none_or(|c| c == CATALOG);
    let schema_ok = cmd.db_schema.as_deref().is_none_or(|s| s == SCHEMA);
    let found =
        catalog_ok && schema_ok && db.database().engine().table_schema(&cmd.table).is_some();
    let n = usize::from(found);
    let col = |v: &str| Arc::new(StringArray::from(vec![v; n])) as ArrayRef;
    arrow::record_batch::RecordBatch::try_new(
        primary_keys_schema(),
        vec![
            col(CATALOG),
            col(SCHEMA),
            col(&cmd.table),
            col(strata_storage::schema::ID),
            col(&format!("{}_pkey", cmd.table)),
            Arc::new(Int32Array::from(vec![1; n])),
        ],
    )
}
