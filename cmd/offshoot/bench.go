package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/offshootdb/offshoot/compute/pg"
)

// benchRow is one line of the report: a measurement of offshoot, the
// baseline it is compared with in the same run, and their ratio.
type benchRow struct {
	name               string
	offshoot, baseline float64
	unit               string
	ratio              float64
	goal               *benchGoal
}

// benchResult is one benchmark's line of `go test -bench` output: its name
// (without the Benchmark prefix and the -GOMAXPROCS suffix) and the metrics
// it reported.
type benchResult struct {
	name    string
	metrics map[string]float64
}

// benchSpec says how a benchmark's metrics make a row. Benchmarks may also
// follow the convention of reporting "offshoot_<unit>", "baseline_<unit>"
// and "ratio" themselves, which needs no spec.
type benchSpec struct {
	bench, label string
	// offshoot and baseline name metrics; baselineConst stands in for a
	// baseline that is a published figure rather than a measurement.
	offshoot, baseline string
	baselineConst      float64
	unit               string
	// ratio names a metric; empty means offshoot / baseline.
	ratio string
	goal  *benchGoal
}

func atMost(v float64) *benchGoal  { return &benchGoal{bound: v, max: true} }
func atLeast(v float64) *benchGoal { return &benchGoal{bound: v} }

