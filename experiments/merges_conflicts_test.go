package experiments

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/offshootdb/offshoot/experiments/merge"
)

// smallMergeProject is a store service with project p whose main branch
// ran setup, and a fork f of main: for merges of a few rows.
func smallMergeProject(t *testing.T, setup string) (*Service, context.Context) {
	t.Helper()
	s := storeService(t, "p", nil)
	ctx := WithCaller(context.Background(), LocalCaller)
	exec(t, s, ctx, "main", setup)
	if _, err := s.CreateBranch(ctx, CreateBranchRequest{Project: "p", Name: "f", ParentID: "main"}); err != nil {
		t.Fatal(err)
	}
	return s, ctx
}

// TestMergeCustomValues: custom values naming a column the row does not
// have or changing its key are refused when given; values the target
// refuses when the merge completes reopen their own conflict, not
// another one.
func TestMergeCustomValues(t *testing.T) {
	t.Parallel()
	s, ctx := smallMergeProject(t, `CREATE TABLE cv (id int PRIMARY KEY, s text, n int NOT NULL);
INSERT INTO cv VALUES (1, 'a', 1), (2, 'b', 2), (3, 'c', 3)`)
	exec(t, s, ctx, "f", `UPDATE cv SET s = 'f' || id`)
	exec(t, s, ctx, "main", `UPDATE cv SET s = 'main' || id`)
	sess, err := s.MergeBranch(ctx, MergeRequest{Project: "p", Source: "f", Target: "main", Strategy: merge.Manual})
	if err != nil || sess.OpenConflicts != 3 {
		t.Fatalf("manual: %+v %v", sess, err)
	}
	byKey := map[string]string{}
	for _, c := range sess.Conflicts {
		byKey[c.Key["id"]] = c.ID
	}
	for _, v := range []string{`{"nosuch": 1}`, `{"id": 999}`, `{"s": "x", "id": "4"}`} {
		_, err := s.ResolveConflict(ctx, ResolveRequest{Project: "p", Merge: sess.ID, Conflict: byKey["1"], Choice: merge.ChoiceCustom, Values: json.RawMessage(v)})
		var fe *FieldError
		if !errors.Is(err, ErrInvalid) || !errors.As(err, &fe) || fe.Field != "values" {
			t.Errorf("custom values %s: %v, want an invalid values error", v, err)
		}
	}
	for id, req := range map[string]ResolveRequest{
		"1": {Choice: merge.ChoiceCustom, Values: json.RawMessage(`{"id": 1, "n": null}`)},
		"2": {Choice: merge.ChoiceTheirs},
		"3": {Choice: merge.ChoiceOurs},
	} {
		req.Project, req.Merge, req.Conflict = "p", sess.ID, byKey[id]
		if _, err := s.ResolveConflict(ctx, req); err != nil {
			t.Fatalf("resolve %s: %v", id, err)
		}
	}
	done, err := s.CompleteMerge(ctx, "p", sess.ID)
	if err != nil {
		t.Fatal(err)
	}
	if done.Status != MergeOpen || done.OpenConflicts != 1 {
		t.Fatalf("complete with refused custom values: status %s, %d open", done.Status, done.OpenConflicts)
	}
	for _, c := range done.Conflicts {
		refused := strings.Contains(c.Message, "refuses the custom values")
		if open := c.Resolution == nil; open != (c.Key["id"] == "1") || refused != open {
			t.Errorf("conflict of id %s: resolution %+v, message %q; want only id 1 reopened, with why", c.Key["id"], c.Resolution, c.Message)
		}
	}
}
