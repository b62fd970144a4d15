//! Unit tests of the parent module.

use super::*;
use serde::de::IgnoredAny;

fn serde_ok(b: &[u8]) -> bool {
    serde_json::from_slice::<IgnoredAny>(b).is_ok()
}

#[test]
fn accepts_and_rejects_like_the_grammar_says() {
    for ok in [
        &b"{}"[..],
        b" [] ",
        b"{\"a\":[1,-0.5e+3,true,false,null,{\"b\":\"\\u00e9\\n\\\"\"}]}",
        b"\"s\"",
        b"0",
        b"-12.25E-2",
        b"[[[]]]",
        b"{\"a\" : 1 , \"b\" : [ ] }",
        "{\"long string with ünïcode ✓ and more than sixteen bytes\":\"x\"}".as_bytes(),
    ] {
        assert_eq!(check(ok), Ok(()), "{}", String::from_utf8_lossy(ok));
    }
    for (bad, at) in [
        (&b"{\"a\":1,}"[..], 7),
        (b"{\"a\":tru}", 8), // the first byte that is not `true`
        (b"[1 2]", 3),
        (b"{\"a\":\"\\q\"}", 6),
        (b"{\"a\":01}", 6),
        (b"{\"a\":1} x", 8),
        (b"{\"a\":\"\x01\"}", 6),
        (b"{a:1}", 1),
        (b"{\"a\":1", 6),
        (b"{\"a\":[}", 6),
        (b"{\"a\":1e}", 7),
        (b"{\"a\":-}", 6),
        (b"{\"a\":1.}", 7),
        (b"", 0),
        (b"\"abc", 4),
        (b"[1,]", 3),
        (b"{\"a\":1}}", 7),
    ] {
        assert_eq!(check(bad), Err(at), "{}", String::from_utf8_lossy(bad));
    }
}

