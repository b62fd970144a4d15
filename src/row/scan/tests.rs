//! Unit tests of the parent module.

use super::*;

fn dedup(s: &str) -> String {
    let mut k = Keys::default();
    let f = k.scan::<&str>(s.as_bytes(), &[]).unwrap();
    if f.rewritten {
        String::from_utf8(k.out.clone()).unwrap()
    } else {
        s.to_string()
    }
}

#[test]
fn the_last_duplicate_wins_at_every_level() {
    assert_eq!(dedup(r#"{"a":1,"a":2}"#), r#"{"a":2}"#);
    assert_eq!(dedup(r#"{"a":1,"b":0,"a":2}"#), r#"{"b":0,"a":2}"#);
    assert_eq!(
        dedup(r#"{ "a" : {"x":1,"x":[{"y":1,"y":2}]} , "a" : 3 }"#),
        r#"{ "a" : 3 }"#
    );
    assert_eq!(
        dedup(r#"[{"x":1,"\u0078":2},{"x":{"z":1,"z":2}}]"#),
        r#"[{"\u0078":2},{"x":{"z":2}}]"#
    );
    assert_eq!(dedup(r#"{"a":1,"b":2}"#), r#"{"a":1,"b":2}"#);
    let many: String = format!(
        "{{{},\"k3\":\"last\"}}",
        (0..40)
            .map(|i| format!("\"k{i}\":{i}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    let v: serde_json::Value = serde_json::from_str(&dedup(&many)).unwrap();
    assert_eq!(v.as_object().unwrap().len(), 40);
    assert_eq!(v["k3"], "last");
    assert_eq!(dedup("1e400"), "1e400");
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    assert_eq!(dedup(&deep), deep);
}

#[test]
fn finds_top_level_fields_named_like_generated_columns() {
    let mut k = Keys::default();
    let s = r#"{"_row_id":"mine","x":{"_source_uri":1},"_source_uri":"s"}"#;
    let f = k
        .scan(s.as_bytes(), &["_row_id", "_source_uri", "_ingested_at"])
        .unwrap();
    let got: Vec<(usize, &str)> = f
        .collisions
        .iter()
        .map(|&(r, (a, z))| (r, &s[a..z]))
        .collect();
    assert_eq!(got, vec![(0, "\"mine\""), (1, "\"s\"")]);
}

#[test]
fn finds_what_bigquery_cannot_store() {
    assert!(storable(br#"{"a":[1,{"b":"x\ud83d\ude00"}],"n":1e300}"#).is_ok());
    let e = storable(br#"{"a":[1,{"b":1e400}]}"#).unwrap_err();
    assert!(e.contains("`a[1].b`") && e.contains("1e400"), "{e}");
    let e = storable(br#"{"s":"\ud800"}"#).unwrap_err();
    assert!(e.contains("`s`") && e.contains("\\ud800"), "{e}");
    assert!(storable(br#"{"s":"\udc00x"}"#).is_err());
    assert!(storable(br#"{"s\ud800":1}"#).is_err());
    assert!(storable(br#"-1E+999"#).is_err());
    assert!(storable(br#"{"n":123456789012345678901234567890}"#).is_ok());
    let deep = format!("{}1e400{}", "[".repeat(300), "]".repeat(300));
    assert!(storable(deep.as_bytes()).unwrap_err().contains("[0][0]"));
}

/// The quick look never lets through a row the walk refuses, nor does the validator's
/// plain-values verdict (which spares the look): numbers of every length around the f64
/// bound, exponents, and surrogate escapes, mutated at random.
#[test]
fn the_quick_look_misses_nothing() {
    let big = "9".repeat(309);
    let long_ok = format!("0.{}", "1".repeat(400));
    let seeds = [
        r#"{"a":1.5e308,"b":"x\ud83d\ude00","c":[-1E+999]}"#.to_string(),
        format!(r#"{{"n":{big},"s":"é\u00e9"}}"#),
        format!(r#"{{"n":-{}.5}}"#, "1".repeat(320)),
        format!(r#"{{"f":{long_ok},"t":"\uDC00"}}"#),
        r#"{"id":"925e52ae42d2e149","x":[1,2e3,"3e4"],"y":"a,4e5","z":5e+9}"#.to_string(),
        r#"{"id":"925e52ae42d2e149","w":[0, 9e999]}"#.to_string(),
        r#"{"s":"x\uDC00y","k":"\ud83d\ude00","h":"\u00e9"}"#.to_string(),
        // Plain (the validator lets it skip the look) until a mutation makes it otherwise.
        format!(
            r#"{{"id":"925e52ae42d2e149","n":[1,-2.5,0.125,{}],"s":"\u00e9"}}"#,
            "7".repeat(299)
        ),
    ];
    let alphabet = b"0123456789.-+eE\\udDc8\"{}[],: x";
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut refused = 0;
    let mut plain = 0;
    let mut keys = crate::json::KeyCheck::new(Vec::new());
    for seed in &seeds {
        for _ in 0..5_000 {
            let mut row = seed.as_bytes().to_vec();
            for _ in 0..1 + next() % 4 {
                let at = (next() % row.len() as u64) as usize;
                let c = alphabet[(next() % alphabet.len() as u64) as usize];
                match next() % 3 {
                    0 => row[at] = c,
                    1 => row.insert(at, c),
                    _ => {
                        row.remove(at);
                    }
                }
            }
            if crate::json::check(&row).is_err() {
                continue;
            }
            let walked = walk_storable(&row);
            refused += usize::from(walked.is_err());
            assert_eq!(storable(&row), walked, "{}", String::from_utf8_lossy(&row));
            // The other architectures' quick look misses nothing either.
            assert!(
                walked.is_ok() || super::super::storable::maybe_unstorable_swar(&row),
                "{}",
                String::from_utf8_lossy(&row)
            );
            // Nor does the validator's verdict that lets a row skip the look.
            crate::json::check_keys(&row, &mut keys).expect("valid, checked above");
            plain += usize::from(keys.plain_values);
            assert!(
                walked.is_ok() || !keys.plain_values,
                "plain but refused: {}",
                String::from_utf8_lossy(&row)
            );
        }
    }
    assert!(
        refused > 100,
        "the mutations reach refused rows ({refused})"
    );
    assert!(plain > 100, "the mutations reach plain rows ({plain})");
}

/// The quick look reads 16-byte blocks (8-byte words without SSE2) and a zero-padded last one:
/// an exponent right after a block's edge, in the last block, and long plain numbers at every
/// alignment are still found, and what is storable still passes.
#[test]
fn the_quick_look_finds_spots_at_block_edges_and_in_the_tail() {
    for pad in 0..40 {
        let filler = "x".repeat(pad);
        for (row, ok) in [
            (format!(r#"{{"s":"{filler}","n":1e999}}"#), false),
            (format!(r#"{{"s":"{filler}","n":1e99}}"#), true),
            (format!(r#"{{"s":"{filler}","t":"\ud800"}}"#), false),
            (format!(r#"{{"s":"{filler}","t":"\ud83d\ude00"}}"#), true),
            (
                format!(r#"{{"s":"{filler}","n":{}}}"#, "9".repeat(309)),
                false,
            ),
            (
                format!(r#"{{"s":"{filler}","n":{}}}"#, "9".repeat(308)),
                true,
            ),
            (
                format!(r#"{{"s":"{filler}","n":-{}.5}}"#, "1".repeat(320)),
                false,
            ),
        ] {
            assert_eq!(storable(row.as_bytes()).is_ok(), ok, "{row}");
            if !ok {
                assert!(super::super::storable::maybe_unstorable_swar(
                    row.as_bytes()
                ));
            }
        }
    }
}
