//! Identities: users of an account and their access keys, managed through the administration
//! API by administrators (the account root, or users with the `admin` role). Each user has a
//! built-in role (`Role`), which plays the part of its identity-based (IAM) policy; a user
//! created without one gets `none`, which allows nothing by itself. Operations on keys are
//! decided with the key's policy and grants (`Kms::authorize_key`). Accounts (tenants) are
//! created by the operator's administrators.

use crate::api::*;
use crate::kernel::key::access_key_seal_context;
use crate::types::secs;
use crate::types::{AccountId, Role};
use crate::{Caller, Kms, KmsError, validate};
use clavis_crypto::SecretBytes;
use clavis_store::{AccessKeyRecord, AccountRecord, StoreError, UserRecord};

/// Characters of access key ids (base32, as AWS's).
const AKID_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
/// Characters of secret access keys.
const SECRET_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn random_string(alphabet: &[u8], len: usize) -> Result<String, KmsError> {
    // Both alphabets have a power-of-two size, so reducing a random byte is unbiased.
    let bytes = clavis_crypto::random::bytes(len)?;
    Ok(bytes.iter().map(|b| char::from(alphabet[usize::from(*b) % alphabet.len()])).collect())
}

/// A fresh access key id and secret, in AWS's formats (`AKIA` + 16 base32 characters; 40
/// characters of secret).
pub fn generate_access_key() -> Result<(String, SecretBytes), KmsError> {
    let id = format!("AKIA{}", random_string(AKID_ALPHABET, 16)?);
    let secret = SecretBytes::new(random_string(SECRET_ALPHABET, 40)?.into_bytes());
    Ok((id, secret))
}

