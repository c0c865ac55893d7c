//! Key policies in the AWS policy language: parsing with validation (every defect is a
//! `MalformedPolicyDocumentException` naming it) and evaluation of one request against one
//! policy. How a policy combines with the caller's role and with grants is decided in
//! `kernel/authz.rs` (`Kms::authorize_key`) and written down in `docs/api.md`.
//!
//! Supported: `Version`, `Id`, `Statement` (one object or a list) with `Sid`, `Effect`,
//! `Principal` / `NotPrincipal` (`"*"`, `{"AWS": ...}` with account ids, account roots, user
//! ARNs and `"*"`; `Service` principals are accepted and never match), `Action` / `NotAction`
//! (with `*` and `?` wildcards, case-insensitive), `Resource` / `NotResource` (wildcards, matched
//! against the key ARN), and `Condition` with the `String*`, `Numeric*`, `Date*`, `Bool`,
//! `BinaryEquals`, `Null`, `IpAddress` / `NotIpAddress` and `Arn*` operators, their `IfExists`
//! forms and the `ForAnyValue:` / `ForAllValues:` set qualifiers.
//!
//! Policies fail closed. A condition key is accepted only if Clavis evaluates it
//! ([`CONDITION_KEYS`], [`CONDITION_KEY_PREFIXES`]): a key it did not know would be absent from
//! every request, so a `Deny` conditioned on it (or on a typo of a real key) would silently never
//! apply. A stored document that no longer parses denies every request
//! ([`Policy::for_stored`]); it never falls back to the default policy.

use crate::KmsError;
use base64::Engine;
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
    /// A matching `Allow` statement names the caller itself (its ARN, `"*"`, or everyone but
    /// the listed principals with `NotPrincipal`), and no `Deny` matches. As in AWS, a key
    /// policy that names a principal is enough on its own: no identity policy (role) is needed.
    AllowPrincipal,
    /// The only matching `Allow` statements name the caller's account (its root ARN or bare
    /// id), and no `Deny` matches. The account delegates to its identities' own permissions:
    /// the caller's role must allow the action too.
    AllowAccount,
    /// No statement matches: refused unless something else (a grant) allows it.
    NotApplicable,
}

/// Properties of the key a request uses (the `kms:KeySpec`, `kms:KeyUsage` and `kms:KeyOrigin`
/// condition keys).
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyFacts<'a> {
    /// `SYMMETRIC_DEFAULT`, ...
    pub key_spec: &'a str,
    /// `ENCRYPT_DECRYPT`, ...
    pub key_usage: &'a str,
    /// `AWS_KMS` or `EXTERNAL`.
    pub origin: &'a str,
}

/// The facts about a request that a policy can test.
#[derive(Debug, Clone, Default)]
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
    /// Whether the request arrived over TLS (`aws:SecureTransport`).
    pub secure_transport: bool,
    /// The time of the request, Unix milliseconds (`aws:CurrentTime`, `aws:EpochTime`).
    pub now_ms: i64,
    /// The key's properties, for operations on a key.
    pub key: Option<KeyFacts<'a>>,
    /// The key's tags (`aws:ResourceTag/<key>`). Filled only when the policy tests them.
    pub resource_tags: &'a [(String, String)],
    /// The key's alias names (`kms:ResourceAliases`). Filled only when the policy tests them.
    pub resource_aliases: &'a [String],
    /// The alias the request named the key by, as `alias/<name>` (`kms:RequestAlias`).
    pub request_alias: Option<&'a str>,
    /// Condition keys that come from the operation's parameters (lower-case names), such as
    /// `kms:grantoperations` or `aws:requesttag/<key>`; a name may appear once, with its values.
    pub extra: &'a [(String, Vec<String>)],
}

/// The condition keys Clavis evaluates (lower case; names are case-insensitive). Any other key
/// makes a policy malformed: see the module documentation for why.
pub const CONDITION_KEYS: &[&str] = &[
    "aws:securetransport",
    "aws:sourceip",
    "aws:currenttime",
    "aws:epochtime",
    "aws:principalarn",
    "aws:principalaccount",
    "aws:principaltype",
    "aws:username",
    "aws:tagkeys",
    "kms:calleraccount",
    "kms:encryptioncontextkeys",
    "kms:encryptionalgorithm",
    "kms:grantoperations",
    "kms:granteeprincipal",
    "kms:retiringprincipal",
    "kms:grantisforawsresource",
    "kms:grantconstrainttype",
    "kms:keyspec",
    "kms:keyusage",
    "kms:keyorigin",
    "kms:requestalias",
    "kms:resourcealiases",
    "kms:viaservice",
    "kms:bypasspolicylockoutsafetycheck",
    "kms:rotationperiodindays",
    "kms:schedulekeydeletionpendingwindowindays",
    "kms:wrappingalgorithm",
    "kms:wrappingkeyspec",
    "kms:expirationmodel",
    "kms:validto",
    "kms:reencryptonsamekey",
    "kms:signingalgorithm",
    "kms:messagetype",
    "kms:macalgorithm",
    "kms:keyagreementalgorithm",
    "kms:datakeypairspec",
];

/// Condition key families with a name part after the prefix (lower case), which must not be
/// empty: `aws:ResourceTag/<tag key>`, `aws:RequestTag/<tag key>`,
/// `kms:EncryptionContext:<context key>`.
pub const CONDITION_KEY_PREFIXES: &[&str] = &["aws:resourcetag/", "aws:requesttag/", "kms:encryptioncontext:"];

fn known_condition_key(key: &str) -> bool {
    CONDITION_KEYS.contains(&key) || CONDITION_KEY_PREFIXES.iter().any(|p| key.strip_prefix(p).is_some_and(|rest| !rest.is_empty()))
}

