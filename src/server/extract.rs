//! The request extractors the routes share: a JSON body read with the size limit and parsed
//! with the path of the first bad field, and a query string whose errors are JSON like every
//! other error (docs/api.md lists the codes).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, Query, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use super::app::App;
use super::error::ApiError;

/// A JSON body read with the size limit and parsed with the path of the first bad field.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<App>> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<App>) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    format!(
                        "the request body exceeds the limit of {} bytes",
                        state.body_limit
                    ),
                )
            } else {
                ApiError::bad_request("unreadable_body", e.body_text())
            }
        })?;
        let de = &mut serde_json::Deserializer::from_slice(&bytes);
        serde_path_to_error::deserialize(de).map(Body).map_err(|e| {
            let path = e.path().to_string();
            ApiError::bad_request("invalid_json", format!("at `{path}`: {}", e.inner()))
        })
    }
}

/// A query string parsed with a JSON error (`invalid_query`) instead of axum's plain text.
pub struct Q<T>(pub T);

impl<T: DeserializeOwned + Send> axum::extract::FromRequestParts<Arc<App>> for Q<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &Arc<App>,
    ) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| Q(q))
            .map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))
    }
}
