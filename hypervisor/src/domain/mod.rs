//! Domains before they run: image validation, the layout plan, the builder, the
//! virtual CPU's paravirtual state, and how a domain ended.

pub mod builder;
pub mod image;
pub mod layout;
pub mod outcome;
#[cfg(test)]
mod parser_tests;
#[cfg(test)]
mod tests_image_shapes;
pub mod vcpu;
