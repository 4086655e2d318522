//! gzip on every core, with output that depends only on the input and the level.
//!
//! The input is cut into fixed [`CHUNK_SIZE`] pieces, each compressed on its own by libdeflate
//! (whole-buffer, better and faster than zlib at its best level, but with no dictionary: a
//! piece does not see the 32 KiB before it) into a complete raw deflate stream; all but the
//! last are spliced by [`crate::oci::deflate::unfinish`] (final block made non-final, a sync
//! flush after it) so the pieces concatenate into one deflate stream; the gzip header and
//! trailer (RFC 1952) wrap them, the CRC-32 computed over the whole input. The chunk size is
//! fixed, never derived from the number of cores, so the bytes (and the layer digest) are the
//! same on every machine; the cost in size is up to a kilobyte per piece on a binary.
//!
//! A piece goes to rayon's pool as soon as it is full and is written as soon as it and every
//! piece before it are done: no batch waits for its slowest piece, the caller's thread
//! compresses queued pieces while it waits, and at most a few pieces per thread are held. It
//! never writes more than one gzip member (some readers, Rust's `GzDecoder` among them, read
//! only the first).
//!
//! The buffers go round: a piece comes back with the input it was compressed from, and both
//! are used again for a later piece, and each thread keeps its libdeflate compressor (its
//! match-finder tables, costly to set up per piece). Nothing is allocated per piece once
//! the first few are in flight, so a layer takes the same memory whatever its size, with any
//! allocator: with a new buffer per piece, allocated on one thread and freed on another,
//! mimalloc (the static binary's allocator) kept 188 MiB resident while packaging a 477 MiB
//! binary, against 35 MiB now.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, TryRecvError};

use flate2::Crc;
use libdeflater::{CompressionLvl, Compressor};

use crate::oci::deflate;

/// The size of the pieces compressed in parallel. Part of the output format: changing it
/// changes every gzip layer's digest. Small enough that the pieces of a binary of a few MiB
/// keep two cores busy to the end, large enough that the pieces (each starting with no
/// history, with its own Huffman tables) cost little against one stream: at level 7, 512 KiB
/// pieces made a 44 MB binary's layer bigger than GNU `gzip -9` of it (tried by hand).
pub const CHUNK_SIZE: usize = 1 << 20;

/// The highest level libdeflate accepts (0 stores; 10 to 12 are its slow optimal parsing).
pub const MAX_LEVEL: u32 = 12;

/// A compressed piece once its job is done, and the input buffer it was compressed from.
type Piece = Receiver<io::Result<(Vec<u8>, Vec<u8>)>>;

/// A gzip encoder that compresses [`CHUNK_SIZE`] pieces in parallel on rayon's pool.
pub struct ParallelGzEncoder<W: Write> {
    out: W,
    level: u32,
    chunk_size: usize,
    /// Input not yet handed to a job; a full chunk waits here until more input shows it is
    /// not the last (the last one ends the deflate stream).
    current: Vec<u8>,
    /// The pieces being compressed, in stream order.
    in_flight: VecDeque<Piece>,
    /// Input buffers written out, emptied, for later pieces.
    spare_chunks: Vec<Vec<u8>>,
    /// Output buffers written out, for later pieces to be compressed into.
    spare_outputs: Vec<Vec<u8>>,
    /// Input buffers allocated so far (the tests count them).
    #[cfg(test)]
    allocated: usize,
    crc: Crc,
    header_written: bool,
}

impl<W: Write> ParallelGzEncoder<W> {
    /// A new encoder at libdeflate's `level` (0 to [`MAX_LEVEL`]) writing to `out`.
    pub fn new(out: W, level: u32) -> Self {
        Self::with_chunk_size(out, level, CHUNK_SIZE)
    }

    fn with_chunk_size(out: W, level: u32, chunk_size: usize) -> Self {
        ParallelGzEncoder {
            out,
            level: level.min(MAX_LEVEL),
            chunk_size,
            current: Vec::with_capacity(chunk_size),
            in_flight: VecDeque::new(),
            spare_chunks: Vec::new(),
            spare_outputs: Vec::new(),
            #[cfg(test)]
            allocated: 1,
            crc: Crc::new(),
            header_written: false,
        }
    }

    /// How many pieces may be in flight: enough that every thread has one queued behind the
    /// one it compresses. It changes only memory use and speed, never the output.
    fn max_in_flight() -> usize {
        rayon::current_num_threads().clamp(1, 16) * 2 + 1
    }

