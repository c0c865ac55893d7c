//! Key policies in the AWS policy language: parsing with validation (every defect is a
//! `MalformedPolicyDocumentException` naming it) and evaluation of one request against one
//! policy. How a policy combines with the caller's role and with grants is decided in
//! `service.rs` (`Kms::authorize_key`) and written down in `docs/api.md`.
//!
//! Supported: `Version`, `Id`, `Statement` (one object or a list) with `Sid`, `Effect`,
//! `Principal` / `NotPrincipal` (`"*"`, `{"AWS": ...}` with account ids, account roots, user
//! ARNs and `"*"`; `Service` principals are accepted and never match), `Action` / `NotAction`
//! (with `*` and `?` wildcards, case-insensitive), `Resource` / `NotResource` (wildcards, matched
//! against the key ARN), and `Condition` with the `String*`, `Bool`, `Null`, `IpAddress` /
//! `NotIpAddress` operators, their `IfExists` forms and the `ForAnyValue:` / `ForAllValues:`
//! set qualifiers.

use crate::KmsError;
use serde_json::Value;
use std::collections::BTreeMap;
use std::net::IpAddr;

/// The most bytes a key policy may have (AWS limit).
pub const MAX_POLICY_BYTES: usize = 32768;

/// What one policy says about one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// A matching `Deny` statement: refused whatever else allows it.
    ExplicitDeny,
    /// A matching `Allow` statement and no matching `Deny`.
    Allow,
    /// No statement matches: refused unless something else (a grant) allows it.
    NotApplicable,
}

/// The facts about a request that a policy can test.
#[derive(Debug, Clone)]
pub struct RequestContext<'a> {
    /// The caller's principal ARN (`arn:aws:iam::<account>:user/<name>` or `...:root`).
    pub principal_arn: &'a str,
    /// The caller's account id.
    pub principal_account: &'a str,
    /// The action, as `kms:Encrypt`.
    pub action: &'a str,
    /// The key's ARN.
    pub resource: &'a str,
    /// The request's encryption context, for operations that take one.
    pub encryption_context: Option<&'a BTreeMap<String, String>>,
    /// The client's address.
    pub source_ip: Option<IpAddr>,
    /// Extra condition keys of the operation (lower-case names), such as `kms:grantoperations`.
    pub extra: &'a [(&'a str, Vec<String>)],
}

impl RequestContext<'_> {
    /// The values of a condition key (lower-case), or `None` when the request has no such key.
    fn values(&self, key: &str) -> Option<Vec<String>> {
        if let Some(ctx_key) = key.strip_prefix("kms:encryptioncontext:") {
            let ctx = self.encryption_context?;
            return ctx.iter().find(|(k, _)| k.to_ascii_lowercase() == ctx_key).map(|(_, v)| vec![v.clone()]);
        }
        match key {
            "kms:encryptioncontextkeys" => self.encryption_context.filter(|c| !c.is_empty()).map(|c| c.keys().cloned().collect()),
            "kms:calleraccount" | "aws:principalaccount" => Some(vec![self.principal_account.to_owned()]),
            "aws:principalarn" => Some(vec![self.principal_arn.to_owned()]),
            "aws:sourceip" => self.source_ip.map(|ip| vec![ip.to_string()]),
            "aws:principaltype" => Some(vec![if self.principal_arn.ends_with(":root") { "Account" } else { "User" }.to_owned()]),
            // Clavis has no integrated services: kms:ViaService is never present.
            _ => self.extra.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    Allow,
    Deny,
}

/// A list of patterns and whether the element was the negated form (`NotAction` ...).
#[derive(Debug, Clone)]
struct Matcher {
    negated: bool,
    patterns: Vec<String>,
}

#[derive(Debug, Clone)]
enum Principal {
    Any,
    Account(String),
    Arn(String),
    /// A `Service` or other non-AWS principal: valid, never matches a Clavis caller.
    Other,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    StringEquals,
    StringNotEquals,
    StringEqualsIgnoreCase,
    StringNotEqualsIgnoreCase,
    StringLike,
    StringNotLike,
    Bool,
    Null,
    IpAddress,
    NotIpAddress,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SetQualifier {
    None,
    ForAnyValue,
    ForAllValues,
}

#[derive(Debug, Clone)]
struct Condition {
    operator: Operator,
    if_exists: bool,
    qualifier: SetQualifier,
    /// Lower-case condition key.
    key: String,
    values: Vec<String>,
}

#[derive(Debug, Clone)]
struct Statement {
    effect: Effect,
    principal_negated: bool,
    principals: Vec<Principal>,
    actions: Matcher,
    resources: Matcher,
    conditions: Vec<Condition>,
}

/// A parsed key policy.
#[derive(Debug, Clone)]
pub struct Policy {
    statements: Vec<Statement>,
}

fn malformed(msg: impl Into<String>) -> KmsError {
    KmsError::MalformedPolicyDocument(msg.into())
}

/// One string or a list of strings (the policy language's usual shape).
fn strings(v: &Value, what: &str) -> Result<Vec<String>, KmsError> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(items) if !items.is_empty() => items
            .iter()
            .map(|i| i.as_str().map(str::to_owned).ok_or_else(|| malformed(format!("{what} must be a string or a list of strings."))))
            .collect(),
        _ => Err(malformed(format!("{what} must be a string or a non-empty list of strings."))),
    }
}

