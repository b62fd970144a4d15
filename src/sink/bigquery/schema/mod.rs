//! Table schemas that follow the data (issue 18): what a record needs added ([`infer`]) and
//! adding it to the table without losing a concurrent worker's additions ([`evolve`]). The
//! sinks do not use these yet: `--schema-evolution` is not wired in.

pub mod evolve;
pub mod infer;
