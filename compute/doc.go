// Package compute runs one Postgres 15 (with pgvector) per active branch on
// the branch's copy-on-write mount, and moves it through the endpoint states
// stopped → starting → running → idle → suspended → stopped on its own timers.
// The next connection through the pgwire proxy (compute/proxy) wakes it.
package compute
