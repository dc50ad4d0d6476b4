//! The Arrow Flight SQL front end of `strata serve`.
//!
//! It shares the session layer with the Postgres front end: every call runs
//! on a fresh `strata_query::Session` over the same `Db`, so SQL, temporal
//! syntax, errors and write paths are the same. What is Flight-specific:
//!
//! * Queries: GetFlightInfo plans the statement (for its schema) and returns
//!   a ticket holding the SQL; DoGet runs it and streams the session's record
//!   batch stream through `FlightDataEncoder`, never collecting it.
//!   Statements that are not a single query (writes, DDL, scripts) run once,
//!   at GetFlightInfo, and their (small) result travels in the ticket.
//! * Prepared statements are stateless: the handle is the SQL itself; binding
//!   parameters (DoPut) returns a new handle with the parameter batch inside
//!   (see `handle.rs`), so any node can execute any handle.
//! * Updates return the affected row count; bulk ingest loads the whole DoPut
//!   stream as one transaction through `Session::ingest`.
//! * Metadata: catalogs, schemas, tables (with their Arrow schema), table
//!   types, SqlInfo, XDBC type info.
//! * Auth: `crate::auth` rules; Handshake (basic) → bearer token.
//! * TLS: `--tls-cert/--tls-key` make the Flight listener TLS-only.

mod handle;
mod meta;
mod panics;
mod token;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::ipc::writer::IpcWriteOptions;
use arrow::record_batch::RecordBatch;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightServiceServer;
use arrow_flight::sql::metadata::{GetCatalogsBuilder, GetDbSchemasBuilder, GetTablesBuilder};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, CommandGetCatalogs, CommandGetDbSchemas,
    CommandGetPrimaryKeys, CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables,
    CommandGetXdbcTypeInfo, CommandPreparedStatementQuery, CommandPreparedStatementUpdate,
    CommandStatementIngest, CommandStatementQuery, CommandStatementUpdate,
    DoPutPreparedStatementResult, ProstMessageExt, SqlInfo, TableExistsOption, TableNotExistOption,
    TicketStatementQuery,
};
use arrow_flight::{
    FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, IpcMessage,
    SchemaAsIpc, Ticket,
};
use bytes::Bytes;
use datafusion::common::ScalarValue;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use futures::{stream, Stream, StreamExt, TryStreamExt};
use prost::Message;
use strata_query::describe::DescribedKind;
use strata_query::temporal;
use strata_query::{Output, QueryError};
use tonic::{Request, Response, Status, Streaming};

use crate::auth::Auth;
use crate::Db;
use handle::Handle;
use token::{Credentials, Tokens};

/// Largest FlightData message the server sends. gRPC clients commonly refuse
/// messages over 4 MiB; the encoder's size estimate is approximate, so stay
/// well under (record batches are split to fit).
pub const MAX_FLIGHT_DATA_SIZE: usize = 2 * 1024 * 1024;

/// Largest message the server accepts (a DoPut chunk, a bound handle).
pub const MAX_DECODING_MESSAGE_SIZE: usize = 256 * 1024 * 1024;

/// Most parameter rows bound to one statement (it runs once per row).
pub const MAX_PARAM_ROWS: usize = 1_000_000;

/// Results computed at GetFlightInfo (commands, scripts) travel in the
/// ticket; past this size the client is told to send the query on its own.
pub const MAX_TICKET_RESULT_BYTES: usize = 64 * 1024 * 1024;

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The Flight SQL service over one database.
pub struct StrataFlight {
    db: Db,
    auth: Auth,
    tokens: Arc<Tokens>,
}

impl StrataFlight {
    pub fn new(db: Db, auth: Auth) -> StrataFlight {
        StrataFlight {
            db,
            auth,
            tokens: Arc::new(Tokens::default()),
        }
    }

    /// Who makes the call (every statement it runs is checked against
    /// this user's privileges).
    async fn check<T>(&self, r: &Request<T>) -> Result<String, Status> {
        let user = match token::authorize(&self.auth, &self.tokens, r.metadata()) {
            Err(e) => match token::credentials(r.metadata()) {
                // Not a configured user: perhaps a stored role (CREATE ROLE … LOGIN PASSWORD).
                Ok(Credentials::Basic { user, password })
                    if self.verify_stored(&user, &password).await =>
                {
                    user
                }
                _ => return Err(e),
            },
            Ok(u) => u,
        };
        let db = self.db.database();
        db.access()
            .login(db.engine(), &user)
            .await
            .map_err(|e| Status::permission_denied(e.to_string()))?;
        Ok(user)
    }

