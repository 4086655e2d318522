//! A fault-injecting HTTP proxy between `push` and the registry: rules answer, reset, delay,
//! throttle or rewrite matching requests, every request is logged (method, path, status,
//! `Content-Range`, `Content-Length`, whether it carried `Authorization`, when it arrived and
//! when it was answered), and an optional Bearer token server stands in front of an auth-less
//! registry. It listens on any loopback address, so a second proxy on 127.0.0.2 is another host.
//! [`Hung`] is a listener that accepts connections and never answers.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use airlock::Sha256Digest;

use super::registry::{PASSWORD, REFRESH_TOKEN, USER};

/// A request as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
}

/// What the proxy does with a request that a rule matches.
pub enum Action {
    /// Answer this status (after reading the body) with extra headers; never forward.
    Respond(u16, Vec<(String, String)>),
    /// Read this many body bytes, then drop the connection without answering.
    Reset(usize),
    /// Forward, but rewrite the registry's status `from` to `to`.
    Rewrite(u16, u16),
    /// Call the hook, then forward.
    Hook(Box<dyn FnMut() + Send>),
    /// Wait, then forward; counted in [`ProxyState::max_in_flight`].
    Delay(Duration),
    /// Forward, then claim another `Docker-Content-Digest` in the answer.
    LieAboutDigest,
    /// Read the first `slow` bytes of the body `bytes` at a time with `pause` between reads,
    /// the rest at once, then forward: a slow link that keeps moving. (The end comes fast so
    /// the socket buffers, megabytes on loopback, drain at once after the client's last write.)
    Throttle {
        bytes: usize,
        pause: Duration,
        slow: usize,
    },
    /// Forward only the first `bytes` of a chunk (`Content-Range` and `Content-Length` cut to
    /// match), then drop the client's connection unanswered: the registry keeps part of a
    /// chunk the client never heard back about.
    ForwardPartThenReset(usize),
}

pub struct Rule {
    pub matches: Box<dyn Fn(&Seen) -> bool + Send>,
    pub action: Action,
    /// Times it still applies; None = forever.
    pub remaining: Option<usize>,
}

/// Bearer token auth in front of an auth-less registry: tokens come from `/token` for the
/// right Basic credentials, and each request must carry one for its repository.
pub struct TokenAuth {
    pub issued: HashMap<String, Vec<String>>,
}

/// One request in the proxy's log.
#[derive(Debug, Clone)]
pub struct Logged {
    pub method: String,
    pub path: String,
    /// The status answered; 0 when the connection was dropped instead.
    pub status: u16,
    pub content_range: Option<String>,
    pub content_length: Option<u64>,
    /// Whether an `Authorization` header arrived (its value is never kept).
    pub authorization: bool,
    /// When its head arrived, and when the proxy answered (or dropped) it.
    pub arrived: Instant,
    pub answered: Instant,
}

impl Logged {
    /// `Content-Range: <start>-<end>` as numbers.
    pub fn range(&self) -> Option<(u64, u64)> {
        let (start, end) = self.content_range.as_deref()?.split_once('-')?;
        Some((start.trim().parse().ok()?, end.trim().parse().ok()?))
    }
}

#[derive(Default)]
pub struct ProxyState {
    pub rules: Vec<Rule>,
    pub log: Vec<Logged>,
    pub token_auth: Option<TokenAuth>,
    /// Upload locations as a registry with stable ones (zot, most others) gives them: the
    /// client sees the path only, and the proxy adds the latest query distribution gave for
    /// it (its `_state`), keyed by path.
    pub stable_uploads: Option<HashMap<String, String>>,
    /// Delayed requests being handled now, and the most there were at once.
    pub in_flight: usize,
    pub max_in_flight: usize,
}

/// Counts a delayed request in flight until dropped.
pub struct InFlight<'a>(&'a Mutex<ProxyState>);

