//! The seeded generator of the differential test: random tables (the same
//! CREATE TABLE and INSERTs for PostgreSQL and Strata) and random queries
//! over them, each query kept as parts so that a mismatch can be shrunk by
//! dropping parts.
//!
//! Everything it writes is SQL both databases accept with the same meaning;
//! shapes with a known, intended difference (the `KNOWN` list in
//! tests/differential.rs) are left out here, next to a comment naming it.
//! Integer values stay far enough from the bigint limits that no generated
//! arithmetic overflows (overflow checking is tracked separately).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Ty {
    Int,
    Float,
    Text,
    Bool,
}

impl Ty {
    fn sql(self) -> &'static str {
        match self {
            Ty::Int => "BIGINT",
            Ty::Float => "DOUBLE PRECISION",
            Ty::Text => "TEXT",
            Ty::Bool => "BOOLEAN",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Table {
    pub name: String,
    /// User columns (not `_id`): name and type. The first is always `k BIGINT`.
    pub cols: Vec<(String, Ty)>,
    /// Rows as SQL literals, one per user column.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn create_sql(&self) -> String {
        let cols: Vec<String> = self
            .cols
            .iter()
            .map(|(n, t)| format!("{n} {}", t.sql()))
            .collect();
        format!(
            "CREATE TABLE {} (_id BIGINT, {})",
            self.name,
            cols.join(", ")
        )
    }

    pub fn insert_sql(&self) -> Option<String> {
        if self.rows.is_empty() {
            return None;
        }
        let names: Vec<&str> = self.cols.iter().map(|(n, _)| n.as_str()).collect();
        let rows: Vec<String> = self
            .rows
            .iter()
            .enumerate()
            .map(|(i, r)| format!("({}, {})", i + 1, r.join(", ")))
            .collect();
        Some(format!(
            "INSERT INTO {} (_id, {}) VALUES {}",
            self.name,
            names.join(", "),
            rows.join(", ")
        ))
    }
}

/// A query as parts (for shrinking) and how to compare its answer.
#[derive(Clone, Debug)]
pub struct Query {
    pub with_distinct: bool,
    /// Output items (`expr AS name`), with the type of each.
    pub items: Vec<(String, Ty)>,
    pub from: String,
    pub filter: Option<String>,
    pub group_by: Vec<String>,
    pub having: Option<String>,
    /// ORDER BY every output column (by position): the answer is then
    /// compared in order.
    pub order_all: bool,
    pub limit: Option<(u32, Option<u32>)>,
    /// A whole statement that is not a plain SELECT (set operations).
    pub raw: Option<String>,
    /// The tables it reads.
    pub tables: Vec<String>,
    /// What the query exercises (for the statistics).
    pub shape: &'static str,
}

impl Query {
    pub fn sql(&self) -> String {
        if let Some(r) = &self.raw {
            return r.clone();
        }
        let mut s = String::from("SELECT ");
        if self.with_distinct {
            s.push_str("DISTINCT ");
        }
        let items: Vec<&str> = self.items.iter().map(|(e, _)| e.as_str()).collect();
        s.push_str(&items.join(", "));
        if !self.from.is_empty() {
            s.push_str(" FROM ");
            s.push_str(&self.from);
        }
        if let Some(w) = &self.filter {
            s.push_str(" WHERE ");
            s.push_str(w);
        }
        if !self.group_by.is_empty() {
            s.push_str(" GROUP BY ");
            s.push_str(&self.group_by.join(", "));
        }
        if let Some(h) = &self.having {
            s.push_str(" HAVING ");
            s.push_str(h);
        }
        if self.order_all {
            let n: Vec<String> = (1..=self.items.len()).map(|i| i.to_string()).collect();
            s.push_str(" ORDER BY ");
            s.push_str(&n.join(", "));
        }
        if let Some((l, o)) = self.limit {
            s.push_str(&format!(" LIMIT {l}"));
            if let Some(o) = o {
                s.push_str(&format!(" OFFSET {o}"));
            }
        }
        s
    }