// benchSpecs turn the project's benchmarks into report rows, with the goals
// their issues set.
var benchSpecs = []benchSpec{
	// storage
	{bench: "ForkLatency", label: "storage: fork latency, 1 GiB vs 10 MiB parent", offshoot: "ns/fork-big-median", baseline: "ns/fork-small-median", unit: "ns", ratio: "big/small", goal: atMost(1.2)},
	{bench: "ForkDiscard", label: "storage: fork+discard per second vs Neon's 12,000 branches/hour", offshoot: "forks/s", baselineConst: 12000.0 / 3600, unit: "/s", ratio: "x-neon-12k/h", goal: atLeast(100)},
	{bench: "RewriteOnePercent", label: "storage: child rewriting 1% of the parent, % of parent bytes vs a full copy", offshoot: "child-%-of-parent", baselineConst: 100, unit: "%", goal: atMost(0.03)},
	{bench: "SeqRead8K", label: "storage: sequential 8 KiB reads, throughput vs plain file", offshoot: "ns/op-store", baseline: "ns/op-plain", unit: "ns/op", ratio: "store/plain-throughput", goal: atLeast(0.5)},
	{bench: "RandRead8K", label: "storage: random 8 KiB reads, throughput vs plain file", offshoot: "ns/op-store", baseline: "ns/op-plain", unit: "ns/op", ratio: "store/plain-throughput", goal: atLeast(0.5)},
	{bench: "SeqWrite8K", label: "storage: sequential 8 KiB writes (no sync), throughput vs plain file", offshoot: "ns/op-store", baseline: "ns/op-plain", unit: "ns/op", ratio: "store/plain-throughput", goal: atLeast(0.3)},
	{bench: "RandWrite8K", label: "storage: random 8 KiB writes (no sync), throughput vs plain file", offshoot: "ns/op-store", baseline: "ns/op-plain", unit: "ns/op", ratio: "store/plain-throughput", goal: atLeast(0.3)},
	{bench: "Depth20vs1Read", label: "storage: read latency at branch depth 20 vs depth 1", offshoot: "ns/read-depth20", baseline: "ns/read-depth1", unit: "ns", ratio: "depth20/depth1", goal: atMost(2)},
	{bench: "Usage", label: "storage: usage of one branch (counters), 1 GiB vs 10 MiB project", offshoot: "usage-big-us", baseline: "usage-small-us", unit: "µs", ratio: "usage-ratio", goal: atMost(1.5)},
	// storage/cowfs: Postgres on a branch vs Postgres on local disk
	{bench: "Pgbench", label: "cowfs: pgbench TPC-B TPS, branch vs native", offshoot: "tpcb-branch-tps", baseline: "tpcb-native-tps", unit: "tps", ratio: "tpcb-ratio", goal: atLeast(0.9)},
	{bench: "Pgbench", label: "cowfs: pgbench select-only TPS, branch vs native", offshoot: "select-only-branch-tps", baseline: "select-only-native-tps", unit: "tps", ratio: "select-only-ratio", goal: atLeast(0.95)},
	{bench: "Pgbench", label: "cowfs: pgbench -i bulk load (COPY, index, vacuum) time, branch vs native", ratio: "init-time-ratio", goal: atMost(1.5)},
	{bench: "Pgbench", label: "cowfs: pgbench -i bulk load time, a pass-through FUSE file system (go-fuse loopback, the mount's options) vs native: FUSE's own cost", ratio: "init-time-floor-ratio"},
	{bench: "Pgbench", label: "cowfs: pgbench -i bulk load time, branch vs that pass-through FUSE file system", ratio: "init-time-vs-floor"},
	{bench: "Fork", label: "cowfs: fork + first query vs CREATE DATABASE ... TEMPLATE (WAL_LOG)", offshoot: "fork+query-s", baseline: "template-s", unit: "s", goal: atMost(0.05)},
	{bench: "Fork", label: "cowfs: fork + first query vs CREATE DATABASE ... TEMPLATE (FILE_COPY)", offshoot: "fork+query-s", baseline: "template-file-copy-s", unit: "s", goal: atMost(0.05)},
	{bench: "HNSW", label: "cowfs: HNSW index build (100k x 384), branch vs native", offshoot: "hnsw-build-branch-s", baseline: "hnsw-build-native-s", unit: "s", ratio: "hnsw-build-ratio", goal: atMost(1.3)},
	{bench: "HNSW", label: "cowfs: HNSW search QPS (ef_search 40, 1 client), branch vs native", offshoot: "hnsw-qps-branch", baseline: "hnsw-qps-native", unit: "qps", ratio: "hnsw-qps-ratio", goal: atLeast(0.95)},
	{bench: "Copy", label: "cowfs: COPY 1M rows, time, branch vs native", offshoot: "copy-branch-s", baseline: "copy-native-s", unit: "s", ratio: "copy-ratio", goal: atMost(1.3)},
	{bench: "Copy", label: "cowfs: COPY 1M rows, time, a pass-through FUSE file system vs native: FUSE's own cost", offshoot: "copy-floor-s", baseline: "copy-native-s", unit: "s", ratio: "copy-floor-ratio"},
	{bench: "Copy", label: "cowfs: COPY 1M rows, time, branch vs that pass-through FUSE file system", offshoot: "copy-branch-s", baseline: "copy-floor-s", unit: "s", ratio: "copy-vs-floor"},
	// compute
	{bench: "Wake/volumes=store/from=suspended", label: "compute: wake from suspended, p50, vs native start (store, local WAL)", offshoot: "wake-p50-ms", baseline: "native-p50-ms", unit: "ms", ratio: "ratio-p50", goal: atMost(1.3)},
	{bench: "Wake/volumes=store/from=suspended", label: "compute: wake from suspended, p95, vs native start (store, local WAL)", offshoot: "wake-p95-ms", baseline: "native-p95-ms", unit: "ms", ratio: "ratio-p95", goal: atMost(1.3)},
	{bench: "Wake/volumes=store/from=stopped", label: "compute: wake from stopped, p50, vs native start (store, local WAL)", offshoot: "wake-p50-ms", baseline: "native-p50-ms", unit: "ms", ratio: "ratio-p50", goal: atMost(2)},
	{bench: "Wake/volumes=store/from=stopped", label: "compute: wake from stopped, p95, vs native start (store, local WAL)", offshoot: "wake-p95-ms", baseline: "native-p95-ms", unit: "ms", ratio: "ratio-p95", goal: atMost(2)},
	{bench: "Wake/volumes=dirs/from=suspended", label: "compute: wake from suspended, p95, vs native start (plain directory: no mount)", offshoot: "wake-p95-ms", baseline: "native-p95-ms", unit: "ms", ratio: "ratio-p95"},
	{bench: "Wake/volumes=dirs/from=stopped", label: "compute: wake from stopped, p95, vs native start (plain directory: no mount)", offshoot: "wake-p95-ms", baseline: "native-p95-ms", unit: "ms", ratio: "ratio-p95"},
	{bench: "WakeMany", label: "compute: 20 suspended branches woken at once vs 20 native starts", offshoot: "wake-all-ms", baseline: "native-all-ms", unit: "ms", ratio: "ratio"},
	{bench: "Select1", label: "proxy: SELECT 1 latency, proxy (TCP) vs direct Unix socket", offshoot: "proxy-us/query", baseline: "unix-us/query", unit: "µs", ratio: "ratio-vs-unix", goal: atMost(1.2)},
	{bench: "Select1", label: "proxy: SELECT 1 latency, proxy (TCP) vs direct loopback TCP", offshoot: "proxy-us/query", baseline: "tcp-us/query", unit: "µs", ratio: "ratio-vs-tcp", goal: atMost(1.1)},
	{bench: "Select1", label: "proxy: SELECT 1 latency, proxy's copy loop (TCP, CopyOnly) vs direct loopback TCP", offshoot: "proxy-copy-us/query", baseline: "tcp-us/query", unit: "µs", ratio: "copy-ratio-vs-tcp"},
	{bench: "Select1", label: "proxy: SELECT 1 latency, proxy's Unix socket vs direct Unix socket", offshoot: "proxy-unix-us/query", baseline: "unix-us/query", unit: "µs", goal: atMost(1.2)},
	{bench: "Select1Libpq", label: "proxy: SELECT 1 latency, libpq client (pgbench -c 1), proxy (TCP) vs direct loopback TCP", offshoot: "proxy-us/query", baseline: "tcp-us/query", unit: "µs", ratio: "ratio-vs-tcp", goal: atMost(1.1)},
	{bench: "Select1Libpq", label: "proxy: SELECT 1 latency, libpq client (pgbench -c 1), proxy's copy loop (TCP, CopyOnly) vs direct loopback TCP", offshoot: "proxy-copy-us/query", baseline: "tcp-us/query", unit: "µs", ratio: "copy-ratio-vs-tcp"},
	{bench: "PgbenchSelectOnly", label: "proxy: pgbench -S TPS, proxy's Unix socket vs direct Unix socket", offshoot: "proxy-unix-tps", baseline: "unix-tps", unit: "tps", goal: atLeast(0.9)},
	{bench: "PgbenchSelectOnly", label: "proxy: pgbench -S TPS, proxy (TCP) vs direct Unix socket", offshoot: "proxy-tps", baseline: "unix-tps", unit: "tps", ratio: "ratio-vs-unix", goal: atLeast(0.9)},
	{bench: "PgbenchSelectOnly", label: "proxy: pgbench -S TPS, proxy (TCP) vs direct loopback TCP", offshoot: "proxy-tps", baseline: "tcp-tps", unit: "tps", ratio: "ratio-vs-tcp", goal: atLeast(0.8)},
	{bench: "PgbenchSelectOnly", label: "proxy: pgbench -S TPS, proxy's copy loop (TCP, CopyOnly) vs direct loopback TCP", offshoot: "proxy-copy-tps", baseline: "tcp-tps", unit: "tps", ratio: "copy-ratio-vs-tcp"},
	{bench: "PgbenchSelectOnly", label: "proxy: the proxy process's CPU per pgbench -S transaction, kernel path vs copy loop", offshoot: "proxy-cpu-us/tx", baseline: "proxy-copy-cpu-us/tx", unit: "µs"},
	// experiments: a lexical variant's rerun on its materialization (issue 15, item 5)
	{bench: "LexicalRerun", label: "experiments: rerun of an unchanged 100k-document lexical (tsvector + GIN) experiment, reused materialization vs cold (reuse: never), wall time; ratio cold/reused", offshoot: "reused_s", baseline: "cold_s", unit: "s", ratio: "cold/reused"},
	// experiments: the whole cycle of a run's variant
	{bench: "ExperimentCycle/base=empty", label: "experiments: fork → load 10k x 384 → HNSW → 100 queries → discard, cycles/h, vs TEMPLATE + DROP DATABASE (empty base)", offshoot: "offshoot-cycles/h", baseline: "native-cycles/h", unit: "/h", ratio: "ratio"},
	{bench: "RecoveryPoint", label: "objstore: recovery point (max age of the state in the bucket) under 1 MiB commits every 20 ms, vs the 2 s upload interval", offshoot: "lag-max-ms", baselineConst: 2000, unit: "ms", ratio: "max/interval", goal: atMost(1.5)},
	{bench: "ObjectStore", label: "objstore: pgbench TPC-B TPS on a branch, object tier on (10 s rounds to a local S3) vs off", offshoot: "tier-on-tps", baseline: "tier-off-tps", unit: "tps", ratio: "on/off", goal: atLeast(0.9)},
	{bench: "ObjectStore", label: "objstore: restore of a data dir holding a ~1 GiB pgbench project from the bucket vs cp -a of the data dir (time)", offshoot: "restore-s", baseline: "copy-s", unit: "s", ratio: "restore/copy"},
	{bench: "ReplicaLag", label: "replicas: commit-to-visible lag p95 on a replica on a second server under pgbench TPC-B, vs the 1 s goal", offshoot: "offshoot-p95-ms", baselineConst: 1000, unit: "ms", ratio: "p95/goal", goal: atMost(1)},
	{bench: "ReplicaLag", label: "replicas: the same lag p95, offshoot replica vs a plain PostgreSQL streaming standby on local disk", offshoot: "offshoot-p95-ms", baseline: "native-p95-ms", unit: "ms", ratio: "p95/native"},
	{bench: "Merge", label: "merge: a fork that changed 0.1% of the rows of a 1 GiB table into its parent, merge vs full-table comparison (time)", offshoot: "merge-ms", baseline: "full-ms", unit: "ms", ratio: "merge/full", goal: atMost(0.05)},
	{bench: "ExperimentCycle/base=data", label: "experiments: the same cycle on a base with 270 MiB of app data, cycles/h, vs TEMPLATE + DROP DATABASE", offshoot: "offshoot-cycles/h", baseline: "native-cycles/h", unit: "/h", ratio: "ratio", goal: atLeast(1)},
	// experiments: reruns that fork a materialization (issue 15)
	{bench: "MaterializedRerun", label: "experiments: rerun of an unchanged 100k x 384 HNSW experiment, reused materialization vs cold (reuse: never, embeddings cached), wall time; ratio cold/reused", offshoot: "reused-s", baseline: "cold-s", unit: "s", ratio: "cold/reused", goal: atLeast(20)},
	{bench: "MaterializedRerun", label: "experiments: storage a materialization holds of its own (its delta) vs its table and index", offshoot: "mat-delta-MiB", baseline: "table+index-MiB", unit: "MiB", ratio: "delta/full"},
	{bench: "MaterializedRerun", label: "experiments: the same rerun, reused materialization vs the native path (TEMPLATE, load, build, query, drop); ratio native/reused", offshoot: "reused-s", baseline: "native-s", unit: "s", ratio: "native/reused"},
	{bench: "IncrementalRerun", label: "experiments: rerun after a 1% corpus change (100k x 384 HNSW), incremental materialization vs cold; ratio cold/incremental", offshoot: "incremental-s", baseline: "cold-s", unit: "s", ratio: "cold/incremental", goal: atLeast(10)},
	{bench: "IncrementalRerun", label: "experiments: the same, incremental vs the native path; ratio native/incremental", offshoot: "incremental-s", baseline: "native-s", unit: "s", ratio: "native/incremental"},
	// experiments: many branches in one project (issue 20)
	{bench: "ManyBranches", label: "branches: first page of the branch list (10, with endpoint states), 10,000 branches vs 10", offshoot: "list-many-ms", baseline: "list-10-ms", unit: "ms", ratio: "list-many/10", goal: atMost(1.5)},
	{bench: "ManyBranches", label: "branches: fork (CreateBranch), 10,000 branches vs 10", offshoot: "fork-many-ms", baseline: "fork-10-ms", unit: "ms", ratio: "fork-many/10", goal: atMost(1.5)},
	{bench: "ManyBranches", label: "branches: delete, 10,000 branches vs 10", offshoot: "discard-many-ms", baseline: "discard-10-ms", unit: "ms", ratio: "discard-many/10", goal: atMost(1.5)},
	// vectors
	{bench: "Load", label: "vectors: 100k x 384 load, binary COPY vs multi-row INSERT (binary vectors)", offshoot: "copy_vec/s", baseline: "insert_vec/s", unit: "vec/s", ratio: "copy/insert", goal: atLeast(5)},
	{bench: "Load", label: "vectors: 100k x 384 load, binary COPY vs multi-row INSERT (text vectors)", offshoot: "copy_vec/s", baseline: "insert_text_vec/s", unit: "vec/s", ratio: "copy/insert_text", goal: atLeast(5)},
	// vectors: storage types of a dense variant (issue 15, item 6)
	{bench: "VectorStorage", label: "vectors: HNSW build time (50k x 384), halfvec vs vector", offshoot: "halfvec-build-s", baseline: "vector-build-s", unit: "s", ratio: "halfvec/vector-build"},
	{bench: "VectorStorage", label: "vectors: HNSW index size (50k x 384), halfvec vs vector", offshoot: "halfvec-index-MiB", baseline: "vector-index-MiB", unit: "MiB", ratio: "halfvec/vector-index"},
	{bench: "VectorStorage", label: "vectors: search p50 (k 10, ef_search 40), halfvec vs vector", offshoot: "halfvec-p50-us", baseline: "vector-p50-us", unit: "µs", ratio: "halfvec/vector-p50"},
	{bench: "VectorStorage", label: "vectors: recall@10 against full-precision exact search, halfvec vs vector", offshoot: "halfvec-recall", baseline: "vector-recall", ratio: "halfvec/vector-recall"},
	{bench: "VectorStorage", label: "vectors: index build time (50k x 384), binary (bit, Hamming) vs vector HNSW", offshoot: "binary-build-s", baseline: "vector-build-s", unit: "s", ratio: "binary/vector-build"},
	{bench: "VectorStorage", label: "vectors: index size (50k x 384), binary (bit, Hamming) vs vector HNSW", offshoot: "binary-index-MiB", baseline: "vector-index-MiB", unit: "MiB", ratio: "binary/vector-index"},
	{bench: "VectorStorage", label: "vectors: search p50, binary with 40 candidates re-ranked vs vector HNSW", offshoot: "binary-p50-us", baseline: "vector-p50-us", unit: "µs", ratio: "binary/vector-p50"},
	{bench: "VectorStorage", label: "vectors: recall@10 against full-precision exact search, binary (40 re-ranked) vs vector HNSW", offshoot: "binary-recall", baseline: "vector-recall", ratio: "binary/vector-recall"},
}

