//! HTTP/1.x request heads: the parsing behind `Polyphony::HTTP` (the
//! server is Ruby, lib/polyphony/http/). Plain Rust over bytes, no Ruby:
//! the binding (`ruby_api/http.rs`) turns a [`Head`] into Ruby objects.
//!
//! Parsing is `httparse` (zero-copy, SIMD where the CPU has it). This
//! module adds the limits and the answers a server gives to what the
//! parser refuses: 414 for a request line over its limit, 431 for too many
//! headers, 505 for a version other than HTTP/1.0 or 1.1 (HTTP/0.9's
//! two-word request line included), 400 for anything else malformed.

pub mod idle;

/// The reason phrase of `status` ("Unknown" for codes not listed).
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// A complete request head; the slices borrow the caller's buffer.
pub struct Head<'b> {
    pub method: &'b str,
    /// The target up to `?`.
    pub path: &'b str,
    /// After `?` (without it), if there is one.
    pub query: Option<&'b str>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    pub headers: Vec<(&'b str, &'b [u8])>,
    /// Bytes of the head, blank line included: the body starts there.
    pub len: usize,
    pub body: Body,
}

impl Head<'_> {
    /// Whether the client asks to keep the connection open after this
    /// request: HTTP/1.1 unless a Connection header has the word `close`,
    /// HTTP/1.0 only if one has `keep-alive` (any case; several Connection
    /// headers count as one list).
    pub fn keep_alive(&self) -> bool {
        let mut values = self
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("connection"))
            .map(|(_, v)| *v);
        if self.minor == 0 {
            values.any(|v| has_word(v, b"keep-alive"))
        } else {
            !values.any(|v| has_word(v, b"close"))
        }
    }
}

/// Whether `word` (lower-case) is in `hay`, any case, with no word
/// character (`[A-Za-z0-9_]`, as a regexp's `\b`) right before or after.
fn has_word(hay: &[u8], word: &[u8]) -> bool {
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    if hay.len() < word.len() {
        return false;
    }
    (0..=hay.len() - word.len()).any(|i| {
        hay[i..i + word.len()].eq_ignore_ascii_case(word)
            && (i == 0 || !is_word(hay[i - 1]))
            && hay.get(i + word.len()).is_none_or(|b| !is_word(*b))
    })
}

/// How the request body is framed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Body {
    None,
    Length(u64),
    Chunked,
}

/// The body framing the headers give, or the status refusing them: both
/// Content-Length and Transfer-Encoding (the ground of request smuggling)
/// and Content-Lengths that disagree or are not numbers are 400; a
/// transfer coding other than `chunked` is 501.
fn framing(headers: &[(&str, &[u8])]) -> Result<Body, u16> {
    let mut length: Option<u64> = None;
    let mut chunked = false;
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("content-length") {
            for part in value.split(|b| *b == b',') {
                let part = part.trim_ascii();
                if part.is_empty() || part.len() > 18 || !part.iter().all(u8::is_ascii_digit) {
                    return Err(400);
                }
                let n = part.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
                if length.is_some_and(|l| l != n) {
                    return Err(400);
                }
                length = Some(n);
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if chunked || !value.trim_ascii().eq_ignore_ascii_case(b"chunked") {
                return Err(501);
            }
            chunked = true;
        }
    }
    match (length, chunked) {
        (Some(_), true) => Err(400),
        (None, true) => Ok(Body::Chunked),
        (Some(n), false) if n > 0 => Ok(Body::Length(n)),
        _ => Ok(Body::None),
    }
}

/// What `parse` made of the bytes so far.
pub enum Parsed<'b> {
    Complete(Head<'b>),
    /// More bytes are needed.
    Partial,
    /// The status to answer with before closing the connection.
    Reject(u16),
}

