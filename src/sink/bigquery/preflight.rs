//! What a run can check about its BigQuery destination once, before the first object is read
//! (through [`super::connect_checked`]).
//!
//! Without it, a storage-write or insert-all run into a table that does not exist read every
//! object, failed each one at its first append and dead-lettered all of them — the book
//! promises instead that such a run does not start. Load mode and `--dedup merge` read the
//! table when they connect ([`super::connect_load`] gives the same refusal); this covers the
//! other modes.

use super::{is_routed, table, Config, Connected, Mode, TableRef};
use crate::error::Error;

/// Why a run may not start against this destination.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The table is missing and nothing would create it: a usage error (exit 2), not a service
    /// failure — running again changes nothing until the table or a flag does.
    /// (`run::Setup` words the refusal for people.)
    #[error("table {0} does not exist and nothing would create it")]
    MissingTable(TableRef),
    /// The destination could not be asked (credentials, endpoint, network): the service
    /// failed, which may pass by itself.
    #[error(transparent)]
    Service(Error),
}

impl From<Error> for Refusal {
    fn from(e: Error) -> Self {
        Refusal::Service(e)
    }
}

/// Checks, once, what every object would otherwise find out by failing: that the one table
/// rows go to exists, or will be created (`--create-table-schema` creates it when connecting,
/// `--create-table auto` with the first row), over the connection `c` just made (whose token
/// proved the credentials and endpoint). A routed table's tables are named by the rows, so only
/// their creation flags can be checked, which the flag checks do.
pub(super) async fn check_with(config: &Config, c: &Connected) -> Result<(), Refusal> {
    let checks_here = matches!(config.mode, Mode::StorageWrite | Mode::InsertAll)
        && config.merge.is_none()
        && config.create_table.is_none()
        && config.create_auto.is_none()
        && !is_routed(config);
    if !checks_here {
        return Ok(());
    }
    // The raw `tables.get` (status only, retried per the policy): what the table holds is the
    // writers' business, whether it is there is this check's.
    let loads = super::load::LoadJobs::new(
        c.http.clone(),
        &c.base,
        c.auth.clone(),
        config.table.clone(),
        super::load::LoadJobOptions {
            retry: config.retry.clone(),
            ..super::load::LoadJobOptions::default()
        },
    );
    let what = format!("looking up table {}", config.table);
    match table::lookup(&loads, &what).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(Refusal::MissingTable(config.table.clone())),
        Err(e) => Err(Refusal::Service(e)),
    }
}