/// Condition values may also be booleans and numbers.
fn condition_values(v: &Value) -> Result<Vec<String>, KmsError> {
    let one = |v: &Value| match v {
        Value::String(s) => Ok(s.clone()),
        Value::Bool(b) => Ok(b.to_string()),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err(malformed("Condition values must be strings, booleans or numbers.")),
    };
    match v {
        Value::Array(items) if !items.is_empty() => items.iter().map(one).collect(),
        Value::Array(_) => Err(malformed("A condition key has an empty list of values.")),
        other => Ok(vec![one(other)?]),
    }
}

fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

fn parse_principal(s: &str) -> Result<Principal, KmsError> {
    if s == "*" {
        return Ok(Principal::Any);
    }
    if is_account_id(s) {
        return Ok(Principal::Account(s.to_owned()));
    }
    let rest = s.strip_prefix("arn:aws:iam::").ok_or_else(|| malformed(format!("Policy contains an invalid principal: {s}")))?;
    let (account, resource) = rest.split_once(':').ok_or_else(|| malformed(format!("Policy contains an invalid principal: {s}")))?;
    let valid_resource = resource == "root"
        || resource
            .strip_prefix("user/")
            .or_else(|| resource.strip_prefix("role/"))
            .is_some_and(|name| !name.is_empty() && !name.contains('*'));
    if !is_account_id(account) || !valid_resource {
        return Err(malformed(format!("Policy contains an invalid principal: {s}")));
    }
    Ok(if resource == "root" { Principal::Account(account.to_owned()) } else { Principal::Arn(s.to_owned()) })
}

fn parse_principals(v: &Value) -> Result<Vec<Principal>, KmsError> {
    match v {
        Value::String(s) if s == "*" => Ok(vec![Principal::Any]),
        Value::Object(map) if !map.is_empty() => {
            let mut out = Vec::new();
            for (kind, value) in map {
                let list = strings(value, "Principal")?;
                match kind.as_str() {
                    "AWS" => out.extend(list.iter().map(|s| parse_principal(s)).collect::<Result<Vec<_>, _>>()?),
                    "Service" | "Federated" | "CanonicalUser" => out.push(Principal::Other),
                    other => return Err(malformed(format!("Policy contains an unknown principal type: {other}"))),
                }
            }
            Ok(out)
        }
        _ => Err(malformed("Principal must be \"*\" or an object such as {\"AWS\": [...]}.")),
    }
}

fn parse_action(s: &str) -> Result<String, KmsError> {
    let valid = s == "*"
        || s.split_once(':').is_some_and(|(service, action)| {
            !service.is_empty()
                && service.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !action.is_empty()
                && action.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'*' || b == b'?')
        });
    if !valid {
        return Err(malformed(format!("Policy contains an invalid action: {s}")));
    }
    Ok(s.to_ascii_lowercase())
}

fn parse_operator(name: &str) -> Result<(SetQualifier, Operator, bool), KmsError> {
    let (qualifier, rest) = if let Some(r) = name.strip_prefix("ForAnyValue:") {
        (SetQualifier::ForAnyValue, r)
    } else if let Some(r) = name.strip_prefix("ForAllValues:") {
        (SetQualifier::ForAllValues, r)
    } else {
        (SetQualifier::None, name)
    };
    let (base, if_exists) = match rest.strip_suffix("IfExists") {
        Some(b) => (b, true),
        None => (rest, false),
    };
    let op = match base {
        "StringEquals" => Operator::StringEquals,
        "StringNotEquals" => Operator::StringNotEquals,
        "StringEqualsIgnoreCase" => Operator::StringEqualsIgnoreCase,
        "StringNotEqualsIgnoreCase" => Operator::StringNotEqualsIgnoreCase,
        "StringLike" => Operator::StringLike,
        "StringNotLike" => Operator::StringNotLike,
        "Bool" => Operator::Bool,
        "Null" if !if_exists => Operator::Null,
        "IpAddress" => Operator::IpAddress,
        "NotIpAddress" => Operator::NotIpAddress,
        _ => return Err(malformed(format!("Policy contains an unsupported condition operator: {name}"))),
    };
    Ok((qualifier, op, if_exists))
}

fn parse_conditions(v: &Value) -> Result<Vec<Condition>, KmsError> {
    let Value::Object(ops) = v else { return Err(malformed("Condition must be an object.")) };
    let mut out = Vec::new();
    for (op_name, keys) in ops {
        let (qualifier, operator, if_exists) = parse_operator(op_name)?;
        let Value::Object(keys) = keys else {
            return Err(malformed(format!("Condition operator {op_name} must map condition keys to values.")));
        };
        for (key, values) in keys {
            let values = condition_values(values)?;
            match operator {
                Operator::Bool | Operator::Null if values.iter().any(|v| v != "true" && v != "false") => {
                    return Err(malformed(format!("Condition {op_name} on {key} needs true or false.")));
                }
                Operator::IpAddress | Operator::NotIpAddress if values.iter().any(|v| parse_cidr(v).is_none()) => {
                    return Err(malformed(format!("Condition {op_name} on {key} needs IP addresses or CIDR blocks.")));
                }
                _ => {}
            }
            if key.is_empty() || !key.contains(':') {
                return Err(malformed(format!("Policy contains an invalid condition key: {key}")));
            }
            out.push(Condition { operator, if_exists, qualifier, key: key.to_ascii_lowercase(), values });
        }
    }
    Ok(out)
}

