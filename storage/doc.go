// Package storage is offshoot's copy-on-write branch storage: a catalog of
// projects, branches (timelines) and snapshots, and a versioned store of
// 8 KiB file blocks on pebble from which branches fork in O(1).
package storage
