//! Relations: table, index and system-table OIDs, primary keys, name lookup.

use super::*;

/// The OID of a user table: derived from its name, so stable across
/// connections and restarts; even, so that its row type can take `oid + 1`.
/// A role's oid: 10 for the built-in owner, else a stable hash of its name.
pub fn role_oid(name: &str) -> i64 {
    if name == OWNER {
        return OWNER_OID;
    }
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    20_000 + (h % 1_000_000_000) as i64
}

pub fn table_oid(name: &str) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.as_bytes() {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    16_384 + 2 * (h % (1 << 29)) as i64
}

/// Index and constraint OIDs sit above every table OID (`table_oid` stays
/// below `16_384 + 2^30`): a table's primary-key index is its OID plus this,
/// the primary-key constraint the index OID plus one.
pub(super) const INDEX_OID_OFFSET: i64 = 1 << 30;

/// A table's primary key: `_id`, the entity id. Strata keeps one current row
/// per `_id` at every point of the bitemporal plane and finds rows by `_id`
/// (bloom filter + live index), so every table has this unique index.
#[derive(Debug, Clone)]
pub(super) struct PrimaryKey {
    pub(super) table: String,
    pub(super) table_oid: i64,
    /// `<table>_pkey` (`<table>_pkey1`, … if a table already has that name).
    pub(super) name: String,
    /// The index's OID (its `pg_class` row); the constraint's is `oid + 1`.
    pub(super) oid: i64,
    /// `_id`'s attnum, type and typmod.
    pub(super) attnum: i64,
    pub(super) type_oid: i64,
    pub(super) typmod: i32,
}

impl PrimaryKey {
    pub(super) fn constraint_oid(&self) -> i64 {
        self.oid + 1
    }

    /// `pg_get_indexdef`: Postgres's `CREATE UNIQUE INDEX …` text.
    pub(super) fn indexdef(&self, pretty: bool) -> String {
        format!(
            "CREATE UNIQUE INDEX {} ON {}{} USING btree ({})",
            quote_ident(&self.name),
            if pretty { "" } else { "public." },
            quote_ident(&self.table),
            quote_ident(ID)
        )
    }

    /// `pg_get_constraintdef`.
    pub(super) fn constraintdef(&self) -> String {
        format!("PRIMARY KEY ({})", quote_ident(ID))
    }

    /// The btree operator class of the key's type (Postgres's OIDs).
    pub(super) fn opclass(&self) -> i64 {
        default_opclass(self.type_oid).map(|o| o.0).unwrap_or(0)
    }
}

/// Postgres's default btree operator classes for the types Strata stores:
/// (oid, name, input type, family).
pub(super) const BTREE_OPCLASSES: &[(i64, &str, i64, i64)] = &[
    (10003, "bool_ops", 16, 424),
    (10006, "bytea_ops", 17, 428),
    (1979, "int2_ops", 21, 1976),
    (1978, "int4_ops", 23, 1976),
    (3124, "int8_ops", 20, 1976),
    (10012, "float4_ops", 700, 1970),
    (3123, "float8_ops", 701, 1970),
    (3125, "numeric_ops", 1700, 1988),
    (3126, "text_ops", 25, 1994),
    (3122, "date_ops", 1082, 434),
    (10038, "time_ops", 1083, 1996),
    (3128, "timestamp_ops", 1114, 434),
    (3127, "timestamptz_ops", 1184, 434),
    (10022, "interval_ops", 1186, 1982),
    (10065, "uuid_ops", 2950, 2968),
];

pub(super) fn default_opclass(type_oid: i64) -> Option<&'static (i64, &'static str, i64, i64)> {
    BTREE_OPCLASSES.iter().find(|o| o.2 == type_oid)
}

