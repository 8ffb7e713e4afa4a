//! Kept changes (see [kept changes](presence_core::store#kept-changes)) as
//! both backends store them: rows of `kept_changes` (migration 0005), each
//! with an integer id (its [`ChangeId`], in decimal), the node's name, the
//! process's incarnation and the change as JSON
//! ([`KeptChange::encode`]).

use presence_core::store::{ChangeId, KeptChange, StoreError};

/// A `kept_changes` row as read back: `(id, incarnation, change)`.
pub(crate) type KeptRow = (i64, i64, String);

/// An incarnation as stored: the u64's bits as a 64-bit integer.
pub(crate) fn stored_incarnation(incarnation: u64) -> i64 {
    incarnation.cast_signed()
}

/// Incarnations as stored ([`stored_incarnation`]).
pub(crate) fn stored_incarnations(incarnations: &[u64]) -> Vec<i64> {
    incarnations
        .iter()
        .copied()
        .map(stored_incarnation)
        .collect()
}

/// The id of the change kept in row `id`.
pub(crate) fn change_id(id: i64) -> ChangeId {
    ChangeId::new(id.to_string())
}

/// The rows of changes `ids`; an id that is not a row's (no store of this
/// crate wrote it) is a [`StoreError::Backend`].
pub(crate) fn row_ids(ids: &[ChangeId]) -> Result<Vec<i64>, StoreError> {
    ids.iter()
        .map(|id| {
            id.as_str().parse::<i64>().map_err(|_| {
                StoreError::Backend(format!("{id:?} is not the id of a kept_changes row").into())
            })
        })
        .collect()
}

/// Rows read back as kept changes, in their order.
pub(crate) fn decode(rows: Vec<KeptRow>) -> Result<Vec<KeptChange>, StoreError> {
    rows.into_iter()
        .map(|(id, incarnation, json)| {
            KeptChange::decode(change_id(id), incarnation.cast_unsigned(), &json)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incarnations_keep_every_bit_and_ids_round_trip() {
        for incarnation in [0, 1, u64::MAX / 2 + 1, u64::MAX] {
            assert_eq!(stored_incarnation(incarnation).cast_unsigned(), incarnation);
        }
        assert_eq!(stored_incarnations(&[u64::MAX]), vec![-1]);
        let ids = [change_id(1), change_id(i64::MAX)];
        assert_eq!(row_ids(&ids).expect("row ids"), vec![1, i64::MAX]);
    }

    #[test]
    fn a_foreign_id_is_an_error() {
        for foreign in ["", "x", "1-0", "99999999999999999999"] {
            assert!(
                matches!(
                    row_ids(&[ChangeId::new(foreign)]),
                    Err(StoreError::Backend(_))
                ),
                "{foreign:?}"
            );
        }
    }

    #[test]
    fn a_corrupt_change_is_an_error() {
        assert!(matches!(
            decode(vec![(1, 1, "{".into())]),
            Err(StoreError::Corrupt(_))
        ));
    }
}
