//! Model-based test: random sequences of reservation changes and address-space operations
//! on a [`DomainMemory`] against a reference of plain sets and maps (SPEC.md §12): which
//! gfns are populated, which 512-gfn blocks are intact extents, and each space's leaves
//! by address. After every step every result, populated count, gfn, mapping count, space
//! and translation is compared; at the end the domain is destroyed and every frame must
//! be back.

use crate::mm::domain_memory::{DomainMemory, MemoryError, Tlb};
use crate::mm::fakes::{TestFrames, TestMemory};
use crate::mm::frames::Frame;
use crate::mm::paging::{FrameMemory, PageSize};
use hypercall_abi::layout::{is_canonical, HYPERVISOR_END, HYPERVISOR_START};
use hypercall_abi::memory::{map_flags, INITIAL_SPACE, LARGE_PAGE_PAGES, NO_SPACE, SPACES_MAX};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

/// Three 512-gfn blocks of quota: enough for two 2 MiB extents beside small pages.
const MAX_PAGES: u64 = 3 * LARGE_PAGE_PAGES;
const SMALL: u64 = 4096;
const LARGE: u64 = 512 * SMALL;
/// A 2 MiB-aligned guest region the operations crowd into.
const BASE: u64 = 0x4000_0000;

struct NoTlb;

impl Tlb for NoTlb {
    fn flush_page(&mut self, _: u64) {}
    fn flush_all(&mut self) {}
}

#[derive(Clone, Debug)]
enum Op {
    Populate(bool),
    Release { gfn: u64, large: bool },
    Map { handle: u64, address: u64, gfn: u64, flags: u32 },
    Unmap { handle: u64, address: u64, large: bool },
    Protect { handle: u64, address: u64, flags: u32 },
    CreateSpace,
    DestroySpace(u64),
    Switch { kernel: u64, user: u64 },
}

/// Addresses: small pages in three 2 MiB regions, their 2 MiB bases, and the edges
/// (unaligned, hypervisor range, non-canonical, top of the kernel half).
fn address() -> impl Strategy<Value = u64> {
    prop_oneof![
        6 => (0u64..2, 0u64..3).prop_map(|(region, page)| BASE + region * LARGE + page * SMALL),
        3 => (0u64..3).prop_map(|region| BASE + region * LARGE),
        1 => prop_oneof![
            Just(BASE + 1),
            Just(HYPERVISOR_START),
            Just(HYPERVISOR_END - LARGE),
            Just(0x0000_8000_0000_0000),
            Just(u64::MAX - LARGE + 1),
        ],
    ]
}

fn gfn() -> impl Strategy<Value = u64> {
    prop_oneof![
        6 => 0u64..4,
        3 => prop_oneof![Just(511u64), Just(512), Just(513), Just(1024), Just(1025)],
        1 => prop_oneof![Just(MAX_PAGES - 1), Just(MAX_PAGES), Just(u64::MAX)],
    ]
}

fn handle() -> impl Strategy<Value = u64> {
    prop_oneof![8 => Just(INITIAL_SPACE), 6 => 1u64..3, 1 => Just(SPACES_MAX), 1 => Just(NO_SPACE)]
}

/// Any flags within `map_flags::ALL`, LARGE one time in four.
fn flags() -> impl Strategy<Value = u32> {
    let small = map_flags::ALL & !map_flags::LARGE;
    (0..=small, prop::bool::weighted(0.25))
        .prop_map(move |(bits, large)| bits & small | if large { map_flags::LARGE } else { 0 })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<bool>().prop_map(Op::Populate),
        2 => (gfn(), any::<bool>()).prop_map(|(gfn, large)| Op::Release { gfn, large }),
        8 => (handle(), address(), gfn(), flags()).prop_map(|(handle, address, gfn, flags)| Op::Map { handle, address, gfn, flags }),
        2 => (handle(), address(), any::<bool>()).prop_map(|(handle, address, large)| Op::Unmap { handle, address, large }),
        2 => (handle(), address(), flags()).prop_map(|(handle, address, flags)| Op::Protect { handle, address, flags }),
        2 => Just(Op::CreateSpace),
        1 => handle().prop_map(Op::DestroySpace),
        1 => (handle(), handle()).prop_map(|(kernel, user)| Op::Switch { kernel, user }),
    ]
}