    fn write_header(&mut self) -> io::Result<()> {
        if self.header_written {
            return Ok(());
        }
        // ID1 ID2 CM=deflate FLG=0 MTIME=0 XFL OS=255 (unknown): nothing from the machine.
        // XFL as libdeflate's own gzip writer sets it: 4 fastest, 2 slowest.
        let xfl = match self.level {
            0 | 1 => 4,
            8.. => 2,
            _ => 0,
        };
        self.out
            .write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 255])?;
        self.header_written = true;
        Ok(())
    }

    /// Hands `current` to a job; `last` ends the deflate stream with it.
    fn submit(&mut self, last: bool) {
        let next = self.spare_chunks.pop().unwrap_or_else(|| {
            #[cfg(test)]
            {
                self.allocated += 1;
            }
            Vec::with_capacity(self.chunk_size)
        });
        let chunk = std::mem::replace(&mut self.current, next);
        let output = self.spare_outputs.pop().unwrap_or_default();
        let level = self.level;
        let (done, piece) = mpsc::sync_channel(1);
        // FIFO: the oldest piece, the one the output waits for, is compressed first.
        rayon::spawn_fifo(move || {
            let compressed = deflate_chunk(&chunk, level, last, output);
            // The encoder may be gone (an error elsewhere): nobody wants the piece then.
            let _ = done.send(compressed.map(|compressed| (compressed, chunk)));
        });
        self.in_flight.push_back(piece);
    }

    /// Writes the pieces that are done, in order; waits for the oldest until at most `keep`
    /// are left in flight.
    fn drain(&mut self, keep: usize) -> io::Result<()> {
        self.write_header()?;
        while let Some(piece) = self.in_flight.front() {
            let (compressed, mut chunk) = if self.in_flight.len() > keep {
                wait(piece)?
            } else {
                match piece.try_recv() {
                    Ok(done) => done?,
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return Err(stopped()),
                }
            };
            self.in_flight.pop_front();
            self.out.write_all(&compressed)?;
            chunk.clear();
            self.spare_chunks.push(chunk);
            self.spare_outputs.push(compressed);
        }
        Ok(())
    }

    /// Writes the rest and the gzip trailer; returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.submit(true);
        self.drain(0)?;
        let mut trailer = [0u8; 8];
        trailer[..4].copy_from_slice(&self.crc.sum().to_le_bytes());
        trailer[4..].copy_from_slice(&self.crc.amount().to_le_bytes());
        self.out.write_all(&trailer)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

impl<W: Write> Write for ParallelGzEncoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.current.len() == self.chunk_size {
            self.submit(false);
            self.drain(Self::max_in_flight())?;
        }
        let room = self.chunk_size - self.current.len();
        let taken = &buf[..buf.len().min(room)];
        self.current.extend_from_slice(taken);
        self.crc.update(taken);
        Ok(taken.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        // Flushing mid-stream would cut a chunk short and change the output; data is written
        // as chunks are done and at `finish`.
        Ok(())
    }
}

/// The compressed piece `piece` promises. On a pool thread, runs queued jobs meanwhile (most
/// often the pieces themselves) rather than leave its core idle; blocks only when nothing is
/// queued, so the piece is running on another thread.
fn wait(piece: &Piece) -> io::Result<(Vec<u8>, Vec<u8>)> {
    loop {
        match piece.try_recv() {
            Ok(compressed) => return compressed,
            Err(TryRecvError::Disconnected) => return Err(stopped()),
            Err(TryRecvError::Empty) => {}
        }
        if rayon::yield_now() != Some(rayon::Yield::Executed) {
            return piece.recv().map_err(|_| stopped())?;
        }
    }
}

fn stopped() -> io::Error {
    io::Error::other("a gzip compression job stopped before its piece was done")
}

thread_local! {
    /// This thread's libdeflate compressor and its level: set up once, not per piece.
    static COMPRESSOR: RefCell<Option<(u32, Compressor)>> = const { RefCell::new(None) };
}

