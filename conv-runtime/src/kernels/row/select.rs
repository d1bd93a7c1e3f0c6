//! Chooses, once per layer, which blocking of the row kernel runs it on its instruction set,
//! and instantiates the kernel for that set.
//!
//! Each blocking keeps its `OCB x WV` accumulators (times the column phases), with room for
//! the loaded inputs, within the set's vector registers. Only the arms a geometry's column
//! pairing reaches are instantiated for it.

use std::marker::PhantomData;

use super::channel_vectors::ChannelVectors;
use super::edges;
use super::run_time::{self, RunTimeRow};
use super::specialised::Specialised;
use super::{RowFamily, TapList};
use crate::isa::{Compiled, Detected, Isa, Simd};
use crate::shape::contract::{ColumnPairing, PhasePlan};

/// A row kernel chosen for a layer, and the blocking it was compiled for.
#[derive(Clone, Copy)]
pub(crate) struct Selected {
    pub kernel: Compiled<RowFamily>,
    /// Output channels per call: the packed weights' block.
    pub block: usize,
    /// Output columns per tile, per column phase.
    pub tile: usize,
    /// Column phases per call: 2 for the paired kernels of a stride-2 transposed
    /// convolution, else 1.
    pub column_phases: usize,
    /// Whether a call may compute several consecutive output rows ([`RowJob::rows`]).
    ///
    /// [`RowJob::rows`]: super::RowJob::rows
    pub multi_row: bool,
    /// Output pixels the kernel computes per pass over a block's weights (0 where it has no
    /// such pass): a multi-row call should hold as many whole rows as that.
    pub strip: usize,
}

impl Selected {
    /// Whether rows of `width` tile columns fill at least nine tenths of the kernel's tiles:
    /// below that, the kernel vectorised along output channels, about that much slower on
    /// full rows (dcgan-up, Zen 3: 3.80 against 3.52 ms), does less work.
    pub fn fills(&self, width: usize) -> bool {
        10 * width >= 9 * width.next_multiple_of(self.tile)
    }
}

/// The row kernels chosen for a layer: one for every call, and where that one's tiles are
/// wide, one for rows too short to fill them.
#[derive(Clone, Copy)]
pub(crate) struct Choice {
    pub rows: Selected,
    /// Runs the transposed convolutions whose phase rows would leave `rows`' tiles partly
    /// empty (see [`Selected::fills`]).
    pub short_rows: Option<Selected>,
}

impl Choice {
    fn only(rows: Selected) -> Choice {
        Choice {
            rows,
            short_rows: None,
        }
    }
}

/// The most taps in one phase that the specialised kernels unroll: 9 x 9 (sr-x3's input
/// gradient, a convolution of stride 3, has 81 in its one phase). Larger filters run the
/// kernel that takes its taps at run time, compiled once in this crate, on every set: each
/// unrolled tap costs every blocking's code, and the 16 x 16 and 1 x 256 filters the macro
/// accepts took 270 s each to compile in the test profile (`cargo test --timings`, Intel
/// Xeon; 21 s for the thirty-two other geometries of the same test crate), while a tap's
/// loop overhead shrinks beside the `OCB x WV` multiply-adds it feeds.
pub(crate) const MAX_UNROLLED_TAPS: usize = 81;

/// The row kernel for tap list `T` on `isa` (the portable set if `isa` is not available),
/// blocked for a layer with `out_per_group` output channels per group.
pub(crate) fn select<T: TapList>(isa: Isa, out_per_group: usize) -> Choice {
    let detected = Detected::or_portable(isa);
    // A constant: above the limit no specialised kernel is compiled for `T` at all.
    if const { most_taps(T::PHASES) > MAX_UNROLLED_TAPS } {
        return Choice::only(run_time::taps_of_any_count(detected, out_per_group));
    }
    T::with_columns(Chooser::<T> {
        detected,
        out_per_group,
        taps: PhantomData,
    })
}