#[derive(Clone, Copy, Debug)]
struct Leaf {
    gfn: u64,
    flags: u32,
}

impl Leaf {
    fn large(&self) -> bool {
        self.flags & map_flags::LARGE != 0
    }

    fn bytes(&self) -> u64 {
        if self.large() {
            LARGE
        } else {
            SMALL
        }
    }
}

/// The reference.
struct Model {
    populated: BTreeSet<u64>,
    /// Blocks populated as one 2 MiB extent and whole since.
    extents: BTreeSet<u64>,
    spaces: Vec<Option<BTreeMap<u64, Leaf>>>,
    kernel: usize,
    user: Option<usize>,
}

type Outcome = Result<u64, MemoryError>;

fn size_bytes(large: bool) -> u64 {
    if large {
        LARGE
    } else {
        SMALL
    }
}

fn check_address(address: u64, large: bool) -> Result<(), MemoryError> {
    if !is_canonical(address) || !address.is_multiple_of(size_bytes(large)) {
        return Err(MemoryError::Invalid);
    }
    if (HYPERVISOR_START..HYPERVISOR_END).contains(&address) {
        return Err(MemoryError::Permission);
    }
    Ok(())
}

impl Model {
    fn new() -> Self {
        Self {
            populated: BTreeSet::new(),
            extents: BTreeSet::new(),
            spaces: vec![Some(BTreeMap::new())],
            kernel: INITIAL_SPACE as usize,
            user: None,
        }
    }

    fn space(&self, handle: u64) -> Result<usize, MemoryError> {
        usize::try_from(handle)
            .ok()
            .filter(|&index| self.spaces.get(index).is_some_and(Option::is_some))
            .ok_or(MemoryError::NoSuchSpace)
    }

    /// The leaf covering `address` in space `index`, with its start.
    fn covering(&self, index: usize, address: u64) -> Option<(u64, Leaf)> {
        let leaves = self.spaces[index].as_ref().unwrap();
        let (&start, &leaf) = leaves.range(..=address).next_back()?;
        (address - start < leaf.bytes()).then_some((start, leaf))
    }

    fn populate(&mut self, large: bool) -> Outcome {
        let count = if large { LARGE_PAGE_PAGES } else { 1 };
        if self.populated.len() as u64 + count > MAX_PAGES {
            return Err(MemoryError::NoMemory);
        }
        if large {
            let block = (0..MAX_PAGES / LARGE_PAGE_PAGES)
                .find(|block| self.populated.range(block * 512..(block + 1) * 512).next().is_none())
                .ok_or(MemoryError::NoMemory)?;
            self.populated.extend(block * 512..(block + 1) * 512);
            self.extents.insert(block);
            Ok(block * 512)
        } else {
            let gfn = (0..).find(|gfn| !self.populated.contains(gfn)).unwrap();
            self.populated.insert(gfn);
            Ok(gfn)
        }
    }

    fn release(&mut self, first: u64, large: bool) -> Outcome {
        let count = if large { LARGE_PAGE_PAGES } else { 1 };
        let limit = MAX_PAGES.next_multiple_of(LARGE_PAGE_PAGES);
        if !first.is_multiple_of(count) || first.checked_add(count).is_none_or(|end| end > limit) {
            return Err(MemoryError::Invalid);
        }
        let gfns = first..first + count;
        if !gfns.clone().all(|gfn| self.populated.contains(&gfn)) {
            return Err(MemoryError::Invalid);
        }
        let blocks: BTreeSet<u64> = gfns.clone().map(|gfn| gfn / 512).collect();
        for leaves in self.spaces.iter_mut().flatten() {
            leaves.retain(
                |_, leaf| {
                    if leaf.large() {
                        !blocks.contains(&(leaf.gfn / 512))
                    } else {
                        !gfns.contains(&leaf.gfn)
                    }
                },
            );
        }
        for gfn in gfns {
            self.populated.remove(&gfn);
        }
        self.extents.retain(|block| !blocks.contains(block));
        Ok(0)
    }

