//! The catalogue of operations: one entry per operation of every API family, with the facts
//! that dispatch, authorization, grants and the audit derive from it. Adding an operation is
//! one line here, its method, and its request and response shapes; the front end's dispatch
//! matches on [`Operation`] exhaustively, so a missing case does not compile.
//!
//! It must not hold behaviour: what an operation does lives in its method on `Kms`.

use crate::types::Role;

/// The API an operation belongs to: its `X-Amz-Target` prefix, policy service and audit event
/// source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// The AWS KMS API (`TrentService.<Operation>`, actions `kms:<Operation>`).
    Kms,
    /// Clavis's administration API (`ClavisAdmin.<Operation>`, actions `clavis:<Operation>`).
    Admin,
}

impl Family {
    /// The `X-Amz-Target` prefix, dot included.
    pub fn target_prefix(self) -> &'static str {
        match self {
            Family::Kms => "TrentService.",
            Family::Admin => "ClavisAdmin.",
        }
    }

    /// The service prefix of its actions in policies and refusals.
    pub fn service(self) -> &'static str {
        match self {
            Family::Kms => "kms",
            Family::Admin => "clavis",
        }
    }

    /// The audit record's `eventSource`.
    pub fn event_source(self) -> &'static str {
        match self {
            Family::Kms => "kms.amazonaws.com",
            Family::Admin => "admin.clavis",
        }
    }
}

/// What the catalogue says about one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spec {
    /// The family.
    pub family: Family,
    /// The least built-in role that allows it (a role is the caller's identity policy).
    pub min_role: Role,
    /// Reads only (CloudTrail's `readOnly`; no `responseElements` in its record).
    pub read_only: bool,
    /// Decided per key: the key's policy and grants weigh the role (`Kms::authorize_key`)
    /// rather than the role alone up front.
    pub on_key: bool,
    /// May name another account's key (by ARN), when that key's policy or a grant allows it.
    pub cross_account: bool,
    /// May be one of a grant's operations.
    pub grantable: bool,
}

macro_rules! catalogue {
    ($( $op:ident: $family:ident, $role:ident, read_only: $ro:literal, on_key: $key:literal, cross_account: $cross:literal, grantable: $grant:literal; )*) => {
        /// Every operation Clavis serves.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Operation {
            $(
                #[doc = concat!("`", stringify!($op), "`.")]
                $op,
            )*
        }

        impl Operation {
            /// Every operation, in catalogue order.
            pub const ALL: &'static [Operation] = &[$(Operation::$op),*];

            /// The operation's name, as `X-Amz-Target` and policies spell it.
            pub fn name(self) -> &'static str {
                match self {
                    $(Operation::$op => stringify!($op),)*
                }
            }

            /// The operation with this name in any family (a `match` on the names, so it costs
            /// no scan of the catalogue: it runs for every request).
            pub fn from_name(name: &str) -> Option<Operation> {
                match name {
                    $(stringify!($op) => Some(Operation::$op),)*
                    _ => None,
                }
            }

            /// The catalogue entry.
            pub fn spec(self) -> Spec {
                match self {
                    $(Operation::$op => Spec {
                        family: Family::$family,
                        min_role: Role::$role,
                        read_only: $ro,
                        on_key: $key,
                        cross_account: $cross,
                        grantable: $grant,
                    },)*
                }
            }
        }
    };
}

