//! HTTP/1.x request heads: the parsing behind `Polyphony::HTTP` (the
//! server is Ruby, lib/polyphony/http/). Plain Rust over bytes, no Ruby:
//! the binding (`ruby_api/http.rs`) turns a [`Head`] into Ruby objects.
//!
//! Parsing is `httparse` (zero-copy, SIMD where the CPU has it). This
//! module adds the limits and the answers a server gives to what the
//! parser refuses: 414 for a request line over its limit, 431 for too many
//! headers, 505 for a version other than HTTP/1.0 or 1.1 (HTTP/0.9's
//! two-word request line included), 400 for anything else malformed.

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
    let mut storage = vec![httparse::EMPTY_HEADER; max_headers.max(1)];
    let mut req = httparse::Request::new(&mut storage);
    let len = match req.parse(buf) {
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
    let headers = req.headers.iter().map(|h| (h.name, h.value)).collect();
    Parsed::Complete(Head {
        method,
        path,
        query,
        minor,
        headers,
        len,
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
        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "x".repeat(200));
        assert_eq!(status(long.as_bytes()), 414);
    }
}
