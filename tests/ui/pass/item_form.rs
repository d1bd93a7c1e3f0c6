// The item form: attributes, every visibility, and the type used as a field.
use conv_runtime::prelude::*;

conv!(
    /// A public geometry with a doc comment.
    pub struct Public; k = 3, padding = 1
);

conv!(#[allow(dead_code)] struct Private; k = 2, stride = 2);

conv!(
    /// Visible in the crate only.
    #[allow(dead_code)]
    pub(crate) struct CrateVisible; kernel_size = (3, 5), padding = same,
);

// Braces work too (and rustfmt leaves a brace-delimited macro alone).
conv! {
    pub struct Braced; k = 5, padding = 2
}

mod inner {
    use conv_runtime::prelude::*;

    conv!(pub struct Nested; k = 1);
}

struct Model {
    public: Conv2d<Public>,
    private: ConvTranspose2d<Private>,
    crate_visible: Conv2d<CrateVisible>,
    nested: Conv2d<inner::Nested>,
    braced: Conv2d<Braced>,
}

fn main() {
    let model = Model {
        public: Conv2d::new(Public, 3, 16),
        private: ConvTranspose2d::new(Private, 16, 3),
        crate_visible: Conv2d::new(CrateVisible, 3, 16),
        nested: Conv2d::new(inner::Nested, 3, 16),
        braced: Conv2d::new(Braced, 3, 16),
    };
    let _ = (
        model.public.out_channels(),
        model.private.out_channels(),
        model.crate_visible.out_channels(),
        model.nested.out_channels(),
        model.braced.out_channels(),
    );
    // The type is a plain zero-sized value with the usual derives.
    let copy = Public;
    assert_eq!(copy, Public::default());
    assert_eq!(core::mem::size_of::<Public>(), 0);
}
