//! The kernel families against the naive reference: every blocking the selection can
//! choose, the work splits, and each family made for a kind of layer (depthwise planes,
//! Winograd tiles, phases and lattices, the one-tap and two-tap families), at the sizes and
//! channel counts where each changes its path, on every instruction set the machine
//! supports. The sampled grid of geometries is in `geometry_grid.rs`.

mod kernel_checks;

use kernel_checks::*;

// The geometries several tests share, each defined once: every `conv!` is a type of its
// own, and every type compiles its kernel families' instances for every instruction set
// again (defined once, this crate's 52 types became 38 and its instances 510 -> 423, 11.4
// -> 10.2 MB of code in the test profile).
conv! { struct SeedDilated; k = 3, dilation = 2, padding = 2 }
conv! { struct TwoByTwoStride2; k = 2, stride = 2 }
conv! { struct DcganUp; k = 4, stride = 2, padding = 1 }
conv! { struct Plain3x3; k = 3 }
conv! { struct Padded3x3; k = 3, padding = 1 }
conv! { struct Reflect3x3; k = 3, padding = 1, padding_mode = reflect }
conv! { struct ContextD4; k = 3, dilation = 4, padding = 4 }
conv! { struct DownS2; k = 3, stride = 2, padding = 1 }
conv! { struct SrX3; k = 9, stride = 3, padding = 3 }

/// Every blocking the kernel selection can choose, on every instruction set: output channels
/// per group from 1 to 9, 16, 17 and 33 cross each threshold (narrow, the blockings made for
/// three, wide, the widest, the kernels vectorised along output channels with full and
/// partial blocks), for a convolution, stride-2 transposed convolutions with several taps
/// per phase and with one (the paired and channel-vectorised kernels), and an unpaired
/// stride-3 one, at widths around whole tiles; the stride-2 and stride-3 convolutions reach
/// the blocking of strided convolutions. On AVX2 (and AVX-512, from 32 channels), the
/// transposed `k = 4, stride = 2` layer of at least 16 channels takes its one-phase kernel at
/// widths 16 and 32 (phase rows of whole tiles) and the channel-vectorised one for rows too
/// short (width 1) or filling too little of their tiles (width 34).
#[test]
fn every_blocking_on_every_instruction_set() {
    fn check<G: ZeroPadded>(geometry: G) {
        let out_per_group: Vec<usize> = (1..=9).chain([16, 17, 33]).collect();
        check_sizes(geometry, (2, 3, 2), &out_per_group, &[0, 15, 31, 33]);
    }
    check(SeedDilated);
    check(DcganUp);
    check(TwoByTwoStride2);
    check(conv!(k = 3, stride = 3, padding = 1));
}

/// Where the padding is a vector wide or more, the tiles at a row's ends leave out the vectors
/// of a tap that read only padding (aspp-d12's dilation and padding 12) in the blockings of
/// four or more output channels, and where it is wide but less than a 16-lane vector,
/// AVX-512's kernel vectorised along output channels leaves out the pixels that do: the
/// reference's numbers for convolutions and transposed convolutions on every instruction
/// set, at widths around whole vectors and tiles of 8 and 16 lanes (rows of one tile, whose
/// first tile is also its last, and of several), for the blockings of one and three output
/// channels (which compute the padding), four, eight and sixteen, and full and partial
/// blocks of the channel-vectorised kernel of two vectors (16, 17: its second vector empty
/// or nearly; 32: full; 33: a full block and one of a single channel); padding 20
/// reaches a whole 16-lane vector, padding 24 with dilation 8 is wider than the filter (a
/// tap wholly in it), and `same` padding of an even filter is uneven. Every padding here is
/// wider than the 8-pixel tiles (and 20 and 24 than the 16-pixel ones) of the
/// channel-vectorised kernels, whose tiles next to the end tiles then leave out pixels too,
/// in rows of one to a dozen tiles. Taller inputs give
/// those kernels calls of several rows, whose strips of running sums end within a row or
/// hold several.
#[test]
fn taps_reading_only_padding_are_left_out() {
    fn check<G: ZeroPadded>(geometry: G) {
        let extra_w = [0, 7, 8, 15, 16, 17, 31, 32, 33, 48, 64, 65];
        check_sizes(geometry, (1, 2, 1), &[1, 3, 4, 8, 16, 17, 32, 33], &extra_w);
        check_sizes(geometry, (1, 2, 19), &[16, 33], &[0, 9, 65]);
    }
    check(conv!(k = 3, dilation = 12, padding = 12));
    check(conv!(k = 3, dilation = 20, padding = 20));
    check(conv!(k = 3, dilation = 8, padding = 24));
    check(conv!(k = (1, 4), dilation = (1, 9), padding = same));
}

