//! Behaviours that need resolvers the real schema must never have, so they exist only in this
//! test: the N+1 detector against a deliberately unbatched resolver, and the panic guard against a
//! resolver that panics.

use async_graphql::{Context, EmptySubscription, MergedObject, Object, Schema};
use padel_bff::{
    auth::Credentials,
    cache::Cache,
    config::FieldSpans,
    graphql::extension::Observe,
    graphql::{context::RequestContext, QueryRoot},
};

use crate::helpers::{spawn_app, Backend};

#[derive(Default)]
struct Unbatched;

#[Object]
impl Unbatched {
    /// Loads each reservation with its own statement: the pattern DataLoaders exist to avoid.
    async fn reservations_one_by_one(
        &self,
        ctx: &Context<'_>,
        ids: Vec<i64>,
    ) -> async_graphql::Result<i32> {
        let request = ctx.data_unchecked::<RequestContext>();
        let mut found = 0;
        for id in ids {
            if request
                .store
                .reservation(id)
                .await
                .map_err(|e| async_graphql::Error::new(e.to_string()))?
                .is_some()
            {
                found += 1;
            }
        }
        Ok(found)
    }

    /// Panics, with a message that must never reach the client.
    async fn explodes(&self) -> Option<i32> {
        None.or_else(|| panic!("boom: SELECT secret FROM vault at src/secret.rs:42"))
    }
}

#[derive(MergedObject, Default)]
struct TestQuery(QueryRoot, Unbatched);

type TestSchema =
    Schema<padel_bff::graphql::Rooted<TestQuery>, async_graphql::EmptyMutation, EmptySubscription>;

/// A demo database, its store and cache, and the real query root plus the test-only resolvers,
/// with the telemetry extension (which holds the N+1 counting and the panic guard).
async fn test_schema() -> (
    crate::helpers::TestApp,
    padel_bff::store::Store,
    Cache,
    TestSchema,
) {
    let app = spawn_app(Backend::Sqlite).await;
    let settings = padel_bff::config::Settings::load_from(
        std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config")),
        &[("DATABASE_URL".into(), app_database(&app))],
    )
    .unwrap();
    let store = padel_bff::store::Store::connect(&settings).await.unwrap();
    let cache = Cache::new(&settings.cache);
    let schema = Schema::build(
        padel_bff::graphql::Rooted::new(TestQuery::default(), FieldSpans::Io),
        async_graphql::EmptyMutation,
        EmptySubscription,
    )
    .extension(Observe {
        field_spans: FieldSpans::Io,
    })
    .finish();
    (app, store, cache, schema)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_detector_names_the_unbatched_field_and_spares_dataloader_batches() {
    let (app, store, cache, schema) = test_schema().await;
    let owner = app.user_id("owner@demo.padel").await;

    let context = RequestContext::new(&store, &cache, Credentials::User(owner), None, 3);
    let stats = context.facts.clone();
    let response = schema
        .execute(
            async_graphql::Request::new("{ reservationsOneByOne(ids: [1, 2, 3, 4, 5]) }")
                .data(context),
        )
        .await;
    assert!(response.errors.is_empty(), "{:?}", response.errors);
    let suspected = stats.n_plus_one();
    assert_eq!(suspected.len(), 1, "{suspected:?}");
    assert_eq!(suspected[0].0, "reservationsOneByOne");
    assert!(suspected[0].1.contains("FROM reservations WHERE id = $1"));

    // The batched way: 200 entities through DataLoaders is not an N+1.
    let date = app.today + chrono::Duration::days(1);
    let context = RequestContext::new(&store, &cache, Credentials::User(owner), None, 3);
    let stats = context.facts.clone();
    let query = format!("{{ reservations(clubId: 1, date: \"{date}\") {{ court {{ club {{ name }} }} createdBy {{ email }} }} }}");
    let response = schema
        .execute(async_graphql::Request::new(query).data(context))
        .await;
    assert!(response.errors.is_empty(), "{:?}", response.errors);
    assert!(stats.n_plus_one().is_empty(), "{:?}", stats.n_plus_one());

    // Creators loaded at once by each of three lists (one statement per list, no loader delay)
    // are batches too, not three repeats of one statement. (The three lists' own statement is a
    // repeat, and is reported as one.)
    let context = RequestContext::new(&store, &cache, Credentials::User(owner), None, 3);
    let stats = context.facts.clone();
    let lists: String = (1..=3)
        .map(|d| {
            let date = app.today + chrono::Duration::days(d);
            format!("d{d}: reservations(clubId: 1, date: \"{date}\") {{ createdBy {{ email }} }} ")
        })
        .collect();
    let response = schema
        .execute(async_graphql::Request::new(format!("{{ {lists} }}")).data(context))
        .await;
    assert!(response.errors.is_empty(), "{:?}", response.errors);
    let creators = response.data.into_json().unwrap().to_string();
    assert!(creators.contains("@demo.padel"), "{creators}");
    let suspected = stats.n_plus_one();
    assert!(
        suspected.iter().all(|(_, sql)| !sql.contains("FROM users")),
        "{suspected:?}"
    );
    assert!(
        suspected
            .iter()
            .any(|(_, sql)| sql.contains("FROM reservations")),
        "{suspected:?}"
    );
}

fn app_database(app: &crate::helpers::TestApp) -> String {
    app.database_url()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_resolver_fails_its_field_with_a_generic_error_and_nothing_else() {
    let (app, store, cache, schema) = test_schema().await;
    let owner = app.user_id("owner@demo.padel").await;
    for _ in 0..3 {
        let context = RequestContext::new(&store, &cache, Credentials::User(owner), None, 3);
        let mut response = schema
            .execute(
                async_graphql::Request::new("{ explodes authContext { user { email } } }")
                    .data(context),
            )
            .await;
        padel_bff::graphql::assign_error_codes(&mut response);
        let json = serde_json::to_value(&response).unwrap();
        assert_eq!(json["errors"].as_array().unwrap().len(), 1, "{json}");
        assert_eq!(
            json["errors"][0]["extensions"]["code"],
            "INTERNAL_SERVER_ERROR"
        );
        assert_eq!(json["errors"][0]["message"], "internal server error");
        let text = json.to_string();
        for leak in ["boom", "SELECT", "secret", ".rs"] {
            assert!(!text.contains(leak), "{leak} leaked: {text}");
        }
        // The other root field still answers: one panic costs one field, not the request.
        assert_eq!(
            json["data"]["authContext"]["user"]["email"],
            "owner@demo.padel"
        );
    }
}