impl RequestContext<'_> {
    /// The values of a condition key (lower-case), or `None` when the request has no such key.
    fn values(&self, key: &str) -> Option<Vec<String>> {
        // Names after a prefix (context keys, tag keys) are matched without regard to case, as
        // the whole condition key name is in AWS.
        if let Some(ctx_key) = key.strip_prefix("kms:encryptioncontext:") {
            let ctx = self.encryption_context?;
            return ctx.iter().find(|(k, _)| k.to_ascii_lowercase() == ctx_key).map(|(_, v)| vec![v.clone()]);
        }
        if let Some(tag) = key.strip_prefix("aws:resourcetag/") {
            return self.resource_tags.iter().find(|(k, _)| k.to_ascii_lowercase() == tag).map(|(_, v)| vec![v.clone()]);
        }
        let one = |v: &str| Some(vec![v.to_owned()]);
        match key {
            "kms:encryptioncontextkeys" => self.encryption_context.filter(|c| !c.is_empty()).map(|c| c.keys().cloned().collect()),
            "kms:calleraccount" | "aws:principalaccount" => one(self.principal_account),
            "aws:principalarn" => one(self.principal_arn),
            "aws:sourceip" => self.source_ip.map(|ip| vec![ip.to_string()]),
            "aws:principaltype" => one(if self.principal_arn.ends_with(":root") { "Account" } else { "User" }),
            // An IAM user's friendly name; the account root has none (as in AWS).
            "aws:username" => self.principal_arn.split_once(":user/").and_then(|(_, name)| one(name)),
            "aws:securetransport" => one(if self.secure_transport { "true" } else { "false" }),
            "aws:currenttime" => Some(vec![crate::audit::event_time(self.now_ms)]),
            "aws:epochtime" => Some(vec![self.now_ms.div_euclid(1000).to_string()]),
            "kms:keyspec" => self.key.and_then(|k| one(k.key_spec)),
            "kms:keyusage" => self.key.and_then(|k| one(k.key_usage)),
            "kms:keyorigin" => self.key.and_then(|k| one(k.origin)),
            "kms:requestalias" => self.request_alias.and_then(one),
            "kms:resourcealiases" => (!self.resource_aliases.is_empty()).then(|| self.resource_aliases.to_vec()),
            // kms:ViaService is present only on the calls Secrets Manager makes for a caller
            // (`secretsmanager.<region>.amazonaws.com`, from the operation's parameters).
            _ => self.extra.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()),
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
    NumericEquals,
    NumericNotEquals,
    NumericLessThan,
    NumericLessThanEquals,
    NumericGreaterThan,
    NumericGreaterThanEquals,
    DateEquals,
    DateNotEquals,
    DateLessThan,
    DateLessThanEquals,
    DateGreaterThan,
    DateGreaterThanEquals,
    Bool,
    BinaryEquals,
    Null,
    IpAddress,
    NotIpAddress,
    ArnEquals,
    ArnLike,
    ArnNotEquals,
    ArnNotLike,
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
    /// Set for a stored document that no longer parses: every request is refused.
    unreadable: bool,
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
        "NumericEquals" => Operator::NumericEquals,
        "NumericNotEquals" => Operator::NumericNotEquals,
        "NumericLessThan" => Operator::NumericLessThan,
        "NumericLessThanEquals" => Operator::NumericLessThanEquals,
        "NumericGreaterThan" => Operator::NumericGreaterThan,
        "NumericGreaterThanEquals" => Operator::NumericGreaterThanEquals,
        "DateEquals" => Operator::DateEquals,
        "DateNotEquals" => Operator::DateNotEquals,
        "DateLessThan" => Operator::DateLessThan,
        "DateLessThanEquals" => Operator::DateLessThanEquals,
        "DateGreaterThan" => Operator::DateGreaterThan,
        "DateGreaterThanEquals" => Operator::DateGreaterThanEquals,
        "Bool" => Operator::Bool,
        "BinaryEquals" => Operator::BinaryEquals,
        "Null" if !if_exists => Operator::Null,
        "IpAddress" => Operator::IpAddress,
        "NotIpAddress" => Operator::NotIpAddress,
        "ArnEquals" => Operator::ArnEquals,
        "ArnLike" => Operator::ArnLike,
        "ArnNotEquals" => Operator::ArnNotEquals,
        "ArnNotLike" => Operator::ArnNotLike,
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
            let bad = |what: &str| Err(malformed(format!("Condition {op_name} on {key} needs {what}.")));
            match operator {
                Operator::Bool | Operator::Null if values.iter().any(|v| v != "true" && v != "false") => {
                    return bad("true or false");
                }
                Operator::IpAddress | Operator::NotIpAddress if values.iter().any(|v| parse_cidr(v).is_none()) => {
                    return bad("IP addresses or CIDR blocks");
                }
                o if o.is_numeric() && values.iter().any(|v| parse_number(v).is_none()) => return bad("numbers"),
                o if o.is_date() && values.iter().any(|v| parse_date(v).is_none()) => {
                    return bad("dates (ISO 8601, such as 2026-01-31T12:00:00Z, or seconds since 1970)");
                }
                o if o.is_arn() && values.iter().any(|v| v.splitn(6, ':').count() != 6 || !v.starts_with("arn:")) => {
                    return bad("ARNs (arn:partition:service:region:account:resource, with * and ? wildcards)");
                }
                Operator::BinaryEquals if values.iter().any(|v| base64::engine::general_purpose::STANDARD.decode(v).is_err()) => {
                    return bad("base64 values");
                }
                _ => {}
            }
            let lower = key.to_ascii_lowercase();
            if !known_condition_key(&lower) {
                return Err(malformed(format!(
                    "Policy contains a condition key that Clavis does not evaluate: {key}. A condition on it could never match, so it is refused rather than ignored."
                )));
            }
            out.push(Condition { operator, if_exists, qualifier, key: lower, values });
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
        Ok(Policy { statements, unreadable: false })
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

    /// The policy in force for a stored document. A document that no longer parses (written
    /// by an older version, or changed in the database behind Clavis's back) denies every
    /// request on its key: falling back to the default policy would hand the key to the whole
    /// account, and dropping the statements or conditions Clavis cannot read could drop a
    /// `Deny`. [`Policy::is_unreadable`] says so, and [`Policy::evaluate`] answers
    /// [`Decision::ExplicitDeny`] for it.
    pub fn for_stored(doc: &str) -> Policy {
        Policy::parse(doc).unwrap_or(Policy { statements: Vec::new(), unreadable: true })
    }

    /// Whether this is a stored document that no longer parses ([`Policy::for_stored`]).
    pub fn is_unreadable(&self) -> bool {
        self.unreadable
    }

    /// Whether a condition tests a key with this (lower-case) name or name prefix, so that the
    /// caller can skip fetching facts (tags, aliases) that no statement looks at.
    pub fn tests_condition_key(&self, prefix: &str) -> bool {
        self.statements.iter().flat_map(|s| &s.conditions).any(|c| c.key.starts_with(prefix))
    }

    /// Evaluates a request: an explicit deny wins, then an allow that names the caller itself,
    /// then an allow through the caller's account, else not applicable.
    pub fn evaluate(&self, ctx: &RequestContext<'_>) -> Decision {
        if self.unreadable {
            return Decision::ExplicitDeny;
        }
        let action = ctx.action.to_ascii_lowercase();
        let mut allowed: Option<Via> = None;
        for (s, via) in self.statements.iter().filter_map(|s| s.matches(ctx, &action).map(|via| (s, via))) {
            match s.effect {
                Effect::Deny => return Decision::ExplicitDeny,
                Effect::Allow => allowed = allowed.max(Some(via)),
            }
        }
        match allowed {
            Some(Via::Principal) => Decision::AllowPrincipal,
            Some(Via::Account) => Decision::AllowAccount,
            None => Decision::NotApplicable,
        }
    }
}

