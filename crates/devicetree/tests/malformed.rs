//! Malformed DTBs: each corruption is refused with the error that names it, and no
//! corruption makes the parser panic.

mod support;

use devicetree::{Block, Error, Fdt, MAX_DEPTH};
use support::{
    BEGIN_NODE, DtbBuilder, NOP, PROP, exercise, field, fixture, header_field, set_header_field,
};

fn default_copy() -> Vec<u8> {
    fixture("default").to_vec()
}

/// The error `Fdt::new` gives for `blob`, which must be refused.
fn refused(blob: &[u8]) -> Error {
    match Fdt::new(blob) {
        Ok(_) => panic!("a malformed blob was accepted"),
        Err(error) => error,
    }
}

/// A root node holding `body`, as a finished blob.
fn tree(body: impl FnOnce(&mut DtbBuilder)) -> Vec<u8> {
    let mut dtb = DtbBuilder::new();
    dtb.begin("");
    body(&mut dtb);
    dtb.end();
    dtb.finish()
}

#[test]
fn every_truncation_is_refused() {
    let blob = fixture("default");
    for len in 0..blob.len() {
        let error = refused(&blob[..len]);
        let expected = if len < 40 {
            Error::BlobTooSmall { len }
        } else {
            Error::TotalSizeTooBig {
                total_size: blob.len() as u32,
                available: len,
            }
        };
        assert_eq!(error, expected);
    }
    assert!(Fdt::new(blob).is_ok());
}

#[test]
fn every_truncation_with_a_matching_totalsize_is_refused() {
    // The strings block is last, so cutting the blob cuts it.
    let blob = fixture("default");
    let strings = header_field(blob, field::OFF_DT_STRINGS);
    for len in 40..blob.len() {
        let mut cut = blob[..len].to_vec();
        set_header_field(&mut cut, field::TOTAL_SIZE, len as u32);
        let error = refused(&cut);
        let block = if len as u32 >= strings {
            Block::Strings
        } else {
            Block::Structure
        };
        assert!(
            matches!(error, Error::BlockOutOfBounds { block: b, .. } if b == block),
            "len {len}: {error}"
        );
    }
}

/// Sets the size field `size_field` of the default fixture to every smaller value and checks
/// that each is refused with an error that `expected` accepts.
fn each_shorter_size_is_refused(size_field: usize, expected: impl Fn(&Error) -> bool) {
    let mut blob = default_copy();
    let size = header_field(&blob, size_field);
    for short in 0..size {
        set_header_field(&mut blob, size_field, short);
        let error = refused(&blob);
        assert!(expected(&error), "size {short}: {error}");
    }
}

#[test]
fn every_shortened_structure_block_is_refused() {
    // Claiming a shorter structure block cuts the token walk short at every possible point.
    each_shorter_size_is_refused(field::SIZE_DT_STRUCT, |error| {
        matches!(
            error,
            Error::MissingEnd { .. }
                | Error::UnexpectedEnd { .. }
                | Error::UnterminatedNodeName { .. }
                | Error::PropertyPastBlock { .. }
        )
    });
}

#[test]
fn every_shortened_strings_block_is_refused() {
    // Every string is some property's name, so losing any tail of the block loses a name.
    each_shorter_size_is_refused(field::SIZE_DT_STRINGS, |error| {
        matches!(
            error,
            Error::StringOffsetOutOfRange { .. } | Error::UnterminatedString { .. }
        )
    });
}

#[test]
fn any_value_in_any_header_field_is_handled() {
    let original = default_copy();
    let total = original.len() as u32;
    for index in 0..10 {
        let field_value = header_field(&original, index);
        let values = [
            0,
            1,
            4,
            7,
            8,
            15,
            16,
            17,
            18,
            39,
            40,
            41,
            0x40,
            0x7fff_ffff,
            0x8000_0000,
            0xffff_fff0,
            0xffff_ffff,
            total - 1,
            total,
            total + 1,
            field_value.wrapping_sub(4),
            field_value.wrapping_add(4),
            field_value.wrapping_sub(1),
            field_value.wrapping_add(1),
        ];
        for value in values {
            let mut blob = original.clone();
            set_header_field(&mut blob, index, value);
            match Fdt::new(&blob) {
                Ok(fdt) => exercise(&fdt),
                Err(error) => assert!(!error.to_string().is_empty()),
            }
        }
    }
}

