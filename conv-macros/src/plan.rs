//! Stage 3: from a geometry to the exact list of taps each kernel unrolls.
//!
//! Plain Rust, no tokens: this is where the convolution arithmetic lives, and its unit tests
//! pin it down.
//!
//! A *tap* multiplies one weight (`weight`, the index `th * kw + tw` into a `kh x kw` filter)
//! with the input element `row` rows and `col` columns away from a window origin:
//!
//! * **Convolution.** Output `(oh, ow)` has its origin at input `(oh * sh - pad_top,
//!   ow * sw - pad_left)`; tap `(th, tw)` sits at `(th * dh, tw * dw)` from it.
//! * **Transposed convolution.** Output `y` receives input `iy` through kernel row `th` when
//!   `y + pad_top = iy * sh + th * dh`. Writing `y + pad_top = q * sh + r`, only the taps with
//!   `th * dh % sh == r` reach the rows of *phase* `r`, each from input row
//!   `iy = q - th * dh / sh`. So the output splits into `sh x sw` phases, and each phase is a
//!   dense correlation over exactly the taps that reach it, with origin `(q, q')`: no
//!   multiply by an inserted zero, and no per-element test of which taps apply (XNNPACK calls
//!   this "subconvolution"). Columns work the same way.

use crate::validate::Geometry;

/// One unrolled tap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tap {
    /// Index of the weight within one `kh x kw` filter: `th * kw + tw`.
    pub weight: usize,
    /// Input rows from the window origin.
    pub row: isize,
    /// Input columns from the window origin.
    pub col: isize,
}

/// The taps of one output phase, with the range of offsets they read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Phase {
    /// Output rows `y` with `(y + pad_top) % stride_h == row_phase` belong to this phase.
    pub row_phase: usize,
    /// Output columns `x` with `(x + pad_left) % stride_w == col_phase` belong to this phase.
    pub col_phase: usize,
    pub taps: Vec<Tap>,
}

/// Smallest and largest offset (inclusive) that a set of taps reads, per axis. An output
/// whose window origin keeps both ends inside the input needs no bounds check: that is the
/// interior region. `None` when there are no taps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    pub rows: (isize, isize),
    pub cols: (isize, isize),
}

impl Phase {
    pub fn extent(&self) -> Option<Extent> {
        let rows = self.taps.iter().map(|tap| tap.row);
        let cols = self.taps.iter().map(|tap| tap.col);
        Some(Extent {
            rows: (rows.clone().min()?, rows.max()?),
            cols: (cols.clone().min()?, cols.max()?),
        })
    }
}

/// Everything `emit` needs to write the kernels of one geometry.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The convolution: one phase, every tap, in row-major filter order.
    pub forward: Phase,
    /// The transposed convolution: `stride_h * stride_w` phases, ordered row phase first.
    /// Together they hold every tap exactly once; a phase no tap reaches is empty (its
    /// outputs are the bias alone).
    pub transposed: Vec<Phase>,
}

impl Plan {
    pub fn new(geometry: &Geometry) -> Plan {
        let [kh, kw] = geometry.kernel;
        let [dh, dw] = geometry.dilation;
        let [sh, sw] = geometry.stride;

        let forward = Phase {
            row_phase: 0,
            col_phase: 0,
            taps: (0..kh)
                .flat_map(|th| {
                    (0..kw).map(move |tw| Tap {
                        weight: th * kw + tw,
                        row: offset(th * dh),
                        col: offset(tw * dw),
                    })
                })
                .collect(),
        };

        let row_phases = axis_phases(kh, dh, sh);
        let col_phases = axis_phases(kw, dw, sw);
        let mut transposed = Vec::with_capacity(sh * sw);
        for (row_phase, rows) in row_phases.iter().enumerate() {
            for (col_phase, cols) in col_phases.iter().enumerate() {
                let taps = rows
                    .iter()
                    .flat_map(|&(th, row)| {
                        cols.iter().map(move |&(tw, col)| Tap {
                            weight: th * kw + tw,
                            row,
                            col,
                        })
                    })
                    .collect();
                transposed.push(Phase {
                    row_phase,
                    col_phase,
                    taps,
                });
            }
        }
        Plan {
            forward,
            transposed,
        }
    }
}

/// For one axis of a transposed convolution: for each phase `r` in `0..stride`, the kernel
/// indices that reach it, each with its input offset `-(t * dilation / stride)`.
fn axis_phases(kernel: usize, dilation: usize, stride: usize) -> Vec<Vec<(usize, isize)>> {
    let mut phases = vec![Vec::new(); stride];
    for t in 0..kernel {
        let reach = t * dilation;
        phases[reach % stride].push((t, -offset(reach / stride)));
    }
    phases
}

