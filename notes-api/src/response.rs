//! JSON responses.

use lambda_http::http::{header, HeaderValue, StatusCode};
use lambda_http::{Body, Response};
use serde::Serialize;

/// A response with status `status` and `value` serialized as the JSON body.
#[must_use]
pub fn json<T: Serialize>(status: u16, value: &T) -> Response<Body> {
    match serde_json::to_string(value) {
        Ok(text) => with_body(status, Body::Text(text)),
        Err(_) => error(500, "internal server error"),
    }
}

/// An error response: `{"error": message}`.
#[must_use]
pub fn error(status: u16, message: &str) -> Response<Body> {
    let text = serde_json::json!({ "error": message }).to_string();
    with_body(status, Body::Text(text))
}

/// A `204 No Content` response.
#[must_use]
pub fn no_content() -> Response<Body> {
    let mut resp = Response::new(Body::Empty);
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp
}

fn with_body(status: u16, body: Body) -> Response<Body> {
    let mut resp = Response::new(body);
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_is_json_with_error_key() {
        let r = error(400, "bad \"thing\"");
        assert_eq!(r.status(), 400);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        let v: serde_json::Value = serde_json::from_slice(r.body().as_ref()).expect("json");
        assert_eq!(v, serde_json::json!({"error": "bad \"thing\""}));
    }

    #[test]
    fn no_content_is_empty() {
        let r = no_content();
        assert_eq!(r.status(), 204);
        assert!(r.body().is_empty());
    }
}