    /// A stored role's password (not a configured user's).
    async fn verify_stored(&self, user: &str, password: &str) -> bool {
        let db = self.db.database();
        db.access()
            .verify_password(db.engine(), user, password)
            .await
    }

    /// Describe `sql` through the session: the types of its parameters,
    /// and its result schema when it is one plain query or a SUBSCRIBE
    /// (planned now, streamed from DoGet). Anything else (commands,
    /// scripts, temporal DML) gets no schema and runs eagerly.
    async fn describe(&self, user: &str, sql: &str, nparams: usize) -> Result<Described, Status> {
        let mut session = self.db.session();
        session.set_user(user);
        let d = session
            .describe(sql, nparams, &|_| {})
            .await
            .map_err(status)?;
        let streams = matches!(d.kind, DescribedKind::Query | DescribedKind::Subscribe);
        Ok(Described {
            schema: if streams { d.schema } else { None },
            params: d.params,
        })
    }

    /// The FlightInfo for running `sql` with `params` bound.
    async fn flight_info(
        &self,
        user: &str,
        sql: &str,
        params: Option<RecordBatch>,
        descriptor: FlightDescriptor,
    ) -> Result<FlightInfo, Status> {
        let (sql, n) = placeholders(sql)?;
        let d = self.describe(user, &sql, n).await?;
        let (schema, handle, total) = match d.schema {
            Some(schema) => (schema, Handle::Query { sql, params }, -1),
            None => {
                let (schema, batches, affected) =
                    self.run_eagerly(user, &sql, params.as_ref()).await?;
                let size: usize = batches.iter().map(|b| b.get_array_memory_size()).sum();
                if size > MAX_TICKET_RESULT_BYTES {
                    return Err(Status::resource_exhausted(format!(
                        "the result of this script is {size} bytes; results of statements that are not a \
                         single query travel in the ticket and are limited to {MAX_TICKET_RESULT_BYTES} bytes: \
                         send the final SELECT as a statement of its own to stream it"
                    )));
                }
                let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
                let total = if batches.is_empty() {
                    affected as i64
                } else {
                    rows as i64
                };
                (schema.clone(), Handle::Results { schema, batches }, total)
            }
        };
        let ticket = TicketStatementQuery {
            statement_handle: handle.encode()?,
        };
        FlightInfo::new()
            .try_with_schema(&schema)
            .map_err(|e| Status::internal(format!("encoding the result schema: {e}")))
            .map(|i| {
                i.with_endpoint(
                    FlightEndpoint::new().with_ticket(Ticket::new(ticket.as_any().encode_to_vec())),
                )
                .with_descriptor(descriptor)
                .with_total_records(total)
                .with_ordered(true)
            })
    }

    /// Run a statement that is not a single query now: every parameter row
    /// in turn. The last result set (if any) and the affected row count.
    async fn run_eagerly(
        &self,
        user: &str,
        sql: &str,
        params: Option<&RecordBatch>,
    ) -> Result<(SchemaRef, Vec<RecordBatch>, u64), Status> {
        let mut session = self.db.session();
        session.set_user(user);
        let mut last: Option<(SchemaRef, Vec<RecordBatch>)> = None;
        let mut affected = 0u64;
        for row in param_rows(params)? {
            for out in session.execute(sql, &row).await.map_err(status)? {
                match out {
                    Output::Rows { schema, stream } => {
                        let batches: Vec<RecordBatch> = stream
                            .try_collect()
                            .await
                            .map_err(|e| status(QueryError::from(e)))?;
                        last = Some((schema, batches));
                    }
                    Output::Command { rows, .. } => affected += rows,
                }
            }
        }
        if session.in_transaction() {
            return Err(open_transaction());
        }
        let (schema, batches) = last.unwrap_or_else(|| (Arc::new(Schema::empty()), vec![]));
        Ok((schema, batches, affected))
    }

    /// Run a statement for each parameter row; total affected rows.
    async fn run_update(
        &self,
        user: &str,
        sql: &str,
        params: Option<&RecordBatch>,
    ) -> Result<i64, Status> {
        let (sql, _) = placeholders(sql)?;
        let mut session = self.db.session();
        session.set_user(user);
        let mut affected = 0u64;
        for row in param_rows(params)? {
            for out in session.execute(&sql, &row).await.map_err(status)? {
                if let Output::Command { rows, .. } = out {
                    affected += rows;
                }
            }
        }
        if session.in_transaction() {
            return Err(open_transaction());
        }
        Ok(affected as i64)
    }