    pub fn ordered(&self) -> bool {
        self.order_all && self.raw.is_none()
    }

    /// Simpler variants of this query, for shrinking a mismatch.
    pub fn simpler(&self) -> Vec<Query> {
        let mut out = Vec::new();
        if self.raw.is_some() {
            return out;
        }
        if self.limit.is_some() {
            out.push(Query {
                limit: None,
                ..self.clone()
            });
        }
        if self.order_all && self.limit.is_none() {
            out.push(Query {
                order_all: false,
                ..self.clone()
            });
        }
        if self.filter.is_some() {
            out.push(Query {
                filter: None,
                ..self.clone()
            });
        }
        if self.having.is_some() {
            out.push(Query {
                having: None,
                ..self.clone()
            });
        }
        if self.with_distinct {
            out.push(Query {
                with_distinct: false,
                ..self.clone()
            });
        }
        if self.items.len() > 1 {
            for i in 0..self.items.len() {
                let mut q = self.clone();
                q.items.remove(i);
                out.push(q);
            }
        }
        out
    }
}

/// A column reachable from the current scope: `qualifier.name` and its type.
#[derive(Clone, Debug)]
struct Col {
    qual: String,
    name: String,
    ty: Ty,
}

impl Col {
    fn sql(&self) -> String {
        format!("{}.{}", self.qual, self.name)
    }
}

pub struct Gen {
    pub rng: StdRng,
    pub tables: Vec<Table>,
    alias_no: u32,
}

const INTS: &[&str] = &[
    "0",
    "1",
    "-1",
    "2",
    "3",
    "-7",
    "10",
    "100",
    "2147483647",
    "-2147483648",
];
const FLOATS: &[&str] = &["0", "1.5", "-2.25", "3", "1e15", "-0.5", "0.1", "100.125"];
const TEXTS: &[&str] = &[
    "''", "'a'", "'b'", "'A'", "'ab'", "'a b'", "' x'", "'b%'", "'zz'", "'1'",
];

impl Gen {
    pub fn new(seed: u64) -> Gen {
        Gen {
            rng: StdRng::seed_from_u64(seed),
            tables: Vec::new(),
            alias_no: 0,
        }
    }

    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.rng.random_range(0..xs.len())]
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    /// A fresh set of tables named `{prefix}_t0…`.
    pub fn new_world(&mut self, prefix: &str) {
        self.tables.clear();
        let n = self.rng.random_range(2..=4);
        for i in 0..n {
            let mut cols = vec![("k".to_string(), Ty::Int)];
            let extra = self.rng.random_range(1..=3);
            for j in 0..extra {
                let ty = *self.pick(&[Ty::Int, Ty::Int, Ty::Float, Ty::Text, Ty::Text, Ty::Bool]);
                let letter = match ty {
                    Ty::Int => "i",
                    Ty::Float => "f",
                    Ty::Text => "s",
                    Ty::Bool => "b",
                };
                cols.push((format!("{letter}{j}"), ty));
            }
            // Empty tables sometimes; a handful of rows otherwise.
            let nrows = if self.chance(0.08) {
                0
            } else {
                self.rng.random_range(1..=9)
            };
            let mut rows: Vec<Vec<String>> = Vec::new();
            for _ in 0..nrows {
                if !rows.is_empty() && self.chance(0.15) {
                    // A duplicate of an earlier row.
                    let r = rows[self.rng.random_range(0..rows.len())].clone();
                    rows.push(r);
                    continue;
                }
                let r = cols
                    .iter()
                    .enumerate()
                    .map(|(c, (_, ty))| {
                        if self.chance(0.15) {
                            return "NULL".to_string();
                        }
                        if c == 0 {
                            // The join/group key: few distinct values.
                            return self.rng.random_range(-1..=3).to_string();
                        }
                        self.literal(*ty)
                    })
                    .collect();
                rows.push(r);
            }
            self.tables.push(Table {
                name: format!("{prefix}_t{i}"),
                cols,
                rows,
            });
        }
    }

