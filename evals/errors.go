package evals

import (
	"errors"
	"fmt"
)

// Sentinel errors. Errors returned by this package wrap one of these; check
// them with errors.Is.
var (
	// ErrFormat means an input file or record is malformed: bad JSON, a wrong
	// number of fields, a non-numeric score, a missing id, a bad header.
	ErrFormat = errors.New("malformed input")
	// ErrDuplicate means an id, judgment or retrieved document occurs twice
	// where it must be unique.
	ErrDuplicate = errors.New("duplicate entry")
	// ErrUnknownID means a judgment names a query or document that the
	// dataset does not contain.
	ErrUnknownID = errors.New("unknown id")
	// ErrUnknownMeasure means a measure name or parameter is not supported.
	ErrUnknownMeasure = errors.New("unknown measure")
	// ErrNoQueries means there is nothing to evaluate: no query has both
	// judgments and results (trec_eval exits with the same complaint).
	ErrNoQueries = errors.New("no queries with both results and relevance judgments")
	// ErrMismatch means two inputs that must align do not: paired samples
	// of different lengths, or results over different measures.
	ErrMismatch = errors.New("inputs do not match")
	// ErrInvalidArgument means a parameter is out of range (a cutoff below
	// 1, a confidence outside (0,1), too few permutations).
	ErrInvalidArgument = errors.New("invalid argument")
)

// LineError locates a malformed input in a file. It wraps the sentinel that
// classifies it (ErrFormat, ErrDuplicate, ErrUnknownID).
type LineError struct {
	// File is the name of the input, as given by the caller.
	File string
	// Line is the 1-based line number.
	Line int
	// Err is the cause, wrapping a sentinel.
	Err error
}

func (e *LineError) Error() string { return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err) }

func (e *LineError) Unwrap() error { return e.Err }

func lineErr(file string, line int, sentinel error, format string, args ...any) error {
	return &LineError{File: file, Line: line, Err: fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), sentinel)}
}
