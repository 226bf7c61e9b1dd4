//! Database monitoring: the indexes of our tables with their use, and whether the seven indexes
//! the core issue asks for are present (issue 16; `padel-bff doctor` will read the same).

use serde::Serialize;

use super::{queries, Db, Store};
use crate::error::StoreError;

/// The indexes the hot statements rely on (issue 2): table and leading columns, in order. They
/// are recognised by definition, not by name, so an operator's own equivalent counts.
pub const REQUIRED_INDEXES: [(&str, &str, &[&str]); 7] = [
    (
        "reservations_club_date_idx",
        "reservations",
        &["club_id", "date", "status", "court_id"],
    ),
    (
        "reservations_club_status_idx",
        "reservations",
        &["club_id", "status", "date", "created_by_id"],
    ),
    (
        "reservations_court_live_idx",
        "reservations",
        &["court_id", "date", "start_time", "end_time"],
    ),
    (
        "clubs_organization_idx",
        "clubs",
        &["organization_id", "is_active"],
    ),
    (
        "courts_club_idx",
        "courts",
        &["club_id", "is_active", "is_maintenance"],
    ),
    (
        "organization_memberships_user_idx",
        "organization_memberships",
        &["user_id", "organization_id", "is_active", "role"],
    ),
    (
        "club_schedules_club_idx",
        "club_schedules",
        &["club_id", "weekday", "is_active"],
    ),
];

/// One index of our tables.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IndexInfo {
    /// Table.
    pub table: String,
    /// Index name.
    pub name: String,
    /// Its columns, in order.
    pub columns: Vec<String>,
    /// `CREATE INDEX …` as the database reports it.
    pub definition: Option<String>,
    /// Postgres: index scans since the statistics were reset.
    pub scans: Option<i64>,
    /// Postgres: index entries returned by scans.
    pub tuples_read: Option<i64>,
    /// Postgres: live table rows fetched through it.
    pub tuples_fetched: Option<i64>,
    /// Postgres: size on disk.
    pub size_bytes: Option<i64>,
    /// Postgres: no scan since the statistics were reset.
    pub unused: Option<bool>,
}

/// A required index and whether some index of its table covers its columns, in order.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RequiredIndex {
    /// The name the migrations give it.
    pub name: &'static str,
    /// Table.
    pub table: &'static str,
    /// Columns, in order.
    pub columns: Vec<&'static str>,
    /// Present (under any name).
    pub present: bool,
    /// The index that provides it.
    pub provided_by: Option<String>,
}

/// The plan of one hot statement (SQLite: `EXPLAIN QUERY PLAN`).
#[derive(Debug, Clone, Serialize)]
pub struct StatementPlan {
    /// What the statement does.
    pub statement: &'static str,
    /// The plan's lines.
    pub plan: Vec<String>,
}

/// Everything `/api/management/bff/database/indexes/` shows.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IndexReport {
    /// `postgres` or `sqlite`.
    pub engine: &'static str,
    /// Postgres: when the statistics were last reset (`unused` counts from there).
    pub stats_reset: Option<chrono::DateTime<chrono::Utc>>,
    /// Every index of our tables.
    pub indexes: Vec<IndexInfo>,
    /// The seven indexes of the core issue.
    pub required: Vec<RequiredIndex>,
    /// SQLite: the plans of the hot statements.
    pub plans: Vec<StatementPlan>,
}

const PG_INDEXES: &str = "\
    SELECT s.relname AS table_name, s.indexrelname AS index_name, \
           ARRAY(SELECT a.attname::TEXT FROM unnest(i.indkey) WITH ORDINALITY AS k (attnum, ord) \
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum ORDER BY k.ord) AS columns, \
           pg_get_indexdef(s.indexrelid) AS definition, s.idx_scan, s.idx_tup_read, s.idx_tup_fetch, \
           pg_relation_size(s.indexrelid) AS size_bytes \
    FROM pg_stat_user_indexes s JOIN pg_index i ON i.indexrelid = s.indexrelid \
    WHERE s.schemaname = current_schema() ORDER BY s.relname, s.indexrelname";
const PG_STATS_RESET: &str =
    "SELECT stats_reset FROM pg_stat_database WHERE datname = current_database()";
