//! Splices whole raw deflate streams (RFC 1951) into one, for [`crate::oci::gzip`].
//!
//! libdeflate compresses a buffer into a complete stream whose last block has BFINAL set. To
//! make it any piece but the last of a longer stream, [`unfinish`] walks its blocks (stored,
//! fixed and dynamic Huffman, section 3.2), decoding symbols only to find where the final
//! block's header and its end-of-block code are, clears BFINAL and appends an empty stored
//! block after it: zlib's sync flush, which leaves the next piece byte-aligned.
//!
//! It never writes decompressed data (it counts it, and checks that distances stay inside the
//! piece), never changes a bit other than the final block's BFINAL and the padding after its
//! end, and never panics on malformed input: it returns [`Malformed`].

use std::fmt;

/// A raw deflate stream the walker cannot follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    /// What is wrong.
    pub reason: &'static str,
    /// Where, in bits from the start of the stream.
    pub bit: usize,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "malformed deflate stream at byte {} bit {}: {}",
            self.bit / 8,
            self.bit % 8,
            self.reason
        )
    }
}

impl std::error::Error for Malformed {}

/// Where a complete raw deflate stream's final block is, in bits from its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Walked {
    /// The final block's header (its first bit is BFINAL).
    pub final_header: usize,
    /// Just past the final block's end (after its end-of-block code, or its stored bytes).
    pub end: usize,
    /// How many bytes the stream decompresses to.
    pub decoded: usize,
}

/// The empty stored block of a sync flush, once byte-aligned: LEN = 0, NLEN = !0.
const EMPTY_STORED: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Turns the complete stream `stream`, which must decompress to `expected` bytes, into a
/// piece that another stream may follow: its final block is no longer final and an empty
/// stored block (BFINAL = 0) ends it on a byte boundary.
pub fn unfinish(stream: &mut Vec<u8>, expected: usize) -> Result<(), Malformed> {
    let walked = walk(stream)?;
    if walked.decoded != expected {
        return Err(Malformed {
            reason: "the stream does not decompress to its input's length",
            bit: walked.end,
        });
    }
    let header = walked.final_header;
    stream[header / 8] &= !(1 << (header % 8));
    stream.truncate(walked.end.div_ceil(8));
    if walked.end % 8 != 0 {
        // Padding after the final block: zero, so the stored block's header bits are too.
        if let Some(last) = stream.last_mut() {
            *last &= (1u8 << (walked.end % 8)) - 1;
        }
    }
    // BFINAL = 0 and BTYPE = 00 take three bits; they and the padding to the next byte are
    // zero bits.
    stream.resize((walked.end + 3).div_ceil(8), 0);
    stream.extend_from_slice(&EMPTY_STORED);
    Ok(())
}

/// Walks the complete raw deflate stream `stream` to its final block. Bytes after the byte
/// the final block ends in are an error.
pub fn walk(stream: &[u8]) -> Result<Walked, Malformed> {
    let mut bits = Bits {
        data: stream,
        pos: 0,
    };
    let mut decoded = 0usize;
    let mut fixed = None;
    loop {
        let header = bits.pos;
        let last = bits.take(1)? == 1;
        match bits.take(2)? {
            0 => {
                bits.align();
                let len = bits.take(16)?;
                let nlen = bits.take(16)?;
                if len != !nlen & 0xffff {
                    return Err(bits.error("a stored block's LEN and NLEN disagree"));
                }
                bits.skip(8 * len as usize)?;
                decoded += len as usize;
            }
            1 => {
                let (litlen, dist) = fixed.get_or_insert_with(fixed_codes);
                symbols(&mut bits, litlen, dist, &mut decoded)?;
            }
            2 => {
                let (litlen, dist) = dynamic_codes(&mut bits)?;
                symbols(&mut bits, &litlen, &dist, &mut decoded)?;
            }
            _ => return Err(bits.error("block type 3 is reserved")),
        }
        if last {
            if bits.pos.div_ceil(8) != stream.len() {
                return Err(bits.error("bytes follow the final block"));
            }
            return Ok(Walked {
                final_header: header,
                end: bits.pos,
                decoded,
            });
        }
    }
}