// parseBench reads `go test -bench` output.
func parseBench(r io.Reader) ([]benchResult, error) {
	var results []benchResult
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		if _, err := strconv.Atoi(f[1]); err != nil {
			continue // a log line that starts with a benchmark name
		}
		name := strings.TrimPrefix(f[0], "Benchmark")
		if i := strings.LastIndex(name, "-"); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		res := benchResult{name: name, metrics: map[string]float64{}}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, fmt.Errorf("benchmark %s: metric %q: %w", name, f[i], err)
			}
			res.metrics[f[i+1]] = v
		}
		results = append(results, res)
	}
	return results, sc.Err()
}

// benchRows turns results into report rows: by spec, or by the
// offshoot_/baseline_/ratio convention.
func benchRows(results []benchResult) []benchRow {
	var rows []benchRow
	for _, res := range results {
		matched := false
		for _, sp := range benchSpecs {
			if sp.bench != res.name {
				continue
			}
			matched = true
			row := benchRow{name: sp.label, unit: sp.unit, goal: sp.goal,
				offshoot: res.metrics[sp.offshoot], baseline: res.metrics[sp.baseline]}
			if sp.baseline == "" {
				row.baseline = sp.baselineConst
			}
			var ok bool
			if sp.ratio != "" {
				row.ratio, ok = res.metrics[sp.ratio]
			} else if row.baseline != 0 {
				row.ratio, ok = row.offshoot/row.baseline, true
			}
			if ok {
				rows = append(rows, row)
			}
		}
		if matched {
			continue
		}
		row := benchRow{name: res.name}
		ratio, ok := res.metrics["ratio"]
		for m, v := range res.metrics {
			if u, found := strings.CutPrefix(m, "offshoot_"); found {
				row.offshoot, row.unit = v, u
			} else if strings.HasPrefix(m, "baseline_") {
				row.baseline = v
			}
		}
		if ok {
			row.ratio = ratio
			rows = append(rows, row)
		}
	}
	return rows
}

