//! Tenant isolation and role checks with users of both organizations.

use serde_json::json;

use crate::on_both_backends;

on_both_backends!(a_foreign_club_answers_exactly_like_a_missing_one, |app| {
    let outsider = app.token("owner2@demo.padel").await;
    let date = app.today.to_string();
    for query in [
        "query($id: ID!, $d: Date!) { courtAvailability(clubId: $id, date: $d) { date } }",
        "query($id: ID!, $d: Date!) { reservations(clubId: $id, date: $d) { id } }",
        "query($id: ID!) { club(id: $id) { name } }",
        "query($id: ID!) { dashboard(clubId: $id) { from } }",
    ] {
        let foreign = app
            .graphql(Some(&outsider), query, json!({"id": "1", "d": date}))
            .await;
        let missing = app
            .graphql(Some(&outsider), query, json!({"id": "987654", "d": date}))
            .await;
        assert_eq!(foreign.code(), "NOT_FOUND", "{query}");
        // extensions.cache (a development diagnostic) aside, the answers are identical.
        assert_eq!(foreign.body["data"], missing.body["data"], "{query}");
        assert_eq!(
            foreign.body["errors"], missing.body["errors"],
            "a foreign id must look like a missing one: {query}"
        );
    }
    let reservation = app
        .scalar_i64("SELECT MIN(id) FROM reservations WHERE club_id = 1")
        .await;
    let reply = app
        .graphql(
            Some(&outsider),
            "query($id: ID!) { reservation(id: $id) { id } }",
            json!({"id": reservation.to_string()}),
        )
        .await;
    assert_eq!(reply.code(), "NOT_FOUND");
    let reply = app
        .graphql(
            Some(&outsider),
            "mutation($id: ID!) { cancelReservation(id: $id) { id } }",
            json!({"id": reservation.to_string()}),
        )
        .await;
    assert_eq!(reply.code(), "NOT_FOUND");
    let reply = app
        .graphql(
            Some(&outsider),
            "mutation { setCourtMaintenance(courtId: 1, inMaintenance: true) { id } }",
            json!({}),
        )
        .await;
    assert_eq!(reply.code(), "NOT_FOUND");
    // The organization's clubs list only what the caller may see.
    let reply = app
        .graphql(
            Some(&outsider),
            "{ authContext { organizations { organization { clubs { id } } } } }",
            json!({}),
        )
        .await;
    let clubs = &reply.ok()["authContext"]["organizations"][0]["organization"]["clubs"];
    assert_eq!(clubs, &json!([{"id": "3"}, {"id": "4"}]));
});

on_both_backends!(
    players_see_their_own_reservations_and_staff_see_all,
    |app| {
        let date = (app.today + chrono::Duration::days(1)).to_string();
        let query =
            "query($d: Date!) { reservations(clubId: 1, date: $d) { id createdBy { email } } }";
        let staff = app.token("staff@demo.padel").await;
        let all = app.graphql(Some(&staff), query, json!({"d": date})).await;
        let total = app
            .scalar_i64(&format!(
                "SELECT COUNT(*) FROM reservations WHERE club_id = 1 AND date = '{date}'"
            ))
            .await;
        assert_eq!(
            all.ok()["reservations"].as_array().unwrap().len() as i64,
            total
        );
        // Give the demo player a booking of their own on that day.
        let player_id = app.user_id("player@demo.padel").await;
        app.execute(&format!("UPDATE reservations SET created_by_id = {player_id} WHERE id = (SELECT MIN(id) FROM reservations WHERE club_id = 1 AND date = '{date}')")).await;
        let player = app.token("player@demo.padel").await;
        let own = app.graphql(Some(&player), query, json!({"d": date})).await;
        let own = own.ok()["reservations"].as_array().unwrap().clone();
        let expected = app.scalar_i64(&format!("SELECT COUNT(*) FROM reservations WHERE club_id = 1 AND date = '{date}' AND created_by_id = {player_id}")).await;
        assert!(expected >= 1 && expected < total);
        assert_eq!(own.len() as i64, expected);
        assert!(own
            .iter()
            .all(|r| r["createdBy"]["email"] == "player@demo.padel"));
        // Another player's reservation is NOT_FOUND for a player, visible to staff.
        let other = app.scalar_i64(&format!("SELECT MIN(id) FROM reservations WHERE club_id = 1 AND created_by_id <> {player_id}")).await;
        let q = "query($id: ID!) { reservation(id: $id) { id } }";
        assert_eq!(
            app.graphql(Some(&player), q, json!({"id": other.to_string()}))
                .await
                .code(),
            "NOT_FOUND"
        );
        assert_eq!(
            app.graphql(Some(&staff), q, json!({"id": other.to_string()}))
                .await
                .ok()["reservation"]["id"],
            other.to_string()
        );
    }
);

on_both_backends!(court_maintenance_needs_a_manager, |app| {
    let mutation = "mutation($on: Boolean!) { setCourtMaintenance(courtId: 1, inMaintenance: $on) { id inMaintenance } }";
    for email in ["staff@demo.padel", "player@demo.padel"] {
        let token = app.token(email).await;
        assert_eq!(
            app.graphql(Some(&token), mutation, json!({"on": true}))
                .await
                .code(),
            "FORBIDDEN",
            "{email}"
        );
    }
    for email in [
        "manager@demo.padel",
        "orgadmin@demo.padel",
        "admin@demo.padel",
    ] {
        let token = app.token(email).await;
        let reply = app
            .graphql(Some(&token), mutation, json!({"on": true}))
            .await;
        assert_eq!(
            reply.ok()["setCourtMaintenance"]["inMaintenance"],
            true,
            "{email}"
        );
    }
    let in_maintenance = app
        .scalar_i64("SELECT COUNT(*) FROM courts WHERE id = 1 AND is_maintenance")
        .await;
    assert_eq!(in_maintenance, 1);
});

on_both_backends!(failed_fields_are_present_as_null_as_the_spec_says, |app| {
    let owner = app.token("owner@demo.padel").await;
    // A visible club and an invisible one (organization 2): the failed nullable field is null.
    let reply = app
        .graphql(
            Some(&owner),
            r#"{ a: club(id: "1") { id } b: club(id: "3") { id } }"#,
            json!({}),
        )
        .await;
    assert_eq!(
        reply.body["data"],
        json!({"a": {"id": "1"}, "b": null}),
        "{}",
        reply.body
    );
    assert_eq!(reply.code(), "NOT_FOUND");
    assert_eq!(reply.body["errors"][0]["path"], json!(["b"]));
    // The only root field failed: `data` holds it as null, and a foreign id still answers
    // exactly like a missing one.
    let foreign = app
        .graphql(Some(&owner), r#"{ club(id: "3") { id } }"#, json!({}))
        .await;
    let missing = app
        .graphql(Some(&owner), r#"{ club(id: "424242") { id } }"#, json!({}))
        .await;
    assert_eq!(
        foreign.body["data"],
        json!({"club": null}),
        "{}",
        foreign.body
    );
    assert_eq!(foreign.body["data"], missing.body["data"]);
    assert_eq!(
        foreign.body["errors"][0]["message"],
        missing.body["errors"][0]["message"]
    );
    // A failed non-null field (dashboard) nulls the whole of `data`.
    let reply = app
        .graphql(
            Some(&owner),
            r#"{ a: club(id: "1") { id } d: dashboard(clubId: "3") { from } }"#,
            json!({}),
        )
        .await;
    assert!(reply.body["data"].is_null(), "{}", reply.body);
    assert_eq!(reply.code(), "NOT_FOUND");
});