    fn literal(&mut self, ty: Ty) -> String {
        match ty {
            Ty::Int => self.pick(INTS).to_string(),
            Ty::Float => {
                let f = self.pick(FLOATS).to_string();
                format!("CAST({f} AS DOUBLE PRECISION)")
            }
            Ty::Text => self.pick(TEXTS).to_string(),
            Ty::Bool => self.pick(&["TRUE", "FALSE"]).to_string(),
        }
    }

    /// A small literal for expressions (no overflow with the data's values).
    fn small_int(&mut self) -> String {
        self.rng.random_range(-5..=9).to_string()
    }

    fn alias(&mut self) -> String {
        self.alias_no += 1;
        format!("a{}", self.alias_no)
    }

    fn table_cols(&self, t: usize, qual: &str) -> Vec<Col> {
        self.tables[t]
            .cols
            .iter()
            .map(|(n, ty)| Col {
                qual: qual.to_string(),
                name: n.clone(),
                ty: *ty,
            })
            .collect()
    }

    fn pick_col(&mut self, scope: &[Col], ty: Ty) -> Option<Col> {
        let c: Vec<&Col> = scope.iter().filter(|c| c.ty == ty).collect();
        if c.is_empty() {
            None
        } else {
            Some(c[self.rng.random_range(0..c.len())].clone())
        }
    }

