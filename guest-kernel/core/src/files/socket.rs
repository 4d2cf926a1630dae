//! Socket pairs: `socketpair(AF_UNIX, SOCK_STREAM | SOCK_SEQPACKET, 0)`, `shutdown`,
//! `sendto` and `recvfrom` without addresses, and `getsockopt`'s `SOL_SOCKET` facts.
//!
//! A socket pair is two connected ends, each a bidirectional channel over two pipe
//! buffers, one each way: reading, writing, blocking, `poll`, `fstat`
//! (`S_IFSOCK`), `fcntl`, `dup` and close work as on pipes (see [`super::io`]), and each
//! pair counts two pipes against the kernel's bound (ENFILE). Rust's
//! `std::process::Command` needs one (a `SOCK_SEQPACKET` pair reports a failed `execve`
//! to the parent). There is no `socket(2)`, no addresses and no other family: those
//! calls are not file calls here.

use linux_raw_sys::general as uapi;
use linux_raw_sys::net;

use super::caller::{flags, Caller};
use super::io::{read_socket, write_socket};
use super::open::install_pair;
use super::open_file::{share, Access, FileRef, Node, OpenFile};
use super::outcome::{done, CallResult, Outcome};
use super::socket_end::{SocketEnd, SocketKind};
use super::transfer::Segments;
use super::world::Files;
use crate::linux::Errno;
use crate::user_memory::{read_value, write_value};

/// `SOCK_CLOEXEC` and `SOCK_NONBLOCK`: Linux defines them as `O_CLOEXEC` and
/// `O_NONBLOCK` (its UAPI headers do not export them).
const SOCK_CLOEXEC: u32 = uapi::O_CLOEXEC;
const SOCK_NONBLOCK: u32 = uapi::O_NONBLOCK;

/// The bits of a type argument that name the type (Linux's `SOCK_TYPE_MASK`), and the
/// first number past the types Linux knows (`SOCK_MAX`): EINVAL from there on.
const TYPE_MASK: u32 = 0xf;
const TYPE_LIMIT: u32 = 11;

/// The largest socket address (`sizeof(struct sockaddr_storage)`).
const ADDRESS_LIMIT: u32 = 128;

/// `socketpair(domain, type, protocol, sv)`: `AF_UNIX` only (EAFNOSUPPORT otherwise),
/// `SOCK_STREAM` or `SOCK_SEQPACKET` with `SOCK_CLOEXEC` and `SOCK_NONBLOCK` (other
/// types Linux knows are ESOCKTNOSUPPORT, unknown ones and unknown flags EINVAL),
/// protocol 0 (or `AF_UNIX`, as Linux allows; else EPROTONOSUPPORT).
pub fn socketpair(
    files: &mut Files,
    caller: &mut Caller<'_>,
    domain: u64,
    kind: u64,
    protocol: u64,
    address: u64,
) -> CallResult {
    let kind = flags(kind);
    if kind & !(TYPE_MASK | SOCK_CLOEXEC | SOCK_NONBLOCK) != 0 {
        return Err(Errno::EINVAL);
    }
    if flags(domain) != net::AF_UNIX {
        return Err(Errno::EAFNOSUPPORT);
    }
    let socket_kind = match kind & TYPE_MASK {
        net::SOCK_STREAM => SocketKind::Stream,
        net::SOCK_SEQPACKET => SocketKind::Packet,
        number if number >= TYPE_LIMIT => return Err(Errno::EINVAL),
        _ => return Err(Errno::ESOCKTNOSUPPORT),
    };
    if !matches!(flags(protocol), 0 | net::AF_UNIX) {
        return Err(Errno::EPROTONOSUPPORT);
    }
    let (first, second) = files.new_socket_pair(socket_kind)?;
    let status = kind & SOCK_NONBLOCK;
    let [first, second] = [first, second].map(|end| share(OpenFile::new(Node::Socket(end), Access::ReadWrite, status)));
    install_pair(files, caller, address, [first, second], kind & SOCK_CLOEXEC != 0)
}

/// The socket end open as `file`, and whether it is non-blocking; ENOTSOCK for any other
/// file.
fn with_socket<T>(file: &FileRef, action: impl FnOnce(&SocketEnd, bool) -> T) -> Result<T, Errno> {
    let open = file.borrow();
    match &open.node {
        Node::Socket(end) => Ok(action(end, open.nonblocking)),
        _ => Err(Errno::ENOTSOCK),
    }
}

