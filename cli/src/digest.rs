//! SHA-256 digests: one validated type for Cargo.lock checksums, OCI descriptors and
//! `SHA256SUMS` lines, and the hashing helpers every module uses.
//!
//! `sha2` picks the SHA-NI / ARMv8 crypto instructions at run time where the CPU has them.

use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result};
use rayon::prelude::*;
use sha2::{Digest, Sha256};

/// A SHA-256 digest. Displays as `sha256:<hex>` (the OCI form); [`Sha256Digest::hex`] gives
/// the bare hex that `Cargo.lock` and `SHA256SUMS` use.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256Digest([u8; 32]);

/// Why a string is not a SHA-256 digest.
#[derive(Debug, thiserror::Error)]
#[error("`{value}` is not a sha256 digest: {reason}")]
pub struct ParseDigestError {
    value: String,
    reason: &'static str,
}

impl Sha256Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Sha256Digest(Sha256::digest(bytes).into())
    }

    /// Parses 64 lowercase or uppercase hex digits, no prefix (the `Cargo.lock` form).
    pub fn from_hex(hex_digits: &str) -> Result<Self, ParseDigestError> {
        let err = |reason| ParseDigestError {
            value: hex_digits.to_owned(),
            reason,
        };
        if hex_digits.len() != 64 {
            return Err(err("expected 64 hex digits"));
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_digits, &mut bytes).map_err(|_| err("not hexadecimal"))?;
        Ok(Sha256Digest(bytes))
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The bare lowercase hex (the `Cargo.lock` and `SHA256SUMS` form).
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// A short form for tables: the first 12 hex digits.
    pub fn short(&self) -> String {
        self.hex()[..12].to_owned()
    }
}

impl fmt::Display for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Sha256Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Parses the OCI form `sha256:<hex>`; the bare hex is accepted too.
impl FromStr for Sha256Digest {
    type Err = ParseDigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            Some(("sha256", hex_digits)) => Sha256Digest::from_hex(hex_digits),
            Some(_) => Err(ParseDigestError {
                value: s.to_owned(),
                reason: "only the sha256 algorithm is supported",
            }),
            None => Sha256Digest::from_hex(s),
        }
    }
}

impl serde::Serialize for Sha256Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Sha256Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl From<Sha256Digest> for oci_spec::image::Digest {
    fn from(digest: Sha256Digest) -> Self {
        oci_spec::image::Sha256Digest::from_str(&digest.hex())
            .expect("64 lowercase hex digits are a valid sha256 digest")
            .into()
    }
}

impl TryFrom<&oci_spec::image::Digest> for Sha256Digest {
    type Error = ParseDigestError;

    fn try_from(digest: &oci_spec::image::Digest) -> Result<Self, Self::Error> {
        digest.to_string().parse()
    }
}

impl schemars::JsonSchema for Sha256Digest {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Sha256Digest".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^sha256:[0-9a-f]{64}$",
            "description": "A SHA-256 digest in the OCI form `sha256:<64 lowercase hex digits>`."
        })
    }
}

/// A writer that hashes everything written through it and counts the bytes.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    written: u64,
}

impl<W: Write> HashingWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            written: 0,
        }
    }

    /// The digest and byte count of everything written, and the inner writer.
    pub fn finish(self) -> (Sha256Digest, u64, W) {
        (
            Sha256Digest(self.hasher.finalize().into()),
            self.written,
            self.inner,
        )
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A reader that hashes everything read through it and counts the bytes.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    read: u64,
}

impl<R: Read> HashingReader<R> {
    /// Wraps `inner`.
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            read: 0,
        }
    }

    /// The digest and byte count of everything read, and the inner reader.
    pub fn finish(self) -> (Sha256Digest, u64, R) {
        (
            Sha256Digest(self.hasher.finalize().into()),
            self.read,
            self.inner,
        )
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        Ok(n)
    }
}

/// The size of the buffer [`hash_file`] and [`copy_hashed`] callers read through: large
/// enough that a big file costs few system calls, small enough to stay in the L2 cache while
/// it is hashed.
pub const COPY_BUFFER_SIZE: usize = 256 * 1024;

thread_local! {
    /// One read buffer per thread for [`hash_file`]: verifying thousands of small files must
    /// not allocate (with musl's allocator, map and unmap) a buffer for each one.
    static READ_BUFFER: std::cell::RefCell<Vec<u8>> =
        std::cell::RefCell::new(vec![0; COPY_BUFFER_SIZE]);
}

