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
    /// The AWS Secrets Manager API (`secretsmanager.<Operation>`, actions
    /// `secretsmanager:<Operation>`, signed for the `secretsmanager` service).
    SecretsManager,
}

impl Family {
    /// The `X-Amz-Target` prefix, dot included.
    pub fn target_prefix(self) -> &'static str {
        match self {
            Family::Kms => "TrentService.",
            Family::Admin => "ClavisAdmin.",
            Family::SecretsManager => "secretsmanager.",
        }
    }

    /// The family whose `X-Amz-Target` prefix `target` has.
    pub fn from_target(target: &str) -> Option<Family> {
        [Family::Kms, Family::Admin, Family::SecretsManager].into_iter().find(|f| target.starts_with(f.target_prefix()))
    }

    /// The service name a request of this family is signed for (SigV4 credential scope): the
    /// administration API is signed as KMS, which its clients speak.
    pub fn signing_service(self) -> &'static str {
        match self {
            Family::Kms | Family::Admin => "kms",
            Family::SecretsManager => "secretsmanager",
        }
    }

    /// The service prefix of its actions in policies and refusals.
    pub fn service(self) -> &'static str {
        match self {
            Family::Kms => "kms",
            Family::Admin => "clavis",
            Family::SecretsManager => "secretsmanager",
        }
    }

    /// The audit record's `eventSource`.
    pub fn event_source(self) -> &'static str {
        match self {
            Family::Kms => "kms.amazonaws.com",
            Family::Admin => "admin.clavis",
            Family::SecretsManager => "secretsmanager.amazonaws.com",
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
    /// Decided per resource: the key's policy and grants (`Kms::authorize_key`), or the
    /// secret's resource policy, weigh the role rather than the role alone up front.
    pub on_key: bool,
    /// May name another account's key (by ARN), when that key's policy or a grant allows it.
    pub cross_account: bool,
    /// May be one of a grant's operations.
    pub grantable: bool,
}

/// An entry's wire name: its variant's, unless the entry gives one (`as "TagResource"`) because
/// another family has an operation of the same name.
macro_rules! wire_name {
    ($op:ident) => {
        stringify!($op)
    };
    ($op:ident $wire:literal) => {
        $wire
    };
}

macro_rules! catalogue {
    ($( $op:ident $(as $wire:literal)? => $method:ident: $family:ident, $role:ident, read_only: $ro:literal, on_key: $key:literal, cross_account: $cross:literal, grantable: $grant:literal; )*) => {
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
                    $(Operation::$op => wire_name!($op $($wire)?),)*
                }
            }

            /// The operation with this name in a family (a `match` on the names, so it costs no
            /// scan of the catalogue: it runs for every request).
            pub fn from_name_in(family: Family, name: &str) -> Option<Operation> {
                match (family, name) {
                    $((Family::$family, wire_name!($op $($wire)?)) => Some(Operation::$op),)*
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
        /// Runs `op` on a JSON body (see [`crate::Kms::invoke_json`]): the identity step for its
        /// entry, then the entry's method. The match is generated, so an entry without a method
        /// (or a method with the wrong shape) does not compile.
        pub(crate) async fn dispatch_json(
            kms: &crate::Kms,
            caller: &crate::Caller,
            op: Operation,
            body: &[u8],
            options: &crate::front::RequestOptions,
            members: &mut crate::front::Members,
        ) -> Result<Vec<u8>, crate::KmsError> {
            let record_response = !op.read_only();
            match op {
                $(Operation::$op => {
                    crate::front::call(body, record_response, options, members, |req| async move {
                        kms.authorize(caller, op)?;
                        kms.$method(caller, req).await
                    })
                    .await
                })*
            }
        }
    };
}