/// `shutdown(fd, how)`: `SHUT_RD`, `SHUT_WR` or `SHUT_RDWR` (EINVAL otherwise).
pub fn shutdown(files: &mut Files, caller: &mut Caller<'_>, fd: u64, how: u64) -> CallResult {
    let file = caller.file(fd)?;
    let how = flags(how);
    with_socket(&file, |end, _| {
        let (receiving, sending) = match how {
            net::SHUT_RD => (true, false),
            net::SHUT_WR => (false, true),
            net::SHUT_RDWR => (true, true),
            _ => return Err(Errno::EINVAL),
        };
        files.shut_down(end, receiving, sending);
        done(0u64)
    })?
}

/// `sendto(fd, buffer, length, flags, address, address_length)` (the last two as one
/// argument): `write` with flags
/// `MSG_DONTWAIT` (this call does not sleep) and `MSG_NOSIGNAL` (EPIPE without SIGPIPE);
/// `MSG_EOR` and `MSG_MORE` change nothing (every packet write ends a record; Linux's
/// `AF_UNIX` ignores `MSG_MORE`); any other flag is EOPNOTSUPP. The ends are connected:
/// an address is EISCONN on a stream and ignored on packets, as on Linux.
pub fn sendto(
    files: &mut Files,
    caller: &mut Caller<'_>,
    fd: u64,
    buffer: u64,
    length: u64,
    send_flags: u64,
    [address, address_length]: [u64; 2],
) -> CallResult {
    let file = caller.file(fd)?;
    let send_flags = flags(send_flags);
    let known = net::MSG_DONTWAIT | net::MSG_NOSIGNAL | net::MSG_EOR | net::MSG_MORE;
    if send_flags & !known != 0 {
        return Err(Errno::EOPNOTSUPP);
    }
    let addressed = address != 0 && flags(address_length) != 0;
    if addressed {
        if flags(address_length) > ADDRESS_LIMIT {
            return Err(Errno::EINVAL);
        }
        let mut bytes = [0u8; ADDRESS_LIMIT as usize];
        caller.memory.read(address, &mut bytes[..flags(address_length) as usize])?;
    }
    let outcome = with_socket(&file, |end, nonblocking| {
        if addressed && end.kind == SocketKind::Stream {
            return Err(Errno::EISCONN);
        }
        let nonblocking = nonblocking || send_flags & net::MSG_DONTWAIT != 0;
        write_socket(files, caller, end, Segments::single(buffer, length), nonblocking)
    })??;
    match outcome {
        Outcome::FailAndSignal { error, .. } if send_flags & net::MSG_NOSIGNAL != 0 => Err(error),
        outcome => Ok(outcome),
    }
}

/// `recvfrom(fd, buffer, length, flags, address, address_length)` (the last two as one
/// argument): `read` with flag
/// `MSG_DONTWAIT`; `MSG_CMSG_CLOEXEC` changes nothing (no descriptors travel); any other
/// flag (`MSG_PEEK`, `MSG_WAITALL`, `MSG_TRUNC`, `MSG_OOB`) is EOPNOTSUPP. The ends have
/// no names, so an address asked for is written as empty: length 0.
pub fn recvfrom(
    files: &mut Files,
    caller: &mut Caller<'_>,
    fd: u64,
    buffer: u64,
    length: u64,
    receive_flags: u64,
    [address, address_length]: [u64; 2],
) -> CallResult {
    let file = caller.file(fd)?;
    let receive_flags = flags(receive_flags);
    if receive_flags & !(net::MSG_DONTWAIT | net::MSG_CMSG_CLOEXEC) != 0 {
        return Err(Errno::EOPNOTSUPP);
    }
    // Checked before anything is taken, so a bad pointer loses no bytes.
    if address != 0 && read_value::<i32>(&*caller.memory, address_length)? < 0 {
        return Err(Errno::EINVAL);
    }
    let outcome = with_socket(&file, |end, nonblocking| {
        let nonblocking = nonblocking || receive_flags & net::MSG_DONTWAIT != 0;
        read_socket(files, caller, end, Segments::single(buffer, length), nonblocking)
    })??;
    if address != 0 && matches!(outcome, Outcome::Done(_)) {
        write_value(caller.memory, address_length, &0i32)?;
    }
    Ok(outcome)
}

