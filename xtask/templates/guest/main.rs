#![cfg_attr(target_os = "none", no_std, no_main)]

use guest_rt::abi::StartInfo;

guest_rt::entry!(guest_main);

fn guest_main(start: &'static StartInfo) -> u32 {
    guest_rt::println!("hello from domain {} with {} pages", start.domain_id, start.nr_pages);
    match guest_rt::hypercall::version() {
        Ok(version) => guest_rt::println!("the hypervisor speaks ABI {version}"),
        Err(errno) => guest_rt::println!("version query failed: {errno}"),
    }
    0 // poweroff code
}
