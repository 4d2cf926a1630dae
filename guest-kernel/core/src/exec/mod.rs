//! `execve` before it touches an address space: the program's load plan and its initial
//! stack.

pub mod program;
pub mod stack;
