package compute

import (
	"fmt"
	"strconv"
	"strings"
)

// defaultSharedBuffers is the shared_buffers every endpoint gets unless
// Config.Settings or SetSettings say otherwise (start).
const defaultSharedBuffers = 128 << 20

// ownSetting reports whether the Manager sets the postmaster setting
// name itself: the proxy must find the endpoint, and its authentication
// is the Manager's.
func ownSetting(name string) bool {
	switch name {
	case "port", "unix_socket_directories", "listen_addresses", "hba_file", "unix_socket_permissions":
		return true
	}
	return false
}

// pgMemory parses a PostgreSQL memory setting as shared_buffers takes
// it: a number with a unit (B, kB, MB, GB or TB) or without one (8 kB
// pages), and returns bytes.
func pgMemory(v string) (int64, error) {
	v = strings.TrimSpace(v)
	num := strings.TrimRightFunc(v, func(r rune) bool { return r < '0' || r > '9' })
	unit := strings.TrimSpace(v[len(num):])
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("memory setting %q: not a number of bytes, kB, MB, GB or TB", v)
	}
	mult := map[string]int64{"": 8 << 10, "B": 1, "kB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}[unit]
	if mult == 0 {
		return 0, fmt.Errorf("memory setting %q: unknown unit %q (B, kB, MB, GB or TB)", v, unit)
	}
	return n * mult, nil
}
