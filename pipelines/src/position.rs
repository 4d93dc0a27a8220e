//! Where a source stands: a position per split, opaque to everything but the
//! connector that reads the split.
//!
//! ```text
//!   source ──batch──▶ runner: pending[(stream, split)] = Position { order, token }
//!   commit ──▶ target's transaction: (stream, split) → order (+ token, when there is one)
//!   restart ◀── target: committed_position(stream, split) ──▶ the connector reopens the split there
//! ```
//!
//! A position is a number that only grows and the connector's own bytes. The
//! number orders positions: a Kafka offset, a Delta table's version, a count
//! of generated events. It is what the tables committed before the target
//! (quarantine, late rows) compare a record's position with to skip what they
//! hold already, and what a Delta target keeps in its `txn` actions. The bytes
//! (the token) say what the number cannot, for a connector that needs it to
//! reopen its split (a binlog's file name and offset, a GTID set); Kafka, Delta
//! and Nexmark need none and leave it empty. Every target keeps the token in
//! the same transaction as the number.

use std::collections::BTreeMap;

/// A split of a source: the stream positions are recorded under (a topic,
/// `delta/<space.table>`, …) and the split's number in it (a Kafka partition).
pub type Split = (String, i32);

/// The positions a commit covers, per split.
pub type Positions = BTreeMap<Split, Position>;

/// Where one split stands after the records read from it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Position {
    /// Grows with every record: positions of one split compare by it.
    pub order: i64,
    /// The connector's own bytes for reopening the split here; empty when
    /// `order` says it all.
    pub token: Vec<u8>,
}

impl Position {
    /// A position the number alone says.
    pub fn at(order: i64) -> Self {
        Self {
            order,
            token: Vec::new(),
        }
    }

    /// The later of two positions of one split; at the same number, `other`
    /// (a token may move on without a record: a binlog's rotation).
    pub fn later(self, other: Position) -> Position {
        if other.order >= self.order {
            other
        } else {
            self
        }
    }
}

/// A token as lowercase hex, for targets that record text.
pub fn token_hex(token: &[u8]) -> String {
    token.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A token from the hex [`token_hex`] wrote.
pub fn token_from_hex(hex: &str) -> Result<Vec<u8>, String> {
    if !hex.len().is_multiple_of(2) || !hex.is_ascii() {
        return Err(format!("token {hex:?} is not hex"));
    }
    (0..hex.len())
        .step_by(2)
        .map(|at| {
            u8::from_str_radix(&hex[at..at + 2], 16)
                .map_err(|_| format!("token {hex:?} is not hex"))
        })
        .collect()
}

/// Merges where the splits of `stream` stand now into `positions`: a split
/// keeps the later of its two positions.
pub fn advance(positions: &mut Positions, stream: &str, newer: BTreeMap<i32, Position>) {
    for (split, position) in newer {
        let split = (stream.to_string(), split);
        let merged = match positions.remove(&split) {
            Some(held) => held.later(position),
            None => position,
        };
        positions.insert(split, merged);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_through_hex_and_bad_hex_is_refused() {
        let token = vec![0, 1, 0xab, 0xff];
        assert_eq!(token_hex(&token), "0001abff");
        assert_eq!(token_from_hex("0001abff").unwrap(), token);
        assert_eq!(token_from_hex("").unwrap(), Vec::<u8>::new());
        assert!(token_from_hex("abc").is_err());
        assert!(token_from_hex("zz").is_err());
        assert!(token_from_hex("é0").is_err());
    }

    #[test]
    fn a_split_keeps_its_later_position_with_its_token() {
        let split = ("binlog".to_string(), 0);
        let mut positions = Positions::new();
        let binlog = |order: i64, token: &[u8]| {
            BTreeMap::from([(
                0,
                Position {
                    order,
                    token: token.to_vec(),
                },
            )])
        };
        advance(&mut positions, "binlog", binlog(5, b"mysql-bin.000002:120"));
        advance(
            &mut positions,
            "binlog",
            BTreeMap::from([(0, Position::at(4))]),
        );
        assert_eq!(positions[&split].order, 5);
        assert_eq!(positions[&split].token, b"mysql-bin.000002:120");
        advance(&mut positions, "binlog", binlog(9, b"mysql-bin.000003:4"));
        assert_eq!(positions[&split].token, b"mysql-bin.000003:4");
        // A rotation moves the token on at the same number.
        advance(&mut positions, "binlog", binlog(9, b"mysql-bin.000004:4"));
        assert_eq!(positions[&split].token, b"mysql-bin.000004:4");
        assert_eq!(positions[&split].order, 9);
    }
}