// writeBenchTable prints the side-by-side table as Markdown.
func writeBenchTable(w io.Writer, rows []benchRow) {
	fmt.Fprintln(w, "| benchmark | offshoot | baseline | ratio | goal | met |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---|---|")
	for _, r := range rows {
		goal, met := "", ""
		if r.goal != nil {
			goal, met = r.goal.String(), "no"
			if r.goal.met(r.ratio) {
				met = "yes"
			}
		}
		off, base := "", ""
		if r.offshoot != 0 || r.baseline != 0 {
			off, base = fmtNum(r.offshoot)+" "+r.unit, fmtNum(r.baseline)+" "+r.unit
		}
		fmt.Fprintf(w, "| %s | %s | %s | %.3f | %s | %s |\n", r.name, off, base, r.ratio, goal, met)
	}
}

func fmtNum(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
}

// writeBenchReport rewrites the table at the top of the report at path
// (with head, the line saying how and where it was measured, above it) and
// keeps everything from the file's first section ("## ...") on: the notes,
// measurements and write-ups that sessions add below the table.
func writeBenchReport(path, head string, rows []benchRow) error {
	var notes []byte
	old, err := os.ReadFile(path)
	switch {
	case err == nil:
		if i := bytes.Index(old, []byte("\n## ")); i >= 0 {
			notes = old[i+1:]
		}
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("bench report: %w", err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Benchmarks\n\n%s\n\n", head)
	b.WriteString("Every row is measured against its baseline in the same run; ratio is offshoot / baseline unless the row's notes say otherwise.\n\n")
	writeBenchTable(&b, rows)
	if len(notes) > 0 {
		b.WriteString("\n")
		b.Write(notes)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("bench report: %w", err)
	}
	return nil
}

// machineInfo describes where the numbers were measured.
func machineInfo(ctx context.Context) string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb uint64
		fmt.Sscanf(string(b), "MemTotal: %d kB", &kb)
		mem = humanBytes(kb << 10)
	}
	pgv, _ := pg.Version(ctx)
	return fmt.Sprintf("%s, %d cores, %s RAM, %s, %s", cpu, runtime.NumCPU(), mem, runtime.Version(), pgv)
}

