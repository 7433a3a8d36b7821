//! A stored response header in HTTP/1 wire form (`HTTP/1.1 200 OK\r\nName: value\r\n...\r\n`,
//! names in their original case). Memory hits rebuild the header from it with one `httparse`
//! pass: no zstd (the form `CacheMeta::serialize` stores), and no decoded copy kept per
//! object. A decoded `ResponseHeader` takes about 450 bytes per header line; this form takes
//! the bytes of the lines, and is what the memory tier charges.

use bytes::{BufMut, Bytes, BytesMut};
use pingora::http::ResponseHeader;
use pingora::{Error, ErrorType, Result};

/// Headers a stored response may have for the fast path; more fall back to `CacheMeta`.
const MAX_HEADERS: usize = 64;

/// See the module docs.
#[derive(Debug, Clone, Default)]
pub(crate) struct HeaderWire(Bytes);

impl HeaderWire {
    /// The wire form of `header`.
    pub(crate) fn of(header: &ResponseHeader) -> Self {
        let mut buf = BytesMut::with_capacity(256);
        buf.put_slice(b"HTTP/1.1 ");
        buf.put_slice(header.status.as_str().as_bytes());
        buf.put_u8(b' ');
        buf.put_slice(header.status.canonical_reason().unwrap_or("").as_bytes());
        buf.put_slice(b"\r\n");
        header.header_to_h1_wire(&mut buf);
        buf.put_slice(b"\r\n");
        // Exact size: the builder's spare capacity (and its shared-buffer record) would stay
        // allocated for as long as the object is stored.
        HeaderWire(Bytes::copy_from_slice(&buf))
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// The header again. An error when it has more than `MAX_HEADERS` headers or does not
    /// parse (the caller then decodes the serialized meta instead).
    pub(crate) fn decode(&self) -> Result<ResponseHeader> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut headers);
        let mut config = httparse::ParserConfig::default();
        // As lenient as pingora's own parser of origin responses (what was accepted from
        // the origin must round-trip).
        config.allow_spaces_after_header_name_in_responses(true);
        config.allow_obsolete_multiline_headers_in_responses(true);
        match config.parse_response(&mut parsed, &self.0) {
            Ok(httparse::Status::Complete(_)) => {}
            _ => return Error::e_explain(ErrorType::InternalError, "stored header unparsable"),
        }
        let code = parsed.code.unwrap_or(0);
        let mut header = ResponseHeader::build(code, Some(parsed.headers.len()))?;
        for h in parsed.headers.iter() {
            // Slices of the stored bytes: no copy of names or values.
            let name = self.0.slice_ref(h.name.as_bytes());
            let value = http::HeaderValue::from_maybe_shared(self.0.slice_ref(h.value))
                .map_err(|_| Error::explain(ErrorType::InternalError, "stored header value"))?;
            header.append_header(name, value)?;
        }
        Ok(header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_status_names_case_and_repeated_headers() {
        let mut h = ResponseHeader::build(404, None).unwrap();
        h.append_header("Cache-Control", "max-age=60").unwrap();
        h.append_header("x-Custom", "a").unwrap();
        h.append_header("x-Custom", "b").unwrap();
        h.append_header("ETag", "\"v1\"").unwrap();
        let back = HeaderWire::of(&h).decode().unwrap();
        assert_eq!(back.status, 404);
        let mut wire_a = Vec::new();
        let mut wire_b = Vec::new();
        h.header_to_h1_wire(&mut wire_a);
        back.header_to_h1_wire(&mut wire_b);
        assert_eq!(String::from_utf8(wire_a), String::from_utf8(wire_b));
        let all: Vec<_> = back.headers.get_all("x-custom").iter().collect();
        assert_eq!(all, ["a", "b"]);
    }

    #[test]
    fn too_many_headers_is_an_error_not_a_truncation() {
        let mut h = ResponseHeader::build(200, None).unwrap();
        for i in 0..(MAX_HEADERS + 1) {
            h.append_header(format!("x-h{i}"), "v").unwrap();
        }
        assert!(HeaderWire::of(&h).decode().is_err());
    }
}
