package main

import (
	"bytes"
	"context"
	"testing"
)

// run executes the offshoot command line in-process and returns its output
// and exit code, as main would produce them.
func run(t testing.TB, ctx context.Context, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := newRootCmd(&out, &errb)
	cmd.SetArgs(args)
	if err := cmd.ExecuteContext(ctx); err != nil {
		errb.WriteString("offshoot: " + err.Error() + "\n")
		return out.String(), errb.String(), exitCode(err)
	}
	return out.String(), errb.String(), 0
}
