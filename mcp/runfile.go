package mcp

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	mcpgo "github.com/mark3labs/mcp-go/mcp"

	"github.com/offshootdb/offshoot/experiments"
)

// maxExportText caps the run file export_run returns in one answer.
const maxExportText = 1 << 20

// exportRunTool is a thin adapter over ExportRun.
func (s *Server) exportRunTool() *tool {
	def := mcpgo.NewTool("export_run",
		mcpgo.WithDescription("Export a finished variant's recorded per-query rankings as a TREC run file (\"qid Q0 docno rank score tag\", scores as the run evaluated them, so trec_eval -c with the run's qrels reproduces its metrics) or as JSON lines (query, hits, measures). "+
			"Use it to hand a run to trec_eval or another tool. Answers are cut at 1 MiB on a line boundary (the answer says so); the CLI (offshoot run export) and GET /v1/runs/{id}/export give whole files."),
		annotations(true, false, true),
		mcpgo.WithString("run", mcpgo.Required(), mcpgo.Description("\"RUN:VARIANT\", or \"RUN\" when the run has exactly one succeeded variant.")),
		mcpgo.WithString("format", mcpgo.Description("trec (default) or jsonl."), mcpgo.Enum(experiments.ExportTREC, experiments.ExportJSONL)),
	)
	return newTool(def, readTool, runsNotFound, func(ctx context.Context, _ call, a struct {
		Run    string `json:"run"`
		Format string `json:"format"`
	}) (any, string, error) {
		var b bytes.Buffer
		if err := s.svc.ExportRun(ctx, a.Run, a.Format, &b); err != nil {
			return nil, "", err
		}
		text, truncated := b.String(), false
		if len(text) > maxExportText {
			text, truncated = text[:strings.LastIndexByte(text[:maxExportText], '\n')+1], true
		}
		note := ""
		if truncated {
			note = fmt.Sprintf("(truncated to %d of %d bytes; use offshoot run export for the whole file)\n", len(text), b.Len())
		}
		return map[string]any{"run": a.Run, "truncated": truncated, "bytes": b.Len()}, text + note, nil
	})
}

// importRunTool is a thin adapter over ImportRun.
func (s *Server) importRunTool() *tool {
	def := mcpgo.NewTool("import_run",
		mcpgo.WithDescription("Add an external system's TREC run (\"qid Q0 docno rank score tag\" lines, given as text) to a finished run as a new variant of type run_file, scored as the run's own variants are (its metrics, over its judged queries, each ranking cut to its k). "+
			"Use it to compare another retriever (e.g. BM25 from another tool) with compare_runs, with significance tests. Needs write scope on the run's project. Returns the new variant's metrics."),
		annotations(false, false, false),
		mcpgo.WithString("id", mcpgo.Required(), mcpgo.Description("Id of the finished run to add the variant to.")),
		mcpgo.WithString("name", mcpgo.Required(), mcpgo.Description("Name of the new variant: a-z, 0-9, '-', '_'; unique in the run.")),
		mcpgo.WithString("content", mcpgo.Required(), mcpgo.Description("The TREC run file's text.")),
		mcpgo.WithString("source", mcpgo.Description("Where the run came from (recorded, not opened).")),
	)
	return newTool(def, writeTool, runsNotFound, func(ctx context.Context, _ call, a struct {
		ID      string `json:"id"`
		Name    string `json:"name"`
		Content string `json:"content"`
		Source  string `json:"source"`
	}) (any, string, error) {
		v, err := s.svc.ImportRun(ctx, experiments.ImportRequest{Run: a.ID, Name: a.Name, Source: a.Source}, strings.NewReader(a.Content))
		if err != nil {
			return nil, "", err
		}
		v.Results = nil
		var b strings.Builder
		fmt.Fprintf(&b, "imported as %s:%s; compare it with compare_runs\n", a.ID, v.Name)
		for _, m := range v.Measures {
			fmt.Fprintf(&b, "  %-22s %.4f\n", m, v.Metrics[m])
		}
		return v, b.String(), nil
	})
}
