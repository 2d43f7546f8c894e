//! parse_flat_line with what earlier lines left (the kept line shape): the input is
//! up to four lines; each is read once after the ones before it, with one memory, as a
//! board's connection reads them, and once with a fresh memory. The two must agree, to
//! the reading and its fields: a kept shape may only make a line cheaper to read.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sensorlog::protocol::reading::{parse_flat_line, FlatField, FlatMemory, FLAT_MAX_FIELDS};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut memory = FlatMemory::default();
    for line in text.split('\n').take(4) {
        let mut kept = [FlatField::default(); FLAT_MAX_FIELDS];
        let with_memory = parse_flat_line(line, &mut memory, &mut kept);
        let mut fresh = [FlatField::default(); FLAT_MAX_FIELDS];
        let without = parse_flat_line(line, &mut FlatMemory::default(), &mut fresh);
        assert_eq!(with_memory, without, "line {line:?}");
        if let Some(r) = with_memory {
            assert_eq!(kept[..r.count], fresh[..r.count], "line {line:?}");
        }
    }
});
