//! `image --load podman|docker`: hands a finished image, as an archive, to the local container
//! engine. podman through `podman load` (its storage settings, `CONTAINERS_STORAGE_CONF` and
//! the rest, apply as for any podman command); Docker through the Engine API on its unix socket
//! (`POST /images/load`, `DOCKER_HOST=unix://…` honoured, else `/var/run/docker.sock`), with no
//! `docker` CLI needed. podman's `system service` speaks the same API, so either engine can
//! serve the Docker path.
//!
//! The request is one HTTP/1.1 POST with the tar streamed as its body; the answer's status and
//! the JSON lines it carries (`{"stream": "Loaded image: …"}`, `{"error": …}`) say what was
//! loaded or why not. Nothing else is asked of the engine, and nothing is written to disk.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::error;
use crate::input::{self, Links, RegularFile};
use crate::process;

/// Docker's socket when `DOCKER_HOST` is not set.
pub const DEFAULT_DOCKER_SOCKET: &str = "/var/run/docker.sock";

/// How long the engine may take to answer once the whole image is sent (it unpacks every
/// layer first), and how long a write may make no progress.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(600);
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// The engine's answer is a few JSON lines; more than this is not an answer.
const MAX_ANSWER: u64 = 16 << 20;

/// The container engine an image is loaded into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    /// `podman load`.
    Podman,
    /// The Docker Engine API on a unix socket.
    Docker,
}

impl FromStr for Runtime {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Runtime> {
        match text {
            "podman" => Ok(Runtime::Podman),
            "docker" => Ok(Runtime::Docker),
            other => Err(error::input(format!(
                "cannot load into `{other}`: use podman or docker"
            ))),
        }
    }
}

impl fmt::Display for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Runtime::Podman => "podman",
            Runtime::Docker => "docker",
        })
    }
}

/// What was loaded.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    /// The engine.
    pub runtime: Runtime,
    /// How it was reached: `podman load`, or the socket.
    pub via: String,
    /// The platform loaded (an engine stores one per name).
    pub platform: String,
    /// The names (or image ids) the engine reported.
    pub loaded: Vec<String>,
}

/// Loads the archive at `archive` (one platform, `platform`) into `runtime`.
pub fn load(runtime: Runtime, archive: &Path, platform: &str) -> Result<LoadReport> {
    let (via, loaded) = match runtime {
        Runtime::Podman => ("podman load".to_owned(), podman_load(archive)?),
        Runtime::Docker => {
            let socket = docker_socket()?;
            let loaded = docker_load(&socket, archive).with_context(|| {
                format!(
                    "cannot load the image into Docker at unix://{}",
                    socket.display()
                )
            })?;
            (format!("unix://{}", socket.display()), loaded)
        }
    };
    Ok(LoadReport {
        runtime,
        via,
        platform: platform.to_owned(),
        loaded,
    })
}

fn podman_load(archive: &Path) -> Result<Vec<String>> {
    let mut cmd = Command::new("podman");
    cmd.arg("load").arg("--input").arg(archive);
    let output = process::run_captured(&mut cmd).map_err(|e| {
        if error::exit_kind(&e) == error::ExitKind::Environment {
            e.context("--load podman needs podman: install it (apt-get install podman)")
        } else {
            error::environment(format!("{e:#}"))
        }
    })?;
    Ok(loaded_names(&String::from_utf8_lossy(&output.stdout)))
}

/// `Loaded image: NAME` (or `Loaded image(s): A,B`, `Loaded image ID: sha256:…`) lines.
fn loaded_names(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|line| {
            let (head, names) = line.split_once(": ")?;
            head.trim().starts_with("Loaded image").then_some(names)
        })
        .flat_map(|names| names.split(','))
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .collect()
}