#[test]
fn header_fields_that_do_not_affect_layout_may_take_any_value() {
    let mut blob = default_copy();
    set_header_field(&mut blob, field::BOOT_CPUID_PHYS, 0xffff_ffff);
    set_header_field(&mut blob, field::VERSION, 0xffff_ffff);
    set_header_field(&mut blob, field::LAST_COMP_VERSION, 0);
    let fdt = Fdt::new(&blob).unwrap();
    assert_eq!(fdt.header().boot_cpuid_phys, 0xffff_ffff);
}

#[test]
fn bad_header_fields_have_specific_errors() {
    let original = default_copy();
    let total = original.len() as u32;
    let with = |index: usize, value: u32| {
        let mut blob = original.clone();
        set_header_field(&mut blob, index, value);
        refused(&blob)
    };

    let error = with(field::MAGIC, 0x1234_5678);
    assert_eq!(error, Error::BadMagic { found: 0x1234_5678 });
    assert_eq!(
        error.to_string(),
        "bad magic 0x12345678 (expected 0xd00dfeed)"
    );

    let error = with(field::TOTAL_SIZE, total + 1);
    assert_eq!(
        error,
        Error::TotalSizeTooBig {
            total_size: total + 1,
            available: total as usize
        }
    );
    assert_eq!(
        error.to_string(),
        format!(
            "header totalsize {} exceeds the {total} bytes available",
            total + 1
        )
    );
    assert_eq!(
        with(field::TOTAL_SIZE, 39),
        Error::TotalSizeTooSmall { total_size: 39 }
    );

    let error = with(field::VERSION, 15);
    assert_eq!(error, Error::UnsupportedVersion { version: 15 });
    assert_eq!(
        error.to_string(),
        "DTB version 15 is older than 16, the oldest supported"
    );
    let error = with(field::LAST_COMP_VERSION, 18);
    assert_eq!(
        error,
        Error::IncompatibleVersion {
            last_comp_version: 18
        }
    );

    let error = with(field::OFF_DT_STRUCT, 0x42);
    assert_eq!(
        error,
        Error::MisalignedBlock {
            block: Block::Structure,
            offset: 0x42,
            align: 4
        }
    );
    assert_eq!(
        error.to_string(),
        "structure block offset 0x42 is not 4-byte aligned"
    );
    let error = with(field::OFF_MEM_RSVMAP, 0x34);
    let expected = Error::MisalignedBlock {
        block: Block::MemoryReservations,
        offset: 0x34,
        align: 8,
    };
    assert_eq!(error, expected);

    // Which block an error says is out of bounds.
    let out_of_bounds = |error: Error| match error {
        Error::BlockOutOfBounds { block, .. } => Some(block),
        _ => None,
    };
    let error = with(field::OFF_DT_STRUCT, 0xffff_fff0);
    assert_eq!(out_of_bounds(error), Some(Block::Structure));
    let error = with(field::SIZE_DT_STRUCT, total);
    let expected = Error::BlockOutOfBounds {
        block: Block::Structure,
        offset: 0x40,
        size: total,
        total_size: total,
    };
    assert_eq!(error, expected);
    assert_eq!(
        error.to_string(),
        format!("structure block at 0x40 (size {total:#x}) extends past totalsize {total:#x}")
    );
    let error = with(field::OFF_DT_STRINGS, total);
    assert_eq!(out_of_bounds(error), Some(Block::Strings));
    let error = with(field::SIZE_DT_STRINGS, 0xffff_ffff);
    assert_eq!(out_of_bounds(error), Some(Block::Strings));
    let error = with(field::OFF_MEM_RSVMAP, (total - 8) & !7);
    assert_eq!(out_of_bounds(error), Some(Block::MemoryReservations));

    let error = with(field::OFF_DT_STRINGS, 0x40);
    assert_eq!(
        error,
        Error::BlocksOverlap {
            first: Block::Structure,
            second: Block::Strings
        }
    );
    assert_eq!(error.to_string(), "structure block overlaps strings block");
    let error = with(field::OFF_DT_STRUCT, 0);
    assert_eq!(
        error,
        Error::BlocksOverlap {
            first: Block::Header,
            second: Block::Structure
        }
    );
    let error = with(field::OFF_MEM_RSVMAP, 0x20);
    let expected = Error::BlocksOverlap {
        first: Block::Header,
        second: Block::MemoryReservations,
    };
    assert_eq!(error, expected);
}

