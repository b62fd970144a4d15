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

#[test]
fn the_key_check_passes_only_records_the_row_scan_would_leave_alone() {
    let reserved = vec![crate::row::scan::key_hash(b"_row_id", false)];
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
            assert!(check(doc.as_bytes()).is_err(), "depth {n}, wrong closer {wrong_at}");
            assert!(!serde_ok(doc.as_bytes()), "depth {n}, wrong closer {wrong_at}");
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
            variants += 1;
        }
    }
    assert_eq!(variants, 20_000);
}