catalogue! {
    // The AWS KMS API.
    CreateKey => create_key: Kms, Writer, read_only: false, on_key: false, cross_account: false, grantable: false;
    DescribeKey => describe_key: Kms, Reader, read_only: true, on_key: true, cross_account: true, grantable: true;
    ListKeys => list_keys: Kms, Reader, read_only: true, on_key: false, cross_account: false, grantable: false;
    UpdateKeyDescription => update_key_description: Kms, Writer, read_only: false, on_key: true, cross_account: false, grantable: false;
    EnableKey => enable_key: Kms, Manager, read_only: false, on_key: true, cross_account: false, grantable: false;
    DisableKey => disable_key: Kms, Manager, read_only: false, on_key: true, cross_account: false, grantable: false;
    Encrypt => encrypt: Kms, Reader, read_only: true, on_key: true, cross_account: true, grantable: true;
    Decrypt => decrypt: Kms, Reader, read_only: true, on_key: true, cross_account: true, grantable: true;
    ReEncrypt => re_encrypt: Kms, Reader, read_only: true, on_key: true, cross_account: true, grantable: true;
    GenerateDataKey => generate_data_key: Kms, Reader, read_only: true, on_key: true, cross_account: true, grantable: true;
    GenerateDataKeyWithoutPlaintext => generate_data_key_without_plaintext: Kms, Reader, read_only: true, on_key: true, cross_account: true, grantable: true;
    GenerateRandom => generate_random: Kms, Reader, read_only: true, on_key: false, cross_account: false, grantable: false;
    CreateAlias => create_alias: Kms, Writer, read_only: false, on_key: false, cross_account: false, grantable: false;
    UpdateAlias => update_alias: Kms, Writer, read_only: false, on_key: false, cross_account: false, grantable: false;
    DeleteAlias => delete_alias: Kms, Writer, read_only: false, on_key: false, cross_account: false, grantable: false;
    ListAliases => list_aliases: Kms, Reader, read_only: true, on_key: false, cross_account: false, grantable: false;
    TagResource => tag_resource: Kms, Writer, read_only: false, on_key: true, cross_account: false, grantable: false;
    UntagResource => untag_resource: Kms, Writer, read_only: false, on_key: true, cross_account: false, grantable: false;
    ListResourceTags => list_resource_tags: Kms, Reader, read_only: true, on_key: true, cross_account: false, grantable: false;
    GetKeyPolicy => get_key_policy: Kms, Reader, read_only: true, on_key: true, cross_account: false, grantable: false;
    ListKeyPolicies => list_key_policies: Kms, Reader, read_only: true, on_key: true, cross_account: false, grantable: false;
    PutKeyPolicy => put_key_policy: Kms, Manager, read_only: false, on_key: true, cross_account: false, grantable: false;
    CreateGrant => create_grant: Kms, Manager, read_only: false, on_key: true, cross_account: true, grantable: true;
    ListGrants => list_grants: Kms, Reader, read_only: true, on_key: true, cross_account: true, grantable: false;
    ListRetirableGrants => list_retirable_grants: Kms, Reader, read_only: true, on_key: false, cross_account: false, grantable: false;
    RetireGrant => retire_grant: Kms, Reader, read_only: false, on_key: true, cross_account: true, grantable: true;
    RevokeGrant => revoke_grant: Kms, Manager, read_only: false, on_key: true, cross_account: true, grantable: false;
    EnableKeyRotation => enable_key_rotation: Kms, Manager, read_only: false, on_key: true, cross_account: false, grantable: false;
    DisableKeyRotation => disable_key_rotation: Kms, Manager, read_only: false, on_key: true, cross_account: false, grantable: false;
    GetKeyRotationStatus => get_key_rotation_status: Kms, Reader, read_only: true, on_key: true, cross_account: true, grantable: false;
    GetKeyLastUsage => get_key_last_usage: Kms, Reader, read_only: true, on_key: true, cross_account: false, grantable: false;
    RotateKeyOnDemand => rotate_key_on_demand: Kms, Manager, read_only: false, on_key: true, cross_account: false, grantable: false;
    ListKeyRotations => list_key_rotations: Kms, Reader, read_only: true, on_key: true, cross_account: false, grantable: false;
    ScheduleKeyDeletion => schedule_key_deletion: Kms, Manager, read_only: false, on_key: true, cross_account: false, grantable: false;
    CancelKeyDeletion => cancel_key_deletion: Kms, Manager, read_only: false, on_key: true, cross_account: false, grantable: false;
    GetParametersForImport => get_parameters_for_import: Kms, Writer, read_only: true, on_key: true, cross_account: false, grantable: false;
    ImportKeyMaterial => import_key_material: Kms, Writer, read_only: false, on_key: true, cross_account: false, grantable: false;
    DeleteImportedKeyMaterial => delete_imported_key_material: Kms, Manager, read_only: false, on_key: true, cross_account: false, grantable: false;
    Sign => sign: Kms, Reader, read_only: true, on_key: true, cross_account: true, grantable: true;
    Verify => verify: Kms, Reader, read_only: true, on_key: true, cross_account: true, grantable: true;
    GetPublicKey => get_public_key: Kms, Reader, read_only: true, on_key: true, cross_account: true, grantable: true;
    GenerateMac => generate_mac: Kms, Reader, read_only: true, on_key: true, cross_account: true, grantable: true;
    VerifyMac => verify_mac: Kms, Reader, read_only: true, on_key: true, cross_account: true, grantable: true;
    DeriveSharedSecret => derive_shared_secret: Kms, Reader, read_only: true, on_key: true, cross_account: true, grantable: true;
    GenerateDataKeyPair => generate_data_key_pair: Kms, Reader, read_only: true, on_key: true, cross_account: true, grantable: true;
    GenerateDataKeyPairWithoutPlaintext => generate_data_key_pair_without_plaintext: Kms, Reader, read_only: true, on_key: true, cross_account: true, grantable: true;
    Encapsulate => encapsulate: Kms, Reader, read_only: true, on_key: true, cross_account: true, grantable: true;
    Decapsulate => decapsulate: Kms, Reader, read_only: true, on_key: true, cross_account: true, grantable: true;
    // Clavis's administration API.
    LookupEvents => lookup_events: Admin, Admin, read_only: true, on_key: false, cross_account: false, grantable: false;
    AdvanceTestClock => advance_test_clock: Admin, Admin, read_only: false, on_key: false, cross_account: false, grantable: false;
    CreateAccount => create_account: Admin, Admin, read_only: false, on_key: false, cross_account: false, grantable: false;
    ListAccounts => list_accounts: Admin, Admin, read_only: true, on_key: false, cross_account: false, grantable: false;
    CreateUser => create_user: Admin, Admin, read_only: false, on_key: false, cross_account: false, grantable: false;
    ListUsers => list_users: Admin, Admin, read_only: true, on_key: false, cross_account: false, grantable: false;
    CreateAccessKey => create_access_key: Admin, Admin, read_only: false, on_key: false, cross_account: false, grantable: false;
    ListAccessKeys => list_access_keys: Admin, Admin, read_only: true, on_key: false, cross_account: false, grantable: false;
    UpdateAccessKey => update_access_key: Admin, Admin, read_only: false, on_key: false, cross_account: false, grantable: false;
    DeleteAccessKey => delete_access_key: Admin, Admin, read_only: false, on_key: false, cross_account: false, grantable: false;
    CreateXksCredential => create_xks_credential: Admin, Admin, read_only: false, on_key: false, cross_account: false, grantable: false;
    EnableKeyDualAuthorization => enable_key_dual_authorization: Admin, Manager, read_only: false, on_key: false, cross_account: false, grantable: false;
    Seal => seal: Admin, Admin, read_only: false, on_key: false, cross_account: false, grantable: false;
    RotateMasterKey => rotate_master_key: Admin, Admin, read_only: false, on_key: false, cross_account: false, grantable: false;
    // The AWS Secrets Manager API.
    CreateSecret => create_secret: SecretsManager, Writer, read_only: false, on_key: false, cross_account: false, grantable: false;
    GetSecretValue => get_secret_value: SecretsManager, Reader, read_only: true, on_key: true, cross_account: false, grantable: false;
    BatchGetSecretValue => batch_get_secret_value: SecretsManager, Reader, read_only: true, on_key: false, cross_account: false, grantable: false;
    PutSecretValue => put_secret_value: SecretsManager, Writer, read_only: false, on_key: true, cross_account: false, grantable: false;
    UpdateSecret => update_secret: SecretsManager, Writer, read_only: false, on_key: true, cross_account: false, grantable: false;
    DescribeSecret => describe_secret: SecretsManager, Reader, read_only: true, on_key: true, cross_account: false, grantable: false;
    ListSecrets => list_secrets: SecretsManager, Reader, read_only: true, on_key: false, cross_account: false, grantable: false;
    ListSecretVersionIds => list_secret_version_ids: SecretsManager, Reader, read_only: true, on_key: true, cross_account: false, grantable: false;
    UpdateSecretVersionStage => update_secret_version_stage: SecretsManager, Writer, read_only: false, on_key: true, cross_account: false, grantable: false;
    DeleteSecret => delete_secret: SecretsManager, Manager, read_only: false, on_key: true, cross_account: false, grantable: false;
    RestoreSecret => restore_secret: SecretsManager, Manager, read_only: false, on_key: true, cross_account: false, grantable: false;
    TagSecret as "TagResource" => tag_secret: SecretsManager, Writer, read_only: false, on_key: true, cross_account: false, grantable: false;
    UntagSecret as "UntagResource" => untag_secret: SecretsManager, Writer, read_only: false, on_key: true, cross_account: false, grantable: false;
    GetRandomPassword => get_random_password: SecretsManager, Reader, read_only: true, on_key: false, cross_account: false, grantable: false;
    PutResourcePolicy => put_resource_policy: SecretsManager, Manager, read_only: false, on_key: true, cross_account: false, grantable: false;
    GetResourcePolicy => get_resource_policy: SecretsManager, Reader, read_only: true, on_key: true, cross_account: false, grantable: false;
    DeleteResourcePolicy => delete_resource_policy: SecretsManager, Manager, read_only: false, on_key: true, cross_account: false, grantable: false;
    RotateSecret => rotate_secret: SecretsManager, Manager, read_only: false, on_key: true, cross_account: false, grantable: false;
    CancelRotateSecret => cancel_rotate_secret: SecretsManager, Manager, read_only: false, on_key: true, cross_account: false, grantable: false;
    ValidateResourcePolicy => validate_resource_policy: SecretsManager, Reader, read_only: true, on_key: false, cross_account: false, grantable: false;
}

