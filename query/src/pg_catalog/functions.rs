//! The catalog functions clients call (`format_type`, `pg_get_indexdef`, `has_table_privilege`, …).

use super::*;

pub(super) type Body = dyn Fn(&[ScalarValue]) -> DfResult<ScalarValue> + Send + Sync;

/// A catalog function evaluated value by value (catalogs are small).
pub(super) struct PgFn {
    pub(super) name: String,
    pub(super) signature: Signature,
    pub(super) ret: fn(&[DataType]) -> DataType,
    pub(super) body: Arc<Body>,
}

impl std::fmt::Debug for PgFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgFn({})", self.name)
    }
}
impl PartialEq for PgFn {
    fn eq(&self, o: &Self) -> bool {
        self.name == o.name
    }
}
impl Eq for PgFn {}
impl std::hash::Hash for PgFn {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.name.hash(h)
    }
}

impl ScalarUDFImpl for PgFn {
    fn name(&self) -> &str {
        &self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        Ok((self.ret)(arg_types))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let ret = args.return_type().clone();
        let fix = |v: ScalarValue| -> DfResult<ScalarValue> {
            if v.data_type() == ret {
                Ok(v)
            } else if v.is_null() {
                ScalarValue::try_from(&ret)
            } else {
                v.cast_to(&ret)
            }
        };
        let arrays: Vec<Option<ArrayRef>> = args
            .args
            .iter()
            .map(|a| match a {
                ColumnarValue::Array(a) => Some(a.clone()),
                ColumnarValue::Scalar(_) => None,
            })
            .collect();
        if arrays.iter().all(Option::is_none) {
            let vals: Vec<ScalarValue> = args
                .args
                .iter()
                .map(|a| match a {
                    ColumnarValue::Scalar(s) => s.clone(),
                    ColumnarValue::Array(_) => unreachable!(),
                })
                .collect();
            return Ok(ColumnarValue::Scalar(fix((self.body)(&vals)?)?));
        }
        let mut out = Vec::with_capacity(args.number_rows);
        for row in 0..args.number_rows {
            let vals = args
                .args
                .iter()
                .map(|a| match a {
                    ColumnarValue::Scalar(s) => Ok(s.clone()),
                    ColumnarValue::Array(a) => ScalarValue::try_from_array(a, row),
                })
                .collect::<DfResult<Vec<_>>>()?;
            out.push(fix((self.body)(&vals)?)?);
        }
        if out.is_empty() {
            return Ok(ColumnarValue::Array(
                datafusion::arrow::array::new_empty_array(&ret),
            ));
        }
        Ok(ColumnarValue::Array(ScalarValue::iter_to_array(out)?))
    }
}

/// `__pg_expandarray(list)`: the list of `{x: element, n: position}`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct ExpandArray {
    pub(super) signature: Signature,
}

pub(super) fn expand_fields(elem: &DataType) -> datafusion::arrow::datatypes::Fields {
    vec![
        Field::new("x", elem.clone(), true),
        Field::new("n", DataType::Int32, false),
    ]
    .into()
}

