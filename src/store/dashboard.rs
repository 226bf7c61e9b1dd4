//! The dashboard's grouped reservation counts, in one statement, and their mapping to domain
//! [`Aggregate`]s.

use super::{
    models::{DashboardPart, DashboardRow},
    queries, Db, Store,
};
use crate::{
    domain::{
        dashboard::{Aggregate, Tally},
        period::DateRange,
        Period,
    },
    error::StoreError,
};

impl Store {
    /// Grouped reservation counts for a dashboard: `previous.from ..= current.to`, the two
    /// periods of kind `period` (Postgres reads its players rollup by period).
    pub async fn dashboard_aggregates(
        &self,
        club_id: i64,
        period: Period,
        current: DateRange,
        previous: DateRange,
    ) -> Result<Vec<Aggregate>, StoreError> {
        let sql = dialect!(self, queries::DASHBOARD_PG, queries::DASHBOARD_SQLITE);
        let postgres = matches!(self.db, Db::Postgres(_));
        let rows: Vec<DashboardRow> = on_pool!(self, sql, |pool| {
            let query = sqlx::query_as(sql)
                .bind(club_id)
                .bind(previous.from)
                .bind(current.from)
                .bind(current.to);
            // Only the rollups need the period kind; SQLite's scan has four parameters.
            let query = if postgres {
                query.bind(period_code(period))
            } else {
                query
            };
            query.fetch_all(pool).await
        })?;
        Ok(rows.into_iter().filter_map(to_aggregate).collect())
    }
}

/// The `period` column of `dashboard_period_players`.
fn period_code(period: Period) -> &'static str {
    match period {
        Period::Day => "D",
        Period::Week => "W",
        Period::Month => "M",
        Period::Year => "Y",
    }
}

fn to_aggregate(row: DashboardRow) -> Option<Aggregate> {
    let tally = Tally {
        count: row.n,
        cents: row.cents.unwrap_or(0),
        minutes: row.minutes.unwrap_or(0),
    };
    Some(match row.part {
        DashboardPart::Period => Aggregate::Period {
            current: row.key_int? == 1,
            status: row.status?,
            tally,
        },
        DashboardPart::Court => Aggregate::Court {
            court_id: row.key_int?,
            status: row.status?,
            tally,
        },
        DashboardPart::Day => Aggregate::Day {
            date: row.day?,
            status: row.status?,
            tally,
        },
        DashboardPart::Hour => Aggregate::Hour {
            hour: row.key_int?,
            count: row.n,
        },
        DashboardPart::Players => Aggregate::Players {
            current: row.key_int? == 1,
            count: row.n,
        },
        DashboardPart::Other => return None,
    })
}
