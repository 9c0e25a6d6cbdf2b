package experiments

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
	"github.com/pgvector/pgvector-go"
)

// Built-in type OIDs whose text form needs converting (see pg_type.dat).
const (
	oidBool        = 16
	oidBytea       = 17
	oidInt8        = 20
	oidInt2        = 21
	oidInt4        = 23
	oidOID         = 26
	oidJSON        = 114
	oidFloat4      = 700
	oidFloat8      = 701
	oidTimestamp   = 1114
	oidTimestamptz = 1184
	oidNumeric     = 1700
	oidJSONB       = 3802
)

// jsonValue converts one text-format column value to a JSON-friendly
// value: integers and finite floats and numerics as JSON numbers (exact
// text, no float rounding), NaN and infinities as strings, booleans,
// timestamps in RFC 3339, bytea as base64, json and jsonb as raw JSON,
// pgvector vector and halfvec as arrays of floats, sparsevec as an object,
// arrays as JSON arrays, everything else as Postgres' text form.
func jsonValue(tm *pgtype.Map, oid uint32, raw []byte) (any, error) {
	if raw == nil {
		return nil, nil
	}
	s := string(raw)
	switch oid {
	case oidBool:
		return s == "t", nil
	case oidInt2, oidInt4, oidInt8, oidOID:
		return json.Number(s), nil
	case oidFloat4, oidFloat8, oidNumeric:
		if s == "NaN" || strings.HasSuffix(s, "Infinity") {
			return s, nil
		}
		return json.Number(s), nil
	case oidJSON, oidJSONB:
		return json.RawMessage(s), nil
	case oidBytea:
		b, err := hex.DecodeString(strings.TrimPrefix(s, `\x`))
		if err != nil {
			return nil, fmt.Errorf("bytea: %w", err)
		}
		return base64.StdEncoding.EncodeToString(b), nil
	}
	t, ok := tm.TypeForOID(oid)
	if !ok {
		return s, nil
	}
	switch t.Codec.(type) {
	case *pgtype.ArrayCodec, *pgtype.TimestampCodec, *pgtype.TimestamptzCodec:
	default:
		if !strings.HasSuffix(t.Name, "vec") && t.Name != "vector" {
			return s, nil
		}
	}
	v, err := t.Codec.DecodeValue(tm, oid, pgtype.TextFormatCode, raw)
	if err != nil {
		return nil, fmt.Errorf("decode %s: %w", t.Name, err)
	}
	return friendly(oid, v), nil
}

// friendly converts a value decoded by pgx to a JSON-friendly one.
func friendly(oid uint32, v any) any {
	switch v := v.(type) {
	case nil:
		return nil
	case time.Time:
		if oid == oidTimestamp {
			return v.Format("2006-01-02T15:04:05.999999999")
		}
		return v.Format(time.RFC3339Nano)
	case pgtype.InfinityModifier:
		return v.String()
	case float32:
		return friendlyFloat(float64(v))
	case float64:
		return friendlyFloat(v)
	case pgtype.Numeric:
		b, err := v.MarshalJSON()
		if err != nil {
			return nil
		}
		return json.RawMessage(b)
	case []byte:
		return base64.StdEncoding.EncodeToString(v)
	case map[string]any:
		return v
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = friendly(0, e)
		}
		return out
	case pgvector.Vector:
		return floats(v.Slice())
	case pgvector.HalfVector:
		return floats(v.Slice())
	case pgvector.SparseVector:
		return map[string]any{"dim": v.Dimensions(), "indices": v.Indices(), "values": floats(v.Values())}
	case fmt.Stringer:
		return v.String()
	default:
		return v
	}
}

func friendlyFloat(f float64) any {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	return f
}

// floats keeps float32 values exact in JSON (encoding/json prints the
// shortest float32 representation).
func floats(v []float32) []float32 {
	if v == nil {
		return []float32{}
	}
	return v
}