/// The digest and length of everything `reader` yields.
pub fn hash_reader(reader: impl Read) -> io::Result<(Sha256Digest, u64)> {
    READ_BUFFER.with_borrow_mut(|buffer| copy_hashed(reader, &mut io::sink(), buffer))
}

/// Copies everything `reader` yields to `writer` through `buffer`, hashing it on the way:
/// each chunk is read once, hashed while it is in cache, and written with one call. Returns
/// the digest and length.
pub fn copy_hashed(
    mut reader: impl Read,
    writer: &mut impl Write,
    buffer: &mut [u8],
) -> io::Result<(Sha256Digest, u64)> {
    let mut hasher = Sha256::new();
    let mut total = 0u64;
    loop {
        let filled = fill(&mut reader, buffer)?;
        if filled == 0 {
            break;
        }
        hasher.update(&buffer[..filled]);
        writer.write_all(&buffer[..filled])?;
        total += filled as u64;
        if filled < buffer.len() {
            break;
        }
    }
    Ok((Sha256Digest(hasher.finalize().into()), total))
}

/// The digests and lengths of two streams expected to hold the same bytes (a file and its
/// pristine copy), read side by side through the two halves of `buffer`. While they are equal
/// the bytes are hashed once; from the first difference on each stream is hashed apart.
pub fn hash_both(
    mut first: impl Read,
    mut second: impl Read,
    buffer: &mut [u8],
) -> io::Result<[(Sha256Digest, u64); 2]> {
    let half = buffer.len() / 2;
    let (first_buffer, second_buffer) = buffer.split_at_mut(half);
    let second_buffer = &mut second_buffer[..half];
    let mut shared = Sha256::new();
    // The second stream's hasher, from the first difference on.
    let mut apart: Option<Sha256> = None;
    let (mut first_len, mut second_len) = (0u64, 0u64);
    loop {
        let first_n = fill(&mut first, first_buffer)?;
        let second_n = fill(&mut second, second_buffer)?;
        let (a, b) = (&first_buffer[..first_n], &second_buffer[..second_n]);
        match &mut apart {
            None if a == b => shared.update(a),
            None => {
                let mut second_hasher = shared.clone();
                shared.update(a);
                second_hasher.update(b);
                apart = Some(second_hasher);
            }
            Some(second_hasher) => {
                shared.update(a);
                second_hasher.update(b);
            }
        }
        first_len += first_n as u64;
        second_len += second_n as u64;
        // A short fill means that stream is exhausted.
        if first_n < half && second_n < half {
            break;
        }
    }
    let first_digest = Sha256Digest(shared.finalize().into());
    let second_digest = apart.map_or(first_digest, |h| Sha256Digest(h.finalize().into()));
    Ok([(first_digest, first_len), (second_digest, second_len)])
}

