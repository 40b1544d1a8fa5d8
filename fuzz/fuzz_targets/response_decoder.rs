//! Fuzzes the HTTP/1.1 response decoder the fetch thread runs on every byte a server sends:
//! whatever arrives, in whatever pieces, it must not panic, must not hand out more body than
//! its limit, and must never consume more input than it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pinflow::ingest::http::protocol::ResponseDecoder;

fuzz_target!(|data: &[u8]| {
    // The first byte chooses how the input is split into reads.
    let Some((&step, bytes)) = data.split_first() else {
        return;
    };
    let step = usize::from(step % 64) + 1;
    let limit = 4096;
    let mut d = ResponseDecoder::new(limit);
    let mut body = Vec::new();
    let mut buf = Vec::new();
    for piece in bytes.chunks(step) {
        buf.extend_from_slice(piece);
        match d.decode(&buf, &mut body) {
            Ok(n) => {
                assert!(n <= buf.len());
                buf.drain(..n);
            }
            Err(_) => return,
        }
        assert!(body.len() <= limit);
        if d.is_done() {
            // Keep-alive: the next response starts with what is left.
            d.reset();
            body.clear();
        }
    }
    let _ = d.eof();
});
