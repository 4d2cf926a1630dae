//! `execve` before it touches an address space: the program's load plan, the contents of
//! each of its pages, and its initial stack.

pub mod image;
pub mod program;
pub mod stack;
