//! Routing rows to several tables (`--sink 'bigquery:P.D.events_{detail.type}'`).
//!
//! [`template`] turns the sink's table into a name per record.

pub mod template;

pub use self::template::{ObjectTemplate, RouteError, Template};
