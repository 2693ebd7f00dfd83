//! Extractors that parse requests at the edge and fail with [`ApiError`]
//! JSON instead of axum's plain-text rejections.
//!
//! Guarantees:
//! - [`Json`]: a body that is not `application/json` or not JSON is
//!   `invalid_json` (400); JSON that does not fit the type (wrong types,
//!   unknown fields, bad E.164, bad IDs) is `validation_failed` (422) with
//!   serde's explanation; an oversized body is `payload_too_large` (413).
//! - [`Patch`]: the same, and also yields the top-level field names so audit
//!   entries can say *what* changed without recording values.
//! - [`Path`] and [`Query`]: bad path IDs and bad query strings are
//!   `bad_request` (400).

use crate::error::ApiError;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// A JSON request body (or response) with API-shaped errors.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

/// A JSON body plus the names of its top-level fields (for audit entries).
#[derive(Debug, Clone)]
pub struct Patch<T> {
    pub value: T,
    pub fields: Vec<String>,
}

fn is_json_content_type(parts: &axum::http::HeaderMap) -> bool {
    let Some(value) = parts.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mime = value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

async fn json_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    if !is_json_content_type(req.headers()) {
        return Err(ApiError::InvalidJson(
            "expected `Content-Type: application/json`".into(),
        ));
    }
    Bytes::from_request(req, state).await.map_err(bytes_rejection)
}

fn bytes_rejection(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge
    } else {
        ApiError::BadRequest("the request body could not be read".into())
    }
}

fn serde_error(err: serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match err.classify() {
        Category::Syntax | Category::Eof | Category::Io => ApiError::InvalidJson(format!("malformed JSON: {err}")),
        Category::Data => ApiError::Validation(format!("invalid request body: {err}")),
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = json_bytes(req, state).await?;
        serde_json::from_slice(&bytes).map(Json).map_err(serde_error)
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Patch<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = json_bytes(req, state).await?;
        let raw: serde_json::Value = serde_json::from_slice(&bytes).map_err(serde_error)?;
        let fields = match &raw {
            serde_json::Value::Object(map) => map.keys().cloned().collect(),
            _ => Vec::new(),
        };
        let value = serde_json::from_value(raw).map_err(serde_error)?;
        Ok(Patch { value, fields })
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// Path parameters; a malformed ID is `bad_request`.
#[derive(Debug, Clone, Copy)]
pub struct Path<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| Path(v))
            .map_err(|rejection: PathRejection| match rejection {
                PathRejection::FailedToDeserializePathParams(_) => {
                    ApiError::BadRequest("the ID in the path is not a valid UUID".into())
                }
                other => ApiError::internal("path extraction failed", &other),
            })
    }
}

/// Query parameters; unknown or malformed parameters are `bad_request`.
#[derive(Debug, Clone, Default)]
pub struct Query<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| Query(v))
            .map_err(|rejection: QueryRejection| ApiError::BadRequest(rejection.body_text()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use switchboard_domain::NewContact;

    fn json_request(body: &str) -> Request {
        Request::builder()
            .method("POST")
            .uri("/")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_owned()))
            .expect("request")
    }

    #[tokio::test]
    async fn classifies_body_errors() {
        let err = Json::<NewContact>::from_request(json_request("{not json"), &())
            .await
            .unwrap_err();
        assert_eq!(err.code(), "invalid_json");
        let err = Json::<NewContact>::from_request(json_request(r#"{"name": 5}"#), &())
            .await
            .unwrap_err();
        assert_eq!(err.code(), "validation_failed");
        let err = Json::<NewContact>::from_request(json_request(r#"{"name":"a","phone":"12"}"#), &())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("phone number"), "{err}");
        let no_type = Request::builder()
            .method("POST")
            .uri("/")
            .body(Body::from("{}"))
            .expect("request");
        let err = Json::<NewContact>::from_request(no_type, &()).await.unwrap_err();
        assert_eq!(err.code(), "invalid_json");
    }

    #[tokio::test]
    async fn patch_reports_field_names() {
        let patch =
            Patch::<switchboard_domain::ContactUpdate>::from_request(json_request(r#"{"name":"x","email":null}"#), &())
                .await
                .expect("patch");
        assert_eq!(patch.fields, vec!["email".to_owned(), "name".to_owned()]);
        assert_eq!(patch.value.email, Some(None));
    }
}
