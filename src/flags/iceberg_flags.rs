//! Flags of `--sink iceberg:…`.

use clap::Args;

use firehose_replay::run::setup::IcebergOptions;

#[derive(Args, Debug, Default)]
#[command(next_help_heading = "Apache Iceberg")]
pub(crate) struct IcebergOpts {
    /// Data file size (MiB): a Parquet data file is closed once past it (fewer, larger files
    /// read faster; a batch's last file is smaller).
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_ICEBERG_TARGET_FILE_MIB",
        default_value_t = 256
    )]
    pub(crate) iceberg_target_file_mib: u64,
    /// Row group size (MiB, encoded): what the writer holds in memory per data file being
    /// written.
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_ICEBERG_ROW_GROUP_MIB",
        default_value_t = 64
    )]
    pub(crate) iceberg_row_group_mib: u64,
    /// Objects per commit (snapshot) at most, in `replay` and `backfill`.
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_ICEBERG_BATCH_OBJECTS",
        default_value_t = 500
    )]
    pub(crate) iceberg_batch_objects: usize,
    /// Listed (compressed) MiB per commit at most, in `replay` and `backfill`.
    #[arg(
        long,
        global = true,
        env = "FIREHOSE_REPLAY_ICEBERG_BATCH_MIB",
        default_value_t = 4096
    )]
    pub(crate) iceberg_batch_mib: u64,
}

impl IcebergOpts {
    /// These flags as the library's plain options.
    pub(crate) fn options(&self) -> IcebergOptions {
        let mib = |m: u64| m.max(1).saturating_mul(1 << 20);
        IcebergOptions {
            target_file_bytes: mib(self.iceberg_target_file_mib),
            row_group_bytes: mib(self.iceberg_row_group_mib),
            batch_objects: self.iceberg_batch_objects.max(1),
            batch_bytes: mib(self.iceberg_batch_mib),
        }
    }
}