/// Large layers are split among threads by group, by runs of output rows and, where a group
/// has fewer rows than pieces of work wanted, by blocks of output channels as well; a layer
/// whose weights outweigh its input is split by blocks first and runs each block's rows
/// before the next block: every split and order gives the reference's numbers, on every
/// instruction set.
#[test]
fn every_work_split_matches_the_reference() {
    fn spec_of<G: Geometry>(_: G) -> GeometrySpec {
        G::SPEC
    }
    let geometry = Plain3x3;
    // Output heights 1 and 2 (fewer rows than pieces of work: blocks are split too) and 37
    // (rows split unevenly); enough channels and columns that every layer runs in parallel.
    // The last has 37K weights and a 15K-float input: blocks outermost.
    let sizes = [
        (0u64, (3, 800), 1, (24, 36)),
        (1, (4, 1800), 3, (24, 36)),
        (2, (39, 40), 2, (24, 36)),
        (3, (8, 12), 1, (64, 64)),
    ];
    for (case, (h, w), groups, (in_channels, out_channels)) in sizes {
        let x = random_array((1, in_channels, h, w), case);
        let weight = random_array((out_channels, in_channels / groups, 3, 3), case ^ 7);
        let bias: Option<Array1<f32>> = Some(random_array(out_channels, case ^ 9));
        let spec = spec_of(geometry);
        let expected = reference::conv2d(&x, &weight, bias.as_ref(), &spec, groups).unwrap();
        matches_everywhere(
            conv2d(geometry, (&weight, &bias, groups)),
            &x.view(),
            &expected,
            &format!("groups {groups}, input {h}x{w}"),
        );
    }
}

/// A small input on several threads (enough work for the pool, too few floats to lay out
/// in parallel) is laid out by each thread into a copy of its own, once per image: batches
/// of two (each image its own copy), either layout, both directions, at one thread and at
/// three: the reference's numbers, on every instruction set.
#[test]
fn small_inputs_laid_out_per_thread_match_the_reference() {
    let geometry = SeedDilated;
    // The seed layer's shape: 3 channels into 16 (too few for the Winograd family), 1.8M
    // multiply-adds an image, 12K floats of input.
    for case in 0..2 {
        let weight = random_array((16, 3, 3, 3), case ^ 7);
        let bias: Option<Array1<f32>> = Some(random_array(16, case ^ 9));
        conv_matches_in_either_layout(geometry, (&weight, &bias, 1), (2, 64, 61), case);
        // Its transposed convolution from 16 channels of 40x37 (the same weight, 16 in and
        // 3 out): 0.7M multiply-adds, 24K floats.
        let bias: Option<Array1<f32>> = Some(random_array(3, case ^ 11));
        let shape = (2, 16, 40, 37);
        largest_output_matches(geometry, (&weight, &bias), shape, case);
    }
}

/// Depthwise convolutions of stride 1 run the plane kernel: widths around whole vectors and
/// whole chunks of every instruction set (8 and 16 lanes, chunks of 64 and 128 columns, rows
/// of half a chunk or less two at a time, bands of 16 or 64 columns), one row and many, odd
/// and even counts, filters three and five rows tall in bands of rows one, two or three rows
/// apart with rows left over in each class, symmetric, asymmetric (`same` of an even kernel) and
/// wider-than-kernel padding, a padding mode, batches, a strided input, one thread and three:
/// the reference's numbers, on every instruction set.
#[test]
fn depthwise_planes_match_the_reference() {
    fn check<G: Geometry>(geometry: G) {
        let spec = G::SPEC;
        let (kh, kw) = spec.kernel_size;
        let channels = 3;
        let min = smallest_input(&spec);
        for (case, (h, w)) in [
            (0, 0),
            (1, 7),
            (4, 8),
            (0, 57),
            (9, 63),
            (2, 64),
            (3, 65),
            (1, 130),
            (12, 20),
            (17, 33),
        ]
        .into_iter()
        .enumerate()
        {
            let (h, w) = (min.0 + h, min.1 + w);
            let case = case as u64;
            let weight = random_array((channels, 1, kh, kw), case ^ 7);
            let bias: Option<Array1<f32>> = Some(random_array(channels, case ^ 9));
            conv_matches_in_either_layout(geometry, (&weight, &bias, channels), (2, h, w), case);
        }
    }
    check(SeedDilated);
    check(conv!(k = 4, padding = same, dilation = 2));
    check(conv!(k = (1, 5), padding = (3, 6)));
    check(Reflect3x3);
    check(conv!(k = (3, 2), dilation = (3, 1), padding = (4, 0)));
    check(conv!(k = 5, padding = 2));
}

