//! The OpenAPI 3 document, generated from the handlers' `#[utoipa::path]`
//! attributes, served at `/api/v1/openapi.json`, and a self-contained HTML
//! reference at `/api/v1/docs`.
//!
//! Guarantees: the spec is built once per process from the code, so it cannot
//! drift from the routes; the docs page is rendered server-side from that
//! same spec, loads no external assets (the engine runs offline), and escapes
//! every string it prints.

use crate::auth;
use crate::routes::{activity, health, resources, tenants, users};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::fmt::Write as _;
use std::sync::OnceLock;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Switchboard API",
        description = "REST API of the Switchboard voice/WhatsApp agent engine. Errors are JSON \
                       `{code, message}`. Authenticate with `Authorization: Bearer <jwt>` from \
                       `/auth/login`, or with the `sb_session` cookie plus `X-CSRF-Token` on unsafe methods."
    ),
    paths(
        health::healthz, health::readyz,
        auth::login, auth::logout, auth::me,
        tenants::list, tenants::create, tenants::get, tenants::update, tenants::delete,
        users::list, users::create, users::get, users::update, users::delete,
        resources::phone_numbers::list, resources::phone_numbers::create, resources::phone_numbers::get,
        resources::phone_numbers::update, resources::phone_numbers::delete,
        resources::agents::list, resources::agents::create, resources::agents::get,
        resources::agents::update, resources::agents::delete,
        resources::credentials::list, resources::credentials::create, resources::credentials::get,
        resources::credentials::update, resources::credentials::delete,
        resources::contacts::list, resources::contacts::create, resources::contacts::get,
        resources::contacts::update, resources::contacts::delete,
        resources::appointments::list, resources::appointments::create, resources::appointments::get,
        resources::appointments::update, resources::appointments::delete,
        activity::list_calls, activity::get_call, activity::get_transcript, activity::get_turns, activity::get_recording,
        activity::list_conversations, activity::get_conversation,
        activity::list_messages, activity::get_message,
        activity::list_audit,
    ),
    modifiers(&SecuritySchemes),
    tags(
        (name = "auth", description = "Login, logout and the current user"),
        (name = "tenants"), (name = "users"), (name = "phone-numbers"), (name = "agents"),
        (name = "credentials"), (name = "contacts"), (name = "appointments"),
        (name = "calls"), (name = "conversations"), (name = "messages"), (name = "audit"), (name = "health"),
    )
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session_cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                auth::SESSION_COOKIE,
                "Session cookie from /auth/login; unsafe methods also need X-CSRF-Token = sb_csrf cookie",
            ))),
        );
    }
}

/// The spec as JSON, built once.
pub fn spec_json() -> &'static Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    SPEC.get_or_init(|| serde_json::to_value(ApiDoc::openapi()).unwrap_or(Value::Null))
}

fn docs_html() -> &'static str {
    static HTML: OnceLock<String> = OnceLock::new();
    HTML.get_or_init(|| render_docs(spec_json()))
}

/// `GET /api/v1/openapi.json`
pub async fn openapi_json() -> Response {
    axum::Json(spec_json()).into_response()
}

/// `GET /api/v1/docs`
pub async fn docs() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'",
            ),
        ],
        docs_html(),
    )
        .into_response()
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A short name for a schema: its `$ref` target, `array of X`, or its type.
fn schema_name(schema: &Value) -> String {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        return reference.rsplit('/').next().unwrap_or(reference).to_owned();
    }
    if let Some(items) = schema.get("items") {
        return format!("array of {}", schema_name(items));
    }
    if let Some(all) = schema
        .get("allOf")
        .or_else(|| schema.get("oneOf"))
        .and_then(Value::as_array)
    {
        let names: Vec<String> = all.iter().map(schema_name).collect();
        return names.join(" | ");
    }
    match schema.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(Value::Array(types)) => types.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(" | "),
        _ => "object".to_owned(),
    }
}