    /// An expression of type `ty` over `scope`. `outer` is the enclosing
    /// query's scope, for correlated subqueries.
    fn expr(&mut self, ty: Ty, scope: &[Col], depth: u32) -> String {
        if depth == 0 || self.chance(0.35) {
            return self.leaf(ty, scope);
        }
        let d = depth - 1;
        match ty {
            Ty::Int => match self.rng.random_range(0..14) {
                0 => format!(
                    "({} + {})",
                    self.expr(Ty::Int, scope, d),
                    self.expr(Ty::Int, scope, d)
                ),
                1 => format!(
                    "({} - {})",
                    self.expr(Ty::Int, scope, d),
                    self.expr(Ty::Int, scope, d)
                ),
                2 => format!("({} * {})", self.leaf(Ty::Int, scope), self.small_int()),
                3 => format!("(- {})", self.expr(Ty::Int, scope, d)),
                4 => format!("abs({})", self.expr(Ty::Int, scope, d)),
                5 => {
                    let n = *self.pick(&["2", "3", "-4", "7"]);
                    format!("({} / {n})", self.expr(Ty::Int, scope, d))
                }
                6 => {
                    let n = *self.pick(&["2", "3", "-4", "7"]);
                    format!("({} % {n})", self.expr(Ty::Int, scope, d))
                }
                7 => format!(
                    "CASE WHEN {} THEN {} ELSE {} END",
                    self.expr(Ty::Bool, scope, d),
                    self.expr(Ty::Int, scope, d),
                    self.expr(Ty::Int, scope, d)
                ),
                8 => format!(
                    "COALESCE({}, {})",
                    self.expr(Ty::Int, scope, d),
                    self.expr(Ty::Int, scope, d)
                ),
                9 => format!(
                    "NULLIF({}, {})",
                    self.expr(Ty::Int, scope, d),
                    self.expr(Ty::Int, scope, d)
                ),
                10 => format!("length({})", self.expr(Ty::Text, scope, d)),
                11 => format!(
                    "CAST(CAST({} AS TEXT) AS BIGINT)",
                    self.expr(Ty::Int, scope, d)
                ),
                12 => format!(
                    "CASE {} WHEN {} THEN {} END",
                    self.leaf(Ty::Int, scope),
                    self.small_int(),
                    self.expr(Ty::Int, scope, d)
                ),
                _ => self.scalar_subquery(Ty::Int, scope, d),
            },
            Ty::Float => match self.rng.random_range(0..6) {
                0 => format!(
                    "({} + {})",
                    self.expr(Ty::Float, scope, d),
                    self.expr(Ty::Float, scope, d)
                ),
                1 => format!(
                    "({} * {})",
                    self.expr(Ty::Float, scope, d),
                    self.leaf(Ty::Float, scope)
                ),
                2 => format!("CAST({} AS DOUBLE PRECISION)", self.expr(Ty::Int, scope, d)),
                3 => format!("(- {})", self.expr(Ty::Float, scope, d)),
                4 => format!("abs({})", self.expr(Ty::Float, scope, d)),
                _ => format!(
                    "CASE WHEN {} THEN {} END",
                    self.expr(Ty::Bool, scope, d),
                    self.expr(Ty::Float, scope, d)
                ),
            },
            Ty::Text => match self.rng.random_range(0..8) {
                0 => format!(
                    "({} || {})",
                    self.expr(Ty::Text, scope, d),
                    self.expr(Ty::Text, scope, d)
                ),
                1 => format!("upper({})", self.expr(Ty::Text, scope, d)),
                2 => format!("lower({})", self.expr(Ty::Text, scope, d)),
                3 => format!("CAST({} AS TEXT)", self.expr(Ty::Int, scope, d)),
                4 => format!("substr({}, 1, 2)", self.expr(Ty::Text, scope, d)),
                5 => format!(
                    "COALESCE({}, {})",
                    self.expr(Ty::Text, scope, d),
                    self.expr(Ty::Text, scope, d)
                ),
                6 => format!("CAST({} AS TEXT)", self.expr(Ty::Bool, scope, d)),
                _ => format!(
                    "CASE WHEN {} THEN {} ELSE {} END",
                    self.expr(Ty::Bool, scope, d),
                    self.expr(Ty::Text, scope, d),
                    self.expr(Ty::Text, scope, d)
                ),
            },
            Ty::Bool => match self.rng.random_range(0..14) {
                0..=2 => {
                    let t = *self.pick(&[Ty::Int, Ty::Int, Ty::Text, Ty::Float]);
                    let op = *self.pick(&["=", "<>", "<", "<=", ">", ">="]);
                    format!(
                        "({} {op} {})",
                        self.expr(t, scope, d),
                        self.expr(t, scope, d)
                    )
                }
                3 => format!(
                    "({} AND {})",
                    self.expr(Ty::Bool, scope, d),
                    self.expr(Ty::Bool, scope, d)
                ),
                4 => format!(
                    "({} OR {})",
                    self.expr(Ty::Bool, scope, d),
                    self.expr(Ty::Bool, scope, d)
                ),
                5 => format!("(NOT {})", self.expr(Ty::Bool, scope, d)),
                6 => {
                    let t = *self.pick(&[Ty::Int, Ty::Text, Ty::Bool, Ty::Float]);
                    let n = *self.pick(&["IS NULL", "IS NOT NULL"]);
                    format!("({} {n})", self.expr(t, scope, d))
                }
                7 => {
                    let t = *self.pick(&[Ty::Int, Ty::Text]);
                    let n = *self.pick(&["IS DISTINCT FROM", "IS NOT DISTINCT FROM"]);
                    format!(
                        "({} {n} {})",
                        self.expr(t, scope, d),
                        self.expr(t, scope, d)
                    )
                }
                8 => format!(
                    "({} BETWEEN {} AND {})",
                    self.expr(Ty::Int, scope, d),
                    self.small_int(),
                    self.small_int()
                ),
                9 => {
                    let not = if self.chance(0.3) { "NOT " } else { "" };
                    let list: Vec<String> = (0..self.rng.random_range(1..=3))
                        .map(|_| self.leaf(Ty::Int, scope))
                        .collect();
                    format!(
                        "({} {not}IN ({}))",
                        self.expr(Ty::Int, scope, d),
                        list.join(", ")
                    )
                }
                10 => {
                    let p = *self.pick(&["'a%'", "'%b'", "'_'", "'%'", "'a_b'", "''"]);
                    let not = if self.chance(0.3) { "NOT " } else { "" };
                    format!("({} {not}LIKE {p})", self.expr(Ty::Text, scope, d))
                }
                11 => self.exists_subquery(scope, d),
                12 => self.in_subquery(scope, d),
                _ => format!(
                    "CASE WHEN {} THEN {} ELSE {} END",
                    self.expr(Ty::Bool, scope, d),
                    self.expr(Ty::Bool, scope, d),
                    self.expr(Ty::Bool, scope, d)
                ),
            },
        }
    }

