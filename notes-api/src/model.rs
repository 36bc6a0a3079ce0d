//! The note, the request bodies, the limits, and validation of raw input into typed values.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ApiError;

/// Maximum length of a note's `content`, in characters (Unicode scalar values).
pub const MAX_CONTENT_CHARS: usize = 10_000;
/// Maximum length of a note's `attachment` (an object key or URL), in characters.
pub const MAX_ATTACHMENT_CHARS: usize = 1_024;
/// Default page size of `GET /notes`.
pub const DEFAULT_PAGE_SIZE: u32 = 50;
/// Maximum page size of `GET /notes` (`?limit=`).
pub const MAX_PAGE_SIZE: u32 = 100;
/// Largest `expectedVersion` an update accepts: the version the update writes (one more) must
/// still fit in a `u64`.
pub const MAX_EXPECTED_VERSION: u64 = u64::MAX - 1;

/// A stored note, as returned by the API (JSON, camelCase keys).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Note {
    /// Owner: the caller's Cognito identity id.
    pub user_id: String,
    /// Note id: a UUID v4 in lowercase hyphenated form.
    pub note_id: String,
    /// The note's text, 1..=[`MAX_CONTENT_CHARS`] characters.
    pub content: String,
    /// Optional attachment reference, 1..=[`MAX_ATTACHMENT_CHARS`] characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<String>,
    /// Creation time, epoch milliseconds.
    pub created_at: i64,
    /// Last write time, epoch milliseconds (equals `created_at` until the first update).
    pub updated_at: i64,
    /// Optimistic-concurrency version: 1 at creation, +1 per successful update.
    pub version: u64,
}

/// Validated content of a note, from a create or update body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteDraft {
    /// Non-empty content within [`MAX_CONTENT_CHARS`].
    pub content: String,
    /// Non-empty attachment within [`MAX_ATTACHMENT_CHARS`], if any.
    pub attachment: Option<String>,
}

/// A validated update (`PUT /notes/{id}`): the new content and, optionally, the version the
/// caller last read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteChange {
    /// The note's new content and attachment (an absent attachment removes it).
    pub draft: NoteDraft,
    /// If set, the update applies only if the stored note still has this version.
    pub expected_version: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CreateBody {
    content: String,
    #[serde(default)]
    attachment: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct UpdateBody {
    content: String,
    #[serde(default)]
    attachment: Option<String>,
    /// Read as any JSON value so that every wrong value gets a message naming the field.
    #[serde(default)]
    expected_version: Option<serde_json::Value>,
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::BadRequest(msg.into())
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(bad(
            "request body is required: a JSON object with `content`",
        ));
    }
    let text =
        std::str::from_utf8(body).map_err(|_| bad("invalid request body: not valid UTF-8"))?;
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| bad(format!("invalid request body: {e}")))?;
    // serde would also accept a struct written as an array (`["text"]`); only objects are valid.
    if !value.is_object() {
        return Err(bad("invalid request body: expected a JSON object"));
    }
    T::deserialize(value).map_err(|e| bad(format!("invalid request body: {e}")))
}

fn validate_draft(content: String, attachment: Option<String>) -> Result<NoteDraft, ApiError> {
    if content.trim().is_empty() {
        return Err(bad("`content` must not be empty"));
    }
    let len = content.chars().count();
    if len > MAX_CONTENT_CHARS {
        return Err(bad(format!(
            "`content` is {len} characters long; the limit is {MAX_CONTENT_CHARS}"
        )));
    }
    if let Some(a) = &attachment {
        if a.trim().is_empty() {
            return Err(bad("`attachment` must not be empty (omit it or send null)"));
        }
        let len = a.chars().count();
        if len > MAX_ATTACHMENT_CHARS {
            return Err(bad(format!(
                "`attachment` is {len} characters long; the limit is {MAX_ATTACHMENT_CHARS}"
            )));
        }
    }
    Ok(NoteDraft {
        content,
        attachment,
    })
}

/// Parses and validates a `POST /notes` body: `{"content": string, "attachment"?: string|null}`.
///
/// # Errors
/// [`ApiError::BadRequest`] naming the problem: empty body, malformed JSON, wrong types, missing,
/// empty or too long `content`, empty or too long `attachment`, unknown fields.
pub fn parse_create(body: &[u8]) -> Result<NoteDraft, ApiError> {
    let raw: CreateBody = parse_json(body)?;
    validate_draft(raw.content, raw.attachment)
}

/// Parses and validates a `PUT /notes/{id}` body:
/// `{"content": string, "attachment"?: string|null, "expectedVersion"?: integer}`.
///
/// # Errors
/// As [`parse_create`]; also an `expectedVersion` that is not a whole number from 1 to
/// [`MAX_EXPECTED_VERSION`] (the message names the field).
pub fn parse_update(body: &[u8]) -> Result<NoteChange, ApiError> {
    let raw: UpdateBody = parse_json(body)?;
    let expected_version = match raw.expected_version {
        None | Some(serde_json::Value::Null) => None,
        Some(value) => Some(parse_expected_version(&value)?),
    };
    Ok(NoteChange {
        draft: validate_draft(raw.content, raw.attachment)?,
        expected_version,
    })
}