/// `getsockopt(fd, level, name, value, length)`: at level `SOL_SOCKET` (EOPNOTSUPP for
/// others, as Linux's `AF_UNIX` has none), `SO_TYPE`, `SO_DOMAIN`, `SO_PROTOCOL`,
/// `SO_ERROR` (no error is ever pending) and `SO_ACCEPTCONN` (never listening); any
/// other option is ENOPROTOOPT. As Linux, a shorter buffer takes the value's first
/// bytes, and the length written back says how many.
pub fn getsockopt(
    _files: &mut Files,
    caller: &mut Caller<'_>,
    fd: u64,
    level: u64,
    name: u64,
    value: u64,
    length: u64,
) -> CallResult {
    let file = caller.file(fd)?;
    let kind = with_socket(&file, |end, _| end.kind)?;
    if flags(level) != net::SOL_SOCKET {
        return Err(Errno::EOPNOTSUPP);
    }
    let room: i32 = read_value(&*caller.memory, length)?;
    let room = usize::try_from(room).map_err(|_| Errno::EINVAL)?;
    let option = match flags(name) {
        net::SO_TYPE => kind.number(),
        net::SO_DOMAIN => net::AF_UNIX,
        net::SO_PROTOCOL | net::SO_ERROR | net::SO_ACCEPTCONN => 0,
        _ => return Err(Errno::ENOPROTOOPT),
    };
    let bytes = (option as i32).to_le_bytes();
    let count = room.min(bytes.len());
    caller.memory.write(value, &bytes[..count])?;
    write_value(caller.memory, length, &(count as i32))?;
    done(0u64)
}

#[cfg(test)]
mod tests {
    use super::super::outcome::{Event, Wait};
    use super::super::socket_end::MAX_RECORD;
    use super::super::testing::{World, BAD, BUFFER, STRINGS, STRINGS2};
    use super::*;
    use crate::linux::layouts::{IoVector, PollDescriptor, Stat};
    use crate::pipe::CAPACITY;
    use crate::signal::Signal;
    use net::{AF_INET, SOCK_DGRAM, SOCK_SEQPACKET, SOCK_STREAM};
    use uapi::*;

    fn blocked_on(outcome: CallResult) -> Vec<Event> {
        match outcome {
            Ok(Outcome::Block(wait)) => wait.events,
            other => panic!("should block: {other:?}"),
        }
    }

    const EPIPE_AND_SIGPIPE: CallResult = Ok(Outcome::FailAndSignal { error: Errno::EPIPE, signal: Signal::PIPE });

    /// Polls `fd` for `events` without waiting; what came back.
    fn poll_now(world: &mut World, fd: u64, events: u32) -> u32 {
        let entry = PollDescriptor { descriptor: fd as i32, events: events as i16, returned: 0 };
        write_value(&mut world.memory, STRINGS, &entry).unwrap();
        world.ok(__NR_poll, &[STRINGS, 1, 0]);
        u32::from(read_value::<PollDescriptor>(&world.memory, STRINGS).unwrap().returned as u16)
    }

    /// Fills the buffer `fd` writes into, leaving `left` bytes of room.
    fn fill(world: &mut World, fd: u64, left: usize) {
        let mut written = 0;
        while written < CAPACITY - left {
            let chunk = alloc::vec![b'f'; (CAPACITY - left - written).min(0x1_0000)];
            written += world.write(fd, &chunk) as usize;
        }
        world.files.take_events();
    }