    fn leaf(&mut self, ty: Ty, scope: &[Col]) -> String {
        if self.chance(0.75) {
            if let Some(c) = self.pick_col(scope, ty) {
                return c.sql();
            }
        }
        if self.chance(0.1) {
            return match ty {
                Ty::Int => "CAST(NULL AS BIGINT)".into(),
                Ty::Float => "CAST(NULL AS DOUBLE PRECISION)".into(),
                Ty::Text => "CAST(NULL AS TEXT)".into(),
                Ty::Bool => "CAST(NULL AS BOOLEAN)".into(),
            };
        }
        match ty {
            Ty::Int => self.small_int(),
            _ => self.literal(ty),
        }
    }

    /// A predicate for a subquery over `inner`, correlated with `outer` at
    /// random.
    fn sub_filter(&mut self, inner: &[Col], outer: &[Col], d: u32) -> Option<String> {
        let correlated = !outer.is_empty() && self.chance(0.7);
        let mut parts = Vec::new();
        if correlated {
            let t = *self.pick(&[Ty::Int, Ty::Int, Ty::Text]);
            if let (Some(i), Some(o)) = (self.pick_col(inner, t), self.pick_col(outer, t)) {
                let op = *self.pick(&["=", "=", "<", ">", "<>", ">="]);
                parts.push(format!("{} {op} {}", i.sql(), o.sql()));
            }
        }
        if self.chance(0.4) {
            parts.push(self.expr(Ty::Bool, inner, d.min(1)));
        }
        if parts.is_empty() {
            None
        } else {
            Some(parts.join(" AND "))
        }
    }

    fn sub_table(&mut self) -> (usize, String, Vec<Col>) {
        let t = self.rng.random_range(0..self.tables.len());
        let a = self.alias();
        let cols = self.table_cols(t, &a);
        (t, a, cols)
    }

    fn scalar_subquery(&mut self, ty: Ty, outer: &[Col], d: u32) -> String {
        let (t, a, inner) = self.sub_table();
        let agg = match ty {
            Ty::Int => match self.rng.random_range(0..4) {
                0 => "count(*)".to_string(),
                1 => format!("count({})", self.leaf(Ty::Int, &inner)),
                2 => format!("max({})", self.leaf(Ty::Int, &inner)),
                // sum(bigint) is numeric; in the arithmetic a scalar subquery
                // meets, numeric division's scale differs (KNOWN): as bigint.
                _ => format!("CAST(sum({}) AS BIGINT)", self.leaf(Ty::Int, &inner)),
            },
            _ => unreachable!(),
        };
        let w = self
            .sub_filter(&inner, outer, d)
            .map(|w| format!(" WHERE {w}"))
            .unwrap_or_default();
        format!("(SELECT {agg} FROM {} AS {a}{w})", self.tables[t].name)
    }

    fn exists_subquery(&mut self, outer: &[Col], d: u32) -> String {
        let (t, a, inner) = self.sub_table();
        let w = self
            .sub_filter(&inner, outer, d)
            .map(|w| format!(" WHERE {w}"))
            .unwrap_or_default();
        let not = if self.chance(0.4) { "NOT " } else { "" };
        format!(
            "({not}EXISTS (SELECT 1 FROM {} AS {a}{w}))",
            self.tables[t].name
        )
    }

