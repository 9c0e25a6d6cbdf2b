// Command offshoot is the offshoot server and its command-line client:
// Git-like branches of a real PostgreSQL + pgvector database on
// copy-on-write storage, with autosuspending compute and an experiment
// service on top.
package main

import (
	"fmt"
	"os"
)

func main() {
	if err := newRootCmd(os.Stdout, os.Stderr).Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "offshoot:", err)
		os.Exit(exitCode(err))
	}
}
