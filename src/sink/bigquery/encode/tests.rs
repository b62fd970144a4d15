use std::collections::HashSet;

use base64::Engine as _;
use prost_types::field_descriptor_proto::Label;

use super::datetime::{MAX_MICROS, MIN_MICROS};
use super::descriptor::{MAX_DEPTH, ROW};
use super::*;
use prost::Message as _;
use prost_reflect::{
    DescriptorPool, DynamicMessage, MessageDescriptor, ReflectMessage, Value as PValue,
};
use prost_types::FileDescriptorProto;

/// The encoder's descriptor built into a real descriptor pool, so a broken descriptor fails
/// here as it would at BigQuery.
fn row_descriptor(encoder: &Encoder) -> MessageDescriptor {
    let file = FileDescriptorProto {
        name: Some("row.proto".into()),
        syntax: Some("proto2".into()),
        message_type: vec![encoder.descriptor()],
        ..Default::default()
    };
    let mut pool = DescriptorPool::new();
    pool.add_file_descriptor_proto(file)
        .expect("valid descriptor");
    pool.get_message_by_name(ROW).expect("Row message")
}

fn encoder(fields: Vec<Field>) -> Encoder {
    Encoder::new(fields, Options::default()).expect("schema")
}

/// Encodes `json` and decodes it independently with prost-reflect.
fn decode(encoder: &Encoder, json: &str) -> DynamicMessage {
    let mut out = Vec::new();
    encoder.encode(json.as_bytes(), &mut out).expect("encodes");
    let message = DynamicMessage::decode(row_descriptor(encoder), out.as_slice()).expect("decodes");
    assert_eq!(message.unknown_fields().count(), 0);
    message
}

fn error(encoder: &Encoder, json: &str) -> String {
    let mut out = b"previous".to_vec();
    let e = encoder
        .encode(json.as_bytes(), &mut out)
        .expect_err("should fail");
    assert_eq!(out, b"previous", "output changed by a failed row");
    e
}

fn get(message: &DynamicMessage, name: &str) -> PValue {
    assert!(
        message.has_field_by_name(name),
        "{name} not set in {message:?}"
    );
    message.get_field_by_name(name).unwrap().into_owned()
}

fn single(kind: Kind) -> Encoder {
    encoder(vec![Field::new("v", kind)])
}

fn one(kind: Kind, json_value: &str) -> PValue {
    get(
        &decode(&single(kind), &format!(r#"{{"v":{json_value}}}"#)),
        "v",
    )
}

fn one_err(kind: Kind, json_value: &str) -> String {
    error(&single(kind), &format!(r#"{{"v":{json_value}}}"#))
}

#[test]
fn descriptor_numbers_labels_and_types_follow_the_schema() {
    let enc = encoder(vec![
        Field::new("s", Kind::String),
        Field::new("i", Kind::Int64).with_mode(Mode::Required),
        Field::new("f", Kind::Float64).with_mode(Mode::Repeated),
        Field::new("b", Kind::Bool),
        Field::new("by", Kind::Bytes),
        Field::new("ts", Kind::Timestamp),
        Field::new("d", Kind::Date),
        Field::new("t", Kind::Time),
        Field::new("dt", Kind::DateTime),
        Field::new("n", Kind::Numeric),
        Field::new("bn", Kind::BigNumeric),
        Field::new("j", Kind::Json),
        Field::new("g", Kind::Geography),
        Field::record("r", vec![Field::new("x", Kind::Int64)]),
    ]);
    let d = enc.descriptor();
    assert_eq!(d.name(), "Row");
    let expect = [
        ("s", ProtoType::String),
        ("i", ProtoType::Int64),
        ("f", ProtoType::Double),
        ("b", ProtoType::Bool),
        ("by", ProtoType::Bytes),
        ("ts", ProtoType::Int64),
        ("d", ProtoType::Int32),
        ("t", ProtoType::String),
        ("dt", ProtoType::String),
        ("n", ProtoType::String),
        ("bn", ProtoType::String),
        ("j", ProtoType::String),
        ("g", ProtoType::String),
        ("r", ProtoType::Message),
    ];
    for (i, (field, (name, ty))) in d.field.iter().zip(expect).enumerate() {
        assert_eq!(field.name(), name);
        assert_eq!(field.number(), i as i32 + 1);
        assert_eq!(field.r#type(), ty, "{name}");
    }
    assert_eq!(d.field[0].label(), Label::Optional);
    assert_eq!(
        d.field[1].label(),
        Label::Optional,
        "REQUIRED is checked by encode"
    );
    assert_eq!(d.field[2].label(), Label::Repeated);
    assert!(
        d.field.iter().all(|f| f.options.is_none()),
        "nothing packed"
    );
    assert_eq!(d.nested_type.len(), 1);
    assert_eq!(d.field[13].type_name(), d.nested_type[0].name());
    // It is also a valid descriptor.
    row_descriptor(&enc);
}

#[test]
fn nested_type_names_are_unique_and_never_shadowed_by_fields() {
    let enc = encoder(vec![
        Field::record(
            "a",
            vec![
                Field::record("b", vec![Field::new("x", Kind::Int64)]),
                // The name `a.b`'s type would get.
                Field::new("A_B", Kind::Int64),
            ],
        ),
        Field::record("a_B", vec![Field::new("y", Kind::Int64)]),
        Field::record("z", vec![Field::new("Payload", Kind::String)]),
        Field::record("payload", vec![Field::new("w", Kind::Int64)]).with_mode(Mode::Repeated),
    ]);
    let d = enc.descriptor();
    let types: Vec<&str> = d.nested_type.iter().map(|t| t.name()).collect();
    assert_eq!(types, ["A", "A_B_2", "A_B_3", "Z", "Payload_2"]);
    let mut fields = HashSet::new();
    for message in std::iter::once(&d).chain(&d.nested_type) {
        fields.extend(message.field.iter().map(|f| f.name()));
    }
    assert!(types.iter().all(|t| !fields.contains(t)), "{types:?}");
    let m = decode(
        &enc,
        r#"{"a":{"b":{"x":1},"A_B":2},"a_b":{"y":3},"z":{"payload":"p"},"payload":[{"w":4}]}"#,
    );
    let a = get(&m, "a");
    let b = get(a.as_message().unwrap(), "b");
    assert_eq!(get(b.as_message().unwrap(), "x"), PValue::I64(1));
    assert_eq!(get(a.as_message().unwrap(), "A_B"), PValue::I64(2));
    assert_eq!(
        get(get(&m, "a_B").as_message().unwrap(), "y"),
        PValue::I64(3)
    );
    assert_eq!(
        get(get(&m, "z").as_message().unwrap(), "Payload").as_str(),
        Some("p")
    );
    let payload = get(&m, "payload");
    assert_eq!(
        get(payload.as_list().unwrap()[0].as_message().unwrap(), "w"),
        PValue::I64(4)
    );
}

#[test]
fn nested_and_repeated_records_decode() {
    let enc = Encoder::new(
        vec![
            Field::new("id", Kind::Int64).with_mode(Mode::Required),
            Field::record(
                "payload",
                vec![
                    Field::new("name", Kind::String),
                    Field::record(
                        "items",
                        vec![
                            Field::new("sku", Kind::String),
                            Field::new("price", Kind::Float64),
                            Field::record(
                                "meta",
                                vec![Field::new("tag", Kind::String).with_mode(Mode::Repeated)],
                            ),
                        ],
                    )
                    .with_mode(Mode::Repeated),
                ],
            ),
        ],
        Options::default(),
    )
    .unwrap();
    let long_name = "n".repeat(300);
    let row = format!(
        r#"{{"id": 7, "payload": {{"name": "{long_name}", "items": [
                {{"sku": "a", "price": 1.5, "meta": {{"tag": ["x", "y"]}}}},
                {{"sku": "b"}},
                {{"price": 2}}
            ]}}}}"#
    );
    let m = decode(&enc, &row);
    assert_eq!(get(&m, "id"), PValue::I64(7));
    let payload = get(&m, "payload");
    let payload = payload.as_message().unwrap();
    assert_eq!(get(payload, "name").as_str(), Some(long_name.as_str()));
    let items = get(payload, "items");
    let items = items.as_list().unwrap();
    assert_eq!(items.len(), 3);
    let first = items[0].as_message().unwrap();
    assert_eq!(get(first, "sku").as_str(), Some("a"));
    assert_eq!(get(first, "price").as_f64(), Some(1.5));
    let meta = get(first, "meta");
    let tags = get(meta.as_message().unwrap(), "tag");
    assert_eq!(
        tags.as_list().unwrap(),
        &[PValue::String("x".into()), PValue::String("y".into())]
    );
    let second = items[1].as_message().unwrap();
    assert_eq!(get(second, "sku").as_str(), Some("b"));
    assert!(!second.has_field_by_name("price"));
    assert_eq!(
        get(items[2].as_message().unwrap(), "price").as_f64(),
        Some(2.0)
    );
}

