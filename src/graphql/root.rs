//! `Rooted`: the query and mutation roots wrapped so that every root field is observed (timed,
//! traced, panic-guarded: `graphql::extension::observe_field`) without an engine extension.
//! Root fields are where operations run; an extension would have to hook every field of every
//! response to see them (`telemetry.field_timing`).

use std::{borrow::Cow, future::Future, pin::Pin, sync::Arc};

use async_graphql::{
    parser::types::Field, registry::Registry, ContainerType, Context, ContextSelectionSet,
    ObjectType, OutputType, Positioned, ServerResult, Value,
};

use crate::{
    config::FieldSpans,
    graphql::{context::RequestContext, extension::observe_field},
};

/// A root type whose fields are observed. Same GraphQL type, same SDL as the wrapped root.
pub struct Rooted<T> {
    inner: T,
    field_spans: FieldSpans,
}

impl<T> Rooted<T> {
    /// Wraps a root; `field_spans` decides whether its fields get spans (`io` and `all` do).
    pub fn new(inner: T, field_spans: FieldSpans) -> Self {
        Rooted { inner, field_spans }
    }
}

impl<T: ContainerType> ContainerType for Rooted<T> {
    async fn resolve_field(&self, ctx: &Context<'_>) -> ServerResult<Option<Value>> {
        let name = ctx.item.node.name.node.as_str();
        let path: Arc<str> = match &ctx.path_node {
            Some(node) => Arc::from(node.to_string()),
            None => Arc::from(name),
        };
        let request = ctx.data_opt::<RequestContext>();
        // Boxed: the merged root's future holds every root resolver's state; moved by value
        // through the span, path and panic wrappers it cost a memcpy of kilobytes each time.
        let inner = Box::pin(self.inner.resolve_field(ctx));
        // A shareable field records what it reads apart, so its answer can serve others.
        let shared = request.and_then(|r| {
            r.facts
                .shared_recording(ctx.item.node.response_key().node.as_str())
        });
        let run: Pin<Box<dyn Future<Output = ServerResult<Option<Value>>> + Send + '_>> =
            match shared {
                Some(recording) => Box::pin(crate::cache::response::record(recording, inner)),
                None => inner,
            };
        observe_field(
            request,
            &T::type_name(),
            name,
            path,
            true,
            self.field_spans != FieldSpans::None,
            run,
        )
        .await
    }
}

impl<T: ContainerType> OutputType for Rooted<T> {
    fn type_name() -> Cow<'static, str> {
        T::type_name()
    }

    fn create_type_info(registry: &mut Registry) -> String {
        T::create_type_info(registry)
    }

    async fn resolve(
        &self,
        ctx: &ContextSelectionSet<'_>,
        _field: &Positioned<Field>,
    ) -> ServerResult<Value> {
        async_graphql::resolver_utils::resolve_container(ctx, self).await
    }
}

impl<T: ObjectType> ObjectType for Rooted<T> {}