/// `expectedVersion` as a version an update can be conditioned on: 1..=[`MAX_EXPECTED_VERSION`].
fn parse_expected_version(value: &serde_json::Value) -> Result<u64, ApiError> {
    let serde_json::Value::Number(n) = value else {
        return Err(bad(format!(
            "invalid type for `expectedVersion`: expected a whole number from 1 to \
             {MAX_EXPECTED_VERSION}, got {value}"
        )));
    };
    match (n.as_u64(), n.as_f64()) {
        (Some(0), _) => Err(bad("`expectedVersion` must be at least 1, got 0")),
        (Some(v), _) if v <= MAX_EXPECTED_VERSION => Ok(v),
        (Some(_), _) => Err(bad(format!(
            "`expectedVersion` must be at most {MAX_EXPECTED_VERSION}, got {n}"
        ))),
        // Beyond u64 (JSON reads it as a float): too large, however it is written.
        (None, Some(f)) if f.fract() == 0.0 && f > 0.0 => Err(bad(format!(
            "`expectedVersion` must be at most {MAX_EXPECTED_VERSION}, got {n}"
        ))),
        _ => Err(bad(format!(
            "`expectedVersion` must be a whole number from 1 to {MAX_EXPECTED_VERSION}, got {n}"
        ))),
    }
}

/// Parses a note id from the path into its canonical form (lowercase, hyphenated UUID).
///
/// # Errors
/// [`ApiError::BadRequest`] if `raw` is not a UUID.
pub fn parse_note_id(raw: &str) -> Result<String, ApiError> {
    // Only the canonical 36-character form: other spellings of the same UUID would be different
    // DynamoDB keys.
    match Uuid::try_parse(raw) {
        Ok(id) if raw.len() == 36 => Ok(id.hyphenated().to_string()),
        _ => Err(bad(format!(
            "note id {raw:?} is not a UUID (expected e.g. 3f2b8c1e-9d4a-4b7e-8f00-1a2b3c4d5e6f)"
        ))),
    }
}

