//! A small SQL builder and row readers shared by the repositories.
//!
//! Guarantees: placeholders are always `$1..$n` in bind order, so one SQL text
//! runs on SQLite and PostgreSQL through `AnyPool`; only strings and 64-bit
//! integers are ever bound (the types the Any driver maps on both backends);
//! values are always bound, never spliced into the SQL text. Row readers turn
//! missing or malformed values into [`StoreError::Corrupt`] instead of panicking.

use crate::error::StoreError;
use crate::scope::Scope;
use domain::{Page, PageRequest, Timestamp};
use serde::de::DeserializeOwned;
use sqlx::any::{Any, AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{AssertSqlSafe, Executor, Row};
use std::fmt::Display;
use std::str::FromStr;

/// One bound value.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Text(Option<String>),
    Int(Option<i64>),
}

impl From<String> for Arg {
    fn from(v: String) -> Self {
        Arg::Text(Some(v))
    }
}
impl From<&str> for Arg {
    fn from(v: &str) -> Self {
        Arg::Text(Some(v.to_owned()))
    }
}
impl From<Option<String>> for Arg {
    fn from(v: Option<String>) -> Self {
        Arg::Text(v)
    }
}
impl From<i64> for Arg {
    fn from(v: i64) -> Self {
        Arg::Int(Some(v))
    }
}
impl From<Option<i64>> for Arg {
    fn from(v: Option<i64>) -> Self {
        Arg::Int(v)
    }
}
impl From<bool> for Arg {
    fn from(v: bool) -> Self {
        Arg::Int(Some(i64::from(v)))
    }
}
impl From<Timestamp> for Arg {
    fn from(v: Timestamp) -> Self {
        Arg::Int(Some(v.timestamp_millis()))
    }
}
impl From<Option<Timestamp>> for Arg {
    fn from(v: Option<Timestamp>) -> Self {
        Arg::Int(v.map(|t| t.timestamp_millis()))
    }
}

/// Bind an ID (or any `Display` value) as TEXT.
pub(crate) fn text(v: impl Display) -> Arg {
    Arg::Text(Some(v.to_string()))
}

/// Bind an optional ID as nullable TEXT.
pub(crate) fn opt_text<T: Display>(v: Option<T>) -> Arg {
    Arg::Text(v.map(|v| v.to_string()))
}

/// SQL text plus its bound values.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sql {
    text: String,
    args: Vec<Arg>,
}

impl Sql {
    /// Start from SQL text that has no placeholders, or whose placeholders are
    /// filled by following [`Sql::arg`] calls in order.
    pub(crate) fn new(text: &str) -> Self {
        Self {
            text: text.to_owned(),
            args: Vec::new(),
        }
    }

    /// Append raw SQL (never user input).
    pub(crate) fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Append the next placeholder and bind its value.
    pub(crate) fn bind(&mut self, value: impl Into<Arg>) -> &mut Self {
        self.args.push(value.into());
        let n = self.args.len();
        self.text.push('$');
        self.text.push_str(&n.to_string());
        self
    }

    /// Bind a value for a placeholder already written in the text.
    pub(crate) fn arg(mut self, value: impl Into<Arg>) -> Self {
        self.args.push(value.into());
        self
    }

    /// Append `AND <column> = $n` when the scope is one tenant.
    pub(crate) fn scope(&mut self, column: &str, scope: &Scope) -> &mut Self {
        if let Scope::Tenant(t) = scope {
            self.push(" AND ").push(column).push(" = ").bind(text(t));
        }
        self
    }

    /// Append `AND <expr> LIKE $n ESCAPE '\'` matching `needle` anywhere, case-insensitively
    /// when `expr` is lowercased by the caller.
    pub(crate) fn contains(&mut self, expr: &str, needle: &str) -> &mut Self {
        let pattern = format!("%{}%", escape_like(&needle.to_lowercase()));
        self.push(" AND ")
            .push(expr)
            .push(" LIKE ")
            .bind(pattern)
            .push(" ESCAPE '\\'");
        self
    }

