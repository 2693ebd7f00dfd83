//! Request spans carry method, path, request ID and, once authenticated,
//! tenant and user. Alone in its own test binary: a scoped subscriber races
//! with tracing's callsite-interest cache when other tests run in parallel
//! threads without one.

mod common;

use common::*;
use http::Method;
use switchboard_domain::Role;

/// Collects the fields recorded on `request` spans.
#[derive(Clone, Default)]
struct SpanFields(std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>);

impl tracing::field::Visit for SpanFields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if let Ok(mut fields) = self.0.lock() {
            fields.push((field.name().to_owned(), format!("{value:?}")));
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for SpanFields {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _id: &tracing::span::Id,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if attrs.metadata().name() == "request" {
            attrs.record(&mut self.clone());
        }
    }

    fn on_record(
        &self,
        _id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        values.record(&mut self.clone());
    }
}

#[tokio::test]
async fn request_spans_record_request_id_tenant_and_user() {
    use tracing_subscriber::layer::SubscriberExt as _;
    let fields = SpanFields::default();
    let _guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(fields.clone()));
    let t = TestApp::new().await;
    let agent = t.login_as(Some(t.tenant_a.id), Role::Agent).await;
    let res = t.call(Method::GET, "/api/v1/auth/me", &agent, None).await;
    let request_id = res.headers["x-request-id"].to_str().expect("ascii").to_owned();
    let recorded = fields.0.lock().expect("lock").clone();
    let has = |name: &str, value: &str| recorded.iter().any(|(n, v)| n == name && v == value);
    assert!(has("request_id", &request_id), "{recorded:?}");
    assert!(has("path", "/api/v1/auth/me"), "{recorded:?}");
    assert!(has("method", "GET"), "{recorded:?}");
    assert!(has("user_id", &agent.user.id.to_string()), "{recorded:?}");
    assert!(has("tenant_id", &t.tenant_a.id.to_string()), "{recorded:?}");
}
