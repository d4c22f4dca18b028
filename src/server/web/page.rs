//! What ends a web request early, for every page of the UI: a redirect, or a short page with
//! its status (the UI being off, a refusal, a conflict, a store failure). Once the person is
//! known, such a page keeps the header with their name and Sign out (`Page::signed_in`).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};

use super::html;
use crate::server::app::App;
use crate::server::sessions::Session;
use crate::server::web_settings::Web;

/// The web UI of `app`, or the 404 page that says it is off.
pub fn web_of(app: &App) -> Result<&Web, Page> {
    app.web.as_ref().ok_or_else(|| {
        Page::new(
            StatusCode::NOT_FOUND,
            "The web UI is off",
            "This server has no [serve.oidc] section, so nobody can sign in here. Approvers \
             decide with `hitl-gate approve` on the server host.",
        )
    })
}

/// A page that ends a request early: a redirect, or a short explanation with its status.
pub enum Page {
    Redirect(String),
    Status(StatusCode, &'static str, String),
    /// A whole page already rendered.
    Rendered(StatusCode, maud::Markup),
}

impl Page {
    pub fn new(status: StatusCode, title: &'static str, message: impl Into<String>) -> Page {
        Page::Status(status, title, message.into())
    }

    pub fn forbidden(message: impl Into<String>) -> Page {
        Page::new(StatusCode::FORBIDDEN, "Not allowed", message)
    }

    pub fn bad_request(message: impl Into<String>) -> Page {
        Page::new(StatusCode::BAD_REQUEST, "That did not work", message)
    }

    /// The page for someone signed in: a refusal keeps the header, their name and Sign out.
    pub fn signed_in(self, s: &Session) -> Page {
        match self {
            Page::Status(status, title, message) => {
                Page::Rendered(status, html::message_page_for(Some(s), title, &message))
            }
            other => other,
        }
    }
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        match self {
            // 303: after a form's POST the browser follows with a GET.
            Page::Redirect(to) => Redirect::to(&to).into_response(),
            Page::Status(status, title, message) => {
                let cause = crate::server::error::Cause {
                    code: "page",
                    message: format!("{title}: {message}"),
                };
                let mut r = (status, html::message_page(title, &message)).into_response();
                r.extensions_mut().insert(cause);
                r
            }
            Page::Rendered(status, page) => (status, page).into_response(),
        }
    }
}

impl From<crate::server::store::StoreError> for Page {
    fn from(e: crate::server::store::StoreError) -> Page {
        Page::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The server could not record that",
            format!("Nothing changed: {e}"),
        )
    }
}