#[test]
fn version_16_structure_block_runs_to_totalsize() {
    // Version 16 has no size_dt_struct; the walk is bounded by totalsize instead.
    let mut blob = default_copy();
    set_header_field(&mut blob, field::VERSION, 16);
    set_header_field(&mut blob, field::SIZE_DT_STRUCT, 0);
    // The strings block follows the structure block, so the two now overlap.
    assert_eq!(
        refused(&blob),
        Error::BlocksOverlap {
            first: Block::Structure,
            second: Block::Strings
        }
    );
    // Put the strings first (before the structure block) and it parses.
    let mut dtb = DtbBuilder::new();
    dtb.begin("").prop_str("model", "v16").end();
    let mut blob = dtb.finish();
    let (off_struct, size_struct) = (
        header_field(&blob, field::OFF_DT_STRUCT),
        header_field(&blob, field::SIZE_DT_STRUCT),
    );
    let mut strings = blob[(off_struct + size_struct) as usize..].to_vec();
    strings.resize(strings.len().next_multiple_of(4), 0); // keeps the structure block aligned
    let structure = blob[off_struct as usize..(off_struct + size_struct) as usize].to_vec();
    blob.truncate(off_struct as usize);
    blob.extend_from_slice(&strings);
    blob.extend_from_slice(&structure);
    set_header_field(&mut blob, field::OFF_DT_STRINGS, off_struct);
    set_header_field(
        &mut blob,
        field::OFF_DT_STRUCT,
        off_struct + strings.len() as u32,
    );
    let total = blob.len() as u32;
    set_header_field(&mut blob, field::TOTAL_SIZE, total);
    set_header_field(&mut blob, field::VERSION, 16);
    set_header_field(&mut blob, field::SIZE_DT_STRUCT, 0);
    let fdt = Fdt::new(&blob).unwrap();
    assert_eq!(fdt.root().property("model").unwrap().as_str(), Ok("v16"));
}

#[test]
fn memory_reservation_errors() {
    // No terminator before the end of the DTB: point the list at the strings block's tail.
    let mut blob = default_copy();
    let start = (blob.len() as u32 - 16) & !7;
    set_header_field(&mut blob, field::OFF_MEM_RSVMAP, start);
    let error = refused(&blob);
    assert_eq!(
        error,
        Error::UnterminatedReservations {
            offset: start as usize + 16
        }
    );
    assert_eq!(
        error.to_string(),
        format!(
            "memory reservation entry at {:#x} runs past the end of the DTB (no terminator)",
            start + 16
        )
    );

    let mut dtb = DtbBuilder::new();
    dtb.reserve(0x1000, 0x1000)
        .reserve(u64::MAX - 5, 16)
        .begin("")
        .end();
    let error = refused(&dtb.finish());
    assert_eq!(
        error,
        Error::ReservationOverflow {
            offset: 56,
            address: u64::MAX - 5,
            size: 16
        }
    );

    // A strings block placed over the reservation list.
    let mut dtb = DtbBuilder::new();
    dtb.begin("").end();
    let mut blob = dtb.finish();
    set_header_field(&mut blob, field::OFF_DT_STRINGS, 48);
    set_header_field(&mut blob, field::SIZE_DT_STRINGS, 8);
    let expected = Error::BlocksOverlap {
        first: Block::MemoryReservations,
        second: Block::Strings,
    };
    assert_eq!(refused(&blob), expected);

    let mut dtb = DtbBuilder::new();
    dtb.reserve(0x4800_0000, 0x10_0000)
        .reserve(0x5000_0000, 0x2000)
        .begin("")
        .end();
    let blob = dtb.finish();
    let regions: Vec<_> = Fdt::new(&blob)
        .unwrap()
        .memory_reservations()
        .map(|r| (r.base, r.size))
        .collect();
    assert_eq!(regions, [(0x4800_0000, 0x10_0000), (0x5000_0000, 0x2000)]);
}

#[test]
fn unterminated_node_name() {
    let mut dtb = DtbBuilder::new();
    dtb.begin("");
    let offset = dtb.next_offset();
    dtb.word(BEGIN_NODE).bytes(b"abcd");
    let error = refused(&dtb.finish_without_end());
    assert_eq!(error, Error::UnterminatedNodeName { offset });
    assert_eq!(
        error.to_string(),
        format!("node name at {offset:#x} runs past the structure block")
    );
}