impl<'a> InFlight<'a> {
    pub fn enter(state: &'a Mutex<ProxyState>) -> InFlight<'a> {
        let mut guard = state.lock().unwrap();
        guard.in_flight += 1;
        guard.max_in_flight = guard.max_in_flight.max(guard.in_flight);
        InFlight(state)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.lock().unwrap().in_flight -= 1;
    }
}

pub struct Proxy {
    pub ip: &'static str,
    pub port: u16,
    pub state: Arc<Mutex<ProxyState>>,
    pub stop: Arc<AtomicBool>,
}

impl Proxy {
    pub fn start(upstream: u16) -> Proxy {
        Proxy::start_on("127.0.0.1", upstream)
    }

    /// A proxy listening on `ip` (any 127.0.0.0/8 address), forwarding to the registry on
    /// 127.0.0.1:`upstream`.
    pub fn start_on(ip: &'static str, upstream: u16) -> Proxy {
        let listener = TcpListener::bind((ip, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(ProxyState::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (thread_state, thread_stop) = (state.clone(), stop.clone());
        let own = format!("{ip}:{port}");
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if thread_stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let state = thread_state.clone();
                let own = own.clone();
                std::thread::spawn(move || handle(stream, upstream, &own, &state));
            }
        });
        Proxy {
            ip,
            port,
            state,
            stop,
        }
    }

    pub fn addr(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }

    pub fn rule(
        &self,
        times: Option<usize>,
        matches: impl Fn(&Seen) -> bool + Send + 'static,
        action: Action,
    ) {
        self.state.lock().unwrap().rules.push(Rule {
            matches: Box::new(matches),
            action,
            remaining: times,
        });
    }

    pub fn clear_rules(&self) {
        self.state.lock().unwrap().rules.clear();
    }

    pub fn with_token_auth(&self) {
        self.state.lock().unwrap().token_auth = Some(TokenAuth {
            issued: HashMap::new(),
        });
    }

    pub fn with_stable_upload_locations(&self) {
        self.state.lock().unwrap().stable_uploads = Some(HashMap::new());
    }

    /// The most delayed requests handled at once.
    pub fn max_in_flight(&self) -> usize {
        self.state.lock().unwrap().max_in_flight
    }

    /// (method, path, status) of every request, in the order they were answered.
    pub fn log(&self) -> Vec<(String, String, u16)> {
        self.requests()
            .into_iter()
            .map(|r| (r.method, r.path, r.status))
            .collect()
    }

    /// Every request with its headers of interest and times, in the order they were answered.
    pub fn requests(&self) -> Vec<Logged> {
        self.state.lock().unwrap().log.clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect((self.ip, self.port));
    }
}

pub fn read_head(reader: &mut BufReader<TcpStream>) -> Option<(Seen, String)> {
    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;
    let mut parts = request_line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let mut headers = HashMap::new();
    let mut raw = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            let name = name.trim().to_ascii_lowercase();
            if name != "connection" && name != "authorization" {
                raw.push_str(&line);
            }
            headers.insert(name, value.trim().to_owned());
        }
    }
    Some((
        Seen {
            method: method.clone(),
            path: path.clone(),
            headers,
        },
        format!("{method} {path} HTTP/1.1\r\n{raw}Connection: close\r\n\r\n"),
    ))
}

