//! Statement shapes. sqlx prepares each distinct SQL text once per connection and keeps the
//! prepared statement (100 per connection, least recently used first out); a multi-row
//! statement's text depends on its row count, so batches of every size would prepare (and
//! evict) a statement on nearly every call. Measured on MariaDB 10.11, uncontended: a group
//! commit of 30 orders took 2.5 ms when every batch had that size, 4.5 ms when sizes varied
//! from 10 to 70. So rows go out in power-of-two chunks, and lists where a repeated element
//! changes nothing (an `IN (...)` list; the derived table of an `UPDATE ... JOIN`, which updates
//! each target row once however many rows match it) are padded to a power of two: at most 10
//! shapes of each statement.

/// The most rows in one statement (65,535 placeholders is MySQL's limit; 512 rows of 8
/// columns is 4,096).
pub(crate) const MAX_ROWS: usize = 512;

/// `rows` in chunks whose sizes are powers of two (largest first, at most [`MAX_ROWS`]).
pub(crate) fn chunks<T>(rows: &[T]) -> impl Iterator<Item = &[T]> {
    let mut rest = rows;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let n = if rest.len() >= MAX_ROWS {
            MAX_ROWS
        } else {
            1 << (usize::BITS - 1 - rest.len().leading_zeros())
        };
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        Some(chunk)
    })
}

/// `items` in chunks of at most [`MAX_ROWS`], each padded to a power of two by repeating its
/// last element. Only for lists where a repeated element changes nothing (see above).
pub(crate) fn padded<T: Clone>(items: &[T]) -> Vec<Vec<T>> {
    items
        .chunks(MAX_ROWS)
        .map(|chunk| {
            let mut list = chunk.to_vec();
            let last = chunk[chunk.len() - 1].clone();
            list.resize(chunk.len().next_power_of_two(), last);
            list
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_go_out_in_power_of_two_chunks_in_order() {
        let rows: Vec<u32> = (0..1300).collect();
        let sizes: Vec<usize> = chunks(&rows).map(<[u32]>::len).collect();
        assert_eq!(sizes, [512, 512, 256, 16, 4]);
        let back: Vec<u32> = chunks(&rows).flatten().copied().collect();
        assert_eq!(back, rows);
        assert_eq!(chunks::<u32>(&[]).count(), 0);
        assert_eq!(chunks(&[7]).map(<[u32]>::len).collect::<Vec<_>>(), [1]);
    }

    #[test]
    fn lists_are_padded_with_their_last_element() {
        assert_eq!(padded(&[1, 2, 3]), [vec![1, 2, 3, 3]]);
        assert_eq!(padded(&[5]), [vec![5]]);
        let long: Vec<u32> = (0..600).collect();
        let lists = padded(&long);
        assert_eq!(lists.iter().map(Vec::len).collect::<Vec<_>>(), [512, 128]);
        assert_eq!(lists[1][87], 599);
        assert_eq!(lists[1][127], 599);
        assert!(padded::<u32>(&[]).is_empty());
    }
}
