//! Entity identity: the `_id` value of a row and its 64-bit entity hash (`_iid`),
//! which orders segments and drives point lookups.

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, Int64Type};
use xxhash_rust::xxh3::xxh3_64;

use crate::error::{Error, Result};

/// One `_id` value. Integers, text and binary (UUID bytes) are allowed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EntityId {
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
}

impl EntityId {
    /// The stable entity hash (documented in docs/format.md): xxh3-64 of a
    /// one-byte type tag followed by the value's bytes (i64 little-endian, UTF-8, raw).
    pub fn hash(&self) -> u64 {
        match self {
            EntityId::Int(v) => hash_tagged(b'i', &v.to_le_bytes()),
            EntityId::Text(s) => hash_tagged(b's', s.as_bytes()),
            EntityId::Bytes(b) => hash_tagged(b'b', b),
        }
    }
}

impl std::fmt::Display for EntityId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EntityId::Int(v) => write!(f, "{v}"),
            EntityId::Text(s) => write!(f, "'{s}'"),
            EntityId::Bytes(b) => write!(f, "{b:02x?}"),
        }
    }
}

fn hash_tagged(tag: u8, bytes: &[u8]) -> u64 {
    let mut buf = Vec::with_capacity(bytes.len() + 1);
    buf.push(tag);
    buf.extend_from_slice(bytes);
    xxh3_64(&buf)
}

/// Check that an `_id` column has an allowed type and no NULLs.
pub fn check_id_column(table: &str, ids: &ArrayRef) -> Result<()> {
    match ids.data_type() {
        DataType::Int64 | DataType::Utf8 | DataType::Binary => {}
        other => {
            return Err(Error::Invalid(format!(
                "`_id` of table `{table}` must be an integer, text or UUID, not {}",
                crate::schema::type_name(other)
            )))
        }
    }
    if ids.null_count() > 0 {
        return Err(Error::Invalid(format!(
            "`_id` must not be NULL (inserting into `{table}`): every row needs an `_id`"
        )));
    }
    Ok(())
}

/// The id at `row` of an `_id` column (type already checked).
pub fn id_at(ids: &dyn Array, row: usize) -> EntityId {
    match ids.data_type() {
        DataType::Int64 => EntityId::Int(ids.as_primitive::<Int64Type>().value(row)),
        DataType::Utf8 => EntityId::Text(ids.as_string::<i32>().value(row).to_string()),
        DataType::Binary => EntityId::Bytes(ids.as_binary::<i32>().value(row).to_vec()),
        other => unreachable!("unchecked _id type {other}"),
    }
}

/// Hashes of every row of an `_id` column.
pub fn hash_column(ids: &dyn Array) -> Vec<u64> {
    match ids.data_type() {
        DataType::Int64 => ids
            .as_primitive::<Int64Type>()
            .values()
            .iter()
            .map(|v| hash_tagged(b'i', &v.to_le_bytes()))
            .collect(),
        _ => (0..ids.len()).map(|i| id_at(ids, i).hash()).collect(),
    }
}

/// Does row `row` of `ids` hold `id`?
pub fn id_equals(ids: &dyn Array, row: usize, id: &EntityId) -> bool {
    match (ids.data_type(), id) {
        (DataType::Int64, EntityId::Int(v)) => ids.as_primitive::<Int64Type>().value(row) == *v,
        (DataType::Utf8, EntityId::Text(s)) => ids.as_string::<i32>().value(row) == s,
        (DataType::Binary, EntityId::Bytes(b)) => ids.as_binary::<i32>().value(row) == b.as_slice(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int64Array;

    #[test]
    fn column_and_scalar_hashes_agree() {
        let a = Int64Array::from(vec![1, 2, 3]);
        let h = hash_column(&a);
        assert_eq!(h[1], EntityId::Int(2).hash());
        assert_ne!(EntityId::Int(1).hash(), EntityId::Text("1".into()).hash());
    }
}