/// Chooses among the kernels of the column pairing the geometry asks for.
struct Chooser<T> {
    detected: Detected,
    out_per_group: usize,
    taps: PhantomData<T>,
}

impl<T: TapList> ColumnPairing for Chooser<T> {
    type Output = Choice;

    fn single(self) -> Choice {
        Choice::only(self.single_phase())
    }

    fn paired(self) -> Choice {
        // On AVX2, phases of several taps (k = 4, stride 2: 2x2 taps each) whose rows fill
        // its tiles (16 phase columns in dcgan-up) run the single-phase kernel of six
        // channels by two vectors, 12 accumulators: dcgan-up 1.08x faster than the kernel
        // vectorised along output channels (Zen 3, one thread, six alternated rounds, median
        // 3.78 -> 3.52 ms); six channels by one vector of both phases spilled (6.75 ms), and
        // six by two ran unet-up (one-tap phases) 1.3x slower than the paired three by two.
        // Shorter rows (the 4x4 and 8x8 inputs of a DCGAN generator's first layers) would
        // leave its tile mostly empty: they keep the kernel along output channels, whose
        // rows may be any length.
        #[cfg(target_arch = "x86_64")]
        if let Detected::Avx2(simd) = self.detected
            && self.out_per_group >= 16
            && const { several_taps(T::PHASES) }
        {
            return Choice {
                rows: specialised::<T, _, 6, 2, 1>(simd),
                short_rows: Some(channel_vectors::<T, _, 2, 4>(simd)),
            };
        }
        // On AVX-512 likewise, with eight channels by two vectors (tile 32, 16 accumulators,
        // 10 loads per 16 multiply-adds). Sixteen channels by one vector (tile 16) loads once
        // per multiply-add, which a core issuing two 512-bit FMAs a cycle feels: down-s2's
        // input gradient (k = 3, stride 2, phase rows of 32 columns) made its backward 2.83 ->
        // 2.56 ms with eight by two (Intel Xeon, one thread, fastest of seven alternated
        // `suite --fastest --backward` runs). Phase rows that fill too little of the wider
        // tile (a 16x16 input's) run the kernel along output channels, where sixteen by one
        // had been 1.09x faster than it on dcgan-up (Zen 4, one thread, eight alternated
        // rounds, median 2.72 -> 2.50 ms; dcgan-up now runs the two-tap family).
        #[cfg(target_arch = "x86_64")]
        if let Detected::Avx512(simd) = self.detected
            && self.out_per_group >= 32
            && const { several_taps(T::PHASES) }
        {
            return Choice {
                rows: specialised::<T, _, 8, 2, 1>(simd),
                short_rows: Some(channel_vectors::<T, _, 2, 8>(simd)),
            };
        }
        Choice::only(self.paired_phases())
    }
}

