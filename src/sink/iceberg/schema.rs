//! The table's Iceberg schema → the column kinds [`super::convert`] checks rows against.
//! Types this sink cannot write (uuid, fixed, binary, maps with non-string keys) refuse the
//! table at start, naming the column, rather than failing every record later.

use iceberg::spec::{NestedField, PrimitiveType, Schema, Type};

use super::convert::{Field, Kind};

pub fn columns(schema: &Schema) -> Result<Vec<Field>, String> {
    schema
        .as_struct()
        .fields()
        .iter()
        .map(|f| field(f, &f.name))
        .collect()
}

fn field(f: &NestedField, path: &str) -> Result<Field, String> {
    Ok(Field {
        name: f.name.clone(),
        required: f.required,
        kind: kind(&f.field_type, path)?,
    })
}

fn kind(t: &Type, path: &str) -> Result<Kind, String> {
    let unsupported = |what: &str| {
        Err(format!(
            "column `{path}` is of type {what}, which this sink cannot write"
        ))
    };
    Ok(match t {
        Type::Primitive(p) => match p {
            PrimitiveType::Boolean => Kind::Boolean,
            PrimitiveType::Int => Kind::Int,
            PrimitiveType::Long => Kind::Long,
            PrimitiveType::Float => Kind::Float,
            PrimitiveType::Double => Kind::Double,
            PrimitiveType::Decimal { precision, scale } => Kind::Decimal {
                precision: *precision,
                scale: *scale,
            },
            PrimitiveType::Date => Kind::Date,
            PrimitiveType::Time => Kind::Time,
            PrimitiveType::Timestamp => Kind::Timestamp {
                tz: false,
                ns: false,
            },
            PrimitiveType::Timestamptz => Kind::Timestamp {
                tz: true,
                ns: false,
            },
            PrimitiveType::TimestampNs => Kind::Timestamp {
                tz: false,
                ns: true,
            },
            PrimitiveType::TimestamptzNs => Kind::Timestamp { tz: true, ns: true },
            PrimitiveType::String => Kind::String,
            PrimitiveType::Uuid => return unsupported("uuid"),
            PrimitiveType::Fixed(n) => return unsupported(&format!("fixed[{n}]")),
            PrimitiveType::Binary => return unsupported("binary"),
        },
        Type::Struct(s) => Kind::Struct(
            s.fields()
                .iter()
                .map(|f| field(f, &format!("{path}.{}", f.name)))
                .collect::<Result<_, _>>()?,
        ),
        Type::List(l) => Kind::List(Box::new(field(&l.element_field, &format!("{path}[]"))?)),
        Type::Map(m) => {
            if *m.key_field.field_type != Type::Primitive(PrimitiveType::String) {
                return unsupported("map with non-string keys");
            }
            Kind::Map(Box::new(field(&m.value_field, &format!("{path}{{}}"))?))
        }
    })
}
