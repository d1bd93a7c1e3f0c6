//! Stage 1: tokens to a typed model of what the user wrote.
//!
//! Parsing is deliberately lenient about *values*: `-1`, `2.5`, `same` under the wrong key or
//! an unknown key are all accepted here and judged by `validate`, so that every mistake in
//! one invocation is reported together and each error can point at the token that caused it.
//! Only malformed syntax (a missing `=`, a stray token) stops parsing, and even then the
//! parameters before it are kept (and checked), and the item form still defines its type, so
//! that a typo gives one error rather than a cascade from the code that uses the geometry.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote};
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::{Attribute, Ident, Lit, LitFloat, LitInt, Token, Visibility, parenthesized};

/// One `conv!` invocation: an optional item header, then the parameters.
pub struct Invocation {
    /// `Some` for the item form `conv!(pub struct Name; ...)`.
    pub item: Option<ItemHeader>,
    /// The parameters, in the order written (up to a syntax error, if there is one).
    pub params: Vec<Param>,
    /// The first syntax error after the item header. Parsing stops there; what came before
    /// is kept.
    pub syntax_error: Option<syn::Error>,
}

/// The `#[attrs] vis struct Name;` prefix of the item form.
pub struct ItemHeader {
    pub attrs: Vec<Attribute>,
    pub vis: Visibility,
    pub ident: Ident,
}

/// `key = value`, exactly as written.
#[derive(Clone)]
pub struct Param {
    /// Where the parameter stands among the others (0 for the first): errors are reported
    /// in this order.
    pub position: usize,
    pub key: Ident,
    pub value: Value,
}

/// The right-hand side of a parameter.
#[derive(Clone)]
pub enum Value {
    /// One number, applied to both axes.
    Scalar(Scalar),
    /// `(h, w)`.
    Pair { span: Span, h: Scalar, w: Scalar },
    /// A bare word such as `same` or `valid` (or a misspelling of one).
    Word(Ident),
}

/// A single number as written; validation decides whether it is acceptable.
#[derive(Clone)]
pub enum Scalar {
    /// A non-negative integer literal.
    Int(LitInt),
    /// `-` followed by an integer or floating-point literal.
    Negative { minus: Token![-], lit: Lit },
    /// A floating-point literal such as `2.0`.
    Float(LitFloat),
}

impl Scalar {
    /// An error whose caret covers the whole number as written, sign included.
    pub fn error(&self, message: impl std::fmt::Display) -> syn::Error {
        syn::Error::new_spanned(self, message)
    }

    /// The number as written, without any suffix: `3`, `-1`, `1.5`.
    pub fn written(&self) -> String {
        match self {
            Scalar::Int(lit) => lit.base10_digits().to_owned(),
            Scalar::Negative { lit, .. } => match lit {
                Lit::Int(lit) => format!("-{}", lit.base10_digits()),
                Lit::Float(lit) => format!("-{}", lit.base10_digits()),
                other => format!("-{}", other.to_token_stream()),
            },
            Scalar::Float(lit) => lit.base10_digits().to_owned(),
        }
    }
}