/// How a statement's principal matched the caller. Ordered: naming the principal is the
/// stronger match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Via {
    /// Through the caller's account (its root ARN or bare id).
    Account,
    /// The caller itself: its ARN, `"*"`, or `NotPrincipal` not listing it.
    Principal,
}

impl Statement {
    /// How the statement applies to the request, or `None` when it does not; `action` is the
    /// request's action in lower case.
    fn matches(&self, ctx: &RequestContext<'_>, action: &str) -> Option<Via> {
        let via = self
            .principals
            .iter()
            .filter_map(|p| match p {
                Principal::Any => Some(Via::Principal),
                // The account root calling is the principal the statement names.
                Principal::Account(a) if a == ctx.principal_account && ctx.principal_arn.ends_with(":root") => Some(Via::Principal),
                Principal::Account(a) if a == ctx.principal_account => Some(Via::Account),
                Principal::Arn(arn) if arn == ctx.principal_arn => Some(Via::Principal),
                _ => None,
            })
            .max();
        let via = match (self.principal_negated, via) {
            (false, via) => via?,
            // NotPrincipal: everyone except those listed. An account listed excludes all of its
            // principals, as in AWS.
            (true, None) => Via::Principal,
            (true, Some(_)) => return None,
        };
        let action = self.actions.patterns.iter().any(|p| wildcard_match(p, action));
        let resource = self.resources.patterns.iter().any(|p| wildcard_match(p, ctx.resource));
        (action != self.actions.negated && resource != self.resources.negated && self.conditions.iter().all(|c| c.holds(ctx)))
            .then_some(via)
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
            Operator::StringNotEquals
                | Operator::StringNotEqualsIgnoreCase
                | Operator::StringNotLike
                | Operator::NumericNotEquals
                | Operator::DateNotEquals
                | Operator::NotIpAddress
                | Operator::ArnNotEquals
                | Operator::ArnNotLike
        )
    }

    /// Whether one request value satisfies the operator against the policy's values (any of
    /// them for the positive operators, none of them for the negated ones). A request value of
    /// the wrong type (not a number for `Numeric*`, ...) satisfies no operator.
    fn value_holds(&self, v: &str) -> bool {
        let ip = || v.parse::<IpAddr>().ok();
        let any = |f: &dyn Fn(&str) -> bool| self.values.iter().any(|p| f(p));
        let num = |cmp: &dyn Fn(f64, f64) -> bool| parse_number(v).is_some_and(|r| any(&|p| parse_number(p).is_some_and(|p| cmp(r, p))));
        let date = |cmp: &dyn Fn(f64, f64) -> bool| parse_date(v).is_some_and(|r| any(&|p| parse_date(p).is_some_and(|p| cmp(r, p))));
        match self.operator {
            Operator::StringEquals => any(&|p| p == v),
            Operator::StringNotEquals => !any(&|p| p == v),
            Operator::StringEqualsIgnoreCase => any(&|p| p.eq_ignore_ascii_case(v)),
            Operator::StringNotEqualsIgnoreCase => !any(&|p| p.eq_ignore_ascii_case(v)),
            Operator::StringLike => any(&|p| wildcard_match(p, v)),
            Operator::StringNotLike => !any(&|p| wildcard_match(p, v)),
            Operator::NumericEquals => num(&|r, p| r == p),
            Operator::NumericNotEquals => parse_number(v).is_some() && !num(&|r, p| r == p),
            Operator::NumericLessThan => num(&|r, p| r < p),
            Operator::NumericLessThanEquals => num(&|r, p| r <= p),
            Operator::NumericGreaterThan => num(&|r, p| r > p),
            Operator::NumericGreaterThanEquals => num(&|r, p| r >= p),
            Operator::DateEquals => date(&|r, p| r == p),
            Operator::DateNotEquals => parse_date(v).is_some() && !date(&|r, p| r == p),
            Operator::DateLessThan => date(&|r, p| r < p),
            Operator::DateLessThanEquals => date(&|r, p| r <= p),
            Operator::DateGreaterThan => date(&|r, p| r > p),
            Operator::DateGreaterThanEquals => date(&|r, p| r >= p),
            Operator::Bool => any(&|p| p.eq_ignore_ascii_case(v)),
            // Policy values are base64 of the bytes the request value must be.
            Operator::BinaryEquals => any(&|p| base64::engine::general_purpose::STANDARD.decode(p).is_ok_and(|b| b == v.as_bytes())),
            Operator::IpAddress => ip().is_some_and(|ip| any(&|p| cidr_contains(p, ip))),
            Operator::NotIpAddress => ip().is_some_and(|ip| !any(&|p| cidr_contains(p, ip))),
            Operator::ArnEquals | Operator::ArnLike => any(&|p| arn_match(p, v)),
            Operator::ArnNotEquals | Operator::ArnNotLike => !any(&|p| arn_match(p, v)),
            Operator::Null => false,
        }
    }
}