/// `DOCKER_HOST` when it is a unix socket, else Docker's default socket.
fn docker_socket() -> Result<PathBuf> {
    match std::env::var("DOCKER_HOST") {
        Ok(host) if !host.is_empty() => match host.strip_prefix("unix://") {
            Some(path) if !path.is_empty() => Ok(PathBuf::from(path)),
            _ => Err(error::environment(format!(
                "DOCKER_HOST is `{host}`: --load docker talks to the Engine API on a unix \
                 socket only; set DOCKER_HOST=unix:///path/to/docker.sock, or write the image \
                 with --archive FILE and run `docker load -i FILE`"
            ))),
        },
        _ => Ok(PathBuf::from(DEFAULT_DOCKER_SOCKET)),
    }
}

/// `POST /images/load` with the archive as the body; the names the engine reports.
fn docker_load(socket: &Path, archive: &Path) -> Result<Vec<String>> {
    let RegularFile { file, size } = input::open_regular(archive, Links::Refuse)?;
    let mut stream = UnixStream::connect(socket).map_err(|e| {
        error::environment(format!(
            "no Docker engine answers at {} ({e}); start it, or set DOCKER_HOST to its \
             socket (podman serves the same API with `podman system service`)",
            socket.display()
        ))
    })?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    let head = format!(
        "POST /images/load?quiet=1 HTTP/1.1\r\nHost: docker\r\nUser-Agent: cargo-airlock/{}\r\n\
         Content-Type: application/x-tar\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    );
    let sent = stream
        .write_all(head.as_bytes())
        .and_then(|()| io::copy(&mut file.take(size), &mut stream));
    // An engine that refuses early may close before the body is sent: its answer says why.
    let send_error = sent.err();
    let mut reader = BufReader::new(stream);
    let answer = match read_answer(&mut reader) {
        Ok(answer) => answer,
        Err(e) => {
            return Err(match send_error {
                Some(sent) => error::environment(format!(
                    "the engine stopped taking the image ({sent}) and gave no answer ({e:#})"
                )),
                None => e,
            });
        }
    };
    let (messages, errors) = answer_lines(&answer.body);
    if !(200..300).contains(&answer.status) || !errors.is_empty() {
        let why = if errors.is_empty() {
            messages.join("; ")
        } else {
            errors.join("; ")
        };
        return Err(error::environment(format!(
            "the engine answered {}{}",
            answer.status_line,
            if why.is_empty() {
                String::new()
            } else {
                format!(": {why}")
            }
        )));
    }
    Ok(loaded_names(&messages.join("\n")))
}

/// An HTTP/1.1 answer, its body de-chunked.
#[derive(Debug)]
struct Answer {
    status: u16,
    status_line: String,
    body: Vec<u8>,
}

fn read_answer(reader: &mut impl BufRead) -> Result<Answer> {
    let bad = |what: &str| error::environment(format!("the engine's answer {what}"));
    let status_line = read_line(reader)?;
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| bad(&format!("is not HTTP: `{status_line}`")))?;
    let mut chunked = false;
    let mut length = None;
    loop {
        let line = read_line(reader)?;
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(bad(&format!("has a malformed header `{line}`")));
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            "content-length" => length = value.parse::<u64>().ok(),
            _ => {}
        }
    }
    let body = if chunked {
        read_chunked(reader)?
    } else {
        let limit = length.unwrap_or(MAX_ANSWER).min(MAX_ANSWER);
        let mut body = Vec::new();
        reader
            .take(limit)
            .read_to_end(&mut body)
            .context("cannot read the engine's answer")?;
        body
    };
    Ok(Answer {
        status,
        status_line: status_line
            .split_once(' ')
            .map_or(status_line.clone(), |(_, rest)| rest.to_owned()),
        body,
    })
}

/// One CRLF-terminated line, at most 64 KiB.
fn read_line(reader: &mut impl BufRead) -> Result<String> {
    let mut line = Vec::new();
    reader
        .take(64 << 10)
        .read_until(b'\n', &mut line)
        .context("cannot read the engine's answer")?;
    if line.is_empty() {
        return Err(error::environment(
            "the engine closed the connection without an answer",
        ));
    }
    Ok(String::from_utf8_lossy(&line)
        .trim_end_matches(['\r', '\n'])
        .to_owned())
}

