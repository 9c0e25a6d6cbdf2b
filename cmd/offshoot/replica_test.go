package main

import (
	"strings"
	"testing"
)

func TestReplicaSource(t *testing.T) {
	const uri = "postgresql://offshoot_replication:pw@127.0.0.1:1/postgres"
	t.Setenv(sourceEnv, "")
	if got, err := replicaSource(uri, strings.NewReader("")); err != nil || got != uri {
		t.Fatalf("flag: %q %v", got, err)
	}
	if got, err := replicaSource("-", strings.NewReader(uri+"\nignored\n")); err != nil || got != uri {
		t.Fatalf("stdin: %q %v", got, err)
	}
	if _, err := replicaSource("-", strings.NewReader("")); err == nil || !strings.Contains(err.Error(), "--source is required") {
		t.Fatalf("empty stdin: %v", err)
	}
	if _, err := replicaSource("", strings.NewReader("")); err == nil {
		t.Fatal("no flag, no variable: no error")
	}
	t.Setenv(sourceEnv, uri)
	if got, err := replicaSource("", strings.NewReader("")); err != nil || got != uri {
		t.Fatalf("env: %q %v", got, err)
	}
}
