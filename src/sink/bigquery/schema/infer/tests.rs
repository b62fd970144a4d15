//! Unit tests of the parent module.

use super::*;

fn table() -> Vec<Value> {
    serde_json::from_value(json!([
        {"name": "_row_id", "type": "STRING", "mode": "REQUIRED"},
        {"name": "n", "type": "INTEGER"},
        {"name": "x", "type": "FLOAT"},
        {"name": "at", "type": "TIMESTAMP"},
        {"name": "tags", "type": "STRING", "mode": "REPEATED"},
        {"name": "user", "type": "RECORD", "fields": [{"name": "id", "type": "STRING"}]}
    ]))
    .unwrap()
}

fn names(a: &[Addition]) -> Vec<(String, &'static str, bool)> {
    a.iter()
        .map(|a| (a.dotted(), a.column.kind, a.column.repeated))
        .collect()
}

#[test]
fn new_fields_get_types_from_their_values_and_nulls_wait() {
    let r = json!({"n": 1, "s": "2026-01-01T00:00:00Z", "i": 7, "f": 1.5, "b": true,
                       "none": null, "empty": [], "obj": {}, "arr": [null, 3]});
    assert_eq!(
        names(&additions(&table(), &r).unwrap()),
        vec![
            ("arr".to_string(), "INTEGER", true),
            ("b".into(), "BOOLEAN", false),
            ("f".into(), "FLOAT", false),
            ("i".into(), "INTEGER", false),
            ("s".into(), "STRING", false),
        ]
    );
}

#[test]
fn nested_objects_become_records_and_grow_inside_existing_records() {
    let r = json!({"user": {"id": "u", "plan": {"tier": 2}}, "geo": {"lat": 1.0, "tags": ["a"]}});
    let a = additions(&table(), &r).unwrap();
    assert_eq!(
        names(&a),
        vec![
            ("geo".to_string(), "RECORD", false),
            ("user.plan".into(), "RECORD", false)
        ]
    );
    let geo = &a[0].column;
    assert_eq!(
        geo.fields
            .iter()
            .map(|f| (f.name.as_str(), f.kind, f.repeated))
            .collect::<Vec<_>>(),
        vec![("lat", "FLOAT", false), ("tags", "STRING", true)]
    );
    let patched = merged(&table(), &a);
    assert_eq!(patched.len(), 7);
    assert_eq!(patched[5]["fields"][1]["name"], "plan");
    assert_eq!(patched[5]["fields"][1]["fields"][0]["type"], "INTEGER");
    // Once merged, the same record needs nothing.
    assert!(additions(&patched, &r).unwrap().is_empty());
    // Merging again (a concurrent worker added the same) changes nothing.
    assert_eq!(merged(&patched, &a), patched);
}

#[test]
fn a_value_an_existing_column_cannot_take_is_a_conflict_naming_both_types() {
    let c = additions(&table(), &json!({"n": "many"})).unwrap_err();
    assert_eq!(
        c.to_string(),
        "column `n` is INTEGER, but the record has STRING there"
    );
    let c = additions(&table(), &json!({"user": {"id": 5}})).unwrap_err();
    assert_eq!(c.path, "user.id");
    let c = additions(&table(), &json!({"tags": "one"})).unwrap_err();
    assert_eq!(c.column_type, "REPEATED STRING");
    let c = additions(&table(), &json!({"n": 1.5})).unwrap_err();
    assert_eq!(
        (c.column_type.as_str(), c.value_type.as_str()),
        ("INTEGER", "FLOAT")
    );
    // What BigQuery converts is no conflict.
    assert!(additions(&table(), &json!({"x": 3, "at": 1795600800, "n": "4"})).is_ok());
    assert!(additions(&table(), &json!({"n": null, "tags": [], "user": null})).is_ok());
}

#[test]
fn empty_unknown_values_are_stripped_and_unknown_paths_found() {
    let mut r = json!({"n": 1, "none": null, "e": {"a": [null]},
                           "user": {"id": "u", "gone": null, "plan": {"tier": 1}}});
    assert!(strip_empty_unknown(&table(), &mut r));
    assert_eq!(r, json!({"n": 1, "user": {"id": "u", "plan": {"tier": 1}}}));
    assert_eq!(first_unknown(&table(), &r).as_deref(), Some("user.plan"));
    assert!(!strip_empty_unknown(&table(), &mut r));
    assert_eq!(
        first_unknown(&table(), &json!({"n": 1, "tags": ["a"]})),
        None
    );
    assert_eq!(
        first_unknown(&table(), &json!({"N": 1, "deep": [[1]]})).as_deref(),
        Some("deep")
    );
}

#[test]
fn keys_match_columns_case_insensitively() {
    assert!(additions(&table(), &json!({"N": 1, "USER": {"ID": "x"}}))
        .unwrap()
        .is_empty());
    let a = additions(&table(), &json!({"new": 1, "NEW": 2})).unwrap();
    assert_eq!(names(&a), vec![("NEW".to_string(), "INTEGER", false)]);
}

#[test]
fn mixed_number_arrays_are_floats_and_array_objects_merge_at_every_depth() {
    let a = additions(&table(), &json!({"xs": [1, 2.5], "ys": [3, 4]})).unwrap();
    assert_eq!(
        names(&a),
        vec![
            ("xs".to_string(), "FLOAT", true),
            ("ys".into(), "INTEGER", true)
        ]
    );
    let a = additions(
        &table(),
        &json!({"items": [{"a": {"x": 1}}, {"a": {"y": "two", "x": 1.5}}, {"b": true}]}),
    )
    .unwrap();
    let items = &a[0].column;
    assert_eq!((items.kind, items.repeated), ("RECORD", true));
    let inner: Vec<_> = items.fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(inner, ["a", "b"]);
    let sub: Vec<_> = items.fields[0]
        .fields
        .iter()
        .map(|f| (f.name.as_str(), f.kind))
        .collect();
    assert_eq!(sub, [("x", "FLOAT"), ("y", "STRING")]);
    // The merged schema takes every element of the record it came from.
    assert!(additions(
        &merged(&table(), &a),
        &json!({"items": [{"a": {"y": "z"}}]})
    )
    .unwrap()
    .is_empty());
}

#[test]
fn only_plain_names_can_become_columns() {
    for ok in ["a", "_a1", "A_b_2"] {
        assert_eq!(column_name_problem(ok), None, "{ok}");
    }
    for bad in [
        "a.b",
        "a-b",
        "naïve",
        "1a",
        "",
        "_PARTITIONTIME",
        "_table_x",
    ] {
        assert!(column_name_problem(bad).is_some(), "{bad}");
    }
    let a = additions(&table(), &json!({"geo": {"ok": 1, "not-ok": 2}})).unwrap();
    assert_eq!(
        check_names(&a[0]).unwrap_err(),
        "field `geo.not-ok` cannot become a column: a column name takes letters, digits \
             and underscores, not starting with a digit"
    );
}
