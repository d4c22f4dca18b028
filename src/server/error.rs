//! API errors: every error is a JSON body `{code, message}` with a stable `code`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::api::ErrorBody;

/// Why an answer is an error, as the response carries it for the log (`logging.rs`): set by
/// [`ApiError`] (its code and message) and the web UI's pages (`page`, and the page's title and
/// message).
#[derive(Debug, Clone)]
pub struct Cause {
    pub code: &'static str,
    pub message: String,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    /// 401: the caller is not authenticated, and why (no token, or a token the server does
    /// not know). It learns nothing more; the token itself is never echoed.
    pub fn unauthorized(why: &str) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", why)
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message)
    }
}

impl From<super::store::StoreError> for ApiError {
    fn from(e: super::store::StoreError) -> Self {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "store_failed",
            format!("the change was not recorded (nothing changed): {e}"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let cause = Cause {
            code: self.code,
            message: self.message.clone(),
        };
        let body = ErrorBody {
            code: self.code.to_string(),
            message: self.message,
        };
        let mut resp = (self.status, axum::Json(body)).into_response();
        resp.extensions_mut().insert(cause);
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("1"));
        }
        resp
    }
}