impl<T: TapList> Chooser<T> {
    /// Kernels computing one column phase per call.
    fn single_phase(self) -> Selected {
        let out = self.out_per_group;
        let wide = out >= 4;
        // On AVX2, wide layers take a block of six channels by two vectors (12 accumulators,
        // one input load per three broadcast weights) rather than four by two (8, one per
        // two): with only 8 accumulators, two FMA units of four cycles' latency have no slack.
        // A strided convolution reads `stride` input columns per output column, so its rows
        // are short (32 outputs in down-s2: two tiles) and every channel block re-reads an
        // output row's input (61 KB there) from L2: down-s2 ran 1.19x faster (Zen 3, one
        // thread, 2.216 -> 1.855 ms); aspp-d12 (dilation 12) 1.05x (five alternated rounds,
        // median 11.13 -> 10.57 ms; its backward 23.7 -> 22.5 ms). Not where two taps of a
        // filter row read the same vector (dilation 4: taps 8 columns apart): LLVM keeps the
        // shared load live, spills an accumulator, and context-d4 ran 2.2x slower. A
        // constant, tested before the run-time `wide` in each arm: only one of the two
        // kernels is compiled.
        let six_by_two = const { T::COL_STRIDE > 1 || !shares_vectors(T::PHASES, 8, 2) };
        // On AVX-512, strided layers of 16 channels or more take sixteen channels by one
        // vector (16 accumulators, a tile of 16 columns) rather than eight by two (a tile
        // of 32): a convolution whose output rows are 16 columns (dcgan-up's input
        // gradient, a stride-2 convolution into 16x16) left half of every 32-column tile
        // empty. Level
        // with eight by two on full rows (Zen 4, one thread, five alternated rounds, medians,
        // sixteen by one first: context-d4 2.74 against 2.69 ms, aspp-d12 8.78 against 9.19,
        // down-s2 1.42 against 1.44); dcgan-up's backward 5.6 ms against 8.4-9.4, and
        // against 5.9 with a second kernel, along output channels, for the short rows. It
        // loads once per multiply-add where eight by two loads 10 times per 16, which a core
        // issuing two 512-bit FMAs a cycle (Zen 5, Xeon) may feel: it did, on stride-1
        // layers (below). Eight to fifteen channels take four by four.
        // Three output channels (an RGB image: sr-x3) take three vectors, 9 accumulators,
        // rather than two, 6, too few to hide the FMA latency: sr-x3 (64-column phase rows,
        // three 24-column tiles of which 8 columns are wasted) 1.08x faster (Zen 3, one
        // thread, eight alternated rounds, median 1.388 -> 1.269 ms, min 1.162 -> 1.080);
        // four vectors, 12 accumulators, left too few registers and ran 1.27x slower.
        // (sr-x3 itself now runs Winograd on its phases, seed-upconv the one-tap family;
        // other RGB outputs still take this blocking.)
        // On AVX-512, where the padding is wide, layers of 16 channels or more take the kernel
        // vectorised along output channels, sixteen pixels by one vector, whose end tiles
        // leave out every pixel whose tap reads padding where the row kernel can only leave
        // out whole 16-float vectors: aspp-d12 (dilation and padding 12, 32 columns), where a
        // quarter of the column taps read padding and no vector wholly, ran 1.20x faster
        // (Zen 4, one thread, five alternated rounds, median 8.55 -> 7.15 ms), dilation 6
        // 1.07x, dilation 12 on 64 columns 1.13x. On full rows that kernel ran 4-8% slower
        // than sixteen by one (context-d4, unet-enc), so it runs only the geometries where it
        // leaves out at least an eighth more of the end tiles' multiply-adds (for k = 3,
        // dilation and padding 6 to 17); dilation 18 on 32 columns, whose dead taps the row
        // kernel leaves out as whole vectors, ran 1.14x slower with it. Sixteen by one is then
        // not compiled at all: the constant comes first in both arms.
        // From 32 channels that kernel is eight pixels by two vectors: ten loads per sixteen
        // multiply-adds where sixteen by one loads seventeen, which a core issuing two 512-bit
        // FMAs a cycle feels. With its calls of several rows and its prefetch, aspp-d12 ran
        // 5.96 -> 5.61 ms at one thread and 3.31 -> 2.79 at two (Intel Xeon, fastest of nine
        // alternated `suite --only aspp-d12 --fastest` runs; medians 6.67 -> 5.83 and 4.08 ->
        // 2.97), sixteen by one with the same two changes level at one thread. Sixteen to 31
        // channels take eight by two as well, the second vector partly empty: sixteen by one
        // for them was a second instance of the kernel, with its edge instances, in every
        // wide-padding geometry's build, for layers no suite case has.
        // Elsewhere, from 16 channels, eight channels by two vectors (a tile of 32 columns)
        // rather than sixteen by one: ten loads per sixteen multiply-adds, not seventeen
        // (sixteen broadcast weights and an input vector, of which those at a dilated tap's
        // column offset straddle two cache lines), which a core issuing two 512-bit FMAs a
        // cycle feels: seed-dilated 0.0290 -> 0.0273 ms at one thread, 0.0287 -> 0.0260 at
        // two (Intel Xeon, fastest of six alternated `suite --only seed-dilated --quick
        // --json` runs; its backward level), the suite's one layer it runs (the others of
        // stride 1 run the Winograd family or, aspp-d12, the kernel along output
        // channels). Only at stride 1 (one phase, unstrided columns), whose output rows are
        // as long as the input's: a strided convolution's are shorter, and a 16-column row
        // (a stride-2 convolution into 16x16) would leave half of every 32-column tile
        // empty, as the paragraph above found; a stride-1 layer on rows that short is
        // mostly a 3x3 one, which runs the Winograd family. Not where two taps of a filter
        // row read the same vector (dilation 8 and 16 on AVX-512), for the reason given for
        // AVX2 above.
        let eight_by_two = const {
            T::COL_STRIDE == 1
                && T::PHASES.len() == 1
                && !shares_vectors(T::PHASES, 16, 2)
                && !skips_padding::<T>(16)
        };
        let skips_padding = const { skips_padding::<T>(16) };
        match self.detected {
            #[cfg(target_arch = "x86_64")]
            Detected::Avx512(simd) if skips_padding && out >= 16 => {
                channel_vectors::<T, _, 2, 8>(simd)
            }
            #[cfg(target_arch = "x86_64")]
            Detected::Avx512(simd) if eight_by_two && out >= 16 => {
                specialised::<T, _, 8, 2, 1>(simd)
            }
            #[cfg(target_arch = "x86_64")]
            Detected::Avx512(simd) if !eight_by_two && !skips_padding && out >= 16 => {
                specialised::<T, _, 16, 1, 1>(simd)
            }
            #[cfg(target_arch = "x86_64")]
            Detected::Avx512(simd) if wide => specialised::<T, _, 4, 4, 1>(simd),
            #[cfg(target_arch = "x86_64")]
            Detected::Avx512(simd) if out == 3 => specialised::<T, _, 3, 4, 1>(simd),
            #[cfg(target_arch = "x86_64")]
            Detected::Avx512(simd) => specialised::<T, _, 1, 4, 1>(simd),
            #[cfg(target_arch = "x86_64")]
            Detected::Avx2(simd) if six_by_two && wide => specialised::<T, _, 6, 2, 1>(simd),
            #[cfg(target_arch = "x86_64")]
            Detected::Avx2(simd) if !six_by_two && wide => specialised::<T, _, 4, 2, 1>(simd),
            #[cfg(target_arch = "x86_64")]
            Detected::Avx2(simd) if out == 3 => specialised::<T, _, 3, 3, 1>(simd),
            #[cfg(target_arch = "x86_64")]
            Detected::Avx2(simd) => specialised::<T, _, 1, 4, 1>(simd),
            #[cfg(target_arch = "aarch64")]
            Detected::Neon(simd) if wide => specialised::<T, _, 4, 4, 1>(simd),
            #[cfg(target_arch = "aarch64")]
            Detected::Neon(simd) => specialised::<T, _, 1, 8, 1>(simd),
            Detected::Portable(_) if wide => portable::wide(),
            Detected::Portable(_) => portable::narrow(),
        }
    }