/// 3x3 convolutions of stride 1 with many channels run the Winograd kernel (2x2 output
/// tiles), and so do the transposed convolutions of that geometry (the filters turned
/// around, padding 2 * dilation - p): odd and even output sizes (a last tile half outside
/// the output), widths around whole blocks of tiles on every instruction set (16 and 32
/// tiles), no padding, padding 1 and padding wider than the kernel (convolution), 0, 1 and 2
/// (transposed), a padding mode, output channels not a multiple of the kernel's step (a last
/// step of a few live channels taken as a smaller one, and of more as a whole one), batches, a strided input, one thread and three: the reference's numbers, on every
/// instruction set. Dilated, they run on the lattice's classes side by side where those
/// fill the kernel's blocks (dilation 2 and 4 up to 64 columns, uneven classes where the
/// size is not a multiple of the dilation, padding not a multiple of it, dilations that
/// differ between rows and columns) and as before elsewhere (the widest inputs).
#[test]
fn winograd_tiles_match_the_reference() {
    /// Input sizes beyond the smallest.
    const SIZES: &[(usize, usize)] = &[
        (0, 0),
        (1, 6),
        (2, 29),
        (5, 30),
        (4, 31),
        (3, 62),
        (0, 64),
        (1, 65),
    ];
    /// For dilated layers, more rows: the lattice's classes fill the kernel's blocks only
    /// where they have a few tile rows each.
    const DILATED: &[(usize, usize)] = &[(20, 62), (15, 63), (9, 60), (21, 30), (4, 66)];
    /// For each case: its input size beyond the smallest, input and output channels.
    fn cases(
        sizes: &'static [(usize, usize)],
    ) -> impl Iterator<Item = (u64, (usize, usize), (usize, usize))> {
        sizes.iter().copied().enumerate().map(|(case, size)| {
            let case = case as u64;
            // 18 and 23 output channels end AVX-512's steps of eight with a step of four
            // (two live channels) and a whole step (seven).
            let channels = match case % 3 {
                0 => (16, 18),
                1 => (19, 16),
                _ => (17, 23),
            };
            (case, size, channels)
        })
    }
    fn conv<G: Geometry>(geometry: G, sizes: &'static [(usize, usize)]) {
        let min = smallest_input(&G::SPEC);
        for (case, (h, w), (in_channels, out_channels)) in cases(sizes) {
            let weight = random_array((out_channels, in_channels, 3, 3), case ^ 7);
            let bias: Option<Array1<f32>> = Some(random_array(out_channels, case ^ 9));
            let size = (2, min.0 + h, min.1 + w);
            conv_matches_in_either_layout(geometry, (&weight, &bias, 1), size, case);
        }
    }
    fn transposed<G: ZeroPadded>(geometry: G, sizes: &'static [(usize, usize)]) {
        let spec = G::SPEC;
        let min = spec.transposed_min_input_size();
        for (case, (h, w), (in_channels, out_channels)) in cases(sizes) {
            let weight = random_array((in_channels, out_channels, 3, 3), case ^ 7);
            let bias: Option<Array1<f32>> = Some(random_array(out_channels, case ^ 9));
            let reference = |x: &Array4<f32>| {
                reference::conv_transpose2d(x, &weight, bias.as_ref(), &spec, 1, None).unwrap()
            };
            let run = conv_transpose2d(geometry, (&weight, &bias, 1));
            let shape = (2, in_channels, min.0 + h, min.1 + w);
            let what = format!("{spec} transposed");
            matches_in_either_layout(run, reference, shape, case, &what);
        }
    }
    conv(Padded3x3, SIZES);
    conv(Plain3x3, SIZES);
    conv(conv!(k = 3, padding = 4), SIZES);
    conv(Reflect3x3, SIZES);
    conv(SeedDilated, DILATED);
    conv(ContextD4, DILATED);
    conv(conv!(k = 3, dilation = (3, 2), padding = (1, 5)), DILATED);
    transposed(Plain3x3, SIZES);
    transposed(Padded3x3, SIZES);
    transposed(conv!(k = 3, padding = 2), SIZES);
    transposed(ContextD4, DILATED);
    transposed(conv!(k = 3, dilation = (2, 3), padding = (1, 6)), DILATED);
}

