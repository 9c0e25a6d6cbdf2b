package main

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// TestE2ELocalWAL: serve with --wal-path local. A fork made over the API
// sees every commit acknowledged before it; a kill -9 of the server under
// load loses no acknowledged commit (the restart absorbs the local WAL the
// crash left before anything mounts); after a clean stop no local WAL
// directory is left, the store holding everything.
func TestE2ELocalWAL(t *testing.T) {
	s := newE2EServerArgs(t, "--wal-path", "local")
	s.exec("main", "CREATE TABLE acked (id int PRIMARY KEY)")
	c := s.conn("main")
	ctx := context.Background()
	var mu sync.Mutex
	var acked []int32
	insert := func(id int32) error {
		if _, err := c.Exec(ctx, "INSERT INTO acked VALUES ($1)", id); err != nil {
			return err
		}
		mu.Lock()
		acked = append(acked, id) // COMMIT returned
		mu.Unlock()
		return nil
	}
	for id := int32(1); id <= 200; id++ {
		if err := insert(id); err != nil {
			t.Fatal(err)
		}
	}
	wal := filepath.Join(s.dataDir, "run", "wal", "main")
	if ents, err := os.ReadDir(wal); err != nil || len(ents) != 1 {
		t.Fatalf("local WAL directories of the running main: %v %v", ents, err)
	}
	s.must(201, "POST", "/v1/projects/main/branches", map[string]any{"name": "f"}, nil)
	var n int
	if err := s.conn("f").QueryRow(ctx, "SELECT count(*) FROM acked").Scan(&n); err != nil || n != 200 {
		t.Fatalf("the fork sees %d of 200 acknowledged rows (%v)", n, err)
	}

	done := make(chan struct{})
	go func() {
		defer close(done)
		for id := int32(201); insert(id) == nil; id++ {
		}
	}()
	time.Sleep(time.Second)
	s.kill()
	<-done
	s.start()
	if err := s.conn("main").QueryRow(ctx, "SELECT count(*) FROM acked WHERE id = ANY($1)", acked).Scan(&n); err != nil || n != len(acked) {
		t.Fatalf("after kill -9 and restart %d of %d acknowledged rows are there (%v)\n%s", n, len(acked), err, s.log())
	}
	t.Logf("%d acknowledged commits, all there after kill -9", len(acked))
	s.stop()
	if ents, err := os.ReadDir(wal); err != nil || len(ents) != 0 {
		t.Fatalf("local WAL directories after a clean stop: %v %v", ents, err)
	}
}