/// Bits read least significant first (section 3.1.1).
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    /// The next 24 bits or fewer (zero past the end); `take` or `skip` checks the end.
    fn peek(&self) -> u32 {
        let byte = self.pos / 8;
        let mut word = 0u32;
        match self.data.get(byte..byte + 4) {
            Some(four) => {
                word = u32::from_le_bytes([four[0], four[1], four[2], four[3]]);
            }
            None => {
                for (i, b) in self.data.iter().skip(byte).take(4).enumerate() {
                    word |= u32::from(*b) << (8 * i);
                }
            }
        }
        word >> (self.pos % 8)
    }

    fn skip(&mut self, n: usize) -> Result<(), Malformed> {
        if self.pos + n > self.data.len() * 8 {
            return Err(self.error("the stream ends inside a block"));
        }
        self.pos += n;
        Ok(())
    }

    /// The next `n` (at most 16) bits as a number.
    fn take(&mut self, n: u32) -> Result<u32, Malformed> {
        let value = self.peek() & ((1 << n) - 1);
        self.skip(n as usize)?;
        Ok(value)
    }

    fn align(&mut self) {
        self.pos = self.pos.div_ceil(8) * 8;
    }

    fn error(&self, reason: &'static str) -> Malformed {
        Malformed {
            reason,
            bit: self.pos,
        }
    }
}

/// A canonical Huffman code (section 3.2.2) as a table indexed by the next `bits` bits of
/// input: each entry is `symbol << 4 | length`, or 0 where no code matches.
struct Code {
    table: Vec<u16>,
    bits: u32,
}

const MAX_BITS: usize = 15;

impl Code {
    /// The code with these code lengths (0: the symbol is unused). Over-subscribed lengths
    /// are an error; an incomplete code is not (a lone distance code is allowed), only
    /// reading one of its missing codes is.
    fn new(lengths: &[u8]) -> Result<Code, &'static str> {
        let mut count = [0u32; MAX_BITS + 1];
        for &length in lengths {
            count[usize::from(length)] += 1;
        }
        count[0] = 0;
        let mut left = 1i64;
        for &n in &count[1..] {
            left = 2 * left - i64::from(n);
            if left < 0 {
                return Err("a Huffman code is over-subscribed");
            }
        }
        let bits = (1..=MAX_BITS).rev().find(|&l| count[l] > 0).unwrap_or(0) as u32;
        let mut next = [0u32; MAX_BITS + 2];
        for length in 1..=MAX_BITS {
            next[length + 1] = (next[length] + count[length]) << 1;
        }
        let mut table = vec![0u16; 1 << bits];
        for (symbol, &length) in lengths.iter().enumerate() {
            if length == 0 {
                continue;
            }
            let length = usize::from(length);
            let code = next[length];
            next[length] += 1;
            // Codes are packed most significant bit first (section 3.1.1): index by the
            // reversed code.
            let reversed = (code.reverse_bits() >> (32 - length)) as usize;
            let entry = (symbol as u16) << 4 | length as u16;
            for slot in table.iter_mut().skip(reversed).step_by(1 << length) {
                *slot = entry;
            }
        }
        Ok(Code { table, bits })
    }

    fn decode(&self, bits: &mut Bits<'_>) -> Result<usize, Malformed> {
        let index = bits.peek() & ((1 << self.bits) - 1);
        let entry = self.table.get(index as usize).copied().unwrap_or(0);
        if entry == 0 {
            return Err(bits.error("no Huffman code matches the input"));
        }
        bits.skip(usize::from(entry & 15))?;
        Ok(usize::from(entry >> 4))
    }
}

/// The fixed literal/length and distance codes (section 3.2.6).
fn fixed_codes() -> (Code, Code) {
    let mut litlen = [8u8; 288];
    litlen[144..256].fill(9);
    litlen[256..280].fill(7);
    // Complete codes: neither can fail.
    let litlen = Code::new(&litlen).unwrap_or(Code {
        table: Vec::new(),
        bits: 0,
    });
    let dist = Code::new(&[5; 32]).unwrap_or(Code {
        table: Vec::new(),
        bits: 0,
    });
    (litlen, dist)
}

/// The order code length code lengths come in (section 3.2.7).
const CLEN_ORDER: [usize; 19] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
];

