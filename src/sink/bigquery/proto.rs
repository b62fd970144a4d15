//! Rows as protocol buffers for the BigQuery Storage Write API.
//!
//! The Storage Write API takes each row as a serialized protobuf message, together with a
//! `DescriptorProto` that describes the message. The table's schema is only known at run time
//! (it comes from the table or a schema file), so there is no generated code: [`Encoder`] turns
//! the schema into a descriptor once, then writes protobuf wire format straight from each JSON
//! row. It never builds a `serde_json::Value` tree. Instead it borrows each value's raw JSON
//! text and converts it the way BigQuery's JSON import would for that column's type.
//!
//! Column types are mapped following BigQuery's "supported protocol buffer data types":
//! TIMESTAMP as int64 microseconds, DATE as int32 days, DATETIME, TIME, NUMERIC, BIGNUMERIC, JSON
//! and GEOGRAPHY as strings in BigQuery's literal formats, RECORD as nested messages and REPEATED
//! as repeated fields.
//!
//! Values are checked here instead of being left to BigQuery. One invalid row fails its whole
//! AppendRows request, so none of the rows in that request are written. An error here affects
//! only that row, which goes to the dead letters with the message. That is why the error
//! messages name the column path and the value, in BigQuery's terms.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;

use base64::alphabet;
use base64::engine::{DecodePaddingMode, Engine as _, GeneralPurpose, GeneralPurposeConfig};
use chrono::{Datelike, NaiveDate, NaiveTime};
use gcp_bigquery_client::google::cloud::bigquery::storage::v1::table_field_schema::{
    Mode as StorageMode, Type as StorageType,
};
use gcp_bigquery_client::google::cloud::bigquery::storage::v1::TableFieldSchema as StorageField;
use gcp_bigquery_client::model::field_type::FieldType;
use gcp_bigquery_client::model::table_field_schema::TableFieldSchema as RestField;
use prost::encoding::{encode_key, encode_varint, WireType};
use prost_types::field_descriptor_proto::{Label, Type as ProtoType};
use prost_types::{DescriptorProto, FieldDescriptorProto};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

/// One column of a BigQuery table schema, independent of which API it came from.
///
/// The REST API (`tables.get`, schema files) and the Storage Write API (`CreateWriteStream`)
/// describe the same schema with different types. The encoder works from this common form, so
/// it does not care which API the schema came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: String,
    pub kind: Kind,
    pub mode: Mode,
    /// Sub-columns of a RECORD; empty for every other type.
    pub fields: Vec<Field>,
}

/// A column's data type. INTERVAL and RANGE are not included: this encoder cannot write them,
/// and their schemas are rejected when converted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    String,
    Int64,
    Float64,
    Bool,
    Bytes,
    Timestamp,
    Date,
    Time,
    DateTime,
    Numeric,
    BigNumeric,
    Json,
    Geography,
    Record,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Nullable,
    Required,
    Repeated,
}

impl Kind {
    /// BigQuery's name for the type, so error messages use the names data engineers already
    /// know.
    pub fn bigquery_name(self) -> &'static str {
        match self {
            Kind::String => "STRING",
            Kind::Int64 => "INT64",
            Kind::Float64 => "FLOAT64",
            Kind::Bool => "BOOL",
            Kind::Bytes => "BYTES",
            Kind::Timestamp => "TIMESTAMP",
            Kind::Date => "DATE",
            Kind::Time => "TIME",
            Kind::DateTime => "DATETIME",
            Kind::Numeric => "NUMERIC",
            Kind::BigNumeric => "BIGNUMERIC",
            Kind::Json => "JSON",
            Kind::Geography => "GEOGRAPHY",
            Kind::Record => "RECORD",
        }
    }

    /// The protobuf type BigQuery documents for the column type. Where it lists several, this is
    /// the preferred one. Strings are used for types whose literals BigQuery parses itself
    /// (DATETIME, TIME, NUMERIC, ...).
    fn proto_type(self) -> ProtoType {
        match self {
            Kind::String
            | Kind::Time
            | Kind::DateTime
            | Kind::Numeric
            | Kind::BigNumeric
            | Kind::Json
            | Kind::Geography => ProtoType::String,
            Kind::Int64 | Kind::Timestamp => ProtoType::Int64,
            Kind::Float64 => ProtoType::Double,
            Kind::Bool => ProtoType::Bool,
            Kind::Bytes => ProtoType::Bytes,
            Kind::Date => ProtoType::Int32,
            Kind::Record => ProtoType::Message,
        }
    }

    fn wire_type(self) -> WireType {
        match self.proto_type() {
            ProtoType::Int64 | ProtoType::Int32 | ProtoType::Bool => WireType::Varint,
            ProtoType::Double => WireType::SixtyFourBit,
            _ => WireType::LengthDelimited,
        }
    }
}

impl Field {
    /// A NULLABLE column with no sub-fields.
    pub fn new(name: impl Into<String>, kind: Kind) -> Field {
        Field {
            name: name.into(),
            kind,
            mode: Mode::Nullable,
            fields: Vec::new(),
        }
    }

    /// A NULLABLE RECORD column.
    pub fn record(name: impl Into<String>, fields: Vec<Field>) -> Field {
        Field {
            fields,
            ..Field::new(name, Kind::Record)
        }
    }

    pub fn with_mode(self, mode: Mode) -> Field {
        Field { mode, ..self }
    }

    /// From the REST API's schema (tables.get / schema files): type names like "STRING",
    /// "INTEGER"/"INT64", "FLOAT"/"FLOAT64", "BOOLEAN"/"BOOL", "RECORD"/"STRUCT", "BIGNUMERIC",
    /// ...; mode None = NULLABLE.
    pub fn from_rest(f: &RestField) -> Result<Field, String> {
        from_rest_at(f, "")
    }

