//! One error type for everything MLX can reject: it names the operation and
//! carries MLX's own message (the `what()` of the C++ exception).

/// An MLX call failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("MLX {op}: {message}")]
pub struct Error {
    /// The operation that failed, e.g. `matmul`.
    pub op: &'static str,
    /// MLX's message, or ours when the input was rejected before the call.
    pub message: String,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn new(op: &'static str, message: impl Into<String>) -> Error {
        Error {
            op,
            message: message.into(),
        }
    }

    pub(crate) fn from_cxx(op: &'static str, e: cxx::Exception) -> Error {
        Error::new(op, e.what())
    }
}
