//! What a layer holds, whatever its geometry: the weight and bias in PyTorch's layout, and
//! the engines the kernels read, kept in step with them. Not generic, so compiled once.

use std::sync::OnceLock;

use ndarray::{Array1, Array4, ArrayView1, ArrayView4, ArrayViewMut1, ArrayViewMut4};

use crate::isa::Isa;
use crate::kernels::row::Engine;

/// Packs a weight (and bias) into an engine on an instruction set: `Engine::conv::<G>` or
/// `Engine::transposed::<G>`, chosen where the geometry is known and passed on as a plain
/// function, so that the code that calls it is compiled once.
pub(crate) type Pack = fn(Isa, &Array4<f32>, Option<&Array1<f32>>, usize) -> Engine;

/// A layer's parameters and their packed copies.
#[derive(Clone)]
pub(crate) struct Parameters {
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

impl Parameters {
    /// Checked parameters, packed by `pack` on `isa`, which the caller checked is available.
    pub fn new(
        weight: Array4<f32>,
        bias: Option<Array1<f32>>,
        groups: usize,
        isa: Isa,
        pack: Pack,
    ) -> Self {
        let engine = pack(isa, &weight, bias.as_ref(), groups);
        Parameters {
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
    /// instruction set, packed by `packer` the first time. The caller names the packer
    /// here rather than at construction, so that a program that never calls `backward`
    /// never compiles the adjoint direction's kernels.
    pub fn adjoint(&self, packer: Pack) -> &Engine {
        self.adjoint
            .get_or_init(|| packer(self.isa(), &self.weight, None, self.groups))
    }

    pub fn weight_view(&self) -> ArrayView4<'_, f32> {
        self.weight.view()
    }

    pub fn bias_view(&self) -> Option<ArrayView1<'_, f32>> {
        self.bias.as_ref().map(|bias| bias.view())
    }

    /// The same parameters packed on `isa`, which the caller checked is available.
    pub fn on_isa(self, isa: Isa) -> Self {
        Parameters::new(self.weight, self.bias, self.groups, isa, self.pack)
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
        let isa = self.isa();
        self.engine = (self.pack)(isa, &self.weight, self.bias.as_ref(), self.groups);
        self.adjoint = OnceLock::new();
    }
}