impl Operator {
    fn is_numeric(self) -> bool {
        matches!(
            self,
            Operator::NumericEquals
                | Operator::NumericNotEquals
                | Operator::NumericLessThan
                | Operator::NumericLessThanEquals
                | Operator::NumericGreaterThan
                | Operator::NumericGreaterThanEquals
        )
    }

    fn is_date(self) -> bool {
        matches!(
            self,
            Operator::DateEquals
                | Operator::DateNotEquals
                | Operator::DateLessThan
                | Operator::DateLessThanEquals
                | Operator::DateGreaterThan
                | Operator::DateGreaterThanEquals
        )
    }

    fn is_arn(self) -> bool {
        matches!(self, Operator::ArnEquals | Operator::ArnLike | Operator::ArnNotEquals | Operator::ArnNotLike)
    }
}

/// A number as the policy language writes one (`30`, `-1`, `1546257599.0`).
fn parse_number(s: &str) -> Option<f64> {
    let s = s.trim();
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    s.parse::<f64>().ok().filter(|n| n.is_finite())
}

/// A date, as seconds since 1970: ISO 8601 (`2026-01-31`, `2026-01-31T12:00:00Z`, with optional
/// fractional seconds and a `Z` or `+hh:mm` offset; no offset means UTC) or a number of seconds
/// since 1970, the two forms AWS's `Date*` operators accept.
fn parse_date(s: &str) -> Option<f64> {
    if let Some(n) = parse_number(s) {
        return Some(n);
    }
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes().all(|c| c.is_ascii_digit()).then(|| part.parse().ok())?
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
        return None;
    }
    let mut seconds = clavis_sigv4::days_from_civil(y, mo, d) as f64 * 86_400.0;
    let rest = &s[10..];
    if rest.is_empty() {
        return Some(seconds);
    }
    let time = rest.strip_prefix('T')?;
    // The zone: Z, +hh:mm, -hh:mm, +hhmm, or nothing (UTC).
    let (clock, offset) = match time.find(['Z', '+', '-']) {
        Some(i) => {
            let zone = &time[i..];
            let offset = if zone == "Z" {
                0
            } else {
                let sign = if zone.starts_with('-') { -1 } else { 1 };
                let hm = zone[1..].replace(':', "");
                if hm.len() != 4 || !hm.bytes().all(|c| c.is_ascii_digit()) {
                    return None;
                }
                sign * (hm[..2].parse::<i64>().ok()? * 3600 + hm[2..].parse::<i64>().ok()? * 60)
            };
            (&time[..i], offset)
        }
        None => (time, 0),
    };
    let mut parts = clock.split(':');
    let h: i64 = parts.next().filter(|p| p.len() == 2)?.parse().ok()?;
    let mi: i64 = parts.next().filter(|p| p.len() == 2)?.parse().ok()?;
    let sec: f64 = match parts.next() {
        Some(p) if p.len() >= 2 && p.bytes().all(|c| c.is_ascii_digit() || c == b'.') => p.parse().ok()?,
        Some(_) => return None,
        None => 0.0,
    };
    if parts.next().is_some() || h > 23 || mi > 59 || sec >= 61.0 {
        return None;
    }
    seconds += (h * 3600 + mi * 60 - offset) as f64 + sec;
    Some(seconds)
}

