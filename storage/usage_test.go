package storage

import (
	"bytes"
	"testing"
)

func TestUsage(t *testing.T) {
	s := openTest(t, nil)
	_, _, err := s.CreateProject("p")
	ok(t, err)
	h := must[*Head](t)(s.OpenHead("p", "main"))
	defer h.Close()
	f := must[Attr](t)(h.Create(RootIno, "f", 0o644, 0, 0))
	const blocks = 100
	for i := range blocks {
		must[int](t)(h.WriteAt(f.Ino, bytes.Repeat([]byte{byte(i + 1)}, BlockSize), int64(i)*BlockSize))
	}
	must[Branch](t)(s.Fork("p", "main", "dev", AtHead(), BranchOptions{}))
	c := must[*Head](t)(s.OpenHead("p", "dev"))
	defer c.Close()
	must[int](t)(c.WriteAt(f.Ino, bytes.Repeat([]byte{9}, BlockSize), 0))
	mu := must[BranchUsage](t)(s.Usage("p", "main"))
	du := must[BranchUsage](t)(s.Usage("p", "dev"))
	if mu.LogicalBytes != blocks*BlockSize || du.LogicalBytes != blocks*BlockSize {
		t.Fatalf("logical %d %d", mu.LogicalBytes, du.LogicalBytes)
	}
	if mu.SharedBytes != 0 || du.SharedBytes != (blocks-1)*BlockSize {
		t.Fatalf("shared main %d dev %d", mu.SharedBytes, du.SharedBytes)
	}
	if mu.ExclusiveBytes < blocks*BlockSize || du.ExclusiveBytes > 2*BlockSize {
		t.Fatalf("exclusive main %d dev %d", mu.ExclusiveBytes, du.ExclusiveBytes)
	}
	tu := must[StoreUsage](t)(s.TotalUsage())
	if tu.LogicalBytes != 2*blocks*BlockSize || tu.SavedBytes < (blocks-3)*BlockSize {
		t.Fatalf("total %+v", tu)
	}
}
