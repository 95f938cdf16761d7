//! Any bytes as a safetensors header: accepted headers describe tensors that
//! fit the file and do not overlap; everything else is an error, never a panic.
#![no_main]

use engine::model::safetensors_check::parse_header;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u32, &[u8])| {
    let (extra, header) = input;
    let file_len = 8 + header.len() as u64 + extra as u64;
    if let Ok(tensors) = parse_header(header, file_len) {
        for (_, _, shape) in tensors {
            assert!(shape.len() <= 8);
        }
    }
});