catalogue! {
    // The AWS KMS API.
    CreateKey: Kms, Writer, read_only: false, on_key: false, cross_account: false, grantable: false;
    DescribeKey: Kms, Reader, read_only: true, on_key: true, cross_account: true, grantable: true;
    ListKeys: Kms, Reader, read_only: true, on_key: false, cross_account: false, grantable: false;
    UpdateKeyDescription: Kms, Writer, read_only: false, on_key: true, cross_account: false, grantable: false;
    EnableKey: Kms, Manager, read_only: false, on_key: true, cross_account: false, grantable: false;
    DisableKey: Kms, Manager, read_only: false, on_key: true, cross_account: false, grantable: false;
    Encrypt: Kms, Reader, read_only: true, on_key: true, cross_account: true, grantable: true;
    Decrypt: Kms, Reader, read_only: true, on_key: true, cross_account: true, grantable: true;
    ReEncrypt: Kms, Reader, read_only: true, on_key: true, cross_account: true, grantable: true;
    GenerateDataKey: Kms, Reader, read_only: true, on_key: true, cross_account: true, grantable: true;
    GenerateDataKeyWithoutPlaintext: Kms, Reader, read_only: true, on_key: true, cross_account: true, grantable: true;
    GenerateRandom: Kms, Reader, read_only: true, on_key: false, cross_account: false, grantable: false;
    CreateAlias: Kms, Writer, read_only: false, on_key: false, cross_account: false, grantable: false;
    UpdateAlias: Kms, Writer, read_only: false, on_key: false, cross_account: false, grantable: false;
    DeleteAlias: Kms, Writer, read_only: false, on_key: false, cross_account: false, grantable: false;
    ListAliases: Kms, Reader, read_only: true, on_key: false, cross_account: false, grantable: false;
    TagResource: Kms, Writer, read_only: false, on_key: true, cross_account: false, grantable: false;
    UntagResource: Kms, Writer, read_only: false, on_key: true, cross_account: false, grantable: false;
    ListResourceTags: Kms, Reader, read_only: true, on_key: true, cross_account: false, grantable: false;
    GetKeyPolicy: Kms, Reader, read_only: true, on_key: true, cross_account: false, grantable: false;
    ListKeyPolicies: Kms, Reader, read_only: true, on_key: true, cross_account: false, grantable: false;
    PutKeyPolicy: Kms, Manager, read_only: false, on_key: true, cross_account: false, grantable: false;
    CreateGrant: Kms, Manager, read_only: false, on_key: true, cross_account: true, grantable: true;
    ListGrants: Kms, Reader, read_only: true, on_key: true, cross_account: true, grantable: false;
    ListRetirableGrants: Kms, Reader, read_only: true, on_key: false, cross_account: false, grantable: false;
    RetireGrant: Kms, Reader, read_only: false, on_key: true, cross_account: true, grantable: true;
    RevokeGrant: Kms, Manager, read_only: false, on_key: true, cross_account: true, grantable: false;
    EnableKeyRotation: Kms, Manager, read_only: false, on_key: true, cross_account: false, grantable: false;
    DisableKeyRotation: Kms, Manager, read_only: false, on_key: true, cross_account: false, grantable: false;
    GetKeyRotationStatus: Kms, Reader, read_only: true, on_key: true, cross_account: true, grantable: false;
    RotateKeyOnDemand: Kms, Manager, read_only: false, on_key: true, cross_account: false, grantable: false;
    ListKeyRotations: Kms, Reader, read_only: true, on_key: true, cross_account: false, grantable: false;
    ScheduleKeyDeletion: Kms, Manager, read_only: false, on_key: true, cross_account: false, grantable: false;
    CancelKeyDeletion: Kms, Manager, read_only: false, on_key: true, cross_account: false, grantable: false;
    GetParametersForImport: Kms, Writer, read_only: true, on_key: true, cross_account: false, grantable: false;
    ImportKeyMaterial: Kms, Writer, read_only: false, on_key: true, cross_account: false, grantable: false;
    DeleteImportedKeyMaterial: Kms, Manager, read_only: false, on_key: true, cross_account: false, grantable: false;
    // Clavis's administration API.
    LookupEvents: Admin, Admin, read_only: true, on_key: false, cross_account: false, grantable: false;
    AdvanceTestClock: Admin, Admin, read_only: false, on_key: false, cross_account: false, grantable: false;
    CreateAccount: Admin, Admin, read_only: false, on_key: false, cross_account: false, grantable: false;
    ListAccounts: Admin, Admin, read_only: true, on_key: false, cross_account: false, grantable: false;
    CreateUser: Admin, Admin, read_only: false, on_key: false, cross_account: false, grantable: false;
    ListUsers: Admin, Admin, read_only: true, on_key: false, cross_account: false, grantable: false;
    CreateAccessKey: Admin, Admin, read_only: false, on_key: false, cross_account: false, grantable: false;
    ListAccessKeys: Admin, Admin, read_only: true, on_key: false, cross_account: false, grantable: false;
    UpdateAccessKey: Admin, Admin, read_only: false, on_key: false, cross_account: false, grantable: false;
    DeleteAccessKey: Admin, Admin, read_only: false, on_key: false, cross_account: false, grantable: false;
    EnableKeyDualAuthorization: Admin, Manager, read_only: false, on_key: false, cross_account: false, grantable: false;
    Seal: Admin, Admin, read_only: false, on_key: false, cross_account: false, grantable: false;
    RotateMasterKey: Admin, Admin, read_only: false, on_key: false, cross_account: false, grantable: false;
}

