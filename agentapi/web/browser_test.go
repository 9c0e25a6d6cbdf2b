package web_test

import (
	"testing"

	"github.com/offshootdb/offshoot/experiments"
)

func testBrowser(t *testing.T, e *env, ab *experiments.Run) {}
