//! A layer's operation, ready to run: the row kernel chosen for its geometry and instruction
//! set, the weights packed for that kernel, and the bias; for a depthwise convolution of
//! stride 1, the plane kernel's packing, for a 3x3 convolution with many channels, the
//! Winograd kernel's, for a 2x2 layer of stride 2 without padding, the one-tap family's, and
//! for a layer whose filter is two strides wide, the two-tap family's, which run it
//! instead.

use std::mem::MaybeUninit;

use ndarray::{Array1, Array4, ArrayBase, ArrayView4, ArrayViewMut4, Data, DataMut, Ix4};

use super::driver;
use super::packed::PackedWeights;
use super::select::{Choice, Selected, select};
use super::{Forward, RunTimeTaps, TapList, Transposed};
use crate::isa::Isa;
use crate::kernels::depthwise::Depthwise;
use crate::kernels::one_tap::OneTap;
use crate::kernels::pool;
use crate::kernels::two_tap::TwoTap;
use crate::kernels::winograd::Winograd;
use crate::memory::aligned::uninit_aligned;
use crate::shape::geometry::{Geometry, GeometrySpec};

/// One direction of a layer, packed for its kernels. Everything a call needs besides the
/// input and the output.
#[derive(Clone)]
pub(crate) struct Engine {
    pub(super) spec: GeometrySpec,
    /// The direction's phases (one for the convolution) and where their taps read.
    pub(super) taps: RunTimeTaps,
    /// Zeros on the left of each prepared row, before column 0 of the input.
    pub(super) input_shift: usize,
    /// The row kernel and the weights packed for it.
    pub(super) rows: Blocked,
    /// A second row kernel, with its own packing, for transposed convolutions whose phase
    /// rows are too short for the first's tiles ([`Choice::short_rows`]).
    pub(super) short_rows: Option<Blocked>,
    /// One per output channel, zeros when the layer has no bias.
    pub(super) bias: Vec<f32>,
    pub(super) groups: usize,
    pub(super) transposed: bool,
    /// Runs the operation in place of the row kernel where it is a depthwise convolution
    /// of stride 1.
    depthwise: Option<Depthwise>,
    /// Runs the operation in place of the row kernel where it is a 3x3 convolution of
    /// stride 1 with many channels.
    winograd: Option<Winograd>,
    /// Runs the operation in place of the row kernel where it is a convolution or a
    /// transposed convolution of a 2x2 filter of stride 2 without padding, on the sets it has
    /// blockings for.
    one_tap: Option<OneTap>,
    /// Runs the operation in place of the row kernel where it is a convolution or a
    /// transposed convolution whose filter is two strides wide, with many channels.
    two_tap: Option<TwoTap>,
}

impl Engine {
    /// The convolution of geometry `G` with `weight` (`[out, in / groups, kh, kw]`), on
    /// `isa` (the portable set where `isa` is not available).
    pub fn conv<G: Geometry>(
        isa: Isa,
        weight: &Array4<f32>,
        bias: Option<&Array1<f32>>,
        groups: usize,
    ) -> Engine {
        let out_channels = weight.dim().0;
        let choice = select::<Forward<G>>(isa, out_channels / groups);
        let pack = |block| PackedWeights::conv(weight.view(), groups, block);
        Engine {
            depthwise: Depthwise::plan(isa, Forward::<G>::SPEC, weight, groups),
            winograd: Winograd::plan(isa, Forward::<G>::SPEC, weight, groups),
            // The one- and two-tap families: decided at compile time where the geometry
            // cannot run them, so that a program none of whose geometries can does not link
            // their kernels.
            one_tap: if const { OneTap::suits_geometry(&Forward::<G>::SPEC) } {
                OneTap::plan_conv(isa, Forward::<G>::SPEC, weight, groups)
            } else {
                None
            },
            two_tap: if const { TwoTap::suits_geometry(&Forward::<G>::SPEC) } {
                TwoTap::plan_conv(isa, Forward::<G>::SPEC, weight, groups)
            } else {
                None
            },
            ..Engine::new::<Forward<G>>(choice, pack, bias, out_channels, groups, false)
        }
    }

    /// The transposed convolution of geometry `G` with `weight` (`[in, out / groups, kh,
    /// kw]`), on `isa` (the portable set where `isa` is not available).
    pub fn transposed<G: Geometry>(
        isa: Isa,
        weight: &Array4<f32>,
        bias: Option<&Array1<f32>>,
        groups: usize,
    ) -> Engine {
        let out_channels = weight.dim().1 * groups;
        let choice = select::<Transposed<G>>(isa, out_channels / groups);
        let pack = |block| PackedWeights::transposed(weight.view(), groups, block);
        Engine {
            winograd: Winograd::plan_transposed(isa, Transposed::<G>::SPEC, weight, groups),
            one_tap: if const { OneTap::suits_geometry(&Transposed::<G>::SPEC) } {
                OneTap::plan(isa, Transposed::<G>::SPEC, weight, groups)
            } else {
                None
            },
            two_tap: if const { TwoTap::suits_geometry(&Transposed::<G>::SPEC) } {
                TwoTap::plan(isa, Transposed::<G>::SPEC, weight, groups)
            } else {
                None
            },
            ..Engine::new::<Transposed<G>>(choice, pack, bias, out_channels, groups, true)
        }
    }

