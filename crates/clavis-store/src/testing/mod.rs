//! Test support for storage, compiled only with the `testing` feature (the backends' and the
//! core's dev-dependencies turn it on; a release build never contains it): the [`conformance`]
//! suite every backend runs, and [`FailingStore`], a wrapper that injects failures into any
//! store so tests can see how the core reports an outage.

pub mod conformance;
mod failing;

pub use failing::FailingStore;