/// Reads a dynamic block's header: its literal/length and distance codes (section 3.2.7).
fn dynamic_codes(bits: &mut Bits<'_>) -> Result<(Code, Code), Malformed> {
    let hlit = bits.take(5)? as usize + 257;
    let hdist = bits.take(5)? as usize + 1;
    let hclen = bits.take(4)? as usize + 4;
    if hlit > 286 || hdist > 30 {
        return Err(bits.error("too many length or distance codes"));
    }
    let mut clen = [0u8; 19];
    for &i in &CLEN_ORDER[..hclen] {
        clen[i] = bits.take(3)? as u8;
    }
    let clen = Code::new(&clen).map_err(|reason| bits.error(reason))?;
    let mut lengths = [0u8; 286 + 30];
    let lengths = &mut lengths[..hlit + hdist];
    let mut i = 0;
    while i < lengths.len() {
        let symbol = clen.decode(bits)?;
        let (value, repeat) = match symbol {
            0..=15 => (symbol as u8, 1),
            16 => {
                let Some(&previous) = i.checked_sub(1).and_then(|p| lengths.get(p)) else {
                    return Err(bits.error("a repeat code has no length to repeat"));
                };
                (previous, 3 + bits.take(2)? as usize)
            }
            17 => (0, 3 + bits.take(3)? as usize),
            _ => (0, 11 + bits.take(7)? as usize),
        };
        let Some(run) = lengths.get_mut(i..i + repeat) else {
            return Err(bits.error("code lengths run past the codes"));
        };
        run.fill(value);
        i += repeat;
    }
    if lengths[256] == 0 {
        return Err(bits.error("the block has no end-of-block code"));
    }
    let litlen = Code::new(&lengths[..hlit]).map_err(|reason| bits.error(reason))?;
    let dist = Code::new(&lengths[hlit..]).map_err(|reason| bits.error(reason))?;
    Ok((litlen, dist))
}

/// Length codes 257 to 285: base length and extra bits (section 3.2.5).
const LENGTHS: [(u16, u8); 29] = [
    (3, 0),
    (4, 0),
    (5, 0),
    (6, 0),
    (7, 0),
    (8, 0),
    (9, 0),
    (10, 0),
    (11, 1),
    (13, 1),
    (15, 1),
    (17, 1),
    (19, 2),
    (23, 2),
    (27, 2),
    (31, 2),
    (35, 3),
    (43, 3),
    (51, 3),
    (59, 3),
    (67, 4),
    (83, 4),
    (99, 4),
    (115, 4),
    (131, 5),
    (163, 5),
    (195, 5),
    (227, 5),
    (258, 0),
];

/// Distance codes 0 to 29: base distance and extra bits (section 3.2.5).
const DISTANCES: [(u16, u8); 30] = [
    (1, 0),
    (2, 0),
    (3, 0),
    (4, 0),
    (5, 1),
    (7, 1),
    (9, 2),
    (13, 2),
    (17, 3),
    (25, 3),
    (33, 4),
    (49, 4),
    (65, 5),
    (97, 5),
    (129, 6),
    (193, 6),
    (257, 7),
    (385, 7),
    (513, 8),
    (769, 8),
    (1025, 9),
    (1537, 9),
    (2049, 10),
    (3073, 10),
    (4097, 11),
    (6145, 11),
    (8193, 12),
    (12289, 12),
    (16385, 13),
    (24577, 13),
];