    fn in_subquery(&mut self, outer: &[Col], d: u32) -> String {
        let (t, a, inner) = self.sub_table();
        let ty = *self.pick(&[Ty::Int, Ty::Int, Ty::Text]);
        let Some(c) = self.pick_col(&inner, ty) else {
            return self.exists_subquery(outer, d);
        };
        let not = if self.chance(0.4) { "NOT " } else { "" };
        let w = self
            .sub_filter(&inner, outer, d)
            .map(|w| format!(" WHERE {w}"))
            .unwrap_or_default();
        let lhs = self.expr(ty, outer, 0);
        // Bare (a filter's operand, or a value under NOT / CASE / a
        // comparison), or tested for NULL.
        let test = *self.pick(&["", "", " IS TRUE", " IS NULL", " IS NOT FALSE"]);
        format!(
            "(({lhs} {not}IN (SELECT {} FROM {} AS {a}{w})){test})",
            c.sql(),
            self.tables[t].name
        )
    }

    /// A FROM clause: its text, the columns it brings into scope, and the
    /// tables it reads.
    fn from(&mut self) -> (String, Vec<Col>, Vec<String>) {
        let n = self.tables.len();
        match self.rng.random_range(0..10) {
            // One table.
            0..=3 => {
                let t = self.rng.random_range(0..n);
                let a = self.alias();
                (
                    format!("{} AS {a}", self.tables[t].name),
                    self.table_cols(t, &a),
                    vec![self.tables[t].name.clone()],
                )
            }
            // A derived table.
            4 => {
                let t = self.rng.random_range(0..n);
                let a = self.alias();
                let inner = self.table_cols(t, &a);
                let w = self
                    .sub_filter(&inner, &[], 1)
                    .map(|w| format!(" WHERE {w}"))
                    .unwrap_or_default();
                let s = self.alias();
                let cols: Vec<Col> = inner
                    .iter()
                    .map(|c| Col {
                        qual: s.clone(),
                        name: c.name.clone(),
                        ty: c.ty,
                    })
                    .collect();
                (
                    format!("(SELECT * FROM {} AS {a}{w}) AS {s}", self.tables[t].name),
                    cols,
                    vec![self.tables[t].name.clone()],
                )
            }
            // Two or three tables joined (a self join when they are the same).
            _ => {
                let k = if self.chance(0.3) { 3 } else { 2 };
                let mut text = String::new();
                let mut scope = Vec::new();
                let mut tables = Vec::new();
                let paren = self.chance(0.25);
                for i in 0..k {
                    let t = self.rng.random_range(0..n);
                    let a = self.alias();
                    let cols = self.table_cols(t, &a);
                    tables.push(self.tables[t].name.clone());
                    if i == 0 {
                        text = format!("{} AS {a}", self.tables[t].name);
                        scope = cols;
                        continue;
                    }
                    let kind = *self.pick(&[
                        "JOIN",
                        "INNER JOIN",
                        "LEFT JOIN",
                        "RIGHT JOIN",
                        "FULL JOIN",
                        "CROSS JOIN",
                        "LEFT OUTER JOIN",
                    ]);
                    let on = if kind == "CROSS JOIN" {
                        String::new()
                    } else {
                        let l = self.pick_col(&scope, Ty::Int).unwrap();
                        let r = cols[0].clone();
                        let mut on = format!("{} = {}", l.sql(), r.sql());
                        // PostgreSQL runs a FULL JOIN only on a hash- or
                        // merge-joinable condition (no OR at the top).
                        if self.chance(0.3) {
                            let mut both = scope.clone();
                            both.extend(cols.iter().cloned());
                            let extra = self.expr(Ty::Bool, &both, 1);
                            let op = if kind == "FULL JOIN" {
                                "AND"
                            } else {
                                *self.pick(&["AND", "OR"])
                            };
                            on = format!("{on} {op} {extra}");
                        }
                        format!(" ON {on}")
                    };
                    text = format!("{text} {kind} {} AS {a}{on}", self.tables[t].name);
                    if paren && i == 1 {
                        text = format!("({text})");
                    }
                    scope.extend(cols);
                }
                tables.sort();
                tables.dedup();
                (text, scope, tables)
            }
        }
    }

