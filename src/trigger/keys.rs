//! Object keys' old path (now [`crate::aws::keys`]), kept for code written against it.

pub use crate::aws::keys::*;
