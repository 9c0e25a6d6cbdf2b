package vectors

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	pgxvec "github.com/pgvector/pgvector-go/pgx"
)

// DB is what the Postgres helpers use. *pgx.Conn and pgx.Tx satisfy it, and
// so does *pgxpool.Pool. The pgvector types must be registered on the
// underlying connections: the helpers do it themselves for a *pgx.Conn or
// pgx.Tx (see RegisterTypes); a pool needs RegisterTypes in AfterConnect.
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error)
	Begin(ctx context.Context) (pgx.Tx, error)
}

// RegisterTypes registers pgvector's vector, halfvec and sparsevec codecs
// on conn (binary format) if they are not registered yet. The vector
// extension must exist in the connection's database.
func RegisterTypes(ctx context.Context, conn *pgx.Conn) error {
	if _, ok := conn.TypeMap().TypeForName("vector"); ok {
		return nil
	}
	if err := pgxvec.RegisterTypes(ctx, conn); err != nil {
		return fmt.Errorf("register pgvector types: %w", err)
	}
	return nil
}

// ensureTypes registers the pgvector types when db exposes its connection.
func ensureTypes(ctx context.Context, db DB) error {
	switch c := db.(type) {
	case *pgx.Conn:
		return RegisterTypes(ctx, c)
	case pgx.Tx:
		return RegisterTypes(ctx, c.Conn())
	}
	return nil
}

// VectorType is the column type of the embeddings.
type VectorType string

// Vector column types.
const (
	// Vector is pgvector's 4-byte float vector (HNSW/IVFFlat up to 2,000 dims).
	Vector VectorType = "vector"
	// HalfVec is pgvector's 2-byte float vector (indexes up to 4,000 dims);
	// values are rounded to half precision on load.
	HalfVec VectorType = "halfvec"
)

// MaxDims is the most dimensions pgvector 0.8 stores in a vector or
// halfvec column (an index takes fewer: MaxIndexDims).
const MaxDims = 16000

// Table describes a chunk table:
//
//	id text PRIMARY KEY, doc_id text, chunk_start int, chunk_end int,
//	char_start int, char_end int, content text, metadata jsonb,
//	embedding vector(Dims) | halfvec(Dims)
//
// chunk_start/chunk_end are byte offsets and char_start/char_end rune
// offsets of the chunk in its document (see Chunk).
type Table struct {
	// Name is the table name, optionally schema-qualified ("s.t").
	Name string
	// Dims is the embedding dimension (1..MaxDims).
	Dims int
	// Type is the embedding column type; empty means Vector.
	Type VectorType
}

func (t Table) vtype() VectorType {
	if t.Type == "" {
		return Vector
	}
	return t.Type
}

func (t Table) ident() pgx.Identifier {
	for i := 0; i < len(t.Name); i++ {
		if t.Name[i] == '.' {
			return pgx.Identifier{t.Name[:i], t.Name[i+1:]}
		}
	}
	return pgx.Identifier{t.Name}
}

func (t Table) validate() error {
	if t.Name == "" || t.Name[0] == '.' || t.Name[len(t.Name)-1] == '.' {
		return fmt.Errorf("table name %q: %w", t.Name, ErrBadTable)
	}
	if t.Dims < 1 || t.Dims > MaxDims {
		return fmt.Errorf("table %s: dims %d not in 1..%d: %w", t.Name, t.Dims, MaxDims, ErrBadTable)
	}
	if v := t.vtype(); v != Vector && v != HalfVec {
		return fmt.Errorf("table %s: vector type %q: %w", t.Name, v, ErrBadTable)
	}
	return nil
}

// CreateTable creates the table (failing if it exists).
func CreateTable(ctx context.Context, db DB, t Table) error {
	if err := t.validate(); err != nil {
		return err
	}
	sql := fmt.Sprintf(`CREATE TABLE %s (
	id text PRIMARY KEY,
	doc_id text NOT NULL,
	chunk_start integer NOT NULL,
	chunk_end integer NOT NULL,
	char_start integer NOT NULL,
	char_end integer NOT NULL,
	content text NOT NULL,
	metadata jsonb NOT NULL DEFAULT '{}',
	embedding %s(%d) NOT NULL)`, t.ident().Sanitize(), t.vtype(), t.Dims)
	if _, err := db.Exec(ctx, sql); err != nil {
		return fmt.Errorf("create table %s: %w", t.Name, err)
	}
	if t.plainStorage() {
		if _, err := db.Exec(ctx, "ALTER TABLE "+t.ident().Sanitize()+" ALTER COLUMN embedding SET STORAGE PLAIN"); err != nil {
			return fmt.Errorf("create table %s: %w", t.Name, err)
		}
	}
	return nil
}

// plainStorage reports whether embeddings are kept inline in the heap row
// (STORAGE PLAIN) rather than pgvector's default EXTERNAL, which moves a
// vector out of line as soon as a row passes ~2 KB (e.g. 384 dims plus 1 KB
// of text) and makes every exact scan read the TOAST table. Vectors of at
// most 4 KB stay inline; the content text is toasted instead.
func (t Table) plainStorage() bool {
	elem := 4
	if t.vtype() == HalfVec {
		elem = 2
	}
	return 8+elem*t.Dims <= 4096
}

// DropTable drops the table if it exists.
func DropTable(ctx context.Context, db DB, t Table) error {
	if err := t.validate(); err != nil {
		return err
	}
	if _, err := db.Exec(ctx, "DROP TABLE IF EXISTS "+t.ident().Sanitize()); err != nil {
		return fmt.Errorf("drop table %s: %w", t.Name, err)
	}
	return nil
}
