package controldb

import (
	"errors"
	"io"
	"log/slog"
	"testing"
)

func TestPutGetScanReopen(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	db, err := Open(dir, log)
	if err != nil {
		t.Fatal(err)
	}
	type rec struct{ N int }
	for i, k := range []string{"a/2", "a/1", "b/1", "a/3"} {
		if err := db.Put([]byte(k), rec{i}); err != nil {
			t.Fatal(err)
		}
	}
	var r rec
	if err := db.Get([]byte("zz"), &r); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing key: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if db, err = Open(dir, log); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Get([]byte("b/1"), &r); err != nil || r.N != 2 {
		t.Errorf("after reopen: %+v %v", r, err)
	}
	var keys []string
	err = db.Scan([]byte("a/"), []byte("a0"), func(k, _ []byte) (bool, error) {
		keys = append(keys, string(k))
		return len(keys) < 2, nil
	})
	if err != nil || len(keys) != 2 || keys[0] != "a/1" || keys[1] != "a/2" {
		t.Errorf("scan: %v %v", keys, err)
	}
	stop := errors.New("stop")
	if err := db.Scan(nil, nil, func(_, _ []byte) (bool, error) { return false, stop }); !errors.Is(err, stop) {
		t.Errorf("scan error: %v", err)
	}
}

func TestPutAllAtomicAndDurable(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	db, err := Open(dir, log)
	if err != nil {
		t.Fatal(err)
	}
	type rec struct{ N int }
	if err := db.PutAll([]KV{{[]byte("r/1"), rec{1}}, {[]byte("r/2"), rec{2}}}); err != nil {
		t.Fatal(err)
	}
	// A value that cannot be encoded fails the whole batch.
	if err := db.PutAll([]KV{{[]byte("r/3"), rec{3}}, {[]byte("r/4"), func() {}}}); err == nil {
		t.Fatal("unencodable value accepted")
	}
	if err := db.PutAll(nil); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if db, err = Open(dir, log); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var got []string
	err = db.Scan([]byte("r/"), []byte("r0"), func(k, _ []byte) (bool, error) {
		got = append(got, string(k))
		return true, nil
	})
	if err != nil || len(got) != 2 || got[0] != "r/1" || got[1] != "r/2" {
		t.Errorf("after reopen: %v %v", got, err)
	}
}