    /// One random query.
    pub fn query(&mut self) -> Query {
        self.alias_no = 0;
        let (from, scope, tables) = self.from();
        let mut q = Query {
            with_distinct: false,
            items: Vec::new(),
            from,
            filter: None,
            group_by: Vec::new(),
            having: None,
            order_all: false,
            limit: None,
            raw: None,
            tables,
            shape: "select",
        };
        if self.chance(0.5) {
            q.filter = Some(self.expr(Ty::Bool, &scope, 3));
        }
        match self.rng.random_range(0..20) {
            // Plain projections.
            0..=6 => {
                for i in 0..self.rng.random_range(1..=4) {
                    let ty = *self.pick(&[Ty::Int, Ty::Int, Ty::Text, Ty::Bool, Ty::Float]);
                    let e = self.expr(ty, &scope, 3);
                    q.items.push((format!("{e} AS c{i}"), ty));
                }
                // PostgreSQL allows duplicate output names.
                if q.items.len() > 1 && self.chance(0.1) {
                    let (e, t) = q.items[1].clone();
                    q.items[1] = (e.rsplit_once(" AS ").unwrap().0.to_string() + " AS c0", t);
                }
                q.with_distinct = self.chance(0.15);
                if self.chance(0.4) {
                    q.order_all = true;
                    if self.chance(0.5) {
                        let off = if self.chance(0.5) {
                            Some(self.rng.random_range(0..4))
                        } else {
                            None
                        };
                        q.limit = Some((self.rng.random_range(0..6), off));
                    }
                }
            }
            // SELECT * (the wildcard rule for every FROM shape).
            7 => {
                q.items.push(("*".into(), Ty::Text));
                q.shape = "wildcard";
            }
            // Aggregates, grouped or not.
            8..=12 => {
                q.shape = "aggregate";
                let grouped = self.chance(0.7);
                let mut i = 0;
                if grouped {
                    for _ in 0..self.rng.random_range(1..=2) {
                        let ty = *self.pick(&[Ty::Int, Ty::Text, Ty::Bool]);
                        // Columns only: PostgreSQL refuses a constant
                        // (`GROUP BY FALSE`), which DataFusion accepts.
                        let e = match self.pick_col(&scope, ty) {
                            Some(c) => c.sql(),
                            None => continue,
                        };
                        q.group_by.push(e.clone());
                        q.items.push((format!("{e} AS c{i}"), ty));
                        i += 1;
                    }
                }
                for _ in 0..self.rng.random_range(1..=3) {
                    let (a, ty) = self.aggregate(&scope);
                    q.items.push((format!("{a} AS c{i}"), ty));
                    i += 1;
                }
                if grouped && self.chance(0.4) {
                    let (a, ty) = self.aggregate(&scope);
                    q.having = Some(match ty {
                        Ty::Int => format!("{a} > {}", self.rng.random_range(0..3)),
                        Ty::Bool => a,
                        _ => format!("{a} IS NOT NULL"),
                    });
                }
                if self.chance(0.3) {
                    q.order_all = true;
                }
            }
            // Window functions over the FROM.
            13..=15 => {
                q.shape = "window";
                let all: Vec<String> = scope.iter().map(|c| c.sql()).collect();
                let part = self.pick_col(&scope, Ty::Int).unwrap().sql();
                let mut i = 0;
                for c in scope.iter().take(3) {
                    q.items.push((format!("{} AS c{i}", c.sql()), c.ty));
                    i += 1;
                }
                for _ in 0..self.rng.random_range(1..=2) {
                    let over_all = format!("PARTITION BY {part} ORDER BY {}", all.join(", "));
                    let v = self.pick_col(&scope, Ty::Int).unwrap().sql();
                    let (w, ty) = match self.rng.random_range(0..9) {
                        0 => (format!("row_number() OVER ({over_all})"), Ty::Int),
                        1 => (
                            format!("rank() OVER (PARTITION BY {part} ORDER BY {v})"),
                            Ty::Int,
                        ),
                        2 => (format!("dense_rank() OVER (ORDER BY {v} DESC)"), Ty::Int),
                        3 => (format!("sum({v}) OVER (PARTITION BY {part})"), Ty::Int),
                        4 => (format!("count(*) OVER (PARTITION BY {part})"), Ty::Int),
                        5 => (format!("sum({v}) OVER (ORDER BY {v})"), Ty::Int),
                        6 => (format!("lag({v}) OVER ({over_all})"), Ty::Int),
                        7 => (
                            format!("max({v}) OVER (ORDER BY {})", all.join(", ")),
                            Ty::Int,
                        ),
                        _ => (format!("count({v}) OVER ()"), Ty::Int),
                    };
                    q.items.push((format!("{w} AS c{i}"), ty));
                    i += 1;
                }
                // Every column of the FROM is in the projection, for
                // row_number and lag (ordered by all of them) to be
                // deterministic.
                let shown: Vec<String> = scope.iter().skip(3).map(|c| c.sql()).collect();
                for (j, c) in shown.iter().enumerate() {
                    q.items.push((format!("{c} AS d{j}"), scope[3 + j].ty));
                }
            }
            // Set operations.
            _ => {
                q.shape = "setop";
                let ty = *self.pick(&[Ty::Int, Ty::Text]);
                let side = |g: &mut Gen| -> (String, Vec<String>) {
                    let t = g.rng.random_range(0..g.tables.len());
                    let a = g.alias();
                    let cols = g.table_cols(t, &a);
                    let e = g.expr(ty, &cols, 1);
                    let w = if g.chance(0.5) {
                        format!(" WHERE {}", g.expr(Ty::Bool, &cols, 1))
                    } else {
                        String::new()
                    };
                    (
                        format!("SELECT {e} AS c0 FROM {} AS {a}{w}", g.tables[t].name),
                        vec![g.tables[t].name.clone()],
                    )
                };
                let (l, mut tl) = side(self);
                let (r, tr) = side(self);
                let op = *self.pick(&[
                    "UNION",
                    "UNION ALL",
                    "INTERSECT",
                    "EXCEPT",
                    "INTERSECT ALL",
                    "EXCEPT ALL",
                ]);
                let mut sql = format!("{l} {op} {r}");
                let ordered = self.chance(0.4);
                if ordered {
                    sql.push_str(" ORDER BY 1");
                    if self.chance(0.5) {
                        sql.push_str(&format!(" LIMIT {}", self.rng.random_range(0..5)));
                    }
                }
                tl.extend(tr);
                tl.sort();
                tl.dedup();
                q.raw = Some(sql);
                q.tables = tl;
                q.items = vec![("c0".into(), ty)];
                q.order_all = ordered;
                q.filter = None;
            }
        }
        q
    }