/// Strided layers whose filter is three strides wide run the Winograd kernel on all their
/// phases at once, transposed convolutions on their output's phases, convolutions on their
/// input's: strides 2 and 3 and a different one per axis, paddings that are multiples of the
/// stride and paddings that are not (phases starting a grid index apart), up to the widest
/// the transposed family takes and beyond a filter's width for the convolution, output
/// padding and the largest output asked for at run time (phases of uneven lengths), a
/// padding mode, few channels (sr-x3's three, nine phases), batches, a strided input, one
/// thread and three: the reference's numbers, on every instruction set.
#[test]
fn winograd_phases_match_the_reference() {
    fn check<G: ZeroPadded>(geometry: G, out_channels: usize) {
        let spec = G::SPEC;
        let (kh, kw) = spec.kernel_size;
        let min = spec.transposed_min_input_size();
        let sizes = [(0, 0), (1, 6), (2, 29), (5, 30), (3, 33)];
        for (case, (h, w)) in sizes.into_iter().enumerate() {
            let case = case as u64;
            let in_channels = 16 + case as usize % 3;
            let weight = random_array((in_channels, out_channels, kh, kw), case ^ 7);
            let bias: Option<Array1<f32>> = Some(random_array(out_channels, case ^ 9));
            let shape = (2, in_channels, min.0 + h, min.1 + w);
            let what = format!("{spec} transposed");
            let reference = |x: &Array4<f32>| {
                reference::conv_transpose2d(x, &weight, bias.as_ref(), &spec, 1, None).unwrap()
            };
            let run = conv_transpose2d(geometry, (&weight, &bias, 1));
            matches_in_either_layout(run, reference, shape, case, &what);
            largest_output_matches(geometry, (&weight, &bias), shape, case);
        }
    }
    check(SrX3, 3);
    check(conv!(k = 6, stride = 2, padding = 1), 4);
    check(conv!(k = 6, stride = 2, padding = 5, output_padding = 1), 5);
    check(conv!(k = (6, 9), stride = (2, 3), padding = (2, 7)), 3);
    fn conv<G: Geometry>(geometry: G, in_channels: usize) {
        let spec = G::SPEC;
        let (kh, kw) = spec.kernel_size;
        let min = smallest_input(&spec);
        let sizes = [(0, 0), (1, 6), (2, 29), (5, 30), (3, 33)];
        for (case, (h, w)) in sizes.into_iter().enumerate() {
            let case = case as u64;
            let out_channels = 16 + case as usize % 3;
            let weight = random_array((out_channels, in_channels, kh, kw), case ^ 7);
            let bias: Option<Array1<f32>> = Some(random_array(out_channels, case ^ 9));
            let size = (2, min.0 + h, min.1 + w);
            conv_matches_in_either_layout(geometry, (&weight, &bias, 1), size, case);
        }
    }
    conv(SrX3, 3);
    conv(conv!(k = 6, stride = 2), 4);
    conv(conv!(k = 6, stride = 2, padding = 7), 5);
    conv(conv!(k = (6, 9), stride = (2, 3), padding = (3, 1)), 3);
    conv(
        conv!(k = 6, stride = 2, padding = 2, padding_mode = reflect),
        4,
    );
}

/// 3x3 convolutions of stride 2 with many channels run the strided Winograd kernel (2x2
/// output tiles from 5x5 input tiles, two tile rows a call) on the sets of 32 registers: odd
/// and even output sizes (a last tile half outside the output, a last tile row of one output
/// row, a last call of one tile row or of two whole ones), widths
/// around whole blocks of tiles (16 and 32 tiles), no padding, padding 1, 2 and wider than
/// the filter, different paddings per axis, a padding mode, output channels not a multiple
/// of the kernel's step of eight, batches, a strided input, one thread and three: the
/// reference's numbers, on every instruction set.
#[test]
fn winograd_strided_tiles_match_the_reference() {
    fn check<G: Geometry>(geometry: G) {
        let min = smallest_input(&G::SPEC);
        let sizes = [
            (0, 0),
            (1, 6),
            (2, 29),
            (5, 62),
            (4, 65),
            (1, 130),
            (9, 20),
            (13, 3),
        ];
        for (case, (h, w)) in sizes.into_iter().enumerate() {
            let case = case as u64;
            let (in_channels, out_channels) = if case.is_multiple_of(2) {
                (16, 19)
            } else {
                (18, 16)
            };
            let weight = random_array((out_channels, in_channels, 3, 3), case ^ 7);
            let bias: Option<Array1<f32>> = Some(random_array(out_channels, case ^ 9));
            let size = (2, min.0 + h, min.1 + w);
            conv_matches_in_either_layout(geometry, (&weight, &bias, 1), size, case);
        }
    }
    check(DownS2);
    check(conv!(k = 3, stride = 2));
    check(conv!(k = 3, stride = 2, padding = 2));
    check(conv!(k = 3, stride = 2, padding = 4));
    check(conv!(k = 3, stride = 2, padding = (0, 1)));
    check(conv!(
        k = 3,
        stride = 2,
        padding = 1,
        padding_mode = reflect
    ));
}

