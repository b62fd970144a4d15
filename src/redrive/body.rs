//! A dead letter's bytes, wherever they are, read as a stream.
//!
//! A records letter can be far larger than memory (millions of bad records, or one record of
//! gigabytes kept whole), so neither listing nor redriving ever holds one whole: listing reads
//! the header and counts the records while skipping them, and redriving deserialises one record
//! at a time from the stream. Letters from S3 are downloaded to an anonymous temporary file
//! first.

use std::fs::File;
use std::io::{self, BufReader, Cursor, Read};
use std::path::PathBuf;
use std::sync::Arc;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// Where a letter's bytes are.
#[derive(Debug, Clone)]
pub enum Body {
    File(PathBuf),
    /// An anonymous temporary file (a letter downloaded from S3).
    Temp(Arc<File>),
    Bytes(Arc<Vec<u8>>),
}

impl Body {
    pub fn reader(&self) -> io::Result<Box<dyn Read + Send>> {
        Ok(match self {
            Body::File(p) => Box::new(BufReader::with_capacity(256 * 1024, File::open(p)?)),
            Body::Temp(f) => {
                use std::io::{Seek, SeekFrom};
                let mut f = f.try_clone()?;
                f.seek(SeekFrom::Start(0))?;
                Box::new(BufReader::with_capacity(256 * 1024, f))
            }
            Body::Bytes(b) => Box::new(Cursor::new(Arc::clone(b).as_ref().clone())),
        })
    }
}

/// How many records a letter holds, counted while skipping them (nothing is kept).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordCount(usize);

impl RecordCount {
    pub fn len(&self) -> usize {
        self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }
}

impl<'de> Deserialize<'de> for RecordCount {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Count;
        impl<'de> Visitor<'de> for Count {
            type Value = RecordCount;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an array of records")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RecordCount, A::Error> {
                let mut n = 0;
                while seq.next_element::<IgnoredAny>()?.is_some() {
                    n += 1;
                }
                Ok(RecordCount(n))
            }
        }
        d.deserialize_seq(Count)
    }
}

/// Calls `each` for every element of the document's `records` array, one at a time.
/// `each` returning `Err` stops the walk and that error is returned.
pub fn for_each_record<T, E>(
    reader: impl Read,
    mut each: impl FnMut(T) -> Result<(), E>,
) -> Result<Result<(), E>, serde_json::Error>
where
    T: for<'de> Deserialize<'de>,
{
    let mut stopped: Option<E> = None;
    let walk = Walk {
        each: &mut each,
        stopped: &mut stopped,
        _t: std::marker::PhantomData,
    };
    let mut de = serde_json::Deserializer::from_reader(reader);
    match de::Deserializer::deserialize_map(&mut de, walk) {
        Ok(()) => Ok(Ok(())),
        Err(e) => match stopped {
            Some(s) => Ok(Err(s)),
            None => Err(e),
        },
    }
}

struct Walk<'a, T, E, F> {
    each: &'a mut F,
    stopped: &'a mut Option<E>,
    _t: std::marker::PhantomData<T>,
}

impl<'de, T, E, F> Visitor<'de> for Walk<'_, T, E, F>
where
    T: for<'x> Deserialize<'x>,
    F: FnMut(T) -> Result<(), E>,
{
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a dead letter")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            if key == "records" {
                map.next_value_seed(Elements {
                    each: &mut *self.each,
                    stopped: &mut *self.stopped,
                    _t: std::marker::PhantomData,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

struct Elements<'a, T, E, F> {
    each: &'a mut F,
    stopped: &'a mut Option<E>,
    _t: std::marker::PhantomData<T>,
}

impl<'de, T, E, F> DeserializeSeed<'de> for Elements<'_, T, E, F>
where
    T: for<'x> Deserialize<'x>,
    F: FnMut(T) -> Result<(), E>,
{
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, T, E, F> Visitor<'de> for Elements<'_, T, E, F>
where
    T: for<'x> Deserialize<'x>,
    F: FnMut(T) -> Result<(), E>,
{
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of records")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(item) = seq.next_element::<T>()? {
            if let Err(e) = (self.each)(item) {
                *self.stopped = Some(e);
                return Err(de::Error::custom("stopped"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walks_records_one_at_a_time_and_counts_them_when_skipping() {
        let doc = br#"{"version":1,"records":[{"n":1},{"n":2},{"n":3}],"after":true}"#;
        #[derive(Deserialize)]
        struct R {
            n: u32,
        }
        let mut seen = Vec::new();
        for_each_record::<R, ()>(&doc[..], |r| {
            seen.push(r.n);
            Ok(())
        })
        .unwrap()
        .unwrap();
        assert_eq!(seen, [1, 2, 3]);
        let stopped =
            for_each_record::<R, &str>(&doc[..], |r| if r.n == 2 { Err("two") } else { Ok(()) });
        assert_eq!(stopped.unwrap(), Err("two"));
        #[derive(Deserialize)]
        struct Head {
            records: Option<RecordCount>,
        }
        let h: Head = serde_json::from_slice(doc).unwrap();
        assert_eq!(h.records.unwrap().len(), 3);
    }
}
