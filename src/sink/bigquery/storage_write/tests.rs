//! Unit tests of the parent module.

use super::Token;

const A: &str = "projects/p/datasets/d/tables/t/streams/a";
const B: &str = "projects/p/datasets/d/tables/t/streams/b";

#[test]
fn one_stream_keeps_the_plain_token_and_several_are_a_json_array() {
    assert_eq!(Token::encode(&[A.to_string()]), A);
    let both = Token::encode(&[A.to_string(), B.to_string()]);
    assert_eq!(both, format!("[\"{A}\",\"{B}\"]"));
    assert_eq!(Token::decode(A).unwrap(), vec![A.to_string()]);
    let names = Token::decode(&both).unwrap();
    assert_eq!(names, vec![A.to_string(), B.to_string()]);
    assert_eq!(Token::table(&names), Some("projects/p/datasets/d/tables/t"));
}

#[test]
fn tokens_of_other_modes_or_of_several_tables_are_not_taken() {
    assert!(Token::decode("load:job-123").is_none());
    assert!(Token::decode("[]").is_none());
    assert!(Token::decode("[\"load:x\"]").is_none());
    let mixed = format!("[\"{A}\",\"projects/p/datasets/d/tables/u/streams/c\"]");
    assert!(Token::decode(&mixed).is_none());
}