    /// Stream what a ticket or handle names.
    async fn do_get_handle(
        &self,
        user: &str,
        h: Handle,
    ) -> Result<
        Response<<Self as arrow_flight::flight_service_server::FlightService>::DoGetStream>,
        Status,
    > {
        match h {
            Handle::Results { schema, batches } => Ok(encode(
                schema,
                stream::iter(batches.into_iter().map(Ok)).boxed(),
            )),
            Handle::Query { sql, params } => {
                let (sql, _) = placeholders(&sql)?;
                let rows = param_rows(params.as_ref())?;
                // A handle is self-contained and can be forged: refuse
                // anything but one read-only query before running it.
                refuse_unless_query(&sql, rows.first().map(Vec::as_slice).unwrap_or(&[]))?;
                if rows.is_empty() {
                    return Err(Status::invalid_argument(
                        "the bound parameter batch has no rows: bind at least one row of parameters",
                    ));
                }
                let mut rows = rows.into_iter();
                let first = rows.next().unwrap_or_default();
                let (schema, first) = execute_query(&self.db, user, &sql, &first).await?;
                let db = self.db.clone();
                let user = user.to_string();
                // One result per parameter row, one after the other.
                let rest = stream::iter(rows)
                    .then(move |row| {
                        let db = db.clone();
                        let (sql, user) = (sql.clone(), user.clone());
                        async move { execute_query(&db, &user, &sql, &row).await }
                    })
                    .map(|r| match r {
                        Ok((_, s)) => rows_stream(s),
                        Err(e) => stream::once(async move { Err(e) }).boxed(),
                    })
                    .flatten();
                Ok(encode(schema, rows_stream(first).chain(rest).boxed()))
            }
        }
    }

    fn metadata_info(
        &self,
        cmd: impl ProstMessageExt,
        schema: &Schema,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        let info = FlightInfo::new()
            .try_with_schema(schema)
            .map_err(|e| Status::internal(format!("encoding the schema: {e}")))?
            .with_endpoint(
                FlightEndpoint::new().with_ticket(Ticket::new(cmd.as_any().encode_to_vec())),
            )
            .with_descriptor(descriptor);
        Ok(Response::new(info))
    }

    fn tables_batch(&self, cmd: CommandGetTables) -> Result<RecordBatch, Status> {
        let mut b: GetTablesBuilder = cmd.into_builder();
        for name in meta::table_names(&self.db) {
            if let Some(schema) = meta::table_schema(&self.db, &name) {
                b.append(
                    meta::CATALOG,
                    meta::SCHEMA,
                    &name,
                    meta::TABLE_TYPE,
                    &schema,
                )
                .map_err(arrow_status)?;
            }
        }
        b.build().map_err(arrow_status)
    }

    async fn ingest(
        &self,
        user: &str,
        cmd: CommandStatementIngest,
        data: PeekableFlightDataStream,
    ) -> Result<i64, Status> {
        let table = cmd.table.trim().to_string();
        if table.is_empty() {
            return Err(Status::invalid_argument("ingest needs a target table name"));
        }
        if let Some(s) = cmd.schema.as_deref().filter(|s| !s.is_empty()) {
            if s != meta::SCHEMA {
                return Err(Status::invalid_argument(format!(
                    "unknown schema `{s}`: Strata tables live in `{}`",
                    meta::SCHEMA
                )));
            }
        }
        if let Some(c) = cmd.catalog.as_deref().filter(|s| !s.is_empty()) {
            if c != meta::CATALOG {
                return Err(Status::invalid_argument(format!(
                    "unknown catalog `{c}`: Strata's catalog is `{}`",
                    meta::CATALOG
                )));
            }
        }
        if cmd.temporary {
            return Err(Status::unimplemented(
                "temporary tables are not supported: ingest into a regular table",
            ));
        }
        if cmd.transaction_id.is_some() {
            return Err(Status::unimplemented(
                "Flight SQL transactions are not supported: each ingest is one transaction of its own",
            ));
        }
        let valid = ingest_valid_period(&cmd.options)?;
        let opts = cmd.table_definition_options.unwrap_or_default();
        let exists = self.db.database().engine().table_schema(&table).is_some();
        let if_not_exist = TableNotExistOption::try_from(opts.if_not_exist)
            .unwrap_or(TableNotExistOption::Unspecified);
        let if_exists =
            TableExistsOption::try_from(opts.if_exists).unwrap_or(TableExistsOption::Unspecified);
        if !exists && if_not_exist == TableNotExistOption::Fail {
            return Err(Status::not_found(format!(
                "table `{table}` does not exist: ingest with mode create or create_append to create it"
            )));
        }
        if exists && if_exists == TableExistsOption::Fail {
            return Err(Status::already_exists(format!(
                "table `{table}` already exists: ingest with mode append or create_append to add rows to it"
            )));
        }
        if exists && if_exists == TableExistsOption::Replace {
            return Err(Status::unimplemented(format!(
                "replacing table `{table}` is not supported (Strata keeps every version): \
                 append to it, or ERASE its rows first"
            )));
        }
        let batches = read_batches(data).await?;
        let mut session = self.db.session();
        session.set_user(user);
        let rows = session
            .load_or_ingest(&table, batches, valid)
            .await
            .map_err(status)?;
        Ok(rows as i64)
    }
}