/// Raw deflate of `chunk` into `out` (a buffer used before, or empty); ends with a sync
/// flush, or the final block when `last`.
fn deflate_chunk(chunk: &[u8], level: u32, last: bool, mut out: Vec<u8>) -> io::Result<Vec<u8>> {
    let level = level.min(MAX_LEVEL);
    let len = COMPRESSOR.with_borrow_mut(|kept| {
        let compressor = match kept {
            Some((at, compressor)) if *at == level => compressor,
            _ => {
                let lvl = CompressionLvl::new(level as i32)
                    .map_err(|_| io::Error::other(format!("gzip level {level} is out of range")))?;
                &mut kept.insert((level, Compressor::new(lvl))).1
            }
        };
        out.resize(compressor.deflate_compress_bound(chunk.len()), 0);
        compressor
            .deflate_compress(chunk, &mut out)
            .map_err(io::Error::other)
    })?;
    out.truncate(len);
    if !last {
        deflate::unfinish(&mut out, chunk.len()).map_err(io::Error::other)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sample(len: usize) -> Vec<u8> {
        // Compressible but not trivial: repeated text with a counter, and some noise.
        let mut data = Vec::with_capacity(len);
        let mut state = 0x2545_f491_u32;
        while data.len() < len {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            data.extend_from_slice(
                format!("line {} {:x}\n", data.len() / 7, state % 64).as_bytes(),
            );
        }
        data.truncate(len);
        data
    }

    fn gzip(data: &[u8], chunk_size: usize, threads: usize) -> Vec<u8> {
        gzip_at(data, 9, chunk_size, threads)
    }

    fn gzip_at(data: &[u8], level: u32, chunk_size: usize, threads: usize) -> Vec<u8> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut encoder = ParallelGzEncoder::with_chunk_size(Vec::new(), level, chunk_size);
            // Odd write sizes, as a tar builder produces.
            for piece in data.chunks(777) {
                encoder.write_all(piece).unwrap();
            }
            encoder.finish().unwrap()
        })
    }

    /// The first gzip member, which must be the only one: `GzDecoder` reads one member.
    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut decoder = flate2::read::GzDecoder::new(bytes);
        decoder.read_to_end(&mut out).unwrap();
        assert!(
            decoder.into_inner().is_empty(),
            "bytes after the first member"
        );
        out
    }

    #[test]
    fn round_trips_across_chunk_boundaries() {
        for len in [0, 1, 4095, 4096, 4097, 100_000, 300_000] {
            let data = sample(len);
            let compressed = gzip(&data, 4096, 3);
            assert_eq!(gunzip(&compressed), data, "length {len}");
        }
    }

    #[test]
    fn output_does_not_depend_on_the_number_of_threads() {
        let data = sample(300_000);
        let one = gzip(&data, 16 * 1024, 1);
        for threads in [2, 5] {
            assert_eq!(gzip(&data, 16 * 1024, threads), one, "{threads} threads");
        }
    }

    /// Pieces are written in order as they are done, while input still comes: the encoder
    /// holds a few per thread, never the whole stream.
    #[test]
    fn finished_pieces_are_written_while_the_input_still_comes() {
        let data = sample(64 * 16 * 1024);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        pool.install(|| {
            let mut encoder = ParallelGzEncoder::with_chunk_size(Vec::new(), 6, 16 * 1024);
            encoder.write_all(&data).unwrap();
            let limit = ParallelGzEncoder::<Vec<u8>>::max_in_flight();
            assert!(
                encoder.in_flight.len() <= limit,
                "{}",
                encoder.in_flight.len()
            );
            assert!(encoder.out.len() > 10, "nothing written yet");
            assert_eq!(gunzip(&encoder.finish().unwrap()), data);
        });
    }

    /// The input buffers go round: however long the stream, no more are allocated than can
    /// be in flight at once (with a new one per piece, an allocator with per-thread heaps kept
    /// hundreds of MiB for a large binary).
    #[test]
    fn input_buffers_are_used_again_whatever_the_length() {
        let data = sample(256 * 16 * 1024);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        pool.install(|| {
            let mut encoder = ParallelGzEncoder::with_chunk_size(Vec::new(), 1, 16 * 1024);
            encoder.write_all(&data).unwrap();
            // Those in flight, one more submitted before the oldest is written, and `current`.
            let limit = ParallelGzEncoder::<Vec<u8>>::max_in_flight() + 2;
            assert!(
                encoder.allocated <= limit,
                "{} input buffers allocated for 256 pieces, at most {limit} expected",
                encoder.allocated
            );
            assert_eq!(gunzip(&encoder.finish().unwrap()), data);
        });
    }

    proptest::proptest! {
        /// Any input, cut at any piece size, at any level: one gzip member that a
        /// single-member reader decodes to the input.
        #[test]
        fn prop_pieces_make_one_gzip_member(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40_000),
            alphabet in 1u16..=256,
            chunk_size in 1usize..12_000,
            level in 0..=MAX_LEVEL,
        ) {
            // A small alphabet makes the input compressible (Huffman blocks), a full one
            // incompressible (stored blocks).
            let data: Vec<u8> = bytes.iter().map(|&b| (u16::from(b) % alphabet) as u8).collect();
            let compressed = gzip_at(&data, level, chunk_size, 2);
            proptest::prop_assert_eq!(gunzip(&compressed), data);
        }
    }

    #[test]
    fn pieces_keep_the_size_close_to_one_stream() {
        let data = sample(2 << 20);
        let parallel = gzip(&data, CHUNK_SIZE, 2).len();
        let mut single = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(9));
        single.write_all(&data).unwrap();
        let single = single.finish().unwrap().len();
        // libdeflate at 9 against zlib at 9 in one stream: the pieces' fresh starts cost
        // less than libdeflate gains.
        assert!(
            parallel <= single,
            "parallel {parallel} bytes, single stream {single} bytes"
        );
    }
}