/// The primary key of the table `name` with schema `ts`; `taken` says
/// whether a relation name is already used.
pub(super) fn primary_key(
    name: &str,
    ts: &TableSchema,
    taken: &dyn Fn(&str) -> bool,
) -> Option<PrimaryKey> {
    let (i, f) = ts
        .columns
        .iter()
        .enumerate()
        .find(|(_, f)| f.name() == ID)?;
    let (type_oid, typmod) = pg_type_of_field(f);
    let base = format!("{name}_pkey");
    let mut index = base.clone();
    let mut n = 0;
    while taken(&index) {
        n += 1;
        index = format!("{base}{n}");
    }
    let table_oid = table_oid(name);
    Some(PrimaryKey {
        table: name.to_string(),
        table_oid,
        name: index,
        oid: table_oid + INDEX_OID_OFFSET,
        attnum: i as i64 + 1,
        type_oid,
        typmod,
    })
}

/// The primary keys of all user tables, by table name.
pub(super) fn primary_keys(engine: &Engine) -> Vec<PrimaryKey> {
    let mut names = engine.table_names();
    names.sort();
    let taken = |n: &str| names.iter().any(|t| t == n);
    names
        .iter()
        .filter_map(|n| {
            engine
                .table_schema(n)
                .and_then(|ts| primary_key(n, &ts, &taken))
        })
        .collect()
}

/// The primary key whose index (or, with `constraint`, whose constraint) has this OID.
pub(super) fn primary_key_by_oid(
    engine: &Engine,
    oid: i64,
    constraint: bool,
) -> Option<PrimaryKey> {
    let index_oid = if constraint { oid - 1 } else { oid };
    let table_oid = index_oid - INDEX_OID_OFFSET;
    if table_oid < 16_384 || table_oid % 2 != 0 {
        return None;
    }
    let mut names = engine.table_names();
    names.sort();
    let table = names.iter().find(|n| self::table_oid(n) == table_oid)?;
    let taken = |n: &str| names.iter().any(|t| t == n);
    primary_key(table, &engine.table_schema(table)?, &taken)
}