impl ToTokens for Scalar {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        match self {
            Scalar::Int(lit) => lit.to_tokens(tokens),
            Scalar::Negative { minus, lit } => tokens.extend(quote!(#minus #lit)),
            Scalar::Float(lit) => lit.to_tokens(tokens),
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
        let mut invocation = Invocation {
            item: None,
            params: Vec::new(),
            syntax_error: None,
        };
        let mut result = Ok(());
        if starts_item(input) {
            let header = parse_header(input)?;
            result = semicolon_after(&header, input);
            invocation.item = Some(header);
        }
        if result.is_ok() {
            result = parse_params(input, &mut invocation.params);
        }
        if let Err(error) = result {
            invocation.syntax_error = Some(error);
            // Skip the rest: after a syntax error the tokens that follow mean little, and
            // judging them would only add follow-on errors.
            input.parse::<TokenStream>()?;
        }
        Ok(invocation)
    }
}

/// `PARAM ( , PARAM )* [,]`, appending each parameter as it is read.
fn parse_params(input: ParseStream, params: &mut Vec<Param>) -> syn::Result<()> {
    while !input.is_empty() {
        params.push(Param::parse(input, params.len())?);
        if input.is_empty() {
            break;
        }
        if !input.peek(Token![,]) {
            return Err(expected(input, "`,` between parameters"));
        }
        input.parse::<Token![,]>()?;
    }
    Ok(())
}

/// The item form starts with attributes, a visibility or `struct`; parameters start with a key.
fn starts_item(input: ParseStream) -> bool {
    input.peek(Token![#]) || input.peek(Token![pub]) || input.peek(Token![struct])
}

/// `#[attrs] vis struct Name`, up to (not including) the `;`.
fn parse_header(input: ParseStream) -> syn::Result<ItemHeader> {
    let attrs = input.call(Attribute::parse_outer)?;
    let vis = input.parse()?;
    if !input.peek(Token![struct]) {
        return Err(expected(input, "`struct` (as in `pub struct Name; k = 3`)"));
    }
    input.parse::<Token![struct]>()?;
    if !input.peek(Ident) {
        return Err(expected(
            input,
            "the name of the geometry type after `struct`",
        ));
    }
    let ident = input.parse()?;
    Ok(ItemHeader { attrs, vis, ident })
}

/// The `;` that ends the item header. Its absence is a syntax error that still leaves the
/// header usable, so the type is defined and code naming it gives no second error.
fn semicolon_after(header: &ItemHeader, input: ParseStream) -> syn::Result<()> {
    if !input.peek(Token![;]) {
        let ident = &header.ident;
        return Err(expected(
            input,
            format!("`;` between `struct {ident}` and the parameters"),
        ));
    }
    input.parse::<Token![;]>()?;
    Ok(())
}

impl Param {
    fn parse(input: ParseStream, position: usize) -> syn::Result<Self> {
        // Any word, keywords included, so that `type = 2` is reported as an unknown key.
        if !input.peek(Ident::peek_any) {
            return Err(expected(
                input,
                "a parameter such as `k = 3`, `stride = 2` or `padding = same`",
            ));
        }
        let key = Ident::parse_any(input)?;
        if !input.peek(Token![=]) {
            return Err(expected(input, format!("`=` after `{key}`")));
        }
        input.parse::<Token![=]>()?;
        let value = Value::parse(input, &key)?;
        Ok(Param {
            position,
            key,
            value,
        })
    }
}

impl Value {
    /// The value after `key =`.
    fn parse(input: ParseStream, key: &Ident) -> syn::Result<Self> {
        if input.peek(syn::token::Paren) {
            let content;
            let parens = parenthesized!(content in input);
            let result = parse_pair(&content, parens.span.join());
            if result.is_err() {
                // syn reports tokens left in a group as an error of its own; the one error
                // here is enough.
                content.parse::<TokenStream>()?;
            }
            result
        } else if input.peek(Ident) {
            Ok(Value::Word(input.parse()?))
        } else if starts_scalar(input) {
            Ok(Value::Scalar(input.parse()?))
        } else {
            Err(expected(
                input,
                format!("an integer or a pair `(h, w)` after `{key} =`"),
            ))
        }
    }
}

/// The inside of `(h, w)`, whose parentheses span `span`.
fn parse_pair(content: ParseStream, span: Span) -> syn::Result<Value> {
    let mut elements = Vec::new();
    let mut trailing_comma = None;
    while !content.is_empty() {
        elements.push(content.parse::<Scalar>()?);
        trailing_comma = None;
        if content.is_empty() {
            break;
        }
        if !content.peek(Token![,]) {
            return Err(expected(
                content,
                "`,` between the values of a pair `(h, w)`",
            ));
        }
        trailing_comma = Some(content.parse::<Token![,]>()?);
    }
    check_pair_arity(&elements, trailing_comma, span)?;
    let mut elements = elements.into_iter();
    match (elements.next(), elements.next()) {
        (Some(h), Some(w)) => Ok(Value::Pair { span, h, w }),
        _ => unreachable!("check_pair_arity accepts two elements only"),
    }
}

/// Rule: a pair is exactly `(h, w)`: two values, no trailing comma.
fn check_pair_arity(
    elements: &[Scalar],
    trailing_comma: Option<Token![,]>,
    span: Span,
) -> syn::Result<()> {
    let expected = "expected a pair `(h, w)` of two integers";
    match (elements, trailing_comma) {
        ([], _) => Err(syn::Error::new(span, format!("{expected}, found `()`"))),
        ([_], _) => Err(syn::Error::new(
            span,
            format!(
                "{expected}, found one value; a single integer without parentheses applies \
                 to both axes"
            ),
        )),
        ([_, _], Some(comma)) => Err(syn::Error::new(
            comma.span,
            format!("{expected}; remove the trailing `,`"),
        )),
        ([_, _], None) => Ok(()),
        ([_, _, extra @ ..], _) => {
            let (first, last) = (&extra[0], &extra[extra.len() - 1]);
            let these = if extra.len() == 1 {
                "this one"
            } else {
                "these"
            };
            Err(syn::Error::new_spanned(
                quote!(#first #last),
                format!(
                    "{expected}, found {} values: remove {these}",
                    elements.len()
                ),
            ))
        }
    }
}

fn starts_scalar(input: ParseStream) -> bool {
    input.peek(Token![-]) || input.peek(LitInt) || input.peek(LitFloat)
}

impl Parse for Scalar {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        // The sign first: syn would otherwise read `-1` as one literal whose span is the `-`.
        if input.peek(Token![-]) {
            let minus = input.parse()?;
            if !(input.peek(LitInt) || input.peek(LitFloat)) {
                return Err(expected(input, "a number after `-`"));
            }
            let lit = input.parse()?;
            Ok(Scalar::Negative { minus, lit })
        } else if input.peek(LitInt) {
            Ok(Scalar::Int(input.parse()?))
        } else if input.peek(LitFloat) {
            Ok(Scalar::Float(input.parse()?))
        } else {
            Err(expected(input, "an integer"))
        }
    }
}

/// A syntax error at the next token: "expected WHAT, found `TOKEN`" (or, at the end of the
/// input, "unexpected end of input, expected WHAT").
fn expected(input: ParseStream, what: impl std::fmt::Display) -> syn::Error {
    match input.cursor().token_tree() {
        Some((token, _)) => {
            syn::Error::new(token.span(), format!("expected {what}, found `{token}`"))
        }
        None => input.error(format!("expected {what}")),
    }
}
