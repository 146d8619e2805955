//! Arbitrary bytes through the Open Protocol framer, parser, decoder, JSON view and
//! re-serialisation: none of them may panic, and a telegram that decodes must either
//! re-serialise to its own bytes or say which field differs.

#![no_main]

use jidoka_connectors::openprotocol::{self as op, Framed, Framer, Telegram};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = Telegram::parse(data)
        && let Ok(body) = op::decode(&t)
    {
        let _ = op::to_json(&t, &body);
        let _ = op::check_roundtrip(data);
    }
    // The same bytes as a stream, cut at an arbitrary point.
    let cut = data.first().map(|&b| b as usize % (data.len() + 1)).unwrap_or(0);
    let mut framer = Framer::new();
    for part in [&data[..cut], &data[cut..]] {
        framer.push(part);
        while let Some(item) = framer.take() {
            if let Framed::Telegram(t) = item {
                let _ = op::decode(&t).map(|b| op::to_json(&t, &b));
            }
        }
    }
});