/// Catalog relations: (schema, name, oid, columns as "name type, …").
pub(super) const SYSTEM_TABLES: &[(&str, &str, i64, &str)] = &[
    ("pg_catalog", "pg_namespace", 2615, "oid oid, nspname name, nspowner oid, nspacl text[]"),
    ("pg_catalog", "pg_class", 1259, "oid oid, relname name, relnamespace oid, reltype oid, reloftype oid, relowner oid, relam oid, relfilenode oid, reltablespace oid, relpages int4, reltuples float4, relallvisible int4, reltoastrelid oid, relhasindex bool, relisshared bool, relpersistence char, relkind char, relnatts int2, relchecks int2, relhasrules bool, relhastriggers bool, relhassubclass bool, relrowsecurity bool, relforcerowsecurity bool, relispopulated bool, relreplident char, relispartition bool, relrewrite oid, relfrozenxid xid, relminmxid xid, relacl text[], reloptions text[], relpartbound text"),
    ("pg_catalog", "pg_attribute", 1249, "attrelid oid, attname name, atttypid oid, attstattarget int4, attlen int2, attnum int2, attndims int4, attcacheoff int4, atttypmod int4, attbyval bool, attalign char, attstorage char, attcompression char, attnotnull bool, atthasdef bool, atthasmissing bool, attidentity char, attgenerated char, attisdropped bool, attislocal bool, attinhcount int4, attcollation oid, attacl text[], attoptions text[], attfdwoptions text[], attmissingval text"),
    ("pg_catalog", "pg_type", 1247, "oid oid, typname name, typnamespace oid, typowner oid, typlen int2, typbyval bool, typtype char, typcategory char, typispreferred bool, typisdefined bool, typdelim char, typrelid oid, typsubscript regproc, typelem oid, typarray oid, typinput regproc, typoutput regproc, typreceive regproc, typsend regproc, typmodin regproc, typmodout regproc, typanalyze regproc, typalign char, typstorage char, typnotnull bool, typbasetype oid, typtypmod int4, typndims int4, typcollation oid, typdefaultbin text, typdefault text, typacl text[]"),
    ("pg_catalog", "pg_database", 1262, "oid oid, datname name, datdba oid, encoding int4, datlocprovider char, datistemplate bool, datallowconn bool, datconnlimit int4, datfrozenxid xid, datminmxid xid, dattablespace oid, datcollate text, datctype text, daticulocale text, datcollversion text, datacl text[]"),
    ("pg_catalog", "pg_roles", 4000, "rolname name, rolsuper bool, rolinherit bool, rolcreaterole bool, rolcreatedb bool, rolcanlogin bool, rolreplication bool, rolconnlimit int4, rolpassword text, rolvaliduntil timestamptz, rolbypassrls bool, rolconfig text[], oid oid"),
    ("pg_catalog", "pg_user", 4001, "usename name, usesysid oid, usecreatedb bool, usesuper bool, userepl bool, usebypassrls bool, passwd text, valuntil timestamptz, useconfig text[]"),
    ("pg_catalog", "pg_authid", 1260, "oid oid, rolname name, rolsuper bool, rolinherit bool, rolcreaterole bool, rolcreatedb bool, rolcanlogin bool, rolreplication bool, rolbypassrls bool, rolconnlimit int4, rolpassword text, rolvaliduntil timestamptz"),
    ("pg_catalog", "pg_auth_members", 1261, "oid oid, roleid oid, member oid, grantor oid, admin_option bool"),
    ("pg_catalog", "pg_settings", 4002, "name text, setting text, unit text, category text, short_desc text, extra_desc text, context text, vartype text, source text, min_val text, max_val text, enumvals text[], boot_val text, reset_val text, sourcefile text, sourceline int4, pending_restart bool"),
    ("pg_catalog", "pg_index", 2610, "indexrelid oid, indrelid oid, indnatts int2, indnkeyatts int2, indisunique bool, indnullsnotdistinct bool, indisprimary bool, indisexclusion bool, indimmediate bool, indisclustered bool, indisvalid bool, indcheckxmin bool, indisready bool, indislive bool, indisreplident bool, indkey int2vector, indcollation oidvector, indclass oidvector, indoption int2vector, indexprs text, indpred text"),
    ("pg_catalog", "pg_indexes", 4003, "schemaname name, tablename name, indexname name, tablespace name, indexdef text"),
    ("pg_catalog", "pg_description", 2609, "objoid oid, classoid oid, objsubid int4, description text"),
    ("pg_catalog", "pg_seclabel", 3596, "objoid oid, classoid oid, objsubid int4, provider text, label text"),
    ("pg_catalog", "pg_shdescription", 2396, "objoid oid, classoid oid, description text"),
    ("pg_catalog", "pg_attrdef", 2604, "oid oid, adrelid oid, adnum int2, adbin text"),
    ("pg_catalog", "pg_constraint", 2606, "oid oid, conname name, connamespace oid, contype char, condeferrable bool, condeferred bool, convalidated bool, conrelid oid, contypid oid, conindid oid, conparentid oid, confrelid oid, confupdtype char, confdeltype char, confmatchtype char, conislocal bool, coninhcount int4, connoinherit bool, conkey int2[], confkey int2[], conpfeqop oid[], conppeqop oid[], conffeqop oid[], confdelsetcols int2[], conexclop oid[], conbin text"),
    ("pg_catalog", "pg_opclass", 2616, "oid oid, opcmethod oid, opcname name, opcnamespace oid, opcowner oid, opcfamily oid, opcintype oid, opcdefault bool, opckeytype oid"),
    ("pg_catalog", "pg_am", 2601, "oid oid, amname name, amhandler regproc, amtype char"),
    ("pg_catalog", "pg_proc", 1255, "oid oid, proname name, pronamespace oid, proowner oid, prolang oid, procost float4, prorows float4, provariadic oid, prosupport regproc, prokind char, prosecdef bool, proleakproof bool, proisstrict bool, proretset bool, provolatile char, proparallel char, pronargs int2, pronargdefaults int2, prorettype oid, proargtypes oidvector, proallargtypes oid[], proargmodes char[], proargnames text[], proargdefaults text, protrftypes oid[], prosrc text, probin text, prosqlbody text, proconfig text[], proacl text[]"),
    ("pg_catalog", "pg_tablespace", 1213, "oid oid, spcname name, spcowner oid, spcacl text[], spcoptions text[]"),
    ("pg_catalog", "pg_collation", 3456, "oid oid, collname name, collnamespace oid, collowner oid, collprovider char, collisdeterministic bool, collencoding int4, collcollate text, collctype text, colliculocale text, collversion text"),
    ("pg_catalog", "pg_enum", 3501, "oid oid, enumtypid oid, enumsortorder float4, enumlabel name"),
    ("pg_catalog", "pg_range", 3541, "rngtypid oid, rngsubtype oid, rngmultitypid oid, rngcollation oid, rngsubopc oid, rngcanonical regproc, rngsubdiff regproc"),
    ("pg_catalog", "pg_sequence", 2224, "seqrelid oid, seqtypid oid, seqstart int8, seqincrement int8, seqmax int8, seqmin int8, seqcache int8, seqcycle bool"),
    ("pg_catalog", "pg_sequences", 4004, "schemaname name, sequencename name, sequenceowner name, data_type regtype, start_value int8, min_value int8, max_value int8, increment_by int8, cycle bool, cache_size int8, last_value int8"),
    ("pg_catalog", "pg_inherits", 2611, "inhrelid oid, inhparent oid, inhseqno int4, inhdetachpending bool"),
    ("pg_catalog", "pg_trigger", 2620, "oid oid, tgrelid oid, tgparentid oid, tgname name, tgfoid oid, tgtype int2, tgenabled char, tgisinternal bool, tgconstrrelid oid, tgconstrindid oid, tgconstraint oid, tgdeferrable bool, tginitdeferred bool, tgnargs int2, tgattr int2vector, tgargs text, tgqual text, tgoldtable name, tgnewtable name"),
    ("pg_catalog", "pg_rewrite", 2618, "oid oid, rulename name, ev_class oid, ev_type char, ev_enabled char, is_instead bool, ev_qual text, ev_action text"),
    ("pg_catalog", "pg_depend", 2608, "classid oid, objid oid, objsubid int4, refclassid oid, refobjid oid, refobjsubid int4, deptype char"),
    ("pg_catalog", "pg_extension", 3079, "oid oid, extname name, extowner oid, extnamespace oid, extrelocatable bool, extversion text, extconfig oid[], extcondition text[]"),
    ("pg_catalog", "pg_language", 2612, "oid oid, lanname name, lanowner oid, lanispl bool, lanpltrusted bool, lanplcallfoid oid, laninline oid, lanvalidator oid, lanacl text[]"),
    ("pg_catalog", "pg_foreign_table", 3118, "ftrelid oid, ftserver oid, ftoptions text[]"),
    ("pg_catalog", "pg_policy", 3256, "oid oid, polname name, polrelid oid, polcmd char, polpermissive bool, polroles oid[], polqual text, polwithcheck text"),
    ("pg_catalog", "pg_statistic_ext", 3381, "oid oid, stxrelid oid, stxname name, stxnamespace oid, stxowner oid, stxstattarget int4, stxkeys int2vector, stxkind char[], stxexprs text"),
    ("pg_catalog", "pg_publication", 6104, "oid oid, pubname name, pubowner oid, puballtables bool, pubinsert bool, pubupdate bool, pubdelete bool, pubtruncate bool, pubviaroot bool"),
    ("pg_catalog", "pg_publication_namespace", 6237, "oid oid, pnpubid oid, pnnspid oid"),
    ("pg_catalog", "pg_publication_rel", 6106, "oid oid, prpubid oid, prrelid oid, prqual text, prattrs int2vector"),
    ("pg_catalog", "pg_event_trigger", 3466, "oid oid, evtname name, evtevent name, evtowner oid, evtfoid oid, evtenabled char, evttags text[]"),
    ("pg_catalog", "pg_tables", 4005, "schemaname name, tablename name, tableowner name, tablespace name, hasindexes bool, hasrules bool, hastriggers bool, rowsecurity bool"),
    ("pg_catalog", "pg_views", 4006, "schemaname name, viewname name, viewowner name, definition text"),
    ("pg_catalog", "pg_matviews", 4007, "schemaname name, matviewname name, matviewowner name, tablespace name, hasindexes bool, ispopulated bool, definition text"),
    ("pg_catalog", "pg_stat_activity", 4008, "datid oid, datname name, pid int4, usesysid oid, usename name, application_name text, client_addr text, client_hostname text, client_port int4, backend_start timestamptz, xact_start timestamptz, query_start timestamptz, state_change timestamptz, wait_event_type text, wait_event text, state text, backend_xid xid, backend_xmin xid, query text, backend_type text"),
    ("pg_catalog", "pg_timezone_names", 4009, "name text, abbrev text, utc_offset text, is_dst bool"),
    ("information_schema", "schemata", 13_001, "catalog_name name, schema_name name, schema_owner name, default_character_set_catalog name, default_character_set_schema name, default_character_set_name name, sql_path text"),
    ("information_schema", "tables", 13_002, "table_catalog name, table_schema name, table_name name, table_type text, self_referencing_column_name name, reference_generation text, user_defined_type_catalog name, user_defined_type_schema name, user_defined_type_name name, is_insertable_into text, is_typed text, commit_action text"),
    ("information_schema", "columns", 13_003, "table_catalog name, table_schema name, table_name name, column_name name, ordinal_position int4, column_default text, is_nullable text, data_type text, character_maximum_length int4, character_octet_length int4, numeric_precision int4, numeric_precision_radix int4, numeric_scale int4, datetime_precision int4, interval_type text, interval_precision int4, character_set_catalog name, character_set_schema name, character_set_name name, collation_catalog name, collation_schema name, collation_name name, domain_catalog name, domain_schema name, domain_name name, udt_catalog name, udt_schema name, udt_name name, scope_catalog name, scope_schema name, scope_name name, maximum_cardinality int4, dtd_identifier name, is_self_referencing text, is_identity text, identity_generation text, identity_start text, identity_increment text, identity_maximum text, identity_minimum text, identity_cycle text, is_generated text, generation_expression text, is_updatable text"),
    ("information_schema", "views", 13_004, "table_catalog name, table_schema name, table_name name, view_definition text, check_option text, is_updatable text, is_insertable_into text, is_trigger_updatable text, is_trigger_deletable text, is_trigger_insertable_into text"),
    ("information_schema", "table_constraints", 13_005, "constraint_catalog name, constraint_schema name, constraint_name name, table_catalog name, table_schema name, table_name name, constraint_type text, is_deferrable text, initially_deferred text, enforced text, nulls_distinct text"),
    ("information_schema", "key_column_usage", 13_006, "constraint_catalog name, constraint_schema name, constraint_name name, table_catalog name, table_schema name, table_name name, column_name name, ordinal_position int4, position_in_unique_constraint int4"),
    ("information_schema", "referential_constraints", 13_007, "constraint_catalog name, constraint_schema name, constraint_name name, unique_constraint_catalog name, unique_constraint_schema name, unique_constraint_name name, match_option text, update_rule text, delete_rule text"),
    ("information_schema", "routines", 13_008, "specific_catalog name, specific_schema name, specific_name name, routine_catalog name, routine_schema name, routine_name name, routine_type text, data_type text, type_udt_name name, routine_body text, routine_definition text, external_language text, is_deterministic text"),
    ("information_schema", "table_privileges", 13_010, "grantor name, grantee name, table_catalog name, table_schema name, table_name name, privilege_type text, is_grantable text, with_hierarchy text"),
    ("information_schema", "role_table_grants", 13_011, "grantor name, grantee name, table_catalog name, table_schema name, table_name name, privilege_type text, is_grantable text, with_hierarchy text"),
    ("information_schema", "character_sets", 13_009, "character_set_catalog name, character_set_schema name, character_set_name name, character_repertoire name, form_of_use name, default_collate_catalog name, default_collate_schema name, default_collate_name name"),
];

