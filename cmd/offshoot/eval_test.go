package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The same small qrels/run pair as the evals golden tests (values verified
// by hand there): q1 has 4 relevant, found at ranks 1, 3 and 5 once the
// 0.8 tie is broken by docno descending; q2's only relevant is at rank 3.
const cliQrelsTREC = `q1 0 d1 2
q1 0 d2 0
q1 0 d3 1
q1 0 d5 3
q1 0 d9 1
q2 0 d4 1
q3 0 d1 1
`

const cliQrelsBEIR = "query-id\tcorpus-id\tscore\n" +
	"q1\td1\t2\nq1\td2\t0\nq1\td3\t1\nq1\td5\t3\nq1\td9\t1\nq2\td4\t1\nq3\td1\t1\n"

const cliRunA = `q1 Q0 d3 1 0.9 runA
q1 Q0 d1 2 0.8 runA
q1 Q0 d2 3 0.8 runA
q1 Q0 d7 4 0.5 runA
q1 Q0 d5 5 0.4 runA
q2 Q0 d8 1 0.3 runA
q2 Q0 d6 2 0.2 runA
q2 Q0 d4 3 0.1 runA
`

// cliRunB puts q2's relevant document first.
const cliRunB = `q1 Q0 d3 1 0.9 runB
q1 Q0 d1 2 0.8 runB
q1 Q0 d2 3 0.8 runB
q1 Q0 d7 4 0.5 runB
q1 Q0 d5 5 0.4 runB
q2 Q0 d4 1 0.3 runB
q2 Q0 d6 2 0.2 runB
q2 Q0 d8 3 0.1 runB
`

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// runCLI executes the root command in process and returns stdout and the
// error (whose exit code main would use).
func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	root := newRootCmd(&out, &errb)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestEvalScoreTRECLines(t *testing.T) {
	dir := writeFiles(t, map[string]string{"qrels.txt": cliQrelsTREC, "qrels.tsv": cliQrelsBEIR, "a.run": cliRunA})
	want := "" +
		"recip_rank            \tq1\t1.0000\n" +
		"P_5                   \tq1\t0.6000\n" +
		"ndcg_cut_5            \tq1\t0.6087\n" +
		"recip_rank            \tq2\t0.3333\n" +
		"P_5                   \tq2\t0.2000\n" +
		"ndcg_cut_5            \tq2\t0.5000\n" +
		"recip_rank            \tall\t0.6667\n" +
		"P_5                   \tall\t0.4000\n" +
		"ndcg_cut_5            \tall\t0.5543\n"
	for _, q := range []string{"qrels.txt", "qrels.tsv"} {
		out, err := runCLI(t, "eval", "score", "--qrels", filepath.Join(dir, q), "--run", filepath.Join(dir, "a.run"),
			"-m", "ndcg_cut.5", "-m", "P.5", "-m", "recip_rank", "--per-query")
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		if out != want {
			t.Fatalf("%s: output\n%s\nwant\n%s", q, out, want)
		}
	}
	// -c averages over q3 too (a zero): P_5 = 0.8/3.
	out, err := runCLI(t, "eval", "score", "--qrels", filepath.Join(dir, "qrels.txt"), "--run", filepath.Join(dir, "a.run"), "-m", "P.5", "-c", "-m", "num_q")
	if err != nil {
		t.Fatal(err)
	}
	if want := "num_q                 \tall\t3\nP_5                   \tall\t0.2667\n"; out != want {
		t.Fatalf("-c output\n%s\nwant\n%s", out, want)
	}
	out, err = runCLI(t, "eval", "score", "--qrels", filepath.Join(dir, "qrels.txt"), "--run", filepath.Join(dir, "a.run"), "--format", "json")
	if err != nil {
		t.Fatal(err)
	}
	var rep struct {
		Run      string
		Measures []string
		All      []struct{ Measure string }
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.Run != "runA" || strings.Join(rep.Measures, " ") != "map recip_rank P_10 recall_100 ndcg_cut_10 success_10" {
		t.Fatalf("json report %v: %+v\n%s", err, rep, out)
	}
}

func TestEvalCompare(t *testing.T) {
	dir := writeFiles(t, map[string]string{"qrels.txt": cliQrelsTREC, "a.run": cliRunA, "b.run": cliRunB})
	args := []string{"eval", "compare", filepath.Join(dir, "a.run"), filepath.Join(dir, "b.run"), "--qrels", filepath.Join(dir, "qrels.txt"), "-m", "recip_rank", "-m", "P.5", "--seed", "3"}
	out, err := runCLI(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	// Two paired queries: q1 unchanged, q2 recip_rank 1/3 → 1. All 4 sign
	// assignments of the differences (0, 2/3) are enumerated and every one
	// has |sum| = 2/3, so p = 1: one changed query is no evidence. P_5 is
	// equal on both queries: 2 ties.
	for _, want := range []string{
		"A = runA, B = runB, 2 paired queries",
		// d: deltas 0 and 2/3, mean 1/3, sd sqrt(2)/3, d = 1/sqrt(2).
		"recip_rank  0.6667  1.0000  +0.3333  [+0.0000, +0.6667]  1.0000  1.0000  1.0000       +0.71  1/1/0",
		"P_5         0.4000  0.4000  +0.0000  [+0.0000, +0.0000]  1.0000  1.0000  1.0000       +0.00  0/2/0",
		"per query recip_rank (worst first)",
	} {
		if !strings.Contains(out, want) {
			t.Fatalf("compare output lacks %q:\n%s", want, out)
		}
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, "q2 ") {
		t.Fatalf("worst-first order: last line %q, want q2 (the improved query) last", last)
	}
	// The first -m given is the per-query measure, whatever the print order.
	swapped, err := runCLI(t, "eval", "compare", filepath.Join(dir, "a.run"), filepath.Join(dir, "b.run"), "--qrels", filepath.Join(dir, "qrels.txt"), "-m", "P.5", "-m", "recip_rank")
	if err != nil || !strings.Contains(swapped, "per query P_5 (worst first)") {
		t.Fatalf("primary from first -m: %v\n%s", err, swapped)
	}
	again, _ := runCLI(t, args...)
	if again != out {
		t.Fatal("compare output not deterministic")
	}
	js, err := runCLI(t, append(args, "--json")...)
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Measures []struct {
			Measure string
			P       float64 `json:"p_value"`
			Wins    int
			Ties    int
		}
	}
	if err := json.Unmarshal([]byte(js), &c); err != nil {
		t.Fatal(err)
	}
	if len(c.Measures) != 2 || c.Measures[0].Measure != "recip_rank" || c.Measures[0].P != 1 || c.Measures[0].Wins != 1 || c.Measures[0].Ties != 1 ||
		c.Measures[1].Measure != "P_5" || c.Measures[1].P != 1 || c.Measures[1].Ties != 2 {
		t.Fatalf("json comparison: %+v", c)
	}
}

func TestEvalErrors(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"qrels.txt": cliQrelsTREC,
		"a.run":     cliRunA,
		"bad.run":   "q1 Q0 d1 1 0.5 x\nq1 Q0 d2 2 zero x\n",
		"dup.run":   "q1 Q0 d1 1 0.5 x\nq1 Q0 d1 2 0.4 x\n",
		"bad.qrels": "q1 0 d1 1\nq1 0 d2\n",
		"other.run": "zz Q0 d1 1 0.5 x\n",
	})
	p := func(n string) string { return filepath.Join(dir, n) }
	for _, c := range []struct {
		name string
		args []string
		want []string
	}{
		{"bad run score", []string{"eval", "score", "--qrels", p("qrels.txt"), "--run", p("bad.run")}, []string{p("bad.run") + ":2:", `score "zero" is not a finite number`}},
		{"dup run doc", []string{"eval", "score", "--qrels", p("qrels.txt"), "--run", p("dup.run")}, []string{p("dup.run") + ":2:", "duplicate"}},
		{"bad qrels", []string{"eval", "score", "--qrels", p("bad.qrels"), "--run", p("a.run")}, []string{p("bad.qrels") + ":2:", "want 4 fields"}},
		{"missing file", []string{"eval", "score", "--qrels", p("nope.txt"), "--run", p("a.run")}, []string{"nope.txt", "no such file"}},
		{"no common queries", []string{"eval", "score", "--qrels", p("qrels.txt"), "--run", p("other.run")}, []string{"other.run", "no queries with both results and relevance judgments"}},
		{"bad measure", []string{"eval", "score", "--qrels", p("qrels.txt"), "--run", p("a.run"), "-m", "ndcg_cut.x"}, []string{`"ndcg_cut.x"`, "positive integer"}},
		{"unknown measure", []string{"eval", "score", "--qrels", p("qrels.txt"), "--run", p("a.run"), "-m", "gm_bpref"}, []string{`"gm_bpref"`, "unknown measure"}},
		{"missing qrels flag", []string{"eval", "score", "--run", p("a.run")}, []string{`"qrels" not set`}},
		{"bad format", []string{"eval", "score", "--qrels", p("qrels.txt"), "--run", p("a.run"), "--format", "xml"}, []string{`--format "xml"`}},
		{"compare one arg", []string{"eval", "compare", p("a.run"), "--qrels", p("qrels.txt")}, []string{"accepts 2 arg(s)"}},
		{"compare bad run", []string{"eval", "compare", p("a.run"), p("bad.run"), "--qrels", p("qrels.txt")}, []string{p("bad.run") + ":2:"}},
		{"compare few permutations", []string{"eval", "compare", p("a.run"), p("a.run"), "--qrels", p("qrels.txt"), "--permutations", "100"}, []string{"100 permutations"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, err := runCLI(t, c.args...)
			if err == nil {
				t.Fatalf("no error; output:\n%s", out)
			}
			if code := exitCode(err); code != exitBadInput {
				t.Fatalf("exit code %d for %v, want %d (bad input)", code, err, exitBadInput)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

// TestEvalExitStatus runs the real main in a child process (this test
// binary re-executed) to check the exit status and stderr a user sees.
func TestEvalExitStatus(t *testing.T) {
	if os.Getenv("OFFSHOOT_EVAL_HELPER") == "1" {
		os.Args = append([]string{"offshoot"}, strings.Split(os.Getenv("OFFSHOOT_EVAL_ARGS"), "\x1f")...)
		main()
		os.Exit(0)
	}
	dir := writeFiles(t, map[string]string{"qrels.txt": cliQrelsTREC, "a.run": cliRunA, "bad.run": "q1 Q0 d1 1 0.5 x\nq1 Q0 d2 2 zero x\n"})
	run := func(args ...string) (string, string, int) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestEvalExitStatus$")
		cmd.Env = append(os.Environ(), "OFFSHOOT_EVAL_HELPER=1", "OFFSHOOT_EVAL_ARGS="+strings.Join(args, "\x1f"))
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return out.String(), errb.String(), code
	}
	out, _, code := run("eval", "score", "--qrels", filepath.Join(dir, "qrels.txt"), "--run", filepath.Join(dir, "a.run"), "-m", "P.5")
	if code != 0 || !strings.HasPrefix(out, "P_5                   \tall\t0.4000\n") {
		t.Fatalf("good run: exit %d, stdout %q", code, out)
	}
	_, stderr, code := run("eval", "score", "--qrels", filepath.Join(dir, "qrels.txt"), "--run", filepath.Join(dir, "bad.run"))
	if code == 0 || !strings.Contains(stderr, "offshoot: read run: "+filepath.Join(dir, "bad.run")+":2:") {
		t.Fatalf("bad run: exit %d, stderr %q", code, stderr)
	}
}

// TestEvalCompareSignificant: over 30 queries B ranks the relevant document
// first where A ranks it fifth, so every paired recip_rank difference is
// +0.8 and the randomization test must reject (p ≈ 1/10001 < alpha).
func TestEvalCompareSignificant(t *testing.T) {
	var qrels, a, b strings.Builder
	for q := 1; q <= 30; q++ {
		fmt.Fprintf(&qrels, "t%d 0 rel 1\n", q)
		for i, d := range []string{"x1", "x2", "x3", "x4", "rel"} {
			fmt.Fprintf(&a, "t%d Q0 %s %d %d A\n", q, d, i+1, 10-i)
		}
		for i, d := range []string{"rel", "x1", "x2", "x3", "x4"} {
			fmt.Fprintf(&b, "t%d Q0 %s %d %d B\n", q, d, i+1, 10-i)
		}
	}
	dir := writeFiles(t, map[string]string{"q": qrels.String(), "a": a.String(), "b": b.String()})
	out, err := runCLI(t, "eval", "compare", filepath.Join(dir, "a"), filepath.Join(dir, "b"), "--qrels", filepath.Join(dir, "q"), "-m", "recip_rank", "--alpha", "0.01")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "recip_rank  0.2000  1.0000  +0.8000  [+0.8000, +0.8000]  0.0001  0.0001  0.0001  *    n/a  30/0/0") {
		t.Fatalf("want a significant +0.8:\n%s", out)
	}
}

// TestEvalScoreTrecEvalFlags: the measures and -M/-J flags trec_eval has,
// on the pair above (values by hand, as in the evals golden tests): q1
// ranks d3(1) d2(0) d1(2) d7(unjudged) d5(3), R=4; q2 ranks d8 d6 (both
// unjudged) above its relevant d4.
func TestEvalScoreTrecEvalFlags(t *testing.T) {
	dir := writeFiles(t, map[string]string{"qrels.txt": cliQrelsTREC, "a.run": cliRunA})
	for _, c := range []struct {
		args []string
		want string
	}{
		// gm_map: √(AP1·AP2) = √(0.5667·0.3333); bpref: q1 1/4, q2 1 (unjudged ignored)
		{[]string{"-m", "gm_map", "-m", "bpref", "-q"},
			"bpref                 \tq1\t0.2500\nbpref                 \tq2\t1.0000\ngm_map                \tall\t0.4346\nbpref                 \tall\t0.6250\n"},
		// -J: q1 d3 d2 d1 d5 → 3 of the first 4; q2 d4 alone → 1
		{[]string{"-m", "Rprec", "-J", "-m", "num_ret"}, "num_ret               \tall\t5\nRprec                 \tall\t0.8750\n"},
		// -M 3: q1 d3 d2 d1 → 2/4; q2 d8 d6 d4 → 0 in the first 1
		{[]string{"-m", "Rprec", "-M", "3", "-m", "num_ret"}, "num_ret               \tall\t6\nRprec                 \tall\t0.2500\n"},
		// q1 precision 1 at rank 1, q2 1/3 at its only relevant
		{[]string{"-m", "iprec_at_recall.0", "-N", "1000"}, "iprec_at_recall_0.00  \tall\t0.6667\n"},
	} {
		out, err := runCLI(t, append([]string{"eval", "score", "--qrels", filepath.Join(dir, "qrels.txt"), "--run", filepath.Join(dir, "a.run")}, c.args...)...)
		if err != nil {
			t.Fatalf("%v: %v", c.args, err)
		}
		if out != c.want {
			t.Errorf("%v: output\n%s\nwant\n%s", c.args, out, c.want)
		}
	}
	if _, err := runCLI(t, "eval", "score", "--qrels", filepath.Join(dir, "qrels.txt"), "--run", filepath.Join(dir, "a.run"), "-M", "-1"); err == nil {
		t.Fatal("-M -1 accepted")
	}
}