    /// From the Storage Write API's schema (WriteStream.table_schema returned by
    /// CreateWriteStream). An unset mode means NULLABLE, as the API documents.
    pub fn from_storage(f: &StorageField) -> Result<Field, String> {
        from_storage_at(f, "")
    }
}

fn join_path(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}.{name}")
    }
}

fn from_rest_at(f: &RestField, parent: &str) -> Result<Field, String> {
    let path = join_path(parent, &f.name);
    let kind = match f.r#type {
        FieldType::String => Kind::String,
        FieldType::Bytes => Kind::Bytes,
        FieldType::Integer | FieldType::Int64 => Kind::Int64,
        FieldType::Float | FieldType::Float64 => Kind::Float64,
        FieldType::Numeric => Kind::Numeric,
        FieldType::Bignumeric => Kind::BigNumeric,
        FieldType::Boolean | FieldType::Bool => Kind::Bool,
        FieldType::Timestamp => Kind::Timestamp,
        FieldType::Date => Kind::Date,
        FieldType::Time => Kind::Time,
        FieldType::Datetime => Kind::DateTime,
        FieldType::Record | FieldType::Struct => Kind::Record,
        FieldType::Geography => Kind::Geography,
        FieldType::Json => Kind::Json,
        FieldType::Interval => return Err(unsupported(&path, "INTERVAL")),
    };
    let mode = match f.mode.as_deref().map(str::trim) {
        None | Some("") => Mode::Nullable,
        Some(m) if m.eq_ignore_ascii_case("NULLABLE") => Mode::Nullable,
        Some(m) if m.eq_ignore_ascii_case("REQUIRED") => Mode::Required,
        Some(m) if m.eq_ignore_ascii_case("REPEATED") => Mode::Repeated,
        Some(m) => {
            return Err(format!(
                "column `{path}`: unknown mode `{m}` (expected NULLABLE, REQUIRED or REPEATED)"
            ))
        }
    };
    let fields = f
        .fields
        .as_deref()
        .unwrap_or_default()
        .iter()
        .map(|c| from_rest_at(c, &path))
        .collect::<Result<_, _>>()?;
    Ok(Field {
        name: f.name.clone(),
        kind,
        mode,
        fields,
    })
}

fn from_storage_at(f: &StorageField, parent: &str) -> Result<Field, String> {
    let path = join_path(parent, &f.name);
    let kind = match StorageType::try_from(f.r#type) {
        Ok(StorageType::String) => Kind::String,
        Ok(StorageType::Int64) => Kind::Int64,
        Ok(StorageType::Double) => Kind::Float64,
        Ok(StorageType::Struct) => Kind::Record,
        Ok(StorageType::Bytes) => Kind::Bytes,
        Ok(StorageType::Bool) => Kind::Bool,
        Ok(StorageType::Timestamp) => Kind::Timestamp,
        Ok(StorageType::Date) => Kind::Date,
        Ok(StorageType::Time) => Kind::Time,
        Ok(StorageType::Datetime) => Kind::DateTime,
        Ok(StorageType::Geography) => Kind::Geography,
        Ok(StorageType::Numeric) => Kind::Numeric,
        Ok(StorageType::Bignumeric) => Kind::BigNumeric,
        Ok(StorageType::Json) => Kind::Json,
        Ok(t @ (StorageType::Interval | StorageType::Range)) => {
            return Err(unsupported(&path, t.as_str_name()))
        }
        Ok(StorageType::Unspecified) | Err(_) => {
            return Err(format!(
                "column `{path}`: unknown column type (code {})",
                f.r#type
            ))
        }
    };
    let mode = match StorageMode::try_from(f.mode) {
        Ok(StorageMode::Unspecified | StorageMode::Nullable) => Mode::Nullable,
        Ok(StorageMode::Required) => Mode::Required,
        Ok(StorageMode::Repeated) => Mode::Repeated,
        Err(_) => {
            return Err(format!(
                "column `{path}`: unknown column mode (code {})",
                f.mode
            ))
        }
    };
    let fields = f
        .fields
        .iter()
        .map(|c| from_storage_at(c, &path))
        .collect::<Result<_, _>>()?;
    Ok(Field {
        name: f.name.clone(),
        kind,
        mode,
        fields,
    })
}

fn unsupported(path: &str, type_name: &str) -> String {
    format!("column `{path}`: type {type_name} is not supported by the Storage Write encoder")
}

/// How rows that do not quite match the schema are treated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Drop JSON keys that name no column, at every level. BigQuery's `ignoreUnknownValues`
    /// does the same. Without it such a row is an error, so that data is never dropped
    /// without anyone noticing.
    pub ignore_unknown_values: bool,
}

/// Deepest RECORD nesting accepted. BigQuery allows 15 levels. The limit here is higher, so a
/// future BigQuery increase is not rejected, and bounded, so a strange schema cannot overflow
/// the stack through recursion.
const MAX_DEPTH: usize = 64;

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
    messages: Vec<Message>,
    descriptor: DescriptorProto,
    options: Options,
}

#[derive(Debug)]
struct Message {
    columns: Vec<Column>,
    /// Each column under its exact name and under its ASCII-lowercased name. Keys usually
    /// match exactly and are then found without lowercasing (and so without allocating).
    lookup: HashMap<Box<str>, usize>,
    /// Length of the longest column name: longer keys cannot match and need no lowercasing.
    longest: usize,
}

#[derive(Debug)]
struct Column {
    name: String,
    kind: Kind,
    mode: Mode,
    /// The encoded field key (number and wire type), written before every value.
    key: Box<[u8]>,
    /// For RECORD columns, the index of the nested message in `Encoder::messages`.
    message: usize,
}