/// The Arrow type of a catalog column's Postgres type.
pub(super) fn arrow_of(pg: &str) -> DataType {
    match pg {
        "bool" => DataType::Boolean,
        "int2" => DataType::Int16,
        "int4" => DataType::Int32,
        "int8" => DataType::Int64,
        // `oid` goes over the wire as Postgres's `oid` (UInt32).
        "oid" | "xid" => DataType::UInt32,
        "float4" => DataType::Float32,
        "timestamptz" => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        "int2[]" | "int2vector" => list_of(DataType::Int16),
        "oid[]" | "oidvector" => list_of(DataType::UInt32),
        "text[]" | "char[]" => list_of(DataType::Utf8),
        _ => DataType::Utf8,
    }
}

pub(super) fn list_of(dt: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("item", dt, true)))
}

/// A catalog column's Postgres type oid.
pub(super) fn pg_oid_of(pg: &str) -> i64 {
    match pg {
        "int2[]" => 1005,
        "oid[]" => 1028,
        "text[]" => 1009,
        "char[]" => 1002,
        other => type_by_name(other).map(|t| t.oid).unwrap_or(25),
    }
}

pub(super) fn columns_of(spec: &str) -> Vec<(String, String)> {
    spec.split(", ")
        .map(|c| {
            let (n, t) = c.split_once(' ').expect("column spec");
            (n.to_string(), t.to_string())
        })
        .collect()
}