    #[test]
    fn stream_pairs_carry_bytes_both_ways_and_end_when_the_peer_closes() {
        let mut world = World::new();
        let (a, b) = world.socket_pair(SOCK_STREAM);
        assert_eq!((a, b), (0, 1));
        assert_eq!(world.files.pipes(), 2, "a buffer each way");
        // a reads buffer 2 and writes buffer 1; b the other way round.
        assert_eq!(blocked_on(world.call(__NR_read, &[a, BUFFER, 10])), [Event::PipeReadable(2)]);
        assert!(world.files.take_events().is_empty(), "blocking changed nothing");
        assert_eq!(world.write(b, b"ping"), 4);
        assert_eq!(world.files.take_events(), [Event::PipeReadable(2)], "a's sleeping read wakes");
        assert_eq!(world.read(a, 10), b"ping");
        assert_eq!(world.files.take_events(), [Event::PipeWritable(2)]);
        assert_eq!(world.write(a, b"pong!"), 5);
        assert_eq!(world.read(b, 3), b"pon", "a stream has no boundaries");
        assert_eq!(world.read(b, 10), b"g!");
        world.write(b, b"last");
        let copy = world.ok(__NR_dup, &[b]);
        world.ok(__NR_close, &[b]);
        assert_eq!(world.read(a, 10), b"last");
        assert_eq!(blocked_on(world.call(__NR_read, &[a, BUFFER, 10])), [Event::PipeReadable(2)], "a dup keeps b open");
        world.files.take_events();
        world.ok(__NR_close, &[copy]);
        let events = world.files.take_events();
        assert_eq!(
            events,
            [1, 2].map(Event::PipeReadable).into_iter().chain([1, 2].map(Event::PipeWritable)).collect::<Vec<_>>()
        );
        assert_eq!(world.read(a, 10), b"", "end of file once the peer's last description closed");
        assert_eq!(world.call(__NR_write, &[a, BUFFER, 3]), EPIPE_AND_SIGPIPE);
        assert_eq!(world.ok(__NR_write, &[a, BUFFER, 0]), 0, "an empty write is not an error");
        world.ok(__NR_close, &[a]);
        assert_eq!(world.files.pipes(), 0, "both buffers are gone with both ends");
    }

    #[test]
    fn a_full_stream_blocks_its_writer_until_the_peer_reads() {
        let mut world = World::new();
        let (a, b) = world.socket_pair(SOCK_STREAM);
        fill(&mut world, a, 0);
        assert_eq!(blocked_on(world.call(__NR_write, &[a, BUFFER, 1])), [Event::PipeWritable(1)]);
        let dont_wait = u64::from(net::MSG_DONTWAIT);
        assert_eq!(world.error(__NR_sendto, &[a, BUFFER, 1, dont_wait, 0, 0]), Errno::EAGAIN);
        assert_eq!(poll_now(&mut world, a, POLLOUT), 0);
        assert_eq!(world.read(b, 100).len(), 100);
        assert_eq!(world.files.take_events(), [Event::PipeWritable(1)], "the sleeping writer wakes");
        assert_eq!(world.write(a, b"x"), 1);
        world.ok(__NR_fcntl, &[a, u64::from(F_SETFL), u64::from(O_NONBLOCK)]);
        assert_eq!(world.error(__NR_write, &[a, BUFFER, 200]), Errno::EAGAIN);
        world.ok(__NR_close, &[b]);
        assert_eq!(world.call(__NR_write, &[a, BUFFER, 1]), EPIPE_AND_SIGPIPE, "the reader's close wins over room");
    }

    #[test]
    fn vectored_transfers_work_on_streams() {
        let mut world = World::new();
        let (a, b) = world.socket_pair(SOCK_STREAM);
        world.put(BUFFER, b"headbody");
        let vectors = [IoVector { base: BUFFER, length: 4 }, IoVector { base: BUFFER + 4, length: 4 }];
        for (index, vector) in vectors.iter().enumerate() {
            write_value(&mut world.memory, STRINGS2 + index as u64 * 16, vector).unwrap();
        }
        assert_eq!(world.ok(__NR_writev, &[a, STRINGS2, 2]), 8);
        let scatter = [IoVector { base: BUFFER + 100, length: 2 }, IoVector { base: BUFFER + 200, length: 10 }];
        for (index, vector) in scatter.iter().enumerate() {
            write_value(&mut world.memory, STRINGS2 + index as u64 * 16, vector).unwrap();
        }
        assert_eq!(world.ok(__NR_readv, &[b, STRINGS2, 2]), 8);
        assert_eq!((world.bytes(BUFFER + 100, 2), world.bytes(BUFFER + 200, 6)), (b"he".to_vec(), b"adbody".to_vec()));
    }