impl ScalarUDFImpl for ExpandArray {
    fn name(&self) -> &str {
        "__pg_expandarray"
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        match arg_types.first() {
            Some(DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _)) => {
                Ok(list_of(DataType::Struct(expand_fields(f.data_type()))))
            }
            Some(DataType::Null) => Ok(list_of(DataType::Struct(expand_fields(&DataType::Int32)))),
            other => plan_err!(
                "_pg_expandarray takes an array, not {}",
                other.map(|t| t.to_string()).unwrap_or_default()
            ),
        }
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        use datafusion::arrow::array::{Int32Array, ListArray, StructArray};
        use datafusion::arrow::buffer::OffsetBuffer;
        let DataType::List(item) = args.return_type().clone() else {
            return exec_err!("_pg_expandarray: unexpected return type");
        };
        let DataType::Struct(fields) = item.data_type().clone() else {
            return exec_err!("_pg_expandarray: unexpected return type");
        };
        let elem = fields[0].data_type().clone();
        let arr = args.args[0].to_array(args.number_rows)?;
        let arr = if arr.data_type() == &DataType::Null {
            datafusion::arrow::array::new_null_array(&list_of(elem.clone()), arr.len())
        } else {
            datafusion::arrow::compute::cast(&arr, &list_of(elem.clone()))?
        };
        let list = arr.as_any().downcast_ref::<ListArray>().ok_or_else(|| {
            datafusion::error::DataFusionError::Execution("_pg_expandarray takes an array".into())
        })?;
        let mut lens = Vec::with_capacity(list.len());
        let mut values: Vec<ArrayRef> = Vec::new();
        let mut positions: Vec<i32> = Vec::new();
        for i in 0..list.len() {
            if list.is_null(i) {
                lens.push(0);
                continue;
            }
            let v = list.value(i);
            lens.push(v.len());
            positions.extend(1..=v.len() as i32);
            values.push(v);
        }
        let refs: Vec<&dyn Array> = values.iter().map(|v| v.as_ref()).collect();
        let xs = if refs.is_empty() {
            datafusion::arrow::array::new_empty_array(&elem)
        } else {
            datafusion::arrow::compute::concat(&refs)?
        };
        let structs = StructArray::try_new(
            fields,
            vec![xs, Arc::new(Int32Array::from(positions))],
            None,
        )?;
        let out = ListArray::try_new(
            item,
            OffsetBuffer::from_lengths(lens),
            Arc::new(structs),
            list.nulls().cloned(),
        )?;
        let out: ArrayRef = Arc::new(out);
        Ok(match &args.args[0] {
            ColumnarValue::Scalar(_) => {
                ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
            }
            ColumnarValue::Array(_) => ColumnarValue::Array(out),
        })
    }
}

pub(super) fn int_arg(v: Option<&ScalarValue>) -> Option<i64> {
    let v = v?;
    if v.is_null() {
        return None;
    }
    match v.cast_to(&DataType::Int64).ok()? {
        ScalarValue::Int64(i) => i,
        _ => None,
    }
}

pub(super) fn str_arg(v: Option<&ScalarValue>) -> Option<String> {
    let v = v?;
    if v.is_null() {
        return None;
    }
    match v.cast_to(&DataType::Utf8).ok()? {
        ScalarValue::Utf8(s) => s,
        _ => None,
    }
}

pub(super) fn is_string(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Null
    )
}

pub(super) fn text(v: Option<String>) -> ScalarValue {
    ScalarValue::Utf8(v)
}

pub(super) fn oid(v: Option<i64>) -> ScalarValue {
    ScalarValue::Int64(v)
}

pub(super) fn ret_text(_: &[DataType]) -> DataType {
    DataType::Utf8
}
pub(super) fn ret_bool(_: &[DataType]) -> DataType {
    DataType::Boolean
}
pub(super) fn ret_i64(_: &[DataType]) -> DataType {
    DataType::Int64
}
pub(super) fn ret_i32(_: &[DataType]) -> DataType {
    DataType::Int32
}
/// `x::regclass` and friends: a name gives an oid, an oid gives a name.
pub(super) fn ret_reg(args: &[DataType]) -> DataType {
    if args.first().is_some_and(is_string) {
        DataType::Int64
    } else {
        DataType::Utf8
    }
}
pub(super) fn ret_text_list(_: &[DataType]) -> DataType {
    list_of(DataType::Utf8)
}
pub(super) fn ret_timestamptz(_: &[DataType]) -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

