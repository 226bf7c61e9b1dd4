//! Query plans on Postgres with enough data for the planner to choose: the hot statements use the
//! intended indexes and never scan the reservations table sequentially.

use serde_json::Value;

use crate::helpers::{spawn_app, Backend, TestApp};

/// The plan as JSON, and every node type / index name in it.
async fn plan(app: &TestApp, sql: &str) -> (Vec<String>, Vec<String>, Vec<String>) {
    // EXPLAIN's JSON comes back as text through a tiny function (the test client decodes text).
    app.execute(
        "CREATE OR REPLACE FUNCTION explain_json(q text) RETURNS text LANGUAGE plpgsql AS \
         $$ DECLARE plan json; BEGIN EXECUTE 'EXPLAIN (FORMAT JSON) ' || q INTO plan; RETURN plan::text; END $$",
    )
    .await;
    let rows = app
        .text_rows(&format!(
            "SELECT explain_json('{}')",
            sql.replace('\'', "''")
        ))
        .await;
    let json: Value = serde_json::from_str(&rows[0][0]).unwrap();
    let mut nodes = Vec::new();
    let mut indexes = Vec::new();
    let mut seq_scans = Vec::new();
    fn walk(
        node: &Value,
        nodes: &mut Vec<String>,
        indexes: &mut Vec<String>,
        seq: &mut Vec<String>,
    ) {
        if let Some(kind) = node["Node Type"].as_str() {
            nodes.push(kind.to_string());
            if kind == "Seq Scan" {
                seq.push(node["Relation Name"].as_str().unwrap_or("").to_string());
            }
        }
        if let Some(index) = node["Index Name"].as_str() {
            indexes.push(index.to_string());
        }
        for child in node["Plans"].as_array().into_iter().flatten() {
            walk(child, nodes, indexes, seq);
        }
    }
    walk(&json[0]["Plan"], &mut nodes, &mut indexes, &mut seq_scans);
    (nodes, indexes, seq_scans)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_queries_use_their_indexes_and_never_scan_reservations() {
    let app = spawn_app(Backend::Postgres).await;
    // 200 000 more reservations over 40 extra courts and ~1.4 years, so table scans cost what they
    // cost in production.
    app.execute(
        "INSERT INTO courts (club_id, name, surface, is_indoor, is_active, is_maintenance, price_per_hour) \
         SELECT 1 + (g % 4), 'Bulk ' || g, 'acrylic', false, true, false, 20 FROM generate_series(1, 40) g",
    )
    .await;
    app.execute(
        "INSERT INTO reservations (club_id, court_id, created_by_id, date, start_time, end_time, status, price, created_at, updated_at) \
         SELECT c.club_id, c.id, 11 + (d % 40), DATE '2023-01-01' + d, TIME '08:00' + make_interval(mins => 90 * s), \
                TIME '08:00' + make_interval(mins => 90 * s + 90), 'completed', 30, now(), now() \
         FROM courts c, generate_series(0, 499) d, generate_series(0, 9) s WHERE c.name LIKE 'Bulk %'",
    )
    .await;
    app.execute("ANALYZE").await;
    let total = app.scalar_i64("SELECT COUNT(*) FROM reservations").await;
    assert!(total > 200_000, "{total}");

    let queries = [
        // Dashboards read the rollups (migrations 0004 and 0006), never reservations.
        (
            "dashboard club day totals",
            "SELECT date, status, SUM(reservations) FROM dashboard_day_club_totals WHERE club_id = 1 AND date >= DATE '2023-10-01' AND date <= DATE '2023-11-30' AND reservations <> 0 GROUP BY date, status",
            "dashboard_day_club_totals_pkey",
        ),
        (
            "dashboard courts",
            "SELECT court_id, status, SUM(reservations) FROM dashboard_day_totals WHERE club_id = 1 AND date >= DATE '2023-11-01' AND date <= DATE '2023-11-30' AND reservations <> 0 GROUP BY court_id, status",
            "dashboard_day_totals_read_idx|dashboard_day_totals_pkey",
        ),
        (
            "dashboard peak hours",
            "SELECT hour, SUM(reservations) FROM dashboard_hour_starts WHERE club_id = 1 AND date >= DATE '2023-11-01' AND date <= DATE '2023-11-30' AND reservations <> 0 GROUP BY hour",
            "dashboard_hour_starts_read_idx|dashboard_hour_starts_pkey",
        ),
        (
            "dashboard players",
            "SELECT period_start, COUNT(*) FROM dashboard_period_players WHERE club_id = 1 AND period = 'M' AND period_start IN (DATE '2023-10-01', DATE '2023-11-01') AND reservations > 0 GROUP BY period_start",
            "dashboard_period_players_read_idx|dashboard_period_players_pkey",
        ),
        (
            "availability busy intervals",
            "SELECT court_id, start_time, end_time FROM reservations WHERE club_id = 1 AND date = DATE '2023-11-20' AND status <> 'cancelled'",
            "reservations_club_date_idx",
        ),
        (
            "reservations of a day",
            "SELECT id FROM reservations WHERE club_id = 1 AND date = DATE '2023-11-20' ORDER BY start_time, court_id, id",
            "reservations_club_date_idx",
        ),
        (
            "idempotency lookup",
            "SELECT id FROM reservations WHERE created_by_id = 12 AND idempotency_key = 'k'",
            "reservations_idempotency_key",
        ),
    ];
    for (what, sql, index) in queries {
        let (nodes, indexes, seq_scans) = plan(&app, sql).await;
        assert!(
            !seq_scans.iter().any(|r| r == "reservations"),
            "{what}: sequential scan of reservations: {nodes:?}"
        );
        // `a|b`: either index serves it (a rollup's key or its covering read index).
        assert!(
            indexes
                .iter()
                .any(|i| index.split('|').any(|wanted| i == wanted)),
            "{what}: expected {index}, plan uses {indexes:?} ({nodes:?})"
        );
    }
}