#[test]
fn property_length_past_the_block() {
    let mut dtb = DtbBuilder::new();
    dtb.begin("");
    let offset = dtb.next_offset();
    dtb.word(PROP).word(0x1000).word(0).end();
    let blob = dtb.finish();
    let block_end = offset + 20;
    let error = refused(&blob);
    assert_eq!(
        error,
        Error::PropertyPastBlock {
            offset,
            len: 0x1000,
            block_end
        }
    );
    // A length near u32::MAX must not wrap the end offset.
    let mut dtb = DtbBuilder::new();
    dtb.begin("").word(PROP).word(u32::MAX).word(0).end();
    assert!(matches!(
        refused(&dtb.finish()),
        Error::PropertyPastBlock { len: u32::MAX, .. }
    ));
    // A PROP whose length and name words are cut off.
    let mut dtb = DtbBuilder::new();
    dtb.begin("");
    let offset = dtb.next_offset();
    dtb.word(PROP).word(4);
    assert_eq!(
        refused(&dtb.finish_without_end()),
        Error::UnexpectedEnd { offset }
    );
}

#[test]
fn string_offset_out_of_range() {
    let mut dtb = DtbBuilder::new();
    dtb.begin("").prop_u32("a", 1);
    let offset = dtb.next_offset();
    dtb.prop_raw(0, 0x9999, &[]).end();
    let error = refused(&dtb.finish());
    let expected = Error::StringOffsetOutOfRange {
        offset,
        string_offset: 0x9999,
        strings_size: 2,
    };
    assert_eq!(error, expected);
    assert_eq!(
        error.to_string(),
        format!(
            "property at {offset:#x}: name offset 0x9999 is outside the 0x2-byte strings block"
        )
    );
    // Exactly at the end of the block is outside it too.
    let mut dtb = DtbBuilder::new();
    dtb.begin("").prop_u32("a", 1).prop_raw(0, 2, &[]).end();
    assert!(matches!(
        refused(&dtb.finish()),
        Error::StringOffsetOutOfRange {
            string_offset: 2,
            ..
        }
    ));
}

#[test]
fn unterminated_property_name() {
    let mut dtb = DtbBuilder::new();
    let name = dtb.raw_string(b"no-nul");
    dtb.begin("");
    let offset = dtb.next_offset();
    dtb.prop_raw(0, name, &[]).end();
    assert_eq!(
        refused(&dtb.finish()),
        Error::UnterminatedString {
            offset,
            string_offset: 0
        }
    );
}

#[test]
fn names_must_be_utf8() {
    let mut dtb = DtbBuilder::new();
    dtb.begin("");
    let offset = dtb.next_offset();
    dtb.word(BEGIN_NODE).bytes(&[0xff, 0xfe, 0, 0]).end().end();
    assert_eq!(refused(&dtb.finish()), Error::InvalidName { offset });

    let mut dtb = DtbBuilder::new();
    let name = dtb.raw_string(&[0xc3, 0x28, 0]);
    dtb.begin("");
    let offset = dtb.next_offset();
    dtb.prop_raw(0, name, &[]).end();
    assert_eq!(refused(&dtb.finish()), Error::InvalidName { offset });
}

#[test]
fn missing_end_token() {
    let mut dtb = DtbBuilder::new();
    dtb.begin("").prop_u32("a", 1).end();
    let offset = dtb.next_offset();
    let error = refused(&dtb.finish_without_end());
    assert_eq!(error, Error::MissingEnd { offset });
    assert_eq!(
        error.to_string(),
        format!("structure block ends at {offset:#x} without an END token")
    );
    // Ending inside a token (2 stray bytes) is told apart.
    let mut dtb = DtbBuilder::new();
    dtb.begin("").end();
    let offset = dtb.next_offset();
    dtb.bytes(&[0, 0]);
    assert_eq!(
        refused(&dtb.finish_without_end()),
        Error::UnexpectedEnd { offset }
    );
}

#[test]
fn nesting_is_limited() {
    // A chain of `levels` nested nodes, root included; also the deepest one's offset.
    let nested = |levels: usize| {
        let mut dtb = DtbBuilder::new();
        dtb.begin("");
        let mut deepest = 0;
        for level in 1..levels {
            deepest = dtb.next_offset();
            dtb.begin(&format!("n{level}"));
        }
        for _ in 0..levels {
            dtb.end();
        }
        (dtb.finish(), deepest)
    };
    let (blob, deepest_offset) = nested(MAX_DEPTH);
    let fdt = Fdt::new(&blob).unwrap();
    let deepest = fdt.nodes().last().unwrap();
    assert_eq!(
        (deepest.depth(), deepest.offset()),
        (MAX_DEPTH - 1, deepest_offset)
    );
    let path = "/n1/n2/n3/n4/n5/n6/n7/n8/n9/n10/n11/n12/n13/n14/n15";
    assert_eq!(deepest.path().to_string(), path);
    assert_eq!(fdt.find_node(path).unwrap().offset(), deepest_offset);
    assert_eq!(
        deepest.parent().unwrap().path().to_string(),
        path.trim_end_matches("/n15")
    );
    exercise(&fdt);

    let (blob, deepest_offset) = nested(MAX_DEPTH + 1);
    let error = refused(&blob);
    assert_eq!(
        error,
        Error::TooDeep {
            offset: deepest_offset,
            limit: MAX_DEPTH
        }
    );
    let message = format!("node at {deepest_offset:#x} is nested deeper than 16 levels");
    assert_eq!(error.to_string(), message);
}