pub(super) fn quote_ident(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !matches!(
            s,
            "all"
                | "and"
                | "any"
                | "array"
                | "as"
                | "asc"
                | "case"
                | "cast"
                | "check"
                | "column"
                | "constraint"
                | "create"
                | "default"
                | "desc"
                | "distinct"
                | "do"
                | "else"
                | "end"
                | "false"
                | "for"
                | "foreign"
                | "from"
                | "grant"
                | "group"
                | "having"
                | "in"
                | "into"
                | "is"
                | "join"
                | "limit"
                | "not"
                | "null"
                | "offset"
                | "on"
                | "or"
                | "order"
                | "primary"
                | "references"
                | "select"
                | "table"
                | "then"
                | "to"
                | "true"
                | "union"
                | "unique"
                | "user"
                | "using"
                | "when"
                | "where"
                | "with"
        );
    if plain {
        s.to_string()
    } else {
        format!("\"{}\"", s.replace('"', "\"\""))
    }
}

pub(super) fn json_value(v: &ScalarValue) -> String {
    if v.is_null() {
        return "null".into();
    }
    match v {
        ScalarValue::Boolean(Some(b)) => b.to_string(),
        ScalarValue::Int8(_)
        | ScalarValue::Int16(_)
        | ScalarValue::Int32(_)
        | ScalarValue::Int64(_)
        | ScalarValue::UInt8(_)
        | ScalarValue::UInt16(_)
        | ScalarValue::UInt32(_)
        | ScalarValue::UInt64(_)
        | ScalarValue::Float32(_)
        | ScalarValue::Float64(_)
        | ScalarValue::Decimal128(..) => v.to_string(),
        other => {
            let s = str_arg(Some(other)).unwrap_or_default();
            let mut out = String::from("\"");
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                    c => out.push(c),
                }
            }
            out.push('"');
            out
        }
    }
}

pub(super) fn list_len(v: &ScalarValue) -> Option<usize> {
    match v {
        ScalarValue::List(a) if !a.is_null(0) => Some(a.value(0).len()),
        ScalarValue::LargeList(a) if !a.is_null(0) => Some(a.value(0).len()),
        ScalarValue::FixedSizeList(a) if !a.is_null(0) => Some(a.value(0).len()),
        _ => None,
    }
}

pub(super) fn start_time() -> i64 {
    static T: OnceLock<i64> = OnceLock::new();
    *T.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0)
    })
}

