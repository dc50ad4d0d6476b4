-- Catalog queries GUI/BI tools send when they connect and browse a
-- database, written down from DBeaver, Metabase and Grafana's Postgres
-- support. (DBeaver's `SELECT x.oid, x.*` form is sent here as `x.*`:
-- DataFusion rejects the duplicate column name.) Run by tests/pgwire_clients.rs through tokio-postgres (extended
-- and simple protocol); `-- expect: N+` asks for at least N rows.
-- The test creates table `orders` first.

-- tool: DBeaver (connect)
-- expect: 1+
SELECT current_schema(), session_user;
-- expect: 1+
SELECT version();
-- expect: 1+
SELECT db.* FROM pg_catalog.pg_database db WHERE datallowconn AND NOT datistemplate ORDER BY db.datname;
-- expect: 1+
SELECT n.*, d.description FROM pg_catalog.pg_namespace n LEFT OUTER JOIN pg_catalog.pg_description d ON d.objoid = n.oid AND d.objsubid = 0 AND d.classoid = 'pg_namespace'::regclass ORDER BY nspname;
-- expect: 1+
SELECT t.*, c.relkind, format_type(nullif(t.typbasetype, 0), t.typtypmod) AS base_type_name, d.description FROM pg_catalog.pg_type t LEFT OUTER JOIN pg_catalog.pg_class c ON c.oid = t.typrelid LEFT OUTER JOIN pg_catalog.pg_description d ON t.oid = d.objoid WHERE t.typname IS NOT NULL AND (c.relkind IS NULL OR c.relkind = 'c');
SELECT * FROM pg_catalog.pg_settings WHERE name = 'standard_conforming_strings';
-- expect: 1+
SELECT a.oid, a.rolname FROM pg_catalog.pg_roles a ORDER BY a.rolname;
SELECT e.oid, e.extname, e.extversion FROM pg_catalog.pg_extension e;
-- tool: DBeaver (browse tables of public)
-- expect: 1+
SELECT c.*, d.description FROM pg_catalog.pg_class c LEFT OUTER JOIN pg_catalog.pg_description d ON d.objoid = c.oid AND d.objsubid = 0 AND d.classoid = 'pg_class'::regclass WHERE c.relnamespace = 2200 AND c.relkind NOT IN ('i', 'I', 'c');
-- expect: 5+
SELECT c.relname, a.*, pg_catalog.pg_get_expr(ad.adbin, ad.adrelid, true) AS def_value, dsc.description FROM pg_catalog.pg_attribute a INNER JOIN pg_catalog.pg_class c ON (a.attrelid = c.oid) LEFT OUTER JOIN pg_catalog.pg_attrdef ad ON (a.attrelid = ad.adrelid AND a.attnum = ad.adnum) LEFT OUTER JOIN pg_catalog.pg_description dsc ON (c.oid = dsc.objoid AND a.attnum = dsc.objsubid) WHERE NOT a.attisdropped AND c.relkind NOT IN ('i', 'I', 'c') AND c.relname = 'orders' AND a.attnum > 0 ORDER BY a.attnum;
-- expect: 1+
SELECT i.*, c.relnamespace FROM pg_catalog.pg_index i INNER JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = 'orders'::regclass;
-- expect: 1+
SELECT c.*, t.relname AS tabrelname, rt.relnamespace AS refnamespace, d.description FROM pg_catalog.pg_constraint c INNER JOIN pg_catalog.pg_class t ON t.oid = c.conrelid LEFT OUTER JOIN pg_catalog.pg_class rt ON rt.oid = c.confrelid LEFT OUTER JOIN pg_catalog.pg_description d ON d.objoid = c.oid AND d.objsubid = 0 AND d.classoid = 'pg_constraint'::regclass WHERE t.relname = 'orders' ORDER BY c.oid;
SELECT t.oid, t.tgname, t.tgrelid FROM pg_catalog.pg_trigger t WHERE t.tgrelid = 'orders'::regclass;
SELECT pg_catalog.pg_get_viewdef('orders'::regclass, true);
-- expect: 1+
SELECT c.relname, c.reltuples, pg_catalog.pg_total_relation_size(c.oid) AS total_size FROM pg_catalog.pg_class c WHERE c.relname = 'orders';
-- tool: Metabase (sync)
-- expect: 1+
SELECT nspname AS schema FROM pg_catalog.pg_namespace WHERE nspname NOT IN ('information_schema', 'pg_catalog') AND nspname NOT LIKE 'pg_%';
-- expect: 1+
SELECT n.nspname AS schema, c.relname AS name, CASE c.relkind WHEN 'r' THEN 'TABLE' WHEN 'p' THEN 'PARTITIONED TABLE' WHEN 'v' THEN 'VIEW' WHEN 'f' THEN 'FOREIGN TABLE' WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE NULL END AS type, d.description AS description, stat.n_live_tup AS estimated_row_count FROM pg_catalog.pg_class c INNER JOIN pg_catalog.pg_namespace n ON c.relnamespace = n.oid LEFT JOIN pg_catalog.pg_description d ON c.oid = d.objoid AND d.objsubid = 0 LEFT JOIN (SELECT c2.oid AS relid, CAST(c2.reltuples AS BIGINT) AS n_live_tup FROM pg_catalog.pg_class c2) stat ON c.oid = stat.relid WHERE c.relnamespace = n.oid AND c.relkind IN ('r', 'p', 'v', 'f', 'm') AND n.nspname !~ '^information_schema$' AND n.nspname !~ '^pg_' AND n.nspname = 'public' AND has_table_privilege(c.oid, 'select');
-- expect: 5+
SELECT c.column_name AS name, c.udt_name AS database_type, c.ordinal_position - 1 AS database_position, c.table_schema AS table_schema, c.table_name AS table_name, CASE WHEN c.is_nullable = 'NO' THEN true ELSE false END AS database_required, CASE WHEN c.column_default IS NOT NULL OR c.is_identity = 'YES' THEN true ELSE false END AS database_is_auto_increment FROM information_schema.columns c WHERE c.table_schema = 'public' AND c.table_name = 'orders' ORDER BY c.ordinal_position;
SELECT tc.table_schema, tc.table_name, kcu.column_name FROM information_schema.table_constraints tc JOIN information_schema.key_column_usage kcu ON tc.constraint_name = kcu.constraint_name AND tc.table_schema = kcu.table_schema WHERE tc.constraint_type = 'PRIMARY KEY' AND tc.table_name = 'orders';
-- expect: 1+
SELECT has_schema_privilege(current_user, 'public', 'USAGE'), has_table_privilege('orders', 'SELECT');
-- expect: 1+
SHOW TIMEZONE;
SELECT e.enumtypid, t.typname, e.enumlabel FROM pg_catalog.pg_enum e JOIN pg_catalog.pg_type t ON t.oid = e.enumtypid ORDER BY e.enumsortorder;
-- expect: 1+
SELECT oid, typname FROM pg_catalog.pg_type WHERE typname IN ('citext', 'json', 'jsonb', 'uuid', 'hstore');
-- tool: Grafana (query editor)
-- (Grafana's table list, which expands search_path with generate_series over
-- string_to_array in FROM, is not covered: DataFusion has no such table function.)
-- expect: 5+
SELECT quote_ident(column_name) AS column, data_type AS type FROM information_schema.columns WHERE table_name = 'orders' ORDER BY ordinal_position;
-- expect: 1+
SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'orders' AND data_type IN ('timestamp without time zone', 'timestamp with time zone', 'bigint', 'integer', 'double precision', 'real', 'numeric');
-- expect: 1+
SELECT current_setting('server_version_num')::int / 100 AS version;
-- expect: 1+
SELECT table_schema, table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name;
-- tool: generic JDBC/ODBC tools
-- expect: 1+
SELECT typname, oid, typarray FROM pg_catalog.pg_type WHERE typname = 'int4';
-- expect: 1+
SELECT 'orders'::regclass::oid = c.oid AS same FROM pg_catalog.pg_class c WHERE c.relname = 'orders';
-- expect: 1+
SELECT schema_name FROM information_schema.schemata ORDER BY 1;
-- expect: 1+
SELECT pg_catalog.pg_encoding_to_char(encoding) FROM pg_catalog.pg_database WHERE datname = current_database();