#[test]
fn errors_name_the_column_path() {
    let enc = encoder(vec![Field::record(
        "payload",
        vec![
            Field::record("items", vec![Field::new("price", Kind::Float64)])
                .with_mode(Mode::Repeated),
        ],
    )]);
    let e = error(
        &enc,
        r#"{"payload":{"items":[{"price":1},{"price":2},{"price":"abc"}]}}"#,
    );
    assert!(
        e.starts_with("payload.items[2].price: \"abc\" is not a valid FLOAT64"),
        "{e}"
    );
    let e = error(&enc, r#"{"payload":{"items":[{"price":1},null]}}"#);
    assert!(
        e.starts_with("payload.items[1]: null inside an array"),
        "{e}"
    );
    let e = error(&enc, r#"{"payload":{"items":{"price":1}}}"#);
    assert!(e.starts_with("payload.items: expected an array"), "{e}");
    let e = error(&enc, r#"{"payload":[1]}"#);
    assert_eq!(
        e,
        "payload: expected an object (the column is RECORD), found an array"
    );
    let e = error(&enc, r#"{"payload":{"items":[{"cost":1}]}}"#);
    assert_eq!(e, "no such field: payload.items[0].cost");
}

#[test]
fn repeated_scalars_nulls_and_missing() {
    let enc = encoder(vec![
        Field::new("tags", Kind::String).with_mode(Mode::Repeated),
        Field::new("n", Kind::Int64).with_mode(Mode::Repeated),
        Field::new("opt", Kind::String),
    ]);
    let m = decode(&enc, r#"{"tags":["a","","c"],"n":[1,-2,"3"],"opt":null}"#);
    assert_eq!(
        get(&m, "tags").as_list().unwrap(),
        &[
            PValue::String("a".into()),
            PValue::String("".into()),
            PValue::String("c".into())
        ]
    );
    assert_eq!(
        get(&m, "n").as_list().unwrap(),
        &[PValue::I64(1), PValue::I64(-2), PValue::I64(3)]
    );
    assert!(!m.has_field_by_name("opt"));
    // null, missing and empty repeated fields are all empty.
    for row in [r#"{"tags":null}"#, "{}", r#"{"tags":[]}"#] {
        let m = decode(&enc, row);
        assert!(!m.has_field_by_name("tags"), "{row}");
        assert!(!m.has_field_by_name("opt"), "{row}");
    }
    assert_eq!(
        error(&enc, r#"{"n":[1,null]}"#),
        "n[1]: null inside an array (BigQuery arrays cannot hold NULL elements)"
    );
    assert!(error(&enc, r#"{"tags":"a"}"#).starts_with("tags: expected an array"));
    assert!(error(&enc, r#"{"n":[1,"x"]}"#).starts_with("n[1]: \"x\" is not a valid INT64"));
}

#[test]
fn required_columns_must_be_present() {
    let enc = encoder(vec![
        Field::new("id", Kind::String).with_mode(Mode::Required),
        Field::record(
            "r",
            vec![Field::new("x", Kind::Int64).with_mode(Mode::Required)],
        ),
    ]);
    assert_eq!(get(&decode(&enc, r#"{"id":""}"#), "id").as_str(), Some(""));
    assert_eq!(error(&enc, "{}"), "id: required column is missing");
    assert_eq!(error(&enc, r#"{"id":null}"#), "id: required column is null");
    assert_eq!(
        error(&enc, r#"{"id":"a","r":{}}"#),
        "r.x: required column is missing"
    );
    // A NULL record does not make its required sub-columns missing.
    assert!(!decode(&enc, r#"{"id":"a","r":null}"#).has_field_by_name("r"));
}

#[test]
fn unknown_fields_fail_unless_ignored() {
    let fields = vec![
        Field::new("a", Kind::Int64),
        Field::record("r", vec![Field::new("x", Kind::Int64)]),
    ];
    let strict = encoder(fields.clone());
    assert_eq!(error(&strict, r#"{"a":1,"b":2}"#), "no such field: b");
    assert_eq!(
        error(&strict, r#"{"r":{"x":1,"y":{"z":[1]}}}"#),
        "no such field: r.y"
    );
    let lenient = Encoder::new(
        fields,
        Options {
            ignore_unknown_values: true,
            ..Options::default()
        },
    )
    .unwrap();
    let m = decode(
        &lenient,
        r#"{"b":{"deep":[1,2]},"a":1,"r":{"y":"x","x":2},"c":null}"#,
    );
    assert_eq!(get(&m, "a"), PValue::I64(1));
    assert_eq!(get(get(&m, "r").as_message().unwrap(), "x"), PValue::I64(2));
}

/// A row known to be valid JSON skips unknown values without validating them: the bytes out,
/// and the errors, are the same as the checking path's for every kind of skipped value
/// (strings holding brackets, quotes and escapes; nested containers; spaced JSON).
#[test]
fn rows_known_valid_encode_to_the_same_bytes() {
    let lenient = Encoder::new(
        vec![
            Field::new("a", Kind::Int64),
            Field::record("r", vec![Field::new("x", Kind::String)]),
        ],
        Options {
            ignore_unknown_values: true,
            ..Options::default()
        },
    )
    .unwrap();
    for row in [
        r#"{"u":"}]\"{[","a":1}"#,
        r#"{"u":{"v":[1,{"w":"x\\"}],"z":[]},"a":2,"r":{"q":[[["]"]]],"x":"s"}}"#,
        r#"{ "u" : [ 1 , true , null , -2.5e3 ] , "a" : 3 , "t" : "\u00e9\ud83d\ude00" }"#,
        r#"{"a":4,"u":"tail"}"#,
        r#"{"r":{"x":"only","u":{}},"u2":false}"#,
        r#"{"u":[{"a":"not a number"}],"a":"five"}"#,
        r#"{"r":{"x":1},"u":1}"#,
    ] {
        let (mut checked, mut valid) = (Vec::new(), Vec::new());
        let c = lenient.try_encode_delimited(row.as_bytes(), &mut checked);
        let v = lenient.try_encode_delimited_valid(row.as_bytes(), &mut valid);
        assert_eq!(
            c.map_err(|e| e.to_string()),
            v.map_err(|e| e.to_string()),
            "{row}"
        );
        assert_eq!(checked, valid, "{row}");
    }
}

#[test]
fn keys_match_columns_case_insensitively() {
    let enc = encoder(vec![
        Field::new("userId", Kind::Int64),
        Field::record("Outer", vec![Field::new("inner_value", Kind::String)]),
    ]);
    for key in ["userId", "userid", "USERID", "UserId"] {
        let m = decode(&enc, &format!(r#"{{"{key}":5}}"#));
        assert_eq!(get(&m, "userId"), PValue::I64(5), "{key}");
    }
    let m = decode(&enc, r#"{"outer":{"INNER_VALUE":"v"}}"#);
    assert_eq!(
        get(get(&m, "Outer").as_message().unwrap(), "inner_value").as_str(),
        Some("v")
    );
    // Escaped keys are matched by their value.
    let m = decode(&enc, r#"{"user\u0049d":6}"#);
    assert_eq!(get(&m, "userId"), PValue::I64(6));
    let e = error(&enc, r#"{"userid":1,"USERID":2}"#);
    assert!(
        e.starts_with("USERID: the key appears more than once"),
        "{e}"
    );
    // Non-ASCII case folding does not apply (column names are ASCII).
    assert_eq!(error(&enc, r#"{"userİd":1}"#), r#"no such field: "userİd""#);
    assert_eq!(error(&enc, r#"{"":1}"#), r#"no such field: """#);
    assert_eq!(
        error(&enc, r#"{"Outer":{"a.b \"c\"":1}}"#),
        r#"no such field: Outer."a.b \"c\"""#
    );
}

#[test]
fn string_geography_and_json() {
    assert_eq!(
        one(Kind::String, r#""héllo \"q\" \n""#).as_str(),
        Some("héllo \"q\" \n")
    );
    assert_eq!(one(Kind::String, "12.50").as_str(), Some("12.50"));
    assert_eq!(one(Kind::String, "true").as_str(), Some("true"));
    assert!(one_err(Kind::String, "{}")
        .starts_with("v: expected a string (the column is STRING), found an object"));
    assert!(one_err(Kind::String, "[1]").contains("found an array"));

    assert_eq!(
        one(Kind::Geography, r#""POINT(1 2)""#).as_str(),
        Some("POINT(1 2)")
    );
    assert_eq!(
        one(
            Kind::Geography,
            r#"{"type": "Point", "coordinates": [1, 2]}"#
        )
        .as_str(),
        Some(r#"{"type": "Point", "coordinates": [1, 2]}"#)
    );
    assert!(one_err(Kind::Geography, "5").contains("GEOGRAPHY"));

    // JSON: the value's own text, including big numbers and string quotes.
    assert_eq!(
        one(
            Kind::Json,
            r#"{"a":[1,2.50,123456789012345678901234567890]}"#
        )
        .as_str(),
        Some(r#"{"a":[1,2.50,123456789012345678901234567890]}"#)
    );
    assert_eq!(one(Kind::Json, r#""text""#).as_str(), Some(r#""text""#));
    assert_eq!(
        one(Kind::Json, r#""{\"a\":1}""#).as_str(),
        Some(r#""{\"a\":1}""#)
    );
    assert_eq!(one(Kind::Json, "[]").as_str(), Some("[]"));
    assert_eq!(one(Kind::Json, "false").as_str(), Some("false"));
    assert_eq!(one(Kind::Json, "  -1e5 ").as_str(), Some("-1e5"));
    assert!(!decode(&single(Kind::Json), r#"{"v":null}"#).has_field_by_name("v"));
}

#[test]
fn int64_forms_and_errors() {
    assert_eq!(one(Kind::Int64, "123"), PValue::I64(123));
    assert_eq!(one(Kind::Int64, "-5"), PValue::I64(-5));
    assert_eq!(one(Kind::Int64, r#""-5""#), PValue::I64(-5));
    assert_eq!(one(Kind::Int64, r#""+42""#), PValue::I64(42));
    assert_eq!(
        one(Kind::Int64, "9007199254740993"),
        PValue::I64(9_007_199_254_740_993)
    );
    assert_eq!(
        one(Kind::Int64, "9223372036854775807"),
        PValue::I64(i64::MAX)
    );
    assert_eq!(
        one(Kind::Int64, "-9223372036854775808"),
        PValue::I64(i64::MIN)
    );
    assert_eq!(one(Kind::Int64, "1.0"), PValue::I64(1));
    assert_eq!(one(Kind::Int64, "1e3"), PValue::I64(1000));
    assert_eq!(one(Kind::Int64, "12.5e1"), PValue::I64(125));
    assert_eq!(one(Kind::Int64, "0e99999999999999999999"), PValue::I64(0));
    assert_eq!(
        one_err(Kind::Int64, "1.5"),
        "v: 1.5 is not a valid INT64: has a fractional part"
    );
    assert!(one_err(Kind::Int64, "9223372036854775808").contains("out of range"));
    assert!(one_err(Kind::Int64, "-9223372036854775809").contains("out of range"));
    assert!(one_err(Kind::Int64, "1e30").contains("out of range"));
    assert!(one_err(Kind::Int64, "1e99999999999999999999").contains("out of range"));
    assert_eq!(
        one_err(Kind::Int64, r#""12a""#),
        r#"v: "12a" is not a valid INT64: not an integer"#
    );
    assert!(one_err(Kind::Int64, r#""""#).contains("not an integer"));
    assert!(one_err(Kind::Int64, r#"" 1""#).contains("not an integer"));
    assert!(one_err(Kind::Int64, "true")
        .contains("expected an integer (the column is INT64), found `true`"));
}

#[test]
fn float64_forms_and_errors() {
    assert_eq!(one(Kind::Float64, "1.25"), PValue::F64(1.25));
    assert_eq!(one(Kind::Float64, "-3"), PValue::F64(-3.0));
    assert_eq!(one(Kind::Float64, "1e-3"), PValue::F64(0.001));
    assert_eq!(one(Kind::Float64, r#""2.5""#), PValue::F64(2.5));
    assert_eq!(one(Kind::Float64, r#""5.""#), PValue::F64(5.0));
    assert_eq!(one(Kind::Float64, r#"".5""#), PValue::F64(0.5));
    assert!(one(Kind::Float64, r#""NaN""#).as_f64().unwrap().is_nan());
    assert_eq!(
        one(Kind::Float64, r#""Infinity""#),
        PValue::F64(f64::INFINITY)
    );
    assert_eq!(
        one(Kind::Float64, r#""-Infinity""#),
        PValue::F64(f64::NEG_INFINITY)
    );
    assert_eq!(
        one(Kind::Float64, r#""-inf""#),
        PValue::F64(f64::NEG_INFINITY)
    );
    assert!(one_err(Kind::Float64, "1e400").contains("out of range for FLOAT64"));
    assert!(one_err(Kind::Float64, r#""1,5""#)
        .starts_with(r#"v: "1,5" is not a valid FLOAT64: not a number"#));
    assert!(one_err(Kind::Float64, r#""0x10""#).contains("not a number"));
    assert!(one_err(Kind::Float64, "[1.0]").contains("expected a number"));
}

#[test]
fn bool_forms_and_errors() {
    assert_eq!(one(Kind::Bool, "true"), PValue::Bool(true));
    assert_eq!(one(Kind::Bool, "false"), PValue::Bool(false));
    assert_eq!(one(Kind::Bool, r#""TRUE""#), PValue::Bool(true));
    assert_eq!(one(Kind::Bool, r#""False""#), PValue::Bool(false));
    assert_eq!(
        one_err(Kind::Bool, r#""yes""#),
        r#"v: "yes" is not a valid BOOL: expected true or false"#
    );
    assert!(one_err(Kind::Bool, "1")
        .contains("expected true or false (the column is BOOL), found the number 1"));
}

#[test]
fn bytes_from_base64_with_or_without_padding() {
    assert_eq!(
        one(Kind::Bytes, r#""aGVsbG8=""#)
            .as_bytes()
            .unwrap()
            .as_ref(),
        b"hello"
    );
    assert_eq!(
        one(Kind::Bytes, r#""aGVsbG8""#)
            .as_bytes()
            .unwrap()
            .as_ref(),
        b"hello"
    );
    assert_eq!(
        one(Kind::Bytes, r#""aGk=""#).as_bytes().unwrap().as_ref(),
        b"hi"
    );
    assert_eq!(
        one(Kind::Bytes, r#""AAECAwT/+A==""#)
            .as_bytes()
            .unwrap()
            .as_ref(),
        &[0, 1, 2, 3, 4, 255, 248]
    );
    assert_eq!(one(Kind::Bytes, r#""""#).as_bytes().unwrap().as_ref(), b"");
    let long = vec![7u8; 1000];
    let encoded = base64::engine::general_purpose::STANDARD.encode(&long);
    assert_eq!(
        one(Kind::Bytes, &format!("\"{encoded}\""))
            .as_bytes()
            .unwrap()
            .as_ref(),
        long
    );
    for bad in [
        r#""a""#,
        r#""aGVsbG8===""#,
        r#""aGV!bG8=""#,
        r#""aGVs-G8_""#,
        r#""aGk=aGk=""#,
    ] {
        assert!(
            one_err(Kind::Bytes, bad).contains("is not a valid BYTES: expected standard base64"),
            "{bad}"
        );
    }
    assert!(one_err(Kind::Bytes, "12").contains("expected a base64 string"));
}

#[test]
fn timestamp_forms() {
    const T: i64 = 1_704_164_645_000_000; // 2024-01-02T03:04:05Z
    let cases = [
        (r#""2024-01-02T03:04:05Z""#, T),
        (r#""2024-01-02T03:04:05.123456Z""#, T + 123_456),
        (r#""2024-01-02t03:04:05.1z""#, T + 100_000),
        (r#""2024-01-02T03:04:05.123456789Z""#, T + 123_456),
        (r#""2024-01-02T04:04:05+01:00""#, T),
        (r#""2024-01-01T22:04:05.5-05:00""#, T + 500_000),
        (r#""2024-01-02T04:34:05+0130""#, T),
        (r#""2024-01-02T05:04:05+02""#, T),
        (r#""2024-01-02 03:04:05""#, T),
        (r#""2024-01-02 03:04:05 UTC""#, T),
        (r#""2024-01-02 03:04:05.000001 utc""#, T + 1),
        (r#""2024-01-02 03:04:05 +00:00""#, T),
        (r#""2024-1-2 3:04:05""#, T),
        ("1704164645", T),
        ("1704164645.123456", T + 123_456),
        ("1704164645.1234569", T + 123_456),
        ("1.704164645e9", T),
        (r#""1704164645.5""#, T + 500_000),
        ("-1.5", -1_500_000),
        ("-0.0000001", -1),
        ("0", 0),
        (r#""0001-01-01 00:00:00""#, MIN_MICROS),
        (r#""9999-12-31T23:59:59.999999Z""#, MAX_MICROS),
    ];
    for (json, micros) in cases {
        assert_eq!(one(Kind::Timestamp, json), PValue::I64(micros), "{json}");
    }
}

#[test]
fn timestamp_errors() {
    let cases = [
        (r#""2024-01-02""#, "a date without a time of day"),
        (r#""2024-01-02T03:04""#, "expected YYYY-MM-DD HH:MM:SS"),
        (r#""2024-02-30T00:00:00Z""#, "no such day in the calendar"),
        (r#""2024-01-02T24:00:00Z""#, "no such time of day"),
        (r#""2024-01-02T23:59:60Z""#, "no such time of day"),
        (
            r#""2024-01-02T03:04:05 Europe/Paris""#,
            "expected YYYY-MM-DD HH:MM:SS",
        ),
        (r#""2024-01-02T03:04:05+25:00""#, "offset out of range"),
        (
            r#""2024-01-02T03:04:05.1234567890Z""#,
            "expected YYYY-MM-DD HH:MM:SS",
        ),
        (r#""2024-01-02T03:04:05Z ""#, "expected YYYY-MM-DD HH:MM:SS"),
        (r#""2024-01-02T03:04:05 ""#, "expected YYYY-MM-DD HH:MM:SS"),
        (r#""0001-01-01T00:00:00+01:00""#, "out of range"),
        (r#""yesterday""#, "expected YYYY-MM-DD HH:MM:SS"),
        ("1e12", "out of range"),
        ("-1e300", "out of range"),
    ];
    for (json, reason) in cases {
        let e = one_err(Kind::Timestamp, json);
        assert!(
            e.starts_with(&format!("v: {json} is not a valid TIMESTAMP: ")),
            "{e}"
        );
        assert!(e.contains(reason), "{json}: {e}");
    }
    assert!(
        one_err(Kind::Timestamp, "true").contains("expected a timestamp string or epoch seconds")
    );
}

#[test]
fn date_forms_and_errors() {
    assert_eq!(one(Kind::Date, r#""1970-01-01""#), PValue::I32(0));
    assert_eq!(one(Kind::Date, r#""2024-01-02""#), PValue::I32(19_724));
    assert_eq!(one(Kind::Date, r#""2024-1-2""#), PValue::I32(19_724));
    assert_eq!(one(Kind::Date, r#""1969-12-31""#), PValue::I32(-1));
    assert_eq!(one(Kind::Date, r#""0001-01-01""#), PValue::I32(-719_162));
    assert_eq!(one(Kind::Date, r#""9999-12-31""#), PValue::I32(2_932_896));
    assert!(one_err(Kind::Date, r#""2023-02-29""#).contains("no such day in the calendar"));
    assert!(one_err(Kind::Date, r#""0000-01-01""#).contains("out of range"));
    assert!(one_err(Kind::Date, r#""2024-01-02T00:00:00""#).ends_with("expected YYYY-MM-DD"));
    assert!(one_err(Kind::Date, r#""20240102""#).ends_with("expected YYYY-MM-DD"));
    assert!(one_err(Kind::Date, "19724").contains("expected a YYYY-MM-DD string"));
}

#[test]
fn datetime_is_validated_and_normalised() {
    let cases = [
        (r#""2024-01-02 03:04:05""#, "2024-01-02 03:04:05"),
        (r#""2024-01-02T03:04:05""#, "2024-01-02 03:04:05"),
        (r#""2024-1-2T3:4:5.25""#, "2024-01-02 03:04:05.25"),
        (
            r#""2024-01-02T03:04:05.123456""#,
            "2024-01-02 03:04:05.123456",
        ),
        (
            r#""2024-01-02T03:04:05.123456789""#,
            "2024-01-02 03:04:05.123456",
        ),
    ];
    for (json, text) in cases {
        assert_eq!(one(Kind::DateTime, json).as_str(), Some(text), "{json}");
    }
    assert!(one_err(Kind::DateTime, r#""2024-01-02T03:04:05Z""#).contains("no time zone"));
    assert!(one_err(Kind::DateTime, r#""2024-01-02""#).contains("expected YYYY-MM-DD HH:MM:SS"));
    assert!(one_err(Kind::DateTime, r#""2024-13-02 00:00:00""#).contains("no such day"));
    assert!(one_err(Kind::DateTime, "0").contains("expected a YYYY-MM-DD HH:MM:SS string"));
}

#[test]
fn time_is_validated_and_normalised() {
    assert_eq!(one(Kind::Time, r#""03:04:05""#).as_str(), Some("03:04:05"));
    assert_eq!(
        one(Kind::Time, r#""3:04:05.5""#).as_str(),
        Some("03:04:05.5")
    );
    assert_eq!(
        one(Kind::Time, r#""23:59:59.999999""#).as_str(),
        Some("23:59:59.999999")
    );
    assert!(one_err(Kind::Time, r#""24:00:00""#).contains("no such time of day"));
    assert!(one_err(Kind::Time, r#""03:04""#).contains("expected HH:MM:SS"));
    assert!(one_err(Kind::Time, r#""03:04:05Z""#).contains("expected HH:MM:SS"));
    assert!(one_err(Kind::Time, "{}").contains("expected an HH:MM:SS string"));
}

#[test]
fn numeric_text_is_preserved_exactly() {
    for kind in [Kind::Numeric, Kind::BigNumeric] {
        for json in [
            "123456789012345678901234567.123456789",
            "-0.000000001",
            "1.5E+3",
            "0",
            "1e-400",
        ] {
            assert_eq!(one(kind, json).as_str(), Some(json), "{kind:?} {json}");
        }
        assert_eq!(one(kind, r#""-12.50""#).as_str(), Some("-12.50"));
        assert_eq!(one(kind, r#"".5""#).as_str(), Some(".5"));
        assert!(one_err(kind, r#""12,5""#).contains("not a decimal number"));
        assert!(one_err(kind, r#""NaN""#).contains("not a decimal number"));
        assert!(one_err(kind, "true").contains("expected a decimal number"));
    }
    let big = "12345678901234567890123456789012345678.12345678901234567890123456789012345678";
    assert_eq!(one(Kind::BigNumeric, big).as_str(), Some(big));
    assert!(one_err(Kind::Numeric, big).contains("out of range (at most 29 digits"));
    assert_eq!(
        one(Kind::Numeric, "99999999999999999999999999999.999999999").as_str(),
        Some("99999999999999999999999999999.999999999")
    );
    assert!(one_err(Kind::Numeric, "1e29").contains("out of range"));
    assert!(one_err(Kind::BigNumeric, "1e39").contains("out of range"));
    assert!(one_err(Kind::BigNumeric, "1e999999999999999999999").contains("out of range"));
}

#[test]
fn whole_row_problems() {
    let enc = single(Kind::Int64);
    assert_eq!(error(&enc, "[1]"), "row is an array, not a JSON object");
    assert_eq!(error(&enc, r#""x""#), "row is a string, not a JSON object");
    assert_eq!(error(&enc, "null"), "row is null, not a JSON object");
    assert!(error(&enc, "").starts_with("row is not valid JSON"));
    assert!(error(&enc, r#"{"v":1"#).starts_with("row is not valid JSON"));
    assert!(error(&enc, r#"{"v":1} x"#).starts_with("row is not valid JSON"));
    assert!(error(&enc, r#"{"v":01}"#).starts_with("row is not valid JSON"));
    let mut out = vec![1, 2, 3];
    let e = enc.encode(b"{\"v\":\"\xff\"}", &mut out).unwrap_err();
    assert_eq!(e, "row is not valid UTF-8 (invalid byte at offset 6)");
    assert_eq!(out, [1, 2, 3]);
    // Whitespace around the object is fine.
    assert_eq!(get(&decode(&enc, " \n{\"v\" : 1 }\n"), "v"), PValue::I64(1));
}

#[test]
fn rows_append_and_failed_rows_leave_nothing() {
    let enc = encoder(vec![
        Field::new("a", Kind::Int64),
        Field::record("r", vec![Field::new("s", Kind::String)]).with_mode(Mode::Repeated),
    ]);
    let mut out = Vec::new();
    enc.encode(br#"{"a":1}"#, &mut out).unwrap();
    let first = out.len();
    // Fails after writing `a` and part of `r`.
    let e = enc
        .encode(br#"{"a":2,"r":[{"s":"ok"},{"s":{}}]}"#, &mut out)
        .unwrap_err();
    assert!(e.starts_with("r[1].s: expected a string"), "{e}");
    assert_eq!(out.len(), first);
    let second_start = out.len();
    enc.encode(br#"{"a":3}"#, &mut out).unwrap();
    let desc = row_descriptor(&enc);
    let m1 = DynamicMessage::decode(desc.clone(), &out[..first]).unwrap();
    let m2 = DynamicMessage::decode(desc, &out[second_start..]).unwrap();
    assert_eq!(get(&m1, "a"), PValue::I64(1));
    assert_eq!(get(&m2, "a"), PValue::I64(3));
}

#[test]
fn long_nested_messages_get_multi_byte_lengths() {
    let enc = encoder(vec![
        Field::record(
            "r",
            vec![Field::new("s", Kind::String), Field::new("n", Kind::Int64)],
        ),
        Field::new("after", Kind::Int64),
    ]);
    for len in [0, 100, 125, 126, 127, 200, 20_000, 3_000_000] {
        let s = "x".repeat(len);
        let m = decode(&enc, &format!(r#"{{"r":{{"s":"{s}","n":1}},"after":2}}"#));
        let r = get(&m, "r");
        assert_eq!(
            get(r.as_message().unwrap(), "s").as_str().map(str::len),
            Some(len)
        );
        assert_eq!(get(&m, "after"), PValue::I64(2));
    }
    // An empty record is present but empty.
    let m = decode(&enc, r#"{"r":{}}"#);
    assert!(m.has_field_by_name("r"));
}

#[test]
fn schema_errors() {
    let opts = Options::default;
    let new = |fields| Encoder::new(fields, opts()).unwrap_err();
    assert_eq!(new(vec![]), "the table schema has no columns");
    assert!(new(vec![Field::new("a-b", Kind::String)])
        .contains("column `a-b`: the name is not usable in protobuf"));
    assert!(new(vec![Field::new("1a", Kind::String)]).contains("not usable"));
    assert!(new(vec![Field::new("", Kind::String)]).contains("not usable"));
    assert!(new(vec![Field::record(
        "r",
        vec![Field::new("naïve", Kind::String)]
    )])
    .contains("column `r.naïve`"));
    assert_eq!(
        new(vec![Field::record("r", vec![])]),
        "RECORD column `r` has no columns"
    );
    assert!(new(vec![
        Field::new("a", Kind::String),
        Field::new("A", Kind::Int64)
    ])
    .contains("two columns named `a` and `A`"));
    let mut scalar_with_fields = Field::new("s", Kind::String);
    scalar_with_fields
        .fields
        .push(Field::new("x", Kind::String));
    assert!(new(vec![scalar_with_fields]).contains("only RECORD columns have sub-fields"));
    let mut deep = Field::new("leaf", Kind::Int64);
    for _ in 0..MAX_DEPTH + 1 {
        deep = Field::record("r", vec![deep]);
    }
    assert!(new(vec![deep]).contains("nested more than"));
    // 15 levels, BigQuery's limit, are fine.
    let mut ok = Field::new("leaf", Kind::Int64);
    for _ in 0..15 {
        ok = Field::record("r", vec![ok]);
    }
    let enc = encoder(vec![ok]);
    let json = format!(
        "{}{}{}",
        r#"{"r":"#.repeat(15),
        r#"{"leaf":9}"#,
        "}".repeat(15)
    );
    let mut m = decode(&enc, &json);
    for _ in 0..15 {
        let next = get(&m, "r").as_message().unwrap().clone();
        m = next;
    }
    assert_eq!(get(&m, "leaf"), PValue::I64(9));
}

#[test]
fn from_rest_converts_types_and_modes() {
    let json = r#"{"fields": [
            {"name": "s", "type": "STRING"},
            {"name": "i", "type": "INTEGER", "mode": "REQUIRED"},
            {"name": "i2", "type": "INT64"},
            {"name": "f", "type": "FLOAT", "mode": "REPEATED"},
            {"name": "f2", "type": "FLOAT64"},
            {"name": "b", "type": "BOOLEAN", "mode": "NULLABLE"},
            {"name": "b2", "type": "BOOL"},
            {"name": "by", "type": "BYTES"},
            {"name": "ts", "type": "TIMESTAMP"},
            {"name": "d", "type": "DATE"},
            {"name": "t", "type": "TIME"},
            {"name": "dt", "type": "DATETIME"},
            {"name": "n", "type": "NUMERIC"},
            {"name": "bn", "type": "BIGNUMERIC"},
            {"name": "j", "type": "JSON"},
            {"name": "g", "type": "GEOGRAPHY"},
            {"name": "r", "type": "RECORD", "mode": "repeated", "fields": [
                {"name": "x", "type": "STRUCT", "fields": [{"name": "y", "type": "STRING"}]}
            ]}
        ]}"#;
    let schema: gcp_bigquery_client::model::table_schema::TableSchema =
        serde_json::from_str(json).unwrap();
    let fields: Vec<Field> = schema
        .fields
        .unwrap()
        .iter()
        .map(|f| Field::from_rest(f).unwrap())
        .collect();
    let kinds: Vec<(Kind, Mode)> = fields.iter().map(|f| (f.kind, f.mode)).collect();
    use Kind as K;
    use Mode as M;
    assert_eq!(
        kinds,
        [
            (K::String, M::Nullable),
            (K::Int64, M::Required),
            (K::Int64, M::Nullable),
            (K::Float64, M::Repeated),
            (K::Float64, M::Nullable),
            (K::Bool, M::Nullable),
            (K::Bool, M::Nullable),
            (K::Bytes, M::Nullable),
            (K::Timestamp, M::Nullable),
            (K::Date, M::Nullable),
            (K::Time, M::Nullable),
            (K::DateTime, M::Nullable),
            (K::Numeric, M::Nullable),
            (K::BigNumeric, M::Nullable),
            (K::Json, M::Nullable),
            (K::Geography, M::Nullable),
            (K::Record, M::Repeated),
        ]
    );
    assert_eq!(
        fields[16].fields,
        [Field::record("x", vec![Field::new("y", K::String)])]
    );
    encoder(fields);

    let mut interval = RestField::new("r", FieldType::Record);
    interval.fields = Some(vec![RestField::new("span", FieldType::Interval)]);
    assert_eq!(
        Field::from_rest(&interval).unwrap_err(),
        "column `r.span`: type INTERVAL is not supported by the Storage Write encoder"
    );
    let mut bad_mode = RestField::new("m", FieldType::String);
    bad_mode.mode = Some("OPTIONAL".into());
    assert!(Field::from_rest(&bad_mode)
        .unwrap_err()
        .contains("unknown mode `OPTIONAL`"));
}

#[test]
fn from_storage_converts_types_and_modes() {
    let field = |name: &str, ty: StorageType, mode: StorageMode, fields| StorageField {
        name: name.into(),
        r#type: ty as i32,
        mode: mode as i32,
        fields,
        ..Default::default()
    };
    use StorageMode as M;
    use StorageType as T;
    let cases = [
        (T::String, Kind::String),
        (T::Int64, Kind::Int64),
        (T::Double, Kind::Float64),
        (T::Bytes, Kind::Bytes),
        (T::Bool, Kind::Bool),
        (T::Timestamp, Kind::Timestamp),
        (T::Date, Kind::Date),
        (T::Time, Kind::Time),
        (T::Datetime, Kind::DateTime),
        (T::Geography, Kind::Geography),
        (T::Numeric, Kind::Numeric),
        (T::Bignumeric, Kind::BigNumeric),
        (T::Json, Kind::Json),
    ];
    for (ty, kind) in cases {
        assert_eq!(
            Field::from_storage(&field("c", ty, M::Nullable, vec![])).unwrap(),
            Field::new("c", kind)
        );
    }
    assert_eq!(
        Field::from_storage(&field("c", T::String, M::Unspecified, vec![]))
            .unwrap()
            .mode,
        Mode::Nullable
    );
    assert_eq!(
        Field::from_storage(&field("c", T::String, M::Required, vec![]))
            .unwrap()
            .mode,
        Mode::Required
    );
    let record = field(
        "r",
        T::Struct,
        M::Repeated,
        vec![field("x", T::Int64, M::Required, vec![])],
    );
    assert_eq!(
        Field::from_storage(&record).unwrap(),
        Field::record(
            "r",
            vec![Field::new("x", Kind::Int64).with_mode(Mode::Required)]
        )
        .with_mode(Mode::Repeated)
    );
    let range = field(
        "r",
        T::Struct,
        M::Nullable,
        vec![field("when", T::Range, M::Nullable, vec![])],
    );
    assert_eq!(
        Field::from_storage(&range).unwrap_err(),
        "column `r.when`: type RANGE is not supported by the Storage Write encoder"
    );
    assert!(
        Field::from_storage(&field("i", T::Interval, M::Nullable, vec![]))
            .unwrap_err()
            .contains("INTERVAL")
    );
    assert!(
        Field::from_storage(&field("u", T::Unspecified, M::Nullable, vec![]))
            .unwrap_err()
            .contains("unknown column type")
    );
    let mut odd = field("o", T::String, M::Nullable, vec![]);
    odd.mode = 99;
    assert!(Field::from_storage(&odd)
        .unwrap_err()
        .contains("unknown column mode (code 99)"));
}

/// Mutated rows must give `Ok` or `Err`, never a panic, and a failure must leave `out`
/// unchanged.
#[test]
fn no_panics_on_mangled_rows() {
    let enc = Encoder::new(
        vec![
            Field::new("s", Kind::String),
            Field::new("i", Kind::Int64).with_mode(Mode::Repeated),
            Field::new("f", Kind::Float64),
            Field::new("b", Kind::Bool),
            Field::new("by", Kind::Bytes),
            Field::new("ts", Kind::Timestamp),
            Field::new("d", Kind::Date),
            Field::new("t", Kind::Time),
            Field::new("dt", Kind::DateTime),
            Field::new("n", Kind::Numeric),
            Field::new("j", Kind::Json),
            Field::record(
                "r",
                vec![
                    Field::new("x", Kind::BigNumeric),
                    Field::new("g", Kind::Geography),
                ],
            ),
        ],
        Options::default(),
    )
    .unwrap();
    let seed = br#"{"s":"a\u00e9b","i":[1,"2",3e2],"f":"-1.5e3","b":"TRUE","by":"aGk=","ts":"2024-01-02 03:04:05.123+01:00","d":"2024-01-02","t":"01:02:03.4","dt":"2024-01-02T01:02:03","n":"1.25","j":{"k":[null]},"r":{"x":1e3,"g":"POINT(1 2)"}}"#;
    let descriptor = row_descriptor(&enc);
    let mut out = Vec::new();
    enc.encode(seed, &mut out).unwrap();
    DynamicMessage::decode(descriptor.clone(), out.as_slice()).unwrap();
    let alphabet = b"{}[]\":,.-+eE0123456789 \\uTZtfn:aA=/x\xc3\xa9\xff";
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..20_000 {
        let mut row = seed.to_vec();
        for _ in 0..1 + next() % 3 {
            let at = (next() % row.len() as u64) as usize;
            let b = alphabet[(next() % alphabet.len() as u64) as usize];
            match next() % 3 {
                0 => row[at] = b,
                1 => row.insert(at, b),
                _ => {
                    row.remove(at);
                }
            }
        }
        let mut out = vec![9];
        let encoded = enc.encode(&row, &mut out);
        match &encoded {
            Ok(()) => {
                DynamicMessage::decode(descriptor.clone(), &out[1..]).expect("valid protobuf");
            }
            Err(e) => {
                assert_eq!(out, [9]);
                assert!(!e.is_empty());
            }
        }
        // The one-pass scanner accepts no row that serde_json refuses.
        if serde_json::from_slice::<serde_json::Value>(&row).is_err() {
            assert!(encoded.is_err(), "{}", String::from_utf8_lossy(&row));
        }
        // The framed form is the same message behind its `serialized_rows` key and length.
        let mut framed = vec![7];
        match enc.encode_delimited(&row, &mut framed) {
            Ok(len) => {
                assert!(encoded.is_ok());
                assert_eq!(len, out.len() - 1);
                let rows = ProtoRowsShape::decode(&framed[1..]).expect("ProtoRows");
                assert_eq!(rows.serialized_rows, vec![out[1..].to_vec()]);
            }
            Err(e) => {
                assert_eq!(framed, [7]);
                assert_eq!(Err(e), encoded);
            }
        }
    }
}

/// `ProtoRows` as Google declares it (`repeated bytes serialized_rows = 1`), decoded by
/// prost independently of the encoder.
#[derive(Clone, PartialEq, prost::Message)]
struct ProtoRowsShape {
    #[prost(bytes = "vec", repeated, tag = "1")]
    serialized_rows: Vec<Vec<u8>>,
}

#[test]
fn delimited_rows_make_one_proto_rows_message() {
    let enc = encoder(vec![
        Field::new("s", Kind::String),
        Field::new("n", Kind::Int64),
    ]);
    let mut batch = Vec::new();
    let mut want = Vec::new();
    // Lengths around every varint width the framing fixes up (1, 2 and 3 bytes).
    for len in [0, 100, 124, 125, 126, 16_370, 16_380, 16_400, 3_000_000] {
        let row = format!(r#"{{"s":"{}","n":{len}}}"#, "x".repeat(len));
        let mut alone = Vec::new();
        enc.encode(row.as_bytes(), &mut alone).unwrap();
        let n = enc.encode_delimited(row.as_bytes(), &mut batch).unwrap();
        assert_eq!(n, alone.len());
        want.push(alone);
    }
    // A refused row leaves the batch as it was.
    let before = batch.len();
    assert!(enc.encode_delimited(br#"{"n":"x"}"#, &mut batch).is_err());
    assert_eq!(batch.len(), before);
    let rows = ProtoRowsShape::decode(batch.as_slice()).unwrap();
    assert_eq!(rows.serialized_rows, want);
    let m = DynamicMessage::decode(row_descriptor(&enc), want[2].as_slice()).unwrap();
    assert_eq!(get(&m, "n"), PValue::I64(124));
}

#[test]
fn key_order_does_not_change_the_message() {
    let enc = encoder(vec![
        Field::new("a", Kind::Int64).with_mode(Mode::Required),
        Field::record(
            "r",
            vec![Field::new("x", Kind::String), Field::new("y", Kind::Bool)],
        ),
        Field::new("t", Kind::String).with_mode(Mode::Repeated),
    ]);
    let a = decode(&enc, r#"{"a":1,"r":{"x":"q","y":true},"t":["u","v"]}"#);
    let b = decode(&enc, r#"{"t":["u","v"],"r":{"y":true,"x":"q"},"a":1}"#);
    // prost-reflect writes fields in number order: equal bytes, equal messages.
    assert_eq!(a.encode_to_vec(), b.encode_to_vec());
    assert_eq!(get(&b, "t"), get(&a, "t"));
    assert_eq!(
        error(&enc, r#"{"t":[],"r":{}}"#),
        "a: required column is missing"
    );
}

/// Unknown values are skipped without recursion: any depth is fine when they are ignored.
#[test]
fn deeply_nested_unknown_values_are_skipped() {
    let enc = Encoder::new(
        vec![Field::new("a", Kind::Int64)],
        Options {
            ignore_unknown_values: true,
            ..Options::default()
        },
    )
    .unwrap();
    let deep = format!(
        r#"{{"z":{}1{},"a":5}}"#,
        "[{\"k\":".repeat(50_000),
        "}]".repeat(50_000)
    );
    assert_eq!(get(&decode(&enc, &deep), "a"), PValue::I64(5));
    let cut = format!(r#"{{"z":{}1,"a":5}}"#, "[".repeat(50_000));
    assert!(error(&enc, &cut).starts_with("row is not valid JSON"));
}

#[test]
fn encoder_is_shareable_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Encoder>();
}

#[test]
fn descriptor_message_name() {
    let enc = single(Kind::String);
    assert_eq!(row_descriptor(&enc).full_name(), "Row");
    let m = decode(&enc, r#"{"v":"x"}"#);
    assert_eq!(m.descriptor().name(), "Row");
}

#[test]
fn unknown_fields_are_typed_and_empty_ones_are_skipped_when_evolving() {
    let fields = vec![
        Field::new("a", Kind::Int64),
        Field::record("r", vec![Field::new("x", Kind::Int64)]),
    ];
    let strict = encoder(fields.clone());
    let mut out = Vec::new();
    let e = strict
        .try_encode_delimited(br#"{"a":1,"r":{"x":1,"y":2}}"#.as_slice(), &mut out)
        .unwrap_err();
    assert_eq!(e, EncodeError::UnknownField { path: "r.y".into() });
    assert!(out.is_empty());
    // A value the column cannot take is not an unknown field, even after an unknown one's
    // place in the row.
    let e = strict
        .try_encode_delimited(br#"{"a":"x","b":1}"#.as_slice(), &mut out)
        .unwrap_err();
    assert!(!e.is_unknown_field(), "{e}");
    // Strict: a null for an unknown key is still refused (as before).
    assert!(strict
        .try_encode_delimited(br#"{"a":1,"b":null}"#.as_slice(), &mut out)
        .unwrap_err()
        .is_unknown_field());
    let evolving = Encoder::new(
        fields,
        Options {
            skip_unknown_empty: true,
            ..Options::default()
        },
    )
    .unwrap();
    for row in [
        r#"{"a":1,"b":null}"#,
        r#"{"a":1,"b":[]}"#,
        r#"{"a":1,"b":{}}"#,
        r#"{"a":1,"b":{"c":null,"d":[null,{}]}}"#,
        r#"{"a":1,"r":{"x":2,"y":null}}"#,
    ] {
        let m = decode(&evolving, row);
        assert_eq!(get(&m, "a"), PValue::I64(1), "{row}");
    }
    for (row, path) in [
        (r#"{"a":1,"b":0}"#, "b"),
        (r#"{"a":1,"b":[null,"x"]}"#, "b"),
        (r#"{"a":1,"b":{"c":null,"d":false}}"#, "b"),
        (r#"{"r":{"y":{"z":[[1]]}}}"#, "r.y"),
    ] {
        let e = evolving
            .try_encode_delimited(row.as_bytes(), &mut out)
            .unwrap_err();
        assert_eq!(e, EncodeError::UnknownField { path: path.into() }, "{row}");
    }
}
