//! A mailbox between a handler and the code it interrupted.

use spin::Mutex;

/// A one-value mailbox a handler fills and the interrupted code empties (handlers cannot
/// capture state: they are plain `fn`s).
pub struct Record<T: Copy> {
    value: Mutex<Option<T>>,
}

impl<T: Copy> Record<T> {
    /// An empty record.
    pub const fn new() -> Self {
        Self { value: Mutex::new(None) }
    }

    /// Stores `value` (replacing any earlier one).
    pub fn put(&self, value: T) {
        *self.value.lock() = Some(value);
    }

    /// Takes the stored value, leaving the record empty.
    pub fn take(&self) -> Option<T> {
        self.value.lock().take()
    }
}

impl<T: Copy> Default for Record<T> {
    fn default() -> Self {
        Self::new()
    }
}
