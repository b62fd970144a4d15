//! The encoder's error while it walks a row: the message, and the column path it happened at,
//! built up on the way out of the recursion. Only failing rows pay for it.

use std::fmt::Write as _;

use super::descriptor::is_identifier;
use super::EncodeError;

/// A conversion error, with the path built up on the way out of the recursion (innermost
/// first). Only failing rows pay for it.
pub(super) struct Fail {
    path: Vec<Segment>,
    message: String,
    unknown: bool,
    /// The row is not JSON here: reported for the whole row, not for a column.
    pub(super) syntax: bool,
}

enum Segment {
    Name(String),
    Index(usize),
}

impl Fail {
    pub(super) fn new(message: String) -> Fail {
        Fail {
            path: Vec::new(),
            message,
            unknown: false,
            syntax: false,
        }
    }

    pub(super) fn syntax() -> Fail {
        Fail {
            syntax: true,
            ..Fail::new(String::new())
        }
    }

    pub(super) fn unknown(key: String) -> Fail {
        Fail {
            path: vec![Segment::Name(key)],
            unknown: true,
            ..Fail::new(String::new())
        }
    }

    pub(super) fn within(mut self, name: &str) -> Fail {
        if !self.syntax {
            self.path.push(Segment::Name(name.to_owned()));
        }
        self
    }

    pub(super) fn at(mut self, index: usize) -> Fail {
        if !self.syntax {
            self.path.push(Segment::Index(index));
        }
        self
    }

    pub(super) fn render(self) -> EncodeError {
        let mut path = String::new();
        for segment in self.path.iter().rev() {
            match segment {
                Segment::Name(name) => {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    // Column names are identifiers. An unknown key can be anything (empty,
                    // dotted, with spaces or quotes), and is quoted so the path stays readable.
                    if is_identifier(name) {
                        path.push_str(name);
                    } else {
                        path.push_str(&serde_json::to_string(name).unwrap_or_default());
                    }
                }
                Segment::Index(i) => {
                    let _ = write!(path, "[{i}]");
                }
            }
        }
        if self.unknown {
            EncodeError::UnknownField { path }
        } else if path.is_empty() {
            EncodeError::Invalid(self.message)
        } else {
            EncodeError::Invalid(format!("{path}: {}", self.message))
        }
    }
}
