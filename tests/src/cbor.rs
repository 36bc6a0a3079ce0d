//! CBOR ↔ JSON for the Smithy RPC v2 CBOR protocol, as far as the CloudWatch operations the agent
//! and the tests call need it (`GetMetricData`, `PutMetricData`, `ListMetrics`): the [`gateway`]
//! uses it to put moto's JSON 1.0 CloudWatch behind the CBOR protocol current SDKs speak.
//!
//! - CBOR → JSON (requests): maps, arrays, text, numbers, booleans and null map one to one; a
//!   timestamp (tag 1) becomes its epoch seconds, which is how JSON 1.0 sends timestamps.
//!   Anything else (byte strings, other tags, non-finite floats, non-text map keys) is refused
//!   with a message: no operation we translate has it.
//! - JSON → CBOR (responses): the same, with the schema knowledge JSON lacks. Numbers under a
//!   timestamp member ([`is_timestamp_member`]) are written as tag 1; numbers under a `double`
//!   member ([`is_double_member`]) as floats, because the SDK's decoder reads a `double` only
//!   from a CBOR float; other numbers keep JSON's integer or float form.
//!
//! [`gateway`]: crate::gateway

use minicbor::data::{IanaTag, Tag, Type};
use serde_json::{Map, Number, Value};

/// How deep a document may nest before it is refused (a bound on recursion).
const MAX_DEPTH: usize = 64;

/// Members of CloudWatch's shapes that are timestamps (sent as CBOR tag 1).
#[must_use]
pub fn is_timestamp_member(name: &str) -> bool {
    name.ends_with("Timestamp")
        || name.ends_with("Timestamps")
        || matches!(name, "StartTime" | "EndTime" | "LastModified")
}

/// Members of CloudWatch's shapes that are `double`s (or lists of them).
#[must_use]
pub fn is_double_member(name: &str) -> bool {
    matches!(
        name,
        "Values"
            | "Value"
            | "Counts"
            | "Sum"
            | "Average"
            | "Minimum"
            | "Maximum"
            | "SampleCount"
            | "Threshold"
    )
}

/// Decodes one CBOR document into JSON.
///
/// # Errors
/// Malformed CBOR, trailing bytes, or an item JSON 1.0 has no form for (see the module doc).
pub fn to_json(bytes: &[u8]) -> Result<Value, String> {
    let mut d = minicbor::Decoder::new(bytes);
    let value = item(&mut d, 0)?;
    if d.position() != bytes.len() {
        return Err(format!(
            "{} trailing bytes after the CBOR document",
            bytes.len() - d.position()
        ));
    }
    Ok(value)
}

fn cbor_err(e: minicbor::decode::Error) -> String {
    format!("malformed CBOR: {e}")
}

fn number(x: f64, at: usize) -> Result<Value, String> {
    Number::from_f64(x)
        .map(Value::Number)
        .ok_or_else(|| format!("non-finite float {x} at byte {at} has no JSON form"))
}

