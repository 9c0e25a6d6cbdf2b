package procstatus

import "testing"

func TestBytes(t *testing.T) {
	rss, err := Bytes("VmRSS")
	if err != nil || rss < 1<<20 {
		t.Fatalf("VmRSS: %d, %v; want at least 1 MiB", rss, err)
	}
	hwm, err := Bytes("VmHWM")
	if err != nil || hwm < rss {
		t.Fatalf("VmHWM %d (%v) below VmRSS %d", hwm, err, rss)
	}
	if _, err := Bytes("NoSuchField"); err == nil {
		t.Fatal("NoSuchField: no error")
	}
}
