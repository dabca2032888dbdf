//! Reading script and command replies ([`redis::Value`]) without trusting their shape, and
//! turning error replies into [`StoreError`]s.

use super::codec::{Fields, corrupt};
use crate::{Result, StoreError};
use redis::{ErrorKind, RedisError, ServerError, Value};

/// The error code of the scripts' own error replies (see `scripts/lib.lua`).
const BERTH_CODE: &str = "BERTH";

/// An error for a reply that does not have the shape the script documents.
pub fn unexpected(what: &str, value: &Value) -> StoreError {
    StoreError::Redis(RedisError::from((
        ErrorKind::UnexpectedReturnType,
        "unexpected reply",
        format!("{what}: {value:?}"),
    )))
}

/// The reply as text (bulk, simple or integer), if it is one.
pub fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Okay => Some("OK".to_owned()),
        Value::Int(n) => Some(n.to_string()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

/// The reply as text, or an error naming what was expected.
pub fn expect_text(what: &str, value: &Value) -> Result<String> {
    text(value).ok_or_else(|| unexpected(what, value))
}

/// The reply's items, if it is an array (RESP2) or a set (RESP3).
pub fn items(value: Value) -> Result<Vec<Value>> {
    match value {
        Value::Array(items) | Value::Set(items) => Ok(items),
        Value::Nil => Ok(Vec::new()),
        other => Err(unexpected("an array", &other)),
    }
}

/// A hash as HGETALL returns it: a flat array `field, value, ...` (RESP2) or a map (RESP3).
pub fn fields(value: Value) -> Result<Fields> {
    let pairs: Vec<(Value, Value)> = match value {
        Value::Map(pairs) => pairs,
        Value::Array(flat) => {
            if flat.len() % 2 != 0 {
                return Err(unexpected("a flat field list", &Value::Array(flat)));
            }
            let mut it = flat.into_iter();
            std::iter::from_fn(|| Some((it.next()?, it.next()?))).collect()
        }
        Value::Nil => Vec::new(),
        other => return Err(unexpected("a hash", &other)),
    };
    pairs
        .into_iter()
        .map(|(field, value)| {
            Ok((
                expect_text("a field", &field)?,
                expect_text("a value", &value)?,
            ))
        })
        .collect()
}

/// A tagged script reply `{tag, ...}`: the tag and the rest.
pub fn tagged(value: Value) -> Result<(String, Vec<Value>)> {
    let mut parts = items(value)?.into_iter();
    let tag = parts
        .next()
        .ok_or_else(|| unexpected("a tagged reply", &Value::Nil))?;
    let tag = expect_text("a reply tag", &tag)?;
    Ok((tag, parts.collect()))
}

/// The `index`th part of a tagged reply.
pub fn part(parts: &mut [Value], index: usize, what: &str) -> Result<Value> {
    parts
        .get_mut(index)
        .map(std::mem::take)
        .ok_or_else(|| unexpected(what, &Value::Nil))
}

/// True for the NOSCRIPT error reply (the server lost its script cache).
pub fn is_noscript(value: &Value) -> bool {
    matches!(value, Value::ServerError(e) if e.code() == "NOSCRIPT")
}

/// The error a failed reply stands for: the scripts' `BERTH invalid ...` is
/// [`StoreError::InvalidArgument`], `BERTH corrupt KEY FIELD problem` is
/// [`StoreError::Corrupt`]; anything else is [`StoreError::Redis`].
pub fn server_error(error: &ServerError) -> StoreError {
    let detail = error.details().unwrap_or_default();
    let berth = if error.code() == BERTH_CODE {
        Some(detail)
    } else {
        // A server that prefixes ERR keeps our code as the first word of the detail.
        detail.strip_prefix("BERTH ")
    };
    match berth {
        Some(message) => berth_error(message),
        None => StoreError::Redis(RedisError::from(error.clone())),
    }
}

fn berth_error(message: &str) -> StoreError {
    if let Some(rest) = message.strip_prefix("corrupt ") {
        let mut words = rest.splitn(3, ' ');
        let key = words.next().unwrap_or_default();
        let field = words.next().unwrap_or_default();
        let problem = words.next().unwrap_or_default();
        return corrupt(key, field, problem);
    }
    let what = message.strip_prefix("invalid ").unwrap_or(message);
    StoreError::InvalidArgument(format!("rejected by the Redis script: {what}"))
}

/// The reply, or the error it carries.
pub fn ok(value: Value) -> Result<Value> {
    match value {
        Value::ServerError(error) => Err(server_error(&error)),
        other => Ok(other),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn reads_flat_and_map_hashes() {
        let flat = Value::Array(vec![bulk("a"), bulk("1"), bulk("b"), bulk("2")]);
        let map = Value::Map(vec![(bulk("a"), bulk("1")), (bulk("b"), bulk("2"))]);
        assert_eq!(fields(flat).unwrap(), fields(map).unwrap());
        assert!(fields(Value::Array(vec![bulk("a")])).is_err());
        assert!(fields(Value::Int(3)).is_err());
    }

    #[test]
    fn tagged_replies_need_a_text_tag() {
        let (tag, rest) = tagged(Value::Array(vec![bulk("ok"), Value::Int(1)])).unwrap();
        assert_eq!((tag.as_str(), rest.len()), ("ok", 1));
        assert!(tagged(Value::Array(vec![])).is_err());
        assert!(tagged(Value::Array(vec![Value::Array(vec![])])).is_err());
    }

    #[test]
    fn classifies_berth_errors() {
        let corrupt_err = redis::make_extension_error(
            "BERTH".into(),
            Some("corrupt berth:{w:1}:worker free_cpu is not a non-negative integer: abc".into()),
        );
        let Some(errors) = corrupt_err.into_server_errors() else {
            panic!("a server error")
        };
        match server_error(&errors[0].1) {
            StoreError::Corrupt {
                key,
                field,
                problem,
            } => {
                assert_eq!(key, "berth:{w:1}:worker");
                assert_eq!(field, "free_cpu");
                assert!(problem.ends_with("abc"));
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        let invalid = redis::make_extension_error("BERTH".into(), Some("invalid mode x".into()));
        let Some(errors) = invalid.into_server_errors() else {
            panic!("a server error")
        };
        assert!(matches!(
            server_error(&errors[0].1),
            StoreError::InvalidArgument(_)
        ));
    }
}