    #[test]
    fn packet_pairs_keep_each_write_as_one_record() {
        let mut world = World::new();
        let (a, b) = world.socket_pair(SOCK_SEQPACKET);
        for record in [&b"one"[..], b"three", b"", b"four"] {
            world.put(BUFFER, record);
            assert_eq!(world.ok(__NR_write, &[a, BUFFER, record.len() as u64]), record.len() as u64);
        }
        world.ok(__NR_ioctl, &[b, u64::from(linux_raw_sys::ioctl::FIONREAD), STRINGS]);
        assert_eq!(read_value::<i32>(&world.memory, STRINGS), Ok(12), "every record's bytes, not the headers");
        assert_eq!(world.read(b, 10), b"one", "one record a read");
        assert_eq!(world.read(b, 2), b"th", "a short buffer takes the start of a record...");
        assert_eq!(world.read(b, 10), b"", "...and the rest is dropped: this is the empty record");
        assert_eq!(world.read(b, 10), b"four");
        assert_eq!(blocked_on(world.call(__NR_read, &[b, BUFFER, 10])), [Event::PipeReadable(1)]);

        world.write(a, b"kept");
        assert_eq!(world.error(__NR_read, &[b, BAD, 10]), Errno::EFAULT);
        assert_eq!(world.read(b, 10), b"kept", "a read that faulted took nothing");
        assert_eq!(world.error(__NR_write, &[a, BAD, 10]), Errno::EFAULT);
        let dont_wait = u64::from(net::MSG_DONTWAIT);
        assert_eq!(world.error(__NR_recvfrom, &[b, BUFFER, 10, dont_wait, 0, 0]), Errno::EAGAIN, "nothing was sent");

        world.put(BUFFER, b"gathered");
        let vectors = [IoVector { base: BUFFER, length: 3 }, IoVector { base: BUFFER + 3, length: 5 }];
        for (index, vector) in vectors.iter().enumerate() {
            write_value(&mut world.memory, STRINGS2 + index as u64 * 16, vector).unwrap();
        }
        assert_eq!(world.ok(__NR_writev, &[a, STRINGS2, 2]), 8);
        assert_eq!(world.read(b, 100), b"gathered", "a vectored write is one record");

        let too_long = MAX_RECORD as u64 + 1;
        assert_eq!(world.error(__NR_write, &[a, BUFFER, too_long]), Errno::EMSGSIZE);
        assert_eq!(world.ok(__NR_write, &[a, BUFFER, MAX_RECORD as u64]), MAX_RECORD as u64, "the largest fills it");
        assert_eq!(
            blocked_on(world.call(__NR_write, &[a, BUFFER, 0])),
            [Event::PipeWritable(1)],
            "even an empty one waits"
        );
        assert_eq!(poll_now(&mut world, a, POLLOUT), 0);
        assert_eq!(world.read(b, MAX_RECORD).len(), MAX_RECORD);
        assert_eq!(world.files.take_events(), [Event::PipeReadable(1), Event::PipeWritable(1)]);
        assert_eq!(poll_now(&mut world, a, POLLOUT), POLLOUT);

        world.ok(__NR_close, &[b]);
        assert_eq!(world.error(__NR_write, &[a, BUFFER, 1]), Errno::EPIPE, "EPIPE without SIGPIPE, as Linux's packets");
        assert_eq!(world.read(a, 10), b"", "end of file");
    }

    #[test]
    fn shutdown_stops_one_direction_at_a_time() {
        let mut world = World::new();
        let (a, b) = world.socket_pair(SOCK_STREAM);
        world.write(a, b"bye");
        world.files.take_events();
        world.ok(__NR_shutdown, &[a, u64::from(net::SHUT_WR)]);
        assert_eq!(world.files.take_events(), [Event::PipeReadable(1), Event::PipeWritable(1)]);
        assert_eq!(poll_now(&mut world, b, POLLIN | POLLRDHUP), POLLIN | POLLRDHUP);
        assert_eq!(world.read(b, 10), b"bye", "what was sent before is still read");
        assert_eq!(world.read(b, 10), b"", "then end of file");
        assert_eq!(world.call(__NR_write, &[a, BUFFER, 1]), EPIPE_AND_SIGPIPE);
        let no_signal = u64::from(net::MSG_NOSIGNAL);
        assert_eq!(world.error(__NR_sendto, &[a, BUFFER, 1, no_signal, 0, 0]), Errno::EPIPE, "MSG_NOSIGNAL");
        assert_eq!(world.write(b, b"still"), 5, "the other direction stays open");
        assert_eq!(world.read(a, 10), b"still");

        world.write(b, b"unread");
        world.ok(__NR_shutdown, &[a, u64::from(net::SHUT_RD)]);
        assert_eq!(world.call(__NR_write, &[b, BUFFER, 1]), EPIPE_AND_SIGPIPE, "the peer can no longer send");
        assert_eq!(world.read(a, 10), b"unread");
        assert_eq!(world.read(a, 10), b"", "end of file, not a sleep");
        assert_eq!(poll_now(&mut world, a, POLLIN | POLLOUT | POLLRDHUP), POLLIN | POLLOUT | POLLRDHUP | POLLHUP);
        world.files.take_events();
        world.ok(__NR_shutdown, &[a, u64::from(net::SHUT_RDWR)]);
        assert!(world.files.take_events().is_empty(), "shutting down again changes nothing");
        assert_eq!(world.error(__NR_shutdown, &[b, 3]), Errno::EINVAL);
        let (pipe, _) = world.pipe(0);
        assert_eq!(world.error(__NR_shutdown, &[pipe, 0]), Errno::ENOTSOCK);
        assert_eq!(world.error(__NR_shutdown, &[99, 0]), Errno::EBADF);
        world.ok(__NR_close, &[a]);
        world.ok(__NR_close, &[b]);
        assert_eq!(world.files.pipes(), 1, "only the pipe is left");
    }

