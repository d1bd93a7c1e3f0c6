//! The instruction-set layer: which sets this CPU has, the tokens that prove it, the vector
//! operations of each set, and the compiled kernels that run on them.
//!
//! A set is detected at run time, never assumed from compile flags: AVX-512F, then AVX2 with
//! FMA, on x86_64; NEON on aarch64; portable Rust everywhere. Soundness rests on the types,
//! not on convention:
//!
//! * each set is a zero-sized *token* type implementing [`Simd`] (an `unsafe` trait), whose
//!   values are made only by detection ([`Simd::detect`], [`Isa::detect`]); every vector
//!   operation is a method that takes the token, so no code can execute an instruction
//!   without holding proof that the CPU has it;
//! * a kernel is instantiated for a set through [`Compiled::new`], which takes the set's
//!   token, so a [`Compiled`] kernel exists only where it can run.
//!
//! The set a layer uses is a value: chosen when the layer is built, from
//! [`Isa::default_for_process`] (the fastest available, or `CONVGEN_ISA`) unless the
//! builder names one.

#[cfg(target_arch = "aarch64")]
mod arm;
#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod compiled;
mod portable;
mod simd;

use std::fmt;
use std::sync::OnceLock;

#[cfg(target_arch = "aarch64")]
pub(crate) use arm::Neon;
#[cfg(target_arch = "x86_64")]
pub(crate) use avx2::Avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) use avx512::Avx512;
pub(crate) use compiled::{Compiled, Family, Kernel, KernelFn};
pub(crate) use portable::Portable;
pub(crate) use simd::{MAX_SELECT_LANES, Simd};

/// An instruction set the kernels are compiled for.
///
/// A layer's set is chosen when it is built: the process default, or the one named with
/// [`Builder::isa`](crate::Builder::isa) or `with_isa` on the layer, so that tests and
/// benchmarks can compare every path the machine has.
///
/// ```
/// use conv_runtime::prelude::*;
/// use conv_runtime::Isa;
///
/// for isa in Isa::available() {
///     let layer = Conv2d::builder(conv!(k = 3), 2, 4).isa(isa).build()?;
///     assert_eq!(layer.isa(), isa);
/// }
/// # Ok::<(), ConvError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Isa {
    /// Plain Rust, vectorised by the compiler for the target's baseline (SSE2 on x86_64).
    Portable,
    /// x86_64 AVX2 with FMA, 8 lanes.
    Avx2,
    /// x86_64 AVX-512F, 16 lanes.
    Avx512,
    /// aarch64 NEON, 4 lanes.
    Neon,
}

impl Isa {
    /// Every instruction set, slowest first.
    pub const ALL: [Isa; 4] = [Isa::Portable, Isa::Avx2, Isa::Avx512, Isa::Neon];

    /// The name `CONVGEN_ISA` accepts.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
            Isa::Neon => "neon",
        }
    }

    /// Floats per vector of the set (its kernels' `Simd::LANES`).
    pub(crate) fn lanes(self) -> usize {
        match self {
            Isa::Portable | Isa::Avx2 => 8,
            Isa::Avx512 => 16,
            Isa::Neon => 4,
        }
    }

    /// Whether this build has kernels for the set and the running CPU supports it.
    pub fn is_available(self) -> bool {
        self.detect().is_some()
    }

    /// The sets available here, slowest first.
    pub fn available() -> Vec<Isa> {
        Isa::ALL
            .into_iter()
            .filter(|isa| isa.is_available())
            .collect()
    }

    /// The set layers use unless told otherwise: `CONVGEN_ISA` if it names an available set,
    /// else the fastest available. Detected once per process.
    pub fn default_for_process() -> Isa {
        static DEFAULT: OnceLock<Isa> = OnceLock::new();
        *DEFAULT.get_or_init(|| {
            let fastest = Isa::available().last().copied().unwrap_or(Isa::Portable);
            match std::env::var("CONVGEN_ISA") {
                Ok(name) => match Isa::ALL.into_iter().find(|isa| isa.name() == name) {
                    Some(isa) if isa.is_available() => isa,
                    _ => {
                        eprintln!(
                            "conv-runtime: CONVGEN_ISA={name} is not available here; using {}",
                            fastest.name()
                        );
                        fastest
                    }
                },
                Err(_) => fastest,
            }
        })
    }

    /// The set's token, if this build has kernels for it and the CPU supports it.
    pub(crate) fn detect(self) -> Option<Detected> {
        match self {
            Isa::Portable => Portable::detect().map(Detected::Portable),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => Avx2::detect().map(Detected::Avx2),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => Avx512::detect().map(Detected::Avx512),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => Neon::detect().map(Detected::Neon),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The token of a detected instruction set: what kernel selection matches on, so that each
/// arm holds the proof its kernels need.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Detected {
    Portable(Portable),
    #[cfg(target_arch = "x86_64")]
    Avx2(Avx2),
    #[cfg(target_arch = "x86_64")]
    Avx512(Avx512),
    #[cfg(target_arch = "aarch64")]
    Neon(Neon),
}

impl Detected {
    /// The token of `isa` if it is available, else of the portable set, which always is.
    pub(crate) fn or_portable(isa: Isa) -> Detected {
        isa.detect().unwrap_or(Detected::Portable(Portable))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Isa::lanes` is each available set's `Simd::LANES`, which layouts sized by it rely on.
    #[test]
    fn lanes_are_the_sets_own() {
        fn lanes_of<S: Simd>(_: S) -> usize {
            S::LANES
        }
        for isa in Isa::available() {
            let lanes = match Detected::or_portable(isa) {
                Detected::Portable(simd) => lanes_of(simd),
                #[cfg(target_arch = "x86_64")]
                Detected::Avx2(simd) => lanes_of(simd),
                #[cfg(target_arch = "x86_64")]
                Detected::Avx512(simd) => lanes_of(simd),
                #[cfg(target_arch = "aarch64")]
                Detected::Neon(simd) => lanes_of(simd),
            };
            assert_eq!(isa.lanes(), lanes, "{isa}");
        }
    }
}