    fn map(&mut self, handle: u64, address: u64, gfn: u64, flags: u32) -> Outcome {
        let index = self.space(handle)?;
        let large = flags & map_flags::LARGE != 0;
        check_address(address, large)?;
        if !self.populated.contains(&gfn) {
            return Err(MemoryError::Invalid);
        }
        if large && !(gfn.is_multiple_of(512) && self.extents.contains(&(gfn / 512))) {
            return Err(MemoryError::Invalid);
        }
        if flags & map_flags::USER == 0 && self.user == Some(index) {
            return Err(MemoryError::Permission);
        }
        let leaves = self.spaces[index].as_ref().unwrap();
        let end = address.saturating_add(size_bytes(large));
        let overlaps = self.covering(index, address).is_some() || leaves.range(address..end).next().is_some();
        if overlaps {
            return Err(MemoryError::Exists);
        }
        self.spaces[index].as_mut().unwrap().insert(address, Leaf { gfn, flags });
        Ok(0)
    }

    fn unmap(&mut self, handle: u64, address: u64, large: bool) -> Outcome {
        let index = self.space(handle)?;
        check_address(address, large)?;
        let leaves = self.spaces[index].as_mut().unwrap();
        match leaves.get(&address) {
            Some(leaf) if leaf.large() == large => {
                leaves.remove(&address);
                Ok(0)
            }
            _ => Err(MemoryError::NotFound),
        }
    }

    fn protect(&mut self, handle: u64, address: u64, flags: u32) -> Outcome {
        let index = self.space(handle)?;
        let large = flags & map_flags::LARGE != 0;
        check_address(address, large)?;
        if flags & map_flags::USER == 0 && self.user == Some(index) {
            return Err(MemoryError::Permission);
        }
        match self.spaces[index].as_mut().unwrap().get_mut(&address) {
            Some(leaf) if leaf.large() == large => {
                leaf.flags = flags;
                Ok(0)
            }
            _ => Err(MemoryError::NotFound),
        }
    }

    fn create_space(&mut self) -> Outcome {
        let index = match self.spaces.iter().position(Option::is_none) {
            Some(index) => index,
            None if (self.spaces.len() as u64) < SPACES_MAX => {
                self.spaces.push(None);
                self.spaces.len() - 1
            }
            None => return Err(MemoryError::NoSpace),
        };
        self.spaces[index] = Some(BTreeMap::new());
        Ok(index as u64)
    }

    fn destroy_space(&mut self, handle: u64) -> Outcome {
        let index = self.space(handle)?;
        if index == self.kernel || self.user == Some(index) {
            return Err(MemoryError::Busy);
        }
        self.spaces[index] = None;
        Ok(0)
    }

    fn switch(&mut self, kernel: u64, user: u64) -> Outcome {
        let kernel = self.space(kernel)?;
        let user = if user == NO_SPACE { None } else { Some(self.space(user)?) };
        if user == Some(kernel) {
            return Err(MemoryError::Invalid);
        }
        if let Some(user) = user {
            if self.spaces[user].as_ref().unwrap().values().any(|leaf| leaf.flags & map_flags::USER == 0) {
                return Err(MemoryError::Permission);
            }
        }
        self.kernel = kernel;
        self.user = user;
        Ok(0)
    }

    /// `query`'s answer: gfn << 12 | flags of the page at `address`.
    fn query(&self, handle: u64, address: u64) -> Outcome {
        let index = self.space(handle)?;
        if !is_canonical(address) {
            return Err(MemoryError::Invalid);
        }
        let (start, leaf) = self.covering(index, address).ok_or(MemoryError::NotFound)?;
        Ok((leaf.gfn + (address - start) / SMALL) << 12 | u64::from(leaf.flags))
    }

