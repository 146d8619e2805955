//! Arbitrary image files through the decoders (PNG, JPEG, binary PGM) and the perceptual hash:
//! none may panic, every refusal names its field, and a decoded picture is as large as it says.

#![no_main]

use jidoka_connectors::image::{decode_gray, phash};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match decode_gray(data) {
        Ok(g) => {
            assert_eq!(g.pixels.len(), g.width * g.height);
            assert!(phash(data).is_ok());
        }
        Err(e) => assert_eq!(e.field, "image"),
    }
});