/// What `describe` found.
struct Described {
    schema: Option<SchemaRef>,
    params: Vec<Option<DataType>>,
}

#[tonic::async_trait]
impl FlightSqlService for StrataFlight {
    type FlightService = StrataFlight;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        let trust = self.auth.mode == crate::auth::AuthMode::Trust;
        let addr = request.remote_addr().map(|a| a.to_string());
        let audit = |event: &'static str, user: &str, detail: &str| {
            self.db
                .database()
                .audit(strata_query::access::audit::AuditEvent {
                    event,
                    role: user.to_string(),
                    client: addr.clone(),
                    statement: None,
                    detail: Some(detail.to_string()),
                })
        };
        let user = match token::credentials(request.metadata()) {
            Ok(Credentials::Basic { user, password }) => {
                if !self.auth.verify_password(&user, &password)
                    && !(!trust && self.verify_stored(&user, &password).await)
                {
                    audit("login_failed", &user, "wrong password or unknown user (flight sql)");
                    return Err(token::bad_password(&user));
                }
                if user.is_empty() {
                    token::TRUST_USER.to_string()
                } else {
                    user
                }
            }
            _ if trust => token::TRUST_USER.to_string(),
            Ok(_) => {
                return Err(Status::unauthenticated(
                    "the Handshake needs HTTP basic credentials: `authorization: Basic base64(USER:PASSWORD)`",
                ))
            }
            Err(e) => return Err(e),
        };
        audit("login", &user, "flight sql");
        let token = self.tokens.issue(&user);
        let out = stream::iter(vec![Ok(HandshakeResponse {
            protocol_version: 0,
            payload: Bytes::from(token.clone()),
        })]);
        let mut resp: Response<
            Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>,
        > = Response::new(Box::pin(out));
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| Status::internal("token is not a valid header value"))?;
        resp.metadata_mut().insert("authorization", value);
        Ok(resp)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let user = self.check(&request).await?;
        if query.transaction_id.is_some() {
            return Err(no_transactions());
        }
        let info = self
            .flight_info(&user, &query.query, None, request.into_inner())
            .await?;
        Ok(Response::new(info))
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let user = self.check(&request).await?;
        let Handle::Query { sql, params } = Handle::decode(&cmd.prepared_statement_handle)? else {
            return Err(not_a_statement());
        };
        let info = self
            .flight_info(&user, &sql, params, request.into_inner())
            .await?;
        Ok(Response::new(info))
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.check(&request).await?;
        let schema = query.into_builder().schema();
        self.metadata_info(query, &schema, request.into_inner())
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.check(&request).await?;
        let schema = query.clone().into_builder().schema();
        self.metadata_info(query, &schema, request.into_inner())
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.check(&request).await?;
        let schema = query.clone().into_builder().schema();
        self.metadata_info(query, &schema, request.into_inner())
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.check(&request).await?;
        let schema = query.into_builder().schema();
        self.metadata_info(query, &schema, request.into_inner())
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.check(&request).await?;
        let schema = meta::sql_info().schema();
        self.metadata_info(query, &schema, request.into_inner())
    }

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.check(&request).await?;
        self.metadata_info(query, &meta::primary_keys_schema(), request.into_inner())
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.check(&request).await?;
        let schema = meta::xdbc_info().schema();
        self.metadata_info(query, &schema, request.into_inner())
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<
        Response<<Self as arrow_flight::flight_service_server::FlightService>::DoGetStream>,
        Status,
    > {
        let user = self.check(&request).await?;
        let h = Handle::decode(&ticket.statement_handle)?;
        self.do_get_handle(&user, h).await
    }

    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<
        Response<<Self as arrow_flight::flight_service_server::FlightService>::DoGetStream>,
        Status,
    > {
        let user = self.check(&request).await?;
        let h = Handle::decode(&query.prepared_statement_handle)?;
        self.do_get_handle(&user, h).await
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<
        Response<<Self as arrow_flight::flight_service_server::FlightService>::DoGetStream>,
        Status,
    > {
        self.check(&request).await?;
        let mut b: GetCatalogsBuilder = query.into_builder();
        b.append(meta::CATALOG);
        let batch = b.build().map_err(arrow_status)?;
        Ok(encode_batch(batch))
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<
        Response<<Self as arrow_flight::flight_service_server::FlightService>::DoGetStream>,
        Status,
    > {
        self.check(&request).await?;
        let mut b: GetDbSchemasBuilder = query.into_builder();
        b.append(meta::CATALOG, meta::SCHEMA);
        let batch = b.build().map_err(arrow_status)?;
        Ok(encode_batch(batch))
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<
        Response<<Self as arrow_flight::flight_service_server::FlightService>::DoGetStream>,
        Status,
    > {
        self.check(&request).await?;
        Ok(encode_batch(self.tables_batch(query)?))
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<
        Response<<Self as arrow_flight::flight_service_server::FlightService>::DoGetStream>,
        Status,
    > {
        self.check(&request).await?;
        let mut b = query.into_builder();
        b.append(meta::TABLE_TYPE);
        let batch = b.build().map_err(arrow_status)?;
        Ok(encode_batch(batch))
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<
        Response<<Self as arrow_flight::flight_service_server::FlightService>::DoGetStream>,
        Status,
    > {
        self.check(&request).await?;
        let batch = query
            .into_builder(meta::sql_info())
            .build()
            .map_err(arrow_status)?;
        Ok(encode_batch(batch))
    }

    async fn do_get_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<Ticket>,
    ) -> Result<
        Response<<Self as arrow_flight::flight_service_server::FlightService>::DoGetStream>,
        Status,
    > {
        self.check(&request).await?;
        let batch = meta::primary_keys(&self.db, &query).map_err(arrow_status)?;
        Ok(encode_batch(batch))
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<Ticket>,
    ) -> Result<
        Response<<Self as arrow_flight::flight_service_server::FlightService>::DoGetStream>,
        Status,
    > {
        self.check(&request).await?;
        let batch = query
            .into_builder(meta::xdbc_info())
            .build()
            .map_err(arrow_status)?;
        Ok(encode_batch(batch))
    }

    async fn do_put_statement_update(
        &self,
        ticket: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let user = self.check(&request).await?;
        if ticket.transaction_id.is_some() {
            return Err(no_transactions());
        }
        self.run_update(&user, &ticket.query, None).await
    }

    async fn do_put_statement_ingest(
        &self,
        ticket: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let user = self.check(&request).await?;
        self.ingest(&user, ticket, request.into_inner()).await
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        self.check(&request).await?;
        let Handle::Query { sql, params } = Handle::decode(&query.prepared_statement_handle)?
        else {
            return Err(not_a_statement());
        };
        let batches = read_batches(request.into_inner()).await?;
        let params = match concat(batches)? {
            Some(p) => Some(p),
            None => params,
        };
        let handle = Handle::Query { sql, params }.encode()?;
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(handle),
        })
    }

    async fn do_put_prepared_statement_update(
        &self,
        query: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let user = self.check(&request).await?;
        let Handle::Query { sql, params } = Handle::decode(&query.prepared_statement_handle)?
        else {
            return Err(not_a_statement());
        };
        // Parameters may come with the call (arrow-go clients) or be bound
        // in the handle already (a DoPut of CommandPreparedStatementQuery).
        let batches = read_batches(request.into_inner()).await?;
        let params = match concat(batches)? {
            Some(p) => Some(p),
            None => params,
        };
        self.run_update(&user, &sql, params.as_ref()).await
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let user = self.check(&request).await?;
        if query.transaction_id.is_some() {
            return Err(no_transactions());
        }
        let (sql, n) = placeholders(&query.query)?;
        let d = self.describe(&user, &sql, n).await?;
        let dataset = d.schema.unwrap_or_else(|| Arc::new(Schema::empty()));
        let params = Schema::new(
            d.params
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    Field::new(
                        format!("${}", i + 1),
                        t.clone().unwrap_or(DataType::Utf8),
                        true,
                    )
                })
                .collect::<Vec<_>>(),
        );
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: Handle::Query {
                sql: query.query,
                params: None,
            }
            .encode()?,
            dataset_schema: ipc_schema(&dataset)?,
            parameter_schema: ipc_schema(&params)?,
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<arrow_flight::Action>,
    ) -> Result<(), Status> {
        self.check(&request).await?;
        // Handles hold no server state: nothing to free.
        Handle::decode(&query.prepared_statement_handle)?;
        Ok(())
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

/// A running Flight SQL listener.
pub struct FlightListener {
    local: SocketAddr,
    tls: bool,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), String>>,
}

