//! What every statement goes through: the request's [`StatementObserver`] (its count and the N+1
//! check), a `db.statement` span, and the `db.client.operation.duration` histogram.

use tracing::{field::Empty, Instrument};

use super::{Db, ReservationRow, Store};

/// Who counts a request's statements (the request's facts, above the store).
pub trait StatementObserver: Send + Sync {
    /// One statement ran (`in_batch`: inside a DataLoader batch). Returns the field path when
    /// this statement makes its shape a suspected N+1.
    fn statement(&self, sql: &'static str, in_batch: bool) -> Option<String>;
}

/// Rows a statement returned, for the span's `db.response.returned_rows`.
pub(super) trait RowCount {
    fn rows(&self) -> Option<u64>;
}

impl<T> RowCount for Vec<T> {
    fn rows(&self) -> Option<u64> {
        Some(self.len() as u64)
    }
}

impl<T> RowCount for Option<T> {
    fn rows(&self) -> Option<u64> {
        Some(u64::from(self.is_some()))
    }
}

impl RowCount for () {
    fn rows(&self) -> Option<u64> {
        None
    }
}

impl RowCount for i64 {
    fn rows(&self) -> Option<u64> {
        Some(1)
    }
}

impl RowCount for ReservationRow {
    fn rows(&self) -> Option<u64> {
        Some(1)
    }
}

impl Store {
    /// Records the size of a DataLoader batch.
    pub fn record_batch(&self, entity: &'static str, keys: usize) {
        if let Some(instruments) = &self.instruments {
            instruments.dataloader_batch.record(
                keys as u64,
                &[opentelemetry::KeyValue::new(
                    "graphql.dataloader.entity",
                    entity,
                )],
            );
        }
    }
    fn system(&self) -> &'static str {
        match self.db {
            Db::Postgres(_) => "postgresql",
            Db::Sqlite(_) => "sqlite",
        }
    }

    /// Counts a statement (and checks it for N+1) and opens its span.
    pub(super) fn statement(&self, sql: &'static str) -> tracing::Span {
        if let Some(observer) = &self.observer {
            if let Some(path) = observer.statement(sql, self.in_batch) {
                tracing::warn!(graphql.field.path = %path, db.query.text = sql, "suspected N+1: one statement repeated within a request outside a DataLoader batch");
                if let Some(instruments) = &self.instruments {
                    instruments.n_plus_one.add(
                        1,
                        &[opentelemetry::KeyValue::new("graphql.field.path", path)],
                    );
                }
            }
        }
        let operation = operation_name(sql);
        tracing::debug_span!(
            "db.statement",
            otel.name = operation,
            otel.kind = "client",
            db.system.name = self.system(),
            db.operation.name = operation,
            db.query.text = sql,
            db.response.returned_rows = Empty,
            otel.status_code = Empty,
        )
    }

    /// Runs one statement observed: its span, the request's SQL counter, its duration.
    pub(super) async fn observed<T: RowCount, E>(
        &self,
        sql: &'static str,
        run: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let span = self.statement(sql);
        let started = std::time::Instant::now();
        let result = run.instrument(span.clone()).await;
        self.finish_statement(
            sql,
            &span,
            started,
            result.as_ref().ok().map(RowCount::rows),
            result.is_ok(),
        );
        result
    }

    pub(super) fn finish_statement(
        &self,
        sql: &'static str,
        span: &tracing::Span,
        started: std::time::Instant,
        rows: Option<Option<u64>>,
        ok: bool,
    ) {
        if let Some(rows) = rows.flatten() {
            span.record("db.response.returned_rows", rows);
        }
        if !ok {
            span.record("otel.status_code", "ERROR");
        }
        if let Some(instruments) = &self.instruments {
            instruments.sql_duration.record(
                started.elapsed().as_secs_f64(),
                &[
                    opentelemetry::KeyValue::new("db.system.name", self.system()),
                    opentelemetry::KeyValue::new("db.operation.name", operation_name(sql)),
                ],
            );
        }
    }
}

/// `db.operation.name` of a statement: its first keyword (a CTE counts as SELECT).
fn operation_name(sql: &str) -> &'static str {
    let first = sql
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_uppercase();
    match first.as_str() {
        "SELECT" | "WITH" => "SELECT",
        "INSERT" => "INSERT",
        "UPDATE" => "UPDATE",
        "DELETE" => "DELETE",
        _ => "OTHER",
    }
}