pub(super) fn system_schema(spec: &str) -> SchemaRef {
    Arc::new(Schema::new(
        columns_of(spec)
            .into_iter()
            .map(|(n, t)| Field::new(n, arrow_of(&t), true))
            .collect::<Vec<_>>(),
    ))
}

pub(super) fn namespace_oid(schema: &str) -> i64 {
    match schema {
        "pg_catalog" => PG_CATALOG_OID,
        "information_schema" => INFORMATION_SCHEMA_OID,
        _ => PUBLIC_OID,
    }
}

/// A relation as the catalogs list it.
pub(super) struct Relation {
    pub(super) oid: i64,
    pub(super) schema: &'static str,
    pub(super) name: String,
    pub(super) kind: &'static str,
    /// (name, pg type oid, typmod, attnum, not null)
    pub(super) columns: Vec<(String, i64, i32, i64, bool)>,
    /// For an index: the table it belongs to.
    pub(super) table: Option<String>,
}

/// Everything the catalog tables are built from, read from the engine once per scan.
pub(super) struct Snapshot {
    pub(super) relations: Vec<Relation>,
    /// Live entities per user table (`reltuples`).
    pub(super) alive: BTreeMap<String, usize>,
    /// One per user table, on `_id`.
    pub(super) keys: Vec<PrimaryKey>,
    pub(super) functions: Arc<Vec<String>>,
    /// Roles and grants (crate::access), as last read.
    pub(super) access: Arc<crate::access::AccessState>,
    /// The users the server was started with (superusers, not stored).
    pub(super) bootstrap: Vec<String>,
}

