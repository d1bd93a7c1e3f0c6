//! Stage 1: tokens to a typed model of what the user wrote.
//!
//! Parsing is deliberately lenient about *values*: `-1`, `2.5`, `same` under the wrong key or
//! an unknown key are all accepted here and judged by `validate`, so that every mistake in
//! one invocation is reported together and each error can point at the token that caused it.
//! Only malformed syntax (a missing `=`, a stray token) stops parsing.

use proc_macro2::Span;
use quote::quote;
use syn::parse::{Parse, ParseStream};
use syn::{Attribute, Ident, LitFloat, LitInt, Token, Visibility, parenthesized};

/// One `conv!` invocation: an optional item header, then the parameters.
pub struct Invocation {
    /// `Some` for the item form `conv!(pub struct Name; ...)`.
    pub item: Option<ItemHeader>,
    pub params: Vec<Param>,
}

/// The `#[attrs] vis struct Name;` prefix of the item form.
pub struct ItemHeader {
    pub attrs: Vec<Attribute>,
    pub vis: Visibility,
    pub ident: Ident,
}

/// `key = value`, exactly as written.
pub struct Param {
    pub key: Ident,
    pub value: Value,
}

/// The right-hand side of a parameter.
pub enum Value {
    /// One number, applied to both axes.
    Scalar(Scalar),
    /// `(h, w)`.
    Pair { span: Span, h: Scalar, w: Scalar },
    /// A bare word such as `same` or `valid` (or a misspelling of one).
    Word(Ident),
}

/// A single number as written; validation decides whether it is acceptable.
pub enum Scalar {
    /// A non-negative integer literal.
    Int(LitInt),
    /// `-` followed by an integer literal.
    Negative { minus: Token![-], lit: LitInt },
    /// A floating-point literal such as `2.0`.
    Float(LitFloat),
}

impl Scalar {
    /// An error whose caret covers the whole number as written, sign included.
    pub fn error(&self, message: impl std::fmt::Display) -> syn::Error {
        match self {
            Scalar::Int(lit) => syn::Error::new(lit.span(), message),
            Scalar::Negative { minus, lit } => {
                syn::Error::new_spanned(quote!(#minus #lit), message)
            }
            Scalar::Float(lit) => syn::Error::new(lit.span(), message),
        }
    }
}

impl Value {
    /// An error whose caret covers the whole value as written.
    pub fn error(&self, message: impl std::fmt::Display) -> syn::Error {
        match self {
            Value::Scalar(scalar) => scalar.error(message),
            Value::Pair { span, .. } => syn::Error::new(*span, message),
            Value::Word(word) => syn::Error::new(word.span(), message),
        }
    }
}

impl Parse for Invocation {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let item = if starts_item(input) {
            Some(input.parse()?)
        } else {
            None
        };
        let mut params = Vec::new();
        while !input.is_empty() {
            params.push(input.parse()?);
            if input.is_empty() {
                break;
            }
            input.parse::<Token![,]>()?;
        }
        Ok(Invocation { item, params })
    }
}

/// The item form starts with attributes, a visibility or `struct`; parameters start with a key.
fn starts_item(input: ParseStream) -> bool {
    input.peek(Token![#]) || input.peek(Token![pub]) || input.peek(Token![struct])
}

impl Parse for ItemHeader {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis = input.parse()?;
        input.parse::<Token![struct]>()?;
        let ident = input.parse()?;
        input.parse::<Token![;]>()?;
        Ok(ItemHeader { attrs, vis, ident })
    }
}

impl Parse for Param {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let key: Ident = input.parse().map_err(|error| {
            syn::Error::new(
                error.span(),
                "expected a parameter such as `k = 3`, `stride = 2` or `padding = same`",
            )
        })?;
        input.parse::<Token![=]>()?;
        let value = input.parse()?;
        Ok(Param { key, value })
    }
}

impl Parse for Value {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        if input.peek(syn::token::Paren) {
            let content;
            let parens = parenthesized!(content in input);
            let h = content.parse()?;
            content.parse::<Token![,]>()?;
            let w = content.parse()?;
            if !content.is_empty() {
                return Err(content.error("expected a pair `(h, w)` of two integers"));
            }
            Ok(Value::Pair {
                span: parens.span.join(),
                h,
                w,
            })
        } else if input.peek(Ident) {
            Ok(Value::Word(input.parse()?))
        } else {
            Ok(Value::Scalar(input.parse()?))
        }
    }
}

impl Parse for Scalar {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let lookahead = input.lookahead1();
        if lookahead.peek(LitInt) {
            Ok(Scalar::Int(input.parse()?))
        } else if lookahead.peek(LitFloat) {
            Ok(Scalar::Float(input.parse()?))
        } else if lookahead.peek(Token![-]) {
            let minus = input.parse()?;
            let lit = input.parse()?;
            Ok(Scalar::Negative { minus, lit })
        } else {
            Err(lookahead.error())
        }
    }
}