/// Reads a Huffman block's symbols up to and including its end-of-block code.
fn symbols(
    bits: &mut Bits<'_>,
    litlen: &Code,
    dist: &Code,
    decoded: &mut usize,
) -> Result<(), Malformed> {
    loop {
        let symbol = litlen.decode(bits)?;
        match symbol {
            0..=255 => *decoded += 1,
            256 => return Ok(()),
            _ => {
                let Some(&(base, extra)) = LENGTHS.get(symbol - 257) else {
                    return Err(bits.error("length code 286 or 287"));
                };
                let length = usize::from(base) + bits.take(u32::from(extra))? as usize;
                let Some(&(base, extra)) = DISTANCES.get(dist.decode(bits)?) else {
                    return Err(bits.error("distance code 30 or 31"));
                };
                let distance = usize::from(base) + bits.take(u32::from(extra))? as usize;
                // The piece is compressed on its own: nothing before it to refer to.
                if distance > *decoded {
                    return Err(bits.error("a distance reaches before the stream's start"));
                }
                *decoded += length;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libdeflater::{CompressionLvl, Compressor};
    use proptest::prelude::*;
    use std::io::Read;

    fn compress(data: &[u8], level: i32) -> Vec<u8> {
        let mut compressor = Compressor::new(CompressionLvl::new(level).unwrap());
        let mut out = vec![0; compressor.deflate_compress_bound(data.len())];
        let n = compressor.deflate_compress(data, &mut out).unwrap();
        out.truncate(n);
        out
    }

    fn inflate(stream: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::DeflateDecoder::new(stream)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    /// Incompressible bytes (xorshift).
    fn noise(len: usize) -> Vec<u8> {
        let mut state = 0x9e37_79b9_u32;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                state as u8
            })
            .collect()
    }

    fn text(len: usize) -> Vec<u8> {
        let mut data = Vec::new();
        let mut i = 0;
        while data.len() < len {
            data.extend_from_slice(format!("line {i} of {}\n", i % 17).as_bytes());
            i += 1;
        }
        data.truncate(len);
        data
    }

    /// Block types of the stream's blocks, in order.
    fn block_types(stream: &[u8]) -> Vec<u32> {
        // Walk prefixes block by block: every block is followed by a header we can read
        // at the position the walker reached; simpler to re-walk with a counter.
        let mut bits = Bits {
            data: stream,
            pos: 0,
        };
        let mut types = Vec::new();
        let mut decoded = 0;
        loop {
            let last = bits.take(1).unwrap() == 1;
            let kind = bits.take(2).unwrap();
            types.push(kind);
            match kind {
                0 => {
                    bits.align();
                    let len = bits.take(16).unwrap();
                    bits.take(16).unwrap();
                    bits.skip(8 * len as usize).unwrap();
                }
                1 => {
                    let (l, d) = fixed_codes();
                    symbols(&mut bits, &l, &d, &mut decoded).unwrap();
                }
                _ => {
                    let (l, d) = dynamic_codes(&mut bits).unwrap();
                    symbols(&mut bits, &l, &d, &mut decoded).unwrap();
                }
            }
            if last {
                return types;
            }
        }
    }

    /// `pieces` spliced with [`unfinish`] (all but the last) inflate to their concatenation.
    fn splice_round_trips(pieces: &[Vec<u8>], level: i32) {
        let mut stream = Vec::new();
        for (i, piece) in pieces.iter().enumerate() {
            let mut compressed = compress(piece, level);
            if i + 1 < pieces.len() {
                unfinish(&mut compressed, piece.len()).unwrap();
            }
            stream.extend_from_slice(&compressed);
        }
        assert_eq!(inflate(&stream), pieces.concat());
    }

    #[test]
    fn stored_blocks() {
        let data = noise(200_000);
        for level in [0, 6] {
            let stream = compress(&data, level);
            assert!(
                block_types(&stream).iter().all(|&t| t == 0),
                "level {level}"
            );
            let walked = walk(&stream).unwrap();
            assert_eq!(walked.decoded, data.len());
            assert_eq!(walked.end.div_ceil(8), stream.len());
            splice_round_trips(&[noise(70_000), data.clone(), noise(3)], level);
        }
    }

    #[test]
    fn fixed_huffman_blocks() {
        // Short repetitive inputs get the fixed code: a dynamic header would cost more.
        let data = b"hello hello hello hello hello hello hello".to_vec();
        let stream = compress(&data, 6);
        assert_eq!(block_types(&stream), [1]);
        assert_eq!(walk(&stream).unwrap().decoded, data.len());
        splice_round_trips(&[data.clone(), data.clone(), data], 6);
    }

    #[test]
    fn dynamic_huffman_blocks() {
        let data = text(300_000);
        let stream = compress(&data, 9);
        assert!(block_types(&stream).contains(&2));
        assert_eq!(walk(&stream).unwrap().decoded, data.len());
        splice_round_trips(&[text(100_000), data, text(5)], 9);
    }

    #[test]
    fn empty_pieces_splice() {
        splice_round_trips(&[Vec::new(), text(1000), Vec::new(), Vec::new()], 12);
        splice_round_trips(&[Vec::new(), Vec::new()], 0);
    }

    #[test]
    fn the_sync_flush_is_byte_aligned_and_not_final() {
        let data = text(10_000);
        let mut stream = compress(&data, 7);
        unfinish(&mut stream, data.len()).unwrap();
        assert!(stream.ends_with(&EMPTY_STORED));
        // A stream without a final block: DeflateDecoder stops short of an end.
        let walked = walk(&stream);
        assert_eq!(
            walked.unwrap_err().reason,
            "the stream ends inside a block",
            "no block is final any more"
        );
    }

    #[test]
    fn malformed_streams_are_errors() {
        let cases: &[(&[u8], &str)] = &[
            (&[], "the stream ends inside a block"),
            (&[0b111], "block type 3 is reserved"),
            // Stored, final, LEN = 1, NLEN = 0 (should be 0xfffe).
            (
                &[1, 1, 0, 0, 0, 0x61],
                "a stored block's LEN and NLEN disagree",
            ),
            // Stored, final, LEN = 5 but one byte.
            (
                &[1, 5, 0, 0xfa, 0xff, 0x61],
                "the stream ends inside a block",
            ),
            // Dynamic, HLIT = 257 + 31.
            (
                &[0b1111_1101, 0xff, 0xff],
                "too many length or distance codes",
            ),
        ];
        for (stream, reason) in cases {
            assert_eq!(walk(stream).unwrap_err().reason, *reason, "{stream:?}");
        }
        // A valid stream with bytes after it.
        let mut stream = compress(b"hello", 6);
        stream.push(0);
        assert_eq!(
            walk(&stream).unwrap_err().reason,
            "bytes follow the final block"
        );
        // The wrong length.
        let mut stream = compress(b"hello", 6);
        assert!(unfinish(&mut stream, 4).is_err());
        // Over-subscribed: three codes of length 1.
        assert_eq!(
            Code::new(&[1, 1, 1]).err(),
            Some("a Huffman code is over-subscribed")
        );
        // A distance before the start: fixed block, length 3 (symbol 257, code 0000001),
        // distance code 0.
        let mut bits = BitWriter::default();
        bits.put(1, 1);
        bits.put(1, 2);
        bits.put_code(0b0000001, 7);
        bits.put_code(0, 5);
        bits.put_code(0, 7);
        assert_eq!(
            walk(&bits.bytes).unwrap_err().reason,
            "a distance reaches before the stream's start"
        );
    }

    #[derive(Default)]
    struct BitWriter {
        bytes: Vec<u8>,
        bit: usize,
    }

    impl BitWriter {
        fn put(&mut self, value: u32, n: usize) {
            for i in 0..n {
                if self.bit.is_multiple_of(8) {
                    self.bytes.push(0);
                }
                let last = self.bytes.len() - 1;
                self.bytes[last] |= (((value >> i) & 1) as u8) << (self.bit % 8);
                self.bit += 1;
            }
        }

        /// A Huffman code: most significant bit first.
        fn put_code(&mut self, code: u32, n: usize) {
            for i in (0..n).rev() {
                self.put((code >> i) & 1, 1);
            }
        }
    }

    proptest! {
        /// Corrupt streams: the walker returns, an error or a result, and never panics.
        #[test]
        fn prop_walk_never_panics(
            data in proptest::collection::vec(any::<u8>(), 0..2000),
            level in 0i32..=12,
            flips in proptest::collection::vec((any::<usize>(), 0u8..8), 0..4),
            cut in any::<usize>(),
        ) {
            let mut stream = compress(&data, level);
            for (at, bit) in flips {
                let at = at % stream.len();
                stream[at] ^= 1 << bit;
            }
            stream.truncate(cut % (stream.len() + 1));
            let _ = walk(&stream);
            let _ = unfinish(&mut stream, data.len());
        }

        #[test]
        fn prop_walk_never_panics_on_noise(
            stream in proptest::collection::vec(any::<u8>(), 0..500),
        ) {
            let _ = walk(&stream);
        }
    }
}
