//! Collects `syn::Error`s so one build reports every problem at once.

/// An accumulator of spanned errors.
#[derive(Default)]
pub(crate) struct Errors {
    first: Option<syn::Error>,
}

impl Errors {
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.first {
            Some(first) => first.combine(error),
            None => self.first = Some(error),
        }
    }

    /// Whether no error was pushed.
    pub(crate) fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    /// All errors combined, or `None` when there were none.
    pub(crate) fn finish(self) -> Option<syn::Error> {
        self.first
    }
}
