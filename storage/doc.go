// Package storage is offshoot's copy-on-write branch storage: a catalog of
// projects, branches (timelines) and snapshots, and a versioned store of
// 8 KiB file blocks on pebble from which branches fork in O(1).
//
// # Model
//
// All state lives in one pebble database under the data directory, tagged
// with a format-version key (Open refuses unknown versions with ErrFormat).
//
// A project is one Postgres cluster. Its main branch owns the project's root
// timeline. A timeline is the storage of one branch: the versions written
// on it plus a read-only view of its parent timeline at ParentSeq. Fork
// creates a child timeline and writes only catalog records, so its cost does
// not depend on the data size. A branch points at one timeline; Reset points
// it at a fresh child of its parent branch's head (keeping the old timeline
// as a snapshot unless discarded), or of a snapshot, in which case the
// branch keeps its fork point from its parent (Branch.BaseTimeline, the base
// of a merge back). RenameBranch changes a branch's name only. Timelines
// outlive their branch (detached) while a snapshot, a child timeline or a
// branch's fork point reads them. DeleteProject drops a
// whole project (branches, snapshots, all its timelines and their versions)
// in one batch; without Force only a project with just an unprotected main.
//
// Every mutation takes the next store-wide sequence number (seq) and commits
// as one pebble batch. Versioned records are keyed by timeline and seq, with
// the seq inverted so the newest version sorts first:
//
//	D<tl><dir><name>\0<^seq>   directory entry -> (inode, type) or tombstone
//	I<tl><ino><^seq>           inode attributes (mode, uid, gid, nlink, size,
//	                           times, parent dir, truncation records) or tombstone
//	B<tl><ino><blk><^seq>      one 8 KiB block, trailing zeros trimmed
//	C<tl>                      the timeline's usage counters (unversioned)
//
// Files are addressed by inode, so rename rewrites two directory entries and
// never copies data; Postgres recycles 16 MiB WAL segments that way.
// Inode numbers are store-wide unique and inherited by forks; RootIno (1) is
// every timeline's root directory.
//
// # Reads through ancestors
//
// Reading key k of timeline T at seq S finds the newest version of k in T
// with seq <= S; if T has none it continues in T's parent at
// min(S, ParentSeq), and so on up to the root. Unlink, rmdir and rename
// write tombstones, so they shadow ancestors. Truncation is recorded in the
// inode: a shrink to size z at seq t cuts every block at or past ceil(z/8K)
// whose version is older than t (the partial last block is rewritten with
// its tail zeroed), so truncate-then-extend reads zeros, never resurrected
// ancestor data. Blocks never written read as zeros (sparse files).
//
// # API for the file system layer
//
// Store.OpenHead(project, branch) returns the single writable Head of a
// branch (a second one gets ErrBusy); Store.OpenView(project, branch, at)
// returns a read-only View at AtHead, AtSnapshot, AtSeq or AtTime. Both
// offer Lookup(parent, name), GetAttr(ino), ReadDir(ino), ReadAt(ino, p,
// off), Readlink(ino) and StatFS(); Head adds Create, Mkdir, Symlink, Link,
// Unlink, Rmdir, Rename (replacing an existing target), SetAttr (mode, uid,
// gid, size, atime, mtime), WriteAt, Fallocate, Forget and Sync. Errors map
// onto errno: ErrNotExist ENOENT, ErrExist EEXIST, ErrNotDir ENOTDIR,
// ErrIsDir EISDIR, ErrNotEmpty ENOTEMPTY, ErrInvalidFileName and
// ErrRenameLoop and ErrInvalidArgument EINVAL, ErrClosed EIO.
//
// A Head caches inode attributes (it is the only writer of its timeline)
// and buffers block writes (Options.HeadBufferBytes, default 32 MiB):
// rewriting a block before the next flush replaces it in memory, which is
// what Postgres does to its current WAL page on every commit. Flushed
// blocks are recycled for the next writes until a whole history tick
// passes without a commit; then an idle head lets them go. A flush
// commits all buffered blocks and attribute changes as one pebble batch with
// one seq, without fsync. Flushes happen on Sync, when the buffer is full,
// at every history tick, before any other mutation (so metadata never
// overtakes earlier data writes), before a fork, snapshot or view of the
// head, and on Close. Other mutations commit one batch each. An unlinked
// file stays readable by inode number until Forget or Close (the FUSE layer
// calls Forget when the kernel forgets the inode); such inodes are also
// recorded in the store, and the next OpenHead drops any that a crashed
// head left behind.
//
// Reads use pooled pebble iterators (refreshed after every commit of the
// head and at least every second) and bloom filters on the key prefix. A
// reader caches, per ancestor level and inode, the set of blocks that level
// holds (when it holds at most 4096 of them), so a read on a deep chain of
// small deltas seeks only the levels that can have the block.
//
// # Durability and crashes
//
// Head.Sync (what fsync and fdatasync map to) flushes the head and makes a
// durable pebble WAL commit; concurrent Syncs of all heads share one fsync
// (group commit). Every batch is appended to pebble's WAL in commit order
// and a head commits its batches in seq order, so after a crash the store
// recovers to a prefix of each head's mutation order that contains every
// mutation acknowledged before a completed Sync. Writes still in a head's
// buffer are lost, exactly as unsynced writes are on a local disk.
// Postgres writes and fsyncs WAL before the data pages it covers, so any
// such prefix is a state it can recover from; that is also why forking a
// running branch needs no pause.
//
// Seqs and inode numbers are reserved in durable chunks before they are
// handed out, so neither is ever reused after a crash.
//
// # History, forks in time and GC
//
// Every HistoryTick (default 1 s) the store flushes all heads and records
// (wall time, seq); SeqAt maps a time to the seq of the last tick at or
// before it. History starts at the first tick. Fork, Snapshot and OpenView
// resolve their point and record it under the catalog lock, which GC
// batches also hold, so a resolved seq cannot be collected before it is
// pinned by the new branch point, snapshot or open view. A point older
// than the retained history is ErrBeforeHorizon, a point after the newest
// state ErrFuture.
//
// GC keeps a version while some read point r has version <= r < end, where
// end is the next newer version of the same key or, for a block, the seq at
// which its inode's own attributes truncate or delete it. Read points of a
// timeline are: its head (if a branch owns it), every snapshot, every
// child's ParentSeq, every fork point a branch keeps there
// (Branch.BaseTimeline), every open View, every history tick inside
// HistoryWindow (default 24 h), and every seq after the newest tick. Inside
// the window history is therefore kept at tick granularity (a fork at an
// older seq rounds down to its tick), outside it only at the explicit
// points. A tombstone that is the only version of its key a timeline
// keeps goes too once the parent reads the key as absent (for an inode:
// once no version of its blocks is kept either): reads through it then
// find nothing either way.
//
// GC is incremental: each head commit registers the keys it wrote as
// candidates (in memory, by runs of 64 blocks, inode and entry), and a pass
// visits only the candidates that may have become collectable (a tick or
// the horizon passed the shadowing write, or the snapshot, child branch
// point or view that kept them went away), plus once each timeline whose
// branch was deleted while a snapshot or child still reads it. A pass thus
// costs in proportion to what was written and freed, not to the store's
// size. A rewrite of a block in place also names the version it shadowed
// (its seq is known to the commit's counters), and a pass deletes a named
// version that has ripened by its exact key, without a seek (gcnamed.go).
// A clean Close saves the candidates and the next Open loads them
// (and deletes the saved copy); after a crash the first pass is a full one
// (Store.GCFull), which rebuilds them. GC runs in the background every GCInterval
// (default 1 min) in
// batches of GCBatch deletions, each under the catalog lock; it also deletes
// branches and snapshots whose ExpiresAt passed (never protected branches
// or branches with children). Deleting a branch drops its timeline with
// range deletions once nothing else reads it.
//
// # Usage accounting
//
// Store.Usage reports a branch's logical, exclusive (current + history) and
// shared bytes from counters its timeline keeps, so its cost does not
// depend on the branch's size: Logical (sizes of the live files, each
// inode once), Exclusive (keys and values of every version stored),
// Current (those of the block versions the head reads) and Own (the file
// bytes those cover); History is Exclusive - Current and Shared is
// Logical - Own (read from ancestors, or sparse). Each commit keeps them
// exact: a head batch computes its change from the batch and the state
// before it (an attribute read per inode it touches, a prefix seek per
// block it rewrites inside the file's old size, none for appends, and a
// walk over the stored blocks whose counting a truncation, a size change
// or a file's last unlink alters); a GC batch subtracts what it deletes
// (it never deletes what a head reads); a fork or reset gives the child
// its parent's Logical at the branch point (a copy at the parent's newest
// state, else a walk of the files' attributes there: one read per file,
// not per block); dropping a timeline drops its record. A detached
// timeline has no head: GC may collect its newest state, and only its
// Exclusive still describes what it stores. Check compares every
// timeline's counters with a full recount (the scan Usage used to be).
//
// The counters are persisted, not rebuilt: the record C<tl> is written in
// the same pebble batch as the change it counts, under a per-timeline lock
// held across the commit (so a head's and GC's commits to one timeline
// reach the WAL in the order their values were computed). After a crash
// every record matches the recovered prefix, and Open reads them in
// O(timelines); the cost is one 49-byte write per batch and commits of
// one timeline serialized with GC's. Rebuilding at Open instead would cost
// a scan of the whole store (or, riding on the first full GC pass, a scan
// fallback for Usage until it ends). A store written before counters
// existed is recounted once at Open.
//
// # A low disk
//
// Writes that grow the store are admitted against two reserves (see
// Options.MinFreeBytes and Options.SharedReserveBytes): below the upper
// line each branch may extend its files by only a share of the shared
// reserve, so the branch that fills the disk gets ENOSPC alone; below
// MinFreeBytes every growing write is refused. While space is below the
// upper line (SpaceLow) the store frees space promptly: GC runs every few
// seconds with the history window shrunk to the newest tick, and whatever
// it or a branch deletion drops is compacted at once, so pebble removes
// the files that held only deleted data. Blob files that also hold live
// blocks are rewritten by pebble's blob rewrites once they are older than
// 10 s and the store's garbage ratio passes 5% (30% otherwise); until then
// a dropped table's blocks may keep occupying disk.
//
// Storage layout choices: sstable blocks are not compressed (an 8 KiB read
// costs a copy, not a decompression; Options.Compress turns snappy-class
// compression on), and values of 1 KiB or more are separated into pebble
// blob files so compactions do not rewrite block data.
//
// # Concurrency
//
// Store, Head and View methods are safe for concurrent use. A Head
// serializes its mutations; reads run in parallel.
package storage