fn content_schemas(content: Option<&Value>) -> String {
    let Some(Value::Object(content)) = content else {
        return String::new();
    };
    content
        .iter()
        .map(|(mime, media)| {
            let name = media.get("schema").map(schema_name).unwrap_or_default();
            format!("{} ({})", escape(&name), escape(mime))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

/// Render every path, method, summary, description, parameter and
/// request/response schema of `spec` as one HTML page.
pub fn render_docs(spec: &Value) -> String {
    let title = spec.pointer("/info/title").and_then(Value::as_str).unwrap_or("API");
    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title><style>\
         body{{font-family:system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem;color:#222}}\
         .op{{border:1px solid #ddd;border-radius:6px;margin:1rem 0;padding:.5rem 1rem}}\
         .m{{display:inline-block;min-width:4rem;font-weight:bold;text-transform:uppercase}}\
         code{{background:#f4f4f4;padding:0 .25rem}}table{{border-collapse:collapse}}td,th{{border:1px solid #ddd;padding:.2rem .5rem;text-align:left}}\
         </style></head><body><h1>{t}</h1>",
        t = escape(title)
    );
    if let Some(desc) = spec.pointer("/info/description").and_then(Value::as_str) {
        let _ = write!(html, "<p>{}</p>", escape(desc));
    }
    let _ = write!(
        html,
        "<p>Machine-readable spec: <a href=\"/api/v1/openapi.json\">openapi.json</a></p>"
    );
    let Some(Value::Object(paths)) = spec.get("paths") else {
        html.push_str("</body></html>");
        return html;
    };
    for (path, item) in paths {
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            let _ = write!(
                html,
                "<div class=\"op\" id=\"{id}\"><h3><span class=\"m\">{m}</span> <code>{p}</code></h3>",
                id = escape(&format!("{method}-{path}")),
                m = method,
                p = escape(path)
            );
            if let Some(summary) = op.get("summary").and_then(Value::as_str) {
                let _ = write!(html, "<p><strong>{}</strong></p>", escape(summary));
            }
            if let Some(desc) = op.get("description").and_then(Value::as_str) {
                let _ = write!(html, "<p>{}</p>", escape(desc));
            }
            if let Some(Value::Array(params)) = op.get("parameters") {
                html.push_str(
                    "<table><tr><th>parameter</th><th>in</th><th>required</th><th>schema</th><th>description</th></tr>",
                );
                for p in params {
                    let text = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or_default();
                    let required = p.get("required").and_then(Value::as_bool).unwrap_or(false);
                    let _ = write!(
                        html,
                        "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                        escape(text("name")),
                        escape(text("in")),
                        if required { "yes" } else { "no" },
                        escape(&p.get("schema").map(schema_name).unwrap_or_default()),
                        escape(text("description")),
                    );
                }
                html.push_str("</table>");
            }
            if let Some(body) = op.get("requestBody") {
                let _ = write!(html, "<p>Request body: {}</p>", content_schemas(body.get("content")));
            }
            if let Some(Value::Object(responses)) = op.get("responses") {
                html.push_str("<table><tr><th>status</th><th>description</th><th>body</th></tr>");
                for (status, response) in responses {
                    let desc = response.get("description").and_then(Value::as_str).unwrap_or_default();
                    let _ = write!(
                        html,
                        "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                        escape(status),
                        escape(desc),
                        content_schemas(response.get("content"))
                    );
                }
                html.push_str("</table>");
            }
            html.push_str("</div>");
        }
    }
    html.push_str("</body></html>");
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_escape_and_list_operations() {
        let spec = serde_json::json!({
            "info": {"title": "<T>"},
            "paths": {"/x/{id}": {"get": {
                "summary": "Get <x>",
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "ok", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}}}}
            }}}
        });
        let html = render_docs(&spec);
        assert!(html.contains("&lt;T&gt;"));
        assert!(!html.contains("<T>"));
        assert!(html.contains("Get &lt;x&gt;"));
        assert!(html.contains("<code>/x/{id}</code>"));
        assert!(html.contains("Thing (application/json)"));
        assert!(html.contains("<code>id</code>"));
    }
}
