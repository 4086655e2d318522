//! gzip on every core, with output that depends only on the input and the level.
//!
//! pigz's method: the input is cut into fixed 1 MiB chunks, each compressed on its own as raw
//! deflate primed with the 32 KiB before it (so matches across the cut are kept) and ended with
//! a sync flush (a byte-aligned empty stored block) so the pieces concatenate into one deflate
//! stream; the gzip header and trailer (RFC 1952) wrap them, the CRC-32 computed over the
//! whole input. The chunk size is fixed, never derived from the number of cores, so the bytes
//! (and the layer digest) are the same on every machine; the cost in size is a few bytes per
//! chunk.

use std::io::{self, Write};

use flate2::{Compress, Crc, FlushCompress, Status};
use rayon::prelude::*;

/// The size of the pieces compressed in parallel. Part of the output format: changing it
/// changes every gzip layer's digest.
pub const CHUNK_SIZE: usize = 1 << 20;

/// How far back deflate looks for matches (RFC 1951 section 3.2.5).
const WINDOW: usize = 32 * 1024;

/// A gzip encoder that compresses [`CHUNK_SIZE`] pieces in parallel on rayon's pool.
pub struct ParallelGzEncoder<W: Write> {
    out: W,
    level: u32,
    chunk_size: usize,
    /// Full chunks waiting to be compressed together.
    pending: Vec<Vec<u8>>,
    current: Vec<u8>,
    /// The last [`WINDOW`] bytes before the first pending chunk.
    dictionary: Vec<u8>,
    crc: Crc,
    header_written: bool,
}

impl<W: Write> ParallelGzEncoder<W> {
    /// A new encoder at `level` (0 to 9) writing to `out`.
    pub fn new(out: W, level: u32) -> Self {
        Self::with_chunk_size(out, level, CHUNK_SIZE)
    }

    fn with_chunk_size(out: W, level: u32, chunk_size: usize) -> Self {
        ParallelGzEncoder {
            out,
            level: level.min(9),
            chunk_size,
            pending: Vec::new(),
            current: Vec::with_capacity(chunk_size),
            dictionary: Vec::new(),
            crc: Crc::new(),
            header_written: false,
        }
    }

    /// How many chunks are compressed at once: enough to keep every thread busy. It changes
    /// only memory use and speed, never the output.
    fn batch_len() -> usize {
        rayon::current_num_threads().max(1) * 2
    }

    fn write_header(&mut self) -> io::Result<()> {
        if self.header_written {
            return Ok(());
        }
        // ID1 ID2 CM=deflate FLG=0 MTIME=0 XFL OS=255 (unknown): nothing from the machine.
        let xfl = match self.level {
            9 => 2,
            1 => 4,
            _ => 0,
        };
        self.out
            .write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 255])?;
        self.header_written = true;
        Ok(())
    }

    /// Compresses the pending chunks in parallel and writes them in order; `last` ends the
    /// deflate stream with the final one.
    fn flush_pending(&mut self, last: bool) -> io::Result<()> {
        self.write_header()?;
        let chunks = std::mem::take(&mut self.pending);
        if chunks.is_empty() && !last {
            return Ok(());
        }
        let chunks = if chunks.is_empty() {
            vec![Vec::new()]
        } else {
            chunks
        };
        // Each chunk is primed with the 32 KiB of input just before it.
        let mut dictionaries = Vec::with_capacity(chunks.len());
        let mut window = std::mem::take(&mut self.dictionary);
        for chunk in &chunks {
            dictionaries.push(window.clone());
            window.extend_from_slice(chunk);
            window = tail(&window).to_vec();
        }
        self.dictionary = window;
        let count = chunks.len();
        let compressed: Vec<io::Result<Vec<u8>>> = chunks
            .par_iter()
            .zip(dictionaries.par_iter())
            .enumerate()
            .map(|(i, (chunk, dictionary))| {
                deflate_chunk(chunk, dictionary, self.level, last && i == count - 1)
            })
            .collect();
        for piece in compressed {
            self.out.write_all(&piece?)?;
        }
        Ok(())
    }

    /// Writes the rest and the gzip trailer; returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        let current = std::mem::take(&mut self.current);
        if !current.is_empty() || self.pending.is_empty() {
            self.pending.push(current);
        }
        self.flush_pending(true)?;
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
        let room = self.chunk_size - self.current.len();
        let taken = &buf[..buf.len().min(room)];
        self.current.extend_from_slice(taken);
        self.crc.update(taken);
        if self.current.len() == self.chunk_size {
            let full = std::mem::replace(&mut self.current, Vec::with_capacity(self.chunk_size));
            self.pending.push(full);
            if self.pending.len() >= Self::batch_len() {
                self.flush_pending(false)?;
            }
        }
        Ok(taken.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        // Flushing mid-stream would cut a chunk short and change the output; data is written
        // as chunks fill and at `finish`.
        Ok(())
    }
}

/// The last [`WINDOW`] bytes of `data`.
fn tail(data: &[u8]) -> &[u8] {
    &data[data.len().saturating_sub(WINDOW)..]
}

/// Raw deflate of `chunk` primed with `dictionary`; ends with a sync flush, or the final
/// block when `last`.
fn deflate_chunk(chunk: &[u8], dictionary: &[u8], level: u32, last: bool) -> io::Result<Vec<u8>> {
    let mut compress = Compress::new(flate2::Compression::new(level), false);
    if !dictionary.is_empty() {
        compress
            .set_dictionary(dictionary)
            .map_err(io::Error::other)?;
    }
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let mut out = Vec::with_capacity(chunk.len() / 2 + 1024);
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.capacity().max(64 * 1024));
        }
        let consumed = compress.total_in() as usize;
        let status = compress
            .compress_vec(&chunk[consumed..], &mut out, flush)
            .map_err(io::Error::other)?;
        let all_in = compress.total_in() as usize == chunk.len();
        match status {
            Status::StreamEnd => break,
            // A sync flush is complete once all input is in and output space is left over.
            Status::Ok | Status::BufError if !last && all_in && out.len() < out.capacity() => {
                break;
            }
            Status::Ok | Status::BufError => {}
        }
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
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            let mut encoder = ParallelGzEncoder::with_chunk_size(Vec::new(), 9, chunk_size);
            // Odd write sizes, as a tar builder produces.
            for piece in data.chunks(777) {
                encoder.write_all(piece).unwrap();
            }
            encoder.finish().unwrap()
        })
    }

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .unwrap();
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

    #[test]
    fn priming_keeps_the_size_close_to_one_stream() {
        let data = sample(2 << 20);
        let parallel = gzip(&data, CHUNK_SIZE, 2).len();
        let mut single = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(9));
        single.write_all(&data).unwrap();
        let single = single.finish().unwrap().len();
        assert!(
            parallel <= single + 64,
            "parallel {parallel} bytes, single stream {single} bytes"
        );
    }
}
