//! The engine's error type: every variant names the input it is about.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("{}: {message}", path.display())]
    Config { path: PathBuf, message: String },

    #[error("weights in {}: {message}", dir.display())]
    Weights { dir: PathBuf, message: String },

    #[error(transparent)]
    Image(#[from] imaging::Error),

    #[error("tokenizer: {0}")]
    Tokenizer(String),

    #[error("chat template: {0}")]
    Template(String),

    #[error("request: {0}")]
    Request(String),

    #[error("model {0}")]
    Model(String),

    #[error("cancelled")]
    Cancelled,

    /// A GPU kernel disagreed with MLX in its start-up self-check.
    #[error("{0}")]
    SelfCheck(String),

    #[error(transparent)]
    Mlx(#[from] mlx::Error),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn io(path: &Path, source: std::io::Error) -> Error {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub fn config(path: &Path, message: impl Into<String>) -> Error {
        Error::Config {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }

    pub fn weights(dir: &Path, message: impl Into<String>) -> Error {
        Error::Weights {
            dir: dir.to_path_buf(),
            message: message.into(),
        }
    }

    pub fn request(message: impl Into<String>) -> Error {
        Error::Request(message.into())
    }
}