    /// `pack(block)` packs the weights for a kernel of `block` output channels.
    fn new<T: TapList>(
        choice: Choice,
        pack: impl Fn(usize) -> PackedWeights,
        bias: Option<&Array1<f32>>,
        out_channels: usize,
        groups: usize,
        transposed: bool,
    ) -> Engine {
        Engine {
            spec: T::SPEC,
            taps: RunTimeTaps::of::<T>(),
            input_shift: T::INPUT_SHIFT,
            rows: Blocked::new(choice.rows, &pack),
            short_rows: choice.short_rows.map(|kernel| Blocked::new(kernel, &pack)),
            bias: match bias {
                Some(bias) => bias.to_vec(),
                None => vec![0.0; out_channels],
            },
            groups,
            transposed,
            depthwise: None,
            winograd: None,
            one_tap: None,
            two_tap: None,
        }
    }

    /// The instruction set the kernels run on.
    pub fn isa(&self) -> Isa {
        self.rows.kernel.kernel.isa()
    }

    /// Runs the operation on a checked input into an output of the checked shape, any
    /// layouts.
    pub fn run<S: Data<Elem = f32>, T: DataMut<Elem = f32>>(
        &self,
        input: &ArrayBase<S, Ix4>,
        out: &mut ArrayBase<T, Ix4>,
    ) {
        if out.is_standard_layout() {
            let mut out = out.view_mut();
            // SAFETY: the view's elements seen as `MaybeUninit<f32>`, which has the layout of
            // `f32`, with the same (standard) shape; the kernels write only initialised
            // values into it, so `out` stays initialised.
            let mut slots = unsafe {
                ArrayViewMut4::from_shape_ptr(
                    out.raw_dim(),
                    out.as_mut_ptr().cast::<MaybeUninit<f32>>(),
                )
            };
            self.run_standard(&input.view(), &mut slots);
        } else {
            // The kernels write rows in place; a caller's strided view gets a copy.
            let standard = self.run_new(input, out.dim().into());
            out.assign(&standard);
        }
    }

    /// Runs the operation on a checked input into a new standard-layout array of the
    /// checked output shape, starting on a cache line, whose elements are written once, by
    /// the kernels: not zeroed first (zeroing a fresh 2 MB output was about 5% of a
    /// depthwise layer's time).
    pub fn run_new<S: Data<Elem = f32>>(
        &self,
        input: &ArrayBase<S, Ix4>,
        shape: [usize; 4],
    ) -> Array4<f32> {
        let mut out = uninit_aligned(shape);
        // Debug builds (the tests) start from NaN, so that an element the kernels missed
        // fails every comparison with the reference instead of passing by chance.
        if cfg!(debug_assertions) {
            out.fill(MaybeUninit::new(f32::NAN));
        }
        self.run_standard(&input.view(), &mut out.view_mut());
        // SAFETY: `run_standard` writes every element of its standard-layout output: the
        // driver gives the kernels every output row of every channel (every row chunk,
        // channel block and group, and for a transposed convolution every column phase),
        // and a kernel writes every column of its rows (`store_tile`).
        unsafe { out.assume_init() }
    }

    fn run_standard(&self, input: &ArrayView4<f32>, out: &mut ArrayViewMut4<MaybeUninit<f32>>) {
        if out.is_empty() {
            return;
        }
        pool::layer_call(|| self.run_family(input, out));
    }

    /// [`run_standard`](Self::run_standard) by the family that runs the layer.
    fn run_family(&self, input: &ArrayView4<f32>, out: &mut ArrayViewMut4<MaybeUninit<f32>>) {
        if let Some(depthwise) = &self.depthwise {
            depthwise.run(&self.bias, input, out);
        } else if let Some(one_tap) = &self.one_tap
            && one_tap.suits(input.dim(), out.dim())
        {
            one_tap.run(&self.bias, input, out);
        } else if let Some(two_tap) = &self.two_tap {
            two_tap.run(&self.bias, input, out);
        } else if let Some(winograd) = &self.winograd
            && winograd.suits((out.dim().2, out.dim().3))
        {
            winograd.run(&self.bias, input, out);
        } else if self.transposed {
            driver::convolve_transposed(self, input, out);
        } else {
            driver::convolve(self, input, out);
        }
    }
}

/// A row kernel and the layer's weights packed in its blocks.
#[derive(Clone)]
pub(super) struct Blocked {
    pub kernel: Selected,
    pub packed: PackedWeights,
}

impl Blocked {
    fn new(kernel: Selected, pack: impl Fn(usize) -> PackedWeights) -> Blocked {
        Blocked {
            packed: pack(kernel.block),
            kernel,
        }
    }
}