pub(super) fn user_relation(name: &str, ts: &TableSchema) -> Relation {
    let mut columns = Vec::new();
    for (i, f) in ts.columns.iter().enumerate() {
        let (oid, typmod) = pg_type_of_field(f);
        columns.push((f.name().clone(), oid, typmod, i as i64 + 1, f.name() == ID));
    }
    for (i, c) in strata_storage::schema::TEMPORAL_COLUMNS.iter().enumerate() {
        columns.push((c.to_string(), 1184, -1, -(i as i64) - 1, false));
    }
    Relation {
        oid: table_oid(name),
        schema: "public",
        name: name.to_string(),
        kind: "r",
        columns,
        table: None,
    }
}

impl Snapshot {
    pub(super) fn take(
        engine: &Engine,
        functions: Arc<Vec<String>>,
        access: &crate::access::Access,
    ) -> Snapshot {
        let mut names = engine.table_names();
        names.sort();
        let user_tables: Vec<(String, TableSchema)> = names
            .into_iter()
            .filter_map(|n| engine.table_schema(&n).map(|s| (n, s)))
            .collect();
        let mut relations: Vec<Relation> = user_tables
            .iter()
            .map(|(n, ts)| user_relation(n, ts))
            .collect();
        let taken = |n: &str| user_tables.iter().any(|(t, _)| t == n);
        let keys: Vec<PrimaryKey> = user_tables
            .iter()
            .filter_map(|(n, ts)| primary_key(n, ts, &taken))
            .collect();
        for k in &keys {
            relations.push(Relation {
                oid: k.oid,
                schema: "public",
                name: k.name.clone(),
                kind: "i",
                columns: vec![(ID.to_string(), k.type_oid, k.typmod, 1, true)],
                table: Some(k.table.clone()),
            });
        }
        for (schema, name, oid, spec) in SYSTEM_TABLES {
            relations.push(Relation {
                oid: *oid,
                schema,
                name: name.to_string(),
                kind: if *schema == "pg_catalog" && !name.ends_with('s') || *name == "pg_class" {
                    "r"
                } else {
                    "v"
                },
                columns: columns_of(spec)
                    .into_iter()
                    .enumerate()
                    .map(|(i, (n, t))| (n, pg_oid_of(&t), -1, i as i64 + 1, false))
                    .collect(),
                table: None,
            });
        }
        let alive = user_tables
            .iter()
            .filter_map(|(n, _)| engine.table_stats(n).map(|(a, _)| (n.clone(), a)))
            .collect();
        Snapshot {
            relations,
            alive,
            keys,
            functions,
            access: access.cached(),
            bootstrap: access.bootstrap_users(),
        }
    }

