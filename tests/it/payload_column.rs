//! `--payload-column`: "land raw, model later" — each record whole in one JSON column.

use crate::bigquery_modes::{expected_ids, start};
use crate::harness::run_ok;
use crate::support::{bin, sample_root};

/// `--payload-column raw`: every record lands whole in one JSON column, in every mode, with the
/// row IDs the ordinary rows get, and no schema refusal although the table has no field of the
/// records (and no `--ignore-unknown-values`).
#[test]
fn a_payload_column_lands_every_record_whole_in_every_mode() {
    let (emu, work) = start();
    let want = expected_ids(work.path());
    for mode in ["storage-write", "load", "insert-all"] {
        let table = format!("raw_{}", mode.replace('-', "_"));
        emu.create_table(
            "bi",
            &table,
            serde_json::json!([
                {"name": "raw", "type": "JSON"},
                {"name": "_row_id", "type": "STRING", "mode": "REQUIRED"}
            ]),
        );
        let dir = work.path().join(&table);
        std::fs::create_dir_all(&dir).unwrap();
        let mut cmd = bin();
        cmd.current_dir(&dir)
            .args(["backfill", sample_root().to_str().unwrap()])
            .args([
                "--from",
                "2026-11-25",
                "--to",
                "2026-11-26",
                "--include-error-output",
            ])
            .args(["--sink", &format!("bigquery:test-proj.bi.{table}")])
            .args(["--bigquery-mode", mode, "--payload-column", "raw"])
            .args(["--bigquery-endpoint", &emu.endpoint])
            .args(["--bigquery-storage-endpoint", &emu.grpc_endpoint])
            .args(["--retry-min-delay-ms", "50", "--load-poll-ms", "50"]);
        let stderr = run_ok(cmd);
        assert!(
            stderr.contains(&format!("{} rows written", want.len())),
            "{mode}: {stderr}"
        );
        let rows = emu.rows("bi", &table);
        let ids: std::collections::BTreeSet<String> = rows
            .iter()
            .map(|r| r["_row_id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!((rows.len(), &ids), (want.len(), &want), "{mode}");
        // The payload is the record: JSON text that parses, with the records' own fields.
        let with_event_type = rows
            .iter()
            .filter(|r| {
                let raw = r["raw"].as_str().unwrap_or_default();
                serde_json::from_str::<serde_json::Value>(raw)
                    .map(|v| v.get("event_type").is_some() || v.get("message").is_some())
                    .unwrap_or(false)
            })
            .count();
        assert!(
            with_event_type * 10 >= rows.len() * 9,
            "{mode}: {:?}",
            rows.first()
        );
    }
}
