//! `Setup::validate`: each refusal, for the combination that earns it, and the neighbouring
//! combinations that are fine.

use std::path::PathBuf;

use super::*;
use crate::sink::bigquery::{merge::Dedup, Mode, TableRef};

fn bq(table: &str) -> Setup {
    let table: TableRef = table.parse().unwrap();
    let mut s = Setup::new(Entry::Replay, SinkSpec::BigQuery(table));
    s.settings.row_id_column = Some("_row_id".into());
    s
}

fn ndjson() -> Setup {
    Setup::new(Entry::Replay, SinkSpec::Ndjson(PathBuf::from("out")))
}

fn postgres() -> Setup {
    let sink = "postgres://u@localhost:5432/db?table=public.t"
        .parse()
        .unwrap();
    let mut s = Setup::new(Entry::Replay, sink);
    s.settings.row_id_column = Some("_row_id".into());
    s
}

fn refused(s: &Setup) -> Refusal {
    s.validate().expect_err("refused")
}

#[test]
fn plain_setups_of_every_sink_pass() {
    assert_eq!(ndjson().validate(), Ok(()));
    assert_eq!(
        Setup::new(Entry::Worker, SinkSpec::Stdout).validate(),
        Ok(())
    );
    assert_eq!(bq("p.d.t").validate(), Ok(()));
    assert_eq!(postgres().validate(), Ok(()));
    for mode in [Mode::InsertAll, Mode::StorageWrite, Mode::Load] {
        let mut s = bq("p.d.t");
        s.bigquery.mode = mode;
        assert_eq!(s.validate(), Ok(()), "{mode}");
    }
}

#[test]
fn load_mode_runs_in_replay_and_backfill_only() {
    let mut s = bq("p.d.t");
    s.bigquery.mode = Mode::Load;
    assert_eq!(s.validate(), Ok(()));
    s.entry = Entry::Redrive;
    assert_eq!(refused(&s), Refusal::LoadModeInRedrive);
    for entry in [Entry::Lambda, Entry::Worker] {
        s.entry = entry;
        assert_eq!(refused(&s), Refusal::LoadModePerObject);
    }
    // Per-object modes run everywhere.
    s.bigquery.mode = Mode::StorageWrite;
    assert_eq!(s.validate(), Ok(()));
}

#[test]
fn force_and_no_ledger_into_storage_write_or_load_need_allow_duplicates() {
    for mode in [Mode::StorageWrite, Mode::Load] {
        let mut s = bq("p.d.t");
        s.bigquery.mode = mode;
        s.ledger.force = true;
        assert_eq!(refused(&s), Refusal::ForceDuplicates { mode });
        assert!(refused(&s)
            .to_string()
            .contains(&format!("--bigquery-mode {mode}")));
        s.ledger.force = false;
        s.ledger.spec = Some(LedgerSpec::None);
        assert_eq!(refused(&s), Refusal::NoLedgerDuplicates { mode });
        s.ledger.allow_duplicates = true;
        assert_eq!(s.validate(), Ok(()));
        s.ledger.allow_duplicates = false;
        s.bigquery.dedup = Dedup::Merge;
        assert_eq!(s.validate(), Ok(()), "merge keeps copies out");
    }
    let mut s = bq("p.d.t");
    s.bigquery.mode = Mode::InsertAll;
    s.ledger.force = true;
    assert_eq!(s.validate(), Ok(()));
    let mut s = ndjson();
    s.ledger.force = true;
    assert_eq!(s.validate(), Ok(()));
}

#[test]
fn a_payload_column_named_like_a_generated_one_is_refused() {
    let mut s = ndjson();
    s.settings.row_id_column = Some("_row_id".into());
    s.settings.payload_column = Some("_ROW_ID".into());
    assert_eq!(
        refused(&s),
        Refusal::PayloadColumnGenerated("_ROW_ID".into())
    );
    s.settings.payload_column = Some("raw".into());
    assert_eq!(s.validate(), Ok(()));
}

#[test]
fn table_flags_outside_sinks_with_tables_are_refused() {
    let mut s = ndjson();
    s.bigquery.dedup = Dedup::Merge;
    assert_eq!(refused(&s), Refusal::MergeOutsideBigQuery);
    let mut s = ndjson();
    s.tables.schema_evolution = SchemaEvolution::AddColumns;
    assert_eq!(
        refused(&s),
        Refusal::EvolutionWithoutSchema(SchemaEvolution::AddColumns)
    );
    let mut s = ndjson();
    s.tables.create_auto = true;
    assert_eq!(refused(&s), Refusal::TableFlagsElsewhere);
    let mut s = ndjson();
    s.bigquery.route_default = Some("other".into());
    assert_eq!(refused(&s), Refusal::TableFlagsElsewhere);
    // PostgreSQL has tables: auto-create, evolution and a routing default are its too.
    let mut s = postgres();
    s.tables.create_auto = true;
    s.tables.schema_evolution = SchemaEvolution::AddColumns;
    s.bigquery.route_default = Some("other".into());
    assert_eq!(s.validate(), Ok(()));
    let mut s = bq("p.d.t");
    s.tables.create_auto = true;
    s.bigquery.create_table_schema = Some("schema.json".into());
    assert_eq!(refused(&s), Refusal::TwoWaysToCreate);
}

