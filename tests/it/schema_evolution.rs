//! Adding columns while other workers add theirs (issue 18's groundwork), against the
//! emulator's `tables.patch` with `If-Match` etags.

use firehose_replay::sink::bigquery::load::{LoadJobOptions, LoadJobs};
use firehose_replay::sink::bigquery::schema::{evolve, infer};
use firehose_replay::sink::bigquery::TableRef;
use serde_json::json;

use crate::bq_emulator::BqEmulator;

fn jobs(emu: &BqEmulator) -> LoadJobs {
    LoadJobs::new(
        reqwest::Client::new(),
        &emu.endpoint,
        None,
        TableRef {
            project: "test-proj".into(),
            dataset: "bi".into(),
            table: "evolving".into(),
        },
        LoadJobOptions::default(),
    )
}

#[test]
fn concurrent_workers_adding_columns_keep_every_column_and_change_none() {
    let emu = BqEmulator::start("test-proj");
    emu.create_dataset("bi");
    emu.create_table(
        "bi",
        "evolving",
        json!([{"name": "_row_id", "type": "STRING", "mode": "REQUIRED"},
               {"name": "user", "type": "RECORD", "fields": [{"name": "id", "type": "STRING"}]}]),
    );
    // The emulator enforces etags: a patch from a stale read is refused.
    let etag = emu.table("bi", "evolving")["etag"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(!etag.is_empty());
    let base: Vec<serde_json::Value> = emu.table("bi", "evolving")["schema"]["fields"]
        .as_array()
        .unwrap()
        .clone();
    // Eight workers, each adding a column and a RECORD column of its own, all at once. (The
    // emulator adds only top-level columns: a field added inside an existing RECORD is checked
    // in the request, by `infer`'s unit tests, not here.)
    let rt = crate::moto::rt();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for w in 0..8 {
            let jobs = jobs(&emu);
            let record = json!({format!("c{w}"): w, format!("r{w}"): {"at": "x", "n": 1.5}});
            let additions = infer::additions(&base, &record).unwrap();
            assert_eq!(additions.len(), 2);
            tasks.push(tokio::spawn(async move {
                evolve::add_columns(&jobs, &additions).await.unwrap()
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
    let fields = emu.table("bi", "evolving")["schema"]["fields"].clone();
    let names: Vec<&str> = fields
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    for w in 0..8 {
        assert!(names.contains(&format!("c{w}").as_str()), "{names:?}");
    }
    for w in 0..8 {
        let r = fields
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == format!("r{w}"))
            .unwrap_or_else(|| panic!("r{w} missing: {names:?}"));
        assert_eq!(r["type"], "RECORD");
        assert_eq!(r["fields"][0]["name"], "at");
        assert_eq!(r["fields"][1]["type"], "FLOAT");
    }
    assert_eq!(names.len(), 2 + 16, "{names:?}");
    assert_eq!(fields[0]["mode"], "REQUIRED", "existing columns unchanged");
    // The stale etag from before is now refused by the emulator, as BigQuery does.
    let stale = rt.block_on(async {
        reqwest::Client::new()
            .patch(emu.url("datasets/bi/tables/evolving"))
            .header("If-Match", &etag)
            .json(&json!({"description": "stale"}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(stale, 412);
}