/// Grant operations AWS accepts for operations Clavis does not serve yet (asymmetric and HMAC
/// keys); each moves into the catalogue with its operation.
const FUTURE_GRANT_OPERATIONS: &[&str] = &[
    "Sign",
    "Verify",
    "GetPublicKey",
    "GenerateDataKeyPair",
    "GenerateDataKeyPairWithoutPlaintext",
    "GenerateMac",
    "VerifyMac",
    "DeriveSharedSecret",
];

impl Operation {
    /// The operation an `X-Amz-Target` names (`TrentService.Encrypt`, `ClavisAdmin.CreateUser`):
    /// its name under its own family's prefix.
    pub fn from_target(target: &str) -> Option<Operation> {
        let (prefix, name) = target.split_at(target.find('.')? + 1);
        Operation::from_name(name).filter(|op| op.family().target_prefix() == prefix)
    }

    /// The operation a policy action stands for (`ReEncryptFrom` and `ReEncryptTo` are
    /// ReEncrypt's two halves).
    pub fn for_action(action: &str) -> Option<Operation> {
        match action {
            "ReEncryptFrom" | "ReEncryptTo" => Some(Operation::ReEncrypt),
            other => Operation::from_name(other),
        }
    }

    /// The family.
    pub fn family(self) -> Family {
        self.spec().family
    }

    /// The audit's `readOnly`.
    pub fn read_only(self) -> bool {
        self.spec().read_only
    }

    /// Whether the role alone decides (false) or the key's policy and grants weigh it (true).
    pub fn on_key(self) -> bool {
        self.spec().on_key
    }
}

/// Whether a policy action may reach another account's key.
pub fn cross_account_action(action: &str) -> bool {
    Operation::for_action(action).is_some_and(|op| op.spec().cross_account)
}

/// The grant operations CreateGrant accepts (AWS's list: the grantable operations, with
/// ReEncrypt as its two halves).
pub fn grant_operations() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Operation::ALL
        .iter()
        .filter(|op| op.spec().grantable)
        .flat_map(|op| match op {
            Operation::ReEncrypt => vec!["ReEncryptFrom", "ReEncryptTo"],
            other => vec![other.name()],
        })
        .collect();
    out.extend_from_slice(FUTURE_GRANT_OPERATIONS);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_round_trip() {
        for op in Operation::ALL {
            assert_eq!(Operation::from_name(op.name()), Some(*op));
            let target = format!("{}{}", op.family().target_prefix(), op.name());
            assert_eq!(Operation::from_target(&target), Some(*op));
        }
        // A name under the other family's prefix is no operation.
        assert_eq!(Operation::from_target("TrentService.CreateUser"), None);
        assert_eq!(Operation::from_target("ClavisAdmin.Encrypt"), None);
        assert_eq!(Operation::from_target("Encrypt"), None);
    }

    #[test]
    fn derived_lists() {
        let grants = grant_operations();
        for name in ["Decrypt", "Encrypt", "ReEncryptFrom", "ReEncryptTo", "CreateGrant", "RetireGrant", "DescribeKey", "Sign"] {
            assert!(grants.contains(&name), "{name}");
        }
        assert!(!grants.contains(&"ReEncrypt") && !grants.contains(&"DisableKey"));
        assert!(cross_account_action("ReEncryptFrom") && cross_account_action("GetKeyRotationStatus"));
        assert!(!cross_account_action("DisableKey") && !cross_account_action("NoSuchAction"));
        // Every administration operation is admin-only except dual authorization.
        for op in Operation::ALL.iter().filter(|o| o.family() == Family::Admin) {
            let expected = if *op == Operation::EnableKeyDualAuthorization { Role::Manager } else { Role::Admin };
            assert_eq!(op.spec().min_role, expected, "{op:?}");
        }
    }
}