/// Bind the Flight SQL port of `r` and start serving `db` in the background.
pub async fn start(db: Db, r: &crate::serve::Resolved) -> Result<FlightListener, String> {
    let addr = SocketAddr::new(r.listen, r.flight_port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| crate::serve::bind_error("Flight SQL", addr, &e, "--flight-port"))?;
    let local = listener.local_addr().map_err(|e| e.to_string())?;
    let svc = FlightServiceServer::new(StrataFlight::new(db, r.auth.clone()))
        .max_decoding_message_size(MAX_DECODING_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_DECODING_MESSAGE_SIZE);
    // A panic in a call is an Internal error for that call, not a reset
    // stream; the server goes on either way.
    let svc = panics::CatchPanic(svc);
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &r.tls {
        let cert = std::fs::read(&tls.cert)
            .map_err(|e| format!("cannot read TLS certificate {}: {e}", tls.cert.display()))?;
        let key = std::fs::read(&tls.key)
            .map_err(|e| format!("cannot read TLS key {}: {e}", tls.key.display()))?;
        let cfg = tonic::transport::ServerTlsConfig::new()
            .identity(tonic::transport::Identity::from_pem(cert, key));
        builder = builder.tls_config(cfg).map_err(|e| {
            format!(
                "TLS certificate {} and key {} for Flight SQL: {e}",
                tls.cert.display(),
                tls.key.display()
            )
        })?;
    }
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let task = tokio::spawn(async move {
        builder
            .add_service(svc)
            .serve_with_incoming_shutdown(incoming, async {
                let _ = rx.await;
            })
            .await
            .map_err(|e| format!("Flight SQL server: {e}"))
    });
    Ok(FlightListener {
        local,
        tls: r.tls.is_some(),
        stop: Some(tx),
        task,
    })
}