impl Message {
    fn find(&self, key: &str) -> Option<usize> {
        // Typical tables have a few dozen columns at most: comparing lengths first and then the
        // bytes case-insensitively beats hashing every key (measured in benches/hot_path.rs).
        if self.columns.len() <= 32 {
            if key.len() > self.longest {
                return None;
            }
            return self
                .columns
                .iter()
                .position(|c| c.name.len() == key.len() && c.name.eq_ignore_ascii_case(key));
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
            lookup: HashMap::new(),
            longest: 0,
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
            longest: fields.iter().map(|f| f.name.len()).max().unwrap_or(0),
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

const ROW: &str = "Row";

/// A protobuf identifier. BigQuery's flexible column names (dashes, spaces, non-Latin letters)
/// would need the `column_name` field annotation, which this encoder does not write.
fn is_identifier(name: &str) -> bool {
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

    /// Appends the encoded message for one JSON object to `out`. If there is an error, `out` is
    /// truncated back to its previous length, so one buffer can collect many rows and a bad row
    /// leaves nothing behind. The error names the column path (`payload.items[2].price`) and
    /// what was wrong with the value.
    pub fn encode(&self, json: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        let start = out.len();
        let result = self.encode_row(json, out);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    fn encode_row(&self, json: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        let text = simdutf8::compat::from_utf8(json).map_err(|e| {
            format!(
                "row is not valid UTF-8 (invalid byte at offset {})",
                e.valid_up_to()
            )
        })?;
        if !text.trim_start_matches(is_json_space).starts_with('{') {
            return Err(match serde_json::from_str::<&RawValue>(text) {
                Err(e) => format!("row is not valid JSON: {e}"),
                Ok(raw) => format!(
                    "row is {}, not a JSON object",
                    Json::parse(raw.get()).map_or("a JSON value", |v| v.kind_name())
                ),
            });
        }
        self.encode_object(0, text, out).map_err(Fail::render)
    }

    /// Writes the fields of the object `text` (the raw text of a JSON object, or a whole row) as
    /// message `message`, without a length prefix.
    fn encode_object(&self, message: usize, text: &str, out: &mut Vec<u8>) -> Result<(), Fail> {
        let Some(m) = self.messages.get(message) else {
            return Err(Fail::new("internal error: no such message".into()));
        };
        let mut slots: Vec<Option<&RawValue>> = vec![None; m.columns.len()];
        let mut problem = None;
        let mut de = serde_json::Deserializer::from_str(text);
        let parsed = ObjectSeed {
            message: m,
            slots: &mut slots,
            ignore_unknown: self.options.ignore_unknown_values,
            problem: &mut problem,
        }
        .deserialize(&mut de)
        .and_then(|()| de.end());
        if let Err(e) = parsed {
            return Err(problem.unwrap_or_else(|| Fail::new(format!("row is not valid JSON: {e}"))));
        }
        // Schema order rather than key order, so the same row always gives the same bytes and
        // required columns are checked in one pass.
        for (column, slot) in m.columns.iter().zip(slots) {
            self.encode_column(column, slot, out)
                .map_err(|f| f.within(&column.name))?;
        }
        Ok(())
    }

    fn encode_column(
        &self,
        column: &Column,
        raw: Option<&RawValue>,
        out: &mut Vec<u8>,
    ) -> Result<(), Fail> {
        let Some(raw) = raw else {
            return match column.mode {
                Mode::Required => Err(Fail::new("required column is missing".into())),
                Mode::Nullable | Mode::Repeated => Ok(()),
            };
        };
        let value = Value::parse(raw.get()).map_err(Fail::new)?;
        match (column.mode, &value.json) {
            (Mode::Required, Json::Null) => Err(Fail::new("required column is null".into())),
            (Mode::Nullable | Mode::Repeated, Json::Null) => Ok(()),
            (Mode::Repeated, Json::Array) => {
                let items: Vec<&RawValue> = serde_json::from_str(value.raw)
                    .map_err(|e| Fail::new(format!("not a valid JSON array: {e}")))?;
                for (i, item) in items.into_iter().enumerate() {
                    let item = Value::parse(item.get()).map_err(|e| Fail::new(e).at(i))?;
                    if matches!(item.json, Json::Null) {
                        return Err(Fail::new(
                            "null inside an array (BigQuery arrays cannot hold NULL elements)"
                                .into(),
                        )
                        .at(i));
                    }
                    self.encode_value(column, &item, out).map_err(|f| f.at(i))?;
                }
                Ok(())
            }
            (Mode::Repeated, _) => Err(Fail::new(format!(
                "expected an array (the column is REPEATED {}), found {}",
                column.kind.bigquery_name(),
                value.describe()
            ))),
            (Mode::Nullable | Mode::Required, _) => self.encode_value(column, &value, out),
        }
    }

    /// Writes one occurrence of `column` (key and value). On error, partial output may be left
    /// behind; [`Encoder::encode`] truncates it.
    fn encode_value(&self, column: &Column, value: &Value, out: &mut Vec<u8>) -> Result<(), Fail> {
        out.extend_from_slice(&column.key);
        if column.kind == Kind::Record {
            if !matches!(value.json, Json::Object) {
                return Err(Fail::new(format!(
                    "expected an object (the column is RECORD), found {}",
                    value.describe()
                )));
            }
            // Most nested messages are shorter than 128 bytes, so reserve one length byte and
            // widen it only if needed. That saves encoding each record into a separate buffer.
            let start = out.len() + 1;
            out.push(0);
            self.encode_object(column.message, value.raw, out)?;
            let len = out.len() - start;
            if let Ok(byte @ 0..=127) = u8::try_from(len) {
                out[start - 1] = byte;
            } else {
                let mut prefix = [0u8; 10];
                let mut cursor = &mut prefix[..];
                encode_varint(len as u64, &mut cursor);
                let written = 10 - cursor.len();
                out.splice(start - 1..start, prefix[..written].iter().copied());
            }
            return Ok(());
        }
        encode_scalar(column.kind, value, out).map_err(Fail::new)
    }
}

fn is_json_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// Parses one JSON object into per-column slots of borrowed raw values, without building a
/// tree. Unknown and duplicate keys are reported through `problem`: serde's own error type
/// would add a line and column that mean nothing to the reader.
struct ObjectSeed<'a, 'de> {
    message: &'a Message,
    slots: &'a mut [Option<&'de RawValue>],
    ignore_unknown: bool,
    problem: &'a mut Option<Fail>,
}

impl<'de> DeserializeSeed<'de> for ObjectSeed<'_, 'de> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ObjectSeed<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let ObjectSeed {
            message,
            slots,
            ignore_unknown,
            problem,
        } = self;
        while let Some(Key(key)) = map.next_key()? {
            match message.find(&key) {
                Some(i) => {
                    let raw: &'de RawValue = map.next_value()?;
                    let Some(slot) = slots.get_mut(i) else {
                        continue;
                    };
                    if slot.is_some() {
                        *problem = Some(
                            Fail::new(
                                "the key appears more than once in the object (keys match \
                                 columns case-insensitively), so which value to keep is \
                                 ambiguous"
                                    .into(),
                            )
                            .within(&key),
                        );
                        return Err(de::Error::custom("duplicate key"));
                    }
                    *slot = Some(raw);
                }
                None if ignore_unknown => {
                    map.next_value::<IgnoredAny>()?;
                }
                None => {
                    *problem = Some(Fail::unknown(key.into_owned()));
                    return Err(de::Error::custom("unknown key"));
                }
            }
        }
        Ok(())
    }
}

/// An object key, borrowed from the input unless it contains escapes. Serde's own `Cow<str>`
/// always copies.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object key")
            }

            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }

            fn visit_string<E: de::Error>(self, v: String) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

