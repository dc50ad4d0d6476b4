//! Panics in a Flight SQL call become an error for that call.
//!
//! A panic while a call is handled or while its result stream is polled
//! would otherwise only unwind the task serving that HTTP/2 stream (the
//! client sees the stream reset, without a reason). Here both become a
//! gRPC `Internal` status naming the panic, logged once, and the server
//! goes on serving every other call. (A failed allocation or a stack
//! overflow aborts the process and cannot be caught: untrusted sizes are
//! checked before anything is allocated for them, see `handle.rs`, and
//! statements are depth-limited, see `strata_query::depth`.)

use std::any::Any;
use std::convert::Infallible;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::{FutureExt, Stream};
use tonic::codegen::{http, Service};
use tonic::server::NamedService;
use tonic::Status;

fn panic_status(what: &str, panic: Box<dyn Any + Send>) -> Status {
    let msg = crate::panic_message(panic.as_ref());
    tracing::error!("a Flight SQL {what} panicked: {msg}; the server goes on");
    Status::internal(format!("internal error: the {what} panicked ({msg})"))
}

/// A gRPC service whose calls answer `Internal` when they panic.
#[derive(Clone)]
pub struct CatchPanic<S>(pub S);

impl<S: NamedService> NamedService for CatchPanic<S> {
    const NAME: &'static str = S::NAME;
}

type Body = tonic::body::Body;

impl<S, B> Service<http::Request<B>> for CatchPanic<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let fut = match std::panic::catch_unwind(AssertUnwindSafe(|| self.0.call(req))) {
            Ok(fut) => fut,
            Err(panic) => {
                let resp = panic_status("call", panic).into_http();
                return Box::pin(std::future::ready(Ok(resp)));
            }
        };
        Box::pin(async move {
            match AssertUnwindSafe(fut).catch_unwind().await {
                Ok(resp) => resp,
                Err(panic) => Ok(panic_status("call", panic).into_http()),
            }
        })
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// `s`, with a panic while it is polled turned into a final `Internal` error.
pub fn catch_stream<T: Send + 'static>(s: BoxStream<T>) -> BoxStream<T> {
    let mut inner = Some(s);
    Box::pin(futures::stream::poll_fn(move |cx| {
        let Some(s) = inner.as_mut() else {
            return Poll::Ready(None);
        };
        match std::panic::catch_unwind(AssertUnwindSafe(|| s.as_mut().poll_next(cx))) {
            Ok(p) => p,
            Err(panic) => {
                inner = None;
                Poll::Ready(Some(Err(panic_status("result stream", panic))))
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn a_panicking_stream_ends_with_an_internal_error() {
        let mut n = 0;
        let s: BoxStream<i32> = Box::pin(futures::stream::poll_fn(move |_| {
            n += 1;
            if n == 3 {
                panic!("boom");
            }
            Poll::Ready(Some(Ok(n)))
        }));
        let got: Vec<_> = catch_stream(s).collect().await;
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].as_ref().unwrap(), &1);
        assert_eq!(got[1].as_ref().unwrap(), &2);
        let e = got[2].as_ref().unwrap_err();
        assert_eq!(e.code(), tonic::Code::Internal);
        assert!(e.message().contains("panicked (boom)"), "{}", e.message());
    }

    #[derive(Clone)]
    struct Panics;

    impl Service<http::Request<()>> for Panics {
        type Response = http::Response<Body>;
        type Error = Infallible;
        type Future =
            Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send>>;
        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: http::Request<()>) -> Self::Future {
            Box::pin(async { panic!("handler boom") })
        }
    }

    #[tokio::test]
    async fn a_panicking_call_answers_internal() {
        let resp = CatchPanic(Panics)
            .call(http::Request::new(()))
            .await
            .unwrap();
        let status = Status::from_header_map(resp.headers()).expect("a grpc-status header");
        assert_eq!(status.code(), tonic::Code::Internal);
        assert!(
            status.message().contains("handler boom"),
            "{}",
            status.message()
        );
    }
}