/// Only numbers with an exponent or over 300 characters and `\uD800`–`\uDFFF` escapes (in
/// values or keys, at any depth) make a record's values unusual; the same verdict whether the
/// record is checked whole or scanned from a stream, and reset for the next record.
#[test]
fn values_are_plain_unless_a_number_or_an_escape_could_be_out_of_range() {
    let digits = |n: usize| "9".repeat(n);
    let plain = |doc: &str| {
        let mut k = KeyCheck::new(Vec::new());
        check_keys(doc.as_bytes(), &mut k).expect(doc);
        let whole = k.plain_values;
        assert!(
            matches!(scan_keys(doc.as_bytes(), &mut k), Scan::Complete(_)),
            "{doc}"
        );
        assert_eq!(k.plain_values, whole, "{doc}");
        whole
    };
    for doc in [
        r#"{"a":1,"b":-2.5,"c":[0.125,{"d":"\u00e9\n"}],"e":"\ud7ff\ue000"}"#.to_string(),
        format!(r#"{{"n":{}}}"#, digits(300)),
        format!(r#"{{"n":-{}}}"#, digits(299)),
        r#"{"id":"925e52ae42d2e149","s":"1e400"}"#.to_string(),
        r#"[1,2,3]"#.to_string(),
    ] {
        assert!(plain(&doc), "{doc}");
    }
    for doc in [
        r#"{"a":1e5}"#.to_string(),
        r#"{"a":[1,{"b":2.5E-3}]}"#.to_string(),
        format!(r#"{{"n":{}}}"#, digits(301)),
        format!(r#"{{"n":-{}}}"#, digits(300)),
        r#"{"s":"x\ud800"}"#.to_string(),
        r#"{"s":"\uDBFF\uDFFF"}"#.to_string(),
        r#"{"k\udc00":1}"#.to_string(),
        r#"[{"a":[{"b":"\uDe00"}]}]"#.to_string(),
        "1E2".to_string(),
    ] {
        assert!(!plain(&doc), "{doc}");
    }
    // The verdict is per record: a plain record after an unusual one is plain again.
    let mut k = KeyCheck::new(Vec::new());
    check_keys(br#"{"a":1e5}"#, &mut k).unwrap();
    assert!(!k.plain_values);
    check_keys(br#"{"a":1}"#, &mut k).unwrap();
    assert!(k.plain_values);
}

#[test]
fn the_key_check_passes_only_records_the_row_scan_would_leave_alone() {
    let reserved = vec![crate::json::keycheck::name_hash(b"_row_id")];
    let clean = |doc: &str| {
        let mut k = KeyCheck::new(reserved.clone());
        assert!(
            matches!(scan_keys(doc.as_bytes(), &mut k), Scan::Complete(_)),
            "{doc}"
        );
        k.clean
    };
    assert!(clean(r#"{"a":1,"b":{"a":2},"c":[{"a":1},{"a":1}]}"#));
    assert!(
        clean(r#"{"x":{"_row_id":1}}"#),
        "only top-level keys are columns"
    );
    assert!(!clean(r#"{"a":1,"a":2}"#));
    assert!(!clean(r#"{"x":{"a":1,"b":2,"a":3}}"#));
    assert!(!clean(r#"[{"k":1,"k":2}]"#));
    assert!(!clean(r#"{"_row_id":"mine","a":1}"#));
    assert!(
        !clean(r#"{"\u0061":1,"a":2}"#),
        "escaped keys are left to the row scan"
    );
    // Many keys (past the Bloom filter's comfort): still exact about duplicates.
    let many: Vec<String> = (0..300).map(|i| format!("\"k{i}\":{i}")).collect();
    assert!(clean(&format!("{{{}}}", many.join(","))));
    assert!(!clean(&format!("{{{},\"k7\":0}}", many.join(","))));
    // Past what the check holds (keys open at once, objects open at once): not clean, so the
    // row scan decides; still valid; and the next record starts afresh.
    let most: Vec<String> = (0..1100).map(|i| format!("\"k{i}\":{i}")).collect();
    assert!(!clean(&format!("{{{}}}", most.join(","))));
    let deep = format!("{}1{}", "{\"a\":".repeat(40), "}".repeat(40));
    assert!(!clean(&deep));
    let nested = format!("{}1{}", "{\"a\":".repeat(32), "}".repeat(32));
    assert!(clean(&nested), "32 objects open at once are still checked");
    assert!(!clean(&format!(
        "{}{{\"b\":1,\"b\":2}}{}",
        "{\"a\":".repeat(31),
        "}".repeat(31)
    )));
    assert!(clean(r#"{"a":1}"#));
}

/// Compact JSON takes a short path after a member's value (`,"` goes straight to the next key);
/// whitespace anywhere takes the general one: both reach the same verdicts, and the same
/// error positions, on the same members.
#[test]
fn compact_and_spaced_members_get_the_same_verdicts() {
    let reserved = vec![crate::json::keycheck::name_hash(b"_row_id")];
    for (compact, spaced, want_clean) in [
        (
            r#"{"a":"x","b":1,"c":[1,"y"],"d":{"e":null},"f":true}"#,
            r#"{ "a" : "x" , "b" : 1 , "c" : [ 1 , "y" ] , "d" : { "e" : null } , "f" : true }"#,
            true,
        ),
        (r#"{"a":"x","a":1}"#, "{\"a\":\"x\" ,\n\t\"a\":1}", false),
        (
            r#"{"a":1,"_row_id":2}"#,
            "{\"a\":1,\r\n\"_row_id\":2}",
            false,
        ),
    ] {
        for doc in [compact, spaced] {
            let mut k = KeyCheck::new(reserved.clone());
            assert_eq!(scan_keys(doc.as_bytes(), &mut k), Scan::Complete(doc.len()));
            assert_eq!(k.clean, want_clean, "{doc}");
        }
    }
    // A `,"` that is not a member's start: inside an array, or a key cut by the end.
    assert_eq!(check(br#"["a","b"]"#), Ok(()));
    assert_eq!(check(br#"{"a":1,"#), Err(7));
    assert_eq!(scan(br#"{"a":1,""#), Scan::Incomplete);
    assert_eq!(scan(br#"{"a":1,"b"}"#), Scan::Invalid(10));
    assert_eq!(scan(br#"[1,"b":2]"#), Scan::Invalid(6));
}

#[test]
fn deep_nesting_is_valid_json_as_for_serde_json() {
    let deep = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
    let deep_obj = |n: usize| format!("{}{{}}{}", "{\"a\":".repeat(n - 1), "}".repeat(n - 1));
    for n in [1, 127, 128, 129, 191, 192, 193, 5000] {
        for doc in [deep(n), deep_obj(n)] {
            assert!(check(doc.as_bytes()).is_ok(), "depth {n}");
            assert!(serde_ok(doc.as_bytes()), "depth {n}");
        }
        // Mixed kinds at depth: closing with the wrong bracket must be caught at any level.
        let wrong = format!("{}{}1{}}}", "[".repeat(n), "{\"k\":", "]".repeat(n));
        assert!(check(wrong.as_bytes()).is_err(), "depth {n}");
        assert!(!serde_ok(wrong.as_bytes()), "depth {n}");
    }
}

/// Objects and arrays alternating level by level, so that every level's kind must be
/// remembered across the nesting tracker's register and its spill words (64 levels a word):
/// closing any one level with the other kind's bracket is caught, as by serde_json.
#[test]
fn alternating_nesting_remembers_every_level_kind() {
    for n in [2usize, 63, 64, 65, 66, 127, 128, 129, 130, 200] {
        let mut open = String::new();
        let mut closers = Vec::new();
        for level in 0..n {
            if level % 2 == 0 {
                open.push_str("{\"k\":");
                closers.push('}');
            } else {
                open.push('[');
                closers.push(']');
            }
        }
        let close: String = closers.iter().rev().collect();
        let doc = format!("{open}1{close}");
        assert!(check(doc.as_bytes()).is_ok(), "depth {n}");
        assert!(serde_ok(doc.as_bytes()), "depth {n}");
        for wrong_at in [0, 1, n / 2, n.saturating_sub(63), n - 1] {
            let mut bad: Vec<char> = close.chars().collect();
            bad[wrong_at] = if bad[wrong_at] == '}' { ']' } else { '}' };
            let bad: String = bad.into_iter().collect();
            let doc = format!("{open}1{bad}");
            assert!(
                check(doc.as_bytes()).is_err(),
                "depth {n}, wrong closer {wrong_at}"
            );
            assert!(
                !serde_ok(doc.as_bytes()),
                "depth {n}, wrong closer {wrong_at}"
            );
        }
    }
}

/// Mutates valid records byte by byte (deletions, duplications, substitutions from a
/// JSON-ish alphabet) and checks the verdict equals serde_json's on every variant.
#[test]
fn agrees_with_serde_json() {
    let seeds: [&[u8]; 5] = [
            br#"{"event_id":"a1","n":-12.5e3,"ok":true,"x":null,"arr":[1,{"k":"v\"\\\/"}],"u":"\u00e9"}"#,
            br#"[{"a":[]},{},"",0,-0,1E+2]"#,
            br#"{"long":"0123456789abcdef0123456789abcdef\t"}"#,
            br#""just a string with \n escape""#,
            br#"{"nested":{"deeper":{"deepest":[true,false,null]}}}"#,
        ];
    let alphabet = b"{}[]\":,\\ -+.0123456789eEtrufalsn\x01\n";
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut variants = 0;
    let mut keys = KeyCheck::new(vec![crate::json::keycheck::name_hash(b"_row_id")]);
    for seed in seeds {
        assert!(check(seed).is_ok() && serde_ok(seed));
        for _ in 0..4000 {
            let mut v = seed.to_vec();
            for _ in 0..(next() % 3 + 1) {
                let pos = (next() as usize) % v.len().max(1);
                match next() % 3 {
                    0 if !v.is_empty() => {
                        v.remove(pos);
                    }
                    1 => v.insert(pos, alphabet[(next() as usize) % alphabet.len()]),
                    _ if !v.is_empty() => v[pos] = alphabet[(next() as usize) % alphabet.len()],
                    _ => {}
                }
            }
            assert_eq!(
                check(&v).is_ok(),
                serde_ok(&v),
                "disagreement on {:?}",
                String::from_utf8_lossy(&v)
            );
            // The key-checking walk (its own inlined copy) answers the same, at the same byte.
            assert_eq!(check_keys(&v, &mut keys), check(&v));
            assert_eq!(scan_keys(&v, &mut keys), scan(&v));
            variants += 1;
        }
    }
    assert_eq!(variants, 20_000);
}

/// The string search 32 bytes at a time (AVX2) and 16 at a time (SSE2) find the same byte as a
/// plain loop wherever it sits: in the first, last or a middle vector, right at a vector's edge,
/// in the scalar tail, or nowhere (the end of the buffer).
#[test]
fn string_searches_agree_at_every_vector_edge_and_the_end() {
    let plain = |b: &[u8], j: usize| {
        (j..b.len())
            .find(|&k| b[k] == b'"' || b[k] == b'\\' || b[k] < 0x20)
            .unwrap_or(b.len())
    };
    for len in 0..100 {
        for special in [None, Some(b'"'), Some(b'\\'), Some(b'\n'), Some(0x1f)] {
            for at in 0..len.max(1) {
                let mut b = vec![b'a'; len];
                if let (Some(c), true) = (special, at < len) {
                    b[at] = c;
                }
                // High bytes (UTF-8) are ordinary string bytes, not control characters.
                if len > 3 {
                    b[len / 3] = if b[len / 3] == b'a' { 0xC3 } else { b[len / 3] };
                }
                for j in [0, 1, 15, 16, 17, 31, 32, 33]
                    .into_iter()
                    .filter(|&j| j <= len)
                {
                    let want = plain(&b, j);
                    assert_eq!(
                        find_special(&b, j),
                        want,
                        "sse2: len {len}, at {at}, from {j}"
                    );
                    assert_eq!(find_special_in::<false>(&b, j), want);
                    if std::is_x86_feature_detected!("avx2") {
                        assert_eq!(
                            find_special_in::<true>(&b, j),
                            want,
                            "avx2: len {len}, at {at}, from {j}"
                        );
                    }
                }
            }
        }
    }
}

/// Both walks (AVX2 and baseline) give the same answers, at the same byte, on records cut at
/// every length: the end of the buffer inside a string is where the wide search stops short.
#[test]
fn both_walks_agree_on_records_cut_anywhere() {
    let record = br#"{"event_id":"6da485f6-ed50-4aa9-8cc2-b14949dc09af","page":{"url":"https://shop.example.com/checkout/confirmation?order=o_1430796","title":"Order \u2013 \"Thank you!\""},"n":[1,-2.5e3,true,null],"k":"v"}"#;
    for cut in 0..=record.len() {
        let b = &record[..cut];
        let baseline = walk::<false, _>(b, 0, &mut NoKeys);
        assert_eq!(value(b, 0), baseline, "cut at {cut}");
        let mut keys = KeyCheck::new(Vec::new());
        keys.reset();
        assert_eq!(walk::<false, _>(b, 0, &mut keys), baseline, "cut at {cut}");
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2 (the test's own check); BMI1/2 likewise below.
            if std::is_x86_feature_detected!("bmi1") && std::is_x86_feature_detected!("bmi2") {
                let wide = unsafe { value_with_avx2(b, 0, &mut NoKeys) };
                assert_eq!(wide, baseline, "cut at {cut}");
            }
        }
    }
    assert_eq!(value(record, 0), Ok(record.len()));
}
