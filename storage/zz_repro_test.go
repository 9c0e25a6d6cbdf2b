package storage_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/offshootdb/offshoot/storage"
)

func TestZZRepro(t *testing.T) {
	dir := t.TempDir()
	s, err := storage.Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.CreateProject("main")
	s.Fork("main", "main", "ttl-a", storage.AtHead(), storage.BranchOptions{ExpiresAt: time.Now().Add(time.Second)})
	s.Fork("main", "main", "ttl-b", storage.AtHead(), storage.BranchOptions{ExpiresAt: time.Now().Add(time.Second), Protected: true})
	time.Sleep(1500 * time.Millisecond)
	if err := s.DeleteBranch("main", "ttl-a", storage.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			s.Fork("main", "main", fmt.Sprintf("par-%d", i%50), storage.AtHead(), storage.BranchOptions{})
		}(i)
	}
	wg.Wait()
	if err := s.Check(); err != nil {
		t.Fatal("after forks:", err)
	}
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if err := s.DeleteBranch("main", fmt.Sprintf("par-%d", i), storage.DeleteOptions{}); err != nil {
				t.Error(err)
			}
		}(i)
	}
	wg.Wait()
	if err := s.Check(); err != nil {
		t.Fatal("after deletes:", err)
	}
	s.Close()
	s, err = storage.Open(dir, &storage.Options{GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Check(); err != nil {
		t.Fatal("after reopen:", err)
	}
}