pub fn respond(mut stream: &TcpStream, status: u16, headers: &[(String, String)], body: &str) {
    let mut head = format!(
        "HTTP/1.1 {status} Fault\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body.as_bytes());
    let _ = stream.flush();
}

pub fn handle(stream: TcpStream, upstream: u16, own: &str, state: &Mutex<ProxyState>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let Some((seen, head)) = read_head(&mut reader) else {
        return;
    };
    let arrived = Instant::now();
    let length: usize = seen
        .headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let log = |status: u16| {
        state.lock().unwrap().log.push(Logged {
            method: seen.method.clone(),
            path: seen.path.clone(),
            status,
            content_range: seen.headers.get("content-range").cloned(),
            content_length: seen
                .headers
                .get("content-length")
                .and_then(|v| v.parse().ok()),
            authorization: seen.headers.contains_key("authorization"),
            arrived,
            answered: Instant::now(),
        });
    };

    // Token auth first: the token endpoint, then a valid token on every /v2/ request.
    let mut token_form = Vec::new();
    if seen.path.starts_with("/token") {
        token_form = vec![0; length];
        let _ = reader.read_exact(&mut token_form);
    }
    if let Some(reply) = token_auth(state, &seen, &token_form, own) {
        if !seen.path.starts_with("/token") {
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
        }
        let (status, headers, text) = reply;
        log(status);
        respond(&stream, status, &headers, &text);
        return;
    }

    let action = {
        let mut state = state.lock().unwrap();
        let found = state
            .rules
            .iter_mut()
            .position(|rule| rule.remaining != Some(0) && (rule.matches)(&seen));
        found.map(|i| {
            let rule = &mut state.rules[i];
            if let Some(n) = rule.remaining.as_mut() {
                *n -= 1;
            }
            match &mut rule.action {
                Action::Respond(status, headers) => Action::Respond(*status, headers.clone()),
                Action::Reset(after) => Action::Reset(*after),
                Action::Rewrite(from, to) => Action::Rewrite(*from, *to),
                Action::Delay(delay) => Action::Delay(*delay),
                Action::LieAboutDigest => Action::LieAboutDigest,
                Action::Throttle { bytes, pause, slow } => Action::Throttle {
                    bytes: *bytes,
                    pause: *pause,
                    slow: *slow,
                },
                Action::ForwardPartThenReset(bytes) => Action::ForwardPartThenReset(*bytes),
                Action::Hook(hook) => {
                    hook();
                    Action::Rewrite(0, 0)
                }
            }
        })
    };
    let mut rewrite = None;
    let mut lie = false;
    let mut _in_flight = None;
    let mut throttle = None;
    match action {
        Some(Action::Respond(status, headers)) => {
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            log(status);
            respond(&stream, status, &headers, "");
            return;
        }
        Some(Action::Reset(after)) => {
            let mut body = vec![0; after.min(length)];
            let _ = reader.read_exact(&mut body);
            log(0);
            // Unread data in the socket turns the close into a reset.
            std::thread::sleep(Duration::from_millis(20));
            drop(reader);
            drop(stream);
            return;
        }
        Some(Action::Rewrite(from, to)) => rewrite = Some((from, to)),
        Some(Action::LieAboutDigest) => lie = true,
        Some(Action::Delay(delay)) => {
            _in_flight = Some(InFlight::enter(state));
            std::thread::sleep(delay);
        }
        Some(Action::Throttle { bytes, pause, slow }) => throttle = Some((bytes, pause, slow)),
        Some(Action::ForwardPartThenReset(part)) => {
            let part = part.min(length);
            let mut body = vec![0; part];
            if reader.read_exact(&mut body).is_ok() {
                let start = seen
                    .headers
                    .get("content-range")
                    .and_then(|r| r.split_once('-'))
                    .and_then(|(start, _)| start.trim().parse::<u64>().ok())
                    .unwrap_or(0);
                let cut = cut_head(&restate(state, &head), part, start);
                if let Ok(mut upstream_stream) = TcpStream::connect(("127.0.0.1", upstream))
                    && upstream_stream.write_all(cut.as_bytes()).is_ok()
                    && upstream_stream.write_all(&body).is_ok()
                {
                    let mut response = Vec::new();
                    let _ = upstream_stream.read_to_end(&mut response);
                    stabilise(state, &response);
                }
            }
            log(0);
            std::thread::sleep(Duration::from_millis(20));
            drop(reader);
            drop(stream);
            return;
        }
        Some(Action::Hook(_)) | None => {}
    }

    let Ok(mut upstream_stream) = TcpStream::connect(("127.0.0.1", upstream)) else {
        log(0);
        let _ = stream.shutdown(Shutdown::Both);
        return;
    };
    let mut body = vec![0; length];
    let read = match throttle {
        Some((bytes, pause, slow)) => {
            let (slow, fast) = body.split_at_mut(slow.min(length));
            slow.chunks_mut(bytes.max(1))
                .try_for_each(|piece| {
                    std::thread::sleep(pause);
                    reader.read_exact(piece)
                })
                .and_then(|()| reader.read_exact(fast))
        }
        None => reader.read_exact(&mut body),
    };
    if read.is_err() {
        log(0);
        return;
    }
    let head = restate(state, &head);
    if upstream_stream.write_all(head.as_bytes()).is_err()
        || upstream_stream.write_all(&body).is_err()
    {
        log(0);
        return;
    }
    let mut response = Vec::new();
    let _ = upstream_stream.read_to_end(&mut response);
    let mut response = stabilise(state, &response);
    let status = String::from_utf8_lossy(&response[..response.len().min(12)])
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .unwrap_or(0);
    if lie {
        let text = String::from_utf8_lossy(&response).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let fake = Sha256Digest::of(b"not what was sent");
        let head: Vec<String> = head
            .split("\r\n")
            .map(|line| match line.split_once(':') {
                Some((name, _)) if name.eq_ignore_ascii_case("docker-content-digest") => {
                    format!("{name}: {fake}")
                }
                _ => line.to_owned(),
            })
            .collect();
        response = format!("{}\r\n\r\n{body}", head.join("\r\n")).into_bytes();
    }
    if let Some((from, to)) = rewrite
        && status == from
        && from != 0
    {
        let text = String::from_utf8_lossy(&response).into_owned();
        let (_, rest) = text.split_once("\r\n").unwrap();
        response = format!("HTTP/1.1 {to} Rewritten\r\n{rest}").into_bytes();
        log(to);
    } else {
        log(status);
    }
    let mut stream = stream;
    let _ = stream.write_all(&response);
}

/// In stable-location mode, the request line with the upload state the registry last gave for
/// its path put back.
fn restate(state: &Mutex<ProxyState>, head: &str) -> String {
    let state = state.lock().unwrap();
    let Some(known) = state.stable_uploads.as_ref() else {
        return head.to_owned();
    };
    let (line, rest) = head.split_once("\r\n").unwrap();
    let mut parts = line.splitn(3, ' ');
    let (method, target, version) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let Some(upload_state) = known.get(path) else {
        return head.to_owned();
    };
    let query = if query.is_empty() {
        upload_state.clone()
    } else {
        format!("{upload_state}&{query}")
    };
    format!("{method} {path}?{query} {version}\r\n{rest}")
}

/// In stable-location mode, the registry's answer with its upload `Location` cut to the path,
/// the query kept for [`restate`].
fn stabilise(state: &Mutex<ProxyState>, response: &[u8]) -> Vec<u8> {
    let mut state = state.lock().unwrap();
    let Some(known) = state.stable_uploads.as_mut() else {
        return response.to_vec();
    };
    let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
        return response.to_vec();
    };
    let head = String::from_utf8_lossy(&response[..end]).into_owned();
    let head: Vec<String> = head
        .split("\r\n")
        .map(|line| match line.split_once(':') {
            Some((name, value))
                if name.eq_ignore_ascii_case("location") && value.contains("/blobs/uploads/") =>
            {
                let value = value.trim();
                let (path, query) = value.split_once('?').unwrap_or((value, ""));
                // Distribution answers absolute URLs; requests name the path alone.
                let key = match path.split_once("://") {
                    Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
                    None => path,
                };
                known.insert(key.to_owned(), query.to_owned());
                format!("{name}: {path}")
            }
            _ => line.to_owned(),
        })
        .collect();
    let mut out = head.join("\r\n").into_bytes();
    out.extend_from_slice(&response[end..]);
    out
}

