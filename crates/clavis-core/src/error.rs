//! The core's one error enum, and the one place where an error becomes a wire error: each
//! variant maps to exactly one AWS `__type` and HTTP status ([`KmsError::code`],
//! [`KmsError::http_status`]). The HTTP layer renders these; it never invents its own.

use clavis_store::StoreError;

/// Every way a Clavis request can fail, named after the AWS exception a client receives.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KmsError {
    /// `AlreadyExistsException`: the alias (or other named resource) exists.
    #[error("{0}")]
    AlreadyExists(String),
    /// `DisabledException`: the key is disabled.
    #[error("{0}")]
    Disabled(String),
    /// `DryRunOperationException`: the request would have succeeded.
    #[error("The request would have succeeded, but the DryRun option is set.")]
    DryRun,
    /// `IncorrectKeyException`: the KeyId does not match the key that made the ciphertext.
    #[error("The key ID in the request does not identify a CMK that can perform this operation.")]
    IncorrectKey,
    /// `InvalidImportTokenException`: unknown, used, or another key's import token.
    #[error("{0}")]
    InvalidImportToken(String),
    /// `ExpiredImportTokenException`.
    #[error("{0}")]
    ExpiredImportToken(String),
    /// `IncorrectKeyMaterialException`: not the material the key had, or not valid material.
    #[error("{0}")]
    IncorrectKeyMaterial(String),
    /// `InvalidAliasNameException`.
    #[error("{0}")]
    InvalidAliasName(String),
    /// `InvalidArnException`.
    #[error("{0}")]
    InvalidArn(String),
    /// `InvalidCiphertextException`: not a Clavis ciphertext, tampered, or the encryption
    /// context differs.
    #[error("{0}")]
    InvalidCiphertext(String),
    /// `InvalidGrantIdException`: no such grant on the key.
    #[error("{0}")]
    InvalidGrantId(String),
    /// `InvalidGrantTokenException`: a grant token Clavis did not issue, or of another key.
    #[error("{0}")]
    InvalidGrantToken(String),
    /// `InvalidKeyUsageException`: the key cannot do this operation or algorithm.
    #[error("{0}")]
    InvalidKeyUsage(String),
    /// Secrets Manager's `ResourceNotFoundException`.
    #[error("{0}")]
    ResourceNotFound(String),
    /// Secrets Manager's `InvalidParameterException` (its word for a bad member).
    #[error("{0}")]
    InvalidParameter(String),
    /// Secrets Manager's `InvalidRequestException` (the resource's state forbids the request).
    #[error("{0}")]
    InvalidRequest(String),
    /// Secrets Manager's `ResourceExistsException`.
    #[error("{0}")]
    ResourceExists(String),
    /// Secrets Manager's `DecryptionFailure`: the KMS key cannot decrypt the value.
    #[error("{0}")]
    DecryptionFailure(String),
    /// Secrets Manager's `EncryptionFailure`: the KMS key cannot encrypt the value.
    #[error("{0}")]
    EncryptionFailure(String),
    /// Secrets Manager's `InternalServiceError` (HTTP 500, retried by AWS SDKs): a change lost
    /// to concurrent changes of the same secret too many times.
    #[error("{0}")]
    InternalServiceError(String),
    /// Secrets Manager's `PublicPolicyException`: BlockPublicPolicy refused a policy that grants
    /// broad access.
    #[error("{0}")]
    PublicPolicy(String),
    /// Secrets Manager's `InvalidNextTokenException`.
    #[error("{0}")]
    InvalidNextToken(String),
    /// `NotAuthorizedException`: an alias name reserved for AWS (`alias/aws/...`).
    #[error("{0}")]
    NotAuthorized(String),
    /// `KMSInvalidSignatureException`: Verify found the signature invalid.
    #[error("{0}")]
    KmsInvalidSignature(String),
    /// `KMSInvalidMacException`: VerifyMac found the MAC invalid.
    #[error("{0}")]
    KmsInvalidMac(String),
    /// `InvalidMarkerException`: a pagination marker we did not issue.
    #[error("The marker is not valid.")]
    InvalidMarker,
    /// `KMSInvalidStateException`: the key's state forbids the operation.
    #[error("{0}")]
    InvalidState(String),
    /// `LimitExceededException`.
    #[error("{0}")]
    LimitExceeded(String),
    /// `MalformedPolicyDocumentException`.
    #[error("{0}")]
    MalformedPolicyDocument(String),
    /// `NotFoundException`: no such key or alias (in this account and region).
    #[error("{0}")]
    NotFound(String),
    /// `TagException`.
    #[error("{0}")]
    Tag(String),
    /// `UnsupportedOperationException`: valid in AWS, not (yet) offered by Clavis.
    #[error("{0}")]
    UnsupportedOperation(String),
    /// `ValidationException`: a member violates a constraint; worded as AWS words it.
    #[error("{0}")]
    Validation(String),
    /// `SerializationException`: the body is not the JSON the operation expects.
    #[error("{0}")]
    Serialization(String),
    /// `UnknownOperationException`: the `X-Amz-Target` names no operation.
    #[error("{0}")]
    UnknownOperation(String),
    /// `RequestEntityTooLargeException`: the body exceeds the server's limit.
    #[error("Request body exceeds the maximum allowed size of {0} bytes.")]
    RequestEntityTooLarge(usize),
    /// `MissingAuthenticationTokenException`: the request is not signed.
    #[error("Missing Authentication Token")]
    MissingAuthenticationToken,
    /// `IncompleteSignatureException`: the Authorization header is malformed.
    #[error("{0}")]
    IncompleteSignature(String),
    /// `InvalidSignatureException`: wrong signature, expired request, or bad credential scope.
    #[error("{0}")]
    InvalidSignature(String),
    /// `UnrecognizedClientException`: unknown or inactive access key.
    #[error("The security token included in the request is invalid.")]
    UnrecognizedClient,
    /// `AccessDeniedException`.
    #[error("{0}")]
    AccessDenied(String),
    /// `ThrottlingException`: too many requests (failed authentications from one source
    /// address, or unseal attempts). Retryable after a pause.
    #[error("{0}")]
    Throttling(String),
    /// `RequestTimeoutException` (HTTP 408): the request body did not arrive in time.
    #[error("The request body was not received within {0} seconds.")]
    RequestTimeout(u64),
    /// `DependencyTimeoutException` (HTTP 503): storage or the root of trust is unavailable.
    /// Retryable; never a wrong answer.
    #[error("The service is temporarily unavailable; retry the request.")]
    Unavailable(String),
    /// `DependencyTimeoutException` (HTTP 503): the request's audit record could not be made
    /// durable, so its outcome is withheld (fail closed).
    #[error("The request was not completed because its audit record could not be written; retry when the audit log is writable.")]
    AuditUnavailable(String),
    /// `ServiceUnavailableException` (HTTP 503): the root of trust is sealed; an operator must
    /// unseal it (`clavis operator unseal`). Retryable.
    #[error("Clavis is sealed: no key can be used until an operator unseals it (clavis operator unseal).")]
    Sealed,
    /// `KMSInternalException` (HTTP 500): a bug or corrupt state. The detail is logged, not
    /// sent.
    #[error("An internal error occurred.")]
    Internal(String),
}

