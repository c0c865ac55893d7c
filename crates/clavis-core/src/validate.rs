//! Member constraints worded as AWS words them ("1 validation error detected: Value ... at
//! 'member' failed to satisfy constraint: ..."). Field names are the camelCase member names AWS
//! uses in these messages.

use crate::KmsError;
use crate::api::TagEntry;
use clavis_store::Tag;

/// The member must be present.
pub fn required<T>(v: Option<T>, field: &str) -> Result<T, KmsError> {
    v.ok_or_else(|| KmsError::validation(format!("Value null at '{field}' failed to satisfy constraint: Member must not be null")))
}

/// A string member's length (in characters) must lie in `min..=max`.
pub fn str_len(s: &str, field: &str, min: usize, max: usize) -> Result<(), KmsError> {
    let n = s.chars().count();
    if n < min {
        return Err(KmsError::validation(format!(
            "Value '{s}' at '{field}' failed to satisfy constraint: Member must have length greater than or equal to {min}"
        )));
    }
    if n > max {
        // Long values are not echoed back in full.
        return Err(KmsError::validation(format!(
            "Value at '{field}' failed to satisfy constraint: Member must have length less than or equal to {max}"
        )));
    }
    Ok(())
}

/// A blob member's length (in bytes) must lie in `min..=max`. Blob values are never echoed.
pub fn blob_len(len: usize, field: &str, min: usize, max: usize) -> Result<(), KmsError> {
    if len < min {
        return Err(KmsError::validation(format!(
            "Value at '{field}' failed to satisfy constraint: Member must have length greater than or equal to {min}"
        )));
    }
    if len > max {
        return Err(KmsError::validation(format!(
            "Value at '{field}' failed to satisfy constraint: Member must have length less than or equal to {max}"
        )));
    }
    Ok(())
}

/// An integer member must lie in `min..=max`.
pub fn int_range(v: i64, field: &str, min: i64, max: i64) -> Result<(), KmsError> {
    if v < min {
        return Err(KmsError::validation(format!(
            "Value '{v}' at '{field}' failed to satisfy constraint: Member must have value greater than or equal to {min}"
        )));
    }
    if v > max {
        return Err(KmsError::validation(format!(
            "Value '{v}' at '{field}' failed to satisfy constraint: Member must have value less than or equal to {max}"
        )));
    }
    Ok(())
}

/// An enum member must be one of `allowed`.
pub fn one_of<'a>(v: &'a str, field: &str, allowed: &[&str]) -> Result<&'a str, KmsError> {
    if allowed.contains(&v) {
        Ok(v)
    } else {
        Err(KmsError::validation(format!(
            "Value '{v}' at '{field}' failed to satisfy constraint: Member must satisfy enum value set: [{}]",
            allowed.join(", ")
        )))
    }
}

/// Page size: default when absent, else within `1..=max`.
pub fn limit(v: Option<i64>, default: usize, max: i64) -> Result<usize, KmsError> {
    match v {
        None => Ok(default),
        Some(n) => {
            int_range(n, "limit", 1, max)?;
            Ok(usize::try_from(n).unwrap_or(default))
        }
    }
}

/// A pagination marker's length constraint (1..1024, printable).
pub fn marker(v: Option<&str>) -> Result<Option<&str>, KmsError> {
    match v {
        None => Ok(None),
        Some(m) => {
            str_len(m, "marker", 1, 1024)?;
            Ok(Some(m))
        }
    }
}

/// Grant tokens: at most 10, each 1..8192 characters. (Grants arrive with access control; a
/// token can only add permissions, so accepting and ignoring them is safe until then.)
pub fn grant_tokens(v: Option<&Vec<String>>) -> Result<(), KmsError> {
    let Some(tokens) = v else { return Ok(()) };
    if tokens.len() > 10 {
        return Err(KmsError::validation(
            "Value at 'grantTokens' failed to satisfy constraint: Member must have length less than or equal to 10",
        ));
    }
    for t in tokens {
        str_len(t, "grantTokens.member", 1, 8192)?;
        crate::types::grant_token_id(t)?;
    }
    Ok(())
}

/// The most tags a key may carry (the AWS quota).
pub const MAX_TAGS_PER_KEY: usize = 50;

/// Parses tag members: key 1..128 characters, value 0..256, no `aws:` prefix, at most 50.
pub fn tags(entries: &[TagEntry]) -> Result<Vec<Tag>, KmsError> {
    if entries.len() > MAX_TAGS_PER_KEY {
        return Err(KmsError::LimitExceeded(format!("A key can have at most {MAX_TAGS_PER_KEY} tags.")));
    }
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let key = required(e.tag_key.as_deref(), "tags.member.tagKey")?;
        let value = required(e.tag_value.as_deref(), "tags.member.tagValue")?;
        str_len(key, "tags.member.tagKey", 1, 128)?;
        str_len(value, "tags.member.tagValue", 0, 256)?;
        if key.starts_with("aws:") {
            return Err(KmsError::Tag("Tags beginning with aws: are reserved and cannot be used.".into()));
        }
        out.push(Tag { key: key.to_owned(), value: value.to_owned() });
    }
    Ok(out)
}
