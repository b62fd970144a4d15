//! JSON lexing, shared by every stage that reads JSON text: the framer (record ends and
//! resynchronisation), the record stage (validation), the row stage (the row contract's key
//! scan, `--map`) and the BigQuery encoder. A leaf: it imports nothing else from the crate, so
//! those stages depend on it and not on each other.
//!
//! - [`validate`]: the hot-path validator (grammar of one value, where it breaks, keys watched
//!   while passing);
//! - [`lex`]: small steps over text already known to be valid;
//! - [`keycheck`]: the key check the validator runs on every key, and its hash.

pub mod keycheck;
pub mod lex;
pub mod validate;

pub use keycheck::{KeyCheck, Verdicts};
pub use validate::*;