    fn query(&self) -> Query<'static, Any, AnyArguments> {
        let mut q = sqlx::query(AssertSqlSafe(self.text.clone()));
        for arg in &self.args {
            q = match arg {
                Arg::Text(v) => q.bind(v.clone()),
                Arg::Int(v) => q.bind(*v),
            };
        }
        q
    }

    pub(crate) async fn fetch_all<'e, E: Executor<'e, Database = Any>>(&self, e: E) -> Result<Vec<AnyRow>, StoreError> {
        Ok(self.query().fetch_all(e).await?)
    }

    pub(crate) async fn fetch_optional<'e, E: Executor<'e, Database = Any>>(
        &self,
        e: E,
    ) -> Result<Option<AnyRow>, StoreError> {
        Ok(self.query().fetch_optional(e).await?)
    }

    pub(crate) async fn fetch_one<'e, E: Executor<'e, Database = Any>>(&self, e: E) -> Result<AnyRow, StoreError> {
        Ok(self.query().fetch_one(e).await?)
    }

    /// Run a statement whose constraint errors need no mapping; returns rows affected.
    pub(crate) async fn execute<'e, E: Executor<'e, Database = Any>>(&self, e: E) -> Result<u64, StoreError> {
        Ok(self.query().execute(e).await?.rows_affected())
    }

    /// Run a write, mapping unique violations to `Conflict { conflict }` and
    /// FK/check violations to `Invalid`.
    pub(crate) async fn write<'e, E: Executor<'e, Database = Any>>(
        &self,
        e: E,
        conflict: &str,
    ) -> Result<u64, StoreError> {
        self.query()
            .execute(e)
            .await
            .map(|r| r.rows_affected())
            .map_err(|err| StoreError::from_write(err, conflict))
    }
}

/// Escape `%`, `_` and `\` for a `LIKE ... ESCAPE '\'` pattern.
pub(crate) fn escape_like(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// How a list query is shaped: the table, its columns and its sort key.
pub(crate) struct Listing<'a> {
    pub table: &'a str,
    pub columns: &'a str,
    /// The time column ordered on (descending), tie-broken by `id DESC`.
    pub order_by: &'a str,
}

impl Listing<'_> {
    /// Count and fetch one page. `filter` is a `WHERE` tail starting with
    /// `1=1`-compatible `AND ...` clauses (its placeholders number from `$1`).
    pub(crate) async fn page<'e, E, T>(
        &self,
        e: E,
        filter: &Sql,
        page: PageRequest,
        parse: impl Fn(&AnyRow) -> Result<T, StoreError>,
    ) -> Result<Page<T>, StoreError>
    where
        E: Executor<'e, Database = Any> + Copy,
    {
        let page = page.clamped();
        let mut count = Sql::new(&format!("SELECT COUNT(*) AS n FROM {} WHERE 1=1", self.table));
        count.push(&filter.text);
        count.args = filter.args.clone();
        let total = count.fetch_one(e).await?.int("n")?;

        let mut select = Sql::new(&format!("SELECT {} FROM {} WHERE 1=1", self.columns, self.table));
        select.push(&filter.text);
        select.args = filter.args.clone();
        select
            .push(&format!(" ORDER BY {} DESC, id DESC LIMIT ", self.order_by))
            .bind(i64::from(page.limit))
            .push(" OFFSET ")
            .bind(i64::from(page.offset));
        let rows = select.fetch_all(e).await?;
        let items = rows.iter().map(parse).collect::<Result<Vec<_>, _>>()?;
        Ok(Page {
            items,
            total: u64::try_from(total).map_err(|_| StoreError::corrupt("negative row count"))?,
            limit: page.limit,
            offset: page.offset,
        })
    }
}