/// Add the catalog functions to a session state.
pub fn register_functions(
    state: &mut SessionState,
    engine: &Arc<Engine>,
    access: &Arc<crate::access::Access>,
    endpoints: &crate::contract::SharedEndpoints,
) -> DfResult<()> {
    start_time();
    let sig = Signature::one_of(
        vec![TypeSignature::Nullary, TypeSignature::VariadicAny],
        Volatility::Stable,
    );
    let mut add =
        |names: &[&str], ret: fn(&[DataType]) -> DataType, body: Arc<Body>| -> DfResult<()> {
            for n in names {
                state.register_udf(Arc::new(ScalarUDF::new_from_impl(PgFn {
                    name: n.to_string(),
                    signature: sig.clone(),
                    ret,
                    body: body.clone(),
                })))?;
            }
            Ok(())
        };
    let e = engine.clone();
    let regclass_body = move |nullable: bool| -> Arc<Body> {
        let e = e.clone();
        Arc::new(move |a: &[ScalarValue]| {
            let Some(v) = a.first().filter(|v| !v.is_null()) else {
                return Ok(ScalarValue::Null);
            };
            if is_string(&v.data_type()) {
                let name = str_arg(Some(v)).unwrap_or_default();
                if let Ok(n) = name.trim().parse::<i64>() {
                    return Ok(oid(Some(n)));
                }
                match relation_oid_by_name(&e, &name) {
                    Some(o) => Ok(oid(Some(o))),
                    None if nullable => Ok(oid(None)),
                    None => plan_err!("relation \"{name}\" does not exist"),
                }
            } else {
                let o = int_arg(Some(v)).unwrap_or(0);
                Ok(text(Some(match relation_by_oid(&e, o) {
                    Some((n, schema)) if visible(schema) => quote_ident(&n),
                    Some((n, schema)) => format!("{schema}.{}", quote_ident(&n)),
                    None => o.to_string(),
                })))
            }
        })
    };
    add(&["__pg_regclass"], ret_reg, regclass_body(false))?;
    add(&["to_regclass"], ret_i64, regclass_body(true))?;
    let regtype_body = |nullable: bool| -> Arc<Body> {
        Arc::new(move |a: &[ScalarValue]| {
            let Some(v) = a.first().filter(|v| !v.is_null()) else {
                return Ok(ScalarValue::Null);
            };
            if is_string(&v.data_type()) {
                let name = str_arg(Some(v)).unwrap_or_default();
                if let Ok(n) = name.trim().parse::<i64>() {
                    return Ok(oid(Some(n)));
                }
                match type_oid_by_name(&name) {
                    Some(o) => Ok(oid(Some(o))),
                    None if nullable => Ok(oid(None)),
                    None => plan_err!("type \"{name}\" does not exist"),
                }
            } else {
                let o = int_arg(Some(v)).unwrap_or(0);
                Ok(text(Some(
                    format_type(o, None).unwrap_or_else(|| o.to_string()),
                )))
            }
        })
    };
    add(&["__pg_regtype"], ret_reg, regtype_body(false))?;
    add(&["to_regtype"], ret_i64, regtype_body(true))?;
    add(
        &["__pg_regnamespace"],
        ret_reg,
        Arc::new(|a: &[ScalarValue]| {
            let Some(v) = a.first().filter(|v| !v.is_null()) else {
                return Ok(ScalarValue::Null);
            };
            const NS: &[(i64, &str)] = &[
                (PG_CATALOG_OID, "pg_catalog"),
                (PUBLIC_OID, "public"),
                (INFORMATION_SCHEMA_OID, "information_schema"),
                (PG_TOAST_OID, "pg_toast"),
            ];
            if is_string(&v.data_type()) {
                let name = str_arg(Some(v)).unwrap_or_default();
                match NS.iter().find(|(_, n)| *n == name.trim_matches('"')) {
                    Some((o, _)) => Ok(oid(Some(*o))),
                    None => plan_err!("schema \"{name}\" does not exist"),
                }
            } else {
                let o = int_arg(Some(v)).unwrap_or(0);
                Ok(text(Some(
                    NS.iter()
                        .find(|(x, _)| *x == o)
                        .map(|(_, n)| n.to_string())
                        .unwrap_or_else(|| o.to_string()),
                )))
            }
        }),
    )?;
    add(
        &["__pg_regrole"],
        ret_reg,
        Arc::new(|a: &[ScalarValue]| {
            let Some(v) = a.first().filter(|v| !v.is_null()) else {
                return Ok(ScalarValue::Null);
            };
            if is_string(&v.data_type()) {
                let name = str_arg(Some(v)).unwrap_or_default();
                if name.trim_matches('"') == OWNER {
                    Ok(oid(Some(OWNER_OID)))
                } else {
                    plan_err!("role \"{name}\" does not exist")
                }
            } else {
                let o = int_arg(Some(v)).unwrap_or(0);
                Ok(text(Some(if o == OWNER_OID {
                    OWNER.to_string()
                } else {
                    o.to_string()
                })))
            }
        }),
    )?;
    add(
        &["__pg_regproc"],
        ret_text,
        Arc::new(|a: &[ScalarValue]| {
            let Some(v) = a.first().filter(|v| !v.is_null()) else {
                return Ok(ScalarValue::Null);
            };
            if is_string(&v.data_type()) {
                // `regproc` columns (`typinput`, …) hold function names, so
                // `'pg_catalog.array_in'::regproc` is the bare name.
                let name = str_arg(Some(v)).unwrap_or_default();
                let bare = name.split('(').next().unwrap_or("").trim();
                let bare = bare.strip_prefix("pg_catalog.").unwrap_or(bare);
                Ok(text(Some(bare.to_string())))
            } else {
                let o = int_arg(Some(v)).unwrap_or(0);
                Ok(text(Some(if o == 0 { "-".into() } else { o.to_string() })))
            }
        }),
    )?;
    add(&["pg_get_userbyid"], ret_text, {
        let access = access.clone();
        Arc::new(move |a: &[ScalarValue]| {
            Ok(text(int_arg(a.first()).map(|o| {
                if o == OWNER_OID {
                    return OWNER.to_string();
                }
                let state = access.cached();
                state
                    .roles
                    .keys()
                    .cloned()
                    .chain(access.bootstrap_users())
                    .find(|n| role_oid(n) == o)
                    .unwrap_or_else(|| format!("unknown (OID={o})"))
            })))
        })
    })?;
    add(
        &["format_type"],
        ret_text,
        Arc::new(|a: &[ScalarValue]| {
            let Some(o) = int_arg(a.first()) else {
                return Ok(text(None));
            };
            let typmod = int_arg(a.get(1));
            Ok(text(Some(
                format_type(o, typmod).unwrap_or_else(|| "???".into()),
            )))
        }),
    )?;
    let e = engine.clone();
    add(
        &["pg_table_is_visible"],
        ret_bool,
        Arc::new(move |a: &[ScalarValue]| {
            Ok(ScalarValue::Boolean(int_arg(a.first()).map(|o| {
                relation_by_oid(&e, o).is_some_and(|(_, schema)| visible(schema))
            })))
        }),
    )?;
    {
        // has_table_privilege([user,] table, privilege): the session puts its
        // user first (Session::plan); without one (the embedded API's owner)
        // every privilege is held. The table is a name or an oid; the
        // privilege a list ("SELECT, INSERT"): true if any is held.
        let (e, access) = (engine.clone(), access.clone());
        add(
            &["has_table_privilege"],
            ret_bool,
            Arc::new(move |a: &[ScalarValue]| {
                if a.iter().any(|v| v.is_null()) || a.len() < 2 {
                    return Ok(ScalarValue::Boolean(None));
                }
                let (user, table, privs) = match a {
                    [u, t, p] => (str_arg(Some(u)), t, p),
                    [t, p] => (None, t, p),
                    _ => return Ok(ScalarValue::Boolean(None)),
                };
                let table = match int_arg(Some(table)) {
                    Some(oid)
                        if !matches!(
                            table,
                            ScalarValue::Utf8(_)
                                | ScalarValue::LargeUtf8(_)
                                | ScalarValue::Utf8View(_)
                        ) =>
                    {
                        relation_by_oid(&e, oid).map(|(n, _)| n)
                    }
                    _ => str_arg(Some(table)).map(|t| split_name(&t).1),
                };
                let Some(table) = table else {
                    return exec_err!("relation does not exist");
                };
                let privs = str_arg(Some(privs)).unwrap_or_default();
                let mut wanted = Vec::new();
                for p in privs.split(',') {
                    let p = p.trim().to_ascii_uppercase();
                    let p = p.trim_end_matches(" WITH GRANT OPTION").trim();
                    match crate::access::Privilege::from_name(p) {
                        Some(p) => wanted.push(p),
                        None if matches!(p, "TRUNCATE" | "REFERENCES" | "TRIGGER" | "MAINTAIN") => {
                        }
                        None => return exec_err!("unrecognized privilege type: \"{p}\""),
                    }
                }
                let Some(user) = user else {
                    return Ok(ScalarValue::Boolean(Some(true)));
                };
                Ok(ScalarValue::Boolean(Some(
                    wanted.iter().any(|p| access.allows(&user, &table, *p)),
                )))
            }),
        )?;
    }
    let always_true: Arc<Body> = Arc::new(|a: &[ScalarValue]| {
        Ok(ScalarValue::Boolean(if a.iter().any(|v| v.is_null()) {
            None
        } else {
            Some(true)
        }))
    });
    add(
        &[
            "pg_type_is_visible",
            "pg_function_is_visible",
            "pg_collation_is_visible",
            "pg_conversion_is_visible",
            "pg_opclass_is_visible",
            "pg_operator_is_visible",
            "pg_ts_config_is_visible",
            "has_schema_privilege",
            "has_database_privilege",
            "has_column_privilege",
            "has_any_column_privilege",
            "has_function_privilege",
            "has_sequence_privilege",
            "has_type_privilege",
            "pg_has_role",
        ],
        ret_bool,
        always_true,
    )?;
    add(
        &["pg_relation_is_publishable"],
        ret_bool,
        Arc::new(|a: &[ScalarValue]| {
            Ok(ScalarValue::Boolean(
                a.first().filter(|v| !v.is_null()).map(|_| false),
            ))
        }),
    )?;
    // Strata keeps no comments, defaults or generated sequences: these say so.
    add(
        &[
            "shobj_description",
            "pg_get_serial_sequence",
            "pg_get_viewdef",
            "pg_get_triggerdef",
            "pg_get_partkeydef",
            "pg_get_function_identity_arguments",
            "pg_get_function_arguments",
            "pg_get_function_result",
            "pg_get_statisticsobjdef_columns",
            "pg_get_statisticsobjdef",
            "pg_get_ruledef",
        ],
        ret_text,
        Arc::new(|_: &[ScalarValue]| Ok(text(None))),
    )?;
    {
        // obj_description(oid [, catalog]) and col_description(oid, attnum):
        // COMMENT ON TABLE / COLUMN (crate::access).
        let (e, acc) = (engine.clone(), access.clone());
        add(
            &["obj_description"],
            ret_text,
            Arc::new(move |a: &[ScalarValue]| {
                let table = int_arg(a.first()).and_then(|o| relation_by_oid(&e, o));
                Ok(text(table.filter(|(_, s)| *s == "public").and_then(
                    |(t, _)| acc.cached().comment(&t, None).cloned(),
                )))
            }),
        )?;
        let (e, acc) = (engine.clone(), access.clone());
        add(
            &["col_description"],
            ret_text,
            Arc::new(move |a: &[ScalarValue]| {
                let (Some(oid), Some(attnum)) = (int_arg(a.first()), int_arg(a.get(1))) else {
                    return Ok(text(None));
                };
                let Some((t, "public")) = relation_by_oid(&e, oid) else {
                    return Ok(text(None));
                };
                let column = e.table_schema(&t).and_then(|ts| {
                    usize::try_from(attnum - 1)
                        .ok()
                        .and_then(|i| ts.columns.get(i).map(|f| f.name().clone()))
                });
                Ok(text(
                    column.and_then(|c| acc.cached().comment(&t, Some(&c)).cloned()),
                ))
            }),
        )?;
    }
    add(
        &["pg_get_expr"],
        ret_text,
        Arc::new(|a: &[ScalarValue]| Ok(text(str_arg(a.first())))),
    )?;
    // pg_get_indexdef(index oid [, column, pretty]): the whole definition
    // for column 0, else that key column's name ('' past the last one).
    let e = engine.clone();
    add(
        &["pg_get_indexdef"],
        ret_text,
        Arc::new(move |a: &[ScalarValue]| {
            let Some(o) = int_arg(a.first()) else {
                return Ok(text(None));
            };
            let Some(k) = primary_key_by_oid(&e, o, false) else {
                return Ok(text(None));
            };
            let pretty = matches!(a.get(2), Some(ScalarValue::Boolean(Some(true))));
            Ok(text(Some(match int_arg(a.get(1)).unwrap_or(0) {
                0 => k.indexdef(pretty),
                1 => quote_ident(ID),
                _ => String::new(),
            })))
        }),
    )?;
    let e = engine.clone();
    add(
        &["pg_get_constraintdef"],
        ret_text,
        Arc::new(move |a: &[ScalarValue]| {
            Ok(text(
                int_arg(a.first())
                    .and_then(|o| primary_key_by_oid(&e, o, true))
                    .map(|k| k.constraintdef()),
            ))
        }),
    )?;
    add(
        &["pg_encoding_to_char"],
        ret_text,
        Arc::new(|a: &[ScalarValue]| {
            Ok(text(int_arg(a.first()).map(|e| {
                match e {
                    0 => "SQL_ASCII",
                    6 => "UTF8",
                    _ => "",
                }
                .to_string()
            })))
        }),
    )?;
    add(
        &["pg_char_to_encoding"],
        ret_i32,
        Arc::new(|a: &[ScalarValue]| {
            Ok(ScalarValue::Int32(str_arg(a.first()).map(
                |e| match e.to_ascii_uppercase().as_str() {
                    "SQL_ASCII" => 0,
                    "UTF8" | "UTF-8" | "UNICODE" => 6,
                    _ => -1,
                },
            )))
        }),
    )?;
    add(
        &["pg_client_encoding"],
        ret_text,
        Arc::new(|_: &[ScalarValue]| Ok(text(Some("UTF8".into())))),
    )?;
    add(
        &["quote_ident"],
        ret_text,
        Arc::new(|a: &[ScalarValue]| Ok(text(str_arg(a.first()).map(|s| quote_ident(&s))))),
    )?;
    add(
        &["current_database"],
        ret_text,
        Arc::new(|_: &[ScalarValue]| Ok(text(Some(DATABASE.into())))),
    )?;
    add(
        &["current_schema"],
        ret_text,
        Arc::new(|_: &[ScalarValue]| Ok(text(Some("public".into())))),
    )?;
    add(
        &["current_schemas"],
        ret_text_list,
        Arc::new(|a: &[ScalarValue]| {
            let implicit = matches!(a.first(), Some(ScalarValue::Boolean(Some(true))));
            let names: Vec<ScalarValue> = (if implicit {
                vec!["pg_catalog", "public"]
            } else {
                vec!["public"]
            })
            .into_iter()
            .map(|n| ScalarValue::Utf8(Some(n.into())))
            .collect();
            Ok(ScalarValue::List(ScalarValue::new_list_nullable(
                &names,
                &DataType::Utf8,
            )))
        }),
    )?;
    {
        // strata_contract(['table']): the ODCS data contract, as YAML.
        let (e, acc, ends) = (engine.clone(), access.clone(), endpoints.clone());
        add(
            &["strata_contract"],
            ret_text,
            Arc::new(move |a: &[ScalarValue]| {
                let table = match a.first() {
                    None => None,
                    Some(v) if v.is_null() => return Ok(text(None)),
                    Some(v) => Some(str_arg(Some(v)).unwrap_or_default()),
                };
                let c =
                    crate::contract::contract(&e, &acc.cached(), &ends.read(), table.as_deref())
                        .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?;
                Ok(text(Some(crate::contract::to_yaml(&c))))
            }),
        )?;
    }
    // No temporary schema: its oid is 0 (ibis asks before reading a table).
    add(
        &["pg_my_temp_schema"],
        ret_i64,
        Arc::new(|_: &[ScalarValue]| Ok(ScalarValue::Int64(Some(0)))),
    )?;
    add(
        &["pg_postmaster_start_time", "pg_conf_load_time"],
        ret_timestamptz,
        Arc::new(|_: &[ScalarValue]| {
            Ok(ScalarValue::TimestampMicrosecond(
                Some(start_time()),
                Some("UTC".into()),
            ))
        }),
    )?;
    // The connection answers `current_setting` for the settings it tracks;
    // these are the server's values of the others.
    add(
        &["current_setting"],
        ret_text,
        Arc::new(|a: &[ScalarValue]| {
            let Some(name) = str_arg(a.first()) else {
                return Ok(text(None));
            };
            let missing_ok = matches!(a.get(1), Some(ScalarValue::Boolean(Some(true))));
            match SETTINGS
                .iter()
                .find(|(n, _, _)| n.eq_ignore_ascii_case(&name))
            {
                Some((_, v, _)) => Ok(text(Some(v.to_string()))),
                None if missing_ok => Ok(text(None)),
                None => plan_err!("unrecognized configuration parameter \"{name}\""),
            }
        }),
    )?;
    add(
        &["set_config"],
        ret_text,
        Arc::new(|a: &[ScalarValue]| {
            let name = str_arg(a.first()).unwrap_or_default();
            let value = str_arg(a.get(1));
            match SETTINGS
                .iter()
                .find(|(n, _, _)| n.eq_ignore_ascii_case(&name))
            {
                // Only a no-op change can be honoured here; SET changes a connection's settings.
                Some((_, v, _)) if value.as_deref() == Some(*v) => Ok(text(value)),
                Some(_) => plan_err!(
                    "set_config('{name}', …) cannot change this setting; use SET {name} = …"
                ),
                None => plan_err!("unrecognized configuration parameter \"{name}\""),
            }
        }),
    )?;
    add(
        &["pg_is_in_recovery"],
        ret_bool,
        Arc::new(|_: &[ScalarValue]| Ok(ScalarValue::Boolean(Some(false)))),
    )?;
    // Strata's tables live in object storage as segments shared across
    // versions; it does not size them per relation.
    add(
        &[
            "pg_relation_size",
            "pg_total_relation_size",
            "pg_table_size",
        ],
        ret_i64,
        Arc::new(|_: &[ScalarValue]| Ok(oid(None))),
    )?;
    add(
        &["pg_indexes_size"],
        ret_i64,
        Arc::new(|a: &[ScalarValue]| Ok(oid(int_arg(a.first()).map(|_| 0)))),
    )?;
    add(
        &["pg_size_pretty"],
        ret_text,
        Arc::new(|a: &[ScalarValue]| {
            Ok(text(int_arg(a.first()).map(|b| {
                let mut v = b as f64;
                for unit in ["bytes", "kB", "MB", "GB", "TB"] {
                    if v.abs() < 10240.0 || unit == "TB" {
                        return format!("{} {unit}", v.round() as i64);
                    }
                    v /= 1024.0;
                }
                unreachable!()
            })))
        }),
    )?;
    add(
        &["array_lower"],
        ret_i64,
        Arc::new(|a: &[ScalarValue]| {
            let n = a.first().and_then(list_len);
            let dim = int_arg(a.get(1));
            Ok(ScalarValue::Int64(match (n, dim) {
                (Some(n), Some(1)) if n > 0 => Some(1),
                _ => None,
            }))
        }),
    )?;
    add(
        &["array_upper"],
        ret_i64,
        Arc::new(|a: &[ScalarValue]| {
            let n = a.first().and_then(list_len);
            let dim = int_arg(a.get(1));
            Ok(ScalarValue::Int64(match (n, dim) {
                (Some(n), Some(1)) if n > 0 => Some(n as i64),
                _ => None,
            }))
        }),
    )?;
    add(
        &["json_build_object", "jsonb_build_object"],
        ret_text,
        Arc::new(|a: &[ScalarValue]| {
            if !a.len().is_multiple_of(2) {
                return plan_err!(
                    "json_build_object takes an even number of arguments (key, value, …)"
                );
            }
            let parts: Vec<String> = a
                .chunks(2)
                .map(|kv| {
                    let k = str_arg(Some(&kv[0])).unwrap_or_default();
                    format!(
                        "{} : {}",
                        json_value(&ScalarValue::Utf8(Some(k))),
                        json_value(&kv[1])
                    )
                })
                .collect();
            Ok(text(Some(format!("{{{}}}", parts.join(", ")))))
        }),
    )?;
    // information_schema._pg_expandarray(a) is a set of (x, n): each element
    // with its 1-based position. The rewrite makes it
    // `unnest(__pg_expandarray(a))`; this builds the list of {x, n}.
    state.register_udf(Arc::new(ScalarUDF::new_from_impl(ExpandArray {
        signature: Signature::any(1, Volatility::Immutable),
    })))?;
    Ok(())
}
