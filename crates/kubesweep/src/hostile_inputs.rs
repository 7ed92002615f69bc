//! Test-only generators of hostile inputs shared by the parsers' tests: gzip
//! bombs built without compressing the bytes they expand to, deeply nested
//! JSON and YAML, and a reading of the process's peak memory.

use std::io::Write as _;

use flate2::{Compress, Compression, FlushCompress};

/// Raw deflate of `data` from a fresh compressor, ended by a sync flush: a
/// run of non-final blocks that end on a byte boundary and refer back at
/// most into `data` itself, so copies of it can follow one another (and
/// any earlier data) in one stream.
fn deflate_chunk(data: &[u8]) -> Vec<u8> {
    let mut compress = Compress::new(Compression::best(), false);
    let mut out = Vec::with_capacity(data.len() / 8 + 1024);
    compress
        .compress_vec(data, &mut out, FlushCompress::Sync)
        .expect("deflate");
    assert_eq!(
        compress.total_in(),
        data.len() as u64,
        "whole chunk deflated"
    );
    out
}

/// A gzip stream that expands to `prefix` followed by `zeros` zero bytes
/// (a multiple of 1 MiB), with a correct CRC and length trailer. 1 GiB of
/// zeros costs about 1 MiB: the chunk of 1 MiB is deflated once and repeated.
pub fn gzip_bomb(prefix: &[u8], zeros: u64) -> Vec<u8> {
    const CHUNK: usize = 1024 * 1024;
    assert_eq!(zeros % CHUNK as u64, 0, "whole chunks only");
    let zero_chunk = vec![0u8; CHUNK];
    let repeated = deflate_chunk(&zero_chunk);
    let mut crc = flate2::Crc::new();
    crc.update(prefix);
    // gzip header: magic, deflate, no flags, no mtime, no extra flags, Unix.
    let mut out = vec![0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 3];
    out.extend(deflate_chunk(prefix));
    for _ in 0..zeros / CHUNK as u64 {
        out.extend_from_slice(&repeated);
        crc.update(&zero_chunk);
    }
    // An empty final block with fixed Huffman codes.
    out.extend([0x03, 0x00]);
    out.write_all(&crc.sum().to_le_bytes()).expect("crc");
    let size = (prefix.len() as u64 + zeros) as u32; // ISIZE is mod 2^32.
    out.write_all(&size.to_le_bytes()).expect("size");
    out
}

/// `depth` nested JSON arrays around a number.
pub fn nested_json_arrays(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

/// `depth` nested YAML flow sequences, then `depth` nested block mappings:
/// both ways YAML nests.
pub fn nested_yaml(depth: usize) -> [String; 2] {
    let flow = nested_json_arrays(depth);
    let mut block = String::with_capacity(depth * depth.min(200));
    // Block nesting by indentation grows quadratically; cap the indentation
    // work while keeping the depth the parser must track.
    for level in 0..depth.min(2_000) {
        block.push_str(&" ".repeat(level));
        block.push_str("a:\n");
    }
    [flow, block]
}

/// The peak resident set of this process (`VmHWM`), when Linux tells it.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    #[test]
    fn a_bomb_is_a_valid_gzip_stream_of_what_it_announces() {
        let prefix = b"header";
        let bomb = gzip_bomb(prefix, 4 * 1024 * 1024);
        assert!(bomb.len() < 16 * 1024, "{} bytes", bomb.len());
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bomb.as_slice())
            .read_to_end(&mut out)
            .expect("valid gzip, trailer included");
        assert_eq!(out.len(), prefix.len() + 4 * 1024 * 1024);
        assert!(out.starts_with(prefix));
        assert!(out[prefix.len()..].iter().all(|b| *b == 0));
    }
}
