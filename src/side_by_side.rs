//! Timing a ported network beside its PyTorch original, for `examples/fsrcnn` and
//! `examples/unet`: the median time of our forward pass, and the same network, weights and
//! input run by PyTorch through `tools/peer_networks.py` (in a Python the user names, since
//! torch is never a dependency of the build or the tests), with its output to compare.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use conv_runtime::StateDict;
use conv_runtime::ndarray::{Array4, ArrayView4, Ix4};

use crate::demo::DemoError;

/// Runs `f` once to warm up, then `runs` times; its last result and the median time.
pub fn median_time<T, E>(
    runs: usize,
    mut f: impl FnMut() -> Result<T, E>,
) -> Result<(T, Duration), E> {
    let mut result = f()?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let start = Instant::now();
        result = f()?;
        times.push(start.elapsed());
    }
    times.sort();
    Ok((result, times[times.len() / 2]))
}

/// What PyTorch did with the network.
#[derive(Clone, Debug)]
pub struct TorchRun {
    /// The median time of one forward pass.
    pub time: Duration,
    /// Its output.
    pub output: Array4<f32>,
    /// torch's version, as `torch.__version__` without the build suffix.
    pub version: String,
    /// The intra-op threads it ran with.
    pub threads: usize,
}

/// Runs `network` ("fsrcnn" or "unet") in PyTorch: `python tools/peer_networks.py` with
/// the weights at `weights`, on `input`, with `threads` threads and `runs` timed runs. The
/// input and output pass through safetensors files in `scratch`.
pub fn run_torch(
    python: &Path,
    network: &str,
    weights: &Path,
    input: ArrayView4<f32>,
    threads: usize,
    runs: usize,
    scratch: &Path,
) -> Result<TorchRun, DemoError> {
    std::fs::create_dir_all(scratch)?;
    let input_path = scratch.join(format!("{network}_input.safetensors"));
    let output_path = scratch.join(format!("{network}_torch_output.safetensors"));
    StateDict::save(&input_path, [("input".to_owned(), input.into_dyn())])?;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tools/peer_networks.py");
    let result = Command::new(python)
        .arg(&script)
        .arg(network)
        .arg(weights)
        .arg(&input_path)
        .arg(&output_path)
        .arg(threads.to_string())
        .arg(runs.to_string())
        .output()
        .map_err(|error| format!("cannot run {}: {error}", python.display()))?;
    if !result.status.success() {
        return Err(format!(
            "{} {} failed:\n{}",
            python.display(),
            script.display(),
            String::from_utf8_lossy(&result.stderr)
        )
        .into());
    }
    // One line: `median_ms <ms> torch <version> threads <n>`.
    let line = String::from_utf8_lossy(&result.stdout);
    let words: Vec<&str> = line.split_whitespace().collect();
    let field = |name: &str| {
        words
            .iter()
            .position(|w| *w == name)
            .and_then(|i| words.get(i + 1))
            .ok_or_else(|| format!("peer_networks.py printed no `{name}`: {line}"))
    };
    let milliseconds: f64 = field("median_ms")?.parse()?;
    let output = StateDict::open(&output_path)?.array::<Ix4>("output")?;
    Ok(TorchRun {
        time: Duration::from_secs_f64(milliseconds / 1e3),
        output,
        version: field("torch")?.to_string(),
        threads: field("threads")?.parse()?,
    })
}

impl TorchRun {
    /// Prints PyTorch's time beside ours (`time`, measured by the caller), and the largest
    /// difference between the outputs (`convgen::max_difference`).
    pub fn print_beside(&self, time: Duration, difference: f32) {
        println!(
            "  PyTorch {:<8}       {} ({} threads): convgen {:.2}x as fast",
            self.version,
            milliseconds(self.time),
            self.threads,
            self.time.as_secs_f64() / time.as_secs_f64()
        );
        println!("  largest difference from PyTorch's output: {difference:.1e}");
    }
}

/// Milliseconds with three significant figures or more.
pub fn milliseconds(time: Duration) -> String {
    let ms = time.as_secs_f64() * 1e3;
    if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else if ms >= 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.2} ms")
    }
}
