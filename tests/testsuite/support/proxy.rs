//! A fault-injecting HTTP proxy between `push` and the registry: rules answer, reset, delay or
//! rewrite matching requests, every request is logged, and an optional Bearer token server
//! stands in front of an auth-less registry.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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

#[derive(Default)]
pub struct ProxyState {
    pub rules: Vec<Rule>,
    pub log: Vec<(String, String, u16)>,
    pub token_auth: Option<TokenAuth>,
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
    pub port: u16,
    pub state: Arc<Mutex<ProxyState>>,
    pub stop: Arc<AtomicBool>,
}

impl Proxy {
    pub fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(ProxyState::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (thread_state, thread_stop) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if thread_stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let state = thread_state.clone();
                std::thread::spawn(move || handle(stream, upstream, port, &state));
            }
        });
        Proxy { port, state, stop }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
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

    /// The most delayed requests handled at once.
    pub fn max_in_flight(&self) -> usize {
        self.state.lock().unwrap().max_in_flight
    }

    /// (method, path, status) of every request, in order.
    pub fn log(&self) -> Vec<(String, String, u16)> {
        self.state.lock().unwrap().log.clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
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

pub fn handle(stream: TcpStream, upstream: u16, own_port: u16, state: &Mutex<ProxyState>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let Some((seen, head)) = read_head(&mut reader) else {
        return;
    };
    let length: usize = seen
        .headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let log = |status: u16| {
        state
            .lock()
            .unwrap()
            .log
            .push((seen.method.clone(), seen.path.clone(), status));
    };

    // Token auth first: the token endpoint, then a valid token on every /v2/ request.
    let mut token_form = Vec::new();
    if seen.path.starts_with("/token") {
        token_form = vec![0; length];
        let _ = reader.read_exact(&mut token_form);
    }
    if let Some(reply) = token_auth(state, &seen, &token_form, own_port) {
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
        Some(Action::Hook(_)) | None => {}
    }

    let Ok(mut upstream_stream) = TcpStream::connect(("127.0.0.1", upstream)) else {
        log(0);
        let _ = stream.shutdown(Shutdown::Both);
        return;
    };
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        log(0);
        return;
    }
    if upstream_stream.write_all(head.as_bytes()).is_err()
        || upstream_stream.write_all(&body).is_err()
    {
        log(0);
        return;
    }
    let mut response = Vec::new();
    let _ = upstream_stream.read_to_end(&mut response);
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

/// A response the proxy makes up: status, extra headers, body.
pub type Reply = (u16, Vec<(String, String)>, String);

/// The token endpoint and the token check; None = forward the request.
pub fn token_auth(
    state: &Mutex<ProxyState>,
    seen: &Seen,
    form: &[u8],
    own_port: u16,
) -> Option<Reply> {
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
    let mut challenge =
        format!("Bearer realm=\"http://127.0.0.1:{own_port}/token\",service=\"airlock-test\"");
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