/// Reads until `buffer` is full or the reader is exhausted; returns the bytes read.
fn fill(reader: &mut impl Read, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The digest and length of a regular file (a FIFO, device or directory is an input error,
/// never a read that hangs or does not end).
pub fn hash_file(path: &Path) -> Result<(Sha256Digest, u64)> {
    let opened = crate::input::open_regular(path, crate::input::Links::Follow)?;
    hash_reader(opened.file).with_context(|| format!("cannot read {}", path.display()))
}

/// [`hash_file`] of every path, on all cores; the results are in the order of `paths`.
///
/// One file hashes on one core, so the largest files start first and each thread takes the
/// next file when it is done: three archives of 200, 200 and 100 MiB take the time of 300 MiB
/// on two cores, where splitting the list in halves could take 400.
pub fn hash_files(paths: &[PathBuf]) -> Vec<Result<(Sha256Digest, u64)>> {
    let sizes: Vec<u64> = paths
        .iter()
        .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
        .collect();
    let mut order: Vec<usize> = (0..paths.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(sizes[i]));
    let next = AtomicUsize::new(0);
    let workers = rayon::current_num_threads().clamp(1, paths.len().max(1));
    let mut hashed: Vec<(usize, Result<(Sha256Digest, u64)>)> = (0..workers)
        .into_par_iter()
        .flat_map_iter(|_| {
            std::iter::from_fn(|| {
                let i = *order.get(next.fetch_add(1, Ordering::Relaxed))?;
                Some((i, hash_file(&paths[i])))
            })
            .collect::<Vec<_>>()
        })
        .collect();
    hashed.sort_by_key(|(i, _)| *i);
    hashed.into_iter().map(|(_, result)| result).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_and_displays_both_forms() {
        let d = Sha256Digest::of(b"");
        assert_eq!(d.hex(), EMPTY);
        assert_eq!(d.to_string(), format!("sha256:{EMPTY}"));
        assert_eq!(
            format!("sha256:{EMPTY}").parse::<Sha256Digest>().unwrap(),
            d
        );
        assert_eq!(EMPTY.parse::<Sha256Digest>().unwrap(), d);
        assert_eq!(EMPTY.to_uppercase().parse::<Sha256Digest>().unwrap(), d);
    }

    #[test]
    fn rejects_malformed_digests() {
        for bad in [
            "",
            "sha256:",
            "sha512:00",
            &EMPTY[1..],
            &format!("{EMPTY}0"),
        ] {
            assert!(bad.parse::<Sha256Digest>().is_err(), "{bad}");
        }
        let mut not_hex = EMPTY.to_owned();
        not_hex.replace_range(0..1, "g");
        assert!(not_hex.parse::<Sha256Digest>().is_err());
    }

    #[test]
    fn converts_to_and_from_oci_digest() {
        let d = Sha256Digest::of(b"x");
        let oci: oci_spec::image::Digest = d.into();
        assert_eq!(oci.to_string(), d.to_string());
        assert_eq!(Sha256Digest::try_from(&oci).unwrap(), d);
    }

    #[test]
    fn copy_hashed_copies_and_hashes_across_buffer_boundaries() {
        // Lengths around the buffer size, through a reader that returns short reads.
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                let n = out.len().min(self.0.len()).min(1000);
                out[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for len in [0, 1, 4095, 4096, 4097, 8192, 10_000] {
            let mut buffer = vec![0; 4096];
            let mut out = Vec::new();
            let (digest, n) = copy_hashed(Trickle(&data[..len]), &mut out, &mut buffer).unwrap();
            assert_eq!(n, len as u64);
            assert_eq!(out, &data[..len]);
            assert_eq!(digest, Sha256Digest::of(&data[..len]));
        }
        let (digest, n) = hash_reader(&data[..]).unwrap();
        assert_eq!((digest, n), (Sha256Digest::of(&data), data.len() as u64));
    }

    #[test]
    fn hash_both_hashes_equal_and_differing_streams() {
        let data: Vec<u8> = (0..20_000u32).map(|i| (i * 13 % 251) as u8).collect();
        let mut changed = data.clone();
        changed[9_000] ^= 1;
        let mut buffer = vec![0; 2 * 4096];
        let cases: [(&[u8], &[u8]); 8] = [
            (&data, &data),
            (&[], &[]),
            (&data, &changed),
            (&changed[..5], &data[..5]),
            (&data[..8192], &data),
            (&data, &data[..4096]),
            (&data, &[]),
            (b"a", b"b"),
        ];
        for (first, second) in cases {
            let [(a, a_len), (b, b_len)] = hash_both(first, second, &mut buffer).unwrap();
            assert_eq!((a, a_len), (Sha256Digest::of(first), first.len() as u64));
            assert_eq!((b, b_len), (Sha256Digest::of(second), second.len() as u64));
        }
    }

    #[test]
    fn hash_files_keeps_the_order_of_the_paths() {
        let dir = tempfile::tempdir().unwrap();
        let mut paths = Vec::new();
        for (name, len) in [("a", 10), ("b", 300_000), ("c", 0), ("d", 70_000)] {
            let path = dir.path().join(name);
            std::fs::write(&path, vec![len as u8; len]).unwrap();
            paths.push(path);
        }
        paths.push(dir.path().join("missing"));
        let hashed = hash_files(&paths);
        assert_eq!(hashed.len(), 5);
        for (path, result) in paths.iter().zip(&hashed).take(4) {
            let bytes = std::fs::read(path).unwrap();
            let (digest, len) = result.as_ref().unwrap();
            assert_eq!(
                (*digest, *len),
                (Sha256Digest::of(&bytes), bytes.len() as u64)
            );
        }
        let err = hashed[4].as_ref().unwrap_err();
        assert!(format!("{err:#}").contains("missing"), "{err:#}");
        assert!(hash_files(&[]).is_empty());
    }

    #[test]
    fn hashing_writer_counts_and_hashes() {
        let mut w = HashingWriter::new(Vec::new());
        w.write_all(b"hello ").unwrap();
        w.write_all(b"world").unwrap();
        let (digest, len, inner) = w.finish();
        assert_eq!(len, 11);
        assert_eq!(inner, b"hello world");
        assert_eq!(digest, Sha256Digest::of(b"hello world"));
    }
}
