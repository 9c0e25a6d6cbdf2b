package experiments

import (
	"errors"
	"fmt"
	"strconv"
)

// Errors returned by the facade. Surfaces map them once: agentapi to HTTP
// statuses, mcp to tool errors. Check them with errors.Is.
var (
	// ErrInvalid means the request is malformed; the error is a *FieldError
	// naming the offending field.
	ErrInvalid = errors.New("invalid request")
	// ErrUnauthenticated means no credential, or one that matches no live key.
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrForbidden means the caller's key lacks the scope the call needs.
	ErrForbidden = errors.New("forbidden")
	// ErrNotFound means the named project, branch or key does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict means the call conflicts with current state (a name is
	// taken, a key is already revoked, a branch is protected or has children).
	ErrConflict = errors.New("conflict")
	// ErrCapacity means a quota or a capacity limit refused the call; retry later.
	ErrCapacity = errors.New("capacity exceeded")
	// ErrUnavailable means a dependency could not serve the call (compute
	// failed to start, no compute is configured, the service is closed).
	ErrUnavailable = errors.New("unavailable")
	// ErrQuery means Postgres rejected a statement; the error is a
	// *QueryError carrying the Postgres fields.
	ErrQuery = errors.New("query failed")
)

// FieldError is an ErrInvalid naming the field that is wrong and why.
type FieldError struct {
	Field  string // JSON name of the field, e.g. "timeout_ms" or "against"
	Reason string
}

func (e *FieldError) Error() string { return fmt.Sprintf("%s: %s", e.Field, e.Reason) }

// Is makes errors.Is(err, ErrInvalid) true.
func (e *FieldError) Is(target error) bool { return target == ErrInvalid }

func invalid(field, format string, args ...any) error {
	return &FieldError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// QueryError is an error reported by Postgres for one statement of a query.
// errors.Is(err, ErrQuery) is true.
type QueryError struct {
	// Statement is the index of the failing statement in the request.
	Statement int `json:"statement"`
	// Part is the failing statement within that statement's SQL text,
	// when the text holds several (see Result.Part); 0 otherwise.
	Part int `json:"part"`
	// SQLState is the five-character SQLSTATE code, e.g. "42601" or "57014"
	// (statement timeout).
	SQLState string `json:"sqlstate"`
	Severity string `json:"severity,omitempty"`
	Message  string `json:"message"`
	Detail   string `json:"detail,omitempty"`
	Hint     string `json:"hint,omitempty"`
	// Position is the 1-based character offset of the error in the
	// statement's SQL, 0 when Postgres gave none.
	Position int `json:"position,omitempty"`
}

func (e *QueryError) Error() string {
	return fmt.Sprintf("statement %s: %s (SQLSTATE %s)", StatementLabel(e.Statement, e.Part), e.Message, e.SQLState)
}

// StatementLabel names statement i, part j (see Result.Part) of a query,
// with the indexes of the JSON fields: "1" for request statement 1, "0.2"
// for the third statement of request statement 0's SQL text.
func StatementLabel(i, j int) string {
	if j == 0 {
		return strconv.Itoa(i)
	}
	return strconv.Itoa(i) + "." + strconv.Itoa(j)
}

// Is makes errors.Is(err, ErrQuery) true.
func (e *QueryError) Is(target error) bool { return target == ErrQuery }
