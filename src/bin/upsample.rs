//! The demo: a small network of dilated convolutions and a transposed convolution learns x2
//! upsampling in about a minute on the CPU, and beats nearest and bilinear interpolation on
//! a part of the picture it never saw. See `convgen::demo`.
//!
//! Run: `cargo run --release --bin upsample [-- --image PATH --seed N --out DIR]`

use std::process::ExitCode;

fn main() -> ExitCode {
    let config = match convgen::demo::parse_args(std::env::args().skip(1)) {
        Ok(config) => config,
        Err(usage) if usage == convgen::demo::USAGE => {
            println!("{usage}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::FAILURE;
        }
    };
    match convgen::demo::run(&config) {
        Ok(_) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