-- tool: DBeaver (table properties: indexes and constraints)
-- expect: 1+
SELECT i.*, i.indkey AS keys, c.relname, c.relnamespace, c.relam, c.reltablespace, tc.relname AS tabrelname, dsc.description, pg_catalog.pg_get_expr(i.indpred, i.indrelid) AS pred_expr, pg_catalog.pg_get_expr(i.indexprs, i.indrelid, true) AS expr, pg_catalog.pg_relation_size(i.indexrelid) AS index_rel_size FROM pg_catalog.pg_index i INNER JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid INNER JOIN pg_catalog.pg_class tc ON tc.oid = i.indrelid LEFT OUTER JOIN pg_catalog.pg_description dsc ON i.indexrelid = dsc.objoid WHERE i.indrelid = 'orders'::regclass ORDER BY tabrelname, c.relname;
-- expect: 1+
SELECT c.oid AS con_oid, c.conname, c.contype, c.conkey, t.relname AS tabrelname, rt.relnamespace AS refnamespace, d.description, CASE WHEN c.contype = 'c' THEN substring(pg_catalog.pg_get_constraintdef(c.oid), 7) ELSE NULL END AS consrc_copy FROM pg_catalog.pg_constraint c INNER JOIN pg_catalog.pg_class t ON t.oid = c.conrelid LEFT OUTER JOIN pg_catalog.pg_class rt ON rt.oid = c.confrelid LEFT OUTER JOIN pg_catalog.pg_description d ON d.objoid = c.oid AND d.objsubid = 0 AND d.classoid = 'pg_constraint'::regclass WHERE c.conrelid = 'orders'::regclass ORDER BY c.oid;
-- expect: 1+
SELECT pg_catalog.pg_get_indexdef(i.indexrelid), pg_catalog.pg_get_constraintdef(c.oid, true) FROM pg_catalog.pg_index i JOIN pg_catalog.pg_constraint c ON c.conindid = i.indexrelid WHERE i.indrelid = 'orders'::regclass;
-- expect: 1+
SELECT schemaname, tablename, indexname, indexdef FROM pg_catalog.pg_indexes WHERE schemaname = 'public' AND tablename = 'orders';

-- tool: information_schema key lookup (Grafana's and ORMs' table browsers)
-- expect: 1+
SELECT kcu.column_name, tc.constraint_name FROM information_schema.table_constraints tc JOIN information_schema.key_column_usage kcu ON tc.constraint_name = kcu.constraint_name AND tc.table_schema = kcu.table_schema AND tc.table_name = kcu.table_name WHERE tc.constraint_type = 'PRIMARY KEY' AND tc.table_schema = 'public' AND tc.table_name = 'orders' ORDER BY kcu.ordinal_position;