impl FlightListener {
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// Stop accepting calls; give running streams a few seconds to finish.
    pub async fn stop(mut self) -> Result<(), String> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match tokio::time::timeout(Duration::from_secs(5), &mut self.task).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => Err(format!("Flight SQL server task: {e}")),
            Err(_) => {
                self.task.abort();
                Ok(())
            }
        }
    }
}

/// DoGet streams query results only: a statement that writes, or a script,
/// is refused before anything runs.
fn refuse_unless_query(sql: &str, params: &[ScalarValue]) -> Result<(), Status> {
    match strata_query::describe::not_a_single_read(sql, params).map_err(status)? {
        None => Ok(()),
        Some(what) => Err(Status::invalid_argument(format!(
            "DoGet runs only a single query (SELECT, WITH, VALUES, TABLE), and this ticket holds {what}: \
             run statements that change data with DoPut (CommandStatementUpdate, execute_update), \
             or ask for a FlightInfo (GetFlightInfo) and fetch the ticket it returns"
        ))),
    }
}

/// Run one query; its schema and stream.
async fn execute_query(
    db: &Db,
    user: &str,
    sql: &str,
    params: &[ScalarValue],
) -> Result<(SchemaRef, SendableRecordBatchStream), Status> {
    let mut session = db.session();
    session.set_user(user);
    let outs = session.execute(sql, params).await.map_err(status)?;
    match outs.into_iter().last() {
        Some(Output::Rows { schema, stream }) => Ok((schema, stream)),
        _ => Err(Status::invalid_argument(
            "this statement returns no rows: run it as an update (execute_update) instead",
        )),
    }
}

/// A result as Flight batches; empty batches (a subscription's caught-up
/// marks) are not sent: the schema goes first anyway.
fn rows_stream(s: SendableRecordBatchStream) -> BoxStream<RecordBatch> {
    s.map_err(|e| status(QueryError::from(e)))
        .try_filter(|b| futures::future::ready(b.num_rows() > 0))
        .boxed()
}

type DoGetStream =
    Pin<Box<dyn Stream<Item = Result<arrow_flight::FlightData, Status>> + Send + 'static>>;

/// Encode record batches as FlightData, split to fit gRPC messages.
fn encode(schema: SchemaRef, batches: BoxStream<RecordBatch>) -> Response<DoGetStream> {
    let input = batches.map_err(|s| FlightError::Tonic(Box::new(s)));
    let out = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .with_max_flight_data_size(MAX_FLIGHT_DATA_SIZE)
        .build(input)
        .map_err(flight_status);
    Response::new(panics::catch_stream(Box::pin(out)))
}

fn encode_batch(batch: RecordBatch) -> Response<DoGetStream> {
    encode(batch.schema(), stream::iter(vec![Ok(batch)]).boxed())
}

fn flight_status(e: FlightError) -> Status {
    match e {
        FlightError::Tonic(s) => *s,
        other => Status::internal(other.to_string()),
    }
}