impl KmsError {
    /// The AWS error code, sent as `__type`.
    pub fn code(&self) -> &'static str {
        use KmsError::*;
        match self {
            AlreadyExists(_) => "AlreadyExistsException",
            Disabled(_) => "DisabledException",
            DryRun => "DryRunOperationException",
            IncorrectKey => "IncorrectKeyException",
            InvalidAliasName(_) => "InvalidAliasNameException",
            InvalidImportToken(_) => "InvalidImportTokenException",
            ExpiredImportToken(_) => "ExpiredImportTokenException",
            IncorrectKeyMaterial(_) => "IncorrectKeyMaterialException",
            InvalidArn(_) => "InvalidArnException",
            InvalidCiphertext(_) => "InvalidCiphertextException",
            InvalidGrantId(_) => "InvalidGrantIdException",
            InvalidGrantToken(_) => "InvalidGrantTokenException",
            InvalidKeyUsage(_) => "InvalidKeyUsageException",
            NotAuthorized(_) => "NotAuthorizedException",
            ResourceNotFound(_) => "ResourceNotFoundException",
            InvalidParameter(_) => "InvalidParameterException",
            InvalidRequest(_) => "InvalidRequestException",
            ResourceExists(_) => "ResourceExistsException",
            DecryptionFailure(_) => "DecryptionFailure",
            EncryptionFailure(_) => "EncryptionFailure",
            InvalidNextToken(_) => "InvalidNextTokenException",
            PublicPolicy(_) => "PublicPolicyException",
            InternalServiceError(_) => "InternalServiceError",
            KmsInvalidSignature(_) => "KMSInvalidSignatureException",
            KmsInvalidMac(_) => "KMSInvalidMacException",
            InvalidMarker => "InvalidMarkerException",
            InvalidState(_) => "KMSInvalidStateException",
            LimitExceeded(_) => "LimitExceededException",
            MalformedPolicyDocument(_) => "MalformedPolicyDocumentException",
            NotFound(_) => "NotFoundException",
            Tag(_) => "TagException",
            UnsupportedOperation(_) => "UnsupportedOperationException",
            Validation(_) => "ValidationException",
            Serialization(_) => "SerializationException",
            UnknownOperation(_) => "UnknownOperationException",
            RequestEntityTooLarge(_) => "RequestEntityTooLargeException",
            MissingAuthenticationToken => "MissingAuthenticationTokenException",
            IncompleteSignature(_) => "IncompleteSignatureException",
            InvalidSignature(_) => "InvalidSignatureException",
            UnrecognizedClient => "UnrecognizedClientException",
            AccessDenied(_) => "AccessDeniedException",
            Throttling(_) => "ThrottlingException",
            RequestTimeout(_) => "RequestTimeoutException",
            Unavailable(_) | AuditUnavailable(_) => "DependencyTimeoutException",
            Sealed => "ServiceUnavailableException",
            Internal(_) => "KMSInternalException",
        }
    }

    /// The HTTP status AWS uses for this error.
    pub fn http_status(&self) -> u16 {
        match self {
            KmsError::Internal(_) | KmsError::InternalServiceError(_) => 500,
            KmsError::Unavailable(_) | KmsError::AuditUnavailable(_) | KmsError::Sealed => 503,
            KmsError::RequestEntityTooLarge(_) => 413,
            KmsError::RequestTimeout(_) => 408,
            // AWS's common errors: an unsigned request is 403; bad signatures are 400.
            KmsError::MissingAuthenticationToken => 403,
            _ => 400,
        }
    }

    /// A `ValidationException` for one member, in AWS's words.
    pub fn validation(detail: impl std::fmt::Display) -> KmsError {
        KmsError::Validation(format!("1 validation error detected: {detail}"))
    }
}

impl From<StoreError> for KmsError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => KmsError::Unavailable(m),
            StoreError::InvalidInput(m) => KmsError::Validation(format!("1 validation error detected: {m}")),
            // Not-found, conflicts and the rest are resolved by the operation that knows what
            // they mean; reaching here is a bug.
            other => KmsError::Internal(format!("storage: {other}")),
        }
    }
}

impl From<clavis_crypto::CryptoError> for KmsError {
    fn from(e: clavis_crypto::CryptoError) -> Self {
        match e {
            clavis_crypto::CryptoError::Sealed => KmsError::Sealed,
            clavis_crypto::CryptoError::Hsm(m) => KmsError::Unavailable(format!("HSM: {m}")),
            other => KmsError::Internal(format!("crypto: {other}")),
        }
    }
}
