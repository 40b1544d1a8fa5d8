//! Fuzzes the resume journal's reader, which a run trusts to say which files hold which
//! items: whatever the journal holds, it must not panic, and what it accepts must only name
//! files inside the output, of the form the output gives them. The first byte chooses the
//! layout (rotated files beside `o.parquet`, or a dataset partitioned by `service`).
#![no_main]

use std::path::{Component, Path};

use libfuzzer_sys::fuzz_target;
use pinflow::journal::{check, OutputFiles};

fuzz_target!(|data: &[u8]| {
    let Some((&layout, bytes)) = data.split_first() else {
        return;
    };
    let dir = Path::new("/data/out");
    let (journal, files) = match layout % 2 {
        0 => (
            dir.join("o.parquet.journal"),
            OutputFiles::Beside(dir.join("o.parquet")),
        ),
        _ => (
            dir.join("ds.journal"),
            OutputFiles::Under {
                root: dir.join("ds"),
                partition_by: vec!["service".into()],
            },
        ),
    };
    match check(&journal, bytes, "src", &files) {
        Ok(contents) => {
            assert!(contents.valid_end <= bytes.len() as u64);
            for f in contents.checkpoints.iter().flat_map(|c| &c.files) {
                for name in [&f.tmp, &f.fin] {
                    let inside = Path::new(name)
                        .components()
                        .all(|c| matches!(c, Component::Normal(_)));
                    assert!(inside && !name.contains('\0'), "{name:?} accepted");
                }
            }
        }
        Err(e) => {
            // Whatever the journal holds, the message sends a terminal no control bytes.
            let msg = e.to_string();
            assert!(!msg.bytes().any(|b| b.is_ascii_control()), "{msg:?}");
        }
    }
});