/// `head` with `Content-Length: part` and `Content-Range: start-(start+part-1)`.
fn cut_head(head: &str, part: usize, start: u64) -> String {
    head.split("\r\n")
        .map(|line| match line.split_once(':') {
            Some((name, _)) if name.eq_ignore_ascii_case("content-length") => {
                format!("{name}: {part}")
            }
            Some((name, _)) if name.eq_ignore_ascii_case("content-range") => {
                format!("{name}: {start}-{}", start + part as u64 - 1)
            }
            _ => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\r\n")
}

/// A response the proxy makes up: status, extra headers, body.
pub type Reply = (u16, Vec<(String, String)>, String);

/// The token endpoint and the token check; None = forward the request.
pub fn token_auth(state: &Mutex<ProxyState>, seen: &Seen, form: &[u8], own: &str) -> Option<Reply> {
    let mut state = state.lock().unwrap();
    let auth = state.token_auth.as_mut()?;
    let decode = |s: &str| {
        s.replace("%3A", ":")
            .replace("%2F", "/")
            .replace("%2C", ",")
            .replace("%20", " ")
    };
    // OAuth2 (distribution `docs/spec/auth/oauth.md`): a refresh token for an access token.
    if seen.method == "POST" && seen.path == "/token" {
        let form = String::from_utf8_lossy(form).into_owned();
        let field = |name: &str| {
            form.split('&')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .map(decode)
        };
        if field("grant_type").as_deref() != Some("refresh_token")
            || field("refresh_token").as_deref() != Some(REFRESH_TOKEN)
        {
            return Some((401, Vec::new(), r#"{"error":"invalid_grant"}"#.to_owned()));
        }
        let scopes: Vec<String> = field("scope")
            .unwrap_or_default()
            .split(' ')
            .map(str::to_owned)
            .collect();
        let token = format!("token-{}", auth.issued.len() + 1);
        auth.issued.insert(token.clone(), scopes);
        return Some((200, Vec::new(), format!(r#"{{"access_token":"{token}"}}"#)));
    }
    if let Some(query) = seen.path.strip_prefix("/token?") {
        let basic = format!(
            "Basic {}",
            base64_encode(format!("{USER}:{PASSWORD}").as_bytes())
        );
        if seen.headers.get("authorization") != Some(&basic) {
            return Some((
                401,
                Vec::new(),
                r#"{"details":"bad credentials"}"#.to_owned(),
            ));
        }
        let scopes: Vec<String> = query
            .split('&')
            .filter_map(|kv| kv.strip_prefix("scope="))
            .map(decode)
            .collect();
        let token = format!("token-{}", auth.issued.len() + 1);
        auth.issued.insert(token.clone(), scopes);
        return Some((200, Vec::new(), format!(r#"{{"token":"{token}"}}"#)));
    }
    let repository = seen.path.strip_prefix("/v2/").and_then(|rest| {
        ["/blobs/", "/manifests/"]
            .iter()
            .find_map(|marker| rest.split_once(marker).map(|(repo, _)| repo.to_owned()))
    });
    let wanted = repository
        .as_ref()
        .map(|repo| format!("repository:{repo}:pull,push"));
    let presented = seen
        .headers
        .get("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|token| auth.issued.get(token));
    let ok = match (&wanted, presented) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(wanted), Some(scopes)) => scopes.contains(wanted),
    };
    if ok {
        return None;
    }
    let mut challenge = format!("Bearer realm=\"http://{own}/token\",service=\"airlock-test\"");
    if let Some(wanted) = wanted {
        challenge.push_str(&format!(",scope=\"{wanted}\""));
    }
    Some((
        401,
        vec![("WWW-Authenticate".to_owned(), challenge)],
        r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#.to_owned(),
    ))
}

pub fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A listener that accepts every connection and never answers, counting the connections.
/// With `plain_http_only`, it answers a TLS handshake the way a plain HTTP server does (a 400
/// in clear, then hangs up), and still never answers a plain HTTP request.
pub struct Hung {
    pub port: u16,
    pub connections: Arc<Mutex<usize>>,
    stop: Arc<AtomicBool>,
    /// Held open until the test ends, so nothing is answered or closed.
    held: Arc<Mutex<Vec<TcpStream>>>,
}

impl Hung {
    pub fn start(plain_http_only: bool) -> Hung {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(Mutex::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let held = Arc::new(Mutex::new(Vec::new()));
        let (count, thread_stop, thread_held) = (connections.clone(), stop.clone(), held.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if thread_stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                *count.lock().unwrap() += 1;
                if plain_http_only {
                    let mut first = [0u8; 1];
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                    // 0x16: a TLS handshake record (RFC 8446 §5.1).
                    if stream.peek(&mut first).is_ok() && first[0] == 0x16 {
                        respond(
                            &stream,
                            400,
                            &[],
                            "Client sent an HTTPS request to a plain HTTP server",
                        );
                        continue;
                    }
                }
                thread_held.lock().unwrap().push(stream);
            }
        });
        Hung {
            port,
            connections,
            stop,
            held,
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn connections(&self) -> usize {
        *self.connections.lock().unwrap()
    }
}

impl Drop for Hung {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.held.lock().unwrap().clear();
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}
