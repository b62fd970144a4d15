//! The table schema → the protobuf descriptor BigQuery decodes rows with, and the lookup tables
//! the row scanner uses (columns by name, field keys), built once per schema.

use std::collections::{HashMap, HashSet};

use prost::encoding::encode_key;
use prost_types::field_descriptor_proto::Label;
use prost_types::{DescriptorProto, FieldDescriptorProto};

use super::{join_path, Field, Kind, Mode, Options};

/// Deepest RECORD nesting accepted. BigQuery allows 15 levels. The limit here is higher, so a
/// future BigQuery increase is not rejected, and bounded, so a strange schema cannot overflow
/// the stack through recursion.
pub(super) const MAX_DEPTH: usize = 64;

/// Protobuf reserves field numbers 19000–19999, and columns are numbered 1..n. A message with
/// that many columns cannot be described. BigQuery itself stops at 10,000 columns.
const MAX_COLUMNS: usize = 18_999;

/// Turns JSON rows into Storage Write API protobuf rows for one table schema.
///
/// Built once per schema: everything that depends only on the schema (descriptor, field keys,
/// name lookups) is computed in [`Encoder::new`], so each row costs only its own parsing.
#[derive(Debug)]
pub struct Encoder {
    /// Index 0 is the top-level `Row`; RECORD columns point at their own entries.
    pub(super) messages: Vec<Message>,
    descriptor: DescriptorProto,
    pub(super) options: Options,
}

#[derive(Debug)]
pub(super) struct Message {
    pub columns: Vec<Column>,
    /// The REQUIRED columns, in schema order: checked once the object is read.
    pub required: Vec<usize>,
    /// Each column under its exact name and under its ASCII-lowercased name. Keys usually
    /// match exactly and are then found without lowercasing (and so without allocating).
    lookup: HashMap<Box<str>, usize>,
    /// Length of the longest column name: longer keys cannot match and need no lowercasing.
    longest: usize,
    /// For tables of up to 32 columns: per [`shape`] of a name, the columns that have it (bit
    /// `c` for column `c`). Most keys of wide events name no column, and are turned away by one
    /// load instead of a comparison with every column.
    shapes: [u32; 64],
}

/// A name's length and first letter (case folded), in six bits: names equal up to ASCII case
/// have the same shape.
fn shape(name: &str) -> usize {
    let first = name.as_bytes().first().map_or(0, |b| b | 0x20);
    (name.len() * 7 + usize::from(first)) & 63
}

#[derive(Debug)]
pub(super) struct Column {
    pub name: String,
    pub kind: Kind,
    pub mode: Mode,
    /// The encoded field key (number and wire type), written before every value.
    pub key: Box<[u8]>,
    /// For RECORD columns, the index of the nested message in `Encoder::messages`.
    pub message: usize,
}

impl Message {
    pub fn find(&self, key: &str) -> Option<usize> {
        // Typical tables have a few dozen columns at most: comparing lengths first and then the
        // bytes case-insensitively beats hashing every key (measured in benches/hot_path.rs).
        if self.columns.len() <= 32 {
            let mut candidates = self.shapes[shape(key)];
            while candidates != 0 {
                let c = candidates.trailing_zeros() as usize;
                candidates &= candidates - 1;
                if self.columns.get(c)?.name.eq_ignore_ascii_case(key) {
                    return Some(c);
                }
            }
            return None;
        }
        if let Some(&i) = self.lookup.get(key) {
            return Some(i);
        }
        // Lowercase entries are in the map too, so only a key with an uppercase letter can
        // still match.
        if key.len() > self.longest || !key.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        self.lookup.get(key.to_ascii_lowercase().as_str()).copied()
    }
}

struct Builder {
    messages: Vec<Message>,
    nested: Vec<DescriptorProto>,
    /// Names nested types must avoid: every column name anywhere in the schema, and the types
    /// generated so far. Nested types all live inside `Row` and are referred to by relative
    /// names, as Google's own clients do. If a type's name were also a field name on the lookup
    /// path, resolving it could find the field instead of the type.
    taken: HashSet<String>,
}

