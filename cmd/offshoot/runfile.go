package main

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/offshootdb/offshoot/experiments"
)

// newRunExportCmd is `offshoot run export RUN[:VARIANT]`.
func newRunExportCmd(a *app) *cobra.Command {
	var c client
	var format, output string
	cmd := &cobra.Command{
		Use:   "export RUN[:VARIANT] [--format trec|jsonl] [-o FILE]",
		Short: "Write a variant's recorded rankings as a TREC run file (or JSON lines)",
		Long: `Write the per-query rankings a run recorded for one variant (RUN alone
when the run has one succeeded variant). TREC lines are "qid Q0 docno rank
score tag", the tag being the variant's name; scores are the ones the run was
evaluated with, so

  offshoot eval score -c --qrels QRELS --run FILE -m METRIC...

with the run's qrels and metrics prints the run's recorded metrics.`,
		Example: "  offshoot run export 20261127-142601-a3f2c1:bow -o bow.run",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, variant, _ := strings.Cut(args[0], ":")
			q := url.Values{"format": {format}}
			if variant != "" {
				q.Set("variant", variant)
			}
			raw, err := c.do(cmd.Context(), "GET", "/v1/runs/"+url.PathEscape(id)+"/export?"+q.Encode(), nil, nil)
			if err != nil {
				return err
			}
			if output == "" || output == "-" {
				_, err = a.stdout.Write(raw)
				return err
			}
			return os.WriteFile(output, raw, 0o644)
		},
	}
	addClientFlags(cmd, a, &c)
	cmd.Flags().StringVar(&format, "format", experiments.ExportTREC, "trec (qid Q0 docno rank score tag) or jsonl (one JSON object per query)")
	cmd.Flags().StringVarP(&output, "output", "o", "", "write to this file instead of stdout")
	return cmd
}

// newRunImportCmd is `offshoot run import RUN FILE`.
func newRunImportCmd(a *app) *cobra.Command {
	var c client
	var name string
	cmd := &cobra.Command{
		Use:   "import RUN FILE --name VARIANT",
		Short: "Add an external system's TREC run file to a finished run as a variant, for run compare",
		Long: `Upload FILE (a TREC run, read here on the client) into run RUN as a new
variant of type run_file. The server scores it as the run's own variants:
the run's metrics over its judged queries (trec_eval -c), each ranking cut
to the run's k in trec_eval's order. Then compare it, with significance
tests, against any variant of the run:

  offshoot run compare RUN:bow RUN:bm25`,
		Example: "  offshoot run import 20261127-142601-a3f2c1 bm25.run --name bm25",
		Args:    cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := os.ReadFile(args[1])
			if err != nil {
				return &exitError{code: exitBadInput, err: err}
			}
			if name == "" {
				return &exitError{code: exitBadInput, err: fmt.Errorf("--name is required: the new variant's name")}
			}
			q := url.Values{"name": {name}, "source": {filepath.Base(args[1])}}
			var v experiments.VariantRun
			raw, err := c.do(cmd.Context(), "POST", "/v1/runs/"+url.PathEscape(args[0])+"/import?"+q.Encode(),
				rawBody{data: data, contentType: "text/plain; charset=utf-8"}, &v)
			if err != nil {
				return err
			}
			if c.json {
				return printJSON(a.stdout, raw)
			}
			fmt.Fprintf(a.stdout, "imported %s as %s:%s\n", args[1], args[0], v.Name)
			for _, m := range v.Measures {
				fmt.Fprintf(a.stdout, "  %-22s %.4f\n", m, v.Metrics[m])
			}
			return nil
		},
	}
	addClientFlags(cmd, a, &c)
	cmd.Flags().StringVar(&name, "name", "", "name of the new variant (a-z, 0-9, '-', '_')")
	return cmd
}