    /// Kernels computing both column phases of a stride-2 transposed convolution per call:
    /// twice the accumulators per tile column, so half the tile width. Three output channels
    /// (an RGB image, as the seed's upconvolution) get a block of their own on AVX2: as three
    /// one-channel blocks they read the input three times; one block of three with two
    /// vectors keeps 12 accumulators in registers and ran seed-upconv 1.4x faster (Zen 3,
    /// 0.067 -> 0.046 ms). The 2x2 layers without padding (the seed's, U-Net's) now run the
    /// one-tap family where it has a blocking (AVX-512 always, AVX2 up to three channels):
    /// the figures here are from before it.
    fn paired_phases(self) -> Selected {
        let out = self.out_per_group;
        let wide = out >= 4;
        // Phases of several taps (k = 4, stride 2: 2x2 taps each) read rows of only `W`
        // phase columns, 16 in dcgan-up, where the paired kernel fills half its tile width;
        // the kernel vectorised along output channels does not care how long rows are, and
        // ran dcgan-up 1.6x faster (Zen 3, AVX2, 6.18 -> 3.80 ms; layers of 16 channels on
        // AVX2, 32 on AVX-512, now run as `paired` says). One-tap phases (k = 2, stride 2) stay with the paired kernel:
        // there the channel-vectorised one ran unet-up 1.19x slower, its per-output scatter
        // into the rows no longer hidden behind the taps.
        // One-tap phases take three channels by two vectors (12 accumulators, the shape of
        // the classic 6 x 16 GEMM block: one input load per three broadcast weights) rather
        // than four by one (8 accumulators, one load per eight): unet-up ran 1.16x faster
        // (Zen 3, one thread, median of 5 alternated rounds, 6.82 -> 5.85 ms on a noisy host).
        // A constant: where it is false, the kernel behind it is not compiled at all.
        let several_taps = const { several_taps(T::PHASES) };
        match self.detected {
            #[cfg(target_arch = "x86_64")]
            Detected::Avx512(simd) if out >= 8 => specialised::<T, _, 8, 1, 2>(simd),
            #[cfg(target_arch = "x86_64")]
            Detected::Avx512(simd) if wide => specialised::<T, _, 4, 2, 2>(simd),
            // Three output channels (an RGB image: seed-upconv) in one block, 12
            // accumulators, rather than three blocks of one that each read the input: 1.2x
            // faster (Zen 4, one thread, eight alternated rounds, median 0.037 -> 0.032 ms);
            // three by four vectors (24 accumulators) ran slower (0.028 against 0.025 ms),
            // and a block of four (one of zeros) too (0.042 against 0.032 ms).
            #[cfg(target_arch = "x86_64")]
            Detected::Avx512(simd) if out == 3 => specialised::<T, _, 3, 2, 2>(simd),
            #[cfg(target_arch = "x86_64")]
            Detected::Avx512(simd) => specialised::<T, _, 1, 4, 2>(simd),
            #[cfg(target_arch = "x86_64")]
            Detected::Avx2(simd) if wide && several_taps => specialised::<T, _, 4, 1, 2>(simd),
            #[cfg(target_arch = "x86_64")]
            Detected::Avx2(simd) if out >= 3 => specialised::<T, _, 3, 2, 2>(simd),
            #[cfg(target_arch = "x86_64")]
            Detected::Avx2(simd) => specialised::<T, _, 1, 4, 2>(simd),
            #[cfg(target_arch = "aarch64")]
            Detected::Neon(simd) if wide => specialised::<T, _, 4, 2, 2>(simd),
            #[cfg(target_arch = "aarch64")]
            Detected::Neon(simd) => specialised::<T, _, 1, 4, 2>(simd),
            Detected::Portable(_) if wide => portable::wide_paired(),
            Detected::Portable(_) => portable::narrow_paired(),
        }
    }
}

