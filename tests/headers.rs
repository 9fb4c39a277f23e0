//! The generated headers under `include/rseq/generated/` are committed (so
//! that users and packagers need no Rust to read them); this test fails
//! when they drift from what the code and the templates generate.
//! `make headers` (RSEQ_BLESS=1) rewrites them.

use std::path::Path;

const GENERATED: [(&str, &str); 6] = [
    ("sequences.h", rseq::generated::SEQUENCES_H),
    ("api.h", rseq::generated::API_H),
    ("inline-api.h", rseq::generated::INLINE_API_H),
    ("cpu-op-api.h", rseq::generated::CPU_OP_API_H),
    ("percpu-api.h", rseq::generated::PERCPU_API_H),
    ("mempool-api.h", rseq::generated::MEMPOOL_API_H),
];

#[test]
fn committed_headers_match_the_code() {
    let bless = std::env::var_os("RSEQ_BLESS").is_some();
    for (path, generated) in GENERATED {
        let path = format!("include/rseq/generated/{path}");
        let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(&path);
        if bless {
            std::fs::write(&full, generated).unwrap();
            continue;
        }
        let committed = std::fs::read_to_string(&full).unwrap_or_default();
        assert!(
            committed == generated,
            "{path} differs from what the code generates: run `make headers` and commit"
        );
    }
}