const SQLITE_INDEXES: &str = "\
    SELECT m.tbl_name AS table_name, m.name AS index_name, m.sql AS definition, \
           (SELECT group_concat(name, ',') FROM (SELECT name FROM pragma_index_info(m.name) ORDER BY seqno)) AS columns \
    FROM sqlite_master m WHERE m.type = 'index' AND m.tbl_name NOT LIKE 'sqlite_%' AND m.tbl_name NOT LIKE '_sqlx%' \
    ORDER BY m.tbl_name, m.name";

type PgIndexRow = (
    String,
    String,
    Vec<String>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

impl Store {
    /// The index report of this database.
    pub async fn index_report(&self) -> Result<IndexReport, StoreError> {
        let (engine, stats_reset, indexes, plans) = match &self.db {
            Db::Postgres(pool) => {
                let rows: Vec<PgIndexRow> = self
                    .observed(PG_INDEXES, sqlx::query_as(PG_INDEXES).fetch_all(pool))
                    .await?;
                let reset: Option<Option<chrono::DateTime<chrono::Utc>>> = self
                    .observed(
                        PG_STATS_RESET,
                        sqlx::query_scalar(PG_STATS_RESET).fetch_optional(pool),
                    )
                    .await?;
                let indexes: Vec<IndexInfo> = rows
                    .into_iter()
                    .map(
                        |(table, name, columns, definition, scans, read, fetched, size)| {
                            IndexInfo {
                                table,
                                name,
                                columns,
                                definition,
                                unused: scans.map(|n| n == 0),
                                scans,
                                tuples_read: read,
                                tuples_fetched: fetched,
                                size_bytes: size,
                            }
                        },
                    )
                    .collect();
                ("postgres", reset.flatten(), indexes, Vec::new())
            }
            Db::Sqlite(pool) => {
                let rows: Vec<(String, String, Option<String>, Option<String>)> = self
                    .observed(
                        SQLITE_INDEXES,
                        sqlx::query_as(SQLITE_INDEXES).fetch_all(pool),
                    )
                    .await?;
                let indexes: Vec<IndexInfo> = rows
                    .into_iter()
                    .map(|(table, name, definition, columns)| IndexInfo {
                        table,
                        name,
                        columns: columns
                            .unwrap_or_default()
                            .split(',')
                            .filter(|c| !c.is_empty())
                            .map(String::from)
                            .collect(),
                        definition,
                        scans: None,
                        tuples_read: None,
                        tuples_fetched: None,
                        size_bytes: None,
                        unused: None,
                    })
                    .collect();
                let mut plans = Vec::new();
                for (statement, sql) in [
                    (
                        "availability: a club's busy intervals on a date",
                        queries::BUSY_INTERVALS,
                    ),
                    ("reservations of a club on a date", queries::RESERVATIONS_ON),
                    (
                        "dashboard: a club's reservations over two periods",
                        queries::DASHBOARD_SQLITE,
                    ),
                ] {
                    let explain = format!("EXPLAIN QUERY PLAN {sql}");
                    let lines: Vec<(i64, i64, i64, String)> =
                        sqlx::query_as(&explain).fetch_all(pool).await?;
                    plans.push(StatementPlan {
                        statement,
                        plan: lines.into_iter().map(|(_, _, _, detail)| detail).collect(),
                    });
                }
                ("sqlite", None, indexes, plans)
            }
        };
        let required = required_indexes(&indexes);
        Ok(IndexReport {
            engine,
            stats_reset,
            indexes,
            required,
            plans,
        })
    }
}

/// Which of [`REQUIRED_INDEXES`] some index provides: same table, the required columns leading.
pub fn required_indexes(indexes: &[IndexInfo]) -> Vec<RequiredIndex> {
    REQUIRED_INDEXES
        .iter()
        .map(|(name, table, columns)| {
            let provided_by = indexes
                .iter()
                .find(|i| {
                    i.table == *table
                        && i.columns.len() >= columns.len()
                        && i.columns.iter().zip(columns.iter()).all(|(a, b)| a == b)
                })
                .map(|i| i.name.clone());
            RequiredIndex {
                name,
                table,
                columns: columns.to_vec(),
                present: provided_by.is_some(),
                provided_by,
            }
        })
        .collect()
}