/// Parses `GET /notes` query parameters `limit` and `nextToken` into a page size and an optional
/// start key (the note id to continue after).
///
/// # Errors
/// [`ApiError::BadRequest`] if `limit` is not an integer in 1..=[`MAX_PAGE_SIZE`] or `nextToken`
/// is not a token this API returned.
pub fn parse_page(
    limit: Option<&str>,
    next_token: Option<&str>,
) -> Result<(u32, Option<String>), ApiError> {
    let size = match limit {
        None => DEFAULT_PAGE_SIZE,
        Some(raw) => match raw.parse::<u32>() {
            Ok(n) if (1..=MAX_PAGE_SIZE).contains(&n) => n,
            _ => {
                return Err(bad(format!(
                    "`limit` must be an integer from 1 to {MAX_PAGE_SIZE}, got {raw:?}"
                )))
            }
        },
    };
    let start = match next_token {
        None => None,
        Some(raw) => Some(
            parse_note_id(raw)
                .map_err(|_| bad(format!("`nextToken` {raw:?} is not a valid page token")))?,
        ),
    };
    Ok((size, start))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(r: Result<impl std::fmt::Debug, ApiError>) -> String {
        match r {
            Err(ApiError::BadRequest(m)) => m,
            other => panic!("expected BadRequest, got {other:?}"),
        }
    }

    #[test]
    fn create_accepts_content_and_optional_attachment() {
        let d = parse_create(br#"{"content":"hello"}"#).expect("valid");
        assert_eq!(d.content, "hello");
        assert_eq!(d.attachment, None);
        let d = parse_create(br#"{"content":"hi","attachment":"a.png"}"#).expect("valid");
        assert_eq!(d.attachment.as_deref(), Some("a.png"));
        let d = parse_create(br#"{"content":"hi","attachment":null}"#).expect("valid");
        assert_eq!(d.attachment, None);
    }

    #[test]
    fn create_rejects_bad_bodies_naming_the_problem() {
        assert!(err(parse_create(b"")).contains("body is required"));
        assert!(err(parse_create(b"  ")).contains("body is required"));
        assert!(err(parse_create(b"{not json")).contains("invalid request body"));
        assert!(err(parse_create(br#"["text"]"#)).contains("expected a JSON object"));
        assert!(err(parse_create(b"null")).contains("expected a JSON object"));
        assert!(err(parse_create(br#"{"content":5}"#)).contains("invalid type"));
        assert!(err(parse_create(br#"{"attachment":"x"}"#)).contains("missing field `content`"));
        assert!(err(parse_create(br#"{"content":"x","userId":"evil"}"#))
            .contains("unknown field `userId`"));
        assert!(err(parse_create(br#"{"content":""}"#)).contains("`content` must not be empty"));
        assert!(err(parse_create(br#"{"content":"  \n"}"#)).contains("must not be empty"));
        assert!(err(parse_create(br#"{"content":"x","attachment":""}"#)).contains("attachment"));
        assert!(err(parse_create(b"\xff\xfe")).contains("UTF-8"));
    }

    #[test]
    fn messages_match_the_readme() {
        assert_eq!(
            err(parse_create(br#"{"content":"x","owner":"bob"}"#)),
            "invalid request body: unknown field `owner`, expected `content` or `attachment`"
        );
        assert_eq!(
            err(parse_create(br#"{"attachment":"a"}"#)),
            "invalid request body: missing field `content`"
        );
        assert_eq!(
            err(parse_create(br#"{"content":42}"#)),
            "invalid request body: invalid type: integer `42`, expected a string"
        );
    }

    #[test]
    fn content_limit_counts_characters_not_bytes() {
        let at_limit = "é".repeat(MAX_CONTENT_CHARS);
        let body = serde_json::json!({ "content": at_limit }).to_string();
        assert!(parse_create(body.as_bytes()).is_ok());
        let over = "a".repeat(MAX_CONTENT_CHARS + 1);
        let body = serde_json::json!({ "content": over }).to_string();
        assert!(err(parse_create(body.as_bytes())).contains("limit is 10000"));
        let att = "a".repeat(MAX_ATTACHMENT_CHARS + 1);
        let body = serde_json::json!({ "content": "x", "attachment": att }).to_string();
        assert!(err(parse_create(body.as_bytes())).contains("limit is 1024"));
    }

    #[test]
    fn update_accepts_expected_version() {
        let c = parse_update(br#"{"content":"x","expectedVersion":3}"#).expect("valid");
        assert_eq!(c.expected_version, Some(3));
        assert!(err(parse_update(br#"{"content":"x","expectedVersion":0}"#)).contains("at least 1"));
        assert!(
            err(parse_update(br#"{"content":"x","expectedVersion":"3"}"#)).contains("invalid type")
        );
        assert!(err(parse_update(br#"{"content":"x","version":3}"#)).contains("unknown field"));
        let c = parse_update(br#"{"content":"x","expectedVersion":null}"#).expect("valid");
        assert_eq!(c.expected_version, None);
    }

    #[test]
    fn update_rejects_expected_versions_that_cannot_be_incremented() {
        let at_most = format!("`expectedVersion` must be at most {MAX_EXPECTED_VERSION}");
        for body in [
            r#"{"content":"x","expectedVersion":18446744073709551615}"#,
            r#"{"content":"x","expectedVersion":18446744073709551616}"#,
            r#"{"content":"x","expectedVersion":1e300}"#,
        ] {
            let message = err(parse_update(body.as_bytes()));
            assert!(message.starts_with(&at_most), "{body}: {message}");
        }
        for body in [
            r#"{"content":"x","expectedVersion":-1}"#,
            r#"{"content":"x","expectedVersion":1.5}"#,
        ] {
            let message = err(parse_update(body.as_bytes()));
            assert!(
                message.contains("`expectedVersion` must be a whole number"),
                "{body}: {message}"
            );
        }
        let message = err(parse_update(br#"{"content":"x","expectedVersion":[1]}"#));
        assert!(message.contains("`expectedVersion`"), "{message}");
        let c = parse_update(
            format!(r#"{{"content":"x","expectedVersion":{MAX_EXPECTED_VERSION}}}"#).as_bytes(),
        )
        .expect("valid");
        assert_eq!(c.expected_version, Some(MAX_EXPECTED_VERSION));
    }

    #[test]
    fn note_ids_must_be_canonical_uuids() {
        let id = "3F2B8C1E-9D4A-4B7E-8F00-1A2B3C4D5E6F";
        assert_eq!(parse_note_id(id).expect("uuid"), id.to_lowercase());
        assert!(err(parse_note_id("abc")).contains("not a UUID"));
        assert!(parse_note_id("3f2b8c1e9d4a4b7e8f001a2b3c4d5e6f").is_err());
        assert!(parse_note_id("").is_err());
    }

    #[test]
    fn page_parameters_are_validated() {
        assert_eq!(
            parse_page(None, None).expect("ok"),
            (DEFAULT_PAGE_SIZE, None)
        );
        assert_eq!(parse_page(Some("100"), None).expect("ok").0, 100);
        assert!(err(parse_page(Some("0"), None)).contains("`limit`"));
        assert!(err(parse_page(Some("101"), None)).contains("`limit`"));
        assert!(err(parse_page(Some("ten"), None)).contains("`limit`"));
        assert!(err(parse_page(None, Some("zzz"))).contains("`nextToken`"));
    }

    #[test]
    fn note_serializes_camel_case_without_absent_attachment() {
        let n = Note {
            user_id: "u".into(),
            note_id: "n".into(),
            content: "c".into(),
            attachment: None,
            created_at: 1,
            updated_at: 2,
            version: 1,
        };
        let v = serde_json::to_value(&n).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"userId":"u","noteId":"n","content":"c","createdAt":1,"updatedAt":2,"version":1})
        );
    }
}