impl Builder {
    /// Builds the message for `fields` and returns its index in `messages` with its descriptor.
    fn message(
        &mut self,
        fields: &[Field],
        path: &str,
        type_name: &str,
        depth: usize,
    ) -> Result<(usize, DescriptorProto), String> {
        let place = if path.is_empty() {
            "the table schema".to_owned()
        } else {
            format!("RECORD column `{path}`")
        };
        if fields.is_empty() {
            return Err(format!("{place} has no columns"));
        }
        if fields.len() > MAX_COLUMNS {
            return Err(format!(
                "{place} has {} columns; at most {MAX_COLUMNS} can be described in protobuf",
                fields.len()
            ));
        }
        if depth > MAX_DEPTH {
            return Err(format!(
                "{place} is nested more than {MAX_DEPTH} levels deep"
            ));
        }
        let index = self.messages.len();
        self.messages.push(Message {
            columns: Vec::new(),
            required: Vec::new(),
            lookup: HashMap::new(),
            longest: 0,
            shapes: [0; 64],
        });
        let mut columns = Vec::with_capacity(fields.len());
        let mut lookup = HashMap::with_capacity(fields.len() * 2);
        let mut descriptors = Vec::with_capacity(fields.len());
        let mut lowercase_seen: HashMap<String, &str> = HashMap::new();
        for (i, f) in fields.iter().enumerate() {
            let column_path = join_path(path, &f.name);
            if !is_identifier(&f.name) {
                return Err(format!(
                    "column `{column_path}`: the name is not usable in protobuf (it must be letters, \
                     digits and underscores, not starting with a digit)"
                ));
            }
            let lower = f.name.to_ascii_lowercase();
            if let Some(other) = lowercase_seen.insert(lower.clone(), &f.name) {
                return Err(format!(
                    "{place} has two columns named `{other}` and `{}` (BigQuery column names are \
                     case-insensitive)",
                    f.name
                ));
            }
            match (f.kind, f.fields.is_empty()) {
                (Kind::Record, _) | (_, true) => {}
                (kind, false) => {
                    return Err(format!(
                        "column `{column_path}` has type {} but also sub-fields; only RECORD \
                         columns have sub-fields",
                        kind.bigquery_name()
                    ))
                }
            }
            // Cannot fail: the count is capped below protobuf's reserved range.
            let number = u32::try_from(i + 1).unwrap_or(u32::MAX);
            let mut key = Vec::with_capacity(3);
            encode_key(number, f.kind.wire_type(), &mut key);
            let label = match f.mode {
                // proto2 `required` would make any decoder reject a message without it.
                // BigQuery accepts `optional` for REQUIRED columns, and presence is checked in
                // `encode`, where the error can name the column.
                Mode::Nullable | Mode::Required => Label::Optional,
                Mode::Repeated => Label::Repeated,
            };
            let mut descriptor = FieldDescriptorProto {
                name: Some(f.name.clone()),
                number: Some(i32::try_from(number).unwrap_or(i32::MAX)),
                label: Some(label as i32),
                r#type: Some(f.kind.proto_type() as i32),
                ..Default::default()
            };
            let mut message = 0;
            if f.kind == Kind::Record {
                let nested_name = self.type_name(type_name, &f.name);
                let slot = self.nested.len();
                self.nested.push(DescriptorProto::default());
                let (child, mut child_descriptor) =
                    self.message(&f.fields, &column_path, &nested_name, depth + 1)?;
                child_descriptor.name = Some(nested_name.clone());
                self.nested[slot] = child_descriptor;
                descriptor.type_name = Some(nested_name);
                message = child;
            }
            lookup.insert(f.name.clone().into_boxed_str(), i);
            lookup.insert(lower.into_boxed_str(), i);
            descriptors.push(descriptor);
            columns.push(Column {
                name: f.name.clone(),
                kind: f.kind,
                mode: f.mode,
                key: key.into_boxed_slice(),
                message,
            });
        }
        self.messages[index] = Message {
            required: fields
                .iter()
                .enumerate()
                .filter(|(_, f)| f.mode == Mode::Required)
                .map(|(i, _)| i)
                .collect(),
            longest: fields.iter().map(|f| f.name.len()).max().unwrap_or(0),
            shapes: fields
                .iter()
                .take(32)
                .enumerate()
                .fold([0; 64], |mut s, (c, f)| {
                    s[shape(&f.name)] |= 1 << c;
                    s
                }),
            columns,
            lookup,
        };
        let descriptor = DescriptorProto {
            field: descriptors,
            ..Default::default()
        };
        Ok((index, descriptor))
    }

    /// A unique, readable name for a RECORD's message type: the capitalised column path joined
    /// with `_` (`Payload_Items`), plus a number if that name is already taken.
    fn type_name(&mut self, parent: &str, column: &str) -> String {
        let mut capitalised = String::with_capacity(column.len());
        let mut chars = column.chars();
        if let Some(c) = chars.next() {
            capitalised.push(c.to_ascii_uppercase());
        }
        capitalised.extend(chars);
        let base = if parent == ROW {
            capitalised
        } else {
            format!("{parent}_{capitalised}")
        };
        let mut name = base.clone();
        let mut n = 2;
        while self.taken.contains(&name) {
            name = format!("{base}_{n}");
            n += 1;
        }
        self.taken.insert(name.clone());
        name
    }
}

pub(super) const ROW: &str = "Row";

/// A protobuf identifier. BigQuery's flexible column names (dashes, spaces, non-Latin letters)
/// would need the `column_name` field annotation, which this encoder does not write.
pub(super) fn is_identifier(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn collect_names(fields: &[Field], taken: &mut HashSet<String>, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    for f in fields {
        taken.insert(f.name.clone());
        collect_names(&f.fields, taken, depth + 1);
    }
}

impl Encoder {
    /// Errors for a schema that cannot be expressed: no columns, a RECORD without sub-columns, a
    /// column name that is not a protobuf identifier, two names differing only in case, or an
    /// absurd size or depth. INTERVAL and RANGE columns are already rejected by
    /// [`Field::from_rest`] and [`Field::from_storage`].
    pub fn new(fields: Vec<Field>, options: Options) -> Result<Encoder, String> {
        let mut taken = HashSet::new();
        taken.insert(ROW.to_owned());
        collect_names(&fields, &mut taken, 1);
        let mut builder = Builder {
            messages: Vec::new(),
            nested: Vec::new(),
            taken,
        };
        let (_, mut descriptor) = builder.message(&fields, "", ROW, 1)?;
        descriptor.name = Some(ROW.to_owned());
        descriptor.nested_type = builder.nested;
        Ok(Encoder {
            messages: builder.messages,
            descriptor,
            options,
        })
    }

    /// The top-level message is named "Row". RECORD columns become message types nested
    /// inside it (all at one level, with unique names), referred to by relative names. Fields
    /// are numbered 1..n in schema order. REPEATED fields are not packed, as the encoder writes
    /// each element as its own field.
    pub fn descriptor(&self) -> DescriptorProto {
        self.descriptor.clone()
    }
}