/// A JSON value identified by its first character. Its raw text has already been validated
/// by serde_json, so nothing more needs parsing until a column type asks for it.
enum Json<'a> {
    Null,
    Bool(bool),
    /// The number's exact text.
    Number,
    String(Cow<'a, str>),
    Object,
    Array,
}

struct Value<'a> {
    /// The value's JSON text, without surrounding whitespace.
    raw: &'a str,
    json: Json<'a>,
}

impl<'a> Value<'a> {
    fn parse(raw: &'a str) -> Result<Value<'a>, String> {
        let raw = raw.trim_matches(is_json_space);
        Ok(Value {
            raw,
            json: Json::parse(raw)?,
        })
    }

    /// The value for an error message: its JSON text, shortened.
    fn describe(&self) -> String {
        match self.json {
            Json::Null => "null".into(),
            Json::Bool(b) => format!("`{b}`"),
            Json::Number => format!("the number {}", shorten(self.raw)),
            Json::String(_) => format!("the string {}", shorten(self.raw)),
            Json::Object => "an object".into(),
            Json::Array => "an array".into(),
        }
    }

    /// How the value appears in "... is not a valid X" messages.
    fn shown(&self) -> String {
        shorten(self.raw)
    }
}

impl<'a> Json<'a> {
    fn parse(raw: &'a str) -> Result<Json<'a>, String> {
        Ok(match raw.as_bytes().first() {
            Some(b'n') => Json::Null,
            Some(b't') => Json::Bool(true),
            Some(b'f') => Json::Bool(false),
            Some(b'{') => Json::Object,
            Some(b'[') => Json::Array,
            Some(b'"') => match raw.get(1..raw.len().saturating_sub(1)) {
                Some(inner) if !inner.contains('\\') => Json::String(Cow::Borrowed(inner)),
                _ => Json::String(Cow::Owned(
                    serde_json::from_str::<String>(raw)
                        .map_err(|e| format!("invalid JSON string: {e}"))?,
                )),
            },
            _ => Json::Number,
        })
    }

    fn kind_name(&self) -> &'static str {
        match self {
            Json::Null => "null",
            Json::Bool(_) => "a boolean",
            Json::Number => "a number",
            Json::String(_) => "a string",
            Json::Object => "an object",
            Json::Array => "an array",
        }
    }
}

/// Error messages quote the offending value. Values are shortened: the whole row is in the
/// dead letter anyway, and a megabyte-long message helps no one.
fn shorten(s: &str) -> String {
    const MAX: usize = 80;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// A conversion error, with the path built up on the way out of the recursion (innermost
/// first). Only failing rows pay for it.
struct Fail {
    path: Vec<Segment>,
    message: String,
    unknown: bool,
}

enum Segment {
    Name(String),
    Index(usize),
}

impl Fail {
    fn new(message: String) -> Fail {
        Fail {
            path: Vec::new(),
            message,
            unknown: false,
        }
    }

    fn unknown(key: String) -> Fail {
        Fail {
            path: vec![Segment::Name(key)],
            message: String::new(),
            unknown: true,
        }
    }

    fn within(mut self, name: &str) -> Fail {
        self.path.push(Segment::Name(name.to_owned()));
        self
    }

    fn at(mut self, index: usize) -> Fail {
        self.path.push(Segment::Index(index));
        self
    }

    fn render(self) -> String {
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
            format!("no such field: {path}")
        } else if path.is_empty() {
            self.message
        } else {
            format!("{path}: {}", self.message)
        }
    }
}

/// Standard base64 with or without padding: BigQuery's JSON import takes either, and
/// producers differ. Non-zero trailing bits are accepted, as most decoders do.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

fn put_len(out: &mut Vec<u8>, bytes: &[u8]) {
    encode_varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

fn mismatch(expected: &str, kind: Kind, value: &Value) -> String {
    format!(
        "expected {expected} (the column is {}), found {}",
        kind.bigquery_name(),
        value.describe()
    )
}

fn invalid(value: &Value, kind: Kind, reason: &str) -> String {
    format!(
        "{} is not a valid {}: {reason}",
        value.shown(),
        kind.bigquery_name()
    )
}

/// Writes the payload of one scalar value (its key is already written).
fn encode_scalar(kind: Kind, value: &Value, out: &mut Vec<u8>) -> Result<(), String> {
    match kind {
        Kind::String => match &value.json {
            Json::String(s) => put_len(out, s.as_bytes()),
            // BigQuery's JSON import stores numbers and booleans given for STRING columns as
            // their text, so the same rows load here as through insertAll or a load job.
            Json::Number | Json::Bool(_) => put_len(out, value.raw.as_bytes()),
            _ => return Err(mismatch("a string", kind, value)),
        },
        Kind::Geography => match &value.json {
            Json::String(s) => put_len(out, s.as_bytes()),
            // A GeoJSON geometry given as an object rather than as a string: its text is
            // GeoJSON, which BigQuery parses.
            Json::Object => put_len(out, value.raw.as_bytes()),
            _ => return Err(mismatch("WKT or GeoJSON text", kind, value)),
        },
        // The value's own JSON text, verbatim. Re-serialising through serde_json would turn
        // large or precise numbers into f64s, and unwrapping a JSON string would make BigQuery
        // read its content as JSON. That would change the value, or fail if the content is not
        // JSON. A string stays a JSON string.
        Kind::Json => put_len(out, value.raw.as_bytes()),
        Kind::Int64 => {
            let text: &str = match &value.json {
                Json::Number => value.raw,
                Json::String(s) => s,
                _ => return Err(mismatch("an integer", kind, value)),
            };
            let n = parse_int64(text).map_err(|reason| invalid(value, kind, reason))?;
            encode_varint(n as u64, out);
        }
        Kind::Float64 => {
            let x = match &value.json {
                Json::Number => parse_float64(value.raw),
                Json::String(s) => parse_float64(s),
                _ => return Err(mismatch("a number", kind, value)),
            }
            .map_err(|reason| invalid(value, kind, reason))?;
            out.extend_from_slice(&x.to_le_bytes());
        }
        Kind::Bool => {
            let b = match &value.json {
                Json::Bool(b) => *b,
                Json::String(s) if s.eq_ignore_ascii_case("true") => true,
                Json::String(s) if s.eq_ignore_ascii_case("false") => false,
                Json::String(_) => {
                    return Err(invalid(value, kind, "expected true or false"));
                }
                _ => return Err(mismatch("true or false", kind, value)),
            };
            out.push(u8::from(b));
        }
        Kind::Bytes => {
            let Json::String(s) = &value.json else {
                return Err(mismatch("a base64 string", kind, value));
            };
            put_base64(s, out).map_err(|reason| invalid(value, kind, reason))?;
        }
        Kind::Timestamp => {
            let micros = match &value.json {
                Json::Number => seconds_to_micros(value.raw),
                Json::String(s) if parse_decimal(s).is_some() => seconds_to_micros(s),
                Json::String(s) => parse_timestamp(s),
                _ => return Err(mismatch("a timestamp string or epoch seconds", kind, value)),
            }
            .map_err(|reason| invalid(value, kind, reason))?;
            encode_varint(micros as u64, out);
        }
        Kind::Date => {
            let Json::String(s) = &value.json else {
                return Err(mismatch("a YYYY-MM-DD string", kind, value));
            };
            let days = parse_date_only(s).map_err(|reason| invalid(value, kind, reason))?;
            // int32 is written sign-extended to 64 bits, as protobuf requires for negatives.
            encode_varint(i64::from(days) as u64, out);
        }
        Kind::DateTime => {
            let Json::String(s) = &value.json else {
                return Err(mismatch("a YYYY-MM-DD HH:MM:SS string", kind, value));
            };
            let (date, time) = parse_datetime(s).map_err(|reason| invalid(value, kind, reason))?;
            let len = 11 + time.text_len();
            encode_varint(len as u64, out);
            push_date(date, out);
            out.push(b' ');
            time.push(out);
        }
        Kind::Time => {
            let Json::String(s) = &value.json else {
                return Err(mismatch("an HH:MM:SS string", kind, value));
            };
            let mut cursor = Cursor::new(s);
            let time = cursor
                .time()
                .and_then(|t| {
                    if cursor.done() {
                        Ok(t)
                    } else {
                        Err(TIME_FORMAT)
                    }
                })
                .map_err(|reason| invalid(value, kind, reason))?;
            encode_varint(time.text_len() as u64, out);
            time.push(out);
        }
        Kind::Numeric | Kind::BigNumeric => {
            let text: &str = match &value.json {
                // The number's exact text. serde_json is built without `arbitrary_precision`,
                // so going through its number type would round to f64.
                Json::Number => value.raw,
                Json::String(s) => s,
                _ => return Err(mismatch("a decimal number", kind, value)),
            };
            let decimal =
                parse_decimal(text).ok_or_else(|| invalid(value, kind, "not a decimal number"))?;
            // NUMERIC holds 29 integer digits. BIGNUMERIC's bound is about 5.79e38, checked here
            // to 39 digits. A valid value is never rejected, and a hopeless one does not fail
            // a whole AppendRows request.
            let limit = if kind == Kind::Numeric { 29 } else { 39 };
            if decimal.integer_digits() > limit {
                return Err(invalid(
                    value,
                    kind,
                    &format!("out of range (at most {limit} digits before the decimal point)"),
                ));
            }
            put_len(out, text.as_bytes());
        }
        Kind::Record => return Err("internal error: RECORD encoded as a scalar".into()),
    }
    Ok(())
}

fn put_base64(s: &str, out: &mut Vec<u8>) -> Result<(), &'static str> {
    const REASON: &str = "expected standard base64 (A–Z, a–z, 0–9, +, /, optional = padding)";
    // The length prefix comes first, so the decoded length is computed up front and the
    // bytes are decoded straight into `out`.
    let unpadded = s.trim_end_matches('=');
    if s.len() - unpadded.len() > 2 {
        return Err(REASON);
    }
    let n = unpadded.len();
    let expected = match n % 4 {
        0 => n / 4 * 3,
        2 => n / 4 * 3 + 1,
        3 => n / 4 * 3 + 2,
        _ => return Err(REASON),
    };
    encode_varint(expected as u64, out);
    let start = out.len();
    BASE64.decode_vec(s, out).map_err(|_| REASON)?;
    if out.len() - start != expected {
        return Err(REASON);
    }
    Ok(())
}

/// A decimal number's parts, borrowed from its text: `[+-]digits[.digits][e[+-]digits]`.
/// Either digit run may be empty, but not both.
struct Decimal<'a> {
    negative: bool,
    int: &'a str,
    frac: &'a str,
    /// Saturates on absurd exponents; anything that large is out of range for every type.
    exp: i64,
}