/// The one of `name` and `not_name` a statement has (exactly one is required).
fn one_of<'a>(stmt: &'a serde_json::Map<String, Value>, name: &str, not_name: &str) -> Result<(bool, &'a Value), KmsError> {
    match (stmt.get(name), stmt.get(not_name)) {
        (Some(v), None) => Ok((false, v)),
        (None, Some(v)) => Ok((true, v)),
        (Some(_), Some(_)) => Err(malformed(format!("A statement cannot have both {name} and {not_name}."))),
        (None, None) => Err(malformed(format!("Policy contains a statement with no {name}."))),
    }
}

fn parse_statement(v: &Value) -> Result<Statement, KmsError> {
    let Value::Object(stmt) = v else { return Err(malformed("Each statement must be an object.")) };
    for member in stmt.keys() {
        if !["Sid", "Effect", "Principal", "NotPrincipal", "Action", "NotAction", "Resource", "NotResource", "Condition"]
            .contains(&member.as_str())
        {
            return Err(malformed(format!("Policy statement has an unknown member: {member}")));
        }
    }
    if let Some(sid) = stmt.get("Sid")
        && !sid.is_string()
    {
        return Err(malformed("Sid must be a string."));
    }
    let effect = match stmt.get("Effect").and_then(Value::as_str) {
        Some("Allow") => Effect::Allow,
        Some("Deny") => Effect::Deny,
        _ => return Err(malformed("Each statement needs an Effect of \"Allow\" or \"Deny\".")),
    };
    let (principal_negated, principal) = one_of(stmt, "Principal", "NotPrincipal")?;
    let (action_negated, action) = one_of(stmt, "Action", "NotAction")?;
    let (resource_negated, resource) = one_of(stmt, "Resource", "NotResource")?;
    let actions = strings(action, "Action")?.iter().map(|a| parse_action(a)).collect::<Result<Vec<_>, _>>()?;
    let resources = strings(resource, "Resource")?;
    if let Some(bad) = resources.iter().find(|r| *r != "*" && !r.starts_with("arn:")) {
        return Err(malformed(format!("Policy contains an invalid resource: {bad}")));
    }
    Ok(Statement {
        effect,
        principal_negated,
        principals: parse_principals(principal)?,
        actions: Matcher { negated: action_negated, patterns: actions },
        resources: Matcher { negated: resource_negated, patterns: resources },
        conditions: stmt.get("Condition").map(parse_conditions).transpose()?.unwrap_or_default(),
    })
}

impl Policy {
    /// Parses and validates a key policy document.
    pub fn parse(doc: &str) -> Result<Policy, KmsError> {
        if doc.len() > MAX_POLICY_BYTES {
            return Err(KmsError::validation(format!(
                "Value at 'policy' failed to satisfy constraint: Member must have length less than or equal to {MAX_POLICY_BYTES}"
            )));
        }
        let value: Value = serde_json::from_str(doc).map_err(|_| malformed("The key policy is not a valid JSON policy document."))?;
        let Value::Object(top) = value else { return Err(malformed("The key policy must be a JSON object.")) };
        for member in top.keys() {
            if !["Version", "Id", "Statement"].contains(&member.as_str()) {
                return Err(malformed(format!("Policy has an unknown member: {member}")));
            }
        }
        match top.get("Version") {
            None => {}
            Some(Value::String(v)) if v == "2012-10-17" || v == "2008-10-17" => {}
            Some(_) => return Err(malformed("Version must be \"2012-10-17\" or \"2008-10-17\".")),
        }
        let statements = match top.get("Statement") {
            Some(Value::Array(list)) if !list.is_empty() => list.iter().map(parse_statement).collect::<Result<Vec<_>, _>>()?,
            Some(v @ Value::Object(_)) => vec![parse_statement(v)?],
            _ => return Err(malformed("The key policy needs a Statement.")),
        };
        Ok(Policy { statements })
    }

    /// AWS's default key policy for a key of `account`: the account root (every identity of
    /// the account, through its role) gets `kms:*`.
    pub fn default_document(account: &str) -> String {
        serde_json::json!({
            "Version": "2012-10-17",
            "Id": "key-default-1",
            "Statement": [{
                "Sid": "Enable IAM User Permissions",
                "Effect": "Allow",
                "Principal": {"AWS": format!("arn:aws:iam::{account}:root")},
                "Action": "kms:*",
                "Resource": "*"
            }]
        })
        .to_string()
    }

    /// The policy in force for a stored document. A document that does not parse can only come
    /// from a key created before policies were validated (when only roles decided); it is
    /// treated as the default policy, which is exactly how that key behaved then, and can be
    /// replaced with PutKeyPolicy.
    pub fn for_stored(doc: &str, account: &str) -> Policy {
        Policy::parse(doc).or_else(|_| Policy::parse(&Policy::default_document(account))).unwrap_or(Policy { statements: Vec::new() })
    }

    /// Evaluates a request: an explicit deny wins, then an allow, else not applicable.
    pub fn evaluate(&self, ctx: &RequestContext<'_>) -> Decision {
        let action = ctx.action.to_ascii_lowercase();
        let mut allowed = false;
        for s in self.statements.iter().filter(|s| s.matches(ctx, &action)) {
            match s.effect {
                Effect::Deny => return Decision::ExplicitDeny,
                Effect::Allow => allowed = true,
            }
        }
        if allowed { Decision::Allow } else { Decision::NotApplicable }
    }
}