/// Whether two taps of one filter row read the same vector of a tile of `vectors` vectors
/// of `lanes` floats: their columns a whole number of vectors apart, less than a tile apart.
const fn shares_vectors(phases: &[PhasePlan], lanes: usize, vectors: usize) -> bool {
    let mut p = 0;
    while p < phases.len() {
        let taps = phases[p].taps;
        let mut i = 0;
        while i < taps.len() {
            let mut j = 0;
            while j < taps.len() {
                let apart = taps[j].col - taps[i].col;
                if taps[i].row == taps[j].row
                    && apart > 0
                    && apart % lanes as isize == 0
                    && apart < (lanes * vectors) as isize
                {
                    return true;
                }
                j += 1;
            }
            i += 1;
        }
        p += 1;
    }
    false
}

/// Whether the kernel vectorised along output channels, sixteen pixels to a tile, leaves
/// out at least an eighth of the multiply-adds of a row's two end tiles more than the row
/// kernel of one vector of `lanes` floats (as wide a tile) does.
const fn skips_padding<T: TapList>(lanes: usize) -> bool {
    let tile = 16;
    let per_pixel = edges::zero_reads::<T>(1, tile);
    let per_vector = edges::zero_reads::<T>(lanes, tile);
    let end_tiles = 2 * tile * T::PHASES[0].taps.len();
    8 * per_pixel.saturating_sub(per_vector) >= end_tiles
}