impl Kms {
    /// ClavisAdmin.CreateUser: a user of the caller's account and its first access key. The
    /// secret is in this response and nowhere else (stored sealed).
    pub async fn create_user(&self, caller: &Caller, req: CreateUserRequest) -> Result<CreateUserResponse, KmsError> {
        self.authorize(caller, crate::Operation::CreateUser)?;
        let name = validate::required(req.user_name, "userName")?;
        validate::str_len(&name, "userName", 1, 64)?;
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b)) {
            return Err(KmsError::validation(format!(
                "Value '{name}' at 'userName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]+"
            )));
        }
        // Least privilege: a user created without a role can do nothing until a role, a key
        // policy naming it, or a grant says otherwise.
        let role = req.role.unwrap_or_else(|| Role::None.as_str().to_owned());
        validate::one_of(&role, "role", Role::NAMES)?;
        let account = match req.account_id.as_deref() {
            None => caller.account.as_str().to_owned(),
            Some(a) if a == caller.account.as_str() => a.to_owned(),
            Some(a) => self.other_account(caller, a).await?,
        };
        let account = account.as_str();
        let arn = format!("arn:aws:iam::{account}:user/{name}");
        let now = self.now_ms();
        let (access_key_id, secret) = generate_access_key()?;
        if !self.store_user_with_key(account, &name, &arn, &role, &access_key_id, &secret, now).await? {
            return Err(KmsError::AlreadyExists(format!("User with name {name} already exists.")));
        }
        Ok(CreateUserResponse {
            user: UserEntry { user_name: name, arn, create_date: secs(now), role },
            access_key: NewAccessKey {
                access_key_id,
                secret_access_key: String::from_utf8_lossy(secret.expose_secret()).into_owned().into(),
                status: "Active".to_owned(),
            },
        })
    }

    /// Stores a new user of `account` and its first access key (the secret sealed under the
    /// root of trust), in one store transaction; `false` if the user exists already.
    #[allow(clippy::too_many_arguments, reason = "the user's and its key's fields, each distinct")]
    pub(crate) async fn store_user_with_key(
        &self,
        account: &str,
        user_name: &str,
        arn: &str,
        role: &str,
        access_key_id: &str,
        secret: &SecretBytes,
        now: i64,
    ) -> Result<bool, KmsError> {
        let sealed_secret = self.root().seal(&access_key_seal_context(access_key_id), secret)?;
        let user = UserRecord {
            account_id: account.to_owned(),
            user_name: user_name.to_owned(),
            arn: arn.to_owned(),
            created_ms: now,
            role: role.to_owned(),
        };
        let key = AccessKeyRecord {
            access_key_id: access_key_id.to_owned(),
            sealed_secret,
            account_id: account.to_owned(),
            principal_arn: arn.to_owned(),
            status: "Active".to_owned(),
            created_ms: now,
        };
        match self.identities().create_user(&user, &key).await {
            Ok(()) => Ok(true),
            Err(StoreError::AlreadyExists) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Checks that the caller may administer another account: it must be an administrator of
    /// the operator's account (the one made at first start), and the account must exist.
    pub(crate) async fn other_account(&self, caller: &Caller, account: &str) -> Result<String, KmsError> {
        if !self.in_operator_account(caller).await? {
            return Err(KmsError::AccessDenied(format!(
                "User: {} is not authorized to administer account {account}: only administrators of the operator's account can",
                caller.principal_arn
            )));
        }
        if !self.identities().list_accounts().await?.iter().any(|a| a.account_id == account) {
            return Err(KmsError::NotFound(format!("The account {account} does not exist.")));
        }
        Ok(account.to_owned())
    }

    /// ClavisAdmin.CreateAccount: a new account (tenant) and its root access key, whose secret
    /// is in this response and nowhere else. Only administrators of the operator's account (the
    /// one made at first start) may create accounts. The new account's root is its
    /// administrator; its keys and users are invisible to other accounts except where a key
    /// policy or grant shares a key.
    pub async fn create_account(&self, caller: &Caller, req: CreateAccountRequest) -> Result<CreateAccountResponse, KmsError> {
        self.authorize(caller, crate::Operation::CreateAccount)?;
        self.require_operator_account(caller, crate::Operation::CreateAccount, "create accounts").await?;
        let name = req.account_name.unwrap_or_default();
        validate::str_len(&name, "accountName", 0, 64)?;
        let account_id = match req.account_id {
            Some(id) => AccountId::parse(&id).ok_or_else(|| {
                KmsError::validation(format!("Value '{id}' at 'accountId' failed to satisfy constraint: Member must be 12 digits"))
            })?,
            None => AccountId::generate()?,
        };
        if account_id == caller.account {
            return Err(KmsError::AlreadyExists(format!("The account {} already exists.", account_id.as_str())));
        }
        let now = self.now_ms();
        let (access_key_id, secret) = generate_access_key()?;
        let sealed_secret = self.root().seal(&access_key_seal_context(&access_key_id), &secret)?;
        let record = AccountRecord { account_id: account_id.as_str().to_owned(), name: name.clone(), created_ms: now };
        let key = AccessKeyRecord {
            access_key_id: access_key_id.clone(),
            sealed_secret,
            account_id: account_id.as_str().to_owned(),
            principal_arn: account_id.root_arn(),
            status: "Active".to_owned(),
            created_ms: now,
        };
        match self.identities().create_account(&record, &key).await {
            Ok(()) => {}
            Err(StoreError::AlreadyExists) => {
                return Err(KmsError::AlreadyExists(format!("The account {} already exists.", account_id.as_str())));
            }
            Err(e) => return Err(e.into()),
        }
        Ok(CreateAccountResponse {
            account: AccountEntry { arn: account_id.root_arn(), account_id: record.account_id, account_name: name, create_date: secs(now) },
            access_key: NewAccessKey {
                access_key_id,
                secret_access_key: String::from_utf8_lossy(secret.expose_secret()).into_owned().into(),
                status: "Active".to_owned(),
            },
        })
    }

    /// ClavisAdmin.ListAccounts: the operator's account and those created since (operator
    /// administrators only; another account's administrator sees its own).
    pub async fn list_accounts(&self, caller: &Caller, _req: ListAccountsRequest) -> Result<ListAccountsResponse, KmsError> {
        self.authorize(caller, crate::Operation::ListAccounts)?;
        let operator = self.account_id().await?;
        let mut accounts = Vec::new();
        if let Some(op) = &operator {
            accounts.push(AccountEntry {
                account_id: op.as_str().to_owned(),
                account_name: "operator".to_owned(),
                arn: op.root_arn(),
                create_date: 0.0,
            });
        }
        for a in self.identities().list_accounts().await? {
            let arn = format!("arn:aws:iam::{}:root", a.account_id);
            accounts.push(AccountEntry { account_id: a.account_id, account_name: a.name, arn, create_date: secs(a.created_ms) });
        }
        if operator.as_ref() != Some(&caller.account) {
            accounts.retain(|a| a.account_id == caller.account.as_str());
        }
        Ok(ListAccountsResponse { accounts })
    }

    /// ClavisAdmin.ListUsers.
    pub async fn list_users(&self, caller: &Caller, _req: ListUsersRequest) -> Result<ListUsersResponse, KmsError> {
        self.authorize(caller, crate::Operation::ListUsers)?;
        let users = self
            .identities()
            .list_users(caller.account.as_str())
            .await?
            .into_iter()
            .map(|u| UserEntry { user_name: u.user_name, arn: u.arn, create_date: secs(u.created_ms), role: u.role })
            .collect();
        Ok(ListUsersResponse { users })
    }

    /// The principal ARN for `user_name` in the caller's account, or the caller when absent;
    /// `NotFoundException` for an unknown user.
    async fn principal_for(&self, caller: &Caller, user_name: Option<&str>) -> Result<(String, String), KmsError> {
        let Some(name) = user_name else {
            return Ok(("root".to_owned(), caller.principal_arn.clone()));
        };
        let users = self.identities().list_users(caller.account.as_str()).await?;
        users
            .into_iter()
            .find(|u| u.user_name == name)
            .map(|u| (u.user_name, u.arn))
            .ok_or_else(|| KmsError::NotFound(format!("The user with name {name} cannot be found.")))
    }

    /// The access key `id` of the caller's account, or `NotFoundException`.
    async fn account_access_key(&self, caller: &Caller, id: &str) -> Result<AccessKeyRecord, KmsError> {
        match self.identities().get_access_key(id).await? {
            Some(k) if k.account_id == caller.account.as_str() => Ok(k),
            _ => Err(KmsError::NotFound(format!("The Access Key with id {id} cannot be found."))),
        }
    }

    /// ClavisAdmin.CreateAccessKey.
    pub async fn create_access_key(&self, caller: &Caller, req: CreateAccessKeyRequest) -> Result<CreateAccessKeyResponse, KmsError> {
        self.authorize(caller, crate::Operation::CreateAccessKey)?;
        let (_, arn) = self.principal_for(caller, req.user_name.as_deref()).await?;
        let (access_key_id, secret) = generate_access_key()?;
        let rec = AccessKeyRecord {
            access_key_id: access_key_id.clone(),
            sealed_secret: self.root().seal(&access_key_seal_context(&access_key_id), &secret)?,
            account_id: caller.account.as_str().to_owned(),
            principal_arn: arn,
            status: "Active".to_owned(),
            created_ms: self.now_ms(),
        };
        self.identities().put_access_key(&rec).await?;
        Ok(CreateAccessKeyResponse {
            access_key: NewAccessKey {
                access_key_id,
                secret_access_key: String::from_utf8_lossy(secret.expose_secret()).into_owned().into(),
                status: "Active".to_owned(),
            },
        })
    }

    /// ClavisAdmin.ListAccessKeys (never the secrets).
    pub async fn list_access_keys(&self, caller: &Caller, req: ListAccessKeysRequest) -> Result<ListAccessKeysResponse, KmsError> {
        self.authorize(caller, crate::Operation::ListAccessKeys)?;
        let (name, arn) = self.principal_for(caller, req.user_name.as_deref()).await?;
        let keys = self.identities().list_access_keys(&arn).await?;
        Ok(ListAccessKeysResponse {
            access_key_metadata: keys
                .into_iter()
                .map(|k| AccessKeyMetadata {
                    user_name: name.clone(),
                    access_key_id: k.access_key_id,
                    status: k.status,
                    create_date: secs(k.created_ms),
                })
                .collect(),
        })
    }

    /// ClavisAdmin.UpdateAccessKey: `Active` or `Inactive`, effective at once on this node.
    pub async fn update_access_key(&self, caller: &Caller, req: UpdateAccessKeyRequest) -> Result<Empty, KmsError> {
        self.authorize(caller, crate::Operation::UpdateAccessKey)?;
        let id = validate::required(req.access_key_id, "accessKeyId")?;
        let status = validate::required(req.status, "status")?;
        validate::one_of(&status, "status", &["Active", "Inactive"])?;
        if id == caller.access_key_id && status == "Inactive" {
            return Err(KmsError::Validation(
                "An administrator cannot deactivate the access key that signs the request; use another key.".into(),
            ));
        }
        self.account_access_key(caller, &id).await?;
        match self.identities().set_access_key_status(&id, &status).await {
            Ok(()) => {}
            Err(StoreError::NotFound) => return Err(KmsError::NotFound(format!("The Access Key with id {id} cannot be found."))),
            Err(e) => return Err(e.into()),
        }
        self.forget_credential(&id);
        Ok(Empty {})
    }

    /// ClavisAdmin.DeleteAccessKey.
    pub async fn delete_access_key(&self, caller: &Caller, req: DeleteAccessKeyRequest) -> Result<Empty, KmsError> {
        self.authorize(caller, crate::Operation::DeleteAccessKey)?;
        let id = validate::required(req.access_key_id, "accessKeyId")?;
        if id == caller.access_key_id {
            return Err(KmsError::Validation(
                "An administrator cannot delete the access key that signs the request; use another key.".into(),
            ));
        }
        self.account_access_key(caller, &id).await?;
        match self.identities().delete_access_key(&id).await {
            Ok(()) => {}
            Err(StoreError::NotFound) => return Err(KmsError::NotFound(format!("The Access Key with id {id} cannot be found."))),
            Err(e) => return Err(e.into()),
        }
        self.forget_credential(&id);
        Ok(Empty {})
    }
}
