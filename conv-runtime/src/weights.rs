//! What both layers hold: the weight and bias in PyTorch's layout, and the packed engines the
//! kernels read, kept in step with them.

use std::sync::OnceLock;

use ndarray::{Array1, Array4, ArrayView1, ArrayView4, ArrayViewMut1, ArrayViewMut4};

use crate::Isa;
use crate::layer::Engine;

/// Packs a weight (and bias) into an engine: `Engine::conv::<G>` or `Engine::transposed::<G>`.
pub(crate) type Pack = fn(&Array4<f32>, Option<&Array1<f32>>, usize) -> Engine;

/// A layer's parameters and their packed copies.
#[derive(Clone)]
pub(crate) struct LayerWeights {
    pub weight: Array4<f32>,
    pub bias: Option<Array1<f32>>,
    pub groups: usize,
    /// Packs the layer's own operation.
    pack: Pack,
    engine: Engine,
    /// Built on the first `backward`, not at construction: a layer used only for inference
    /// never pays for a second packed copy of its weights.
    adjoint: OnceLock<Engine>,
}

impl LayerWeights {
    /// Checked parameters, packed by `pack` on the current instruction set.
    pub fn new(weight: Array4<f32>, bias: Option<Array1<f32>>, groups: usize, pack: Pack) -> Self {
        let engine = pack(&weight, bias.as_ref(), groups);
        LayerWeights {
            weight,
            bias,
            groups,
            pack,
            engine,
            adjoint: OnceLock::new(),
        }
    }

    /// The instruction set the layer's kernels use, chosen when it was built.
    pub fn isa(&self) -> Isa {
        self.engine.isa()
    }

    /// The layer's own operation.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The adjoint operation (the transposed convolution of a convolution's weight, and the
    /// reverse), which computes the input gradient: the same weight, no bias, the layer's
    /// instruction set, packed by `pack_adjoint` the first time. The caller names the packer
    /// here rather than at construction, so that a program that never calls `backward`
    /// never compiles the adjoint direction's kernels.
    pub fn adjoint(&self, pack_adjoint: Pack) -> &Engine {
        self.adjoint.get_or_init(|| {
            self.isa()
                .force(|| pack_adjoint(&self.weight, None, self.groups))
        })
    }

    pub fn weight_view(&self) -> ArrayView4<'_, f32> {
        self.weight.view()
    }

    pub fn bias_view(&self) -> Option<ArrayView1<'_, f32>> {
        self.bias.as_ref().map(|bias| bias.view())
    }

    /// Lets `update` change the weight and bias in place, then repacks on the same
    /// instruction set.
    pub fn update(
        &mut self,
        update: impl FnOnce(ArrayViewMut4<'_, f32>, Option<ArrayViewMut1<'_, f32>>),
    ) {
        update(
            self.weight.view_mut(),
            self.bias.as_mut().map(|bias| bias.view_mut()),
        );
        let (weight, bias, groups) = (&self.weight, self.bias.as_ref(), self.groups);
        self.engine = self.isa().force(|| (self.pack)(weight, bias, groups));
        self.adjoint = OnceLock::new();
    }
}
