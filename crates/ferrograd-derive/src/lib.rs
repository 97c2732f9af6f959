//! `#[derive(Tree)]`: makes a struct a ferrograd parameter tree.
//!
//! Every field must itself be a `ferrograd::Tree` (tensors, `Vec`s, maps, options, tuples,
//! other derived structs, or plain numbers, which have no leaves), except fields marked
//! `#[tree(skip)]`, which are cloned as they are. Leaves are named after the field path
//! (`layers.1.bias`); tuple-struct fields after their position. Type parameters get a
//! `Tree` bound.

use proc_macro::TokenStream;
use proc_macro2::TokenStream as TokenStream2;
use quote::quote;
use syn::{parse_macro_input, parse_quote, Data, DeriveInput, Fields, Index};

/// Implements `ferrograd::Tree` for a struct (with its `structure`), and
/// `ferrograd::ArgTree`, so the struct can also be passed as an argument after the
/// parameters. Fields marked `#[tree(skip)]` are not part of an optimize-mode signature.
#[proc_macro_derive(Tree, attributes(tree))]
pub fn derive_tree(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match expand(input) {
        Ok(tokens) => tokens.into(),
        Err(e) => e.to_compile_error().into(),
    }
}

fn is_skipped(attrs: &[syn::Attribute]) -> syn::Result<bool> {
    let mut skip = false;
    for attr in attrs.iter().filter(|a| a.path().is_ident("tree")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("skip") {
                skip = true;
                Ok(())
            } else {
                Err(meta.error("unknown tree attribute; the only one is #[tree(skip)]"))
            }
        })?;
    }
    Ok(skip)
}

fn expand(input: DeriveInput) -> syn::Result<TokenStream2> {
    let name = &input.ident;
    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new_spanned(
            &input.ident,
            "#[derive(Tree)] supports structs only; write the Tree impl by hand for enums",
        ));
    };
    let mut generics = input.generics.clone();
    for param in generics.type_params_mut() {
        param.bounds.push(parse_quote!(::ferrograd::Tree));
    }
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();

    let mut visits = Vec::new();
    let mut maps = Vec::new();
    let mut structures = Vec::new();
    let members: Vec<(syn::Member, String, bool)> = match &data.fields {
        Fields::Named(fields) => fields
            .named
            .iter()
            .map(|f| {
                let ident = f.ident.clone().expect("named");
                Ok((
                    syn::Member::Named(ident.clone()),
                    ident.to_string(),
                    is_skipped(&f.attrs)?,
                ))
            })
            .collect::<syn::Result<_>>()?,
        Fields::Unnamed(fields) => fields
            .unnamed
            .iter()
            .enumerate()
            .map(|(i, f)| {
                Ok((
                    syn::Member::Unnamed(Index::from(i)),
                    i.to_string(),
                    is_skipped(&f.attrs)?,
                ))
            })
            .collect::<syn::Result<_>>()?,
        Fields::Unit => Vec::new(),
    };
    for (member, label, skip) in &members {
        if *skip {
            maps.push(quote! { #member: ::core::clone::Clone::clone(&self.#member) });
        } else {
            visits.push(quote! {
                ::ferrograd::visit_child(&self.#member, prefix, &#label, f);
            });
            maps.push(quote! { #member: ::ferrograd::Tree::map(&self.#member, f) });
            structures.push(quote! { ::ferrograd::Tree::structure(&self.#member, key); });
        }
    }
    let build = match &data.fields {
        Fields::Unit => quote! { #name },
        _ => quote! { #name { #(#maps),* } },
    };
    Ok(quote! {
        impl #impl_generics ::ferrograd::Tree for #name #ty_generics #where_clause {
            fn visit<'ferrograd_a>(
                &'ferrograd_a self,
                prefix: &str,
                f: &mut dyn FnMut(&str, &'ferrograd_a ::ferrograd::Tensor),
            ) {
                let _ = (&prefix, &f);
                #(#visits)*
            }

            fn map(&self, f: &mut dyn FnMut(&::ferrograd::Tensor) -> ::ferrograd::Tensor) -> Self {
                let _ = &f;
                #build
            }

            fn structure(&self, key: &mut ::std::vec::Vec<u64>) {
                let _ = &key;
                #(#structures)*
            }
        }

        impl #impl_generics ::ferrograd::ArgTree for #name #ty_generics #where_clause {
            fn visit_args(
                &self,
                tensor: &mut dyn FnMut(&::ferrograd::Tensor),
                key: &mut ::std::vec::Vec<u64>,
            ) {
                ::ferrograd::tree_args(self, tensor, key)
            }
        }
    })
}