/// Transposed convolutions of a 2x2 filter of stride 2 run the pixel kernel (each input
/// pixel's four outputs): one to seven output channels per group, read in place, and 16 or
/// more, read from a copy of each call's rows (blocks of one and of three, a last block
/// partly empty), one input channel and
/// several, two groups, widths around whole vectors and tiles of every instruction set (4, 8
/// and 16 lanes, tiles of one and two vectors: a row's last tile partial or whole, a row of
/// only a partial tile), one row and many, batches, a strided input, one thread and three:
/// the reference's numbers, on every instruction set; and so is an output one row and one
/// column larger, asked for at run time, which the row kernel runs.
#[test]
fn one_tap_pixels_match_the_reference() {
    let geometry = TwoByTwoStride2;
    let spec = geometry.spec();
    let sizes = [(1, 1), (3, 7), (2, 16), (5, 17), (1, 31), (40, 33), (4, 64)];
    for (case, (h, w)) in sizes.into_iter().enumerate() {
        let case = case as u64;
        let pairs = [(1, 1), (5, 2), (16, 3), (3, 4), (4, 7), (3, 17), (17, 16)];
        for (in_per_group, out_per_group) in pairs {
            for groups in [1, 2] {
                let in_channels = in_per_group * groups;
                let weight = random_array((in_channels, out_per_group, 2, 2), case ^ 7);
                let bias: Option<Array1<f32>> =
                    Some(random_array(out_per_group * groups, case ^ 9));
                let shape = (2, in_channels, h, w);
                let what = format!(
                    "{spec} transposed, {groups} groups of {in_per_group} to {out_per_group}"
                );
                let reference = |x: &Array4<f32>| {
                    reference::conv_transpose2d(x, &weight, bias.as_ref(), &spec, groups, None)
                        .unwrap()
                };
                let run = conv_transpose2d(geometry, (&weight, &bias, groups));
                matches_in_either_layout(run, reference, shape, case, &what);
            }
        }
        let weight = random_array((3, 3, 2, 2), case ^ 5);
        let bias: Option<Array1<f32>> = Some(random_array(3, case ^ 3));
        largest_output_matches(geometry, (&weight, &bias), (1, 3, h, w), case);
    }
}