/// `ArnEquals` / `ArnLike`: each of the six colon-separated parts is matched on its own, with
/// `*` and `?` wildcards (so a `*` never reaches across a colon of the first five parts).
fn arn_match(pattern: &str, arn: &str) -> bool {
    let p: Vec<&str> = pattern.splitn(6, ':').collect();
    let a: Vec<&str> = arn.splitn(6, ':').collect();
    p.len() == 6 && a.len() == 6 && p.iter().zip(&a).all(|(p, a)| wildcard_match(p, a))
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
            ..Default::default()
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
        assert_eq!(eval(&p, &ctx(alice, ACCT, "kms:Decrypt", None)), Decision::AllowAccount);
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
                AllowPrincipal,
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
                AllowAccount,
                "bare account id",
            ),
            (
                allow(serde_json::json!("*"), serde_json::json!("kms:*"), None),
                ctx(other, "444455556666", "kms:Encrypt", None),
                AllowPrincipal,
                "anyone",
            ),
            (
                allow(serde_json::json!({"AWS": "*"}), serde_json::json!(["kms:Encrypt", "kms:GenerateDataKey*"]), None),
                ctx(alice, ACCT, "kms:GenerateDataKeyWithoutPlaintext", None),
                AllowPrincipal,
                "action wildcard",
            ),
            (
                allow(serde_json::json!({"AWS": "*"}), serde_json::json!("KMS:encrypt"), None),
                ctx(alice, ACCT, "kms:Encrypt", None),
                AllowPrincipal,
                "actions are case-insensitive",
            ),
            (
                allow(serde_json::json!({"AWS": "*"}), serde_json::json!("kms:Describe?ey"), None),
                ctx(alice, ACCT, "kms:DescribeKey", None),
                AllowPrincipal,
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
                AllowPrincipal,
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
                AllowPrincipal,
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
                AllowPrincipal,
                "ignore case, key name case-insensitive",
            ),
            (
                allow(
                    serde_json::json!({"AWS": "*"}),
                    serde_json::json!("kms:Decrypt"),
                    Some(serde_json::json!({"StringLike": {"kms:EncryptionContext:Department": "Fin*"}})),
                ),
                ctx(alice, ACCT, "kms:Decrypt", Some(&finance)),
                AllowPrincipal,
                "StringLike",
            ),
            (
                allow(
                    serde_json::json!({"AWS": "*"}),
                    serde_json::json!("kms:Decrypt"),
                    Some(serde_json::json!({"StringNotEquals": {"kms:EncryptionContext:Department": "IT"}})),
                ),
                ctx(alice, ACCT, "kms:Decrypt", None),
                AllowPrincipal,
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
                AllowPrincipal,
                "ForAllValues all listed",
            ),
            (
                allow(
                    serde_json::json!({"AWS": "*"}),
                    serde_json::json!("kms:Encrypt"),
                    Some(serde_json::json!({"ForAnyValue:StringEquals": {"kms:EncryptionContextKeys": "Project"}})),
                ),
                ctx(alice, ACCT, "kms:Encrypt", Some(&two)),
                AllowPrincipal,
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
                AllowPrincipal,
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
                AllowPrincipal,
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
                "ViaService absent on a direct call",
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
                AllowPrincipal,
                "PrincipalArn",
            ),
            (
                allow(
                    serde_json::json!({"AWS": "*"}),
                    serde_json::json!("kms:Encrypt"),
                    Some(serde_json::json!({"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}})),
                ),
                ctx(alice, ACCT, "kms:Encrypt", None),
                AllowPrincipal,
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
                AllowPrincipal,
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
                AllowPrincipal,
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
                AllowAccount,
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

    /// One statement allowing everyone `kms:*` when `condition` holds.
    fn with_condition(condition: serde_json::Value) -> Policy {
        let doc = serde_json::json!({"Statement": {"Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*", "Condition": condition}});
        Policy::parse(&doc.to_string()).expect("valid policy")
    }

    // Issue #15, item 4: every condition key Clavis accepts is evaluated from the request.
    #[test]
    fn every_condition_key_is_evaluated() {
        let alice = "arn:aws:iam::111122223333:user/alice";
        let tags = vec![("Project".to_owned(), "Apollo".to_owned())];
        let aliases = vec!["alias/finance-key".to_owned(), "alias/other".to_owned()];
        let extra: Vec<(String, Vec<String>)> = [
            ("aws:requesttag/team", vec!["blue"]),
            ("aws:tagkeys", vec!["Team", "Cost"]),
            ("kms:grantoperations", vec!["Decrypt", "Encrypt"]),
            ("kms:granteeprincipal", vec![alice]),
            ("kms:retiringprincipal", vec![alice]),
            ("kms:grantisforawsresource", vec!["false"]),
            ("kms:grantconstrainttype", vec!["EncryptionContextSubset"]),
            ("kms:encryptionalgorithm", vec!["SYMMETRIC_DEFAULT"]),
            ("kms:bypasspolicylockoutsafetycheck", vec!["false"]),
            ("kms:rotationperiodindays", vec!["365"]),
            ("kms:schedulekeydeletionpendingwindowindays", vec!["7"]),
            ("kms:wrappingalgorithm", vec!["RSAES_OAEP_SHA_256"]),
            ("kms:wrappingkeyspec", vec!["RSA_4096"]),
            ("kms:expirationmodel", vec!["KEY_MATERIAL_EXPIRES"]),
            ("kms:validto", vec!["1767225600"]),
            ("kms:reencryptonsamekey", vec!["true"]),
            ("kms:signingalgorithm", vec!["RSASSA_PSS_SHA_256"]),
            ("kms:messagetype", vec!["DIGEST"]),
            ("kms:macalgorithm", vec!["HMAC_SHA_256"]),
            ("kms:keyagreementalgorithm", vec!["ECDH"]),
            ("kms:datakeypairspec", vec!["RSA_2048"]),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
        .collect();
        let finance = ec(&[("Department", "Finance")]);
        let c = RequestContext {
            principal_arn: alice,
            principal_account: ACCT,
            action: "kms:Decrypt",
            resource: KEY,
            encryption_context: Some(&finance),
            source_ip: "10.0.0.7".parse().ok(),
            secure_transport: true,
            // 2026-01-01T00:00:00Z
            now_ms: 1_767_225_600_000,
            key: Some(KeyFacts { key_spec: "SYMMETRIC_DEFAULT", key_usage: "ENCRYPT_DECRYPT", origin: "EXTERNAL" }),
            resource_tags: &tags,
            resource_aliases: &aliases,
            request_alias: Some("alias/finance-key"),
            extra: &extra,
        };
        // (condition that holds for `c`, one that does not)
        let cases = [
            (serde_json::json!({"Bool": {"aws:SecureTransport": "true"}}), serde_json::json!({"Bool": {"aws:SecureTransport": "false"}})),
            (
                serde_json::json!({"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}}),
                serde_json::json!({"NotIpAddress": {"aws:SourceIp": "10.0.0.0/8"}}),
            ),
            (
                serde_json::json!({"DateGreaterThanEquals": {"aws:CurrentTime": "2026-01-01T00:00:00Z"}}),
                serde_json::json!({"DateLessThan": {"aws:CurrentTime": "2026-01-01"}}),
            ),
            (
                serde_json::json!({"NumericEquals": {"aws:EpochTime": 1767225600}}),
                serde_json::json!({"NumericLessThan": {"aws:EpochTime": "1767225600"}}),
            ),
            (
                serde_json::json!({"DateEquals": {"aws:EpochTime": "2026-01-01T01:00:00+01:00"}}),
                serde_json::json!({"DateNotEquals": {"aws:EpochTime": "1767225600"}}),
            ),
            (
                serde_json::json!({"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::*:user/ali*"}}),
                serde_json::json!({"ArnEquals": {"aws:PrincipalArn": "arn:aws:iam::*:user/bob"}}),
            ),
            (
                serde_json::json!({"ArnNotLike": {"aws:PrincipalArn": "arn:aws:iam::*:root"}}),
                serde_json::json!({"ArnNotEquals": {"aws:PrincipalArn": alice}}),
            ),
            (
                serde_json::json!({"StringEquals": {"aws:PrincipalAccount": ACCT}}),
                serde_json::json!({"StringEquals": {"aws:PrincipalAccount": "444455556666"}}),
            ),
            (
                serde_json::json!({"StringEquals": {"aws:PrincipalType": "User"}}),
                serde_json::json!({"StringEquals": {"aws:PrincipalType": "Account"}}),
            ),
            (serde_json::json!({"StringEquals": {"aws:username": "alice"}}), serde_json::json!({"StringEquals": {"aws:username": "bob"}})),
            (
                serde_json::json!({"StringEquals": {"aws:ResourceTag/project": "Apollo"}}),
                serde_json::json!({"StringEquals": {"aws:ResourceTag/Project": "Gemini"}}),
            ),
            (
                serde_json::json!({"StringEquals": {"aws:RequestTag/Team": "blue"}}),
                serde_json::json!({"Null": {"aws:RequestTag/Other": "false"}}),
            ),
            (
                serde_json::json!({"ForAllValues:StringEquals": {"aws:TagKeys": ["Team", "Cost", "Owner"]}}),
                serde_json::json!({"ForAllValues:StringEquals": {"aws:TagKeys": ["Team"]}}),
            ),
            (
                serde_json::json!({"StringEquals": {"kms:CallerAccount": ACCT}}),
                serde_json::json!({"StringNotEquals": {"kms:CallerAccount": ACCT}}),
            ),
            (
                serde_json::json!({"StringEquals": {"kms:EncryptionContext:department": "Finance"}}),
                serde_json::json!({"StringEquals": {"kms:EncryptionContext:Department": "IT"}}),
            ),
            (
                serde_json::json!({"ForAnyValue:StringEquals": {"kms:EncryptionContextKeys": "Department"}}),
                serde_json::json!({"ForAnyValue:StringEquals": {"kms:EncryptionContextKeys": "Project"}}),
            ),
            (
                serde_json::json!({"StringEquals": {"kms:EncryptionAlgorithm": "SYMMETRIC_DEFAULT"}}),
                serde_json::json!({"StringEquals": {"kms:EncryptionAlgorithm": "RSAES_OAEP_SHA_256"}}),
            ),
            (
                serde_json::json!({"ForAllValues:StringEquals": {"kms:GrantOperations": ["Decrypt", "Encrypt", "GenerateDataKey"]}}),
                serde_json::json!({"ForAllValues:StringEquals": {"kms:GrantOperations": ["Decrypt"]}}),
            ),
            (
                serde_json::json!({"StringEquals": {"kms:GranteePrincipal": alice}}),
                serde_json::json!({"StringEquals": {"kms:GranteePrincipal": "x"}}),
            ),
            (
                serde_json::json!({"StringLike": {"kms:RetiringPrincipal": "*:user/alice"}}),
                serde_json::json!({"StringLike": {"kms:RetiringPrincipal": "*:root"}}),
            ),
            (
                serde_json::json!({"Bool": {"kms:GrantIsForAWSResource": false}}),
                serde_json::json!({"Bool": {"kms:GrantIsForAWSResource": true}}),
            ),
            (
                serde_json::json!({"StringEquals": {"kms:GrantConstraintType": "EncryptionContextSubset"}}),
                serde_json::json!({"StringEquals": {"kms:GrantConstraintType": "EncryptionContextEquals"}}),
            ),
            (
                serde_json::json!({"StringEquals": {"kms:KeySpec": "SYMMETRIC_DEFAULT"}}),
                serde_json::json!({"StringEquals": {"kms:KeySpec": "RSA_2048"}}),
            ),
            (
                serde_json::json!({"StringEquals": {"kms:KeyUsage": "ENCRYPT_DECRYPT"}}),
                serde_json::json!({"StringEquals": {"kms:KeyUsage": "SIGN_VERIFY"}}),
            ),
            (
                serde_json::json!({"StringEquals": {"kms:KeyOrigin": "EXTERNAL"}}),
                serde_json::json!({"StringEquals": {"kms:KeyOrigin": "AWS_KMS"}}),
            ),
            (
                serde_json::json!({"StringLike": {"kms:RequestAlias": "alias/finance*"}}),
                serde_json::json!({"StringEquals": {"kms:RequestAlias": "alias/other"}}),
            ),
            (
                serde_json::json!({"ForAnyValue:StringEquals": {"kms:ResourceAliases": "alias/other"}}),
                serde_json::json!({"ForAllValues:StringEquals": {"kms:ResourceAliases": "alias/other"}}),
            ),
            (serde_json::json!({"Null": {"kms:ViaService": "true"}}), serde_json::json!({"StringLike": {"kms:ViaService": "*"}})),
            (
                serde_json::json!({"Bool": {"kms:BypassPolicyLockoutSafetyCheck": "false"}}),
                serde_json::json!({"Bool": {"kms:BypassPolicyLockoutSafetyCheck": "true"}}),
            ),
            (
                serde_json::json!({"NumericLessThanEquals": {"kms:RotationPeriodInDays": 365}}),
                serde_json::json!({"NumericGreaterThan": {"kms:RotationPeriodInDays": "365"}}),
            ),
            (
                serde_json::json!({"NumericGreaterThanEquals": {"kms:ScheduleKeyDeletionPendingWindowInDays": 7}}),
                serde_json::json!({"NumericNotEquals": {"kms:ScheduleKeyDeletionPendingWindowInDays": 7}}),
            ),
            (
                serde_json::json!({"StringEquals": {"kms:WrappingAlgorithm": "RSAES_OAEP_SHA_256"}}),
                serde_json::json!({"StringEquals": {"kms:WrappingAlgorithm": "RSAES_OAEP_SHA_1"}}),
            ),
            (
                serde_json::json!({"StringEquals": {"kms:WrappingKeySpec": "RSA_4096"}}),
                serde_json::json!({"StringEquals": {"kms:WrappingKeySpec": "RSA_2048"}}),
            ),
            (
                serde_json::json!({"StringEquals": {"kms:ExpirationModel": "KEY_MATERIAL_EXPIRES"}}),
                serde_json::json!({"StringEquals": {"kms:ExpirationModel": "KEY_MATERIAL_DOES_NOT_EXPIRE"}}),
            ),
            (
                serde_json::json!({"NumericLessThanEquals": {"kms:ValidTo": "1767225600.0"}}),
                serde_json::json!({"DateLessThan": {"kms:ValidTo": "2025-12-31T23:59:59Z"}}),
            ),
            (serde_json::json!({"Bool": {"kms:ReEncryptOnSameKey": true}}), serde_json::json!({"Bool": {"kms:ReEncryptOnSameKey": false}})),
            (
                serde_json::json!({"StringLike": {"kms:SigningAlgorithm": "RSASSA_PSS_*"}}),
                serde_json::json!({"StringEquals": {"kms:SigningAlgorithm": "ECDSA_SHA_256"}}),
            ),
            (
                serde_json::json!({"StringEquals": {"kms:MessageType": "DIGEST"}}),
                serde_json::json!({"StringEquals": {"kms:MessageType": "RAW"}}),
            ),
            (
                serde_json::json!({"StringEquals": {"kms:MacAlgorithm": "HMAC_SHA_256"}}),
                serde_json::json!({"StringEquals": {"kms:MacAlgorithm": "HMAC_SHA_512"}}),
            ),
            (
                serde_json::json!({"StringEquals": {"kms:KeyAgreementAlgorithm": "ECDH"}}),
                serde_json::json!({"StringNotEquals": {"kms:KeyAgreementAlgorithm": "ECDH"}}),
            ),
            (
                serde_json::json!({"StringEquals": {"kms:DataKeyPairSpec": "RSA_2048"}}),
                serde_json::json!({"StringEquals": {"kms:DataKeyPairSpec": "ECC_NIST_P256"}}),
            ),
            (
                serde_json::json!({"BinaryEquals": {"aws:username": "YWxpY2U="}}),
                serde_json::json!({"NumericGreaterThan": {"aws:username": 1}}),
            ),
        ];
        for (holds, fails) in &cases {
            assert_eq!(with_condition(holds.clone()).evaluate(&c), Decision::AllowPrincipal, "{holds}");
            assert_eq!(with_condition(fails.clone()).evaluate(&c), Decision::NotApplicable, "{fails}");
        }
        // Every accepted key appears in a case above.
        let tested = serde_json::to_string(&cases.iter().map(|(a, _)| a).collect::<Vec<_>>()).expect("json").to_ascii_lowercase();
        for key in CONDITION_KEYS.iter().chain(CONDITION_KEY_PREFIXES) {
            assert!(tested.contains(key), "{key} is not tested");
        }
        // The account root has no aws:username; a request without TLS is not secure transport.
        let root = RequestContext { principal_arn: "arn:aws:iam::111122223333:root", secure_transport: false, ..c.clone() };
        assert_eq!(with_condition(serde_json::json!({"Null": {"aws:username": "true"}})).evaluate(&root), Decision::AllowPrincipal);
        let deny_plain = serde_json::json!({"Statement": [
            {"Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*"},
            {"Effect": "Deny", "Principal": "*", "Action": "kms:*", "Resource": "*", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}]});
        assert_eq!(eval(&deny_plain, &root), Decision::ExplicitDeny);
        assert_eq!(eval(&deny_plain, &c), Decision::AllowPrincipal);
    }

    // Issue #15, item 4: a condition key Clavis does not evaluate (a typo, another service's key)
    // is refused by name instead of silently never matching.
    #[test]
    fn unknown_condition_keys_are_refused_by_name() {
        for key in [
            "kms:EncryptionContex:tenant",
            "kms:EncryptionContext:",
            "aws:ResourceTag/",
            "s3:prefix",
            "kms:SigningAlgorithms",
            "aws:SourceVpc",
        ] {
            let doc = serde_json::json!({"Statement": {"Effect": "Deny", "Principal": "*", "Action": "kms:*", "Resource": "*",
                "Condition": {"StringEquals": {key: "x"}}}});
            match Policy::parse(&doc.to_string()) {
                Err(KmsError::MalformedPolicyDocument(m)) => assert!(m.contains(key), "{m}"),
                other => panic!("{key}: {other:?}"),
            }
        }
        // Names are case-insensitive.
        assert!(
            Policy::parse(
                &serde_json::json!({"Statement": {"Effect": "Deny", "Principal": "*", "Action": "kms:*", "Resource": "*",
            "Condition": {"Bool": {"AWS:SECURETRANSPORT": "false"}}}})
                .to_string()
            )
            .is_ok()
        );
        // Operator values must fit the operator.
        for (op, value) in [
            ("NumericEquals", "seven"),
            ("DateLessThan", "yesterday"),
            ("DateLessThan", "2026-13-01"),
            ("ArnLike", "alice"),
            ("BinaryEquals", "not base64!"),
            ("StringEqualsMaybe", "x"),
            ("NullIfExists", "true"),
        ] {
            let doc = serde_json::json!({"Statement": {"Effect": "Allow", "Principal": "*", "Action": "kms:*", "Resource": "*",
                "Condition": {op: {"aws:PrincipalArn": value}}}});
            assert!(matches!(Policy::parse(&doc.to_string()), Err(KmsError::MalformedPolicyDocument(_))), "{op} {value}");
        }
    }

    // Issue #15, item 4: a stored policy that no longer parses denies; it is not the default.
    #[test]
    fn an_unreadable_stored_policy_denies_everything() {
        let c = ctx("arn:aws:iam::111122223333:root", ACCT, "kms:PutKeyPolicy", None);
        let stored = serde_json::json!({"Statement": {"Effect": "Deny", "Principal": "*", "Action": "kms:*", "Resource": "*",
            "Condition": {"StringEquals": {"kms:EncryptionContex:tenant": "a"}}}});
        let p = Policy::for_stored(&stored.to_string());
        assert!(p.is_unreadable());
        assert_eq!(p.evaluate(&c), Decision::ExplicitDeny);
        assert_eq!(Policy::for_stored("not json").evaluate(&c), Decision::ExplicitDeny);
        let good = Policy::for_stored(&Policy::default_document(ACCT));
        assert!(!good.is_unreadable());
        assert_eq!(good.evaluate(&c), Decision::AllowPrincipal);
    }

    // Issue #15, item 3: evaluation says whether an Allow named the caller or its account.
    #[test]
    fn allow_says_how_the_principal_matched() {
        let alice = "arn:aws:iam::111122223333:user/alice";
        let both = serde_json::json!({"Statement": [
            {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::111122223333:root"}, "Action": "kms:*", "Resource": "*"},
            {"Effect": "Allow", "Principal": {"AWS": alice}, "Action": "kms:Decrypt", "Resource": "*"}]});
        assert_eq!(eval(&both, &ctx(alice, ACCT, "kms:Decrypt", None)), Decision::AllowPrincipal);
        assert_eq!(eval(&both, &ctx(alice, ACCT, "kms:Encrypt", None)), Decision::AllowAccount);
        assert_eq!(eval(&both, &ctx("arn:aws:iam::111122223333:root", ACCT, "kms:Encrypt", None)), Decision::AllowPrincipal);
        let not_bob = serde_json::json!({"Statement": {"Effect": "Allow", "NotPrincipal": {"AWS": "arn:aws:iam::111122223333:user/bob"}, "Action": "kms:*", "Resource": "*"}});
        assert_eq!(eval(&not_bob, &ctx(alice, ACCT, "kms:Encrypt", None)), Decision::AllowPrincipal);
        let not_account =
            serde_json::json!({"Statement": {"Effect": "Allow", "NotPrincipal": {"AWS": ACCT}, "Action": "kms:*", "Resource": "*"}});
        assert_eq!(eval(&not_account, &ctx(alice, ACCT, "kms:Encrypt", None)), Decision::NotApplicable);
    }

    #[test]
    fn dates_numbers_and_arns() {
        assert_eq!(parse_date("1970-01-01"), Some(0.0));
        assert_eq!(parse_date("2026-01-01T00:00:00Z"), Some(1_767_225_600.0));
        assert_eq!(parse_date("2026-01-01T01:00:00+01:00"), Some(1_767_225_600.0));
        assert_eq!(parse_date("2025-12-31T19:00:00-0500"), Some(1_767_225_600.0));
        assert_eq!(parse_date("2026-01-01T00:00:00.5Z"), Some(1_767_225_600.5));
        assert_eq!(parse_date("2026-01-01T00:00"), Some(1_767_225_600.0));
        assert_eq!(parse_date("1767225600"), Some(1_767_225_600.0));
        for bad in ["", "2026-1-01", "2026-01-01T", "2026-01-01T25:00:00Z", "2026-01-01T00:00:00+1", "tomorrow", "2026-01-01X"] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
        assert_eq!(parse_number("-1.5"), Some(-1.5));
        assert_eq!(parse_number("1e3"), None);
        assert_eq!(parse_number("NaN"), None);
        assert!(arn_match("arn:aws:iam::*:user/*", "arn:aws:iam::111122223333:user/alice"));
        assert!(!arn_match("arn:aws:iam::*", "arn:aws:iam::111122223333:user/alice"));
        assert!(!arn_match("arn:aws:iam::1111*:root", "arn:aws:kms::111122223333:root"));
        assert!(arn_match("arn:aws:kms:*:111122223333:key/*", KEY));
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