    /// Every role `pg_roles` lists: the built-in owner, the users the
    /// server was started with (superusers), then the stored roles.
    pub(super) fn roles(&self) -> Vec<crate::access::RoleRow> {
        let mut out = vec![crate::access::RoleRow {
            name: OWNER.into(),
            superuser: true,
            login: true,
            createrole: true,
            password: None,
        }];
        for u in &self.bootstrap {
            if u != OWNER && !self.access.roles.contains_key(u) {
                out.push(crate::access::RoleRow {
                    name: u.clone(),
                    superuser: true,
                    login: true,
                    createrole: true,
                    password: None,
                });
            }
        }
        out.extend(
            self.access
                .roles
                .values()
                .filter(|r| r.name != OWNER)
                .cloned(),
        );
        out
    }
}

/// Is this relation on the search path (`public`, then `pg_catalog`)?
pub(super) fn visible(schema: &str) -> bool {
    schema == "public" || schema == "pg_catalog"
}

/// The relation an oid names, for `::regclass` output and visibility.
pub(super) fn relation_by_oid(engine: &Engine, oid: i64) -> Option<(String, &'static str)> {
    if let Some((s, n, _, _)) = SYSTEM_TABLES.iter().find(|(_, _, o, _)| *o == oid) {
        return Some((n.to_string(), s));
    }
    engine
        .table_names()
        .into_iter()
        .find(|n| table_oid(n) == oid)
        .map(|n| (n, "public"))
        .or_else(|| primary_key_by_oid(engine, oid, false).map(|k| (k.name, "public")))
}

/// A user table's or primary-key index's OID by its name.
pub(super) fn public_oid_by_name(engine: &Engine, name: &str) -> Option<i64> {
    if engine.table_schema(name).is_some() {
        return Some(table_oid(name));
    }
    primary_keys(engine)
        .into_iter()
        .find(|k| k.name == name)
        .map(|k| k.oid)
}

/// Split a possibly qualified, possibly quoted relation name.
pub(super) fn split_name(s: &str) -> (Option<String>, String) {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = s.trim().chars().peekable();
    let mut was_quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            '"' => {
                quoted = !quoted;
                was_quoted = true;
            }
            '.' if !quoted => {
                parts.push(if was_quoted {
                    cur.clone()
                } else {
                    crate::ident::fold(&cur)
                });
                cur.clear();
                was_quoted = false;
            }
            c => cur.push(c),
        }
    }
    parts.push(if was_quoted {
        cur
    } else {
        crate::ident::fold(&cur)
    });
    let name = parts.pop().unwrap_or_default();
    (parts.pop(), name)
}

/// The oid of a relation name as `::regclass` reads it.
pub(super) fn relation_oid_by_name(engine: &Engine, s: &str) -> Option<i64> {
    let (schema, name) = split_name(s);
    let sys = |schemas: &[&str]| {
        SYSTEM_TABLES
            .iter()
            .find(|(sc, n, _, _)| schemas.contains(sc) && *n == name)
            .map(|(_, _, o, _)| *o)
    };
    match schema.as_deref() {
        Some("public") => public_oid_by_name(engine, &name),
        Some(s @ ("pg_catalog" | "information_schema")) => sys(&[s]),
        Some(_) => None,
        None => sys(&["pg_catalog"]).or_else(|| public_oid_by_name(engine, &name)),
    }
}