#[test]
fn token_sequence_errors() {
    // An unknown token.
    let mut dtb = DtbBuilder::new();
    dtb.begin("");
    let offset = dtb.next_offset();
    dtb.word(7).end();
    let error = refused(&dtb.finish());
    assert_eq!(error, Error::BadToken { offset, token: 7 });
    assert_eq!(
        error.to_string(),
        format!("unknown token 0x7 at {offset:#x}")
    );

    // The first token must open the root.
    let mut dtb = DtbBuilder::new();
    dtb.prop_u32("a", 1);
    assert_eq!(refused(&dtb.finish()), Error::NoRootNode { offset: 56 });
    let mut dtb = DtbBuilder::new();
    dtb.begin("root").end();
    assert_eq!(refused(&dtb.finish()), Error::NamedRootNode { offset: 56 });

    // Nothing but END after the root closes.
    let mut dtb = DtbBuilder::new();
    dtb.begin("").end();
    let offset = dtb.next_offset();
    dtb.begin("second").end();
    assert_eq!(refused(&dtb.finish()), Error::TokenAfterRoot { offset });
    let mut dtb = DtbBuilder::new();
    dtb.begin("").end();
    let offset = dtb.next_offset();
    dtb.prop_u32("a", 1);
    assert_eq!(refused(&dtb.finish()), Error::TokenAfterRoot { offset });
    let mut dtb = DtbBuilder::new();
    dtb.begin("").end();
    let offset = dtb.next_offset();
    dtb.end();
    assert_eq!(refused(&dtb.finish()), Error::UnbalancedEndNode { offset });

    // END while nodes are open.
    let mut dtb = DtbBuilder::new();
    dtb.begin("").begin("child");
    let offset = dtb.next_offset();
    let error = refused(&dtb.finish());
    assert_eq!(error, Error::EndInsideNode { offset, open: 2 });
    assert_eq!(
        error.to_string(),
        format!("END token at {offset:#x} with 2 node(s) still open")
    );

    // Properties must precede child nodes.
    let mut dtb = DtbBuilder::new();
    dtb.begin("").begin("child").end();
    let offset = dtb.next_offset();
    dtb.prop_u32("late", 1).end();
    assert_eq!(refused(&dtb.finish()), Error::PropertyAfterChild { offset });
}

#[test]
fn nops_are_skipped_everywhere() {
    let mut dtb = DtbBuilder::new();
    dtb.word(NOP)
        .begin("")
        .word(NOP)
        .prop_u32("a", 1)
        .word(NOP)
        .begin("child")
        .word(NOP);
    dtb.prop_str("b", "x")
        .word(NOP)
        .end()
        .word(NOP)
        .begin("other")
        .end()
        .word(NOP)
        .end()
        .word(NOP);
    let blob = dtb.finish();
    let fdt = Fdt::new(&blob).unwrap();
    let names: Vec<_> = fdt.nodes().map(|node| node.name()).collect();
    assert_eq!(names, ["", "child", "other"]);
    assert_eq!(fdt.root().property("a").unwrap().as_u32(), Ok(1));
    assert_eq!(
        fdt.find_node("/child")
            .unwrap()
            .property("b")
            .unwrap()
            .as_str(),
        Ok("x")
    );
    assert_eq!(fdt.root().children().count(), 2);
    exercise(&fdt);
}

#[test]
fn an_empty_root_is_a_minimal_valid_dtb() {
    let blob = tree(|_| {});
    let fdt = Fdt::new(&blob).unwrap();
    assert_eq!(fdt.nodes().count(), 1);
    assert_eq!(fdt.root().properties().count(), 0);
    assert_eq!(fdt.root().children().count(), 0);
    assert_eq!(fdt.find_node("/").unwrap().offset(), 56);
    assert!(fdt.root().parent().is_none());
    assert_eq!(fdt.memory_reservations().count(), 0);
}