fn parse_decimal(s: &str) -> Option<Decimal<'_>> {
    let b = s.as_bytes();
    let mut i = 0;
    let negative = match b.first() {
        Some(b'-') => {
            i = 1;
            true
        }
        Some(b'+') => {
            i = 1;
            false
        }
        _ => false,
    };
    let digits = |mut i: usize| {
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        i
    };
    let int_end = digits(i);
    let int = s.get(i..int_end)?;
    i = int_end;
    let mut frac = "";
    if b.get(i) == Some(&b'.') {
        let frac_end = digits(i + 1);
        frac = s.get(i + 1..frac_end)?;
        i = frac_end;
    }
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let mut exp: i64 = 0;
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        let exp_negative = match b.get(i) {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let exp_end = digits(i);
        if exp_end == i {
            return None;
        }
        for &d in &b[i..exp_end] {
            exp = exp.saturating_mul(10).saturating_add(i64::from(d - b'0'));
        }
        if exp_negative {
            exp = -exp;
        }
        i = exp_end;
    }
    (i == b.len()).then_some(Decimal {
        negative,
        int,
        frac,
        exp,
    })
}

impl Decimal<'_> {
    /// |value| × 10^scale, truncated to an integer, and whether that was exact. `None` if it
    /// does not fit in a u128.
    fn scaled(&self, scale: u32) -> Option<(u128, bool)> {
        let frac_len = i64::try_from(self.frac.len()).unwrap_or(i64::MAX);
        let shift = self
            .exp
            .saturating_add(i64::from(scale))
            .saturating_sub(frac_len);
        let total = self.int.len() + self.frac.len();
        let keep = if shift >= 0 {
            total
        } else {
            total.saturating_sub(usize::try_from(shift.unsigned_abs()).unwrap_or(usize::MAX))
        };
        let mut value: u128 = 0;
        let mut exact = true;
        for (i, b) in self.int.bytes().chain(self.frac.bytes()).enumerate() {
            let d = u128::from(b - b'0');
            if i < keep {
                value = value.checked_mul(10)?.checked_add(d)?;
            } else if d != 0 {
                exact = false;
            }
        }
        if shift > 0 && value != 0 {
            let power = 10u128.checked_pow(u32::try_from(shift).ok()?)?;
            value = value.checked_mul(power)?;
        }
        Some((value, exact))
    }

    /// How many digits the value has before the decimal point (0 or less below 1).
    fn integer_digits(&self) -> i64 {
        let digits = self.int.bytes().chain(self.frac.bytes());
        let total = self.int.len() + self.frac.len();
        let Some(first) = digits.into_iter().position(|b| b != b'0') else {
            return 0;
        };
        let significant = i64::try_from(total - first).unwrap_or(i64::MAX);
        let frac_len = i64::try_from(self.frac.len()).unwrap_or(i64::MAX);
        significant
            .saturating_add(self.exp)
            .saturating_sub(frac_len)
    }
}

