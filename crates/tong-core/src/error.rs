//! Errors of the engine. Each variant maps to one stable [`ErrorCode`] for the C ABI.

use std::io;

/// Stable error codes, shared with the C ABI (`tong_error_code`). Never renumbered.
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// Success (only used at the C boundary).
    Ok = 0,
    /// Bad input: an invalid id, config, option or argument.
    InvalidArgument = 1,
    /// No container with that id.
    NotFound = 2,
    /// A container with that id exists already.
    AlreadyExists = 3,
    /// The container is not in a state that allows the operation.
    InvalidState = 4,
    /// A plugin is missing, untrusted, of the wrong ABI, unusable here, or failed.
    Plugin = 5,
    /// A system call failed.
    Os = 6,
    /// The container's process failed before exec (executable not found, mount error).
    Container = 7,
    /// A panic was caught at the boundary.
    Panic = 8,
    /// Anything else.
    Internal = 9,
}

/// The engine's error type.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("container {0:?} does not exist")]
    NotFound(String),
    #[error("container {0:?} already exists")]
    AlreadyExists(String),
    #[error("{0}")]
    InvalidState(String),
    #[error("{0}")]
    Plugin(String),
    #[error("{context}: {source}")]
    Os {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Container(String),
    #[error("{0}")]
    Internal(String),
}

/// Result type of the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A failed system call, with what was being done.
    pub fn os(context: impl Into<String>, source: impl Into<io::Error>) -> Self {
        Error::Os {
            context: context.into(),
            source: source.into(),
        }
    }

    /// Bad input.
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidArgument(message.into())
    }

    /// The stable code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::InvalidArgument(_) => ErrorCode::InvalidArgument,
            Error::NotFound(_) => ErrorCode::NotFound,
            Error::AlreadyExists(_) => ErrorCode::AlreadyExists,
            Error::InvalidState(_) => ErrorCode::InvalidState,
            Error::Plugin(_) => ErrorCode::Plugin,
            Error::Os { .. } => ErrorCode::Os,
            Error::Container(_) => ErrorCode::Container,
            Error::Internal(_) => ErrorCode::Internal,
        }
    }
}

/// Adds context to `io::Result`s.
pub trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: Into<io::Error>> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::os(what(), e))
    }
}
