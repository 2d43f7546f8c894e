//! A connector for the token client whose connections read at most so many bytes.
//!
//! yup-oauth2 reads the token endpoint's answer whole, with no bound but the request
//! timeout, and at loopback or LAN speed a timeout lets through gigabytes. The Sheets
//! client bounds its answers itself (`Client::read_body`); the token client cannot be
//! reached that way, so the bound sits one layer down: every connection it opens may
//! read `sheets.max_response_bytes` in all, headers included, then fails its read with
//! an error naming the key. The client keeps no idle connection, so one connection
//! carries one token request and the bound is per answer.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use hyper::rt::{Read, ReadBuf, ReadBufCursor, Write};
use hyper::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};

/// Wraps a connector; each of its connections reads at most `limit` bytes.
#[derive(Clone)]
pub struct CappedConnector<C> {
    inner: C,
    limit: usize,
}

impl<C> CappedConnector<C> {
    pub fn new(inner: C, limit: usize) -> CappedConnector<C> {
        CappedConnector { inner, limit }
    }
}

impl<C> tower_service::Service<Uri> for CappedConnector<C>
where
    C: tower_service::Service<Uri>,
    C::Future: Send + 'static,
{
    type Response = Capped<C::Response>;
    type Error = C::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let limit = self.limit;
        Box::pin(async move {
            Ok(Capped {
                io: connecting.await?,
                limit,
                read: 0,
            })
        })
    }
}

/// A connection that fails its reads once `limit` bytes have come in.
pub struct Capped<T> {
    io: T,
    limit: usize,
    read: usize,
}

impl<T: Read + Unpin> Read for Capped<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, mut buf: ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        let left = self.limit - self.read;
        if left == 0 {
            return Poll::Ready(Err(io::Error::other(format!(
                "the answer is longer than sheets.max_response_bytes ({} bytes), so it was cut off",
                self.limit
            ))));
        }
        // Read into a buffer of our own, no larger than what may still come in, and
        // copy it over: the caller's cursor cannot say how much another reader filled.
        let mut scratch = [0u8; 4096];
        let want = scratch.len().min(left).min(buf.remaining());
        let mut chunk = ReadBuf::new(&mut scratch[..want]);
        ready!(Pin::new(&mut self.io).poll_read(cx, chunk.unfilled()))?;
        let filled = chunk.filled();
        self.read += filled.len();
        buf.put_slice(filled);
        Poll::Ready(Ok(()))
    }
}

impl<T: Write + Unpin> Write for Capped<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
}

impl<T: Connection> Connection for Capped<T> {
    fn connected(&self) -> Connected {
        self.io.connected()
    }
}
