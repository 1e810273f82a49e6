//! The multi-root walk.

use super::*;

/// Walking several roots: each process's own pages under its root, the kernel's once (under
/// the first root), and every later root's kernel entries reported as shared.
#[test]
fn multi_root_walk_reports_shared_kernel_tables_once() {
    use awk_paging::space::{walk_roots, Walked};
    let mem = EmuMemory::new(1024);
    let cpu = EmuTlb::new();
    let mut k = kernel(&mem, &cpu);
    map_kernel(&mut k, KVA, PhyAddr::new(0x7000_0000));
    map_kernel(&mut k, KVA + (1 << 39), PhyAddr::new(0x7000_1000));
    let (ia, ib) = (ContextId::new(), ContextId::new());
    let (mut a, mut b) = (user(&mem, &cpu, &k, &ia), user(&mem, &cpu, &k, &ib));
    map_user(&mut a, UVA, PhyAddr::new(0x6000_0000), user_rw());
    map_user(&mut b, UVA, PhyAddr::new(0x6000_1000), user_rw());
    map_user(&mut b, UVA + 0x1000, PhyAddr::new(0x6000_2000), user_ro());
    let mut leaves = Vec::new();
    let mut shared = Vec::new();
    walk_roots(&ARCH, &&mem, &[a.root(), b.root()], |w| match w {
        Walked::Leaf { root, mapping } => {
            leaves.push((root, mapping.page.as_u64(), mapping.frame.as_u64()))
        }
        Walked::Shared {
            root,
            first,
            level,
            va,
            ..
        } => shared.push((root, first, level, va.as_u64())),
    });
    assert_eq!(
        leaves,
        [
            (0, UVA, 0x6000_0000),
            (0, KVA, 0x7000_0000),
            (0, KVA + (1 << 39), 0x7000_1000),
            (1, UVA, 0x6000_1000),
            (1, UVA + 0x1000, 0x6000_2000),
        ]
    );
    assert_eq!(shared.len(), 256);
    assert!(shared
        .iter()
        .all(|&(root, first, level, va)| root == 1 && first == 0 && level == 3 && va >= KVA));
    assert_eq!(shared[0].3, KVA);
}
