package web_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/offshootdb/offshoot/agentapi"
	"github.com/offshootdb/offshoot/experiments"
	"github.com/offshootdb/offshoot/storage"
)

// chromiumPath is Debian's chromium, installed by scripts/setup. The
// tests never download a browser.
const chromiumPath = "/usr/bin/chromium"

// newBrowser starts headless Chromium with a fresh profile and returns a
// tab's context, cancelled when the test ends.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("browser tests need Debian's chromium at %s (run `bash scripts/setup`, which installs it): %v", chromiumPath, err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx)
	ctx, cancelTime := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() { cancelTime(); cancelTab(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// outDir is where screenshots go: $TEST_OUTPUT_DIR or the test's temp dir.
func outDir(t *testing.T) string {
	if d := os.Getenv("TEST_OUTPUT_DIR"); d != "" {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	return t.TempDir()
}

func screenshot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s (%d bytes)", path, len(png))
}

// do runs browser steps; a failure reports the page's main text.
func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v\npage: %.800s", what, err, mainText(ctx))
	}
}

func mainText(ctx context.Context) string {
	body, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("main")))
	return body
}

// text reads an element's text.
func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("text of %s: %v\npage: %.800s", sel, err, mainText(ctx))
	}
	return s
}

func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// testBrowser drives the SQL console, the diff view and a comparison of a
// real A/B run, against the cluster-backed environment.
func testBrowser(t *testing.T, e *env, ab *experiments.Run) {
	ctx := newBrowser(t)
	dir := outDir(t)

	// The tree shows endpoint states and follows their changes live.
	do(t, ctx, "tree",
		chromedp.Navigate(e.srv.URL+"/ui/projects/p/branches"),
		chromedp.WaitVisible(chromedp.CSS(`[data-state-for="feature"].st-running`)),
	)
	e.br.setState("suspended")
	do(t, ctx, "live state", chromedp.WaitVisible(chromedp.CSS(`[data-state-for="feature"].st-suspended`)))
	e.br.setState("running")
	screenshot(t, ctx, dir, "tree-live")

	// SQL console: a read-only query renders a result grid.
	do(t, ctx, "sql console",
		chromedp.Navigate(e.srv.URL+"/ui/projects/p/branches/feature"),
		chromedp.WaitVisible(chromedp.CSS("#sql-form")),
		chromedp.SetValue(chromedp.CSS("#sql"), "SELECT id, name, price FROM items WHERE id IN (3, 21) ORDER BY id"),
		chromedp.Click(chromedp.CSS("#sql-run")),
		chromedp.WaitVisible(chromedp.CSS("#sql-result table.result-grid")),
	)
	cell := text(t, ctx, "#sql-result table.result-grid tbody tr:nth-child(2) td:nth-child(2)")
	status := text(t, ctx, "#sql-status")
	if cell != "new item" || !strings.Contains(status, "1 result") {
		t.Errorf("sql console: cell %q, status %q", cell, status)
	}
	// A write in the read-only console is refused by Postgres, and the
	// page says so.
	do(t, ctx, "sql console write",
		chromedp.SetValue(chromedp.CSS("#sql"), "DELETE FROM items"),
		chromedp.Click(chromedp.CSS("#sql-run")),
		chromedp.WaitVisible(chromedp.CSS("#sql-status.error")),
	)
	if status := text(t, ctx, "#sql-status"); !strings.Contains(status, "read-only") {
		t.Errorf("read-only console accepted a write: %q", status)
	}
	screenshot(t, ctx, dir, "branch-console")

	// Diff against the parent: schema diff highlighted, row counts.
	do(t, ctx, "diff",
		chromedp.Click(chromedp.CSS("#diff-form button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS("#diff")),
	)
	if added := eval[string](t, ctx, `Array.from(document.querySelectorAll("#diff .udiff .l-add")).map(x => x.textContent).join("\\n")`); !strings.Contains(added, "price numeric") {
		t.Errorf("highlighted schema addition %q, want the price column", added)
	}
	counts := eval[[]string](t, ctx, `Array.from(document.querySelectorAll("#diff-tables tbody tr:first-child td")).map(td => td.textContent.trim())`)
	if len(counts) < 7 || counts[4] != "1" || counts[5] != "1" || counts[6] != "1" {
		t.Errorf("diff counts row %q, want 1 added, 1 removed, 1 changed", counts)
	}
	screenshot(t, ctx, dir, "branch-diff")

	// Comparison of a real A/B run, opened from the run page.
	do(t, ctx, "comparison",
		chromedp.Navigate(e.srv.URL+"/ui/runs/"+ab.ID),
		chromedp.WaitVisible(chromedp.CSS("#compare-form")),
		chromedp.Click(chromedp.CSS("#compare-form button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS("svg#comparison-chart")),
	)
	marks := eval[int](t, ctx, `document.querySelectorAll("#measures .sig").length`)
	verdict := eval[int](t, ctx, `document.querySelectorAll("#verdict strong").length`)
	if marks == 0 || verdict != 1 {
		t.Errorf("comparison page: %d significance marks, %d verdicts", marks, verdict)
	}
	stars := eval[int](t, ctx, `Array.from(document.querySelectorAll("svg#comparison-chart text")).filter(x => x.textContent === "*").length`)
	if stars != marks {
		t.Errorf("chart draws %d significance marks, table has %d", stars, marks)
	}
	screenshot(t, ctx, dir, "comparison")

	// A run in progress: its page follows it until it finishes.
	r, err := e.svc.StartRun(e.ctx, experiments.ExperimentSpec{Name: "live", Project: "p", Base: experiments.BranchPoint{Branch: "main"},
		Dataset: experiments.DatasetSpec{BEIR: e.beir}, Variants: []experiments.VariantSpec{{Name: "bow", Embedder: "hash-bow?dims=128"}}})
	if err != nil {
		t.Fatal(err)
	}
	do(t, ctx, "live run", chromedp.Navigate(e.srv.URL+"/ui/runs/"+r.ID), chromedp.WaitVisible(chromedp.CSS("dl.facts")))
	live := eval[bool](t, ctx, `document.querySelector("#run-live") !== null`)
	do(t, ctx, "run finishes", chromedp.WaitVisible(chromedp.CSS("dl.facts .s-succeeded")))
	if gone := eval[bool](t, ctx, `document.querySelector("#run-live") === null`); !gone {
		t.Error("finished run still marked in progress")
	}
	t.Logf("run page loaded in progress: %v", live)
	if !live {
		t.Log("the run finished before the page loaded; the live refresh was not exercised")
	}
}

// TestBrowserBranches forks a branch through the UI on the facade's real
// branch store, sees it in the tree with its endpoint state, deletes it
// after confirming, and enters an API key once keys exist.
func TestBrowserBranches(t *testing.T) {
	st, err := storage.Open(filepath.Join(t.TempDir(), "store"), &storage.Options{GCInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, _, err := st.CreateProject("p"); err != nil {
		t.Fatal(err)
	}
	svc, err := experiments.New(experiments.Config{ControlDir: filepath.Join(t.TempDir(), "control"), Store: st})
	if err != nil {
		t.Fatal(err)
	}
	bg := context.Background()
	if err := svc.Open(bg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	api, err := agentapi.New(agentapi.Config{Service: svc})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.Handler())
	t.Cleanup(srv.Close)
	local := experiments.WithCaller(bg, experiments.LocalCaller)
	for i := range 3 {
		if _, err := svc.CreateBranch(local, experiments.CreateBranchRequest{Project: "p", Name: fmt.Sprintf("dev-%d", i), ParentID: "main"}); err != nil {
			t.Fatal(err)
		}
	}

	ctx := newBrowser(t)
	dir := outDir(t)
	const name = "feature/from-ui"
	sel := `li[data-branch="` + name + `"]`
	do(t, ctx, "fork",
		chromedp.Navigate(srv.URL+"/ui/projects/p/branches"),
		chromedp.WaitVisible(chromedp.CSS("#fork-form")),
		chromedp.SetValue(chromedp.CSS(`#fork-form input[name=parent_id]`), "dev-1"),
		chromedp.SetValue(chromedp.CSS(`#fork-form input[name=name]`), name),
		chromedp.Click(chromedp.CSS(`#fork-form button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(sel)),
	)
	if parent := eval[string](t, ctx, `document.querySelector('`+sel+`').parentElement.closest("li").dataset.branch`); parent != "dev-1" {
		t.Errorf("forked branch shown under %q, want dev-1", parent)
	}
	if state := text(t, ctx, sel+` [data-state-for]`); state == "" {
		t.Error("forked branch shows no endpoint state")
	}
	b, err := svc.GetBranch(local, "p", name)
	if err != nil || b.ParentID != "dev-1" {
		t.Fatalf("facade after UI fork: %+v, %v", b, err)
	}
	screenshot(t, ctx, dir, "branches-forked")

	// Labels and TTL are edited in place (the prompt answers as a user would).
	eval[bool](t, ctx, `window.prompt = (msg, def) => { window.lastPrompt = def; return "team=search, stage=dev"; }; true`)
	do(t, ctx, "labels",
		chromedp.Click(chromedp.CSS(sel+` button[data-field="labels"]`)),
		chromedp.WaitVisible(chromedp.CSS(sel+` .tag`)),
	)
	eval[bool](t, ctx, `window.prompt = () => "2h"; true`)
	do(t, ctx, "ttl",
		chromedp.Click(chromedp.CSS(sel+` button[data-field="ttl"]`)),
		chromedp.WaitVisible(chromedp.CSS(sel+` .ttl`)),
	)
	b, err = svc.GetBranch(local, "p", name)
	if err != nil || b.Labels["team"] != "search" || b.Labels["stage"] != "dev" || b.ExpiresAt == nil || time.Until(*b.ExpiresAt) <= time.Hour {
		t.Fatalf("facade after UI labels and TTL: %+v, %v", b, err)
	}
	// The landing page lists the project with its tree, labels included.
	do(t, ctx, "landing",
		chromedp.Navigate(srv.URL+"/ui/"),
		chromedp.WaitVisible(chromedp.CSS(`section[data-project="p"] li[data-branch="dev-1"] li[data-branch="`+name+`"]`)),
	)
	if tags := text(t, ctx, `section[data-project="p"] li[data-branch="`+name+`"] .tag`); !strings.Contains(tags, "=") {
		t.Errorf("landing page shows no labels of %s: %q", name, tags)
	}
	screenshot(t, ctx, dir, "landing")
	do(t, ctx, "back to the tree",
		chromedp.Navigate(srv.URL+"/ui/projects/p/branches"),
		chromedp.WaitVisible(chromedp.CSS(sel)),
	)

	// Delete asks for confirmation: refused, nothing happens; accepted,
	// the branch goes.
	eval[bool](t, ctx, `window.confirm = () => false; true`)
	do(t, ctx, "delete refused", chromedp.Click(chromedp.CSS(sel+` button.danger`)), chromedp.Sleep(300*time.Millisecond))
	if _, err := svc.GetBranch(local, "p", name); err != nil {
		t.Errorf("branch deleted without confirmation: %v", err)
	}
	eval[bool](t, ctx, `window.confirm = (msg) => { window.lastConfirm = msg; return true; }; true`)
	do(t, ctx, "delete",
		chromedp.Click(chromedp.CSS(sel+` button.danger`)),
		chromedp.WaitNotPresent(chromedp.CSS(sel)),
	)
	if msg := eval[string](t, ctx, `window.lastConfirm || ""`); !strings.Contains(msg, name) {
		t.Errorf("confirmation %q does not name the branch", msg)
	}
	if _, err := svc.GetBranch(local, "p", name); err == nil {
		t.Error("branch still exists after delete in the UI")
	}

	// Once a key exists, the page asks for it; entered once, it is used
	// for the page and for forks.
	nk, err := svc.CreateKey(local, experiments.KeyRequest{Name: "browser", Scopes: []experiments.Scope{{Role: experiments.RoleAdmin}}})
	if err != nil {
		t.Fatal(err)
	}
	do(t, ctx, "key prompt",
		chromedp.Navigate(srv.URL+"/ui/projects/p/branches"),
		chromedp.WaitVisible(chromedp.CSS("#page-error")),
	)
	if msg := text(t, ctx, "#page-error"); !strings.Contains(msg, "API key") {
		t.Errorf("key prompt says %q", msg)
	}
	do(t, ctx, "enter key and fork",
		chromedp.SetValue(chromedp.CSS("#api-key"), nk.Token),
		chromedp.Click(chromedp.CSS("#key-form button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS("#fork-form")),
		chromedp.SetValue(chromedp.CSS(`#fork-form input[name=name]`), "keyed"),
		chromedp.Click(chromedp.CSS(`#fork-form button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`li[data-branch="keyed"]`)),
	)
	if _, err := svc.GetBranch(local, "p", "keyed"); err != nil {
		t.Errorf("fork with the key: %v", err)
	}
	screenshot(t, ctx, dir, "branches-keyed")

	// The branch page snapshots the branch (name asked with prompt) and
	// lists the snapshot; the key is still used.
	do(t, ctx, "branch page", chromedp.Click(chromedp.CSS(`li[data-branch="keyed"] a.bname`)), chromedp.WaitVisible(chromedp.CSS("#branch-actions")))
	eval[bool](t, ctx, `window.prompt = () => "before-change"; true`)
	do(t, ctx, "snapshot",
		chromedp.Click(chromedp.CSS(`#branch-actions button[data-prompt]`)),
		chromedp.WaitVisible(chromedp.CSS("#snapshots")),
	)
	if s := text(t, ctx, "#snapshots tbody"); !strings.Contains(s, "before-change") {
		t.Errorf("snapshots table %q", s)
	}
	if _, ok := findSnapshot(t, svc, local, "before-change"); !ok {
		t.Error("snapshot not in the facade")
	}
	screenshot(t, ctx, dir, "branch-snapshot")
}

func findSnapshot(t *testing.T, svc *experiments.Service, ctx context.Context, name string) (experiments.Snapshot, bool) {
	t.Helper()
	sn, err := svc.ListSnapshots(ctx, "p")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sn {
		if s.Name == name {
			return s, true
		}
	}
	return experiments.Snapshot{}, false
}
