//! Unit tests of the parent module.

use super::*;
use crate::object::ObjectRef;
use crate::record::validate;

fn build(json: &str, column: Option<&str>, source: RowIdSource) -> Result<String, RecordErrorKind> {
    let seed = ObjectSeed::new(&ObjectRef::new("b", "k"));
    let positional = matches!(source, RowIdSource::Position);
    let mut rb = RowBuilder::new(seed.clone(), source, column);
    let shape = validate(json.as_bytes()).unwrap();
    let payload = Payload {
        json: json.as_bytes(),
        shape,
        sub: &[],
        verdicts: Default::default(),
    };
    let row = rb.build(&payload, 7, 70)?;
    // The ID names the record's byte offset, not its ordinal.
    let expected_id = seed.id(70, &[]);
    if positional {
        assert_eq!(row.id, &expected_id);
    }
    Ok(String::from_utf8(row.to_vec())
        .unwrap()
        .replace(seed.id(70, &[]).as_str(), "ID"))
}

#[test]
fn splices_the_id_column_before_the_closing_brace() {
    let p = RowIdSource::Position;
    assert_eq!(
        build(r#"{"a":1} "#, Some("_row_id"), p.clone()).unwrap(),
        r#"{"a":1,"_row_id":"ID"}"#
    );
    assert_eq!(
        build(r#"{ }"#, Some("_row_id"), p.clone()).unwrap(),
        r#"{ "_row_id":"ID"}"#
    );
    assert_eq!(
        build("{\n\"a\":\r\n1}", Some("id\"x"), p.clone()).unwrap(),
        r#"{ "a":  1,"id\"x":"ID"}"#
    );
}

#[test]
fn metadata_columns_follow_the_row_id() {
    let seed = ObjectSeed::new(&ObjectRef::new("b", "k/x \"y\".gz"));
    let all: Metadata = "source_uri,_record_ordinal,ingested_at".parse().unwrap();
    let object = ObjectRef::new("b", "k/x \"y\".gz");
    let mut rb = RowBuilder::new(seed.clone(), RowIdSource::Position, Some("_row_id"))
        .with_metadata(all, &object, "2026-11-27T23:00:00.000Z");
    let row = |rb: &mut RowBuilder, json: &str| {
        let payload = Payload {
            json: json.as_bytes(),
            shape: validate(json.as_bytes()).unwrap(),
            sub: &[],
            verdicts: Default::default(),
        };
        let r = rb.build(&payload, 3, 30).unwrap();
        serde_json::from_slice::<serde_json::Value>(&r.to_vec()).unwrap()
    };
    let v = row(&mut rb, r#"{"a":1}"#);
    assert_eq!(v["a"], 1);
    assert_eq!(v["_row_id"], seed.id(30, &[]).as_str());
    assert_eq!(v["_source_uri"], "s3://b/k/x \"y\".gz");
    assert_eq!(v["_record_ordinal"], 3);
    assert_eq!(v["_ingested_at"], "2026-11-27T23:00:00.000Z");
    assert_eq!(row(&mut rb, "{}")["_record_ordinal"], 3);
    assert_eq!(row(&mut rb, "[1]")["value"], serde_json::json!([1]));
    // Without the ID column the metadata still goes in.
    let only: Metadata = "record_ordinal".parse().unwrap();
    let mut rb =
        RowBuilder::new(seed, RowIdSource::Position, None).with_metadata(only, &object, "");
    let v = row(&mut rb, r#"{"a":1}"#);
    assert_eq!(v, serde_json::json!({"a": 1, "_record_ordinal": 3}));
    assert!("bogus".parse::<Metadata>().is_err());
}

#[test]
fn wraps_non_objects_as_value() {
    let p = RowIdSource::Position;
    assert_eq!(
        build("[1,2]", Some("_row_id"), p.clone()).unwrap(),
        r#"{"value":[1,2],"_row_id":"ID"}"#
    );
    assert_eq!(build("\"s\"", None, p).unwrap(), r#"{"value":"s"}"#);
}

#[test]
fn passes_objects_through_when_the_column_is_disabled() {
    assert_eq!(
        build(r#"{"a":1}"#, None, RowIdSource::Position).unwrap(),
        r#"{"a":1}"#
    );
}

#[test]
fn takes_ids_from_a_field_or_explains_why_not() {
    let f = RowIdSource::field("meta.id");
    assert_eq!(
        build(r#"{"meta":{"id":"e-1"}}"#, Some("_row_id"), f.clone()).unwrap(),
        r#"{"meta":{"id":"e-1"},"_row_id":"e-1"}"#
    );
    assert_eq!(
        build(r#"{"meta":{}}"#, Some("_row_id"), f).unwrap_err(),
        RecordErrorKind::RowId("row-id field `meta.id` is missing".into())
    );
}

#[test]
fn rows_have_unique_keys_and_generated_columns_are_never_shadowed() {
    let p = RowIdSource::Position;
    assert_eq!(
        build(r#"{"a":1,"a":2}"#, Some("_row_id"), p.clone()).unwrap(),
        r#"{"a":2,"_row_id":"ID"}"#
    );
    let err = build(r#"{"_row_id":"mine","a":1}"#, Some("_row_id"), p.clone()).unwrap_err();
    assert!(
        err.to_string().contains("own `_row_id` field (\"mine\")"),
        "{err}"
    );
    // The field the ID is taken from may be the ID column itself: one copy, same value.
    assert_eq!(
        build(
            r#"{"_row_id":"mine","a":1}"#,
            Some("_row_id"),
            RowIdSource::field("_row_id")
        )
        .unwrap(),
        r#"{"_row_id":"mine","a":1}"#
    );
    assert!(build(
        r#"{"_row_id":"not plain","a":1}"#,
        Some("_row_id"),
        RowIdSource::field("_row_id")
    )
    .is_err());
    // Without the column, the record's field is just a field.
    assert_eq!(
        build(r#"{"_row_id":"mine"}"#, None, p.clone()).unwrap(),
        r#"{"_row_id":"mine"}"#
    );
    let object = ObjectRef::new("b", "k");
    let seed = ObjectSeed::new(&object);
    let mut rb = RowBuilder::new(seed, RowIdSource::Position, None).with_metadata(
        "source_uri,record_ordinal".parse().unwrap(),
        &object,
        "",
    );
    let mut row = |json: &str| {
        let payload = Payload {
            json: json.as_bytes(),
            shape: validate(json.as_bytes()).unwrap(),
            sub: &[],
            verdicts: Default::default(),
        };
        rb.build(&payload, 3, 30)
            .map(|r| String::from_utf8(r.to_vec()).unwrap())
            .map_err(|e| e.to_string())
    };
    assert!(row(r#"{"_source_uri":"x"}"#)
        .unwrap_err()
        .contains("--metadata-columns"));
    assert_eq!(
        row(r#"{"_source_uri":"s3://b/k","_record_ordinal":3}"#).unwrap(),
        r#"{"_source_uri":"s3://b/k","_record_ordinal":3}"#
    );
    assert!(row(r#"{"_record_ordinal":4}"#).is_err());
}

#[test]
fn a_payload_column_holds_the_whole_record_beside_the_generated_columns() {
    let seed = ObjectSeed::new(&ObjectRef::new("b", "k"));
    let object = ObjectRef::new("b", "k");
    let meta: Metadata = "source_uri".parse().unwrap();
    let mut rb = RowBuilder::new(seed.clone(), RowIdSource::Position, Some("_row_id"))
        .with_metadata(meta, &object, "")
        .with_payload_column(Some("raw"));
    let id = seed.id(7, &[]);
    for (record, want) in [
        // The record's own `_row_id` is just data inside the payload.
        (r#"{"a":1,"_row_id":"mine"}"#, r#"{"a":1,"_row_id":"mine"}"#),
        // Duplicate keys: the last wins, as in every row.
        (r#"{"a":1,"a":2}"#, r#"{"a":2}"#),
        ("[1,2]", "[1,2]"),
        ("\"text\"", "\"text\""),
        ("{\n  \"p\": true\n}", "{   \"p\": true }"),
    ] {
        let shape = validate::shape_of(record.as_bytes());
        let payload = Payload {
            json: record.as_bytes(),
            shape,
            sub: &[],
            verdicts: Default::default(),
        };
        let row = String::from_utf8(rb.build(&payload, 0, 7).unwrap().to_vec()).unwrap();
        assert_eq!(
            row,
            format!(
                r#"{{"raw":{want},"_row_id":"{}","_source_uri":"s3://b/k"}}"#,
                id.as_str()
            ),
            "{record}"
        );
        let v: serde_json::Value = serde_json::from_str(&row).unwrap();
        assert_eq!(v.as_object().unwrap().len(), 3);
    }
}
