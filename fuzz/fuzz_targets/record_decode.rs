//! Fuzzes the store's record decoder (issues 3 and 6): the bytes of a queue
//! value, a dead letter or a destination status come from disk and may be
//! anything after a crash or a bad sector. Decoding must never panic nor
//! allocate without bound, and whatever decodes must survive a round trip:
//! re-encoding gives bytes that decode to the same value and re-encode to
//! the same bytes (the encoder is canonical even when the input was not,
//! e.g. a varint written in a longer form than needed).

#![no_main]

use libfuzzer_sys::fuzz_target;
use syncd::store::record;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = record::decode_changeset(data) {
        let bytes = record::encode_changeset(&c);
        let again = record::decode_changeset(&bytes).expect("re-encoded changeset decodes");
        assert_eq!(again, c);
        assert_eq!(record::encode_changeset(&again), bytes);
    }
    if let Ok(d) = record::decode_dead(data) {
        let bytes = record::encode_dead(&d);
        let again = record::decode_dead(&bytes).expect("re-encoded dead letter decodes");
        assert_eq!(again, d);
        assert_eq!(record::encode_dead(&again), bytes);
    }
    if let Ok(s) = record::decode_status(data) {
        let bytes = record::encode_status(&s);
        let again = record::decode_status(&bytes).expect("re-encoded status decodes");
        assert_eq!(again, s);
        assert_eq!(record::encode_status(&again), bytes);
    }
});
