use serde_json::json;

use super::*;

fn col(name: &str, kind: Kind) -> Field {
    Field {
        name: name.into(),
        required: false,
        kind,
    }
}

fn columns() -> Vec<Field> {
    vec![
        Field {
            required: true,
            ..col("id", Kind::String)
        },
        col("n", Kind::Int),
        col("l", Kind::Long),
        col("f", Kind::Float),
        col("d", Kind::Double),
        col("b", Kind::Boolean),
        col(
            "m",
            Kind::Decimal {
                precision: 5,
                scale: 2,
            },
        ),
        col("day", Kind::Date),
        col("t", Kind::Time),
        col(
            "ts",
            Kind::Timestamp {
                tz: false,
                ns: false,
            },
        ),
        col(
            "tz",
            Kind::Timestamp {
                tz: true,
                ns: false,
            },
        ),
        col("s", Kind::String),
        col(
            "st",
            Kind::Struct(vec![col("x", Kind::Long), col("y", Kind::String)]),
        ),
        col("li", Kind::List(Box::new(col("element", Kind::Long)))),
        col("ma", Kind::Map(Box::new(col("value", Kind::Double)))),
    ]
}

fn ok(text: &str) -> Value {
    row(&columns(), text.as_bytes()).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn err(text: &str) -> String {
    row(&columns(), text.as_bytes()).expect_err(text)
}

#[test]
fn values_take_the_form_the_arrow_decoder_reads_for_each_type() {
    let v = ok(
        r#"{"id":"a","n":7,"l":-9007199254740993,"f":1.5,"d":2.25,"b":true,
        "m":"123.4","day":"2026-12-07","t":"15:04:05.25","ts":"2026-12-07T15:04:05",
        "tz":"2026-12-07T16:04:05+01:00","s":{"k":[1,2]},"st":{"x":1},"li":[1,null,3],
        "ma":{"a":1.5}}"#,
    );
    let micros = 1_796_655_845_000_000i64; // 2026-12-07T15:04:05Z
    assert_eq!(
        v,
        json!({"id":"a","n":7,"l":-9007199254740993i64,"f":1.5,"d":2.25,"b":true,"m":"123.4",
               "day":20_794,"t":54_245_250_000i64,"ts":micros,"tz":micros,"s":"{\"k\":[1,2]}",
               "st":{"x":1},"li":[1,null,3],"ma":{"a":1.5}})
    );
    // Epoch seconds, whole or with a fraction; a number as a decimal.
    let v = ok(r#"{"id":"a","ts":1796655845,"tz":1796655845.5,"m":-0.50}"#);
    assert_eq!(v["ts"], json!(micros));
    assert_eq!(v["tz"], json!(micros + 500_000));
    assert_eq!(v["m"], json!("-0.5"));
}

#[test]
fn a_value_the_column_cannot_hold_is_an_error_naming_the_column() {
    for (text, says) in [
        (r#"{"n":1}"#, "column `id` is required"),
        (
            r#"{"id":"a","n":3000000000}"#,
            "column `n` (int): 3000000000 is out of range",
        ),
        (
            r#"{"id":"a","n":1.5}"#,
            "column `n` (int): 1.5 is not an integer",
        ),
        (r#"{"id":"a","d":1e400}"#, "column `d` (double): "),
        (
            r#"{"id":"a","f":1e39}"#,
            "column `f` (float): 1e+39 is out of range",
        ),
        (
            r#"{"id":"a","b":"yes"}"#,
            "column `b` (boolean): expected true or false",
        ),
        (
            r#"{"id":"a","m":"1234.5"}"#,
            "column `m` (decimal(5, 2)): `1234.5` has more than 3 digits before",
        ),
        (
            r#"{"id":"a","m":"1.234"}"#,
            "more than 2 digits after the point",
        ),
        (
            r#"{"id":"a","day":"07/12/2026"}"#,
            "column `day` (date): `07/12/2026`",
        ),
        (
            r#"{"id":"a","tz":"2026-12-07T15:04:05"}"#,
            "column `tz` (timestamptz): `2026-12-07T15:04:05` is not an RFC 3339",
        ),
        (
            r#"{"id":"a","ts":true}"#,
            "column `ts` (timestamp): expected an RFC 3339 string",
        ),
        (r#"{"id":"a","s":"\ud800"}"#, "column `s` (string): "),
        (
            r#"{"id":"a","st":{"x":"1"}}"#,
            "column `st.x` (long): expected an integer, got a string",
        ),
        (r#"{"id":"a","st":{"z":1}}"#, "field `st.z` has no column"),
        (r#"{"id":"a","li":[1,"x"]}"#, "column `li[1]` (long)"),
        (r#"{"id":"a","ma":{"k":"x"}}"#, "column `ma.k` (double)"),
        (
            r#"{"id":"a","zz":1}"#,
            "field `zz` has no column in the table",
        ),
    ] {
        let e = err(text);
        assert!(e.contains(says), "{text}: {e}");
    }
}

#[test]
fn a_string_column_holds_any_value_however_deep_as_its_text() {
    let deep = format!(
        r#"{{"id":"a","s":{}1{}}}"#,
        "[".repeat(200),
        "]".repeat(200)
    );
    let v = ok(&deep);
    assert_eq!(v["s"].as_str().unwrap().len(), 401);
    assert_eq!(ok(r#"{"id":"a","s":12}"#)["s"], json!("12"));
    assert_eq!(ok(r#"{"id":"a","s":null}"#), json!({"id":"a"}));
}