fn item(d: &mut minicbor::Decoder<'_>, depth: usize) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err(format!("CBOR nested deeper than {MAX_DEPTH}"));
    }
    let at = d.position();
    match d.datatype().map_err(cbor_err)? {
        Type::Bool => d.bool().map(Value::Bool).map_err(cbor_err),
        Type::Null | Type::Undefined => {
            d.skip().map_err(cbor_err)?;
            Ok(Value::Null)
        }
        Type::U8 | Type::U16 | Type::U32 | Type::U64 => d.u64().map(Value::from).map_err(cbor_err),
        Type::I8 | Type::I16 | Type::I32 | Type::I64 | Type::Int => {
            let n = d.i128().map_err(cbor_err)?;
            i64::try_from(n)
                .map(Value::from)
                .map_err(|_| format!("integer {n} at byte {at} is out of JSON 1.0's range"))
        }
        Type::F16 | Type::F32 | Type::F64 => number(d.f64().map_err(cbor_err)?, at),
        Type::String | Type::StringIndef => text(d).map(Value::String),
        Type::Array | Type::ArrayIndef => {
            let len = d.array().map_err(cbor_err)?;
            let mut out = Vec::new();
            while more(d, len, out.len())? {
                out.push(item(d, depth + 1)?);
            }
            Ok(Value::Array(out))
        }
        Type::Map | Type::MapIndef => {
            let len = d.map().map_err(cbor_err)?;
            let mut out = Map::new();
            let mut n = 0;
            while more(d, len, n)? {
                let key_at = d.position();
                if !matches!(
                    d.datatype().map_err(cbor_err)?,
                    Type::String | Type::StringIndef
                ) {
                    return Err(format!("map key at byte {key_at} is not text"));
                }
                let key = text(d)?;
                out.insert(key, item(d, depth + 1)?);
                n += 1;
            }
            Ok(Value::Object(out))
        }
        Type::Tag => {
            let tag = d.tag().map_err(cbor_err)?;
            if tag != Tag::from(IanaTag::Timestamp) {
                return Err(format!(
                    "CBOR tag {} at byte {at} is not translated",
                    tag.as_u64()
                ));
            }
            match item(d, depth + 1)? {
                n @ Value::Number(_) => Ok(n),
                other => Err(format!("timestamp at byte {at} is {other}, not a number")),
            }
        }
        other => Err(format!(
            "CBOR {other:?} at byte {at} has no JSON 1.0 form here"
        )),
    }
}

/// Whether a container of `len` items (`None`: indefinite, ended by a break) has another after
/// `seen`; consumes the break.
fn more(d: &mut minicbor::Decoder<'_>, len: Option<u64>, seen: usize) -> Result<bool, String> {
    match len {
        Some(n) => Ok(u64::try_from(seen).is_ok_and(|seen| seen < n)),
        None if d.datatype().map_err(cbor_err)? == Type::Break => {
            d.skip().map_err(cbor_err)?;
            Ok(false)
        }
        None => Ok(true),
    }
}

fn text(d: &mut minicbor::Decoder<'_>) -> Result<String, String> {
    let mut out = String::new();
    for piece in d.str_iter().map_err(cbor_err)? {
        out.push_str(piece.map_err(cbor_err)?);
    }
    Ok(out)
}

/// The kind of scalar a JSON number stands for, from the member it is under.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Member {
    Timestamp,
    Double,
    Plain,
}

impl Member {
    fn of(name: &str) -> Self {
        if is_timestamp_member(name) {
            Self::Timestamp
        } else if is_double_member(name) {
            Self::Double
        } else {
            Self::Plain
        }
    }
}

/// Encodes a JSON document as CBOR (see the module doc for numbers).
#[must_use]
pub fn from_json(value: &Value) -> Vec<u8> {
    let mut e = minicbor::Encoder::new(Vec::new());
    write(&mut e, value, Member::Plain);
    e.into_writer()
}

fn write(e: &mut minicbor::Encoder<Vec<u8>>, value: &Value, member: Member) {
    // Writing to a Vec cannot fail: the results below are Infallible errors.
    let _ = match value {
        Value::Null => e.null(),
        Value::Bool(b) => e.bool(*b),
        Value::String(s) => e.str(s),
        Value::Number(n) => {
            if member == Member::Timestamp {
                let _ = e.tag(IanaTag::Timestamp);
            }
            match (n.as_i64(), n.as_u64()) {
                (Some(i), _) if member != Member::Double => e.i64(i),
                (None, Some(u)) if member != Member::Double => e.u64(u),
                _ => e.f64(n.as_f64().unwrap_or(f64::NAN)),
            }
        }
        Value::Array(items) => {
            let _ = e.array(items.len() as u64);
            for v in items {
                write(e, v, member);
            }
            Ok(&mut *e)
        }
        Value::Object(map) => {
            let _ = e.map(map.len() as u64);
            for (k, v) in map {
                let _ = e.str(k);
                write(e, v, Member::of(k));
            }
            Ok(&mut *e)
        }
    };
}
