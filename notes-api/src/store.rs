//! DynamoDB storage of notes: table keyed by `userId` (hash) + `noteId` (range).
//!
//! Every write is conditional: create never overwrites, update and delete never create, and update
//! applies only to the version the caller read (optimistic concurrency on the `version` attribute).

use std::collections::HashMap;

use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use aws_sdk_dynamodb::Client;

use crate::error::StoreError;
use crate::model::{Note, NoteDraft};

type Item = HashMap<String, AttributeValue>;

/// Result of a conditional update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateResult {
    /// The note was updated; this is its new state.
    Updated(Note),
    /// There is no such note for this user.
    Missing,
    /// The note exists but is no longer at the expected version.
    Conflict {
        /// The version the update was conditioned on.
        expected: u64,
        /// The version the note has now.
        current: u64,
    },
}

/// A page of `list` results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// The notes of this page, ordered by note id.
    pub notes: Vec<Note>,
    /// Note id to continue after, if there may be more.
    pub next: Option<String>,
}

/// The notes table.
#[derive(Debug, Clone)]
pub struct NotesStore {
    client: Client,
    table: String,
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn sdk_err<E, R>(operation: &'static str, err: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    StoreError::Dynamo {
        operation,
        detail: DisplayErrorContext(&err).to_string(),
    }
}

fn get_s(item: &Item, key: &str) -> Result<String, StoreError> {
    match item.get(key) {
        Some(AttributeValue::S(v)) => Ok(v.clone()),
        _ => Err(StoreError::Malformed(format!(
            "`{key}` missing or not a string"
        ))),
    }
}

fn get_n<T: std::str::FromStr>(item: &Item, key: &str) -> Result<T, StoreError> {
    match item.get(key) {
        Some(AttributeValue::N(v)) => v
            .parse()
            .map_err(|_| StoreError::Malformed(format!("`{key}` is not a valid number: {v}"))),
        _ => Err(StoreError::Malformed(format!(
            "`{key}` missing or not a number"
        ))),
    }
}

/// Reads a note from a DynamoDB item.
///
/// # Errors
/// [`StoreError::Malformed`] if an attribute is missing or has the wrong type.
pub fn note_from_item(item: &Item) -> Result<Note, StoreError> {
    let created_at = get_n(item, "createdAt")?;
    Ok(Note {
        user_id: get_s(item, "userId")?,
        note_id: get_s(item, "noteId")?,
        content: get_s(item, "content")?,
        attachment: match item.get("attachment") {
            None | Some(AttributeValue::Null(_)) => None,
            Some(_) => Some(get_s(item, "attachment")?),
        },
        created_at,
        updated_at: if item.contains_key("updatedAt") {
            get_n(item, "updatedAt")?
        } else {
            created_at
        },
        version: if item.contains_key("version") {
            get_n(item, "version")?
        } else {
            1
        },
    })
}

/// Writes a note as a DynamoDB item.
#[must_use]
pub fn note_to_item(note: &Note) -> Item {
    let mut item = Item::from([
        ("userId".to_owned(), s(&note.user_id)),
        ("noteId".to_owned(), s(&note.note_id)),
        ("content".to_owned(), s(&note.content)),
        ("createdAt".to_owned(), n(note.created_at)),
        ("updatedAt".to_owned(), n(note.updated_at)),
        ("version".to_owned(), n(note.version)),
    ]);
    if let Some(a) = &note.attachment {
        item.insert("attachment".to_owned(), s(a));
    }
    item
}