impl Statement {
    /// Whether the statement applies; `action` is the request's action in lower case.
    fn matches(&self, ctx: &RequestContext<'_>, action: &str) -> bool {
        let principal = self.principals.iter().any(|p| match p {
            Principal::Any => true,
            Principal::Account(a) => a == ctx.principal_account,
            Principal::Arn(arn) => arn == ctx.principal_arn,
            Principal::Other => false,
        });
        let action = self.actions.patterns.iter().any(|p| wildcard_match(p, action));
        let resource = self.resources.patterns.iter().any(|p| wildcard_match(p, ctx.resource));
        principal != self.principal_negated
            && action != self.actions.negated
            && resource != self.resources.negated
            && self.conditions.iter().all(|c| c.holds(ctx))
    }
}

impl Condition {
    fn holds(&self, ctx: &RequestContext<'_>) -> bool {
        let present = ctx.values(&self.key);
        if self.operator == Operator::Null {
            // "Null": true means the key must be absent.
            let want_absent = self.values.iter().any(|v| v == "true");
            return present.is_none() == want_absent;
        }
        let Some(request_values) = present else {
            // Absent key: IfExists holds; ForAllValues holds vacuously; ForAnyValue has no value
            // to match and fails; otherwise the negated operators hold (AWS's rules).
            return match self.qualifier {
                _ if self.if_exists => true,
                SetQualifier::ForAllValues => true,
                SetQualifier::ForAnyValue => false,
                SetQualifier::None => self.negated(),
            };
        };
        match self.qualifier {
            // Every request value must satisfy the operator.
            SetQualifier::ForAllValues => request_values.iter().all(|v| self.value_holds(v)),
            // At least one request value must satisfy it (for a negated operator too: one value
            // that matches none of the policy's values).
            SetQualifier::ForAnyValue => request_values.iter().any(|v| self.value_holds(v)),
            // No qualifier (single-valued keys): a negated operator needs no value to match.
            SetQualifier::None if self.negated() => request_values.iter().all(|v| self.value_holds(v)),
            SetQualifier::None => request_values.iter().any(|v| self.value_holds(v)),
        }
    }

    fn negated(&self) -> bool {
        matches!(
            self.operator,
            Operator::StringNotEquals | Operator::StringNotEqualsIgnoreCase | Operator::StringNotLike | Operator::NotIpAddress
        )
    }

    /// Whether one request value satisfies the operator against the policy's values (any of
    /// them for the positive operators, none of them for the negated ones).
    fn value_holds(&self, v: &str) -> bool {
        let ip = || v.parse::<IpAddr>().ok();
        let any = |f: &dyn Fn(&str) -> bool| self.values.iter().any(|p| f(p));
        match self.operator {
            Operator::StringEquals => any(&|p| p == v),
            Operator::StringNotEquals => !any(&|p| p == v),
            Operator::StringEqualsIgnoreCase => any(&|p| p.eq_ignore_ascii_case(v)),
            Operator::StringNotEqualsIgnoreCase => !any(&|p| p.eq_ignore_ascii_case(v)),
            Operator::StringLike => any(&|p| wildcard_match(p, v)),
            Operator::StringNotLike => !any(&|p| wildcard_match(p, v)),
            Operator::Bool => any(&|p| p.eq_ignore_ascii_case(v)),
            Operator::IpAddress => ip().is_some_and(|ip| any(&|p| cidr_contains(p, ip))),
            Operator::NotIpAddress => ip().is_some_and(|ip| !any(&|p| cidr_contains(p, ip))),
            Operator::Null => false,
        }
    }
}

/// `*` matches any run of characters, `?` any one character. The pattern is cut at its `*`s:
/// the first piece must match at the start, the last at the end, and each piece between is taken
/// at its leftmost place (greedy leftmost is correct for `*`-separated pieces). Pieces without
/// `?` are found with the standard library's linear-time substring search, so a long pattern
/// against a long value costs time linear in their lengths, not their product.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    if pattern.contains('?') {
        let t: Vec<char> = text.chars().collect();
        let pieces: Vec<Vec<char>> = pattern.split('*').map(|p| p.chars().collect()).collect();
        return match_pieces(
            &pieces,
            &t,
            |p, t| p.len() == t.len() && p.iter().zip(t).all(|(a, b)| *a == '?' || a == b),
            |p, t| {
                let last = t.len().checked_sub(p.len())?;
                (0..=last).find(|&i| p.iter().zip(&t[i..]).all(|(a, b)| *a == '?' || a == b)).map(|i| i + p.len())
            },
        );
    }
    let pieces: Vec<&str> = pattern.split('*').collect();
    let bytes: Vec<&[u8]> = pieces.iter().map(|p| p.as_bytes()).collect();
    match_pieces(
        &bytes,
        text.as_bytes(),
        |p, t| p == t,
        |p, t| {
            // Both are valid UTF-8 and `p` is a whole string, so a byte match is a character match.
            let hay = std::str::from_utf8(t).ok()?;
            let needle = std::str::from_utf8(p).ok()?;
            hay.find(needle).map(|i| i + p.len())
        },
    )
}