    fn mapping_count(&self, gfn: u64) -> u32 {
        let leaves = self.spaces.iter().flatten().flat_map(BTreeMap::values);
        leaves.filter(|leaf| if leaf.large() { leaf.gfn / 512 == gfn / 512 } else { leaf.gfn == gfn }).count() as u32
    }
}

fn unit(result: Result<(), MemoryError>) -> Outcome {
    result.map(|()| 0)
}

fn check(domain: &DomainMemory, memory: &TestMemory, model: &Model) -> Result<(), TestCaseError> {
    prop_assert_eq!(domain.populated_pages(), model.populated.len() as u64);
    prop_assert_eq!(domain.max_pages(), MAX_PAGES);
    let probes = (0..8).chain(508..516).chain(1020..1028).chain([MAX_PAGES - 1, MAX_PAGES]);
    for gfn in probes {
        prop_assert_eq!(domain.gfn_frame(gfn).is_some(), model.populated.contains(&gfn), "gfn {}", gfn);
        prop_assert_eq!(domain.mapping_count(gfn), model.mapping_count(gfn), "mappings of gfn {}", gfn);
    }
    for handle in 0..SPACES_MAX + 1 {
        prop_assert_eq!(domain.has_space(handle), model.space(handle).is_ok(), "space {}", handle);
    }
    let root = |index: usize| domain.space(index as u64).map(|space| space.root());
    prop_assert_eq!(Some(domain.kernel_root()), root(model.kernel));
    prop_assert_eq!(domain.user_root(), model.user.and_then(root));
    prop_assert!(domain.table_frames() <= domain.table_limit());
    for (index, space) in model.spaces.iter().enumerate() {
        if space.is_none() {
            continue;
        }
        for region in 0..3 {
            for page in [0, 1, 2, 3, 511] {
                let address = BASE + region * LARGE + page * SMALL;
                let got = domain.query(memory, index as u64, address);
                prop_assert_eq!(got, model.query(index as u64, address), "space {} address {:#x}", index, address);
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn domain_memory_follows_a_map_model(ops in prop::collection::vec(op(), 1..60)) {
        let mut memory = TestMemory::default();
        let mut frames = TestFrames::new();
        let hypervisor_root = Frame::from_number(1);
        memory.zero(hypervisor_root);
        let mut domain = DomainMemory::new(&mut memory, &mut frames, hypervisor_root, MAX_PAGES).unwrap();
        let mut model = Model::new();
        for op in ops {
            let (got, want) = match op.clone() {
                Op::Populate(large) => {
                    let size = if large { PageSize::Large } else { PageSize::Small };
                    (domain.populate(&mut memory, &mut frames, size), model.populate(large))
                }
                Op::Release { gfn, large } => {
                    let size = if large { PageSize::Large } else { PageSize::Small };
                    (unit(domain.release(&mut memory, &mut frames, &mut NoTlb, gfn, size)), model.release(gfn, large))
                }
                Op::Map { handle, address, gfn, flags } => (
                    unit(domain.map(&mut memory, &mut frames, &mut NoTlb, handle, address, gfn, flags)),
                    model.map(handle, address, gfn, flags),
                ),
                Op::Unmap { handle, address, large } => {
                    (unit(domain.unmap(&mut memory, &mut NoTlb, handle, address, large)), model.unmap(handle, address, large))
                }
                Op::Protect { handle, address, flags } => (
                    unit(domain.protect(&mut memory, &mut NoTlb, handle, address, flags)),
                    model.protect(handle, address, flags),
                ),
                Op::CreateSpace => (domain.create_space(&mut memory, &mut frames), model.create_space()),
                Op::DestroySpace(handle) => {
                    (unit(domain.destroy_space(&mut memory, &mut frames, handle)), model.destroy_space(handle))
                }
                Op::Switch { kernel, user } => (unit(domain.switch(kernel, user)), model.switch(kernel, user)),
            };
            prop_assert_eq!(got, want, "{:?}", op);
            check(&domain, &memory, &model)?;
        }
        domain.destroy(&mut memory, &mut frames);
        prop_assert!(frames.outstanding.is_empty(), "{} frames leaked", frames.outstanding.len());
    }
}