impl NotesStore {
    /// The store on `table` through `client`.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// The table name.
    #[must_use]
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Stores a new note; fails rather than overwrite an existing one with the same key.
    ///
    /// # Errors
    /// [`StoreError::Dynamo`] if the write fails (including the practically impossible id clash).
    pub async fn create(&self, note: &Note) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(note_to_item(note)))
            .condition_expression("attribute_not_exists(noteId)")
            .send()
            .await
            .map_err(|e| sdk_err("PutItem", e))?;
        Ok(())
    }

    /// The user's note with this id, if any (strongly consistent read).
    ///
    /// # Errors
    /// [`StoreError`] if the read fails or the item is malformed.
    pub async fn get(&self, user: &str, id: &str) -> Result<Option<Note>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("userId", s(user))
            .key("noteId", s(id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_err("GetItem", e))?;
        out.item().map(note_from_item).transpose()
    }

    /// One page of the user's notes, ordered by note id, continuing after `after`.
    ///
    /// # Errors
    /// [`StoreError`] if the query fails or an item is malformed.
    pub async fn list(
        &self,
        user: &str,
        limit: u32,
        after: Option<&str>,
    ) -> Result<Page, StoreError> {
        let start =
            after.map(|id| Item::from([("userId".into(), s(user)), ("noteId".into(), s(id))]));
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("userId = :u")
            .expression_attribute_values(":u", s(user))
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start)
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_err("Query", e))?;
        let notes = out
            .items()
            .iter()
            .map(note_from_item)
            .collect::<Result<Vec<_>, _>>()?;
        let next = match out.last_evaluated_key() {
            Some(key) => Some(get_s(key, "noteId")?),
            None => None,
        };
        Ok(Page { notes, next })
    }

    /// Replaces the note's content and attachment if it exists and is at version `expected`.
    ///
    /// # Errors
    /// [`StoreError`] if DynamoDB fails, or [`StoreError::Malformed`] if `expected` is
    /// `u64::MAX` (no next version); a failed condition is not an error but
    /// [`UpdateResult::Missing`] or [`UpdateResult::Conflict`].
    pub async fn update(
        &self,
        user: &str,
        id: &str,
        draft: &NoteDraft,
        expected: u64,
        now_ms: i64,
    ) -> Result<UpdateResult, StoreError> {
        let Some(next) = expected.checked_add(1) else {
            return Err(StoreError::Malformed(format!(
                "version {expected} is the largest a note can have; it cannot be updated"
            )));
        };
        let (set_attachment, remove) = match &draft.attachment {
            Some(_) => (", #attachment = :a", ""),
            None => ("", " REMOVE #attachment"),
        };
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("userId", s(user))
            .key("noteId", s(id))
            .update_expression(format!(
                "SET #content = :c, #updatedAt = :now, #version = :next{set_attachment}{remove}"
            ))
            .condition_expression("attribute_exists(#noteId) AND #version = :expected")
            .expression_attribute_names("#noteId", "noteId")
            .expression_attribute_names("#content", "content")
            .expression_attribute_names("#attachment", "attachment")
            .expression_attribute_names("#updatedAt", "updatedAt")
            .expression_attribute_names("#version", "version")
            .expression_attribute_values(":c", s(&draft.content))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":expected", n(expected))
            .expression_attribute_values(":next", n(next))
            .return_values(ReturnValue::AllNew);
        if let Some(a) = &draft.attachment {
            req = req.expression_attribute_values(":a", s(a));
        }
        match req.send().await {
            Ok(out) => match out.attributes() {
                Some(item) => Ok(UpdateResult::Updated(note_from_item(item)?)),
                None => Err(StoreError::Malformed(
                    "UpdateItem returned no attributes".into(),
                )),
            },
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                // Tell "gone" from "changed" with a consistent read.
                Ok(match self.get(user, id).await? {
                    None => UpdateResult::Missing,
                    Some(current) => UpdateResult::Conflict {
                        expected,
                        current: current.version,
                    },
                })
            }
            Err(err) => Err(sdk_err("UpdateItem", err)),
        }
    }

    /// Deletes the user's note. Returns `false` if there was no such note.
    ///
    /// # Errors
    /// [`StoreError::Dynamo`] if DynamoDB fails.
    pub async fn delete(&self, user: &str, id: &str) -> Result<bool, StoreError> {
        let res = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("userId", s(user))
            .key("noteId", s(id))
            .condition_expression("attribute_exists(noteId)")
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(err) => Err(sdk_err("DeleteItem", err)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_round_trip() {
        let note = Note {
            user_id: "us-east-1:abc".into(),
            note_id: "3f2b8c1e-9d4a-4b7e-8f00-1a2b3c4d5e6f".into(),
            content: "hello".into(),
            attachment: Some("file.png".into()),
            created_at: 1_700_000_000_000,
            updated_at: 1_700_000_000_500,
            version: 3,
        };
        assert_eq!(note_from_item(&note_to_item(&note)).expect("valid"), note);
        let plain = Note {
            attachment: None,
            ..note
        };
        let item = note_to_item(&plain);
        assert!(!item.contains_key("attachment"));
        assert_eq!(note_from_item(&item).expect("valid"), plain);
    }

    #[test]
    fn malformed_items_are_errors() {
        let mut item = note_to_item(&Note {
            user_id: "u".into(),
            note_id: "n".into(),
            content: "c".into(),
            attachment: None,
            created_at: 1,
            updated_at: 1,
            version: 1,
        });
        item.insert("createdAt".into(), s("yesterday"));
        assert!(matches!(
            note_from_item(&item),
            Err(StoreError::Malformed(_))
        ));
        item.remove("createdAt");
        assert!(matches!(
            note_from_item(&item),
            Err(StoreError::Malformed(_))
        ));
    }
}
