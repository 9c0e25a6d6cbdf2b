package experiments

import (
	"errors"
	"strings"
	"testing"
)

func TestParseSource(t *testing.T) {
	good := "postgresql://offshoot_replication:s3cret@127.0.0.1:6432/postgres?sslmode=disable&options=endpoint%3Dmain%20project%3Dp"
	src, err := parseSource(good, "rep")
	if err != nil {
		t.Fatal(err)
	}
	if src.project != "p" || src.branch != "main" || strings.Contains(src.display, "s3cret") || strings.Contains(src.standby.ConnInfo, "s3cret") ||
		src.standby.Password != "s3cret" || !strings.HasPrefix(src.standby.Slot, "offshoot_") {
		t.Fatalf("parsed %+v", src)
	}
	for _, bad := range []string{
		"not a uri",
		"mysql://u:p@h/db",
		"postgresql://offshoot_replication@127.0.0.1/postgres?options=endpoint%3Dmain",          // no password
		"postgresql://u:p@h1,h2/postgres?options=endpoint%3Dmain",                               // two hosts
		"postgresql://u:p@h/postgres?options=endpoint%3Dmain&target_session_attrs=read-write",   // unsupported
		"postgresql://u:p@h/postgres?options=endpoint%3Dmain&sslrootcert=/nonexistent/root.crt", // unreadable
	} {
		var fe *FieldError
		if _, err := parseSource(bad, "rep"); !errors.As(err, &fe) || fe.Field != "source" {
			t.Errorf("parseSource(%q) = %v, want a source field error", bad, err)
		}
	}
}

func TestCheckMaxRate(t *testing.T) {
	for _, ok := range []string{"", "32", "32k", "500k", "20M", "1024M", "1048576"} {
		if err := checkMaxRate(ok); err != nil {
			t.Errorf("checkMaxRate(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"31", "0", "1025M", "1048577", "-5", "20G", "k", "1.5M", "20 M"} {
		var fe *FieldError
		if err := checkMaxRate(bad); !errors.As(err, &fe) || fe.Field != "max_rate" {
			t.Errorf("checkMaxRate(%q) = %v, want a max_rate field error", bad, err)
		}
	}
}