/// Typed readers over a row; every failure is `Corrupt` naming the column.
pub(crate) trait RowExt {
    fn text(&self, col: &str) -> Result<String, StoreError>;
    fn opt_text(&self, col: &str) -> Result<Option<String>, StoreError>;
    fn int(&self, col: &str) -> Result<i64, StoreError>;
    fn opt_int(&self, col: &str) -> Result<Option<i64>, StoreError>;

    fn parse<T: FromStr>(&self, col: &str) -> Result<T, StoreError> {
        let s = self.text(col)?;
        s.parse().map_err(|_| bad(col))
    }
    fn opt_parse<T: FromStr>(&self, col: &str) -> Result<Option<T>, StoreError> {
        self.opt_text(col)?.map(|s| s.parse().map_err(|_| bad(col))).transpose()
    }
    fn ts(&self, col: &str) -> Result<Timestamp, StoreError> {
        self.int(col).map(domain::timestamp_from_millis)
    }
    fn opt_ts(&self, col: &str) -> Result<Option<Timestamp>, StoreError> {
        Ok(self.opt_int(col)?.map(domain::timestamp_from_millis))
    }
    fn flag(&self, col: &str) -> Result<bool, StoreError> {
        match self.int(col)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(bad(col)),
        }
    }
    fn json<T: DeserializeOwned>(&self, col: &str) -> Result<T, StoreError> {
        let s = self.text(col)?;
        serde_json::from_str(&s).map_err(|_| bad(col))
    }
    fn u32(&self, col: &str) -> Result<u32, StoreError> {
        u32::try_from(self.int(col)?).map_err(|_| bad(col))
    }
}

fn bad(col: &str) -> StoreError {
    StoreError::corrupt(format!("column `{col}` holds an invalid value"))
}

impl RowExt for AnyRow {
    fn text(&self, col: &str) -> Result<String, StoreError> {
        self.try_get::<String, _>(col).map_err(|_| bad(col))
    }
    fn opt_text(&self, col: &str) -> Result<Option<String>, StoreError> {
        self.try_get::<Option<String>, _>(col).map_err(|_| bad(col))
    }
    fn int(&self, col: &str) -> Result<i64, StoreError> {
        self.try_get::<i64, _>(col).map_err(|_| bad(col))
    }
    fn opt_int(&self, col: &str) -> Result<Option<i64>, StoreError> {
        self.try_get::<Option<i64>, _>(col).map_err(|_| bad(col))
    }
}

/// Serialize a value for a JSON TEXT column.
pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::invalid(format!("value cannot be stored as JSON: {e}")))
}

/// Lock a tenant row for the rest of the transaction so that check-then-write
/// sequences (double booking) are serialized per tenant. On SQLite the write
/// takes the database write lock up front, which also avoids `SQLITE_BUSY` on a
/// later read-to-write upgrade. Returns false when the tenant does not exist.
pub(crate) async fn lock_tenant<'e, E: Executor<'e, Database = Any>>(
    e: E,
    tenant: domain::TenantId,
) -> Result<bool, StoreError> {
    let n = Sql::new("UPDATE tenants SET updated_at = updated_at WHERE id = $1")
        .arg(text(tenant))
        .execute(e)
        .await?;
    Ok(n == 1)
}

/// Check that `id` is a row of `table` owned by `tenant`; `Invalid` otherwise.
pub(crate) async fn ensure_owned<'e, E: Executor<'e, Database = Any>>(
    e: E,
    table: &'static str,
    what: &'static str,
    id: impl Display,
    tenant: domain::TenantId,
) -> Result<(), StoreError> {
    let found = Sql::new(&format!("SELECT id FROM {table} WHERE id = $1 AND tenant_id = $2"))
        .arg(text(id))
        .arg(text(tenant))
        .fetch_optional(e)
        .await?;
    match found {
        Some(_) => Ok(()),
        None => Err(StoreError::invalid(format!("{what} does not exist in this tenant"))),
    }
}