/// The most taps of any phase.
const fn most_taps(phases: &[PhasePlan]) -> usize {
    let (mut index, mut most) = (0, 0);
    while index < phases.len() {
        if phases[index].taps.len() > most {
            most = phases[index].taps.len();
        }
        index += 1;
    }
    most
}

/// Whether some phase has more than one tap.
const fn several_taps(phases: &[PhasePlan]) -> bool {
    let mut index = 0;
    while index < phases.len() {
        if phases[index].taps.len() > 1 {
            return true;
        }
        index += 1;
    }
    false
}

/// The kernel specialised to `T`'s taps, compiled for `S`.
fn specialised<T: TapList, S: Simd, const OCB: usize, const WV: usize, const CP: usize>(
    simd: S,
) -> Selected {
    Selected {
        multi_row: Specialised::<T, OCB, WV, CP>::MULTI_ROW,
        ..blocked::<Specialised<T, OCB, WV, CP>, S>(simd, OCB, WV, CP)
    }
}

/// The kernel vectorised along output channels, `PX` pixels by `CV` vectors, compiled for
/// `S`: one column phase per call, whatever the geometry's pairing.
fn channel_vectors<T: TapList, S: Simd, const CV: usize, const PX: usize>(simd: S) -> Selected {
    Selected {
        kernel: Compiled::new::<ChannelVectors<T, CV, PX>, S>(simd),
        block: CV * S::LANES,
        tile: PX,
        column_phases: 1,
        multi_row: T::PHASES.len() == 1,
        strip: super::channel_vectors::strip_pixels(CV * S::LANES, PX),
    }
}

/// Kernel `K`, of `block` output channels by `vectors` vectors and `column_phases` column
/// phases, compiled for `S`.
pub(super) fn blocked<K: crate::isa::Kernel<RowFamily>, S: Simd>(
    simd: S,
    block: usize,
    vectors: usize,
    column_phases: usize,
) -> Selected {
    Selected {
        kernel: Compiled::new::<K, S>(simd),
        block,
        tile: vectors * S::LANES,
        column_phases,
        multi_row: false,
        strip: 0,
    }
}

/// The portable set's kernels, which take their taps at run time: plain functions, so
/// compiled once, in this crate, whatever the geometries. The portable set is the fallback
/// for CPUs without the vector units the specialised kernels target, so its speed is not
/// worth the compile time of specialising it for every geometry.
mod portable {
    use super::*;
    use crate::isa::Portable;

    pub(super) fn wide() -> Selected {
        blocked::<RunTimeRow<4, 1, 1>, _>(Portable, 4, 1, 1)
    }

    pub(super) fn narrow() -> Selected {
        blocked::<RunTimeRow<1, 2, 1>, _>(Portable, 1, 2, 1)
    }

    pub(super) fn wide_paired() -> Selected {
        blocked::<RunTimeRow<4, 1, 2>, _>(Portable, 4, 1, 2)
    }

    pub(super) fn narrow_paired() -> Selected {
        blocked::<RunTimeRow<1, 2, 2>, _>(Portable, 1, 2, 2)
    }
}
