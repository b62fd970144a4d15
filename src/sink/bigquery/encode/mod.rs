//! Rows as protocol buffers for the BigQuery Storage Write API.
//!
//! The Storage Write API takes each row as a serialized protobuf message, together with a
//! `DescriptorProto` that describes the message. The table's schema is only known at run time
//! (it comes from the table or a schema file), so there is no generated code: [`Encoder`] turns
//! the schema into a descriptor once, then writes protobuf wire format straight from each JSON
//! row, in one pass over its bytes. It never builds a tree and never parses a value twice: a
//! column's value is converted where the scanner meets it, a RECORD is encoded as the scanner
//! walks into it, and a key that names no column is skipped by the crate's JSON validator.
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
//!
//! The parts, one job each:
//! - this file: the schema as the encoder sees it ([`Field`], [`Kind`], [`Mode`]), converted
//!   from either BigQuery API, and the [`Options`];
//! - `descriptor`: the schema → the `DescriptorProto` and the per-message lookup tables
//!   ([`Encoder::new`]);
//! - `walk`: the one-pass row scanner that writes each column as it meets it, and the
//!   column-path errors ([`Encoder::encode`]);
//! - `values`: one JSON scalar → one column type's wire bytes (INT64, FLOAT64, NUMERIC, BYTES, …);
//! - `datetime`: BigQuery's DATE, TIME, DATETIME and TIMESTAMP literals.

mod datetime;
mod descriptor;
mod fail;
mod values;
mod walk;

#[cfg(test)]
mod tests;

use gcp_bigquery_client::google::cloud::bigquery::storage::v1::table_field_schema::{
    Mode as StorageMode, Type as StorageType,
};
use gcp_bigquery_client::google::cloud::bigquery::storage::v1::TableFieldSchema as StorageField;
use gcp_bigquery_client::model::field_type::FieldType;
use gcp_bigquery_client::model::table_field_schema::TableFieldSchema as RestField;
use prost::encoding::WireType;
use prost_types::field_descriptor_proto::Type as ProtoType;

pub use descriptor::Encoder;

/// Why one row could not be encoded. Typed so that a writer evolving the schema can tell a row
/// that failed *only* for lack of a column (which a new column fixes) from one that is wrong
/// for the table (which stays a record error). Built only for failing rows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A key names no column; `path` is where (`payload.items[0].cost`). The encoder stops at
    /// the first such key, so other problems of the row may be found only once it fits.
    #[error("no such field: {path}")]
    UnknownField { path: String },
    /// Anything else: a value the column cannot take, a missing REQUIRED column, not JSON.
    #[error("{0}")]
    Invalid(String),
}

impl EncodeError {
    pub fn is_unknown_field(&self) -> bool {
        matches!(self, EncodeError::UnknownField { .. })
    }
}

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
    pub(super) fn proto_type(self) -> ProtoType {
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

    pub(super) fn wire_type(self) -> WireType {
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

pub(super) fn join_path(parent: &str, name: &str) -> String {
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
    /// `--schema-evolution add-columns`: an unknown key whose value carries no data (null, an
    /// empty array or object, or containers of only those) is skipped instead of refusing the
    /// row. Such a value gives no type to add a column with (the column waits for a record
    /// with a value), and writing the row without it loses nothing: the column, once added,
    /// reads NULL for this row either way. Any other unknown key stays an
    /// [`EncodeError::UnknownField`], for the writer to add the column.
    pub skip_unknown_empty: bool,
}
