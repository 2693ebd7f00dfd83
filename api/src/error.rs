//! The API's single error type and its one `IntoResponse`.
//!
//! Guarantees: every error response is JSON `{"code": ..., "message": ...}`
//! with a stable snake_case `code`; internal causes (database, crypto, hashing)
//! are logged and never reach the client, and nothing here ever formats a
//! secret.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use switchboard_store::StoreError;

/// The JSON body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable machine-readable code: `bad_request`, `invalid_json`,
    /// `validation_failed`, `unauthorized`, `invalid_credentials`, `forbidden`,
    /// `csrf_failed`, `not_found`, `method_not_allowed`, `conflict`,
    /// `payload_too_large`, `rate_limited`, `timeout`, `not_ready`, `internal`.
    pub code: String,
    /// Human-readable explanation, safe to show to the caller.
    pub message: String,
}

/// Everything a handler, extractor or middleware can fail with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed (bad query string, bad ID in the path).
    #[error("{0}")]
    BadRequest(String),
    /// The body is not JSON, or not `application/json`.
    #[error("{0}")]
    InvalidJson(String),
    /// The JSON is well-formed but does not fit the schema or the rules.
    #[error("{0}")]
    Validation(String),
    /// No valid credentials (token, session) were presented.
    #[error("authentication required")]
    Unauthorized,
    /// Login failed. Deliberately identical for unknown email and wrong password.
    #[error("invalid email or password")]
    InvalidCredentials,
    /// Authenticated, but the role does not allow this.
    #[error("you do not have permission to do this")]
    Forbidden,
    /// Cookie-authenticated unsafe request without a matching `X-CSRF-Token`.
    #[error("missing or invalid CSRF token")]
    CsrfFailed,
    /// The thing does not exist, or is not visible to the caller.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The route exists but not for this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// A unique value is taken or a slot is already booked.
    #[error("{0}")]
    Conflict(String),
    /// The body exceeds `limits.max_body_bytes`.
    #[error("request body is too large")]
    PayloadTooLarge,
    /// Too many requests from this client; retry after the given seconds.
    #[error("too many requests, retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// The request took longer than `limits.request_timeout`.
    #[error("the request timed out")]
    Timeout,
    /// A dependency needed to serve is down.
    #[error("{0}")]
    NotReady(String),
    /// Anything unexpected; the cause was logged where it happened.
    #[error("internal error")]
    Internal,
}

impl ApiError {
    /// Log an unexpected failure and turn it into an opaque `internal` error.
    pub fn internal(context: &str, err: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %err, "{context}");
        ApiError::Internal
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) | ApiError::InvalidJson(_) => StatusCode::BAD_REQUEST,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unauthorized | ApiError::InvalidCredentials => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden | ApiError::CsrfFailed => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Timeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::Validation(_) => "validation_failed",
            ApiError::Unauthorized => "unauthorized",
            ApiError::InvalidCredentials => "invalid_credentials",
            ApiError::Forbidden => "forbidden",
            ApiError::CsrfFailed => "csrf_failed",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Timeout => "timeout",
            ApiError::NotReady(_) => "not_ready",
            ApiError::Internal => "internal",
        }
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code().to_owned(),
            message: self.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let mut response = (status, axum::Json(self.body())).into_response();
        if let ApiError::RateLimited { retry_after_secs } = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound { entity } => ApiError::NotFound(entity),
            // The store words these for users (and they never carry secrets).
            StoreError::Conflict { message } => ApiError::Conflict(message),
            StoreError::Invalid { message } => ApiError::Validation(message),
            other => ApiError::internal("store operation failed", &other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body_of(err: ApiError) -> (StatusCode, Option<HeaderValue>, ErrorBody) {
        let response = err.into_response();
        let status = response.status();
        let retry = response.headers().get(header::RETRY_AFTER).cloned();
        let bytes = response.into_body().collect().await.expect("body").to_bytes();
        (status, retry, serde_json::from_slice(&bytes).expect("json error body"))
    }

    #[tokio::test]
    async fn errors_render_as_json_with_stable_codes() {
        let (status, _, body) = body_of(ApiError::NotFound("agent")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body.code, "not_found");
        assert_eq!(body.message, "agent not found");

        let (status, retry, body) = body_of(ApiError::RateLimited { retry_after_secs: 7 }).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(body.code, "rate_limited");
        assert_eq!(retry, Some(HeaderValue::from(7u64)));
    }

    #[tokio::test]
    async fn internal_store_errors_do_not_leak_details() {
        let err: ApiError = StoreError::Corrupt {
            message: "row 42 has column secret_sauce".into(),
        }
        .into();
        let (status, _, body) = body_of(err).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(body.code, "internal");
        assert!(!body.message.contains("secret_sauce"));
    }

    #[test]
    fn store_errors_map_to_client_errors() {
        assert_eq!(
            ApiError::from(StoreError::Conflict {
                message: "email taken".into()
            }),
            ApiError::Conflict("email taken".into())
        );
        assert_eq!(
            ApiError::from(StoreError::Invalid { message: "x".into() }).code(),
            "validation_failed"
        );
        assert_eq!(ApiError::from(StoreError::Crypto).code(), "internal");
    }
}