/// Parses the head at the start of `buf`, with at most `max_headers`
/// headers and a request line of at most `max_line` bytes.
pub fn parse(buf: &[u8], max_line: usize, max_headers: usize) -> Parsed<'_> {
    let line_end = buf.iter().position(|b| *b == b'\n');
    match line_end {
        None if buf.len() > max_line => return Parsed::Reject(414),
        Some(i) if i > max_line + 1 => return Parsed::Reject(414),
        Some(i) => {
            let line = buf[..i].strip_suffix(b"\r").unwrap_or(&buf[..i]);
            // HTTP/0.9: `GET /path`, no version.
            if !line.is_empty() && line.split(|b| *b == b' ').filter(|w| !w.is_empty()).count() == 2
            {
                return Parsed::Reject(505);
            }
        }
        None => {}
    }
    // Room for the headers: 32 on the stack (uninitialised, as httparse
    // allows; a bigger frame would make every connection fiber's stack
    // hold another page), more on the heap only for a head that has more.
    let mut on_stack = [const { std::mem::MaybeUninit::<httparse::Header>::uninit() }; 32];
    let mut req = httparse::Request::new(&mut []);
    let first = &mut on_stack[..max_headers.clamp(1, 32)];
    let mut result = req.parse_with_uninit_headers(buf, first);
    let mut on_heap;
    if matches!(result, Err(httparse::Error::TooManyHeaders)) && max_headers > 32 {
        on_heap = Vec::with_capacity(max_headers);
        on_heap.resize_with(max_headers, std::mem::MaybeUninit::uninit);
        req = httparse::Request::new(&mut []);
        result = req.parse_with_uninit_headers(buf, &mut on_heap);
    }
    let len = match result {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::Version) => return Parsed::Reject(505),
        Err(httparse::Error::TooManyHeaders) => return Parsed::Reject(431),
        Err(_) => return Parsed::Reject(400),
    };
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Parsed::Reject(400);
    };
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    };
    let headers: Vec<_> = req.headers.iter().map(|h| (h.name, h.value)).collect();
    let body = match framing(&headers) {
        Ok(b) => b,
        Err(status) => return Parsed::Reject(status),
    };
    Parsed::Complete(Head {
        method,
        path,
        query,
        minor,
        headers,
        len,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(buf: &[u8]) -> u16 {
        match parse(buf, 100, 4) {
            Parsed::Complete(_) => 0,
            Parsed::Partial => 1,
            Parsed::Reject(s) => s,
        }
    }

    #[test]
    fn parses_a_head() {
        let Parsed::Complete(h) = parse(
            b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-Y: z\r\n\r\nbody",
            100,
            8,
        ) else {
            panic!("not complete")
        };
        assert_eq!(
            (h.method, h.path, h.query, h.minor),
            ("GET", "/a", Some("b=1"), 1)
        );
        assert_eq!(h.headers, vec![("Host", &b"x"[..]), ("X-Y", &b"z"[..])]);
        assert_eq!(h.len, 40);
        assert_eq!(h.body, Body::None);
    }

    #[test]
    fn frames_the_body() {
        let body = |buf: &[u8]| match parse(buf, 100, 8) {
            Parsed::Complete(h) => h.body,
            _ => panic!("not complete"),
        };
        assert_eq!(
            body(b"POST / HTTP/1.1\r\nContent-Length: 12\r\n\r\n"),
            Body::Length(12)
        );
        assert_eq!(
            body(b"POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n"),
            Body::Length(5)
        );
        assert_eq!(
            body(b"POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n"),
            Body::Chunked
        );
        assert_eq!(
            body(b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
            Body::None
        );
    }

    #[test]
    fn keeps_alive_as_the_client_asks() {
        let keep = |buf: &[u8]| match parse(buf, 100, 8) {
            Parsed::Complete(h) => h.keep_alive(),
            _ => panic!("not complete"),
        };
        assert!(keep(b"GET / HTTP/1.1\r\n\r\n"));
        assert!(!keep(b"GET / HTTP/1.1\r\nConnection: Close\r\n\r\n"));
        assert!(!keep(
            b"GET / HTTP/1.1\r\nConnection: x\r\nConnection: te, close\r\n\r\n"
        ));
        assert!(keep(
            b"GET / HTTP/1.1\r\nConnection: closed, x-close_\r\n\r\n"
        ));
        assert!(!keep(b"GET / HTTP/1.0\r\n\r\n"));
        assert!(keep(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n"));
        assert!(!keep(b"GET / HTTP/1.0\r\nConnection: keep-alivex\r\n\r\n"));
    }

    #[test]
    fn answers_what_it_refuses() {
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: x\r\n"), 1);
        assert_eq!(status(b"GET /\r\n"), 505);
        assert_eq!(status(b"GET / HTTP/2.0\r\n\r\n"), 505);
        assert_eq!(status(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n"), 400);
        assert_eq!(
            status(b"GET / HTTP/1.1\r\na: 1\r\nb: 2\r\nc: 3\r\nd: 4\r\ne: 5\r\n\r\n"),
            431
        );
        assert_eq!(status(&[b'a'; 200]), 414);
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            400
        );
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n"),
            400
        );
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"),
            400
        );
        assert_eq!(
            status(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"),
            501
        );
        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "x".repeat(200));
        assert_eq!(status(long.as_bytes()), 414);
    }
}
