//! A fake hypervisor for host unit tests: records every hypercall and answers from a
//! script (popped from the end) or with a sensible default.

extern crate std;

use crate::hypercall::HypercallInterface;
use hypercall_abi::hypercall::{console_cmd, sched_cmd};
use hypercall_abi::Hypercall;
use std::cell::RefCell;
use std::vec::Vec;

/// One recorded hypercall: number, arguments, and the bytes a console write named.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub number: u64,
    pub arguments: [u64; 6],
    pub console: Option<Vec<u8>>,
}

/// A fake hypervisor: records calls, answers from a script or a default.
#[derive(Default)]
pub struct Fake {
    pub calls: RefCell<Vec<Recorded>>,
    pub replies: RefCell<Vec<i64>>,
    pub console_limit: Option<u64>,
}

impl HypercallInterface for Fake {
    unsafe fn call(&self, number: u64, arguments: [u64; 6]) -> i64 {
        let console = (number == Hypercall::CONSOLE_IO.0 && arguments[0] == console_cmd::WRITE).then(|| {
            let count = arguments[1].min(self.console_limit.unwrap_or(u64::MAX));
            // SAFETY: the wrappers under test pass their own slices.
            unsafe { std::slice::from_raw_parts(arguments[2] as *const u8, count as usize) }.to_vec()
        });
        let shutdown = number == Hypercall::SCHED_OP.0 && arguments[0] == sched_cmd::SHUTDOWN;
        let scripted = self.replies.borrow_mut().pop();
        let written = console.as_ref().map(|bytes| bytes.len() as i64);
        self.calls.borrow_mut().push(Recorded { number, arguments, console });
        let reply = match (scripted, written) {
            (Some(reply), _) => reply,
            (None, Some(written)) => written,
            (None, None) if shutdown => panic!("shutdown reason {} code {}", arguments[1], arguments[2]),
            (None, None) => 0,
        };
        reply
    }

    fn unreachable_after_shutdown(&self) -> ! {
        panic!("shutdown returned")
    }
}

impl Fake {
    pub fn console_text(&self) -> std::string::String {
        let calls = self.calls.borrow();
        let bytes: Vec<u8> = calls.iter().filter_map(|call| call.console.clone()).flatten().collect();
        std::string::String::from_utf8(bytes).unwrap()
    }
}