/// An integer, possibly written as `1.0` or `1e3`. Such numbers are accepted when their value
/// is whole, as BigQuery accepts them. Parsed exactly, without going through f64, so
/// `9007199254740993` stays itself.
fn parse_int64(text: &str) -> Result<i64, &'static str> {
    const RANGE: &str = "out of range (INT64 holds -9223372036854775808 to 9223372036854775807)";
    let decimal = parse_decimal(text).ok_or("not an integer")?;
    let (magnitude, exact) = decimal.scaled(0).ok_or(RANGE)?;
    if !exact {
        return Err("has a fractional part");
    }
    if decimal.negative {
        if magnitude <= 1u128 << 63 {
            Ok((magnitude as i128).wrapping_neg() as i64)
        } else {
            Err(RANGE)
        }
    } else {
        i64::try_from(magnitude).map_err(|_| RANGE)
    }
}

/// A number, or one of the spellings BigQuery's JSON import uses for non-finite values.
fn parse_float64(text: &str) -> Result<f64, &'static str> {
    let special = match text.strip_prefix(['+', '-']).unwrap_or(text) {
        t if t.eq_ignore_ascii_case("nan") => Some(f64::NAN),
        t if t.eq_ignore_ascii_case("infinity") || t.eq_ignore_ascii_case("inf") => {
            Some(if text.starts_with('-') {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            })
        }
        _ => None,
    };
    if let Some(x) = special {
        return Ok(x);
    }
    if parse_decimal(text).is_none() {
        return Err("not a number (expected digits, NaN, Infinity or -Infinity)");
    }
    // Rust's parser rounds correctly, and it accepts everything `parse_decimal` does.
    match text.parse::<f64>() {
        Ok(x) if x.is_finite() => Ok(x),
        _ => Err("out of range for FLOAT64"),
    }
}