fn arrow_status(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

/// Record batches sent with a DoPut (the first message may carry only the
/// command descriptor).
async fn read_batches(data: PeekableFlightDataStream) -> Result<Vec<RecordBatch>, Status> {
    let data = data
        .try_filter(|fd| futures::future::ready(!fd.data_header.is_empty()))
        .map_err(FlightError::from);
    let stream = FlightRecordBatchStream::new_from_flight_data(data);
    stream.try_collect().await.map_err(|e| match e {
        FlightError::Tonic(s) => *s,
        other => {
            Status::invalid_argument(format!("cannot decode the record batches sent: {other}"))
        }
    })
}

fn concat(batches: Vec<RecordBatch>) -> Result<Option<RecordBatch>, Status> {
    let Some(first) = batches.first() else {
        return Ok(None);
    };
    let schema = first.schema();
    arrow::compute::concat_batches(&schema, &batches)
        .map(Some)
        .map_err(|e| Status::invalid_argument(format!("parameter batches do not agree: {e}")))
}

fn ipc_schema(schema: &Schema) -> Result<Bytes, Status> {
    let IpcMessage(b) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e: arrow::error::ArrowError| {
            Status::internal(format!("encoding a schema: {e}"))
        })?;
    Ok(b)
}

/// Parameter rows of a bound batch, as values the session binds to `$1`, …
/// No batch: one execution without parameters.
fn param_rows(batch: Option<&RecordBatch>) -> Result<Vec<Vec<ScalarValue>>, Status> {
    let Some(b) = batch else {
        return Ok(vec![vec![]]);
    };
    // The row count comes from the client (a batch of no columns, or of
    // NULL-typed ones, claims any number of rows in a few bytes): check it
    // before a row of values is made for each.
    if b.num_rows() > MAX_PARAM_ROWS {
        return Err(Status::invalid_argument(format!(
            "{} rows of parameters bound; at most {MAX_PARAM_ROWS} rows can be bound to one statement \
             (each runs it once): load bulk data with an ingest",
            b.num_rows()
        )));
    }
    if b.num_columns() == 0 {
        return Ok(vec![vec![]; b.num_rows().max(1)]);
    }
    (0..b.num_rows())
        .map(|r| {
            b.columns()
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    ScalarValue::try_from_array(c, r)
                        .map(plain_value)
                        .map_err(|e| {
                            Status::invalid_argument(format!(
                                "parameter ${} in row {r}: {e}",
                                i + 1
                            ))
                        })
                })
                .collect()
        })
        .collect()
}

/// The value types Strata stores (Int64, Float64, Utf8, …) for the narrower
/// or view types clients send.
fn plain_value(v: ScalarValue) -> ScalarValue {
    use ScalarValue as S;
    match v {
        S::Int8(x) => S::Int64(x.map(i64::from)),
        S::Int16(x) => S::Int64(x.map(i64::from)),
        S::Int32(x) => S::Int64(x.map(i64::from)),
        S::UInt8(x) => S::Int64(x.map(i64::from)),
        S::UInt16(x) => S::Int64(x.map(i64::from)),
        S::UInt32(x) => S::Int64(x.map(i64::from)),
        S::UInt64(Some(x)) if x <= i64::MAX as u64 => S::Int64(Some(x as i64)),
        S::Float32(x) => S::Float64(x.map(f64::from)),
        S::LargeUtf8(x) | S::Utf8View(x) => S::Utf8(x),
        S::LargeBinary(x) | S::BinaryView(x) => S::Binary(x),
        S::Dictionary(_, v) => plain_value(*v),
        other => other,
    }
}

/// Accept `?` placeholders (JDBC / ADBC style) as well as `$1`, `$2`, …:
/// the SQL with `?` numbered as `$n`, and the number of parameters.
fn placeholders(sql: &str) -> Result<(String, usize), Status> {
    let toks = Tokenizer::new(&PostgreSqlDialect {}, sql)
        .tokenize()
        .map_err(|e| Status::invalid_argument(format!("syntax error: {e}")))?;
    let is_q =
        |t: &Token| matches!(t, Token::Placeholder(p) if p == "?") || matches!(t, Token::Question);
    let mut max = 0usize;
    let mut questions = 0usize;
    for t in &toks {
        if is_q(t) {
            questions += 1;
        } else if let Token::Placeholder(p) = t {
            if let Some(n) = p.strip_prefix('$').and_then(|d| d.parse::<usize>().ok()) {
                max = max.max(n);
            }
        }
    }
    if questions == 0 {
        return Ok((sql.to_string(), max));
    }
    if max > 0 {
        return Err(Status::invalid_argument(
            "the statement mixes `?` and `$n` placeholders: use one style",
        ));
    }
    let mut k = 0;
    let mut out = String::with_capacity(sql.len() + questions);
    for t in &toks {
        if is_q(t) {
            k += 1;
            out.push_str(&format!("${k}"));
        } else {
            out.push_str(&t.to_string());
        }
    }
    Ok((out, questions))
}