impl Operation {
    /// The operation an `X-Amz-Target` names (`TrentService.Encrypt`, `ClavisAdmin.CreateUser`):
    /// its name under its own family's prefix.
    pub fn from_target(target: &str) -> Option<Operation> {
        let family = Family::from_target(target)?;
        Operation::from_name_in(family, &target[family.target_prefix().len()..])
    }

    /// The operation of the KMS or administration API with this name (policy actions and
    /// roles, whose names are unique across those two families).
    pub fn from_name(name: &str) -> Option<Operation> {
        Operation::from_name_in(Family::Kms, name).or_else(|| Operation::from_name_in(Family::Admin, name))
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
    Operation::ALL
        .iter()
        .filter(|op| op.spec().grantable)
        .flat_map(|op| match op {
            Operation::ReEncrypt => vec!["ReEncryptFrom", "ReEncryptTo"],
            other => vec![other.name()],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_round_trip() {
        for op in Operation::ALL {
            assert_eq!(Operation::from_name_in(op.family(), op.name()), Some(*op));
            if op.family() != Family::SecretsManager {
                assert_eq!(Operation::from_name(op.name()), Some(*op));
            }
            let target = format!("{}{}", op.family().target_prefix(), op.name());
            assert_eq!(Operation::from_target(&target), Some(*op));
        }
        // A name under the other family's prefix is no operation.
        assert_eq!(Operation::from_target("TrentService.CreateUser"), None);
        assert_eq!(Operation::from_target("ClavisAdmin.Encrypt"), None);
        assert_eq!(Operation::from_target("Encrypt"), None);
        // The same name in two families is two operations.
        assert_eq!(Operation::from_target("secretsmanager.TagResource"), Some(Operation::TagSecret));
        assert_eq!(Operation::from_target("TrentService.TagResource"), Some(Operation::TagResource));
        assert_eq!(Operation::from_target("secretsmanager.Encrypt"), None);
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
