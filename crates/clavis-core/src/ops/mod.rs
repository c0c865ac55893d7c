//! The operations, one module per family: each is an `impl Kms` block whose public methods
//! are the operations of the catalogue ([`crate::operation`]). They validate the request shape
//! into domain types, obtain keys through the kernel's resolvers (which authorize), apply the
//! state rules, do the work through the kernel, and build the response shape. They cannot
//! reach the fields of `Kms`: only the kernel's methods (see `crate::kernel`).

mod admin;
mod aliases;
mod byok;
mod crypto;
mod grants;
pub mod identity;
mod key_policy;
mod keys;
pub(crate) mod lifecycle;
mod operator;
mod tags;