/// BigQuery's TIMESTAMP range, 0001-01-01 00:00:00 to 9999-12-31 23:59:59.999999 UTC, in
/// microseconds since the epoch.
const MIN_MICROS: i64 = -62_135_596_800_000_000;
const MAX_MICROS: i64 = 253_402_300_799_999_999;
const TIMESTAMP_RANGE: &str =
    "out of range (TIMESTAMP runs from 0001-01-01 to 9999-12-31 23:59:59.999999 UTC)";

/// Seconds since the epoch, possibly fractional. Parsed exactly from the text and truncated to
/// microseconds (toward the past), BigQuery's precision.
fn seconds_to_micros(text: &str) -> Result<i64, &'static str> {
    let decimal = parse_decimal(text).ok_or("not a number of seconds")?;
    let (magnitude, exact) = decimal.scaled(6).ok_or(TIMESTAMP_RANGE)?;
    let magnitude = i64::try_from(magnitude).map_err(|_| TIMESTAMP_RANGE)?;
    let micros = if decimal.negative {
        // Floor, so a fraction of a microsecond before an instant stays before it.
        -magnitude - i64::from(!exact)
    } else {
        magnitude
    };
    if (MIN_MICROS..=MAX_MICROS).contains(&micros) {
        Ok(micros)
    } else {
        Err(TIMESTAMP_RANGE)
    }
}

const DATE_FORMAT: &str = "expected YYYY-MM-DD";
const TIME_FORMAT: &str = "expected HH:MM:SS with up to 6 fractional digits";
const DATETIME_FORMAT: &str = "expected YYYY-MM-DD HH:MM:SS[.ffffff] (or T between date and time)";
const TIMESTAMP_FORMAT: &str = "expected YYYY-MM-DD HH:MM:SS[.ffffff] (or T between date and \
     time) with an optional Z, UTC or ±HH:MM offset, or seconds since the epoch";

/// A time of day as parsed: fields validated, the fraction kept as the digits written (up to
/// 6; digits beyond microseconds are dropped, since BigQuery cannot store them).
struct Time<'a> {
    hour: u32,
    minute: u32,
    second: u32,
    fraction: &'a str,
}

impl Time<'_> {
    fn micros(&self) -> u32 {
        let mut micros = 0;
        for i in 0..6 {
            let d = self.fraction.as_bytes().get(i).map_or(0, |b| b - b'0');
            micros = micros * 10 + u32::from(d);
        }
        micros
    }

    /// Length of the normalised text `HH:MM:SS[.f…]`.
    fn text_len(&self) -> usize {
        8 + if self.fraction.is_empty() {
            0
        } else {
            1 + self.fraction.len()
        }
    }

    fn push(&self, out: &mut Vec<u8>) {
        push_digits(out, self.hour, 2);
        out.push(b':');
        push_digits(out, self.minute, 2);
        out.push(b':');
        push_digits(out, self.second, 2);
        if !self.fraction.is_empty() {
            out.push(b'.');
            out.extend_from_slice(self.fraction.as_bytes());
        }
    }
}

fn push_digits(out: &mut Vec<u8>, value: u32, width: u32) {
    for i in (0..width).rev() {
        out.push(b'0' + (value / 10u32.pow(i) % 10) as u8);
    }
}

fn push_date(date: NaiveDate, out: &mut Vec<u8>) {
    push_digits(out, date.year().unsigned_abs(), 4);
    out.push(b'-');
    push_digits(out, date.month(), 2);
    out.push(b'-');
    push_digits(out, date.day(), 2);
}

/// A hand-written scanner for BigQuery's date and time literals. It is stricter and clearer in
/// its errors than chrono's format strings, which accept signs, extra digits and padding that
/// BigQuery does not. chrono validates the calendar.
struct Cursor<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Cursor<'a> {
    fn new(s: &'a str) -> Cursor<'a> {
        Cursor { s, i: 0 }
    }

    fn done(&self) -> bool {
        self.i >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.i).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    /// Between `min` and `max` ASCII digits as a number.
    /// On failure nothing is consumed.
    fn number(&mut self, min: usize, max: usize) -> Option<u32> {
        let start = self.i;
        let mut value = 0u32;
        while self.i - start < max {
            match self.peek() {
                Some(b @ b'0'..=b'9') => {
                    value = value * 10 + u32::from(b - b'0');
                    self.i += 1;
                }
                _ => break,
            }
        }
        if self.i - start < min {
            self.i = start;
            return None;
        }
        Some(value)
    }

    /// `YYYY-[M]M-[D]D`, as in BigQuery's date literals.
    fn date(&mut self) -> Result<NaiveDate, &'static str> {
        let year = self.number(4, 4).ok_or(DATE_FORMAT)?;
        if !self.eat(b'-') {
            return Err(DATE_FORMAT);
        }
        let month = self.number(1, 2).ok_or(DATE_FORMAT)?;
        if !self.eat(b'-') {
            return Err(DATE_FORMAT);
        }
        let day = self.number(1, 2).ok_or(DATE_FORMAT)?;
        if year == 0 {
            return Err("year 0000 is out of range (dates run from 0001-01-01 to 9999-12-31)");
        }
        let year = i32::try_from(year).map_err(|_| DATE_FORMAT)?;
        NaiveDate::from_ymd_opt(year, month, day).ok_or("no such day in the calendar")
    }

    /// `[H]H:[M]M:[S]S[.fraction]`, with up to 9 fractional digits (nanoseconds, as Java and Go
    /// loggers write them), truncated to microseconds.
    fn time(&mut self) -> Result<Time<'a>, &'static str> {
        let hour = self.number(1, 2).ok_or(TIME_FORMAT)?;
        if !self.eat(b':') {
            return Err(TIME_FORMAT);
        }
        let minute = self.number(1, 2).ok_or(TIME_FORMAT)?;
        if !self.eat(b':') {
            return Err(TIME_FORMAT);
        }
        let second = self.number(1, 2).ok_or(TIME_FORMAT)?;
        let mut fraction = "";
        if self.eat(b'.') {
            let start = self.i;
            self.number(1, 9).ok_or(TIME_FORMAT)?;
            let digits = self.s.get(start..self.i).ok_or(TIME_FORMAT)?;
            fraction = digits.get(..6).unwrap_or(digits);
        }
        if hour > 23 || minute > 59 || second > 59 {
            return Err("no such time of day (hours run 00–23, minutes and seconds 00–59)");
        }
        Ok(Time {
            hour,
            minute,
            second,
            fraction,
        })
    }
}