    #[test]
    fn poll_and_select_see_both_directions() {
        let mut world = World::new();
        let (a, b) = world.socket_pair(SOCK_STREAM);
        assert_eq!(poll_now(&mut world, a, POLLIN | POLLOUT), POLLOUT);
        let entry = PollDescriptor { descriptor: a as i32, events: (POLLIN | POLLOUT) as i16, returned: 0 };
        write_value(&mut world.memory, STRINGS, &entry).unwrap();
        fill(&mut world, a, 100);
        let outcome = world.call(__NR_poll, &[STRINGS, 1, u64::from(u32::MAX)]);
        let events = alloc::vec![Event::PipeReadable(2), Event::PipeWritable(1)];
        assert_eq!(outcome, Ok(Outcome::Block(Wait { events, timeout_ns: None, signal_mask: None })));
        world.write(b, b"x");
        assert_eq!(poll_now(&mut world, a, POLLIN | POLLOUT), POLLIN);
        let read_set = 1u64 << a;
        write_value(&mut world.memory, STRINGS2, &read_set).unwrap();
        assert_eq!(world.ok(__NR_select, &[a + 1, STRINGS2, 0, 0, 0]), 1);
        assert_eq!(read_value::<u64>(&world.memory, STRINGS2), Ok(read_set));
    }