/// Transposed convolutions and convolutions whose filter is two strides wide, with 16 or
/// more channels in and out, run the two-tap family (F(2x2, 2x2) on each output phase, or
/// on the input's phases): strides 1, 2 and 3 and unequal ones, with padding of less than
/// a stride, a stride and more, output padding, channel counts around the 16 the family
/// pads them to, the smallest input and odd sizes (a phase's last tile half outside the
/// output), blocks of tiles whole and partial, rows of more tiles than a block (cut into
/// pieces), batches, a strided input, one thread and three: the reference's numbers, on
/// every instruction set; and so is the largest transposed output asked for at run time.
#[test]
fn two_tap_matches_the_reference() {
    fn check<G: ZeroPadded>(geometry: G) {
        let spec = G::SPEC;
        let (kh, kw) = spec.kernel_size;
        let sizes = [(1, 1), (2, 3), (5, 8), (9, 17), (16, 16), (7, 33), (2, 300)];
        for (case, (h, w)) in sizes.into_iter().enumerate() {
            let case = case as u64;
            let min = spec.transposed_min_input_size();
            let (th, tw) = (h + min.0 - 1, w + min.1 - 1);
            let min = spec.min_input_size();
            let (ch, cw) = (h + min.0 - 1, w + min.1 - 1);
            for (in_channels, out_channels) in [(16, 16), (17, 20), (20, 33)] {
                let weight = random_array((in_channels, out_channels, kh, kw), case ^ 7);
                let bias: Option<Array1<f32>> = Some(random_array(out_channels, case ^ 9));
                let reference = |x: &Array4<f32>| {
                    reference::conv_transpose2d(x, &weight, bias.as_ref(), &spec, 1, None).unwrap()
                };
                let run = conv_transpose2d(geometry, (&weight, &bias, 1));
                let what = format!("{spec} transposed, {in_channels} to {out_channels}");
                matches_in_either_layout(run, reference, (2, in_channels, th, tw), case, &what);
                // The convolution's outputs sum `kh * kw` products per channel, the
                // transposed one's 4: its filters are scaled to outputs of the same size (as
                // initialisation scales filters by their fan-in), since the tolerance is
                // absolute.
                let scale = (4.0 / (kh * kw) as f32).sqrt();
                let weight = random_array((out_channels, in_channels, kh, kw), case ^ 11) * scale;
                conv_matches_in_either_layout(geometry, (&weight, &bias, 1), (2, ch, cw), case);
            }
            let weight = random_array((16, 18, kh, kw), case ^ 5);
            let bias: Option<Array1<f32>> = Some(random_array(18, case ^ 3));
            largest_output_matches(geometry, (&weight, &bias), (1, 16, th, tw), case);
        }
    }
    check(DcganUp);
    check(conv!(k = 4, stride = 2, padding = 3, output_padding = 1));
    check(conv!(k = 2));
    check(conv!(k = 6, stride = 3, padding = 2));
    check(conv!(k = (4, 6), stride = (2, 3), padding = (0, 4)));
}

/// Convolutions of a 2x2 filter of stride 2 with 16 or more output channels per group run
/// the patch kernel on AVX-512 and NEON (each output pixel from its own 2x2 patch, read in
/// place): whole and partial blocks of 16 channels, one input channel and several, two
/// groups, odd heights and widths (a last input row and column no output reads), output
/// rows of less than a vector, around whole vectors (a last partial vector reading past its
/// row, or through a buffer at the input's end) and of several, batches, a strided input,
/// one thread and three: the reference's numbers, on every instruction set.
#[test]
fn one_tap_patches_match_the_reference() {
    let geometry = TwoByTwoStride2;
    let sizes = [(2, 2), (3, 5), (5, 33), (8, 64), (9, 65), (4, 35), (40, 97)];
    for (case, (h, w)) in sizes.into_iter().enumerate() {
        let case = case as u64;
        for (in_per_group, out_per_group) in [(1, 16), (3, 17), (5, 33)] {
            for groups in [1, 2] {
                let weight = random_array((out_per_group * groups, in_per_group, 2, 2), case ^ 7);
                let bias: Option<Array1<f32>> =
                    Some(random_array(out_per_group * groups, case ^ 9));
                let weights = (&weight, &bias, groups);
                conv_matches_in_either_layout(geometry, weights, (2, h, w), case);
            }
        }
    }
}

/// Convolutions with one output channel per group run several output rows per kernel call
/// where a row is little work: at every height (one row, a few, more rows than a call takes,
/// rows split unevenly among threads), stride 1 (two input channels per group; with one,
/// the plane kernel runs it) and 2, with and without padding rows, every call's rows give
/// the reference's numbers, on every instruction set.
#[test]
fn multi_row_calls_match_the_reference() {
    fn check<G: Geometry>(geometry: G, in_per_group: usize) {
        let spec = G::SPEC;
        let channels = 5;
        for (case, (h, w)) in [(1, 1), (2, 9), (37, 17), (70, 3), (41, 40)]
            .into_iter()
            .enumerate()
        {
            let (h, w) = (
                h + spec.min_input_size().0 - 1,
                w + spec.min_input_size().1 - 1,
            );
            let case = case as u64;
            let x = random_array((2, channels * in_per_group, h, w), case);
            let weight = random_array((channels, in_per_group, 3, 3), case ^ 7);
            let bias: Option<Array1<f32>> = Some(random_array(channels, case ^ 9));
            let expected = reference::conv2d(&x, &weight, bias.as_ref(), &spec, channels).unwrap();
            matches_everywhere(
                conv2d(geometry, (&weight, &bias, channels)),
                &x.view(),
                &expected,
                &format!("{spec}, input {h}x{w}"),
            );
        }
    }
    check(SeedDilated, 2);
    check(DownS2, 1);
}
