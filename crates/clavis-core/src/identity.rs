//! Identities: users of an account and their access keys, managed through the administration
//! API by the account's root principal. (Roles and policies, which decide what each identity
//! may do, arrive with access control; until then every identity of an account can use every
//! key operation on that account's keys.)

use crate::api::*;
use crate::keys::access_key_seal_context;
use crate::service::secs;
use crate::{Caller, Kms, KmsError, validate};
use clavis_crypto::SecretBytes;
use clavis_store::{AccessKeyRecord, StoreError, UserRecord};

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

fn require_root(caller: &Caller, action: &str) -> Result<(), KmsError> {
    if caller.principal_arn.ends_with(":root") {
        Ok(())
    } else {
        Err(KmsError::AccessDenied(format!("User: {} is not authorized to perform: clavis:{action}", caller.principal_arn)))
    }
}

impl Kms {
    /// ClavisAdmin.CreateUser: a user of the caller's account and its first access key. The
    /// secret is in this response and nowhere else (stored sealed).
    pub async fn create_user(&self, caller: &Caller, req: CreateUserRequest) -> Result<CreateUserResponse, KmsError> {
        require_root(caller, "CreateUser")?;
        let name = validate::required(req.user_name, "userName")?;
        validate::str_len(&name, "userName", 1, 64)?;
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b)) {
            return Err(KmsError::validation(format!(
                "Value '{name}' at 'userName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]+"
            )));
        }
        let account = caller.account.as_str();
        let arn = format!("arn:aws:iam::{account}:user/{name}");
        let now = self.clock.now_ms();
        let (access_key_id, secret) = generate_access_key()?;
        let sealed_secret = self.root.seal(&access_key_seal_context(&access_key_id), &secret)?;
        let user = UserRecord { account_id: account.to_owned(), user_name: name.clone(), arn: arn.clone(), created_ms: now };
        let key = AccessKeyRecord {
            access_key_id: access_key_id.clone(),
            sealed_secret,
            account_id: account.to_owned(),
            principal_arn: arn.clone(),
            status: "Active".to_owned(),
            created_ms: now,
        };
        match self.store.create_user(&user, &key).await {
            Ok(()) => {}
            Err(StoreError::AlreadyExists) => return Err(KmsError::AlreadyExists(format!("User with name {name} already exists."))),
            Err(e) => return Err(e.into()),
        }
        Ok(CreateUserResponse {
            user: UserEntry { user_name: name, arn, create_date: secs(now) },
            access_key: NewAccessKey {
                access_key_id,
                secret_access_key: String::from_utf8_lossy(secret.expose_secret()).into_owned(),
                status: "Active".to_owned(),
            },
        })
    }

    /// ClavisAdmin.ListUsers.
    pub async fn list_users(&self, caller: &Caller, _req: ListUsersRequest) -> Result<ListUsersResponse, KmsError> {
        require_root(caller, "ListUsers")?;
        let users = self
            .store
            .list_users(caller.account.as_str())
            .await?
            .into_iter()
            .map(|u| UserEntry { user_name: u.user_name, arn: u.arn, create_date: secs(u.created_ms) })
            .collect();
        Ok(ListUsersResponse { users })
    }
}
