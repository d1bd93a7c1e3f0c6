//! Weights repacked once, at construction, into the order the row kernel reads them.

use ndarray::ArrayView4;

use crate::memory::aligned::AlignedFloats;

/// A layer's weights as `[group][block][in_channel][tap][lane]`: for each group, the output
/// channels in blocks of `block` (the last block padded with zero weights), and within a
/// block, for each input channel and tap, the `block` weights the kernel broadcasts in turn.
#[derive(Clone, Debug)]
pub(crate) struct PackedWeights {
    data: AlignedFloats,
    /// Output channels per block: the kernel's `OCB`.
    pub block: usize,
    pub blocks_per_group: usize,
    pub in_per_group: usize,
    pub out_per_group: usize,
    block_len: usize,
}

impl PackedWeights {
    /// From a `Conv2d` weight, `[out_channels, in_channels / groups, kh, kw]`.
    pub fn conv(weight: ArrayView4<f32>, groups: usize, block: usize) -> PackedWeights {
        let (out_channels, in_per_group, _, _) = weight.dim();
        let out_per_group = out_channels / groups;
        Self::pack(
            groups,
            in_per_group,
            out_per_group,
            block,
            &weight,
            |g, o, i| (g * out_per_group + o, i),
        )
    }

    /// From a `ConvTranspose2d` weight, `[in_channels, out_channels / groups, kh, kw]`.
    pub fn transposed(weight: ArrayView4<f32>, groups: usize, block: usize) -> PackedWeights {
        let (in_channels, out_per_group, _, _) = weight.dim();
        let in_per_group = in_channels / groups;
        Self::pack(
            groups,
            in_per_group,
            out_per_group,
            block,
            &weight,
            |g, o, i| (g * in_per_group + i, o),
        )
    }

    /// `index(group, out_in_group, in_in_group)` gives the first two weight indices of that
    /// filter.
    fn pack(
        groups: usize,
        in_per_group: usize,
        out_per_group: usize,
        block: usize,
        weight: &ArrayView4<f32>,
        index: impl Fn(usize, usize, usize) -> (usize, usize),
    ) -> PackedWeights {
        let (_, _, kh, kw) = weight.dim();
        let taps = kh * kw;
        let blocks_per_group = out_per_group.div_ceil(block);
        let block_len = in_per_group * taps * block;
        let mut data = vec![0.0; groups * blocks_per_group * block_len];
        for g in 0..groups {
            for o in 0..out_per_group {
                let (b, lane) = (o / block, o % block);
                let block_start = (g * blocks_per_group + b) * block_len;
                for i in 0..in_per_group {
                    let (first, second) = index(g, o, i);
                    for t in 0..taps {
                        data[block_start + (i * taps + t) * block + lane] =
                            weight[[first, second, t / kw, t % kw]];
                    }
                }
            }
        }
        PackedWeights {
            data: AlignedFloats::from(data),
            block,
            blocks_per_group,
            in_per_group,
            out_per_group,
            block_len,
        }
    }

    /// Floats of one group's weights, all its blocks.
    pub fn group_len(&self) -> usize {
        self.blocks_per_group * self.block_len
    }

    /// The weights of block `b` of group `g`.
    pub fn block(&self, g: usize, b: usize) -> &[f32] {
        let start = (g * self.blocks_per_group + b) * self.block_len;
        &self.data[start..start + self.block_len]
    }
}