/// Days since 1970-01-01 from `YYYY-MM-DD`, the DATE proto encoding.
fn parse_date_only(s: &str) -> Result<i32, &'static str> {
    let mut cursor = Cursor::new(s);
    let date = cursor.date()?;
    if !cursor.done() {
        return Err(DATE_FORMAT);
    }
    Ok(days_since_epoch(date))
}

fn days_since_epoch(date: NaiveDate) -> i32 {
    /// `num_days_from_ce` of 1970-01-01.
    const EPOCH_FROM_CE: i32 = 719_163;
    date.num_days_from_ce() - EPOCH_FROM_CE
}

/// `YYYY-MM-DD[ |T]HH:MM:SS[.ffffff]`. A zone or offset is rejected rather than dropped:
/// DATETIME is civil time, and dropping the offset would silently shift the value.
fn parse_datetime(s: &str) -> Result<(NaiveDate, Time<'_>), &'static str> {
    let mut cursor = Cursor::new(s);
    let date = cursor
        .date()
        .map_err(|e| if e == DATE_FORMAT { DATETIME_FORMAT } else { e })?;
    if !(cursor.eat(b' ') || cursor.eat(b'T') || cursor.eat(b't')) {
        return Err(DATETIME_FORMAT);
    }
    let time = cursor
        .time()
        .map_err(|e| if e == TIME_FORMAT { DATETIME_FORMAT } else { e })?;
    if !cursor.done() {
        return Err("DATETIME has no time zone; only YYYY-MM-DD HH:MM:SS[.ffffff] is accepted");
    }
    Ok((date, time))
}

/// RFC 3339 (`2024-01-02T03:04:05.123456Z`, `+01:00`) and BigQuery's canonical
/// `2024-01-02 03:04:05[.ffffff][ UTC|Z|±HH:MM]`. No zone means UTC, as in BigQuery. A date
/// alone is rejected: it is more likely a wrong column than midnight UTC.
fn parse_timestamp(s: &str) -> Result<i64, &'static str> {
    let mut cursor = Cursor::new(s);
    let date = cursor.date().map_err(|e| {
        if e == DATE_FORMAT {
            TIMESTAMP_FORMAT
        } else {
            e
        }
    })?;
    if cursor.done() {
        return Err("a date without a time of day");
    }
    if !(cursor.eat(b' ') || cursor.eat(b'T') || cursor.eat(b't')) {
        return Err(TIMESTAMP_FORMAT);
    }
    let time = cursor.time().map_err(|e| {
        if e == TIME_FORMAT {
            TIMESTAMP_FORMAT
        } else {
            e
        }
    })?;
    let spaced = cursor.eat(b' ');
    let offset_seconds: i64 = match cursor.peek() {
        None if !spaced => 0,
        Some(b'Z' | b'z') => {
            cursor.i += 1;
            0
        }
        Some(b'+' | b'-') => {
            let negative = cursor.peek() == Some(b'-');
            cursor.i += 1;
            let hours = cursor.number(2, 2).ok_or(TIMESTAMP_FORMAT)?;
            let minutes = if cursor.eat(b':') {
                cursor.number(2, 2).ok_or(TIMESTAMP_FORMAT)?
            } else {
                cursor.number(2, 2).unwrap_or(0)
            };
            if hours > 23 || minutes > 59 {
                return Err("offset out of range");
            }
            let seconds = i64::from(hours * 3600 + minutes * 60);
            if negative {
                -seconds
            } else {
                seconds
            }
        }
        Some(_)
            if cursor
                .s
                .get(cursor.i..)
                .is_some_and(|rest| rest.eq_ignore_ascii_case("utc")) =>
        {
            cursor.i = cursor.s.len();
            0
        }
        _ => return Err(TIMESTAMP_FORMAT),
    };
    if !cursor.done() {
        return Err(TIMESTAMP_FORMAT);
    }
    let time_of_day = NaiveTime::from_hms_opt(time.hour, time.minute, time.second)
        .ok_or("no such time of day")?;
    let seconds = date.and_time(time_of_day).and_utc().timestamp() - offset_seconds;
    let micros = seconds * 1_000_000 + i64::from(time.micros());
    if (MIN_MICROS..=MAX_MICROS).contains(&micros) {
        Ok(micros)
    } else {
        Err(TIMESTAMP_RANGE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        let message =
            DynamicMessage::decode(row_descriptor(encoder), out.as_slice()).expect("decodes");
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
                one_err(Kind::Bytes, bad)
                    .contains("is not a valid BYTES: expected standard base64"),
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
        assert!(one_err(Kind::Timestamp, "true")
            .contains("expected a timestamp string or epoch seconds"));
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
            match enc.encode(&row, &mut out) {
                Ok(()) => {
                    DynamicMessage::decode(descriptor.clone(), &out[1..]).expect("valid protobuf");
                }
                Err(e) => {
                    assert_eq!(out, [9]);
                    assert!(!e.is_empty());
                }
            }
        }
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
}
