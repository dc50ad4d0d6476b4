//! Frontend message framing, checked before pgwire decodes anything.
//!
//! pgwire trusts a message's length field and reads its body past the end of
//! a short frame: a Query whose length is 0 or 3 still ran the bytes after
//! it. [`Checked`] sits between the (TLS-decrypted) socket and pgwire's
//! decoder and hands on only whole frames whose length is valid and whose
//! body has exactly the shape its type requires (strings ending where the
//! frame ends, counts matching what follows). Anything else is a
//! [`Malformed`] read error, which the connection answers with FATAL 08P01
//! before closing; a malformed message is never executed.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bodies up to this size are checked whole; longer ones (large COPY data,
/// huge queries) have their length checked and are passed through as they
/// arrive, for pgwire's own size limits to judge.
const CHECK_LIMIT: usize = 1 << 20;

/// The longest startup packet accepted (Postgres: 10000 bytes).
const MAX_STARTUP: usize = 10_000;

/// A malformed frame: why, in words for the client.
#[derive(Debug)]
pub struct Malformed(pub String);

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Malformed {}

/// The message of a [`Malformed`] read error, if `e` is one.
pub fn malformed(e: &io::Error) -> Option<&str> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<Malformed>())
        .map(|m| m.0.as_str())
}

/// A socket whose incoming frames are checked (see the module docs).
pub struct Checked<S> {
    inner: S,
    /// Bytes read and not yet checked.
    raw: BytesMut,
    /// Checked bytes for pgwire.
    ready: BytesMut,
    /// The next frame is the untyped startup packet.
    startup: bool,
    /// Body bytes of a long frame still to pass through unchecked.
    passthrough: usize,
    failed: Option<String>,
    eof: bool,
}

impl<S> Checked<S> {
    /// `pending`: bytes already read from `inner` (pgwire's read buffer
    /// after the TLS negotiation); the next frame is the startup packet.
    pub fn new(inner: S, pending: BytesMut) -> Checked<S> {
        Checked {
            inner,
            raw: pending,
            ready: BytesMut::new(),
            startup: true,
            passthrough: 0,
            failed: None,
            eof: false,
        }
    }

    /// Move every complete, valid frame from `raw` to `ready`.
    fn check(&mut self) -> Result<(), String> {
        loop {
            if self.passthrough > 0 {
                let n = self.passthrough.min(self.raw.len());
                if n == 0 {
                    return Ok(());
                }
                self.ready.extend_from_slice(&self.raw.split_to(n));
                self.passthrough -= n;
                continue;
            }
            if self.startup {
                if self.raw.len() < 4 {
                    return Ok(());
                }
                let len = i32::from_be_bytes(self.raw[..4].try_into().expect("4 bytes"));
                if !(8..=MAX_STARTUP as i32).contains(&len) {
                    return Err(format!(
                        "invalid startup packet length {len} (must be 8 to {MAX_STARTUP})"
                    ));
                }
                let len = len as usize;
                if self.raw.len() < len {
                    return Ok(());
                }
                self.ready.extend_from_slice(&self.raw.split_to(len));
                self.startup = false;
                continue;
            }
            if self.raw.len() < 5 {
                return Ok(());
            }
            let tag = self.raw[0];
            let len = i32::from_be_bytes(self.raw[1..5].try_into().expect("4 bytes"));
            if len < 4 {
                return Err(format!(
                    "invalid length {len} of a {} message (at least 4, the length field itself)",
                    name(tag)
                ));
            }
            let len = len as usize;
            if len - 4 > CHECK_LIMIT {
                self.ready.extend_from_slice(&self.raw.split_to(5));
                self.passthrough = len - 4;
                continue;
            }
            if self.raw.len() < 1 + len {
                return Ok(());
            }
            let frame = self.raw.split_to(1 + len);
            check_body(tag, &frame[5..])
                .map_err(|why| format!("malformed {} message of length {len}: {why}", name(tag)))?;
            self.ready.extend_from_slice(&frame);
        }
    }
}

fn name(tag: u8) -> String {
    let what = match tag {
        b'Q' => "Query",
        b'P' => "Parse",
        b'B' => "Bind",
        b'E' => "Execute",
        b'D' => "Describe",
        b'C' => "Close",
        b'S' => "Sync",
        b'H' => "Flush",
        b'X' => "Terminate",
        b'd' => "CopyData",
        b'c' => "CopyDone",
        b'f' => "CopyFail",
        b'p' => "authentication",
        b'F' => "FunctionCall",
        _ => "",
    };
    if what.is_empty() {
        format!("frontend (type byte 0x{tag:02x})")
    } else {
        format!("{what} ('{}')", tag as char)
    }
}

/// A reader over one message body.
struct Body<'a>(&'a [u8]);

