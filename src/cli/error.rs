//! The error that ends a CLI command, printed once by `cli::run`.

/// An error that ends a CLI command: printed once by `cli::run`.
#[derive(Debug)]
pub struct CliError {
    pub code: i32,
    pub message: String,
}

impl CliError {
    pub fn new(code: u8, message: impl Into<String>) -> CliError {
        CliError {
            code: i32::from(code),
            message: message.into(),
        }
    }
}