/// Offsets are bounded by `MAX_VALUE * MAX_TAPS`, far inside `isize` on every target that
/// can run a convolution.
fn offset(value: usize) -> isize {
    isize::try_from(value).expect("validated geometry keeps offsets small")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geometry(kernel: [usize; 2], stride: [usize; 2], dilation: [usize; 2]) -> Geometry {
        Geometry {
            kernel,
            stride,
            pad_before: [0, 0],
            pad_after: [0, 0],
            dilation,
            output_padding: [0, 0],
            same: false,
            causal: false,
            padding_mode: Default::default(),
            rank: crate::validate::Rank::Two,
        }
    }

    #[test]
    fn forward_taps_are_dilated_offsets_in_filter_order() {
        let plan = Plan::new(&geometry([3, 3], [1, 1], [2, 2]));
        let offsets: Vec<_> = plan.forward.taps.iter().map(|t| (t.row, t.col)).collect();
        assert_eq!(
            offsets,
            [
                (0, 0),
                (0, 2),
                (0, 4),
                (2, 0),
                (2, 2),
                (2, 4),
                (4, 0),
                (4, 2),
                (4, 4)
            ]
        );
        let weights: Vec<_> = plan.forward.taps.iter().map(|t| t.weight).collect();
        assert_eq!(weights, (0..9).collect::<Vec<_>>());
        assert_eq!(
            plan.forward.extent(),
            Some(Extent {
                rows: (0, 4),
                cols: (0, 4)
            })
        );
    }

    #[test]
    fn stride_two_kernel_two_splits_into_four_single_tap_phases() {
        // The seed's upconvolution: each output pixel is reached by exactly one tap.
        let plan = Plan::new(&geometry([2, 2], [2, 2], [1, 1]));
        assert_eq!(plan.transposed.len(), 4);
        for (index, phase) in plan.transposed.iter().enumerate() {
            assert_eq!((phase.row_phase, phase.col_phase), (index / 2, index % 2));
            assert_eq!(
                phase.taps,
                [Tap {
                    weight: index,
                    row: 0,
                    col: 0
                }]
            );
        }
    }

    #[test]
    fn stride_two_kernel_four_gives_two_taps_per_axis_per_phase() {
        // DCGAN's 4x4 stride-2 upconvolution.
        let plan = Plan::new(&geometry([4, 4], [2, 2], [1, 1]));
        let phase = &plan.transposed[0];
        let taps: Vec<_> = phase
            .taps
            .iter()
            .map(|t| (t.weight, t.row, t.col))
            .collect();
        // Kernel rows 0 and 2 reach row phase 0, from input rows q and q - 1.
        assert_eq!(
            taps,
            [(0, 0, 0), (2, 0, -1), (8, -1, 0), (10, -1, -1)],
            "phase (0, 0)"
        );
        assert_eq!(
            phase.extent(),
            Some(Extent {
                rows: (-1, 0),
                cols: (-1, 0)
            })
        );
        let odd: Vec<_> = plan.transposed[3].taps.iter().map(|t| t.weight).collect();
        assert_eq!(odd, [5, 7, 13, 15], "phase (1, 1)");
    }

    #[test]
    fn stride_larger_than_kernel_leaves_phases_empty() {
        let plan = Plan::new(&geometry([2, 1], [3, 2], [1, 1]));
        let sizes: Vec<_> = plan.transposed.iter().map(|p| p.taps.len()).collect();
        // Row phases 0 and 1 each get one kernel row, phase 2 none; column phase 1 none.
        assert_eq!(sizes, [1, 0, 1, 0, 0, 0]);
        assert_eq!(plan.transposed[1].extent(), None);
    }

    #[test]
    fn dilation_sharing_a_factor_with_stride_skips_phases() {
        // Dilation 2 with stride 2: every tap lands on even rows, odd phases stay empty.
        let plan = Plan::new(&geometry([3, 1], [2, 1], [2, 1]));
        let rows: Vec<_> = plan.transposed[0].taps.iter().map(|t| t.row).collect();
        assert_eq!(rows, [0, -1, -2]);
        assert!(plan.transposed[1].taps.is_empty());
    }

    #[test]
    fn every_tap_lands_in_exactly_one_phase() {
        for (kernel, stride, dilation) in [
            ([3, 5], [2, 3], [1, 2]),
            ([7, 2], [3, 1], [3, 4]),
            ([1, 1], [4, 4], [1, 1]),
            ([9, 9], [3, 3], [1, 1]),
        ] {
            let geometry = geometry(kernel, stride, dilation);
            let plan = Plan::new(&geometry);
            let mut seen: Vec<_> = plan
                .transposed
                .iter()
                .flat_map(|phase| phase.taps.iter().map(|tap| tap.weight))
                .collect();
            seen.sort_unstable();
            assert_eq!(seen, (0..kernel[0] * kernel[1]).collect::<Vec<_>>());
            // And each tap sits where the scatter form of the transposed convolution puts it.
            for phase in &plan.transposed {
                for tap in &phase.taps {
                    let (th, tw) = (tap.weight / kernel[1], tap.weight % kernel[1]);
                    let reach_h = offset(th * dilation[0]);
                    let reach_w = offset(tw * dilation[1]);
                    assert_eq!(
                        reach_h,
                        -tap.row * offset(stride[0]) + offset(phase.row_phase)
                    );
                    assert_eq!(
                        reach_w,
                        -tap.col * offset(stride[1]) + offset(phase.col_phase)
                    );
                }
            }
        }
    }
}
