package storage

import (
	"testing"

	"github.com/offshootdb/offshoot/storage/internal/enc"
)

func FuzzDecodeCatalog(f *testing.F) {
	f.Add(byte(enc.KindBranch), enc.IDKey(enc.KindBranch, 3), []byte(`{"id":3,"name":"main","labels":{"a":"b"}}`))
	f.Add(byte(enc.KindSnapshot), enc.IDKey(enc.KindSnapshot, 1), []byte(`{"id":1,"seq":9}`))
	f.Add(byte(enc.KindTimeline), []byte("l"), []byte(`null`))
	f.Fuzz(func(t *testing.T, kind byte, k, v []byte) {
		switch kind % 4 {
		case 0:
			_, _, _ = decodeRecord[Project](enc.KindProject, k, v)
		case 1:
			_, _, _ = decodeRecord[Timeline](enc.KindTimeline, k, v)
		case 2:
			_, _, _ = decodeRecord[Branch](enc.KindBranch, k, v)
		default:
			_, _, _ = decodeRecord[Snapshot](enc.KindSnapshot, k, v)
		}
	})
}