/// A valid-time period in µs since the epoch (`None`: open).
type ValidPeriod = (Option<i64>, Option<i64>);

/// The valid period an ingest's options give the whole load.
fn ingest_valid_period(
    options: &std::collections::HashMap<String, String>,
) -> Result<Option<ValidPeriod>, Status> {
    let mut from = None;
    let mut to = None;
    for (k, v) in options {
        let slot = match k.as_str() {
            "valid_from" | "strata.valid_from" => &mut from,
            "valid_to" | "strata.valid_to" => &mut to,
            k if k.starts_with("adbc.") => continue,
            other => {
                return Err(Status::invalid_argument(format!(
                    "unknown ingest option `{other}`: Strata knows `valid_from` and `valid_to` \
                     (RFC 3339 timestamps, e.g. 2024-01-01T00:00:00Z)"
                )))
            }
        };
        let t = chrono::DateTime::parse_from_rfc3339(v.trim())
            .map(|d| d.timestamp_micros())
            .or_else(|_| temporal::parse_time_literal(v.trim()))
            .map_err(|e| Status::invalid_argument(format!("ingest option `{k}`: {e}")))?;
        *slot = Some(t);
    }
    if let (Some(f), Some(t)) = (from, to) {
        if t <= f {
            return Err(Status::invalid_argument(
                "ingest option `valid_to` must be after `valid_from`",
            ));
        }
    }
    Ok((from.is_some() || to.is_some()).then_some((from, to)))
}

/// A session error as a gRPC status: the message is the session's own
/// (what went wrong and what to do), with the SQLSTATE the Postgres front
/// end would send.
fn status(e: QueryError) -> Status {
    use strata_query::error::Kind;
    use tonic::Code;
    let code = match e.kind() {
        Kind::InvalidInput => Code::InvalidArgument,
        Kind::NotFound => Code::NotFound,
        Kind::Unsupported => Code::Unimplemented,
        Kind::FailedPrecondition => Code::FailedPrecondition,
        Kind::Conflict => Code::Aborted,
        Kind::Unavailable => Code::Unavailable,
        Kind::ResourceExhausted => Code::ResourceExhausted,
        Kind::Corrupt => Code::DataLoss,
        Kind::OutcomeUnknown => Code::Unknown,
        Kind::Denied => Code::PermissionDenied,
        Kind::Timeout => Code::DeadlineExceeded,
        Kind::Internal => Code::Internal,
    };
    Status::new(code, format!("{e} (SQLSTATE {})", e.sqlstate()))
}

fn open_transaction() -> Status {
    Status::failed_precondition(
        "the statement left a transaction open, so it was rolled back: over Flight SQL each call \
         is a transaction of its own; send BEGIN … COMMIT in one statement",
    )
}

fn no_transactions() -> Status {
    Status::unimplemented(
        "Flight SQL transactions are not supported: each call is a transaction of its own \
         (BEGIN … COMMIT inside one statement works)",
    )
}

fn not_a_statement() -> Status {
    Status::invalid_argument("this handle names a result, not a prepared statement")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn question_marks_become_numbered_placeholders() {
        let (sql, n) = placeholders("SELECT * FROM t WHERE a = ? AND b = '?' AND c = ?").unwrap();
        assert_eq!(n, 2);
        assert_eq!(sql, "SELECT * FROM t WHERE a = $1 AND b = '?' AND c = $2");
        let (sql, n) = placeholders("SELECT $2, $1").unwrap();
        assert_eq!((sql.as_str(), n), ("SELECT $2, $1", 2));
        assert!(placeholders("SELECT ?, $1").is_err());
    }

    #[test]
    fn ingest_options_give_a_valid_period() {
        let mut o = std::collections::HashMap::new();
        assert_eq!(ingest_valid_period(&o).unwrap(), None);
        o.insert("valid_from".to_string(), "2024-01-01T00:00:00Z".to_string());
        assert_eq!(
            ingest_valid_period(&o).unwrap(),
            Some((Some(1_704_067_200_000_000), None))
        );
        o.insert("valid_to".to_string(), "2023-01-01T00:00:00Z".to_string());
        assert!(ingest_valid_period(&o).is_err());
        o.remove("valid_to");
        o.insert("vaild_to".to_string(), "2025-01-01T00:00:00Z".to_string());
        let e = ingest_valid_period(&o).unwrap_err();
        assert!(e.message().contains("vaild_to"), "{}", e.message());
    }
}
