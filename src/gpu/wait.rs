//! Waiting for the GPU on both sides of the browser line. Natively a read blocks: `device.poll`
//! runs the queue and the map completes at once. In a browser nothing may block (the page's one
//! thread is the one that delivers the GPU's answers), so every read is a future that the
//! caller awaits; the blocking API stays for native callers and says so in a browser.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use crate::error::{Error, Result};

/// Runs a GPU future to completion on this thread. Natively it blocks (pollster). In a browser
/// a future still pending after one poll would need the event loop this thread is holding, so
/// it is an error that names the async call to use instead.
pub fn block_on<T>(future: impl Future<Output = Result<T>>) -> Result<T> {
    #[cfg(not(target_arch = "wasm32"))]
    {
        pollster::block_on(future)
    }
    #[cfg(target_arch = "wasm32")]
    {
        let mut future = std::pin::pin!(future);
        let mut cx = Context::from_waker(Waker::noop());
        match future.as_mut().poll(&mut cx) {
            Poll::Ready(v) => v,
            Poll::Pending => Err(Error::Gpu(
                "a blocking GPU read cannot wait in a browser: call the `_async` variant".into(),
            )),
        }
    }
}

/// A one-shot slot that a wgpu callback fills and a future awaits (no channel crate needed).
pub(crate) struct Slot<T> {
    inner: Arc<Mutex<(Option<T>, Option<Waker>)>>,
}

impl<T> Clone for Slot<T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<T> Slot<T> {
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Mutex::new((None, None))),
        }
    }

    /// Stores the value and wakes the awaiting task.
    pub fn fill(&self, value: T) {
        let waker = match self.inner.lock() {
            Ok(mut g) => {
                g.0 = Some(value);
                g.1.take()
            }
            Err(_) => None,
        };
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl<T> Future for Slot<T> {
    type Output = Result<T>;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Ok(mut g) = self.inner.lock() else {
            return Poll::Ready(Err(Error::Gpu("GPU callback slot poisoned".into())));
        };
        match g.0.take() {
            Some(v) => Poll::Ready(Ok(v)),
            None => {
                g.1 = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}