impl Body<'_> {
    fn cstring(&mut self, what: &str) -> Result<(), String> {
        match self.0.iter().position(|b| *b == 0) {
            Some(i) => {
                self.0 = &self.0[i + 1..];
                Ok(())
            }
            None => Err(format!("the {what} is not terminated by a zero byte")),
        }
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&[u8], String> {
        if self.0.len() < n {
            return Err(format!("the message ends inside the {what}"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }

    fn i16(&mut self, what: &str) -> Result<i16, String> {
        let b = self.take(2, what)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self, what: &str) -> Result<i32, String> {
        let b = self.take(4, what)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn count(&mut self, what: &str) -> Result<usize, String> {
        let n = self.i16(what)?;
        usize::try_from(n).map_err(|_| format!("negative {what} {n}"))
    }

    fn end(&self) -> Result<(), String> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} bytes after the end of its content",
                self.0.len()
            ))
        }
    }
}

fn check_body(tag: u8, body: &[u8]) -> Result<(), String> {
    let mut b = Body(body);
    match tag {
        b'Q' => {
            b.cstring("query string")?;
            b.end()
        }
        b'P' => {
            b.cstring("statement name")?;
            b.cstring("query string")?;
            let n = b.count("parameter type count")?;
            b.take(4 * n, "parameter types")?;
            b.end()
        }
        b'B' => {
            b.cstring("portal name")?;
            b.cstring("statement name")?;
            let n = b.count("parameter format count")?;
            b.take(2 * n, "parameter formats")?;
            let n = b.count("parameter count")?;
            for _ in 0..n {
                let len = b.i32("parameter length")?;
                if len < -1 {
                    return Err(format!("invalid parameter length {len}"));
                }
                if len > 0 {
                    b.take(len as usize, "parameter value")?;
                }
            }
            let n = b.count("result format count")?;
            b.take(2 * n, "result formats")?;
            b.end()
        }
        b'E' => {
            b.cstring("portal name")?;
            b.i32("row limit")?;
            b.end()
        }
        b'D' | b'C' => {
            match b.take(1, "kind")?[0] {
                b'S' | b'P' => {}
                k => return Err(format!("kind {:?} is neither 'S' nor 'P'", k as char)),
            }
            b.cstring("name")?;
            b.end()
        }
        b'S' | b'H' | b'X' | b'c' => b.end(),
        b'f' => {
            b.cstring("error message")?;
            b.end()
        }
        // CopyData, authentication responses and anything else: pgwire
        // decodes (or refuses) them within their frame.
        _ => Ok(()),
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Checked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.ready.is_empty() {
                let n = this.ready.len().min(buf.remaining());
                buf.put_slice(&this.ready[..n]);
                this.ready.advance(n);
                return Poll::Ready(Ok(()));
            }
            if let Some(why) = &this.failed {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    Malformed(why.clone()),
                )));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            if let Err(why) = this.check() {
                this.failed = Some(why);
                continue;
            }
            if !this.ready.is_empty() {
                continue;
            }
            let mut chunk = [0u8; 8192];
            let mut rb = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut rb) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(())) => {
                    if rb.filled().is_empty() {
                        // The client left, perhaps mid-frame: a partial
                        // frame is dropped, never handed on.
                        this.eof = true;
                    } else {
                        this.raw.extend_from_slice(rb.filled());
                    }
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Checked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&((body.len() + 4) as i32).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn bodies_must_fill_their_frames_exactly() {
        assert!(check_body(b'Q', b"SELECT 1\0").is_ok());
        assert!(check_body(b'Q', b"SELECT 1").is_err());
        assert!(check_body(b'Q', b"SELECT 1\0\0").is_err());
        assert!(check_body(b'S', b"").is_ok());
        assert!(check_body(b'S', b"x").is_err());
        assert!(check_body(b'E', b"\0\0\0\0\0").is_ok());
        assert!(check_body(b'E', b"\0\0\0").is_err());
        assert!(check_body(b'D', b"S\0").is_ok());
        assert!(check_body(b'D', b"Z\0").is_err());
        // Bind: unnamed portal and statement, no formats, one 1-byte parameter, no result formats.
        assert!(check_body(b'B', b"\0\0\0\0\0\x01\0\0\0\x011\0\0").is_ok());
        assert!(check_body(b'B', b"\0\0\0\0\0\x01\0\0\0\x051\0\0").is_err());
        assert!(check_body(b'P', b"\0SELECT 1\0\0\x01").is_err());
        assert!(check_body(b'P', b"\0SELECT 1\0\0\x01\0\0\0\x17").is_ok());
    }

    #[tokio::test]
    async fn a_short_length_is_refused_before_anything_is_handed_on() {
        use tokio::io::AsyncReadExt;
        let mut startup = 8i32.to_be_bytes().to_vec();
        startup.extend_from_slice(&196608i32.to_be_bytes());
        for bad_len in [0i32, 3] {
            let mut input = startup.clone();
            input.push(b'Q');
            input.extend_from_slice(&bad_len.to_be_bytes());
            input.extend_from_slice(b"SELECT 1\0");
            let mut c = Checked::new(&input[..], BytesMut::new());
            let mut out = vec![0u8; 8];
            c.read_exact(&mut out).await.unwrap();
            let e = c.read_u8().await.unwrap_err();
            assert!(malformed(&e).unwrap().contains("invalid length"), "{e}");
        }
        let mut input = startup.clone();
        input.extend(frame(b'Q', b"SELECT 1\0"));
        let mut c = Checked::new(&input[..], BytesMut::new());
        let mut out = Vec::new();
        c.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, input);
    }
}