    fn aggregate(&mut self, scope: &[Col]) -> (String, Ty) {
        match self.rng.random_range(0..10) {
            0 => ("count(*)".into(), Ty::Int),
            1 => (format!("count({})", self.expr(Ty::Int, scope, 1)), Ty::Int),
            2 => {
                let t = *self.pick(&[Ty::Int, Ty::Text]);
                (
                    format!("count(DISTINCT {})", self.expr(t, scope, 1)),
                    Ty::Int,
                )
            }
            3 => (format!("sum({})", self.expr(Ty::Int, scope, 1)), Ty::Int),
            4 => {
                let t = *self.pick(&[Ty::Int, Ty::Text, Ty::Float]);
                (format!("min({})", self.expr(t, scope, 1)), t)
            }
            5 => {
                let t = *self.pick(&[Ty::Int, Ty::Text, Ty::Float]);
                (format!("max({})", self.expr(t, scope, 1)), t)
            }
            6 => (
                format!("sum({})", self.expr(Ty::Float, scope, 1)),
                Ty::Float,
            ),
            7 => (
                format!("avg({})", self.expr(Ty::Float, scope, 1)),
                Ty::Float,
            ),
            8 => (
                format!("bool_and({})", self.expr(Ty::Bool, scope, 1)),
                Ty::Bool,
            ),
            _ => (
                format!("bool_or({})", self.expr(Ty::Bool, scope, 1)),
                Ty::Bool,
            ),
        }
    }
}
