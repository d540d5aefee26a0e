//! Random corruption of real DTBs: whatever the bytes, every reader returns a value or a
//! typed error, and never panics or hangs.

mod support;

use devicetree::Fdt;
use proptest::prelude::*;
use support::{FIXTURES, exercise, field, header_field};

/// Parses `blob` and, if it is accepted, runs every reader over it.
fn parse_and_walk(blob: &[u8]) {
    match Fdt::new(blob) {
        Ok(fdt) => exercise(&fdt),
        Err(error) => assert!(!error.to_string().is_empty()),
    }
}

fn fixture_index() -> impl Strategy<Value = usize> {
    0..FIXTURES.len()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, ..ProptestConfig::default() })]

    /// Up to 8 bytes anywhere XORed with random values.
    #[test]
    fn byte_flips_anywhere(
        fixture in fixture_index(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), 1..=255u8), 1..8),
    ) {
        let mut blob = FIXTURES[fixture].1.to_vec();
        for (position, mask) in flips {
            let at = position.index(blob.len());
            blob[at] ^= mask;
        }
        parse_and_walk(&blob);
    }

    /// Whole words of the structure block replaced: hits tokens, lengths and name offsets far
    /// more often than byte flips spread over the whole blob.
    #[test]
    fn structure_words_replaced(
        fixture in fixture_index(),
        words in prop::collection::vec(
            (any::<prop::sample::Index>(), prop_oneof![0..16u32, any::<u32>()]),
            1..4,
        ),
    ) {
        let mut blob = FIXTURES[fixture].1.to_vec();
        let start = header_field(&blob, field::OFF_DT_STRUCT) as usize;
        let words_in_block = header_field(&blob, field::SIZE_DT_STRUCT) as usize / 4;
        for (position, value) in words {
            let at = start + 4 * position.index(words_in_block);
            blob[at..at + 4].copy_from_slice(&value.to_be_bytes());
        }
        parse_and_walk(&blob);
    }

    /// Random header fields over a real blob.
    #[test]
    fn header_fields_replaced(
        fixture in fixture_index(),
        fields in prop::collection::vec((0..10usize, any::<u32>()), 1..4),
    ) {
        let mut blob = FIXTURES[fixture].1.to_vec();
        for (index, value) in fields {
            blob[index * 4..index * 4 + 4].copy_from_slice(&value.to_be_bytes());
        }
        parse_and_walk(&blob);
    }

    /// Arbitrary words as the structure and strings blocks behind a sound header and an
    /// empty reservation list. Words are often small so that some are real tokens.
    #[test]
    fn random_blocks(
        words in prop::collection::vec(prop_oneof![0..10u32, any::<u32>()], 0..128),
        split in any::<prop::sample::Index>(),
    ) {
        let total = (56 + 4 * words.len()) as u32;
        let size_struct = 4 * split.index(words.len() + 1) as u32;
        let (off_struct, off_strings) = (56, 56 + size_struct);
        let size_strings = total - off_strings;
        let header = [0xd00d_feed, total, off_struct, off_strings, 40, 17, 16, 0, size_strings, size_struct];
        let all = header.into_iter().chain([0; 4]).chain(words);
        let blob: Vec<u8> = all.flat_map(u32::to_be_bytes).collect();
        parse_and_walk(&blob);
    }
}