func init() {
	subcommands = append(subcommands, func(a *app) *cobra.Command {
		var out, command string
		cmd := &cobra.Command{
			Use:   "bench-report [go-test-bench-output ...]",
			Short: "Turn `go test -bench` output of the ratio benchmarks into a table and docs/benchmarks.md",
			RunE: func(cmd *cobra.Command, files []string) error {
				var results []benchResult
				readers := []io.Reader{os.Stdin}
				if len(files) > 0 {
					readers = nil
					for _, name := range files {
						f, err := os.Open(name)
						if err != nil {
							return fmt.Errorf("bench report: %w", err)
						}
						defer f.Close()
						readers = append(readers, f)
					}
				}
				for _, r := range readers {
					rs, err := parseBench(r)
					if err != nil {
						return fmt.Errorf("bench report: %w", err)
					}
					results = append(results, rs...)
				}
				rows := benchRows(results)
				if len(rows) == 0 {
					return fmt.Errorf("bench report: no benchmark reported a ratio")
				}
				writeBenchTable(a.stdout, rows)
				if out == "" {
					return nil
				}
				rev := "unknown commit"
				if out, err := exec.CommandContext(cmd.Context(), "git", "rev-parse", "--short", "HEAD").Output(); err == nil {
					rev = "commit " + strings.TrimSpace(string(out))
				}
				head := fmt.Sprintf("Generated by `%s` on %s (%s).\n\nMachine: %s.", command,
					time.Now().UTC().Format("2006-01-02 15:04 MST"), rev, machineInfo(cmd.Context()))
				return writeBenchReport(out, head, rows)
			},
		}
		cmd.Flags().StringVar(&out, "out", "", "also write the Markdown report to this file")
		cmd.Flags().StringVar(&command, "command", "make bench", "the command that reproduces the numbers, for the report")
		return cmd
	})
}

// benchGoal is a bound on a ratio: max when lower is better.
type benchGoal struct {
	bound float64
	max   bool
}

func (g benchGoal) String() string {
	if g.max {
		return "≤ " + strconv.FormatFloat(g.bound, 'g', -1, 64)
	}
	return "≥ " + strconv.FormatFloat(g.bound, 'g', -1, 64)
}

func (g benchGoal) met(r float64) bool {
	if g.max {
		return r <= g.bound
	}
	return r >= g.bound
}