    #[test]
    fn ends_are_read_write_files_with_their_own_flags() {
        let mut world = World::new();
        let (a, b) = world.socket_pair(SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK);
        assert_eq!(world.ok(__NR_fcntl, &[a, u64::from(F_GETFD)]), u64::from(FD_CLOEXEC));
        let status = world.ok(__NR_fcntl, &[b, u64::from(F_GETFL)]) as u32;
        assert_eq!(status, O_RDWR | O_NONBLOCK | O_LARGEFILE);
        assert_eq!(world.error(__NR_read, &[a, BUFFER, 1]), Errno::EAGAIN);
        world.ok(__NR_fstat, &[a, BUFFER]);
        let stat: Stat = read_value(&world.memory, BUFFER).unwrap();
        assert_eq!((stat.mode, stat.inode), (S_IFSOCK | 0o777, 2));
        world.ok(__NR_fstat, &[b, BUFFER]);
        assert_eq!(read_value::<Stat>(&world.memory, BUFFER).unwrap().inode, 1, "each end its own inode");
        assert_eq!(world.error(__NR_lseek, &[a, 0, 0]), Errno::ESPIPE);
        assert_eq!(world.error(__NR_pread64, &[a, BUFFER, 1, 0]), Errno::ESPIPE);
        assert_eq!(world.error(__NR_fsync, &[a]), Errno::EINVAL);
        assert_eq!(world.error(__NR_fcntl, &[a, u64::from(F_GETPIPE_SZ)]), Errno::EBADF);

        let (c, d) = world.socket_pair(SOCK_SEQPACKET);
        assert_eq!(world.ok(__NR_fcntl, &[c, u64::from(F_GETFD)]), 0);
        let option = |world: &mut World, fd: u64, level: u32, name: u32, room: i32| {
            write_value(&mut world.memory, STRINGS, &room).unwrap();
            world.put(STRINGS2, &[0xff; 4]);
            world.call(__NR_getsockopt, &[fd, u64::from(level), u64::from(name), STRINGS2, STRINGS])
        };
        assert_eq!(option(&mut world, c, net::SOL_SOCKET, net::SO_TYPE, 4), Ok(Outcome::Done(0)));
        assert_eq!(read_value::<i32>(&world.memory, STRINGS2), Ok(SOCK_SEQPACKET as i32));
        assert_eq!(read_value::<i32>(&world.memory, STRINGS), Ok(4));
        option(&mut world, a, net::SOL_SOCKET, net::SO_TYPE, 2).unwrap();
        assert_eq!(world.bytes(STRINGS2, 4), [SOCK_STREAM as u8, 0, 0xff, 0xff], "a short buffer takes the start");
        assert_eq!(read_value::<i32>(&world.memory, STRINGS), Ok(2));
        option(&mut world, d, net::SOL_SOCKET, net::SO_DOMAIN, 8).unwrap();
        assert_eq!(read_value::<i32>(&world.memory, STRINGS2), Ok(net::AF_UNIX as i32));
        assert_eq!(option(&mut world, d, net::SOL_SOCKET, net::SO_ERROR, 4), Ok(Outcome::Done(0)));
        assert_eq!(read_value::<i32>(&world.memory, STRINGS2), Ok(0));
        assert_eq!(option(&mut world, d, net::SOL_SOCKET, net::SO_RCVBUF, 4), Err(Errno::ENOPROTOOPT));
        assert_eq!(option(&mut world, d, 6, net::SO_TYPE, 4), Err(Errno::EOPNOTSUPP));
        assert_eq!(option(&mut world, d, net::SOL_SOCKET, net::SO_TYPE, -1), Err(Errno::EINVAL));
        let file = world.open(b"/etc/motd", O_RDONLY);
        assert_eq!(option(&mut world, file, net::SOL_SOCKET, net::SO_TYPE, 4), Err(Errno::ENOTSOCK));
        let args = [d, u64::from(net::SOL_SOCKET), u64::from(net::SO_TYPE), STRINGS2, BAD];
        assert_eq!(world.error(__NR_getsockopt, &args), Errno::EFAULT);

        world.process.exec(&mut world.files);
        assert_eq!(world.error(__NR_fcntl, &[a, u64::from(F_GETFD)]), Errno::EBADF, "closed on exec");
        assert_eq!(world.error(__NR_fcntl, &[b, u64::from(F_GETFD)]), Errno::EBADF);
        assert_eq!(world.files.pipes(), 2, "only the second pair is left");
        world.write(c, b"kept");
        assert_eq!(world.read(d, 10), b"kept");
    }

    #[test]
    fn an_end_closes_with_the_last_process_holding_it() {
        let mut world = World::new();
        let (a, b) = world.socket_pair(SOCK_SEQPACKET | SOCK_CLOEXEC);
        let child = world.process.fork(&mut world.files);
        world.ok(__NR_close, &[b]);
        assert_eq!(blocked_on(world.call(__NR_read, &[a, BUFFER, 10])), [Event::PipeReadable(2)]);
        child.exit(&mut world.files);
        assert!(world.files.take_events().contains(&Event::PipeReadable(2)));
        assert_eq!(world.read(a, 10), b"", "end of file once no process holds the peer");
    }