/// A `Transfer-Encoding: chunked` body (RFC 9112 §7.1), at most [`MAX_ANSWER`] bytes.
fn read_chunked(reader: &mut impl BufRead) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(reader)?;
        let size_text = line.split(';').next().unwrap_or_default().trim();
        let size = u64::from_str_radix(size_text, 16).map_err(|_| {
            error::environment(format!("the engine's answer has a bad chunk size `{line}`"))
        })?;
        if size == 0 {
            // Trailers, then the empty line.
            while !read_line(reader).unwrap_or_default().is_empty() {}
            return Ok(body);
        }
        if body.len() as u64 + size > MAX_ANSWER {
            return Err(error::environment(format!(
                "the engine's answer is longer than {MAX_ANSWER} bytes"
            )));
        }
        let start = body.len();
        body.resize(start + size as usize, 0);
        reader
            .read_exact(&mut body[start..])
            .context("the engine's answer ended inside a chunk")?;
        read_line(reader).ok();
    }
}

/// The `stream` texts and the `error` messages of the answer's JSON objects (one per line,
/// or simply one after another).
fn answer_lines(body: &[u8]) -> (Vec<String>, Vec<String>) {
    let mut messages = Vec::new();
    let mut errors = Vec::new();
    let values = serde_json::Deserializer::from_slice(body).into_iter::<serde_json::Value>();
    for value in values {
        let Ok(value) = value else {
            let text = String::from_utf8_lossy(body).trim().to_owned();
            if !text.is_empty() {
                messages.push(text);
            }
            break;
        };
        if let Some(detail) = value
            .pointer("/errorDetail/message")
            .or_else(|| value.get("error"))
            .and_then(|v| v.as_str())
        {
            errors.push(detail.to_owned());
        } else if let Some(message) = value.get("message").and_then(|v| v.as_str()) {
            messages.push(message.to_owned());
        }
        if let Some(text) = value.get("stream").and_then(|v| v.as_str()) {
            messages.extend(text.lines().map(str::to_owned).filter(|l| !l.is_empty()));
        }
    }
    (messages, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_chunked_answers_and_their_messages() {
        let chunk = r#"{"stream":"Loaded image: a:1\n"}"#;
        let raw = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
             Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n2;ext=1\r\n\n\n\r\n0\r\n\r\n",
            chunk.len()
        );
        let answer = read_answer(&mut raw.as_bytes()).unwrap();
        assert_eq!(answer.status, 200);
        let (messages, errors) = answer_lines(&answer.body);
        assert!(errors.is_empty());
        assert_eq!(loaded_names(&messages.join("\n")), ["a:1"]);

        let raw = b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 27\r\n\r\n\
                    {\"message\":\"no such thing\"}";
        let answer = read_answer(&mut &raw[..]).unwrap();
        assert_eq!(answer.status, 500);
        assert_eq!(answer.status_line, "500 Internal Server Error");
        assert_eq!(answer_lines(&answer.body).0, ["no such thing"]);

        let body = br#"{"stream":"x"}{"errorDetail":{"message":"bad layer"},"error":"bad layer"}"#;
        assert_eq!(answer_lines(body).1, ["bad layer"]);
        assert!(read_answer(&mut &b"SSH-2.0\r\n"[..]).is_err());
    }

    #[test]
    fn names_from_podman_and_docker() {
        assert_eq!(
            loaded_names("Getting image source signatures\nLoaded image: localhost/a:1\n"),
            ["localhost/a:1"]
        );
        assert_eq!(loaded_names("Loaded image(s): a:1,b:2"), ["a:1", "b:2"]);
        assert_eq!(
            loaded_names("Loaded image ID: sha256:0123"),
            ["sha256:0123"]
        );
        assert_eq!("docker".parse::<Runtime>().unwrap(), Runtime::Docker);
        assert!("containerd".parse::<Runtime>().is_err());
    }
}
