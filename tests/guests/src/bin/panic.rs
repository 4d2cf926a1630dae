//! Conformance: a guest panic goes through guest-rt's handler, which prints
//! `panic: <location>: <message>` and shuts the domain down with reason crash, code 1.
#![cfg_attr(target_os = "none", no_std, no_main)]

use guest_rt::abi::StartInfo;
use guest_rt::println;

guest_rt::entry!(deliberate_panic);

fn deliberate_panic(start: &'static StartInfo) -> u32 {
    println!("panic guest: domain {} about to panic deliberately", start.domain_id);
    panic!("deliberate panic from the panic conformance guest");
}
