//! [`HandlerError`]: what a handler returns to say "try again later" or
//! "this message can never succeed".

use std::error::Error as StdError;
use std::fmt;

/// A boxed error, as handlers produce them.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Why a handler failed, and whether retrying can help.
///
/// `?` on any `std::error::Error + Send + Sync + 'static` gives a retryable
/// error; [`HandlerError::reject`] sends the message to the DLQ at once.
///
/// ```
/// use mqkit::HandlerError;
///
/// fn check(amount_cents: i64) -> Result<(), HandlerError> {
///     if amount_cents < 0 {
///         return Err(HandlerError::reject("negative amount"));
///     }
///     let _n: u32 = "42".parse()?; // a ParseIntError becomes a retryable error
///     Ok(())
/// }
/// assert!(check(-1).unwrap_err().is_reject());
/// assert!(check(1).is_ok());
/// ```
pub struct HandlerError {
    disposition: Disposition,
    error: BoxError,
}

/// What the framework does with a failed delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Transient: retry with back-off, then the DLQ.
    Retry,
    /// Permanent: straight to the DLQ.
    Reject,
}

impl HandlerError {
    /// A transient failure: the message is retried with back-off, then
    /// dead-lettered when the retries are used up.
    pub fn retry(error: impl Into<BoxError>) -> Self {
        HandlerError {
            disposition: Disposition::Retry,
            error: error.into(),
        }
    }

    /// A permanent failure: the message goes to the DLQ at once, no retry.
    pub fn reject(error: impl Into<BoxError>) -> Self {
        HandlerError {
            disposition: Disposition::Reject,
            error: error.into(),
        }
    }

    /// Whether this error rejects the message (no retry).
    pub fn is_reject(&self) -> bool {
        self.disposition == Disposition::Reject
    }

    /// Retry or reject.
    pub fn disposition(&self) -> Disposition {
        self.disposition
    }

    /// The underlying error.
    pub fn error(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.error
    }
}

/// The error text with its causes, `outer: cause: root cause`.
impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.error)?;
        let mut source = self.error.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerError")
            .field("disposition", &self.disposition)
            .field("error", &self.error)
            .finish()
    }
}

impl<E> From<E> for HandlerError
where
    E: StdError + Send + Sync + 'static,
{
    fn from(error: E) -> Self {
        HandlerError::retry(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("charge failed")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn display_includes_the_cause_chain() {
        let e: HandlerError = Outer(std::io::Error::other("connection reset")).into();
        assert_eq!(e.to_string(), "charge failed: connection reset");
        assert_eq!(e.disposition(), Disposition::Retry);
    }

    #[test]
    fn reject_and_retry_accept_strings_and_errors() {
        assert!(HandlerError::reject("bad").is_reject());
        assert!(!HandlerError::retry(String::from("later")).is_reject());
        assert!(HandlerError::reject(std::io::Error::other("x")).is_reject());
    }
}