fn match_pieces<P: AsRef<[T]>, T>(
    pieces: &[P],
    text: &[T],
    equal: impl Fn(&[T], &[T]) -> bool,
    find: impl Fn(&[T], &[T]) -> Option<usize>,
) -> bool {
    let Some((first, rest_pieces)) = pieces.split_first() else { return text.is_empty() };
    let first = first.as_ref();
    let Some((last, middle)) = rest_pieces.split_last() else { return equal(first, text) };
    let last = last.as_ref();
    if text.len() < first.len() + last.len() {
        return false;
    }
    if !equal(first, &text[..first.len()]) || !equal(last, &text[text.len() - last.len()..]) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for piece in middle {
        match find(piece.as_ref(), rest) {
            Some(end) => rest = &rest[end..],
            None => return false,
        }
    }
    true
}

fn parse_cidr(s: &str) -> Option<(IpAddr, u32)> {
    let (addr, bits) = match s.split_once('/') {
        Some((a, b)) => (a.parse::<IpAddr>().ok()?, b.parse::<u32>().ok()?),
        None => {
            let a = s.parse::<IpAddr>().ok()?;
            (a, if a.is_ipv4() { 32 } else { 128 })
        }
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (bits <= max).then_some((addr, bits))
}

fn cidr_contains(cidr: &str, ip: IpAddr) -> bool {
    let Some((net, bits)) = parse_cidr(cidr) else { return false };
    let (net, ip, width) = match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) => (u128::from(u32::from(n)), u128::from(u32::from(i)), 32),
        (IpAddr::V6(n), IpAddr::V6(i)) => (u128::from(n), u128::from(i), 128),
        (IpAddr::V4(n), IpAddr::V6(i)) => match i.to_ipv4_mapped() {
            Some(i) => (u128::from(u32::from(n)), u128::from(u32::from(i)), 32),
            None => return false,
        },
        (IpAddr::V6(_), IpAddr::V4(_)) => return false,
    };
    if bits == 0 {
        return true;
    }
    let shift = width - bits;
    (net >> shift) == (ip >> shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ACCT: &str = "111122223333";
    const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

    fn ctx<'a>(principal: &'a str, account: &'a str, action: &'a str, ec: Option<&'a BTreeMap<String, String>>) -> RequestContext<'a> {
        RequestContext {
            principal_arn: principal,
            principal_account: account,
            action,
            resource: KEY,
            encryption_context: ec,
            source_ip: "10.0.0.7".parse().ok(),
            extra: &[],
        }
    }

    fn eval(policy: &serde_json::Value, c: &RequestContext<'_>) -> Decision {
        Policy::parse(&policy.to_string()).expect("valid policy").evaluate(c)
    }

    fn ec(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn default_policy_delegates_to_the_account() {
        // AWS's default key policy.
        let p = serde_json::json!({"Version": "2012-10-17", "Id": "key-default-1", "Statement": [{
            "Sid": "Enable IAM User Permissions", "Effect": "Allow",
            "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "kms:*", "Resource": "*"}]});
        let alice = "arn:aws:iam::111122223333:user/alice";
        assert_eq!(eval(&p, &ctx(alice, ACCT, "kms:Decrypt", None)), Decision::Allow);
        assert_eq!(eval(&p, &ctx("arn:aws:iam::444455556666:user/eve", "444455556666", "kms:Decrypt", None)), Decision::NotApplicable);
        assert_eq!(eval(&p, &ctx(alice, ACCT, "iam:CreateUser", None)), Decision::NotApplicable);
    }

    #[test]
    fn table_of_cases() {
        let alice = "arn:aws:iam::111122223333:user/alice";
        let bob = "arn:aws:iam::111122223333:user/bob";
        let other = "arn:aws:iam::444455556666:user/carol";
        let finance = ec(&[("Department", "Finance")]);
        let it = ec(&[("Department", "IT")]);
        let two = ec(&[("Department", "Finance"), ("Project", "x")]);
        let allow = |principal: serde_json::Value, action: serde_json::Value, cond: Option<serde_json::Value>| {
            let mut s = serde_json::json!({"Effect": "Allow", "Principal": principal, "Action": action, "Resource": "*"});
            if let Some(c) = cond {
                s["Condition"] = c;
            }
            serde_json::json!({"Version": "2012-10-17", "Statement": [s]})
        };
        use Decision::*;
        let cases: Vec<(serde_json::Value, RequestContext<'_>, Decision, &str)> = vec![
            (
                allow(serde_json::json!({"AWS": alice}), serde_json::json!("kms:Decrypt"), None),
                ctx(alice, ACCT, "kms:Decrypt", None),
                Allow,
                "named user",
            ),
            (
                allow(serde_json::json!({"AWS": alice}), serde_json::json!("kms:Decrypt"), None),
                ctx(bob, ACCT, "kms:Decrypt", None),
                NotApplicable,
                "other user",
            ),
            (
                allow(serde_json::json!({"AWS": ACCT}), serde_json::json!("kms:*"), None),
                ctx(bob, ACCT, "kms:DisableKey", None),
                Allow,
                "bare account id",
            ),
            (
                allow(serde_json::json!("*"), serde_json::json!("kms:*"), None),
                ctx(other, "444455556666", "kms:Encrypt", None),
                Allow,
                "anyone",
            ),
            (
                allow(serde_json::json!({"AWS": "*"}), serde_json::json!(["kms:Encrypt", "kms:GenerateDataKey*"]), None),
                ctx(alice, ACCT, "kms:GenerateDataKeyWithoutPlaintext", None),
                Allow,
                "action wildcard",
            ),
            (
                allow(serde_json::json!({"AWS": "*"}), serde_json::json!("KMS:encrypt"), None),
                ctx(alice, ACCT, "kms:Encrypt", None),
                Allow,
                "actions are case-insensitive",
            ),
            (
                allow(serde_json::json!({"AWS": "*"}), serde_json::json!("kms:Describe?ey"), None),
                ctx(alice, ACCT, "kms:DescribeKey", None),
                Allow,
                "? wildcard",
            ),
            // AWS example: kms:EncryptionContext:context-key with StringEquals.
            (
                allow(
                    serde_json::json!({"AWS": "*"}),
                    serde_json::json!("kms:Decrypt"),
                    Some(serde_json::json!({"StringEquals": {"kms:EncryptionContext:Department": "Finance"}})),
                ),
                ctx(alice, ACCT, "kms:Decrypt", Some(&finance)),
                Allow,
                "context matches",
            ),
            (
                allow(
                    serde_json::json!({"AWS": "*"}),
                    serde_json::json!("kms:Decrypt"),
                    Some(serde_json::json!({"StringEquals": {"kms:EncryptionContext:Department": "Finance"}})),
                ),
                ctx(alice, ACCT, "kms:Decrypt", Some(&it)),
                NotApplicable,
                "context differs",
            ),
            (
                allow(
                    serde_json::json!({"AWS": "*"}),
                    serde_json::json!("kms:Decrypt"),
                    Some(serde_json::json!({"StringEquals": {"kms:EncryptionContext:Department": "Finance"}})),
                ),
                ctx(alice, ACCT, "kms:Decrypt", None),
                NotApplicable,
                "context absent",
            ),
            (
                allow(
                    serde_json::json!({"AWS": "*"}),
                    serde_json::json!("kms:Decrypt"),
                    Some(serde_json::json!({"StringEqualsIfExists": {"kms:EncryptionContext:Department": "Finance"}})),
                ),
                ctx(alice, ACCT, "kms:Decrypt", None),
                Allow,
                "IfExists with the key absent",
            ),
            (
                allow(
                    serde_json::json!({"AWS": "*"}),
                    serde_json::json!("kms:Decrypt"),
                    Some(serde_json::json!({"StringEqualsIfExists": {"kms:EncryptionContext:Department": "Finance"}})),
                ),
                ctx(alice, ACCT, "kms:Decrypt", Some(&it)),
                NotApplicable,
                "IfExists with another value",
            ),
            (
                allow(
                    serde_json::json!({"AWS": "*"}),
                    serde_json::json!("kms:Decrypt"),
                    Some(serde_json::json!({"StringEqualsIgnoreCase": {"kms:EncryptionContext:department": "FINANCE"}})),
                ),
                ctx(alice, ACCT, "kms:Decrypt", Some(&finance)),
                Allow,
                "ignore case, key name case-insensitive",
            ),
            (
                allow(
                    serde_json::json!({"AWS": "*"}),
                    serde_json::json!("kms:Decrypt"),
                    Some(serde_json::json!({"StringLike": {"kms:EncryptionContext:Department": "Fin*"}})),
                ),
                ctx(alice, ACCT, "kms:Decrypt", Some(&finance)),
                Allow,
                "StringLike",
            ),
            (
                allow(
                    serde_json::json!({"AWS": "*"}),
                    serde_json::json!("kms:Decrypt"),
                    Some(serde_json::json!({"StringNotEquals": {"kms:EncryptionContext:Department": "IT"}})),
                ),
                ctx(alice, ACCT, "kms:Decrypt", None),
                Allow,
                "negated operator with the key absent",
            ),
            // AWS example: ForAllValues on kms:EncryptionContextKeys limits the keys allowed.
            (
                allow(
                    serde_json::json!({"AWS": "*"}),
                    serde_json::json!("kms:Encrypt"),
                    Some(serde_json::json!({"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["Department"]}})),
                ),
                ctx(alice, ACCT, "kms:Encrypt", Some(&two)),
                NotApplicable,
                "ForAllValues with an extra key",
            ),
            (
                allow(
                    serde_json::json!({"AWS": "*"}),
                    serde_json::json!("kms:Encrypt"),
                    Some(serde_json::json!({"ForAllValues:StringEquals": {"kms:EncryptionContextKeys": ["Department", "Project"]}})),
                ),
                ctx(alice, ACCT, "kms:Encrypt", Some(&two)),
                Allow,
                "ForAllValues all listed",
            ),
            (
                allow(
                    serde_json::json!({"AWS": "*"}),
                    serde_json::json!("kms:Encrypt"),
                    Some(serde_json::json!({"ForAnyValue:StringEquals": {"kms:EncryptionContextKeys": "Project"}})),
                ),
                ctx(alice, ACCT, "kms:Encrypt", Some(&two)),
                Allow,
                "ForAnyValue",
            ),
            // ForAnyValue with a negated operator: one value outside the list is enough.
            (
                allow(
                    serde_json::json!({"AWS": "*"}),
                    serde_json::json!("kms:Encrypt"),
                    Some(serde_json::json!({"ForAnyValue:StringNotEquals": {"kms:EncryptionContextKeys": ["Department"]}})),
                ),
                ctx(alice, ACCT, "kms:Encrypt", Some(&two)),
                Allow,
                "ForAnyValue negated, one other key",
            ),
            (
                allow(
                    serde_json::json!({"AWS": "*"}),
                    serde_json::json!("kms:Encrypt"),
                    Some(serde_json::json!({"ForAnyValue:StringNotEquals": {"kms:EncryptionContextKeys": ["Department"]}})),
                ),
                ctx(alice, ACCT, "kms:Encrypt", Some(&finance)),
                NotApplicable,
                "ForAnyValue negated, only listed keys",
            ),
            (
                allow(
                    serde_json::json!({"AWS": "*"}),
                    serde_json::json!("kms:Encrypt"),
                    Some(serde_json::json!({"ForAnyValue:StringNotEquals": {"kms:EncryptionContextKeys": ["Department"]}})),
                ),
                ctx(alice, ACCT, "kms:Encrypt", None),
                NotApplicable,
                "ForAnyValue on an absent key",
            ),
            // AWS example: require an encryption context with Null.
            (
                allow(
                    serde_json::json!({"AWS": "*"}),
                    serde_json::json!("kms:Encrypt"),
                    Some(serde_json::json!({"Null": {"kms:EncryptionContextKeys": "false"}})),
                ),
                ctx(alice, ACCT, "kms:Encrypt", None),
                NotApplicable,
                "Null false needs the key",
            ),
            (
                allow(
                    serde_json::json!({"AWS": "*"}),
                    serde_json::json!("kms:Encrypt"),
                    Some(serde_json::json!({"Null": {"kms:EncryptionContextKeys": "false"}})),
                ),
                ctx(alice, ACCT, "kms:Encrypt", Some(&finance)),
                Allow,
                "Null false with a context",
            ),
            // AWS example: kms:CallerAccount + kms:ViaService.
            (
                allow(
                    serde_json::json!({"AWS": "*"}),
                    serde_json::json!("kms:Encrypt"),
                    Some(serde_json::json!({"StringEquals": {"kms:CallerAccount": ACCT, "kms:ViaService": "ec2.us-west-2.amazonaws.com"}})),
                ),
                ctx(alice, ACCT, "kms:Encrypt", None),
                NotApplicable,
                "ViaService never present",
            ),
            (
                allow(
                    serde_json::json!({"AWS": "*"}),
                    serde_json::json!("kms:Encrypt"),
                    Some(serde_json::json!({"StringEquals": {"kms:CallerAccount": ACCT}})),
                ),
                ctx(other, "444455556666", "kms:Encrypt", None),
                NotApplicable,
                "CallerAccount",
            ),
            (
                allow(
                    serde_json::json!({"AWS": "*"}),
                    serde_json::json!("kms:Encrypt"),
                    Some(serde_json::json!({"StringEquals": {"aws:PrincipalArn": alice}})),
                ),
                ctx(alice, ACCT, "kms:Encrypt", None),
                Allow,
                "PrincipalArn",
            ),
            (
                allow(
                    serde_json::json!({"AWS": "*"}),
                    serde_json::json!("kms:Encrypt"),
                    Some(serde_json::json!({"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}})),
                ),
                ctx(alice, ACCT, "kms:Encrypt", None),
                Allow,
                "SourceIp in range",
            ),
            (
                allow(
                    serde_json::json!({"AWS": "*"}),
                    serde_json::json!("kms:Encrypt"),
                    Some(serde_json::json!({"IpAddress": {"aws:SourceIp": ["192.168.0.0/16", "::1"]}})),
                ),
                ctx(alice, ACCT, "kms:Encrypt", None),
                NotApplicable,
                "SourceIp out of range",
            ),
            (
                allow(
                    serde_json::json!({"AWS": "*"}),
                    serde_json::json!("kms:Encrypt"),
                    Some(serde_json::json!({"Bool": {"aws:SecureTransport": true}})),
                ),
                ctx(alice, ACCT, "kms:Encrypt", None),
                NotApplicable,
                "Bool on an absent key",
            ),
            (
                serde_json::json!({"Statement": {"Effect": "Allow", "Principal": {"AWS": "*"}, "NotAction": "kms:Disable*", "Resource": "*"}}),
                ctx(alice, ACCT, "kms:DisableKey", None),
                NotApplicable,
                "NotAction excludes",
            ),
            (
                serde_json::json!({"Statement": {"Effect": "Allow", "Principal": {"AWS": "*"}, "NotAction": "kms:Disable*", "Resource": "*"}}),
                ctx(alice, ACCT, "kms:Encrypt", None),
                Allow,
                "NotAction includes the rest",
            ),
            (
                serde_json::json!({"Statement": {"Effect": "Allow", "NotPrincipal": {"AWS": alice}, "Action": "kms:*", "Resource": "*"}}),
                ctx(alice, ACCT, "kms:Encrypt", None),
                NotApplicable,
                "NotPrincipal excludes",
            ),
            (
                serde_json::json!({"Statement": {"Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "arn:aws:kms:*:111122223333:key/*"}}),
                ctx(alice, ACCT, "kms:Encrypt", None),
                Allow,
                "resource pattern",
            ),
            (
                serde_json::json!({"Statement": {"Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "arn:aws:kms:*:444455556666:key/*"}}),
                ctx(alice, ACCT, "kms:Encrypt", None),
                NotApplicable,
                "resource of another account",
            ),
            (
                serde_json::json!({"Statement": [
                {"Effect": "Allow", "Principal": {"AWS": ACCT}, "Action": "kms:*", "Resource": "*"},
                {"Effect": "Deny", "Principal": {"AWS": alice}, "Action": "kms:Decrypt", "Resource": "*"}]}),
                ctx(alice, ACCT, "kms:Decrypt", None),
                ExplicitDeny,
                "explicit deny wins",
            ),
            (
                serde_json::json!({"Statement": [
                {"Effect": "Allow", "Principal": {"AWS": ACCT}, "Action": "kms:*", "Resource": "*"},
                {"Effect": "Deny", "Principal": {"AWS": alice}, "Action": "kms:Decrypt", "Resource": "*"}]}),
                ctx(bob, ACCT, "kms:Decrypt", None),
                Allow,
                "deny of someone else",
            ),
            (
                serde_json::json!({"Statement": [
                {"Effect": "Deny", "Principal": "*", "Action": "kms:*", "Resource": "*", "Condition": {"StringNotEquals": {"kms:EncryptionContext:Department": "Finance"}}},
                {"Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*"}]}),
                ctx(bob, ACCT, "kms:Decrypt", Some(&it)),
                ExplicitDeny,
                "conditional deny",
            ),
            (
                serde_json::json!({"Statement": {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "kms:*", "Resource": "*"}}),
                ctx(alice, ACCT, "kms:Encrypt", None),
                NotApplicable,
                "service principal never matches",
            ),
        ];
        for (policy, c, want, name) in cases {
            assert_eq!(eval(&policy, &c), want, "{name}");
        }
    }

    #[test]
    fn malformed_documents_are_refused() {
        let bad = [
            "not json",
            "[]",
            r#"{"Version": "2012-10-17"}"#,
            r#"{"Statement": []}"#,
            r#"{"Version": "2020-01-01", "Statement": {"Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*"}}"#,
            r#"{"Statement": {"Effect": "Permit", "Principal": "*", "Action": "kms:*", "Resource": "*"}}"#,
            r#"{"Statement": {"Effect": "Allow", "Action": "kms:*", "Resource": "*"}}"#,
            r#"{"Statement": {"Effect": "Allow", "Principal": "*", "Resource": "*"}}"#,
            r#"{"Statement": {"Effect": "Allow", "Principal": "*", "Action": "kms:*"}}"#,
            r#"{"Statement": {"Effect": "Allow", "Principal": {"AWS": "alice"}, "Action": "kms:*", "Resource": "*"}}"#,
            r#"{"Statement": {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::1234:root"}, "Action": "kms:*", "Resource": "*"}}"#,
            r#"{"Statement": {"Effect": "Allow", "Principal": "*", "Action": "Encrypt", "Resource": "*"}}"#,
            r#"{"Statement": {"Effect": "Allow", "Principal": "*", "Action": "kms:*", "NotAction": "kms:Decrypt", "Resource": "*"}}"#,
            r#"{"Statement": {"Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*", "Condition": {"StringMaybe": {"kms:CallerAccount": "x"}}}}"#,
            r#"{"Statement": {"Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*", "Condition": {"Bool": {"aws:SecureTransport": "yes"}}}}"#,
            r#"{"Statement": {"Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*", "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.0/99"}}}}"#,
            r#"{"Statement": {"Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*", "Extra": 1}}"#,
            r#"{"Statement": {"Effect": "Allow", "Principal": "*", "Action": [], "Resource": "*"}}"#,
        ];
        for doc in bad {
            assert!(matches!(Policy::parse(doc), Err(KmsError::MalformedPolicyDocument(_))), "{doc}");
        }
        assert!(matches!(Policy::parse(&" ".repeat(MAX_POLICY_BYTES + 1)), Err(KmsError::Validation(_))));
    }

    #[test]
    fn wildcards_and_cidrs() {
        assert!(wildcard_match("a*c", "abbbc") && wildcard_match("*", "") && wildcard_match("a?c", "abc"));
        assert!(!wildcard_match("a*c", "abd") && !wildcard_match("a?c", "ac"));
        assert!(wildcard_match("*a*b*", "xxaxxbxx") && !wildcard_match("*a*b", "ba"));
        assert!(wildcard_match("a*a", "aa") && !wildcard_match("a*a", "a") && wildcard_match("**", "") && wildcard_match("a**b", "ab"));
        assert!(wildcard_match("é?*", "éxyz") && wildcard_match("?", "é") && !wildcard_match("??", "é"));
        assert!(wildcard_match("*b?d*", "abcbxd") && !wildcard_match("*b?d", "abcbxde"));
        // A long pattern against a long value: linear, not quadratic (this would take minutes).
        let long_pattern = format!("*{}b*", "a".repeat(16_000));
        assert!(!wildcard_match(&long_pattern, &"a".repeat(200_000)));
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert!(cidr_contains("10.0.0.0/8", ip("10.255.0.1")) && !cidr_contains("10.0.0.0/8", ip("11.0.0.1")));
        assert!(cidr_contains("0.0.0.0/0", ip("8.8.8.8")) && cidr_contains("127.0.0.1", ip("127.0.0.1")));
        assert!(cidr_contains("2001:db8::/32", ip("2001:db8::1")) && !cidr_contains("2001:db8::/32", ip("2001:db9::1")));
        assert!(cidr_contains("127.0.0.0/8", ip("::ffff:127.0.0.1")));
    }
}
