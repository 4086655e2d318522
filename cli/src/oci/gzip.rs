//! gzip on every core, with output that depends only on the input and the level.
//!
//! pigz's method: the input is cut into fixed [`CHUNK_SIZE`] pieces, each compressed on its own
//! as raw deflate primed with the 32 KiB before it (so matches across the cut are kept) and
//! ended with a sync flush (a byte-aligned empty stored block) so the pieces concatenate into
//! one deflate stream; the gzip header and trailer (RFC 1952) wrap them, the CRC-32 computed
//! over the whole input. The chunk size is fixed, never derived from the number of cores, so
//! the bytes (and the layer digest) are the same on every machine; the cost in size is a few
//! bytes per chunk.
//!
//! A piece goes to rayon's pool as soon as it is full and is written as soon as it and every
//! piece before it are done: no batch waits for its slowest piece, the caller's thread
//! compresses queued pieces while it waits, and at most a few pieces per thread are held. It
//! never writes more than one gzip member (some readers, Rust's `GzDecoder` among them, read
//! only the first).

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, TryRecvError};

use flate2::{Compress, Crc, FlushCompress, Status};

/// The size of the pieces compressed in parallel. Part of the output format: changing it
/// changes every gzip layer's digest. Small enough that the pieces of a binary of a few MiB
/// keep two cores busy to the end, large enough that the sync flushes cost a few hundred bytes
/// against one stream.
pub const CHUNK_SIZE: usize = 256 << 10;

/// How far back deflate looks for matches (RFC 1951 section 3.2.5).
const WINDOW: usize = 32 * 1024;

/// A compressed piece, once its job is done.
type Piece = Receiver<io::Result<Vec<u8>>>;

/// A gzip encoder that compresses [`CHUNK_SIZE`] pieces in parallel on rayon's pool.
pub struct ParallelGzEncoder<W: Write> {
    out: W,
    level: u32,
    chunk_size: usize,
    /// Input not yet handed to a job; a full chunk waits here until more input shows it is
    /// not the last (the last one ends the deflate stream).
    current: Vec<u8>,
    /// The last [`WINDOW`] bytes before `current`.
    dictionary: Vec<u8>,
    /// The pieces being compressed, in stream order.
    in_flight: VecDeque<Piece>,
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
            current: Vec::with_capacity(chunk_size),
            dictionary: Vec::new(),
            in_flight: VecDeque::new(),
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

    /// Hands `current` to a job primed with the window before it; `last` ends the deflate
    /// stream with it.
    fn submit(&mut self, last: bool) {
        let chunk = std::mem::replace(&mut self.current, Vec::with_capacity(self.chunk_size));
        let next = if chunk.len() >= WINDOW {
            tail(&chunk).to_vec()
        } else {
            let mut window = self.dictionary.clone();
            window.extend_from_slice(&chunk);
            tail(&window).to_vec()
        };
        let dictionary = std::mem::replace(&mut self.dictionary, next);
        let level = self.level;
        let (done, piece) = mpsc::sync_channel(1);
        // FIFO: the oldest piece, the one the output waits for, is compressed first.
        rayon::spawn_fifo(move || {
            // The encoder may be gone (an error elsewhere): nobody wants the piece then.
            let _ = done.send(deflate_chunk(&chunk, &dictionary, level, last));
        });
        self.in_flight.push_back(piece);
    }

    /// Writes the pieces that are done, in order; waits for the oldest until at most `keep`
    /// are left in flight.
    fn drain(&mut self, keep: usize) -> io::Result<()> {
        self.write_header()?;
        while let Some(piece) = self.in_flight.front() {
            let compressed = if self.in_flight.len() > keep {
                wait(piece)?
            } else {
                match piece.try_recv() {
                    Ok(compressed) => compressed?,
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return Err(stopped()),
                }
            };
            self.in_flight.pop_front();
            self.out.write_all(&compressed)?;
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
fn wait(piece: &Piece) -> io::Result<Vec<u8>> {
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

    #[test]
    fn priming_keeps_the_size_close_to_one_stream() {
        let data = sample(2 << 20);
        let parallel = gzip(&data, CHUNK_SIZE, 2).len();
        let cuts = data.len() / CHUNK_SIZE;
        let mut single = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(9));
        single.write_all(&data).unwrap();
        let single = single.finish().unwrap().len();
        // A sync flush and the block it ends early: a few dozen bytes per cut at most.
        assert!(
            parallel <= single + 32 * cuts,
            "parallel {parallel} bytes, single stream {single} bytes"
        );
    }
}