#[test]
fn merge_refuses_insert_all_routing_auto_and_storage_write_evolution() {
    let mut s = bq("p.d.t");
    s.bigquery.dedup = Dedup::Merge;
    assert_eq!(s.validate(), Ok(()));
    s.bigquery.mode = Mode::InsertAll;
    assert_eq!(refused(&s), Refusal::MergeInsertAll);
    s.bigquery.mode = Mode::StorageWrite;
    s.tables.schema_evolution = SchemaEvolution::AddColumns;
    assert_eq!(refused(&s), Refusal::EvolutionWithStorageWriteMerge);
    let mut s = bq("p.d.t");
    s.bigquery.dedup = Dedup::Merge;
    s.tables.create_auto = true;
    assert_eq!(refused(&s), Refusal::MergeRoutedOrAuto("p.d.t".into()));
    let mut s = bq("p.d.events_{type}");
    s.bigquery.dedup = Dedup::Merge;
    assert_eq!(
        refused(&s),
        Refusal::MergeRoutedOrAuto("p.d.events_{type}".into())
    );
}

#[test]
fn load_mode_refuses_routed_merges_schema_files_and_growing_merges() {
    let load = |table: &str| {
        let mut s = bq(table);
        s.bigquery.mode = Mode::Load;
        s
    };
    let mut s = load("p.d.events_{type}");
    s.bigquery.dedup = Dedup::Merge;
    assert_eq!(refused(&s), Refusal::LoadMergeRouted);
    let mut s = load("p.d.events_{type}");
    s.bigquery.create_table_schema = Some("schema.json".into());
    assert_eq!(refused(&s), Refusal::LoadRoutedSchemaFile);
    let mut s = load("p.d.t");
    s.bigquery.dedup = Dedup::Merge;
    s.tables.schema_evolution = SchemaEvolution::AddColumns;
    assert_eq!(refused(&s), Refusal::LoadMergeEvolving);
    let mut s = load("p.d.t");
    s.bigquery.dedup = Dedup::Merge;
    s.tables.create_auto = true;
    assert_eq!(refused(&s), Refusal::LoadMergeEvolving);
    // Load mode routes and evolves on its own terms.
    let mut s = load("p.d.events_{type}");
    s.tables.create_auto = true;
    s.tables.schema_evolution = SchemaEvolution::AddColumns;
    assert_eq!(s.validate(), Ok(()));
}

#[test]
fn routing_needs_a_template_with_fields_for_a_default_table() {
    let mut s = bq("p.d.t");
    s.bigquery.route_default = Some("other".into());
    assert!(matches!(
        refused(&s),
        Refusal::RouteDefaultWithoutFields { .. }
    ));
    let mut s = bq("p.d.events_{type}");
    s.bigquery.route_default = Some("other".into());
    assert_eq!(s.validate(), Ok(()));
    let s = bq("p.d.events_{type");
    assert!(matches!(refused(&s), Refusal::Template(_)));
}

#[test]
fn a_rest_endpoint_without_a_storage_endpoint_is_refused_in_storage_write() {
    let mut s = bq("p.d.t");
    s.bigquery.endpoint = Some("http://127.0.0.1:9050".into());
    assert_eq!(refused(&s), Refusal::RestEndpointWithoutStorage);
    s.bigquery.storage_endpoint = Some("http://127.0.0.1:9060".into());
    assert_eq!(s.validate(), Ok(()));
    s.bigquery.storage_endpoint = None;
    for mode in [Mode::InsertAll, Mode::Load] {
        s.bigquery.mode = mode;
        assert_eq!(s.validate(), Ok(()), "{mode}");
    }
}

#[test]
fn postgres_needs_a_row_id_column_and_owns_the_postgres_ledger() {
    let mut s = postgres();
    s.settings.row_id_column = None;
    assert_eq!(refused(&s), Refusal::PostgresWithoutRowId);
    let mut s = ndjson();
    s.ledger.spec = Some(LedgerSpec::Postgres);
    assert_eq!(refused(&s), Refusal::PostgresLedgerElsewhere);
    assert_eq!(postgres().ledger_spec(), LedgerSpec::Postgres);
}

#[test]
fn refusals_are_usage_errors_and_service_failures_are_not() {
    let e: SetupError = Refusal::MergeOutsideBigQuery.into();
    assert!(e.is_usage());
    let e: SetupError = crate::error::Error::permanent(
        crate::error::Stage::Sink,
        crate::error::Cause::Sink("down".into()),
    )
    .into();
    assert!(!e.is_usage());
}

#[cfg(feature = "iceberg")]
#[test]
fn iceberg_partition_by_shapes_a_created_table_cluster_by_is_refused() {
    let iceberg = || {
        let sink = "iceberg:sqlite:///x/c.db?warehouse=/x/w#ns.t"
            .parse()
            .unwrap();
        let mut s = Setup::new(Entry::Replay, sink);
        s.tables.create_auto = true;
        s
    };
    assert_eq!(iceberg().validate(), Ok(()));
    let mut s = iceberg();
    s.bigquery.partition_by = Some("day(ts), bucket[8](k)".into());
    assert_eq!(s.validate(), Ok(()));
    s.bigquery.partition_by = Some("week(ts)".into());
    assert!(
        matches!(refused(&s), Refusal::IcebergPartitionBy(why) if why.contains("unknown transform"))
    );
    s.bigquery.partition_by = Some("day(ts)".into());
    s.tables.create_auto = false;
    assert!(
        matches!(refused(&s), Refusal::IcebergPartitionBy(why) if why.contains("its own partition spec"))
    );
    let mut s = iceberg();
    s.bigquery.cluster_by = vec!["k".into()];
    assert_eq!(refused(&s), Refusal::IcebergClusterBy);
}