    #[test]
    fn sendto_and_recvfrom_are_write_and_read_with_flags() {
        let mut world = World::new();
        let (a, b) = world.socket_pair(SOCK_STREAM);
        world.put(BUFFER, b"hi");
        assert_eq!(world.ok(__NR_sendto, &[a, BUFFER, 2, 0, 0, 0]), 2);
        write_value(&mut world.memory, STRINGS2, &16i32).unwrap();
        assert_eq!(world.ok(__NR_recvfrom, &[b, BUFFER + 8, 10, 0, STRINGS, STRINGS2]), 2);
        assert_eq!(world.bytes(BUFFER + 8, 2), b"hi");
        assert_eq!(read_value::<i32>(&world.memory, STRINGS2), Ok(0), "the peer has no name");
        let dont_wait = u64::from(net::MSG_DONTWAIT);
        assert_eq!(world.error(__NR_recvfrom, &[b, BUFFER, 10, dont_wait, 0, 0]), Errno::EAGAIN);
        assert_eq!(blocked_on(world.call(__NR_recvfrom, &[b, BUFFER, 10, 0, 0, 0])), [Event::PipeReadable(1)]);
        let peek = u64::from(net::MSG_PEEK);
        assert_eq!(world.error(__NR_recvfrom, &[b, BUFFER, 10, peek, 0, 0]), Errno::EOPNOTSUPP);
        let oob = u64::from(net::MSG_OOB);
        assert_eq!(world.error(__NR_sendto, &[a, BUFFER, 1, oob, 0, 0]), Errno::EOPNOTSUPP);
        assert_eq!(world.error(__NR_sendto, &[a, BUFFER, 1, 0, STRINGS, 16]), Errno::EISCONN);
        assert_eq!(world.error(__NR_sendto, &[a, BUFFER, 1, 0, STRINGS, 200]), Errno::EINVAL);
        assert_eq!(world.error(__NR_sendto, &[a, BUFFER, 1, 0, BAD, 16]), Errno::EFAULT);
        assert_eq!(world.ok(__NR_sendto, &[a, BUFFER, 1, 0, STRINGS, 0]), 1, "an empty address is none");
        assert_eq!(world.error(__NR_recvfrom, &[b, BUFFER, 10, 0, STRINGS, BAD]), Errno::EFAULT);
        write_value(&mut world.memory, STRINGS2, &-1i32).unwrap();
        assert_eq!(world.error(__NR_recvfrom, &[b, BUFFER, 10, 0, STRINGS, STRINGS2]), Errno::EINVAL);
        assert_eq!(world.ok(__NR_recvfrom, &[b, BUFFER, 10, 0, 0, 0]), 1, "the failed calls took nothing");
        let (_, pipe) = world.pipe(0);
        assert_eq!(world.error(__NR_sendto, &[pipe, BUFFER, 1, 0, 0, 0]), Errno::ENOTSOCK);

        let (c, d) = world.socket_pair(SOCK_SEQPACKET);
        assert_eq!(world.ok(__NR_sendto, &[c, BUFFER, 1, 0, STRINGS, 16]), 1, "packets ignore an address");
        assert_eq!(world.read(d, 10).len(), 1);
    }

    #[test]
    fn socketpair_checks_its_arguments() {
        let mut world = World::new();
        let pair = |world: &mut World, domain: u32, kind: u32, protocol: u32, address: u64| {
            world.call(__NR_socketpair, &[u64::from(domain), u64::from(kind), u64::from(protocol), address])
        };
        let unix = net::AF_UNIX;
        assert_eq!(pair(&mut world, AF_INET, SOCK_STREAM, 0, STRINGS2), Err(Errno::EAFNOSUPPORT));
        assert_eq!(pair(&mut world, unix, 99, 0, STRINGS2), Err(Errno::EINVAL));
        assert_eq!(pair(&mut world, unix, 12, 0, STRINGS2), Err(Errno::EINVAL), "past SOCK_MAX");
        assert_eq!(pair(&mut world, unix, SOCK_DGRAM, 0, STRINGS2), Err(Errno::ESOCKTNOSUPPORT));
        assert_eq!(pair(&mut world, unix, SOCK_STREAM | O_APPEND, 0, STRINGS2), Err(Errno::EINVAL));
        assert_eq!(pair(&mut world, unix, SOCK_STREAM, 6, STRINGS2), Err(Errno::EPROTONOSUPPORT));
        assert_eq!(pair(&mut world, unix, SOCK_STREAM, unix, STRINGS2), Ok(Outcome::Done(0)), "PF_UNIX is protocol 1");
        assert_eq!(world.files.pipes(), 2);
        assert_eq!(pair(&mut world, unix, SOCK_STREAM, 0, BAD), Err(Errno::EFAULT));
        assert_eq!(world.files.pipes(), 2, "nothing is left of a pair that could not be returned");
        assert_eq!(world.socket_pair(SOCK_STREAM), (2, 3), "nor of its descriptors");
        world.socket_pair(SOCK_SEQPACKET);
        world.pipe(0);
        assert_eq!(world.files.pipes(), 7);
        assert_eq!(pair(&mut world, unix, SOCK_STREAM, 0, STRINGS2), Err(Errno::ENFILE), "a pair needs two of the 8");
        assert_eq!(world.files.pipes(), 7);
        world.pipe(0);
        assert_eq!(pair(&mut world, unix, SOCK_STREAM, 0, STRINGS2), Err(Errno::ENFILE));
    }
}
