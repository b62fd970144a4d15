//! Table schemas that follow the data (issue 18, `--schema-evolution add-columns`): what a
//! record needs added ([`infer`]), adding it to the table without losing a concurrent worker's
//! additions ([`evolve`]), and what a writer keeps to do it while writing ([`evolver`]).

pub mod evolve;
pub mod evolver;
pub mod infer;
